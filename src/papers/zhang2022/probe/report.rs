//! The probe's report: the fitted-growth table and the log-log plots of both ratios.
use anyhow::Result;
use std::path::Path;

use super::{fit, ProbeRow};

/// Writes the stability table (`stability.md`, `stability.csv`) and the log-log plots of both
/// ratios against L (one line per τ rule, one figure per model and norm) into `out_dir`;
/// returns the Markdown table.
pub fn write(rows: &[ProbeRow], out_dir: &Path) -> Result<String> {
    let fits = fit::fit_rows(rows);
    let (headers, cells) = fit::table_cells(&fits);
    let table = crate::report::table::Table {
        title: "Stability at initialization: ratios against the number of blocks L (geometric mean over seeds)".into(),
        headers,
        rows: cells,
    };
    table.write_csv(&out_dir.join("stability.csv"))?;
    let md = table.to_markdown();
    crate::util::write_atomic(&out_dir.join("stability.md"), &md)?;
    let mut groups: Vec<(String, String)> = fits
        .iter()
        .map(|f| (f.model.clone(), f.norm.clone()))
        .collect();
    groups.dedup();
    for (model, norm) in groups {
        let of = |which: fn(&fit::FitRow) -> &Vec<(f64, f64)>| -> Vec<crate::report::plot::Series> {
            fits.iter()
                .filter(|f| f.model == model && f.norm == norm)
                .map(|f| {
                    crate::report::plot::Series::new(
                        format!("τ = {}", f.tau_rule),
                        which(f).clone(),
                    )
                })
                .collect()
        };
        let panel = |name: &str, y: &str, series| crate::report::plot::Panel {
            spec: crate::report::plot::PlotSpec::new(
                format!("{name} ratio"),
                "residual blocks L",
                y,
            )
            .log_x(true)
            .log_y(true)
            .markers(true),
            series,
        };
        let panels = [
            panel("forward", "‖h_L‖ / ‖h_0‖", of(|f| &f.forward)),
            panel("backward", "‖∂ℓ/∂h_0‖ / ‖∂ℓ/∂h_L‖", of(|f| &f.backward)),
        ];
        let title = format!("Stability at initialization: {model}, norm {norm} (mean over seeds)");
        crate::report::plot::multi_panel(
            &out_dir.join(format!("stability-{model}-{norm}")),
            &title,
            &panels,
        )?;
    }
    Ok(md)
}
