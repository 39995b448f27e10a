//! Running a sweep and reporting its state. (Interface fixed; bodies being written.)
use anyhow::Result;

use super::grid::{Cell, Grid};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellStatus {
    /// summary.json says finished.
    Done,
    /// Started (config/metrics/checkpoint there) but not finished: resumable.
    Running,
    /// The loss became NaN/inf; recorded, not retried.
    Diverged,
    /// No run directory yet.
    Missing,
}

#[derive(Debug, Clone, Default)]
pub struct SweepOptions {
    pub quiet: bool,
}

#[derive(Debug, Clone, Default)]
pub struct SweepReport {
    pub ran: usize,
    pub skipped: usize,
    pub diverged: usize,
    /// (cell name, one-line error) of cells that failed with an error.
    pub failed: Vec<(String, String)>,
}

/// Status of a cell and its best test error (1 − best test accuracy) when it has one.
pub fn cell_status(cell: &Cell) -> (CellStatus, Option<f64>) {
    let _ = cell;
    todo!()
}

/// Runs the grid's cells one after the other (missing → run, running → resume, done and
/// diverged → skip); a cell that fails with an error is reported and the sweep goes on.
pub fn run_sweep(grid: &Grid, opts: &SweepOptions) -> Result<SweepReport> {
    let _ = (grid, opts);
    todo!()
}

/// The `--status` listing: one line per cell (index, name, status, best test error, epochs),
/// then the counts.
pub fn status_table(grid: &Grid) -> Result<String> {
    let _ = grid;
    todo!()
}
