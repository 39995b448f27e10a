//! Log-log and log-linear least-squares fits of a measured ratio against depth L, the growth
//! label read off them, and grouping of (key, L, forward, backward) measurements by depth.
//! Shared by the τ probe (Zhang et al. 2022) and Marion et al.'s scaling summaries.
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// Exponent p of ratio ∝ L^p.
    pub power: f64,
    /// Rate r of ratio ∝ e^{rL}.
    pub rate: f64,
    /// R² of the two fits.
    pub r2_power: f64,
    pub r2_rate: f64,
    /// Smallest L at which the ratio was inf or NaN.
    pub overflow_at: Option<f64>,
}

impl Fit {
    pub fn label(&self) -> &'static str {
        if self.overflow_at.is_some() {
            "overflow"
        } else if self.rate > 0.0 && self.r2_rate > self.r2_power && self.power > 0.5 {
            "exponential"
        } else if self.power > 0.15 {
            "polynomial"
        } else if self.power < -0.15 {
            "vanishing"
        } else {
            "bounded"
        }
    }
}

/// Least squares slope and R² of y on x.
pub fn slope(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    if points.len() < 2 {
        return (f64::NAN, f64::NAN);
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let syy: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
    if sxx == 0.0 {
        return (f64::NAN, f64::NAN);
    }
    let b = sxy / sxx;
    let r2 = if syy == 0.0 {
        1.0
    } else {
        (sxy * sxy) / (sxx * syy)
    };
    (b, r2)
}

pub fn fit(points: &[(f64, f64)]) -> Fit {
    let finite: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|p| p.1.is_finite() && p.1 > 0.0)
        .collect();
    let overflow_at = points.iter().find(|p| !p.1.is_finite()).map(|p| p.0);
    let (power, r2_power) = slope(
        &finite
            .iter()
            .map(|&(l, r)| (l.ln(), r.ln()))
            .collect::<Vec<_>>(),
    );
    let (rate, r2_rate) = slope(&finite.iter().map(|&(l, r)| (l, r.ln())).collect::<Vec<_>>());
    Fit {
        power,
        rate,
        r2_power,
        r2_rate,
        overflow_at,
    }
}

/// Geometric mean over seeds; any non-finite seed makes the mean inf (overflow is sticky).
pub fn log_mean(values: &[f64]) -> f64 {
    if values.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    (values.iter().map(|v| v.ln()).sum::<f64>() / values.len() as f64).exp()
}

/// Per depth L: the forward and the backward values of every seed or model.
pub type ByDepth = BTreeMap<i64, (Vec<f64>, Vec<f64>)>;

/// Groups (key, L, forward, backward) measurements by key, then by L; keys in first-seen order,
/// L increasing. Shared by the τ probe's fits and Marion's scaling summaries.
pub fn group_by_depth<K: Ord + Clone>(
    rows: impl IntoIterator<Item = (K, i64, f64, f64)>,
) -> Vec<(K, ByDepth)> {
    let mut groups: BTreeMap<K, ByDepth> = BTreeMap::new();
    let mut order: Vec<K> = Vec::new();
    for (key, depth, forward, backward) in rows {
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        let e = groups.entry(key).or_default().entry(depth).or_default();
        e.0.push(forward);
        e.1.push(backward);
    }
    order
        .into_iter()
        .map(|k| {
            let g = groups.remove(&k).unwrap_or_default();
            (k, g)
        })
        .collect()
}

/// A measured ratio for a table: 3 significant digits in scientific notation; inf and NaN as
/// such (overflow is data).
pub fn fmt_sci(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3e}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_recover_known_growth() {
        let ls = [3.0, 6.0, 12.0, 24.0, 48.0, 96.0];
        let poly: Vec<_> = ls.iter().map(|&l: &f64| (l, 2.0 * l.powf(0.7))).collect();
        let f = fit(&poly);
        assert!((f.power - 0.7).abs() < 1e-9 && f.label() == "polynomial");
        let expo: Vec<_> = ls.iter().map(|&l: &f64| (l, (0.3 * l).exp())).collect();
        let f = fit(&expo);
        assert!((f.rate - 0.3).abs() < 1e-9 && f.label() == "exponential");
        let flat: Vec<_> = ls
            .iter()
            .map(|&l: &f64| (l, 1.3 + 0.01 * (l / 3.0).sin()))
            .collect();
        assert_eq!(fit(&flat).label(), "bounded");
        let mut over = expo.clone();
        over[5].1 = f64::INFINITY;
        let f = fit(&over);
        assert_eq!(f.overflow_at, Some(96.0));
        assert_eq!(f.label(), "overflow");
    }
}
