//! `kind: heatmap` (M7): log10 of the forward and backward metrics over H × β (fBm init), with
//! the measured explosion boundary β*(H) and the theoretical max(H, 1/2) (arXiv:2206.06929,
//! docs/marion2022.md).
use anyhow::Result;
use std::path::Path;
use tch::Device;

use super::scaling::{self, ScalingSpec, Stats};
use super::spec::{Figure, HeatmapFig};
use crate::model::weight_init::FbmSampler;
use crate::report::acceptance::{Acceptance, Check};
use crate::report::heatmap::{Heatmap, NanAs};
use crate::report::table::Table;

pub(super) fn heatmap_figure(
    fig: &Figure,
    s: &HeatmapFig,
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<(String, Acceptance)> {
    let hs = s.hursts.values();
    let betas = s.betas.values();
    let spec = ScalingSpec {
        model: s.model,
        inits: hs.iter().map(|&h| s.fbm_sampler.init(h)).collect(),
        depths: vec![s.depth],
        betas: betas.clone(),
        width: s.width.width,
        input_dim: s.draw.input_dim,
        output_dim: 1,
        models: s.models,
        inputs: s.inputs,
        chunk: s.draw.chunk,
        seed: s.draw.seed,
        device,
    };
    let rows = scaling::run(&spec, Some(&out.join("scaling.csv")), quiet)?;
    scaling::summary_table(&rows).write_csv(&out.join("summary.csv"))?;
    let summary = scaling::summarize(&rows);
    let mut text = format!(
        "Figures: {0}-forward.svg/png, {0}-backward.svg/png.\n\n",
        fig.stem
    );
    let mut bounds: Vec<Vec<(f64, f64)>> = vec![vec![], vec![]];
    for (mi, metric) in ["forward", "backward"].iter().enumerate() {
        let values = metric_grid(&summary, s.fbm_sampler, &hs, &betas, mi);
        bounds[mi] = boundary(&hs, &betas, &values, s.explosion_log10);
        let theory: Vec<(f64, f64)> = hs.iter().map(|&h| (h, h.max(0.5))).collect();
        Heatmap {
            title: format!("{}: log10 {metric} metric (L = {})", fig.figure, s.depth),
            x_label: "Hurst index H".into(),
            y_label: "β (scale L^-β)".into(),
            xs: hs.clone(),
            ys: betas.clone(),
            values,
            vmin: -1.0,
            vmax: 1.0,
            value_label: format!("log10 {metric}"),
            curves: vec![
                ("measured boundary β*(H)".into(), bounds[mi].clone()),
                ("max(H, 1/2)".into(), theory),
            ],
            nan: NanAs::Overflow,
        }
        .write(&out.join(format!("{}-{metric}", fig.stem)))?;
    }
    let boundary_table = boundary_table(s, &hs, &bounds);
    boundary_table.write_csv(&out.join("boundary.csv"))?;
    text += &boundary_table.to_markdown();
    let gap = bounds[0]
        .iter()
        .map(|&(h, star)| (star - h.max(0.5)).abs())
        .sum::<f64>()
        / bounds[0].len().max(1) as f64;
    let mut acc = Acceptance::default();
    acc.push(Check::new(
        "mean |β*(H) − max(H, 1/2)| of the forward metric's boundary over H",
        gap,
        0.0,
        0.1,
    ));
    Ok((text, acc))
}

/// Rows β, columns H: the mean log10 of the forward (`metric` 0) or backward (1) metric of
/// each (fBm H, β) cell of `summary`.
fn metric_grid(
    summary: &scaling::Summary,
    sampler: FbmSampler,
    hs: &[f64],
    betas: &[f64],
    metric: usize,
) -> Vec<Vec<f64>> {
    let cell = |h: f64, b: f64| -> (Stats, Stats) {
        let init = sampler.init(h).to_string();
        let (_, _, series) = summary
            .iter()
            .find(|(i, beta, _)| *i == init && *beta == b)
            .expect("every cell measured");
        (series[0].1, series[0].2)
    };
    betas
        .iter()
        .map(|&b| {
            hs.iter()
                .map(|&h| {
                    let (f, bw) = cell(h, b);
                    if metric == 0 {
                        f.log10_mean
                    } else {
                        bw.log10_mean
                    }
                })
                .collect()
        })
        .collect()
}

/// Per H, the explosion boundary β*: scanning from the largest β down, the last β before a
/// cell of `values` (rows β, columns H) is NaN or exceeds `explosion_log10`; the largest β
/// when even that one explodes (the boundary lies at or above the grid's top).
fn boundary(
    hs: &[f64],
    betas: &[f64],
    values: &[Vec<f64>],
    explosion_log10: f64,
) -> Vec<(f64, f64)> {
    hs.iter()
        .enumerate()
        .map(|(j, &h)| {
            let mut star = betas[betas.len() - 1];
            for i in (0..betas.len()).rev() {
                let v = values[i][j];
                if v.is_nan() || v > explosion_log10 {
                    break;
                }
                star = betas[i];
            }
            (h, star)
        })
        .collect()
}

/// The boundaries of both metrics per H, with the theory's max(H, 1/2).
fn boundary_table(s: &HeatmapFig, hs: &[f64], bounds: &[Vec<(f64, f64)>]) -> Table {
    let mut table = Table::new(
        format!(
            "Explosion boundary: smallest β above which every β has mean log10(metric) ≤ {} (L = {})",
            s.explosion_log10, s.depth
        ),
        ["H", "β* forward", "β* backward", "max(H, 1/2)"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    for (j, &h) in hs.iter().enumerate() {
        table.push(vec![
            format!("{h}"),
            format!("{:.3}", bounds[0][j].1),
            format!("{:.3}", bounds[1][j].1),
            format!("{:.3}", h.max(0.5)),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::boundary;

    /// β* per H on a hand-made grid (rows β, columns H; explosion above log10 = 1): scanning
    /// from the largest β down, the last β before the first exploding or NaN cell; a stable
    /// cell below an exploding one does not count; a column stable everywhere gives the
    /// smallest β, one exploding at the top the largest.
    #[test]
    fn the_boundary_is_the_last_stable_beta_scanning_down() {
        let hs = [0.2, 0.5, 0.8, 0.9, 0.95];
        let betas = [0.1, 0.3, 0.5, 0.7, 0.9];
        let nan = f64::NAN;
        let values = vec![
            vec![3.0, 3.0, 0.0, 0.0, 3.0], // β 0.1
            vec![2.0, 1.5, 0.0, 0.0, 3.0], // β 0.3
            vec![0.5, 1.0, 0.0, 5.0, 3.0], // β 0.5 (1.0 is not above the threshold)
            vec![0.1, 0.2, 0.0, 0.0, 3.0], // β 0.7
            vec![0.0, nan, 0.0, 0.0, 3.0], // β 0.9
        ];
        let got = boundary(&hs, &betas, &values, 1.0);
        let want = [(0.2, 0.5), (0.5, 0.9), (0.8, 0.1), (0.9, 0.7), (0.95, 0.9)];
        assert_eq!(got, want);
    }
}
