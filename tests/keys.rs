//! Resume and cache keys: one scheme, the SHA-256 of the spec's YAML (util::key::spec_key),
//! for run configs (config.sha256), Marion's training checkpoints and M9 runs file, and
//! Chizat's cached limits (their pinned keys are in tests/marion.rs and tests/chizat_limit.rs).
use deepres::train::config::RunConfig;
use deepres::util::key::{sha256_hex, spec_key};

/// The key of the default run config, pinned. If this test fails, the run config's serialized
/// form changed (a field added, renamed or given another default): check that
/// `config_conflict` still accepts runs of the old form (it compares configs, not text), then
/// paste the new value here deliberately.
#[test]
fn the_default_run_config_key_is_pinned() {
    assert_eq!(RunConfig::default().hash(), PINNED_DEFAULT_RUN_CONFIG);
}

const PINNED_DEFAULT_RUN_CONFIG: &str =
    "5008bdcec5247ea9d38b6f7c1db69f8c22df980a6e7f667ae97495977fb024e0";

#[test]
fn the_key_is_the_sha256_of_the_yaml_that_config_yaml_holds() {
    let c = RunConfig::default();
    assert_eq!(c.hash(), sha256_hex(c.to_yaml().as_bytes()));
    // sha256("abc"), FIPS 180-2's example: the hash function itself is the standard one.
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn every_setting_changes_the_key() {
    let base = RunConfig::default();
    let variants: Vec<(&str, RunConfig)> = vec![
        (
            "seed",
            RunConfig {
                seed: 1,
                ..base.clone()
            },
        ),
        (
            "name",
            RunConfig {
                name: "other".into(),
                ..base.clone()
            },
        ),
        ("model.depth", {
            let mut c = base.clone();
            c.model.depth = 56;
            c
        }),
        ("model.tau.c", {
            let mut c = base.clone();
            c.model.tau.c = 0.5;
            c
        }),
        ("train.optimizer.lr", {
            let mut c = base.clone();
            c.train.optimizer.lr = 0.05;
            c
        }),
        ("data.limit_train", {
            let mut c = base.clone();
            c.data.limit_train = Some(100);
            c
        }),
    ];
    for (field, c) in variants {
        assert_ne!(c.hash(), base.hash(), "{field} does not change the key");
    }
    #[derive(serde::Serialize)]
    struct S {
        a: f64,
    }
    assert_ne!(spec_key(&S { a: 0.1 }), spec_key(&S { a: 0.1 + 1e-12 }));
}

/// `train.deterministic` stays out of config.yaml when false (the default key above does not
/// change) and, when true, is written and changes the key (its GPU kernels differ).
#[test]
fn deterministic_mode_is_in_the_key_only_when_on() {
    let base = RunConfig::default();
    assert!(!base.to_yaml().contains("deterministic"));
    let mut on = base.clone();
    on.train.deterministic = true;
    assert!(on.to_yaml().contains("deterministic: true"));
    assert_ne!(on.hash(), base.hash());
    let back = RunConfig::from_yaml_str(&on.to_yaml(), "test", &[]).unwrap();
    assert_eq!(back, on);
}

/// Every leaf of the run config's YAML (found by walking the serialized default, so a field
/// added later is covered without editing this test), changed alone to another valid value,
/// changes the key: a run directory's config.sha256, a checkpoint's hash and a sweep cell's
/// key (a cell's run is keyed by its resolved config) all come from it. Fields left out of the
/// YAML at their default (`train.init_from`, `train.deterministic`) are checked above and in
/// `deterministic_mode_is_in_the_key_only_when_on`.
#[test]
fn every_field_of_the_run_config_changes_the_key() {
    use serde_yaml::Value;
    let base = RunConfig::default();
    let tree = serde_yaml::to_value(&base).unwrap();
    let mut leaves = Vec::new();
    collect_leaves(&tree, &mut Vec::new(), &mut leaves);
    assert!(leaves.len() > 30, "{leaves:?}");
    // Other values of each kind; for strings, the first that still parses as a config.
    let strings = [
        "cpu", "mnist", "none", "fixup", "b", "inv", "shared", "bf16", "cosine", "x",
    ];
    for path in &leaves {
        let old = get(&tree, path).clone();
        let candidates: Vec<Value> = match &old {
            Value::Bool(b) => vec![Value::Bool(!b)],
            Value::Number(n) if n.is_i64() => vec![Value::from(n.as_i64().unwrap() + 6)],
            Value::Number(n) => vec![Value::from(n.as_f64().unwrap() + 0.125)],
            Value::Null => vec![Value::from(100)],
            Value::String(_) => strings.iter().map(|s| Value::from(*s)).collect(),
            other => panic!("{path:?}: unexpected leaf {other:?}"),
        };
        let changed = candidates.into_iter().find_map(|v| {
            let mut t = tree.clone();
            *get_mut(&mut t, path) = v;
            serde_yaml::from_value::<RunConfig>(t)
                .ok()
                .filter(|c| c != &base)
        });
        let c = changed.unwrap_or_else(|| panic!("{}: no other valid value", path.join(".")));
        assert_ne!(
            c.hash(),
            base.hash(),
            "{} does not change the key",
            path.join(".")
        );
    }
}

/// Dotted paths of the scalar leaves of `v` (a sequence counts by its first element).
fn collect_leaves(v: &serde_yaml::Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        serde_yaml::Value::Mapping(m) => {
            for (k, child) in m {
                at.push(k.as_str().unwrap().to_string());
                collect_leaves(child, at, out);
                at.pop();
            }
        }
        serde_yaml::Value::Sequence(s) if !s.is_empty() => {
            at.push("0".into());
            collect_leaves(&s[0], at, out);
            at.pop();
        }
        _ => out.push(at.clone()),
    }
}

fn get<'a>(v: &'a serde_yaml::Value, path: &[String]) -> &'a serde_yaml::Value {
    path.iter().fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) if v.is_sequence() => &v[i],
        _ => &v[k.as_str()],
    })
}

fn get_mut<'a>(v: &'a mut serde_yaml::Value, path: &[String]) -> &'a mut serde_yaml::Value {
    path.iter().fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) if v.is_sequence() => &mut v[i],
        _ => &mut v[k.as_str()],
    })
}

/// `config_conflict` matches a run directory to a config as configs: where the run is
/// (`out_dir`), what is logged, how often a mid-epoch checkpoint is written and whether steps
/// replay a CUDA graph do not count (a resume may change them); every setting of what is
/// trained does, speed features that change the arithmetic (channels-last, bf16) included.
#[test]
fn a_run_directory_ignores_how_steps_are_launched_but_not_what_they_compute() {
    use deepres::train::config::{CudaGraph, Precision};
    use deepres::train::run_dir::{config_conflict, CONFIG_FILE, HASH_FILE, METRICS_FILE};
    let tmp = tempfile::tempdir().unwrap();
    let base = RunConfig {
        out_dir: tmp.path().to_path_buf(),
        ..RunConfig::default()
    };
    let dir = base.run_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let record = |c: &RunConfig| {
        let yaml = c.to_yaml();
        std::fs::write(dir.join(CONFIG_FILE), &yaml).unwrap();
        let hash = format!("{}  config.yaml\n", sha256_hex(yaml.as_bytes()));
        std::fs::write(dir.join(HASH_FILE), hash).unwrap();
    };
    // A moved sweep: the recorded config names the directory it first ran in.
    record(&RunConfig {
        out_dir: "/elsewhere/runs".into(),
        ..base.clone()
    });
    std::fs::write(dir.join(METRICS_FILE), "epoch\n1\n").unwrap();
    assert_eq!(config_conflict(&base), None, "out_dir counted");
    record(&base);
    type Edit = fn(&mut RunConfig);
    let with = |f: Edit| {
        let mut c = base.clone();
        f(&mut c);
        config_conflict(&c)
    };
    assert_eq!(with(|_| {}), None);
    assert_eq!(with(|c| c.train.cuda_graph = CudaGraph::On), None);
    assert_eq!(with(|c| c.train.cuda_graph = CudaGraph::Auto), None);
    assert_eq!(with(|c| c.train.checkpoint_minutes = 1.0), None);
    assert_eq!(with(|c| c.log.tensorboard = true), None);
    let counting: [(&str, Edit); 4] = [
        ("channels_last", |c| c.train.channels_last = true),
        ("precision", |c| c.train.precision = Precision::Bf16),
        ("lr", |c| c.train.optimizer.lr *= 2.0),
        ("seed", |c| c.seed += 1),
    ];
    for (field, f) in counting {
        let e = with(f).unwrap_or_else(|| panic!("{field} did not count"));
        assert!(e.contains("different config"), "{field}: {e}");
    }
}

/// docs/config.md's run-config block ("All keys with their defaults") is what the code has: it
/// parses (unknown keys are refused) to the default config, and it names every key, those
/// left out of config.yaml at their default included (found by setting each of them, so a
/// field added later without its line in the reference fails here).
#[test]
fn the_config_reference_names_every_key_with_its_default() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config.md")).unwrap();
    let block = doc
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("docs/config.md has no yaml block");
    let documented = RunConfig::from_yaml_str(block, "docs/config.md", &[]).unwrap();
    assert_eq!(documented, RunConfig::default());

    let mut all = RunConfig::default();
    all.train.init_from = Some("best.safetensors".into());
    all.train.mixup_alpha = Some(1.0);
    all.train.label_smoothing = Some(0.1);
    all.train.deterministic = true;
    all.data.augment.cutout = Some(8);
    all.data.limit_train = Some(100);
    all.data.limit_test = Some(100);
    all.log.tensorboard = true;
    let leaves_of = |v: &serde_yaml::Value| {
        let mut out = Vec::new();
        collect_leaves(v, &mut Vec::new(), &mut out);
        out.into_iter().map(|p| p.join(".")).collect::<Vec<_>>()
    };
    let doc_keys = leaves_of(&serde_yaml::from_str(block).unwrap());
    let missing: Vec<String> = leaves_of(&serde_yaml::to_value(&all).unwrap())
        .into_iter()
        .filter(|k| !doc_keys.contains(k))
        .collect();
    assert!(missing.is_empty(), "docs/config.md lacks {missing:?}");
}
