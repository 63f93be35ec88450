//! The console summary: PRODUCT.md's pinned shape, letter for letter.

use agent33_parallel::{Event, ResultsCollector, StopReason, TaskStatus};
use agent33_report::{Reporter, Summary, SummaryOptions, SummaryReporter};

use crate::fixtures::{Outcome, RunBuilder, SharedBuf, product_example};

fn render(events: &[Event], options: SummaryOptions) -> String {
    let buf = SharedBuf::default();
    let mut reporter = SummaryReporter::new(buf.boxed(), options);
    for e in events {
        reporter.on_event(e).unwrap();
    }
    // Nothing is printed before the run is over.
    assert_eq!(buf.text(), "");
    reporter.finish().unwrap();
    buf.text()
}

#[test]
fn product_example_renders_exactly_as_pinned() {
    let expected = "\
Execution Summary
=================
Duration: 45.3s
Tasks: 12 total, 10 succeeded, 1 failed, 1 timeout, 0 cancelled, 0 skipped
Avg task time: 3.8s
Parallel utilization: 78%
Peak concurrent: 4/4
Failed: validation:core/agents/worker.md (exit code 1), refinement:core/prompts/SYSTEM.md (timed out after 300s)
";
    assert_eq!(
        render(&product_example(), SummaryOptions::default()),
        expected
    );
}

#[test]
fn summary_from_results_matches_summary_from_events() {
    let events = product_example();
    let mut collector = ResultsCollector::new();
    for e in &events {
        collector.observe(e);
    }
    let results = collector.finish();
    assert_eq!(
        Summary::from_results(&results, SummaryOptions::default()).render(),
        render(&events, SummaryOptions::default())
    );
}

#[test]
fn all_succeeded_has_no_failed_line() {
    let mut run = RunBuilder::start(Some(2), 2);
    run.queue(0, "lint", "a.md");
    run.queue(1, "lint", "b.md");
    run.start_task(0, 0, 0, 0);
    run.start_task(1, 1, 0, 0);
    run.finish_task(0, 0, 40, Outcome::success());
    run.finish_task(1, 1, 1_250, Outcome::success());
    let text = render(
        &run.finish(1_262, 2, 0.512, None),
        SummaryOptions::default(),
    );
    insta::assert_snapshot!("all_succeeded", text);
}

#[test]
fn empty_run_shows_a_dash_for_the_average() {
    let run = RunBuilder::start(Some(0), 4);
    let text = render(&run.finish(3, 0, 0.0, None), SummaryOptions::default());
    insta::assert_snapshot!("empty_run", text);
}

/// A fail-fast run with thousands of cancellations: the failure that caused
/// it comes first; the default names ten tasks and counts the rest, as does
/// a library user's own cap.
#[test]
fn failed_line_is_capped_with_failures_first() {
    let n = 10_000u64;
    let mut run = RunBuilder::start(Some(n as usize), 4);
    for seq in 0..n {
        run.queue(seq, "command", &format!("item-{seq:05}"));
    }
    run.start_task(0, 0, 0, 0);
    run.start_task(1, 1, 0, 0);
    run.start_task(2, 2, 0, 0);
    run.start_task(3, 3, 0, 0);
    run.finish_task(0, 0, 100, Outcome::success());
    run.finish_task(2, 2, 2_000, Outcome::failed(3));
    let reason = StopReason::FailFast {
        task: "command:item-00002".into(),
        how: "failed".to_owned(),
    };
    run.stopping(reason.clone());
    run.finish_task(
        1,
        1,
        2_050,
        Outcome {
            status: TaskStatus::Cancelled,
            error: Some("cancelled: fail-fast after command:item-00002 failed".to_owned()),
            exit_code: None,
            ..Outcome::success()
        },
    );
    run.finish_task(3, 3, 2_050, Outcome::success());
    // Cancelled in reverse input order: the list must still be in input order.
    for seq in (4..n).rev() {
        run.settle(
            seq,
            TaskStatus::Cancelled,
            "not started: fail-fast after command:item-00002 failed",
        );
    }
    let events = run.finish(2_060, 4, 0.49, Some(reason));
    let text = render(
        &events,
        SummaryOptions {
            failed_limit: 5,
            details: false,
        },
    );
    insta::assert_snapshot!("fail_fast_capped", text);
    let default = render(&events, SummaryOptions::default());
    let failed = default.lines().last().unwrap();
    assert_eq!(failed.matches(" (").count(), 10, "{failed}");
    assert!(
        failed.starts_with(
            "Failed: command:item-00002 (exit code 3), command:item-00001 (cancelled: "
        ),
        "{failed}"
    );
    assert!(
        failed.ends_with(
            ", command:item-00011 (not started: fail-fast after command:item-00002 failed), \
             … and 9988 more"
        ),
        "{failed}"
    );
    let none = render(
        &events,
        SummaryOptions {
            failed_limit: 0,
            details: false,
        },
    );
    assert!(none.ends_with("\nFailed: … and 9998 more\n"), "{none}");
}

/// PRODUCT.md: the `Failed:` line names at most 10 tasks, then `… and N
/// more`; 500 failures must not make it a line of 500 names.
#[test]
fn five_hundred_failures_name_ten_by_default() {
    let n = 500u64;
    let mut run = RunBuilder::start(Some(n as usize), 8);
    for seq in 0..n {
        run.queue(seq, "check", &format!("f{seq:03}"));
    }
    for seq in 0..n {
        run.start_task(seq, 0, seq * 10, 0);
        run.finish_task(seq, 0, seq * 10 + 5, Outcome::failed(1));
    }
    let text = render(&run.finish(5_000, 8, 0.1, None), SummaryOptions::default());
    let failed = text.lines().last().unwrap();
    let names: Vec<String> = (0..10)
        .map(|i| format!("check:f{i:03} (exit code 1)"))
        .collect();
    assert_eq!(
        failed,
        format!("Failed: {}, … and 490 more", names.join(", ")),
        "{text}"
    );
}

#[test]
fn skipped_and_cancelled_come_after_failures_and_errors_show_their_first_line() {
    let mut run = RunBuilder::start(Some(4), 1);
    run.queue(0, "build", "x");
    run.queue(1, "test", "x");
    run.queue(2, "deploy", "x");
    run.queue(3, "lint", "x");
    run.settle(
        1,
        TaskStatus::Skipped,
        "skipped: dependency `build:x` did not succeed",
    );
    run.start_task(0, 0, 0, 0);
    run.finish_task(
        0,
        0,
        50,
        Outcome {
            error: Some("agent panicked: boom\nstack backtrace:\n  0: main".to_owned()),
            exit_code: None,
            ..Outcome::failed(1)
        },
    );
    run.settle(2, TaskStatus::Cancelled, "not started: interrupted");
    run.start_task(3, 0, 60, 60);
    run.finish_task(3, 0, 4_000, Outcome::success());
    let text = render(
        &run.finish(
            4_010,
            1,
            0.995,
            Some(StopReason::Interrupted {
                by: Default::default(),
            }),
        ),
        SummaryOptions::default(),
    );
    insta::assert_snapshot!("mixed_statuses", text);
}

#[test]
fn details_add_lines_after_the_pinned_ones() {
    let events = product_example();
    let plain = render(&events, SummaryOptions::default());
    let detailed = render(
        &events,
        SummaryOptions {
            details: true,
            ..SummaryOptions::default()
        },
    );
    assert!(
        detailed.starts_with(&plain),
        "pinned lines first, unchanged"
    );
    insta::assert_snapshot!("details", detailed);
}

#[test]
fn a_run_without_run_finished_still_gets_a_summary() {
    let mut run = RunBuilder::start(Some(1), 2);
    run.queue(0, "lint", "a.md");
    run.start_task(0, 0, 0, 0);
    run.finish_task(0, 0, 1_000, Outcome::failed(2));
    let text = render(&run.events, SummaryOptions::default());
    let lines: Vec<&str> = text.lines().collect();
    // The wall time is measured from RunStarted's fixed timestamp, so only
    // the shape is checked; utilization is unknown without the metrics.
    assert!(lines[2].starts_with("Duration: "), "{text}");
    assert_eq!(
        &lines[3..],
        [
            "Tasks: 1 total, 0 succeeded, 1 failed, 0 timeout, 0 cancelled, 0 skipped",
            "Avg task time: 1.0s",
            "Parallel utilization: -",
            "Peak concurrent: 1/2",
            "Failed: lint:a.md (exit code 2)",
        ]
    );
}

#[test]
fn short_durations_are_seconds_with_three_decimals() {
    let mut run = RunBuilder::start(Some(1), 1);
    run.queue(0, "echo", "a");
    run.start_task(0, 0, 0, 0);
    run.finish_task(0, 0, 7, Outcome::success());
    let text = render(&run.finish(12, 1, 0.583, None), SummaryOptions::default());
    assert!(text.contains("Duration: 0.012s\n"), "{text}");
    assert!(text.contains("Avg task time: 0.007s\n"), "{text}");
    assert!(text.contains("Parallel utilization: 58%\n"), "{text}");
}

/// Tasks resumed from a journal did not start in this run: they count as
/// succeeded but stay out of the average and the slowest list.
#[test]
fn resumed_tasks_do_not_count_as_started() {
    let details = SummaryOptions {
        details: true,
        ..SummaryOptions::default()
    };
    let mut run = RunBuilder::start(Some(2), 2);
    run.queue(0, "command", "a");
    run.queue(1, "command", "b");
    run.resume(0, 600);
    run.resume(1, 650);
    let events = run.finish(3, 0, 0.0, None);
    let text = render(&events, details);
    assert!(
        text.contains("Tasks: 2 total, 2 succeeded, 0 failed"),
        "{text}"
    );
    assert!(text.contains("Avg task time: -\n"), "{text}");
    assert!(!text.contains("Slowest:"), "{text}");
    let mut collector = ResultsCollector::new();
    for e in &events {
        collector.observe(e);
    }
    assert_eq!(
        Summary::from_results(&collector.finish(), details).render(),
        text
    );

    let mut run = RunBuilder::start(Some(2), 2);
    run.queue(0, "command", "a");
    run.queue(1, "command", "b");
    run.resume(0, 9_000);
    run.start_task(1, 0, 0, 0);
    run.finish_task(1, 0, 400, Outcome::success());
    let text = render(&run.finish(410, 1, 0.49, None), details);
    assert!(text.contains("Avg task time: 0.4s\n"), "{text}");
    assert!(text.ends_with("Slowest: command:b (0.4s)\n"), "{text}");
}

/// The run's metrics with an LLM provider's counters, as the CLI adds them.
fn with_llm(mut events: Vec<Event>, priced: bool, rate_limited: u64) -> Vec<Event> {
    let Some(Event::RunFinished { metrics, .. }) = events.last_mut() else {
        panic!("the run finished")
    };
    for (name, value) in [
        ("llm_requests", 1_204),
        ("llm_rate_limited", rate_limited),
        ("llm_prompt_tokens", 1_204_000),
        ("llm_completion_tokens", 340_000),
    ] {
        metrics.counters.insert(name.to_owned(), value);
    }
    if priced {
        metrics.amounts.insert("llm_cost_usd".to_owned(), 1.2749);
    }
    events
}

fn one_task_run() -> Vec<Event> {
    let mut run = RunBuilder::start(Some(1), 1);
    run.queue(0, "refine", "a.md");
    run.start_task(0, 0, 0, 0);
    run.finish_task(0, 0, 1_000, Outcome::success());
    run.finish(1_000, 1, 1.0, None)
}

#[test]
fn llm_runs_get_their_line_after_peak_concurrent() {
    let text = render(
        &with_llm(one_task_run(), true, 37),
        SummaryOptions::default(),
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        &lines[6..],
        [
            "Peak concurrent: 1/1",
            "LLM: 1,204 requests, 37 rate-limited, 1.2M tokens in, 340k out, $1.27",
        ],
        "{text}"
    );
    let unpriced = render(
        &with_llm(one_task_run(), false, 0),
        SummaryOptions::default(),
    );
    assert!(
        unpriced.ends_with("LLM: 1,204 requests, 0 rate-limited, 1.2M tokens in, 340k out\n"),
        "{unpriced}"
    );
    let plain = render(&one_task_run(), SummaryOptions::default());
    assert!(!plain.contains("LLM:"), "{plain}");
}
