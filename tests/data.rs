//! Tests of the data module's readers (CIFAR binary, IDX raw/gz), their error messages and
//! the fetcher (offline). The synthetic set, augmentation and the on-device loader are in
//! tests/loader.rs; the Fashion-MNIST system copy against the official digests in
//! tests/fashion.rs.
use std::io::Write;
use std::path::{Path, PathBuf};

use deepres::data::cifar::{self, read_cifar100_dir, read_cifar10_dir, read_cifar_records};
use deepres::data::fetch::{self, fetch_file, md5_hex};
use deepres::data::idx::{read_idx_dir, read_idx_images, read_idx_labels, IDX_FILES};
use deepres::data::{
    default_dir, extract_tar_gz, load, verify_and_extract, verify_md5, DataSpec, DatasetName,
};
use tch::{Kind, Tensor};

// ---------------------------------------------------------------- helpers

/// One CIFAR record: labels, then R, G, B planes of 1024 bytes.
fn cifar_record(labels: &[u8], planes: [&[u8]; 3]) -> Vec<u8> {
    let mut v = labels.to_vec();
    for p in planes {
        assert_eq!(p.len(), 1024);
        v.extend_from_slice(p);
    }
    v
}

/// A record whose planes are constant `(r, g, b)`.
fn flat_record(labels: &[u8], r: u8, g: u8, b: u8) -> Vec<u8> {
    cifar_record(labels, [&[r; 1024], &[g; 1024], &[b; 1024]])
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx_images(n: u32, side: u32, f: impl Fn(u32, u32) -> u8) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [0x0803u32, n, side, side] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    for i in 0..n {
        for p in 0..side * side {
            v.push(f(i, p));
        }
    }
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x0801u32.to_be_bytes());
    v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    v.extend_from_slice(labels);
    v
}

fn err_string<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

fn equal(a: &Tensor, b: &Tensor) -> bool {
    a.size() == b.size() && a.equal(b)
}

/// Write a full-size CIFAR-10 binary directory under `root` (label = i % 10, planes
/// constant (i % 256, batch, 7) for training batch `batch`, (i % 256, 9, 7) for test).
fn write_full_cifar10(root: &Path) -> PathBuf {
    let dir = root.join(cifar::CIFAR10_DIR);
    let file = |g: u8| -> Vec<u8> {
        let mut v = Vec::with_capacity(10_000 * 3073);
        for i in 0..10_000u32 {
            v.extend(flat_record(&[(i % 10) as u8], (i % 256) as u8, g, 7));
        }
        v
    };
    for b in 1..=5u8 {
        write(&dir.join(format!("data_batch_{b}.bin")), &file(b));
    }
    write(&dir.join("test_batch.bin"), &file(9));
    write(&dir.join("batches.meta.txt"), b"airplane\nautomobile\n");
    dir
}

// ---------------------------------------------------------------- names

#[test]
fn dataset_names_round_trip() {
    let expected = ["cifar10", "cifar100", "mnist", "fashion-mnist", "synthetic"];
    for (name, s) in DatasetName::ALL.iter().zip(expected) {
        assert_eq!(name.to_string(), s);
        assert_eq!(s.parse::<DatasetName>().unwrap(), *name);
        assert_eq!(serde_json::to_string(name).unwrap(), format!("\"{s}\""));
        assert_eq!(serde_yaml::from_str::<DatasetName>(s).unwrap(), *name);
    }
    let e = "cifar-10".parse::<DatasetName>().unwrap_err();
    for s in expected {
        assert!(e.contains(s), "{e}");
    }
}

// ---------------------------------------------------------------- CIFAR

#[test]
fn cifar_pixel_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("b.bin");
    let pattern: Vec<u8> = (0..3072u32).map(|i| (i % 251) as u8).collect();
    let mut bytes = flat_record(&[7], 1, 2, 3);
    bytes.extend(cifar_record(
        &[2],
        [&pattern[..1024], &pattern[1024..2048], &pattern[2048..]],
    ));
    write(&path, &bytes);
    let ds = read_cifar_records(&path, 2, 1, 0).unwrap();
    assert_eq!(ds.images.size(), [2, 3, 32, 32]);
    assert_eq!(ds.images.kind(), Kind::Uint8);
    assert_eq!(ds.labels.kind(), Kind::Int64);
    assert_eq!(Vec::<i64>::try_from(&ds.labels).unwrap(), [7, 2]);
    for c in 0..3 {
        let plane = ds.images.get(0).get(c);
        assert!(
            equal(&plane, &plane.full_like(c + 1)),
            "channel {c} of record 0"
        );
    }
    for (c, y, x) in [(0, 0, 0), (0, 0, 31), (0, 1, 0), (1, 5, 7), (2, 31, 31)] {
        let want = (c * 1024 + y * 32 + x) % 251;
        assert_eq!(ds.images.int64_value(&[1, c, y, x]), want, "c{c} y{y} x{x}");
    }
}

#[test]
fn cifar_size_errors_name_file_and_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("short.bin");
    write(&path, &[0u8; 3073 * 2]);
    let e = read_cifar_records(&path, 3, 1, 0).unwrap_err().to_string();
    assert!(e.contains("short.bin") && e.contains("truncated"), "{e}");
    assert!(e.contains("expected 9219 bytes, found 6146"), "{e}");
    let e = read_cifar_records(&path, 1, 1, 0).unwrap_err().to_string();
    assert!(
        e.contains("wrong size: expected 3073 bytes, found 6146"),
        "{e}"
    );
    let e = read_cifar_records(&tmp.path().join("nope.bin"), 1, 1, 0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("nope.bin: missing") && e.contains("3073 bytes"),
        "{e}"
    );
}

#[test]
fn cifar10_load_reports_truncated_batch_with_hint() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("cifar-10-batches-bin/data_batch_1.bin"),
        &[0u8; 1234],
    );
    let spec = DataSpec {
        root: tmp.path().to_path_buf(),
        ..DataSpec::new(DatasetName::Cifar10)
    };
    let e = err_string(load(&spec));
    assert!(!e.contains('\n'), "one line: {e}");
    assert!(
        e.contains(
            "cifar-10-batches-bin/data_batch_1.bin: truncated: expected 30730000 bytes, found 1234"
        ),
        "{e}"
    );
    assert!(
        e.contains("deepres data fetch cifar10") && e.contains("cifar-10-binary.tar.gz"),
        "{e}"
    );
    // Missing directory: names the first file and the dataset's hint.
    let spec = DataSpec {
        root: tmp.path().join("empty"),
        ..DataSpec::new(DatasetName::Cifar100)
    };
    let e = err_string(load(&spec));
    assert!(
        e.contains("cifar-100-binary/train.bin: missing") && e.contains("153700000 bytes"),
        "{e}"
    );
    assert!(e.contains("deepres data fetch cifar100"), "{e}");
}

#[test]
fn cifar10_dir_concatenates_batches_and_checks_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for b in 1..=5u8 {
        let mut bytes = Vec::new();
        for i in 0..4u8 {
            bytes.extend(flat_record(&[(b + i) % 10], b, i, 0));
        }
        write(&dir.join(format!("data_batch_{b}.bin")), &bytes);
    }
    let mut test = Vec::new();
    for i in 0..3u8 {
        test.extend(flat_record(&[i], 9, i, 0));
    }
    write(&dir.join("test_batch.bin"), &test);
    let (train, test) = read_cifar10_dir(dir, 4, 3).unwrap();
    assert_eq!(train.images.size(), [20, 3, 32, 32]);
    assert_eq!(test.len(), 3);
    let labels = Vec::<i64>::try_from(&train.labels).unwrap();
    let want: Vec<i64> = (1..=5)
        .flat_map(|b| (0..4).map(move |i| (b + i) % 10))
        .collect();
    assert_eq!(labels, want);
    assert_eq!(train.images.int64_value(&[13, 0, 5, 5]), 4); // batch 4, record 1: R = 4
    assert_eq!(train.images.int64_value(&[13, 1, 5, 5]), 1); // G = 1
                                                             // A label of 10 is rejected, naming the file.
    write(
        &dir.join("test_batch.bin"),
        &[
            flat_record(&[10], 0, 0, 0),
            flat_record(&[0], 0, 0, 0),
            flat_record(&[0], 0, 0, 0),
        ]
        .concat(),
    );
    let e = read_cifar10_dir(dir, 4, 3).unwrap_err().to_string();
    assert!(
        e.contains("test_batch.bin") && e.contains("label 10 out of range"),
        "{e}"
    );
}

#[test]
fn cifar100_fine_and_coarse_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let rec = |coarse: u8, fine: u8| flat_record(&[coarse, fine], fine, coarse, 5);
    write(
        &dir.join("train.bin"),
        &[rec(3, 99), rec(19, 0), rec(0, 42)].concat(),
    );
    write(&dir.join("test.bin"), &[rec(4, 17)].concat());
    let (train, test) = read_cifar100_dir(dir, 3, 1, false).unwrap();
    assert_eq!(Vec::<i64>::try_from(&train.labels).unwrap(), [99, 0, 42]);
    assert_eq!(Vec::<i64>::try_from(&test.labels).unwrap(), [17]);
    assert_eq!(train.images.int64_value(&[0, 0, 0, 0]), 99);
    assert_eq!(train.images.int64_value(&[0, 2, 31, 31]), 5);
    let (train, _) = read_cifar100_dir(dir, 3, 1, true).unwrap();
    assert_eq!(Vec::<i64>::try_from(&train.labels).unwrap(), [3, 19, 0]);
    // Record size is 3074: a file sized for CIFAR-10 records is rejected.
    let e = read_cifar100_dir(dir, 3, 2, true).unwrap_err().to_string();
    assert!(
        e.contains("test.bin: truncated: expected 6148 bytes, found 3074"),
        "{e}"
    );
}

// ---------------------------------------------------------------- IDX

#[test]
fn idx_raw_and_gz_read_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let images = idx_images(5, 28, |i, p| ((i * 7 + p) % 256) as u8);
    let labels = idx_labels(&[3, 1, 4, 1, 5]);
    let raw = tmp.path().join("imgs");
    let gzp = tmp.path().join("imgs.gz");
    write(&raw, &images);
    write(&gzp, &gz(&images));
    let a = read_idx_images(&raw, 5, 28, 28).unwrap();
    let b = read_idx_images(&gzp, 5, 28, 28).unwrap();
    assert_eq!(a.size(), [5, 1, 28, 28]);
    assert_eq!(a.kind(), Kind::Uint8);
    assert!(equal(&a, &b));
    assert_eq!(a.int64_value(&[2, 0, 1, 3]), 2 * 7 + 28 + 3); // image 2, row 1, column 3
    let lraw = tmp.path().join("labels");
    write(&lraw, &labels);
    let l = read_idx_labels(&lraw, 5).unwrap();
    assert_eq!(l.kind(), Kind::Int64);
    assert_eq!(Vec::<i64>::try_from(&l).unwrap(), [3, 1, 4, 1, 5]);
}

#[test]
fn idx_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let images = idx_images(5, 28, |_, p| p as u8);
    // Truncated raw file: sizes named.
    let p = tmp.path().join("short");
    write(&p, &images[..1000]);
    let e = read_idx_images(&p, 5, 28, 28).unwrap_err().to_string();
    assert!(
        e.contains("short: truncated: expected 3936 bytes, found 1000"),
        "{e}"
    );
    // Truncated gz stream.
    let p = tmp.path().join("short.gz");
    let z = gz(&images);
    write(&p, &z[..z.len() / 2]);
    let e = read_idx_images(&p, 5, 28, 28).unwrap_err().to_string();
    assert!(
        e.contains("short.gz") && e.contains("expected 3936 bytes after decompression"),
        "{e}"
    );
    // Complete gz stream of a short file.
    write(&p, &gz(&images[..1000]));
    let e = read_idx_images(&p, 5, 28, 28).unwrap_err().to_string();
    assert!(
        e.contains("short.gz: truncated: expected 3936 bytes after decompression, found 1000"),
        "{e}"
    );
    // Label file where an image file is expected: size differs.
    let p = tmp.path().join("labels");
    write(&p, &idx_labels(&[0; 3928]));
    let e = read_idx_images(&p, 5, 28, 28).unwrap_err().to_string();
    assert!(
        e.contains("bad IDX magic number 0x00000801, expected 0x00000803"),
        "{e}"
    );
    // Header count differs from the expected one.
    let p = tmp.path().join("count");
    let mut bad = images.clone();
    bad[7] = 6;
    write(&p, &bad);
    let e = read_idx_images(&p, 5, 28, 28).unwrap_err().to_string();
    assert!(
        e.contains("IDX dimensions [6, 28, 28], expected [5, 28, 28]"),
        "{e}"
    );
}

#[test]
fn idx_dir_mixes_raw_and_gz() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(&dir.join(IDX_FILES[0]), &idx_images(6, 28, |i, _| i as u8));
    write(
        &dir.join(format!("{}.gz", IDX_FILES[1])),
        &gz(&idx_labels(&[0, 1, 2, 3, 4, 9])),
    );
    write(
        &dir.join(format!("{}.gz", IDX_FILES[2])),
        &gz(&idx_images(2, 28, |i, _| 100 + i as u8)),
    );
    let e = read_idx_dir(dir, 6, 2, 28).unwrap_err().to_string();
    assert!(e.contains("t10k-labels-idx1-ubyte[.gz]: missing"), "{e}");
    write(&dir.join(IDX_FILES[3]), &idx_labels(&[7, 8]));
    let (train, test) = read_idx_dir(dir, 6, 2, 28).unwrap();
    assert_eq!(train.images.size(), [6, 1, 28, 28]);
    assert_eq!(test.images.int64_value(&[1, 0, 27, 27]), 101);
    assert_eq!(Vec::<i64>::try_from(&test.labels).unwrap(), [7, 8]);
}

// ---------------------------------------------------------------- fetch

#[test]
fn verify_md5_known_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("abc");
    write(&p, b"abc");
    verify_md5(&p, "900150983cd24fb0d6963f7d28e17f72").unwrap();
    verify_md5(&p, "900150983CD24FB0D6963F7D28E17F72").unwrap();
    let e = verify_md5(&p, "d41d8cd98f00b204e9800998ecf8427e")
        .unwrap_err()
        .to_string();
    assert!(e.contains("abc: checksum mismatch: expected md5 d41d8cd98f00b204e9800998ecf8427e, found 900150983cd24fb0d6963f7d28e17f72"), "{e}");
    assert!(p.exists(), "nothing deleted");
}

#[test]
fn fetch_verifies_extracts_and_loads_a_cifar10_archive() {
    let tmp = tempfile::tempdir().unwrap();
    // Build cifar-10-binary.tar.gz with the official layout.
    let src = tmp.path().join("src");
    write_full_cifar10(&src);
    let archive = tmp.path().join("cifar-10-binary.tar.gz");
    {
        let f = std::fs::File::create(&archive).unwrap();
        let mut t = tar::Builder::new(flate2::write::GzEncoder::new(
            f,
            flate2::Compression::fast(),
        ));
        t.append_dir_all(cifar::CIFAR10_DIR, src.join(cifar::CIFAR10_DIR))
            .unwrap();
        t.into_inner().unwrap().finish().unwrap();
    }
    let md5 = {
        use md5::Digest;
        md5::Md5::digest(std::fs::read(&archive).unwrap())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert_eq!(md5_hex(&archive).unwrap(), md5);
    let root = tmp.path().join("data");
    // Wrong digest: error names both, nothing extracted, archive kept.
    let wrong = "0123456789abcdef0123456789abcdef";
    let e = err_string(verify_and_extract(&archive, wrong, &root));
    assert!(
        e.contains("cifar-10-binary.tar.gz") && e.contains(wrong) && e.contains(&md5),
        "{e}"
    );
    assert!(!root.exists() && archive.exists());
    // Right digest: extracted and loadable at the official sizes.
    verify_and_extract(&archive, &md5, &root).unwrap();
    let spec = DataSpec {
        root: root.clone(),
        ..DataSpec::new(DatasetName::Cifar10)
    };
    let s = load(&spec).unwrap();
    assert_eq!(s.train.images.size(), [50_000, 3, 32, 32]);
    assert_eq!(s.test.images.size(), [10_000, 3, 32, 32]);
    assert_eq!(
        (s.num_classes, s.mean.clone(), s.std.clone()),
        (
            10,
            vec![0.4914, 0.4822, 0.4465],
            vec![0.2023, 0.1994, 0.2010]
        )
    );
    // Training example 10000 + 257 is record 257 of batch 2: label 7, planes (1, 2, 7).
    let i = 10_257;
    assert_eq!(s.train.labels.int64_value(&[i]), 7);
    assert_eq!(
        [0, 1, 2].map(|c| s.train.images.int64_value(&[i, c, 3, 3])),
        [1, 2, 7]
    );
    assert_eq!(s.test.images.int64_value(&[0, 1, 0, 0]), 9);
    let limited = load(&DataSpec {
        limit_train: Some(100),
        limit_test: Some(10),
        ..spec
    })
    .unwrap();
    assert_eq!((limited.train.len(), limited.test.len()), (100, 10));
    // extract_tar_gz alone, into another directory.
    let other = tmp.path().join("other");
    extract_tar_gz(&archive, &other).unwrap();
    assert!(other.join("cifar-10-batches-bin/test_batch.bin").is_file());
    // `fetch` with the (non-official) archive already in the root: verified against the
    // official md5, no download attempted, mismatch reported, archive kept.
    std::fs::rename(&archive, root.join("cifar-10-binary.tar.gz")).unwrap();
    let e = err_string(deepres::data::fetch(DatasetName::Cifar10, &root));
    assert!(
        e.contains("checksum mismatch: expected md5 c32a1d4ab5d03f1284b67883e8d87530")
            && e.contains(&md5),
        "{e}"
    );
    assert!(root.join("cifar-10-binary.tar.gz").exists());
}

#[test]
fn fetch_download_failure_is_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("sub/x.tar.gz");
    let url = "http://127.0.0.1:9/x";
    let e = err_string(fetch_file(url, &dest, "00000000000000000000000000000000"));
    assert!(!e.contains('\n'), "{e}");
    assert!(
        e.contains(url) && e.contains("curl exited with status 7"),
        "{e}"
    );
    assert!(
        e.contains("no internet access?") && e.contains(&dest.display().to_string()),
        "{e}"
    );
    assert!(!dest.exists() && !fetch::part_path(&dest).exists());
    // A file copied in by hand is only verified.
    write(&dest, b"abc");
    fetch_file(url, &dest, "900150983cd24fb0d6963f7d28e17f72").unwrap();
    // fetch_sources with an injected URL list.
    let remotes = [fetch::Remote {
        url: url.into(),
        file: "y.gz".into(),
        md5: "00000000000000000000000000000000",
        extract: false,
    }];
    let e = err_string(fetch::fetch_sources(&remotes, tmp.path()));
    assert!(e.contains("y.gz by hand"), "{e}");
}

#[test]
fn official_remotes_and_dirs() {
    let root = Path::new("data");
    let r = fetch::remotes(DatasetName::Cifar10);
    assert_eq!(
        r[0].url,
        "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    );
    assert_eq!(r[0].file, Path::new("cifar-10-binary.tar.gz"));
    assert_eq!(
        fetch::remotes(DatasetName::Cifar100)[0].md5,
        "03b5dce01913d631647c71ecec9e9cb8"
    );
    let m = fetch::remotes(DatasetName::Mnist);
    assert_eq!(m.len(), 4);
    assert_eq!(
        m[0].url,
        "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"
    );
    assert_eq!(m[3].file, Path::new("mnist/t10k-labels-idx1-ubyte.gz"));
    assert!(fetch::remotes(DatasetName::Synthetic).is_empty());
    assert_eq!(
        default_dir(DatasetName::Cifar10, root),
        Path::new("data/cifar-10-batches-bin")
    );
    assert_eq!(
        default_dir(DatasetName::Cifar100, root),
        Path::new("data/cifar-100-binary")
    );
    deepres::data::fetch(DatasetName::Synthetic, root).unwrap();
}

/// `data fetch` extracts only what stays inside the target folder: an archive with an entry
/// `../x`, an absolute path or a link is refused whole, in one line naming the entry, and
/// nothing of it is written (tar headers written raw: tar's own builder refuses such names).
#[test]
fn archives_with_escaping_entries_are_refused_whole() {
    use deepres::data::fetch::extract_tar_gz;
    let tmp = tempfile::tempdir().unwrap();
    let build = |name: &str, bad: &str, kind: tar::EntryType| {
        let path = tmp.path().join(name);
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        let mut b = tar::Builder::new(gz);
        let mut ok = tar::Header::new_gnu();
        ok.set_path("cifar-10-batches-bin/ok.bin").unwrap();
        ok.set_size(3);
        ok.set_cksum();
        b.append(&ok, &b"abc"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        let raw = &mut h.as_gnu_mut().unwrap().name;
        raw[..bad.len()].copy_from_slice(bad.as_bytes());
        h.set_entry_type(kind);
        h.set_size(if kind == tar::EntryType::Regular {
            4
        } else {
            0
        });
        if kind == tar::EntryType::Symlink {
            h.set_link_name("/etc/passwd").unwrap();
        }
        h.set_mode(0o644);
        h.set_cksum();
        let data: &[u8] = if kind == tar::EntryType::Regular {
            b"evil"
        } else {
            b""
        };
        b.append(&h, data).unwrap();
        b.into_inner().unwrap().finish().unwrap();
        path
    };
    let cases = [
        (
            "dotdot.tar.gz",
            "../escaped.txt",
            tar::EntryType::Regular,
            "leaves the target folder",
        ),
        (
            "deep.tar.gz",
            "cifar-10-batches-bin/../../escaped.txt",
            tar::EntryType::Regular,
            "leaves the target folder",
        ),
        (
            "abs.tar.gz",
            "/tmp/deepres-escaped-abs.txt",
            tar::EntryType::Regular,
            "leaves the target folder",
        ),
        (
            "link.tar.gz",
            "cifar-10-batches-bin/link",
            tar::EntryType::Symlink,
            "is a link",
        ),
    ];
    for (name, bad, kind, why) in cases {
        let archive = build(name, bad, kind);
        let dest = tmp.path().join("data").join(name);
        let e = format!("{:#}", extract_tar_gz(&archive, &dest).unwrap_err());
        assert!(
            e.contains(name) && e.contains(bad) && e.contains(why),
            "{e}"
        );
        assert!(!e.contains('\n'));
        assert!(!dest.exists(), "{name}: nothing extracted");
    }
    assert!(!tmp.path().join("data/escaped.txt").exists());
    assert!(!tmp.path().join("escaped.txt").exists());
    assert!(!Path::new("/tmp/deepres-escaped-abs.txt").exists());
    // a clean archive of the same shape extracts
    let archive = build(
        "clean.tar.gz",
        "cifar-10-batches-bin/two.bin",
        tar::EntryType::Regular,
    );
    let dest = tmp.path().join("data/clean");
    extract_tar_gz(&archive, &dest).unwrap();
    assert_eq!(
        std::fs::read(dest.join("cifar-10-batches-bin/two.bin")).unwrap(),
        b"evil"
    );
}
