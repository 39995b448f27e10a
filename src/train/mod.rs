//! Training: [`run`] trains one config into its run directory `<out_dir>/<name>/`:
//! `config.yaml` (resolved config), `metrics.csv` (one row per epoch), `checkpoint.safetensors`
//! (after every epoch, atomic) and `summary.json`. `resume` continues from the checkpoint.
pub mod adam;
pub mod bench;
pub mod bench_pack;
pub mod bench_streams;
pub mod checkpoint;
pub mod config;
pub mod diagnostics;
pub mod eval;
pub mod export;
pub mod graph;
pub mod interrupt;
pub mod loss_scale;
pub mod metrics;
pub mod pack;
pub mod pack_commit;
pub mod pack_run;
pub mod recipe;
pub mod run_dir;
pub mod run_files;
pub mod schedule;
pub mod sgd;
pub mod step;
pub mod streams;
pub mod tensor_file;
pub mod tensorboard;

use anyhow::{Context, Result};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::nn::VarStore;
use tch::Device;

use crate::data::{self, DeviceData};
use crate::model::resnet::{trainable_parameters, ResNet};
use crate::train::config::RunConfig;
use crate::util::torch_ext;
use metrics::{EpochRow, EpochStatus};
use run_files::{RunFiles, RunInfo, Weights};
use sgd::Sgd;

pub use run_dir::{config_conflict, read_summary, with_new_dir, RunStatus, Summary};
pub use step::{evaluate, forward, train_step, StepSums};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue from the run directory's checkpoint if there is one (else start fresh).
    pub resume: bool,
    /// Stop after this many epochs in this process (for tests of resume); the run stays resumable.
    pub stop_after: Option<i64>,
    /// No per-epoch lines on stderr.
    pub quiet: bool,
}

/// A failpoint for the crash tests: true when the environment variable `DEEPRES_CRASH_AT`
/// (read once) is `<point>:<epoch>` (points: `csv-row`, `after-csv`, `checkpoint`, `best`,
/// `summary`, and `step-<k>`, after step k of the epoch and any checkpoint written there),
/// where the caller then dies by [`die`] at that exact moment of that epoch (counted from 1).
pub(crate) fn crash_point(point: impl std::fmt::Display, epoch: i64) -> bool {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    AT.get_or_init(|| std::env::var("DEEPRES_CRASH_AT").ok())
        .as_deref()
        .is_some_and(|v| v == format!("{point}:{epoch}"))
}

/// SIGKILL to this process (what kill -9 or a preemption does: no unwinding, no flush).
pub(crate) fn die() -> ! {
    // SAFETY: sends a signal to this process.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    std::process::abort()
}

/// The seed of torch's generator for epoch `epoch` (0-based) of a run seeded `seed`.
pub fn epoch_seed(seed: u64, epoch: i64) -> i64 {
    ((seed as i64).wrapping_mul(1_000_003)).wrapping_add(epoch + 1) & i64::MAX
}

/// Images in the fixed batch of the per-block diagnostics ([`diagnostics`]).
pub(crate) const DIAG_BATCH: i64 = 128;

/// What one run trains with: the model, its optimizer and step, the data on the device.
struct Trainer {
    vs: VarStore,
    model: ResNet,
    opt: Sgd,
    stepper: graph::Stepper,
    sums: StepSums,
    train_data: DeviceData,
    test_data: DeviceData,
    parameters: i64,
    device: Device,
    data_name: String,
    /// The per-channel mean and std the inputs are normalized with.
    input_norm: (Vec<f64>, Vec<f64>),
    /// The fixed batch of the per-block diagnostics (the first training images).
    diag_batch: (tch::Tensor, tch::Tensor),
    /// `train.deterministic` on the CPU: libtorch on one thread while the run lasts (its CPU
    /// reductions split their sums by the thread count).
    _one_thread: Option<crate::util::threads::TorchThreads>,
}

impl Trainer {
    /// Loads the data onto the device and builds the model (seeded by `cfg.seed`) and the
    /// optimizer.
    fn new(cfg: &RunConfig) -> Result<Trainer> {
        let (device, one_thread) = training_device(cfg)?;
        let split = data::load(&cfg.data.spec())?;
        recipe::check_cutout(cfg, split.height, split.width)?;
        let cl = cfg.train.channels_last;
        let on_device =
            |s| DeviceData::new(s, &split.mean, &split.std, device).with_channels_last(cl);
        let train_data = on_device(&split.train);
        let test_data = on_device(&split.test);
        let diag_batch = train_data
            .eval_batches(DIAG_BATCH)
            .next()
            .context("the training set is empty")?;

        let (vs, model) = build_model(cfg, (split.channels, split.num_classes), device)?;
        let parameters = trainable_parameters(&vs);
        if cl {
            torch_ext::vars_to_channels_last(&vs)?;
        }
        let t = &cfg.train;
        let mut opt = Sgd::for_precision(&vs, t.optimizer, model.num_blocks, t.precision);
        let stepper = graph::Stepper::new(t.graphs_on(device), device, t.batch_size, &mut opt)
            .context("train.cuda_graph")?;
        Ok(Trainer {
            vs,
            model,
            opt,
            stepper,
            sums: StepSums::new(device),
            train_data,
            test_data,
            parameters,
            device,
            data_name: split.name.to_string(),
            input_norm: (split.mean.clone(), split.std.clone()),
            diag_batch,
            _one_thread: one_thread,
        })
    }

    /// Restores weights, optimizer state and progress from the run's checkpoint, checking that
    /// it belongs to this run; returns (epochs done, best test accuracy, its epoch).
    fn restore(
        &mut self,
        cfg: &RunConfig,
        dir: &Path,
        run_hash: &str,
    ) -> Result<(i64, f64, i64, i64)> {
        let saved = checkpoint::load(dir, &mut self.vs, &mut self.opt)?;
        run_files::check_saved(&saved, cfg, dir, run_hash)?;
        let step = match &saved.position {
            Some(p) => {
                // The interrupted epoch's sums, as the device held them (filled in place: a
                // CUDA graph captured later adds into these very tensors).
                let _ = self.sums.loss.fill_(p.loss);
                let _ = self.sums.correct.fill_(p.correct);
                let _ = self.sums.grad_norm.fill_(p.grad_norm);
                self.sums.images = p.images;
                self.sums.steps = p.step;
                p.step
            }
            None => 0,
        };
        Ok((saved.epoch, saved.best_test_acc, saved.best_epoch, step))
    }

    /// The view of the model its run's files are written from.
    fn weights(&self) -> Weights<'_> {
        Weights {
            vs: &self.vs,
            model: &self.model,
            opt: &self.opt,
            diag_batch: &self.diag_batch,
        }
    }

    /// What the summary records about the model and data.
    fn info(&self) -> RunInfo {
        RunInfo {
            parameters: self.parameters,
            tau0: self.model.tau0,
            device: self.device,
            input_norm: self.input_norm.clone(),
        }
    }

    /// Trains epoch `epoch` (0-based) from step `start` and evaluates; the row for
    /// metrics.csv, or the steps done when a signal stopped it. Mid-epoch checkpoints (the
    /// periodic ones) go to `at`.
    fn epoch(
        &mut self,
        at: &checkpoint::Target,
        (epoch, start): (i64, i64),
        steps_per_epoch: i64,
        bar: Option<&indicatif::ProgressBar>,
    ) -> Result<std::result::Result<EpochRow, i64>> {
        let cfg = at.cfg;
        let t0 = Instant::now();
        let (t, epochs) = (&cfg.train, cfg.train.epochs);
        // The lr of the epoch's first step (metrics.csv's `lr`).
        let lr = schedule::run_lr(cfg, epoch, 0, steps_per_epoch);
        if let Some(b) = bar {
            b.reset();
            b.set_message(format!("epoch {}/{epochs}", epoch + 1));
        }
        let vs = &self.vs;
        let mut save = |opt: &Sgd, sums: &StepSums, steps| {
            at.save(vs, opt, Some(checkpoint::Position::of(sums, steps)))
        };
        let periodic = step::Periodic {
            every: t.checkpoint_interval(),
            save: &mut save,
        };
        let train = step::train_epoch(
            &self.model,
            &mut self.opt,
            &mut self.stepper,
            &mut self.sums,
            &self.train_data,
            cfg,
            (epoch, start),
            steps_per_epoch,
            bar,
            periodic,
        )?;
        let train = match train {
            step::EpochEnd::Done(stats) => stats,
            step::EpochEnd::Interrupted { steps } => return Ok(Err(steps)),
        };
        let train_secs = t0.elapsed().as_secs_f64();
        let (test_loss, test_acc) =
            step::evaluate(&self.model, &self.test_data, t.eval_batch_size, t.precision);
        let diverged = !train.loss.is_finite() || !test_loss.is_finite();
        Ok(Ok(EpochRow {
            epoch: epoch + 1,
            lr,
            train_loss: train.loss,
            train_acc: train.acc,
            test_loss,
            test_acc,
            grad_norm: train.grad_norm,
            tau: self.model.tau_value(),
            epoch_seconds: t0.elapsed().as_secs_f64(),
            images_per_second: self.train_data.len() as f64 / train_secs.max(1e-9),
            status: if diverged {
                EpochStatus::Diverged
            } else {
                EpochStatus::Ok
            },
        }))
    }
}

/// Trains `cfg` into its run directory and returns the summary.
// The order of an epoch's writes is [`RunFiles::end_epoch`]'s; the stops between and inside
// epochs are here, top to bottom (docs/reliability.md).
pub fn run(cfg: &RunConfig, opts: &RunOptions) -> Result<Summary> {
    let dir: PathBuf = cfg.run_dir();
    let load_ckpt = run_dir::check_dir(cfg, &dir, opts)?;
    if let Some(s) = already_done(&dir, opts) {
        return Ok(s);
    }
    let mut tr = Trainer::new(cfg)?;
    run_dir::create_dir(cfg, &dir)?;
    // The hash recorded when the run started; its checkpoints carry it.
    let run_hash = run_dir::recorded_hash(&dir).unwrap_or_else(|| cfg.hash());

    interrupt::install();
    let resumed = match load_ckpt {
        true => {
            let (epoch, best_acc, best_epoch, step) = tr.restore(cfg, &dir, &run_hash)?;
            Some(((epoch, step), (best_acc, best_epoch)))
        }
        false => None,
    };
    let mut start_step = resumed.map_or(0, |((_, step), _)| step);
    let mut files = RunFiles::open(cfg, &tr.weights(), &tr.info(), resumed, opts.quiet)?;
    if !opts.quiet {
        crate::util::eprintln_whole!(
            "{}: ResNet-{} L={} norm={:?} τ₀={:.4} params={} data={} ({} train / {} test) device={:?}{}",
            cfg.name, cfg.model.depth, tr.model.num_blocks, cfg.model.norm, tr.model.tau0, tr.parameters,
            tr.data_name, tr.train_data.len(), tr.test_data.len(), tr.device,
            if tr.stepper.graphed() { " cuda_graph=on" } else { "" }
        );
    }

    let epochs = cfg.train.epochs;
    let steps_per_epoch = (tr.train_data.len() + cfg.train.batch_size - 1) / cfg.train.batch_size;
    let start_epoch = files.summary.epochs_done;
    let bar = progress_bar(steps_per_epoch, opts.quiet);
    for (ran, epoch) in (start_epoch..epochs).enumerate() {
        if opts.stop_after.is_some_and(|n| ran as i64 >= n) {
            break;
        }
        if let Some(sig) = interrupt::signal() {
            return Err(files.stopped_between_epochs(&tr.weights(), ran > 0, sig)?);
        }
        let start = std::mem::take(&mut start_step);
        let row = match tr.epoch(
            &files.target(),
            (epoch, start),
            steps_per_epoch,
            bar.as_ref(),
        )? {
            Ok(row) => row,
            Err(steps) => {
                let at = checkpoint::Position::of(&tr.sums, steps);
                return Err(files.stopped_inside_epoch(&tr.weights(), at, epoch)?);
            }
        };
        if files.end_epoch(&tr.weights(), &row, bar.as_ref())? {
            return Ok(files.summary);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    files.finish()
}

/// With `--resume`, the summary of a run that has nothing left to do (finished or diverged).
fn already_done(dir: &Path, opts: &RunOptions) -> Option<Summary> {
    let s = read_summary(dir)
        .ok()
        .filter(|s| opts.resume && s.status.is_final())?;
    if !opts.quiet {
        crate::util::eprintln_whole!(
            "{}: already {} ({} epochs), nothing to do",
            dir.display(),
            s.status,
            s.epochs_done
        );
    }
    Some(s)
}

/// The device `cfg` trains on, set up as the run asks: deterministic kernels (and, on the CPU,
/// libtorch on one thread while the returned guard lives) with `train.deterministic`, the
/// precision checked against the device. Alone and packed runs start so.
pub(crate) fn training_device(
    cfg: &RunConfig,
) -> Result<(Device, Option<crate::util::threads::TorchThreads>)> {
    let device = crate::util::device::select_device(&cfg.device)?;
    torch_ext::set_deterministic(cfg.train.deterministic, device.is_cuda())
        .context("train.deterministic")?;
    let one_thread = (cfg.train.deterministic && device == Device::Cpu)
        .then(|| crate::util::threads::TorchThreads::hold(1));
    cfg.train
        .precision
        .check_device(device)
        .with_context(|| format!("train.precision {}", cfg.train.precision.name()))?;
    Ok((device, one_thread))
}

/// The run's model as it starts: seeded by `cfg.seed`, built for images of `channels` channels
/// and `classes` classes, then `train.init_from`'s weights when set. A pack's members start
/// exactly so ([`pack`]).
pub(crate) fn build_model(
    cfg: &RunConfig,
    (channels, classes): (i64, i64),
    device: Device,
) -> Result<(VarStore, ResNet)> {
    tch::manual_seed(cfg.seed as i64);
    let vs = VarStore::new(device);
    let model = ResNet::new(&vs.root(), &cfg.model, channels, classes)?;
    if let Some(path) = &cfg.train.init_from {
        init_from(&vs, &cfg.model, path).context("train.init_from")?;
    }
    Ok((vs, model))
}

/// Copies the weights of `path` ([`export::init_tensors`]) into the freshly built model.
fn init_from(vs: &VarStore, model: &crate::model::config::ModelConfig, path: &Path) -> Result<()> {
    let vars = vs.variables();
    let expected = vars.iter().map(|(k, t)| (k.clone(), t.size())).collect();
    let tensors = export::init_tensors(path, model, &expected)?;
    export::copy_into(vs, &tensors)
}

fn progress_bar(steps: i64, quiet: bool) -> Option<indicatif::ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let b = indicatif::ProgressBar::new(steps as u64);
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} steps {per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    Some(b)
}
