//! Dataset files written by the tests in the exact on-disk formats (CIFAR binary records,
//! gzip), and reading an expected error.
use std::io::Write;
use std::path::{Path, PathBuf};

use deepres::data::cifar;

/// One CIFAR record: labels, then R, G, B planes of 1024 bytes.
pub fn cifar_record(labels: &[u8], planes: [&[u8]; 3]) -> Vec<u8> {
    let mut v = labels.to_vec();
    for p in planes {
        assert_eq!(p.len(), 1024);
        v.extend_from_slice(p);
    }
    v
}

/// A record whose planes are constant `(r, g, b)`.
pub fn flat_record(labels: &[u8], r: u8, g: u8, b: u8) -> Vec<u8> {
    cifar_record(labels, [&[r; 1024], &[g; 1024], &[b; 1024]])
}

/// Writes `bytes` to `path`, creating its folders.
pub fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// `bytes` gzipped.
pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// The error of `r`, with its causes, on one line.
pub fn err_string<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

/// Write a full-size CIFAR-10 binary directory under `root` (label = i % 10, planes
/// constant (i % 256, batch, 7) for training batch `batch`, (i % 256, 9, 7) for test).
pub fn write_full_cifar10(root: &Path) -> PathBuf {
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
