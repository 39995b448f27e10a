//! The command line: [`Cli`] (clap derive) and [`run`], which calls the library. One file per
//! command group: [`train`] (train, summary), [`sweep`] (sweep, report), [`papers`] (probe,
//! scaling, marion, chizat), [`models`] (export, eval), [`tools`] (bench, info, data, compare, page).
// The doc comments of the commands and their arguments are clap's --help text, where
// `<name>`, `<fig>`, `<scale>` are placeholders for the user, not HTML.
#![allow(rustdoc::invalid_html_tags)]
pub mod models;
pub mod papers;
pub mod sweep;
pub mod tools;
pub mod train;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "deepres",
    version,
    about = "Train and probe very deep ResNets (BN vs τ-scaled, unnormalized) with libtorch"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Train one config into <out_dir>/<name>/ (config.yaml, metrics.csv, checkpoint, summary.json).
    Train(train::TrainArgs),
    /// Print a model's structure and, last, `parameters: N` (trainable).
    Summary(train::SummaryArgs),
    /// Stability at initialization: ‖h_L‖/‖h_0‖ and ‖∂ℓ/∂h_0‖/‖∂ℓ/∂h_L‖ over depths, τ rules,
    /// norms and seeds; writes probe.csv (resumable), the fitted-growth table and plots to --out.
    Probe(papers::ProbeArgs),
    /// Marion et al. (2022) at initialization: ‖h_L − h_0‖/‖h_0‖ and the same relative change of
    /// ∂ℓ/∂h from layer L back to 0, over depths, scalings L^-β, inits and random models
    /// (batched); writes scaling.csv, summary.csv, the log-log slope table and plots to --out.
    Scaling(papers::ScalingArgs),
    /// A figure of Marion et al. (2022) from experiments/marion2022/<fig>.yaml: measurements or
    /// training, CSV, Markdown tables and SVG/PNG plots in --out
    /// (default runs/marion2022/<fig>/<scale>/).
    Marion(papers::FigureArgs),
    /// A figure of Chizat (2025, "The Hidden Width of Deep ResNets") from
    /// experiments/chizat2025/<fig>.yaml: 2LP-block ResNets trained by gradient descent against
    /// their limit; CSV, Markdown tables and SVG/PNG plots in --out
    /// (default runs/chizat2025/<fig>/<scale>/).
    Chizat(papers::FigureArgs),
    /// Run a grid of configs (a sweep): missing cells run, interrupted ones resume, finished and
    /// diverged ones are skipped; `--status` lists the cells instead.
    Sweep(sweep::SweepArgs),
    /// Tables and plots of a sweep (the grid file's `report:` section).
    Report(sweep::GridArgs),
    /// Time full training steps (on-device loader with crop + flip, forward, cross-entropy,
    /// backward, grad norm, SGD) on synthetic CIFAR-shaped data; last line `images_per_second: X`.
    Bench(crate::train::bench::BenchOptions),
    /// Print tch/libtorch versions, CUDA/cuDNN availability and each GPU's name and memory.
    Info,
    /// Datasets.
    Data {
        #[command(subcommand)]
        cmd: tools::DataCmd,
    },
    /// Write a run's last or best weights for PyTorch: a safetensors state dict under the τ
    /// paper's or akamaster's names (with the model and input normalization in its metadata),
    /// or TorchScript.
    Export(models::ExportArgs),
    /// Evaluate a run's weights or a model file on a test set: loss, top-1, top-5, and the
    /// accuracy per class as CSV.
    Eval(models::EvalArgs),
    /// One static HTML page (no server, nothing loaded from elsewhere) with every paper's
    /// tables and figures under --runs (SVGs inline), each with its scale, the command that
    /// made it and its date; a paper with nothing run yet says so. `make report` runs it.
    Page(tools::PageArgs),
    /// Compare runs per epoch (e.g. BN vs no-BN + τ): writes a CSV and prints a Markdown table.
    Compare(tools::CompareArgs),
}

/// The command line, or the process ends: `--help` and `--version` print and exit 0; a usage
/// error prints one line (clap's first, with where to read the flags) and exits 2.
pub fn parse() -> Cli {
    use clap::{error::ErrorKind, CommandFactory};
    let e = match Cli::try_parse() {
        Ok(cli) => return cli,
        Err(e) => e,
    };
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("error: bad command line");
    let help = match std::env::args().nth(1).filter(|a| !a.starts_with('-')) {
        Some(cmd) if Cli::command().find_subcommand(&cmd).is_some() => {
            format!("deepres {cmd} --help")
        }
        _ => "deepres help".to_string(),
    };
    crate::util::eprint_line(&format!("{first} (`{help}` lists the flags)"));
    std::process::exit(2)
}

/// Runs one command. `train`, `sweep`, `chizat` and `marion`'s training figures stop at their
/// next safe point on a preemption signal (exit 75, resumable); every other command ends by
/// the signal, as without a handler ([`crate::train::interrupt::uncatch`]).
pub fn run(cli: Cli) -> Result<()> {
    if !matches!(
        cli.cmd,
        Cmd::Train(_) | Cmd::Sweep(_) | Cmd::Marion(_) | Cmd::Chizat(_)
    ) {
        crate::train::interrupt::uncatch();
    }
    crate::util::threads::apply_env()?;
    match cli.cmd {
        Cmd::Train(a) => train::train(a),
        Cmd::Summary(a) => train::summary(a),
        Cmd::Probe(a) => papers::probe(a),
        Cmd::Scaling(a) => papers::scaling(a),
        Cmd::Marion(a) => papers::marion(a),
        Cmd::Chizat(a) => papers::chizat(a),
        Cmd::Sweep(a) => sweep::sweep(a),
        Cmd::Report(a) => sweep::report(a),
        Cmd::Bench(opts) => tools::bench(&opts),
        Cmd::Info => tools::info(),
        Cmd::Data { cmd } => tools::data(cmd),
        Cmd::Compare(a) => tools::compare(a),
        Cmd::Page(a) => tools::page(a),
        Cmd::Export(a) => models::export(a),
        Cmd::Eval(a) => models::eval(a),
    }
}
