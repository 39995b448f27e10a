//! The fits of the error against the limit: the paper's rate a/L + b·√(D/(LM)) ([`fit_rate`]),
//! the free power law in L, M and D ([`free_exponents`]) and log-log slopes.
use tch::Tensor;

use super::output::to_vec;

/// The least-squares fit err ≈ a/L + b·√(D/(LM)) in log space: minimizes
/// Σ(log err − log(a/L + b√(D/(LM))))² (Gauss–Newton from the relative least-squares solution,
/// a, b ≥ 0), so that small and large errors weigh alike and the fit is not biased low; R² of
/// log err against log prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateFit {
    pub a: f64,
    pub b: f64,
    pub r2: f64,
    pub points: usize,
}

impl RateFit {
    pub fn predict(&self, l: f64, m: f64, d: f64) -> f64 {
        self.a / l + self.b * (d / (l * m)).sqrt()
    }
}

/// Solves the 2×2 system [[s11, s12], [s12, s22]] (x, y) = (t1, t2).
fn solve2(s11: f64, s12: f64, s22: f64, t1: f64, t2: f64) -> Option<(f64, f64)> {
    let det = s11 * s22 - s12 * s12;
    (det.abs() > 1e-12 * (s11 * s22).max(1e-300))
        .then(|| ((t1 * s22 - t2 * s12) / det, (s11 * t2 - s12 * t1) / det))
}

/// Fits a and b over points (L, M, D, err).
pub fn fit_rate(points: &[(f64, f64, f64, f64)]) -> RateFit {
    let pts: Vec<(f64, f64, f64)> = points
        .iter()
        .filter(|p| p.3.is_finite() && p.3 > 0.0)
        .map(|&(l, m, d, e)| (1.0 / l, (d / (l * m)).sqrt(), e))
        .collect();
    let sse = |a: f64, b: f64| -> f64 {
        pts.iter()
            .map(|&(x1, x2, e)| (e.ln() - (a * x1 + b * x2).max(1e-300).ln()).powi(2))
            .sum()
    };
    let Some((a0, b0)) = relative_start(&pts) else {
        return RateFit {
            a: f64::NAN,
            b: f64::NAN,
            r2: f64::NAN,
            points: pts.len(),
        };
    };
    let floor = 1e-12;
    let (a, b) = gauss_newton(&pts, (a0.max(floor), b0.max(floor)), floor, &sse);
    let (a, b) = (
        if a <= floor { 0.0 } else { a },
        if b <= floor { 0.0 } else { b },
    );
    let mean = pts.iter().map(|p| p.2.ln()).sum::<f64>() / pts.len().max(1) as f64;
    let ss_tot: f64 = pts.iter().map(|p| (p.2.ln() - mean).powi(2)).sum();
    RateFit {
        a,
        b,
        r2: if ss_tot > 0.0 {
            1.0 - sse(a, b) / ss_tot
        } else {
            f64::NAN
        },
        points: pts.len(),
    }
}

/// The start of the fit: relative least squares, min Σ((a·x₁ + b·x₂)/err − 1)², over points
/// (x₁ = 1/L, x₂ = √(D/(LM)), err).
fn relative_start(pts: &[(f64, f64, f64)]) -> Option<(f64, f64)> {
    let (mut s11, mut s12, mut s22, mut t1, mut t2) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(x1, x2, e) in pts {
        let (z1, z2) = (x1 / e, x2 / e);
        s11 += z1 * z1;
        s12 += z1 * z2;
        s22 += z2 * z2;
        t1 += z1;
        t2 += z2;
    }
    solve2(s11, s12, s22, t1, t2)
}

/// Gauss–Newton with step halving on the log-space residuals from `start`, a and b kept
/// ≥ `floor`; `sse(a, b)` is the objective.
fn gauss_newton(
    pts: &[(f64, f64, f64)],
    start: (f64, f64),
    floor: f64,
    sse: &dyn Fn(f64, f64) -> f64,
) -> (f64, f64) {
    let (mut a, mut b) = start;
    let mut cur = sse(a, b);
    for _ in 0..100 {
        // Gauss–Newton on r = log err − log p, ∂r/∂a = −x₁/p, ∂r/∂b = −x₂/p.
        let (mut s11, mut s12, mut s22, mut g1, mut g2) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for &(x1, x2, e) in pts {
            let p = a * x1 + b * x2;
            let (j1, j2) = (x1 / p, x2 / p);
            let r = e.ln() - p.ln();
            s11 += j1 * j1;
            s12 += j1 * j2;
            s22 += j2 * j2;
            g1 += j1 * r;
            g2 += j2 * r;
        }
        let Some((da, db)) = solve2(s11, s12, s22, g1, g2) else {
            break;
        };
        let mut step = 1.0;
        let mut improved = false;
        while step > 1e-6 {
            let (na, nb) = ((a + step * da).max(floor), (b + step * db).max(floor));
            let next = sse(na, nb);
            if next < cur {
                improved = (cur - next) > 1e-14 * cur.max(1e-300);
                (a, b, cur) = (na, nb, next);
                break;
            }
            step *= 0.5;
        }
        if !improved {
            break;
        }
    }
    (a, b)
}

/// Free power law log err = c + p_L log L + p_M log M + p_D log D by least squares (the
/// exponents the data show, without assuming the rate's form): (p_L, p_M, p_D).
pub fn free_exponents(points: &[(f64, f64, f64, f64)]) -> Option<(f64, f64, f64)> {
    let rows: Vec<[f64; 5]> = points
        .iter()
        .filter(|p| p.3.is_finite() && p.3 > 0.0)
        .map(|&(l, m, d, e)| [1.0, l.ln(), m.ln(), d.ln(), e.ln()])
        .collect();
    let x = Tensor::from_slice(
        &rows
            .iter()
            .flat_map(|r| r[..4].to_vec())
            .collect::<Vec<f64>>(),
    )
    .view([-1, 4]);
    let y = Tensor::from_slice(&rows.iter().map(|r| r[4]).collect::<Vec<f64>>()).view([-1, 1]);
    let (sol, _, _, _) = x.linalg_lstsq(&y, None::<f64>, "gelsd");
    let v = to_vec(&sol);
    (v.len() == 4 && v.iter().all(|c| c.is_finite())).then(|| (v[1], v[2], v[3]))
}

/// Log-log slope of points (x, y > 0); points with y ≤ 0 or not finite are left out.
pub(super) fn loglog_slope(points: &[(f64, f64)]) -> f64 {
    crate::util::fit::fit(points).power
}
