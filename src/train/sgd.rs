//! SGD with momentum, weight decay and parameter groups, written on tensors so that its
//! momentum buffers go into the checkpoint (tch's optimizer cannot save its state).
//!
//! The update is PyTorch's torch.optim.SGD (dampening 0), done by its fused kernel
//! (torch._fused_sgd_, through [`crate::util::torch_ext`]) once per parameter group:
//!   d = s·g + wd·p;  buf = d (first step) or μ·buf + d;  p -= lr·m · (nesterov ? d + μ·buf : buf)
//! where the group's lr multiplier m and gradient scale s are 1 for ordinary weights,
//! m = scalar_lr_mult for the scalar parameters (τ, scalar biases: the τ paper's lr/10), and
//! s = 1/L for the shared learnable τ (the τ paper divides its gradient by the number of blocks).
//! The groups are the [`ParamGroup`]s the model sets where it makes each parameter.
//!
//! A pack of models ([`crate::model::packed`]) has one [`SgdConfig`] per member
//! ([`Sgd::for_pack`]): each member's rows of every parameter take the fused kernel with its
//! own lr, momentum, weight decay and scalar lr multiplier, exactly the update it would take
//! alone; a frozen member (diverged) takes none. When every member is active with the same
//! settings and rate, one kernel updates all their rows at once (the same numbers: the
//! kernel is elementwise), fp16 aside: there each member's own overflow flag
//! ([`super::loss_scale`]) skips its step alone. For CUDA graphs the rates can live on the
//! device, one tensor per member ([`Sgd::use_lr_tensors`]).
use anyhow::{bail, Result};
use std::collections::HashMap;
use tch::{nn::VarStore, Kind, Tensor};

use super::loss_scale::{self, LossScaler};
use crate::model::packed::member_slice;
use crate::model::resnet::ParamGroup;
use crate::train::config::{Precision, SgdConfig};
use crate::util::torch_ext;

/// One trainable tensor and its optimizer state.
pub struct ParamState {
    pub name: String,
    pub param: Tensor,
    pub momentum: Option<Tensor>,
    pub lr_mult: f64,
    pub grad_scale: f64,
    pub group: ParamGroup,
}

/// One member of a pack: its optimizer settings and whether it still trains.
#[derive(Debug, Clone, Copy)]
pub struct MemberSgd {
    pub cfg: SgdConfig,
    /// False once the member is frozen (it diverged): its rows are left as they are.
    pub active: bool,
}

pub struct Sgd {
    pub cfg: SgdConfig,
    pub params: Vec<ParamState>,
    /// Indices into `params` of each [`ParamGroup`]: one fused kernel call per group (and
    /// member).
    groups: Vec<Vec<usize>>,
    /// The members of a pack (empty: one model, `cfg`).
    pub members: Vec<MemberSgd>,
    /// Per group, the fused kernel's gradient divisor 1/s as a 1-element tensor (None when s = 1).
    divisors: Vec<Option<Tensor>>,
    /// fp16's dynamic loss scaling (None in fp32 and bf16).
    pub scaler: Option<LossScaler>,
    /// The learning rates as 1-element tensors on the device, for CUDA graphs: one model's, or
    /// one per member of a pack. When set, the update reads the rates from them (written by
    /// [`Sgd::set_lr_tensors`] outside the graph) and ignores its arguments.
    lr_tensors: Vec<Tensor>,
}

/// The one SGD setting of `members` when every member is active and has the same settings
/// and learning rate (a pack of seeds, or of BN vs BN + τ): the update is then one kernel per
/// group instead of one per member (kernel launches bound a GPU step at these sizes).
fn uniform(members: &[MemberSgd], lrs: &[f64]) -> Option<SgdConfig> {
    let first = members.first()?;
    let same = members
        .iter()
        .zip(lrs)
        .all(|(m, &lr)| m.active && m.cfg == first.cfg && lr == lrs[0]);
    same.then_some(first.cfg)
}

impl Sgd {
    /// Takes the var store's trainable variables (sorted by name, so the order is
    /// deterministic) with the [`ParamGroup`] each was made in. `num_blocks` is L, the shared
    /// τ's gradient divisor.
    pub fn new(vs: &VarStore, cfg: SgdConfig, num_blocks: i64) -> Sgd {
        let group_of: HashMap<usize, ParamGroup> = {
            let vars = vs.variables_.lock().expect("the var store's lock");
            let trainable = vars.trainable_variables.iter();
            trainable
                .map(|v| {
                    (
                        v.tensor.data_ptr() as usize,
                        ParamGroup::from_index(v.group),
                    )
                })
                .collect()
        };
        let mut named: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let params: Vec<ParamState> = named
            .into_iter()
            .map(|(name, param)| {
                let group = group_of.get(&(param.data_ptr() as usize));
                let group = group.copied().unwrap_or(ParamGroup::Weights);
                let lr_mult = match group {
                    ParamGroup::Weights => 1.0,
                    _ => cfg.scalar_lr_mult,
                };
                let grad_scale = match group {
                    ParamGroup::SharedTau => 1.0 / num_blocks as f64,
                    _ => 1.0,
                };
                ParamState {
                    name,
                    param,
                    momentum: None,
                    lr_mult,
                    grad_scale,
                    group,
                }
            })
            .collect();
        let mut keys: Vec<ParamGroup> = Vec::new();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, p) in params.iter().enumerate() {
            let key = p.group;
            match keys.iter().position(|k| *k == key) {
                Some(g) => groups[g].push(i),
                None => {
                    keys.push(key);
                    groups.push(vec![i]);
                }
            }
        }
        let divisors = groups
            .iter()
            .map(|idx| {
                let p = &params[idx[0]];
                (p.grad_scale != 1.0).then(|| {
                    let dev = p.param.device();
                    Tensor::from_slice(&[(1.0 / p.grad_scale) as f32]).to_device(dev)
                })
            })
            .collect();
        Sgd {
            cfg,
            params,
            groups,
            members: Vec::new(),
            divisors,
            scaler: None,
            lr_tensors: Vec::new(),
        }
    }

    /// Switches to device-side learning rates (see the `lr_tensors` field): one for one model,
    /// one per member of a pack (call after [`Sgd::for_pack`]).
    pub fn use_lr_tensors(&mut self) {
        let dev = self.device();
        self.lr_tensors = (0..self.members.len().max(1))
            .map(|_| Tensor::zeros([1], (Kind::Float, dev)))
            .collect();
    }

    /// Writes `lrs` (one model's rate, or one per member) into the device-side learning
    /// rates (asynchronous fills, no host sync); nothing without them.
    pub fn set_lr_tensors(&mut self, lrs: &[f64]) {
        for (t, &lr) in self.lr_tensors.iter_mut().zip(lrs) {
            let _ = t.fill_(lr);
        }
    }

    /// What this step's update launches depends on besides its tensors: each member's
    /// `active` and whether one kernel updates them all ([`uniform`]); empty for one model.
    /// A CUDA graph captured under one plan is captured again when it changes.
    pub fn plan(&self, lrs: &[f64]) -> Vec<bool> {
        if self.members.is_empty() {
            return Vec::new();
        }
        let mut plan: Vec<bool> = self.members.iter().map(|m| m.active).collect();
        plan.push(self.one_kernel(lrs).is_some());
        plan
    }

    /// [`Sgd::new`], with loss scaling when `precision` is fp16 (on the parameters' device).
    pub fn for_precision(
        vs: &VarStore,
        cfg: SgdConfig,
        num_blocks: i64,
        precision: Precision,
    ) -> Sgd {
        Sgd::new(vs, cfg, num_blocks).with_precision(precision)
    }

    /// This optimizer with loss scaling when `precision` is fp16 (one scale per member of a
    /// pack), on the parameters' device.
    pub fn with_precision(self, precision: Precision) -> Sgd {
        match precision {
            Precision::Fp16 => {
                let dev = self.device();
                self.with_loss_scaling(dev)
            }
            Precision::Fp32 | Precision::Bf16 => self,
        }
    }

    /// The parameters' device (the CPU when there are none).
    fn device(&self) -> tch::Device {
        self.params
            .first()
            .map_or(tch::Device::Cpu, |p| p.param.device())
    }

    /// The members that still train (0 alone for one model).
    fn active(&self) -> Vec<usize> {
        if self.members.is_empty() {
            return vec![0];
        }
        (self.members.iter().enumerate())
            .filter(|(_, m)| m.active)
            .map(|(p, _)| p)
            .collect()
    }

    /// The optimizer of a pack ([`crate::model::packed`]) whose member p trains with
    /// `cfgs[p]`; L = `num_blocks` for all.
    pub fn for_pack(vs: &VarStore, cfgs: &[SgdConfig], num_blocks: i64) -> Sgd {
        let mut opt = Sgd::new(vs, cfgs[0], num_blocks);
        opt.members = cfgs
            .iter()
            .map(|&cfg| MemberSgd { cfg, active: true })
            .collect();
        opt
    }

    /// Each member's ‖g‖₂ over all parameters (raw gradients), `[P]` on the device: no sync,
    /// one launch per parameter tensor for all members ([`torch_ext::member_norms`]).
    pub fn member_grad_norms(&self) -> Tensor {
        let (grads, m) = (self.grads(), self.members.len() as i64);
        if grads.is_empty() {
            return Tensor::zeros([m], (Kind::Float, tch::Device::Cpu));
        }
        let refs: Vec<&Tensor> = grads.iter().collect();
        let norms = torch_ext::member_norms(&refs, m).expect("per-member gradient norms");
        match &self.scaler {
            Some(sc) => sc.mask_overflowed(&norms),
            None => norms,
        }
    }

    /// Turns on fp16's dynamic loss scaling ([`LossScaler`]) on `device`: one scaler, or one
    /// per member of a pack (call after [`Sgd::for_pack`]).
    pub fn with_loss_scaling(mut self, device: tch::Device) -> Sgd {
        let n = self.members.len().max(1) as i64;
        self.scaler = Some(LossScaler::new(device, n));
        self
    }

    /// Backward of `loss` into fresh gradients; with loss scaling, of scale·loss, then the
    /// gradients are unscaled and checked for overflow (no host sync either way).
    pub fn backward(&mut self, loss: &Tensor) {
        assert!(
            self.members.is_empty(),
            "a pack's backward is backward_members"
        );
        self.backward_of(&[(0, loss)]);
    }

    /// A pack's backward: of Σ_p `losses[p]` (`[P]`) over the members still training; with
    /// loss scaling, of Σ_p scale_p·loss_p, then member p's gradient rows unscaled by its own
    /// scale with its own overflow flag.
    pub fn backward_members(&mut self, losses: &Tensor) {
        let active = self.active();
        // Without per-member scales and with every member training, the sum in one reduction;
        // else member by member (a frozen member's loss, maybe NaN, must stay out of it).
        let each: Vec<(usize, Tensor)> =
            if self.scaler.is_none() && active.len() == self.members.len() {
                vec![(0, losses.sum(Kind::Float))]
            } else {
                (active.into_iter())
                    .map(|p| (p, losses.get(p as i64)))
                    .collect()
            };
        let each: Vec<(usize, &Tensor)> = each.iter().map(|(p, l)| (*p, l)).collect();
        self.backward_of(&each);
    }

    fn backward_of(&mut self, losses: &[(usize, &Tensor)]) {
        self.zero_grad();
        let Some(sc) = &self.scaler else {
            let total = losses
                .iter()
                .map(|&(_, l)| l.shallow_clone())
                .reduce(|a, b| a + b);
            total.expect("a member still training").backward();
            return;
        };
        sc.scaled(losses)
            .expect("a member still training")
            .backward();
        let grads = self.grads();
        let members: Vec<usize> = losses.iter().map(|&(p, _)| p).collect();
        let sc = self.scaler.as_mut().expect("loss scaling is on");
        sc.unscale(&grads, &members);
    }

    /// Drops the gradients (set to none, as PyTorch's default `zero_grad`): no kernel launch.
    pub fn zero_grad(&mut self) {
        let ps: Vec<&Tensor> = self.params.iter().map(|p| &p.param).collect();
        torch_ext::clear_grads(&ps).expect("clearing gradients");
    }

    /// The defined gradients (raw: before the group's gradient scale).
    pub fn grads(&self) -> Vec<Tensor> {
        self.params
            .iter()
            .map(|p| p.param.grad())
            .filter(|g| g.defined())
            .collect()
    }

    /// ‖g‖₂ over all parameters (raw gradients), as a 0-dim tensor on the device: no sync.
    pub fn grad_norm(&self) -> Tensor {
        let grads = self.grads();
        if grads.is_empty() {
            return Tensor::zeros([], (Kind::Float, tch::Device::Cpu));
        }
        let refs: Vec<&Tensor> = grads.iter().collect();
        let norm = torch_ext::sum_of_squares(&refs)
            .expect("gradient norm")
            .sqrt();
        match &self.scaler {
            // A skipped (overflowed) step counts as 0, not inf, in the epoch's mean norm.
            Some(sc) => sc.mask_overflowed(&norm),
            None => norm,
        }
    }

    /// One SGD step at learning rate `lr` (see the module doc for the update). With loss
    /// scaling, skipped on the device when the gradients overflowed, and the scale updated.
    pub fn step(&mut self, lr: f64) {
        assert!(self.members.is_empty(), "a pack steps with step_members");
        self.update(&[lr]);
    }

    /// One SGD step of a pack: member p at learning rate `lrs[p]` with its own settings;
    /// frozen members are left alone.
    pub fn step_members(&mut self, lrs: &[f64]) {
        assert_eq!(
            lrs.len(),
            self.members.len(),
            "one learning rate per member"
        );
        self.update(lrs);
    }

    /// The update of every group (see the module doc), per member in a pack.
    fn update(&mut self, lrs: &[f64]) {
        // The fused kernel's calls per group, decided once per step: the whole tensors (one
        // model, or a pack whose members are all active with the same settings and rate:
        // elementwise, so the same numbers), else each active member's rows.
        let calls: Vec<((usize, usize), SgdConfig, f64)> = if self.members.is_empty() {
            vec![((0, 1), self.cfg, lrs[0])]
        } else if let Some(cfg) = self.one_kernel(lrs) {
            vec![((0, 1), cfg, lrs[0])]
        } else {
            let n = self.members.len();
            (self.active().into_iter())
                .map(|i| ((i, n), self.members[i].cfg, lrs[i]))
                .collect()
        };
        // Momentum buffers exist when any member uses momentum.
        let mu = match self.members.is_empty() {
            true => self.cfg.momentum,
            false => self
                .members
                .iter()
                .map(|m| m.cfg.momentum)
                .fold(0.0, f64::max),
        };
        tch::no_grad(|| {
            for g in 0..self.groups.len() {
                // Parameters without a gradient this step are left alone (as PyTorch does);
                // those without a momentum buffer yet take their first step (buf = d).
                // Without momentum there are no buffers: one pass, an empty buffer list.
                let passes: &[bool] = if mu == 0.0 { &[false] } else { &[false, true] };
                for &first in passes {
                    let mut ps = Vec::new();
                    for &i in &self.groups[g] {
                        let p = &mut self.params[i];
                        if !p.param.grad().defined() || (mu != 0.0 && p.momentum.is_none() != first)
                        {
                            continue;
                        }
                        if first {
                            p.momentum = Some(p.param.zeros_like());
                        }
                        ps.push(i);
                    }
                    if ps.is_empty() {
                        continue;
                    }
                    for &(rows, cfg, lr) in &calls {
                        self.fused(g, &ps, rows, cfg, lr, first);
                    }
                }
            }
        });
        let active = self.active();
        if let Some(sc) = &mut self.scaler {
            sc.update(&active);
        }
    }

    /// The one setting that updates every member of a pack in one kernel per group
    /// ([`uniform`]), unless each member has its own loss scale (fp16), whose overflow flag
    /// skips that member's step alone.
    fn one_kernel(&self, lrs: &[f64]) -> Option<SgdConfig> {
        uniform(&self.members, lrs).filter(|_| self.scaler.is_none())
    }

    /// The fused kernel on parameters `ps` of group `g` with `cfg` at `lr`: their rows of
    /// member `m` of `members` in a pack, the whole tensors for one model.
    fn fused(
        &self,
        g: usize,
        ps: &[usize],
        (m, members): (usize, usize),
        cfg: SgdConfig,
        lr: f64,
        first: bool,
    ) {
        let rows = |t: &Tensor| match members {
            1 => t.shallow_clone(),
            n => member_slice(t, n as i64, m as i64),
        };
        let params: Vec<Tensor> = ps.iter().map(|&i| rows(&self.params[i].param)).collect();
        let grads: Vec<Tensor> = ps
            .iter()
            .map(|&i| rows(&self.params[i].param.grad()))
            .collect();
        // A member without momentum takes no buffers (PyTorch's momentum-free kernel).
        let bufs: Vec<Tensor> = match cfg.momentum == 0.0 {
            true => Vec::new(),
            false => ps
                .iter()
                .filter_map(|&i| self.params[i].momentum.as_ref().map(rows))
                .collect(),
        };
        let group = self.params[ps[0]].group;
        let mult = match group {
            ParamGroup::Weights => 1.0,
            _ => cfg.scalar_lr_mult,
        };
        // One model, or the members' common rate: the first; else member m's.
        let lr_t = self.lr_tensors.get(m).map(|t| {
            if mult == 1.0 {
                t.shallow_clone()
            } else {
                t * mult
            }
        });
        let hp = torch_ext::FusedSgd {
            lr: lr * mult,
            momentum: cfg.momentum,
            weight_decay: cfg.weight_decay,
            nesterov: cfg.nesterov,
            first_step: first,
        };
        let found_inf = self.scaler.as_ref().map(|sc| sc.found_inf_of(m));
        fn refs(v: &[Tensor]) -> Vec<&Tensor> {
            v.iter().collect()
        }
        torch_ext::fused_sgd(
            &refs(&params),
            &refs(&grads),
            &refs(&bufs),
            hp,
            lr_t.as_ref(),
            self.divisors[g].as_ref(),
            found_inf.as_ref(),
        )
        .expect("SGD");
    }

    /// The momentum buffers, named `momentum.<param>`, for the checkpoint.
    /// With loss scaling, also `loss_scale.scale` and `loss_scale.growth_tracker`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut state: Vec<(String, Tensor)> = self
            .params
            .iter()
            .filter_map(|p| {
                p.momentum
                    .as_ref()
                    .map(|m| (format!("momentum.{}", p.name), m.shallow_clone()))
            })
            .collect();
        if let Some(sc) = &self.scaler {
            state.push((loss_scale::SCALE.into(), sc.scale.shallow_clone()));
            let tracker = sc.growth_tracker.shallow_clone();
            state.push((loss_scale::TRACKER.into(), tracker));
        }
        state
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
                // In the parameter's memory format (the fused kernel wants matching strides).
                let mut buf = p.param.zeros_like();
                tch::no_grad(|| buf.copy_(m));
                p.momentum = Some(buf);
            } else {
                p.momentum = None;
            }
        }
        if let Some(sc) = &mut self.scaler {
            let dev = sc.scale.device();
            if let Some(t) = saved.get(loss_scale::SCALE) {
                sc.scale = t.to_device(dev).to_kind(Kind::Float).reshape([1]).copy();
            }
            if let Some(t) = saved.get(loss_scale::TRACKER) {
                sc.growth_tracker = t.to_device(dev).to_kind(Kind::Int).reshape([1]).copy();
            }
        }
        Ok(())
    }
}
