//! Command agents: run one process per task attempt, in its own process
//! group, and make sure nothing it started outlives it.
//!
//! (Skeleton: the interface the CLI builds against. See `CommandBuilder`.)

use std::ffi::OsString;
use std::path::PathBuf;

use agent33_parallel::AgentTask;

/// The exact process to start for one attempt of one task.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandSpec {
    /// Program and arguments; never passed through a shell by this crate
    /// (a `shell: true` agent puts `sh -c SCRIPT sh ARTIFACT` here itself).
    pub argv: Vec<OsString>,
    /// Working directory; `None` = inherit.
    pub cwd: Option<PathBuf>,
    /// Extra environment variables, set on top of the inherited ones.
    pub env: Vec<(OsString, OsString)>,
}

/// Turns a task into the process to start. Implemented by the CLI's command
/// templates; errors become a `failed` task ("cannot build command: …").
pub trait CommandBuilder: Send + Sync + 'static {
    /// The process for `attempt` (1, 2, …) of `task`.
    ///
    /// # Errors
    ///
    /// A message saying why no command can be built for this task.
    fn build(&self, task: &AgentTask, attempt: u32) -> Result<CommandSpec, String>;
}
