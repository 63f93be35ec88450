//! The events of a run: the only contract between the engine and whoever
//! watches it (reporters, progress bars, journals).
//!
//! Events are facts in the past tense, delivered in the order they happened
//! through a channel: an observer cannot touch the dispatcher's state, and
//! one that falls behind holds the run back (see [`Backlog`]) rather than
//! letting unread events fill memory.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::capture::Stream;
use crate::metrics::Metrics;
use crate::result::{Reason, RunTotals, TaskResult, TaskStatus, Timestamp};
use crate::task::{AgentTask, TaskId};

/// Events of one turn of the dispatcher, sent as one message.
pub(crate) type Batch = VecDeque<Event>;

/// Batches the consumer has emptied, kept for the dispatcher to fill again:
/// one allocation reused, rather than one made per turn of the loop and
/// freed on another thread.
#[derive(Debug, Default)]
pub(crate) struct SpentBatches(Mutex<Vec<Batch>>);

impl SpentBatches {
    /// Enough for a consumer a few batches behind.
    const KEEP: usize = 4;
    /// A burst's buffer (a stop cancelling every task not read) is not kept.
    const MAX_EVENTS: usize = 4096;

    pub(crate) fn take(&self) -> Batch {
        let mut spent = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        spent.pop().unwrap_or_default()
    }

    pub(crate) fn give(&self, mut batch: Batch) {
        if batch.capacity() == 0 || batch.capacity() > Self::MAX_EVENTS {
            return;
        }
        batch.clear();
        let mut spent = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if spent.len() < Self::KEEP {
            spent.push(batch);
        }
    }
}

/// How many events the dispatcher sent that the consumer has not taken
/// yet. Past [`Backlog::FULL`] the dispatcher starts no task and reads no
/// input until the consumer is back under [`Backlog::RESUME`]: a consumer
/// slower than the run slows the run, and unread events never pile up.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    unread: AtomicUsize,
    drained: Notify,
}

impl Backlog {
    /// Far more than one turn of the loop makes at the default limits, so
    /// that a consumer keeping up never stalls the run; a few MiB at most.
    pub(crate) const FULL: usize = 8192;
    /// Wake the dispatcher only once the consumer has caught up well, not
    /// for every batch it takes.
    pub(crate) const RESUME: usize = Self::FULL / 4;

    /// The dispatcher sent `n` events.
    pub(crate) fn sent(&self, n: usize) {
        self.unread.fetch_add(n, Ordering::Relaxed);
    }

    /// The consumer took `n` events.
    pub(crate) fn taken(&self, n: usize) {
        // Saturating: a miscount must never leave the run waiting forever.
        let before = self
            .unread
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(n))
            })
            .unwrap_or_else(|u| u);
        debug_assert!(before >= n, "{n} events taken, {before} sent");
        let n = n.min(before);
        if before >= Self::RESUME && before - n < Self::RESUME {
            // Stores a permit if the dispatcher is not waiting yet.
            self.drained.notify_one();
        }
    }

    /// Whether the dispatcher must wait for the consumer.
    pub(crate) fn is_full(&self) -> bool {
        self.unread.load(Ordering::Acquire) >= Self::FULL
    }

    /// Resolves once the consumer has caught up (or spuriously: check
    /// [`Self::is_full`] again).
    pub(crate) async fn drained(&self) {
        self.drained.notified().await;
    }
}

/// What interrupted a run, as the caller names it: the CLI names the
/// signal (`terminated`, `SIGTERM`); a library caller may name anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interrupt {
    /// What happened, in a word or two: `interrupted`, `terminated`, `hangup`.
    pub what: String,
    /// The signal's name, if a signal did it: `SIGINT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
}

impl Interrupt {
    /// An interrupt without a signal.
    #[must_use]
    pub fn new(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            signal: None,
        }
    }

    /// An interrupt by a signal: `Interrupt::signal("terminated", "SIGTERM")`.
    #[must_use]
    pub fn signal(what: impl Into<String>, signal: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            signal: Some(signal.into()),
        }
    }
}

impl Default for Interrupt {
    fn default() -> Self {
        Self::new("interrupted")
    }
}

impl std::fmt::Display for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)?;
        match &self.signal {
            Some(signal) => write!(f, " ({signal})"),
            None => Ok(()),
        }
    }
}

/// Why a run stopped early. Ordered by severity: a later, more severe reason
/// replaces an earlier one (a second interrupt beats fail-fast).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StopReason {
    /// The first failure fired the stop trigger (`max_failures` 1) and
    /// in-flight tasks are cancelled (`fail_fast`).
    FailFast {
        /// The task whose failure fired the stop trigger.
        task: TaskId,
        /// `failed` or `timed out`.
        how: String,
    },
    /// The first failure fired the stop trigger (`max_failures` 1) and
    /// in-flight tasks run to their end (`fail_fast: false`).
    StoppedStarting {
        /// The task whose failure fired the stop trigger.
        task: TaskId,
        /// `failed` or `timed out`.
        how: String,
    },
    /// The failure count reached `max_failures` (more than 1).
    MaxFailures {
        /// The limit that was reached.
        count: u32,
        /// The task whose failure reached it.
        task: TaskId,
        /// `failed` or `timed out`.
        how: String,
    },
    /// The run deadline passed.
    Deadline {
        /// The deadline in seconds.
        seconds: f64,
    },
    /// The run was interrupted (SIGINT, SIGTERM, …, or the caller's control).
    Interrupted {
        /// What interrupted it.
        #[serde(default)]
        by: Interrupt,
    },
    /// The run was interrupted again, or killed at once (SIGQUIT): tasks
    /// are dropped without grace.
    Killed {
        /// What killed the tasks.
        #[serde(default)]
        by: Interrupt,
        /// The interrupt that had stopped the run before, if one had.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<Interrupt>,
    },
}

impl StopReason {
    /// Whether in-flight tasks are cancelled (rather than drained) for this
    /// reason, given the run's `fail_fast` setting.
    #[must_use]
    pub fn cancels_in_flight(&self, fail_fast: bool) -> bool {
        match self {
            Self::FailFast { .. } => true,
            Self::StoppedStarting { .. } => false,
            Self::MaxFailures { .. } => fail_fast,
            Self::Deadline { .. } | Self::Interrupted { .. } | Self::Killed { .. } => true,
        }
    }

    /// The task whose failure stopped the run, if one did.
    #[must_use]
    pub fn failed_task(&self) -> Option<&TaskId> {
        match self {
            Self::FailFast { task, .. }
            | Self::StoppedStarting { task, .. }
            | Self::MaxFailures { task, .. } => Some(task),
            Self::Deadline { .. } | Self::Interrupted { .. } | Self::Killed { .. } => None,
        }
    }

    /// How severe the reason is: failures 0, the run deadline 1, an
    /// interrupt 2, a kill 3.
    #[must_use]
    pub fn severity(&self) -> u8 {
        match self {
            Self::FailFast { .. } | Self::StoppedStarting { .. } | Self::MaxFailures { .. } => 0,
            Self::Deadline { .. } => 1,
            Self::Interrupted { .. } => 2,
            Self::Killed { .. } => 3,
        }
    }

    /// Whether `self` should replace `current`.
    #[must_use]
    pub fn outranks(&self, current: &Self) -> bool {
        self.severity() > current.severity()
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::FailFast { task, how } => write!(f, "fail-fast after {task} {how}"),
            Self::StoppedStarting { task, how } => {
                write!(f, "stopped starting tasks after {task} {how}")
            }
            Self::MaxFailures { count, .. } => write!(f, "max failures ({count}) reached"),
            Self::Deadline { seconds } => write!(f, "run deadline ({seconds}s) passed"),
            Self::Interrupted { by } => write!(f, "{by}"),
            Self::Killed { by, after } => {
                match after {
                    Some(first) if first == by => {
                        f.write_str(&first.what)?;
                        f.write_str(" twice")?;
                        if let Some(signal) = &first.signal {
                            write!(f, " ({signal})")?;
                        }
                    }
                    Some(first) => write!(f, "{first}, then {by}")?,
                    None => write!(f, "{by}")?,
                }
                f.write_str(": tasks killed")
            }
        }
    }
}

/// Something that happened in a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run began.
    RunStarted {
        /// Number of tasks, when the input's size is known up front.
        total: Option<usize>,
        /// The effective global limit (1 in sequential mode).
        parallel_limit: usize,
        /// When it began.
        at: Timestamp,
    },
    /// Tasks declare dependencies, but this mode ignores them.
    DependenciesIgnored,
    /// A task entered the run.
    TaskQueued {
        /// Position in input order.
        seq: u64,
        /// The task.
        task: Arc<AgentTask>,
    },
    /// An attempt of a task started in a slot.
    TaskStarted {
        /// Position in input order.
        seq: u64,
        /// The task's id.
        id: TaskId,
        /// Attempt number, from 1.
        attempt: u32,
        /// The lowest free slot number, from 0; slots are lanes in a timeline.
        slot: usize,
        /// Time the task spent ready before this start.
        waited: Duration,
        /// When it started.
        at: Timestamp,
    },
    /// Live output of a running task (only when the executor streams output).
    TaskOutput {
        /// Position in input order.
        seq: u64,
        /// The task's id.
        id: TaskId,
        /// Which stream.
        stream: Stream,
        /// The bytes, as written.
        bytes: Vec<u8>,
    },
    /// An attempt did not succeed and the task will run again after
    /// `delay`; its slot is free meanwhile. Also an execution that was lost
    /// ([`Reason::ExecutionLost`]): it runs again at once, without using a
    /// retry.
    #[serde(rename = "task_retrying")]
    TaskRetryScheduled {
        /// Position in input order.
        seq: u64,
        /// The task's id.
        id: TaskId,
        /// The attempt that ended.
        attempt: u32,
        /// How it ended: `failed` or `timeout`.
        status: TaskStatus,
        /// Why, as a fact (`None` only in events rebuilt from a saved
        /// report).
        #[serde(default)]
        reason: Option<Reason>,
        /// Why, in words.
        error: String,
        /// The slot it ran in.
        slot: usize,
        /// Backoff before the next attempt.
        delay: Duration,
        /// When the attempt ended.
        at: Timestamp,
        /// When it really started, if its agent reported it (else its
        /// `TaskStarted`'s `at`).
        #[serde(default)]
        started_at: Option<Timestamp>,
        /// The worker it ran on, if its agent reported one.
        #[serde(default)]
        worker: Option<String>,
    },
    /// An attempt was refused before any work was done (a provider's rate
    /// limit): it is not an attempt, uses no retry and counts no failure.
    /// The task is ready again, in its input order, after `retry_after`
    /// if the agent gave one; its slot is free meanwhile.
    TaskDeferred {
        /// Position in input order.
        seq: u64,
        /// The task's id.
        id: TaskId,
        /// The slot it was refused in.
        slot: usize,
        /// How long it waits before it is ready again, if the agent said.
        retry_after: Option<Duration>,
        /// The task's deferrals so far, this one included.
        count: u32,
        /// When it was refused.
        at: Timestamp,
    },
    /// The run will stop early: the stop was triggered (a failure, the
    /// deadline, an interrupt) and nothing new starts.
    #[serde(rename = "run_stopping")]
    RunStopTriggered {
        /// Why.
        reason: StopReason,
    },
    /// A task reached its final outcome.
    TaskFinished {
        /// Position in input order.
        seq: u64,
        /// The slot its last attempt ran in, if it started.
        slot: Option<usize>,
        /// When its last attempt really started, if its agent reported it
        /// (else that attempt's `TaskStarted`'s `at`).
        #[serde(default)]
        attempt_started_at: Option<Timestamp>,
        /// The result.
        result: Box<TaskResult>,
    },
    /// The run ended; nothing follows.
    RunFinished {
        /// Wall time of the run.
        duration_ms: u64,
        /// Why it stopped early, if it did.
        stopped: Option<StopReason>,
        /// How many tasks ended how.
        #[serde(default)]
        totals: RunTotals,
        /// The run's metrics.
        metrics: Metrics,
    },
}
