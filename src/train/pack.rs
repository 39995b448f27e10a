//! Training a pack ("many models as one program"): P run configs that share the
//! architecture and the data train as one [`PackedResNet`], one forward and one backward pass
//! per step for all of them, each member exactly as it would train alone:
//!
//! - its own initialization ([`super::build_model`] with its seed, then copied in);
//! - its own batches: every member has its own stream of batches (its seed's shuffle, its own
//!   crops, flips, cutout and mixup draws) on its own copy of torch's generator state
//!   ([`crate::util::torch_ext::rng_state`]), and the pack's input holds member p's batch in
//!   its channels ([`stack_inputs`]);
//! - its own loss: the pack minimizes Σ_p (mean loss of member p), so each member's gradient
//!   is its own;
//! - its own SGD (lr and schedule, momentum, weight decay, scalar lr multiplier:
//!   [`Sgd::for_pack`]) and its own metrics (loss, accuracy, gradient norm, τ, test loss and
//!   accuracy: the test set is evaluated once for all, each member on the same images);
//! - its own divergence: a member whose loss is NaN or inf at a check (every 100 steps and at
//!   the end of the epoch, as alone) is recorded as diverged at that epoch and frozen (its loss
//!   leaves the sum, its rows are no longer updated) while the others go on.
//!
//! What members may differ in: seed, name, out_dir, `model.tau`'s rule and constants,
//! `train.optimizer`, `train.schedule`, mixup, label smoothing, `data.augment`, `init_from`,
//! checkpoints and logs. Everything else must be equal ([`check_pack`]). In fp16 each member
//! has its own loss scale ([`super::loss_scale`]). With `train.cuda_graph` the pack's step is
//! captured and replayed as one model's is ([`super::graph::Stepper::step_pack`]).
use anyhow::{bail, Context, Result};
use std::rc::Rc;
use std::time::{Duration, Instant};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::config::{Precision, RunConfig};
use super::graph::Stepper;
use super::metrics::{EpochRow, EpochStatus};
use super::recipe::{self, Targets};
use super::sgd::Sgd;
use super::step::{forward, StepSums};
use super::{epoch_seed, schedule};
use crate::data::loader::Draws;
use crate::data::{self, DeviceData};
use crate::model::packed::{
    check_packable, load_member, repeat_input, stack_batches, stack_inputs, PackedResNet,
};
use crate::util::torch_ext;

/// The part of a run config that the members of a pack share: the config with every key a
/// member may set on its own put back to its default.
pub fn shared_part(cfg: &RunConfig) -> RunConfig {
    let d = RunConfig::default();
    let mut s = cfg.clone();
    s.name = d.name;
    s.out_dir = d.out_dir;
    s.seed = d.seed;
    s.log = d.log;
    s.data.augment = d.data.augment;
    s.model.tau = crate::model::config::TauConfig {
        learnable: cfg.model.tau.learnable,
        ..d.model.tau
    };
    let t = &mut s.train;
    t.optimizer = d.train.optimizer;
    t.schedule = d.train.schedule;
    t.mixup_alpha = None;
    t.label_smoothing = None;
    t.init_from = None;
    t.checkpoint = d.train.checkpoint;
    t.checkpoint_minutes = d.train.checkpoint_minutes;
    s
}

/// The first dotted key where two YAML values differ.
fn first_difference(a: &serde_yaml::Value, b: &serde_yaml::Value, at: &str) -> Option<String> {
    match (a, b) {
        (serde_yaml::Value::Mapping(x), serde_yaml::Value::Mapping(y)) => {
            x.iter().find_map(|(k, v)| {
                let key = format!("{at}{}", k.as_str().unwrap_or("?"));
                match y.get(k) {
                    Some(w) => first_difference(v, w, &format!("{key}.")),
                    None => Some(key),
                }
            })
        }
        _ if a == b => None,
        _ => Some(at.trim_end_matches('.').to_string()),
    }
}

/// Checks that `cfgs` can train as one pack (see the module doc): one line naming the first
/// member and key that differ.
pub fn check_pack(cfgs: &[RunConfig]) -> Result<()> {
    let Some(first) = cfgs.first() else {
        bail!("a pack needs at least one run");
    };
    let models: Vec<_> = cfgs.iter().map(|c| c.model.clone()).collect();
    check_packable(&models)?;
    let base = serde_yaml::to_value(shared_part(first))?;
    for c in &cfgs[1..] {
        let other = serde_yaml::to_value(shared_part(c))?;
        if let Some(key) = first_difference(&base, &other, "") {
            bail!(
                "{}: {key} differs from {}'s; runs of a pack must share it (only seeds, τ's rule, the optimizer, the schedule, the recipe and the augmentation may differ); pack them separately",
                c.name,
                first.name
            );
        }
    }
    Ok(())
}

/// A member frozen after it diverged: its epoch sums at that moment.
#[derive(Debug, Clone, Copy)]
struct Frozen {
    loss: f64,
    correct: f64,
    grad_norm: f64,
    images: i64,
    steps: i64,
}

/// A pack with its optimizer and data on the device.
pub struct PackTrainer {
    pub cfgs: Vec<RunConfig>,
    pub vs: VarStore,
    pub model: PackedResNet,
    pub opt: Sgd,
    /// Ordinary or CUDA-graph steps (`train.cuda_graph`).
    stepper: Stepper,
    pub sums: StepSums,
    /// Shared with the epoch's batch streams, so that a periodic checkpoint may borrow the
    /// trainer while they run.
    pub train_data: Rc<DeviceData>,
    pub test_data: DeviceData,
    pub device: Device,
    /// The per-channel mean and std the inputs are normalized with.
    pub input_norm: (Vec<f64>, Vec<f64>),
    /// Per member: the epoch it diverged at (1-based), once it has.
    pub diverged_at: Vec<Option<i64>>,
    /// Per member, inside the epoch in progress: its sums when it was frozen.
    frozen: Vec<Option<Frozen>>,
    /// Each member as a single model with its own optimizer: what its run directory's files
    /// are written from and its checkpoint is read into ([`super::pack_run`]).
    pub singles: Vec<(VarStore, crate::model::resnet::ResNet, Sgd)>,
    /// `train.deterministic` on the CPU: libtorch on one thread while the pack lives.
    _one_thread: Option<crate::util::threads::TorchThreads>,
}

/// How a pack's epoch ended: each member's row (None for those that diverged before), or
/// stopped by a signal after `steps` steps.
pub enum PackEpoch {
    Done(Vec<Option<EpochRow>>),
    Interrupted { steps: i64 },
}

/// The pack's periodic mid-epoch checkpoint, as [`super::step::Periodic`] for a run alone:
/// `save(trainer, steps)` after the step that ends each `every` of wall time inside an epoch
/// (the last step excepted: the epoch's own checkpoints follow it).
pub struct PackPeriodic<'a> {
    pub every: Option<Duration>,
    pub save: &'a mut dyn FnMut(&mut PackTrainer, i64) -> Result<()>,
}

impl PackTrainer {
    /// Loads the data and builds every member as it would start alone, then the pack.
    pub fn new(cfgs: &[RunConfig]) -> Result<PackTrainer> {
        check_pack(cfgs)?;
        let cfg = &cfgs[0];
        let (device, one_thread) = super::training_device(cfg)?;
        let split = data::load(&cfg.data.spec())?;
        for c in cfgs {
            super::recipe::check_cutout(c, split.height, split.width)?;
        }
        let cl = cfg.train.channels_last;
        let on_device =
            |s| DeviceData::new(s, &split.mean, &split.std, device).with_channels_last(cl);
        let (train_data, test_data) = (Rc::new(on_device(&split.train)), on_device(&split.test));
        let members = cfgs.len() as i64;
        let vs = VarStore::new(device);
        let models: Vec<_> = cfgs.iter().map(|c| c.model.clone()).collect();
        let model = PackedResNet::new(&vs.root(), &models, split.channels, split.num_classes)?;
        let mut singles = Vec::with_capacity(cfgs.len());
        for (p, c) in cfgs.iter().enumerate() {
            let (single, net) = super::build_model(c, (split.channels, split.num_classes), device)?;
            load_member(&vs, members, p as i64, &single.variables())
                .with_context(|| format!("{}: into the pack", c.name))?;
            let t = &c.train;
            let opt = Sgd::for_precision(&single, t.optimizer, net.num_blocks, t.precision);
            singles.push((single, net, opt));
        }
        if cl {
            torch_ext::vars_to_channels_last(&vs)?;
        }
        let sgd: Vec<_> = cfgs.iter().map(|c| c.train.optimizer).collect();
        let t = &cfg.train;
        let mut opt = Sgd::for_pack(&vs, &sgd, model.num_blocks).with_precision(t.precision);
        let stepper = Stepper::new(t.graphs_on(device), device, t.batch_size, &mut opt)
            .context("train.cuda_graph")?;
        Ok(PackTrainer {
            cfgs: cfgs.to_vec(),
            vs,
            model,
            opt,
            stepper,
            sums: StepSums::for_members(device, members),
            train_data,
            test_data,
            device,
            input_norm: (split.mean.clone(), split.std.clone()),
            diverged_at: vec![None; cfgs.len()],
            frozen: vec![None; cfgs.len()],
            singles,
            _one_thread: one_thread,
        })
    }

    /// The fixed batch of the per-block diagnostics, as a run alone has it.
    pub fn diag_batch(&self) -> Result<(Tensor, Tensor)> {
        self.train_data
            .eval_batches(super::DIAG_BATCH)
            .next()
            .context("the training set is empty")
    }

    /// Steps per epoch (the last batch may be smaller).
    pub fn steps_per_epoch(&self) -> i64 {
        let b = self.cfgs[0].train.batch_size;
        (self.train_data.len() + b - 1) / b
    }

    /// Trains epoch `epoch` (0-based) and evaluates: one row per member that was still
    /// training (None for those that diverged in an earlier epoch).
    pub fn epoch(&mut self, epoch: i64) -> Result<Vec<Option<EpochRow>>> {
        let mut none = |_: &mut PackTrainer, _| Ok(());
        let periodic = PackPeriodic {
            every: None,
            save: &mut none,
        };
        match self.epoch_from(epoch, 0, periodic)? {
            PackEpoch::Done(rows) => Ok(rows),
            PackEpoch::Interrupted { .. } => bail!("interrupted by a signal"),
        }
    }

    /// [`Self::epoch`] from step `start` (0, or where an interrupted epoch stopped, its sums
    /// restored in `self.sums`): the first `start` batches of every member are drawn but not
    /// trained on, so each generator is where it was. After each step a signal
    /// ([`super::interrupt`]) stops the epoch, and the periodic checkpoint is written when due.
    pub fn epoch_from(
        &mut self,
        epoch: i64,
        start: i64,
        periodic: PackPeriodic<'_>,
    ) -> Result<PackEpoch> {
        let (t0, mut since) = (Instant::now(), Instant::now());
        let steps = self.steps_per_epoch();
        if start == 0 {
            self.sums.reset();
        }
        self.frozen = vec![None; self.cfgs.len()];
        let data = Rc::clone(&self.train_data);
        let mut streams = Streams::new(&self.cfgs, &data, epoch)?;
        for k in 0..steps {
            let (x, targets) = streams.next(&self.cfgs)?;
            if k < start {
                continue; // replayed: the draws happen, the step does not
            }
            self.step(epoch, &x, &targets)?;
            if self.sums.steps % 100 == 0
                && freeze_diverged(&mut self.opt, &self.sums, &mut self.frozen)
            {
                break; // every member has diverged
            }
            let done = k + 1;
            if done < steps {
                if super::interrupt::requested(epoch, done) {
                    return Ok(PackEpoch::Interrupted { steps: done });
                }
                if periodic.every.is_some_and(|every| since.elapsed() >= every) {
                    (periodic.save)(self, done)?;
                    since = Instant::now();
                }
                if super::crash_point(format_args!("step-{done}"), epoch + 1) {
                    super::die(); // the test of a kill -9 after a step (and its checkpoint)
                }
            }
        }
        drop(streams);
        Ok(PackEpoch::Done(self.end_epoch(epoch, t0)))
    }

    /// One step of epoch `epoch` (0-based) on the members' batches `x` (stacked:
    /// [`stack_inputs`]) and `targets`, each at its own learning rate ([`pack_step`], through
    /// the CUDA graph when on).
    pub fn step(&mut self, epoch: i64, x: &Tensor, targets: &[Targets]) -> Result<()> {
        let steps = self.steps_per_epoch();
        let lrs: Vec<f64> = (self.cfgs.iter())
            .map(|c| schedule::run_lr(c, epoch, self.sums.steps, steps))
            .collect();
        let precision = self.cfgs[0].train.precision;
        let (model, opt, sums) = (&self.model, &mut self.opt, &mut self.sums);
        self.stepper
            .step_pack(model, opt, x, targets, &lrs, precision, sums)
    }

    /// The epoch's rows after its steps (started at `t0`): the test set evaluated once for all
    /// members, each member's figures; a member that diverged is frozen from now on.
    fn end_epoch(&mut self, epoch: i64, t0: Instant) -> Vec<Option<EpochRow>> {
        let steps = self.steps_per_epoch();
        let train_secs = t0.elapsed().as_secs_f64();
        let t = &self.cfgs[0].train;
        let tests = evaluate(&self.model, &self.test_data, t.eval_batch_size, t.precision);
        let taus = self.model.tau_values();
        let (loss, correct, norm) = (
            read(&self.sums.loss),
            read(&self.sums.correct),
            read(&self.sums.grad_norm),
        );
        let mut rows = Vec::with_capacity(self.cfgs.len());
        for (p, c) in self.cfgs.iter().enumerate() {
            if self.diverged_at[p].is_some() {
                rows.push(None);
                continue;
            }
            let f = self.frozen[p].unwrap_or(Frozen {
                loss: loss[p],
                correct: correct[p],
                grad_norm: norm[p],
                images: self.sums.images,
                steps: self.sums.steps,
            });
            let images = f.images.max(1) as f64;
            let (test_loss, test_acc) = tests[p];
            let train_loss = f.loss / images;
            let diverged = !train_loss.is_finite() || !test_loss.is_finite();
            if diverged {
                self.diverged_at[p] = Some(epoch + 1);
                self.opt.members[p].active = false;
            }
            rows.push(Some(EpochRow {
                epoch: epoch + 1,
                lr: schedule::run_lr(c, epoch, 0, steps),
                train_loss,
                train_acc: f.correct / images,
                test_loss,
                test_acc,
                grad_norm: f.grad_norm / f.steps.max(1) as f64,
                tau: taus[p],
                epoch_seconds: t0.elapsed().as_secs_f64(),
                images_per_second: self.train_data.len() as f64 / train_secs.max(1e-9),
                status: if diverged {
                    EpochStatus::Diverged
                } else {
                    EpochStatus::Ok
                },
            }));
        }
        rows
    }
}

/// Freezes the members whose loss sum is no longer finite (as a run alone stops there),
/// keeping their sums; true when none is left training.
fn freeze_diverged(opt: &mut Sgd, sums: &StepSums, frozen: &mut [Option<Frozen>]) -> bool {
    let loss = read(&sums.loss);
    let (correct, norm) = (read(&sums.correct), read(&sums.grad_norm));
    for (p, m) in opt.members.iter_mut().enumerate() {
        if m.active && !loss[p].is_finite() {
            m.active = false;
            frozen[p] = Some(Frozen {
                loss: loss[p],
                correct: correct[p],
                grad_norm: norm[p],
                images: sums.images,
                steps: sums.steps,
            });
        }
    }
    opt.members.iter().all(|m| !m.active)
}

fn read(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double)).expect("a 1-d tensor")
}

/// The members' streams of batches in one epoch, each on its own generator state.
pub(crate) struct Streams<'a> {
    draws: Vec<Box<dyn Iterator<Item = Draws> + 'a>>,
    rng: Vec<Vec<Tensor>>,
    data: &'a DeviceData,
    /// Whether the members' batches are made in one pass: no member mixes its batch (mixup
    /// draws after its batch and mixes its images) and all augment alike.
    joint: bool,
}

impl<'a> Streams<'a> {
    /// Seeds each member's epoch as alone (its shuffle is drawn now) and keeps its state.
    pub(crate) fn new(cfgs: &[RunConfig], data: &'a DeviceData, epoch: i64) -> Result<Streams<'a>> {
        let mut draws: Vec<Box<dyn Iterator<Item = Draws> + 'a>> = Vec::new();
        let mut rng = Vec::new();
        for c in cfgs {
            let seed = epoch_seed(c.seed, epoch);
            draws.push(Box::new(data.train_draws(
                c.train.batch_size,
                seed,
                c.data.augment,
            )));
            rng.push(torch_ext::rng_state(data.device())?);
        }
        let joint = (cfgs.iter())
            .all(|c| c.train.mixup_alpha.is_none() && c.data.augment == cfgs[0].data.augment);
        Ok(Streams {
            draws,
            rng,
            data,
            joint,
        })
    }

    /// Every member's next batch as its recipe trains on it (mixed when mixup is on), stacked
    /// as the pack's input ([`stack_inputs`]), and each member's targets. Each member draws on
    /// its own generator state exactly what it draws alone; the images of all members are then
    /// made in one pass (one gather, crop, flip and normalization for the whole pack) unless a
    /// member mixes its batch or augments otherwise.
    pub(crate) fn next(&mut self, cfgs: &[RunConfig]) -> Result<(Tensor, Vec<Targets>)> {
        let (data, device) = (self.data, self.data.device());
        let (mut draws, mut xs, mut ts) = (Vec::new(), Vec::new(), Vec::new());
        for (p, c) in cfgs.iter().enumerate() {
            torch_ext::set_rng_state(device, &self.rng[p])?;
            let d = (self.draws[p].next()).context("a member's epoch ended early")?;
            if self.joint {
                draws.push(d);
            } else {
                let (x, y) = data.batch(&d);
                let (x, t) = recipe::prepare(c, data.layout(x), &y);
                xs.push(x);
                ts.push(t);
            }
            self.rng[p] = torch_ext::rng_state(device)?;
        }
        if !self.joint {
            return Ok((stack_inputs(&xs), ts));
        }
        let b = draws[0].len();
        let (x, y) = data.batch(&Draws::cat(&draws));
        let ts = (cfgs.iter().enumerate())
            .map(|(p, c)| recipe::targets(c, &y.narrow(0, p as i64 * b, b)))
            .collect();
        Ok((data.layout(stack_batches(&x, cfgs.len() as i64)), ts))
    }
}

/// One SGD step of a pack on `x`, the members' batches stacked (member p's in its channels:
/// [`crate::model::packed::stack_inputs`]) against `targets[p]` at `lrs[p]`; the loss Σ_p
/// (member p's mean loss) over the members still training; per-member sums.
pub fn pack_step(
    model: &PackedResNet,
    opt: &mut Sgd,
    x: &Tensor,
    targets: &[Targets],
    lrs: &[f64],
    precision: Precision,
    sums: &mut StepSums,
) {
    let b = targets[0].len();
    let logits = forward(model, x, true, precision);
    let (losses, correct) = recipe::member_losses(&logits, targets);
    opt.backward_members(&losses);
    sums.grad_norm += opt.member_grad_norms().to_device(sums.loss.device());
    opt.step_members(lrs);
    sums.loss += losses.detach() * (b as f64);
    sums.correct += correct;
    sums.images += b;
    sums.steps += 1;
}

/// Each member's mean cross-entropy and accuracy on a dataset (eval mode, no autograd), all
/// members on the same images in one pass.
pub fn evaluate(
    model: &PackedResNet,
    data: &DeviceData,
    batch: i64,
    precision: Precision,
) -> Vec<(f64, f64)> {
    let m = model.members;
    tch::no_grad(|| {
        let zeros = || Tensor::zeros([m], (Kind::Float, data.device()));
        let (mut loss, mut correct, mut n) = (zeros(), zeros(), 0i64);
        for (x, y) in data.eval_batches(batch) {
            let logits = forward(model, &repeat_input(&x, m), false, precision);
            let b = y.size()[0];
            let targets: Vec<Targets> = (0..m).map(|_| Targets::hard(&y)).collect();
            let (l, c) = recipe::member_losses(&logits, &targets);
            loss += l * (b as f64);
            correct += c;
            n += b;
        }
        let n = n.max(1) as f64;
        let (loss, correct) = (read(&loss), read(&correct));
        (0..m as usize)
            .map(|p| (loss[p] / n, correct[p] / n))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Augment, Dataset};

    /// The members' batches made in one pass equal, bit for bit, those made member by member
    /// (each as alone: [`DeviceData::train_batches`]'s ops on its own generator state, then
    /// [`stack_inputs`]), with crop, flip and cutout, over an epoch's end and partial batch; a
    /// member with mixup makes them member by member.
    #[test]
    fn one_pass_makes_each_members_own_batch() {
        tch::manual_seed(0);
        let ds = Dataset {
            images: Tensor::randint(256, [21, 3, 8, 8], (Kind::Uint8, Device::Cpu)),
            labels: Tensor::randint(10, [21], (Kind::Int64, Device::Cpu)),
        };
        let data = DeviceData::new(&ds, &[0.5, 0.4, 0.3], &[0.2, 0.25, 0.3], Device::Cpu);
        let cfgs: Vec<RunConfig> = (0..3)
            .map(|p| {
                let mut c = RunConfig {
                    seed: 10 + p,
                    ..RunConfig::default()
                };
                c.train.batch_size = 4;
                c.train.label_smoothing = Some(0.1);
                c.data.augment = Augment {
                    cutout: Some(3),
                    ..Augment::CIFAR
                };
                c
            })
            .collect();
        let mut joint = Streams::new(&cfgs, &data, 2).unwrap();
        let mut apart = Streams::new(&cfgs, &data, 2).unwrap();
        apart.joint = false;
        assert!(joint.joint);
        for k in 0..6 {
            let ((x, t), (x1, t1)) = (joint.next(&cfgs).unwrap(), apart.next(&cfgs).unwrap());
            assert!(x.equal(&x1), "step {k}: the stacked batches differ");
            assert_eq!(x.size()[0], if k == 5 { 1 } else { 4 }, "step {k}");
            for (a, b) in t.iter().zip(&t1) {
                assert!(a.y.equal(&b.y) && a.smoothing == b.smoothing && a.mix.is_none());
            }
        }
        let mut mixed = cfgs.clone();
        mixed[1].train.mixup_alpha = Some(1.0);
        assert!(!Streams::new(&mixed, &data, 0).unwrap().joint);
    }
}
