//! How one attempt ended, classified into a status and the error text
//! PRODUCT.md words: the one place that decides what an attempt's outcome
//! was.

use std::time::Duration;

use tokio::time::Instant;

use crate::agent::{AgentOutput, AgentResult, AttemptShared};
use crate::result::{Reason, TaskStatus, Timestamp, Usage};
use crate::stop::StopReason;

/// How one attempt ended, as the worker saw it.
pub(super) enum Ended {
    Returned(std::thread::Result<AgentResult>),
    TimedOut(Option<std::thread::Result<AgentResult>>),
    Cancelled(Option<std::thread::Result<AgentResult>>),
}

impl Ended {
    /// What the agent said of the next try: whether this one was refused
    /// before any work was done (deferred), and how long to wait first.
    /// Only an attempt that ended on its own says anything.
    pub(super) fn next_try(&self) -> (bool, Option<Duration>) {
        match self {
            Self::Returned(Ok(Err(e))) => (e.is_deferred(), e.retry_after_hint()),
            _ => (false, None),
        }
    }

    /// Whether a retry may help: not when the agent said it cannot.
    pub(super) fn retryable(&self) -> bool {
        !matches!(self, Self::Returned(Ok(Err(e))) if e.is_final())
    }
}

/// One attempt's outcome, classified.
#[derive(Debug)]
pub(super) struct Attempt {
    pub(super) status: TaskStatus,
    pub(super) error: Option<String>,
    /// Why, as a fact; `None` for a success.
    pub(super) reason: Option<Reason>,
    pub(super) exit_code: Option<i32>,
    pub(super) output: String,
    pub(super) stderr: String,
    pub(super) notes: Vec<String>,
    pub(super) slot: usize,
    /// The worker its agent reported.
    pub(super) worker: Option<String>,
    /// When its agent said it really started.
    pub(super) started: Option<(Instant, Timestamp)>,
    /// Tokens and cost its agent reported.
    pub(super) usage: Option<Usage>,
    pub(super) cost_usd: Option<f64>,
}

impl Attempt {
    /// Whether its execution was lost rather than its task failing.
    pub(super) fn was_lost(&self) -> bool {
        matches!(self.reason, Some(Reason::ExecutionLost { .. }))
    }
}

/// How a lost execution is told: `worker w1 lost after 12.3s`.
fn lost_text(worker: Option<&str>, after: Duration) -> String {
    let after = after.as_secs_f64();
    match worker {
        Some(worker) => format!("worker {worker} lost after {after:.1}s"),
        None => format!("execution lost after {after:.1}s"),
    }
}

/// How a timeout is told, the engine's or one an agent enforced.
fn timeout_text(limit: Option<Duration>) -> String {
    let limit = limit.map_or_else(|| "its limit".to_owned(), format_secs);
    format!("timed out after {limit}")
}

/// Why the run stopped, as errors quote it.
pub(super) fn stop_text(stop: Option<&StopReason>) -> String {
    stop.map_or_else(|| "stopped".to_owned(), ToString::to_string)
}

pub(super) fn format_secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}

pub(super) fn classify(
    ended: Ended,
    shared: &AttemptShared,
    slot: usize,
    stop: Option<&StopReason>,
) -> Attempt {
    let timeout = shared.timeout;
    let (status, returned, base) = match ended {
        Ended::Returned(r) => {
            let status = match &r {
                Ok(Ok(_)) => TaskStatus::Success,
                _ => TaskStatus::Failed,
            };
            (status, Some(r), None)
        }
        Ended::TimedOut(late) => (
            TaskStatus::Timeout,
            late,
            Some((timeout_text(timeout), Reason::Timeout { limit: timeout })),
        ),
        Ended::Cancelled(late) => (
            TaskStatus::Cancelled,
            late,
            Some((
                format!("cancelled: {}", stop_text(stop)),
                Reason::Stopped {
                    by: stop.cloned().map(Box::new),
                },
            )),
        ),
    };
    let reported = shared.reported().unwrap_or_default();
    let mut worker = reported.worker;
    let mut panicked = None;
    let (mut out, agent_error) = match returned {
        Some(Ok(Ok(out))) => (out, None),
        Some(Ok(Err(mut e))) => {
            let reason = e.take_reason().unwrap_or(Reason::AgentError);
            // A timeout the agent enforced, and a lost execution, are told
            // in the engine's words whatever the agent's message was.
            let message = match &reason {
                Reason::Timeout { limit } => timeout_text(limit.or(timeout)),
                Reason::ExecutionLost {
                    worker: lost_on,
                    after,
                } => {
                    if worker.is_none() {
                        worker.clone_from(lost_on);
                    }
                    lost_text(lost_on.as_deref().or(worker.as_deref()), *after)
                }
                _ => e.message,
            };
            let reason = match reason {
                Reason::Timeout { limit } => Reason::Timeout {
                    limit: limit.or(timeout),
                },
                other => other,
            };
            (e.output, Some((message, reason)))
        }
        Some(Err(panic)) => {
            let message = format!("agent panicked: {}", panic_message(&*panic));
            panicked = Some(message.clone());
            (AgentOutput::default(), Some((message, Reason::Panicked)))
        }
        None => (AgentOutput::default(), None),
    };
    // A timeout or a stop is the reason, worded as PRODUCT.md pins it; how
    // the agent then wound down (`killed by SIGTERM`) is its consequence,
    // and a command's exit code stays in the result. A panic while winding
    // down is no consequence of the stop: it stays, as a note.
    if let (Some(_), Some(panic)) = (&base, panicked) {
        out.notes.push(panic);
    }
    let status = match (&base, &agent_error) {
        (None, Some((_, Reason::Timeout { .. }))) => TaskStatus::Timeout,
        _ => status,
    };
    let (error, reason) = base.or(agent_error).unzip();
    let (output, stderr) = match reported.output {
        Some(reported) => reported,
        None => shared.capture.finish(&out.stdout, &out.stderr),
    };
    Attempt {
        status,
        error,
        reason,
        exit_code: out.exit_code,
        output,
        stderr,
        notes: out.notes,
        slot,
        worker,
        started: reported.start,
        usage: reported.usage,
        cost_usd: reported.cost_usd,
    }
}
