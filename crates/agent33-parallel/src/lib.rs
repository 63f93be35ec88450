//! Parallel execution control for AGENT-33.
//!
//! Runs agent tasks (one agent on one artifact) behind a semaphore gate with
//! per-task timeouts, fail-fast cancellation or continue-on-error, retries
//! with backoff, dependency order and per-agent limits, and aggregates the
//! results with the AGENT-33 metrics catalog.
//!
//! The engine knows nothing about terminals, files, argv, environment
//! variables or processes: it takes tasks, agents, [`Settings`] and a
//! [`RunControl`], emits an ordered stream of [`Event`]s and returns
//! [`ExecutionResults`]. Reporters and the CLI live in other crates.
//!
//! ```
//! use std::time::Duration;
//! use agent33_parallel::{AgentError, AgentTask, Agents, ParallelExecutor, TaskContext};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let agents = Agents::new().add("lint", |ctx: TaskContext| async move {
//!     if ctx.task().artifact.ends_with(".md") {
//!         Ok(())
//!     } else {
//!         Err(AgentError::new("not markdown"))
//!     }
//! });
//! let executor = ParallelExecutor::builder()
//!     .parallel_limit(2)
//!     .timeout(Duration::from_secs(5))
//!     .continue_on_error(true)
//!     .build()
//!     .expect("valid settings");
//! let results = executor
//!     .run_all(vec![AgentTask::new("lint", "a.md"), AgentTask::new("lint", "b.txt")], &agents)
//!     .await;
//! assert_eq!((results.succeeded.len(), results.failed.len()), (1, 1));
//! assert_eq!(results.failed[0].error.as_deref(), Some("not markdown"));
//! # });
//! ```

mod agent;
mod capture;
mod dispatch;
mod event;
mod executor;
mod metrics;
pub mod plan;
mod result;
mod task;

pub use agent::{Agent, AgentError, AgentOutput, AgentResult, AgentSpec, Agents, TaskContext};
pub use capture::{Stream, TailBuffer};
pub use event::{Event, Interrupt, StopReason};
pub use executor::{
    EventStream, ExecutorBuilder, ParallelExecutor, Resume, RunControl, Settings, SettingsError,
};
pub use metrics::{Metrics, Timer, TimerSummary};
pub use result::{ExecutionResults, ResultsCollector, TaskResult, TaskStatus, Timestamp};
pub use task::{AgentName, AgentTask, TaskId};
