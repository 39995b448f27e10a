//! Reports from finished runs.
//!
//! - [`compare`]: `deepres compare A B` joins two runs' metrics.csv per epoch (normalized vs
//!   unnormalized) into one CSV and a Markdown table.
//! - [`sweep_report`]: `deepres report` for a sweep: [`sweep_report::render`] reads the cells'
//!   run directories and writes, under `<sweep dir>/report/`, the tables (Markdown, CSV, a plot of
//!   test error vs the row key) or the training curves (two-panel figures, long CSV) that the
//!   grid file's `report:` section asks for.
//! - Building blocks, shared by all papers' tables and figures:
//!   [`plot`] (line plots, SVG + PNG, log axes, several panels), [`heatmap`] (heatmaps), [`table`] (Markdown and CSV
//!   tables), [`runs`] (a run directory loaded leniently: config, summary, metrics), and
//!   [`published`] (the papers' numbers to print beside ours).
pub mod compare;
pub mod heatmap;
pub mod plot;
pub mod published;
pub mod runs;
pub mod sweep_report;
pub mod table;

pub use sweep_report::{render, render_with, ReportContext};

use anyhow::Result;
use std::path::Path;

/// Writes `text` to `path` atomically: a temporary file beside it, then a rename, so a reader
/// (or a kill) never sees half a file.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text)
        .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", path.display()))
}
