//! Config parsing, overrides and the one-line errors for bad input.
use deepres::model::config::{Norm, TauLearnable, TauRule};
use deepres::train::config::RunConfig;

fn err(yaml: &str, sets: &[&str]) -> String {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let e = RunConfig::from_yaml_str(yaml, "exp.yaml", &sets).unwrap_err();
    let msg = format!("{e:#}");
    assert!(!msg.contains('\n'), "error must be one line: {msg}");
    msg
}

#[test]
fn defaults_are_the_tau_papers_recipe() {
    let c = RunConfig::from_yaml_str("", "x", &[]).unwrap();
    assert_eq!(c.model.depth, 20);
    assert_eq!(c.train.epochs, 200);
    assert_eq!(c.train.batch_size, 128);
    assert_eq!(c.train.optimizer.lr, 0.1);
    assert_eq!(c.train.optimizer.momentum, 0.9);
    assert_eq!(c.train.optimizer.weight_decay, 1e-4);
    assert_eq!(c.train.schedule.milestones, vec![100, 150]);
    assert_eq!(c.train.schedule.gamma, 0.1);
    assert_eq!(c.data.augment.crop_padding, 4);
    assert!(c.data.augment.hflip);
    assert_eq!(c.seed, 0);
}

#[test]
fn yaml_and_dotted_overrides() {
    let yaml =
        "name: x\nmodel:\n  depth: 56\n  norm: none\n  tau: {rule: inv_sqrt, learnable: shared}\n";
    let c = RunConfig::from_yaml_str(
        yaml,
        "x",
        &[
            "model.depth=110".into(),
            "train.optimizer.lr=0.05".into(),
            "train.schedule.milestones=[2, 4]".into(),
        ],
    )
    .unwrap();
    assert_eq!(c.model.depth, 110);
    assert_eq!(c.model.norm, Norm::None);
    assert_eq!(c.model.tau.rule, TauRule::InvSqrt);
    assert_eq!(c.model.tau.learnable, TauLearnable::Shared);
    assert_eq!(c.train.optimizer.lr, 0.05);
    assert_eq!(c.train.schedule.milestones, vec![2, 4]);
    // the resolved config round-trips through YAML
    let again = RunConfig::from_yaml_str(&c.to_yaml(), "y", &[]).unwrap();
    assert_eq!(again, c);
}

#[test]
fn unknown_key_names_file_key_and_accepted_keys() {
    let m = err("model:\n  depht: 20\n", &[]);
    assert!(m.starts_with("exp.yaml: "), "{m}");
    assert!(
        m.contains("model") && m.contains("depht") && m.contains("depth"),
        "{m}"
    );
    let m = err("", &["train.optimzer.lr=0.1"]);
    assert!(m.contains("optimzer") && m.contains("optimizer"), "{m}");
}

#[test]
fn wrong_type_and_unknown_values() {
    let m = err("model:\n  depth: deep\n", &[]);
    assert!(m.contains("model.depth"), "{m}");
    let m = err("model:\n  tau: {rule: sqrt}\n", &[]);
    assert!(
        m.contains("model.tau.rule") && m.contains("inv_sqrt"),
        "{m}"
    );
    let m = err("data: {name: imagenet}\n", &[]);
    assert!(
        m.contains("data.name") && m.contains("cifar10") && m.contains("fashion-mnist"),
        "{m}"
    );
    let m = err("model: {norm: layer}\n", &[]);
    assert!(m.contains("model.norm") && m.contains("bn"), "{m}");
}

#[test]
fn invalid_values() {
    let m = err("model: {depth: 21}\n", &[]);
    assert!(
        m.contains("model.depth") && m.contains("6n+2") && m.contains("20"),
        "{m}"
    );
    for lr in ["0", "-0.1", ".nan"] {
        let m = err("", &[&format!("train.optimizer.lr={lr}")]);
        assert!(
            m.contains("train.optimizer.lr") && m.contains("positive"),
            "{m}"
        );
    }
    let m = err("", &["device=tpu"]);
    assert!(m.contains("device") && m.contains("cuda:N"), "{m}");
    let m = err("", &["train.epochs=0"]);
    assert!(m.contains("train.epochs"), "{m}");
    let m = err("", &["train.schedule.milestones=[150, 100]"]);
    assert!(m.contains("milestones"), "{m}");
    let m = err("", &["model.norm=none", "model.shortcut=b"]);
    assert!(m.contains("model.shortcut"), "{m}");
    let m = err("", &["name=a/b"]);
    assert!(m.contains("name"), "{m}");
    let m = err("", &["modeldepth"]);
    assert!(m.contains("key=value"), "{m}");
}

#[test]
fn missing_file_is_named() {
    let e = RunConfig::load(std::path::Path::new("/nonexistent/exp.yaml"), &[]).unwrap_err();
    assert!(format!("{e:#}").contains("/nonexistent/exp.yaml"));
}

/// `train.checkpoint_minutes` is minutes: 10 by default (a checkpoint every 600 s of an
/// epoch), 0.5 is 30 s; 0, or `train.checkpoint: false`, turns the periodic checkpoint off.
#[test]
fn checkpoint_minutes_are_minutes_and_zero_is_off() {
    use std::time::Duration;
    let every = |sets: &[&str]| {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        RunConfig::from_overrides(&sets)
            .unwrap()
            .train
            .checkpoint_interval()
    };
    assert_eq!(every(&[]), Some(Duration::from_secs(600)));
    assert_eq!(
        every(&["train.checkpoint_minutes=0.5"]),
        Some(Duration::from_secs(30))
    );
    assert_eq!(every(&["train.checkpoint_minutes=0"]), None);
    assert_eq!(every(&["train.checkpoint=false"]), None);
}
