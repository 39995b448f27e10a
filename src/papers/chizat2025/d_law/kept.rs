//! Each finished setting's errors kept in `settings/errors-<16 hex>.csv` under the study's
//! output, named by the SHA-256 of everything that determines them ([`SettingKey`]): a rerun
//! reads them instead of training, and a file of another setting is refused in one line.
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::Path;
use tch::Device;

use crate::papers::chizat2025::error_sweep::{measure_errors, Shape};
use crate::papers::chizat2025::output::write_csv;
use crate::papers::chizat2025::spec::{Dynamics, ErrorSweepFig, TaskSpec};
use crate::util::key::spec_key;

/// Everything that determines one setting's errors; its [`spec_key`] names the cached file.
#[derive(Clone, Copy, Serialize)]
struct SettingKey<'a> {
    /// Bump when the training or the error changes.
    version: u32,
    shapes: &'a [Shape],
    eval_steps: &'a [usize],
    batch: usize,
    seed: u64,
    dynamics: Dynamics,
    task: TaskSpec,
    limit: (i64, i64, i64, u64),
}

const FIX: &str = "delete it to recompute that setting";

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
        version: 1,
        shapes,
        eval_steps: &sw.eval_steps,
        batch: sw.batch,
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
    let path = out
        .join("settings")
        .join(format!("errors-{}.csv", &key[..16]));
    if path.exists() {
        if !quiet {
            eprintln!("C5D: {} (finished before)", path.display());
        }
        return read_errors(&path, &key, shapes.len(), sw.eval_steps.len());
    }
    let errors = measure_errors(sw, shapes, dims, device, quiet)?;
    let rows: Vec<String> = errors
        .iter()
        .map(|e| {
            e.iter()
                .map(|v| format!("{v:e}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    std::fs::create_dir_all(path.parent().expect("settings/ has a parent"))
        .with_context(|| format!("{}: cannot create", out.join("settings").display()))?;
    write_csv(&path, &format!("# key {key}"), &rows)?;
    Ok(errors)
}

/// Reads a setting's cached errors, refusing another setting's file or a damaged one.
fn read_errors(path: &Path, key: &str, models: usize, steps: usize) -> Result<Vec<Vec<f64>>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read ({FIX})", path.display()))?;
    let mut lines = text.lines();
    let stored = lines.next().unwrap_or_default();
    if stored != format!("# key {key}") {
        bail!(
            "{}: the errors of another setting (first line {stored:?}, expected \"# key {key}\") ({FIX})",
            path.display()
        );
    }
    let errors: Vec<Vec<f64>> = lines
        .map(|l| {
            l.split(',')
                .map(|v| v.parse::<f64>())
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: not a number ({FIX})", path.display()))?;
    if errors.len() != models || errors.iter().any(|e| e.len() != steps) {
        bail!(
            "{}: expected {models} rows of {steps} errors, found {} rows ({FIX})",
            path.display(),
            errors.len()
        );
    }
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
            version: 1,
            shapes: &shapes,
            eval_steps: &[10, 100],
            batch: 40,
            seed: 0,
            dynamics: Dynamics::default(),
            task: TaskSpec::default(),
            limit: (256, 128, 1, 0),
        };
        let key = |k: &SettingKey| spec_key(k);
        let b = key(&base);
        let changed = [
            key(&SettingKey { version: 2, ..base }),
            key(&SettingKey {
                shapes: &other_shapes,
                ..base
            }),
            key(&SettingKey {
                eval_steps: &[10, 30],
                ..base
            }),
            key(&SettingKey { batch: 32, ..base }),
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
