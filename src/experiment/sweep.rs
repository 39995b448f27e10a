//! Running a sweep and reporting its state.
use anyhow::Result;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::grid::{Cell, Grid};
use crate::train::{self, checkpoint, metrics, read_summary, RunOptions, Summary};

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

impl CellStatus {
    /// `done`, `running`, `diverged` or `missing`.
    pub fn as_str(self) -> &'static str {
        match self {
            CellStatus::Done => "done",
            CellStatus::Running => "running",
            CellStatus::Diverged => "diverged",
            CellStatus::Missing => "missing",
        }
    }
}

impl fmt::Display for CellStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Default)]
pub struct SweepOptions {
    pub quiet: bool,
}

/// What [`run_sweep`] did: `ran + skipped + failed.len()` is the number of cells.
#[derive(Debug, Clone, Default)]
pub struct SweepReport {
    /// Cells trained by this call (to the end, or until they diverged).
    pub ran: usize,
    /// Cells already done or diverged before this call.
    pub skipped: usize,
    /// Cells that diverged during this call (also counted in `ran`).
    pub diverged: usize,
    /// (cell name, one-line error) of cells that failed with an error.
    pub failed: Vec<(String, String)>,
}

impl fmt::Display for SweepReport {
    /// `3 ran (1 diverged), 9 skipped (done or diverged before), 0 failed`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ran ({} diverged), {} skipped (done or diverged before), {} failed",
            self.ran,
            self.diverged,
            self.skipped,
            self.failed.len()
        )
    }
}

/// The status of a run directory and what its summary says, if it has a readable one.
fn inspect(cell: &Cell) -> (CellStatus, Option<Summary>) {
    let dir = cell.dir();
    let started = ["config.yaml", metrics::FILE_NAME, "summary.json"]
        .iter()
        .any(|f| dir.join(f).exists())
        || checkpoint::path(&dir).exists();
    if !started {
        return (CellStatus::Missing, None);
    }
    match read_summary(&dir).ok() {
        Some(summary) => {
            let status = match summary.status.as_str() {
                "finished" => CellStatus::Done,
                "diverged" => CellStatus::Diverged,
                _ => CellStatus::Running,
            };
            (status, Some(summary))
        }
        // No summary yet (killed during the first epoch) or a damaged one: resumable.
        None => (CellStatus::Running, None),
    }
}

/// Best test error (1 − best test accuracy) of a run that has a completed (healthy) epoch.
fn best_error(status: CellStatus, s: &Summary) -> Option<f64> {
    if s.epochs_done < 1
        || (status == CellStatus::Diverged && s.best_epoch < 1)
        || !s.best_test_acc.is_finite()
    {
        return None;
    }
    Some(1.0 - s.best_test_acc)
}

/// Status of a cell and its best test error (1 − best test accuracy) when it has one.
pub fn cell_status(cell: &Cell) -> (CellStatus, Option<f64>) {
    let (status, summary) = inspect(cell);
    (status, summary.and_then(|s| best_error(status, &s)))
}

fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Runs the grid's cells one after the other (missing → run, running → resume, done and
/// diverged → skip); a cell that fails with an error is reported and the sweep goes on.
///
/// First checks the scale's `requires_data` ([`Grid::check_data`]): missing data is an error
/// before any cell runs. One progress line per cell goes to stderr; a cell's error (or panic)
/// lands in [`SweepReport::failed`]. The caller decides the exit status.
pub fn run_sweep(grid: &Grid, opts: &SweepOptions) -> Result<SweepReport> {
    grid.check_data()?;
    let cells = grid.cells()?;
    let n = cells.len();
    let mut report = SweepReport::default();
    for cell in &cells {
        let tag = format!("[{}/{n}] {}", cell.index + 1, cell.name);
        match inspect(cell) {
            (CellStatus::Done, _) => {
                report.skipped += 1;
                eprintln!("{tag}: skipped (done)");
                continue;
            }
            (CellStatus::Diverged, _) => {
                report.skipped += 1;
                eprintln!("{tag}: skipped (diverged)");
                continue;
            }
            (CellStatus::Running, s) => {
                let done = s.map(|s| s.epochs_done).unwrap_or(0);
                eprintln!("{tag}: running (resuming after epoch {done})");
            }
            (CellStatus::Missing, _) => eprintln!("{tag}: running"),
        }
        let run_opts = RunOptions {
            resume: true,
            quiet: opts.quiet,
            stop_after: None,
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| train::run(&cell.config, &run_opts)));
        let error = match outcome {
            Ok(Ok(s)) => {
                report.ran += 1;
                if s.status == "diverged" {
                    report.diverged += 1;
                    eprintln!(
                        "{tag}: diverged at epoch {}",
                        s.diverged_at_epoch.unwrap_or(s.epochs_done)
                    );
                } else {
                    let err = best_error(CellStatus::Done, &s)
                        .map(|e| format!("{:.2}%", 100.0 * e))
                        .unwrap_or("-".into());
                    eprintln!(
                        "{tag}: {} after {} epochs, best test error {err}",
                        s.status, s.epochs_done
                    );
                }
                continue;
            }
            Ok(Err(e)) => one_line(&format!("{e:#}")),
            Err(p) => format!("panicked: {}", one_line(&panic_message(p.as_ref()))),
        };
        eprintln!("{tag}: failed: {error}");
        report.failed.push((cell.name.clone(), error));
    }
    Ok(report)
}

/// The `--status` listing: one line per cell (index, name, status, best test error, epochs),
/// then the counts.
pub fn status_table(grid: &Grid) -> Result<String> {
    let cells = grid.cells()?;
    let w = cells.iter().map(|c| c.name.len()).max().unwrap_or(0).max(4);
    let mut out = format!(
        "sweep {} ({} cells in {})\n",
        grid.name,
        cells.len(),
        grid.dir.display()
    );
    out += &format!(
        "{:>5}  {:<w$}  {:<8}  {:>9}  {:>10}\n",
        "cell", "name", "status", "epochs", "best err %"
    );
    let mut counts = [0usize; 4];
    for c in &cells {
        let (status, summary) = inspect(c);
        counts[match status {
            CellStatus::Done => 0,
            CellStatus::Running => 1,
            CellStatus::Diverged => 2,
            CellStatus::Missing => 3,
        }] += 1;
        let done = summary.as_ref().map(|s| s.epochs_done).unwrap_or(0);
        let err = summary
            .as_ref()
            .and_then(|s| best_error(status, s))
            .map(|e| format!("{:.2}", 100.0 * e))
            .unwrap_or_else(|| "-".into());
        out += &format!(
            "{:>5}  {:<w$}  {:<8}  {:>9}  {:>10}\n",
            c.index,
            c.name,
            status.as_str(),
            format!("{done}/{}", c.config.train.epochs),
            err
        );
    }
    let [done, running, diverged, missing] = counts;
    out += &format!("{done} done, {running} running, {diverged} diverged, {missing} missing\n");
    Ok(out)
}
