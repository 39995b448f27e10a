//! Reports from finished runs: building blocks that import nothing above `train`
//! (the sweep report that uses them is [`crate::sweep::report`]).
//!
//! - [`acceptance`]: a figure's acceptance checks, its verdict line, acceptance.csv and the
//!   exit status of a failed check.
//! - [`blocks`]: a run's per-block diagnostics as a heatmap block × epoch and τ curves.
//! - [`compare`]: `deepres compare A B` joins two runs' metrics.csv per epoch (normalized vs
//!   unnormalized) into one CSV and a Markdown table.
//! - [`page`]: `deepres page` (`make report`), one self-contained HTML page with every paper's
//!   tables and figures found under `runs/`.
//! - Building blocks, shared by all papers' tables and figures:
//!   [`plot`] (line plots, SVG + PNG, log axes, several panels), [`heatmap`] (heatmaps), [`table`] (Markdown and CSV
//!   tables), [`runs`] (a run directory loaded leniently: config, summary, metrics), and
//!   [`published`] (the papers' numbers to print beside ours), [`stats`] (mean, std, Student t
//!   intervals and paired tests over seeds).
pub mod acceptance;
pub mod blocks;
pub mod compare;
pub mod heatmap;
pub mod page;
pub mod plot;
pub mod published;
pub mod runs;
pub mod stats;
pub mod table;
