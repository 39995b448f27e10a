//! The CIFAR ResNet-(6n+2) of He et al. (2016): a 3×3 stem, 3 stages of n basic blocks with
//! 16k/32k/64k channels, global average pooling and a linear classifier. L = 3n residual
//! blocks; depth 20/32/44/56/110/1202 ↔ L = 9/15/21/27/54/600.
//!
//! Two block families (Zhang et al. 2022, arXiv:1903.07120; docs/zhang2022.md):
//! - `norm: bn`, the τ paper's BN + τ block (post-activation):
//!   out = relu(x_skip + τ · bn2(conv2(relu(bn1(conv1(x))))))
//! - `norm: none`, the τ paper's unnormalized block (its code, resnet_cifar_nobn.py), scalar
//!   biases around each conv (Fixup style), b2b inside the τ scaling, shortcut of x:
//!   out = relu(x_skip + τ · (conv2(relu(conv1(x + b1a) + b1b) + b2a) + b2b))
//!   and the stem relu(conv(x)), the head fc(avgpool(h)), without biases.
//! - `norm: none, init: fixup`, Fixup's block (Zhang et al. 2019), τ its per-block multiplier:
//!   out = relu(x_skip + τ · conv2(relu(conv1(x + b1a) + b1b) + b2a) + b2b),
//!   x_skip = shortcut(x + b1a), the stem relu(conv(x) + b), the head fc(avgpool(h) + b).
//!
//! τ is a constant, one learnable scalar shared by all blocks, or one per block (ReZero,
//! initialized to 0; Fixup's multiplier, initialized to τ₀ = 1); see [`super::tau`]. It
//! enters in [`BasicBlock::trace`] only, the line `self.tau.scale(&branch)` (a pack's τ_p
//! per member: `PackedBlock`'s forward pass in [`super::packed`]).
use anyhow::{bail, Result};
use tch::nn::{self, ConvConfig, ModuleT};
use tch::Tensor;

use super::init;
use super::tau::{initial_tau, Tau};
use crate::model::config::{InitScheme, ModelConfig, Norm, Shortcut, TauLearnable};

/// n for depth = 6n+2, or a clear error.
/// Multiply-add count ×2 of one forward pass of the width-1 CIFAR ResNet-(6n+2) on a
/// 32×32 input with `in_channels` channels: the 3×3 convolutions (stem 16 channels, stages of
/// 16/32/64 channels at 32², 16², 8²) and the classifier; BN, ReLU, pooling and the option-A
/// shortcuts are a few element-wise operations per activation and are not counted.
pub fn forward_flops(depth: i64, in_channels: i64, classes: i64) -> Result<f64> {
    let n = blocks_per_stage(depth)?;
    let conv = |cin: i64, cout: i64, hw: i64| (9 * cin * cout * hw * hw) as f64;
    let mut macs = conv(in_channels, 16, 32);
    for (i, (c, hw)) in [(16, 32), (32, 16), (64, 8)].into_iter().enumerate() {
        let cin_first = if i == 0 { 16 } else { c / 2 };
        macs += conv(cin_first, c, hw) + conv(c, c, hw); // first block
        macs += (n - 1) as f64 * 2.0 * conv(c, c, hw);
    }
    macs += (64 * classes) as f64;
    Ok(2.0 * macs)
}

pub fn blocks_per_stage(depth: i64) -> Result<i64> {
    if depth < 8 || (depth - 2) % 6 != 0 {
        let below = (((depth - 2) / 6).max(1)) * 6 + 2;
        let near = if below < depth {
            format!("{below} or {}", below + 6)
        } else {
            below.to_string()
        };
        bail!("depth {depth} is not 6n+2 with n ≥ 1 (CIFAR ResNet); use {near} (the papers use 20, 32, 44, 56, 110, 1202)");
    }
    Ok((depth - 2) / 6)
}

/// Batch norm with γ = 1, β = 0 (tch's default γ is Uniform(0, 1): overridden here).
pub(super) fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    let cfg = nn::BatchNormConfig {
        ws_init: init::ONE,
        bs_init: init::ZERO,
        ..Default::default()
    };
    nn::batch_norm2d(p, c, cfg)
}

fn conv(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, ws_init: nn::Init) -> nn::Conv2D {
    grouped_conv(p, (cin, cout, 1), k, stride, ws_init)
}

/// A k×k convolution without bias, padding k/2, `cin` → `cout` channels in `groups` groups
/// (1: an ordinary convolution; the members of a pack, [`super::packed`]).
pub(super) fn grouped_conv(
    p: nn::Path,
    (cin, cout, groups): (i64, i64, i64),
    k: i64,
    stride: i64,
    ws_init: nn::Init,
) -> nn::Conv2D {
    let cfg = ConvConfig {
        stride,
        padding: k / 2,
        bias: false,
        ws_init,
        groups,
        ..Default::default()
    };
    nn::conv2d(p, cin, cout, k, cfg)
}

/// A learnable scalar (shape [1]) of optimizer group `group`.
fn scalar(p: &nn::Path, name: &str, value: f64, group: ParamGroup) -> Tensor {
    scalars(p, name, 1, value, group)
}

/// `n` learnable scalars (shape [n]: one per member of a pack) of optimizer group `group`.
pub(super) fn scalars(p: &nn::Path, name: &str, n: i64, value: f64, group: ParamGroup) -> Tensor {
    p.set_group(group as usize)
        .var(name, &[n], nn::Init::Const(value))
}

/// Downsampling shortcut of a block whose input has `cin` channels, output `cout` (per
/// member in a pack, [`super::packed`]).
#[derive(Debug)]
pub(super) enum ShortcutPath {
    Identity,
    /// Option A: x[:, :, ::2, ::2] and zero channels appended.
    Subsample {
        extra: i64,
    },
    /// The τ paper's code: AvgPool(1, stride 2) = subsampling, then BN, then zero channels.
    SubsampleBn {
        bn: nn::BatchNorm,
        extra: i64,
    },
    /// Option B: 1×1 conv with stride 2, then BN.
    Projection {
        conv: nn::Conv2D,
        bn: nn::BatchNorm,
    },
}

impl ShortcutPath {
    /// The shortcut of x, whose channels are `members` models' (1: a single model) side by
    /// side: option A's zero channels are appended to each member's own.
    pub(super) fn forward_t(&self, x: &Tensor, members: i64, train: bool) -> Tensor {
        let sub = |x: &Tensor| x.slice(2, 0, None, 2).slice(3, 0, None, 2);
        let pad = |x: Tensor, extra: i64| {
            if members == 1 {
                return x.constant_pad_nd([0, 0, 0, 0, 0, extra]);
            }
            let (b, c, h, w) = x.size4().expect("a 4-d activation");
            x.reshape([b, members, c / members, h, w])
                .constant_pad_nd([0, 0, 0, 0, 0, extra])
                .reshape([b, c + members * extra, h, w])
        };
        match self {
            ShortcutPath::Identity => x.shallow_clone(),
            ShortcutPath::Subsample { extra } => pad(sub(x), *extra),
            ShortcutPath::SubsampleBn { bn, extra } => pad(sub(x).apply_t(bn, train), *extra),
            ShortcutPath::Projection { conv, bn } => x.apply(conv).apply_t(bn, train),
        }
    }
}

/// Scalar biases of the unnormalized block (Fixup's bias1a, bias1b, bias2a, bias2b).
#[derive(Debug)]
struct ScalarBiases {
    b1a: Tensor,
    b1b: Tensor,
    b2a: Tensor,
    b2b: Tensor,
}

/// One residual block: conv–(bn)–relu–conv–(bn), scaled by τ, added to the shortcut, relu.
#[derive(Debug)]
pub struct BasicBlock {
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
    /// Batch norms (norm: bn) or scalar biases (norm: none).
    bns: Option<(nn::BatchNorm, nn::BatchNorm)>,
    biases: Option<ScalarBiases>,
    shortcut: ShortcutPath,
    tau: Tau,
    /// Fixup's block (b2b after the multiplier, shortcut of x + b1a) instead of the τ paper's.
    fixup: bool,
}

impl BasicBlock {
    /// The residual branch f(x) that τ scales: bn2(conv2(relu(bn1(conv1(x))))) with BN;
    /// conv2(relu(conv1(x + b1a) + b1b) + b2a) + b2b in the τ paper's unnormalized block (its
    /// code scales b2b too); Fixup's branch stops before b2b, which it adds after the multiplier.
    fn branch(&self, x: &Tensor, train: bool) -> Tensor {
        match (&self.bns, &self.biases) {
            (Some((bn1, bn2)), _) => x
                .apply(&self.conv1)
                .apply_t(bn1, train)
                .relu()
                .apply(&self.conv2)
                .apply_t(bn2, train),
            (None, Some(b)) => {
                let out =
                    (((x + &b.b1a).apply(&self.conv1) + &b.b1b).relu() + &b.b2a).apply(&self.conv2);
                if self.fixup {
                    out
                } else {
                    out + &b.b2b
                }
            }
            (None, None) => unreachable!("a block has batch norms or scalar biases"),
        }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.trace(x, train).out
    }

    /// The block's pieces: its skip path, τ·f(x) and its output.
    pub fn trace(&self, x: &Tensor, train: bool) -> BlockTrace {
        let branch = self.branch(x, train);
        // Fixup downsamples x + b1a; the τ paper's blocks downsample x.
        let skip = match (&self.biases, &self.shortcut) {
            (Some(b), ShortcutPath::Subsample { .. }) if self.fixup => {
                self.shortcut.forward_t(&(x + &b.b1a), 1, train)
            }
            _ => self.shortcut.forward_t(x, 1, train),
        };
        let scaled = self.tau.scale(&branch);
        // out = relu(x_skip + τ · f(x))   [Fixup: relu(x_skip + τ · f(x) + b2b), τ its multiplier]
        let out = &skip + &scaled;
        let out = match (&self.biases, self.fixup) {
            (Some(b), true) => (out + &b.b2b).relu(),
            _ => out.relu(),
        };
        BlockTrace { skip, scaled, out }
    }

    /// τ as this block sees it (reads the device for a learned τ).
    pub fn tau_value(&self) -> f64 {
        self.tau.value()
    }
}

/// One block's forward pass in pieces, for the per-block diagnostics.
#[derive(Debug)]
pub struct BlockTrace {
    /// x_skip: the identity or the downsampling shortcut.
    pub skip: Tensor,
    /// τ · f(x).
    pub scaled: Tensor,
    /// The block's output h_ℓ.
    pub out: Tensor,
}

/// The CIFAR ResNet-(6n+2).
#[derive(Debug)]
pub struct ResNet {
    stem: nn::Conv2D,
    stem_bn: Option<nn::BatchNorm>,
    /// Unnormalized nets: scalar bias after the stem conv and before the classifier (Fixup).
    stem_bias: Option<Tensor>,
    head_bias: Option<Tensor>,
    blocks: Vec<BasicBlock>,
    fc: nn::Linear,
    /// The shared learnable τ, when there is one (read for the CSV's tau column).
    shared_tau: Option<Tensor>,
    /// Number of residual blocks L = 3n.
    pub num_blocks: i64,
    /// τ₀, the rule's value at this L.
    pub tau0: f64,
}

/// The optimizer group of a parameter, set where the parameter is made (tch's
/// `Path::set_group`) and read by [`crate::train::sgd::Sgd`], never guessed from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamGroup {
    /// Convolutions, batch norm, the classifier and ReZero's per-block scalars (ReZero's
    /// paper, arXiv 2003.04887, trains them with the rest): lr.
    Weights = 0,
    /// Scalar biases, Fixup's per-block multipliers, Fixup's classifier bias:
    /// lr × scalar_lr_mult (the τ paper's and Fixup's lr/10).
    Scalar = 1,
    /// The shared learnable τ: lr × scalar_lr_mult, and its gradient divided by L.
    SharedTau = 2,
}

impl ParamGroup {
    /// The group of tch's group number (parameters made without a group are weights).
    pub fn from_index(group: usize) -> ParamGroup {
        match group {
            1 => ParamGroup::Scalar,
            2 => ParamGroup::SharedTau,
            _ => ParamGroup::Weights,
        }
    }
}

/// The name of the shared τ in the var store.
pub const SHARED_TAU_NAME: &str = "tau";

impl ResNet {
    // Long on purpose: it builds the network top to bottom in the order of He et al.'s
    // description (stem, 3 stages of n blocks, head), which a split would scatter.
    /// Builds the net under `p` for images with `in_channels` channels and `classes` classes.
    #[allow(clippy::too_many_lines)]
    pub fn new(p: &nn::Path, cfg: &ModelConfig, in_channels: i64, classes: i64) -> Result<ResNet> {
        let n = blocks_per_stage(cfg.depth)?;
        let l = 3 * n;
        let k = cfg.width;
        let fixup = cfg.init == InitScheme::Fixup;
        let tau0 = initial_tau(&cfg.tau, l);
        let shared_tau = match cfg.tau.learnable {
            TauLearnable::Shared => Some(scalar(p, SHARED_TAU_NAME, tau0, ParamGroup::SharedTau)),
            _ => None,
        };
        let c0 = 16 * k;
        // Fixup's code leaves its stem at PyTorch's default; the τ paper's initializes every conv.
        let stem_init = match fixup {
            true => init::pytorch_default(in_channels * 9),
            false => init::conv_kaiming_fan_out(3, c0),
        };
        let stem = conv(p / "stem", in_channels, c0, 3, 1, stem_init);
        let (stem_bn, stem_bias, head_bias) = match cfg.norm {
            Norm::Bn => (Some(bn(p / "stem_bn", c0)), None, None),
            // Fixup adds a scalar bias after the stem conv and before the classifier; the τ
            // paper's unnormalized net has neither.
            Norm::None if fixup => (
                None,
                Some(scalar(p, "stem_bias", 0.0, ParamGroup::Scalar)),
                Some(scalar(p, "head_bias", 0.0, ParamGroup::Scalar)),
            ),
            Norm::None => (None, None, None),
        };
        let mut blocks = Vec::with_capacity(l as usize);
        let mut cin = c0;
        for stage in 0..3 {
            let cout = c0 << stage;
            for b in 0..n {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                let bp = p / "blocks" / blocks.len();
                let (w1, w2) = if fixup {
                    (init::conv_fixup_first(3, cout, l), init::ZERO)
                } else {
                    (
                        init::conv_kaiming_fan_out(3, cout),
                        init::conv_kaiming_fan_out(3, cout),
                    )
                };
                let conv1 = conv(&bp / "conv1", cin, cout, 3, stride, w1);
                let conv2 = conv(&bp / "conv2", cout, cout, 3, 1, w2);
                let (bns, biases) = match cfg.norm {
                    Norm::Bn => (Some((bn(&bp / "bn1", cout), bn(&bp / "bn2", cout))), None),
                    Norm::None => (
                        None,
                        Some(ScalarBiases {
                            b1a: scalar(&bp, "bias1a", 0.0, ParamGroup::Scalar),
                            b1b: scalar(&bp, "bias1b", 0.0, ParamGroup::Scalar),
                            b2a: scalar(&bp, "bias2a", 0.0, ParamGroup::Scalar),
                            b2b: scalar(&bp, "bias2b", 0.0, ParamGroup::Scalar),
                        }),
                    ),
                };
                let shortcut = if stride == 1 && cin == cout {
                    ShortcutPath::Identity
                } else {
                    match cfg.shortcut {
                        Shortcut::A => ShortcutPath::Subsample { extra: cout - cin },
                        Shortcut::ABn => ShortcutPath::SubsampleBn {
                            bn: bn(&bp / "shortcut_bn", cin),
                            extra: cout - cin,
                        },
                        Shortcut::B => ShortcutPath::Projection {
                            conv: conv(
                                &bp / "shortcut_conv",
                                cin,
                                cout,
                                1,
                                stride,
                                init::conv_kaiming_fan_out(1, cout),
                            ),
                            bn: bn(&bp / "shortcut_bn", cout),
                        },
                    }
                };
                let tau = match (&shared_tau, cfg.tau.learnable) {
                    (Some(t), _) => Tau::Learned(t.shallow_clone()),
                    (None, TauLearnable::Rezero) => {
                        Tau::Learned(scalar(&bp, "rezero", 0.0, ParamGroup::Weights))
                    }
                    // Fixup's per-block scalar multiplier, initialized to τ₀ (1 with rule: one).
                    (None, TauLearnable::None) if fixup => {
                        Tau::Learned(scalar(&bp, "scale", tau0, ParamGroup::Scalar))
                    }
                    _ => Tau::Const(tau0),
                };
                blocks.push(BasicBlock {
                    conv1,
                    conv2,
                    bns,
                    biases,
                    shortcut,
                    tau,
                    fixup,
                });
                cin = cout;
            }
        }
        let fc = if fixup {
            // Fixup: a zero classifier, and its bias in the scalar group (Fixup's training
            // script puts every parameter named `bias` at lr/10, fc.bias included).
            let fc = p / "fc";
            nn::Linear {
                ws: fc.var("weight", &[classes, cin], init::ZERO),
                bs: Some(fc.set_group(ParamGroup::Scalar as usize).var(
                    "bias",
                    &[classes],
                    init::ZERO,
                )),
            }
        } else {
            let cfg = nn::LinearConfig {
                ws_init: init::pytorch_default(cin),
                bs_init: Some(init::pytorch_default(cin)),
                bias: true,
            };
            nn::linear(p / "fc", cin, classes, cfg)
        };
        Ok(ResNet {
            stem,
            stem_bn,
            stem_bias,
            head_bias,
            blocks,
            fc,
            shared_tau,
            num_blocks: l,
            tau0,
        })
    }

    /// h_0: the stem's output (the probe's reference for ‖h_L‖/‖h_0‖).
    pub fn stem_t(&self, x: &Tensor, train: bool) -> Tensor {
        let h = x.apply(&self.stem);
        match (&self.stem_bn, &self.stem_bias) {
            (Some(bn), _) => h.apply_t(bn, train).relu(),
            (None, Some(b)) => (h + b).relu(),
            (None, None) => h.relu(),
        }
    }

    /// The residual blocks, in order (for diagnostics).
    pub fn blocks(&self) -> &[BasicBlock] {
        &self.blocks
    }

    /// h_L from h_0: the L residual blocks.
    pub fn blocks_t(&self, h0: &Tensor, train: bool) -> Tensor {
        self.blocks
            .iter()
            .fold(h0.shallow_clone(), |h, b| b.forward_t(&h, train))
    }

    /// Logits from h_L: global average pooling and the classifier.
    pub fn head_t(&self, h: &Tensor) -> Tensor {
        let pooled = h.mean_dim([2i64, 3].as_slice(), false, h.kind());
        match &self.head_bias {
            Some(b) => (pooled + b).apply(&self.fc),
            None => pooled.apply(&self.fc),
        }
    }

    /// The current value of τ (the shared learnable one, else τ₀; ReZero: the mean over blocks).
    pub fn tau_value(&self) -> f64 {
        if let Some(t) = &self.shared_tau {
            return t.double_value(&[0]);
        }
        let learned: Vec<f64> = self
            .blocks
            .iter()
            .filter(|b| matches!(b.tau, Tau::Learned(_)))
            .map(|b| b.tau.value())
            .collect();
        if learned.is_empty() {
            self.tau0
        } else {
            learned.iter().sum::<f64>() / learned.len() as f64
        }
    }
}

impl ModuleT for ResNet {
    // logits = fc(avgpool(h_L)), h_ℓ = relu(x_skip + τ·f_ℓ(h_{ℓ−1})), h_0 = stem(x)
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let h0 = self.stem_t(x, train);
        let h = self.blocks_t(&h0, train);
        self.head_t(&h)
    }
}

/// Number of trainable scalars in a var store.
pub fn trainable_parameters(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum()
}

/// A one-line-per-stage description of the structure, for `deepres summary`.
pub fn describe(cfg: &ModelConfig, in_channels: i64, classes: i64) -> Result<Vec<String>> {
    let n = blocks_per_stage(cfg.depth)?;
    let k = cfg.width;
    let tau0 = initial_tau(&cfg.tau, 3 * n);
    let norm = match cfg.norm {
        Norm::Bn => "conv-bn-relu-conv-bn",
        Norm::None => "(+b1a) conv (+b1b) relu (+b2a) conv",
    };
    let mut lines = vec![
        format!("ResNet-{} (n = {n}, L = {} residual blocks, width ×{k}, norm {:?}, shortcut {:?}, init {:?})", cfg.depth, 3 * n, cfg.norm, cfg.shortcut, cfg.init),
        format!("τ: rule {:?} → τ₀ = {tau0:.6}, learnable {:?}", cfg.tau.rule, cfg.tau.learnable),
        format!("stem: conv3x3 {in_channels}→{} {}", 16 * k, if cfg.norm == Norm::Bn { "bn relu" } else { "+bias relu" }),
    ];
    for s in 0..3 {
        let c = (16 * k) << s;
        lines.push(format!(
            "stage {}: {n} × block [{norm}] × τ + shortcut, {c} channels{}",
            s + 1,
            if s > 0 { ", first block stride 2" } else { "" }
        ));
    }
    lines.push(format!(
        "head: global average pool, linear {}→{classes}",
        64 * k
    ));
    Ok(lines)
}
