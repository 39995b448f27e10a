//! Sweeps: a grid YAML (a base run config, named variants, dotted-key grids, seeds, scales)
//! expanded into named cells ([`grid`]), one run directory per cell; [`runner::run_sweep`] runs
//! the missing cells, resumes the interrupted ones, skips the finished ones and records the
//! diverged ones. Cells run one after another, in local child processes ([`local`]) or as a
//! Slurm job array ([`slurm`]); a cell's lock ([`lock`]) keeps two runners off one cell.
//! `--pack N` trains cells that share architecture and data N at a time as one network
//! ([`pack`]), each keeping its own run directory and lock.
//! [`report`] renders the grid file's `report:` section from the finished cells.
pub mod grid;
pub mod local;
pub mod lock;
pub mod pack;
pub mod report;
pub mod runner;
pub mod slurm;

pub use grid::{Cell, Grid};
pub use runner::{
    cell_status, check_configs, refuse_conflicts, run_sweep, status_table, with_new_dir,
    SweepOptions, SweepReport,
};
