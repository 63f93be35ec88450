//! The fan-out: every reporter sees every event; a failing one is set aside
//! and the others go on.

use agent33_parallel::Stream;
use agent33_report::{GroupedPrinter, Reporters, SummaryOptions, SummaryReporter};

use crate::fixtures::{ClosedPipe, SharedBuf, product_example};

#[test]
fn a_closed_stdout_is_reported_once_and_costs_nothing_else() {
    let err = SharedBuf::default();
    let mut reporters = Reporters::new()
        .with(GroupedPrinter::new(
            Stream::Stdout,
            Box::new(ClosedPipe),
            false,
        ))
        .with(GroupedPrinter::new(Stream::Stderr, err.boxed(), false))
        .with(SummaryReporter::new(err.boxed(), SummaryOptions::default()));
    let mut errors = Vec::new();
    for e in &product_example() {
        errors.extend(reporters.on_event(e));
    }
    errors.extend(reporters.finish());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].is_broken_pipe());
    assert_eq!(errors[0].to_string(), "cannot write task output to stdout");
    // The task's stderr block and the summary still arrived.
    let text = err.text();
    assert!(
        text.starts_with("── validation:core/agents/worker.md [stderr] (exit code 1, 0.3s) ──\n"),
        "{text}"
    );
    assert!(text.contains("Execution Summary\n"), "{text}");
}
