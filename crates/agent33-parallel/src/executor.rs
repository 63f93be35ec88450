//! The executor: its builder, and the entry points that run tasks.
//!
//! Each run is driven by one dispatcher task (see [`crate::dispatch`]) that
//! owns all run state; callers watch it through an ordered [`EventStream`]
//! or wait for the aggregated [`ExecutionResults`].

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::agent::Agents;
use crate::capture::LiveBudget;
use crate::collect::ResultsCollector;
use crate::control::{Resume, RunControl};
use crate::dispatch::{Dispatcher, Input};
use crate::event::{Backlog, Batch, Event, SpentBatches};
use crate::result::ExecutionResults;
use crate::settings::{Settings, SettingsError, none_if_zero};
use crate::task::AgentTask;

/// Builds a [`ParallelExecutor`], validating every setting.
#[derive(Clone, Debug, Default)]
pub struct ExecutorBuilder {
    settings: Settings,
    /// The first invalid number of seconds given, reported by `build`.
    invalid: Option<SettingsError>,
    /// Whether `max_failures` was given to this builder: with
    /// `continue_on_error(true)` that is two answers to one question.
    /// [`Settings`] given whole were resolved by their caller.
    max_failures_given: bool,
}

/// Converts a number of seconds to a duration.
fn seconds(setting: &'static str, value: f64) -> Result<Duration, SettingsError> {
    if value.is_finite() && value >= 0.0 {
        Duration::try_from_secs_f64(value).map_err(|_| SettingsError::Seconds { setting, value })
    } else {
        Err(SettingsError::Seconds { setting, value })
    }
}

impl ExecutorBuilder {
    /// Sets a duration given in seconds with `set`, or keeps the error for
    /// `build` (the first one wins).
    fn seconds(
        mut self,
        setting: &'static str,
        secs: f64,
        set: fn(&mut Settings, Duration),
    ) -> Self {
        match seconds(setting, secs) {
            Ok(d) => set(&mut self.settings, d),
            Err(e) => {
                self.invalid.get_or_insert(e);
            }
        }
        self
    }

    /// Starts from these settings instead of the defaults.
    #[must_use]
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self.max_failures_given = false;
        self
    }

    /// Runs tasks in parallel (`true`) or one at a time.
    #[must_use]
    pub fn parallel(mut self, parallel: bool) -> Self {
        self.settings.parallel = parallel;
        self
    }

    /// Sets the global limit and, like the CLI's `-j`, switches parallel on.
    #[must_use]
    pub fn parallel_limit(mut self, limit: usize) -> Self {
        self.settings.parallel_limit = limit;
        self.settings.parallel = true;
        self
    }

    /// Honours `depends_on` in parallel mode and switches parallel on.
    #[must_use]
    pub fn respect_dependencies(mut self, respect: bool) -> Self {
        self.settings.respect_dependencies = respect;
        if respect {
            self.settings.parallel = true;
        }
        self
    }

    /// Per-task timeout (`Duration::ZERO` = none).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = none_if_zero(timeout);
        self
    }

    /// Per-task timeout in seconds (0 = none); validated by `build`.
    #[must_use]
    pub fn timeout_seconds(self, secs: f64) -> Self {
        self.seconds("timeout_seconds", secs, |s, d| s.timeout = none_if_zero(d))
    }

    /// Never stop for failures.
    #[must_use]
    pub fn continue_on_error(mut self, yes: bool) -> Self {
        self.settings.continue_on_error = yes;
        self
    }

    /// Failures that fire the stop trigger; `build` refuses it together
    /// with `continue_on_error(true)`.
    #[must_use]
    pub fn max_failures(mut self, n: u32) -> Self {
        self.settings.max_failures = n;
        self.max_failures_given = true;
        self
    }

    /// Cancel in-flight tasks at the stop trigger (otherwise drain them).
    #[must_use]
    pub fn fail_fast(mut self, yes: bool) -> Self {
        self.settings.fail_fast = yes;
        self
    }

    /// Extra attempts for a failed or timed-out task.
    #[must_use]
    pub fn retries(mut self, n: u32) -> Self {
        self.settings.retries = n;
        self
    }

    /// Backoff before the first retry; doubles each time.
    #[must_use]
    pub fn retry_backoff(mut self, backoff: Duration) -> Self {
        self.settings.retry_backoff = backoff;
        self
    }

    /// Backoff in seconds; validated by `build`.
    #[must_use]
    pub fn retry_backoff_seconds(self, secs: f64) -> Self {
        self.seconds("retry_backoff_seconds", secs, |s, d| s.retry_backoff = d)
    }

    /// Grace between cancelling a task and dropping it.
    #[must_use]
    pub fn kill_grace(mut self, grace: Duration) -> Self {
        self.settings.kill_grace = grace;
        self
    }

    /// Grace in seconds; validated by `build`.
    #[must_use]
    pub fn kill_grace_seconds(self, secs: f64) -> Self {
        self.seconds("kill_grace_seconds", secs, |s, d| s.kill_grace = d)
    }

    /// Whole-run deadline (`Duration::ZERO` = none).
    #[must_use]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.settings.deadline = none_if_zero(deadline);
        self
    }

    /// Whole-run deadline in seconds (0 = none); validated by `build`.
    #[must_use]
    pub fn deadline_seconds(self, secs: f64) -> Self {
        self.seconds("deadline_seconds", secs, |s, d| {
            s.deadline = none_if_zero(d)
        })
    }

    /// Bytes kept of each output stream per task.
    #[must_use]
    pub fn output_limit_bytes(mut self, bytes: usize) -> Self {
        self.settings.output_limit_bytes = bytes;
        self
    }

    /// Forward task output live as events.
    #[must_use]
    pub fn stream_output(mut self, yes: bool) -> Self {
        self.settings.stream_output = yes;
        self
    }

    /// Hold writers back rather than drop live output a slow consumer has
    /// not taken (see [`Settings::lossless_live_output`]).
    #[must_use]
    pub fn lossless_live_output(mut self, yes: bool) -> Self {
        self.settings.lossless_live_output = yes;
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    ///
    /// A [`SettingsError`] naming the first invalid setting.
    pub fn build(self) -> Result<ParallelExecutor, SettingsError> {
        if let Some(e) = self.invalid {
            return Err(e);
        }
        let mut s = self.settings;
        if s.parallel_limit == 0 {
            return Err(SettingsError::ParallelLimit(0));
        }
        if s.max_failures == 0 {
            return Err(SettingsError::MaxFailures(0));
        }
        if s.continue_on_error && self.max_failures_given {
            return Err(SettingsError::ContinueOnErrorWithMaxFailures(
                s.max_failures,
            ));
        }
        s.lookahead = s.lookahead.max(1);
        Ok(ParallelExecutor {
            settings: s,
            resume: None,
        })
    }
}

/// Runs agent tasks behind a semaphore gate. Cheap to clone.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use agent33_parallel::{AgentError, AgentTask, Agents, ParallelExecutor, TaskContext};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let echo = |ctx: TaskContext| async move {
///     Ok::<_, AgentError>(format!("worked on {}", ctx.task().artifact))
/// };
/// let agents = Agents::new().add("refinement", echo).add("validation", echo);
///
/// let executor = ParallelExecutor::builder()
///     .parallel_limit(4)
///     .timeout(Duration::from_secs(300))
///     .continue_on_error(true)
///     .build()?;
///
/// let results = executor.run_all(vec![
///     AgentTask::new("refinement", "core/prompts/SYSTEM.md"),
///     AgentTask::new("validation", "core/agents/worker.md"),
///     AgentTask::new("refinement", "core/templates/README.md"),
/// ], &agents).await;
///
/// println!("Completed: {}/{}", results.succeeded.len(), results.total);
/// if !results.failed.is_empty() {
///     println!("Failed: {:?}", results.failed.iter().map(|f| &f.task.artifact).collect::<Vec<_>>());
/// }
/// assert_eq!(results.succeeded.len(), 3);
/// # Ok::<(), agent33_parallel::SettingsError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct ParallelExecutor {
    settings: Settings,
    resume: Option<Arc<dyn Resume>>,
}

impl std::fmt::Debug for ParallelExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParallelExecutor")
            .field("settings", &self.settings)
            .field("resume", &self.resume.is_some())
            .finish()
    }
}

impl ParallelExecutor {
    /// A builder starting from the default settings.
    #[must_use]
    pub fn builder() -> ExecutorBuilder {
        ExecutorBuilder::default()
    }

    /// The validated settings.
    #[must_use]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Skips tasks that `resume` says already succeeded.
    #[must_use]
    pub fn with_resume(mut self, resume: Arc<dyn Resume>) -> Self {
        self.resume = Some(resume);
        self
    }

    /// Runs every task (a `Vec`, an array, an iterator that makes them as
    /// it is read) and returns the aggregated results.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops the run: every running agent is dropped.
    pub async fn run_all<I>(&self, tasks: I, agents: &Agents) -> ExecutionResults
    where
        I: IntoIterator<Item = AgentTask>,
        I::IntoIter: Send + 'static,
    {
        self.run(tasks, agents, RunControl::new())
            .collect_results()
            .await
    }

    /// Starts a run over a known set of tasks (all of them are part of the
    /// run: at a stop, those not yet started are reported `cancelled`) and
    /// returns its events. Must be called inside a tokio runtime.
    pub fn run<I>(&self, tasks: I, agents: &Agents, control: RunControl) -> EventStream
    where
        I: IntoIterator<Item = AgentTask>,
        I::IntoIter: Send + 'static,
    {
        self.spawn(Input::iter(tasks.into_iter()), agents, control)
    }

    /// Starts a run over a stream of tasks, read only as slots free up (at
    /// most `lookahead` tasks wait at once), so memory stays proportional to
    /// the limit. At a stop the stream is not read any further. Must be
    /// called inside a tokio runtime.
    ///
    /// Any [`futures::Stream`] will do; [`crate::stream`] makes one from an
    /// iterator or, as below, from a channel the caller feeds while the
    /// run goes on.
    ///
    /// # Examples
    ///
    /// ```
    /// use agent33_parallel::{stream, AgentError, AgentTask, Agents, ParallelExecutor, RunControl, TaskContext};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let agents = Agents::new().add("echo", |_ctx: TaskContext| async { Ok::<_, AgentError>(()) });
    /// let (tx, rx) = tokio::sync::mpsc::channel::<AgentTask>(64);
    /// let tasks = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|t| (t, rx)) });
    /// let executor = ParallelExecutor::builder().parallel_limit(8).build().unwrap();
    /// let events = executor.run_stream(tasks, &agents, RunControl::new());
    /// for i in 0..100 {
    ///     tx.send(AgentTask::new("echo", format!("item-{i}"))).await.unwrap();
    /// }
    /// drop(tx); // the input ends
    /// let results = events.collect_results().await;
    /// assert_eq!(results.succeeded.len(), 100);
    /// # });
    /// ```
    pub fn run_stream<S>(&self, tasks: S, agents: &Agents, control: RunControl) -> EventStream
    where
        S: Stream<Item = AgentTask> + Send + 'static,
    {
        self.spawn(Input::stream(Box::pin(tasks)), agents, control)
    }

    fn spawn(&self, input: Input, agents: &Agents, control: RunControl) -> EventStream {
        let (tx, rx) = mpsc::unbounded_channel();
        let live_budget = Arc::new(LiveBudget::new(self.settings.lossless_live_output));
        let spent = Arc::new(SpentBatches::default());
        let backlog = Arc::new(Backlog::default());
        let dispatcher = Dispatcher::new(
            self.settings.clone(),
            agents.clone(),
            input,
            control,
            self.resume.clone(),
            Arc::clone(&live_budget),
            tx,
            Arc::clone(&spent),
            Arc::clone(&backlog),
        );
        let handle = tokio::spawn(dispatcher.run());
        EventStream {
            rx,
            batch: Batch::new(),
            live_budget,
            spent,
            backlog,
            handle,
        }
    }
}

/// The ordered events of a running run. Dropping it stops the run.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::UnboundedReceiver<Batch>,
    batch: Batch,
    live_budget: Arc<LiveBudget>,
    spent: Arc<SpentBatches>,
    backlog: Arc<Backlog>,
    handle: JoinHandle<()>,
}

impl EventStream {
    /// The next event; `None` after [`Event::RunFinished`].
    pub async fn next_event(&mut self) -> Option<Event> {
        futures::StreamExt::next(self).await
    }

    /// The next events, as many as are ready at once (never empty); `None`
    /// after [`Event::RunFinished`]. Lets a consumer do per-batch work once,
    /// such as one fsync for a journal.
    pub async fn next_batch(&mut self) -> Option<Vec<Event>> {
        let batch = if self.batch.is_empty() {
            let batch = self.rx.recv().await?;
            self.backlog.taken(batch.len());
            batch
        } else {
            std::mem::take(&mut self.batch)
        };
        for event in &batch {
            self.live_budget.release(event);
        }
        Some(Vec::from(batch))
    }

    /// Consumes the remaining events into [`ExecutionResults`].
    pub async fn collect_results(mut self) -> ExecutionResults {
        let mut collector = ResultsCollector::new();
        let mut finished = false;
        loop {
            for event in self.batch.drain(..) {
                self.live_budget.release(&event);
                finished |= matches!(event, Event::RunFinished { .. });
                collector.observe_owned(event);
            }
            // The run's last event: the dispatcher is ending, and its
            // handle says how. Waiting for the channel to close as well
            // would cost one more wake-up of this thread.
            if finished {
                break;
            }
            match self.rx.recv().await {
                Some(batch) => {
                    self.backlog.taken(batch.len());
                    self.spent.give(std::mem::replace(&mut self.batch, batch));
                }
                None => break,
            }
        }
        // The channel closes when the dispatcher ends; if it ended by
        // panicking, that is an engine bug and must not pass as a short run.
        if let Err(e) = (&mut self.handle).await {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        collector.finish()
    }
}

impl Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        loop {
            if let Some(event) = self.batch.pop_front() {
                self.live_budget.release(&event);
                return Poll::Ready(Some(event));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(batch)) => {
                    self.backlog.taken(batch.len());
                    let spent = std::mem::replace(&mut self.batch, batch);
                    self.spent.give(spent);
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_rejects_a_zero_limit() {
        let err = ParallelExecutor::builder()
            .parallel_limit(0)
            .build()
            .unwrap_err();
        assert_eq!(err, SettingsError::ParallelLimit(0));
    }

    #[test]
    fn builder_rejects_continue_on_error_with_max_failures() {
        let err = ParallelExecutor::builder()
            .max_failures(3)
            .continue_on_error(true)
            .build()
            .unwrap_err();
        assert_eq!(err, SettingsError::ContinueOnErrorWithMaxFailures(3));
        let message = err.to_string();
        assert!(
            message.contains("continue_on_error") && message.contains("max_failures"),
            "{message}"
        );
        // Either alone is fine, and so are settings given whole, which
        // their caller resolved (the CLI, from its sources).
        assert!(ParallelExecutor::builder().max_failures(3).build().is_ok());
        assert!(
            ParallelExecutor::builder()
                .continue_on_error(true)
                .build()
                .is_ok()
        );
        let resolved = Settings {
            continue_on_error: true,
            max_failures: 3,
            ..Settings::default()
        };
        let built = ParallelExecutor::builder()
            .max_failures(2)
            .settings(resolved)
            .build();
        assert!(built.is_ok());
    }

    #[test]
    fn builder_rejects_negative_and_nan_seconds() {
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            let err = ParallelExecutor::builder()
                .timeout_seconds(bad)
                .build()
                .unwrap_err();
            assert!(matches!(
                err,
                SettingsError::Seconds {
                    setting: "timeout_seconds",
                    ..
                }
            ));
        }
    }

    #[test]
    fn zero_timeout_and_deadline_mean_none() {
        let e = ParallelExecutor::builder()
            .timeout_seconds(0.0)
            .deadline_seconds(0.0)
            .build()
            .unwrap();
        assert_eq!((e.settings().timeout, e.settings().deadline), (None, None));
        let e = ParallelExecutor::builder()
            .timeout_seconds(0.5)
            .build()
            .unwrap();
        assert_eq!(e.settings().timeout, Some(Duration::from_millis(500)));
    }

    #[test]
    fn parallel_limit_switches_parallel_on() {
        let e = ParallelExecutor::builder().build().unwrap();
        assert_eq!(e.settings().effective_limit(), 1);
        let e = ParallelExecutor::builder()
            .parallel_limit(8)
            .build()
            .unwrap();
        assert_eq!(e.settings().effective_limit(), 8);
    }
}
