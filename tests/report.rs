//! The report layer on fixture run directories written by the test (no training): tables with
//! seeds aggregated, diverged / running / missing cells, published numbers and Δ, CSV, the
//! curves figure and its CSV (the plots and tables themselves in tests/plot.rs).
mod common;

use common::fixture_runs::{cell, ctx, depth, write_run, Run, EPOCHS};
use common::plots::{keep, plot_files};
use deepres::report::plot;
use deepres::report::published;
use deepres::report::runs::RunRecord;
use deepres::sweep::grid::{Cell, ReportKind, ReportSpec};
use deepres::sweep::report::render_with;
use deepres::train::RunStatus;
use std::path::{Path, PathBuf};

/// The cells of the Markdown line whose first cell is `first`.
/// The Markdown row whose first two cells are `first` and `second`.
fn md_row_pair(md: &str, first: &str, second: &str) -> Vec<String> {
    md.lines()
        .map(|l| {
            let cells = l.trim().trim_matches('|').split('|');
            cells.map(|c| c.trim().to_string()).collect::<Vec<_>>()
        })
        .find(|c| c.len() > 1 && c[0] == first && c[1] == second)
        .unwrap_or_else(|| panic!("no row {first:?} {second:?} in\n{md}"))
}

fn md_row(md: &str, first: &str) -> Vec<String> {
    md.lines()
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first().map(String::as_str) == Some(first))
        .unwrap_or_else(|| panic!("no row {first:?} in\n{md}"))
}

/// Sample standard deviation, by hand.
fn sd2(a: f64, b: f64) -> f64 {
    let m = (a + b) / 2.0;
    (((a - m).powi(2) + (b - m).powi(2)) / 1.0).sqrt()
}

/// The Table Z1 fixture under `tmp`: depths 20, 32, 56, 110 × {bn, bn-tau} × seeds 0, 1, with
/// finished, diverged, running and missing cells (bn-tau differs in model.tau.rule only);
/// returns the sweep directory and its rendered Markdown.
fn z1_table(tmp: &Path) -> (PathBuf, String) {
    let sweep = tmp.join("z1");
    let mut cells = Vec::new();
    for v in ["bn", "bn-tau"] {
        for d in [20, 32, 56, 110] {
            for s in [0, 1] {
                let i = cells.len();
                cells.push(cell(&sweep, i, v, &[("model.depth", depth(d))], s));
            }
        }
    }
    // The variants differ in one setting, as in the grid file: the paired table compares them.
    for c in cells
        .iter_mut()
        .filter(|c| c.variant.as_deref() == Some("bn-tau"))
    {
        c.config.model.tau.rule = deepres::model::config::TauRule::InvSqrt;
    }
    let find = |v: &str, d: i64, s: u64| {
        cells
            .iter()
            .find(|c| c.variant.as_deref() == Some(v) && c.config.model.depth == d && c.seed == s)
            .unwrap()
    };
    // Depth 20: everything finished. bn best 8.25, 8.75 (mean 8.50); final 8.40, 9.10.
    write_run(find("bn", 20, 0), Run::Finished(&[12.0, 8.25, 8.40]));
    write_run(find("bn", 20, 1), Run::Finished(&[11.0, 8.75, 9.10]));
    // bn-tau best 7.6, 8.0 (mean 7.80); final 7.7, 8.2.
    write_run(find("bn-tau", 20, 0), Run::Finished(&[10.0, 7.6, 7.7]));
    write_run(find("bn-tau", 20, 1), Run::Finished(&[10.0, 8.0, 8.2]));
    // Depth 32: nothing ran. Depth 56: bn diverged at epoch 2 on both seeds (epoch 1: 50, 60 %
    // error); bn-tau running.
    write_run(find("bn", 56, 0), Run::Diverged(&[50.0]));
    write_run(find("bn", 56, 1), Run::Diverged(&[60.0]));
    write_run(find("bn-tau", 56, 0), Run::Running(&[30.0]));
    // Depth 110: bn best 6.90, 7.10 (mean 7.00); bn-tau one seed 6.00, the other missing.
    write_run(find("bn", 110, 0), Run::Finished(&[9.0, 6.90, 7.0]));
    write_run(find("bn", 110, 1), Run::Finished(&[9.0, 7.10, 7.3]));
    write_run(find("bn-tau", 110, 0), Run::Finished(&[9.0, 6.2, 6.0]));

    let spec = ReportSpec {
        kind: ReportKind::Table,
        title: "Table Z1: test error (%)".into(),
        rows: Some("model.depth".into()),
        published: Some("zhang2022-table1".into()),
    };
    let md = render_with(
        &ctx(&sweep, "z1", spec, &["model.depth"], &["bn", "bn-tau"]),
        &cells,
    )
    .unwrap()
    .text;
    println!("{md}");
    (sweep, md)
}

#[test]
fn table_aggregates_seeds_and_shows_published_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, md) = z1_table(tmp.path());
    let header = md_row(&md, "model.depth");
    assert_eq!(
        header,
        [
            "model.depth",
            "bn best",
            "bn final",
            "bn published",
            "bn Δ",
            "bn-tau best",
            "bn-tau final",
            "bn-tau published",
            "bn-tau Δ"
        ]
    );
    // Mean ± sample std, by hand: bn best (8.25, 8.75): 8.50 ± 0.35; final (8.40, 9.10): 8.75 ± 0.49.
    // 95 % interval with n = 2: ± t(0.975, 1) · s/√2 = ± 12.706 · 0.3536/1.4142 = ± 3.18.
    assert!((sd2(8.25, 8.75) - 0.3536).abs() < 1e-4 && (sd2(8.40, 9.10) - 0.4950).abs() < 1e-4);
    assert_eq!(
        md_row(&md, "20"),
        [
            "20",
            "8.50 ± 0.35, CI [5.32, 11.68] (n = 2)",
            "8.75 ± 0.49 (2)",
            "8.08",
            "+0.42 (inside our CI)",
            "7.80 ± 0.28, CI [5.26, 10.34] (n = 2)",
            "7.95 ± 0.35 (2)",
            "7.89",
            "-0.09 (inside our CI)"
        ]
    );
    assert_eq!(
        md_row(&md, "32"),
        ["32", "missing", "missing", "7.39", "–", "missing", "missing", "7.16", "–"]
    );
    assert_eq!(
        md_row(&md, "56"),
        [
            "56",
            // Before diverging each seed had one epoch at 50 and 60 % error: mean 55.00,
            // sample std 10/√2 = 7.07 (the τ paper's script reports the best before it).
            "diverged at epoch 2 (2/2 seeds); best before it 55.00 ± 7.07 (2)",
            "diverged at epoch 2 (2/2 seeds); last before it 55.00 ± 7.07 (2)",
            "6.73",
            "–",
            "running (1/3) (1/2 seeds)",
            "running (1/3) (1/2 seeds)",
            "6.18",
            "–"
        ]
    );
    // 110: bn 7.00 ± 0.14 vs 6.61 → +0.39; bn-tau 6.00 (one seed) vs 5.83 → +0.17.
    assert_eq!(
        md_row(&md, "110"),
        [
            "110",
            "7.00 ± 0.14, CI [5.73, 8.27] (n = 2)",
            "7.15 ± 0.21 (2)",
            "6.61",
            "+0.39 (inside our CI)",
            "6.00 (n = 1, no interval); 1 missing",
            "6.00; 1 missing",
            "5.83",
            "+0.17"
        ]
    );
}

#[test]
fn paired_rows_compare_the_variants_seed_by_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, md) = z1_table(tmp.path());
    // Paired by seed, bn-tau − bn (they differ in model.tau.rule only). Depth 20: differences
    // −0.65, −0.75: mean −0.70, s = 0.0707, interval ± 12.706 · 0.05 = ± 0.635, t = −14,
    // p = 2(1 − F₁(14)) = 1 − 2·atan(14)/π = 0.045. Depth 110: one pair (seed 0: best 6.00 −
    // 6.90 = −0.90), no interval.
    assert_eq!(
        md_row_pair(&md, "20", "bn-tau − bn"),
        [
            "20",
            "bn-tau − bn",
            "model.tau.rule",
            "2",
            "-0.70",
            "[-1.34, -0.06]",
            "0.045"
        ]
    );
    assert_eq!(
        md_row_pair(&md, "110", "bn-tau − bn"),
        [
            "110",
            "bn-tau − bn",
            "model.tau.rule",
            "1",
            "-0.90",
            "n = 1: no interval",
            "–"
        ]
    );
}

#[test]
fn the_table_s_markdown_csv_and_plot_files_hold_its_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let (sweep, _) = z1_table(tmp.path());
    // Files: Markdown, CSV (parseable, numbers), plot.
    let report = sweep.join("report");
    assert!(report.join("z1-paired.csv").is_file());
    for f in plot_files("z1")
        .iter()
        .chain(&["z1.md".to_string(), "z1.csv".to_string()])
    {
        assert!(report.join(f).is_file(), "{f} missing");
    }
    assert_eq!(
        std::fs::read_to_string(report.join("z1.md"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
        "**Table Z1: test error (%)**"
    );
    keep(&report.join("z1.png"));
    let mut r = csv::Reader::from_path(report.join("z1.csv")).unwrap();
    let headers: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        headers,
        [
            "model.depth",
            "variant",
            "seeds",
            "finished",
            "best_mean",
            "best_std",
            "best_ci_lo",
            "best_ci_hi",
            "final_mean",
            "final_std",
            "status",
            "published",
            "delta",
            "published_in_ci"
        ]
    );
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 8);
    let get = |d: &str, v: &str| {
        rows.iter()
            .find(|r| &r[0] == d && &r[1] == v)
            .unwrap()
            .clone()
    };
    let bn20 = get("20", "bn");
    assert!((bn20[4].parse::<f64>().unwrap() - 8.5).abs() < 1e-9);
    assert!((bn20[5].parse::<f64>().unwrap() - sd2(8.25, 8.75)).abs() < 1e-4);
    // the interval's ends: 8.50 ∓ 3.1765
    assert!(
        (bn20[6].parse::<f64>().unwrap() - 5.3235).abs() < 1e-3,
        "{bn20:?}"
    );
    assert!(
        (bn20[7].parse::<f64>().unwrap() - 11.6765).abs() < 1e-3,
        "{bn20:?}"
    );
    assert_eq!(&bn20[10], "finished (2/2 seeds)");
    assert_eq!(bn20[11].parse::<f64>().unwrap(), 8.08);
    assert!((bn20[12].parse::<f64>().unwrap() - 0.42).abs() < 1e-9);
    assert_eq!(&bn20[13], "true");
    let bn56 = get("56", "bn");
    assert_eq!(
        (&bn56[3], &bn56[4], &bn56[10]),
        (
            "0",
            "",
            "diverged at epoch 2 (2/2 seeds); best before it 55.00 ± 7.07 (2)"
        )
    );
    assert_eq!(&get("32", "bn-tau")[10], "missing");
}

// Long: the Z2 fixture and its expected rows, written out.
#[test]
#[allow(clippy::too_many_lines)]
fn one_table_per_other_key_and_single_seed_values() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = tmp.path().join("z2");
    let mut cells = Vec::new();
    for v in ["tau1", "tau-sqrt"] {
        for data in ["cifar10", "cifar100"] {
            for d in [20, 1202] {
                let i = cells.len();
                let vals = [
                    ("data.name", serde_yaml::Value::from(data)),
                    ("model.depth", depth(d)),
                ];
                cells.push(cell(&sweep, i, v, &vals, 0));
            }
        }
    }
    for c in &cells {
        if c.variant.as_deref() == Some("tau1") {
            write_run(c, Run::Diverged(&[]));
        } else if c.config.model.depth == 20 {
            write_run(c, Run::Finished(&[20.0, 10.0, 10.5]));
        }
    }
    let spec = ReportSpec {
        kind: ReportKind::Table,
        title: "Table Z2".into(),
        rows: Some("model.depth".into()),
        published: None,
    };
    let md = render_with(
        &ctx(
            &sweep,
            "z2",
            spec,
            &["data.name", "model.depth"],
            &["tau1", "tau-sqrt"],
        ),
        &cells,
    )
    .unwrap()
    .text;
    println!("{md}");
    assert!(
        md.contains("**Table Z2 (data.name = cifar10)**")
            && md.contains("**Table Z2 (data.name = cifar100)**")
    );
    assert_eq!(md_row(&md, "model.depth").len(), 5, "no published columns");
    assert_eq!(
        md_row(&md, "20"),
        [
            "20",
            "diverged at epoch 1",
            "diverged at epoch 1",
            "10.00 (n = 1, no interval)",
            "10.50"
        ]
    );
    assert_eq!(
        md_row(&md, "1202"),
        [
            "1202",
            "diverged at epoch 1",
            "diverged at epoch 1",
            "missing",
            "missing"
        ]
    );
    let report = sweep.join("report");
    for f in [
        "z2-cifar10.md",
        "z2-cifar10.csv",
        "z2-cifar100.md",
        "z2-cifar100.csv",
        "z2-cifar10.svg",
    ] {
        assert!(report.join(f).is_file(), "{f} missing");
    }
    keep(&report.join("z2-cifar10.png"));
    // 1202/20 > 10: the plot's x axis is logarithmic; with one finished point it still draws.
    let csv = std::fs::read_to_string(report.join("z2-cifar100.csv")).unwrap();
    assert!(
        csv.starts_with("model.depth,variant,data.name,seeds,"),
        "{csv}"
    );
}

/// blocks.csv of a run: 4 blocks over epochs 0–3, τ = 0.1·epoch, the branch/skip ratio
/// 0.1·(block + 1) after initialization.
fn write_blocks(c: &Cell) {
    let rows: Vec<deepres::train::diagnostics::BlockRow> = (0..=3)
        .flat_map(|e| {
            (0..4).map(move |b| deepres::train::diagnostics::BlockRow {
                epoch: e,
                block: b,
                stage: 1 + 3 * b / 4,
                tau: 0.1 * e as f64,
                branch_to_skip: if e == 0 { 0.0 } else { 0.1 * (b + 1) as f64 },
                h_norm: 1.0,
                weight_norm: 1.0,
                grad_norm: 0.1,
            })
        })
        .collect();
    deepres::train::diagnostics::append(&c.dir(), &rows).unwrap();
}

/// The curves' long CSV of the Z3 fixture: one row per (cell, epoch) run, NaN after divergence.
fn check_long_csv(path: &Path) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let headers: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        headers,
        [
            "epoch",
            "variant",
            "model.depth",
            "seed",
            "train_loss",
            "test_error"
        ]
    );
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3 + 3 + 2);
    let last_bn = rows.iter().rfind(|r| &r[1] == "bn").unwrap();
    assert_eq!((&last_bn[0], &last_bn[2], &last_bn[3]), ("3", "110", "0"));
    assert!((last_bn[5].parse::<f64>().unwrap() - 15.0).abs() < 1e-9);
    let diverged = rows.iter().rfind(|r| &r[1] == "nobn-tau1").unwrap();
    assert!(diverged[4].parse::<f64>().unwrap().is_nan());
}

#[test]
fn curves_write_two_panel_figures_and_the_long_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = tmp.path().join("z3");
    let cells: Vec<Cell> = ["bn", "nobn-tau", "nobn-tau1", "fixup"]
        .iter()
        .enumerate()
        .map(|(i, v)| cell(&sweep, i, v, &[("model.depth", depth(110))], 0))
        .collect();
    write_run(&cells[0], Run::Finished(&[30.0, 20.0, 15.0]));
    write_run(&cells[1], Run::Finished(&[35.0, 25.0, 18.0]));
    write_run(&cells[2], Run::Diverged(&[80.0]));
    // cells[3] (fixup) never ran. The two finished runs have per-block diagnostics.
    for c in &cells[..2] {
        write_blocks(c);
    }
    let spec = ReportSpec {
        kind: ReportKind::Curves,
        title: "Figure Z3".into(),
        rows: None,
        published: None,
    };
    let md = render_with(
        &ctx(
            &sweep,
            "z3",
            spec,
            &["model.depth"],
            &["bn", "nobn-tau", "nobn-tau1", "fixup"],
        ),
        &cells,
    )
    .unwrap()
    .text;
    println!("{md}");
    let report = sweep.join("report");
    for f in plot_files("z3")
        .iter()
        .chain(&["z3.csv".to_string(), "z3.md".to_string()])
    {
        assert!(report.join(f).is_file(), "{f} missing");
    }
    let svg = std::fs::read_to_string(report.join("z3.svg")).unwrap();
    assert!(
        svg.contains("Figure Z3 (model.depth = 110)")
            && svg.contains("train loss")
            && svg.contains("nobn-tau1")
    );
    if plot::font_path().is_some() {
        let png = std::fs::read(report.join("z3.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
    keep(&report.join("z3.png"));
    keep(&report.join("z3.svg"));

    check_long_csv(&report.join("z3.csv"));
    assert_eq!(
        md_row(&md, "bn")[3..],
        ["0.6667", "15.00", "15.00", "finished"]
    );
    assert_eq!(md_row(&md, "nobn-tau1")[6], "diverged at epoch 2");
    assert_eq!(md_row(&md, "fixup")[6], "missing");
    // per-block figures of the runs that have blocks.csv, side by side (one column each)
    let blocks = md_row(&md, "‖τ·f‖/‖skip‖");
    assert_eq!(blocks.len(), 3, "{md}");
    for name in [&cells[0].name, &cells[1].name] {
        for kind in ["ratio", "tau"] {
            let f = report.join(format!("z3-{name}-{kind}.svg"));
            assert!(f.is_file(), "{} missing", f.display());
        }
    }
    let heat =
        std::fs::read_to_string(report.join(format!("z3-{}-ratio.svg", cells[0].name))).unwrap();
    assert!(heat.contains("log10"), "the heatmap names its value");
}

#[test]
fn run_records_tolerate_missing_and_torn_files() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = RunRecord::load(&tmp.path().join("never-ran"));
    assert!(!rec.exists() && rec.status() == RunStatus::Missing && rec.best_test_error().is_none());
    let c = cell(tmp.path(), 0, "bn", &[("model.depth", depth(20))], 0);
    write_run(&c, Run::Running(&[40.0, 30.0]));
    std::fs::remove_file(c.dir().join("summary.json")).unwrap();
    // A torn last line (killed mid-write).
    let mut text = std::fs::read_to_string(c.dir().join("metrics.csv")).unwrap();
    text += "3,0.1,0.5";
    std::fs::write(c.dir().join("metrics.csv"), text).unwrap();
    let rec = RunRecord::load(&c.dir());
    assert_eq!(rec.status(), RunStatus::Running);
    assert_eq!((rec.epochs_done(), rec.epochs_planned()), (2, Some(EPOCHS)));
    assert!((rec.best_test_error().unwrap() - 30.0).abs() < 1e-9);
    assert_eq!(rec.problems.len(), 1, "{:?}", rec.problems);
}

#[test]
fn published_numbers_are_spec_s_numbers() {
    let k = "zhang2022-table1";
    let want = [
        (20, 8.08, 7.89),
        (32, 7.39, 7.16),
        (56, 6.73, 6.18),
        (110, 6.61, 5.83),
        (1202, 6.93, 5.01),
    ];
    for (d, bn, tau) in want {
        assert_eq!(published::lookup(k, "bn", &d.to_string()), Some(bn));
        assert_eq!(published::lookup(k, "bn-tau", &d.to_string()), Some(tau));
    }
    assert_eq!(published::lookup(k, "bn", "44"), None);
    assert_eq!(published::lookup(k, "nobn-tau", "20"), None);
    assert_eq!(published::lookup("nope", "bn", "20"), None);
    assert!(published::is_known(k) && !published::is_known("nope"));
}

#[test]
fn the_tau_paper_grids_report_before_any_run() {
    let tmp = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/zhang2022");
    for file in ["table1.yaml", "table2.yaml", "fig3.yaml"] {
        let set = [format!("out_dir={}", tmp.path().display())];
        let grid = deepres::sweep::Grid::load(&root.join(file), Some("smoke"), &set).unwrap();
        let cells = grid.cells().unwrap();
        let md = deepres::sweep::report::render(&grid, &cells).unwrap().text;
        println!("{md}");
        assert!(md.contains("missing"), "{file}: {md}");
        assert!(
            grid.dir.join("report").read_dir().unwrap().count() > 0,
            "{file}: nothing written"
        );
    }
}
