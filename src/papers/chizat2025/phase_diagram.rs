//! C4, `kind: phase-diagram`: local feature updates over (σ_u = D^a, γ) for several D, the
//! exponent of each update in D, the regions (lazy, sub-critical, critical, super-critical)
//! they imply and the theoretical boundaries.
use anyhow::Result;
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

use super::fit::loglog_slope;
use super::gd::train;
use super::output::{to_vec, write_csv};
use super::spec::{Figure, PhaseDiagramFig};
use super::task::train_and_test;
use crate::model::two_layer_resnet::{TwoLayerResNet, TwoLayerSpec};
use crate::report::acceptance::{Acceptance, Check};
use crate::report::heatmap::{Heatmap, NanAs};
use crate::report::table::Table;

/// Per-model local feature updates after training (see [`phase_diagram`]).
fn feature_updates(
    (u, v): (&[Tensor], &[Tensor]),
    (u0, v0): (&[Tensor], &[Tensor]),
    x: &Tensor,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let _g = tch::no_grad_guard();
    let (mut dpre, mut pre0, mut du, mut u0s, mut div) = (None, None, None, None, None);
    let add = |acc: &mut Option<Tensor>, t: Tensor| {
        *acc = Some(match acc.take() {
            None => t,
            Some(a) => a + t,
        })
    };
    for l in 0..u.len() {
        // pre-activation change ⟨v_K − v_0, x_i⟩ against ⟨v_0, x_i⟩, RMS over units and inputs
        let dv = &v[l] - &v0[l];
        add(
            &mut dpre,
            x.matmul(&dv.transpose(1, 2))
                .square()
                .mean_dim([1, 2].as_slice(), false, Kind::Float),
        );
        add(
            &mut pre0,
            x.matmul(&v0[l].transpose(1, 2)).square().mean_dim(
                [1, 2].as_slice(),
                false,
                Kind::Float,
            ),
        );
        // output-direction change of u: (u_K − u_0)·e_1 against u_0·e_1
        add(
            &mut du,
            (&u[l] - &u0[l])
                .select(2, 0)
                .square()
                .mean_dim(1, false, Kind::Float),
        );
        add(
            &mut u0s,
            u0[l].select(2, 0).square().mean_dim(1, false, Kind::Float),
        );
        // diversity: 1 − mean |cos| between the trained v of distinct units of the layer
        let vn = &v[l] / (v[l].norm_scalaropt_dim(2, [2].as_slice(), true) + 1e-12);
        let m = vn.size()[1] as f64;
        let cos = vn.bmm(&vn.transpose(1, 2)).abs().sum_dim_intlist(
            [1, 2].as_slice(),
            false,
            Kind::Float,
        );
        add(&mut div, 1.0 - (cos - m) / (m * (m - 1.0)).max(1.0));
    }
    let l = u.len() as f64;
    let ratio = |a: Option<Tensor>, b: Option<Tensor>| to_vec(&(a.unwrap() / b.unwrap()).sqrt());
    (
        ratio(dpre, pre0),
        ratio(du, u0s),
        to_vec(&(div.unwrap() / l)),
    )
}

/// Per model, the quantities measured at one D: Δpre after step 1, Δu after step 1, Δpre after
/// K, Δu after K, diversity after K, the first step's output change through v.
type Measured = [f64; 6];

/// The measured exponents in D and the maps over the (γ, a) grid, `[γ index][a index]`.
struct Grids {
    /// e_v, e_u, e_f after the first step; e_v after K steps.
    ev: Vec<Vec<f64>>,
    eu: Vec<Vec<f64>>,
    ef: Vec<Vec<f64>>,
    ev_k: Vec<Vec<f64>>,
    /// 0 lazy, 1 sub-critical, 2 critical, 3 super-critical.
    phase: Vec<Vec<f64>>,
    /// Feature diversity and log10 of the v update after K steps, at the largest D.
    diversity: Vec<Vec<f64>>,
    big_dv: Vec<Vec<f64>>,
}

pub(super) fn phase_diagram(
    fig: &Figure,
    s: &PhaseDiagramFig,
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<(String, Acceptance)> {
    let a_s = s.sigma_u_exponents.values();
    let gammas = s.gammas.values();
    let mut measured: Vec<Vec<Measured>> = Vec::new();
    let mut csv = Vec::new();
    for &d in &s.dims {
        measured.push(measure_dim(s, d, (&a_s, &gammas), device, quiet, &mut csv)?);
    }
    write_csv(
        &out.join("updates.csv"),
        "D,a,gamma,repetition,step1_output_change_v,step1_update_v,step1_update_u,update_v,update_u,\
         diversity,loss_initial,loss_final",
        &csv,
    )?;
    let grids = exponent_grids(s, &measured, a_s.len(), gammas.len());
    write_maps(fig, s, out, (&a_s, &gammas), &grids)?;
    Ok((
        report(fig, s, (&a_s, &gammas), &grids),
        acceptance((&a_s, &gammas), &grids),
    ))
}

/// The theory's feature-update exponent as a check where it applies: over the cells with
/// σ_u = D^a below 1 (a < 0), the measured e_v follows a + 1/2 − γ (mean absolute gap). Where
/// a ≥ 0 and γ is large the branch is already huge at initialization and the exponents leave
/// the one-step theory (docs/chizat2025.md).
fn acceptance((a_s, gammas): (&[f64], &[f64]), g: &Grids) -> Acceptance {
    let mut gaps = Vec::new();
    for (gi, &gm) in gammas.iter().enumerate() {
        for (ai, &a) in a_s.iter().enumerate() {
            if a < 0.0 {
                gaps.push((g.ev[gi][ai] - (a + 0.5 - gm)).abs());
            }
        }
    }
    let mean = if gaps.is_empty() {
        f64::NAN
    } else {
        gaps.iter().sum::<f64>() / gaps.len() as f64
    };
    let mut acc = Acceptance::default();
    acc.push(Check::new(
        format!(
            "mean |e_v − (a + 1/2 − γ)| over the {} cells with a < 0",
            gaps.len()
        ),
        mean,
        0.0,
        0.2,
    ));
    acc
}

/// Trains every cell's models at dimension `d` (one batched program) and measures them; appends
/// one CSV row per model to `csv`.
fn measure_dim(
    s: &PhaseDiagramFig,
    d: i64,
    (a_s, gammas): (&[f64], &[f64]),
    device: Device,
    quiet: bool,
    csv: &mut Vec<String>,
) -> Result<Vec<Measured>> {
    let reps = s.repetitions as usize;
    let t0 = Instant::now();
    let (x, y, xt) = train_and_test(&s.task, d, device);
    let mut specs = Vec::new();
    for &g in gammas {
        for &a in a_s {
            for _ in 0..reps {
                specs.push(TwoLayerSpec {
                    sigma_u: (d as f64).powf(a),
                    gamma: g,
                    ..s.dynamics.model(s.depth, s.width, d)
                });
            }
        }
    }
    tch::manual_seed(s.seed as i64 * 7919 + d);
    let mut net = TwoLayerResNet::new(&specs, device);
    let copy = |ts: &[Tensor]| ts.iter().map(|t| t.copy()).collect::<Vec<_>>();
    let (u0, v0) = (copy(&net.u), copy(&net.v));
    let f0 = tch::no_grad(|| net.forward(&xt));
    let mut first: Option<(Vec<Tensor>, Vec<Tensor>)> = None;
    let (loss, _) = train(&mut net, &x, &y, &xt, s.dynamics.steps, |k, n| {
        if k == 1 {
            first = Some((copy(&n.u), copy(&n.v)));
        }
    })?;
    let (u1, v1) = first.expect("at least one step");
    // The first step's change of the output through v alone, f(u_0, v_1) − f(u_0, v_0), on
    // held-out inputs: how much the moved features change the function.
    let fv = {
        let (uk, vk) = (
            std::mem::replace(&mut net.u, copy(&u0)),
            std::mem::replace(&mut net.v, copy(&v1)),
        );
        let f = tch::no_grad(|| net.forward(&xt));
        (net.u, net.v) = (uk, vk);
        f
    };
    let feat_out = to_vec(&(fv - &f0).square().mean_dim(1, false, Kind::Float).sqrt());
    let (dpre1, du1, _) = feature_updates((&u1, &v1), (&u0, &v0), &x);
    let (dpre, du, div) = feature_updates((&net.u, &net.v), (&u0, &v0), &x);
    let l0 = to_vec(&loss.get(0));
    let lk = to_vec(&loss.get(s.dynamics.steps as i64));
    let mut cells = Vec::new();
    for (i, sp) in specs.iter().enumerate() {
        let a = (sp.sigma_u.ln() / (d as f64).ln() * 1e6).round() / 1e6;
        csv.push(format!(
            "{d},{a},{},{},{:.6e},{:.6e},{:.6e},{:.6e},{:.6e},{:.6e},{:.6e},{:.6e}",
            sp.gamma,
            i % reps,
            feat_out[i],
            dpre1[i],
            du1[i],
            dpre[i],
            du[i],
            div[i],
            l0[i],
            lk[i]
        ));
        cells.push([dpre1[i], du1[i], dpre[i], du[i], div[i], feat_out[i]]);
    }
    if !quiet {
        eprintln!(
            "C4: D = {d}: {} models trained in {:.1} s",
            specs.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(cells)
}

/// The exponents in D of each cell (log-log slopes of geometric means over the repetitions) and
/// the phase they imply.
fn exponent_grids(s: &PhaseDiagramFig, measured: &[Vec<Measured>], na: usize, ng: usize) -> Grids {
    let reps = s.repetitions as usize;
    let dims: Vec<f64> = s.dims.iter().map(|&d| d as f64).collect();
    let grid = || vec![vec![0.0; na]; ng];
    let mut g = Grids {
        ev: grid(),
        eu: grid(),
        ef: grid(),
        ev_k: grid(),
        phase: grid(),
        diversity: grid(),
        big_dv: grid(),
    };
    let tol = s.tolerance;
    for gi in 0..ng {
        for ai in 0..na {
            let cell = gi * na + ai;
            // Geometric mean over the repetitions of quantity q at dims[di].
            let mean_over = |di: usize, q: usize| {
                let v: Vec<f64> = (0..reps)
                    .map(|r| measured[di][cell * reps + r][q])
                    .collect();
                (v.iter().map(|x| x.max(1e-300).ln()).sum::<f64>() / reps as f64).exp()
            };
            let exponent = |q: usize| {
                let pts: Vec<(f64, f64)> = (0..dims.len())
                    .map(|di| (dims[di], mean_over(di, q)))
                    .collect();
                loglog_slope(&pts)
            };
            g.ev[gi][ai] = exponent(0);
            g.eu[gi][ai] = exponent(1);
            g.ev_k[gi][ai] = exponent(2);
            g.ef[gi][ai] = exponent(5);
            let last = dims.len() - 1;
            g.diversity[gi][ai] = mean_over(last, 4);
            g.big_dv[gi][ai] = mean_over(last, 2).log10();
            g.phase[gi][ai] = phase_of(g.ev[gi][ai], g.ef[gi][ai], tol);
        }
    }
    g
}

/// The phase of a cell from its exponents e_v, e_f: 0 lazy, 1 sub-critical, 2 critical,
/// 3 super-critical.
fn phase_of(v: f64, b: f64, tol: f64) -> f64 {
    if !(v.is_finite() && b.is_finite()) || v > tol || b > tol {
        3.0
    } else if v < -tol {
        0.0
    } else if b < -tol {
        1.0
    } else {
        2.0
    }
}

/// The heatmaps: phases, each exponent, diversity and update size, with the theory lines.
// Long: most of it is the list of the seven maps (file suffix, title, values, range, label).
#[allow(clippy::too_many_lines)]
fn write_maps(
    fig: &Figure,
    s: &PhaseDiagramFig,
    out: &Path,
    (a_s, gammas): (&[f64], &[f64]),
    g: &Grids,
) -> Result<()> {
    let (na, ng) = (a_s.len(), gammas.len());
    let tol = s.tolerance;
    let (amin, amax) = (a_s[0], a_s[na - 1]);
    let line = |f: &dyn Fn(f64) -> f64| -> Vec<(f64, f64)> {
        (0..=20)
            .map(|i| amin + (amax - amin) * i as f64 / 20.0)
            .map(|a| (a, f(a)))
            .collect()
    };
    let dmax = *s.dims.last().unwrap();
    let theory = vec![
        ("e_v = 0: γ = 1/2 + a".to_string(), line(&|a| 0.5 + a)),
        (
            "e_f = 0: a = 0".to_string(),
            vec![(0.0, gammas[0]), (0.0, gammas[ng - 1])],
        ),
    ];
    let hm = |title: String, values: Vec<Vec<f64>>, vmin: f64, vmax: f64, label: &str| Heatmap {
        title,
        x_label: "a (σ_u = D^a)".into(),
        y_label: "γ (residual scale D^γ/(LM))".into(),
        xs: a_s.to_vec(),
        ys: gammas.to_vec(),
        values,
        vmin,
        vmax,
        value_label: label.into(),
        curves: theory.clone(),
        nan: NanAs::Overflow,
    };
    let maps = [
        (
            String::new(),
            format!("phases from the measured exponents e_v, e_f (tolerance {tol})"),
            g.phase.clone(),
            (0.0, 3.0),
            "0 lazy, 1 sub-crit., 2 critical, 3 super",
        ),
        (
            "-exponent-f".into(),
            "exponent in D of the output change through v (step 1)".into(),
            g.ef.clone(),
            (-1.0, 1.0),
            "d log |Δ_v f| / d log D",
        ),
        (
            "-exponent-v".into(),
            "exponent in D of the v update (step 1)".into(),
            g.ev.clone(),
            (-1.0, 1.0),
            "d log Δ⟨v, x⟩ / d log D",
        ),
        (
            "-exponent-u".into(),
            "exponent in D of the u update (step 1)".into(),
            g.eu.clone(),
            (-1.0, 1.0),
            "d log Δ⟨u, e_1⟩ / d log D",
        ),
        (
            "-exponent-v-final".into(),
            format!(
                "exponent in D of the v update after K = {}",
                s.dynamics.steps
            ),
            g.ev_k.clone(),
            (-1.0, 1.0),
            "d log Δ⟨v, x⟩ / d log D",
        ),
        (
            "-diversity".into(),
            format!("feature diversity after training, D = {dmax}"),
            g.diversity.clone(),
            (0.0, 1.0),
            "1 − mean |cos(v_j, v_k)|",
        ),
        (
            "-update-v".into(),
            format!("log10 relative v update after training, D = {dmax}"),
            g.big_dv.clone(),
            (-2.0, 2.0),
            "log10 Δ⟨v, x⟩ / ⟨v, x⟩",
        ),
    ];
    for (suffix, title, values, (lo, hi), label) in maps {
        hm(format!("{}: {title}", fig.figure), values, lo, hi, label)
            .write(&out.join(format!("{}{suffix}", fig.stem)))?;
    }
    Ok(())
}

/// The text: what each cell measures, the phase table and the distance to the theory.
fn report(fig: &Figure, s: &PhaseDiagramFig, (a_s, gammas): (&[f64], &[f64]), g: &Grids) -> String {
    let (na, ng) = (a_s.len(), gammas.len());
    let (reps, tol) = (s.repetitions, s.tolerance);
    let names = ["lazy", "sub-critical", "critical", "super-critical"];
    let mut table = Table::new(
        "Phase per cell (rows γ, columns a in σ_u = D^a), with the measured exponents in D \
         e_v (v update) / e_f (output change through v) / e_u (u update), first step",
        std::iter::once("γ \\ a".to_string())
            .chain(a_s.iter().map(|a| format!("{a}")))
            .collect(),
    );
    for gi in (0..ng).rev() {
        let mut row = vec![format!("{}", gammas[gi])];
        for ai in 0..na {
            row.push(format!(
                "{} ({:+.2}/{:+.2}/{:+.2})",
                names[g.phase[gi][ai] as usize], g.ev[gi][ai], g.ef[gi][ai], g.eu[gi][ai]
            ));
        }
        table.push(row);
    }
    let mut text = format!(
        "Figure: {0}.svg/png (phases), {0}-exponent-f, {0}-exponent-v, {0}-exponent-u, \
         {0}-exponent-v-final, {0}-diversity, {0}-update-v; data updates.csv.\n\n",
        fig.stem
    );
    text += &format!(
        "Each cell trains {reps} model(s) of L = {}, M = {} for K = {} steps at each D in {:?} \
         and measures three exponents in D (log-log slopes of geometric means over the \
         repetitions), all after the first GD step: e_v of the local feature update, the RMS \
         change of the pre-activations ⟨v − v_0, x⟩ relative to ⟨v_0, x⟩; e_f of the output \
         change that the moved features cause, RMS f(u_0, v_1) − f(u_0, v_0) on held-out \
         inputs; e_u of u's output-direction change (u − u_0)·e_1 relative to u_0·e_1. Phases: \
         lazy (e_v < −{tol}: the features stop moving as D grows), critical MLU (|e_v| ≤ {tol} \
         and |e_f| ≤ {tol}: the features move O(1) and change the output O(1)), sub-critical \
         MLU (|e_v| ≤ {tol}, e_f < −{tol}: they move O(1) but their effect on the output \
         vanishes; the output is learned through u), super-critical (e_v or e_f > {tol}). \
         Theory for one step of λ = η/(s²LM) (our derivation, for a target that depends on a \
         fixed direction of x): e_v = a + 1/2 − γ, e_f = 2a, e_u = −a − γ; the lines e_v = 0 \
         and e_f = 0 cross at σ_u = Θ(1), s = √D/(LM): the only critical point. The 1/2 in \
         e_v holds with fewer training points than D (here n = {n}); with n ≫ D the features' \
         move follows e_v = a − γ (docs/chizat2025.md, Departures).\n\n",
        s.depth,
        s.width,
        s.dynamics.steps,
        s.dims,
        n = s.task.train
    );
    text += &table.to_markdown();
    let (mut err_v, mut err_f, mut err_u) = (0.0, 0.0, 0.0);
    for (gi, &gm) in gammas.iter().enumerate() {
        for (ai, &a) in a_s.iter().enumerate() {
            err_v += (g.ev[gi][ai] - (a + 0.5 - gm)).abs();
            err_f += (g.ef[gi][ai] - 2.0 * a).abs();
            err_u += (g.eu[gi][ai] + a + gm).abs();
        }
    }
    let n = (na * ng) as f64;
    text += &format!(
        "\nMean |measured − predicted| exponent over the {} cells: e_v {:.3}, e_f {:.3}, \
         e_u {:.3}.\n",
        na * ng,
        err_v / n,
        err_f / n,
        err_u / n
    );
    text
}

#[cfg(test)]
mod tests {
    use super::{acceptance, feature_updates, Grids};
    use tch::{Device, Kind, Tensor};

    /// C4's check on a hand-made grid: only the cells with a < 0 count, each by
    /// |e_v − (a + 1/2 − γ)|. Here a = −0.5 at γ = 0.5 and 1 (theory −0.5 and −1, measured
    /// −0.45 and −1.15: gaps 0.05 and 0.15, mean 0.1, passes); the a ≥ 0 cells, far off, are
    /// left out. Measured −0.2 and −1.3 (gaps 0.3 each) fail.
    #[test]
    fn the_c4_check_is_the_mean_gap_over_the_cells_with_a_below_0() {
        let row = |v: [f64; 3]| v.to_vec();
        let grids = Grids {
            ev: vec![row([-0.45, 9.0, 9.0]), row([-1.15, 9.0, 9.0])],
            eu: Vec::new(),
            ef: Vec::new(),
            ev_k: Vec::new(),
            phase: Vec::new(),
            diversity: Vec::new(),
            big_dv: Vec::new(),
        };
        let grid = (&[-0.5, 0.0, 0.5][..], &[0.5, 1.0][..]);
        let acc = acceptance(grid, &grids);
        let check = &acc.checks[0];
        assert!((check.value - 0.1).abs() < 1e-12, "{}", check.value);
        assert!(
            check.name.contains("over the 2 cells with a < 0"),
            "{}",
            check.name
        );
        assert!(check.passed());
        let far = Grids {
            ev: vec![row([-0.2, 0.0, 0.0]), row([-1.3, 0.0, 0.0])],
            ..grids
        };
        let check = &acceptance(grid, &far).checks[0];
        assert!(
            (check.value - 0.3).abs() < 1e-12 && !check.passed(),
            "{}",
            check.value
        );
    }

    /// The three measures of C4, element by element in f64 from their definitions: per model,
    /// Δpre = √(Σ_ℓ mean_{i,j} ⟨v_K − v_0, x_i⟩² / Σ_ℓ mean_{i,j} ⟨v_0, x_i⟩²) over units j
    /// and inputs i; Δu the same with the first output coordinate of u_{ℓ,j}; diversity the
    /// mean over layers of 1 − mean_{j≠k} |cos(v_{ℓ,j}, v_{ℓ,k})|.
    #[test]
    fn feature_updates_follow_their_definitions() {
        let (models, layers, m, d, n) = (2usize, 2usize, 3usize, 4usize, 5usize);
        let opts = (Kind::Float, Device::Cpu);
        let draw = || -> Vec<Tensor> {
            (0..layers)
                .map(|_| Tensor::randn([models as i64, m as i64, d as i64], opts))
                .collect()
        };
        tch::manual_seed(3);
        let (u0, v0, u, v) = (draw(), draw(), draw(), draw());
        let x = Tensor::randn([n as i64, d as i64], opts);
        let (dpre, du, div) = feature_updates((&u, &v), (&u0, &v0), &x);

        let at = |t: &Tensor, i: usize, j: usize, k: usize| {
            t.double_value(&[i as i64, j as i64, k as i64])
        };
        let xs = |i: usize, k: usize| x.double_value(&[i as i64, k as i64]);
        for p in 0..models {
            let (mut num, mut den, mut unum, mut uden, mut dsum) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for l in 0..layers {
                let (mut a, mut b) = (0.0, 0.0);
                for i in 0..n {
                    for j in 0..m {
                        let dot =
                            |w: &Tensor| (0..d).map(|k| at(w, p, j, k) * xs(i, k)).sum::<f64>();
                        let (now, start) = (dot(&v[l]), dot(&v0[l]));
                        a += (now - start).powi(2);
                        b += start.powi(2);
                    }
                }
                num += a / (n * m) as f64;
                den += b / (n * m) as f64;
                let (mut c, mut e) = (0.0, 0.0);
                for j in 0..m {
                    c += (at(&u[l], p, j, 0) - at(&u0[l], p, j, 0)).powi(2);
                    e += at(&u0[l], p, j, 0).powi(2);
                }
                unum += c / m as f64;
                uden += e / m as f64;
                let norm = |j: usize| {
                    (0..d)
                        .map(|k| at(&v[l], p, j, k).powi(2))
                        .sum::<f64>()
                        .sqrt()
                };
                let mut cos = 0.0;
                for j in 0..m {
                    for k in 0..m {
                        if j != k {
                            let dot: f64 = (0..d)
                                .map(|q| at(&v[l], p, j, q) * at(&v[l], p, k, q))
                                .sum();
                            cos += (dot / (norm(j) * norm(k))).abs();
                        }
                    }
                }
                dsum += 1.0 - cos / (m * (m - 1)) as f64;
            }
            let close = |got: f64, want: f64| (got / want - 1.0).abs() < 1e-5;
            assert!(
                close(dpre[p], (num / den).sqrt()),
                "Δpre {} vs {}",
                dpre[p],
                (num / den).sqrt()
            );
            assert!(
                close(du[p], (unum / uden).sqrt()),
                "Δu {} vs {}",
                du[p],
                (unum / uden).sqrt()
            );
            let want = dsum / layers as f64;
            assert!(close(div[p], want), "diversity {} vs {want}", div[p]);
        }
    }
}
