//! `AgentTask` and the context an agent may ask for, as Python sees them.

use std::time::Duration;

use agent33_parallel as engine;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyString, PyTuple};

/// One agent on one artifact: `AgentTask(agent, artifact, *, id=None,
/// depends_on=(), timeout_seconds=None, retries=None)`.
#[pyclass(frozen, module = "agent33_parallel._native", name = "AgentTask")]
pub struct PyAgentTask {
    pub task: engine::AgentTask,
}

/// A number of seconds from Python, of any sign (a bool is not a number
/// here); the executor's builder checks the range.
pub fn number(name: &str, value: &Bound<'_, PyAny>) -> PyResult<f64> {
    if value.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be a number of seconds, got a bool"
        )));
    }
    value.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "{name} must be a number of seconds, got {}",
            type_name(value)
        ))
    })
}

/// Seconds from Python: a number ≥ 0.
pub fn seconds(name: &str, value: &Bound<'_, PyAny>) -> PyResult<Duration> {
    let secs = number(name, value)?;
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(PyValueError::new_err(format!(
            "{name} must be a number of seconds ≥ 0, got {secs}"
        )));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| {
        PyValueError::new_err(format!(
            "{name} must be a number of seconds ≥ 0, got {secs}"
        ))
    })
}

/// A whole number ≥ `min` from Python (a bool is not a number here).
pub fn whole(name: &str, value: &Bound<'_, PyAny>, min: i64) -> PyResult<u64> {
    if value.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be an integer, got a bool"
        )));
    }
    let n: i64 = value.extract().map_err(|_| {
        if value.extract::<f64>().is_ok() || value.extract::<i128>().is_ok() {
            PyValueError::new_err(format!(
                "{name} must be a whole number ≥ {min}, got {}",
                repr(value)
            ))
        } else {
            PyTypeError::new_err(format!(
                "{name} must be an integer, got {}",
                type_name(value)
            ))
        }
    })?;
    u64::try_from(n)
        .ok()
        .filter(|&n| n >= min.unsigned_abs())
        .ok_or_else(|| PyValueError::new_err(format!("{name} must be at least {min}, got {n}")))
}

/// A bool from Python, strictly.
pub fn boolean(name: &str, value: &Bound<'_, PyAny>) -> PyResult<bool> {
    if value.is_instance_of::<PyBool>() {
        value.extract()
    } else {
        Err(PyTypeError::new_err(format!(
            "{name} must be True or False, got {}",
            type_name(value)
        )))
    }
}

/// A string from Python, strictly.
pub fn string(name: &str, value: &Bound<'_, PyAny>) -> PyResult<String> {
    if value.is_instance_of::<PyString>() {
        value.extract()
    } else {
        Err(PyTypeError::new_err(format!(
            "{name} must be a str, got {}",
            type_name(value)
        )))
    }
}

pub fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string())
}

fn repr(value: &Bound<'_, PyAny>) -> String {
    value
        .repr()
        .map_or_else(|_| "?".to_owned(), |r| r.to_string())
}

#[pymethods]
impl PyAgentTask {
    #[new]
    #[pyo3(signature = (agent, artifact, *, id=None, depends_on=None, timeout_seconds=None, retries=None))]
    fn new(
        agent: &Bound<'_, PyAny>,
        artifact: &Bound<'_, PyAny>,
        id: Option<&Bound<'_, PyAny>>,
        depends_on: Option<&Bound<'_, PyAny>>,
        timeout_seconds: Option<&Bound<'_, PyAny>>,
        retries: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let mut task =
            engine::AgentTask::new(string("agent", agent)?, string("artifact", artifact)?);
        if let Some(id) = id.filter(|v| !v.is_none()) {
            task = task.with_id(string("id", id)?);
        }
        if let Some(deps) = depends_on.filter(|v| !v.is_none()) {
            if deps.is_instance_of::<PyString>() {
                return Err(PyTypeError::new_err(
                    "depends_on must be a sequence of task ids, got a str",
                ));
            }
            let ids = deps
                .try_iter()
                .map_err(|_| {
                    PyTypeError::new_err(format!(
                        "depends_on must be a sequence of task ids, got {}",
                        type_name(deps)
                    ))
                })?
                .map(|d| string("depends_on", &d?))
                .collect::<PyResult<Vec<_>>>()?;
            task = task.depends_on(ids);
        }
        if let Some(t) = timeout_seconds.filter(|v| !v.is_none()) {
            task = task.timeout(seconds("timeout_seconds", t)?);
        }
        if let Some(r) = retries.filter(|v| !v.is_none()) {
            let r = whole("retries", r, 0)?;
            task = task.retries(
                u32::try_from(r)
                    .map_err(|_| PyValueError::new_err(format!("retries is too large: {r}")))?,
            );
        }
        Ok(Self { task })
    }

    /// The agent's name.
    #[getter]
    fn agent(&self) -> &str {
        self.task.agent.as_str()
    }

    /// What the agent works on.
    #[getter]
    fn artifact(&self) -> &str {
        &self.task.artifact
    }

    /// The task's id (`agent:artifact` unless given).
    #[getter]
    fn id(&self) -> &str {
        self.task.id.as_str()
    }

    /// Ids of the tasks this one waits for.
    #[getter]
    fn depends_on<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.task.depends_on.iter().map(engine::TaskId::as_str))
    }

    /// This task's own timeout, if it has one.
    #[getter]
    fn timeout_seconds(&self) -> Option<f64> {
        self.task.timeout.map(|d| d.as_secs_f64())
    }

    /// This task's own number of retries, if it has one.
    #[getter]
    fn retries(&self) -> Option<u32> {
        self.task.retries
    }

    fn __repr__(&self) -> String {
        format!(
            "AgentTask({:?}, artifact={:?}, id={:?})",
            self.task.agent.as_str(),
            self.task.artifact,
            self.task.id.as_str()
        )
    }
}

/// What an agent with a second parameter gets besides its task.
#[pyclass(frozen, module = "agent33_parallel._native", name = "TaskContext")]
pub struct PyTaskContext {
    /// Attempt number, from 1.
    #[pyo3(get)]
    pub attempt: u32,
    /// The task's id.
    #[pyo3(get)]
    pub task_id: String,
    /// The run's id, the same for every task of one run.
    #[pyo3(get)]
    pub run_id: String,
}

#[pymethods]
impl PyTaskContext {
    fn __repr__(&self) -> String {
        format!(
            "TaskContext(attempt={}, task_id={:?}, run_id={:?})",
            self.attempt, self.task_id, self.run_id
        )
    }
}
