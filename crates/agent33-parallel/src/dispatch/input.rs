//! Where a run's tasks come from, and how they are read: a known set is
//! read as far as needed and drained as `cancelled` at a stop; a stream is
//! read only while a slot is free, with a bounded look-ahead, and abandoned
//! at a stop.

use futures::FutureExt;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::task::AgentTask;

/// Where tasks come from.
pub(crate) enum Input {
    /// A known set: read as needed, drained as `cancelled` at a stop.
    Iter(Box<dyn Iterator<Item = AgentTask> + Send>),
    /// An open-ended stream: read as needed, abandoned at a stop.
    Stream(BoxStream<'static, AgentTask>),
    /// Nothing more to read.
    Done,
}

impl Input {
    pub(crate) fn iter(it: impl Iterator<Item = AgentTask> + Send + 'static) -> Self {
        Self::Iter(Box::new(it))
    }

    pub(crate) fn stream(s: BoxStream<'static, AgentTask>) -> Self {
        Self::Stream(s)
    }

    /// How many tasks there are, when that is known up front.
    pub(super) fn size_hint(&self) -> Option<usize> {
        match self {
            Self::Iter(it) => match it.size_hint() {
                (lo, Some(hi)) if lo == hi => Some(lo),
                _ => None,
            },
            Self::Stream(_) => None,
            Self::Done => Some(0),
        }
    }

    pub(super) fn is_open(&self) -> bool {
        !matches!(self, Self::Done)
    }

    /// Whether this is a known set, which a stop drains rather than abandons.
    pub(super) fn is_known_set(&self) -> bool {
        matches!(self, Self::Iter(_))
    }

    /// The next task if one is available without waiting: `Some(None)` at
    /// the end of the input, `None` if a stream has nothing yet.
    pub(super) fn next_now(&mut self) -> Option<Option<AgentTask>> {
        match self {
            Self::Iter(it) => Some(it.next()),
            Self::Stream(s) => s.next().now_or_never(),
            Self::Done => None,
        }
    }

    /// The next task, waiting for a stream; never ready once done.
    pub(super) async fn next(&mut self) -> Option<AgentTask> {
        match self {
            Self::Iter(it) => it.next(),
            Self::Stream(s) => s.next().await,
            Self::Done => std::future::pending().await,
        }
    }

    /// Up to `n` tasks of a known set not read yet (none for a stream).
    pub(super) fn take_known(&mut self, n: usize) -> Vec<AgentTask> {
        let Self::Iter(rest) = self else {
            return Vec::new();
        };
        let mut taken = Vec::with_capacity(n);
        taken.extend(rest.by_ref().take(n));
        if taken.len() < n {
            *self = Self::Done;
        }
        taken
    }
}
