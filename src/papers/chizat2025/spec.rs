//! The figure files' settings (`spec:` of `experiments/chizat2025/*.yaml`, one struct per
//! figure kind), their defaults and their validation. The file format itself (figure, title,
//! spec, scales, `--set`) is [`crate::papers::figure`], shared with Marion et al.
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::gd::recorded;
use crate::model::two_layer_resnet::TwoLayerSpec;
use crate::papers::figure::{positive as pos, Linspace};

/// The synthetic regression task (see [`super::task()`]).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskSpec {
    /// Training points n.
    pub train: i64,
    /// Held-out points on which outputs are compared with the limit.
    pub test: i64,
    pub seed: u64,
    /// Not serialized at its default, so the cached limits' keys of the default task stay.
    #[serde(skip_serializing_if = "Target::is_default")]
    pub target: Target,
}

impl Default for TaskSpec {
    fn default() -> Self {
        TaskSpec {
            train: 32,
            test: 128,
            seed: 0,
            target: Target::default(),
        }
    }
}

/// The target y(x) of the task (`task.target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// y = tanh(2⟨w, x⟩), w uniform on the first min(D, 3) coordinates (‖w‖ = 1): the target
    /// of every figure; it gets harder from D = 1 to D = 3, then stays.
    #[default]
    ThreeCoords,
    /// y = tanh(2x₁): one fixed direction (the readout's e₁), the same for every D.
    OneDirection,
}

impl Target {
    fn is_default(&self) -> bool {
        *self == Target::default()
    }
}

/// Initialization, residual scale and gradient descent, shared by the finite models and the
/// limit (see [`TwoLayerSpec`]).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Dynamics {
    pub sigma_u: f64,
    pub sigma_v: f64,
    pub alpha: f64,
    pub gamma: f64,
    /// η: λ = η/(s²·L·M).
    pub eta: f64,
    /// K: gradient steps.
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
            steps: 100,
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
#[serde(default, deny_unknown_fields)]
pub struct LimitSpec {
    pub depth: i64,
    pub width: i64,
    /// Independent large models averaged (each one's own error shrinks like √D/√(LM)).
    pub models: i64,
    pub seed: u64,
    /// Where limits are cached (one file per setting).
    pub cache: PathBuf,
    /// Seconds between saves of a limit's training in progress (beside its cache file), so
    /// that even a kill -9 loses at most that much; not part of the limit's key.
    pub save_seconds: f64,
}

impl Default for LimitSpec {
    fn default() -> Self {
        LimitSpec {
            depth: 2048,
            width: 1024,
            models: 1,
            seed: 0,
            cache: PathBuf::from("runs/chizat2025/limits"),
            save_seconds: 600.0,
        }
    }
}

// The figure kinds below have required keys (dim, depths, ...), so their optional keys take
// their defaults one by one, from the `default_*` functions beside each struct.

/// `kind: forward-pass` (C1).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardPassFig {
    pub dim: i64,
    pub depths: Vec<i64>,
    #[serde(default = "ForwardPassFig::default_width")]
    pub width: i64,
    /// Held-out inputs whose forward pass is drawn (one panel each).
    #[serde(default = "ForwardPassFig::default_inputs")]
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

impl ForwardPassFig {
    fn default_width() -> i64 {
        1
    }
    fn default_inputs() -> i64 {
        2
    }
}

/// `dim: 2` or `dim: [2, 8, 32]`: one embedding dimension D or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMore {
    One(i64),
    More(Vec<i64>),
}

impl OneOrMore {
    pub fn values(&self) -> Vec<i64> {
        match self {
            OneOrMore::One(v) => vec![*v],
            OneOrMore::More(v) => v.clone(),
        }
    }
}

/// `kind: error-grid` (C2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorGridFig {
    /// D, or several (each its own grid, limit and fit, in `D<d>/`, and b per D compared).
    pub dim: OneOrMore,
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
    #[serde(default = "PhaseDiagramFig::default_repetitions")]
    pub repetitions: i64,
    /// |exponent| ≤ tolerance counts as O(1) (maximal update).
    #[serde(default = "PhaseDiagramFig::default_tolerance")]
    pub tolerance: f64,
    #[serde(default)]
    pub dynamics: Dynamics,
    #[serde(default)]
    pub task: TaskSpec,
    #[serde(default)]
    pub seed: u64,
}

impl PhaseDiagramFig {
    fn default_repetitions() -> i64 {
        2
    }
    fn default_tolerance() -> f64 {
        0.2
    }
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
    #[serde(default = "ErrorSweepFig::default_outside")]
    pub outside: f64,
    /// Models per batched program, a performance choice only: each model is drawn from its
    /// own seed, so the errors are the same to float rounding (which GD amplifies in the
    /// smallest models by k = 100, docs/chizat2025.md "Model"); default 1 on a CPU, 32 on a GPU.
    #[serde(default)]
    pub batch: Option<usize>,
    #[serde(default)]
    pub dynamics: Dynamics,
    #[serde(default)]
    pub task: TaskSpec,
    #[serde(default)]
    pub limit: LimitSpec,
    #[serde(default)]
    pub seed: u64,
}

impl ErrorSweepFig {
    /// D/(LM) ≤ 1: the regime of the paper's bound.
    fn default_outside() -> f64 {
        1.0
    }
}

/// `kind: d-law` (study C5D): C5's sweep repeated over training points n, targets and step
/// sizes η, with the free power law's exponents and their bootstrap intervals per setting.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DLawFig {
    /// The C5 sweep run in every setting (the same random shapes in all); each setting
    /// replaces its `task.train`, `task.target` and `dynamics.eta`.
    pub sweep: ErrorSweepFig,
    /// Training points n.
    pub train_points: Vec<i64>,
    pub targets: Vec<Target>,
    /// Step sizes η (λ = η/(s²·L·M)).
    pub etas: Vec<f64>,
    /// Bootstrap resamples of the models for the 95 % intervals.
    #[serde(default = "DLawFig::default_bootstrap")]
    pub bootstrap: usize,
}

impl DLawFig {
    fn default_bootstrap() -> usize {
        1000
    }

    /// The sweep of one setting: n training points, `target`, step size η.
    pub fn setting(&self, n: i64, target: Target, eta: f64) -> ErrorSweepFig {
        let mut s = self.sweep.clone();
        s.task.train = n;
        s.task.target = target;
        s.dynamics.eta = eta;
        s
    }
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
    DLaw(DLawFig),
}

pub type Figure = crate::papers::figure::FigureFileAt<FigureSpec>;

/// Reads a figure file at `scale` with `--set` overrides and checks its values.
pub fn load(path: &Path, scale: &str, overrides: &[String]) -> Result<Figure> {
    let fig = crate::papers::figure::load::<FigureSpec>(path, scale, overrides)?;
    validate(&fig.spec).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(fig)
}

/// Default output directory: `runs/chizat2025/<stem>/<scale>/`.
pub fn default_out(fig: &Figure) -> PathBuf {
    fig.default_out("chizat2025")
}

fn all_pos(name: &str, vs: &[i64]) -> Result<()> {
    if vs.is_empty() {
        bail!("spec.{name}: give at least one value");
    }
    vs.iter().try_for_each(|&v| pos(name, v))
}

fn check_dynamics(d: &Dynamics, t: &TaskSpec) -> Result<()> {
    if d.steps < 1 {
        bail!("spec.dynamics.steps: must be ≥ 1");
    }
    if !(d.eta > 0.0 && d.alpha > 0.0 && d.sigma_u > 0.0 && d.sigma_v > 0.0) {
        bail!("spec.dynamics: eta, alpha, sigma_u and sigma_v must be > 0");
    }
    pos("task.train", t.train)?;
    pos("task.test", t.test)
}

fn check_limit(l: &LimitSpec) -> Result<()> {
    pos("limit.depth", l.depth)?;
    pos("limit.width", l.width)?;
    pos("limit.models", l.models)
}

fn validate(spec: &FigureSpec) -> Result<()> {
    match spec {
        FigureSpec::ForwardPass(s) => {
            pos("dim", s.dim)?;
            all_pos("depths", &s.depths)?;
            pos("width", s.width)?;
            pos("inputs", s.inputs)?;
            if s.inputs > s.task.test {
                bail!("spec.inputs: at most task.test = {}", s.task.test);
            }
            check_dynamics(&s.dynamics, &s.task)?;
            check_limit(&s.limit)
        }
        FigureSpec::ErrorGrid(s) => {
            all_pos("dim", &s.dim.values())?;
            all_pos("depths", &s.depths)?;
            all_pos("widths", &s.widths)?;
            pos("repetitions", s.repetitions)?;
            check_dynamics(&s.dynamics, &s.task)?;
            check_limit(&s.limit)
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
            check_dynamics(&s.dynamics, &s.task)?;
            check_limit(&s.limit)
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
            check_dynamics(&s.dynamics, &s.task)
        }
        FigureSpec::ErrorSweep(s) => validate_error_sweep(s),
        FigureSpec::DLaw(s) => validate_d_law(s),
    }
}

fn validate_d_law(s: &DLawFig) -> Result<()> {
    validate_error_sweep(&s.sweep)
        .map_err(|e| anyhow::anyhow!("{}", e.to_string().replacen("spec.", "spec.sweep.", 1)))?;
    all_pos("train_points", &s.train_points)?;
    if s.targets.is_empty() {
        bail!("spec.targets: give at least one target (three-coords, one-direction)");
    }
    if s.etas.is_empty() || s.etas.iter().any(|&e| e.is_nan() || e <= 0.0) {
        bail!("spec.etas: give at least one step size, each > 0");
    }
    if s.sweep
        .dims
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        < 2
    {
        bail!("spec.sweep.dims: the exponent in D needs at least two dimensions");
    }
    if s.bootstrap < 100 {
        bail!(
            "spec.bootstrap: at least 100 resamples for a 95 % interval, got {}",
            s.bootstrap
        );
    }
    Ok(())
}

fn validate_error_sweep(s: &ErrorSweepFig) -> Result<()> {
    pos("models", s.models as i64)?;
    if let Some(b) = s.batch {
        pos("batch", b as i64)?;
    }
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
    check_dynamics(&s.dynamics, &s.task)?;
    check_limit(&s.limit)
}
