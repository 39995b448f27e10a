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

/// The environment variable that keeps denormal floats (`DEEPRES_DENORMALS=keep`).
pub const DENORMALS_ENV: &str = "DEEPRES_DENORMALS";

/// Applies `DEEPRES_THREADS` to libtorch's intra-op pool, and flushes denormal floats to zero
/// unless `DEEPRES_DENORMALS=keep` (once, at the start of a command, before libtorch starts its
/// threads, which inherit the setting).
///
/// Why flush: on x86 CPUs an operation on a denormal float (below 1.2·10⁻³⁸) takes about a
/// hundred times longer. Fixup and ReZero start residual branches at zero, so their early
/// activations and gradients are full of denormals: measured on 2 cores (docs/reliability.md),
/// ResNet-20 with ReZero trained at a small fraction of its normal speed. Flushing changes
/// only values below 1.2·10⁻³⁸ (to 0); PyTorch keeps them by default (`torch.set_flush_denormal`).
pub fn apply_env() -> Result<()> {
    if let Some(n) = from_env()? {
        tch::set_num_threads(n as i32);
    }
    let flush = match std::env::var(DENORMALS_ENV).as_deref() {
        Err(_) | Ok("flush") => true,
        Ok("keep") => false,
        Ok(v) => bail!("{DENORMALS_ENV}={v:?}: must be `flush` (the default) or `keep`"),
    };
    crate::util::torch_ext::set_flush_denormal(flush)?;
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

#[cfg(test)]
mod tests {
    use crate::util::torch_ext::set_flush_denormal;

    /// 10⁻³⁰ · 10⁻¹⁰ = 10⁻⁴⁰ is a denormal f32 (the smallest normal is 1.18·10⁻³⁸): kept, the
    /// product is 10⁻⁴⁰ to float rounding; flushed, it is 0. The flags belong to the thread, and
    /// a one-element product runs on it.
    #[test]
    fn flushing_denormals_makes_a_denormal_product_zero() {
        let product = || {
            let a = tch::Tensor::from_slice(&[1e-30f32]);
            (a * 1e-10).double_value(&[0])
        };
        assert!(set_flush_denormal(false).unwrap());
        let kept = product();
        assert!((kept / 1e-40 - 1.0).abs() < 1e-3, "{kept:e}");
        assert!(set_flush_denormal(true).unwrap());
        assert_eq!(product(), 0.0);
        set_flush_denormal(false).unwrap();
    }
}
