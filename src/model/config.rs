//! The CIFAR ResNet's configuration (`model:` in a run config): depth 6n+2, width, norm,
//! shortcut, init and τ. Where τ enters: `model.tau` ([`TauConfig`]) →
//! [`crate::model::tau::initial_tau`] → [`crate::model::resnet::ResNet`] (one line in each
//! block's forward pass).
use serde::{Deserialize, Serialize};

/// Normalization inside the residual blocks.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    /// Batch norm after each conv (post-activation block of He et al.).
    Bn,
    /// No normalization: scalar biases around each conv (the τ paper's / Fixup's block).
    None,
}

/// Shortcut of the downsampling blocks (first block of stages 2 and 3).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
pub enum Shortcut {
    /// Option A: stride-2 subsampling and zero channel padding, no parameters.
    #[serde(rename = "a")]
    A,
    /// The τ paper's code: 1×1 average pool with stride 2, batch norm, zero padding.
    #[serde(rename = "a-bn")]
    ABn,
    /// Option B: 1×1 convolution with stride 2 and batch norm.
    #[serde(rename = "b")]
    B,
}

/// Initialization scheme of the convolutions.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InitScheme {
    /// Kaiming normal, fan-out: N(0, 2/(k²·out_channels)); BN γ = 1, β = 0.
    Kaiming,
    /// Fixup (Zhang et al. 2019): conv1 Kaiming scaled by L^(-1/2), conv2 and classifier zero,
    /// a learnable scalar multiplier per block (initialized to τ₀, 1 with `rule: one`).
    Fixup,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Network depth 6n+2 (ResNet-20, 32, 44, 56, 110, 1202): L = 3n residual blocks.
    pub depth: i64,
    /// Width multiplier k: stages have 16k, 32k, 64k channels.
    pub width: i64,
    pub norm: Norm,
    pub shortcut: Shortcut,
    pub init: InitScheme,
    pub tau: TauConfig,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            depth: 20,
            width: 1,
            norm: Norm::Bn,
            shortcut: Shortcut::A,
            init: InitScheme::Kaiming,
            tau: TauConfig::default(),
        }
    }
}

/// How τ, the scale of every residual branch, depends on the number of blocks L.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TauRule {
    /// τ = 1 (the plain ResNet).
    One,
    /// τ = c/√L (the τ paper's choice, c = 1; 0.5 is reported slightly better).
    InvSqrt,
    /// τ = c/L.
    Inv,
    /// τ = L^(-β).
    Power,
    /// τ = value.
    Fixed,
}

/// Whether τ is trained.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TauLearnable {
    /// τ is a constant.
    None,
    /// One scalar shared by all blocks (the τ paper's code), initialized from the rule;
    /// its gradient is divided by L and it trains at lr/10.
    Shared,
    /// One scalar per block initialized to 0 (SkipInit / ReZero), trained at lr with the weights
    /// (ReZero, arXiv 2003.04887); the rule is ignored.
    Rezero,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TauConfig {
    pub rule: TauRule,
    /// Constant c of `inv_sqrt` and `inv`.
    pub c: f64,
    /// Exponent β of `power`.
    pub beta: f64,
    /// Value of `fixed`.
    pub value: f64,
    pub learnable: TauLearnable,
}

impl Default for TauConfig {
    fn default() -> Self {
        TauConfig {
            rule: TauRule::One,
            c: 1.0,
            beta: 0.5,
            value: 1.0,
            learnable: TauLearnable::None,
        }
    }
}
