//! What a run's parts share: the state every agent of one run reaches (the
//! caller's task objects, the loop's hooks, what Python agents returned),
//! how an attempt of a Python agent ended, and the finished run with its
//! JSON report. Its own module so that the run, the agents and the results
//! all depend on it and not on each other.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use agent33_parallel::{AgentError, AgentOutput, AgentResult, ExecutionResults};
use agent33_report::{JsonReporter, ReportError};
use pyo3::prelude::*;

use crate::bridge::Bridge;
use crate::task::PyAgentTask;

/// How an attempt of a Python agent ended, as the loop saw it.
pub enum Outcome {
    /// It returned: `str()` of the value for the report, and the value.
    Ok {
        text: String,
        value: Option<Py<PyAny>>,
    },
    /// It raised.
    Err {
        message: String,
        traceback: Option<String>,
    },
    /// It was cancelled (or never started).
    Cancelled,
}

/// What Python agents gave besides what the engine records: the returned
/// object and the traceback of the last attempt.
#[derive(Default)]
pub struct Extras {
    pub value: Option<Py<PyAny>>,
    pub traceback: Option<String>,
}

/// What every agent of one run shares.
pub struct RunShared {
    pub bridge: Arc<Bridge>,
    /// The caller's task objects, by input position (the engine's `seq`):
    /// all of a list's at the start, a streamed one's as it is pushed.
    pub tasks: Mutex<Vec<Py<PyAgentTask>>>,
    /// The loop's `create_task`.
    pub create_task: Py<PyAny>,
    /// `_drive(coro, done)`: awaits an agent's coroutine and reports to
    /// `done` (cheaper than a done-callback, which costs the loop a turn).
    pub driver: Py<PyAny>,
    pub run_id: String,
    /// Agents whose output is a Python object (not a command's stdout).
    pub python_agents: Vec<String>,
    pub extras: Mutex<HashMap<u64, Extras>>,
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RunShared {
    /// The task object the caller gave for input position `seq`.
    pub fn task_object<'py>(&self, py: Python<'py>, seq: u64) -> Bound<'py, PyAgentTask> {
        let index = usize::try_from(seq).expect("seq indexes the run's task list");
        lock(&self.tasks)[index].bind(py).clone()
    }

    /// Records an attempt's extras and turns its outcome into the engine's.
    pub fn settle(&self, seq: u64, outcome: Outcome) -> AgentResult {
        let (extras, result) = match outcome {
            Outcome::Ok { text, value } => (
                value.map(|value| Extras {
                    value: Some(value),
                    traceback: None,
                }),
                Ok(AgentOutput::from(text)),
            ),
            Outcome::Err { message, traceback } => (
                traceback.map(|traceback| Extras {
                    value: None,
                    traceback: Some(traceback),
                }),
                Err(AgentError::new(message)),
            ),
            Outcome::Cancelled => (None, Err(AgentError::new("cancelled"))),
        };
        let mut map = lock(&self.extras);
        let old = match extras {
            Some(extras) => map.insert(seq, extras),
            None if map.is_empty() => None,
            None => map.remove(&seq),
        };
        drop(map);
        // Dropping a Python object needs the GIL; pyo3 defers it otherwise.
        drop(old);
        result
    }

    /// The extras of the task at `seq`, for a result object.
    pub fn extras(&self, py: Python<'_>, seq: u64) -> Extras {
        lock(&self.extras)
            .get(&seq)
            .map_or_else(Extras::default, |e| Extras {
                value: e.value.as_ref().map(|v| v.clone_ref(py)),
                traceback: e.traceback.clone(),
            })
    }

    pub fn is_python_agent(&self, agent: &str) -> bool {
        self.python_agents.iter().any(|a| a == agent)
    }
}

/// A finished run: its results, and its JSON report (the CLI's `--report`)
/// from which every other report is rendered.
pub struct Finished {
    pub results: ExecutionResults,
    pub report: Result<LiveReport, String>,
}

/// The JSON report written while the run went on, in a folder of its own
/// that goes away with the results. Written live, by the report crate's
/// reporter, it keeps memory flat: the run's events are not kept.
pub struct LiveReport {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl LiveReport {
    pub fn create() -> Result<(Self, JsonReporter), String> {
        let dir = tempfile::Builder::new()
            .prefix("agent33-run-")
            .tempdir()
            .map_err(|e| format!("cannot create a folder for the run's report: {e}"))?;
        let path = dir.path().join("report.json");
        let reporter = JsonReporter::create(&path).map_err(|e| report_message(&e))?;
        Ok((Self { _dir: dir, path }, reporter))
    }
}

/// A report error with its cause.
pub fn report_message(e: &ReportError) -> String {
    format!("{e}: {}", e.io_error())
}
