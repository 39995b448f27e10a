//! Line plots with plotters, written as both `<stem>.svg` and `<stem>.png`.
//!
//! - [`line_plot`]: one panel; [`multi_panel`]: several panels side by side in one image
//!   (e.g. train loss | test error), under a figure title.
//! - Each panel is titled, has labelled axes, a legend (placed in the emptiest corner unless
//!   [`PlotSpec::legend`] says otherwise), optional log-x / log-y axes and optional markers.
//! - Non-finite points (NaN, ±inf) and, on a log axis, points ≤ 0 are skipped; the line is broken
//!   there, so a series that overflows simply stops.
//! - Up to 10 series get distinct colours (the Tableau 10 palette), then colours repeat.
//!
//! Fonts: text in the PNG is rasterized with `ab_glyph` from a TrueType file found at run time
//! ([`font_path`]: `$DEEPRES_FONT` (`none`: SVG only), then DejaVu Sans from Debian's `fonts-dejavu-core` and the
//! usual places of other systems). Without a font the SVG is still written (its text is SVG
//! `<text>`, rendered by the viewer; sizes are estimated) and the PNG is skipped with a one-line
//! warning. Files are written atomically (temporary file, then rename).
use anyhow::{anyhow, Context, Result};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;
use plotters_backend::DrawingBackend as Backend;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::util::atomic::{commit, temp_path, write_atomic};

/// One line: a label for the legend and its (x, y) points, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// The colour as (r, g, b); `None`: the palette's colour for the series' position.
    pub rgb: Option<(u8, u8, u8)>,
    /// Points only (a scatter plot), no line.
    pub scatter: bool,
    /// Leave the series out of the legend (e.g. one line per layer, explained by the title).
    pub unlabelled: bool,
}

impl Series {
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series {
            label: label.into(),
            points,
            rgb: None,
            scatter: false,
            unlabelled: false,
        }
    }
    pub fn rgb(mut self, rgb: (u8, u8, u8)) -> Series {
        self.rgb = Some(rgb);
        self
    }
    pub fn scatter(mut self) -> Series {
        self.scatter = true;
        self
    }
    pub fn unlabelled(mut self) -> Series {
        self.unlabelled = true;
        self
    }
}

/// A colour along viridis-like ramp (t in [0, 1]: dark blue → green → yellow), e.g. the layer
/// index ℓ/L of one line per layer.
pub fn ramp(t: f64) -> (u8, u8, u8) {
    const STOPS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * f).round() as u8;
    (mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Where the legend goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Legend {
    /// The corner of the plotting area that hides the fewest points.
    #[default]
    Auto,
    UpperRight,
    UpperLeft,
    LowerRight,
    LowerLeft,
    /// No legend.
    Hidden,
}

/// Title, axis labels and axis kinds of one panel.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlotSpec {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub log_y: bool,
    /// Draw a circle at every point.
    pub markers: bool,
    pub legend: Legend,
}

impl PlotSpec {
    /// Linear axes, no markers, automatic legend.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> PlotSpec {
        PlotSpec {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            ..Default::default()
        }
    }
    pub fn log_x(mut self, on: bool) -> PlotSpec {
        self.log_x = on;
        self
    }
    pub fn log_y(mut self, on: bool) -> PlotSpec {
        self.log_y = on;
        self
    }
    pub fn markers(mut self, on: bool) -> PlotSpec {
        self.markers = on;
        self
    }
    pub fn legend(mut self, legend: Legend) -> PlotSpec {
        self.legend = legend;
        self
    }
}

/// One panel of a [`multi_panel`] figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub spec: PlotSpec,
    pub series: Vec<Series>,
}

/// Size of one panel in pixels (PNG) or user units (SVG).
pub const PANEL_SIZE: (u32, u32) = (800, 520);
/// Height of the figure title band of [`multi_panel`].
const TITLE_BAND: u32 = 44;
/// The font family our text uses; the font file is registered under this name.
const FAMILY: &str = "sans-serif";

/// The Tableau 10 palette.
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// The colour of series `i`.
pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Font files tried, in order, after `$DEEPRES_FONT`.
pub const FONT_CANDIDATES: [&str; 7] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", // Debian/Ubuntu: fonts-dejavu-core
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",          // Fedora: dejavu-sans-fonts (older)
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf", // Fedora
    "/usr/share/fonts/TTF/DejaVuSans.ttf",             // Arch: ttf-dejavu
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
];

/// The font file used for PNG text, if one was found and loaded (looked up once per process).
pub fn font_path() -> Option<&'static Path> {
    static FONT: OnceLock<Option<PathBuf>> = OnceLock::new();
    FONT.get_or_init(|| {
        let env = std::env::var_os("DEEPRES_FONT").map(PathBuf::from);
        if env
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty() || p.as_os_str() == "none")
        {
            return None; // DEEPRES_FONT=none: SVG only
        }
        let candidates = env
            .into_iter()
            .chain(FONT_CANDIDATES.iter().map(PathBuf::from));
        for path in candidates {
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).is_ok() {
                // Bold text falls back to the regular face when no bold file sits next to it.
                let bold = path.with_file_name(
                    path.file_stem()
                        .map(|s| format!("{}-Bold.ttf", s.to_string_lossy()))
                        .unwrap_or_default(),
                );
                if let Ok(b) = std::fs::read(bold) {
                    let _ = plotters::style::register_font(
                        FAMILY,
                        FontStyle::Bold,
                        Box::leak(b.into_boxed_slice()),
                    );
                }
                return Some(path);
            }
        }
        None
    })
    .as_deref()
}

/// One panel: `<stem>.svg` and `<stem>.png` (the PNG only when a font is available).
/// Returns the files written.
pub fn line_plot(stem: &Path, spec: &PlotSpec, series: &[Series]) -> Result<Vec<PathBuf>> {
    let panel = Panel {
        spec: spec.clone(),
        series: series.to_vec(),
    };
    write_figure(stem, None, std::slice::from_ref(&panel))
}

/// Several panels side by side (one row) under the figure title `title`; each panel keeps its
/// own title, axes and legend. Returns the files written (`<stem>.svg`, `<stem>.png`).
pub fn multi_panel(stem: &Path, title: &str, panels: &[Panel]) -> Result<Vec<PathBuf>> {
    write_figure(stem, Some(title), panels)
}

/// The SVG document of a figure, as a string (no file written).
pub fn svg_string(title: Option<&str>, panels: &[Panel]) -> Result<String> {
    font_path();
    render_svg(title, panels, FAMILY)
}

fn write_figure(stem: &Path, title: Option<&str>, panels: &[Panel]) -> Result<Vec<PathBuf>> {
    if panels.is_empty() {
        return Err(anyhow!(
            "{}: a figure needs at least one panel",
            stem.display()
        ));
    }
    if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the directory", dir.display()))?;
    }
    let font = font_path();
    let mut written = Vec::new();

    let svg_path = with_ext(stem, "svg");
    let svg = render_svg(title, panels, FAMILY)
        .with_context(|| format!("{}: cannot draw", svg_path.display()))?;
    write_atomic(&svg_path, svg)?;
    written.push(svg_path);

    let png_path = with_ext(stem, "png");
    if font.is_none() {
        eprintln!(
            "warning: no TrueType font found (set DEEPRES_FONT or install fonts-dejavu-core); skipping {}",
            png_path.display()
        );
        return Ok(written);
    }
    let tmp = temp_path(&png_path);
    let drawn = (|| -> Result<()> {
        let size = figure_size(title.is_some(), panels.len());
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        draw_figure(&root, title, panels, FAMILY)?;
        root.present().map_err(plot_err)?;
        Ok(())
    })();
    if let Err(e) = drawn {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context(format!("{}: cannot draw", png_path.display())));
    }
    commit(&tmp, &png_path)?;
    written.push(png_path);
    Ok(written)
}

/// `<stem>.<ext>` (the stem may itself contain dots, e.g. `tau-0.5`).
fn with_ext(stem: &Path, ext: &str) -> PathBuf {
    let mut s = stem.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

fn figure_size(titled: bool, n: usize) -> (u32, u32) {
    (
        PANEL_SIZE.0 * n as u32,
        PANEL_SIZE.1 + if titled { TITLE_BAND } else { 0 },
    )
}

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("plotting: {e}")
}

fn render_svg(title: Option<&str>, panels: &[Panel], family: &str) -> Result<String> {
    let mut buf = String::new();
    {
        let backend = TextSafe(SVGBackend::with_string(
            &mut buf,
            figure_size(title.is_some(), panels.len()),
        ));
        let root = backend.into_drawing_area();
        draw_figure(&root, title, panels, family)?;
        root.present().map_err(plot_err)?;
    }
    Ok(buf)
}

fn draw_figure<DB: Backend>(
    root: &DrawingArea<DB, Shift>,
    title: Option<&str>,
    panels: &[Panel],
    family: &str,
) -> Result<()> {
    root.fill(&WHITE).map_err(plot_err)?;
    let body = match title {
        Some(t) => {
            let (band, body) = root.split_vertically(TITLE_BAND);
            let (w, h) = band.dim_in_pixel();
            let style =
                TextStyle::from((family, 26).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
            band.draw(&Text::new(
                t.to_string(),
                (w as i32 / 2, h as i32 / 2 + 4),
                style,
            ))
            .map_err(plot_err)?;
            body
        }
        None => root.clone(),
    };
    let areas = body.split_evenly((1, panels.len()));
    for (area, panel) in areas.iter().zip(panels) {
        draw_panel(area, panel, family)?;
    }
    Ok(())
}

/// The points of a series split at the points an axis cannot show, so the line breaks there.
fn segments(points: &[(f64, f64)], log_x: bool, log_y: bool) -> Vec<Vec<(f64, f64)>> {
    let ok = |&(x, y): &(f64, f64)| {
        x.is_finite() && y.is_finite() && (!log_x || x > 0.0) && (!log_y || y > 0.0)
    };
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for p in points {
        if ok(p) {
            cur.push(*p);
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The axis range of the drawable values, padded a little.
fn axis_range(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if log {
        if !(lo.is_finite() && hi.is_finite()) {
            return (1.0, 10.0);
        }
        if hi / lo < 1.0001 {
            return (lo / 2.0, hi * 2.0);
        }
        let pad = (hi / lo).powf(0.04);
        (lo / pad, hi * pad)
    } else {
        if !(lo.is_finite() && hi.is_finite()) {
            return (0.0, 1.0);
        }
        if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
            let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
            return (lo - d, hi + d);
        }
        let pad = (hi - lo) * 0.04;
        (lo - pad, hi + pad)
    }
}

fn draw_panel<DB: Backend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    family: &str,
) -> Result<()> {
    let spec = &panel.spec;
    let segs: Vec<Vec<Vec<(f64, f64)>>> = panel
        .series
        .iter()
        .map(|s| segments(&s.points, spec.log_x, spec.log_y))
        .collect();
    let all = || segs.iter().flatten().flatten();
    let (x0, x1) = axis_range(all().map(|p| p.0), spec.log_x);
    let (y0, y1) = axis_range(all().map(|p| p.1), spec.log_y);
    // Integer x data (epochs, depths): ticks at integers only.
    let integer_x = all().next().is_some() && all().all(|p| p.0.fract() == 0.0);
    let x = Axis::new(x0, x1, spec.log_x, integer_x);
    let y = Axis::new(y0, y1, spec.log_y, false);
    draw_in(area, panel, &segs, x, y, family)
}

/// Tick labels: plain decimals for moderate magnitudes, `1e5` style otherwise.
pub fn format_tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        let s = format!("{v:.1e}");
        return s.replace(".0e", "e");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// A linear or logarithmic axis over `lo..hi` with readable ticks: on a log axis, 1-2-5 (or all
/// of 1..9) times powers of ten when few decades are shown, powers of ten otherwise.
#[derive(Clone)]
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    integer: bool,
    linear: RangedCoordf64,
}

impl Axis {
    fn new(lo: f64, hi: f64, log: bool, integer: bool) -> Axis {
        Axis {
            lo,
            hi,
            log,
            integer,
            linear: (lo..hi).into(),
        }
    }

    fn linear_ticks<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        let mut pts = self.linear.key_points(hint);
        // plotters accumulates the step, so 0 can come out as −1.1e-16: snap to the step.
        if let [a, b, ..] = pts[..] {
            let step = b - a;
            for v in &mut pts {
                *v = (*v / step).round() * step;
            }
        }
        if self.integer {
            let ints: Vec<f64> = pts.iter().copied().filter(|v| v.fract() == 0.0).collect();
            if ints.len() >= 2 {
                return ints;
            }
        }
        pts
    }
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let t = if self.log {
            (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        let t = if t.is_finite() {
            t.clamp(-10.0, 10.0)
        } else {
            0.5
        };
        limit.0 + ((limit.1 - limit.0) as f64 * t).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if !self.log {
            return self.linear_ticks(hint);
        }
        let max = hint.max_num_points().max(2);
        let (k0, k1) = (
            self.lo.log10().floor() as i32,
            self.hi.log10().ceil() as i32,
        );
        let inside = |v: &f64| *v >= self.lo && *v <= self.hi;
        let all: [&[f64]; 4] = [
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
            &[1.0, 2.0, 5.0],
            &[1.0, 3.0],
            &[1.0],
        ];
        for mantissas in all {
            let pts: Vec<f64> = (k0..=k1)
                .flat_map(|k| mantissas.iter().map(move |m| m * 10f64.powi(k)))
                .filter(inside)
                .collect();
            if pts.len() < 2 && mantissas.len() == 9 {
                // Less than a step of the finest set: plain linear ticks.
                return self.linear_ticks(hint);
            }
            if pts.len() <= max {
                return pts;
            }
        }
        // Many decades: every `step`-th power of ten.
        let step = ((k1 - k0 + 1) as usize).div_ceil(max).max(1);
        (k0..=k1)
            .step_by(step)
            .map(|k| 10f64.powi(k))
            .filter(inside)
            .collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

fn draw_in<DB: Backend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    segs: &[Vec<Vec<(f64, f64)>>],
    x: Axis,
    y: Axis,
    family: &str,
) -> Result<()> {
    let spec = &panel.spec;
    let mut chart = ChartBuilder::on(area)
        .caption(&spec.title, (family, 20).into_font())
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x, y)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc(spec.x_label.as_str())
        .y_desc(spec.y_label.as_str())
        .axis_desc_style((family, 16))
        .label_style((family, 13))
        .x_label_formatter(&|v| format_tick(*v))
        .y_label_formatter(&|v| format_tick(*v))
        .light_line_style(RGBColor(246, 246, 246))
        .bold_line_style(RGBColor(220, 220, 220))
        .draw()
        .map_err(plot_err)?;
    let series_color = |i: usize| match panel.series[i].rgb {
        Some((r, g, b)) => RGBColor(r, g, b),
        None => color(i),
    };
    for (i, series) in segs.iter().enumerate() {
        let c = series_color(i);
        let scatter = panel.series[i].scatter;
        for seg in series {
            if !scatter {
                // A thin line for dense series: plotters joins thick lines with unlimited
                // miters, which shoot far out of the panel at the sharp turns of a rough path.
                let width = if seg.len() > 100 { 1 } else { 2 };
                chart
                    .draw_series(LineSeries::new(seg.iter().copied(), c.stroke_width(width)))
                    .map_err(plot_err)?;
            }
            if spec.markers || scatter || seg.len() == 1 {
                chart
                    .draw_series(seg.iter().map(|&p| Circle::new(p, 3, c.filled())))
                    .map_err(plot_err)?;
            }
        }
    }
    let labelled: Vec<usize> = (0..panel.series.len())
        .filter(|&i| !panel.series[i].unlabelled)
        .collect();
    if spec.legend == Legend::Hidden || labelled.is_empty() {
        return Ok(());
    }
    // The legend, drawn by hand so that it needs no font metrics (SVG without a font file).
    let pts: Vec<(i32, i32)> = segs
        .iter()
        .flatten()
        .flatten()
        .map(|p| chart.backend_coord(p))
        .collect();
    let plot = chart.plotting_area().strip_coord_spec();
    let (ox, oy) = plot.get_base_pixel();
    let (pw, ph) = plot.dim_in_pixel();
    let text = TextStyle::from((family, 14).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let line_h = 20;
    let text_w = labelled
        .iter()
        .map(|&i| &panel.series[i])
        .map(|s| {
            plot.estimate_text_size(&s.label, &text)
                .map(|d| d.0)
                .unwrap_or(0)
        })
        .max()
        .unwrap_or(0) as i32;
    let (bw, bh) = (text_w + 44, line_h * labelled.len() as i32 + 10);
    let inset = 8;
    let corners = [
        (Legend::UpperRight, (pw as i32 - bw - inset, inset)),
        (Legend::UpperLeft, (inset, inset)),
        (
            Legend::LowerRight,
            (pw as i32 - bw - inset, ph as i32 - bh - inset),
        ),
        (Legend::LowerLeft, (inset, ph as i32 - bh - inset)),
    ];
    let hidden = |&(cx, cy): &(i32, i32)| {
        pts.iter()
            .filter(|&&(px, py)| {
                let (px, py) = (px - ox, py - oy);
                px >= cx && px <= cx + bw && py >= cy && py <= cy + bh
            })
            .count()
    };
    let (bx, by) = match spec.legend {
        Legend::Auto => corners
            .iter()
            .min_by_key(|(_, c)| hidden(c))
            .map(|(_, c)| *c)
            .unwrap_or(corners[0].1),
        want => corners
            .iter()
            .find(|(l, _)| *l == want)
            .map(|(_, c)| *c)
            .unwrap_or(corners[0].1),
    };
    plot.draw(&Rectangle::new(
        [(bx, by), (bx + bw, by + bh)],
        WHITE.mix(0.85).filled(),
    ))
    .map_err(plot_err)?;
    plot.draw(&Rectangle::new(
        [(bx, by), (bx + bw, by + bh)],
        BLACK.mix(0.5).stroke_width(1),
    ))
    .map_err(plot_err)?;
    for (row, &i) in labelled.iter().enumerate() {
        let s = &panel.series[i];
        let c = series_color(i);
        let yy = by + 5 + line_h * row as i32 + line_h / 2;
        if !s.scatter {
            plot.draw(&PathElement::new(
                vec![(bx + 8, yy), (bx + 32, yy)],
                c.stroke_width(2),
            ))
            .map_err(plot_err)?;
        }
        if spec.markers || s.scatter {
            plot.draw(&Circle::new((bx + 20, yy), 3, c.filled()))
                .map_err(plot_err)?;
        }
        plot.draw(&Text::new(s.label.clone(), (bx + 38, yy), text.clone()))
            .map_err(plot_err)?;
    }
    Ok(())
}

use text_safe::TextSafe;

mod text_safe {
    use plotters_backend::{
        BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend as Backend,
        DrawingErrorKind,
    };

    /// A backend wrapper whose text-size estimate works without font data: it asks the font and,
    /// when none is registered, estimates from the character count (average glyph ≈ 0.55 em).
    /// Used for SVG, where the viewer renders the text.
    pub(super) struct TextSafe<B>(pub(super) B);

    impl<B: Backend> Backend for TextSafe<B> {
        type ErrorType = B::ErrorType;

        fn get_size(&self) -> (u32, u32) {
            self.0.get_size()
        }
        fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            self.0.ensure_prepared()
        }
        fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            self.0.present()
        }
        fn draw_pixel(
            &mut self,
            p: BackendCoord,
            c: BackendColor,
        ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            self.0.draw_pixel(p, c)
        }
        fn draw_line<S: BackendStyle>(
            &mut self,
            from: BackendCoord,
            to: BackendCoord,
            style: &S,
        ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            self.0.draw_line(from, to, style)
        }
        fn draw_rect<S: BackendStyle>(
            &mut self,
            a: BackendCoord,
            b: BackendCoord,
            style: &S,
            fill: bool,
        ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            self.0.draw_rect(a, b, style, fill)
        }
        fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
            &mut self,
            path: I,
            style: &S,
        ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            self.0.draw_path(path, style)
        }
        fn draw_circle<S: BackendStyle>(
            &mut self,
            center: BackendCoord,
            radius: u32,
            style: &S,
            fill: bool,
        ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            self.0.draw_circle(center, radius, style, fill)
        }
        fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
            &mut self,
            vert: I,
            style: &S,
        ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            self.0.fill_polygon(vert, style)
        }
        fn draw_text<T: BackendTextStyle>(
            &mut self,
            text: &str,
            style: &T,
            pos: BackendCoord,
        ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            self.0.draw_text(text, style, pos)
        }
        fn estimate_text_size<T: BackendTextStyle>(
            &self,
            text: &str,
            style: &T,
        ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
            match style.layout_box(text) {
                Ok(((x0, y0), (x1, y1))) => Ok(((x1 - x0) as u32, (y1 - y0) as u32)),
                Err(_) => {
                    let em = style.size() / 1.24;
                    Ok((
                        (text.chars().count() as f64 * 0.55 * em).ceil() as u32,
                        em.ceil() as u32,
                    ))
                }
            }
        }
        fn blit_bitmap(
            &mut self,
            pos: BackendCoord,
            size: (u32, u32),
            src: &[u8],
        ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            self.0.blit_bitmap(pos, size, src)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_needs_no_font() {
        let panel = Panel {
            spec: PlotSpec::new("no font", "x", "y").log_y(true).markers(true),
            series: vec![Series::new(
                "a",
                vec![(1.0, 1.0), (2.0, 10.0), (3.0, f64::INFINITY)],
            )],
        };
        // A family nobody registered: every font lookup fails, as on a machine without fonts.
        let svg = render_svg(Some("title"), &[panel], "no-such-font-family").unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("\nno font\n") && svg.contains("\na\n"),
            "{svg}"
        );
    }

    #[test]
    fn ticks() {
        assert_eq!(format_tick(0.25), "0.25");
        assert_eq!(format_tick(100.0), "100");
        assert_eq!(format_tick(1e6), "1e6");
        assert_eq!(format_tick(0.0), "0");
    }
}
