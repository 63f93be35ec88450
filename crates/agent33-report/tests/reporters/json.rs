//! The JSON report: well-formed, the engine's `ExecutionResults`, atomic.

use agent33_parallel::{ExecutionResults, ResultsCollector};
use agent33_report::{JsonReporter, Reporter};

use crate::fixtures::{RunBuilder, product_example};

#[test]
fn report_is_the_engines_execution_results() {
    let events = product_example();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out").join("results.json");
    let mut reporter = JsonReporter::create(&path).unwrap();
    let mut collector = ResultsCollector::new();
    for e in &events {
        reporter.on_event(e).unwrap();
        collector.observe(e);
    }
    assert!(!path.exists(), "written only at the end");
    reporter.finish().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.ends_with("}\n"));
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["total"], 12);
    assert_eq!(value["failed"][1]["status"], "timeout");
    assert_eq!(value["failed"][0]["started_at"], "2026-01-01T00:00:00.000Z");
    assert_eq!(value["metrics"]["gauges"]["parallel_utilization"], 0.78);
    let back: ExecutionResults = serde_json::from_str(&text).unwrap();
    assert_eq!(back, collector.finish());
    // Only the report is left in its folder.
    assert_eq!(
        std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
        1
    );
}

#[test]
fn empty_run_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.json");
    let mut reporter = JsonReporter::create(&path).unwrap();
    for e in &RunBuilder::start(Some(0), 1).finish(1, 0, 0.0, None) {
        reporter.on_event(e).unwrap();
    }
    reporter.finish().unwrap();
    insta::assert_snapshot!("json_empty", std::fs::read_to_string(&path).unwrap());
}

#[test]
fn an_existing_report_is_replaced_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.json");
    std::fs::write(&path, "previous").unwrap();
    let mut reporter = JsonReporter::create(&path).unwrap();
    for e in &product_example() {
        reporter.on_event(e).unwrap();
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "previous");
    reporter.finish().unwrap();
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(value["total"], 12);
}

#[test]
fn a_failed_write_names_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("gone");
    let path = folder.join("results.json");
    let mut reporter = JsonReporter::create(&path).unwrap();
    // The folder disappears during the run: the rename cannot happen.
    std::fs::remove_dir_all(&folder).unwrap();
    let err = reporter.finish().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot write the JSON report `{}`", path.display())
    );
    assert!(!err.is_broken_pipe());
    assert!(!path.exists());
}

/// Every key and value of `expected` is in `actual` (which may have more).
fn assert_contains(actual: &serde_json::Value, expected: &serde_json::Value, path: &str) {
    use serde_json::Value;
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            for (k, v) in e {
                let Some(av) = a.get(k) else {
                    panic!("{path}.{k} is missing");
                };
                assert_contains(av, v, &format!("{path}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(e)) => {
            assert_eq!(a.len(), e.len(), "{path}: length");
            for (i, (av, ev)) in a.iter().zip(e).enumerate() {
                assert_contains(av, ev, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(actual, expected, "{path}"),
    }
}

pub fn written(events: &[agent33_parallel::Event]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.json");
    let mut reporter = JsonReporter::create(&path).unwrap();
    for e in events {
        reporter.on_event(e).unwrap();
    }
    reporter.finish().unwrap();
    std::fs::read_to_string(&path).unwrap()
}

#[test]
fn additions_never_change_the_execution_results_fields() {
    let events = crate::fixtures::eventful_run("a.md");
    let mut collector = ResultsCollector::new();
    collector.observe_all(events.clone());
    let engine = serde_json::to_value(collector.finish()).unwrap();
    let value: serde_json::Value = serde_json::from_str(&written(&events)).unwrap();
    assert_contains(&value, &engine, "");
    // What is added, and nothing else.
    let mut added: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| engine.get(k.as_str()).is_none())
        .map(String::as_str)
        .collect();
    added.sort_unstable();
    assert_eq!(added, ["attempts", "input_order", "started_at", "stopped"]);
    // Each task result is exactly PRODUCT.md's TaskResult.
    for list in ["succeeded", "failed", "cancelled", "skipped"] {
        for r in value[list].as_array().unwrap() {
            let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(
                keys,
                [
                    "attempts",
                    "duration_ms",
                    "error",
                    "exit_code",
                    "finished_at",
                    "output",
                    "started_at",
                    "status",
                    "stderr",
                    "task"
                ],
                "{list}"
            );
            let mut task: Vec<&str> = r["task"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            task.sort_unstable();
            assert_eq!(task, ["agent", "artifact", "id"]);
        }
    }
}

#[test]
fn attempts_are_listed_with_slots_times_and_waits() {
    let value: serde_json::Value =
        serde_json::from_str(&written(&crate::fixtures::eventful_run("a.md"))).unwrap();
    let attempts = value["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 6);
    let d = attempts.iter().find(|a| a["id"] == "lint:d.md").unwrap();
    assert_eq!(
        d,
        &serde_json::json!({
            "seq": 3, "id": "lint:d.md", "attempt": 1, "slot": 0,
            "started_at": "2026-01-01T00:00:01.000Z",
            "finished_at": "2026-01-01T00:00:02.000Z",
            "status": "failed", "error": "exit code 1", "waited_ms": 1000,
        })
    );
    assert_eq!(value["started_at"], "2026-01-01T00:00:00.000Z");
    assert_eq!(value["stopped"]["kind"], "fail_fast");
    assert_eq!(value["stopped"]["task"], "lint:d.md");
    // Input order survives the split into four lists.
    let order: Vec<&str> = value["input_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let listed: Vec<&str> = ["succeeded", "failed", "cancelled", "skipped"]
        .iter()
        .flat_map(|l| value[*l].as_array().unwrap())
        .map(|r| r["task"]["id"].as_str().unwrap())
        .collect();
    let seqs: Vec<usize> = listed
        .iter()
        .map(|id| order.iter().position(|o| o == id).unwrap())
        .collect();
    assert_eq!(seqs, [0, 2, 3, 4, 1, 5, 6]);
}

#[test]
fn a_task_names_its_worker_only_when_it_ran_on_one() {
    let doc: serde_json::Value =
        serde_json::from_str(&written(&crate::timeline::run_on_workers())).unwrap();
    let tasks = doc["succeeded"].as_array().unwrap();
    let workers: Vec<_> = tasks.iter().map(|t| t["worker"].as_str()).collect();
    assert_eq!(workers, [Some("w2"), Some("w1"), Some("w2")]);
    assert_eq!(tasks[0]["notes"][0], "attempt 1: worker w1 lost after 0.3s");
    assert_eq!(doc["attempts"][0]["worker"], "w1");
    // Locally, and for tasks that never started, there is no such key.
    let local: serde_json::Value =
        serde_json::from_str(&written(&crate::fixtures::eventful_run("a.md"))).unwrap();
    for list in ["succeeded", "failed", "cancelled", "skipped"] {
        for t in local[list].as_array().unwrap() {
            assert!(t.get("worker").is_none(), "{t}");
        }
    }
    for a in local["attempts"].as_array().unwrap() {
        assert!(a.get("worker").is_none(), "{a}");
    }
}
