//! Limits that change while a run goes on, shared by several agents.
//!
//! A [`SharedLimit`] caps how many attempts of the agents bound to it
//! (with [`AgentSpec::shared_limit`](crate::AgentSpec::shared_limit)) run
//! at once, beside the global and per-agent limits. Whoever holds a clone
//! of the handle can shrink or grow it, or pause it until an instant; the
//! dispatcher checks it when it admits a task, and is woken by every change
//! and at the end of a pause, so a waiting run never polls. A rate limiter
//! for a model provider is the intended user: it halves the limit and
//! pauses it when the provider says so.
//!
//! Inside the engine every such limit is a [`Gate`]: the dispatcher's
//! admission knows only that trait, so other kinds of limits (a remote
//! coordinator's, a provider's adaptive one) plug in the same way.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::Notify;
use tokio::time::Instant;

/// A limit checked when a task of an agent bound to it is admitted, beside
/// the global and per-agent limits.
pub(crate) trait Gate: Send + Sync {
    /// Takes room for one attempt if there is some at `now`.
    fn try_acquire(&self, now: Instant) -> bool;
    /// Whether [`Gate::try_acquire`] would take room at `now`.
    fn admits(&self, now: Instant) -> bool;
    /// Gives back the room of an attempt that ended.
    fn release(&self, by: &Arc<Notify>);
    /// When a pause in force at `now` ends.
    fn resumes_at(&self, now: Instant) -> Option<Instant>;
    /// Has `waker` notified whenever room may have appeared: a change of
    /// the limit, an early end of a pause, room given back by another run.
    fn subscribe(&self, waker: &Arc<Notify>);
}

/// A concurrency limit shared by the agents bound to it, that can shrink,
/// grow and pause while runs use it. Cloning is cheap: every clone is the
/// same limit.
///
/// ```
/// use std::time::Duration;
/// use agent33_parallel::{AgentError, AgentSpec, Agents, SharedLimit, TaskContext};
///
/// let provider = SharedLimit::new(16);
/// let agents = Agents::new()
///     .add_spec("summarise", AgentSpec::new(|_: TaskContext| async { Ok::<_, AgentError>(()) })
///         .shared_limit(provider.clone()))
///     .add_spec("translate", AgentSpec::new(|_: TaskContext| async { Ok::<_, AgentError>(()) })
///         .shared_limit(provider.clone()));
/// // Later, when the provider says it is overloaded:
/// provider.set_limit(8);
/// # let _ = agents;
/// ```
#[derive(Clone)]
pub struct SharedLimit {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// The dispatchers of the runs that use this limit.
    listeners: Mutex<Vec<Weak<Notify>>>,
}

#[derive(Debug)]
struct State {
    limit: usize,
    in_use: usize,
    paused_until: Option<Instant>,
}

impl State {
    fn paused_at(&self, now: Instant) -> Option<Instant> {
        self.paused_until.filter(|until| *until > now)
    }

    fn admits(&self, now: Instant) -> bool {
        self.in_use < self.limit && self.paused_at(now).is_none()
    }
}

impl SharedLimit {
    /// A limit of `limit` attempts at once. A limit of 0 admits nothing
    /// until it is raised.
    #[must_use]
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    limit,
                    in_use: 0,
                    paused_until: None,
                }),
                listeners: Mutex::new(Vec::new()),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is a few numbers, each written whole: a panic
        // elsewhere while it was held cannot have left it half-changed.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes the limit. Shrinking it below what is in use stops no
    /// running attempt: nothing more is admitted until fewer run than the
    /// new limit. Growing it admits waiting tasks at once.
    pub fn set_limit(&self, limit: usize) {
        self.state().limit = limit;
        self.wake(None);
    }

    /// Admits nothing until `until`; running attempts go on. A pause that
    /// already lasts longer is kept: a limit never resumes earlier than
    /// it was asked to.
    pub fn pause_until(&self, until: Instant) {
        {
            let mut state = self.state();
            state.paused_until = Some(state.paused_until.map_or(until, |p| p.max(until)));
        }
        // Nothing to admit because of a pause; but a run waiting for the
        // end of an earlier, shorter pause must look at the new end.
        self.wake(None);
    }

    /// Ends a pause now.
    pub fn resume(&self) {
        self.state().paused_until = None;
        self.wake(None);
    }

    /// The current limit.
    #[must_use]
    pub fn limit(&self) -> usize {
        self.state().limit
    }

    /// How many attempts bound to this limit run now.
    #[must_use]
    pub fn in_use(&self) -> usize {
        self.state().in_use
    }

    /// Until when the limit is paused, if it is now.
    #[must_use]
    pub fn paused_until(&self) -> Option<Instant> {
        self.state().paused_at(Instant::now())
    }

    /// Whether the limit is paused now.
    #[must_use]
    pub fn is_paused(&self) -> bool {
        self.paused_until().is_some()
    }

    /// Notifies every run that uses this limit but `except`, forgetting
    /// runs that ended.
    fn wake(&self, except: Option<&Arc<Notify>>) {
        let mut listeners = self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        listeners.retain(|l| match l.upgrade() {
            Some(l) => {
                if except.is_none_or(|e| !Arc::ptr_eq(e, &l)) {
                    // Stores a permit when the run is not waiting yet: it
                    // then looks again at once, and no change is missed.
                    l.notify_one();
                }
                true
            }
            None => false,
        });
    }
}

impl Gate for SharedLimit {
    fn try_acquire(&self, now: Instant) -> bool {
        let mut state = self.state();
        let admits = state.admits(now);
        if admits {
            state.in_use += 1;
        }
        admits
    }

    fn admits(&self, now: Instant) -> bool {
        self.state().admits(now)
    }

    fn release(&self, by: &Arc<Notify>) {
        {
            let mut state = self.state();
            state.in_use = state.in_use.saturating_sub(1);
        }
        // The run that released knows; other runs using this limit may
        // have tasks waiting for that room.
        self.wake(Some(by));
    }

    fn resumes_at(&self, now: Instant) -> Option<Instant> {
        self.state().paused_at(now)
    }

    fn subscribe(&self, waker: &Arc<Notify>) {
        let mut listeners = self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !listeners
            .iter()
            .any(|l| std::ptr::eq(l.as_ptr(), Arc::as_ptr(waker)))
        {
            listeners.push(Arc::downgrade(waker));
        }
    }
}

impl fmt::Debug for SharedLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("SharedLimit")
            .field("limit", &state.limit)
            .field("in_use", &state.in_use)
            .field("paused_until", &state.paused_until)
            .finish()
    }
}
