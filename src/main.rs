//! deepres command line: parse, call the library ([`deepres::cli`]), map errors to exit code 2.
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    deepres::util::device::keep_freed_host_memory();
    let cli = deepres::cli::Cli::parse();
    match deepres::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
