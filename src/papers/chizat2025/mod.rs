//! The figures of Chizat (2025), "The Hidden Width of Deep ResNets: Tight Error Bounds and Phase
//! Diagram", arXiv:2509.10167 (manual: docs/chizat2025.md), from
//! `experiments/chizat2025/*.yaml` (see [`crate::papers::figure`] for the file format).
//!
//! Every figure trains [`TwoLayerResNet`](crate::model::two_layer_resnet::TwoLayerResNet)s
//! (2LP blocks, residual scale s = α·D^γ/(L·M)) by K steps of full-batch gradient descent on
//! one synthetic regression task and compares them with the limit model. Files:
//! - [`spec`]: the figure files' settings, their defaults and validation ([`load`]);
//! - [`task`](mod@task): the synthetic task (our reconstruction; the paper's text was not at
//!   hand): n inputs x ~ N(0, I_D), y = tanh(2⟨w, x⟩) with w uniform on the first min(D, 3)
//!   coordinates; `train` points for training, `test` held-out points for the error;
//! - [`gd`]: the GD training loop ([`train`]) and the recorded steps;
//! - [`limit`](mod@limit): the limit (Mean ODE), the same ResNet at a much larger L and M
//!   trained the same way, computed once per setting and cached under `limit.cache`;
//! - [`fit`]: the fit of a/L + b·√(D/(LM)), the free power law, log-log slopes;
//! - [`output`]: CSV files, cell means, acceptance lines;
//! - one file per figure kind:
//!   - [`forward_pass`] (C1): ⟨e_1, h_ℓ⟩ against ℓ/L after training, M = 1, several L, limit
//!     in red;
//!   - [`error_grid`] (C2): RMS output error against the limit over an (L, M) grid, fitted
//!     a/L + b·√(D/(LM)), log-log slopes at M = 1 and at the largest M;
//!   - [`limit_training`] (C3): the limit's training loss; one unit's u trajectory in every
//!     layer (its initialization shared by all layers);
//!   - [`phase_diagram`] (C4): local feature updates over (σ_u = D^a, γ) for several D, the
//!     exponent of each update in D, the regions they imply and the theoretical boundaries;
//!   - [`error_sweep`] (C5): many random (L, M, D), error at several k against
//!     a_k/L + b_k√(D/(LM));
//!   - [`d_law`] (study C5D; a folder: the run, the kept settings, the outputs): C5 over
//!     training points n, targets and step sizes η; the free power law's D exponent per
//!     setting with its bootstrap interval (where the √D holds).
mod d_law;
mod error_grid;
mod error_sweep;
pub mod fit;
mod forward_pass;
pub mod gd;
mod kept;
pub mod limit;
mod limit_training;
mod output;
mod phase_diagram;
pub mod spec;
pub mod task;

use anyhow::{Context, Result};
use std::path::Path;
use std::time::Instant;
use tch::Device;

use crate::report::acceptance::FigureOutput;

pub use fit::{fit_rate, free_exponents, RateFit};
pub use gd::{recorded, train};
pub use limit::{limit, limit_key, limit_path, Limit, LimitKey};
pub use spec::{
    default_out, load, DLawFig, Dynamics, ErrorGridFig, ErrorSweepFig, Figure, FigureSpec,
    ForwardPassFig, LimitSpec, LimitTrainingFig, PhaseDiagramFig, Target, TaskSpec,
};
pub use task::task;

/// Runs a figure into `out`; returns the text printed (tables, fits, acceptance checks, the
/// verdict as its last line) and the checks, also written to `acceptance.csv`.
pub fn run(fig: &Figure, out: &Path, device: Device, quiet: bool) -> Result<FigureOutput> {
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let start = Instant::now();
    let (body, acceptance) = match &fig.spec {
        FigureSpec::ForwardPass(s) => forward_pass::forward_pass(fig, s, out, device, quiet)?,
        FigureSpec::ErrorGrid(s) => error_grid::error_grid(fig, s, out, device, quiet)?,
        FigureSpec::LimitTraining(s) => limit_training::limit_training(fig, s, out, device, quiet)?,
        FigureSpec::PhaseDiagram(s) => phase_diagram::phase_diagram(fig, s, out, device, quiet)?,
        FigureSpec::ErrorSweep(s) => error_sweep::error_sweep(fig, s, out, device, quiet)?,
        FigureSpec::DLaw(s) => d_law::d_law(fig, s, out, device, quiet)?,
    };
    let body = format!(
        "# {}\n\nscale: {}, device: {device:?}, wall time {:.1} s\n\n{body}",
        fig.title,
        fig.scale,
        start.elapsed().as_secs_f64(),
    );
    FigureOutput::write(body, acceptance, out)
}
