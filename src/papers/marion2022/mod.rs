//! The figures of Marion, Fermanian, Biau, Vert, "Scaling ResNets in the Large-depth Regime"
//! (arXiv:2206.06929; docs/marion2022.md) from `experiments/marion2022/*.yaml`.
//!
//! A figure file holds `figure` (its name), `title`, `spec` (the settings, tagged by `kind`) and
//! `scales` (`smoke`, `full`: keys that replace those of `spec`). Kinds, one file each:
//! - `scaling` (M1, M3, M4, M5), [`scaling_figure`]: [`scaling`] over depths L × β, mean and
//!   spread, log-log slopes, one panel per β;
//! - `histogram` (M2), [`histogram`]: one output coordinate over many random models, with the
//!   fitted Gaussian;
//! - `fbm-paths` (M6), [`fbm`]: sample paths of the fBm generator the models use;
//! - `heatmap` (M7), [`heatmap`]: log10 of the forward and backward metrics over H × β (fBm
//!   init), with the measured explosion boundary and the theoretical max(H, 1/2);
//! - `weights` (M8), [`weights`]: train, then plot a few weight entries against the layer index;
//! - `accuracy` (M9), [`accuracy`]: test accuracy after training over H × β, best over a
//!   learning-rate grid, resumable from its runs CSV.
//!
//! The other files: [`spec`] (the spec types and their validation), [`scaling`] (the
//! measurements at initialization, also `deepres scaling`), [`train`] (the batched training of
//! M8 and M9) and [`checkpoint`] (its per-epoch checkpoint).
//!
//! Outputs go to `<out>/` (default `runs/marion2022/<file stem>/<scale>/`): CSV, Markdown
//! tables, SVG/PNG plots.
pub mod accuracy;
pub mod checkpoint;
pub mod fbm;
pub mod heatmap;
pub mod histogram;
pub mod scaling;
pub mod scaling_figure;
pub mod spec;
pub mod train;
pub mod weights;

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Device;

use crate::report::acceptance::{Acceptance, FigureOutput};

pub use accuracy::runs_key;
pub use checkpoint::checkpoint_key;
pub use spec::{
    AccuracyFig, Batched, Draw, FbmPathsFig, Figure, FigureSpec, HeatmapFig, HeatmapWidth,
    HistogramFig, Inputs, Metric, ScalingFig, ScalingSizes, TrainFig, Training, WeightRun,
    WeightsFig,
};
pub use train::{train_classifiers, TrainRun, TrainSetup, Trained};

/// Runs a figure into `out`; returns the text printed (tables, observations, the paper's
/// claims as acceptance checks with the verdict as its last line) and the checks, also written
/// to `acceptance.csv`.
pub fn run(fig: &Figure, out: &Path, device: Device, quiet: bool) -> Result<FigureOutput> {
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let start = Instant::now();
    let (body, acceptance) = match &fig.spec {
        FigureSpec::Scaling(s) => scaling_figure::scaling_figure(fig, s, out, device, quiet)?,
        FigureSpec::Histogram(s) => histogram::histogram_figure(fig, s, out, device, quiet)?,
        // M6 draws the generator's paths; nothing to check.
        FigureSpec::FbmPaths(s) => (fbm::fbm_figure(fig, s, out, device)?, Acceptance::default()),
        FigureSpec::Heatmap(s) => heatmap::heatmap_figure(fig, s, out, device, quiet)?,
        FigureSpec::Weights(s) => weights::weights_figure(fig, s, out, device, quiet)?,
        FigureSpec::Accuracy(s) => accuracy::accuracy_figure(fig, s, out, device, quiet)?,
    };
    let body = format!(
        "# {} ({}, scale {})\n\n{body}\nwall time: {:.1} s; outputs in {}\n",
        fig.title,
        fig.figure,
        fig.scale,
        start.elapsed().as_secs_f64(),
        out.display()
    );
    FigureOutput::write(body, acceptance, out)
}

/// The default output directory of a figure: `runs/marion2022/<stem>/<scale>`.
pub fn default_out(fig: &Figure) -> PathBuf {
    fig.default_out("marion2022")
}
