//! Cell locks (src/sweep/lock.rs): when a lock's owner counts as gone and its lock is taken
//! over. On this host: a dead pid (or a zombie), or a live pid whose start time is not the recorded one (the
//! pid was reused); a live pid with its own start time is respected. Elsewhere: the lock names
//! this process's own Slurm array task (a requeued task), or a task a stand-in `squeue` no
//! longer lists (or calls invalid); a task it lists, an `squeue` that fails otherwise or is
//! missing, and a lock without a Slurm task are respected. The last two tests run the real
//! binary with `SLURM_ARRAY_*` set and a stand-in `squeue` first on `PATH`, which is how the
//! environment reaches the lock code (environment variables are process-wide, so they are only
//! ever set on a child process here).
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

use deepres::sweep::lock::{self, Acquired, Here};

mod common;
use common::stderr;

// ---------------------------------------------------------------- helpers

/// This host's name as the lock code writes it (`Here::current`, checked against `hostname`).
fn host() -> String {
    let here = Here::current().host;
    let o = Command::new("hostname").output().unwrap();
    assert_eq!(here, String::from_utf8_lossy(&o.stdout).trim());
    here
}

/// A lock line as deepres writes it.
fn line(host: &str, pid: u32, pid_start: Option<u64>, slurm: Option<&str>) -> String {
    let start = pid_start.map_or("-".to_string(), |t| t.to_string());
    let mut s = format!("host={host} pid={pid} pid_start={start} started=0");
    if let Some(t) = slurm {
        s += &format!(" slurm={t}");
    }
    s + "\n"
}

/// The start time of `pid` in clock ticks after boot, read independently of the lock code:
/// field 22 of `/proc/<pid>/stat`, counted from the end of the line (the fields after the
/// command name are numbers; 52 fields in all since Linux 3.5), and checked against
/// `/proc/uptime` to lie at most `max_age_s` in the past, which tells field 22 (starttime)
/// apart from every other field.
fn start_ticks(pid: u32, max_age_s: f64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.split_whitespace().collect();
    let t: u64 = fields[fields.len() - 52 + 21].parse().unwrap();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let age = uptime - t as f64 / hz;
    assert!(
        (-0.05..max_age_s).contains(&age),
        "pid {pid}: started {age} s ago?"
    );
    t
}

/// A child that lives until killed; `name` is its command name (what `/proc/<pid>/stat`
/// shows in parentheses), made by copying `sleep` under that name.
fn sleeper(dir: &Path, name: &str) -> Child {
    let exe = dir.join(name);
    std::fs::copy(which("sleep"), &exe).unwrap();
    Command::new(&exe).arg("600").spawn().unwrap()
}

fn which(prog: &str) -> PathBuf {
    let o = Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

/// A pid that is certainly dead: a child that exited and was reaped.
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    c.wait().unwrap();
    c.id()
}

/// `try_lock` on a lock file holding `text`: `Ok(gone owner)` when taken over (the file then
/// holds our line), `Err(owner)` when respected (the file is unchanged).
fn try_lock_over(dir: &Path, text: &str) -> Result<String, String> {
    let path = dir.join("cell.lock");
    std::fs::write(&path, text).unwrap();
    match lock::try_lock(&path).unwrap() {
        Acquired::Got { lock, took_over } => {
            let now = std::fs::read_to_string(&path).unwrap();
            assert!(
                now.contains(&format!("pid={} ", std::process::id())),
                "{now}"
            );
            drop(lock);
            assert!(!path.exists(), "a dropped lock stays");
            Ok(took_over.expect("a lock file was there: it must be reported as taken over"))
        }
        Acquired::Held(owner) => {
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
            std::fs::remove_file(&path).unwrap();
            Err(owner)
        }
    }
}

/// A stand-in `squeue` in `dir/bin/squeue` that records its arguments in `dir/squeue.args`
/// and then runs `body` (shell).
fn stand_in_squeue(dir: &Path, body: &str) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = bin.join("squeue");
    let args = dir.join("squeue.args");
    std::fs::write(
        &path,
        format!("#!/bin/sh\necho \"$@\" > '{}'\n{body}\n", args.display()),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _ = std::fs::remove_file(&args);
    path
}

// ---------------------------------------------------------------- this host

#[test]
fn pid_start_reads_field_22_even_when_the_command_name_has_spaces_and_parentheses() {
    let tmp = tempfile::tempdir().unwrap();
    let mut plain = sleeper(tmp.path(), "plain");
    let mut odd = sleeper(tmp.path(), "a) 1 2 (b");
    std::thread::sleep(std::time::Duration::from_millis(100)); // let exec rename it
    for c in [&plain, &odd] {
        assert_eq!(lock::pid_start(c.id()), Some(start_ticks(c.id(), 30.0)));
    }
    assert_eq!(lock::pid_start(dead_pid()), None);
    for c in [&mut plain, &mut odd] {
        c.kill().unwrap();
        c.wait().unwrap();
    }
}

#[test]
fn a_live_pid_with_its_own_start_time_is_respected_and_with_another_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host();
    // This process, and a child whose command name would confuse a naive /proc parser.
    let mut child = sleeper(tmp.path(), "x) 7 (y");
    std::thread::sleep(std::time::Duration::from_millis(100));
    for pid in [std::process::id(), child.id()] {
        let t = start_ticks(pid, 3600.0);
        let held = try_lock_over(tmp.path(), &line(&host, pid, Some(t), None));
        assert_eq!(held, Err(format!("{host}:{pid}")));
        // Unknown start time (a lock of an older deepres): a live pid is respected.
        assert!(try_lock_over(tmp.path(), &line(&host, pid, None, None)).is_err());
        // Another start time: the pid was reused by another process; the owner is gone.
        for wrong in [t + 1, t.saturating_sub(1), 0] {
            let got = try_lock_over(tmp.path(), &line(&host, pid, Some(wrong), None));
            assert_eq!(
                got,
                Ok(format!("{host}:{pid}")),
                "recorded start {wrong}, real {t}"
            );
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Dead: taken over, whatever the start time says.
    let pid = child.id();
    for start in [None, Some(start_ticks(std::process::id(), 3600.0))] {
        assert!(try_lock_over(tmp.path(), &line(&host, pid, start, None)).is_ok());
    }
}

/// A zombie (a child that exited and that nobody reaped: what the orphans of a killed
/// `deepres sweep --jobs` stay in a container whose init reaps nothing) holds no lock: taken
/// over even with its own start time.
#[test]
fn a_zombie_owner_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host();
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    let t0 = std::time::Instant::now();
    // not waited for: once it has exited it stays a zombie of this process
    while !std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap()
        .rsplit_once(") ")
        .is_some_and(|(_, r)| r.starts_with('Z'))
    {
        assert!(t0.elapsed().as_secs() < 30, "pid {pid} did not exit");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let t = start_ticks(pid, 60.0);
    let got = try_lock_over(tmp.path(), &line(&host, pid, Some(t), None));
    assert_eq!(got, Ok(format!("{host}:{pid}")));
    child.wait().unwrap();
}

// ---------------------------------------------------------------- another host, Slurm

#[test]
fn another_hosts_lock_is_judged_by_its_slurm_task() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("cell.lock");
    // pid 1 is alive here, so only the Slurm rules can make this owner gone.
    let owner_of = |slurm: Option<&str>| {
        std::fs::write(&path, line("node-b", 1, Some(5), slurm)).unwrap();
        lock::owner(&path).unwrap()
    };
    let here = |task: Option<&str>, squeue: &Path| Here {
        host: "node-a".into(),
        slurm_task: task.map(String::from),
        squeue: squeue.to_path_buf(),
    };
    let args = || std::fs::read_to_string(tmp.path().join("squeue.args")).ok();
    let running = stand_in_squeue(tmp.path(), "echo RUNNING");
    let o = owner_of(Some("55_2"));
    assert_eq!(o.slurm.as_deref(), Some("55_2"));
    // squeue lists the task: respected, and squeue was asked about exactly that task.
    assert!(!o.is_gone_from(&here(None, &running)));
    assert_eq!(args().as_deref(), Some("-h -o %T -j 55_2\n"));
    // The lock names this very task (a requeued attempt): gone, whatever squeue says.
    assert!(o.is_gone_from(&here(Some("55_2"), &running)));
    // Another task of the same array is no reason.
    assert!(!o.is_gone_from(&here(Some("55_3"), &running)));
    // squeue no longer lists it, or no longer knows the id: gone.
    let empty = stand_in_squeue(tmp.path(), "true");
    assert!(o.is_gone_from(&here(None, &empty)));
    let invalid = stand_in_squeue(
        tmp.path(),
        "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1",
    );
    assert!(o.is_gone_from(&here(None, &invalid)));
    // squeue fails otherwise, or is missing: nothing is known, respected.
    let down = stand_in_squeue(
        tmp.path(),
        "echo 'slurm_load_jobs error: Unable to contact slurm controller' >&2; exit 1",
    );
    assert!(!o.is_gone_from(&here(None, &down)));
    assert!(!o.is_gone_from(&here(None, &tmp.path().join("no-such-squeue"))));
    // No Slurm task in the lock: another host's process is never judged gone (squeue unasked).
    let _ = std::fs::remove_file(tmp.path().join("squeue.args"));
    let plain = owner_of(None);
    assert!(!plain.is_gone_from(&here(Some("55_2"), &empty)));
    assert_eq!(
        args(),
        None,
        "squeue was asked about a lock without a Slurm task"
    );
    // The host rule wins on the owner's own host: pid 1 is alive, start time 5 is not its own.
    let mut same = here(None, &running);
    same.host = "node-b".into();
    assert!(owner_of(Some("55_2")).is_gone_from(&same) == (lock::pid_start(1) != Some(5)));
}

const TINY_GRID: &str = "name: sl
out_dir: runs
base:
  device: cpu
  data: {name: synthetic, synthetic_train: 96, synthetic_test: 32}
  model: {depth: 8}
  train: {epochs: 3, batch_size: 32, eval_batch_size: 32, optimizer: {lr: 0.05}, schedule: {kind: constant}}
seeds: [0]
";

/// `deepres sweep sl.yaml --cell 0 -q` in `dir`, with the stand-in `squeue` first on `PATH`,
/// the Slurm array task `task` (`JOB_TASK`) in the environment or none, and `extra` env vars.
fn sweep_cell(dir: &Path, task: Option<(&str, &str)>, extra: &[(&str, &str)]) -> Output {
    let mut c = common::deepres();
    let path = format!(
        "{}:{}",
        dir.join("bin").display(),
        std::env::var("PATH").unwrap()
    );
    c.args(["sweep", "sl.yaml", "--cell", "0", "-q"])
        .current_dir(dir)
        .env("PATH", path)
        .env("OMP_NUM_THREADS", "1")
        .env_remove("SLURM_ARRAY_JOB_ID")
        .env_remove("SLURM_ARRAY_TASK_ID");
    if let Some((job, t)) = task {
        c.env("SLURM_ARRAY_JOB_ID", job)
            .env("SLURM_ARRAY_TASK_ID", t);
    }
    c.envs(extra.iter().copied()).output().unwrap()
}

fn epochs(dir: &Path) -> Vec<i64> {
    let text = std::fs::read_to_string(dir.join("runs/sl/s0/metrics.csv")).unwrap_or_default();
    text.lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect()
}

/// A requeued Slurm task: attempt 1 of task 77_0 is killed after epoch 1's checkpoint (inside
/// epoch 2, once its CSV row is written) and leaves its lock (naming the task); as if it had run on another node, the lock's host is changed. Outside
/// Slurm, or as another task, the lock is respected (squeue says 77_0 still runs); task 77_0
/// itself takes it over and resumes after epoch 1.
#[test]
fn a_requeued_slurm_task_takes_over_its_own_lock_from_another_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("sl.yaml"), TINY_GRID).unwrap();
    stand_in_squeue(dir, "echo RUNNING");
    let o = sweep_cell(
        dir,
        Some(("77", "0")),
        &[("DEEPRES_CRASH_AT", "after-csv:2")],
    );
    assert!(
        !o.status.success(),
        "the failpoint did not kill it: {}",
        stderr(&o)
    );
    let lock_file = dir.join("runs/sl/s0.lock");
    let text = std::fs::read_to_string(&lock_file).unwrap();
    assert!(text.starts_with(&format!("host={} ", host())), "{text}");
    assert!(
        text.ends_with(" slurm=77_0\n"),
        "the lock does not name the task: {text}"
    );
    let moved = text.replacen(&format!("host={} ", host()), "host=node-b ", 1);
    std::fs::write(&lock_file, &moved).unwrap();
    assert_eq!(epochs(dir), [1, 2]);
    for task in [None, Some(("77", "1")), Some(("78", "0"))] {
        let o = sweep_cell(dir, task, &[]);
        assert!(
            stderr(&o).contains("skipped (running in node-b:")
                && stderr(&o).contains("(slurm 77_0)"),
            "{task:?}: {}",
            stderr(&o)
        );
        assert_eq!(std::fs::read_to_string(&lock_file).unwrap(), moved);
        assert_eq!(epochs(dir), [1, 2]);
    }
    let o = sweep_cell(dir, Some(("77", "0")), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("took over the lock of node-b:"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("resuming after epoch 1"),
        "{}",
        stderr(&o)
    );
    assert_eq!(epochs(dir), [1, 2, 3]);
    assert!(!lock_file.exists());
}

/// Another node's lock naming a Slurm task that `squeue` (the stand-in on `PATH`) no longer
/// lists is taken over by a process outside Slurm; while `squeue` lists it, it is respected.
#[test]
fn a_lock_of_a_task_squeue_no_longer_lists_is_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("sl.yaml"), TINY_GRID).unwrap();
    std::fs::create_dir_all(dir.join("runs/sl")).unwrap();
    let lock_file = dir.join("runs/sl/s0.lock");
    let text = line("node-b", 4242, Some(9), Some("91_0"));
    std::fs::write(&lock_file, &text).unwrap();
    stand_in_squeue(dir, "echo PENDING");
    let o = sweep_cell(dir, None, &[]);
    assert!(
        stderr(&o).contains("skipped (running in node-b:4242 (slurm 91_0))"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_to_string(&lock_file).unwrap(), text);
    assert_eq!(
        std::fs::read_to_string(dir.join("squeue.args")).unwrap(),
        "-h -o %T -j 91_0\n"
    );
    stand_in_squeue(dir, "true");
    let o = sweep_cell(dir, None, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("took over the lock of node-b:4242 (slurm 91_0) (gone)"),
        "{}",
        stderr(&o)
    );
    assert_eq!(epochs(dir), [1, 2, 3]);
}

/// `deepres train` takes the lock a sweep takes on its run directory: while a live process
/// holds it (here this test, as a sweep would), `train --resume` on that directory is refused in
/// one line naming the holder and writes nothing; once released, it trains and drops the lock.
#[test]
fn train_respects_the_lock_a_sweep_holds_on_its_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = "name: s0\nout_dir: runs/sl\ndevice: cpu\ndata: {name: synthetic, synthetic_train: 96, synthetic_test: 32}\nmodel: {depth: 8}\ntrain: {epochs: 1, batch_size: 32}\n";
    std::fs::write(dir.join("c.yaml"), config).unwrap();
    let lock_file = dir.join("runs/sl/s0.lock");
    let held = match lock::try_lock(&lock_file).unwrap() {
        Acquired::Got { lock, .. } => lock,
        Acquired::Held(o) => panic!("held by {o}"),
    };
    let train = || common::run_in(&["train", "--config", "c.yaml", "--resume", "-q"], dir);
    let e = common::one_line_error(&train());
    let me = format!("running in {}:{}", host(), std::process::id());
    assert!(e.contains("runs/sl/s0: ") && e.contains(&me), "{e}");
    assert!(!dir.join("runs/sl/s0").exists(), "nothing written");
    drop(held);
    let o = train();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.join("runs/sl/s0/metrics.csv").exists());
    assert!(!lock_file.exists(), "the lock is dropped after the run");
}
