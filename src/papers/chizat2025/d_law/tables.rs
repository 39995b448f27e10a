//! The study's outputs: exponents.csv, init.csv and limits.csv, the plot of p_D against n, the
//! text with its table, and the measured lines.
use anyhow::Result;
use std::path::Path;

use super::{target_name, Interval, Setting};
use crate::papers::chizat2025::error_sweep::Shape;
use crate::papers::chizat2025::output::write_csv;
use crate::papers::chizat2025::spec::{DLawFig, Figure};
use crate::report::acceptance::Acceptance;
use crate::report::plot::{multi_panel, Panel, PlotSpec, Series};
use crate::report::table::Table;

/// One fit as CSV columns: models, then each exponent's estimate, low and high end.
fn fit_columns((p, models): &([Interval; 3], usize)) -> String {
    let cols: Vec<String> = p
        .iter()
        .map(|i| format!("{:.4},{:.4},{:.4}", i.est, i.lo, i.hi))
        .collect();
    format!("{models},{}", cols.join(","))
}

/// exponents.csv (one row per setting and k, with p_D(k) − p_D(0)), init.csv (the fit at
/// k = 0) and limits.csv (the limit's loss per D).
pub(super) fn write_tables(
    s: &DLawFig,
    out: &Path,
    settings: &[Setting],
    init: Option<([Interval; 3], usize)>,
) -> Result<()> {
    let mut rows = Vec::new();
    let mut lim_rows = Vec::new();
    for st in settings {
        let head = format!("{},{},{}", st.n, target_name(st.target), st.eta);
        for (ki, k) in s.sweep.eval_steps.iter().enumerate() {
            if let Some(fit) = &st.exponents[ki] {
                let g = st.growth[ki].map_or(",,".into(), |g| {
                    format!("{:.4},{:.4},{:.4}", g.est, g.lo, g.hi)
                });
                rows.push(format!("{head},{k},{},{g}", fit_columns(fit)));
            }
        }
        for (d, l0, lk) in &st.limit_loss {
            lim_rows.push(format!("{head},{d},{l0:e},{lk:e}"));
        }
    }
    write_csv(
        &out.join("exponents.csv"),
        "n,target,eta,k,models,p_L,p_L_lo,p_L_hi,p_M,p_M_lo,p_M_hi,p_D,p_D_lo,p_D_hi,\
         growth,growth_lo,growth_hi",
        &rows,
    )?;
    const HEAD: &str = "k,models,p_L,p_L_lo,p_L_hi,p_M,p_M_lo,p_M_hi,p_D,p_D_lo,p_D_hi";
    let init_rows: Vec<String> = init
        .iter()
        .map(|f| format!("0,{}", fit_columns(f)))
        .collect();
    write_csv(&out.join("init.csv"), HEAD, &init_rows)?;
    write_csv(
        &out.join("limits.csv"),
        "n,target,eta,D,loss_0,loss_K",
        &lim_rows,
    )
}

/// p_D against n with its interval, one panel per k, one colour per (target, η); the lines
/// p_D = 1/2 (the bound's √D) and p_D = 1.
pub(super) fn plot(
    fig: &Figure,
    s: &DLawFig,
    out: &Path,
    settings: &[Setting],
    init: Option<([Interval; 3], usize)>,
) -> Result<()> {
    let ns = (
        *s.train_points.iter().min().unwrap() as f64,
        *s.train_points.iter().max().unwrap() as f64,
    );
    let mut panels = Vec::new();
    for (ki, k) in s.sweep.eval_steps.iter().enumerate() {
        let mut series = Vec::new();
        let mut c = 0;
        for &target in &s.targets {
            for &eta in &s.etas {
                let col = crate::report::plot::color(c);
                let rgb = (col.0, col.1, col.2);
                c += 1;
                // (n, p_D) and its interval, for this (target, η) at this k.
                let pts: Vec<(f64, Interval)> = settings
                    .iter()
                    .filter(|st| st.target == target && st.eta == eta)
                    .filter_map(|st| st.exponents[ki].map(|(p, _)| (st.n as f64, p[2])))
                    .collect();
                let est = pts.iter().map(|(n, p)| (*n, p.est)).collect();
                series
                    .push(Series::new(format!("{}, η = {eta}", target_name(target)), est).rgb(rgb));
                for (n, p) in pts {
                    series.push(
                        Series::new("", vec![(n, p.lo), (n, p.hi)])
                            .rgb(rgb)
                            .unlabelled(),
                    );
                }
            }
        }
        if let Some((p, _)) = init {
            let label = "p_D at k = 0 (initialization)";
            series
                .push(Series::new(label, vec![(ns.0, p[2].est), (ns.1, p[2].est)]).rgb((0, 0, 0)));
        }
        for (y, label) in [(0.5, "p_D = 1/2 (√D, the bound)"), (1.0, "p_D = 1")] {
            series.push(Series::new(label, vec![(ns.0, y), (ns.1, y)]).rgb((120, 120, 120)));
        }
        panels.push(Panel {
            spec: PlotSpec::new(
                format!("k = {k}"),
                "training points n",
                "p_D (95 % interval)",
            )
            .log_x(true)
            .markers(true),
            series,
        });
    }
    multi_panel(
        &out.join(&fig.stem),
        &format!(
            "{}: the error's exponent in D, err ∝ L^p_L·M^p_M·D^p_D",
            fig.figure
        ),
        &panels,
    )?;
    Ok(())
}

/// The table: per setting, p_D at every k, p_L and p_M at the last k, the limit's loss at K.
pub(super) fn report(
    fig: &Figure,
    s: &DLawFig,
    shapes: &[Shape],
    settings: &[Setting],
    init: Option<([Interval; 3], usize)>,
) -> String {
    let ks = &s.sweep.eval_steps;
    let last = ks.len() - 1;
    let mut cols: Vec<String> = vec!["n".into(), "target".into(), "η".into()];
    cols.extend(ks.iter().map(|k| format!("p_D at k = {k}")));
    cols.extend([
        format!("p_D(k = {}) − p_D(0)", ks[last]),
        format!("p_L at k = {}", ks[last]),
        format!("p_M at k = {}", ks[last]),
        "models".into(),
        "limit loss at K / at 0 (D min … max)".into(),
    ]);
    let mut table = Table::new(
        format!(
            "Free power law per setting: p with its bootstrap 95 % interval ({} resamples of the \
             models with D/(LM) ≤ {})",
            s.bootstrap, s.sweep.outside
        ),
        cols,
    );
    for st in settings {
        let mut row = vec![
            st.n.to_string(),
            target_name(st.target).into(),
            st.eta.to_string(),
        ];
        let text =
            |ki: usize, j: usize| st.exponents[ki].map_or("–".to_string(), |(p, _)| p[j].text());
        row.extend((0..ks.len()).map(|ki| text(ki, 2)));
        row.push(st.growth[last].map_or("–".into(), |g| g.text()));
        row.push(text(last, 0));
        row.push(text(last, 1));
        row.push(st.exponents[last].map_or("0".into(), |(_, m)| m.to_string()));
        let ratio: Vec<String> = st
            .limit_loss
            .iter()
            .map(|(_, l0, lk)| format!("{:.0e}", lk / l0))
            .collect();
        row.push(ratio.join(" … "));
        table.push(row);
    }
    let init = init.map_or("no fit".into(), |(p, m)| {
        format!(
            "p_D = {}, p_L = {}, p_M = {} over {m} models",
            p[2].text(),
            p[0].text(),
            p[1].text()
        )
    });
    format!(
        "Figure: {}.svg/png; data exponents.csv, init.csv, errors.csv ({} shapes × {} settings × \
         {} steps), limits.csv.\n\nAt initialization (k = 0: the same models, limit and \
         held-out inputs in every setting), the control: {init}. p_D(k) − p_D(0) below is \
         what training adds, with its paired bootstrap interval.\n\n{}",
        fig.stem,
        shapes.len(),
        settings.len(),
        ks.len(),
        table.to_markdown()
    )
}

/// Each setting's p_D at the last k and what training added to it, said as measured: the
/// bound allows p_D ≤ 1/2 (consistent when the interval reaches 1/2 or below), and training
/// adds nothing to the initialization's exponent when the interval of the difference holds 0.
/// The study has no pass/fail check (it asks where the law holds, not whether it holds
/// everywhere).
pub(super) fn acceptance(s: &DLawFig, settings: &[Setting]) -> Acceptance {
    let ks = &s.sweep.eval_steps;
    let last = ks.len() - 1;
    let mut a = Acceptance::default();
    for st in settings {
        let Some((p, _)) = st.exponents[last] else {
            continue;
        };
        let verdict = if p[2].lo <= 0.5 {
            "consistent with √D"
        } else {
            "grows faster than √D"
        };
        let added = st.growth[last].map_or(String::new(), |g| {
            let what = if g.lo > 0.0 {
                "training adds"
            } else {
                "no clear change by training"
            };
            format!("; p_D(k) − p_D(0) = {} ({what})", g.text())
        });
        a.measured(format!(
            "p_D at k = {}, n = {}, {}, η = {}: {} ({verdict}){added}",
            ks[last],
            st.n,
            target_name(st.target),
            st.eta,
            p[2].text()
        ));
    }
    a
}
