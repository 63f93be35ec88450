//! Typed facts in events and results, and the facts an agent that runs its
//! attempts elsewhere (a remote worker) reports: a timeout it enforced, the
//! real start, a lost execution, an authoritative output, the worker. All
//! under tokio's paused clock, so every time is exact.

use std::time::{Duration, SystemTime};

use agent33_parallel::{
    AgentError, AgentTask, Agents, Event, ExecutionResults, ParallelExecutor, Reason, RunControl,
    StopReason, TaskContext, TaskStatus, Timestamp,
};
use futures::StreamExt;
use tokio::time::{Instant, sleep};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Runs `tasks` and returns every event and the results they add up to.
async fn run(
    executor: agent33_parallel::ExecutorBuilder,
    tasks: Vec<AgentTask>,
    agents: &Agents,
) -> (Vec<Event>, ExecutionResults) {
    let executor = executor.build().expect("valid settings");
    let events: Vec<Event> = executor
        .run(tasks, agents, RunControl::new())
        .collect()
        .await;
    let mut collector = agent33_parallel::ResultsCollector::new();
    for e in &events {
        collector.observe(e);
    }
    (events, collector.finish())
}

fn retries_of(events: &[Event]) -> Vec<(u32, TaskStatus, Option<Reason>, String, Duration)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::TaskRetryScheduled {
                attempt,
                status,
                reason,
                error,
                delay,
                ..
            } => Some((*attempt, *status, reason.clone(), error.clone(), *delay)),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_retried_attempt_carries_its_typed_status_and_reason() {
    let agents = Agents::new().add("a", |ctx: TaskContext| async move {
        if ctx.attempt() == 1 {
            sleep(Duration::from_secs(10)).await;
        }
        Ok::<_, AgentError>(())
    });
    let (events, r) = run(
        ParallelExecutor::builder()
            .timeout(ms(500))
            .retries(1)
            .retry_backoff(ms(10)),
        vec![AgentTask::new("a", "x")],
        &agents,
    )
    .await;
    assert_eq!(
        retries_of(&events),
        [(
            1,
            TaskStatus::Timeout,
            Some(Reason::Timeout {
                limit: Some(ms(500))
            }),
            "timed out after 0.5s".to_owned(),
            ms(10),
        )]
    );
    assert_eq!(r.succeeded.len(), 1);
    assert_eq!(r.succeeded[0].reason, None);
}

#[tokio::test(start_paused = true)]
async fn every_result_has_a_typed_reason_beside_its_error() {
    let agents = Agents::new()
        .add("fail", |_ctx: TaskContext| async move {
            sleep(ms(100)).await;
            Err::<(), _>(AgentError::new("exit code 3").because(Reason::ExitCode { code: 3 }))
        })
        .add("plain", |_ctx: TaskContext| async move {
            sleep(ms(50)).await;
            Err::<(), _>(AgentError::new("no"))
        })
        .add("slow", |_ctx: TaskContext| async move {
            sleep(Duration::from_secs(10)).await;
            Ok::<_, AgentError>(())
        });
    let tasks = vec![
        AgentTask::new("plain", "p"),
        AgentTask::new("nobody", "n"),
        AgentTask::new("slow", "s"),
        AgentTask::new("fail", "f"),
        AgentTask::new("slow", "later"),
    ];
    let (_, r) = run(
        ParallelExecutor::builder()
            .parallel_limit(3)
            .max_failures(3),
        tasks,
        &agents,
    )
    .await;
    let reason = |id: &str| {
        [&r.failed, &r.cancelled, &r.skipped]
            .into_iter()
            .flatten()
            .find(|t| t.task.id.as_str() == id)
            .and_then(|t| t.reason.clone())
    };
    assert_eq!(reason("plain:p"), Some(Reason::AgentError));
    assert_eq!(reason("nobody:n"), Some(Reason::UnknownAgent));
    assert_eq!(reason("fail:f"), Some(Reason::ExitCode { code: 3 }));
    let stop = StopReason::MaxFailures {
        count: 3,
        task: "fail:f".into(),
        how: "failed".to_owned(),
    };
    let stopped = Some(Reason::Stopped {
        by: Some(Box::new(stop)),
    });
    assert_eq!(reason("slow:s"), stopped);
    assert_eq!(reason("slow:later"), stopped);
}

#[tokio::test(start_paused = true)]
async fn a_skipped_dependent_names_the_dependency_as_a_fact() {
    let agents = Agents::new()
        .add("fail", |_ctx: TaskContext| async {
            Err::<(), _>(AgentError::new("no"))
        })
        .add("ok", |_ctx: TaskContext| async { Ok::<_, AgentError>(()) });
    let tasks = vec![
        AgentTask::new("fail", "a"),
        AgentTask::new("ok", "b").depends_on(["fail:a"]),
    ];
    let (_, r) = run(
        ParallelExecutor::builder()
            .parallel_limit(2)
            .respect_dependencies(true)
            .continue_on_error(true),
        tasks,
        &agents,
    )
    .await;
    assert_eq!(
        r.skipped[0].reason,
        Some(Reason::DependencyNotSucceeded {
            dependency: "fail:a".into()
        })
    );
}

#[tokio::test(start_paused = true)]
async fn the_run_finishes_with_its_typed_totals() {
    let agents = Agents::new()
        .add("ok", |_ctx: TaskContext| async { Ok::<_, AgentError>(()) })
        .add("flaky", |ctx: TaskContext| async move {
            if ctx.attempt() < 3 {
                Err(AgentError::new("again"))
            } else {
                Ok(())
            }
        })
        .add("fail", |_ctx: TaskContext| async {
            Err::<(), _>(AgentError::new("no"))
        });
    let tasks = vec![
        AgentTask::new("ok", "1"),
        AgentTask::new("flaky", "2"),
        AgentTask::new("fail", "3"),
    ];
    let (events, _) = run(
        ParallelExecutor::builder()
            .parallel_limit(1)
            .retries(2)
            .retry_backoff(ms(1))
            .continue_on_error(true),
        tasks,
        &agents,
    )
    .await;
    let Some(Event::RunFinished { totals, .. }) = events.last() else {
        panic!("the run ends with RunFinished");
    };
    assert_eq!(totals.of(TaskStatus::Success), 2);
    assert_eq!(totals.of(TaskStatus::Failed), 1);
    assert_eq!(totals.total(), 3);
    // flaky: 2 retries; fail: 2 retries.
    assert_eq!(totals.retries, 4);
    assert!(!totals.all_succeeded());
}

#[tokio::test(start_paused = true)]
async fn a_timeout_the_agent_enforced_is_a_timeout_in_the_engines_words() {
    let agents = Agents::new().add("remote", |ctx: TaskContext| async move {
        let limit = ctx.timeout().expect("the task has a limit");
        assert_eq!(limit, Duration::from_secs(2));
        sleep(ms(1500)).await;
        // The worker's own words, which the engine replaces.
        Err::<(), _>(
            AgentError::new("deadline exceeded on w1").because(Reason::Timeout { limit: None }),
        )
    });
    let (_, r) = run(
        ParallelExecutor::builder().timeout(Duration::from_secs(2)),
        vec![AgentTask::new("remote", "x")],
        &agents,
    )
    .await;
    let t = &r.failed[0];
    assert_eq!(t.status, TaskStatus::Timeout);
    assert_eq!(t.error.as_deref(), Some("timed out after 2s"));
    assert_eq!(
        t.reason,
        Some(Reason::Timeout {
            limit: Some(Duration::from_secs(2))
        })
    );
    assert_eq!(r.metrics.counter("tasks_timeout"), 1);
    assert_eq!(r.metrics.counter("tasks_failed"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_reported_start_is_where_the_timeout_and_the_times_count_from() {
    // Each task waits 500 ms in a remote queue, then reports its start and
    // runs `work` ms; the limit is 1 s from the real start.
    let agents = Agents::new().add("remote", |ctx: TaskContext| async move {
        let work: u64 = ctx.task().artifact.parse().expect("a number");
        sleep(ms(500)).await;
        let at = Timestamp(SystemTime::now());
        ctx.report_start(Instant::now(), at);
        tokio::select! {
            () = sleep(ms(work)) => Ok::<_, AgentError>(()),
            () = ctx.token().cancelled() => Err(AgentError::new("stopped")),
        }
    });
    let executor = ParallelExecutor::builder()
        .parallel_limit(2)
        .timeout(Duration::from_secs(1))
        .continue_on_error(true)
        .build()
        .expect("valid");
    let origin = Instant::now();
    let events: Vec<Event> = executor
        .run(
            vec![
                AgentTask::new("remote", "800"),
                AgentTask::new("remote", "1200"),
            ],
            &agents,
            RunControl::new(),
        )
        .collect()
        .await;
    let mut finished = events.iter().filter_map(|e| match e {
        Event::TaskFinished {
            result,
            attempt_started_at,
            ..
        } => Some((result, *attempt_started_at)),
        _ => None,
    });
    let (ok, ok_start) = finished.next().expect("the short one finishes first");
    // 500 + 800 ms: past a limit counted from the hand-over, within one
    // counted from the real start.
    assert_eq!(ok.status, TaskStatus::Success, "{:?}", ok.error);
    assert_eq!(ok.duration_ms, 800);
    assert!(ok_start.is_some());
    assert_eq!(ok.started_at, ok_start);
    let (late, late_start) = finished.next().expect("the long one");
    assert_eq!(late.status, TaskStatus::Timeout);
    assert_eq!(late.duration_ms, 1000);
    assert_eq!(late.started_at, late_start);
    // It timed out 1 s after its real start, 1.5 s into the run.
    assert!(origin.elapsed() >= ms(1500));
    let Some(Event::RunFinished { duration_ms, .. }) = events.last() else {
        panic!("the run ends with RunFinished");
    };
    assert_eq!(*duration_ms, 1500);
}

/// An agent whose first `lose` executions are lost on worker `w1`, and
/// which then succeeds.
fn losing(lose: u32) -> Agents {
    Agents::new().add("remote", move |ctx: TaskContext| async move {
        sleep(ms(100)).await;
        if ctx.attempt() <= lose {
            ctx.report_worker("w1");
            return Err(AgentError::new("gone").because(Reason::ExecutionLost {
                worker: None,
                after: ms(12_300),
            }));
        }
        ctx.report_worker("w2");
        Ok::<_, AgentError>(format!("attempt {}", ctx.attempt()))
    })
}

#[tokio::test(start_paused = true)]
async fn a_lost_execution_runs_again_at_once_without_using_a_retry() {
    let (events, r) = run(
        ParallelExecutor::builder().retry_backoff(Duration::from_secs(60)),
        vec![AgentTask::new("remote", "x")],
        &losing(2),
    )
    .await;
    let lost = Reason::ExecutionLost {
        worker: None,
        after: ms(12_300),
    };
    let text = "worker w1 lost after 12.3s".to_owned();
    assert_eq!(
        retries_of(&events),
        [
            (
                1,
                TaskStatus::Failed,
                Some(lost.clone()),
                text.clone(),
                ms(0)
            ),
            (2, TaskStatus::Failed, Some(lost), text, ms(0)),
        ]
    );
    let t = &r.succeeded[0];
    assert_eq!(t.attempts, 3);
    assert_eq!(t.output, "attempt 3");
    assert_eq!(t.duration_ms, 300, "no backoff between lost executions");
    assert_eq!(t.worker.as_deref(), Some("w2"));
    assert_eq!(
        t.notes,
        [
            "attempt 1: worker w1 lost after 12.3s",
            "attempt 2: worker w1 lost after 12.3s"
        ]
    );
    assert_eq!(r.metrics.counter("task_retry_count"), 0);
    let json = serde_json::to_value(t).expect("serialises");
    assert_eq!(json["notes"][0], "attempt 1: worker w1 lost after 12.3s");
    assert_eq!(json["worker"], "w2");
}

#[tokio::test(start_paused = true)]
async fn a_task_lost_three_times_fails_and_then_the_retry_policy_applies() {
    let (_, r) = run(
        ParallelExecutor::builder(),
        vec![AgentTask::new("remote", "x")],
        &losing(u32::MAX),
    )
    .await;
    let t = &r.failed[0];
    assert_eq!(t.status, TaskStatus::Failed);
    assert_eq!(t.error.as_deref(), Some("worker lost 3 times"));
    assert_eq!(t.reason, Some(Reason::WorkerLost { times: 3 }));
    assert_eq!(t.attempts, 3);
    assert_eq!(t.notes.len(), 3);
    assert_eq!(t.notes[2], "attempt 3: worker w1 lost after 12.3s");
    assert_eq!(r.metrics.counter("task_retry_count"), 0);

    // With a retry, the third loss uses it (after the backoff), and the
    // retry's own losses run again for free.
    let (events, r) = run(
        ParallelExecutor::builder()
            .retries(1)
            .retry_backoff(ms(1000)),
        vec![AgentTask::new("remote", "x")],
        &losing(4),
    )
    .await;
    let delays: Vec<Duration> = retries_of(&events).iter().map(|r| r.4).collect();
    assert_eq!(delays, [ms(0), ms(0), ms(1000), ms(0)]);
    let t = &r.succeeded[0];
    assert_eq!(t.attempts, 5);
    assert_eq!(t.notes.len(), 4);
    assert_eq!(r.metrics.counter("task_retry_count"), 1);
}

#[tokio::test(start_paused = true)]
async fn reported_output_replaces_what_the_engine_captured() {
    let agents = Agents::new().add("remote", |ctx: TaskContext| async move {
        ctx.write_stdout(b"streamed live\n");
        ctx.report_output("the worker's tail\n", "its stderr\n");
        Ok::<_, AgentError>("returned too")
    });
    let (_, r) = run(
        ParallelExecutor::builder(),
        vec![AgentTask::new("remote", "x")],
        &agents,
    )
    .await;
    assert_eq!(r.succeeded[0].output, "the worker's tail\n");
    assert_eq!(r.succeeded[0].stderr, "its stderr\n");
}

#[tokio::test(start_paused = true)]
async fn the_worker_is_on_the_result_only_when_reported() {
    let agents = Agents::new()
        .add("remote", |ctx: TaskContext| async move {
            ctx.report_worker("w1");
            Ok::<_, AgentError>(())
        })
        .add("local", |_ctx: TaskContext| async {
            Ok::<_, AgentError>(())
        });
    let (_, r) = run(
        ParallelExecutor::builder(),
        vec![AgentTask::new("remote", "x"), AgentTask::new("local", "y")],
        &agents,
    )
    .await;
    let remote = serde_json::to_value(&r.succeeded[0]).expect("serialises");
    let local = serde_json::to_value(&r.succeeded[1]).expect("serialises");
    assert_eq!(remote["worker"], "w1");
    assert!(local.get("worker").is_none(), "{local}");
    // The typed reason is not one of the report's fields.
    assert!(remote.get("reason").is_none(), "{remote}");
}

#[tokio::test(start_paused = true)]
async fn an_execution_lost_after_the_run_stopped_is_not_run_again() {
    let agents = Agents::new()
        .add("fail", |_ctx: TaskContext| async {
            Err::<(), _>(AgentError::new("no"))
        })
        .add("remote", |ctx: TaskContext| async move {
            sleep(ms(100)).await;
            // The stop's cancellation reached a worker that was gone.
            ctx.report_worker("w1");
            Err::<(), _>(AgentError::new("gone").because(Reason::ExecutionLost {
                worker: None,
                after: ms(100),
            }))
        });
    let (_, r) = run(
        ParallelExecutor::builder()
            .parallel_limit(2)
            .fail_fast(false),
        vec![AgentTask::new("remote", "x"), AgentTask::new("fail", "y")],
        &agents,
    )
    .await;
    let t = &r.cancelled[0];
    assert_eq!(t.attempts, 1);
    assert_eq!(
        t.error.as_deref(),
        Some("cancelled: stopped starting tasks after fail:y failed")
    );
    assert_eq!(t.notes, ["attempt 1: worker w1 lost after 0.1s"]);
    assert!(matches!(t.reason, Some(Reason::Stopped { by: Some(_) })));
}

#[tokio::test(start_paused = true)]
async fn a_task_deferred_too_often_fails_as_rate_limited() {
    let agents = Agents::new().add("api", |_ctx: TaskContext| async {
        Err::<(), _>(AgentError::deferred(Some(ms(10))))
    });
    let (_, r) = run(
        ParallelExecutor::builder(),
        vec![AgentTask::new("api", "x")],
        &agents,
    )
    .await;
    assert_eq!(r.failed[0].reason, Some(Reason::RateLimited));
}

#[tokio::test(start_paused = true)]
async fn time_queued_elsewhere_does_not_count_toward_the_timeout() {
    let agents = Agents::new().add("remote", |ctx: TaskContext| async move {
        ctx.report_queued();
        // Three limits in a remote queue, then a short run.
        sleep(ms(3_000)).await;
        ctx.report_start(Instant::now(), Timestamp(SystemTime::now()));
        sleep(ms(800)).await;
        Ok::<_, AgentError>(())
    });
    let (_, r) = run(
        ParallelExecutor::builder().timeout(Duration::from_secs(1)),
        vec![AgentTask::new("remote", "x")],
        &agents,
    )
    .await;
    assert_eq!(r.succeeded.len(), 1, "{:?}", r.failed);
    assert_eq!(r.succeeded[0].duration_ms, 800);
}

#[tokio::test(start_paused = true)]
async fn executions_elsewhere_number_the_attempts_and_use_no_retry() {
    use std::sync::{Arc, Mutex};
    // A worker runs the execution its coordinator numbered 3: the two
    // before it ran on other machines.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let agent = {
        let seen = Arc::clone(&seen);
        move |ctx: agent33_parallel::TaskContext| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().expect("not poisoned").push(ctx.attempt());
                if ctx.attempt() < 4 {
                    Err(agent33_parallel::AgentError::new("not yet"))
                } else {
                    Ok(())
                }
            }
        }
    };
    let agents = agent33_parallel::Agents::new().add("a", agent);
    let executor = agent33_parallel::ParallelExecutor::builder()
        .retries(1)
        .retry_backoff(std::time::Duration::from_millis(10))
        .build()
        .expect("settings");
    let task = agent33_parallel::AgentTask::new("a", "x").after_executions(2);
    assert_eq!(task.executions_before, 2);
    let results = executor.run_all(vec![task], &agents).await;
    assert_eq!(*seen.lock().expect("not poisoned"), vec![3, 4]);
    let done = &results.succeeded[0];
    assert_eq!(done.attempts, 4);
    // Never started here: its executions elsewhere still count.
    let stopped = agent33_parallel::ParallelExecutor::builder()
        .build()
        .expect("settings")
        .run_all(
            vec![agent33_parallel::AgentTask::new("nobody", "y").after_executions(1)],
            &agents,
        )
        .await;
    assert_eq!(stopped.failed[0].attempts, 1);
}
