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
//! Each pushed task is checked against the ones before it, with the CLI's
//! messages (duplicate id, self-dependency). A task naming one not pushed
//! yet needs the whole list, as the CLI's checks do (an unknown id, a
//! cycle, or a valid dependency on a later task): the feeder then reads
//! the rest of the iterator and [`Feed::push_all`] checks everything as
//! `plan::validate` checks a list, so the messages are the CLI's.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use agent33_parallel::plan::{self, PlanError};
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

/// How `task` fits as the next of `ids.len()` tasks.
enum Fit {
    /// Every dependency is an earlier task.
    Fits,
    /// It names a task not pushed yet: only the whole list can tell.
    NamesLater,
}

/// `task` as the next of `ids.len()` tasks: the first problem, as the CLI
/// words it (`plan::validate` checks the same on a whole list).
fn check(ids: &HashMap<TaskId, usize>, task: &AgentTask) -> Result<Fit, PlanError> {
    if let Some(&first) = ids.get(&task.id) {
        return Err(PlanError::DuplicateId {
            id: task.id.clone(),
            first,
            second: ids.len() + 1,
        });
    }
    if task.depends_on.contains(&task.id) {
        return Err(PlanError::SelfDependency {
            task: task.id.clone(),
        });
    }
    if task.depends_on.iter().all(|dep| ids.contains_key(dep)) {
        Ok(Fit::Fits)
    } else {
        Ok(Fit::NamesLater)
    }
}

/// The task object of a Python value, or the `TypeError` naming its type.
fn task_object<'a, 'py>(task: &'a Bound<'py, PyAny>) -> PyResult<&'a Bound<'py, PyAgentTask>> {
    task.cast::<PyAgentTask>().map_err(|_| {
        PyTypeError::new_err(format!(
            "tasks must be AgentTask objects, got {}",
            type_name(task)
        ))
    })
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
    /// Returns whether there is room for another, or None, queueing
    /// nothing, when the task names one not pushed yet: then it and the
    /// rest of the tasks go to [`Self::push_all`]. A task pushed after the
    /// engine stopped reading is dropped: the run will not have it.
    pub fn push(
        &self,
        task: &Bound<'_, PyAny>,
        record: impl FnOnce(Py<PyAgentTask>),
    ) -> PyResult<Option<bool>> {
        let object = task_object(task)?;
        let mut s = lock(&self.state);
        if s.closed {
            return Ok(Some(false));
        }
        match check(&s.ids, &object.get().task) {
            Ok(Fit::Fits) => {}
            Ok(Fit::NamesLater) => return Ok(None),
            Err(e) => return Err(PyValueError::new_err(e.to_string())),
        }
        record(object.clone().unbind());
        self.queue(&mut s, object);
        Ok(Some(s.queue.len() < self.capacity))
    }

    /// Checks the tasks pushed so far (`pushed`, in order) followed by
    /// `rest` as the CLI checks a whole list, and queues `rest`, however
    /// many: the engine still reads them only as it has room.
    pub fn push_all(
        &self,
        pushed: &[Py<PyAgentTask>],
        rest: &[Bound<'_, PyAny>],
        mut record: impl FnMut(Py<PyAgentTask>),
    ) -> PyResult<()> {
        let rest = rest.iter().map(task_object).collect::<PyResult<Vec<_>>>()?;
        let all: Vec<AgentTask> = pushed
            .iter()
            .map(|t| t.get().task.clone())
            .chain(rest.iter().map(|t| t.get().task.clone()))
            .collect();
        plan::validate(&all).map_err(|e| PyValueError::new_err(e.to_string()))?;
        drop(all);
        let mut s = lock(&self.state);
        if s.closed {
            return Ok(());
        }
        for object in rest {
            record(object.clone().unbind());
            self.queue(&mut s, object);
        }
        Ok(())
    }

    /// Queues a checked task and wakes the engine's input.
    fn queue(&self, s: &mut FeedState, object: &Bound<'_, PyAgentTask>) {
        let plain = &object.get().task;
        let position = s.ids.len() + 1;
        s.ids.insert(plain.id.clone(), position);
        s.queue.push_back(plain.clone());
        if let Some(reader) = s.reader.take() {
            reader.wake();
        }
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
