//! The console summary printed at the end of a run, in PRODUCT.md's pinned
//! shape:
//!
//! ```text
//! Execution Summary
//! =================
//! Duration: 45.3s
//! Tasks: 12 total, 10 succeeded, 1 failed, 1 timeout, 0 cancelled, 0 skipped
//! Avg task time: 3.8s
//! Parallel utilization: 78%
//! Peak concurrent: 4/4
//! Failed: validation:core/agents/worker.md (exit code 1), refinement:core/prompts/SYSTEM.md (timed out after 300s)
//! ```
//!
//! [`Summary`] keeps counts, sums and one short line per task that did not
//! succeed (up to [`SummaryOptions::failed_limit`]) — never whole results —
//! so a run of successes costs no memory per task. It does not decide exit
//! codes.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::fmt::Write as _;
use std::io::Write;
use std::time::SystemTime;

use agent33_parallel::{
    Event, ExecutionResults, Metrics, StopReason, TaskId, TaskResult, TaskStatus,
};

use crate::error::{Context as _, ReportError};
use crate::format::{format_count, format_dollars, format_duration_ms, format_tokens, reason};
use crate::{Output, Reporter};

/// How the summary is rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SummaryOptions {
    /// Most tasks named on the `Failed:` line; the rest are counted
    /// (`… and N more`). Failures come first, then cancelled, then skipped
    /// tasks, each in input order, so a fail-fast run's cause is never
    /// hidden behind its cancellations. The default is
    /// [`DEFAULT_FAILED_LIMIT`], as PRODUCT.md asks: a run of thousands of
    /// cancellations must not bury the summary's other lines under one
    /// line of megabytes. Nothing is reserved for the limit up front, so a
    /// large one costs only what is actually listed.
    pub failed_limit: usize,
    /// Adds lines after the pinned ones: why the run stopped early, the
    /// semaphore wait p50/p95 and the slowest tasks.
    pub details: bool,
}

/// Tasks named on the `Failed:` line by default (PRODUCT.md: at most 10).
pub const DEFAULT_FAILED_LIMIT: usize = 10;

impl Default for SummaryOptions {
    fn default() -> Self {
        Self {
            failed_limit: DEFAULT_FAILED_LIMIT,
            details: false,
        }
    }
}

/// How many tasks ended with each status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// `success`.
    pub succeeded: u64,
    /// `failed`.
    pub failed: u64,
    /// `timeout`.
    pub timeout: u64,
    /// `cancelled`.
    pub cancelled: u64,
    /// `skipped`.
    pub skipped: u64,
}

impl StatusCounts {
    /// All tasks.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.succeeded + self.failed + self.timeout + self.cancelled + self.skipped
    }

    /// Tasks that did not succeed.
    #[must_use]
    pub fn not_succeeded(&self) -> u64 {
        self.total() - self.succeeded
    }

    fn add(&mut self, status: TaskStatus) {
        match status {
            TaskStatus::Success => self.succeeded += 1,
            TaskStatus::Failed => self.failed += 1,
            TaskStatus::Timeout => self.timeout += 1,
            TaskStatus::Cancelled => self.cancelled += 1,
            TaskStatus::Skipped => self.skipped += 1,
        }
    }
}

/// The `limit` entries with the smallest input positions, and how many were
/// offered in all.
#[derive(Clone, Debug, Default)]
struct Earliest {
    /// Max-heap by position: the top is the first to give way.
    kept: BinaryHeap<(u64, String)>,
    offered: u64,
}

impl Earliest {
    fn offer(&mut self, limit: usize, seq: u64, text: impl FnOnce() -> String) {
        self.offered += 1;
        if limit == 0 {
            return;
        }
        if self.kept.len() == limit {
            match self.kept.peek() {
                Some((top, _)) if seq < *top => {
                    self.kept.pop();
                }
                _ => return,
            }
        }
        self.kept.push((seq, text()));
    }

    fn in_order(&self) -> Vec<&str> {
        let mut v: Vec<_> = self.kept.iter().collect();
        v.sort_unstable_by_key(|(seq, _)| *seq);
        v.into_iter().map(|(_, t)| t.as_str()).collect()
    }
}

const SLOWEST: usize = 3;

/// The end-of-run summary, built from events (or from finished results).
#[derive(Clone, Debug, Default)]
pub struct Summary {
    options: SummaryOptions,
    counts: StatusCounts,
    started: u64,
    started_ms: u128,
    run_started: Option<SystemTime>,
    limit: Option<usize>,
    running: HashSet<u64>,
    peak: usize,
    failed: Earliest,
    cancelled: Earliest,
    skipped: Earliest,
    /// Min-heap of the longest durations: (duration, earlier first, id).
    slowest: BinaryHeap<Reverse<(u64, Reverse<u64>, TaskId)>>,
    finished: Option<(u64, Option<StopReason>, Metrics)>,
}

impl Summary {
    /// An empty summary.
    #[must_use]
    pub fn new(options: SummaryOptions) -> Self {
        Self {
            options,
            ..Self::default()
        }
    }

    /// The summary of finished results, for library users who ran
    /// `run_all`. Non-successes are listed in the order of the results'
    /// lists (failed, cancelled, skipped), each in input order.
    #[must_use]
    pub fn from_results(results: &ExecutionResults, options: SummaryOptions) -> Self {
        let mut summary = Self::new(options);
        let all = results
            .succeeded
            .iter()
            .chain(&results.failed)
            .chain(&results.cancelled)
            .chain(&results.skipped);
        for (seq, result) in (0u64..).zip(all) {
            summary.record(seq, result);
        }
        summary.finished = Some((results.duration_ms, None, results.metrics.clone()));
        summary
    }

    /// Takes in one event.
    pub fn observe(&mut self, event: &Event) {
        match event {
            Event::RunStarted {
                parallel_limit, at, ..
            } => {
                self.limit = Some(*parallel_limit);
                self.run_started = Some(at.0);
            }
            Event::TaskStarted { seq, .. } => {
                self.running.insert(*seq);
                self.peak = self.peak.max(self.running.len());
            }
            Event::TaskRetryScheduled { seq, .. } | Event::TaskDeferred { seq, .. } => {
                self.running.remove(seq);
            }
            Event::TaskFinished { seq, result, .. } => {
                self.running.remove(seq);
                self.record(*seq, result);
            }
            Event::RunFinished {
                duration_ms,
                stopped,
                metrics,
                ..
            } => self.finished = Some((*duration_ms, stopped.clone(), metrics.clone())),
            Event::DependenciesIgnored
            | Event::TaskQueued { .. }
            | Event::TaskOutput { .. }
            | Event::RunStopTriggered { .. } => {}
        }
    }

    fn record(&mut self, seq: u64, r: &TaskResult) {
        self.counts.add(r.status);
        // A resumed task keeps its earlier run's times but did not start in
        // this one, so it stays out of the average and the slowest list.
        if !r.resumed && (r.started_at.is_some() || r.attempts > 0) {
            self.started += 1;
            self.started_ms += u128::from(r.duration_ms);
            self.slowest
                .push(Reverse((r.duration_ms, Reverse(seq), r.task.id.clone())));
            if self.slowest.len() > SLOWEST {
                self.slowest.pop();
            }
        }
        let list = match r.status {
            TaskStatus::Success => return,
            TaskStatus::Failed | TaskStatus::Timeout => &mut self.failed,
            TaskStatus::Cancelled => &mut self.cancelled,
            TaskStatus::Skipped => &mut self.skipped,
        };
        list.offer(self.options.failed_limit, seq, || {
            format!(
                "{} ({})",
                r.task.id,
                reason(r.error.as_deref(), r.status.as_str())
            )
        });
    }

    /// How many tasks ended with each status so far.
    #[must_use]
    pub fn counts(&self) -> StatusCounts {
        self.counts
    }

    /// The summary as text, one `\n`-terminated line each.
    #[must_use]
    pub fn render(&self) -> String {
        let mut s = String::new();
        let c = self.counts;
        let metrics = self.finished.as_ref().map(|(_, _, m)| m);
        let duration = match (&self.finished, self.run_started) {
            (Some((ms, _, _)), _) => format_duration_ms(*ms),
            // No RunFinished (the engine died): the best we know.
            (None, Some(at)) => SystemTime::now()
                .duration_since(at)
                .map_or_else(|_| "-".to_owned(), |d| format_duration_ms(millis(d))),
            (None, None) => "-".to_owned(),
        };
        let avg = if self.started == 0 {
            "-".to_owned()
        } else {
            let n = u128::from(self.started);
            let ms = (self.started_ms + n / 2) / n;
            format_duration_ms(u64::try_from(ms).unwrap_or(u64::MAX))
        };
        let utilization = metrics.map_or_else(
            || "-".to_owned(),
            |m| {
                format!(
                    "{}%",
                    (m.gauge("parallel_utilization") * 100.0).round() as u64
                )
            },
        );
        // The engine's gauges are the catalog figures the JSON report also
        // carries; our own tracking only stands in when they never came.
        let peak = metrics.map_or(self.peak as u64, |m| m.gauge("parallel_peak") as u64);
        let limit = match (metrics, self.limit) {
            (Some(m), _) => (m.gauge("parallel_limit") as u64).to_string(),
            (None, Some(l)) => l.to_string(),
            (None, None) => "-".to_owned(),
        };
        let _ = writeln!(s, "Execution Summary");
        let _ = writeln!(s, "=================");
        let _ = writeln!(s, "Duration: {duration}");
        let _ = writeln!(
            s,
            "Tasks: {} total, {} succeeded, {} failed, {} timeout, {} cancelled, {} skipped",
            c.total(),
            c.succeeded,
            c.failed,
            c.timeout,
            c.cancelled,
            c.skipped
        );
        let _ = writeln!(s, "Avg task time: {avg}");
        let _ = writeln!(s, "Parallel utilization: {utilization}");
        let _ = writeln!(s, "Peak concurrent: {peak}/{limit}");
        if let Some(line) = metrics.and_then(llm_line) {
            let _ = writeln!(s, "{line}");
        }
        if c.not_succeeded() > 0 {
            let _ = writeln!(s, "Failed: {}", self.failed_line());
        }
        if self.options.details {
            self.render_details(&mut s);
        }
        s
    }

    fn failed_line(&self) -> String {
        let limit = self.options.failed_limit;
        let named: Vec<&str> = [&self.failed, &self.cancelled, &self.skipped]
            .into_iter()
            .flat_map(Earliest::in_order)
            .take(limit)
            .collect();
        let more = self.counts.not_succeeded() - named.len() as u64;
        let mut line = named.join(", ");
        if more > 0 {
            if !line.is_empty() {
                line.push_str(", ");
            }
            let _ = write!(line, "… and {more} more");
        }
        line
    }

    fn render_details(&self, s: &mut String) {
        let Some((_, stopped, metrics)) = &self.finished else {
            return;
        };
        if let Some(reason) = stopped {
            let _ = writeln!(s, "Stopped: {reason}");
        }
        let wait = metrics.timer("semaphore_wait_ms");
        if wait.count > 0 {
            let _ = writeln!(
                s,
                "Semaphore wait: p50 {}, p95 {}",
                format_duration_ms(wait.p50.round() as u64),
                format_duration_ms(wait.p95.round() as u64)
            );
        }
        if !self.slowest.is_empty() {
            let mut slowest: Vec<_> = self.slowest.iter().map(|Reverse(e)| e).collect();
            slowest.sort_unstable_by(|a, b| b.cmp(a));
            let list: Vec<String> = slowest
                .into_iter()
                .map(|(ms, _, id)| format!("{id} ({})", format_duration_ms(*ms)))
                .collect();
            let _ = writeln!(s, "Slowest: {}", list.join(", "));
        }
    }
}

/// `LLM: 1,204 requests, 37 rate-limited, 1.2M tokens in, 340k out,
/// $1.27` for a run whose metrics have the LLM counters (a run with LLM
/// agents); the rate-limited count even when 0, the cost only when the
/// run knew a price (its `llm_cost_usd` counter is there).
fn llm_line(metrics: &Metrics) -> Option<String> {
    let requests = *metrics.counters.get("llm_requests")?;
    let mut line = format!(
        "LLM: {} request{}, {} rate-limited, {} tokens in, {} out",
        format_count(requests),
        if requests == 1 { "" } else { "s" },
        format_count(metrics.counter("llm_rate_limited")),
        format_tokens(metrics.counter("llm_prompt_tokens")),
        format_tokens(metrics.counter("llm_completion_tokens")),
    );
    if let Some(cost) = metrics.amounts.get("llm_cost_usd") {
        let _ = write!(line, ", {}", format_dollars(*cost));
    }
    Some(line)
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Prints the [`Summary`] when the run is over (at [`Reporter::finish`]).
pub struct SummaryReporter {
    summary: Summary,
    out: Output,
}

impl SummaryReporter {
    /// A summary written to `out` (the CLI passes stderr).
    #[must_use]
    pub fn new(out: Output, options: SummaryOptions) -> Self {
        Self {
            summary: Summary::new(options),
            out,
        }
    }

    /// The summary so far.
    #[must_use]
    pub fn summary(&self) -> &Summary {
        &self.summary
    }
}

impl std::fmt::Debug for SummaryReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SummaryReporter")
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

impl Reporter for SummaryReporter {
    fn on_event(&mut self, event: &Event) -> Result<(), ReportError> {
        self.summary.observe(event);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ReportError> {
        let text = self.summary.render();
        self.out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush())
            .context(|| "the summary".to_owned())
    }
}
