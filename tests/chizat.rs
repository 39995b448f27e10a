//! Chizat (2025, "The Hidden Width of Deep ResNets", arXiv:2509.10167; docs/chizat2025.md): the
//! 2LP-block ResNet's hand-written backward pass equals autograd,
//! padding models to a common shape is exact, the forward pass at initialization deviates from
//! the identity like 1/√(LM), one GD step moves the output by O(1) whatever L and M, the
//! least-squares fit of a/L + b√(D/(LM)) recovers known constants, and the figure files run
//! (the limit cache's key: tests/chizat_limit.rs).
use deepres::model::two_layer_resnet::{TwoLayerResNet, TwoLayerSpec};
use deepres::papers::chizat2025::{self as chizat, fit_rate, Dynamics};
use tch::{Device, Kind, Tensor};

mod common;
/// Tests that draw from torch's global RNG run one at a time (seeded, reproducible).
use common::serial as lock;

fn spec(depth: i64, width: i64, dim: i64) -> TwoLayerSpec {
    Dynamics::default().model(depth, width, dim)
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

#[test]
fn backward_matches_autograd_with_padded_models() {
    let _g = lock();
    tch::manual_seed(3);
    let specs = [spec(3, 4, 2), spec(5, 2, 3), spec(1, 1, 1)];
    let net = TwoLayerResNet::new(&specs, Device::Cpu);
    let x = Tensor::randn([3, 6, 3], (Kind::Float, Device::Cpu));
    // Zero the coordinates each model does not have.
    let dmask = Tensor::from_slice(&[1f32, 1., 0., 1., 1., 1., 1., 0., 0.]).view([3, 1, 3]);
    let x = x * dmask;
    let y = Tensor::randn([3, 6], (Kind::Float, Device::Cpu));
    // The same loss through autograd.
    let u: Vec<Tensor> = net
        .u
        .iter()
        .map(|t| t.detach().requires_grad_(true))
        .collect();
    let v: Vec<Tensor> = net
        .v
        .iter()
        .map(|t| t.detach().requires_grad_(true))
        .collect();
    let mut h = x.shallow_clone();
    for l in 0..u.len() {
        h = &h + h.bmm(&v[l].transpose(1, 2)).tanh().bmm(&u[l]) * &net.scale;
    }
    let f = h.select(2, 0);
    let auto_loss = (&f - &y).square().mean_dim(1, false, Kind::Float) * 0.5;
    auto_loss.sum(Kind::Float).backward();
    // All 6 inputs in one tape, and in chunks of 4 + 2 and of 1 (gradients summed over them).
    for chunk in [6, 4, 1] {
        let (loss, gu, gv) = net.gradients_in_chunks(&x, &y, chunk);
        assert!(max_abs(&(&loss - &auto_loss)) < 1e-6, "chunk {chunk}: loss");
        for l in 0..u.len() {
            let (du, dv) = (u[l].grad(), v[l].grad());
            let tol = 1e-5 * (1.0 + max_abs(&du).max(max_abs(&dv)));
            let at = format!("chunk {chunk}, layer {l}");
            assert!(max_abs(&(&gu[l] - &du)) < tol, "{at}: u gradient differs");
            assert!(max_abs(&(&gv[l] - &dv)) < tol, "{at}: v gradient differs");
        }
    }
    // Inputs `[n, D]` and targets `[n]` shared by the models, in chunks of 4 + 2.
    let (xs, ys) = (x.get(1), y.get(0));
    let (loss, gu, gv) = net.gradients(&xs, &ys);
    let (loss4, gu4, gv4) = net.gradients_in_chunks(&xs, &ys, 4);
    assert!(max_abs(&(&loss - &loss4)) < 1e-6, "shared inputs: loss");
    for (a, b) in gu.iter().chain(&gv).zip(gu4.iter().chain(&gv4)) {
        let tol = 1e-5 * (1.0 + max_abs(a));
        assert!(max_abs(&(a - b)) < tol, "shared inputs: gradient");
    }
    let (_, gu, gv) = net.gradients(&x, &y);
    // Padded parts (model 3 has one layer, one unit, one coordinate) have zero gradient.
    assert_eq!(max_abs(&gu[2].get(2)), 0.0);
    assert_eq!(max_abs(&gu[0].get(2).narrow(1, 1, 2)), 0.0);
    assert_eq!(max_abs(&gv[0].get(0).narrow(1, 2, 1)), 0.0);
}

#[test]
fn a_model_trains_the_same_alone_and_padded_in_a_batch() {
    let _g = lock();
    tch::manual_seed(5);
    let small = spec(4, 3, 2);
    let mut batch = TwoLayerResNet::new(&[spec(9, 7, 5), small], Device::Cpu);
    let mut alone = TwoLayerResNet::new(&[small], Device::Cpu);
    for l in 0..4 {
        alone.u[l] = batch.u[l]
            .narrow(0, 1, 1)
            .narrow(1, 0, 3)
            .narrow(2, 0, 2)
            .copy();
        alone.v[l] = batch.v[l]
            .narrow(0, 1, 1)
            .narrow(1, 0, 3)
            .narrow(2, 0, 2)
            .copy();
    }
    let (x, y) = chizat::task(&Default::default(), 2, 0, Device::Cpu);
    let xb = Tensor::stack(&[x.constant_pad_nd([0, 3]), x.constant_pad_nd([0, 3])], 0);
    let yb = Tensor::stack(&[&y, &y], 0);
    for _ in 0..5 {
        let _ = alone.gd_step(&x, &y);
        let _ = batch.gd_step(&xb, &yb);
    }
    let (xt, _) = chizat::task(&Default::default(), 2, 1, Device::Cpu);
    let fa = alone.forward(&xt);
    let fb = batch.forward(&xt.constant_pad_nd([0, 3])).narrow(0, 1, 1);
    assert!(max_abs(&(&fa - &fb)) < 1e-5, "padding changed the training");
    // Padded layers, units and coordinates of the small model are still exactly zero.
    assert_eq!(max_abs(&batch.u[6].get(1)), 0.0);
    assert_eq!(max_abs(&batch.u[0].get(1).narrow(0, 3, 4)), 0.0);
    assert_eq!(max_abs(&batch.v[0].get(1).narrow(1, 2, 3)), 0.0);
}

/// RMS of ⟨e_1, h_L − h_0⟩ over models and inputs, at initialization.
fn init_deviation(depth: i64, width: i64, dim: i64) -> f64 {
    init_deviation_at(depth, width, dim, 0.5)
}

fn init_deviation_at(depth: i64, width: i64, dim: i64, gamma: f64) -> f64 {
    let s = TwoLayerSpec {
        gamma,
        ..spec(depth, width, dim)
    };
    let net = TwoLayerResNet::new(&vec![s; 64], Device::Cpu);
    let x = Tensor::randn([16, dim], (Kind::Float, Device::Cpu));
    let _g = tch::no_grad_guard();
    let trace = net.trace(&x); // [models, L+1, n] of the first coordinate
    let d = trace.select(1, depth) - trace.select(1, 0);
    d.square().mean(Kind::Float).sqrt().double_value(&[])
}

#[test]
fn forward_pass_at_init_deviates_like_one_over_sqrt_lm() {
    let _g = lock();
    tch::manual_seed(7);
    let dim = 4;
    let pts: Vec<(f64, f64)> = [(4, 4), (16, 16), (64, 64), (8, 128)]
        .iter()
        .map(|&(l, m)| (((l * m) as f64).ln(), init_deviation(l, m, dim).ln()))
        .collect();
    let (slope, r2) = deepres::util::fit::slope(&pts);
    assert!((slope + 0.5).abs() < 0.06, "slope in LM {slope}, want −1/2");
    assert!(r2 > 0.99, "R² {r2}");
    // Per coordinate it goes like D^γ (the residual scale's D^γ; u is O(1) per coordinate):
    // √D/√(LM) at the critical γ = 1/2, the second term of the error bound (≈ 2 for D = 16 vs
    // 4, up to E[tanh²(⟨v, x⟩)], which depends a little on D through ‖x‖²/D).
    let ratio = init_deviation(32, 32, 16) / init_deviation(32, 32, 4);
    assert!(
        (ratio - 2.0).abs() < 0.3,
        "D = 16 vs 4 at γ = 1/2: √4 = 2, got {ratio}"
    );
    let ratio = init_deviation_at(32, 32, 16, 0.0) / init_deviation_at(32, 32, 4, 0.0);
    assert!((ratio - 1.0).abs() < 0.15, "D = 16 vs 4 at γ = 0: {ratio}");
}

/// E[tanh²(⟨v, x⟩)] for x ~ N(0, I_D) and v ~ N(0, I_D / D), by Monte Carlo (2·10⁵ draws).
fn mean_tanh_squared(dim: i64) -> f64 {
    let n = 200_000;
    let x = Tensor::randn([n, dim], (Kind::Double, Device::Cpu));
    let v = Tensor::randn([n, dim], (Kind::Double, Device::Cpu)) / (dim as f64).sqrt();
    (x * v)
        .sum_dim_intlist(1, false, Kind::Double)
        .tanh()
        .square()
        .mean(Kind::Double)
        .double_value(&[])
}

/// At initialization ⟨e_1, h_L − h_0⟩ is a sum of LM independent terms
/// s·u_{ℓ,j,1}·tanh(⟨v_{ℓ,j}, h⟩) with s = √D/(LM) and u_{ℓ,j,1} ~ N(0, 1), so its RMS is
/// √(D·E[tanh²(⟨v, x⟩)]/(LM)) while h stays near x: the closed form of the bound's second
/// term, with E[tanh²] = 0.28 at D = 1 and 0.38 at D = 16. Checked to 10 % at L = M = 32
/// (64 models × 16 inputs) for D = 1, 4, 16; the figures' log-log fits read this law through
/// the spread of the models' errors (docs/chizat2025.md, "Why the smoke control reads 0.93").
#[test]
fn forward_pass_at_init_has_the_closed_form_rms() {
    let _g = lock();
    tch::manual_seed(11);
    for dim in [1, 4, 16] {
        let want = (dim as f64 * mean_tanh_squared(dim) / (32.0 * 32.0)).sqrt();
        let got = init_deviation(32, 32, dim);
        eprintln!("D = {dim}: RMS {got:.4}, closed form {want:.4}");
        assert!(
            (got / want - 1.0).abs() < 0.1,
            "D = {dim}: RMS {got:.4}, closed form {want:.4}"
        );
    }
}

#[test]
fn one_gd_step_moves_the_output_by_order_one_whatever_l_and_m() {
    let _g = lock();
    let dim = 3;
    let (x, y) = chizat::task(&Default::default(), dim, 0, Device::Cpu);
    let mut moves = Vec::new();
    for (l, m) in [(2, 2), (16, 4), (4, 64), (64, 64), (256, 16)] {
        tch::manual_seed(11);
        let mut net = TwoLayerResNet::new(&vec![spec(l, m, dim); 16], Device::Cpu);
        let before = net.forward(&x);
        let _ = net.gd_step(&x, &y);
        let after = net.forward(&x);
        let mv = (after - before)
            .square()
            .mean(Kind::Float)
            .sqrt()
            .double_value(&[]);
        moves.push(mv);
    }
    let (lo, hi) = moves
        .iter()
        .fold((f64::INFINITY, 0f64), |(a, b), &v| (a.min(v), b.max(v)));
    assert!(lo > 0.02, "a step barely moves the output: {moves:?}");
    assert!(
        hi / lo < 1.6,
        "the step's effect depends on L, M: {moves:?}"
    );
    // With the plain step λ = η (no L·M factor) the move would shrink with L·M instead.
    let s = spec(64, 64, dim);
    assert!(s.step_size() / spec(2, 2, dim).step_size() > 1000.0);
}

#[test]
fn rate_fit_recovers_known_constants() {
    let mut pts = Vec::new();
    let mut k = 0u32;
    for l in [1, 2, 4, 8, 16, 32, 64, 128] {
        for m in [1, 4, 16, 64, 256, 1024] {
            for d in [1, 4, 16] {
                k += 1;
                // ±4% deterministic "noise"
                let noise = 1.0 + 0.04 * ((k as f64 * 2.399).sin());
                let e = (0.15 / l as f64 + 0.22 * (d as f64 / (l * m) as f64).sqrt()) * noise;
                pts.push((l as f64, m as f64, d as f64, e));
            }
        }
    }
    let fit = fit_rate(&pts);
    assert!((fit.a / 0.15 - 1.0).abs() < 0.05, "a = {}", fit.a);
    assert!((fit.b / 0.22 - 1.0).abs() < 0.05, "b = {}", fit.b);
    assert!(fit.r2 > 0.99, "R² {}", fit.r2);
    assert_eq!(fit.points, pts.len());
    // Errors from a/L alone give b ≈ 0.
    let only_a: Vec<_> = pts.iter().map(|p| (p.0, p.1, p.2, 0.3 / p.0)).collect();
    let f2 = fit_rate(&only_a);
    assert!((f2.a - 0.3).abs() < 1e-6 && f2.b.abs() < 1e-6, "{f2:?}");
}

#[test]
fn figure_files_load_at_both_scales_and_bad_keys_are_named() {
    for n in 1..=5 {
        let path = format!("experiments/chizat2025/fig{n}.yaml");
        for scale in ["smoke", "full"] {
            chizat::load(std::path::Path::new(&path), scale, &[])
                .unwrap_or_else(|e| panic!("{path} at {scale}: {e:#}"));
        }
    }
    let p = std::path::Path::new("experiments/chizat2025/fig2.yaml");
    let err = chizat::load(p, "smoke", &["dynamics.etaa=2".into()]).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("fig2.yaml") && msg.contains("unknown key `etaa`") && msg.contains("`eta`"),
        "{msg}"
    );
    let err = chizat::load(p, "smoke", &["depths=[0, 4]".into()]).unwrap_err();
    assert!(
        format!("{err:#}").contains("spec.depths: must be ≥ 1"),
        "{err:#}"
    );
    let p5 = std::path::Path::new("experiments/chizat2025/fig5.yaml");
    let err = chizat::load(p5, "smoke", &["eval_steps=[7]".into()]).unwrap_err();
    assert!(
        format!("{err:#}").contains("spec.eval_steps: 7 is not recorded"),
        "{err:#}"
    );
}

#[test]
fn error_grid_runs_end_to_end_and_error_falls_with_depth() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("limits");
    let set: Vec<String> = vec![
        "depths=[2, 8, 32]".into(),
        "widths=[1, 512]".into(),
        "repetitions=16".into(),
        "limit.depth=128".into(),
        "limit.width=128".into(),
        format!("limit.cache={}", cache.display()),
        "dynamics.steps=20".into(),
    ];
    let fig = chizat::load(
        std::path::Path::new("experiments/chizat2025/fig2.yaml"),
        "smoke",
        &set,
    )
    .unwrap();
    let out = dir.path().join("c2");
    let output = chizat::run(&fig, &out, Device::Cpu, true).unwrap();
    let text = &output.text;
    for f in ["errors.csv", "fig2.svg", "README.md", "acceptance.csv"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    assert!(text.contains("Fit over the 6 cell means"), "{text}");
    // The paper's rates hold at this size: no failed check, and the verdict is the last line.
    assert!(output.acceptance.passed(), "{text}");
    assert_eq!(output.acceptance.checks.len(), 2, "{text}");
    assert_eq!(
        text.trim_end().lines().last().unwrap(),
        "Acceptance: all 2 checks pass"
    );
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        1,
        "one cached limit"
    );
    // Recomputed from errors.csv: the log-log slope of the mean error against L at M = 512
    // is the 1/L law's −1 (within [−1.2, −0.8]), which the M = 1 law (−1/2) does not enter.
    let csv = std::fs::read_to_string(out.join("errors.csv")).unwrap();
    let mean = |l: &str| {
        let v: Vec<f64> = csv
            .lines()
            .skip(1)
            .map(|r| r.split(',').collect::<Vec<_>>())
            .filter(|c| c[0] == l && c[1] == "512")
            .map(|c| c[4].parse::<f64>().unwrap())
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let pts: Vec<(f64, f64)> = ["2", "8", "32"]
        .iter()
        .map(|l| (l.parse::<f64>().unwrap().ln(), mean(l).ln()))
        .collect();
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / 3.0,
        pts.iter().map(|p| p.1).sum::<f64>() / 3.0,
    );
    let slope = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>()
        / pts.iter().map(|p| (p.0 - mx).powi(2)).sum::<f64>();
    assert!((-1.2..=-0.8).contains(&slope), "slope {slope}: {csv}");
    // A second run reuses the cached limit and gives the same errors.
    let out2 = dir.path().join("c2b");
    chizat::run(&fig, &out2, Device::Cpu, true).unwrap();
    assert_eq!(
        csv,
        std::fs::read_to_string(out2.join("errors.csv")).unwrap()
    );
}

/// A figure whose acceptance check fails says so on its last line, records it in
/// acceptance.csv and exits with status 3. With 2 repetitions the M = 1 slope of this small
/// grid is −0.31 (the noise of two models per cell), outside the 1/√L law's [−0.65, −0.35].
#[test]
fn a_failed_acceptance_check_is_the_last_line_and_exit_status_3() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c2");
    let o = common::deepres()
        .args([
            "chizat",
            "experiments/chizat2025/fig2.yaml",
            "--quiet",
            "--device",
            "cpu",
        ])
        .args(["--set", "depths=[2, 8, 32]", "--set", "widths=[1, 512]"])
        .args(["--set", "repetitions=2", "--set", "limit.depth=128"])
        .args(["--set", "limit.width=128", "--set", "dynamics.steps=20"])
        .arg("--set")
        .arg(format!(
            "limit.cache={}",
            dir.path().join("limits").display()
        ))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = common::stdout(&o);
    assert_eq!(o.status.code(), Some(3), "{stdout}{}", common::stderr(&o));
    let last = stdout.trim_end().lines().last().unwrap();
    assert!(
        last.starts_with("Acceptance: FAILED 1 of 2 checks: slope at M = 1"),
        "{last}"
    );
    assert!(common::stderr(&o).contains("Acceptance: FAILED"));
    let csv = std::fs::read_to_string(out.join("acceptance.csv")).unwrap();
    assert!(csv.starts_with("check,value,lo,hi,passed\n"), "{csv}");
    assert_eq!(csv.matches(",false").count(), 1, "{csv}");
    assert_eq!(csv.matches(",true").count(), 1, "{csv}");
}

/// A model's weights are its own seed's whatever models share its batch (compared exactly
/// with the model drawn alone), and C5's errors do not depend on the batch size: a tiny C5
/// (K = 20) with batches of 1 and of 5 writes the same errors.csv and init.csv to 10⁻⁴. (At
/// K = 100 GD amplifies the rounding in the smallest models: docs/chizat2025.md "Model".)
#[test]
fn c5_errors_do_not_depend_on_the_batch_size() {
    let _g = lock();
    let specs = [spec(3, 4, 2), spec(5, 2, 3), spec(1, 1, 1)];
    let batch = TwoLayerResNet::new_each(&specs, &[11, 12, 13], Device::Cpu);
    let alone = TwoLayerResNet::new_each(&specs[1..2], &[12], Device::Cpu);
    for l in 0..5 {
        let (u, v) = (batch.u[l].get(1), batch.v[l].get(1));
        assert!(
            u.narrow(0, 0, 2).equal(&alone.u[l].get(0)),
            "u of layer {l}"
        );
        assert!(
            v.narrow(0, 0, 2).equal(&alone.v[l].get(0)),
            "v of layer {l}"
        );
        assert_eq!(max_abs(&u.narrow(0, 2, 2)), 0.0, "padding of layer {l}");
    }
    assert_eq!(max_abs(&batch.u[1].get(2)), 0.0, "model 3 has one layer");

    let dir = tempfile::tempdir().unwrap();
    let sets = |batch: usize| -> Vec<String> {
        let mut v: Vec<String> = common::TINY_C5.map(String::from).to_vec();
        v.push("models=12".into());
        v.push(format!("limit.cache={}", dir.path().join("lim").display()));
        v.push(format!("batch={batch}"));
        v
    };
    let p5 = std::path::Path::new("experiments/chizat2025/fig5.yaml");
    let numbers = |batch: usize, file: &str| -> Vec<f64> {
        let out = dir.path().join(format!("b{batch}"));
        let fig = chizat::load(p5, "smoke", &sets(batch)).unwrap();
        let _ = chizat::run(&fig, &out, Device::Cpu, true).unwrap();
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        let cells = text
            .lines()
            .skip(1)
            .flat_map(|r| r.split(',').map(String::from));
        cells.map(|c| c.parse().unwrap()).collect::<Vec<f64>>()
    };
    for file in ["errors.csv", "init.csv"] {
        let (one, five) = (numbers(1, file), numbers(5, file));
        assert_eq!(one.len(), five.len(), "{file}");
        assert!(one.len() >= 12 * 3, "{file}: {} numbers", one.len());
        for (a, b) in one.iter().zip(&five) {
            assert!(
                (a - b).abs() <= 1e-4 * a.abs().max(1e-6),
                "{file}: {a} vs {b}"
            );
        }
    }
}
