//! `deepres eval`: a saved model (a run directory's last or best weights, a deepres export, or
//! a PyTorch state dict under the τ paper's or akamaster's names) on a dataset's test split:
//! loss, top-1 and top-5 accuracy, and the accuracy per class as CSV.
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

use super::config::DataConfig;
use super::export::{build, load_file, load_run, Weights};
use crate::data::{self, DataSpec, DatasetName, DeviceData};
use crate::model::ResNet;

/// What to evaluate and on what.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    /// A run directory or a model file (.safetensors).
    pub target: PathBuf,
    pub weights: Weights,
    /// The dataset (default: the run's; required for a file without metadata).
    pub data: Option<DatasetName>,
    pub data_root: Option<PathBuf>,
    /// τ of a τ-paper BN state dict without metadata.
    pub tau: Option<f64>,
    /// The per-class CSV (default: next to the target).
    pub out: Option<PathBuf>,
    pub device: Device,
}

/// Test-set figures of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalResult {
    pub images: i64,
    pub loss: f64,
    pub top1: f64,
    pub top5: f64,
    /// (images, correct) per class.
    pub per_class: Vec<(i64, i64)>,
}

/// Mean cross-entropy, top-1, top-5 and per-class counts in eval mode.
pub fn evaluate_full(model: &ResNet, data: &DeviceData, batch: i64, classes: i64) -> EvalResult {
    tch::no_grad(|| {
        let dev = data.device();
        let mut loss = Tensor::zeros([], (Kind::Double, dev));
        let (mut top1, mut top5) = (loss.zeros_like(), loss.zeros_like());
        let mut seen = Tensor::zeros([classes], (Kind::Int64, dev));
        let mut hit = seen.zeros_like();
        let mut images = 0;
        for (x, y) in data.eval_batches(batch) {
            let logits = tch::nn::ModuleT::forward_t(model, &x, false).to_kind(Kind::Float);
            let n = y.size()[0];
            loss += logits.cross_entropy_for_logits(&y).to_kind(Kind::Double) * n as f64;
            let right = logits.argmax(-1, false).eq_tensor(&y);
            top1 += right.sum(Kind::Double);
            let k = classes.min(5);
            let (_, idx) = logits.topk(k, -1, true, true);
            top5 += idx
                .eq_tensor(&y.unsqueeze(1))
                .any_dim(1, false)
                .sum(Kind::Double);
            seen += y.bincount::<Tensor>(None, classes);
            hit += y.masked_select(&right).bincount::<Tensor>(None, classes);
            images += n;
        }
        let per = |t: &Tensor| Vec::<i64>::try_from(t.to_device(Device::Cpu)).unwrap_or_default();
        let nf = images.max(1) as f64;
        EvalResult {
            images,
            loss: loss.double_value(&[]) / nf,
            top1: top1.double_value(&[]) / nf,
            top5: top5.double_value(&[]) / nf,
            per_class: per(&seen).into_iter().zip(per(&hit)).collect(),
        }
    })
}

/// A request resolved: the model, its tensors and metadata, the dataset, the default CSV.
struct Resolved {
    model: crate::model::config::ModelConfig,
    vars: BTreeMap<String, Tensor>,
    meta: BTreeMap<String, String>,
    spec: DataSpec,
    out: PathBuf,
}

/// Resolves a request: run directory or model file.
fn resolve(r: &EvalRequest) -> Result<Resolved> {
    let weights = format!("{:?}", r.weights).to_lowercase();
    if r.target.is_dir() {
        let run = load_run(&r.target, r.weights)?;
        let mut spec = run.cfg.data.spec();
        if let Some(name) = r.data {
            spec = DataConfig {
                name,
                root: spec.root,
                ..Default::default()
            }
            .spec();
        }
        spec.limit_test = None;
        if let Some(root) = &r.data_root {
            spec.root = root.clone();
        }
        let out = r.target.join(format!("eval-{weights}-{}.csv", spec.name));
        return Ok(Resolved {
            model: run.cfg.model,
            vars: run.vars,
            meta: run.meta,
            spec,
            out,
        });
    }
    let file = load_file(&r.target, r.tau)?;
    let meta = file.meta;
    let name = match (r.data, meta.get("dataset")) {
        (Some(n), _) => n,
        (None, Some(d)) => d.parse().map_err(anyhow::Error::msg)?,
        (None, None) => anyhow::bail!(
            "{}: the file does not say which dataset it was trained on: give --data",
            r.target.display()
        ),
    };
    // As training loads it (a run config's data defaults).
    let spec = DataConfig {
        name,
        root: r.data_root.clone().unwrap_or_else(|| "data".into()),
        ..Default::default()
    }
    .spec();
    let out = r.target.with_extension(format!("eval-{}.csv", spec.name));
    Ok(Resolved {
        model: file.model,
        vars: file.vars,
        meta,
        spec,
        out,
    })
}

/// `deepres eval`: evaluates, writes the per-class CSV, returns the text to print.
pub fn eval(r: &EvalRequest) -> Result<String> {
    let Resolved {
        model: model_cfg,
        vars,
        meta,
        spec,
        out: default_out,
    } = resolve(r)?;
    let split = data::load(&spec)?;
    // The normalization training used (recorded in the run / the export), else the training
    // split's per-channel statistics, which is what deepres normalizes with.
    let parse = |k: &str| {
        meta.get(k)
            .and_then(|v| serde_json::from_str::<Vec<f64>>(v).ok())
    };
    let (mean, std) = match (parse("input_mean"), parse("input_std")) {
        (Some(m), Some(s)) => (m, s),
        _ => (split.mean.clone(), split.std.clone()),
    };
    let (mut vs, net) = build(&model_cfg, &vars, split.channels, split.num_classes)?;
    vs.set_device(r.device);
    let data = DeviceData::new(&split.test, &mean, &std, r.device);
    let res = evaluate_full(&net, &data, 500, split.num_classes);
    let out = r.out.clone().unwrap_or(default_out);
    let mut csv = String::from("class,images,correct,accuracy\n");
    for (c, (n, k)) in res.per_class.iter().enumerate() {
        csv += &format!("{c},{n},{k},{:.6}\n", *k as f64 / (*n).max(1) as f64);
    }
    crate::util::write_atomic(&out, csv)?;
    Ok(format!(
        "{}: {} test images of {}: loss {:.4}, top-1 {:.4}, top-5 {:.4}; per class: {}\n",
        r.target.display(),
        res.images,
        spec.name,
        res.loss,
        res.top1,
        res.top5,
        out.display()
    ))
}
