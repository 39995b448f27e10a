//! What the per-block diagnostics (blocks.csv) cost against a training epoch: the time of one
//! `diagnostics::measure` on its fixed batch of 128 images, against the time of the training
//! steps of a CIFAR epoch (391 steps of 128 images), for a ResNet of the given depth.
//!
//! ```sh
//! cargo run --release --example diagnostics_cost -- 20 110   # depths; CUDA when present
//! ```
use deepres::model::config::{ModelConfig, Norm, TauConfig, TauRule};
use deepres::model::ResNet;
use deepres::train::config::{Precision, SgdConfig};
use deepres::train::recipe::Targets;
use deepres::train::sgd::Sgd;
use deepres::train::{diagnostics, train_step, StepSums};
use std::time::Instant;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

fn main() {
    let depths: Vec<i64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let dev = Device::cuda_if_available();
    for depth in if depths.is_empty() { vec![20] } else { depths } {
        let cfg = ModelConfig {
            depth,
            norm: Norm::Bn,
            tau: TauConfig {
                rule: TauRule::InvSqrt,
                ..TauConfig::default()
            },
            ..ModelConfig::default()
        };
        tch::manual_seed(0);
        let vs = VarStore::new(dev);
        let net = ResNet::new(&vs.root(), &cfg, 3, 10).unwrap();
        let mut opt = Sgd::new(&vs, SgdConfig::default(), net.num_blocks);
        let x = Tensor::randn([128, 3, 32, 32], (Kind::Float, dev));
        let y = Tensor::randint(10, [128], (Kind::Int64, dev));
        let mut sums = StepSums::new(dev);
        let t = Targets::hard(&y);
        let sync = || {
            if let Device::Cuda(i) = dev {
                tch::Cuda::synchronize(i as i64)
            }
        };
        let time = |f: &mut dyn FnMut(), n: usize| {
            f();
            sync();
            let t0 = Instant::now();
            for _ in 0..n {
                f();
            }
            sync();
            t0.elapsed().as_secs_f64() / n as f64
        };
        let step = time(
            &mut || {
                train_step(
                    &net,
                    &mut opt,
                    &x,
                    &t,
                    0.01,
                    Precision::Fp32,
                    true,
                    &mut sums,
                )
            },
            5,
        );
        let diag = time(
            &mut || {
                diagnostics::measure(&net, &vs, &x, &y, 1);
            },
            5,
        );
        let epoch = 391.0 * step;
        println!(
            "ResNet-{depth} on {dev:?}: training step {:.1} ms, epoch (391 steps) {:.1} s, diagnostics {:.1} ms = {:.3} % of an epoch",
            step * 1e3, epoch, diag * 1e3, 100.0 * diag / epoch
        );
    }
}
