//! `--report PATH`: the run's [`ExecutionResults`] as JSON, written when
//! the run is over: atomically over a regular file, in place to a device,
//! FIFO or `/dev/stdout`.
//!
//! The document is `ExecutionResults` exactly as the engine serialises it
//! (PRODUCT.md's field names; each task result exactly its `TaskResult`),
//! with top-level additions that let a timeline be drawn later from the
//! file alone (`agent-33 report RUN.json --timings …`):
//!
//! - top-level `started_at` (when the run began) and `stopped` (why it
//!   stopped early, or null);
//! - top-level `attempts`: one [`AttemptRecord`] per attempt, ordered by
//!   start — seq, id, attempt, slot, started_at, finished_at, status, error,
//!   waited_ms, and `worker` when the attempt ran on one;
//! - top-level `input_order`: every task id in input order (the four lists
//!   keep input order each, but not how they interleave).
//!
//! Fields are only ever added, never renamed, so a reader of plain
//! `ExecutionResults` (such as `serde_json::from_str::<ExecutionResults>`)
//! reads this file unchanged. [`SavedReport`](crate::SavedReport) reads it
//! back. The report is pretty-printed: people open it as often as tools
//! do, and `jq` reads both.
//!
//! The format lists every result, in input order, yet results arrive in
//! finishing order and each carries up to a few MiB of captured output.
//! Rather than keep them all until the end (as the engine's
//! [`ResultsCollector`](agent33_parallel::ResultsCollector) would), this
//! reporter writes each result's JSON, already indented for its place in
//! the document, to an anonymous spill file in the report's folder (the
//! system's temporary folder for a report written in place) as soon
//! as it finishes, and indexes it by list, seq, offset and length. At the
//! end it copies the bytes into the report in index order, which comes out
//! byte for byte as if the whole `ExecutionResults` had been serialised at
//! once.
//!
//! The additions are spilled the same way: each attempt's record once it
//! has ended (only the attempts now running are kept, a few per slot), and
//! each task's id as it is queued and as it finishes, in two more anonymous
//! files. The indexes themselves go to disk through a bounded external sort
//! (the `ordered` module): tasks finish within a few places of their
//! input and start order, so memory stays flat however many tasks run,
//! and the report costs no more for 100,000 tasks than for 2,000. The
//! additions come out exactly as
//! [`TimelineBuilder`](crate::TimelineBuilder) would give them.

use std::fs::File;
use std::io::{self, BufRead as _, BufReader, BufWriter, Seek as _, SeekFrom, Write};
use std::path::{Path, PathBuf};

use agent33_parallel::{Event, Metrics, StopReason, TaskResult, TaskStatus, Timestamp};
use serde::Serialize;

use crate::Reporter;
use crate::error::{Context as _, ReportError};
use crate::ordered::{self, Ordered, Record};
use crate::report_file::ReportFile;
use crate::timeline::{AttemptFold, AttemptRecord};

/// Writes [`ExecutionResults`](agent33_parallel::ExecutionResults) as JSON
/// to a path, with each attempt's slot and times (see the module
/// documentation for the additions).
#[derive(Debug)]
pub struct JsonReporter {
    path: PathBuf,
    file: Option<ReportFile>,
    /// `None` once a write to it failed: its offsets can no longer be
    /// trusted, so no report is written.
    spill: Option<Spill>,
    done: Option<(u64, Metrics)>,
    /// When the run began (`RunStarted`).
    started_at: Option<Timestamp>,
    /// Why the run stopped early (`RunStopTriggered`, `RunFinished`).
    stopped: Option<StopReason>,
    /// The attempts now running, until they end and are spilled.
    attempts: AttemptFold,
}

impl JsonReporter {
    /// Prepares the report at `path` now, so that a path that cannot be written
    /// fails before the run. A regular file, or a path where nothing is yet
    /// (missing parent folders are created), is replaced only when it is
    /// complete, by renaming a temporary file over it; a symbolic link is
    /// followed and stays; anything else (`/dev/null`, a FIFO,
    /// `/dev/stdout`) is written in place, never replaced.
    ///
    /// # Errors
    ///
    /// When the folder or the temporary files cannot be created, or the
    /// path cannot be opened for writing (it is a folder, say).
    pub fn create(path: impl AsRef<Path>) -> Result<Self, ReportError> {
        let path = path.as_ref().to_owned();
        let file = ReportFile::create(&path).context(|| target(&path))?;
        // The spill is about as large as the report.
        let spill = Spill::create(&file.scratch_folder()).context(|| target(&path))?;
        Ok(Self {
            path,
            file: Some(file),
            spill: Some(spill),
            done: None,
            started_at: None,
            stopped: None,
            attempts: AttemptFold::default(),
        })
    }
}

fn target(path: &Path) -> String {
    format!("the JSON report `{}`", path.display())
}

/// The document's four lists of results, in the document's order.
const LISTS: [&str; 4] = ["succeeded", "failed", "cancelled", "skipped"];

/// Which of [`LISTS`] a result goes in, as `ResultsCollector` sorts them.
fn list_of(status: TaskStatus) -> usize {
    match status {
        TaskStatus::Success => 0,
        TaskStatus::Failed | TaskStatus::Timeout => 1,
        TaskStatus::Cancelled => 2,
        TaskStatus::Skipped => 3,
    }
}

/// Where some JSON lies in a spill file.
#[derive(Debug, Clone, Copy)]
struct Span {
    offset: u64,
    len: u64,
}

/// Fixed-width fields of an index record, in order.
struct Put<'a> {
    bytes: &'a mut [u8],
    at: usize,
}

impl Put<'_> {
    fn put<const N: usize>(&mut self, field: [u8; N]) -> &mut Self {
        self.bytes[self.at..self.at + N].copy_from_slice(&field);
        self.at += N;
        self
    }
}

/// Reads back what [`Put`] wrote.
struct Take<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Take<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut field = [0; N];
        field.copy_from_slice(&self.bytes[self.at..self.at + N]);
        self.at += N;
        field
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn i128(&mut self) -> i128 {
        i128::from_le_bytes(self.take())
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
}

/// A timestamp as a number that orders as the timestamps do: nanoseconds
/// from the Unix epoch, negative before it.
fn time_key(t: Timestamp) -> i128 {
    let nanos = |d: std::time::Duration| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX);
    match t.0.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => nanos(d),
        Err(e) => -nanos(e.duration()),
    }
}

/// Where one result's JSON lies in the results' spill file, ordered as
/// `ResultsCollector` orders each list: by seq, which is input order, then
/// in the order they came (a seq that finished twice is listed twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct ResultEntry {
    seq: u64,
    offset: u64,
    len: u64,
    list: u8,
}

impl Record for ResultEntry {
    const SIZE: usize = 25;
    fn encode(&self, out: &mut [u8]) {
        Put { bytes: out, at: 0 }
            .put(self.seq.to_le_bytes())
            .put(self.offset.to_le_bytes())
            .put(self.len.to_le_bytes())
            .put([self.list]);
    }
    fn decode(bytes: &[u8]) -> Self {
        let mut r = Take { bytes, at: 0 };
        Self {
            seq: r.u64(),
            offset: r.u64(),
            len: r.u64(),
            list: r.u8(),
        }
    }
}

/// Where one attempt's record lies in the attempts' spill file, ordered as
/// `TimelineBuilder` orders attempts: by start, then seq, then attempt
/// number. Records alike in all three (a task started twice over without
/// ending) keep the order they started in, which is the order they were
/// spilled in: the earlier one is spilled when the later one starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct AttemptEntry {
    started: i128,
    seq: u64,
    attempt: u32,
    offset: u64,
    len: u32,
}

impl Record for AttemptEntry {
    const SIZE: usize = 40;
    fn encode(&self, out: &mut [u8]) {
        Put { bytes: out, at: 0 }
            .put(self.started.to_le_bytes())
            .put(self.seq.to_le_bytes())
            .put(self.attempt.to_le_bytes())
            .put(self.offset.to_le_bytes())
            .put(self.len.to_le_bytes());
    }
    fn decode(bytes: &[u8]) -> Self {
        let mut r = Take { bytes, at: 0 };
        Self {
            started: r.i128(),
            seq: r.u64(),
            attempt: r.u32(),
            offset: r.u64(),
            len: r.u32(),
        }
    }
}

/// Where one of a task's ids lies in the ids' spill file. Per seq, the
/// first in this order is the task's id, as `TimelineBuilder` keeps it:
/// its last result's if it finished, else its first `TaskQueued`'s, else
/// (a task seen only through its attempts) its first attempt's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct IdEntry {
    seq: u64,
    /// [`FINISHED`], [`QUEUED`] or [`STARTED`].
    class: u8,
    /// For [`STARTED`]: when, and which attempt.
    started: i128,
    attempt: u32,
    /// Offsets grow with time, so they tell which came first; a finished
    /// task's is inverted, the last result winning.
    order: u64,
    offset: u64,
    len: u32,
}

const FINISHED: u8 = 0;
const QUEUED: u8 = 1;
const STARTED: u8 = 2;

impl Record for IdEntry {
    const SIZE: usize = 49;
    fn encode(&self, out: &mut [u8]) {
        Put { bytes: out, at: 0 }
            .put(self.seq.to_le_bytes())
            .put([self.class])
            .put(self.started.to_le_bytes())
            .put(self.attempt.to_le_bytes())
            .put(self.order.to_le_bytes())
            .put(self.offset.to_le_bytes())
            .put(self.len.to_le_bytes());
    }
    fn decode(bytes: &[u8]) -> Self {
        let mut r = Take { bytes, at: 0 };
        Self {
            seq: r.u64(),
            class: r.u8(),
            started: r.i128(),
            attempt: r.u32(),
            order: r.u64(),
            offset: r.u64(),
            len: r.u32(),
        }
    }
}

/// An append-only spill file.
#[derive(Debug)]
struct SpillFile {
    out: BufWriter<File>,
    end: u64,
    /// Room to gather an entry in before it is indented (see [`Gathered`]).
    held: Vec<u8>,
}

/// Bytes of write buffer per spill file: a few dozen entries per write.
const SPILL_BUFFER: usize = 32 * 1024;

impl SpillFile {
    fn new(file: File) -> Self {
        Self {
            out: BufWriter::with_capacity(SPILL_BUFFER, file),
            end: 0,
            held: Vec::new(),
        }
    }

    /// Writes `value` as JSON (pretty, indented for an item of a top-level
    /// list, if `pretty`) and says where it went.
    fn push(&mut self, value: &impl Serialize, pretty: bool) -> io::Result<Span> {
        let mut out = Gathered {
            to: Indented {
                out: &mut self.out,
                written: 0,
            },
            held: &mut self.held,
        };
        if pretty {
            serde_json::to_writer_pretty(&mut out, value)?;
        } else {
            serde_json::to_writer(&mut out, value)?;
        }
        out.pass_on()?;
        let span = Span {
            offset: self.end,
            len: out.to.written,
        };
        self.end += span.len;
        Ok(span)
    }

    fn reader(self) -> io::Result<Reader> {
        Ok(Reader {
            file: BufReader::with_capacity(
                FINAL_BUFFER,
                self.out
                    .into_inner()
                    .map_err(io::IntoInnerError::into_error)?,
            ),
            pos: None,
        })
    }
}

/// The results' JSON in finishing order, the ended attempts' records and
/// the tasks' ids, each file with its index on the way to the order the
/// document lists them in.
#[derive(Debug)]
struct Spill {
    results: SpillFile,
    result_index: Ordered<ResultEntry>,
    /// Results per list of [`LISTS`].
    counts: [usize; 4],
    attempts: SpillFile,
    attempt_index: Ordered<AttemptEntry>,
    ids: SpillFile,
    id_index: Ordered<IdEntry>,
    /// Every seq below this one was queued, so a task started among them
    /// needs no id from its attempt.
    queued_below: u64,
}

/// Indentation of a result inside the document: results are array items
/// (depth 2) of the document's top-level lists.
const RESULT_INDENT: &[u8] = b"    ";

fn too_long() -> io::Error {
    io::Error::other("a spilled record is too long")
}

impl Spill {
    /// Six anonymous files in `dir`: three for the JSON, three for the
    /// indexes.
    fn create(dir: &Path) -> io::Result<Self> {
        let file = || tempfile::tempfile_in(dir);
        Ok(Self {
            results: SpillFile::new(file()?),
            result_index: Ordered::new(file()?, ordered::HEAP),
            counts: [0; 4],
            attempts: SpillFile::new(file()?),
            attempt_index: Ordered::new(file()?, ordered::HEAP),
            ids: SpillFile::new(file()?),
            id_index: Ordered::new(file()?, ordered::HEAP),
            queued_below: 0,
        })
    }

    fn push(&mut self, seq: u64, result: &TaskResult) -> io::Result<()> {
        let span = self.results.push(result, true)?;
        let list = list_of(result.status);
        self.counts[list] += 1;
        self.result_index.push(ResultEntry {
            seq,
            offset: span.offset,
            len: span.len,
            list: u8::try_from(list).expect("four lists"),
        })
    }

    fn push_attempt(&mut self, a: &AttemptRecord) -> io::Result<()> {
        let span = self.attempts.push(a, true)?;
        self.attempt_index.push(AttemptEntry {
            started: time_key(a.started_at),
            seq: a.seq,
            attempt: a.attempt,
            offset: span.offset,
            len: u32::try_from(span.len).map_err(|_| too_long())?,
        })
    }

    fn push_id(
        &mut self,
        seq: u64,
        id: &str,
        class: u8,
        started: i128,
        attempt: u32,
    ) -> io::Result<()> {
        let span = self.ids.push(&id, false)?;
        self.id_index.push(IdEntry {
            seq,
            class,
            started,
            attempt,
            order: if class == FINISHED {
                u64::MAX - span.offset
            } else {
                span.offset
            },
            offset: span.offset,
            len: u32::try_from(span.len).map_err(|_| too_long())?,
        })
    }

    fn queued(&mut self, seq: u64, id: &str) -> io::Result<()> {
        if seq == self.queued_below {
            self.queued_below += 1;
        }
        self.push_id(seq, id, QUEUED, 0, 0)
    }

    fn started(&mut self, seq: u64, id: &str, attempt: u32, at: Timestamp) -> io::Result<()> {
        if seq < self.queued_below {
            return Ok(());
        }
        self.push_id(seq, id, STARTED, time_key(at), attempt)
    }

    fn finished(&mut self, seq: u64, id: &str) -> io::Result<()> {
        self.push_id(seq, id, FINISHED, 0, 0)
    }
}

/// Writes the items at `spans` as the pretty printer writes an array at
/// depth 1, each item on its own line.
fn write_list(
    spans: impl Iterator<Item = io::Result<Span>>,
    spill: &mut Reader,
    out: &mut impl Write,
) -> io::Result<()> {
    let mut n = 0usize;
    for span in spans {
        out.write_all(if n == 0 { b"[\n" } else { b",\n" })?;
        out.write_all(RESULT_INDENT)?;
        spill.copy(span?, out)?;
        n += 1;
    }
    out.write_all(if n == 0 { b"[]" } else { b"\n  ]" })
}

/// Bytes of buffer for each file read and the report written at the end:
/// entries come back a little out of the order they were written in, and a
/// wider buffer takes more of them without going back to the file.
const FINAL_BUFFER: usize = 64 * 1024;

/// Reads entries back from a spill file, seeking only when they are not
/// contiguous (tasks tend to finish near input order, so reads mostly
/// stream), and then within the buffer where it can.
struct Reader {
    file: BufReader<File>,
    pos: Option<u64>,
}

impl Reader {
    fn copy(&mut self, e: Span, out: &mut impl Write) -> io::Result<()> {
        match self.pos {
            Some(pos) if pos == e.offset => {}
            Some(pos) => {
                let by = i64::try_from(e.offset)
                    .ok()
                    .zip(i64::try_from(pos).ok())
                    .map(|(to, from)| to - from)
                    .ok_or_else(|| io::Error::other("spill offset out of range"))?;
                self.file.seek_relative(by)?;
            }
            None => {
                self.file.seek(SeekFrom::Start(e.offset))?;
            }
        }
        // Until the copy completes the position is unknown.
        self.pos = None;
        // Through the read buffer, not `io::copy`: for a file to a file
        // that flushes the writer, asks both files' metadata and makes a
        // `copy_file_range` call for every entry, a few hundred bytes each.
        let mut left = e.len;
        while left > 0 {
            let chunk = self.file.fill_buf()?;
            if chunk.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the spilled results are shorter than written",
                ));
            }
            let n = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            out.write_all(&chunk[..n])?;
            self.file.consume(n);
            left -= n as u64;
        }
        self.pos = Some(e.offset + e.len);
        Ok(())
    }
}

/// Re-indents pretty-printed JSON for a deeper nesting level: JSON strings
/// escape newlines, so every raw newline is a line break of the layout (and
/// compact JSON passes unchanged).
struct Indented<W> {
    out: W,
    written: u64,
}

impl<W: Write> Write for Indented<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for (i, line) in buf.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                self.out.write_all(b"\n")?;
                self.out.write_all(RESULT_INDENT)?;
                self.written += 1 + RESULT_INDENT.len() as u64;
            }
            self.out.write_all(line)?;
            self.written += line.len() as u64;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Most of an entry gathered up before it is indented: serde writes a value
/// in dozens of small pieces, each a pass of [`Indented`] otherwise. Holds
/// at most [`HELD`] bytes, so a large captured output streams.
struct Gathered<'a, W> {
    to: Indented<W>,
    held: &'a mut Vec<u8>,
}

/// Bytes an entry is gathered in.
const HELD: usize = 16 * 1024;

impl<W: Write> Gathered<'_, W> {
    /// Passes on what is held.
    fn pass_on(&mut self) -> io::Result<()> {
        self.to.write_all(self.held)?;
        self.held.clear();
        Ok(())
    }
}

impl<W: Write> Write for Gathered<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.held.len() + buf.len() > HELD {
            self.pass_on()?;
            if buf.len() > HELD {
                return self.to.write(buf);
            }
        }
        self.held.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.pass_on()?;
        self.to.flush()
    }
}

/// The document's fields between the four lists and the additions spilled:
/// the rest of `ExecutionResults`' fields in their order, then the first
/// additions.
#[derive(Serialize)]
struct Tail<'a> {
    duration_ms: u64,
    success_rate: f64,
    metrics: &'a Metrics,
    started_at: Option<Timestamp>,
    stopped: Option<&'a StopReason>,
}

/// Writes the report (pretty, with a final newline): `total`, the four
/// lists copied from `spill`, then [`Tail`], `attempts` and `input_order` —
/// the layout `serde_json::to_writer_pretty` gives the whole document.
fn write_report(
    spill: Spill,
    done: Option<(u64, Metrics)>,
    started_at: Option<Timestamp>,
    stopped: Option<&StopReason>,
    out: impl Write,
) -> io::Result<()> {
    let Spill {
        results,
        result_index,
        counts,
        attempts,
        attempt_index,
        ids,
        id_index,
        ..
    } = spill;
    let mut results = results.reader()?;
    let mut attempts = attempts.reader()?;
    let mut ids = ids.reader()?;
    let (result_index, attempt_index, id_index) = (
        result_index.sorted()?,
        attempt_index.sorted()?,
        id_index.sorted()?,
    );
    let (duration_ms, metrics) = done.unwrap_or_default();
    let total: usize = counts.iter().sum();
    let mut out = BufWriter::with_capacity(FINAL_BUFFER, out);
    out.write_all(b"{\n  \"total\": ")?;
    serde_json::to_writer(&mut out, &total)?;
    for (list, name) in LISTS.iter().enumerate() {
        write!(out, ",\n  \"{name}\": ")?;
        // One pass over the index per list: it is a few tens of bytes per
        // result, read back from the page cache.
        let spans = result_index
            .iter()
            .filter(|e| e.as_ref().map_or(true, |e| usize::from(e.list) == list))
            .map(|e| {
                e.map(|e| Span {
                    offset: e.offset,
                    len: e.len,
                })
            });
        write_list(spans, &mut results, &mut out)?;
    }
    let tail = Tail {
        duration_ms,
        success_rate: if total > 0 {
            counts[0] as f64 / total as f64
        } else {
            0.0
        },
        metrics: &metrics,
        started_at,
        stopped,
    };
    // Its fields, without the braces, carry on the object already open.
    let tail = serde_json::to_vec_pretty(&tail)?;
    let fields = tail
        .strip_prefix(b"{")
        .and_then(|t| t.strip_suffix(b"\n}"))
        .ok_or_else(|| io::Error::other("unexpected layout of the report's fields"))?;
    out.write_all(b",")?;
    out.write_all(fields)?;

    out.write_all(b",\n  \"attempts\": ")?;
    let spans = attempt_index.iter().map(|e| {
        e.map(|e| Span {
            offset: e.offset,
            len: u64::from(e.len),
        })
    });
    write_list(spans, &mut attempts, &mut out)?;

    out.write_all(b",\n  \"input_order\": ")?;
    let mut last = None;
    let spans = id_index.iter().filter_map(|e| match e {
        Ok(e) if last == Some(e.seq) => None,
        Ok(e) => {
            last = Some(e.seq);
            Some(Ok(Span {
                offset: e.offset,
                len: u64::from(e.len),
            }))
        }
        Err(e) => Some(Err(e)),
    });
    write_list(spans, &mut ids, &mut out)?;
    out.write_all(b"\n}\n")?;
    out.flush()
}

impl JsonReporter {
    fn spill_event(&mut self, event: &Event) -> io::Result<()> {
        let Some(spill) = &mut self.spill else {
            return Ok(());
        };
        match event {
            Event::TaskQueued { seq, task } => spill.queued(*seq, task.id.as_str())?,
            Event::TaskStarted {
                seq,
                id,
                attempt,
                at,
                ..
            } => spill.started(*seq, id.as_str(), *attempt, *at)?,
            Event::TaskFinished { seq, result, .. } => spill.push(*seq, result)?,
            _ => {}
        }
        if let Some(ended) = self.attempts.observe(event) {
            spill.push_attempt(&ended)?;
        }
        if let Event::TaskFinished { seq, result, .. } = event {
            spill.finished(*seq, result.task.id.as_str())?;
        }
        Ok(())
    }
}

impl Reporter for JsonReporter {
    fn on_event(&mut self, event: &Event) -> Result<(), ReportError> {
        match event {
            Event::RunStarted { at, .. } => self.started_at = Some(*at),
            Event::RunStopTriggered { reason } => self.stopped = Some(reason.clone()),
            Event::RunFinished {
                duration_ms,
                metrics,
                stopped,
                ..
            } => {
                self.done = Some((*duration_ms, metrics.clone()));
                if stopped.is_some() {
                    self.stopped.clone_from(stopped);
                }
            }
            _ => {}
        }
        if let Err(e) = self.spill_event(event) {
            self.spill = None;
            self.attempts = AttemptFold::default();
            return Err(ReportError::new(target(&self.path), e));
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ReportError> {
        let Some(mut file) = self.file.take() else {
            return Ok(());
        };
        let Some(mut spill) = self.spill.take() else {
            // Already reported by on_event; the temporary report goes with
            // `file`, leaving any previous report in place.
            return Err(ReportError::new(
                target(&self.path),
                io::Error::other("an earlier write of a task's result failed"),
            ));
        };
        // Attempts the events never ended.
        self.attempts
            .unfinished()
            .try_for_each(|a| spill.push_attempt(&a))
            .and_then(|()| {
                write_report(
                    spill,
                    self.done.take(),
                    self.started_at,
                    self.stopped.as_ref(),
                    file.writer()?,
                )
            })
            .and_then(|()| file.commit())
            .context(|| target(&self.path))
    }
}
