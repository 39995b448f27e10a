//! A scale's `expect:` list judged on fixture runs (no training): each claim's check is computed
//! by hand here from the fixture's numbers, and a run that does not show the claim fails it.
mod common;

use common::fixture_runs::{cell, ctx, depth, write_run, Run};
use deepres::report::acceptance::{Acceptance, FILE};
use deepres::sweep::grid::{Cell, CurveMetric, Expectation, ReportKind, ReportSpec};
use deepres::sweep::report::render_with;
use std::path::Path;

fn table_spec() -> ReportSpec {
    ReportSpec {
        kind: ReportKind::Table,
        title: "T".into(),
        rows: Some("model.depth".into()),
        published: None,
    }
}

/// Variants × depths 8, 20 × seeds, in the grid's order.
fn grid_cells(sweep: &Path, variants: &[&str], seeds: &[u64]) -> Vec<Cell> {
    let mut cells = Vec::new();
    for v in variants {
        for d in [8, 20] {
            for &s in seeds {
                let i = cells.len();
                cells.push(cell(sweep, i, v, &[("model.depth", depth(d))], s));
            }
        }
    }
    cells
}

fn find<'a>(cells: &'a [Cell], v: &str, d: i64, s: u64) -> &'a Cell {
    cells
        .iter()
        .find(|c| c.variant.as_deref() == Some(v) && c.config.model.depth == d && c.seed == s)
        .unwrap()
}

fn judge(
    sweep: &Path,
    variants: &[&str],
    cells: &[Cell],
    expect: Vec<Expectation>,
) -> (String, Acceptance) {
    let mut c = ctx(sweep, "t", table_spec(), &["model.depth"], variants);
    c.scale = Some("smoke".into());
    c.expect = expect;
    let out = render_with(&c, cells).unwrap();
    (out.text, out.acceptance)
}

fn last_line(text: &str) -> &str {
    text.trim_end().lines().last().unwrap()
}

// Long on purpose: one trained grid, then each rule of `expect:` against it in turn.
#[test]
fn trains_and_worst_pass_and_fail_on_the_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = tmp.path().join("z2");
    let vs = ["tau1", "tau-fixed", "fixup"];
    let cells = grid_cells(&sweep, &vs, &[0]);
    // Best errors (the minimum over epochs): tau-fixed 12 and 9, fixup 14 and 13.5;
    // tau1 trains at depth 8 (20) and diverges at depth 20.
    write_run(
        find(&cells, "tau1", 8, 0),
        Run::Finished(&[30.0, 20.0, 25.0]),
    );
    write_run(find(&cells, "tau1", 20, 0), Run::Diverged(&[]));
    write_run(
        find(&cells, "tau-fixed", 8, 0),
        Run::Finished(&[20.0, 12.0, 12.5]),
    );
    write_run(
        find(&cells, "tau-fixed", 20, 0),
        Run::Finished(&[20.0, 10.0, 9.0]),
    );
    write_run(
        find(&cells, "fixup", 8, 0),
        Run::Finished(&[20.0, 14.0, 15.0]),
    );
    write_run(
        find(&cells, "fixup", 20, 0),
        Run::Finished(&[20.0, 13.5, 13.5]),
    );
    let trains = |below: f64| Expectation::Trains {
        variants: vec!["tau-fixed".into(), "fixup".into()],
        below,
    };
    let worst = Expectation::Worst {
        variant: "tau1".into(),
    };
    let (text, acc) = judge(&sweep, &vs, &cells, vec![trains(15.0), worst.clone()]);
    println!("{text}");
    assert_eq!(acc.checks.len(), 2);
    // The highest best error of the two variants: fixup at depth 8, 14.
    assert!(
        (acc.checks[0].value - 14.0).abs() < 1e-9,
        "{:?}",
        acc.checks[0]
    );
    // At depth 20 tau1 diverged (100) and the next worst is fixup's 13.5.
    assert!(
        (acc.checks[1].value - 86.5).abs() < 1e-9,
        "{:?}",
        acc.checks[1]
    );
    assert_eq!(last_line(&text), "Acceptance: all 2 checks pass");
    assert!(
        text.contains("Expected result (scale smoke): the checks below"),
        "{text}"
    );
    let csv = std::fs::read_to_string(sweep.join("report").join(FILE)).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    let readme = std::fs::read_to_string(sweep.join("report/README.md")).unwrap();
    assert_eq!(readme, text);

    // A stricter bound fails on fixup's 14, and the verdict names the check.
    let (text, acc) = judge(&sweep, &vs, &cells, vec![trains(13.9), worst.clone()]);
    assert!(!acc.passed());
    assert!(
        last_line(&text).starts_with("Acceptance: FAILED 1 of 2 checks: tau-fixed, fixup train"),
        "{text}"
    );

    // tau1 no longer the worst when it trains at depth 20 to 11 %: 11 − 13.5 < 0.
    write_run(
        find(&cells, "tau1", 20, 0),
        Run::Finished(&[30.0, 11.0, 11.0]),
    );
    let (_, acc) = judge(&sweep, &vs, &cells, vec![worst]);
    assert!(
        (acc.checks[0].value + 2.5).abs() < 1e-9,
        "{:?}",
        acc.checks[0]
    );
    assert!(!acc.passed());
}

#[test]
fn a_sweep_not_finished_is_not_judged() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = tmp.path().join("z1");
    let vs = ["bn", "bn-tau"];
    let cells = grid_cells(&sweep, &vs, &[0]);
    for c in &cells[..3] {
        write_run(c, Run::Finished(&[20.0, 10.0, 9.0]));
    }
    // A verdict of an earlier report must go.
    std::fs::create_dir_all(sweep.join("report")).unwrap();
    std::fs::write(sweep.join("report").join(FILE), "stale").unwrap();
    let trains = Expectation::Trains {
        variants: vec!["bn".into(), "bn-tau".into()],
        below: 15.0,
    };
    let (text, acc) = judge(&sweep, &vs, &cells, vec![trains]);
    assert!(acc.checks.is_empty() && acc.passed());
    assert_eq!(
        last_line(&text),
        "Acceptance: not judged yet: 1 of 4 cells have not finished (run the sweep, then the report)"
    );
    assert!(!sweep.join("report").join(FILE).exists());
}

#[test]
fn compare_pairs_rows_and_seeds_and_says_what_the_interval_says() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = tmp.path().join("z1");
    let vs = ["bn", "bn-tau"];
    let cells = grid_cells(&sweep, &vs, &[0, 1]);
    // bn: best errors 10, 11 (depth 8, seeds 0, 1), 8, 9 (depth 20);
    // bn-tau: 9.5, 11.5, 7.0, 8.6: differences −0.5, +0.5, −1.0, −0.4.
    let errs = [
        ("bn", 8, 0, 10.0),
        ("bn", 8, 1, 11.0),
        ("bn", 20, 0, 8.0),
        ("bn", 20, 1, 9.0),
        ("bn-tau", 8, 0, 9.5),
        ("bn-tau", 8, 1, 11.5),
        ("bn-tau", 20, 0, 7.0),
        ("bn-tau", 20, 1, 8.6),
    ];
    for (v, d, s, e) in errs {
        write_run(find(&cells, v, d, s), Run::Finished(&[30.0, e, e + 1.0]));
    }
    let compare = Expectation::Compare {
        variant: "bn-tau".into(),
        than: "bn".into(),
    };
    let trains = Expectation::Trains {
        variants: vec!["bn".into(), "bn-tau".into()],
        below: 15.0,
    };
    let (text, acc) = judge(&sweep, &vs, &cells, vec![trains, compare.clone()]);
    println!("{text}");
    // Said, not checked: one check (trains), one measured line.
    assert_eq!(acc.checks.len(), 1);
    assert_eq!(last_line(&text), "Acceptance: all 1 checks pass");
    // d = (−0.5, 0.5, −1.0, −0.4): mean −0.35, sd 0.6245, t_{0.975,3} = 3.182446:
    // −0.35 ± 3.182446·0.6245/2 = [−1.34, +0.64], which holds 0.
    let d = [-0.5f64, 0.5, -1.0, -0.4];
    let mean = d.iter().sum::<f64>() / 4.0;
    let sd = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 3.0).sqrt();
    let half = 3.182446 * sd / 2.0;
    let want = format!(
        "- measured: best test error bn-tau − bn (points, paired by row × seed): mean {mean:+.2}, 95 % CI [{:+.2}, {:+.2}] over 4 pairs: no clear difference",
        mean - half,
        mean + half
    );
    assert!(text.contains(&want), "{want}\n{text}");

    // bn-tau clearly worse everywhere (+2, +2.5, +2, +1.5): the interval is above 0.
    for (v, d, s, e) in [
        ("bn-tau", 8, 0, 12.0),
        ("bn-tau", 8, 1, 13.5),
        ("bn-tau", 20, 0, 10.0),
        ("bn-tau", 20, 1, 10.5),
    ] {
        write_run(find(&cells, v, d, s), Run::Finished(&[30.0, e, e + 1.0]));
    }
    let (text, acc) = judge(&sweep, &vs, &cells, vec![compare]);
    assert!(acc.checks.is_empty() && acc.passed());
    assert!(
        text.contains("mean +2.00") && text.contains(": bn-tau worse"),
        "{text}"
    );
}

#[test]
fn falls_reads_every_curve_and_a_diverged_run_fails_it() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = tmp.path().join("z3");
    let vs = ["bn", "nobn-tau"];
    let cells: Vec<Cell> = vs
        .iter()
        .enumerate()
        .map(|(i, v)| cell(&sweep, i, v, &[("model.depth", depth(20))], 0))
        .collect();
    // Test errors 30 → 12 and 40 → 20 (ratios 0.4 and 0.5); the fixture's train loss is
    // 2/epoch, so its ratio is 1/3 in both.
    write_run(&cells[0], Run::Finished(&[30.0, 15.0, 12.0]));
    write_run(&cells[1], Run::Finished(&[40.0, 25.0, 20.0]));
    let spec = ReportSpec {
        kind: ReportKind::Curves,
        title: "F".into(),
        rows: None,
        published: None,
    };
    let mut c = ctx(&sweep, "f", spec, &["model.depth"], &vs);
    c.expect = vec![Expectation::Falls {
        metrics: vec![CurveMetric::TrainLoss, CurveMetric::TestError],
        ratio: 0.9,
    }];
    let out = render_with(&c, &cells).unwrap();
    println!("{}", out.text);
    let checks = &out.acceptance.checks;
    assert!(
        (checks[0].value - 1.0 / 3.0).abs() < 1e-9,
        "{:?}",
        checks[0]
    );
    assert!((checks[1].value - 0.5).abs() < 1e-9, "{:?}", checks[1]);
    assert!(checks[1].name.contains("nobn-tau"), "{}", checks[1].name);
    assert!(out.acceptance.passed());

    // A curve that rises (test error 30 → 33) and a diverged run each fail it.
    write_run(&cells[0], Run::Finished(&[30.0, 28.0, 33.0]));
    let out = render_with(&c, &cells).unwrap();
    assert!((out.acceptance.checks[1].value - 1.1).abs() < 1e-9);
    assert!(!out.acceptance.passed());
    std::fs::remove_dir_all(cells[1].dir()).unwrap();
    write_run(&cells[1], Run::Diverged(&[40.0]));
    let out = render_with(&c, &cells).unwrap();
    assert!(out.acceptance.checks[0].value.is_infinite());
}

#[test]
fn the_grid_file_names_unknown_variants_in_expect() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("g.yaml");
    std::fs::write(
        &path,
        "variants: {a: {model.depth: 8}, b: {model.depth: 14}}\nscales:\n  smoke:\n    expect:\n      - trains: {variants: [a, c], below: 15}\n",
    )
    .unwrap();
    let err = deepres::sweep::Grid::load(&path, Some("smoke"), &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "scales.smoke.expect: `c` is not a variant of this scale (its variants: a, b)"
        ),
        "{err}"
    );
    std::fs::write(
        &path,
        "variants: {a: {model.depth: 8}}\nscales:\n  smoke:\n    expect:\n      - trains: {variant: [a], below: 15}\n",
    )
    .unwrap();
    let err = deepres::sweep::Grid::load(&path, Some("smoke"), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown") && err.contains("variant"), "{err}");
    println!("{err}");
}
