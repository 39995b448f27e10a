//! Slurm: `deepres sweep GRID --slurm` writes an sbatch job-array script, one array task per
//! unfinished cell, each running `deepres sweep GRID ... --cell $SLURM_ARRAY_TASK_ID`, and
//! submits it. Tasks are requeue-safe: a task run again (requeued after preemption, or
//! resubmitted after a cancel) takes over its cell's lock and resumes from the checkpoint.
//! Before its time limit a task is sent SIGUSR1 (`--signal-before`), checkpoints inside its
//! epoch and requeues itself ([`TASK_BODY`]). With `--pack`, each array task trains one pack
//! planned at submission ([`super::pack::plan`]): the task's id is its first cell's index and
//! the script maps it to the pack's cells (`--cell i,j,k`).
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::grid::{Cell, Grid};
use super::pack::{self, PackSize};
use super::runner::cell_status;
use crate::train::RunStatus;

/// sbatch's options, given with `deepres sweep --slurm`.
#[derive(Debug, Clone, clap::Args)]
pub struct SlurmOptions {
    /// Slurm partition (with --slurm).
    #[arg(long, requires = "slurm")]
    pub partition: Option<String>,
    /// Slurm time limit per task, e.g. 24:00:00 (with --slurm).
    #[arg(long, requires = "slurm")]
    pub time: Option<String>,
    /// Slurm generic resources per task, e.g. gpu:1 (with --slurm).
    #[arg(long, requires = "slurm")]
    pub gres: Option<String>,
    /// At most K array tasks at once (`--array=...%K`, with --slurm).
    #[arg(long, value_name = "K", requires = "slurm")]
    pub max_parallel: Option<usize>,
    /// Ask Slurm for SIGUSR1 this many seconds before a task's time limit
    /// (`--signal=B:USR1@SECONDS`): the task checkpoints and requeues itself; 0: no signal
    /// (with --slurm).
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_SIGNAL_BEFORE,
          value_parser = clap::value_parser!(u32).range(0..=65535), requires = "slurm")]
    pub signal_before: u32,
}

impl Default for SlurmOptions {
    fn default() -> Self {
        SlurmOptions {
            partition: None,
            time: None,
            gres: None,
            max_parallel: None,
            signal_before: DEFAULT_SIGNAL_BEFORE,
        }
    }
}

/// Seconds before the time limit at which a task is asked to checkpoint by default.
pub const DEFAULT_SIGNAL_BEFORE: u32 = 300;

/// The body of every array task: deepres in the background, the batch shell waiting on it.
/// SIGUSR1 (what `--signal=B:USR1@T` or `scancel --batch --signal=USR1` sends to this shell
/// alone) is forwarded to deepres, which finishes its step, writes its checkpoint and exits 75;
/// the task then requeues itself and, run again, resumes from that step. SIGTERM (what Slurm
/// sends every process of a job it cancels, requeues or preempts) reaches deepres directly, so
/// the shell only keeps waiting for deepres's checkpoint instead of dying first. A trapped
/// signal interrupts `wait` (status > 128) while deepres runs on: then it waits again.
const TASK_BODY: &str = r#"DEEPRES_PID=$!
forwarded=
trap 'interrupted=1; forwarded=1; kill -USR1 "$DEEPRES_PID" 2>/dev/null || true' USR1
trap 'interrupted=1' TERM INT
while :; do
  interrupted=
  rc=0; wait "$DEEPRES_PID" || rc=$?
  [ -n "$interrupted" ] && [ "$rc" -gt 128 ] || break
done
if [ "$rc" = 75 ] && [ -n "$forwarded" ]; then
  echo "deepres: checkpointed on SIGUSR1; requeueing ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
  scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
fi
exit "$rc"
"#;

/// Quotes `s` for bash.
fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The array tasks for `todo` (the unfinished cells): one per cell, or with `pack` one per pack
/// (`--pack auto` on CPU cells is 1; on GPU cells at most [`pack::AUTO_MAX`], each task sizing
/// its packs again on its own GPU). Each task's id is its first cell's index.
fn tasks(todo: Vec<Cell>, pack: Option<PackSize>) -> Result<Vec<Vec<usize>>> {
    let units = match pack {
        None => todo.into_iter().map(|c| vec![c]).collect(),
        Some(size) => {
            let cpu = todo.iter().all(|c| {
                crate::util::device::parse_device(&c.config.device).ok()
                    == Some(crate::util::device::DeviceRequest::Cpu)
            });
            let target = if cpu {
                pack::Target::Cpu
            } else {
                pack::Target::Gpu(None)
            };
            pack::plan(todo, |c| c, size, target)?
        }
    };
    Ok(units
        .into_iter()
        .map(|u| u.iter().map(|c| c.index).collect())
        .collect())
}

/// The sbatch script for the unfinished cells of `grid` (`None` when every cell is done or
/// diverged). `exe` and `child_args` make the command (`deepres sweep GRID ...`, with `--pack`
/// when `pack` is set), run in `cwd`.
pub fn script(
    grid: &Grid,
    exe: &Path,
    child_args: &[String],
    cwd: &Path,
    opts: &SlurmOptions,
    pack: Option<PackSize>,
) -> Result<Option<String>> {
    let unfinished: Vec<Cell> = grid
        .cells()?
        .into_iter()
        .filter(|c| !matches!(cell_status(c).0, RunStatus::Finished | RunStatus::Diverged))
        .collect();
    let tasks = tasks(unfinished, pack)?;
    if tasks.is_empty() {
        return Ok(None);
    }
    let todo: Vec<String> = tasks.iter().map(|t| t[0].to_string()).collect();
    let logs = absolute(&grid.dir.join("slurm"))?;
    let mut s = String::from("#!/bin/bash\n");
    s += &format!(
        "#SBATCH --job-name={}\n",
        quote(&format!("deepres-{}", grid.name))
    );
    let limit = opts
        .max_parallel
        .map(|k| format!("%{k}"))
        .unwrap_or_default();
    s += &format!("#SBATCH --array={}{limit}\n", todo.join(","));
    s += &format!(
        "#SBATCH --output={}\n",
        quote(&format!("{}/%A_%a.out", logs.display()))
    );
    s += "#SBATCH --open-mode=append\n#SBATCH --requeue\n";
    if opts.signal_before > 0 {
        s += &format!("#SBATCH --signal=B:USR1@{}\n", opts.signal_before);
    }
    for (flag, v) in [
        ("partition", &opts.partition),
        ("time", &opts.time),
        ("gres", &opts.gres),
    ] {
        if let Some(v) = v {
            s += &format!("#SBATCH --{flag}={}\n", quote(v));
        }
    }
    s += "# One cell per array task; a requeued or resubmitted task resumes its cell from its\n";
    s += "# checkpoint (the cell's lock names the task, so the task takes its own lock over).\n";
    s += "set -u\n";
    s += &format!("cd {} || exit 2\n", quote(&cwd.display().to_string()));
    let cells = if pack.is_some() {
        s += "# --pack: array task i trains the pack whose first cell is i.\n";
        s += "case \"$SLURM_ARRAY_TASK_ID\" in\n";
        for t in &tasks {
            let list: Vec<String> = t.iter().map(usize::to_string).collect();
            s += &format!("  {}) CELLS={} ;;\n", t[0], list.join(","));
        }
        s += "  *) echo \"deepres: array task $SLURM_ARRAY_TASK_ID is no pack of this script\" >&2; exit 2 ;;\n";
        s += "esac\n";
        "\"$CELLS\""
    } else {
        "\"$SLURM_ARRAY_TASK_ID\""
    };
    let args: Vec<String> = child_args.iter().map(|a| quote(a)).collect();
    s += &format!(
        "{} {} --cell {cells} &\n",
        quote(&exe.display().to_string()),
        args.join(" ")
    );
    s += TASK_BODY;
    Ok(Some(s))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

/// Writes the script to `<sweep dir>/slurm/sweep-<unix time>.sbatch` and submits it with
/// `sbatch --parsable`; returns the script's path and the job id (`None`, nothing submitted,
/// when no cell is left).
pub fn submit(
    grid: &Grid,
    child_args: &[String],
    opts: &SlurmOptions,
    pack: Option<PackSize>,
) -> Result<Option<(PathBuf, String)>> {
    let exe = std::env::current_exe().context("cannot find the deepres executable")?;
    let cwd = std::env::current_dir()?;
    let Some(text) = script(grid, &exe, child_args, &cwd, opts, pack)? else {
        return Ok(None);
    };
    let dir = grid.dir.join("slurm");
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let path = dir.join(format!("sweep-{stamp}.sbatch"));
    crate::util::write_atomic(&path, text)?;
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(&path)
        .output()
        .with_context(|| {
            format!(
                "--slurm: cannot run sbatch (is Slurm installed and on PATH?); the script is {}",
                path.display()
            )
        })?;
    if !out.status.success() {
        bail!(
            "--slurm: sbatch {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .replace('\n', " ")
        );
    }
    let id = String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    Ok(Some((path, id)))
}
