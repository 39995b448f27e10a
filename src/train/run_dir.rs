//! A run directory `<out_dir>/<name>/`: its files, named here once, the run's status
//! ([`RunStatus`]), its summary, and the checks that keep one directory to one config.
//!
//! - `config.yaml`: the resolved config, written once when the run starts;
//! - `config.sha256`: the SHA-256 of that file (`sha256sum` format); checkpoints carry it;
//! - `metrics.csv`: one row per epoch ([`crate::train::metrics`]);
//! - `checkpoint.safetensors`: weights, optimizer state and progress after every epoch;
//! - `best.safetensors`: the model alone (weights and BN statistics) of the epoch with the best
//!   test accuracy so far, rewritten when it improves; `summary.json` names its epoch;
//! - `summary.json`: [`Summary`], rewritten after every epoch.
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

use super::config::{RunConfig, TrainConfig};
use super::RunOptions;
use crate::util::write_atomic;

/// The resolved config.
pub const CONFIG_FILE: &str = "config.yaml";
/// The file of a run directory that records the SHA-256 of its `config.yaml`
/// ([`RunConfig::hash`]), in `sha256sum` format.
pub const HASH_FILE: &str = "config.sha256";
/// One row per epoch.
pub const METRICS_FILE: &str = "metrics.csv";
/// Weights, optimizer state and progress after the last finished epoch.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// The model of the best epoch (test accuracy), with metadata (epoch, accuracy, config hash).
pub const BEST_FILE: &str = "best.safetensors";
/// [`Summary`] as JSON.
pub const SUMMARY_FILE: &str = "summary.json";

/// Where a run stands: the one status of runs, sweep cells and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Nothing in the directory (or no directory): never started.
    Missing,
    /// Started, not finished: in progress, or interrupted and resumable.
    Running,
    /// The loss became NaN/inf; recorded, not retried.
    Diverged,
    /// Trained for all its epochs.
    Finished,
}

impl RunStatus {
    /// `missing`, `running`, `diverged` or `finished`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Missing => "missing",
            RunStatus::Running => "running",
            RunStatus::Diverged => "diverged",
            RunStatus::Finished => "finished",
        }
    }

    /// Finished or diverged: nothing more to run.
    pub fn is_final(self) -> bool {
        matches!(self, RunStatus::Finished | RunStatus::Diverged)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// JSON has no NaN: serde_json writes NaN as `null`; read it back as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// What `summary.json` holds (NaN values are written as `null`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub name: String,
    /// `finished`, `diverged` or `running` (interrupted or in progress).
    pub status: RunStatus,
    pub epochs_done: i64,
    pub epochs: i64,
    #[serde(deserialize_with = "nan_if_null")]
    pub best_test_acc: f64,
    pub best_epoch: i64,
    #[serde(deserialize_with = "nan_if_null")]
    pub final_test_acc: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub final_train_loss: f64,
    pub diverged_at_epoch: Option<i64>,
    pub parameters: i64,
    pub tau0: f64,
    pub device: String,
    #[serde(deserialize_with = "nan_if_null")]
    pub train_seconds: f64,
    /// Per-channel mean and std ([0, 1] pixel units) of the training images, which every
    /// input was normalized with: (x − mean) / std (empty in runs of older versions).
    #[serde(default)]
    pub input_mean: Vec<f64>,
    #[serde(default)]
    pub input_std: Vec<f64>,
}

pub fn read_summary(dir: &Path) -> Result<Summary> {
    let p = dir.join(SUMMARY_FILE);
    let text =
        std::fs::read_to_string(&p).with_context(|| format!("{}: cannot read", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: malformed", p.display()))
}

pub(crate) fn write_summary(dir: &Path, s: &Summary) -> Result<()> {
    write_atomic(
        &dir.join(SUMMARY_FILE),
        serde_json::to_string_pretty(s)? + "\n",
    )
}

pub fn has_results(dir: &Path) -> bool {
    dir.join(METRICS_FILE).exists() || dir.join(CHECKPOINT_FILE).exists()
}

/// Why the run directory of `cfg` cannot take `cfg`'s results, if it cannot (one line naming
/// the file, without a hint: `train` and `sweep` add theirs): it holds results
/// of a different config (compared as configs, not as text: keys added to deepres since, with
/// their defaults, do not make an old run "different"), results without a config, or a
/// `config.yaml` that no longer matches the hash recorded in `config.sha256` (edited by hand).
/// `None` for a free directory or one holding results of the same config.
pub fn config_conflict(cfg: &RunConfig) -> Option<String> {
    let dir = cfg.run_dir();
    if !has_results(&dir) {
        return None;
    }
    let cfg_path = dir.join(CONFIG_FILE);
    let text = match std::fs::read(&cfg_path) {
        Ok(t) => t,
        Err(_) => {
            return Some(format!(
                "{}: holds results but no config.yaml, so they cannot be matched to a config",
                dir.display()
            ))
        }
    };
    if let Some(recorded) = recorded_hash(&dir) {
        if recorded != crate::util::key::sha256_hex(&text) {
            return Some(format!(
                "{}: does not match the hash recorded in {HASH_FILE} (edited after the run started?)",
                cfg_path.display()
            ));
        }
    }
    let old = RunConfig::from_yaml_str(
        &String::from_utf8_lossy(&text),
        &cfg_path.display().to_string(),
        &[],
    );
    match old {
        // out_dir says where the run is, not what it is (a moved sweep, a relative path
        // made absolute for a Slurm task), log what is logged, checkpoint_minutes how
        // often a mid-epoch checkpoint is written and cuda_graph how a step is launched (a
        // graphed step computes the ordinary one: tests/gpu_graph.rs): none of them counts.
        Ok(old)
            if RunConfig {
                out_dir: cfg.out_dir.clone(),
                log: cfg.log.clone(),
                train: TrainConfig {
                    checkpoint_minutes: cfg.train.checkpoint_minutes,
                    cuda_graph: cfg.train.cuda_graph,
                    ..old.train.clone()
                },
                ..old.clone()
            } == *cfg =>
        {
            None
        }
        Ok(old) => Some(format!(
            "{}: the run there has a different config (hash {} there, {} now)",
            cfg_path.display(),
            &old.hash()[..12],
            &cfg.hash()[..12]
        )),
        Err(e) => Some(format!(
            "{}: the run there has a config this deepres cannot read ({})",
            cfg_path.display(),
            e.to_string().replace('\n', " ")
        )),
    }
}

/// The hash recorded in the run directory's `config.sha256`, if any.
pub(crate) fn recorded_hash(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(HASH_FILE))
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_string))
}

/// `cfg` itself if its run directory does not exist yet, else `cfg` renamed to the first
/// `<name>-2`, `<name>-3`, ... whose directory does not exist (`--force-new`).
pub fn with_new_dir(cfg: &RunConfig) -> RunConfig {
    let mut out = cfg.clone();
    let mut n = 2;
    while out.run_dir().exists() {
        out.name = format!("{}-{n}", cfg.name);
        n += 1;
    }
    out
}

/// Checks the run directory without writing: a fresh run refuses a directory holding results,
/// a resumed run refuses a directory whose config differs ([`config_conflict`]). Returns
/// whether a checkpoint is to be loaded.
pub(crate) fn check_dir(cfg: &RunConfig, dir: &Path, opts: &RunOptions) -> Result<bool> {
    if has_results(dir) && !opts.resume {
        bail!(
            "{}: holds results of an earlier run; pass --resume to continue it, --force-new for a new directory, or choose another name (--set name=...)",
            dir.display()
        );
    }
    if let Some(e) = config_conflict(cfg) {
        bail!("{e}; pick another name (--set name=...), pass --force-new for a new directory, or move that directory away");
    }
    if opts.resume {
        // A pack's checkpoint written pending is committed or dropped with its pack's.
        super::pack_commit::settle(dir)?;
    }
    Ok(opts.resume && dir.join(CHECKPOINT_FILE).exists())
}

/// Creates the run directory (checking it is writable) and saves the resolved config and its
/// hash (`config.sha256`), unless the directory already holds results (of this config:
/// [`check_dir`] refused others), whose config.yaml stays as the run started it.
pub(crate) fn create_dir(cfg: &RunConfig, dir: &Path) -> Result<()> {
    let cfg_path = dir.join(CONFIG_FILE);
    crate::util::atomic::ensure_writable_dir(dir, "run directory")?;
    // Under the run's lock no other process writes here: a temporary file of another pid was
    // left by a kill inside a write.
    crate::util::atomic::remove_stale_temporaries(dir);
    if has_results(dir) && cfg_path.exists() {
        if recorded_hash(dir).is_none() {
            // a run of an older deepres: record the hash of the config it started with
            let text = std::fs::read(&cfg_path)?;
            let hash = crate::util::key::sha256_hex(&text);
            write_atomic(&dir.join(HASH_FILE), format!("{hash}  config.yaml\n"))?;
        }
        return Ok(());
    }
    // No results: this rewrites at most a stale config of an attempt that left none.
    write_atomic(&cfg_path, cfg.to_yaml())?;
    write_atomic(
        &dir.join(HASH_FILE),
        format!("{}  config.yaml\n", cfg.hash()),
    )?;
    Ok(())
}
