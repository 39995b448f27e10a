//! `deepres bench`: the speed of full training steps, timed exactly as [`crate::train::run`]
//! does them, to be set beside PyTorch eager (`scripts/bench_torch.py`, `make bench`).
//!
//! One step is what `train::train_epoch` does per batch: the on-device loader
//! ([`DeviceData::train_batches`]: `index_select` of a shuffled batch, float/255, random crop
//! with zero padding 4 + horizontal flip by batched gather, normalize), the forward pass
//! (bf16/fp16: CUDA autocast, fp16 with loss scaling), cross-entropy, gradients set to none,
//! backward, the global gradient norm (one `_foreach_norm`) accumulated on the device, [`Sgd::step`] at the schedule's learning rate, and the loss and
//! accuracy sums accumulated on the device. The model is [`ResNet::new`] with the run-config
//! defaults (BN, shortcut A, τ = 1, Kaiming init), the optimizer the default SGD (lr 0.1,
//! momentum 0.9, weight decay 1e-4), the data the synthetic CIFAR-shaped set (3×32×32, 10
//! classes): a whole number of batches, at most [`MAX_IMAGES`] images, epochs cycled (each
//! with its own shuffle, like training). Not timed: train's NaN check every 100 steps (a host
//! read), the per-epoch evaluation, checkpoints and CSV rows.
//!
//! Timing: `warmup` steps first (cuDNN autotuning, allocator growth), then `windows` timed
//! windows of `steps` steps each; the device is synchronized (`tch::Cuda::synchronize` on
//! CUDA; CPU ops are synchronous) only right before and right after each window, never
//! inside, so a window measures the steady-state throughput of the asynchronous loop. Per-step
//! times inside a window would only measure the host's kernel launches; ms/step is the
//! window's time divided by its steps, and with several windows their min/median/max are
//! shown. images/s is the median window's.
//!
//! Peak GPU memory: the CUDA caching allocator's peak allocated and reserved bytes over the
//! whole run (through [`crate::util::torch_ext`]; tch 0.24 exposes no allocator statistics), the
//! figures torch.cuda.max_memory_allocated / max_memory_reserved give, which
//! `scripts/bench_torch.py` prints in the same line format.
use anyhow::{bail, Context, Result};
use std::time::Instant;
use tch::nn::VarStore;
use tch::Device;

use crate::data::{self, DataSpec, DatasetName, DeviceData};
use crate::model::resnet::{blocks_per_stage, forward_flops, trainable_parameters, ResNet};
use crate::train::config::{Precision, RunConfig};
use crate::train::graph::Stepper;
use crate::train::sgd::Sgd;
use crate::train::{epoch_seed, schedule, StepSums};

/// At most this many synthetic images (CIFAR-10's training set size); more steps cycle epochs.
pub const MAX_IMAGES: i64 = 50_000;

/// What `deepres bench` measures: its options, also its command-line arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Depth 6n+2.
    #[arg(long, default_value_t = 56)]
    pub depth: i64,
    #[arg(long, default_value_t = 128)]
    pub batch: i64,
    /// Timed steps (per window).
    #[arg(long, default_value_t = 50)]
    pub steps: i64,
    /// Untimed steps first (cuDNN autotuning, allocator warm-up).
    #[arg(long, default_value_t = 10)]
    pub warmup: i64,
    /// fp32 | bf16 (CUDA autocast) | fp16 (CUDA autocast + loss scaling)
    #[arg(long, default_value = "fp32")]
    pub precision: String,
    /// auto | cpu | cuda | cuda:N
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Intra-op threads (default: libtorch's, one per core).
    #[arg(long)]
    pub threads: Option<i64>,
    /// Timed windows of --steps steps each; images/s is the median window's.
    #[arg(long, default_value_t = 1)]
    pub windows: i64,
    /// Compute the global gradient norm every step, as training does (off only to profile it).
    #[arg(
        long = "no-grad-norm",
        action = clap::ArgAction::SetFalse,
        help = "Skip the per-step gradient norm (profiling only: not the training step)"
    )]
    pub grad_norm: bool,
    /// Weights and batches in channels-last (NHWC) memory format (`train.channels_last`).
    #[arg(long)]
    pub channels_last: bool,
    /// Replay each step from a captured CUDA graph (CUDA only; `train.cuda_graph`).
    #[arg(long)]
    pub cuda_graph: bool,
    // (The doc comments of these arguments are their --help text: the code behind them is
    // super::bench_pack, super::bench_streams and crate::util::profile; --profile's 5 and 15 are
    // PROFILE_STEPS and PROFILE_TOP below.)
    /// Also time N models (seeds 0..N-1) trained as one pack (grouped convolutions) and print
    /// their aggregate images/s beside one model's (1: one model only).
    #[arg(long, default_value_t = 1)]
    pub pack: i64,
    /// With --pack N: the N models as N networks on N CUDA streams instead of one pack (CUDA
    /// only; with --cuda-graph, one graph launch per model).
    #[arg(long)]
    pub streams: bool,
    /// After the timed windows, record 5 more steps with libtorch's profiler and print
    /// the 15 largest kernels by device time (on the CPU: operators), not part of
    /// the timing: where a step's time goes.
    #[arg(long)]
    pub profile: bool,
}

/// Steps recorded by `--profile`, and the kernels it lists.
const PROFILE_STEPS: i64 = 5;
const PROFILE_TOP: usize = 15;

impl Default for BenchOptions {
    /// The command line's defaults.
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            o: BenchOptions,
        }
        <Cli as clap::Parser>::parse_from(["bench"]).o
    }
}

/// One timed window.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub steps: i64,
    pub seconds: f64,
}

impl Window {
    pub fn ms_per_step(&self) -> f64 {
        1e3 * self.seconds / self.steps as f64
    }
}

/// What `deepres bench` found.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub depth: i64,
    pub blocks: i64,
    pub parameters: i64,
    pub batch: i64,
    pub precision: Precision,
    pub device: Device,
    pub threads: i64,
    pub images: i64,
    pub warmup: i64,
    pub warmup_seconds: f64,
    pub windows: Vec<Window>,
    pub grad_norm: bool,
    pub channels_last: bool,
    pub cuda_graph: bool,
    /// The CUDA caching allocator's peak (allocated, reserved) bytes, or why there is none.
    pub gpu_memory: std::result::Result<(i64, i64), String>,
    /// The loss sum over all steps, read once at the end (a check that the steps ran).
    pub mean_loss: f64,
    /// FLOPs of one image's forward pass ([`forward_flops`]).
    pub forward_flops: f64,
}

pub(crate) fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

impl BenchReport {
    /// images/s of the median window.
    pub fn images_per_second(&self) -> f64 {
        let rates: Vec<f64> = self
            .windows
            .iter()
            .map(|w| (w.steps * self.batch) as f64 / w.seconds.max(1e-12))
            .collect();
        median(&rates)
    }

    // Long on purpose: the report's lines in their printed order, one per measured figure.
    /// The lines `deepres bench` prints; the last is `images_per_second: X`.
    #[allow(clippy::too_many_lines)]
    pub fn lines(&self) -> Vec<String> {
        let ms: Vec<f64> = self.windows.iter().map(Window::ms_per_step).collect();
        let total_steps: i64 = self.windows.iter().map(|w| w.steps).sum();
        let total_secs: f64 = self.windows.iter().map(|w| w.seconds).sum();
        let mean_ms = 1e3 * total_secs / total_steps.max(1) as f64;
        let precision = self.precision.name();
        let mut l = vec![
            "tool: deepres".to_string(),
            format!(
                "model: ResNet-{} (L = {} blocks, {} parameters, BN, shortcut A, tau 1)",
                self.depth, self.blocks, self.parameters
            ),
            format!("batch: {}", self.batch),
            format!("precision: {precision}"),
            format!(
                "memory_format: {}",
                if self.channels_last { "channels_last" } else { "contiguous" }
            ),
            "optimizer: SGD, PyTorch's fused kernel (torch._fused_sgd_)".to_string(),
            format!(
                "cuda_graph: {}",
                if self.cuda_graph {
                    "on (full-batch steps replayed from one captured graph)"
                } else {
                    "off"
                }
            ),
            "pipeline: on-device (dataset on the device as uint8, batched crop pad 4 + flip by gather)".to_string(),
            format!("data: synthetic 3x32x32, {} images, epochs cycled", self.images),
            format!("device: {}", device_name(self.device)),
            format!("threads: {}", self.threads),
            format!("grad_norm: {}", if self.grad_norm { "every step (as training)" } else { "off (profiling only)" }),
            format!("warmup: {} steps, {:.3} s", self.warmup, self.warmup_seconds),
        ];
        for (i, w) in self.windows.iter().enumerate() {
            l.push(format!(
                "window {}: {} steps, {:.3} s, {:.2} ms/step, {:.1} images/s",
                i + 1,
                w.steps,
                w.seconds,
                w.ms_per_step(),
                (w.steps * self.batch) as f64 / w.seconds.max(1e-12)
            ));
        }
        l.push(format!(
            "steps: {total_steps} timed ({} window(s) of {})",
            self.windows.len(),
            self.windows.first().map_or(0, |w| w.steps)
        ));
        l.push(format!("seconds: {total_secs:.3}"));
        let spread = if ms.len() > 1 {
            let mut s = ms.clone();
            s.sort_by(|a, b| a.total_cmp(b));
            format!(
                " (windows min/median/max {:.2}/{:.2}/{:.2})",
                s[0],
                median(&s),
                s[s.len() - 1]
            )
        } else {
            String::new()
        };
        l.push(format!("ms_per_step: {mean_ms:.2}{spread}"));
        const MIB: f64 = (1u64 << 20) as f64;
        l.push(match &self.gpu_memory {
            Ok((a, r)) => format!(
                "peak_gpu_memory: {:.1} MiB allocated, {:.1} MiB reserved (caching allocator peaks)",
                *a as f64 / MIB,
                *r as f64 / MIB
            ),
            Err(why) => format!("peak_gpu_memory: n/a ({why})"),
        });
        l.push(format!("mean_loss: {:.4}", self.mean_loss));
        l.push(format!(
            "forward_gflops_per_image: {:.4} (3x3 convolutions + classifier)",
            self.forward_flops / 1e9
        ));
        l.push(format!(
            "train_tflops: {:.2} (3 x forward FLOPs x images/s: forward + backward)",
            3.0 * self.forward_flops * self.images_per_second() / 1e12
        ));
        l.push(format!(
            "images_per_second: {:.2}",
            self.images_per_second()
        ));
        l
    }
}

/// `cpu`, `cuda:0`, …
pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// `--precision` for a device: fp32 anywhere, bf16 and fp16 (CUDA autocast) on CUDA only.
pub fn parse_precision(s: &str, device: Option<Device>) -> Result<Precision> {
    let p = match s {
        "fp32" => Precision::Fp32,
        "bf16" => Precision::Bf16,
        "fp16" => Precision::Fp16,
        _ => bail!("--precision {s:?}: unknown; accepted: fp32, bf16 (CUDA), fp16 (CUDA)"),
    };
    if let Some(d) = device {
        p.check_device(d)
            .with_context(|| format!("--precision {s}"))?;
    }
    Ok(p)
}

/// Checks the options that need no device (fast, before any data is generated).
pub(crate) fn validate(o: &BenchOptions) -> Result<()> {
    blocks_per_stage(o.depth).context("--depth")?;
    for (flag, v, min) in [
        ("--batch", o.batch, 1),
        ("--steps", o.steps, 1),
        ("--warmup", o.warmup, 0),
        ("--windows", o.windows, 1),
        ("--pack", o.pack, 1),
    ] {
        if v < min {
            bail!("{flag} {v}: must be at least {min}");
        }
    }
    if let Some(t) = o.threads {
        if t < 1 {
            bail!("--threads {t}: must be at least 1");
        }
    }
    parse_precision(&o.precision, None)?;
    if o.streams && o.pack < 2 {
        bail!("--streams: times N models side by side: give --pack N with N ≥ 2");
    }
    if o.streams && !crate::util::device::select_device(&o.device)?.is_cuda() {
        bail!("--streams: CUDA streams need a CUDA device, the device is cpu: drop --streams");
    }
    Ok(())
}

/// The timing protocol (module doc): `step(o.warmup)`, then `o.windows` windows of
/// `step(o.steps)`, the device synchronized only around each; (warm-up seconds, windows).
/// With `o.profile`, then [`PROFILE_STEPS`] steps under the profiler, its report printed
/// after a line `profile_of: {what}` (it comes before the report of the run it profiles).
pub(crate) fn time_windows(
    o: &BenchOptions,
    device: Device,
    what: &str,
    mut step: impl FnMut(i64) -> Result<()>,
) -> Result<(f64, Vec<Window>)> {
    synchronize(device);
    let t0 = Instant::now();
    step(o.warmup)?;
    synchronize(device);
    let warmup_seconds = t0.elapsed().as_secs_f64();
    let mut windows = Vec::with_capacity(o.windows as usize);
    for _ in 0..o.windows {
        synchronize(device);
        let t = Instant::now();
        step(o.steps)?;
        synchronize(device);
        windows.push(Window {
            steps: o.steps,
            seconds: t.elapsed().as_secs_f64(),
        });
    }
    if o.profile {
        let cuda = device.is_cuda();
        crate::util::profile::start(cuda)?;
        step(PROFILE_STEPS)?;
        synchronize(device);
        let rows = crate::util::profile::stop(cuda)?;
        println!("profile_of: {what} (its report follows the profile)");
        for line in crate::util::profile::report(&rows, PROFILE_STEPS, PROFILE_TOP, cuda) {
            println!("{line}");
        }
    }
    Ok((warmup_seconds, windows))
}

/// Batches per epoch and images of the synthetic set: a whole number of batches, enough for
/// warmup + all windows when that fits [`MAX_IMAGES`].
pub(crate) fn synthetic_size(o: &BenchOptions) -> (i64, i64) {
    let needed = o.warmup + o.steps * o.windows;
    let batches = needed.min((MAX_IMAGES / o.batch).max(1));
    (batches, batches * o.batch)
}

fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// What every benchmark of `o` starts from: the device, the precision, the run config of its
/// model and recipe, and its synthetic training set on the device.
pub(crate) struct BenchSetup {
    pub device: Device,
    pub precision: Precision,
    pub cfg: RunConfig,
    /// Batches in the training set (a whole number, enough for warm-up + all windows when that
    /// fits MAX_IMAGES), and its images.
    pub batches: i64,
    pub images: i64,
    pub split: data::DataSplit,
    pub train_data: DeviceData,
}

pub(crate) fn setup(o: &BenchOptions) -> Result<BenchSetup> {
    let device = crate::util::device::select_device(&o.device).context("--device")?;
    let precision = parse_precision(&o.precision, Some(device))?;
    let mut cfg = RunConfig::default();
    cfg.model.depth = o.depth;
    cfg.train.batch_size = o.batch;
    cfg.train.precision = precision;
    let (batches, images) = synthetic_size(o);
    let spec = DataSpec {
        synthetic_train: images,
        synthetic_test: 0,
        ..DataSpec::new(DatasetName::Synthetic)
    };
    let split = data::load(&spec)?;
    let train_data = DeviceData::new(&split.train, &split.mean, &split.std, device)
        .with_channels_last(o.channels_last);
    Ok(BenchSetup {
        device,
        precision,
        cfg,
        batches,
        images,
        split,
        train_data,
    })
}

// Long on purpose: one timed protocol (set-up, warm-up, timed windows, report) read top to
// bottom, as scripts/bench_torch.py does it on the PyTorch side.
/// Runs the benchmark.
#[allow(clippy::too_many_lines)]
pub fn run(o: &BenchOptions) -> Result<BenchReport> {
    validate(o)?;
    if let Some(t) = o.threads {
        tch::set_num_threads(t as i32);
    }
    let BenchSetup {
        device,
        precision,
        cfg,
        batches,
        images,
        split,
        train_data,
    } = setup(o)?;

    tch::manual_seed(cfg.seed as i64);
    let vs = VarStore::new(device);
    let model = ResNet::new(&vs.root(), &cfg.model, split.channels, split.num_classes)?;
    let parameters = trainable_parameters(&vs);
    if o.channels_last {
        crate::util::torch_ext::vars_to_channels_last(&vs)?;
    }
    let mut opt = Sgd::for_precision(&vs, cfg.train.optimizer, model.num_blocks, precision);

    let mut stepper =
        Stepper::new(o.cuda_graph, device, o.batch, &mut opt).context("--cuda-graph")?;

    let steps_per_epoch = batches;
    let mut sums = StepSums::new(device);
    let mut batches_iter = (0i64..).flat_map(|epoch| {
        train_data
            .train_batches(
                cfg.train.batch_size,
                epoch_seed(cfg.seed, epoch),
                cfg.data.augment,
            )
            .map(move |b| (epoch, b))
    });
    // The closure borrows the accumulators; the block ends the borrow before they are read.
    let (warmup_seconds, windows) = {
        let mut step = |n: i64| {
            for _ in 0..n {
                let (epoch, (x, y)) = batches_iter.next().expect("the epochs never end");
                let lr =
                    schedule::run_lr(&cfg, epoch, sums.steps % steps_per_epoch, steps_per_epoch);
                stepper
                    .step(
                        &model,
                        &mut opt,
                        &x,
                        &crate::train::recipe::Targets::hard(&y),
                        lr,
                        precision,
                        o.grad_norm,
                        &mut sums,
                    )
                    .expect("training step");
            }
        };
        time_windows(o, device, "one model", |n| {
            step(n);
            Ok(())
        })?
    };
    let total = (o.warmup + o.steps * o.windows) * o.batch;
    let mean_loss = sums.loss.double_value(&[]) / total as f64;
    let _ = (
        sums.correct.double_value(&[]),
        sums.grad_norm.double_value(&[]),
    );
    let gpu_memory =
        crate::util::torch_ext::cuda_peak_bytes(device, false).ok_or_else(|| device_name(device));
    Ok(BenchReport {
        depth: o.depth,
        blocks: model.num_blocks,
        parameters,
        batch: o.batch,
        precision,
        device,
        threads: tch::get_num_threads() as i64,
        images,
        warmup: o.warmup,
        warmup_seconds,
        windows,
        grad_norm: o.grad_norm,
        channels_last: o.channels_last,
        cuda_graph: o.cuda_graph,
        gpu_memory,
        mean_loss,
        forward_flops: forward_flops(o.depth, 3, 10)?,
    })
}
