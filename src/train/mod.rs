//! Training: [`run`] trains one config into its run directory `<out_dir>/<name>/`:
//! `config.yaml` (resolved config), `metrics.csv` (one row per epoch), `checkpoint.safetensors`
//! (after every epoch, atomic) and `summary.json`. `resume` continues from the checkpoint.
pub mod adam;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod graph;
pub mod metrics;
pub mod schedule;
pub mod sgd;
pub mod tensor_file;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

use crate::train::config::{Precision, RunConfig};
use crate::data::{self, DeviceData};
use crate::model::resnet::{trainable_parameters, ResNet};
use crate::util::torch_ext;
use metrics::EpochRow;
use sgd::Sgd;

/// JSON has no NaN: serde_json writes NaN as `null`; read it back as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// What `summary.json` holds (NaN values are written as `null`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub name: String,
    /// `finished`, `diverged` or `running` (interrupted or in progress).
    pub status: String,
    pub epochs_done: i64,
    pub epochs: i64,
    #[serde(deserialize_with = "nan_if_null")]
    pub best_test_acc: f64,
    pub best_epoch: i64,
    #[serde(deserialize_with = "nan_if_null")]
    pub final_test_acc: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub final_train_loss: f64,
    pub diverged_at_epoch: Option<i64>,
    pub parameters: i64,
    pub tau0: f64,
    pub device: String,
    #[serde(deserialize_with = "nan_if_null")]
    pub train_seconds: f64,
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue from the run directory's checkpoint if there is one (else start fresh).
    pub resume: bool,
    /// Stop after this many epochs in this process (for tests of resume); the run stays resumable.
    pub stop_after: Option<i64>,
    /// No per-epoch lines on stderr.
    pub quiet: bool,
}

pub fn read_summary(dir: &Path) -> Result<Summary> {
    let p = dir.join("summary.json");
    let text =
        std::fs::read_to_string(&p).with_context(|| format!("{}: cannot read", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: malformed", p.display()))
}

fn write_summary(dir: &Path, s: &Summary) -> Result<()> {
    let p = dir.join("summary.json");
    let tmp = dir.join("summary.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(s)? + "\n")
        .with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, &p)?;
    Ok(())
}

/// A failpoint for the crash tests: true when the environment variable `DEEPRES_CRASH_AT`
/// is `<point>:<epoch>` (points: `csv-row`, `after-csv`, `checkpoint`, `summary`), where the
/// caller then dies by [`die`] at that exact moment of that epoch.
pub(crate) fn crash_point(point: &str, epoch: i64) -> bool {
    std::env::var("DEEPRES_CRASH_AT").is_ok_and(|v| v == format!("{point}:{epoch}"))
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

/// The file of a run directory that records the SHA-256 of its `config.yaml`
/// ([`RunConfig::hash`]), in `sha256sum` format.
pub const HASH_FILE: &str = "config.sha256";

fn has_results(dir: &Path) -> bool {
    dir.join(metrics::FILE_NAME).exists() || checkpoint::path(dir).exists()
}

/// Why the run directory of `cfg` cannot take `cfg`'s results, if it cannot (one line naming
/// the file, without a hint: `train` and `sweep` add theirs): it holds results
/// of a different config (compared as configs, not as text: keys added to deepres since, with
/// their defaults, do not make an old run "different"), results without a config, or a
/// `config.yaml` that no longer matches the hash recorded in `config.sha256` (edited by hand).
/// `None` for a free directory or one holding results of the same config.
pub fn config_conflict(cfg: &RunConfig) -> Option<String> {
    let dir = cfg.run_dir();
    if !has_results(&dir) {
        return None;
    }
    let cfg_path = dir.join("config.yaml");
    let text = match std::fs::read(&cfg_path) {
        Ok(t) => t,
        Err(_) => {
            return Some(format!(
                "{}: holds results but no config.yaml, so they cannot be matched to a config",
                dir.display()
            ))
        }
    };
    if let Some(recorded) = recorded_hash(&dir) {
        if recorded != crate::util::key::sha256_hex(&text) {
            return Some(format!(
                "{}: does not match the hash recorded in {HASH_FILE} (edited after the run started?)",
                cfg_path.display()
            ));
        }
    }
    let old = RunConfig::from_yaml_str(
        &String::from_utf8_lossy(&text),
        &cfg_path.display().to_string(),
        &[],
    );
    match old {
        // out_dir says where the run is, not what it is (a moved sweep, a relative path
        // made absolute for a Slurm task): it does not count.
        Ok(old)
            if RunConfig {
                out_dir: cfg.out_dir.clone(),
                ..old.clone()
            } == *cfg =>
        {
            None
        }
        Ok(old) => Some(format!(
            "{}: the run there has a different config (hash {} there, {} now)",
            cfg_path.display(),
            &old.hash()[..12],
            &cfg.hash()[..12]
        )),
        Err(e) => Some(format!(
            "{}: the run there has a config this deepres cannot read ({})",
            cfg_path.display(),
            e.to_string().replace('\n', " ")
        )),
    }
}

/// The hash recorded in the run directory's `config.sha256`, if any.
fn recorded_hash(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(HASH_FILE))
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_string))
}

/// `cfg` itself if its run directory does not exist yet, else `cfg` renamed to the first
/// `<name>-2`, `<name>-3`, ... whose directory does not exist (`--force-new`).
pub fn with_new_dir(cfg: &RunConfig) -> RunConfig {
    let mut out = cfg.clone();
    let mut n = 2;
    while out.run_dir().exists() {
        out.name = format!("{}-{n}", cfg.name);
        n += 1;
    }
    out
}

/// Checks the run directory without writing: a fresh run refuses a directory holding results,
/// a resumed run refuses a directory whose config differs ([`config_conflict`]). Returns
/// whether a checkpoint is to be loaded.
fn check_dir(cfg: &RunConfig, dir: &Path, opts: &RunOptions) -> Result<bool> {
    if has_results(dir) && !opts.resume {
        bail!(
            "{}: holds results of an earlier run; pass --resume to continue it, --force-new for a new directory, or choose another name (--set name=...)",
            dir.display()
        );
    }
    if let Some(e) = config_conflict(cfg) {
        bail!("{e}; pick another name (--set name=...), pass --force-new for a new directory, or move that directory away");
    }
    Ok(opts.resume && checkpoint::path(dir).exists())
}

/// Creates the run directory (checking it is writable) and saves the resolved config and its
/// hash (`config.sha256`), unless the directory already holds results (of this config:
/// [`check_dir`] refused others), whose config.yaml stays as the run started it.
fn create_dir(cfg: &RunConfig, dir: &Path) -> Result<()> {
    let cfg_path = dir.join("config.yaml");
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create the run directory", dir.display()))?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"")
        .with_context(|| format!("{}: run directory is not writable", dir.display()))?;
    std::fs::remove_file(&probe).ok();
    if has_results(dir) && cfg_path.exists() {
        if recorded_hash(dir).is_none() {
            // a run of an older deepres: record the hash of the config it started with
            let text = std::fs::read(&cfg_path)?;
            let tmp = dir.join("config.sha256.tmp");
            std::fs::write(
                &tmp,
                format!("{}  config.yaml\n", crate::util::key::sha256_hex(&text)),
            )?;
            std::fs::rename(&tmp, dir.join(HASH_FILE))?;
        }
        return Ok(());
    }
    // No results: this rewrites at most a stale config of an attempt that left none.
    let tmp = dir.join("config.yaml.tmp");
    std::fs::write(&tmp, cfg.to_yaml())?;
    std::fs::rename(&tmp, &cfg_path)?;
    let tmp = dir.join("config.sha256.tmp");
    std::fs::write(&tmp, format!("{}  config.yaml\n", cfg.hash()))?;
    std::fs::rename(&tmp, dir.join(HASH_FILE))?;
    Ok(())
}

/// Trains `cfg` into its run directory and returns the summary.
pub fn run(cfg: &RunConfig, opts: &RunOptions) -> Result<Summary> {
    let dir: PathBuf = cfg.run_dir();
    let load_ckpt = check_dir(cfg, &dir, opts)?;
    if opts.resume {
        if let Ok(s) = read_summary(&dir) {
            if s.status == "finished" || s.status == "diverged" {
                if !opts.quiet {
                    eprintln!(
                        "{}: already {} ({} epochs), nothing to do",
                        dir.display(),
                        s.status,
                        s.epochs_done
                    );
                }
                return Ok(s);
            }
        }
    }
    let device = crate::util::device::select_device(&cfg.device)?;
    cfg.train
        .precision
        .check_device(device)
        .with_context(|| format!("train.precision {}", cfg.train.precision.name()))?;

    let split = data::load(&cfg.data.spec())?;
    let cl = cfg.train.channels_last;
    let train_data =
        DeviceData::new(&split.train, &split.mean, &split.std, device).with_channels_last(cl);
    let test_data =
        DeviceData::new(&split.test, &split.mean, &split.std, device).with_channels_last(cl);

    tch::manual_seed(cfg.seed as i64);
    let mut vs = VarStore::new(device);
    let model = ResNet::new(&vs.root(), &cfg.model, split.channels, split.num_classes)?;
    let parameters = trainable_parameters(&vs);
    if cl {
        torch_ext::vars_to_channels_last(&vs)?;
    }
    let mut opt = Sgd::for_precision(
        &vs,
        cfg.train.optimizer,
        model.num_blocks,
        cfg.train.precision,
    );
    let mut stepper =
        graph::Stepper::new(cfg.train.cuda_graph, device, cfg.train.batch_size, &mut opt)
            .context("train.cuda_graph")?;
    let mut sums = StepSums::new(device);
    create_dir(cfg, &dir)?;
    // The hash recorded when the run started; its checkpoints carry it.
    let run_hash = recorded_hash(&dir).unwrap_or_else(|| cfg.hash());

    let mut start_epoch = 0;
    let (mut best_acc, mut best_epoch) = (0.0, 0);
    let csv_path = dir.join(metrics::FILE_NAME);
    if load_ckpt {
        let saved = checkpoint::load(&dir, &mut vs, &mut opt)?;
        if let Some(h) = &saved.config_hash {
            if *h != run_hash {
                bail!(
                    "{}: the checkpoint comes from another config (hash {} there, {} in {HASH_FILE}); move it away to restart this run from scratch",
                    checkpoint::path(&dir).display(),
                    &h[..h.len().min(12)],
                    &run_hash[..run_hash.len().min(12)]
                );
            }
        }
        if saved.seed != cfg.seed as i64 {
            bail!(
                "{}: checkpoint has seed {}, config seed {}",
                dir.display(),
                saved.seed,
                cfg.seed
            );
        }
        start_epoch = saved.epoch;
        best_acc = saved.best_test_acc;
        best_epoch = saved.best_epoch;
        metrics::truncate_after(&csv_path, start_epoch)?;
        if !opts.quiet {
            eprintln!("{}: resuming after epoch {start_epoch}", dir.display());
        }
    } else {
        // A fresh start: no stale rows from an attempt killed before its first checkpoint.
        metrics::truncate_after(&csv_path, 0)?;
    }
    if !opts.quiet {
        eprintln!(
            "{}: ResNet-{} L={} norm={:?} τ₀={:.4} params={} data={} ({} train / {} test) device={:?}",
            cfg.name, cfg.model.depth, model.num_blocks, cfg.model.norm, model.tau0, parameters,
            split.name, train_data.len(), test_data.len(), device
        );
    }

    let epochs = cfg.train.epochs;
    let steps_per_epoch = (train_data.len() + cfg.train.batch_size - 1) / cfg.train.batch_size;
    let mut summary = Summary {
        name: cfg.name.clone(),
        status: "running".into(),
        epochs_done: start_epoch,
        epochs,
        best_test_acc: best_acc,
        best_epoch,
        final_test_acc: f64::NAN,
        final_train_loss: f64::NAN,
        diverged_at_epoch: None,
        parameters,
        tau0: model.tau0,
        device: format!("{device:?}"),
        train_seconds: read_summary(&dir).map(|s| s.train_seconds).unwrap_or(0.0),
    };
    if let Ok(rows) = metrics::read(&csv_path) {
        if let Some(last) = rows.last() {
            summary.final_test_acc = last.test_acc;
            summary.final_train_loss = last.train_loss;
        }
    }
    let bar = progress_bar(steps_per_epoch, opts.quiet);
    for (ran, epoch) in (start_epoch..epochs).enumerate() {
        if opts.stop_after.is_some_and(|n| ran as i64 >= n) {
            break;
        }
        let t0 = Instant::now();
        let lr_epoch = schedule::lr_at(
            &cfg.train.schedule,
            cfg.train.optimizer.lr,
            epochs,
            epoch as f64,
        );
        if let Some(b) = &bar {
            b.reset();
            b.set_message(format!("epoch {}/{epochs}", epoch + 1));
        }
        let train = train_epoch(
            &model,
            &mut opt,
            &mut stepper,
            &mut sums,
            &train_data,
            cfg,
            epoch,
            steps_per_epoch,
            bar.as_ref(),
        )?;
        let train_secs = t0.elapsed().as_secs_f64();
        let (test_loss, test_acc) = evaluate(
            &model,
            &test_data,
            cfg.train.eval_batch_size,
            cfg.train.precision,
        );
        let diverged = !train.loss.is_finite() || !test_loss.is_finite();
        let row = EpochRow {
            epoch: epoch + 1,
            lr: lr_epoch,
            train_loss: train.loss,
            train_acc: train.acc,
            test_loss,
            test_acc,
            grad_norm: train.grad_norm,
            tau: model.tau_value(),
            epoch_seconds: t0.elapsed().as_secs_f64(),
            images_per_second: train_data.len() as f64 / train_secs.max(1e-9),
            status: if diverged {
                "diverged".into()
            } else {
                "ok".into()
            },
        };
        metrics::append(&csv_path, &row)?;
        if crash_point("after-csv", epoch + 1) {
            die();
        }
        summary.epochs_done = epoch + 1;
        summary.final_test_acc = test_acc;
        summary.final_train_loss = train.loss;
        summary.train_seconds += row.epoch_seconds;
        let line = format!(
            "{} epoch {:>3}/{epochs} lr {:.4} train_loss {:.4} train_acc {:.4} test_loss {:.4} test_acc {:.4} grad_norm {:.3} tau {:.4} {:.1}s {:.0} img/s",
            cfg.name, row.epoch, row.lr, row.train_loss, row.train_acc, row.test_loss, row.test_acc, row.grad_norm,
            row.tau, row.epoch_seconds, row.images_per_second
        );
        if !opts.quiet {
            match &bar {
                Some(b) => b.println(line),
                None => eprintln!("{line}"),
            }
        }
        if diverged {
            summary.status = "diverged".into();
            summary.diverged_at_epoch = Some(epoch + 1);
            write_summary(&dir, &summary)?;
            if !opts.quiet {
                eprintln!(
                    "{}: diverged at epoch {} (loss is NaN or inf); stopping this run",
                    cfg.name,
                    epoch + 1
                );
            }
            return Ok(summary);
        }
        if test_acc > best_acc {
            best_acc = test_acc;
            best_epoch = epoch + 1;
        }
        summary.best_test_acc = best_acc;
        summary.best_epoch = best_epoch;
        if cfg.train.checkpoint {
            let meta = checkpoint::Saved {
                epoch: epoch + 1,
                seed: cfg.seed as i64,
                best_test_acc: best_acc,
                best_epoch,
                config_hash: Some(run_hash.clone()),
            };
            checkpoint::save(&dir, &vs, &opt, &meta)?;
        }
        if crash_point("summary", epoch + 1) {
            die();
        }
        write_summary(&dir, &summary)?;
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if summary.epochs_done >= epochs {
        summary.status = "finished".into();
    }
    write_summary(&dir, &summary)?;
    Ok(summary)
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

struct EpochStats {
    loss: f64,
    acc: f64,
    grad_norm: f64,
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
        let zero = || Tensor::zeros([], (Kind::Float, device));
        StepSums {
            loss: zero(),
            correct: zero(),
            grad_norm: zero(),
            images: 0,
            steps: 0,
        }
    }
}

/// One SGD step on the batch (x, y) at learning rate `lr`: forward, cross-entropy, backward,
/// the global gradient norm (when `grad_norm`), the update; sums accumulate on the device.
/// The training loop and `deepres bench` both run exactly this.
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    model: &ResNet,
    opt: &mut Sgd,
    x: &Tensor,
    y: &Tensor,
    lr: f64,
    precision: Precision,
    grad_norm: bool,
    sums: &mut StepSums,
) {
    let b = y.size()[0];
    let logits = forward(model, x, true, precision);
    let loss = logits.cross_entropy_for_logits(y);
    opt.backward(&loss);
    if grad_norm {
        sums.grad_norm += opt.grad_norm().to_device(x.device());
    }
    opt.step(lr);
    sums.loss += loss.detach() * (b as f64);
    sums.correct += logits.argmax(-1, false).eq_tensor(y).sum(Kind::Float);
    sums.images += b;
    sums.steps += 1;
}

/// One epoch of SGD. Loss, accuracy and gradient norm accumulate on the device and are read
/// once at the end (plus a NaN check every 100 steps, so a diverged run stops early).
#[allow(clippy::too_many_arguments)]
fn train_epoch(
    model: &ResNet,
    opt: &mut Sgd,
    stepper: &mut graph::Stepper,
    sums: &mut StepSums,
    data: &DeviceData,
    cfg: &RunConfig,
    epoch: i64,
    steps_per_epoch: i64,
    bar: Option<&indicatif::ProgressBar>,
) -> Result<EpochStats> {
    sums.reset();
    for (x, y) in data.train_batches(
        cfg.train.batch_size,
        epoch_seed(cfg.seed, epoch),
        cfg.data.augment,
    ) {
        let t = epoch as f64 + sums.steps as f64 / steps_per_epoch as f64;
        let lr = schedule::lr_at(
            &cfg.train.schedule,
            cfg.train.optimizer.lr,
            cfg.train.epochs,
            t,
        );
        stepper.step(model, opt, &x, &y, lr, cfg.train.precision, true, sums)?;
        if let Some(bar) = bar {
            bar.inc(1);
        }
        if sums.steps % 100 == 0 && !sums.loss.double_value(&[]).is_finite() {
            break;
        }
    }
    let images = sums.images.max(1) as f64;
    Ok(EpochStats {
        loss: sums.loss.double_value(&[]) / images,
        acc: sums.correct.double_value(&[]) / images,
        grad_norm: sums.grad_norm.double_value(&[]) / sums.steps.max(1) as f64,
    })
}

/// The forward pass in the configured precision, logits in fp32. bf16 and fp16 are CUDA
/// autocast (convolutions and the classifier in the low precision, batch norm's statistics
/// and the weights in fp32), as torch.autocast("cuda", dtype) does.
pub fn forward(model: &ResNet, x: &Tensor, train: bool, precision: Precision) -> Tensor {
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
