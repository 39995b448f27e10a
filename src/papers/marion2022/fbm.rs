//! `kind: fbm-paths` (M6): sample paths of the fractional Brownian motion generator the models'
//! fBm initialization uses, with their increments' std and lag-1 correlation against theory.
use anyhow::Result;
use std::path::Path;
use tch::{Device, Kind};

use super::spec::{FbmPathsFig, Figure};
use crate::model::davies_harte::authors_alternating_variance;
use crate::model::weight_init::{fbm_paths_by, FbmSampler};
use crate::report::plot::{multi_panel, Panel, PlotSpec, Series};
use crate::report::table::Table;

pub(super) fn fbm_figure(
    fig: &Figure,
    s: &FbmPathsFig,
    out: &Path,
    device: Device,
) -> Result<String> {
    tch::manual_seed(s.seed as i64);
    let mut panels = Vec::new();
    let mut csv = Table::new("", vec!["hurst".into(), "k".into(), "value".into()]);
    let mut table = Table::new(
        format!(
            "One path per H over {} layers ({} sampler), and its increments: std and lag-1 \
             correlation against their expected values",
            s.steps,
            if s.fbm_sampler.is_exact() {
                "exact"
            } else {
                "the authors'"
            }
        ),
        [
            "H",
            "increment std (this path)",
            "expected",
            "lag-1 corr (this path)",
            "expected",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    );
    for &h in &s.hursts {
        let p = fbm_paths_by(s.fbm_sampler, 1, s.steps, h, device)
            .view([-1])
            .to_device(Device::Cpu);
        let v = Vec::<f64>::try_from(p.to_kind(Kind::Double))?;
        let inc: Vec<f64> = v.windows(2).map(|w| w[1] - w[0]).collect();
        let n = inc.len() as f64;
        let m2 = inc.iter().map(|x| x * x).sum::<f64>() / n;
        // Expected: std (1/L)^H and lag-1 correlation 2^(2H−1) − 1 (exact fBm); the authors'
        // sampler adds an alternating term of variance `alt` (src/model/davies_harte.rs).
        let alt = match s.fbm_sampler {
            FbmSampler::Exact => 0.0,
            FbmSampler::Authors => authors_alternating_variance(s.steps, h),
        };
        let c1 = inc.windows(2).map(|w| w[0] * w[1]).sum::<f64>() / (n - 1.0) / m2;
        table.push(vec![
            format!("{h}"),
            format!("{:.4}", m2.sqrt()),
            format!("{:.4}", (s.steps as f64).powf(-h) * (1.0 + alt).sqrt()),
            format!("{c1:.3}"),
            format!(
                "{:.3}",
                (2f64.powf(2.0 * h - 1.0) - 1.0 - alt) / (1.0 + alt)
            ),
        ]);
        for (k, x) in v.iter().enumerate() {
            csv.push(vec![h.to_string(), k.to_string(), x.to_string()]);
        }
        panels.push(Panel {
            spec: PlotSpec::new(format!("H = {h}"), "layer k", "B^H(k/L)"),
            series: vec![Series::new(
                format!("H = {h}"),
                v.iter().enumerate().map(|(k, &x)| (k as f64, x)).collect(),
            )],
        });
    }
    csv.write_csv(&out.join("paths.csv"))?;
    multi_panel(&out.join(&fig.stem), &fig.title, &panels)?;
    Ok(format!(
        "Figure: {}.svg/png.\n\n{}",
        fig.stem,
        table.to_markdown()
    ))
}
