//! Reliability end to end, with the real binary: kill -9 at random moments (also of a packed
//! sweep), cell locks with concurrent sweeps, local scheduling (`--jobs`) and the Slurm
//! script. Refusals of bad input, which must get one error line, exit code 2 and leave the
//! existing results untouched, are in tests/refusals.rs.
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

mod common;
use common::{
    assert_best_not_ahead, assert_same_best, assert_same_curves, best_file_epoch, checkpoint_epoch,
    csv_epochs, csv_without_timing, deepres_1t, deviation, ok, run_1t as run, snapshot, stderr,
    tiny_grid,
};

/// kill -9 at 20 random moments (a seeded RNG; inside a training step, a checkpoint write, a
/// CSV append, a config write, process start-up, wherever the moment falls), each followed
/// by a rerun of the same `deepres sweep`: the sweep finishes every cell, every metrics.csv
/// has each epoch exactly once, and on CPU it equals the uninterrupted run's byte for byte,
/// except the two timing columns epoch_seconds and images_per_second (wall-clock
/// measurements, which no two runs share).
///
/// Each trial kills a sweep at a uniform moment of an uninterrupted sweep's duration, in its
/// own directory, then reruns it to the end; trials go on until 20 kills have hit a running
/// sweep (a moment past the sweep's end, on a quicker-than-measured run, does not count).
#[test]
fn kill_9_at_20_random_moments_loses_and_duplicates_nothing() {
    let split = kill_9_at_20_random_moments(&[], 9);
    assert_eq!(split, 0, "a sweep without packs has nothing to split");
}

/// The same with `--pack 2` (the two cells train as one pack): every kill, rerun,
/// finishes both cells with each epoch once, equal to the uninterrupted packed sweep's byte for
/// byte, also where the kill fell between the two members' checkpoints of one epoch (the pack
/// writes them in two phases, src/train/pack_commit.rs: without that, 1 of these 20 kills left
/// the members an epoch apart, and the rerun trained them apart).
#[test]
fn kill_9_at_20_random_moments_of_a_packed_sweep_loses_and_duplicates_nothing() {
    let split = kill_9_at_20_random_moments(&["--pack", "2"], 17);
    assert_eq!(
        split, 0,
        "{split} rerun(s) not byte for byte the uninterrupted pack's"
    );
}

/// Kills `deepres sweep GRID -q <extra>` 20 times at random moments (seeded with `seed`) and
/// checks each rerun against an uninterrupted sweep with the same `extra`, and that it resumed
/// rather than retrained (the CSV rows its checkpoints held, timing included, kept); returns how
/// many reruns were not byte for byte equal to it but within 1e-3 (possible only for packs).
fn kill_9_at_20_random_moments(extra: &[&str], seed: u64) -> usize {
    let tmp = tempfile::tempdir().unwrap();
    let g = tiny_grid(tmp.path(), "kill", "seeds: [0, 1]\n");
    let g = g.to_str().unwrap();
    let sweep = |out: &str| -> Vec<String> {
        let mut a = vec![
            "sweep".to_string(),
            g.to_string(),
            "-q".into(),
            "--set".into(),
        ];
        a.push(format!("out_dir={out}"));
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let t0 = Instant::now();
    ok(&deepres_1t()
        .args(sweep("ref"))
        .current_dir(tmp.path())
        .output()
        .unwrap());
    let full = t0.elapsed();
    let reference = tmp.path().join("ref/kill");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (mut killed_mid_run, mut trial, mut split, mut resumed) = (0, 0, 0, 0);
    while killed_mid_run < 20 && trial < 40 {
        trial += 1;
        let out = format!("t{trial}");
        let mut child = deepres_1t()
            .args(sweep(&out))
            .current_dir(tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(full.mul_f64(rng.gen_range(0.0..1.0)));
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let runs = tmp.path().join(format!("t{trial}/kill"));
        let held = CELLS.map(|c| epochs_held(&runs.join(c)));
        ok(&deepres_1t()
            .args(sweep(&out))
            .current_dir(tmp.path())
            .output()
            .unwrap());
        let (r, packed_apart) = check_rerun(&runs, &reference, &held, trial, !extra.is_empty());
        resumed += r;
        split += usize::from(packed_apart);
    }
    // Most kills must land while a sweep was running, or the test proves little.
    assert!(
        killed_mid_run >= 15,
        "only {killed_mid_run} kills hit a running sweep"
    );
    // And enough of them after a checkpoint, or the resume check above proves little.
    assert!(
        resumed >= 5,
        "only {resumed} cells had a checkpoint to resume from"
    );
    eprintln!(
        "{extra:?}: {killed_mid_run} of 20 kills hit a running sweep, {resumed} cells resumed \
         from a checkpoint (uninterrupted: {full:?})"
    );
    split
}

/// The cells of the random kill test.
const CELLS: [&str; 2] = ["s0", "s1"];

/// Checks one rerun of the random kill test (`runs`, killed in `trial` when its cells'
/// checkpoints `held` what [`epochs_held`] says) against the uninterrupted sweep `reference`:
/// it resumed rather than retrained, each epoch is there once, and the curves and blocks.csv
/// are the reference's byte for byte, or for a pack (`packed`) within 1e-3. Returns how many
/// cells had a checkpoint to resume from, and whether a pack's curves were only within 1e-3.
fn check_rerun(
    runs: &Path,
    reference: &Path,
    held: &[(usize, String)],
    trial: usize,
    packed: bool,
) -> (usize, bool) {
    // The rerun resumed, not retrained: the rows of the epochs the checkpoint held are kept
    // byte for byte, wall-clock columns included (different in every run).
    let mut resumed = 0;
    for (c, (k, rows)) in CELLS.iter().zip(held) {
        if *k == 0 {
            continue;
        }
        resumed += 1;
        assert_eq!(
            epochs_held_rows(&runs.join(c), *k),
            *rows,
            "trial {trial}, {c}: the rerun rewrote the {k} epoch(s) its checkpoint held"
        );
    }
    let curves = |dir: &Path| -> Vec<String> {
        CELLS
            .iter()
            .map(|c| csv_without_timing(&dir.join(c).join("metrics.csv")))
            .collect()
    };
    let (got, want) = (curves(runs), curves(reference));
    let apart = packed && got != want;
    if !apart {
        assert_same_curves(runs, reference, &CELLS);
        // blocks.csv, cut back to the checkpoint on resume like metrics.csv, too.
        for c in CELLS {
            let blocks = |d: &Path| std::fs::read(d.join(c).join("blocks.csv")).unwrap();
            assert!(
                blocks(runs) == blocks(reference),
                "trial {trial}, {c}: blocks.csv differs from the uninterrupted run's"
            );
        }
    } else {
        for (c, (a, b)) in CELLS.iter().zip(got.iter().zip(&want)) {
            assert_eq!(csv_epochs(&runs.join(c).join("metrics.csv")), [1, 2, 3]);
            let err = deviation(a, b);
            assert!(err <= 1e-3, "trial {trial}, {c}: {err:.2e}\n{a}\n{b}");
        }
    }
    for c in CELLS {
        let summary = std::fs::read_to_string(runs.join(c).join("summary.json")).unwrap();
        assert!(summary.contains("\"finished\""), "{summary}");
        assert!(!runs.join(format!("{c}.lock")).exists());
    }
    (resumed, apart)
}

/// The epochs the checkpoint of run directory `run` holds (0 without one), with the header and
/// those epochs' rows of its metrics.csv as they are now.
fn epochs_held(run: &Path) -> (usize, String) {
    let k = checkpoint_epoch(run).unwrap_or(0) as usize;
    (k, epochs_held_rows(run, k))
}

/// The header and the first `k` rows of `run`'s metrics.csv ("" without the file).
fn epochs_held_rows(run: &Path, k: usize) -> String {
    let text = std::fs::read_to_string(run.join("metrics.csv")).unwrap_or_default();
    text.lines().take(1 + k).collect::<Vec<_>>().join("\n")
}

/// kill -9 at the exact moments a random kill rarely hits, through the failpoint
/// `DEEPRES_CRASH_AT=<point>:<epoch>` (the process SIGKILLs itself there): halfway through
/// writing a metrics.csv row, after the row but before the checkpoint, halfway through writing
/// the checkpoint, after the checkpoint but before best.safetensors, before summary.json; at
/// the first and the last epoch (and the best, for best.safetensors). After the kill
/// best.safetensors is never ahead of the checkpoint; a rerun finishes, the CSV equals the
/// uninterrupted run's (timing columns aside) and best.safetensors holds its best epoch's
/// weights bit for bit.
#[test]
fn kill_9_inside_csv_and_checkpoint_writes_loses_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let g = tiny_grid(tmp.path(), "fp", "seeds: [1]\n");
    let g = g.to_str().unwrap();
    ok(&run(
        &["sweep", g, "-q", "--set", "out_dir=ref"],
        tmp.path(),
    ));
    let reference = tmp.path().join("ref/fp/s1");
    // The kill between the checkpoint and best.safetensors matters at a new best epoch: the
    // first (no best file yet) and a later one (an older best file to replace).
    let best_at = best_file_epoch(&reference).unwrap();
    assert!(
        best_at > 1,
        "seed 1's best epoch is the first: pick another seed"
    );
    let mut at_best = vec![1, best_at, 3];
    at_best.dedup();
    for (point, epochs) in [
        ("csv-row", vec![1, 3]),
        ("after-csv", vec![1, 3]),
        ("checkpoint", vec![1, 3]),
        ("best", at_best),
        ("summary", vec![1, 3]),
    ] {
        for epoch in epochs {
            let out = format!("out_dir={point}-{epoch}");
            let o = deepres_1t()
                .args(["sweep", g, "-q", "--set", &out])
                .env("DEEPRES_CRASH_AT", format!("{point}:{epoch}"))
                .current_dir(tmp.path())
                .output()
                .unwrap();
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                o.status.signal(),
                Some(9),
                "{point}:{epoch}: {}",
                stderr(&o)
            );
            let runs = tmp.path().join(format!("{point}-{epoch}/fp"));
            assert_best_not_ahead(&runs.join("s1"), &format!("{point}:{epoch}"));
            let o = run(&["sweep", g, "-q", "--set", &out], tmp.path());
            ok(&o);
            assert_same_curves(&runs, &tmp.path().join("ref/fp"), &["s1"]);
            assert_same_best(&runs.join("s1"), &reference);
            // The torn temporary file a kill inside a write leaves is removed on resume.
            let left: Vec<String> = std::fs::read_dir(runs.join("s1"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".tmp"))
                .collect();
            assert!(left.is_empty(), "{point}:{epoch}: {left:?}");
        }
    }
}

/// Two `deepres sweep` processes started together on one grid: each cell runs in exactly one
/// of them (its lock), both exit 0, every cell is done with each epoch once. The first cell
/// starts with the stale lock of a dead process, which both race to take over: one does.
#[test]
fn two_concurrent_sweeps_run_each_cell_once() {
    let tmp = tempfile::tempdir().unwrap();
    let g = tiny_grid(tmp.path(), "pair", "seeds: [0, 1, 2, 3]\n");
    let mut dead = Command::new("true").spawn().unwrap();
    dead.wait().unwrap();
    std::fs::create_dir_all(tmp.path().join("runs/pair")).unwrap();
    std::fs::write(
        tmp.path().join("runs/pair/s0.lock"),
        format!(
            "host={} pid={} pid_start=- started=0\n",
            hostname(),
            dead.id()
        ),
    )
    .unwrap();
    let spawn = || {
        deepres_1t()
            .args(["sweep", g.to_str().unwrap(), "-q"])
            .current_dir(tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    ok(&a);
    ok(&b);
    let logs = stderr(&a) + &stderr(&b);
    for c in ["s0", "s1", "s2", "s3"] {
        let starts = logs
            .lines()
            .filter(|l| l.contains(&format!("] {c}: running")))
            .count();
        assert_eq!(starts, 1, "{c} ran {starts} times:\n{logs}");
        let dir = tmp.path().join(format!("runs/pair/{c}"));
        assert_eq!(csv_epochs(&dir.join("metrics.csv")), [1, 2, 3], "{c}");
        assert!(!tmp.path().join(format!("runs/pair/{c}.lock")).exists());
    }
    assert!(
        logs.contains("skipped (running in "),
        "the two sweeps never met at a locked cell:\n{logs}"
    );
    assert_eq!(logs.matches("took over the lock").count(), 1, "{logs}");
}

fn hostname() -> String {
    let o = Command::new("hostname").output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A lock held by a live process is respected (the cell is left to it, `--status` names the
/// owner); once the owner is gone (dead pid on this host) the lock is taken over.
#[test]
fn a_live_lock_is_respected_and_a_dead_one_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    let g = tiny_grid(tmp.path(), "lk", "seeds: [0]\n");
    let g = g.to_str().unwrap();
    std::fs::create_dir_all(tmp.path().join("runs/lk")).unwrap();
    let lock = tmp.path().join("runs/lk/s0.lock");
    let mut owner = Command::new("sleep").arg("60").spawn().unwrap();
    let host = hostname();
    std::fs::write(
        &lock,
        format!("host={host} pid={} pid_start=- started=0\n", owner.id()),
    )
    .unwrap();
    let o = run(&["sweep", g, "-q"], tmp.path());
    ok(&o);
    assert!(
        stderr(&o).contains(&format!("skipped (running in {host}:{})", owner.id())),
        "{}",
        stderr(&o)
    );
    assert!(!tmp.path().join("runs/lk/s0/metrics.csv").exists());
    let st = run(&["sweep", g, "--status"], tmp.path());
    ok(&st);
    let table = String::from_utf8_lossy(&st.stdout).into_owned();
    assert!(
        table.contains(&format!("locked by {host}:{}", owner.id())),
        "{table}"
    );
    owner.kill().unwrap();
    owner.wait().unwrap();
    let o = run(&["sweep", g, "-q"], tmp.path());
    ok(&o);
    assert!(
        stderr(&o).contains("took over the lock of"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        csv_epochs(&tmp.path().join("runs/lk/s0/metrics.csv")),
        [1, 2, 3]
    );
    assert!(!lock.exists());
}

/// A sweep killed after a cell finished but before it removed that cell's lock leaves a stale
/// lock on a finished cell: the rerun skips the cell and removes the lock (a live owner's lock
/// on a finished cell stays). Found by the kill -9 test above, which failed once this way.
#[test]
fn a_stale_lock_on_a_finished_cell_is_removed_and_a_live_one_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let g = tiny_grid(tmp.path(), "fin", "seeds: [0]\n");
    let g = g.to_str().unwrap();
    ok(&run(&["sweep", g, "-q"], tmp.path()));
    let lock = tmp.path().join("runs/fin/s0.lock");
    let host = hostname();
    let mut dead = Command::new("true").spawn().unwrap();
    dead.wait().unwrap();
    std::fs::write(
        &lock,
        format!("host={host} pid={} pid_start=- started=0\n", dead.id()),
    )
    .unwrap();
    let before = snapshot(&tmp.path().join("runs/fin/s0"));
    let o = run(&["sweep", g, "-q"], tmp.path());
    ok(&o);
    assert!(stderr(&o).contains("skipped (finished)"), "{}", stderr(&o));
    assert!(!lock.exists(), "the stale lock of a finished cell stayed");
    assert_eq!(snapshot(&tmp.path().join("runs/fin/s0")), before);
    // A live owner's lock is left alone.
    let mut live = Command::new("sleep").arg("60").spawn().unwrap();
    let line = format!("host={host} pid={} pid_start=- started=0\n", live.id());
    std::fs::write(&lock, &line).unwrap();
    ok(&run(&["sweep", g, "-q"], tmp.path()));
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), line);
    live.kill().unwrap();
    live.wait().unwrap();
}

/// `--jobs 2` runs every cell once, in child processes; a rerun skips them all; `--gpus 0,1`
/// runs them too.
#[test]
fn jobs_run_every_cell_in_child_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let g = tiny_grid(tmp.path(), "j", "seeds: [0, 1, 2]\n");
    let g = g.to_str().unwrap();
    let o = run(&["sweep", g, "--jobs", "2", "-q"], tmp.path());
    ok(&o);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("runs/j: 3 ran (0 diverged)"), "{out}");
    for c in ["s0", "s1", "s2"] {
        assert_eq!(
            csv_epochs(&tmp.path().join(format!("runs/j/{c}/metrics.csv"))),
            [1, 2, 3]
        );
    }
    let o = run(&["sweep", g, "--jobs", "2", "-q"], tmp.path());
    ok(&o);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("0 ran (0 diverged), 3 skipped"), "{out}");
    // --gpus schedules the same way, one child per listed GPU (CPU cells here: no GPU in CI,
    // so this checks the scheduling, not the GPU pinning)
    let o = run(
        &["sweep", g, "--gpus", "0,1", "-q", "--set", "out_dir=g"],
        tmp.path(),
    );
    ok(&o);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("g/j: 3 ran (0 diverged)"), "{out}");
}

/// `--slurm` writes a job-array script (one task per unfinished cell, each calling
/// `deepres sweep GRID ... --cell $SLURM_ARRAY_TASK_ID`) and submits it with sbatch; here a
/// stand-in `sbatch` on PATH records the script and answers a job id.
#[test]
fn slurm_writes_and_submits_a_job_array() {
    let tmp = tempfile::tempdir().unwrap();
    let g = tiny_grid(tmp.path(), "sl", "seeds: [0, 1, 2]\n");
    let g = g.to_str().unwrap();
    ok(&run(&["sweep", g, "--cell", "1", "-q"], tmp.path()));
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let fake = bin.join("sbatch");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\ncp \"$2\" {}/submitted.sbatch\necho '4242;cluster'\n",
            tmp.path().display()
        ),
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let o = deepres_1t()
        .args([
            "sweep",
            g,
            "--slurm",
            "--partition",
            "gpu",
            "--time",
            "2:00:00",
            "--gres",
            "gpu:1",
            "--max-parallel",
            "2",
        ])
        .env("PATH", path)
        .current_dir(tmp.path())
        .output()
        .unwrap();
    ok(&o);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "4242");
    let script = std::fs::read_to_string(tmp.path().join("submitted.sbatch")).unwrap();
    for line in [
        "#SBATCH --array=0,2%2",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=2:00:00",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --requeue",
        "#SBATCH --signal=B:USR1@300",
    ] {
        assert!(
            script.lines().any(|l| l == line),
            "{line} missing:\n{script}"
        );
    }
    let run: Vec<&str> = script.lines().filter(|l| l.contains(" sweep ")).collect();
    assert_eq!(run.len(), 1, "{script}");
    assert!(
        run[0].contains(g) && run[0].ends_with("--cell \"$SLURM_ARRAY_TASK_ID\" &"),
        "{}",
        run[0]
    );
}
