//! The figures of Marion et al. (2022, SPEC §1.2) from `experiments/marion2022/*.yaml`.
//!
//! A figure file holds `figure` (its name), `title`, `spec` (the settings, tagged by `kind`) and
//! `scales` (`smoke`, `full`: keys that replace those of `spec`). Kinds:
//! - `scaling` (M1, M3, M4, M5): [`crate::papers::marion2022::scaling`] over depths × β, mean and spread,
//!   log-log slopes, one panel per β;
//! - `histogram` (M2): one output coordinate over many random models, with the fitted Gaussian;
//! - `fbm-paths` (M6): sample paths of the fBm generator the models use;
//! - `heatmap` (M7): log10 of the forward and backward metrics over H × β (fBm init), with the
//!   measured explosion boundary and the theoretical max(H, 1/2);
//! - `weights` (M8): train, then plot a few weight entries against the layer index;
//! - `accuracy` (M9): test accuracy after training over H × β, best over a learning-rate grid.
//!
//! Outputs go to `<out>/` (default `runs/marion2022/<file stem>/<scale>/`): CSV, Markdown
//! tables, SVG/PNG plots.
pub mod scaling;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

use crate::data::{self, DataSpec, DatasetName, DeviceData};
use crate::model::scale::residual_scale;
use crate::model::marion_net::{MarionModel, MarionNet, MarionShape};
use crate::model::weight_init::{fbm_paths, LayerInit};
use scaling::{ScalingSpec, Stats};
use crate::report::heatmap::Heatmap;
use crate::report::plot::{multi_panel, Panel, PlotSpec, Series};
use crate::papers::figure::Linspace;
use crate::report::table::Table;
use crate::train::adam::BatchedAdam;
use crate::train::tensor_file::{self, TensorFile};


fn d_models() -> i64 {
    50
}
fn d_one() -> i64 {
    1
}
fn d_chunk() -> i64 {
    50
}
fn d_train_chunk() -> usize {
    50
}
fn d_width() -> i64 {
    40
}
fn d_input() -> i64 {
    64
}

/// Settings of `kind: scaling`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingFig {
    pub model: MarionModel,
    pub init: LayerInit,
    pub depths: Vec<i64>,
    pub betas: Vec<f64>,
    #[serde(default = "d_width")]
    pub width: i64,
    #[serde(default = "d_input")]
    pub input_dim: i64,
    #[serde(default = "d_models")]
    pub models: i64,
    #[serde(default = "d_one")]
    pub inputs: i64,
    #[serde(default = "d_chunk")]
    pub chunk: i64,
    /// forward | backward: the metric the figure shows.
    pub metric: Metric,
    #[serde(default)]
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Forward,
    Backward,
}

/// Settings of `kind: histogram`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistogramFig {
    pub model: MarionModel,
    pub init: LayerInit,
    pub depth: i64,
    pub beta: f64,
    pub width: i64,
    #[serde(default = "d_input")]
    pub input_dim: i64,
    pub models: i64,
    #[serde(default = "d_chunk")]
    pub chunk: i64,
    pub bins: usize,
    #[serde(default)]
    pub seed: u64,
}

/// Settings of `kind: fbm-paths`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FbmPathsFig {
    pub hursts: Vec<f64>,
    pub steps: i64,
    #[serde(default)]
    pub seed: u64,
}

/// Settings of `kind: heatmap`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeatmapFig {
    pub model: MarionModel,
    pub hursts: Linspace,
    pub betas: Linspace,
    pub depth: i64,
    #[serde(default = "d_width")]
    pub width: i64,
    #[serde(default = "d_input")]
    pub input_dim: i64,
    /// Random models per H (shared by all β).
    pub models: i64,
    /// Random inputs per model and β.
    pub inputs: i64,
    #[serde(default = "d_chunk")]
    pub chunk: i64,
    /// A cell explodes when the mean log10 of its metric exceeds this.
    pub explosion_log10: f64,
    #[serde(default)]
    pub seed: u64,
}

/// One trained configuration of `kind: weights`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightRun {
    pub init: LayerInit,
    pub beta: f64,
}

/// Training settings shared by `weights` and `accuracy`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainFig {
    pub epochs: i64,
    pub batch: i64,
    /// The learning rate is multiplied by 0.1 every `lr_step` epochs (the authors' StepLR).
    pub lr_step: i64,
    /// Keep only the first n training / test examples (none: all).
    #[serde(default)]
    pub limit_train: Option<i64>,
    #[serde(default)]
    pub limit_test: Option<i64>,
}

/// Settings of `kind: weights`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsFig {
    pub model: MarionModel,
    /// Datasets tried in order (the first present is used).
    pub data: Vec<DatasetName>,
    pub depth: i64,
    pub width: i64,
    pub lr: f64,
    pub runs: Vec<WeightRun>,
    /// Weight entries (i, j) plotted per run.
    pub entries: usize,
    pub train: TrainFig,
    #[serde(default)]
    pub seed: u64,
}

/// Settings of `kind: accuracy`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccuracyFig {
    pub model: MarionModel,
    /// Each entry: datasets tried in order (e.g. [mnist, fashion-mnist]); an entry none of
    /// whose datasets is present is skipped with a message.
    pub datasets: Vec<Vec<DatasetName>>,
    pub hursts: Linspace,
    pub betas: Linspace,
    pub depth: i64,
    pub width: i64,
    pub lrs: Vec<f64>,
    pub train: TrainFig,
    /// Models trained at once, in one batched program (memory grows with it).
    #[serde(default = "d_train_chunk")]
    pub chunk: usize,
    #[serde(default)]
    pub seed: u64,
}

/// A figure's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FigureSpec {
    Scaling(ScalingFig),
    Histogram(HistogramFig),
    FbmPaths(FbmPathsFig),
    Heatmap(HeatmapFig),
    Weights(WeightsFig),
    Accuracy(AccuracyFig),
}

/// A loaded figure file at one scale.
#[derive(Debug, Clone)]
pub struct Figure {
    pub figure: String,
    pub title: String,
    pub scale: String,
    pub spec: FigureSpec,
    /// The file's stem (e.g. `fig1`).
    pub stem: String,
}

impl Figure {
    /// Reads `path`, applies `scales[scale]` over `spec`, checks the values. Errors name the
    /// file and the key.
    pub fn load(path: &Path, scale: &str) -> Result<Figure> {
        Figure::load_with(path, scale, &[])
    }

    /// As [`Figure::load`], then `overrides` (`key=value`, dotted keys of `spec`, e.g.
    /// `depth=200`, `hursts.points=11`, `train.epochs=2`) over the scaled spec.
    pub fn load_with(path: &Path, scale: &str, overrides: &[String]) -> Result<Figure> {
        let origin = path.display().to_string();
        let f = super::figure::load::<FigureSpec>(path, scale, overrides)?;
        let fig = Figure {
            figure: f.figure,
            title: f.title,
            scale: f.scale,
            spec: f.spec,
            stem: f.stem,
        };
        fig.validate()
            .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        Ok(fig)
    }

    /// Checks values serde cannot check.
    pub fn validate(&self) -> Result<()> {
        let pos = |name: &str, v: i64| -> Result<()> {
            if v < 1 {
                bail!("spec.{name}: must be ≥ 1, got {v}");
            }
            Ok(())
        };
        let grid = |name: &str, g: &Linspace, lo: f64, hi: f64| -> Result<()> {
            if g.points < 1 || !(g.from >= lo && g.to <= hi && g.from <= g.to) {
                bail!("spec.{name}: need {lo} ≤ from ≤ to ≤ {hi} and points ≥ 1, got {g:?}");
            }
            Ok(())
        };
        match &self.spec {
            FigureSpec::Scaling(s) => {
                for &d in &s.depths {
                    pos("depths", d)?;
                }
                if s.depths.is_empty() || s.betas.is_empty() {
                    bail!("spec.depths, spec.betas: give at least one value each");
                }
                pos("width", s.width)?;
                pos("models", s.models)?;
            }
            FigureSpec::Histogram(s) => {
                pos("depth", s.depth)?;
                pos("models", s.models)?;
                pos("bins", s.bins as i64)?;
            }
            FigureSpec::FbmPaths(s) => {
                pos("steps", s.steps)?;
                if let Some(h) = s.hursts.iter().find(|h| !(**h > 0.0 && **h < 1.0)) {
                    bail!("spec.hursts: every H must be in (0, 1), got {h}");
                }
            }
            FigureSpec::Heatmap(s) => {
                grid("hursts", &s.hursts, 1e-6, 1.0 - 1e-6)?;
                grid("betas", &s.betas, -10.0, 10.0)?;
                pos("depth", s.depth)?;
                pos("models", s.models)?;
                pos("inputs", s.inputs)?;
            }
            FigureSpec::Weights(s) => {
                pos("depth", s.depth)?;
                pos("train.epochs", s.train.epochs)?;
                pos("train.batch", s.train.batch)?;
                if s.runs.is_empty() || s.data.is_empty() {
                    bail!("spec.runs, spec.data: give at least one value each");
                }
            }
            FigureSpec::Accuracy(s) => {
                grid("hursts", &s.hursts, 1e-6, 1.0 - 1e-6)?;
                grid("betas", &s.betas, -10.0, 10.0)?;
                pos("depth", s.depth)?;
                pos("train.epochs", s.train.epochs)?;
                pos("train.batch", s.train.batch)?;
                pos("chunk", s.chunk as i64)?;
                if s.lrs.is_empty() || s.datasets.is_empty() {
                    bail!("spec.lrs, spec.datasets: give at least one value each");
                }
            }
        }
        Ok(())
    }
}

/// Runs a figure into `out`; returns the text printed (tables, observations).
pub fn run(fig: &Figure, out: &Path, device: Device, quiet: bool) -> Result<String> {
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let start = Instant::now();
    let mut text = format!("# {} ({}, scale {})\n\n", fig.title, fig.figure, fig.scale);
    text += &match &fig.spec {
        FigureSpec::Scaling(s) => scaling_figure(fig, s, out, device, quiet)?,
        FigureSpec::Histogram(s) => histogram_figure(fig, s, out, device, quiet)?,
        FigureSpec::FbmPaths(s) => fbm_figure(fig, s, out, device)?,
        FigureSpec::Heatmap(s) => heatmap_figure(fig, s, out, device, quiet)?,
        FigureSpec::Weights(s) => weights_figure(fig, s, out, device, quiet)?,
        FigureSpec::Accuracy(s) => accuracy_figure(fig, s, out, device, quiet)?,
    };
    text += &format!(
        "\nwall time: {:.1} s; outputs in {}\n",
        start.elapsed().as_secs_f64(),
        out.display()
    );
    std::fs::write(out.join("README.md"), &text)
        .with_context(|| format!("{}: cannot write", out.display()))?;
    Ok(text)
}

fn scaling_figure(
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
        width: s.width,
        input_dim: s.input_dim,
        output_dim: 1,
        models: s.models,
        inputs: s.inputs,
        chunk: s.chunk,
        seed: s.seed,
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
            std::fs::copy(&from, out.join(format!("{}.{ext}", fig.stem)))?;
        }
    }
    let mut t = format!(
        "Figure: {}.svg/png ({label} against L, mean with 10%/90% quantiles over {} models × {} inputs, {} init).\n\n",
        fig.stem, s.models, s.inputs, s.init
    );
    t += &md;
    // Per-L table of the figure's metric.
    let mut table = Table::new(
        format!("{label}: mean ± std per depth"),
        std::iter::once("L".to_string())
            .chain(s.betas.iter().map(|b| format!("β = {b}")))
            .collect(),
    );
    let summary = scaling::summarize(&rows);
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
    t += "\n";
    t += &table.to_markdown();
    Ok(t)
}

/// Density of N(mean, std²) at x.
fn gaussian(x: f64, mean: f64, std: f64) -> f64 {
    (-(x - mean).powi(2) / (2.0 * std * std)).exp() / (std * (2.0 * std::f64::consts::PI).sqrt())
}

fn histogram_figure(
    fig: &Figure,
    s: &HistogramFig,
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<String> {
    let spec = ScalingSpec {
        model: s.model,
        inits: vec![s.init],
        depths: vec![s.depth],
        betas: vec![s.beta],
        width: s.width,
        input_dim: s.input_dim,
        output_dim: 1,
        models: s.models,
        inputs: 1,
        chunk: s.chunk,
        seed: s.seed,
        device,
    };
    let rows = scaling::run(&spec, Some(&out.join("samples.csv")), quiet)?;
    let mut text = String::new();
    let mut panels = Vec::new();
    let mut table = Table::new(
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
    );
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
    ] {
        let v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        let m3 = v.iter().map(|x| ((x - mean) / std).powi(3)).sum::<f64>() / n;
        let m4 = v.iter().map(|x| ((x - mean) / std).powi(4)).sum::<f64>() / n - 3.0;
        let mut sorted = v.clone();
        sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
        // Kolmogorov–Smirnov distance to the fitted normal (Abramowitz–Stegun erf).
        let cdf = |x: f64| 0.5 * (1.0 + erf((x - mean) / (std * std::f64::consts::SQRT_2)));
        let ks = sorted
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let c = cdf(x);
                (c - i as f64 / n).abs().max(((i + 1) as f64 / n - c).abs())
            })
            .fold(0.0, f64::max);
        table.push(vec![
            label.to_string(),
            format!("{mean:.4}"),
            format!("{std:.4}"),
            format!("{m3:.3}"),
            format!("{m4:.3}"),
            format!("{ks:.4}"),
        ]);
        let (lo, hi) = (sorted[0], sorted[sorted.len() - 1]);
        let w = (hi - lo) / s.bins as f64;
        let mut counts = vec![0usize; s.bins];
        for &x in &sorted {
            counts[(((x - lo) / w) as usize).min(s.bins - 1)] += 1;
        }
        // The histogram as a density step line, and the fitted Gaussian.
        let mut steps = vec![(lo, 0.0)];
        let mut hist_rows = Table::new(
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
            hist_rows.push(vec![
                a.to_string(),
                b.to_string(),
                c.to_string(),
                d.to_string(),
            ]);
        }
        steps.push((hi, 0.0));
        hist_rows.write_csv(&out.join(format!("histogram-{name}.csv")))?;
        let curve: Vec<(f64, f64)> = (0..=200)
            .map(|i| {
                let x = lo + (hi - lo) * i as f64 / 200.0;
                (x, gaussian(x, mean, std))
            })
            .collect();
        panels.push(Panel {
            spec: PlotSpec::new(label, label, "density"),
            series: vec![
                Series::new(format!("histogram ({} models)", v.len()), steps),
                Series::new(format!("N({mean:.3}, {std:.3}²)"), curve),
            ],
        });
    }
    multi_panel(&out.join(&fig.stem), &fig.title, &panels)?;
    table.write_csv(&out.join("moments.csv"))?;
    text += &format!("Figure: {}.svg/png.\n\n", fig.stem);
    text += &table.to_markdown();
    Ok(text)
}

/// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.3275911 * x.abs());
    let y = 1.0
        - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
            + 0.254829592)
            * t
            * (-x * x).exp();
    if x >= 0.0 {
        y
    } else {
        -y
    }
}

fn fbm_figure(fig: &Figure, s: &FbmPathsFig, out: &Path, device: Device) -> Result<String> {
    tch::manual_seed(s.seed as i64);
    let mut panels = Vec::new();
    let mut csv = Table::new("", vec!["hurst".into(), "k".into(), "value".into()]);
    let mut table = Table::new(
        format!("One path per H over {} layers, and its increments", s.steps),
        [
            "H",
            "increment std (this path)",
            "(1/L)^H",
            "lag-1 corr (this path)",
            "2^(2H-1) − 1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    );
    for &h in &s.hursts {
        let p = fbm_paths(1, s.steps, h, device)
            .view([-1])
            .to_device(Device::Cpu);
        let v = Vec::<f64>::try_from(p.to_kind(Kind::Double))?;
        let inc: Vec<f64> = v.windows(2).map(|w| w[1] - w[0]).collect();
        let n = inc.len() as f64;
        let m2 = inc.iter().map(|x| x * x).sum::<f64>() / n;
        let c1 = inc.windows(2).map(|w| w[0] * w[1]).sum::<f64>() / (n - 1.0) / m2;
        table.push(vec![
            format!("{h}"),
            format!("{:.4}", m2.sqrt()),
            format!("{:.4}", (s.steps as f64).powf(-h)),
            format!("{c1:.3}"),
            format!("{:.3}", 2f64.powf(2.0 * h - 1.0) - 1.0),
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

fn heatmap_figure(
    fig: &Figure,
    s: &HeatmapFig,
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<String> {
    let hs = s.hursts.values();
    let betas = s.betas.values();
    let spec = ScalingSpec {
        model: s.model,
        inits: hs.iter().map(|&h| LayerInit::Fbm { hurst: h }).collect(),
        depths: vec![s.depth],
        betas: betas.clone(),
        width: s.width,
        input_dim: s.input_dim,
        output_dim: 1,
        models: s.models,
        inputs: s.inputs,
        chunk: s.chunk,
        seed: s.seed,
        device,
    };
    let rows = scaling::run(&spec, Some(&out.join("scaling.csv")), quiet)?;
    scaling::summary_table(&rows).write_csv(&out.join("summary.csv"))?;
    let summary = scaling::summarize(&rows);
    let cell = |h: f64, b: f64| -> (Stats, Stats) {
        let init = LayerInit::Fbm { hurst: h }.to_string();
        let (_, _, series) = summary
            .iter()
            .find(|(i, beta, _)| *i == init && *beta == b)
            .expect("every cell measured");
        (series[0].1, series[0].2)
    };
    let mut text = format!(
        "Figures: {0}-forward.svg/png, {0}-backward.svg/png.\n\n",
        fig.stem
    );
    let mut boundary_table = Table::new(
        format!(
            "Explosion boundary: smallest β above which every β has mean log10(metric) ≤ {} (L = {})",
            s.explosion_log10, s.depth
        ),
        ["H", "β* forward", "β* backward", "max(H, 1/2)"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    let mut bounds: Vec<Vec<(f64, f64)>> = vec![vec![], vec![]];
    for (mi, metric) in ["forward", "backward"].iter().enumerate() {
        let values: Vec<Vec<f64>> = betas
            .iter()
            .map(|&b| {
                hs.iter()
                    .map(|&h| {
                        let (f, bw) = cell(h, b);
                        if mi == 0 {
                            f.log10_mean
                        } else {
                            bw.log10_mean
                        }
                    })
                    .collect()
            })
            .collect();
        for (j, &h) in hs.iter().enumerate() {
            // Scan from the largest β down; the boundary is the last β before a cell explodes.
            let mut star = betas[betas.len() - 1];
            for i in (0..betas.len()).rev() {
                let v = values[i][j];
                if v.is_nan() || v > s.explosion_log10 {
                    break;
                }
                star = betas[i];
            }
            bounds[mi].push((h, star));
        }
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
        }
        .write(&out.join(format!("{}-{metric}", fig.stem)))?;
    }
    for (j, &h) in hs.iter().enumerate() {
        boundary_table.push(vec![
            format!("{h}"),
            format!("{:.3}", bounds[0][j].1),
            format!("{:.3}", bounds[1][j].1),
            format!("{:.3}", h.max(0.5)),
        ]);
    }
    boundary_table.write_csv(&out.join("boundary.csv"))?;
    text += &boundary_table.to_markdown();
    Ok(text)
}

/// The first dataset of `names` that loads (limits applied), or the errors of all.
fn load_first(names: &[DatasetName], t: &TrainFig) -> Result<data::DataSplit> {
    let mut errs = Vec::new();
    for &name in names {
        let spec = DataSpec {
            limit_train: t.limit_train,
            limit_test: t.limit_test,
            ..DataSpec::new(name)
        };
        match data::load(&spec) {
            Ok(s) => return Ok(s),
            Err(e) => errs.push(format!("{name}: {e:#}")),
        }
    }
    bail!("no dataset available: {}", errs.join("; "))
}

/// One model of a batched training run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainRun {
    pub init: LayerInit,
    pub beta: f64,
    pub lr: f64,
}

/// The models of one batched training run, in the order of their [`TrainRun`]s.
pub struct Trained {
    /// All M models (tensors `[M, ...]`).
    pub net: MarionNet,
    /// Test accuracy per model (NaN for a diverged model).
    pub test_acc: Vec<f64>,
    /// Mean training loss of the last epoch per model.
    pub train_loss: Vec<f64>,
    /// Whether the model's training loss became non-finite.
    pub diverged: Vec<bool>,
}

/// Per-model mean cross-entropy of logits `[M, B, C]` against labels `[B]`: `[M]`.
fn per_model_cross_entropy(logits: &Tensor, y: &Tensor) -> Tensor {
    let (m, b) = (logits.size()[0], y.size()[0]);
    let target = y.view([1, b, 1]).expand([m, b, 1], false);
    -logits
        .log_softmax(-1, Kind::Float)
        .gather(2, &target, false)
        .squeeze_dim(-1)
        .mean_dim(1, false, Kind::Float)
}

/// What a batched training of Marion's classifiers needs besides its data and its runs.
pub struct TrainSetup<'a> {
    pub model: MarionModel,
    pub depth: i64,
    pub width: i64,
    pub train: &'a TrainFig,
    pub seed: u64,
    pub device: Device,
    /// Print one progress line per epoch with this label (None: quiet).
    pub label: Option<String>,
    /// Save the models and the optimizer here after every epoch, and resume from it when it
    /// holds the same runs (None: no checkpoint). The caller removes it once the results are
    /// written.
    pub checkpoint: Option<PathBuf>,
    /// Stop with an error after this many epochs, the checkpoint saved (tests of the resume).
    pub stop_after: Option<i64>,
}

impl<'a> TrainSetup<'a> {
    /// Quiet, without a checkpoint.
    pub fn new(
        model: MarionModel,
        depth: i64,
        width: i64,
        train: &'a TrainFig,
        seed: u64,
        device: Device,
    ) -> TrainSetup<'a> {
        TrainSetup {
            model,
            depth,
            width,
            train,
            seed,
            device,
            label: None,
            checkpoint: None,
            stop_after: None,
        }
    }
}

/// Trains one model per entry of `runs`, all at once in one batched program (every layer one
/// batched matmul over the models): Adam with each model's learning rate (× 0.1 every
/// `lr_step` epochs), cross-entropy, batches of flattened, normalized images in the same order
/// for every model; model m starts from `runs[m].init` drawn after `manual_seed(seed)` and has
/// the residual scale L^-β_m. The losses stay on the device and are read once per epoch; a
/// model whose loss turns non-finite is marked diverged (the others go on, unaffected).
pub fn train_classifiers(
    setup: &TrainSetup,
    split: &data::DataSplit,
    runs: &[TrainRun],
) -> Result<Trained> {
    let TrainSetup {
        model: kind,
        depth,
        width,
        train: t,
        seed,
        device,
        ..
    } = *setup;
    let m = runs.len();
    let shape = MarionShape {
        depth,
        width,
        d_in: split.channels * split.height * split.width,
        d_out: split.num_classes,
    };
    let vs = nn::VarStore::new(device);
    let inits: Vec<LayerInit> = runs.iter().map(|r| r.init).collect();
    let net = MarionNet::trainable(kind, &vs.root(), shape, &inits, seed);
    let scales: Vec<f32> = runs
        .iter()
        .map(|r| residual_scale(depth, r.beta) as f32)
        .collect();
    // s_m = L^-β_m, broadcast against the hidden states `[M, B, d]`.
    let scale = Tensor::from_slice(&scales)
        .view([m as i64, 1, 1])
        .to_device(device);
    let params = net
        .named_tensors()
        .iter()
        .map(|(_, p)| p.shallow_clone())
        .collect();
    let base_lr: Vec<f64> = runs.iter().map(|r| r.lr).collect();
    let mut opt = BatchedAdam::new(params, &base_lr);
    let train = DeviceData::new(&split.train, &split.mean, &split.std, device);
    let test = DeviceData::new(&split.test, &split.mean, &split.std, device);
    let mut train_loss = vec![f64::NAN; m];
    let mut diverged = vec![false; m];
    // Everything that makes the runs these runs: a checkpoint of other runs is not resumed.
    let key = format!(
        "{kind:?} {depth} {width} {t:?} {seed} {runs:?} {} {} {}",
        split.name,
        split.train.len(),
        split.test.len()
    );
    let mut first_epoch = 0;
    if let Some(path) = setup.checkpoint.as_deref().filter(|p| p.exists()) {
        if let Some(done) =
            load_checkpoint(path, &key, &net, &mut opt, &mut train_loss, &mut diverged)?
        {
            first_epoch = done;
            if let Some(label) = &setup.label {
                eprintln!(
                    "{label}: resumed after epoch {done} from {}",
                    path.display()
                );
            }
        }
    }
    for epoch in first_epoch..t.epochs {
        let t0 = Instant::now();
        let decay = 0.1f64.powi((epoch / t.lr_step.max(1)) as i32);
        opt.set_lr(&base_lr.iter().map(|lr| lr * decay).collect::<Vec<_>>());
        let mut sum = Tensor::zeros([m as i64], (Kind::Float, device));
        let mut n = 0i64;
        for (x, y) in train.train_batches(t.batch, seed as i64 * 1000 + epoch, data::Augment::NONE)
        {
            let b = y.size()[0];
            let logits = net.forward(&x.view([b, -1]), &scale);
            let losses = per_model_cross_entropy(&logits, &y);
            opt.backward_step(&losses.sum(Kind::Float));
            let _ = sum.g_add_(&(losses.detach() * b as f64));
            n += b;
        }
        let mean = Vec::<f64>::try_from((sum / n as f64).to_kind(Kind::Double))?;
        for (i, l) in mean.into_iter().enumerate() {
            diverged[i] |= !l.is_finite();
            train_loss[i] = l;
        }
        let mut live: Vec<f64> = (0..m)
            .filter(|&i| !diverged[i])
            .map(|i| train_loss[i])
            .collect();
        if let Some(label) = &setup.label {
            // The median: a few models of a learning-rate grid have huge (finite) losses.
            live.sort_by(f64::total_cmp);
            eprintln!(
                "{label}: epoch {}/{}: {} of {m} models training, median loss {:.4} ({:.1}s)",
                epoch + 1,
                t.epochs,
                live.len(),
                live.get(live.len() / 2).copied().unwrap_or(f64::NAN),
                t0.elapsed().as_secs_f64()
            );
        }
        if let Some(path) = &setup.checkpoint {
            save_checkpoint(path, &key, epoch + 1, &net, &opt, &train_loss, &diverged)?;
        }
        if setup.stop_after == Some(epoch + 1) {
            bail!("stopped after epoch {} (TrainSetup::stop_after)", epoch + 1);
        }
        if live.is_empty() {
            break;
        }
    }
    let correct = tch::no_grad(|| {
        let mut correct = Tensor::zeros([m as i64], (Kind::Int64, device));
        for (x, y) in test.eval_batches(1000) {
            let b = y.size()[0];
            let pred = net.forward(&x.view([b, -1]), &scale).argmax(-1, false);
            let _ = correct.g_add_(&pred.eq_tensor(&y.unsqueeze(0)).sum_dim_intlist(
                1,
                false,
                Kind::Int64,
            ));
        }
        Vec::<i64>::try_from(correct)
    })?;
    let total = test.len() as f64;
    let test_acc = (0..m)
        .map(|i| {
            if diverged[i] {
                f64::NAN
            } else {
                correct[i] as f64 / total
            }
        })
        .collect();
    Ok(Trained {
        net,
        test_acc,
        train_loss,
        diverged,
    })
}

/// Writes a training checkpoint atomically ([`tensor_file::write`]): the models, the
/// Adam state, the epochs done, the losses and divergence flags, and the runs' key.
fn save_checkpoint(
    path: &Path,
    key: &str,
    epochs_done: i64,
    net: &MarionNet,
    opt: &BatchedAdam,
    train_loss: &[f64],
    diverged: &[bool],
) -> Result<()> {
    let cpu = |t: &Tensor| t.detach().to_device(Device::Cpu);
    let mut named: Vec<(String, Tensor)> = vec![
        ("key".into(), Tensor::from_slice(key.as_bytes())),
        ("epochs_done".into(), Tensor::from_slice(&[epochs_done])),
        (
            "adam_step".into(),
            Tensor::from_slice(&[opt.steps() as i64]),
        ),
        ("train_loss".into(), Tensor::from_slice(train_loss)),
        (
            "diverged".into(),
            Tensor::from_slice(&diverged.iter().map(|&d| d as i64).collect::<Vec<_>>()),
        ),
    ];
    for (name, p) in net.named_tensors() {
        named.push((format!("param.{name}"), cpu(p)));
    }
    for (i, (m, v)) in opt.moments().enumerate() {
        named.push((format!("exp_avg.{i}"), cpu(m)));
        named.push((format!("exp_avg_sq.{i}"), cpu(v)));
    }
    tensor_file::write(path, &named, "training checkpoint")
}

/// Restores a checkpoint of [`save_checkpoint`] into the models and the optimizer; returns the
/// epochs it holds, or None (nothing restored) when it holds other runs.
fn load_checkpoint(
    path: &Path,
    key: &str,
    net: &MarionNet,
    opt: &mut BatchedAdam,
    train_loss: &mut [f64],
    diverged: &mut [bool],
) -> Result<Option<i64>> {
    let file = TensorFile::read(
        path,
        Device::Cpu,
        "training checkpoint",
        "delete it to start the runs over",
    )?;
    if Vec::<u8>::try_from(file.get("key")?)? != key.as_bytes() {
        return Ok(None);
    }
    tch::no_grad(|| -> Result<()> {
        let params = net.named_tensors();
        for (name, p) in &params {
            let mut p = p.shallow_clone();
            p.copy_(file.get(&format!("param.{name}"))?);
        }
        let mut m = Vec::new();
        let mut v = Vec::new();
        for i in 0..params.len() {
            m.push(file.get(&format!("exp_avg.{i}"))?.shallow_clone());
            v.push(file.get(&format!("exp_avg_sq.{i}"))?.shallow_clone());
        }
        opt.restore(file.get("adam_step")?.int64_value(&[0]) as i32, &m, &v);
        Ok(())
    })?;
    train_loss.copy_from_slice(&Vec::<f64>::try_from(file.get("train_loss")?)?);
    for (d, v) in diverged
        .iter_mut()
        .zip(Vec::<i64>::try_from(file.get("diverged")?)?)
    {
        *d = v != 0;
    }
    Ok(Some(file.get("epochs_done")?.int64_value(&[0])))
}

fn weights_figure(
    fig: &Figure,
    s: &WeightsFig,
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<String> {
    let split = load_first(&s.data, &s.train)?;
    let mut text = format!(
        "Data: {} ({} train / {} test images). Figure: {}.svg/png.\n\n",
        split.name,
        split.train.len(),
        split.test.len(),
        fig.stem
    );
    let mut table = Table::new(
        "Trained models, and the roughness of their weights along the layers",
        [
            "init",
            "β",
            "test acc",
            "train loss",
            "mean |W_{k+1} − W_k| / mean |W_k| (first weight tensor)",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    );
    let mut panels = Vec::new();
    let mut csv = Table::new(
        "",
        ["init", "beta", "tensor", "i", "j", "k", "value"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    // The runs train together, one batched program (one model each).
    let runs: Vec<TrainRun> = s
        .runs
        .iter()
        .map(|r| TrainRun {
            init: r.init,
            beta: r.beta,
            lr: s.lr,
        })
        .collect();
    let t0 = Instant::now();
    let checkpoint = out.join(".training.ot");
    let setup = TrainSetup {
        label: (!quiet).then(|| "weights".to_string()),
        checkpoint: Some(checkpoint.clone()),
        ..TrainSetup::new(s.model, s.depth, s.width, &s.train, s.seed, device)
    };
    let tr = train_classifiers(&setup, &split, &runs)?;
    let (name, weights) = tr.net.layer_weights()[0];
    let weights = weights.detach().to_device(Device::Cpu); // [M, L, d, d]
    for (idx, r) in s.runs.iter().enumerate() {
        let test_acc = tr.test_acc[idx];
        if !quiet {
            eprintln!(
                "weights: {} init, β = {}: test acc {test_acc:.4} ({:.1}s for all {} runs)",
                r.init,
                r.beta,
                t0.elapsed().as_secs_f64(),
                runs.len()
            );
        }
        let w = weights.select(0, idx as i64); // [L, d, d]
        let l = w.size()[0];
        let rough = tch::no_grad(|| {
            let dw = (w.narrow(0, 1, l - 1) - w.narrow(0, 0, l - 1))
                .abs()
                .mean(Kind::Double);
            dw.double_value(&[]) / w.abs().mean(Kind::Double).double_value(&[])
        });
        table.push(vec![
            r.init.to_string(),
            format!("{}", r.beta),
            format!("{test_acc:.4}"),
            format!("{:.4}", tr.train_loss[idx]),
            format!("{rough:.4}"),
        ]);
        // A few entries (i, j), the same for every run: (e, (e·7 + 3) mod d).
        let d = s.width;
        let mut series = Vec::new();
        for e in 0..s.entries as i64 {
            let (i, j) = (e % d, (e * 7 + 3) % d);
            let path = Vec::<f64>::try_from(w.select(1, i).select(1, j).to_kind(Kind::Double))?;
            for (k, v) in path.iter().enumerate() {
                csv.push(vec![
                    r.init.to_string(),
                    r.beta.to_string(),
                    name.to_string(),
                    i.to_string(),
                    j.to_string(),
                    (k + 1).to_string(),
                    v.to_string(),
                ]);
            }
            series.push(Series::new(
                format!("{name}[{i},{j}]"),
                path.iter()
                    .enumerate()
                    .map(|(k, &v)| ((k + 1) as f64, v))
                    .collect(),
            ));
        }
        panels.push(Panel {
            spec: PlotSpec::new(
                format!("{} init, β = {} (test acc {test_acc:.3})", r.init, r.beta),
                "layer k",
                format!("{name}_k entry after training"),
            ),
            series,
        });
    }
    csv.write_csv(&out.join("weights.csv"))?;
    table.write_csv(&out.join("runs.csv"))?;
    multi_panel(&out.join(&fig.stem), &fig.title, &panels)?;
    let _ = std::fs::remove_file(&checkpoint);
    text += &table.to_markdown();
    Ok(text)
}

/// The columns of M9's runs-<dataset>.csv.
const RUN_COLUMNS: [&str; 8] = [
    "dataset",
    "hurst",
    "beta",
    "lr",
    "test_acc",
    "train_loss",
    "diverged",
    "chunk_seconds",
];

/// A grid run's (H, β, lr) as written in the runs CSV.
type RunKey = (String, String, String);

/// The runs CSV in grid order (runs not trained yet left out).
fn runs_table<G>(
    grid: &[G],
    key: &dyn Fn(&G) -> RunKey,
    rows: &std::collections::HashMap<RunKey, Vec<String>>,
) -> Table {
    let mut t = Table::new("", RUN_COLUMNS.iter().map(|s| s.to_string()).collect());
    for g in grid {
        if let Some(r) = rows.get(&key(g)) {
            t.push(r.clone());
        }
    }
    t
}

/// The runs an interrupted M9 left in `runs_path`, by (H, β, lr), when they were trained with
/// the same settings (recorded in a `.key` file beside it); the runs of other settings are
/// moved aside to `runs-<dataset>.<unix time>.csv`, never overwritten.
fn resume_rows(
    s: &AccuracyFig,
    split: &data::DataSplit,
    out: &Path,
    runs_path: &Path,
    quiet: bool,
) -> Result<std::collections::HashMap<RunKey, Vec<String>>> {
    let dname = split.name.as_str();
    let key = format!(
        "{:?}\n",
        (
            s.model,
            s.depth,
            s.width,
            &s.train,
            s.seed,
            split.train.len(),
            split.test.len()
        )
    );
    let key_path = out.join(format!(".runs-{dname}.key"));
    let mut rows = std::collections::HashMap::new();
    if runs_path.exists() {
        if std::fs::read_to_string(&key_path).ok().as_deref() == Some(key.as_str()) {
            let mut r = csv::Reader::from_path(runs_path)
                .with_context(|| format!("{}: cannot read", runs_path.display()))?;
            for rec in r.records() {
                let rec = rec.with_context(|| format!("{}: bad row", runs_path.display()))?;
                let row: Vec<String> = rec.iter().map(String::from).collect();
                if row.len() == RUN_COLUMNS.len() {
                    rows.insert((row[1].clone(), row[2].clone(), row[3].clone()), row);
                }
            }
        } else {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let aside = out.join(format!("runs-{dname}.{secs}.csv"));
            std::fs::rename(runs_path, &aside)
                .with_context(|| format!("{}: cannot move aside", runs_path.display()))?;
            if !quiet {
                eprintln!(
                    "{}: trained with other settings; moved to {}",
                    runs_path.display(),
                    aside.display()
                );
            }
        }
    }
    crate::util::write_atomic(&key_path, &key)?;
    Ok(rows)
}

fn accuracy_figure(
    fig: &Figure,
    s: &AccuracyFig,
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<String> {
    let hs = s.hursts.values();
    let betas = s.betas.values();
    let mut text = String::new();
    for names in &s.datasets {
        let split = match load_first(names, &s.train) {
            Ok(split) => split,
            Err(e) => {
                let msg = format!(
                    "skipped {}: {e:#}\n\n",
                    names
                        .iter()
                        .map(|n| n.as_str())
                        .collect::<Vec<_>>()
                        .join(" / ")
                );
                eprintln!("{}: {msg}", fig.figure);
                text += &msg;
                continue;
            }
        };
        let dname = split.name.as_str();
        // Every (H, β, lr) of the grid, H slowest; trained `chunk` models at a time.
        let grid: Vec<(usize, usize, f64)> = (0..hs.len())
            .flat_map(|j| {
                (0..betas.len()).flat_map(move |i| s.lrs.iter().map(move |&lr| (j, i, lr)))
            })
            .collect();
        let row_key = |&(j, i, lr): &(usize, usize, f64)| {
            (hs[j].to_string(), betas[i].to_string(), lr.to_string())
        };
        let runs_path = out.join(format!("runs-{dname}.csv"));
        let mut rows = resume_rows(s, &split, out, &runs_path, quiet)?;
        let todo: Vec<_> = grid
            .iter()
            .filter(|g| !rows.contains_key(&row_key(g)))
            .copied()
            .collect();
        if !quiet && !rows.is_empty() {
            eprintln!(
                "{}: {dname}: {} of {} runs already in {}, {} to train",
                fig.figure,
                grid.len() - todo.len(),
                grid.len(),
                runs_path.display(),
                todo.len()
            );
        }
        let chunks = todo.len().div_ceil(s.chunk);
        // The current chunk's models and optimizer after every epoch.
        let checkpoint = out.join(format!(".chunk-{dname}.ot"));
        for (c, chunk) in todo.chunks(s.chunk).enumerate() {
            let t0 = Instant::now();
            let runs: Vec<TrainRun> = chunk
                .iter()
                .map(|&(j, i, lr)| TrainRun {
                    init: LayerInit::Fbm { hurst: hs[j] },
                    beta: betas[i],
                    lr,
                })
                .collect();
            let label = format!(
                "{} {dname} chunk {}/{chunks} ({} models)",
                fig.figure,
                c + 1,
                runs.len()
            );
            let setup = TrainSetup {
                label: (!quiet).then_some(label.clone()),
                checkpoint: Some(checkpoint.clone()),
                ..TrainSetup::new(s.model, s.depth, s.width, &s.train, s.seed, device)
            };
            let tr = train_classifiers(&setup, &split, &runs)?;
            let secs = t0.elapsed().as_secs_f64();
            for (m, g) in chunk.iter().enumerate() {
                let (h, b, lr) = row_key(g);
                rows.insert(
                    row_key(g),
                    vec![
                        dname.into(),
                        h,
                        b,
                        lr,
                        tr.test_acc[m].to_string(),
                        tr.train_loss[m].to_string(),
                        tr.diverged[m].to_string(),
                        format!("{secs:.2}"),
                    ],
                );
            }
            if !quiet {
                eprintln!("{label}: done in {secs:.1}s");
            }
            // Rewritten (atomically) after every chunk: an interrupted figure resumes from it
            // (and from the chunk's checkpoint, removed once its runs are in the file).
            runs_table(&grid, &row_key, &rows).write_csv(&runs_path)?;
            let _ = std::fs::remove_file(&checkpoint);
        }
        let mut best = vec![vec![f64::NAN; hs.len()]; betas.len()];
        let mut best_lr = vec![vec![f64::NAN; hs.len()]; betas.len()];
        for g in &grid {
            let (j, i, lr) = *g;
            let acc: f64 = rows[&row_key(g)][4].parse().unwrap_or(f64::NAN);
            if acc.is_finite() && (best[i][j].is_nan() || acc > best[i][j]) {
                best[i][j] = acc;
                best_lr[i][j] = lr;
            }
        }
        let mut table = Table::new(
            format!(
                "{dname}: best test accuracy over lr ∈ {:?} (rows β, columns H; L = {}, width {}, {} epoch(s))",
                s.lrs, s.depth, s.width, s.train.epochs
            ),
            std::iter::once("β \\ H".to_string())
                .chain(hs.iter().map(|h| format!("{h}")))
                .collect(),
        );
        for (i, &b) in betas.iter().enumerate().rev() {
            table.push(
                std::iter::once(format!("{b}"))
                    .chain(best[i].iter().map(|a| format!("{a:.3}")))
                    .collect(),
            );
        }
        Heatmap {
            title: format!("{}: test accuracy, {dname} (L = {})", fig.figure, s.depth),
            x_label: "Hurst index H".into(),
            y_label: "β (scale L^-β)".into(),
            xs: hs.clone(),
            ys: betas.clone(),
            values: best,
            vmin: 0.0,
            vmax: 1.0,
            value_label: "test accuracy".into(),
            curves: vec![],
        }
        .write(&out.join(format!("{}-{dname}", fig.stem)))?;
        text += &format!("Figure: {}-{dname}.svg/png.\n\n", fig.stem);
        text += &table.to_markdown();
        text += "\n";
    }
    Ok(text)
}

/// The default output directory of a figure: `runs/marion2022/<stem>/<scale>`.
pub fn default_out(fig: &Figure) -> PathBuf {
    PathBuf::from("runs/marion2022")
        .join(&fig.stem)
        .join(&fig.scale)
}
