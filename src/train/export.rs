//! A trained model out of its run directory: the last epoch's weights (from the checkpoint) or
//! the best epoch's (best.safetensors), as a safetensors file under the names of a public
//! PyTorch code ([`crate::model::interop`]) or as TorchScript, with the metadata a user needs
//! to rebuild and feed the model exactly as training did. Also the way back: a model file
//! (an export, or a PyTorch state dict under those names) as a deepres model.
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::config::RunConfig;
use super::run_dir::{self, BEST_FILE, CHECKPOINT_FILE, CONFIG_FILE};
use crate::model::config::{ModelConfig, Norm, Shortcut, TauConfig, TauLearnable, TauRule};
use crate::model::interop::{self, Format};
use crate::model::ResNet;
use crate::util::safetensors_file;

/// Which epoch's weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Weights {
    /// The last finished epoch (checkpoint.safetensors).
    Last,
    /// The epoch with the best test accuracy (best.safetensors).
    Best,
}

/// What `deepres export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// The τ paper's resnet_cifar.py / resnet_cifar_nobn.py state dict (safetensors).
    TauPaper,
    /// akamaster/pytorch_resnet_cifar10's resnet.py state dict (safetensors).
    Akamaster,
    /// A traced TorchScript module (`torch.jit.load`), eval mode, input [N, C, 32, 32].
    Torchscript,
}

/// A run's model: its config, its tensors by deepres name, and the metadata of those weights.
pub struct RunModel {
    pub cfg: RunConfig,
    pub vars: BTreeMap<String, Tensor>,
    pub meta: BTreeMap<String, String>,
}

/// Reads the run's config and the `weights` asked for; a missing file gets one line naming it.
pub fn load_run(dir: &Path, weights: Weights) -> Result<RunModel> {
    let cfg_path = dir.join(CONFIG_FILE);
    if !cfg_path.is_file() {
        bail!("{}: not a run directory (no {CONFIG_FILE})", dir.display());
    }
    let cfg = RunConfig::load(&cfg_path, &[])?;
    let summary = run_dir::read_summary(dir).ok();
    let mut meta = BTreeMap::new();
    let vars = match weights {
        Weights::Last => {
            let path = dir.join(CHECKPOINT_FILE);
            if !path.is_file() {
                bail!("{}: no checkpoint yet (the run has not finished an epoch with train.checkpoint on)", path.display());
            }
            let all = super::checkpoint::read(dir)?;
            if let Some(e) = all.get("meta.epoch") {
                meta.insert("epoch".into(), e.int64_value(&[0]).to_string());
            }
            all.into_iter()
                .filter_map(|(k, t)| k.strip_prefix("model.").map(|n| (n.to_string(), t)))
                .collect()
        }
        Weights::Best => {
            let path = dir.join(BEST_FILE);
            if !path.is_file() {
                bail!("{}: no best weights yet (written when the test accuracy improves; runs of deepres before 2026-11-30 have none); use --weights last", path.display());
            }
            let f = safetensors_file::read(&path)?;
            meta.extend(f.metadata);
            f.tensors
        }
    };
    meta.insert("weights".into(), format!("{weights:?}").to_lowercase());
    if let Some(s) = summary {
        if !s.input_mean.is_empty() {
            meta.insert("input_mean".into(), serde_json::to_string(&s.input_mean)?);
            meta.insert("input_std".into(), serde_json::to_string(&s.input_std)?);
        }
        meta.insert("dataset".into(), cfg.data.name.to_string());
    }
    Ok(RunModel { cfg, vars, meta })
}

/// The model's description in an export's metadata: enough to rebuild it.
fn model_meta(
    m: &ModelConfig,
    vars: &BTreeMap<String, Tensor>,
) -> Result<BTreeMap<String, String>> {
    let fc = vars
        .get("fc.weight")
        .context("the weights have no fc.weight")?;
    let stem = vars
        .get("stem.weight")
        .context("the weights have no stem.weight")?;
    let blocks = 3 * crate::model::blocks_per_stage(m.depth)?;
    let tau = match vars.get("tau") {
        Some(t) => t.double_value(&[0]),
        None => crate::model::initial_tau(&m.tau, blocks),
    };
    Ok(BTreeMap::from([
        ("depth".into(), m.depth.to_string()),
        (
            "norm".into(),
            serde_yaml::to_string(&m.norm)?.trim().to_string(),
        ),
        (
            "shortcut".into(),
            serde_yaml::to_string(&m.shortcut)?.trim().to_string(),
        ),
        ("tau".into(), tau.to_string()),
        (
            "tau_learnable".into(),
            serde_yaml::to_string(&m.tau.learnable)?.trim().to_string(),
        ),
        ("classes".into(), fc.size()[0].to_string()),
        ("in_channels".into(), stem.size()[1].to_string()),
    ]))
}

/// `deepres export`: writes `out`; returns a one-line description.
pub fn export(dir: &Path, weights: Weights, format: ExportFormat, out: &Path) -> Result<String> {
    let run = load_run(dir, weights)?;
    let m = &run.cfg.model;
    let mut meta = run.meta.clone();
    meta.extend(model_meta(m, &run.vars)?);
    meta.insert("deepres_version".into(), env!("CARGO_PKG_VERSION").into());
    let fmt = match format {
        ExportFormat::TauPaper => Format::TauPaper,
        ExportFormat::Akamaster => Format::Akamaster,
        ExportFormat::Torchscript => {
            trace(&run, out)?;
            return Ok(format!(
                "{}: TorchScript of {} ({} weights)",
                out.display(),
                dir.display(),
                meta["weights"]
            ));
        }
    };
    meta.insert("format".into(), fmt.name().into());
    let tensors =
        interop::export(m, fmt, &run.vars).with_context(|| format!("{}", dir.display()))?;
    safetensors_file::write(out, &tensors, &meta)?;
    Ok(format!(
        "{}: {} tensors under the {} names ({} weights of {})",
        out.display(),
        tensors.len(),
        fmt.name(),
        meta["weights"],
        dir.display()
    ))
}

/// Builds the run's model on the CPU with `vars` loaded into it (eval-ready).
pub fn build(
    cfg: &ModelConfig,
    vars: &BTreeMap<String, Tensor>,
    in_channels: i64,
    classes: i64,
) -> Result<(VarStore, ResNet)> {
    let mut vs = VarStore::new(Device::Cpu);
    let net = ResNet::new(&vs.root(), cfg, in_channels, classes)?;
    copy_into(&vs, vars)?;
    vs.freeze();
    Ok((vs, net))
}

/// Copies `vars` (deepres names) into the variables of `vs`, on their device and kind; a
/// missing, misshapen or extra tensor is an error naming it ("another model config").
pub fn copy_into(vs: &VarStore, vars: &BTreeMap<String, Tensor>) -> Result<()> {
    let own = vs.variables();
    for (name, var) in &own {
        let Some(src) = vars.get(name) else {
            bail!("the weights have no {name}: they come from another model config");
        };
        if src.size() != var.size() {
            bail!(
                "{name} has shape {:?} in the weights, {:?} in the model: another model config",
                src.size(),
                var.size()
            );
        }
    }
    if vars.len() != own.len() {
        bail!(
            "the weights have {} tensors, the model {}: another model config",
            vars.len(),
            own.len()
        );
    }
    tch::no_grad(|| {
        for (name, var) in &own {
            let src = vars[name].to_device(var.device()).to_kind(var.kind());
            var.shallow_clone().copy_(&src);
        }
    });
    Ok(())
}

/// The model traced in eval mode on a [1, C, 32, 32] input and saved as TorchScript.
fn trace(run: &RunModel, out: &Path) -> Result<()> {
    let stem = run
        .vars
        .get("stem.weight")
        .context("the weights have no stem.weight")?;
    let fc = run
        .vars
        .get("fc.weight")
        .context("the weights have no fc.weight")?;
    let (_vs, net) = build(&run.cfg.model, &run.vars, stem.size()[1], fc.size()[0])?;
    let x = Tensor::zeros([1, stem.size()[1], 32, 32], (Kind::Float, Device::Cpu));
    let module = tch::CModule::create_by_tracing("ResNet", "forward", &[x], &mut |inputs| {
        vec![tch::nn::ModuleT::forward_t(&net, &inputs[0], false)]
    })?;
    crate::util::atomic::write_atomic_by_path(out, |tmp| Ok(module.save(tmp)?))
}

/// A model read from a file: its config, its tensors by deepres name, the file's metadata.
pub struct ModelFile {
    pub model: ModelConfig,
    pub vars: BTreeMap<String, Tensor>,
    pub meta: BTreeMap<String, String>,
}

/// A model file: an export of deepres (its metadata says everything) or a PyTorch state dict
/// under the τ paper's or akamaster's names (the model is read off its tensors; the τ of the
/// τ paper's BN net, a constructor argument there, must come from `tau`).
pub fn load_file(path: &Path, tau: Option<f64>) -> Result<ModelFile> {
    let f = safetensors_file::read(path)?;
    let st = &f.tensors;
    let err = |msg: String| anyhow::anyhow!("{}: {msg}", path.display());
    let fmt = if st.contains_key("linear.weight") {
        Format::Akamaster
    } else if st.contains_key("fc.weight") && st.contains_key("conv1.weight") {
        Format::TauPaper
    } else {
        return Err(err(
            "neither a τ-paper nor an akamaster state dict (no conv1/fc or linear weights)".into(),
        ));
    };
    let n = (0..)
        .take_while(|b| st.contains_key(&format!("layer1.{b}.conv1.weight")))
        .count() as i64;
    let norm = if st.contains_key("bn1.weight") {
        Norm::Bn
    } else {
        Norm::None
    };
    let tau_value = match (st.get("tau"), tau, f.metadata.get("tau")) {
        (Some(t), _, _) => t.to_kind(Kind::Double).double_value(&[0]),
        (None, Some(v), _) => v,
        (None, None, Some(v)) => v.parse().map_err(|_| err(format!("metadata tau {v:?} is not a number")))?,
        (None, None, None) if fmt == Format::Akamaster => 1.0,
        (None, None, None) => return Err(err("the τ paper's BN net takes τ as an argument, which this file does not record: give --tau".into())),
    };
    let cfg = ModelConfig {
        depth: 6 * n + 2,
        norm,
        shortcut: match (fmt, norm) {
            (Format::TauPaper, Norm::Bn) => Shortcut::ABn,
            _ => Shortcut::A,
        },
        tau: TauConfig {
            rule: TauRule::Fixed,
            value: tau_value,
            learnable: if norm == Norm::None {
                TauLearnable::Shared
            } else {
                TauLearnable::None
            },
            ..TauConfig::default()
        },
        ..ModelConfig::default()
    };
    let (in_ch, classes) = (
        st.get("conv1.weight").map_or(3, |t| t.size()[1]),
        st.get(if fmt == Format::Akamaster {
            "linear.weight"
        } else {
            "fc.weight"
        })
        .map_or(10, |t| t.size()[0]),
    );
    let vs = VarStore::new(Device::Cpu);
    ResNet::new(&vs.root(), &cfg, in_ch, classes).map_err(|e| err(format!("{e}")))?;
    let expected = vs
        .variables()
        .into_iter()
        .map(|(k, t)| (k, t.size()))
        .collect();
    let vars = interop::import(&cfg, fmt, st, &expected).map_err(|e| err(format!("{e:#}")))?;
    Ok(ModelFile {
        model: cfg,
        vars,
        meta: f.metadata,
    })
}

/// The tensors of `path` for a model of config `cfg` whose variables are `expected` (deepres
/// name → shape): deepres's own names (best.safetensors, or a checkpoint's `model.` entries)
/// as they are, a τ-paper or akamaster state dict through the inverse mapping. A missing or
/// misshapen tensor is an error naming the file.
pub fn init_tensors(
    path: &Path,
    cfg: &ModelConfig,
    expected: &BTreeMap<String, Vec<i64>>,
) -> Result<BTreeMap<String, Tensor>> {
    let f = safetensors_file::read(path)?;
    let err = |msg: String| anyhow::anyhow!("{}: {msg}", path.display());
    let native = |prefix: &str| f.tensors.contains_key(&format!("{prefix}stem.weight"));
    let vars: BTreeMap<String, Tensor> = if native("") || native("model.") {
        let prefix = if native("") { "" } else { "model." };
        let mut out = BTreeMap::new();
        for (name, shape) in expected {
            let t = f.tensors.get(&format!("{prefix}{name}")).ok_or_else(|| {
                err(format!(
                    "has no tensor {prefix}{name}: it comes from another model config"
                ))
            })?;
            if t.size() != *shape {
                return Err(err(format!(
                    "{name} has shape {:?}, the model needs {shape:?}",
                    t.size()
                )));
            }
            out.insert(name.clone(), t.shallow_clone());
        }
        out
    } else {
        let fmt = if f.tensors.contains_key("linear.weight") {
            Format::Akamaster
        } else {
            Format::TauPaper
        };
        interop::import(cfg, fmt, &f.tensors, expected).map_err(|e| err(format!("{e:#}")))?
    };
    Ok(vars)
}
