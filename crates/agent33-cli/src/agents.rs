//! One agent as a run uses it: its command template and its own limits,
//! whether it came from the manifest's `agents:` or is the ad-hoc agent
//! of `--command`.

use std::time::Duration;

use agent33_parallel::{Agent, AgentName, AgentSpec};

use crate::template::TaskCommand;

/// One agent as the run will use it: its command and its own limits.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentDef {
    /// The agent's name (`command` for the ad-hoc agent).
    pub name: AgentName,
    /// What it runs for a task; implements
    /// [`agent33_process::CommandBuilder`].
    pub command: TaskCommand,
    /// Its own cap on running tasks, under the global limit.
    pub parallel_limit: Option<usize>,
    /// Its own task timeout (`Duration::ZERO` = none).
    pub timeout: Option<Duration>,
    /// Its own retry count.
    pub retries: Option<u32>,
}

impl AgentDef {
    /// Wraps `agent` (the process crate's command agent built from
    /// [`Self::command`]) with this agent's own limits.
    pub fn spec(&self, agent: impl Agent) -> AgentSpec {
        let mut spec = AgentSpec::new(agent);
        if let Some(limit) = self.parallel_limit {
            spec = spec.parallel_limit(limit);
        }
        if let Some(timeout) = self.timeout {
            spec = spec.timeout(timeout);
        }
        if let Some(retries) = self.retries {
            spec = spec.retries(retries);
        }
        spec
    }
}
