//! How hard the synthetic data set is (a tool, not a test: it asserts nothing). A small BN
//! ResNet is trained for 15 epochs with the CIFAR augmentation on 10000 synthetic images (on
//! the GPU when there is one) and the test accuracy is printed per epoch, beside the set's
//! Bayes ceiling; this is how `SynthParams::min_weight` was chosen.
//!
//! ```sh
//! cargo run --release --example synthetic_difficulty
//! DEEPRES_SYNTH_MIN_WEIGHTS=0.3,0.4,1 cargo run --release --example synthetic_difficulty
//! ```
//! (slow on a CPU: minutes per epoch on 2 cores). tests/loader.rs `synthetic_is_learnable`
//! is the test that the set can be learned.
use deepres::data::synthetic;
use deepres::data::{channel_mean_std, Augment, DeviceData};
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind};

fn main() {
    let weights = std::env::var("DEEPRES_SYNTH_MIN_WEIGHTS").unwrap_or_default();
    let weights: Vec<f32> = weights
        .split(',')
        .filter_map(|w| w.trim().parse().ok())
        .collect();
    let default = synthetic::SynthParams::default();
    if weights.is_empty() {
        train_small_resnet(default);
    }
    for min_weight in weights {
        train_small_resnet(synthetic::SynthParams {
            min_weight,
            ..default
        });
    }
}

fn train_small_resnet(params: synthetic::SynthParams) {
    let device = Device::cuda_if_available();
    eprintln!(
        "synthetic_difficulty: {params:?}, Bayes ceiling {:.3}",
        synthetic::bayes_ceiling(params.min_weight as f64)
    );
    tch::manual_seed(0);
    let train = synthetic::generate_with(10_000, 0, synthetic::STREAM_TRAIN, &params);
    let test = synthetic::generate_with(2_000, 0, synthetic::STREAM_TEST, &params);
    let (mean, std) = channel_mean_std(&train.images);
    let tr = DeviceData::new(&train, &mean, &std, device);
    let te = DeviceData::new(&test, &mean, &std, device);
    let vs = nn::VarStore::new(device);
    let net = small_resnet(&vs.root());
    let mut opt = nn::Sgd {
        momentum: 0.9,
        nesterov: true,
        wd: 5e-4,
        ..Default::default()
    }
    .build(&vs, 0.05)
    .unwrap();
    let epochs = 15;
    for epoch in 0..epochs {
        opt.set_lr(
            0.05 * 0.5 * (1.0 + (std::f64::consts::PI * epoch as f64 / epochs as f64).cos()),
        );
        let (mut loss_sum, mut n) = (0.0, 0);
        for (x, y) in tr.train_batches(
            128,
            epoch,
            Augment {
                crop_padding: 4,
                hflip: true,
                cutout: None,
            },
        ) {
            let loss = net.forward_t(&x, true).cross_entropy_for_logits(&y);
            opt.backward_step(&loss);
            loss_sum += loss.double_value(&[]) * y.size()[0] as f64;
            n += y.size()[0];
        }
        let mut correct = 0;
        tch::no_grad(|| {
            for (x, y) in te.eval_batches(500) {
                correct += net
                    .forward_t(&x, false)
                    .argmax(1, false)
                    .eq_tensor(&y)
                    .sum(Kind::Int64)
                    .int64_value(&[]);
            }
        });
        eprintln!(
            "synthetic_difficulty epoch {epoch}: train loss {:.3}, test acc {:.3}",
            loss_sum / n as f64,
            correct as f64 / te.len() as f64
        );
    }
}

/// Stem (32 channels), three BN basic blocks (32, 64, 128 channels), pooling, classifier.
fn small_resnet(p: &nn::Path) -> nn::SequentialT {
    let cc = |stride| nn::ConvConfig {
        padding: 1,
        stride,
        bias: false,
        ..Default::default()
    };
    let block = |p: nn::Path, i: i64, o: i64, stride: i64| {
        let c1 = nn::conv2d(&p / "c1", i, o, 3, cc(stride));
        let b1 = nn::batch_norm2d(&p / "b1", o, Default::default());
        let c2 = nn::conv2d(&p / "c2", o, o, 3, cc(1));
        let b2 = nn::batch_norm2d(&p / "b2", o, Default::default());
        let sc = (stride != 1 || i != o).then(|| {
            nn::conv2d(
                &p / "sc",
                i,
                o,
                1,
                nn::ConvConfig {
                    stride,
                    bias: false,
                    ..Default::default()
                },
            )
        });
        nn::func_t(move |x, t| {
            let y = x
                .apply(&c1)
                .apply_t(&b1, t)
                .relu()
                .apply(&c2)
                .apply_t(&b2, t);
            let s = match &sc {
                Some(sc) => x.apply(sc),
                None => x.shallow_clone(),
            };
            (y + s).relu()
        })
    };
    nn::seq_t()
        .add(nn::conv2d(p / "stem", 3, 32, 3, cc(1)))
        .add(nn::batch_norm2d(p / "bn", 32, Default::default()))
        .add_fn(|x| x.relu())
        .add(block(p / "l1", 32, 32, 1))
        .add(block(p / "l2", 32, 64, 2))
        .add(block(p / "l3", 64, 128, 2))
        .add_fn(|x| x.adaptive_avg_pool2d([1, 1]).flatten(1, -1))
        .add(nn::linear(p / "fc", 128, 10, Default::default()))
}
