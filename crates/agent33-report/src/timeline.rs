//! The run as a timeline: one record per task and one per *attempt* (which
//! slot it ran in, when, how it ended, how long it waited for its slot).
//!
//! The engine's results say how each task ended; the events say more —
//! retries, slots, queue waits. [`TimelineBuilder`] folds the events into a
//! [`Timeline`], which the JSON report (its `attempts`), the HTML timings
//! page and the Chrome trace are rendered from, and which
//! [`SavedReport`](crate::SavedReport) rebuilds from a saved JSON report.
//!
//! Deliberately small: a timeline keeps no task output, only ids, times,
//! statuses and errors, so a timings page of a large run costs a few dozen
//! bytes per attempt while the run goes on.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use agent33_parallel::{
    AgentTask, Event, Metrics, StopReason, TaskId, TaskResult, TaskStatus, Timer, TimerSummary,
    Timestamp,
};
use serde::{Deserialize, Serialize};

/// One attempt of a task: a bar in the timeline.
///
/// Written to the JSON report as an element of its top-level `attempts`
/// array, with these field names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The task's position in input order (as in the events).
    pub seq: u64,
    /// The task's id.
    pub id: TaskId,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The slot (timeline lane) it ran in, from 0.
    pub slot: usize,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended; `None` only when the events stopped before it ended.
    pub finished_at: Option<Timestamp>,
    /// How this attempt ended. A retried attempt is `failed` or `timeout`;
    /// the last attempt has the task's final status.
    pub status: TaskStatus,
    /// Why this attempt did not succeed; `None` for a success.
    pub error: Option<String>,
    /// How long the task was ready before this attempt started (waiting for
    /// a slot or its agent's limit), in milliseconds.
    pub waited_ms: u64,
    /// The worker it ran on, when its agent reported one (runs on remote
    /// workers); absent in local runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Refused before doing any work (a provider's rate limit): not an
    /// attempt that used a retry; the task went back to the ready tasks.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deferred: bool,
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde passes fields by reference"
)]
fn is_false(b: &bool) -> bool {
    !*b
}

impl AttemptRecord {
    /// The record of an attempt that `TaskStarted` began, until it ends.
    pub(crate) fn started(
        seq: u64,
        id: &TaskId,
        attempt: u32,
        slot: usize,
        waited: Duration,
        at: Timestamp,
    ) -> Self {
        Self {
            seq,
            id: id.clone(),
            attempt,
            slot,
            started_at: at,
            finished_at: None,
            // Until it ends; an attempt the events never end shows as cut
            // short.
            status: TaskStatus::Cancelled,
            error: None,
            waited_ms: millis(waited),
            worker: None,
            deferred: false,
        }
    }

    /// Ends it: with how it ended, when, and what its agent reported of
    /// its real start and its worker.
    fn ended(
        &mut self,
        status: TaskStatus,
        error: Option<&str>,
        at: Timestamp,
        started_at: Option<Timestamp>,
        worker: Option<&str>,
    ) {
        if let Some(started) = started_at {
            self.started_at = started;
        }
        self.finished_at = Some(at.max(self.started_at));
        self.status = status;
        self.error = error.map(str::to_owned);
        self.worker = worker.map(str::to_owned);
    }

    /// Ends it at a `TaskDeferred`: refused before doing any work, marked
    /// as such on the timeline.
    fn deferred(&mut self, at: Timestamp) {
        self.finished_at = Some(at);
        self.error = Some("deferred".to_owned());
        self.deferred = true;
    }

    /// When the task became ready for this attempt: `started_at − waited`.
    #[must_use]
    pub fn ready_at(&self) -> Timestamp {
        Timestamp(
            self.started_at
                .0
                .checked_sub(Duration::from_millis(self.waited_ms))
                .unwrap_or(self.started_at.0),
        )
    }
}

/// One task of a timeline: what it is and how it ended.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRecord {
    /// Position in input order.
    pub seq: u64,
    /// The task.
    pub task: Arc<AgentTask>,
    /// How it ended; `None` when the events stopped before it ended.
    pub status: Option<TaskStatus>,
    /// From its first start to its end (0 if never started).
    pub duration_ms: u64,
    /// Why it did not succeed.
    pub error: Option<String>,
    /// The process's exit code, when it exited normally.
    pub exit_code: Option<i32>,
    /// How many attempts started.
    pub attempts: u32,
    /// When its first attempt started.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
    /// Not run in this run: a journal showed it had already succeeded (its
    /// times and attempts are the earlier run's).
    pub resumed: bool,
    /// The worker its last attempt ran on, if its agent reported one.
    pub worker: Option<String>,
}

impl TaskRecord {
    fn queued(seq: u64, task: Arc<AgentTask>) -> Self {
        Self {
            seq,
            task,
            status: None,
            duration_ms: 0,
            error: None,
            exit_code: None,
            attempts: 0,
            started_at: None,
            finished_at: None,
            resumed: false,
            worker: None,
        }
    }

    fn finish(&mut self, r: &TaskResult) {
        self.task = Arc::clone(&r.task);
        self.status = Some(r.status);
        self.duration_ms = r.duration_ms;
        self.error.clone_from(&r.error);
        self.exit_code = r.exit_code;
        self.attempts = r.attempts;
        self.started_at = r.started_at;
        self.finished_at = r.finished_at;
        self.resumed = r.resumed;
        self.worker.clone_from(&r.worker);
    }
}

/// A run as tasks and attempts, ready to be drawn.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    /// When the run began (`RunStarted`), if known.
    pub started_at: Option<Timestamp>,
    /// The effective global limit, if known.
    pub parallel_limit: Option<usize>,
    /// Every task, in input order.
    pub tasks: Vec<TaskRecord>,
    /// Every attempt, ordered by start time (then input order, then
    /// attempt number), so the order does not depend on how events raced.
    pub attempts: Vec<AttemptRecord>,
    /// Why the run stopped early, if it did.
    pub stopped: Option<StopReason>,
    /// When it began to stop, where that is known: the finish of the task
    /// that fired fail-fast, or the run deadline. (`RunStopTriggered` carries no
    /// time, and for an interrupt nothing in the events pins it down.)
    pub stopped_at: Option<Timestamp>,
    /// Wall time of the run (`RunFinished`), if it finished.
    pub duration_ms: Option<u64>,
    /// The engine's metrics (`RunFinished`), if it finished.
    pub metrics: Option<Metrics>,
}

impl Timeline {
    /// Builds a timeline from a run's events, in order.
    #[must_use]
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut builder = TimelineBuilder::new();
        for e in events {
            builder.observe(e);
        }
        builder.finish()
    }

    /// The origin of the timeline's clock: the run's start, else the
    /// earliest moment an attempt was ready.
    #[must_use]
    pub fn origin(&self) -> Option<Timestamp> {
        self.started_at
            .or_else(|| self.attempts.iter().map(AttemptRecord::ready_at).min())
    }

    /// Milliseconds from [`Timeline::origin`] to `at` (negative if before).
    #[must_use]
    pub fn offset_ms(&self, at: Timestamp) -> f64 {
        let Some(origin) = self.origin() else {
            return 0.0;
        };
        match at.0.duration_since(origin.0) {
            Ok(d) => d.as_secs_f64() * 1000.0,
            Err(e) => -e.duration().as_secs_f64() * 1000.0,
        }
    }

    /// The number of lanes: one more than the highest slot used.
    #[must_use]
    pub fn lanes(&self) -> usize {
        self.attempts.iter().map(|a| a.slot + 1).max().unwrap_or(0)
    }

    /// The run's wall time: `RunFinished`'s, else up to the last recorded time.
    #[must_use]
    pub fn wall_ms(&self) -> f64 {
        if let Some(ms) = self.duration_ms {
            return ms as f64;
        }
        let ends = self.attempts.iter().filter_map(|a| a.finished_at);
        let task_ends = self
            .tasks
            .iter()
            .filter(|t| !t.resumed)
            .filter_map(|t| t.finished_at);
        ends.chain(task_ends)
            .map(|t| self.offset_ms(t))
            .fold(0.0, f64::max)
    }

    /// The run's figures: the engine's metrics where the run finished,
    /// otherwise computed from the attempts the same way.
    #[must_use]
    pub fn figures(&self) -> Figures {
        let mut counts = [0usize; 5];
        for t in &self.tasks {
            if let Some(s) = t.status {
                counts[s.index()] += 1;
            }
        }
        let wall_ms = self.wall_ms();
        let limit = self
            .parallel_limit
            .or_else(|| {
                self.metrics
                    .as_ref()
                    .map(|m| m.gauge("parallel_limit") as usize)
            })
            .unwrap_or_else(|| self.lanes())
            .max(1);
        if let Some(m) = &self.metrics {
            return Figures {
                total: self.tasks.len(),
                counts,
                retries: m.counter("task_retry_count"),
                wall_ms,
                limit,
                peak: m.gauge("parallel_peak") as usize,
                utilization: m.gauge("parallel_utilization"),
                task_ms: m.timer("task_duration_ms"),
                wait_ms: m.timer("semaphore_wait_ms"),
            };
        }
        let mut task_ms = Timer::default();
        for t in self.tasks.iter().filter(|t| t.attempts > 0 && !t.resumed) {
            task_ms.record(t.duration_ms as f64);
        }
        let mut wait_ms = Timer::default();
        let mut busy = 0.0;
        let mut changes = Vec::with_capacity(self.attempts.len() * 2);
        for a in &self.attempts {
            if a.attempt == 1 {
                wait_ms.record(a.waited_ms as f64);
            }
            let start = self.offset_ms(a.started_at);
            let end = a.finished_at.map_or(wall_ms, |t| self.offset_ms(t));
            busy += (end - start).max(0.0);
            changes.push((end, -1i64));
            changes.push((start, 1));
        }
        // Ends sort before starts at the same instant: a slot handed over
        // is not two tasks at once.
        changes.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let (mut running, mut peak) = (0i64, 0i64);
        for (_, d) in changes {
            running += d;
            peak = peak.max(running);
        }
        let utilization = if wall_ms > 0.0 {
            busy / (limit as f64 * wall_ms)
        } else {
            0.0
        };
        Figures {
            total: self.tasks.len(),
            counts,
            retries: self
                .tasks
                .iter()
                .filter(|t| !t.resumed)
                .map(|t| u64::from(t.attempts.saturating_sub(1)))
                .sum(),
            wall_ms,
            limit,
            peak: usize::try_from(peak).unwrap_or(0),
            utilization: (utilization * 100.0).round() / 100.0,
            task_ms: task_ms.summary(),
            wait_ms: wait_ms.summary(),
        }
    }
}

/// The summary figures of a timeline (see [`Timeline::figures`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    /// Number of tasks.
    pub total: usize,
    /// Tasks by status: success, failed, timeout, cancelled, skipped.
    pub counts: [usize; 5],
    /// Attempts beyond the first, summed.
    pub retries: u64,
    /// Wall time of the run.
    pub wall_ms: f64,
    /// The effective global limit.
    pub limit: usize,
    /// The most attempts running at once.
    pub peak: usize,
    /// Busy attempt time ÷ (limit × wall time).
    pub utilization: f64,
    /// Task durations (first start to end) of the tasks that started.
    pub task_ms: TimerSummary,
    /// Semaphore wait (ready to first start) of the tasks that started.
    pub wait_ms: TimerSummary,
}

/// Folds a run's events into attempts: the one reading of which event
/// begins and which ends an attempt, shared by the [`Timeline`] and the
/// JSON report's `attempts`.
///
/// Keeps only the attempts now running, one per task.
#[derive(Debug, Default)]
pub(crate) struct AttemptFold {
    /// seq → the attempt now running.
    open: HashMap<u64, AttemptRecord>,
}

impl AttemptFold {
    /// Takes in one event; returns the attempt it ended, if any. A task's
    /// `TaskStarted` while one of its attempts is still open (events that
    /// never ended it) returns that one as it stood.
    pub(crate) fn observe(&mut self, event: &Event) -> Option<AttemptRecord> {
        match event {
            Event::TaskStarted {
                seq,
                id,
                attempt,
                slot,
                waited,
                at,
            } => {
                let record = AttemptRecord::started(*seq, id, *attempt, *slot, *waited, *at);
                self.open.insert(*seq, record)
            }
            Event::TaskRetryScheduled {
                seq,
                status,
                error,
                at,
                started_at,
                worker,
                ..
            } => {
                let mut a = self.open.remove(seq)?;
                a.ended(*status, Some(error), *at, *started_at, worker.as_deref());
                Some(a)
            }
            Event::TaskDeferred { seq, at, .. } => {
                let mut a = self.open.remove(seq)?;
                a.deferred(*at);
                Some(a)
            }
            // No attempt open: the task never started, or its retry was
            // abandoned and its last attempt already ended at the retry.
            Event::TaskFinished {
                seq,
                result,
                attempt_started_at,
                ..
            } => {
                let mut a = self.open.remove(seq)?;
                let at = result.finished_at.unwrap_or(a.started_at);
                a.ended(
                    result.status,
                    result.error.as_deref(),
                    at,
                    *attempt_started_at,
                    result.worker.as_deref(),
                );
                Some(a)
            }
            _ => None,
        }
    }

    /// The attempts the events never ended, in no particular order.
    pub(crate) fn unfinished(&mut self) -> impl Iterator<Item = AttemptRecord> + use<> {
        std::mem::take(&mut self.open).into_values()
    }
}

/// Folds a run's events into a [`Timeline`].
///
/// Keeps one small record per task and per attempt (no output), so it can
/// watch runs of any ordinary size.
#[derive(Debug, Default)]
pub struct TimelineBuilder {
    started_at: Option<Timestamp>,
    parallel_limit: Option<usize>,
    tasks: BTreeMap<u64, TaskRecord>,
    /// Attempts that ended.
    attempts: Vec<AttemptRecord>,
    fold: AttemptFold,
    stopped: Option<StopReason>,
    stopped_at: Option<Timestamp>,
    duration_ms: Option<u64>,
    metrics: Option<Metrics>,
}

impl TimelineBuilder {
    /// An empty builder.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in one event.
    pub fn observe(&mut self, event: &Event) {
        if let Some(ended) = self.fold.observe(event) {
            self.attempts.push(ended);
        }
        match event {
            Event::RunStarted {
                parallel_limit, at, ..
            } => {
                self.started_at = Some(*at);
                self.parallel_limit = Some(*parallel_limit);
            }
            Event::TaskQueued { seq, task } => {
                self.tasks
                    .entry(*seq)
                    .or_insert_with(|| TaskRecord::queued(*seq, Arc::clone(task)));
            }
            Event::TaskFinished { seq, result, .. } => {
                self.tasks
                    .entry(*seq)
                    .or_insert_with(|| TaskRecord::queued(*seq, Arc::clone(&result.task)))
                    .finish(result);
                if self.stopped_at.is_none() {
                    // The finish that fires fail-fast comes just before
                    // `RunStopTriggered`; remember when it happened.
                    if let Some(task) = self.stopped.as_ref().and_then(StopReason::failed_task) {
                        if *task == result.task.id {
                            self.stopped_at = result.finished_at;
                        }
                    }
                }
            }
            Event::RunStopTriggered { reason } => {
                if self.stopped.is_none() {
                    self.stopped_at = self.stop_time(reason);
                }
                self.stopped = Some(reason.clone());
            }
            Event::RunFinished {
                duration_ms,
                stopped,
                metrics,
                ..
            } => {
                self.duration_ms = Some(*duration_ms);
                if stopped.is_some() {
                    self.stopped.clone_from(stopped);
                }
                self.metrics = Some(metrics.clone());
            }
            Event::DependenciesIgnored
            | Event::TaskOutput { .. }
            | Event::TaskStarted { .. }
            | Event::TaskRetryScheduled { .. }
            | Event::TaskDeferred { .. } => {}
        }
    }

    /// When a stop for `reason` happened, as far as the events tell.
    fn stop_time(&self, reason: &StopReason) -> Option<Timestamp> {
        if let Some(task) = reason.failed_task() {
            return self
                .tasks
                .values()
                .find(|t| t.task.id == *task)
                .and_then(|t| t.finished_at);
        }
        match reason {
            StopReason::Deadline { seconds } => {
                let start = self.started_at?;
                let after = Duration::try_from_secs_f64(*seconds).ok()?;
                Some(Timestamp(start.0 + after))
            }
            _ => None,
        }
    }

    /// The timeline so far.
    #[must_use]
    pub fn finish(mut self) -> Timeline {
        let mut attempts = self.attempts;
        attempts.extend(self.fold.unfinished());
        attempts.sort_by(|a, b| {
            (a.started_at, a.seq, a.attempt).cmp(&(b.started_at, b.seq, b.attempt))
        });
        let mut tasks: Vec<TaskRecord> = self.tasks.into_values().collect();
        // A task seen only through attempts (events without `TaskQueued` or
        // `TaskFinished`) still gets a row.
        let known: std::collections::HashSet<u64> = tasks.iter().map(|t| t.seq).collect();
        let mut extra: BTreeMap<u64, TaskRecord> = BTreeMap::new();
        for a in attempts.iter().filter(|a| !known.contains(&a.seq)) {
            extra.entry(a.seq).or_insert_with(|| {
                let mut task = AgentTask::new("", a.id.as_str());
                task.id = a.id.clone();
                TaskRecord::queued(a.seq, Arc::new(task))
            });
        }
        if !extra.is_empty() {
            tasks.extend(extra.into_values());
            tasks.sort_unstable_by_key(|t| t.seq);
        }
        // A task still running when the events stopped has no result yet;
        // count its attempts from what started.
        if tasks.iter().any(|t| t.status.is_none()) {
            let mut most: HashMap<u64, u32> = HashMap::new();
            for a in &attempts {
                let n = most.entry(a.seq).or_default();
                *n = (*n).max(a.attempt);
            }
            for t in tasks.iter_mut().filter(|t| t.status.is_none()) {
                t.attempts = most.get(&t.seq).copied().unwrap_or(0);
            }
        }
        Timeline {
            started_at: self.started_at,
            parallel_limit: self.parallel_limit,
            tasks,
            attempts,
            stopped: self.stopped,
            stopped_at: self.stopped_at,
            duration_ms: self.duration_ms,
            metrics: self.metrics,
        }
    }
}

/// Whole milliseconds of `d` (rounded down, as `as_millis` does).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
