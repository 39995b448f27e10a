//! `deepres data fetch`: download the official archives, verify their MD5, extract.
//!
//! Downloads go through the `curl` program into `<file>.part`, which is renamed to the
//! final name only after its checksum passed. A file that is already present under the
//! data root is not downloaded again, only verified (and extracted), so a machine without
//! internet access can be fed by copying the official files in by hand.
//!
//! | dataset         | file(s) under the root                          | result                      |
//! |-----------------|--------------------------------------------------|-----------------------------|
//! | `cifar10`       | `cifar-10-binary.tar.gz`                         | `cifar-10-batches-bin/`     |
//! | `cifar100`      | `cifar-100-binary.tar.gz`                        | `cifar-100-binary/`         |
//! | `mnist`         | `mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz` | read gzipped in place |
//! | `fashion-mnist` | `fashion-mnist/…-ubyte.gz` (same names)          | read gzipped in place       |
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use md5::{Digest, Md5};

use super::error::DataError;
use super::{DatasetName, Layout, Located};

/// One official file: where it comes from, where it goes (relative to the data root) and
/// its published MD5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub url: String,
    /// Path relative to the data root.
    pub file: PathBuf,
    pub md5: &'static str,
    /// Whether the file is a `.tar.gz` to extract into the data root.
    pub extract: bool,
}

const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
const CIFAR10_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";
const CIFAR100_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz";
const CIFAR100_MD5: &str = "03b5dce01913d631647c71ecec9e9cb8";
const MNIST_BASE: &str = "https://ossci-datasets.s3.amazonaws.com/mnist";
const MNIST_MD5: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        "d53e105ee54ea40749a09fcbcd1e9432",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        "9fb629c4189551a2d022fa330f9573f3",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        "ec29112dd5afa0611ce80d1b7f02629c",
    ),
];
const FASHION_BASE: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com";
const FASHION_MD5: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        "25c81989df183df01b3e8a0aad5dffbe",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        "bef4ecab320f06d8554ea6380940ec79",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        "bb300cfdad3c16e7a12a480ee83cd310",
    ),
];

/// The official files of `name` (empty for `synthetic`).
pub fn remotes(name: DatasetName) -> Vec<Remote> {
    let archive = |url: &str, md5| Remote {
        url: url.to_string(),
        file: PathBuf::from(url.rsplit('/').next().unwrap()),
        md5,
        extract: true,
    };
    let idx = |base: &str, dir: &str, files: &[(&str, &'static str); 4]| {
        files
            .iter()
            .map(|(f, md5)| Remote {
                url: format!("{base}/{f}"),
                file: Path::new(dir).join(f),
                md5,
                extract: false,
            })
            .collect()
    };
    match name {
        DatasetName::Cifar10 => vec![archive(CIFAR10_URL, CIFAR10_MD5)],
        DatasetName::Cifar100 => vec![archive(CIFAR100_URL, CIFAR100_MD5)],
        DatasetName::Mnist => idx(MNIST_BASE, "mnist", &MNIST_MD5),
        DatasetName::FashionMnist => idx(FASHION_BASE, "fashion-mnist", &FASHION_MD5),
        DatasetName::Synthetic => Vec::new(),
    }
}

/// "How to get the data" for error messages about `name` under `root`.
pub fn hint(name: DatasetName, root: &Path) -> String {
    let files: Vec<String> = remotes(name)
        .iter()
        .map(|r| r.file.display().to_string())
        .collect();
    match name {
        DatasetName::Synthetic => "synthetic data is generated, not read".to_string(),
        DatasetName::Cifar10 | DatasetName::Cifar100 => format!(
            "run `deepres data fetch {name}` (or copy the official binary archive {} into {}/ and rerun the fetch to verify and extract it)",
            files.join(", "),
            root.display()
        ),
        DatasetName::Mnist | DatasetName::FashionMnist => format!(
            "run `deepres data fetch {name}` (or copy the official files {} into {}/)",
            files.join(", "),
            root.display()
        ),
    }
}

/// The MD5 of a file, as 32 lowercase hex digits (streamed, 1 MiB at a time).
pub fn md5_hex(path: &Path) -> anyhow::Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("{}: read error", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Check that `path` has MD5 `expected` (hex, case-insensitive); on a mismatch the error
/// names the file and both digests. Nothing is deleted.
pub fn verify_md5(path: &Path, expected: &str) -> anyhow::Result<()> {
    let found = md5_hex(path)?;
    if !found.eq_ignore_ascii_case(expected) {
        return Err(DataError::Checksum {
            path: path.to_path_buf(),
            expected: expected.to_ascii_lowercase(),
            found,
        }
        .into());
    }
    Ok(())
}

/// Extract the `.tar.gz` `archive` into `dest` (created if needed). Entries that would
/// land outside `dest` are refused by the `tar` crate.
pub fn extract_tar_gz(archive: &Path, dest: &Path) -> anyhow::Result<()> {
    let open = || -> anyhow::Result<tar::Archive<flate2::read::GzDecoder<std::io::BufReader<std::fs::File>>>> {
        let file = std::fs::File::open(archive)
            .with_context(|| format!("{}: cannot open", archive.display()))?;
        let gz = flate2::read::GzDecoder::new(std::io::BufReader::with_capacity(1 << 20, file));
        Ok(tar::Archive::new(gz))
    };
    // First pass: every entry must stay inside `dest`, or nothing is extracted.
    let mut entries = 0;
    for entry in open()?
        .entries()
        .with_context(|| format!("{}: not a tar.gz archive", archive.display()))?
    {
        let entry = entry.with_context(|| format!("{}: corrupt archive", archive.display()))?;
        check_entry(archive, &entry)?;
        entries += 1;
    }
    if entries == 0 {
        bail!("{}: empty archive", archive.display());
    }
    std::fs::create_dir_all(dest)
        .with_context(|| format!("{}: cannot create directory", dest.display()))?;
    open()?.unpack(dest).with_context(|| {
        format!(
            "{}: cannot extract into {}",
            archive.display(),
            dest.display()
        )
    })?;
    Ok(())
}

/// An entry that would land outside the target folder (an absolute path, a `..` component)
/// or that is a link (the official archives hold only files and folders) is refused.
fn check_entry<R: std::io::Read>(archive: &Path, entry: &tar::Entry<R>) -> anyhow::Result<()> {
    let path = entry
        .path()
        .with_context(|| format!("{}: an entry has an unreadable name", archive.display()))?;
    let escapes = path.components().any(|c| {
        !matches!(
            c,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    });
    let kind = entry.header().entry_type();
    let link = kind.is_symlink() || kind.is_hard_link();
    if escapes || link {
        let what = if link {
            "is a link"
        } else {
            "leaves the target folder"
        };
        bail!(
            "{}: entry {:?} {what}: refused, nothing extracted (not an official archive: delete it and fetch again)",
            archive.display(),
            path.display().to_string()
        );
    }
    Ok(())
}

/// Verify an archive already on disk against `md5`, then extract it into `dest`.
pub fn verify_and_extract(archive: &Path, md5: &str, dest: &Path) -> anyhow::Result<()> {
    verify_md5(archive, md5)?;
    extract_tar_gz(archive, dest)
}

/// The temporary name a download of `dest` is written to.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_os_string();
    s.push(".part");
    PathBuf::from(s)
}

/// Download `url` to `dest` with `curl -fL --retry 2`, through `dest.part`; the `.part`
/// file is verified against `md5` and renamed to `dest` only if it matches. If `dest`
/// already exists it is only verified (no network access).
///
/// A failed download is one line: the URL, curl's exit status, "no internet access?", and
/// the manual alternative (copy the file to `dest` and rerun).
pub fn fetch_file(url: &str, dest: &Path, md5: &str) -> anyhow::Result<()> {
    if dest.is_file() {
        eprintln!("{}: already present, verifying md5", dest.display());
        return verify_md5(dest, md5);
    }
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create directory", dir.display()))?;
    }
    let part = part_path(dest);
    eprintln!("downloading {url} -> {}", dest.display());
    let status = Command::new("curl")
        .args(["-fL", "--retry", "2", "--progress-bar", "-o"])
        .arg(&part)
        .arg(url)
        .status();
    let failure = match status {
        Ok(s) if s.success() => None,
        Ok(s) => Some(match s.code() {
            Some(code) => format!("curl exited with status {code}"),
            None => format!("curl was terminated ({s})"),
        }),
        Err(e) => Some(format!("cannot run curl ({e})")),
    };
    if let Some(status) = failure {
        let _ = std::fs::remove_file(&part); // our own partial file only
        return Err(DataError::Download {
            url: url.to_string(),
            status,
            dest: dest.to_path_buf(),
        }
        .into());
    }
    verify_md5(&part, md5)?;
    crate::util::atomic::commit(&part, dest)
}

/// Fetch the files of `sources` into `root` (download or verify each, extract archives).
/// [`fetch`] calls this with [`remotes`]; tests pass their own URLs.
pub fn fetch_sources(sources: &[Remote], root: &Path) -> anyhow::Result<()> {
    for r in sources {
        let dest = root.join(&r.file);
        fetch_file(&r.url, &dest, r.md5)?;
        if r.extract {
            eprintln!("extracting {} into {}", dest.display(), root.display());
            extract_tar_gz(&dest, root)?;
        }
    }
    Ok(())
}

/// Download (unless present), verify and extract the official files of `name` into
/// `root`, then check that the dataset loads. `synthetic` needs nothing.
pub fn fetch(name: DatasetName, root: &Path) -> anyhow::Result<()> {
    if name == DatasetName::Synthetic {
        eprintln!("synthetic: generated on the fly, nothing to fetch");
        return Ok(());
    }
    fetch_sources(&remotes(name), root)?;
    // Check what was extracted/downloaded is readable at the official sizes.
    let layout = match name {
        DatasetName::Cifar10 | DatasetName::Cifar100 => Layout::CifarBinary,
        _ => Layout::Idx,
    };
    let at = Located {
        layout,
        dir: root.join(super::dir_name(name)),
        note: None,
    };
    super::read_splits(name, &at, false)?;
    eprintln!("{name}: ready in {}", at.dir.display());
    Ok(())
}
