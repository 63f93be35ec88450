//! Parallel execution control for AGENT-33.
//!
//! Runs agent tasks (one agent on one artifact) behind a semaphore gate with
//! per-task timeouts, fail-fast cancellation or continue-on-error, retries
//! with backoff, dependency order, per-agent limits and limits shared by
//! several agents that change while the run goes on ([`SharedLimit`]), and
//! aggregates the results with the AGENT-33 metrics catalog.
//!
//! The engine knows nothing about terminals, files, argv, environment
//! variables or processes: it takes tasks, agents, [`Settings`] and a
//! [`RunControl`], emits an ordered stream of [`Event`]s and returns
//! [`ExecutionResults`]. Reporters and the CLI live in other crates.
//!
//! # Quick example
//!
//! An [`Agents`] registry names each agent; a closure of the task's
//! [`TaskContext`] is an agent. The default multi-thread runtime of
//! `#[tokio::main]` is the fast path, nothing to tune:
//!
//! ```
//! use std::time::Duration;
//! use agent33_parallel::{AgentError, AgentTask, Agents, ParallelExecutor, TaskContext};
//!
//! async fn check(task: &AgentTask) -> Result<String, AgentError> {
//!     if task.artifact.ends_with(".md") {
//!         Ok(format!("{} is valid", task.artifact))
//!     } else {
//!         Err(AgentError::new("not markdown"))
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let agents = Agents::new()
//!         .add("refinement", |ctx: TaskContext| async move { Ok::<_, AgentError>(format!("refined {}", ctx.task().artifact)) })
//!         .add("validation", |ctx: TaskContext| async move { check(ctx.task()).await });
//!
//!     let executor = ParallelExecutor::builder()
//!         .parallel_limit(4)
//!         .timeout(Duration::from_secs(300))
//!         .continue_on_error(true)
//!         .build()?;
//!
//!     let results = executor.run_all(vec![
//!         AgentTask::new("refinement", "core/prompts/SYSTEM.md"),
//!         AgentTask::new("validation", "core/agents/worker.md"),
//!         AgentTask::new("refinement", "core/templates/README.md"),
//!     ], &agents).await;
//!
//!     println!("Completed: {}/{}", results.succeeded.len(), results.total);
//!     if !results.failed.is_empty() {
//!         println!("Failed: {:?}", results.failed.iter().map(|f| &f.task.artifact).collect::<Vec<_>>());
//!     }
//!     assert_eq!(results.succeeded.len(), 3);
//!     Ok(())
//! }
//! ```
//!
//! # Stopping in time
//!
//! At a task's timeout, at fail-fast, at the run deadline or on an
//! interrupt, the task's token ([`TaskContext::token`], a
//! [`CancellationToken`]) is cancelled. An agent gets
//! [`TaskContext::grace`] (the `kill_grace`, 5 s by default) to return;
//! then its future is dropped at its next await point. An agent that never
//! looks at its token therefore overruns every stop by the whole grace, and
//! one that blocks its thread cannot be stopped at all. Await the token
//! beside the work:
//!
//! ```
//! # use agent33_parallel::{AgentError, TaskContext};
//! # async fn call_the_model(_: &str) -> String { String::new() }
//! let agent = |ctx: TaskContext| async move {
//!     tokio::select! {
//!         answer = call_the_model(&ctx.task().artifact) => Ok(answer),
//!         () = ctx.token().cancelled() => Err(AgentError::new("stopped")),
//!     }
//! };
//! # let _ = agents_use(agent);
//! # fn agents_use(a: impl agent33_parallel::Agent) -> agent33_parallel::Agents { agent33_parallel::Agents::new().add("a", a) }
//! ```
//!
//! Whatever the agent returns once it was told to stop, the task is
//! `cancelled` (or `timeout`): the stop came first.
//!
//! # Streams of tasks and events
//!
//! [`ParallelExecutor::run`] and [`ParallelExecutor::run_stream`] return
//! the run's [`EventStream`]. It applies backpressure: a consumer slower
//! than the run slows the run, so memory never grows with unread events.
//! `run_stream` takes any [`stream::Stream`] of tasks (see [`stream`] for
//! ways to make one, no `futures` dependency needed) and reads it only as
//! slots free up.
//!
//! # Agents that run attempts elsewhere
//!
//! An agent that hands its attempts to another machine (a queue of remote
//! workers) tells the engine what it learns there, and the engine's
//! decisions stay the same: [`TaskContext::report_queued`] and
//! [`TaskContext::report_start`] (the timeout counts from the real start,
//! which results and reports show), [`TaskContext::report_worker`] (the
//! result's `worker`), [`TaskContext::report_output`] (the output that came
//! back replaces what was captured here), and the reasons
//! [`Reason::Timeout`] (a timeout enforced there, worded as the engine's)
//! and [`Reason::ExecutionLost`] (run again without using a retry; a third
//! loss in a row fails the attempt) given with [`AgentError::because`].

/// The README's library example is compiled and run with the doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
mod readme {}

mod agent;
mod capture;
mod collect;
mod control;
mod dispatch;
mod event;
mod executor;
mod limit;
mod metrics;
pub mod plan;
mod result;
mod settings;
mod stop;
mod task;

pub use agent::{Agent, AgentError, AgentOutput, AgentResult, AgentSpec, Agents, TaskContext};
pub use capture::TailBuffer;
pub use collect::ResultsCollector;
pub use control::{Resume, RunControl};
pub use event::{Event, Stream};
pub use executor::{EventStream, ExecutorBuilder, ParallelExecutor};
pub use limit::SharedLimit;
pub use metrics::{Metrics, Timer, TimerSummary};
pub use result::{ExecutionResults, Reason, RunTotals, TaskResult, TaskStatus, Timestamp, Usage};
pub use settings::{Settings, SettingsError};
pub use stop::{Interrupt, StopReason};
pub use task::{AgentName, AgentTask, TaskId};

/// The future an [`Agent`] returns.
pub use futures::future::BoxFuture;
/// Streams of tasks for [`ParallelExecutor::run_stream`]: `stream::iter`,
/// `stream::unfold` (from a channel), and the `Stream` trait itself.
pub use futures::stream;
/// The token of [`TaskContext::token`].
pub use tokio_util::sync::CancellationToken;
