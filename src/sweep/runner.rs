//! Running a sweep and reporting its state.
use anyhow::{bail, Result};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use super::grid::{Cell, Grid};
use super::lock::{self, Acquired};
use super::pack::{PackSize, Target};
use crate::train::run_dir::{CONFIG_FILE, METRICS_FILE, SUMMARY_FILE};
use crate::train::{self, checkpoint, read_summary, RunOptions, RunStatus, Summary};
use crate::util::{one_line, panic_message};

#[derive(Debug, Clone, Default)]
pub struct SweepOptions {
    pub quiet: bool,
    /// Run only these cells (`--cell i` or `--cell i,j,k`, as `--status` numbers them; a
    /// Slurm array task, a child of `--jobs` or `--gpus`).
    pub cell: Option<Vec<usize>>,
    /// Train cells that share architecture, data and progress N at a time as one pack
    /// (`--pack N` or `--pack auto`, [`super::pack`]); None or 1: one cell at a time.
    pub pack: Option<PackSize>,
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
    /// (cell name, lock owner) of cells another live process is running (left to it).
    pub busy: Vec<(String, String)>,
    /// Cells a preemption signal stopped, each with its resumable checkpoint.
    pub interrupted: usize,
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
        )?;
        if !self.busy.is_empty() {
            write!(f, ", {} running elsewhere", self.busy.len())?;
        }
        if self.interrupted > 0 {
            write!(f, ", {} interrupted (resumable)", self.interrupted)?;
        }
        Ok(())
    }
}

/// The status of a run directory and what its summary says, if it has a readable one.
fn inspect(cell: &Cell) -> (RunStatus, Option<Summary>) {
    let dir = cell.dir();
    let started = [CONFIG_FILE, METRICS_FILE, SUMMARY_FILE]
        .iter()
        .any(|f| dir.join(f).exists())
        || checkpoint::path(&dir).exists();
    if !started {
        return (RunStatus::Missing, None);
    }
    match read_summary(&dir).ok() {
        Some(summary) => {
            let status = match summary.status {
                RunStatus::Missing => RunStatus::Running,
                s => s,
            };
            (status, Some(summary))
        }
        // No summary yet (killed during the first epoch) or a damaged one: resumable.
        None => (RunStatus::Running, None),
    }
}

/// Best test error (1 − best test accuracy) of a run that has a completed (healthy) epoch.
fn best_error(status: RunStatus, s: &Summary) -> Option<f64> {
    if s.epochs_done < 1
        || (status == RunStatus::Diverged && s.best_epoch < 1)
        || !s.best_test_acc.is_finite()
    {
        return None;
    }
    Some(1.0 - s.best_test_acc)
}

/// Status of a cell and its best test error (1 − best test accuracy) when it has one.
pub fn cell_status(cell: &Cell) -> (RunStatus, Option<f64>) {
    let (status, summary) = inspect(cell);
    (status, summary.and_then(|s| best_error(status, &s)))
}

/// Refuses, in one line, a sweep whose directory holds a cell's results under another config
/// (the grid file or an override changed since): nothing runs, nothing is touched.
pub fn check_configs(grid: &Grid) -> Result<()> {
    refuse_conflicts(
        grid,
        "pass --force-new to run it into a new sweep directory, --set out_dir=DIR, or move that directory away",
    )
}

/// Refuses, in one line ending with `fix`, a grid one of whose cells' directories holds
/// results under another config ([`train::config_conflict`]).
pub fn refuse_conflicts(grid: &Grid, fix: &str) -> Result<()> {
    let conflicts: Vec<String> = grid
        .cells()?
        .iter()
        .filter_map(|c| train::config_conflict(&c.config))
        .collect();
    if let Some(first) = conflicts.first() {
        let more = match conflicts.len() {
            1 => String::new(),
            n => format!(" (and {} more cells)", n - 1),
        };
        bail!(
            "{first}{more}; this grid's cells differ from the runs in {}: {fix}",
            grid.dir.display()
        );
    }
    Ok(())
}

/// `grid` itself if its directory takes its cells ([`check_configs`]), else the grid moved to
/// the first of `<dir>-2`, `<dir>-3`, ... that does (`--force-new`; a rerun with the same
/// flag finds the same directory again and resumes there).
pub fn with_new_dir(grid: &Grid) -> Result<Grid> {
    let mut n = 2;
    let mut g = grid.clone();
    while check_configs(&g).is_err() {
        let mut name = grid.dir.as_os_str().to_owned();
        name.push(format!("-{n}"));
        g = grid.relocated(&std::path::PathBuf::from(name))?;
        n += 1;
    }
    Ok(g)
}

/// Creates the sweep directory `dir` and checks that files can be created in it.
pub(super) fn ensure_writable(dir: &Path) -> Result<()> {
    crate::util::atomic::ensure_writable_dir(dir, "sweep directory")
}

/// The pack size `cells` train with, None for one cell at a time: no `--pack`, `--pack 1`, and
/// `--pack auto` where the cells train on the CPU (a pack is slower than one model there), so
/// that each cell is locked only while it runs, as without `--pack` (two sweeps of one grid
/// share its cells).
fn packing(pack: Option<PackSize>, cells: &[Cell]) -> Option<PackSize> {
    match (pack, cells.first()) {
        (Some(PackSize::Auto), Some(c)) if matches!(Target::here(&c.config), Ok(Target::Cpu)) => {
            crate::util::eprintln_whole!("--pack auto on the CPU: one cell at a time");
            None
        }
        (p, _) => p.filter(|&s| s != PackSize::N(1)),
    }
}

/// Runs the grid's cells one after the other (missing → run, running → resume, done and
/// diverged → skip); a cell that fails with an error is reported and the sweep goes on.
///
/// First checks the scale's `requires_data` ([`Grid::check_data`]), that no cell's directory
/// holds another config's results ([`check_configs`]) and that the sweep directory is
/// writable: each is an error before any cell runs. Each cell runs under its lock
/// ([`super::lock`]): a cell another live process holds is left to it
/// ([`SweepReport::busy`]). One progress line per cell goes to stderr; a cell's error (or
/// panic) lands in [`SweepReport::failed`]. The caller decides the exit status.
pub fn run_sweep(grid: &Grid, opts: &SweepOptions) -> Result<SweepReport> {
    let cells = match &opts.cell {
        Some(list) => {
            let mut seen = std::collections::BTreeSet::new();
            if let Some(i) = list.iter().find(|&&i| !seen.insert(i)) {
                bail!("--cell: cell {i} is listed twice; list each cell once");
            }
            list.iter().map(|&i| grid.cell(i)).collect::<Result<_>>()?
        }
        None => grid.cells()?,
    };
    if let Some(size) = packing(opts.pack, &cells) {
        return super::pack::run_packed(grid, cells, size, opts);
    }
    train::interrupt::install();
    grid.check_data()?;
    check_configs(grid)?;
    ensure_writable(&grid.dir)?;
    let n = grid.cells()?.len();
    let mut report = SweepReport::default();
    for cell in &cells {
        let stop = match train::interrupt::signal() {
            // A signal between cells (or before the first): no other cell starts.
            Some(sig) => Some(train::interrupt::Interrupted(format!(
                "{}: stopped by {} before cell {}",
                grid.dir.display(),
                train::interrupt::name(sig),
                cell.name
            ))),
            None => run_cell(cell, n, opts, &mut report),
        };
        if let Some(stop) = stop {
            // A preemption signal: the cell wrote its resumable checkpoint; no other starts.
            return Err(stopped(grid, &stop, &report));
        }
    }
    Ok(report)
}

/// The error that ends a sweep a signal stopped (exit 75): where, what each cell did, and how
/// to go on. `stop` (the cell's own message, already printed) is logged only when no cell
/// printed it (a signal between cells).
pub(super) fn stopped(
    grid: &Grid,
    stop: &train::interrupt::Interrupted,
    report: &SweepReport,
) -> anyhow::Error {
    if report.interrupted == 0 {
        crate::util::eprintln_whole!("{stop}");
    }
    train::interrupt::Interrupted(format!(
        "{}: sweep stopped by a signal: {report}; rerun the same command to continue",
        grid.dir.display()
    ))
    .into()
}

/// `Some(finished)` or `Some(diverged)` when the cell needs no run.
pub(super) fn finished(cell: &Cell) -> Option<RunStatus> {
    Some(inspect(cell).0).filter(|s| s.is_final())
}

/// Removes the lock of a finished cell whose owner is gone (killed after the cell finished,
/// before it removed its lock): taking it over and dropping it. A live owner's lock stays.
pub(super) fn clear_stale_lock(cell: &Cell) {
    let path = lock::lock_path(&cell.dir());
    if path.exists() {
        if let Ok(Acquired::Got { lock, .. }) = lock::try_lock(&path) {
            drop(lock);
        }
    }
}

/// Runs one cell; `Some` when a signal stopped it ([`train::interrupt`]), which ends the sweep.
pub(super) fn run_cell(
    cell: &Cell,
    n: usize,
    opts: &SweepOptions,
    report: &mut SweepReport,
) -> Option<train::interrupt::Interrupted> {
    let tag = format!("[{}/{n}] {}", cell.index + 1, cell.name);
    if let Some(word) = finished(cell) {
        report.skipped += 1;
        crate::util::eprintln_whole!("{tag}: skipped ({word})");
        clear_stale_lock(cell);
        return None;
    }
    let _lock = match lock::try_lock(&lock::lock_path(&cell.dir())) {
        Ok(Acquired::Got { lock, took_over }) => {
            if let Some(gone) = took_over {
                crate::util::eprintln_whole!("{tag}: took over the lock of {gone} (gone)");
            }
            lock
        }
        Ok(Acquired::Held(owner)) => {
            crate::util::eprintln_whole!("{tag}: skipped (running in {owner})");
            report.busy.push((cell.name.clone(), owner));
            return None;
        }
        Err(e) => {
            let error = one_line(&format!("{e:#}"));
            crate::util::eprintln_whole!("{tag}: failed: {error}");
            report.failed.push((cell.name.clone(), error));
            return None;
        }
    };
    // Under the lock: another process may have finished the cell since the first look.
    match inspect(cell) {
        (status, _) if status.is_final() => {
            report.skipped += 1;
            crate::util::eprintln_whole!("{tag}: skipped ({status})");
            return None;
        }
        (RunStatus::Running, s) => {
            let done = s.map(|s| s.epochs_done).unwrap_or(0);
            crate::util::eprintln_whole!("{tag}: running (resuming after epoch {done})");
        }
        _ => crate::util::eprintln_whole!("{tag}: running"),
    }
    let run_opts = RunOptions {
        resume: true,
        quiet: opts.quiet,
        stop_after: None,
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| train::run(&cell.config, &run_opts)));
    match outcome {
        Ok(Ok(s)) => {
            record(&tag, &s, report);
            None
        }
        Ok(Err(e)) => failed(&[(tag, cell.name.clone())], e, report),
        Err(p) => failed(&[(tag, cell.name.clone())], panicked(p), report),
    }
}

/// A panic as an error: its message on one line.
pub(super) fn panicked(p: Box<dyn std::any::Any + Send>) -> anyhow::Error {
    anyhow::anyhow!("panicked: {}", one_line(&panic_message(p.as_ref())))
}

/// A cell that trained (to the end, or until it diverged), in the report and on stderr.
pub(super) fn record(tag: &str, s: &Summary, report: &mut SweepReport) {
    report.ran += 1;
    if s.status == RunStatus::Diverged {
        report.diverged += 1;
        crate::util::eprintln_whole!(
            "{tag}: diverged at epoch {}",
            s.diverged_at_epoch.unwrap_or(s.epochs_done)
        );
    } else {
        let err = best_error(RunStatus::Finished, s)
            .map(|e| format!("{:.2}%", 100.0 * e))
            .unwrap_or("-".into());
        crate::util::eprintln_whole!(
            "{tag}: {} after {} epochs, best test error {err}",
            s.status,
            s.epochs_done
        );
    }
}

/// Cells (tag, name) that one error stopped: a preemption signal (`Some`: the sweep stops;
/// each cell wrote its resumable checkpoint) or a failure, in the report and on stderr.
pub(super) fn failed(
    cells: &[(String, String)],
    e: anyhow::Error,
    report: &mut SweepReport,
) -> Option<train::interrupt::Interrupted> {
    let error = match e.downcast::<train::interrupt::Interrupted>() {
        Ok(stop) => {
            report.interrupted += cells.len();
            for (tag, _) in cells {
                crate::util::eprintln_whole!("{tag}: {stop}");
            }
            return Some(stop);
        }
        Err(e) => one_line(&format!("{e:#}")),
    };
    for (tag, name) in cells {
        crate::util::eprintln_whole!("{tag}: failed: {error}");
        report.failed.push((name.clone(), error.clone()));
    }
    None
}

/// The `--status` listing: one line per cell (index, name, status, best test error, epochs,
/// and `locked by host:pid` while a live process runs it), then the counts.
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
    let mut other = 0;
    for c in &cells {
        if train::config_conflict(&c.config).is_some() {
            // Not this grid's run: its status and error would be another config's.
            other += 1;
            out += &format!(
                "{:>5}  {:<w$}  {:<8}  {:>9}  {:>10}\n",
                c.index, c.name, "other", "-", "-"
            );
            continue;
        }
        let (status, summary) = inspect(c);
        counts[match status {
            RunStatus::Finished => 0,
            RunStatus::Running => 1,
            RunStatus::Diverged => 2,
            RunStatus::Missing => 3,
        }] += 1;
        let done = summary.as_ref().map(|s| s.epochs_done).unwrap_or(0);
        let err = summary
            .as_ref()
            .and_then(|s| best_error(status, s))
            .map(|e| format!("{:.2}", 100.0 * e))
            .unwrap_or_else(|| "-".into());
        out += &format!(
            "{:>5}  {:<w$}  {:<8}  {:>9}  {:>10}",
            c.index,
            c.name,
            status.as_str(),
            format!("{done}/{}", c.config.train.epochs),
            err
        );
        if let Some(owner) = lock::live_owner(&lock::lock_path(&c.dir())) {
            out += &format!("  locked by {owner}");
        }
        out += "\n";
    }
    let [finished, running, diverged, missing] = counts;
    out += &format!(
        "{finished} finished, {running} running, {diverged} diverged, {missing} missing\n"
    );
    if other > 0 {
        out += &format!(
            "{other} cell(s) `other`: their directories hold runs of another config (the grid file or --set changed since); `sweep` refuses them: --force-new runs this grid into a new directory\n"
        );
    }
    Ok(out)
}
