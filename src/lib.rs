//! deepres: train and probe very deep residual networks (BN vs τ-scaled, unnormalized) with
//! libtorch, and reproduce three papers' tables and figures.
//!
//! Layers, each importing only the ones before it: [`util`] (atomic writer, keys, overrides,
//! fits, device, libtorch extensions) → [`data`] (datasets, the on-device loader) → [`model`]
//! (one model per file) → [`train`] (run config, run directory, loop, optimizers, checkpoints)
//! → [`report`] (tables, plots, heatmaps) → [`sweep`] (grids, runner, locks, Slurm, the sweep
//! report) → [`papers`] (each paper's own experiments) → [`cli`] (the command line).
//! `tests/layers.rs` checks the order.
// These docs are for the tool's developers (`cargo doc --document-private-items` renders
// them whole): a module's overview may link to its private items.
#![allow(rustdoc::private_intra_doc_links)]
pub mod cli;
pub mod data;
pub mod model;
pub mod papers;
pub mod report;
pub mod sweep;
pub mod train;
pub mod util;
