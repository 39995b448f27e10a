//! Preemption: SIGTERM, SIGINT or SIGUSR1 (what Slurm and most schedulers send before they
//! kill) ask a training run to stop after the step in progress; it then writes a checkpoint
//! that records its position inside the epoch (the step, and the device-side sums of the
//! epoch so far; the data order and augmentation are the epoch's seed replayed) and exits with
//! [`EXIT_CODE`]: "interrupted, resumable". `--resume` continues from that step, and on CPU the
//! run's metrics.csv equals the uninterrupted one's (timing columns aside). A second signal
//! exits at once (status 130), losing only the step in progress. The same signal again from
//! the same process within a second is a copy of the first, not a second signal: GNU
//! `timeout` sends its signal to the process and to its process group, and the kernel merges
//! the two only when the second arrives while the first is still pending.
//!
//! Marion's M8/M9 training (`papers::marion2022::train`) and Chizat's limits
//! (`papers::chizat2025::limit`) stop the same way at their step, with their own checkpoints.
//!
//! `deepres sweep --jobs N` catches the same signals ([`signal`]) and forwards the first to its
//! children, which it starts with these signals blocked: [`install`] unblocks them, so a signal
//! that arrives while a child is still starting up waits for the child's handler.
//!
//! A signal forwarded by the parent process (a `--jobs` scheduler, the Slurm task's batch
//! shell) and one sent directly (Slurm signals every process of a job; `kill`; a terminal)
//! are counted apart: the second signal is the second of the same origin, so the copy that
//! a scheduler forwards of a signal the process also got itself does not end it at once.
//!
//! `deepres` installs the handler first thing in `main`, so that a signal during argument
//! parsing or start-up is not lost; a command with no safe point to stop at calls
//! [`uncatch`], after which the signals end the process as if no handler were installed.
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// The exit status of a run stopped by a signal after writing a resumable checkpoint
/// (sysexits' EX_TEMPFAIL).
pub const EXIT_CODE: u8 = 75;

/// The signals that stop a run resumably.
pub const SIGNALS: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGUSR1];

/// Set by the first signal.
static FLAG: AtomicBool = AtomicBool::new(false);
/// The number of the first signal received (0: none yet).
static FIRST: AtomicI32 = AtomicI32::new(0);
/// Signals received from the parent process, and from anyone else.
static FROM_PARENT: AtomicUsize = AtomicUsize::new(0);
static DIRECT: AtomicUsize = AtomicUsize::new(0);
/// Set by [`uncatch`]: the signals take their default action (they end the process).
static UNCAUGHT: AtomicBool = AtomicBool::new(false);
/// The last signal sent by a process (kill(2)): its number, sender and arrival (monotonic
/// milliseconds), to tell a copy from a second signal.
static LAST_SIG: AtomicI32 = AtomicI32::new(0);
static LAST_PID: AtomicI32 = AtomicI32::new(0);
static LAST_MS: AtomicI64 = AtomicI64::new(0);
/// How long after a signal the same one from the same sender counts as its copy.
const COPY_WINDOW_MS: i64 = 1000;

/// Installs the handlers (once per process): the first signal sets the flag, the second of
/// the same origin exits with 130. Then unblocks the signals (blocked by a `--jobs` parent
/// until now).
pub fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        for sig in SIGNALS {
            // SAFETY: the action only uses atomics, getppid and _exit: async-signal-safe.
            let _ = unsafe {
                signal_hook_registry::register_sigaction(sig, move |info| on_signal(sig, info))
            };
        }
        set_blocked(false);
    });
}

/// The handler: counts the signal by its origin, records the first, exits on the second.
fn on_signal(sig: i32, info: &libc::siginfo_t) {
    if UNCAUGHT.load(Ordering::SeqCst) {
        die_of(sig);
        return;
    }
    // SAFETY: si_pid is the sender's pid for kill(2) and 0 for the kernel's (a terminal's)
    // signals; getppid cannot fail.
    let (pid, from_parent) = unsafe { (info.si_pid(), info.si_pid() == libc::getppid()) };
    if info.si_code == libc::SI_USER && is_copy(sig, pid) {
        return;
    }
    let count = if from_parent { &FROM_PARENT } else { &DIRECT };
    let n = count.fetch_add(1, Ordering::SeqCst) + 1;
    let _ = FIRST.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    FLAG.store(true, Ordering::SeqCst);
    if n >= 2 {
        // SAFETY: _exit is async-signal-safe; the second signal ends the process at once.
        unsafe { libc::_exit(130) };
    }
}

/// Whether `sig` from process `pid` repeats the last signal a process sent within
/// [`COPY_WINDOW_MS`] (see the module doc); records it as the last either way.
fn is_copy(sig: i32, pid: i32) -> bool {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime is async-signal-safe and writes the local timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let now = ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000;
    let last_sig = LAST_SIG.swap(sig, Ordering::SeqCst);
    let last_pid = LAST_PID.swap(pid, Ordering::SeqCst);
    let last_ms = LAST_MS.swap(now, Ordering::SeqCst);
    last_sig == sig && last_pid == pid && now - last_ms < COPY_WINDOW_MS
}

/// For a command that has no safe point to stop at: from now on the signals take their default
/// action (the process ends by the signal), and one that arrived since [`install`] does so now.
pub fn uncatch() {
    UNCAUGHT.store(true, Ordering::SeqCst);
    if let Some(sig) = signal() {
        die_of(sig);
    }
}

/// Resets `sig` to its default action and raises it: at once outside a handler, and inside
/// one as soon as the handler returns (the signal is blocked while its handler runs).
fn die_of(sig: i32) {
    // SAFETY: signal(2) and raise(3) are async-signal-safe.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// Blocks (`true`) or unblocks [`SIGNALS`] for the calling thread; a child started by
/// `Command` inherits the mask of the thread that forks it (its `pre_exec` calls this).
pub fn set_blocked(blocked: bool) {
    // SAFETY: sigemptyset, sigaddset and pthread_sigmask on a local set; async-signal-safe.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in SIGNALS {
            libc::sigaddset(&mut set, sig);
        }
        let how = if blocked {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// The first signal received since [`install`], if any.
pub fn signal() -> Option<i32> {
    FLAG.load(Ordering::SeqCst)
        .then(|| match FIRST.load(Ordering::SeqCst) {
            0 => libc::SIGTERM,
            sig => sig,
        })
}

/// A signal's name: `SIGTERM`, `SIGINT`, `SIGUSR1` (else its number).
pub fn name(sig: i32) -> String {
    match sig {
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGINT => "SIGINT".into(),
        libc::SIGUSR1 => "SIGUSR1".into(),
        libc::SIGKILL => "SIGKILL".into(),
        n => format!("signal {n}"),
    }
}

/// `<epoch>:<step>` from the environment variable `var`, read once by the caller.
fn position_from_env(var: &str) -> Option<(i64, i64)> {
    let v = std::env::var(var).ok()?;
    let (e, k) = v.split_once(':')?;
    Some((e.parse().ok()?, k.parse().ok()?))
}

/// The failpoint standing in for a signal: stop after `step` steps of epoch `epoch` (0-based).
/// Read once from `DEEPRES_INTERRUPT_AT=<epoch>:<step>`; in-process tests set it with
/// [`fail_at`].
fn failpoint() -> &'static Mutex<Option<(i64, i64)>> {
    static AT: OnceLock<Mutex<Option<(i64, i64)>>> = OnceLock::new();
    AT.get_or_init(|| Mutex::new(position_from_env("DEEPRES_INTERRUPT_AT")))
}

/// The failpoint that holds a run still until a signal arrives and for a second after it,
/// for tests that must signal a process at a known step (and may send it more): after `step`
/// steps of epoch `epoch` (0-based), from `DEEPRES_PAUSE_AT=<epoch>:<step>`, read once.
fn pause_point() -> Option<(i64, i64)> {
    static AT: OnceLock<Option<(i64, i64)>> = OnceLock::new();
    *AT.get_or_init(|| position_from_env("DEEPRES_PAUSE_AT"))
}

/// Sets (or clears) the failpoint of [`requested`] for this process.
pub fn fail_at(position: Option<(i64, i64)>) {
    *failpoint().lock().unwrap_or_else(|e| e.into_inner()) = position;
}

/// Whether a stop was asked for: a signal, or the failpoint at exactly this position. Called
/// after every training step: an atomic load and an uncontended lock, no environment read.
/// At the pause failpoint it says so on stderr and waits for a signal (and a second more).
pub fn requested(epoch: i64, step: i64) -> bool {
    if signal().is_some() {
        return true;
    }
    if pause_point() == Some((epoch, step)) {
        crate::util::eprintln_whole!(
            "paused after step {step} of epoch {} until a signal (DEEPRES_PAUSE_AT)",
            epoch + 1
        );
        while signal().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
        return true;
    }
    *failpoint().lock().unwrap_or_else(|e| e.into_inner()) == Some((epoch, step))
}

/// A run stopped by a signal; `deepres` exits with [`EXIT_CODE`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Interrupted(pub String);
