//! `deepres page` (`make report`): a fake `runs/` tree with small real reports (Markdown tables
//! and SVG figures written by the library, one PNG-only figure, one SVG with an XML prolog),
//! the page it writes checked as text (every SVG inline, nothing loaded from elsewhere, the
//! commands, scales and dates, a paper with nothing run), then opened in headless Chromium
//! (Debian's `chromium`; `make setup` installs it): a screenshot that is a PNG with the plots'
//! colours in it, and every figure laid out with a nonzero size (counted by a script added to a
//! copy of the page, read back with `--dump-dom`). Chromium missing is a failure, not a skip.
mod common;

use deepres::report::page::{inline_svg, iso8601};
use deepres::report::plot::{line_plot, multi_panel, Panel, PlotSpec, Series};
use deepres::report::table::Table;
use std::path::{Path, PathBuf};
use std::process::Command;

fn table_md(title: &str) -> String {
    let mut t = Table::new(title, vec!["depth".into(), "bn".into(), "bn-tau".into()]);
    t.push(vec!["8".into(), "9.12 ± 0.10".into(), "8.75 ± 0.20".into()]);
    t.push(vec![
        "14".into(),
        "8.01 ± 0.11".into(),
        "7.50 ± 0.13".into(),
    ]);
    t.to_markdown()
}

fn series() -> Vec<Series> {
    vec![
        Series::new("bn", vec![(8.0, 9.1), (14.0, 8.0), (20.0, 7.6)]),
        Series::new("bn-tau", vec![(8.0, 8.7), (14.0, 7.5), (20.0, 7.1)]),
    ]
}

/// A 60 × 30 PNG, red, written with the png crate.
fn write_png(path: &Path) {
    let f = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(f), 60, 30);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let data: Vec<u8> = (0..60 * 30).flat_map(|_| [220u8, 30, 30]).collect();
    enc.write_header().unwrap().write_image_data(&data).unwrap();
}

/// The fake runs tree; returns the figure files the page must show.
fn fake_runs(runs: &Path) -> Vec<PathBuf> {
    let spec = PlotSpec::new("best test error", "depth", "error (%)").markers(true);
    // τ paper: a sweep's table report and the stability probe.
    let t1 = runs.join("zhang2022-table1-smoke/report");
    std::fs::create_dir_all(&t1).unwrap();
    let md = format!("## Table Z1: CIFAR-10 test error (%)\n\n{}", table_md(""));
    std::fs::write(t1.join("zhang2022-table1.md"), md).unwrap();
    std::fs::write(
        t1.join("zhang2022-table1.csv"),
        "depth,variant,error\n8,bn,9.1\n",
    )
    .unwrap();
    line_plot(&t1.join("zhang2022-table1"), &spec, &series()).unwrap();
    let st = runs.join("zhang2022-stability-smoke/resnet");
    std::fs::create_dir_all(&st).unwrap();
    std::fs::write(
        st.join("stability.md"),
        table_md("Stability at initialization"),
    )
    .unwrap();
    let panel = |t: &str| Panel {
        spec: PlotSpec::new(t, "L", "ratio").log_x(true).log_y(true),
        series: series(),
    };
    multi_panel(
        &st.join("resnet-bn"),
        "ratios",
        &[panel("forward"), panel("backward")],
    )
    .unwrap();
    // Marion: a figure directory with its README, one SVG with an XML prolog, a PNG-only figure.
    let m1 = runs.join("marion2022/fig1/smoke");
    std::fs::create_dir_all(&m1).unwrap();
    let readme = format!(
        "# Figure M1: relative change at init (M1, scale smoke)\n\n\
         - slope β = 1: -0.02\n\n{}\nwall time: 0.4 s\n",
        table_md("log-log slopes")
    );
    std::fs::write(m1.join("README.md"), readme).unwrap();
    std::fs::write(m1.join("slopes.md"), "**not shown: the README holds it**\n").unwrap();
    let svg = deepres::report::plot::svg_string(Some("M1"), &[panel("M1")]).unwrap();
    let prolog = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE svg PUBLIC \
                  \"-//W3C//DTD SVG 1.1//EN\" \
                  \"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd\">\n";
    std::fs::write(m1.join("fig1.svg"), format!("{prolog}{svg}")).unwrap();
    write_png(&m1.join("paths.png"));
    // A copy of the figure (as Marion's scaling figures write one) is shown once.
    std::fs::copy(m1.join("fig1.svg"), m1.join("forward-iid.svg")).unwrap();
    // An empty figure directory (the limit-model cache, say) is left out.
    std::fs::create_dir_all(runs.join("chizat2025/limits")).unwrap();
    vec![
        t1.join("zhang2022-table1.svg"),
        st.join("resnet-bn.svg"),
        m1.join("fig1.svg"),
        m1.join("paths.png"),
    ]
}

fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

/// The page as text: inline SVGs, no external resource, commands, scales, dates.
fn check_html(html: &str, figures: &[PathBuf]) {
    for f in figures.iter().filter(|f| f.extension().unwrap() == "svg") {
        let svg = inline_svg(&std::fs::read_to_string(f).unwrap()).unwrap();
        assert!(html.contains(&svg), "{}: not inlined", f.display());
        let date = iso8601(std::fs::metadata(f).unwrap().modified().unwrap());
        assert!(
            html.contains(&date[..16]),
            "no date near {date} for {}",
            f.display()
        );
    }
    assert_eq!(count(html, "<svg"), 3, "three SVG figures inline");
    assert_eq!(count(html, "<img"), 1, "the PNG-only figure");
    assert!(html.contains("src=\"data:image/png;base64,iVBORw0KGgo"));
    for bad in [
        "<?xml",
        "<!DOCTYPE svg",
        "src=\"http",
        "<link",
        "<script",
        "@import",
        "url(",
    ] {
        assert!(!html.contains(bad), "the page holds {bad:?}");
    }
    for cmd in [
        "make zhang-table1 SCALE=smoke",
        "make zhang-stability SCALE=smoke",
        "make marion-fig1 SCALE=smoke",
    ] {
        assert!(
            html.contains(&format!("<code>{cmd}</code>")),
            "no command {cmd}"
        );
    }
    assert!(html.contains("Table Z1: CIFAR-10 test error (%) (table1, smoke)"));
    assert!(html.contains("<h3>Figure M1: relative change at init (M1, scale smoke)</h3>"));
    let (t1, st) = (
        html.find("Table Z1").unwrap(),
        html.find("stability (resnet)").unwrap(),
    );
    assert!(t1 < st, "the τ paper's tables come before its probe");
    assert!(
        !html.contains("not shown"),
        "a README stands for the other Markdown files"
    );
    assert_eq!(
        count(html, "<table>"),
        3,
        "one HTML table per Markdown table"
    );
    assert!(html.contains("<td style=\"text-align:right\">9.12 ± 0.10</td>"));
    assert!(html.contains("<li>slope β = 1: -0.02</li>"));
    assert!(html.contains("href=\"zhang2022-table1-smoke/report/zhang2022-table1.csv\""));
    let chizat = &html[html.find("id=\"chizat2025\"").unwrap()..];
    assert!(chizat.contains("Nothing run yet: <code>make chizat SCALE=smoke</code>"));
    assert!(!html[..html.find("id=\"chizat2025\"").unwrap()].contains("Nothing run yet"));
}

/// Debian's chromium (or `$CHROMIUM`); missing is a failure.
fn chromium() -> String {
    let bin = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "tests/page.rs: `{bin}` is not installed; run `make setup` (it installs Debian's chromium)"
    );
    bin
}

/// Runs headless chromium on `page` with `args`; returns stdout.
fn headless(bin: &str, profile: &Path, args: &[String], page: &Path) -> String {
    let out = Command::new("timeout")
        .arg("120")
        .arg(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The screenshot: a PNG, not blank, with the plots' first colour (Tableau blue) in it.
fn check_screenshot(path: &Path) {
    let bytes = std::fs::read(path).expect("no screenshot written");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot is not a PNG"
    );
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1200, 3000));
    let ch = info.color_type.samples();
    let px: Vec<&[u8]> = buf[..info.buffer_size()].chunks(ch).collect();
    let dark = px
        .iter()
        .filter(|p| p[0] < 128 && p[1] < 128 && p[2] < 128)
        .count();
    let blue = px
        .iter()
        .filter(|p| p[0] < 0x40 && (0x60..0x90).contains(&p[1]) && p[2] > 0x98)
        .count();
    assert!(dark > 2000, "the screenshot is blank ({dark} dark pixels)");
    assert!(
        blue > 100,
        "no plot line in the screenshot ({blue} Tableau-blue pixels)"
    );
}

const CHECK: &str = r#"<script>
window.addEventListener('load', () => {
  const sized = e => { const r = e.getBoundingClientRect(); return r.width > 10 && r.height > 10; };
  const svgs = [...document.querySelectorAll('figure svg')];
  const drawn = svgs.filter(s => sized(s) && s.getBBox().width > 10 && s.getBBox().height > 10);
  const imgs = [...document.querySelectorAll('figure img')];
  const loaded = imgs.filter(i => i.complete && i.naturalWidth > 0 && sized(i));
  const p = document.createElement('pre');
  p.id = 'render-check';
  p.textContent = `svg ${drawn.length}/${svgs.length} img ${loaded.length}/${imgs.length}`;
  document.body.appendChild(p);
});
</script>
</body>"#;

#[test]
fn page_inlines_every_figure_and_renders_in_headless_chromium() {
    let bin = chromium();
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let figures = fake_runs(&runs);
    let out = common::run_in(&["page", "--runs", runs.to_str().unwrap()], tmp.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("2 of 3 papers"), "{stdout}");
    let page = runs.join("index.html");
    let html = std::fs::read_to_string(&page).unwrap();
    check_html(&html, &figures);
    let left: Vec<_> = std::fs::read_dir(&runs)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            e.path().is_file().then(|| e.file_name())
        })
        .collect();
    assert_eq!(
        left,
        ["index.html"],
        "a temporary file left beside the page"
    );

    let profile = tmp.path().join("chromium-profile");
    let shot = tmp.path().join("shot.png");
    let args = [
        format!("--screenshot={}", shot.display()),
        "--window-size=1200,3000".to_string(),
    ];
    headless(&bin, &profile, &args, &page);
    check_screenshot(&shot);

    let probe = runs.join("index-check.html");
    std::fs::write(&probe, html.replace("</body>", CHECK)).unwrap();
    let dom = headless(
        &bin,
        &profile,
        &["--dump-dom".into(), "--virtual-time-budget=10000".into()],
        &probe,
    );
    assert!(
        dom.contains("<pre id=\"render-check\">svg 3/3 img 1/1</pre>"),
        "not every figure rendered: {}",
        dom.lines()
            .filter(|l| l.contains("render-check"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn page_of_an_empty_runs_directory_says_nothing_has_run() {
    let tmp = tempfile::tempdir().unwrap();
    let out_path = tmp.path().join("site/index.html");
    let out = common::run_in(
        &[
            "page",
            "--runs",
            "nothing-here",
            "--out",
            out_path.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&out_path).unwrap();
    assert_eq!(count(&html, "Nothing run yet"), 3);
    assert_eq!(count(&html, "<svg"), 0);
}
