//! The fetcher (offline): MD5 digests, a local CIFAR-10 archive verified, extracted and loaded,
//! a failed download in one line, the official remotes, and archives whose entries escape
//! their folder refused whole. The readers are in tests/data.rs.
use std::path::Path;

use deepres::data::cifar;
use deepres::data::fetch::{self, fetch_file, md5_hex};
use deepres::data::{
    default_dir, extract_tar_gz, load, verify_and_extract, verify_md5, DataSpec, DatasetName,
};

mod common;
use common::data_files::{err_string, write, write_full_cifar10};

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
/// `../x`, an absolute path or a link (symbolic or hard) is refused whole, in one line naming
/// the entry, and nothing of it is written (tar headers written raw: tar's own builder refuses
/// such names).
// Long: the raw tar headers of each escaping entry, written by hand.
#[test]
#[allow(clippy::too_many_lines)]
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
        if kind == tar::EntryType::Symlink || kind == tar::EntryType::Link {
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
        (
            "hardlink.tar.gz",
            "cifar-10-batches-bin/hard",
            tar::EntryType::Link,
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
