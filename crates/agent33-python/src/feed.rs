//! Tasks streamed into a run from a Python iterator, read only as the
//! engine wants them.
//!
//! A list or tuple is checked whole and handed to the engine as a known
//! set. Any other iterable (a generator, an async iterable) is a stream:
//! the package's feeder coroutine pulls one task at a time on the loop and
//! [`Feed::push`]es it; the engine reads the feed through [`FeedStream`],
//! its streaming input, only while a slot is free. The feed holds at most
//! `capacity` tasks, and the feeder waits (an asyncio future, resolved
//! through the bridge) while it is full, so a generator of a million tasks
//! is read a little ahead of the running ones, never whole.
//!
//! Checks that need the whole list cannot wait for it: a streamed task may
//! depend only on tasks before it. Each pushed task is checked against the
//! ones before it, with the CLI's messages (duplicate id, self-dependency,
//! unknown dependency); a cycle needs a later task and so cannot occur.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use agent33_parallel::plan::PlanError;
use agent33_parallel::{AgentTask, TaskId};
use futures::Stream;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::bridge::{Bridge, resolve};
use crate::task::{PyAgentTask, type_name};

/// Tasks the feed holds at least, whatever the limit: a sequential run
/// still reads a few ahead, so the loop is not woken for every task.
const MIN_CAPACITY: usize = 8;

#[derive(Default)]
struct FeedState {
    /// Pushed, not yet read by the engine.
    queue: VecDeque<AgentTask>,
    /// The iterator ended: the engine's input ends after the queue.
    ended: bool,
    /// The engine reads no more (it stopped, or the run is over).
    closed: bool,
    /// The engine's input, waiting for a task.
    reader: Option<Waker>,
    /// The feeder's future, waiting for room.
    room: Option<Py<PyAny>>,
    /// Ids pushed so far, with their 1-based position, for the checks.
    ids: HashMap<TaskId, usize>,
}

/// One run's streamed input.
pub struct Feed {
    state: Mutex<FeedState>,
    capacity: usize,
    bridge: Arc<Bridge>,
}

fn lock(m: &Mutex<FeedState>) -> MutexGuard<'_, FeedState> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The first problem with `task` as the next of `ids.len()` tasks, as the
/// CLI words it; `plan::validate` checks the same on a whole list.
fn check(ids: &HashMap<TaskId, usize>, task: &AgentTask) -> Result<(), PlanError> {
    if let Some(&first) = ids.get(&task.id) {
        return Err(PlanError::DuplicateId {
            id: task.id.clone(),
            first,
            second: ids.len() + 1,
        });
    }
    for dep in &task.depends_on {
        if *dep == task.id {
            return Err(PlanError::SelfDependency {
                task: task.id.clone(),
            });
        }
        if !ids.contains_key(dep) {
            return Err(PlanError::UnknownDependency {
                task: task.id.clone(),
                dependency: dep.clone(),
            });
        }
    }
    Ok(())
}

impl Feed {
    /// A feed holding up to `parallel_limit` tasks (at least a few).
    pub fn new(parallel_limit: usize, bridge: Arc<Bridge>) -> Self {
        Self {
            state: Mutex::default(),
            capacity: parallel_limit.max(MIN_CAPACITY),
            bridge,
        }
    }

    /// Whether the engine wants another task now.
    pub fn has_room(&self) -> bool {
        let s = lock(&self.state);
        !s.closed && s.queue.len() < self.capacity
    }

    /// Whether the engine reads no more tasks.
    pub fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }

    /// Checks `task` against the tasks before it and queues it for the
    /// engine; `record` keeps the caller's object (called before the engine
    /// can read the task, so its position is known when it is queued).
    /// Returns whether there is room for another. A task pushed after the
    /// engine stopped reading is dropped: the run will not have it.
    pub fn push(
        &self,
        task: &Bound<'_, PyAny>,
        record: impl FnOnce(Py<PyAgentTask>),
    ) -> PyResult<bool> {
        let object = task.cast::<PyAgentTask>().map_err(|_| {
            PyTypeError::new_err(format!(
                "tasks must be AgentTask objects, got {}",
                type_name(task)
            ))
        })?;
        let plain = &object.get().task;
        let mut s = lock(&self.state);
        if s.closed {
            return Ok(false);
        }
        check(&s.ids, plain).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let position = s.ids.len() + 1;
        s.ids.insert(plain.id.clone(), position);
        record(object.clone().unbind());
        s.queue.push_back(plain.clone());
        if let Some(reader) = s.reader.take() {
            reader.wake();
        }
        Ok(s.queue.len() < self.capacity)
    }

    /// Resolves `fut` once there is room for a task or the engine reads no
    /// more (at once if that is so now).
    pub fn wait_room(&self, py: Python<'_>, fut: Py<PyAny>) {
        let mut s = lock(&self.state);
        if s.closed || s.queue.len() < self.capacity {
            drop(s);
            resolve(py, &fut);
        } else {
            s.room = Some(fut);
        }
    }

    /// The iterator ended: so does the engine's input, after what is queued.
    pub fn end(&self) {
        let mut s = lock(&self.state);
        s.ended = true;
        if let Some(reader) = s.reader.take() {
            reader.wake();
        }
    }

    /// The engine reads no more: what is queued is dropped (it never
    /// becomes part of the run) and the feeder is told to stop.
    pub fn close(&self) {
        let (room, queue) = {
            let mut s = lock(&self.state);
            s.closed = true;
            (s.room.take(), std::mem::take(&mut s.queue))
        };
        drop(queue);
        self.wake_feeder(room);
    }

    fn wake_feeder(&self, room: Option<Py<PyAny>>) {
        if let Some(fut) = room {
            self.bridge.submit(Box::new(move |py| resolve(py, &fut)));
        }
    }
}

/// The engine's view of a [`Feed`]: a stream of its tasks that ends when
/// the iterator did (or the feed was closed).
pub struct FeedStream(pub Arc<Feed>);

impl Stream for FeedStream {
    type Item = AgentTask;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<AgentTask>> {
        let feed = &self.0;
        let mut s = lock(&feed.state);
        if let Some(task) = s.queue.pop_front() {
            // Wake the feeder only once half the room is free: one turn of
            // the loop then refills many tasks.
            let room = if s.queue.len() <= feed.capacity / 2 {
                s.room.take()
            } else {
                None
            };
            drop(s);
            feed.wake_feeder(room);
            return Poll::Ready(Some(task));
        }
        if s.ended || s.closed {
            return Poll::Ready(None);
        }
        s.reader = Some(cx.waker().clone());
        Poll::Pending
    }
}
