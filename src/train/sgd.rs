//! SGD with momentum, weight decay and parameter groups, written on tensors so that its
//! momentum buffers go into the checkpoint (tch's optimizer cannot save its state).
//!
//! The update is PyTorch's torch.optim.SGD (dampening 0):
//!   d = s·g + wd·p;  buf = d (first step) or μ·buf + d;  p -= lr·m · (nesterov ? d + μ·buf : buf)
//! where the group's lr multiplier m and gradient scale s are 1 for ordinary weights,
//! m = scalar_lr_mult for the scalar parameters (τ, scalar biases: the τ paper's lr/10), and
//! s = 1/L for the shared learnable τ (the τ paper divides its gradient by the number of blocks).
use anyhow::{bail, Result};
use std::collections::HashMap;
use tch::{nn::VarStore, Kind, Tensor};

use crate::config::SgdConfig;
use crate::model::resnet::{SCALAR_SUFFIXES, SHARED_TAU_NAME};

/// One trainable tensor and its optimizer state.
pub struct ParamState {
    pub name: String,
    pub param: Tensor,
    pub momentum: Option<Tensor>,
    pub lr_mult: f64,
    pub grad_scale: f64,
}

pub struct Sgd {
    pub cfg: SgdConfig,
    pub params: Vec<ParamState>,
}

impl Sgd {
    /// Groups the var store's trainable variables by name (sorted, so the order is
    /// deterministic). `num_blocks` is L, the shared τ's gradient divisor.
    pub fn new(vs: &VarStore, cfg: SgdConfig, num_blocks: i64) -> Sgd {
        let mut named: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let params = named
            .into_iter()
            .map(|(name, param)| {
                let last = name.rsplit('.').next().unwrap_or(&name);
                let scalar = SCALAR_SUFFIXES.contains(&last);
                let lr_mult = if scalar { cfg.scalar_lr_mult } else { 1.0 };
                let grad_scale = if name == SHARED_TAU_NAME {
                    1.0 / num_blocks as f64
                } else {
                    1.0
                };
                ParamState {
                    name,
                    param,
                    momentum: None,
                    lr_mult,
                    grad_scale,
                }
            })
            .collect();
        Sgd { cfg, params }
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.param.zero_grad();
        }
    }

    /// ‖g‖₂ over all parameters (raw gradients), as a 0-dim tensor on the device: no sync.
    pub fn grad_norm(&self) -> Tensor {
        let sq: Vec<Tensor> = self
            .params
            .iter()
            .map(|p| p.param.grad())
            .filter(|g| g.defined())
            .map(|g| g.square().sum(Kind::Float))
            .collect();
        if sq.is_empty() {
            return Tensor::zeros([], (Kind::Float, tch::Device::Cpu));
        }
        Tensor::stack(&sq, 0).sum(Kind::Float).sqrt()
    }

    /// One SGD step at learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        let (mu, wd, nesterov) = (self.cfg.momentum, self.cfg.weight_decay, self.cfg.nesterov);
        tch::no_grad(|| {
            for p in &mut self.params {
                let g = p.param.grad();
                if !g.defined() {
                    continue;
                }
                let mut d = if p.grad_scale != 1.0 {
                    &g * p.grad_scale
                } else {
                    g.shallow_clone()
                };
                if wd != 0.0 {
                    // Not `+=`: d may share storage with the gradient, which must stay raw.
                    #[allow(clippy::assign_op_pattern)]
                    {
                        d = d + &p.param * wd;
                    }
                }
                let update = if mu != 0.0 {
                    let buf = match &mut p.momentum {
                        Some(buf) => {
                            let _ = buf.g_mul_scalar_(mu).g_add_(&d);
                            buf.shallow_clone()
                        }
                        None => {
                            let buf = d.copy();
                            p.momentum = Some(buf.shallow_clone());
                            buf
                        }
                    };
                    if nesterov {
                        d + buf * mu
                    } else {
                        buf
                    }
                } else {
                    d
                };
                let _ = p.param.g_sub_(&(update * (lr * p.lr_mult)));
            }
        });
    }

    /// The momentum buffers, named `momentum.<param>`, for the checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .filter_map(|p| {
                p.momentum
                    .as_ref()
                    .map(|m| (format!("momentum.{}", p.name), m.shallow_clone()))
            })
            .collect()
    }

    /// Restores buffers saved by [`Sgd::state`]; a buffer of the wrong shape is an error.
    pub fn load_state(&mut self, saved: &HashMap<String, Tensor>) -> Result<()> {
        for p in &mut self.params {
            if let Some(m) = saved.get(&format!("momentum.{}", p.name)) {
                if m.size() != p.param.size() {
                    bail!(
                        "momentum buffer of {} has shape {:?}, the model's is {:?}",
                        p.name,
                        m.size(),
                        p.param.size()
                    );
                }
                p.momentum = Some(m.to_device(p.param.device()).to_kind(p.param.kind()));
            } else {
                p.momentum = None;
            }
        }
        Ok(())
    }
}
