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
//! This reporter keeps every result (through the engine's
//! [`ResultsCollector`]) because the format lists them all.

use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use agent33_parallel::{
    Event, ExecutionResults, Metrics, ResultsCollector, StopReason, TaskResult, Timestamp,
};
use serde::Serialize;

use crate::Reporter;
use crate::atomic::AtomicFile;
use crate::error::{Context as _, ReportError};
use crate::timeline::{AttemptRecord, Timeline, TimelineBuilder};

/// Writes [`ExecutionResults`] as JSON to a path, with each attempt's
/// slot and times (see the module documentation for the additions).
#[derive(Debug)]
pub struct JsonReporter {
    path: PathBuf,
    file: Option<AtomicFile>,
    collector: ResultsCollector,
    timeline: TimelineBuilder,
}

impl JsonReporter {
    /// Prepares the report at `path`: creates missing parent folders and the
    /// temporary file now, so a path that cannot be written fails before the
    /// run. The report replaces `path` only when complete.
    ///
    /// # Errors
    ///
    /// When the folder or the temporary file cannot be created.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, ReportError> {
        let path = path.as_ref().to_owned();
        let file = AtomicFile::create(&path).context(|| target(&path))?;
        Ok(Self {
            path,
            file: Some(file),
            collector: ResultsCollector::new(),
            timeline: TimelineBuilder::new(),
        })
    }
}

fn target(path: &Path) -> String {
    format!("the JSON report `{}`", path.display())
}

/// The report as written: `ExecutionResults`' fields in their order, then
/// the additions.
#[derive(Serialize)]
struct Document<'a> {
    total: usize,
    succeeded: Listed<'a>,
    failed: Listed<'a>,
    cancelled: Listed<'a>,
    skipped: Listed<'a>,
    duration_ms: u64,
    success_rate: f64,
    metrics: &'a Metrics,
    started_at: Option<Timestamp>,
    stopped: Option<&'a StopReason>,
    attempts: &'a [AttemptRecord],
    input_order: Vec<&'a str>,
}

/// A list of results, exactly as PRODUCT.md shapes a `TaskResult` (input
/// order is the list's order; the `attempts` records carry positions).
struct Listed<'a> {
    results: &'a [TaskResult],
}

impl Serialize for Listed<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.results.iter())
    }
}

/// Serialises `results` and `timeline` as the report's JSON (pretty, with a
/// final newline).
///
/// # Errors
///
/// When `out` cannot be written.
pub(crate) fn write_report(
    results: &ExecutionResults,
    timeline: &Timeline,
    out: impl std::io::Write,
) -> std::io::Result<()> {
    let listed = |results| Listed { results };
    let doc = Document {
        total: results.total,
        succeeded: listed(&results.succeeded),
        failed: listed(&results.failed),
        cancelled: listed(&results.cancelled),
        skipped: listed(&results.skipped),
        duration_ms: results.duration_ms,
        success_rate: results.success_rate,
        metrics: &results.metrics,
        started_at: timeline.started_at,
        stopped: timeline.stopped.as_ref(),
        attempts: &timeline.attempts,
        input_order: {
            let mut tasks: Vec<_> = timeline.tasks.iter().collect();
            tasks.sort_by_key(|t| t.seq);
            tasks.iter().map(|t| t.task.id.as_str()).collect()
        },
    };
    let mut out = BufWriter::new(out);
    serde_json::to_writer_pretty(&mut out, &doc)?;
    out.write_all(b"\n")?;
    out.flush()
}

impl Reporter for JsonReporter {
    fn on_event(&mut self, event: &Event) -> Result<(), ReportError> {
        self.collector.observe(event);
        self.timeline.observe(event);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ReportError> {
        let Some(mut file) = self.file.take() else {
            return Ok(());
        };
        let results = std::mem::take(&mut self.collector).finish();
        let timeline = std::mem::take(&mut self.timeline).finish();
        write_report(&results, &timeline, file.file())
            .and_then(|()| file.commit())
            .context(|| target(&self.path))
    }
}
