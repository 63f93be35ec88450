//! Results of tasks and of a whole run, in the shape PRODUCT.md defines.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::metrics::Metrics;
use crate::task::AgentTask;

/// How a task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// The agent returned success.
    Success,
    /// The agent returned an error, panicked, or could not start.
    Failed,
    /// The task ran past its timeout and was stopped.
    Timeout,
    /// The run stopped before or while the task ran.
    Cancelled,
    /// A dependency did not succeed, so the task never started.
    Skipped,
}

impl TaskStatus {
    /// The status as written in reports.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
            Self::Skipped => "skipped",
        }
    }

    /// Whether this status counts toward `max_failures`.
    #[must_use]
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Failed | Self::Timeout)
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A wall-clock instant, written as RFC 3339 UTC with milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub SystemTime);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(self.0))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&s)
            .map(Timestamp)
            .map_err(serde::de::Error::custom)
    }
}

/// The outcome of one task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// The task, written as PRODUCT.md shapes it: `{ id, agent, artifact }`.
    #[serde(serialize_with = "task_summary")]
    pub task: Arc<AgentTask>,
    /// How it ended.
    pub status: TaskStatus,
    /// From its first start to its end, retries included (0 if never started).
    pub duration_ms: u64,
    /// Captured standard output of the last attempt, bounded.
    pub output: String,
    /// Captured standard error of the last attempt, bounded.
    pub stderr: String,
    /// Why it did not succeed; `None` for a success.
    pub error: Option<String>,
    /// The process's own exit code, when it exited normally.
    pub exit_code: Option<i32>,
    /// How many attempts started (0 if the task never started).
    pub attempts: u32,
    /// When its first attempt started.
    pub started_at: Option<Timestamp>,
    /// When it ended (`None` if it never started).
    pub finished_at: Option<Timestamp>,
    /// Remarks from the agent, such as escaped processes it killed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Not run again: a journal showed it had already succeeded, unchanged.
    #[serde(default, skip_serializing_if = "is_false")]
    pub resumed: bool,
}

fn task_summary<S: serde::Serializer>(task: &Arc<AgentTask>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut st = s.serialize_struct("Task", 3)?;
    st.serialize_field("id", &task.id)?;
    st.serialize_field("agent", &task.agent)?;
    st.serialize_field("artifact", &task.artifact)?;
    st.end()
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde passes fields by reference"
)]
fn is_false(b: &bool) -> bool {
    !*b
}

impl TaskResult {
    /// A result for a task that never started.
    #[must_use]
    pub fn not_started(task: Arc<AgentTask>, status: TaskStatus, error: String) -> Self {
        Self {
            task,
            status,
            duration_ms: 0,
            output: String::new(),
            stderr: String::new(),
            error: Some(error),
            exit_code: None,
            attempts: 0,
            started_at: None,
            finished_at: None,
            notes: Vec::new(),
            resumed: false,
        }
    }
}

/// The aggregated results of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecutionResults {
    /// Number of tasks in the run (= the sum of the four lists' lengths).
    pub total: usize,
    /// Tasks that succeeded, in input order.
    pub succeeded: Vec<TaskResult>,
    /// Tasks that failed or timed out, in input order.
    pub failed: Vec<TaskResult>,
    /// Tasks cancelled by a stop, in input order.
    pub cancelled: Vec<TaskResult>,
    /// Tasks skipped because a dependency did not succeed, in input order.
    pub skipped: Vec<TaskResult>,
    /// Wall time of the run.
    pub duration_ms: u64,
    /// succeeded ÷ total (0 when there are no tasks).
    pub success_rate: f64,
    /// The AGENT-33 metrics catalog figures.
    pub metrics: Metrics,
}

impl ExecutionResults {
    /// Whether every task succeeded (also true for an empty run).
    #[must_use]
    pub fn all_succeeded(&self) -> bool {
        self.succeeded.len() == self.total
    }
}

/// Builds [`ExecutionResults`] from a run's events.
///
/// Keeps every finished result until the end, so memory grows with the
/// number of tasks; consumers that only need counts should watch the events
/// instead.
#[derive(Debug, Default)]
pub struct ResultsCollector {
    finished: Vec<(u64, TaskResult)>,
    done: Option<(u64, Metrics)>,
}

impl ResultsCollector {
    /// An empty collector.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in one event.
    pub fn observe(&mut self, event: &Event) {
        match event {
            Event::TaskFinished { seq, result, .. } => {
                self.finished.push((*seq, (**result).clone()));
            }
            Event::RunFinished {
                duration_ms,
                metrics,
                ..
            } => self.done = Some((*duration_ms, metrics.clone())),
            _ => {}
        }
    }

    /// Takes in one event by value, avoiding a copy of the result.
    pub fn observe_owned(&mut self, event: Event) {
        match event {
            Event::TaskFinished { seq, result, .. } => self.finished.push((seq, *result)),
            Event::RunFinished {
                duration_ms,
                metrics,
                ..
            } => self.done = Some((duration_ms, metrics)),
            _ => {}
        }
    }

    /// Takes in events by value.
    pub fn observe_all(&mut self, events: impl IntoIterator<Item = Event>) {
        for event in events {
            self.observe_owned(event);
        }
    }

    /// The aggregated results.
    #[must_use]
    pub fn finish(mut self) -> ExecutionResults {
        self.finished.sort_unstable_by_key(|(seq, _)| *seq);
        let total = self.finished.len();
        let (duration_ms, metrics) = self.done.unwrap_or_default();
        let mut results = ExecutionResults {
            total,
            succeeded: Vec::new(),
            failed: Vec::new(),
            cancelled: Vec::new(),
            skipped: Vec::new(),
            duration_ms,
            success_rate: 0.0,
            metrics,
        };
        for (_, r) in self.finished {
            match r.status {
                TaskStatus::Success => results.succeeded.push(r),
                TaskStatus::Failed | TaskStatus::Timeout => results.failed.push(r),
                TaskStatus::Cancelled => results.cancelled.push(r),
                TaskStatus::Skipped => results.skipped.push(r),
            }
        }
        if total > 0 {
            results.success_rate = results.succeeded.len() as f64 / total as f64;
        }
        results
    }
}
