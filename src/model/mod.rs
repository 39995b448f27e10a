//! Models. [`resnet`]: the CIFAR ResNet-(6n+2) of He et al. with batch norm or without
//! (scalar biases), a residual scale τ ([`tau`]), shortcut options A / A-BN / B and the
//! Kaiming or Fixup initializations ([`init`]).
pub mod init;
pub mod resnet;
pub mod tau;

pub use resnet::{blocks_per_stage, ResNet};
pub use tau::{initial_tau, Tau};
