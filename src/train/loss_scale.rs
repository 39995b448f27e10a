//! fp16's dynamic loss scaling (PyTorch's GradScaler, defaults 2¹⁶, ×2 after 2000 clean steps,
//! ×½ on overflow), entirely on the device: the loss is multiplied by the scale before
//! backward, the gradients are unscaled in place with an overflow flag, and a step whose
//! gradients overflowed is skipped by the fused SGD kernel itself ([`super::sgd`]).
//!
//! A pack of P models ([`super::pack`]) has P scalers in one: entry p of each tensor is member
//! p's, and member p's gradient rows are unscaled by its own scale, with its own flag, so each
//! member skips, halves and grows exactly as it would alone.
use tch::{Kind, Tensor};

use crate::model::packed::member_slice;
use crate::util::torch_ext;

/// The scaler's state: one entry for one model, one per member of a pack.
pub struct LossScaler {
    /// The current scales (fp32).
    pub scale: Tensor,
    /// Clean steps since the last change (int32).
    pub growth_tracker: Tensor,
    /// 1 when this step's gradients had an inf or NaN (fp32).
    pub found_inf: Tensor,
}

/// Entry `p` of a scaler tensor: a 1-element view, as AMP's kernels want.
fn entry(t: &Tensor, p: i64) -> Tensor {
    t.narrow(0, p, 1)
}

impl LossScaler {
    pub const INIT_SCALE: f32 = 65536.0;
    pub const GROWTH_INTERVAL: i64 = 2000;

    /// `members` scalers (1 for one model) on `device`, at the initial scale.
    pub fn new(device: tch::Device, members: i64) -> LossScaler {
        LossScaler {
            scale: Tensor::full(
                [members],
                f64::from(Self::INIT_SCALE),
                (Kind::Float, device),
            ),
            growth_tracker: Tensor::zeros([members], (Kind::Int, device)),
            found_inf: Tensor::zeros([members], (Kind::Float, device)),
        }
    }

    fn members(&self) -> i64 {
        self.scale.size()[0]
    }

    /// What to differentiate: Σ scale_p · loss_p over `losses` ((member, its loss)).
    pub fn scaled(&self, losses: &[(usize, &Tensor)]) -> Option<Tensor> {
        (losses.iter())
            .map(|&(p, l)| l * entry(&self.scale, p as i64))
            .reduce(|a, b| a + b)
    }

    /// Unscales `grads` in place, member p's rows by 1/scale_p for each p of `members`, setting
    /// found_inf_p when any of them is inf or NaN (no host sync).
    pub fn unscale(&mut self, grads: &[Tensor], members: &[usize]) {
        let _ = self.found_inf.zero_();
        let inv = self.scale.reciprocal();
        let n = self.members();
        for &p in members {
            let rows: Vec<Tensor> = match n {
                1 => grads.iter().map(Tensor::shallow_clone).collect(),
                _ => grads.iter().map(|g| member_slice(g, n, p as i64)).collect(),
            };
            let refs: Vec<&Tensor> = rows.iter().collect();
            let (found, inv) = (entry(&self.found_inf, p as i64), entry(&inv, p as i64));
            torch_ext::unscale_(&refs, &found, &inv).expect("unscaling gradients");
        }
    }

    /// Member `p`'s overflow flag for the fused kernel (all of it for one model).
    pub fn found_inf_of(&self, p: usize) -> Tensor {
        entry(&self.found_inf, p as i64)
    }

    /// `norms` (one per entry) with an overflowed step's norm counted as 0, not inf.
    pub fn mask_overflowed(&self, norms: &Tensor) -> Tensor {
        let ok = self.found_inf.eq(0.0).reshape(norms.size());
        norms.where_self(&ok, &norms.zeros_like())
    }

    /// After the step: each of `members`' scales halves on overflow, doubles after
    /// [`Self::GROWTH_INTERVAL`] clean steps.
    pub fn update(&mut self, members: &[usize]) {
        for &p in members {
            let p = p as i64;
            let _ = entry(&self.scale, p).internal_amp_update_scale_(
                &entry(&self.growth_tracker, p),
                &entry(&self.found_inf, p),
                2.0,
                0.5,
                Self::GROWTH_INTERVAL,
            );
        }
    }

    /// Member `p`'s scale and growth tracker under their checkpoint names (1 element each).
    pub fn member_state(&self, p: usize) -> [(String, Tensor); 2] {
        [
            (SCALE.into(), entry(&self.scale, p as i64)),
            (TRACKER.into(), entry(&self.growth_tracker, p as i64)),
        ]
    }

    /// Sets member `p`'s scale and growth tracker from a checkpoint's (those present), in place.
    pub fn load_member(&mut self, p: usize, saved: &std::collections::HashMap<String, Tensor>) {
        let p = p as i64;
        tch::no_grad(|| {
            if let Some(t) = saved.get(SCALE) {
                entry(&self.scale, p).copy_(&t.reshape([1]));
            }
            if let Some(t) = saved.get(TRACKER) {
                entry(&self.growth_tracker, p).copy_(&t.reshape([1]));
            }
        });
    }
}

/// The checkpoint names of a scaler's state (one model's [`super::sgd::Sgd::state`] and each
/// member's of a pack).
pub const SCALE: &str = "loss_scale.scale";
pub const TRACKER: &str = "loss_scale.growth_tracker";
