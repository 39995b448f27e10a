//! Marion et al.'s two models (arXiv:2206.06929; docs/marion2022.md) against the authors' own
//! forward pass, rewritten in PyTorch from their models.py (tests/oracles/marion_models.py):
//! deepres's weights A, W, V, biases and B loaded into their FullResNet and SimpleResNet, in
//! float64, the last hidden state h_L and the output B h_L equal to 1e-10 for 3 models of depth
//! 7 and width 5 at β = 0.3 (their scale 1/7^0.3 computed on their side). A block that applied
//! ReLU after V instead of before, a bias outside the scale, or α_L = (L + 1)^-β fails. And
//! the metrics of Figures M1–M5 at their level against the authors' measurement loop
//! (tests/oracles/marion_scaling.py), statistically.
use deepres::model::full_resnet::FullResNet;
use deepres::model::marion_net::MarionNet;
use deepres::model::scale::residual_scale;
use deepres::model::simple_resnet::SimpleResNet;
use deepres::model::weight_init::LayerInit;
use tch::{Device, Kind, Tensor};

mod common;
use common::{python_oracle, serial};

const MODELS: i64 = 3;
const DEPTH: i64 = 7;
const WIDTH: i64 = 5;
const BETA: f64 = 0.3;

/// Runs `net` on the oracle's inputs and the oracle on `net`'s `weights` (as they are named
/// there), the inputs and deepres's h_L and output, for `model`.
fn check(model: &str, net: &MarionNet, weights: Vec<(&str, Tensor)>) {
    let x = inputs();
    let h = net.hidden(&net.embed(&x), &alpha(), None);
    let out = net.output(&h);
    let mut tensors = weights;
    tensors.extend([("x", x), ("h_L", h), ("out", out)]);
    let dir = tempfile::tempdir().unwrap();
    let spec = serde_json::json!({"model": model, "depth": DEPTH, "scaling": BETA, "atol": 1e-10});
    std::fs::write(dir.path().join("spec.json"), spec.to_string()).unwrap();
    Tensor::write_safetensors(&tensors, dir.path().join("tensors.safetensors")).unwrap();
    let out = python_oracle("marion_models.py", &[dir.path().to_str().unwrap()]);
    eprintln!("{out}");
}

/// α_L = L^-β as deepres computes it, in float64 (the models' own scalar is its float32
/// rounding, which would differ from the authors' float64 at 1e-8).
fn alpha() -> Tensor {
    Tensor::from(residual_scale(DEPTH, BETA))
}

fn double(t: &Tensor) -> Tensor {
    t.to_kind(Kind::Double)
}

/// Inputs x `[n, 4]` away from zero, so that every ReLU has both signs somewhere.
fn inputs() -> Tensor {
    Tensor::randn([6, 4], (Kind::Double, Device::Cpu)) * 2.0
}

#[test]
fn full_resnet_is_the_authors_forward_pass() {
    let _g = serial();
    tch::manual_seed(3);
    let m = FullResNet::new(MODELS, DEPTH, WIDTH, 4, 3, LayerInit::Iid, Device::Cpu);
    let m = FullResNet {
        a: double(&m.a),
        w: double(&m.w),
        v: double(&m.v),
        b: double(&m.b),
    };
    let weights = vec![
        ("A", m.a.shallow_clone()),
        ("W", m.w.shallow_clone()),
        ("V", m.v.shallow_clone()),
        ("B", m.b.shallow_clone()),
    ];
    check("full", &MarionNet::Full(m), weights);
}

/// With biases b_k drawn away from zero (the fBm init's trainable biases, zero at
/// initialization, move in training): h_{k+1} = h_k + α_L (V_{k+1} relu(h_k) + b_{k+1}).
#[test]
fn simple_resnet_with_biases_is_the_authors_forward_pass() {
    let _g = serial();
    tch::manual_seed(5);
    let m = SimpleResNet::new(
        MODELS,
        DEPTH,
        WIDTH,
        4,
        3,
        LayerInit::Fbm { hurst: 0.7 },
        Device::Cpu,
    );
    let bias = Tensor::randn([MODELS, DEPTH, WIDTH], (Kind::Double, Device::Cpu)) * 0.5;
    let m = SimpleResNet {
        a: double(&m.a),
        v: double(&m.v),
        bias,
        bias_on: None,
        b: double(&m.b),
    };
    let weights = vec![
        ("A", m.a.shallow_clone()),
        ("V", m.v.shallow_clone()),
        ("bias", m.bias.shallow_clone()),
        ("B", m.b.shallow_clone()),
    ];
    check("simple", &MarionNet::Simple(m), weights);
}

/// Mean and standard error of the mean of `v`.
fn mean_se(v: &[f64]) -> (f64, f64) {
    let e = deepres::report::stats::Estimate::of(v).unwrap();
    (e.mean, e.std / (e.n as f64).sqrt())
}

/// Figures M1–M5's metrics at their level, not only their slopes: deepres's forward and
/// backward metrics of 200 i.i.d. FullResNets (L = 100, d = 40, inputs of dimension 64, as
/// the figures) against the authors' own measurement loop on their own models
/// (tests/oracles/marion_scaling.py, 200 other random models), at β = 1/2 (about 0.8) and
/// β = 1 (about 0.07): the means agree within 4 standard errors of their difference. A metric
/// normalized by the wrong norm, inputs of another law or a scale 2·L^-β fails.
#[test]
fn scaling_metrics_are_the_authors_at_their_level() {
    use deepres::model::marion_net::MarionModel;
    use deepres::papers::marion2022::scaling::{run, ScalingSpec};
    let _g = serial();
    let betas = [0.5, 1.0];
    let spec = ScalingSpec {
        model: MarionModel::Full,
        inits: vec![LayerInit::Iid],
        depths: vec![100],
        betas: betas.to_vec(),
        width: 40,
        input_dim: 64,
        output_dim: 1,
        models: 200,
        inputs: 1,
        chunk: 100,
        seed: 0,
        device: Device::Cpu,
    };
    let rows = run(&spec, None, true).unwrap();
    let out = python_oracle(
        "marion_scaling.py",
        &["100", "40", "64", "200", "1", "0.5", "1.0"],
    );
    for (line, beta) in out.lines().zip(betas) {
        let v: Vec<f64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
        let ours = |f: fn(&deepres::papers::marion2022::scaling::ScalingRow) -> f64| {
            let vals: Vec<f64> = rows.iter().filter(|r| r.beta == beta).map(f).collect();
            assert_eq!(vals.len(), 200);
            mean_se(&vals)
        };
        for (what, (m, se), (tm, tse)) in [
            ("forward", ours(|r| r.forward), (v[1], v[2])),
            ("backward", ours(|r| r.backward), (v[3], v[4])),
        ] {
            let z = (m - tm) / (se * se + tse * tse).sqrt();
            eprintln!("β = {beta}, {what}: deepres {m:.4} ± {se:.4}, authors {tm:.4} ± {tse:.4}, z = {z:.2}");
            assert!(
                z.abs() < 4.0,
                "β = {beta}, {what}: {m} ± {se} against {tm} ± {tse}"
            );
        }
    }
}
