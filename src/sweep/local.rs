//! Local scheduling: `deepres sweep --jobs N` (N processes on CPU) and `--gpus 0,1,2,3` (one
//! process per GPU at a time). Each cell runs in a child `deepres sweep ... --cell i`, which
//! takes the cell's lock, so a local scheduler, a second sweep and Slurm tasks can share a grid.
use anyhow::{Context, Result};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::Duration;

use super::grid::Grid;
use super::lock;
use super::runner::{cell_status, SweepReport};
use crate::train::RunStatus;

/// Where the children run: `jobs` CPU processes, or one process per listed GPU.
#[derive(Debug, Clone)]
pub enum Slots {
    Cpu(usize),
    Gpus(Vec<String>),
}

/// Runs every unfinished cell in a child process `deepres <child_args> --cell i`, at most one
/// per slot at a time; on a GPU slot the child sees only that GPU (`CUDA_VISIBLE_DEVICES`), on
/// CPU slots each child gets cores/jobs intra-op threads (`OMP_NUM_THREADS`, unless set).
/// Children die with this process (`PR_SET_PDEATHSIG`), so a killed scheduler leaves no
/// orphan training; their locks are then taken over by the next sweep. A child's nonzero exit
/// is a failed cell (its own error line is above, on the shared stderr).
pub fn run_local(grid: &Grid, child_args: &[String], slots: &Slots) -> Result<SweepReport> {
    grid.check_data()?;
    super::runner::check_configs(grid)?;
    let exe = std::env::current_exe().context("cannot find the deepres executable")?;
    let names: Vec<Option<String>> = match slots {
        Slots::Cpu(n) => vec![None; (*n).max(1)],
        Slots::Gpus(g) => g.iter().cloned().map(Some).collect(),
    };
    let threads = match slots {
        Slots::Cpu(n) => std::thread::available_parallelism()
            .map(|c| (c.get() / (*n).max(1)).max(1))
            .unwrap_or(1),
        Slots::Gpus(_) => 0,
    };
    let mut report = SweepReport::default();
    let mut pending = Vec::new();
    for cell in grid.cells()? {
        match cell_status(&cell).0 {
            RunStatus::Finished | RunStatus::Diverged => report.skipped += 1,
            _ => match lock::live_owner(&lock::lock_path(&cell.dir())) {
                Some(owner) => report.busy.push((cell.name.clone(), owner.to_string())),
                None => pending.push(cell),
            },
        }
    }
    pending.reverse();
    let mut running: Vec<Option<(Child, String)>> = names.iter().map(|_| None).collect();
    loop {
        for (slot, gpu) in running.iter_mut().zip(&names) {
            if let Some((child, name)) = slot {
                if let Some(status) = child.try_wait()? {
                    if status.success() {
                        report.ran += 1;
                    } else {
                        report
                            .failed
                            .push((name.clone(), format!("its process ended with {status}")));
                    }
                    *slot = None;
                }
            }
            if slot.is_none() {
                if let Some(cell) = pending.pop() {
                    let mut cmd = Command::new(&exe);
                    cmd.args(child_args)
                        .arg("--cell")
                        .arg(cell.index.to_string());
                    match gpu {
                        Some(g) => {
                            cmd.env("CUDA_VISIBLE_DEVICES", g);
                        }
                        None if std::env::var_os("OMP_NUM_THREADS").is_none() => {
                            cmd.env("OMP_NUM_THREADS", threads.to_string());
                        }
                        None => {}
                    }
                    // SAFETY: prctl is async-signal-safe; it only sets this child's death signal.
                    unsafe {
                        cmd.pre_exec(|| {
                            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                            Ok(())
                        });
                    }
                    let child = cmd
                        .spawn()
                        .with_context(|| format!("cannot start {}", exe.display()))?;
                    *slot = Some((child, cell.name.clone()));
                }
            }
        }
        if pending.is_empty() && running.iter().all(Option::is_none) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(report)
}
