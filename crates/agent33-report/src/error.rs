//! The one error type of this crate: a reporter could not write.
//!
//! Reporters never fail a run; their errors go back to the caller (the CLI),
//! which decides what they mean. A closed stdout (`agent-33 run … | head`)
//! is the common case and is recognisable with
//! [`ReportError::is_broken_pipe`], so it can be dropped quietly.

use std::io;

/// A reporter could not write its output.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {target}")]
pub struct ReportError {
    target: String,
    #[source]
    source: io::Error,
}

impl ReportError {
    /// An error writing to `target` (a phrase such as "the JSON report
    /// `out/results.json`").
    #[must_use]
    pub fn new(target: impl Into<String>, source: io::Error) -> Self {
        Self {
            target: target.into(),
            source,
        }
    }

    /// What could not be written.
    #[must_use]
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The underlying I/O error.
    #[must_use]
    pub fn io_error(&self) -> &io::Error {
        &self.source
    }

    /// Whether the reader went away (a closed pipe): not worth a message.
    #[must_use]
    pub fn is_broken_pipe(&self) -> bool {
        self.source.kind() == io::ErrorKind::BrokenPipe
    }
}

/// Attaches a target to I/O results.
pub(crate) trait Context<T> {
    fn context(self, target: impl FnOnce() -> String) -> Result<T, ReportError>;
}

impl<T> Context<T> for io::Result<T> {
    fn context(self, target: impl FnOnce() -> String) -> Result<T, ReportError> {
        self.map_err(|e| ReportError::new(target(), e))
    }
}
