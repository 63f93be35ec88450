//! One run: the executor's settings from keywords, the run's shared state,
//! the task that drives the engine's event stream on the runtime, and the
//! handle Python awaits and reads events from.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use agent33_parallel::{
    AgentSpec, AgentTask, Agents, Event, Interrupt, ParallelExecutor, ResultsCollector, RunControl,
    plan,
};
use agent33_report::Reporter as _;
use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokio::sync::Notify;

use crate::agents::{CoroutineAgent, PyCommandAgent, SyncAgent};
use crate::bridge::{Bridge, Drainer, resolve};
use crate::feed::{Feed, FeedStream};
use crate::llm::{LlmMetrics, PyLlmAgent};
use crate::results::{PyEvent, PyExecutionResults};
use crate::shared::{Finished, LiveReport, RunShared, lock, report_message};
use crate::task::{PyAgentTask, boolean, number, type_name, whole};

/// Events the loop may leave unread before the run waits for it.
const EVENT_BUFFER: usize = 1024;

#[derive(Default)]
struct Progress {
    events: VecDeque<Event>,
    waiter: Option<Py<PyAny>>,
    finished: Option<Arc<Finished>>,
    /// The final `run_finished` event was handed out.
    ended: bool,
    /// Nobody reads the events any more: do not wait for room.
    abandoned: bool,
}

/// The run's progress as the loop sees it.
#[derive(Default)]
struct RunState {
    progress: Mutex<Progress>,
    room: Notify,
}

impl RunState {
    fn wake(&self, p: &mut Progress, bridge: &Bridge) {
        if let Some(waiter) = p.waiter.take() {
            bridge.submit(Box::new(move |py| resolve(py, &waiter)));
        }
    }

    /// Hands events to the loop, waiting while it has `EVENT_BUFFER` unread:
    /// a slow reader slows the run (the engine stops admitting tasks while
    /// its own events are unread).
    async fn push(&self, events: impl Iterator<Item = Event>, bridge: &Bridge) {
        let mut events = events.peekable();
        while events.peek().is_some() {
            let room = self.room.notified();
            {
                let mut p = lock(&self.progress);
                if p.abandoned {
                    return;
                }
                let free = EVENT_BUFFER.saturating_sub(p.events.len());
                if free > 0 {
                    p.events.extend(events.by_ref().take(free));
                    self.wake(&mut p, bridge);
                    continue;
                }
            }
            room.await;
        }
    }

    fn finish(&self, finished: Finished, bridge: &Bridge) {
        let mut p = lock(&self.progress);
        p.finished = Some(Arc::new(finished));
        self.wake(&mut p, bridge);
    }
}

/// Whether Python's event iterator shows an event.
fn shown(event: &Event) -> bool {
    matches!(
        event,
        Event::TaskQueued { .. }
            | Event::TaskStarted { .. }
            | Event::TaskRetryScheduled { .. }
            | Event::TaskFinished { .. }
    )
}

/// Where a run's tasks come from.
enum Input {
    /// A list, checked whole: the engine's known set.
    Known(Vec<AgentTask>),
    /// Any other iterable, pushed by the package's feeder as the engine
    /// reads: the engine's streamed input.
    Streamed(Arc<Feed>),
}

/// What [`drive`] needs besides the engine's own arguments.
struct Drive {
    state: Arc<RunState>,
    bridge: Arc<Bridge>,
    /// Whether Python reads the events (`executor.run`).
    events: bool,
    llm: LlmMetrics,
}

async fn drive(
    executor: ParallelExecutor,
    input: Input,
    agents: Agents,
    control: RunControl,
    run: Drive,
) {
    let Drive {
        state,
        bridge,
        events,
        mut llm,
    } = run;
    let (mut stream, feed) = match input {
        Input::Known(tasks) => (executor.run(tasks, &agents, control), None),
        Input::Streamed(feed) => (
            executor.run_stream(FeedStream(Arc::clone(&feed)), &agents, control),
            Some(feed),
        ),
    };
    drop(agents);
    let mut collector = ResultsCollector::new();
    // The JSON report is written on a blocking thread of its own, off the
    // path from one task's end to the next one's start; a bounded channel
    // keeps it at most a few batches behind.
    let (report_tx, mut report_rx) = tokio::sync::mpsc::channel::<Vec<Event>>(16);
    let writer = tokio::task::spawn_blocking(move || {
        let (live, mut json) = LiveReport::create()?;
        let mut failed = None;
        while let Some(batch) = report_rx.blocking_recv() {
            if failed.is_none() {
                if let Err(e) = batch.iter().try_for_each(|event| json.on_event(event)) {
                    failed = Some(report_message(&e));
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        json.finish().map_err(|e| report_message(&e))?;
        Ok(live)
    });
    let mut report_tx = Some(report_tx);
    while let Some(mut batch) = stream.next_batch().await {
        for event in &mut batch {
            llm.observe(event);
            if let (Event::RunStopTriggered { .. }, Some(feed)) = (&*event, &feed) {
                // The engine reads no further: neither does the feeder.
                feed.close();
            }
        }
        if events {
            let shown: Vec<Event> = batch.iter().filter(|e| shown(e)).cloned().collect();
            state.push(shown.into_iter(), &bridge).await;
        }
        for event in &batch {
            collector.observe(event);
        }
        if let Some(tx) = &report_tx {
            if tx.send(batch).await.is_err() {
                // The writer stopped (it could not create the report).
                report_tx = None;
            }
        }
    }
    drop(report_tx);
    if let Some(feed) = &feed {
        feed.close();
    }
    let results = collector.finish();
    let report = writer
        .await
        .unwrap_or_else(|e| Err(format!("the report writer failed: {e}")));
    state.finish(Finished { results, report }, &bridge);
}

/// The engine's executor with validated settings: what
/// `ParallelExecutor(**settings)` builds.
#[pyclass(frozen, module = "agent33_parallel._native", name = "Executor")]
pub struct PyExecutor {
    executor: ParallelExecutor,
    agent_limits: Vec<(String, usize)>,
}

fn given<'a, 'py>(v: Option<&'a Bound<'py, PyAny>>) -> Option<&'a Bound<'py, PyAny>> {
    v.filter(|v| !v.is_none())
}

fn to_u32(name: &str, n: u64) -> PyResult<u32> {
    u32::try_from(n).map_err(|_| PyValueError::new_err(format!("{name} is too large: {n}")))
}

fn to_usize(name: &str, n: u64) -> PyResult<usize> {
    usize::try_from(n).map_err(|_| PyValueError::new_err(format!("{name} is too large: {n}")))
}

/// A counter that makes each run's id unique within the process.
static RUNS: AtomicU64 = AtomicU64::new(0);

#[pymethods]
impl PyExecutor {
    #[new]
    #[pyo3(signature = (
        *, parallel=None, parallel_limit=None, respect_dependencies=None, timeout_seconds=None,
        continue_on_error=None, max_failures=None, fail_fast=None, retries=None,
        retry_backoff_seconds=None, kill_grace_seconds=None, deadline_seconds=None,
        output_limit_bytes=None, agent_limits=None
    ))]
    #[expect(
        clippy::too_many_arguments,
        reason = "one keyword per setting, as the contract names them"
    )]
    fn new(
        parallel: Option<&Bound<'_, PyAny>>,
        parallel_limit: Option<&Bound<'_, PyAny>>,
        respect_dependencies: Option<&Bound<'_, PyAny>>,
        timeout_seconds: Option<&Bound<'_, PyAny>>,
        continue_on_error: Option<&Bound<'_, PyAny>>,
        max_failures: Option<&Bound<'_, PyAny>>,
        fail_fast: Option<&Bound<'_, PyAny>>,
        retries: Option<&Bound<'_, PyAny>>,
        retry_backoff_seconds: Option<&Bound<'_, PyAny>>,
        kill_grace_seconds: Option<&Bound<'_, PyAny>>,
        deadline_seconds: Option<&Bound<'_, PyAny>>,
        output_limit_bytes: Option<&Bound<'_, PyAny>>,
        agent_limits: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let mut b = ParallelExecutor::builder();
        // A limit implies parallel, and so does respect_dependencies, unless
        // `parallel` itself is given: then it decides (PRODUCT.md).
        if let Some(v) = given(parallel_limit) {
            b = b.parallel_limit(to_usize("parallel_limit", whole("parallel_limit", v, 1)?)?);
        }
        if let Some(v) = given(respect_dependencies) {
            b = b.respect_dependencies(boolean("respect_dependencies", v)?);
        }
        if let Some(v) = given(parallel) {
            b = b.parallel(boolean("parallel", v)?);
        }
        // Seconds are checked for type here, for range by the builder (its
        // message names the setting), and 0 means none where it does.
        if let Some(v) = given(timeout_seconds) {
            b = b.timeout_seconds(number("timeout_seconds", v)?);
        }
        let continue_on_error = given(continue_on_error)
            .map(|v| boolean("continue_on_error", v))
            .transpose()?;
        // Both given is refused by the builder (a ValueError below).
        if let Some(v) = given(max_failures) {
            b = b.max_failures(to_u32("max_failures", whole("max_failures", v, 1)?)?);
        }
        if let Some(yes) = continue_on_error {
            b = b.continue_on_error(yes);
        }
        if let Some(v) = given(fail_fast) {
            b = b.fail_fast(boolean("fail_fast", v)?);
        }
        if let Some(v) = given(retries) {
            b = b.retries(to_u32("retries", whole("retries", v, 0)?)?);
        }
        if let Some(v) = given(retry_backoff_seconds) {
            b = b.retry_backoff_seconds(number("retry_backoff_seconds", v)?);
        }
        if let Some(v) = given(kill_grace_seconds) {
            b = b.kill_grace_seconds(number("kill_grace_seconds", v)?);
        }
        if let Some(v) = given(deadline_seconds) {
            b = b.deadline_seconds(number("deadline_seconds", v)?);
        }
        if let Some(v) = given(output_limit_bytes) {
            b = b.output_limit_bytes(to_usize(
                "output_limit_bytes",
                whole("output_limit_bytes", v, 0)?,
            )?);
        }
        let mut limits = Vec::new();
        if let Some(v) = given(agent_limits) {
            let dict = v.cast::<PyDict>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "agent_limits must be a dict of agent name to limit, got {}",
                    type_name(v)
                ))
            })?;
            for (name, limit) in dict.iter() {
                let name = crate::task::string("agent_limits", &name)?;
                let what = format!("agent_limits[{name:?}]");
                limits.push((name, to_usize(&what, whole(&what, &limit, 1)?)?));
            }
        }
        let executor = b
            .build()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(Self {
            executor,
            agent_limits: limits,
        })
    }

    /// The effective settings, by the contract's names.
    fn settings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.executor.settings();
        let d = PyDict::new(py);
        d.set_item("parallel", s.parallel)?;
        d.set_item("parallel_limit", s.parallel_limit)?;
        d.set_item("respect_dependencies", s.respect_dependencies)?;
        d.set_item("timeout_seconds", s.timeout.map(|t| t.as_secs_f64()))?;
        d.set_item("continue_on_error", s.continue_on_error)?;
        d.set_item("max_failures", s.max_failures)?;
        d.set_item("fail_fast", s.fail_fast)?;
        d.set_item("retries", s.retries)?;
        d.set_item("retry_backoff_seconds", s.retry_backoff.as_secs_f64())?;
        d.set_item("kill_grace_seconds", s.kill_grace.as_secs_f64())?;
        d.set_item("deadline_seconds", s.deadline.map(|t| t.as_secs_f64()))?;
        d.set_item("output_limit_bytes", s.output_limit_bytes)?;
        let limits = PyDict::new(py);
        for (name, limit) in &self.agent_limits {
            limits.set_item(name, limit)?;
        }
        d.set_item("agent_limits", limits)?;
        Ok(d)
    }

    /// Checks the tasks as the CLI does (duplicate ids, unknown
    /// dependencies, cycles) and converts them.
    #[staticmethod]
    fn check(tasks: &Bound<'_, PyAny>) -> PyResult<Vec<Py<PyAgentTask>>> {
        let objects = tasks
            .try_iter()
            .map_err(|_| {
                PyTypeError::new_err(format!(
                    "tasks must be an iterable of AgentTask, got {}",
                    type_name(tasks)
                ))
            })?
            .map(|t| {
                let t = t?;
                t.cast::<PyAgentTask>()
                    .map(|t| t.clone().unbind())
                    .map_err(|_| {
                        PyTypeError::new_err(format!(
                            "tasks must be AgentTask objects, got {}",
                            type_name(&t)
                        ))
                    })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let plain: Vec<AgentTask> = objects.iter().map(|t| t.get().task.clone()).collect();
        plan::validate(&plain).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(objects)
    }

    /// Starts a run on `event_loop` (the caller's running loop) over
    /// `tasks` (checked by [`Self::check`]) or, given None, over the tasks
    /// the caller will [`PyRun::push`]. `agents` lists `(name, kind,
    /// callable, wants_ctx)` with kind `"async"`, `"sync"`, `"command"` or
    /// `"llm"`; a task whose agent is missing fails as the engine says.
    fn start(
        &self,
        py: Python<'_>,
        tasks: Option<Vec<Py<PyAgentTask>>>,
        agents: Vec<(String, String, Py<PyAny>, bool)>,
        event_loop: &Bound<'_, PyAny>,
        driver: Py<PyAny>,
        events: bool,
    ) -> PyResult<PyRun> {
        let bridge = Arc::new(Bridge::new().map_err(|e| PyOSError::new_err(e.to_string()))?);
        let (input, tasks) = match tasks {
            Some(tasks) => (
                Input::Known(tasks.iter().map(|t| t.get().task.clone()).collect()),
                tasks,
            ),
            None => (
                Input::Streamed(Arc::new(Feed::new(
                    self.executor.settings().parallel_limit,
                    Arc::clone(&bridge),
                ))),
                Vec::new(),
            ),
        };
        let python_agents = agents
            .iter()
            .filter(|(_, kind, _, _)| kind == "async" || kind == "sync")
            .map(|(name, _, _, _)| name.clone())
            .collect();
        let shared = Arc::new(RunShared {
            bridge: Arc::clone(&bridge),
            tasks: Mutex::new(tasks),
            create_task: event_loop.getattr("create_task")?.unbind(),
            driver,
            run_id: format!(
                "{}-{}",
                agent33_process::run_id(),
                RUNS.fetch_add(1, Ordering::Relaxed)
            ),
            python_agents,
            extras: Mutex::default(),
        });
        let mut registry = Agents::new();
        let mut llm = LlmMetrics::default();
        for (name, kind, func, wants_ctx) in agents {
            let spec = match kind.as_str() {
                "async" => AgentSpec::new(CoroutineAgent {
                    func: Arc::new(func),
                    wants_ctx,
                    run: Arc::clone(&shared),
                }),
                "sync" => AgentSpec::new(SyncAgent {
                    func: Arc::new(func),
                    wants_ctx,
                    run: Arc::clone(&shared),
                }),
                "llm" => {
                    let agent = func.bind(py).cast::<PyLlmAgent>().map_err(|_| {
                        PyTypeError::new_err(format!("agent `{name}` is not an LlmAgent"))
                    })?;
                    let (spec, limiter, priced) =
                        agent.get().bind(self.executor.settings().parallel_limit);
                    llm.add(name.clone(), limiter, priced);
                    spec
                }
                _ => {
                    let command = func.bind(py).cast::<PyCommandAgent>().map_err(|_| {
                        PyTypeError::new_err(format!("agent `{name}` is not a CommandAgent"))
                    })?;
                    AgentSpec::new(command.get().agent.clone())
                }
            };
            let spec = match self.agent_limits.iter().find(|(n, _)| *n == name) {
                Some((_, limit)) => spec.parallel_limit(*limit),
                None => spec,
            };
            registry.insert(name, spec);
        }
        let drainer = Drainer {
            bridge: Arc::clone(&bridge),
        };
        event_loop.call_method1("add_reader", (bridge.fd(), drainer))?;
        let control = RunControl::new();
        let state = Arc::new(RunState::default());
        let feed = match &input {
            Input::Streamed(feed) => Some(Arc::clone(feed)),
            Input::Known(_) => None,
        };
        crate::runtime::runtime().spawn(drive(
            self.executor.clone(),
            input,
            registry,
            control.clone(),
            Drive {
                state: Arc::clone(&state),
                bridge: Arc::clone(&bridge),
                events,
                llm,
            },
        ));
        Ok(PyRun {
            control,
            state,
            shared,
            feed,
        })
    }
}

/// A run in progress, as the Python glue drives it.
#[pyclass(frozen, module = "agent33_parallel._native", name = "Run")]
pub struct PyRun {
    control: RunControl,
    state: Arc<RunState>,
    shared: Arc<RunShared>,
    /// The streamed input, when the tasks are pushed.
    feed: Option<Arc<Feed>>,
}

impl PyRun {
    fn feed(&self) -> PyResult<&Feed> {
        self.feed
            .as_deref()
            .ok_or_else(|| PyValueError::new_err("this run's tasks were given as a list"))
    }
}

fn cause(sigint: bool) -> Interrupt {
    if sigint {
        Interrupt::signal("interrupted", "SIGINT")
    } else {
        Interrupt::new("cancelled")
    }
}

#[pymethods]
impl PyRun {
    /// Stops the run as SIGINT does in the CLI (`sigint`), or as a
    /// cancellation of the awaiting task: running agents are cancelled.
    fn interrupt(&self, sigint: bool) {
        self.control.interrupt_by(cause(sigint));
    }

    /// Stops the run as a second SIGINT does: running agents are dropped
    /// at once, command agents' groups killed.
    fn kill(&self, sigint: bool) {
        self.control.kill_by(cause(sigint));
    }

    /// Checks a streamed task against those before it (the CLI's messages)
    /// and queues it for the engine. Returns whether the run wants another
    /// now, or None (nothing queued) when the task names one not pushed
    /// yet: then it and the rest go to `push_all`. A task pushed once the
    /// run reads no more is dropped.
    fn push(&self, task: &Bound<'_, PyAny>) -> PyResult<Option<bool>> {
        self.feed()?
            .push(task, |object| lock(&self.shared.tasks).push(object))
    }

    /// Checks every task pushed so far followed by `rest` as the CLI checks
    /// a list (unknown ids, cycles: its messages) and queues `rest`.
    fn push_all(&self, py: Python<'_>, rest: Vec<Bound<'_, PyAny>>) -> PyResult<()> {
        let pushed: Vec<Py<PyAgentTask>> = lock(&self.shared.tasks)
            .iter()
            .map(|t| t.clone_ref(py))
            .collect();
        self.feed()?.push_all(&pushed, &rest, |object| {
            lock(&self.shared.tasks).push(object);
        })
    }

    /// Whether the run wants another streamed task now.
    fn has_room(&self) -> PyResult<bool> {
        Ok(self.feed()?.has_room())
    }

    /// Whether the run reads no more streamed tasks (it stopped or ended).
    fn input_closed(&self) -> PyResult<bool> {
        Ok(self.feed()?.is_closed())
    }

    /// Resolves `fut` once the run wants another streamed task or reads no
    /// more.
    fn wait_room(&self, py: Python<'_>, fut: Py<PyAny>) -> PyResult<()> {
        self.feed()?.wait_room(py, fut);
        Ok(())
    }

    /// The streamed tasks ended.
    fn end_input(&self) -> PyResult<()> {
        self.feed()?.end();
        Ok(())
    }

    /// Resolves `fut` once there are events to read or the run is over.
    fn wait(&self, py: Python<'_>, fut: Py<PyAny>) {
        let mut p = lock(&self.state.progress);
        if !p.events.is_empty() || p.finished.is_some() {
            drop(p);
            resolve(py, &fut);
        } else {
            p.waiter = Some(fut);
        }
    }

    /// Whether the run is over.
    fn finished(&self) -> bool {
        lock(&self.state.progress).finished.is_some()
    }

    /// The events ready now (possibly none); `None` after `run_finished`.
    fn take_events(&self, py: Python<'_>) -> PyResult<Option<Vec<PyEvent>>> {
        let (events, finished) = {
            let mut p = lock(&self.state.progress);
            let events = std::mem::take(&mut p.events);
            let finished = match p.finished.clone() {
                Some(f) if events.is_empty() => {
                    if std::mem::replace(&mut p.ended, true) {
                        return Ok(None);
                    }
                    Some(f)
                }
                _ => None,
            };
            (events, finished)
        };
        self.state.room.notify_one();
        if let Some(finished) = finished {
            let results = PyExecutionResults::new(finished, Arc::clone(&self.shared));
            return Ok(Some(vec![PyEvent::run_finished(py, results)?]));
        }
        events
            .into_iter()
            .map(|e| PyEvent::from_event(py, &self.shared, e))
            .collect::<PyResult<Vec<_>>>()
            .map(|v| Some(v.into_iter().flatten().collect()))
    }

    /// The run's results; only once it is over.
    fn results(&self) -> PyResult<PyExecutionResults> {
        let finished = lock(&self.state.progress).finished.clone();
        finished
            .map(|f| PyExecutionResults::new(f, Arc::clone(&self.shared)))
            .ok_or_else(|| PyValueError::new_err("the run is not over yet"))
    }

    /// Stops watching the bridge's socket; the events still unread are
    /// dropped and the run no longer waits for a reader.
    fn close(&self, event_loop: &Bound<'_, PyAny>) -> PyResult<()> {
        {
            let mut p = lock(&self.state.progress);
            p.abandoned = true;
            p.events.clear();
        }
        self.state.room.notify_one();
        event_loop.call_method1("remove_reader", (self.shared.bridge.fd(),))?;
        // Jobs queued after the last wake-up: run them now, so no start or
        // cancellation is left behind.
        self.shared.bridge.drain(event_loop.py());
        Ok(())
    }
}

impl Drop for PyRun {
    fn drop(&mut self) {
        let mut p = lock(&self.state.progress);
        if p.finished.is_none() {
            p.abandoned = true;
            drop(p);
            self.state.room.notify_one();
            self.control.kill_by(Interrupt::new("abandoned"));
        }
    }
}
