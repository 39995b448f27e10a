//! Study C5D, `kind: d-law`: where does the error grow like √D? The bound of Chizat (2025,
//! arXiv:2509.10167) is a/L + b·√D/√(LM); with n = 32 training points our C5 measured about D
//! (docs/chizat2025.md, "Where the √D law holds"). This study runs C5's sweep (the same random
//! shapes) in every setting of training points n × target × step size η and reports, per
//! setting and recorded step k, the free power law err ∝ L^p_L·M^p_M·D^p_D over the models with
//! D/(LM) ≤ 1 with percentile bootstrap 95 % intervals (models resampled), the same against the
//! models at initialization (k = 0, the control), and the limit's training loss per D (whether
//! the limit interpolates its n points).
//!
//! Each setting's errors are kept in `settings/errors-<key>.csv` under the output directory
//! (the key: SHA-256 of everything that determines them), so a rerun of an interrupted study
//! trains only the settings it had not finished, and gives the same numbers.
//!
//! Files: this one runs the settings and fits the exponents; [`kept`] keeps each finished
//! setting's errors by key; [`tables`] writes the CSV files, the plot, the text and the
//! measured lines.
mod kept;
mod tables;

use anyhow::Result;
use std::path::Path;
use tch::Device;

use super::error_sweep::{at_init, inside_points, sample_shapes, Shape};
use super::fit::free_exponents;
use super::limit::limit;
use super::output::write_csv;
use super::spec::{DLawFig, Figure, Target};
use crate::report::acceptance::Acceptance;
use crate::report::stats::bootstrap95;
use kept::setting_errors;

/// An exponent: its least-squares estimate and bootstrap 95 % interval.
#[derive(Debug, Clone, Copy)]
pub(super) struct Interval {
    pub(super) est: f64,
    pub(super) lo: f64,
    pub(super) hi: f64,
}

impl Interval {
    pub(super) fn text(&self) -> String {
        format!("{:.2} [{:.2}, {:.2}]", self.est, self.lo, self.hi)
    }
}

/// The results of one setting (n, target, η).
pub(super) struct Setting {
    pub(super) n: i64,
    pub(super) target: Target,
    pub(super) eta: f64,
    /// (p_L, p_M, p_D) and the number of models fitted, per recorded step (None: no fit).
    pub(super) exponents: Vec<Option<([Interval; 3], usize)>>,
    /// p_D(k) − p_D(0): what training adds to the exponent at initialization, per step.
    pub(super) growth: Vec<Option<Interval>>,
    /// The limit's training loss at k = 0 and k = K, per D.
    pub(super) limit_loss: Vec<(i64, f64, f64)>,
}

/// Runs study C5D (see the module doc): C5's shapes at initialization, then every setting
/// n × target × η ([`measure_setting`]); writes `errors.csv`, the tables and the plot, and
/// returns the report's text and its measured lines.
pub(super) fn d_law(
    fig: &Figure,
    s: &DLawFig,
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<(String, Acceptance)> {
    let shapes = sample_shapes(&s.sweep);
    let mut dims: Vec<i64> = shapes.iter().map(|sh| sh.2).collect();
    dims.sort();
    dims.dedup();
    let init = init_errors(s, &shapes, &dims, out, device, quiet)?;
    let mut settings = Vec::new();
    let mut error_rows = Vec::new();
    for &target in &s.targets {
        for &eta in &s.etas {
            for &n in &s.train_points {
                let at = (n, target, eta);
                let (setting, rows) =
                    measure_setting(s, at, (&shapes, &dims, &init), out, device, quiet)?;
                settings.push(setting);
                error_rows.extend(rows);
            }
        }
    }
    write_csv(
        &out.join("errors.csv"),
        "n,target,eta,model,L,M,D,k,error",
        &error_rows,
    )?;
    let init_fit = exponents(&inside_points(&s.sweep, &shapes, &init, 0), s);
    tables::write_tables(s, out, &settings, init_fit)?;
    tables::plot(fig, s, out, &settings, init_fit)?;
    Ok((
        tables::report(fig, s, &shapes, &settings, init_fit),
        tables::acceptance(s, &settings),
    ))
}

/// One setting (n training points, target, step size η): its models' errors (kept by key,
/// [`setting_errors`]) as rows of `errors.csv`, the exponents and their growth over the
/// errors at initialization `init` per recorded step, and the limit's training loss per D.
fn measure_setting(
    s: &DLawFig,
    (n, target, eta): (i64, Target, f64),
    (shapes, dims, init): (&[Shape], &[i64], &[Vec<f64>]),
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<(Setting, Vec<String>)> {
    let ks = &s.sweep.eval_steps;
    let sw = s.setting(n, target, eta);
    if !quiet {
        eprintln!("C5D: n = {n}, target {}, η = {eta}", target_name(target));
    }
    let errors = setting_errors(&sw, shapes, dims, out, device, quiet)?;
    let mut rows = Vec::new();
    for (i, &(l, m, d)) in shapes.iter().enumerate() {
        for (ki, k) in ks.iter().enumerate() {
            rows.push(format!(
                "{n},{},{eta},{i},{l},{m},{d},{k},{:e}",
                target_name(target),
                errors[i][ki]
            ));
        }
    }
    let exponents = (0..ks.len())
        .map(|ki| exponents(&inside_points(&sw, shapes, &errors, ki), s))
        .collect();
    let at_init = inside_points(&sw, shapes, init, 0);
    let growth = (0..ks.len())
        .map(|ki| {
            let now = inside_points(&sw, shapes, &errors, ki);
            growth(
                &now.into_iter()
                    .zip(at_init.iter().copied())
                    .collect::<Vec<_>>(),
                s,
            )
        })
        .collect();
    let mut limit_loss = Vec::new();
    for &d in dims {
        let lim = limit(d, &sw.dynamics, &sw.task, &sw.limit, device, true)?;
        let k_last = sw.dynamics.steps as i64;
        limit_loss.push((
            d,
            lim.loss.double_value(&[0]),
            lim.loss.double_value(&[k_last]),
        ));
    }
    let setting = Setting {
        n,
        target,
        eta,
        exponents,
        growth,
        limit_loss,
    };
    Ok((setting, rows))
}

/// `three-coords` / `one-direction`, as in the figure files.
pub(super) fn target_name(t: Target) -> &'static str {
    match t {
        Target::ThreeCoords => "three-coords",
        Target::OneDirection => "one-direction",
    }
}

/// The control: every model's error against the limit at initialization (k = 0), as
/// errors[model][0]. It is the same in every setting (the models, the limit and the held-out
/// inputs are seeded apart from n, the target and η), so it is measured once (no training).
fn init_errors(
    s: &DLawFig,
    shapes: &[Shape],
    dims: &[i64],
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<Vec<Vec<f64>>> {
    let sw = at_init(&s.setting(s.train_points[0], s.targets[0], s.etas[0]));
    if !quiet {
        eprintln!("C5D: the errors at initialization (k = 0)");
    }
    setting_errors(&sw, shapes, dims, out, device, quiet)
}

/// An error point: (L, M, D, error).
type Point = (f64, f64, f64, f64);

/// p_D at step k minus p_D at initialization over the same models (`pairs`: (at k, at 0)),
/// with its paired bootstrap interval (the models resampled together).
fn growth(pairs: &[(Point, Point)], s: &DLawFig) -> Option<Interval> {
    let diff = |p: &[(Point, Point)]| {
        let (now, init): (Vec<Point>, Vec<Point>) = p.iter().copied().unzip();
        Some([free_exponents(&now)?.2 - free_exponents(&init)?.2])
    };
    let est = diff(pairs)?[0];
    let [(lo, hi)] = bootstrap95(pairs, s.bootstrap, s.sweep.seed, diff)?;
    Some(Interval { est, lo, hi })
}

/// (p_L, p_M, p_D) with their bootstrap intervals over `points` (L, M, D, error).
fn exponents(points: &[Point], s: &DLawFig) -> Option<([Interval; 3], usize)> {
    let (pl, pm, pd) = free_exponents(points)?;
    let ci = bootstrap95(points, s.bootstrap, s.sweep.seed, |p| {
        free_exponents(p).map(|(a, b, c)| [a, b, c])
    })?;
    let iv = |est: f64, (lo, hi): (f64, f64)| Interval { est, lo, hi };
    Some(([iv(pl, ci[0]), iv(pm, ci[1]), iv(pd, ci[2])], points.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points from a known power law err = 0.2·L^−0.5·M^−0.5·D^0.5 with 20 % log-normal noise
    /// (closed form): the estimate is near each exponent and its 95 % interval contains it and
    /// excludes p_D = 1 (the D law); without noise the interval shrinks onto the exponent.
    #[test]
    fn exponents_and_intervals_recover_a_known_power_law() {
        let fig: DLawFig = serde_yaml::from_str(
            "sweep: {models: 1, depth: [1, 2], width: [1, 2], dims: [1, 2], eval_steps: [5]}\n\
             train_points: [32]\ntargets: [three-coords]\netas: [1.0]\nbootstrap: 500\n",
        )
        .unwrap();
        tch::manual_seed(3);
        let noise =
            Vec::<f64>::try_from(tch::Tensor::randn([300], (tch::Kind::Double, Device::Cpu)))
                .unwrap();
        let point = |i: usize, sd: f64| {
            let (l, m, d) = (
                (2 + i % 29) as f64,
                (1 + (i * 7) % 31) as f64,
                [2.0f64, 4.0, 8.0, 16.0][i % 4],
            );
            (
                l,
                m,
                d,
                0.2 * (l * m).powf(-0.5) * d.sqrt() * (sd * noise[i]).exp(),
            )
        };
        let noisy: Vec<_> = (0..300).map(|i| point(i, 0.2)).collect();
        let (p, n) = exponents(&noisy, &fig).unwrap();
        assert_eq!(n, 300);
        for (iv, truth) in p.iter().zip([-0.5, -0.5, 0.5]) {
            assert!(iv.lo < truth && truth < iv.hi, "{iv:?} vs {truth}");
            assert!(
                (iv.est - truth).abs() < 0.08 && iv.hi - iv.lo < 0.3,
                "{iv:?}"
            );
        }
        assert!(p[2].hi < 1.0, "the D law is excluded: {:?}", p[2]);
        let exact: Vec<_> = (0..300).map(|i| point(i, 0.0)).collect();
        let (p, _) = exponents(&exact, &fig).unwrap();
        assert!(p.iter().all(|iv| iv.hi - iv.lo < 1e-6), "{p:?}");
        assert!((p[2].est - 0.5).abs() < 1e-6);
    }
}
