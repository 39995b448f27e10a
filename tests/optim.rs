//! The fused SGD step against PyTorch's torch.optim.SGD update written out by hand:
//! d = s·g + wd·p; buf = d (first step) or μ·buf + d; p -= lr·m·(nesterov ? d + μ·buf : buf),
//! with the scalar group's lr multiplier m and the shared τ's gradient scale s = 1/L.
use std::collections::HashMap;
use tch::{nn::VarStore, Device, Kind, Tensor};

use deepres::model::resnet::ParamGroup;
use deepres::train::config::SgdConfig;
use deepres::train::sgd::Sgd;

mod common;
use common::serial;

const L: i64 = 7;

fn run(nesterov: bool, momentum: f64, steps: usize) -> (Vec<Tensor>, Vec<Tensor>) {
    tch::manual_seed(3);
    let vs = VarStore::new(Device::Cpu);
    let root = vs.root();
    let w = root.randn("w", &[4, 3], 0.0, 1.0);
    let b = (&root / "blk")
        .set_group(ParamGroup::Scalar as usize)
        .randn("bias1a", &[1], 0.0, 1.0);
    let tau = root
        .set_group(ParamGroup::SharedTau as usize)
        .randn("tau", &[1], 0.0, 1.0);
    let cfg = SgdConfig {
        lr: 0.1,
        momentum,
        weight_decay: 1e-2,
        nesterov,
        scalar_lr_mult: 0.1,
    };
    let mut opt = Sgd::new(&vs, cfg, L);
    // Reference state in f64: (param, gradient coefficient c, lr mult m, grad scale s).
    let cw = Tensor::randn([4, 3], (Kind::Double, Device::Cpu));
    let cb = Tensor::randn([1], (Kind::Double, Device::Cpu));
    let ct = Tensor::randn([1], (Kind::Double, Device::Cpu));
    let mut refs: Vec<(Tensor, Tensor, f64, f64)> = vec![
        (w.to_kind(Kind::Double), cw.shallow_clone(), 1.0, 1.0),
        (b.to_kind(Kind::Double), cb.shallow_clone(), 0.1, 1.0),
        (
            tau.to_kind(Kind::Double),
            ct.shallow_clone(),
            0.1,
            1.0 / L as f64,
        ),
    ];
    let mut bufs: Vec<Option<Tensor>> = vec![None, None, None];
    for step in 0..steps {
        let lr = 0.1 / (step + 1) as f64;
        // loss = Σ c·p² / 2, so g = c·p.
        let loss = (&w * &w * cw.to_kind(Kind::Float)).sum(Kind::Float) / 2.0
            + (&b * &b * cb.to_kind(Kind::Float)).sum(Kind::Float) / 2.0
            + (&tau * &tau * ct.to_kind(Kind::Float)).sum(Kind::Float) / 2.0;
        opt.zero_grad();
        loss.backward();
        opt.step(lr);
        for (k, (p, c, m, s)) in refs.iter_mut().enumerate() {
            let g = &*c * &*p;
            let d = g * *s + &*p * cfg.weight_decay;
            let upd = if momentum != 0.0 {
                let buf = match &bufs[k] {
                    Some(buf) => buf * momentum + &d,
                    None => d.copy(),
                };
                bufs[k] = Some(buf.shallow_clone());
                if nesterov {
                    &d + buf * momentum
                } else {
                    buf
                }
            } else {
                d
            };
            *p = &*p - upd * (lr * *m);
        }
    }
    let got = vec![w, b, tau];
    (got, refs.into_iter().map(|r| r.0).collect())
}

fn assert_close(got: &[Tensor], want: &[Tensor], what: &str) {
    for (g, w) in got.iter().zip(want) {
        let err = (g.to_kind(Kind::Double) - w).abs().max().double_value(&[]);
        let scale = w.abs().max().double_value(&[]).max(1.0);
        assert!(
            err / scale < 1e-5,
            "{what}: fused SGD differs from the formula by {err}"
        );
    }
}

#[test]
fn fused_sgd_is_torch_sgd_with_groups() {
    let _serial = serial(); // torch\'s generator is global: one test at a time
    for (nesterov, momentum) in [(false, 0.9), (true, 0.9), (false, 0.0)] {
        let (got, want) = run(nesterov, momentum, 4);
        assert_close(
            &got,
            &want,
            &format!("nesterov {nesterov}, momentum {momentum}"),
        );
    }
}

#[test]
fn momentum_survives_a_save_and_load() {
    let _serial = serial(); // torch\'s generator is global: one test at a time
                            // 2 steps, save the buffers, load them into a fresh optimizer on the same parameters:
                            // the next steps equal those of the uninterrupted optimizer.
    tch::manual_seed(5);
    let vs = VarStore::new(Device::Cpu);
    let w = vs.root().randn("w", &[5], 0.0, 1.0);
    let c = Tensor::randn([5], (Kind::Float, Device::Cpu));
    let mut w_view = w.shallow_clone();
    let step = |opt: &mut Sgd| {
        opt.zero_grad();
        (&w * &w * &c).sum(Kind::Float).backward();
        opt.step(0.05);
    };
    let mut a = Sgd::new(&vs, SgdConfig::default(), 1);
    step(&mut a);
    step(&mut a);
    let saved: HashMap<String, Tensor> =
        a.state().into_iter().map(|(k, v)| (k, v.copy())).collect();
    assert_eq!(saved.len(), 1);
    let w_at_2 = w.copy();
    step(&mut a);
    let w_a = w.copy();
    tch::no_grad(|| w_view.copy_(&w_at_2));
    let mut b = Sgd::new(&vs, SgdConfig::default(), 1);
    b.load_state(&saved).unwrap();
    step(&mut b);
    assert!(w.equal(&w_a), "resumed optimizer takes another step");
}

/// A region's state inside and after it, as `torch.autocast("cuda", dtype)` keeps it (it saves
/// the previous on/off and dtype on entry and restores both on exit): on in its dtype inside,
/// a nested region of another dtype gives the outer one its dtype back, a panic inside leaves
/// the region. Read from libtorch's thread-local state, so it needs no GPU; on CPU tensors CUDA
/// autocast changes nothing.
#[test]
fn cuda_autocast_region_restores_the_previous_state() {
    use deepres::util::torch_ext::{cuda_autocast, cuda_autocast_state};
    let before = cuda_autocast_state().unwrap();
    assert!(!before.0, "autocast on outside any region");
    let x = Tensor::ones([2, 2], (Kind::Float, Device::Cpu));
    for (bf16, kind) in [(true, Kind::BFloat16), (false, Kind::Half)] {
        let (inside, y) =
            cuda_autocast(bf16, || (cuda_autocast_state().unwrap(), x.matmul(&x))).unwrap();
        assert_eq!(inside, (true, kind), "bf16 = {bf16}");
        assert_eq!(y.kind(), Kind::Float);
        assert_eq!(y.double_value(&[0, 0]), 2.0);
    }
    let nested = cuda_autocast(false, || {
        let inner = cuda_autocast(true, || cuda_autocast_state().unwrap()).unwrap();
        (inner, cuda_autocast_state().unwrap())
    })
    .unwrap();
    assert_eq!(nested, ((true, Kind::BFloat16), (true, Kind::Half)));
    let caught = std::panic::catch_unwind(|| {
        cuda_autocast(true, || cuda_autocast(false, || panic!("inside")))
    });
    assert!(caught.is_err());
    assert!(
        !cuda_autocast_state().unwrap().0,
        "a panic left autocast on"
    );
}

#[test]
fn a_device_side_learning_rate_gives_the_same_steps() {
    let _serial = serial(); // torch\'s generator is global: one test at a time
                            // The CUDA-graph path reads the rate from a tensor; on CPU it must match the scalar path.
    let run = |tensor_lr: bool| {
        tch::manual_seed(11);
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().randn("w", &[6], 0.0, 1.0);
        let b = (&vs.root() / "blk")
            .set_group(ParamGroup::Scalar as usize)
            .randn("bias1a", &[1], 0.0, 1.0);
        let c = Tensor::randn([6], (Kind::Float, Device::Cpu));
        let mut opt = Sgd::new(&vs, SgdConfig::default(), 3);
        if tensor_lr {
            opt.use_lr_tensors();
        }
        for k in 0..3 {
            let lr = 0.1 / (k + 1) as f64;
            opt.set_lr_tensors(&[lr]);
            opt.zero_grad();
            ((&w * &w * &c).sum(Kind::Float) + (&b * &b).sum(Kind::Float)).backward();
            opt.step(lr);
        }
        (w, b)
    };
    let (w1, b1) = run(false);
    let (w2, b2) = run(true);
    let close = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]) < 1e-6;
    assert!(close(&w1, &w2) && close(&b1, &b2), "{w1} {w2} {b1} {b2}");
}

/// For a real ResNet-14 (n = 2, L = 6) with each τ option, every parameter's learning-rate
/// multiplier and gradient scale, against the papers' training scripts, which choose by name:
/// the τ paper (dayu11/tau-ResNet cifar_train.py) puts names with `bias1`, `bias2` or `tau` at
/// lr/10 and divides τ's gradient by the number of blocks; Fixup (hongyi-zhang/Fixup
/// cifar_train.py) puts every name with `bias` or `scale` at lr/10, its classifier's bias
/// included; ReZero's per-block α follows the scalars (docs/zhang2022.md). tests/oracle.rs
/// checks the resulting steps against torch.optim.SGD itself.
#[test]
fn a_real_resnet_lists_each_parameters_learning_rate_multiplier_and_gradient_scale() {
    let _serial = serial(); // torch's generator is global: one test at a time
    use deepres::model::config::{InitScheme, ModelConfig, Norm, TauConfig, TauLearnable, TauRule};
    use deepres::model::ResNet;
    // (norm, init, τ, expected counts of (scalars at lr/10, shared τ, weights at lr)): the τ
    // paper's unnormalized block has 4 scalar biases; Fixup adds a bias after the stem and
    // before the classifier and one multiplier per block; ReZero one α per block, at lr; every
    // net has 2 convs per block, the stem conv and the classifier's weight and bias (BN: 2 BN
    // layers of 2 per block and the stem's).
    use InitScheme::{Fixup, Kaiming};
    use TauLearnable::{None as Const, Rezero, Shared};
    let cases = [
        (Norm::Bn, Kaiming, Const, (0, 0, 2 * 6 + 3 + 2 * 2 * 6 + 2)),
        (Norm::None, Kaiming, Const, (4 * 6, 0, 2 * 6 + 3)),
        (Norm::None, Kaiming, Shared, (4 * 6, 1, 2 * 6 + 3)),
        (Norm::None, Kaiming, Rezero, (4 * 6, 0, 2 * 6 + 3 + 6)),
        (Norm::None, Fixup, Const, (4 * 6 + 2 + 6 + 1, 0, 2 * 6 + 2)),
    ];
    for (norm, init, learnable, expected_counts) in cases {
        let cfg = ModelConfig {
            depth: 14,
            norm,
            init,
            tau: TauConfig {
                rule: TauRule::InvSqrt,
                learnable,
                ..TauConfig::default()
            },
            ..ModelConfig::default()
        };
        let vs = VarStore::new(Device::Cpu);
        let net = ResNet::new(&vs.root(), &cfg, 3, 10).unwrap();
        assert_eq!(net.num_blocks, 6);
        let opt = Sgd::new(&vs, SgdConfig::default(), net.num_blocks);
        let mut counts = (0, 0, 0);
        for p in &opt.params {
            let last = p.name.rsplit('.').next().unwrap();
            // The papers' rules by the parameter's role (its name is only this test's oracle).
            let expected = match last {
                "tau" => (0.1, 1.0 / 6.0),
                "bias1a" | "bias1b" | "bias2a" | "bias2b" | "stem_bias" | "head_bias" | "scale" => {
                    (0.1, 1.0)
                }
                // ReZero's α trains with the weights (arXiv 2003.04887).
                "rezero" => (1.0, 1.0),
                "bias" if init == Fixup => (0.1, 1.0),
                _ => (1.0, 1.0),
            };
            assert_eq!(
                (p.lr_mult, p.grad_scale),
                expected,
                "{norm:?} {init:?} {learnable:?} {}",
                p.name
            );
            match expected {
                (1.0, _) => counts.2 += 1,
                (_, 1.0) => counts.0 += 1,
                _ => counts.1 += 1,
            }
        }
        assert_eq!(counts, expected_counts, "{norm:?} {init:?} {learnable:?}");
    }
}

/// A pack's update, member by member, equals the single-model update of that member's rows,
/// bit for bit (the fused kernel is elementwise): with every member on the same settings and
/// rate (one kernel on the whole tensors), with a rate per member (one kernel per member),
/// and with a frozen member, whose rows stay as they are. With device-side rates (the CUDA
/// graph's: one tensor per member) the same to fp32 rounding of the rates, the host's
/// arguments then ignored (given 3× the rates here, so reading them fails the test).
#[test]
fn a_pack_steps_each_member_as_it_would_step_alone() {
    let _g = serial();
    const P: i64 = 3;
    let cfg = PACK_SGD;
    tch::manual_seed(11);
    let (w0, b0) = (Tensor::randn([P * 4, 3], FLOAT), Tensor::randn([P], FLOAT));
    let (cw, cb) = (Tensor::randn([P * 4, 3], FLOAT), Tensor::randn([P], FLOAT));
    // The pack: member p owns rows 4p..4p+4 of w and entry p of the scalar b.
    let step_pack = |lrs: &[f64], frozen: Option<usize>, device_lr: bool| {
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var_copy("w", &w0);
        let b = (&vs.root() / "blk")
            .set_group(ParamGroup::Scalar as usize)
            .var_copy("bias1a", &b0);
        let mut opt = Sgd::for_pack(&vs, &[cfg; P as usize], L);
        if let Some(p) = frozen {
            opt.members[p].active = false;
        }
        let host: Vec<f64> = match device_lr {
            true => {
                opt.use_lr_tensors();
                opt.set_lr_tensors(lrs);
                lrs.iter().map(|lr| 3.0 * lr).collect()
            }
            false => lrs.to_vec(),
        };
        for _ in 0..3 {
            let loss = (&w * &w * &cw).sum(Kind::Float) + (&b * &b * &cb).sum(Kind::Float);
            opt.zero_grad();
            loss.backward();
            opt.step_members(&host);
        }
        (w.detach().copy(), b.detach().copy())
    };
    let step_alone = |p: i64, lr: f64| {
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var_copy("w", &w0.narrow(0, 4 * p, 4));
        let b = (&vs.root() / "blk")
            .set_group(ParamGroup::Scalar as usize)
            .var_copy("bias1a", &b0.narrow(0, p, 1));
        let mut opt = Sgd::new(&vs, cfg, L);
        for _ in 0..3 {
            let loss = (&w * &w * cw.narrow(0, 4 * p, 4)).sum(Kind::Float)
                + (&b * &b * cb.narrow(0, p, 1)).sum(Kind::Float);
            opt.zero_grad();
            loss.backward();
            opt.step(lr);
        }
        (w.detach().copy(), b.detach().copy())
    };
    let same = [0.05; P as usize];
    let each = [0.05, 0.02, 0.08];
    let close = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]) < 1e-6;
    for device_lr in [false, true] {
        for (lrs, frozen) in [(&same, None), (&each, None), (&same, Some(1))] {
            let (w, b) = step_pack(lrs, frozen, device_lr);
            for p in 0..P {
                let (w_p, b_p) = match frozen == Some(p as usize) {
                    true => (w0.narrow(0, 4 * p, 4), b0.narrow(0, p, 1)),
                    false => step_alone(p, lrs[p as usize]),
                };
                let (w, b) = (w.narrow(0, 4 * p, 4), b.narrow(0, p, 1));
                let ok = match device_lr {
                    false => w.equal(&w_p) && b.equal(&b_p),
                    true => close(&w, &w_p) && close(&b, &b_p),
                };
                assert!(
                    ok,
                    "member {p} (rates {lrs:?}, frozen {frozen:?}, device rates {device_lr}) differs from its step alone"
                );
            }
        }
    }
}

/// A captured pack step is captured again when its update's plan changes: the plan names
/// each member's `active` and whether one kernel updates them all, and changes with either.
#[test]
fn a_packs_update_plan_changes_with_a_frozen_member_or_parting_rates() {
    let _g = serial();
    let vs = VarStore::new(Device::Cpu);
    let _w = vs.root().var("w", &[6, 2], tch::nn::Init::Const(1.0));
    let mut opt = Sgd::for_pack(&vs, &[SgdConfig::default(); 3], L);
    let base = opt.plan(&[0.1; 3]);
    assert_eq!(base, vec![true, true, true, true]);
    assert_eq!(opt.plan(&[0.1, 0.1, 0.2]), vec![true, true, true, false]);
    opt.members[2].active = false;
    assert_eq!(opt.plan(&[0.1; 3]), vec![true, true, false, false]);
    assert!(Sgd::new(&vs, SgdConfig::default(), L)
        .plan(&[0.1])
        .is_empty());
}

const FLOAT: (Kind, Device) = (Kind::Float, Device::Cpu);

/// The pack tests' SGD: momentum, weight decay and scalars at lr/10, so that each term of the
/// update is exercised.
const PACK_SGD: SgdConfig = SgdConfig {
    lr: 0.1,
    momentum: 0.9,
    weight_decay: 1e-2,
    nesterov: false,
    scalar_lr_mult: 0.1,
};

/// The fp16 pack's problem: 3 members, member p's rows 2p..2p+2 of w and entry p of the scalar
/// b, step k's coefficients `cw[k]` (member 1's overflow at k = 0: 1e35 × 2¹⁶ is beyond fp32).
struct Scaled {
    cfg: SgdConfig,
    w0: Tensor,
    b0: Tensor,
    cw: Vec<Tensor>,
    cb: Tensor,
}

const SP: i64 = 3;

impl Scaled {
    fn new() -> Scaled {
        tch::manual_seed(12);
        let (w0, b0) = (
            Tensor::randn([SP * 2, 3], FLOAT),
            Tensor::randn([SP], FLOAT),
        );
        let cw: Vec<Tensor> = (0..3)
            .map(|k| {
                let c = Tensor::randn([SP * 2, 3], FLOAT);
                if k == 0 {
                    let _ = c.get(2).get(0).fill_(1e35);
                }
                c
            })
            .collect();
        let cfg = PACK_SGD;
        let cb = Tensor::randn([SP], FLOAT);
        Scaled {
            cfg,
            w0,
            b0,
            cw,
            cb,
        }
    }

    /// Entry p of the optimizer's scaler: (scale, growth tracker, found_inf).
    fn scaler(opt: &Sgd, p: i64) -> (f64, i64, f64) {
        let sc = opt.scaler.as_ref().unwrap();
        let (s, t, f) = (&sc.scale, &sc.growth_tracker, &sc.found_inf);
        (
            s.double_value(&[p]),
            t.int64_value(&[p]),
            f.double_value(&[p]),
        )
    }

    /// w, b (rows first..first+rows of w0, entries of b0) as a var store's variables.
    fn vars(&self, vs: &VarStore, (first, n): (i64, i64)) -> (Tensor, Tensor) {
        let w = vs
            .root()
            .var_copy("w", &self.w0.narrow(0, 2 * first, 2 * n));
        let b = (&vs.root() / "blk")
            .set_group(ParamGroup::Scalar as usize)
            .var_copy("bias1a", &self.b0.narrow(0, first, n));
        (w, b)
    }

    /// Member p's loss at step k on its rows `w` and entry `b`.
    fn loss(&self, k: usize, p: i64, w: &Tensor, b: &Tensor) -> Tensor {
        (w * w * self.cw[k].narrow(0, 2 * p, 2)).sum(Kind::Float)
            + (b.square() * self.cb.narrow(0, p, 1)).sum(Kind::Float)
    }

    /// The pack's 3 steps: w, b and each member's scaler after.
    fn pack(&self, lrs: &[f64], frozen: Option<usize>) -> (Tensor, Tensor, Vec<(f64, i64, f64)>) {
        let vs = VarStore::new(Device::Cpu);
        let (w, b) = self.vars(&vs, (0, SP));
        let mut opt =
            Sgd::for_pack(&vs, &[self.cfg; SP as usize], L).with_loss_scaling(Device::Cpu);
        if let Some(p) = frozen {
            opt.members[p].active = false;
        }
        for k in 0..self.cw.len() {
            let losses: Vec<Tensor> = (0..SP)
                .map(|p| self.loss(k, p, &w.narrow(0, 2 * p, 2), &b.narrow(0, p, 1)))
                .collect();
            opt.backward_members(&Tensor::stack(&losses, 0));
            opt.step_members(lrs);
        }
        let state = (0..SP).map(|p| Self::scaler(&opt, p)).collect();
        (w.detach().copy(), b.detach().copy(), state)
    }

    /// Member p's 3 steps alone at `lr` with its own scaler.
    fn alone(&self, p: i64, lr: f64) -> (Tensor, Tensor, (f64, i64, f64)) {
        let vs = VarStore::new(Device::Cpu);
        let (w, b) = self.vars(&vs, (p, 1));
        let mut opt = Sgd::new(&vs, self.cfg, L).with_loss_scaling(Device::Cpu);
        for k in 0..self.cw.len() {
            opt.backward(&self.loss(k, p, &w, &b));
            opt.step(lr);
        }
        (w.detach().copy(), b.detach().copy(), Self::scaler(&opt, 0))
    }
}

/// fp16's loss scaling in a pack: each member has its own scale. Member 1's first gradient
/// overflows: its step is skipped and its scale halved, while members 0 and 2 step and keep
/// theirs; then all step. Every member's rows, scale, growth tracker and overflow flag equal
/// the same member's steps alone with its own scaler, bit for bit, at one rate for all and at
/// a rate each, and a frozen member is left alone.
#[test]
fn a_pack_with_loss_scaling_scales_each_member_as_alone() {
    let _g = serial();
    let fx = Scaled::new();
    let same = [0.05; SP as usize];
    let each = [0.05, 0.02, 0.08];
    for (lrs, frozen) in [(&same, None), (&each, None), (&same, Some(2))] {
        let (w, b, state) = fx.pack(lrs, frozen);
        for p in 0..SP {
            let (rows_w, rows_b) = (w.narrow(0, 2 * p, 2), b.narrow(0, p, 1));
            if frozen == Some(p as usize) {
                let w0 = fx.w0.narrow(0, 2 * p, 2);
                assert!(rows_w.equal(&w0) && rows_b.equal(&fx.b0.narrow(0, p, 1)));
                continue;
            }
            let (w_p, b_p, state_p) = fx.alone(p, lrs[p as usize]);
            assert!(
                rows_w.equal(&w_p) && rows_b.equal(&b_p),
                "member {p} (rates {lrs:?}, frozen {frozen:?}) differs from its steps alone"
            );
            assert_eq!(
                state[p as usize], state_p,
                "member {p}'s scaler (rates {lrs:?})"
            );
        }
        // The closed form of the first step: member 1 skipped it and halved its scale.
        assert_eq!(state[1], (32768.0, 2, 0.0), "member 1 (rates {lrs:?})");
        assert_eq!(state[0], (65536.0, 3, 0.0), "member 0 (rates {lrs:?})");
    }
}

/// A pack's per-member gradient norms (`torch_ext::member_norms`, behind
/// `Sgd::member_grad_norms`): member p's norm over its own rows of every tensor, against the
/// same sum taken in f64 over each member's slice here, for the pack's shapes (a convolution's
/// weight, also channels-last, a batch norm's vector, a per-member scalar, the classifier's
/// matrix). A norm over the wrong rows (a transposed view, channels-last read in logical order
/// as member blocks of memory) or over all members gives other values.
#[test]
fn a_packs_gradient_norms_are_each_members_own() {
    use deepres::model::packed::member_slice;
    use deepres::util::torch_ext::{channels_last, member_norms};
    let m = 3;
    tch::manual_seed(7);
    let conv = Tensor::randn([m * 4, 2, 3, 3], (Kind::Float, Device::Cpu));
    let nhwc = channels_last(&conv).unwrap();
    assert!(
        !nhwc.is_contiguous(),
        "the channels-last copy keeps NCHW's shape, NHWC's strides"
    );
    let ts = [
        conv.shallow_clone(),
        nhwc,
        Tensor::randn([m * 5], (Kind::Float, Device::Cpu)),
        Tensor::randn([m], (Kind::Float, Device::Cpu)),
        Tensor::randn([m * 10, 7], (Kind::Float, Device::Cpu)),
    ];
    let refs: Vec<&Tensor> = ts.iter().collect();
    let got = Vec::<f64>::try_from(member_norms(&refs, m).unwrap().to_kind(Kind::Double)).unwrap();
    assert_eq!(got.len(), m as usize);
    for (p, g) in got.iter().enumerate() {
        let want: f64 = ts
            .iter()
            .map(|t| {
                let rows = member_slice(t, m, p as i64)
                    .to_kind(Kind::Double)
                    .flatten(0, -1);
                Vec::<f64>::try_from(rows)
                    .unwrap()
                    .iter()
                    .map(|v| v * v)
                    .sum::<f64>()
            })
            .sum::<f64>()
            .sqrt();
        assert!(
            (g - want).abs() <= 1e-6 * want,
            "member {p}: {g} against {want}"
        );
    }
}
