//! Results of tasks and of a whole run, in the shape PRODUCT.md defines.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use crate::stop::StopReason;
use crate::task::{AgentTask, TaskId};

/// How a task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    // The discriminants are the places in `ALL`.
    /// The agent returned success.
    Success = 0,
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
    /// Every status, in the order reports list them; [`Self::index`] is a
    /// status's place here.
    pub const ALL: [Self; 5] = [
        Self::Success,
        Self::Failed,
        Self::Timeout,
        Self::Cancelled,
        Self::Skipped,
    ];

    /// The status's place in [`Self::ALL`]: an index for per-status counts.
    #[must_use]
    pub fn index(self) -> usize {
        self as usize
    }

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

/// Why a task (or one attempt of it) did not succeed, as a fact beside its
/// `error` message, which stays the words PRODUCT.md pins. Reporters and
/// callers decide on this, never on the message's text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// It ran past its timeout: the engine's, or one its agent enforced.
    Timeout {
        /// The limit, when known.
        limit: Option<Duration>,
    },
    /// Its process exited with a code other than 0.
    ExitCode {
        /// The code.
        code: i32,
    },
    /// Its process was killed by a signal.
    Signal {
        /// The signal's name: `SIGSEGV`.
        signal: String,
    },
    /// Its command could not be started.
    StartFailed,
    /// The agent returned an error of its own.
    AgentError,
    /// The agent panicked.
    Panicked,
    /// No agent of that name is registered.
    UnknownAgent,
    /// A dependency did not succeed, so it never started.
    DependencyNotSucceeded {
        /// The dependency.
        dependency: TaskId,
    },
    /// A dependency is unknown or on a cycle, so it could never start.
    DependencyUnresolved,
    /// The run stopped before or while it ran (`None`: the agent cancelled
    /// its own token).
    Stopped {
        /// Why the run stopped.
        by: Option<Box<StopReason>>,
    },
    /// The service behind the agent refused it for now.
    RateLimited,
    /// One execution was lost (to a worker that died, say) and the task
    /// runs again without using a retry.
    ExecutionLost {
        /// The worker it was lost on, when the agent knows it.
        worker: Option<String>,
        /// How long the execution had run when it was lost.
        after: Duration,
    },
    /// The task's executions were lost too many times in a row: a failure
    /// like any other from then on, retried as the policy says.
    WorkerLost {
        /// How many executions were lost.
        times: u32,
    },
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
    /// How many attempts started (0 if the task never started), with
    /// its executions elsewhere ([`AgentTask::executions_before`]).
    pub attempts: u32,
    /// When its first attempt started.
    pub started_at: Option<Timestamp>,
    /// When it ended (`None` if it never started).
    pub finished_at: Option<Timestamp>,
    /// The worker its last attempt ran on, when its agent reported one
    /// (runs on remote workers); absent in local runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Why it did not succeed, as a fact beside `error`; `None` for a
    /// success. Not written to reports: their fields are PRODUCT.md's.
    #[serde(skip)]
    pub reason: Option<Reason>,
    /// Remarks from the agent, such as escaped processes it killed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Not run again: a journal showed it had already succeeded, unchanged.
    #[serde(default, skip_serializing_if = "is_false")]
    pub resumed: bool,
    /// Tokens its agent reported using (a model's), summed over attempts;
    /// absent when the agent reported none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// What its agent reported that use cost, in US dollars, summed over
    /// attempts; absent when no price was known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

/// Tokens a task's model calls used, as an agent reports them with
/// [`crate::TaskContext::report_usage`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens sent.
    pub prompt_tokens: u64,
    /// Tokens answered.
    pub completion_tokens: u64,
    /// Both.
    pub total_tokens: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Self) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.total_tokens += other.total_tokens;
    }
}

/// Sums two optional amounts: absent only when both are.
pub(crate) fn add_optional<T: std::ops::AddAssign>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(mut a), Some(b)) => {
            a += b;
            Some(a)
        }
        (a, b) => a.or(b),
    }
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
    /// A result for a task that never started (here: executions
    /// elsewhere still count in `attempts`).
    #[must_use]
    pub fn not_started(task: Arc<AgentTask>, status: TaskStatus, error: String) -> Self {
        Self {
            attempts: task.executions_before,
            task,
            status,
            duration_ms: 0,
            output: String::new(),
            stderr: String::new(),
            error: Some(error),
            exit_code: None,
            started_at: None,
            finished_at: None,
            worker: None,
            reason: None,
            notes: Vec::new(),
            resumed: false,
            usage: None,
            cost_usd: None,
        }
    }

    /// The same result, with why it did not succeed as a fact.
    #[must_use]
    pub fn because(mut self, reason: Reason) -> Self {
        self.reason = Some(reason);
        self
    }
}

/// The aggregated results of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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

/// How many tasks of a run ended how, and how many retries it took: the
/// run's outcome as `RunFinished` states it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunTotals {
    /// Tasks by status, in [`TaskStatus::ALL`]'s order.
    pub by_status: [u64; 5],
    /// Attempts beyond the first, summed (lost executions not counted).
    pub retries: u64,
}

impl RunTotals {
    /// Counts one finished task.
    pub fn add(&mut self, status: TaskStatus) {
        self.by_status[status.index()] += 1;
    }

    /// How many tasks ended with `status`.
    #[must_use]
    pub fn of(&self, status: TaskStatus) -> u64 {
        self.by_status[status.index()]
    }

    /// How many tasks the run had.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.by_status.iter().sum()
    }

    /// Whether every task succeeded (also true for an empty run).
    #[must_use]
    pub fn all_succeeded(&self) -> bool {
        self.of(TaskStatus::Success) == self.total()
    }
}
