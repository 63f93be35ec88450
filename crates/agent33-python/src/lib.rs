//! The native half of the Python package `agent33_parallel`: the engine's
//! executor, tasks, results, events, command agents and LLM agents as Python classes,
//! and the bridge that runs Python agents on the caller's asyncio loop.
//!
//! A front, not a second engine: settings are validated by the engine's
//! builder, plans by its `plan` module, reports written by agent33-report.
//! The Python half (`python/agent33_parallel/__init__.py`) adds what only
//! Python can: the `@agent` registry, telling coroutine functions from plain
//! ones, and awaiting a run (with Ctrl-C) on the running loop.

mod agents;
mod bridge;
mod feed;
mod llm;
mod results;
mod run;
mod runtime;
mod shared;
mod task;

use pyo3::prelude::*;

/// The module `agent33_parallel._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<task::PyAgentTask>()?;
    m.add_class::<task::PyTaskContext>()?;
    m.add_class::<agents::PyCommandAgent>()?;
    m.add_class::<llm::PyProvider>()?;
    m.add_class::<llm::PyLlmAgent>()?;
    m.add_class::<run::PyExecutor>()?;
    m.add_class::<run::PyRun>()?;
    m.add_class::<results::PyTaskResult>()?;
    m.add_class::<results::PyExecutionResults>()?;
    m.add_class::<results::PyEvent>()?;
    Ok(())
}
