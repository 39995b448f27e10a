//! deepres: train and probe very deep residual networks (BN vs τ-scaled, unnormalized) with libtorch.
//!
//! Layout: [`config`] (YAML run configs), [`data`] (datasets and the on-device loader),
//! [`model`] (CIFAR ResNet-(6n+2), τ rules, inits), [`train`] (SGD with savable state,
//! schedules, checkpoints, CSV metrics), [`probe`] (stability at initialization),
//! [`experiment`] (sweeps over grids of configs), [`report`] (tables, plots, comparisons),
//! [`device`] (device selection, `deepres info`), [`torch_ext`] (libtorch functions tch lacks).
pub mod bench;
pub mod config;
pub mod data;
pub mod device;
pub mod experiment;
pub mod model;
pub mod probe;
pub mod report;
pub mod torch_ext;
pub mod train;
