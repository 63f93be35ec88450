//! One agent as a run uses it: its command template and its own limits,
//! whether it came from the manifest's `agents:` or is the ad-hoc agent
//! of `--command`; or an LLM agent (`llm:`) with its provider.

use std::path::PathBuf;
use std::time::Duration;

use agent33_llm::ApiKey;
use agent33_llm::manifest::{LlmBlock, ProviderConfig};
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
        own_limits(
            AgentSpec::new(agent),
            self.parallel_limit,
            self.timeout,
            self.retries,
        )
    }
}

/// An agent with an `llm:` block: what it asks of which provider.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmAgentDef {
    /// The agent's name.
    pub name: AgentName,
    /// The name of its entry in `providers:`.
    pub provider: String,
    /// That entry.
    pub config: ProviderConfig,
    /// The agent's `llm:` block.
    pub block: LlmBlock,
    /// The provider's key, read from its `api_key_env` variable.
    pub key: Option<ApiKey>,
    /// The folder artifacts and `output:` paths are relative to.
    pub base_dir: PathBuf,
    /// Its own cap on running tasks, under the global limit.
    pub parallel_limit: Option<usize>,
    /// Its own task timeout (`Duration::ZERO` = none).
    pub timeout: Option<Duration>,
    /// Its own retry count.
    pub retries: Option<u32>,
}

impl LlmAgentDef {
    /// The limiter this agent shares with others of the same provider,
    /// model and key (or `limit_key`).
    #[must_use]
    pub fn limit_key(&self) -> String {
        self.config.limit_key(self.key.as_ref(), &self.block.model)
    }

    /// The model's price, when the provider lists one.
    #[must_use]
    pub fn price(&self) -> Option<agent33_llm::Price> {
        self.config.prices.get(&self.block.model).copied()
    }

    /// Applies this agent's own limits to `spec` (an
    /// [`agent33_llm::LlmAgent::spec`], which carries the provider's limit).
    #[must_use]
    pub fn with_limits(&self, spec: AgentSpec) -> AgentSpec {
        own_limits(spec, self.parallel_limit, self.timeout, self.retries)
    }
}

fn own_limits(
    mut spec: AgentSpec,
    parallel_limit: Option<usize>,
    timeout: Option<Duration>,
    retries: Option<u32>,
) -> AgentSpec {
    if let Some(limit) = parallel_limit {
        spec = spec.parallel_limit(limit);
    }
    if let Some(timeout) = timeout {
        spec = spec.timeout(timeout);
    }
    if let Some(retries) = retries {
        spec = spec.retries(retries);
    }
    spec
}
