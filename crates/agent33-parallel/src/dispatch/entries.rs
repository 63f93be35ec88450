//! The tasks read and not finished: each one's state between reading and
//! its result, under small reusable keys.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::attempt::Attempt;
use crate::result::Timestamp;
use crate::task::AgentTask;

#[derive(Debug)]
pub(super) enum State {
    /// Waiting for dependencies.
    Blocked,
    /// In its agent's ready queue.
    Ready,
    Running,
    /// Waiting out a retry backoff.
    Backoff,
}

pub(super) struct Entry {
    pub(super) seq: u64,
    pub(super) task: Arc<AgentTask>,
    pub(super) agent: usize,
    pub(super) state: State,
    pub(super) deps_left: usize,
    /// Executions started, lost ones included.
    pub(super) attempts: u32,
    /// Executions lost in a row since the last one that counted.
    pub(super) lost_in_row: u32,
    /// Lost executions that were run again without using a retry.
    pub(super) reruns: u32,
    /// Times an attempt was refused before doing any work.
    pub(super) deferrals: u32,
    /// When the last attempt was refused before doing any work, until the
    /// next one starts (for the agent's own wait figures).
    pub(super) deferred_at: Option<Instant>,
    /// When the task last became ready (for queue-wait figures).
    pub(super) ready_since: Option<Instant>,
    pub(super) first_start: Option<(Instant, Timestamp)>,
    /// The outcome of the last attempt, kept while a retry is pending.
    pub(super) last: Option<Box<Attempt>>,
    /// The attempt in flight.
    pub(super) run: Option<InFlight>,
    pub(super) retries: u32,
    pub(super) timeout: Option<Duration>,
}

/// What the dispatcher keeps of a running attempt.
pub(super) struct InFlight {
    pub(super) slot: usize,
    pub(super) started: Instant,
    /// It passed its timeout and was told to stop.
    pub(super) timed_out: bool,
}

/// The entries of tasks read and not finished, under keys that are reused
/// once their task finishes: an index instead of a hash on the hot path.
/// Lookups name the task's `seq` too, so a stale key finds nothing.
#[derive(Default)]
pub(super) struct Entries {
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    len: usize,
}

impl Entries {
    /// The key the next insert takes.
    pub(super) fn next_key(&self) -> usize {
        self.free.last().copied().unwrap_or(self.slots.len())
    }

    pub(super) fn insert(&mut self, entry: Entry) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(key) => {
                self.slots[key] = Some(entry);
                key
            }
            None => {
                self.slots.push(Some(entry));
                self.slots.len() - 1
            }
        }
    }

    pub(super) fn get(&self, key: usize, seq: u64) -> Option<&Entry> {
        self.slots.get(key)?.as_ref().filter(|e| e.seq == seq)
    }

    pub(super) fn get_mut(&mut self, key: usize, seq: u64) -> Option<&mut Entry> {
        self.slots.get_mut(key)?.as_mut().filter(|e| e.seq == seq)
    }

    /// The entry under a key known to be live, such as a running task's.
    pub(super) fn slot_mut(&mut self, key: usize) -> Option<&mut Entry> {
        self.slots.get_mut(key)?.as_mut()
    }

    pub(super) fn remove(&mut self, key: usize, seq: u64) -> Option<Entry> {
        self.get(key, seq)?;
        self.len -= 1;
        self.free.push(key);
        self.slots[key].take()
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// (seq, key) of the entries that pass `keep`, in input order.
    pub(super) fn in_order(&self, keep: impl Fn(&Entry) -> bool) -> Vec<(u64, usize)> {
        let mut found: Vec<(u64, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(key, e)| e.as_ref().filter(|e| keep(e)).map(|e| (e.seq, key)))
            .collect();
        found.sort_unstable();
        found
    }
}
