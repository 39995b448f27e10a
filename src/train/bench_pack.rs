//! `deepres bench --pack N`: N models of one architecture (seeds 0..N-1, otherwise
//! [`super::bench`]'s model and recipe) trained as one pack ([`super::pack`]), timed as
//! [`super::bench`] times one model: warm-up steps, then windows synchronized only at their
//! ends. Each step is [`PackTrainer::step`] on every member's own batch (its own shuffle, crop and
//! flip); the aggregate images/s counts N × batch images per step.
use anyhow::Result;

use super::bench::{median, synthetic_size, time_windows, BenchOptions, Window};
use super::config::RunConfig;
use super::pack::{PackTrainer, Streams};
use crate::data::DatasetName;

/// What `--pack N` found.
#[derive(Debug, Clone)]
pub struct PackReport {
    pub members: i64,
    pub batch: i64,
    pub warmup_seconds: f64,
    pub windows: Vec<Window>,
    /// Each member's mean loss over all steps (a check that every member trained).
    pub mean_losses: Vec<f64>,
    /// The CUDA caching allocator's peak (allocated, reserved) bytes while the pack was built
    /// and trained (None off CUDA): what `--pack auto`'s estimate is to stay above.
    pub peak_memory: Option<(i64, i64)>,
    /// How the N models ran as one program (the report's first line).
    pub how: &'static str,
}

/// [`PackReport::how`] of a pack.
pub const AS_A_PACK: &str =
    "as one program: grouped convolutions, batch norm over N·C channels, batched classifier";

impl PackReport {
    /// The report of `o`'s N models on `device` after [`time_windows`] gave `(warm-up seconds,
    /// windows)`: each model's loss summed over the images of every step, `loss_sums`; the
    /// allocator's peak since it was reset before the models were built.
    pub fn of_run(
        o: &BenchOptions,
        device: tch::Device,
        (warmup_seconds, windows): (f64, Vec<Window>),
        loss_sums: &[f64],
        how: &'static str,
    ) -> PackReport {
        let total = ((o.warmup + o.steps * o.windows) * o.batch) as f64;
        PackReport {
            members: o.pack,
            batch: o.batch,
            warmup_seconds,
            windows,
            mean_losses: loss_sums.iter().map(|l| l / total).collect(),
            peak_memory: crate::util::torch_ext::cuda_peak_bytes(device, false),
            how,
        }
    }

    /// Aggregate images/s of the median window: N × batch images per step.
    pub fn images_per_second(&self) -> f64 {
        let rates: Vec<f64> = self
            .windows
            .iter()
            .map(|w| (w.steps * self.batch * self.members) as f64 / w.seconds.max(1e-12))
            .collect();
        median(&rates)
    }

    /// The lines printed after one model's report; `one` is one model's images/s.
    pub fn lines(&self, one: f64) -> Vec<String> {
        let mut l = vec![format!(
            "pack: {} models (seeds 0..{}) {}",
            self.members,
            self.members - 1,
            self.how
        )];
        l.push(format!("pack_warmup: {:.3} s", self.warmup_seconds));
        for (i, w) in self.windows.iter().enumerate() {
            l.push(format!(
                "pack_window {}: {} steps, {:.3} s, {:.2} ms/step, {:.1} images/s (all models)",
                i + 1,
                w.steps,
                w.seconds,
                w.ms_per_step(),
                (w.steps * self.batch * self.members) as f64 / w.seconds.max(1e-12)
            ));
        }
        let losses: Vec<String> = self.mean_losses.iter().map(|v| format!("{v:.4}")).collect();
        l.push(format!("pack_mean_losses: {}", losses.join(", ")));
        l.push(match self.peak_memory {
            Some((a, r)) => format!(
                "pack_peak_gpu_memory: {:.1} MiB allocated, {:.1} MiB reserved (caching allocator peaks)",
                a as f64 / 1048576.0,
                r as f64 / 1048576.0
            ),
            None => "pack_peak_gpu_memory: n/a (not CUDA)".into(),
        });
        l.push(format!(
            "pack_images_per_second: {:.2} (aggregate of {} models)",
            self.images_per_second(),
            self.members
        ));
        l.push(format!("one_model_images_per_second: {one:.2}"));
        l.push(format!(
            "pack_speedup: {:.3} (pack aggregate / one model)",
            self.images_per_second() / one.max(1e-12)
        ));
        l
    }
}

/// The members' run configs: bench's model and recipe, seeds 0..N-1, synthetic data.
fn member_configs(o: &BenchOptions) -> Result<Vec<RunConfig>> {
    let (_, images) = synthetic_size(o);
    (0..o.pack)
        .map(|seed| {
            let mut c = RunConfig {
                name: format!("bench-{seed}"),
                seed: seed as u64,
                device: o.device.clone(),
                ..RunConfig::default()
            };
            c.model.depth = o.depth;
            c.train.batch_size = o.batch;
            c.train.precision = super::bench::parse_precision(&o.precision, None)?;
            c.train.channels_last = o.channels_last;
            c.train.cuda_graph = o.cuda_graph.into();
            c.data.name = DatasetName::Synthetic;
            c.data.synthetic_train = images;
            c.data.synthetic_test = o.batch;
            Ok(c)
        })
        .collect()
}

/// Times the pack (after [`super::bench::run`] checked the options).
pub fn run(o: &BenchOptions) -> Result<PackReport> {
    super::bench::validate(o)?;
    let cfgs = member_configs(o)?;
    if let Ok(dev) = crate::util::device::select_device(&o.device) {
        let _ = crate::util::torch_ext::cuda_peak_bytes(dev, true); // the pack's own peak from here
    }
    let mut tr = PackTrainer::new(&cfgs)?;
    let steps_per_epoch = tr.steps_per_epoch();
    let device = tr.device;
    let data = std::rc::Rc::clone(&tr.train_data);
    let (mut epoch, mut streams) = (0, Streams::new(&cfgs, &data, 0)?);
    let step = |n: i64| -> Result<()> {
        for _ in 0..n {
            if tr.sums.steps == steps_per_epoch {
                tr.sums.steps = 0;
                epoch += 1;
                streams = Streams::new(&cfgs, &data, epoch)?;
            }
            let (x, targets) = streams.next(&cfgs)?;
            tr.step(epoch, &x, &targets)?;
        }
        Ok(())
    };
    let what = format!("the pack of {} models", cfgs.len());
    let timed = time_windows(o, device, &what, step)?;
    let loss_sums = Vec::<f64>::try_from(tr.sums.loss.to_kind(tch::Kind::Double))?;
    Ok(PackReport::of_run(o, device, timed, &loss_sums, AS_A_PACK))
}
