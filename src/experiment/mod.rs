//! Sweeps: a grid YAML (a base run config, named variants, dotted-key grids, seeds, scales)
//! expanded into named cells, one run directory per cell; [`run_sweep`] runs the missing cells,
//! resumes the interrupted ones, skips the finished ones and records the diverged ones.
pub mod grid;
pub mod marion;
pub mod sweep;

pub use grid::{Cell, Grid};
pub use sweep::{cell_status, run_sweep, status_table, CellStatus, SweepOptions, SweepReport};
