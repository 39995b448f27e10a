//! C1, `kind: forward-pass`: ⟨e_1, h_ℓ⟩ against ℓ/L after training, M = 1, several L, the
//! limit's in red, and the RMS distance of each curve to the limit's.
use anyhow::Result;
use std::path::Path;
use tch::{Device, Tensor};

use super::fit::loglog_slope;
use super::gd::train;
use super::limit::limit;
use super::output::{to_vec, write_csv, RED};
use super::spec::{Figure, ForwardPassFig};
use super::task::train_and_test;
use crate::model::two_layer_resnet::TwoLayerResNet;
use crate::report::acceptance::{Acceptance, Check};
use crate::report::plot::{multi_panel, ramp, Legend, Panel, PlotSpec, Series};
use crate::report::table::Table;

pub(super) fn forward_pass(
    fig: &Figure,
    s: &ForwardPassFig,
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<(String, Acceptance)> {
    let lim = limit(s.dim, &s.dynamics, &s.task, &s.limit, device, quiet)?;
    let (x, y, xt) = train_and_test(&s.task, s.dim, device);
    let mut rows = Vec::new();
    let mut panels = empty_panels(s);
    let mut table = Table::new(
        format!(
            "RMS distance of the trained forward pass to the limit's (M = {})",
            s.width
        ),
        vec![
            "L".into(),
            "mean over ℓ/L and inputs".into(),
            "output error".into(),
        ],
    );
    let lim_trace = to_vec(&lim.trace);
    let n_test = s.task.test as usize;
    let lim_at = |t: f64, i: usize| {
        // The limit's ⟨e_1, h⟩ at depth fraction t (nearest layer).
        let l = ((t * s.limit.depth as f64).round() as usize).min(s.limit.depth as usize);
        lim_trace[l * n_test + i]
    };
    let mut dists = Vec::new();
    for (di, &depth) in s.depths.iter().enumerate() {
        let tr = trained_trace(s, depth, (&x, &y, &xt), device)?;
        for l in 0..=depth as usize {
            let row: Vec<String> = (0..s.inputs as usize)
                .map(|i| format!("{:.6}", tr[l * n_test + i]))
                .collect();
            let t = l as f64 / depth as f64;
            rows.push(format!("{depth},{l},{t:.6},{}", row.join(",")));
        }
        let (dist, out_err) = distances(&tr, depth, n_test, lim_at);
        dists.push((depth as f64, dist));
        table.push(vec![
            depth.to_string(),
            format!("{dist:.4}"),
            format!("{out_err:.4}"),
        ]);
        let rgb = ramp(di as f64 / s.depths.len().max(2) as f64 * 0.9);
        push_curves(
            &mut panels,
            &format!("L = {depth}"),
            rgb,
            depth,
            &tr,
            n_test,
        );
        if !quiet {
            eprintln!("C1: L = {depth} trained, distance to the limit {dist:.4}");
        }
    }
    push_curves(&mut panels, "limit", RED, s.limit.depth, &lim_trace, n_test);
    write_csvs(s, out, &rows, &lim_trace)?;
    multi_panel(
        &out.join(&fig.stem),
        &format!(
            "{}: forward pass after K = {} steps, M = {}, D = {} (limit: L = {}, M = {})",
            fig.figure, s.dynamics.steps, s.width, s.dim, s.limit.depth, s.limit.width
        ),
        &panels,
    )?;
    Ok((
        format!(
            "Figure: {}.svg/png; data forward.csv, limit.csv.\n\n{}",
            fig.stem,
            table.to_markdown()
        ),
        acceptance(&dists),
    ))
}

/// The RMS distance of a trained trace `tr` (depth L = `depth`, `[L + 1, n_test]` flattened)
/// to the limit's (`lim_at(ℓ/L, input)`): over every ℓ/L and input, and at the output ℓ = L.
fn distances(
    tr: &[f64],
    depth: i64,
    n_test: usize,
    lim_at: impl Fn(f64, usize) -> f64,
) -> (f64, f64) {
    let sq = |l: usize| -> f64 {
        let t = l as f64 / depth as f64;
        (0..n_test)
            .map(|i| (tr[l * n_test + i] - lim_at(t, i)).powi(2))
            .sum()
    };
    let all: f64 = (0..=depth as usize).map(sq).sum();
    let dist = (all / ((depth + 1) as f64 * n_test as f64)).sqrt();
    (dist, (sq(depth as usize) / n_test as f64).sqrt())
}

/// Adds the curve ℓ/L ↦ ⟨e_1, h_ℓ⟩ of `trace` (depth `depth`) to each input's panel.
fn push_curves(
    panels: &mut [Panel],
    label: &str,
    rgb: (u8, u8, u8),
    depth: i64,
    trace: &[f64],
    n_test: usize,
) {
    for (i, p) in panels.iter_mut().enumerate() {
        let pts = (0..=depth as usize)
            .map(|l| (l as f64 / depth as f64, trace[l * n_test + i]))
            .collect();
        p.series.push(Series::new(label, pts).rgb(rgb));
    }
}

/// The paper's claim as a check: the trained forward passes approach the limit's as L grows,
/// at M = 1 like 1/√L (the √(D/(LM)) term): the log-log slope of the distance against L.
fn acceptance(dists: &[(f64, f64)]) -> Acceptance {
    let mut a = Acceptance::default();
    a.push(Check::new(
        "log-log slope of the distance to the limit against L (1/√L)",
        loglog_slope(dists),
        -0.8,
        -0.3,
    ));
    a
}

/// One empty panel per drawn held-out input.
fn empty_panels(s: &ForwardPassFig) -> Vec<Panel> {
    (0..s.inputs)
        .map(|i| Panel {
            spec: PlotSpec::new(
                format!("held-out input {}", i + 1),
                "ℓ / L",
                "⟨e_1, h_ℓ⟩ (trained)",
            )
            .legend(Legend::Auto),
            series: Vec::new(),
        })
        .collect()
}

/// Trains one model of depth `depth`; its ⟨e_1, h_ℓ⟩ on the held-out inputs after training,
/// `[L + 1, n_test]` flattened.
fn trained_trace(
    s: &ForwardPassFig,
    depth: i64,
    (x, y, xt): (&Tensor, &Tensor, &Tensor),
    device: Device,
) -> Result<Vec<f64>> {
    tch::manual_seed(s.seed as i64 * 7919 + depth);
    let mut net = TwoLayerResNet::new(&[s.dynamics.model(depth, s.width, s.dim)], device);
    let _ = train(&mut net, x, y, xt, s.dynamics.steps, |_, _| {})?;
    let _g = tch::no_grad_guard();
    Ok(to_vec(&net.trace(xt)))
}

/// forward.csv (the trained models' traces, `rows`) and limit.csv (the limit's).
fn write_csvs(s: &ForwardPassFig, out: &Path, rows: &[String], lim_trace: &[f64]) -> Result<()> {
    let n_test = s.task.test as usize;
    let head: Vec<String> = (1..=s.inputs).map(|i| format!("input{i}")).collect();
    write_csv(
        &out.join("forward.csv"),
        &format!("L,layer,depth_fraction,{}", head.join(",")),
        rows,
    )?;
    let lim_rows: Vec<String> = (0..=s.limit.depth as usize)
        .map(|l| {
            let v: Vec<String> = (0..s.inputs as usize)
                .map(|i| format!("{:.6}", lim_trace[l * n_test + i]))
                .collect();
            format!("{l},{:.6},{}", l as f64 / s.limit.depth as f64, v.join(","))
        })
        .collect();
    write_csv(
        &out.join("limit.csv"),
        &format!("layer,depth_fraction,{}", head.join(",")),
        &lim_rows,
    )
}
