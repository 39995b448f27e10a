//! Run configuration: YAML with serde (`deny_unknown_fields`), a default for every field,
//! `--set key=value` overrides with dotted keys, and validation with one-line errors that name
//! the file, the key and the accepted values.
//!
//! The model's part (`model:`, with τ) is [`crate::model::config::ModelConfig`].
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::data::{Augment, DatasetName};
use crate::model::config::{InitScheme, ModelConfig, Norm, Shortcut};
use crate::util::key::spec_key;
use crate::util::overrides::{apply_override, blame, explain_serde_error};

/// One training run: `deepres train --config FILE`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Run name: results go to `<out_dir>/<name>/`.
    pub name: String,
    /// Parent directory of run directories.
    pub out_dir: PathBuf,
    /// Seeds the initialization, the data order and the augmentation.
    pub seed: u64,
    /// `auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    pub data: DataConfig,
    pub model: ModelConfig,
    pub train: TrainConfig,
    /// What is logged besides metrics.csv and blocks.csv; it does not change results, is left
    /// out of config.yaml when default, and a resume may change it.
    #[serde(skip_serializing_if = "LogConfig::is_default")]
    pub log: LogConfig,
}

/// `log:`: extra logs of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// TensorBoard event files next to metrics.csv ([`crate::train::tensorboard`]).
    pub tensorboard: bool,
}

impl LogConfig {
    pub fn is_default(&self) -> bool {
        *self == LogConfig::default()
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            name: "run".into(),
            out_dir: "runs".into(),
            seed: 0,
            device: "auto".into(),
            data: DataConfig::default(),
            model: ModelConfig::default(),
            train: TrainConfig::default(),
            log: LogConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// cifar10 | cifar100 | mnist | fashion-mnist | synthetic
    pub name: DatasetName,
    /// Directory the datasets live in (see data/README.md).
    pub root: PathBuf,
    /// Random crop with this zero padding (0: off) and random horizontal flip.
    pub augment: Augment,
    /// Size of the synthetic train / test sets.
    pub synthetic_train: i64,
    pub synthetic_test: i64,
    /// Seed of the synthetic set (fixed across run seeds, like a real dataset).
    pub synthetic_seed: u64,
    /// CIFAR-100: train on the 20 coarse labels instead of the 100 fine ones.
    pub coarse_labels: bool,
    /// Keep only the first N training / test images (smoke runs).
    pub limit_train: Option<i64>,
    pub limit_test: Option<i64>,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            name: DatasetName::Cifar10,
            root: "data".into(),
            augment: Augment::CIFAR,
            synthetic_train: 5000,
            synthetic_test: 1000,
            synthetic_seed: 0,
            coarse_labels: false,
            limit_train: None,
            limit_test: None,
        }
    }
}

impl DataConfig {
    /// What the data module needs to load this dataset.
    pub fn spec(&self) -> crate::data::DataSpec {
        crate::data::DataSpec {
            name: self.name,
            root: self.root.clone(),
            synthetic_train: self.synthetic_train,
            synthetic_test: self.synthetic_test,
            seed: self.synthetic_seed,
            coarse_labels: self.coarse_labels,
            limit_train: self.limit_train,
            limit_test: self.limit_test,
        }
    }
}

/// Floating-point precision of the forward/backward pass.
/// bf16 and fp16 are CUDA autocast (fp16 with dynamic loss scaling); weights, batch-norm
/// statistics and the optimizer stay fp32.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    Fp32,
    Bf16,
    Fp16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
        }
    }

    /// bf16 and fp16 need CUDA (libtorch's autocast there); fp32 runs anywhere.
    pub fn check_device(self, device: tch::Device) -> Result<()> {
        if self != Precision::Fp32 && !device.is_cuda() {
            bail!(
                "needs a CUDA device (autocast), the device is {}: use fp32 there",
                format!("{device:?}").to_lowercase()
            );
        }
        Ok(())
    }
}

/// `train.cuda_graph`: `false`, `true` or `auto`; written to config.yaml as the same words,
/// so runs made when the key was a plain bool keep their keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CudaGraph {
    /// Ordinary steps.
    Off,
    /// Every full batch replays the captured step; refused off CUDA.
    On,
    /// Graphs where they can run (CUDA, a build with graphs, no mixup or label smoothing),
    /// ordinary steps elsewhere: a grid that says `auto` runs on CPU and GPU machines alike.
    Auto,
}

impl From<bool> for CudaGraph {
    fn from(on: bool) -> CudaGraph {
        if on {
            CudaGraph::On
        } else {
            CudaGraph::Off
        }
    }
}

impl Serialize for CudaGraph {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            CudaGraph::Off => s.serialize_bool(false),
            CudaGraph::On => s.serialize_bool(true),
            CudaGraph::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for CudaGraph {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Word {
            Bool(bool),
            Text(String),
            Other(serde::de::IgnoredAny),
        }
        let other =
            |what: String| serde::de::Error::custom(format!("{what}use true, false or auto"));
        match Word::deserialize(d)? {
            Word::Bool(on) => Ok(on.into()),
            Word::Text(t) if t == "auto" => Ok(CudaGraph::Auto),
            Word::Text(t) => Err(other(format!("{t:?}: "))),
            Word::Other(_) => Err(other(String::new())),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: i64,
    pub batch_size: i64,
    pub eval_batch_size: i64,
    pub optimizer: SgdConfig,
    pub schedule: ScheduleConfig,
    pub precision: Precision,
    /// Convolution weights and batches in channels-last (NHWC) memory format.
    pub channels_last: bool,
    /// Replay each full-batch training step from a captured CUDA graph: `true` (CUDA only),
    /// `false` or `auto` (where graphs can run, [`TrainConfig::graphs_on`]). A graphed step
    /// equals the ordinary one on an H200 (tests/gpu_graph.rs, 2026-12-01), but a whole
    /// graphed `deepres train` did not learn there (2026-12-04, BENCHMARKS.md): `true` is
    /// refused and `auto` is off until one does ([`TrainConfig::graphs_on`]). How a step is
    /// launched, not what it computes: a resume may change it (config.yaml keeps the value
    /// the run started with).
    pub cuda_graph: CudaGraph,
    /// Write a checkpoint after every epoch (needed for `--resume`).
    pub checkpoint: bool,
    /// Inside an epoch, also write the mid-epoch checkpoint a preemption signal writes
    /// ([`crate::train::checkpoint::Position`]) every this many minutes of wall time, without
    /// stopping, so that a kill -9 loses at most that much; 0: never. Fractions are allowed.
    /// Like `log`, it does not change results: left out of config.yaml at its default (so the
    /// keys of existing runs do not change), and a resume may change it.
    #[serde(skip_serializing_if = "TrainConfig::is_default_checkpoint_minutes")]
    pub checkpoint_minutes: f64,
    /// Start from these weights instead of the initialization: a deepres `best.safetensors`,
    /// an export, or a PyTorch state dict under the τ paper's or akamaster's names
    /// ([`crate::train::export::init_tensors`]). Left out of config.yaml when unset, so the
    /// keys of existing runs do not change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_from: Option<std::path::PathBuf>,
    /// Mixup (Zhang et al. 2018, arXiv:1710.09412) as Fixup's training script does it: per
    /// batch λ ~ Beta(α, α), the batch mixed with a permutation of itself, the loss
    /// λ·CE(y) + (1 − λ)·CE(y_perm); absent: off ([`crate::train::recipe`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mixup_alpha: Option<f64>,
    /// Label smoothing ε of the cross-entropy (targets (1 − ε)·one-hot + ε/C); absent: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_smoothing: Option<f64>,
    /// Deterministic kernels ([`crate::util::torch_ext::set_deterministic`]): on a GPU, cuDNN
    /// deterministic and not benchmarking, torch's deterministic algorithms; on the CPU, oneDNN
    /// off. What this does and does not make bit-identical: docs/reliability.md. Left out of
    /// config.yaml when false, so the keys of existing runs do not change.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deterministic: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 200,
            batch_size: 128,
            eval_batch_size: 1000,
            optimizer: SgdConfig::default(),
            schedule: ScheduleConfig::default(),
            precision: Precision::Fp32,
            channels_last: false,
            cuda_graph: CudaGraph::Off,
            checkpoint: true,
            checkpoint_minutes: TrainConfig::DEFAULT_CHECKPOINT_MINUTES,
            init_from: None,
            mixup_alpha: None,
            label_smoothing: None,
            deterministic: false,
        }
    }
}

impl TrainConfig {
    pub const DEFAULT_CHECKPOINT_MINUTES: f64 = 10.0;

    fn is_default_checkpoint_minutes(m: &f64) -> bool {
        *m == Self::DEFAULT_CHECKPOINT_MINUTES
    }

    /// Whether full-batch steps replay a CUDA graph on `device`: `true` always (the stepper
    /// refuses it off CUDA, in one line), `auto` where graphs can run: on CUDA, in a build
    /// with them, and without mixup or label smoothing (the captured step takes plain labels).
    /// Until a graphed `deepres train` is shown to learn as an ordinary one, `true` is refused
    /// ([`super::recipe::validate`]) and `auto` means off, unless
    /// [`crate::train::graph::training_verified`] (see [`crate::train::graph::UNVERIFIED`]).
    pub fn graphs_on(&self, device: tch::Device) -> bool {
        match self.cuda_graph {
            CudaGraph::Off => false,
            CudaGraph::On => true,
            CudaGraph::Auto => {
                crate::train::graph::training_verified()
                    && device.is_cuda()
                    && crate::train::graph::available()
                    && !self.mixes_labels()
            }
        }
    }

    /// Whether a step's loss takes mixed or smoothed targets (mixup, label smoothing) rather
    /// than plain labels, which is all a captured CUDA-graph step takes.
    pub fn mixes_labels(&self) -> bool {
        self.mixup_alpha.is_some() || self.label_smoothing.is_some()
    }

    /// The interval of the periodic mid-epoch checkpoint, `None` when off (0, or no
    /// checkpoints at all).
    pub fn checkpoint_interval(&self) -> Option<std::time::Duration> {
        (self.checkpoint && self.checkpoint_minutes > 0.0)
            .then(|| std::time::Duration::from_secs_f64(self.checkpoint_minutes * 60.0))
    }
}

/// SGD with momentum and weight decay (PyTorch's update rule), the τ paper's recipe by default.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
    /// Learning-rate multiplier of the scalar parameters (τ, scalar biases, Fixup multipliers).
    pub scalar_lr_mult: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-4,
            nesterov: false,
            scalar_lr_mult: 0.1,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// lr × gamma at each listed epoch.
    Multistep,
    /// Cosine from lr to 0 over the epochs (after warmup).
    Cosine,
    /// Constant lr.
    Constant,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    pub kind: ScheduleKind,
    pub milestones: Vec<i64>,
    pub gamma: f64,
    /// Linear warmup from lr/warmup_epochs to lr over the first epochs (0: none).
    pub warmup_epochs: i64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            kind: ScheduleKind::Multistep,
            milestones: vec![100, 150],
            gamma: 0.1,
            warmup_epochs: 0,
        }
    }
}

impl RunConfig {
    /// Reads a YAML file, applies `key=value` overrides, and validates.
    pub fn load(path: &Path, overrides: &[String]) -> Result<RunConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the config file", path.display()))?;
        Self::from_yaml_str(&text, &path.display().to_string(), overrides)
    }

    /// Parses YAML text (`origin` names it in errors), applies overrides, validates.
    pub fn from_yaml_str(text: &str, origin: &str, overrides: &[String]) -> Result<RunConfig> {
        let mut value: serde_yaml::Value = if text.trim().is_empty() {
            serde_yaml::Value::Mapping(Default::default())
        } else {
            serde_yaml::from_str(text)
                .map_err(|e| anyhow::anyhow!("{origin}: invalid YAML: {e}"))?
        };
        for ov in overrides {
            apply_override(&mut value, ov).with_context(|| format!("--set {ov}"))?;
        }
        let cfg: RunConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = explain_serde_error(&e.into_inner().to_string());
            anyhow::anyhow!("{}: {path}: {inner}", blame(origin, &path, overrides))
        })?;
        cfg.validate().map_err(|e| {
            // validate's errors start with the key ("model.depth: must be 6n+2 ...").
            let key = e.to_string().split(':').next().unwrap_or("").to_string();
            anyhow::anyhow!("{}: {e}", blame(origin, &key, overrides))
        })?;
        Ok(cfg)
    }

    /// The defaults with overrides only (no file).
    pub fn from_overrides(overrides: &[String]) -> Result<RunConfig> {
        Self::from_yaml_str("", "--set", overrides)
    }

    /// Checks values serde cannot check. Errors name the key and the accepted values.
    pub fn validate(&self) -> Result<()> {
        self.validate_model()?;
        self.validate_train()?;
        crate::util::device::parse_device(&self.device)
            .map_err(|e| anyhow::anyhow!("device: {e}"))?;
        if self.name.is_empty()
            || self.name.contains(['/', '\\'])
            || self.name == "."
            || self.name == ".."
        {
            bail!(
                "name: must be a non-empty name without '/', got {:?}",
                self.name
            );
        }
        if let Some(n) = self.data.limit_train.filter(|&n| n < 1) {
            bail!("data.limit_train: must be ≥ 1, got {n}");
        }
        if let Some(n) = self.data.limit_test.filter(|&n| n < 1) {
            bail!("data.limit_test: must be ≥ 1, got {n}");
        }
        if self.data.augment.crop_padding < 0 {
            bail!(
                "data.augment.crop_padding: must be ≥ 0, got {}",
                self.data.augment.crop_padding
            );
        }
        Ok(())
    }

    /// `model.*`: the depth is 6n+2, τ's constants are finite, the norm fits the init and shortcut.
    fn validate_model(&self) -> Result<()> {
        let m = &self.model;
        crate::model::resnet::blocks_per_stage(m.depth)
            .map_err(|e| anyhow::anyhow!("model.depth: {e}"))?;
        if m.width < 1 {
            bail!("model.width: must be an integer ≥ 1, got {}", m.width);
        }
        if !(m.tau.c.is_finite() && m.tau.c > 0.0) {
            bail!("model.tau.c: must be a positive number, got {}", m.tau.c);
        }
        if !m.tau.beta.is_finite() {
            bail!(
                "model.tau.beta: must be a finite number, got {}",
                m.tau.beta
            );
        }
        if !(m.tau.value.is_finite() && m.tau.value >= 0.0) {
            bail!("model.tau.value: must be a number ≥ 0, got {}", m.tau.value);
        }
        if m.norm == Norm::Bn && m.init == InitScheme::Fixup {
            bail!("model.init: fixup is for norm: none (it replaces batch norm); use init: kaiming with norm: bn");
        }
        if m.norm == Norm::None && m.shortcut != Shortcut::A {
            bail!("model.shortcut: norm: none needs shortcut: a (a-bn and b contain batch norm)");
        }
        Ok(())
    }

    /// `train.*`: epochs, batch sizes, the optimizer and the schedule.
    fn validate_train(&self) -> Result<()> {
        let t = &self.train;
        super::recipe::validate(self)?;
        if t.epochs < 1 {
            bail!("train.epochs: must be ≥ 1, got {}", t.epochs);
        }
        if t.batch_size < 2 {
            bail!(
                "train.batch_size: must be ≥ 2 (batch norm needs 2 samples), got {}",
                t.batch_size
            );
        }
        if !(t.checkpoint_minutes.is_finite() && (0.0..=1e6).contains(&t.checkpoint_minutes)) {
            bail!(
                "train.checkpoint_minutes: must be a number of minutes ≥ 0 (0: no mid-epoch checkpoint), got {}",
                t.checkpoint_minutes
            );
        }
        if t.eval_batch_size < 1 {
            bail!(
                "train.eval_batch_size: must be ≥ 1, got {}",
                t.eval_batch_size
            );
        }
        let o = &t.optimizer;
        if !(o.lr.is_finite() && o.lr > 0.0) {
            bail!(
                "train.optimizer.lr: must be a positive number, got {}",
                o.lr
            );
        }
        if !(0.0..1.0).contains(&o.momentum) {
            bail!(
                "train.optimizer.momentum: must be in [0, 1), got {}",
                o.momentum
            );
        }
        if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
            bail!(
                "train.optimizer.weight_decay: must be ≥ 0, got {}",
                o.weight_decay
            );
        }
        if !(o.scalar_lr_mult.is_finite() && o.scalar_lr_mult > 0.0) {
            bail!(
                "train.optimizer.scalar_lr_mult: must be positive, got {}",
                o.scalar_lr_mult
            );
        }
        let s = &t.schedule;
        if !(s.gamma.is_finite() && s.gamma > 0.0) {
            bail!("train.schedule.gamma: must be positive, got {}", s.gamma);
        }
        if s.warmup_epochs < 0 || (s.warmup_epochs > 0 && s.warmup_epochs >= t.epochs) {
            bail!(
                "train.schedule.warmup_epochs: must be in [0, epochs), got {}",
                s.warmup_epochs
            );
        }
        if s.milestones.windows(2).any(|w| w[0] >= w[1]) || s.milestones.iter().any(|&e| e < 1) {
            bail!(
                "train.schedule.milestones: must be increasing epochs ≥ 1, got {:?}",
                s.milestones
            );
        }
        Ok(())
    }

    /// The run directory `<out_dir>/<name>`.
    pub fn run_dir(&self) -> PathBuf {
        self.out_dir.join(&self.name)
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("a RunConfig always serializes")
    }

    /// SHA-256 (hex) of the resolved config as [`RunConfig::to_yaml`] writes it: equal configs
    /// have equal hashes. A run directory records it in `config.sha256`.
    pub fn hash(&self) -> String {
        spec_key(self)
    }
}
