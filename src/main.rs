//! deepres command line: parse, call the library ([`deepres::cli`]), map errors to exit code 2
//! (3 when a figure ran but failed its acceptance check).
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    deepres::util::device::keep_freed_host_memory();
    let cli = deepres::cli::Cli::parse();
    match deepres::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            match e.downcast_ref::<deepres::report::acceptance::Failed>() {
                Some(_) => ExitCode::from(deepres::report::acceptance::EXIT_CODE),
                None => ExitCode::from(2),
            }
        }
    }
}
