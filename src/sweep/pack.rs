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
//! - With `--jobs`, `--gpus` or `--slurm`, the scheduler plans the packs ([`plan`]) and each
//!   child process or array task runs one (`--cell i,j,k --pack N`), taking its locks there.
//! - `--pack auto` ([`PackSize`]): 1 on the CPU (a pack is slower there: 0.91–0.93× one model
//!   at ResNet-20 and 56 in `deepres bench --pack 4`, BENCHMARKS.md), on CUDA as many members as the memory estimate
//!   [`member_bytes`] lets fill half the GPU, at most [`AUTO_MAX`].
use anyhow::Result;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::str::FromStr;

use super::grid::{Cell, Grid};
use super::lock::{self, Acquired, CellLock};
use super::runner::{self, SweepOptions, SweepReport};
use crate::train::config::{CudaGraph, Precision, RunConfig};
use crate::train::pack::shared_part;
use crate::train::{self, pack_commit, pack_run, RunOptions};
use crate::util::one_line;

/// The most members `--pack auto` puts in one pack on CUDA: the pack of the throughput
/// targets in BENCHMARKS.md (10 ResNet-56 or ResNet-110 models), until scripts/gpu_tables.sh
/// has measured where the aggregate throughput stops growing.
pub const AUTO_MAX: usize = 10;

/// How many cells a pack holds: `--pack N` (N ≥ 1; 1 is no packing) or `--pack auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackSize {
    Auto,
    N(usize),
}

impl FromStr for PackSize {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<PackSize, String> {
        match s.trim() {
            "auto" => Ok(PackSize::Auto),
            v => match v.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(PackSize::N(n)),
                _ => Err(format!("{v:?}: a number of cells per pack ≥ 1, or auto")),
            },
        }
    }
}

impl std::fmt::Display for PackSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PackSize::Auto => f.write_str("auto"),
            PackSize::N(n) => write!(f, "{n}"),
        }
    }
}

/// Where the packs will train, for `--pack auto`: the CPU, a GPU of known memory (bytes), or a
/// GPU not visible from here (a Slurm task's: only [`AUTO_MAX`] applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Cpu,
    Gpu(Option<u64>),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Cpu => f.write_str("the CPU"),
            Target::Gpu(Some(b)) => {
                write!(f, "a GPU of {:.1} GiB", *b as f64 / (1u64 << 30) as f64)
            }
            Target::Gpu(None) => f.write_str("a GPU"),
        }
    }
}

impl Target {
    /// Where `cfg` trains in this process (its `device`, CUDA's memory from the driver).
    pub fn here(cfg: &RunConfig) -> Result<Target> {
        Ok(match crate::util::device::select_device(&cfg.device)? {
            tch::Device::Cuda(i) => Target::Gpu(
                crate::util::device::gpu_properties()
                    .get(i)
                    .map(|(_, bytes)| *bytes),
            ),
            _ => Target::Cpu,
        })
    }
}

/// An upper estimate of the GPU memory one member of `cfg` needs to train (bytes), fit to the
/// CUDA allocator's peaks measured on an H200 (BENCHMARKS.md, 2026-11-26; fp32, batch 128):
/// 725, 1233 and 11,518 MiB for ResNet-56, 110 and 1202, which grow by 56.4 MiB per block of
/// each stage: two fp32 tensors of every convolution's output (2 convolutions per block) for
/// 32×32 images (the largest of the datasets), 56.0 MiB at batch 128. Plus [`FIXED_BYTES`]
/// (the measured intercept is 218 MiB), so that the estimate lies above every measured peak
/// (1016, 1520 and 11,712 MiB). bf16 and fp16 (autocast) keep the activations in 2 bytes: the
/// peaks were 396.6, 653.7 and 5,945.8 MiB in bf16 (the same run), under the estimate's 764,
/// 1016 and 6,112 MiB. With `train.cuda_graph` true or auto the activations count
/// twice: the captured step keeps its own in the graph's private pool, and the ordinary steps
/// (warm-up, an epoch's partial batch) cache theirs in the allocator's.
pub fn member_bytes(cfg: &RunConfig) -> u64 {
    let blocks_per_stage = ((cfg.model.depth - 2) / 6).max(1) as u64;
    let k = cfg.model.width.max(1) as u64;
    // Σ over the three stages of C·H·W: 16k·32², 32k·16², 64k·8².
    let per_conv = k * (16 * 1024 + 32 * 256 + 64 * 64);
    let floats_per_image = 2 * 2 * blocks_per_stage * per_conv;
    let pools = if cfg.train.cuda_graph == CudaGraph::Off {
        1
    } else {
        2
    };
    let bytes = match cfg.train.precision {
        Precision::Fp32 => 4,
        Precision::Bf16 | Precision::Fp16 => 2,
    };
    pools * bytes * floats_per_image * cfg.train.batch_size.max(1) as u64 + FIXED_BYTES
}

/// What a member needs besides its activations in [`member_bytes`] (weights, optimizer state,
/// the allocator's rounding): 512 MiB, above the 218 MiB the measured peaks imply.
pub const FIXED_BYTES: u64 = 512 << 20;

impl PackSize {
    /// The members per pack for cells like `cfg` trained on `target`: N as given; auto: 1 on the
    /// CPU, on a GPU as many as fill half its memory by [`member_bytes`], 1 to [`AUTO_MAX`].
    pub fn members(self, cfg: &RunConfig, target: Target) -> usize {
        match (self, target) {
            (PackSize::N(n), _) => n,
            (PackSize::Auto, Target::Cpu) => 1,
            (PackSize::Auto, Target::Gpu(None)) => AUTO_MAX,
            (PackSize::Auto, Target::Gpu(Some(bytes))) => {
                ((bytes / 2 / member_bytes(cfg)) as usize).clamp(1, AUTO_MAX)
            }
        }
    }
}

/// Locked cells by what they share (the shared part of their config, their progress).
type Groups<T> = BTreeMap<(String, (i64, i64)), Vec<T>>;

/// The packs of `items` (each holding the cell `cell_of` gives): items whose cells share
/// everything a pack shares and resume at the same point, in grid order, `size` at a time
/// (resolved per group for `target`). A cell whose checkpoint cannot be read is a pack of one
/// (it runs alone, which says why).
pub fn plan<T>(
    items: Vec<T>,
    cell_of: impl Fn(&T) -> &Cell,
    size: PackSize,
    target: Target,
) -> Result<Vec<Vec<T>>> {
    let mut groups = Groups::new();
    for (i, item) in items.into_iter().enumerate() {
        let cell = cell_of(&item);
        let key = match progress(cell) {
            Some(at) => (serde_yaml::to_string(&shared_part(&cell.config))?, at),
            None => (format!("alone {i}"), (0, 0)),
        };
        groups.entry(key).or_default().push(item);
    }
    let mut groups: Vec<Vec<T>> = groups.into_values().collect();
    groups.sort_by_key(|g| cell_of(&g[0]).index);
    let mut packs = Vec::new();
    for group in groups {
        let n = size.members(&cell_of(&group[0]).config, target).max(1);
        let mut rest = group;
        while !rest.is_empty() {
            packs.push(rest.drain(..n.min(rest.len())).collect());
        }
    }
    Ok(packs)
}

/// Where a cell would resume: (epochs done, step inside the next), (0, 0) without a
/// checkpoint; None when its checkpoint cannot be read (it then runs alone, which says why).
/// A pack's pending checkpoints count where they will be settled ([`pack_commit`]).
fn progress(cell: &Cell) -> Option<(i64, i64)> {
    pack_commit::resume_point(&cell.dir())
}

/// The cells to run of `cells` (out of the grid's `n`), each under its lock; skipped and busy
/// ones go into the report.
fn lock_cells(
    cells: Vec<Cell>,
    n: usize,
    report: &mut SweepReport,
) -> Result<Vec<(Cell, CellLock)>> {
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

/// Runs the unfinished ones of `cells` (the grid's, or those `--cell` names), in packs of
/// `size` (see the module doc).
pub fn run_packed(
    grid: &Grid,
    cells: Vec<Cell>,
    size: PackSize,
    opts: &SweepOptions,
) -> Result<SweepReport> {
    train::interrupt::install();
    grid.check_data()?;
    runner::check_configs(grid)?;
    runner::ensure_writable(&grid.dir)?;
    let total = grid.cells()?.len();
    let mut report = SweepReport::default();
    let locked = lock_cells(cells, total, &mut report)?;
    let target = match locked.first() {
        Some((c, _)) => Target::here(&c.config)?,
        None => Target::Cpu,
    };
    let packs = plan(locked, |(c, _)| c, size, target)?;
    if size == PackSize::Auto {
        let sizes: Vec<String> = packs.iter().map(|p| p.len().to_string()).collect();
        crate::util::eprintln_whole!(
            "--pack auto on {target}: packs of {}",
            if sizes.is_empty() {
                "none".into()
            } else {
                sizes.join(", ")
            }
        );
    }
    for chunk in packs {
        if let Some(stop) = run_chunk(chunk, total, opts, &mut report) {
            return Err(runner::stopped(grid, &stop, &report));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(depth: i64, batch: i64) -> RunConfig {
        let mut c = RunConfig::default();
        c.model.depth = depth;
        c.train.batch_size = batch;
        c
    }

    /// `--pack`'s values: N ≥ 1 or auto, anything else refused naming what it takes.
    #[test]
    fn pack_size_parses_numbers_and_auto() {
        assert_eq!("auto".parse::<PackSize>(), Ok(PackSize::Auto));
        assert_eq!("4".parse::<PackSize>(), Ok(PackSize::N(4)));
        for bad in ["0", "-1", "two", ""] {
            let e = bad.parse::<PackSize>().unwrap_err();
            assert!(e.contains("≥ 1, or auto"), "{bad}: {e}");
        }
    }

    /// The memory estimate against the CUDA allocator's peaks measured on an H200
    /// (BENCHMARKS.md, 2026-11-26, fp32, batch 128: ResNet-56 725.1 MiB, ResNet-110 1232.6 MiB,
    /// ResNet-1202 11,518.1 MiB): above each, by at most 1.5× and 300 MiB; against hand values
    /// (Σ C·H·W over the stages = 28,672 per convolution at width 1, 2 convolutions per block,
    /// 2 tensors, 4 bytes); and what auto makes of it.
    #[test]
    fn auto_fills_half_the_gpu_by_the_estimate() {
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        for (depth, measured) in [(56, 725.1), (110, 1232.6), (1202, 11_518.1)] {
            let est = mib(member_bytes(&cfg(depth, 128)));
            assert!(
                est >= measured,
                "ResNet-{depth}: {est} MiB < {measured} measured"
            );
            assert!(
                est <= 1.5 * measured && est <= measured + 300.0,
                "ResNet-{depth}: {est} MiB far above {measured} measured"
            );
        }
        // bf16 (the same runs): above each peak, by at most the fixed 512 MiB's slack.
        for (depth, measured) in [(56, 396.6), (110, 653.7), (1202, 5_945.8)] {
            let mut c = cfg(depth, 128);
            c.train.precision = Precision::Bf16;
            let est = mib(member_bytes(&c));
            assert!(
                est >= measured && est <= measured + 400.0,
                "ResNet-{depth} bf16: {est} MiB against {measured} measured"
            );
        }
        // ResNet-20: 3 blocks per stage: 2·2·3·28,672 floats per image, ×4 bytes ×128, +512 MiB.
        assert_eq!(member_bytes(&cfg(20, 128)), 176_160_768 + FIXED_BYTES);
        let mut wide = cfg(20, 128);
        wide.model.width = 4;
        assert_eq!(member_bytes(&wide), 4 * 176_160_768 + FIXED_BYTES);
        let mut graphed = cfg(20, 128);
        graphed.train.cuda_graph = CudaGraph::On;
        assert_eq!(member_bytes(&graphed), 2 * 176_160_768 + FIXED_BYTES);
        let gib = 1u64 << 30;
        let auto = |c: &RunConfig, t| PackSize::Auto.members(c, t);
        // 24 GiB: half is 12 GiB, 8 ResNet-110 at batch 128 (1520 MiB each).
        assert_eq!(auto(&cfg(110, 128), Target::Gpu(Some(24 * gib))), 8);
        // An H200 (about 140 GiB): 47 fit, capped at AUTO_MAX; ResNet-1202 (11,712 MiB): 6.
        assert_eq!(auto(&cfg(110, 128), Target::Gpu(Some(140 * gib))), AUTO_MAX);
        assert_eq!(auto(&cfg(1202, 128), Target::Gpu(Some(140 * gib))), 6);
        // In bf16 (6,112 MiB) all ten of a Table Z1 depth; with graphs (11,712 MiB) 6 again.
        let mut deep = cfg(1202, 128);
        deep.train.precision = Precision::Bf16;
        assert_eq!(auto(&deep, Target::Gpu(Some(140 * gib))), AUTO_MAX);
        deep.train.cuda_graph = CudaGraph::On;
        assert_eq!(auto(&deep, Target::Gpu(Some(140 * gib))), 6);
        // ResNet-1202 on 8 GiB: none fits; at least 1.
        assert_eq!(auto(&cfg(1202, 128), Target::Gpu(Some(8 * gib))), 1);
        assert_eq!(auto(&cfg(110, 128), Target::Gpu(None)), AUTO_MAX);
        assert_eq!(auto(&cfg(110, 128), Target::Cpu), 1);
        assert_eq!(PackSize::N(4).members(&cfg(110, 128), Target::Cpu), 4);
    }
}
