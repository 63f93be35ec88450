//! Why `agent-33` could not do what it was asked: every error the binary
//! reports, one variant each, so that [`crate::exit::for_error`] maps them
//! to exit codes with one exhaustive match.
//!
//! A task's failure is not here: it is data in the results, and the exit
//! code follows from the run's [`crate::exit::Outcome`].

use std::io;
use std::path::PathBuf;

use agent33_cli::UsageError;
use agent33_parallel::SettingsError;
use agent33_parallel::plan::PlanError;
use agent33_report::{LoadReportError, ReportError};

/// An error that ends `agent-33` before (or instead of) its work.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Flags, variables, manifest or artifact list.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// `--nats`: the server could not be reached, or the run not announced.
    #[error("{0}")]
    Nats(String),
    /// The engine refused the merged settings.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A report path (`--report`, `--junit`, …) is a folder.
    #[error("{flag} {}: is a folder, not a file", path.display())]
    OutputIsFolder {
        /// The flag, as typed.
        flag: &'static str,
        /// The path given to it.
        path: PathBuf,
    },
    /// `--resume` without a journal to resume from.
    #[error("--resume needs --journal PATH: the journal to resume from")]
    ResumeWithoutJournal,
    /// `--journal PATH` could not be opened (or is not a journal).
    #[error("cannot open the journal {}", path.display())]
    Journal {
        /// The journal's path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `--output-dir DIR` could not be created.
    #[error("--output-dir {}: cannot create the folder", dir.display())]
    OutputDir {
        /// The folder.
        dir: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A report file could not be created before the run.
    #[error(transparent)]
    ReportSetup(ReportError),
    /// The signal handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signals(#[source] io::Error),
    /// Reading ad-hoc artifacts failed (`reading artifacts from FILE: …`).
    #[error("{0}")]
    Input(String),
    /// The tasks' dependencies do not form a plan.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// `agent-33 report`: the saved run could not be read.
    #[error(transparent)]
    LoadReport(#[from] LoadReportError),
    /// `agent-33 report`: a requested file could not be written.
    #[error(transparent)]
    ReportWrite(ReportError),
    /// An LLM provider's HTTP client could not be set up.
    #[error(transparent)]
    Endpoint(#[from] agent33_llm::provider::EndpointError),
}

impl Failure {
    /// The whole message: for errors with an I/O cause, the cause too
    /// (`cannot write the JSON report `r.json`: Permission denied (os
    /// error 13)`).
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Journal { source, .. }
            | Self::OutputDir { source, .. }
            | Self::Signals(source) => {
                format!("{self}: {source}")
            }
            Self::ReportSetup(e) | Self::ReportWrite(e) => format!("{e}: {}", e.io_error()),
            Self::Usage(_)
            | Self::Settings(_)
            | Self::Nats(_)
            | Self::OutputIsFolder { .. }
            | Self::ResumeWithoutJournal
            | Self::Input(_)
            | Self::Plan(_)
            | Self::LoadReport(_) => self.to_string(),
            Self::Endpoint(e) => match std::error::Error::source(e) {
                Some(source) => format!("{e}: {source}"),
                None => e.to_string(),
            },
        }
    }

    /// Prints `agent-33: error: <message>` on stderr.
    pub fn print(&self) {
        eprintln!("agent-33: error: {}", self.describe());
    }
}
