//! The figures of a run's per-block diagnostics (blocks.csv, [`crate::train::diagnostics`]):
//! a heatmap block × epoch of log₁₀ ‖τ·f‖/‖skip‖ (white: the branch as large as the skip
//! path; blue: the block is nearly its identity; red: the branch dominates) and the curves of
//! each block's τ over the epochs.
use anyhow::Result;
use std::path::{Path, PathBuf};

use super::heatmap::{Heatmap, NanAs};
use super::plot::{self, PlotSpec, Series};
use crate::train::diagnostics::{self, BlockRow};

/// Writes `<stem>-ratio.svg/png` and `<stem>-tau.svg/png` for the run in `run_dir`; nothing
/// (and no error) when it has no blocks.csv yet.
pub fn block_figures(run_dir: &Path, stem: &Path, title: &str) -> Result<Vec<PathBuf>> {
    let path = run_dir.join(diagnostics::FILE);
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let rows = diagnostics::read(&path)?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut files = ratio_heatmap(&rows, &with_suffix(stem, "-ratio"), title)?;
    files.extend(tau_curves(&rows, &with_suffix(stem, "-tau"), title)?);
    Ok(files)
}

fn with_suffix(stem: &Path, suffix: &str) -> PathBuf {
    let name = stem
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    stem.with_file_name(format!("{name}{suffix}"))
}

fn axes(rows: &[BlockRow]) -> (Vec<i64>, Vec<i64>) {
    let mut epochs: Vec<i64> = rows.iter().map(|r| r.epoch).collect();
    let mut blocks: Vec<i64> = rows.iter().map(|r| r.block).collect();
    epochs.sort();
    epochs.dedup();
    blocks.sort();
    blocks.dedup();
    (epochs, blocks)
}

fn ratio_heatmap(rows: &[BlockRow], stem: &Path, title: &str) -> Result<Vec<PathBuf>> {
    let (epochs, blocks) = axes(rows);
    let value = |e: i64, b: i64| {
        rows.iter()
            .find(|r| r.epoch == e && r.block == b)
            .map_or(f64::NAN, |r| r.branch_to_skip.log10())
    };
    let values: Vec<Vec<f64>> = blocks
        .iter()
        .map(|&b| epochs.iter().map(|&e| value(e, b)).collect())
        .collect();
    let m = values
        .iter()
        .flatten()
        .filter(|v| v.is_finite())
        .fold(0.5f64, |m, v| m.max(v.abs()));
    Heatmap {
        title: format!("{title}: log10 ‖τ·f‖/‖skip‖ per block"),
        x_label: "epoch".into(),
        y_label: "block ℓ".into(),
        xs: epochs.iter().map(|&e| e as f64).collect(),
        ys: blocks.iter().map(|&b| (b + 1) as f64).collect(),
        values,
        vmin: -m,
        vmax: m,
        value_label: "log10 ‖τ·f‖/‖skip‖".into(),
        curves: Vec::new(),
        nan: NanAs::Overflow,
    }
    .write(stem)
}

fn tau_curves(rows: &[BlockRow], stem: &Path, title: &str) -> Result<Vec<PathBuf>> {
    let (_, blocks) = axes(rows);
    let series: Vec<Series> = blocks
        .iter()
        .map(|&b| {
            let pts = rows
                .iter()
                .filter(|r| r.block == b)
                .map(|r| (r.epoch as f64, r.tau))
                .collect();
            let s = Series::new(format!("block {}", b + 1), pts);
            // one colour ramp over the depth; the legend would list every block
            s.rgb(plot::ramp(b as f64 / (blocks.len().max(2) - 1) as f64))
                .unlabelled()
        })
        .collect();
    let spec = PlotSpec::new(format!("{title}: τ per block"), "epoch", "τ");
    plot::line_plot(stem, &spec, &series)
}
