//! The ready queue and admission: which ready task starts next. Every
//! agent keeps its ready tasks in a heap by input position; the next task
//! is the earliest, over the agents that have room under their own limit
//! and their gate (a [`Gate`]: a shared limit that may shrink or pause),
//! while the run is under its global limit. A task waiting for its agent's
//! room holds no global slot and keeps no other agent's task waiting.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::workers::Inline;
use crate::agent::{AgentSpec, Agents};
use crate::limit::Gate;
use crate::task::AgentName;

/// One agent of the run, as admission sees it.
pub(super) struct AgentSlot {
    pub(super) spec: Option<AgentSpec>,
    limit: usize,
    running: usize,
    /// A limit beyond this agent's own, shared with others.
    gate: Option<Arc<dyn Gate>>,
    /// Ready tasks as (seq, key): the earliest in input order first.
    ready: BinaryHeap<Reverse<(u64, usize)>>,
    /// Whether the dispatcher gives this agent's attempts their first poll
    /// itself (see `Inline`).
    pub(super) inline: Inline,
}

impl AgentSlot {
    fn has_room(&self, now: Instant) -> bool {
        self.running < self.limit && self.gate.as_ref().is_none_or(|g| g.admits(now))
    }
}

pub(super) struct Admission {
    /// The global limit.
    limit: usize,
    /// Attempts in flight, of every agent.
    running: usize,
    agents: Vec<AgentSlot>,
    index: HashMap<AgentName, usize>,
    last: Option<(AgentName, usize)>,
    registry: Agents,
    /// Ready tasks, of every agent.
    ready: usize,
    /// Whether an agent of the run has a gate.
    gated: bool,
    /// Notified by the gates whenever room may have appeared.
    wake: Arc<Notify>,
}

impl Admission {
    pub(super) fn new(limit: usize, registry: Agents) -> Self {
        Self {
            limit,
            running: 0,
            agents: Vec::new(),
            index: HashMap::new(),
            last: None,
            registry,
            ready: 0,
            gated: false,
            wake: Arc::new(Notify::new()),
        }
    }

    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    pub(super) fn running(&self) -> usize {
        self.running
    }

    /// Whether the global limit has room.
    pub(super) fn has_room(&self) -> bool {
        self.running < self.limit
    }

    /// Whether an agent of the run has a gate, whose checks need the time.
    pub(super) fn has_gates(&self) -> bool {
        self.gated
    }

    /// Whether a task is ready, admitted or not.
    pub(super) fn has_ready(&self) -> bool {
        self.ready > 0
    }

    /// Whether a gate may open without the run doing anything: the loop
    /// then waits for [`Admission::changed`] and [`Admission::next_resume`].
    pub(super) fn gated(&self) -> bool {
        self.gated && self.ready > 0
    }

    /// Ready when a gate changed (its limit, its pause, room another run
    /// gave back).
    pub(super) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
    }

    /// When the earliest pause that holds a ready task ends.
    pub(super) fn next_resume(&self, now: Instant) -> Option<Instant> {
        self.agents
            .iter()
            .filter(|a| !a.ready.is_empty())
            .filter_map(|a| a.gate.as_ref()?.resumes_at(now))
            .min()
    }

    pub(super) fn agent(&self, agent: usize) -> &AgentSlot {
        &self.agents[agent]
    }

    pub(super) fn agent_mut(&mut self, agent: usize) -> &mut AgentSlot {
        &mut self.agents[agent]
    }

    /// The index of the agent a task names, looked up once per name.
    pub(super) fn agent_of(&mut self, name: &AgentName) -> usize {
        // Runs of tasks for one agent are the common case: skip the hash.
        if let Some((last, i)) = &self.last {
            if last.same(name) {
                return *i;
            }
        }
        if let Some(&i) = self.index.get(name) {
            self.last = Some((name.clone(), i));
            return i;
        }
        let spec = self.registry.get(name.as_str()).cloned();
        let limit = spec
            .as_ref()
            .and_then(|s| s.parallel_limit)
            .unwrap_or(usize::MAX);
        let gate = spec.as_ref().and_then(|s| s.shared_limit.clone()).map(|l| {
            let gate: Arc<dyn Gate> = Arc::new(l);
            gate.subscribe(&self.wake);
            gate
        });
        self.gated |= gate.is_some();
        self.agents.push(AgentSlot {
            spec,
            gate,
            limit,
            running: 0,
            ready: BinaryHeap::new(),
            inline: Inline::new(),
        });
        let i = self.agents.len() - 1;
        self.index.insert(name.clone(), i);
        self.last = Some((name.clone(), i));
        i
    }

    /// A task of `agent` became ready.
    pub(super) fn push_ready(&mut self, agent: usize, seq: u64, key: usize) {
        self.agents[agent].ready.push(Reverse((seq, key)));
        self.ready += 1;
    }

    /// The decision to admit: the ready task to start next at `now`, if
    /// the limits admit one (the earliest in input order among those whose
    /// agent has room), as (seq, key, agent). It has left the ready queue
    /// and taken its room under every limit.
    pub(super) fn admit(&mut self, now: Instant) -> Option<(u64, usize, usize)> {
        loop {
            if !self.has_room() {
                return None;
            }
            let (seq, key, agent) = self
                .agents
                .iter()
                .enumerate()
                .filter(|(_, a)| a.has_room(now))
                .filter_map(|(i, a)| a.ready.peek().map(|Reverse((seq, key))| (*seq, *key, i)))
                .min()?;
            let slot = &mut self.agents[agent];
            // Another run sharing the gate may have taken the room since
            // it was looked at: then look again.
            if slot.gate.as_ref().is_some_and(|g| !g.try_acquire(now)) {
                continue;
            }
            slot.ready.pop();
            slot.running += 1;
            self.running += 1;
            self.ready -= 1;
            return Some((seq, key, agent));
        }
    }

    /// An attempt of `agent` ended: its room is free again.
    pub(super) fn release(&mut self, agent: usize) {
        let slot = &mut self.agents[agent];
        slot.running -= 1;
        if let Some(gate) = &slot.gate {
            gate.release(&self.wake);
        }
        self.running -= 1;
    }

    /// A stop: nothing ready starts any more.
    pub(super) fn clear_ready(&mut self) {
        for agent in &mut self.agents {
            agent.ready.clear();
        }
        self.ready = 0;
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        // A run dropped while attempts run gives their room back: other
        // runs may share the gates.
        for slot in &self.agents {
            if let Some(gate) = &slot.gate {
                for _ in 0..slot.running {
                    gate.release(&self.wake);
                }
            }
        }
    }
}
