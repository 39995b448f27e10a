//! `deepres export` and `deepres eval`: a trained model out to PyTorch, and evaluated.
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

use crate::data::DatasetName;
use crate::train::eval::{self, EvalRequest};
use crate::train::export::{self, ExportFormat, Weights};
use crate::util::device::select_device;

#[derive(Args)]
pub struct ExportArgs {
    /// The run directory (holds config.yaml and the weights).
    run_dir: PathBuf,
    /// last (the checkpoint) | best (best.safetensors: the best test accuracy)
    #[arg(long, value_enum, default_value = "last")]
    weights: Weights,
    /// tau-paper | akamaster (safetensors under that code's names) | torchscript
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// The file to write.
    #[arg(long)]
    out: PathBuf,
}

pub fn export(a: ExportArgs) -> Result<()> {
    println!(
        "{}",
        export::export(&a.run_dir, a.weights, a.format, &a.out)?
    );
    Ok(())
}

#[derive(Args)]
pub struct EvalArgs {
    /// A run directory, or a model file (.safetensors: a deepres export, or a PyTorch state
    /// dict under the τ paper's or akamaster's names).
    target: PathBuf,
    /// last | best (run directories)
    #[arg(long, value_enum, default_value = "last")]
    weights: Weights,
    /// The dataset (default: the run's, or the file's metadata).
    #[arg(long)]
    data: Option<DatasetName>,
    /// The datasets' directory (default: the run's, else data/).
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// τ of a τ-paper BN state dict that does not record it.
    #[arg(long)]
    tau: Option<f64>,
    /// The per-class CSV (default: eval-<weights>-<dataset>.csv in the run directory; for a
    /// file F.safetensors, F.eval-<dataset>.csv next to it).
    #[arg(long)]
    out: Option<PathBuf>,
    /// auto | cpu | cuda | cuda:N
    #[arg(long, default_value = "auto")]
    device: String,
}

pub fn eval(a: EvalArgs) -> Result<()> {
    let r = EvalRequest {
        target: a.target,
        weights: a.weights,
        data: a.data,
        data_root: a.data_root,
        tau: a.tau,
        out: a.out,
        device: select_device(&a.device)?,
    };
    print!("{}", eval::eval(&r)?);
    Ok(())
}
