//! Reports from a saved run: events → JSON report → replay gives the same
//! timeline, and the same JUnit and summary as the live run.

use agent33_parallel::{Event, ExecutionResults, ResultsCollector};
use agent33_report::{
    JunitReporter, Reporter, Reporters, SavedReport, SummaryOptions, SummaryReporter, Timeline,
    TimingsReporter, TraceReporter,
};

use crate::fixtures::{MALICIOUS, SharedBuf, at, eventful_run, large_run, product_example};
use crate::json::written;

fn saved(events: &[Event]) -> SavedReport {
    SavedReport::from_json(&written(events)).unwrap()
}

#[test]
fn a_saved_report_replays_to_the_same_timeline() {
    for events in [
        eventful_run("a.md"),
        eventful_run(MALICIOUS),
        product_example(),
        large_run(300, 6),
    ] {
        let live = Timeline::from_events(&events);
        let replayed = saved(&events).timeline();
        assert_eq!(replayed.attempts, live.attempts);
        assert_eq!(replayed.tasks, live.tasks);
        assert_eq!(replayed, live);
    }
}

#[test]
fn a_saved_report_replays_to_the_same_results() {
    let events = eventful_run("a.md");
    let mut live = ResultsCollector::new();
    live.observe_all(events.clone());
    let mut again = ResultsCollector::new();
    again.observe_all(saved(&events).events());
    assert_eq!(again.finish(), live.finish());
}

fn junit(events: impl IntoIterator<Item = Event>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junit.xml");
    let mut r = JunitReporter::create(&path).unwrap();
    for e in events {
        r.on_event(&e).unwrap();
    }
    r.finish().unwrap();
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn junit_and_summary_from_a_saved_report_match_the_live_ones() {
    let events = eventful_run("a.md");
    let replayed = saved(&events).events();
    assert_eq!(junit(replayed.clone()), junit(events.clone()));
    let summary = |events: &[Event]| {
        let buf = SharedBuf::default();
        let mut r = SummaryReporter::new(buf.boxed(), SummaryOptions::default());
        for e in events {
            r.on_event(e).unwrap();
        }
        r.finish().unwrap();
        buf.text()
    };
    assert_eq!(summary(&replayed), summary(&events));
}

#[test]
fn replay_drives_the_file_reporters() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("run.json");
    std::fs::write(&report, written(&eventful_run("a.md"))).unwrap();
    let (html, trace) = (dir.path().join("t.html"), dir.path().join("t.json"));
    let saved = SavedReport::from_path(&report).unwrap();
    let mut reporters = Reporters::new()
        .with(TimingsReporter::create(&html).unwrap())
        .with(TraceReporter::create(&trace).unwrap());
    let mut errors = saved.replay(&mut reporters);
    errors.extend(reporters.finish());
    assert!(errors.is_empty(), "{errors:?}");
    let live = crate::timings::page(&eventful_run("a.md"));
    assert_eq!(std::fs::read_to_string(&html).unwrap(), live);
    let trace: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    assert_eq!(
        trace["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["ph"] == "X")
            .count(),
        6
    );
}

#[test]
fn without_attempts_each_started_task_is_one_bar_in_the_lowest_free_lane() {
    // Plain ExecutionResults, as an older agent-33 or another tool wrote it.
    let mut collector = ResultsCollector::new();
    collector.observe_all(eventful_run("a.md"));
    let results: ExecutionResults = collector.finish();
    let text = serde_json::to_string(&results).unwrap();
    let saved = SavedReport::from_json(&text).unwrap();
    assert!(saved.attempts().is_none());
    let t = saved.timeline();
    let bars: Vec<_> = t
        .attempts
        .iter()
        .map(|a| {
            (
                a.id.as_str(),
                a.slot,
                a.started_at,
                a.finished_at,
                a.attempt,
            )
        })
        .collect();
    assert_eq!(
        bars,
        [
            // Started at 0: a, c and b take lanes 0, 1, 2 (without `seq`,
            // ties keep the lists' order); b's two attempts merge into one.
            ("lint:a.md", 0, at(0), Some(at(1_000)), 1),
            ("lint:c.md", 1, at(0), Some(at(1_800)), 1),
            ("lint:b.md", 2, at(0), Some(at(2_050)), 2),
            // Each later bar takes the lowest lane free at its start.
            ("lint:d.md", 0, at(1_000), Some(at(2_000)), 1),
            ("lint:e.md", 1, at(1_800), Some(at(2_000)), 1),
        ]
    );
    // Without seq, tasks are ordered by start, the never-started last.
    let order: Vec<&str> = t.tasks.iter().map(|r| r.task.artifact.as_str()).collect();
    assert_eq!(
        order,
        ["a.md", "c.md", "b.md", "d.md", "e.md", "f.md", "g.md"]
    );
    assert_eq!(t.tasks.len(), 7);
    assert_eq!(t.parallel_limit, Some(3));
}

#[test]
fn an_unreadable_report_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.json");
    let err = SavedReport::from_path(&missing).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot read the report `{}`", missing.display())
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"total\": 1}").unwrap();
    let err = SavedReport::from_path(&bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("`{}` is not an agent-33 JSON report", bad.display())
    );
    assert!(std::error::Error::source(&err).is_some());
}

/// A run resuming from a journal: task 0 succeeded in an earlier run (an
/// hour before) and is not run again; task 1 runs.
fn resumed_run() -> Vec<Event> {
    use crate::fixtures::{Outcome, RunBuilder};

    let mut run = RunBuilder::start(Some(2), 2);
    run.queue(0, "lint", "old.md");
    run.resume(0, 700);
    run.queue(1, "lint", "new.md");
    run.start_task(1, 0, 0, 0);
    run.finish_task(1, 0, 400, Outcome::success());
    run.finish(450, 1, 0.45, None)
}

#[test]
fn a_resumed_task_has_no_bar_and_replays_the_same() {
    let events = resumed_run();
    let live = Timeline::from_events(&events);
    assert_eq!(live.attempts.len(), 1);
    assert!(live.tasks[0].resumed);
    assert_eq!(live.wall_ms(), 450.0);
    assert_eq!(saved(&events).timeline(), live);
    let data = crate::timings::blob(&crate::timings::page(&events));
    let old = &data["tasks"][0];
    assert_eq!(
        (old[7].is_null(), old[8].is_null(), &old[12]),
        (true, true, &serde_json::json!(1))
    );
    // Without attempts in the file, it is still not drawn.
    let mut collector = ResultsCollector::new();
    collector.observe_all(events);
    let plain = serde_json::to_string(&collector.finish()).unwrap();
    let t = SavedReport::from_json(&plain).unwrap().timeline();
    assert_eq!(t.attempts.len(), 1);
    assert_eq!(t.attempts[0].id, "lint:new.md");
}
