//! The reporters against the real engine's event stream: what they write
//! agrees with the results the engine returns.

use std::time::Duration;

use agent33_parallel::{
    AgentError, AgentTask, Agents, ParallelExecutor, ResultsCollector, RunControl, TaskContext,
};
use agent33_report::{
    JsonReporter, OutputMode, Reporters, Summary, SummaryOptions, SummaryReporter, Suspender,
    TerminalInfo,
};

use crate::fixtures::SharedBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reporters_agree_with_the_engines_results() {
    let agents = Agents::new().add("lint", |ctx: TaskContext| async move {
        let artifact = ctx.task().artifact.clone();
        ctx.write_stdout(format!("checking {artifact}\n").as_bytes());
        tokio::time::sleep(Duration::from_millis(5)).await;
        if artifact.starts_with("bad") {
            Err(AgentError::new("exit code 1"))
        } else {
            ctx.write_stdout(b"done");
            Ok(())
        }
    });
    let executor = ParallelExecutor::builder()
        .parallel_limit(3)
        .continue_on_error(true)
        .stream_output(true)
        .build()
        .unwrap();
    let tasks: Vec<AgentTask> = ["a", "bad1", "b", "c", "bad2", "d"]
        .into_iter()
        .map(|a| AgentTask::new("lint", a))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("results.json");
    let (out, err, summary) = (
        SharedBuf::default(),
        SharedBuf::default(),
        SharedBuf::default(),
    );
    let mut reporters = Reporters::new();
    for p in OutputMode::Stream.printers(
        out.boxed(),
        err.boxed(),
        &TerminalInfo::plain(),
        &Suspender::none(),
    ) {
        reporters.push(p);
    }
    reporters.push(Box::new(JsonReporter::create(&json).unwrap()));
    let mut reporters = reporters.with(SummaryReporter::new(
        summary.boxed(),
        SummaryOptions::default(),
    ));
    let mut collector = ResultsCollector::new();
    let mut events = executor.run(tasks, &agents, RunControl::new());
    while let Some(event) = events.next_event().await {
        assert!(reporters.on_event(&event).is_empty());
        collector.observe(&event);
    }
    assert!(reporters.finish().is_empty());
    let results = collector.finish();

    assert_eq!((results.total, results.failed.len()), (6, 2));
    let text = summary.text();
    assert_eq!(
        text,
        Summary::from_results(&results, SummaryOptions::default()).render()
    );
    assert!(
        text.contains("Tasks: 6 total, 4 succeeded, 2 failed, 0 timeout, 0 cancelled, 0 skipped\n"),
        "{text}"
    );
    assert!(
        text.ends_with("Failed: lint:bad1 (exit code 1), lint:bad2 (exit code 1)\n"),
        "{text}"
    );
    // Every streamed line is prefixed; the unterminated "done" ends at the finish.
    let out = out.text();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6 + 4, "{lines:?}");
    assert!(lines.iter().all(|l| l.starts_with("[lint:")), "{lines:?}");
    assert!(lines.contains(&"[lint:c] done"), "{lines:?}");
    // Timestamps are written to the millisecond, so compare as JSON; the
    // report adds top-level fields (`attempts`…), so compare what the engine has.
    let mut written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(written["attempts"].as_array().unwrap().len(), 6);
    let doc = written.as_object_mut().unwrap();
    for added in ["attempts", "input_order", "started_at", "stopped"] {
        doc.remove(added).unwrap();
    }
    assert_eq!(written, serde_json::to_value(&results).unwrap());
}
