//! The learning rate a run trains with, epoch by epoch (metrics.csv's `lr` column: the rate
//! of each epoch's first step), against PyTorch's own schedulers (tests/oracles/
//! schedule_check.py: MultiStepLR, StepLR, CosineAnnealingLR, LinearLR warmup through SequentialLR,
//! stepped once per step). An off-by-one in the epoch a milestone falls on (the τ paper's
//! 0.1 → 0.01 at epoch 100 of 200, not 99 or 101) fails here.
use deepres::train;
use deepres::train::config::RunConfig;
use deepres::train::schedule::run_lr;

mod common;
use common::{python_oracle, serial, tiny_run};

/// Trains ResNet-8 on 96 synthetic images (3 steps of 32 per epoch) for 5 epochs under the
/// schedule `sets`, and checks its rates with the oracle given `oracle`'s arguments (kind, lr,
/// milestones, gamma, warmup epochs).
fn check(name: &str, sets: &[&str], oracle: [&str; 5]) {
    let tmp = tempfile::tempdir().unwrap();
    let mut all = vec![
        "data.synthetic_train=96",
        "data.synthetic_test=32",
        "train.batch_size=32",
        "train.eval_batch_size=32",
        "train.epochs=5",
    ];
    all.extend_from_slice(sets);
    let cfg = tiny_run::config(tmp.path(), name, &all);
    {
        let _g = serial();
        train::run(&cfg, &tiny_run::quiet()).unwrap();
    }
    let csv = cfg.run_dir().join("metrics.csv");
    let [kind, lr, milestones, gamma, warmup] = oracle;
    let csv = csv.to_str().unwrap();
    let out = python_oracle(
        "schedule_check.py",
        &[csv, kind, lr, "5", "3", milestones, gamma, warmup],
    );
    eprintln!("{name}:\n{out}"); // the rates side by side, with --nocapture
}

#[test]
fn multistep_drops_at_its_milestone_epochs_as_pytorch() {
    check(
        "multistep",
        &[
            "train.optimizer.lr=0.1",
            "train.schedule.kind=multistep",
            "train.schedule.milestones=[2, 4]",
            "train.schedule.gamma=0.1",
        ],
        ["multistep", "0.1", "2,4", "0.1", "0"],
    );
}

#[test]
fn cosine_follows_pytorch_at_each_epoch_start() {
    check(
        "cosine",
        &["train.optimizer.lr=0.1", "train.schedule.kind=cosine"],
        ["cosine", "0.1", "-", "0.1", "0"],
    );
}

#[test]
fn a_warmup_ramps_per_step_then_hands_over_as_pytorch() {
    check(
        "warmup",
        &[
            "train.optimizer.lr=0.1",
            "train.schedule.kind=multistep",
            "train.schedule.milestones=[3]",
            "train.schedule.gamma=0.2",
            "train.schedule.warmup_epochs=2",
        ],
        ["multistep", "0.1", "3", "0.2", "2"],
    );
}

/// Every step's rate ([`run_lr`], which the training loops call with the steps done), not only
/// each epoch's first: 4 epochs of 7 steps against PyTorch's schedulers stepped per step, for
/// cosine (which moves inside an epoch), multistep with a warmup, and cosine with a warmup.
#[test]
fn every_steps_rate_is_pytorchs() {
    let (epochs, steps) = (4i64, 7i64);
    for (sets, [kind, milestones, gamma, warmup]) in [
        (
            vec!["train.schedule.kind=cosine"],
            ["cosine", "-", "0.1", "0"],
        ),
        (
            vec![
                "train.schedule.kind=multistep",
                "train.schedule.milestones=[2, 3]",
                "train.schedule.gamma=0.5",
                "train.schedule.warmup_epochs=1",
            ],
            ["multistep", "2,3", "0.5", "1"],
        ),
        (
            vec![
                "train.schedule.kind=cosine",
                "train.schedule.warmup_epochs=1",
            ],
            ["cosine", "-", "0.1", "1"],
        ),
    ] {
        let mut all = vec![
            "train.optimizer.lr=0.2".to_string(),
            format!("train.epochs={epochs}"),
        ];
        all.extend(sets.iter().map(|s| s.to_string()));
        let cfg = RunConfig::from_overrides(&all).unwrap();
        let out = python_oracle(
            "schedule_check.py",
            &[
                "-",
                kind,
                "0.2",
                &epochs.to_string(),
                &steps.to_string(),
                milestones,
                gamma,
                warmup,
            ],
        );
        let want: Vec<f64> = out.lines().map(|l| l.parse().unwrap()).collect();
        assert_eq!(want.len(), (epochs * steps) as usize);
        for (i, &w) in want.iter().enumerate() {
            let (e, k) = (i as i64 / steps, i as i64 % steps);
            let got = run_lr(&cfg, e, k, steps);
            assert!(
                (got - w).abs() <= 1e-9 * w.abs(),
                "{sets:?}: epoch {e} step {k}: {got} vs PyTorch {w}"
            );
        }
    }
}

/// Marion et al.'s M8 and M9 (`train.lr_step`): the rate of each epoch is PyTorch's StepLR
/// (gamma 0.1, stepped once per epoch) at step sizes 1, 3 and 5 over 11 epochs.
#[test]
fn marion_lr_step_is_pytorchs_step_lr() {
    use deepres::papers::marion2022::TrainFig;
    let epochs = 11i64;
    for lr_step in [1i64, 3, 5] {
        let t = TrainFig {
            epochs,
            batch: 128,
            lr_step,
            limit_train: None,
            limit_test: None,
            inputs: Default::default(),
            cuda_graph: false,
        };
        let out = python_oracle(
            "schedule_check.py",
            &[
                "-",
                "step",
                "1.0",
                &epochs.to_string(),
                "1",
                &lr_step.to_string(),
                "0.1",
                "0",
            ],
        );
        let want: Vec<f64> = out.lines().map(|l| l.parse().unwrap()).collect();
        assert_eq!(want.len(), epochs as usize);
        for (e, &w) in want.iter().enumerate() {
            let got = t.lr_factor(e as i64);
            assert!(
                (got - w).abs() <= 1e-9 * w,
                "lr_step {lr_step}: epoch {e}: {got} vs PyTorch {w}"
            );
        }
    }
}
