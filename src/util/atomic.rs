//! The one atomic writer: every file deepres writes goes through here. The bytes go to a
//! temporary file beside the target, which is fsynced, renamed over the target, and then the
//! directory is fsynced, so that a reader, a kill -9 or a node crash sees the old file or the
//! new one, never half of one.
use anyhow::{anyhow, Result};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically (see the module doc).
pub fn write_atomic(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes.as_ref()).map_err(Into::into))
}

/// Like [`write_atomic`], with the content written by `fill` into the temporary file (for
/// writers that stream, e.g. libtorch's tensor files or CSV writers).
pub fn write_atomic_with(path: &Path, fill: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let tmp = temp_path(path);
    let result = (|| -> Result<()> {
        let mut f = File::create(&tmp)?;
        fill(&mut f)?;
        f.sync_all()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(anyhow!("{}: cannot write: {e:#}", path.display()));
    }
    commit(&tmp, path)
}

/// Renames a finished temporary file (from [`temp_path`]) over `path` and fsyncs the directory.
/// For writers that must produce the temporary file themselves (e.g. libtorch's `save`).
pub fn commit(tmp: &Path, path: &Path) -> Result<()> {
    if let Ok(f) = File::open(tmp) {
        f.sync_all()
            .map_err(|e| anyhow!("{}: cannot write: {e}", tmp.display()))?;
    }
    std::fs::rename(tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(tmp);
        anyhow!("{}: cannot write: {e}", path.display())
    })?;
    sync_dir(path)
}

/// The temporary file beside `path`: hidden, named after it and this process, with the same
/// extension (encoders such as the PNG one pick the format from it):
/// `dir/.metrics.<pid>.tmp.csv` for `dir/metrics.csv`.
pub fn temp_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let pid = std::process::id();
    match path.extension() {
        Some(ext) => path.with_file_name(format!(".{stem}.{pid}.tmp.{}", ext.to_string_lossy())),
        None => path.with_file_name(format!(".{stem}.{pid}.tmp")),
    }
}

/// fsyncs the directory holding `path`, so that a rename in it survives a crash.
pub fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| anyhow!("{}: cannot sync the directory: {e}", dir.display()))
}
