//! Full-batch gradient descent of a batch of models for K steps (the step itself, with the
//! mean-field step size λ = η/(s²·L·M), is [`TwoLayerResNet::gd_step`]), and the steps at which
//! the held-out outputs are recorded.
use anyhow::Result;
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

use crate::model::two_layer_resnet::TwoLayerResNet;
use crate::train::interrupt::{self, Interrupted};

/// The steps at which test outputs are recorded: multiples of 5 and K.
pub fn recorded(k: usize, steps: usize) -> bool {
    k <= steps && (k.is_multiple_of(5) || k == steps)
}

pub(super) fn recorded_steps(steps: usize) -> Vec<usize> {
    (0..=steps).filter(|&k| recorded(k, steps)).collect()
}

/// A training after `done` steps: the loss before each of them (`[models]` each) and the
/// test outputs recorded so far.
pub struct Progress {
    pub done: usize,
    pub losses: Vec<Tensor>,
    pub outputs: BTreeMap<usize, Tensor>,
}

impl Progress {
    /// Before the first step.
    pub fn start() -> Progress {
        Progress {
            done: 0,
            losses: Vec::new(),
            outputs: BTreeMap::new(),
        }
    }
}

/// Trains `net` for K steps on (x, y); returns the training loss per step `[K + 1, models]`
/// (the last row after the last step) and the test outputs at the recorded steps
/// (step → `[models, n_test]`). `each_step(k, net)` runs after every step. A preemption signal
/// ([`crate::train::interrupt`]) stops it after the step in progress with [`Interrupted`]:
/// these models are trained again by the rerun (the limits, the long part, keep theirs).
pub fn train(
    net: &mut TwoLayerResNet,
    x: &Tensor,
    y: &Tensor,
    x_test: &Tensor,
    steps: usize,
    each_step: impl FnMut(usize, &TwoLayerResNet),
) -> Result<(Tensor, BTreeMap<usize, Tensor>)> {
    let stop = |_| interrupt::signal().is_some();
    train_until(net, (x, y, x_test), steps, each_step, stop)
}

/// [`train`] for C5's `batch`-th batch of models (from 1 over the whole sweep), which the
/// tests' failpoints (`DEEPRES_PAUSE_AT`, `DEEPRES_INTERRUPT_AT`) see as epoch `batch` (a
/// limit's GD steps being epoch 0), so that a test can stop a sweep inside a given batch.
pub fn train_batch(
    net: &mut TwoLayerResNet,
    data: (&Tensor, &Tensor, &Tensor),
    steps: usize,
    batch: i64,
) -> Result<(Tensor, BTreeMap<usize, Tensor>)> {
    let stop = |k: usize| interrupt::requested(batch, k as i64);
    train_until(net, data, steps, |_, _| {}, stop)
}

/// [`train_from`] the start, `stop(k)` asked after every step, its stop turned into
/// [`Interrupted`].
fn train_until(
    net: &mut TwoLayerResNet,
    data: (&Tensor, &Tensor, &Tensor),
    steps: usize,
    each_step: impl FnMut(usize, &TwoLayerResNet),
    stop: impl FnMut(usize) -> bool,
) -> Result<(Tensor, BTreeMap<usize, Tensor>)> {
    train_from(net, data, steps, Progress::start(), each_step, stop).map_err(|p| {
        let sig = interrupt::signal().unwrap_or(libc::SIGTERM);
        Interrupted(format!(
            "stopped by {} after GD step {} of {steps} of the figure's models (the limits \
             computed so far are cached, C5's finished batches kept); resumable: rerun the \
             same command",
            interrupt::name(sig),
            p.done
        ))
        .into()
    })
}

/// [`train`] from `p` on (`net` holds the weights after `p.done` steps); `stop(k)` is asked
/// after every step k < K and, when it says so, the progress is returned as the error.
pub fn train_from(
    net: &mut TwoLayerResNet,
    (x, y, x_test): (&Tensor, &Tensor, &Tensor),
    steps: usize,
    mut p: Progress,
    mut each_step: impl FnMut(usize, &TwoLayerResNet),
    mut stop: impl FnMut(usize) -> bool,
) -> std::result::Result<(Tensor, BTreeMap<usize, Tensor>), Progress> {
    let _guard = tch::no_grad_guard();
    for k in p.done..=steps {
        if recorded(k, steps) {
            p.outputs.insert(k, net.forward(x_test));
        }
        if k == steps {
            let f = net.forward(x);
            p.losses
                .push((f - y).square().mean_dim(1, false, Kind::Float) * 0.5);
            break;
        }
        p.losses.push(net.gd_step(x, y));
        p.done = k + 1;
        each_step(k + 1, net);
        if k + 1 < steps && stop(k + 1) {
            return Err(p);
        }
    }
    Ok((Tensor::stack(&p.losses, 0), p.outputs))
}
