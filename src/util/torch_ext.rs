//! libtorch functions that tch 0.24 does not expose, compiled from csrc/torch_ext.cpp by
//! build.rs: CUDA autocast in bf16 or fp16, PyTorch's fused SGD kernel, AMP's unscale, a one-launch sum of
//! squared norms, gradients set to none, channels-last copies and the CUDA caching
//! allocator's peak statistics, deterministic mode, flushing denormals and the generators' state.
use anyhow::{anyhow, Result};
use std::ffi::{c_char, c_int, c_longlong, CStr};
use tch::{Device, Kind, Tensor};

type CTensor = *mut torch_sys::C_tensor;

extern "C" {
    fn deepres_last_error() -> *const c_char;
    fn deepres_autocast_enter(bf16: c_int, prev: *mut c_int) -> c_int;
    fn deepres_autocast_exit(prev: c_int) -> c_int;
    fn deepres_autocast_state(state: *mut c_int) -> c_int;
    fn deepres_fused_sgd(
        params: *const CTensor,
        grads: *const CTensor,
        bufs: *const CTensor,
        n: usize,
        n_bufs: usize,
        weight_decay: f64,
        momentum: f64,
        lr: f64,
        nesterov: c_int,
        first_step: c_int,
        grad_scale: CTensor,
        found_inf: CTensor,
    ) -> c_int;
    fn deepres_fused_sgd_tensor_lr(
        params: *const CTensor,
        grads: *const CTensor,
        bufs: *const CTensor,
        n: usize,
        n_bufs: usize,
        weight_decay: f64,
        momentum: f64,
        lr: CTensor,
        nesterov: c_int,
        first_step: c_int,
        grad_scale: CTensor,
        found_inf: CTensor,
    ) -> c_int;
    fn deepres_sum_of_squares(ts: *const CTensor, n: usize, out: *mut CTensor) -> c_int;
    fn deepres_member_norms(ts: *const CTensor, n: usize, members: i64, out: *mut CTensor)
        -> c_int;
    fn deepres_unscale(
        ts: *const CTensor,
        n: usize,
        found_inf: CTensor,
        inv_scale: CTensor,
    ) -> c_int;
    fn deepres_set_deterministic(on: c_int, benchmark: c_int) -> c_int;
    fn deepres_set_flush_denormal(on: c_int, supported: *mut c_int) -> c_int;
    fn deepres_clear_grads(params: *const CTensor, n: usize) -> c_int;
    fn deepres_channels_last(t: CTensor, out: *mut CTensor) -> c_int;
    fn deepres_rng_get_state(device: c_int, out: *mut CTensor) -> c_int;
    fn deepres_rng_set_state(device: c_int, state: CTensor) -> c_int;
    fn deepres_cuda_peak_bytes(
        device: c_int,
        reset: c_int,
        allocated: *mut c_longlong,
        reserved: *mut c_longlong,
    ) -> c_int;
}

pub(crate) fn check(rc: c_int, what: &str) -> Result<()> {
    if rc == 0 {
        return Ok(());
    }
    // SAFETY: deepres_last_error returns the thread's NUL-terminated message, valid until the
    // next failing call on this thread; it is copied at once.
    let msg = unsafe { CStr::from_ptr(deepres_last_error()) }.to_string_lossy();
    let first = msg.lines().next().unwrap_or("").to_string();
    Err(anyhow!("{what}: libtorch error: {first}"))
}

fn ptrs(ts: &[&Tensor]) -> Vec<CTensor> {
    ts.iter().map(|t| t.as_ptr() as CTensor).collect()
}

fn opt_ptr(t: Option<&Tensor>) -> CTensor {
    t.map_or(std::ptr::null_mut(), |t| t.as_ptr() as CTensor)
}

/// Runs `f` under CUDA autocast in bf16 (`bf16`) or fp16, like
/// `with torch.autocast("cuda", dtype):` (tch's own `autocast` is fp16 only and warns on
/// every call through deprecated libtorch functions). The previous state comes back when `f`
/// panics too (a failed CUDA-graph capture is caught and training goes on).
pub fn cuda_autocast<T>(bf16: bool, f: impl FnOnce() -> T) -> Result<T> {
    /// Leaves the region on drop: after `f`, or while a panic unwinds through it.
    struct Region(c_int);
    impl Drop for Region {
        fn drop(&mut self) {
            let _ = unsafe { deepres_autocast_exit(self.0) };
        }
    }
    // The state before (on or off, and the dtype) that leaving the region restores.
    let mut prev: c_int = 0;
    check(
        unsafe { deepres_autocast_enter(bf16 as c_int, &mut prev) },
        "entering autocast",
    )?;
    let region = Region(prev);
    let out = f();
    std::mem::forget(region); // left here, where an error is reported
    check(unsafe { deepres_autocast_exit(prev) }, "leaving autocast")?;
    Ok(out)
}

/// CUDA autocast's state on this thread: whether it is on, and its dtype (libtorch's default
/// when never set: fp16).
pub fn cuda_autocast_state() -> Result<(bool, Kind)> {
    let mut state: c_int = 0;
    check(
        unsafe { deepres_autocast_state(&mut state) },
        "reading autocast",
    )?;
    // c10::ScalarType's codes of the dtypes autocast takes
    let kind = match state >> 1 {
        5 => Kind::Half,
        6 => Kind::Float,
        15 => Kind::BFloat16,
        k => return Err(anyhow!("autocast dtype: unexpected scalar type code {k}")),
    };
    Ok((state & 1 != 0, kind))
}

/// Hyper-parameters of one [`fused_sgd`] call (one parameter group).
#[derive(Debug, Clone, Copy)]
pub struct FusedSgd {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
    /// The momentum buffers are written as d (not μ·buf + d): the first step.
    pub first_step: bool,
}

/// torch._fused_sgd_ over one group: `params`, their `grads` (divided by `grad_scale` when
/// given) and momentum `bufs` (same shapes; empty when momentum is 0); skipped where
/// `found_inf` is nonzero. The learning rate is `lr_tensor` (1 element, on the device) when
/// given, else `hp.lr`.
pub fn fused_sgd(
    params: &[&Tensor],
    grads: &[&Tensor],
    bufs: &[&Tensor],
    hp: FusedSgd,
    lr_tensor: Option<&Tensor>,
    grad_scale: Option<&Tensor>,
    found_inf: Option<&Tensor>,
) -> Result<()> {
    assert!(params.len() == grads.len() && (bufs.is_empty() || params.len() == bufs.len()));
    let (p, g, b) = (ptrs(params), ptrs(grads), ptrs(bufs));
    let rc = unsafe {
        match lr_tensor {
            None => deepres_fused_sgd(
                p.as_ptr(),
                g.as_ptr(),
                b.as_ptr(),
                p.len(),
                b.len(),
                hp.weight_decay,
                hp.momentum,
                hp.lr,
                hp.nesterov as c_int,
                hp.first_step as c_int,
                opt_ptr(grad_scale),
                opt_ptr(found_inf),
            ),
            Some(lr) => deepres_fused_sgd_tensor_lr(
                p.as_ptr(),
                g.as_ptr(),
                b.as_ptr(),
                p.len(),
                b.len(),
                hp.weight_decay,
                hp.momentum,
                lr.as_ptr() as CTensor,
                hp.nesterov as c_int,
                hp.first_step as c_int,
                opt_ptr(grad_scale),
                opt_ptr(found_inf),
            ),
        }
    };
    check(rc, "fused SGD step")
}

/// Σ‖t‖² over `ts` as a 0-dim fp32 tensor on their device (a few launches, no host sync).
pub fn sum_of_squares(ts: &[&Tensor]) -> Result<Tensor> {
    let p = ptrs(ts);
    let mut out: CTensor = std::ptr::null_mut();
    check(
        unsafe { deepres_sum_of_squares(p.as_ptr(), p.len(), &mut out) },
        "sum of squares",
    )?;
    // SAFETY: on success `out` is a heap-allocated at::Tensor the caller owns.
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// A pack's per-member ‖·‖₂ over `ts` (each the members' tensors stacked along dim 0, member p
/// the p-th of `members` equal row blocks), `[members]` fp32 on their device: one norm per
/// tensor over all members' rows at once, then one over those (no host sync).
pub fn member_norms(ts: &[&Tensor], members: i64) -> Result<Tensor> {
    let p = ptrs(ts);
    let mut out: CTensor = std::ptr::null_mut();
    check(
        unsafe { deepres_member_norms(p.as_ptr(), p.len(), members, &mut out) },
        "per-member norms",
    )?;
    // SAFETY: on success `out` is a heap-allocated at::Tensor the caller owns.
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// AMP's unscale: every tensor of `ts` is multiplied by `inv_scale` in place, and `found_inf`
/// (1 element, fp32) is set to 1 when any entry is inf or NaN.
pub fn unscale_(ts: &[&Tensor], found_inf: &Tensor, inv_scale: &Tensor) -> Result<()> {
    let p = ptrs(ts);
    check(
        unsafe {
            deepres_unscale(
                p.as_ptr(),
                p.len(),
                found_inf.as_ptr() as CTensor,
                inv_scale.as_ptr() as CTensor,
            )
        },
        "gradient unscale",
    )
}

/// Deterministic kernels (`on`) or libtorch's defaults: `torch.use_deterministic_algorithms`
/// (with `warn_only`: an op that has no deterministic kernel prints libtorch's warning naming
/// it instead of failing), cuDNN deterministic and not benchmarking, and
/// `CUBLAS_WORKSPACE_CONFIG=:4096:8` (cuBLAS' deterministic workspaces; set before the
/// first CUDA matmul, kept when already set). Off, cuDNN benchmarks when `cudnn_benchmark`.
pub fn set_deterministic(on: bool, cudnn_benchmark: bool) -> Result<()> {
    if on && std::env::var_os("CUBLAS_WORKSPACE_CONFIG").is_none() {
        std::env::set_var("CUBLAS_WORKSPACE_CONFIG", ":4096:8");
    }
    check(
        unsafe { deepres_set_deterministic(on as c_int, cudnn_benchmark as c_int) },
        "deterministic mode",
    )
}

/// Flush-to-zero and denormals-are-zero for float arithmetic on this thread and the threads it
/// creates later (libtorch's `torch.set_flush_denormal`); false where the CPU lacks the flags.
pub fn set_flush_denormal(on: bool) -> Result<bool> {
    let mut supported: c_int = 0;
    check(
        unsafe { deepres_set_flush_denormal(on as c_int, &mut supported) },
        "flush denormals",
    )?;
    Ok(supported != 0)
}

/// Sets the parameters' gradients to none (PyTorch's `zero_grad(set_to_none=True)`).
pub fn clear_grads(params: &[&Tensor]) -> Result<()> {
    let p = ptrs(params);
    check(
        unsafe { deepres_clear_grads(p.as_ptr(), p.len()) },
        "clear gradients",
    )
}

/// `t` in channels-last (NHWC) memory format: a copy, or `t` when it already is.
pub fn channels_last(t: &Tensor) -> Result<Tensor> {
    let mut out: CTensor = std::ptr::null_mut();
    check(
        unsafe { deepres_channels_last(t.as_ptr() as CTensor, &mut out) },
        "channels-last copy",
    )?;
    // SAFETY: on success `out` is a heap-allocated at::Tensor the caller owns.
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// Converts every 4-D variable of `vs` (the convolution weights) to channels-last in place
/// (`set_data`: the same variables, so optimizer and checkpoint are unaffected).
pub fn vars_to_channels_last(vs: &tch::nn::VarStore) -> Result<()> {
    for (_, mut v) in vs.variables() {
        if v.dim() == 4 {
            let nhwc = channels_last(&v)?;
            tch::no_grad(|| v.set_data(&nhwc));
        }
    }
    Ok(())
}

/// Peak bytes (allocated by tensors, reserved by the caching allocator) on a CUDA device since
/// the process started or the last reset; `reset` starts a new peak. `None` off CUDA.
pub fn cuda_peak_bytes(device: Device, reset: bool) -> Option<(i64, i64)> {
    let Device::Cuda(i) = device else {
        return None;
    };
    let (mut a, mut r) = (0 as c_longlong, 0 as c_longlong);
    let rc = unsafe { deepres_cuda_peak_bytes(i as c_int, reset as c_int, &mut a, &mut r) };
    check(rc, "CUDA allocator statistics").ok()?;
    Some((a, r))
}

/// The generators a random draw on `device` may use: the CPU's, and the device's own on CUDA
/// (some CUDA ops, e.g. a small randperm, draw on the CPU).
fn generators(device: Device) -> Vec<c_int> {
    match device {
        Device::Cuda(i) => vec![-1, i as c_int],
        _ => vec![-1],
    }
}

/// The state of torch's default generators that draws on `device` use (torch.get_rng_state,
/// and torch.cuda.get_rng_state on CUDA): with [`set_rng_state`], several random streams
/// (the members of a pack, each with its own data order and augmentation) share one process.
pub fn rng_state(device: Device) -> Result<Vec<Tensor>> {
    generators(device)
        .into_iter()
        .map(|g| {
            let mut out: CTensor = std::ptr::null_mut();
            check(unsafe { deepres_rng_get_state(g, &mut out) }, "RNG state")?;
            // SAFETY: on success `out` is a heap-allocated at::Tensor the caller owns.
            Ok(unsafe { Tensor::from_ptr(out) })
        })
        .collect()
}

/// Restores the generators' state saved by [`rng_state`] on the same device.
pub fn set_rng_state(device: Device, state: &[Tensor]) -> Result<()> {
    for (g, t) in generators(device).into_iter().zip(state) {
        check(
            unsafe { deepres_rng_set_state(g, t.as_ptr() as CTensor) },
            "RNG state",
        )?;
    }
    Ok(())
}
