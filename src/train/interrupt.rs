//! Preemption: SIGTERM, SIGINT or SIGUSR1 (what Slurm and most schedulers send before they
//! kill) ask a training run to stop after the step in progress; it then writes a checkpoint
//! that records its position inside the epoch (the step, and the device-side sums of the
//! epoch so far; the data order and augmentation are the epoch's seed replayed) and exits with
//! [`EXIT_CODE`]: "interrupted, resumable". `--resume` continues from that step, and on CPU the
//! run's metrics.csv equals the uninterrupted one's (timing columns aside). A second signal
//! exits at once (status 130), losing only the step in progress.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The exit status of a run stopped by a signal after writing a resumable checkpoint
/// (sysexits' EX_TEMPFAIL).
pub const EXIT_CODE: u8 = 75;

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Installs the handlers (once per process): the first signal sets the flag, the second
/// exits with 130.
pub fn install() {
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGUSR1,
        ] {
            // The conditional shutdown is registered first: it exits only when the flag is
            // already set, i.e. on the second signal.
            let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&flag));
            let _ = signal_hook::flag::register(sig, Arc::clone(&flag));
        }
        flag
    });
}

/// The failpoint standing in for a signal: stop after `step` steps of epoch `epoch` (0-based).
/// Read once from `DEEPRES_INTERRUPT_AT=<epoch>:<step>`; in-process tests set it with
/// [`fail_at`].
fn failpoint() -> &'static Mutex<Option<(i64, i64)>> {
    static AT: OnceLock<Mutex<Option<(i64, i64)>>> = OnceLock::new();
    AT.get_or_init(|| {
        let parse = || {
            let v = std::env::var("DEEPRES_INTERRUPT_AT").ok()?;
            let (e, k) = v.split_once(':')?;
            Some((e.parse().ok()?, k.parse().ok()?))
        };
        Mutex::new(parse())
    })
}

/// Sets (or clears) the failpoint of [`requested`] for this process.
pub fn fail_at(position: Option<(i64, i64)>) {
    *failpoint().lock().unwrap_or_else(|e| e.into_inner()) = position;
}

/// Whether a stop was asked for: a signal, or the failpoint at exactly this position. Called
/// after every training step: an atomic load and an uncontended lock, no environment read.
pub fn requested(epoch: i64, step: i64) -> bool {
    if FLAG.get().is_some_and(|f| f.load(Ordering::Relaxed)) {
        return true;
    }
    *failpoint().lock().unwrap_or_else(|e| e.into_inner()) == Some((epoch, step))
}

/// A run stopped by a signal; `deepres` exits with [`EXIT_CODE`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Interrupted(pub String);
