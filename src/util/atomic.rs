//! The one atomic writer: every file deepres writes goes through here. The bytes go to a
//! temporary file beside the target, which is fsynced, renamed over the target, and then the
//! directory is fsynced, so that a reader, a kill -9 or a node crash sees the old file or the
//! new one, never half of one. A write that fails (a full disk above all) removes its temporary
//! file, leaves the target as it was and says so in one line naming the file
//! ([`write_error`]). Appends to a log ([`append`]) are cut back to their previous length when
//! they fail, so a full disk never leaves half a row.
use anyhow::{anyhow, Context, Result};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically (see the module doc).
pub fn write_atomic(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes.as_ref()).map_err(Into::into))
}

/// Like [`write_atomic`], with the content written by `fill` into the temporary file (for
/// writers that stream, e.g. CSV writers). The file is fsynced through the descriptor that
/// wrote it (some NFS clients report a write-back error to it alone), then renamed.
pub fn write_atomic_with(path: &Path, fill: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let tmp = temp_path(path);
    let written = File::create(&tmp)
        .map_err(anyhow::Error::from)
        .and_then(|mut f| {
            fill(&mut f)?;
            f.flush()?;
            f.sync_all()?;
            trace("fsync file");
            Ok(())
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(write_error(path, e));
    }
    install(&tmp, path)
}

/// Like [`write_atomic`], for writers that create the file themselves from its path
/// (libtorch's `save`, image encoders): `fill` writes the temporary file it is given, which is
/// then fsynced and renamed over `path`; when `fill` fails, the temporary file is removed.
pub fn write_atomic_by_path(path: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_path(path);
    if let Err(e) = fill(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(write_error(path, e));
    }
    commit(&tmp, path)
}

/// Creates the directory `dir` (a `what`, e.g. "run directory", in the errors) and checks that
/// files can be created in it, with a probe file named by this process.
pub fn ensure_writable_dir(dir: &Path, what: &str) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create the {what}", dir.display()))?;
    let probe = dir.join(format!(".write-test-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .with_context(|| format!("{}: {what} is not writable", dir.display()))?;
    std::fs::remove_file(&probe).ok();
    Ok(())
}

/// fsyncs a finished temporary file (from [`temp_path`]), renames it over `path` and fsyncs
/// the directory; on failure the temporary file is removed and `path` is left as it was.
pub fn commit(tmp: &Path, path: &Path) -> Result<()> {
    let synced = File::open(tmp).and_then(|f| f.sync_all());
    trace("fsync file");
    if let Err(e) = synced {
        let _ = std::fs::remove_file(tmp);
        return Err(write_error(path, e.into()));
    }
    install(tmp, path)
}

/// Renames the fsynced temporary file `tmp` over `path` and fsyncs the directory; on failure
/// the temporary file is removed and `path` is left as it was.
fn install(tmp: &Path, path: &Path) -> Result<()> {
    if let Err(e) = std::fs::rename(tmp, path) {
        let _ = std::fs::remove_file(tmp);
        return Err(write_error(path, e.into()));
    }
    trace("rename");
    sync_dir(path)
}

/// Appends `bytes` to `path` (created when missing) and fsyncs it. When the write fails (a
/// full disk), the file is cut back to its previous length: it never keeps half of `bytes`.
pub fn append(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| write_error(path, e.into()))?;
    let before = f.metadata().map_err(|e| write_error(path, e.into()))?.len();
    if let Err(e) = f.write_all(bytes).and_then(|_| f.sync_data()) {
        let _ = f.set_len(before).and_then(|_| f.sync_data());
        return Err(write_error(path, e.into()));
    }
    trace("fsync file");
    Ok(())
}

/// True when `e` (any cause in its chain) is a full disk or an exhausted quota.
pub fn is_no_space(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(|io| io.raw_os_error())
            .is_some_and(|code| code == libc::ENOSPC || code == libc::EDQUOT)
            || c.to_string().contains("No space left on device")
    })
}

/// The one-line error of a failed write of `path`: a full disk says so, with the fix.
pub fn write_error(path: &Path, e: anyhow::Error) -> anyhow::Error {
    if is_no_space(&e) {
        anyhow!(
            "{}: cannot write: no space left on the device (the previous file is kept; free some space, then rerun: a run continues with --resume)",
            path.display()
        )
    } else {
        anyhow!("{}: cannot write: {e:#}", path.display())
    }
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

/// Removes the temporary files ([`temp_path`]) that other processes left in `dir`, killed
/// inside a write; returns how many. Only for a directory this process alone writes (a run
/// directory under its lock): a name with this process's pid is left alone.
pub fn remove_stale_temporaries(dir: &Path) -> usize {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let stale = temp_owner(&name).is_some_and(|pid| pid != me);
        if stale && e.path().is_file() && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The pid in a [`temp_path`] name: `.<stem>.<pid>.tmp` or `.<stem>.<pid>.tmp.<ext>`.
fn temp_owner(name: &str) -> Option<&str> {
    let (head, tail) = name.strip_prefix('.')?.rsplit_once(".tmp")?;
    let ext_ok = tail.is_empty()
        || tail
            .strip_prefix('.')
            .is_some_and(|x| !x.is_empty() && !x.contains('.'));
    let (_, pid) = head.rsplit_once('.')?;
    (ext_ok && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())).then_some(pid)
}

/// Moves `path` aside to `<stem>.<unix time>.<ext>` beside it (results of other settings, kept
/// rather than overwritten) and returns the new path.
pub fn move_aside(path: &Path) -> Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.{secs}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{secs}"),
    };
    let aside = path.with_file_name(name);
    std::fs::rename(path, &aside)
        .with_context(|| format!("{}: cannot move aside", path.display()))?;
    sync_dir(path)?;
    Ok(aside)
}

/// fsyncs the directory holding `path`, so that a rename in it survives a crash.
pub fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| anyhow!("{}: cannot sync the directory: {e}", dir.display()))?;
    trace("fsync dir");
    Ok(())
}

#[cfg(test)]
thread_local! {
    static TRACE: std::cell::RefCell<Vec<&'static str>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Records a durability step of this thread (unit tests read the order back).
fn trace(_step: &'static str) {
    #[cfg(test)]
    TRACE.with(|t| t.borrow_mut().push(_step));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps() -> Vec<&'static str> {
        TRACE.with(|t| std::mem::take(&mut *t.borrow_mut()))
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_write_fsyncs_the_file_then_renames_then_fsyncs_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("a.csv");
        steps();
        write_atomic(&p, "x\n").unwrap();
        assert_eq!(steps(), ["fsync file", "rename", "fsync dir"]);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "x\n");
        write_atomic_by_path(&p, |t| Ok(std::fs::write(t, "y\n")?)).unwrap();
        assert_eq!(steps(), ["fsync file", "rename", "fsync dir"]);
        assert_eq!(names(tmp.path()), ["a.csv"], "no temporary file is left");
        append(&p, b"z\n").unwrap();
        assert_eq!(steps(), ["fsync file"]);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "y\nz\n");
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_its_temporary_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("a.csv");
        write_atomic(&p, "old\n").unwrap();
        let err = write_atomic_with(&p, |f| {
            f.write_all(b"half")?;
            Err(std::io::Error::from_raw_os_error(libc::ENOSPC).into())
        })
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("a.csv") && msg.contains("no space left") && !msg.contains('\n'),
            "{msg}"
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old\n");
        assert_eq!(names(tmp.path()), ["a.csv"]);
        let other = write_atomic_by_path(&p, |_| anyhow::bail!("encoder failed")).unwrap_err();
        assert!(format!("{other:#}").contains("encoder failed"));
        assert!(!is_no_space(&other));
    }

    #[test]
    fn stale_temporaries_of_other_processes_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let names = [
            (".metrics.4000000001.tmp.csv", true),
            (".checkpoint.pending.12.tmp.safetensors", true),
            (".summary.7.tmp", true),
            (&*format!(".metrics.{me}.tmp.csv"), false),
            ("metrics.csv", false),
            (".a.b.tmp.csv", false),
            (".x.12.tmp.csv.bak", false),
            ("x.12.tmp.csv", false),
        ];
        for (n, _) in &names {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        assert_eq!(remove_stale_temporaries(dir.path()), 3);
        for (n, removed) in &names {
            assert_eq!(!dir.path().join(n).exists(), *removed, "{n}");
        }
        assert_eq!(
            temp_owner(
                &temp_path(Path::new("d/best.safetensors"))
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
            ),
            Some(&*me.to_string())
        );
    }
}
