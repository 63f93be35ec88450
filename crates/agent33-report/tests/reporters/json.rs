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
