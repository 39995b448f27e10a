//! `deepres sweep --pack N` end to end with the real binary, in the style of
//! tests/reliability.rs: every packed cell keeps the run directory of a cell alone (config and
//! hash, metrics.csv, checkpoint, best weights, summary, no lock left), trains as it would alone
//! (to a relative [`TOL`]), survives kill -9 and a preemption signal (the rerun's CSVs equal an
//! uninterrupted packed sweep's byte for byte on CPU, timing columns aside), resumes from its
//! periodic mid-epoch checkpoint, and a packed cell resumes alone; a cell another live process holds is left to it.
use std::path::Path;
use std::process::Output;

mod common;
use common::{
    assert_best_not_ahead, assert_same_best, best_file_epoch, csv_epochs, csv_without_timing,
    deepres_1t, deviation, ok, stderr, tiny_grid,
};

/// Relative tolerance of a packed cell's metrics against the same cell swept alone, or in a
/// pack of another size (3 epochs of 3 steps, lr 0.05; grouped and ordinary convolutions round
/// differently): measured up to 2.7e-4 on the 2-core CPU.
const TOL: f64 = 1e-3;

const CELLS: [&str; 3] = ["s0", "s1", "s2"];

fn run(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = deepres_1t();
    c.args(args).current_dir(cwd);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run deepres")
}

fn grid(dir: &Path) -> String {
    let g = tiny_grid(dir, "pk", "seeds: [0, 1, 2]\n");
    g.to_str().unwrap().to_string()
}

fn csvs(root: &Path, out: &str) -> Vec<String> {
    CELLS
        .iter()
        .map(|c| csv_without_timing(&root.join(format!("{out}/pk/{c}/metrics.csv"))))
        .collect()
}

#[test]
fn packed_cells_keep_their_run_directories_and_train_as_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let g = grid(tmp.path());
    let o = run(
        &["sweep", &g, "-q", "--pack", "3", "--set", "out_dir=packed"],
        tmp.path(),
        &[],
    );
    ok(&o);
    assert!(
        stderr(&o).contains("pack of 3: s0, s1, s2"),
        "{}",
        stderr(&o)
    );
    ok(&run(
        &["sweep", &g, "-q", "--set", "out_dir=alone"],
        tmp.path(),
        &[],
    ));
    for (c, (p, a)) in CELLS.iter().zip(
        csvs(tmp.path(), "packed")
            .iter()
            .zip(&csvs(tmp.path(), "alone")),
    ) {
        let dir = tmp.path().join(format!("packed/pk/{c}"));
        for f in [
            "config.yaml",
            "config.sha256",
            "checkpoint.safetensors",
            "best.safetensors",
            "blocks.csv",
        ] {
            assert!(dir.join(f).exists(), "{c}: no {f}");
        }
        let alone_dir = tmp.path().join(format!("alone/pk/{c}"));
        // The same config as the cell swept alone (out_dir aside), so the same key.
        let read = |d: &Path| std::fs::read_to_string(d.join("config.yaml")).unwrap();
        assert_eq!(
            read(&dir).replace("packed/", "alone/"),
            read(&alone_dir),
            "{c}"
        );
        let summary = std::fs::read_to_string(dir.join("summary.json")).unwrap();
        assert!(summary.contains("\"finished\""), "{summary}");
        assert!(!tmp.path().join(format!("packed/pk/{c}.lock")).exists());
        assert_eq!(csv_epochs(&dir.join("metrics.csv")), [1, 2, 3]);
        let err = deviation(p, a);
        eprintln!("{c}: packed vs alone, largest relative deviation {err:.2e}");
        assert!(err <= TOL, "{c}: {err:.2e}\n{p}\n{a}");
    }
    let status = run(
        &["sweep", &g, "--status", "--set", "out_dir=packed"],
        tmp.path(),
        &[],
    );
    assert!(String::from_utf8_lossy(&status.stdout).contains("3 finished"));
    let again = run(
        &["sweep", &g, "--pack", "3", "--set", "out_dir=packed"],
        tmp.path(),
        &[],
    );
    ok(&again);
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 ran (0 diverged), 3 skipped"));
}

/// The grid, and its metrics.csv files (timing aside) swept uninterrupted with `--pack 3`.
fn packed_reference(root: &Path) -> (String, Vec<String>) {
    let g = grid(root);
    let set = ["sweep", &g, "-q", "--pack", "3", "--set", "out_dir=ref"];
    ok(&run(&set, root, &[]));
    (g.clone(), csvs(root, "ref"))
}

#[test]
fn a_killed_or_preempted_pack_resumes_where_it_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let (g, reference) = packed_reference(tmp.path());
    // kill -9 after member s0 wrote epoch 2's row (before its checkpoint); inside the pack's
    // two-phase checkpoint of epoch 2: after s0's pending checkpoint (phase 1 not complete:
    // every member goes back to epoch 1) and after s0's commit (phase 2 begun: s1 and s2 commit
    // theirs on the rerun); the same two at the first epoch after the first that is a new best
    // of a member p (its best.safetensors must not run ahead of its checkpoint, and must be
    // written on the rerun); a signal after step 1 of epoch 2.
    let pending = |out: &str| -> Vec<bool> {
        CELLS
            .iter()
            .map(|c| {
                let dir = tmp.path().join(format!("{out}/pk/{c}"));
                dir.join("checkpoint.pending.safetensors").exists()
            })
            .collect()
    };
    let (p, best) = (CELLS.iter().enumerate())
        .filter_map(|(p, c)| Some((p, best_file_epoch(&tmp.path().join(format!("ref/pk/{c}")))?)))
        .find(|&(_, e)| e > 1)
        .expect("no member of the reference has a best epoch after the first: change the seeds");
    let crash = "DEEPRES_CRASH_AT";
    for (out, env, pending_after_kill) in [
        ("killed", (crash, "after-csv:2".to_string()), vec![false; 3]),
        (
            "phase1",
            (crash, "pack-pending-0:2".into()),
            vec![true, false, false],
        ),
        (
            "phase2",
            (crash, "pack-commit-0:2".into()),
            vec![false, true, true],
        ),
        (
            "best-phase1",
            (crash, format!("pack-pending-{p}:{best}")),
            (0..3).map(|i| i <= p).collect(),
        ),
        (
            "best-phase2",
            (crash, format!("pack-commit-0:{best}")),
            vec![false, true, true],
        ),
        (
            "signalled",
            ("DEEPRES_INTERRUPT_AT", "1:1".into()),
            vec![false; 3],
        ),
    ] {
        let set = format!("out_dir={out}");
        let o = run(
            &["sweep", &g, "-q", "--pack", "3", "--set", &set],
            tmp.path(),
            &[(env.0, &env.1)],
        );
        assert!(!o.status.success(), "{out}: {}", stderr(&o));
        if out == "signalled" {
            assert_eq!(o.status.code(), Some(75), "{}", stderr(&o));
        }
        assert_eq!(pending(out), pending_after_kill, "{out}");
        for c in CELLS {
            assert_best_not_ahead(&tmp.path().join(format!("{out}/pk/{c}")), out);
        }
        ok(&run(
            &["sweep", &g, "-q", "--pack", "3", "--set", &set],
            tmp.path(),
            &[],
        ));
        assert_eq!(csvs(tmp.path(), out), reference, "{out}");
        assert_eq!(pending(out), [false; 3], "{out}");
        for c in CELLS {
            let run = tmp.path().join(format!("{out}/pk/{c}"));
            assert_same_best(&run, &tmp.path().join(format!("ref/pk/{c}")));
        }
    }
}

/// The periodic mid-epoch checkpoint in a pack: at 1e-6 minutes it is due after every step;
/// kill -9 right after step 2 of epoch 2 and its checkpoints (`DEEPRES_CRASH_AT=step-2:2`),
/// and every member resumes from that step, its curve the uninterrupted pack's byte for byte.
#[test]
fn a_killed_pack_resumes_from_its_periodic_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let (g, reference) = packed_reference(tmp.path());
    let args = [
        "sweep",
        &g,
        "--pack",
        "3",
        "--set",
        "out_dir=periodic",
        "--set",
        "train.checkpoint_minutes=0.000001",
    ];
    let o = run(&args, tmp.path(), &[("DEEPRES_CRASH_AT", "step-2:2")]);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(9), "{}", stderr(&o));
    let o = run(&args, tmp.path(), &[]);
    ok(&o);
    let resumed = stderr(&o)
        .matches("resuming after epoch 1, at step 2 of epoch 2")
        .count();
    assert_eq!(resumed, 3, "{}", stderr(&o));
    assert_eq!(csvs(tmp.path(), "periodic"), reference);
}

#[test]
fn a_packed_cell_resumes_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let (g, reference) = packed_reference(tmp.path());
    let set = "out_dir=t";
    let crash = [("DEEPRES_CRASH_AT", "after-csv:2")];
    let o = run(
        &["sweep", &g, "-q", "--pack", "3", "--set", set],
        tmp.path(),
        &crash,
    );
    assert!(!o.status.success());
    // Cell 1 alone from its packed checkpoint (epoch 1), then the other two as a pack of 2.
    ok(&run(
        &["sweep", &g, "-q", "--cell", "1", "--set", set],
        tmp.path(),
        &[],
    ));
    let o = run(
        &["sweep", &g, "-q", "--pack", "3", "--set", set],
        tmp.path(),
        &[],
    );
    ok(&o);
    assert!(stderr(&o).contains("pack of 2: s0, s2"), "{}", stderr(&o));
    let now = csvs(tmp.path(), "t");
    for (i, c) in CELLS.iter().enumerate() {
        let err = deviation(&now[i], &reference[i]);
        eprintln!("{c}: resumed vs uninterrupted pack, largest relative deviation {err:.2e}");
        // s1 went on alone, s0 and s2 in a pack of 2: each rounds differently from the pack
        // of 3 from epoch 2 on.
        assert!(err <= TOL, "{c}: {err:.2e}");
    }
    // Epoch 1, trained by the pack of 3 before the kill, is the reference's byte for byte.
    let first = |s: &str| s.lines().take(2).collect::<Vec<_>>().join("\n");
    for i in 0..3 {
        assert_eq!(first(&now[i]), first(&reference[i]), "{}", CELLS[i]);
    }
}

/// A cell a live process holds is left to it, the others pack without it; once the owner is
/// gone the cell runs (alone: the pack's other cells are done).
#[test]
fn a_packed_sweep_leaves_a_cell_locked_by_a_live_process() {
    let tmp = tempfile::tempdir().unwrap();
    let g = grid(tmp.path());
    std::fs::create_dir_all(tmp.path().join("runs/pk")).unwrap();
    let lock = tmp.path().join("runs/pk/s1.lock");
    let mut owner = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let host = std::process::Command::new("hostname")
        .output()
        .unwrap()
        .stdout;
    let host = String::from_utf8_lossy(&host).trim().to_string();
    let line = format!("host={host} pid={} pid_start=- started=0\n", owner.id());
    std::fs::write(&lock, line).unwrap();
    let o = run(&["sweep", &g, "-q", "--pack", "3"], tmp.path(), &[]);
    ok(&o);
    let e = stderr(&o);
    assert!(
        e.contains(&format!("s1: skipped (running in {host}:{})", owner.id())),
        "{e}"
    );
    assert!(e.contains("pack of 2: s0, s2"), "{e}");
    assert!(!tmp.path().join("runs/pk/s1/metrics.csv").exists());
    owner.kill().unwrap();
    owner.wait().unwrap();
    ok(&run(&["sweep", &g, "-q", "--pack", "3"], tmp.path(), &[]));
    for c in CELLS {
        assert_eq!(
            csv_epochs(&tmp.path().join(format!("runs/pk/{c}/metrics.csv"))),
            [1, 2, 3]
        );
        assert!(!tmp.path().join(format!("runs/pk/{c}.lock")).exists());
    }
}

/// `--pack` with a scheduler. `--jobs 2 --pack 2` plans the packs {s0, s1} and {s2}, each
/// trained by a child process (`--pack 2 --cell 0,1`, `--pack 2 --cell 2`): their curves equal
/// the same packs trained in one process (`--pack 2`) byte for byte. `--slurm --pack 2`
/// writes an array of two tasks, 0 (cells 0 and 1) and 2 (cell 2); its script, run by bash
/// outside Slurm as each task, gives the same curves again, and refuses a task id that is no
/// pack. `--pack auto` on the CPU packs nothing: it runs the sweep without `--pack` (its curves).
#[test]
fn packs_run_in_child_processes_and_slurm_tasks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let g = grid(dir);
    let sweep = |out: &str, extra: &[&str]| {
        let set = format!("out_dir={out}");
        let mut args = vec!["sweep", &g, "-q", "--set", &set];
        args.extend(extra);
        let o = run(&args, dir, &[]);
        ok(&o);
        stderr(&o)
    };
    let e = sweep("inproc", &["--pack", "2"]);
    assert!(e.contains("pack of 2: s0, s1"), "{e}");
    let reference = csvs(dir, "inproc");
    let e = sweep("jobs", &["--jobs", "2", "--pack", "2"]);
    assert!(e.contains("pack of 2: s0, s1"), "{e}");
    assert_eq!(csvs(dir, "jobs"), reference);

    let script = common::slurm_script(dir, &g, &["--pack", "2", "--set", "out_dir=slurm"]);
    let text = std::fs::read_to_string(&script).unwrap();
    for line in [
        "#SBATCH --array=0,2",
        "  0) CELLS=0,1 ;;",
        "  2) CELLS=2 ;;",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}\n{text}");
    }
    assert!(text.contains("--pack 2 --cell \"$CELLS\" &"), "{text}");
    let task = |id: &str| {
        std::process::Command::new("bash")
            .arg(&script)
            .env("PATH", common::path_with(&dir.join("bin")))
            .env("OMP_NUM_THREADS", "1")
            .env("SLURM_ARRAY_JOB_ID", "4242")
            .env("SLURM_ARRAY_TASK_ID", id)
            .output()
            .unwrap()
    };
    for id in ["0", "2"] {
        ok(&task(id));
    }
    assert_eq!(csvs(dir, "slurm"), reference);
    let o = task("1");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("array task 1 is no pack"),
        "{}",
        stderr(&o)
    );

    let e = sweep("auto", &["--pack", "auto"]);
    assert!(
        e.contains("--pack auto on the CPU: one cell at a time"),
        "{e}"
    );
    assert!(!e.contains("pack of"), "{e}");
    sweep("alone", &[]);
    assert_eq!(csvs(dir, "auto"), csvs(dir, "alone"));
}
