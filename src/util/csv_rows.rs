//! Row tables as CSV through serde: the one reader, the one whole-file writer (atomic) and the
//! bytes of rows to append ([`super::atomic::append`] writes those), for every CSV of typed
//! rows (metrics.csv, blocks.csv, probe.csv, scaling.csv).
use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;

/// Every row of the CSV at `path` (its first line the header); a row that does not parse is
/// an error naming the file.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("{}: cannot read", path.display()))?;
    r.deserialize()
        .map(|row| row.with_context(|| format!("{}: malformed row", path.display())))
        .collect()
}

/// `rows` as CSV bytes, after the header when `header` (to append to the file at `path`,
/// named in the errors).
pub fn to_bytes<T: Serialize>(path: &Path, rows: &[T], header: bool) -> Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(header)
        .from_writer(Vec::new());
    for row in rows {
        w.serialize(row)
            .with_context(|| format!("{}: cannot write row", path.display()))?;
    }
    w.into_inner()
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.error()))
}

/// Writes the header and `rows` to `path` atomically, creating its directory.
pub fn write<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    let bytes = to_bytes(path, rows, true)?;
    super::atomic::write_atomic(path, bytes)
}
