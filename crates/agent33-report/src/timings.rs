//! `--timings PATH`: one self-contained HTML page of the run's timeline,
//! written when the run is over (atomically over a regular file, in place
//! to a device or FIFO).
//!
//! In the spirit of cargo's `--timings`: a Gantt chart with one lane per
//! slot and one bar per attempt, coloured by status (retried attempts
//! hatched, backoffs drawn as dotted links, the queue wait shown as a ghost
//! on hover); running and waiting attempts over time against the limit; a
//! sortable, filterable, paginated table of every task; and the run's
//! summary figures.
//!
//! The page has no external resources (no network, no fonts): CSS and
//! JavaScript are inline ([`TEMPLATE`] in `timings.html`), the run's data is
//! one JSON blob in a `<script type="application/json">`, and the charts are
//! drawn on `<canvas>` elements with a hit test for hover, so 10,000 tasks
//! cost no more DOM nodes than ten. Every `<`, `>` and `&` in the blob is
//! written as a JSON `\u` escape, so no artifact name can close the script
//! element; the page puts names into the DOM with `textContent` only.
//!
//! After rendering, the page sets `data-bars` (bars drawn), `data-tasks`,
//! `data-attempts`, `data-render-ms` (its script's run time) and
//! `data-load-ms` (navigation start to rendered) on `<body>`;
//! `data-js-errors` counts uncaught script errors. Tests and benchmarks read these from a headless
//! browser's DOM.

use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use agent33_parallel::{Event, TaskStatus, TimerSummary, Timestamp};
use serde::Serialize;
use serde::ser::Serializer;

use crate::Reporter;
use crate::error::ReportError;
use crate::progress::{LimitSource, LimitStatus};
use crate::timeline::Timeline;
use crate::timeline_file::TimelineFile;

/// The page around the data: `/*AGENT33_DATA*/` marks where the blob goes.
pub const TEMPLATE: &str = include_str!("timings.html");

const DATA_MARK: &str = "/*AGENT33_DATA*/";

/// Longest error text kept per task or attempt; the JSON report has them
/// whole, the page needs a readable line or two.
const ERROR_CHARS: usize = 500;

/// Writes a run's timeline as a self-contained HTML page to a path.
pub struct TimingsReporter {
    file: TimelineFile,
    /// The shared limits to sample, and what they were over the run.
    limits: Option<LimitSource>,
    history: Arc<Mutex<LimitHistory>>,
}

impl std::fmt::Debug for TimingsReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimingsReporter")
            .field("file", &self.file)
            .field("limits", &self.limits.is_some())
            .finish_non_exhaustive()
    }
}

/// Each shared limit's value over the run, as sampled: a new point only
/// when it changed.
#[derive(Debug, Default)]
struct LimitHistory {
    /// Name, most, and (when, limit, paused) points.
    series: Vec<(String, usize, Vec<LimitPoint>)>,
}

/// When a limit changed, to what, and whether it was paused.
type LimitPoint = (Timestamp, usize, bool);

impl LimitHistory {
    fn sample(&mut self, statuses: Vec<LimitStatus>, at: Timestamp) {
        for status in statuses {
            let i = match self.series.iter().position(|(n, _, _)| *n == status.name) {
                Some(i) => i,
                None => {
                    self.series
                        .push((status.name.clone(), status.max, Vec::new()));
                    self.series.len() - 1
                }
            };
            let points = &mut self.series[i].2;
            let point = (status.limit, status.paused.is_some());
            if points.last().map(|&(_, l, p)| (l, p)) != Some(point) {
                points.push((at, point.0, point.1));
            }
        }
    }
}

impl TimingsReporter {
    /// Prepares the page at `path` now, so that a path that cannot be written
    /// fails before the run. A regular file, or a path where nothing is yet
    /// (missing parent folders are created), is replaced only when it is
    /// complete, by renaming a temporary file over it; a symbolic link is
    /// followed and stays; anything else (`/dev/null`, a FIFO,
    /// `/dev/stdout`) is written in place, never replaced.
    ///
    /// # Errors
    ///
    /// When the folder or the temporary file cannot be created, or the
    /// path cannot be opened for writing (it is a folder, say).
    pub fn create(path: impl AsRef<Path>) -> Result<Self, ReportError> {
        let history = Arc::new(Mutex::new(LimitHistory::default()));
        let drawn = Arc::clone(&history);
        let file = TimelineFile::create(
            path.as_ref(),
            "the timings page",
            Box::new(move |timeline, file| {
                let history = drawn.lock().unwrap_or_else(PoisonError::into_inner);
                write_page(timeline, &history, file)
            }),
        )?;
        Ok(Self {
            file,
            limits: None,
            history,
        })
    }

    /// Draws the shared limits of `source` (LLM providers) over time on the
    /// concurrency chart, sampled at every event and tick.
    #[must_use]
    pub fn limits(mut self, source: LimitSource) -> Self {
        self.limits = Some(source);
        self
    }

    fn sample(&self) {
        if let Some(source) = &self.limits {
            let at = Timestamp(std::time::SystemTime::now());
            self.history
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .sample(source(), at);
        }
    }
}

impl Reporter for TimingsReporter {
    fn on_event(&mut self, event: &Event) -> Result<(), ReportError> {
        self.sample();
        self.file.on_event(event)
    }

    fn tick(&mut self) -> Result<(), ReportError> {
        self.sample();
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ReportError> {
        self.file.finish()
    }
}

/// Writes the timings page of `timeline`.
///
/// # Errors
///
/// When `out` cannot be written.
///
/// # Examples
///
/// ```
/// use agent33_report::{Timeline, write_timings};
/// let mut page = Vec::new();
/// write_timings(&Timeline::default(), &mut page).expect("writes to a Vec");
/// let page = String::from_utf8(page).expect("UTF-8");
/// assert!(page.starts_with("<!DOCTYPE html>"));
/// assert!(page.contains(r#"<script type="application/json" id="agent33-data">"#));
/// ```
pub fn write_timings(timeline: &Timeline, out: impl Write) -> io::Result<()> {
    write_page(timeline, &LimitHistory::default(), out)
}

fn write_page(timeline: &Timeline, history: &LimitHistory, out: impl Write) -> io::Result<()> {
    let (head, tail) = TEMPLATE
        .split_once(DATA_MARK)
        .ok_or_else(|| io::Error::other("the timings template has no data mark"))?;
    let mut out = BufWriter::new(out);
    out.write_all(head.as_bytes())?;
    let mut safe = ScriptSafe(&mut out);
    let mut blob = Blob::new(timeline);
    blob.limits = history
        .series
        .iter()
        .map(|(name, max, points)| {
            let points = points
                .iter()
                .map(|&(at, limit, paused)| (Ms(timeline.offset_ms(at)), limit, u8::from(paused)))
                .collect();
            (name.as_str(), *max, points)
        })
        .collect();
    serde_json::to_writer(&mut safe, &blob)?;
    out.write_all(tail.as_bytes())?;
    out.flush()
}

/// Passes JSON through with `<`, `>` and `&` as `\u` escapes. In JSON these
/// characters occur only inside strings, where the escapes mean the same;
/// in HTML they are what could end the script element (`</script>`) or open
/// a comment (`<!--`), so after this nothing in the data can.
struct ScriptSafe<W>(W);

impl<W: Write> Write for ScriptSafe<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut start = 0;
        for (i, &b) in buf.iter().enumerate() {
            let escape: &[u8] = match b {
                b'<' => b"\\u003c",
                b'>' => b"\\u003e",
                b'&' => b"\\u0026",
                _ => continue,
            };
            self.0.write_all(&buf[start..i])?;
            self.0.write_all(escape)?;
            start = i + 1;
        }
        self.0.write_all(&buf[start..])?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Milliseconds, written as an integer when whole and with one decimal
/// otherwise: half the bytes of full `f64` precision, which no one can see
/// on a chart.
#[derive(Clone, Copy)]
struct Ms(f64);

impl Serialize for Ms {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let tenths = (self.0 * 10.0).round();
        if !tenths.is_finite() {
            return s.serialize_u8(0);
        }
        if tenths % 10.0 == 0.0 {
            s.serialize_i64((tenths / 10.0) as i64)
        } else {
            s.serialize_f64(tenths / 10.0)
        }
    }
}

/// The page's data. Rows are arrays rather than objects, since at 10,000
/// tasks the repeated keys would be most of the file; `timings.html` names
/// the columns.
#[derive(Serialize)]
struct Blob<'a> {
    version: u32,
    generator: &'static str,
    run: RunBlob,
    summary: SummaryBlob,
    statuses: [&'static str; 5],
    agents: Vec<&'a str>,
    /// seq, id (null when it is `agent:artifact`), agent index, artifact,
    /// status index (-1 unfinished), duration, attempts, start, end, error,
    /// exit code, first wait, resumed (1: succeeded in an earlier run; its
    /// times are not this run's, so start and end are null).
    tasks: Vec<TaskRow<'a>>,
    /// task index, attempt, slot, start, end (null if it never ended),
    /// status index, waited, error (null when the task's own), last
    /// attempt, lane, worker (null when none reported), deferred (1:
    /// refused before doing any work, by a provider's rate limit).
    attempts: Vec<AttemptRow<'a>>,
    /// Shared limits over time (LLM providers): name, most, and points of
    /// (time, limit, paused 1/0), each holding until the next.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    limits: Vec<LimitRow<'a>>,
}

type LimitRow<'a> = (&'a str, usize, Vec<(Ms, usize, u8)>);

type TaskRow<'a> = (
    u64,
    Option<&'a str>,
    usize,
    &'a str,
    i8,
    u64,
    u32,
    Option<Ms>,
    Option<Ms>,
    Option<String>,
    Option<i32>,
    Option<u64>,
    u8,
);

type AttemptRow<'a> = (
    usize,
    u32,
    usize,
    Ms,
    Option<Ms>,
    u8,
    u64,
    Option<String>,
    u8,
    usize,
    Option<&'a str>,
    u8,
);

#[derive(Serialize)]
struct RunBlob {
    started_at: Option<Timestamp>,
    wall_ms: Ms,
    limit: usize,
    lanes: usize,
    /// Each lane's label when the lanes are grouped by worker (else each
    /// is `slot N`).
    lane_labels: Option<Vec<String>>,
    stopped: Option<String>,
    stopped_at: Option<Ms>,
    finished: bool,
}

#[derive(Serialize)]
struct SummaryBlob {
    total: usize,
    counts: [usize; 5],
    retries: u64,
    utilization: f64,
    peak: usize,
    limit: usize,
    task_ms: TimerBlob,
    wait_ms: TimerBlob,
}

#[derive(Serialize)]
struct TimerBlob {
    count: u64,
    avg: Ms,
    p50: Ms,
    p95: Ms,
    max: Ms,
}

impl From<TimerSummary> for TimerBlob {
    fn from(t: TimerSummary) -> Self {
        Self {
            count: t.count,
            avg: Ms(t.avg),
            p50: Ms(t.p50),
            p95: Ms(t.p95),
            max: Ms(t.max),
        }
    }
}

/// Where the timeline draws each attempt: in its slot's lane, or, when
/// attempts ran on workers, in a group of lanes per worker (by name), each
/// attempt in the lowest lane of its group free when it started.
struct Lanes {
    /// The lane of each of the timeline's attempts, in their order.
    of_attempt: Vec<usize>,
    count: usize,
    labels: Option<Vec<String>>,
}

impl Lanes {
    fn of(t: &Timeline) -> Self {
        if t.attempts.iter().all(|a| a.worker.is_none()) {
            return Self {
                of_attempt: t.attempts.iter().map(|a| a.slot).collect(),
                count: t.lanes(),
                labels: None,
            };
        }
        // Attempts are in start order: each takes the first lane of its
        // worker's group that is free by then. A lane is free from its last
        // attempt's end (`None`: one still running at the last event).
        type Group = Vec<(Option<Timestamp>, Vec<usize>)>;
        let mut groups: std::collections::BTreeMap<&str, Group> = std::collections::BTreeMap::new();
        for (i, a) in t.attempts.iter().enumerate() {
            let group = groups.entry(a.worker.as_deref().unwrap_or("")).or_default();
            let free = group
                .iter()
                .position(|(free, _)| free.is_some_and(|f| f <= a.started_at));
            let lane = free.unwrap_or_else(|| {
                group.push((None, Vec::new()));
                group.len() - 1
            });
            group[lane].0 = a.finished_at.map(|end| end.max(a.started_at));
            group[lane].1.push(i);
        }
        let mut of_attempt = vec![0; t.attempts.len()];
        let mut labels = Vec::new();
        for (worker, lanes) in groups {
            for (k, (_, members)) in lanes.iter().enumerate() {
                for &i in members {
                    of_attempt[i] = labels.len();
                }
                let name = if worker.is_empty() { "local" } else { worker };
                labels.push(if k == 0 {
                    name.to_owned()
                } else {
                    String::new()
                });
            }
        }
        Self {
            of_attempt,
            count: labels.len(),
            labels: Some(labels),
        }
    }
}

fn clip(text: Option<&str>) -> Option<String> {
    text.map(|t| crate::format::clip(t, ERROR_CHARS).into_owned())
}

impl<'a> Blob<'a> {
    fn new(t: &'a Timeline) -> Self {
        let figures = t.figures();
        let mut agents: Vec<&str> = Vec::new();
        let mut agent_index = std::collections::HashMap::new();
        let mut task_index = std::collections::HashMap::with_capacity(t.tasks.len());
        let mut first_wait = std::collections::HashMap::new();
        for a in t.attempts.iter().filter(|a| a.attempt == 1) {
            first_wait.insert(a.seq, a.waited_ms);
        }
        let tasks = t
            .tasks
            .iter()
            .enumerate()
            .map(|(i, r)| {
                task_index.insert(r.seq, i);
                let agent = r.task.agent.as_str();
                let ai = *agent_index.entry(agent).or_insert_with(|| {
                    agents.push(agent);
                    agents.len() - 1
                });
                let plain_id = r.task.id.as_str().strip_prefix(agent).and_then(|rest| {
                    rest.strip_prefix(':')
                        .filter(|artifact| *artifact == r.task.artifact)
                });
                (
                    r.seq,
                    plain_id.is_none().then(|| r.task.id.as_str()),
                    ai,
                    r.task.artifact.as_str(),
                    r.status.map_or(-1, |s| s.index() as i8),
                    r.duration_ms,
                    r.attempts,
                    r.started_at
                        .filter(|_| !r.resumed)
                        .map(|at| Ms(t.offset_ms(at))),
                    r.finished_at
                        .filter(|_| !r.resumed)
                        .map(|at| Ms(t.offset_ms(at))),
                    clip(r.error.as_deref()),
                    r.exit_code,
                    first_wait.get(&r.seq).copied(),
                    u8::from(r.resumed),
                )
            })
            .collect();
        let last_attempt: std::collections::HashMap<u64, u32> =
            t.attempts
                .iter()
                .fold(std::collections::HashMap::new(), |mut m, a| {
                    let n = m.entry(a.seq).or_insert(0);
                    *n = (*n).max(a.attempt);
                    m
                });
        let lanes = Lanes::of(t);
        let attempts = t
            .attempts
            .iter()
            .zip(&lanes.of_attempt)
            .filter_map(|(a, &lane)| {
                let ti = *task_index.get(&a.seq)?;
                let last = last_attempt.get(&a.seq) == Some(&a.attempt);
                let task_error = t.tasks[ti].error.as_deref();
                let error = if last && a.error.as_deref() == task_error {
                    None
                } else {
                    clip(a.error.as_deref())
                };
                Some((
                    ti,
                    a.attempt,
                    a.slot,
                    Ms(t.offset_ms(a.started_at)),
                    a.finished_at.map(|at| Ms(t.offset_ms(at))),
                    a.status.index() as u8,
                    a.waited_ms,
                    error,
                    u8::from(last),
                    lane,
                    a.worker.as_deref(),
                    u8::from(a.deferred),
                ))
            })
            .collect();
        Blob {
            version: 1,
            generator: concat!("agent-33 ", env!("CARGO_PKG_VERSION")),
            run: RunBlob {
                started_at: t.origin(),
                wall_ms: Ms(figures.wall_ms),
                limit: figures.limit,
                lanes: lanes.count,
                lane_labels: lanes.labels,
                stopped: t.stopped.as_ref().map(ToString::to_string),
                stopped_at: t.stopped_at.map(|at| Ms(t.offset_ms(at))),
                finished: t.duration_ms.is_some(),
            },
            summary: SummaryBlob {
                total: figures.total,
                counts: figures.counts,
                retries: figures.retries,
                utilization: figures.utilization,
                peak: figures.peak,
                limit: figures.limit,
                task_ms: figures.task_ms.into(),
                wait_ms: figures.wait_ms.into(),
            },
            statuses: TaskStatus::ALL.map(|s| s.as_str()),
            agents,
            tasks,
            attempts,
            limits: Vec::new(),
        }
    }
}
