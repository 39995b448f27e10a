//! Property-based fuzzing of the input readers (proptest): valid files (CIFAR binary batches,
//! torchvision's pickled CIFAR batches in both pickle styles, IDX files raw and gzipped, run
//! configs, grid files, checkpoints, safetensors exports) mutated at random: bytes flipped or
//! set, runs inserted or deleted, the file cut or extended, biased towards each format's
//! header. Every reader must return (never panic: proptest catches a panic and fails with the
//! smallest input it finds), quickly (each case under a second), without a huge allocation
//! (the largest Rust allocation of the whole binary is checked against 64 MiB), and a refusal
//! must be one line; a mutation that changes the length of a fixed-size format must be
//! refused. Case counts are in [`CASES`]; the seed is fixed, so a run repeats.
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use deepres::data::{cifar, idx};

mod common;

/// Records the largest single allocation made through Rust's allocator (file reads, the
/// unpickler, YAML, gzip, safetensors headers; libtorch's own tensors are not counted).
struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

/// Cases per reader (also quoted in docs/reliability.md).
const CASES: u32 = 4000;
/// The largest allocation any case may cause.
const HUGE: usize = 64 << 20;

/// One edit of a file; positions are taken modulo the file's length (`hot`: modulo the
/// length of its header instead).
#[derive(Debug, Clone)]
enum Edit {
    Xor {
        hot: bool,
        at: usize,
        bits: u8,
    },
    Set {
        hot: bool,
        at: usize,
        byte: u8,
    },
    Insert {
        hot: bool,
        at: usize,
        bytes: Vec<u8>,
    },
    Delete {
        hot: bool,
        at: usize,
        len: usize,
    },
    Cut {
        at: usize,
    },
    Append {
        bytes: Vec<u8>,
    },
}

fn edit() -> impl Strategy<Value = Edit> {
    let bytes = || prop::collection::vec(any::<u8>(), 1..16);
    prop_oneof![
        4 => (any::<bool>(), any::<usize>(), 1u8..=255).prop_map(|(hot, at, bits)| Edit::Xor { hot, at, bits }),
        3 => (any::<bool>(), any::<usize>(), any::<u8>()).prop_map(|(hot, at, byte)| Edit::Set { hot, at, byte }),
        1 => (any::<bool>(), any::<usize>(), bytes()).prop_map(|(hot, at, bytes)| Edit::Insert { hot, at, bytes }),
        1 => (any::<bool>(), any::<usize>(), 1usize..64).prop_map(|(hot, at, len)| Edit::Delete { hot, at, len }),
        1 => any::<usize>().prop_map(|at| Edit::Cut { at }),
        1 => bytes().prop_map(|bytes| Edit::Append { bytes }),
    ]
}

/// `base` with `edits` applied; `header` is the length of its header (where `hot` edits land).
fn mutate(base: &[u8], header: usize, edits: &[Edit]) -> Vec<u8> {
    let mut v = base.to_vec();
    let pos = |v: &Vec<u8>, hot: bool, at: usize| {
        let n = if hot { header.min(v.len()) } else { v.len() };
        if n == 0 {
            0
        } else {
            at % n
        }
    };
    for e in edits {
        match e {
            Edit::Xor { hot, at, bits } if !v.is_empty() => {
                let i = pos(&v, *hot, *at);
                v[i] ^= bits;
            }
            Edit::Set { hot, at, byte } if !v.is_empty() => {
                let i = pos(&v, *hot, *at);
                v[i] = *byte;
            }
            Edit::Insert { hot, at, bytes } => {
                let i = pos(&v, *hot, *at);
                v.splice(i..i, bytes.iter().copied());
            }
            Edit::Delete { hot, at, len } => {
                let i = pos(&v, *hot, *at);
                let end = (i + len).min(v.len());
                v.drain(i..end);
            }
            Edit::Cut { at } => v.truncate(at % (v.len() + 1)),
            Edit::Append { bytes } => v.extend_from_slice(bytes),
            _ => {}
        }
    }
    v
}

/// Runs [`CASES`] mutations of `base` through `read` (Ok, or Err with its message); fails on
/// a panic, a case over a second, a refusal of more than one line, a length-changing mutation
/// accepted when `fixed_size`, and an allocation over [`HUGE`]. Returns (accepted, refused).
fn fuzz(
    name: &str,
    base: &[u8],
    header: usize,
    fixed_size: bool,
    mut read: impl FnMut(&[u8]) -> Result<(), String>,
) -> (u32, u32) {
    assert!(
        read(base).is_ok(),
        "{name}: the valid file is refused: {:?}",
        read(base)
    );
    let config = Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    };
    let seed = [7u8; 32];
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    let counts = std::cell::Cell::new((0u32, 0u32));
    let read = std::cell::RefCell::new(read);
    let strategy = prop::collection::vec(edit(), 1..4);
    let result = runner.run(&strategy, |edits| {
        let bytes = mutate(base, header, &edits);
        let t0 = Instant::now();
        let outcome = (read.borrow_mut())(&bytes);
        let took = t0.elapsed();
        // A guard against a hang or a runaway allocation (a reader looping on a bad length),
        // not a speed target: reads take milliseconds, and a loaded CI machine must not fail it.
        prop_assert!(
            took < Duration::from_secs(10),
            "{name}: {took:?} on {edits:?}"
        );
        let (ok, err) = counts.get();
        match outcome {
            Ok(()) => {
                prop_assert!(
                    !fixed_size || bytes.len() == base.len(),
                    "{name}: {} bytes instead of {} accepted",
                    bytes.len(),
                    base.len()
                );
                counts.set((ok + 1, err));
            }
            Err(e) => {
                prop_assert!(!e.contains('\n'), "{name}: a refusal of several lines: {e}");
                prop_assert!(!e.is_empty(), "{name}: an empty error");
                counts.set((ok, err + 1));
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(largest < HUGE, "{name}: an allocation of {largest} bytes");
    let (ok, err) = counts.get();
    eprintln!(
        "{name}: {} cases, {ok} still valid, {err} refused",
        ok + err
    );
    (ok, err)
}

fn err_line(e: impl std::fmt::Display) -> String {
    format!("{e:#}")
}

/// Writes `bytes` to `path` (replacing it).
fn put(path: &Path, bytes: &[u8]) {
    std::fs::File::create(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

/// CIFAR-10's binary layout with 2 images per file: a mutated `data_batch_3.bin` (label
/// byte then 3072 pixels per record).
#[test]
fn cifar_binary_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let record = |i: u8| -> Vec<u8> {
        let mut r = vec![i % 10];
        r.extend((0..3072u32).map(|k| (k as u8).wrapping_mul(i)));
        r
    };
    let batch: Vec<u8> = [record(1), record(2)].concat();
    for f in [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ] {
        put(&dir.join(f), &batch);
    }
    let target = dir.join("data_batch_3.bin");
    let (_, refused) = fuzz("cifar binary", &batch, 1, true, |bytes| {
        put(&target, bytes);
        let (train, _) = cifar::read_cifar10_dir(dir, 2, 2).map_err(err_line)?;
        assert_eq!(train.images.size(), [10, 3, 32, 32]);
        Ok(())
    });
    assert!(refused > 0);
}

/// torchvision's pickled CIFAR batches (2 images), as Python 2's cPickle and Python 3's
/// pickle protocol 2 write them (written by the oracle script), read by deepres's unpickler.
#[test]
fn cifar_pickled_batches() {
    for (style, seed) in [("py2", "3"), ("py3", "4")] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let r = root.to_str().unwrap();
        common::python_oracle(
            "torchvision_data.py",
            &["cifar", r, "cifar10", "2", "2", style, seed],
        );
        let base = std::fs::read(root.join("cifar-10-batches-py/test_batch")).unwrap();
        let path = root.join("mutated");
        // the dict's keys and the numpy reconstruction come first; the 6 KiB of pixels after
        let header = base.len() - 2 * 3072;
        fuzz(
            &format!("cifar pickle ({style})"),
            &base,
            header,
            false,
            |bytes| {
                put(&path, bytes);
                let ds = cifar::read_cifar_pickle(&path, 2, "labels", 10).map_err(err_line)?;
                assert_eq!(ds.images.size(), [2, 3, 32, 32]);
                Ok(())
            },
        );
    }
}

/// An IDX file: magic, dimensions, then the bytes.
fn idx_file(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    v.extend_from_slice(body);
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// MNIST's IDX layout (3 images of 8×8 per split), raw and gzipped: a mutated training
/// image file, then a mutated training label file.
#[test]
fn idx_files_raw_and_gzipped() {
    let images = idx_file(
        0x803,
        &[3, 8, 8],
        &(0..192u32).map(|i| i as u8).collect::<Vec<_>>(),
    );
    let labels = idx_file(0x801, &[3], &[1, 7, 9]);
    for zipped in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let ext = if zipped { ".gz" } else { "" };
        let files = idx::IDX_FILES;
        for (f, bytes) in [(files[2], &images), (files[3], &labels)] {
            let bytes = if zipped { gz(bytes) } else { bytes.clone() };
            put(&dir.join(format!("{f}{ext}")), &bytes);
        }
        for (f, plain, header) in [(files[0], &images, 16), (files[1], &labels, 8)] {
            let (other, other_plain) = match f == files[0] {
                true => (files[1], &labels),
                false => (files[0], &images),
            };
            let base = if zipped { gz(plain) } else { plain.clone() };
            let other_bytes = if zipped {
                gz(other_plain)
            } else {
                other_plain.clone()
            };
            put(&dir.join(format!("{other}{ext}")), &other_bytes);
            let path = dir.join(format!("{f}{ext}"));
            let header = if zipped { 10 } else { header };
            let name = format!("idx {f}{ext}");
            fuzz(&name, &base, header, !zipped, |bytes| {
                put(&path, bytes);
                let (train, _) = idx::read_idx_dir(dir, 3, 3, 8).map_err(err_line)?;
                assert_eq!(train.images.size(), [3, 1, 8, 8]);
                Ok(())
            });
        }
    }
}

/// A run config: the default one with every key written out (what config.yaml holds).
#[test]
fn run_configs() {
    use deepres::train::config::RunConfig;
    let base = RunConfig::default().to_yaml().into_bytes();
    fuzz("run config", &base, base.len(), false, |bytes| {
        let text = String::from_utf8_lossy(bytes);
        RunConfig::from_yaml_str(&text, "fuzz.yaml", &[]).map_err(err_line)?;
        Ok(())
    });
}

/// A grid file: Table Z1's (base config, variants, grid, seeds, scales, report).
#[test]
fn grid_files() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/zhang2022/table1.yaml");
    let base = std::fs::read(src).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("grid.yaml");
    fuzz("grid file", &base, base.len(), false, |bytes| {
        put(&path, bytes);
        let grid = deepres::sweep::Grid::load(&path, Some("smoke"), &[]).map_err(err_line)?;
        grid.cells().map_err(err_line)?;
        Ok(())
    });
}

/// The checkpoint of a tiny run (ResNet-8, one epoch), mutated mostly in its JSON header,
/// loaded into the run's model and optimizer as `--resume` does.
#[test]
fn checkpoints_and_safetensors_exports() {
    use deepres::train::{self, checkpoint, config::RunConfig, export, sgd::Sgd, RunOptions};
    let _g = common::serial();
    let tmp = tempfile::tempdir().unwrap();
    let sets: Vec<String> = [
        "name=fz",
        "device=cpu",
        "data.name=synthetic",
        "data.synthetic_train=64",
        "data.synthetic_test=32",
        "model.depth=8",
        "model.shortcut=a-bn",
        "train.epochs=1",
        "train.batch_size=32",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("out_dir={}", tmp.path().display())])
    .collect();
    let cfg = RunConfig::from_overrides(&sets).unwrap();
    let quiet = RunOptions {
        quiet: true,
        ..Default::default()
    };
    train::run(&cfg, &quiet).unwrap();
    let run = cfg.run_dir();
    let ckpt = checkpoint::path(&run);
    let base = std::fs::read(&ckpt).unwrap();
    let header = 8 + u64::from_le_bytes(base[..8].try_into().unwrap()) as usize;
    let mut vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let model = deepres::model::resnet::ResNet::new(&vs.root(), &cfg.model, 3, 10).unwrap();
    let t = &cfg.train;
    let mut opt = Sgd::for_precision(&vs, t.optimizer, model.num_blocks, t.precision);
    fuzz("checkpoint", &base, header, false, |bytes| {
        put(&ckpt, bytes);
        checkpoint::load(&run, &mut vs, &mut opt).map_err(err_line)?;
        Ok(())
    });
    let out = tmp.path().join("fz.safetensors");
    export::export(
        &run,
        export::Weights::Best,
        export::ExportFormat::TauPaper,
        &out,
    )
    .unwrap();
    let base = std::fs::read(&out).unwrap();
    let header = 8 + u64::from_le_bytes(base[..8].try_into().unwrap()) as usize;
    fuzz("safetensors export", &base, header, false, |bytes| {
        put(&out, bytes);
        // as `deepres eval` reads it: the model off the tensors, then the tensors into it
        let file = export::load_file(&out, None).map_err(err_line)?;
        export::build(&file.model, &file.vars, 3, 10).map_err(err_line)?;
        Ok(())
    });
}

/// A gzipped IDX label file that inflates to 256 MiB (zeros; 256 KiB on disk) where 11 bytes
/// are expected is refused in one line, and no allocation near its inflated size is made:
/// the reader stops one byte past the expected size.
#[test]
fn a_gzip_bomb_is_refused_without_inflating_it() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("train-labels-idx1-ubyte.gz");
    let mut e = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::best(),
    );
    e.write_all(&idx_file(0x801, &[3], &[1, 7, 9])).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        e.write_all(&zeros).unwrap();
    }
    e.finish().unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() < 1 << 20);
    let err = err_line(idx::read_idx_labels(&path, 3).unwrap_err());
    assert!(
        err.contains("wrong size: expected 11 bytes after decompression, found more"),
        "{err}"
    );
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(largest < HUGE, "an allocation of {largest} bytes");
}
