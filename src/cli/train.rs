//! `deepres train` and `deepres summary`: one run config.
use anyhow::{bail, Result};
use clap::Args;
use std::path::{Path, PathBuf};

use crate::model::config::{Norm, Shortcut};
use crate::model::resnet::{self, ResNet};
use crate::sweep::lock::{self, Acquired};
use crate::train::{self, config::RunConfig, interrupt::Interrupted};

#[derive(Args)]
pub struct TrainArgs {
    /// YAML run config (see experiments/); without it, the defaults.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Override a config key: --set model.depth=56 --set train.optimizer.lr=0.05
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Shorthand for --set device=...: auto | cpu | cuda | cuda:N
    #[arg(long)]
    device: Option<String>,
    /// Continue the run from its checkpoint (a finished run is left as it is).
    #[arg(long)]
    resume: bool,
    /// Stop after this many epochs in this process (the run stays resumable).
    #[arg(long, value_name = "N")]
    stop_after: Option<i64>,
    /// When <out_dir>/<name> exists, train into the first free <name>-2, <name>-3, ...
    #[arg(long)]
    force_new: bool,
    /// No per-epoch lines.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub struct SummaryArgs {
    /// YAML run config whose model is described; without it, the defaults.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Override a config key: --set model.tau.rule=inv_sqrt
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Depth 6n+2 [default: the config's, 20 without one]
    #[arg(long)]
    depth: Option<i64>,
    /// [default: the config's, bn without one]
    #[arg(long, value_enum)]
    norm: Option<Norm>,
    /// [default: the config's, a without one]
    #[arg(long, value_enum)]
    shortcut: Option<Shortcut>,
    /// Width multiplier k [default: the config's, 1 without one]
    #[arg(long)]
    width: Option<i64>,
    /// Number of classes.
    #[arg(long, default_value_t = 10)]
    classes: i64,
    /// Input channels (3 for CIFAR, 1 for MNIST).
    #[arg(long, default_value_t = 3)]
    in_channels: i64,
}

pub fn train(a: TrainArgs) -> Result<()> {
    let mut set = a.set;
    set.extend(a.device.map(|d| format!("device={d}")));
    let mut cfg = load_config(a.config.as_deref(), &set)?;
    if a.force_new {
        cfg = train::with_new_dir(&cfg);
    }
    let opts = train::RunOptions {
        resume: a.resume,
        stop_after: a.stop_after,
        quiet: a.quiet,
    };
    // The lock a sweep takes on the run directory (`<run dir>.lock`): a sweep's cell, or a
    // packed cell resumed alone, never trains in two processes at once. Where the output
    // directory does not exist yet no process runs the cell, and bad input writes nothing.
    let dir = cfg.run_dir();
    let _lock = match dir.parent().filter(|p| p.is_dir()) {
        Some(_) => Some(lock_run(&dir)?),
        None => None,
    };
    let s = train::run(&cfg, &opts).map_err(|e| match e.downcast::<Interrupted>() {
        // The run's message says what was saved; how to go on is this command's.
        Ok(stop) => Interrupted(format!("{stop}: rerun with --resume")).into(),
        Err(e) => e,
    })?;
    println!(
        "{}: {} after {}/{} epochs, best test acc {:.4} (epoch {}), final test acc {:.4}",
        cfg.run_dir().display(),
        s.status,
        s.epochs_done,
        s.epochs,
        s.best_test_acc,
        s.best_epoch,
        s.final_test_acc
    );
    Ok(())
}

/// Takes the lock of run directory `dir`, or refuses in one line naming its live holder.
fn lock_run(dir: &Path) -> Result<lock::CellLock> {
    match lock::try_lock(&lock::lock_path(dir))? {
        Acquired::Got { lock, took_over } => {
            if let Some(gone) = took_over {
                eprintln!("{}: took over the lock of {gone} (gone)", dir.display());
            }
            Ok(lock)
        }
        Acquired::Held(owner) => bail!(
            "{}: running in {owner}; wait for it to finish or stop it (a signal checkpoints it), then rerun",
            dir.display()
        ),
    }
}

pub fn summary(a: SummaryArgs) -> Result<()> {
    let mut set = a.set;
    // (flag as typed, the override it stands for): an error names the flag.
    let flags: Vec<(String, String)> = [
        a.depth
            .map(|v| (format!("--depth {v}"), format!("model.depth={v}"))),
        a.norm.map(|v| {
            (
                format!("--norm {}", value_name(v)),
                format!("model.norm={}", value_name(v)),
            )
        }),
        a.shortcut.map(|v| {
            let v = value_name(v);
            (format!("--shortcut {v}"), format!("model.shortcut={v}"))
        }),
        a.width
            .map(|v| (format!("--width {v}"), format!("model.width={v}"))),
    ]
    .into_iter()
    .flatten()
    .collect();
    set.extend(flags.iter().map(|(_, ov)| ov.clone()));
    let cfg = load_config(a.config.as_deref(), &set).map_err(|e| {
        let msg = format!("{e:#}");
        let blamed = |ov: &String| format!("--set {ov}:");
        match flags.iter().find(|(_, ov)| msg.contains(&blamed(ov))) {
            Some((flag, ov)) => anyhow::anyhow!(msg.replacen(&blamed(ov), &format!("{flag}:"), 1)),
            None => e,
        }
    })?;
    for line in resnet::describe(&cfg.model, a.in_channels, a.classes)? {
        println!("{line}");
    }
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    ResNet::new(&vs.root(), &cfg.model, a.in_channels, a.classes)?;
    println!("parameters: {}", resnet::trainable_parameters(&vs));
    Ok(())
}

/// The name clap and the config files both use for a value (`a-bn`, `none`).
fn value_name(v: impl clap::ValueEnum) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

fn load_config(path: Option<&Path>, set: &[String]) -> Result<RunConfig> {
    match path {
        Some(p) => RunConfig::load(p, set),
        None => RunConfig::from_overrides(set),
    }
}
