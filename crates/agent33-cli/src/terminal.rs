//! What the console is, looked at once, at the edge: `isatty` on stdout
//! and stderr, the `NO_COLOR` convention (<https://no-color.org>) and
//! `TERM=dumb`. Reporters only get the answer, as plain options
//! ([`TerminalInfo`]).

use std::ffi::OsStr;
use std::io::IsTerminal;

use agent33_report::TerminalInfo;

/// The console of this process.
pub fn detect() -> TerminalInfo {
    decide(
        std::io::stdout().is_terminal(),
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("TERM").as_deref(),
    )
}

/// The options for these facts: colour on a terminal unless `NO_COLOR` is
/// set to something non-empty; a progress bar on a terminal stderr unless
/// `TERM` is `dumb` (it cannot move the cursor back).
fn decide(
    stdout_tty: bool,
    stderr_tty: bool,
    no_color: Option<&OsStr>,
    term: Option<&OsStr>,
) -> TerminalInfo {
    let color = no_color.is_none_or(OsStr::is_empty);
    TerminalInfo {
        stdout_is_terminal: stdout_tty,
        stderr_is_terminal: stderr_tty,
        stdout_color: stdout_tty && color,
        stderr_color: stderr_tty && color,
        stderr_redraws: stderr_tty && term.is_none_or(|t| t != "dumb"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_needs_a_terminal_and_no_non_empty_no_color() {
        let os = |s: &'static str| Some(OsStr::new(s));
        let t = decide(true, true, None, None);
        assert!(t.stdout_color && t.stderr_color && t.stderr_redraws);
        let t = decide(true, true, os("1"), None);
        assert!(!t.stdout_color && !t.stderr_color);
        // An empty NO_COLOR is not set, by the convention.
        assert!(decide(true, true, os(""), None).stderr_color);
        let t = decide(false, true, None, None);
        assert!(!t.stdout_color && t.stderr_color && !t.stdout_is_terminal);
    }

    #[test]
    fn a_dumb_terminal_gets_no_bar_and_a_pipe_no_colour() {
        let t = decide(true, true, None, Some(OsStr::new("dumb")));
        assert!(t.stderr_is_terminal && !t.stderr_redraws);
        assert_eq!(decide(false, false, None, None), TerminalInfo::plain());
    }
}
