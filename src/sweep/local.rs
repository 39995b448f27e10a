//! Local scheduling: `deepres sweep --jobs N` (N processes on CPU) and `--gpus 0,1,2,3` (one
//! process per GPU at a time). Each cell runs in a child `deepres sweep ... --cell i`, which
//! takes the cell's lock, so a local scheduler, a second sweep and Slurm tasks can share a grid.
//! With `--pack`, each child trains one pack planned here ([`super::pack::plan`]):
//! `deepres sweep ... --pack N --cell i,j,k`.
use anyhow::{Context, Result};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::Duration;

use super::grid::{Cell, Grid};
use super::lock;
use super::pack::{self, PackSize};
use super::runner::{cell_status, SweepReport};
use crate::train::{interrupt, RunStatus};

/// Where the children run: `jobs` CPU processes, or one process per listed GPU.
#[derive(Debug, Clone)]
pub enum Slots {
    Cpu(usize),
    Gpus(Vec<String>),
}

/// Runs every unfinished cell in a child process `deepres <child_args> --cell i` (with `pack`:
/// every pack [`pack::plan`] makes, `--cell i,j,k`), at most one per slot at a time; on a GPU slot the child sees only that GPU (`CUDA_VISIBLE_DEVICES`), on
/// CPU slots each child gets cores/jobs intra-op threads (`OMP_NUM_THREADS`, unless set).
/// Children die with this process (`PR_SET_PDEATHSIG`), so a killed scheduler leaves no
/// orphan training; their locks are then taken over by the next sweep. A child's nonzero exit
/// is a failed cell (its own error line is above, on the shared stderr).
///
/// Preemption ([`interrupt`]): the first SIGTERM, SIGINT or SIGUSR1 is forwarded to every
/// running child, which finishes its step, writes its resumable checkpoint and exits 75; no
/// new cell starts, and once the children are gone the error is [`interrupt::Interrupted`]
/// (exit 75: rerun the same command to continue). A second signal ends this process at once
/// (130), and the children with it (SIGKILL, their parent-death signal). Children run in their
/// own process group, so a terminal's Ctrl-C reaches them once, through this process.
pub fn run_local(
    grid: &Grid,
    child_args: &[String],
    slots: &Slots,
    pack: Option<PackSize>,
) -> Result<SweepReport> {
    interrupt::install();
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
    let mut pending = units(pending, slots, pack)?;
    pending.reverse();
    let mut running: Vec<Option<(Child, Vec<String>)>> = names.iter().map(|_| None).collect();
    let mut stopped_by: Option<i32> = None;
    loop {
        if let (None, Some(sig)) = (stopped_by, interrupt::signal()) {
            stopped_by = Some(sig);
            let n = forward(&running, sig);
            crate::util::eprintln_whole!(
                "sweep: {} received: forwarded to {n} running cell(s), which write their checkpoints; {} cell(s) not started",
                interrupt::name(sig),
                pending.len()
            );
            pending.clear();
        }
        for (slot, gpu) in running.iter_mut().zip(&names) {
            if let Some((child, cells)) = slot {
                if let Some(status) = child.try_wait()? {
                    record_exit(status, cells, &mut report);
                    *slot = None;
                }
            }
            if slot.is_none() {
                if let Some(unit) = pending.pop() {
                    let index: Vec<usize> = unit.iter().map(|c| c.index).collect();
                    let child = spawn(&exe, child_args, &index, gpu.as_deref(), threads)?;
                    *slot = Some((child, unit.into_iter().map(|c| c.name).collect()));
                }
            }
        }
        if pending.is_empty() && running.iter().all(Option::is_none) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if stopped_by.is_some() || report.interrupted > 0 {
        let by = stopped_by.map_or("a signal".into(), interrupt::name);
        return Err(interrupt::Interrupted(format!(
            "{}: sweep stopped by {by}: {report}; rerun the same command to continue",
            grid.dir.display()
        ))
        .into());
    }
    Ok(report)
}

/// A child's exit into `report`: its cells ran (0), were stopped resumably (75) or failed.
fn record_exit(status: std::process::ExitStatus, cells: &[String], report: &mut SweepReport) {
    match status.code() {
        Some(0) => report.ran += cells.len(),
        Some(c) if c == i32::from(interrupt::EXIT_CODE) => report.interrupted += cells.len(),
        _ => report.failed.extend(
            cells
                .iter()
                .map(|n| (n.clone(), format!("its process ended with {status}"))),
        ),
    }
}

/// What each child runs: a cell, or with `pack` a pack planned for the slots' device (on GPU
/// slots the first GPU's memory sizes `--pack auto`).
fn units(cells: Vec<Cell>, slots: &Slots, pack: Option<PackSize>) -> Result<Vec<Vec<Cell>>> {
    let Some(size) = pack else {
        return Ok(cells.into_iter().map(|c| vec![c]).collect());
    };
    let target = match slots {
        Slots::Cpu(_) => pack::Target::Cpu,
        Slots::Gpus(g) => pack::Target::Gpu(
            g.first()
                .and_then(|i| i.trim().parse::<usize>().ok())
                .and_then(|i| crate::util::device::gpu_properties().get(i).map(|p| p.1)),
        ),
    };
    pack::plan(cells, |c| c, size, target)
}

/// Sends `sig` to every running child; returns how many.
fn forward(running: &[Option<(Child, Vec<String>)>], sig: i32) -> usize {
    let mut n = 0;
    for (child, _) in running.iter().flatten() {
        // SAFETY: kill(2) to a child this process started and has not reaped yet.
        if unsafe { libc::kill(child.id() as libc::pid_t, sig) } == 0 {
            n += 1;
        }
    }
    n
}

/// Starts `deepres <child_args> --cell <cells>` on a GPU slot (`gpu`) or a CPU slot with
/// `threads` intra-op threads: in its own process group, killed with this process, with the
/// preemption signals blocked until its handler is installed ([`interrupt::install`]).
fn spawn(
    exe: &std::path::Path,
    child_args: &[String],
    cells: &[usize],
    gpu: Option<&str>,
    threads: usize,
) -> Result<Child> {
    let list: Vec<String> = cells.iter().map(usize::to_string).collect();
    let mut cmd = Command::new(exe);
    cmd.args(child_args).arg("--cell").arg(list.join(","));
    match gpu {
        Some(g) => {
            cmd.env("CUDA_VISIBLE_DEVICES", g);
        }
        None if std::env::var_os("OMP_NUM_THREADS").is_none() => {
            cmd.env("OMP_NUM_THREADS", threads.to_string());
        }
        None => {}
    }
    // SAFETY: setpgid, prctl and pthread_sigmask are async-signal-safe; they only set this
    // child's process group, death signal and signal mask.
    unsafe {
        cmd.pre_exec(|| {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            interrupt::set_blocked(true);
            Ok(())
        });
    }
    cmd.spawn()
        .with_context(|| format!("cannot start {}", exe.display()))
}
