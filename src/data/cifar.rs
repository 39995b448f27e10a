//! CIFAR-10 / CIFAR-100 readers for the official *binary* versions.
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
use std::path::Path;

use tch::{Kind, Tensor};

use super::error::DataError;
use super::Dataset;

/// Pixel bytes per CIFAR record (3 × 32 × 32).
pub const CIFAR_PIXELS: i64 = 3 * 32 * 32;
/// Directory of the CIFAR-10 binary version under the data root.
pub const CIFAR10_DIR: &str = "cifar-10-batches-bin";
/// Directory of the CIFAR-100 binary version under the data root.
pub const CIFAR100_DIR: &str = "cifar-100-binary";
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
    let train = Dataset {
        images: Tensor::cat(&parts.iter().map(|p| &p.images).collect::<Vec<_>>(), 0),
        labels: Tensor::cat(&parts.iter().map(|p| &p.labels).collect::<Vec<_>>(), 0),
    };
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
