//! Grid files (src/sweep/grid): expansion order, cell names, values, seeds and variants,
//! scales, `--set` and grid overrides, and bad files that fail in one line naming the file and
//! key. Running the cells is in tests/sweep.rs.
use deepres::sweep::Grid;

mod common;
use common::write_grid;

fn err_of(r: anyhow::Result<Grid>) -> String {
    format!("{:#}", r.expect_err("expected an error"))
}

// Long: mostly grid files and their expected cells, written out in full.
#[test]
#[allow(clippy::too_many_lines)]
fn expansion_order_names_values_seeds_and_variants() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_grid(
        tmp.path(),
        "name: zt
base:
  data: {name: synthetic}
  model: {shortcut: a-bn}
variants:
  bn: {model.norm: bn, model.tau.rule: one}
  bn-tau: {model.norm: bn, model.tau: {rule: inv_sqrt}}
grid:
  model.depth: [8, 14]
  train.optimizer.lr: [0.1, 0.05]
  data.name: [synthetic, fashion-mnist]
seeds: [0, 1]
report: {kind: table, title: T, rows: model.depth, published: zhang2022-table1}
",
    );
    let g = Grid::load(&path, None, &[]).unwrap();
    assert_eq!(g.name, "zt");
    assert_eq!(g.scale, None);
    assert_eq!(g.dir, tmp.path().join("runs/zt"));
    assert_eq!(g.keys, ["model.depth", "train.optimizer.lr", "data.name"]);
    assert_eq!(g.variants, ["bn", "bn-tau"]);
    assert_eq!(
        g.report.as_ref().unwrap().rows.as_deref(),
        Some("model.depth")
    );
    let cells = g.cells().unwrap();
    assert_eq!(cells.len(), 2 * 2 * 2 * 2 * 2);
    let names: Vec<&str> = cells.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        &names[..5],
        [
            "bn_depth8_lr0.1_name-synthetic_s0",
            "bn_depth8_lr0.1_name-synthetic_s1",
            "bn_depth8_lr0.1_name-fashion-mnist_s0",
            "bn_depth8_lr0.1_name-fashion-mnist_s1",
            "bn_depth8_lr0.05_name-synthetic_s0",
        ]
    );
    assert_eq!(names[16], "bn-tau_depth8_lr0.1_name-synthetic_s0");
    assert_eq!(names[31], "bn-tau_depth14_lr0.05_name-fashion-mnist_s1");
    for (i, c) in cells.iter().enumerate() {
        assert_eq!(c.index, i);
        assert_eq!(c.config.name, c.name);
        assert_eq!(c.config.seed, c.seed);
        assert_eq!(c.dir(), g.dir.join(&c.name));
        assert_eq!(
            c.config.model.shortcut,
            deepres::model::config::Shortcut::ABn,
            "base kept under merged keys"
        );
    }
    let last = &cells[31];
    assert_eq!(last.variant.as_deref(), Some("bn-tau"));
    assert_eq!(last.seed, 1);
    assert_eq!(last.values.len(), 3);
    assert_eq!(last.values[0].0, "model.depth");
    assert_eq!(last.values[0].1, serde_yaml::Value::from(14));
    assert_eq!(last.values[2].1, serde_yaml::Value::from("fashion-mnist"));
    assert_eq!(last.config.model.depth, 14);
    assert_eq!(last.config.train.optimizer.lr, 0.05);
    assert_eq!(
        last.config.data.name,
        deepres::data::DatasetName::FashionMnist
    );
    assert_eq!(
        last.config.model.tau.rule,
        deepres::model::config::TauRule::InvSqrt
    );
    assert_eq!(
        cells[0].config.model.tau.rule,
        deepres::model::config::TauRule::One
    );
    assert_eq!(g.cell(31).unwrap().name, last.name);
    assert!(format!("{:#}", g.cell(32).unwrap_err()).contains("32 cells"));

    // No variants, shared last segments → full keys; sanitized strings.
    let path = write_grid(
        tmp.path(),
        "name: plain
grid:
  train.optimizer.lr: [0.1]
  train.lr: [x y]
",
    );
    let err = err_of(Grid::load(&path, None, &[]));
    assert!(
        err.contains("grid.yaml: cell train-optimizer-lr0.1_train-lr-x-y_s0: "),
        "{err}"
    );
    let path = write_grid(tmp.path(), "name: plain\ngrid: {model.depth: [8]}\n");
    let cells = Grid::load(&path, None, &[]).unwrap().cells().unwrap();
    assert_eq!(cells.len(), 1);
    assert_eq!(cells[0].name, "depth8_s0");
    assert_eq!(cells[0].variant, None);
}

// Long: mostly grid files and their expected cells, written out in full.
#[test]
#[allow(clippy::too_many_lines)]
fn scales_replace_set_grid_seeds_and_user_overrides_come_last() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_grid(
        tmp.path(),
        "name: sc
base:
  data: {name: cifar10}
  model: {depth: 20}
  train: {epochs: 200}
variants:
  a: {train.epochs: 7}
  b: {}
grid:
  model.depth: [20, 56]
  model.width: [1]
seeds: [0]
scales:
  smoke:
    set: {data.name: synthetic, train.epochs: 2, model.width: 3}
    grid: {model.depth: [8, 14, 20]}
    seeds: [4, 5]
  full:
    requires_data: [cifar10]
",
    );
    let g = Grid::load(&path, Some("smoke"), &[]).unwrap();
    assert_eq!(g.name, "sc-smoke");
    assert_eq!(g.scale.as_deref(), Some("smoke"));
    assert_eq!(g.dir, tmp.path().join("runs/sc-smoke"));
    let cells = g.cells().unwrap();
    assert_eq!(cells.len(), 2 * 3 * 2);
    assert_eq!(cells[0].name, "a_depth8_width1_s4");
    assert_eq!(cells[1].name, "a_depth8_width1_s5");
    assert_eq!(cells[6].name, "b_depth8_width1_s4");
    // scale.set after base, variants after scale.set, grid after both.
    assert_eq!(
        cells[0].config.data.name,
        deepres::data::DatasetName::Synthetic
    );
    assert_eq!(cells[0].config.train.epochs, 7);
    assert_eq!(cells[6].config.train.epochs, 2);
    assert_eq!(cells[0].config.model.width, 1);
    assert_eq!(cells[11].config.model.depth, 20);

    // --seeds replaces the seeds of the file and of the scale.
    let g = Grid::load(&path, Some("smoke"), &[]).unwrap();
    assert_eq!(g.seeds(), [4, 5]);
    let g = g.with_seeds(&[7, 8, 9]).unwrap();
    assert_eq!(g.seeds(), [7, 8, 9]);
    let cells = g.cells().unwrap();
    assert_eq!(cells.len(), 2 * 3 * 3);
    assert_eq!(
        (cells[2].name.as_str(), cells[2].config.seed),
        ("a_depth8_width1_s9", 9)
    );
    assert!(format!("{:#}", g.clone().with_seeds(&[]).unwrap_err()).contains("no cell"));
    assert!(format!("{:#}", g.with_seeds(&[1, 1]).unwrap_err()).contains("both named"));

    // The user's --set comes last; out_dir moves the sweep.
    let elsewhere = tmp.path().join("elsewhere");
    let sets = vec![
        "train.optimizer.lr=0.05".to_string(),
        "data.synthetic_train=64".to_string(),
        format!("out_dir={}", elsewhere.display()),
    ];
    let g = Grid::load(&path, Some("smoke"), &sets).unwrap();
    assert_eq!(g.dir, elsewhere.join("sc-smoke"));
    let cells = g.cells().unwrap();
    assert!(cells
        .iter()
        .all(|c| c.config.train.optimizer.lr == 0.05 && c.config.data.synthetic_train == 64));
    // A key the grid varies, or a variant sets, names the cells: a --set of it (or of a
    // mapping above it) is refused rather than mislabel every cell.
    for (set, words) in [
        ("model.depth=14", ["grid.yaml", "`model.depth`", "grid"]),
        ("model={depth: 14}", ["grid.yaml", "`model.depth`", "grid"]),
        (
            "train.epochs=3",
            ["grid.yaml", "`train.epochs`", "variant `a`"],
        ),
    ] {
        let err = err_of(Grid::load(&path, Some("smoke"), &[set.to_string()]));
        assert!(words.iter().all(|w| err.contains(w)), "{set}: {err}");
        assert!(err.starts_with(&format!("--set {set}:")), "{err}");
    }
    // model.depth_x is not model.depth (it fails later, as an unknown key of the cell).
    let err = err_of(Grid::load(
        &path,
        Some("smoke"),
        &["model.depth_x=1".into()],
    ));
    assert!(!err.contains("varies"), "{err}");
    assert_eq!(cells[0].name, "a_depth8_width1_s4");
    assert_eq!(
        cells[0].dir(),
        elsewhere.join("sc-smoke/a_depth8_width1_s4")
    );

    // No scale: the file's own values; full: requires_data is not checked by load.
    let cells = Grid::load(&path, None, &[]).unwrap().cells().unwrap();
    assert_eq!(cells.len(), 4);
    assert_eq!(cells[3].name, "b_depth56_width1_s0");
    assert_eq!(cells[3].config.train.epochs, 200);
    let g = Grid::load(&path, Some("full"), &[]).unwrap();
    assert_eq!(g.requires_data(), [deepres::data::DatasetName::Cifar10]);

    let err = err_of(Grid::load(&path, Some("medium"), &[]));
    assert!(
        err.contains("grid.yaml") && err.contains("medium") && err.contains("smoke, full"),
        "{err}"
    );
    let err = err_of(Grid::load(&path, None, &["seed=3".into()]));
    assert!(err.contains("seed"), "{err}");
    let err = err_of(Grid::load(&path, None, &["model.depth".into()]));
    assert!(
        err.contains("model.depth") && err.contains("key=value"),
        "{err}"
    );
    let err = err_of(Grid::load(&path, None, &["model.tau.c=x".into()]));
    assert!(
        err.contains("grid.yaml: cell a_depth20_width1_s0: model.tau.c"),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
}

#[test]
fn bad_files_fail_with_one_line_naming_file_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str])] = &[
        (
            "name: x\ngird: {model.depth: [8]}\n",
            &["grid.yaml", "gird"],
        ),
        (
            "name: x\ngrid: {model.depth: []}\n",
            &["grid.yaml", "expands to no cell", "model.depth"],
        ),
        (
            "name: x\ngrid: {model.depth: [8], model.width: []}\n",
            &["no cell", "model.width"],
        ),
        ("name: x\nseeds: []\n", &["no cell", "seeds"]),
        (
            "name: x\nseeds: [0, 0]\n",
            &["grid.yaml", "s0", "both named"],
        ),
        (
            "name: x\ngrid: {model.depth: [8, 8]}\n",
            &["both named", "depth8_s0"],
        ),
        (
            "name: x\ngrid: {model.depth: 8}\n",
            &["grid.yaml", "grid.model.depth", "list"],
        ),
        (
            "name: x\nscales: {smoke: {sets: {}}}\n",
            &["grid.yaml", "scales.smoke", "sets"],
        ),
        (
            "name: x\nscales: {smoke: {grid: {model.width: [1]}}}\n",
            &["scales.smoke.grid", "model.width"],
        ),
        (
            "name: x\nscales: {full: {requires_data: [imagenet]}}\n",
            &["requires_data", "imagenet"],
        ),
        (
            "name: x\nbase: {model: {dept: 8}}\n",
            &["grid.yaml", "cell s0", "dept"],
        ),
        (
            "name: x\nvariants: {v: {model.norm: layer}}\n",
            &["cell v_s0", "model.norm", "layer"],
        ),
        (
            "name: x\nreport: {kind: table}\n",
            &["grid.yaml", "report", "title"],
        ),
        (
            "name: x\nreport: {kind: tabel, title: T}\n",
            &["report", "tabel"],
        ),
        ("name: [x\n", &["grid.yaml", "invalid YAML"]),
    ];
    for (body, needles) in cases {
        let path = write_grid(tmp.path(), body);
        let err = err_of(Grid::load(&path, None, &[]));
        for n in needles.iter() {
            assert!(err.contains(n), "{body:?}: {err:?} lacks {n:?}");
        }
        assert!(!err.contains('\n'), "{body:?}: {err:?}");
    }
    let err = err_of(Grid::load(&tmp.path().join("nope.yaml"), None, &[]));
    assert!(err.contains("nope.yaml"), "{err}");
    let list = tmp.path().join("list.yaml");
    std::fs::write(&list, "- 1\n").unwrap();
    let err = err_of(Grid::load(&list, None, &[]));
    assert!(err.contains("list.yaml: expected a mapping"), "{err}");
    // An unknown top-level key names the file and the key.
    let path = write_grid(tmp.path(), "name: x\nseed: [1]\n");
    let err = err_of(Grid::load(&path, None, &[]));
    assert!(
        err.starts_with(&path.display().to_string()) && err.contains("`seed`"),
        "{err}"
    );
}
