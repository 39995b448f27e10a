//! The training checkpoint of [`super::train::train_classifiers`], written after every epoch
//! and, on a preemption signal, after the step in progress: the models, the Adam state, the
//! epochs done, the position inside the next epoch (steps done and the epoch's loss sums so
//! far; absent at an epoch's end), the wall seconds trained so far, the losses and divergence
//! flags, and the key of the runs ([`checkpoint_key`]); a checkpoint of other runs is never
//! resumed. Written atomically by [`crate::train::tensor_file`].
use anyhow::Result;
use serde::Serialize;
use std::path::Path;
use tch::{Device, Tensor};

use super::spec::TrainFig;
use super::train::{TrainRun, TrainSetup};
use crate::data::{DataSplit, DatasetName};
use crate::model::marion_net::{MarionModel, MarionNet};
use crate::train::adam::BatchedAdam;
use crate::train::tensor_file::{self, TensorFile};
use crate::util::key::spec_key;

/// Everything that makes a batched training these runs: the settings of the setup, every run,
/// the dataset and its sizes (after the limits).
#[derive(Serialize)]
struct CheckpointKey<'a> {
    model: MarionModel,
    depth: i64,
    width: i64,
    train: &'a TrainFig,
    seed: u64,
    runs: &'a [TrainRun],
    dataset: DatasetName,
    train_examples: i64,
    test_examples: i64,
    /// [`crate::model::weight_init::IID_SAMPLER_VERSION`] when a run has i.i.d. weights (which
    /// it draws); left out otherwise, so the keys of fBm and smooth runs did not change.
    #[serde(skip_serializing_if = "Option::is_none")]
    iid_sampler: Option<u32>,
}

/// The key a training checkpoint of `runs` on `split` with `setup` carries
/// ([`crate::util::key::spec_key`] of the settings that determine the result).
pub fn checkpoint_key(setup: &TrainSetup, split: &DataSplit, runs: &[TrainRun]) -> String {
    spec_key(&CheckpointKey {
        model: setup.model,
        depth: setup.depth,
        width: setup.width,
        train: setup.train,
        seed: setup.seed,
        runs,
        dataset: split.name,
        train_examples: split.train.len(),
        test_examples: split.test.len(),
        iid_sampler: runs
            .iter()
            .any(|r| r.init == crate::model::weight_init::LayerInit::Iid)
            .then_some(crate::model::weight_init::IID_SAMPLER_VERSION),
    })
}

/// Where a training stopped inside an epoch: the steps done, the images they saw and the sum
/// of every model's loss × batch size over them (`[models]`, on the training device).
pub(super) struct Position {
    pub steps: i64,
    pub images: i64,
    pub sum: Tensor,
}

/// How far a checkpoint's training got: the epochs done, the position inside the next one
/// (None at an epoch's end) and the wall seconds it took, over every process that trained it
/// (NaN when a checkpoint written before they were recorded was resumed on the way).
pub(super) struct Point<P> {
    pub epochs_done: i64,
    pub position: Option<P>,
    pub seconds: f64,
}

/// Writes a training checkpoint atomically ([`tensor_file::write`]): the models, the Adam
/// state, how far the training got (`at`), the losses and divergence flags, and the runs' key.
pub(super) fn save_checkpoint(
    path: &Path,
    key: &str,
    at: Point<&Position>,
    net: &MarionNet,
    opt: &BatchedAdam,
    train_loss: &[f64],
    diverged: &[bool],
) -> Result<()> {
    let cpu = |t: &Tensor| t.detach().to_device(Device::Cpu);
    let mut named: Vec<(String, Tensor)> = vec![
        ("key".into(), Tensor::from_slice(key.as_bytes())),
        ("epochs_done".into(), Tensor::from_slice(&[at.epochs_done])),
        ("seconds".into(), Tensor::from_slice(&[at.seconds])),
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
    if let Some(p) = at.position {
        named.push(("position".into(), Tensor::from_slice(&[p.steps, p.images])));
        named.push(("epoch_loss_sum".into(), cpu(&p.sum)));
    }
    for (name, p) in net.named_tensors() {
        named.push((format!("param.{name}"), cpu(p)));
    }
    for (i, (m, v)) in opt.moments().enumerate() {
        named.push((format!("exp_avg.{i}"), cpu(m)));
        named.push((format!("exp_avg_sq.{i}"), cpu(v)));
    }
    tensor_file::write(path, &named, "training checkpoint")
}

/// Restores a checkpoint of [`save_checkpoint`] into the models, the optimizer, the losses and
/// the divergence flags; returns how far it got (the position's sums on the CPU), or None
/// (nothing restored) when its key is not `key`.
pub(super) fn load_checkpoint(
    path: &Path,
    key: &str,
    net: &MarionNet,
    opt: &mut BatchedAdam,
    train_loss: &mut [f64],
    diverged: &mut [bool],
) -> Result<Option<Point<Position>>> {
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
    let position = match file.get("position") {
        Ok(p) => Some(Position {
            steps: p.int64_value(&[0]),
            images: p.int64_value(&[1]),
            sum: file.get("epoch_loss_sum")?.shallow_clone(),
        }),
        Err(_) => None, // written at an epoch's end
    };
    Ok(Some(Point {
        epochs_done: file.get("epochs_done")?.int64_value(&[0]),
        position,
        // Checkpoints written before 2026-12-03 did not record it: unknown.
        seconds: file
            .get("seconds")
            .map_or(f64::NAN, |t| t.double_value(&[0])),
    }))
}
