//! What a caller hands a run besides its tasks: a way to stop it from
//! outside ([`RunControl`]) and what an earlier run already did
//! ([`Resume`]).

use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

use crate::result::TaskResult;
use crate::stop::{Interrupt, StopReason};
use crate::task::AgentTask;

/// Knows which tasks already succeeded in an earlier run (a journal, say),
/// so a resumed run does not do them again.
pub trait Resume: Send + Sync + 'static {
    /// The earlier success of exactly this task, if there is one. The engine
    /// reports it as succeeded and `resumed`, without running it; it counts
    /// as a success for the tasks that depend on it.
    fn previous_success(&self, task: &AgentTask) -> Option<TaskResult>;
}

/// Lets the caller stop a run from outside: [`Self::interrupt`] cancels it
/// like fail-fast (in-flight tasks get their grace), [`Self::kill`] drops
/// every task at once. The `_by` forms say what stopped it, for the stop
/// reason (`terminated (SIGTERM)`).
#[derive(Clone, Debug, Default)]
pub struct RunControl {
    pub(crate) interrupt: CancellationToken,
    pub(crate) kill: CancellationToken,
    causes: Arc<Mutex<Causes>>,
}

/// What interrupted and what killed the run, each the first one given.
#[derive(Debug, Default)]
struct Causes {
    interrupt: Option<Interrupt>,
    kill: Option<Interrupt>,
}

impl RunControl {
    /// A fresh control.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops the run with reason "interrupted".
    pub fn interrupt(&self) {
        self.interrupt_by(Interrupt::default());
    }

    /// Stops the run; the stop reason names `cause` (the first cause given
    /// is the one named).
    pub fn interrupt_by(&self, cause: Interrupt) {
        self.causes().interrupt.get_or_insert(cause);
        self.interrupt.cancel();
    }

    /// Stops the run and drops every running task without grace.
    pub fn kill(&self) {
        self.kill_by(Interrupt::default());
    }

    /// Like [`Self::kill`]; the stop reason names `cause`.
    pub fn kill_by(&self, cause: Interrupt) {
        self.causes().kill.get_or_insert(cause);
        // The kill first: whoever sees the interrupt then sees the kill too.
        self.kill.cancel();
        self.interrupt.cancel();
    }

    /// The reason a stop by this control has, now.
    pub(crate) fn reason(&self) -> StopReason {
        let causes = self.causes();
        if self.kill.is_cancelled() {
            StopReason::Killed {
                by: causes.kill.clone().unwrap_or_default(),
                after: causes.interrupt.clone(),
            }
        } else {
            StopReason::Interrupted {
                by: causes.interrupt.clone().unwrap_or_default(),
            }
        }
    }

    fn causes(&self) -> std::sync::MutexGuard<'_, Causes> {
        // Only ever holds plain values: a panic elsewhere cannot break them.
        self.causes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
