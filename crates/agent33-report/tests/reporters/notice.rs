//! Notices: the dependencies warning, a stop, a retry.

use agent33_parallel::{Event, StopReason};
use agent33_report::{NoticeReporter, Reporter, TerminalInfo};

use crate::fixtures::{RunBuilder, SharedBuf};

#[test]
fn notices_are_single_lines() {
    let buf = SharedBuf::default();
    let mut notices = NoticeReporter::new(buf.boxed(), &TerminalInfo::plain());
    let mut run = RunBuilder::start(Some(1), 2);
    run.events.push(Event::DependenciesIgnored);
    run.queue(0, "c", "a");
    run.start_task(0, 0, 0, 0);
    run.retry(0, 0, 20, "exit code 1\ndetails");
    run.stopping(StopReason::Interrupted { by: Default::default() });
    for e in &run.events {
        notices.on_event(e).unwrap();
    }
    insta::assert_snapshot!("notices", buf.text());
}
