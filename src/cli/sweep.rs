//! `deepres sweep` and `deepres report`: a grid file's cells, run here, in local child
//! processes, or as a Slurm job array; and the tables and plots of its `report:` section.
use anyhow::{bail, Result};
use clap::Args;
use std::path::{Path, PathBuf};

use crate::sweep::pack::PackSize;
use crate::sweep::{self, local, slurm, Grid, SweepOptions};

/// Which sweep: a grid file, its scale, seeds and overrides (shared by `sweep` and `report`).
#[derive(Args)]
pub struct GridArgs {
    /// The grid file (see experiments/).
    grid: PathBuf,
    /// A scale of the grid file (smoke, full).
    #[arg(long)]
    scale: Option<String>,
    /// Replace the grid's seeds: --seeds 0,1,2,3,4
    #[arg(long, value_delimiter = ',')]
    seeds: Option<Vec<u64>>,
    /// Override a run-config key in every cell.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Put the cells in DIR instead of <out_dir>/<name> (what --force-new passes on to the
    /// processes of --jobs, --gpus and --slurm).
    #[arg(long, value_name = "DIR")]
    sweep_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct SweepArgs {
    #[command(flatten)]
    grid: GridArgs,
    /// List the cells and their state (finished / running / diverged / missing / other:
    /// another config's run) and who holds each running cell's lock; run nothing.
    #[arg(long)]
    status: bool,
    /// Run only cell I, or cells I,J,... (as --status numbers them); what each Slurm array
    /// task and each child of --jobs or --gpus runs.
    #[arg(long, value_name = "I[,J...]", value_delimiter = ',')]
    cell: Option<Vec<usize>>,
    /// Train cells that share architecture, data and progress N at a time as one program
    /// (grouped convolutions); every cell keeps its own run directory and lock. auto: 1 on the
    /// CPU, on CUDA as many as fit half the GPU's memory, at most 10. With --jobs, --gpus or
    /// --slurm each process or array task trains one pack.
    #[arg(long, value_name = "N|auto")]
    pack: Option<PackSize>,
    /// Run N cells at a time, each in its own process (CPU).
    #[arg(long, value_name = "N", conflicts_with_all = ["gpus", "cell", "slurm"])]
    jobs: Option<usize>,
    /// Run one cell per listed GPU at a time, each process seeing only its GPU: --gpus 0,1,2,3
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["cell", "slurm"])]
    gpus: Option<Vec<String>>,
    /// If the sweep directory holds runs of another config, run into the first
    /// <dir>-2, <dir>-3, ... that holds none (rerunning with the flag resumes there).
    #[arg(long)]
    force_new: bool,
    /// Submit a Slurm job array (one unfinished cell per task) with sbatch; print the job id.
    #[arg(long, conflicts_with = "cell")]
    slurm: bool,
    #[command(flatten)]
    slurm_options: slurm::SlurmOptions,
    #[arg(short, long)]
    quiet: bool,
}

impl GridArgs {
    fn load(&self) -> Result<Grid> {
        let grid = Grid::load(&self.grid, self.scale.as_deref(), &self.set)?;
        let grid = match &self.seeds {
            Some(s) => grid.with_seeds(s)?,
            None => grid,
        };
        match &self.sweep_dir {
            Some(d) => grid.relocated(d),
            None => Ok(grid),
        }
    }

    /// The arguments of a child `deepres sweep` on the same cells in `dir` (absolute paths,
    /// so that a Slurm task may start elsewhere).
    fn child_args(&self, dir: &Path, quiet: bool) -> Result<Vec<String>> {
        let abs = |p: &Path| -> Result<String> {
            let p = if p.is_absolute() {
                p.to_path_buf()
            } else {
                std::env::current_dir()?.join(p)
            };
            Ok(p.display().to_string())
        };
        let mut a = vec!["sweep".to_string(), abs(&self.grid)?];
        if let Some(s) = &self.scale {
            a.extend(["--scale".into(), s.clone()]);
        }
        if let Some(seeds) = &self.seeds {
            let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
            a.extend(["--seeds".into(), list.join(",")]);
        }
        for s in &self.set {
            a.extend(["--set".into(), s.clone()]);
        }
        a.extend(["--sweep-dir".into(), abs(dir)?]);
        if quiet {
            a.push("--quiet".into());
        }
        Ok(a)
    }
}

impl SweepArgs {
    /// The arguments of a child process or Slurm task on these cells in `dir`, with `--pack`
    /// when packing (the child is told its cells with `--cell`).
    fn child_args(&self, dir: &Path) -> Result<Vec<String>> {
        let mut args = self.grid.child_args(dir, self.quiet)?;
        if let Some(p) = self.pack {
            args.extend(["--pack".into(), p.to_string()]);
        }
        Ok(args)
    }
}

pub fn sweep(a: SweepArgs) -> Result<()> {
    let mut grid = a.grid.load()?;
    if a.force_new {
        grid = sweep::with_new_dir(&grid)?;
        eprintln!("sweep directory: {}", grid.dir.display());
    }
    if a.status {
        print!("{}", sweep::status_table(&grid)?);
        return Ok(());
    }
    if a.slurm {
        return submit(&grid, &a);
    }
    let slots = match (a.jobs, a.gpus.clone()) {
        (Some(n), _) => Some(local::Slots::Cpu(n)),
        (None, Some(g)) => Some(local::Slots::Gpus(g)),
        (None, None) => None,
    };
    let report = match slots {
        Some(slots) => local::run_local(&grid, &a.child_args(&grid.dir)?, &slots, a.pack)?,
        None => sweep::run_sweep(
            &grid,
            &SweepOptions {
                quiet: a.quiet,
                cell: a.cell.clone(),
                pack: a.pack,
            },
        )?,
    };
    println!("{}: {report}", grid.dir.display());
    if !report.failed.is_empty() {
        let failed: Vec<String> = report
            .failed
            .iter()
            .map(|(c, e)| format!("{c}: {e}"))
            .collect();
        bail!("{} cell(s) failed: {}", failed.len(), failed.join("; "));
    }
    Ok(())
}

/// `--slurm`: submits one array task per unfinished cell.
fn submit(grid: &Grid, a: &SweepArgs) -> Result<()> {
    sweep::check_configs(grid)?;
    let child = a.child_args(&grid.dir)?;
    match slurm::submit(grid, &child, &a.slurm_options, a.pack)? {
        Some((script, id)) => {
            eprintln!("submitted {}", script.display());
            println!("{id}");
        }
        None => eprintln!(
            "{}: every cell is done or diverged; nothing submitted",
            grid.dir.display()
        ),
    }
    Ok(())
}

pub fn report(a: GridArgs) -> Result<()> {
    let grid = a.load()?;
    // A report of runs made under another config would print their numbers under this one's.
    sweep::refuse_conflicts(
        &grid,
        "pass the --set and --seeds the sweep ran with, or --sweep-dir DIR for the directory a --force-new sweep ran into",
    )?;
    let cells = grid.cells()?;
    let output = sweep::report::render(&grid, &cells)?;
    print!("{}", output.text);
    Ok(output.acceptance.into_result()?)
}
