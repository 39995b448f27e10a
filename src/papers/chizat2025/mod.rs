//! The figures of Chizat (2025, "The Hidden Width of Deep ResNets", SPEC §1.3) from
//! `experiments/chizat2025/*.yaml` (see [`crate::papers::figure`] for the file format).
//!
//! Every figure trains [`TwoLayerResNet`]s (2LP blocks, residual scale α·D^γ/(L·M)) by K steps of
//! full-batch gradient descent on one synthetic regression task and compares them with the
//! limit model. Kinds:
//! - `forward-pass` (C1): ⟨e_1, h_ℓ⟩ against ℓ/L after training, M = 1, several L, limit in red;
//! - `error-grid` (C2): RMS output error against the limit over an (L, M) grid, fitted
//!   a/L + b·√(D/(LM)), log-log slopes at M = 1 and at the largest M;
//! - `limit-training` (C3): the limit's training loss; one unit's u trajectory in every layer
//!   (its initialization shared by all layers);
//! - `phase-diagram` (C4): local feature updates over (σ_u = D^a, γ) for several D, the exponent
//!   of each update in D, the regions they imply and the theoretical boundaries;
//! - `error-sweep` (C5): many random (L, M, D), error at several k against a_k/L + b_k√(D/(LM)).
//!
//! The task (our reconstruction, SPEC §1.3; the paper's text was not at hand): n inputs
//! x ~ N(0, I_D), targets y = tanh(2⟨w, x⟩) with w uniform on the first min(D, 3) coordinates
//! (‖w‖ = 1); `train` points for training, `test` held-out points for the error. The limit
//! (Mean ODE) is the same ResNet at a much larger L and M trained the same way; it is computed
//! once per (D, σ_u, σ_v, α, γ, η, K, task, limit size, seed) and cached under `cache`.
use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

use crate::papers::figure::Linspace;
use crate::model::two_layer_resnet::{TwoLayerResNet, TwoLayerSpec};
use crate::report::heatmap::Heatmap;
use crate::report::plot::{multi_panel, ramp, Legend, Panel, PlotSpec, Series};
use crate::report::table::Table;
use crate::train::tensor_file::{self, TensorFile};

fn d_train() -> i64 {
    32
}
fn d_test() -> i64 {
    128
}
fn d_steps() -> usize {
    100
}
fn d_one() -> f64 {
    1.0
}
fn d_half() -> f64 {
    0.5
}
fn d_limit_depth() -> i64 {
    2048
}
fn d_limit_width() -> i64 {
    1024
}
fn d_limit_models() -> i64 {
    1
}
fn d_cache() -> PathBuf {
    PathBuf::from("runs/chizat2025/limits")
}
fn d_batch() -> usize {
    32
}

/// The synthetic regression task.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Training points n.
    #[serde(default = "d_train")]
    pub train: i64,
    /// Held-out points on which outputs are compared with the limit.
    #[serde(default = "d_test")]
    pub test: i64,
    #[serde(default)]
    pub seed: u64,
}

impl Default for TaskSpec {
    fn default() -> Self {
        TaskSpec {
            train: d_train(),
            test: d_test(),
            seed: 0,
        }
    }
}

/// Initialization, residual scale and gradient descent, shared by the finite models and the
/// limit (see [`TwoLayerSpec`]).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dynamics {
    #[serde(default = "d_one")]
    pub sigma_u: f64,
    #[serde(default = "d_one")]
    pub sigma_v: f64,
    #[serde(default = "d_one")]
    pub alpha: f64,
    #[serde(default = "d_half")]
    pub gamma: f64,
    /// η: λ = η/(s²·L·M).
    #[serde(default = "d_one")]
    pub eta: f64,
    /// K: gradient steps.
    #[serde(default = "d_steps")]
    pub steps: usize,
}

impl Default for Dynamics {
    fn default() -> Self {
        Dynamics {
            sigma_u: 1.0,
            sigma_v: 1.0,
            alpha: 1.0,
            gamma: 0.5,
            eta: 1.0,
            steps: d_steps(),
        }
    }
}

impl Dynamics {
    pub fn model(&self, depth: i64, width: i64, dim: i64) -> TwoLayerSpec {
        TwoLayerSpec {
            depth,
            width,
            dim,
            sigma_u: self.sigma_u,
            sigma_v: self.sigma_v,
            alpha: self.alpha,
            gamma: self.gamma,
            eta: self.eta,
        }
    }
}

/// The size of the model that stands for the limit.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    #[serde(default = "d_limit_depth")]
    pub depth: i64,
    #[serde(default = "d_limit_width")]
    pub width: i64,
    /// Independent large models averaged (each one's own error shrinks like √D/√(LM)).
    #[serde(default = "d_limit_models")]
    pub models: i64,
    #[serde(default)]
    pub seed: u64,
    /// Where limits are cached (one file per setting).
    #[serde(default = "d_cache")]
    pub cache: PathBuf,
}

impl Default for LimitSpec {
    fn default() -> Self {
        LimitSpec {
            depth: d_limit_depth(),
            width: d_limit_width(),
            models: d_limit_models(),
            seed: 0,
            cache: d_cache(),
        }
    }
}

/// `kind: forward-pass` (C1).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardPassFig {
    pub dim: i64,
    pub depths: Vec<i64>,
    #[serde(default = "d_width_one")]
    pub width: i64,
    /// Held-out inputs whose forward pass is drawn (one panel each).
    #[serde(default = "d_inputs")]
    pub inputs: i64,
    #[serde(default)]
    pub dynamics: Dynamics,
    #[serde(default)]
    pub task: TaskSpec,
    #[serde(default)]
    pub limit: LimitSpec,
    #[serde(default)]
    pub seed: u64,
}
fn d_width_one() -> i64 {
    1
}
fn d_inputs() -> i64 {
    2
}

/// `kind: error-grid` (C2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorGridFig {
    pub dim: i64,
    pub depths: Vec<i64>,
    pub widths: Vec<i64>,
    pub repetitions: i64,
    #[serde(default)]
    pub dynamics: Dynamics,
    #[serde(default)]
    pub task: TaskSpec,
    #[serde(default)]
    pub limit: LimitSpec,
    #[serde(default)]
    pub seed: u64,
}

/// `kind: limit-training` (C3).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitTrainingFig {
    pub dim: i64,
    /// The model whose unit trajectories are drawn (its unit 1 shares one initialization
    /// across all layers).
    pub depth: i64,
    pub width: i64,
    #[serde(default)]
    pub dynamics: Dynamics,
    #[serde(default)]
    pub task: TaskSpec,
    #[serde(default)]
    pub limit: LimitSpec,
    #[serde(default)]
    pub seed: u64,
}

/// `kind: phase-diagram` (C4).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseDiagramFig {
    /// Embedding dimensions D over which the update exponents are measured.
    pub dims: Vec<i64>,
    /// a in σ_u = D^a.
    pub sigma_u_exponents: Linspace,
    /// γ in s = D^γ/(L·M).
    pub gammas: Linspace,
    pub depth: i64,
    pub width: i64,
    /// Models per cell and D (averaged).
    #[serde(default = "d_reps")]
    pub repetitions: i64,
    /// |exponent| ≤ tolerance counts as O(1) (maximal update).
    #[serde(default = "d_tol")]
    pub tolerance: f64,
    #[serde(default)]
    pub dynamics: Dynamics,
    #[serde(default)]
    pub task: TaskSpec,
    #[serde(default)]
    pub seed: u64,
}
fn d_reps() -> i64 {
    2
}
fn d_tol() -> f64 {
    0.2
}

/// `kind: error-sweep` (C5).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorSweepFig {
    /// Number of random ResNets.
    pub models: usize,
    /// L drawn log-uniformly in [from, to] (integers).
    pub depth: [i64; 2],
    /// M drawn log-uniformly in [from, to] (integers).
    pub width: [i64; 2],
    /// D drawn uniformly from this list (each D needs its own limit).
    pub dims: Vec<i64>,
    /// Steps k at which the error is measured (multiples of 5, or K).
    pub eval_steps: Vec<usize>,
    /// Points with D/(LM) above this are marked outside the theory and left out of the fit.
    #[serde(default = "d_one")]
    pub outside: f64,
    /// Models per batched program.
    #[serde(default = "d_batch")]
    pub batch: usize,
    #[serde(default)]
    pub dynamics: Dynamics,
    #[serde(default)]
    pub task: TaskSpec,
    #[serde(default)]
    pub limit: LimitSpec,
    #[serde(default)]
    pub seed: u64,
}

/// A figure's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FigureSpec {
    ForwardPass(ForwardPassFig),
    ErrorGrid(ErrorGridFig),
    LimitTraining(LimitTrainingFig),
    PhaseDiagram(PhaseDiagramFig),
    ErrorSweep(ErrorSweepFig),
}

pub type Figure = super::figure::FigureFileAt<FigureSpec>;

/// Reads a figure file at `scale` with `--set` overrides and checks its values.
pub fn load(path: &Path, scale: &str, overrides: &[String]) -> Result<Figure> {
    let fig = super::figure::load::<FigureSpec>(path, scale, overrides)?;
    validate(&fig.spec).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(fig)
}

/// Default output directory: runs/chizat2025/<stem>/<scale>/.
pub fn default_out(fig: &Figure) -> PathBuf {
    PathBuf::from("runs/chizat2025")
        .join(&fig.stem)
        .join(&fig.scale)
}

fn validate(spec: &FigureSpec) -> Result<()> {
    let pos = |name: &str, v: i64| -> Result<()> {
        if v < 1 {
            bail!("spec.{name}: must be ≥ 1, got {v}");
        }
        Ok(())
    };
    let all_pos = |name: &str, vs: &[i64]| -> Result<()> {
        if vs.is_empty() {
            bail!("spec.{name}: give at least one value");
        }
        vs.iter().try_for_each(|&v| pos(name, v))
    };
    let dynamics = |d: &Dynamics, t: &TaskSpec| -> Result<()> {
        if d.steps < 1 {
            bail!("spec.dynamics.steps: must be ≥ 1");
        }
        if !(d.eta > 0.0 && d.alpha > 0.0 && d.sigma_u > 0.0 && d.sigma_v > 0.0) {
            bail!("spec.dynamics: eta, alpha, sigma_u and sigma_v must be > 0");
        }
        pos("task.train", t.train)?;
        pos("task.test", t.test)
    };
    let limit = |l: &LimitSpec| -> Result<()> {
        pos("limit.depth", l.depth)?;
        pos("limit.width", l.width)?;
        pos("limit.models", l.models)
    };
    match spec {
        FigureSpec::ForwardPass(s) => {
            pos("dim", s.dim)?;
            all_pos("depths", &s.depths)?;
            pos("width", s.width)?;
            pos("inputs", s.inputs)?;
            if s.inputs > s.task.test {
                bail!("spec.inputs: at most task.test = {}", s.task.test);
            }
            dynamics(&s.dynamics, &s.task)?;
            limit(&s.limit)
        }
        FigureSpec::ErrorGrid(s) => {
            pos("dim", s.dim)?;
            all_pos("depths", &s.depths)?;
            all_pos("widths", &s.widths)?;
            pos("repetitions", s.repetitions)?;
            dynamics(&s.dynamics, &s.task)?;
            limit(&s.limit)
        }
        FigureSpec::LimitTraining(s) => {
            if s.dim < 2 {
                bail!(
                    "spec.dim: the trajectories are drawn in 2-D: need D ≥ 2, got {}",
                    s.dim
                );
            }
            pos("depth", s.depth)?;
            pos("width", s.width)?;
            dynamics(&s.dynamics, &s.task)?;
            limit(&s.limit)
        }
        FigureSpec::PhaseDiagram(s) => {
            all_pos("dims", &s.dims)?;
            if s.dims.len() < 2 {
                bail!("spec.dims: the exponents need at least two dimensions D");
            }
            pos("depth", s.depth)?;
            pos("width", s.width)?;
            pos("repetitions", s.repetitions)?;
            pos(
                "sigma_u_exponents.points",
                s.sigma_u_exponents.points as i64,
            )?;
            pos("gammas.points", s.gammas.points as i64)?;
            dynamics(&s.dynamics, &s.task)
        }
        FigureSpec::ErrorSweep(s) => {
            pos("models", s.models as i64)?;
            pos("batch", s.batch as i64)?;
            all_pos("dims", &s.dims)?;
            for (name, r) in [("depth", s.depth), ("width", s.width)] {
                if r[0] < 1 || r[1] < r[0] {
                    bail!("spec.{name}: need [from, to] with 1 ≤ from ≤ to, got {r:?}");
                }
            }
            if s.eval_steps.is_empty() {
                bail!("spec.eval_steps: give at least one step");
            }
            for &k in &s.eval_steps {
                if !recorded(k, s.dynamics.steps) {
                    bail!(
                        "spec.eval_steps: {k} is not recorded: use multiples of 5 up to \
                         dynamics.steps = {}, or {} itself",
                        s.dynamics.steps,
                        s.dynamics.steps
                    );
                }
            }
            dynamics(&s.dynamics, &s.task)?;
            limit(&s.limit)
        }
    }
}

/// The steps at which test outputs are recorded: multiples of 5 and K.
pub fn recorded(k: usize, steps: usize) -> bool {
    k <= steps && (k.is_multiple_of(5) || k == steps)
}

fn recorded_steps(steps: usize) -> Vec<usize> {
    (0..=steps).filter(|&k| recorded(k, steps)).collect()
}

/// The task's (x `[n, D]`, y `[n]`) for `split` 0 (train) or 1 (test); deterministic in
/// (seed, D, split).
pub fn task(spec: &TaskSpec, dim: i64, split: u64, device: Device) -> (Tensor, Tensor) {
    let n = if split == 0 { spec.train } else { spec.test };
    tch::manual_seed((spec.seed * 1_000_003 + dim as u64 * 1009 + split) as i64);
    let x = Tensor::randn([n, dim], (Kind::Float, Device::Cpu));
    let k = dim.min(3);
    let w = Tensor::cat(
        &[
            Tensor::full([k], 1.0 / (k as f64).sqrt(), (Kind::Float, Device::Cpu)),
            Tensor::zeros([dim - k], (Kind::Float, Device::Cpu)),
        ],
        0,
    );
    // y = tanh(2⟨w, x⟩)
    let y = (x.matmul(&w) * 2.0).tanh();
    (x.to_device(device), y.to_device(device))
}

/// Trains `net` for K steps on (x, y); returns the training loss per step `[K + 1, B]` (the
/// last row after the last step) and the test outputs at the recorded steps
/// (step → `[B, n_test]`). `each_step(k, net)` runs after every step.
pub fn train(
    net: &mut TwoLayerResNet,
    x: &Tensor,
    y: &Tensor,
    x_test: &Tensor,
    steps: usize,
    mut each_step: impl FnMut(usize, &TwoLayerResNet),
) -> (Tensor, BTreeMap<usize, Tensor>) {
    let _guard = tch::no_grad_guard();
    let mut losses = Vec::with_capacity(steps + 1);
    let mut outputs = BTreeMap::new();
    for k in 0..=steps {
        if recorded(k, steps) {
            outputs.insert(k, net.forward(x_test));
        }
        if k == steps {
            let f = net.forward(x);
            losses.push((f - y).square().mean_dim(1, false, Kind::Float) * 0.5);
            break;
        }
        losses.push(net.gd_step(x, y));
        each_step(k + 1, net);
    }
    (Tensor::stack(&losses, 0), outputs)
}

/// The limit model's results for one setting.
pub struct Limit {
    /// Training loss per step `[K + 1]`.
    pub loss: Tensor,
    /// Mean test output at each recorded step, `[n_test]`.
    pub outputs: BTreeMap<usize, Tensor>,
    /// ⟨e_1, h_ℓ⟩ after training for ℓ = 0..L_lim, `[L_lim + 1, n_test]`.
    pub trace: Tensor,
    pub seconds: f64,
    pub cached: bool,
}

/// The limit for dimension `dim`: loaded from the cache, or trained (and cached).
pub fn limit(
    dim: i64,
    dynamics: &Dynamics,
    task_spec: &TaskSpec,
    lim: &LimitSpec,
    device: Device,
    quiet: bool,
) -> Result<Limit> {
    // `u1`: u ~ σ_u N(0, I_D) per coordinate (bump when the model or task changes).
    let key = format!(
        "u1-D{dim}-su{}-sv{}-a{}-g{}-eta{}-K{}-n{}-{}-task{}-L{}-M{}-x{}-seed{}",
        dynamics.sigma_u,
        dynamics.sigma_v,
        dynamics.alpha,
        dynamics.gamma,
        dynamics.eta,
        dynamics.steps,
        task_spec.train,
        task_spec.test,
        task_spec.seed,
        lim.depth,
        lim.width,
        lim.models,
        lim.seed
    );
    let path = lim.cache.join(format!("limit-{key}.ot"));
    if path.exists() {
        let file = TensorFile::read(&path, device, "cached limit", "delete it to recompute")?;
        let get = |name: &str| file.get(name).map(Tensor::shallow_clone);
        let mut outputs = BTreeMap::new();
        for k in recorded_steps(dynamics.steps) {
            outputs.insert(k, get(&format!("out{k}"))?);
        }
        return Ok(Limit {
            loss: get("loss")?,
            outputs,
            trace: get("trace")?,
            seconds: 0.0,
            cached: true,
        });
    }
    if !quiet {
        eprintln!(
            "limit: D = {dim}, L = {}, M = {}, {} model(s), K = {} (cached in {})",
            lim.depth,
            lim.width,
            lim.models,
            dynamics.steps,
            lim.cache.display()
        );
    }
    let start = Instant::now();
    let (x, y) = task(task_spec, dim, 0, device);
    let (xt, _) = task(task_spec, dim, 1, device);
    tch::manual_seed(1_000_000 + lim.seed as i64 * 7919 + dim);
    let specs = vec![dynamics.model(lim.depth, lim.width, dim); lim.models as usize];
    let mut net = TwoLayerResNet::new(&specs, device);
    let (loss, outputs) = train(&mut net, &x, &y, &xt, dynamics.steps, |_, _| {});
    let trace = {
        let _g = tch::no_grad_guard();
        net.trace(&xt).mean_dim(0, false, Kind::Float)
    };
    let lim_out = Limit {
        loss: loss.mean_dim(1, false, Kind::Float),
        outputs: outputs
            .into_iter()
            .map(|(k, o)| (k, o.mean_dim(0, false, Kind::Float)))
            .collect(),
        trace,
        seconds: start.elapsed().as_secs_f64(),
        cached: false,
    };
    std::fs::create_dir_all(&lim.cache)
        .with_context(|| format!("{}: cannot create the limit cache", lim.cache.display()))?;
    let mut named: Vec<(String, Tensor)> = vec![
        ("loss".into(), lim_out.loss.to_device(Device::Cpu)),
        ("trace".into(), lim_out.trace.to_device(Device::Cpu)),
    ];
    for (k, o) in &lim_out.outputs {
        named.push((format!("out{k}"), o.to_device(Device::Cpu)));
    }
    tensor_file::write(&path, &named, "limit")?;
    if !quiet {
        eprintln!(
            "limit: D = {dim} done in {:.1} s, final loss {:.2e}",
            lim_out.seconds,
            lim_out.loss.double_value(&[dynamics.steps as i64])
        );
    }
    Ok(lim_out)
}

/// RMS over test points of (outputs − limit), per model: `[B, n]` vs `[n]` → `Vec<f64>`.
fn rms_error(outputs: &Tensor, limit: &Tensor) -> Vec<f64> {
    to_vec(
        &(outputs - limit)
            .square()
            .mean_dim(1, false, Kind::Float)
            .sqrt(),
    )
}

/// The least-squares fit err ≈ a/L + b·√(D/(LM)) in log space: minimizes
/// Σ(log err − log(a/L + b√(D/(LM))))² (Gauss–Newton from the relative least-squares solution,
/// a, b ≥ 0), so that small and large errors weigh alike and the fit is not biased low; R² of
/// log err against log prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateFit {
    pub a: f64,
    pub b: f64,
    pub r2: f64,
    pub points: usize,
}

impl RateFit {
    pub fn predict(&self, l: f64, m: f64, d: f64) -> f64 {
        self.a / l + self.b * (d / (l * m)).sqrt()
    }
}

/// Solves the 2×2 system [[s11, s12], [s12, s22]] (x, y) = (t1, t2).
fn solve2(s11: f64, s12: f64, s22: f64, t1: f64, t2: f64) -> Option<(f64, f64)> {
    let det = s11 * s22 - s12 * s12;
    (det.abs() > 1e-12 * (s11 * s22).max(1e-300))
        .then(|| ((t1 * s22 - t2 * s12) / det, (s11 * t2 - s12 * t1) / det))
}

/// Fits a and b over points (L, M, D, err).
pub fn fit_rate(points: &[(f64, f64, f64, f64)]) -> RateFit {
    let pts: Vec<(f64, f64, f64)> = points
        .iter()
        .filter(|p| p.3.is_finite() && p.3 > 0.0)
        .map(|&(l, m, d, e)| (1.0 / l, (d / (l * m)).sqrt(), e))
        .collect();
    let sse = |a: f64, b: f64| -> f64 {
        pts.iter()
            .map(|&(x1, x2, e)| (e.ln() - (a * x1 + b * x2).max(1e-300).ln()).powi(2))
            .sum()
    };
    // Start: relative least squares, min Σ((a·x₁ + b·x₂)/err − 1)².
    let (mut s11, mut s12, mut s22, mut t1, mut t2) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(x1, x2, e) in &pts {
        let (z1, z2) = (x1 / e, x2 / e);
        s11 += z1 * z1;
        s12 += z1 * z2;
        s22 += z2 * z2;
        t1 += z1;
        t2 += z2;
    }
    let Some((a0, b0)) = solve2(s11, s12, s22, t1, t2) else {
        return RateFit {
            a: f64::NAN,
            b: f64::NAN,
            r2: f64::NAN,
            points: pts.len(),
        };
    };
    let floor = 1e-12;
    let (mut a, mut b) = (a0.max(floor), b0.max(floor));
    let mut cur = sse(a, b);
    for _ in 0..100 {
        // Gauss–Newton on r = log err − log p, ∂r/∂a = −x₁/p, ∂r/∂b = −x₂/p.
        let (mut s11, mut s12, mut s22, mut g1, mut g2) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for &(x1, x2, e) in &pts {
            let p = a * x1 + b * x2;
            let (j1, j2) = (x1 / p, x2 / p);
            let r = e.ln() - p.ln();
            s11 += j1 * j1;
            s12 += j1 * j2;
            s22 += j2 * j2;
            g1 += j1 * r;
            g2 += j2 * r;
        }
        let Some((da, db)) = solve2(s11, s12, s22, g1, g2) else {
            break;
        };
        let mut step = 1.0;
        let mut improved = false;
        while step > 1e-6 {
            let (na, nb) = ((a + step * da).max(floor), (b + step * db).max(floor));
            let next = sse(na, nb);
            if next < cur {
                improved = (cur - next) > 1e-14 * cur.max(1e-300);
                (a, b, cur) = (na, nb, next);
                break;
            }
            step *= 0.5;
        }
        if !improved {
            break;
        }
    }
    let (a, b) = (
        if a <= floor { 0.0 } else { a },
        if b <= floor { 0.0 } else { b },
    );
    let mean = pts.iter().map(|p| p.2.ln()).sum::<f64>() / pts.len().max(1) as f64;
    let ss_tot: f64 = pts.iter().map(|p| (p.2.ln() - mean).powi(2)).sum();
    RateFit {
        a,
        b,
        r2: if ss_tot > 0.0 {
            1.0 - sse(a, b) / ss_tot
        } else {
            f64::NAN
        },
        points: pts.len(),
    }
}

/// Free power law log err = c + p_L log L + p_M log M + p_D log D by least squares (the
/// exponents the data show, without assuming the rate's form): (p_L, p_M, p_D).
pub fn free_exponents(points: &[(f64, f64, f64, f64)]) -> Option<(f64, f64, f64)> {
    let rows: Vec<[f64; 5]> = points
        .iter()
        .filter(|p| p.3.is_finite() && p.3 > 0.0)
        .map(|&(l, m, d, e)| [1.0, l.ln(), m.ln(), d.ln(), e.ln()])
        .collect();
    let x = Tensor::from_slice(
        &rows
            .iter()
            .flat_map(|r| r[..4].to_vec())
            .collect::<Vec<f64>>(),
    )
    .view([-1, 4]);
    let y = Tensor::from_slice(&rows.iter().map(|r| r[4]).collect::<Vec<f64>>()).view([-1, 1]);
    let (sol, _, _, _) = x.linalg_lstsq(&y, None::<f64>, "gelsd");
    let v = to_vec(&sol);
    (v.len() == 4 && v.iter().all(|c| c.is_finite())).then(|| (v[1], v[2], v[3]))
}

/// Runs a figure into `out`; returns the text printed (tables, fits, acceptance checks).
pub fn run(fig: &Figure, out: &Path, device: Device, quiet: bool) -> Result<String> {
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let start = Instant::now();
    let body = match &fig.spec {
        FigureSpec::ForwardPass(s) => forward_pass(fig, s, out, device, quiet)?,
        FigureSpec::ErrorGrid(s) => error_grid(fig, s, out, device, quiet)?,
        FigureSpec::LimitTraining(s) => limit_training(fig, s, out, device, quiet)?,
        FigureSpec::PhaseDiagram(s) => phase_diagram(fig, s, out, device, quiet)?,
        FigureSpec::ErrorSweep(s) => error_sweep(fig, s, out, device, quiet)?,
    };
    let text = format!(
        "# {}\n\nscale: {}, device: {device:?}, wall time {:.1} s\n\n{body}",
        fig.title,
        fig.scale,
        start.elapsed().as_secs_f64()
    );
    std::fs::write(out.join("README.md"), &text)
        .with_context(|| format!("{}: cannot write", out.display()))?;
    Ok(text)
}

fn write_csv(path: &Path, header: &str, rows: &[String]) -> Result<()> {
    let mut text = String::from(header);
    text.push('\n');
    for r in rows {
        text += r;
        text.push('\n');
    }
    crate::util::write_atomic(path, &text)
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(
        t.to_kind(Kind::Double)
            .to_device(Device::Cpu)
            .flatten(0, -1),
    )
    .unwrap_or_default()
}

const RED: (u8, u8, u8) = (214, 39, 40);

fn forward_pass(
    fig: &Figure,
    s: &ForwardPassFig,
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<String> {
    let lim = limit(s.dim, &s.dynamics, &s.task, &s.limit, device, quiet)?;
    let (x, y) = task(&s.task, s.dim, 0, device);
    let (xt, _) = task(&s.task, s.dim, 1, device);
    let mut rows = Vec::new();
    let mut panels: Vec<Panel> = (0..s.inputs)
        .map(|i| Panel {
            spec: PlotSpec::new(
                format!("held-out input {}", i + 1),
                "ℓ / L",
                "⟨e_1, h_ℓ⟩ (trained)",
            )
            .legend(Legend::Auto),
            series: Vec::new(),
        })
        .collect();
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
    for (di, &depth) in s.depths.iter().enumerate() {
        tch::manual_seed(s.seed as i64 * 7919 + depth);
        let mut net = TwoLayerResNet::new(&[s.dynamics.model(depth, s.width, s.dim)], device);
        let _ = train(&mut net, &x, &y, &xt, s.dynamics.steps, |_, _| {});
        let tr = {
            let _g = tch::no_grad_guard();
            to_vec(&net.trace(&xt))
        };
        let mut sq = 0.0;
        for l in 0..=depth as usize {
            let t = l as f64 / depth as f64;
            for i in 0..n_test {
                sq += (tr[l * n_test + i] - lim_at(t, i)).powi(2);
            }
            let row: Vec<String> = (0..s.inputs as usize)
                .map(|i| format!("{:.6}", tr[l * n_test + i]))
                .collect();
            rows.push(format!("{depth},{l},{t:.6},{}", row.join(",")));
        }
        let dist = (sq / ((depth + 1) as f64 * n_test as f64)).sqrt();
        let out_err = (0..n_test)
            .map(|i| (tr[depth as usize * n_test + i] - lim_at(1.0, i)).powi(2))
            .sum::<f64>()
            / n_test as f64;
        table.push(vec![
            depth.to_string(),
            format!("{dist:.4}"),
            format!("{:.4}", out_err.sqrt()),
        ]);
        for (i, p) in panels.iter_mut().enumerate() {
            let pts = (0..=depth as usize)
                .map(|l| (l as f64 / depth as f64, tr[l * n_test + i]))
                .collect();
            p.series.push(
                Series::new(format!("L = {depth}"), pts)
                    .rgb(ramp(di as f64 / s.depths.len().max(2) as f64 * 0.9)),
            );
        }
        if !quiet {
            eprintln!("C1: L = {depth} trained, distance to the limit {dist:.4}");
        }
    }
    for (i, p) in panels.iter_mut().enumerate() {
        let pts = (0..=s.limit.depth as usize)
            .map(|l| (l as f64 / s.limit.depth as f64, lim_trace[l * n_test + i]))
            .collect();
        p.series.push(Series::new("limit", pts).rgb(RED));
    }
    let head: Vec<String> = (1..=s.inputs).map(|i| format!("input{i}")).collect();
    write_csv(
        &out.join("forward.csv"),
        &format!("L,layer,depth_fraction,{}", head.join(",")),
        &rows,
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
    )?;
    multi_panel(
        &out.join(&fig.stem),
        &format!(
            "{}: forward pass after K = {} steps, M = {}, D = {} (limit: L = {}, M = {})",
            fig.figure, s.dynamics.steps, s.width, s.dim, s.limit.depth, s.limit.width
        ),
        &panels,
    )?;
    Ok(format!(
        "Figure: {}.svg/png; data forward.csv, limit.csv.\n\n{}",
        fig.stem,
        table.to_markdown()
    ))
}

/// Mean of each (L, M) cell's errors.
fn cell_means(rows: &[(i64, i64, f64)]) -> BTreeMap<(i64, i64), (f64, f64)> {
    let mut cells: BTreeMap<(i64, i64), Vec<f64>> = BTreeMap::new();
    for &(l, m, e) in rows {
        cells.entry((l, m)).or_default().push(e);
    }
    cells
        .into_iter()
        .map(|(k, v)| {
            let n = v.len() as f64;
            let mean = v.iter().sum::<f64>() / n;
            let sd = (v.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / n.max(2.0 - 1.0)).sqrt();
            (k, (mean, sd))
        })
        .collect()
}

/// Log-log slope of points (x, y > 0).
fn loglog_slope(points: &[(f64, f64)]) -> f64 {
    crate::util::fit::fit(points).power
}

fn check(name: &str, value: f64, lo: f64, hi: f64) -> String {
    let ok = value >= lo && value <= hi;
    format!(
        "- {name}: {value:.3} (expected in [{lo}, {hi}]: {})\n",
        if ok { "yes" } else { "NO" }
    )
}

fn error_grid(
    fig: &Figure,
    s: &ErrorGridFig,
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<String> {
    let lim = limit(s.dim, &s.dynamics, &s.task, &s.limit, device, quiet)?;
    let k = s.dynamics.steps;
    let lim_out = &lim.outputs[&k];
    let (x, y) = task(&s.task, s.dim, 0, device);
    let (xt, _) = task(&s.task, s.dim, 1, device);
    let mut rows: Vec<(i64, i64, f64)> = Vec::new();
    let mut csv = Vec::new();
    for &m in &s.widths {
        for &l in &s.depths {
            let t0 = Instant::now();
            tch::manual_seed(s.seed as i64 * 1_000_003 + l * 10_007 + m);
            let specs = vec![s.dynamics.model(l, m, s.dim); s.repetitions as usize];
            let mut net = TwoLayerResNet::new(&specs, device);
            let (loss, outs) = train(&mut net, &x, &y, &xt, k, |_, _| {});
            let errs = rms_error(&outs[&k], lim_out);
            let final_loss = to_vec(&loss.get(k as i64));
            for (r, e) in errs.iter().enumerate() {
                rows.push((l, m, *e));
                csv.push(format!(
                    "{l},{m},{},{r},{e:.6e},{:.6e}",
                    s.dim, final_loss[r]
                ));
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
    let means = cell_means(&rows);
    let d = s.dim as f64;
    let fit = fit_rate(
        &means
            .iter()
            .map(|(&(l, m), &(e, _))| (l as f64, m as f64, d, e))
            .collect::<Vec<_>>(),
    );
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
            fig.figure, s.dim, s.repetitions
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
    let mut text = format!("Figure: {}.svg/png; data errors.csv.\n\n", fig.stem);
    text += &table.to_markdown();
    text += &format!(
        "\nFit over the {} cell means: err ≈ a/L + b·√(D/(LM)) with a = {:.4}, b = {:.4} \
         (in the paper's C2 form a/L + b'/√(LM) at D = {}: b' = b√D = {:.4}); b/a = {:.3}, \
         R² (log) = {:.4}. The paper's hand-fitted values: a = 0.15, b' = 0.22.\n\n",
        fit.points,
        fit.a,
        fit.b,
        s.dim,
        fit.b * d.sqrt(),
        fit.b / fit.a,
        fit.r2
    );
    text += "Log-log slope of the error against L, per M:\n\n";
    for (m, sl) in &slopes {
        text += &format!("- M = {m}: {sl:.3}\n");
    }
    text += "\nAcceptance:\n";
    let m_min = *s.widths.iter().min().unwrap();
    let m_max = *s.widths.iter().max().unwrap();
    let sl = |m: i64| slopes.iter().find(|x| x.0 == m).map_or(f64::NAN, |x| x.1);
    if m_min == 1 {
        text += &check("slope at M = 1 (1/√L)", sl(1), -0.65, -0.35);
    }
    text += &check(
        &format!("slope at M = {m_max} (1/L)"),
        sl(m_max),
        -1.2,
        -0.8,
    );
    Ok(text)
}

fn limit_training(
    fig: &Figure,
    s: &LimitTrainingFig,
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<String> {
    let lim = limit(s.dim, &s.dynamics, &s.task, &s.limit, device, quiet)?;
    let loss = to_vec(&lim.loss);
    let k = s.dynamics.steps;
    // Trajectories: one model whose unit 1 shares one initialization in all layers.
    let (x, y) = task(&s.task, s.dim, 0, device);
    let (xt, _) = task(&s.task, s.dim, 1, device);
    tch::manual_seed(s.seed as i64 * 7919 + 17);
    let mut net = TwoLayerResNet::new(&[s.dynamics.model(s.depth, s.width, s.dim)], device);
    {
        let _g = tch::no_grad_guard();
        let (u0, v0) = (
            net.u[0].narrow(1, 0, 1).copy(),
            net.v[0].narrow(1, 0, 1).copy(),
        );
        for l in 1..net.depth() {
            net.u[l].narrow(1, 0, 1).copy_(&u0);
            net.v[l].narrow(1, 0, 1).copy_(&v0);
        }
    }
    let unit = |net: &TwoLayerResNet| -> Vec<f64> {
        // u_{ℓ,1} coordinates 1 and 2 for every ℓ: [L, 2]
        let parts: Vec<Tensor> = net
            .u
            .iter()
            .map(|u| u.get(0).get(0).narrow(0, 0, 2))
            .collect();
        to_vec(&Tensor::stack(&parts, 0))
    };
    let mut traj = vec![unit(&net)];
    let (model_loss, _) = train(&mut net, &x, &y, &xt, k, |_, n| traj.push(unit(n)));
    let model_loss = to_vec(&model_loss);
    let depth = s.depth as usize;
    let mut csv = Vec::new();
    for (step, t) in traj.iter().enumerate() {
        for l in 0..depth {
            csv.push(format!(
                "{step},{},{:.6},{:.6}",
                l + 1,
                t[2 * l],
                t[2 * l + 1]
            ));
        }
    }
    write_csv(&out.join("trajectories.csv"), "step,layer,u1,u2", &csv)?;
    let loss_rows: Vec<String> = loss
        .iter()
        .zip(&model_loss)
        .enumerate()
        .map(|(k, (a, b))| format!("{k},{a:.6e},{b:.6e}"))
        .collect();
    write_csv(
        &out.join("loss.csv"),
        "step,limit_loss,model_loss",
        &loss_rows,
    )?;
    let traj_series: Vec<Series> = (0..depth)
        .map(|l| {
            let pts = traj.iter().map(|t| (t[2 * l], t[2 * l + 1])).collect();
            Series::new("", pts)
                .rgb(ramp(l as f64 / (depth.max(2) - 1) as f64))
                .unlabelled()
        })
        .chain(std::iter::once(
            Series::new("initialization (shared)", vec![(traj[0][0], traj[0][1])])
                .rgb(RED)
                .scatter(),
        ))
        .collect();
    multi_panel(
        &out.join(&fig.stem),
        &format!(
            "{}: training of the limit (L = {}, M = {}, D = {})",
            fig.figure, s.limit.depth, s.limit.width, s.dim
        ),
        &[
            Panel {
                spec: PlotSpec::new("square loss over GD steps", "step k", "train loss")
                    .log_y(true),
                series: vec![
                    Series::new(
                        format!("limit (L = {}, M = {})", s.limit.depth, s.limit.width),
                        loss.iter()
                            .enumerate()
                            .map(|(k, v)| (k as f64, *v))
                            .collect(),
                    )
                    .rgb(RED),
                    Series::new(
                        format!("L = {}, M = {}", s.depth, s.width),
                        model_loss
                            .iter()
                            .enumerate()
                            .map(|(k, v)| (k as f64, *v))
                            .collect(),
                    ),
                ],
            },
            Panel {
                spec: PlotSpec::new(
                    format!(
                        "u of unit 1 over k, layers ℓ = 1 (dark) … {} (yellow)",
                        s.depth
                    ),
                    "u coordinate 1",
                    "u coordinate 2",
                ),
                series: traj_series,
            },
        ],
    )?;
    let moves: Vec<f64> = (0..depth)
        .map(|l| {
            let (a, b) = (&traj[0], &traj[k]);
            ((b[2 * l] - a[2 * l]).powi(2) + (b[2 * l + 1] - a[2 * l + 1]).powi(2)).sqrt()
        })
        .collect();
    let init_norm = (traj[0][0].powi(2) + traj[0][1].powi(2)).sqrt();
    let mut text = format!(
        "Figure: {}.svg/png; data loss.csv, trajectories.csv.\n\n",
        fig.stem
    );
    text += &format!(
        "Limit (L = {}, M = {}): train loss {:.3e} at k = 0, {:.3e} at k = {k} ({:.1}× lower){}.\n\n",
        s.limit.depth,
        s.limit.width,
        loss[0],
        loss[k],
        loss[0] / loss[k],
        if lim.cached { ", from the cache" } else { "" }
    );
    text += &format!(
        "Unit 1's u (2-D, ‖u_init‖ = {init_norm:.3}) moved by {:.3} (min over layers) to {:.3} \
         (max) after K = {k} steps, in the model L = {}, M = {} (train loss {:.3e} → {:.3e}).\n",
        moves.iter().cloned().fold(f64::INFINITY, f64::min),
        moves.iter().cloned().fold(0.0, f64::max),
        s.depth,
        s.width,
        model_loss[0],
        model_loss[k]
    );
    Ok(text)
}

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

fn phase_diagram(
    fig: &Figure,
    s: &PhaseDiagramFig,
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<String> {
    let a_s = s.sigma_u_exponents.values();
    let gammas = s.gammas.values();
    let reps = s.repetitions as usize;
    // Per D: [model] of (Δpre after step 1, Δu after step 1, Δpre after K, Δu after K,
    // diversity after K, first step's output change through v).
    let mut measured: Vec<Vec<[f64; 6]>> = Vec::new();
    let mut csv = Vec::new();
    for &d in &s.dims {
        let t0 = Instant::now();
        let (x, y) = task(&s.task, d, 0, device);
        let (xt, _) = task(&s.task, d, 1, device);
        let mut specs = Vec::new();
        for &g in &gammas {
            for &a in &a_s {
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
        });
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
        measured.push(cells);
        if !quiet {
            eprintln!(
                "C4: D = {d}: {} models trained in {:.1} s",
                specs.len(),
                t0.elapsed().as_secs_f64()
            );
        }
    }
    write_csv(
        &out.join("updates.csv"),
        "D,a,gamma,repetition,step1_output_change_v,step1_update_v,step1_update_u,update_v,update_u,\
         diversity,loss_initial,loss_final",
        &csv,
    )?;
    let dims: Vec<f64> = s.dims.iter().map(|&d| d as f64).collect();
    let (na, ng) = (a_s.len(), gammas.len());
    let grid = || vec![vec![0.0; na]; ng];
    let (mut ev, mut eu, mut ev_k, mut eu_k, mut ef) = (grid(), grid(), grid(), grid(), grid());
    let (mut phase, mut diversity, mut big_dv) = (grid(), grid(), grid());
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
            ev[gi][ai] = exponent(0);
            eu[gi][ai] = exponent(1);
            ev_k[gi][ai] = exponent(2);
            eu_k[gi][ai] = exponent(3);
            ef[gi][ai] = exponent(5);
            let last = dims.len() - 1;
            diversity[gi][ai] = mean_over(last, 4);
            big_dv[gi][ai] = mean_over(last, 2).log10();
            let (v, b) = (ev[gi][ai], ef[gi][ai]);
            phase[gi][ai] = if !(v.is_finite() && b.is_finite()) || v > tol || b > tol {
                3.0
            } else if v < -tol {
                0.0
            } else if b < -tol {
                1.0
            } else {
                2.0
            };
        }
    }
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
        xs: a_s.clone(),
        ys: gammas.clone(),
        values,
        vmin,
        vmax,
        value_label: label.into(),
        curves: theory.clone(),
    };
    let maps = [
        (
            String::new(),
            format!("phases from the measured exponents e_v, e_f (tolerance {tol})"),
            phase.clone(),
            (0.0, 3.0),
            "0 lazy, 1 sub-crit., 2 critical, 3 super",
        ),
        (
            "-exponent-f".into(),
            "exponent in D of the output change through v (step 1)".into(),
            ef.clone(),
            (-1.0, 1.0),
            "d log |Δ_v f| / d log D",
        ),
        (
            "-exponent-v".into(),
            "exponent in D of the v update (step 1)".into(),
            ev.clone(),
            (-1.0, 1.0),
            "d log Δ⟨v, x⟩ / d log D",
        ),
        (
            "-exponent-u".into(),
            "exponent in D of the u update (step 1)".into(),
            eu.clone(),
            (-1.0, 1.0),
            "d log Δ⟨u, e_1⟩ / d log D",
        ),
        (
            "-exponent-v-final".into(),
            format!(
                "exponent in D of the v update after K = {}",
                s.dynamics.steps
            ),
            ev_k.clone(),
            (-1.0, 1.0),
            "d log Δ⟨v, x⟩ / d log D",
        ),
        (
            "-diversity".into(),
            format!("feature diversity after training, D = {dmax}"),
            diversity.clone(),
            (0.0, 1.0),
            "1 − mean |cos(v_j, v_k)|",
        ),
        (
            "-update-v".into(),
            format!("log10 relative v update after training, D = {dmax}"),
            big_dv,
            (-2.0, 2.0),
            "log10 Δ⟨v, x⟩ / ⟨v, x⟩",
        ),
    ];
    for (suffix, title, values, (lo, hi), label) in maps {
        hm(format!("{}: {title}", fig.figure), values, lo, hi, label)
            .write(&out.join(format!("{}{suffix}", fig.stem)))?;
    }
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
                names[phase[gi][ai] as usize], ev[gi][ai], ef[gi][ai], eu[gi][ai]
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
         and e_f = 0 cross at σ_u = Θ(1), s = √D/(LM): the only critical point.\n\n",
        s.depth, s.width, s.dynamics.steps, s.dims
    );
    text += &table.to_markdown();
    let (mut err_v, mut err_f, mut err_u) = (0.0, 0.0, 0.0);
    for gi in 0..ng {
        for ai in 0..na {
            let (a, g) = (a_s[ai], gammas[gi]);
            err_v += (ev[gi][ai] - (a + 0.5 - g)).abs();
            err_f += (ef[gi][ai] - 2.0 * a).abs();
            err_u += (eu[gi][ai] + a + g).abs();
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
    Ok(text)
}

/// Integer drawn log-uniformly in [lo, hi].
fn log_uniform(rng: &mut impl Rng, lo: i64, hi: i64) -> i64 {
    let u: f64 = rng.gen();
    let v = ((lo as f64).ln() + u * ((hi as f64 + 1.0).ln() - (lo as f64).ln())).exp();
    (v.floor() as i64).clamp(lo, hi)
}

fn error_sweep(
    fig: &Figure,
    s: &ErrorSweepFig,
    out: &Path,
    device: Device,
    quiet: bool,
) -> Result<String> {
    // Sample (L, M, D).
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    let models: Vec<(i64, i64, i64)> = (0..s.models)
        .map(|_| {
            let l = log_uniform(&mut rng, s.depth[0], s.depth[1]);
            let m = log_uniform(&mut rng, s.width[0], s.width[1]);
            (l, m, s.dims[rng.gen_range(0..s.dims.len())])
        })
        .collect();
    let ks = &s.eval_steps;
    // errors[model][k index]
    let mut errors = vec![vec![f64::NAN; ks.len()]; models.len()];
    let mut dims: Vec<i64> = s.dims.clone();
    dims.sort();
    dims.dedup();
    let t_all = Instant::now();
    let mut done = 0usize;
    for &d in &dims {
        let mut idx: Vec<usize> = (0..models.len()).filter(|&i| models[i].2 == d).collect();
        if idx.is_empty() {
            continue;
        }
        let lim = limit(d, &s.dynamics, &s.task, &s.limit, device, quiet)?;
        let (x, y) = task(&s.task, d, 0, device);
        let (xt, _) = task(&s.task, d, 1, device);
        // Similar shapes together, so that padding to the batch's largest L and M wastes little.
        idx.sort_by_key(|&i| {
            (
                (models[i].0 as f64).log2().floor() as i64,
                models[i].1,
                models[i].0,
            )
        });
        for (bi, chunk) in idx.chunks(s.batch).enumerate() {
            let specs: Vec<TwoLayerSpec> = chunk
                .iter()
                .map(|&i| s.dynamics.model(models[i].0, models[i].1, d))
                .collect();
            tch::manual_seed(s.seed as i64 * 1_000_003 + d * 10_007 + bi as i64);
            let mut net = TwoLayerResNet::new(&specs, device);
            let (_, outs) = train(&mut net, &x, &y, &xt, s.dynamics.steps, |_, _| {});
            for (ki, k) in ks.iter().enumerate() {
                let e = rms_error(&outs[k], &lim.outputs[k]);
                for (j, &i) in chunk.iter().enumerate() {
                    errors[i][ki] = e[j];
                }
            }
            done += chunk.len();
            if !quiet {
                eprintln!(
                    "C5: {done}/{} models (D = {d}, batch of {} padded to L = {}, M = {}), {:.0} s",
                    models.len(),
                    chunk.len(),
                    net.depth(),
                    specs.iter().map(|s| s.width).max().unwrap(),
                    t_all.elapsed().as_secs_f64()
                );
            }
        }
    }
    let outside = |&(l, m, d): &(i64, i64, i64)| d as f64 / (l * m) as f64 > s.outside;
    // One fit per recorded step k, over the models inside the region.
    let fits: Vec<_> = (0..ks.len())
        .map(|ki| {
            let pts: Vec<(f64, f64, f64, f64)> = models
                .iter()
                .zip(&errors)
                .filter(|(md, _)| !outside(md))
                .map(|(&(l, m, d), e)| (l as f64, m as f64, d as f64, e[ki]))
                .collect();
            fit_rate(&pts)
        })
        .collect();
    let mut csv = Vec::new();
    for (i, &(l, m, d)) in models.iter().enumerate() {
        for (ki, k) in ks.iter().enumerate() {
            csv.push(format!(
                "{i},{l},{m},{d},{k},{:.6e},{:.6e},{}",
                errors[i][ki],
                fits[ki].predict(l as f64, m as f64, d as f64),
                outside(&(l, m, d)) as u8
            ));
        }
    }
    write_csv(
        &out.join("errors.csv"),
        "model,L,M,D,k,error,predicted,outside_theory",
        &csv,
    )?;
    let mut series = Vec::new();
    let mut lo = f64::INFINITY;
    let mut hi: f64 = 0.0;
    for (ki, k) in ks.iter().enumerate() {
        let c = crate::report::plot::color(ki);
        let pts: Vec<(f64, f64)> = models
            .iter()
            .enumerate()
            .filter(|(_, md)| !outside(md))
            .map(|(i, &(l, m, d))| {
                (
                    fits[ki].predict(l as f64, m as f64, d as f64),
                    errors[i][ki],
                )
            })
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
        .filter(|(_, md)| outside(md))
        .map(|(i, &(l, m, d))| {
            let ki = ks.len() - 1;
            (
                fits[ki].predict(l as f64, m as f64, d as f64),
                errors[i][ki],
            )
        })
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
    let mut table = Table::new(
        format!(
            "Fit per k over the {} models with D/(LM) ≤ {}",
            models.iter().filter(|md| !outside(md)).count(),
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
        "Figure: {}.svg/png; data errors.csv ({} models × {} steps).\n\n{}",
        fig.stem,
        models.len(),
        ks.len(),
        table.to_markdown()
    );
    text += "\nFree power law err ∝ L^p_L · M^p_M · D^p_D over the same models (the rate's \
             terms predict p_L between −1 and −1/2, p_M between 0 and −1/2, p_D between 0 and 1/2):\n\n";
    for (ki, k) in ks.iter().enumerate() {
        let pts: Vec<(f64, f64, f64, f64)> = models
            .iter()
            .enumerate()
            .filter(|(_, md)| !outside(md))
            .map(|(i, &(l, m, d))| (l as f64, m as f64, d as f64, errors[i][ki]))
            .collect();
        if let Some((pl, pm, pd)) = free_exponents(&pts) {
            text += &format!("- k = {k}: p_L = {pl:.3}, p_M = {pm:.3}, p_D = {pd:.3}\n");
        }
    }
    Ok(text)
}
