//! Preemption of the papers' long runs, with the real binary: a SIGTERM stops Marion's M8
//! training after the step in progress and Chizat's limit training after the GD step in
//! progress, each saving its position (C5's sweep keeps its finished batches of models), with
//! exit 75 and one line naming what was saved; the
//! same command then continues from that step and writes the CSVs of an uninterrupted run byte
//! for byte (these CSVs have no timing column). A limit also saves its training as it goes
//! (`limit.save_seconds`), so that a kill -9 loses at most that much. A failpoint (`DEEPRES_PAUSE_AT=<epoch>:<step>`,
//! epoch 0 for a limit's GD steps) holds the run at a known step until the signal arrives.
use std::path::Path;
use std::process::Output;

mod common;
use common::watched::Watched;
use common::{deepres_1t, stderr, TINY_C5, TINY_M8};

/// Figure C3 at a tiny size: the limit L = M = 64 and a model L = 8, M = 16, K = 20 GD steps.
const C3: [&str; 5] = [
    "depth=8",
    "width=16",
    "limit.depth=64",
    "limit.width=64",
    "dynamics.steps=20",
];

/// `deepres <paper> <fig> --device cpu --set ... --out <out>` in `dir` (not yet run).
fn figure(dir: &Path, paper: &str, fig: &str, sets: &[String], out: &str) -> std::process::Command {
    let mut c = deepres_1t();
    let root = env!("CARGO_MANIFEST_DIR");
    c.args([
        paper,
        &format!("{root}/experiments/{fig}"),
        "--device",
        "cpu",
    ]);
    for s in sets {
        c.args(["--set", s]);
    }
    c.args(["--out", out]).current_dir(dir);
    c
}

/// A figure run to its end: exit 0, or 3 when a claim fails at this tiny size (the checks are
/// the paper's, sized for the smoke and full scales).
fn finished(o: Output) -> String {
    let code = o.status.code();
    assert!(matches!(code, Some(0 | 3)), "{code:?}: {}", stderr(&o));
    stderr(&o)
}

/// Runs `cmd` held at the failpoint `pause` (its stderr says `paused`), sends SIGTERM (twice,
/// as GNU timeout does), and
/// returns the last stderr line after checking the exit status 75.
fn stopped_by_sigterm(cmd: &mut std::process::Command, pause: &str, paused: &str) -> String {
    let mut w = Watched::spawn(cmd.env("DEEPRES_PAUSE_AT", pause));
    w.wait_for(paused, 1);
    // As GNU timeout sends it: to the process, then to its process group. The copy arrives
    // after the first was handled (the kernel would merge it into a pending one), and must
    // not count as a second signal (which ends the run at once with 130, no checkpoint).
    w.signal(libc::SIGTERM);
    std::thread::sleep(std::time::Duration::from_millis(50));
    w.signal(libc::SIGTERM);
    let (status, err) = w.finish();
    assert_eq!(status.code(), Some(75), "{err}");
    err.lines().last().unwrap_or_default().to_string()
}

fn assert_same_file(a: &Path, b: &Path) {
    let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(
        read(a) == read(b),
        "{} differs from {}",
        a.display(),
        b.display()
    );
}

/// Reruns C3 in `dir` with `sets` (out `run/out`): it finishes, resuming its limit at GD step
/// `step`.
fn rerun_c3_resuming_at(dir: &Path, sets: &[String], step: usize) {
    let rerun = figure(dir, "chizat", "chizat2025/fig3.yaml", sets, "run/out").output();
    let err = finished(rerun.unwrap());
    let resumed = format!("limit: D = 2: resuming at GD step {step} of 20 from");
    assert!(err.contains(&resumed), "{err}");
}

/// The resumed C3 run in `dir` (`run/`) equals the uninterrupted one (`ref/`): the cached
/// limit `file`'s tensors, loss.csv and trajectories.csv.
fn assert_same_limit_run(dir: &Path, file: &str) {
    let load = |d: &str| {
        let mut v = tch::Tensor::read_safetensors(dir.join(d).join(file)).unwrap();
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    };
    let (a, b) = (load("run/lim"), load("ref/lim"));
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "the cached limit's {na} differs");
    }
    for f in ["loss.csv", "trajectories.csv"] {
        assert_same_file(&dir.join("run/out").join(f), &dir.join("ref/out").join(f));
    }
}

/// M8 stopped by SIGTERM at step 3 of epoch 2: exit 75, one line naming the checkpoint and
/// the rerun; the rerun resumes at that step (the checkpoint holds the weights, Adam's state
/// and the epoch's loss sums so far; the batch order is the epoch's seed replayed) and
/// weights.csv and runs.csv equal the uninterrupted run's byte for byte. A second signal ends
/// the run at once with 130.
#[test]
fn a_signal_stops_marion_training_at_its_step_and_the_rerun_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sets: Vec<String> = TINY_M8.iter().map(|s| s.to_string()).collect();
    let fig = "marion2022/fig8.yaml";
    finished(
        figure(dir, "marion", fig, &sets, "ref")
            .arg("-q")
            .output()
            .unwrap(),
    );

    let mut cmd = figure(dir, "marion", fig, &sets, "run");
    let line = stopped_by_sigterm(&mut cmd, "1:3", "paused after step 3 of epoch 2");
    assert_eq!(
        line,
        "error: run/.training.safetensors: training stopped by SIGTERM at step 3 of epoch 2 \
         (checkpoint written); resumable: rerun the same command"
    );
    assert!(dir.join("run/.training.safetensors").exists());
    assert!(!dir.join("run/weights.csv").exists());

    let err = finished(figure(dir, "marion", fig, &sets, "run").output().unwrap());
    assert!(
        err.contains(
            "weights: resumed after epoch 1, at step 3 of epoch 2 from run/.training.safetensors"
        ),
        "{err}"
    );
    assert!(
        !dir.join("run/.training.safetensors").exists(),
        "checkpoint left"
    );
    for f in ["weights.csv", "runs.csv"] {
        assert_same_file(&dir.join("run").join(f), &dir.join("ref").join(f));
    }

    let mut w =
        Watched::spawn(figure(dir, "marion", fig, &sets, "twice").env("DEEPRES_PAUSE_AT", "0:2"));
    w.wait_for("paused after step 2 of epoch 1", 1);
    w.signal(libc::SIGTERM);
    w.signal(libc::SIGINT);
    let (status, err) = w.finish();
    assert_eq!(status.code(), Some(130), "{err}");
}

/// C3's limit stopped by SIGTERM after GD step 7 of 20: exit 75, one line naming the saved
/// training (beside the cache file, under the limit's key) and the rerun; the rerun continues
/// from step 7, caches the limit (the same tensors as an uninterrupted run's), removes the
/// partial file, and loss.csv and trajectories.csv equal the uninterrupted run's byte for byte.
#[test]
fn a_signal_stops_a_chizat_limit_at_its_step_and_the_rerun_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sets = |cache: &str| -> Vec<String> {
        let mut v: Vec<String> = C3.iter().map(|s| s.to_string()).collect();
        v.push(format!("limit.cache={cache}"));
        v
    };
    let fig = "chizat2025/fig3.yaml";
    let reference = figure(dir, "chizat", fig, &sets("ref/lim"), "ref/out")
        .arg("-q")
        .output();
    finished(reference.unwrap());

    let mut cmd = figure(dir, "chizat", fig, &sets("run/lim"), "run/out");
    let line = stopped_by_sigterm(&mut cmd, "0:7", "paused after step 7 of epoch 1");
    let files = |d: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.join(d))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let cached = files("ref/lim");
    assert_eq!(cached.len(), 1, "{cached:?}");
    let partial = cached[0].replace(".safetensors", ".partial.safetensors");
    assert_eq!(files("run/lim"), std::slice::from_ref(&partial));
    assert_eq!(
        line,
        format!(
            "error: run/lim/{partial}: the limit (D = 2) stopped by SIGTERM after GD step 7 of \
             20, its training saved; resumable: rerun the same command"
        )
    );

    rerun_c3_resuming_at(dir, &sets("run/lim"), 7);
    assert_eq!(
        files("run/lim"),
        cached,
        "the partial file is left or no limit cached"
    );
    assert_same_limit_run(dir, &cached[0]);
}

/// C3's limit saved after every GD step (`limit.save_seconds=0`) and killed by SIGKILL while
/// held after step 7: no handler runs, yet the save of step 6 is there; the rerun continues
/// from step 6 and caches the same tensors as an uninterrupted run's, and its CSVs are
/// byte for byte the same.
#[test]
fn a_limit_saved_as_it_trains_survives_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sets = |cache: &str| -> Vec<String> {
        let mut v: Vec<String> = C3.iter().map(|s| s.to_string()).collect();
        v.extend([
            format!("limit.cache={cache}"),
            "limit.save_seconds=0".into(),
        ]);
        v
    };
    let fig = "chizat2025/fig3.yaml";
    let reference = figure(dir, "chizat", fig, &sets("ref/lim"), "ref/out").output();
    finished(reference.unwrap());

    let mut cmd = figure(dir, "chizat", fig, &sets("run/lim"), "run/out");
    let mut w = Watched::spawn(cmd.env("DEEPRES_PAUSE_AT", "0:7"));
    w.wait_for("paused after step 7 of epoch 1", 1);
    w.signal(libc::SIGKILL);
    let (status, _) = w.finish();
    assert_eq!(status.code(), None, "killed by SIGKILL");

    rerun_c3_resuming_at(dir, &sets("run/lim"), 6);
    let cached: Vec<_> = std::fs::read_dir(dir.join("ref/lim"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let left = std::fs::read_dir(dir.join("run/lim")).unwrap().count();
    assert_eq!(left, 1, "the partial file is left beside the cached limit");
    assert_same_limit_run(dir, &cached[0].to_string_lossy());
}

/// C5 stopped by SIGTERM inside its third batch of models (after GD step 5): exit 75, one line
/// saying so; the two finished batches are kept in `batches/` (one file each, the third not),
/// and the rerun reads them, trains the others, and writes errors.csv and init.csv byte for
/// byte as an uninterrupted run's. A run over the same kept batches trains nothing.
#[test]
fn a_signal_stops_c5_in_a_batch_and_the_rerun_goes_on_from_the_kept_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Figure C5 at a tiny size: 24 models in batches of 4 (7 here).
    let sets: Vec<String> = TINY_C5
        .iter()
        .chain(&["models=24", "batch=4", "limit.cache=lim"])
        .map(|s| s.to_string())
        .collect();
    let fig = "chizat2025/fig5.yaml";
    let reference = finished(figure(dir, "chizat", fig, &sets, "ref").output().unwrap());
    let (batches, none) = batch_counts(&reference);
    assert!(batches >= 6 && none == 0, "{reference}");
    let kept = |d: &str| std::fs::read_dir(dir.join(d).join("batches")).map_or(0, |r| r.count());
    // Each batch of the models, and the same batch at k = 0 (the control).
    assert_eq!(kept("ref"), 2 * batches);

    let mut cmd = figure(dir, "chizat", fig, &sets, "run");
    let line = stopped_by_sigterm(&mut cmd, "3:5", "paused after step 5 of epoch 4");
    assert_eq!(
        line,
        "error: stopped by SIGTERM after GD step 5 of 20 of the figure's models (the limits \
         computed so far are cached, C5's finished batches kept); resumable: rerun the same \
         command"
    );
    assert_eq!(
        kept("run"),
        2,
        "the finished batches are not kept, or the stopped one is"
    );

    let err = finished(figure(dir, "chizat", fig, &sets, "run").output().unwrap());
    assert_eq!(batch_counts(&err), (batches - 2, 2), "{err}");
    for f in ["errors.csv", "init.csv"] {
        assert_same_file(&dir.join("run").join(f), &dir.join("ref").join(f));
    }
    let again = finished(figure(dir, "chizat", fig, &sets, "run").output().unwrap());
    assert_eq!(batch_counts(&again), (0, batches), "{again}");
}

/// (batches trained, batches kept before) from C5's last progress line in `stderr`:
/// "C5: 24/24 models, batches 5 trained and 2 kept before (…".
fn batch_counts(stderr: &str) -> (usize, usize) {
    let line = stderr
        .lines()
        .rfind(|l| l.starts_with("C5: "))
        .expect("a C5 line");
    let words: Vec<&str> = line.split(' ').collect();
    let at = words.iter().position(|w| *w == "batches").expect(line);
    let count = |i: usize| words[at + i].parse().expect(line);
    (count(1), count(4))
}

/// A command with no safe point to stop at (here `deepres scaling`, which trains nothing) hands
/// the signals back (`interrupt::uncatch`): SIGTERM ends it by the signal, as without a
/// handler, rather than being held until it finishes.
#[test]
fn a_command_without_a_safe_point_ends_by_the_signal() {
    use std::os::unix::process::ExitStatusExt;
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Watched::spawn(
        deepres_1t()
            .args(["scaling", "--depths", "10,2000", "--models", "200"])
            .args(["--device", "cpu", "--out", "o"])
            .current_dir(tmp.path()),
    );
    w.wait_for("scaling: full init iid L=10:", 1);
    w.signal(libc::SIGTERM);
    let (status, err) = w.finish();
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}: {err}");
}
