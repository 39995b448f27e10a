//! CIFAR-10 / CIFAR-100 readers for the official *binary* versions and for the *python*
//! versions as torchvision keeps them on disk.
//!
//! A CIFAR record is `label_bytes` label bytes followed by 3072 pixel bytes: the 1024 red
//! values, then the 1024 green, then the 1024 blue, each plane a row-major 32×32 image.
//! A file is read with one bulk read, viewed as a `[N, record]` uint8 tensor and split with
//! tensor ops, so the planes land directly in `[N, 3, 32, 32]` (channel 0 = R).
//!
//! * CIFAR-10: `cifar-10-batches-bin/data_batch_{1..5}.bin` (10000 records each) and
//!   `test_batch.bin` (10000); record = 1 label byte + 3072 pixels.
//! * CIFAR-100: `cifar-100-binary/train.bin` (50000) and `test.bin` (10000);
//!   record = coarse label byte, fine label byte, 3072 pixels.
//! * torchvision's python versions: `cifar-10-batches-py/data_batch_{1..5}` and `test_batch`,
//!   `cifar-100-python/train` and `test`; each a pickled dict (Python 2 `cPickle`, protocol
//!   2, bytes keys) whose `data` is a uint8 numpy array `[N, 3072]` with the same pixel
//!   order as a binary record, and whose `labels` (CIFAR-10) or `fine_labels` and
//!   `coarse_labels` (CIFAR-100) are lists of N ints. Read by [`super::pickle`], which
//!   resolves numpy's array reconstruction and dtype and refuses any other global.
use std::path::Path;

use tch::{Kind, Tensor};

use super::error::DataError;
use super::pickle::{self, Value};
use super::Dataset;

/// Pixel bytes per CIFAR record (3 × 32 × 32).
pub const CIFAR_PIXELS: i64 = 3 * 32 * 32;
/// Directory of the CIFAR-10 binary version under the data root.
pub const CIFAR10_DIR: &str = "cifar-10-batches-bin";
/// Directory of the CIFAR-100 binary version under the data root.
pub const CIFAR100_DIR: &str = "cifar-100-binary";
/// Directory of the CIFAR-10 python version (torchvision's) under the data root.
pub const CIFAR10_PY_DIR: &str = "cifar-10-batches-py";
/// Directory of the CIFAR-100 python version (torchvision's) under the data root.
pub const CIFAR100_PY_DIR: &str = "cifar-100-python";
/// Records per CIFAR-10 training batch file (5 files).
pub const CIFAR10_BATCH: i64 = 10_000;
/// CIFAR-100 training records.
pub const CIFAR100_TRAIN: i64 = 50_000;
/// Test records of both CIFARs.
pub const CIFAR_TEST: i64 = 10_000;

/// Read a file of exactly `n_expected` CIFAR records, each `label_bytes` label bytes then
/// 3072 pixel bytes, using the label byte at `label_index` (< `label_bytes`).
///
/// The file size must be exactly `n_expected * (label_bytes + 3072)`; otherwise the error
/// names the file, the expected and the found size. Returns images uint8 `[N,3,32,32]`
/// and labels int64 `[N]`, on the CPU.
pub fn read_cifar_records(
    path: &Path,
    n_expected: i64,
    label_bytes: i64,
    label_index: i64,
) -> Result<Dataset, DataError> {
    assert!(
        (0..label_bytes).contains(&label_index),
        "label_index {label_index} out of 0..{label_bytes}"
    );
    let record = label_bytes + CIFAR_PIXELS;
    let expected = (n_expected * record) as u64;
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, expected, e))?;
    if meta.len() != expected {
        return Err(DataError::size(path, expected, meta.len()));
    }
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, expected, e))?;
    if bytes.len() as u64 != expected {
        // The file changed between stat and read.
        return Err(DataError::size(path, expected, bytes.len() as u64));
    }
    let all = Tensor::from_slice(&bytes).view([n_expected, record]);
    drop(bytes);
    let labels = all
        .narrow(1, label_index, 1)
        .reshape([n_expected])
        .to_kind(Kind::Int64);
    let images = all
        .narrow(1, label_bytes, CIFAR_PIXELS)
        .reshape([n_expected, 3, 32, 32])
        .contiguous();
    Ok(Dataset { images, labels })
}

/// Fail with a format error naming `path` if a label is outside `0..num_classes`.
pub(crate) fn check_labels(ds: &Dataset, path: &Path, num_classes: i64) -> Result<(), DataError> {
    if ds.is_empty() {
        return Ok(());
    }
    let max = ds.labels.max().int64_value(&[]);
    let min = ds.labels.min().int64_value(&[]);
    if min < 0 || max >= num_classes {
        return Err(DataError::format(
            path,
            format!(
                "label {} out of range: expected labels in 0..{num_classes}",
                if min < 0 { min } else { max }
            ),
        ));
    }
    Ok(())
}

/// Read a CIFAR-10 binary directory with `n_per_batch` records in each of the 5 training
/// files and `n_test` in `test_batch.bin` (the official sizes are [`CIFAR10_BATCH`] and
/// [`CIFAR_TEST`]; smaller ones are for tests). Returns (train, test).
pub fn read_cifar10_dir(
    dir: &Path,
    n_per_batch: i64,
    n_test: i64,
) -> Result<(Dataset, Dataset), DataError> {
    let mut parts = Vec::with_capacity(5);
    for i in 1..=5 {
        let path = dir.join(format!("data_batch_{i}.bin"));
        let part = read_cifar_records(&path, n_per_batch, 1, 0)?;
        check_labels(&part, &path, 10)?;
        parts.push(part);
    }
    let train = concat(&parts);
    let path = dir.join("test_batch.bin");
    let test = read_cifar_records(&path, n_test, 1, 0)?;
    check_labels(&test, &path, 10)?;
    Ok((train, test))
}

/// Read a CIFAR-100 binary directory (`train.bin` with `n_train` records, `test.bin` with
/// `n_test`), with the 20 coarse labels if `coarse`, else the 100 fine ones.
pub fn read_cifar100_dir(
    dir: &Path,
    n_train: i64,
    n_test: i64,
    coarse: bool,
) -> Result<(Dataset, Dataset), DataError> {
    let (index, classes) = if coarse { (0, 20) } else { (1, 100) };
    let read = |file: &str, n: i64| -> Result<Dataset, DataError> {
        let path = dir.join(file);
        let ds = read_cifar_records(&path, n, 2, index)?;
        check_labels(&ds, &path, classes)?;
        Ok(ds)
    };
    Ok((read("train.bin", n_train)?, read("test.bin", n_test)?))
}

/// CIFAR-10 at its official sizes (50000 train, 10000 test).
pub fn load_cifar10(dir: &Path) -> Result<(Dataset, Dataset), DataError> {
    read_cifar10_dir(dir, CIFAR10_BATCH, CIFAR_TEST)
}

/// CIFAR-100 at its official sizes (50000 train, 10000 test).
pub fn load_cifar100(dir: &Path, coarse: bool) -> Result<(Dataset, Dataset), DataError> {
    read_cifar100_dir(dir, CIFAR100_TRAIN, CIFAR_TEST, coarse)
}

/// The datasets of `parts`, one after the other.
fn concat(parts: &[Dataset]) -> Dataset {
    Dataset {
        images: Tensor::cat(&parts.iter().map(|p| &p.images).collect::<Vec<_>>(), 0),
        labels: Tensor::cat(&parts.iter().map(|p| &p.labels).collect::<Vec<_>>(), 0),
    }
}

/// Read one pickled CIFAR batch of torchvision's python layout holding `n_expected` images:
/// a dict whose `data` is a uint8 numpy array `[n_expected, 3072]` and whose `label_key` is
/// a list of `n_expected` ints in `0..num_classes`. Keys may be bytes (as in the official
/// files) or str. Any other global than numpy's, a truncated file, a wrong shape or dtype is
/// an error naming the file; nothing in the file is executed.
pub fn read_cifar_pickle(
    path: &Path,
    n_expected: i64,
    label_key: &str,
    num_classes: i64,
) -> Result<Dataset, DataError> {
    let bad = |what: String| DataError::format(path, what);
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => bad(format!(
            "missing: expected a pickled CIFAR batch of {n_expected} images"
        )),
        _ => DataError::io(path, 0, e),
    })?;
    let value = pickle::load(&bytes).map_err(|e| bad(e.to_string()))?;
    if !matches!(value, Value::Dict(_)) {
        let kind = value.kind();
        return Err(bad(format!("the pickle holds a {kind}, expected a dict")));
    }
    let field = |key: &str| {
        value
            .get(key)
            .ok_or_else(|| bad(format!("the pickled dict has no key `{key}`")))
    };
    let images = pickled_images(path, field("data")?, n_expected)?;
    let labels = int_list(field(label_key)?)
        .ok_or_else(|| bad(format!("`{label_key}` is not a list of ints")))?;
    if labels.len() as i64 != n_expected {
        let found = labels.len();
        return Err(bad(format!(
            "`{label_key}` has {found} entries, expected {n_expected}"
        )));
    }
    let ds = Dataset {
        images,
        labels: Tensor::from_slice(&labels),
    };
    check_labels(&ds, path, num_classes)?;
    Ok(ds)
}

/// The images uint8 `[n, 3, 32, 32]` of a pickled batch's `data`, which must be a uint8
/// numpy array `[n, 3072]` (C or Fortran order).
fn pickled_images(path: &Path, data: &Value, n: i64) -> Result<Tensor, DataError> {
    let bad = |what: String| Err(DataError::format(path, what));
    let Value::Array(data) = data else {
        return bad(format!(
            "`data` is a {}, expected a numpy array",
            data.kind()
        ));
    };
    if &*data.dtype != "u1" {
        return bad(format!(
            "`data` has dtype {}, expected uint8 (u1)",
            data.dtype
        ));
    }
    if data.shape != [n, CIFAR_PIXELS] {
        let shape = &data.shape;
        return bad(format!(
            "`data` has shape {shape:?}, expected [{n}, {CIFAR_PIXELS}]"
        ));
    }
    let raw = data.data.as_slice();
    if raw.len() as i64 != n * CIFAR_PIXELS {
        let expected = n * CIFAR_PIXELS;
        return bad(format!(
            "`data` holds {} bytes, expected {expected}",
            raw.len()
        ));
    }
    let flat = Tensor::from_slice(raw);
    let flat = match data.fortran {
        true => flat.view([CIFAR_PIXELS, n]).tr(),
        false => flat.view([n, CIFAR_PIXELS]),
    };
    Ok(flat.reshape([n, 3, 32, 32]).contiguous())
}

/// The ints of a list or tuple of ints.
fn int_list(v: &Value) -> Option<Vec<i64>> {
    v.items()?
        .iter()
        .map(|x| match x {
            Value::Int(i) => Some(*i),
            _ => None,
        })
        .collect()
}

/// Read torchvision's CIFAR-10 python directory (`data_batch_1` … `data_batch_5` with
/// `n_per_batch` images each, `test_batch` with `n_test`). Returns (train, test).
pub fn read_cifar10_py_dir(
    dir: &Path,
    n_per_batch: i64,
    n_test: i64,
) -> Result<(Dataset, Dataset), DataError> {
    let parts = (1..=5)
        .map(|i| {
            read_cifar_pickle(
                &dir.join(format!("data_batch_{i}")),
                n_per_batch,
                "labels",
                10,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let test = read_cifar_pickle(&dir.join("test_batch"), n_test, "labels", 10)?;
    Ok((concat(&parts), test))
}

/// Read torchvision's CIFAR-100 python directory (`train` with `n_train` images, `test` with
/// `n_test`), with the 20 coarse labels if `coarse`, else the 100 fine ones.
pub fn read_cifar100_py_dir(
    dir: &Path,
    n_train: i64,
    n_test: i64,
    coarse: bool,
) -> Result<(Dataset, Dataset), DataError> {
    let (key, classes) = if coarse {
        ("coarse_labels", 20)
    } else {
        ("fine_labels", 100)
    };
    Ok((
        read_cifar_pickle(&dir.join("train"), n_train, key, classes)?,
        read_cifar_pickle(&dir.join("test"), n_test, key, classes)?,
    ))
}

/// torchvision's CIFAR-10 python version at the official sizes (50000 train, 10000 test).
pub fn load_cifar10_py(dir: &Path) -> Result<(Dataset, Dataset), DataError> {
    read_cifar10_py_dir(dir, CIFAR10_BATCH, CIFAR_TEST)
}

/// torchvision's CIFAR-100 python version at the official sizes (50000 train, 10000 test).
pub fn load_cifar100_py(dir: &Path, coarse: bool) -> Result<(Dataset, Dataset), DataError> {
    read_cifar100_py_dir(dir, CIFAR100_TRAIN, CIFAR_TEST, coarse)
}
