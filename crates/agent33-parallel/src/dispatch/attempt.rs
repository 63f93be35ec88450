//! How one attempt ended, classified into a status and the error text
//! PRODUCT.md words: the one place that decides what an attempt's outcome
//! was.

use std::time::Duration;

use crate::agent::{AgentOutput, AgentResult};
use crate::capture::Capture;
use crate::event::StopReason;
use crate::result::TaskStatus;

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
    pub(super) exit_code: Option<i32>,
    pub(super) output: String,
    pub(super) stderr: String,
    pub(super) notes: Vec<String>,
    pub(super) slot: usize,
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
    capture: &Capture,
    timeout: Option<Duration>,
    slot: usize,
    stop: Option<&StopReason>,
) -> Attempt {
    let (status, returned, base) = match ended {
        Ended::Returned(r) => {
            let status = match &r {
                Ok(Ok(_)) => TaskStatus::Success,
                _ => TaskStatus::Failed,
            };
            (status, Some(r), None)
        }
        Ended::TimedOut(late) => {
            let limit = timeout.map_or_else(|| "its limit".to_owned(), format_secs);
            (
                TaskStatus::Timeout,
                late,
                Some(format!("timed out after {limit}")),
            )
        }
        Ended::Cancelled(late) => {
            let why = stop_text(stop);
            (
                TaskStatus::Cancelled,
                late,
                Some(format!("cancelled: {why}")),
            )
        }
    };
    let mut panicked = None;
    let (mut out, agent_error) = match returned {
        Some(Ok(Ok(out))) => (out, None),
        Some(Ok(Err(e))) => (e.output, Some(e.message)),
        Some(Err(panic)) => {
            let message = format!("agent panicked: {}", panic_message(&*panic));
            panicked = Some(message.clone());
            (AgentOutput::default(), Some(message))
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
    let error = base.or(agent_error);
    let (output, stderr) = capture.finish(&out.stdout, &out.stderr);
    Attempt {
        status,
        error,
        exit_code: out.exit_code,
        output,
        stderr,
        notes: out.notes,
        slot,
    }
}
