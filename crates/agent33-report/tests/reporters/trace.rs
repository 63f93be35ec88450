//! The Chrome trace: the structure Perfetto and chrome://tracing read.

use agent33_report::{Reporter, Timeline, TraceReporter, trace_json};
use serde_json::Value;

use crate::fixtures::{MALICIOUS, eventful_run};

fn events_of(trace: &Value, ph: &str) -> Vec<Value> {
    trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == ph)
        .cloned()
        .collect()
}

#[test]
fn one_complete_event_per_attempt_on_its_slots_thread() {
    let trace = trace_json(&Timeline::from_events(&eventful_run("a.md")));
    let complete = events_of(&trace, "X");
    assert_eq!(complete.len(), 6);
    for e in &complete {
        assert_eq!(e["pid"], 1);
        assert!(e["ts"].is_u64() || e["ts"].is_i64(), "{e}");
        assert!(e["dur"].is_u64() || e["dur"].is_i64(), "{e}");
        assert!(e["name"].as_str().unwrap().starts_with("lint:"));
        assert_eq!(e["cat"], "lint");
        assert_eq!(e["args"]["agent"], "lint");
    }
    // The retried attempt of lint:b.md and its cancelled second attempt.
    let b: Vec<&Value> = complete
        .iter()
        .filter(|e| e["name"] == "lint:b.md")
        .collect();
    assert_eq!(b.len(), 2);
    assert_eq!(b[0]["tid"], 1);
    assert_eq!(
        (b[0]["ts"].as_i64(), b[0]["dur"].as_i64()),
        (Some(0), Some(500_000))
    );
    assert_eq!(b[0]["args"]["status"], "failed");
    assert_eq!(b[0]["args"]["error"], "exit code 75");
    assert_eq!(b[0]["args"]["attempt"], 1);
    assert_eq!(b[1]["args"]["status"], "cancelled");
    assert_eq!(b[1]["ts"], 1_500_000);
    let d = complete.iter().find(|e| e["name"] == "lint:d.md").unwrap();
    assert_eq!(d["args"]["waited_ms"], 1_000);
    assert_eq!(d["args"]["artifact"], "d.md");
    assert_eq!(d["cname"], "bad");
}

#[test]
fn threads_are_named_after_slots_and_sorted() {
    let trace = trace_json(&Timeline::from_events(&eventful_run("a.md")));
    let meta = events_of(&trace, "M");
    let names: Vec<(i64, String)> = meta
        .iter()
        .filter(|e| e["name"] == "thread_name")
        .map(|e| {
            (
                e["tid"].as_i64().unwrap(),
                e["args"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            (0, "slot 0".into()),
            (1, "slot 1".into()),
            (2, "slot 2".into())
        ]
    );
    assert!(
        meta.iter()
            .any(|e| e["name"] == "process_name" && e["pid"] == 1)
    );
    assert_eq!(
        meta.iter()
            .filter(|e| e["name"] == "thread_sort_index")
            .count(),
        3
    );
}

#[test]
fn counters_follow_running_and_waiting_attempts() {
    let trace = trace_json(&Timeline::from_events(&eventful_run("a.md")));
    let counters = events_of(&trace, "C");
    let at = |ts: i64| {
        counters.iter().find(|e| e["ts"] == ts).map(|e| {
            (
                e["args"]["running"].as_i64().unwrap(),
                e["args"]["waiting"].as_i64().unwrap(),
            )
        })
    };
    assert_eq!(at(0), Some((3, 2))); // d.md and e.md ready from the start
    assert_eq!(at(500_000), Some((2, 2))); // b.md fails
    assert_eq!(at(1_000_000), Some((2, 1))); // a.md ends, d.md starts after its wait
    assert_eq!(at(2_100_000), None);
    let last = counters.last().unwrap();
    assert_eq!(
        (
            last["args"]["running"].as_i64(),
            last["args"]["waiting"].as_i64()
        ),
        (Some(0), Some(0))
    );
    // The stop is a global instant.
    let instant = events_of(&trace, "i");
    assert_eq!(instant.len(), 1);
    assert_eq!(instant[0]["ts"], 2_000_000);
    assert_eq!(instant[0]["s"], "g");
}

#[test]
fn the_trace_is_written_atomically_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out/trace.json");
    let mut reporter = TraceReporter::create(&path).unwrap();
    for e in &eventful_run(MALICIOUS) {
        reporter.on_event(e).unwrap();
    }
    assert!(!path.exists(), "written only at the end");
    reporter.finish().unwrap();
    let trace: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(events_of(&trace, "X").len(), 6);
    assert_eq!(trace["displayTimeUnit"], "ms");
    assert_eq!(trace["otherData"]["parallel_limit"], 3);
    let first = events_of(&trace, "X")
        .into_iter()
        .find(|e| e["args"]["artifact"] == MALICIOUS);
    assert!(first.is_some());
    assert_eq!(
        std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
        1
    );
}

#[test]
fn an_attempt_on_a_worker_names_it() {
    let trace = trace_json(&Timeline::from_events(&crate::timeline::run_on_workers()));
    let names: Vec<_> = events_of(&trace, "X")
        .iter()
        .map(|e| e["args"]["worker"].as_str().unwrap_or("-").to_owned())
        .collect();
    assert_eq!(names, ["w1", "w1", "w2", "w2"]);
}
