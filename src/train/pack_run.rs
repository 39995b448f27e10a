//! A pack trained into its members' own run directories (`deepres sweep --pack N`).
//!
//! Every member keeps exactly the files of a run alone, written by the same code
//! ([`RunFiles`]): config.yaml and config.sha256, metrics.csv, blocks.csv,
//! checkpoint.safetensors (in the single model's names and shapes: the member's rows of every
//! pack tensor, its momentum buffers likewise), summary.json and, once every member's
//! checkpoint is committed, best.safetensors; the sweep holds each member's lock. So a packed member is, on disk, a run like any other:
//! `--status`, reports and `deepres train --resume` read it as such, and a member resumed
//! alone continues from its own checkpoint. After each epoch the pack's member p is copied
//! into its single model ([`PackTrainer::singles`]), whose files are then written.
//!
//! Resume: members are packed at equal progress (the caller groups by it); each member's
//! checkpoint is read into its single model by [`checkpoint::load`] (the same checks of hash,
//! seed and shapes as alone) and copied into the pack; a mid-epoch position restores the
//! member's sums, and the epoch replays the draws of the steps done.
//!
//! Signals: between epochs, every member's last checkpoint is its resume point; inside an
//! epoch, the step finishes, every member's checkpoint records the position, and the error is
//! [`interrupt::Interrupted`] (exit 75). Every checkpoint of the members at one point is
//! written in two phases, all or none ([`pack_commit`]). The periodic mid-epoch checkpoint
//! (`train.checkpoint_minutes`, the shortest of the members') writes every member's checkpoint
//! with its position at the step where it falls, so a kill -9 loses at most that much of the
//! epoch in progress, as for a run alone.
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::path::PathBuf;
use tch::Tensor;

use super::checkpoint::{self, Position};
use super::config::RunConfig;
use super::metrics::{EpochRow, EpochStatus};
use super::pack::{PackEpoch, PackPeriodic, PackTrainer};
use super::run_files::{check_saved, RunFiles, RunInfo, Weights};
use super::sgd::Sgd;
use super::{crash_point, die, interrupt, pack_commit, run_dir, RunOptions, Summary};
use crate::model::packed::{load_member, member_slice};
use crate::model::resnet::trainable_parameters;

/// Member `p`'s optimizer state in the pack's optimizer, named as [`Sgd::state`] names it:
/// its momentum buffers (none for a member without momentum) and, in fp16, its loss scale.
fn member_state(opt: &Sgd, p: usize) -> HashMap<String, Tensor> {
    let m = opt.members.len() as i64;
    let mut state: HashMap<String, Tensor> = match opt.members[p].cfg.momentum == 0.0 {
        true => HashMap::new(),
        false => (opt.params.iter())
            .filter_map(|s| {
                let buf = s.momentum.as_ref()?;
                Some((
                    format!("momentum.{}", s.name),
                    member_slice(buf, m, p as i64),
                ))
            })
            .collect(),
    };
    if let Some(sc) = &opt.scaler {
        state.extend(sc.member_state(p));
    }
    state
}

/// Copies member `p` of the pack into its single model (weights, statistics, momentum, loss
/// scale).
fn to_single(tr: &mut PackTrainer, p: usize) -> Result<()> {
    let m = tr.model.members;
    let pack = tr.vs.variables();
    let (vs, _, opt) = &mut tr.singles[p];
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            t.copy_(&member_slice(&pack[&name], m, p as i64));
        }
    });
    opt.load_state(&member_state(&tr.opt, p))
}

/// Copies member `p`'s single model (read from its checkpoint) into the pack.
fn from_single(tr: &mut PackTrainer, p: usize) -> Result<()> {
    let m = tr.model.members;
    let (vs, _, opt) = &tr.singles[p];
    load_member(&tr.vs, m, p as i64, &vs.variables())?;
    let saved: HashMap<String, Tensor> = opt.state().into_iter().collect();
    for s in &mut tr.opt.params {
        if let Some(buf) = saved.get(&format!("momentum.{}", s.name)) {
            let packed = s.momentum.get_or_insert_with(|| s.param.zeros_like());
            tch::no_grad(|| member_slice(packed, m, p as i64).copy_(buf));
        }
    }
    if let Some(sc) = &mut tr.opt.scaler {
        sc.load_member(p, &saved);
    }
    Ok(())
}

/// Member `p`'s view for its files.
fn weights<'a>(tr: &'a PackTrainer, diag: &'a (Tensor, Tensor), p: usize) -> Weights<'a> {
    let (vs, model, opt) = &tr.singles[p];
    Weights {
        vs,
        model,
        opt,
        diag_batch: diag,
    }
}

/// Reads every member's checkpoint (when `resume` finds one) into the pack; the members'
/// common resume point ((epoch, step), best) per member, or one line when they differ.
#[allow(clippy::type_complexity)]
fn restore(
    tr: &mut PackTrainer,
    cfgs: &[RunConfig],
    resume: &[bool],
) -> Result<Vec<Option<((i64, i64), (f64, i64))>>> {
    let mut points = Vec::new();
    let mut positions: Vec<Option<Position>> = Vec::new();
    for (p, c) in cfgs.iter().enumerate() {
        if !resume[p] {
            points.push(None);
            positions.push(None);
            continue;
        }
        let dir = c.run_dir();
        let run_hash = run_dir::recorded_hash(&dir).unwrap_or_else(|| c.hash());
        let (vs, _, opt) = &mut tr.singles[p];
        let saved = checkpoint::load(&dir, vs, opt)?;
        check_saved(&saved, c, &dir, &run_hash)?;
        from_single(tr, p)?;
        let step = saved.position.as_ref().map_or(0, |q| q.step);
        points.push(Some((
            (saved.epoch, step),
            (saved.best_test_acc, saved.best_epoch),
        )));
        positions.push(saved.position);
    }
    let at = |q: &Option<((i64, i64), (f64, i64))>| q.map_or((0, 0), |(e, _)| e);
    if let Some(i) = points.iter().position(|q| at(q) != at(&points[0])) {
        bail!(
            "{}: resumes at epoch {}, step {}, and {} at epoch {}, step {}: members of a pack must be at the same point; run them alone or in separate packs",
            cfgs[i].name, at(&points[i]).0, at(&points[i]).1, cfgs[0].name, at(&points[0]).0, at(&points[0]).1
        );
    }
    if let Some(Some(first)) = positions.first() {
        let vals = |f: fn(&Position) -> f64| {
            let v: Vec<f32> = positions
                .iter()
                .map(|q| q.as_ref().map_or(0.0, f) as f32)
                .collect();
            Tensor::from_slice(&v).to_device(tr.device)
        };
        tr.sums.loss = vals(|q| q.loss);
        tr.sums.correct = vals(|q| q.correct);
        tr.sums.grad_norm = vals(|q| q.grad_norm);
        tr.sums.images = first.images;
        tr.sums.steps = first.step;
    }
    Ok(points)
}

/// Member `p`'s position after `steps` steps of the epoch in progress.
fn position(tr: &PackTrainer, p: usize, steps: i64) -> Position {
    let get = |t: &Tensor| t.double_value(&[p as i64]);
    Position {
        step: steps,
        loss: get(&tr.sums.loss),
        correct: get(&tr.sums.correct),
        grad_norm: get(&tr.sums.grad_norm),
        images: tr.sums.images,
    }
}

/// The run directories of the open members for which `writes(p)` holds: those that write a
/// checkpoint at this point, the pack of their pending checkpoints ([`pack_commit`]).
fn writer_dirs(files: &[Option<RunFiles>], writes: impl Fn(usize) -> bool) -> Vec<PathBuf> {
    files
        .iter()
        .enumerate()
        .filter(|&(p, _)| writes(p))
        .filter_map(|(_, f)| f.as_ref().map(|f| f.dir.clone()))
        .collect()
}

/// [`writer_dirs`], also set as every open member's pack, so that its next checkpoint is
/// written pending.
fn set_writers(files: &mut [Option<RunFiles>], writes: impl Fn(usize) -> bool) -> Vec<PathBuf> {
    let dirs = writer_dirs(files, writes);
    for f in files.iter_mut().flatten() {
        f.pack = Some(dirs.clone());
    }
    dirs
}

/// Phase 2: the pending checkpoints of `dirs` committed, one after another (the failpoint
/// `pack-commit-<i>:<epoch>` kills after the i-th).
fn commit_all(dirs: &[PathBuf], epoch: i64) -> Result<()> {
    for (i, dir) in dirs.iter().enumerate() {
        pack_commit::commit(dir)?;
        if crash_point(format_args!("pack-commit-{i}"), epoch) {
            die(); // the test of a kill inside phase 2
        }
    }
    Ok(())
}

/// A signal inside epoch `epoch` after `steps` steps: every member's checkpoint at that step
/// (both phases), its summary; the stopping error.
fn stop_inside(
    tr: &mut PackTrainer,
    diag: &(Tensor, Tensor),
    files: &mut [Option<RunFiles>],
    (epoch, steps): (i64, i64),
) -> Result<anyhow::Error> {
    let dirs = set_writers(files, |_| true);
    let mut stop = None;
    for (p, f) in files.iter().enumerate() {
        if let Some(f) = f {
            to_single(tr, p)?;
            let at = position(tr, p, steps);
            stop = Some(f.stopped_inside_epoch(&weights(tr, diag, p), at, epoch)?);
        }
    }
    commit_all(&dirs, epoch + 1)?;
    Ok(stop.expect("a member still training"))
}

/// After epoch `epoch` (0-based) trained to `rows`: phase 1, each member's files with its
/// checkpoint pending; phase 2, every checkpoint committed; then the new bests' weights. A
/// member that stops (diverged) leaves `files`, its summary in `summaries`.
fn end_epoch(
    tr: &mut PackTrainer,
    diag: &(Tensor, Tensor),
    files: &mut [Option<RunFiles>],
    summaries: &mut [Option<Summary>],
    rows: &[Option<EpochRow>],
    epoch: i64,
) -> Result<()> {
    let healthy = |p: usize| {
        let ok = rows[p]
            .as_ref()
            .is_some_and(|r| r.status == EpochStatus::Ok);
        ok && tr.cfgs[p].train.checkpoint
    };
    let dirs = set_writers(files, healthy);
    for (p, row) in rows.iter().enumerate() {
        let (Some(row), Some(f)) = (row, files[p].as_mut()) else {
            continue;
        };
        to_single(tr, p)?;
        let stopped = f.end_epoch(&weights(tr, diag, p), row, None)?;
        if crash_point(format_args!("pack-pending-{p}"), epoch + 1) {
            die(); // the test of a kill inside phase 1
        }
        if stopped {
            summaries[p] = Some(f.summary.clone());
            files[p] = None;
        }
    }
    commit_all(&dirs, epoch + 1)?;
    // A new best's weights only now, so that no member's best.safetensors is ahead of its
    // committed checkpoint (each single model still holds its member's epoch).
    for (p, f) in files.iter_mut().enumerate() {
        if let Some(f) = f {
            f.write_best(&weights(tr, diag, p))?;
        }
    }
    Ok(())
}

// Long on purpose: the pack's version of `train::run`, whose stops between and inside epochs
// it mirrors member by member, top to bottom.
/// Trains the pack of `cfgs` into the members' run directories (resuming each from its
/// checkpoint with `opts.resume`); each member's summary, in order.
#[allow(clippy::too_many_lines)]
pub fn run_pack(cfgs: &[RunConfig], opts: &RunOptions) -> Result<Vec<Summary>> {
    let mut resume = Vec::with_capacity(cfgs.len());
    for c in cfgs {
        resume.push(run_dir::check_dir(c, &c.run_dir(), opts)?);
    }
    let mut tr = PackTrainer::new(cfgs)?;
    for c in cfgs {
        run_dir::create_dir(c, &c.run_dir())?;
    }
    interrupt::install();
    let points = restore(&mut tr, cfgs, &resume)?;
    let diag = tr.diag_batch()?;
    let mut files = Vec::with_capacity(cfgs.len());
    for (p, c) in cfgs.iter().enumerate() {
        let info = RunInfo {
            parameters: trainable_parameters(&tr.singles[p].0),
            tau0: tr.model.tau0[p],
            device: tr.device,
            input_norm: tr.input_norm.clone(),
        };
        files.push(Some(RunFiles::open(
            c,
            &weights(&tr, &diag, p),
            &info,
            points[p],
            opts.quiet,
        )?));
    }
    let ((start_epoch, mut start_step), _) = points[0].unwrap_or(((0, 0), (0.0, 0)));
    let mut summaries: Vec<Option<Summary>> = vec![None; cfgs.len()];
    for (ran, epoch) in (start_epoch..cfgs[0].train.epochs).enumerate() {
        if opts.stop_after.is_some_and(|n| ran as i64 >= n) {
            break;
        }
        if let Some(sig) = interrupt::signal() {
            let mut stop = None;
            for (p, f) in files.iter().enumerate() {
                if let Some(f) = f {
                    to_single(&mut tr, p)?;
                    stop = Some(f.stopped_between_epochs(&weights(&tr, &diag, p), ran > 0, sig)?);
                }
            }
            return Err(stop.unwrap_or_else(|| interrupt::Interrupted("stopped".into()).into()));
        }
        let start = std::mem::take(&mut start_step);
        let mut save = |tr: &mut PackTrainer, steps| -> Result<()> {
            let writes = |p: usize| cfgs[p].train.checkpoint_interval().is_some();
            let dirs = writer_dirs(&files, writes);
            for (p, f) in files.iter().enumerate() {
                let Some(f) = f.as_ref().filter(|_| writes(p)) else {
                    continue;
                };
                to_single(tr, p)?;
                let (vs, opt) = (&tr.singles[p].0, &tr.singles[p].2);
                let at = Some(position(tr, p, steps));
                pack_commit::save_pending(&f.target(), vs, opt, at, &dirs)?;
            }
            commit_all(&dirs, epoch + 1)
        };
        let periodic = PackPeriodic {
            every: cfgs
                .iter()
                .filter_map(|c| c.train.checkpoint_interval())
                .min(),
            save: &mut save,
        };
        let rows = match tr.epoch_from(epoch, start, periodic)? {
            PackEpoch::Done(rows) => rows,
            PackEpoch::Interrupted { steps } => {
                return Err(stop_inside(&mut tr, &diag, &mut files, (epoch, steps))?);
            }
        };
        end_epoch(&mut tr, &diag, &mut files, &mut summaries, &rows, epoch)?;
        if files.iter().all(Option::is_none) {
            break;
        }
    }
    for (p, f) in files.into_iter().enumerate() {
        if let Some(f) = f {
            summaries[p] = Some(f.finish()?);
        }
    }
    Ok(summaries
        .into_iter()
        .map(|s| s.expect("every member ends"))
        .collect())
}
