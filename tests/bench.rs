//! `deepres bench` on a tiny CPU model: its output format and options, its one-line errors.
//! No timing assertions (speed is measured by `make bench`, never by a test).
use std::process::Output;

mod common;
use common::{one_line_error, stderr, stdout};

fn deepres(args: &[&str]) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    common::run_in(args, tmp.path())
}

const TINY: [&str; 11] = [
    "bench", "--depth", "8", "--batch", "8", "--steps", "2", "--warmup", "1", "--device", "cpu",
];

/// The value of the line `key: value`.
fn field<'a>(out: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}: ");
    out.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no `{key}:` line in\n{out}"))
}

#[test]
fn bench_prints_images_per_second_last() {
    let o = deepres(&TINY);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let last = out.lines().last().expect("some output");
    let v: f64 = last
        .strip_prefix("images_per_second: ")
        .unwrap_or_else(|| panic!("last line is not `images_per_second: X`: {last}"))
        .parse()
        .expect("a float");
    assert!(v.is_finite() && v > 0.0, "{last}");
    assert_eq!(field(&out, "tool"), "deepres");
    assert!(
        field(&out, "model").starts_with("ResNet-8 (L = 3 blocks"),
        "{out}"
    );
    assert_eq!(field(&out, "batch"), "8");
    assert_eq!(field(&out, "precision"), "fp32");
    assert_eq!(field(&out, "memory_format"), "contiguous");
    assert!(field(&out, "optimizer").contains("fused"), "{out}");
    assert_eq!(field(&out, "device"), "cpu");
    assert!(field(&out, "threads").parse::<i64>().unwrap() >= 1);
    assert!(
        field(&out, "ms_per_step")
            .split_whitespace()
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap()
            > 0.0
    );
    assert!(field(&out, "peak_gpu_memory").starts_with("n/a"), "{out}");
    assert!(field(&out, "steps").starts_with("2 timed"), "{out}");
    assert!(
        field(&out, "mean_loss").parse::<f64>().unwrap().is_finite(),
        "{out}"
    );
    // ResNet-8 on 8 images: 3·n = 3 blocks, and the same parameter count as `deepres summary`.
    let s = stdout(&deepres(&["summary", "--depth", "8"]));
    let params = s
        .lines()
        .last()
        .unwrap()
        .strip_prefix("parameters: ")
        .unwrap()
        .to_string();
    assert!(
        field(&out, "model").contains(&format!("{params} parameters")),
        "{out}"
    );
}

#[test]
fn bench_options_threads_windows_and_grad_norm() {
    let mut args = TINY.to_vec();
    args.extend(["--threads", "1", "--windows", "2", "--no-grad-norm"]);
    let o = deepres(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(field(&out, "threads"), "1");
    assert!(field(&out, "window 1").starts_with("2 steps"), "{out}");
    assert!(field(&out, "window 2").starts_with("2 steps"), "{out}");
    assert!(
        field(&out, "steps").starts_with("4 timed (2 window(s) of 2)"),
        "{out}"
    );
    assert!(
        field(&out, "ms_per_step").contains("min/median/max"),
        "{out}"
    );
    assert!(field(&out, "grad_norm").starts_with("off"), "{out}");
    assert!(
        out.lines()
            .last()
            .unwrap()
            .starts_with("images_per_second: "),
        "{out}"
    );
    // Channels-last weights and batches.
    let mut args = TINY.to_vec();
    args.push("--channels-last");
    let o = deepres(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(field(&out, "memory_format"), "channels_last");
    assert!(
        field(&out, "mean_loss").parse::<f64>().unwrap().is_finite(),
        "{out}"
    );
    // Zero warm-up steps are allowed.
    let mut args = TINY.to_vec();
    assert_eq!(args[7], "--warmup");
    args[8] = "0";
    let o = deepres(&args);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn bench_refuses_bad_precision_depth_and_counts() {
    // TINY with one flag's value replaced (or the flag added).
    let with = |extra: &[&'static str]| {
        let mut a = TINY.to_vec();
        match a.iter().position(|x| *x == extra[0]) {
            Some(i) => a[i + 1] = extra[1],
            None => a.extend_from_slice(extra),
        }
        one_line_error(&deepres(&a))
    };
    let e = with(&["--precision", "fp16"]);
    assert!(e.contains("--precision fp16") && e.contains("CUDA"), "{e}");
    let e = with(&["--precision", "bf16"]);
    assert!(e.contains("--precision bf16") && e.contains("CUDA"), "{e}");
    let e = with(&["--precision", "fp64"]);
    assert!(e.contains("fp64") && e.contains("fp32"), "{e}");
    let e = with(&["--depth", "9"]);
    assert!(
        e.contains("--depth") && e.contains("6n+2") && e.contains('9'),
        "{e}"
    );
    let e = with(&["--steps", "0"]);
    assert!(e.contains("--steps"), "{e}");
    let e = with(&["--batch", "0"]);
    assert!(e.contains("--batch"), "{e}");
    let e = with(&["--device", "tpu"]);
    assert!(e.contains("tpu"), "{e}");
}
