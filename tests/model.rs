//! The CIFAR ResNet: parameter counts of the reference architectures, τ's effect, the init.
use deepres::model::config::{
    InitScheme, ModelConfig, Norm, Shortcut, TauConfig, TauLearnable, TauRule,
};
use deepres::model::resnet::{blocks_per_stage, trainable_parameters, ResNet};
use deepres::model::tau::initial_tau;
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

mod common;
use common::serial;

fn build(cfg: &ModelConfig, classes: i64) -> (VarStore, ResNet) {
    tch::manual_seed(0);
    let vs = VarStore::new(Device::Cpu);
    let net = ResNet::new(&vs.root(), cfg, 3, classes).unwrap();
    (vs, net)
}

fn cfg(depth: i64, norm: Norm, shortcut: Shortcut) -> ModelConfig {
    ModelConfig {
        depth,
        norm,
        shortcut,
        ..ModelConfig::default()
    }
}

#[test]
fn parameter_counts_match_the_reference_resnets() {
    // He et al.'s CIFAR-10 ResNets with option-A shortcuts and BN (269,722 for ResNet-20, as in akamaster/pytorch_resnet_cifar10).
    for (depth, expected) in [
        (20, 269_722),
        (56, 853_018),
        (110, 1_727_962),
        (1202, 19_421_274),
    ] {
        let (vs, net) = build(&cfg(depth, Norm::Bn, Shortcut::A), 10);
        assert_eq!(trainable_parameters(&vs), expected, "ResNet-{depth}");
        assert_eq!(net.num_blocks, 3 * (depth - 2) / 6);
    }
}

#[test]
fn shortcut_and_norm_variants_add_the_expected_parameters() {
    let base = 269_722;
    // a-bn: one BN on the 16 and one on the 32 input channels of the two downsampling shortcuts.
    let (vs, _) = build(&cfg(20, Norm::Bn, Shortcut::ABn), 10);
    assert_eq!(trainable_parameters(&vs), base + 2 * 16 + 2 * 32);
    // b: 1×1 convs 16→32 and 32→64 with BN on their outputs.
    let (vs, _) = build(&cfg(20, Norm::Bn, Shortcut::B), 10);
    assert_eq!(
        trainable_parameters(&vs),
        base + 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64
    );
    // no BN: all BN parameters (2 × channels per BN) go, 4 scalar biases per block come.
    let bn_params = 2 * 16 + 9 * 2 * (2 * 16) / 3 + 3 * 2 * (2 * 32) + 3 * 2 * (2 * 64);
    let (vs, _) = build(&cfg(20, Norm::None, Shortcut::A), 10);
    assert_eq!(trainable_parameters(&vs), base - bn_params + 9 * 4);
    // a shared learnable τ adds one scalar, ReZero one per block.
    let mut c = cfg(20, Norm::None, Shortcut::A);
    c.tau = TauConfig {
        rule: TauRule::InvSqrt,
        learnable: TauLearnable::Shared,
        ..TauConfig::default()
    };
    let (vs, net) = build(&c, 10);
    assert_eq!(trainable_parameters(&vs), base - bn_params + 9 * 4 + 1);
    assert!((net.tau_value() - 1.0 / 3.0).abs() < 1e-6, "τ₀ = 1/√9");
    c.tau.learnable = TauLearnable::Rezero;
    let (vs, net) = build(&c, 10);
    assert_eq!(trainable_parameters(&vs), base - bn_params + 9 * 4 + 9);
    assert_eq!(net.tau_value(), 0.0);
}

#[test]
fn depth_must_be_6n_plus_2() {
    for d in [20, 32, 44, 56, 110, 1202, 8] {
        assert_eq!(blocks_per_stage(d).unwrap(), (d - 2) / 6);
    }
    for d in [0, 2, 19, 21, 52, 100] {
        let e = blocks_per_stage(d).unwrap_err().to_string();
        assert!(
            e.contains(&format!("depth {d}")) && e.contains("6n+2"),
            "{e}"
        );
    }
}

#[test]
fn tau_rules() {
    let t = |rule, c, beta, value| {
        initial_tau(
            &TauConfig {
                rule,
                c,
                beta,
                value,
                learnable: TauLearnable::None,
            },
            54,
        )
    };
    assert_eq!(t(TauRule::One, 1.0, 0.5, 1.0), 1.0);
    assert!((t(TauRule::InvSqrt, 1.0, 0.5, 1.0) - 1.0 / 54f64.sqrt()).abs() < 1e-12);
    assert!((t(TauRule::InvSqrt, 0.5, 0.5, 1.0) - 0.5 / 54f64.sqrt()).abs() < 1e-12);
    assert!((t(TauRule::Inv, 1.0, 0.5, 1.0) - 1.0 / 54.0).abs() < 1e-12);
    assert!((t(TauRule::Power, 1.0, 0.25, 1.0) - 54f64.powf(-0.25)).abs() < 1e-12);
    assert_eq!(t(TauRule::Fixed, 1.0, 0.5, 0.3), 0.3);
}

/// With τ = 0 every block passes its skip path unchanged: h_L is h_0 through the option-A
/// shortcuts alone (subsampled twice, zero channels appended), for BN and for no-BN nets.
#[test]
fn tau_zero_blocks_are_their_skip_path() {
    for norm in [Norm::Bn, Norm::None] {
        let mut c = cfg(20, norm, Shortcut::A);
        c.tau = TauConfig {
            rule: TauRule::Fixed,
            value: 0.0,
            ..TauConfig::default()
        };
        let (_vs, net) = build(&c, 10);
        let x = Tensor::randn([4, 3, 32, 32], (Kind::Float, Device::Cpu));
        let h0 = net.stem_t(&x, false);
        let hl = net.blocks_t(&h0, false);
        let sub = |t: &Tensor| t.slice(2, 0, None, 2).slice(3, 0, None, 2);
        let expected = sub(&sub(&h0)).constant_pad_nd([0, 0, 0, 0, 0, 48]);
        assert_eq!(hl.size(), vec![4, 64, 8, 8]);
        assert!(
            hl.allclose(&expected, 0.0, 0.0, false),
            "{norm:?}: τ = 0 must leave only the skip path"
        );
        // and τ ≠ 0 changes it
        c.tau.value = 0.5;
        let (_vs, net) = build(&c, 10);
        let h0 = net.stem_t(&x, false);
        assert!(!net.blocks_t(&h0, false).allclose(
            &sub(&sub(&h0)).constant_pad_nd([0, 0, 0, 0, 0, 48]),
            1e-3,
            1e-3,
            false
        ));
    }
}

#[test]
fn initialization_follows_the_paper() {
    // Statistics of one seeded draw: no other test may reseed torch's generator meanwhile.
    let _g = serial();
    let (vs, _) = build(&cfg(110, Norm::Bn, Shortcut::A), 10);
    let vars = vs.variables();
    // conv Kaiming normal fan-out: std √(2/(9·out)); pool all stage-3 conv weights (64 channels).
    let w: Vec<Tensor> = vars
        .iter()
        .filter(|(n, t)| {
            n.ends_with("weight") && n.contains("conv") && t.size()[0] == 64 && t.size()[1] == 64
        })
        .map(|(_, t)| t.flatten(0, -1))
        .collect();
    let w = Tensor::cat(&w, 0);
    let std = w.std(true).double_value(&[]);
    let want = (2.0f64 / (9.0 * 64.0)).sqrt();
    assert!((std / want - 1.0).abs() < 0.01, "conv std {std} vs {want}");
    assert!(w.mean(Kind::Float).double_value(&[]).abs() < 2e-3);
    // BN γ = 1, β = 0 (tch's default γ would be Uniform(0, 1))
    for (n, t) in &vars {
        if n.contains("bn") && n.ends_with("weight") {
            assert_eq!(t.min().double_value(&[]), 1.0, "{n}");
            assert_eq!(t.max().double_value(&[]), 1.0, "{n}");
        }
        if n.contains("bn") && n.ends_with("bias") {
            assert_eq!(t.abs().max().double_value(&[]), 0.0, "{n}");
        }
    }
    // The classifier as PyTorch's default nn.Linear: weight and bias uniform in ±1/√64, so
    // bounded by b, reaching near it, with standard deviation b/√3 (a normal or a zero bias
    // fails). 1000 classes, so that the bias has enough entries to tell (tolerances about 7
    // and 11 standard errors of a uniform sample std).
    let (vs, _) = build(&cfg(20, Norm::Bn, Shortcut::A), 1000);
    let vars = vs.variables();
    let b = 1.0 / 8.0;
    for (name, rel) in [("fc.weight", 0.02), ("fc.bias", 0.1)] {
        let t = &vars[name];
        let max = t.abs().max().double_value(&[]);
        assert!(
            max <= b && max > 0.9 * b,
            "{name}: max |w| {max} against {b}"
        );
        let std = t.std(true).double_value(&[]) / (b / 3f64.sqrt());
        assert!((std - 1.0).abs() < rel, "{name}: std / (b/√3) = {std}");
    }
}

/// Every convolution of the τ paper's nets, one tensor at a time: the stem (3 → 16), the
/// stage transitions (16 → 32, 32 → 64) and option B's 1×1 shortcuts included, where
/// PyTorch's `kaiming_normal_(mode="fan_out")` (the τ paper's code) and fan-in differ (a stem
/// std of 0.118 against 0.272; transitions by √2). Tolerance: 5 standard errors of a sample
/// std of n normals, 5/√(2n). Normal, not uniform of that std: the excess kurtosis of all the
/// weights pooled, each divided by its std, is 0 for a normal law and −1.2 for a uniform one
/// (tolerance 0.1, about 10 standard errors at these 270,000 weights).
#[test]
fn every_convolution_is_kaiming_normal_fan_out() {
    // Statistics of one seeded draw: no other test may reseed torch's generator meanwhile.
    let _g = serial();
    for shortcut in [Shortcut::A, Shortcut::B] {
        let (vs, _) = build(&cfg(20, Norm::Bn, shortcut), 10);
        let mut kinds = std::collections::BTreeSet::new();
        let mut pooled = Vec::new();
        for (name, t) in vs.variables() {
            let size = t.size();
            if size.len() != 4 {
                continue;
            }
            let (out, cin, k) = (size[0], size[1], size[2]);
            let n = t.numel() as f64;
            let want = (2.0 / (k * k * out) as f64).sqrt();
            let std = t.std(true).double_value(&[]);
            let tol = 5.0 / (2.0 * n).sqrt();
            assert!(
                (std / want - 1.0).abs() < tol,
                "{shortcut:?} {name} [{out}, {cin}, {k}, {k}]: std {std:.4}, fan-out {want:.4} (fan-in {:.4})",
                (2.0 / (k * k * cin) as f64).sqrt()
            );
            kinds.insert((out, cin, k));
            pooled.push(t.flatten(0, -1).to_kind(Kind::Double) / want);
        }
        let z = Tensor::cat(&pooled, 0);
        let kurtosis = z.pow_tensor_scalar(4).mean(Kind::Double).double_value(&[])
            / z.square().mean(Kind::Double).double_value(&[]).powi(2)
            - 3.0;
        assert!(
            kurtosis.abs() < 0.1,
            "{shortcut:?}: excess kurtosis {kurtosis:.3}"
        );
        // The shapes where fan-in and fan-out differ were all checked.
        for shape in [(16, 3, 3), (32, 16, 3), (64, 32, 3)] {
            assert!(kinds.contains(&shape), "{shortcut:?}: no conv {shape:?}");
        }
        if shortcut == Shortcut::B {
            assert!(kinds.contains(&(32, 16, 1)) && kinds.contains(&(64, 32, 1)));
        }
    }
}

#[test]
fn fixup_init_zeroes_the_second_conv_and_the_classifier() {
    // Statistics of one seeded draw: no other test may reseed torch's generator meanwhile.
    let _g = serial();
    let mut c = cfg(56, Norm::None, Shortcut::A);
    c.init = InitScheme::Fixup;
    let (vs, net) = build(&c, 10);
    let vars = vs.variables();
    let l = 27.0f64;
    for (n, t) in &vars {
        if n.ends_with("conv2.weight") || n.starts_with("fc.") {
            assert_eq!(t.abs().max().double_value(&[]), 0.0, "{n} must be zero");
        }
    }
    let w: Vec<Tensor> = vars
        .iter()
        .filter(|(n, t)| n.ends_with("conv1.weight") && t.size()[0] == 64 && t.size()[1] == 64)
        .map(|(_, t)| t.flatten(0, -1))
        .collect();
    let std = Tensor::cat(&w, 0).std(true).double_value(&[]);
    let want = (2.0f64 / (9.0 * 64.0)).sqrt() / l.sqrt();
    assert!(
        (std / want - 1.0).abs() < 0.02,
        "fixup conv1 std {std} vs {want}"
    );
    // The stem stays at PyTorch's nn.Conv2d default (Fixup's fixup_resnet_cifar.py
    // re-initializes only the blocks and the classifier): uniform in ±1/√(3·3·3), whose std is
    // that bound / √3 (not Kaiming fan-out's √(2/(9·16)) = 0.118).
    let stem = vars["stem.weight"].flatten(0, -1);
    let bound = 1.0 / 27f64.sqrt();
    assert!(stem.abs().max().double_value(&[]) <= bound);
    let stem_std = stem.std(true).double_value(&[]);
    assert!(
        (stem_std / (bound / 3f64.sqrt()) - 1.0).abs() < 0.08,
        "fixup stem std {stem_std} vs {}",
        bound / 3f64.sqrt()
    );
    // Fixup's scalars: 4 biases and a multiplier (initialized to 1) per block, 2 outer biases
    assert!(vars.contains_key("stem_bias") && vars.contains_key("head_bias"));
    let scales: Vec<f64> = vars
        .iter()
        .filter(|(n, _)| n.ends_with(".scale"))
        .map(|(_, t)| t.double_value(&[0]))
        .collect();
    assert_eq!(scales, vec![1.0; 27]);
    assert_eq!(
        vars.iter()
            .filter(|(n, _)| n.contains(".bias1") || n.contains(".bias2"))
            .count(),
        4 * 27
    );
    // a Fixup net's output at init is the classifier bias: zero
    let x = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    assert_eq!(net.forward_t(&x, false).abs().max().double_value(&[]), 0.0);
}

#[test]
fn one_channel_inputs_and_forward_shapes() {
    tch::manual_seed(0);
    let vs = VarStore::new(Device::Cpu);
    let net = ResNet::new(&vs.root(), &cfg(8, Norm::Bn, Shortcut::A), 1, 10).unwrap();
    let y = net.forward_t(
        &Tensor::randn([5, 1, 28, 28], (Kind::Float, Device::Cpu)),
        true,
    );
    assert_eq!(y.size(), vec![5, 10]);
    let vs = VarStore::new(Device::Cpu);
    let net = ResNet::new(&vs.root(), &cfg(8, Norm::None, Shortcut::A), 3, 100).unwrap();
    let y = net.forward_t(
        &Tensor::randn([5, 3, 32, 32], (Kind::Float, Device::Cpu)),
        true,
    );
    assert_eq!(y.size(), vec![5, 100]);
}

#[test]
fn forward_flops_are_the_known_mac_counts() {
    // ResNet-20: 40.55 M multiply-adds, ResNet-110: 252.9 M (the usual CIFAR figures, convs +
    // classifier), FLOPs = 2 × MACs.
    use deepres::model::resnet::forward_flops;
    assert_eq!(forward_flops(20, 3, 10).unwrap(), 2.0 * 40_551_040.0);
    assert_eq!(forward_flops(110, 3, 10).unwrap(), 2.0 * 252_887_680.0);
    assert!(forward_flops(21, 3, 10).is_err());
}
