//! FullResNet of Marion et al. (2022, arXiv:2206.06929), many independent models at once:
//! h_0 = A x, h_{k+1} = h_k + L^-β V_{k+1} relu(W_{k+1} h_k), k = 0..L−1, output B h_L.
//!
//! Shapes (`models` models, width d, depth L, a batch of `inputs` inputs per model): A
//! `[models, d, d_in]`, W and V `[models, L, d, d]` (the depth's weights as one tensor), B
//! `[models, d_out, d]`, hidden states `[models, inputs, d]`. Every layer is one batched matmul
//! over the `models` models. The scale α_L = L^-β is a tensor broadcast against
//! `[models, inputs, 1]`, so one pass can hold several β (one per input row).
//! A and B are uniform ±√(3/fan_in) (the authors' code), W and V follow a [`LayerInit`].
use tch::{Device, Kind, Tensor};

use super::scale::residual_scale;
use super::weight_init::{layer_weights, LayerInit};

/// Uniform ±√(3/fan_in) matrices `[models, d_out, d_in]`.
pub fn uniform_matrix(models: i64, d_out: i64, d_in: i64, device: Device) -> Tensor {
    let mut t = Tensor::empty([models, d_out, d_in], (Kind::Float, device));
    uniform_fan_in_(&mut t);
    t
}

/// Redraws matrices `[.., d_out, d_in]` in place, uniform ±√(3/fan_in) with fan_in = d_in
/// (the authors' A and B).
pub fn uniform_fan_in_(t: &mut Tensor) {
    let bound = (3.0 / *t.size().last().expect("a matrix") as f64).sqrt();
    tch::no_grad(|| {
        let _ = t.uniform_(-bound, bound);
    });
}

/// The residual scale α_L = L^-β ([`residual_scale`]) as a scalar tensor.
pub fn depth_scale(depth: i64, beta: f64, device: Device) -> Tensor {
    Tensor::from(residual_scale(depth, beta) as f32).to_device(device)
}

/// `models` FullResNets of the same depth L and width d.
#[derive(Debug)]
pub struct FullResNet {
    /// A: `[models, d, d_in]`.
    pub a: Tensor,
    /// W_1..W_L: `[models, L, d, d]`.
    pub w: Tensor,
    /// V_1..V_L: `[models, L, d, d]`.
    pub v: Tensor,
    /// B: `[models, d_out, d]`.
    pub b: Tensor,
}

impl FullResNet {
    /// `models` random models; W and V drawn independently from `init`.
    pub fn new(
        models: i64,
        depth: i64,
        width: i64,
        d_in: i64,
        d_out: i64,
        init: LayerInit,
        device: Device,
    ) -> FullResNet {
        FullResNet {
            a: uniform_matrix(models, width, d_in, device),
            w: layer_weights(init, models, depth, width, width, device),
            v: layer_weights(init, models, depth, width, width, device),
            b: uniform_matrix(models, d_out, width, device),
        }
    }

    /// Depth L.
    pub fn depth(&self) -> i64 {
        self.w.size()[1]
    }

    /// h_0 = A x: x `[inputs, d_in]` (shared by the models) or `[models, inputs, d_in]` → `[models, inputs, d]`.
    pub fn embed(&self, x: &Tensor) -> Tensor {
        x.matmul(&self.a.transpose(-1, -2))
    }

    /// h_L from h_0 `[models, inputs, d]` with scale α_L (broadcast against
    /// `[models, inputs, 1]`); when `masks` is given, pushes relu′(W_{k+1} h_k) of every layer
    /// (bool) for [`Self::hidden_grad`].
    pub fn hidden(
        &self,
        h0: &Tensor,
        scale: &Tensor,
        mut masks: Option<&mut Vec<Tensor>>,
    ) -> Tensor {
        let mut h = h0.shallow_clone();
        // One unbind per weight tensor, not a select per layer: autograd then stacks the
        // layers' gradients once instead of adding L full-size `[models, L, d, d]` zero-padded ones.
        let (ws, vs) = (self.w.unbind(1), self.v.unbind(1));
        for (w, v) in ws.iter().zip(&vs) {
            let pre = h.matmul(&w.transpose(-1, -2));
            if let Some(m) = masks.as_deref_mut() {
                m.push(pre.gt(0.0));
            }
            // h_{k+1} = h_k + L^-β V_{k+1} relu(W_{k+1} h_k)
            h = &h + pre.relu().matmul(&v.transpose(-1, -2)) * scale;
        }
        h
    }

    /// ∂ℓ/∂h_0 from g_L = ∂ℓ/∂h_L by the backward recursion
    /// g_k = g_{k+1} + α_L W_{k+1}ᵀ (relu′(W_{k+1} h_k) ⊙ V_{k+1}ᵀ g_{k+1}), with the masks of
    /// [`Self::hidden`] (no autograd).
    pub fn hidden_grad(&self, g_l: &Tensor, scale: &Tensor, masks: &[Tensor]) -> Tensor {
        let mut g = g_l.shallow_clone();
        for k in (0..self.depth()).rev() {
            let w = self.w.select(1, k);
            let v = self.v.select(1, k);
            let u = g.matmul(&v) * masks[k as usize].to_kind(g.kind());
            g = &g + u.matmul(&w) * scale;
        }
        g
    }

    /// Output B h_L: `[models, inputs, d_out]`.
    pub fn output(&self, h_l: &Tensor) -> Tensor {
        h_l.matmul(&self.b.transpose(-1, -2))
    }

    /// B h_L for inputs x, with autograd (training).
    pub fn forward(&self, x: &Tensor, scale: &Tensor) -> Tensor {
        self.output(&self.hidden(&self.embed(x), scale, None))
    }
}
