//! Errors of the dataset readers and the fetcher.
//!
//! Every variant renders as ONE line that names the file, says what was expected and what
//! was found, and (through `hint`) how to get the data, e.g.
//!
//! ```text
//! data/cifar-10-batches-bin/data_batch_3.bin: truncated: expected 30730000 bytes, found 1234; run `deepres data fetch cifar10` (or copy the official binary archive into data/)
//! ```
//!
//! The low-level readers do not know which dataset a file belongs to, so they return errors
//! with an empty hint and the dataset-level readers attach one with [`DataError::with_hint`].
use std::fmt;
use std::path::PathBuf;

/// How to obtain missing data; rendered as `"; <text>"` after the message, or nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hint(pub String);

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, "; {}", self.0)
        }
    }
}

/// A dataset file that cannot be used, or a download/checksum failure.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file does not exist.
    #[error("{}: missing: expected a file of {expected} bytes{hint}", path.display())]
    Missing {
        path: PathBuf,
        expected: u64,
        hint: Hint,
    },

    /// The file (or its decompressed content) is shorter than the format requires.
    #[error("{}: truncated: expected {expected} bytes, found {found}{hint}", path.display())]
    Truncated {
        path: PathBuf,
        expected: u64,
        found: u64,
        hint: Hint,
    },

    /// The file (or its decompressed content) is longer than the format allows.
    #[error("{}: wrong size: expected {expected} bytes, found {found}{hint}", path.display())]
    WrongSize {
        path: PathBuf,
        expected: u64,
        found: u64,
        hint: Hint,
    },

    /// The content does not have the expected format (magic number, dimensions, labels).
    #[error("{}: {what}{hint}", path.display())]
    Format {
        path: PathBuf,
        what: String,
        hint: Hint,
    },

    /// An I/O error other than "not found" (permissions, corrupt gzip stream, ...).
    #[error("{}: {source}{hint}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
        hint: Hint,
    },

    /// A file's MD5 digest differs from the published one.
    #[error("{}: checksum mismatch: expected md5 {expected}, found {found}", path.display())]
    Checksum {
        path: PathBuf,
        expected: String,
        found: String,
    },

    /// `curl` failed (or could not be started).
    #[error("download of {url} failed: {status} (no internet access?); alternatively copy the file to {} by hand and rerun", dest.display())]
    Download {
        url: String,
        status: String,
        dest: PathBuf,
    },
}

impl DataError {
    /// Replace the "how to get the data" hint (no effect on checksum/download errors).
    pub fn with_hint(mut self, text: &str) -> DataError {
        match &mut self {
            DataError::Missing { hint, .. }
            | DataError::Truncated { hint, .. }
            | DataError::WrongSize { hint, .. }
            | DataError::Format { hint, .. }
            | DataError::Io { hint, .. } => *hint = Hint(text.to_string()),
            DataError::Checksum { .. } | DataError::Download { .. } => {}
        }
        self
    }

    /// `Truncated` or `WrongSize` depending on which way `found` differs from `expected`.
    pub fn size(path: impl Into<PathBuf>, expected: u64, found: u64) -> DataError {
        let path = path.into();
        let hint = Hint::default();
        if found < expected {
            DataError::Truncated {
                path,
                expected,
                found,
                hint,
            }
        } else {
            DataError::WrongSize {
                path,
                expected,
                found,
                hint,
            }
        }
    }

    /// A format error with an empty hint.
    pub fn format(path: impl Into<PathBuf>, what: impl Into<String>) -> DataError {
        DataError::Format {
            path: path.into(),
            what: what.into(),
            hint: Hint::default(),
        }
    }

    /// Map an I/O error on `path`: "not found" becomes [`DataError::Missing`] (with the
    /// size the file should have), anything else [`DataError::Io`].
    pub fn io(path: impl Into<PathBuf>, expected: u64, source: std::io::Error) -> DataError {
        let path = path.into();
        let hint = Hint::default();
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::Missing {
                path,
                expected,
                hint,
            }
        } else {
            DataError::Io { path, source, hint }
        }
    }
}
