//! Chizat (2025, arXiv:2509.10167; docs/chizat2025.md, "Where the √D law holds"): the study of
//! the error's exponent in D (`kind: d-law`, study C5D) and C2 at several D run end to end; the
//! task's two targets are the closed forms they claim; a study rerun reuses each finished
//! setting and refuses another setting's file; C1 (`kind: forward-pass`) runs end to end and its
//! table is recomputed from its CSVs.
use deepres::papers::chizat2025::{self as chizat, Target, TaskSpec};
use std::path::Path;
use tch::{Device, Tensor};

mod common;
use common::serial as lock;

/// y = tanh(2⟨w, x⟩) with w = (1, 1, 1)/√3 on the first three coordinates (three-coords) or
/// w = e₁ (one-direction), recomputed from x.
#[test]
fn the_targets_are_their_closed_forms() {
    let _g = lock();
    for (target, w) in [
        (Target::ThreeCoords, vec![1.0 / 3f64.sqrt(); 3]),
        (Target::OneDirection, vec![1.0]),
    ] {
        let spec = TaskSpec {
            target,
            ..Default::default()
        };
        let (x, y) = chizat::task(&spec, 5, 0, Device::Cpu);
        let mut want = Tensor::zeros([32], (tch::Kind::Float, Device::Cpu));
        for (j, wj) in w.iter().enumerate() {
            want += x.select(1, j as i64) * *wj;
        }
        let want = (want * 2.0).tanh();
        let diff = (&y - &want).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{target:?}: {diff}");
    }
}

fn study(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut set: Vec<String> = vec![
        "sweep.models=24".into(),
        "sweep.depth=[2, 8]".into(),
        "sweep.width=[2, 8]".into(),
        "sweep.dims=[2, 4]".into(),
        "sweep.eval_steps=[0, 10, 20]".into(),
        "sweep.dynamics.steps=20".into(),
        "sweep.limit.depth=32".into(),
        "sweep.limit.width=16".into(),
        format!("sweep.limit.cache={}", dir.join("limits").display()),
        "train_points=[16, 64]".into(),
        "targets=[three-coords, one-direction]".into(),
        "etas=[1.0]".into(),
        "bootstrap=100".into(),
    ];
    set.extend(extra.iter().map(|s| s.to_string()));
    set
}

// Long: one tiny study trained once, then its outputs, control, rerun and refusal checked in order.
#[test]
#[allow(clippy::too_many_lines)]
fn the_d_law_study_runs_end_to_end_and_reuses_finished_settings() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let path = Path::new("experiments/chizat2025/dlaw.yaml");
    let fig = chizat::load(path, "smoke", &study(dir.path(), &[])).unwrap();
    let out = dir.path().join("c5d");
    let output = chizat::run(&fig, &out, Device::Cpu, true).unwrap();
    for f in [
        "exponents.csv",
        "init.csv",
        "errors.csv",
        "limits.csv",
        "dlaw.svg",
        "README.md",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    // 2 n × 2 targets × 3 steps rows, each estimate inside its own interval.
    let csv = std::fs::read_to_string(out.join("exponents.csv")).unwrap();
    let rows: Vec<Vec<f64>> = csv
        .lines()
        .skip(1)
        .map(|r| r.split(',').skip(3).map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 12, "{csv}");
    for r in &rows {
        for j in [2, 5, 8, 11] {
            assert!(r[j + 1] <= r[j] && r[j] <= r[j + 2], "{r:?}");
        }
    }
    // The control measured once without training is every setting's own k = 0: the same
    // exponents as init.csv, and p_D(0) − p_D(0) = 0 exactly, interval included.
    let init = std::fs::read_to_string(out.join("init.csv")).unwrap();
    let init: Vec<f64> = init
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    let at_zero: Vec<&Vec<f64>> = rows.iter().filter(|r| r[0] == 0.0).collect();
    assert_eq!(at_zero.len(), 4);
    for r in at_zero {
        assert_eq!(r[1..11], init[..], "{r:?} vs {init:?}");
        assert_eq!(r[11..14], [0.0, 0.0, 0.0], "{r:?}");
    }
    assert_eq!(output.acceptance.measured.len(), 4, "{}", output.text);
    assert!(output.acceptance.checks.is_empty());
    // A rerun reads the 4 finished settings instead of training: a value changed by hand in
    // one of them (key kept) is what the rerun reports.
    let settings = out.join("settings");
    assert_eq!(
        std::fs::read_dir(&settings).unwrap().count(),
        5,
        "4 settings and k = 0"
    );
    let again = dir.path().join("again");
    copy_dir(&settings, &again.join("settings"));
    // (a setting's file: three errors per row; the control's has one)
    let first = std::fs::read_dir(again.join("settings"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .nth(1)
                .unwrap()
                .contains(',')
        })
        .unwrap();
    let text = std::fs::read_to_string(&first).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let last = lines[1].rsplit(',').next().unwrap().to_string();
    // A new value written as deepres writes numbers (`{:e}`, the shortest form that reads
    // back the same), so the rerun prints it unchanged: an edited digit need not read back
    // as itself (7.588594734668732e-2 prints as 7.588594734668733e-2).
    let planted = format!("{:e}", 0.5 + 3.0 * last.parse::<f64>().unwrap());
    assert_ne!(planted, last);
    lines[1] = format!("{},{planted}", lines[1].rsplit_once(',').unwrap().0);
    std::fs::write(&first, lines.join("\n") + "\n").unwrap();
    chizat::run(&fig, &again, Device::Cpu, true).unwrap();
    let errors = std::fs::read_to_string(again.join("errors.csv")).unwrap();
    assert!(
        errors.lines().any(|r| r.ends_with(&format!(",{planted}"))),
        "{planted}"
    );
    let unchanged = std::fs::read_to_string(out.join("errors.csv")).unwrap();
    assert!(!unchanged
        .lines()
        .any(|r| r.ends_with(&format!(",{planted}"))));
    // Another setting's file under this setting's name: one line naming it and the fix.
    let files: Vec<_> = std::fs::read_dir(&settings)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    std::fs::copy(&files[0], &files[1]).unwrap();
    let err = format!(
        "{:#}",
        chizat::run(&fig, &out, Device::Cpu, true).err().unwrap()
    );
    let name = files[1].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        err.contains(&name) && err.contains("another setting") && err.contains("delete it"),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

/// C2 at two D: each D in its own folder, dims.csv with b' = b√D per row, the slopes measured.
#[test]
fn c2_at_several_dimensions_fits_b_per_d() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let set: Vec<String> = vec![
        "dim=[2, 8]".into(),
        "depths=[2, 8]".into(),
        "widths=[8, 64]".into(),
        "repetitions=2".into(),
        "limit.depth=64".into(),
        "limit.width=32".into(),
        format!("limit.cache={}", dir.path().join("limits").display()),
        "dynamics.steps=10".into(),
    ];
    let fig = chizat::load(
        Path::new("experiments/chizat2025/fig2d.yaml"),
        "smoke",
        &set,
    )
    .unwrap();
    let out = dir.path().join("c2d");
    let output = chizat::run(&fig, &out, Device::Cpu, true).unwrap();
    for f in [
        "D2/errors.csv",
        "D8/errors.csv",
        "D8/fig2d.svg",
        "dims.csv",
        "README.md",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let dims = std::fs::read_to_string(out.join("dims.csv")).unwrap();
    for row in dims.lines().skip(1) {
        let c: Vec<f64> = row.split(',').map(|v| v.parse().unwrap()).collect();
        assert!((c[3] / c[2] - c[0].sqrt()).abs() < 1e-4, "{row}");
    }
    assert!(output.text.contains("## D = 8 (in D8/)"), "{}", output.text);
    assert_eq!(output.acceptance.measured.len(), 1);
    assert!(output.acceptance.checks.is_empty());
    // Each D's slopes are said beside the paper's range, not as checks that pass or fail.
    assert!(
        !output.text.contains("expected in") && output.text.contains("not judged here"),
        "{}",
        output.text
    );
    // A bad D names the key.
    let bad = chizat::load(
        Path::new("experiments/chizat2025/fig2d.yaml"),
        "smoke",
        &["dim=[2, 0]".to_string()],
    )
    .err()
    .unwrap();
    assert!(format!("{bad:#}").contains("spec.dim"), "{bad:#}");
}

/// The numeric cells of a markdown table's rows whose first cell is an integer (L).
fn table_rows(text: &str) -> Vec<Vec<f64>> {
    text.lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect::<Vec<_>>()
        })
        .filter(|c| c[0].parse::<i64>().is_ok())
        .map(|c| c.iter().map(|v| v.parse::<f64>().unwrap()).collect())
        .collect()
}

/// A CSV's rows, every cell a number.
fn numbers(path: &Path) -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse::<f64>().unwrap()).collect())
        .collect()
}

/// C1 end to end, tiny: forward.csv holds ⟨e_1, h_ℓ⟩ for ℓ = 0 … L of every depth, every
/// depth starts from the same held-out inputs as the limit (ℓ = 0 is the input itself), and
/// the table's two distances are recomputed here from forward.csv and limit.csv alone: the RMS
/// over ℓ and inputs against the limit's nearest layer round(ℓ/L · L_lim), and the RMS at ℓ = L.
#[test]
fn c1_forward_pass_runs_end_to_end_and_its_table_is_its_csvs() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let set: Vec<String> = [
        "depths=[2, 8]",
        "inputs=3",
        "task.test=3",
        "limit.depth=30", // ℓ/L · 30 is not an integer for L = 8
        "limit.width=64",
        "dynamics.steps=10",
    ]
    .map(String::from)
    .into_iter()
    .chain([format!(
        "limit.cache={}",
        dir.path().join("limits").display()
    )])
    .collect();
    let fig = chizat::load(Path::new("experiments/chizat2025/fig1.yaml"), "smoke", &set).unwrap();
    let out = dir.path().join("c1");
    let output = chizat::run(&fig, &out, Device::Cpu, true).unwrap();
    for f in ["forward.csv", "limit.csv", "fig1.svg", "README.md"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let fwd = numbers(&out.join("forward.csv")); // L, layer, depth_fraction, input1..3
    let lim = numbers(&out.join("limit.csv")); // layer, depth_fraction, input1..3
    assert_eq!(lim.len(), 31);
    let table = table_rows(&output.text);
    assert_eq!(table.len(), 2, "{}", output.text);
    for (row, depth) in table.iter().zip([2usize, 8]) {
        let tr: Vec<&Vec<f64>> = fwd.iter().filter(|r| r[0] == depth as f64).collect();
        assert_eq!(tr.len(), depth + 1, "L = {depth}: layers 0 … L");
        let mut sum = 0.0;
        for (l, r) in tr.iter().enumerate() {
            assert_eq!(r[1], l as f64);
            assert!((r[2] - l as f64 / depth as f64).abs() < 1e-6);
            let nearest = &lim[(l as f64 / depth as f64 * 30.0).round() as usize];
            for i in 0..3 {
                if l == 0 {
                    assert_eq!(r[3 + i], lim[0][2 + i], "L = {depth}: h_0 is not the input");
                }
                sum += (r[3 + i] - nearest[2 + i]).powi(2);
            }
        }
        let dist = (sum / ((depth + 1) * 3) as f64).sqrt();
        let last = tr[depth];
        let out_err = ((0..3)
            .map(|i| (last[3 + i] - lim[30][2 + i]).powi(2))
            .sum::<f64>()
            / 3.0)
            .sqrt();
        assert_eq!(row[0], depth as f64);
        assert!(
            (row[1] - dist).abs() < 2e-4,
            "L = {depth}: {row:?} vs {dist}"
        );
        assert!(
            (row[2] - out_err).abs() < 2e-4,
            "L = {depth}: {row:?} vs {out_err}"
        );
        // The blocks moved h: the trace is not the input repeated.
        assert!((0..3).any(|i| (last[3 + i] - tr[0][3 + i]).abs() > 1e-3));
    }
    assert_eq!(output.acceptance.checks.len(), 1);
}
