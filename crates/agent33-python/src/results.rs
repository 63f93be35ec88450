//! Results and events as Python objects, and the CLI's report files.
//!
//! Result objects are thin views over the engine's `TaskResult` and
//! `ExecutionResults`; the lists are built on first use. The reports are
//! agent33-report's: the JSON one written live during the run, the others
//! rendered from it as `agent-33 report` renders them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::UNIX_EPOCH;

use agent33_parallel::{Event, Reason, TaskResult, TaskStatus, Timestamp};
use agent33_report::{
    JunitReporter, ReportError, Reporter, Reporters, SavedReport, TimingsReporter, TraceReporter,
};
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::shared::{Finished, RunShared, lock, report_message};
use crate::task::PyAgentTask;

/// One task's final outcome.
#[pyclass(frozen, module = "agent33_parallel._native", name = "TaskResult")]
pub struct PyTaskResult {
    result: TaskResult,
    task: Py<PyAgentTask>,
    value: Option<Py<PyAny>>,
    traceback: Option<String>,
    python: bool,
}

impl PyTaskResult {
    fn new(py: Python<'_>, shared: &RunShared, seq: u64, result: TaskResult) -> Self {
        let extras = shared.extras(py, seq);
        Self {
            python: shared.is_python_agent(result.task.agent.as_str()),
            task: shared.task_object(py, seq).unbind(),
            value: extras.value,
            traceback: extras.traceback,
            result,
        }
    }
}

fn datetime(py: Python<'_>, at: Option<Timestamp>) -> PyResult<Option<Bound<'_, PyAny>>> {
    let Some(Timestamp(at)) = at else {
        return Ok(None);
    };
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let dt = py.import("datetime")?;
    let utc = dt.getattr("timezone")?.getattr("utc")?;
    dt.getattr("datetime")?
        .call_method1("fromtimestamp", (secs, utc))
        .map(Some)
}

#[pymethods]
impl PyTaskResult {
    /// The task, as the caller gave it.
    #[getter]
    fn task(&self, py: Python<'_>) -> Py<PyAgentTask> {
        self.task.clone_ref(py)
    }

    /// `success`, `failed`, `timeout`, `cancelled` or `skipped`.
    #[getter]
    fn status<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        PyString::intern(py, self.result.status.as_str())
    }

    #[getter]
    fn duration_ms(&self) -> u64 {
        self.result.duration_ms
    }

    /// A Python agent's return value (on success); a command's stdout.
    #[getter]
    fn output(&self, py: Python<'_>) -> Py<PyAny> {
        if self.python {
            match (&self.value, self.result.status) {
                (Some(v), TaskStatus::Success) => v.clone_ref(py),
                _ => py.None(),
            }
        } else {
            PyString::new(py, &self.result.output).into_any().unbind()
        }
    }

    #[getter]
    fn error(&self) -> Option<&str> {
        self.result.error.as_deref()
    }

    #[getter]
    fn attempts(&self) -> u32 {
        self.result.attempts
    }

    #[getter]
    fn started_at<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        datetime(py, self.result.started_at)
    }

    #[getter]
    fn finished_at<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        datetime(py, self.result.finished_at)
    }

    /// The formatted traceback of the exception that failed the task.
    #[getter]
    fn traceback(&self) -> Option<&str> {
        match self.result.status {
            TaskStatus::Failed => self.traceback.as_deref(),
            _ => None,
        }
    }

    /// A command's captured stderr (`""` for Python agents).
    #[getter]
    fn stderr(&self) -> &str {
        &self.result.stderr
    }

    /// What the engine and the command agent noted about the task, as the
    /// CLI prints them (e.g. "1 escaped process killed").
    #[getter]
    fn notes(&self) -> Vec<String> {
        self.result.notes.clone()
    }

    /// A command's exit code; None for Python agents.
    #[getter]
    fn exit_code(&self) -> Option<i32> {
        self.result.exit_code
    }

    /// The tokens an LLM agent's requests used, summed over attempts: a
    /// dict with `prompt_tokens`, `completion_tokens` and `total_tokens`;
    /// None when the agent reported none.
    #[getter]
    fn usage<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(usage) = self.result.usage else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("prompt_tokens", usage.prompt_tokens)?;
        d.set_item("completion_tokens", usage.completion_tokens)?;
        d.set_item("total_tokens", usage.total_tokens)?;
        Ok(Some(d))
    }

    /// What that usage cost in US dollars, when a price is known.
    #[getter]
    fn cost_usd(&self) -> Option<f64> {
        self.result.cost_usd
    }

    fn __repr__(&self) -> String {
        format!(
            "TaskResult(id={:?}, status={:?}, duration_ms={}, error={:?})",
            self.result.task.id.as_str(),
            self.result.status.as_str(),
            self.result.duration_ms,
            self.result.error
        )
    }
}

/// The four lists, built on first use.
#[derive(Default)]
struct Lists {
    succeeded: OnceLock<Py<PyList>>,
    failed: OnceLock<Py<PyList>>,
    cancelled: OnceLock<Py<PyList>>,
    skipped: OnceLock<Py<PyList>>,
}

/// A run's results.
#[pyclass(frozen, module = "agent33_parallel._native", name = "ExecutionResults")]
pub struct PyExecutionResults {
    finished: Arc<Finished>,
    shared: Arc<RunShared>,
    lists: Lists,
    seqs: OnceLock<HashMap<String, u64>>,
}

impl PyExecutionResults {
    pub fn new(finished: Arc<Finished>, shared: Arc<RunShared>) -> Self {
        Self {
            finished,
            shared,
            lists: Lists::default(),
            seqs: OnceLock::new(),
        }
    }

    fn list(
        &self,
        py: Python<'_>,
        cell: &OnceLock<Py<PyList>>,
        results: &[TaskResult],
    ) -> PyResult<Py<PyList>> {
        if let Some(list) = cell.get() {
            return Ok(list.clone_ref(py));
        }
        let seqs = self.seqs.get_or_init(|| {
            lock(&self.shared.tasks)
                .iter()
                .zip(0u64..)
                .map(|(t, seq)| (t.get().task.id.as_str().to_owned(), seq))
                .collect()
        });
        let items = results
            .iter()
            .map(|r| {
                let seq = seqs[r.task.id.as_str()];
                Py::new(py, PyTaskResult::new(py, &self.shared, seq, r.clone()))
            })
            .collect::<PyResult<Vec<_>>>()?;
        let list = PyList::new(py, items)?.unbind();
        Ok(cell.get_or_init(|| list).clone_ref(py))
    }

    /// The run's JSON report, written while it ran.
    fn report(&self) -> PyResult<&Path> {
        match &self.finished.report {
            Ok(live) => Ok(&live.path),
            Err(e) => Err(PyOSError::new_err(e.clone())),
        }
    }

    /// Renders a report from the JSON one, as `agent-33 report` does.
    fn render(&self, py: Python<'_>, reporter: PyResult<impl Reporter + 'static>) -> PyResult<()> {
        let reporter = reporter?;
        let saved = self.report()?;
        py.detach(move || {
            let saved = SavedReport::from_path(saved).map_err(|e| e.to_string())?;
            let mut reporters = Reporters::new().with(reporter);
            let mut errors = saved.replay(&mut reporters);
            errors.extend(reporters.finish());
            match errors.first() {
                Some(e) => Err(report_message(e)),
                None => Ok(()),
            }
        })
        .map_err(PyOSError::new_err)
    }
}

fn created<R>(r: Result<R, ReportError>) -> PyResult<R> {
    r.map_err(|e| PyOSError::new_err(report_message(&e)))
}

#[pymethods]
impl PyExecutionResults {
    #[getter]
    fn total(&self) -> usize {
        self.finished.results.total
    }

    #[getter]
    fn succeeded(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        self.list(py, &self.lists.succeeded, &self.finished.results.succeeded)
    }

    #[getter]
    fn failed(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        self.list(py, &self.lists.failed, &self.finished.results.failed)
    }

    #[getter]
    fn cancelled(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        self.list(py, &self.lists.cancelled, &self.finished.results.cancelled)
    }

    #[getter]
    fn skipped(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        self.list(py, &self.lists.skipped, &self.finished.results.skipped)
    }

    #[getter]
    fn duration_ms(&self) -> u64 {
        self.finished.results.duration_ms
    }

    /// succeeded ÷ total (0 when there are no tasks).
    #[getter]
    fn success_rate(&self) -> f64 {
        self.finished.results.success_rate
    }

    /// The metrics catalog's JSON export shape, as a dict.
    #[getter]
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let json = serde_json::to_string(&self.finished.results.metrics)
            .expect("metrics serialise: plain numbers and names");
        py.import("json")?.call_method1("loads", (json,))
    }

    /// The CLI's `--report` document.
    fn to_json(&self, py: Python<'_>) -> PyResult<String> {
        let path = self.report()?;
        py.detach(|| std::fs::read_to_string(path))
            .map_err(|e| PyOSError::new_err(format!("cannot read the run's report: {e}")))
    }

    /// Writes the CLI's `--report` file.
    fn write_report(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let from = self.report()?;
        py.detach(|| std::fs::copy(from, &path).map(drop))
            .map_err(|e| {
                PyOSError::new_err(format!(
                    "cannot write the JSON report `{}`: {e}",
                    path.display()
                ))
            })
    }

    /// Writes the CLI's `--junit` file.
    fn write_junit(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        self.render(py, created(JunitReporter::create(path)))
    }

    /// Writes the CLI's `--timings` file (the HTML timeline).
    fn write_timings(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        self.render(py, created(TimingsReporter::create(path)))
    }

    /// Writes the CLI's `--trace` file.
    fn write_trace(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        self.render(py, created(TraceReporter::create(path)))
    }

    fn __repr__(&self) -> String {
        let r = &self.finished.results;
        format!(
            "ExecutionResults(total={}, succeeded={}, failed={}, cancelled={}, skipped={}, duration_ms={})",
            r.total,
            r.succeeded.len(),
            r.failed.len(),
            r.cancelled.len(),
            r.skipped.len(),
            r.duration_ms
        )
    }
}

/// A reason's kind, as the engine names it when it writes one
/// (`{"kind": "exit_code", "code": 2}`): one name per fact.
fn reason_kind(reason: &Reason) -> Option<String> {
    match serde_json::to_value(reason).ok()?.get("kind")? {
        serde_json::Value::String(kind) => Some(kind.clone()),
        _ => None,
    }
}

/// One of the run's events.
#[pyclass(frozen, module = "agent33_parallel._native", name = "Event")]
pub struct PyEvent {
    /// `queued`, `started`, `retrying`, `finished` or `run_finished`.
    #[pyo3(get)]
    kind: &'static str,
    /// The task, except on `run_finished`.
    #[pyo3(get)]
    task: Option<Py<PyAgentTask>>,
    /// The attempt, on `started` and `retrying`.
    #[pyo3(get)]
    attempt: Option<u32>,
    /// Why the attempt failed, in words, on `retrying`.
    #[pyo3(get)]
    error: Option<String>,
    /// How the attempt ended, on `retrying`: `failed` or `timeout`.
    #[pyo3(get)]
    status: Option<&'static str>,
    /// Why, as a fact, on `retrying`: `timeout`, `exit_code`, `signal`,
    /// `agent_error`, `execution_lost`… (the engine's reason kinds).
    #[pyo3(get)]
    reason: Option<String>,
    /// The backoff before the next attempt, on `retrying`.
    #[pyo3(get)]
    delay_seconds: Option<f64>,
    /// The task's result, on `finished`.
    #[pyo3(get)]
    result: Option<Py<PyTaskResult>>,
    /// The run's results, on `run_finished`.
    #[pyo3(get)]
    results: Option<Py<PyExecutionResults>>,
}

impl PyEvent {
    fn task_event(kind: &'static str, task: Py<PyAgentTask>) -> Self {
        Self {
            kind,
            task: Some(task),
            attempt: None,
            error: None,
            status: None,
            reason: None,
            delay_seconds: None,
            result: None,
            results: None,
        }
    }

    /// The Python view of an engine event; None for events not shown.
    pub fn from_event(py: Python<'_>, shared: &RunShared, event: Event) -> PyResult<Option<Self>> {
        let task = |seq: u64| shared.task_object(py, seq).unbind();
        Ok(Some(match event {
            Event::TaskQueued { seq, .. } => Self::task_event("queued", task(seq)),
            Event::TaskStarted { seq, attempt, .. } => Self {
                attempt: Some(attempt),
                ..Self::task_event("started", task(seq))
            },
            Event::TaskRetryScheduled {
                seq,
                attempt,
                status,
                reason,
                error,
                delay,
                ..
            } => Self {
                attempt: Some(attempt),
                error: Some(error),
                status: Some(status.as_str()),
                reason: reason.as_ref().and_then(reason_kind),
                delay_seconds: Some(delay.as_secs_f64()),
                ..Self::task_event("retrying", task(seq))
            },
            Event::TaskFinished { seq, result, .. } => Self {
                result: Some(Py::new(py, PyTaskResult::new(py, shared, seq, *result))?),
                ..Self::task_event("finished", task(seq))
            },
            _ => return Ok(None),
        }))
    }

    /// The last event, with the run's results.
    pub fn run_finished(py: Python<'_>, results: PyExecutionResults) -> PyResult<Self> {
        Ok(Self {
            kind: "run_finished",
            task: None,
            attempt: None,
            error: None,
            status: None,
            reason: None,
            delay_seconds: None,
            result: None,
            results: Some(Py::new(py, results)?),
        })
    }
}

#[pymethods]
impl PyEvent {
    fn __repr__(&self, py: Python<'_>) -> String {
        match &self.task {
            Some(t) => format!(
                "Event(kind={:?}, task={:?})",
                self.kind,
                t.get().task.id.as_str()
            ),
            None => {
                let _ = py;
                format!("Event(kind={:?})", self.kind)
            }
        }
    }
}
