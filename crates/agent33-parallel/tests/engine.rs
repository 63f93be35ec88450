//! Engine behaviour under tokio's paused clock: exact virtual times for the
//! failure policy, timeouts, deadlines, retries, panics, ordering, metrics.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agent33_parallel::{
    AgentSpec, AgentTask, Agents, Event, ExecutionResults, ParallelExecutor, RunControl,
    StopReason, TaskStatus,
};
use common::{Log, agents, ms, task};
use futures::StreamExt;

fn ids(results: &[agent33_parallel::TaskResult]) -> Vec<String> {
    results.iter().map(|r| r.task.id.to_string()).collect()
}

async fn run(executor: ParallelExecutor, tasks: Vec<AgentTask>, log: &Log) -> ExecutionResults {
    executor.run_all(tasks, &agents(log)).await
}

fn parallel(limit: usize) -> agent33_parallel::ExecutorBuilder {
    ParallelExecutor::builder().parallel_limit(limit)
}

#[tokio::test(start_paused = true)]
async fn results_keep_input_order_in_each_list() {
    let log = Log::new();
    let tasks = vec![
        task("ok@300#1"),
        task("fail@100#2"),
        task("ok@100#3"),
        task("fail@200#4"),
    ];
    let r = run(
        parallel(4).continue_on_error(true).build().unwrap(),
        tasks,
        &log,
    )
    .await;
    assert_eq!(r.total, 4);
    assert_eq!(ids(&r.succeeded), ["a:ok@300#1", "a:ok@100#3"]);
    assert_eq!(ids(&r.failed), ["a:fail@100#2", "a:fail@200#4"]);
    assert_eq!(r.success_rate, 0.5);
    assert_eq!(r.failed[0].error.as_deref(), Some("boom"));
    assert_eq!(r.succeeded[0].output, "out:ok@300#1");
}

#[tokio::test(start_paused = true)]
async fn parallel_limit_bounds_concurrency() {
    let log = Log::new();
    let tasks = (0..10).map(|i| task(&format!("ok@100#{i}"))).collect();
    let r = run(parallel(4).build().unwrap(), tasks, &log).await;
    assert_eq!(r.succeeded.len(), 10);
    assert_eq!(log.peak(), 4);
    assert_eq!(r.duration_ms, 300);
    assert_eq!(r.metrics.gauge("parallel_peak"), 4.0);
    assert_eq!(r.metrics.gauge("parallel_limit"), 4.0);
    // 10 × 100 ms busy over 4 slots × 300 ms.
    assert_eq!(r.metrics.gauge("parallel_utilization"), 0.833);
    // The 4 first waited 0; 4 waited 100 ms; 2 waited 200 ms.
    let wait = r.metrics.timer("semaphore_wait_ms");
    assert_eq!((wait.count, wait.sum, wait.max), (10, 800.0, 200.0));
}

#[tokio::test(start_paused = true)]
async fn sequential_mode_runs_one_at_a_time_in_input_order() {
    let log = Log::new();
    let tasks = vec![task("ok@100#1"), task("ok@50#2"), task("ok@10#3")];
    let r = run(ParallelExecutor::builder().build().unwrap(), tasks, &log).await;
    assert_eq!(log.peak(), 1);
    let starts: Vec<_> = log.spans().iter().map(|s| s.start).collect();
    assert_eq!(starts, [ms(0), ms(100), ms(150)]);
    assert_eq!(r.metrics.gauge("parallel_limit"), 1.0);
    assert_eq!(r.metrics.gauge("parallel_utilization"), 1.0);
}

#[tokio::test(start_paused = true)]
async fn continue_on_error_runs_every_task() {
    let log = Log::new();
    let tasks = vec![
        task("fail@10#1"),
        task("ok@50#2"),
        task("fail@10#3"),
        task("ok@10#4"),
    ];
    let r = run(
        parallel(2)
            .continue_on_error(true)
            .fail_fast(true)
            .build()
            .unwrap(),
        tasks,
        &log,
    )
    .await;
    assert_eq!(
        (r.succeeded.len(), r.failed.len(), r.cancelled.len()),
        (2, 2, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn fail_fast_cancels_in_flight_tasks_and_never_starts_pending_ones() {
    let log = Log::new();
    let tasks = vec![
        task("obey@1000#1"),
        task("fail@100#2"),
        task("ok@10#3"),
        task("ok@10#4"),
    ];
    let r = run(parallel(2).build().unwrap(), tasks, &log).await;
    assert_eq!(ids(&r.failed), ["a:fail@100#2"]);
    assert_eq!(
        ids(&r.cancelled),
        ["a:obey@1000#1", "a:ok@10#3", "a:ok@10#4"]
    );
    let in_flight = &r.cancelled[0];
    assert_eq!(
        in_flight.error.as_deref(),
        Some("cancelled: fail-fast after a:fail@100#2 failed")
    );
    assert_eq!(in_flight.attempts, 1);
    assert_eq!(in_flight.output, "out:obey@1000#1", "keeps what it printed");
    // The obeying agent took 10 ms to wind down after the 100 ms failure.
    assert_eq!(in_flight.duration_ms, 110);
    for pending in &r.cancelled[1..] {
        assert_eq!(pending.attempts, 0);
        assert_eq!(pending.started_at, None);
        assert_eq!(
            pending.error.as_deref(),
            Some("not started: fail-fast after a:fail@100#2 failed")
        );
    }
    assert_eq!(log.spans().len(), 2, "nothing started after the trigger");
    assert_eq!(r.duration_ms, 110);
}

#[tokio::test(start_paused = true)]
async fn without_fail_fast_in_flight_tasks_drain_with_their_real_status() {
    let log = Log::new();
    let tasks = vec![
        task("ok@1000#1"),
        task("fail@100#2"),
        task("fail@300#3"),
        task("ok@10#4"),
    ];
    let r = run(parallel(3).fail_fast(false).build().unwrap(), tasks, &log).await;
    assert_eq!(ids(&r.succeeded), ["a:ok@1000#1"]);
    assert_eq!(ids(&r.failed), ["a:fail@100#2", "a:fail@300#3"]);
    assert_eq!(ids(&r.cancelled), ["a:ok@10#4"]);
    assert_eq!(r.duration_ms, 1000);
}

#[tokio::test(start_paused = true)]
async fn max_failures_counts_before_stopping() {
    let log = Log::new();
    let tasks = vec![
        task("fail@10#1"),
        task("fail@20#2"),
        task("ok@5#3"),
        task("ok@5#4"),
    ];
    let r = run(
        ParallelExecutor::builder().max_failures(2).build().unwrap(),
        tasks,
        &log,
    )
    .await;
    assert_eq!(ids(&r.failed), ["a:fail@10#1", "a:fail@20#2"]);
    assert_eq!(ids(&r.cancelled), ["a:ok@5#3", "a:ok@5#4"]);
    assert_eq!(
        r.cancelled[0].error.as_deref(),
        Some("not started: max failures (2) reached")
    );
}

#[tokio::test(start_paused = true)]
async fn timeout_counts_from_the_start_of_the_task_not_its_queueing() {
    let log = Log::new();
    let tasks = vec![task("ok@800#1"), task("ok@800#2")];
    let r = run(
        ParallelExecutor::builder()
            .timeout(ms(1000))
            .build()
            .unwrap(),
        tasks,
        &log,
    )
    .await;
    assert_eq!(r.succeeded.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn timeout_cancels_the_token_then_drops_after_the_grace() {
    let log = Log::new();
    let tasks = vec![task("obey@5000#1"), task("hang@5000#2")];
    let r = run(
        parallel(2)
            .timeout_seconds(0.5)
            .kill_grace(ms(2000))
            .continue_on_error(true)
            .build()
            .unwrap(),
        tasks,
        &log,
    )
    .await;
    assert_eq!(r.failed.len(), 2);
    let obey = &r.failed[0];
    assert_eq!(obey.status, TaskStatus::Timeout);
    assert_eq!(obey.error.as_deref(), Some("timed out after 0.5s"));
    assert_eq!(
        obey.duration_ms, 510,
        "the agent wound down 10 ms after its token"
    );
    let hang = &r.failed[1];
    assert_eq!(hang.status, TaskStatus::Timeout);
    assert_eq!(hang.error.as_deref(), Some("timed out after 0.5s"));
    assert_eq!(hang.duration_ms, 2500, "dropped when the 2 s grace ran out");
    assert_eq!(log.spans()[1].end, Some(ms(2500)), "its future was dropped");
    assert_eq!(r.metrics.counter("tasks_timeout"), 2);
    assert_eq!(r.metrics.counter("tasks_failed"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_task_told_to_stop_stays_cancelled_when_its_timeout_passes_in_the_grace() {
    // Fail-fast at 200 ms; the task ignores its token and its own 500 ms
    // timeout passes during the 1 s grace: the stop came first.
    let log = Log::new();
    let tasks = vec![task("hang@5000#1"), task("fail@200#2")];
    let r = run(
        parallel(2)
            .timeout_seconds(0.5)
            .kill_grace(ms(1000))
            .build()
            .unwrap(),
        tasks,
        &log,
    )
    .await;
    let hang = &r.cancelled[0];
    assert_eq!(hang.status, TaskStatus::Cancelled);
    assert_eq!(
        hang.error.as_deref(),
        Some("cancelled: fail-fast after a:fail@200#2 failed")
    );
    assert_eq!(hang.duration_ms, 1200, "dropped when the grace ran out");
    assert_eq!(r.metrics.counter("tasks_timeout"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_task_stays_timed_out_when_the_run_stops_in_its_grace() {
    let log = Log::new();
    let tasks = vec![
        AgentTask::new("a", "hang@5000#1").timeout(ms(100)),
        task("fail@300#2"),
    ];
    let r = run(
        parallel(2).kill_grace(ms(1000)).build().unwrap(),
        tasks,
        &log,
    )
    .await;
    let hang = &r.failed[0];
    assert_eq!(hang.status, TaskStatus::Timeout);
    assert_eq!(hang.error.as_deref(), Some("timed out after 0.1s"));
    assert_eq!(hang.duration_ms, 1100);
}

#[tokio::test(start_paused = true)]
async fn a_settled_task_keeps_its_outcome_past_its_timeout() {
    // Its work ended at 100 ms; winding down for a second is no timeout.
    let log = Log::new();
    let r = run(
        parallel(1).timeout_seconds(0.5).build().unwrap(),
        vec![task("settle@100")],
        &log,
    )
    .await;
    assert_eq!(ids(&r.succeeded), ["a:settle@100"]);
    assert_eq!(r.succeeded[0].duration_ms, 1100);
}

#[tokio::test(start_paused = true)]
async fn a_stop_cuts_a_settled_task_short_without_cancelling_it() {
    let log = Log::new();
    let tasks = vec![task("settle@100#1"), task("fail@300#2")];
    let r = run(parallel(2).build().unwrap(), tasks, &log).await;
    assert_eq!(ids(&r.succeeded), ["a:settle@100#1"]);
    assert_eq!(
        r.succeeded[0].duration_ms, 310,
        "told to stop at 300 ms, it wound down 10 ms later"
    );
    assert!(r.cancelled.is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_agent_that_returns_success_at_its_timeout_timed_out() {
    // It answers its cancelled token at once with what it has: ending at
    // the limit rather than before it is timing out, in the same poll or not.
    let log = Log::new();
    let r = run(
        parallel(1).timeout_seconds(0.1).build().unwrap(),
        vec![task("quit@5000")],
        &log,
    )
    .await;
    let quit = &r.failed[0];
    assert_eq!(quit.status, TaskStatus::Timeout);
    assert_eq!(quit.error.as_deref(), Some("timed out after 0.1s"));
    assert_eq!(quit.duration_ms, 100);
}

#[tokio::test(start_paused = true)]
async fn a_settled_failure_stays_a_failure_when_the_run_stops() {
    let log = Log::new();
    let tasks = vec![task("settlefail@100#1"), task("fail@300#2")];
    let r = run(parallel(2).build().unwrap(), tasks, &log).await;
    assert_eq!(ids(&r.failed), ["a:settlefail@100#1", "a:fail@300#2"]);
    assert_eq!(r.failed[0].status, TaskStatus::Failed);
    assert_eq!(r.failed[0].error.as_deref(), Some("exit code 3"));
    assert!(r.cancelled.is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_grace_does_not_drop_a_settled_task_winding_down() {
    // No grace at all: an unsettled task is dropped at once, a settled one
    // finishes its 10 ms of tidying up and keeps its result.
    let log = Log::new();
    let tasks = vec![
        task("settle@100#1"),
        task("obey@5000#2"),
        task("fail@300#3"),
    ];
    let r = run(
        parallel(3).kill_grace(Duration::ZERO).build().unwrap(),
        tasks,
        &log,
    )
    .await;
    assert_eq!(ids(&r.succeeded), ["a:settle@100#1"]);
    assert_eq!(r.succeeded[0].duration_ms, 310);
    assert_eq!(ids(&r.cancelled), ["a:obey@5000#2"]);
    assert_eq!(r.cancelled[0].duration_ms, 300);
}

#[tokio::test(start_paused = true)]
async fn per_task_and_per_agent_timeouts_beat_the_global_one() {
    let log = Log::new();
    let agents = Agents::new()
        .add_spec("a", common::scripted(&log))
        .add_spec("slow", common::scripted(&log).timeout(ms(300)));
    let tasks = vec![
        AgentTask::new("a", "hang@500#global"),
        AgentTask::new("a", "hang@500#own").timeout(ms(200)),
        AgentTask::new("slow", "hang@500#agent"),
        AgentTask::new("slow", "hang@500#none").timeout(Duration::ZERO),
    ];
    let r = ParallelExecutor::builder()
        .parallel_limit(4)
        .timeout(ms(100))
        .kill_grace(Duration::ZERO)
        .continue_on_error(true)
        .build()
        .unwrap()
        .run_all(tasks, &agents)
        .await;
    let errors: Vec<_> = r.failed.iter().map(|f| f.error.clone().unwrap()).collect();
    assert_eq!(
        errors,
        [
            "timed out after 0.1s",
            "timed out after 0.2s",
            "timed out after 0.3s"
        ]
    );
    assert_eq!(ids(&r.succeeded), ["slow:hang@500#none"]);
}

#[tokio::test(start_paused = true)]
async fn run_deadline_cancels_everything_whatever_fail_fast_says() {
    let log = Log::new();
    let tasks = vec![task("ok@600#1"), task("obey@600#2"), task("ok@600#3")];
    let r = run(
        ParallelExecutor::builder()
            .fail_fast(false)
            .deadline_seconds(1.0)
            .build()
            .unwrap(),
        tasks,
        &log,
    )
    .await;
    assert_eq!(ids(&r.succeeded), ["a:ok@600#1"]);
    assert_eq!(ids(&r.cancelled), ["a:obey@600#2", "a:ok@600#3"]);
    assert_eq!(
        r.cancelled[0].error.as_deref(),
        Some("cancelled: run deadline (1s) passed")
    );
    assert_eq!(
        r.cancelled[1].error.as_deref(),
        Some("not started: run deadline (1s) passed")
    );
    assert_eq!(r.duration_ms, 1010);
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_exponentially_and_count_only_the_last_attempt() {
    let log = Log::new();
    let tasks = vec![task("fail@100,fail@100,ok@100")];
    let r = run(
        ParallelExecutor::builder()
            .retries(2)
            .retry_backoff(ms(1000))
            .build()
            .unwrap(),
        tasks,
        &log,
    )
    .await;
    assert_eq!(r.succeeded.len(), 1);
    let t = &r.succeeded[0];
    assert_eq!(t.attempts, 3);
    assert_eq!(t.error, None);
    assert_eq!(
        log.starts_of("a:fail@100,fail@100,ok@100"),
        [ms(0), ms(1100), ms(3200)]
    );
    assert_eq!(t.duration_ms, 3300);
    assert_eq!(r.metrics.counter("task_retry_count"), 2);
    // Backoff is not busy time: 300 ms of work over 3.3 s.
    assert_eq!(r.metrics.gauge("parallel_utilization"), 0.091);
}

#[tokio::test(start_paused = true)]
async fn a_task_in_backoff_gives_its_slot_back() {
    let log = Log::new();
    let tasks = vec![task("fail@100,ok@100#1"), task("ok@500#2")];
    let r = run(
        ParallelExecutor::builder()
            .retries(1)
            .retry_backoff(ms(1000))
            .build()
            .unwrap(),
        tasks,
        &log,
    )
    .await;
    assert_eq!(r.succeeded.len(), 2);
    assert_eq!(log.starts_of("a:ok@500#2"), [ms(100)]);
    assert_eq!(log.starts_of("a:fail@100,ok@100#1"), [ms(0), ms(1100)]);
}

#[tokio::test(start_paused = true)]
async fn a_retry_is_abandoned_when_the_run_stops() {
    let log = Log::new();
    let agents = Agents::new()
        .add_spec("a", common::scripted(&log).retries(3))
        .add_spec("b", common::scripted(&log));
    let tasks = vec![
        AgentTask::new("a", "fail@100"),
        AgentTask::new("b", "fail@300"),
    ];
    let r = ParallelExecutor::builder()
        .parallel_limit(2)
        .retry_backoff(ms(1000))
        .build()
        .unwrap()
        .run_all(tasks, &agents)
        .await;
    assert_eq!(r.failed.len(), 2);
    let a = &r.failed[0];
    assert_eq!(a.attempts, 1);
    assert_eq!(
        a.error.as_deref(),
        Some("boom (retry abandoned: fail-fast after b:fail@300 failed)")
    );
    assert_eq!(r.duration_ms, 300);
}

#[tokio::test(start_paused = true)]
async fn a_retry_is_abandoned_when_an_attempt_fails_after_the_stop() {
    // Without fail-fast the in-flight attempt runs to its end; no new
    // attempt starts after the stop, and its error says why.
    let log = Log::new();
    let agents = Agents::new()
        .add_spec("a", common::scripted(&log).retries(2))
        .add_spec("b", common::scripted(&log));
    let tasks = vec![
        AgentTask::new("a", "fail@300"),
        AgentTask::new("b", "fail@100"),
    ];
    let r = ParallelExecutor::builder()
        .parallel_limit(2)
        .fail_fast(false)
        .build()
        .unwrap()
        .run_all(tasks, &agents)
        .await;
    let a = &r.failed[0];
    assert_eq!(a.attempts, 1);
    assert_eq!(
        a.error.as_deref(),
        Some("boom (retry abandoned: stopped starting tasks after b:fail@100 failed)")
    );
    assert_eq!(log.spans().len(), 2, "no retry started");
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_attempt_is_not_retried() {
    let log = Log::new();
    let tasks = vec![task("obey@1000#1"), task("fail@10#2")];
    let r = run(parallel(2).retries(0).build().unwrap(), tasks, &log).await;
    let a = r
        .cancelled
        .iter()
        .find(|c| c.task.id == "a:obey@1000#1")
        .unwrap();
    assert_eq!(a.attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_task_is_retried() {
    let log = Log::new();
    let tasks = vec![task("hang@1000,ok@10")];
    let r = run(
        ParallelExecutor::builder()
            .timeout(ms(100))
            .kill_grace(Duration::ZERO)
            .retries(1)
            .retry_backoff(ms(50))
            .build()
            .unwrap(),
        tasks,
        &log,
    )
    .await;
    assert_eq!(r.succeeded.len(), 1);
    assert_eq!(r.succeeded[0].attempts, 2);
    assert_eq!(log.starts_of("a:hang@1000,ok@10"), [ms(0), ms(150)]);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_agent_is_a_failed_task_not_a_crashed_run() {
    let log = Log::new();
    let tasks = vec![task("panic@10#1"), task("ok@10#2")];
    let r = run(
        parallel(2).continue_on_error(true).build().unwrap(),
        tasks,
        &log,
    )
    .await;
    assert_eq!(r.failed.len(), 1);
    assert_eq!(r.failed[0].error.as_deref(), Some("agent panicked: kaboom"));
    assert_eq!(r.succeeded.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_agent_fails_its_task() {
    let log = Log::new();
    let r = run(
        ParallelExecutor::builder()
            .continue_on_error(true)
            .build()
            .unwrap(),
        vec![AgentTask::new("nope", "x"), task("ok@1")],
        &log,
    )
    .await;
    assert_eq!(r.failed[0].error.as_deref(), Some("no agent named `nope`"));
    assert_eq!(r.succeeded.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_cancels_like_fail_fast() {
    let log = Log::new();
    let control = RunControl::new();
    let executor = parallel(2).kill_grace(ms(5000)).build().unwrap();
    let tasks = vec![task("obey@1000#1"), task("hang@1000#2"), task("ok@1#3")];
    let mut events = executor.run(tasks, &agents(&log), control.clone());
    let trigger = control.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(200)).await;
        trigger.interrupt();
    });
    let mut collector = agent33_parallel::ResultsCollector::new();
    let mut stopping = Vec::new();
    while let Some(event) = events.next().await {
        if let Event::RunStopTriggered { reason } = &event {
            stopping.push(reason.clone());
        }
        collector.observe(&event);
    }
    let r = collector.finish();
    assert_eq!(
        stopping,
        [StopReason::Interrupted {
            by: Default::default()
        }]
    );
    assert_eq!(r.cancelled.len(), 3);
    assert_eq!(
        r.cancelled[0].error.as_deref(),
        Some("cancelled: interrupted")
    );
    assert_eq!(
        r.cancelled[2].error.as_deref(),
        Some("not started: interrupted")
    );
    // The hanging agent had until its grace to finish: it did, at 1 s.
    assert_eq!(r.duration_ms, 1000);
}

#[tokio::test(start_paused = true)]
async fn a_second_interrupt_drops_every_task_at_once() {
    let log = Log::new();
    let control = RunControl::new();
    let executor = parallel(2).kill_grace(ms(5000)).build().unwrap();
    let events = executor.run(vec![task("hang@100000")], &agents(&log), control.clone());
    tokio::spawn(async move {
        tokio::time::sleep(ms(200)).await;
        control.interrupt();
        tokio::time::sleep(ms(300)).await;
        control.kill();
    });
    let r = events.collect_results().await;
    assert_eq!(r.cancelled.len(), 1);
    assert_eq!(
        r.cancelled[0].error.as_deref(),
        Some("cancelled: interrupted twice: tasks killed")
    );
    assert_eq!(r.duration_ms, 500);
}

#[tokio::test(start_paused = true)]
async fn events_arrive_in_order_for_each_task() {
    let log = Log::new();
    let executor = parallel(2)
        .retries(1)
        .retry_backoff(ms(10))
        .continue_on_error(true)
        .build()
        .unwrap();
    let mut events = executor.run(
        vec![task("fail@5,ok@5#1"), task("ok@1#2")],
        &agents(&log),
        RunControl::new(),
    );
    let mut kinds = Vec::new();
    while let Some(e) = events.next().await {
        let k = match e {
            Event::RunStarted { total, .. } => format!("run_started {total:?}"),
            Event::TaskQueued { seq, .. } => format!("queued {seq}"),
            Event::TaskStarted {
                seq, attempt, slot, ..
            } => format!("started {seq}/{attempt} slot {slot}"),
            Event::TaskRetryScheduled { seq, .. } => format!("retrying {seq}"),
            Event::TaskFinished { seq, .. } => format!("finished {seq}"),
            Event::RunFinished { .. } => "run_finished".into(),
            other => format!("{other:?}"),
        };
        kinds.push(k);
    }
    assert_eq!(
        kinds,
        [
            "run_started Some(2)",
            "queued 0",
            "started 0/1 slot 0",
            "queued 1",
            "started 1/1 slot 1",
            "finished 1",
            "retrying 0",
            "started 0/2 slot 0",
            "finished 0",
            "run_finished"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn output_is_bounded_to_its_tail_with_a_marker() {
    let agents = Agents::new().add("w", |ctx: agent33_parallel::TaskContext| async move {
        ctx.write_stdout(b"0123456789");
        ctx.write_stderr(b"abc");
        Ok::<_, agent33_parallel::AgentError>("XY")
    });
    let r = ParallelExecutor::builder()
        .output_limit_bytes(4)
        .build()
        .unwrap()
        .run_all(vec![AgentTask::new("w", "x")], &agents)
        .await;
    let t = &r.succeeded[0];
    assert_eq!(t.output, "[agent-33: 8 bytes truncated]\n89XY");
    assert_eq!(t.stderr, "abc");
}

#[tokio::test(start_paused = true)]
async fn a_stream_is_read_only_as_slots_free_up() {
    let pulled = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let ahead = Arc::new(AtomicUsize::new(0));
    let (p, d, a) = (Arc::clone(&pulled), Arc::clone(&done), Arc::clone(&ahead));
    let stream = futures::stream::iter(0..20_000)
        .map(move |i| {
            let now = p.fetch_add(1, Ordering::SeqCst) + 1;
            a.fetch_max(now - d.load(Ordering::SeqCst), Ordering::SeqCst);
            AgentTask::new("a", format!("{i}"))
        })
        .boxed();
    let d = Arc::clone(&done);
    let agents = Agents::new().add("a", move |_ctx: agent33_parallel::TaskContext| {
        let d = Arc::clone(&d);
        async move {
            tokio::time::sleep(ms(10)).await;
            d.fetch_add(1, Ordering::SeqCst);
            Ok::<_, agent33_parallel::AgentError>(())
        }
    });
    let r = parallel(4)
        .build()
        .unwrap()
        .run_stream(stream, &agents, RunControl::new())
        .collect_results()
        .await;
    assert_eq!(r.succeeded.len(), 20_000);
    // A task is read only when a slot is free: counting the one being read,
    // at most 4 (the limit) are ever unfinished. Memory follows the limit,
    // not the input.
    assert_eq!(ahead.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn a_stream_is_not_read_after_the_stop_trigger() {
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&pulled);
    let stream = futures::stream::iter(0..100)
        .map(move |i| {
            counter.fetch_add(1, Ordering::SeqCst);
            let script = if i == 3 { "fail@10" } else { "ok@10" };
            AgentTask::new("a", format!("{script}#{i}"))
        })
        .boxed();
    let log = Log::new();
    let r = ParallelExecutor::builder()
        .build()
        .unwrap()
        .run_stream(stream, &agents(&log), RunControl::new())
        .collect_results()
        .await;
    assert_eq!(r.total, 4, "lines never read are not part of the run");
    assert_eq!(pulled.load(Ordering::SeqCst), 4);
    assert_eq!(r.failed.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_vec_run_reports_every_task_even_after_a_stop() {
    let log = Log::new();
    let mut tasks = vec![task("fail@10#0")];
    tasks.extend((1..100).map(|i| task(&format!("ok@10#{i}"))));
    let r = run(ParallelExecutor::builder().build().unwrap(), tasks, &log).await;
    assert_eq!(r.total, 100);
    assert_eq!(r.cancelled.len(), 99);
    assert_eq!(r.metrics.counter("tasks_cancelled"), 99);
}

#[tokio::test(start_paused = true)]
async fn an_empty_run_succeeds_with_zero_rates() {
    let log = Log::new();
    let r = run(parallel(4).build().unwrap(), Vec::new(), &log).await;
    assert_eq!((r.total, r.success_rate), (0, 0.0));
    assert!(r.all_succeeded());
    assert_eq!(r.metrics.timer("task_duration_ms").count, 0);
    assert_eq!(r.metrics.timer("execution_duration_ms").count, 1);
}

#[tokio::test(start_paused = true)]
async fn results_serialise_in_the_documented_shape() {
    let log = Log::new();
    let r = run(
        ParallelExecutor::builder()
            .continue_on_error(true)
            .build()
            .unwrap(),
        vec![task("ok@1500#1"), task("fail@10#2")],
        &log,
    )
    .await;
    let v = serde_json::to_value(&r).unwrap();
    for key in [
        "total",
        "succeeded",
        "failed",
        "cancelled",
        "skipped",
        "duration_ms",
        "success_rate",
        "metrics",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    let t = &v["succeeded"][0];
    assert_eq!(t["task"]["id"], "a:ok@1500#1");
    assert_eq!(t["task"]["agent"], "a");
    assert_eq!(t["status"], "success");
    assert_eq!(t["duration_ms"], 1500);
    assert_eq!(t["error"], serde_json::Value::Null);
    assert_eq!(t["exit_code"], serde_json::Value::Null);
    assert_eq!(t["attempts"], 1);
    let started = t["started_at"].as_str().unwrap();
    assert!(started.ends_with('Z') && started.contains('T'), "{started}");
    assert_eq!(v["failed"][0]["status"], "failed");
    let m = &v["metrics"];
    assert_eq!(m["counters"]["tasks_total"], 2);
    assert_eq!(m["gauges"]["parallel_limit"], 1.0);
    for timer in [
        "execution_duration_ms",
        "task_duration_ms",
        "semaphore_wait_ms",
    ] {
        for field in ["count", "sum", "min", "max", "avg", "p50", "p95"] {
            assert!(m["timers"][timer].get(field).is_some(), "{timer}.{field}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_agent_limit_caps_its_tasks_without_holding_global_slots() {
    let log = Log::new();
    let agents = Agents::new()
        .add_spec("api", common::scripted(&log).parallel_limit(1))
        .add_spec("a", common::scripted(&log));
    let tasks = vec![
        AgentTask::new("api", "ok@100#1"),
        AgentTask::new("api", "ok@100#2"),
        AgentTask::new("api", "ok@100#3"),
        AgentTask::new("a", "ok@100#4"),
        AgentTask::new("a", "ok@100#5"),
    ];
    let r = ParallelExecutor::builder()
        .parallel_limit(3)
        .build()
        .unwrap()
        .run_all(tasks, &agents)
        .await;
    assert_eq!(r.succeeded.len(), 5);
    assert_eq!(log.starts_of("api:ok@100#2"), [ms(100)]);
    assert_eq!(log.starts_of("api:ok@100#3"), [ms(200)]);
    assert_eq!(log.starts_of("a:ok@100#4"), [ms(0)]);
    assert_eq!(log.starts_of("a:ok@100#5"), [ms(0)]);
    assert_eq!(r.duration_ms, 300);
}

#[tokio::test(start_paused = true)]
async fn an_agent_limit_above_the_global_one_changes_nothing() {
    let log = Log::new();
    let agents = Agents::new().add_spec("a", common::scripted(&log).parallel_limit(100));
    let tasks = (0..6)
        .map(|i| task(&format!("ok@100#{i}")))
        .collect::<Vec<_>>();
    let r = ParallelExecutor::builder()
        .parallel_limit(3)
        .build()
        .unwrap()
        .run_all(tasks, &agents)
        .await;
    assert_eq!(r.duration_ms, 200);
    assert_eq!(log.peak(), 3);
}

#[tokio::test(start_paused = true)]
async fn agents_registry_accepts_shared_specs() {
    let log = Log::new();
    let spec: AgentSpec = common::scripted(&log);
    let agents = Agents::new()
        .add_spec("a", spec.clone())
        .add_spec("b", spec);
    let r = ParallelExecutor::builder()
        .build()
        .unwrap()
        .run_all(
            vec![AgentTask::new("a", "ok@1"), AgentTask::new("b", "ok@1")],
            &agents,
        )
        .await;
    assert_eq!(r.succeeded.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_agent_that_gives_up_when_stopped_is_cancelled_not_failed() {
    let agents = Agents::new().add("quick", |ctx: agent33_parallel::TaskContext| async move {
        if ctx.task().artifact == "fail" {
            tokio::time::sleep(ms(10)).await;
            return Err::<(), _>(agent33_parallel::AgentError::new("boom"));
        }
        ctx.token().cancelled().await;
        Err(agent33_parallel::AgentError::new("gave up"))
    });
    let r = parallel(2)
        .build()
        .unwrap()
        .run_all(
            vec![
                AgentTask::new("quick", "fail"),
                AgentTask::new("quick", "wait"),
            ],
            &agents,
        )
        .await;
    assert_eq!(r.failed.len(), 1);
    assert_eq!(r.cancelled.len(), 1);
    assert_eq!(
        r.cancelled[0].error.as_deref(),
        Some("cancelled: fail-fast after quick:fail failed")
    );
    assert!(r.cancelled[0].notes.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_panic_while_winding_down_is_kept_as_a_note() {
    let agents = Agents::new().add("p", |ctx: agent33_parallel::TaskContext| async move {
        ctx.token().cancelled().await;
        if ctx.attempt() > 0 {
            panic!("lost my temper");
        }
        Ok::<(), agent33_parallel::AgentError>(())
    });
    let r = parallel(1)
        .timeout(ms(500))
        .build()
        .unwrap()
        .run_all(vec![AgentTask::new("p", "x")], &agents)
        .await;
    let t = &r.failed[0];
    assert_eq!(t.status, TaskStatus::Timeout);
    assert_eq!(t.error.as_deref(), Some("timed out after 0.5s"));
    assert_eq!(t.notes, ["agent panicked: lost my temper"]);
}

#[tokio::test(start_paused = true)]
async fn notes_of_every_attempt_are_kept_and_name_their_attempt() {
    let agents = Agents::new().add("n", |ctx: agent33_parallel::TaskContext| async move {
        let attempt = ctx.attempt();
        let output = agent33_parallel::AgentOutput {
            notes: vec![format!("note {attempt}")],
            ..Default::default()
        };
        if attempt < 3 {
            Err(agent33_parallel::AgentError::with_output("again", output))
        } else {
            Ok(output)
        }
    });
    let r = parallel(1)
        .retries(2)
        .retry_backoff(ms(1))
        .build()
        .unwrap()
        .run_all(vec![AgentTask::new("n", "x")], &agents)
        .await;
    assert_eq!(r.succeeded.len(), 1);
    assert_eq!(
        r.succeeded[0].notes,
        ["attempt 1: note 1", "attempt 2: note 2", "note 3"]
    );
}

#[tokio::test(start_paused = true)]
async fn reported_usage_is_summed_over_attempts_and_absent_when_none() {
    use agent33_parallel::Usage;
    let agents = Agents::new()
        .add("model", |ctx: agent33_parallel::TaskContext| async move {
            let tokens = Usage {
                prompt_tokens: 10,
                completion_tokens: 3,
                total_tokens: 13,
            };
            // Two calls in the first attempt, one in the second.
            ctx.report_usage(tokens, Some(0.5));
            if ctx.attempt() == 1 {
                ctx.report_usage(tokens, None);
                return Err(agent33_parallel::AgentError::new("again"));
            }
            Ok(())
        })
        .add("plain", |_ctx: agent33_parallel::TaskContext| async move {
            Ok::<(), agent33_parallel::AgentError>(())
        });
    let r = parallel(1)
        .retries(1)
        .retry_backoff(ms(1))
        .build()
        .unwrap()
        .run_all(
            vec![AgentTask::new("model", "x"), AgentTask::new("plain", "y")],
            &agents,
        )
        .await;
    let model = &r.succeeded[0];
    assert_eq!(
        model.usage,
        Some(Usage {
            prompt_tokens: 30,
            completion_tokens: 9,
            total_tokens: 39,
        })
    );
    assert_eq!(model.cost_usd, Some(1.0));
    let json = serde_json::to_value(model).unwrap();
    assert_eq!(json["usage"]["total_tokens"], 39);
    assert_eq!(json["cost_usd"], 1.0);
    let plain = serde_json::to_value(&r.succeeded[1]).unwrap();
    assert!(plain.get("usage").is_none() && plain.get("cost_usd").is_none());
}

#[tokio::test(start_paused = true)]
async fn live_output_waiting_for_a_slow_consumer_is_bounded() {
    let agents = Agents::new().add(
        "firehose",
        |ctx: agent33_parallel::TaskContext| async move {
            let chunk = vec![b'x'; 1 << 20];
            // 40 MiB in one go: the consumer cannot read in between.
            for _ in 0..40 {
                ctx.write_stdout(&chunk);
            }
            Ok::<_, agent33_parallel::AgentError>(())
        },
    );
    let executor = ParallelExecutor::builder()
        .stream_output(true)
        .output_limit_bytes(1024)
        .build()
        .unwrap();
    let mut events = executor.run(
        vec![AgentTask::new("firehose", "x")],
        &agents,
        RunControl::new(),
    );
    let mut live = Vec::new();
    while let Some(e) = events.next().await {
        if let Event::TaskOutput { bytes, .. } = e {
            live.push(bytes);
        }
    }
    let shown: usize = live.iter().filter(|b| b[0] == b'x').map(Vec::len).sum();
    assert_eq!(shown, 16 << 20, "at most the live budget waits");
    let marker = String::from_utf8(live.last().unwrap().clone()).unwrap();
    assert_eq!(
        marker,
        format!("[agent-33: {} bytes not shown live]\n", 24 << 20)
    );
}

#[tokio::test(start_paused = true)]
async fn an_agent_that_returns_success_after_a_stop_is_cancelled() {
    // Fail-fast at 200 ms; `quit` answers its cancelled token at once with a
    // success. The stop came first: it was stopped, not successful.
    let log = Log::new();
    let tasks = vec![task("quit@5000#1"), task("fail@200#2"), task("quit@5000#3")];
    let r = run(parallel(3).build().unwrap(), tasks, &log).await;
    assert!(r.succeeded.is_empty(), "{:?}", ids(&r.succeeded));
    assert_eq!(ids(&r.cancelled), ["a:quit@5000#1", "a:quit@5000#3"]);
    for c in &r.cancelled {
        assert_eq!(c.status, TaskStatus::Cancelled);
        assert_eq!(
            c.error.as_deref(),
            Some("cancelled: fail-fast after a:fail@200#2 failed")
        );
        assert_eq!(c.duration_ms, 200);
    }
}

#[tokio::test(start_paused = true)]
async fn a_closure_that_panics_before_returning_its_future_fails_its_task() {
    let agents = Agents::new().add("a", |ctx: agent33_parallel::TaskContext| {
        let n: u32 = ctx.task().artifact.parse().expect("a number");
        async move { Ok::<_, agent33_parallel::AgentError>(format!("{n}")) }
    });
    let executor = ParallelExecutor::builder()
        .parallel_limit(2)
        .continue_on_error(true)
        .build()
        .unwrap();
    let tasks = vec![
        AgentTask::new("a", "1"),
        AgentTask::new("a", "x"),
        AgentTask::new("a", "3"),
    ];
    let r = executor.run_all(tasks, &agents).await;
    assert_eq!(r.total, 3);
    assert_eq!(ids(&r.succeeded), ["a:1", "a:3"]);
    assert_eq!(ids(&r.failed), ["a:x"]);
    let error = r.failed[0].error.as_deref().unwrap();
    assert!(error.starts_with("agent panicked: a number"), "{error}");
    assert_eq!(r.failed[0].attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_consumer_holds_the_run_back() {
    // No-op tasks and a consumer that takes a virtual millisecond per 100
    // events: without backpressure the dispatcher would run all of them
    // (it never waits, so the paused clock never moves) before the
    // consumer read its second hundred.
    const TASKS: usize = 100_000;
    let started = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&started);
    let agents = Agents::new().add("a", move |_ctx: agent33_parallel::TaskContext| {
        counter.fetch_add(1, Ordering::Relaxed);
        async { Ok::<_, agent33_parallel::AgentError>(()) }
    });
    let executor = parallel(64).build().unwrap();
    let tasks = (0..TASKS).map(|i| AgentTask::new("a", i.to_string()));
    let mut events = executor.run(tasks, &agents, RunControl::new());
    let mut read = 0usize;
    let mut finished = 0usize;
    let mut most_ahead = 0usize;
    while let Some(event) = events.next().await {
        read += 1;
        finished += usize::from(matches!(event, Event::TaskFinished { .. }));
        // Every started task has sent at least its queued and started events.
        let sent = 2 * started.load(Ordering::Relaxed);
        most_ahead = most_ahead.max(sent.saturating_sub(read));
        if read % 100 == 0 {
            tokio::time::sleep(ms(1)).await;
        }
    }
    assert_eq!(finished, TASKS);
    assert!(
        most_ahead <= 16_384,
        "the run got {most_ahead} events ahead of its consumer"
    );
}

#[tokio::test(start_paused = true)]
async fn run_all_takes_any_collection_or_iterator_of_tasks() {
    let log = Log::new();
    let executor = parallel(2).build().unwrap();
    let from_array = executor
        .run_all([task("ok@10#1"), task("ok@10#2")], &agents(&log))
        .await;
    assert_eq!(ids(&from_array.succeeded), ["a:ok@10#1", "a:ok@10#2"]);
    let made_as_read = executor
        .run_all((1..=3).map(|i| task(&format!("ok@10#{i}"))), &agents(&log))
        .await;
    assert_eq!(made_as_read.total, 3);
    // A stream needs neither boxing nor the futures crate.
    let streamed = executor
        .run_stream(
            agent33_parallel::stream::iter([task("ok@10#4")]),
            &agents(&log),
            RunControl::new(),
        )
        .collect_results()
        .await;
    assert_eq!(ids(&streamed.succeeded), ["a:ok@10#4"]);
}

#[tokio::test(start_paused = true)]
async fn agents_that_end_at_their_first_poll_keep_every_rule() {
    // Such attempts are polled by the dispatcher itself: their outcomes,
    // panics included, and the failure policy are the same as anyone's.
    let agents = Agents::new().add("now", |ctx: agent33_parallel::TaskContext| {
        let artifact = ctx.task().artifact.clone();
        async move {
            match artifact.as_str() {
                "fail" => Err(agent33_parallel::AgentError::new("boom")),
                "panic" => panic!("kaboom"),
                _ => Ok(format!("did {artifact}")),
            }
        }
    });
    let tasks = || ["a", "b", "panic", "c", "fail", "d", "e"].map(|a| AgentTask::new("now", a));
    let keep_going = parallel(4)
        .continue_on_error(true)
        .build()
        .unwrap()
        .run_all(tasks(), &agents)
        .await;
    assert_eq!(
        ids(&keep_going.succeeded),
        ["now:a", "now:b", "now:c", "now:d", "now:e"]
    );
    assert_eq!(ids(&keep_going.failed), ["now:panic", "now:fail"]);
    assert_eq!(keep_going.succeeded[0].output, "did a");
    assert!(
        keep_going.failed[0]
            .error
            .as_deref()
            .unwrap()
            .contains("kaboom")
    );
    let fail_fast = parallel(4).build().unwrap().run_all(tasks(), &agents).await;
    assert_eq!(ids(&fail_fast.succeeded), ["now:a", "now:b"]);
    assert_eq!(ids(&fail_fast.failed), ["now:panic"]);
    assert_eq!(fail_fast.cancelled.len(), 4);
    for c in &fail_fast.cancelled {
        assert_eq!(c.attempts, 0, "{c:?}");
        assert_eq!(
            c.error.as_deref(),
            Some("not started: fail-fast after now:panic failed")
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_run_with_live_output_ends() {
    // Live output travels beside the dispatcher's batches; the backlog
    // once counted it as read but never as sent, and the run never ended.
    let agents = Agents::new().add("live", |ctx: agent33_parallel::TaskContext| async move {
        for i in 0..3 {
            ctx.write_stdout(format!("line {i}\n").as_bytes());
            tokio::time::sleep(ms(10)).await;
        }
        Ok::<_, agent33_parallel::AgentError>(())
    });
    let executor = parallel(2).stream_output(true).build().unwrap();
    let tasks = (0..20).map(|i| AgentTask::new("live", i.to_string()));
    let mut events = executor.run(tasks, &agents, RunControl::new());
    let (mut lines, mut finished) = (0, 0);
    while let Some(event) = events.next().await {
        match event {
            Event::TaskOutput { .. } => lines += 1,
            Event::TaskFinished { .. } => finished += 1,
            _ => {}
        }
    }
    assert_eq!((finished, lines), (20, 60));
}

#[tokio::test(start_paused = true)]
async fn lossless_live_output_holds_writers_back_instead_of_dropping() {
    // A writer of 40 MiB in 1 MiB chunks, and a consumer that takes nothing
    // until the writer is stuck: every byte arrives, no "not shown" marker,
    // and the writer never ran more than the budget (16 MiB) and a chunk ahead.
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 40;
    let written = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&written);
    let agents = Agents::new().add("big", move |ctx: agent33_parallel::TaskContext| {
        let counter = Arc::clone(&counter);
        async move {
            let chunk = vec![b'x'; CHUNK];
            for _ in 0..CHUNKS {
                ctx.live_room().await;
                ctx.write_stdout(&chunk);
                counter.fetch_add(CHUNK, Ordering::SeqCst);
            }
            Ok::<_, agent33_parallel::AgentError>(())
        }
    });
    let executor = parallel(1)
        .stream_output(true)
        .lossless_live_output(true)
        .output_limit_bytes(0)
        .build()
        .unwrap();
    let mut events = executor.run([AgentTask::new("big", "a")], &agents, RunControl::new());
    // Let the writer run until it has to wait.
    tokio::time::sleep(ms(1000)).await;
    let ahead = written.load(Ordering::SeqCst);
    assert!(ahead <= (16 << 20) + CHUNK, "{ahead} bytes written unread");
    assert!(ahead >= 16 << 20, "{ahead}: the writer stopped early");
    let mut live = 0usize;
    while let Some(event) = events.next().await {
        if let Event::TaskOutput { bytes, .. } = event {
            assert!(bytes.iter().all(|&b| b == b'x'), "a marker was sent");
            live += bytes.len();
        }
    }
    assert_eq!(live, CHUNK * CHUNKS);
}

/// The first task of a run whose attempt waits for I/O (a request's
/// connection) gets that I/O served before the run starts the others: a
/// burst of 64 starts would otherwise make the first request wait for all
/// of them. Each agent waits for a datagram already sent to its socket,
/// which only the runtime's I/O driver reports, and notes how many tasks
/// had started by then.
#[tokio::test(flavor = "current_thread")]
async fn the_first_task_s_io_is_served_before_the_rest_start() {
    const TASKS: usize = 8;
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("a socket");
    let mut sockets = Vec::new();
    for _ in 0..TASKS {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("a socket");
        sender
            .send_to(b"x", socket.local_addr().expect("an address"))
            .expect("a datagram");
        sockets.push(Some(socket));
    }
    let sockets = Arc::new(std::sync::Mutex::new(sockets));
    let started = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(vec![0; TASKS]));
    let agents = {
        let (sockets, started, seen) = (sockets, Arc::clone(&started), Arc::clone(&seen));
        Agents::new().add("io", move |ctx: agent33_parallel::TaskContext| {
            let (started, seen) = (Arc::clone(&started), Arc::clone(&seen));
            let i: usize = ctx.task().artifact.parse().expect("a number");
            let socket = sockets.lock().expect("no panic while held")[i]
                .take()
                .expect("one attempt each");
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                socket.recv(&mut [0u8; 1]).await?;
                seen.lock().expect("no panic while held")[i] = started.load(Ordering::SeqCst);
                Ok::<_, std::io::Error>(())
            }
        })
    };
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| AgentTask::new("io", i.to_string()))
        .collect();
    let results = parallel(TASKS)
        .build()
        .expect("settings")
        .run_all(tasks, &agents)
        .await;
    assert_eq!(results.succeeded.len(), TASKS);
    let seen = seen.lock().expect("no panic while held").clone();
    assert_eq!(
        seen[0], 1,
        "tasks started when each one's datagram came: {seen:?}"
    );
}
