//! The report layer's drawing primitives: Markdown tables and their CSV, line plots with NaN
//! and inf, log axes and side-by-side panels (the tables and figures of sweeps are in
//! tests/report.rs).
mod common;

use common::plots::{files, keep, plot_files};
use deepres::report::plot::{self, Legend, Panel, PlotSpec, Series};
use deepres::report::table::Table;

#[test]
fn markdown_table_is_aligned_and_csv_round_trips() {
    let mut t = Table::new("T", vec!["a".into(), "long header".into()]);
    t.push(vec!["x".into(), "7.12 ± 0.10 (2)".into()]);
    t.push(vec!["yy, z".into(), "Δ".into()]);
    let md = t.to_markdown();
    let widths: Vec<usize> = md.lines().skip(2).map(|l| l.chars().count()).collect();
    assert!(
        widths.len() == 4 && widths.iter().all(|&w| w == widths[0]),
        "{md}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("t.csv");
    t.write_csv(&p).unwrap();
    let mut r = csv::Reader::from_path(&p).unwrap();
    let rows: Vec<Vec<String>> = r
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    assert_eq!(rows, t.rows);
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "no temporary file left"
    );
}

#[test]
fn line_plot_skips_nan_and_inf() {
    let tmp = tempfile::tempdir().unwrap();
    let series = vec![
        Series::new(
            "overflows",
            vec![
                (1.0, 1.0),
                (2.0, 10.0),
                (3.0, 1e30),
                (4.0, f64::INFINITY),
                (5.0, f64::NAN),
            ],
        ),
        Series::new(
            "gap",
            vec![(1.0, 2.0), (2.0, f64::NAN), (3.0, 3.0), (4.0, 2.5)],
        ),
        Series::new("all nan", vec![(1.0, f64::NAN)]),
        Series::new("empty", vec![]),
    ];
    let spec = PlotSpec::new("NaN and inf", "x", "y").markers(true);
    let written = plot::line_plot(&tmp.path().join("nan"), &spec, &series).unwrap();
    assert_eq!(files(&written), plot_files("nan"));
    keep(written.last().unwrap());
    // Nothing drawable at all still gives a figure.
    let nothing = [Series::new("nothing", vec![(f64::NAN, f64::NAN)])];
    plot::line_plot(
        &tmp.path().join("nothing"),
        &spec.clone().log_y(true),
        &nothing,
    )
    .unwrap();
}

#[test]
fn log_axes_and_panels() {
    let tmp = tempfile::tempdir().unwrap();
    let depths = [9.0, 27.0, 54.0, 100.0, 600.0, 1000.0];
    let series: Vec<Series> = [0.25, 0.5, 1.0]
        .iter()
        .map(|&b: &f64| {
            Series::new(
                format!("β = {b}"),
                depths.iter().map(|&l: &f64| (l, l.powf(1.0 - b))).collect(),
            )
        })
        .chain([Series::new(
            "with zero",
            vec![(0.0, 1.0), (10.0, 0.0), (100.0, 5.0)],
        )])
        .collect();
    let spec = PlotSpec::new("log-log", "L", "ratio")
        .log_x(true)
        .log_y(true)
        .markers(true);
    let svg = plot::svg_string(
        None,
        &[Panel {
            spec: spec.clone(),
            series: series.clone(),
        }],
    )
    .unwrap();
    assert!(svg.contains("\nlog-log\n") && svg.contains("β = 0.25"));
    plot::line_plot(&tmp.path().join("loglog"), &spec, &series).unwrap();
    let panels = [
        Panel {
            spec: spec.clone().legend(Legend::LowerRight),
            series: series.clone(),
        },
        Panel {
            spec: PlotSpec::new("linear", "L", "ratio").log_x(true),
            series,
        },
    ];
    let written = plot::multi_panel(&tmp.path().join("panels"), "two panels", &panels).unwrap();
    assert_eq!(files(&written), plot_files("panels"));
    if plot::font_path().is_some() {
        let png = std::fs::read(&written[1]).unwrap();
        // PNG width (big-endian u32 at offset 16): two panels side by side.
        assert_eq!(
            u32::from_be_bytes(png[16..20].try_into().unwrap()),
            2 * plot::PANEL_SIZE.0
        );
    }
    keep(&tmp.path().join("loglog.png"));
    keep(written.last().unwrap());
}

/// On a machine without any TrueType font (the H200 device machine of 2026-12-04 had none, and
/// M7's run there failed at its heatmap with `FontUnavailable`) a figure command still writes
/// every SVG, line plots and heatmaps alike, and skips the PNGs with a warning: Marion et al.'s
/// Figure 7 at a tiny size (its heatmaps, with a legend, and line plots), with
/// `DEEPRES_FONT=none`. (At this size the figure's acceptance check fails, so the command's
/// exit status says nothing here: its one error line must be that check's.)
#[test]
fn figures_are_written_without_any_font() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m7");
    let run = common::deepres()
        .env("DEEPRES_FONT", "none")
        .args([
            "marion",
            "experiments/marion2022/fig7.yaml",
            "--scale",
            "full",
        ])
        .args(["--device", "cpu", "--out"])
        .arg(&out)
        .args([
            "--set",
            "hursts.points=3",
            "--set",
            "betas.points=4",
            "--set",
            "depth=50",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert!(
        errors.iter().all(|l| l.starts_with("error: Acceptance:")),
        "{stderr}"
    );
    let mut svgs = Vec::new();
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        assert_ne!(
            path.extension().unwrap_or_default(),
            "png",
            "{}",
            path.display()
        );
        if path.extension().unwrap_or_default() == "svg" {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.starts_with("<svg") && text.contains("<text"),
                "{}",
                path.display()
            );
            svgs.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    assert!(
        svgs.iter().any(|s| s == "fig7-forward.svg"),
        "the heatmap is missing: {svgs:?}"
    );
    assert!(stderr.contains("no TrueType font"), "{stderr}");
}
