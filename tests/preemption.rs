//! Preemption end to end, with the real binary: a signal to `deepres sweep --jobs N` reaches
//! every child, each writes its resumable checkpoint and exits 75, the parent starts no other
//! cell and exits 75, and the same command continues the sweep to the uninterrupted curves; a
//! second signal ends the parent and its children at once.
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::watched::Watched;
use common::{
    assert_same_curves, csv_epochs, csv_without_timing, deepres_1t, ok, path_with, run_1t as run,
    slurm_script, stderr, tiny_grid,
};

/// The pid in a cell's lock file (`host=H pid=P ...`).
fn lock_pid(lock: &Path) -> i32 {
    let text = std::fs::read_to_string(lock).unwrap();
    let pid = text.split_whitespace().find_map(|f| f.strip_prefix("pid="));
    pid.and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{}: {text}", lock.display()))
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
}

/// Asserts that the stderr of a sweep `name` says each of `cells` stopped at step 2 of epoch 2
/// with its checkpoint (the children's lines may interleave on the shared pipe: searched as
/// text, not line by line).
fn assert_stopped_at_step_2(err: &str, name: &str, cells: &[&str]) {
    for c in cells {
        let line = format!(
            "runs/{name}/{c}: interrupted by a signal at step 2 of epoch 2; checkpoint written"
        );
        assert!(err.contains(&line), "{c}: {err}");
    }
}

/// A tiny grid `name` swept once uninterrupted into `ref/` (the reference curves), then
/// `deepres sweep --jobs 2` started on it with both children held after step 2 of epoch 2 by
/// the failpoint `DEEPRES_PAUSE_AT`; returns the grid file and the paused sweep.
fn paused_jobs_sweep(dir: &Path, name: &str, extra: &str) -> (PathBuf, Watched) {
    let g = tiny_grid(dir, name, extra);
    let gs = g.to_str().unwrap();
    ok(&run(&["sweep", gs, "-q", "--set", "out_dir=ref"], dir));
    let mut w = Watched::spawn(
        deepres_1t()
            .args(["sweep", gs, "--jobs", "2"])
            .env("DEEPRES_PAUSE_AT", "1:2")
            .current_dir(dir),
    );
    w.wait_for("paused after step 2 of epoch 2", 2);
    (g, w)
}

/// `deepres sweep --jobs 2` on 3 cells, both children held inside epoch 2 by the failpoint
/// `DEEPRES_PAUSE_AT` (which waits for a signal), gets a real SIGTERM: it forwards it to both,
/// each writes its checkpoint at step 2 of epoch 2 and exits 75, the third cell never starts,
/// no lock is left, and the sweep exits 75. The same command then resumes both at that step
/// and runs the third: every curve equals the uninterrupted sweep's (timing columns aside).
/// Without the forwarding the paused children never stop and the test fails on its patience.
#[test]
fn a_signal_to_a_jobs_sweep_is_forwarded_to_its_children_and_the_rerun_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let (g, w) = paused_jobs_sweep(tmp.path(), "jobs", "seeds: [0, 1, 2]\n");
    let g = g.to_str().unwrap();
    w.signal(libc::SIGTERM);
    let (status, err) = w.finish();
    assert_eq!(status.code(), Some(75), "{err}");
    assert!(
        err.contains("SIGTERM received: forwarded to 2 running cell(s)"),
        "{err}"
    );
    assert_stopped_at_step_2(&err, "jobs", &["s0", "s1"]);
    assert!(err.contains("2 interrupted (resumable)"), "{err}");
    let runs = tmp.path().join("runs/jobs");
    for c in ["s0", "s1"] {
        assert_eq!(csv_epochs(&runs.join(c).join("metrics.csv")), [1], "{c}");
        assert!(!runs.join(format!("{c}.lock")).exists(), "{c}'s lock left");
    }
    assert!(!runs.join("s2/config.yaml").exists(), "s2 started: {err}");

    let o = run(&["sweep", g, "--jobs", "2"], tmp.path());
    ok(&o);
    let err = stderr(&o);
    assert_eq!(
        err.matches("resuming after epoch 1, at step 2 of epoch 2")
            .count(),
        2,
        "{err}"
    );
    assert_same_curves(&runs, &tmp.path().join("ref/jobs"), &["s0", "s1", "s2"]);
}

/// A second signal (SIGINT after SIGTERM: two different signals, so neither is merged into the
/// other while pending) ends `deepres sweep --jobs 2` at once with 130 and its children with
/// it (their parent-death signal); the rerun takes their locks over (the children may stay
/// zombies: a container's init may reap nothing) and finishes with the uninterrupted curves.
#[test]
fn a_second_signal_ends_a_jobs_sweep_and_its_children_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (g, w) = paused_jobs_sweep(tmp.path(), "twice", "seeds: [0, 1]\n");
    let g = g.to_str().unwrap();
    let runs = tmp.path().join("runs/twice");
    let children: Vec<i32> = ["s0", "s1"]
        .iter()
        .map(|c| lock_pid(&runs.join(format!("{c}.lock"))))
        .collect();
    assert!(children.iter().all(|&p| alive(p)));
    w.signal(libc::SIGTERM);
    w.signal(libc::SIGINT);
    let (status, err) = w.finish();
    assert_eq!(status.code(), Some(130), "{err}");
    let t0 = Instant::now();
    while children.iter().any(|&p| alive(p)) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "children left running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = run(&["sweep", g, "--jobs", "2"], tmp.path());
    ok(&o);
    assert_same_curves(&runs, &tmp.path().join("ref/twice"), &["s0", "s1"]);
}

/// A signal to every process of `deepres sweep --jobs 2` (what Slurm does when it cancels,
/// requeues or preempts a job): each child gets it directly and once more forwarded by its
/// parent, counts the two apart (their senders differ) and still writes its checkpoint and
/// exits 75, where taking the copy for a second signal would end it at once with 130. The
/// failpoint holds each child a second after the first signal, so both copies reach it.
#[test]
fn a_signal_to_every_process_of_a_jobs_sweep_stops_each_child_once() {
    let tmp = tempfile::tempdir().unwrap();
    let g = tiny_grid(tmp.path(), "all", "seeds: [0, 1]\n");
    let mut w = Watched::spawn(
        deepres_1t()
            .args(["sweep", g.to_str().unwrap(), "--jobs", "2"])
            .env("DEEPRES_PAUSE_AT", "1:2")
            .current_dir(tmp.path()),
    );
    w.wait_for("paused after step 2 of epoch 2", 2);
    let runs = tmp.path().join("runs/all");
    for c in ["s0", "s1"] {
        let pid = lock_pid(&runs.join(format!("{c}.lock")));
        // SAFETY: kill(2) to a child of the sweep this test started, held by the failpoint.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    }
    w.signal(libc::SIGTERM);
    w.wait_for("SIGTERM received: forwarded to 2 running cell(s)", 1);
    let (status, err) = w.finish();
    assert_eq!(status.code(), Some(75), "{err}");
    assert_stopped_at_step_2(&err, "all", &["s0", "s1"]);
    assert!(err.contains("0 failed, 2 interrupted (resumable)"), "{err}");
}

/// `deepres train` of a tiny run (3 epochs of 3 steps) named `name`, with `extra` settings
/// (`key=value`) and flags (`--resume`).
fn train(dir: &Path, name: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec!["train", "--device", "cpu"];
    let name = format!("name={name}");
    let base = [
        name.as_str(),
        "out_dir=runs",
        "data.name=synthetic",
        "data.synthetic_train=96",
        "data.synthetic_test=32",
        "model.depth=8",
        "train.epochs=3",
        "train.batch_size=32",
        "train.schedule.kind=cosine",
    ];
    for s in base.iter().chain(extra) {
        match s.starts_with("--") {
            true => args.push(s),
            false => args.extend(["--set", s]),
        }
    }
    deepres_1t()
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .unwrap()
}

/// The periodic mid-epoch checkpoint (`train.checkpoint_minutes`): at 1e-6 minutes it is due
/// after every step; a run killed -9 after step 2 of epoch 2 (the failpoint
/// `DEEPRES_CRASH_AT=step-2:2`, right after that step's checkpoint) resumes from that step,
/// and its metrics.csv equals the uninterrupted run's (timing columns aside), as does the
/// curve of a run that wrote all those checkpoints; with 0 (off) the same kill resumes after
/// epoch 1. A resume may change the interval (it is not a setting of the results); at its
/// default it is left out of config.yaml (the run keys did not change); a negative one is one
/// error line.
#[test]
fn the_periodic_mid_epoch_checkpoint_is_where_a_kill_9_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let every = "train.checkpoint_minutes=0.000001";
    ok(&train(dir, "plain", &[], &[]));
    let csv = |name: &str| csv_without_timing(&dir.join("runs").join(name).join("metrics.csv"));
    let want = csv("plain");
    let config = std::fs::read_to_string(dir.join("runs/plain/config.yaml")).unwrap();
    assert!(!config.contains("checkpoint_minutes"), "{config}");
    ok(&train(dir, "every", &[every], &[]));
    assert_eq!(csv("every"), want, "the checkpoints changed the curve");

    let crash = [("DEEPRES_CRASH_AT", "step-2:2")];
    for (name, minutes, resumed) in [
        ("cut", every, "resuming after epoch 1, at step 2 of epoch 2"),
        (
            "off",
            "train.checkpoint_minutes=0",
            "resuming after epoch 1\n",
        ),
    ] {
        let o = train(dir, name, &[minutes], &crash);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(o.status.signal(), Some(9), "{name}: {}", stderr(&o));
        assert_eq!(
            csv_epochs(&dir.join("runs").join(name).join("metrics.csv")),
            [1]
        );
        // resumed with another interval: the same run
        let o = train(dir, name, &["train.checkpoint_minutes=5", "--resume"], &[]);
        ok(&o);
        assert!(stderr(&o).contains(resumed), "{name}: {}", stderr(&o));
        assert_eq!(csv(name), want, "{name}");
    }
    let o = train(dir, "bad", &["train.checkpoint_minutes=-1"], &[]);
    let line = common::one_line_error(&o);
    assert!(line.contains("train.checkpoint_minutes: must be"), "{line}");
}

/// SIGTERM at 20 random moments of a tiny 2-cell sweep (a seeded RNG), run alternately in one
/// process and with `--jobs 2`: each trial runs the same command in its own directory until it
/// exits 0, each run getting a SIGTERM at a uniform moment of an uninterrupted sweep's
/// duration (inside a step, an evaluation, a checkpoint or CSV write, a child's start-up,
/// wherever it falls). A run the signal reaches exits 75 (stopped resumably), or 0 when its
/// last cell was done, or dies of the signal when it came before the handler was installed
/// (process start-up, before main); every other status fails. At the end every metrics.csv
/// has each epoch once and equals the uninterrupted run's byte for byte but the two timing
/// columns. Most signals must find a handler (exit 75), or the test proves little.
#[test]
fn sigterm_at_20_random_moments_loses_and_duplicates_nothing() {
    use rand::{Rng, SeedableRng};
    use std::os::unix::process::ExitStatusExt;
    let tmp = tempfile::tempdir().unwrap();
    let g = tiny_grid(tmp.path(), "term", "seeds: [0, 1]\n");
    let g = g.to_str().unwrap();
    let t0 = Instant::now();
    ok(&run(
        &["sweep", g, "-q", "--set", "out_dir=ref"],
        tmp.path(),
    ));
    let full = t0.elapsed();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(19);
    let (mut signals, mut stopped, mut early) = (0, 0, 0);
    let mut trial = 0;
    while signals < 20 {
        trial += 1;
        assert!(trial <= 40, "{signals} signals in 40 trials");
        let out = format!("out_dir=t{trial}");
        let mut args = vec!["sweep", g, "-q", "--set", &out];
        if trial % 2 == 0 {
            args.extend(["--jobs", "2"]);
        }
        for attempt in 1.. {
            assert!(attempt <= 12, "trial {trial}: no end after 12 runs");
            let mut child = deepres_1t()
                .args(&args)
                .current_dir(tmp.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(full.mul_f64(rng.gen_range(0.0..1.0)));
            let hit = signals < 20 && child.try_wait().unwrap().is_none();
            if hit {
                signals += 1;
                // SAFETY: kill(2) to the child this test started and has not reaped.
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            }
            let status = child.wait().unwrap();
            match (status.code(), status.signal()) {
                (Some(0), _) => break,
                (Some(75), _) if hit => stopped += 1,
                (None, Some(libc::SIGTERM)) if hit => early += 1,
                _ => panic!("trial {trial} run {attempt}: {status:?} (signalled: {hit})"),
            }
        }
        let runs = tmp.path().join(format!("t{trial}/term"));
        assert_same_curves(&runs, &tmp.path().join("ref/term"), &["s0", "s1"]);
    }
    eprintln!(
        "{signals} SIGTERMs in {trial} trials: {stopped} stopped a run resumably (75), {early} came before the handler; uninterrupted: {full:?}"
    );
    assert!(
        stopped >= 10,
        "only {stopped} of 20 signals stopped a run with 75"
    );
}

/// The array task's script, run by bash outside Slurm as array task 4242_0 (its own process
/// group, a stand-in `scontrol`), with deepres held at step 2 of epoch 2: SIGUSR1 to the batch
/// shell alone (what `--signal=B:USR1@T` and `scancel --batch --signal=USR1` do) is forwarded,
/// deepres checkpoints and exits 75, and the task requeues itself (`scontrol requeue 4242_0`);
/// SIGTERM to every process of the task (what Slurm sends when it cancels, requeues or
/// preempts a job) reaches deepres directly and is not forwarded; the shell waits for the
/// checkpoint, exits 75 and requeues nothing (Slurm does, when it requeues).
/// The script asks for the signal 300 s before the limit by default, `--signal-before` sets it.
#[test]
fn the_slurm_task_forwards_usr1_checkpoints_and_requeues_itself() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let g = tiny_grid(dir, "sl", "seeds: [0]\n");
    let script = slurm_script(dir, g.to_str().unwrap(), &["--signal-before", "120"]);
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(
        text.lines().any(|l| l == "#SBATCH --signal=B:USR1@120"),
        "{text}"
    );
    assert!(text.lines().any(|l| l == "#SBATCH --requeue"), "{text}");
    let default = slurm_script(dir, g.to_str().unwrap(), &[]);
    let text = std::fs::read_to_string(default).unwrap();
    assert!(
        text.lines().any(|l| l == "#SBATCH --signal=B:USR1@300"),
        "{text}"
    );
    let requeues = dir.join("scontrol.args");
    for (whom, requeued) in [("shell", true), ("group", false)] {
        let _ = std::fs::remove_file(&requeues);
        let mut w = Watched::spawn(
            Command::new("bash")
                .arg(&script)
                .env("PATH", path_with(&dir.join("bin")))
                .env("OMP_NUM_THREADS", "1")
                .env("SLURM_ARRAY_JOB_ID", "4242")
                .env("SLURM_ARRAY_TASK_ID", "0")
                .env("DEEPRES_PAUSE_AT", "1:2")
                .process_group(0),
        );
        w.group = true;
        w.wait_for("paused after step 2 of epoch 2", 1);
        let pid = w.child.id() as i32;
        match whom {
            "shell" => w.signal(libc::SIGUSR1),
            // SAFETY: kill(2) to the process group of the shell this test started.
            _ => assert_eq!(unsafe { libc::kill(-pid, libc::SIGTERM) }, 0),
        }
        let (status, err) = w.finish();
        assert_eq!(status.code(), Some(75), "{whom}: {err}");
        assert!(
            err.contains("interrupted by a signal at step 2 of epoch 2"),
            "{whom}: {err}"
        );
        let args = std::fs::read_to_string(&requeues).ok();
        let want = requeued.then(|| "requeue 4242_0\n".to_string());
        assert_eq!(args, want, "{whom}: {err}");
        // the run goes on from that step (the next attempt resumes it)
        let ckpt = dir.join("runs/sl/s0/checkpoint.safetensors");
        assert!(ckpt.exists());
        std::fs::remove_dir_all(dir.join("runs")).unwrap();
    }
}
