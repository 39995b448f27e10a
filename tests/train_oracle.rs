//! `deepres train` end to end against the τ paper's training loop in PyTorch: a whole run of
//! `train::run` (the model it builds from its config, the optimizer's parameter groups, the
//! learning rate each step gets, the train-mode forward, the loss and the SGD update; BN + τ,
//! and no BN with the shared learnable τ) starts from weights written here
//! (`train.init_from`) and its checkpoint after 6 epochs is compared with the paper's own ResNet and torch.optim.SGD (tests/oracles/tau_paper.py,
//! `sgd`), given the same images and the rates of the paper's schedule written out here:
//! 0.1 divided by 10 at epochs 2 and 4 (MultiStepLR). One batch is the whole training set, so
//! the order of the images in it cannot matter (batch statistics, mean loss). Weight decay
//! is 5·10⁻³ so that a missing or doubled decay moves the weights far beyond the tolerance,
//! as a rate off by one epoch does (tried: 31 of 33 tensors then differ). deepres trains in
//! float32, the oracle in float64: the tolerance 10⁻⁶ + 10⁻⁵·|x| is ten times or more the
//! largest differences seen (1.3·10⁻⁷ on a weight, 3.7·10⁻⁷ on a loss of about 2.3).
use deepres::data::{self, Augment, DeviceData};
use deepres::model::ResNet;
use deepres::train;
use deepres::train::config::RunConfig;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

mod common;
use common::{python_oracle, serial, tiny_run};

const TAU: f64 = 0.37;
const IMAGES: i64 = 64;

/// Table Z1's BN + τ block (τ fixed).
#[test]
fn a_bn_tau_run_trains_as_the_papers_pytorch_loop() {
    check("bn", &["model.norm=bn", "model.shortcut=a-bn"]);
}

/// Table Z2's block without normalization: scalar biases and one shared learnable τ, both at
/// lr/10, τ's gradient divided by the number of blocks.
#[test]
fn a_no_bn_learned_tau_run_trains_as_the_papers_pytorch_loop() {
    check(
        "nobn",
        &[
            "model.norm=none",
            "model.shortcut=a",
            "model.tau.learnable=shared",
        ],
    );
}

/// The run: the tiny run of the training tests with `model`'s settings, τ fixed at [`TAU`], no
/// augmentation, one batch of all [`IMAGES`] per epoch, 6 epochs of the multistep schedule,
/// starting from the weights in `init`.
fn config(dir: &std::path::Path, model: &[&str], init: &std::path::Path) -> RunConfig {
    let mut sets: Vec<String> = model.iter().map(|s| s.to_string()).collect();
    sets.extend([
        format!("data.synthetic_train={IMAGES}"),
        format!("train.batch_size={IMAGES}"),
        format!("model.tau.value={TAU}"),
        format!("train.init_from={}", init.display()),
    ]);
    sets.extend(
        [
            "data.augment.crop_padding=0",
            "data.augment.hflip=false",
            "model.tau.rule=fixed",
            "train.epochs=6",
            "train.optimizer.lr=0.1",
            "train.optimizer.weight_decay=0.005",
            "train.schedule.kind=multistep",
            "train.schedule.milestones=[2, 4]",
            "train.schedule.gamma=0.1",
        ]
        .map(String::from),
    );
    tiny_run::config(
        dir,
        "oracle",
        &sets.iter().map(String::as_str).collect::<Vec<_>>(),
    )
}

/// Trains the run of the paper's block `kind` (tau_paper.py's name) with the model settings
/// `model`, and compares it with the oracle.
fn check(kind: &str, model: &[&str]) {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let init = tmp.path().join("init.safetensors");
    let cfg = config(tmp.path(), model, &init);
    // The starting weights: drawn here, written, and given to both sides.
    tch::manual_seed(21);
    let vs = VarStore::new(Device::Cpu);
    let _net = ResNet::new(&vs.root(), &cfg.model, 3, 10).unwrap();
    let start: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    Tensor::write_safetensors(&start, &init).unwrap();
    train::run(&cfg, &tiny_run::quiet()).unwrap();

    // The training set as the run sees it (normalized), in one batch.
    let split = data::load(&cfg.data.spec()).unwrap();
    let train_data = DeviceData::new(&split.train, &split.mean, &split.std, Device::Cpu);
    let (x, y) = train_data
        .train_batches(IMAGES, 0, Augment::NONE)
        .next()
        .unwrap();
    assert_eq!(x.size()[0], IMAGES);
    let run = cfg.run_dir();
    let losses: Vec<f64> = tiny_run::losses(&run).iter().map(|r| r.2).collect();
    assert_eq!(losses.len(), 6);
    let mut t: Vec<(String, Tensor)> = start
        .iter()
        .map(|(k, v)| (format!("init.{k}"), v.to_kind(Kind::Double)))
        .collect();
    for (step, loss) in losses.iter().enumerate() {
        t.push((format!("x.{step}"), x.to_kind(Kind::Double)));
        t.push((format!("y.{step}"), y.shallow_clone()));
        t.push((format!("loss.{step}"), Tensor::from_slice(&[*loss])));
    }
    let ckpt = Tensor::read_safetensors(run.join("checkpoint.safetensors")).unwrap();
    let trainable: Vec<String> = (vs.variables().into_iter())
        .filter(|(_, v)| v.requires_grad())
        .map(|(k, _)| k)
        .collect();
    for (name, v) in ckpt {
        if let Some(k) = name
            .strip_prefix("model.")
            .filter(|k| trainable.iter().any(|n| n == k))
        {
            t.push((format!("final.{k}"), v.to_kind(Kind::Double)));
        }
    }
    assert_eq!(
        t.iter().filter(|(k, _)| k.starts_with("final.")).count(),
        trainable.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let spec = serde_json::json!({
        "kind": kind, "depth": 8, "tau": TAU, "in_channels": 3, "classes": 10,
        "lr": [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], "momentum": 0.9, "weight_decay": 0.005,
        "atol": 1e-6, "rtol": 1e-5,
    });
    std::fs::write(dir.path().join("spec.json"), spec.to_string()).unwrap();
    Tensor::write_safetensors(&t, dir.path().join("tensors.safetensors")).unwrap();
    let out = python_oracle("tau_paper.py", &["sgd", dir.path().to_str().unwrap()]);
    eprintln!("{}", out.trim());
}
