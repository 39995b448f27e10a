//! Which directory under the data root a dataset is read from, and in which layout.
//!
//! Each dataset has candidate directories, tried in this order:
//!
//! | name            | candidates                                                                  |
//! |-----------------|-----------------------------------------------------------------------------|
//! | `cifar10`       | `<root>/cifar-10-batches-bin` (binary), `<root>/cifar-10-batches-py` (torchvision's python) |
//! | `cifar100`      | `<root>/cifar-100-binary` (binary), `<root>/cifar-100-python` (torchvision's python) |
//! | `mnist`         | `<root>/mnist`, `<root>/MNIST/raw` (torchvision), `/usr/share/datasets/mnist` |
//! | `fashion-mnist` | `<root>/fashion-mnist`, `<root>/FashionMNIST/raw` (torchvision), `/usr/share/datasets/fashion-mnist` |
//!
//! So a data root that is torchvision's root (the folder holding `cifar-10-batches-py`,
//! `MNIST/`, ...) just works. The first candidate that holds all its files is used; when
//! none does, the first one under the root that is a directory (errors then name its first
//! missing file), else the first candidate. When more than one candidate under the root is a
//! directory, [`Located::note`] says which one is read.
use std::path::{Path, PathBuf};

use super::{cifar, dir_name, fetch, idx, DatasetName, SYSTEM_DATASETS};

/// How a dataset's files are laid out on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The official CIFAR binary version (`cifar-10-batches-bin/`, `cifar-100-binary/`).
    CifarBinary,
    /// torchvision's CIFAR python version: pickled batches (`cifar-10-batches-py/`,
    /// `cifar-100-python/`).
    CifarPython,
    /// IDX files in `<root>/mnist` or `<root>/fashion-mnist`.
    Idx,
    /// IDX files where torchvision keeps them: `<root>/MNIST/raw`, `<root>/FashionMNIST/raw`.
    TorchvisionIdx,
    /// IDX files of a distribution package under `/usr/share/datasets`.
    SystemIdx,
    /// Generated, nothing read (`synthetic`).
    Generated,
}

impl Layout {
    /// The layout in words, for notes and `deepres data check`.
    pub fn describe(self) -> &'static str {
        match self {
            Layout::CifarBinary => "binary layout",
            Layout::CifarPython => "torchvision python layout",
            Layout::Idx => "IDX layout",
            Layout::TorchvisionIdx => "torchvision IDX layout",
            Layout::SystemIdx => "system copy (IDX)",
            Layout::Generated => "generated data",
        }
    }

    fn is_idx(self) -> bool {
        matches!(
            self,
            Layout::Idx | Layout::TorchvisionIdx | Layout::SystemIdx
        )
    }
}

/// Where a dataset is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub layout: Layout,
    pub dir: PathBuf,
    /// Set when another candidate directory is under the root too: which one is read.
    pub note: Option<String>,
}

/// The candidate directories of `name` under `root`, in the order they are tried.
pub fn candidates(name: DatasetName, root: &Path) -> Vec<(Layout, PathBuf)> {
    let system = Path::new(SYSTEM_DATASETS).join(dir_name(name));
    let own = root.join(dir_name(name));
    match name {
        DatasetName::Cifar10 => vec![
            (Layout::CifarBinary, own),
            (Layout::CifarPython, root.join(cifar::CIFAR10_PY_DIR)),
        ],
        DatasetName::Cifar100 => vec![
            (Layout::CifarBinary, own),
            (Layout::CifarPython, root.join(cifar::CIFAR100_PY_DIR)),
        ],
        DatasetName::Mnist => vec![
            (Layout::Idx, own),
            (Layout::TorchvisionIdx, root.join("MNIST/raw")),
            (Layout::SystemIdx, system),
        ],
        DatasetName::FashionMnist => vec![
            (Layout::Idx, own),
            (Layout::TorchvisionIdx, root.join("FashionMNIST/raw")),
            (Layout::SystemIdx, system),
        ],
        DatasetName::Synthetic => vec![(Layout::Generated, own)],
    }
}

/// The files a CIFAR directory of `layout` must hold.
fn cifar_files(name: DatasetName, layout: Layout) -> Vec<String> {
    let ext = if layout == Layout::CifarBinary {
        ".bin"
    } else {
        ""
    };
    let names: Vec<String> = match name {
        DatasetName::Cifar10 => (1..=5)
            .map(|i| format!("data_batch_{i}"))
            .chain(["test_batch".to_string()])
            .collect(),
        _ => vec!["train".into(), "test".into()],
    };
    names.into_iter().map(|f| f + ext).collect()
}

/// The first file of `name` missing from `dir` read as `layout` (`<dir>/` when the directory
/// itself is missing, `<dir>/<file>[.gz]` for IDX), or `None` when all are there.
pub fn first_missing(name: DatasetName, layout: Layout, dir: &Path) -> Option<String> {
    if layout == Layout::Generated {
        return None;
    }
    if !dir.is_dir() {
        return Some(format!("{}/", dir.display()));
    }
    if layout.is_idx() {
        let base = idx::IDX_FILES
            .iter()
            .find(|f| idx::find_idx_file(dir, f).is_none())?;
        return Some(format!("{}[.gz]", dir.join(base).display()));
    }
    cifar_files(name, layout)
        .iter()
        .map(|f| dir.join(f))
        .find(|p| !p.is_file())
        .map(|p| p.display().to_string())
}

/// Where `name` is read from under `root`: see the module documentation.
pub fn locate(name: DatasetName, root: &Path) -> Located {
    let all = candidates(name, root);
    let under_root: Vec<&(Layout, PathBuf)> = all
        .iter()
        .filter(|(l, d)| *l != Layout::SystemIdx && d.is_dir())
        .collect();
    let (layout, dir) = all
        .iter()
        .find(|(l, d)| first_missing(name, *l, d).is_none())
        .or_else(|| under_root.first().copied())
        .unwrap_or(&all[0])
        .clone();
    let others: Vec<String> = under_root
        .iter()
        .filter(|(_, d)| *d != dir)
        .map(|(l, d)| format!("the {} in {}", l.describe(), d.display()))
        .collect();
    let note = (!others.is_empty()).then(|| {
        format!(
            "{name}: reading the {} in {}, not {}",
            layout.describe(),
            dir.display(),
            others.join(", ")
        )
    });
    Located { layout, dir, note }
}

/// What is missing of `name` under `root` (a directory or a file), if anything.
pub fn missing(name: DatasetName, root: &Path) -> Option<String> {
    let at = locate(name, root);
    first_missing(name, at.layout, &at.dir)
}

/// "How to get the data" for errors about `name` read from `at` under `root`.
pub fn hint(name: DatasetName, at: &Located, root: &Path) -> String {
    let (archive, class) = match name {
        DatasetName::Cifar10 => ("cifar-10-python.tar.gz", "CIFAR10"),
        _ => ("cifar-100-python.tar.gz", "CIFAR100"),
    };
    match at.layout {
        Layout::CifarPython => format!(
            "re-extract torchvision's {archive} into {}/ (what torchvision.datasets.{class}(root, download=True) fetches), or run `deepres data fetch {name}` for the binary version",
            root.display()
        ),
        _ => fetch::hint(name, root),
    }
}
