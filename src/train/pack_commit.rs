//! A pack's checkpoints, all or none. The members of a pack write their checkpoints one after
//! another; a kill between two of them would leave the members at different points, so the
//! rerun could not pack them together again and the one behind would train on alone, its
//! curve no longer the uninterrupted pack's byte for byte (grouped and ordinary convolutions
//! round differently). So a pack writes each member's checkpoint in two phases:
//!
//! 1. every member's checkpoint goes to `checkpoint.pending.safetensors` beside its live one,
//!    naming the pack's members (the run directories that write one now);
//! 2. once all are written, each is renamed over the live checkpoint ([`commit`]).
//!
//! Before a run directory is resumed ([`settle`], from [`super::run_dir::check_dir`]), a
//! pending checkpoint is committed when every member it names has this point's checkpoint,
//! pending or live (phase 1 was complete: the kill fell inside phase 2), and removed
//! otherwise (phase 1 was not: every live checkpoint is still the previous point). Each member
//! decides alone and every member decides the same way, so the members resume at one point.
//! [`resume_point`] tells the sweep's planner that point without changing anything.
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::Tensor;

use super::checkpoint::{self, Position, Target};
use super::sgd::Sgd;
use crate::util::safetensors_file;

/// A member's checkpoint written by phase 1, not yet committed.
pub const PENDING_FILE: &str = "checkpoint.pending.safetensors";

/// The name of the tensor that lists the pack's run directories (UTF-8, one per line).
const MEMBERS: &str = "pack.members";

pub fn pending_path(dir: &Path) -> PathBuf {
    dir.join(PENDING_FILE)
}

/// Phase 1 for one member: its checkpoint at `target`'s point (with `position` inside the
/// next epoch, or none), pending, naming the pack's `members`.
pub(crate) fn save_pending(
    target: &Target,
    vs: &VarStore,
    opt: &Sgd,
    position: Option<Position>,
    members: &[PathBuf],
) -> Result<()> {
    // Absolute, so that a rerun from another working directory finds the same members.
    let list: Vec<String> = members
        .iter()
        .map(|m| std::path::absolute(m).unwrap_or_else(|_| m.clone()))
        .map(|m| m.display().to_string())
        .collect();
    let extra = vec![(
        MEMBERS.to_string(),
        Tensor::from_slice(list.join("\n").as_bytes()),
    )];
    let path = pending_path(target.dir);
    checkpoint::save_to(&path, vs, opt, &target.saved(position), extra)
}

/// Phase 2 for one member: its pending checkpoint becomes its checkpoint (rename, fsync).
pub fn commit(dir: &Path) -> Result<()> {
    crate::util::atomic::commit(&pending_path(dir), &checkpoint::path(dir))
}

/// (epochs done, step inside the next) of checkpoint `tensors`, None when it has no epoch.
fn point_in(tensors: &BTreeMap<String, Tensor>) -> Option<(i64, i64)> {
    let get = |k: &str| tensors.get(k).map(|t| t.int64_value(&[0]));
    Some((get("meta.epoch")?, get("position.step").unwrap_or(0)))
}

/// The tensors of the checkpoint file at `path` that the pack's resume reads: its point and
/// its member list, without the weights (a pack of ten ResNet-1202 reads each member's files
/// ten times).
fn resume_tensors(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    safetensors_file::read_named(path, &["meta.epoch", "position.step", MEMBERS])
}

/// [`point_in`] of the checkpoint file at `path`, None when absent or unreadable.
fn point_of(path: &Path) -> Option<(i64, i64)> {
    point_in(&resume_tensors(path).ok()?)
}

/// Whether the pending checkpoint of `dir` is to be committed (Some(true)), removed
/// (Some(false)), or there is none (None); see the module doc. The pending file is read once.
fn verdict(dir: &Path) -> Option<bool> {
    let pending = pending_path(dir);
    if !pending.exists() {
        return None;
    }
    let Ok(tensors) = resume_tensors(&pending) else {
        return Some(false);
    };
    let (Some(at), Some(list)) = (point_in(&tensors), tensors.get(MEMBERS)) else {
        return Some(false);
    };
    let bytes = Vec::<u8>::try_from(list).unwrap_or_default();
    let members = String::from_utf8_lossy(&bytes).into_owned();
    let complete = members.lines().all(|m| {
        let m = Path::new(m);
        point_of(&pending_path(m)) == Some(at) || point_of(&checkpoint::path(m)) >= Some(at)
    });
    Some(complete)
}

/// Commits or removes the pending checkpoint of `dir`, as its pack's other members will (the
/// caller holds the run's lock).
pub fn settle(dir: &Path) -> Result<()> {
    match verdict(dir) {
        Some(true) => commit(dir).with_context(|| format!("{}: committing", dir.display())),
        Some(false) => std::fs::remove_file(pending_path(dir))
            .with_context(|| format!("{}: removing", pending_path(dir).display())),
        None => Ok(()),
    }
}

/// Where `dir` resumes once settled: (epochs done, step inside the next); (0, 0) without a
/// checkpoint; None when the checkpoint to resume from cannot be read.
pub fn resume_point(dir: &Path) -> Option<(i64, i64)> {
    let path = match verdict(dir) {
        Some(true) => pending_path(dir),
        _ => checkpoint::path(dir),
    };
    if !path.exists() {
        return Some((0, 0));
    }
    point_of(&path)
}
