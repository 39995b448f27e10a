//! Recipe options of the anchors' training scripts, as batched tensor operations on the
//! device: mixup (Fixup's cifar_train.py and utils.mixup_data: one λ ~ Beta(α, α) per batch,
//! a random permutation of the batch as the partner, the loss λ·CE(y_a) + (1 − λ)·CE(y_b) and
//! the accuracy λ·[ŷ = y_a] + (1 − λ)·[ŷ = y_b]) and label smoothing ε. Cutout, an input
//! augmentation, lives with the others in [`crate::data::loader`].
use anyhow::{bail, Result};
use tch::{Kind, Reduction, Tensor};

use super::config::{CudaGraph, RunConfig};

/// What a step's loss is taken against.
pub struct Targets {
    /// The labels (int64 `[batch]`); with mixup, y_a.
    pub y: Tensor,
    /// Mixup's partner labels y_b = `y[π]` and λ (a 0-dim tensor on the device).
    pub mix: Option<(Tensor, Tensor)>,
    /// Label smoothing ε (0: none).
    pub smoothing: f64,
}

impl Targets {
    /// Plain labels: the cross-entropy as ever.
    pub fn hard(y: &Tensor) -> Targets {
        Targets {
            y: y.shallow_clone(),
            mix: None,
            smoothing: 0.0,
        }
    }

    pub fn len(&self) -> i64 {
        self.y.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn ce(&self, logits: &Tensor, y: &Tensor) -> Tensor {
        if self.smoothing == 0.0 {
            logits.cross_entropy_for_logits(y)
        } else {
            logits.cross_entropy_loss::<Tensor>(y, None, Reduction::Mean, -100, self.smoothing)
        }
    }

    /// The mean loss of the batch.
    pub fn loss(&self, logits: &Tensor) -> Tensor {
        match &self.mix {
            None => self.ce(logits, &self.y),
            Some((y_b, lam)) => self.ce(logits, &self.y) * lam + self.ce(logits, y_b) * (1.0 - lam),
        }
    }

    /// The number of correct predictions (mixup: weighted by λ and 1 − λ).
    pub fn correct(&self, logits: &Tensor) -> Tensor {
        let pred = logits.argmax(-1, false);
        let right = |y: &Tensor| pred.eq_tensor(y).sum(Kind::Float);
        match &self.mix {
            None => right(&self.y),
            Some((y_b, lam)) => right(&self.y) * lam + right(y_b) * (1.0 - lam),
        }
    }
}

/// A pack's members' mean losses and numbers right, `[P]` each, from its logits
/// `[P, batch, classes]` against `targets[p]`: one cross-entropy over the P·batch rows, one
/// argmax and one comparison when every member takes plain labels with the same ε (the same
/// values as member by member, in a handful of launches however many members); else member by
/// member
/// ([`Targets::loss`], [`Targets::correct`]).
pub fn member_losses(logits: &Tensor, targets: &[Targets]) -> (Tensor, Tensor) {
    let eps = targets[0].smoothing;
    if targets
        .iter()
        .any(|t| t.mix.is_some() || t.smoothing != eps)
    {
        let each = |f: &dyn Fn(&Targets, &Tensor) -> Tensor| {
            let v: Vec<Tensor> = (targets.iter().enumerate())
                .map(|(p, t)| f(t, &logits.get(p as i64)))
                .collect();
            Tensor::stack(&v, 0)
        };
        return (each(&Targets::loss), each(&Targets::correct));
    }
    let (p, b, k) = logits
        .size3()
        .expect("a pack's logits are [P, batch, classes]");
    let ys: Vec<&Tensor> = targets.iter().map(|t| &t.y).collect();
    let y = Tensor::stack(&ys, 0);
    // ℓ_p = (1/batch) Σ_i CE_ε(logits[p, i], y[p, i])
    let loss = logits
        .reshape([p * b, k])
        .cross_entropy_loss::<Tensor>(&y.reshape([-1]), None, Reduction::None, -100, eps)
        .view([p, b])
        .mean_dim(1, false, Kind::Float);
    let right = logits.argmax(-1, false).eq_tensor(&y);
    (loss, right.sum_dim_intlist(1, false, Kind::Float))
}

/// λ ~ Beta(α, α) as a 0-dim float tensor on `device`: X/(X + Y) with X, Y ~ Gamma(α, 1)
/// (torch's generator, so seeded with the epoch like the augmentation).
pub fn beta_sample(alpha: f64, device: tch::Device) -> Tensor {
    let a = Tensor::full([2], alpha, (Kind::Float, device));
    let g = a.internal_standard_gamma();
    (g.get(0) / g.sum(Kind::Float)).to_kind(Kind::Float)
}

/// The targets of labels `y` under `cfg`'s recipe without mixup: hard labels with its label
/// smoothing.
pub fn targets(cfg: &RunConfig, y: &Tensor) -> Targets {
    Targets {
        smoothing: cfg.train.label_smoothing.unwrap_or(0.0),
        ..Targets::hard(y)
    }
}

/// The batch (x, y) as the recipe trains on it: mixed when mixup is on.
pub fn prepare(cfg: &RunConfig, x: Tensor, y: &Tensor) -> (Tensor, Targets) {
    let Some(alpha) = cfg.train.mixup_alpha else {
        return (x, targets(cfg, y));
    };
    let b = y.size()[0];
    let lam = beta_sample(alpha, x.device());
    let perm = Tensor::randperm(b, (Kind::Int64, x.device()));
    let mixed = &x * &lam + x.index_select(0, &perm) * (1.0 - &lam);
    let mix = Some((y.index_select(0, &perm), lam));
    (
        mixed,
        Targets {
            mix,
            ..targets(cfg, y)
        },
    )
}

/// `train.mixup_alpha`, `train.label_smoothing`, `data.augment.cutout`: one line each.
pub fn validate(cfg: &RunConfig) -> Result<()> {
    let t = &cfg.train;
    if let Some(a) = t.mixup_alpha.filter(|a| !(a.is_finite() && *a > 0.0)) {
        bail!("train.mixup_alpha: must be a positive number (Fixup trains with 1.0; leave the key out for no mixup), got {a}");
    }
    if let Some(e) = t.label_smoothing.filter(|e| !(*e >= 0.0 && *e < 1.0)) {
        bail!("train.label_smoothing: must be in [0, 1) (0.1 is usual), got {e}");
    }
    if let Some(s) = cfg.data.augment.cutout.filter(|s| *s < 1) {
        bail!("data.augment.cutout: the square's side must be ≥ 1 pixel (16 for CIFAR-10 in the Cutout paper), got {s}");
    }
    if t.mixes_labels() && t.cuda_graph == CudaGraph::On {
        bail!("train.cuda_graph: not with train.mixup_alpha or train.label_smoothing (the captured step takes plain labels); turn one off (or say auto: graphs where they can run)");
    }
    if t.cuda_graph == CudaGraph::On && !crate::train::graph::training_verified() {
        use crate::train::graph::{TRAINING_GRAPH_ENV, UNVERIFIED};
        bail!("{UNVERIFIED} ({TRAINING_GRAPH_ENV}=1 runs it anyway, for the GPU checks that look for the cause)");
    }
    Ok(())
}

/// The cutout square must fit the images (known once the data is loaded).
pub fn check_cutout(cfg: &RunConfig, height: i64, width: i64) -> Result<()> {
    match cfg.data.augment.cutout {
        Some(s) if s > height.min(width) => bail!(
            "data.augment.cutout: {s} is larger than the {height}×{width} images of {}; use at most {}",
            cfg.data.name,
            height.min(width)
        ),
        _ => Ok(()),
    }
}
