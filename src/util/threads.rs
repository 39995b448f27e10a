//! How many threads deepres computes with. `DEEPRES_THREADS=N` (an integer ≥ 1) sets both
//! deepres' own parallel code (the i.i.d. weight sampler of `model::weight_init`) and libtorch's
//! intra-op pool; unset, deepres uses the available cores (at most 16) and libtorch its default
//! (`OMP_NUM_THREADS`, else the cores). deepres' own results do not depend on the number (fixed
//! blocks of work, see docs/reliability.md); some of libtorch's CPU kernels do.
use anyhow::{bail, Result};

/// The environment variable that sets the thread count.
pub const ENV: &str = "DEEPRES_THREADS";

/// `DEEPRES_THREADS` parsed: None when unset, an error line when it is not an integer ≥ 1.
pub fn from_env() -> Result<Option<usize>> {
    match std::env::var(ENV) {
        Err(_) => Ok(None),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => bail!("{ENV}={v:?}: must be an integer ≥ 1 (or unset: all cores)"),
        },
    }
}

/// Threads of deepres' own parallel code: `DEEPRES_THREADS`, else the available cores (≤ 16).
pub fn worker_threads() -> usize {
    from_env().ok().flatten().unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map_or(1, |t| t.get())
            .min(16)
    })
}

/// Applies `DEEPRES_THREADS` to libtorch's intra-op pool (once, at the start of a command).
pub fn apply_env() -> Result<()> {
    if let Some(n) = from_env()? {
        tch::set_num_threads(n as i32);
    }
    Ok(())
}

/// libtorch's intra-op thread count held at a value until dropped, then restored (a run in
/// deterministic mode on the CPU holds it at 1; the next run of an in-process sweep gets the
/// previous count back).
pub struct TorchThreads(i32);

impl TorchThreads {
    pub fn hold(n: i32) -> TorchThreads {
        let previous = tch::get_num_threads();
        tch::set_num_threads(n);
        TorchThreads(previous)
    }
}

impl Drop for TorchThreads {
    fn drop(&mut self) {
        tch::set_num_threads(self.0);
    }
}
