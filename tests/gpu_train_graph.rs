//! CUDA graphs through the training loop itself. On an H200 on 2026-12-04 a graphed
//! `deepres train` of ResNet-110 (synthetic data, 50,000 images, 2 epochs, lr 0.1) did not
//! learn: test accuracy 0.09 against 0.81 without graphs, although single graphed steps equal
//! ordinary ones (tests/gpu_graph.rs: in bf16, 200 graphed ResNet-20 steps equal the ordinary
//! ones bit for bit). `train.cuda_graph: true` is refused until these pass
//! (`deepres::train::graph::UNVERIFIED`). The tests, to say where graphed and ordinary
//! training part:
//! - the whole run in deterministic mode (`train.deterministic: true`: deterministic kernels,
//!   no cuDNN benchmark) at the failing run's lr 0.1, fp32, where a graph replays the very
//!   kernels of the ordinary step and the two runs should agree to the last digits;
//! - the same model's steps on the run's own loader batches, outside the run's loop, in
//!   deterministic mode at lr 0.1, step by step (the first step where they differ is printed);
//! - the whole run as `deepres train` runs by default (cuDNN's benchmark mode on) at lr 0.02,
//!   where ResNet-110 learns steadily from the first steps (at lr 0.1 it first sits near ln 10
//!   for a number of steps that rounding alone can change: He et al. 2016, arXiv:1512.03385,
//!   §4.2, warm ResNet-110 up at 0.01 for that reason; the tables' 2-epoch runs at 50,000
//!   images repeat the failing lr-0.1 run itself);
//! - its steps on the loader's batches at lr 0.02, in benchmark mode and (a fifth test)
//!   without it.
//!
//! Deterministic passing and benchmark mode failing puts the cause in cuDNN's benchmark mode
//! under capture; a whole run failing while its steps pass puts it in the loop around the
//! steps (test pass, partial batches, sums); both failing, in the steps themselves. No test
//! reads the device after each step (the run does not). On the CPU they skip with a note.
use deepres::data::DeviceData;
use deepres::model::ResNet;
use deepres::train::config::{Precision, RunConfig};
use deepres::train::graph::{Stepper, TRAINING_GRAPH_ENV};
use deepres::train::metrics::{self, EpochRow};
use deepres::train::recipe::Targets;
use deepres::train::sgd::Sgd;
use deepres::train::{epoch_seed, schedule, StepSums};
use tch::nn::VarStore;
use tch::{Device, Tensor};

mod common;
use common::graph_check::assert_follows;
use common::{cuda_or_skip, serial};

/// Synthetic training images of the tests: 100 full batches of 128 and one of 80 per epoch.
const IMAGES: i64 = 12_880;

/// The learning rate at which ResNet-110 learns steadily from its first steps (see the module
/// doc). On the CPU on 2026-12-04, 2 epochs of [`IMAGES`] images (seed 0) took its epoch
/// train loss from 2.70 to 1.21 and test accuracy to 0.69 at lr 0.02; at lr 0.1, from 3.31 to
/// 2.25 and 0.18, and the same run in deterministic mode (one thread: other rounding only)
/// from 3.40 to 2.29 and 0.13 (BENCHMARKS.md).
const STEADY_LR: &str = "train.optimizer.lr=0.02";

/// `deepres train` of ResNet-110 on [`IMAGES`] synthetic images (2,000 test) for 2 epochs on
/// cuda:0 without checkpoints, with `extra` settings, with graphs when `graphed`; its
/// metrics.csv rows. A capture that fell back to ordinary steps fails.
fn train_run(dir: &std::path::Path, name: &str, graphed: bool, extra: &[&str]) -> Vec<EpochRow> {
    let mut cmd = common::deepres();
    cmd.args(["train", "--device", "cuda"]);
    let mut sets: Vec<String> = vec![
        format!("name={name}"),
        format!("out_dir={}", dir.display()),
        "data.name=synthetic".into(),
        format!("data.synthetic_train={IMAGES}"),
        "data.synthetic_test=2000".into(),
        "model.depth=110".into(),
        "train.epochs=2".into(),
        "train.checkpoint=false".into(),
        format!("train.cuda_graph={graphed}"),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
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
    let rows = metrics::read(&dir.join(name).join("metrics.csv")).unwrap();
    assert_eq!(rows.len(), 2, "{name}: 2 epochs");
    rows
}

/// Two ordinary runs and one graphed run under `dir`, with the same `extra` settings: the
/// ordinary pair measures how far two runs part by rounding alone.
fn whole_runs(dir: &std::path::Path, extra: &[&str]) -> [Vec<EpochRow>; 3] {
    [
        train_run(dir, "off", false, extra),
        train_run(dir, "again", false, extra),
        train_run(dir, "on", true, extra),
    ]
}

/// The largest differences between two runs' epochs: train loss (relative), train and test
/// accuracy (absolute).
fn differences(a: &[EpochRow], b: &[EpochRow]) -> [f64; 3] {
    let mut d = [0.0f64; 3];
    for (x, y) in a.iter().zip(b) {
        let rel = (x.train_loss - y.train_loss).abs() / x.train_loss.abs();
        d[0] = d[0].max(rel);
        d[1] = d[1].max((x.train_acc - y.train_acc).abs());
        d[2] = d[2].max((x.test_acc - y.test_acc).abs());
    }
    d
}

/// Asserts that the graphed run `on` is as close to the ordinary run `off` as a second
/// ordinary run `again` is (each difference of [`differences`] within 4 times the ordinary
/// runs' own, or within `floor` where that is larger), after printing every epoch's figures.
fn assert_as_close(
    what: &str,
    off: &[EpochRow],
    again: &[EpochRow],
    on: &[EpochRow],
    floor: [f64; 3],
) {
    let show = |rows: &[EpochRow]| -> Vec<(f64, f64, f64)> {
        rows.iter()
            .map(|r| (r.train_loss, r.train_acc, r.test_acc))
            .collect()
    };
    let (d, g) = (differences(off, again), differences(off, on));
    let e = |v: [f64; 3]| v.map(|x| format!("{x:.3e}")).join(", ");
    eprintln!(
        "{what}: (train loss, train acc, test acc) per epoch: ordinary {:?}, again {:?}, graphed \
         {:?}; ordinary vs again [{}], ordinary vs graphed [{}]",
        show(off),
        show(again),
        show(on),
        e(d),
        e(g)
    );
    let names = ["train loss (relative)", "train accuracy", "test accuracy"];
    for k in 0..3 {
        assert!(
            g[k] <= (4.0 * d[k]).max(floor[k]),
            "{what}: graphed and ordinary {} differ by {:.3e}; two ordinary runs by {:.3e} \
             (allowed: max(4 × that, {:.0e})); per epoch: ordinary {:?}, graphed {:?}",
            names[k],
            g[k],
            d[k],
            floor[k],
            show(off),
            show(on)
        );
    }
}

/// In deterministic mode (`train.deterministic: true`: deterministic kernels, cuDNN not
/// benchmarking) a graphed `deepres train` of ResNet-110 at the failing run's lr 0.1 equals
/// the ordinary one: a replay runs the kernels the ordinary step runs, on the same numbers, so
/// the two should agree to the last digit (as graphed and ordinary bf16 steps of ResNet-20 did
/// over 200 steps on 2026-12-04). Allowed: each epoch's train loss within max(4·D, 1e-4)
/// relative, train and test accuracy within max(4·D, 1e-3), D the two ordinary runs'
/// difference. fp32 only (the run of 2026-12-04 failed as badly in fp32 as in bf16; bf16's
/// three more runs would take time from the tests after this one). A graph that trained
/// other weights, replayed a stale batch, rate or momentum, or skipped the partial batches is
/// off by far more.
#[test]
fn deterministic_graphed_training_equals_the_ordinary_one() {
    if !cuda_or_skip("deterministic_graphed_training_equals_the_ordinary_one") {
        return;
    }
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let [off, again, on] = whole_runs(tmp.path(), &["train.deterministic=true"]);
    let floor = [1e-4, 1e-3, 1e-3];
    assert_as_close("deterministic, fp32", &off, &again, &on, floor);
}

/// A graphed `deepres train` of ResNet-110 as it runs by default on a GPU (cuDNN's benchmark
/// mode on, fp32), at lr 0.02 (see the module doc), against two ordinary runs: the ordinary
/// run learns (its epoch-2 train loss below its epoch 1's), and the graphed run's train loss
/// is within max(4·D, 5 %) of it at each epoch, its accuracies within max(4·D, 0.05), D the
/// two ordinary runs' difference. The run of 2026-12-04 (test accuracy 0.09, train loss 2.8
/// times the ordinary run's) is off by far more.
#[test]
fn graphed_training_in_benchmark_mode_learns_as_without() {
    if !cuda_or_skip("graphed_training_in_benchmark_mode_learns_as_without") {
        return;
    }
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let [off, again, on] = whole_runs(tmp.path(), &[STEADY_LR]);
    assert!(
        off[1].train_loss < off[0].train_loss,
        "the ordinary run did not learn here, so the comparison would say nothing: {off:?}"
    );
    assert_as_close(
        "benchmark mode, lr 0.02",
        &off,
        &again,
        &on,
        [0.05, 0.05, 0.05],
    );
}

/// Each step's mean loss over 2 epochs of ResNet-110 (from `init`'s weights) on the on-device
/// loader's batches of `cfg`'s synthetic data (crop and flip, each epoch seeded as a run seeds
/// it), at the run's learning rates, through a stepper with or without a graph. As in the run,
/// no step waits for the device: after each step a copy of the device's loss sum is queued,
/// and the copies are read once all steps are queued.
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
    // (the loss sum before and after each step, and the step's batch size)
    let mut marks: Vec<(Tensor, Tensor, i64)> = Vec::new();
    for epoch in 0..2 {
        sums.reset();
        let mut before = sums.loss.copy();
        let seed = epoch_seed(cfg.seed, epoch);
        for (x, y) in data.train_batches(t.batch_size, seed, cfg.data.augment) {
            let lr = schedule::run_lr(cfg, epoch, sums.steps, steps);
            let targets = Targets::hard(&y);
            let fp32 = Precision::Fp32;
            (stepper.step(&net, &mut opt, &x, &targets, lr, fp32, true, &mut sums)).unwrap();
            let after = sums.loss.copy();
            marks.push((before, after.shallow_clone(), targets.len()));
            before = after;
        }
    }
    (marks.iter())
        .map(|(a, b, n)| (b.double_value(&[]) - a.double_value(&[])) / *n as f64)
        .collect()
}

/// Each step's loss over 2 epochs of ResNet-110 on the run's own loader batches ([`IMAGES`]
/// synthetic images: 101 steps per epoch, the last of 80 images; fp32) at `rate` (a
/// `train.optimizer.lr=` setting), cuDNN `deterministic` (deterministic kernels, no benchmark)
/// or not, and then `benchmark`ing (as `deepres train` does by default) or not:
/// `[ordinary, ordinary again, graphed]`, all from the same weights.
fn loader_runs(rate: &str, deterministic: bool, benchmark: bool) -> [Vec<f64>; 3] {
    let dev = deepres::util::device::select_device("cuda").unwrap();
    deepres::util::torch_ext::set_deterministic(deterministic, benchmark).unwrap();
    let sets: Vec<String> = [
        "data.name=synthetic",
        "data.synthetic_train=12880", // IMAGES
        "model.depth=110",
        rate,
    ]
    .map(String::from)
    .to_vec();
    let cfg = RunConfig::from_overrides(&sets).unwrap();
    let split = deepres::data::load(&cfg.data.spec()).unwrap();
    let data = DeviceData::new(&split.train, &split.mean, &split.std, dev);
    tch::manual_seed(cfg.seed as i64);
    let init = VarStore::new(dev);
    ResNet::new(&init.root(), &cfg.model, 3, 10).unwrap();
    [false, false, true].map(|graphed| loader_steps(&cfg, &init, &data, graphed))
}

/// A loader-step test: skips with a note on the CPU; else [`loader_runs`] at `rate`, cuDNN
/// `deterministic` or not and `benchmark`ing or not, and [`assert_follows`] with `floor`.
fn loader_steps_follow(test: &str, what: &str, mode: (&str, bool, bool), floor: f64) {
    if !cuda_or_skip(test) {
        return;
    }
    let _g = serial();
    let (rate, deterministic, benchmark) = mode;
    let [plain, again, graphed] = loader_runs(rate, deterministic, benchmark);
    assert_follows(what, &plain, &again, &graphed, floor);
}

/// ResNet-110's graphed steps on the run's own loader batches, with cuDNN's benchmark mode on
/// (as `deepres train` sets it) at lr 0.02 (see the module doc), follow the ordinary steps'
/// losses as closely as two ordinary runs follow each other: each step's loss within
/// max(4·D, 0.02·ℓ) of the ordinary run's ℓ, D the largest per-step difference between two
/// ordinary runs ([`loader_runs`]). A replay that did nothing, read a stale batch or rate, or
/// trained other weights than the model's drifts off by far more over 202 steps. Every figure
/// is printed. (Each step's loss is read at the end, as in the run: no host sync per step.)
#[test]
fn graphed_steps_on_the_loaders_batches_follow_the_ordinary_ones() {
    loader_steps_follow(
        "graphed_steps_on_the_loaders_batches_follow_the_ordinary_ones",
        "ResNet-110, loader batches, benchmark mode, lr 0.02",
        (STEADY_LR, false, true),
        0.02,
    );
}

/// The same with cuDNN's benchmark mode off (its heuristics pick the kernels; not
/// deterministic): with the test above, whether benchmark mode is what parts graphed steps
/// from ordinary ones (the fix would then be graphs without it).
#[test]
fn graphed_steps_without_benchmark_mode_follow_the_ordinary_ones() {
    loader_steps_follow(
        "graphed_steps_without_benchmark_mode_follow_the_ordinary_ones",
        "ResNet-110, loader batches, heuristic kernels, lr 0.02",
        (STEADY_LR, false, false),
        0.02,
    );
}

/// The same in deterministic mode at the failing run's lr 0.1: a replay runs the ordinary
/// step's very kernels, so each step's loss should equal the ordinary one to the last digits;
/// allowed max(4·D, 1e-4·ℓ). The first step at which graphed and ordinary differ at all is
/// printed: with [`deterministic_graphed_training_equals_the_ordinary_one`], it says whether
/// the steps or the loop around them part from ordinary training.
#[test]
fn deterministic_graphed_steps_on_the_loaders_batches_equal_the_ordinary_ones() {
    loader_steps_follow(
        "deterministic_graphed_steps_on_the_loaders_batches_equal_the_ordinary_ones",
        "ResNet-110, loader batches, deterministic mode, lr 0.1",
        ("train.optimizer.lr=0.1", true, false),
        1e-4,
    );
}
