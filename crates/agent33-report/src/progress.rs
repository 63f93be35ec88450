//! Live progress on stderr while a run goes on.
//!
//! On a terminal: an indicatif bar with done/total (when the total is known
//! from `RunStarted`), tasks running now, failures so far, elapsed time and
//! ETA. Off a terminal (CI logs, files): a plain status line now and then —
//! the first after [`FIRST_LINE_AFTER`], so even a short run shows it was
//! under way, then at most every [`DEFAULT_LINE_INTERVAL`], only when
//! something changed, and otherwise a heartbeat every [`HEARTBEAT_FACTOR`]
//! intervals so a log never looks hung — never one per task. Quiet:
//! [`ProgressReporter::hidden`].
//!
//! Which of these is chosen is the caller's decision ([`TerminalInfo`]),
//! not detected here, so tests can force either. The bar is shared with
//! other console reporters through a [`Suspender`], which hides it while they
//! write so lines never tear through it.
//!
//! When the input is streamed (a file or stdin), the total is not known
//! when the run starts (`RunStarted { total: None }`): progress then shows
//! how many tasks are done and the rate (tasks per second). Whoever reads
//! the input says when it has ended and how many tasks it made, through an
//! [`InputTotal`]; from then on progress shows done/total and an ETA, as
//! for a known task set.
//!
//! Once the run is stopping (`RunStopTriggered`), done/total and the ETA no
//! longer mean anything — tasks never started count as done by the
//! hundred — so the bar says what happens instead: `stopping… (Ctrl-C
//! again to kill)` after an interrupt, `stopping: <reason>` otherwise, and
//! how many tasks are still running.
//!
//! The bar leaves the terminal's last two columns free: the terminal
//! echoes `^C` where the cursor is, and a bar drawn to the last column
//! would have that echo wrap onto a line of its own, leaving the bar above
//! it behind, stale, at every Ctrl-C.

use std::collections::HashSet;
use std::fmt;
use std::io::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use agent33_parallel::{Event, StopReason, TaskStatus};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle, TermLike};

use crate::error::{Context as _, ReportError};
use crate::format::format_duration_ms;
use crate::terminal::TerminalInfo;
use crate::{Output, Reporter};

/// Shortest time between two plain status lines.
pub const DEFAULT_LINE_INTERVAL: Duration = Duration::from_secs(5);

/// When the first plain status line comes (or after one interval, if that
/// is shorter).
pub const FIRST_LINE_AFTER: Duration = Duration::from_secs(1);

/// Without any change, a plain status line still comes every this many
/// intervals (30 s by default).
pub const HEARTBEAT_FACTOR: u32 = 6;

/// Hides the progress bar (if there is one) while other output is written.
/// Cheap to clone; [`Suspender::none`] does nothing.
#[derive(Clone, Debug, Default)]
pub struct Suspender {
    bar: Option<ProgressBar>,
}

impl Suspender {
    /// A suspender with no bar behind it.
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }

    /// Runs `f` with the bar cleared from the screen, then redraws it.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }
}

/// The number of tasks of a streamed input, once it has been read to its
/// end. Cheap to clone: the reader of the input sets it, the progress
/// reporter reads it.
///
/// The engine's events do not say when a stream of tasks has ended (its
/// `RunStarted` comes before the first task is read), so the reader tells.
#[derive(Clone, Debug, Default)]
pub struct InputTotal(Arc<OnceLock<usize>>);

impl InputTotal {
    /// Not known yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The input has ended after `total` tasks. Only the first call counts.
    pub fn set(&self, total: usize) {
        let _ = self.0.set(total);
    }

    /// The total, once the input has ended.
    #[must_use]
    pub fn get(&self) -> Option<usize> {
        self.0.get().copied()
    }
}

/// A source of the current instant, replaceable in tests.
type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// Columns the bar leaves free at the right edge: room for the `^C` (or
/// `^\`) a terminal echoes at the cursor, so the echo stays on the bar's
/// line, which the next draw clears.
const ECHO_ROOM: u16 = 2;

/// A terminal that tells indicatif it is [`ECHO_ROOM`] columns narrower
/// than it is (indicatif pads every line to the width it is told).
#[derive(Debug)]
struct EchoRoom<T>(T);

impl<T: TermLike> TermLike for EchoRoom<T> {
    fn width(&self) -> u16 {
        self.0.width().saturating_sub(ECHO_ROOM).max(1)
    }

    fn height(&self) -> u16 {
        self.0.height()
    }

    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_up(n)
    }

    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_down(n)
    }

    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_right(n)
    }

    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_left(n)
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.0.write_line(s)
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.0.write_str(s)
    }

    fn clear_line(&self) -> std::io::Result<()> {
        self.0.clear_line()
    }

    fn flush(&self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// One shared limit as progress shows it: a provider whose limit follows
/// what it says (`openai: 8/16, paused 12s`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitStatus {
    /// The provider's name.
    pub name: String,
    /// Its limit now.
    pub limit: usize,
    /// The most it may be.
    pub max: usize,
    /// How long until it takes new requests again, when paused.
    pub paused: Option<Duration>,
}

impl LimitStatus {
    /// Shown only when it says something: paused, or below its most.
    fn notable(&self) -> bool {
        self.paused.is_some() || self.limit < self.max
    }
}

impl fmt::Display for LimitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}/{}", self.name, self.limit, self.max)?;
        if let Some(paused) = self.paused {
            // Whole seconds, rounded up: a pause of 0.3 s is not "0s".
            let ms = paused.as_millis();
            write!(f, ", paused {}s", ms.div_ceil(1_000))?;
        }
        Ok(())
    }
}

/// Where progress reads the shared limits' state from, at each redraw.
pub type LimitSource = Arc<dyn Fn() -> Vec<LimitStatus> + Send + Sync>;

/// What progress shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    done: u64,
    running: usize,
    failures: u64,
}

enum Kind {
    Hidden,
    Bar {
        bar: ProgressBar,
        color: bool,
        /// Redrawn on a clock too (the spinner and elapsed time move while
        /// nothing happens); off for terminals that want a draw per change.
        steady: bool,
    },
    Lines {
        out: Output,
        clock: Clock,
        interval: Duration,
        /// When the last line was printed, and what it showed.
        last: Option<(Instant, Counts)>,
        started: Option<Instant>,
    },
}

/// Shows a run's progress on stderr.
pub struct ProgressReporter {
    kind: Kind,
    total: Option<usize>,
    /// Where the total of a streamed input comes from, once it has ended.
    input_total: Option<InputTotal>,
    counts: Counts,
    running: HashSet<u64>,
    /// Why the run is stopping, once it is.
    stopping: Option<StopReason>,
    over: bool,
    /// The shared limits to show when paused or reduced.
    limits: Option<LimitSource>,
}

impl fmt::Debug for ProgressReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Hidden => "hidden",
            Kind::Bar { .. } => "bar",
            Kind::Lines { .. } => "lines",
        };
        f.debug_struct("ProgressReporter")
            .field("kind", &kind)
            .field("total", &self.total)
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl ProgressReporter {
    fn with_kind(kind: Kind) -> Self {
        Self {
            kind,
            total: None,
            input_total: None,
            counts: Counts::default(),
            running: HashSet::new(),
            stopping: None,
            over: false,
            limits: None,
        }
    }

    /// No progress at all (quiet).
    #[must_use]
    pub fn hidden() -> Self {
        Self::with_kind(Kind::Hidden)
    }

    /// A progress bar drawn on stderr, coloured exactly when `color`. The
    /// caller knows stderr can redraw it ([`TerminalInfo::stderr_redraws`]).
    ///
    /// indicatif paints through `console`, which has its own idea of colour
    /// (it takes an empty `NO_COLOR` as set, and reads `CLICOLOR`); the bar
    /// must follow the decision the rest of the output follows, so it is
    /// handed to `console` here, for the whole process. Both of `console`'s
    /// settings: indicatif asks the stdout one of a terminal it does not
    /// know as stderr, and the bar draws through a wrapper of stderr.
    #[must_use]
    pub fn bar(color: bool) -> Self {
        console::set_colors_enabled_stderr(color);
        console::set_colors_enabled(color);
        let term = console::Term::buffered_stderr();
        // indicatif's own refresh rate for stderr.
        let target = ProgressDrawTarget::term_like_with_hz(Box::new(EchoRoom(term)), 20);
        Self::with_kind(Kind::Bar {
            bar: ProgressBar::with_draw_target(None, target),
            color,
            steady: true,
        })
    }

    /// A progress bar drawn on `term`, leaving its last columns free as on
    /// stderr, redrawn at every change and only then (no clock, no rate
    /// limit): for tests and programs that draw on a terminal of their own.
    /// Colour codes, when `color`, follow `console`'s stdout setting.
    #[must_use]
    pub fn bar_on(term: impl TermLike + 'static, color: bool) -> Self {
        let target = ProgressDrawTarget::term_like(Box::new(EchoRoom(term)));
        Self::with_kind(Kind::Bar {
            bar: ProgressBar::with_draw_target(None, target),
            color,
            steady: false,
        })
    }

    /// A progress bar drawn on `target` (tests pass
    /// `ProgressDrawTarget::hidden()`).
    #[must_use]
    pub fn bar_with_target(target: ProgressDrawTarget, color: bool) -> Self {
        let bar = ProgressBar::with_draw_target(None, target);
        Self::with_kind(Kind::Bar {
            bar,
            color,
            steady: true,
        })
    }

    /// Plain status lines written to `out`: the first after
    /// [`FIRST_LINE_AFTER`], then at most every [`DEFAULT_LINE_INTERVAL`].
    #[must_use]
    pub fn lines(out: Output) -> Self {
        Self::with_kind(Kind::Lines {
            out,
            clock: Arc::new(Instant::now),
            interval: DEFAULT_LINE_INTERVAL,
            last: None,
            started: None,
        })
    }

    /// A bar when stderr is a terminal that redraws, nothing on one that
    /// cannot (`TERM=dumb`: a bar would print a line per redraw), plain
    /// lines to `stderr` otherwise.
    #[must_use]
    pub fn for_terminal(term: &TerminalInfo, stderr: Output) -> Self {
        if term.stderr_redraws {
            Self::bar(term.color_stderr())
        } else if term.stderr_is_terminal {
            Self::bar_with_target(ProgressDrawTarget::hidden(), term.color_stderr())
        } else {
            Self::lines(stderr)
        }
    }

    /// Sets the shortest time between plain status lines (lines mode only).
    #[must_use]
    pub fn interval(mut self, every: Duration) -> Self {
        if let Kind::Lines { interval, .. } = &mut self.kind {
            *interval = every;
        }
        self
    }

    /// Replaces the clock of the lines mode (tests drive time by hand).
    #[must_use]
    pub fn clock(mut self, now: impl Fn() -> Instant + Send + Sync + 'static) -> Self {
        if let Kind::Lines { clock, .. } = &mut self.kind {
            *clock = Arc::new(now);
        }
        self
    }

    /// Learns the total of a streamed input from `total` once the input
    /// has ended (see [`InputTotal`]); a total known from `RunStarted` wins.
    #[must_use]
    pub fn input_total(mut self, total: InputTotal) -> Self {
        self.input_total = Some(total);
        self
    }

    /// Shows the shared limits of `source` (LLM providers) that are paused
    /// or below their most, after the counts: `openai: 8/16, paused 12s`.
    #[must_use]
    pub fn limits(mut self, source: LimitSource) -> Self {
        self.limits = Some(source);
        self
    }

    /// Takes the streamed input's total once it is known, and shows it.
    fn learn_total(&mut self) {
        if self.total.is_some() || self.over {
            return;
        }
        let Some(total) = self.input_total.as_ref().and_then(InputTotal::get) else {
            return;
        };
        self.total = Some(total);
        if let Kind::Bar { bar, color, .. } = &self.kind {
            bar.set_length(total as u64);
            // While stopping the bar shows no count to complete.
            if self.stopping.is_none() {
                bar.set_style(Self::style(Self::template(true, *color)));
            }
        }
    }

    /// A handle that hides this reporter's bar while others write.
    #[must_use]
    pub fn suspender(&self) -> Suspender {
        match &self.kind {
            Kind::Bar { bar, .. } => Suspender {
                bar: Some(bar.clone()),
            },
            Kind::Hidden | Kind::Lines { .. } => Suspender::none(),
        }
    }

    fn message(&self) -> String {
        let mut counts = format!(
            "{} running, {} failed",
            self.counts.running, self.counts.failures
        );
        if let Some(source) = &self.limits {
            for status in source().iter().filter(|s| s.notable()) {
                counts.push_str(&format!(" · {status}"));
            }
        }
        match &self.stopping {
            None => counts,
            Some(reason) => format!("{} · {counts}", Self::stopping_text(reason)),
        }
    }

    /// What the bar says while the run stops: after an interrupt, what a
    /// second one does (the CLI kills every task at once).
    fn stopping_text(reason: &StopReason) -> String {
        match reason {
            StopReason::Interrupted { .. } => "stopping… (Ctrl-C again to kill)".to_owned(),
            other => format!("stopping: {other}"),
        }
    }

    /// The plain status line for the current state, `elapsed` into the run.
    fn status_line(&self, elapsed: Duration) -> String {
        let c = self.counts;
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        if let Some(reason) = &self.stopping {
            // Off a terminal nobody presses Ctrl-C: the reason, as is.
            return format!(
                "progress: stopping: {reason}, {} running, {} failed, {} elapsed",
                c.running,
                c.failures,
                format_duration_ms(elapsed_ms)
            );
        }
        let mut line = match self.total {
            Some(total) => format!("progress: {}/{total} done", c.done),
            None => format!("progress: {} done, {}", c.done, rate(c.done, elapsed)),
        };
        line.push_str(&format!(
            ", {}, {} elapsed",
            self.message(),
            format_duration_ms(elapsed_ms)
        ));
        if let Some(total) = self.total.map(|t| t as u64) {
            if c.done > 0 && c.done < total {
                let eta = u128::from(elapsed_ms) * u128::from(total - c.done) / u128::from(c.done);
                let eta = u64::try_from(eta).unwrap_or(u64::MAX);
                line.push_str(&format!(", ETA {}", format_duration_ms(eta)));
            }
        }
        line
    }

    fn template(total_known: bool, color: bool) -> &'static str {
        match (total_known, color) {
            (true, true) => {
                "{spinner:.green} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} · {msg} · ETA {eta}"
            }
            (true, false) => {
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} · {msg} · ETA {eta}"
            }
            (false, true) => "{spinner:.green} [{elapsed_precise}] {pos} done · {rate} · {msg}",
            (false, false) => "{spinner} [{elapsed_precise}] {pos} done · {rate} · {msg}",
        }
    }

    /// While stopping: no count of done tasks, no ETA (see the module docs).
    fn stopping_template(color: bool) -> &'static str {
        if color {
            "{spinner:.yellow} [{elapsed_precise}] {msg}"
        } else {
            "{spinner} [{elapsed_precise}] {msg}"
        }
    }

    fn style(template: &str) -> ProgressStyle {
        // The templates are constants (a test parses each); should one ever
        // be rejected, a plain bar is better than none.
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key("eta", eta)
            .with_key(
                "rate",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    // Into indicatif's own string buffer, which cannot fail.
                    let _ = w.write_str(&rate(state.pos(), state.elapsed()));
                },
            )
    }

    fn start_bar(bar: &ProgressBar, total: Option<usize>, color: bool, steady: bool) {
        bar.set_style(Self::style(Self::template(total.is_some(), color)));
        if let Some(total) = total {
            bar.set_length(total as u64);
        }
        bar.reset_elapsed();
        if steady && !bar.is_hidden() {
            bar.enable_steady_tick(Duration::from_millis(100));
        }
    }

    /// Prints a status line if it is time to.
    fn maybe_line(&mut self) -> Result<(), ReportError> {
        if self.over {
            return Ok(());
        }
        let counts = self.counts;
        let Kind::Lines {
            clock,
            interval,
            last,
            started,
            ..
        } = &self.kind
        else {
            return Ok(());
        };
        let Some(started) = *started else {
            return Ok(());
        };
        let now = clock();
        let due = match *last {
            // The first line is a sign of life, so it comes whatever it shows.
            None => now.saturating_duration_since(started) >= FIRST_LINE_AFTER.min(*interval),
            Some((at, shown)) => {
                let since = now.saturating_duration_since(at);
                since >= *interval
                    && (counts != shown || since >= interval.saturating_mul(HEARTBEAT_FACTOR))
            }
        };
        if !due {
            return Ok(());
        }
        let mut line = self.status_line(now.saturating_duration_since(started));
        line.push('\n');
        if let Kind::Lines { out, last, .. } = &mut self.kind {
            *last = Some((now, counts));
            out.write_all(line.as_bytes())
                .and_then(|()| out.flush())
                .context(|| "progress to stderr".to_owned())?;
        }
        Ok(())
    }

    fn update_bar(&self) {
        if let Kind::Bar { bar, .. } = &self.kind {
            bar.set_position(self.counts.done);
            bar.set_message(self.message());
        }
    }

    fn stop(&mut self, reason: &StopReason) {
        let first = self.stopping.is_none();
        self.stopping = Some(reason.clone());
        if let Kind::Bar { bar, color, .. } = &self.kind {
            if first {
                bar.set_style(Self::style(Self::stopping_template(*color)));
            }
            // Drawn now: the first thing a terminal shows after a Ctrl-C.
            bar.set_message(self.message());
        }
    }

    fn end(&mut self) {
        self.over = true;
        if let Kind::Bar { bar, .. } = &self.kind {
            bar.finish_and_clear();
        }
    }
}

impl Reporter for ProgressReporter {
    fn on_event(&mut self, event: &Event) -> Result<(), ReportError> {
        self.learn_total();
        match event {
            Event::RunStarted { total, .. } => {
                self.total = *total;
                match &mut self.kind {
                    Kind::Bar { bar, color, steady } => {
                        Self::start_bar(bar, *total, *color, *steady);
                    }
                    Kind::Lines {
                        clock,
                        last,
                        started,
                        ..
                    } => {
                        *started = Some(clock());
                        *last = None;
                    }
                    Kind::Hidden => {}
                }
                // The input may have ended before the run's start was seen.
                self.learn_total();
            }
            Event::TaskStarted { seq, .. } => {
                self.running.insert(*seq);
                self.counts.running = self.running.len();
            }
            Event::TaskRetryScheduled { seq, .. } | Event::TaskDeferred { seq, .. } => {
                self.running.remove(seq);
                self.counts.running = self.running.len();
            }
            Event::TaskFinished { seq, result, .. } => {
                self.running.remove(seq);
                self.counts.running = self.running.len();
                self.counts.done += 1;
                if matches!(result.status, TaskStatus::Failed | TaskStatus::Timeout) {
                    self.counts.failures += 1;
                }
            }
            Event::RunFinished { .. } => {
                self.end();
                return Ok(());
            }
            Event::RunStopTriggered { reason } => {
                self.stop(reason);
                return self.maybe_line();
            }
            Event::DependenciesIgnored | Event::TaskQueued { .. } | Event::TaskOutput { .. } => {
                return self.maybe_line();
            }
        }
        self.update_bar();
        self.maybe_line()
    }

    fn tick(&mut self) -> Result<(), ReportError> {
        if self.total.is_none() {
            self.learn_total();
            if self.total.is_some() {
                self.update_bar();
            }
        }
        // A pause counts down while no task ends.
        if self.limits.is_some() && !self.over {
            self.update_bar();
        }
        self.maybe_line()
    }

    fn finish(&mut self) -> Result<(), ReportError> {
        self.end();
        Ok(())
    }
}

/// Tasks done so far per second (`2.5 tasks/s`), or per minute when that
/// reads better (`1.5 tasks/min`); `- tasks/s` before any time has passed.
fn rate(done: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return "- tasks/s".to_owned();
    }
    #[expect(
        clippy::cast_precision_loss,
        reason = "a rate to one decimal; counts beyond 2^52 do not happen"
    )]
    let per_sec = done as f64 / secs;
    if per_sec >= 100.0 {
        format!("{per_sec:.0} tasks/s")
    } else if per_sec >= 0.1 || done == 0 {
        format!("{per_sec:.1} tasks/s")
    } else {
        format!("{:.1} tasks/min", per_sec * 60.0)
    }
}

/// The ETA, or `-` until a task is done: before that, indicatif's estimate
/// is `0s`, which reads as "about to finish".
fn eta(state: &ProgressState, w: &mut dyn std::fmt::Write) {
    // Into indicatif's own string buffer, which cannot fail.
    let _ = if state.pos() == 0 {
        w.write_str("-")
    } else {
        write!(w, "{:#}", indicatif::HumanDuration(state.eta()))
    };
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use agent33_parallel::{AgentTask, Event, TaskResult, TaskStatus, Timestamp};

    use super::*;

    fn finished(seq: u64, status: TaskStatus) -> Event {
        let task = Arc::new(AgentTask::new("c", format!("{seq}")));
        Event::TaskFinished {
            seq,
            slot: Some(0),
            attempt_started_at: None,
            result: Box::new(TaskResult::not_started(task, status, "x".to_owned())),
        }
    }

    fn started(seq: u64) -> Event {
        Event::TaskStarted {
            seq,
            id: format!("c:{seq}").into(),
            attempt: 1,
            slot: 0,
            waited: Duration::ZERO,
            at: Timestamp(std::time::SystemTime::UNIX_EPOCH),
        }
    }

    #[test]
    fn every_bar_template_parses() {
        for (total, color) in [(true, true), (true, false), (false, true), (false, false)] {
            let template = ProgressReporter::template(total, color);
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
        for color in [true, false] {
            let template = ProgressReporter::stopping_template(color);
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
    }

    #[test]
    fn the_bar_follows_done_running_and_failures() {
        let mut p = ProgressReporter::bar_with_target(ProgressDrawTarget::hidden(), false);
        let Kind::Bar { bar, .. } = &p.kind else {
            panic!("a bar");
        };
        let bar = bar.clone();
        p.on_event(&Event::RunStarted {
            total: Some(3),
            parallel_limit: 2,
            at: Timestamp(std::time::SystemTime::UNIX_EPOCH),
        })
        .unwrap();
        assert_eq!(bar.length(), Some(3));
        p.on_event(&started(0)).unwrap();
        p.on_event(&started(1)).unwrap();
        assert_eq!(bar.message(), "2 running, 0 failed");
        p.on_event(&finished(0, TaskStatus::Timeout)).unwrap();
        assert_eq!(
            (bar.position(), bar.message().as_str()),
            (1, "1 running, 1 failed")
        );
        p.on_event(&finished(2, TaskStatus::Cancelled)).unwrap();
        assert_eq!(
            (bar.position(), bar.message().as_str()),
            (2, "1 running, 1 failed")
        );
        p.finish().unwrap();
        assert!(bar.is_finished());
        // Suspending a finished bar just runs the closure.
        assert_eq!(p.suspender().suspend(|| 7), 7);
    }

    /// The only test that touches `console`'s process-wide setting, so no
    /// other test can race it.
    #[test]
    fn the_bar_takes_our_colour_decision_not_consoles() {
        for color in [false, true, false] {
            let mut p = ProgressReporter::bar(color);
            assert_eq!(console::colors_enabled_stderr(), color);
            assert_eq!(console::colors_enabled(), color);
            p.finish().unwrap();
        }
    }

    #[test]
    fn status_line_shows_eta_only_when_it_means_something() {
        let mut p = ProgressReporter::hidden();
        assert_eq!(
            p.status_line(Duration::from_secs(2)),
            "progress: 0 done, 0.0 tasks/s, 0 running, 0 failed, 2.0s elapsed"
        );
        p.total = Some(4);
        p.counts.done = 1;
        assert_eq!(
            p.status_line(Duration::from_secs(2)),
            "progress: 1/4 done, 0 running, 0 failed, 2.0s elapsed, ETA 6.0s"
        );
    }

    #[test]
    fn paused_or_reduced_limits_follow_the_counts() {
        let statuses = Arc::new(std::sync::Mutex::new(vec![
            LimitStatus {
                name: "openai".into(),
                limit: 8,
                max: 16,
                paused: Some(Duration::from_millis(11_200)),
            },
            LimitStatus {
                name: "local".into(),
                limit: 4,
                max: 4,
                paused: None,
            },
        ]));
        let shared = Arc::clone(&statuses);
        let p = ProgressReporter::hidden().limits(Arc::new(move || {
            shared.lock().expect("not poisoned").clone()
        }));
        assert_eq!(
            p.message(),
            "0 running, 0 failed · openai: 8/16, paused 12s"
        );
        statuses.lock().expect("not poisoned")[0].paused = None;
        assert_eq!(p.message(), "0 running, 0 failed · openai: 8/16");
        statuses.lock().expect("not poisoned")[0].limit = 16;
        assert_eq!(p.message(), "0 running, 0 failed");
    }

    #[test]
    fn rates_read_well_at_any_pace() {
        assert_eq!(rate(0, Duration::ZERO), "- tasks/s");
        assert_eq!(rate(5, Duration::from_secs(2)), "2.5 tasks/s");
        assert_eq!(rate(0, Duration::from_secs(30)), "0.0 tasks/s");
        assert_eq!(rate(1, Duration::from_secs(40)), "1.5 tasks/min");
        assert_eq!(rate(12_345, Duration::from_secs(10)), "1234 tasks/s");
    }
}
