//! The configuration half of the `agent-33` command line.
//!
//! Turns argv, `AGENT33_*` environment variables and the YAML manifest into
//! one validated [`config::Config`]: the engine's
//! [`Settings`](agent33_parallel::Settings), the agents with their command
//! templates, and the tasks (or the ad-hoc artifact stream). It does not
//! run anything, install signal handlers, print or choose exit codes; the
//! binary (`src/main.rs`) does.
//!
//! ```no_run
//! use agent33_cli::args::{parse_from, Command};
//! use agent33_cli::config::{load, process_env};
//!
//! let cli = parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit());
//! let Command::Run(args) = cli.command else { unreachable!() };
//! match load(&args, &process_env) {
//!     Ok(config) => { /* build agents with config.agents(…), run config.tasks */ }
//!     Err(e) => {
//!         eprintln!("agent-33: error: {e}");
//!         std::process::exit(2);
//!     }
//! }
//! ```

pub mod adhoc;
pub mod agents;
pub mod args;
pub mod config;
mod error;
pub mod manifest;
pub mod nats_args;
mod scalar;
pub mod settings;
pub mod template;
pub mod values;
mod yaml;

pub use error::UsageError;
