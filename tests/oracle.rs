//! The τ paper's blocks and its optimizer against PyTorch itself: deepres's ResNet-20 (BN +
//! fixed τ, the same with option-B projection shortcuts, no BN with the shared learnable τ,
//! Fixup) with every parameter and statistic
//! moved off its initial value, and its SGD over a few steps, are written to a fixture; the
//! oracle (tests/oracles/tau_paper.py, run in the project's venv) loads them into the papers'
//! own model classes and optimizer setup (Zhang et al. 2022, arXiv:1903.07120, code
//! dayu11/tau-ResNet; Fixup, arXiv:1901.09321, code hongyi-zhang/Fixup) and compares.
//!
//! Why this catches a wrong line: with τ = 0.37 and nonzero scalar biases, `(1−τ)·skip +
//! τ·branch`, `skip + τ²·branch`, τ before bn2, a bias on the wrong side of τ or of a conv,
//! a wrong lr multiplier or a missing 1/L on τ's gradient each change the logits, a gradient
//! or a parameter after the steps far beyond the tolerance.
use std::path::Path;

use deepres::model::config::{InitScheme, ModelConfig, Norm, Shortcut, TauConfig};
use deepres::model::config::{TauLearnable, TauRule};
use deepres::model::ResNet;
use deepres::train::config::SgdConfig;
use deepres::train::sgd::Sgd;
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Reduction, Tensor};

mod common;
use common::{python_oracle, serial};

/// τ of the fixed and shared variants, Fixup's multipliers (around it).
const TAU: f64 = 0.37;
const DEPTH: i64 = 20;
const CLASSES: i64 = 10;
const BATCH: i64 = 8;

/// The three block families, and BN + τ with option-B shortcuts, and the name the oracle
/// gives each.
fn variants() -> [(&'static str, ModelConfig); 4] {
    let fixed = TauConfig {
        rule: TauRule::Fixed,
        value: TAU,
        ..TauConfig::default()
    };
    let model = |norm, shortcut, init, tau| ModelConfig {
        depth: DEPTH,
        norm,
        shortcut,
        init,
        tau,
        ..ModelConfig::default()
    };
    let shared = TauConfig {
        learnable: TauLearnable::Shared,
        ..fixed
    };
    [
        (
            "bn",
            model(Norm::Bn, Shortcut::ABn, InitScheme::Kaiming, fixed),
        ),
        (
            "bn_b",
            model(Norm::Bn, Shortcut::B, InitScheme::Kaiming, fixed),
        ),
        (
            "nobn",
            model(Norm::None, Shortcut::A, InitScheme::Kaiming, shared),
        ),
        (
            "fixup",
            model(
                Norm::None,
                Shortcut::A,
                InitScheme::Fixup,
                TauConfig::default(),
            ),
        ),
    ]
}

/// Builds the net and moves every tensor off its initialization, so that no term can hide
/// behind a zero or a one: scalar biases in ±0.3, Fixup's multipliers 0.37 ± 0.05, BN's γ, β
/// and running statistics away from 1 and 0, and the (for Fixup zero) weights perturbed.
fn perturbed(cfg: &ModelConfig, seed: i64) -> (VarStore, ResNet) {
    tch::manual_seed(seed);
    let mut vs = VarStore::new(Device::Cpu);
    let net = ResNet::new(&vs.root(), cfg, 3, CLASSES).unwrap();
    // float64 on both sides, so that the tolerance measures the algorithm, not the order of
    // float32 sums (in float32, relu kinks and cancellations inside BN's backward leave
    // 1e-5-sized differences in a few weight gradients on some batches).
    vs.double();
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (name, t) in &mut vars {
            let noise = t.randn_like();
            let last = name.rsplit('.').next().unwrap();
            let new = match last {
                "tau" => t.full_like(TAU),
                "scale" => noise * 0.05 + TAU,
                "running_var" => noise.abs() * 0.5 + 0.5,
                _ if t.numel() == 1 => (noise.rand_like() - 0.5) * 0.6,
                "weight" if name.contains("bn") => noise * 0.2 + 1.0,
                "bias" | "running_mean" if name.contains("bn") => noise * 0.2,
                _ => &*t + noise * 0.02,
            };
            t.copy_(&new);
        }
    });
    (vs, net)
}

fn named(prefix: &str, vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(k, t)| (format!("{prefix}.{k}"), t.detach().copy()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn batch(seed: i64) -> (Tensor, Tensor) {
    tch::manual_seed(seed);
    let x = Tensor::randn([BATCH, 3, 32, 32], (Kind::Double, Device::Cpu));
    let y = Tensor::randint(CLASSES, [BATCH], (Kind::Int64, Device::Cpu));
    (x, y)
}

fn write_fixture(dir: &Path, spec: serde_json::Value, tensors: Vec<(String, Tensor)>) {
    std::fs::write(dir.join("spec.json"), spec.to_string()).unwrap();
    Tensor::write_safetensors(&tensors, dir.join("tensors.safetensors")).unwrap();
}

fn spec(kind: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut s = serde_json::json!({
        "kind": kind, "depth": DEPTH, "tau": TAU, "in_channels": 3, "classes": CLASSES,
    });
    s.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    s
}

/// Train mode (batch statistics, running statistics updated) with nonzero biases and
/// τ = 0.37: the logits, the loss, every gradient (τ's and the multipliers' included) and the
/// running statistics after the step equal PyTorch's for the papers' own modules; and eval mode
/// (the running statistics, as every recorded test error uses them): the logits.
#[test]
fn blocks_match_the_papers_pytorch_modules_in_train_and_eval_mode() {
    let _g = serial();
    for (kind, cfg) in variants() {
        let (vs, net) = perturbed(&cfg, 7);
        let init = named("init", &vs);
        let (x, y) = batch(11);
        // Eval mode first, while the running statistics are still the perturbed ones.
        let eval_logits = tch::no_grad(|| net.forward_t(&x, false));
        let logits = net.forward_t(&x, true);
        let loss = logits.cross_entropy_loss::<Tensor>(&y, None, Reduction::Mean, -100, 0.0);
        loss.backward();
        let mut t = init;
        t.push(("eval_logits".into(), eval_logits));
        t.push(("x".into(), x));
        t.push(("y".into(), y));
        t.push(("logits".into(), logits.detach()));
        t.push(("loss".into(), loss.detach().reshape([1])));
        for (k, v) in vs.variables() {
            if v.requires_grad() {
                t.push((format!("grad.{k}"), v.grad().copy()));
            } else {
                t.push((format!("after.{k}"), v.detach().copy()));
            }
        }
        let dir = tempfile::tempdir().unwrap();
        write_fixture(
            dir.path(),
            spec(kind, serde_json::json!({"atol": 1e-10, "rtol": 1e-9})),
            t,
        );
        let out = python_oracle("tau_paper.py", &["forward", dir.path().to_str().unwrap()]);
        eprintln!("{kind}: {}", out.trim());
    }
}

/// Five steps of deepres's SGD (momentum 0.9, weight decay 5e-4, the learning rate divided by
/// 10 after 3 steps) against torch.optim.SGD set up as each paper's training script does it.
#[test]
fn sgd_matches_torch_optim_sgd_with_the_papers_parameter_groups() {
    let _g = serial();
    let lrs = [0.1, 0.1, 0.1, 0.01, 0.01];
    let cfg_sgd = SgdConfig {
        lr: lrs[0],
        momentum: 0.9,
        weight_decay: 5e-4,
        nesterov: false,
        scalar_lr_mult: 0.1,
    };
    for (kind, cfg) in variants() {
        let (vs, net) = perturbed(&cfg, 3);
        let mut t = named("init", &vs);
        let mut opt = Sgd::new(&vs, cfg_sgd, net.num_blocks);
        for (step, &lr) in lrs.iter().enumerate() {
            let (x, y) = batch(100 + step as i64);
            let loss = net.forward_t(&x, true).cross_entropy_loss::<Tensor>(
                &y,
                None,
                Reduction::Mean,
                -100,
                0.0,
            );
            opt.backward(&loss);
            opt.step(lr);
            t.push((format!("x.{step}"), x));
            t.push((format!("y.{step}"), y));
            t.push((format!("loss.{step}"), loss.detach().reshape([1])));
        }
        let vars = vs.variables();
        let trainable = vars.iter().filter(|(_, v)| v.requires_grad());
        t.extend(trainable.map(|(k, v)| (format!("final.{k}"), v.detach().copy())));
        let dir = tempfile::tempdir().unwrap();
        let extra = serde_json::json!({
            "lr": lrs, "momentum": cfg_sgd.momentum, "weight_decay": cfg_sgd.weight_decay,
            "atol": 1e-10, "rtol": 1e-9,
        });
        write_fixture(dir.path(), spec(kind, extra), t);
        let out = python_oracle("tau_paper.py", &["sgd", dir.path().to_str().unwrap()]);
        eprintln!("{kind}: {}", out.trim());
    }
}
