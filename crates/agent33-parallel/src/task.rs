//! What a task is: one agent applied to one artifact, with an id others can
//! depend on. Tasks are plain serialisable data; how a task runs is the
//! agent's business (see [`crate::agent`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            /// The name as a string slice.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(Arc::from(s))
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(Arc::from(s))
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl $name {
            /// Whether both are the same shared string (cheap) or equal.
            #[must_use]
            pub fn same(&self, other: &Self) -> bool {
                Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }
    };
}

name_type!(
    /// A task's unique id: `agent:artifact` unless given explicitly.
    TaskId
);
name_type!(
    /// The name of an agent, as registered in [`crate::Agents`].
    AgentName
);

/// One agent applied to one artifact.
///
/// # Examples
///
/// ```
/// use agent33_parallel::AgentTask;
/// let task = AgentTask::new("validation", "core/agents/worker.md")
///     .depends_on(["refinement:core/prompts/SYSTEM.md"]);
/// assert_eq!(task.id, "validation:core/agents/worker.md");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentTask {
    /// Unique id; other tasks name it in `depends_on`.
    pub id: TaskId,
    /// The agent that runs this task.
    pub agent: AgentName,
    /// What the agent works on, passed as written.
    pub artifact: String,
    /// Ids of tasks that must succeed before this one starts (where
    /// dependencies are respected).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<TaskId>,
    /// This task's own timeout; beats its agent's and the global one.
    /// `Some(Duration::ZERO)` means no timeout.
    #[serde(default, skip)]
    pub timeout: Option<Duration>,
    /// This task's own retry count; beats its agent's and the global one.
    #[serde(default, skip)]
    pub retries: Option<u32>,
    /// The artifact's exact bytes when they are not valid UTF-8 (`artifact`
    /// then holds a lossy rendering). Agents that pass the artifact on, such
    /// as a command's argument, should use [`AgentTask::artifact_bytes`].
    #[serde(default, skip)]
    pub raw_artifact: Option<Arc<[u8]>>,
    /// Executions of this task that happened before this run (on another
    /// machine): its first attempt here is numbered one more, and its
    /// result's `attempts` counts them; they use none of its retries.
    #[serde(default, skip)]
    pub executions_before: u32,
}

impl AgentTask {
    /// A task for `agent` on `artifact`, with the id `agent:artifact`.
    #[must_use]
    pub fn new(agent: impl Into<AgentName>, artifact: impl Into<String>) -> Self {
        let agent = agent.into();
        let artifact = artifact.into();
        let mut id = String::with_capacity(agent.as_str().len() + 1 + artifact.len());
        id.push_str(agent.as_str());
        id.push(':');
        id.push_str(&artifact);
        let id = TaskId::from(id.as_str());
        Self {
            id,
            agent,
            artifact,
            depends_on: Vec::new(),
            timeout: None,
            retries: None,
            raw_artifact: None,
            executions_before: 0,
        }
    }

    /// A task whose artifact is arbitrary bytes (a file name read from a
    /// list, say). The id and `artifact` use a lossy UTF-8 rendering; the
    /// exact bytes stay available through [`AgentTask::artifact_bytes`].
    #[must_use]
    pub fn from_bytes(agent: impl Into<AgentName>, artifact: &[u8]) -> Self {
        match std::str::from_utf8(artifact) {
            Ok(s) => Self::new(agent, s),
            Err(_) => {
                let mut task = Self::new(agent, String::from_utf8_lossy(artifact).into_owned());
                task.raw_artifact = Some(Arc::from(artifact));
                task
            }
        }
    }

    /// The artifact's exact bytes.
    #[must_use]
    pub fn artifact_bytes(&self) -> &[u8] {
        self.raw_artifact
            .as_deref()
            .unwrap_or(self.artifact.as_bytes())
    }

    /// Replaces the task's id.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<TaskId>) -> Self {
        self.id = id.into();
        self
    }

    /// Adds dependencies by id.
    #[must_use]
    pub fn depends_on<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<TaskId>,
    {
        self.depends_on.extend(ids.into_iter().map(Into::into));
        self
    }

    /// Sets this task's own timeout (`Duration::ZERO` = none).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets this task's own retry count.
    #[must_use]
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = Some(retries);
        self
    }

    /// Says the task already ran `n` times elsewhere: a worker running the
    /// execution a coordinator numbered `n + 1` (see
    /// [`AgentTask::executions_before`]).
    #[must_use]
    pub fn after_executions(mut self, n: u32) -> Self {
        self.executions_before = n;
        self
    }
}
