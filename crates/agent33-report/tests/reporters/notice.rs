//! Notices: the dependencies warning, a stop, a retry.

use agent33_parallel::{Event, StopReason};
use agent33_report::{NoticeReporter, Reporter, TerminalInfo};

use crate::fixtures::{Outcome, RunBuilder, SharedBuf};

#[test]
fn notices_are_single_lines() {
    let buf = SharedBuf::default();
    let mut notices = NoticeReporter::new(buf.boxed(), &TerminalInfo::plain());
    let mut run = RunBuilder::start(Some(1), 2);
    run.events.push(Event::DependenciesIgnored);
    run.queue(0, "c", "a");
    run.start_task(0, 0, 0, 0);
    run.retry(0, 0, 20, "exit code 1\ndetails");
    run.stopping(StopReason::Interrupted {
        by: Default::default(),
    });
    for e in &run.events {
        notices.on_event(e).unwrap();
    }
    insta::assert_snapshot!("notices", buf.text());
}

/// PRODUCT.md: escaped descendants that agent-33 had to kill are said on
/// the console, not only in the report's notes; every attempt's count.
#[test]
fn escaped_processes_killed_are_said() {
    let buf = SharedBuf::default();
    let mut notices = NoticeReporter::new(buf.boxed(), &TerminalInfo::plain());
    let mut run = RunBuilder::start(Some(3), 3);
    run.queue(0, "refinement", "x.md");
    run.queue(1, "refinement", "y.md");
    run.queue(2, "refinement", "z.md");
    for seq in 0..3 {
        run.start_task(seq, seq as usize, 0, 0);
    }
    run.finish_task(
        0,
        0,
        10,
        Outcome::success().notes(&["1 escaped process killed"]),
    );
    run.finish_task(
        1,
        1,
        20,
        Outcome::failed(1).notes(&[
            "attempt 1: stdout saved to out/y.md.stdout",
            "attempt 1: 2 escaped processes killed",
            "1 escaped process killed",
        ]),
    );
    run.finish_task(
        2,
        2,
        30,
        Outcome::success().notes(&["stdout saved to out/z"]),
    );
    for e in &run.events {
        notices.on_event(e).unwrap();
    }
    assert_eq!(
        buf.text(),
        "killed 1 escaped process of refinement:x.md\n\
         killed 3 escaped processes of refinement:y.md\n"
    );
}
