//! One run's files while it trains, alone ([`super::run`]) or as a member of a pack
//! ([`super::pack_run`]): the epoch's CSV row, the per-block diagnostics, TensorBoard, the
//! checkpoint, the best weights and the summary, always written in one order (the crash and
//! preemption argument of docs/reliability.md; in a pack the best weights come after the
//! pack's commit, so after the summary), from the run's own model ([`Weights`]).
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Tensor};

use super::checkpoint::{self, Position, Saved};
use super::config::RunConfig;
use super::metrics::{self, EpochRow, EpochStatus};
use super::run_dir::{self, write_summary, HASH_FILE};
use super::sgd::Sgd;
use super::{crash_point, diagnostics, die, interrupt, read_summary, tensorboard};
use super::{RunStatus, Summary};
use crate::model::resnet::ResNet;

/// The model a run's files are written from: the run's own, or a pack member's copy.
pub(crate) struct Weights<'a> {
    pub vs: &'a VarStore,
    pub model: &'a ResNet,
    pub opt: &'a Sgd,
    /// The fixed batch of the per-block diagnostics (the first training images).
    pub diag_batch: &'a (Tensor, Tensor),
}

/// What a run's summary records about its model and data.
pub(crate) struct RunInfo {
    pub parameters: i64,
    pub tau0: f64,
    pub device: Device,
    /// The per-channel mean and std the inputs are normalized with.
    pub input_norm: (Vec<f64>, Vec<f64>),
}

/// Checks that a checkpoint read back belongs to this run (its config hash and seed).
pub(crate) fn check_saved(
    saved: &Saved,
    cfg: &RunConfig,
    dir: &Path,
    run_hash: &str,
) -> Result<()> {
    if let Some(h) = &saved.config_hash {
        if h != run_hash {
            bail!(
                "{}: the checkpoint comes from another config (hash {} there, {} in {HASH_FILE}); move it away to restart this run from scratch",
                checkpoint::path(dir).display(),
                &h[..h.len().min(12)],
                &run_hash[..run_hash.len().min(12)]
            );
        }
    }
    if saved.seed != cfg.seed as i64 {
        bail!(
            "{}: checkpoint has seed {}, config seed {}",
            dir.display(),
            saved.seed,
            cfg.seed
        );
    }
    Ok(())
}

/// A run's directory while it trains: its config, hash, summary and TensorBoard writer.
pub(crate) struct RunFiles<'a> {
    pub cfg: &'a RunConfig,
    pub dir: PathBuf,
    pub run_hash: String,
    pub summary: Summary,
    /// In a pack: the run directories of the members that write a checkpoint at this point.
    /// This run's checkpoint is then written pending and committed by the pack once all are
    /// written ([`super::pack_commit`]).
    pub pack: Option<Vec<PathBuf>>,
    /// A new best epoch is in the summary (and the checkpoint) and its weights are not yet in
    /// best.safetensors ([`RunFiles::write_best`]).
    best_due: bool,
    tb: Option<tensorboard::EventWriter>,
    quiet: bool,
}

impl<'a> RunFiles<'a> {
    /// The files of `cfg`'s run directory (created, with config.yaml and its hash, by
    /// [`run_dir::create_dir`]) from epoch `start` on: resumed at `resumed` = (epochs done,
    /// step) after a checkpoint (its CSVs cut back to it), or fresh (stale rows dropped, the
    /// diagnostics at initialization written).
    pub fn open(
        cfg: &'a RunConfig,
        w: &Weights,
        info: &RunInfo,
        resumed: Option<((i64, i64), (f64, i64))>,
        quiet: bool,
    ) -> Result<RunFiles<'a>> {
        let dir = cfg.run_dir();
        let run_hash = run_dir::recorded_hash(&dir).unwrap_or_else(|| cfg.hash());
        let csv_path = dir.join(run_dir::METRICS_FILE);
        let (start, best) = match resumed {
            Some(((epoch, step), best)) => {
                metrics::truncate_after(&csv_path, epoch)?;
                metrics::truncate_after(&dir.join(diagnostics::FILE), epoch)?;
                if !quiet {
                    let inside = match step {
                        0 => String::new(),
                        k => format!(", at step {k} of epoch {}", epoch + 1),
                    };
                    crate::util::eprintln_whole!(
                        "{}: resuming after epoch {epoch}{inside}",
                        dir.display()
                    );
                }
                (epoch, best)
            }
            None => {
                // A fresh start: no stale rows or best weights from an attempt killed before
                // its first checkpoint (or restarted).
                metrics::truncate_after(&csv_path, 0)?;
                let _ = std::fs::remove_file(dir.join(diagnostics::FILE));
                let _ = std::fs::remove_file(dir.join(run_dir::BEST_FILE));
                (0, (0.0, 0))
            }
        };
        let tb = match cfg.log.tensorboard {
            true => Some(tensorboard::EventWriter::create(&dir).context("log.tensorboard")?),
            false => None,
        };
        let summary = start_summary(cfg, info, &dir, start, best);
        let mut files = RunFiles {
            cfg,
            dir,
            run_hash,
            summary,
            pack: None,
            best_due: false,
            tb,
            quiet,
        };
        if let Some(((epoch, 0), (best_acc, best_epoch))) = resumed {
            // Killed after the checkpoint of its new best epoch, before best.safetensors: the
            // checkpoint's weights (loaded into `w`) are that epoch's.
            let want = (epoch.to_string(), best_acc.to_string());
            if epoch > 0 && best_epoch == epoch && best_on_disk(&files.dir).as_ref() != Some(&want)
            {
                save_best(&files.dir, w.vs, &files.summary, &files.run_hash)?;
            }
        }
        if resumed.is_none() {
            let blocks = files.diagnose(w, 0)?;
            if let Some(t) = &mut files.tb {
                t.scalars(0, &tensorboard::epoch_scalars(None, &blocks))?;
            }
        }
        Ok(files)
    }

    /// The checkpoint now, with `position` inside the next epoch: pending in a pack.
    pub fn checkpoint(&self, w: &Weights, position: Option<Position>) -> Result<()> {
        match &self.pack {
            Some(members) => {
                super::pack_commit::save_pending(&self.target(), w.vs, w.opt, position, members)
            }
            None => self.target().save(w.vs, w.opt, position),
        }
    }

    /// Where checkpoints of this run go now.
    pub fn target(&self) -> checkpoint::Target<'_> {
        checkpoint::Target {
            cfg: self.cfg,
            dir: &self.dir,
            summary: &self.summary,
            run_hash: &self.run_hash,
        }
    }

    /// The per-block diagnostics after `epoch` epochs, appended to blocks.csv; returned.
    fn diagnose(&self, w: &Weights, epoch: i64) -> Result<Vec<diagnostics::BlockRow>> {
        let (x, y) = w.diag_batch;
        let rows = diagnostics::measure(w.model, w.vs, x, y, epoch);
        diagnostics::append(&self.dir, &rows)?;
        Ok(rows)
    }

    /// Everything after an epoch, in order: the CSV row, the diagnostics, TensorBoard, the
    /// summary's figures; then, for a diverged epoch, the summary (true: the run stops here);
    /// else the checkpoint, a new best's weights (in a pack, after the pack's checkpoints are
    /// committed: [`RunFiles::write_best`]) and the summary. best.safetensors is never ahead of
    /// the checkpoint: a kill between them is repaired on resume ([`RunFiles::open`]).
    pub fn end_epoch(
        &mut self,
        w: &Weights,
        row: &EpochRow,
        bar: Option<&indicatif::ProgressBar>,
    ) -> Result<bool> {
        let epoch = row.epoch;
        metrics::append(&self.dir.join(run_dir::METRICS_FILE), row)?;
        let blocks = match row.status {
            EpochStatus::Ok => self.diagnose(w, epoch)?,
            EpochStatus::Diverged => Vec::new(),
        };
        if let Some(t) = &mut self.tb {
            t.scalars(epoch, &tensorboard::epoch_scalars(Some(row), &blocks))?;
        }
        if crash_point("after-csv", epoch) {
            die();
        }
        let s = &mut self.summary;
        s.epochs_done = epoch;
        s.final_test_acc = row.test_acc;
        s.final_train_loss = row.train_loss;
        s.train_seconds += row.epoch_seconds;
        if !self.quiet {
            let line = epoch_line(&self.cfg.name, self.cfg.train.epochs, row);
            match bar {
                Some(b) => b.println(line),
                None => crate::util::eprintln_whole!("{line}"),
            }
        }
        if row.status == EpochStatus::Diverged {
            s.status = RunStatus::Diverged;
            s.diverged_at_epoch = Some(epoch);
            write_summary(&self.dir, s)?;
            if !self.quiet {
                crate::util::eprintln_whole!(
                    "{}: diverged at epoch {epoch} (loss is NaN or inf); stopping this run",
                    self.cfg.name
                );
            }
            return Ok(true);
        }
        if row.test_acc > s.best_test_acc {
            s.best_test_acc = row.test_acc;
            s.best_epoch = epoch;
            self.best_due = true;
        }
        // After a healthy epoch: the checkpoint (when enabled), the best weights, the summary.
        if self.cfg.train.checkpoint {
            self.checkpoint(w, None)?;
        }
        if crash_point("best", epoch) {
            die();
        }
        if self.pack.is_none() {
            self.write_best(w)?;
        }
        if crash_point("summary", epoch) {
            die();
        }
        write_summary(&self.dir, &self.summary)?;
        Ok(false)
    }

    /// The weights of a new best epoch (`w`, the model as that epoch ended) into
    /// best.safetensors, when one is due.
    pub fn write_best(&mut self, w: &Weights) -> Result<()> {
        if std::mem::take(&mut self.best_due) {
            save_best(&self.dir, w.vs, &self.summary, &self.run_hash)?;
        }
        Ok(())
    }

    /// The summary once the epochs are over (finished when all are done), written.
    pub fn finish(mut self) -> Result<Summary> {
        if self.summary.epochs_done >= self.cfg.train.epochs {
            self.summary.status = RunStatus::Finished;
        }
        write_summary(&self.dir, &self.summary)?;
        Ok(self.summary)
    }

    /// A signal between two epochs (or before this process's first): the last epoch's
    /// checkpoint is the resume point (written now when train.checkpoint is off and this
    /// process `trained` an epoch; otherwise what is on disk already is). The stopping error.
    pub fn stopped_between_epochs(
        &self,
        w: &Weights,
        trained: bool,
        sig: i32,
    ) -> Result<anyhow::Error> {
        if trained && !self.cfg.train.checkpoint {
            self.target().save(w.vs, w.opt, None)?;
        }
        Ok(interrupt::Interrupted(format!(
            "{}: stopped by {} after epoch {}; resumable",
            self.dir.display(),
            interrupt::name(sig),
            self.summary.epochs_done
        ))
        .into())
    }

    /// A signal inside epoch `epoch` (0-based) at `position`: the checkpoint with that
    /// position and the summary are written. The stopping error.
    pub fn stopped_inside_epoch(
        &self,
        w: &Weights,
        position: Position,
        epoch: i64,
    ) -> Result<anyhow::Error> {
        let steps = position.step;
        self.checkpoint(w, Some(position))?;
        write_summary(&self.dir, &self.summary)?;
        Ok(interrupt::Interrupted(format!(
            "{}: interrupted by a signal at step {steps} of epoch {}; checkpoint written, resumable",
            self.dir.display(),
            epoch + 1
        ))
        .into())
    }
}

/// The summary at the start of this process's epochs: progress and best accuracy so far (from
/// the checkpoint), the last epoch's figures and the time already spent (from the run's files).
fn start_summary(
    cfg: &RunConfig,
    info: &RunInfo,
    dir: &Path,
    start_epoch: i64,
    best: (f64, i64),
) -> Summary {
    let mut summary = Summary {
        name: cfg.name.clone(),
        status: RunStatus::Running,
        epochs_done: start_epoch,
        epochs: cfg.train.epochs,
        best_test_acc: best.0,
        best_epoch: best.1,
        final_test_acc: f64::NAN,
        final_train_loss: f64::NAN,
        diverged_at_epoch: None,
        parameters: info.parameters,
        tau0: info.tau0,
        device: format!("{:?}", info.device),
        train_seconds: read_summary(dir).map(|s| s.train_seconds).unwrap_or(0.0),
        input_mean: info.input_norm.0.clone(),
        input_std: info.input_norm.1.clone(),
    };
    if let Some(last) = metrics::read(&dir.join(run_dir::METRICS_FILE))
        .ok()
        .and_then(|r| r.last().cloned())
    {
        summary.final_test_acc = last.test_acc;
        summary.final_train_loss = last.train_loss;
    }
    summary
}

/// The epoch and test accuracy best.safetensors in `dir` holds (its metadata, as
/// [`save_best`] writes them), None when there is none.
fn best_on_disk(dir: &Path) -> Option<(String, String)> {
    let meta = crate::util::safetensors_file::read_metadata(&dir.join(run_dir::BEST_FILE)).ok()?;
    Some((meta.get("epoch")?.clone(), meta.get("test_acc")?.clone()))
}

/// The model of a new best epoch into best.safetensors (atomically; after the checkpoint that
/// records it, so that it never names an epoch the checkpoint does not).
fn save_best(dir: &Path, vs: &VarStore, s: &Summary, run_hash: &str) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let meta = std::collections::BTreeMap::from([
        ("epoch".to_string(), s.best_epoch.to_string()),
        ("test_acc".to_string(), s.best_test_acc.to_string()),
        ("config_sha256".to_string(), run_hash.to_string()),
    ]);
    crate::util::safetensors_file::write(&dir.join(run_dir::BEST_FILE), &tensors, &meta)
}

/// The per-epoch progress line.
fn epoch_line(name: &str, epochs: i64, row: &EpochRow) -> String {
    format!(
        "{name} epoch {:>3}/{epochs} lr {:.4} train_loss {:.4} train_acc {:.4} test_loss {:.4} test_acc {:.4} grad_norm {:.3} tau {:.4} {:.1}s {:.0} img/s",
        row.epoch, row.lr, row.train_loss, row.train_acc, row.test_loss, row.test_acc, row.grad_norm,
        row.tau, row.epoch_seconds, row.images_per_second
    )
}
