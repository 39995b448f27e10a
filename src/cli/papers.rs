//! The papers' own commands: `deepres probe` (Zhang et al. 2022's stability probe),
//! `deepres scaling` (Marion et al. 2022 at initialization), `deepres marion` and
//! `deepres chizat` (a figure file of either paper).
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

use crate::model::config::Norm;
use crate::model::marion_net::MarionModel;
use crate::model::weight_init::LayerInit;
use crate::papers::marion2022::scaling::{self, ScalingSpec};
use crate::papers::zhang2022::probe::{self, ProbeData, ProbeModel, ProbeSpec, TauSpec};
use crate::papers::{chizat2025, marion2022};
use crate::util::device::select_device;

#[derive(Args)]
pub struct ProbeArgs {
    /// resnet (CIFAR ResNet, depths 6n+2) | fc (fully connected ResNet, depths = blocks L)
    #[arg(long, value_enum, default_value = "resnet")]
    model: ProbeModel,
    /// Comma-separated depths.
    #[arg(long, value_delimiter = ',', default_value = "8,14,20,38,56,110,218")]
    depths: Vec<i64>,
    /// Comma-separated τ rules: one, inv_sqrt[:c], inv[:c], power:β, fixed:v.
    #[arg(long, value_delimiter = ',', default_value = probe::PAPER_TAU_RULES)]
    tau: Vec<TauSpec>,
    /// Comma-separated norms: bn, none (fc: none only).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "bn,none")]
    norm: Vec<Norm>,
    /// Comma-separated seeds.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,3,4")]
    seeds: Vec<u64>,
    /// Images in the fixed batch.
    #[arg(long, default_value_t = 64)]
    batch: i64,
    /// Width m of the fc model.
    #[arg(long, default_value_t = 100)]
    width: i64,
    /// auto (CIFAR-10, else Fashion-MNIST, else synthetic) | a dataset name
    #[arg(long, default_value = "auto")]
    data: ProbeData,
    #[arg(long, default_value = "data")]
    data_root: PathBuf,
    #[arg(long, default_value = "auto")]
    device: String,
    /// Output directory.
    #[arg(long, default_value = "runs/probe")]
    out: PathBuf,
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub struct ScalingArgs {
    /// full (V relu(W h)) | simple (V relu(h) + b)
    #[arg(long, default_value = "full")]
    model: MarionModel,
    /// Comma-separated layer inits: iid, smooth, fbm:H, fbm-authors:H (0 < H < 1; fbm-authors:
    /// the authors' Davies–Harte sampler, docs/marion2022.md).
    #[arg(long, value_delimiter = ',', default_value = "iid")]
    init: Vec<LayerInit>,
    /// Comma-separated depths L.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10,120,230,340,450,560,670,780,890,1000"
    )]
    depths: Vec<i64>,
    /// Comma-separated scaling exponents β (residual scale L^-β).
    #[arg(long, value_delimiter = ',', default_value = "0.25,0.5,1")]
    betas: Vec<f64>,
    /// Width d.
    #[arg(long, default_value_t = 40)]
    width: i64,
    /// Input dimension (inputs uniform on [0, 1]).
    #[arg(long, default_value_t = 64)]
    input_dim: i64,
    /// Random models per (init, L).
    #[arg(long, default_value_t = 50)]
    models: i64,
    /// Random inputs per model.
    #[arg(long, default_value_t = 1)]
    inputs: i64,
    /// At most this many models per batched pass.
    #[arg(long, default_value_t = 50)]
    chunk: i64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "auto")]
    device: String,
    #[arg(long, default_value = "runs/scaling")]
    out: PathBuf,
    #[arg(short, long)]
    quiet: bool,
}

/// A paper's figure file and how to run it (shared by `marion` and `chizat`).
#[derive(Args)]
pub struct FigureArgs {
    /// The figure file: experiments/marion2022/figN.yaml for `marion`,
    /// experiments/chizat2025/figN.yaml for `chizat`.
    figure: PathBuf,
    /// smoke (minutes on a 2-core CPU) | full (the paper's size)
    #[arg(long, default_value = "smoke")]
    scale: String,
    /// Override a key of the figure's spec: --set depth=200 --set dynamics.eta=0.5
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Output directory (default runs/<paper>/<fig>/<scale>/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// auto | cpu | cuda | cuda:N
    #[arg(long, default_value = "auto")]
    device: String,
    #[arg(short, long)]
    quiet: bool,
}

pub fn probe(a: ProbeArgs) -> Result<()> {
    let spec = ProbeSpec {
        model: a.model,
        depths: a.depths,
        taus: a.tau,
        norms: a.norm,
        seeds: a.seeds,
        batch: a.batch,
        width: a.width,
        data: a.data,
        data_root: a.data_root,
        device: select_device(&a.device)?,
    };
    let rows = probe::run(&spec, &a.out.join("probe.csv"), a.quiet)?;
    print!("{}", probe::report::write(&rows, &a.out)?);
    Ok(())
}

pub fn scaling(a: ScalingArgs) -> Result<()> {
    let spec = ScalingSpec {
        model: a.model,
        inits: a.init,
        depths: a.depths,
        betas: a.betas,
        width: a.width,
        input_dim: a.input_dim,
        output_dim: 1,
        models: a.models,
        inputs: a.inputs,
        chunk: a.chunk,
        seed: a.seed,
        device: select_device(&a.device)?,
    };
    let rows = scaling::run(&spec, Some(&a.out.join("scaling.csv")), a.quiet)?;
    let title = "Marion et al. (2022): metrics at initialization";
    print!("{}", scaling::write_report(&rows, &a.out, title)?);
    Ok(())
}

/// A figure file of the other paper fails on its `kind`: say which command takes it.
fn other_paper(e: anyhow::Error, this: &str, other: &str) -> anyhow::Error {
    let msg = format!("{e:#}");
    if msg.contains("spec.kind: unknown value") {
        anyhow::anyhow!("{msg}; if this is a figure of the other paper, run it with `deepres {other}` (`deepres {this}` makes its own paper's)")
    } else {
        e
    }
}

pub fn marion(a: FigureArgs) -> Result<()> {
    let fig = marion2022::Figure::load_with(&a.figure, &a.scale, &a.set)
        .map_err(|e| other_paper(e, "marion", "chizat"))?;
    if !fig.trains() {
        crate::train::interrupt::uncatch(); // no safe point to stop at: the signal ends it
    }
    let out = a.out.unwrap_or_else(|| marion2022::default_out(&fig));
    let dev = select_device(&a.device)?;
    let output = marion2022::run(&fig, &out, dev, a.quiet)?;
    print!("{}", output.text);
    Ok(output.acceptance.into_result()?)
}

pub fn chizat(a: FigureArgs) -> Result<()> {
    let fig = chizat2025::load(&a.figure, &a.scale, &a.set)
        .map_err(|e| other_paper(e, "chizat", "marion"))?;
    let out = a.out.unwrap_or_else(|| chizat2025::default_out(&fig));
    let dev = select_device(&a.device)?;
    let output = chizat2025::run(&fig, &out, dev, a.quiet)?;
    print!("{}", output.text);
    Ok(output.acceptance.into_result()?)
}
