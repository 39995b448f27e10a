//! Marion et al., "Scaling ResNets in the Large-depth Regime" (arXiv:2206.06929;
//! docs/marion2022.md): the batched models' hand-written backward pass equals autograd, the
//! scaling measurement shows the i.i.d. and smooth pictures, and the figure files load, fail
//! clearly and run (the inits' laws in tests/marion_init.rs, the training in
//! tests/marion_train.rs).
use deepres::model::full_resnet::{depth_scale, FullResNet};
use deepres::model::marion_net::{MarionModel, MarionNet, MarionShape};
use deepres::model::weight_init::LayerInit;
use deepres::papers::marion2022::{Figure, FigureSpec};
use tch::{Device, Kind, Tensor};

mod common;
use common::scalar as f;
/// Tests that draw from torch's global RNG run one at a time (seeded, reproducible).
use common::serial as lock;

/// The hand-written backward recursion equals autograd's ∂ℓ/∂h_0.
#[test]
fn manual_backward_matches_autograd() {
    let _g = lock();
    tch::manual_seed(6);
    for kind in [MarionModel::Full, MarionModel::Simple] {
        let shape = MarionShape {
            depth: 30,
            width: 12,
            d_in: 7,
            d_out: 3,
        };
        let net = MarionNet::new(kind, 4, shape, LayerInit::Iid, Device::Cpu);
        let x = Tensor::rand([4, 5, 7], (Kind::Float, Device::Cpu));
        let scale = Tensor::from_slice(&[0.5f32, 0.2, 1.0, 0.3, 0.1]).view([1, 5, 1]);
        let h0 = net.embed(&x).detach().set_requires_grad(true);
        let mut masks = Vec::new();
        let hl = net.hidden(&h0, &scale, Some(&mut masks));
        let loss = net.output(&hl).square().sum(Kind::Float);
        let g = Tensor::run_backward(&[&loss], &[&h0, &hl], false, false);
        let manual = tch::no_grad(|| net.hidden_grad(&g[1], &scale, &masks));
        let err = f(&(&manual - &g[0]).abs().max()) / f(&g[0].abs().max());
        assert!(err < 1e-4, "{kind}: relative error {err}");
    }
}

/// `scaling::measure`'s five quantities against their definitions computed with autograd
/// (ℓ = ‖B h_L − target‖², the authors' loss): the forward and backward metrics, the output,
/// and the norm ratios the authors histogram for M2, ‖h_L‖/‖h_0‖ and ‖∂ℓ/∂h_0‖/‖∂ℓ/∂h_L‖.
#[test]
fn the_measured_metrics_and_ratios_match_autograd() {
    let _g = lock();
    tch::manual_seed(8);
    for kind in [MarionModel::Full, MarionModel::Simple] {
        let shape = MarionShape {
            depth: 25,
            width: 10,
            d_in: 6,
            d_out: 1,
        };
        let net = MarionNet::new(kind, 3, shape, LayerInit::Iid, Device::Cpu);
        let x = Tensor::rand([3, 4, 6], (Kind::Float, Device::Cpu));
        let target = Tensor::rand([3, 4, 1], (Kind::Float, Device::Cpu));
        let scale = Tensor::from_slice(&[0.5f32, 0.2, 1.0, 0.3]).view([1, 4, 1]);
        let got = deepres::papers::marion2022::scaling::measure(&net, &x, &target, &scale);
        let h0 = net.embed(&x).detach().set_requires_grad(true);
        let hl = net.hidden(&h0, &scale, None);
        let out = net.output(&hl);
        let loss = (&out - &target).square().sum(Kind::Float);
        let g = Tensor::run_backward(&[&loss], &[&h0, &hl], false, false);
        let norm = |t: &Tensor| t.detach().norm_scalaropt_dim(2, [-1i64].as_slice(), false);
        let want = [
            norm(&(&hl - &h0)) / norm(&h0),
            norm(&(&g[0] - &g[1])) / norm(&g[1]),
            out.detach().select(-1, 0),
            norm(&hl) / norm(&h0),
            norm(&g[0]) / norm(&g[1]),
        ];
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            let b = b.to_kind(Kind::Double);
            let err = f(&((a - &b).abs() / b.abs()).max());
            assert!(err < 1e-4, "{kind}: quantity {i}: relative error {err}");
        }
    }
}

#[test]
fn full_resnet_weights_have_the_paper_shapes_and_a_b_laws() {
    let _g = lock();
    tch::manual_seed(7);
    let m = FullResNet::new(3, 10, 40, 64, 1, LayerInit::Smooth, Device::Cpu);
    assert_eq!(m.w.size(), vec![3, 10, 40, 40]);
    assert_eq!(m.a.size(), vec![3, 40, 64]);
    assert_eq!(m.b.size(), vec![3, 1, 40]);
    let s = depth_scale(100, 0.5, Device::Cpu);
    assert!((f(&s) - 0.1).abs() < 1e-7);
    // A and B as the authors' create_linear_layer: uniform on ±√(3/fan_in), so variance
    // 1/fan_in (A: fan_in 64, 7680 entries; B: fan_in 40, 120 entries), reaching near the bound.
    for (name, t, fan_in, rel) in [("A", &m.a, 64.0, 0.05), ("B", &m.b, 40.0, 0.25)] {
        let bound = (3.0f64 / fan_in).sqrt();
        let max = f(&t.abs().max());
        assert!(
            max <= bound && max > 0.9 * bound,
            "{name}: max {max}, bound {bound}"
        );
        let var = f(&t.var(true)) * fan_in;
        assert!((var - 1.0).abs() < rel, "{name}: variance × fan_in = {var}");
    }
}

fn slopes(rows: &[deepres::papers::marion2022::scaling::ScalingRow]) -> Vec<(f64, f64, f64)> {
    deepres::papers::marion2022::scaling::summarize(rows)
        .into_iter()
        .map(|(_, beta, series)| {
            let pts = |b: bool| -> Vec<(f64, f64)> {
                series
                    .iter()
                    .map(|(l, f, bw)| (*l as f64, if b { bw.mean } else { f.mean }))
                    .collect()
            };
            (
                beta,
                deepres::util::fit::fit(&pts(false)).power,
                deepres::util::fit::fit(&pts(true)).power,
            )
        })
        .collect()
}

fn scaling_spec(
    init: LayerInit,
    betas: Vec<f64>,
) -> deepres::papers::marion2022::scaling::ScalingSpec {
    deepres::papers::marion2022::scaling::ScalingSpec {
        model: MarionModel::Full,
        inits: vec![init],
        depths: vec![10, 40, 160, 640],
        betas,
        width: 24,
        input_dim: 16,
        output_dim: 1,
        models: 24,
        inputs: 1,
        chunk: 24,
        seed: 0,
        device: Device::Cpu,
    }
}

/// The paper's picture at small size: i.i.d. weights need β = 1/2, smooth ones β = 1.
#[test]
fn scaling_metrics_show_the_iid_and_smooth_regimes() {
    let _g = lock();
    let rows = deepres::papers::marion2022::scaling::run(
        &scaling_spec(LayerInit::Iid, vec![0.25, 0.5, 1.0]),
        None,
        true,
    )
    .unwrap();
    assert_eq!(rows.len(), 4 * 3 * 24);
    let s = slopes(&rows);
    eprintln!("iid slopes {s:?}");
    assert!(s[0].1 > 0.6 && s[0].2 > 0.6, "β = 0.25 must grow: {s:?}");
    assert!(
        s[1].1.abs() < 0.15 && s[1].2.abs() < 0.15,
        "β = 0.5 bounded: {s:?}"
    );
    assert!(
        (s[2].1 + 0.5).abs() < 0.1 && (s[2].2 + 0.5).abs() < 0.1,
        "β = 1 ∝ L^-1/2: {s:?}"
    );
    let rows = deepres::papers::marion2022::scaling::run(
        &scaling_spec(LayerInit::Smooth, vec![0.5, 1.0, 2.0]),
        None,
        true,
    )
    .unwrap();
    let s = slopes(&rows);
    eprintln!("smooth slopes {s:?}");
    assert!(s[0].1 > 0.6, "smooth β = 0.5 must grow: {s:?}");
    assert!(
        s[1].1.abs() < 0.15 && s[1].2.abs() < 0.15,
        "smooth β = 1 bounded: {s:?}"
    );
    assert!((s[2].1 + 1.0).abs() < 0.1, "smooth β = 2 ∝ 1/L: {s:?}");
}

#[test]
fn every_figure_file_loads_at_both_scales() {
    let mut n = 0;
    for e in std::fs::read_dir("experiments/marion2022").unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            for scale in ["smoke", "full"] {
                deepres::papers::marion2022::Figure::load(&p, scale)
                    .unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
            }
            n += 1;
        }
    }
    assert_eq!(n, 9);
}

#[test]
fn a_bad_figure_file_gets_one_clear_error_line_and_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.yaml");
    let text = std::fs::read_to_string("experiments/marion2022/fig1.yaml")
        .unwrap()
        .replace("  width: 40", "  widht: 40");
    std::fs::write(&bad, text).unwrap();
    let err = deepres::papers::marion2022::Figure::load(&bad, "smoke").unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("bad.yaml") && msg.contains("widht") && msg.contains("unknown key"),
        "{msg}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deepres"))
        .args(["marion", bad.to_str().unwrap(), "--out"])
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(!tmp.path().join("out").exists());
    // A bad value names its key, also inside the spec's `kind`-tagged settings (where serde
    // itself loses the path), and a value that two keys share names neither.
    let fig7 = std::path::Path::new("experiments/marion2022/fig7.yaml");
    for (set, key) in [
        (
            "fbm_sampler=foo",
            "--set fbm_sampler=foo: spec.fbm_sampler: unknown value `foo`",
        ),
        (
            "width=abc",
            "--set width=abc: spec.width: invalid type: string \"abc\"",
        ),
        (
            "model=foo",
            "--set model=foo: spec.model: unknown value `foo`",
        ),
    ] {
        let err = deepres::papers::marion2022::Figure::load_with(fig7, "full", &[set.into()]);
        let msg = format!("{:#}", err.unwrap_err());
        assert!(
            msg.contains("fig7.yaml") && msg.contains(key),
            "--set {set}: {msg}"
        );
    }
    let shared = ["model=foo".into(), "fbm_sampler=foo".into()];
    let err = deepres::papers::marion2022::Figure::load_with(fig7, "full", &shared);
    let msg = format!("{:#}", err.unwrap_err());
    assert!(
        msg.contains("fig7.yaml: spec: unknown value `foo`"),
        "{msg}"
    );
    let bad_scale = deepres::papers::marion2022::Figure::load(
        std::path::Path::new("experiments/marion2022/fig1.yaml"),
        "huge",
    )
    .unwrap_err();
    assert!(format!("{bad_scale:#}").contains("smoke"));
    // --set overrides keys of the scaled spec, and names a wrong key.
    let fig7 = std::path::Path::new("experiments/marion2022/fig7.yaml");
    let fig = deepres::papers::marion2022::Figure::load_with(
        fig7,
        "smoke",
        &["depth=50".into(), "hursts.points=3".into()],
    )
    .unwrap();
    match fig.spec {
        deepres::papers::marion2022::FigureSpec::Heatmap(h) => {
            assert_eq!((h.depth, h.hursts.points, h.betas.points), (50, 3, 70))
        }
        _ => panic!("fig7 is a heatmap"),
    }
    let err = deepres::papers::marion2022::Figure::load_with(fig7, "smoke", &["hurst=3".into()])
        .unwrap_err();
    assert!(format!("{err:#}").contains("hurst"), "{err:#}");
}

/// A figure file that leaves out every optional key gets the defaults (those of the former
/// per-field serde defaults).
#[test]
fn optional_keys_get_their_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let load = |spec: &str| {
        let p = tmp.path().join("min.yaml");
        std::fs::write(&p, format!("figure: X\ntitle: x\nspec:\n{spec}")).unwrap();
        Figure::load(&p, "smoke").unwrap().spec
    };
    let scaling = "  kind: scaling\n  model: full\n  init: iid\n  metric: forward\n  depths: [10]\n  betas: [1]\n";
    match load(scaling) {
        FigureSpec::Scaling(s) => {
            assert_eq!((s.sizes.width, s.sizes.models, s.sizes.inputs), (40, 50, 1));
            assert_eq!((s.draw.input_dim, s.draw.chunk, s.draw.seed), (64, 50, 0));
        }
        _ => panic!("a scaling figure"),
    }
    let heatmap = "  kind: heatmap\n  model: full\n  hursts: {from: 0.1, to: 0.9, points: 3}\n  betas: {from: 0.1, to: 0.9, points: 3}\n  depth: 10\n  models: 2\n  inputs: 2\n  explosion_log10: 0.0\n";
    match load(heatmap) {
        FigureSpec::Heatmap(s) => {
            assert_eq!(s.width.width, 40);
            assert_eq!((s.draw.input_dim, s.draw.chunk, s.draw.seed), (64, 50, 0));
        }
        _ => panic!("a heatmap"),
    }
    let accuracy = "  kind: accuracy\n  model: simple\n  datasets: [[synthetic]]\n  hursts: {from: 0.1, to: 0.9, points: 3}\n  betas: {from: 0.1, to: 0.9, points: 3}\n  depth: 10\n  width: 8\n  lrs: [0.01]\n  train: {epochs: 1, batch: 10, lr_step: 5}\n";
    match load(accuracy) {
        FigureSpec::Accuracy(s) => {
            assert_eq!((s.batched.chunk, s.training.seed), (50, 0));
            assert_eq!(
                (s.training.train.limit_train, s.training.train.limit_test),
                (None, None)
            );
        }
        _ => panic!("an accuracy figure"),
    }
    // Required keys stay required; unknown keys stay errors, also next to flattened ones.
    let err = Figure::load_with(&tmp.path().join("min.yaml"), "smoke", &["chunkk=3".into()]);
    assert!(format!("{:#}", err.unwrap_err()).contains("chunkk"));
    let no_width = accuracy.replace("  width: 8\n", "");
    let p = tmp.path().join("min.yaml");
    std::fs::write(&p, format!("figure: X\ntitle: x\nspec:\n{no_width}")).unwrap();
    let err = format!("{:#}", Figure::load(&p, "smoke").unwrap_err());
    assert!(err.contains("width"), "{err}");
}

/// M7 with `fbm_sampler: authors` end to end at a tiny size: every measured cell is drawn by
/// the authors' sampler (the init column), the boundary table and acceptance are written, and
/// the same seed with the exact sampler gives other metrics (the draws differ in law).
#[test]
fn m7_runs_with_the_authors_sampler_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |sampler: &str| {
        let out = tmp.path().join(sampler);
        let done = std::process::Command::new(env!("CARGO_BIN_EXE_deepres"))
            .args(["marion", "experiments/marion2022/fig7.yaml", "-q", "--out"])
            .arg(&out)
            .args([
                "--set",
                "depth=30",
                "--set",
                "hursts.points=3",
                "--set",
                "betas.points=4",
            ])
            .args(["--set", "models=2", "--set", "inputs=2"])
            .args(["--set", &format!("fbm_sampler={sampler}")])
            .output()
            .unwrap();
        // Exit 0 or 3 (a claim's check failing at this tiny size); not an error.
        assert!(
            matches!(done.status.code(), Some(0 | 3)),
            "{sampler}: {}",
            String::from_utf8_lossy(&done.stderr)
        );
        assert!(out.join("boundary.csv").exists() && out.join("acceptance.csv").exists());
        std::fs::read_to_string(out.join("scaling.csv")).unwrap()
    };
    let authors = run("authors");
    let rows: Vec<&str> = authors.lines().skip(1).collect();
    assert_eq!(rows.len(), 3 * 4 * 2 * 2, "H × β × models × inputs rows");
    assert!(
        rows.iter().all(|r| r.contains(",fbm-authors:")),
        "{authors}"
    );
    let exact = run("exact");
    assert!(exact.lines().skip(1).all(|r| r.contains(",fbm:")));
    let metrics = |csv: &str| -> Vec<String> {
        csv.lines()
            .skip(1)
            .map(|r| r.split(',').skip(7).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_ne!(metrics(&authors), metrics(&exact));
}

/// M9 with no dataset on disk (an empty working directory: no data/): the dataset is skipped
/// with the fetch command, and the figure does not end silently with no check: its claim is
/// listed as not shown and the last line says that no check ran.
#[test]
fn m9_without_data_says_its_claim_is_not_shown() {
    let tmp = tempfile::tempdir().unwrap();
    let fig9 =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/marion2022/fig9.yaml");
    let done = std::process::Command::new(env!("CARGO_BIN_EXE_deepres"))
        .arg("marion")
        .arg(&fig9)
        .args(["--scale", "smoke", "--set", "datasets=[[cifar10]]"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let (out, err) = (common::stdout(&done), common::stderr(&done));
    assert_eq!(done.status.code(), Some(0), "{err}");
    assert!(
        err.contains("skipped cifar10") && err.contains("deepres data fetch cifar10"),
        "{err}"
    );
    assert!(
        out.contains("not shown: training fails where the initialization explodes, on cifar10"),
        "{out}"
    );
    assert_eq!(
        out.trim_end().lines().last(),
        Some("Acceptance: no check ran; 1 claim not shown by this run (above)"),
        "{out}"
    );
}
