//! Python callables and commands as engine agents.
//!
//! - A coroutine function runs on the caller's asyncio loop: the engine
//!   asks the loop (through the [`Bridge`](crate::bridge::Bridge)) to
//!   create its task, and at a stop asks it to cancel that task, so
//!   `CancelledError` is raised at the coroutine's next `await`. Then it
//!   waits for the coroutine like for any agent: up to the grace period,
//!   after which the engine drops the wait and whatever the coroutine does
//!   later is discarded.
//! - A plain function runs in a blocking thread of the runtime. Nothing can
//!   interrupt it, so at a stop its attempt ends at once and the thread's
//!   eventual return is discarded.
//! - `CommandAgent` is agent33-process's command agent with the CLI's
//!   command templates (agent33-process's `template`): the same
//!   placeholders, shell rules and refusals, with the same messages.

use std::sync::{Arc, Mutex, PoisonError};

use agent33_parallel::{Agent, AgentResult, BoxFuture, TaskContext};
use agent33_process::ProcessOptions;
use agent33_process::template::{CommandTemplate, TaskCommand};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};
use tokio::sync::oneshot;

use crate::shared::{Outcome, RunShared};
use crate::task::{PyTaskContext, string, type_name};

/// The asyncio task running one attempt and the agent's coroutine inside
/// it, once the loop has created them; emptied when the attempt ends.
type TaskSlot = Arc<Mutex<Option<Running>>>;

struct Running {
    task: Py<PyAny>,
    coro: Py<PyAny>,
}

/// An `async def` agent.
pub struct CoroutineAgent {
    pub func: Arc<Py<PyAny>>,
    pub wants_ctx: bool,
    pub run: Arc<RunShared>,
}

/// A plain `def` agent.
pub struct SyncAgent {
    pub func: Arc<Py<PyAny>>,
    pub wants_ctx: bool,
    pub run: Arc<RunShared>,
}

/// The agent's arguments: the task the caller gave, and the context if the
/// agent declares a second parameter.
fn call_agent<'py>(
    py: Python<'py>,
    run: &RunShared,
    func: &Py<PyAny>,
    wants_ctx: bool,
    seq: u64,
    attempt: u32,
) -> PyResult<Bound<'py, PyAny>> {
    let task = run.task_object(py, seq);
    if wants_ctx {
        let ctx = PyTaskContext {
            attempt,
            task_id: task.get().task.id.as_str().to_owned(),
            run_id: run.run_id.clone(),
        };
        func.bind(py).call1((task, ctx))
    } else {
        func.bind(py).call1((task,))
    }
}

impl Agent for CoroutineAgent {
    fn run(&self, ctx: TaskContext) -> BoxFuture<'static, AgentResult> {
        let (tx, mut rx) = oneshot::channel();
        let slot: TaskSlot = Arc::default();
        let seq = ctx.seq();
        let attempt = ctx.attempt();
        let token = ctx.token().clone();
        let run = Arc::clone(&self.run);
        let start = {
            let run = Arc::clone(&self.run);
            let func = Arc::clone(&self.func);
            let wants_ctx = self.wants_ctx;
            let slot = Arc::clone(&slot);
            move |py: Python<'_>| {
                let done = Done {
                    tx: Mutex::new(Some(tx)),
                    slot: Arc::clone(&slot),
                };
                let coro = match call_agent(py, &run, &func, wants_ctx, seq, attempt) {
                    Ok(coro) => coro,
                    // It raised before returning a coroutine.
                    Err(e) => return done.send(Outcome::from_error(py, &e)),
                };
                let done = match Py::new(py, done) {
                    Ok(done) => done,
                    Err(e) => return e.print(py),
                };
                let task = run
                    .driver
                    .bind(py)
                    .call1((&coro, done.clone_ref(py)))
                    .and_then(|driven| run.create_task.bind(py).call1((driven,)));
                match task {
                    Ok(task) => {
                        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(Running {
                            task: task.unbind(),
                            coro: coro.unbind(),
                        });
                    }
                    Err(e) => done.get().send(Outcome::from_error(py, &e)),
                }
            }
        };
        self.run.bridge.submit(Box::new(start));
        Box::pin(async move {
            let mut cancel = CancelOnDrop {
                slot: Some(slot),
                run: Arc::clone(&run),
            };
            let outcome = tokio::select! {
                biased;
                outcome = &mut rx => outcome,
                () = token.cancelled() => {
                    cancel.cancel();
                    rx.await
                }
            };
            cancel.slot = None;
            // A dropped sender: the loop never ran the start (it closed).
            run.settle(seq, outcome.unwrap_or(Outcome::Cancelled))
        })
    }
}

/// Stops an attempt's coroutine. When the engine stops the attempt, its
/// task is cancelled: `CancelledError` at the next await. When the engine
/// drops the attempt while it still runs (after the grace, or at a kill),
/// the coroutine is abandoned: closed (`GeneratorExit` at its await, so
/// `finally` blocks run and a coroutine that swallows cancellations cannot
/// keep the loop, and `asyncio.run`'s shutdown, waiting forever) and its
/// task cancelled, which ends the driver around it.
struct CancelOnDrop {
    slot: Option<TaskSlot>,
    run: Arc<RunShared>,
}

impl CancelOnDrop {
    fn stop(&self, abandon: bool) {
        let Some(slot) = self.slot.clone() else {
            return;
        };
        self.run.bridge.submit(Box::new(move |py: Python<'_>| {
            let running = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            let Some(running) = running else {
                return;
            };
            if abandon {
                // A coroutine that awaits in its `finally` while closed
                // raises RuntimeError here; it is abandoned all the same.
                let _ = running.coro.bind(py).call_method0("close");
                let _ = running.task.bind(py).call_method0("cancel");
            } else {
                let _ = running.task.bind(py).call_method0("cancel");
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(running);
            }
        }));
    }

    fn cancel(&self) {
        self.stop(false);
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.stop(true);
    }
}

/// Where an attempt's coroutine reports how it ended: the package's driver
/// coroutine (`_drive`) awaits the agent's coroutine and calls `ok` or
/// `error`, which hand the outcome to the engine's side of the attempt.
#[pyclass(frozen, module = "agent33_parallel._native")]
pub struct Done {
    tx: Mutex<Option<oneshot::Sender<Outcome>>>,
    slot: TaskSlot,
}

impl Done {
    fn send(&self, outcome: Outcome) {
        drop(
            self.slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        if let Some(tx) = self
            .tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            // The engine may have given up on the attempt (after the
            // grace): its outcome is discarded then.
            let _ = tx.send(outcome);
        }
    }
}

#[pymethods]
impl Done {
    /// The coroutine returned `value`.
    fn ok(&self, py: Python<'_>, value: &Bound<'_, PyAny>) {
        self.send(Outcome::from_value(py, value));
    }

    /// The coroutine raised `exc` (`CancelledError` included).
    fn error(&self, py: Python<'_>, exc: &Bound<'_, PyAny>) {
        self.send(Outcome::from_error(py, &PyErr::from_value(exc.clone())));
    }
}

impl Outcome {
    /// A returned value: the JSON report gets `str()` of it (`""` for None).
    pub fn from_value(py: Python<'_>, value: &Bound<'_, PyAny>) -> Self {
        if value.is_none() {
            return Self::Ok {
                text: String::new(),
                value: None,
            };
        }
        let text = if let Ok(s) = value.cast::<PyString>() {
            s.to_string_lossy().into_owned()
        } else {
            value.str().map_or_else(
                |e| format!("<str() failed: {e}>"),
                |s| s.to_string_lossy().into_owned(),
            )
        };
        let _ = py;
        Self::Ok {
            text,
            value: Some(value.clone().unbind()),
        }
    }

    /// A raised exception: `Type: message` and its formatted traceback;
    /// `CancelledError` is a cancelled attempt.
    pub fn from_error(py: Python<'_>, err: &PyErr) -> Self {
        let cancelled = py
            .import("asyncio")
            .and_then(|m| m.getattr("CancelledError"))
            .is_ok_and(|c| err.is_instance(py, &c));
        if cancelled {
            return Self::Cancelled;
        }
        let value = err.value(py);
        let name = type_name(value.get_type().as_any());
        let name = value.get_type().name().map_or(name, |n| n.to_string());
        let text = value
            .str()
            .map_or_else(|_| String::new(), |s| s.to_string());
        let message = if text.is_empty() {
            name
        } else {
            format!("{name}: {text}")
        };
        let traceback = py
            .import("traceback")
            .and_then(|tb| {
                tb.call_method1(
                    "format_exception",
                    (value.get_type(), value, err.traceback(py)),
                )
            })
            .and_then(|lines| PyString::new(py, "").call_method1("join", (lines,)))
            .and_then(|s| s.extract::<String>())
            .ok();
        Self::Err { message, traceback }
    }
}

impl Agent for SyncAgent {
    fn run(&self, ctx: TaskContext) -> BoxFuture<'static, AgentResult> {
        let seq = ctx.seq();
        let attempt = ctx.attempt();
        let token = ctx.token().clone();
        let run = Arc::clone(&self.run);
        let thread = {
            let run = Arc::clone(&self.run);
            let func = Arc::clone(&self.func);
            let wants_ctx = self.wants_ctx;
            tokio::task::spawn_blocking(move || {
                Python::attach(
                    |py| match call_agent(py, &run, &func, wants_ctx, seq, attempt) {
                        Ok(value) => Outcome::from_value(py, &value),
                        Err(e) => Outcome::from_error(py, &e),
                    },
                )
            })
        };
        Box::pin(async move {
            let outcome = tokio::select! {
                biased;
                outcome = thread => outcome.unwrap_or(Outcome::Cancelled),
                // The thread cannot be interrupted: the attempt ends now and
                // its eventual return is dropped with the join handle.
                () = token.cancelled() => Outcome::Cancelled,
            };
            run.settle(seq, outcome)
        })
    }
}

/// `CommandAgent(["markdownlint", "{artifact}"])` or
/// `CommandAgent("grep -c TODO \"$1\"", shell=True)`: one process per
/// attempt, in its own process group, killed with its group at a stop.
#[pyclass(frozen, module = "agent33_parallel._native", name = "CommandAgent")]
pub struct PyCommandAgent {
    pub agent: agent33_process::CommandAgent,
    template: CommandTemplate,
}

#[pymethods]
impl PyCommandAgent {
    #[new]
    #[pyo3(signature = (command, *, shell=None))]
    fn new(command: &Bound<'_, PyAny>, shell: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let shell = match shell {
            Some(v) => crate::task::boolean("shell", v)?,
            None => false,
        };
        let template = if shell {
            let script = string("command", command).map_err(|_| {
                PyTypeError::new_err(format!(
                    "command must be a str (the script) with shell=True, got {}",
                    type_name(command)
                ))
            })?;
            CommandTemplate::shell(script)
        } else if command.is_instance_of::<PyString>() {
            CommandTemplate::split(&command.extract::<String>()?)
        } else if command.is_instance_of::<PyList>() || command.is_instance_of::<PyTuple>() {
            let words = command
                .try_iter()?
                .map(|w| string("command", &w?))
                .collect::<PyResult<_>>()?;
            CommandTemplate::list(words)
        } else {
            return Err(PyTypeError::new_err(format!(
                "command must be a list of str (argv) or a str, got {}",
                type_name(command)
            )));
        }
        // The CLI's messages, word for word.
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
        // Processes that leave the task's group (`setsid`, a double fork)
        // are reparented to us and killed at the end of their task. As a
        // guest: Python code in this process waits for its own children by
        // pid, and the sweeps never reap a zombie they cannot attribute to a
        // task. Without it (off Linux) the process group is the containment.
        static SUBREAPER: std::sync::Once = std::sync::Once::new();
        SUBREAPER.call_once(|| {
            let _ = agent33_process::become_guest_subreaper();
        });
        let _runtime = crate::runtime::runtime().enter();
        Ok(Self {
            agent: agent33_process::CommandAgent::new(
                // As in the CLI: an argv without any placeholder gets the
                // artifact as its last argument.
                TaskCommand::new(template.clone()).append_artifact_without_placeholder(),
                ProcessOptions::default(),
            ),
            template,
        })
    }

    fn __repr__(&self) -> String {
        match &self.template {
            CommandTemplate::Argv(words) => format!("CommandAgent({words:?})"),
            CommandTemplate::Shell(script) => format!("CommandAgent({script:?}, shell=True)"),
        }
    }
}
