//! Cell locks: `<sweep dir>/<cell>.lock`, so that two `deepres sweep` processes on one grid, or
//! the tasks of a Slurm array, never run the same cell.
//!
//! The lock file is created atomically (`O_CREAT | O_EXCL`) and holds one line
//! `host=H pid=P pid_start=T started=S [slurm=J_T]`: the host, the owner's pid, the pid's start
//! time in clock ticks since boot (`/proc/<pid>/stat`, so a reused pid is told apart), the Unix
//! time it was taken and, inside Slurm, the array task. A lock whose owner is gone is taken
//! over: on the same host when the pid is dead or a zombie (or belongs to a newer process); anywhere when
//! it names this very Slurm task (a requeued or resubmitted task finds its own old lock) or a
//! Slurm task that `squeue` no longer lists. Takeovers are serialized by a second
//! `O_EXCL` file, `<cell>.lock.takeover`, so two processes never both take one stale lock.
use anyhow::{Context, Result};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Who holds a lock, as written in the lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub host: String,
    pub pid: u32,
    pub pid_start: Option<u64>,
    pub started: u64,
    pub slurm: Option<String>,
}

impl Owner {
    /// This process.
    pub fn me() -> Owner {
        Owner {
            host: hostname(),
            pid: std::process::id(),
            pid_start: pid_start(std::process::id()),
            started: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            slurm: slurm_task(),
        }
    }

    fn line(&self) -> String {
        let mut s = format!(
            "host={} pid={} pid_start={} started={}",
            self.host,
            self.pid,
            self.pid_start.map(|t| t.to_string()).unwrap_or("-".into()),
            self.started
        );
        if let Some(t) = &self.slurm {
            s += &format!(" slurm={t}");
        }
        s + "\n"
    }

    fn parse(text: &str) -> Option<Owner> {
        let mut host = None;
        let mut pid = None;
        let mut pid_start = None;
        let mut started = None;
        let mut slurm = None;
        if !text.ends_with('\n') {
            return None; // still being written, or torn
        }
        for field in text.split_whitespace() {
            let (k, v) = field.split_once('=')?;
            match k {
                "host" => host = Some(v.to_string()),
                "pid" => pid = v.parse().ok(),
                "pid_start" => pid_start = v.parse().ok(),
                "started" => started = v.parse().ok(),
                "slurm" => slurm = Some(v.to_string()),
                _ => {}
            }
        }
        Some(Owner {
            host: host?,
            pid: pid?,
            pid_start,
            started: started?,
            slurm,
        })
    }

    /// Whether the owner is certainly gone (see the module doc), judged from this process.
    pub fn is_gone(&self) -> bool {
        self.is_gone_from(&Here::current())
    }

    /// Whether the owner is certainly gone, judged from `here`: on `here.host`, by its pid
    /// and the pid's start time; elsewhere, by its Slurm task (`here.slurm_task` itself, or a
    /// task `here.squeue` no longer lists).
    pub fn is_gone_from(&self, here: &Here) -> bool {
        if self.host == here.host {
            if !pid_alive(self.pid) {
                return true;
            }
            return match (self.pid_start, pid_start(self.pid)) {
                (Some(a), Some(b)) => a != b, // the pid now belongs to another process
                _ => false,
            };
        }
        match &self.slurm {
            // An earlier attempt of this very array task (requeued onto another node), or a
            // task Slurm no longer runs.
            Some(task) => {
                here.slurm_task.as_deref() == Some(task.as_str())
                    || slurm_task_gone(&here.squeue, task)
            }
            None => false,
        }
    }
}

/// Where a lock's owner is judged from: this host, this process's Slurm array task, and the
/// `squeue` program asked about another task. [`Here::current`] is this process; the tests
/// build others (a stand-in `squeue`, a Slurm task of their choosing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Here {
    pub host: String,
    /// `JOB_TASK` from `SLURM_ARRAY_JOB_ID` and `SLURM_ARRAY_TASK_ID`, when both are set.
    pub slurm_task: Option<String>,
    /// The `squeue` to run (found on `PATH` when not a path).
    pub squeue: PathBuf,
}

impl Here {
    /// This process: its host name, its Slurm array task and `squeue` from `PATH`.
    pub fn current() -> Here {
        Here {
            host: hostname(),
            slurm_task: slurm_task(),
            squeue: PathBuf::from("squeue"),
        }
    }
}

impl fmt::Display for Owner {
    /// `host:pid`, plus ` (slurm J_T)` inside Slurm.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.pid)?;
        if let Some(t) = &self.slurm {
            write!(f, " (slurm {t})")?;
        }
        Ok(())
    }
}

/// A held cell lock; dropping it removes the lock file (if it is still ours).
#[derive(Debug)]
pub struct CellLock {
    path: PathBuf,
    line: String,
}

impl Drop for CellLock {
    fn drop(&mut self) {
        if std::fs::read_to_string(&self.path).ok().as_deref() == Some(self.line.as_str()) {
            std::fs::remove_file(&self.path).ok();
        }
    }
}

/// What [`try_lock`] found.
#[derive(Debug)]
pub enum Acquired {
    /// The lock is ours until dropped; `took_over` names the gone owner it replaced.
    Got {
        lock: CellLock,
        took_over: Option<String>,
    },
    /// Another live process holds it (or is just writing it).
    Held(String),
}

/// The lock file of the cell whose run directory is `run_dir`: `<run_dir>.lock`.
pub fn lock_path(run_dir: &Path) -> PathBuf {
    let mut s = run_dir.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// The owner of a lock file, if it exists and is complete.
pub fn owner(lock: &Path) -> Option<Owner> {
    Owner::parse(&std::fs::read_to_string(lock).ok()?)
}

/// The owner of a live lock (not gone), for `--status`.
pub fn live_owner(lock: &Path) -> Option<Owner> {
    owner(lock).filter(|o| !o.is_gone())
}

/// A lock file without a complete line this old is an owner killed while writing it.
const TORN_AFTER: Duration = Duration::from_secs(30);

fn age(path: &Path) -> Option<Duration> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
}

/// Creates `path` exclusively with `line`; `Ok(false)` if it exists.
fn create_exclusive(path: &Path, line: &str) -> Result<bool> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(mut f) => {
            if let Err(e) = f.write_all(line.as_bytes()).and_then(|_| f.sync_all()) {
                // Not left torn (a torn lock holds its cell for TORN_AFTER): a full disk says so.
                std::fs::remove_file(path).ok();
                return Err(crate::util::atomic::write_error(path, e.into()));
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("{}: cannot create the lock", path.display())),
    }
}

/// Takes the lock at `path`, taking over a lock whose owner is gone.
pub fn try_lock(path: &Path) -> Result<Acquired> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create", parent.display()))?;
    }
    let line = Owner::me().line();
    let got = |took_over| {
        Ok(Acquired::Got {
            lock: CellLock {
                path: path.to_path_buf(),
                line: line.clone(),
            },
            took_over,
        })
    };
    if create_exclusive(path, &line)? {
        return got(None);
    }
    // Someone holds it, or held it: only one process at a time may judge and replace it.
    let mut guard = path.as_os_str().to_owned();
    guard.push(".takeover");
    let guard = PathBuf::from(guard);
    if !create_exclusive(&guard, &line)? {
        if age(&guard).is_some_and(|a| a > TORN_AFTER) {
            std::fs::remove_file(&guard).ok(); // a takeover killed midway; the next try wins
        }
        return Ok(Acquired::Held("a process taking it over".into()));
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let verdict = match Owner::parse(&text) {
        Some(o) if o.is_gone() => Some(o.to_string()),
        Some(o) => {
            std::fs::remove_file(&guard).ok();
            return Ok(Acquired::Held(o.to_string()));
        }
        None if !path.exists() || age(path).is_some_and(|a| a > TORN_AFTER) => {
            Some("an unreadable old lock".into())
        }
        None => None,
    };
    let result = match verdict {
        Some(gone) => {
            std::fs::remove_file(path).ok();
            if create_exclusive(path, &line)? {
                got(Some(gone))
            } else {
                Ok(Acquired::Held("another process".into()))
            }
        }
        None => Ok(Acquired::Held("a process writing the lock".into())),
    };
    std::fs::remove_file(&guard).ok();
    result
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).replace(char::is_whitespace, "_")
}

/// Whether `pid` names a live process. A zombie (exited, not yet reaped: the orphans of a
/// killed `--jobs` parent stay so in a container whose init reaps nothing) is not.
fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    let exists = rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && !matches!(pid_state(pid), Some('Z' | 'X'))
}

/// Field 3 of `/proc/<pid>/stat`, the state (`R`, `S`, `Z` zombie, `X` dead, ...), on Linux.
fn pid_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks after boot), on Linux. The
/// fields are counted after the last `)`, since the command name (field 2) may hold spaces and
/// parentheses.
pub fn pid_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// This process's Slurm array task, `JOB_TASK` (one cell per task, so no two live processes
/// share it; plain jobs are left out: processes of one job may run side by side).
fn slurm_task() -> Option<String> {
    let env = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
    Some(format!(
        "{}_{}",
        env("SLURM_ARRAY_JOB_ID")?,
        env("SLURM_ARRAY_TASK_ID")?
    ))
}

/// True when `squeue` answers and no longer lists the task (finished, cancelled, failed), or
/// calls its id invalid (Slurm forgot it); false when it lists it or cannot be asked.
fn slurm_task_gone(squeue: &Path, task: &str) -> bool {
    match std::process::Command::new(squeue)
        .args(["-h", "-o", "%T", "-j", task])
        .output()
    {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().is_empty(),
        Ok(o) => String::from_utf8_lossy(&o.stderr).contains("Invalid job id"),
        Err(_) => false,
    }
}
