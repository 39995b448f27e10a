//! What a run directory holds, loaded leniently: a missing or unreadable file is simply absent
//! (a cell that never started is a record with nothing in it), and a torn or malformed line of
//! metrics.csv is skipped. Every problem met is noted in [`RunRecord::problems`].
use std::path::{Path, PathBuf};

use crate::train::config::RunConfig;
use crate::train::metrics::{EpochRow, EpochStatus};
use crate::train::run_dir::{CONFIG_FILE, METRICS_FILE, SUMMARY_FILE};
use crate::train::{RunStatus, Summary};

#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub dir: PathBuf,
    /// `config.yaml`, parsed without validation.
    pub config: Option<RunConfig>,
    /// `summary.json`.
    pub summary: Option<Summary>,
    /// `metrics.csv`, sorted by epoch (a repeated epoch keeps its last row).
    pub rows: Vec<EpochRow>,
    /// One line per file that exists but could not be read (or per skipped line).
    pub problems: Vec<String>,
}

/// 100 · (1 − accuracy) for a finite accuracy.
pub fn error_pct(acc: f64) -> Option<f64> {
    acc.is_finite().then_some(100.0 * (1.0 - acc))
}

impl RunRecord {
    /// Loads `dir`; never fails.
    pub fn load(dir: &Path) -> RunRecord {
        let mut problems = Vec::new();
        let config = read_text(&dir.join(CONFIG_FILE), &mut problems).and_then(|t| {
            serde_yaml::from_str::<RunConfig>(&t)
                .map_err(|e| {
                    problems.push(format!(
                        "{}: malformed: {e}",
                        dir.join(CONFIG_FILE).display()
                    ))
                })
                .ok()
        });
        let summary = read_text(&dir.join(SUMMARY_FILE), &mut problems).and_then(|t| {
            serde_json::from_str::<Summary>(&t)
                .map_err(|e| {
                    problems.push(format!(
                        "{}: malformed: {e}",
                        dir.join(SUMMARY_FILE).display()
                    ))
                })
                .ok()
        });
        let rows = read_rows(&dir.join(METRICS_FILE), &mut problems);
        RunRecord {
            dir: dir.to_path_buf(),
            config,
            summary,
            rows,
            problems,
        }
    }

    /// Whether anything of the run is there.
    pub fn exists(&self) -> bool {
        self.config.is_some() || self.summary.is_some() || !self.rows.is_empty()
    }

    /// Epochs completed (from summary.json or metrics.csv, whichever says more).
    pub fn epochs_done(&self) -> i64 {
        let from_rows = self.rows.iter().map(|r| r.epoch).max().unwrap_or(0);
        self.summary
            .as_ref()
            .map_or(0, |s| s.epochs_done)
            .max(from_rows)
    }

    /// Epochs planned (summary.json, else config.yaml), if known.
    pub fn epochs_planned(&self) -> Option<i64> {
        self.summary
            .as_ref()
            .map(|s| s.epochs)
            .or_else(|| self.config.as_ref().map(|c| c.train.epochs))
    }

    /// The epoch (1-based) at which the loss became NaN/inf, if it did.
    pub fn diverged_at(&self) -> Option<i64> {
        if let Some(e) = self.summary.as_ref().and_then(|s| s.diverged_at_epoch) {
            return Some(e);
        }
        if let Some(r) = self.rows.iter().find(|r| r.status == EpochStatus::Diverged) {
            return Some(r.epoch);
        }
        if self
            .summary
            .as_ref()
            .is_some_and(|s| s.status == RunStatus::Diverged)
        {
            return Some(self.epochs_done());
        }
        None
    }

    pub fn is_finished(&self) -> bool {
        self.diverged_at().is_none()
            && self
                .summary
                .as_ref()
                .is_some_and(|s| s.status == RunStatus::Finished)
    }

    /// Where the run stands (details: [`Self::diverged_at`], [`Self::epochs_done`],
    /// [`Self::epochs_planned`]).
    pub fn status(&self) -> RunStatus {
        if self.diverged_at().is_some() {
            RunStatus::Diverged
        } else if self.is_finished() {
            RunStatus::Finished
        } else if self.exists() {
            RunStatus::Running
        } else {
            RunStatus::Missing
        }
    }

    /// Rows of healthy epochs (status `ok`, finite test accuracy).
    fn ok_rows(&self) -> impl Iterator<Item = &EpochRow> {
        self.rows
            .iter()
            .filter(|r| r.status != EpochStatus::Diverged && r.test_acc.is_finite())
    }

    /// Lowest test error (%) over the epochs: metrics.csv, else summary.json.
    pub fn best_test_error(&self) -> Option<f64> {
        self.healthy_test_errors()
            .map(|(best, _)| best)
            .or_else(|| self.summary_error(|s| s.best_test_acc))
    }

    /// Test error (%) at the last healthy epoch: metrics.csv, else summary.json.
    pub fn final_test_error(&self) -> Option<f64> {
        self.healthy_test_errors()
            .map(|(_, last)| last)
            .or_else(|| self.summary_error(|s| s.final_test_acc))
    }

    /// Test error (%) of an accuracy summary.json records, once it has a completed epoch.
    fn summary_error(&self, acc: fn(&Summary) -> f64) -> Option<f64> {
        self.summary
            .as_ref()
            .filter(|s| s.epochs_done > 0)
            .and_then(|s| error_pct(acc(s)))
    }

    /// Best and last test error (%) over the healthy epochs of metrics.csv alone (None without
    /// one): for a run that diverged, what it reached before (summary.json's final accuracy is
    /// the diverged epoch's).
    pub fn healthy_test_errors(&self) -> Option<(f64, f64)> {
        let best = self.ok_rows().map(|r| r.test_acc).fold(f64::NAN, f64::max);
        let last = self.ok_rows().last()?.test_acc;
        Some((error_pct(best)?, error_pct(last)?))
    }

    /// Train loss of the last epoch logged (NaN/inf when it diverged).
    pub fn final_train_loss(&self) -> Option<f64> {
        self.rows
            .last()
            .map(|r| r.train_loss)
            .or_else(|| self.summary.as_ref().map(|s| s.final_train_loss))
    }

    /// (epoch, train loss) per logged epoch.
    pub fn train_loss_curve(&self) -> Vec<(f64, f64)> {
        self.rows
            .iter()
            .map(|r| (r.epoch as f64, r.train_loss))
            .collect()
    }

    /// (epoch, test error %) per logged epoch (NaN where the accuracy is not finite).
    pub fn test_error_curve(&self) -> Vec<(f64, f64)> {
        self.rows
            .iter()
            .map(|r| (r.epoch as f64, error_pct(r.test_acc).unwrap_or(f64::NAN)))
            .collect()
    }
}

fn read_text(path: &Path, problems: &mut Vec<String>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            problems.push(format!("{}: cannot read: {e}", path.display()));
            None
        }
    }
}

/// metrics.csv row by row, skipping lines that do not parse (a torn last line after a kill).
fn read_rows(path: &Path, problems: &mut Vec<String>) -> Vec<EpochRow> {
    let Some(text) = read_text(path, problems) else {
        return Vec::new();
    };
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut rows: Vec<EpochRow> = Vec::new();
    for (i, row) in r.deserialize::<EpochRow>().enumerate() {
        match row {
            Ok(row) => rows.push(row),
            Err(e) => problems.push(format!("{}: line {} skipped: {e}", path.display(), i + 2)),
        }
    }
    rows.sort_by_key(|r| r.epoch);
    // A repeated epoch (a resume that did not truncate) keeps its last row.
    let mut out: Vec<EpochRow> = Vec::with_capacity(rows.len());
    for row in rows {
        match out.last_mut() {
            Some(last) if last.epoch == row.epoch => *last = row,
            _ => out.push(row),
        }
    }
    out
}
