//! One panel: its axes fitted to the drawable points, the mesh, the series, and a legend
//! drawn by hand in the emptiest corner (or the one asked for).
use anyhow::Result;
use plotters::coord::cartesian::Cartesian2d;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters_backend::DrawingBackend as Backend;

use super::axis::{axis_range, segments, Axis};
use super::{color, format_tick, plot_err, Legend, Panel};

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<Axis, Axis>>;

pub(super) fn draw_panel<DB: Backend>(
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
    draw_series(&mut chart, panel, segs)?;
    let labelled: Vec<usize> = (0..panel.series.len())
        .filter(|&i| !panel.series[i].unlabelled)
        .collect();
    if spec.legend == Legend::Hidden || labelled.is_empty() {
        return Ok(());
    }
    draw_legend(&chart, panel, segs, &labelled, family)
}

/// The colour of series `i` of a panel: its own, else the palette's.
fn series_color(panel: &Panel, i: usize) -> RGBColor {
    match panel.series[i].rgb {
        Some((r, g, b)) => RGBColor(r, g, b),
        None => color(i),
    }
}

/// Every series' segments as lines (unless scatter) and markers (when asked, for scatter
/// series and for lone points).
fn draw_series<DB: Backend>(
    chart: &mut Chart<'_, DB>,
    panel: &Panel,
    segs: &[Vec<Vec<(f64, f64)>>],
) -> Result<()> {
    let spec = &panel.spec;
    for (i, series) in segs.iter().enumerate() {
        let c = series_color(panel, i);
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
    Ok(())
}

/// The legend of the `labelled` series ([`draw_legend_box`]), in the emptiest corner unless
/// the panel asks for one.
fn draw_legend<DB: Backend>(
    chart: &Chart<'_, DB>,
    panel: &Panel,
    segs: &[Vec<Vec<(f64, f64)>>],
    labelled: &[usize],
    family: &str,
) -> Result<()> {
    let pts: Vec<(i32, i32)> = segs
        .iter()
        .flatten()
        .flatten()
        .map(|p| chart.backend_coord(p))
        .collect();
    let entries: Vec<LegendEntry> = labelled
        .iter()
        .map(|&i| LegendEntry {
            label: panel.series[i].label.clone(),
            color: series_color(panel, i),
            line: !panel.series[i].scatter,
            marker: panel.spec.markers || panel.series[i].scatter,
        })
        .collect();
    let plot = chart.plotting_area().strip_coord_spec();
    let style = LegendStyle {
        family,
        font_size: 14,
        stroke: 2,
    };
    draw_legend_box(&plot, &entries, panel.spec.legend, &pts, style)
}

/// One row of a legend: a line and/or a marker in `color`, then `label`.
pub(crate) struct LegendEntry {
    pub label: String,
    pub color: RGBColor,
    pub line: bool,
    pub marker: bool,
}

/// A legend's font family, font size and line width.
#[derive(Clone, Copy)]
pub(crate) struct LegendStyle<'a> {
    pub family: &'a str,
    pub font_size: u32,
    pub stroke: u32,
}

/// A legend box of `entries` in the corner of `plot` that `legend` names ([`Legend::Auto`]:
/// the one hiding the fewest of the points `pts`, in backend pixels), drawn by hand so that
/// it needs no font metrics (SVG without a font file; plotters' own series labels measure
/// text with the font and fail without one).
pub(crate) fn draw_legend_box<DB: Backend>(
    plot: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
    legend: Legend,
    pts: &[(i32, i32)],
    style: LegendStyle<'_>,
) -> Result<()> {
    let (ox, oy) = plot.get_base_pixel();
    let text = TextStyle::from((style.family, style.font_size).into_font())
        .pos(Pos::new(HPos::Left, VPos::Center));
    let line_h = style.font_size as i32 + 6;
    let text_w = entries
        .iter()
        .map(|e| {
            plot.estimate_text_size(&e.label, &text)
                .map(|d| d.0)
                .unwrap_or(0)
        })
        .max()
        .unwrap_or(0) as i32;
    let size = (text_w + 44, line_h * entries.len() as i32 + 10);
    let (bw, bh) = size;
    let local: Vec<(i32, i32)> = pts.iter().map(|&(px, py)| (px - ox, py - oy)).collect();
    let (bx, by) = legend_corner(legend, plot.dim_in_pixel(), size, &local);
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
    for (row, e) in entries.iter().enumerate() {
        let yy = by + 5 + line_h * row as i32 + line_h / 2;
        if e.line {
            plot.draw(&PathElement::new(
                vec![(bx + 8, yy), (bx + 32, yy)],
                e.color.stroke_width(style.stroke),
            ))
            .map_err(plot_err)?;
        }
        if e.marker {
            plot.draw(&Circle::new((bx + 20, yy), 3, e.color.filled()))
                .map_err(plot_err)?;
        }
        plot.draw(&Text::new(e.label.clone(), (bx + 38, yy), text.clone()))
            .map_err(plot_err)?;
    }
    Ok(())
}

/// The legend box's top-left corner in a plot of size `(pw, ph)`: the corner `legend` asks
/// for, or with [`Legend::Auto`] the one hiding the fewest `pts` (plot-local pixels).
fn legend_corner(
    legend: Legend,
    (pw, ph): (u32, u32),
    (bw, bh): (i32, i32),
    pts: &[(i32, i32)],
) -> (i32, i32) {
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
            .filter(|&&(px, py)| px >= cx && px <= cx + bw && py >= cy && py <= cy + bh)
            .count()
    };
    match legend {
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
    }
}
