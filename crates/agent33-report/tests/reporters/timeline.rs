//! The timeline: one record per attempt, from the events alone.

use agent33_parallel::{StopReason, TaskStatus};
use agent33_report::Timeline;

use crate::fixtures::{at, eventful_run, product_example};

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
