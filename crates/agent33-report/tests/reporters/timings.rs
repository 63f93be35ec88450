//! The HTML timings page: self-contained, the data blob complete, and no
//! way for a task's name to become markup.

use agent33_report::{Reporter, Timeline, TimingsReporter, write_timings};
use serde_json::Value;

use crate::fixtures::{MALICIOUS, eventful_run, product_example};

pub fn page(events: &[agent33_parallel::Event]) -> String {
    let mut out = Vec::new();
    write_timings(&Timeline::from_events(events), &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// The JSON inside `<script type="application/json" id="agent33-data">`.
pub fn blob(html: &str) -> Value {
    let open = r#"<script type="application/json" id="agent33-data">"#;
    let start = html.find(open).expect("the data script") + open.len();
    let len = html[start..].find("</script>").expect("its end");
    serde_json::from_str(&html[start..start + len]).expect("the blob is JSON")
}

#[test]
fn the_blob_holds_every_task_and_attempt() {
    let html = page(&eventful_run("a.md"));
    let data = blob(&html);
    assert_eq!(data["version"], 1);
    assert_eq!(data["tasks"].as_array().unwrap().len(), 7);
    assert_eq!(data["attempts"].as_array().unwrap().len(), 6);
    assert_eq!(data["run"]["limit"], 3);
    assert_eq!(data["run"]["lanes"], 3);
    assert_eq!(data["run"]["stopped_at"], 2_000);
    assert_eq!(data["run"]["wall_ms"], 2_100);
    assert_eq!(
        data["summary"]["counts"],
        serde_json::json!([1, 2, 1, 2, 1])
    );
    assert_eq!(data["statuses"][2], "timeout");
    // Task 3 (lint:d.md): its id is agent:artifact, so it is left out.
    let d = &data["tasks"][3];
    assert_eq!(d[0], 3);
    assert!(d[1].is_null());
    assert_eq!(data["agents"][d[2].as_u64().unwrap() as usize], "lint");
    assert_eq!(d[3], "d.md");
    assert_eq!(d[11], 1_000, "first queue wait");
    // The abandoned retry: task 4's only attempt, its own error kept.
    let e = data["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a[0] == 4)
        .unwrap();
    assert_eq!(e[3], 1_800);
    assert_eq!(e[4], 1_900);
    assert_eq!(e[7], "exit code 2");
    assert_eq!(e[8], 1, "the last attempt");
}

#[test]
fn the_page_is_self_contained() {
    let html = page(&product_example());
    assert!(html.starts_with("<!DOCTYPE html>"));
    for outside in ["http://", "https://", "<link", "@import", "url(", " src="] {
        assert!(
            !html.contains(outside),
            "the page refers outside: {outside}"
        );
    }
    assert!(html.contains("<canvas id=\"gantt\""));
    assert!(html.contains(r#"<body data-js-errors="0">"#));
}

#[test]
fn a_malicious_artifact_stays_data() {
    let html = page(&eventful_run(MALICIOUS));
    // The only script ends are the page's own two (the JSON's and the code's).
    assert_eq!(
        html.matches("</script>").count(),
        3,
        "error counter, data, code"
    );
    assert!(!html.contains("<img"));
    assert!(!html.contains("<!--"));
    // …and it decodes back to exactly the name.
    let data = blob(&html);
    assert_eq!(data["tasks"][0][3], MALICIOUS);
    assert_eq!(data["tasks"][0][1], serde_json::Value::Null);
    // The code puts names into the page as text only.
    assert!(!html.contains("innerHTML"));
    assert!(!html.contains("insertAdjacentHTML"));
    assert!(!html.contains("document.write"));
}

#[test]
fn the_reporter_writes_the_page_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("timings.html");
    std::fs::write(&path, "previous").unwrap();
    let mut reporter = TimingsReporter::create(&path).unwrap();
    let events = eventful_run("a.md");
    for e in &events {
        reporter.on_event(e).unwrap();
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "previous");
    reporter.finish().unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), page(&events));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn an_empty_run_has_a_page_too() {
    let events = crate::fixtures::RunBuilder::start(Some(0), 4).finish(3, 0, 0.0, None);
    let data = blob(&page(&events));
    assert_eq!(data["tasks"].as_array().unwrap().len(), 0);
    assert_eq!(data["attempts"].as_array().unwrap().len(), 0);
    assert_eq!(data["run"]["limit"], 4);
}

#[test]
fn attempts_on_workers_get_a_lane_group_per_worker() {
    let data = blob(&page(&crate::timeline::run_on_workers()));
    // Each worker ran two attempts at once (on w2, task 2 and task 0's
    // second attempt overlap): two lanes each, labelled on the first.
    assert_eq!(
        data["run"]["lane_labels"],
        serde_json::json!(["w1", "", "w2", ""])
    );
    assert_eq!(data["run"]["lanes"], 4);
    let lanes: Vec<(u64, u64, u64, &str)> = data["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a[0].as_u64().unwrap(),
                a[1].as_u64().unwrap(),
                a[9].as_u64().unwrap(),
                a[10].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lanes,
        [
            (0, 1, 0, "w1"),
            (1, 1, 1, "w1"),
            (2, 1, 2, "w2"),
            (0, 2, 3, "w2")
        ]
    );
    // A local run keeps one lane per slot, unlabelled.
    let local = blob(&page(&eventful_run("a.md")));
    assert!(local["run"]["lane_labels"].is_null());
    assert!(local["attempts"][0][10].is_null());
}

#[test]
fn deferrals_are_marked_as_such() {
    use crate::fixtures::{Outcome, RunBuilder};
    let mut run = RunBuilder::start(Some(1), 1);
    run.queue(0, "refine", "a.md");
    run.start_task(0, 0, 0, 0);
    run.defer(0, 0, 50, 1);
    run.start_task(0, 0, 600, 0);
    run.finish_task(0, 0, 900, Outcome::success());
    let events = run.finish(900, 1, 0.5, None);
    let timeline = Timeline::from_events(&events);
    let flags: Vec<(u32, bool)> = timeline
        .attempts
        .iter()
        .map(|a| (a.attempt, a.deferred))
        .collect();
    assert_eq!(flags, [(1, true), (1, false)], "a deferral is no attempt");
    let data = blob(&page(&events));
    let marks: Vec<&Value> = data["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a[11])
        .collect();
    assert_eq!(marks, [1, 0]);
    assert!(page(&events).contains("deferred (rate limited)"));
}

/// A run of one task whose provider is halved and paused at its deferral,
/// written by the reporter that samples the provider's limit.
pub fn page_with_a_provider_limit() -> String {
    use std::sync::{Arc, Mutex};

    use agent33_report::{LimitStatus, TimingsReporter};

    use crate::fixtures::{Outcome, RunBuilder};
    let mut run = RunBuilder::start(Some(1), 4);
    run.queue(0, "refine", "a.md");
    run.start_task(0, 0, 0, 0);
    run.defer(0, 0, 50, 1);
    run.start_task(0, 0, 600, 0);
    run.finish_task(0, 0, 900, Outcome::success());
    let events = run.finish(900, 1, 0.5, None);
    let status = |limit, paused: bool| LimitStatus {
        name: "openai".into(),
        limit,
        max: 4,
        paused: paused.then(|| std::time::Duration::from_millis(500)),
    };
    let now = Arc::new(Mutex::new(status(4, false)));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.html");
    let shared = Arc::clone(&now);
    let mut reporter = TimingsReporter::create(&path)
        .unwrap()
        .limits(Arc::new(move || vec![shared.lock().unwrap().clone()]));
    for (i, e) in events.iter().enumerate() {
        // Halved and paused from the deferral on, resumed at the next start.
        if matches!(e, agent33_parallel::Event::TaskDeferred { .. }) {
            *now.lock().unwrap() = status(2, true);
        }
        if i + 2 == events.len() {
            *now.lock().unwrap() = status(2, false);
        }
        reporter.on_event(e).unwrap();
    }
    reporter.finish().unwrap();
    std::fs::read_to_string(&path).unwrap()
}

#[test]
fn provider_limits_are_drawn_from_their_changes() {
    let data = blob(&page_with_a_provider_limit());
    let limits = data["limits"].as_array().expect("the provider's limit");
    assert_eq!(limits.len(), 1);
    assert_eq!(limits[0][0], "openai");
    assert_eq!(limits[0][1], 4);
    let points: Vec<(u64, u64)> = limits[0][2]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[1].as_u64().unwrap(), p[2].as_u64().unwrap()))
        .collect();
    assert_eq!(points, [(4, 0), (2, 1), (2, 0)], "only the changes");
    // A run without providers has no such key.
    assert!(blob(&page(&eventful_run("a.md"))).get("limits").is_none());
}
