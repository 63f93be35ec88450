//! Helpers shared by the integration tests: an agent running a fixed argv,
//! a one-task run through the engine, and waits on /proc.

#![allow(dead_code, reason = "each test binary uses its own subset")]

use std::ffi::OsString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agent33_parallel::{
    AgentTask, Agents, ExecutionResults, ExecutorBuilder, ParallelExecutor, TaskResult,
};
use agent33_process::{CommandAgent, CommandSpec, ProcessOptions};
use agent33_testkit::{Fixture, MarkerGuard, wait_until_async};

/// Hang detector for anything expected within a second or two.
pub const BUDGET: Duration = Duration::from_secs(30);

pub fn spec(argv: Vec<OsString>) -> CommandSpec {
    CommandSpec {
        argv,
        ..CommandSpec::default()
    }
}

/// An agent that runs the same argv for every attempt.
pub fn agent(argv: Vec<OsString>, options: ProcessOptions) -> CommandAgent {
    CommandAgent::new(
        move |_task: &AgentTask, _attempt: u32| Ok(spec(argv.clone())),
        options,
    )
}

pub fn executor() -> ExecutorBuilder {
    ParallelExecutor::builder().continue_on_error(true)
}

/// A task of agent `fixture` whose id no other test in this process uses
/// (escape sweeps attribute processes by task id).
pub fn unique_task() -> AgentTask {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    AgentTask::new(
        "fixture",
        format!("artifact-{}", NEXT.fetch_add(1, Ordering::Relaxed)),
    )
}

/// Runs one task of agent `fixture` and returns its result.
pub async fn run_one(
    agent: CommandAgent,
    task: AgentTask,
    executor: ExecutorBuilder,
) -> TaskResult {
    let agents = Agents::new().add("fixture", agent);
    let results = executor
        .build()
        .expect("valid settings")
        .run_all(vec![task], &agents)
        .await;
    let mut all: Vec<TaskResult> = results
        .succeeded
        .into_iter()
        .chain(results.failed)
        .chain(results.cancelled)
        .chain(results.skipped)
        .collect();
    assert_eq!(all.len(), 1);
    all.pop().expect("one result")
}

/// Runs `tasks` tasks of agent `fixture` (ids from [`unique_task`]),
/// `limit` at a time, and returns every result.
pub async fn run_many(agent: CommandAgent, tasks: usize, limit: usize) -> ExecutionResults {
    let agents = Agents::new().add("fixture", agent);
    executor()
        .parallel_limit(limit)
        .build()
        .expect("valid settings")
        .run_all((0..tasks).map(|_| unique_task()), &agents)
        .await
}

/// Runs the fixture as a one-task run.
pub async fn run_fixture(fixture: Fixture, executor: ExecutorBuilder) -> TaskResult {
    run_one(
        agent(fixture.argv(), ProcessOptions::default()),
        unique_task(),
        executor,
    )
    .await
}

/// Waits until no live process carries the guard's marker.
pub async fn all_gone(guard: &MarkerGuard) -> bool {
    wait_until_async(BUDGET, || guard.pids().is_empty()).await
}
