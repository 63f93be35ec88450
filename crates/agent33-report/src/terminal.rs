//! What the console is, as plain options the caller decides: whether
//! stdout and stderr are terminals, whether each may carry colour, and
//! whether stderr can redraw a progress bar in place.
//!
//! This crate never looks at the real process (no `isatty`, no `NO_COLOR`,
//! no `TERM`): the CLI detects all of it once, at its edge, and tests force
//! either mode with [`TerminalInfo::plain`] or [`TerminalInfo::terminal`].

/// Facts about the console that decide how reporters draw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TerminalInfo {
    /// Standard output is a terminal.
    pub stdout_is_terminal: bool,
    /// Standard error is a terminal.
    pub stderr_is_terminal: bool,
    /// Text written to stdout may carry colour.
    pub stdout_color: bool,
    /// Text written to stderr may carry colour.
    pub stderr_color: bool,
    /// Standard error can redraw a line in place (a terminal that is not
    /// `TERM=dumb`), so a progress bar can be drawn there.
    pub stderr_redraws: bool,
}

impl TerminalInfo {
    /// Neither stream is a terminal: plain text everywhere (tests, CI logs).
    #[must_use]
    pub fn plain() -> Self {
        Self::default()
    }

    /// Both streams are terminals that redraw, colour allowed.
    #[must_use]
    pub fn terminal() -> Self {
        Self {
            stdout_is_terminal: true,
            stderr_is_terminal: true,
            stdout_color: true,
            stderr_color: true,
            stderr_redraws: true,
        }
    }

    /// Whether text written to stdout may carry colour.
    #[must_use]
    pub fn color_stdout(&self) -> bool {
        self.stdout_color
    }

    /// Whether text written to stderr may carry colour.
    #[must_use]
    pub fn color_stderr(&self) -> bool {
        self.stderr_color
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_is_what_the_caller_decided() {
        assert!(TerminalInfo::terminal().color_stdout());
        assert!(!TerminalInfo::plain().color_stderr());
        let no_color = TerminalInfo {
            stdout_color: false,
            stderr_color: false,
            ..TerminalInfo::terminal()
        };
        assert!(!no_color.color_stdout());
        assert!(!no_color.color_stderr());
    }
}
