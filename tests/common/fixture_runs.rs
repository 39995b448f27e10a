//! Fixture run directories as a training run leaves them (config.yaml, metrics.csv,
//! summary.json), for the report tests: no training.
use std::path::Path;

use deepres::sweep::grid::{Cell, ReportSpec};
use deepres::sweep::report::ReportContext;
use deepres::train::config::RunConfig;
use deepres::train::metrics::{self, EpochStatus};
use deepres::train::run_dir;
use deepres::train::{RunStatus, Summary};

pub const EPOCHS: i64 = 3;

pub fn cell(
    sweep: &Path,
    index: usize,
    variant: &str,
    values: &[(&str, serde_yaml::Value)],
    seed: u64,
) -> Cell {
    let vals: Vec<String> = values
        .iter()
        .map(|(_, v)| deepres::sweep::report::value_label(v))
        .collect();
    let name = format!("{variant}_{}_s{seed}", vals.join("_"));
    let mut config = RunConfig {
        name: name.clone(),
        out_dir: sweep.to_path_buf(),
        seed,
        ..Default::default()
    };
    config.train.epochs = EPOCHS;
    for (k, v) in values {
        if *k == "model.depth" {
            config.model.depth = v.as_i64().unwrap();
        }
    }
    Cell {
        index,
        name,
        variant: Some(variant.to_string()),
        values: values
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        seed,
        config,
    }
}

/// What a fixture run did.
pub enum Run<'a> {
    /// Test error (%) per epoch, all epochs done.
    Finished(&'a [f64]),
    /// Test error per epoch, then NaN loss at the next epoch.
    Diverged(&'a [f64]),
    /// Test error per epoch so far, not finished.
    Running(&'a [f64]),
}

/// Writes config.yaml, metrics.csv and summary.json as a training run would.
pub fn write_run(c: &Cell, run: Run) {
    let dir = c.dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.yaml"), c.config.to_yaml()).unwrap();
    let (errs, status, diverged) = match run {
        Run::Finished(e) => (e, RunStatus::Finished, false),
        Run::Diverged(e) => (e, RunStatus::Diverged, true),
        Run::Running(e) => (e, RunStatus::Running, false),
    };
    let row = |epoch: i64, loss: f64, acc: f64, status: EpochStatus| metrics::EpochRow {
        epoch,
        lr: 0.1,
        train_loss: loss,
        train_acc: acc,
        test_loss: loss,
        test_acc: acc,
        grad_norm: 1.0,
        tau: 1.0,
        epoch_seconds: 1.0,
        images_per_second: 100.0,
        status,
    };
    let path = dir.join(run_dir::METRICS_FILE);
    for (i, e) in errs.iter().enumerate() {
        metrics::append(
            &path,
            &row(
                i as i64 + 1,
                2.0 / (i as f64 + 1.0),
                1.0 - e / 100.0,
                EpochStatus::Ok,
            ),
        )
        .unwrap();
    }
    let mut done = errs.len() as i64;
    if diverged {
        done += 1;
        metrics::append(&path, &row(done, f64::NAN, 0.1, EpochStatus::Diverged)).unwrap();
    }
    let best = errs.iter().map(|e| 1.0 - e / 100.0).fold(0.0, f64::max);
    let summary = Summary {
        name: c.name.clone(),
        status,
        epochs_done: done,
        epochs: EPOCHS,
        best_test_acc: best,
        best_epoch: 1,
        final_test_acc: if diverged {
            0.1
        } else {
            errs.last().map_or(f64::NAN, |e| 1.0 - e / 100.0)
        },
        final_train_loss: if diverged { f64::NAN } else { 1.0 },
        diverged_at_epoch: diverged.then_some(done),
        parameters: 1000,
        tau0: 1.0,
        device: "cpu".into(),
        train_seconds: 3.0,
        input_mean: vec![],
        input_std: vec![],
    };
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&summary).unwrap(),
    )
    .unwrap();
}

pub fn ctx(
    dir: &Path,
    name: &str,
    spec: ReportSpec,
    keys: &[&str],
    variants: &[&str],
) -> ReportContext {
    ReportContext {
        name: name.into(),
        dir: dir.to_path_buf(),
        spec,
        keys: keys.iter().map(|s| s.to_string()).collect(),
        variants: variants.iter().map(|s| s.to_string()).collect(),
        scale: None,
        expect: Vec::new(),
    }
}

pub fn depth(d: i64) -> serde_yaml::Value {
    serde_yaml::Value::from(d)
}
