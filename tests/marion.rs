//! Marion et al., "Scaling ResNets in the Large-depth Regime" (arXiv:2206.06929;
//! docs/marion2022.md): the layer-correlated initializations match their laws over
//! many draws (tolerances that a wrong generator fails), the batched models' hand-written
//! backward pass equals autograd, and the scaling measurement shows the i.i.d. picture.
use deepres::model::full_resnet::{depth_scale, FullResNet};
use deepres::model::marion_net::{MarionModel, MarionNet, MarionShape};
use deepres::model::weight_init::{
    fbm_paths, layer_weights, smooth_increment_std, smooth_paths, LayerInit,
};
use deepres::papers::marion2022::{
    self as marion, train_classifiers, Figure, FigureSpec, TrainFig, TrainRun, TrainSetup, Training,
};
use deepres::train::adam::BatchedAdam;
use tch::{Device, Kind, Tensor};

mod common;
/// Tests that draw from torch's global RNG run one at a time (seeded, reproducible).
use common::serial as lock;

/// One training run of a figure: layer init, residual scale exponent β, learning rate.
fn run(init: LayerInit, beta: f64, lr: f64) -> TrainRun {
    TrainRun { init, beta, lr }
}

fn f(t: &Tensor) -> f64 {
    t.to_kind(Kind::Double).double_value(&[])
}

/// Mean square of the increments of paths `[n, L+1]` along dim 1.
fn increment_var(paths: &Tensor) -> f64 {
    let l = paths.size()[1] - 1;
    let d = paths.narrow(1, 1, l) - paths.narrow(1, 0, l);
    f(&(&d * &d).mean(Kind::Double))
}

/// Correlation of x_k and x_{k+lag} over all sequences `[n, L]` (zero-mean law).
fn lag_corr(x: &Tensor, lag: i64) -> f64 {
    let l = x.size()[1];
    let a = x.narrow(1, 0, l - lag).to_kind(Kind::Double);
    let b = x.narrow(1, lag, l - lag).to_kind(Kind::Double);
    f(&(&a * &b).mean(Kind::Double)) / f(&(x.to_kind(Kind::Double).square().mean(Kind::Double)))
}

fn increments(paths: &Tensor) -> Tensor {
    let l = paths.size()[1] - 1;
    paths.narrow(1, 1, l) - paths.narrow(1, 0, l)
}

#[test]
fn fbm_increment_variance_scales_like_step_to_the_2h() {
    let _g = lock();
    tch::manual_seed(1);
    for h in [0.2, 0.5, 0.8] {
        let v50 = increment_var(&fbm_paths(4000, 50, h, Device::Cpu));
        let v400 = increment_var(&fbm_paths(500, 400, h, Device::Cpu));
        // Var(B(t+1/L) − B(t)) = (1/L)^{2H}.
        for (v, l) in [(v50, 50.0f64), (v400, 400.0)] {
            let want = l.powf(-2.0 * h);
            assert!(
                (v / want - 1.0).abs() < 0.03,
                "H={h} L={l}: var {v} vs {want}"
            );
        }
        let ratio = v50 / v400;
        let want = 8f64.powf(2.0 * h);
        assert!(
            (ratio / want - 1.0).abs() < 0.05,
            "H={h}: variance ratio L=50/L=400 {ratio}, want 8^(2H) = {want}"
        );
        // Var B(1) = 1 and Var B(1/2) = 2^{-2H} (self-similarity over the whole path).
        let p = fbm_paths(4000, 50, h, Device::Cpu);
        let v1 = f(&p.select(1, 50).square().mean(Kind::Double));
        let vh = f(&p.select(1, 25).square().mean(Kind::Double));
        assert!((v1 - 1.0).abs() < 0.08, "H={h}: Var B(1) = {v1}");
        assert!(
            (vh / 2f64.powf(-2.0 * h) - 1.0).abs() < 0.08,
            "H={h}: Var B(1/2) = {vh}"
        );
    }
}

#[test]
fn fbm_increments_have_the_fractional_gaussian_noise_correlations() {
    let _g = lock();
    tch::manual_seed(2);
    for h in [0.2, 0.5, 0.8] {
        let inc = increments(&fbm_paths(3000, 200, h, Device::Cpu));
        let want1 = 2f64.powf(2.0 * h - 1.0) - 1.0;
        let got1 = lag_corr(&inc, 1);
        assert!(
            (got1 - want1).abs() < 0.02,
            "H={h}: lag-1 correlation {got1}, want 2^(2H-1) - 1 = {want1}"
        );
        // Long memory: lag 10, ½(11^{2H} − 2·10^{2H} + 9^{2H}).
        let p = 2.0 * h;
        let want10 = 0.5 * (11f64.powf(p) - 2.0 * 10f64.powf(p) + 9f64.powf(p));
        let got10 = lag_corr(&inc, 10);
        assert!(
            (got10 - want10).abs() < 0.02,
            "H={h}: lag-10 correlation {got10}, want {want10}"
        );
    }
}

#[test]
fn fbm_weights_are_unit_variance_fgn_over_the_layers_scaled_by_one_over_sqrt_d() {
    let _g = lock();
    tch::manual_seed(3);
    let d = 16;
    for h in [0.2, 0.8] {
        let w = layer_weights(LayerInit::Fbm { hurst: h }, 4, 300, d, d, Device::Cpu);
        assert_eq!(w.size(), vec![4, 300, d, d]);
        let var = f(&w.square().mean(Kind::Double)) * d as f64;
        assert!((var - 1.0).abs() < 0.05, "H={h}: d·Var W = {var}");
        // Along k, the entries are fGn: lag-1 correlation 2^{2H−1} − 1.
        let seq = w.permute([0, 2, 3, 1]).reshape([-1, 300]);
        let got = lag_corr(&seq, 1);
        let want = 2f64.powf(2.0 * h - 1.0) - 1.0;
        assert!((got - want).abs() < 0.03, "H={h}: lag-1 {got} vs {want}");
        // Independent across entries: neighbouring entries (i, j), (i, j+1) uncorrelated.
        let a = w.narrow(3, 0, d - 1).to_kind(Kind::Double);
        let b = w.narrow(3, 1, d - 1).to_kind(Kind::Double);
        let c = f(&(&a * &b).mean(Kind::Double)) * d as f64;
        assert!(c.abs() < 0.03, "H={h}: cross-entry correlation {c}");
    }
}

#[test]
fn smooth_paths_have_the_kernel_covariance_and_increments_shrinking_like_one_over_l() {
    let _g = lock();
    tch::manual_seed(4);
    let p = smooth_paths(4000, 100, Device::Cpu);
    assert_eq!(p.size(), vec![4000, 101]);
    let var = f(&p.square().mean(Kind::Double));
    assert!((var - 1.0).abs() < 0.05, "Var f(t) = {var}");
    // Cov(f(0), f(0.1)) = exp(−0.01/0.02).
    let c = f(&(p.select(1, 0) * p.select(1, 10)).mean(Kind::Double));
    assert!(
        (c - (-0.5f64).exp()).abs() < 0.05,
        "Cov(f(0), f(0.1)) = {c}"
    );
    let s50 = increment_var(&smooth_paths(2000, 50, Device::Cpu)).sqrt();
    let s400 = increment_var(&smooth_paths(2000, 400, Device::Cpu)).sqrt();
    // Increment std ≈ 10/L: the ratio between L = 50 and 400 is 8 (a rough path would give √8).
    assert!(
        (s50 / s400 - 8.0).abs() < 0.4,
        "increment std ratio {}",
        s50 / s400
    );
    assert!((s50 / smooth_increment_std(50) - 1.0).abs() < 0.05);
    // The weights (normalized increments) are themselves smooth in k: their own increments
    // shrink like 1/L too, and their variance is 1/d.
    let d = 8;
    let wvar = |l: i64| {
        let w = layer_weights(LayerInit::Smooth, 8, l, d, d, Device::Cpu);
        let seq = w.permute([0, 2, 3, 1]).reshape([-1, l]);
        let v = f(&seq.square().mean(Kind::Double)) * d as f64;
        let dv = f(&increments(&seq).square().mean(Kind::Double)).sqrt();
        (v, dv)
    };
    let (v50, d50) = wvar(50);
    let (v200, d200) = wvar(200);
    assert!(
        (v50 - 1.0).abs() < 0.1 && (v200 - 1.0).abs() < 0.1,
        "{v50} {v200}"
    );
    assert!(
        (d50 / d200 - 4.0).abs() < 0.4,
        "weight increment ratio {}",
        d50 / d200
    );
}

#[test]
fn iid_weights_are_uniform_with_variance_one_over_fan_in_and_independent_over_layers() {
    let _g = lock();
    tch::manual_seed(5);
    let d = 25;
    let w = layer_weights(LayerInit::Iid, 8, 200, d, d, Device::Cpu);
    let bound = (3.0 / d as f64).sqrt();
    assert!(f(&w.abs().max()) <= bound + 1e-6);
    assert!(f(&w.abs().max()) > 0.99 * bound);
    let var = f(&w.square().mean(Kind::Double)) * d as f64;
    assert!((var - 1.0).abs() < 0.02, "d·Var W = {var}");
    let seq = w.permute([0, 2, 3, 1]).reshape([-1, 200]);
    assert!(lag_corr(&seq, 1).abs() < 0.01);
    // Uniform: 20 equal bins of [−b, b] each hold 1/20 of the values (± 2%), and
    // neighbouring values in memory (the same random word) are uncorrelated.
    let flat = (w.view([-1]) / bound + 1.0) * 10.0;
    let n = flat.size()[0] as f64;
    let counts = Vec::<f64>::try_from(flat.histc(20).to_kind(Kind::Double)).unwrap();
    for c in &counts {
        assert!((c / n * 20.0 - 1.0).abs() < 0.02, "bins {counts:?}");
    }
    let v = w.view([-1, 2]).to_kind(Kind::Double);
    let c = f(&(v.select(1, 0) * v.select(1, 1)).mean(Kind::Double)) * d as f64;
    assert!(c.abs() < 0.01, "pair correlation {c}");
}

/// The hand-written backward recursion equals autograd's ∂ℓ/∂h_0.
#[test]
fn manual_backward_matches_autograd() {
    let _g = lock();
    tch::manual_seed(6);
    for kind in [MarionModel::Full, MarionModel::Simple] {
        let shape = MarionShape {
            depth: 30,
            width: 12,
            d_in: 7,
            d_out: 3,
        };
        let net = MarionNet::new(kind, 4, shape, LayerInit::Iid, Device::Cpu);
        let x = Tensor::rand([4, 5, 7], (Kind::Float, Device::Cpu));
        let scale = Tensor::from_slice(&[0.5f32, 0.2, 1.0, 0.3, 0.1]).view([1, 5, 1]);
        let h0 = net.embed(&x).detach().set_requires_grad(true);
        let mut masks = Vec::new();
        let hl = net.hidden(&h0, &scale, Some(&mut masks));
        let loss = net.output(&hl).square().sum(Kind::Float);
        let g = Tensor::run_backward(&[&loss], &[&h0, &hl], false, false);
        let manual = tch::no_grad(|| net.hidden_grad(&g[1], &scale, &masks));
        let err = f(&(&manual - &g[0]).abs().max()) / f(&g[0].abs().max());
        assert!(err < 1e-4, "{kind}: relative error {err}");
    }
}

#[test]
fn full_resnet_weights_have_the_paper_shapes() {
    let _g = lock();
    tch::manual_seed(7);
    let m = FullResNet::new(3, 10, 40, 64, 1, LayerInit::Smooth, Device::Cpu);
    assert_eq!(m.w.size(), vec![3, 10, 40, 40]);
    assert_eq!(m.a.size(), vec![3, 40, 64]);
    assert_eq!(m.b.size(), vec![3, 1, 40]);
    let s = depth_scale(100, 0.5, Device::Cpu);
    assert!((f(&s) - 0.1).abs() < 1e-7);
}

fn slopes(rows: &[deepres::papers::marion2022::scaling::ScalingRow]) -> Vec<(f64, f64, f64)> {
    deepres::papers::marion2022::scaling::summarize(rows)
        .into_iter()
        .map(|(_, beta, series)| {
            let pts = |b: bool| -> Vec<(f64, f64)> {
                series
                    .iter()
                    .map(|(l, f, bw)| (*l as f64, if b { bw.mean } else { f.mean }))
                    .collect()
            };
            (
                beta,
                deepres::util::fit::fit(&pts(false)).power,
                deepres::util::fit::fit(&pts(true)).power,
            )
        })
        .collect()
}

fn scaling_spec(
    init: LayerInit,
    betas: Vec<f64>,
) -> deepres::papers::marion2022::scaling::ScalingSpec {
    deepres::papers::marion2022::scaling::ScalingSpec {
        model: MarionModel::Full,
        inits: vec![init],
        depths: vec![10, 40, 160, 640],
        betas,
        width: 24,
        input_dim: 16,
        output_dim: 1,
        models: 24,
        inputs: 1,
        chunk: 24,
        seed: 0,
        device: Device::Cpu,
    }
}

/// The paper's picture at small size: i.i.d. weights need β = 1/2, smooth ones β = 1.
#[test]
fn scaling_metrics_show_the_iid_and_smooth_regimes() {
    let _g = lock();
    let rows = deepres::papers::marion2022::scaling::run(
        &scaling_spec(LayerInit::Iid, vec![0.25, 0.5, 1.0]),
        None,
        true,
    )
    .unwrap();
    assert_eq!(rows.len(), 4 * 3 * 24);
    let s = slopes(&rows);
    eprintln!("iid slopes {s:?}");
    assert!(s[0].1 > 0.6 && s[0].2 > 0.6, "β = 0.25 must grow: {s:?}");
    assert!(
        s[1].1.abs() < 0.15 && s[1].2.abs() < 0.15,
        "β = 0.5 bounded: {s:?}"
    );
    assert!(
        (s[2].1 + 0.5).abs() < 0.1 && (s[2].2 + 0.5).abs() < 0.1,
        "β = 1 ∝ L^-1/2: {s:?}"
    );
    let rows = deepres::papers::marion2022::scaling::run(
        &scaling_spec(LayerInit::Smooth, vec![0.5, 1.0, 2.0]),
        None,
        true,
    )
    .unwrap();
    let s = slopes(&rows);
    eprintln!("smooth slopes {s:?}");
    assert!(s[0].1 > 0.6, "smooth β = 0.5 must grow: {s:?}");
    assert!(
        s[1].1.abs() < 0.15 && s[1].2.abs() < 0.15,
        "smooth β = 1 bounded: {s:?}"
    );
    assert!((s[2].1 + 1.0).abs() < 0.1, "smooth β = 2 ∝ 1/L: {s:?}");
}

#[test]
fn every_figure_file_loads_at_both_scales() {
    let mut n = 0;
    for e in std::fs::read_dir("experiments/marion2022").unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            for scale in ["smoke", "full"] {
                deepres::papers::marion2022::Figure::load(&p, scale)
                    .unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
            }
            n += 1;
        }
    }
    assert_eq!(n, 9);
}

#[test]
fn a_bad_figure_file_gets_one_clear_error_line_and_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.yaml");
    let text = std::fs::read_to_string("experiments/marion2022/fig1.yaml")
        .unwrap()
        .replace("  width: 40", "  widht: 40");
    std::fs::write(&bad, text).unwrap();
    let err = deepres::papers::marion2022::Figure::load(&bad, "smoke").unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("bad.yaml") && msg.contains("widht") && msg.contains("unknown key"),
        "{msg}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deepres"))
        .args(["marion", bad.to_str().unwrap(), "--out"])
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(!tmp.path().join("out").exists());
    let bad_scale = deepres::papers::marion2022::Figure::load(
        std::path::Path::new("experiments/marion2022/fig1.yaml"),
        "huge",
    )
    .unwrap_err();
    assert!(format!("{bad_scale:#}").contains("smoke"));
    // --set overrides keys of the scaled spec, and names a wrong key.
    let fig7 = std::path::Path::new("experiments/marion2022/fig7.yaml");
    let fig = deepres::papers::marion2022::Figure::load_with(
        fig7,
        "smoke",
        &["depth=50".into(), "hursts.points=3".into()],
    )
    .unwrap();
    match fig.spec {
        deepres::papers::marion2022::FigureSpec::Heatmap(h) => {
            assert_eq!((h.depth, h.hursts.points, h.betas.points), (50, 3, 70))
        }
        _ => panic!("fig7 is a heatmap"),
    }
    let err = deepres::papers::marion2022::Figure::load_with(fig7, "smoke", &["hurst=3".into()])
        .unwrap_err();
    assert!(format!("{err:#}").contains("hurst"), "{err:#}");
}

/// A figure file that leaves out every optional key gets the defaults (those of the former
/// per-field serde defaults).
#[test]
fn optional_keys_get_their_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let load = |spec: &str| {
        let p = tmp.path().join("min.yaml");
        std::fs::write(&p, format!("figure: X\ntitle: x\nspec:\n{spec}")).unwrap();
        Figure::load(&p, "smoke").unwrap().spec
    };
    let scaling = "  kind: scaling\n  model: full\n  init: iid\n  metric: forward\n  depths: [10]\n  betas: [1]\n";
    match load(scaling) {
        FigureSpec::Scaling(s) => {
            assert_eq!((s.sizes.width, s.sizes.models, s.sizes.inputs), (40, 50, 1));
            assert_eq!((s.draw.input_dim, s.draw.chunk, s.draw.seed), (64, 50, 0));
        }
        _ => panic!("a scaling figure"),
    }
    let heatmap = "  kind: heatmap\n  model: full\n  hursts: {from: 0.1, to: 0.9, points: 3}\n  betas: {from: 0.1, to: 0.9, points: 3}\n  depth: 10\n  models: 2\n  inputs: 2\n  explosion_log10: 0.0\n";
    match load(heatmap) {
        FigureSpec::Heatmap(s) => {
            assert_eq!(s.width.width, 40);
            assert_eq!((s.draw.input_dim, s.draw.chunk, s.draw.seed), (64, 50, 0));
        }
        _ => panic!("a heatmap"),
    }
    let accuracy = "  kind: accuracy\n  model: simple\n  datasets: [[synthetic]]\n  hursts: {from: 0.1, to: 0.9, points: 3}\n  betas: {from: 0.1, to: 0.9, points: 3}\n  depth: 10\n  width: 8\n  lrs: [0.01]\n  train: {epochs: 1, batch: 10, lr_step: 5}\n";
    match load(accuracy) {
        FigureSpec::Accuracy(s) => {
            assert_eq!((s.batched.chunk, s.training.seed), (50, 0));
            assert_eq!(
                (s.training.train.limit_train, s.training.train.limit_test),
                (None, None)
            );
        }
        _ => panic!("an accuracy figure"),
    }
    // Required keys stay required; unknown keys stay errors, also next to flattened ones.
    let err = Figure::load_with(&tmp.path().join("min.yaml"), "smoke", &["chunkk=3".into()]);
    assert!(format!("{:#}", err.unwrap_err()).contains("chunkk"));
    let no_width = accuracy.replace("  width: 8\n", "");
    let p = tmp.path().join("min.yaml");
    std::fs::write(&p, format!("figure: X\ntitle: x\nspec:\n{no_width}")).unwrap();
    let err = format!("{:#}", Figure::load(&p, "smoke").unwrap_err());
    assert!(err.contains("width"), "{err}");
}

fn synthetic_split(train: i64, test: i64) -> deepres::data::DataSplit {
    let spec = deepres::data::DataSpec {
        synthetic_train: train,
        synthetic_test: test,
        ..deepres::data::DataSpec::new(deepres::data::DatasetName::Synthetic)
    };
    deepres::data::load(&spec).unwrap()
}

fn train_fig(epochs: i64, batch: i64) -> TrainFig {
    TrainFig {
        epochs,
        batch,
        lr_step: 5,
        limit_train: None,
        limit_test: None,
    }
}

fn setup(kind: MarionModel, depth: i64, width: i64, t: &TrainFig, seed: u64) -> TrainSetup<'_> {
    TrainSetup::new(kind, depth, width, t, seed, Device::Cpu)
}

/// Training runs end to end (Adam, SimpleResNet and FullResNet) and learns something.
#[test]
fn training_learns_on_synthetic_data() {
    let _g = lock();
    let split = synthetic_split(400, 200);
    let one = run(LayerInit::Fbm { hurst: 0.7 }, 0.7, 0.003);
    for kind in [MarionModel::Simple, MarionModel::Full] {
        let t = train_fig(3, 50);
        let tr = train_classifiers(&setup(kind, 20, 16, &t, 0), &split, &[one]).unwrap();
        eprintln!("{kind}: acc {:?} loss {:?}", tr.test_acc, tr.train_loss);
        assert!(!tr.diverged[0]);
        assert!(tr.test_acc[0] > 0.2, "{kind}: test acc {:?}", tr.test_acc);
    }
}

/// The batched Adam is torch's Adam: one model trained with it and with tch's nn::Adam (the
/// same gradients each step) stays equal to float rounding.
#[test]
fn batched_adam_matches_torch_adam() {
    use tch::nn::{Module, OptimizerConfig};
    let _g = lock();
    tch::manual_seed(3);
    let x = Tensor::randn([64, 5], (Kind::Float, Device::Cpu));
    let y = Tensor::randn([64, 1], (Kind::Float, Device::Cpu));
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let lin = tch::nn::linear(vs.root(), 5, 1, Default::default());
    let mut adam = tch::nn::Adam::default().build(&vs, 0.05).unwrap();
    // The same start, as one model `[1, ...]` for the batched Adam.
    let w = lin.ws.detach().unsqueeze(0).set_requires_grad(true);
    let b = lin
        .bs
        .as_ref()
        .unwrap()
        .detach()
        .unsqueeze(0)
        .set_requires_grad(true);
    let mut ours = BatchedAdam::new(vec![w.shallow_clone(), b.shallow_clone()], &[0.05]);
    for step in 0..30 {
        if step == 20 {
            adam.set_lr(0.005);
            ours.set_lr(&[0.005]);
        }
        let loss = (lin.forward(&x) - &y).square().mean(Kind::Float);
        adam.backward_step(&loss);
        let pred = x.matmul(&w.select(0, 0).tr()) + b.select(0, 0);
        ours.backward_step(&(pred - &y).square().mean(Kind::Float));
    }
    let dw = f(&(&lin.ws - w.select(0, 0)).abs().max());
    let db = f(&(lin.bs.as_ref().unwrap() - b.select(0, 0)).abs().max());
    let moved = f(&lin.ws.abs().max());
    assert!(
        dw < 1e-5 && db < 1e-5,
        "differ by {dw}, {db} (weights ~{moved})"
    );
}

/// Models trained together in one batched program are the models trained alone: each with its
/// own init, β and learning rate, unaffected by a neighbour that diverges.
#[test]
fn models_trained_together_equal_models_trained_alone() {
    let _g = lock();
    let split = synthetic_split(300, 100);
    let t = train_fig(2, 50);
    let runs = [
        run(LayerInit::Fbm { hurst: 0.3 }, 0.5, 0.01),
        // Diverges: the loss overflows within the first steps.
        run(LayerInit::Iid, 0.0, 1e4),
        run(LayerInit::Smooth, 1.0, 0.001),
    ];
    for kind in [MarionModel::Simple, MarionModel::Full] {
        let together = train_classifiers(&setup(kind, 12, 8, &t, 5), &split, &runs).unwrap();
        assert_eq!(together.diverged, vec![false, true, false], "{kind}");
        assert!(together.test_acc[1].is_nan());
        for m in [0usize, 2] {
            let alone =
                train_classifiers(&setup(kind, 12, 8, &t, 5), &split, &runs[m..m + 1]).unwrap();
            assert!(
                (alone.train_loss[0] - together.train_loss[m]).abs() < 1e-4,
                "{kind} model {m}: loss {} alone, {} together",
                alone.train_loss[0],
                together.train_loss[m]
            );
            assert!((alone.test_acc[0] - together.test_acc[m]).abs() < 1e-9);
            for ((name, a), (_, b)) in alone
                .net
                .named_tensors()
                .into_iter()
                .zip(together.net.named_tensors())
            {
                let d = f(&(a.select(0, 0) - b.select(0, m as i64)).abs().max());
                assert!(d < 1e-4, "{kind} model {m}: {name} differs by {d}");
            }
        }
    }
}

/// Training stopped after an epoch resumes from its checkpoint to the same models, bit for bit,
/// as training that was never stopped; a checkpoint of other runs is not resumed.
#[test]
fn interrupted_training_resumes_from_its_checkpoint_bit_for_bit() {
    let _g = lock();
    let split = synthetic_split(300, 100);
    let t = train_fig(3, 50);
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("chunk.ot");
    let runs = [
        run(LayerInit::Fbm { hurst: 0.6 }, 0.5, 0.01),
        run(LayerInit::Iid, 1.0, 0.003),
    ];
    let whole =
        train_classifiers(&setup(MarionModel::Simple, 10, 8, &t, 2), &split, &runs).unwrap();
    // Another run's checkpoint in the way: ignored, then overwritten.
    let other = [runs[0]];
    let stopped = TrainSetup {
        checkpoint: Some(ckpt.clone()),
        stop_after: Some(1),
        ..setup(MarionModel::Simple, 10, 8, &t, 2)
    };
    assert!(train_classifiers(&stopped, &split, &other).is_err());
    match train_classifiers(&stopped, &split, &runs) {
        Err(e) => assert!(format!("{e:#}").contains("stopped after epoch 1"), "{e:#}"),
        Ok(_) => panic!("stop_after did not stop"),
    }
    assert!(ckpt.exists());
    let resumed = TrainSetup {
        checkpoint: Some(ckpt.clone()),
        ..setup(MarionModel::Simple, 10, 8, &t, 2)
    };
    let tr = train_classifiers(&resumed, &split, &runs).unwrap();
    assert_eq!(tr.train_loss, whole.train_loss);
    assert_eq!(tr.test_acc, whole.test_acc);
    for ((name, a), (_, b)) in tr
        .net
        .named_tensors()
        .into_iter()
        .zip(whole.net.named_tensors())
    {
        assert!(a.equal(b), "{name} differs after the resume");
    }
}

/// M9's runs CSV is rewritten after every chunk and a rerun trains only the runs missing from
/// it; runs of other settings are moved aside, not overwritten.
#[test]
fn the_accuracy_figure_resumes_from_its_runs_file() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let fig9 = std::path::Path::new("experiments/marion2022/fig9.yaml");
    let sets = |depth: &str| -> Vec<String> {
        [
            "datasets=[[synthetic]]",
            "hursts.points=2",
            "betas.points=2",
            "lrs=[0.01]",
            "chunk=3",
            "train.epochs=1",
            "train.limit_train=200",
            "train.limit_test=100",
            depth,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let fig = Figure::load_with(fig9, "smoke", &sets("depth=6")).unwrap();
    let runs = dir.path().join("runs-synthetic.csv");
    marion::run(&fig, dir.path(), Device::Cpu, true).unwrap();
    let first = std::fs::read_to_string(&runs).unwrap();
    assert_eq!(first.lines().count(), 5, "{first}");
    // As if killed during the second chunk: only the first chunk's 3 runs are on disk.
    let kept: Vec<&str> = first.lines().take(4).collect();
    std::fs::write(&runs, kept.join("\n") + "\n").unwrap();
    marion::run(&fig, dir.path(), Device::Cpu, true).unwrap();
    let resumed = std::fs::read_to_string(&runs).unwrap();
    // The same runs (the last one trained alone now: equal to float rounding).
    let rows = |s: &str| -> Vec<Vec<String>> {
        s.lines()
            .map(|l| l.split(',').map(String::from).collect())
            .collect()
    };
    let (a, b) = (rows(&first), rows(&resumed));
    assert_eq!(a.len(), b.len());
    for (ra, rb) in a.iter().zip(&b).skip(1) {
        assert_eq!(ra[..4], rb[..4]);
        assert_eq!(ra[6], rb[6]);
        for c in [4, 5] {
            let (x, y): (f64, f64) = (ra[c].parse().unwrap(), rb[c].parse().unwrap());
            assert!((x - y).abs() < 1e-4, "{ra:?} vs {rb:?}");
        }
    }
    // The first 3 rows were kept, not retrained (their chunk time is the first run's).
    assert_eq!(resumed.lines().take(4).collect::<Vec<_>>(), kept);
    // Other settings: the old file is moved aside and all runs are trained anew.
    let fig = Figure::load_with(fig9, "smoke", &sets("depth=7")).unwrap();
    marion::run(&fig, dir.path(), Device::Cpu, true).unwrap();
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("runs-synthetic.") && n != "runs-synthetic.csv")
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join(&aside[0])).unwrap(),
        resumed
    );
    assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 5);
}

/// The resume keys of the training checkpoint and of M9's runs file, pinned for one setting. If
/// a field is added to `CheckpointKey` or `RunsKey` (src/papers/marion2022/checkpoint.rs,
/// accuracy.rs) this test fails: every old checkpoint and runs file is then retrained, so paste
/// the new value deliberately. Changing any one setting changes the key.
#[test]
fn the_resume_keys_are_pinned_and_change_with_every_setting() {
    let _g = lock();
    let split = synthetic_split(300, 100);
    let t = train_fig(3, 50);
    let runs = [
        run(LayerInit::Fbm { hurst: 0.6 }, 0.5, 0.01),
        run(LayerInit::Iid, 1.0, 0.003),
    ];
    let key = |s: &TrainSetup, runs: &[TrainRun]| marion::checkpoint_key(s, &split, runs);
    let base = key(&setup(MarionModel::Simple, 10, 8, &t, 2), &runs);
    // Re-pinned when IID_SAMPLER_VERSION 2 (fixed blocks) entered the key of setups with an
    // i.i.d. run (this one has one): checkpoints of the former sampler are not resumed.
    assert_eq!(
        base,
        "85ef5245de5114f8f6474e7e19fe69d42a800e23a9f109f90b25769ab3c14908"
    );
    let mut other_beta = runs;
    other_beta[1].beta = 0.75;
    let mut other_lr = runs;
    other_lr[0].lr = 0.02;
    let t4 = train_fig(4, 50);
    for (what, k) in [
        (
            "β",
            key(&setup(MarionModel::Simple, 10, 8, &t, 2), &other_beta),
        ),
        (
            "lr",
            key(&setup(MarionModel::Simple, 10, 8, &t, 2), &other_lr),
        ),
        (
            "seed",
            key(&setup(MarionModel::Simple, 10, 8, &t, 3), &runs),
        ),
        (
            "depth",
            key(&setup(MarionModel::Simple, 11, 8, &t, 2), &runs),
        ),
        ("model", key(&setup(MarionModel::Full, 10, 8, &t, 2), &runs)),
        (
            "epochs",
            key(&setup(MarionModel::Simple, 10, 8, &t4, 2), &runs),
        ),
        (
            "runs",
            key(&setup(MarionModel::Simple, 10, 8, &t, 2), &runs[..1]),
        ),
        (
            "width",
            key(&setup(MarionModel::Simple, 10, 9, &t, 2), &runs),
        ),
        (
            "init",
            key(
                &setup(MarionModel::Simple, 10, 8, &t, 2),
                &[runs[0], run(LayerInit::Smooth, 1.0, 0.003)],
            ),
        ),
        (
            "Hurst index",
            key(
                &setup(MarionModel::Simple, 10, 8, &t, 2),
                &[run(LayerInit::Fbm { hurst: 0.7 }, 0.5, 0.01), runs[1]],
            ),
        ),
    ] {
        assert_ne!(k, base, "changing {what} must change the checkpoint key");
    }
    // Every field of the training settings (TrainFig) and the data.
    let fig_variants = [
        (
            "batch",
            TrainFig {
                batch: 25,
                ..t.clone()
            },
        ),
        (
            "lr_step",
            TrainFig {
                lr_step: 2,
                ..t.clone()
            },
        ),
        (
            "limit_train",
            TrainFig {
                limit_train: Some(200),
                ..t.clone()
            },
        ),
        (
            "limit_test",
            TrainFig {
                limit_test: Some(50),
                ..t.clone()
            },
        ),
    ];
    for (what, tf) in &fig_variants {
        let k = key(&setup(MarionModel::Simple, 10, 8, tf, 2), &runs);
        assert_ne!(
            k, base,
            "changing train.{what} must change the checkpoint key"
        );
    }
    for (what, other) in [
        ("train examples", synthetic_split(200, 100)),
        ("test examples", synthetic_split(300, 50)),
    ] {
        let k = marion::checkpoint_key(&setup(MarionModel::Simple, 10, 8, &t, 2), &other, &runs);
        assert_ne!(
            k, base,
            "changing the {what} must change the checkpoint key"
        );
    }
    let training = |seed: u64, depth: i64, t: &TrainFig| Training {
        model: MarionModel::Simple,
        depth,
        width: 30,
        train: t.clone(),
        seed,
    };
    let base = marion::runs_key(&training(0, 100, &t), &split);
    assert_eq!(
        base,
        "dc626d8192e0df608a463c890084899e8b6f5553189f13866ae585e8bc2283db"
    );
    for (what, k) in [
        ("seed", marion::runs_key(&training(1, 100, &t), &split)),
        ("depth", marion::runs_key(&training(0, 101, &t), &split)),
        ("epochs", marion::runs_key(&training(0, 100, &t4), &split)),
        (
            "data",
            marion::runs_key(&training(0, 100, &t), &synthetic_split(200, 100)),
        ),
        (
            "test data",
            marion::runs_key(&training(0, 100, &t), &synthetic_split(300, 50)),
        ),
        (
            "width",
            marion::runs_key(
                &Training {
                    width: 31,
                    ..training(0, 100, &t)
                },
                &split,
            ),
        ),
        (
            "model",
            marion::runs_key(
                &Training {
                    model: MarionModel::Full,
                    ..training(0, 100, &t)
                },
                &split,
            ),
        ),
    ] {
        assert_ne!(k, base, "changing {what} must change the runs key");
    }
    for (what, tf) in &fig_variants {
        let k = marion::runs_key(&training(0, 100, tf), &split);
        assert_ne!(k, base, "changing train.{what} must change the runs key");
    }
}

#[test]
fn redrawing_iid_weights_in_place_keeps_the_buffer_and_the_law() {
    let _g = lock();
    tch::manual_seed(9);
    let mut w = layer_weights(LayerInit::Iid, 3, 50, 20, 20, Device::Cpu);
    let (ptr, before) = (w.data_ptr(), w.copy());
    deepres::model::weight_init::redraw_layer_weights(&mut w, LayerInit::Iid);
    assert_eq!(w.data_ptr(), ptr, "the buffer was reallocated");
    assert_eq!(w.size(), before.size());
    let changed = f(&w
        .ne_tensor(&before)
        .to_kind(Kind::Double)
        .mean(Kind::Double));
    assert!(
        changed > 0.999,
        "only {changed} of the entries were redrawn"
    );
    // uniform ±√(3/20): variance 1/20, bounded
    let bound = (3.0f64 / 20.0).sqrt();
    assert!(f(&w.abs().max()) <= bound + 1e-6);
    let var = f(&w.to_kind(Kind::Double).square().mean(Kind::Double));
    assert!((var * 20.0 - 1.0).abs() < 0.02, "variance {var}");
    // Other inits are redrawn by copy, with their own law.
    let mut s = layer_weights(LayerInit::Smooth, 2, 40, 10, 10, Device::Cpu);
    let s0 = s.copy();
    deepres::model::weight_init::redraw_layer_weights(&mut s, LayerInit::Smooth);
    assert!(f(&(&s - &s0).abs().max()) > 0.0);
}
