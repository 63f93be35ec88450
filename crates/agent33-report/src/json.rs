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
//! once. Memory thus grows by a few tens of bytes per task (plus what the
//! timeline keeps of each attempt), not with the tasks' output.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read as _, Seek as _, SeekFrom, Write};
use std::path::{Path, PathBuf};

use agent33_parallel::{Event, Metrics, StopReason, TaskResult, TaskStatus, Timestamp};
use serde::Serialize;

use crate::Reporter;
use crate::atomic::AtomicFile;
use crate::error::{Context as _, ReportError};
use crate::timeline::{AttemptRecord, Timeline, TimelineBuilder};

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
    timeline: TimelineBuilder,
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
        let spill = tempfile::tempfile_in(dir).context(|| target(&path))?;
        Ok(Self {
            path,
            file: Some(file),
            spill: Some(Spill::new(spill)),
            done: None,
            timeline: TimelineBuilder::new(),
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

/// Where one result's JSON lies in the spill file.
#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    offset: u64,
    len: u64,
}

/// The results' JSON, in finishing order, with an index per list.
#[derive(Debug)]
struct Spill {
    out: BufWriter<File>,
    end: u64,
    lists: [Vec<Entry>; 4],
}

/// Indentation of a result inside the document: results are array items
/// (depth 2) of the document's top-level lists.
const RESULT_INDENT: &[u8] = b"    ";

impl Spill {
    fn new(file: File) -> Self {
        Self {
            out: BufWriter::new(file),
            end: 0,
            lists: Default::default(),
        }
    }

    fn push(&mut self, seq: u64, result: &TaskResult) -> io::Result<()> {
        let mut out = Indented {
            out: &mut self.out,
            written: 0,
        };
        serde_json::to_writer_pretty(&mut out, result)?;
        let len = out.written;
        self.lists[list_of(result.status)].push(Entry {
            seq,
            offset: self.end,
            len,
        });
        self.end += len;
        Ok(())
    }

    /// Writes one list as the pretty printer writes an array at depth 1, its
    /// items in input order.
    fn write_list(
        entries: &mut [Entry],
        spill: &mut Reader,
        out: &mut impl Write,
    ) -> io::Result<()> {
        // The same order ResultsCollector gives: by seq, which is input order.
        entries.sort_by_key(|e| e.seq);
        if entries.is_empty() {
            return out.write_all(b"[]");
        }
        out.write_all(b"[")?;
        for (n, e) in entries.iter().enumerate() {
            out.write_all(if n == 0 { b"\n" } else { b",\n" })?;
            out.write_all(RESULT_INDENT)?;
            spill.copy(*e, out)?;
        }
        out.write_all(b"\n  ]")
    }
}

/// Reads entries back from the spill file, seeking only when they are not
/// contiguous (tasks tend to finish near input order, so reads mostly
/// stream).
struct Reader {
    file: BufReader<File>,
    pos: Option<u64>,
}

impl Reader {
    fn copy(&mut self, e: Entry, out: &mut impl Write) -> io::Result<()> {
        if self.pos != Some(e.offset) {
            self.file.seek(SeekFrom::Start(e.offset))?;
        }
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

/// Drops the opening `{` of a serialised object, so that its fields carry
/// on an object the report has already opened.
struct Continued<W> {
    out: W,
    opened: bool,
}

impl<W: Write> Write for Continued<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let rest = match buf.split_first() {
            Some((b'{', rest)) if !self.opened => {
                self.opened = true;
                rest
            }
            _ => buf,
        };
        self.out.write_all(rest)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The document's fields after the four lists: the rest of
/// `ExecutionResults`' fields in their order, then the additions.
#[derive(Serialize)]
struct Tail<'a> {
    duration_ms: u64,
    success_rate: f64,
    metrics: &'a Metrics,
    started_at: Option<Timestamp>,
    stopped: Option<&'a StopReason>,
    attempts: &'a [AttemptRecord],
    input_order: Vec<&'a str>,
}

/// Writes the report (pretty, with a final newline): `total`, the four
/// lists copied from `spill`, then [`Tail`] — the layout
/// `serde_json::to_writer_pretty` gives the whole document.
fn write_report(
    spill: Spill,
    done: Option<(u64, Metrics)>,
    timeline: &Timeline,
    out: impl Write,
) -> io::Result<()> {
    let Spill {
        out: spilled,
        mut lists,
        ..
    } = spill;
    let mut reader = Reader {
        file: BufReader::new(
            spilled
                .into_inner()
                .map_err(io::IntoInnerError::into_error)?,
        ),
        pos: None,
    };
    let (duration_ms, metrics) = done.unwrap_or_default();
    let total: usize = lists.iter().map(Vec::len).sum();
    let succeeded = lists[0].len();
    let mut out = BufWriter::new(out);
    out.write_all(b"{\n  \"total\": ")?;
    serde_json::to_writer(&mut out, &total)?;
    for (name, entries) in LISTS.iter().zip(&mut lists) {
        write!(out, ",\n  \"{name}\": ")?;
        Spill::write_list(entries, &mut reader, &mut out)?;
    }
    let tail = Tail {
        duration_ms,
        success_rate: if total > 0 {
            succeeded as f64 / total as f64
        } else {
            0.0
        },
        metrics: &metrics,
        started_at: timeline.started_at,
        stopped: timeline.stopped.as_ref(),
        attempts: &timeline.attempts,
        input_order: {
            let mut tasks: Vec<_> = timeline.tasks.iter().collect();
            tasks.sort_by_key(|t| t.seq);
            tasks.iter().map(|t| t.task.id.as_str()).collect()
        },
    };
    out.write_all(b",")?;
    serde_json::to_writer_pretty(
        Continued {
            out: &mut out,
            opened: false,
        },
        &tail,
    )?;
    out.write_all(b"\n")?;
    out.flush()
}

impl Reporter for JsonReporter {
    fn on_event(&mut self, event: &Event) -> Result<(), ReportError> {
        match event {
            Event::TaskFinished { seq, result, .. } => {
                if let Some(spill) = &mut self.spill {
                    if let Err(e) = spill.push(*seq, result) {
                        self.spill = None;
                        return Err(ReportError::new(target(&self.path), e));
                    }
                }
            }
            Event::RunFinished {
                duration_ms,
                metrics,
                ..
            } => self.done = Some((*duration_ms, metrics.clone())),
            _ => {}
        }
        self.timeline.observe(event);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ReportError> {
        let Some(mut file) = self.file.take() else {
            return Ok(());
        };
        let Some(spill) = self.spill.take() else {
            // Already reported by on_event; the temporary report goes with
            // `file`, leaving any previous report in place.
            return Err(ReportError::new(
                target(&self.path),
                io::Error::other("an earlier write of a task's result failed"),
            ));
        };
        let timeline = std::mem::take(&mut self.timeline).finish();
        write_report(spill, self.done.take(), &timeline, file.file())
            .and_then(|()| file.commit())
            .context(|| target(&self.path))
    }
}
