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
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;
use plotters_backend::DrawingBackend as Backend;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::util::atomic::{write_atomic, write_atomic_by_path};

mod axis;
mod panel;
mod text_safe;

pub use axis::format_tick;
use panel::draw_panel;
pub(crate) use panel::{draw_legend_box, LegendEntry, LegendStyle};
pub(crate) use text_safe::TextSafe;

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
pub(crate) const FAMILY: &str = "sans-serif";

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
        warn_no_png(&png_path);
        return Ok(written);
    }
    write_atomic_by_path(&png_path, |tmp| {
        let size = figure_size(title.is_some(), panels.len());
        let root = BitMapBackend::new(tmp, size).into_drawing_area();
        draw_figure(&root, title, panels, FAMILY)?;
        root.present().map_err(plot_err)?;
        Ok(())
    })?;
    written.push(png_path);
    Ok(written)
}

/// The one-line warning of a PNG skipped for want of a font (its SVG is written).
pub(crate) fn warn_no_png(png: &Path) {
    eprintln!(
        "warning: no TrueType font found (set DEEPRES_FONT or install fonts-dejavu-core); skipping {}",
        png.display()
    );
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
