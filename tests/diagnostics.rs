//! What a run records besides its curve: the per-block diagnostics against their closed forms
//! and the TensorBoard event file read back scalar by scalar (the curve itself is in
//! tests/train.rs).
use deepres::train::{self, metrics};

mod common;
use common::serial;
use common::tiny_run::{config, quiet, stopped_then_resumed};

/// blocks.csv: one row per block at epoch 0 and after each epoch, once each across a resume,
/// with values that have closed forms at initialization.
// Long on purpose: each column of blocks.csv beside its closed form, in one run.
#[test]
fn per_block_diagnostics_have_their_closed_forms() {
    use deepres::train::diagnostics::{self, BlockRow};
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let read = |name: &str| diagnostics::read(&tmp.path().join(name).join("blocks.csv")).unwrap();
    let at = |rows: &[BlockRow], e: i64| -> Vec<BlockRow> {
        rows.iter().filter(|r| r.epoch == e).cloned().collect()
    };
    // ReZero: τ_ℓ = 0 at initialization, so every block is relu(skip) and adds nothing:
    // branch_to_skip = 0, and within stage 1 (identity shortcuts, inputs ≥ 0 after a relu)
    // h_ℓ = h_{ℓ−1} exactly: equal norms. Its weights get no gradient, only its α does.
    let rz = [
        "model.norm=none",
        "model.tau.learnable=rezero",
        "train.epochs=2",
    ];
    let cfg = config(tmp.path(), "rezero", &rz);
    stopped_then_resumed(&cfg);
    let rows = read("rezero");
    assert_eq!(
        rows.len(),
        3 * 3,
        "(epochs 0, 1, 2) × 3 blocks, once each: {rows:?}"
    );
    let e0 = at(&rows, 0);
    for r in &e0 {
        assert_eq!((r.tau, r.branch_to_skip), (0.0, 0.0), "{r:?}");
        assert!(r.grad_norm > 0.0 && r.weight_norm > 0.0, "{r:?}");
    }
    assert_eq!(e0[0].stage, 1);
    assert_eq!(e0[2].stage, 3);
    // depth 8: one block per stage; with depth 14 (two per stage) the stage-1 norms are equal
    let cfg = config(
        tmp.path(),
        "rezero14",
        &[
            "model.norm=none",
            "model.tau.learnable=rezero",
            "model.depth=14",
            "train.epochs=1",
        ],
    );
    train::run(&cfg, &quiet()).unwrap();
    let e0 = at(&read("rezero14"), 0);
    assert_eq!(e0[0].h_norm, e0[1].h_norm, "{e0:?}");
    assert!(
        at(&read("rezero14"), 1).iter().any(|r| r.tau != 0.0),
        "α trains"
    );
    // τ enters the ratio linearly: the same initial weights (same seed) with τ = 0.5 and 0.25
    // give block 1 the same branch and skip, so its ratio halves (to rounding).
    let mut ratio = Vec::new();
    for (name, tau) in [("half", "0.5"), ("quarter", "0.25")] {
        let v = format!("model.tau.value={tau}");
        let sets = [
            "model.norm=none",
            "model.tau.rule=fixed",
            v.as_str(),
            "train.epochs=1",
        ];
        train::run(&config(tmp.path(), name, &sets), &quiet()).unwrap();
        let e0 = at(&read(name), 0);
        assert_eq!(e0[0].tau.to_string(), tau);
        ratio.push(e0[0].branch_to_skip);
    }
    assert!((ratio[0] / ratio[1] - 2.0).abs() < 1e-5, "{ratio:?}");
    // the shared learnable τ of every block is metrics.csv's τ of the same epoch
    let sets = [
        "model.norm=none",
        "model.tau.rule=inv_sqrt",
        "model.tau.learnable=shared",
        "train.epochs=2",
    ];
    train::run(&config(tmp.path(), "shared", &sets), &quiet()).unwrap();
    let blocks = read("shared");
    for m in metrics::read(&tmp.path().join("shared/metrics.csv")).unwrap() {
        for r in at(&blocks, m.epoch) {
            assert!(
                (r.tau - m.tau).abs() < 1e-6,
                "epoch {}: {} vs {}",
                m.epoch,
                r.tau,
                m.tau
            );
        }
    }
}

/// log.tensorboard: TensorBoard's own reader (the tensorboard package in the project's venv)
/// reads every metrics.csv column and every blocks.csv value back, per epoch, as written
/// (float32), across a resume.
#[test]
fn tensorboard_reads_back_every_scalar() {
    use deepres::train::diagnostics;
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let sets = [
        "log.tensorboard=true",
        "model.norm=none",
        "model.tau.learnable=shared",
    ];
    let cfg = config(tmp.path(), "tb", &sets);
    stopped_then_resumed(&cfg);
    let dir = tmp.path().join("tb");
    let text = common::python_oracle("tensorboard_read.py", &[dir.to_str().unwrap()]);
    let read: std::collections::BTreeMap<String, Vec<(i64, f64)>> =
        serde_json::from_str(text.lines().last().unwrap()).unwrap();
    // TensorBoard keeps float32 (simple_value); compared as such.
    let f32_eq = |got: f64, want: f64| got as f32 == want as f32 || (got.is_nan() && want.is_nan());
    let rows = metrics::read(&dir.join("metrics.csv")).unwrap();
    assert_eq!(rows.len(), 3);
    type Column = (&'static str, fn(&metrics::EpochRow) -> f64);
    let cols: [Column; 4] = [
        ("train_loss", |r| r.train_loss),
        ("test_acc", |r| r.test_acc),
        ("tau", |r| r.tau),
        ("lr", |r| r.lr),
    ];
    for (col, get) in cols {
        let series = &read[&format!("metrics/{col}")];
        assert_eq!(series.len(), rows.len(), "{col}: {series:?}");
        for (r, (step, v)) in rows.iter().zip(series) {
            assert_eq!(*step, r.epoch);
            assert!(f32_eq(*v, get(r)), "{col} epoch {step}: {v} vs {}", get(r));
        }
    }
    let blocks = diagnostics::read(&dir.join("blocks.csv")).unwrap();
    assert_eq!(blocks.len(), 4 * 3, "epochs 0..=3 × 3 blocks");
    for b in &blocks {
        let series = &read[&format!("blocks/branch_to_skip/{}", b.block)];
        let v = series.iter().find(|(s, _)| *s == b.epoch).unwrap().1;
        assert!(f32_eq(v, b.branch_to_skip), "{b:?}: {v}");
    }
    let n_tags = 9 + 5 * 3;
    assert_eq!(read.len(), n_tags, "{:?}", read.keys().collect::<Vec<_>>());
}
