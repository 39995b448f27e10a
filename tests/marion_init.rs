//! Marion et al., "Scaling ResNets in the Large-depth Regime" (arXiv:2206.06929;
//! docs/marion2022.md): the layer-correlated initializations match their laws over many draws
//! (tolerances that a wrong generator fails), and the authors' fBm sampler its closed-form
//! covariance (the models and figures in tests/marion.rs).
use deepres::model::davies_harte::{
    authors_alternating_variance, authors_eigenvalues, authors_fgn_factor,
};
use deepres::model::weight_init::{
    fbm_paths, layer_weights, smooth_increment_std, smooth_paths, LayerInit,
};
use tch::{Device, Kind, Tensor};

mod common;
use common::scalar as f;
/// Tests that draw from torch's global RNG run one at a time (seeded, reproducible).
use common::serial as lock;

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

/// γ(n) of unit-variance fractional Gaussian noise, written out here (the oracle's own).
fn gamma(n: i64, h: f64) -> f64 {
    let p = |x: i64| (x.abs() as f64).powf(2.0 * h);
    0.5 * (p(n + 1) - 2.0 * p(n) + p(n - 1))
}

/// The authors' Davies–Harte sampler (utils.py) as a linear map: its covariance is the exact
/// fGn covariance plus an alternating term of variance (λ₀ − λ_N)/(2N), with λ₀ and λ_N the
/// plain and the alternating sums of the circulant's first row γ(0..N−1), 0, γ(N−1..1) — a
/// closed form that a sampler with λ_N in the middle (exact Davies–Harte), a sign error or a
/// shifted frequency fails.
#[test]
fn the_authors_fbm_sampler_has_the_exact_covariance_plus_an_alternating_term() {
    let n = 64i64;
    for h in [0.2, 0.5, 0.7, 0.8] {
        let row: Vec<f64> = (0..2 * n)
            .map(|m| match m {
                _ if m < n => gamma(m, h),
                _ if m == n => 0.0,
                _ => gamma(2 * n - m, h),
            })
            .collect();
        let lambda0: f64 = row.iter().sum();
        let lambda_n: f64 = row
            .iter()
            .enumerate()
            .map(|(m, r)| if m % 2 == 0 { *r } else { -r })
            .sum();
        let c = (lambda0 - lambda_n) / (2 * n) as f64;
        let eig = authors_eigenvalues(n, h);
        assert!(
            eig.iter().all(|&l| l > 0.0),
            "H={h}: a negative eigenvalue at N = {n}"
        );
        assert!((eig[0] - lambda0).abs() < 1e-9 && (eig[n as usize] - lambda_n).abs() < 1e-9);
        let m = authors_fgn_factor(n, h);
        assert_eq!(m.size(), vec![n, 2 * n]);
        let cov = Vec::<f64>::try_from(m.matmul(&m.tr()).view([-1])).unwrap();
        let mut worst = 0f64;
        for k in 0..n {
            for l in 0..n {
                let sign = if (k + l) % 2 == 0 { 1.0 } else { -1.0 };
                let want = gamma(k - l, h) + c * sign;
                worst = worst.max((cov[(k * n + l) as usize] - want).abs());
            }
        }
        assert!(worst < 1e-10, "H={h}: covariance off by {worst}");
        if h == 0.5 {
            assert!(c.abs() < 1e-12, "white noise has no alternating term");
        }
    }
    // The term is large near H = 1 at the paper's depth: variance 0.226 at H = 0.9, L = 1000.
    let c = authors_alternating_variance(1000, 0.9);
    assert!(
        (c - 0.226).abs() < 0.001,
        "H = 0.9, L = 1000: alternating variance {c}"
    );
    // Drawn weights: d·Var W = 1 + c, lag-1 correlation (γ(1) − c)/(1 + c).
    let _g = lock();
    tch::manual_seed(5);
    let (h, l, d) = (0.8, 64, 16);
    let c = authors_alternating_variance(l, h);
    let w = layer_weights(LayerInit::FbmAuthors { hurst: h }, 8, l, d, d, Device::Cpu);
    let var = f(&w.square().mean(Kind::Double)) * d as f64;
    assert!(
        (var - (1.0 + c)).abs() < 0.03,
        "d·Var W = {var}, want {}",
        1.0 + c
    );
    let seq = w.permute([0, 2, 3, 1]).reshape([-1, l]);
    let want = (gamma(1, h) - c) / (1.0 + c);
    let got = lag_corr(&seq, 1);
    assert!((got - want).abs() < 0.03, "lag-1 {got} vs {want}");
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
