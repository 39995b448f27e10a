//! The tiny training run of tests/train.rs and tests/diagnostics.rs, and reading its curve.
use deepres::train::config::RunConfig;
use deepres::train::{self, metrics, RunOptions};
use std::path::Path;

/// The tiny run of the training tests: ResNet-8 on 768 synthetic images, 3 epochs of 12 steps,
/// cosine schedule, named `name` under `dir`, then the `extra` overrides.
pub fn config(dir: &Path, name: &str, extra: &[&str]) -> RunConfig {
    let mut sets: Vec<String> = vec![
        format!("name={name}"),
        format!("out_dir={}", dir.display()),
        "device=cpu".into(),
        "data.name=synthetic".into(),
        "data.synthetic_train=768".into(),
        "data.synthetic_test=256".into(),
        "model.depth=8".into(),
        "train.epochs=3".into(),
        "train.batch_size=64".into(),
        "train.eval_batch_size=256".into(),
        "train.optimizer.lr=0.05".into(),
        "train.schedule.kind=cosine".into(),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    RunConfig::from_overrides(&sets).unwrap()
}

/// Trains `cfg` one epoch, stops, then resumes it to the end.
pub fn stopped_then_resumed(cfg: &RunConfig) {
    let stop = RunOptions {
        stop_after: Some(1),
        ..quiet()
    };
    train::run(cfg, &stop).unwrap();
    let resume = RunOptions {
        resume: true,
        ..quiet()
    };
    train::run(cfg, &resume).unwrap();
}

/// Run options without progress output.
pub fn quiet() -> RunOptions {
    RunOptions {
        quiet: true,
        ..Default::default()
    }
}

/// (epoch, lr, train_loss, train_acc, test_loss, test_acc, grad_norm, tau) per epoch.
pub type Curve = Vec<(i64, f64, f64, f64, f64, f64, f64, f64)>;

/// The curve of a run directory's metrics.csv.
pub fn losses(dir: &Path) -> Curve {
    metrics::read(&dir.join("metrics.csv"))
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.epoch,
                r.lr,
                r.train_loss,
                r.train_acc,
                r.test_loss,
                r.test_acc,
                r.grad_norm,
                r.tau,
            )
        })
        .collect()
}
