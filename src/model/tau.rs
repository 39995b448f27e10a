//! The residual scale τ: its value from a rule of the number of residual blocks L, and the
//! form in which it enters each block (a constant, one shared learnable scalar, or one
//! learnable scalar per block).
use crate::model::config::{TauConfig, TauRule};
use crate::model::scale::residual_scale;
use tch::Tensor;

/// τ₀ = the rule's value at L residual blocks: 1, c/√L, c/L, L^(-β) or a fixed value.
pub fn initial_tau(cfg: &TauConfig, blocks: i64) -> f64 {
    let l = blocks as f64;
    match cfg.rule {
        TauRule::One => 1.0,
        TauRule::InvSqrt => cfg.c / l.sqrt(),
        TauRule::Inv => cfg.c / l,
        TauRule::Power => residual_scale(blocks, cfg.beta),
        TauRule::Fixed => cfg.value,
    }
}

/// τ as one block sees it.
#[derive(Debug)]
pub enum Tau {
    /// A constant τ (not trained).
    Const(f64),
    /// A learnable scalar tensor of shape `[1]` (shared by all blocks, or this block's own).
    Learned(Tensor),
}

impl Tau {
    /// τ · branch: the only place where τ touches a model's forward pass (a pack's τ_p per
    /// member: `PackedTau` in [`super::packed`]).
    pub fn scale(&self, branch: &Tensor) -> Tensor {
        match self {
            Tau::Const(t) if *t == 1.0 => branch.shallow_clone(),
            Tau::Const(t) => branch * *t,
            Tau::Learned(t) => branch * t,
        }
    }

    /// The current value (reads the device for a learned τ).
    pub fn value(&self) -> f64 {
        match self {
            Tau::Const(t) => *t,
            Tau::Learned(t) => t.double_value(&[0]),
        }
    }

    pub fn shallow_clone(&self) -> Tau {
        match self {
            Tau::Const(t) => Tau::Const(*t),
            Tau::Learned(t) => Tau::Learned(t.shallow_clone()),
        }
    }
}
