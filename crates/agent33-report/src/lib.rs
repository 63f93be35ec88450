//! Reporters for AGENT-33 runs: they watch a run's [`Event`]s and write what
//! people and tools read — the console summary, task output, live progress,
//! notices, the JSON report, JUnit XML, the HTML timings page
//! ([`TimingsReporter`]) and a Chrome trace ([`TraceReporter`]).
//!
//! Reporters only consume events: they never change run state and never
//! choose exit codes (that is the CLI's business). Each writes to a
//! [`Write`] or a path it is given. Only the file reports (JSON, JUnit,
//! timings, trace) keep per-task data until the end, because their formats
//! need it; the console reporters keep counts and bounded lists, so a run of
//! a million tasks costs them next to nothing.
//!
//! A saved JSON report can be rendered again later: [`SavedReport`] reads it
//! and replays the run's events into any reporters (`agent-33 report
//! RUN.json --timings out.html`).
//!
//! The CLI builds one [`Reporters`] fan-out and feeds it every event:
//!
//! ```
//! use std::io;
//! use agent33_report::{
//!     JsonReporter, NoticeReporter, OutputMode, ProgressReporter, Reporters,
//!     SummaryOptions, SummaryReporter, TerminalInfo, TimingsReporter, TraceReporter,
//! };
//!
//! # fn main() -> Result<(), agent33_report::ReportError> {
//! # let dir = tempfile::tempdir().expect("temp dir");
//! # let report_path = dir.path().join("results.json");
//! # let timings_path = dir.path().join("timings.html");
//! # let trace_path = dir.path().join("trace.json");
//! let term = TerminalInfo::plain(); // the CLI detects the real console once
//! let mode = OutputMode::Grouped; // from --output; Stream also needs
//!                                 // the executor's stream_output(true)
//! // First: at the end it clears its bar before the others print.
//! let progress = ProgressReporter::for_terminal(&term, Box::new(io::stderr()));
//! let suspender = progress.suspender();
//! let mut reporters = Reporters::new()
//!     .with(progress)
//!     .with(NoticeReporter::new(Box::new(io::stderr()), &term).suspender(suspender.clone()));
//! for printer in mode.printers(Box::new(io::stdout()), Box::new(io::stderr()), &term, &suspender) {
//!     reporters.push(printer);
//! }
//! // File reports are created before the run, so a bad path fails early.
//! reporters.push(Box::new(JsonReporter::create(&report_path)?));
//! reporters.push(Box::new(TimingsReporter::create(&timings_path)?)); // --timings
//! reporters.push(Box::new(TraceReporter::create(&trace_path)?)); // --trace
//! // Last: the summary comes after all task output.
//! let mut reporters = reporters
//!     .with(SummaryReporter::new(Box::new(io::stderr()), SummaryOptions::default()));
//!
//! // while let Some(event) = events.next_event().await {   // plus a ~1 s tick:
//! //     for error in reporters.on_event(&event) { … }     // reporters.tick()
//! // }
//! for error in reporters.finish() {
//!     // A closed stdout (`agent-33 run … | head`) ends quietly.
//!     if !error.is_broken_pipe() {
//!         eprintln!("agent-33: {error}");
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod error;
mod format;
mod json;
mod junit;
mod notice;
mod ordered;
mod output;
mod progress;
mod replay;
mod report_file;
mod summary;
mod terminal;
mod timeline;
mod timeline_file;
mod timings;
mod trace;

use std::io::Write;

use agent33_parallel::Event;

pub use error::ReportError;
pub use format::{format_count, format_dollars, format_duration_ms, format_tokens};
pub use json::JsonReporter;
pub use junit::{DEFAULT_JUNIT_OUTPUT_LIMIT, JunitReporter};
pub use notice::NoticeReporter;
pub use output::{
    BarePrinter, GroupedPrinter, MAX_PARTIAL_LINE, OutputMode, ParseOutputModeError,
    PrinterOptions, StreamPrinter,
};
pub use progress::{
    DEFAULT_LINE_INTERVAL, FIRST_LINE_AFTER, HEARTBEAT_FACTOR, InputTotal, LimitSource,
    LimitStatus, ProgressReporter, Suspender,
};
pub use replay::{LoadReportError, SavedReport};
pub use summary::{DEFAULT_FAILED_LIMIT, StatusCounts, Summary, SummaryOptions, SummaryReporter};
pub use terminal::TerminalInfo;
pub use timeline::{AttemptRecord, Figures, TaskRecord, Timeline, TimelineBuilder};
pub use timings::{TimingsReporter, write_timings};
pub use trace::{TraceReporter, trace_json, write_trace};

/// Where a console reporter writes: stdout, stderr, or a buffer in tests.
pub type Output = Box<dyn Write + Send>;

/// Something that watches a run.
///
/// Calls arrive in this order: [`Reporter::on_event`] for each event as it
/// happens (with [`Reporter::tick`] now and then in between), then
/// [`Reporter::finish`] once. An `Err` means the reporter could not write;
/// it says nothing about the run.
pub trait Reporter: Send {
    /// Takes in one event.
    ///
    /// # Errors
    ///
    /// When the reporter's output cannot be written.
    fn on_event(&mut self, event: &Event) -> Result<(), ReportError>;

    /// Called periodically by the caller (about once a second), so reporters
    /// that speak on a clock can do so while no event arrives. The default
    /// does nothing.
    ///
    /// # Errors
    ///
    /// When the reporter's output cannot be written.
    fn tick(&mut self) -> Result<(), ReportError> {
        Ok(())
    }

    /// The run is over (after `RunFinished`, or because the event stream
    /// ended without it): write what is left.
    ///
    /// # Errors
    ///
    /// When the reporter's output cannot be written.
    fn finish(&mut self) -> Result<(), ReportError> {
        Ok(())
    }
}

struct Entry {
    reporter: Box<dyn Reporter>,
    /// Set after the reporter's first error: it gets nothing more, so each
    /// failure is reported once and a closed pipe is not written again.
    failed: bool,
}

/// Feeds every event to each of its reporters, in the order they were added.
///
/// Add the progress reporter first (so its bar is cleared before the others
/// print at the end) and the summary last (so it comes after any task
/// output). A reporter that fails is left out from then on; the others go on,
/// so a closed stdout never costs the JSON report or the summary.
#[derive(Default)]
pub struct Reporters {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Reporters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporters")
            .field("len", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl Reporters {
    /// No reporters.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a reporter.
    #[must_use]
    pub fn with(mut self, reporter: impl Reporter + 'static) -> Self {
        self.push(Box::new(reporter));
        self
    }

    /// Adds a boxed reporter.
    pub fn push(&mut self, reporter: Box<dyn Reporter>) {
        self.entries.push(Entry {
            reporter,
            failed: false,
        });
    }

    /// Number of reporters.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Feeds one event to every reporter still working; returns the errors
    /// this raised (usually none).
    #[must_use = "a reporter that failed is disabled; its error should be shown (unless a broken pipe)"]
    pub fn on_event(&mut self, event: &Event) -> Vec<ReportError> {
        self.each(|r| r.on_event(event))
    }

    /// Lets clock-driven reporters speak; call about once a second while
    /// waiting for events.
    #[must_use = "a reporter that failed is disabled; its error should be shown (unless a broken pipe)"]
    pub fn tick(&mut self) -> Vec<ReportError> {
        self.each(|r| r.tick())
    }

    /// Finishes every reporter still working, in order; returns the errors.
    #[must_use = "a reporter that failed is disabled; its error should be shown (unless a broken pipe)"]
    pub fn finish(mut self) -> Vec<ReportError> {
        self.each(|r| r.finish())
    }

    fn each(
        &mut self,
        mut f: impl FnMut(&mut (dyn Reporter + 'static)) -> Result<(), ReportError>,
    ) -> Vec<ReportError> {
        let mut errors = Vec::new();
        for entry in self.entries.iter_mut().filter(|e| !e.failed) {
            if let Err(e) = f(entry.reporter.as_mut()) {
                entry.failed = true;
                errors.push(e);
            }
        }
        errors
    }
}
