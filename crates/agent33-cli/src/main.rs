//! The `agent-33` binary: the only edge of the program. It parses argv,
//! loads the configuration, installs signal handlers, builds the runtime,
//! wires reporters to the engine's events and maps the outcome to an exit
//! code. Everything it decides lives in the library crates.

mod exit;
mod failure;
mod plan_view;
mod remote;
mod report_cmd;
mod run;
mod terminal;
mod worker;

use std::process::ExitCode;

use agent33_cli::args::{Command, parse_from};

// Each task allocates on one thread (spawn, pipes, result) and frees on
// another; glibc's allocator spends more on that than the spawn itself
// (see docs/BENCHMARKS.md, per-job overhead).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The hidden first argument that makes this binary a run's guard (see
/// `agent33_process::start_guard`); the pid after it only names the run
/// for `ps`.
const GUARD_ARG: &str = "__guard";

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == GUARD_ARG) {
        let _ = agent33_process::guard_main();
        return ExitCode::SUCCESS;
    }
    let cli = match parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors exit 2.
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::SUCCESS
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let code = match cli.command {
        Command::Run(args) => run::main(&args),
        Command::Report(args) => report_cmd::main(&args),
        Command::Worker(args) => worker::main(&args),
    };
    ExitCode::from(code)
}
