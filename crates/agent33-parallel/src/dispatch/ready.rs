//! The ready queue and admission: which ready task starts next. Every
//! agent keeps its ready tasks in a heap by input position; the next task
//! is the earliest, over the agents that have room under their own limit,
//! while the run is under its global limit. A task waiting for its agent's
//! room holds no global slot and keeps no other agent's task waiting.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::workers::Inline;
use crate::agent::{AgentSpec, Agents};
use crate::task::AgentName;

/// One agent of the run, as admission sees it.
pub(super) struct AgentSlot {
    pub(super) spec: Option<AgentSpec>,
    limit: usize,
    running: usize,
    /// Ready tasks as (seq, key): the earliest in input order first.
    ready: BinaryHeap<Reverse<(u64, usize)>>,
    /// Whether the dispatcher gives this agent's attempts their first poll
    /// itself (see `Inline`).
    pub(super) inline: Inline,
}

impl AgentSlot {
    fn has_room(&self) -> bool {
        self.running < self.limit
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
        self.agents.push(AgentSlot {
            spec,
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
    }

    /// The ready task to start next, if the limits admit one: the earliest
    /// in input order among those whose agent has room.
    pub(super) fn pick(&self) -> Option<(u64, usize)> {
        if !self.has_room() {
            return None;
        }
        self.agents
            .iter()
            .filter(|a| a.has_room())
            .filter_map(|a| a.ready.peek().map(|Reverse(ready)| *ready))
            .min()
    }

    /// Starts the task `pick` gave, of `agent`: it leaves the ready queue
    /// and takes its room under the limits.
    pub(super) fn admit(&mut self, agent: usize, seq: u64, key: usize) {
        let slot = &mut self.agents[agent];
        let popped = slot.ready.pop();
        debug_assert_eq!(popped, Some(Reverse((seq, key))));
        slot.running += 1;
        self.running += 1;
    }

    /// An attempt of `agent` ended: its room is free again.
    pub(super) fn release(&mut self, agent: usize) {
        self.agents[agent].running -= 1;
        self.running -= 1;
    }

    /// A stop: nothing ready starts any more.
    pub(super) fn clear_ready(&mut self) {
        for agent in &mut self.agents {
            agent.ready.clear();
        }
    }
}
