//! `--trace PATH`: the run as Chrome trace event JSON, for Perfetto
//! (ui.perfetto.dev) and `chrome://tracing`, written when the run is over
//! (atomically over a regular file, in place to a device or FIFO).
//!
//! The mapping: one process (pid 1, "agent-33 run"); one thread per slot
//! (tid = slot, named `slot N` and sorted by number); one complete event
//! (`"ph": "X"`) per attempt, named after the task id, its category the
//! agent, with agent, artifact, attempt, status, error, queue wait and (on
//! workers) the worker in `args`; counter tracks (`"ph": "C"`) of running
//! and waiting attempts; and a global instant event where the run began to
//! stop. Times are microseconds from the run's start.
//!
//! Only the JSON object form (`{"traceEvents": […]}`) is written: both
//! viewers read it, and it carries `otherData` about the run.

use std::io::{BufWriter, Write as _};
use std::path::Path;

use agent33_parallel::Event;
use serde_json::{Value, json};

use crate::Reporter;
use crate::error::ReportError;
use crate::timeline::Timeline;
use crate::timeline_file::TimelineFile;

/// Writes a run as a Chrome trace (JSON) to a path.
#[derive(Debug)]
pub struct TraceReporter(TimelineFile);

impl TraceReporter {
    /// Prepares the trace at `path` now, so that a path that cannot be written
    /// fails before the run. A regular file, or a path where nothing is yet
    /// (missing parent folders are created), is replaced only when it is
    /// complete, by renaming a temporary file over it; a symbolic link is
    /// followed and stays; anything else (`/dev/null`, a FIFO,
    /// `/dev/stdout`) is written in place, never replaced.
    ///
    /// # Errors
    ///
    /// When the folder or the temporary file cannot be created, or the
    /// path cannot be opened for writing (it is a folder, say).
    pub fn create(path: impl AsRef<Path>) -> Result<Self, ReportError> {
        TimelineFile::create(
            path.as_ref(),
            "the trace",
            Box::new(|timeline, file| write_trace(timeline, file)),
        )
        .map(Self)
    }
}

/// Microseconds from the timeline's origin, rounded to whole µs (the
/// viewers' unit; the engine's clock gives no more).
fn micros(timeline: &Timeline, at: agent33_parallel::Timestamp) -> i64 {
    (timeline.offset_ms(at) * 1000.0).round() as i64
}

/// `chrome://tracing`'s reserved colour names for each status (Perfetto
/// picks its own colours and ignores them).
fn color_name(status: agent33_parallel::TaskStatus) -> &'static str {
    use agent33_parallel::TaskStatus as S;
    match status {
        S::Success => "good",
        S::Failed => "bad",
        S::Timeout => "terrible",
        S::Cancelled | S::Skipped => "grey",
    }
}

/// The trace of `timeline` as a JSON value.
#[must_use]
pub fn trace_json(timeline: &Timeline) -> Value {
    let mut events = Vec::with_capacity(timeline.attempts.len() * 3 + 16);
    events.push(json!({
        "name": "process_name", "ph": "M", "pid": 1,
        "args": { "name": "agent-33 run" },
    }));
    for slot in 0..timeline.lanes() {
        events.push(json!({
            "name": "thread_name", "ph": "M", "pid": 1, "tid": slot,
            "args": { "name": format!("slot {slot}") },
        }));
        events.push(json!({
            "name": "thread_sort_index", "ph": "M", "pid": 1, "tid": slot,
            "args": { "sort_index": slot },
        }));
    }
    let task_of: std::collections::HashMap<u64, &crate::timeline::TaskRecord> =
        timeline.tasks.iter().map(|t| (t.seq, t)).collect();
    let wall_us = (timeline.wall_ms() * 1000.0).round() as i64;
    // Counter changes: (time µs, Δrunning, Δwaiting).
    let mut changes: Vec<(i64, i64, i64)> = Vec::with_capacity(timeline.attempts.len() * 4);
    for a in &timeline.attempts {
        let ts = micros(timeline, a.started_at);
        let end = a
            .finished_at
            .map_or(wall_us.max(ts), |t| micros(timeline, t));
        let task = task_of.get(&a.seq);
        let (agent, artifact) = task.map_or(("", ""), |t| {
            (t.task.agent.as_str(), t.task.artifact.as_str())
        });
        let mut args = json!({
            "agent": agent,
            "artifact": artifact,
            "attempt": a.attempt,
            "status": a.status.as_str(),
            "waited_ms": a.waited_ms,
        });
        if let Some(e) = &a.error {
            args["error"] = json!(e);
        }
        if let Some(worker) = &a.worker {
            args["worker"] = json!(worker);
        }
        if let Some(status) = task.and_then(|t| t.status) {
            if status != a.status {
                args["task_status"] = json!(status.as_str());
            }
        }
        events.push(json!({
            "name": a.id.as_str(),
            "cat": if agent.is_empty() { "task" } else { agent },
            "ph": "X",
            "ts": ts,
            "dur": (end - ts).max(0),
            "pid": 1,
            "tid": a.slot,
            "cname": color_name(a.status),
            "args": args,
        }));
        changes.push((ts, 1, 0));
        changes.push((end, -1, 0));
        if a.waited_ms > 0 {
            changes.push((micros(timeline, a.ready_at()), 0, 1));
            changes.push((ts, 0, -1));
        }
    }
    // At one instant: ends before starts, so a slot handed over does not
    // count twice.
    changes.sort_by_key(|&(ts, running, waiting)| (ts, running + waiting));
    let (mut running, mut waiting) = (0i64, 0i64);
    let mut i = 0;
    while i < changes.len() {
        let ts = changes[i].0;
        while i < changes.len() && changes[i].0 == ts {
            running += changes[i].1;
            waiting += changes[i].2;
            i += 1;
        }
        events.push(json!({
            "name": "tasks", "ph": "C", "pid": 1, "ts": ts,
            "args": { "running": running, "waiting": waiting },
        }));
    }
    if let (Some(reason), Some(at)) = (&timeline.stopped, timeline.stopped_at) {
        events.push(json!({
            "name": format!("run stopping: {reason}"),
            "ph": "i", "s": "g", "pid": 1, "tid": 0,
            "ts": micros(timeline, at),
        }));
    }
    let figures = timeline.figures();
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "generator": concat!("agent-33 ", env!("CARGO_PKG_VERSION")),
            "started_at": timeline.origin(),
            "duration_ms": timeline.duration_ms,
            "parallel_limit": figures.limit,
            "tasks": figures.total,
            "stopped": timeline.stopped.as_ref().map(ToString::to_string),
        },
    })
}

/// Writes the trace of `timeline` (compact JSON, final newline).
///
/// # Errors
///
/// When `out` cannot be written.
pub fn write_trace(timeline: &Timeline, out: impl std::io::Write) -> std::io::Result<()> {
    let mut out = BufWriter::new(out);
    serde_json::to_writer(&mut out, &trace_json(timeline))?;
    out.write_all(b"\n")?;
    out.flush()
}

impl Reporter for TraceReporter {
    fn on_event(&mut self, event: &Event) -> Result<(), ReportError> {
        self.0.on_event(event)
    }

    fn finish(&mut self) -> Result<(), ReportError> {
        self.0.finish()
    }
}
