//! The figure spec types (one per `kind` of a figure file) and their validation: a figure file
//! holds `figure`, `title`, `spec` (these settings, tagged by `kind`) and `scales`; see
//! [`crate::papers::figure`] and docs/marion2022.md.
//!
//! Optional keys are grouped in structs with `#[serde(default)]` and an `impl Default` that
//! holds their values, flattened into the kinds that share them; every other key is required.
//! Unknown keys are errors (`deny_unknown_fields` on every kind).
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::data::DatasetName;
use crate::model::marion_net::MarionModel;
use crate::model::weight_init::{FbmSampler, LayerInit};
use crate::papers::figure::{positive as pos, FigureFileAt, Linspace};
use crate::train::config::{ScheduleConfig, ScheduleKind};
use crate::train::schedule::{lr_at, At};

/// How the measurement kinds (`scaling`, `histogram`, `heatmap`) draw their random models and
/// inputs; every key optional.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Draw {
    /// Dimension of the inputs x (A is d × `input_dim`).
    pub input_dim: i64,
    /// At most this many models in one batched pass.
    pub chunk: i64,
    pub seed: u64,
}

impl Default for Draw {
    fn default() -> Draw {
        Draw {
            input_dim: 64,
            chunk: 50,
            seed: 0,
        }
    }
}

/// The sizes of `kind: scaling`, every key optional.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ScalingSizes {
    /// d.
    pub width: i64,
    /// Random models per depth L.
    pub models: i64,
    /// Random inputs per model (and per β).
    pub inputs: i64,
}

impl Default for ScalingSizes {
    fn default() -> ScalingSizes {
        ScalingSizes {
            width: 40,
            models: 50,
            inputs: 1,
        }
    }
}

/// Settings of `kind: scaling` (M1, M3, M4, M5).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingFig {
    pub model: MarionModel,
    pub init: LayerInit,
    pub depths: Vec<i64>,
    pub betas: Vec<f64>,
    /// forward | backward: the metric the figure shows.
    pub metric: Metric,
    #[serde(flatten)]
    pub sizes: ScalingSizes,
    #[serde(flatten)]
    pub draw: Draw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Forward,
    Backward,
}

/// Settings of `kind: histogram` (M2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistogramFig {
    pub model: MarionModel,
    pub init: LayerInit,
    pub depth: i64,
    pub beta: f64,
    pub width: i64,
    pub models: i64,
    pub bins: usize,
    #[serde(flatten)]
    pub draw: Draw,
}

/// Settings of `kind: fbm-paths` (M6).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FbmPathsFig {
    pub hursts: Vec<f64>,
    pub steps: i64,
    #[serde(default)]
    pub seed: u64,
    /// `exact` (default) or `authors` (their Davies–Harte sampler, src/model/davies_harte.rs).
    #[serde(default)]
    pub fbm_sampler: FbmSampler,
}

/// The width d of `kind: heatmap`, optional.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct HeatmapWidth {
    pub width: i64,
}

impl Default for HeatmapWidth {
    fn default() -> HeatmapWidth {
        HeatmapWidth { width: 40 }
    }
}

/// Settings of `kind: heatmap` (M7).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeatmapFig {
    pub model: MarionModel,
    pub hursts: Linspace,
    pub betas: Linspace,
    pub depth: i64,
    /// Random models per H (shared by all β).
    pub models: i64,
    /// Random inputs per model and β.
    pub inputs: i64,
    /// A cell explodes when the mean log10 of its metric exceeds this.
    pub explosion_log10: f64,
    /// `exact` (default) or `authors` (their Davies–Harte sampler, src/model/davies_harte.rs).
    #[serde(default)]
    pub fbm_sampler: FbmSampler,
    #[serde(flatten)]
    pub width: HeatmapWidth,
    #[serde(flatten)]
    pub draw: Draw,
}

/// One trained configuration of `kind: weights`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightRun {
    pub init: LayerInit,
    pub beta: f64,
}

/// The optimizer's schedule and the data limits shared by `weights` and `accuracy` (the `train`
/// key).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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
    /// How the pixels enter the network (`raw` by default, as the authors' code).
    #[serde(default, skip_serializing_if = "Inputs::is_standardized")]
    pub inputs: Inputs,
    /// Capture each training step into a CUDA graph and replay it (CUDA only): the host then
    /// launches one graph per step instead of thousands of small kernels (L = 1000 layers).
    /// Not part of the runs' keys: it changes how fast, not what is computed.
    #[serde(default, skip_serializing)]
    pub cuda_graph: bool,
}

impl TrainFig {
    /// The learning rate's factor in epoch `epoch` (0-based): the authors' StepLR(step_size =
    /// `lr_step`, gamma = 0.1) stepped once per epoch, through the one schedule code
    /// ([`lr_at`]) as a multi-step schedule with milestones `lr_step`, 2·`lr_step`, ….
    pub fn lr_factor(&self, epoch: i64) -> f64 {
        let step = self.lr_step.max(1);
        let cfg = ScheduleConfig {
            kind: ScheduleKind::Multistep,
            milestones: (1..=epoch / step).map(|k| k * step).collect(),
            gamma: 0.1,
            warmup_epochs: 0,
        };
        let at = At {
            epoch,
            step: 0,
            steps: 1,
        };
        lr_at(&cfg, 1.0, self.epochs, at)
    }
}

/// How M8's and M9's images are fed to the network, flattened.
///
/// Left out of the runs' and checkpoints' keys when `standardized`, the only setting before
/// 2026-12-01: the runs made then keep their keys under `train.inputs: standardized`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Inputs {
    /// x/255 in [0, 1]: the authors' torchvision `ToTensor()` and nothing else (their data.py).
    #[default]
    Raw,
    /// (x/255 − mean)/std per channel, the dataset's published statistics.
    Standardized,
}

impl Inputs {
    fn is_standardized(&self) -> bool {
        *self == Inputs::Standardized
    }
}

/// The trained models' settings shared by `weights` and `accuracy` (flattened into both).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Training {
    pub model: MarionModel,
    /// L.
    pub depth: i64,
    /// d.
    pub width: i64,
    pub train: TrainFig,
    #[serde(default)]
    pub seed: u64,
}

/// Settings of `kind: weights` (M8).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsFig {
    /// Datasets tried in order (the first present is used).
    pub data: Vec<DatasetName>,
    pub lr: f64,
    pub runs: Vec<WeightRun>,
    /// Weight entries (i, j) plotted per run.
    pub entries: usize,
    #[serde(flatten)]
    pub training: Training,
}

/// How many models `kind: accuracy` trains at once, optional.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Batched {
    /// Models trained at once, in one batched program (memory grows with it).
    pub chunk: usize,
}

impl Default for Batched {
    fn default() -> Batched {
        Batched { chunk: 50 }
    }
}

/// Settings of `kind: accuracy` (M9).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccuracyFig {
    /// Each entry: datasets tried in order (e.g. [mnist, fashion-mnist]); an entry none of
    /// whose datasets is present is skipped with a message.
    pub datasets: Vec<Vec<DatasetName>>,
    pub hursts: Linspace,
    pub betas: Linspace,
    pub lrs: Vec<f64>,
    /// `exact` (default) or `authors` (their Davies–Harte sampler, src/model/davies_harte.rs).
    #[serde(default)]
    pub fbm_sampler: FbmSampler,
    #[serde(flatten)]
    pub training: Training,
    #[serde(flatten)]
    pub batched: Batched,
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
pub type Figure = FigureFileAt<FigureSpec>;

impl FigureFileAt<FigureSpec> {
    /// Whether the figure trains networks (M8, M9): those stop resumably on a preemption
    /// signal ([`crate::train::interrupt`]).
    pub fn trains(&self) -> bool {
        matches!(self.spec, FigureSpec::Weights(_) | FigureSpec::Accuracy(_))
    }

    /// Reads `path`, applies `scales[scale]` over `spec`, checks the values. Errors name the
    /// file and the key.
    pub fn load(path: &Path, scale: &str) -> Result<Figure> {
        Figure::load_with(path, scale, &[])
    }

    /// As [`Figure::load`], then `overrides` (`key=value`, dotted keys of `spec`, e.g.
    /// `depth=200`, `hursts.points=11`, `train.epochs=2`) over the scaled spec.
    pub fn load_with(path: &Path, scale: &str, overrides: &[String]) -> Result<Figure> {
        let origin = path.display().to_string();
        let fig = crate::papers::figure::load::<FigureSpec>(path, scale, overrides)?;
        fig.validate()
            .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        Ok(fig)
    }

    /// Checks values serde cannot check.
    pub fn validate(&self) -> Result<()> {
        match &self.spec {
            FigureSpec::Scaling(s) => {
                for &d in &s.depths {
                    pos("depths", d)?;
                }
                if s.depths.is_empty() || s.betas.is_empty() {
                    bail!("spec.depths, spec.betas: give at least one value each");
                }
                pos("width", s.sizes.width)?;
                pos("models", s.sizes.models)?;
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
                validate_training(&s.training)?;
                if s.runs.is_empty() || s.data.is_empty() {
                    bail!("spec.runs, spec.data: give at least one value each");
                }
            }
            FigureSpec::Accuracy(s) => {
                grid("hursts", &s.hursts, 1e-6, 1.0 - 1e-6)?;
                grid("betas", &s.betas, -10.0, 10.0)?;
                validate_training(&s.training)?;
                pos("chunk", s.batched.chunk as i64)?;
                if s.lrs.is_empty() || s.datasets.is_empty() {
                    bail!("spec.lrs, spec.datasets: give at least one value each");
                }
            }
        }
        Ok(())
    }
}

/// `spec.<name>` must be a grid within [lo, hi] with at least one point.
fn grid(name: &str, g: &Linspace, lo: f64, hi: f64) -> Result<()> {
    if g.points < 1 || !(g.from >= lo && g.to <= hi && g.from <= g.to) {
        bail!("spec.{name}: need {lo} ≤ from ≤ to ≤ {hi} and points ≥ 1, got {g:?}");
    }
    Ok(())
}

/// The checks of the training kinds' shared settings, in the order of the former checks.
fn validate_training(t: &Training) -> Result<()> {
    pos("depth", t.depth)?;
    pos("train.epochs", t.train.epochs)?;
    pos("train.batch", t.train.batch)
}
