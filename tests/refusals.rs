//! Refusals end to end, with the real binary: a run directory of another config (train and
//! sweep; `--force-new`), a corrupt checkpoint or one of another config, an unwritable output
//! directory, an empty grid and a bad cell. Each gets one error line and exit code 2, and
//! leaves the existing results byte for byte as they were.

mod common;
use common::{
    csv_epochs, ok, one_line_error, run_1t as run, snapshot, stderr, sweep_error, tiny_grid,
};

/// A run directory records its resolved config and its hash; another config into the same
/// directory is refused (train and sweep, one line, nothing touched); `--force-new` makes a
/// new directory; a hand-edited config.yaml is refused too.
// Long: one run directory taken through its refusals in order, each step on the state the last left.
#[test]
#[allow(clippy::too_many_lines)]
fn another_config_is_refused_and_force_new_makes_a_new_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let g = tiny_grid(tmp.path(), "h", "seeds: [0]\n");
    let g = g.to_str().unwrap();
    ok(&run(&["sweep", g, "-q"], tmp.path()));
    let cell = tmp.path().join("runs/h/s0");
    let hash = std::fs::read_to_string(cell.join("config.sha256")).unwrap();
    assert!(
        hash.ends_with("  config.yaml\n") && hash.len() == 64 + 14,
        "{hash}"
    );
    let before = snapshot(&tmp.path().join("runs"));

    let e = sweep_error(&run(
        &["sweep", g, "-q", "--set", "train.optimizer.lr=0.1"],
        tmp.path(),
    ));
    assert!(
        e.contains("runs/h/s0/config.yaml")
            && e.contains("different config")
            && e.contains("--force-new"),
        "{e}"
    );
    assert_eq!(
        snapshot(&tmp.path().join("runs")),
        before,
        "nothing touched"
    );
    // --status under that config lists the cell as another config's, not as finished, and
    // report refuses to print its numbers under this config.
    let o = run(
        &["sweep", g, "--status", "--set", "train.optimizer.lr=0.1"],
        tmp.path(),
    );
    ok(&o);
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    let row = table.lines().find(|l| l.contains(" s0 ")).unwrap();
    assert_eq!(row.split_whitespace().nth(2), Some("other"), "{table}");
    assert!(
        table.contains("0 finished") && table.contains("1 cell(s) `other`"),
        "{table}"
    );
    let e = one_line_error(&run(
        &["report", g, "--set", "train.optimizer.lr=0.1"],
        tmp.path(),
    ));
    assert!(
        e.contains("different config") && e.contains("--sweep-dir"),
        "{e}"
    );
    assert_eq!(snapshot(&tmp.path().join("runs")), before);

    let o = run(
        &[
            "sweep",
            g,
            "-q",
            "--set",
            "train.optimizer.lr=0.1",
            "--force-new",
        ],
        tmp.path(),
    );
    ok(&o);
    assert!(
        stderr(&o).contains("sweep directory: runs/h-2"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        csv_epochs(&tmp.path().join("runs/h-2/s0/metrics.csv")),
        [1, 2, 3]
    );
    // the same command again finds runs/h-2 and has nothing left to do
    let o = run(
        &[
            "sweep",
            g,
            "-q",
            "--set",
            "train.optimizer.lr=0.1",
            "--force-new",
        ],
        tmp.path(),
    );
    ok(&o);
    assert!(stderr(&o).contains("skipped (finished)"), "{}", stderr(&o));
    assert!(!tmp.path().join("runs/h-3").exists());
    // --status with --force-new looks where that sweep ran.
    let o = run(
        &[
            "sweep",
            g,
            "--status",
            "--force-new",
            "--set",
            "train.optimizer.lr=0.1",
        ],
        tmp.path(),
    );
    ok(&o);
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        table.contains("runs/h-2") && table.contains("1 finished, 0 running"),
        "{table}"
    );

    // train: the run dir of a sweep cell, with another config
    let cfg = tmp.path().join("c.yaml");
    std::fs::write(
        &cfg,
        std::fs::read_to_string(cell.join("config.yaml"))
            .unwrap()
            .replace("epochs: 3", "epochs: 4"),
    )
    .unwrap();
    let before = snapshot(&tmp.path().join("runs"));
    let e = one_line_error(&run(
        &["train", "--config", "c.yaml", "--resume", "-q"],
        tmp.path(),
    ));
    assert!(
        e.contains("different config") && e.contains("--force-new"),
        "{e}"
    );
    assert_eq!(snapshot(&tmp.path().join("runs")), before);
    let o = run(
        &["train", "--config", "c.yaml", "--force-new", "-q"],
        tmp.path(),
    );
    ok(&o);
    assert_eq!(
        csv_epochs(&tmp.path().join("runs/h/s0-2/metrics.csv")),
        [1, 2, 3, 4]
    );

    // a config.yaml edited by hand no longer matches the recorded hash
    let text = std::fs::read_to_string(cell.join("config.yaml")).unwrap();
    std::fs::write(
        cell.join("config.yaml"),
        text.replace("epochs: 3", "epochs: 4"),
    )
    .unwrap();
    let before = snapshot(&tmp.path().join("runs"));
    let e = one_line_error(&run(
        &[
            "train",
            "--config",
            "runs/h/s0/config.yaml",
            "--resume",
            "-q",
        ],
        tmp.path(),
    ));
    assert!(e.contains("config.sha256"), "{e}");
    assert_eq!(snapshot(&tmp.path().join("runs")), before);
}

const TRAIN: &str = "name: r\nout_dir: runs\ndevice: cpu\ndata: {name: synthetic, synthetic_train: 96, synthetic_test: 32}\nmodel: {depth: 8}\ntrain: {epochs: 2, batch_size: 32}\n";

/// A corrupt checkpoint is refused in one line naming it; it, the metrics and the config stay
/// as they were (nothing is overwritten with a fresh start).
#[test]
fn a_corrupt_checkpoint_is_refused_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("r.yaml"), TRAIN).unwrap();
    ok(&run(
        &["train", "--config", "r.yaml", "--stop-after", "1", "-q"],
        tmp.path(),
    ));
    let ckpt = tmp.path().join("runs/r/checkpoint.safetensors");
    let good = std::fs::read(&ckpt).unwrap();
    std::fs::write(&ckpt, &good[..good.len() / 2]).unwrap();
    let before = snapshot(&tmp.path().join("runs"));
    let e = one_line_error(&run(
        &["train", "--config", "r.yaml", "--resume", "-q"],
        tmp.path(),
    ));
    assert!(
        e.contains("runs/r/checkpoint.safetensors") && e.contains("corrupt"),
        "{e}"
    );
    assert_eq!(
        e.matches("checkpoint.safetensors").count(),
        1,
        "named once: {e}"
    );
    assert_eq!(snapshot(&tmp.path().join("runs")), before);
}

/// A checkpoint copied from a run of another config (same model, other learning rate) is
/// refused by its config hash; nothing is touched.
#[test]
fn a_checkpoint_of_another_config_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("r.yaml"), TRAIN).unwrap();
    for (name, lr) in [("a", "0.05"), ("b", "0.1")] {
        ok(&run(
            &[
                "train",
                "--config",
                "r.yaml",
                "--set",
                &format!("name={name}"),
                "--set",
                &format!("train.optimizer.lr={lr}"),
                "--stop-after",
                "1",
                "-q",
            ],
            tmp.path(),
        ));
    }
    std::fs::copy(
        tmp.path().join("runs/a/checkpoint.safetensors"),
        tmp.path().join("runs/b/checkpoint.safetensors"),
    )
    .unwrap();
    let before = snapshot(&tmp.path().join("runs"));
    let e = one_line_error(&run(
        &[
            "train",
            "--config",
            "r.yaml",
            "--set",
            "name=b",
            "--set",
            "train.optimizer.lr=0.1",
            "--resume",
            "-q",
        ],
        tmp.path(),
    ));
    assert!(
        e.contains("runs/b/checkpoint.safetensors") && e.contains("another config"),
        "{e}"
    );
    assert_eq!(snapshot(&tmp.path().join("runs")), before);
}

/// An output directory that cannot be created (its parent is a file: root ignores
/// permission bits, so this is the unwritable directory a test can make) is one line.
#[test]
fn an_unwritable_output_directory_is_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("afile"), "").unwrap();
    std::fs::write(
        tmp.path().join("r.yaml"),
        TRAIN.replace("out_dir: runs", "out_dir: afile/runs"),
    )
    .unwrap();
    let e = one_line_error(&run(&["train", "--config", "r.yaml", "-q"], tmp.path()));
    assert!(
        e.contains("afile/runs/r") && e.contains("cannot create"),
        "{e}"
    );
    let g = tiny_grid(tmp.path(), "u", "seeds: [0]\n");
    let e = one_line_error(&run(
        &[
            "sweep",
            g.to_str().unwrap(),
            "-q",
            "--set",
            "out_dir=afile/x",
        ],
        tmp.path(),
    ));
    assert!(
        e.contains("afile/x/u") && e.contains("cannot create"),
        "{e}"
    );
    assert_eq!(std::fs::read(tmp.path().join("afile")).unwrap(), b"");
}

/// A grid that expands to no cell, and `--cell` out of range: one line each.
#[test]
fn an_empty_grid_and_a_bad_cell_are_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let g = tiny_grid(tmp.path(), "e", "seeds: []\n");
    let e = one_line_error(&run(&["sweep", g.to_str().unwrap()], tmp.path()));
    assert!(e.contains("e.yaml") && e.contains("no cell"), "{e}");
    let g = tiny_grid(tmp.path(), "e", "seeds: [0]\n");
    let e = one_line_error(&run(
        &["sweep", g.to_str().unwrap(), "--cell", "5"],
        tmp.path(),
    ));
    assert!(e.contains("no cell 5") && e.contains("0..=0"), "{e}");
    // A cell listed twice would be its own rival for the lock, packed or not.
    for pack in ["1", "2"] {
        let e = one_line_error(&run(
            &[
                "sweep",
                g.to_str().unwrap(),
                "--cell",
                "0,0",
                "--pack",
                pack,
            ],
            tmp.path(),
        ));
        assert!(e.contains("cell 0 is listed twice"), "{e}");
    }
    assert!(!tmp.path().join("runs").exists());
}

/// A sweep whose later cell holds another config's run is refused before any cell runs: the
/// earlier cells, free, are not trained first (their directories are not even made), and the
/// tree is byte for byte as it was.
#[test]
fn a_conflict_in_a_later_cell_is_refused_before_the_first_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let g = tiny_grid(tmp.path(), "late", "seeds: [0, 1]\n");
    let g = g.to_str().unwrap();
    // Only the second cell (s1), under the grid's own config.
    ok(&run(&["sweep", g, "-q", "--cell", "1"], tmp.path()));
    let runs = tmp.path().join("runs/late");
    assert!(runs.join("s1/metrics.csv").exists() && !runs.join("s0").exists());
    let before = snapshot(&tmp.path().join("runs"));
    let e = sweep_error(&run(
        &["sweep", g, "-q", "--set", "train.optimizer.lr=0.1"],
        tmp.path(),
    ));
    assert!(
        e.contains("runs/late/s1/config.yaml") && e.contains("different config"),
        "{e}"
    );
    assert!(!runs.join("s0").exists(), "the free first cell was trained");
    assert_eq!(
        snapshot(&tmp.path().join("runs")),
        before,
        "nothing touched"
    );
}
