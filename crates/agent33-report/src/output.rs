//! How task output reaches the console (`--output grouped|stream|bare|none`).
//!
//! - [`GroupedPrinter`] (the default): when a task finishes, its captured
//!   output is written as one block under a header naming the task, so
//!   blocks of different tasks never interleave.
//! - [`StreamPrinter`]: lines as they arrive in `TaskOutput` events, each
//!   prefixed with the task id; a partial line waits for its newline (or the
//!   end of the attempt) so two tasks never share a line.
//! - [`BarePrinter`]: when a task finishes, the bytes it wrote, exactly,
//!   with nothing added: output meant for a file or a pipe.
//! - `none`: no printer at all.
//!
//! Keep order (`-k`, [`PrinterOptions::keep_order`]): grouped and bare
//! printers print tasks in input order rather than as they finish. A
//! finished task waits for every earlier one; its output is held meanwhile
//! (in memory up to a budget, then in a temporary file: see `held`). The
//! stream printer prints lines live and cannot reorder them; it ignores the
//! option.
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

mod held;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use agent33_parallel::{Event, Stream, TaskId, TaskResult, TaskStatus};

use crate::error::{Context as _, ReportError};
use crate::format::{Style, format_duration_ms, reason};
use crate::progress::Suspender;
use crate::terminal::TerminalInfo;
use crate::{Output, Reporter};
use held::{Held, MEMORY_BUDGET};

/// How task output reaches the console.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OutputMode {
    /// One block per finished task, under a header naming it.
    #[default]
    Grouped,
    /// Live lines, each prefixed with the task id. The executor must stream
    /// output (`Settings::stream_output`) for lines to arrive live.
    Stream,
    /// Each finished task's bytes exactly as written, nothing added. The
    /// executor must stream output (`Settings::stream_output`): the
    /// captured output of a result is a bounded tail, as text.
    Bare,
    /// No task output.
    None,
}

/// How printers choose and order what they print.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrinterOptions {
    failures_only: bool,
    keep_order: bool,
}

impl PrinterOptions {
    /// Only tasks that did not succeed have their output printed (`-q`).
    #[must_use]
    pub fn failures_only(mut self, yes: bool) -> Self {
        self.failures_only = yes;
        self
    }

    /// Tasks are printed in input order, not as they finish (`-k`);
    /// ignored by the stream printer.
    #[must_use]
    pub fn keep_order(mut self, yes: bool) -> Self {
        self.keep_order = yes;
        self
    }
}

impl OutputMode {
    /// The name used on the command line.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grouped => "grouped",
            Self::Stream => "stream",
            Self::Bare => "bare",
            Self::None => "none",
        }
    }

    /// Whether the executor should forward output live for this mode.
    #[must_use]
    pub fn needs_live_output(self) -> bool {
        matches!(self, Self::Stream | Self::Bare)
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
        self.printers_with(stdout, stderr, term, suspender, PrinterOptions::default())
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
        let options = PrinterOptions::default().failures_only(true);
        self.printers_with(stdout, stderr, term, suspender, options)
    }

    /// The printers for this mode, as `options` says.
    #[must_use]
    pub fn printers_with(
        self,
        stdout: Output,
        stderr: Output,
        term: &TerminalInfo,
        suspender: &Suspender,
        options: PrinterOptions,
    ) -> Vec<Box<dyn Reporter>> {
        let PrinterOptions {
            failures_only,
            keep_order,
        } = options;
        let (co, ce) = (term.color_stdout(), term.color_stderr());
        let grouped = |stream, out, color| -> Box<dyn Reporter> {
            Box::new(
                GroupedPrinter::new(stream, out, color)
                    .suspender(suspender.clone())
                    .failures_only(failures_only)
                    .keep_order(keep_order),
            )
        };
        let bare = |stream, out| -> Box<dyn Reporter> {
            Box::new(
                BarePrinter::new(stream, out)
                    .suspender(suspender.clone())
                    .failures_only(failures_only)
                    .keep_order(keep_order),
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
            Self::Bare => vec![bare(Stream::Stdout, stdout), bare(Stream::Stderr, stderr)],
            Self::None => Vec::new(),
        }
    }
}

impl fmt::Display for OutputMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `--output` value that is not `grouped`, `stream`, `bare` or `none`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown output mode `{0}` (expected grouped, stream, bare or none)")]
pub struct ParseOutputModeError(pub String);

impl FromStr for OutputMode {
    type Err = ParseOutputModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "grouped" => Ok(Self::Grouped),
            "stream" => Ok(Self::Stream),
            "bare" => Ok(Self::Bare),
            "none" => Ok(Self::None),
            other => Err(ParseOutputModeError(other.to_owned())),
        }
    }
}

/// What the result captured of `stream`.
fn captured(result: &TaskResult, stream: Stream) -> &str {
    match stream {
        Stream::Stdout => &result.output,
        Stream::Stderr => &result.stderr,
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

/// Finished tasks in input order: a task may be printed once every earlier
/// one has been (`-k`). Input positions are dense from 0, and every task
/// the engine queues finishes, so the line always moves on.
#[derive(Debug, Default)]
struct InOrder {
    /// The first task not printed yet.
    next: u64,
    /// Tasks after it that have finished.
    finished: BTreeSet<u64>,
}

impl InOrder {
    /// `seq` finished: the tasks that may be printed now, in order.
    fn finished(&mut self, seq: u64) -> Vec<u64> {
        self.finished.insert(seq);
        let mut ready = Vec::new();
        while self.finished.remove(&self.next) {
            ready.push(self.next);
            self.next += 1;
        }
        ready
    }

    /// Every finished task still waiting, in order: at the end of the run
    /// nothing is left to wait for.
    fn rest(&mut self) -> Vec<u64> {
        let rest: Vec<u64> = std::mem::take(&mut self.finished).into_iter().collect();
        if let Some(last) = rest.last() {
            self.next = last + 1;
        }
        rest
    }
}

/// What a grouped or bare printer holds and when it lets go: each task's
/// bytes until it has finished and, with keep-order, until every earlier
/// task has been printed. It owns the printer's stream and where it goes.
struct Release {
    stream: Stream,
    out: Output,
    suspender: Suspender,
    keep_order: Option<InOrder>,
    held: Held,
}

impl Release {
    fn new(stream: Stream, out: Output) -> Self {
        Self {
            stream,
            out,
            suspender: Suspender::none(),
            keep_order: None,
            held: Held::new(MEMORY_BUDGET),
        }
    }

    fn keep_order(&mut self, yes: bool) {
        self.keep_order = yes.then(InOrder::default);
    }

    /// `seq` finished (its bytes, if any, are held): prints what may be
    /// printed now.
    fn finished(&mut self, seq: u64) -> Result<(), ReportError> {
        let ready = match &mut self.keep_order {
            Some(order) => order.finished(seq),
            None => vec![seq],
        };
        self.print(&ready)
    }

    /// Prints everything still held, in input order.
    fn flush_all(&mut self) -> Result<(), ReportError> {
        let rest = match &mut self.keep_order {
            Some(order) => order.rest(),
            None => Vec::new(),
        };
        self.print(&rest)
    }

    fn print(&mut self, seqs: &[u64]) -> Result<(), ReportError> {
        if !seqs.iter().any(|&s| self.held.has(s)) {
            return Ok(());
        }
        let (held, out, stream) = (&mut self.held, &mut self.out, self.stream);
        self.suspender
            .suspend(|| {
                let mut result = Ok(());
                // Every task is let go, even after a failed write, so that
                // nothing stays held for a closed pipe.
                for &seq in seqs {
                    let written = held.write_out(seq, out);
                    if result.is_ok() {
                        result = written;
                    }
                }
                result.and_then(|()| out.flush())
            })
            .context(|| stream_target(stream))
    }
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
/// the header by outcome. With [`GroupedPrinter::keep_order`], blocks come
/// in input order.
pub struct GroupedPrinter {
    color: bool,
    failures_only: bool,
    release: Release,
}

impl fmt::Debug for GroupedPrinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupedPrinter")
            .field("stream", &self.release.stream)
            .field("color", &self.color)
            .finish_non_exhaustive()
    }
}

impl GroupedPrinter {
    /// A printer of tasks' `stream` output to `out`.
    #[must_use]
    pub fn new(stream: Stream, out: Output, color: bool) -> Self {
        Self {
            color,
            failures_only: false,
            release: Release::new(stream, out),
        }
    }

    /// Hides the progress bar while a block is written.
    #[must_use]
    pub fn suspender(mut self, suspender: Suspender) -> Self {
        self.release.suspender = suspender;
        self
    }

    /// Prints only the blocks of tasks that did not succeed (`--quiet`).
    #[must_use]
    pub fn failures_only(mut self, yes: bool) -> Self {
        self.failures_only = yes;
        self
    }

    /// Prints blocks in input order, each once every earlier task has been
    /// printed (`--keep-order`); a finished task's block is held till then.
    #[must_use]
    pub fn keep_order(mut self, yes: bool) -> Self {
        self.release.keep_order(yes);
        self
    }

    fn block(&self, result: &TaskResult) -> Option<String> {
        if self.failures_only && result.status == TaskStatus::Success {
            return None;
        }
        let stream = self.release.stream;
        let text = captured(result, stream);
        if text.is_empty() {
            return None;
        }
        let outcome = if result.status == TaskStatus::Success {
            "ok".to_owned()
        } else {
            reason(result.error.as_deref(), result.status.as_str())
        };
        let tag = match stream {
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
        match event {
            Event::TaskFinished { seq, result, .. } => {
                let block = self.block(result);
                let release = &mut self.release;
                if release.keep_order.is_none() {
                    if let Some(block) = block {
                        emit(
                            &mut release.out,
                            &release.suspender,
                            release.stream,
                            block.as_bytes(),
                        )?;
                    }
                    return Ok(());
                }
                if let Some(block) = block {
                    release.held.append(*seq, block.as_bytes());
                }
                release.finished(*seq)
            }
            Event::RunFinished { .. } => self.release.flush_all(),
            _ => Ok(()),
        }
    }

    fn finish(&mut self) -> Result<(), ReportError> {
        self.release.flush_all()
    }
}

/// Prints one stream of each finished task exactly as the task wrote it:
/// no header, no prefix, no newline added, bytes that are not UTF-8 kept.
/// Tasks never interleave. `sha256sum` run over files this way prints what
/// `sha256sum` over all of them prints.
///
/// The bytes come from the live `TaskOutput` events (the executor must
/// stream output), held until the task ends; a retry starts afresh, so the
/// last attempt's output is printed, as in the result. A task that
/// streamed nothing but has output in its result (an agent that returns
/// its output instead of writing it, a task resumed from a journal) gets
/// that printed. What is held beyond a memory budget waits in a temporary
/// file.
pub struct BarePrinter {
    failures_only: bool,
    release: Release,
    /// Tasks whose current attempt streamed on this stream.
    streamed: HashSet<u64>,
}

impl fmt::Debug for BarePrinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BarePrinter")
            .field("stream", &self.release.stream)
            .field("keep_order", &self.release.keep_order.is_some())
            .finish_non_exhaustive()
    }
}

impl BarePrinter {
    /// A printer of tasks' `stream` output to `out`.
    #[must_use]
    pub fn new(stream: Stream, out: Output) -> Self {
        Self {
            failures_only: false,
            release: Release::new(stream, out),
            streamed: HashSet::new(),
        }
    }

    /// Hides the progress bar while output is written.
    #[must_use]
    pub fn suspender(mut self, suspender: Suspender) -> Self {
        self.release.suspender = suspender;
        self
    }

    /// Prints only the output of tasks that did not succeed (`--quiet`).
    #[must_use]
    pub fn failures_only(mut self, yes: bool) -> Self {
        self.failures_only = yes;
        self
    }

    /// Prints tasks in input order (`--keep-order`).
    #[must_use]
    pub fn keep_order(mut self, yes: bool) -> Self {
        self.release.keep_order(yes);
        self
    }
}

impl Reporter for BarePrinter {
    fn on_event(&mut self, event: &Event) -> Result<(), ReportError> {
        match event {
            Event::TaskOutput {
                seq, stream, bytes, ..
            } if *stream == self.release.stream => {
                self.streamed.insert(*seq);
                self.release.held.append(*seq, bytes);
                Ok(())
            }
            Event::TaskRetryScheduled { seq, .. } => {
                self.streamed.remove(seq);
                self.release.held.discard(*seq);
                Ok(())
            }
            Event::TaskFinished { seq, result, .. } => {
                let streamed = self.streamed.remove(seq);
                if self.failures_only && result.status == TaskStatus::Success {
                    self.release.held.discard(*seq);
                } else if !streamed {
                    let text = captured(result, self.release.stream);
                    self.release.held.append(*seq, text.as_bytes());
                }
                self.release.finished(*seq)
            }
            Event::RunFinished { .. } => self.release.flush_all(),
            _ => Ok(()),
        }
    }

    fn finish(&mut self) -> Result<(), ReportError> {
        self.release.flush_all()
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
            Event::TaskRetryScheduled { seq, .. } => self.end_line(&mut buf, *seq),
            Event::TaskFinished { seq, result, .. } => {
                self.end_line(&mut buf, *seq);
                let shown = !self.failures_only || result.status != TaskStatus::Success;
                if !self.streamed.remove(seq) && shown {
                    let text = captured(result, self.stream);
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
