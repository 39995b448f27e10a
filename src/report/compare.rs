//! `deepres compare A B`: per-epoch comparison of two runs (e.g. BN vs no-BN + τ).
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;

use crate::train::metrics::{self, EpochRow, EpochStatus};
use crate::train::run_dir;
use crate::util::atomic::write_atomic_with;

#[derive(Debug, Serialize)]
struct Row<'a> {
    epoch: i64,
    run: &'a str,
    lr: f64,
    train_loss: f64,
    train_acc: f64,
    test_loss: f64,
    test_acc: f64,
    tau: f64,
    epoch_seconds: f64,
    status: EpochStatus,
}

/// A run's label (its directory name) and rows.
pub fn load_run(dir: &Path) -> Result<(String, Vec<EpochRow>)> {
    let label = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    let rows = metrics::read(&dir.join(run_dir::METRICS_FILE))
        .with_context(|| format!("{}: not a finished or running deepres run", dir.display()))?;
    Ok((label, rows))
}

/// Writes the long-format comparison CSV (epoch, run, metrics...) and returns a Markdown table
/// with one line per epoch and the test accuracy of each run side by side.
pub fn compare(runs: &[&Path], out_csv: &Path) -> Result<String> {
    let loaded: Vec<(String, Vec<EpochRow>)> =
        runs.iter().map(|d| load_run(d)).collect::<Result<_>>()?;
    write_atomic_with(out_csv, |f| {
        let mut w = csv::Writer::from_writer(f);
        let max_epoch = loaded
            .iter()
            .flat_map(|(_, r)| r.iter().map(|r| r.epoch))
            .max()
            .unwrap_or(0);
        for e in 1..=max_epoch {
            for (label, rows) in &loaded {
                if let Some(r) = rows.iter().find(|r| r.epoch == e) {
                    w.serialize(Row {
                        epoch: e,
                        run: label,
                        lr: r.lr,
                        train_loss: r.train_loss,
                        train_acc: r.train_acc,
                        test_loss: r.test_loss,
                        test_acc: r.test_acc,
                        tau: r.tau,
                        epoch_seconds: r.epoch_seconds,
                        status: r.status,
                    })?;
                }
            }
        }
        w.flush()?;
        Ok(())
    })?;
    Ok(markdown(&loaded))
}

fn markdown(loaded: &[(String, Vec<EpochRow>)]) -> String {
    let mut s = String::from("| epoch |");
    for (label, _) in loaded {
        s += &format!(" {label} train loss | {label} test acc |");
    }
    s += "\n|---:|";
    for _ in loaded {
        s += "---:|---:|";
    }
    s += "\n";
    let max_epoch = loaded
        .iter()
        .flat_map(|(_, r)| r.iter().map(|r| r.epoch))
        .max()
        .unwrap_or(0);
    for e in 1..=max_epoch {
        s += &format!("| {e} |");
        for (_, rows) in loaded {
            match rows.iter().find(|r| r.epoch == e) {
                Some(r) if r.status == EpochStatus::Diverged => s += " diverged | diverged |",
                Some(r) => s += &format!(" {:.4} | {:.4} |", r.train_loss, r.test_acc),
                None => s += " – | – |",
            }
        }
        s += "\n";
    }
    s
}
