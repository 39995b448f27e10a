//! `deepres export` and `deepres eval` end to end: tiny runs are trained by the binary, exported
//! under the τ paper's and akamaster's names and as TorchScript; the oracle
//! (tests/oracles/export_check.py, in the project's venv) loads each export strictly into the
//! public code's own model class (rewritten from its file) and compares its logits with
//! deepres's; a state dict written by PyTorch from the τ paper's class is evaluated by deepres.
use std::collections::BTreeMap;
use std::path::Path;

use deepres::train::export::{self, build, load_file, Weights};
use tch::nn::ModuleT;
use tch::{Device, Kind, Tensor};

mod common;
use common::{deepres, one_line_error, python_oracle, run_in, serial};

/// Trains `name` for one epoch on a small synthetic set (depth 8) with `sets` overrides.
fn train(cwd: &Path, name: &str, sets: &[&str]) {
    let mut args = vec!["train", "-q", "--device", "cpu"];
    let base = [
        format!("name={name}"),
        "out_dir=runs".into(),
        "data.name=synthetic".into(),
        "data.synthetic_train=256".into(),
        "data.synthetic_test=128".into(),
        "model.depth=8".into(),
        "train.epochs=1".into(),
        "train.batch_size=64".into(),
    ];
    let all: Vec<String> = base
        .into_iter()
        .chain(sets.iter().map(|s| s.to_string()))
        .collect();
    for s in &all {
        args.push("--set");
        args.push(s);
    }
    let o = run_in(&args, cwd);
    assert!(o.status.success(), "{}", common::stderr(&o));
}

/// deepres's own eval-mode logits for a fixed normalized batch.
fn logits(dir: &Path, weights: Weights, x: &Tensor) -> Tensor {
    let run = export::load_run(dir, weights).unwrap();
    let (_vs, net) = build(&run.cfg.model, &run.vars, 3, 10).unwrap();
    tch::no_grad(|| net.forward_t(x, false))
}

// Long: one trained run exported once per public code, each export checked by its oracle in turn.
#[test]
#[allow(clippy::too_many_lines)]
fn exports_load_strictly_into_the_public_codes_and_give_deepres_logits() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let runs = [
        (
            "bn",
            vec![
                "model.norm=bn",
                "model.shortcut=a-bn",
                "model.tau.rule=fixed",
                "model.tau.value=0.5",
            ],
            "tau-paper",
        ),
        (
            "nobn",
            vec![
                "model.norm=none",
                "model.shortcut=a",
                "model.tau.rule=inv_sqrt",
                "model.tau.learnable=shared",
            ],
            "tau-paper",
        ),
        (
            "plain",
            vec!["model.norm=bn", "model.shortcut=a", "model.tau.rule=one"],
            "akamaster",
        ),
    ];
    tch::manual_seed(5);
    let x = Tensor::randn([6, 3, 32, 32], (Kind::Float, Device::Cpu));
    let mut exports = Vec::new();
    let mut scripts = Vec::new();
    let mut all_logits = Vec::new();
    for (name, sets, format) in &runs {
        train(cwd, name, sets);
        let dir = cwd.join("runs").join(name);
        assert!(
            dir.join("best.safetensors").is_file(),
            "best weights after a first epoch"
        );
        for weights in ["last", "best"] {
            let out = cwd.join(format!("{name}-{weights}.safetensors"));
            let o = run_in(
                &[
                    "export",
                    dir.to_str().unwrap(),
                    "--weights",
                    weights,
                    "--format",
                    format,
                    "--out",
                    out.to_str().unwrap(),
                ],
                cwd,
            );
            assert!(o.status.success(), "{}", common::stderr(&o));
            exports.push(out.to_str().unwrap().to_string());
            let pt = cwd.join(format!("{name}-{weights}.pt"));
            let o = run_in(
                &[
                    "export",
                    dir.to_str().unwrap(),
                    "--weights",
                    weights,
                    "--format",
                    "torchscript",
                    "--out",
                    pt.to_str().unwrap(),
                ],
                cwd,
            );
            assert!(o.status.success(), "{}", common::stderr(&o));
            scripts.push(pt.to_str().unwrap().to_string());
            let w = if weights == "last" {
                Weights::Last
            } else {
                Weights::Best
            };
            all_logits.push(logits(&dir, w, &x));
        }
    }
    // One fixture per export: the oracle compares each against its own logits.
    for (i, (export, script)) in exports.iter().zip(&scripts).enumerate() {
        let fx = cwd.join(format!("fixture-{i}"));
        std::fs::create_dir_all(&fx).unwrap();
        let spec = serde_json::json!({"exports": [export], "torchscript": [script]});
        std::fs::write(fx.join("spec.json"), spec.to_string()).unwrap();
        let t = [
            ("x".to_string(), x.shallow_clone()),
            ("logits".to_string(), all_logits[i].shallow_clone()),
        ];
        Tensor::write_safetensors(&t, fx.join("batch.safetensors")).unwrap();
        let out = python_oracle("export_check.py", &["check", fx.to_str().unwrap()]);
        eprintln!("{}", out.trim());
    }
}

#[test]
fn a_pytorch_state_dict_of_the_tau_paper_evaluates_in_deepres() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    for (kind, tau) in [("bn", 0.3), ("nobn", 0.41)] {
        let fx = tmp.path().join(kind);
        std::fs::create_dir_all(&fx).unwrap();
        tch::manual_seed(9);
        let x = Tensor::randn([5, 3, 32, 32], (Kind::Float, Device::Cpu));
        Tensor::write_safetensors(
            &[("x".to_string(), x.shallow_clone())],
            fx.join("batch.safetensors"),
        )
        .unwrap();
        let spec = serde_json::json!({"kind": kind, "depth": 14, "tau": tau});
        std::fs::write(fx.join("spec.json"), spec.to_string()).unwrap();
        python_oracle("export_check.py", &["make", fx.to_str().unwrap()]);
        let file = fx.join("paper.safetensors");
        // The BN net's τ is a constructor argument, not in the state dict: it must be given.
        let given = if kind == "bn" { Some(tau) } else { None };
        let f = load_file(&file, given).unwrap();
        let (cfg, vars) = (f.model, f.vars);
        assert_eq!(cfg.depth, 14);
        let (_vs, net) = build(&cfg, &vars, 3, 10).unwrap();
        let got = tch::no_grad(|| net.forward_t(&x, false));
        let want: BTreeMap<String, Tensor> =
            Tensor::read_safetensors(fx.join("paper_logits.safetensors"))
                .unwrap()
                .into_iter()
                .collect();
        let d = (&got - &want["logits"]).abs().max().double_value(&[]);
        assert!(d < 1e-4, "{kind}: logits differ by {d}");
        if kind == "bn" {
            let e = load_file(&file, None).err().unwrap().to_string();
            assert!(e.contains("--tau"), "{e}");
        }
        // and through the command line, on a dataset
        let o = deepres()
            .args([
                "eval",
                file.to_str().unwrap(),
                "--data",
                "synthetic",
                "--device",
                "cpu",
                "--tau",
                &tau.to_string(),
            ])
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", common::stderr(&o));
        assert!(
            common::stdout(&o).contains("top-5"),
            "{}",
            common::stdout(&o)
        );
    }
}

// Long: the list of bad exports and evals, each one line and nothing touched, against one trained run.
#[test]
#[allow(clippy::too_many_lines)]
fn bad_exports_and_evals_get_one_line_and_touch_nothing() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    train(cwd, "nobn", &["model.norm=none", "model.tau.rule=inv_sqrt"]);
    let dir = cwd.join("runs/nobn");
    let d = dir.to_str().unwrap();
    // a model with no counterpart in that code
    let e = one_line_error(&run_in(
        &[
            "export",
            d,
            "--format",
            "akamaster",
            "--out",
            "x.safetensors",
        ],
        cwd,
    ));
    assert!(
        e.contains("norm: none has no counterpart in the akamaster code"),
        "{e}"
    );
    assert!(!cwd.join("x.safetensors").exists());
    // unknown format (clap's own message, exit 2)
    let o = run_in(&["export", d, "--format", "onnx", "--out", "x.onnx"], cwd);
    assert_eq!(o.status.code(), Some(2));
    // no best weights yet
    std::fs::remove_file(dir.join("best.safetensors")).unwrap();
    let e = one_line_error(&run_in(
        &[
            "export",
            d,
            "--weights",
            "best",
            "--format",
            "tau-paper",
            "--out",
            "x.safetensors",
        ],
        cwd,
    ));
    assert!(
        e.contains("best.safetensors: no best weights yet") && e.contains("--weights last"),
        "{e}"
    );
    // a state dict with a missing tensor
    let out = cwd.join("ok.safetensors");
    let o = run_in(
        &[
            "export",
            d,
            "--format",
            "tau-paper",
            "--out",
            out.to_str().unwrap(),
        ],
        cwd,
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    let mut t: Vec<(String, Tensor)> = Tensor::read_safetensors(&out).unwrap();
    t.retain(|(k, _)| k != "layer2.0.conv2.weight");
    let bad = cwd.join("bad.safetensors");
    Tensor::write_safetensors(&t, &bad).unwrap();
    let e = one_line_error(&run_in(
        &[
            "eval",
            bad.to_str().unwrap(),
            "--data",
            "synthetic",
            "--device",
            "cpu",
        ],
        cwd,
    ));
    assert!(
        e.contains("bad.safetensors") && e.contains("layer2.0.conv2.weight"),
        "{e}"
    );
    // an extra tensor
    t.push((
        "layer9.0.conv1.weight".into(),
        Tensor::zeros([1], (Kind::Float, Device::Cpu)),
    ));
    t.push((
        "layer2.0.conv2.weight".into(),
        Tensor::zeros([32, 32, 3, 3], (Kind::Float, Device::Cpu)),
    ));
    Tensor::write_safetensors(&t, &bad).unwrap();
    let e = one_line_error(&run_in(
        &[
            "eval",
            bad.to_str().unwrap(),
            "--data",
            "synthetic",
            "--device",
            "cpu",
        ],
        cwd,
    ));
    assert!(e.contains("layer9.0.conv1.weight"), "{e}");
}

/// train.init_from takes deepres's best.safetensors or a τ-paper export: with the learning
/// rate at 1e-30 (updates below half an f32 ulp) and weight decay 0 (a model without BN has
/// no statistics to update), the run's weights after one epoch are exactly those it started
/// from.
#[test]
fn init_from_starts_from_a_best_file_or_an_export() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let nobn = [
        "model.norm=none",
        "model.tau.rule=inv_sqrt",
        "model.tau.learnable=shared",
    ];
    train(cwd, "a", &nobn);
    let best = cwd.join("runs/a/best.safetensors");
    let export = cwd.join("a.safetensors");
    let o = run_in(
        &[
            "export",
            "runs/a",
            "--weights",
            "best",
            "--format",
            "tau-paper",
            "--out",
            export.to_str().unwrap(),
        ],
        cwd,
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    let want = export::load_run(&cwd.join("runs/a"), Weights::Best)
        .unwrap()
        .vars;
    for (name, from) in [("b", &best), ("c", &export)] {
        let init = format!("train.init_from={}", from.display());
        let mut sets = nobn.to_vec();
        sets.extend([
            "train.optimizer.lr=1e-30",
            "train.optimizer.weight_decay=0",
            &init,
        ]);
        train(cwd, name, &sets);
        let got = export::load_run(&cwd.join("runs").join(name), Weights::Last)
            .unwrap()
            .vars;
        assert_eq!(got.len(), want.len());
        for (k, t) in &want {
            assert!(got[k].equal(t), "{name}: {k} moved");
        }
    }
    // a file of another model is refused with the key and the file
    let sets = ["model.norm=bn", "model.shortcut=a-bn"];
    let init = format!("train.init_from={}", export.display());
    let mut args = vec![
        "train",
        "-q",
        "--device",
        "cpu",
        "--set",
        "name=d",
        "--set",
        "data.name=synthetic",
        "--set",
        "model.depth=8",
    ];
    for s in sets.iter().chain([&init.as_str()]) {
        args.extend(["--set", s]);
    }
    let e = one_line_error(&run_in(&args, cwd));
    assert!(
        e.contains("train.init_from") && e.contains("a.safetensors"),
        "{e}"
    );
}
