//! The per-epoch CSV log, `metrics.csv`: one row per epoch, appended and flushed (and fsynced)
//! as soon as the epoch ends. On resume, rows past the checkpoint's epoch are dropped so every
//! epoch appears exactly once.
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

pub const COLUMNS: [&str; 11] = [
    "epoch",
    "lr",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "grad_norm",
    "tau",
    "epoch_seconds",
    "images_per_second",
    "status",
];

/// One row of metrics.csv (the column order is [`COLUMNS`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochRow {
    pub epoch: i64,
    pub lr: f64,
    pub train_loss: f64,
    pub train_acc: f64,
    pub test_loss: f64,
    pub test_acc: f64,
    pub grad_norm: f64,
    pub tau: f64,
    pub epoch_seconds: f64,
    pub images_per_second: f64,
    pub status: EpochStatus,
}

/// The status column of metrics.csv.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpochStatus {
    /// A healthy epoch.
    Ok,
    /// The loss became NaN or inf (the run stops there).
    Diverged,
}

/// Appends one row (writing the header first if the file is new), then fsyncs; a failed write
/// leaves the file as it was ([`crate::util::atomic::append`]).
pub fn append(path: &Path, row: &EpochRow) -> Result<()> {
    append_rows(path, std::slice::from_ref(row), row.epoch)
}

/// Appends `rows` of an epoch-keyed CSV (metrics.csv, blocks.csv: first column `epoch`),
/// the header first if the file is new, then flushes and fsyncs; `epoch` names the crash
/// point of the tests.
pub fn append_rows<T: Serialize>(path: &Path, rows: &[T], epoch: i64) -> Result<()> {
    let new = !path.exists()
        || std::fs::metadata(path)
            .map(|m| m.len() == 0)
            .unwrap_or(true);
    let bytes = crate::util::csv_rows::to_bytes(path, rows, new)?;
    if super::crash_point("csv-row", epoch) {
        // the test of a kill inside this write: half the row, then SIGKILL
        let mut file = OpenOptions::new().append(true).create(true).open(path)?;
        file.write_all(&bytes[..bytes.len() / 2])?;
        file.sync_data()?;
        super::die();
    }
    // A failed append (a full disk) is cut back: the file keeps its complete rows.
    crate::util::atomic::append(path, &bytes)
}

/// Reads all rows.
pub fn read(path: &Path) -> Result<Vec<EpochRow>> {
    crate::util::csv_rows::read(path)
}

/// Keeps the header and the complete rows with epoch ≤ `last_epoch`; a missing file stays
/// missing. A torn last line (a kill inside [`append`]) is dropped too, so this also repairs a
/// file that [`read`] refuses. The file is rewritten atomically (temporary file, fsync, rename)
/// and only when something is dropped.
pub fn truncate_after(path: &Path, last_epoch: i64) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut kept: Vec<u8> = Vec::with_capacity(bytes.len());
    for (i, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        if !line.ends_with(b"\n") {
            break; // torn: the process died while writing it
        }
        let first = line.split(|&b| b == b',').next().unwrap_or_default();
        let keep = match std::str::from_utf8(first)
            .ok()
            .and_then(|f| f.trim().parse::<i64>().ok())
        {
            Some(epoch) => epoch <= last_epoch,
            None => i == 0 && first == b"epoch",
        };
        if keep {
            kept.extend_from_slice(line);
        }
    }
    if kept == bytes {
        return Ok(());
    }
    crate::util::atomic::write_atomic(path, &kept)
}
