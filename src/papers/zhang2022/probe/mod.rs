//! Stability probe at initialization (the τ paper's theory check: Zhang et al. 2022,
//! arXiv:1903.07120; docs/zhang2022.md).
//!
//! On one fixed batch of real images, for each depth, τ rule, norm and seed, a freshly
//! initialized network gives
//! - the forward ratio  ‖h_L‖ / ‖h_0‖            (h_0 = stem output, h_L = last block's output),
//! - the backward ratio ‖∂ℓ/∂h_0‖ / ‖∂ℓ/∂h_L‖     (ℓ = cross-entropy of the batch),
//!
//! for the CIFAR ResNet (`--model resnet`; batch norm, where there is one, in train mode: the
//! batch's own statistics, as in the first training step) or the paper's fully connected
//! ResNet (`--model fc`, its eq. (1)): h_0 = relu(A x), h_l = relu(h_{l-1} + τ W_l h_{l-1}),
//! W_l ~ N(0, 2/m), width m.
//! Overflow is data: inf and NaN are written as such. Rows are appended to the CSV as they
//! are measured, and a rerun skips the rows already there, so a long probe resumes. Every row
//! names its dataset, batch size, width and [`PROBE_VERSION`]; one probe.csv holds one dataset,
//! batch size and version (and one width per model): a rerun of another setting into it, and a
//! probe.csv of an older deepres without these columns, are refused in one line
//! ([`check_setting`]), so rows of different settings never meet in one table.
pub mod fit;
pub mod report;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::data::{self, DataSpec, DatasetName, DeviceData};
use crate::model::config::{ModelConfig, Norm, Shortcut, TauConfig, TauLearnable, TauRule};
use crate::model::resnet::{blocks_per_stage, ResNet};
use crate::model::tau::initial_tau;

/// The version of the measurement protocol, in every row: bump it when a change of the code
/// changes the numbers, so that old rows are not mixed with new ones. Version 1 is the files
/// written before the column existed (without `dataset` either); version 2's fc model was
/// h_l = h_{l-1} + τ W_l relu(h_{l-1}) (pre-activation), version 3's the paper's eq. (1).
pub const PROBE_VERSION: u32 = 3;

/// CSV columns of the probe.
pub const COLUMNS: [&str; 13] = [
    "dataset",
    "model",
    "width",
    "batch",
    "depth",
    "blocks",
    "norm",
    "tau_rule",
    "tau",
    "seed",
    "forward_ratio",
    "backward_ratio",
    "probe_version",
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

/// The τ rules of the paper's stability experiment: 1, L^-0.25, L^(-1/2+c) for c = 0.2, 0.1,
/// 0.05 (L^-0.3, L^-0.4, L^-0.45), L^-0.5, 1/L.
pub const PAPER_TAU_RULES: &str = "one,power:0.25,power:0.3,power:0.4,power:0.45,inv_sqrt,inv";

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
    /// The dataset of the fixed batch.
    pub dataset: DatasetName,
    pub model: ProbeModel,
    /// fc: the width m; resnet: the base width of the CIFAR ResNet.
    pub width: i64,
    /// Images in the fixed batch.
    pub batch: i64,
    pub depth: i64,
    pub blocks: i64,
    pub norm: Norm,
    pub tau_rule: String,
    pub tau: f64,
    pub seed: u64,
    pub forward_ratio: f64,
    pub backward_ratio: f64,
    pub probe_version: u32,
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

/// Forward and backward ratios ‖h_L‖/‖h_0‖ and ‖∂ℓ/∂h_0‖/‖∂ℓ/∂h_L‖ of the τ paper's fully
/// connected ResNet (its eq. (1), post-activation like its conv blocks) on the images `x`
/// (flattened) with labels `y`: h_0 = relu(A x), A ~ N(0, 1/d_in);
/// h_l = relu(h_{l-1} + τ W_l h_{l-1}), W_l ~ N(0, 2/m); ℓ the cross-entropy of a random
/// linear head B ~ N(0, 1/m). Drawn from torch's generator seeded with `seed`, in the order
/// A, W_1 … W_L, B (each `randn` of shape `[in, out]`).
pub fn fc_ratios(
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
    let h0 = xf.matmul(&a).relu().detach().set_requires_grad(true);
    let mut h = h0.shallow_clone();
    let std = (2.0 / width as f64).sqrt();
    for _ in 0..blocks {
        let w = Tensor::randn([width, width], (Kind::Float, dev)) * std;
        // h_l = relu(h_{l-1} + τ W_l h_{l-1})
        h = (&h + h.matmul(&w) * tau).relu();
    }
    let head = Tensor::randn([width, classes], (Kind::Float, dev)) / (width as f64).sqrt();
    let loss = h.matmul(&head).cross_entropy_for_logits(y);
    let grads = Tensor::run_backward(&[&loss], &[&h0, &h], false, false);
    (ratio(&h, &h0), ratio(&grads[0], &grads[1]))
}

/// Reads the rows of an earlier (possibly interrupted) probe; a file without the `dataset`
/// column (an older deepres) is refused in one line with the fix.
pub fn read_rows(path: &Path) -> Result<Vec<ProbeRow>> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let headers = r
        .headers()
        .with_context(|| format!("{}: cannot read", path.display()))?;
    if !headers.iter().any(|h| h == "dataset") {
        bail!(
            "{}: a probe.csv of an older deepres, without the dataset column (its rows cannot be told apart from other datasets'): move it aside (e.g. to probe.old.csv) and rerun",
            path.display()
        );
    }
    crate::util::csv_rows::read(path)
}

/// Refuses `rows` (of `path`) of another dataset, batch size or probe version than `ours`, or of
/// the same model with another width, in one line naming the file and the fix.
pub fn check_setting(path: &Path, rows: &[ProbeRow], ours: &ProbeRow) -> Result<()> {
    let setting = |r: &ProbeRow| {
        format!(
            "{} width {} on {}, batch {}, probe version {}",
            format!("{:?}", r.model).to_lowercase(),
            r.width,
            r.dataset,
            r.batch,
            r.probe_version
        )
    };
    let other = rows.iter().find(|r| {
        (r.dataset, r.batch, r.probe_version) != (ours.dataset, ours.batch, ours.probe_version)
            || (r.model == ours.model && r.width != ours.width)
    });
    if let Some(r) = other {
        bail!(
            "{}: holds probe rows of {}, this probe is {}: use another --out, or move the file aside",
            path.display(),
            setting(r),
            setting(ours)
        );
    }
    Ok(())
}

// Long on purpose: the nested loop over depths, τ rules, norms and seeds with its resume
// check and CSV append reads as one measurement protocol.
/// Measures every (depth, norm, τ rule, seed) of `spec` not already in `out_csv`, appending
/// each row as soon as it is measured; returns all rows of the file.
#[allow(clippy::too_many_lines)]
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
    let width = match spec.model {
        ProbeModel::Resnet => ModelConfig::default().width,
        ProbeModel::Fc => spec.width,
    };
    let template = ProbeRow {
        dataset,
        model: spec.model,
        width,
        batch: x.size()[0],
        depth: 0,
        blocks: 0,
        norm: Norm::None,
        tau_rule: String::new(),
        tau: f64::NAN,
        seed: 0,
        forward_ratio: f64::NAN,
        backward_ratio: f64::NAN,
        probe_version: PROBE_VERSION,
    };
    let done: HashSet<_> = if out_csv.exists() {
        let rows = read_rows(out_csv)?;
        check_setting(out_csv, &rows, &template)?;
        rows.iter().map(|r| r.key()).collect()
    } else {
        HashSet::new()
    };
    if let Some(parent) = out_csv.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create", parent.display()))?;
    }
    let mut new_file = !out_csv.exists() || std::fs::metadata(out_csv)?.len() == 0;
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
                        depth,
                        blocks,
                        norm,
                        tau_rule: t.label.clone(),
                        tau,
                        seed,
                        ..template.clone()
                    };
                    if done.contains(&row.key()) {
                        continue;
                    }
                    let (f, b) = match spec.model {
                        ProbeModel::Resnet => {
                            probe_resnet(&x, &y, depth, norm, &t.cfg, seed, classes)?
                        }
                        ProbeModel::Fc => fc_ratios(&x, &y, blocks, tau, spec.width, seed, classes),
                    };
                    (row.forward_ratio, row.backward_ratio) = (f, b);
                    append_row(out_csv, &row, new_file)?;
                    new_file = false;
                    if !quiet {
                        eprintln!("[{n}/{total}] L={blocks:<4} {norm:?} τ={:<10} seed {seed}: forward {f:.4e} backward {b:.4e}", t.label);
                    }
                }
            }
        }
    }
    read_rows(out_csv)
}

/// Appends `row` (after the header when `header`) and fsyncs; a failed write (a full disk)
/// leaves the file as it was ([`crate::util::atomic::append`]).
fn append_row(path: &Path, row: &ProbeRow, header: bool) -> Result<()> {
    let bytes = crate::util::csv_rows::to_bytes(path, std::slice::from_ref(row), header)?;
    crate::util::atomic::append(path, &bytes)
}
