//! Errors kept on disk, so that a rerun reads them instead of training again: one file
//! `errors-<16 hex>.csv` per finished piece of work, named by the SHA-256 (`util::key::spec_key`) of
//! everything that determines its numbers, its first line `# key <the full key>`, then one row
//! per model of its errors at the recorded steps (each f64 written exactly). C5 keeps every
//! batch of models ([`BatchKey`], under `<out>/batches/`), so that a sweep stopped by a signal
//! or a time limit goes on from its last finished batch; C5D keeps every setting
//! (`d_law/kept.rs`). A file under another key, or a damaged one, is refused in one line.
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::Device;

use super::limit::LimitKey;
use super::output::write_csv;

/// What a refusal tells the user to do.
const FIX: &str = "delete it to recompute them";

/// Everything that determines one batch of C5's models' errors: the limit they are measured
/// against (D, dynamics, task and the limit's own settings), the seeds their weights are
/// drawn from and their shapes (L, M), in batch order, the recorded steps, and the device kind
/// (the weights are drawn on the device: CPU and CUDA draw different ones).
#[derive(Debug, Clone, Serialize)]
pub(super) struct BatchKey<'a> {
    /// Bump when the models, their training or the error changes. 2: each model drawn from
    /// its own seed.
    pub(super) version: u32,
    pub(super) device: &'static str,
    pub(super) limit: &'a LimitKey,
    pub(super) seeds: &'a [i64],
    pub(super) shapes: &'a [(i64, i64)],
    pub(super) eval_steps: &'a [usize],
}

/// The device kind of a [`BatchKey`].
pub(super) fn device_kind(device: Device) -> &'static str {
    match device {
        Device::Cpu => "cpu",
        Device::Cuda(_) => "cuda",
        _ => "other",
    }
}

/// The file under `dir` that keeps the errors of the work with key `key`.
pub(super) fn kept_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("errors-{}.csv", &key[..16]))
}

/// The kept errors of `key` in `dir`, or None when that work has not finished there.
pub(super) fn read_kept(
    dir: &Path,
    key: &str,
    (models, steps): (usize, usize),
) -> Result<Option<Vec<Vec<f64>>>> {
    let path = kept_path(dir, key);
    match path.exists() {
        true => read_errors(&path, key, models, steps).map(Some),
        false => Ok(None),
    }
}

/// Keeps `errors` (one row per model) in `dir` under `key`, atomically.
pub(super) fn keep(dir: &Path, key: &str, errors: &[Vec<f64>]) -> Result<()> {
    let rows: Vec<String> = errors
        .iter()
        .map(|e| {
            e.iter()
                .map(|v| format!("{v:e}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    write_csv(&kept_path(dir, key), &format!("# key {key}"), &rows)
}

/// Reads kept errors, refusing another key's file or a damaged one.
fn read_errors(path: &Path, key: &str, models: usize, steps: usize) -> Result<Vec<Vec<f64>>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read ({FIX})", path.display()))?;
    let mut lines = text.lines();
    let stored = lines.next().unwrap_or_default();
    if stored != format!("# key {key}") {
        bail!(
            "{}: errors kept for another setting or batch (first line {stored:?}, expected \"# key {key}\") ({FIX})",
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
    use crate::papers::chizat2025::limit::limit_key;
    use crate::papers::chizat2025::spec::{Dynamics, LimitSpec, TaskSpec};
    use crate::util::key::spec_key as batch_key;

    /// The limit key all but one change below share (D = 4, the default settings).
    fn base_limit(lim: &LimitSpec) -> LimitKey {
        limit_key(4, &Dynamics::default(), &TaskSpec::default(), lim)
    }

    fn base_key<'a>(limit: &'a LimitKey, shapes: &'a [(i64, i64)]) -> BatchKey<'a> {
        BatchKey {
            version: 2,
            device: "cpu",
            limit,
            seeds: &[7, 8],
            shapes,
            eval_steps: &[10, 100],
        }
    }

    /// Every field of a batch's key changes it (so kept errors are never read for other
    /// models), and where the limits are cached does not enter it.
    #[test]
    fn a_batch_key_covers_everything_that_makes_its_errors() {
        let lim = LimitSpec::default();
        let (dy, task) = (Dynamics::default(), TaskSpec::default());
        let limit = base_limit(&lim);
        let base = base_key(&limit, &[(2, 3), (5, 6)]);
        let other_limits = [
            limit_key(8, &dy, &task, &lim),
            limit_key(4, &Dynamics { eta: 0.25, ..dy }, &task, &lim),
            limit_key(4, &dy, &TaskSpec { train: 64, ..task }, &lim),
            limit_key(
                4,
                &dy,
                &task,
                &LimitSpec {
                    width: 64,
                    ..lim.clone()
                },
            ),
        ];
        let mut changed: Vec<BatchKey> = other_limits
            .iter()
            .map(|limit| BatchKey {
                limit,
                ..base.clone()
            })
            .collect();
        changed.extend([
            BatchKey {
                version: 3,
                ..base.clone()
            },
            BatchKey {
                device: "cuda",
                ..base.clone()
            },
            BatchKey {
                seeds: &[7, 9],
                ..base.clone()
            },
            BatchKey {
                shapes: &[(2, 3), (5, 7)],
                ..base.clone()
            },
            BatchKey {
                eval_steps: &[10, 30],
                ..base.clone()
            },
        ]);
        let b = batch_key(&base);
        let keys: std::collections::BTreeSet<String> = changed.iter().map(batch_key).collect();
        assert_eq!(keys.len(), changed.len(), "two changes share a key");
        assert!(!keys.contains(&b), "a change kept the key");
        let moved = base_limit(&LimitSpec {
            cache: "elsewhere".into(),
            ..lim.clone()
        });
        let same = BatchKey {
            limit: &moved,
            ..base.clone()
        };
        assert_eq!(batch_key(&same), b, "the cache's place entered the key");
    }

    /// Kept errors round-trip exactly (NaN too); a file under another key, or with fewer rows
    /// than models, is refused in one line naming the file and the fix.
    #[test]
    fn kept_errors_round_trip_and_another_keys_file_is_refused() {
        let limit = base_limit(&LimitSpec::default());
        let b = batch_key(&base_key(&limit, &[(2, 3), (5, 6)]));
        let dir = tempfile::tempdir().unwrap();
        let errors = vec![vec![0.1f64, 1.0 / 3.0], vec![2.5e-7, f64::NAN]];
        assert!(read_kept(dir.path(), &b, (2, 2)).unwrap().is_none());
        keep(dir.path(), &b, &errors).unwrap();
        let back = read_kept(dir.path(), &b, (2, 2)).unwrap().unwrap();
        assert_eq!(back[0], errors[0]);
        assert_eq!(back[1][0], errors[1][0]);
        assert!(back[1][1].is_nan());
        let other = batch_key(&BatchKey {
            seeds: &[7, 9],
            ..base_key(&limit, &[(2, 3), (5, 6)])
        });
        std::fs::copy(kept_path(dir.path(), &b), kept_path(dir.path(), &other)).unwrap();
        let e = read_kept(dir.path(), &other, (2, 2))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("kept for another setting") && e.contains(FIX),
            "{e}"
        );
        let e = read_kept(dir.path(), &b, (3, 2)).unwrap_err().to_string();
        assert!(
            e.contains("expected 3 rows of 2 errors, found 2 rows"),
            "{e}"
        );
    }
}
