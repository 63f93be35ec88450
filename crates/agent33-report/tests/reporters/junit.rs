//! JUnit XML: suites per agent, cases per task, the status mapping, bounded
//! output, and atomic writing.

use agent33_parallel::{Event, Stream, TaskStatus};
use agent33_report::{JunitReporter, Reporter};
use quick_junit::{NonSuccessKind, Report, TestCaseStatus};

use crate::fixtures::{Outcome, RunBuilder, product_example, repeated_artifacts};

fn write(events: &[Event], configure: impl FnOnce(JunitReporter) -> JunitReporter) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junit.xml");
    let mut reporter = configure(JunitReporter::create(&path).unwrap());
    for e in events {
        reporter.on_event(e).unwrap();
    }
    assert!(!path.exists(), "written only at the end");
    reporter.finish().unwrap();
    let xml = std::fs::read_to_string(&path).unwrap();
    // Nothing but the report is left in the folder.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    xml
}

/// Every status, two agents, a retry that succeeded, a retry that failed
/// again, output with colour codes, and output over the limit.
fn mixed_run() -> Vec<Event> {
    let mut run = RunBuilder::start(Some(7), 2);
    run.queue(0, "refinement", "core/prompts/SYSTEM.md");
    run.queue(1, "validation", "core/agents/worker.md");
    run.queue(2, "refinement", "core/templates/README.md");
    run.queue(3, "validation", "core/agents/planner.md");
    run.queue(4, "refinement", "core/templates/flaky.md");
    run.queue(5, "validation", "core/agents/critic.md");
    run.queue(6, "validation", "core/agents/after-worker.md");
    run.start_task(0, 0, 0, 0);
    run.start_task(1, 1, 0, 0);
    run.output(1, Stream::Stdout, b"checking\n");
    run.finish_task(
        1,
        1,
        300,
        Outcome::failed(1).output(
            "checking\n\u{1b}[31mred\u{1b}[0m line\n",
            "worker.md:3: missing title\n",
        ),
    );
    run.settle(
        6,
        TaskStatus::Skipped,
        "skipped: dependency `validation:core/agents/worker.md` did not succeed",
    );
    run.start_task(4, 1, 310, 310);
    run.retry(4, 1, 900, "exit code 2");
    run.start_task(4, 1, 1_900, 0);
    run.finish_task(4, 1, 2_500, Outcome::success().output("fine now\n", ""));
    run.start_task(3, 1, 2_500, 2_500);
    run.retry(3, 1, 2_600, "exit code 7");
    run.start_task(3, 1, 3_600, 0);
    run.finish_task(3, 1, 3_700, Outcome::failed(7).output(&"x".repeat(100), ""));
    run.finish_task(
        0,
        0,
        5_000,
        Outcome::timeout("5s").output("refining…\n", ""),
    );
    run.settle(
        2,
        TaskStatus::Cancelled,
        "not started: fail-fast after refinement:core/prompts/SYSTEM.md timed out",
    );
    run.settle(
        5,
        TaskStatus::Cancelled,
        "not started: fail-fast after refinement:core/prompts/SYSTEM.md timed out",
    );
    run.finish(5_020, 2, 0.61, None)
}

#[test]
fn mixed_run_snapshot() {
    let xml = write(&mixed_run(), |r| r.output_limit(40));
    insta::assert_snapshot!("junit_mixed", xml);
}

#[test]
fn counts_and_mapping_read_back() {
    let xml = write(&mixed_run(), |r| r);
    let report = Report::deserialize_from_str(&xml).unwrap();
    assert_eq!(report.name.as_deref(), Some("agent-33"));
    assert_eq!(
        (report.tests, report.failures, report.errors, report.skipped),
        (7, 3, 0, 3)
    );
    let names: Vec<&str> = report.test_suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["refinement", "validation"]);
    let refinement = &report.test_suites[0];
    assert_eq!(
        (refinement.tests, refinement.failures, refinement.skipped),
        (3, 1, 1)
    );
    let validation = &report.test_suites[1];
    assert_eq!(
        (validation.tests, validation.failures, validation.skipped),
        (4, 2, 2)
    );
    // Cases in input order, classname = agent, name = id less `agent:`.
    let cases: Vec<(&str, &str)> = validation
        .test_cases
        .iter()
        .map(|c| (c.classname.as_deref().unwrap(), c.name.as_str()))
        .collect();
    assert_eq!(
        cases,
        [
            ("validation", "core/agents/worker.md"),
            ("validation", "core/agents/planner.md"),
            ("validation", "core/agents/critic.md"),
            ("validation", "core/agents/after-worker.md"),
        ]
    );
    match &refinement.test_cases[0].status {
        TestCaseStatus::NonSuccess {
            kind: NonSuccessKind::Failure,
            message,
            ty,
            ..
        } => {
            assert_eq!(message.as_deref(), Some("timed out after 5s"));
            assert_eq!(ty.as_deref(), Some("timeout"));
        }
        other => panic!("timeout mapped to {other:?}"),
    }
    match &validation.test_cases[3].status {
        TestCaseStatus::Skipped { message, .. } => assert_eq!(
            message.as_deref(),
            Some("skipped: dependency `validation:core/agents/worker.md` did not succeed")
        ),
        other => panic!("skipped mapped to {other:?}"),
    }
    // Output is kept for failures only, within the limit, colour removed.
    // (quick-junit's reader trims the text's final newline; the file keeps
    // it, as the snapshot shows.)
    let worker = &validation.test_cases[0];
    assert_eq!(worker.system_out.as_deref(), Some("checking\nred line"));
    assert_eq!(
        worker.system_err.as_deref(),
        Some("worker.md:3: missing title")
    );
    assert!(
        refinement.test_cases[2].system_out.is_none(),
        "success output left out"
    );
}

#[test]
fn success_output_can_be_kept() {
    let xml = write(&mixed_run(), |r| r.success_output(true));
    let report = Report::deserialize_from_str(&xml).unwrap();
    let flaky = &report.test_suites[0].test_cases[2];
    assert_eq!(flaky.system_out.as_deref(), Some("fine now"));
}

#[test]
fn product_example_has_one_suite_per_agent() {
    let xml = write(&product_example(), |r| r);
    let report = Report::deserialize_from_str(&xml).unwrap();
    assert_eq!((report.tests, report.failures, report.skipped), (12, 2, 0));
    let suites: Vec<(&str, usize)> = report
        .test_suites
        .iter()
        .map(|s| (s.name.as_str(), s.tests))
        .collect();
    assert_eq!(suites, [("refinement", 5), ("validation", 7)]);
}

/// Named by artifact, `x x x` were three cases all called `x`, which CI
/// systems merge or reject.
#[test]
fn repeated_artifacts_are_distinct_cases_named_by_id_without_the_agent() {
    let xml = write(&repeated_artifacts(), |r| r);
    let report = Report::deserialize_from_str(&xml).unwrap();
    let cases: Vec<(&str, &str, &str)> = report
        .test_suites
        .iter()
        .flat_map(|s| {
            s.test_cases.iter().map(move |c| {
                (
                    s.name.as_str(),
                    c.classname.as_deref().unwrap(),
                    c.name.as_str(),
                )
            })
        })
        .collect();
    assert_eq!(
        cases,
        [
            ("command", "command", "x"),
            ("command", "command", "x#2"),
            ("command", "command", "x#3"),
            ("lint", "lint", "check-x"),
        ]
    );
    assert!(matches!(
        report.test_suites[0].test_cases[1].status,
        TestCaseStatus::NonSuccess { .. }
    ));
}

#[test]
fn empty_run_has_no_testsuite() {
    let xml = write(
        &RunBuilder::start(Some(0), 4).finish(2, 0, 0.0, None),
        |r| r,
    );
    insta::assert_snapshot!("junit_empty", xml);
    assert!(!xml.contains("<testsuite "), "{xml}");
}

#[test]
fn an_unwritable_path_fails_at_creation() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    // A regular file cannot be a folder.
    let err = JunitReporter::create(file.join("junit.xml")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot write the JUnit report `"),
        "{err}"
    );
}

#[test]
fn a_task_on_a_worker_has_a_worker_property_and_a_timed_out_rerun_is_typed() {
    let xml = write(&crate::timeline::run_on_workers(), |r| r);
    assert!(
        xml.contains(r#"<property name="worker" value="w2"/>"#),
        "{xml}"
    );
    let mut run = RunBuilder::start(Some(1), 1);
    run.queue(0, "a", "x");
    run.start_task(0, 0, 0, 0);
    run.retry_as(0, 0, 100, TaskStatus::Timeout, "timed out after 0.1s");
    run.start_task(0, 0, 1_100, 0);
    run.finish_task(0, 0, 1_200, Outcome::success());
    let xml = write(&run.finish(1_200, 1, 0.5, None), |r| r);
    assert!(
        xml.contains(r#"<flakyFailure message="timed out after 0.1s" type="timeout">"#),
        "{xml}"
    );
    assert!(!xml.contains("worker"), "{xml}");
}
