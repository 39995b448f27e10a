//! Each finished setting's errors kept in `settings/errors-<16 hex>.csv` under the study's
//! output, named by the SHA-256 of everything that determines them ([`SettingKey`]): a rerun
//! reads them instead of training, and a file of another setting is refused in one line
//! (the file format: `chizat2025/kept.rs`). Inside a setting, C5's sweep keeps each batch of
//! models (`batches/`), so a setting stopped midway goes on from its last finished batch.
use anyhow::Result;
use serde::Serialize;
use std::path::Path;
use tch::Device;

use crate::papers::chizat2025::error_sweep::{measure_errors, Shape};
use crate::papers::chizat2025::kept::{device_kind, keep, kept_path, read_kept};
use crate::papers::chizat2025::spec::{Dynamics, ErrorSweepFig, TaskSpec};
use crate::util::key::spec_key;

/// Everything that determines one setting's errors; its [`spec_key`] names the cached file.
#[derive(Clone, Copy, Serialize)]
struct SettingKey<'a> {
    /// Bump when the training or the error changes. 2: each model drawn from its own seed
    /// (the batch size no longer matters; the device does: CPU and CUDA draw different weights).
    version: u32,
    device: &'static str,
    shapes: &'a [Shape],
    eval_steps: &'a [usize],
    seed: u64,
    dynamics: Dynamics,
    task: TaskSpec,
    limit: (i64, i64, i64, u64),
}

/// One setting's errors[model][index in eval_steps]: read from `out/settings/` when this
/// setting finished before, else measured (C5's [`measure_errors`]) and kept there.
pub(super) fn setting_errors(
    sw: &ErrorSweepFig,
    shapes: &[Shape],
    dims: &[i64],
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<Vec<Vec<f64>>> {
    let key = spec_key(&SettingKey {
        version: 2,
        device: device_kind(device),
        shapes,
        eval_steps: &sw.eval_steps,
        seed: sw.seed,
        dynamics: sw.dynamics,
        task: sw.task,
        limit: (
            sw.limit.depth,
            sw.limit.width,
            sw.limit.models,
            sw.limit.seed,
        ),
    });
    let dir = out.join("settings");
    let counts = (shapes.len(), sw.eval_steps.len());
    if let Some(errors) = read_kept(&dir, &key, counts)? {
        if !quiet {
            eprintln!("C5D: {} (finished before)", kept_path(&dir, &key).display());
        }
        return Ok(errors);
    }
    let errors = measure_errors(
        sw,
        shapes,
        dims,
        Some(&out.join("batches")),
        (device, quiet),
    )?;
    keep(&dir, &key, &errors)?;
    Ok(errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::papers::chizat2025::spec::Target;

    /// Every field of a setting's key changes it (so a kept setting is never read for another),
    /// and where the study's output lives does not enter it.
    #[test]
    fn every_setting_changes_the_key_of_kept_errors() {
        let shapes: Vec<Shape> = vec![(2, 3, 4), (5, 6, 2)];
        let other_shapes: Vec<Shape> = vec![(2, 3, 4), (5, 6, 4)];
        let base = SettingKey {
            version: 2,
            device: "cpu",
            shapes: &shapes,
            eval_steps: &[10, 100],
            seed: 0,
            dynamics: Dynamics::default(),
            task: TaskSpec::default(),
            limit: (256, 128, 1, 0),
        };
        let key = |k: &SettingKey| spec_key(k);
        let b = key(&base);
        let changed = [
            key(&SettingKey { version: 3, ..base }),
            key(&SettingKey {
                shapes: &other_shapes,
                ..base
            }),
            key(&SettingKey {
                eval_steps: &[10, 30],
                ..base
            }),
            key(&SettingKey {
                device: "cuda",
                ..base
            }),
            key(&SettingKey { seed: 1, ..base }),
            key(&SettingKey {
                dynamics: Dynamics {
                    eta: 0.25,
                    ..base.dynamics
                },
                ..base
            }),
            key(&SettingKey {
                dynamics: Dynamics {
                    steps: 0,
                    ..base.dynamics
                },
                ..base
            }),
            key(&SettingKey {
                task: TaskSpec {
                    train: 2048,
                    ..base.task
                },
                ..base
            }),
            key(&SettingKey {
                task: TaskSpec {
                    target: Target::OneDirection,
                    ..base.task
                },
                ..base
            }),
            key(&SettingKey {
                limit: (256, 64, 1, 0),
                ..base
            }),
            key(&SettingKey {
                limit: (256, 128, 1, 1),
                ..base
            }),
        ];
        for (i, k) in changed.iter().enumerate() {
            assert_ne!(k, &b, "change {i} kept the key");
        }
        let unique: std::collections::BTreeSet<_> = changed.iter().collect();
        assert_eq!(unique.len(), changed.len());
    }
}
