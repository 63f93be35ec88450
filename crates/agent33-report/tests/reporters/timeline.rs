//! The timeline: one record per attempt, from the events alone.

use agent33_parallel::{StopReason, TaskStatus};
use agent33_report::Timeline;

use crate::fixtures::{Outcome, RunBuilder, at, eventful_run, product_example};

#[test]
fn every_attempt_is_a_record_with_its_slot_times_status_and_wait() {
    let t = Timeline::from_events(&eventful_run("a.md"));
    let rows: Vec<_> = t
        .attempts
        .iter()
        .map(|a| {
            (
                a.seq,
                a.attempt,
                a.slot,
                a.started_at,
                a.finished_at,
                a.status,
                a.error.as_deref(),
                a.waited_ms,
            )
        })
        .collect();
    use TaskStatus::*;
    let why = "cancelled: fail-fast after lint:d.md failed";
    assert_eq!(
        rows,
        [
            (0, 1, 0, at(0), Some(at(1_000)), Success, None, 0),
            (
                1,
                1,
                1,
                at(0),
                Some(at(500)),
                Failed,
                Some("exit code 75"),
                0
            ),
            (
                2,
                1,
                2,
                at(0),
                Some(at(1_800)),
                Timeout,
                Some("timed out after 1.8s"),
                0
            ),
            (
                3,
                1,
                0,
                at(1_000),
                Some(at(2_000)),
                Failed,
                Some("exit code 1"),
                1_000
            ),
            (1, 2, 1, at(1_500), Some(at(2_050)), Cancelled, Some(why), 0),
            // Abandoned in its backoff: the attempt ended at the retry, and
            // keeps that attempt's own error.
            (
                4,
                1,
                2,
                at(1_800),
                Some(at(1_900)),
                Failed,
                Some("exit code 2"),
                1_800
            ),
        ]
    );
    assert_eq!(t.tasks.len(), 7);
    assert_eq!(t.tasks[5].status, Some(Cancelled));
    assert_eq!(t.tasks[6].status, Some(Skipped));
    assert_eq!(t.lanes(), 3);
    assert_eq!(t.parallel_limit, Some(3));
    assert!(matches!(t.stopped, Some(StopReason::FailFast { .. })));
    // Fail-fast began when the task that fired it finished.
    assert_eq!(t.stopped_at, Some(at(2_000)));
    assert_eq!(t.duration_ms, Some(2_100));
}

#[test]
fn figures_come_from_the_engines_metrics_when_the_run_finished() {
    let t = Timeline::from_events(&product_example());
    let f = t.figures();
    assert_eq!((f.total, f.counts), (12, [10, 1, 1, 0, 0]));
    assert_eq!((f.limit, f.peak, f.utilization), (4, 4, 0.78));
    assert_eq!(f.wall_ms, 45_300.0);
    assert_eq!(f.task_ms.count, 12);
}

#[test]
fn figures_are_computed_when_the_run_did_not_finish() {
    let mut events = product_example();
    events.pop(); // no RunFinished
    let f = Timeline::from_events(&events).figures();
    assert_eq!(f.peak, 4);
    assert_eq!(f.limit, 4);
    assert_eq!(f.task_ms.count, 12);
    // Busy 45.6 s on 4 slots over the last finish (4 lanes end at 14.52 s,
    // 14.52 s, 14.52 s and 9.3 + … s): between 0 and 1.
    assert!(f.utilization > 0.5 && f.utilization <= 1.0, "{f:?}");
}

#[test]
fn an_attempt_the_events_never_end_is_cut_short() {
    let mut events = eventful_run("a.md");
    // Keep everything up to the second start of task 1.
    let cut = events
        .iter()
        .position(|e| {
            matches!(
                e,
                agent33_parallel::Event::TaskStarted {
                    seq: 1,
                    attempt: 2,
                    ..
                }
            )
        })
        .unwrap();
    events.truncate(cut + 1);
    let t = Timeline::from_events(&events);
    let open = t
        .attempts
        .iter()
        .find(|a| a.seq == 1 && a.attempt == 2)
        .unwrap();
    assert_eq!(open.finished_at, None);
    assert_eq!(t.tasks[1].status, None);
    assert_eq!(t.tasks[1].attempts, 2);
    assert_eq!(t.duration_ms, None);
}

#[test]
fn a_retried_attempt_has_the_status_its_event_states_whatever_its_error_says() {
    let mut run = RunBuilder::start(Some(2), 2);
    run.queue(0, "a", "x");
    run.queue(1, "a", "y");
    run.start_task(0, 0, 0, 0);
    run.start_task(1, 1, 0, 0);
    // An agent-enforced timeout in other words, and a failure whose
    // message happens to quote a timeout.
    run.retry_as(0, 0, 100, TaskStatus::Timeout, "deadline passed on w1");
    run.retry_as(
        1,
        1,
        100,
        TaskStatus::Failed,
        "test said: timed out after 1s",
    );
    run.start_task(0, 0, 1_100, 0);
    run.start_task(1, 1, 1_100, 0);
    run.finish_task(0, 0, 1_200, Outcome::success());
    run.finish_task(1, 1, 1_200, Outcome::success());
    let t = Timeline::from_events(&run.finish(1_200, 2, 0.5, None));
    let first: Vec<_> = t
        .attempts
        .iter()
        .filter(|a| a.attempt == 1)
        .map(|a| (a.seq, a.status))
        .collect();
    assert_eq!(first, [(0, TaskStatus::Timeout), (1, TaskStatus::Failed)]);
}

/// Two tasks on worker `w1` at once, one on `w2`; task 0's first execution
/// is lost on `w1` and it runs again on `w2`.
pub fn run_on_workers() -> Vec<agent33_parallel::Event> {
    let mut run = RunBuilder::start(Some(3), 4);
    for (seq, artifact) in ["a", "b", "c"].iter().enumerate() {
        run.queue(seq as u64, "remote", artifact);
    }
    run.start_task(0, 0, 0, 0);
    run.start_task(1, 1, 0, 0);
    run.start_task(2, 2, 0, 0);
    run.retry_on(
        0,
        0,
        300,
        TaskStatus::Failed,
        "worker w1 lost after 0.3s",
        Some("w1"),
    );
    run.start_task(0, 0, 300, 0);
    run.finish_task(1, 1, 400, Outcome::success().on("w1"));
    run.finish_task(2, 2, 500, Outcome::success().on("w2"));
    run.finish_task(
        0,
        0,
        900,
        Outcome {
            notes: vec!["attempt 1: worker w1 lost after 0.3s".to_owned()],
            ..Outcome::success().on("w2")
        },
    );
    run.finish(900, 3, 0.5, None)
}

#[test]
fn attempts_and_tasks_name_the_worker_they_ran_on() {
    let t = Timeline::from_events(&run_on_workers());
    let workers: Vec<_> = t
        .attempts
        .iter()
        .map(|a| (a.seq, a.attempt, a.worker.as_deref()))
        .collect();
    assert_eq!(
        workers,
        [
            (0, 1, Some("w1")),
            (1, 1, Some("w1")),
            (2, 1, Some("w2")),
            (0, 2, Some("w2")),
        ]
    );
    assert_eq!(t.tasks[0].worker.as_deref(), Some("w2"));
    // A local run names no worker.
    let local = Timeline::from_events(&eventful_run("a.md"));
    assert!(local.attempts.iter().all(|a| a.worker.is_none()));
    assert!(local.tasks.iter().all(|t| t.worker.is_none()));
}
