//! IDX reader for MNIST and Fashion-MNIST (raw or gzipped files).
//!
//! An IDX file starts with a big-endian magic number `0x0000 08 nd` (`08` = unsigned byte
//! data, `nd` = number of dimensions), then `nd` big-endian u32 dimensions, then the data.
//! Images are `0x00000803` (`[N, rows, cols]`), labels `0x00000801` (`[N]`).
//!
//! A directory holds `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//! `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each raw or with a `.gz` suffix
//! (the raw one wins when both exist).
use std::io::Read;
use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};

use super::error::DataError;
use super::Dataset;

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;
/// The four IDX files, without `.gz`: train images, train labels, test images, test labels.
pub const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];
/// MNIST / Fashion-MNIST training images.
pub const IDX_TRAIN: i64 = 60_000;
/// MNIST / Fashion-MNIST test images.
pub const IDX_TEST: i64 = 10_000;
/// Image side of MNIST / Fashion-MNIST.
pub const IDX_SIDE: i64 = 28;

/// The file of IDX file `base` in `dir`: `dir/base` if it exists, else `dir/base.gz` if
/// that exists, else `None`.
pub fn find_idx_file(dir: &Path, base: &str) -> Option<PathBuf> {
    let raw = dir.join(base);
    if raw.is_file() {
        return Some(raw);
    }
    let gz = dir.join(format!("{base}.gz"));
    gz.is_file().then_some(gz)
}

/// Whether `dir` holds all four IDX files (raw or gzipped).
pub fn idx_dir_complete(dir: &Path) -> bool {
    IDX_FILES.iter().all(|f| find_idx_file(dir, f).is_some())
}

fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// The whole (decompressed if `.gz`) content of `path`, which must be `expected` bytes.
///
/// A raw file is size-checked before it is read (one bulk read); a gzipped one is
/// decompressed in one `read_to_end` of at most `expected + 1` bytes and its length checked.
pub fn read_idx_bytes(path: &Path, expected: u64) -> Result<Vec<u8>, DataError> {
    if !is_gz(path) {
        let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, expected, e))?;
        if meta.len() != expected {
            return Err(DataError::size(path, expected, meta.len()));
        }
        return std::fs::read(path).map_err(|e| DataError::io(path, expected, e));
    }
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, expected, e))?;
    let mut out = Vec::with_capacity(expected as usize);
    // At most one byte more than expected: a stream that inflates to gigabytes (corrupt or
    // crafted) is refused without holding them.
    flate2::read::GzDecoder::new(std::io::BufReader::with_capacity(1 << 20, file))
        .take(expected + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            DataError::format(
                path,
                format!(
                    "truncated or corrupt gzip stream ({e}): expected {expected} bytes after decompression, got {} before the error",
                    out.len()
                ),
            )
        })?;
    if out.len() as u64 != expected {
        let how = if (out.len() as u64) < expected {
            "truncated"
        } else {
            "wrong size"
        };
        return Err(DataError::format(
            path,
            format!(
                "{how}: expected {expected} bytes after decompression, found {}",
                match out.len() as u64 > expected {
                    true => "more".to_string(),
                    false => out.len().to_string(),
                }
            ),
        ));
    }
    Ok(out)
}

/// Check the IDX header of `bytes` (content of `path`): magic number and dimensions.
fn check_header(path: &Path, bytes: &[u8], magic: u32, dims: &[i64]) -> Result<usize, DataError> {
    let header = 4 + 4 * dims.len();
    let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    // `bytes` has the full expected length here, so the header is present.
    let found_magic = be(0);
    if found_magic != magic {
        return Err(DataError::format(
            path,
            format!("bad IDX magic number 0x{found_magic:08x}, expected 0x{magic:08x}"),
        ));
    }
    let found: Vec<i64> = (0..dims.len()).map(|d| be(4 + 4 * d) as i64).collect();
    if found != dims {
        return Err(DataError::format(
            path,
            format!("IDX dimensions {found:?}, expected {dims:?}"),
        ));
    }
    Ok(header)
}

/// Read an IDX image file of `n_expected` images of `rows × cols` (magic `0x00000803`)
/// as uint8 `[N, 1, rows, cols]`.
pub fn read_idx_images(
    path: &Path,
    n_expected: i64,
    rows: i64,
    cols: i64,
) -> Result<Tensor, DataError> {
    let dims = [n_expected, rows, cols];
    let expected = 16 + (n_expected * rows * cols) as u64;
    let bytes = read_idx_bytes(path, expected)?;
    let header = check_header(path, &bytes, IDX_IMAGES_MAGIC, &dims)?;
    Ok(Tensor::from_slice(&bytes[header..]).view([n_expected, 1, rows, cols]))
}

/// Read an IDX label file of `n_expected` labels (magic `0x00000801`) as int64 `[N]`.
pub fn read_idx_labels(path: &Path, n_expected: i64) -> Result<Tensor, DataError> {
    let expected = 8 + n_expected as u64;
    let bytes = read_idx_bytes(path, expected)?;
    let header = check_header(path, &bytes, IDX_LABELS_MAGIC, &[n_expected])?;
    Ok(Tensor::from_slice(&bytes[header..]).to_kind(Kind::Int64))
}

/// Read an IDX dataset directory with `n_train` / `n_test` images of `side × side`
/// (official: [`IDX_TRAIN`], [`IDX_TEST`], [`IDX_SIDE`]); labels must be in 0..10.
pub fn read_idx_dir(
    dir: &Path,
    n_train: i64,
    n_test: i64,
    side: i64,
) -> Result<(Dataset, Dataset), DataError> {
    // For a missing file, name both accepted spellings.
    let locate = |base: &str, expected: u64| -> Result<PathBuf, DataError> {
        find_idx_file(dir, base).ok_or_else(|| DataError::Missing {
            path: dir.join(format!("{base}[.gz]")),
            expected,
            hint: Default::default(),
        })
    };
    let read = |images: &str, labels: &str, n: i64| -> Result<Dataset, DataError> {
        let ipath = locate(images, 16 + (n * side * side) as u64)?;
        let lpath = locate(labels, 8 + n as u64)?;
        let ds = Dataset {
            images: read_idx_images(&ipath, n, side, side)?,
            labels: read_idx_labels(&lpath, n)?,
        };
        super::cifar::check_labels(&ds, &lpath, 10)?;
        Ok(ds)
    };
    let train = read(IDX_FILES[0], IDX_FILES[1], n_train)?;
    let test = read(IDX_FILES[2], IDX_FILES[3], n_test)?;
    Ok((train, test))
}

/// MNIST / Fashion-MNIST at the official sizes (60000 + 10000 images of 28×28).
pub fn load_idx(dir: &Path) -> Result<(Dataset, Dataset), DataError> {
    read_idx_dir(dir, IDX_TRAIN, IDX_TEST, IDX_SIDE)
}
