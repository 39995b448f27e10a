//! `deepres sweep GRID.yaml --pack N`: cells that can train as one pack train N at a time
//! ([`crate::train::pack`]), each keeping everything a cell alone has.
//!
//! Design:
//! - Grouping: cells pack together when their configs agree on everything but what a member
//!   may set alone ([`shared_part`]: seeds, τ's rule, optimizer, schedule, recipe,
//!   augmentation, checkpoints and logs) and they are at the same point (epochs done and step
//!   inside the next, read from each checkpoint); in grid order, N at a time. A group of one
//!   runs alone, exactly as without `--pack`.
//! - Every cell keeps its own run directory, config.yaml + config.sha256, metrics.csv,
//!   blocks.csv, checkpoint (in the single model's names), best weights, summary and lock
//!   ([`crate::train::pack_run`]): the sweep takes every member's lock before the pack starts
//!   and holds it to the end, so a second sweep, `--jobs` or a Slurm task skip those cells, and
//!   `--status` sees them running. A cell another process holds is left to it.
//! - Failure and signals: an error fails the pack's cells (each resumable from its last
//!   checkpoint); a preemption signal writes every member's checkpoint at the step where it
//!   stopped and ends the sweep with exit 75; the same command resumes the pack, and any of
//!   its cells also resumes alone (`deepres sweep --cell i` or `deepres train --resume`).
//! - Not yet: `--pack` with `--jobs`, `--gpus` or `--slurm`; an automatic N on CUDA (it needs
//!   the GPU measurements of issue 17: scripts/gpu_tables.sh).
use anyhow::Result;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::grid::{Cell, Grid};
use super::lock::{self, Acquired, CellLock};
use super::runner::{self, SweepOptions, SweepReport};
use crate::train::pack::shared_part;
use crate::train::{self, checkpoint, pack_run, RunOptions};
use crate::util::one_line;

/// Locked cells by what they share (the shared part of their config, their progress).
type Groups = BTreeMap<(String, (i64, i64)), Vec<(Cell, CellLock)>>;

/// Where a cell would resume: (epochs done, step inside the next), (0, 0) without a
/// checkpoint; None when its checkpoint cannot be read (it then runs alone, which says why).
fn progress(cell: &Cell) -> Option<(i64, i64)> {
    let dir = cell.dir();
    if !checkpoint::path(&dir).exists() {
        return Some((0, 0));
    }
    let map = checkpoint::read(&dir).ok()?;
    let int = |k: &str| map.get(k).map(|t| t.int64_value(&[0]));
    Some((int("meta.epoch")?, int("position.step").unwrap_or(0)))
}

/// The cells to run, each under its lock; skipped and busy ones go into the report.
fn lock_cells(grid: &Grid, report: &mut SweepReport) -> Result<Vec<(Cell, CellLock)>> {
    let cells = grid.cells()?;
    let n = cells.len();
    let mut locked = Vec::new();
    for cell in cells {
        let tag = format!("[{}/{n}] {}", cell.index + 1, cell.name);
        if let Some(word) = runner::finished(&cell) {
            report.skipped += 1;
            crate::util::eprintln_whole!("{tag}: skipped ({word})");
            runner::clear_stale_lock(&cell);
            continue;
        }
        match lock::try_lock(&lock::lock_path(&cell.dir())) {
            Ok(Acquired::Got { lock, .. }) => match runner::finished(&cell) {
                // Under the lock: another process may have finished the cell since.
                Some(word) => {
                    report.skipped += 1;
                    crate::util::eprintln_whole!("{tag}: skipped ({word})");
                }
                None => locked.push((cell, lock)),
            },
            Ok(Acquired::Held(owner)) => {
                crate::util::eprintln_whole!("{tag}: skipped (running in {owner})");
                report.busy.push((cell.name.clone(), owner));
            }
            Err(e) => {
                let error = one_line(&format!("{e:#}"));
                crate::util::eprintln_whole!("{tag}: failed: {error}");
                report.failed.push((cell.name.clone(), error));
            }
        }
    }
    Ok(locked)
}

/// Runs the grid's unfinished cells, packing N at a time (see the module doc).
pub fn run_packed(grid: &Grid, n: usize, opts: &SweepOptions) -> Result<SweepReport> {
    train::interrupt::install();
    grid.check_data()?;
    runner::check_configs(grid)?;
    runner::ensure_writable(&grid.dir)?;
    let total = grid.cells()?.len();
    let mut report = SweepReport::default();
    let mut groups = Groups::new();
    for (i, (cell, lock)) in lock_cells(grid, &mut report)?.into_iter().enumerate() {
        let key = match progress(&cell) {
            Some(at) => (serde_yaml::to_string(&shared_part(&cell.config))?, at),
            None => (format!("alone {i}"), (0, 0)),
        };
        groups.entry(key).or_default().push((cell, lock));
    }
    let mut groups: Vec<Vec<(Cell, CellLock)>> = groups.into_values().collect();
    groups.sort_by_key(|g| g[0].0.index);
    for group in groups {
        let mut rest = group;
        while !rest.is_empty() {
            let chunk: Vec<(Cell, CellLock)> = rest.drain(..n.min(rest.len())).collect();
            if let Some(stop) = run_chunk(chunk, total, opts, &mut report) {
                crate::util::eprintln_whole!(
                    "sweep stopped by a signal: {report}; rerun the same command to continue"
                );
                return Err(stop.into());
            }
        }
    }
    Ok(report)
}

/// Runs one pack (or one cell alone) under the locks it holds; `Some` when a signal stopped it.
fn run_chunk(
    chunk: Vec<(Cell, CellLock)>,
    total: usize,
    opts: &SweepOptions,
    report: &mut SweepReport,
) -> Option<train::interrupt::Interrupted> {
    let tags: Vec<(String, String)> = chunk
        .iter()
        .map(|(c, _)| {
            (
                format!("[{}/{total}] {}", c.index + 1, c.name),
                c.name.clone(),
            )
        })
        .collect();
    if chunk.len() == 1 {
        let (cell, lock) = chunk.into_iter().next().expect("one cell");
        drop(lock); // run_cell takes it again
        return runner::run_cell(&cell, total, opts, report);
    }
    let names: Vec<&str> = tags.iter().map(|(_, n)| n.as_str()).collect();
    crate::util::eprintln_whole!("pack of {}: {}", chunk.len(), names.join(", "));
    let cfgs: Vec<_> = chunk.iter().map(|(c, _)| c.config.clone()).collect();
    let run_opts = RunOptions {
        resume: true,
        quiet: opts.quiet,
        stop_after: None,
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| pack_run::run_pack(&cfgs, &run_opts)));
    let stop = match outcome {
        Ok(Ok(summaries)) => {
            for ((tag, _), s) in tags.iter().zip(&summaries) {
                runner::record(tag, s, report);
            }
            None
        }
        Ok(Err(e)) => runner::failed(&tags, e, report),
        Err(p) => runner::failed(&tags, runner::panicked(p), report),
    };
    drop(chunk); // the locks, after every member's files are written
    stop
}
