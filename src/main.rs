//! deepres command line: argument parsing only; the work is in the library.
use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

use deepres::config::RunConfig;
use deepres::data::{self, DatasetName};
use deepres::{device, experiment, model, probe, report, train};

#[derive(Parser)]
#[command(
    name = "deepres",
    version,
    about = "Train and probe very deep ResNets (BN vs τ-scaled, unnormalized) with libtorch"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train one config into <out_dir>/<name>/ (config.yaml, metrics.csv, checkpoint, summary.json).
    Train {
        /// YAML run config (see experiments/); without it, the defaults.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Override a config key: --set model.depth=56 --set train.optimizer.lr=0.05
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Shorthand for --set device=...: auto | cpu | cuda | cuda:N
        #[arg(long)]
        device: Option<String>,
        /// Continue the run from its checkpoint (a finished run is left as it is).
        #[arg(long)]
        resume: bool,
        /// Stop after this many epochs in this process (the run stays resumable).
        #[arg(long, value_name = "N")]
        stop_after: Option<i64>,
        /// When <out_dir>/<name> exists, train into the first free <name>-2, <name>-3, ...
        #[arg(long)]
        force_new: bool,
        /// No per-epoch lines.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print a model's structure and, last, `parameters: N` (trainable).
    Summary {
        #[arg(short, long)]
        config: Option<PathBuf>,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Depth 6n+2.
        #[arg(long)]
        depth: Option<i64>,
        /// bn | none
        #[arg(long)]
        norm: Option<String>,
        /// a | a-bn | b
        #[arg(long)]
        shortcut: Option<String>,
        /// Width multiplier k.
        #[arg(long)]
        width: Option<i64>,
        /// Number of classes.
        #[arg(long, default_value_t = 10)]
        classes: i64,
        /// Input channels (3 for CIFAR, 1 for MNIST).
        #[arg(long, default_value_t = 3)]
        in_channels: i64,
    },
    /// Stability at initialization: ‖h_L‖/‖h_0‖ and ‖∂ℓ/∂h_0‖/‖∂ℓ/∂h_L‖ over depths, τ rules,
    /// norms and seeds; writes probe.csv (resumable), the fitted-growth table and plots to --out.
    Probe {
        /// resnet (CIFAR ResNet, depths 6n+2) | fc (fully connected ResNet, depths = blocks L)
        #[arg(long, default_value = "resnet")]
        model: String,
        /// Comma-separated depths.
        #[arg(long, value_delimiter = ',', default_value = "8,14,20,38,56,110,218")]
        depths: Vec<i64>,
        /// Comma-separated τ rules: one, inv_sqrt[:c], inv[:c], power:β, fixed:v.
        #[arg(long, value_delimiter = ',', default_value = deepres::probe::PAPER_TAU_RULES)]
        tau: Vec<deepres::probe::TauSpec>,
        /// Comma-separated norms: bn, none (fc: none only).
        #[arg(long, value_delimiter = ',', default_value = "bn,none")]
        norm: Vec<String>,
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
        data: deepres::probe::ProbeData,
        #[arg(long, default_value = "data")]
        data_root: PathBuf,
        #[arg(long, default_value = "auto")]
        device: String,
        /// Output directory.
        #[arg(long, default_value = "runs/probe")]
        out: PathBuf,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Marion et al. (2022) at initialization: ‖h_L − h_0‖/‖h_0‖ and the same relative change of
    /// ∂ℓ/∂h from layer L back to 0, over depths, scalings L^-β, inits and random models
    /// (batched); writes scaling.csv, summary.csv, the log-log slope table and plots to --out.
    Scaling {
        /// full (V relu(W h)) | simple (V relu(h) + b)
        #[arg(long, default_value = "full")]
        model: deepres::model::marion_net::MarionModel,
        /// Comma-separated layer inits: iid, smooth, fbm:H (0 < H < 1).
        #[arg(long, value_delimiter = ',', default_value = "iid")]
        init: Vec<deepres::model::weight_init::LayerInit>,
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
    },
    /// A figure of Marion et al. (2022) from experiments/marion2022/<fig>.yaml: measurements or
    /// training, CSV, Markdown tables and SVG/PNG plots in --out
    /// (default runs/marion2022/<fig>/<scale>/).
    Marion {
        #[command(flatten)]
        fig: FigureArgs,
    },
    /// A figure of Chizat (2025, "The Hidden Width of Deep ResNets") from
    /// experiments/chizat2025/<fig>.yaml: 2LP-block ResNets trained by gradient descent against
    /// their limit; CSV, Markdown tables and SVG/PNG plots in --out
    /// (default runs/chizat2025/<fig>/<scale>/).
    Chizat {
        #[command(flatten)]
        fig: FigureArgs,
    },
    /// Run a grid of configs (a sweep): missing cells run, interrupted ones resume, finished and
    /// diverged ones are skipped; `--status` lists the cells instead.
    Sweep {
        #[command(flatten)]
        grid: GridArgs,
        /// List the cells and their state (done / running / diverged / missing) and who holds
        /// each running cell's lock; run nothing.
        #[arg(long)]
        status: bool,
        /// Run only cell I (as --status numbers them); what each Slurm array task runs.
        #[arg(long, value_name = "I")]
        cell: Option<usize>,
        /// Run N cells at a time, each in its own process (CPU).
        #[arg(long, value_name = "N", conflicts_with_all = ["gpus", "cell", "slurm"])]
        jobs: Option<usize>,
        /// Run one cell per listed GPU at a time, each process seeing only its GPU: --gpus 0,1,2,3
        #[arg(long, value_delimiter = ',', conflicts_with_all = ["cell", "slurm"])]
        gpus: Option<Vec<String>>,
        /// If the sweep directory holds runs of another config, run into the first
        /// <dir>-2, <dir>-3, ... that holds none (rerunning with the flag resumes there).
        #[arg(long)]
        force_new: bool,
        /// Submit a Slurm job array (one unfinished cell per task) with sbatch; print the job id.
        #[arg(long, conflicts_with = "cell")]
        slurm: bool,
        /// Slurm partition (with --slurm).
        #[arg(long, requires = "slurm")]
        partition: Option<String>,
        /// Slurm time limit per task, e.g. 24:00:00 (with --slurm).
        #[arg(long, requires = "slurm")]
        time: Option<String>,
        /// Slurm generic resources per task, e.g. gpu:1 (with --slurm).
        #[arg(long, requires = "slurm")]
        gres: Option<String>,
        /// At most K array tasks at once (with --slurm).
        #[arg(long, value_name = "K", requires = "slurm")]
        max_parallel: Option<usize>,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Tables and plots of a sweep (the grid file's `report:` section).
    Report {
        #[command(flatten)]
        grid: GridArgs,
    },
    /// Time full training steps (on-device loader with crop + flip, forward, cross-entropy,
    /// backward, grad norm, SGD) on synthetic CIFAR-shaped data; last line `images_per_second: X`.
    Bench(deepres::bench::BenchOptions),
    /// Print tch/libtorch versions, CUDA/cuDNN availability and each GPU's name and memory.
    Info,
    /// Datasets.
    Data {
        #[command(subcommand)]
        cmd: DataCmd,
    },
    /// Compare runs per epoch (e.g. BN vs no-BN + τ): writes a CSV and prints a Markdown table.
    Compare {
        /// Run directories.
        #[arg(required = true, num_args = 2..)]
        runs: Vec<PathBuf>,
        /// Output CSV.
        #[arg(short, long)]
        out: PathBuf,
    },
}

/// A paper's figure file and how to run it (shared by `marion` and `chizat`).
#[derive(clap::Args)]
struct FigureArgs {
    /// The figure file (experiments/marion2022/figN.yaml, experiments/chizat2025/figN.yaml).
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

/// Which sweep: a grid file, its scale, seeds and overrides (shared by `sweep` and `report`).
#[derive(clap::Args)]
struct GridArgs {
    /// The grid file (see experiments/).
    grid: PathBuf,
    /// A scale of the grid file (smoke, full).
    #[arg(long)]
    scale: Option<String>,
    /// Replace the grid's seeds: --seeds 0,1,2,3,4
    #[arg(long, value_delimiter = ',')]
    seeds: Option<Vec<u64>>,
    /// Override a run-config key in every cell.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Put the cells in DIR instead of <out_dir>/<name> (what --force-new passes on to the
    /// processes of --jobs, --gpus and --slurm).
    #[arg(long, value_name = "DIR")]
    sweep_dir: Option<PathBuf>,
}

impl GridArgs {
    fn load(&self) -> Result<experiment::Grid> {
        let grid = experiment::Grid::load(&self.grid, self.scale.as_deref(), &self.set)?;
        let grid = match &self.seeds {
            Some(s) => grid.with_seeds(s)?,
            None => grid,
        };
        match &self.sweep_dir {
            Some(d) => grid.relocated(d),
            None => Ok(grid),
        }
    }

    /// The arguments of a child `deepres sweep` on the same cells in `dir` (absolute paths,
    /// so that a Slurm task may start elsewhere).
    fn child_args(&self, dir: &std::path::Path, quiet: bool) -> Result<Vec<String>> {
        let abs = |p: &std::path::Path| -> Result<String> {
            let p = if p.is_absolute() {
                p.to_path_buf()
            } else {
                std::env::current_dir()?.join(p)
            };
            Ok(p.display().to_string())
        };
        let mut a = vec!["sweep".to_string(), abs(&self.grid)?];
        if let Some(s) = &self.scale {
            a.extend(["--scale".into(), s.clone()]);
        }
        if let Some(seeds) = &self.seeds {
            let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
            a.extend(["--seeds".into(), list.join(",")]);
        }
        for s in &self.set {
            a.extend(["--set".into(), s.clone()]);
        }
        a.extend(["--sweep-dir".into(), abs(dir)?]);
        if quiet {
            a.push("--quiet".into());
        }
        Ok(a)
    }
}

#[derive(Subcommand)]
enum DataCmd {
    /// Download the official archive(s), verify checksums and extract into the data directory.
    Fetch {
        /// cifar10 | cifar100 | mnist | fashion-mnist
        name: DatasetName,
        #[arg(long, default_value = "data")]
        root: PathBuf,
    },
    /// Load a dataset and print its shapes (checks the files).
    Check {
        name: DatasetName,
        #[arg(long, default_value = "data")]
        root: PathBuf,
    },
}

fn main() {
    deepres::device::keep_freed_host_memory();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Train {
            config,
            mut set,
            device,
            resume,
            stop_after,
            force_new,
            quiet,
        } => {
            if let Some(d) = device {
                set.push(format!("device={d}"));
            }
            let mut cfg = load_config(config.as_deref(), &set)?;
            if force_new {
                cfg = train::with_new_dir(&cfg);
            }
            let s = train::run(
                &cfg,
                &train::RunOptions {
                    resume,
                    stop_after,
                    quiet,
                },
            )?;
            println!(
                "{}: {} after {}/{} epochs, best test acc {:.4} (epoch {}), final test acc {:.4}",
                cfg.run_dir().display(),
                s.status,
                s.epochs_done,
                s.epochs,
                s.best_test_acc,
                s.best_epoch,
                s.final_test_acc
            );
        }
        Cmd::Summary {
            config,
            mut set,
            depth,
            norm,
            shortcut,
            width,
            classes,
            in_channels,
        } => {
            set.extend(depth.map(|v| format!("model.depth={v}")));
            set.extend(norm.map(|v| format!("model.norm={v}")));
            set.extend(shortcut.map(|v| format!("model.shortcut={v}")));
            set.extend(width.map(|v| format!("model.width={v}")));
            let cfg = load_config(config.as_deref(), &set)?;
            for line in model::resnet::describe(&cfg.model, in_channels, classes)? {
                println!("{line}");
            }
            let vs = tch::nn::VarStore::new(tch::Device::Cpu);
            model::ResNet::new(&vs.root(), &cfg.model, in_channels, classes)?;
            println!("parameters: {}", model::resnet::trainable_parameters(&vs));
        }
        Cmd::Probe {
            model,
            depths,
            tau,
            norm,
            seeds,
            batch,
            width,
            data,
            data_root,
            device,
            out,
            quiet,
        } => {
            let model = match model.as_str() {
                "resnet" => probe::ProbeModel::Resnet,
                "fc" => probe::ProbeModel::Fc,
                m => anyhow::bail!("--model: unknown model {m:?}; accepted: resnet, fc"),
            };
            let norms = norm
                .iter()
                .map(|n| match n.as_str() {
                    "bn" => Ok(deepres::config::Norm::Bn),
                    "none" => Ok(deepres::config::Norm::None),
                    _ => anyhow::bail!("--norm: unknown norm {n:?}; accepted: bn, none"),
                })
                .collect::<Result<Vec<_>>>()?;
            let spec = probe::ProbeSpec {
                model,
                depths,
                taus: tau,
                norms,
                seeds,
                batch,
                width,
                data,
                data_root,
                device: device::select_device(&device)?,
            };
            let rows = probe::run(&spec, &out.join("probe.csv"), quiet)?;
            print!("{}", probe::report::write(&rows, &out)?);
        }
        Cmd::Scaling {
            model,
            init,
            depths,
            betas,
            width,
            input_dim,
            models,
            inputs,
            chunk,
            seed,
            device,
            out,
            quiet,
        } => {
            let spec = probe::scaling::ScalingSpec {
                model,
                inits: init,
                depths,
                betas,
                width,
                input_dim,
                output_dim: 1,
                models,
                inputs,
                chunk,
                seed,
                device: device::select_device(&device)?,
            };
            let rows = probe::scaling::run(&spec, Some(&out.join("scaling.csv")), quiet)?;
            print!(
                "{}",
                probe::scaling::write_report(
                    &rows,
                    &out,
                    "Marion et al. (2022): metrics at initialization"
                )?
            );
        }
        Cmd::Marion { fig: a } => {
            let fig = experiment::marion::Figure::load_with(&a.figure, &a.scale, &a.set)?;
            let out = a
                .out
                .unwrap_or_else(|| experiment::marion::default_out(&fig));
            let dev = device::select_device(&a.device)?;
            print!("{}", experiment::marion::run(&fig, &out, dev, a.quiet)?);
        }
        Cmd::Chizat { fig: a } => {
            let fig = experiment::chizat::load(&a.figure, &a.scale, &a.set)?;
            let out = a
                .out
                .unwrap_or_else(|| experiment::chizat::default_out(&fig));
            let dev = device::select_device(&a.device)?;
            print!("{}", experiment::chizat::run(&fig, &out, dev, a.quiet)?);
        }
        Cmd::Sweep {
            grid: args,
            status,
            cell,
            jobs,
            gpus,
            force_new,
            slurm,
            partition,
            time,
            gres,
            max_parallel,
            quiet,
        } => {
            let mut grid = args.load()?;
            if status {
                print!("{}", experiment::status_table(&grid)?);
                return Ok(());
            }
            if force_new {
                grid = experiment::with_new_dir(&grid)?;
                eprintln!("sweep directory: {}", grid.dir.display());
            }
            let report = if slurm {
                experiment::check_configs(&grid)?;
                let opts = experiment::slurm::SlurmOptions {
                    partition,
                    time,
                    gres,
                    max_parallel,
                };
                match experiment::slurm::submit(&grid, &args.child_args(&grid.dir, quiet)?, &opts)?
                {
                    Some((script, id)) => {
                        eprintln!("submitted {}", script.display());
                        println!("{id}");
                    }
                    None => eprintln!(
                        "{}: every cell is done or diverged; nothing submitted",
                        grid.dir.display()
                    ),
                }
                return Ok(());
            } else if let Some(slots) = match (jobs, gpus) {
                (Some(n), _) => Some(experiment::local::Slots::Cpu(n)),
                (None, Some(g)) => Some(experiment::local::Slots::Gpus(g)),
                (None, None) => None,
            } {
                experiment::local::run_local(&grid, &args.child_args(&grid.dir, quiet)?, &slots)?
            } else {
                experiment::run_sweep(&grid, &experiment::SweepOptions { quiet, cell })?
            };
            println!("{}: {report}", grid.dir.display());
            if !report.failed.is_empty() {
                anyhow::bail!(
                    "{} cell(s) failed: {}",
                    report.failed.len(),
                    report
                        .failed
                        .iter()
                        .map(|(c, e)| format!("{c}: {e}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                );
            }
        }
        Cmd::Report { grid } => {
            let grid = grid.load()?;
            let cells = grid.cells()?;
            print!("{}", report::sweep_report::render(&grid, &cells)?);
        }
        Cmd::Bench(opts) => {
            for line in deepres::bench::run(&opts)?.lines() {
                println!("{line}");
            }
        }
        Cmd::Info => {
            for line in device::info_lines() {
                println!("{line}");
            }
        }
        Cmd::Data {
            cmd: DataCmd::Fetch { name, root },
        } => data::fetch::fetch(name, &root)?,
        Cmd::Data {
            cmd: DataCmd::Check { name, root },
        } => {
            let spec = data::DataSpec {
                root,
                ..data::DataSpec::new(name)
            };
            let s = data::load(&spec)?;
            println!(
                "{name}: train {:?} test {:?} classes {} mean {:?} std {:?}",
                s.train.images.size(),
                s.test.images.size(),
                s.num_classes,
                s.mean,
                s.std
            );
        }
        Cmd::Compare { runs, out } => {
            let refs: Vec<&std::path::Path> = runs.iter().map(|p| p.as_path()).collect();
            let table = report::compare::compare(&refs, &out)?;
            print!("{table}");
            println!("written: {}", out.display());
        }
    }
    Ok(())
}

fn load_config(path: Option<&std::path::Path>, set: &[String]) -> Result<RunConfig> {
    match path {
        Some(p) => RunConfig::load(p, set),
        None => RunConfig::from_overrides(set),
    }
}
