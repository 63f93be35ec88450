//! Progress off a terminal: plain lines on a clock, never one per task; on
//! one (a small terminal emulator): no stale bar after a Ctrl-C, and what
//! the bar says while the run stops.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent33_parallel::{Event, StopReason, TaskStatus};
use agent33_report::{
    InputTotal, NoticeReporter, ProgressReporter, Reporter, Reporters, TerminalInfo,
};

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
progress: 0 done, 0.0 tasks/s, 1 running, 0 failed, 5.0s elapsed
progress: 0 done, 0.0 tasks/s, 1 running, 0 failed, 35.0s elapsed
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
        "progress: 0 done, 0.0 tasks/s, 0 running, 0 failed, 0.2s elapsed\n"
    );
}

/// Streamed input (a file, stdin): the total is unknown at the start, so
/// the lines show how many are done and the rate; once the input has
/// ended they show done/total and an ETA.
#[test]
fn streamed_input_shows_a_rate_then_the_total_once_the_input_ends() {
    let buf = SharedBuf::default();
    let clock = ManualClock::new();
    let total = InputTotal::new();
    let mut progress = lines_reporter(&buf, &clock).input_total(total.clone());
    let mut run = RunBuilder::start(None, 2);
    let feed = |run: &mut RunBuilder, progress: &mut ProgressReporter| {
        for e in run.events.drain(..) {
            progress.on_event(&e).unwrap();
        }
    };
    // Four tasks in 2 s, while more input may come.
    for seq in 0..4 {
        run.queue(seq, "c", &format!("t{seq}"));
        run.start_task(seq, 0, 0, 0);
        run.finish_task(seq, 0, 1, Outcome::success());
        feed(&mut run, &mut progress);
        clock.advance(0.5);
    }
    // The input ends after ten lines.
    for seq in 4..10 {
        run.queue(seq, "c", &format!("t{seq}"));
    }
    total.set(10);
    run.start_task(4, 0, 0, 0);
    clock.advance(4.0);
    // The first event after that shows the total.
    feed(&mut run, &mut progress);
    for e in run.finish(5_000, 2, 0.5, None) {
        progress.on_event(&e).unwrap();
    }
    assert_eq!(
        buf.text(),
        "\
progress: 2 done, 2.0 tasks/s, 0 running, 0 failed, 1.0s elapsed
progress: 4/10 done, 0 running, 0 failed, 6.0s elapsed, ETA 9.0s
"
    );
}

/// A total that arrives while nothing else happens shows at the next tick.
#[test]
fn the_total_shows_at_a_tick_too() {
    let buf = SharedBuf::default();
    let clock = ManualClock::new();
    let total = InputTotal::new();
    let mut progress = lines_reporter(&buf, &clock).input_total(total.clone());
    let mut run = RunBuilder::start(None, 1);
    run.queue(0, "c", "only");
    run.start_task(0, 0, 0, 0);
    for e in run.events.drain(..) {
        progress.on_event(&e).unwrap();
    }
    total.set(1);
    clock.advance(1.0);
    progress.tick().unwrap();
    assert_eq!(
        buf.text(),
        "progress: 0/1 done, 1 running, 0 failed, 1.0s elapsed\n"
    );
}

/// A known total from the run's start is not replaced.
#[test]
fn a_total_known_from_the_start_wins() {
    let buf = SharedBuf::default();
    let clock = ManualClock::new();
    let total = InputTotal::new();
    total.set(99);
    let mut progress = lines_reporter(&buf, &clock).input_total(total);
    for e in &RunBuilder::start(Some(3), 1).events {
        progress.on_event(e).unwrap();
    }
    clock.advance(1.0);
    progress.tick().unwrap();
    assert_eq!(
        buf.text(),
        "progress: 0/3 done, 0 running, 0 failed, 1.0s elapsed\n"
    );
}

/// On a terminal: a count and a rate while the input streams, then a bar
/// of done/total once it has ended.
#[test]
fn the_bar_shows_a_rate_then_the_total() {
    let term = FakeTerm::new(100);
    let total = InputTotal::new();
    let mut progress = ProgressReporter::bar_on(term.clone(), false).input_total(total.clone());
    let mut run = RunBuilder::start(None, 2);
    for seq in 0..3 {
        run.queue(seq, "c", &format!("t{seq}"));
        run.start_task(seq, 0, 0, 0);
        run.finish_task(seq, 0, 1, Outcome::success());
    }
    for e in run.events.drain(..) {
        progress.on_event(&e).unwrap();
    }
    let bar = bars(&term);
    assert_eq!(bar.len(), 1, "{:#?}", term.rows());
    assert!(bar[0].contains("] 3 done · "), "{bar:?}");
    assert!(bar[0].contains(" tasks/s · 0 running, 0 failed"), "{bar:?}");
    run.queue(3, "c", "t3");
    total.set(4);
    run.start_task(3, 0, 0, 0);
    for e in run.events.drain(..) {
        progress.on_event(&e).unwrap();
    }
    let bar = bars(&term);
    assert_eq!(bar.len(), 1, "{:#?}", term.rows());
    assert!(
        bar[0].contains(" 3/4 · 1 running, 0 failed · ETA "),
        "{bar:?}"
    );
    progress.finish().unwrap();
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

/// The screen of a terminal that wraps as terminals do: a line written to
/// the last column leaves the cursor there, and the next character goes to
/// the start of the following line.
#[derive(Debug)]
struct Screen {
    width: usize,
    rows: Vec<Vec<char>>,
    row: usize,
    col: usize,
    wrap_pending: bool,
}

impl Screen {
    fn put(&mut self, c: char) {
        match c {
            '\r' => {
                self.col = 0;
                self.wrap_pending = false;
            }
            // The terminal's output processing turns `\n` into CR LF.
            '\n' => {
                self.row += 1;
                self.col = 0;
                self.wrap_pending = false;
            }
            c => {
                if self.wrap_pending {
                    self.row += 1;
                    self.col = 0;
                    self.wrap_pending = false;
                }
                if self.rows.len() <= self.row {
                    self.rows.resize(self.row + 1, Vec::new());
                }
                let line = &mut self.rows[self.row];
                if line.len() <= self.col {
                    line.resize(self.col + 1, ' ');
                }
                line[self.col] = c;
                if self.col + 1 == self.width {
                    self.wrap_pending = true;
                } else {
                    self.col += 1;
                }
            }
        }
    }
}

/// A terminal for indicatif to draw on, and for the tty driver's echo and
/// other reporters' lines to be written to.
#[derive(Clone, Debug)]
struct FakeTerm(Arc<Mutex<Screen>>);

impl FakeTerm {
    fn new(width: usize) -> Self {
        Self(Arc::new(Mutex::new(Screen {
            width,
            rows: Vec::new(),
            row: 0,
            col: 0,
            wrap_pending: false,
        })))
    }

    fn write(&self, s: &str) {
        let mut screen = self.0.lock().unwrap();
        for c in s.chars() {
            screen.put(c);
        }
    }

    /// What the tty driver echoes when Ctrl-C is pressed (`ECHOCTL`).
    fn press_ctrl_c(&self) {
        self.write("^C");
    }

    /// The non-blank rows, top to bottom.
    fn rows(&self) -> Vec<String> {
        let screen = self.0.lock().unwrap();
        screen
            .rows
            .iter()
            .map(|r| r.iter().collect::<String>().trim_end().to_owned())
            .filter(|r| !r.is_empty())
            .collect()
    }
}

impl indicatif::TermLike for FakeTerm {
    fn width(&self) -> u16 {
        u16::try_from(self.0.lock().unwrap().width).unwrap()
    }

    fn height(&self) -> u16 {
        50
    }

    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        let mut screen = self.0.lock().unwrap();
        screen.row = screen.row.saturating_sub(n);
        screen.wrap_pending = false;
        Ok(())
    }

    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        let mut screen = self.0.lock().unwrap();
        screen.row += n;
        screen.wrap_pending = false;
        Ok(())
    }

    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        let mut screen = self.0.lock().unwrap();
        screen.col = (screen.col + n).min(screen.width - 1);
        screen.wrap_pending = false;
        Ok(())
    }

    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        let mut screen = self.0.lock().unwrap();
        screen.col = screen.col.saturating_sub(n);
        screen.wrap_pending = false;
        Ok(())
    }

    fn write_line(&self, s: &str) -> io::Result<()> {
        self.write(s);
        self.write("\n");
        Ok(())
    }

    fn write_str(&self, s: &str) -> io::Result<()> {
        self.write(s);
        Ok(())
    }

    fn clear_line(&self) -> io::Result<()> {
        let mut screen = self.0.lock().unwrap();
        let row = screen.row;
        if let Some(line) = screen.rows.get_mut(row) {
            line.clear();
        }
        screen.col = 0;
        screen.wrap_pending = false;
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

impl io::Write for FakeTerm {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        FakeTerm::write(self, &String::from_utf8_lossy(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A stop reason as a saved report spells it.
fn reason(kind: &str) -> StopReason {
    serde_json::from_value(serde_json::json!({ "kind": kind })).unwrap()
}

/// The rows that show the bar (its elapsed time, `[00:00:00]`).
fn bars(term: &FakeTerm) -> Vec<String> {
    term.rows()
        .into_iter()
        .filter(|r| r.contains("[00:"))
        .collect()
}

/// Two Ctrl-Cs during a run on a terminal: each echo `^C` stays on the
/// bar's line (which the next draw clears), so no stale copy of the bar is
/// left above it; while the run stops the bar says so, without a count of
/// done tasks (never-started ones are cancelled by the hundred) or an ETA.
#[test]
fn ctrl_c_leaves_no_stale_bar_and_the_bar_says_the_run_is_stopping() {
    let term = FakeTerm::new(80);
    let progress = ProgressReporter::bar_on(term.clone(), false);
    let suspender = progress.suspender();
    let mut reporters = Reporters::new().with(progress).with(
        NoticeReporter::new(Box::new(term.clone()), &TerminalInfo::plain()).suspender(suspender),
    );
    let mut feed = |run: &mut RunBuilder| {
        for e in run.events.drain(..) {
            assert!(reporters.on_event(&e).is_empty());
        }
    };
    let mut run = RunBuilder::start(Some(5), 2);
    for seq in 0..5 {
        run.queue(seq, "c", &format!("t{seq}"));
    }
    run.start_task(0, 0, 0, 0);
    run.start_task(1, 1, 0, 0);
    feed(&mut run);
    let bar = bars(&term);
    assert_eq!(bar.len(), 1, "{:#?}", term.rows());
    assert!(
        bar[0].contains("0/5 · 2 running, 0 failed · ETA -"),
        "{bar:?}"
    );

    term.press_ctrl_c();
    run.stopping(reason("interrupted"));
    for seq in 2..5 {
        run.settle(seq, TaskStatus::Cancelled, "not started: interrupted");
    }
    feed(&mut run);
    let rows = term.rows();
    let bar = bars(&term);
    assert_eq!(bar.len(), 1, "a stale bar is left: {rows:#?}");
    assert!(
        bar[0].ends_with("] stopping… (Ctrl-C again to kill) · 2 running, 0 failed"),
        "{rows:#?}"
    );
    assert!(!rows.iter().any(|r| r.contains("^C")), "{rows:#?}");

    term.press_ctrl_c();
    run.stopping(reason("killed"));
    run.finish_task(0, 0, 900, Outcome::cancelled("interrupted"));
    feed(&mut run);
    let rows = term.rows();
    let bar = bars(&term);
    assert_eq!(bar.len(), 1, "a stale bar is left: {rows:#?}");
    assert!(bar[0].contains("] stopping: "), "{rows:#?}");
    assert!(bar[0].ends_with(" · 1 running, 0 failed"), "{rows:#?}");
    assert!(!bar[0].contains("again"), "{rows:#?}");

    run.finish_task(1, 1, 950, Outcome::cancelled("interrupted"));
    feed(&mut run);
    for e in run.finish(1_000, 2, 0.5, Some(reason("killed"))) {
        assert!(reporters.on_event(&e).is_empty());
    }
    assert!(reporters.finish().is_empty());
    // The bar is gone; the notices stay, one line each.
    let rows = term.rows();
    assert!(bars(&term).is_empty(), "{rows:#?}");
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert_eq!(rows[0], "stopping: interrupted");
    assert!(rows[1].starts_with("stopping: "), "{rows:#?}");
}

/// Off a terminal the stop shows in the status line too, without an ETA.
#[test]
fn the_status_line_says_the_run_is_stopping() {
    let buf = SharedBuf::default();
    let clock = ManualClock::new();
    let mut progress = lines_reporter(&buf, &clock);
    let mut run = RunBuilder::start(Some(4), 2);
    for seq in 0..4 {
        run.queue(seq, "c", &format!("t{seq}"));
    }
    run.start_task(0, 0, 0, 0);
    run.start_task(1, 1, 0, 0);
    run.finish_task(0, 0, 500, Outcome::failed(1));
    run.stopping(reason("interrupted"));
    run.settle(2, TaskStatus::Cancelled, "not started: interrupted");
    run.settle(3, TaskStatus::Cancelled, "not started: interrupted");
    for e in run.events.drain(..) {
        progress.on_event(&e).unwrap();
    }
    clock.advance(1.0);
    progress.tick().unwrap();
    assert_eq!(
        buf.text(),
        "progress: stopping: interrupted, 1 running, 1 failed, 1.0s elapsed\n"
    );
}
