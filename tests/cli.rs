//! The command line end to end: the binary, its exit codes and its one-line errors.
mod common;
use common::{one_line_error, run_in, stderr, stdout};

const TINY: &str = "name: tiny\nout_dir: runs\ndevice: cpu\ndata: {name: synthetic, synthetic_train: 256, synthetic_test: 128}\nmodel: {depth: 8}\ntrain: {epochs: 1, batch_size: 64}\n";

#[test]
fn summary_prints_parameters_last() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, n) in [
        (
            vec![
                "summary",
                "--depth",
                "20",
                "--norm",
                "bn",
                "--shortcut",
                "a",
                "--classes",
                "10",
            ],
            "269722",
        ),
        (vec!["summary", "--depth", "56"], "853018"),
        (vec!["summary", "--depth", "110"], "1727962"),
    ] {
        let o = run_in(&args, tmp.path());
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(
            stdout(&o).lines().last().unwrap(),
            format!("parameters: {n}")
        );
    }
    let e = one_line_error(&run_in(&["summary", "--depth", "21"], tmp.path()));
    assert!(e.contains("6n+2") && e.contains("21"), "{e}");
}

#[test]
fn info_reports_cuda_and_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run_in(&["info"], tmp.path());
    assert!(o.status.success());
    let s = stdout(&o);
    for key in [
        "tch: 0.24.0",
        "libtorch: 2.11.0",
        "cuda_available:",
        "cudnn_available:",
    ] {
        assert!(s.contains(key), "{key} missing in {s}");
    }
}

#[test]
fn train_resume_and_refusal() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("tiny.yaml"), TINY).unwrap();
    let o = run_in(&["train", "--config", "tiny.yaml", "--quiet"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("finished after 1/1 epochs"),
        "{}",
        stdout(&o)
    );
    let csv = tmp.path().join("runs/tiny/metrics.csv");
    let before = std::fs::read(&csv).unwrap();
    // the same command again refuses to overwrite, and says how to continue
    let e = one_line_error(&run_in(&["train", "--config", "tiny.yaml"], tmp.path()));
    assert!(e.contains("runs/tiny") && e.contains("--resume"), "{e}");
    // --resume on a finished run changes nothing
    let o = run_in(&["train", "--config", "tiny.yaml", "--resume"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&csv).unwrap(), before);
    // A stop inside an epoch (the failpoint standing in for SIGTERM) exits 75 and says how this
    // command goes on.
    let o = common::deepres()
        .args(["train", "--config", "tiny.yaml", "--set", "name=cut"])
        .env("DEEPRES_INTERRUPT_AT", "0:1")
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(75), "{}", stderr(&o));
    let last = stderr(&o)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_string();
    assert!(
        last.starts_with("error: runs/cut: interrupted by a signal at step 1 of epoch 1")
            && last.ends_with("; checkpoint written, resumable: rerun with --resume"),
        "{last}"
    );
    // --set continues a longer run
    let o = run_in(
        &[
            "train",
            "--config",
            "tiny.yaml",
            "--set",
            "train.epochs=2",
            "--set",
            "name=tiny2",
            "-q",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_in(
        &["compare", "runs/tiny", "runs/tiny2", "--out", "cmp.csv"],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("| epoch |"));
    let cmp = std::fs::read_to_string(tmp.path().join("cmp.csv")).unwrap();
    assert_eq!(cmp.lines().count(), 1 + 3, "{cmp}");
}

#[test]
fn bad_config_gets_one_line_naming_file_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("bad.yaml"),
        "model:\n  depth: 20\n  normalization: bn\n",
    )
    .unwrap();
    let e = one_line_error(&run_in(&["train", "--config", "bad.yaml"], tmp.path()));
    assert!(
        e.contains("bad.yaml") && e.contains("normalization") && e.contains("norm"),
        "{e}"
    );
    let e = one_line_error(&run_in(&["train", "--config", "missing.yaml"], tmp.path()));
    assert!(e.contains("missing.yaml"), "{e}");
    std::fs::write(tmp.path().join("tiny.yaml"), TINY).unwrap();
    let e = one_line_error(&run_in(
        &["train", "--config", "tiny.yaml", "--set", "model.depth=100"],
        tmp.path(),
    ));
    assert!(e.contains("model.depth") && e.contains("6n+2"), "{e}");
    // A key that --set gave is blamed on --set, not on the file alone.
    assert!(
        e.starts_with("error: tiny.yaml: --set model.depth=100: "),
        "{e}"
    );
    let e = one_line_error(&run_in(
        &["train", "--config", "tiny.yaml", "--set", "model.foo=3"],
        tmp.path(),
    ));
    assert!(
        e.starts_with("error: tiny.yaml: --set model.foo=3: model.foo: unknown key"),
        "{e}"
    );
    let e = one_line_error(&run_in(
        &[
            "train",
            "--config",
            "tiny.yaml",
            "--set",
            "train.epochs=abc",
        ],
        tmp.path(),
    ));
    assert!(
        e.contains("--set train.epochs=abc: train.epochs:") && e.contains("(give an integer)"),
        "{e}"
    );
    let e = one_line_error(&run_in(&["summary", "--depth", "21"], tmp.path()));
    assert!(e.starts_with("error: --depth 21: model.depth:"), "{e}");
    assert!(
        !tmp.path().join("runs").exists(),
        "bad input writes nothing"
    );
}

#[test]
fn cuda_asked_for_and_absent_is_an_error() {
    if tch::Cuda::is_available() {
        eprintln!("skipped: this machine has CUDA");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("tiny.yaml"), TINY).unwrap();
    let e = one_line_error(&run_in(
        &["train", "--config", "tiny.yaml", "--device", "cuda"],
        tmp.path(),
    ));
    assert!(
        e.contains("CUDA is not available") && e.contains("--device cpu"),
        "{e}"
    );
    assert!(!tmp.path().join("runs/tiny").exists(), "nothing written");
}

#[test]
fn missing_dataset_is_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("c10.yaml"),
        TINY.replace(
            "name: synthetic, synthetic_train: 256, synthetic_test: 128",
            "name: cifar10, root: nodata",
        ),
    )
    .unwrap();
    let e = one_line_error(&run_in(&["train", "--config", "c10.yaml"], tmp.path()));
    assert!(
        e.contains("nodata/cifar-10-batches-bin") && e.contains("deepres data fetch cifar10"),
        "{e}"
    );
}

/// Every command's --help (all subcommands, nested ones too) is text for a user: no rustdoc
/// link syntax (`[`name`]`, `crate::`, `super::`), which a doc comment shared with the code can
/// carry into clap's help.
#[test]
fn no_help_text_shows_rustdoc_links() {
    use clap::CommandFactory;
    fn walk(cmd: &mut clap::Command, path: &str, bad: &mut Vec<String>) {
        let help = cmd.render_long_help().to_string();
        for line in help.lines() {
            if ["[`", "`]", "crate::", "super::"]
                .iter()
                .any(|s| line.contains(s))
            {
                bad.push(format!("{path}: {}", line.trim()));
            }
        }
        for sub in cmd.get_subcommands_mut() {
            let p = format!("{path} {}", sub.get_name());
            walk(sub, &p, bad);
        }
    }
    let mut bad = Vec::new();
    walk(&mut deepres::cli::Cli::command(), "deepres", &mut bad);
    assert!(
        bad.is_empty(),
        "rustdoc links in --help:\n{}",
        bad.join("\n")
    );
}

/// docs/cli.md's synopsis against clap: every flag of every command is listed there, and a
/// value written as a default (`[--depth 56]`, not `N`, `A|B` or `...`) is clap's default.
// Long on purpose: the synopsis parser and the comparison with clap read best together.
#[test]
fn the_cli_reference_lists_every_flag_with_its_default() {
    use clap::CommandFactory;
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cli.md")).unwrap();
    let block = doc
        .split("```")
        .nth(1)
        .expect("docs/cli.md opens with a synopsis block");
    // Each command's synopsis: its `deepres ...` line and the indented lines after it.
    let mut synopses: Vec<String> = Vec::new();
    for line in block.lines() {
        match (line.strip_prefix("deepres "), synopses.last_mut()) {
            (Some(rest), _) => synopses.push(rest.to_string()),
            (None, Some(last)) if line.starts_with(' ') => *last += &format!(" {}", line.trim()),
            _ => {}
        }
    }
    fn leaves(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<(Vec<String>, clap::Command)>) {
        if cmd.get_subcommands().next().is_none() {
            out.push((path.clone(), cmd.clone()));
        }
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let mut p = path.clone();
            p.push(sub.get_name().to_string());
            leaves(sub, p, out);
        }
    }
    let mut cmds = Vec::new();
    leaves(&deepres::cli::Cli::command(), Vec::new(), &mut cmds);
    let mut bad = Vec::new();
    for (path, cmd) in cmds.iter().filter(|(p, _)| !p.is_empty()) {
        let name = path.join(" ");
        let Some(syn) = synopses
            .iter()
            .find(|s| s.starts_with(&format!("{name} ")) || **s == name)
        else {
            bad.push(format!("deepres {name}: no synopsis line"));
            continue;
        };
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            let Some(long) = arg.get_long().filter(|l| *l != "help") else {
                continue;
            };
            let flag = format!("--{long}");
            let at = syn.match_indices(&flag).find(|(i, _)| {
                let next = syn[i + flag.len()..].chars().next();
                matches!(next, None | Some(' ' | ']' | '|'))
            });
            let Some((i, _)) = at else {
                bad.push(format!("deepres {name}: {flag} missing"));
                continue;
            };
            let rest = &syn[i + flag.len()..];
            let value: String = rest
                .strip_prefix(' ')
                .unwrap_or("")
                .chars()
                .take_while(|c| !matches!(c, ' ' | ']'))
                .collect();
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            let placeholder = value.is_empty()
                || value.starts_with('[')
                || value.starts_with('-')
                || value.contains('|')
                || value.contains("...")
                || value.chars().any(|c| c.is_ascii_uppercase());
            if !placeholder && !defaults.is_empty() && value != defaults.join(",") {
                bad.push(format!(
                    "deepres {name}: {flag} {value} in docs/cli.md, clap's default {}",
                    defaults.join(",")
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "docs/cli.md's synopsis and clap disagree:\n{}",
        bad.join("\n")
    );
}

/// A bad command line (an unknown flag, a misspelt command, a bad flag value) is one error
/// line naming what is wrong and where the flags are listed, exit 2, like bad input files.
#[test]
fn a_bad_command_line_is_one_line_and_exit_2() {
    for (args, names, help) in [
        (
            &["train", "--no-such-flag"][..],
            "'--no-such-flag'",
            "`deepres train --help`",
        ),
        (&["trian"][..], "'trian'", "`deepres help`"),
        (
            &["sweep", "--pack", "x", "grid.yaml"][..],
            "'x' for '--pack",
            "`deepres sweep --help`",
        ),
    ] {
        let o = common::deepres().args(args).output().unwrap();
        let line = one_line_error(&o);
        assert!(
            line.contains(names) && line.contains(help),
            "{args:?}: {line}"
        );
    }
}
