//! Checkpoints: model variables (with BN running statistics), optimizer momentum buffers, the
//! number of finished epochs and the seed, in one safetensors file written atomically
//! (temporary file, fsync, rename), so that a kill at any moment leaves the previous good one.
//!
//! RNG state: every epoch reseeds torch's generator from (seed, epoch) before shuffling and
//! augmenting, so (seed, epoch) in the checkpoint is the whole RNG state a resume needs.
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Kind, Tensor};

use super::config::RunConfig;
use super::run_dir::{Summary, CHECKPOINT_FILE};
use super::sgd::Sgd;
use super::step::StepSums;
use crate::util::safetensors_file;

pub struct Saved {
    /// Epochs finished when the checkpoint was written.
    pub epoch: i64,
    pub seed: i64,
    pub best_test_acc: f64,
    pub best_epoch: i64,
    /// [`RunConfig::hash`](crate::train::config::RunConfig::hash) of the run's config (absent in
    /// checkpoints of older deepres versions).
    pub config_hash: Option<String>,
    /// Written by an interrupted epoch ([`super::interrupt`]): where it stopped.
    pub position: Option<Position>,
}

/// The position inside the epoch after `epoch` finished ones: steps done and the epoch's sums
/// so far (loss·images, correct, gradient norms, images), as the device held them.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    pub step: i64,
    pub loss: f64,
    pub correct: f64,
    pub grad_norm: f64,
    pub images: i64,
}

impl Position {
    /// The position after `step` steps of an epoch whose sums so far are `sums` (read from
    /// the device).
    pub(crate) fn of(sums: &StepSums, step: i64) -> Position {
        Position {
            step,
            loss: sums.loss.double_value(&[]),
            correct: sums.correct.double_value(&[]),
            grad_norm: sums.grad_norm.double_value(&[]),
            images: sums.images,
        }
    }
}

/// Where and for what run a checkpoint is written now: the run's config, directory, summary
/// (progress and best epoch so far) and the config hash it carries.
pub(crate) struct Target<'a> {
    pub cfg: &'a RunConfig,
    pub dir: &'a Path,
    pub summary: &'a Summary,
    pub run_hash: &'a str,
}

impl Target<'_> {
    /// Writes the checkpoint after `summary.epochs_done` epochs, with `position` inside the
    /// next (a signal stopped it there, or the periodic mid-epoch checkpoint).
    pub(crate) fn save(&self, vs: &VarStore, opt: &Sgd, position: Option<Position>) -> Result<()> {
        save(self.dir, vs, opt, &self.saved(position))
    }

    /// What a checkpoint written now records.
    pub(crate) fn saved(&self, position: Option<Position>) -> Saved {
        let s = self.summary;
        Saved {
            epoch: s.epochs_done,
            seed: self.cfg.seed as i64,
            best_test_acc: s.best_test_acc,
            best_epoch: s.best_epoch,
            config_hash: Some(self.run_hash.to_string()),
            position,
        }
    }
}

/// Writes the checkpoint of `dir` atomically. Tensors are stored contiguous (NCHW) whatever
/// their memory format in training (channels-last weights load back into either).
pub fn save(dir: &Path, vs: &VarStore, opt: &Sgd, meta: &Saved) -> Result<()> {
    save_to(&path(dir), vs, opt, meta, Vec::new())
}

/// [`save`] to `path`, with `extra` named tensors beside the checkpoint's own (a pack's
/// pending checkpoint names its pack: [`super::pack_commit`]).
pub(crate) fn save_to(
    path: &Path,
    vs: &VarStore,
    opt: &Sgd,
    meta: &Saved,
    extra: Vec<(String, Tensor)>,
) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(n, t)| (format!("model.{n}"), t))
        .collect();
    named.extend(
        opt.state()
            .into_iter()
            .map(|(n, t)| (format!("optim.{n}"), t)),
    );
    named.push(("meta.epoch".into(), Tensor::from_slice(&[meta.epoch])));
    named.push(("meta.seed".into(), Tensor::from_slice(&[meta.seed])));
    named.push((
        "meta.best_test_acc".into(),
        Tensor::from_slice(&[meta.best_test_acc]),
    ));
    named.push((
        "meta.best_epoch".into(),
        Tensor::from_slice(&[meta.best_epoch]),
    ));
    if let Some(h) = &meta.config_hash {
        named.push((
            "meta.config_sha256".into(),
            Tensor::from_slice(h.as_bytes()),
        ));
    }
    if let Some(p) = &meta.position {
        named.push(("position.step".into(), Tensor::from_slice(&[p.step])));
        named.push(("position.images".into(), Tensor::from_slice(&[p.images])));
        let sums = [p.loss, p.correct, p.grad_norm];
        named.push(("position.sums".into(), Tensor::from_slice(&sums)));
    }
    named.extend(extra);
    safetensors_file::write_tensors(path, &named, |tmp| {
        if super::crash_point("checkpoint", meta.epoch) {
            // the test of a kill inside this write: a torn temporary file, then SIGKILL
            let len = std::fs::metadata(tmp)?.len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(tmp)?
                .set_len(len / 2)?;
            super::die();
        }
        Ok(())
    })
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(CHECKPOINT_FILE)
}

/// Every tensor of the checkpoint of `dir` by name (`model.*`, `optim.*`, `meta.*`,
/// `position.*`), or one line naming the file when it cannot be read.
pub fn read(dir: &Path) -> Result<BTreeMap<String, Tensor>> {
    let path = path(dir);
    // The reader's error already starts with the file's name.
    let file = safetensors_file::read(&path).map_err(|e| {
        anyhow::anyhow!("{e:#}: a corrupt or unreadable checkpoint; move it away to restart this run from scratch")
    })?;
    Ok(file.tensors)
}

/// Loads the checkpoint of `dir` into `vs` and `opt`. A checkpoint whose variables do not
/// match the model (another config) or that cannot be read is refused; nothing is modified then.
pub fn load(dir: &Path, vs: &mut VarStore, opt: &mut Sgd) -> Result<Saved> {
    let path = path(dir);
    let map = read(dir)?;
    let vars = vs.variables();
    for (name, var) in &vars {
        match map.get(&format!("model.{name}")) {
            None => bail!("{}: checkpoint has no variable {name}: it comes from another model config", path.display()),
            Some(t) if t.size() != var.size() => bail!(
                "{}: variable {name} has shape {:?} in the checkpoint, {:?} in the model: another model config",
                path.display(), t.size(), var.size()
            ),
            _ => {}
        }
    }
    let n_model = map.keys().filter(|k| k.starts_with("model.")).count();
    if n_model != vars.len() {
        bail!(
            "{}: checkpoint has {n_model} model variables, the model {}: another model config",
            path.display(),
            vars.len()
        );
    }
    let get_i = |k: &str| -> Result<i64> {
        map.get(k)
            .map(|t| t.int64_value(&[0]))
            .with_context(|| format!("{}: missing {k}", path.display()))
    };
    let get_f = |k: &str| -> Result<f64> {
        map.get(k)
            .map(|t| t.to_kind(Kind::Double).double_value(&[0]))
            .with_context(|| format!("{}: missing {k}", path.display()))
    };
    let saved = Saved {
        epoch: get_i("meta.epoch")?,
        seed: get_i("meta.seed")?,
        best_test_acc: get_f("meta.best_test_acc")?,
        best_epoch: get_i("meta.best_epoch")?,
        config_hash: map.get("meta.config_sha256").map(|t| {
            String::from_utf8_lossy(&Vec::<u8>::try_from(t).unwrap_or_default()).into_owned()
        }),
        position: match (map.get("position.step"), map.get("position.sums")) {
            (Some(step), Some(sums)) => {
                let v = Vec::<f64>::try_from(sums).unwrap_or_default();
                if v.len() != 3 {
                    bail!("{}: position.sums has {} values, 3 expected; move the checkpoint away to restart the run", path.display(), v.len());
                }
                Some(Position {
                    step: step.int64_value(&[0]),
                    loss: v[0],
                    correct: v[1],
                    grad_norm: v[2],
                    images: get_i("position.images")?,
                })
            }
            _ => None,
        },
    };
    let optim: HashMap<String, Tensor> = map
        .iter()
        .filter_map(|(k, t)| {
            k.strip_prefix("optim.")
                .map(|n| (n.to_string(), t.shallow_clone()))
        })
        .collect();
    tch::no_grad(|| {
        for (name, mut var) in vars {
            let src = &map[&format!("model.{name}")];
            var.copy_(&src.to_device(var.device()).to_kind(var.kind()));
        }
    });
    opt.load_state(&optim)?;
    Ok(saved)
}
