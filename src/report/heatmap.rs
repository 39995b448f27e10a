//! Heatmaps (SVG + PNG) of a value over a regular (x, y) grid, with a colour bar and optional
//! overlaid curves (e.g. a measured and a theoretical boundary). Values are clipped to
//! `[vmin, vmax]` and coloured on a diverging blue–white–red scale; non-finite values (overflow)
//! take the colour of `vmax` (+inf, NaN) or `vmin` (−inf), or, where NaN means "no value"
//! ([`NanAs::Missing`]: every run diverged, or none ran yet), NaN is grey and said so under
//! the colour bar.
use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

use super::plot::{
    color, draw_legend_box, font_path, format_tick, warn_no_png, Legend, LegendEntry, LegendStyle,
    TextSafe, FAMILY,
};
use crate::util::atomic::write_atomic_by_path;

/// A heatmap: `values[i][j]` sits at (`xs[j]`, `ys[i]`).
#[derive(Debug, Clone)]
pub struct Heatmap {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub xs: Vec<f64>,
    pub ys: Vec<f64>,
    pub values: Vec<Vec<f64>>,
    pub vmin: f64,
    pub vmax: f64,
    /// Colour-bar label.
    pub value_label: String,
    /// Curves drawn over the map: (legend label, points).
    pub curves: Vec<(String, Vec<(f64, f64)>)>,
    /// What a NaN value means, hence its colour.
    pub nan: NanAs,
}

/// How a NaN value of a [`Heatmap`] is painted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NanAs {
    /// An overflowed metric: the colour of `vmax`, as +∞.
    #[default]
    Overflow,
    /// No value at all (every run of the cell diverged, or none has run yet): grey, with a
    /// note under the colour bar.
    Missing,
}

/// The colour of a [`NanAs::Missing`] cell.
const MISSING: RGBColor = RGBColor(150, 150, 150);

/// Blue (t = 0) → white (t = 1/2) → red (t = 1).
fn diverging(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64, s: f64| (a + (b - a) * s).round() as u8;
    let (blue, white, red) = (
        (59.0, 76.0, 192.0),
        (247.0, 247.0, 247.0),
        (180.0, 4.0, 38.0),
    );
    let (a, b, s) = if t < 0.5 {
        (blue, white, t * 2.0)
    } else {
        (white, red, (t - 0.5) * 2.0)
    };
    RGBColor(lerp(a.0, b.0, s), lerp(a.1, b.1, s), lerp(a.2, b.2, s))
}

impl Heatmap {
    fn colour(&self, v: f64) -> RGBColor {
        if v.is_nan() && self.nan == NanAs::Missing {
            return MISSING;
        }
        let t = if v.is_nan() || v == f64::INFINITY {
            1.0
        } else if v == f64::NEG_INFINITY {
            0.0
        } else {
            (v - self.vmin) / (self.vmax - self.vmin)
        };
        diverging(t)
    }

    fn cell_edges(c: &[f64]) -> (f64, f64) {
        let h = if c.len() > 1 {
            (c[c.len() - 1] - c[0]) / (c.len() - 1) as f64
        } else {
            1.0
        };
        (c[0] - h / 2.0, c[c.len() - 1] + h / 2.0)
    }

    // Long on purpose: plotters' drawing calls for one heatmap (cells, axes, color bar) in the
    // order they are painted.
    #[allow(clippy::too_many_lines)]
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let (w, _) = root.dim_in_pixel();
        let (map, bar) = root.split_horizontally(w.saturating_sub(140));
        let (x0, x1) = Self::cell_edges(&self.xs);
        let (y0, y1) = Self::cell_edges(&self.ys);
        let font = (FAMILY, 18);
        let mut chart = ChartBuilder::on(&map)
            .caption(&self.title, (FAMILY, 22))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .label_style(font)
            .axis_desc_style(font)
            .x_label_formatter(&|v| format_tick(snap(*v)))
            .y_label_formatter(&|v| format_tick(snap(*v)))
            .draw()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let hx = (x1 - x0) / self.xs.len() as f64;
        let hy = (y1 - y0) / self.ys.len() as f64;
        chart
            .draw_series(self.ys.iter().enumerate().flat_map(|(i, &y)| {
                self.xs.iter().enumerate().map(move |(j, &x)| {
                    let v = self.values[i][j];
                    Rectangle::new(
                        [(x - hx / 2.0, y - hy / 2.0), (x + hx / 2.0, y + hy / 2.0)],
                        self.colour(v).filled(),
                    )
                })
            }))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let mut entries = Vec::new();
        for (i, (label, pts)) in self.curves.iter().enumerate() {
            let c = if i == 0 { BLACK } else { color(i + 1) };
            chart
                .draw_series(LineSeries::new(
                    pts.iter().copied().filter(|p| p.1.is_finite()),
                    c.stroke_width(3),
                ))
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            entries.push(LegendEntry {
                label: label.clone(),
                color: c,
                line: true,
                marker: false,
            });
        }
        if !entries.is_empty() {
            let plot = chart.plotting_area().strip_coord_spec();
            let style = LegendStyle {
                family: FAMILY,
                font_size: 18,
                stroke: 3,
            };
            draw_legend_box(&plot, &entries, Legend::UpperLeft, &[], style)?;
        }
        // Colour bar.
        let mut cb = ChartBuilder::on(&bar)
            .margin_top(50)
            .margin_bottom(60)
            .margin_right(10)
            .y_label_area_size(60)
            .caption(&self.value_label, (FAMILY, 15))
            .build_cartesian_2d(0.0..1.0, self.vmin..self.vmax)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        cb.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .label_style(font)
            .y_label_formatter(&|v| format_tick(snap(*v)))
            .draw()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let n = 100;
        let step = (self.vmax - self.vmin) / n as f64;
        cb.draw_series((0..n).map(|k| {
            let v = self.vmin + step * k as f64;
            Rectangle::new(
                [(0.0, v), (1.0, v + step)],
                self.colour(v + step / 2.0).filled(),
            )
        }))
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        if self.nan == NanAs::Missing {
            let (_, h) = bar.dim_in_pixel();
            let y = h as i32 - 30;
            bar.draw(&Rectangle::new([(8, y), (26, y + 16)], MISSING.filled()))
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            bar.draw(&Text::new("no value", (32, y), (FAMILY, 15)))
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
        root.present().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok(())
    }

    /// Writes `<stem>.svg` and, when a font is available, `<stem>.png`.
    pub fn write(&self, stem: &Path) -> Result<Vec<PathBuf>> {
        if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("{}: cannot create", dir.display()))?;
        }
        // Registers the font family our text uses (before any drawing).
        let font = font_path();
        let size = (1000u32, 760u32);
        let svg = stem.with_extension("svg");
        let mut out = vec![];
        write_atomic_by_path(&svg, |tmp| {
            // (TextSafe: the SVG's text is laid out without font data when no font is found)
            let root = TextSafe(SVGBackend::new(tmp, size)).into_drawing_area();
            self.draw(&root).context("cannot draw")?;
            // present() writes the file and reports a failed write (a drop would not).
            root.present().map_err(|e| anyhow::anyhow!("{e:?}"))
        })?;
        out.push(svg);
        let png = stem.with_extension("png");
        if font.is_none() {
            warn_no_png(&png);
        } else {
            write_atomic_by_path(&png, |tmp| {
                let root = BitMapBackend::new(tmp, size).into_drawing_area();
                self.draw(&root).context("cannot draw")?;
                root.present().map_err(|e| anyhow::anyhow!("{e:?}"))
            })?;
            out.push(png);
        }
        Ok(out)
    }
}

/// Rounding noise around zero (−2.2e-16 from the cell edges' arithmetic) shows as 0.
fn snap(v: f64) -> f64 {
    if v.abs() < 1e-12 {
        0.0
    } else {
        v
    }
}
