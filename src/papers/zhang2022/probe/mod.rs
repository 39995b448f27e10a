//! Stability probe at initialization (the τ paper's theory check: Zhang et al. 2022,
//! arXiv:1903.07120; docs/zhang2022.md).
//!
//! On one fixed batch of real images, for each depth, τ rule, norm and seed, a freshly
//! initialized network gives
//! - the forward ratio  ‖h_L‖ / ‖h_0‖            (h_0 = stem output, h_L = last block's output),
//! - the backward ratio ‖∂ℓ/∂h_0‖ / ‖∂ℓ/∂h_L‖     (ℓ = cross-entropy of the batch),
//!
//! for the CIFAR ResNet (`--model resnet`) or the paper's fully connected ResNet
//! (`--model fc`): h_l = h_{l-1} + τ W_l relu(h_{l-1}), W_l ~ N(0, 2/m), width m.
//! Overflow is data: inf and NaN are written as such. Rows are appended to the CSV as they
//! are measured, and a rerun skips the rows already there, so a long probe resumes.
pub mod fit;
pub mod report;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::data::{self, DataSpec, DatasetName, DeviceData};
use crate::model::config::{ModelConfig, Norm, Shortcut, TauConfig, TauLearnable, TauRule};
use crate::model::resnet::{blocks_per_stage, ResNet};
use crate::model::tau::initial_tau;

/// CSV columns of the probe.
pub const COLUMNS: [&str; 9] = [
    "model",
    "depth",
    "blocks",
    "norm",
    "tau_rule",
    "tau",
    "seed",
    "forward_ratio",
    "backward_ratio",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ProbeModel {
    /// The CIFAR ResNet-(6n+2); depths are network depths, L = 3n blocks.
    Resnet,
    /// The fully connected ResNet of width m; depths are numbers of blocks L.
    Fc,
}

/// A τ rule as written on the command line: `one`, `inv_sqrt[:c]`, `inv[:c]`, `power:β`,
/// `fixed:v`. Its label (the CSV's tau_rule) is the text itself.
#[derive(Debug, Clone, PartialEq)]
pub struct TauSpec {
    pub label: String,
    pub cfg: TauConfig,
}

impl std::str::FromStr for TauSpec {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<TauSpec> {
        let (rule, arg) = match s.split_once(':') {
            Some((r, a)) => {
                let v: f64 = a
                    .parse()
                    .map_err(|_| anyhow::anyhow!("τ rule {s:?}: {a:?} is not a number"))?;
                (r, Some(v))
            }
            None => (s, None),
        };
        let mut cfg = TauConfig {
            learnable: TauLearnable::None,
            ..TauConfig::default()
        };
        match (rule, arg) {
            ("one", None) => cfg.rule = TauRule::One,
            ("inv_sqrt", c) => (cfg.rule, cfg.c) = (TauRule::InvSqrt, c.unwrap_or(1.0)),
            ("inv", c) => (cfg.rule, cfg.c) = (TauRule::Inv, c.unwrap_or(1.0)),
            ("power", Some(b)) => (cfg.rule, cfg.beta) = (TauRule::Power, b),
            ("fixed", Some(v)) => (cfg.rule, cfg.value) = (TauRule::Fixed, v),
            _ => bail!("unknown τ rule {s:?}; accepted: one, inv_sqrt[:c], inv[:c], power:β, fixed:v (e.g. power:0.25)"),
        }
        Ok(TauSpec {
            label: s.to_string(),
            cfg,
        })
    }
}

/// The τ rules of the paper's stability experiment: 1, L^-0.25, L^-0.4, L^-0.45, L^-0.5, 1/L.
pub const PAPER_TAU_RULES: &str = "one,power:0.25,power:0.4,power:0.45,inv_sqrt,inv";

/// Which images the probe uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeData {
    /// CIFAR-10 when on disk, else Fashion-MNIST, else synthetic.
    Auto,
    Named(DatasetName),
}

impl std::str::FromStr for ProbeData {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<ProbeData> {
        if s == "auto" {
            return Ok(ProbeData::Auto);
        }
        s.parse::<DatasetName>()
            .map(ProbeData::Named)
            .map_err(|e| anyhow::anyhow!("{e}; or auto"))
    }
}

#[derive(Debug, Clone)]
pub struct ProbeSpec {
    pub model: ProbeModel,
    /// ResNet: network depths 6n+2; fc: numbers of blocks.
    pub depths: Vec<i64>,
    pub taus: Vec<TauSpec>,
    pub norms: Vec<Norm>,
    pub seeds: Vec<u64>,
    /// Images in the fixed batch.
    pub batch: i64,
    /// Width m of the fc model.
    pub width: i64,
    pub data: ProbeData,
    pub data_root: std::path::PathBuf,
    pub device: Device,
}

/// One measurement (one CSV row).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeRow {
    pub model: ProbeModel,
    pub depth: i64,
    pub blocks: i64,
    pub norm: Norm,
    pub tau_rule: String,
    pub tau: f64,
    pub seed: u64,
    pub forward_ratio: f64,
    pub backward_ratio: f64,
}

impl ProbeRow {
    fn key(&self) -> (ProbeModel, i64, Norm, String, u64) {
        (
            self.model,
            self.depth,
            self.norm,
            self.tau_rule.clone(),
            self.seed,
        )
    }
}

/// The fixed batch: the first `batch` training images of the chosen dataset, normalized, on
/// `device`, and the name of the dataset used.
pub fn fixed_batch(spec: &ProbeSpec) -> Result<(Tensor, Tensor, DatasetName)> {
    let candidates: Vec<DatasetName> = match spec.data {
        ProbeData::Auto => vec![
            DatasetName::Cifar10,
            DatasetName::FashionMnist,
            DatasetName::Synthetic,
        ],
        ProbeData::Named(n) => vec![n],
    };
    let mut last_err = None;
    for name in candidates {
        let ds = DataSpec {
            root: spec.data_root.clone(),
            synthetic_train: spec.batch.max(1),
            synthetic_test: 1,
            limit_train: Some(spec.batch),
            limit_test: Some(1),
            ..DataSpec::new(name)
        };
        match data::load(&ds) {
            Ok(split) => {
                let dd = DeviceData::new(&split.train, &split.mean, &split.std, spec.device);
                let (x, y) = dd
                    .eval_batches(spec.batch)
                    .next()
                    .context("empty dataset")?;
                return Ok((x, y, name));
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.expect("at least one candidate"))
}

/// ‖a‖ / ‖b‖ in f64 (inf/NaN pass through).
fn ratio(a: &Tensor, b: &Tensor) -> f64 {
    let na = a.to_kind(Kind::Double).norm().double_value(&[]);
    let nb = b.to_kind(Kind::Double).norm().double_value(&[]);
    na / nb
}

/// Forward and backward ratios of a CIFAR ResNet at initialization.
fn probe_resnet(
    x: &Tensor,
    y: &Tensor,
    depth: i64,
    norm: Norm,
    tau: &TauConfig,
    seed: u64,
    classes: i64,
) -> Result<(f64, f64)> {
    tch::manual_seed(seed as i64);
    let vs = VarStore::new(x.device());
    let cfg = ModelConfig {
        depth,
        norm,
        shortcut: Shortcut::A,
        tau: *tau,
        ..ModelConfig::default()
    };
    let net = ResNet::new(&vs.root(), &cfg, x.size()[1], classes)?;
    // BN in training mode (batch statistics), as in the first step of training.
    let h0 = net.stem_t(x, true).detach().set_requires_grad(true);
    let hl = net.blocks_t(&h0, true);
    let loss = net.head_t(&hl).cross_entropy_for_logits(y);
    let grads = Tensor::run_backward(&[&loss], &[&h0, &hl], false, false);
    Ok((ratio(&hl, &h0), ratio(&grads[0], &grads[1])))
}

/// Forward and backward ratios of the fully connected ResNet h_l = h_{l-1} + τ W_l relu(h_{l-1}),
/// W_l ~ N(0, 2/m), with h_0 = A x (A ~ N(0, 1/d_in)) and a random linear head B ~ N(0, 1/m).
fn probe_fc(
    x: &Tensor,
    y: &Tensor,
    blocks: i64,
    tau: f64,
    width: i64,
    seed: u64,
    classes: i64,
) -> (f64, f64) {
    tch::manual_seed(seed as i64);
    let dev = x.device();
    let b = x.size()[0];
    let xf = x.reshape([b, -1]);
    let d_in = xf.size()[1];
    let a = Tensor::randn([d_in, width], (Kind::Float, dev)) / (d_in as f64).sqrt();
    let h0 = xf.matmul(&a).detach().set_requires_grad(true);
    let mut h = h0.shallow_clone();
    let std = (2.0 / width as f64).sqrt();
    for _ in 0..blocks {
        let w = Tensor::randn([width, width], (Kind::Float, dev)) * std;
        // h_l = h_{l-1} + τ W_l relu(h_{l-1})
        h = &h + h.relu().matmul(&w.tr()) * tau;
    }
    let head = Tensor::randn([width, classes], (Kind::Float, dev)) / (width as f64).sqrt();
    let loss = h.matmul(&head).cross_entropy_for_logits(y);
    let grads = Tensor::run_backward(&[&loss], &[&h0, &h], false, false);
    (ratio(&h, &h0), ratio(&grads[0], &grads[1]))
}

/// Reads the rows of an earlier (possibly interrupted) probe.
pub fn read_rows(path: &Path) -> Result<Vec<ProbeRow>> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("{}: cannot read", path.display()))?;
    r.deserialize()
        .map(|row| row.with_context(|| format!("{}: malformed row", path.display())))
        .collect()
}

// Long on purpose: the nested loop over depths, τ rules, norms and seeds with its resume
// check and CSV append reads as one measurement protocol.
/// Measures every (depth, norm, τ rule, seed) of `spec` not already in `out_csv`, appending
/// each row as soon as it is measured; returns all rows of the file.
pub fn run(spec: &ProbeSpec, out_csv: &Path, quiet: bool) -> Result<Vec<ProbeRow>> {
    for &d in &spec.depths {
        match spec.model {
            ProbeModel::Resnet => {
                blocks_per_stage(d).map_err(|e| anyhow::anyhow!("--depths: {e}"))?;
            }
            ProbeModel::Fc if d < 1 => {
                bail!("--depths: fc depths are numbers of blocks ≥ 1, got {d}")
            }
            ProbeModel::Fc => {}
        }
    }
    let (x, y, dataset) = fixed_batch(spec)?;
    let classes = y.max().int64_value(&[]) + 1;
    let classes = classes.max(10);
    let done: HashSet<_> = if out_csv.exists() {
        read_rows(out_csv)?.iter().map(|r| r.key()).collect()
    } else {
        HashSet::new()
    };
    if let Some(parent) = out_csv.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create", parent.display()))?;
    }
    let new_file = !out_csv.exists() || std::fs::metadata(out_csv)?.len() == 0;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out_csv)
        .with_context(|| format!("{}: cannot open for appending", out_csv.display()))?;
    let mut w = csv::WriterBuilder::new()
        .has_headers(new_file)
        .from_writer(file);
    let norms: Vec<Norm> = if spec.model == ProbeModel::Fc {
        vec![Norm::None]
    } else {
        spec.norms.clone()
    };
    let total = spec.depths.len() * norms.len() * spec.taus.len() * spec.seeds.len();
    if !quiet {
        eprintln!(
            "probe: {:?} on a fixed batch of {} {} images, {total} measurements, device {:?}",
            spec.model,
            x.size()[0],
            dataset,
            spec.device
        );
    }
    let mut n = 0;
    for &depth in &spec.depths {
        let blocks = match spec.model {
            ProbeModel::Resnet => 3 * blocks_per_stage(depth)?,
            ProbeModel::Fc => depth,
        };
        for &norm in &norms {
            for t in &spec.taus {
                let tau = initial_tau(&t.cfg, blocks);
                for &seed in &spec.seeds {
                    n += 1;
                    let mut row = ProbeRow {
                        model: spec.model,
                        depth,
                        blocks,
                        norm,
                        tau_rule: t.label.clone(),
                        tau,
                        seed,
                        forward_ratio: f64::NAN,
                        backward_ratio: f64::NAN,
                    };
                    if done.contains(&row.key()) {
                        continue;
                    }
                    let (f, b) = match spec.model {
                        ProbeModel::Resnet => {
                            probe_resnet(&x, &y, depth, norm, &t.cfg, seed, classes)?
                        }
                        ProbeModel::Fc => probe_fc(&x, &y, blocks, tau, spec.width, seed, classes),
                    };
                    (row.forward_ratio, row.backward_ratio) = (f, b);
                    w.serialize(&row)?;
                    w.flush()?;
                    if !quiet {
                        eprintln!("[{n}/{total}] L={blocks:<4} {norm:?} τ={:<10} seed {seed}: forward {f:.4e} backward {b:.4e}", t.label);
                    }
                }
            }
        }
    }
    let mut file = w
        .into_inner()
        .map_err(|e| anyhow::anyhow!("{}: {}", out_csv.display(), e.error()))?;
    file.flush()?;
    read_rows(out_csv)
}
