//! Helpers shared by the test files: running the real binary (cli, bench, reliability) and
//! serializing the tests that use torch's global generator.
#![allow(dead_code)]
pub mod data_files;
pub mod fixture_runs;
pub mod graph_check;
pub mod plots;
pub mod tiny_run;
pub mod watched;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

/// torch's RNG is global to the process: tests that seed it and compare results bit for bit
/// must not overlap. Hold the guard for the whole test.
static TORCH_RNG: Mutex<()> = Mutex::new(());

/// Takes the lock on torch's generator (a panicked holder does not poison it for the others).
pub fn serial() -> MutexGuard<'static, ()> {
    TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// A one-element tensor's value as f64.
pub fn scalar(t: &tch::Tensor) -> f64 {
    t.to_kind(tch::Kind::Double).double_value(&[])
}

/// The deepres binary: `DEEPRES_BIN` when set (the GPU machine, which has no cargo:
/// scripts/gpu_tests.sh sets it), else the one cargo built for the tests.
pub fn deepres_bin() -> std::path::PathBuf {
    std::env::var_os("DEEPRES_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_BIN_EXE_deepres")))
}

/// The deepres binary of [`deepres_bin`], as a command.
pub fn deepres() -> Command {
    Command::new(deepres_bin())
}

/// The deepres binary with one intra-op thread: the crash and preemption tests' processes
/// share 2 cores, and the thread count is part of what makes CPU results bit-for-bit
/// repeatable.
pub fn deepres_1t() -> Command {
    let mut c = deepres();
    c.env("OMP_NUM_THREADS", "1");
    c
}

/// Writes `grid.yaml` into `dir`: `out_dir: <dir>/runs`, then `body`.
pub fn write_grid(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("grid.yaml");
    let text = format!("out_dir: {}\n{body}", dir.join("runs").display());
    std::fs::write(&path, text).unwrap();
    path
}

/// The base run config of the tiny sweeps of the crash and preemption tests: ResNet-8 on 96
/// synthetic images, 3 epochs of 3 steps.
pub const TINY_BASE: &str = "base:
  device: cpu
  data: {name: synthetic, synthetic_train: 96, synthetic_test: 32}
  model: {depth: 8}
  train: {epochs: 3, batch_size: 32, eval_batch_size: 32, optimizer: {lr: 0.05}, schedule: {kind: constant}}
";

/// The `--set`s of Figure M8 at a tiny size (determinism and preemption tests): three
/// FullResNets (L = 12, d = 8) on 256 synthetic images, 2 epochs of 8 steps.
pub const TINY_M8: [&str; 7] = [
    "data=[synthetic]",
    "depth=12",
    "width=8",
    "train.epochs=2",
    "train.batch=32",
    "train.limit_train=256",
    "train.limit_test=64",
];

/// The `--set`s of Figure C5 at a tiny size (batch-size and preemption tests), the number of
/// models and the batch left to each test: L, M in 1..8 over D ∈ {1, 2}, n = 32, limits
/// L = M = 32, K = 20 GD steps.
pub const TINY_C5: [&str; 8] = [
    "depth=[1, 8]",
    "width=[1, 8]",
    "dims=[1, 2]",
    "eval_steps=[10, 20]",
    "task.train=32",
    "limit.depth=32",
    "limit.width=32",
    "dynamics.steps=20",
];

/// A grid `name` in `dir/<name>.yaml` with cells in `dir/runs/<name>`: [`TINY_BASE`], then
/// `extra` (its seeds, a grid).
pub fn tiny_grid(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let p = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &p,
        format!("name: {name}\nout_dir: runs\n{TINY_BASE}{extra}"),
    )
    .unwrap();
    p
}

/// The epoch column of a metrics.csv, row by row.
pub fn csv_epochs(path: &Path) -> Vec<i64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect()
}

/// Runs `deepres args` in `cwd` and waits for it.
pub fn run_in(args: &[&str], cwd: &Path) -> Output {
    deepres()
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run deepres")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `deepres args` in `cwd` with one intra-op thread ([`deepres_1t`]) and waits for it.
pub fn run_1t(args: &[&str], cwd: &Path) -> Output {
    deepres_1t()
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run deepres")
}

/// Asserts that the command succeeded, showing its stderr if not.
pub fn ok(o: &Output) {
    assert!(o.status.success(), "stderr: {}", stderr(o));
}

/// The error line of a failing sweep (exit 2; progress lines may precede it).
pub fn sweep_error(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(o));
    let e = stderr(o);
    let errors: Vec<&str> = e.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{e}");
    errors[0].to_string()
}

/// Every file of a run directory, by name, except lock files.
pub fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// A failing command exits 2 with one `error:` line on stderr; returns that line.
pub fn one_line_error(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(2),
        "stdout: {} stderr: {}",
        stdout(o),
        stderr(o)
    );
    let e = stderr(o);
    let lines: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line expected, got: {e}");
    assert!(lines[0].starts_with("error: "), "{e}");
    lines[0].to_string()
}

/// Runs a PyTorch oracle script of tests/oracles/ with the project venv's python (the first
/// `python3` on the PATH that `make test` and `.cargo/config.toml` set, or `DEEPRES_PYTHON`)
/// and fails the test, with the script's output, unless it exits 0.
pub fn python_oracle(script: &str, args: &[&str]) -> String {
    let python = std::env::var("DEEPRES_PYTHON").unwrap_or_else(|_| "python3".into());
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/oracles")
        .join(script);
    let out = Command::new(&python)
        .arg(&path)
        .args(args)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap_or_else(|e| panic!("{python}: cannot run ({e}); run `make setup`"));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        out.status.success(),
        "{} {}: the PyTorch oracle disagrees or could not run (torch, safetensors and numpy \
         come from `make setup`):\n{text}",
        python,
        path.display()
    );
    text
}

/// Whether a CUDA test can run here. Without CUDA it prints a note and returns false (the test
/// then returns early), except under `DEEPRES_REQUIRE_CUDA=1` (set by scripts/gpu_tests.sh on
/// a GPU machine), where a missing GPU fails the test instead of letting it pass unrun.
pub fn cuda_or_skip(test: &str) -> bool {
    if tch::Cuda::is_available() {
        return true;
    }
    if std::env::var("DEEPRES_REQUIRE_CUDA").is_ok_and(|v| v == "1") {
        panic!(
            "{test}: DEEPRES_REQUIRE_CUDA=1 but CUDA is not available (no GPU, no driver, or a libtorch without CUDA)"
        );
    }
    eprintln!(
        "note: CUDA not available: {test} skipped (DEEPRES_REQUIRE_CUDA=1 makes that a failure)"
    );
    false
}

/// Asserts that a finished sweep's cells in `runs` (its `<out_dir>/<name>`) have each a
/// metrics.csv with epochs 1..3 once each, equal to the one in `reference` but for the timing
/// columns, and no lock left: the end of every crash and preemption test of the tiny sweeps.
pub fn assert_same_curves(runs: &Path, reference: &Path, cells: &[&str]) {
    for c in cells {
        let csv = runs.join(c).join("metrics.csv");
        assert_eq!(csv_epochs(&csv), [1, 2, 3], "{}", csv.display());
        assert_eq!(
            csv_without_timing(&csv),
            csv_without_timing(&reference.join(c).join("metrics.csv")),
            "{}",
            csv.display()
        );
        let lock = runs.join(format!("{c}.lock"));
        assert!(!lock.exists(), "{} left", lock.display());
    }
}

/// metrics.csv without its two timing columns (epoch_seconds, images_per_second: wall-clock
/// measurements, never equal between two runs); everything else byte for byte.
pub fn csv_without_timing(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let skip: Vec<usize> = header
        .iter()
        .enumerate()
        .filter(|(_, h)| **h == "epoch_seconds" || **h == "images_per_second")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(skip.len(), 2, "{text}");
    assert!(text.ends_with('\n'));
    text.lines()
        .map(|l| {
            l.split(',')
                .enumerate()
                .filter(|(i, _)| !skip.contains(i))
                .map(|(_, f)| f)
                .collect::<Vec<_>>()
                .join(",")
                + "\n"
        })
        .collect()
}

/// The job-array script `deepres sweep --slurm` writes (submitted to a stand-in `sbatch` that
/// keeps it), and a stand-in `scontrol` in `dir/bin` that records its arguments.
pub fn slurm_script(dir: &Path, grid: &str, extra: &[&str]) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let keep = dir.join("submitted.sbatch");
    let stand_ins = [
        (
            "sbatch",
            format!("cp \"$2\" '{}'\necho 4242", keep.display()),
        ),
        (
            "scontrol",
            format!("echo \"$@\" >> '{}'", dir.join("scontrol.args").display()),
        ),
    ];
    for (name, body) in stand_ins {
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut args = vec!["sweep", grid, "--slurm"];
    args.extend(extra);
    let o = deepres_1t()
        .args(args)
        .env("PATH", path_with(&bin))
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    keep
}

pub fn path_with(bin: &Path) -> String {
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap())
}

/// The largest relative difference between the numbers of two CSVs of the same shape.
pub fn deviation(a: &str, b: &str) -> f64 {
    let mut worst: f64 = 0.0;
    for (la, lb) in a.lines().zip(b.lines()).skip(1) {
        for (x, y) in la.split(',').zip(lb.split(',')) {
            match (x.parse::<f64>(), y.parse::<f64>()) {
                (Ok(x), Ok(y)) => worst = worst.max((x - y).abs() / y.abs().max(1e-3)),
                _ => assert_eq!(x, y, "{la}\n{lb}"),
            }
        }
    }
    worst
}

/// The metadata of the safetensors file at `path` (its header: 8 bytes of length, then JSON,
/// as the format documents it), None when there is no file.
pub fn safetensors_metadata(path: &Path) -> Option<serde_json::Value> {
    let bytes = std::fs::read(path).ok()?;
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    Some(header["__metadata__"].clone())
}

/// The epoch the best.safetensors of run directory `run` holds, None without one.
pub fn best_file_epoch(run: &Path) -> Option<i64> {
    let meta = safetensors_metadata(&run.join("best.safetensors"))?;
    Some(meta["epoch"].as_str().unwrap().parse().unwrap())
}

/// The epochs done that the live checkpoint of run directory `run` records, None without one.
pub fn checkpoint_epoch(run: &Path) -> Option<i64> {
    let path = run.join("checkpoint.safetensors");
    let tensors = tch::Tensor::read_safetensors(path).ok()?;
    let (_, t) = tensors.iter().find(|(n, _)| n == "meta.epoch").unwrap();
    Some(t.int64_value(&[0]))
}

/// What must hold after any kill: best.safetensors never names an epoch the checkpoint has
/// not recorded (a rerun on a GPU, not bit-reproducible, might not make that epoch the best
/// again, and the summary would then name another epoch than the file).
pub fn assert_best_not_ahead(run: &Path, what: &str) {
    if let Some(best) = best_file_epoch(run) {
        let at = checkpoint_epoch(run).unwrap_or(0);
        assert!(
            best <= at,
            "{what}: {}: best.safetensors holds epoch {best}, the checkpoint is at epoch {at}",
            run.display()
        );
    }
}

/// Asserts that `run`'s best.safetensors holds the epoch, accuracy and tensors of
/// `reference`'s (bit for bit), and that its summary names that epoch.
pub fn assert_same_best(run: &Path, reference: &Path) {
    let file = |d: &Path| d.join("best.safetensors");
    let meta = |d: &Path| {
        safetensors_metadata(&file(d))
            .unwrap_or_else(|| panic!("{}: no best.safetensors", d.display()))
    };
    let (a, b) = (meta(run), meta(reference));
    assert_eq!(
        (&a["epoch"], &a["test_acc"]),
        (&b["epoch"], &b["test_acc"]),
        "{}",
        run.display()
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary["best_epoch"].to_string(),
        a["epoch"].as_str().unwrap(),
        "{}",
        run.display()
    );
    let tensors = |d: &Path| {
        let mut t = tch::Tensor::read_safetensors(file(d)).unwrap();
        t.sort_by(|a, b| a.0.cmp(&b.0));
        t
    };
    let (ta, tb) = (tensors(run), tensors(reference));
    assert_eq!(ta.len(), tb.len());
    for ((na, x), (nb, y)) in ta.iter().zip(&tb) {
        assert_eq!(na, nb);
        assert!(x.equal(y), "{}: {na} differs", run.display());
    }
}
