//! The fractional Gaussian noise sampler of Marion et al.'s public code (utils.py,
//! `generate_fbm`, a Davies–Harte circulant embedding), reproduced as a linear map so that
//! `fbm_sampler: authors` draws weights with the law their figures were made with
//! (arXiv:2206.06929; docs/marion2022.md, "Departures"); N = L, the depth, as in their code.
//! Our default sampler is exact
//! (Cholesky, [`super::weight_init::fgn_factor`]); this one differs in three ways:
//!
//! 1. The frequency N is weighted by √(λ₀/2N) where Davies–Harte needs √(λ_N/2N): the
//!    increments gain an alternating component (−1)^k of variance (λ₀ − λ_N)/(2N), nothing at
//!    H = 1/2, about 0.23 at H = 0.9 and L = 1000, negative (less variance) below H = 1/2.
//! 2. The circulant's middle entry r_N is 0 instead of γ(N); for H near 1 some eigenvalues
//!    λ_j are then negative (none for H ≤ 0.85 at L = 1000; 27 of 999 at H = 0.9, 401 at 0.95).
//! 3. Their code takes complex square roots of those negative λ_j and keeps the real part of
//!    the transform: a pair (j, 2N − j) then adds nothing or |λ_j|, depending on the signs of
//!    the rounding errors in the imaginary parts of numpy's FFT. Run with given normals
//!    (numpy 2.4.6, L = 200, 500 and 1000, H up to 0.97, up to 456 negative λ_j), their
//!    output equalled the form below with those λ_j clipped to 0 within 3·10⁻¹¹: the pairs
//!    added nothing. We clip them to 0.
//!
//! With λ_j = Σ_m r_m cos(πjm/N) (r the circulant's first row, 2N entries) and independent
//! standard normals V₀, V_N, a_j, b_j, their increments are, for k = 0..N−1,
//! Z_k = √(λ₀/2N) (V₀ + (−1)^k V_N) + Σ_{j=1}^{N−1} √(λ_j⁺/N) (a_j cos(πjk/N) + b_j sin(πjk/N)),
//! so Cov(Z_k, Z_l) = γ(k−l) + (λ₀ − λ_N)/(2N) (−1)^{k−l} when no λ_j is negative
//! (tests/marion_init.rs checks that closed form).
use tch::{Device, Kind, Tensor};

use super::weight_init::fgn_autocovariance;

/// The eigenvalues λ_0..λ_N of the authors' circulant embedding of N = L = `steps` steps of
/// unit-variance fractional Gaussian noise (first row γ(0), …, γ(N−1), 0, γ(N−1), …, γ(1)).
pub fn authors_eigenvalues(steps: i64, hurst: f64) -> Vec<f64> {
    let n = steps as usize;
    let row: Vec<f64> = (0..2 * n)
        .map(|m| match m {
            _ if m < n => fgn_autocovariance(m as i64, hurst),
            _ if m == n => 0.0,
            _ => fgn_autocovariance((2 * n - m) as i64, hurst),
        })
        .collect();
    let w = std::f64::consts::PI / n as f64;
    (0..=n)
        .map(|j| {
            row.iter()
                .enumerate()
                .map(|(m, r)| r * (w * (j * m) as f64).cos())
                .sum()
        })
        .collect()
}

/// The variance (λ₀ − λ_N)/(2N) of the alternating term (−1)^k the authors' sampler adds to
/// each increment (negative below H = 1/2).
pub fn authors_alternating_variance(steps: i64, hurst: f64) -> f64 {
    let lambda = authors_eigenvalues(steps, hurst);
    (lambda[0] - lambda[steps as usize]) / (2 * steps) as f64
}

/// The factor M (f64, CPU, `[L, 2L]`) of the authors' sampler: their L increments are
/// z @ Mᵀ for z of 2L standard normals. Columns: V₀, V_N, then a_j and b_j for j = 1..L−1.
pub fn authors_fgn_factor(steps: i64, hurst: f64) -> Tensor {
    let n = steps as usize;
    let lambda = authors_eigenvalues(steps, hurst);
    let w = std::f64::consts::PI / n as f64;
    let edge = (lambda[0] / (2 * n) as f64).sqrt();
    let amp: Vec<f64> = lambda
        .iter()
        .map(|l| (l.max(0.0) / n as f64).sqrt())
        .collect();
    let mut m = vec![0f64; n * 2 * n];
    for k in 0..n {
        let row = &mut m[k * 2 * n..(k + 1) * 2 * n];
        row[0] = edge;
        row[1] = if k % 2 == 0 { edge } else { -edge };
        for (j, amp) in amp.iter().enumerate().take(n).skip(1) {
            let angle = w * ((j * k) % (2 * n)) as f64;
            row[2 * j] = amp * angle.cos();
            row[2 * j + 1] = amp * angle.sin();
        }
    }
    Tensor::from_slice(&m).view([steps, 2 * steps])
}

/// `n` sequences of L steps of the authors' fractional Gaussian noise (`[n, L]`, f32).
pub fn authors_fgn(n: i64, steps: i64, hurst: f64, device: Device) -> Tensor {
    let m = authors_fgn_factor(steps, hurst)
        .to_kind(Kind::Float)
        .to_device(device);
    Tensor::randn([n, 2 * steps], (Kind::Float, device)).matmul(&m.tr())
}
