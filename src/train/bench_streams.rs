//! `deepres bench --pack N --streams`: the other way to train N models as one program, for
//! where cuDNN's grouped convolutions (a pack, [`super::bench_pack`]) are slow at these
//! channel counts: N separate networks (seeds 0..N-1, [`super::bench`]'s model
//! and recipe, each its own batches), each stepping on a CUDA stream of its own
//! ([`super::streams`]); with `--cuda-graph` each step is one graph launch per model, and the
//! GPU runs the models' kernels side by side. Timed as a pack is; the report is a pack's
//! (aggregate images/s of N × batch images per step). CUDA only.
use anyhow::{Context, Result};
use tch::nn::VarStore;
use tch::Kind;

use super::bench::{time_windows, BenchOptions, BenchSetup};
use super::bench_pack::PackReport;
use super::graph::Stepper;
use super::recipe::Targets;
use super::sgd::Sgd;
use super::streams::CudaStream;
use super::{epoch_seed, schedule, StepSums};
use crate::model::resnet::ResNet;

/// One of the N networks, with everything its steps need.
struct Member {
    _vs: VarStore,
    model: ResNet,
    opt: Sgd,
    stepper: Stepper,
    sums: StepSums,
    /// None: the default stream ([`run_one_stream`]).
    stream: Option<CudaStream>,
    seed: u64,
}

/// Times N networks on N streams (after [`super::bench::run`] checked the options).
pub fn run(o: &BenchOptions) -> Result<PackReport> {
    run_members(o, true)
}

/// [`run`] with every network on the default stream, one after another: the reference its
/// streams must not change (`tests/gpu_graph.rs`).
pub fn run_one_stream(o: &BenchOptions) -> Result<PackReport> {
    run_members(o, false)
}

// Long on purpose: the timed protocol of bench.rs's `run`, read top to bottom, with N networks.
#[allow(clippy::too_many_lines)]
fn run_members(o: &BenchOptions, on_streams: bool) -> Result<PackReport> {
    super::bench::validate(o)?;
    let BenchSetup {
        device,
        precision,
        cfg,
        batches,
        split,
        train_data,
        ..
    } = super::bench::setup(o)?;
    let _ = crate::util::torch_ext::cuda_peak_bytes(device, true); // the N networks' own peak
    let mut members = Vec::with_capacity(o.pack as usize);
    for seed in 0..o.pack as u64 {
        tch::manual_seed(seed as i64);
        let vs = VarStore::new(device);
        let model = ResNet::new(&vs.root(), &cfg.model, split.channels, split.num_classes)?;
        if o.channels_last {
            crate::util::torch_ext::vars_to_channels_last(&vs)?;
        }
        let mut opt = Sgd::for_precision(&vs, cfg.train.optimizer, model.num_blocks, precision);
        let stepper =
            Stepper::new(o.cuda_graph, device, o.batch, &mut opt).context("--cuda-graph")?;
        let stream = match on_streams {
            true => Some(CudaStream::new(device)?),
            false => None,
        };
        if let Some(s) = &stream {
            s.wait_for_current()?; // the weights, drawn on the default stream
        }
        members.push(Member {
            _vs: vs,
            model,
            opt,
            stepper,
            sums: StepSums::new(device),
            stream,
            seed,
        });
    }
    let mut orders: Vec<_> = (members.iter())
        .map(|m| {
            let (seed, augment) = (m.seed, cfg.data.augment);
            let data = &train_data;
            (0i64..).flat_map(move |epoch| {
                data.train_batches(o.batch, epoch_seed(seed, epoch), augment)
                    .map(move |b| (epoch, b))
            })
        })
        .collect();
    let step = |n: i64| -> Result<()> {
        for _ in 0..n {
            for (m, order) in members.iter_mut().zip(&mut orders) {
                let Member {
                    model,
                    opt,
                    stepper,
                    sums,
                    stream,
                    ..
                } = m;
                let mut one_step = || -> Result<()> {
                    let (epoch, (x, y)) = order.next().expect("the epochs never end");
                    let lr = schedule::run_lr(&cfg, epoch, sums.steps % batches, batches);
                    let targets = Targets::hard(&y);
                    stepper.step(model, opt, &x, &targets, lr, precision, o.grad_norm, sums)
                };
                match stream {
                    Some(s) => s.run(one_step)??,
                    None => one_step()?,
                }
            }
        }
        Ok(())
    };
    let what = format!("{} networks on their own streams", o.pack);
    let timed = time_windows(o, device, &what, step)?;
    let mut loss_sums = Vec::with_capacity(members.len());
    for m in &members {
        if let Some(s) = &m.stream {
            s.join_current()?;
        }
        loss_sums.push(m.sums.loss.to_kind(Kind::Double).double_value(&[]));
    }
    let how = "as N networks, each stepping on a CUDA stream of its own (--streams)";
    Ok(PackReport::of_run(o, device, timed, &loss_sums, how))
}
