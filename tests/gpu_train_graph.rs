//! CUDA graphs through the training loop itself. On an H200 on 2026-12-04 a graphed
//! `deepres train` of ResNet-110 (synthetic data, 50,000 images, 2 epochs) did not learn: test
//! accuracy 0.09 against 0.81 without graphs, although single graphed steps equal ordinary ones
//! (tests/gpu_graph.rs). `train.cuda_graph: true` is refused until these pass
//! (`deepres::train::graph::UNVERIFIED`). Two tests, to say where graphed and ordinary
//! training part:
//! - the whole run, `deepres train` with graphs against it without (twice, for the spread of
//!   ordinary runs);
//! - the same model, optimizer, schedule and loader batches (the run's on-device loader, cuDNN's
//!   benchmark mode on, as a run sets it) through the graph stepper, outside the run's loop.
//!
//! If the first fails and the second passes, the cause is in the loop around the steps (test
//! pass, partial batches, sums); if both fail, in the steps of ResNet-110 on the loader's
//! batches with cuDNN's benchmark mode. On the CPU both skip with a note.
use deepres::data::DeviceData;
use deepres::model::ResNet;
use deepres::train::config::{Precision, RunConfig};
use deepres::train::graph::{Stepper, TRAINING_GRAPH_ENV};
use deepres::train::metrics::{self, EpochRow};
use deepres::train::sgd::Sgd;
use deepres::train::{epoch_seed, schedule, StepSums};
use tch::nn::VarStore;
use tch::Device;

mod common;
use common::graph_check::{assert_follows, step_loss};
use common::{cuda_or_skip, serial};

/// `deepres train` of ResNet-110 on `n` synthetic images for 2 epochs on cuda:0, with graphs
/// when `graphed`; its metrics.csv rows. A capture that fell back to ordinary steps fails.
fn train_run(dir: &std::path::Path, name: &str, n: i64, graphed: bool) -> Vec<EpochRow> {
    let mut cmd = common::deepres();
    cmd.args(["train", "--device", "cuda"]);
    let sets = [
        format!("name={name}"),
        format!("out_dir={}", dir.display()),
        "data.name=synthetic".into(),
        format!("data.synthetic_train={n}"),
        "data.synthetic_test=2000".into(),
        "model.depth=110".into(),
        "train.epochs=2".into(),
        "train.checkpoint=false".into(),
        format!("train.cuda_graph={graphed}"),
    ];
    for s in &sets {
        cmd.args(["--set", s]);
    }
    if graphed {
        cmd.env(TRAINING_GRAPH_ENV, "1");
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "deepres train {sets:?}: {stderr}");
    assert!(
        !stderr.contains("without CUDA graphs"),
        "the capture fell back: {stderr}"
    );
    assert_eq!(stderr.contains("cuda_graph=on"), graphed, "{stderr}");
    metrics::read(&dir.join(name).join("metrics.csv")).unwrap()
}

/// A graphed `deepres train` (ResNet-110, 12,880 synthetic images: 100 full batches and one
/// of 80 per epoch, 2 epochs, the run-config defaults otherwise) against two ordinary runs:
/// the ordinary run learns (its epoch-2 train loss below its epoch 1's, test accuracy ≥ 0.3,
/// three times chance), and at each epoch the graphed run's train loss is within
/// max(4·D, 5 %) of the ordinary run's, its test accuracy within max(4·D, 0.05), D the
/// largest difference between the two ordinary runs. The run of 2026-12-04 (accuracy 0.09,
/// train loss 2.8 times the ordinary run's) is off by far more. Every figure is printed.
#[test]
fn deepres_train_with_graphs_learns_as_without() {
    if !cuda_or_skip("deepres_train_with_graphs_learns_as_without") {
        return;
    }
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let n = 12_880;
    let off = train_run(tmp.path(), "off", n, false);
    let again = train_run(tmp.path(), "again", n, false);
    let on = train_run(tmp.path(), "on", n, true);
    let show = |rows: &[EpochRow]| -> Vec<(f64, f64)> {
        rows.iter().map(|r| (r.train_loss, r.test_acc)).collect()
    };
    eprintln!(
        "(train loss, test acc) per epoch: ordinary {:?}, ordinary again {:?}, graphed {:?}",
        show(&off),
        show(&again),
        show(&on)
    );
    assert!(off.len() == 2 && again.len() == 2 && on.len() == 2);
    assert!(
        off[1].train_loss < off[0].train_loss && off[1].test_acc >= 0.3,
        "the ordinary run did not learn here, so the comparison would say nothing: {:?}",
        show(&off)
    );
    let spread = |f: fn(&EpochRow) -> f64, rel: bool| {
        (off.iter().zip(&again))
            .map(|(a, b)| (f(a) - f(b)).abs() / if rel { f(a).abs() } else { 1.0 })
            .fold(0.0, f64::max)
    };
    let (d_loss, d_acc) = (
        spread(|r| r.train_loss, true),
        spread(|r| r.test_acc, false),
    );
    eprintln!("ordinary vs ordinary: train loss {d_loss:.3e} (relative), test acc {d_acc:.3e}");
    for (a, g) in off.iter().zip(&on) {
        let loss = (g.train_loss - a.train_loss).abs() / a.train_loss;
        let acc = (g.test_acc - a.test_acc).abs();
        assert!(
            loss <= (4.0 * d_loss).max(0.05) && acc <= (4.0 * d_acc).max(0.05),
            "epoch {}: graphed (loss {}, acc {}) vs ordinary (loss {}, acc {}); two ordinary runs differ by {d_loss:.3e} and {d_acc:.3e}",
            a.epoch,
            g.train_loss,
            g.test_acc,
            a.train_loss,
            a.test_acc
        );
    }
}

/// Each step's mean loss over 2 epochs of ResNet-110 (from `init`'s weights) on the on-device
/// loader's batches of `cfg`'s synthetic data (crop and flip, each epoch seeded as a run seeds
/// it), at the run's learning rates, through a stepper with or without a graph.
fn loader_steps(cfg: &RunConfig, init: &VarStore, data: &DeviceData, graphed: bool) -> Vec<f64> {
    let dev = Device::Cuda(0);
    let mut vs = VarStore::new(dev);
    let net = ResNet::new(&vs.root(), &cfg.model, 3, 10).unwrap();
    vs.copy(init).unwrap();
    let t = &cfg.train;
    let mut opt = Sgd::for_precision(&vs, t.optimizer, net.num_blocks, Precision::Fp32);
    let mut stepper = Stepper::new(graphed, dev, t.batch_size, &mut opt).unwrap();
    let mut sums = StepSums::new(dev);
    let steps = (data.len() + t.batch_size - 1) / t.batch_size;
    let mut losses = Vec::new();
    for epoch in 0..2 {
        sums.reset();
        let seed = epoch_seed(cfg.seed, epoch);
        for (x, y) in data.train_batches(t.batch_size, seed, cfg.data.augment) {
            let lr = schedule::run_lr(cfg, epoch, sums.steps, steps);
            let net_opt = (&net, &mut opt);
            let fp32 = Precision::Fp32;
            losses.push(step_loss(
                &mut stepper,
                net_opt,
                (&x, &y),
                lr,
                fp32,
                &mut sums,
            ));
        }
    }
    losses
}

/// ResNet-110's graphed steps on the run's own loader batches, with cuDNN's benchmark mode on
/// (as `deepres train` sets it) and the run's schedule, follow the ordinary steps' losses as
/// closely as two ordinary runs follow each other: each step's loss within max(4·D, 0.02·ℓ)
/// of the ordinary run's ℓ, D the largest per-step difference between two ordinary runs
/// (fp32; 12,880 images: 101 steps per epoch, the last of 80 images, 2 epochs). A replay that
/// did nothing, read a stale batch or rate, or trained other weights than the model's drifts
/// off by far more over 202 steps. Every figure is printed.
#[test]
fn graphed_steps_on_the_loaders_batches_follow_the_ordinary_ones() {
    if !cuda_or_skip("graphed_steps_on_the_loaders_batches_follow_the_ordinary_ones") {
        return;
    }
    let _g = serial();
    let dev = deepres::util::device::select_device("cuda").unwrap(); // (cuDNN benchmark on)
    let sets: Vec<String> = [
        "data.name=synthetic",
        "data.synthetic_train=12880",
        "model.depth=110",
    ]
    .map(String::from)
    .to_vec();
    let cfg = RunConfig::from_overrides(&sets).unwrap();
    let split = deepres::data::load(&cfg.data.spec()).unwrap();
    let data = DeviceData::new(&split.train, &split.mean, &split.std, dev);
    tch::manual_seed(cfg.seed as i64);
    let init = VarStore::new(dev);
    ResNet::new(&init.root(), &cfg.model, 3, 10).unwrap();
    let plain = loader_steps(&cfg, &init, &data, false);
    let again = loader_steps(&cfg, &init, &data, false);
    let graphed = loader_steps(&cfg, &init, &data, true);
    assert_follows("ResNet-110, loader batches, fp32", &plain, &again, &graphed);
}
