//! Sweeps: running tiny sweeps on synthetic data (skip, resume, divergence, failure, status
//! listing). The grid file's expansion is in tests/grid.rs.
use deepres::model::config::Norm;
use deepres::sweep::{cell_status, run_sweep, status_table, Grid, SweepOptions};
use deepres::train::RunStatus;
use deepres::train::{self, metrics, RunOptions};
use std::path::Path;

mod common;
use common::{serial, write_grid};

/// A base config training in well under a second per epoch.
const TINY: &str = "
base:
  device: cpu
  data: {name: synthetic, synthetic_train: 128, synthetic_test: 64}
  model: {depth: 8}
  train:
    epochs: 2
    batch_size: 32
    eval_batch_size: 64
    optimizer: {lr: 0.05}
    schedule: {kind: constant}
";

fn quiet() -> SweepOptions {
    SweepOptions {
        quiet: true,
        ..Default::default()
    }
}

fn csv_epochs(dir: &Path) -> Vec<i64> {
    metrics::read(&dir.join("metrics.csv"))
        .unwrap()
        .iter()
        .map(|r| r.epoch)
        .collect()
}

#[test]
fn a_sweep_runs_its_cells_then_skips_them_untouched() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let path = write_grid(tmp.path(), &format!("name: s3\n{TINY}grid: {{train.optimizer.lr: [0.05, 0.1]}}\nseeds: [0, 1]\nscales: {{one: {{seeds: [0], set: {{train.epochs: 1}}}}}}\n"));
    let g = Grid::load(&path, Some("one"), &[]).unwrap();
    let cells = g.cells().unwrap();
    assert_eq!(cells.len(), 2);
    assert!(cells
        .iter()
        .all(|c| cell_status(c) == (RunStatus::Missing, None)));
    let r = run_sweep(&g, &quiet()).unwrap();
    assert_eq!(
        (r.ran, r.skipped, r.diverged, r.failed.len()),
        (2, 0, 0, 0),
        "{r:?}"
    );
    let mut bytes = Vec::new();
    for c in &cells {
        let (status, err) = cell_status(c);
        assert_eq!(status, RunStatus::Finished);
        let err = err.unwrap();
        assert!((0.0..=1.0).contains(&err));
        assert_eq!(csv_epochs(&c.dir()), [1]);
        bytes.push(std::fs::read(c.dir().join("metrics.csv")).unwrap());
    }
    let g = Grid::load(&path, Some("one"), &[]).unwrap();
    let r = run_sweep(&g, &quiet()).unwrap();
    assert_eq!(
        (r.ran, r.skipped, r.diverged, r.failed.len()),
        (0, 2, 0, 0),
        "{r:?}"
    );
    for (c, b) in cells.iter().zip(&bytes) {
        assert_eq!(&std::fs::read(c.dir().join("metrics.csv")).unwrap(), b);
    }
    let table = status_table(&g).unwrap();
    assert!(
        table.contains("2 finished, 0 running, 0 diverged, 0 missing"),
        "{table}"
    );
}

#[test]
fn a_sweep_resumes_an_interrupted_cell() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let path = write_grid(
        tmp.path(),
        &format!("name: res\n{TINY}grid: {{model.depth: [8]}}\nseeds: [0, 1]\n"),
    );
    let g = Grid::load(&path, None, &[]).unwrap();
    let cells = g.cells().unwrap();
    let s = train::run(
        &cells[0].config,
        &RunOptions {
            resume: false,
            stop_after: Some(1),
            quiet: true,
        },
    )
    .unwrap();
    assert_eq!(s.status, RunStatus::Running);
    assert_eq!(cell_status(&cells[0]).0, RunStatus::Running);
    let table = status_table(&g).unwrap();
    let row = table.lines().find(|l| l.contains("depth8_s0")).unwrap();
    assert!(row.contains("running") && row.contains("1/2"), "{table}");
    let r = run_sweep(&g, &quiet()).unwrap();
    assert_eq!((r.ran, r.skipped, r.failed.len()), (2, 0, 0), "{r:?}");
    for c in &cells {
        assert_eq!(cell_status(c).0, RunStatus::Finished);
        assert_eq!(csv_epochs(&c.dir()), [1, 2]);
    }
}

#[test]
fn a_diverging_cell_is_recorded_and_the_sweep_goes_on() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let path = write_grid(
        tmp.path(),
        &format!("name: div\n{TINY}variants:\n  nobn: {{model.norm: none, model.depth: 14, train.optimizer.lr: 1000}}\n  bn: {{}}\n"),
    );
    let g = Grid::load(&path, None, &[]).unwrap();
    let cells = g.cells().unwrap();
    assert_eq!(cells[0].config.model.norm, Norm::None);
    let r = run_sweep(&g, &quiet()).unwrap();
    assert_eq!(
        (r.ran, r.skipped, r.diverged, r.failed.len()),
        (2, 0, 1, 0),
        "{r:?}"
    );
    assert_eq!(cell_status(&cells[0]).0, RunStatus::Diverged);
    assert_eq!(cell_status(&cells[1]).0, RunStatus::Finished);
    let r = run_sweep(&g, &quiet()).unwrap();
    assert_eq!((r.ran, r.skipped, r.diverged), (0, 2, 0), "{r:?}");
}

#[test]
fn status_lists_done_running_diverged_and_missing() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let path = write_grid(
        tmp.path(),
        &format!(
            "name: st\n{TINY}variants:\n  dv: {{model.norm: none, model.depth: 14, train.optimizer.lr: 1000}}\n  ok: {{}}\n  half: {{}}\n  todo: {{}}\n"
        ),
    );
    let g = Grid::load(&path, None, &[]).unwrap();
    let cells = g.cells().unwrap();
    let q = |stop| RunOptions {
        resume: false,
        stop_after: stop,
        quiet: true,
    };
    assert_eq!(
        train::run(&cells[0].config, &q(None)).unwrap().status,
        RunStatus::Diverged
    );
    assert_eq!(
        train::run(&cells[1].config, &q(None)).unwrap().status,
        RunStatus::Finished
    );
    assert_eq!(
        train::run(&cells[2].config, &q(Some(1))).unwrap().status,
        RunStatus::Running
    );
    let expect = [
        ("dv_s0", RunStatus::Diverged, "diverged"),
        ("ok_s0", RunStatus::Finished, "finished"),
        ("half_s0", RunStatus::Running, "running"),
        ("todo_s0", RunStatus::Missing, "missing"),
    ];
    let table = status_table(&g).unwrap();
    eprintln!("{table}");
    for (c, (name, status, word)) in cells.iter().zip(expect) {
        assert_eq!(c.name, name);
        let (s, err) = cell_status(c);
        assert_eq!(s, status);
        assert_eq!(
            err.is_some(),
            matches!(status, RunStatus::Finished | RunStatus::Running),
            "{name}"
        );
        let row = table
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap();
        let fields: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(fields[0], c.index.to_string());
        assert_eq!(fields[2], word, "{table}");
        if status == RunStatus::Missing {
            assert_eq!(&fields[3..], ["0/2", "-"]);
        }
        if status == RunStatus::Finished {
            assert_eq!(fields[3], "2/2");
            assert_eq!(fields[4], format!("{:.2}", 100.0 * err.unwrap()));
        }
    }
    assert!(
        table
            .lines()
            .last()
            .unwrap()
            .contains("1 finished, 1 running, 1 diverged, 1 missing"),
        "{table}"
    );
    // The widths are fixed: every row as long as the header.
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[1..=5].windows(2).all(|w| w[0].len() == w[1].len()),
        "{table}"
    );
}

#[test]
fn a_failing_cell_is_reported_and_the_others_still_run() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty-data");
    std::fs::create_dir(&empty).unwrap();
    let path = write_grid(
        tmp.path(),
        &format!(
            "name: fl\n{}variants:\n  broken: {{data.name: cifar10, data.root: {}}}\n  fine: {{}}\n",
            TINY.replace("epochs: 2", "epochs: 1"),
            empty.display()
        ),
    );
    let g = Grid::load(&path, None, &[]).unwrap();
    let r = run_sweep(&g, &quiet()).unwrap();
    assert_eq!((r.ran, r.skipped, r.diverged), (1, 0, 0), "{r:?}");
    assert_eq!(r.failed.len(), 1);
    assert_eq!(r.failed[0].0, "broken_s0");
    assert!(r.failed[0].1.contains("cifar"), "{}", r.failed[0].1);
    assert!(!r.failed[0].1.contains('\n'));
    let cells = g.cells().unwrap();
    assert_eq!(cell_status(&cells[0]).0, RunStatus::Missing);
    assert_eq!(cell_status(&cells[1]).0, RunStatus::Finished);
}

#[test]
fn requires_data_stops_the_sweep_before_any_cell_but_not_the_status() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    std::fs::create_dir(&root).unwrap();
    let path = write_grid(
        tmp.path(),
        &format!(
            "name: rq\n{TINY}variants: {{a: {{}}}}\nscales:\n  full:\n    set: {{data.name: cifar10, data.root: {}}}\n    requires_data: [cifar10]\n",
            root.display()
        ),
    );
    let g = Grid::load(&path, Some("full"), &[]).unwrap();
    assert!(status_table(&g).unwrap().contains("missing"));
    let err = format!("{:#}", run_sweep(&g, &quiet()).unwrap_err());
    let dir = root.join("cifar-10-batches-bin");
    assert!(
        err.starts_with(&format!(
            "{}: scale full needs cifar10 on disk ({}/ missing); ",
            path.display(),
            dir.display()
        )),
        "{err}"
    );
    assert!(err.contains("data fetch cifar10"), "{err}");
    assert!(!err.contains('\n'));
    assert!(!g.dir.exists(), "nothing ran");
    // A partial directory names the first missing file; a complete one passes.
    std::fs::create_dir(&dir).unwrap();
    for f in ["data_batch_1.bin", "data_batch_2.bin"] {
        std::fs::write(dir.join(f), b"").unwrap();
    }
    let err = format!("{:#}", g.check_data().unwrap_err());
    assert!(
        err.contains(&format!(
            "({} missing)",
            dir.join("data_batch_3.bin").display()
        )),
        "{err}"
    );
    for f in [
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ] {
        std::fs::write(dir.join(f), b"").unwrap();
    }
    g.check_data().unwrap();
}

/// A preemption signal stops the sweep: the cell in progress writes its resumable checkpoint
/// (the failpoint `DEEPRES_INTERRUPT_AT` stands in for SIGTERM), `deepres sweep` exits 75 and
/// starts no other cell; the same command afterwards finishes every cell, and the interrupted
/// cell's metrics.csv equals an uninterrupted run's (timing columns aside).
#[test]
fn a_signal_stops_the_sweep_resumably_with_exit_75() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let body = format!("name: pre\n{TINY}grid:\n  model.depth: [8, 14]\n");
    let grid = write_grid(tmp.path(), &body);
    let sweep = |env: Option<&str>| {
        let mut c = common::deepres();
        c.args(["sweep", grid.to_str().unwrap()])
            .current_dir(tmp.path());
        match env {
            Some(at) => c.env("DEEPRES_INTERRUPT_AT", at),
            None => c.env_remove("DEEPRES_INTERRUPT_AT"),
        };
        c.output().unwrap()
    };
    let o = sweep(Some("1:2"));
    assert_eq!(o.status.code(), Some(75), "{}", common::stderr(&o));
    assert!(
        common::stderr(&o).contains("interrupted by a signal at step 2 of epoch 2"),
        "{}",
        common::stderr(&o)
    );
    // The sweep's last line says how to go on with the sweep (it has no --resume).
    let err = common::stderr(&o);
    let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
    assert!(
        last.starts_with("error: ")
            && last.contains("runs/pre: sweep stopped by a signal: ")
            && last.ends_with("1 interrupted (resumable); rerun the same command to continue"),
        "{last}"
    );
    assert!(!err.contains("--resume"), "{err}");
    let runs = tmp.path().join("runs/pre");
    let cells: Vec<_> = std::fs::read_dir(&runs)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("config.yaml").exists())
        .collect();
    assert_eq!(cells.len(), 1, "no second cell started");
    let first = cells[0].path();
    let o = sweep(None);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let got = common::csv_without_timing(&first.join("metrics.csv"));
    // the same cell, uninterrupted, in another sweep directory
    let body2 = format!("name: ref\n{TINY}grid:\n  model.depth: [8]\n");
    let grid2 = write_grid(tmp.path(), &body2);
    let o = common::deepres()
        .args(["sweep", grid2.to_str().unwrap()])
        .current_dir(tmp.path())
        .env_remove("DEEPRES_INTERRUPT_AT")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", common::stderr(&o));
    let reference = std::fs::read_dir(tmp.path().join("runs/ref"))
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.path().join("metrics.csv").exists())
        .unwrap()
        .path();
    assert_eq!(
        got,
        common::csv_without_timing(&reference.join("metrics.csv"))
    );
}
