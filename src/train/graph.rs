//! CUDA graphs for the training step (`train.cuda_graph: true`, `deepres bench --cuda-graph`),
//! of one model or of a pack ([`super::pack`]).
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
//! Where the capture fails (an operation that cannot be captured), one line says so and the
//! run goes on with ordinary steps.
//!
//! A pack's step also depends on the optimizer's plan ([`Sgd::plan`]: which members still
//! train, and whether one kernel updates them all). The plan changes rarely (a member
//! diverges and is frozen; members on different schedules reach different rates); when it
//! does, the step is captured again, at once (the warm-up's work is done by then).
use anyhow::{anyhow, bail, Result};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use tch::{Device, Tensor};

use super::pack::pack_step;
use super::recipe::Targets;
use super::sgd::Sgd;
use super::{train_step, StepSums};
use crate::model::packed::PackedResNet;
use crate::model::resnet::ResNet;
use crate::train::config::Precision;
use crate::util::{eprintln_whole, one_line, panic_message};

/// Ordinary steps before the capture.
pub const WARMUP_STEPS: i64 = 3;

/// The environment variable that lets `deepres train` (and `sweep`, packs included) run with
/// `train.cuda_graph: true`/`auto` although a graphed training is not yet shown to learn as
/// an ordinary one ([`UNVERIFIED`]); set to `1` by the GPU checks that look for the cause
/// (tests/gpu_train_graph.rs, scripts/gpu_tables.sh).
pub const TRAINING_GRAPH_ENV: &str = "DEEPRES_UNVERIFIED_CUDA_GRAPH";

/// Why `train.cuda_graph: true` is refused, in one line (the refusal adds how
/// [`TRAINING_GRAPH_ENV`] runs it anyway).
pub const UNVERIFIED: &str = "train.cuda_graph: true is refused for now: on an H200 on 2026-12-04 a graphed `deepres train` of ResNet-110 did not learn (test accuracy 0.09 after 2 epochs, 0.81 without graphs; BENCHMARKS.md), although single graphed steps equal ordinary ones; set it to false";

/// Whether graphed training may run ([`TRAINING_GRAPH_ENV`] is `1`); `deepres bench
/// --cuda-graph`, which times steps, and Marion et al.'s figures (whose graphed training
/// equals the ordinary one on an H200, tests/gpu_graph.rs) do not ask.
pub fn training_verified() -> bool {
    std::env::var(TRAINING_GRAPH_ENV).is_ok_and(|v| v == "1")
}

extern "C" {
    fn deepres_graph_last_error() -> *const c_char;
    fn deepres_graph_available() -> c_int;
    fn deepres_graph_new() -> *mut c_void;
    fn deepres_graph_free(g: *mut c_void);
    fn deepres_graph_capture_begin(g: *mut c_void, device: c_int) -> c_int;
    fn deepres_graph_capture_end(g: *mut c_void) -> c_int;
    fn deepres_graph_replay(g: *mut c_void) -> c_int;
}

pub(crate) fn graph_error(what: &str) -> anyhow::Error {
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
    /// Captures what `f` launches on CUDA device `device`. An operation that cannot be
    /// captured (a host sync, say) makes `f` panic: the capture is ended all the same, and the
    /// panic is the error.
    fn capture(device: usize, f: impl FnOnce()) -> Result<CudaGraph> {
        let g = unsafe { deepres_graph_new() };
        if g.is_null() {
            return Err(graph_error("CUDA graph"));
        }
        let graph = CudaGraph(g);
        if unsafe { deepres_graph_capture_begin(g, device as c_int) } != 0 {
            return Err(graph_error("CUDA graph capture"));
        }
        let ran = catch_unwind(AssertUnwindSafe(f));
        let ended = unsafe { deepres_graph_capture_end(g) };
        if let Err(p) = ran {
            let msg = one_line(&panic_message(p.as_ref()));
            bail!("CUDA graph capture: the step failed while captured: {msg}");
        }
        if ended != 0 {
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

/// The captured step: its graph, static inputs and the optimizer's plan it was captured under.
struct Captured {
    graph: CudaGraph,
    x: Tensor,
    y: Tensor,
    plan: Vec<bool>,
}

/// The host-side count of a run's images and steps, `(images, steps)`: a replay advances it as
/// the step it stands for would, a failed capture puts it back ([`Stepper::step_with`]).
pub trait StepCount {
    fn counts(&self) -> (i64, i64);
    fn set_counts(&mut self, counts: (i64, i64));
}

impl StepCount for StepSums {
    fn counts(&self) -> (i64, i64) {
        (self.images, self.steps)
    }
    fn set_counts(&mut self, (images, steps): (i64, i64)) {
        (self.images, self.steps) = (images, steps);
    }
}

/// Runs training steps, through a CUDA graph when enabled (see the module doc): one model's
/// ([`Stepper::step`]), a pack's ([`Stepper::step_pack`]), or any step ([`Stepper::step_with`]).
pub struct Stepper {
    device: Option<usize>,
    batch: i64,
    warmup_left: i64,
    captured: Option<Captured>,
}

impl Stepper {
    /// Ordinary steps (`cuda_graph` false), or graphed steps of `batch` images on `device`
    /// (CUDA only; the optimizer switches to device-side learning rates).
    pub fn new(cuda_graph: bool, device: Device, batch: i64, opt: &mut Sgd) -> Result<Stepper> {
        let stepper = Stepper::on(cuda_graph, device, batch)?;
        if stepper.graphed() {
            opt.use_lr_tensors();
        }
        Ok(stepper)
    }

    /// [`Stepper::new`] for steps whose optimizer reads no host value that changes between
    /// steps (the caller's business: a replay reruns the captured kernels as they are).
    pub fn on(cuda_graph: bool, device: Device, batch: i64) -> Result<Stepper> {
        let device = match (cuda_graph, device) {
            (false, _) => None,
            (true, Device::Cuda(i)) => {
                if !available() {
                    return Err(graph_error("this build"));
                }
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
        // (recipe::validate keeps mixup and label smoothing away from captured graphs)
        opt.set_lr_tensors(&[lr]);
        let inputs = || (x.shallow_clone(), targets.y.shallow_clone());
        self.step_with(
            targets.len(),
            inputs,
            Vec::new(),
            sums,
            |given, sums| match given {
                None => train_step(model, opt, x, targets, lr, precision, grad_norm, sums),
                Some((sx, sy)) => {
                    let t = Targets::hard(sy);
                    train_step(model, opt, sx, &t, lr, precision, grad_norm, sums)
                }
            },
        )
    }

    /// One step of a pack, like [`pack_step`]: the members' batches `x` (stacked) against
    /// `targets[p]` at `lrs[p]`. Graphed, the static input is the stacked batch and the labels
    /// `[P, batch]`; a member frozen, or the members' rates parting, captures the step again.
    #[allow(clippy::too_many_arguments)]
    pub fn step_pack(
        &mut self,
        model: &PackedResNet,
        opt: &mut Sgd,
        x: &Tensor,
        targets: &[Targets],
        lrs: &[f64],
        precision: Precision,
        sums: &mut StepSums,
    ) -> Result<()> {
        opt.set_lr_tensors(lrs);
        // (only a graph needs the plan: ordinary steps skip it)
        let plan = if self.graphed() {
            opt.plan(lrs)
        } else {
            Vec::new()
        };
        let inputs = || {
            let ys: Vec<Tensor> = targets.iter().map(|t| t.y.shallow_clone()).collect();
            (x.shallow_clone(), Tensor::stack(&ys, 0))
        };
        self.step_with(
            targets[0].len(),
            inputs,
            plan,
            sums,
            |given, sums| match given {
                None => pack_step(model, opt, x, targets, lrs, precision, sums),
                Some((sx, sy)) => {
                    let ts: Vec<Targets> = (0..targets.len() as i64)
                        .map(|p| Targets::hard(&sy.get(p)))
                        .collect();
                    pack_step(model, opt, sx, &ts, lrs, precision, sums)
                }
            },
        )
    }

    /// Runs one step of `b` images: `step(None, sums)` on the caller's inputs when ordinary
    /// (no graph, a warm-up step, a partial batch); else `inputs()` (the batch and labels) are
    /// copied into the graph's static tensors and the graph captured under `plan` is replayed,
    /// first captured from `step(Some((x, y)), sums)` on the static tensors (again when the
    /// plan changed). `step` must count the step in `sums` ([`StepCount`]: a replay counts
    /// it here). When the capture fails, one line says why, the step runs ordinarily and
    /// graphs are off from then on.
    pub fn step_with<S: StepCount>(
        &mut self,
        b: i64,
        inputs: impl FnOnce() -> (Tensor, Tensor),
        plan: Vec<bool>,
        sums: &mut S,
        mut step: impl FnMut(Option<(&Tensor, &Tensor)>, &mut S),
    ) -> Result<()> {
        let Some(device) = self.device else {
            step(None, sums);
            return Ok(());
        };
        if b != self.batch || self.warmup_left > 0 {
            if b == self.batch {
                self.warmup_left -= 1;
            }
            step(None, sums);
            return Ok(());
        }
        if self.captured.as_ref().is_some_and(|c| c.plan != plan) {
            self.captured = None; // its graph (and memory pool) go before the new capture
        }
        let (x, y) = inputs();
        match &mut self.captured {
            Some(c) => {
                c.x.copy_(&x);
                c.y.copy_(&y);
                c.graph.replay()?;
                let (images, steps) = sums.counts();
                sums.set_counts((images + b, steps + 1));
            }
            None => {
                let (sx, sy) = (x.copy(), y.copy());
                let counted = sums.counts();
                // The capture records the step (and counts it in `sums` once on the host);
                // the replay right after runs it.
                match CudaGraph::capture(device, || step(Some((&sx, &sy)), sums)) {
                    Ok(graph) => {
                        graph.replay()?;
                        self.captured = Some(Captured {
                            graph,
                            x: sx,
                            y: sy,
                            plan,
                        });
                    }
                    Err(e) => {
                        // Nothing recorded ran: this step and all after it run ordinarily.
                        eprintln_whole!(
                            "train.cuda_graph: {e:#}; training goes on without CUDA graphs"
                        );
                        sums.set_counts(counted);
                        self.device = None;
                        step(None, sums);
                    }
                }
            }
        }
        Ok(())
    }
}
