//! `deepres scaling`: the forward and backward metrics of Marion et al., "Scaling ResNets in the
//! Large-depth Regime" (arXiv:2206.06929; docs/marion2022.md) at initialization, over depths L,
//! scalings β (α_L = L^-β), layer initializations and random models.
//!
//! For each model and input x (uniform on [0, 1]^{d_in}, target uniform on [0, 1]):
//! - forward:  ‖h_L − h_0‖ / ‖h_0‖;
//! - backward: ‖g_0 − g_L‖ / ‖g_L‖, g_k = ∂ℓ/∂h_k, ℓ = ‖B h_L − target‖² (the authors' loss),
//!   g_0 from g_L by the batched backward recursion (no autograd);
//! - output: the first coordinate of B h_L (Figure M2);
//! - ratio: ‖h_L‖ / ‖h_0‖ and grad_ratio: ‖g_0‖ / ‖g_L‖, the two quantities the authors'
//!   experiment_scaling_initialization.py histograms for Figure M2.
//!
//! Models are drawn in chunks of at most `chunk` and evaluated at once; all β of the list share
//! a chunk's models (one input row per (β, input)), so the weights are drawn once per depth.
//! Overflow is data: inf and NaN are written as such.
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

use crate::model::marion_net::{MarionModel, MarionNet, MarionShape};
use crate::model::scale::residual_scale;
use crate::model::weight_init::LayerInit;
use crate::util::fit::{fmt_sci, group_by_depth};

/// What to measure.
#[derive(Debug, Clone)]
pub struct ScalingSpec {
    pub model: MarionModel,
    pub inits: Vec<LayerInit>,
    pub depths: Vec<i64>,
    pub betas: Vec<f64>,
    pub width: i64,
    pub input_dim: i64,
    pub output_dim: i64,
    /// Random models per (init, depth).
    pub models: i64,
    /// Random inputs per model (and per β).
    pub inputs: i64,
    /// At most this many models in one batched pass.
    pub chunk: i64,
    pub seed: u64,
    pub device: Device,
}

impl ScalingSpec {
    /// Checks sizes and lists; errors name the option.
    pub fn validate(&self) -> Result<()> {
        if self.inits.is_empty() || self.depths.is_empty() || self.betas.is_empty() {
            bail!("init, depths and betas must each hold at least one value");
        }
        if let Some(d) = self.depths.iter().find(|&&d| d < 1) {
            bail!("depths: every depth L must be ≥ 1, got {d}");
        }
        if let Some(b) = self.betas.iter().find(|b| !b.is_finite()) {
            bail!("betas: every β must be a finite number, got {b}");
        }
        for (name, v) in [
            ("width", self.width),
            ("input_dim", self.input_dim),
            ("output_dim", self.output_dim),
            ("models", self.models),
            ("inputs", self.inputs),
            ("chunk", self.chunk),
        ] {
            if v < 1 {
                bail!("{name}: must be ≥ 1, got {v}");
            }
        }
        Ok(())
    }
}

/// One measurement (one model, one β, one input).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingRow {
    pub model: String,
    pub init: String,
    pub depth: i64,
    pub beta: f64,
    pub width: i64,
    /// Index of the random model within its (init, depth).
    pub sample: i64,
    pub input: i64,
    pub forward: f64,
    pub backward: f64,
    pub output: f64,
    /// ‖h_L‖ / ‖h_0‖ (NaN in a file written before it was measured).
    #[serde(default = "not_measured")]
    pub ratio: f64,
    /// ‖g_0‖ / ‖g_L‖ (NaN in a file written before it was measured).
    #[serde(default = "not_measured")]
    pub grad_ratio: f64,
}

fn not_measured() -> f64 {
    f64::NAN
}

/// Forward metric, backward metric, first output coordinate, ‖h_L‖/‖h_0‖ and ‖g_0‖/‖g_L‖ of
/// every (model, row): x `[models, rows, d_in]`, scale broadcast against `[models, rows, 1]`;
/// returns five `[models, rows]` f64 tensors.
pub fn measure(net: &MarionNet, x: &Tensor, target: &Tensor, scale: &Tensor) -> [Tensor; 5] {
    tch::no_grad(|| {
        let h0 = net.embed(x);
        let mut masks = Vec::with_capacity(net.depth() as usize);
        let hl = net.hidden(&h0, scale, Some(&mut masks));
        let out = net.output(&hl);
        // ℓ = ‖B h_L − target‖²: g_L = 2 (B h_L − target) B.
        let b = match net {
            MarionNet::Full(m) => &m.b,
            MarionNet::Simple(m) => &m.b,
        };
        let gl = (&out - target).matmul(b) * 2.0;
        let g0 = net.hidden_grad(&gl, scale, &masks);
        let norm = |t: &Tensor| {
            t.to_kind(Kind::Double)
                .square()
                .sum_dim_intlist([-1i64].as_slice(), false, Kind::Double)
                .sqrt()
        };
        let (n0, nl, g0n, gln) = (norm(&h0), norm(&hl), norm(&g0), norm(&gl));
        let fwd = norm(&(&hl - &h0)) / &n0;
        let bwd = norm(&(&g0 - &gl)) / &gln;
        let out0 = out.select(-1, 0).to_kind(Kind::Double);
        [fwd, bwd, out0, nl / n0, g0n / gln]
    })
}

/// Runs every (init, depth) of `spec`; returns the rows (also written to `csv` when given).
// One loop nest kept whole: the order of the random draws (weights, inputs, targets per chunk)
// is the measurements' reproducibility, and is easiest to check in one place.
#[allow(clippy::too_many_lines)]
pub fn run(spec: &ScalingSpec, csv: Option<&Path>, quiet: bool) -> Result<Vec<ScalingRow>> {
    spec.validate()?;
    tch::manual_seed(spec.seed as i64);
    let dev = spec.device;
    let nb = spec.betas.len() as i64;
    let mut rows = Vec::new();
    let start = Instant::now();
    for init in &spec.inits {
        for &depth in &spec.depths {
            let scales: Vec<f32> = spec
                .betas
                .iter()
                .flat_map(|&b| {
                    std::iter::repeat_n(residual_scale(depth, b) as f32, spec.inputs as usize)
                })
                .collect();
            let scale = Tensor::from_slice(&scales).view([1, -1, 1]).to_device(dev);
            let mut done = 0;
            // One set of weight buffers per (init, depth), redrawn in place for each chunk.
            let mut reuse: Option<MarionNet> = None;
            while done < spec.models {
                let models = spec.chunk.min(spec.models - done);
                let shape = MarionShape {
                    depth,
                    width: spec.width,
                    d_in: spec.input_dim,
                    d_out: spec.output_dim,
                };
                let net = match reuse.take() {
                    Some(mut net) if net.models() == models => {
                        net.redraw(*init);
                        net
                    }
                    _ => MarionNet::new(spec.model, models, shape, *init, dev),
                };
                // The same inputs and targets for every β of a model: `[models, β × inputs, _]`.
                let x = Tensor::rand([models, 1, spec.inputs, spec.input_dim], (Kind::Float, dev))
                    .expand([models, nb, spec.inputs, spec.input_dim], false)
                    .reshape([models, nb * spec.inputs, spec.input_dim]);
                let t = Tensor::rand(
                    [models, 1, spec.inputs, spec.output_dim],
                    (Kind::Float, dev),
                )
                .expand([models, nb, spec.inputs, spec.output_dim], false)
                .reshape([models, nb * spec.inputs, spec.output_dim]);
                let [f, b, o, r, g] = measure(&net, &x, &t, &scale);
                let to_vec = |t: Tensor| Vec::<f64>::try_from(t.to_device(Device::Cpu).view([-1]));
                let (f, b, o) = (to_vec(f)?, to_vec(b)?, to_vec(o)?);
                let (r, g) = (to_vec(r)?, to_vec(g)?);
                for i in 0..models {
                    for (bi, &beta) in spec.betas.iter().enumerate() {
                        for j in 0..spec.inputs {
                            let k = (i * nb * spec.inputs + bi as i64 * spec.inputs + j) as usize;
                            rows.push(ScalingRow {
                                model: spec.model.to_string(),
                                init: init.to_string(),
                                depth,
                                beta,
                                width: spec.width,
                                sample: done + i,
                                input: j,
                                forward: f[k],
                                backward: b[k],
                                output: o[k],
                                ratio: r[k],
                                grad_ratio: g[k],
                            });
                        }
                    }
                }
                done += models;
                reuse = Some(net);
            }
            if !quiet {
                eprintln!(
                    "scaling: {} init {init} L={depth}: {} models × {} β done ({:.1}s)",
                    spec.model,
                    spec.models,
                    nb,
                    start.elapsed().as_secs_f64()
                );
            }
        }
    }
    if let Some(path) = csv {
        write_rows(&rows, path)?;
    }
    Ok(rows)
}

/// Writes rows as CSV (creating the directory).
pub fn write_rows(rows: &[ScalingRow], path: &Path) -> Result<()> {
    crate::util::csv_rows::write(path, rows)
}

/// Reads rows written by [`write_rows`].
pub fn read_rows(path: &Path) -> Result<Vec<ScalingRow>> {
    crate::util::csv_rows::read(path)
}

/// Statistics of one metric over the models and inputs of a (init, β, L).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub mean: f64,
    pub std: f64,
    pub median: f64,
    pub q10: f64,
    pub q90: f64,
    /// Mean of log10 (−∞/+∞ when a value is 0 / not finite).
    pub log10_mean: f64,
    pub n: usize,
    /// How many values were inf or NaN (overflow).
    pub nonfinite: usize,
}

impl Stats {
    pub fn of(values: &[f64]) -> Stats {
        let nonfinite = values.iter().filter(|v| !v.is_finite()).count();
        let mut v: Vec<f64> = values.to_vec();
        // NaN (inf − inf after overflow) sorts as +inf: it is an overflow too.
        v.iter_mut()
            .filter(|x| x.is_nan())
            .for_each(|x| *x = f64::INFINITY);
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let n = v.len();
        let q = |p: f64| {
            if n == 0 {
                return f64::NAN;
            }
            let pos = p * (n - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            let w = pos - lo as f64;
            if w == 0.0 {
                v[lo]
            } else {
                v[lo] * (1.0 - w) + v[hi] * w
            }
        };
        let mean = v.iter().sum::<f64>() / n as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
        let log10_mean = v.iter().map(|x| x.log10()).sum::<f64>() / n as f64;
        Stats {
            mean,
            std: var.sqrt(),
            median: q(0.5),
            q10: q(0.1),
            q90: q(0.9),
            log10_mean,
            n,
            nonfinite,
        }
    }
}

/// Per (init, β): the statistics (forward, backward) of every depth L, in increasing L.
pub type Summary = Vec<(String, f64, Vec<(i64, Stats, Stats)>)>;

/// Per (init, β, L): statistics of the forward and backward metrics, in first-seen order of
/// (init, β) and increasing L.
pub fn summarize(rows: &[ScalingRow]) -> Summary {
    group_by_depth(rows.iter().map(|r| {
        (
            (r.init.clone(), r.beta.to_bits()),
            r.depth,
            r.forward,
            r.backward,
        )
    }))
    .into_iter()
    .map(|((init, beta), by_l)| {
        let series = by_l
            .iter()
            .map(|(&l, (f, b))| (l, Stats::of(f), Stats::of(b)))
            .collect();
        (init, f64::from_bits(beta), series)
    })
    .collect()
}

/// The table of log-log slopes: per (init, β), the mean metric at the smallest and largest L,
/// the exponent p of mean ∝ L^p (least squares on log-log, over finite means) and its R².
pub fn slope_table(rows: &[ScalingRow], title: &str) -> crate::report::table::Table {
    let headers = [
        "init",
        "β",
        "L",
        "forward at L min",
        "forward at L max",
        "forward ∝ L^p: p",
        "R²",
        "backward at L min",
        "backward at L max",
        "backward ∝ L^p: p",
        "R²",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut t = crate::report::table::Table::new(title, headers);
    for (init, beta, series) in summarize(rows) {
        let pts = |which: usize| -> Vec<(f64, f64)> {
            series
                .iter()
                .map(|(l, f, b)| (*l as f64, if which == 0 { f.mean } else { b.mean }))
                .collect()
        };
        let ff = crate::util::fit::fit(&pts(0));
        let fb = crate::util::fit::fit(&pts(1));
        let first = series.first().unwrap();
        let last = series.last().unwrap();
        t.push(vec![
            init,
            format!("{beta}"),
            format!("{}–{}", first.0, last.0),
            fmt_sci(first.1.mean),
            fmt_sci(last.1.mean),
            format!("{:.3}", ff.power),
            format!("{:.3}", ff.r2_power),
            fmt_sci(first.2.mean),
            fmt_sci(last.2.mean),
            format!("{:.3}", fb.power),
            format!("{:.3}", fb.r2_power),
        ]);
    }
    t
}

/// The long summary table (CSV): one line per (init, β, L) with both metrics' statistics.
pub fn summary_table(rows: &[ScalingRow]) -> crate::report::table::Table {
    let mut headers = vec!["init".to_string(), "beta".into(), "depth".into()];
    for m in ["forward", "backward"] {
        for s in [
            "mean",
            "std",
            "median",
            "q10",
            "q90",
            "log10_mean",
            "n",
            "nonfinite",
        ] {
            headers.push(format!("{m}_{s}"));
        }
    }
    let mut t = crate::report::table::Table::new("", headers);
    for (init, beta, series) in summarize(rows) {
        for (l, f, b) in series {
            let mut row = vec![init.clone(), format!("{beta}"), l.to_string()];
            for s in [f, b] {
                row.extend([
                    s.mean.to_string(),
                    s.std.to_string(),
                    s.median.to_string(),
                    s.q10.to_string(),
                    s.q90.to_string(),
                    s.log10_mean.to_string(),
                    s.n.to_string(),
                    s.nonfinite.to_string(),
                ]);
            }
            t.push(row);
        }
    }
    t
}

/// Writes `summary.csv`, `slopes.md`/`slopes.csv` and, per init, a figure with one panel per
/// β of mean, 10% and 90% quantiles against L (log-log), forward and backward; returns the
/// Markdown slope table.
pub fn write_report(rows: &[ScalingRow], out: &Path, title: &str) -> Result<String> {
    use crate::report::plot::{multi_panel, Panel, PlotSpec, Series};
    summary_table(rows).write_csv(&out.join("summary.csv"))?;
    let slopes = slope_table(rows, title);
    slopes.write_csv(&out.join("slopes.csv"))?;
    let md = slopes.to_markdown();
    crate::util::write_atomic(&out.join("slopes.md"), &md)?;
    let summary = summarize(rows);
    let mut inits: Vec<String> = summary.iter().map(|s| s.0.clone()).collect();
    inits.dedup();
    for init in inits {
        for (metric, label) in [
            ("forward", "‖h_L − h_0‖ / ‖h_0‖"),
            ("backward", "‖∂ℓ/∂h_0 − ∂ℓ/∂h_L‖ / ‖∂ℓ/∂h_L‖"),
        ] {
            let panels: Vec<Panel> = summary
                .iter()
                .filter(|s| s.0 == init)
                .map(|(_, beta, series)| {
                    let pick = |f: fn(&Stats) -> f64| -> Vec<(f64, f64)> {
                        series
                            .iter()
                            .map(|(l, fs, bs)| {
                                (*l as f64, f(if metric == "forward" { fs } else { bs }))
                            })
                            .collect()
                    };
                    Panel {
                        spec: PlotSpec::new(format!("β = {beta}"), "depth L", label)
                            .log_x(true)
                            .log_y(true)
                            .markers(true),
                        series: vec![
                            Series::new("mean", pick(|s| s.mean)),
                            Series::new("10% quantile", pick(|s| s.q10)),
                            Series::new("90% quantile", pick(|s| s.q90)),
                        ],
                    }
                })
                .collect();
            let name = init.replace(':', "");
            multi_panel(
                &out.join(format!("{metric}-{name}")),
                &format!("{title}: {metric} metric, {init} init"),
                &panels,
            )?;
        }
    }
    Ok(md)
}
