//! Notices on stderr as things happen that a user should hear about before
//! the summary: dependencies ignored (PRODUCT.md asks for one warning), a
//! run stopping early and why, a task being retried, and escaped processes
//! of a task that had to be killed (`killed 1 escaped process of
//! refinement:x.md`): a task that daemonizes something it should not is a
//! bug worth seeing, not only in the JSON report's notes.
//!
//! Notices are one line each and few (at most one per retry or finished
//! task); they are not progress and not task output.

use std::fmt;

use agent33_parallel::Event;

use crate::error::{Context as _, ReportError};
use crate::format::{Style, format_duration_ms, reason};
use crate::progress::Suspender;
use crate::terminal::TerminalInfo;
use crate::{Output, Reporter};

/// Writes one-line notices to stderr.
pub struct NoticeReporter {
    out: Output,
    color: bool,
    suspender: Suspender,
}

impl fmt::Debug for NoticeReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoticeReporter")
            .field("color", &self.color)
            .finish_non_exhaustive()
    }
}

impl NoticeReporter {
    /// Notices written to `out` (the CLI passes stderr).
    #[must_use]
    pub fn new(out: Output, term: &TerminalInfo) -> Self {
        Self {
            out,
            color: term.color_stderr(),
            suspender: Suspender::none(),
        }
    }

    /// Hides the progress bar while a notice is written.
    #[must_use]
    pub fn suspender(mut self, suspender: Suspender) -> Self {
        self.suspender = suspender;
        self
    }

    fn notice(&self, event: &Event) -> Option<String> {
        let (label, style, text) = match event {
            Event::DependenciesIgnored => (
                "warning:",
                Style::Yellow,
                "tasks declare depends_on, which parallel mode ignores \
                 (respect_dependencies or --respect-dependencies honours it)"
                    .to_owned(),
            ),
            Event::RunStopTriggered { reason } => ("stopping:", Style::Bold, reason.to_string()),
            Event::TaskFinished { result, .. } => {
                let killed = escapees_killed(&result.notes);
                if killed == 0 {
                    return None;
                }
                let plural = if killed == 1 { "" } else { "es" };
                (
                    "killed",
                    Style::Yellow,
                    format!("{killed} escaped process{plural} of {}", result.task.id),
                )
            }
            Event::TaskRetryScheduled {
                id,
                attempt,
                error,
                delay,
                ..
            } => (
                "retrying:",
                Style::Yellow,
                format!(
                    "{id} in {} (attempt {attempt}: {})",
                    format_duration_ms(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
                    reason(Some(error), "failed")
                ),
            ),
            _ => return None,
        };
        Some(format!("{} {text}\n", style.paint(label, self.color)))
    }
}

/// How many escaped processes the agent killed, over all attempts, from
/// the notes the command agent words so: `2 escaped processes killed`, or
/// `attempt 1: 1 escaped process killed` for an attempt that was retried.
fn escapees_killed(notes: &[String]) -> u64 {
    notes
        .iter()
        .filter_map(|note| {
            let note = note
                .strip_prefix("attempt ")
                .and_then(|rest| rest.split_once(": "))
                .map_or(note.as_str(), |(_, note)| note);
            let (count, what) = note.split_once(' ')?;
            matches!(what, "escaped process killed" | "escaped processes killed")
                .then(|| count.parse::<u64>().ok())
                .flatten()
        })
        .sum()
}

impl Reporter for NoticeReporter {
    fn on_event(&mut self, event: &Event) -> Result<(), ReportError> {
        let Some(line) = self.notice(event) else {
            return Ok(());
        };
        let out = &mut self.out;
        self.suspender
            .suspend(|| out.write_all(line.as_bytes()).and_then(|()| out.flush()))
            .context(|| "notices to stderr".to_owned())
    }
}
