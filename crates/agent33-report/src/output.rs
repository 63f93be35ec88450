//! How task output reaches the console (`--output grouped|stream|none`).
//!
//! - [`GroupedPrinter`] (the default): when a task finishes, its captured
//!   output is written as one block under a header naming the task, so
//!   blocks of different tasks never interleave.
//! - [`StreamPrinter`]: lines as they arrive in `TaskOutput` events, each
//!   prefixed with the task id; a partial line waits for its newline (or the
//!   end of the attempt) so two tasks never share a line.
//! - `none`: no printer at all.
//!
//! Quiet (`-q`, [`OutputMode::quiet_printers`]) shows only the output of
//! tasks that did not succeed. Grouped printers just skip the others'
//! blocks; stream printers cannot know a line's task will fail while it
//! runs, so they print nothing live and, when a task did not succeed, its
//! captured output (the engine's bounded tail) as prefixed lines at its
//! end.
//!
//! Each printer serves one stream: a task's stdout goes to our stdout and its
//! stderr to our stderr, each through its own printer, so a closed stdout
//! (`agent-33 run … | head`) silences only the stdout printer. Printers do
//! not decide what a closed pipe means; they return a [`ReportError`] whose
//! [`ReportError::is_broken_pipe`] is true.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use agent33_parallel::{Event, Stream, TaskId, TaskResult, TaskStatus};

use crate::error::{Context as _, ReportError};
use crate::format::{Style, format_duration_ms, reason};
use crate::progress::Suspender;
use crate::terminal::TerminalInfo;
use crate::{Output, Reporter};

/// How task output reaches the console.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OutputMode {
    /// One block per finished task, under a header naming it.
    #[default]
    Grouped,
    /// Live lines, each prefixed with the task id. The executor must stream
    /// output (`Settings::stream_output`) for lines to arrive live.
    Stream,
    /// No task output.
    None,
}

impl OutputMode {
    /// The name used on the command line.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grouped => "grouped",
            Self::Stream => "stream",
            Self::None => "none",
        }
    }

    /// Whether the executor should forward output live for this mode.
    #[must_use]
    pub fn needs_live_output(self) -> bool {
        self == Self::Stream
    }

    /// The printers for this mode: one for tasks' stdout (written to
    /// `stdout`) and one for their stderr (written to `stderr`); none for
    /// [`OutputMode::None`].
    #[must_use]
    pub fn printers(
        self,
        stdout: Output,
        stderr: Output,
        term: &TerminalInfo,
        suspender: &Suspender,
    ) -> Vec<Box<dyn Reporter>> {
        self.make_printers(stdout, stderr, term, suspender, false)
    }

    /// The printers for this mode under `--quiet`: as [`OutputMode::printers`],
    /// but only tasks that did not succeed have their output printed (see
    /// the module docs for what that means live).
    #[must_use]
    pub fn quiet_printers(
        self,
        stdout: Output,
        stderr: Output,
        term: &TerminalInfo,
        suspender: &Suspender,
    ) -> Vec<Box<dyn Reporter>> {
        self.make_printers(stdout, stderr, term, suspender, true)
    }

    fn make_printers(
        self,
        stdout: Output,
        stderr: Output,
        term: &TerminalInfo,
        suspender: &Suspender,
        failures_only: bool,
    ) -> Vec<Box<dyn Reporter>> {
        let (co, ce) = (term.color_stdout(), term.color_stderr());
        let grouped = |stream, out, color| -> Box<dyn Reporter> {
            Box::new(
                GroupedPrinter::new(stream, out, color)
                    .suspender(suspender.clone())
                    .failures_only(failures_only),
            )
        };
        let streamed = |stream, out, color| -> Box<dyn Reporter> {
            Box::new(
                StreamPrinter::new(stream, out, color)
                    .suspender(suspender.clone())
                    .failures_only(failures_only),
            )
        };
        match self {
            Self::Grouped => vec![
                grouped(Stream::Stdout, stdout, co),
                grouped(Stream::Stderr, stderr, ce),
            ],
            Self::Stream => vec![
                streamed(Stream::Stdout, stdout, co),
                streamed(Stream::Stderr, stderr, ce),
            ],
            Self::None => Vec::new(),
        }
    }
}

impl fmt::Display for OutputMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `--output` value that is not `grouped`, `stream` or `none`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown output mode `{0}` (expected grouped, stream or none)")]
pub struct ParseOutputModeError(pub String);

impl FromStr for OutputMode {
    type Err = ParseOutputModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "grouped" => Ok(Self::Grouped),
            "stream" => Ok(Self::Stream),
            "none" => Ok(Self::None),
            other => Err(ParseOutputModeError(other.to_owned())),
        }
    }
}

fn stream_target(stream: Stream) -> String {
    match stream {
        Stream::Stdout => "task output to stdout".to_owned(),
        Stream::Stderr => "task output to stderr".to_owned(),
    }
}

/// Writes `bytes` whole and flushes, with the progress bar out of the way.
fn emit(
    out: &mut Output,
    suspender: &Suspender,
    stream: Stream,
    bytes: &[u8],
) -> Result<(), ReportError> {
    if bytes.is_empty() {
        return Ok(());
    }
    suspender
        .suspend(|| out.write_all(bytes).and_then(|()| out.flush()))
        .context(|| stream_target(stream))
}

/// Prints each finished task's output for one stream as a block:
///
/// ```text
/// ── validation:core/agents/worker.md (exit code 1, 0.3s) ──
/// …the task's stdout…
/// ```
///
/// The stderr printer's header says `[stderr]` after the id. Tasks that
/// wrote nothing to the stream get no block. Colour (on a terminal) marks
/// the header by outcome.
pub struct GroupedPrinter {
    stream: Stream,
    out: Output,
    color: bool,
    suspender: Suspender,
    failures_only: bool,
}

impl fmt::Debug for GroupedPrinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupedPrinter")
            .field("stream", &self.stream)
            .field("color", &self.color)
            .finish_non_exhaustive()
    }
}

impl GroupedPrinter {
    /// A printer of tasks' `stream` output to `out`.
    #[must_use]
    pub fn new(stream: Stream, out: Output, color: bool) -> Self {
        Self {
            stream,
            out,
            color,
            suspender: Suspender::none(),
            failures_only: false,
        }
    }

    /// Hides the progress bar while a block is written.
    #[must_use]
    pub fn suspender(mut self, suspender: Suspender) -> Self {
        self.suspender = suspender;
        self
    }

    /// Prints only the blocks of tasks that did not succeed (`--quiet`).
    #[must_use]
    pub fn failures_only(mut self, yes: bool) -> Self {
        self.failures_only = yes;
        self
    }

    fn block(&self, result: &TaskResult) -> Option<String> {
        if self.failures_only && result.status == TaskStatus::Success {
            return None;
        }
        let text = match self.stream {
            Stream::Stdout => &result.output,
            Stream::Stderr => &result.stderr,
        };
        if text.is_empty() {
            return None;
        }
        let outcome = if result.status == TaskStatus::Success {
            "ok".to_owned()
        } else {
            reason(result.error.as_deref(), result.status.as_str())
        };
        let tag = match self.stream {
            Stream::Stdout => "",
            Stream::Stderr => " [stderr]",
        };
        let header = format!(
            "── {}{tag} ({outcome}, {}) ──",
            result.task.id,
            format_duration_ms(result.duration_ms)
        );
        let style = match result.status {
            TaskStatus::Success => Style::Green,
            TaskStatus::Failed | TaskStatus::Timeout => Style::Red,
            TaskStatus::Cancelled | TaskStatus::Skipped => Style::Yellow,
        };
        let mut block = String::with_capacity(header.len() + text.len() + 16);
        block.push_str(&style.paint(&header, self.color));
        block.push('\n');
        block.push_str(text);
        // The next header must start on a line of its own.
        if !text.ends_with('\n') {
            block.push('\n');
        }
        Some(block)
    }
}

impl Reporter for GroupedPrinter {
    fn on_event(&mut self, event: &Event) -> Result<(), ReportError> {
        if let Event::TaskFinished { result, .. } = event {
            if let Some(block) = self.block(result) {
                emit(
                    &mut self.out,
                    &self.suspender,
                    self.stream,
                    block.as_bytes(),
                )?;
            }
        }
        Ok(())
    }
}

/// Above this many bytes without a newline, a partial line is printed as a
/// line anyway, so a task that never writes a newline cannot grow our memory
/// without bound.
pub const MAX_PARTIAL_LINE: usize = 64 * 1024;

/// Prints one stream of every task's output live, line by line:
///
/// ```text
/// [command:foo] a line foo wrote
/// [command:bar] a line bar wrote
/// ```
///
/// Bytes are passed through as written (no UTF-8 check). A partial line is
/// kept per task until its newline, the end of the attempt (retry or
/// finish), or [`MAX_PARTIAL_LINE`] bytes; at the end it gets a newline.
/// For a task that streamed nothing on this stream but has captured output
/// in its result (an agent that returns its output instead of writing it,
/// or an executor not streaming), that output is printed at its finish, the
/// same way. With [`StreamPrinter::failures_only`], nothing is printed live:
/// only that captured output, and only for tasks that did not succeed.
pub struct StreamPrinter {
    stream: Stream,
    out: Output,
    color: bool,
    suspender: Suspender,
    failures_only: bool,
    /// Unfinished line per running task.
    partial: HashMap<u64, (TaskId, Vec<u8>)>,
    /// Tasks that streamed on this stream (until they finish).
    streamed: HashSet<u64>,
}

impl fmt::Debug for StreamPrinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamPrinter")
            .field("stream", &self.stream)
            .field("color", &self.color)
            .field("partial", &self.partial.len())
            .finish_non_exhaustive()
    }
}

impl StreamPrinter {
    /// A printer of tasks' `stream` output to `out`.
    #[must_use]
    pub fn new(stream: Stream, out: Output, color: bool) -> Self {
        Self {
            stream,
            out,
            color,
            suspender: Suspender::none(),
            failures_only: false,
            partial: HashMap::new(),
            streamed: HashSet::new(),
        }
    }

    /// Hides the progress bar while lines are written.
    #[must_use]
    pub fn suspender(mut self, suspender: Suspender) -> Self {
        self.suspender = suspender;
        self
    }

    /// Prints only the output of tasks that did not succeed, when they end
    /// (`--quiet`): whether a task fails is known only then, and its
    /// captured output is the engine's bounded tail, so waiting costs no
    /// memory of our own.
    #[must_use]
    pub fn failures_only(mut self, yes: bool) -> Self {
        self.failures_only = yes;
        self
    }

    fn line(&self, buf: &mut Vec<u8>, id: &TaskId, line: &[u8]) {
        let prefix = format!("[{id}]");
        buf.extend_from_slice(Style::Cyan.paint(&prefix, self.color).as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(line);
        if line.last() != Some(&b'\n') {
            buf.push(b'\n');
        }
    }

    /// Appends `bytes` to the task's partial line and moves complete lines
    /// into `buf`.
    fn take_in(&mut self, buf: &mut Vec<u8>, seq: u64, id: &TaskId, bytes: &[u8]) {
        let mut entry = self
            .partial
            .remove(&seq)
            .unwrap_or_else(|| (id.clone(), Vec::new()));
        entry.1.extend_from_slice(bytes);
        let pending = &entry.1;
        let mut start = 0;
        while let Some(pos) = pending[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos + 1;
            self.line(buf, &entry.0, &pending[start..end]);
            start = end;
        }
        if pending.len() - start > MAX_PARTIAL_LINE {
            self.line(buf, &entry.0, &pending[start..]);
            start = pending.len();
        }
        entry.1.drain(..start);
        self.partial.insert(seq, entry);
    }

    /// Ends the task's partial line, if any.
    fn end_line(&mut self, buf: &mut Vec<u8>, seq: u64) {
        if let Some((id, rest)) = self.partial.remove(&seq) {
            if !rest.is_empty() {
                self.line(buf, &id, &rest);
            }
        }
    }

    fn flush_all(&mut self) -> Result<(), ReportError> {
        let mut seqs: Vec<u64> = self.partial.keys().copied().collect();
        seqs.sort_unstable();
        let mut buf = Vec::new();
        for seq in seqs {
            self.end_line(&mut buf, seq);
        }
        emit(&mut self.out, &self.suspender, self.stream, &buf)
    }
}

impl Reporter for StreamPrinter {
    fn on_event(&mut self, event: &Event) -> Result<(), ReportError> {
        let mut buf = Vec::new();
        match event {
            Event::TaskOutput {
                seq,
                id,
                stream,
                bytes,
            } if *stream == self.stream && !self.failures_only => {
                self.streamed.insert(*seq);
                self.take_in(&mut buf, *seq, id, bytes);
            }
            Event::TaskRetrying { seq, .. } => self.end_line(&mut buf, *seq),
            Event::TaskFinished { seq, result, .. } => {
                self.end_line(&mut buf, *seq);
                let shown = !self.failures_only || result.status != TaskStatus::Success;
                if !self.streamed.remove(seq) && shown {
                    let text = match self.stream {
                        Stream::Stdout => &result.output,
                        Stream::Stderr => &result.stderr,
                    };
                    let id = &result.task.id;
                    for line in text.as_bytes().split_inclusive(|&b| b == b'\n') {
                        self.line(&mut buf, id, line);
                    }
                }
            }
            Event::RunFinished { .. } => return self.flush_all(),
            _ => {}
        }
        emit(&mut self.out, &self.suspender, self.stream, &buf)
    }

    fn finish(&mut self) -> Result<(), ReportError> {
        self.flush_all()
    }
}
