//! Batched training of Marion's classifiers (M8, M9): many independent models, each with its
//! own initialization, β and learning rate, trained at once in one program (every layer one
//! batched matmul over the models), with a per-epoch checkpoint ([`super::checkpoint`]) and
//! one at the step in progress when a preemption signal stops it.
use anyhow::{bail, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

use super::checkpoint::{checkpoint_key, load_checkpoint, save_checkpoint, Point, Position};
use super::spec::{Inputs, TrainFig, Training};
use crate::data::{self, DataSpec, DatasetName, DeviceData};
use crate::model::marion_net::{MarionModel, MarionNet, MarionShape};
use crate::model::scale::residual_scale;
use crate::model::weight_init::LayerInit;
use crate::train::adam::BatchedAdam;
use crate::train::graph::{StepCount, Stepper};
use crate::train::interrupt::{self, Interrupted};

/// One model of a batched training run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrainRun {
    pub init: LayerInit,
    pub beta: f64,
    pub lr: f64,
}

/// The models of one batched training run, in the order of their [`TrainRun`]s.
pub struct Trained {
    /// All the models (tensors `[models, ...]`).
    pub net: MarionNet,
    /// Test accuracy per model (NaN for a diverged model).
    pub test_acc: Vec<f64>,
    /// Mean training loss of the last epoch per model.
    pub train_loss: Vec<f64>,
    /// Whether the model's training loss became non-finite.
    pub diverged: Vec<bool>,
    /// Wall seconds of the training and its evaluation, over every process that trained it
    /// (a resumed training adds its checkpoint's; NaN when that checkpoint predates them).
    pub seconds: f64,
}

/// What a batched training of Marion's classifiers needs besides its data and its runs.
pub struct TrainSetup<'a> {
    pub model: MarionModel,
    pub depth: i64,
    pub width: i64,
    pub train: &'a TrainFig,
    pub seed: u64,
    pub device: Device,
    /// Print one progress line per epoch (and one a minute inside a long epoch) with this
    /// label (None: quiet).
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

    /// The setup of a figure's `training` settings: quiet, without a checkpoint.
    pub(super) fn of(t: &'a Training, device: Device) -> TrainSetup<'a> {
        TrainSetup::new(t.model, t.depth, t.width, &t.train, t.seed, device)
    }
}

/// The first dataset of `names` that loads (limits applied), or the errors of all.
pub(super) fn load_first(names: &[DatasetName], t: &TrainFig) -> Result<data::DataSplit> {
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

/// Per-model mean cross-entropy of logits `[models, batch, classes]` against labels `[batch]`:
/// `[models]`.
fn per_model_cross_entropy(logits: &Tensor, y: &Tensor) -> Tensor {
    let (models, batch) = (logits.size()[0], y.size()[0]);
    let target = y.view([1, batch, 1]).expand([models, batch, 1], false);
    -logits
        .log_softmax(-1, Kind::Float)
        .gather(2, &target, false)
        .squeeze_dim(-1)
        .mean_dim(1, false, Kind::Float)
}

/// The models being trained, their residual scales and their optimizer.
struct Batch {
    net: MarionNet,
    /// s_m = L^-β_m, broadcast against the hidden states `[models, batch, d]`.
    scale: Tensor,
    opt: BatchedAdam,
    base_lr: Vec<f64>,
}

/// Draws the models of `runs` (after `manual_seed(seed)`, inside [`MarionNet::trainable`]) and
/// their optimizer.
fn build(setup: &TrainSetup, split: &data::DataSplit, runs: &[TrainRun]) -> Batch {
    let shape = MarionShape {
        depth: setup.depth,
        width: setup.width,
        d_in: split.channels * split.height * split.width,
        d_out: split.num_classes,
    };
    let vs = nn::VarStore::new(setup.device);
    let inits: Vec<LayerInit> = runs.iter().map(|r| r.init).collect();
    let net = MarionNet::trainable(setup.model, &vs.root(), shape, &inits, setup.seed);
    let scales: Vec<f32> = runs
        .iter()
        .map(|r| residual_scale(setup.depth, r.beta) as f32)
        .collect();
    let scale = Tensor::from_slice(&scales)
        .view([runs.len() as i64, 1, 1])
        .to_device(setup.device);
    let params = net
        .named_tensors()
        .iter()
        .map(|(_, p)| p.shallow_clone())
        .collect();
    let base_lr: Vec<f64> = runs.iter().map(|r| r.lr).collect();
    let mut opt = BatchedAdam::new(params, &base_lr);
    if setup.train.cuda_graph {
        opt.use_device_bias_correction();
    }
    Batch {
        net,
        scale,
        opt,
        base_lr,
    }
}

/// The progress line of an epoch: how many of the `models` still train (their losses `live`)
/// and the median of those losses (a few models of a learning-rate grid have huge, finite ones).
fn epoch_line(
    label: &str,
    (epoch, epochs): (i64, i64),
    models: usize,
    live: &[f64],
    secs: f64,
) -> String {
    let mut sorted = live.to_vec();
    sorted.sort_by(f64::total_cmp);
    format!(
        "{label}: epoch {}/{epochs}: {} of {models} models training, median loss {:.4} ({secs:.1}s)",
        epoch + 1,
        sorted.len(),
        sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN),
    )
}

/// Stops inside epoch `epoch` at position `p` on a preemption signal: writes the checkpoint
/// (`key`, the batch's models and optimizer, the losses and divergences so far) and returns
/// the [`Interrupted`] error that says so.
fn stop_inside(
    setup: &TrainSetup,
    epoch: i64,
    p: &Position,
    (key, batch, train_loss, diverged): (&str, &Batch, &[f64], &[bool]),
    seconds: f64,
) -> anyhow::Error {
    let path = setup
        .checkpoint
        .as_deref()
        .expect("stoppable with a checkpoint");
    let at = Point {
        epochs_done: epoch,
        position: Some(p),
        seconds,
    };
    if let Err(e) = save_checkpoint(path, key, at, &batch.net, &batch.opt, train_loss, diverged) {
        return e;
    }
    let sig = interrupt::signal().unwrap_or(libc::SIGTERM);
    let at = format!(
        "at step {} of epoch {} (checkpoint written)",
        p.steps,
        epoch + 1
    );
    stopped(path, sig, at)
}

/// The split on the device, its pixels scaled as `inputs` says.
fn device_data(
    split: &data::DataSplit,
    inputs: Inputs,
    device: Device,
) -> (DeviceData, DeviceData) {
    let c = split.channels as usize;
    let (mean, std) = match inputs {
        Inputs::Raw => (vec![0.0; c], vec![1.0; c]),
        Inputs::Standardized => (split.mean.clone(), split.std.clone()),
    };
    let on_device = |ds| DeviceData::new(ds, &mean, &std, device);
    (on_device(&split.train), on_device(&split.test))
}

/// Trains one model per entry of `runs`, all at once in one batched program (every layer one
/// batched matmul over the models): Adam with each model's learning rate (× 0.1 every
/// `lr_step` epochs), cross-entropy, batches of flattened images (raw or standardized:
/// [`TrainFig::inputs`]) in the same order
/// for every model; model m starts from `runs[m].init` drawn after `manual_seed(seed)` and has
/// the residual scale L^-β_m. The losses stay on the device and are read once per epoch; a
/// model whose loss turns non-finite is marked diverged (the others go on, unaffected).
///
/// With a checkpoint, a preemption signal ([`crate::train::interrupt`]) stops the training
/// after the step in progress: the checkpoint then records the position inside the epoch, the
/// error is [`Interrupted`] and a rerun continues from that step to the same models.
pub fn train_classifiers(
    setup: &TrainSetup,
    split: &data::DataSplit,
    runs: &[TrainRun],
) -> Result<Trained> {
    let start = Instant::now();
    let (t, device) = (setup.train, setup.device);
    let models = runs.len();
    let mut batch = build(setup, split, runs);
    let (train, test) = device_data(split, t.inputs, device);
    let mut train_loss = vec![f64::NAN; models];
    let mut diverged = vec![false; models];
    // Everything that makes the runs these runs: a checkpoint of other runs is not resumed.
    let key = checkpoint_key(setup, split, runs);
    let resumed = resume(setup, &key, &mut batch, &mut train_loss, &mut diverged)?;
    let (first_epoch, mut position) = (resumed.epochs_done, resumed.position);
    // The wall seconds trained so far, the checkpoint's included.
    let seconds = || resumed.seconds + start.elapsed().as_secs_f64();
    for epoch in first_epoch..t.epochs {
        if let (Some(path), Some(sig)) = (&setup.checkpoint, interrupt::signal()) {
            return Err(stopped(path, sig, format!("before epoch {}", epoch + 1)));
        }
        let t0 = Instant::now();
        let at = Epoch {
            number: epoch,
            start: position.take(),
            stoppable: setup.checkpoint.is_some(),
            label: setup.label.as_deref(),
        };
        let mean = match train_epoch(&mut batch, &train, t, setup.seed, at)? {
            EpochEnd::Done(mean) => mean,
            EpochEnd::Stopped(p) => {
                let ckpt = (key.as_str(), &batch, &train_loss[..], &diverged[..]);
                return Err(stop_inside(setup, epoch, &p, ckpt, seconds()));
            }
        };
        for (i, l) in mean.into_iter().enumerate() {
            diverged[i] |= !l.is_finite();
            train_loss[i] = l;
        }
        let live: Vec<f64> = (0..models)
            .filter(|&i| !diverged[i])
            .map(|i| train_loss[i])
            .collect();
        if let Some(label) = &setup.label {
            let secs = t0.elapsed().as_secs_f64();
            eprintln!(
                "{}",
                epoch_line(label, (epoch, t.epochs), models, &live, secs)
            );
        }
        if let Some(path) = &setup.checkpoint {
            let (net, opt) = (&batch.net, &batch.opt);
            let at = Point {
                epochs_done: epoch + 1,
                position: None,
                seconds: seconds(),
            };
            save_checkpoint(path, &key, at, net, opt, &train_loss, &diverged)?;
        }
        if setup.stop_after == Some(epoch + 1) {
            bail!("stopped after epoch {} (TrainSetup::stop_after)", epoch + 1);
        }
        if live.is_empty() {
            break;
        }
    }
    let test_acc = test_accuracy(&batch, &test, &diverged)?;
    Ok(Trained {
        net: batch.net,
        test_acc,
        train_loss,
        diverged,
        seconds: seconds(),
    })
}

/// Restores the setup's checkpoint when it holds these runs (`key`): how far it got (the
/// position's sums moved to the training device); from the start when there is none.
fn resume(
    setup: &TrainSetup,
    key: &str,
    batch: &mut Batch,
    train_loss: &mut [f64],
    diverged: &mut [bool],
) -> Result<Point<Position>> {
    let start = Point {
        epochs_done: 0,
        position: None,
        seconds: 0.0,
    };
    let Some(path) = setup.checkpoint.as_deref().filter(|p| p.exists()) else {
        return Ok(start);
    };
    let Batch { net, opt, .. } = batch;
    let Some(point) = load_checkpoint(path, key, net, opt, train_loss, diverged)? else {
        // Another setting's training: kept, not overwritten by this one's first save.
        let aside = crate::util::atomic::move_aside(path)?;
        eprintln!(
            "{}: a checkpoint of other settings; moved to {}",
            path.display(),
            aside.display()
        );
        return Ok(start);
    };
    let done = point.epochs_done;
    if let Some(label) = &setup.label {
        let inside = point.position.as_ref().map_or(String::new(), |p| {
            format!(", at step {} of epoch {}", p.steps, done + 1)
        });
        eprintln!(
            "{label}: resumed after epoch {done}{inside} from {}",
            path.display()
        );
    }
    let position = point.position.map(|p| Position {
        sum: p.sum.to_device(setup.device),
        ..p
    });
    Ok(Point { position, ..point })
}

/// The error of a training stopped by signal `sig` (`at`: where): one line naming the
/// checkpoint and how to resume.
fn stopped(checkpoint: &Path, sig: i32, at: String) -> anyhow::Error {
    Interrupted(format!(
        "{}: training stopped by {} {at}; resumable: rerun the same command",
        checkpoint.display(),
        interrupt::name(sig)
    ))
    .into()
}

/// The epoch to train: its number (0-based), where it starts (None: at its first step) and
/// whether a preemption signal may stop it after a step.
struct Epoch<'a> {
    number: i64,
    start: Option<Position>,
    stoppable: bool,
    /// The progress label: a line every [`PROGRESS_EVERY`] inside the epoch (none when quiet).
    label: Option<&'a str>,
}

/// How often a long epoch (minutes on a CPU at L = 1000) says how far it is.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// How [`train_epoch`] ended: every model's mean training loss, or stopped by a signal.
enum EpochEnd {
    Done(Vec<f64>),
    Stopped(Position),
}

/// One epoch over `train` (the learning rates decayed for the epoch), from its start position
/// on: the batches of the steps done are drawn in the same order and skipped.
fn train_epoch(
    batch: &mut Batch,
    train: &DeviceData,
    t: &TrainFig,
    seed: u64,
    at: Epoch<'_>,
) -> Result<EpochEnd> {
    let Batch {
        net,
        scale,
        opt,
        base_lr,
    } = batch;
    let decay = t.lr_factor(at.number);
    opt.set_lr(&base_lr.iter().map(|lr| lr * decay).collect::<Vec<_>>());
    let models = base_lr.len() as i64;
    let mut p = at.start.unwrap_or_else(|| Position {
        steps: 0,
        images: 0,
        sum: Tensor::zeros([models], (Kind::Float, scale.device())),
    });
    let steps = (train.len() + t.batch - 1) / t.batch;
    let order = train.train_batches(t.batch, seed as i64 * 1000 + at.number, data::Augment::NONE);
    let mut last = Instant::now();
    // (one graph per epoch: it adds into this epoch's `p.sum`)
    let mut stepper = Stepper::on(t.cuda_graph, scale.device(), t.batch)
        .map_err(|e| anyhow::anyhow!("train.cuda_graph: {e:#}"))?;
    for (x, y) in order.skip(p.steps as usize) {
        let b = y.size()[0];
        let x = x.view([b, -1]);
        // Adam's step count (and its device-side bias corrections) advance on the host: a
        // replayed step cannot.
        opt.begin_step();
        let inputs = || (x.shallow_clone(), y.shallow_clone());
        stepper.step_with(b, inputs, Vec::new(), &mut p, |given, p| {
            let (x, y) = given.unwrap_or((&x, &y));
            let logits = net.forward(x, scale);
            let losses = per_model_cross_entropy(&logits, y);
            opt.backward_update(&losses.sum(Kind::Float));
            let _ = p.sum.g_add_(&(losses.detach() * b as f64));
            p.images += b;
            p.steps += 1;
        })?;
        if let Some(label) = at.label.filter(|_| last.elapsed() >= PROGRESS_EVERY) {
            last = Instant::now();
            let (e, k) = (at.number + 1, p.steps);
            eprintln!("{label}: epoch {e}/{}: step {k} of {steps}", t.epochs);
        }
        if at.stoppable && p.steps < steps && interrupt::requested(at.number, p.steps) {
            return Ok(EpochEnd::Stopped(p));
        }
    }
    Ok(EpochEnd::Done(Vec::<f64>::try_from(
        (p.sum / p.images as f64).to_kind(Kind::Double),
    )?))
}

impl StepCount for Position {
    fn counts(&self) -> (i64, i64) {
        (self.images, self.steps)
    }
    fn set_counts(&mut self, (images, steps): (i64, i64)) {
        (self.images, self.steps) = (images, steps);
    }
}

/// Every model's accuracy on `test` (NaN for a diverged model).
fn test_accuracy(batch: &Batch, test: &DeviceData, diverged: &[bool]) -> Result<Vec<f64>> {
    let models = diverged.len() as i64;
    let correct = tch::no_grad(|| {
        let mut correct = Tensor::zeros([models], (Kind::Int64, batch.scale.device()));
        for (x, y) in test.eval_batches(1000) {
            let b = y.size()[0];
            let pred = batch
                .net
                .forward(&x.view([b, -1]), &batch.scale)
                .argmax(-1, false);
            let _ = correct.g_add_(&pred.eq_tensor(&y.unsqueeze(0)).sum_dim_intlist(
                1,
                false,
                Kind::Int64,
            ));
        }
        Vec::<i64>::try_from(correct)
    })?;
    let total = test.len() as f64;
    Ok(diverged
        .iter()
        .zip(correct)
        .map(|(&d, c)| if d { f64::NAN } else { c as f64 / total })
        .collect())
}
