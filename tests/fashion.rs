//! The Fashion-MNIST copy of Debian's package dataset-fashion-mnist (what `make setup`
//! installs and what deepres reads by default) against the official release.
//!
//! The oracle. The official files (github.com/zalandoresearch/fashion-mnist, data/fashion/, and
//! its S3 mirror) are gzip files whose MD5s the project's README publishes. Debian's copies
//! have other MD5s because Debian rewrote the gzip header: the official header is
//! `1f 8b 08 08 <mtime> 00 03 <file name> 00` (flag FNAME, the original name stored), Debian's
//! is the bare 10 bytes `1f 8b 08 00 <its own mtime> 00 03` (no name). Everything after the
//! header, the deflate stream and the trailer with the CRC-32 and length of the uncompressed
//! content, is the official files' byte for byte. So the official file is rebuilt from
//! Debian's by putting the official header back, and its MD5 must be the README's digest.
//!
//! Provenance of the two header mtimes (the only bytes not taken from Debian's copy):
//! `0x59a7e9de` (2017-08-31 10:50:06 UTC) for the train files, `0x59a7e9f3` (10:50:27 UTC)
//! for the t10k files, read from the headers of the official train-labels and t10k-labels
//! files in the zalandoresearch/fashion-mnist git repository (whose MD5s are the README's),
//! where the rest of those two files was also checked to be Debian's bytes. The official image
//! files were not at hand: their mtimes are the labels' (same split), which was found by
//! trying the mtimes near the labels' and is confirmed by the rebuilt files' MD5s equalling
//! the README's (a 128-bit digest is not matched by chance in a few tries). Nothing else of
//! the official files is assumed.
//!
//! Beyond the digest, what the dataset documents is checked on the decompressed content
//! directly (not through deepres's reader): IDX magic numbers, 60000/10000 images of 28×28,
//! and 6000 (train) / 1000 (test) images per class. And the check must fail on a wrong file:
//! a copy with one byte changed, and a copy of another file under the name, are refused.
//!
//! Without the Debian package these tests fail (install it with `make setup`), unless
//! `DEEPRES_FASHION_TEST=0` leaves them out on purpose.
use std::io::Read;
use std::path::{Path, PathBuf};

use deepres::data::fetch;
use deepres::data::{channel_mean_std, default_dir, load, DataSpec, DatasetName};
use md5::{Digest, Md5};
use tch::Tensor;

const DEBIAN_FASHION: &str = "/usr/share/datasets/fashion-mnist";

/// The official files: name, MD5 of the .gz as published in the README of
/// zalandoresearch/fashion-mnist, and the mtime of the official gzip header (see the module
/// doc).
const OFFICIAL: [(&str, &str, u32); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        0x59a7_e9de,
    ),
    (
        "train-labels-idx1-ubyte.gz",
        "25c81989df183df01b3e8a0aad5dffbe",
        0x59a7_e9de,
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        "bef4ecab320f06d8554ea6380940ec79",
        0x59a7_e9f3,
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        "bb300cfdad3c16e7a12a480ee83cd310",
        0x59a7_e9f3,
    ),
];

/// The Debian copy's directory; panics (the test fails) when it is absent, unless
/// `DEEPRES_FASHION_TEST=0` (then `None`, with a note).
fn debian_copy(test: &str) -> Option<PathBuf> {
    if std::env::var("DEEPRES_FASHION_TEST").is_ok_and(|v| v == "0") {
        eprintln!("note: {test} left out (DEEPRES_FASHION_TEST=0)");
        return None;
    }
    let dir = PathBuf::from(DEBIAN_FASHION);
    assert!(
        deepres::data::idx::idx_dir_complete(&dir),
        "{test}: {DEBIAN_FASHION} is incomplete or absent: install the Debian package \
         dataset-fashion-mnist (`make setup` does), or set DEEPRES_FASHION_TEST=0 to leave \
         this test out"
    );
    Some(dir)
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The official file rebuilt from a copy with a bare gzip header (see the module doc): the
/// official header of `name` and `mtime`, then everything after the copy's 10-byte header.
fn with_official_header(copy: &[u8], name: &str, mtime: u32) -> Result<Vec<u8>, String> {
    if copy.len() < 18 || copy[..3] != [0x1f, 0x8b, 0x08] {
        return Err("not a gzip file (deflate)".into());
    }
    if copy[3] != 0 {
        return Err(format!(
            "gzip flags {:#04x}: not a bare 10-byte header",
            copy[3]
        ));
    }
    let mut out = vec![0x1f, 0x8b, 0x08, 0x08];
    out.extend_from_slice(&mtime.to_le_bytes());
    out.extend_from_slice(&[0x00, 0x03]);
    out.extend_from_slice(name.trim_end_matches(".gz").as_bytes());
    out.push(0);
    out.extend_from_slice(&copy[10..]);
    Ok(out)
}

/// Whether the file at `path` is the official `name` (one of [`OFFICIAL`]): its own MD5 is
/// the official one (an official copy), or it is the official file with Debian's bare header.
/// Returns which, or why not.
fn check_official(path: &Path, name: &str) -> Result<&'static str, String> {
    let (_, md5, mtime) = OFFICIAL.iter().find(|o| o.0 == name).unwrap();
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if md5_hex(&bytes) == *md5 {
        return Ok("the official file");
    }
    let rebuilt = with_official_header(&bytes, name, *mtime)?;
    match md5_hex(&rebuilt) {
        m if m == *md5 => Ok("the official file with Debian's gzip header"),
        m => Err(format!(
            "{}: md5 {m} with the official header, the official one is {md5}",
            path.display()
        )),
    }
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap(); // also checks the trailer's CRC-32 and length
    out
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

#[test]
fn the_digests_here_are_the_ones_deepres_fetches_against() {
    let remotes = fetch::remotes(DatasetName::FashionMnist);
    assert_eq!(remotes.len(), 4);
    for (name, md5, _) in OFFICIAL {
        let r = remotes
            .iter()
            .find(|r| r.file.file_name().unwrap() == name)
            .unwrap();
        assert_eq!(r.md5, md5, "{name}");
    }
}

#[test]
fn fashion_mnist_debian_copy_is_the_official_release() {
    let Some(dir) = debian_copy("fashion_mnist_debian_copy_is_the_official_release") else {
        return;
    };
    for (name, md5, _) in OFFICIAL {
        let path = dir.join(name);
        let how = check_official(&path, name).unwrap_or_else(|e| panic!("{e}"));
        eprintln!("{}: {how} (md5 {md5})", path.display());
    }
    // The decompressed content, as the dataset documents it.
    for (split, n, per_class) in [("train", 60_000u32, 6_000usize), ("t10k", 10_000, 1_000)] {
        let images = gunzip(&dir.join(format!("{split}-images-idx3-ubyte.gz")));
        let labels = gunzip(&dir.join(format!("{split}-labels-idx1-ubyte.gz")));
        assert_eq!(
            [be32(&images, 0), be32(&images, 4), be32(&images, 8)],
            [0x0803, n, 28]
        );
        assert_eq!(be32(&images, 12), 28);
        assert_eq!(images.len(), 16 + n as usize * 28 * 28);
        assert_eq!([be32(&labels, 0), be32(&labels, 4)], [0x0801, n]);
        assert_eq!(labels.len(), 8 + n as usize);
        let mut counts = [0usize; 10];
        for &l in &labels[8..] {
            counts[l as usize] += 1; // a label ≥ 10 panics here
        }
        assert_eq!(counts, [per_class; 10], "{split}");
    }
}

/// The same check refuses a copy with one byte changed (in the deflate stream, in the stored
/// CRC-32) and another file's copy under the name; and it is not the rebuild alone that
/// passes: the Debian copy's own MD5 is not the official one.
#[test]
fn the_official_release_check_refuses_a_wrong_file() {
    let Some(dir) = debian_copy("the_official_release_check_refuses_a_wrong_file") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let name = "t10k-labels-idx1-ubyte.gz";
    let good = std::fs::read(dir.join(name)).unwrap();
    assert_ne!(
        md5_hex(&good),
        OFFICIAL[3].1,
        "Debian's copy is the official file now?"
    );
    let copy = tmp.path().join(name);
    std::fs::write(&copy, &good).unwrap();
    assert!(check_official(&copy, name).is_ok());
    // The CRC-32 is the trailer's first 4 bytes, before the 4-byte length.
    for at in [good.len() / 2, good.len() - 8] {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        std::fs::write(&copy, &bad).unwrap();
        let e = check_official(&copy, name).unwrap_err();
        assert!(e.contains(OFFICIAL[3].1), "{e}");
    }
    // Another file (the train labels) under this name.
    let other = std::fs::read(dir.join("train-labels-idx1-ubyte.gz")).unwrap();
    std::fs::write(&copy, &other).unwrap();
    assert!(check_official(&copy, name).is_err());
    // The official file itself (rebuilt) passes as such.
    let official = with_official_header(&good, name, OFFICIAL[3].2).unwrap();
    std::fs::write(&copy, &official).unwrap();
    assert_eq!(check_official(&copy, name), Ok("the official file"));
}

#[test]
fn fashion_mnist_system_copy_loads() {
    let Some(dir) = debian_copy("fashion_mnist_system_copy_loads") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(default_dir(DatasetName::FashionMnist, tmp.path()), dir);
    let spec = DataSpec {
        root: tmp.path().to_path_buf(),
        ..DataSpec::new(DatasetName::FashionMnist)
    };
    let split = load(&spec).unwrap();
    assert_eq!(split.train.images.size(), [60_000, 1, 28, 28]);
    assert_eq!(split.test.images.size(), [10_000, 1, 28, 28]);
    assert_eq!(
        (split.num_classes, split.channels, split.height, split.width),
        (10, 1, 28, 28)
    );
    // Balanced classes: 6000 per class in train, 1000 in test.
    let counts = Vec::<i64>::try_from(&split.train.labels.bincount::<Tensor>(None, 10)).unwrap();
    assert_eq!(counts, [6000; 10]);
    let counts = Vec::<i64>::try_from(&split.test.labels.bincount::<Tensor>(None, 10)).unwrap();
    assert_eq!(counts, [1000; 10]);
    // The published statistics match the data.
    let (mean, std) = channel_mean_std(&split.train.images);
    assert!(
        (mean[0] - split.mean[0]).abs() < 1e-3,
        "{mean:?} vs {:?}",
        split.mean
    );
    assert!(
        (std[0] - split.std[0]).abs() < 1e-3,
        "{std:?} vs {:?}",
        split.std
    );
}
