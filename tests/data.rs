//! Tests of the data module: readers (CIFAR binary, IDX raw/gz), error messages, the
//! synthetic set, the on-device loader and augmentation, and the fetcher (offline).
use std::io::Write;
use std::path::{Path, PathBuf};

use deepres::data::cifar::{self, read_cifar100_dir, read_cifar10_dir, read_cifar_records};
use deepres::data::fetch::{self, fetch_file, md5_hex};
use deepres::data::idx::{read_idx_dir, read_idx_images, read_idx_labels, IDX_FILES};
use deepres::data::synthetic;
use deepres::data::{
    augment, channel_mean_std, crop_with_offsets, default_dir, extract_tar_gz, flip_where, load,
    verify_and_extract, verify_md5, Augment, DataSpec, Dataset, DatasetName, DeviceData,
};
use tch::{Device, Kind, Tensor};

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

const DEBIAN_FASHION: &str = "/usr/share/datasets/fashion-mnist";

#[test]
fn fashion_mnist_system_copy_loads() {
    if !deepres::data::idx::idx_dir_complete(Path::new(DEBIAN_FASHION)) {
        eprintln!(
            "note: {DEBIAN_FASHION} absent (Debian package dataset-fashion-mnist): test skipped"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(
        default_dir(DatasetName::FashionMnist, tmp.path()),
        Path::new(DEBIAN_FASHION)
    );
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

#[test]
fn fashion_mnist_md5_against_debian_copy() {
    if !Path::new(DEBIAN_FASHION).is_dir() {
        eprintln!("note: {DEBIAN_FASHION} absent: md5 check skipped");
        return;
    }
    for r in fetch::remotes(DatasetName::FashionMnist) {
        let path = Path::new(DEBIAN_FASHION).join(r.file.file_name().unwrap());
        if !path.is_file() {
            eprintln!("note: {} absent: skipped", path.display());
            continue;
        }
        match verify_md5(&path, r.md5) {
            Ok(()) => eprintln!("{}: md5 {} matches the official one", path.display(), r.md5),
            Err(e) => {
                // Debian re-gzipped the official files (no file name in the gzip header),
                // so the .gz digests differ although the content is the same.
                let e = e.to_string();
                assert!(
                    e.contains(r.md5) && e.contains(&md5_hex(&path).unwrap()),
                    "{e}"
                );
                eprintln!("note: Debian copy differs from the official .gz: {e}");
            }
        }
    }
}

// ---------------------------------------------------------------- synthetic

#[test]
fn synthetic_is_deterministic_and_seeded() {
    let a = synthetic::generate(64, 1, synthetic::STREAM_TRAIN);
    let b = synthetic::generate(64, 1, synthetic::STREAM_TRAIN);
    let c = synthetic::generate(64, 2, synthetic::STREAM_TRAIN);
    let t = synthetic::generate(64, 1, synthetic::STREAM_TEST);
    assert_eq!(a.images.size(), [64, 3, 32, 32]);
    assert_eq!(a.images.kind(), Kind::Uint8);
    assert!(equal(&a.images, &b.images) && equal(&a.labels, &b.labels));
    assert!(!equal(&a.images, &c.images));
    assert!(!equal(&a.images, &t.images));
    assert!((synthetic::bayes_ceiling(0.4) - 5.0 / 6.0).abs() < 1e-12);
    assert_eq!(synthetic::bayes_ceiling(1.0), 1.0);
    // The first n do not depend on the set's size.
    let short = synthetic::generate(10, 1, synthetic::STREAM_TRAIN);
    assert!(equal(&short.images, &a.subset(10).images));
    let max = a.labels.max().int64_value(&[]);
    assert!(a.labels.min().int64_value(&[]) >= 0 && max < 10);
    // Not saturated: few pixels at 0 or 255, a reasonable spread.
    let x = a.images.to_kind(Kind::Float);
    let clipped = (x.eq(0.0).sum(Kind::Int64).int64_value(&[])
        + x.eq(255.0).sum(Kind::Int64).int64_value(&[])) as f64;
    assert!(
        clipped / (x.numel() as f64) < 0.01,
        "clipped fraction {}",
        clipped / x.numel() as f64
    );
}

#[test]
fn synthetic_load_computes_statistics_and_limits() {
    let spec = DataSpec {
        synthetic_train: 500,
        synthetic_test: 100,
        seed: 3,
        limit_train: Some(50),
        limit_test: Some(1000),
        ..DataSpec::new(DatasetName::Synthetic)
    };
    let s = load(&spec).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (50, 100));
    assert_eq!(
        (s.num_classes, s.channels, s.height, s.width),
        (10, 3, 32, 32)
    );
    let full = synthetic::generate(500, 3, synthetic::STREAM_TRAIN);
    let (mean, std) = channel_mean_std(&full.images);
    assert_eq!((s.mean.clone(), s.std.clone()), (mean.clone(), std.clone()));
    let xf = full.images.to_kind(Kind::Double) / 255.0;
    for c in 0..3 {
        let ch = xf.select(1, c);
        assert!((ch.mean(Kind::Double).double_value(&[]) - mean[c as usize]).abs() < 1e-9);
        assert!((ch.std(false).double_value(&[]) - std[c as usize]).abs() < 1e-6);
    }
    assert!(equal(&s.train.images, &full.images.narrow(0, 0, 50)));
}

/// Train a tiny CNN for one epoch on 3000 synthetic images; it must beat chance (10%)
/// clearly (it gets about 35%; the ceiling of the default set is 83%).
#[test]
fn synthetic_is_learnable() {
    use tch::nn::{self, Module, OptimizerConfig};
    tch::manual_seed(0);
    let t0 = std::time::Instant::now();
    let (train, test) = synthetic::synthetic_split(3000, 1000, 0);
    eprintln!(
        "synthetic: generated 3000 + 1000 images in {:?}",
        t0.elapsed()
    );
    let (mean, std) = channel_mean_std(&train.images);
    let tr = DeviceData::new(&train, &mean, &std, Device::Cpu);
    let te = DeviceData::new(&test, &mean, &std, Device::Cpu);
    let vs = nn::VarStore::new(Device::Cpu);
    let p = vs.root();
    let conv = |name: &str, i, o, stride| {
        nn::conv2d(
            &p / name,
            i,
            o,
            3,
            nn::ConvConfig {
                padding: 1,
                stride,
                ..Default::default()
            },
        )
    };
    let net = nn::seq()
        .add(conv("c1", 3, 32, 2))
        .add_fn(|x| x.relu())
        .add(conv("c2", 32, 64, 2))
        .add_fn(|x| x.relu().adaptive_avg_pool2d([1, 1]).flatten(1, -1))
        .add(nn::linear(&p / "fc", 64, 10, Default::default()));
    let mut opt = nn::Adam::default().build(&vs, 3e-3).unwrap();
    for (x, y) in tr.train_batches(64, 0, Augment::NONE) {
        opt.backward_step(&net.forward(&x).cross_entropy_for_logits(&y));
    }
    let mut correct = 0;
    tch::no_grad(|| {
        for (x, y) in te.eval_batches(500) {
            correct += net
                .forward(&x)
                .argmax(1, false)
                .eq_tensor(&y)
                .sum(Kind::Int64)
                .int64_value(&[]);
        }
    });
    let acc = correct as f64 / te.len() as f64;
    eprintln!("synthetic: tiny CNN test accuracy after 1 epoch of 3000: {acc:.3}");
    assert!(acc > 0.3, "accuracy {acc}");
}

// ---------------------------------------------------------------- augmentation

/// `[b, c, h, w]` float images with all-distinct, asymmetric values.
fn distinct_batch(b: i64, c: i64, h: i64, w: i64) -> Tensor {
    Tensor::arange(b * c * h * w, (Kind::Float, Device::Cpu)).view([b, c, h, w]) + 1.0
}

#[test]
fn flip_where_selects_per_image() {
    let x = distinct_batch(4, 3, 5, 6);
    let all = Tensor::from_slice(&[true; 4]);
    let none = Tensor::from_slice(&[false; 4]);
    assert!(equal(&flip_where(&x, &all), &x.flip([3])));
    assert!(equal(&flip_where(&x, &none), &x));
    let some = flip_where(&x, &Tensor::from_slice(&[true, false, false, true]));
    assert!(equal(&some.get(0), &x.get(0).flip([2])));
    assert!(equal(&some.get(1), &x.get(1)));
    assert!(equal(&some.get(3), &x.get(3).flip([2])));
}

#[test]
fn crop_with_offsets_identity_and_shift() {
    let pad = 4;
    for (c, side) in [(3, 32), (1, 28)] {
        let x = distinct_batch(2, c, side, side);
        let centre = Tensor::from_slice(&[pad, pad]);
        let id = crop_with_offsets(&x, pad, &centre, &centre);
        assert_eq!(id.size(), x.size());
        assert!(equal(&id, &x));
        let zero = Tensor::from_slice(&[0i64, 0]);
        let s = crop_with_offsets(&x, pad, &zero, &zero);
        // Down-right shift by pad, zeros in the first pad rows and columns.
        assert!(equal(
            &s.narrow(2, pad, side - pad).narrow(3, pad, side - pad),
            &x.narrow(2, 0, side - pad).narrow(3, 0, side - pad)
        ));
        assert_eq!(
            s.narrow(2, 0, pad).abs().sum(Kind::Float).double_value(&[]),
            0.0
        );
        assert_eq!(
            s.narrow(3, 0, pad).abs().sum(Kind::Float).double_value(&[]),
            0.0
        );
        // Per-image offsets: image 0 shifted up-left, image 1 unchanged.
        let oy = Tensor::from_slice(&[2 * pad, pad]);
        let ox = Tensor::from_slice(&[2 * pad, pad]);
        let m = crop_with_offsets(&x, pad, &oy, &ox);
        assert!(equal(&m.get(1), &x.get(1)));
        assert!(equal(
            &m.get(0).narrow(1, 0, side - pad).narrow(2, 0, side - pad),
            &x.get(0)
                .narrow(1, pad, side - pad)
                .narrow(2, pad, side - pad)
        ));
        assert_eq!(
            m.get(0)
                .narrow(1, side - pad, pad)
                .abs()
                .sum(Kind::Float)
                .double_value(&[]),
            0.0
        );
    }
    // Works on uint8 too.
    let x = distinct_batch(1, 1, 8, 8).to_kind(Kind::Uint8);
    let o = Tensor::from_slice(&[1i64]);
    assert_eq!(crop_with_offsets(&x, 1, &o, &o).kind(), Kind::Uint8);
    assert!(equal(&crop_with_offsets(&x, 1, &o, &o), &x));
}

#[test]
fn augment_varies_per_image_and_is_seeded() {
    let one = distinct_batch(1, 3, 32, 32);
    let x = one.repeat([16, 1, 1, 1]);
    let aug = Augment {
        crop_padding: 4,
        hflip: true,
    };
    tch::manual_seed(11);
    let a = augment(&x, aug);
    tch::manual_seed(11);
    let b = augment(&x, aug);
    assert_eq!(a.size(), x.size());
    assert!(equal(&a, &b), "same seed, same augmentation");
    let distinct = (0..16)
        .filter(|&i| (0..i).all(|j| !equal(&a.get(i), &a.get(j))))
        .count();
    assert!(
        distinct >= 8,
        "only {distinct} distinct augmentations of 16"
    );
    // Each output is one of the 81 crops, possibly flipped.
    let offs: Vec<i64> = (0..81).collect();
    let oy = Tensor::from_slice(&offs) / 9;
    let ox = Tensor::from_slice(&offs).remainder(9);
    let crops = crop_with_offsets(&one.repeat([81, 1, 1, 1]), 4, &oy, &ox);
    let crops = Tensor::cat(&[&crops, &crops.flip([3])], 0);
    let mut flipped = 0;
    for i in 0..16 {
        let hit = (0..162).find(|&k| equal(&crops.get(k), &a.get(i)));
        let k = hit.unwrap_or_else(|| panic!("image {i} is not a padded crop"));
        flipped += (k >= 81) as i32;
    }
    assert!((1..16).contains(&flipped), "{flipped} of 16 flipped");
    // No augmentation: unchanged; padding only: no flips.
    assert!(equal(
        &augment(
            &x,
            Augment {
                crop_padding: 0,
                hflip: false
            }
        ),
        &x
    ));
    let one_ch = distinct_batch(5, 1, 28, 28);
    assert_eq!(augment(&one_ch, aug).size(), [5, 1, 28, 28]);
}

// ---------------------------------------------------------------- loader

/// N examples whose label is their index and whose pixels are all `index % 256`.
fn indexed_dataset(n: i64) -> Dataset {
    let idx = Tensor::arange(n, (Kind::Int64, Device::Cpu));
    let images = idx
        .remainder(256)
        .to_kind(Kind::Uint8)
        .view([n, 1, 1, 1])
        .expand([n, 3, 4, 4], false)
        .contiguous();
    Dataset {
        images,
        labels: idx,
    }
}

fn epoch_labels(d: &DeviceData, bs: i64, seed: i64, aug: Augment) -> (Vec<i64>, Vec<i64>) {
    let mut labels = Vec::new();
    let mut sizes = Vec::new();
    for (x, y) in d.train_batches(bs, seed, aug) {
        assert_eq!(x.kind(), Kind::Float);
        assert_eq!(x.size()[0], y.size()[0]);
        sizes.push(y.size()[0]);
        labels.extend(Vec::<i64>::try_from(&y).unwrap());
    }
    (labels, sizes)
}

#[test]
fn train_batches_cover_every_index_once_and_are_seeded() {
    let ds = indexed_dataset(103);
    let d = DeviceData::new(&ds, &[0.5; 3], &[0.25; 3], Device::Cpu);
    let aug = Augment {
        crop_padding: 1,
        hflip: true,
    };
    let (a, sizes) = epoch_labels(&d, 10, 5, aug);
    assert_eq!(sizes, [10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 3]);
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted, (0..103).collect::<Vec<_>>());
    assert_ne!(a, sorted, "shuffled");
    assert_eq!(epoch_labels(&d, 10, 5, aug).0, a);
    assert_ne!(epoch_labels(&d, 10, 6, aug).0, a);
    // Without augmentation, x is the normalized image of label y.
    for (x, y) in d.train_batches(
        16,
        1,
        Augment {
            crop_padding: 0,
            hflip: false,
        },
    ) {
        let want = ((y.remainder(256).to_kind(Kind::Float) / 255.0 - 0.5) / 0.25)
            .view([-1, 1, 1, 1])
            .expand_as(&x);
        assert!(x.allclose(&want, 1e-6, 1e-6, false));
    }
}

#[test]
fn eval_batches_keep_order_and_normalize() {
    let (train, _) = synthetic::synthetic_split(300, 0, 9);
    let (mean, std) = channel_mean_std(&train.images);
    let d = DeviceData::new(&train, &mean, &std, Device::Cpu);
    assert_eq!(d.len(), 300);
    let batches: Vec<(Tensor, Tensor)> = d.eval_batches(128).collect();
    assert_eq!(
        batches.iter().map(|(_, y)| y.size()[0]).collect::<Vec<_>>(),
        [128, 128, 44]
    );
    let x = Tensor::cat(&batches.iter().map(|(x, _)| x).collect::<Vec<_>>(), 0);
    let y = Tensor::cat(&batches.iter().map(|(_, y)| y).collect::<Vec<_>>(), 0);
    assert!(equal(&y, &train.labels));
    let m = x.mean_dim([0i64, 2, 3].as_slice(), false, Kind::Double);
    let s = x
        .to_kind(Kind::Double)
        .std_dim([0i64, 2, 3].as_slice(), false, false);
    for c in 0..3 {
        assert!(m.double_value(&[c]).abs() < 1e-4, "mean {m}");
        assert!((s.double_value(&[c]) - 1.0).abs() < 1e-4, "std {s}");
    }
    // The first image, by hand.
    let first = (train.images.get(0).to_kind(Kind::Double) / 255.0
        - Tensor::from_slice(&mean).view([3, 1, 1]))
        / Tensor::from_slice(&std).view([3, 1, 1]);
    assert!(x
        .get(0)
        .to_kind(Kind::Double)
        .allclose(&first, 1e-5, 1e-5, false));
}

#[test]
fn subset_takes_the_first_n() {
    let ds = indexed_dataset(10);
    assert_eq!(
        Vec::<i64>::try_from(&ds.subset(3).labels).unwrap(),
        [0, 1, 2]
    );
    assert_eq!(ds.subset(50).len(), 10);
    assert_eq!(ds.subset(3).images.size(), [3, 3, 4, 4]);
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

// ---------------------------------------------------------------- CUDA

/// The loader and augmentation on a CUDA device agree with the CPU ones (skipped with a
/// note when no GPU is visible).
#[test]
fn cuda_loader_matches_cpu() {
    if !tch::Cuda::is_available() {
        eprintln!("note: CUDA not available: cuda_loader_matches_cpu skipped");
        return;
    }
    let gpu = Device::Cuda(0);
    // Deterministic pieces: same result on both devices.
    let x = distinct_batch(6, 3, 32, 32);
    let oy = Tensor::from_slice(&[0i64, 1, 4, 8, 3, 6]);
    let ox = Tensor::from_slice(&[8i64, 4, 0, 2, 7, 5]);
    let mask = Tensor::from_slice(&[true, false, true, true, false, false]);
    let cpu = flip_where(&crop_with_offsets(&x, 4, &oy, &ox), &mask);
    let xg = x.to_device(gpu);
    let dev = flip_where(
        &crop_with_offsets(&xg, 4, &oy.to_device(gpu), &ox.to_device(gpu)),
        &mask.to_device(gpu),
    );
    assert_eq!(dev.device(), gpu);
    assert!(equal(&dev.to_device(Device::Cpu), &cpu));
    // augment on the GPU: seeded, valid crops, on the GPU.
    let aug = Augment {
        crop_padding: 4,
        hflip: true,
    };
    tch::manual_seed(3);
    let a = augment(&xg.to_kind(Kind::Uint8), aug);
    tch::manual_seed(3);
    let b = augment(&xg.to_kind(Kind::Uint8), aug);
    assert_eq!(a.device(), gpu);
    assert!(equal(&a, &b));
    // DeviceData on the GPU: coverage, seeding, eval equals the CPU eval.
    let ds = indexed_dataset(1000);
    let d = DeviceData::new(&ds, &[0.5; 3], &[0.25; 3], gpu);
    let (l1, sizes) = epoch_labels(&d, 128, 7, aug);
    assert_eq!(sizes.iter().sum::<i64>(), 1000);
    assert_eq!(*sizes.last().unwrap(), 1000 % 128);
    let mut sorted = l1.clone();
    sorted.sort();
    assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
    assert_eq!(epoch_labels(&d, 128, 7, aug).0, l1);
    assert_ne!(epoch_labels(&d, 128, 8, aug).0, l1);
    for (x, y) in d.train_batches(256, 1, aug).take(1) {
        assert_eq!((x.device(), y.device(), x.kind()), (gpu, gpu, Kind::Float));
    }
    let (train, _) = synthetic::synthetic_split(700, 0, 4);
    let (mean, std) = channel_mean_std(&train.images);
    let dc = DeviceData::new(&train, &mean, &std, Device::Cpu);
    let dg = DeviceData::new(&train, &mean, &std, gpu);
    for ((xc, yc), (xg, yg)) in dc.eval_batches(256).zip(dg.eval_batches(256)) {
        assert!(equal(&yc, &yg.to_device(Device::Cpu)));
        assert!(xc.allclose(&xg.to_device(Device::Cpu), 1e-5, 1e-5, false));
    }
    eprintln!("cuda_loader_matches_cpu: ok on {:?}", gpu);
}

/// How hard the synthetic set is: a small BN ResNet trained for 15 epochs with the CIFAR
/// augmentation on 10000 images (GPU if present). Prints the test accuracy per epoch.
/// Slow on a CPU: `cargo test --test data -- --ignored synthetic_difficulty --nocapture`;
/// `DEEPRES_SYNTH_MIN_WEIGHTS=0.3,0.4,1` sweeps `SynthParams::min_weight`.
#[test]
#[ignore]
fn synthetic_difficulty() {
    let weights = std::env::var("DEEPRES_SYNTH_MIN_WEIGHTS").unwrap_or_default();
    let weights: Vec<f32> = weights
        .split(',')
        .filter_map(|w| w.trim().parse().ok())
        .collect();
    let default = synthetic::SynthParams::default();
    if weights.is_empty() {
        train_small_resnet(default);
    }
    for min_weight in weights {
        train_small_resnet(synthetic::SynthParams {
            min_weight,
            ..default
        });
    }
}

fn train_small_resnet(params: synthetic::SynthParams) {
    use tch::nn::{self, ModuleT, OptimizerConfig};
    let device = Device::cuda_if_available();
    eprintln!(
        "synthetic_difficulty: {params:?}, Bayes ceiling {:.3}",
        synthetic::bayes_ceiling(params.min_weight as f64)
    );
    tch::manual_seed(0);
    let train = synthetic::generate_with(10_000, 0, synthetic::STREAM_TRAIN, &params);
    let test = synthetic::generate_with(2_000, 0, synthetic::STREAM_TEST, &params);
    let (mean, std) = channel_mean_std(&train.images);
    let tr = DeviceData::new(&train, &mean, &std, device);
    let te = DeviceData::new(&test, &mean, &std, device);
    let vs = nn::VarStore::new(device);
    let p = vs.root();
    let cc = |stride| nn::ConvConfig {
        padding: 1,
        stride,
        bias: false,
        ..Default::default()
    };
    let block = |p: nn::Path, i: i64, o: i64, stride: i64| {
        let c1 = nn::conv2d(&p / "c1", i, o, 3, cc(stride));
        let b1 = nn::batch_norm2d(&p / "b1", o, Default::default());
        let c2 = nn::conv2d(&p / "c2", o, o, 3, cc(1));
        let b2 = nn::batch_norm2d(&p / "b2", o, Default::default());
        let sc = (stride != 1 || i != o).then(|| {
            nn::conv2d(
                &p / "sc",
                i,
                o,
                1,
                nn::ConvConfig {
                    stride,
                    bias: false,
                    ..Default::default()
                },
            )
        });
        nn::func_t(move |x, t| {
            let y = x
                .apply(&c1)
                .apply_t(&b1, t)
                .relu()
                .apply(&c2)
                .apply_t(&b2, t);
            let s = match &sc {
                Some(sc) => x.apply(sc),
                None => x.shallow_clone(),
            };
            (y + s).relu()
        })
    };
    let net = nn::seq_t()
        .add(nn::conv2d(&p / "stem", 3, 32, 3, cc(1)))
        .add(nn::batch_norm2d(&p / "bn", 32, Default::default()))
        .add_fn(|x| x.relu())
        .add(block(&p / "l1", 32, 32, 1))
        .add(block(&p / "l2", 32, 64, 2))
        .add(block(&p / "l3", 64, 128, 2))
        .add_fn(|x| x.adaptive_avg_pool2d([1, 1]).flatten(1, -1))
        .add(nn::linear(&p / "fc", 128, 10, Default::default()));
    let mut opt = nn::Sgd {
        momentum: 0.9,
        nesterov: true,
        wd: 5e-4,
        ..Default::default()
    }
    .build(&vs, 0.05)
    .unwrap();
    let epochs = 15;
    for epoch in 0..epochs {
        opt.set_lr(
            0.05 * 0.5 * (1.0 + (std::f64::consts::PI * epoch as f64 / epochs as f64).cos()),
        );
        let (mut loss_sum, mut n) = (0.0, 0);
        for (x, y) in tr.train_batches(
            128,
            epoch,
            Augment {
                crop_padding: 4,
                hflip: true,
            },
        ) {
            let loss = net.forward_t(&x, true).cross_entropy_for_logits(&y);
            opt.backward_step(&loss);
            loss_sum += loss.double_value(&[]) * y.size()[0] as f64;
            n += y.size()[0];
        }
        let mut correct = 0;
        tch::no_grad(|| {
            for (x, y) in te.eval_batches(500) {
                correct += net
                    .forward_t(&x, false)
                    .argmax(1, false)
                    .eq_tensor(&y)
                    .sum(Kind::Int64)
                    .int64_value(&[]);
            }
        });
        eprintln!(
            "synthetic_difficulty epoch {epoch}: train loss {:.3}, test acc {:.3}",
            loss_sum / n as f64,
            correct as f64 / te.len() as f64
        );
    }
}
