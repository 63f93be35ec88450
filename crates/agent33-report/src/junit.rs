//! `--junit PATH`: JUnit XML for CI systems, written when the run is over:
//! atomically over a regular file, in place to a device, FIFO or
//! `/dev/stdout`.
//!
//! The mapping (PRODUCT.md): one `<testsuite>` per agent, named after it, in
//! the order agents first appear in the input (none when there are no
//! tasks); one `<testcase>` per task in input order, `classname` = agent,
//! `name` = the task id without its `agent:` prefix (`x`, `x#2`: repeated
//! artifacts stay distinct cases, which CI systems tell apart by name).
//! `failed` → `<failure message=…>`, `timeout` → `<failure type="timeout"
//! message=…>`, `cancelled` and `skipped` → `<skipped message="reason"/>`.
//! Times are seconds. Attempts that failed before a retry become
//! `<rerunFailure>` (or `<flakyFailure>` when the task finally succeeded),
//! as nextest writes them, typed `timeout` when the attempt timed out. A
//! task that ran on a worker (a distributed run) has a `worker` property.
//!
//! Output goes into `<system-out>`/`<system-err>` only for tasks that did not
//! succeed (successes' output is noise in CI and can be large), each cut to
//! its tail of [`JunitReporter::output_limit`] bytes. The reporter keeps one
//! compact record per task until the end, since the XML's counts come first.

use std::collections::HashMap;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent33_parallel::{AgentName, Event, TaskResult, TaskStatus, Timestamp};
use quick_junit::{
    NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestRerun, TestSuite,
};

use crate::Reporter;
use crate::error::{Context as _, ReportError};
use crate::format::{bounded_tail, name_in_agent};
use crate::report_file::ReportFile;

/// Default bytes of each output stream kept per test case.
pub const DEFAULT_JUNIT_OUTPUT_LIMIT: usize = 64 * 1024;

#[derive(Debug)]
struct Case {
    seq: u64,
    name: String,
    status: TaskStatus,
    duration_ms: u64,
    error: Option<String>,
    started_at: Option<Timestamp>,
    finished_at: Option<Timestamp>,
    stdout: Option<String>,
    stderr: Option<String>,
    /// Earlier attempts' statuses and errors, oldest first.
    reruns: Vec<(TaskStatus, String)>,
    /// The worker its last attempt ran on, if one was reported.
    worker: Option<String>,
}

#[derive(Debug)]
struct Suite {
    agent: AgentName,
    cases: Vec<Case>,
}

/// Writes a run as JUnit XML to a path.
#[derive(Debug)]
pub struct JunitReporter {
    path: PathBuf,
    file: Option<ReportFile>,
    name: String,
    output_limit: usize,
    success_output: bool,
    suites: Vec<Suite>,
    suite_of: HashMap<AgentName, usize>,
    retries: HashMap<u64, Vec<(TaskStatus, String)>>,
    run_started: Option<Timestamp>,
    duration_ms: Option<u64>,
}

impl JunitReporter {
    /// Prepares the report at `path` now, so that a path that cannot be written
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
        let path = path.as_ref().to_owned();
        let file = ReportFile::create(&path).context(|| target(&path))?;
        Ok(Self {
            path,
            file: Some(file),
            name: "agent-33".to_owned(),
            output_limit: DEFAULT_JUNIT_OUTPUT_LIMIT,
            success_output: false,
            suites: Vec::new(),
            suite_of: HashMap::new(),
            retries: HashMap::new(),
            run_started: None,
            duration_ms: None,
        })
    }

    /// The `name` of the root `<testsuites>` element (default `agent-33`).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Bytes of each output stream kept per test case (the tail; default
    /// [`DEFAULT_JUNIT_OUTPUT_LIMIT`]).
    #[must_use]
    pub fn output_limit(mut self, bytes: usize) -> Self {
        self.output_limit = bytes;
        self
    }

    /// Also records the output of tasks that succeeded (default: off).
    #[must_use]
    pub fn success_output(mut self, yes: bool) -> Self {
        self.success_output = yes;
        self
    }

    fn record(&mut self, seq: u64, r: &TaskResult) {
        let keep_output = self.success_output || r.status != TaskStatus::Success;
        let bounded = |text: &str| {
            (keep_output && !text.is_empty())
                .then(|| bounded_tail(text, self.output_limit).into_owned())
        };
        let case = Case {
            seq,
            name: name_in_agent(&r.task).to_owned(),
            status: r.status,
            duration_ms: r.duration_ms,
            error: r.error.clone(),
            started_at: r.started_at,
            finished_at: r.finished_at,
            stdout: bounded(&r.output),
            stderr: bounded(&r.stderr),
            reruns: self.retries.remove(&seq).unwrap_or_default(),
            worker: r.worker.clone(),
        };
        let index = match self.suite_of.get(&r.task.agent) {
            Some(&i) => i,
            None => {
                self.suites.push(Suite {
                    agent: r.task.agent.clone(),
                    cases: Vec::new(),
                });
                self.suite_of
                    .insert(r.task.agent.clone(), self.suites.len() - 1);
                self.suites.len() - 1
            }
        };
        self.suites[index].cases.push(case);
    }

    /// The report built from what was recorded (consumes the records).
    fn build(&mut self) -> Report {
        let mut report = Report::new(self.name.as_str());
        if let Some(at) = self.run_started {
            report.set_timestamp(to_chrono(at));
        }
        if let Some(ms) = self.duration_ms {
            report.set_time(Duration::from_millis(ms));
        }
        let mut suites = std::mem::take(&mut self.suites);
        for suite in &mut suites {
            suite.cases.sort_unstable_by_key(|c| c.seq);
        }
        // Agents in the order they first appear in the input.
        suites.sort_unstable_by_key(|s| s.cases.first().map_or(u64::MAX, |c| c.seq));
        for suite in suites {
            report.add_test_suite(self.build_suite(suite));
        }
        report
    }

    fn build_suite(&self, suite: Suite) -> TestSuite {
        let mut ts = TestSuite::new(suite.agent.as_str());
        let first_start = suite.cases.iter().filter_map(|c| c.started_at).min();
        let last_end = suite.cases.iter().filter_map(|c| c.finished_at).max();
        if let Some(at) = first_start.or(self.run_started) {
            ts.set_timestamp(to_chrono(at));
        }
        // Tasks of one agent overlap in a parallel run, so the suite's time
        // is its wall span, not the sum of its cases.
        if let (Some(start), Some(end)) = (first_start, last_end) {
            ts.set_time(end.0.duration_since(start.0).unwrap_or_default());
        }
        for case in suite.cases {
            ts.add_test_case(build_case(&suite.agent, case));
        }
        ts
    }
}

fn build_case(agent: &AgentName, case: Case) -> TestCase {
    let error = case.error.unwrap_or_default();
    let status = match case.status {
        TaskStatus::Success => {
            let mut status = TestCaseStatus::success();
            for (s, e) in &case.reruns {
                status.add_rerun(rerun(*s, e));
            }
            status
        }
        TaskStatus::Failed | TaskStatus::Timeout => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_message(error.as_str());
            if case.status == TaskStatus::Timeout {
                status.set_type("timeout");
            }
            for (s, e) in &case.reruns {
                status.add_rerun(rerun(*s, e));
            }
            status
        }
        TaskStatus::Cancelled | TaskStatus::Skipped => {
            let mut status = TestCaseStatus::skipped();
            status.set_message(error.as_str());
            status
        }
    };
    let mut tc = TestCase::new(case.name, status);
    tc.set_classname(agent.as_str());
    tc.set_time(Duration::from_millis(case.duration_ms));
    if let Some(at) = case.started_at {
        tc.set_timestamp(to_chrono(at));
    }
    if let Some(out) = case.stdout {
        tc.set_system_out(out);
    }
    if let Some(err) = case.stderr {
        tc.set_system_err(err);
    }
    if let Some(worker) = case.worker {
        tc.add_property(Property::new("worker", worker));
    }
    tc
}

/// An earlier attempt: a `<failure>`-like rerun, typed `timeout` as the
/// final failure is.
fn rerun(status: TaskStatus, error: &str) -> TestRerun {
    let mut r = TestRerun::new(NonSuccessKind::Failure);
    r.set_message(error);
    if status == TaskStatus::Timeout {
        r.set_type("timeout");
    }
    r
}

fn to_chrono(at: Timestamp) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::<chrono::Utc>::from(at.0).fixed_offset()
}

fn target(path: &Path) -> String {
    format!("the JUnit report `{}`", path.display())
}

impl Reporter for JunitReporter {
    fn on_event(&mut self, event: &Event) -> Result<(), ReportError> {
        match event {
            Event::RunStarted { at, .. } => self.run_started = Some(*at),
            Event::TaskRetryScheduled {
                seq, status, error, ..
            } => {
                self.retries
                    .entry(*seq)
                    .or_default()
                    .push((*status, error.clone()));
            }
            Event::TaskFinished { seq, result, .. } => self.record(*seq, result),
            Event::RunFinished { duration_ms, .. } => self.duration_ms = Some(*duration_ms),
            Event::DependenciesIgnored
            | Event::TaskQueued { .. }
            | Event::TaskStarted { .. }
            | Event::TaskOutput { .. }
            | Event::TaskDeferred { .. }
            | Event::RunStopTriggered { .. } => {}
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ReportError> {
        let Some(mut file) = self.file.take() else {
            return Ok(());
        };
        let report = self.build();
        let path = self.path.clone();
        (|| {
            let mut out = BufWriter::new(file.writer()?);
            report.serialize(&mut out).map_err(std::io::Error::other)?;
            out.write_all(b"\n")?;
            out.flush()?;
            drop(out);
            file.commit()
        })()
        .context(|| target(&path))
    }
}
