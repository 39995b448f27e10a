//! Marion et al., "Scaling ResNets in the Large-depth Regime" (arXiv:2206.06929;
//! docs/marion2022.md), training: the batched models learn, the batched Adam equals torch's,
//! models trained together equal models trained alone, and an interrupted training or
//! accuracy figure resumes to the same models, under pinned resume keys.
use deepres::model::marion_net::MarionModel;
use deepres::model::weight_init::{FbmSampler, LayerInit};
use deepres::papers::marion2022::{
    self as marion, train_classifiers, Figure, Inputs, TrainFig, TrainRun, TrainSetup, Training,
};
use deepres::train::adam::BatchedAdam;
use tch::{Device, Kind, Tensor};

mod common;
/// Tests that draw from torch's global RNG run one at a time (seeded, reproducible).
use common::scalar as f;
use common::serial as lock;

/// One training run of a figure: layer init, residual scale exponent β, learning rate.
fn run(init: LayerInit, beta: f64, lr: f64) -> TrainRun {
    TrainRun { init, beta, lr }
}

fn synthetic_split(train: i64, test: i64) -> deepres::data::DataSplit {
    let spec = deepres::data::DataSpec {
        synthetic_train: train,
        synthetic_test: test,
        ..deepres::data::DataSpec::new(deepres::data::DatasetName::Synthetic)
    };
    deepres::data::load(&spec).unwrap()
}

fn train_fig(epochs: i64, batch: i64) -> TrainFig {
    TrainFig {
        epochs,
        batch,
        lr_step: 5,
        limit_train: None,
        limit_test: None,
        inputs: Inputs::Raw,
        cuda_graph: false,
    }
}

fn setup(kind: MarionModel, depth: i64, width: i64, t: &TrainFig, seed: u64) -> TrainSetup<'_> {
    TrainSetup::new(kind, depth, width, t, seed, Device::Cpu)
}

/// Training runs end to end (Adam, SimpleResNet and FullResNet) and learns something.
#[test]
fn training_learns_on_synthetic_data() {
    let _g = lock();
    let split = synthetic_split(400, 200);
    let one = run(LayerInit::Fbm { hurst: 0.7 }, 0.7, 0.001);
    for kind in [MarionModel::Simple, MarionModel::Full] {
        let t = train_fig(6, 50);
        let tr = train_classifiers(&setup(kind, 20, 16, &t, 0), &split, &[one]).unwrap();
        eprintln!("{kind}: acc {:?} loss {:?}", tr.test_acc, tr.train_loss);
        assert!(!tr.diverged[0]);
        assert!(tr.test_acc[0] > 0.2, "{kind}: test acc {:?}", tr.test_acc);
    }
}

/// The batched Adam is torch's Adam: one model trained with it and with tch's nn::Adam (the
/// same gradients each step) stays equal to float rounding; so does it with the bias
/// corrections on the device (the CUDA-graph path: `begin_step` on the host, then
/// `backward_update`), which a version that left them at a stale step would not.
#[test]
fn batched_adam_matches_torch_adam() {
    use tch::nn::{Module, OptimizerConfig};
    let _g = lock();
    tch::manual_seed(3);
    let x = Tensor::randn([64, 5], (Kind::Float, Device::Cpu));
    let y = Tensor::randn([64, 1], (Kind::Float, Device::Cpu));
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let lin = tch::nn::linear(vs.root(), 5, 1, Default::default());
    let mut adam = tch::nn::Adam::default().build(&vs, 0.05).unwrap();
    // The same start, as one model `[1, ...]` for the batched Adam: copies (a detached view
    // would share lin's storage, and both optimizers would then step the same numbers).
    let w = lin.ws.detach().unsqueeze(0).copy().set_requires_grad(true);
    let b = lin
        .bs
        .as_ref()
        .unwrap()
        .detach()
        .unsqueeze(0)
        .copy()
        .set_requires_grad(true);
    let mut ours = BatchedAdam::new(vec![w.shallow_clone(), b.shallow_clone()], &[0.05]);
    let (w2, b2) = (
        w.detach().copy().set_requires_grad(true),
        b.detach().copy().set_requires_grad(true),
    );
    let mut device_side = BatchedAdam::new(vec![w2.shallow_clone(), b2.shallow_clone()], &[0.05]);
    device_side.use_device_bias_correction();
    let pred = |w: &Tensor, b: &Tensor| x.matmul(&w.select(0, 0).tr()) + b.select(0, 0);
    for step in 0..30 {
        if step == 20 {
            adam.set_lr(0.005);
            ours.set_lr(&[0.005]);
            device_side.set_lr(&[0.005]);
        }
        let loss = (lin.forward(&x) - &y).square().mean(Kind::Float);
        adam.backward_step(&loss);
        ours.backward_step(&(pred(&w, &b) - &y).square().mean(Kind::Float));
        device_side.begin_step();
        device_side.backward_update(&(pred(&w2, &b2) - &y).square().mean(Kind::Float));
    }
    let moved = f(&lin.ws.abs().max());
    for (what, w, b) in [("host", &w, &b), ("device", &w2, &b2)] {
        let dw = f(&(&lin.ws - w.select(0, 0)).abs().max());
        let db = f(&(lin.bs.as_ref().unwrap() - b.select(0, 0)).abs().max());
        assert!(
            dw < 1e-5 && db < 1e-5,
            "{what} bias corrections: differ by {dw}, {db} (weights ~{moved})"
        );
    }
}

/// Models trained together in one batched program are the models trained alone: each with its
/// own init, β and learning rate, unaffected by a neighbour that diverges.
#[test]
fn models_trained_together_equal_models_trained_alone() {
    let _g = lock();
    let split = synthetic_split(300, 100);
    let t = train_fig(2, 50);
    let runs = [
        run(LayerInit::Fbm { hurst: 0.3 }, 0.5, 0.01),
        // Diverges: the loss overflows within the first steps.
        run(LayerInit::Iid, 0.0, 1e4),
        run(LayerInit::Smooth, 1.0, 0.001),
    ];
    for kind in [MarionModel::Simple, MarionModel::Full] {
        let together = train_classifiers(&setup(kind, 12, 8, &t, 5), &split, &runs).unwrap();
        assert_eq!(together.diverged, vec![false, true, false], "{kind}");
        assert!(together.test_acc[1].is_nan());
        for m in [0usize, 2] {
            let alone =
                train_classifiers(&setup(kind, 12, 8, &t, 5), &split, &runs[m..m + 1]).unwrap();
            assert!(
                (alone.train_loss[0] - together.train_loss[m]).abs() < 1e-4,
                "{kind} model {m}: loss {} alone, {} together",
                alone.train_loss[0],
                together.train_loss[m]
            );
            assert!((alone.test_acc[0] - together.test_acc[m]).abs() < 1e-9);
            for ((name, a), (_, b)) in alone
                .net
                .named_tensors()
                .into_iter()
                .zip(together.net.named_tensors())
            {
                let d = f(&(a.select(0, 0) - b.select(0, m as i64)).abs().max());
                assert!(d < 1e-4, "{kind} model {m}: {name} differs by {d}");
            }
        }
    }
}

/// Training stopped after an epoch resumes from its checkpoint to the same models, bit for bit,
/// as training that was never stopped, its wall seconds counting both processes; a checkpoint
/// of other runs is not resumed.
#[test]
fn interrupted_training_resumes_from_its_checkpoint_bit_for_bit() {
    let _g = lock();
    let split = synthetic_split(300, 100);
    let t = train_fig(3, 50);
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("chunk.safetensors");
    let runs = [
        run(LayerInit::Fbm { hurst: 0.6 }, 0.5, 0.01),
        run(LayerInit::Iid, 1.0, 0.003),
    ];
    let whole =
        train_classifiers(&setup(MarionModel::Simple, 10, 8, &t, 2), &split, &runs).unwrap();
    // Another run's checkpoint in the way: not resumed, moved aside (kept), not overwritten.
    let other = [runs[0]];
    let stopped = TrainSetup {
        checkpoint: Some(ckpt.clone()),
        stop_after: Some(1),
        ..setup(MarionModel::Simple, 10, 8, &t, 2)
    };
    assert!(train_classifiers(&stopped, &split, &other).is_err());
    let first = std::time::Instant::now();
    match train_classifiers(&stopped, &split, &runs) {
        Err(e) => assert!(format!("{e:#}").contains("stopped after epoch 1"), "{e:#}"),
        Ok(_) => panic!("stop_after did not stop"),
    }
    let first = first.elapsed().as_secs_f64();
    assert!(ckpt.exists());
    let aside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.starts_with("chunk.") && n.ends_with(".safetensors") && n != "chunk.safetensors"
        })
        .collect();
    assert_eq!(
        aside.len(),
        1,
        "the other runs' checkpoint, kept: {aside:?}"
    );
    let resumed = TrainSetup {
        checkpoint: Some(ckpt.clone()),
        ..setup(MarionModel::Simple, 10, 8, &t, 2)
    };
    let second = std::time::Instant::now();
    let tr = train_classifiers(&resumed, &split, &runs).unwrap();
    let second = second.elapsed().as_secs_f64();
    // The resumed training's seconds add the first process's (its epoch 1, up to the
    // checkpoint) to its own: more than this call alone took, less than both calls did.
    assert!(
        tr.seconds > second && tr.seconds <= first + second,
        "seconds {} outside ({second}, {}]",
        tr.seconds,
        first + second
    );
    assert_eq!(tr.train_loss, whole.train_loss);
    assert_eq!(tr.test_acc, whole.test_acc);
    for ((name, a), (_, b)) in tr
        .net
        .named_tensors()
        .into_iter()
        .zip(whole.net.named_tensors())
    {
        assert!(a.equal(b), "{name} differs after the resume");
    }
}

/// M9's runs CSV is rewritten after every chunk and a rerun trains only the runs missing from
/// it; runs of other settings are moved aside, not overwritten.
#[test]
fn the_accuracy_figure_resumes_from_its_runs_file() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let fig9 = std::path::Path::new("experiments/marion2022/fig9.yaml");
    let sets = |depth: &str| -> Vec<String> {
        [
            "datasets=[[synthetic]]",
            "hursts.points=2",
            "betas.points=2",
            "lrs=[0.01]",
            "chunk=3",
            "train.epochs=1",
            "train.limit_train=200",
            "train.limit_test=100",
            depth,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let fig = Figure::load_with(fig9, "smoke", &sets("depth=6")).unwrap();
    let runs = dir.path().join("runs-synthetic.csv");
    marion::run(&fig, dir.path(), Device::Cpu, true).unwrap();
    let first = std::fs::read_to_string(&runs).unwrap();
    assert_eq!(first.lines().count(), 5, "{first}");
    // As if killed during the second chunk: only the first chunk's 3 runs are on disk.
    let kept: Vec<&str> = first.lines().take(4).collect();
    std::fs::write(&runs, kept.join("\n") + "\n").unwrap();
    marion::run(&fig, dir.path(), Device::Cpu, true).unwrap();
    let resumed = std::fs::read_to_string(&runs).unwrap();
    // The same runs (the last one trained alone now: equal to float rounding).
    let rows = |s: &str| -> Vec<Vec<String>> {
        s.lines()
            .map(|l| l.split(',').map(String::from).collect())
            .collect()
    };
    let (a, b) = (rows(&first), rows(&resumed));
    assert_eq!(a.len(), b.len());
    for (ra, rb) in a.iter().zip(&b).skip(1) {
        assert_eq!(ra[..4], rb[..4]);
        assert_eq!(ra[6], rb[6]);
        for c in [4, 5] {
            let (x, y): (f64, f64) = (ra[c].parse().unwrap(), rb[c].parse().unwrap());
            assert!((x - y).abs() < 1e-4, "{ra:?} vs {rb:?}");
        }
    }
    // The first 3 rows were kept, not retrained (their chunk time is the first run's).
    assert_eq!(resumed.lines().take(4).collect::<Vec<_>>(), kept);
    // Other settings: the old file is moved aside and all runs are trained anew.
    let fig = Figure::load_with(fig9, "smoke", &sets("depth=7")).unwrap();
    marion::run(&fig, dir.path(), Device::Cpu, true).unwrap();
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("runs-synthetic.") && n != "runs-synthetic.csv")
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join(&aside[0])).unwrap(),
        resumed
    );
    assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 5);
}

/// `t` with each field of the training settings (TrainFig) changed, by name.
fn fig_variants(t: &TrainFig) -> [(&'static str, TrainFig); 5] {
    [
        (
            "inputs",
            TrainFig {
                inputs: Inputs::Standardized,
                ..t.clone()
            },
        ),
        (
            "batch",
            TrainFig {
                batch: 25,
                ..t.clone()
            },
        ),
        (
            "lr_step",
            TrainFig {
                lr_step: 2,
                ..t.clone()
            },
        ),
        (
            "limit_train",
            TrainFig {
                limit_train: Some(200),
                ..t.clone()
            },
        ),
        (
            "limit_test",
            TrainFig {
                limit_test: Some(50),
                ..t.clone()
            },
        ),
    ]
}

const PINNED_CHECKPOINT_KEY: &str =
    "d5c4f1729134e98f26ccdcf4bbd2ca56629b5a770b535d2b1fb92582123ba5fe";
const PINNED_RUNS_KEY: &str = "721ed5ad0e8ed23fc3a6d1dbd4d0d6f16a8c72928912dcf47d64a6a7a0967df5";

/// The resume key of the training checkpoint, pinned for one setting. If a field is added to
/// `CheckpointKey` (src/papers/marion2022/checkpoint.rs) this test fails: every old checkpoint
/// is then retrained, so paste the new value deliberately. Changing any one setting changes
/// the key.
// Long: the list of every setting of the key, one entry each.
#[test]
#[allow(clippy::too_many_lines)]
fn the_checkpoint_key_is_pinned_and_changes_with_every_setting() {
    let _g = lock();
    let split = synthetic_split(300, 100);
    let t = train_fig(3, 50);
    let runs = [
        run(LayerInit::Fbm { hurst: 0.6 }, 0.5, 0.01),
        run(LayerInit::Iid, 1.0, 0.003),
    ];
    let key = |s: &TrainSetup, runs: &[TrainRun]| marion::checkpoint_key(s, &split, runs);
    let base = key(&setup(MarionModel::Simple, 10, 8, &t, 2), &runs);
    // Re-pinned when `train.inputs: raw` became the default (2026-12-01). Standardized
    // inputs, the only ones before, keep the former key (re-pinned then when
    // IID_SAMPLER_VERSION 2 entered the key of setups with an i.i.d. run, as this one has).
    assert_eq!(base, PINNED_CHECKPOINT_KEY);
    let standardized = TrainFig {
        inputs: Inputs::Standardized,
        ..t.clone()
    };
    assert_eq!(
        key(&setup(MarionModel::Simple, 10, 8, &standardized, 2), &runs),
        "85ef5245de5114f8f6474e7e19fe69d42a800e23a9f109f90b25769ab3c14908"
    );
    let mut other_beta = runs;
    other_beta[1].beta = 0.75;
    let mut other_lr = runs;
    other_lr[0].lr = 0.02;
    let t4 = train_fig(4, 50);
    for (what, k) in [
        (
            "β",
            key(&setup(MarionModel::Simple, 10, 8, &t, 2), &other_beta),
        ),
        (
            "lr",
            key(&setup(MarionModel::Simple, 10, 8, &t, 2), &other_lr),
        ),
        (
            "seed",
            key(&setup(MarionModel::Simple, 10, 8, &t, 3), &runs),
        ),
        (
            "depth",
            key(&setup(MarionModel::Simple, 11, 8, &t, 2), &runs),
        ),
        ("model", key(&setup(MarionModel::Full, 10, 8, &t, 2), &runs)),
        (
            "epochs",
            key(&setup(MarionModel::Simple, 10, 8, &t4, 2), &runs),
        ),
        (
            "runs",
            key(&setup(MarionModel::Simple, 10, 8, &t, 2), &runs[..1]),
        ),
        (
            "width",
            key(&setup(MarionModel::Simple, 10, 9, &t, 2), &runs),
        ),
        (
            "init",
            key(
                &setup(MarionModel::Simple, 10, 8, &t, 2),
                &[runs[0], run(LayerInit::Smooth, 1.0, 0.003)],
            ),
        ),
        (
            "Hurst index",
            key(
                &setup(MarionModel::Simple, 10, 8, &t, 2),
                &[run(LayerInit::Fbm { hurst: 0.7 }, 0.5, 0.01), runs[1]],
            ),
        ),
    ] {
        assert_ne!(k, base, "changing {what} must change the checkpoint key");
    }
    // Every field of the training settings (TrainFig) and the data.
    for (what, tf) in &fig_variants(&t) {
        let k = key(&setup(MarionModel::Simple, 10, 8, tf, 2), &runs);
        assert_ne!(
            k, base,
            "changing train.{what} must change the checkpoint key"
        );
    }
    for (what, other) in [
        ("train examples", synthetic_split(200, 100)),
        ("test examples", synthetic_split(300, 50)),
    ] {
        let k = marion::checkpoint_key(&setup(MarionModel::Simple, 10, 8, &t, 2), &other, &runs);
        assert_ne!(
            k, base,
            "changing the {what} must change the checkpoint key"
        );
    }
}

/// [`marion::runs_key`] with the default (exact) fBm sampler.
fn runs_key_exact(training: &Training, split: &deepres::data::DataSplit) -> String {
    marion::runs_key(training, FbmSampler::Exact, split)
}

/// The resume key of M9's runs file, pinned for one setting. If a field is added to `RunsKey`
/// (src/papers/marion2022/accuracy.rs) this test fails: every old runs file is then retrained,
/// so paste the new value deliberately. Changing any one setting changes the key.
#[test]
fn the_runs_key_is_pinned_and_changes_with_every_setting() {
    let _g = lock();
    let split = synthetic_split(300, 100);
    let t = train_fig(3, 50);
    let t4 = train_fig(4, 50);
    let training = |seed: u64, depth: i64, t: &TrainFig| Training {
        model: MarionModel::Simple,
        depth,
        width: 30,
        train: t.clone(),
        seed,
    };
    let base = runs_key_exact(&training(0, 100, &t), &split);
    assert_eq!(base, PINNED_RUNS_KEY);
    // Standardized inputs keep the key they had before `inputs` existed: M9 runs made then
    // resume under `train.inputs: standardized`.
    let standardized = TrainFig {
        inputs: Inputs::Standardized,
        ..t.clone()
    };
    assert_eq!(
        runs_key_exact(&training(0, 100, &standardized), &split),
        "dc626d8192e0df608a463c890084899e8b6f5553189f13866ae585e8bc2283db"
    );
    for (what, k) in [
        ("seed", runs_key_exact(&training(1, 100, &t), &split)),
        ("depth", runs_key_exact(&training(0, 101, &t), &split)),
        ("epochs", runs_key_exact(&training(0, 100, &t4), &split)),
        (
            "data",
            runs_key_exact(&training(0, 100, &t), &synthetic_split(200, 100)),
        ),
        (
            "test data",
            runs_key_exact(&training(0, 100, &t), &synthetic_split(300, 50)),
        ),
        (
            "width",
            runs_key_exact(
                &Training {
                    width: 31,
                    ..training(0, 100, &t)
                },
                &split,
            ),
        ),
        (
            "fbm sampler",
            marion::runs_key(&training(0, 100, &t), FbmSampler::Authors, &split),
        ),
        (
            "model",
            runs_key_exact(
                &Training {
                    model: MarionModel::Full,
                    ..training(0, 100, &t)
                },
                &split,
            ),
        ),
    ] {
        assert_ne!(k, base, "changing {what} must change the runs key");
    }
    for (what, tf) in &fig_variants(&t) {
        let k = runs_key_exact(&training(0, 100, tf), &split);
        assert_ne!(k, base, "changing train.{what} must change the runs key");
    }
}

/// `train.cuda_graph: true` on the CPU is refused in one line naming the setting (graphs are
/// CUDA's), before any step.
#[test]
fn cuda_graphs_on_the_cpu_are_refused_naming_the_setting() {
    let _g = lock();
    let split = synthetic_split(40, 10);
    let t = TrainFig {
        cuda_graph: true,
        ..train_fig(1, 20)
    };
    let runs = [run(LayerInit::Iid, 0.5, 0.01)];
    let err = match train_classifiers(&setup(MarionModel::Simple, 4, 4, &t, 0), &split, &runs) {
        Ok(_) => panic!("trained with CUDA graphs on the CPU"),
        Err(e) => format!("{e:#}"),
    };
    assert_eq!(
        err,
        "train.cuda_graph: CUDA graphs need a CUDA device, the device is cpu: turn them off there"
    );
}

/// As the authors' models.py: a SimpleResNet's fBm-initialized layers have a zero bias that
/// trains (nn.Linear), its i.i.d. and smooth ones none (bias=False). Trained together, the
/// i.i.d. and smooth models' b stay exactly 0 and the fBm model's moves.
#[test]
fn only_fbm_simple_resnets_train_a_bias() {
    let _g = lock();
    let split = synthetic_split(200, 50);
    let t = train_fig(1, 50);
    let runs = [
        run(LayerInit::Iid, 0.5, 0.01),
        run(LayerInit::Fbm { hurst: 0.5 }, 0.5, 0.01),
        run(LayerInit::Smooth, 1.0, 0.01),
    ];
    let tr = train_classifiers(&setup(MarionModel::Simple, 8, 6, &t, 1), &split, &runs).unwrap();
    let bias = tr
        .net
        .named_tensors()
        .into_iter()
        .find(|(n, _)| *n == "bias")
        .unwrap()
        .1
        .shallow_clone();
    let moved: Vec<f64> = (0..3).map(|m| f(&bias.select(0, m).abs().max())).collect();
    assert_eq!(moved[0], 0.0, "the i.i.d. model has no bias");
    assert_eq!(moved[2], 0.0, "the smooth model has no bias");
    assert!(moved[1] > 1e-4, "the fBm model's bias trains: {moved:?}");
}

/// `train.inputs: raw` feeds x/255 (the authors' ToTensor()), whatever the dataset's published
/// statistics: on a split whose mean and std are moved, raw training gives exactly the models
/// that standardized training gives with mean 0 and std 1, and standardized training with the
/// moved statistics gives others.
#[test]
fn raw_inputs_are_the_pixels_over_255() {
    let _g = lock();
    let mut split = synthetic_split(200, 50);
    let c = split.channels as usize;
    let t = train_fig(1, 50);
    let standardized = TrainFig {
        inputs: Inputs::Standardized,
        ..t.clone()
    };
    let runs = [run(LayerInit::Fbm { hurst: 0.5 }, 0.5, 0.01)];
    let train = |split: &deepres::data::DataSplit, t: &TrainFig| {
        let tr = train_classifiers(&setup(MarionModel::Simple, 6, 6, t, 3), split, &runs).unwrap();
        tr.net.named_tensors()[1].1.shallow_clone() // V
    };
    (split.mean, split.std) = (vec![0.3; c], vec![0.2; c]);
    let raw = train(&split, &t);
    let moved = train(&split, &standardized);
    (split.mean, split.std) = (vec![0.0; c], vec![1.0; c]);
    let unit = train(&split, &standardized);
    assert_eq!(f(&(&raw - &unit).abs().max()), 0.0);
    assert!(f(&(&raw - &moved).abs().max()) > 1e-4);
}
