//! Same seed, same bytes, whatever the number of threads (docs/reliability.md): a Marion figure
//! whose i.i.d. weights come from deepres' own sampler, a Marion training figure, and a `train`
//! run in deterministic mode, each run with `DEEPRES_THREADS=1` and `=4` (deepres' own threads
//! and libtorch's intra-op pool), give identical CSV data and checkpoints. The oracle is the
//! one-thread run itself: the four-thread run must reproduce it byte for byte.
use std::path::Path;
use std::process::Output;

mod common;
use common::{csv_without_timing, stderr};

/// `deepres args` with `threads` threads (deepres' own and libtorch's).
fn run_with_threads(args: &[&str], threads: usize, cwd: &Path) -> Output {
    let out = common::deepres()
        .args(args)
        .env("DEEPRES_THREADS", threads.to_string())
        .env("OMP_NUM_THREADS", threads.to_string())
        .current_dir(cwd)
        .output()
        .expect("run deepres");
    // 3: the figure ran to the end but, at these tiny sizes, a check of the paper's claim
    // failed (docs/cli.md); its files are written all the same.
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{args:?}: {}",
        stderr(&out)
    );
    out
}

/// The CSV files of `dir`, by name, with their bytes.
fn csvs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

/// Runs `deepres marion <fig> --set ...` with 1 and 4 threads and compares every CSV.
fn figure_is_thread_independent(fig: &str, sets: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let mut outs = Vec::new();
    for threads in [1, 4] {
        let out = tmp.path().join(format!("t{threads}"));
        let mut args = vec!["marion".to_string(), format!("{root}/{fig}")];
        for s in sets {
            args.extend(["--set".to_string(), s.to_string()]);
        }
        args.extend(["--out".to_string(), out.display().to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_with_threads(&args, threads, tmp.path());
        outs.push(csvs(&out));
    }
    assert!(!outs[0].is_empty(), "{fig}: no CSV written");
    for ((name, a), (_, b)) in outs[0].iter().zip(&outs[1]) {
        assert!(
            a == b,
            "{fig}: {name} differs between 1 and 4 threads:\n{}\n---\n{}",
            String::from_utf8_lossy(a),
            String::from_utf8_lossy(b)
        );
    }
    assert_eq!(outs[0].len(), outs[1].len());
}

/// Figure M1 draws 8 models × L = 200 × 40 × 40 × 2 i.i.d. weights (20 blocks of the sampler):
/// with the former sampler (one stream per thread, the work split by the core count) a
/// one-core and a two-core machine gave different scaling.csv.
#[test]
fn a_marion_figure_is_the_same_bytes_on_1_and_4_threads() {
    figure_is_thread_independent(
        "experiments/marion2022/fig1.yaml",
        &["depths=[10,200]", "models=8"],
    );
}

/// Figure M8 trains three FullResNets (smooth and i.i.d. inits) with the batched Adam.
#[test]
fn a_marion_training_figure_is_the_same_bytes_on_1_and_4_threads() {
    figure_is_thread_independent("experiments/marion2022/fig8.yaml", &common::TINY_M8);
}

/// `train.deterministic: true` on the CPU: metrics.csv (but its two wall-clock columns), the
/// checkpoint and best.safetensors are the same bytes on 1 and 4 threads.
#[test]
fn a_deterministic_train_run_is_the_same_bytes_on_1_and_4_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for threads in [1, 4] {
        // The same config (out_dir is part of it), in two working directories.
        let cwd = tmp.path().join(format!("t{threads}"));
        std::fs::create_dir(&cwd).unwrap();
        let args = [
            "train",
            "-q",
            "--set",
            "device=cpu",
            "--set",
            "train.deterministic=true",
            "--set",
            "data.name=synthetic",
            "--set",
            "data.synthetic_train=256",
            "--set",
            "data.synthetic_test=64",
            "--set",
            "model.depth=8",
            "--set",
            "train.epochs=2",
            "--set",
            "train.batch_size=64",
            "--set",
            "train.eval_batch_size=64",
            "--set",
            "out_dir=runs",
        ];
        run_with_threads(&args, threads, &cwd);
        runs.push(cwd.join("runs/run"));
    }
    let (a, b) = (&runs[0], &runs[1]);
    assert_eq!(
        csv_without_timing(&a.join("metrics.csv")),
        csv_without_timing(&b.join("metrics.csv"))
    );
    for f in ["checkpoint.safetensors", "best.safetensors", "config.yaml"] {
        assert!(
            std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(),
            "{f} differs between 1 and 4 threads"
        );
    }
    let yaml = std::fs::read_to_string(a.join("config.yaml")).unwrap();
    assert!(yaml.contains("deterministic: true"), "{yaml}");
}

/// A bad DEEPRES_THREADS is one error line naming it, exit code 2.
#[test]
fn a_bad_thread_count_is_one_line() {
    let out = common::deepres()
        .args(["info"])
        .env("DEEPRES_THREADS", "0")
        .output()
        .unwrap();
    let line = common::one_line_error(&out);
    assert!(line.contains("DEEPRES_THREADS"), "{line}");
}
