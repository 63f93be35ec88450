//! The JSON report spills results to disk as they finish; the file must
//! still be byte for byte what serialising the whole document at the end
//! gave. `old_report` is that earlier implementation, kept as the oracle.

use agent33_parallel::{
    Event, ExecutionResults, Metrics, ResultsCollector, StopReason, Stream, TaskResult, TaskStatus,
    Timestamp,
};
use agent33_report::{AttemptRecord, JsonReporter, Reporter, TimelineBuilder};
use serde::Serialize;

use crate::fixtures::{Outcome, RunBuilder, eventful_run, large_run, product_example};
use crate::json::written;

#[derive(Serialize)]
struct Document<'a> {
    total: usize,
    succeeded: &'a [TaskResult],
    failed: &'a [TaskResult],
    cancelled: &'a [TaskResult],
    skipped: &'a [TaskResult],
    duration_ms: u64,
    success_rate: f64,
    metrics: &'a Metrics,
    started_at: Option<Timestamp>,
    stopped: Option<&'a StopReason>,
    attempts: &'a [AttemptRecord],
    input_order: Vec<&'a str>,
}

/// The report as the reporter wrote it when it kept every result.
fn old_report(events: &[Event]) -> String {
    let mut collector = ResultsCollector::new();
    let mut timeline = TimelineBuilder::new();
    for e in events {
        collector.observe(e);
        timeline.observe(e);
    }
    let results: ExecutionResults = collector.finish();
    let timeline = timeline.finish();
    let doc = Document {
        total: results.total,
        succeeded: &results.succeeded,
        failed: &results.failed,
        cancelled: &results.cancelled,
        skipped: &results.skipped,
        duration_ms: results.duration_ms,
        success_rate: results.success_rate,
        metrics: &results.metrics,
        started_at: timeline.started_at,
        stopped: timeline.stopped.as_ref(),
        attempts: &timeline.attempts,
        input_order: {
            let mut tasks: Vec<_> = timeline.tasks.iter().collect();
            tasks.sort_by_key(|t| t.seq);
            tasks.iter().map(|t| t.task.id.as_str()).collect()
        },
    };
    let mut out = serde_json::to_string_pretty(&doc).unwrap();
    out.push('\n');
    out
}

fn assert_same(events: &[Event]) {
    let new = written(events);
    let old = old_report(events);
    if new != old {
        let line = new
            .lines()
            .zip(old.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "reports differ from line {}:\nnew: {:?}\nold: {:?}",
            line + 1,
            new.lines().nth(line),
            old.lines().nth(line)
        );
    }
}

/// Every status, out-of-order finishes, retries, a resumed task, notes, and
/// outputs with newlines, quotes, control characters and non-ASCII text.
fn mixed_run() -> Vec<Event> {
    let mut run = RunBuilder::start(Some(8), 3);
    for (seq, artifact) in (0u64..).zip([
        "a.md", "b.md", "c.md", "d.md", "e.md", "f.md", "g.md", "h.md",
    ]) {
        run.queue(seq, "lint", artifact);
    }
    run.resume(0, 700);
    run.start_task(3, 0, 0, 0);
    run.start_task(1, 1, 0, 0);
    run.start_task(2, 2, 0, 0);
    run.output(3, Stream::Stdout, b"line one\n");
    run.retry(1, 1, 400, "exit code 75");
    run.finish_task(
        3,
        0,
        900,
        Outcome::success().output(
            "line one\n  indented \"quoted\"\n\ttab\r\n\u{1b}[31mred\u{1b}[0m é ✓\n",
            "warning: {\n  \"json\": [1, 2]\n}\n",
        ),
    );
    run.start_task(1, 1, 1_400, 0);
    run.start_task(4, 0, 900, 900);
    run.finish_task(4, 0, 1_500, Outcome::timeout("0.6s").output("partial", ""));
    run.finish_task(2, 2, 1_600, Outcome::failed(3).output("", "boom\n\n"));
    run.stopping(StopReason::FailFast {
        task: "lint:c.md".into(),
        how: "failed".to_owned(),
    });
    run.settle(
        7,
        TaskStatus::Skipped,
        "dependency `lint:c.md` did not succeed",
    );
    run.settle(5, TaskStatus::Cancelled, "not started: fail-fast");
    run.finish_task(1, 1, 1_700, Outcome::cancelled("fail-fast"));
    run.settle(6, TaskStatus::Cancelled, "not started: fail-fast");
    let mut events = run.finish(
        1_800,
        3,
        0.5,
        Some(StopReason::FailFast {
            task: "lint:c.md".into(),
            how: "failed".to_owned(),
        }),
    );
    for e in &mut events {
        if let Event::TaskFinished { seq: 2, result, .. } = e {
            result.notes = vec![
                "killed 2 escaped processes".to_owned(),
                "note with \"quotes\"\nand a newline".to_owned(),
            ];
        }
    }
    events
}

#[test]
fn matches_the_whole_document_serialised_at_once() {
    let events = mixed_run();
    // The fixture really exercises what it claims.
    let value: serde_json::Value = serde_json::from_str(&written(&events)).unwrap();
    for (list, n) in [
        ("succeeded", 2),
        ("failed", 2),
        ("cancelled", 3),
        ("skipped", 1),
    ] {
        assert_eq!(value[list].as_array().unwrap().len(), n, "{list}");
    }
    assert_eq!(value["succeeded"][0]["resumed"], true);
    assert_eq!(
        value["failed"][0]["notes"][1],
        "note with \"quotes\"\nand a newline"
    );
    assert_same(&events);
}

#[test]
fn matches_on_the_other_fixtures() {
    assert_same(&product_example());
    assert_same(&eventful_run("a.md"));
    assert_same(&RunBuilder::start(Some(0), 1).finish(1, 0, 0.0, None));
}

#[test]
fn matches_on_a_large_run_finishing_in_reverse() {
    let mut events = large_run(1_500, 8);
    // Reverse the finishes among themselves, keeping all else in place, so
    // the spill is in the opposite of input order.
    let finished: Vec<usize> = (0..events.len())
        .filter(|&i| matches!(events[i], Event::TaskFinished { .. }))
        .collect();
    for k in 0..finished.len() / 2 {
        events.swap(finished[k], finished[finished.len() - 1 - k]);
    }
    assert_same(&events);
}

#[test]
fn matches_when_far_more_tasks_finish_out_of_order_than_it_keeps_in_memory() {
    // The index keeps a couple of thousand entries in memory and sorts the
    // rest on disk in runs: shuffling every finish of 6,000 tasks makes
    // many runs of results, attempts and ids to merge back.
    let mut events = large_run(6_000, 8);
    let finished: Vec<usize> = (0..events.len())
        .filter(|&i| matches!(events[i], Event::TaskFinished { .. }))
        .collect();
    let mut state = 0x2545_f491_u64;
    for k in (1..finished.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let j = usize::try_from(state >> 33).unwrap() % (k + 1);
        events.swap(finished[k], finished[j]);
    }
    assert_same(&events);
}

#[test]
fn matches_when_the_run_never_finished() {
    let mut events = eventful_run("a.md");
    events.pop();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::RunFinished { .. }))
    );
    assert_same(&events);
}

/// Retries (failed and timed out) on several slots, attempts starting at
/// the same instant, and finishes far from start order.
fn retried_run() -> Vec<Event> {
    let mut run = RunBuilder::start(Some(6), 3);
    for seq in 0..6 {
        run.queue(seq, "check", &format!("{seq}.md"));
    }
    run.start_task(2, 0, 0, 0);
    run.start_task(0, 1, 0, 0);
    run.start_task(1, 2, 0, 0);
    run.retry_as(0, 1, 100, TaskStatus::Timeout, "timed out after 0.1s");
    run.retry(2, 0, 100, "exit code 75");
    run.start_task(3, 0, 100, 100);
    run.start_task(4, 1, 100, 100);
    run.start_task(2, 0, 1_100, 0);
    run.start_task(0, 1, 1_100, 0);
    run.retry(2, 0, 1_200, "exit code 75");
    run.finish_task(4, 1, 1_300, Outcome::success());
    run.finish_task(3, 0, 1_300, Outcome::failed(4).output("", "no\n"));
    run.start_task(5, 1, 1_300, 1_300);
    run.start_task(2, 0, 2_200, 0);
    run.finish_task(0, 1, 2_300, Outcome::timeout("0.1s"));
    run.finish_task(5, 1, 2_300, Outcome::success().output("five\n", ""));
    run.finish_task(2, 0, 2_400, Outcome::success());
    run.finish_task(1, 2, 2_500, Outcome::success());
    run.finish(2_500, 3, 0.7, None)
}

#[test]
fn matches_with_retries_and_finishes_out_of_order() {
    let events = retried_run();
    let value: serde_json::Value = serde_json::from_str(&written(&events)).unwrap();
    assert_eq!(value["attempts"].as_array().unwrap().len(), 9);
    assert_same(&events);
}

#[test]
fn matches_when_the_events_stop_anywhere() {
    // Cut short at every point: attempts still running at the end, tasks
    // queued but never started, no `RunFinished`.
    for events in [retried_run(), mixed_run(), eventful_run("a.md")] {
        for n in 0..=events.len() {
            assert_same(&events[..n]);
        }
    }
    let mut events = retried_run();
    events.truncate(16);
    let value: serde_json::Value = serde_json::from_str(&written(&events)).unwrap();
    let unfinished = value["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["finished_at"].is_null())
        .count();
    assert_eq!(unfinished, 5);
    assert_same(&events);
}

#[test]
fn matches_on_events_no_engine_sends() {
    let base = retried_run();
    let queued = |e: &Event| matches!(e, Event::TaskQueued { .. });
    // No `TaskQueued` at all: tasks known only from attempts and results.
    let unqueued: Vec<Event> = base.iter().filter(|e| !queued(e)).cloned().collect();
    assert_same(&unqueued);
    // Nor results: tasks known only from their attempts.
    let attempts_only: Vec<Event> = unqueued
        .iter()
        .filter(|e| !matches!(e, Event::TaskFinished { .. }))
        .cloned()
        .collect();
    assert_same(&attempts_only);
    // Queued in reverse, some twice under another id, one result under
    // another id, and an attempt started twice over at the same instant.
    let mut odd: Vec<Event> = base.iter().filter(|e| queued(e)).rev().cloned().collect();
    for e in base.iter().filter(|e| queued(e)).take(3) {
        let Event::TaskQueued { seq, task } = e else {
            unreachable!()
        };
        let mut other = (**task).clone();
        other.id = format!("other:{seq}").as_str().into();
        odd.push(Event::TaskQueued {
            seq: *seq,
            task: std::sync::Arc::new(other),
        });
    }
    for e in base.iter().filter(|e| !queued(e)) {
        let mut e = e.clone();
        if let Event::TaskFinished { seq: 5, result, .. } = &mut e {
            let mut task = (*result.task).clone();
            task.id = "renamed:5".into();
            result.task = std::sync::Arc::new(task);
        }
        if matches!(e, Event::TaskStarted { seq: 1, .. }) {
            odd.push(e.clone());
        }
        odd.push(e);
    }
    assert_same(&odd);
    // In order, with a result renamed and a task queued twice.
    let mut renamed = base.clone();
    for e in &mut renamed {
        if let Event::TaskFinished { seq: 3, result, .. } = e {
            let mut task = (*result.task).clone();
            task.id = "renamed:3".into();
            result.task = std::sync::Arc::new(task);
        }
    }
    let again = renamed[3].clone();
    renamed.insert(8, again);
    assert_same(&renamed);
    for n in 0..=renamed.len() {
        assert_same(&renamed[..n]);
    }
}

#[test]
fn large_outputs_come_back_whole() {
    let big = "x\"y\n".repeat(300_000);
    let mut run = RunBuilder::start(Some(3), 2);
    for seq in 0..3 {
        run.queue(seq, "lint", &format!("{seq}.md"));
    }
    run.start_task(0, 0, 0, 0);
    run.start_task(1, 1, 0, 0);
    run.finish_task(1, 1, 10, Outcome::success().output(&big, &big));
    run.start_task(2, 1, 10, 10);
    run.finish_task(2, 1, 20, Outcome::failed(1).output("", &big));
    run.finish_task(0, 0, 30, Outcome::success().output("small", ""));
    let events = run.finish(30, 2, 1.0, None);
    assert_same(&events);
}

#[test]
fn the_spill_file_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.json");
    let mut reporter = JsonReporter::create(&path).unwrap();
    for e in &mixed_run() {
        reporter.on_event(e).unwrap();
    }
    reporter.finish().unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["results.json"]);
}
