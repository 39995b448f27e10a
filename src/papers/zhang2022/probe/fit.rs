//! Growth of the probe's ratios with the number of blocks L, fitted per (model, norm, τ rule):
//! the exponent p of ratio ∝ L^p (least squares of log ratio on log L) and the rate r of
//! ratio ∝ e^{rL} (least squares of ln ratio on L), over the depths where the ratio is finite
//! (mean over seeds in log space). The growth label is read off those fits, never assumed:
//! `overflow` if the ratio became inf/NaN, `exponential` if ln ratio is linear in L (better R²
//! than the log-log fit) and grows, `polynomial` if p > 0.15, `vanishing` if p < -0.15,
//! `bounded` otherwise.
use super::ProbeRow;
use crate::util::fit::{fit, fmt_sci, group_by_depth, log_mean, Fit};

/// One fitted line of the stability table.
#[derive(Debug, Clone, PartialEq)]
pub struct FitRow {
    pub model: String,
    pub norm: String,
    pub tau_rule: String,
    /// (L, mean over seeds) for each depth, in increasing L; non-finite means are kept.
    pub forward: Vec<(f64, f64)>,
    pub backward: Vec<(f64, f64)>,
    pub forward_fit: Fit,
    pub backward_fit: Fit,
}

/// Groups rows by (model, norm, τ rule), averages seeds per L, and fits both ratios.
pub fn fit_rows(rows: &[ProbeRow]) -> Vec<FitRow> {
    group_by_depth(rows.iter().map(|r| {
        (
            (
                format!("{:?}", r.model).to_lowercase(),
                format!("{:?}", r.norm).to_lowercase(),
                r.tau_rule.clone(),
            ),
            r.blocks,
            r.forward_ratio,
            r.backward_ratio,
        )
    }))
    .into_iter()
    .map(|(key, by_l)| {
        let forward: Vec<(f64, f64)> = by_l
            .iter()
            .map(|(&l, v)| (l as f64, log_mean(&v.0)))
            .collect();
        let backward: Vec<(f64, f64)> = by_l
            .iter()
            .map(|(&l, v)| (l as f64, log_mean(&v.1)))
            .collect();
        FitRow {
            model: key.0,
            norm: key.1,
            tau_rule: key.2,
            forward_fit: fit(&forward),
            backward_fit: fit(&backward),
            forward,
            backward,
        }
    })
    .collect()
}

/// Headers and cells of the stability table.
pub fn table_cells(fits: &[FitRow]) -> (Vec<String>, Vec<Vec<String>>) {
    let headers = [
        "model",
        "norm",
        "τ rule",
        "L",
        "forward at L min",
        "forward at L max",
        "forward ∝ L^p: p",
        "forward growth",
        "backward at L min",
        "backward at L max",
        "backward ∝ L^p: p",
        "backward growth",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rows = fits
        .iter()
        .map(|f| {
            let lmin = f.forward.first().map(|p| p.0).unwrap_or(f64::NAN);
            let lmax = f.forward.last().map(|p| p.0).unwrap_or(f64::NAN);
            let growth = |fit: &Fit| match fit.overflow_at {
                Some(l) => format!("overflow at L={l}"),
                None => fit.label().to_string(),
            };
            vec![
                f.model.clone(),
                f.norm.clone(),
                f.tau_rule.clone(),
                format!("{lmin}–{lmax}"),
                fmt_sci(f.forward.first().map(|p| p.1).unwrap_or(f64::NAN)),
                fmt_sci(f.forward.last().map(|p| p.1).unwrap_or(f64::NAN)),
                format!("{:.3}", f.forward_fit.power),
                growth(&f.forward_fit),
                fmt_sci(f.backward.first().map(|p| p.1).unwrap_or(f64::NAN)),
                fmt_sci(f.backward.last().map(|p| p.1).unwrap_or(f64::NAN)),
                format!("{:.3}", f.backward_fit.power),
                growth(&f.backward_fit),
            ]
        })
        .collect();
    (headers, rows)
}
