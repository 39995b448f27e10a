//! CUDA graphs for the training step (`train.cuda_graph: true`, `deepres bench --cuda-graph`).
//!
//! At batch 128 the CIFAR ResNets keep an H100/H200 mostly idle: each step is a few thousand
//! small kernels and the host cannot launch them fast enough. [`Stepper`] captures one whole
//! step ([`super::train_step`]: forward, loss, backward, gradient norm, fused SGD, the device
//! sums) into a CUDA graph once, then replays it for every full batch: the host copies the
//! batch into the graph's static input, writes the learning rate into a device tensor, and
//! launches the graph. The data pipeline (shuffle, crop, flip, normalize) stays outside the
//! graph, so its random numbers are drawn exactly as without graphs.
//!
//! Before capturing, [`WARMUP_STEPS`] ordinary steps run (cuDNN autotuning, momentum buffers,
//! allocator); a batch of another size (an epoch's last, partial batch) runs as an ordinary
//! step. The captured step does not execute while it is captured: it is replayed at once.
use anyhow::{anyhow, bail, Result};
use std::ffi::{c_char, c_int, c_void, CStr};
use tch::{Device, Tensor};

use super::recipe::Targets;
use super::sgd::Sgd;
use super::{train_step, StepSums};
use crate::model::resnet::ResNet;
use crate::train::config::Precision;

/// Ordinary steps before the capture.
pub const WARMUP_STEPS: i64 = 3;

extern "C" {
    fn deepres_graph_last_error() -> *const c_char;
    fn deepres_graph_available() -> c_int;
    fn deepres_graph_new() -> *mut c_void;
    fn deepres_graph_free(g: *mut c_void);
    fn deepres_graph_capture_begin(g: *mut c_void, device: c_int) -> c_int;
    fn deepres_graph_capture_end(g: *mut c_void) -> c_int;
    fn deepres_graph_replay(g: *mut c_void) -> c_int;
}

fn graph_error(what: &str) -> anyhow::Error {
    // SAFETY: a NUL-terminated message owned by the C++ side, copied at once.
    let msg = unsafe { CStr::from_ptr(deepres_graph_last_error()) }.to_string_lossy();
    anyhow!("{what}: {}", msg.lines().next().unwrap_or(""))
}

/// Whether this build has CUDA graphs (CUDA runtime headers found at build time).
pub fn available() -> bool {
    unsafe { deepres_graph_available() != 0 }
}

/// One captured CUDA graph (libtorch's at::cuda::CUDAGraph and its private memory pool).
struct CudaGraph(*mut c_void);

impl Drop for CudaGraph {
    fn drop(&mut self) {
        unsafe { deepres_graph_free(self.0) }
    }
}

impl CudaGraph {
    /// Captures what `f` launches on CUDA device `device`.
    fn capture(device: usize, f: impl FnOnce()) -> Result<CudaGraph> {
        let g = unsafe { deepres_graph_new() };
        if g.is_null() {
            return Err(graph_error("CUDA graph"));
        }
        let graph = CudaGraph(g);
        if unsafe { deepres_graph_capture_begin(g, device as c_int) } != 0 {
            return Err(graph_error("CUDA graph capture"));
        }
        f();
        if unsafe { deepres_graph_capture_end(g) } != 0 {
            return Err(graph_error("CUDA graph capture"));
        }
        Ok(graph)
    }

    fn replay(&self) -> Result<()> {
        if unsafe { deepres_graph_replay(self.0) } != 0 {
            return Err(graph_error("CUDA graph replay"));
        }
        Ok(())
    }
}

/// The captured step: its graph and static inputs.
struct Captured {
    graph: CudaGraph,
    x: Tensor,
    y: Tensor,
}

/// Runs training steps, through a CUDA graph when enabled (see the module doc).
pub struct Stepper {
    device: Option<usize>,
    batch: i64,
    warmup_left: i64,
    captured: Option<Captured>,
}

impl Stepper {
    /// Ordinary steps (`cuda_graph` false), or graphed steps of `batch` images on `device`
    /// (CUDA only; the optimizer switches to a device-side learning rate).
    pub fn new(cuda_graph: bool, device: Device, batch: i64, opt: &mut Sgd) -> Result<Stepper> {
        let device = match (cuda_graph, device) {
            (false, _) => None,
            (true, Device::Cuda(i)) => {
                if !available() {
                    return Err(graph_error("this build"));
                }
                opt.use_lr_tensor(0.0);
                Some(i)
            }
            (true, d) => bail!(
                "CUDA graphs need a CUDA device, the device is {}: turn them off there",
                format!("{d:?}").to_lowercase()
            ),
        };
        Ok(Stepper {
            device,
            batch,
            warmup_left: WARMUP_STEPS,
            captured: None,
        })
    }

    /// Whether steps of full batches are (or will be) replayed from a graph.
    pub fn graphed(&self) -> bool {
        self.device.is_some()
    }

    /// One training step on (x, y) at learning rate `lr`, like [`train_step`].
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        model: &ResNet,
        opt: &mut Sgd,
        x: &Tensor,
        targets: &Targets,
        lr: f64,
        precision: Precision,
        grad_norm: bool,
        sums: &mut StepSums,
    ) -> Result<()> {
        let Some(device) = self.device else {
            train_step(model, opt, x, targets, lr, precision, grad_norm, sums);
            return Ok(());
        };
        // (recipe::validate keeps mixup and label smoothing away from captured graphs)
        let y = &targets.y;
        opt.set_lr_tensor(lr);
        let b = y.size()[0];
        if b != self.batch || self.warmup_left > 0 {
            if b == self.batch {
                self.warmup_left -= 1;
            }
            train_step(model, opt, x, targets, lr, precision, grad_norm, sums);
            return Ok(());
        }
        match &mut self.captured {
            Some(c) => {
                c.x.copy_(x);
                c.y.copy_(y);
                c.graph.replay()?;
                sums.images += b;
                sums.steps += 1;
            }
            None => {
                let (sx, sy) = (x.copy(), y.copy());
                // The capture records the step (and counts it in `sums` once on the host);
                // the replay right after runs it.
                let graph = CudaGraph::capture(device, || {
                    train_step(
                        model,
                        opt,
                        &sx,
                        &Targets::hard(&sy),
                        lr,
                        precision,
                        grad_norm,
                        sums,
                    )
                })?;
                graph.replay()?;
                self.captured = Some(Captured {
                    graph,
                    x: sx,
                    y: sy,
                });
            }
        }
        Ok(())
    }
}
