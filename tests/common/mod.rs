//! Helpers shared by the tests that run the real binary (cli, bench, reliability).
#![allow(dead_code)]
use std::path::Path;
use std::process::{Command, Output};

/// The deepres binary built for the tests.
pub fn deepres() -> Command {
    Command::new(env!("CARGO_BIN_EXE_deepres"))
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
