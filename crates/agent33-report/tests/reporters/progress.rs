//! Progress off a terminal: plain lines on a clock, never one per task.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent33_parallel::Event;
use agent33_report::{ProgressReporter, Reporter, TerminalInfo};

use crate::fixtures::{Outcome, RunBuilder, SharedBuf};

/// A clock the test moves by hand.
#[derive(Clone)]
struct ManualClock(Arc<Mutex<Instant>>);

impl ManualClock {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(Instant::now())))
    }

    fn advance(&self, secs: f64) {
        *self.0.lock().unwrap() += Duration::from_secs_f64(secs);
    }

    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
}

fn lines_reporter(buf: &SharedBuf, clock: &ManualClock) -> ProgressReporter {
    let c = clock.clone();
    ProgressReporter::lines(buf.boxed()).clock(move || c.now())
}

#[test]
fn lines_come_on_a_clock_not_per_task() {
    let buf = SharedBuf::default();
    let clock = ManualClock::new();
    let mut progress = lines_reporter(&buf, &clock);
    let n = 100u64;
    let mut run = RunBuilder::start(Some(n as usize), 4);
    for seq in 0..n {
        run.queue(seq, "c", &format!("{seq}"));
    }
    for e in &run.events {
        progress.on_event(e).unwrap();
    }
    run.events.clear();
    // 100 tasks finishing 0.1 s apart: 10 s in all.
    for seq in 0..n {
        run.start_task(seq, 0, 0, 0);
        for e in run.events.drain(..) {
            progress.on_event(&e).unwrap();
        }
        let outcome = if seq % 10 == 9 {
            Outcome::failed(1)
        } else {
            Outcome::success()
        };
        run.finish_task(seq, 0, 1, outcome);
        clock.advance(0.1);
        for e in run.events.drain(..) {
            progress.on_event(&e).unwrap();
        }
    }
    for e in run.finish(10_000, 1, 0.4, None) {
        progress.on_event(&e).unwrap();
    }
    progress.finish().unwrap();
    assert_eq!(
        buf.text(),
        "\
progress: 10/100 done, 0 running, 1 failed, 1.0s elapsed, ETA 9.0s
progress: 60/100 done, 0 running, 6 failed, 6.0s elapsed, ETA 4.0s
"
    );
}

#[test]
fn a_quiet_stretch_gets_a_heartbeat_through_tick() {
    let buf = SharedBuf::default();
    let clock = ManualClock::new();
    let mut progress = lines_reporter(&buf, &clock);
    let mut run = RunBuilder::start(None, 2);
    run.queue(0, "c", "slow");
    run.start_task(0, 0, 0, 0);
    for e in &run.events {
        progress.on_event(e).unwrap();
    }
    // Something changed (one task running): a line after 5 s.
    clock.advance(5.0);
    progress.tick().unwrap();
    // Nothing changes: silence until the 30 s heartbeat.
    for _ in 0..5 {
        clock.advance(5.0);
        progress.tick().unwrap();
    }
    clock.advance(5.0);
    progress.tick().unwrap();
    assert_eq!(
        buf.text(),
        "\
progress: 0 done, 1 running, 0 failed, 5.0s elapsed
progress: 0 done, 1 running, 0 failed, 35.0s elapsed
"
    );
}

/// A run shorter than the interval still shows it was under way: the first
/// line comes after a second, whatever it shows, then the interval rules.
#[test]
fn a_short_run_gets_a_first_line_after_a_second() {
    let buf = SharedBuf::default();
    let clock = ManualClock::new();
    let mut progress = lines_reporter(&buf, &clock);
    let mut run = RunBuilder::start(Some(1), 1);
    run.queue(0, "c", "a");
    for e in run.events.drain(..) {
        progress.on_event(&e).unwrap();
    }
    clock.advance(0.9);
    progress.tick().unwrap();
    assert_eq!(buf.text(), "");
    clock.advance(0.1);
    progress.tick().unwrap();
    clock.advance(0.5);
    run.start_task(0, 0, 1_500, 1_500);
    run.finish_task(0, 0, 2_000, Outcome::success());
    for e in run.events.drain(..) {
        progress.on_event(&e).unwrap();
    }
    clock.advance(0.5);
    progress.tick().unwrap();
    for e in run.finish(2_000, 1, 0.25, None) {
        progress.on_event(&e).unwrap();
    }
    progress.finish().unwrap();
    assert_eq!(
        buf.text(),
        "progress: 0/1 done, 0 running, 0 failed, 1.0s elapsed\n"
    );
}

/// An interval shorter than a second also brings the first line forward.
#[test]
fn a_short_interval_brings_the_first_line_forward() {
    let buf = SharedBuf::default();
    let clock = ManualClock::new();
    let mut progress = lines_reporter(&buf, &clock).interval(Duration::from_millis(200));
    for e in &RunBuilder::start(None, 1).events {
        progress.on_event(e).unwrap();
    }
    clock.advance(0.2);
    progress.tick().unwrap();
    assert_eq!(
        buf.text(),
        "progress: 0 done, 0 running, 0 failed, 0.2s elapsed\n"
    );
}

#[test]
fn nothing_after_the_run_finished() {
    let buf = SharedBuf::default();
    let clock = ManualClock::new();
    let mut progress = lines_reporter(&buf, &clock);
    let events: Vec<Event> = RunBuilder::start(Some(0), 1).finish(1, 0, 0.0, None);
    for e in &events {
        progress.on_event(e).unwrap();
    }
    clock.advance(100.0);
    progress.tick().unwrap();
    progress.finish().unwrap();
    assert_eq!(buf.text(), "");
}

#[test]
fn off_a_terminal_progress_is_lines_and_on_one_a_bar() {
    let buf = SharedBuf::default();
    let plain = ProgressReporter::for_terminal(&TerminalInfo::plain(), buf.boxed());
    assert!(format!("{plain:?}").contains("\"lines\""));
    let term = ProgressReporter::for_terminal(&TerminalInfo::terminal(), buf.boxed());
    assert!(format!("{term:?}").contains("\"bar\""));
    let hidden = ProgressReporter::hidden();
    assert!(format!("{hidden:?}").contains("\"hidden\""));
}
