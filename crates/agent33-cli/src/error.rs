//! The one error type of configuration: a usage error.
//!
//! Anything wrong with flags, environment variables, the manifest or the
//! artifact list is a usage error: nothing runs and the binary exits 2. The
//! message is complete on its own (it names the setting and where the value
//! came from), so the binary prints it as `agent-33: error: <message>`
//! without walking a source chain.

use std::fmt;

/// A usage or manifest error: the run must not start.
///
/// `Display` is the whole user-facing message, without the `agent-33:
/// error:` prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UsageError {
    message: String,
}

impl UsageError {
    /// An error with this message.
    #[must_use]
    pub fn new(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
        }
    }

    /// The message (same as `Display`).
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Shorthand for results of configuration code.
pub type Result<T, E = UsageError> = std::result::Result<T, E>;
