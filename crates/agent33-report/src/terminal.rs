//! What the console is: whether stdout and stderr are terminals, and whether
//! colour is allowed.
//!
//! Detection is a plain value so tests (and the CLI's own flags, should it
//! grow `--color`) can force either mode; [`TerminalInfo::detect`] is the one
//! place that looks at the real process, and the CLI calls it once, at its
//! edge.

use std::io::IsTerminal;

/// Facts about the console that decide how reporters draw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TerminalInfo {
    /// Standard output is a terminal.
    pub stdout_is_terminal: bool,
    /// Standard error is a terminal.
    pub stderr_is_terminal: bool,
    /// The `NO_COLOR` convention (<https://no-color.org>) is in force:
    /// `NO_COLOR` is set to a non-empty value.
    pub no_color: bool,
}

impl TerminalInfo {
    /// Looks at this process: `isatty` on stdout and stderr, and `NO_COLOR`.
    #[must_use]
    pub fn detect() -> Self {
        Self {
            stdout_is_terminal: std::io::stdout().is_terminal(),
            stderr_is_terminal: std::io::stderr().is_terminal(),
            no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
        }
    }

    /// Neither stream is a terminal: plain text everywhere (tests, CI logs).
    #[must_use]
    pub fn plain() -> Self {
        Self::default()
    }

    /// Both streams are terminals, colour allowed.
    #[must_use]
    pub fn terminal() -> Self {
        Self {
            stdout_is_terminal: true,
            stderr_is_terminal: true,
            no_color: false,
        }
    }

    /// Whether text written to stdout may carry colour.
    #[must_use]
    pub fn color_stdout(&self) -> bool {
        self.stdout_is_terminal && !self.no_color
    }

    /// Whether text written to stderr may carry colour.
    #[must_use]
    pub fn color_stderr(&self) -> bool {
        self.stderr_is_terminal && !self.no_color
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        assert!(TerminalInfo::terminal().color_stdout());
        assert!(!TerminalInfo::plain().color_stderr());
        let no_color = TerminalInfo {
            no_color: true,
            ..TerminalInfo::terminal()
        };
        assert!(!no_color.color_stdout());
        assert!(!no_color.color_stderr());
    }
}
