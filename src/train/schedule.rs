//! Learning-rate schedules: multi-step (× gamma at listed epochs, as PyTorch's MultiStepLR
//! stepped once per epoch), cosine (per step, to 0), constant; optional linear warmup.
use crate::train::config::{RunConfig, ScheduleConfig, ScheduleKind};

/// Where a step is: `step` steps of epoch `epoch` done before it, `steps` steps per epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct At {
    pub epoch: i64,
    pub step: i64,
    pub steps: i64,
}

impl At {
    /// The fractional epoch t = epoch + step / steps.
    fn t(self) -> f64 {
        self.epoch as f64 + self.step as f64 / self.steps.max(1) as f64
    }
}

/// The learning rate of the step at `at`. Warmup (`warmup_epochs` = w > 0) rises linearly per
/// step, lr·k/(w·steps) at the k-th step (k = 1, 2, ...), reaching lr at the last warmup step;
/// the schedule then runs over the remaining epochs.
pub fn lr_at(cfg: &ScheduleConfig, base_lr: f64, epochs: i64, at: At) -> f64 {
    let (w, t) = (cfg.warmup_epochs as f64, at.t());
    if t < w {
        let k = (at.epoch * at.steps + at.step + 1) as f64;
        return base_lr * (k / (w * at.steps.max(1) as f64)).min(1.0);
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

/// Run `cfg`'s learning rate at step `step` of epoch `epoch` (`steps` steps per epoch): [`lr_at`]
/// with its `train.schedule`, `train.optimizer.lr` and `train.epochs`. Every training loop
/// (a run, a pack's members, `deepres bench`) takes its rate here.
pub fn run_lr(cfg: &RunConfig, epoch: i64, step: i64, steps: i64) -> f64 {
    let t = &cfg.train;
    lr_at(
        &t.schedule,
        t.optimizer.lr,
        t.epochs,
        At { epoch, step, steps },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The step at fractional epoch `t` with 10 steps per epoch.
    fn at(t: f64) -> At {
        At {
            epoch: t.floor() as i64,
            step: ((t - t.floor()) * 10.0).round() as i64,
            steps: 10,
        }
    }

    #[test]
    fn multistep_is_the_papers_recipe() {
        let cfg = ScheduleConfig::default(); // milestones 100, 150, gamma 0.1
        assert_eq!(lr_at(&cfg, 0.1, 200, at(0.0)), 0.1);
        assert_eq!(lr_at(&cfg, 0.1, 200, at(99.9)), 0.1);
        assert!((lr_at(&cfg, 0.1, 200, at(100.0)) - 0.01).abs() < 1e-12);
        assert!((lr_at(&cfg, 0.1, 200, at(150.0)) - 0.001).abs() < 1e-12);
    }

    #[test]
    fn cosine_and_warmup() {
        let cfg = ScheduleConfig {
            kind: ScheduleKind::Cosine,
            milestones: vec![],
            gamma: 0.1,
            warmup_epochs: 2,
        };
        // Warmup: 20 steps of lr/20, 2/20, ..., 20/20.
        assert!((lr_at(&cfg, 1.0, 12, at(0.0)) - 0.05).abs() < 1e-12);
        assert!((lr_at(&cfg, 1.0, 12, at(1.0)) - 0.55).abs() < 1e-12);
        assert!((lr_at(&cfg, 1.0, 12, at(1.9)) - 1.0).abs() < 1e-12);
        // Cosine over the 10 remaining epochs.
        assert!((lr_at(&cfg, 1.0, 12, at(2.0)) - 1.0).abs() < 1e-12);
        assert!((lr_at(&cfg, 1.0, 12, at(7.0)) - 0.5).abs() < 1e-12);
        assert!(lr_at(&cfg, 1.0, 12, at(11.9)) < 0.01);
        // One warmup epoch warms up (it used to start at full lr).
        let one = ScheduleConfig {
            warmup_epochs: 1,
            ..cfg
        };
        assert!((lr_at(&one, 1.0, 12, at(0.0)) - 0.1).abs() < 1e-12);
        assert!((lr_at(&one, 1.0, 12, at(0.5)) - 0.6).abs() < 1e-12);
    }
}
