//! One training step and one epoch: forward in the configured precision, cross-entropy,
//! backward, the global gradient norm, the SGD update; sums stay on the device. The training
//! loop ([`super::run`]), the CUDA-graph stepper ([`super::graph`]) and `deepres bench` all run
//! [`train_step`].
use anyhow::Result;
use std::time::{Duration, Instant};
use tch::nn::ModuleT;
use tch::{Device, Kind, Tensor};

use super::config::{Precision, RunConfig};
use super::graph;
use super::recipe::{self, Targets};
use super::sgd::Sgd;
use super::{epoch_seed, schedule};
use crate::data::DeviceData;
use crate::model::resnet::ResNet;
use crate::util::torch_ext;

pub(crate) struct EpochStats {
    pub loss: f64,
    pub acc: f64,
    pub grad_norm: f64,
}

/// Sums of one stretch of training steps, kept on the device (no host sync per step).
pub struct StepSums {
    pub loss: Tensor,
    pub correct: Tensor,
    pub grad_norm: Tensor,
    pub images: i64,
    pub steps: i64,
}

impl StepSums {
    /// Zeroes the sums in place (the same tensors: a captured CUDA graph keeps adding into
    /// them).
    pub fn reset(&mut self) {
        for t in [&mut self.loss, &mut self.correct, &mut self.grad_norm] {
            let _ = t.zero_();
        }
        self.images = 0;
        self.steps = 0;
    }

    pub fn new(device: Device) -> StepSums {
        Self::of_shape(device, &[])
    }

    /// The sums of a pack's `members` members, `[P]` each (steps and images are shared).
    pub fn for_members(device: Device, members: i64) -> StepSums {
        Self::of_shape(device, &[members])
    }

    fn of_shape(device: Device, shape: &[i64]) -> StepSums {
        let zero = || Tensor::zeros(shape, (Kind::Float, device));
        StepSums {
            loss: zero(),
            correct: zero(),
            grad_norm: zero(),
            images: 0,
            steps: 0,
        }
    }
}

/// One SGD step on the batch x against `targets` (the labels; with mixup, the pair of labels
/// and λ; [`Targets`]) at learning rate `lr`: forward, cross-entropy, backward, the global
/// gradient norm (when `grad_norm`), the update; sums accumulate on the device. The training
/// loop and `deepres bench` both run exactly this.
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    model: &ResNet,
    opt: &mut Sgd,
    x: &Tensor,
    targets: &Targets,
    lr: f64,
    precision: Precision,
    grad_norm: bool,
    sums: &mut StepSums,
) {
    let b = targets.len();
    let logits = forward(model, x, true, precision);
    let loss = targets.loss(&logits);
    opt.backward(&loss);
    if grad_norm {
        sums.grad_norm += opt.grad_norm().to_device(x.device());
    }
    opt.step(lr);
    sums.loss += loss.detach() * (b as f64);
    sums.correct += targets.correct(&logits);
    sums.images += b;
    sums.steps += 1;
}

/// The periodic mid-epoch checkpoint ([`super::config::TrainConfig::checkpoint_minutes`]):
/// `save(opt, sums, steps)` after the step that ends each `every` of wall time inside an epoch
/// (the last step excepted: the epoch's own checkpoint follows it).
pub(crate) struct Periodic<'a> {
    pub every: Option<Duration>,
    pub save: &'a mut dyn FnMut(&Sgd, &StepSums, i64) -> Result<()>,
}

/// How an epoch ended: all its steps done, or stopped by a signal after `steps` steps.
pub(crate) enum EpochEnd {
    Done(EpochStats),
    Interrupted { steps: i64 },
}

/// One epoch of SGD from step `start` (0, or where an interrupted epoch stopped, its sums
/// restored in `sums`). Loss, accuracy and gradient norm accumulate on the device and are
/// read once at the end (plus a NaN check every 100 steps, so a diverged run stops early).
/// The first `start` batches are drawn and mixed but not trained on, so the generator is
/// where it was. After each step a signal ([`super::interrupt`]) stops the epoch, and the
/// periodic checkpoint is written when due.
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_epoch(
    model: &ResNet,
    opt: &mut Sgd,
    stepper: &mut graph::Stepper,
    sums: &mut StepSums,
    data: &DeviceData,
    cfg: &RunConfig,
    (epoch, start): (i64, i64),
    steps_per_epoch: i64,
    bar: Option<&indicatif::ProgressBar>,
    periodic: Periodic<'_>,
) -> Result<EpochEnd> {
    if start == 0 {
        sums.reset();
    }
    let mut since = Instant::now();
    let batches = data.train_batches(
        cfg.train.batch_size,
        epoch_seed(cfg.seed, epoch),
        cfg.data.augment,
    );
    for (k, (x, y)) in batches.enumerate() {
        let (x, targets) = recipe::prepare(cfg, x, &y);
        if (k as i64) < start {
            continue; // replayed: the draws happen, the step does not
        }
        let lr = schedule::run_lr(cfg, epoch, sums.steps, steps_per_epoch);
        stepper.step(
            model,
            opt,
            &x,
            &targets,
            lr,
            cfg.train.precision,
            true,
            sums,
        )?;
        if let Some(bar) = bar {
            bar.inc(1);
        }
        if sums.steps % 100 == 0 && !sums.loss.double_value(&[]).is_finite() {
            break;
        }
        let done = k as i64 + 1;
        if done < steps_per_epoch {
            if super::interrupt::requested(epoch, done) {
                return Ok(EpochEnd::Interrupted { steps: done });
            }
            if periodic.every.is_some_and(|every| since.elapsed() >= every) {
                (periodic.save)(opt, sums, done)?;
                since = Instant::now();
            }
            if super::crash_point(format_args!("step-{done}"), epoch + 1) {
                super::die(); // the test of a kill -9 after a step (and its checkpoint)
            }
        }
    }
    let images = sums.images.max(1) as f64;
    Ok(EpochEnd::Done(EpochStats {
        loss: sums.loss.double_value(&[]) / images,
        acc: sums.correct.double_value(&[]) / images,
        grad_norm: sums.grad_norm.double_value(&[]) / sums.steps.max(1) as f64,
    }))
}

/// The forward pass in the configured precision, logits in fp32. bf16 and fp16 are CUDA
/// autocast (convolutions and the classifier in the low precision, batch norm's statistics
/// and the weights in fp32), as torch.autocast("cuda", dtype) does.
pub fn forward<M: ModuleT>(model: &M, x: &Tensor, train: bool, precision: Precision) -> Tensor {
    let bf16 = match precision {
        Precision::Fp32 => return model.forward_t(x, train),
        Precision::Bf16 => true,
        Precision::Fp16 => false,
    };
    torch_ext::cuda_autocast(bf16, || model.forward_t(x, train))
        .expect("CUDA autocast")
        .to_kind(Kind::Float)
}

/// Mean cross-entropy and accuracy on a dataset, in eval mode, without autograd.
pub fn evaluate(model: &ResNet, data: &DeviceData, batch: i64, precision: Precision) -> (f64, f64) {
    tch::no_grad(|| {
        let mut loss_sum: Option<Tensor> = None;
        let mut correct: Option<Tensor> = None;
        let mut n = 0i64;
        for (x, y) in data.eval_batches(batch) {
            let logits = forward(model, &x, false, precision);
            let l = logits.cross_entropy_for_logits(&y) * (y.size()[0] as f64);
            let c = logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Float);
            loss_sum = Some(match loss_sum {
                Some(s) => s + l,
                None => l,
            });
            correct = Some(match correct {
                Some(s) => s + c,
                None => c,
            });
            n += y.size()[0];
        }
        let n = n.max(1) as f64;
        (
            loss_sum.map(|t| t.double_value(&[])).unwrap_or(f64::NAN) / n,
            correct.map(|t| t.double_value(&[])).unwrap_or(0.0) / n,
        )
    })
}
