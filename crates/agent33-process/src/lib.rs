//! Command agents: run one process per task attempt, in its own process
//! group, and make sure nothing it started outlives it.
//!
//! - [`CommandAgent`] implements the engine's [`Agent`](agent33_parallel::Agent)
//!   trait for any [`CommandBuilder`]: it spawns the [`CommandSpec`] (never
//!   through a shell), forwards its output to the engine as it arrives,
//!   answers cancellation with SIGTERM to the group and, when dropped, SIGKILL;
//!   it ends the task when the main process exits, killing what the main
//!   process left in its group.
//! - [`become_subreaper`], [`Reaper`], [`reap_orphans`] and
//!   [`kill_all_descendants`] deal with processes that leave the group
//!   (`setsid`, double fork) on Linux: they are reparented to us, killed at
//!   the end of their task (reported as "N escaped processes killed") and,
//!   at the latest, when the program exits.
//!
//! The crate knows nothing of manifests or terminals. Its [`template`]
//! module is the one implementation of command templates (placeholders,
//! the shell rules, the injection guard), shared by the CLI and the Python
//! package; it builds a [`CommandBuilder`]. It is Unix-only; the escape
//! handling needs Linux.
//!
//! # Wiring it into a program
//!
//! 1. First thing, before any task starts: [`become_subreaper`] (a failure
//!    only means escapes cannot be caught; the process group still works).
//! 2. In the runtime: keep a [`Reaper`] for the whole run, so orphans that
//!    exit on their own do not pile up as zombies.
//! 3. One [`CommandAgent`] per agent, registered with the engine like any
//!    other agent.
//! 4. On every way out (normal end, interrupt, error):
//!    [`kill_all_descendants`], so no process the program started outlives
//!    it.
//!
//! After step 1, start child processes only through [`CommandAgent`]: the
//! reaper collects any zombie child it does not know as a task leader.
//! A program whose other code starts and waits for children of its own
//! (the Python package) calls [`become_guest_subreaper`] instead, keeps no
//! [`Reaper`] and does not call [`kill_all_descendants`]: escapees are still
//! killed at the end of their task, and only they are reaped.
//!
//! # Output
//!
//! Output is forwarded to the engine as it is read (64 KiB at a time), never
//! returned in [`AgentOutput`](agent33_parallel::AgentOutput), whose
//! `stdout`/`stderr` stay empty; memory per task is two 64 KiB buffers
//! whatever the process writes.

mod agent;
mod group;
mod guard;
mod output;
mod program;
mod reaper;
mod spawn;
pub mod template;
#[cfg(own_clone)]
mod vfork;

use std::ffi::OsString;
use std::path::PathBuf;

use agent33_parallel::{AgentTask, TaskContext};

pub use agent::{CommandAgent, ProcessOptions};
pub use guard::{disarm_guard, guard_main, run_id, start_guard};
pub use output::output_file_stem;
pub use reaper::{
    Reaper, become_guest_subreaper, become_subreaper, is_subreaper, kill_all_descendants,
    reap_orphans,
};
pub use spawn::{AGENT_VAR, ARTIFACT_VAR, ATTEMPT_VAR, RUN_VAR, TASK_ID_VAR, ignored_signals};

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

    /// The process for the attempt `ctx` is about: [`Self::build`] unless
    /// the builder needs more of the attempt than its task and number
    /// (the CLI's `{#}` and `{%}`: the task's input position, the slot).
    ///
    /// # Errors
    ///
    /// As [`Self::build`].
    fn build_for(&self, ctx: &TaskContext) -> Result<CommandSpec, String> {
        self.build(ctx.task(), ctx.attempt())
    }
}

/// Closures build commands too: `|task, attempt| Ok(CommandSpec { … })`.
impl<F> CommandBuilder for F
where
    F: Fn(&AgentTask, u32) -> Result<CommandSpec, String> + Send + Sync + 'static,
{
    fn build(&self, task: &AgentTask, attempt: u32) -> Result<CommandSpec, String> {
        self(task, attempt)
    }
}
