//! Initializations written explicitly (never tch's defaults), following the papers:
//! conv Kaiming normal fan-out N(0, 2/(k²·out_channels)); BN γ = 1, β = 0 (tch's default γ is
//! Uniform(0,1)); linear as PyTorch's default, uniform ±1/√fan_in for weight and bias;
//! Fixup (Zhang et al. 2019): the first conv of each branch scaled by L^(-1/2), the second
//! conv and the classifier zero, the stem conv left at PyTorch's default (its
//! fixup_resnet_cifar.py re-initializes only the blocks and the classifier).
use tch::nn::Init;

/// Kaiming normal, fan-out mode, ReLU gain: N(0, 2/(k²·out_channels)).
pub fn conv_kaiming_fan_out(kernel: i64, out_channels: i64) -> Init {
    Init::Randn {
        mean: 0.0,
        stdev: (2.0 / (kernel * kernel * out_channels) as f64).sqrt(),
    }
}

/// Fixup's first conv of a branch: Kaiming fan-out scaled by L^(-1/(2m-2)) with m = 2 layers
/// per branch, i.e. L^(-1/2).
pub fn conv_fixup_first(kernel: i64, out_channels: i64, blocks: i64) -> Init {
    let std = (2.0 / (kernel * kernel * out_channels) as f64).sqrt() * (blocks as f64).powf(-0.5);
    Init::Randn {
        mean: 0.0,
        stdev: std,
    }
}

/// PyTorch's default for nn.Linear and nn.Conv2d (kaiming_uniform with a = √5, and the
/// bias likewise): uniform in ±1/√fan_in, fan_in = in_features or in_channels·k².
pub fn pytorch_default(fan_in: i64) -> Init {
    let b = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform { lo: -b, up: b }
}

pub const ZERO: Init = Init::Const(0.0);
pub const ONE: Init = Init::Const(1.0);
