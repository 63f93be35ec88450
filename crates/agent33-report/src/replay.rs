//! Reports from a saved run: `agent-33 report RUN.json --timings out.html`.
//!
//! A [`SavedReport`] is a JSON report read back (what
//! [`JsonReporter`](crate::JsonReporter) wrote, or any plain
//! `ExecutionResults`). [`SavedReport::events`] turns it back into the
//! events of the run, so every reporter — timings, trace, JUnit, even the
//! summary — renders a saved run with the same code as a live one; there is
//! no second rendering path to drift apart.
//!
//! How faithful the replay is depends on what the file holds:
//!
//! - With `attempts` (written by this crate's `JsonReporter`): every attempt
//!   with its slot, times, status, error and queue wait; retries and
//!   backoffs are exact, and so is the timeline, to the millisecond the
//!   report's timestamps keep.
//! - Without (an older report, or another producer): one attempt per task
//!   that started, spanning `started_at`..`finished_at` (retries and their
//!   backoffs merge into one bar), lanes assigned greedily — each bar in the
//!   lowest lane free at its start, the engine's own rule — and no queue
//!   waits.
//!
//! Input order comes from the top-level `input_order` (or an older file's
//! per-result `seq`); without it, from the
//! attempts, else tasks are ordered by start (never-started ones last, in
//! list order). What the file never held (task output streamed live,
//! `DependenciesIgnored`) is not replayed.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use agent33_parallel::{
    Event, ExecutionResults, Metrics, RunTotals, StopReason, TaskResult, Timestamp,
};
use serde::Deserialize;

use crate::timeline::{AttemptRecord, Timeline};
use crate::{ReportError, Reporters};

/// A JSON report read back from a file, ready to be replayed into
/// reporters.
///
/// # Examples
///
/// ```
/// use agent33_report::{Reporters, SavedReport, TimingsReporter, TraceReporter};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let run_json = dir.path().join("run.json");
/// # std::fs::write(&run_json, r#"{"total":0,"succeeded":[],"failed":[],"cancelled":[],
/// #   "skipped":[],"duration_ms":5,"success_rate":0.0,
/// #   "metrics":{"counters":{},"gauges":{},"timers":{}}}"#)?;
/// # let (out_html, out_trace) = (dir.path().join("t.html"), dir.path().join("t.json"));
/// let saved = SavedReport::from_path(&run_json)?;
/// let mut reporters = Reporters::new()
///     .with(TimingsReporter::create(&out_html)?)
///     .with(TraceReporter::create(&out_trace)?);
/// let mut errors = saved.replay(&mut reporters);
/// errors.extend(reporters.finish());
/// assert!(errors.is_empty());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SavedReport {
    results: ExecutionResults,
    /// `seq` of each result, by list then position; `None` where the file
    /// had none.
    seqs: [Vec<Option<u64>>; 4],
    started_at: Option<Timestamp>,
    stopped: Option<StopReason>,
    attempts: Option<Vec<AttemptRecord>>,
}

/// A saved report could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadReportError {
    /// The file could not be read.
    #[error("cannot read the report `{}`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a JSON report of a run.
    #[error("`{}` is not an agent-33 JSON report", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why (with line and column).
        #[source]
        source: serde_json::Error,
    },
}

/// The file's shape: `ExecutionResults` plus what `JsonReporter` adds.
#[derive(Deserialize)]
struct Raw {
    total: usize,
    succeeded: Vec<RawResult>,
    failed: Vec<RawResult>,
    cancelled: Vec<RawResult>,
    skipped: Vec<RawResult>,
    duration_ms: u64,
    success_rate: f64,
    #[serde(default)]
    metrics: Metrics,
    #[serde(default)]
    started_at: Option<Timestamp>,
    #[serde(default)]
    stopped: Option<StopReason>,
    #[serde(default)]
    attempts: Option<Vec<AttemptRecord>>,
    #[serde(default)]
    input_order: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawResult {
    #[serde(default)]
    seq: Option<u64>,
    #[serde(flatten)]
    result: TaskResult,
}

fn split(list: Vec<RawResult>) -> (Vec<TaskResult>, Vec<Option<u64>>) {
    list.into_iter().map(|r| (r.result, r.seq)).unzip()
}

impl SavedReport {
    /// Reads the report at `path`.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or is not a JSON report.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, LoadReportError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| LoadReportError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&text).map_err(|source| LoadReportError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Parses a report from its JSON text.
    ///
    /// # Errors
    ///
    /// When the text is not a JSON report.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let mut raw: Raw = serde_json::from_str(text)?;
        if let Some(order) = raw.input_order.take() {
            let seq_of: std::collections::HashMap<String, u64> =
                order.into_iter().zip(0u64..).collect();
            for list in [
                &mut raw.succeeded,
                &mut raw.failed,
                &mut raw.cancelled,
                &mut raw.skipped,
            ] {
                for r in list.iter_mut() {
                    if r.seq.is_none() {
                        r.seq = seq_of.get(r.result.task.id.as_str()).copied();
                    }
                }
            }
        }
        let (succeeded, s0) = split(raw.succeeded);
        let (failed, s1) = split(raw.failed);
        let (cancelled, s2) = split(raw.cancelled);
        let (skipped, s3) = split(raw.skipped);
        Ok(Self {
            results: ExecutionResults {
                total: raw.total,
                succeeded,
                failed,
                cancelled,
                skipped,
                duration_ms: raw.duration_ms,
                success_rate: raw.success_rate,
                metrics: raw.metrics,
            },
            seqs: [s0, s1, s2, s3],
            started_at: raw.started_at,
            stopped: raw.stopped,
            attempts: raw.attempts,
        })
    }

    /// A saved report of `results` alone, as if read from a file without
    /// the timeline additions.
    #[must_use]
    pub fn from_results(results: ExecutionResults) -> Self {
        let seqs = [
            vec![None; results.succeeded.len()],
            vec![None; results.failed.len()],
            vec![None; results.cancelled.len()],
            vec![None; results.skipped.len()],
        ];
        Self {
            results,
            seqs,
            started_at: None,
            stopped: None,
            attempts: None,
        }
    }

    /// The run's results.
    #[must_use]
    pub fn results(&self) -> &ExecutionResults {
        &self.results
    }

    /// The attempts, when the file has them.
    #[must_use]
    pub fn attempts(&self) -> Option<&[AttemptRecord]> {
        self.attempts.as_deref()
    }

    /// Feeds the run's events ([`SavedReport::events`]) to `reporters`;
    /// returns the errors this raised. Call [`Reporters::finish`] after, as
    /// for a live run.
    #[must_use = "a reporter that failed is disabled; its error should be shown"]
    pub fn replay(&self, reporters: &mut Reporters) -> Vec<ReportError> {
        let mut errors = Vec::new();
        for event in self.events() {
            errors.extend(reporters.on_event(&event));
        }
        errors
    }

    /// The timeline of the saved run (what the timings page and the trace
    /// draw).
    #[must_use]
    pub fn timeline(&self) -> Timeline {
        Timeline::from_events(&self.events())
    }

    /// The run's events, rebuilt: `RunStarted`; `TaskQueued` for every task
    /// in input order; `TaskStarted`, `TaskRetryScheduled` and the `TaskFinished`
    /// of started tasks in time order (ends before starts at the same
    /// instant, as a slot is handed over); `RunStopTriggered` when the run
    /// stopped early; the `TaskFinished` of tasks that never started; and
    /// `RunFinished`.
    #[must_use]
    pub fn events(&self) -> Vec<Event> {
        let tasks = self.ordered_tasks();
        let attempts = match &self.attempts {
            Some(list) => {
                // Ids are unique: tie each attempt to its task by id, so it
                // follows the task even where positions were renumbered.
                let seq_of: HashMap<&str, u64> = tasks
                    .iter()
                    .map(|(seq, r)| (r.task.id.as_str(), *seq))
                    .collect();
                let mut list = list.clone();
                for a in &mut list {
                    if let Some(&seq) = seq_of.get(a.id.as_str()) {
                        a.seq = seq;
                    }
                }
                list
            }
            None => greedy_attempts(&tasks),
        };
        let lanes = attempts.iter().map(|a| a.slot + 1).max().unwrap_or(0);
        let limit = match self.results.metrics.gauges.get("parallel_limit") {
            Some(&l) if l >= 1.0 => l as usize,
            _ => lanes.max(1),
        };
        let start = self
            .started_at
            .or_else(|| attempts.iter().map(AttemptRecord::ready_at).min())
            .or_else(|| tasks.iter().filter_map(|(_, r)| r.started_at).min())
            .unwrap_or(Timestamp(SystemTime::UNIX_EPOCH));

        let mut events = Vec::with_capacity(tasks.len() * 3 + attempts.len() * 2 + 4);
        events.push(Event::RunStarted {
            total: Some(self.results.total),
            parallel_limit: limit,
            at: start,
        });
        for (seq, r) in &tasks {
            events.push(Event::TaskQueued {
                seq: *seq,
                task: Arc::clone(&r.task),
            });
        }

        // Timed events, sorted by (time, class, seq, attempt): at one
        // instant, ends (class 0) come before the stop (1) before starts
        // (2), as a slot is handed over; an end at its own start's instant
        // (class 3) comes after the starts, so it never precedes its start.
        let mut timed: Vec<(Timestamp, u8, u64, u32, Event)> = Vec::new();
        let end_class = |start: Timestamp, end: Timestamp| if end > start { 0 } else { 3 };
        let mut by_seq: HashMap<u64, Vec<&AttemptRecord>> = HashMap::new();
        for a in &attempts {
            by_seq.entry(a.seq).or_default().push(a);
        }
        let result_of: HashMap<u64, &TaskResult> = tasks.iter().map(|(s, r)| (*s, *r)).collect();
        for (seq, list) in &mut by_seq {
            list.sort_by_key(|a| a.attempt);
            for (i, a) in list.iter().enumerate() {
                timed.push((
                    a.started_at,
                    2,
                    *seq,
                    a.attempt,
                    Event::TaskStarted {
                        seq: *seq,
                        id: a.id.clone(),
                        attempt: a.attempt,
                        slot: a.slot,
                        waited: Duration::from_millis(a.waited_ms),
                        at: a.started_at,
                    },
                ));
                let Some(end) = a.finished_at else {
                    continue;
                };
                // The task's own finish ends its last attempt, unless that
                // attempt ended earlier, at a retry the stop abandoned.
                let last = i + 1 == list.len();
                if last
                    && result_of
                        .get(seq)
                        .is_some_and(|r| r.finished_at == Some(end) && r.error == a.error)
                {
                    continue;
                }
                let delay = list.get(i + 1).map_or(Duration::ZERO, |next| {
                    next.ready_at().0.duration_since(end.0).unwrap_or_default()
                });
                timed.push((
                    end,
                    end_class(a.started_at, end),
                    *seq,
                    a.attempt,
                    Event::TaskRetryScheduled {
                        seq: *seq,
                        id: a.id.clone(),
                        attempt: a.attempt,
                        status: a.status,
                        // The file keeps the status, not the typed reason.
                        reason: None,
                        error: a.error.clone().unwrap_or_default(),
                        slot: a.slot,
                        delay,
                        at: end,
                        // The record's start is already the real one.
                        started_at: None,
                        worker: a.worker.clone(),
                    },
                ));
            }
        }
        let mut not_started = Vec::new();
        for (seq, r) in &tasks {
            let slot = by_seq
                .get(seq)
                .and_then(|l| l.last())
                .map(|a| a.slot)
                // A resumed task ran in an earlier run: no slot in this one.
                .or_else(|| (r.attempts > 0 && !r.resumed).then_some(0));
            let event = Event::TaskFinished {
                seq: *seq,
                slot,
                attempt_started_at: None,
                result: Box::new((*r).clone()),
            };
            match (slot, r.finished_at.or(r.started_at)) {
                (Some(_), Some(at)) => {
                    let last_start = by_seq
                        .get(seq)
                        .and_then(|l| l.last())
                        .map_or(at, |a| a.started_at);
                    timed.push((at, end_class(last_start, at), *seq, u32::MAX, event));
                }
                _ => not_started.push(event),
            }
        }
        let stop_at = self.stop_time(start, &tasks);
        if let (Some(reason), Some((at, seq))) = (&self.stopped, stop_at) {
            timed.push((
                at,
                1,
                seq,
                0,
                Event::RunStopTriggered {
                    reason: reason.clone(),
                },
            ));
        }
        timed.sort_by_key(|a| (a.0, a.1, a.2, a.3));
        events.extend(timed.into_iter().map(|t| t.4));
        if let (Some(reason), None) = (&self.stopped, stop_at) {
            events.push(Event::RunStopTriggered {
                reason: reason.clone(),
            });
        }
        events.extend(not_started);
        let mut totals = RunTotals {
            retries: self.results.metrics.counter("task_retry_count"),
            ..RunTotals::default()
        };
        for (_, r) in &tasks {
            totals.add(r.status);
        }
        events.push(Event::RunFinished {
            duration_ms: self.results.duration_ms,
            stopped: self.stopped.clone(),
            totals,
            metrics: self.results.metrics.clone(),
        });
        events
    }

    /// When the run began to stop, where the file pins it down: right after
    /// the finish of the task that fired fail-fast, or at the deadline.
    fn stop_time(
        &self,
        start: Timestamp,
        tasks: &[(u64, &TaskResult)],
    ) -> Option<(Timestamp, u64)> {
        let stopped = self.stopped.as_ref()?;
        if let Some(task) = stopped.failed_task() {
            return tasks
                .iter()
                .find(|(_, r)| r.task.id == *task)
                .and_then(|(seq, r)| Some((r.finished_at?, *seq)));
        }
        match stopped {
            StopReason::Deadline { seconds } => {
                let after = Duration::try_from_secs_f64(*seconds).ok()?;
                Some((Timestamp(start.0 + after), u64::MAX))
            }
            _ => None,
        }
    }

    /// Every result with its `seq`, in input order.
    fn ordered_tasks(&self) -> Vec<(u64, &TaskResult)> {
        let r = &self.results;
        let lists = [&r.succeeded, &r.failed, &r.cancelled, &r.skipped];
        let seq_from_attempts: HashMap<&str, u64> = self
            .attempts
            .iter()
            .flatten()
            .map(|a| (a.id.as_str(), a.seq))
            .collect();
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for (list, seqs) in lists.into_iter().zip(&self.seqs) {
            for (i, result) in list.iter().enumerate() {
                let seq = seqs
                    .get(i)
                    .copied()
                    .flatten()
                    .or_else(|| seq_from_attempts.get(result.task.id.as_str()).copied());
                match seq {
                    Some(seq) => known.push((seq, result)),
                    None => unknown.push(result),
                }
            }
        }
        known.sort_by_key(|(seq, _)| *seq);
        if unknown.is_empty() {
            return known;
        }
        // Some positions are unknown: order by start (stable, so tasks that
        // never started keep their lists' order, after the others), then
        // number them all afresh.
        let mut all: Vec<&TaskResult> = known.into_iter().map(|(_, r)| r).collect();
        all.extend(unknown);
        let start = |r: &TaskResult| r.started_at.filter(|_| !r.resumed);
        all.sort_by(|a, b| match (start(a), start(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        });
        (0..).zip(all).collect()
    }
}

/// One attempt per started task (`started_at`..`finished_at`), each in the
/// lowest lane free when it starts — the engine's own slot rule — for
/// reports without `attempts`.
fn greedy_attempts(tasks: &[(u64, &TaskResult)]) -> Vec<AttemptRecord> {
    let mut started: Vec<(u64, &TaskResult, Timestamp)> = tasks
        .iter()
        .filter(|(_, r)| r.attempts > 0 && !r.resumed)
        .filter_map(|(seq, r)| Some((*seq, *r, r.started_at?)))
        .collect();
    started.sort_by_key(|(seq, _, at)| (*at, *seq));
    // Each lane's end; a lane is free at `t` when its end ≤ t.
    let mut lanes: Vec<Timestamp> = Vec::new();
    let mut out = Vec::with_capacity(started.len());
    for (seq, r, at) in started {
        let end = r.finished_at.unwrap_or(at).max(at);
        let slot = match lanes.iter().position(|&free| free <= at) {
            Some(i) => i,
            None => {
                lanes.push(at);
                lanes.len() - 1
            }
        };
        lanes[slot] = end;
        out.push(AttemptRecord {
            seq,
            id: r.task.id.clone(),
            attempt: r.attempts,
            slot,
            started_at: at,
            finished_at: Some(end),
            status: r.status,
            error: r.error.clone(),
            waited_ms: 0,
            worker: r.worker.clone(),
            deferred: false,
        });
    }
    out
}
