//! Axes: the drawable points of a series, the padded range of an axis, tick positions
//! (linear, or 1-2-5 times powers of ten on a log axis) and tick labels.
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;

/// The points of a series split at the points an axis cannot show, so the line breaks there.
pub(super) fn segments(points: &[(f64, f64)], log_x: bool, log_y: bool) -> Vec<Vec<(f64, f64)>> {
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
pub(super) fn axis_range(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
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
pub(super) struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    integer: bool,
    linear: RangedCoordf64,
}

impl Axis {
    pub(super) fn new(lo: f64, hi: f64, log: bool, integer: bool) -> Axis {
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
