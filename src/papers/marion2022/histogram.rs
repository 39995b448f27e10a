//! `kind: histogram` (M2): one output coordinate B h_L, the forward metric, and the two
//! quantities the authors' code histograms (‖h_L‖/‖h_0‖ and ‖∂ℓ/∂h_0‖/‖∂ℓ/∂h_L‖) over many
//! random models, with their moments, the Kolmogorov–Smirnov distance to the fitted Gaussian,
//! and each histogram against that Gaussian's density.
use anyhow::Result;
use statrs::distribution::{Continuous, ContinuousCDF, Normal};
use std::path::Path;
use tch::Device;

use super::scaling::{self, ScalingSpec};
use super::spec::{Figure, HistogramFig};
use crate::report::acceptance::{Acceptance, Check};
use crate::report::plot::{multi_panel, Panel, PlotSpec, Series};
use crate::report::table::Table;

// Long on purpose: the draw, the two quantities' moments, KS check, histogram and Gaussian
// overlay read as one figure, in the order of its table's columns.
/// Figure M2: `s.models` random models' output, forward metric and norm ratios at one (L, β), their
/// histograms against the fitted Gaussian, the moments table, and the check that the output is
/// Gaussian (√n · KS distance below 1.36).
#[allow(clippy::too_many_lines)]
pub(super) fn histogram_figure(
    fig: &Figure,
    s: &HistogramFig,
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<(String, Acceptance)> {
    let spec = ScalingSpec {
        model: s.model,
        inits: vec![s.init],
        depths: vec![s.depth],
        betas: vec![s.beta],
        width: s.width,
        input_dim: s.draw.input_dim,
        output_dim: 1,
        models: s.models,
        inputs: 1,
        chunk: s.draw.chunk,
        seed: s.draw.seed,
        device,
    };
    let rows = scaling::run(&spec, Some(&out.join("samples.csv")), quiet)?;
    let mut text = String::new();
    let mut panels = Vec::new();
    let mut table = moments_table(s);
    let mut acc = Acceptance::default();
    for (name, label, values) in [
        (
            "output",
            "output B h_L (first coordinate)",
            rows.iter().map(|r| r.output).collect::<Vec<_>>(),
        ),
        (
            "forward",
            "‖h_L − h_0‖ / ‖h_0‖",
            rows.iter().map(|r| r.forward).collect::<Vec<_>>(),
        ),
        // The two quantities the authors' code histograms for this figure.
        (
            "ratio",
            "‖h_L‖ / ‖h_0‖",
            rows.iter().map(|r| r.ratio).collect::<Vec<_>>(),
        ),
        (
            "grad_ratio",
            "‖∂ℓ/∂h_0‖ / ‖∂ℓ/∂h_L‖",
            rows.iter().map(|r| r.grad_ratio).collect::<Vec<_>>(),
        ),
    ] {
        let v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        let m = Moments::of(&v);
        if name == "output" {
            // The paper's claim: at β = 1/2 the output is Gaussian over the draws. √n times the
            // KS distance below 1.36, the 95 % critical value of the KS test (conservative
            // here: the Gaussian is fitted to the same draws).
            acc.push(Check::new(
                format!(
                    "√n · KS distance of the output to the fitted Gaussian (n = {})",
                    v.len()
                ),
                m.ks * (v.len() as f64).sqrt(),
                0.0,
                1.36,
            ));
        }
        table.push(vec![
            label.to_string(),
            format!("{:.4}", m.mean),
            format!("{:.4}", m.std),
            format!("{:.3}", m.skewness),
            format!("{:.3}", m.excess_kurtosis),
            format!("{:.4}", m.ks),
        ]);
        let (steps, bins) = histogram(&m.sorted, s.bins);
        bins.write_csv(&out.join(format!("histogram-{name}.csv")))?;
        let (lo, hi) = (m.sorted[0], m.sorted[m.sorted.len() - 1]);
        let curve: Vec<(f64, f64)> = (0..=200)
            .map(|i| {
                let x = lo + (hi - lo) * i as f64 / 200.0;
                (x, Normal::new(m.mean, m.std).map_or(f64::NAN, |n| n.pdf(x)))
            })
            .collect();
        panels.push(Panel {
            spec: PlotSpec::new(label, label, "density"),
            series: vec![
                Series::new(format!("histogram ({} models)", v.len()), steps),
                Series::new(format!("N({:.3}, {:.3}²)", m.mean, m.std), curve),
            ],
        });
    }
    multi_panel(&out.join(&fig.stem), &fig.title, &panels)?;
    table.write_csv(&out.join("moments.csv"))?;
    text += &format!("Figure: {}.svg/png.\n\n", fig.stem);
    text += &table.to_markdown();
    Ok((text, acc))
}

/// The (empty) table of the moments of each quantity.
fn moments_table(s: &HistogramFig) -> Table {
    Table::new(
        format!(
            "Distribution over {} random models (L = {}, width {}, β = {}, {} init)",
            s.models, s.depth, s.width, s.beta, s.init
        ),
        [
            "quantity",
            "mean",
            "std",
            "skewness",
            "excess kurtosis",
            "KS distance to fitted N",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
}

/// The sample moments of finite values, and their distance to the fitted normal.
struct Moments {
    mean: f64,
    std: f64,
    skewness: f64,
    excess_kurtosis: f64,
    /// Kolmogorov–Smirnov distance to N(mean, std²).
    ks: f64,
    /// The values in increasing order.
    sorted: Vec<f64>,
}

impl Moments {
    fn of(v: &[f64]) -> Moments {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        let m3 = v.iter().map(|x| ((x - mean) / std).powi(3)).sum::<f64>() / n;
        let m4 = v.iter().map(|x| ((x - mean) / std).powi(4)).sum::<f64>() / n - 3.0;
        let mut sorted = v.to_vec();
        sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
        // Kolmogorov–Smirnov distance to the fitted normal.
        let cdf = |x: f64| Normal::new(mean, std).map_or(f64::NAN, |n| n.cdf(x));
        let ks = sorted
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let c = cdf(x);
                (c - i as f64 / n).abs().max(((i + 1) as f64 / n - c).abs())
            })
            .fold(0.0, f64::max);
        Moments {
            mean,
            std,
            skewness: m3,
            excess_kurtosis: m4,
            ks,
            sorted,
        }
    }
}

/// The histogram of `sorted` in `bins` equal bins over [min, max]: as a density step line, and
/// as a table (bin_lo, bin_hi, count, density).
fn histogram(sorted: &[f64], bins: usize) -> (Vec<(f64, f64)>, Table) {
    let n = sorted.len() as f64;
    let (lo, hi) = (sorted[0], sorted[sorted.len() - 1]);
    let w = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    for &x in sorted {
        counts[(((x - lo) / w) as usize).min(bins - 1)] += 1;
    }
    let mut steps = vec![(lo, 0.0)];
    let mut rows = Table::new(
        "",
        vec![
            "bin_lo".into(),
            "bin_hi".into(),
            "count".into(),
            "density".into(),
        ],
    );
    for (i, &c) in counts.iter().enumerate() {
        let d = c as f64 / (n * w);
        let (a, b) = (lo + w * i as f64, lo + w * (i + 1) as f64);
        steps.extend([(a, d), (b, d)]);
        rows.push(vec![
            a.to_string(),
            b.to_string(),
            c.to_string(),
            d.to_string(),
        ]);
    }
    steps.push((hi, 0.0));
    (steps, rows)
}
