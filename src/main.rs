//! deepres command line: parse, call the library ([`deepres::cli`]), map errors to exit code 2
//! (3 when a figure ran but failed its acceptance check, 75 when a signal stopped a run after a
//! resumable checkpoint).
use std::process::ExitCode;

fn main() -> ExitCode {
    // First: a preemption signal from here on is caught (a signal before main, while the
    // dynamic loader maps libtorch, still ends the process: nothing is written by then).
    // Commands without a safe point to stop at hand the signals back (interrupt::uncatch).
    deepres::train::interrupt::install();
    deepres::util::device::keep_freed_host_memory();
    let cli = deepres::cli::parse();
    match deepres::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            deepres::util::eprint_line(&format!("error: {e:#}"));
            if e.is::<deepres::report::acceptance::Failed>() {
                ExitCode::from(deepres::report::acceptance::EXIT_CODE)
            } else if e.is::<deepres::train::interrupt::Interrupted>() {
                ExitCode::from(deepres::train::interrupt::EXIT_CODE)
            } else {
                ExitCode::from(2)
            }
        }
    }
}
