//! deepres's CIFAR ResNet under the names and layouts of the public PyTorch codes, so that its
//! weights load into their model classes with `load_state_dict(strict=True)`, and theirs into
//! deepres:
//! - `tau-paper`: the τ paper's code (Zhang et al. 2022, arXiv:1903.07120; dayu11/tau-ResNet,
//!   cifar/models/resnet_cifar.py with BN and the `a-bn` shortcut, resnet_cifar_nobn.py without
//!   BN, shortcut A and the shared `tau`, which its state dict also lists under every block);
//! - `akamaster`: akamaster/pytorch_resnet_cifar10's resnet.py (BN, option A, no τ, the
//!   classifier named `linear`). Its option A pads the new channels on both sides of the
//!   subsampled ones (`F.pad(..., planes//4, planes//4)`) where deepres appends them, so the
//!   channels of stages 2 and 3 are permuted on the way: the functions are equal, not the
//!   tensors' order.
//!
//! Batch norms carry PyTorch's `num_batches_tracked` (0: deepres does not count; it only
//! matters for a BN with momentum None).
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

use super::config::{InitScheme, ModelConfig, Norm, Shortcut, TauLearnable};
use super::resnet::blocks_per_stage;
use super::tau::initial_tau;

/// A public code whose model classes deepres's weights load into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The τ paper's resnet_cifar.py / resnet_cifar_nobn.py.
    TauPaper,
    /// akamaster/pytorch_resnet_cifar10's resnet.py.
    Akamaster,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::TauPaper => "tau-paper",
            Format::Akamaster => "akamaster",
        }
    }
}

/// Ok when `cfg` has a counterpart in `fmt`'s code, else the option that has none.
pub fn check(cfg: &ModelConfig, fmt: Format) -> Result<()> {
    let f = fmt.name();
    if cfg.width != 1 {
        bail!(
            "model.width {} has no counterpart in the {f} code (width 1 only)",
            cfg.width
        );
    }
    if cfg.init == InitScheme::Fixup {
        bail!("init: fixup has no counterpart in the {f} code (Fixup's own code names its scale and biases differently)");
    }
    if cfg.tau.learnable == TauLearnable::Rezero {
        bail!("tau.learnable: rezero has no counterpart in the {f} code (one τ per block)");
    }
    let blocks = 3 * blocks_per_stage(cfg.depth)?;
    match (fmt, cfg.norm, cfg.shortcut) {
        (Format::TauPaper, Norm::Bn, Shortcut::ABn) | (Format::TauPaper, Norm::None, Shortcut::A) => Ok(()),
        (Format::TauPaper, Norm::Bn, s) => bail!("shortcut {s:?} with BN has no counterpart in the tau-paper code (resnet_cifar.py uses a-bn)"),
        (Format::TauPaper, Norm::None, s) => bail!("shortcut {s:?} without BN has no counterpart in the tau-paper code (resnet_cifar_nobn.py uses a)"),
        (Format::Akamaster, Norm::None, _) => bail!("norm: none has no counterpart in the akamaster code (BN only)"),
        (Format::Akamaster, Norm::Bn, s) if s != Shortcut::A => bail!("shortcut {s:?} has no counterpart in the exported akamaster model (option A only)"),
        (Format::Akamaster, Norm::Bn, _) => {
            let tau = initial_tau(&cfg.tau, blocks);
            if cfg.tau.learnable != TauLearnable::None || tau != 1.0 {
                bail!("τ = {tau} has no counterpart in the akamaster code (no τ; use --format tau-paper)");
            }
            Ok(())
        }
    }
}

/// Where a deepres tensor goes: its name there, and the dimension whose channels are permuted
/// with which stage's permutation (akamaster's residual streams of stages 2 and 3).
struct Target {
    name: String,
    permute: Option<(i64, usize)>,
}

/// For stage s, deepres channel c ↔ akamaster channel perm[s][c] (see the module doc).
fn akamaster_perms() -> [Vec<i64>; 3] {
    let mut perms: [Vec<i64>; 3] = [(0..16).collect(), vec![], vec![]];
    for s in 1..3 {
        let planes = 16i64 << s;
        let (cin, pad) = (planes / 2, planes / 4);
        let mut p: Vec<i64> = perms[s - 1].iter().map(|c| c + pad).collect();
        p.extend((0..pad).chain(pad + cin..planes));
        perms[s] = p;
    }
    perms
}

/// The counterpart of deepres's tensor `name` in a net with n blocks per stage.
fn target(fmt: Format, name: &str, n: i64) -> Result<Target> {
    let parts: Vec<&str> = name.split('.').collect();
    let plain = |name: String| Target {
        name,
        permute: None,
    };
    let rest = |from: usize| parts[from..].join(".");
    Ok(match parts[0] {
        "stem" => plain(format!("conv1.{}", rest(1))),
        "stem_bn" => plain(format!("bn1.{}", rest(1))),
        "tau" if fmt == Format::TauPaper => plain("tau".into()),
        "fc" if fmt == Format::TauPaper => plain(name.into()),
        "fc" => Target {
            name: format!("linear.{}", rest(1)),
            permute: (parts[1] == "weight").then_some((1, 2)),
        },
        "blocks" => {
            let k: i64 = parts[1].parse()?;
            let (stage, b) = ((k / n) as usize, k % n);
            let layer = format!("layer{}.{b}", stage + 1);
            let leaf = rest(2);
            let input_stage = if b == 0 && stage > 0 {
                stage - 1
            } else {
                stage
            };
            let permute = match (fmt, parts[2]) {
                (Format::TauPaper, _) => None,
                (_, "conv1") => Some((1, input_stage)),
                (_, "conv2") | (_, "bn2") => Some((0, stage)),
                _ => None,
            };
            match parts[2] {
                "shortcut_bn" => plain(format!("{layer}.downsample.1.{}", rest(3))),
                _ => Target {
                    name: format!("{layer}.{leaf}"),
                    permute,
                },
            }
        }
        _ => bail!(
            "tensor {name} has no counterpart in the {} code",
            fmt.name()
        ),
    })
}

/// deepres's model tensors (`vars`, by deepres name) as `fmt`'s state dict.
pub fn export(
    cfg: &ModelConfig,
    fmt: Format,
    vars: &BTreeMap<String, Tensor>,
) -> Result<Vec<(String, Tensor)>> {
    check(cfg, fmt)?;
    let n = blocks_per_stage(cfg.depth)?;
    let perms = akamaster_perms();
    let mut out = Vec::new();
    for (name, t) in vars {
        let tg = target(fmt, name, n)?;
        let t = match tg.permute {
            // there[perm[c]] = here[c]: gather with the inverse permutation
            Some((dim, s)) => t.index_select(dim, &Tensor::from_slice(&inverse(&perms[s]))),
            None => t.shallow_clone(),
        };
        if tg.name.ends_with("running_var") {
            let nbt = tg.name.replace("running_var", "num_batches_tracked");
            out.push((nbt, Tensor::from_slice(&[0i64]).reshape([0i64; 0])));
        }
        out.push((tg.name, t));
    }
    if fmt == Format::TauPaper && cfg.norm == Norm::None {
        // resnet_cifar_nobn.py: one `tau` Parameter, listed again under every block.
        let tau = match vars.get("tau") {
            Some(t) => t.shallow_clone(),
            None => Tensor::from_slice(&[initial_tau(&cfg.tau, 3 * n) as f32]),
        };
        for k in 0..3 * n {
            out.push((format!("layer{}.{}.tau", k / n + 1, k % n), tau.copy()));
        }
        if !vars.contains_key("tau") {
            out.push(("tau".into(), tau));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// `fmt`'s state dict as deepres's tensors for the model `expected` (deepres name → shape);
/// a missing or an extra name is an error that names it.
pub fn import(
    cfg: &ModelConfig,
    fmt: Format,
    state: &BTreeMap<String, Tensor>,
    expected: &BTreeMap<String, Vec<i64>>,
) -> Result<BTreeMap<String, Tensor>> {
    check(cfg, fmt)?;
    let n = blocks_per_stage(cfg.depth)?;
    let perms = akamaster_perms();
    let mut used = std::collections::BTreeSet::new();
    let mut out = BTreeMap::new();
    for (name, shape) in expected {
        let tg = target(fmt, name, n)?;
        let Some(t) = state.get(&tg.name) else {
            bail!(
                "has no tensor {} (deepres's {name}): not a {} state dict of this model",
                tg.name,
                fmt.name()
            );
        };
        used.insert(tg.name.clone());
        let t = match tg.permute {
            Some((dim, s)) => t.index_select(dim, &Tensor::from_slice(&perms[s])),
            None => t.shallow_clone(),
        };
        if t.size() != *shape {
            bail!(
                "tensor {} has shape {:?}, deepres's {name} needs {shape:?}",
                tg.name,
                t.size()
            );
        }
        out.insert(name.clone(), t.to_kind(Kind::Float));
    }
    let per_block_tau = |k: &str| k.starts_with("layer") && k.ends_with(".tau");
    let extra: Vec<&String> = state
        .keys()
        .filter(|k| !used.contains(*k) && !k.ends_with("num_batches_tracked") && !per_block_tau(k))
        .collect();
    if let Some(k) = extra.first() {
        bail!(
            "has tensor {k}, which the {} model of this config does not have ({} extra)",
            fmt.name(),
            extra.len()
        );
    }
    Ok(out)
}

fn inverse(perm: &[i64]) -> Vec<i64> {
    let mut inv = vec![0; perm.len()];
    for (c, &p) in perm.iter().enumerate() {
        inv[p as usize] = c as i64;
    }
    inv
}
