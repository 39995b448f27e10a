//! `deepres bench`, `info`, `data`, `compare` and `page`.
use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

use crate::data::{self, DatasetName};
use crate::report;
use crate::train::bench::{self, BenchOptions};
use crate::util::device;

#[derive(Subcommand)]
pub enum DataCmd {
    /// Download the official archive(s), verify checksums and extract into the data directory.
    Fetch {
        /// cifar10 | cifar100 | mnist | fashion-mnist
        name: DatasetName,
        #[arg(long, default_value = "data")]
        root: PathBuf,
    },
    /// Load a dataset and print where it was read from (directory and layout: binary,
    /// torchvision python, IDX) and its shapes (checks the files).
    Check {
        name: DatasetName,
        #[arg(long, default_value = "data")]
        root: PathBuf,
    },
}

#[derive(Args)]
pub struct CompareArgs {
    /// Run directories.
    #[arg(required = true, num_args = 2..)]
    runs: Vec<PathBuf>,
    /// Output CSV.
    #[arg(short, long)]
    out: PathBuf,
}

#[derive(Args)]
pub struct PageArgs {
    /// The runs directory scanned.
    #[arg(long, default_value = "runs")]
    runs: PathBuf,
    /// The page written (default: `<runs>/index.html`).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One model's report; with `--pack N` (N > 1), then the pack's (or with `--streams`, the N
/// networks on N streams'), its aggregate images/s beside one model's.
pub fn bench(opts: &BenchOptions) -> Result<()> {
    let one = bench::run(opts)?;
    for line in one.lines() {
        println!("{line}");
    }
    if opts.pack > 1 {
        let pack = match opts.streams {
            true => crate::train::bench_streams::run(opts)?,
            false => crate::train::bench_pack::run(opts)?,
        };
        for line in pack.lines(one.images_per_second()) {
            println!("{line}");
        }
    }
    Ok(())
}

pub fn info() -> Result<()> {
    for line in device::info_lines() {
        println!("{line}");
    }
    Ok(())
}

pub fn data(cmd: DataCmd) -> Result<()> {
    match cmd {
        DataCmd::Fetch { name, root } => data::fetch::fetch(name, &root),
        DataCmd::Check { name, root } => {
            // As training loads it: a run config's data defaults (synthetic sizes included).
            let spec = crate::train::config::DataConfig {
                name,
                root,
                ..Default::default()
            }
            .spec();
            let s = data::load(&spec)?;
            let from = match &s.source {
                Some(at) => format!("{} in {}", at.layout.describe(), at.dir.display()),
                None => data::Layout::Generated.describe().to_string(),
            };
            println!(
                "{name}: {from}: train {:?} test {:?} classes {} mean {:?} std {:?}",
                s.train.images.size(),
                s.test.images.size(),
                s.num_classes,
                s.mean,
                s.std
            );
            Ok(())
        }
    }
}

pub fn compare(a: CompareArgs) -> Result<()> {
    let runs: Vec<&Path> = a.runs.iter().map(PathBuf::as_path).collect();
    print!("{}", report::compare::compare(&runs, &a.out)?);
    println!("written: {}", a.out.display());
    Ok(())
}

pub fn page(a: PageArgs) -> Result<()> {
    let out = a.out.unwrap_or_else(|| a.runs.join("index.html"));
    let s = report::page::write(&a.runs, &out)?;
    println!(
        "written: {} ({} of 3 papers with results; {} tables/figures, {} plots)",
        out.display(),
        s.papers,
        s.entries,
        s.figures
    );
    Ok(())
}
