//! `--report PATH`: the run's [`ExecutionResults`] as JSON, written
//! atomically when the run is over.
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
//!   waited_ms;
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
//! the document, to an anonymous spill file in the report's folder as soon
//! as it finishes, and keeps only its list, seq, offset and length. At the
//! end it sorts those and copies the bytes into the report, which comes out
//! byte for byte as if the whole `ExecutionResults` had been serialised at
//! once.
//!
//! The additions are spilled the same way: each attempt's record once it
//! has ended (only the attempts now running are kept, a few per slot), and
//! each task's id as it is queued, in two more anonymous files. Memory thus
//! grows by a few tens of bytes per task and attempt, not with the tasks'
//! output nor their ids. The additions come out exactly as
//! [`TimelineBuilder`](crate::TimelineBuilder) would give them.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read as _, Seek as _, SeekFrom, Write};
use std::path::{Path, PathBuf};

use agent33_parallel::{Event, Metrics, StopReason, TaskResult, TaskStatus, Timestamp};
use serde::Serialize;

use crate::Reporter;
use crate::atomic::AtomicFile;
use crate::error::{Context as _, ReportError};
use crate::timeline::AttemptRecord;

/// Writes [`ExecutionResults`](agent33_parallel::ExecutionResults) as JSON
/// to a path, with each attempt's slot and times (see the module
/// documentation for the additions).
#[derive(Debug)]
pub struct JsonReporter {
    path: PathBuf,
    file: Option<AtomicFile>,
    /// `None` once a write to it failed: its offsets can no longer be
    /// trusted, so no report is written.
    spill: Option<Spill>,
    done: Option<(u64, Metrics)>,
    /// When the run began (`RunStarted`).
    started_at: Option<Timestamp>,
    /// Why the run stopped early (`RunStopping`, `RunFinished`).
    stopped: Option<StopReason>,
    /// seq → the attempt now running, until it ends and is spilled.
    open: HashMap<u64, AttemptRecord>,
}

impl JsonReporter {
    /// Prepares the report at `path`: creates missing parent folders and the
    /// temporary files now, so a path that cannot be written fails before
    /// the run. The report replaces `path` only when complete.
    ///
    /// # Errors
    ///
    /// When the folder or the temporary files cannot be created.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, ReportError> {
        let path = path.as_ref().to_owned();
        let file = AtomicFile::create(&path).context(|| target(&path))?;
        // Next to the report rather than in the system's temporary folder,
        // which may be a RAM disk: the spill is about as large as the report,
        // and this folder is known to take the report.
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let spill = || tempfile::tempfile_in(dir).context(|| target(&path));
        let spill = Spill::new(spill()?, spill()?, spill()?);
        Ok(Self {
            path,
            file: Some(file),
            spill: Some(spill),
            done: None,
            started_at: None,
            stopped: None,
            open: HashMap::new(),
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

/// Where one result's JSON lies in the results' spill file.
#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    span: Span,
}

/// Where one attempt's record lies in the attempts' spill file, with what
/// orders it: as `TimelineBuilder` orders attempts, by start, then seq, then
/// attempt number. Records alike in all three (a task started twice over
/// without ending) keep the order they started in, which is the order they
/// were spilled in: the earlier one is spilled when the later one starts.
#[derive(Debug, Clone, Copy)]
struct AttemptEntry {
    started_at: Timestamp,
    seq: u64,
    attempt: u32,
    len: u32,
    offset: u64,
}

/// Where one task's id lies in the ids' spill file. A task's id is the one
/// of its last result if it finished, else that of its first `TaskQueued`
/// (as `TimelineBuilder` keeps it); offsets grow with time, so they tell
/// which came first.
#[derive(Debug, Clone, Copy)]
struct IdEntry {
    seq: u64,
    offset: u64,
    len: u32,
    finished: bool,
}

impl IdEntry {
    /// Sorts the entry that wins for its seq first.
    fn key(&self) -> (u64, bool, u64) {
        if self.finished {
            (self.seq, false, u64::MAX - self.offset)
        } else {
            (self.seq, true, self.offset)
        }
    }
}

/// An append-only spill file.
#[derive(Debug)]
struct SpillFile {
    out: BufWriter<File>,
    end: u64,
}

impl SpillFile {
    fn new(file: File) -> Self {
        Self {
            out: BufWriter::new(file),
            end: 0,
        }
    }

    /// Writes `value` as JSON (pretty, indented for an item of a top-level
    /// list, if `pretty`) and says where it went.
    fn push(&mut self, value: &impl Serialize, pretty: bool) -> io::Result<Span> {
        let mut out = Indented {
            out: &mut self.out,
            written: 0,
        };
        if pretty {
            serde_json::to_writer_pretty(&mut out, value)?;
        } else {
            serde_json::to_writer(&mut out, value)?;
        }
        let span = Span {
            offset: self.end,
            len: out.written,
        };
        self.end += span.len;
        Ok(span)
    }

    fn reader(self) -> io::Result<Reader> {
        Ok(Reader {
            file: BufReader::new(
                self.out
                    .into_inner()
                    .map_err(io::IntoInnerError::into_error)?,
            ),
            pos: None,
        })
    }
}

/// The results' JSON in finishing order with an index per list, the ended
/// attempts' records with their index, and the tasks' ids with theirs.
#[derive(Debug)]
struct Spill {
    results: SpillFile,
    lists: [Vec<Entry>; 4],
    attempts: SpillFile,
    attempt_index: Vec<AttemptEntry>,
    ids: SpillFile,
    id_index: Vec<IdEntry>,
    /// `id_index` is sorted by seq, one entry per seq (tasks are queued in
    /// input order), so a later id for a seq can replace the earlier one.
    ids_sorted: bool,
}

/// Indentation of a result inside the document: results are array items
/// (depth 2) of the document's top-level lists.
const RESULT_INDENT: &[u8] = b"    ";

fn too_long() -> io::Error {
    io::Error::other("a spilled record is too long")
}

impl Spill {
    fn new(results: File, attempts: File, ids: File) -> Self {
        Self {
            results: SpillFile::new(results),
            lists: Default::default(),
            attempts: SpillFile::new(attempts),
            attempt_index: Vec::new(),
            ids: SpillFile::new(ids),
            id_index: Vec::new(),
            ids_sorted: true,
        }
    }

    fn push(&mut self, seq: u64, result: &TaskResult) -> io::Result<()> {
        let span = self.results.push(result, true)?;
        self.lists[list_of(result.status)].push(Entry { seq, span });
        Ok(())
    }

    fn push_attempt(&mut self, a: &AttemptRecord) -> io::Result<()> {
        let span = self.attempts.push(a, true)?;
        self.attempt_index.push(AttemptEntry {
            started_at: a.started_at,
            seq: a.seq,
            attempt: a.attempt,
            len: u32::try_from(span.len).map_err(|_| too_long())?,
            offset: span.offset,
        });
        Ok(())
    }

    /// Records task `seq`'s id, from `TaskQueued` or (`finished`) from its
    /// result.
    fn push_id(&mut self, seq: u64, id: &str, finished: bool) -> io::Result<()> {
        if self.ids_sorted {
            match self.id_index.last() {
                Some(last) if last.seq >= seq => {
                    if let Ok(i) = self.id_index.binary_search_by_key(&seq, |e| e.seq) {
                        if finished {
                            let span = self.ids.push(&id, false)?;
                            let e = &mut self.id_index[i];
                            e.offset = span.offset;
                            e.len = u32::try_from(span.len).map_err(|_| too_long())?;
                            e.finished = true;
                        }
                        // A second `TaskQueued` changes nothing.
                        return Ok(());
                    }
                    self.ids_sorted = false;
                }
                _ => {}
            }
        }
        let span = self.ids.push(&id, false)?;
        self.id_index.push(IdEntry {
            seq,
            offset: span.offset,
            len: u32::try_from(span.len).map_err(|_| too_long())?,
            finished,
        });
        Ok(())
    }
}

/// Writes the items at `spans` as the pretty printer writes an array at
/// depth 1, each item on its own line.
fn write_list(
    spans: impl ExactSizeIterator<Item = Span>,
    spill: &mut Reader,
    out: &mut impl Write,
) -> io::Result<()> {
    if spans.len() == 0 {
        return out.write_all(b"[]");
    }
    out.write_all(b"[")?;
    for (n, span) in spans.enumerate() {
        out.write_all(if n == 0 { b"\n" } else { b",\n" })?;
        out.write_all(RESULT_INDENT)?;
        spill.copy(span, out)?;
    }
    out.write_all(b"\n  ]")
}

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
        let copied = io::copy(&mut (&mut self.file).take(e.len), out)?;
        if copied != e.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the spilled results are shorter than written",
            ));
        }
        self.pos = Some(e.offset + e.len);
        Ok(())
    }
}

/// Re-indents pretty-printed JSON for a deeper nesting level: JSON strings
/// escape newlines, so every raw newline is a line break of the layout.
struct Indented<W> {
    out: W,
    written: u64,
}

impl<W: Write> Write for Indented<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut lines = buf.split(|&b| b == b'\n');
        if let Some(first) = lines.next() {
            self.out.write_all(first)?;
            self.written += first.len() as u64;
        }
        for line in lines {
            self.out.write_all(b"\n")?;
            self.out.write_all(RESULT_INDENT)?;
            self.out.write_all(line)?;
            self.written += (1 + RESULT_INDENT.len() + line.len()) as u64;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
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
        mut lists,
        attempts,
        mut attempt_index,
        ids,
        mut id_index,
        ..
    } = spill;
    let mut results = results.reader()?;
    let mut attempts = attempts.reader()?;
    let mut ids = ids.reader()?;
    let (duration_ms, metrics) = done.unwrap_or_default();
    let total: usize = lists.iter().map(Vec::len).sum();
    let succeeded = lists[0].len();
    let mut out = BufWriter::new(out);
    out.write_all(b"{\n  \"total\": ")?;
    serde_json::to_writer(&mut out, &total)?;
    for (name, entries) in LISTS.iter().zip(&mut lists) {
        write!(out, ",\n  \"{name}\": ")?;
        // The same order ResultsCollector gives: by seq, which is input order.
        entries.sort_by_key(|e| e.seq);
        write_list(entries.iter().map(|e| e.span), &mut results, &mut out)?;
    }
    let tail = Tail {
        duration_ms,
        success_rate: if total > 0 {
            succeeded as f64 / total as f64
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
    attempt_index.sort_unstable_by_key(|e| (e.started_at, e.seq, e.attempt, e.offset));
    let attempt_span = |e: &AttemptEntry| Span {
        offset: e.offset,
        len: u64::from(e.len),
    };
    write_list(
        attempt_index.iter().map(attempt_span),
        &mut attempts,
        &mut out,
    )?;

    out.write_all(b",\n  \"input_order\": ")?;
    id_index.sort_unstable_by_key(IdEntry::key);
    id_index.dedup_by_key(|e| e.seq);
    // A task seen only through its attempts is listed with the id of its
    // first attempt.
    let mut extra: BTreeMap<u64, String> = BTreeMap::new();
    for e in &attempt_index {
        let known =
            id_index.binary_search_by_key(&e.seq, |i| i.seq).is_ok() || extra.contains_key(&e.seq);
        if !known {
            let mut json = Vec::new();
            attempts.copy(attempt_span(e), &mut json)?;
            let record: AttemptRecord = serde_json::from_slice(&json)?;
            extra.insert(e.seq, serde_json::to_string(record.id.as_str())?);
        }
    }
    let mut spilled = id_index.iter().peekable();
    let mut extra = extra.iter().peekable();
    let mut n = 0usize;
    loop {
        let take_extra = match (spilled.peek(), extra.peek()) {
            (None, None) => break,
            (Some(s), Some((seq, _))) => **seq < s.seq,
            (None, Some(_)) => true,
            (Some(_), None) => false,
        };
        out.write_all(if n == 0 { b"[\n" } else { b",\n" })?;
        out.write_all(RESULT_INDENT)?;
        if take_extra {
            let (_, json) = extra.next().expect("peeked");
            out.write_all(json.as_bytes())?;
        } else {
            let e = spilled.next().expect("peeked");
            let span = Span {
                offset: e.offset,
                len: u64::from(e.len),
            };
            ids.copy(span, &mut out)?;
        }
        n += 1;
    }
    out.write_all(if n == 0 { b"[]" } else { b"\n  ]" })?;
    out.write_all(b"\n}\n")?;
    out.flush()
}

impl JsonReporter {
    fn spill_event(&mut self, event: &Event) -> io::Result<()> {
        let Some(spill) = &mut self.spill else {
            return Ok(());
        };
        match event {
            Event::TaskQueued { seq, task } => spill.push_id(*seq, task.id.as_str(), false)?,
            Event::TaskStarted {
                seq,
                id,
                attempt,
                slot,
                waited,
                at,
            } => {
                let record = AttemptRecord::started(*seq, id, *attempt, *slot, *waited, *at);
                // One still open for this task will never be ended.
                if let Some(earlier) = self.open.insert(*seq, record) {
                    spill.push_attempt(&earlier)?;
                }
            }
            Event::TaskRetrying { seq, error, at, .. } => {
                if let Some(mut a) = self.open.remove(seq) {
                    a.retried(error, *at);
                    spill.push_attempt(&a)?;
                }
            }
            Event::TaskFinished { seq, result, .. } => {
                spill.push(*seq, result)?;
                // No attempt open: the task never started, or its retry was
                // abandoned and its last attempt already ended at the retry.
                if let Some(mut a) = self.open.remove(seq) {
                    a.finished(result);
                    spill.push_attempt(&a)?;
                }
                spill.push_id(*seq, result.task.id.as_str(), true)?;
            }
            _ => {}
        }
        Ok(())
    }
}

impl Reporter for JsonReporter {
    fn on_event(&mut self, event: &Event) -> Result<(), ReportError> {
        match event {
            Event::RunStarted { at, .. } => self.started_at = Some(*at),
            Event::RunStopping { reason } => self.stopped = Some(reason.clone()),
            Event::RunFinished {
                duration_ms,
                metrics,
                stopped,
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
            self.open.clear();
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
        let unfinished = std::mem::take(&mut self.open);
        unfinished
            .values()
            .try_for_each(|a| spill.push_attempt(a))
            .and_then(|()| {
                write_report(
                    spill,
                    self.done.take(),
                    self.started_at,
                    self.stopped.as_ref(),
                    file.file(),
                )
            })
            .and_then(|()| file.commit())
            .context(|| target(&self.path))
    }
}
