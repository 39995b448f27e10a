//! Sweeps: a grid YAML (a base run config, named variants, dotted-key grids, seeds, scales)
//! expanded into named cells, one run directory per cell; [`run_sweep`] runs the missing cells,
//! resumes the interrupted ones, skips the finished ones and records the diverged ones.
pub mod chizat;
pub mod figure;
pub mod grid;
pub mod local;
pub mod lock;
pub mod marion;
pub mod slurm;
pub mod sweep;

pub use grid::{Cell, Grid};
pub use sweep::{
    cell_status, check_configs, run_sweep, status_table, with_new_dir, CellStatus, SweepOptions,
    SweepReport,
};
