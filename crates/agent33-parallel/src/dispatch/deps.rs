//! The dependency tracker: which tasks finished and how, who waits on whom.
//! It only keeps the books; what happens to the dependents of a task that
//! did not succeed is decided in one place, the dispatcher's
//! `skip_dependents`, with the one wording of [`dependency_failed`].

use std::collections::HashMap;

use tokio::time::Instant;

use crate::task::{AgentTask, TaskId};

/// The error of a task skipped because a dependency did not succeed.
pub(super) fn dependency_failed(dep: &TaskId) -> String {
    format!("skipped: dependency `{dep}` did not succeed")
}

/// Tasks waiting for one, as (seq, key).
pub(super) type Waiters = Vec<(u64, usize)>;

/// Where a task just read stands with its dependencies.
pub(super) enum Registered {
    /// Every dependency succeeded; the latest did so then (or `since`).
    Ready(Instant),
    /// Waiting for this many.
    Blocked(usize),
    /// This dependency did not succeed.
    DependencyFailed(TaskId),
}

pub(super) struct Deps {
    /// Whether dependencies count in this run at all.
    on: bool,
    /// When each finished task succeeded, or `None` if it did not.
    finished: HashMap<TaskId, Option<Instant>>,
    /// Tasks blocked on an id, by that id, as (seq, key).
    waiters: HashMap<TaskId, Waiters>,
    /// Ids of tasks read but not finished, with their (seq, key).
    live: HashMap<TaskId, (u64, usize)>,
    /// Whether the run was told that dependencies are ignored.
    warned: bool,
}

impl Deps {
    pub(super) fn new(on: bool) -> Self {
        Self {
            on,
            finished: HashMap::new(),
            waiters: HashMap::new(),
            live: HashMap::new(),
            warned: false,
        }
    }

    pub(super) fn on(&self) -> bool {
        self.on
    }

    /// Takes in a task just read, to be stored under (seq, key); `since`
    /// is when it was queued. Where dependencies are ignored it is ready.
    pub(super) fn register(
        &mut self,
        task: &AgentTask,
        seq: u64,
        key: usize,
        since: Instant,
    ) -> Registered {
        if !self.on {
            return Registered::Ready(since);
        }
        let mut latest = since;
        let mut left = 0;
        let mut seen: Vec<&TaskId> = Vec::with_capacity(task.depends_on.len());
        for dep in &task.depends_on {
            if seen.contains(&dep) {
                continue;
            }
            seen.push(dep);
            match self.finished.get(dep) {
                Some(Some(at)) => latest = latest.max(*at),
                Some(None) => {
                    // Those already registered wait for a task that is
                    // skipped now; the skip takes them along.
                    return Registered::DependencyFailed(dep.clone());
                }
                None => {
                    left += 1;
                    self.waiters
                        .entry(dep.clone())
                        .or_default()
                        .push((seq, key));
                }
            }
        }
        self.live.insert(task.id.clone(), (seq, key));
        if left == 0 {
            Registered::Ready(latest)
        } else {
            Registered::Blocked(left)
        }
    }

    /// Whether a task names dependencies that this run ignores, the first
    /// time only (the run says so once).
    pub(super) fn warn_ignored(&mut self, task: &AgentTask) -> bool {
        if self.on || self.warned || task.depends_on.is_empty() {
            return false;
        }
        self.warned = true;
        true
    }

    /// A dependency of a task not read yet that did not succeed.
    pub(super) fn failed_dependency(&self, task: &AgentTask) -> Option<TaskId> {
        if !self.on {
            return None;
        }
        task.depends_on
            .iter()
            .find(|d| matches!(self.finished.get(*d), Some(None)))
            .cloned()
    }

    /// Records a task's end: `Some(at)` if it succeeded then. Returns the
    /// tasks that were waiting for it.
    pub(super) fn finished(&mut self, id: &TaskId, at: Option<Instant>) -> Waiters {
        if !self.on {
            return Vec::new();
        }
        self.live.remove(id);
        self.finished.insert(id.clone(), at);
        self.waiters.remove(id).unwrap_or_default()
    }

    /// Forgets a task that ends without an outcome its dependents depend
    /// on (cancelled by a stop).
    pub(super) fn forget(&mut self, id: &TaskId) {
        if self.on {
            self.live.remove(id);
        }
    }

    /// A stop: nobody waits any more.
    pub(super) fn clear_waiters(&mut self) {
        self.waiters.clear();
    }

    /// A dependency that is neither finished nor read: it never will be.
    pub(super) fn unknown_dependency(&self, task: &AgentTask) -> Option<TaskId> {
        task.depends_on
            .iter()
            .find(|d| !self.finished.contains_key(*d) && !self.live.contains_key(*d))
            .cloned()
    }

    /// (seq, key) of a dependency of `task` that was read and has not
    /// finished.
    pub(super) fn unfinished_dependency(&self, task: &AgentTask) -> Option<(u64, usize)> {
        task.depends_on
            .iter()
            .find_map(|d| match self.finished.get(d) {
                Some(_) => None,
                None => self.live.get(d).copied(),
            })
    }
}
