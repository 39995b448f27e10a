//! C5, `kind: error-sweep`: many random (L, M, D), the error against the limit at several
//! steps k, the fit a_k/L + b_k·√(D/(LM)) per k and the free power law in L, M, D.
use anyhow::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::time::Instant;
use tch::{Device, Tensor};

use super::fit::{fit_rate, free_exponents, RateFit};
use super::gd::train_batch;
use super::kept::{device_kind, keep, read_kept, BatchKey};
use super::limit::{limit, limit_key, Limit};
use super::output::{rms_error, write_csv};
use super::spec::{ErrorSweepFig, Figure};
use super::task::train_and_test;
use crate::model::two_layer_resnet::{TwoLayerResNet, TwoLayerSpec};
use crate::report::acceptance::{Acceptance, Check};
use crate::report::plot::{multi_panel, Panel, PlotSpec, Series};
use crate::report::table::Table;
use crate::util::key::spec_key;

/// Integer drawn log-uniformly in [lo, hi].
fn log_uniform(rng: &mut impl Rng, lo: i64, hi: i64) -> i64 {
    let u: f64 = rng.gen();
    let v = ((lo as f64).ln() + u * ((hi as f64 + 1.0).ln() - (lo as f64).ln())).exp();
    (v.floor() as i64).clamp(lo, hi)
}

/// One random ResNet's shape: (L, M, D).
pub(super) type Shape = (i64, i64, i64);

pub(super) fn error_sweep(
    fig: &Figure,
    s: &ErrorSweepFig,
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<(String, Acceptance)> {
    let models = sample_shapes(s);
    let mut dims: Vec<i64> = s.dims.clone();
    dims.sort();
    dims.dedup();
    // Each finished batch is kept in `batches/`: a rerun after a stop goes on from there.
    let kept = out.join("batches");
    let errors = measure_errors(s, &models, &dims, Some(&kept), (device, quiet))?;
    let ks = &s.eval_steps;
    // One fit per recorded step k, over the models inside the region.
    let fits: Vec<RateFit> = (0..ks.len())
        .map(|ki| fit_rate(&inside_points(s, &models, &errors, ki)))
        .collect();
    let mut csv = Vec::new();
    for (i, &(l, m, d)) in models.iter().enumerate() {
        for (ki, k) in ks.iter().enumerate() {
            csv.push(format!(
                "{i},{l},{m},{d},{k},{:.6e},{:.6e},{}",
                errors[i][ki],
                fits[ki].predict(l as f64, m as f64, d as f64),
                outside(s, &(l, m, d)) as u8
            ));
        }
    }
    write_csv(
        &out.join("errors.csv"),
        "model,L,M,D,k,error,predicted,outside_theory",
        &csv,
    )?;
    plot(fig, s, out, (&models, &errors, &fits), &dims)?;
    let last = ks.len() - 1;
    let exponents = free_exponents(&inside_points(s, &models, &errors, last));
    // The control: the same models against the same limit before any step.
    let init = measure_errors(&at_init(s), &models, &dims, Some(&kept), (device, true))?;
    let init_rows: Vec<String> = models
        .iter()
        .zip(&init)
        .enumerate()
        .map(|(i, (&(l, m, d), e))| {
            let out = outside(s, &(l, m, d)) as u8;
            format!("{i},{l},{m},{d},{:.6e},{out}", e[0])
        })
        .collect();
    write_csv(
        &out.join("init.csv"),
        "model,L,M,D,error,outside_theory",
        &init_rows,
    )?;
    let init_exponents = free_exponents(&inside_points(s, &models, &init, 0));
    let text = report(fig, s, &models, &errors, &fits);
    let text = match init_exponents {
        Some((pl, pm, pd)) => format!(
            "{text}- k = 0 (initialization, the control): p_L = {pl:.3}, p_M = {pm:.3}, \
             p_D = {pd:.3}\n"
        ),
        None => text,
    };
    Ok((text, acceptance(ks[last], exponents, init_exponents)))
}

/// The sweep at initialization (K = 0, the error recorded at k = 0): the same models, limit and
/// held-out inputs before any step (each is seeded apart from the training), the control for the
/// exponent in D.
pub(super) fn at_init(s: &ErrorSweepFig) -> ErrorSweepFig {
    let mut init = s.clone();
    init.dynamics.steps = 0;
    init.eval_steps = vec![0];
    init
}

/// The paper's rate as checks on the free power law at the last recorded step: the error
/// falls with depth between 1/L and 1/√L, with width at most like 1/√M, and grows like √D
/// (p_D within 0.2 of 1/2). The last holds with many training points (the default n; smoke
/// 0.57 at n = 256) and fails with few (1.13 at n = 32: docs/chizat2025.md, "Where the √D law
/// holds"). The exponent at initialization is said beside it, as the control.
fn acceptance(
    k: usize,
    exponents: Option<(f64, f64, f64)>,
    init: Option<(f64, f64, f64)>,
) -> Acceptance {
    let (pl, pm, pd) = exponents.unwrap_or((f64::NAN, f64::NAN, f64::NAN));
    let pd0 = init.map_or(f64::NAN, |e| e.2);
    let mut a = Acceptance::default();
    a.push(Check::new(
        format!("p_L at k = {k} (between −1 and −1/2)"),
        pl,
        -1.1,
        -0.4,
    ));
    a.push(Check::new(
        format!("p_M at k = {k} (between −1/2 and 0)"),
        pm,
        -0.65,
        0.0,
    ));
    a.push(Check::new(
        format!("p_D at k = {k} (√D: 1/2)"),
        pd,
        0.3,
        0.7,
    ));
    a.measured(format!(
        "p_D at initialization (k = 0, the same models and limit) is {pd0:.2}"
    ));
    a
}

/// Draws the `models` random shapes: L, M log-uniform in their ranges, D uniform in the list.
pub(super) fn sample_shapes(s: &ErrorSweepFig) -> Vec<Shape> {
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    (0..s.models)
        .map(|_| {
            let l = log_uniform(&mut rng, s.depth[0], s.depth[1]);
            let m = log_uniform(&mut rng, s.width[0], s.width[1]);
            (l, m, s.dims[rng.gen_range(0..s.dims.len())])
        })
        .collect()
}

/// Whether a shape lies outside the theory's region, D/(LM) > `outside`.
pub(super) fn outside(s: &ErrorSweepFig, &(l, m, d): &Shape) -> bool {
    d as f64 / (l * m) as f64 > s.outside
}

/// The (L, M, D, error at the `ki`-th step) of the models inside the theory's region.
pub(super) fn inside_points(
    s: &ErrorSweepFig,
    models: &[Shape],
    errors: &[Vec<f64>],
    ki: usize,
) -> Vec<(f64, f64, f64, f64)> {
    models
        .iter()
        .zip(errors)
        .filter(|(md, _)| !outside(s, md))
        .map(|(&(l, m, d), e)| (l as f64, m as f64, d as f64, e[ki]))
        .collect()
}

/// Trains every model, D by D (one limit per D), in batched programs of `batch` models;
/// returns errors[model][index in eval_steps]. With `kept` (a folder), each finished batch's
/// errors are kept there under its [`BatchKey`] and a batch kept before is read instead of
/// trained (a D whose batches are all kept needs no limit): a sweep stopped by a signal or a
/// time limit goes on from its last finished batch, with the same numbers.
pub(super) fn measure_errors(
    s: &ErrorSweepFig,
    models: &[Shape],
    dims: &[i64],
    kept: Option<&Path>,
    (device, quiet): (Device, bool),
) -> Result<Vec<Vec<f64>>> {
    let ks = &s.eval_steps;
    let mut errors = vec![vec![f64::NAN; ks.len()]; models.len()];
    let (t_all, mut said) = (Instant::now(), Instant::now());
    // Models done; batches seen, and of them read as kept before.
    let (mut done, mut batches_seen, mut read) = (0usize, 0usize, 0usize);
    for &d in dims {
        let mut idx: Vec<usize> = (0..models.len()).filter(|&i| models[i].2 == d).collect();
        if idx.is_empty() {
            continue;
        }
        // The limit and the task, made when a batch of this D has to be trained (none when
        // every batch is kept).
        let mut ready: Option<(Limit, (Tensor, Tensor, Tensor))> = None;
        let lim_key = limit_key(d, &s.dynamics, &s.task, &s.limit);
        // Similar shapes together, so that padding to the batch's largest L and M wastes little.
        idx.sort_by_key(|&i| {
            (
                (models[i].0 as f64).log2().floor() as i64,
                models[i].1,
                models[i].0,
            )
        });
        for chunk in idx.chunks(batch_size(s, device)) {
            batches_seen += 1;
            let seeds: Vec<i64> = chunk.iter().map(|&i| model_seed(s, i)).collect();
            let shapes: Vec<(i64, i64)> =
                chunk.iter().map(|&i| (models[i].0, models[i].1)).collect();
            let key = spec_key(&BatchKey {
                version: 2,
                device: device_kind(device),
                limit: &lim_key,
                seeds: &seeds,
                shapes: &shapes,
                eval_steps: ks,
            });
            let counts = (chunk.len(), ks.len());
            let (batch_errors, how) = match kept.map(|dir| read_kept(dir, &key, counts)) {
                Some(Ok(Some(e))) => {
                    read += 1;
                    (e, "kept before".to_string())
                }
                Some(Err(e)) => return Err(e),
                _ => {
                    if ready.is_none() {
                        let lim = limit(d, &s.dynamics, &s.task, &s.limit, device, quiet)?;
                        ready = Some((lim, train_and_test(&s.task, d, device)));
                    }
                    let (lim, data) = ready.as_ref().expect("made above");
                    let trained = train_errors(s, (d, &shapes), (&seeds, batches_seen), data, lim)?;
                    if let Some(dir) = kept {
                        keep(dir, &key, &trained.0)?;
                    }
                    trained
                }
            };
            for (j, &i) in chunk.iter().enumerate() {
                errors[i] = batch_errors[j].clone();
            }
            done += chunk.len();
            // A line every 10 s and at each D's end, not one per batch (2100 at batches of 1).
            let last_of_d = chunk.last() == idx.last();
            if !quiet && (last_of_d || said.elapsed().as_secs() >= 10) {
                said = Instant::now();
                eprintln!(
                    "C5: {done}/{} models, batches {} trained and {read} kept before (D = {d}, \
                     the last of {} {how}), {:.0} s",
                    models.len(),
                    batches_seen - read,
                    chunk.len(),
                    t_all.elapsed().as_secs_f64()
                );
            }
        }
    }
    Ok(errors)
}

/// Models per batched program: the figure's `batch`, else 1 on a CPU (no model is padded and
/// its activations stay in cache: C5 at smoke 41.5 s against 96.2 s in batches of 32,
/// BENCHMARKS.md 2026-12-03) and 32 on a GPU (kernel launches bound it). The errors do not
/// depend on it but through float rounding (see [`model_seed`]).
fn batch_size(s: &ErrorSweepFig, device: Device) -> usize {
    s.batch.unwrap_or(match device {
        Device::Cpu => 1,
        _ => 32,
    })
}

/// The seed model `i` (its index in the sweep) is drawn from, alone
/// ([`TwoLayerResNet::new_each`]): the same whatever batch it trains in.
fn model_seed(s: &ErrorSweepFig, i: usize) -> i64 {
    s.seed as i64 * 1_000_003 + i as i64
}

/// One batch of models (L, M in `shapes`, dimension `d`), each drawn from its seed in `seeds`,
/// trained on the task `data` (x, y, x_test) as C5's `batch_no`-th batch:
/// errors[model][index in eval_steps] against the limit `lim`, and how the batch was padded.
fn train_errors(
    s: &ErrorSweepFig,
    (d, shapes): (i64, &[(i64, i64)]),
    (seeds, batch_no): (&[i64], usize),
    (x, y, xt): &(Tensor, Tensor, Tensor),
    lim: &Limit,
) -> Result<(Vec<Vec<f64>>, String)> {
    let specs: Vec<TwoLayerSpec> = (shapes.iter())
        .map(|&(l, m)| s.dynamics.model(l, m, d))
        .collect();
    let mut net = TwoLayerResNet::new_each(&specs, seeds, x.device());
    let (_, outs) = train_batch(&mut net, (x, y, xt), s.dynamics.steps, batch_no as i64)?;
    let per_k: Vec<Vec<f64>> = (s.eval_steps.iter())
        .map(|k| rms_error(&outs[k], &lim.outputs[k]))
        .collect();
    let errors = (0..shapes.len())
        .map(|j| per_k.iter().map(|ek| ek[j]).collect())
        .collect();
    let m = specs.iter().map(|s| s.width).max().unwrap_or(0);
    Ok((errors, format!("padded to L = {}, M = {m}", net.depth())))
}

// Long on purpose: one scatter plot whose series (per k, outside the theory, the diagonal) and
// axis range are built together.
/// Measured against predicted error, one colour per k, the models outside the theory in grey.
#[allow(clippy::too_many_lines)]
fn plot(
    fig: &Figure,
    s: &ErrorSweepFig,
    out: &Path,
    (models, errors, fits): (&[Shape], &[Vec<f64>], &[RateFit]),
    dims: &[i64],
) -> Result<()> {
    let ks = &s.eval_steps;
    let predicted = |ki: usize, (i, &(l, m, d)): (usize, &Shape)| {
        (
            fits[ki].predict(l as f64, m as f64, d as f64),
            errors[i][ki],
        )
    };
    let mut series = Vec::new();
    let mut lo = f64::INFINITY;
    let mut hi: f64 = 0.0;
    for (ki, k) in ks.iter().enumerate() {
        let c = crate::report::plot::color(ki);
        let pts: Vec<(f64, f64)> = models
            .iter()
            .enumerate()
            .filter(|(_, md)| !outside(s, md))
            .map(|im| predicted(ki, im))
            .collect();
        for p in &pts {
            if p.0 > 0.0 && p.1 > 0.0 {
                lo = lo.min(p.0.min(p.1));
                hi = hi.max(p.0.max(p.1));
            }
        }
        series.push(
            Series::new(format!("k = {k}"), pts)
                .rgb((c.0, c.1, c.2))
                .scatter(),
        );
    }
    let out_pts: Vec<(f64, f64)> = models
        .iter()
        .enumerate()
        .filter(|(_, md)| outside(s, md))
        .map(|im| predicted(ks.len() - 1, im))
        .collect();
    if !out_pts.is_empty() {
        series.push(
            Series::new(
                format!(
                    "D/(LM) > {} (outside the theory), k = {}",
                    s.outside,
                    ks[ks.len() - 1]
                ),
                out_pts,
            )
            .rgb((170, 170, 170))
            .scatter(),
        );
    }
    if lo.is_finite() && hi > 0.0 {
        series.push(Series::new("measured = predicted", vec![(lo, lo), (hi, hi)]).rgb((0, 0, 0)));
    }
    multi_panel(
        &out.join(&fig.stem),
        &format!(
            "{}: {} ResNets, L ∈ [{}, {}], M ∈ [{}, {}], D ∈ [{}, {}]",
            fig.figure,
            s.models,
            s.depth[0],
            s.depth[1],
            s.width[0],
            s.width[1],
            dims[0],
            dims[dims.len() - 1]
        ),
        &[Panel {
            spec: PlotSpec::new(
                "RMS error vs a_k/L + b_k√(D/(LM)) (fitted per k)",
                "predicted error",
                "measured error",
            )
            .log_x(true)
            .log_y(true),
            series,
        }],
    )?;
    Ok(())
}

/// The text: the fit per k and the free power law per k.
fn report(
    fig: &Figure,
    s: &ErrorSweepFig,
    models: &[Shape],
    errors: &[Vec<f64>],
    fits: &[RateFit],
) -> String {
    let ks = &s.eval_steps;
    let mut table = Table::new(
        format!(
            "Fit per k over the {} models with D/(LM) ≤ {}",
            models.iter().filter(|md| !outside(s, md)).count(),
            s.outside
        ),
        vec![
            "k".into(),
            "a_k".into(),
            "b_k".into(),
            "b_k / a_k".into(),
            "R² (log)".into(),
        ],
    );
    for (ki, k) in ks.iter().enumerate() {
        let f = &fits[ki];
        table.push(vec![
            k.to_string(),
            format!("{:.4}", f.a),
            format!("{:.4}", f.b),
            format!("{:.3}", f.b / f.a),
            format!("{:.3}", f.r2),
        ]);
    }
    let mut text = format!(
        "Figure: {}.svg/png; data errors.csv ({} models × {} steps), init.csv (the same models at k = 0).\n\n{}",
        fig.stem,
        models.len(),
        ks.len(),
        table.to_markdown()
    );
    text += "\nFree power law err ∝ L^p_L · M^p_M · D^p_D over the same models (the rate's \
             terms predict p_L between −1 and −1/2, p_M between 0 and −1/2, p_D between 0 and 1/2):\n\n";
    for (ki, k) in ks.iter().enumerate() {
        if let Some((pl, pm, pd)) = free_exponents(&inside_points(s, models, errors, ki)) {
            text += &format!("- k = {k}: p_L = {pl:.3}, p_M = {pm:.3}, p_D = {pd:.3}\n");
        }
    }
    text
}
