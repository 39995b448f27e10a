//! Tests of the data module's readers (CIFAR binary, IDX raw/gz) and their error messages (the
//! fetcher in tests/fetch.rs). The synthetic set, augmentation and the on-device loader are in
//! tests/loader.rs; the Fashion-MNIST system copy against the official digests in
//! tests/fashion.rs.
use deepres::data::cifar::{read_cifar100_dir, read_cifar10_dir, read_cifar_records};
use deepres::data::idx::{read_idx_dir, read_idx_images, read_idx_labels, IDX_FILES};
use deepres::data::{load, DataSpec, DatasetName};
use tch::{Kind, Tensor};

mod common;
use common::data_files::{cifar_record, err_string, flat_record, gz, write};

// ---------------------------------------------------------------- helpers

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

fn equal(a: &Tensor, b: &Tensor) -> bool {
    a.size() == b.size() && a.equal(b)
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
