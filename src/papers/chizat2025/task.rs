//! The synthetic regression task shared by every figure and the limit (our reconstruction of
//! the paper's setup, docs/chizat2025.md "Where the paper was not at hand"): n inputs
//! x ~ N(0, I_D), targets y = tanh(2⟨w, x⟩) with w uniform on the first min(D, 3) coordinates
//! (‖w‖ = 1), or w = e₁ (`task.target: one-direction`).
use tch::{Device, Kind, Tensor};

use super::spec::{Target, TaskSpec};

/// The task's (x `[n, D]`, y `[n]`) for `split` 0 (train) or 1 (test); deterministic in
/// (seed, D, split).
pub fn task(spec: &TaskSpec, dim: i64, split: u64, device: Device) -> (Tensor, Tensor) {
    let n = if split == 0 { spec.train } else { spec.test };
    tch::manual_seed((spec.seed * 1_000_003 + dim as u64 * 1009 + split) as i64);
    let x = Tensor::randn([n, dim], (Kind::Float, Device::Cpu));
    let k = match spec.target {
        Target::ThreeCoords => dim.min(3),
        Target::OneDirection => 1,
    };
    let w = Tensor::cat(
        &[
            Tensor::full([k], 1.0 / (k as f64).sqrt(), (Kind::Float, Device::Cpu)),
            Tensor::zeros([dim - k], (Kind::Float, Device::Cpu)),
        ],
        0,
    );
    // y = tanh(2⟨w, x⟩)
    let y = (x.matmul(&w) * 2.0).tanh();
    (x.to_device(device), y.to_device(device))
}

/// The training and held-out inputs of dimension `dim`: (x, y, x_test).
pub(super) fn train_and_test(
    spec: &TaskSpec,
    dim: i64,
    device: Device,
) -> (Tensor, Tensor, Tensor) {
    let (x, y) = task(spec, dim, 0, device);
    let (xt, _) = task(spec, dim, 1, device);
    (x, y, xt)
}
