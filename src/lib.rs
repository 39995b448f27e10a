//! deepres: train and probe very deep residual networks (BN vs τ-scaled, unnormalized) with libtorch.
//!
//! Layout: [`config`] (YAML run configs), [`data`] (datasets and the on-device loader),
//! [`model`] (CIFAR ResNet-(6n+2), τ rules, inits), [`train`] (SGD with savable state,
//! schedules, checkpoints, CSV metrics), [`device`] (device selection, `deepres info`), [`report`] (comparisons, tables).
pub mod config;
pub mod data;
pub mod device;
pub mod model;
pub mod report;
pub mod train;
