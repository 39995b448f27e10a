//! The residual scale L^-β of a ResNet with L residual blocks: τ = L^-β (Zhang et al. 2022's
//! `power` rule), α_L = L^-β (Marion et al. 2022, arXiv:2206.06929, §2). Every place that
//! scales a residual branch by a power of the depth takes it from here.

/// L^-β for L residual blocks.
pub fn residual_scale(blocks: i64, beta: f64) -> f64 {
    (blocks as f64).powf(-beta)
}
