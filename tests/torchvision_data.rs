//! torchvision's on-disk layouts: the pickled CIFAR batches (`cifar-10-batches-py/`,
//! `cifar-100-python/`) and `MNIST/raw/`, `FashionMNIST/raw/`, under a data root that is
//! torchvision's root.
//!
//! The oracle is Python itself: tests/oracles/torchvision_data.py writes the files with
//! Python's pickle (protocol 2, bytes keys, a numpy uint8 array; both as Python 2's cPickle
//! wrote the official archives and as Python 3's `pickle.dump` does), reads each back with
//! `pickle.load`, and writes the values it pickled as raw bytes; deepres must read exactly
//! those. Malicious pickles are Python's too, and the script first shows that Python's own
//! `pickle.loads` runs their payload. Python and numpy come from `make setup`; a missing one
//! fails these tests.
mod common;

use std::path::{Path, PathBuf};

use common::{one_line_error, python_oracle, run_in, stderr, stdout};
use deepres::data::cifar::{
    self, read_cifar100_py_dir, read_cifar10_dir, read_cifar10_py_dir, read_cifar_pickle,
};
use deepres::data::layout::{self, first_missing, Layout};
use deepres::data::pickle::{self, PickleError, Value};
use deepres::data::{load, locate, read_splits, DataSpec, Dataset, DatasetName};
use tch::Tensor;

const SCRIPT: &str = "torchvision_data.py";

fn oracle(args: &[&str]) {
    python_oracle(SCRIPT, args);
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The images of `ds` as numpy's C-order bytes of `[N, 3072]` (or `[N, side²]`).
fn raw_images(ds: &Dataset) -> Vec<u8> {
    Vec::<u8>::try_from(&ds.images.contiguous().view([-1])).unwrap()
}

fn labels(ds: &Dataset) -> Vec<i64> {
    Vec::<i64>::try_from(&ds.labels).unwrap()
}

/// The expected values the oracle wrote for `files` (concatenated): images and labels.
fn expected(expect: &Path, files: &[&str], label_suffix: &str) -> (Vec<u8>, Vec<i64>) {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for f in files {
        images.extend(read(&expect.join(format!("{f}.images"))));
        let l = read(&expect.join(format!("{f}{label_suffix}")));
        labels.extend(l.iter().map(|&b| b as i64));
    }
    (images, labels)
}

fn err<T: std::fmt::Debug>(r: Result<T, impl std::fmt::Display>) -> String {
    let e = r.expect_err("expected an error").to_string();
    assert!(!e.contains('\n'), "one line expected: {e}");
    e
}

const TRAIN10: [&str; 5] = [
    "data_batch_1",
    "data_batch_2",
    "data_batch_3",
    "data_batch_4",
    "data_batch_5",
];

/// A binary CIFAR-10 directory holding the same records as the oracle's expected values.
fn write_binary_twin(root: &Path) -> PathBuf {
    let dir = root.join(cifar::CIFAR10_DIR);
    std::fs::create_dir_all(&dir).unwrap();
    for f in TRAIN10.iter().chain(&["test_batch"]) {
        let (images, labels) = expected(&root.join("expect"), &[f], ".labels");
        let mut v = Vec::new();
        for (i, l) in labels.iter().enumerate() {
            v.push(*l as u8);
            v.extend_from_slice(&images[i * 3072..(i + 1) * 3072]);
        }
        std::fs::write(dir.join(format!("{f}.bin")), v).unwrap();
    }
    dir
}

// ---------------------------------------------------------------- CIFAR python

/// Both pickle styles load to exactly the pixels and labels Python pickled, in the binary
/// format's pixel order: the same records written as a binary directory read the same.
#[test]
fn cifar10_python_layout_holds_what_python_wrote() {
    for (style, seed) in [("py2", "1"), ("py3", "2")] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        oracle(&["cifar", s(root), "cifar10", "20", "20", style, seed]);
        let dir = root.join(cifar::CIFAR10_PY_DIR);
        let (train, test) = read_cifar10_py_dir(&dir, 20, 20).unwrap();
        let expect = root.join("expect");
        let (images, y) = expected(&expect, &TRAIN10, ".labels");
        assert_eq!(train.images.size(), [100, 3, 32, 32], "{style}");
        assert_eq!(raw_images(&train), images, "{style}");
        assert_eq!(labels(&train), y, "{style}");
        let (images, y) = expected(&expect, &["test_batch"], ".labels");
        assert_eq!(raw_images(&test), images, "{style}");
        assert_eq!(labels(&test), y, "{style}");
        // Pixel (image 3, green, row 2, column 5) is byte 3·3072 + 1024 + 2·32 + 5.
        let px = test.images.int64_value(&[3, 1, 2, 5]);
        assert_eq!(px, images[3 * 3072 + 1024 + 2 * 32 + 5] as i64);
        let bin = write_binary_twin(root);
        let (btrain, btest) = read_cifar10_dir(&bin, 20, 20).unwrap();
        assert!(btrain.images.equal(&train.images) && btrain.labels.equal(&train.labels));
        assert!(btest.images.equal(&test.images) && btest.labels.equal(&test.labels));
    }
}

#[test]
fn cifar100_python_fine_and_coarse_labels() {
    for style in ["py2", "py3"] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        oracle(&["cifar", s(root), "cifar100", "30", "20", style, "3"]);
        let dir = root.join(cifar::CIFAR100_PY_DIR);
        let expect = root.join("expect");
        for (coarse, suffix) in [(false, ".fine"), (true, ".coarse")] {
            let (train, test) = read_cifar100_py_dir(&dir, 30, 20, coarse).unwrap();
            for (ds, file) in [(&train, "train"), (&test, "test")] {
                let (images, y) = expected(&expect, &[file], suffix);
                assert_eq!(raw_images(ds), images, "{style} {file}");
                assert_eq!(labels(ds), y, "{style} {file} {suffix}");
            }
        }
        // At the official sizes (through the dataset loader) the shape is checked.
        let at = locate(DatasetName::Cifar100, root);
        assert_eq!(at.layout, Layout::CifarPython);
        let e = err(read_splits(DatasetName::Cifar100, &at, false));
        assert!(
            e.contains(
                "cifar-100-python/train: `data` has shape [30, 3072], expected [50000, 3072]"
            ),
            "{e}"
        );
    }
}

/// A column-major (Fortran-order) array is numpy's too; it reads in C order.
#[test]
fn fortran_ordered_data_reads_in_c_order() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("data_batch_1");
    oracle(&["bad", s(&path), "fortran", "20"]);
    let ds = read_cifar_pickle(&path, 20, "labels", 10).unwrap();
    assert_eq!(
        raw_images(&ds),
        read(&tmp.path().join("data_batch_1.images"))
    );
    let y: Vec<i64> = read(&tmp.path().join("data_batch_1.labels"))
        .iter()
        .map(|&b| b as i64)
        .collect();
    assert_eq!(labels(&ds), y);
}

#[test]
fn wrong_shape_dtype_or_keys_are_one_line_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            "shape4d",
            "`data` has shape [20, 3, 32, 32], expected [20, 3072]",
        ),
        ("rows", "`data` has shape [19, 3072], expected [20, 3072]"),
        ("cols", "`data` has shape [20, 3071], expected [20, 3072]"),
        ("float", "`data` has dtype f4, expected uint8 (u1)"),
        ("labels", "`labels` has 19 entries, expected 20"),
        ("nodata", "the pickled dict has no key `data`"),
        ("list", "the pickle holds a list, expected a dict"),
    ];
    for (case, what) in cases {
        let path = tmp.path().join(case);
        oracle(&["bad", s(&path), case, "20"]);
        let e = err(read_cifar_pickle(&path, 20, "labels", 10));
        assert_eq!(e, format!("{}: {what}", path.display()));
    }
    let path = tmp.path().join("absent");
    let e = err(read_cifar_pickle(&path, 20, "labels", 10));
    let want = "missing: expected a pickled CIFAR batch of 20 images";
    assert_eq!(e, format!("{}: {want}", path.display()));
}

#[test]
fn truncated_pickles_are_one_line_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    oracle(&["cifar", s(root), "cifar10", "20", "20", "py2", "4"]);
    let full = read(&root.join(cifar::CIFAR10_PY_DIR).join("data_batch_1"));
    // Inside PROTO, inside a key, inside the pixel string, just before STOP.
    for len in [1, 9, full.len() / 2, full.len() - 1] {
        let path = root.join(format!("cut_{len}"));
        std::fs::write(&path, &full[..len]).unwrap();
        let e = err(read_cifar_pickle(&path, 20, "labels", 10));
        assert!(
            e.starts_with(&format!(
                "{}: truncated pickle: the file ends at byte {len}",
                path.display()
            )),
            "{e}"
        );
    }
}

// ---------------------------------------------------------------- malicious pickles

/// A pickle whose global would run a command is refused by name; the command never runs,
/// while Python's own pickle.loads runs the same payload (the oracle checks that first).
#[test]
fn pickles_that_would_run_code_are_refused_and_nothing_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("os.system", "`os.system`"),
        ("posix.system", "`posix.system`"),
        ("builtins.eval", "`__builtin__.eval`"),
        ("builtins.eval@4", "`builtins.eval`"),
    ];
    for (i, (global, named)) in cases.into_iter().enumerate() {
        let path = tmp.path().join(format!("evil_{i}"));
        let marker = tmp.path().join(format!("marker_{i}"));
        let control = tmp.path().join(format!("control_{i}"));
        oracle(&["evil", s(&path), global, s(&marker), s(&control)]);
        assert!(control.exists(), "the oracle's control payload ran");
        let e = err(read_cifar_pickle(&path, 1, "labels", 10));
        assert!(
            e.starts_with(&format!(
                "{}: refused pickle global {named}",
                path.display()
            )),
            "{e}"
        );
        assert!(e.contains("nothing was executed"), "{e}");
        assert!(!marker.exists(), "{global}: the payload ran");
    }
}

fn load_err(bytes: &[u8]) -> String {
    err(pickle::load(bytes))
}

/// Opcode streams no pickler writes for these files but an attacker might.
#[test]
fn unpickler_refuses_what_it_does_not_resolve() {
    let mut deep = b"\x80\x02)".to_vec();
    deep.extend(std::iter::repeat_n(0x85, 1000));
    deep.push(b'.');
    assert!(load_err(&deep).contains("nested deeper than 64"));
    let e = load_err(b"\x80\x02ccopyreg\n_reconstructor\nq\x00.");
    assert!(
        e.contains("refused pickle global `copyreg._reconstructor`"),
        "{e}"
    );
    // Names from the file are escaped: the message stays one line.
    let e = load_err(b"\x80\x02cos\rx\nsystem\n.");
    assert!(e.contains(r"refused pickle global `os\rx.system`"), "{e}");
    assert!(!e.contains('\r'), "{e}");
    let e = load_err(b"\x80\x02(ios\nsystem\nU\x02ls.");
    assert!(
        e.contains("unsupported pickle opcode INST (0x69 'i')"),
        "{e}"
    );
    assert!(e.contains("creates an object of a class"), "{e}");
    assert!(load_err(b"\x80\x02\x81.").contains("NEWOBJ"));
    assert!(load_err(b"\x80\x02\x82\x01.").contains("extension codes"));
    assert!(load_err(b"\x80\x02T\xff\xff\xff\xff.").contains("negative string length"));
    // A list referenced twice would be stale here: refused.
    let e = load_err(b"\x80\x02]q\x00K\x01ah\x00\x86.");
    assert!(e.contains("second reference to a list"), "{e}");
    // numpy.ndarray itself is resolved but not callable.
    assert!(load_err(b"\x80\x02cnumpy\nndarray\n)R.").contains("unexpected arguments"));
    assert_eq!(
        pickle::load(b"").unwrap_err(),
        PickleError::NoStop { len: 0 }
    );
    assert!(load_err(b"\x80\x06N.").contains("protocol 6"));
    // LONG1 is two's complement; trailing bytes after STOP are ignored, as Python does.
    let v = pickle::load(b"\x80\x02(\x8a\x01\xfe\x8a\x02\x00\x80\x8a\x00t.junk").unwrap();
    let ints: Vec<i64> = v
        .items()
        .unwrap()
        .iter()
        .map(|x| match x {
            Value::Int(i) => *i,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ints, [-2, -32768, 0]);
}

// ---------------------------------------------------------------- layouts under one root

fn touch(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"").unwrap();
}

#[test]
fn layout_is_picked_under_the_root_and_noted_when_several_are_there() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let bin = root.join("cifar-10-batches-bin");
    let py = root.join("cifar-10-batches-py");
    // Nothing there: the binary directory, which errors and the fetcher name.
    let at = locate(DatasetName::Cifar10, root);
    assert_eq!(
        (at.layout, &at.dir, &at.note),
        (Layout::CifarBinary, &bin, &None)
    );
    // Only torchvision's python layout: read it, no note.
    for f in TRAIN10.iter().chain(&["test_batch"]) {
        touch(&py.join(f));
    }
    let at = locate(DatasetName::Cifar10, root);
    assert_eq!(
        (at.layout, &at.dir, &at.note),
        (Layout::CifarPython, &py, &None)
    );
    assert_eq!(layout::missing(DatasetName::Cifar10, root), None);
    // An incomplete binary directory too: still python, and the note says so.
    std::fs::create_dir_all(&bin).unwrap();
    let at = locate(DatasetName::Cifar10, root);
    assert_eq!(at.layout, Layout::CifarPython);
    let note = at.note.unwrap();
    assert_eq!(
        note,
        format!(
            "cifar10: reading the torchvision python layout in {}, not the binary layout in {}",
            py.display(),
            bin.display()
        )
    );
    // Both complete: the binary one wins, and the note names both.
    for f in TRAIN10.iter().chain(&["test_batch"]) {
        touch(&bin.join(format!("{f}.bin")));
    }
    let at = locate(DatasetName::Cifar10, root);
    assert_eq!((at.layout, &at.dir), (Layout::CifarBinary, &bin));
    assert!(at.note.unwrap().contains("reading the binary layout in"));
    // Python directory alone and incomplete: its missing file is named.
    let tmp2 = tempfile::tempdir().unwrap();
    touch(&tmp2.path().join("cifar-100-python/train"));
    let at = locate(DatasetName::Cifar100, tmp2.path());
    assert_eq!(at.layout, Layout::CifarPython);
    let missing = first_missing(DatasetName::Cifar100, at.layout, &at.dir).unwrap();
    assert!(missing.ends_with("cifar-100-python/test"), "{missing}");
    // MNIST: torchvision's MNIST/raw, and deepres's mnist/ first when both are there.
    let raw = root.join("MNIST/raw");
    for f in deepres::data::idx::IDX_FILES {
        touch(&raw.join(format!("{f}.gz")));
    }
    let at = locate(DatasetName::Mnist, root);
    assert_eq!(
        (at.layout, &at.dir, &at.note),
        (Layout::TorchvisionIdx, &raw, &None)
    );
    for f in deepres::data::idx::IDX_FILES {
        touch(&root.join("mnist").join(f));
    }
    let at = locate(DatasetName::Mnist, root);
    assert_eq!(at.layout, Layout::Idx);
    assert!(at
        .note
        .unwrap()
        .contains("not the torchvision IDX layout in"));
}

/// torchvision's MNIST/raw and FashionMNIST/raw, gzipped only or extracted next to the
/// archives (as torchvision leaves them), load at the official sizes from the data root.
#[test]
fn torchvision_mnist_raw_gz_and_plain_load() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for (name, dir, files) in [
        (DatasetName::Mnist, "MNIST", "gz"),
        (DatasetName::FashionMnist, "FashionMNIST", "both"),
    ] {
        let raw = root.join(dir).join("raw");
        oracle(&["idx", s(&raw), "60000", "10000", "28", files]);
        let split = load(&DataSpec {
            root: root.to_path_buf(),
            ..DataSpec::new(name)
        })
        .unwrap();
        let at = split.source.as_ref().unwrap();
        assert_eq!((at.layout, &at.dir), (Layout::TorchvisionIdx, &raw));
        let expect = root.join(dir).join("expect");
        for (ds, prefix) in [(&split.train, "train"), (&split.test, "t10k")] {
            let (images, y) = expected(&expect, &[prefix], ".labels");
            assert_eq!(raw_images(ds), images, "{dir} {prefix}");
            assert_eq!(labels(ds), y, "{dir} {prefix}");
        }
        assert_eq!(split.train.images.size(), [60_000, 1, 28, 28]);
    }
}

// ---------------------------------------------------------------- through the binary

/// `deepres data check` on torchvision's root: reports the python layout, notes it when a
/// binary directory is there too, and fails with one line (exit 2) on a truncated batch
/// and on a batch whose global would run a command, which never runs.
#[test]
fn data_check_reads_torchvisions_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("torchvision");
    oracle(&["cifar", s(&root), "cifar10", "10000", "10000", "py2", "5"]);
    let py = root.join(cifar::CIFAR10_PY_DIR);
    let check = ["data", "check", "cifar10", "--root", s(&root)];
    let o = run_in(&check, tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let want = format!(
        "cifar10: torchvision python layout in {}: train [50000, 3, 32, 32] test [10000, 3, 32, 32] classes 10",
        py.display()
    );
    assert!(out.starts_with(&want), "{out}");
    assert_eq!(stderr(&o), "");
    // The first and last test images and labels are what Python pickled.
    let spec = DataSpec {
        root: root.clone(),
        ..DataSpec::new(DatasetName::Cifar10)
    };
    let split = load(&spec).unwrap();
    let (images, y) = expected(&root.join("expect"), &["test_batch"], ".labels");
    assert_eq!(raw_images(&split.test), images);
    assert_eq!(labels(&split.test), y);
    assert!(split.train.labels.equal(&Tensor::cat(
        &TRAIN10
            .iter()
            .map(|f| Tensor::from_slice(&expected(&root.join("expect"), &[f], ".labels").1))
            .collect::<Vec<_>>(),
        0
    )));
    // A binary directory beside it: a note names the layout read.
    let bin = root.join(cifar::CIFAR10_DIR);
    std::fs::create_dir_all(&bin).unwrap();
    let o = run_in(&check, tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let note = format!(
        "note: cifar10: reading the torchvision python layout in {}, not the binary layout in {}\n",
        py.display(),
        bin.display()
    );
    assert_eq!(stderr(&o), note);
    std::fs::remove_dir(&bin).unwrap();
    // Truncated test batch: one line naming the file, with how to get it back.
    let test_batch = py.join("test_batch");
    let full = read(&test_batch);
    std::fs::write(&test_batch, &full[..full.len() / 3]).unwrap();
    let e = one_line_error(&run_in(&check, tmp.path()));
    let head = format!("error: {}: truncated pickle", test_batch.display());
    assert!(e.starts_with(&head), "{e}");
    assert!(
        e.contains("re-extract torchvision's cifar-10-python.tar.gz into"),
        "{e}"
    );
    std::fs::write(&test_batch, &full).unwrap();
    // A batch whose global would run a command.
    let marker = tmp.path().join("pwned");
    let batch1 = py.join("data_batch_1");
    let control = tmp.path().join("control");
    oracle(&["evil", s(&batch1), "posix.system", s(&marker), s(&control)]);
    let e = one_line_error(&run_in(&check, tmp.path()));
    let head = format!(
        "error: {}: refused pickle global `posix.system`",
        batch1.display()
    );
    assert!(e.starts_with(&head), "{e}");
    assert!(!marker.exists(), "the payload ran");
}
