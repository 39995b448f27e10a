//! A sweep's expected result as acceptance checks: each claim of the scale's `expect:` list
//! ([`Expectation`]) becomes one or more [`Check`]s measured on the finished runs. Claims are
//! judged only once every cell they read has finished or diverged; before that the report says
//! how many are still to run instead of failing.
use crate::report::acceptance::{Acceptance, Check};
use crate::report::runs::RunRecord;
use crate::report::stats::paired;
use crate::sweep::grid::{Cell, CurveMetric, Expectation};
use crate::train::RunStatus;

use super::{cell_value, combo_of, combo_text, first_seen, ReportContext};

/// The error (%) a diverged run counts as.
const DIVERGED_ERROR: f64 = 100.0;

/// The claims judged, or why not yet.
#[derive(Debug, Clone, PartialEq)]
pub enum Judged {
    /// Every cell read has ended: the checks.
    Checks(Acceptance),
    /// `k` of `n` cells have not ended (missing or running).
    NotYet { waiting: usize, cells: usize },
}

/// One run as the claims see it.
struct Run<'c> {
    cell: &'c Cell,
    record: RunRecord,
}

impl Run<'_> {
    /// Best test error (%), [`DIVERGED_ERROR`] when diverged, None when not ended.
    fn error(&self) -> Option<f64> {
        match self.record.status() {
            RunStatus::Diverged => Some(DIVERGED_ERROR),
            RunStatus::Finished => self.record.best_test_error(),
            _ => None,
        }
    }
}

/// Judges `ctx.expect` on `cells`; None when the scale expects nothing.
pub(super) fn judge(ctx: &ReportContext, cells: &[Cell]) -> Option<Judged> {
    if ctx.expect.is_empty() {
        return None;
    }
    let runs: Vec<Run> = cells
        .iter()
        .map(|c| Run {
            cell: c,
            record: RunRecord::load(&c.dir()),
        })
        .collect();
    let waiting = runs.iter().filter(|r| r.error().is_none()).count();
    if waiting > 0 {
        return Some(Judged::NotYet {
            waiting,
            cells: runs.len(),
        });
    }
    // One group per combination of the grid keys other than the table's rows.
    let other: Vec<String> = ctx
        .keys
        .iter()
        .filter(|k| Some(*k) != ctx.spec.rows.as_ref())
        .cloned()
        .collect();
    let combos = first_seen(runs.iter().map(|r| combo_of(r.cell, &other)));
    let mut acc = Acceptance::default();
    for combo in &combos {
        let group: Vec<&Run> = runs
            .iter()
            .filter(|r| &combo_of(r.cell, &other) == combo)
            .collect();
        let suffix = if combos.len() > 1 {
            format!(" ({})", combo_text(&other, combo))
        } else {
            String::new()
        };
        for e in &ctx.expect {
            if let Expectation::Compare { variant, than } = e {
                let rows_key = ctx.spec.rows.as_deref();
                acc.measured(compare(&group, variant, than, rows_key) + &suffix);
                continue;
            }
            for mut check in checks(ctx, e, &group) {
                check.name += &suffix;
                acc.push(check);
            }
        }
    }
    Some(Judged::Checks(acc))
}

/// The mean error of `variant`'s runs at row `row` (every row when None).
fn mean_error(group: &[&Run], variant: &str, row: Option<(&str, &str)>) -> Option<f64> {
    let xs: Vec<f64> = group
        .iter()
        .filter(|r| r.cell.variant.as_deref() == Some(variant))
        .filter(|r| row.is_none_or(|(k, v)| cell_value(r.cell, k) == v))
        .filter_map(|r| r.error())
        .collect();
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// The checks of one claim on one group of runs.
fn checks(ctx: &ReportContext, e: &Expectation, group: &[&Run]) -> Vec<Check> {
    let rows_key = ctx.spec.rows.as_deref();
    let rows: Vec<String> = match rows_key {
        Some(k) => first_seen(group.iter().map(|r| cell_value(r.cell, k))),
        None => vec![],
    };
    let row_filters: Vec<Option<(&str, &str)>> = match rows_key {
        Some(k) => rows.iter().map(|v| Some((k, v.as_str()))).collect(),
        None => vec![None],
    };
    match e {
        Expectation::Trains { variants, below } => {
            let worst = variants
                .iter()
                .flat_map(|v| {
                    row_filters
                        .iter()
                        .map(move |row| mean_error(group, v, *row))
                })
                .flatten()
                .fold(f64::NAN, f64::max);
            vec![Check::new(
                format!(
                    "{} train: highest best test error (%, diverged = 100)",
                    variants.join(", ")
                ),
                worst,
                0.0,
                *below,
            )]
        }
        Expectation::Worst { variant } => {
            let last = row_filters.last().copied().flatten();
            let at = last.map_or_else(String::new, |(k, v)| format!(" at {k} = {v}"));
            let own = mean_error(group, variant, last).unwrap_or(f64::NAN);
            let best_other = ctx
                .variants
                .iter()
                .filter(|v| *v != variant)
                .filter_map(|v| mean_error(group, v, last))
                .fold(f64::NAN, f64::max);
            vec![Check::new(
                format!("{variant} worst{at}: its error minus the highest of the others (points)"),
                own - best_other,
                0.0,
                DIVERGED_ERROR,
            )]
        }
        Expectation::Compare { .. } => vec![], // said, not checked: see `compare`
        Expectation::Falls { metrics, ratio } => {
            metrics.iter().map(|m| falls(group, *m, *ratio)).collect()
        }
    }
}

/// `variant − than`, paired by (row, seed): the mean difference of best test errors, its
/// 95 % interval and what it says.
fn compare(group: &[&Run], variant: &str, than: &str, rows_key: Option<&str>) -> String {
    let key = |r: &Run| {
        (
            rows_key.map_or_else(String::new, |k| cell_value(r.cell, k)),
            r.cell.seed,
        )
    };
    let of = |v: &str| -> Vec<((String, u64), f64)> {
        group
            .iter()
            .filter(|r| r.cell.variant.as_deref() == Some(v))
            .filter_map(|r| r.error().map(|e| (key(r), e)))
            .collect()
    };
    let (a, b) = (of(than), of(variant));
    // stats::paired pairs by a u64 id: number the (row, seed) keys of `than`.
    let keys: Vec<&(String, u64)> = a.iter().map(|(k, _)| k).collect();
    let ids = |xs: &[((String, u64), f64)]| -> Vec<(u64, f64)> {
        xs.iter()
            .filter_map(|(k, e)| keys.iter().position(|x| *x == k).map(|i| (i as u64, *e)))
            .collect()
    };
    let head = format!("best test error {variant} − {than} (points, paired by row × seed)");
    match paired(&ids(&a), &ids(&b)).map(|d| d.diff) {
        Some(d) => match d.ci {
            Some((lo, hi)) => {
                let says = if lo > 0.0 {
                    format!("{variant} worse")
                } else if hi < 0.0 {
                    format!("{variant} better")
                } else {
                    "no clear difference".to_string()
                };
                format!(
                    "{head}: mean {:+.2}, 95 % CI [{lo:+.2}, {hi:+.2}] over {} pairs: {says}",
                    d.mean, d.n
                )
            }
            None => format!("{head}: {:+.2} from {} pair, no interval", d.mean, d.n),
        },
        None => format!("{head}: no pair finished"),
    }
}

/// The highest last/first ratio of `metric` over the runs that did not diverge (a diverged run
/// counts as infinite).
fn falls(group: &[&Run], metric: CurveMetric, ratio: f64) -> Check {
    let mut worst = (f64::NEG_INFINITY, "");
    for r in group {
        let curve = match metric {
            CurveMetric::TrainLoss => r.record.train_loss_curve(),
            CurveMetric::TestError => r.record.test_error_curve(),
        };
        let q = match (r.record.status(), curve.first(), curve.last()) {
            (RunStatus::Diverged, _, _) => f64::INFINITY,
            (_, Some(f), Some(l)) if curve.len() >= 2 => l.1 / f.1,
            _ => f64::NAN, // fewer than two epochs: nothing to compare
        };
        if q.is_nan() || q > worst.0 {
            worst = (q, r.cell.name.as_str());
            if q.is_nan() {
                break;
            }
        }
    }
    let (worst, name) = if group.is_empty() {
        (f64::NAN, "")
    } else {
        worst
    };
    let m = match metric {
        CurveMetric::TrainLoss => "train loss",
        CurveMetric::TestError => "test error",
    };
    Check::new(
        format!("{m} falls in every run: highest last/first epoch ratio ({name})"),
        worst,
        0.0,
        ratio,
    )
}
