//! P CIFAR ResNets of one architecture as one network ("many models as one program", a
//! pack): the members of a pack, each a [`ResNet`](super::resnet::ResNet) with its own
//! weights and its own residual scale τ_p, stacked along channels so that one forward and one
//! backward pass train them all.
//!
//! Layout: an activation of the pack is `[batch, P·C, H, W]`, member p's channels the block
//! p·C..(p+1)·C. Every convolution is one grouped convolution with groups = P (weight
//! `[P·C_out, C_in, k, k]`, member p's kernel the rows p·C_out..(p+1)·C_out), so member p's
//! output channels see only its own input channels; batch norm runs over P·C channels, so its
//! batch statistics and running statistics are per channel, hence per member; option A's zero
//! channels are appended per member; the classifier is one batched matmul
//! `[P, batch, C] × [P, C, classes]`. The input is `[batch, P·C_in, H, W]` with member p's
//! own images in its channels (each member sees the batches it would see alone:
//! [`stack_inputs`]); the logits are `[P, batch, classes]`.
//!
//! τ (Zhang et al. 2022, docs/zhang2022.md) is per member: a constant τ_p = the rule's value
//! at L = 3n blocks (BN and BN + τ differ only there; τ = 1 is the plain block), or learnable
//! per member (the shared τ: one scalar per member; ReZero and Fixup: one per member and
//! block). Members share everything else of `model:` ([`check_packable`]).
//!
//! Names: every variable has its single model's name (`stem.weight`, `blocks.3.bn1.running_mean`,
//! `fc.weight`, `tau`, …) and is the members' tensors concatenated along dim 0: member p's are
//! the rows p·n..(p+1)·n, n the single model's first dimension (a scalar `[1]` becomes `[P]`,
//! the classifier's `[classes, C]` becomes `[P·classes, C]`). [`load_member`] and
//! [`member_slice`] convert both ways; the optimizer's momentum buffers follow the same rule,
//! so a member can be checkpointed and resumed alone.
use anyhow::{bail, Context, Result};
use tch::nn::{self, ModuleT, VarStore};
use tch::{Device, Tensor};

use super::config::{InitScheme, ModelConfig, Norm, Shortcut, TauConfig, TauLearnable};
use super::init;
use super::resnet::{
    blocks_per_stage, bn, grouped_conv, scalars, ParamGroup, ShortcutPath, SHARED_TAU_NAME,
};
use super::tau::initial_tau;

/// Checks that `cfgs` can train as one pack: the same `model:` but for τ's rule and constants
/// (depth, width, norm, shortcut, init and τ's learnability must match). One line naming the
/// first member that differs.
pub fn check_packable(cfgs: &[ModelConfig]) -> Result<()> {
    let Some(first) = cfgs.first() else {
        bail!("a pack needs at least one model");
    };
    let arch = |c: &ModelConfig| ModelConfig {
        tau: TauConfig {
            learnable: c.tau.learnable,
            ..TauConfig::default()
        },
        ..c.clone()
    };
    if let Some(i) = cfgs.iter().position(|c| arch(c) != arch(first)) {
        bail!(
            "model: member {i} of the pack differs from member 0 in more than τ's rule (depth, width, norm, shortcut, init and tau.learnable must be equal); pack it separately"
        );
    }
    Ok(())
}

/// `f(x, t)` with member p's value `t[p]` (`t` `[P]`) on its channels of `x` `[batch, P·C, H, W]`:
/// a broadcast over the `[batch, P, C, H, W]` view of x, so that neither the forward pass nor the
/// backward copies t per channel (as a single model's scalar bias broadcasts: two launches
/// fewer per use and step than [`per_channel`]).
fn per_member(x: &Tensor, t: &Tensor, f: impl Fn(&Tensor, &Tensor) -> Tensor) -> Tensor {
    let (b, pc, h, w) = x
        .size4()
        .expect("a pack's activation is [batch, P·C, H, W]");
    let p = t.size()[0];
    f(&x.view([b, p, pc / p, h, w]), &t.view([p, 1, 1, 1])).reshape([b, pc, h, w])
}

/// x + t_p on member p's channels ([`per_member`]).
fn plus(x: &Tensor, t: &Tensor) -> Tensor {
    per_member(x, t, |x, t| x + t)
}

/// t_p · x on member p's channels ([`per_member`]).
fn times(x: &Tensor, t: &Tensor) -> Tensor {
    per_member(x, t, |x, t| x * t)
}

/// `t` `[P]` repeated per channel: `[1, P·c, 1, 1]`, member p's value on its c channels.
fn per_channel(t: &Tensor, c: i64) -> Tensor {
    let p = t.size()[0];
    t.view([p, 1])
        .expand([p, c], false)
        .reshape([1, p * c, 1, 1])
}

/// The members' constant τ_p as `[P]` on `device`.
fn const_taus(taus: &[f64], device: Device) -> Tensor {
    let v: Vec<f32> = taus.iter().map(|&t| t as f32).collect();
    Tensor::from_slice(&v).to_device(device)
}

/// τ of one block, per member.
#[derive(Debug)]
enum PackedTau {
    /// Constant τ_p per channel `[1, P·C, 1, 1]`; None when every τ_p = 1.
    Const(Option<Tensor>),
    /// Learnable `[P]` (the shared τ, or this block's ReZero or Fixup scalars).
    Learned(Tensor),
}

/// One residual block of every member ([`super::resnet::BasicBlock`], per member).
#[derive(Debug)]
struct PackedBlock {
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
    bns: Option<(nn::BatchNorm, nn::BatchNorm)>,
    /// b1a, b1b, b2a, b2b, each `[P]` (norm: none).
    biases: Option<[Tensor; 4]>,
    shortcut: ShortcutPath,
    tau: PackedTau,
    fixup: bool,
}

impl PackedBlock {
    /// The block on the pack's activation x `[batch, P·C, H, W]`, member by member.
    // out_p = relu(x_skip,p + τ_p · f_p(x_p))   [Fixup: relu(x_skip + τ_p · f(x) + b2b)]
    fn forward_t(&self, x: &Tensor, members: i64, train: bool) -> Tensor {
        let branch = match (&self.bns, &self.biases) {
            (Some((bn1, bn2)), _) => x
                .apply(&self.conv1)
                .apply_t(bn1, train)
                .relu()
                .apply(&self.conv2)
                .apply_t(bn2, train),
            (None, Some([b1a, b1b, b2a, b2b])) => {
                let h = plus(x, b1a).apply(&self.conv1);
                let out = plus(&plus(&h, b1b).relu(), b2a).apply(&self.conv2);
                if self.fixup {
                    out
                } else {
                    plus(&out, b2b)
                }
            }
            (None, None) => unreachable!("a block has batch norms or scalar biases"),
        };
        let skip = match (&self.biases, &self.shortcut) {
            (Some([b1a, ..]), ShortcutPath::Subsample { .. }) if self.fixup => {
                self.shortcut.forward_t(&plus(x, b1a), members, train)
            }
            _ => self.shortcut.forward_t(x, members, train),
        };
        // out = relu(x_skip + τ_p · f(x)), member by member
        let scaled = match &self.tau {
            PackedTau::Const(None) => branch,
            PackedTau::Const(Some(t)) => branch * t,
            PackedTau::Learned(t) => times(&branch, t),
        };
        let out = skip + scaled;
        match (&self.biases, self.fixup) {
            (Some([.., b2b]), true) => plus(&out, b2b).relu(),
            _ => out.relu(),
        }
    }
}

/// P CIFAR ResNet-(6n+2)s of one architecture as one network (see the module doc).
#[derive(Debug)]
pub struct PackedResNet {
    /// P, the number of members.
    pub members: i64,
    stem: nn::Conv2D,
    stem_bn: Option<nn::BatchNorm>,
    /// Fixup's scalar biases after the stem and before the classifier, `[P]` each.
    stem_bias: Option<Tensor>,
    head_bias: Option<Tensor>,
    blocks: Vec<PackedBlock>,
    /// `[P·classes, C]` and `[P·classes]`.
    fc_w: Tensor,
    fc_b: Tensor,
    classes: i64,
    /// The shared learnable τ, `[P]`, when the members have one.
    shared_tau: Option<Tensor>,
    /// Number of residual blocks L = 3n.
    pub num_blocks: i64,
    /// τ₀ of each member, the rule's value at this L.
    pub tau0: Vec<f64>,
}

impl PackedResNet {
    // Long on purpose: it builds the network in the order of ResNet::new (stem, 3 stages of n
    // blocks, head), which it mirrors line for line with P members.
    /// Builds a pack of `cfgs.len()` members under `p` (weights zero: load them with
    /// [`load_member`]) for images with `in_channels` channels and `classes` classes.
    #[allow(clippy::too_many_lines)]
    pub fn new(
        p: &nn::Path,
        cfgs: &[ModelConfig],
        in_channels: i64,
        classes: i64,
    ) -> Result<PackedResNet> {
        check_packable(cfgs)?;
        let cfg = &cfgs[0];
        let m = cfgs.len() as i64;
        let n = blocks_per_stage(cfg.depth)?;
        let l = 3 * n;
        let fixup = cfg.init == InitScheme::Fixup;
        let tau0: Vec<f64> = cfgs.iter().map(|c| initial_tau(&c.tau, l)).collect();
        let var = |p: &nn::Path, name: &str, g: ParamGroup| scalars(p, name, m, 0.0, g);
        let shared_tau = (cfg.tau.learnable == TauLearnable::Shared)
            .then(|| var(p, SHARED_TAU_NAME, ParamGroup::SharedTau));
        let zero = init::ZERO;
        let conv = |p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64| {
            grouped_conv(p, (m * cin, m * cout, m), k, stride, zero)
        };
        let c0 = 16 * cfg.width;
        let stem = conv(p / "stem", in_channels, c0, 3, 1);
        let (stem_bn, stem_bias, head_bias) = match cfg.norm {
            Norm::Bn => (Some(bn(p / "stem_bn", m * c0)), None, None),
            Norm::None if fixup => (
                None,
                Some(var(p, "stem_bias", ParamGroup::Scalar)),
                Some(var(p, "head_bias", ParamGroup::Scalar)),
            ),
            Norm::None => (None, None, None),
        };
        let const_tau = |c: i64| {
            (tau0.iter().any(|&t| t != 1.0)).then(|| per_channel(&const_taus(&tau0, p.device()), c))
        };
        let mut blocks = Vec::with_capacity(l as usize);
        let mut cin = c0;
        for stage in 0..3 {
            let cout = c0 << stage;
            for b in 0..n {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                let bp = p / "blocks" / blocks.len();
                let bns = (cfg.norm == Norm::Bn)
                    .then(|| (bn(&bp / "bn1", m * cout), bn(&bp / "bn2", m * cout)));
                let biases = (cfg.norm == Norm::None).then(|| {
                    ["bias1a", "bias1b", "bias2a", "bias2b"]
                        .map(|b| var(&bp, b, ParamGroup::Scalar))
                });
                let shortcut = match cfg.shortcut {
                    _ if stride == 1 && cin == cout => ShortcutPath::Identity,
                    Shortcut::A => ShortcutPath::Subsample { extra: cout - cin },
                    Shortcut::ABn => ShortcutPath::SubsampleBn {
                        bn: bn(&bp / "shortcut_bn", m * cin),
                        extra: cout - cin,
                    },
                    Shortcut::B => ShortcutPath::Projection {
                        conv: conv(&bp / "shortcut_conv", cin, cout, 1, stride),
                        bn: bn(&bp / "shortcut_bn", m * cout),
                    },
                };
                let tau = match (&shared_tau, cfg.tau.learnable) {
                    (Some(t), _) => PackedTau::Learned(t.shallow_clone()),
                    (None, TauLearnable::Rezero) => {
                        PackedTau::Learned(var(&bp, "rezero", ParamGroup::Weights))
                    }
                    (None, TauLearnable::None) if fixup => {
                        PackedTau::Learned(var(&bp, "scale", ParamGroup::Scalar))
                    }
                    _ => PackedTau::Const(const_tau(cout)),
                };
                blocks.push(PackedBlock {
                    conv1: conv(&bp / "conv1", cin, cout, 3, stride),
                    conv2: conv(&bp / "conv2", cout, cout, 3, 1),
                    bns,
                    biases,
                    shortcut,
                    tau,
                    fixup,
                });
                cin = cout;
            }
        }
        let fc = p / "fc";
        let fc_w = fc.var("weight", &[m * classes, cin], zero);
        // Fixup's classifier bias trains at lr/10 (its script's `bias` parameters).
        let bias_group = if fixup {
            ParamGroup::Scalar
        } else {
            ParamGroup::Weights
        };
        let fc_b = fc
            .set_group(bias_group as usize)
            .var("bias", &[m * classes], zero);
        Ok(PackedResNet {
            members: m,
            stem,
            stem_bn,
            stem_bias,
            head_bias,
            blocks,
            fc_w,
            fc_b,
            classes,
            shared_tau,
            num_blocks: l,
            tau0,
        })
    }

    /// Logits `[P, batch, classes]` from h_L `[batch, P·C, H, W]`: global average pooling and each
    /// member's classifier, one batched matmul.
    fn head_t(&self, h: &Tensor) -> Tensor {
        let (b, pc) = (h.size()[0], h.size()[1]);
        let (m, c) = (self.members, pc / self.members);
        let pooled = h
            .mean_dim([2i64, 3].as_slice(), false, h.kind())
            .view([b, m, c]);
        let pooled = match &self.head_bias {
            Some(hb) => pooled + hb.view([1, m, 1]),
            None => pooled,
        };
        let w = self.fc_w.view([m, self.classes, c]).transpose(1, 2);
        self.fc_b
            .view([m, 1, self.classes])
            .baddbmm(&pooled.transpose(0, 1), &w, 1.0, 1.0)
    }

    /// Each member's current τ: its shared learnable one, else τ₀; ReZero and Fixup: the mean
    /// over blocks (as [`super::resnet::ResNet::tau_value`]).
    pub fn tau_values(&self) -> Vec<f64> {
        let read = |t: &Tensor| Vec::<f64>::try_from(t.to_kind(tch::Kind::Double)).expect("τ");
        if let Some(t) = &self.shared_tau {
            return read(t);
        }
        let learned: Vec<Vec<f64>> = self
            .blocks
            .iter()
            .filter_map(|b| match &b.tau {
                PackedTau::Learned(t) => Some(read(t)),
                PackedTau::Const(_) => None,
            })
            .collect();
        if learned.is_empty() {
            return self.tau0.clone();
        }
        (0..self.members as usize)
            .map(|p| learned.iter().map(|v| v[p]).sum::<f64>() / learned.len() as f64)
            .collect()
    }
}

impl ModuleT for PackedResNet {
    /// x `[batch, P·C_in, H, W]` (member p's images in its channels) → logits
    /// `[P, batch, classes]`.
    // per member p: logits = fc(avgpool(h_L)), h_ℓ = relu(x_skip + τ_p·f_ℓ(h_{ℓ−1})), h_0 = stem(x)
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let h = x.apply(&self.stem);
        let h = match (&self.stem_bn, &self.stem_bias) {
            (Some(bn), _) => h.apply_t(bn, train).relu(),
            (None, Some(b)) => plus(&h, b).relu(),
            (None, None) => h.relu(),
        };
        let h = self
            .blocks
            .iter()
            .fold(h, |h, b| b.forward_t(&h, self.members, train));
        self.head_t(&h)
    }
}

/// The members' batches `[batch, C, H, W]` as the pack's input `[batch, P·C, H, W]`.
pub fn stack_inputs(xs: &[Tensor]) -> Tensor {
    Tensor::cat(xs, 1)
}

/// The members' batches made as one, `x` `[P·batch, C, H, W]` (member p's the p-th block of
/// `batch`), as the pack's input `[batch, P·C, H, W]`: [`stack_inputs`] of the blocks, in one
/// copy.
pub fn stack_batches(x: &Tensor, members: i64) -> Tensor {
    let (n, c, h, w) = x.size4().expect("a batch is [N, C, H, W]");
    let b = n / members;
    x.view([members, b, c, h, w])
        .transpose(0, 1)
        .reshape([b, members * c, h, w])
}

/// The same images for every member (evaluation): x `[batch, C, H, W]` → `[batch, P·C, H, W]`.
pub fn repeat_input(x: &Tensor, members: i64) -> Tensor {
    x.repeat([1, members, 1, 1])
}

/// Member `member`'s part of a pack's tensor `t` (its rows of dim 0, a view).
pub fn member_slice(t: &Tensor, members: i64, member: i64) -> Tensor {
    let rows = t.size()[0] / members;
    t.narrow(0, member * rows, rows)
}

/// Copies a single model's variables (`single`: name → tensor, as [`VarStore::variables`])
/// into member `member` of the pack `pack` of `members` members. Every variable must be
/// there under the same name, with the pack's shape.
pub fn load_member(
    pack: &VarStore,
    members: i64,
    member: i64,
    single: &std::collections::HashMap<String, Tensor>,
) -> Result<()> {
    let vars = pack.variables();
    if vars.len() != single.len() {
        bail!(
            "the single model has {} variables, the pack {}: not the same architecture",
            single.len(),
            vars.len()
        );
    }
    tch::no_grad(|| {
        for (name, t) in single {
            let v = vars
                .get(name)
                .with_context(|| format!("{name}: not a variable of the pack"))?;
            let mut dst = member_slice(v, members, member);
            if dst.size() != t.size() {
                bail!(
                    "{name}: shape {:?} in the single model, {:?} per member in the pack",
                    t.size(),
                    dst.size()
                );
            }
            dst.copy_(t);
        }
        Ok(())
    })
}

/// Member `member`'s variables of a pack (`pack`: name → tensor), as its single model names
/// and shapes them (copies).
pub fn member_tensors(
    pack: &std::collections::HashMap<String, Tensor>,
    members: i64,
    member: i64,
) -> std::collections::HashMap<String, Tensor> {
    pack.iter()
        .map(|(k, t)| (k.clone(), member_slice(t, members, member).copy()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `plus` and `times` put member p's value on its C channels and nowhere else, in the
    /// default and the channels-last layout: against t repeated per channel and broadcast,
    /// and against the value written out here for one entry.
    #[test]
    fn a_members_value_lands_on_its_own_channels() {
        tch::manual_seed(3);
        let t = Tensor::from_slice(&[0.5f32, -2.0, 3.0]);
        let x = Tensor::randn([2, 3 * 4, 5, 5], (tch::Kind::Float, Device::Cpu));
        let nhwc = crate::util::torch_ext::channels_last(&x).unwrap();
        for x in [&x, &nhwc] {
            let want_plus = x + per_channel(&t, 4);
            assert!(plus(x, &t).equal(&want_plus));
            assert!(times(x, &t).equal(&(x * per_channel(&t, 4))));
            // channel 9 is member 2's (channels 8..12): x + 3
            let (a, b) = (
                plus(x, &t).double_value(&[1, 9, 2, 3]),
                x.double_value(&[1, 9, 2, 3]),
            );
            assert!((a - (b + 3.0)).abs() < 1e-6, "{a} against {b} + 3");
        }
    }
}
