//! SimpleResNet of Marion et al. (2022, arXiv:2206.06929), many independent models at once:
//! h_0 = A x, h_{k+1} = h_k + L^-β (V_{k+1} relu(h_k) + b_{k+1}), output B h_L.
//!
//! Shapes as in [`super::full_resnet`]: A `[models, d, d_in]`, V `[models, L, d, d]`, biases
//! b `[models, L, d]` (zero at initialization, as in the authors' code), B `[models, d_out, d]`.
//! As in the authors' models.py, only fBm-initialized layers have a bias (nn.Linear with a zero
//! bias that trains); the i.i.d. and smooth ones have none (bias=False): their b is multiplied
//! by 0 in the forward pass, so it gets a zero gradient and stays 0 under Adam.
use tch::{Device, Kind, Tensor};

use super::full_resnet::uniform_matrix;
use super::weight_init::{layer_weights, LayerInit};

/// `models` SimpleResNets of the same depth L and width d.
#[derive(Debug)]
pub struct SimpleResNet {
    /// A: `[models, d, d_in]`.
    pub a: Tensor,
    /// V_1..V_L: `[models, L, d, d]`.
    pub v: Tensor,
    /// b_1..b_L: `[models, L, d]`.
    pub bias: Tensor,
    /// `[models, 1, 1]`: 1 where a model has biases (fBm init), 0 where it has none; None when
    /// every model has them (M9: the forward pass then has no mask to apply).
    pub bias_on: Option<Tensor>,
    /// B: `[models, d_out, d]`.
    pub b: Tensor,
}

impl SimpleResNet {
    /// `models` random models; V drawn from `init`, biases zero.
    pub fn new(
        models: i64,
        depth: i64,
        width: i64,
        d_in: i64,
        d_out: i64,
        init: LayerInit,
        device: Device,
    ) -> SimpleResNet {
        SimpleResNet {
            a: uniform_matrix(models, width, d_in, device),
            v: layer_weights(init, models, depth, width, width, device),
            bias: Tensor::zeros([models, depth, width], (Kind::Float, device)),
            bias_on: bias_on(&vec![init; models as usize], device),
            b: uniform_matrix(models, d_out, width, device),
        }
    }

    /// Depth L.
    pub fn depth(&self) -> i64 {
        self.v.size()[1]
    }

    /// h_0 = A x → `[models, inputs, d]`.
    pub fn embed(&self, x: &Tensor) -> Tensor {
        x.matmul(&self.a.transpose(-1, -2))
    }

    /// h_L from h_0 `[models, inputs, d]`; `masks` collects relu′(h_k) for [`Self::hidden_grad`].
    pub fn hidden(
        &self,
        h0: &Tensor,
        scale: &Tensor,
        mut masks: Option<&mut Vec<Tensor>>,
    ) -> Tensor {
        let mut h = h0.shallow_clone();
        // One unbind per tensor, not a select per layer (see FullResNet::hidden).
        let bias = match &self.bias_on {
            Some(on) => &self.bias * on,
            None => self.bias.shallow_clone(),
        };
        let (vs, bs) = (self.v.unbind(1), bias.unbind(1));
        for (v, b) in vs.iter().zip(&bs) {
            let b = b.unsqueeze(1);
            if let Some(m) = masks.as_deref_mut() {
                m.push(h.gt(0.0));
            }
            // h_{k+1} = h_k + L^-β (V_{k+1} relu(h_k) + b_{k+1})
            h = &h + (h.relu().matmul(&v.transpose(-1, -2)) + b) * scale;
        }
        h
    }

    /// ∂ℓ/∂h_0 from g_L: g_k = g_{k+1} + α_L relu′(h_k) ⊙ V_{k+1}ᵀ g_{k+1} (no autograd).
    pub fn hidden_grad(&self, g_l: &Tensor, scale: &Tensor, masks: &[Tensor]) -> Tensor {
        let mut g = g_l.shallow_clone();
        for k in (0..self.depth()).rev() {
            let v = self.v.select(1, k);
            g = &g + g.matmul(&v) * masks[k as usize].to_kind(g.kind()) * scale;
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

/// [`SimpleResNet::bias_on`] for models drawn from `inits`: 1 for fBm, 0 for i.i.d. and smooth;
/// None when all are fBm.
pub fn bias_on(inits: &[LayerInit], device: Device) -> Option<Tensor> {
    let has_bias = |i: &LayerInit| i.fbm().is_some();
    if inits.iter().all(has_bias) {
        return None;
    }
    let on: Vec<f32> = inits
        .iter()
        .map(|i| f32::from(u8::from(has_bias(i))))
        .collect();
    Some(Tensor::from_slice(&on).view([-1, 1, 1]).to_device(device))
}
