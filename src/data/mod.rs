//! Datasets: readers for the official CIFAR-10/100 binary and (Fashion-)MNIST IDX files and
//! for torchvision's layouts of them (pickled CIFAR batches, `MNIST/raw/`), a seeded
//! synthetic CIFAR-shaped set, the on-device batch loader and the fetcher.
//!
//! Everything read from disk comes back as CPU tensors (images uint8 `[N,C,H,W]`, labels
//! int64 `[N]`); [`loader::DeviceData`] moves a set to the training device.
//!
//! Files are looked for under a data root (default `data/`), see [`layout`] for the order
//! in which the candidate directories are tried:
//!
//! | name            | directories                   |
//! |-----------------|-------------------------------|
//! | `cifar10`       | `<root>/cifar-10-batches-bin`, `<root>/cifar-10-batches-py` (torchvision) |
//! | `cifar100`      | `<root>/cifar-100-binary`, `<root>/cifar-100-python` (torchvision) |
//! | `mnist`         | `<root>/mnist`, `<root>/MNIST/raw` (torchvision), `/usr/share/datasets/mnist` |
//! | `fashion-mnist` | `<root>/fashion-mnist`, `<root>/FashionMNIST/raw` (torchvision), `/usr/share/datasets/fashion-mnist` (Debian `dataset-fashion-mnist`) |
//! | `synthetic`     | generated, nothing read       |
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use tch::{Kind, Tensor};

pub mod cifar;
pub mod error;
pub mod fetch;
pub mod idx;
pub mod layout;
pub mod loader;
pub mod pickle;
pub mod synthetic;

pub use error::DataError;
pub use fetch::{extract_tar_gz, fetch, verify_and_extract, verify_md5};
pub use layout::{locate, Layout, Located};
pub use loader::{augment, crop_with_offsets, flip_where, Augment, DeviceData};

/// Where distribution packages install datasets (Debian's `dataset-fashion-mnist`).
pub const SYSTEM_DATASETS: &str = "/usr/share/datasets";

/// The datasets deepres knows. On the CLI and in YAML: `cifar10`, `cifar100`, `mnist`,
/// `fashion-mnist`, `synthetic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    #[serde(rename = "cifar10")]
    Cifar10,
    #[serde(rename = "cifar100")]
    Cifar100,
    #[serde(rename = "mnist")]
    Mnist,
    #[serde(rename = "fashion-mnist")]
    FashionMnist,
    #[serde(rename = "synthetic")]
    Synthetic,
}

impl DatasetName {
    /// All datasets, in the order of the docs.
    pub const ALL: [DatasetName; 5] = [
        DatasetName::Cifar10,
        DatasetName::Cifar100,
        DatasetName::Mnist,
        DatasetName::FashionMnist,
        DatasetName::Synthetic,
    ];

    /// The CLI/YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetName::Cifar10 => "cifar10",
            DatasetName::Cifar100 => "cifar100",
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Synthetic => "synthetic",
        }
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DatasetName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DatasetName::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = DatasetName::ALL.iter().map(|n| n.as_str()).collect();
                format!(
                    "unknown dataset `{s}`: expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Images and labels of one split, on the CPU.
#[derive(Debug)]
pub struct Dataset {
    /// uint8 `[N, C, H, W]`.
    pub images: Tensor,
    /// int64 `[N]`.
    pub labels: Tensor,
}

impl Dataset {
    /// Number of examples.
    pub fn len(&self) -> i64 {
        self.labels.size()[0]
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first `min(n, len)` examples (a view, no copy).
    pub fn subset(&self, n: i64) -> Dataset {
        let n = n.clamp(0, self.len());
        Dataset {
            images: self.images.narrow(0, 0, n),
            labels: self.labels.narrow(0, 0, n),
        }
    }
}

/// A dataset's train and test splits with their shape and normalization statistics.
#[derive(Debug)]
pub struct DataSplit {
    pub name: DatasetName,
    pub train: Dataset,
    pub test: Dataset,
    pub num_classes: i64,
    pub channels: i64,
    pub height: i64,
    pub width: i64,
    /// Per-channel mean, in `[0, 1]` pixel units.
    pub mean: Vec<f64>,
    /// Per-channel standard deviation, in `[0, 1]` pixel units.
    pub std: Vec<f64>,
    /// Where the files were read from (`None` for generated data).
    pub source: Option<Located>,
}

/// What to load.
#[derive(Debug, Clone)]
pub struct DataSpec {
    pub name: DatasetName,
    /// The data root, default `data`.
    pub root: PathBuf,
    /// Size of the synthetic training set.
    pub synthetic_train: i64,
    /// Size of the synthetic test set.
    pub synthetic_test: i64,
    /// Seed of the synthetic data.
    pub seed: u64,
    /// CIFAR-100: the 20 coarse labels instead of the 100 fine ones.
    pub coarse_labels: bool,
    /// Keep only the first n training examples.
    pub limit_train: Option<i64>,
    /// Keep only the first n test examples.
    pub limit_test: Option<i64>,
}

impl DataSpec {
    /// Defaults: root `data`, synthetic 10000 train / 2000 test, seed 0, fine labels, no
    /// limits.
    pub fn new(name: DatasetName) -> DataSpec {
        DataSpec {
            name,
            root: PathBuf::from("data"),
            synthetic_train: 10_000,
            synthetic_test: 2_000,
            seed: 0,
            coarse_labels: false,
            limit_train: None,
            limit_test: None,
        }
    }
}

/// The directory name of `name` under a data root (deepres's own layout).
pub fn dir_name(name: DatasetName) -> &'static str {
    match name {
        DatasetName::Cifar10 => cifar::CIFAR10_DIR,
        DatasetName::Cifar100 => cifar::CIFAR100_DIR,
        DatasetName::Mnist => "mnist",
        DatasetName::FashionMnist => "fashion-mnist",
        DatasetName::Synthetic => "synthetic",
    }
}

/// The directory the files of `name` are read from under `root`: the first complete
/// candidate of [`layout::candidates`] (e.g. `<root>/cifar-10-batches-bin`, else
/// `<root>/cifar-10-batches-py`), see [`layout::locate`].
pub fn default_dir(name: DatasetName, root: &Path) -> PathBuf {
    locate(name, root).dir
}

/// Print `note` on stderr, once per process (a sweep loads the same dataset many times).
fn note_once(note: &str) {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if seen
        .get_or_insert_with(HashSet::new)
        .insert(note.to_string())
    {
        eprintln!("note: {note}");
    }
}

/// Per-channel mean and (population) standard deviation of uint8 `[N,C,H,W]` images, in
/// `[0, 1]` pixel units; computed in float64 over chunks of 1024 images.
pub fn channel_mean_std(images: &Tensor) -> (Vec<f64>, Vec<f64>) {
    let size = images.size();
    let (n, c) = (size[0], size[1]);
    let mut sum = Tensor::zeros([c], (Kind::Double, images.device()));
    let mut sum2 = Tensor::zeros([c], (Kind::Double, images.device()));
    for start in (0..n).step_by(1024) {
        let x = images
            .narrow(0, start, 1024.min(n - start))
            .to_kind(Kind::Double)
            / 255.0;
        sum += x.sum_dim_intlist([0i64, 2, 3].as_slice(), false, Kind::Double);
        sum2 += (&x * &x).sum_dim_intlist([0i64, 2, 3].as_slice(), false, Kind::Double);
    }
    let count = (images.numel() as i64 / c.max(1)) as f64;
    let sum = Vec::<f64>::try_from(&sum).expect("channel sums");
    let sum2 = Vec::<f64>::try_from(&sum2).expect("channel sums of squares");
    let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
    let std = sum2
        .iter()
        .zip(&mean)
        .map(|(s2, m)| (s2 / count - m * m).max(0.0).sqrt())
        .collect();
    (mean, std)
}

/// The train and test splits of `name` at their official sizes, read from `at` (CIFAR-100:
/// the 20 coarse labels if `coarse`). Not for `synthetic`, which is generated.
pub fn read_splits(
    name: DatasetName,
    at: &Located,
    coarse: bool,
) -> Result<(Dataset, Dataset), DataError> {
    let (dir, python) = (at.dir.as_path(), at.layout == Layout::CifarPython);
    match name {
        DatasetName::Cifar10 if python => cifar::load_cifar10_py(dir),
        DatasetName::Cifar10 => cifar::load_cifar10(dir),
        DatasetName::Cifar100 if python => cifar::load_cifar100_py(dir, coarse),
        DatasetName::Cifar100 => cifar::load_cifar100(dir, coarse),
        DatasetName::Mnist | DatasetName::FashionMnist => idx::load_idx(dir),
        DatasetName::Synthetic => Err(DataError::format(dir, "synthetic data is generated")),
    }
}

/// Number of classes and the published per-channel mean and std of a dataset on disk.
fn published_stats(name: DatasetName, coarse: bool) -> (i64, Vec<f64>, Vec<f64>) {
    match name {
        DatasetName::Cifar10 => (
            10,
            vec![0.4914, 0.4822, 0.4465],
            vec![0.2023, 0.1994, 0.2010],
        ),
        DatasetName::Cifar100 => (
            if coarse { 20 } else { 100 },
            vec![0.5071, 0.4865, 0.4409],
            vec![0.2673, 0.2564, 0.2762],
        ),
        DatasetName::Mnist => (10, vec![0.1307], vec![0.3081]),
        DatasetName::FashionMnist => (10, vec![0.2860], vec![0.3530]),
        DatasetName::Synthetic => (synthetic::SYNTH_CLASSES, vec![], vec![]),
    }
}

/// Load the train and test splits described by `spec` (limits applied), with the number of
/// classes, the image shape and the per-channel normalization statistics.
///
/// CIFAR and (Fashion-)MNIST use the published statistics (CIFAR-10: the τ paper's
/// (0.4914, 0.4822, 0.4465) / (0.2023, 0.1994, 0.2010)); the synthetic set uses those of
/// its own full generated training set. Where several layouts of a dataset are under the
/// root, a note on stderr (once per process) says which one is read.
pub fn load(spec: &DataSpec) -> anyhow::Result<DataSplit> {
    let name = spec.name;
    let (train, test, num_classes, mean, std, source) = if name == DatasetName::Synthetic {
        anyhow::ensure!(
            spec.synthetic_train > 0 && spec.synthetic_test >= 0,
            "synthetic: sizes must be positive (train {}, test {})",
            spec.synthetic_train,
            spec.synthetic_test
        );
        let (tr, te) =
            synthetic::synthetic_split(spec.synthetic_train, spec.synthetic_test, spec.seed);
        let (mean, std) = channel_mean_std(&tr.images);
        (tr, te, synthetic::SYNTH_CLASSES, mean, std, None)
    } else {
        let at = locate(name, &spec.root);
        if let Some(note) = &at.note {
            note_once(note);
        }
        let hint = layout::hint(name, &at, &spec.root);
        let (tr, te) =
            read_splits(name, &at, spec.coarse_labels).map_err(|e| e.with_hint(&hint))?;
        let (classes, mean, std) = published_stats(name, spec.coarse_labels);
        (tr, te, classes, mean, std, Some(at))
    };
    let train = match spec.limit_train {
        Some(n) => train.subset(n),
        None => train,
    };
    let test = match spec.limit_test {
        Some(n) => test.subset(n),
        None => test,
    };
    let size = train.images.size();
    Ok(DataSplit {
        name,
        num_classes,
        channels: size[1],
        height: size[2],
        width: size[3],
        train,
        test,
        mean,
        std,
        source,
    })
}
