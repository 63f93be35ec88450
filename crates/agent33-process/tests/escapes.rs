//! Processes that leave their task's process group, and the clean-up that
//! changes the whole process: the subreaper, escape sweeps, orphan reaping
//! and `kill_all_descendants`.
//!
//! These tests make the test process a subreaper and may kill all of its
//! descendants, so they take a lock and run one at a time when a test
//! harness runs them as threads of one process (`cargo test`); nextest runs
//! each in a process of its own anyway.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use agent33_parallel::{Agents, RunControl, TaskStatus};
use agent33_process::{
    ProcessOptions, Reaper, become_subreaper, kill_all_descendants, reap_orphans,
};
use agent33_testkit::{Fixture, MarkerGuard, parent_pid, proc_state, wait_until_async};
use common::{BUDGET, agent, all_gone, executor, run_fixture, unique_task};

/// Serialises the tests of this binary (see the module docs). An async
/// lock, since each test holds it across its awaits; it works across the
/// tests' separate runtimes.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// Starts a daemonizing fixture outside any task and returns the pid of its
/// escapee once that is our child (the middle process has exited). The
/// fixture's own exit status is not needed: a reaper running in this
/// process may legitimately collect it first.
async fn orphan_escapee(guard: &MarkerGuard) -> u32 {
    let mut child = Fixture::new()
        .quiet()
        .marker(guard.marker())
        .daemonize()
        .command()
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let me = std::process::id();
    let mut escapee = None;
    let found = wait_until_async(BUDGET, || {
        escapee = guard
            .pids()
            .into_iter()
            .find(|&pid| parent_pid(pid) == Some(me) && pid != child.id());
        escapee.is_some()
    })
    .await;
    let _ = child.wait();
    assert!(found, "no escapee among {:?}", guard.pids());
    escapee.expect("found")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escaped_daemon_is_killed_and_reported() {
    let _serial = serial().await;
    become_subreaper().expect("prctl");
    let guard = MarkerGuard::new("escapee");
    let result = run_fixture(
        Fixture::new().marker(guard.marker()).daemonize(),
        executor(),
    )
    .await;
    assert_eq!(result.status, TaskStatus::Success, "{result:?}");
    assert!(result.output.contains("daemon spawned"));
    assert_eq!(result.notes, vec!["1 escaped process killed".to_owned()]);
    // Killed and reaped before the task ended.
    assert!(guard.pids().is_empty(), "survivors: {:?}", guard.pids());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escapee_holding_stdout_does_not_keep_the_task_open() {
    let _serial = serial().await;
    become_subreaper().expect("prctl");
    let guard = MarkerGuard::new("escapee-stdout");
    let start = Instant::now();
    let result = run_fixture(
        Fixture::new()
            .marker(guard.marker())
            .daemonize_keeping_stdout(),
        executor(),
    )
    .await;
    assert_eq!(result.status, TaskStatus::Success, "{result:?}");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(result.notes, vec!["1 escaped process killed".to_owned()]);
    assert!(guard.pids().is_empty(), "survivors: {:?}", guard.pids());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escapee_of_a_timed_out_task_is_killed_after_the_drop() {
    let _serial = serial().await;
    become_subreaper().expect("prctl");
    let guard = MarkerGuard::new("escapee-timeout");
    let fixture = Fixture::new()
        .marker(guard.marker())
        .ignore_term()
        .daemonize()
        .spawn_grandchild()
        .sleep(3600.0);
    let result = run_fixture(
        fixture,
        executor()
            .timeout(Duration::from_millis(300))
            .kill_grace(Duration::from_millis(100)),
    )
    .await;
    assert_eq!(result.status, TaskStatus::Timeout);
    assert!(
        result.output.contains("daemon spawned"),
        "{}",
        result.output
    );
    assert!(all_gone(&guard).await, "survivors: {:?}", guard.pids());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_all_descendants_leaves_nothing_behind() {
    let _serial = serial().await;
    become_subreaper().expect("prctl");
    let guard = MarkerGuard::new("everything");
    let argv = Fixture::new()
        .marker(guard.marker())
        .ignore_term()
        .spawn_grandchild()
        .daemonize()
        .sleep(3600.0)
        .argv();
    let agents = Agents::new().add("fixture", agent(argv, ProcessOptions::default()));
    let executor = executor().build().expect("valid settings");
    let events = executor.run(vec![unique_task()], &agents, RunControl::new());
    // Leader, grandchild and escapee all run.
    assert!(wait_until_async(BUDGET, || guard.pids().len() == 3).await);
    let killed = tokio::task::spawn_blocking(|| kill_all_descendants(Duration::from_secs(10)))
        .await
        .expect("no panic");
    assert!(killed >= 3, "{killed}");
    assert!(guard.pids().is_empty(), "survivors: {:?}", guard.pids());
    // The task saw its leader die.
    let results = events.collect_results().await;
    assert_eq!(results.failed.len(), 1);
    assert_eq!(
        results.failed[0].error.as_deref(),
        Some("killed by SIGKILL")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphaned_zombies_are_reaped() {
    let _serial = serial().await;
    become_subreaper().expect("prctl");
    let guard = MarkerGuard::new("zombie");
    let pid = orphan_escapee(&guard).await;
    agent33_testkit::kill_by_marker(guard.marker());
    assert!(wait_until_async(BUDGET, || proc_state(pid) == Some('Z')).await);
    assert!(reap_orphans() >= 1);
    assert_eq!(proc_state(pid), None, "reaped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_reaper_reaps_orphaned_zombies() {
    let _serial = serial().await;
    become_subreaper().expect("prctl");
    let guard = MarkerGuard::new("zombie-bg");
    let pid = orphan_escapee(&guard).await;
    let _reaper = Reaper::start(Duration::from_millis(20));
    agent33_testkit::kill_by_marker(guard.marker());
    assert!(wait_until_async(BUDGET, || proc_state(pid).is_none()).await);
}
