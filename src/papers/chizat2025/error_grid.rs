//! C2, `kind: error-grid`: RMS output error against the limit over an (L, M) grid, the fit
//! a/L + b·√(D/(LM)), log-log slopes in L per M and the acceptance checks (slope −1/2 at M = 1,
//! −1 at the largest M).
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;
use tch::{Device, Tensor};

use super::fit::{fit_rate, loglog_slope, RateFit};
use super::gd::train;
use super::limit::limit;
use super::output::{cell_means, rms_error, to_vec, write_csv};
use super::spec::{ErrorGridFig, Figure};
use super::task::train_and_test;
use crate::model::two_layer_resnet::TwoLayerResNet;
use crate::report::acceptance::{Acceptance, Check};
use crate::report::plot::{multi_panel, Panel, PlotSpec, Series};
use crate::report::table::Table;

/// Mean and standard deviation of the error per (L, M) cell.
type Means = BTreeMap<(i64, i64), (f64, f64)>;

pub(super) fn error_grid(
    fig: &Figure,
    s: &ErrorGridFig,
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<(String, Acceptance)> {
    let dims = s.dim.values();
    if let [d] = dims[..] {
        let (text, _, acceptance) = one_dim(fig, s, d, out, device, quiet)?;
        return Ok((text, acceptance));
    }
    // Several D: each its own grid in D<d>/ (its slopes said there as measured beside the
    // paper's range, not judged: the paper states them at D = 2), then b per D side by side.
    let mut text = String::new();
    let mut fits = Vec::new();
    for &d in &dims {
        let dir = out.join(format!("D{d}"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
        let (t, fit, a) = one_dim(fig, s, d, &dir, device, quiet)?;
        let mut said = Acceptance::default();
        for c in &a.checks {
            said.measured(format!(
                "{}: {:.3} (the paper's range at D = 2: [{}, {}]; not judged here)",
                c.name, c.value, c.lo, c.hi
            ));
        }
        text += &format!("## D = {d} (in D{d}/)\n\n{t}{}\n", said.lines());
        fits.push((d, fit));
    }
    let (summary, slopes) = per_dim_summary(out, &fits)?;
    let mut acceptance = Acceptance::default();
    acceptance.measured(format!(
        "log-log slope in D of b {:.3} and of b' = b√D {:.3} (the √D law: 0 and 1/2)",
        slopes.0, slopes.1
    ));
    Ok((summary + "\n" + &text, acceptance))
}

/// b per D: the table, dims.csv, and the log-log slopes in D of b and of b' = b√D (the
/// coefficient of 1/√(LM)): the √D law keeps b constant (b' grows like √D).
fn per_dim_summary(out: &Path, fits: &[(i64, RateFit)]) -> Result<(String, (f64, f64))> {
    let mut table = Table::new(
        "The fit a/L + b·√(D/(LM)) per D (b' = b√D: the paper's a/L + b'/√(LM))",
        ["D", "a", "b", "b' = b√D", "R² (log)"]
            .map(String::from)
            .to_vec(),
    );
    let mut rows = Vec::new();
    for (d, f) in fits {
        let b_prime = f.b * (*d as f64).sqrt();
        table.push(vec![
            d.to_string(),
            format!("{:.4}", f.a),
            format!("{:.4}", f.b),
            format!("{b_prime:.4}"),
            format!("{:.3}", f.r2),
        ]);
        rows.push(format!(
            "{d},{:.6e},{:.6e},{b_prime:.6e},{:.4}",
            f.a, f.b, f.r2
        ));
    }
    write_csv(&out.join("dims.csv"), "D,a,b,b_prime,r2", &rows)?;
    let slope = |g: &dyn Fn(&RateFit, f64) -> f64| {
        loglog_slope(
            &fits
                .iter()
                .map(|(d, f)| (*d as f64, g(f, *d as f64)))
                .collect::<Vec<_>>(),
        )
    };
    let (sb, sbp) = (slope(&|f, _| f.b), slope(&|f, d| f.b * d.sqrt()));
    let text = format!(
        "{}\nLog-log slope in D: of b {sb:.3}, of b' = b√D {sbp:.3}. The √D law keeps b \
         constant (slope 0; b' slope 1/2); an error growing like D would give b slope 1/2 \
         (b' slope 1).\n",
        table.to_markdown()
    );
    Ok((text, (sb, sbp)))
}

/// One D: its limit, grid, fit, plot, text and checks.
fn one_dim(
    fig: &Figure,
    s: &ErrorGridFig,
    dim: i64,
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<(String, RateFit, Acceptance)> {
    let lim = limit(dim, &s.dynamics, &s.task, &s.limit, device, quiet)?;
    let rows = train_grid(s, dim, &lim.outputs[&s.dynamics.steps], out, device, quiet)?;
    let means = cell_means(&rows);
    let d = dim as f64;
    let fit = fit_rate(
        &means
            .iter()
            .map(|(&(l, m), &(e, _))| (l as f64, m as f64, d, e))
            .collect::<Vec<_>>(),
    );
    let slopes = plot(fig, s, dim, out, &means, &fit)?;
    Ok((
        report(fig, s, dim, &means, &fit, &slopes),
        fit,
        acceptance(s, &slopes),
    ))
}

/// Trains `repetitions` models per (L, M) cell and writes errors.csv; returns (L, M, error)
/// per model.
fn train_grid(
    s: &ErrorGridFig,
    dim: i64,
    lim_out: &Tensor,
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<Vec<(i64, i64, f64)>> {
    let k = s.dynamics.steps;
    let (x, y, xt) = train_and_test(&s.task, dim, device);
    let mut rows: Vec<(i64, i64, f64)> = Vec::new();
    let mut csv = Vec::new();
    for &m in &s.widths {
        for &l in &s.depths {
            let t0 = Instant::now();
            tch::manual_seed(s.seed as i64 * 1_000_003 + l * 10_007 + m);
            let specs = vec![s.dynamics.model(l, m, dim); s.repetitions as usize];
            let mut net = TwoLayerResNet::new(&specs, device);
            let (loss, outs) = train(&mut net, &x, &y, &xt, k, |_, _| {})?;
            let errs = rms_error(&outs[&k], lim_out);
            let final_loss = to_vec(&loss.get(k as i64));
            for (r, e) in errs.iter().enumerate() {
                rows.push((l, m, *e));
                csv.push(format!("{l},{m},{dim},{r},{e:.6e},{:.6e}", final_loss[r]));
            }
            if !quiet {
                eprintln!(
                    "C2: M = {m}, L = {l}: error {:.3e} ({} models, {:.1} s)",
                    errs.iter().sum::<f64>() / errs.len() as f64,
                    errs.len(),
                    t0.elapsed().as_secs_f64()
                );
            }
        }
    }
    write_csv(
        &out.join("errors.csv"),
        "L,M,D,repetition,error,train_loss",
        &csv,
    )?;
    Ok(rows)
}

/// The cell means against L, one colour per M, with the fitted curves; returns the log-log
/// slope in L per M.
fn plot(
    fig: &Figure,
    s: &ErrorGridFig,
    dim: i64,
    out: &Path,
    means: &Means,
    fit: &RateFit,
) -> Result<Vec<(i64, f64)>> {
    let k = s.dynamics.steps;
    let d = dim as f64;
    let mut series = Vec::new();
    let mut slopes = Vec::new();
    for (i, &m) in s.widths.iter().enumerate() {
        let pts: Vec<(f64, f64)> = s
            .depths
            .iter()
            .map(|&l| (l as f64, means[&(l, m)].0))
            .collect();
        slopes.push((m, loglog_slope(&pts)));
        let c = crate::report::plot::color(i);
        series.push(
            Series::new(format!("M = {m}"), pts)
                .rgb((c.0, c.1, c.2))
                .scatter(),
        );
        let lo = *s.depths.iter().min().unwrap() as f64;
        let hi = *s.depths.iter().max().unwrap() as f64;
        let curve = (0..=40)
            .map(|j| {
                let l = lo * (hi / lo).powf(j as f64 / 40.0);
                (l, fit.predict(l, m as f64, d))
            })
            .collect();
        series.push(Series::new("", curve).rgb((c.0, c.1, c.2)).unlabelled());
    }
    multi_panel(
        &out.join(&fig.stem),
        &format!(
            "{}: error vs the limit after k = {k} steps, D = {}, mean of {}",
            fig.figure, dim, s.repetitions
        ),
        &[Panel {
            spec: PlotSpec::new(
                format!(
                    "lines: a/L + b√(D/(LM)), a = {:.3}, b = {:.3}, R² = {:.3}",
                    fit.a, fit.b, fit.r2
                ),
                "depth L",
                "RMS error of the output",
            )
            .log_x(true)
            .log_y(true),
            series,
        }],
    )?;
    Ok(slopes)
}

/// The text: the error table, the fit and the slopes.
fn report(
    fig: &Figure,
    s: &ErrorGridFig,
    dim: i64,
    means: &Means,
    fit: &RateFit,
    slopes: &[(i64, f64)],
) -> String {
    let k = s.dynamics.steps;
    let d = dim as f64;
    let mut table = Table::new(
        format!(
            "RMS error against the limit after k = {k} steps (mean ± std over {} models)",
            s.repetitions
        ),
        std::iter::once("L".to_string())
            .chain(s.widths.iter().map(|m| format!("M = {m}")))
            .collect(),
    );
    for &l in &s.depths {
        let mut row = vec![l.to_string()];
        for &m in &s.widths {
            let (e, sd) = means[&(l, m)];
            row.push(format!("{e:.3e} ± {sd:.1e}"));
        }
        table.push(row);
    }
    let mut text = format!("Figure: {}.svg/png; data errors.csv.\n\n", fig.stem);
    text += &table.to_markdown();
    text += &format!(
        "\nFit over the {} cell means: err ≈ a/L + b·√(D/(LM)) with a = {:.4}, b = {:.4} \
         (in the paper's C2 form a/L + b'/√(LM) at D = {}: b' = b√D = {:.4}); b/a = {:.3}, \
         R² (log) = {:.4}. The paper's hand-fitted values: a = 0.15, b' = 0.22.\n\n",
        fit.points,
        fit.a,
        fit.b,
        dim,
        fit.b * d.sqrt(),
        fit.b / fit.a,
        fit.r2
    );
    text += "Log-log slope of the error against L, per M:\n\n";
    for (m, sl) in slopes {
        text += &format!("- M = {m}: {sl:.3}\n");
    }
    text
}

/// The paper's rates as checks: the error falls like 1/L at the largest M and, when M = 1 is
/// in the grid, like 1/√L there (log-log slopes in L).
fn acceptance(s: &ErrorGridFig, slopes: &[(i64, f64)]) -> Acceptance {
    let m_min = *s.widths.iter().min().unwrap();
    let m_max = *s.widths.iter().max().unwrap();
    let sl = |m: i64| slopes.iter().find(|x| x.0 == m).map_or(f64::NAN, |x| x.1);
    let mut a = Acceptance::default();
    if m_min == 1 {
        a.push(Check::new("slope at M = 1 (1/√L)", sl(1), -0.65, -0.35));
    }
    let name = format!("slope at M = {m_max} (1/L)");
    a.push(Check::new(name, sl(m_max), -1.2, -0.8));
    a
}
