//! Models. [`resnet`]: the CIFAR ResNet-(6n+2) of He et al. with batch norm or without
//! (scalar biases), a residual scale τ ([`tau`]), shortcut options A / A-BN / B and the
//! Kaiming or Fixup initializations ([`init`]).
//!
//! Marion et al. (2022): the fully connected [`full_resnet::FullResNet`] and
//! [`simple_resnet::SimpleResNet`] (many models batched, depth weights `[L, d, d]`), behind
//! [`marion_net::MarionNet`], with the layer-correlated inits of [`weight_init`]
//! (i.i.d., smooth Gaussian process, fractional Brownian motion; [`davies_harte`]: the authors'
//! fBm sampler).
//!
//! Many CIFAR ResNets of one architecture (seeds, τ) as one network: [`packed::PackedResNet`].
//!
//! Chizat (2025): [`two_layer_resnet::TwoLayerResNet`], ResNets with two-layer-perceptron
//! blocks (depth L, hidden width M, embedding D, residual scale α·D^γ/(L·M)), many models
//! batched, trained by full-batch gradient descent.
pub mod config;
pub mod davies_harte;
pub mod full_resnet;
pub mod init;
pub mod interop;
pub mod marion_net;
pub mod packed;
pub mod resnet;
pub mod scale;
pub mod simple_resnet;
pub mod tau;
pub mod two_layer_resnet;
pub mod weight_init;

pub use resnet::{blocks_per_stage, ResNet};
pub use tau::{initial_tau, Tau};
