//! `kind: scaling` (M1, M3, M4, M5): [`super::scaling`] over depths L × β, mean and spread,
//! log-log slopes, one panel per β.
use anyhow::Result;
use std::path::Path;
use tch::Device;

use super::scaling::{self, ScalingRow, ScalingSpec};
use super::spec::{Figure, Metric, ScalingFig};
use crate::report::table::Table;
use crate::util::write_atomic;

pub(super) fn scaling_figure(
    fig: &Figure,
    s: &ScalingFig,
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<String> {
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
    Ok(t)
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
