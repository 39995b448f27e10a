//! Study C5D, `kind: d-law`: where does the error grow like √D? The bound of Chizat (2025,
//! arXiv:2509.10167) is a/L + b·√D/√(LM); our C5 measures about D (docs/chizat2025.md,
//! "Departures"). This study runs C5's sweep (the same random shapes) in every setting of
//! training points n × target × step size η and reports, per setting and recorded step k, the
//! free power law err ∝ L^p_L·M^p_M·D^p_D over the models with D/(LM) ≤ 1 with percentile
//! bootstrap 95 % intervals (models resampled), beside the limit's training loss per D (whether
//! the limit interpolates its n points).
//!
//! Each setting's errors are kept in `settings/errors-<key>.csv` under the output directory
//! (the key: SHA-256 of everything that determines them), so a rerun of an interrupted study
//! trains only the settings it had not finished, and gives the same numbers.
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::Path;
use tch::Device;

use super::error_sweep::{at_init, inside_points, measure_errors, sample_shapes, Shape};
use super::fit::free_exponents;
use super::limit::limit;
use super::output::write_csv;
use super::spec::{DLawFig, Dynamics, ErrorSweepFig, Figure, Target, TaskSpec};
use crate::report::acceptance::Acceptance;
use crate::report::plot::{multi_panel, Panel, PlotSpec, Series};
use crate::report::stats::bootstrap95;
use crate::report::table::Table;
use crate::util::key::spec_key;

/// An exponent: its least-squares estimate and bootstrap 95 % interval.
#[derive(Debug, Clone, Copy)]
struct Interval {
    est: f64,
    lo: f64,
    hi: f64,
}

impl Interval {
    fn text(&self) -> String {
        format!("{:.2} [{:.2}, {:.2}]", self.est, self.lo, self.hi)
    }
}

/// The results of one setting (n, target, η).
struct Setting {
    n: i64,
    target: Target,
    eta: f64,
    /// (p_L, p_M, p_D) and the number of models fitted, per recorded step (None: no fit).
    exponents: Vec<Option<([Interval; 3], usize)>>,
    /// p_D(k) − p_D(0): what training adds to the exponent at initialization, per step.
    growth: Vec<Option<Interval>>,
    /// The limit's training loss at k = 0 and k = K, per D.
    limit_loss: Vec<(i64, f64, f64)>,
}

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
    let ks = &s.sweep.eval_steps;
    let init = init_errors(s, &shapes, &dims, out, device, quiet)?;
    let mut settings = Vec::new();
    let mut error_rows = Vec::new();
    for &target in &s.targets {
        for &eta in &s.etas {
            for &n in &s.train_points {
                let sw = s.setting(n, target, eta);
                if !quiet {
                    eprintln!("C5D: n = {n}, target {}, η = {eta}", target_name(target));
                }
                let errors = setting_errors(&sw, &shapes, &dims, out, device, quiet)?;
                for (i, &(l, m, d)) in shapes.iter().enumerate() {
                    for (ki, k) in ks.iter().enumerate() {
                        error_rows.push(format!(
                            "{n},{},{eta},{i},{l},{m},{d},{k},{:e}",
                            target_name(target),
                            errors[i][ki]
                        ));
                    }
                }
                let exponents = (0..ks.len())
                    .map(|ki| exponents(&inside_points(&sw, &shapes, &errors, ki), s))
                    .collect();
                let at_init = inside_points(&sw, &shapes, &init, 0);
                let growth = (0..ks.len())
                    .map(|ki| {
                        let now = inside_points(&sw, &shapes, &errors, ki);
                        growth(
                            &now.into_iter()
                                .zip(at_init.iter().copied())
                                .collect::<Vec<_>>(),
                            s,
                        )
                    })
                    .collect();
                let mut limit_loss = Vec::new();
                for &d in &dims {
                    let lim = limit(d, &sw.dynamics, &sw.task, &sw.limit, device, true)?;
                    let k_last = sw.dynamics.steps as i64;
                    limit_loss.push((
                        d,
                        lim.loss.double_value(&[0]),
                        lim.loss.double_value(&[k_last]),
                    ));
                }
                settings.push(Setting {
                    n,
                    target,
                    eta,
                    exponents,
                    growth,
                    limit_loss,
                });
            }
        }
    }
    write_csv(
        &out.join("errors.csv"),
        "n,target,eta,model,L,M,D,k,error",
        &error_rows,
    )?;
    let init_fit = exponents(&inside_points(&s.sweep, &shapes, &init, 0), s);
    write_tables(s, out, &settings, init_fit)?;
    plot(fig, s, out, &settings, init_fit)?;
    Ok((
        report(fig, s, &shapes, &settings, init_fit),
        acceptance(s, &settings),
    ))
}

/// `three-coords` / `one-direction`, as in the figure files.
fn target_name(t: Target) -> &'static str {
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

/// Everything that determines one setting's errors; its [`spec_key`] names the cached file.
#[derive(Clone, Copy, Serialize)]
struct SettingKey<'a> {
    /// Bump when the training or the error changes.
    version: u32,
    shapes: &'a [Shape],
    eval_steps: &'a [usize],
    batch: usize,
    seed: u64,
    dynamics: Dynamics,
    task: TaskSpec,
    limit: (i64, i64, i64, u64),
}

const FIX: &str = "delete it to recompute that setting";

/// One setting's errors[model][index in eval_steps]: read from `out/settings/` when this
/// setting finished before, else measured (C5's [`measure_errors`]) and kept there.
fn setting_errors(
    sw: &ErrorSweepFig,
    shapes: &[Shape],
    dims: &[i64],
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<Vec<Vec<f64>>> {
    let key = spec_key(&SettingKey {
        version: 1,
        shapes,
        eval_steps: &sw.eval_steps,
        batch: sw.batch,
        seed: sw.seed,
        dynamics: sw.dynamics,
        task: sw.task,
        limit: (
            sw.limit.depth,
            sw.limit.width,
            sw.limit.models,
            sw.limit.seed,
        ),
    });
    let path = out
        .join("settings")
        .join(format!("errors-{}.csv", &key[..16]));
    if path.exists() {
        if !quiet {
            eprintln!("C5D: {} (finished before)", path.display());
        }
        return read_errors(&path, &key, shapes.len(), sw.eval_steps.len());
    }
    let errors = measure_errors(sw, shapes, dims, device, quiet)?;
    let rows: Vec<String> = errors
        .iter()
        .map(|e| {
            e.iter()
                .map(|v| format!("{v:e}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    std::fs::create_dir_all(path.parent().expect("settings/ has a parent"))
        .with_context(|| format!("{}: cannot create", out.join("settings").display()))?;
    write_csv(&path, &format!("# key {key}"), &rows)?;
    Ok(errors)
}

/// Reads a setting's cached errors, refusing another setting's file or a damaged one.
fn read_errors(path: &Path, key: &str, models: usize, steps: usize) -> Result<Vec<Vec<f64>>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read ({FIX})", path.display()))?;
    let mut lines = text.lines();
    let stored = lines.next().unwrap_or_default();
    if stored != format!("# key {key}") {
        bail!(
            "{}: the errors of another setting (first line {stored:?}, expected \"# key {key}\") ({FIX})",
            path.display()
        );
    }
    let errors: Vec<Vec<f64>> = lines
        .map(|l| {
            l.split(',')
                .map(|v| v.parse::<f64>())
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: not a number ({FIX})", path.display()))?;
    if errors.len() != models || errors.iter().any(|e| e.len() != steps) {
        bail!(
            "{}: expected {models} rows of {steps} errors, found {} rows ({FIX})",
            path.display(),
            errors.len()
        );
    }
    Ok(errors)
}

/// exponents.csv (one row per setting and k) and limits.csv (the limit's loss per D).
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
fn write_tables(
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
fn plot(
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
                let mine = settings
                    .iter()
                    .filter(|st| st.target == target && st.eta == eta);
                let pts: Vec<(f64, f64, f64)> = mine
                    .filter_map(|st| st.exponents[ki].map(|(p, _)| (st.n as f64, p[2].lo, p[2].hi)))
                    .collect();
                let est = settings
                    .iter()
                    .filter(|st| st.target == target && st.eta == eta)
                    .filter_map(|st| st.exponents[ki].map(|(p, _)| (st.n as f64, p[2].est)))
                    .collect();
                series
                    .push(Series::new(format!("{}, η = {eta}", target_name(target)), est).rgb(rgb));
                for (n, lo, hi) in pts {
                    series.push(
                        Series::new("", vec![(n, lo), (n, hi)])
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
fn report(
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
fn acceptance(s: &DLawFig, settings: &[Setting]) -> Acceptance {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of a setting's key changes it (so a kept setting is never read for another),
    /// and where the study's output lives does not enter it.
    #[test]
    fn every_setting_changes_the_key_of_kept_errors() {
        let shapes: Vec<Shape> = vec![(2, 3, 4), (5, 6, 2)];
        let other_shapes: Vec<Shape> = vec![(2, 3, 4), (5, 6, 4)];
        let base = SettingKey {
            version: 1,
            shapes: &shapes,
            eval_steps: &[10, 100],
            batch: 40,
            seed: 0,
            dynamics: Dynamics::default(),
            task: TaskSpec::default(),
            limit: (256, 128, 1, 0),
        };
        let key = |k: &SettingKey| spec_key(k);
        let b = key(&base);
        let changed = [
            key(&SettingKey { version: 2, ..base }),
            key(&SettingKey {
                shapes: &other_shapes,
                ..base
            }),
            key(&SettingKey {
                eval_steps: &[10, 30],
                ..base
            }),
            key(&SettingKey { batch: 32, ..base }),
            key(&SettingKey { seed: 1, ..base }),
            key(&SettingKey {
                dynamics: Dynamics {
                    eta: 0.25,
                    ..base.dynamics
                },
                ..base
            }),
            key(&SettingKey {
                dynamics: Dynamics {
                    steps: 0,
                    ..base.dynamics
                },
                ..base
            }),
            key(&SettingKey {
                task: TaskSpec {
                    train: 2048,
                    ..base.task
                },
                ..base
            }),
            key(&SettingKey {
                task: TaskSpec {
                    target: Target::OneDirection,
                    ..base.task
                },
                ..base
            }),
            key(&SettingKey {
                limit: (256, 64, 1, 0),
                ..base
            }),
            key(&SettingKey {
                limit: (256, 128, 1, 1),
                ..base
            }),
        ];
        for (i, k) in changed.iter().enumerate() {
            assert_ne!(k, &b, "change {i} kept the key");
        }
        let unique: std::collections::BTreeSet<_> = changed.iter().collect();
        assert_eq!(unique.len(), changed.len());
    }

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
