//! Learning-rate schedules: multi-step (× gamma at listed epochs, as PyTorch's MultiStepLR
//! stepped once per epoch), cosine (per step, to 0), constant; optional linear warmup.
use crate::train::config::{ScheduleConfig, ScheduleKind};

/// The learning rate at fractional epoch `t` ∈ [0, epochs) (t = epoch index + step fraction).
pub fn lr_at(cfg: &ScheduleConfig, base_lr: f64, epochs: i64, t: f64) -> f64 {
    let w = cfg.warmup_epochs as f64;
    if t < w {
        return base_lr * (t + 1.0).min(w) / w;
    }
    match cfg.kind {
        ScheduleKind::Constant => base_lr,
        ScheduleKind::Multistep => {
            let epoch = t.floor() as i64;
            let passed = cfg.milestones.iter().filter(|&&m| m <= epoch).count() as i32;
            base_lr * cfg.gamma.powi(passed)
        }
        ScheduleKind::Cosine => {
            let span = (epochs as f64 - w).max(1e-9);
            base_lr * 0.5 * (1.0 + (std::f64::consts::PI * ((t - w) / span).min(1.0)).cos())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multistep_is_the_papers_recipe() {
        let cfg = ScheduleConfig::default(); // milestones 100, 150, gamma 0.1
        assert_eq!(lr_at(&cfg, 0.1, 200, 0.0), 0.1);
        assert_eq!(lr_at(&cfg, 0.1, 200, 99.9), 0.1);
        assert!((lr_at(&cfg, 0.1, 200, 100.0) - 0.01).abs() < 1e-12);
        assert!((lr_at(&cfg, 0.1, 200, 150.0) - 0.001).abs() < 1e-12);
    }

    #[test]
    fn cosine_and_warmup() {
        let cfg = ScheduleConfig {
            kind: ScheduleKind::Cosine,
            milestones: vec![],
            gamma: 0.1,
            warmup_epochs: 2,
        };
        assert!((lr_at(&cfg, 1.0, 12, 0.0) - 0.5).abs() < 1e-12);
        assert!((lr_at(&cfg, 1.0, 12, 2.0) - 1.0).abs() < 1e-12);
        assert!((lr_at(&cfg, 1.0, 12, 7.0) - 0.5).abs() < 1e-12);
        assert!(lr_at(&cfg, 1.0, 12, 11.999) < 1e-6);
    }
}
