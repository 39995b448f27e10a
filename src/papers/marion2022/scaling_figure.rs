//! `kind: scaling` (M1, M3, M4, M5): [`super::scaling`] over depths L × β, mean and spread,
//! log-log slopes, one panel per β.
use anyhow::Result;
use std::path::Path;
use tch::Device;

use super::scaling::{self, ScalingRow, ScalingSpec};
use super::spec::{Figure, Metric, ScalingFig};
use crate::model::weight_init::LayerInit;
use crate::report::acceptance::{Acceptance, Check};
use crate::report::table::Table;
use crate::util::write_atomic;

pub(super) fn scaling_figure(
    fig: &Figure,
    s: &ScalingFig,
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<(String, Acceptance)> {
    let spec = ScalingSpec {
        model: s.model,
        inits: vec![s.init],
        depths: s.depths.clone(),
        betas: s.betas.clone(),
        width: s.sizes.width,
        input_dim: s.draw.input_dim,
        output_dim: 1,
        models: s.sizes.models,
        inputs: s.sizes.inputs,
        chunk: s.draw.chunk,
        seed: s.draw.seed,
        device,
    };
    let rows = scaling::run(&spec, Some(&out.join("scaling.csv")), quiet)?;
    let md = scaling::write_report(&rows, out, &fig.title)?;
    let (metric, label) = match s.metric {
        Metric::Forward => ("forward", "‖h_L − h_0‖ / ‖h_0‖"),
        Metric::Backward => ("backward", "‖∂ℓ/∂h_0 − ∂ℓ/∂h_L‖ / ‖∂ℓ/∂h_L‖"),
    };
    // The figure itself: the paper's metric, one panel per β (copied under a stable name).
    let name = s.init.to_string().replace(':', "");
    for ext in ["svg", "png"] {
        let from = out.join(format!("{metric}-{name}.{ext}"));
        if from.exists() {
            write_atomic(
                &out.join(format!("{}.{ext}", fig.stem)),
                std::fs::read(&from)?,
            )?;
        }
    }
    let mut t = format!(
        "Figure: {}.svg/png ({label} against L, mean with 10%/90% quantiles over {} models × {} inputs, {} init).\n\n",
        fig.stem, s.sizes.models, s.sizes.inputs, s.init
    );
    t += &md;
    t += "\n";
    t += &depth_table(s, label, &rows).to_markdown();
    Ok((t, acceptance(s, &rows)))
}

/// The critical β of an initialization: 1/2 for i.i.d. weights (a neural SDE), 1 for smooth
/// ones (a neural ODE), max(H, 1/2) for fBm of Hurst index H (Marion et al., Section 4).
fn critical_beta(init: LayerInit) -> f64 {
    match init {
        LayerInit::Iid => 0.5,
        LayerInit::Smooth => 1.0,
        LayerInit::Fbm { hurst } | LayerInit::FbmAuthors { hurst } => hurst.max(0.5),
    }
}

/// The paper's claim as checks on the log-log slope p of the mean metric against L, per β:
/// below the critical β* the metric explodes (p ≥ 0.5), at β* it stays of order 1
/// (|p| ≤ 0.15), above it it vanishes like L^(β* − β) (p within 0.15 of β* − β).
fn acceptance(s: &ScalingFig, rows: &[ScalingRow]) -> Acceptance {
    let critical = critical_beta(s.init);
    let mut a = Acceptance::default();
    for (_, beta, series) in scaling::summarize(rows) {
        let points: Vec<(f64, f64)> = series
            .iter()
            .map(|(l, f, b)| {
                let st = match s.metric {
                    Metric::Forward => f,
                    Metric::Backward => b,
                };
                (*l as f64, st.mean)
            })
            .collect();
        let p = crate::util::fit::fit(&points).power;
        let (what, lo, hi) = if beta < critical - 1e-9 {
            ("explodes", 0.5, f64::INFINITY)
        } else if beta > critical + 1e-9 {
            ("vanishes", critical - beta - 0.15, critical - beta + 0.15)
        } else {
            ("stays of order 1", -0.15, 0.15)
        };
        a.push(Check::new(
            format!("β = {beta} (β* = {critical}) {what}: log-log slope in L"),
            p,
            lo,
            hi,
        ));
    }
    a
}

/// Per-L table of the figure's metric: mean ± std, one column per β.
fn depth_table(s: &ScalingFig, label: &str, rows: &[ScalingRow]) -> Table {
    let mut table = Table::new(
        format!("{label}: mean ± std per depth"),
        std::iter::once("L".to_string())
            .chain(s.betas.iter().map(|b| format!("β = {b}")))
            .collect(),
    );
    let summary = scaling::summarize(rows);
    for &l in &s.depths {
        let mut row = vec![l.to_string()];
        for (_, _, series) in &summary {
            let st = series.iter().find(|x| x.0 == l).map(|x| match s.metric {
                Metric::Forward => x.1,
                Metric::Backward => x.2,
            });
            row.push(st.map_or(String::new(), |st| {
                format!("{:.3e} ± {:.2e}", st.mean, st.std)
            }));
        }
        table.push(row);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::marion_net::MarionModel;
    use crate::papers::marion2022::spec::{Draw, ScalingSizes};

    /// Rows whose forward metric is exactly L^p(β) (the theory's closed form per regime).
    fn rows(init: LayerInit, slopes: &[(f64, f64)]) -> Vec<ScalingRow> {
        let mut out = Vec::new();
        for &(beta, p) in slopes {
            for depth in [10, 100, 1000] {
                out.push(ScalingRow {
                    model: "full".into(),
                    init: init.to_string(),
                    depth,
                    beta,
                    width: 40,
                    sample: 0,
                    input: 0,
                    forward: (depth as f64).powf(p),
                    backward: 1.0,
                    output: 0.0,
                    ratio: f64::NAN,
                    grad_ratio: f64::NAN,
                });
            }
        }
        out
    }

    fn fig(init: LayerInit, betas: &[f64]) -> ScalingFig {
        ScalingFig {
            model: MarionModel::Full,
            init,
            depths: vec![10, 100, 1000],
            betas: betas.to_vec(),
            metric: Metric::Forward,
            sizes: ScalingSizes::default(),
            draw: Draw::default(),
        }
    }

    /// i.i.d.: β* = 1/2, the metric ∝ L^(1/2 − β) above it; smooth: β* = 1, ∝ L^(1 − β).
    #[test]
    fn the_checks_follow_the_critical_beta_of_each_init() {
        let iid = fig(LayerInit::Iid, &[0.25, 0.5, 1.0]);
        let a = acceptance(
            &iid,
            &rows(LayerInit::Iid, &[(0.25, 1.5), (0.5, 0.0), (1.0, -0.5)]),
        );
        assert_eq!(a.checks.len(), 3);
        assert!(a.passed(), "{}", a.lines());
        // The smooth regime's exponents under the i.i.d. β*: β = 1 stays flat, not L^-1/2.
        let a = acceptance(
            &iid,
            &rows(LayerInit::Iid, &[(0.25, 1.5), (0.5, 0.0), (1.0, 0.0)]),
        );
        assert_eq!(a.failed().len(), 1, "{}", a.lines());
        let smooth = fig(LayerInit::Smooth, &[0.5, 1.0, 2.0]);
        let a = acceptance(
            &smooth,
            &rows(LayerInit::Smooth, &[(0.5, 3.0), (1.0, 0.0), (2.0, -1.0)]),
        );
        assert!(a.passed(), "{}", a.lines());
        // An i.i.d. reading of smooth weights (β = 1 decaying like L^-1/2) fails.
        let a = acceptance(
            &smooth,
            &rows(LayerInit::Smooth, &[(0.5, 3.0), (1.0, -0.5), (2.0, -1.0)]),
        );
        assert!(!a.passed());
        assert_eq!(critical_beta(LayerInit::Fbm { hurst: 0.8 }), 0.8);
        assert_eq!(critical_beta(LayerInit::Fbm { hurst: 0.2 }), 0.5);
    }
}
