//! Full-batch gradient descent of a batch of models for K steps (the step itself, with the
//! mean-field step size λ = η/(s²·L·M), is [`TwoLayerResNet::gd_step`]), and the steps at which
//! the held-out outputs are recorded.
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

use crate::model::two_layer_resnet::TwoLayerResNet;

/// The steps at which test outputs are recorded: multiples of 5 and K.
pub fn recorded(k: usize, steps: usize) -> bool {
    k <= steps && (k.is_multiple_of(5) || k == steps)
}

pub(super) fn recorded_steps(steps: usize) -> Vec<usize> {
    (0..=steps).filter(|&k| recorded(k, steps)).collect()
}

/// Trains `net` for K steps on (x, y); returns the training loss per step `[K + 1, models]`
/// (the last row after the last step) and the test outputs at the recorded steps
/// (step → `[models, n_test]`). `each_step(k, net)` runs after every step.
pub fn train(
    net: &mut TwoLayerResNet,
    x: &Tensor,
    y: &Tensor,
    x_test: &Tensor,
    steps: usize,
    mut each_step: impl FnMut(usize, &TwoLayerResNet),
) -> (Tensor, BTreeMap<usize, Tensor>) {
    let _guard = tch::no_grad_guard();
    let mut losses = Vec::with_capacity(steps + 1);
    let mut outputs = BTreeMap::new();
    for k in 0..=steps {
        if recorded(k, steps) {
            outputs.insert(k, net.forward(x_test));
        }
        if k == steps {
            let f = net.forward(x);
            losses.push((f - y).square().mean_dim(1, false, Kind::Float) * 0.5);
            break;
        }
        losses.push(net.gd_step(x, y));
        each_step(k + 1, net);
    }
    (Tensor::stack(&losses, 0), outputs)
}
