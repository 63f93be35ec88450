//! The agent trait and the registry of named agents.
//!
//! An agent is an async function of a [`TaskContext`]; closures qualify. The
//! engine's cancellation is the same for every agent: at a timeout or a stop
//! the context's token is cancelled, the agent gets the grace period to
//! finish, then its future is dropped. Agents that hold resources (child
//! processes, connections) release them on drop.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering, fence};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::capture::Capture;
use crate::limit::SharedLimit;
use crate::result::{Reason, Timestamp};
use crate::task::{AgentName, AgentTask};

/// What an agent hands back when it succeeds (or, inside [`AgentError`],
/// what it had produced when it failed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentOutput {
    /// Standard output, or the agent's answer.
    pub stdout: String,
    /// Diagnostics.
    pub stderr: String,
    /// The process's own exit code, for agents that run one.
    pub exit_code: Option<i32>,
    /// Remarks the engine keeps in the task's result as notes (for example
    /// "1 escaped process killed"); a retried task keeps every attempt's.
    pub notes: Vec<String>,
}

impl From<String> for AgentOutput {
    fn from(stdout: String) -> Self {
        Self {
            stdout,
            ..Self::default()
        }
    }
}

impl From<&str> for AgentOutput {
    fn from(stdout: &str) -> Self {
        Self::from(stdout.to_owned())
    }
}

impl From<()> for AgentOutput {
    fn from((): ()) -> Self {
        Self::default()
    }
}

/// Why an agent's attempt failed, with whatever it produced before.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentError {
    /// The reason, shown in the task's `error` (`exit code 3`).
    pub message: String,
    /// Output produced before the failure.
    pub output: AgentOutput,
    /// What the engine acts on beyond the message; boxed, as an agent's
    /// result is moved for every task and is mostly a success.
    facts: Option<Box<ErrorFacts>>,
}

/// The facts an [`AgentError`] may carry for the engine.
#[derive(Clone, Debug, Default, PartialEq)]
struct ErrorFacts {
    /// The reason as a fact (see [`AgentError::because`]).
    reason: Option<Reason>,
    /// The attempt was refused before any work was done (see
    /// [`AgentError::deferred`]).
    deferred: bool,
    /// How long the service asked to wait before the next try.
    retry_after: Option<Duration>,
    /// Trying again cannot help (see [`AgentError::no_retry`]).
    no_retry: bool,
}

impl AgentError {
    /// An error with a message and no output.
    #[must_use]
    pub fn new(message: impl Into<String>) -> Self {
        Self::with_output(message, AgentOutput::default())
    }

    /// An error carrying the output produced before it.
    #[must_use]
    pub fn with_output(message: impl Into<String>, output: AgentOutput) -> Self {
        Self {
            message: message.into(),
            output,
            facts: None,
        }
    }

    /// The attempt was refused before any work was done (a provider's
    /// 429): the task goes back to the ready tasks in its input order and
    /// is tried again, after `retry_after` if given. A deferral is not an
    /// attempt: it uses none of the task's retries and counts no failure.
    /// After 20 deferrals the task fails with `rate limited 20 times`.
    #[must_use]
    pub fn deferred(retry_after: Option<Duration>) -> Self {
        let mut error = Self::new("deferred");
        let facts = error.facts_mut();
        facts.deferred = true;
        facts.retry_after = retry_after;
        error
    }

    /// How long the service asked to wait before the next try: a retry's
    /// backoff is never shorter (and a deferral waits that long).
    #[must_use]
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.facts_mut().retry_after = Some(after);
        self
    }

    /// Trying again cannot help (a provider's 401, an exhausted quota): the
    /// task fails now, whatever retries it has left.
    #[must_use]
    pub fn no_retry(mut self) -> Self {
        self.facts_mut().no_retry = true;
        self
    }

    /// Whether the agent said trying again cannot help.
    #[must_use]
    pub fn is_final(&self) -> bool {
        self.facts.as_ref().is_some_and(|f| f.no_retry)
    }

    /// Whether the attempt was refused before any work was done.
    #[must_use]
    pub fn is_deferred(&self) -> bool {
        self.facts.as_ref().is_some_and(|f| f.deferred)
    }

    /// How long the service asked to wait before the next try, if it said.
    #[must_use]
    pub fn retry_after_hint(&self) -> Option<Duration> {
        self.facts.as_ref().and_then(|f| f.retry_after)
    }

    /// The same error, with its reason as a fact (without one, it is
    /// [`Reason::AgentError`]). Two reasons change what the engine does:
    /// [`Reason::Timeout`] makes the attempt a `timeout`, worded as the
    /// engine's own (an agent that enforces the limit elsewhere, on a
    /// remote worker say), and [`Reason::ExecutionLost`] runs the task
    /// again without using a retry.
    #[must_use]
    pub fn because(mut self, reason: Reason) -> Self {
        self.facts_mut().reason = Some(reason);
        self
    }

    /// The reason as a fact, if the agent gave one.
    #[must_use]
    pub fn reason(&self) -> Option<&Reason> {
        self.facts.as_ref().and_then(|f| f.reason.as_ref())
    }

    /// Takes the reason out, for the engine's record of the attempt.
    pub(crate) fn take_reason(&mut self) -> Option<Reason> {
        self.facts.as_mut().and_then(|f| f.reason.take())
    }

    fn facts_mut(&mut self) -> &mut ErrorFacts {
        self.facts.get_or_insert_with(Box::default)
    }
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AgentError {}

impl From<String> for AgentError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for AgentError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

impl From<std::io::Error> for AgentError {
    fn from(e: std::io::Error) -> Self {
        Self::new(e.to_string())
    }
}

impl From<Box<dyn std::error::Error + Send + Sync>> for AgentError {
    fn from(e: Box<dyn std::error::Error + Send + Sync>) -> Self {
        Self::new(e.to_string())
    }
}

/// What an agent's attempt yields.
pub type AgentResult = Result<AgentOutput, AgentError>;

/// Everything an agent gets for one attempt of one task.
pub struct TaskContext {
    pub(crate) task: Arc<AgentTask>,
    pub(crate) attempt: u32,
    pub(crate) seq: u64,
    pub(crate) slot: usize,
    pub(crate) deferred_at: Option<tokio::time::Instant>,
    pub(crate) grace: Duration,
    pub(crate) shared: Arc<AttemptShared>,
}

/// What an attempt's context shares with the engine, in one allocation:
/// its output capture, its cancellation and whether its outcome is settled.
#[derive(Debug)]
pub(crate) struct AttemptShared {
    pub(crate) capture: Capture,
    /// [`STOPPED`], [`TIMED_OUT`] and [`SETTLED`], in one word so that
    /// whichever came first is known.
    state: AtomicU8,
    /// Made when first asked for: an agent that never looks at its token
    /// (most that finish at once) costs no token at all.
    token: OnceLock<CancellationToken>,
    /// What the agent reported of where and when the attempt really ran;
    /// made at its first report, so local agents pay a pointer.
    reported: OnceLock<Box<Mutex<Reported>>>,
    /// The attempt's time limit, for agents that enforce it elsewhere.
    pub(crate) timeout: Option<Duration>,
}

/// Facts an agent reports about its attempt, beyond its outcome: what an
/// agent that runs attempts elsewhere (on a remote worker) knows better
/// than the engine.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Reported {
    /// Where it ran.
    pub(crate) worker: Option<String>,
    /// It was handed on and waits to start: its timeout waits too.
    pub(crate) queued: bool,
    /// When it really started, on the engine's clock and the wall clock.
    pub(crate) start: Option<(tokio::time::Instant, Timestamp)>,
    /// Its output, which replaces what the engine captured.
    pub(crate) output: Option<(String, String)>,
    /// Tokens its model calls used.
    pub(crate) usage: Option<crate::result::Usage>,
    /// What they cost, when a price was known.
    pub(crate) cost_usd: Option<f64>,
}

/// The engine cancelled the attempt because the run stopped.
const STOPPED: u8 = 1;
/// The agent said its outcome was decided.
const SETTLED: u8 = 2;
/// The engine cancelled the attempt because it passed its timeout.
const TIMED_OUT: u8 = 4;
const TOLD_TO_STOP: u8 = STOPPED | TIMED_OUT;

impl AttemptShared {
    pub(crate) fn new(capture: Capture, timeout: Option<Duration>) -> Self {
        Self {
            capture,
            timeout,
            state: AtomicU8::new(0),
            token: OnceLock::new(),
            reported: OnceLock::new(),
        }
    }

    fn report(&self, change: impl FnOnce(&mut Reported)) {
        let reported = self.reported.get_or_init(Box::default);
        change(&mut reported.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// What the agent reported so far (`None` if nothing).
    pub(crate) fn reported(&self) -> Option<Reported> {
        let reported = self.reported.get()?;
        Some(
            reported
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }

    /// Whether the agent said the attempt waits to start (`Some(None)`),
    /// or when it said it really started (`Some(Some(..))`).
    pub(crate) fn reported_start(&self) -> Option<Option<(tokio::time::Instant, Timestamp)>> {
        let reported = self.reported.get()?;
        let reported = reported.lock().unwrap_or_else(PoisonError::into_inner);
        match reported.start {
            Some(start) => Some(Some(start)),
            None => reported.queued.then_some(None),
        }
    }

    pub(crate) fn token(&self) -> &CancellationToken {
        let token = self.token.get_or_init(CancellationToken::new);
        // Pairs with the fence in `cancel`: either it sees this token, or
        // this sees its flag, whichever came first.
        fence(Ordering::SeqCst);
        if self.state.load(Ordering::Relaxed) & TOLD_TO_STOP != 0 {
            token.cancel();
        }
        token
    }

    /// Cancels the attempt because the run stops.
    pub(crate) fn cancel(&self) {
        self.state.fetch_or(STOPPED, Ordering::Relaxed);
        self.cancel_token();
    }

    /// Cancels the attempt because it passed its timeout, unless its
    /// outcome is already settled or a stop came first: in one step, so
    /// that an agent settling at that moment is either in time or not.
    /// Returns whether it timed out.
    pub(crate) fn time_out(&self) -> bool {
        let timed_out = self
            .state
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                (s & (SETTLED | STOPPED) == 0).then_some(s | TIMED_OUT)
            })
            .is_ok();
        if timed_out {
            self.cancel_token();
        }
        timed_out
    }

    fn cancel_token(&self) {
        // Pairs with the fence in `token`.
        fence(Ordering::SeqCst);
        if let Some(token) = self.token.get() {
            token.cancel();
        }
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        // An agent may cancel its own token, too.
        self.told_to_stop()
            || self
                .token
                .get()
                .is_some_and(CancellationToken::is_cancelled)
    }

    /// Whether the engine cancelled the attempt (not the agent itself).
    pub(crate) fn told_to_stop(&self) -> bool {
        self.state.load(Ordering::SeqCst) & TOLD_TO_STOP != 0
    }

    /// Whether the attempt passed its timeout (and was not settled first).
    #[cfg(test)]
    pub(crate) fn timed_out(&self) -> bool {
        self.state.load(Ordering::SeqCst) & TIMED_OUT != 0
    }

    /// Whether the agent settled its outcome.
    pub(crate) fn is_settled(&self) -> bool {
        self.state.load(Ordering::SeqCst) & SETTLED != 0
    }

    /// Records that the agent returned, unless the engine had already told
    /// the attempt to stop (or it passed its timeout): in one step, so that
    /// an agent returning as the stop comes either came first or did not.
    /// Returns whether it came first; a settled attempt has, too.
    pub(crate) fn end(&self) -> bool {
        self.state
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                (s & SETTLED != 0 || s & TOLD_TO_STOP == 0).then_some(s | SETTLED)
            })
            .is_ok()
    }

    fn settle(&self) -> bool {
        self.state
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                (s & TIMED_OUT == 0).then_some(s | SETTLED)
            })
            .is_ok()
    }
}

impl TaskContext {
    /// The task being run.
    #[must_use]
    pub fn task(&self) -> &AgentTask {
        &self.task
    }

    /// The attempt number: 1 for the first run, 2 for the first retry, …
    #[must_use]
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The task's position in input order, from 0: the `seq` of its
    /// events.
    #[must_use]
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The slot this attempt runs in, from 0 (as in
    /// [`crate::Event::TaskStarted`]): below the run's parallel limit, and
    /// never that of another attempt running at the same time.
    #[must_use]
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// When the task's previous attempt was deferred (refused before doing
    /// any work, [`AgentError::deferred`]), if it was: the time since then
    /// is time the task waited for whatever refused it, which an agent may
    /// count as such (the LLM agent counts it as waiting for its provider).
    #[must_use]
    pub fn deferred_at(&self) -> Option<tokio::time::Instant> {
        self.deferred_at
    }

    /// Cancelled when the task must stop (its timeout, fail-fast, the run
    /// deadline, an interrupt). The agent then has [`Self::grace`] to finish
    /// before its future is dropped: an agent that does not await this
    /// token beside its work overruns every stop by the whole grace (see
    /// the crate's "Stopping in time"). Whatever it returns once the token
    /// is cancelled, the task was stopped.
    #[must_use]
    pub fn token(&self) -> &CancellationToken {
        self.shared.token()
    }

    /// The attempt's time limit (`None`: none), counted from its start (see
    /// [`Self::report_start`]). The engine enforces it; an agent that runs
    /// the attempt elsewhere may enforce it there too, and then reports a
    /// timeout with [`crate::Reason::Timeout`].
    #[must_use]
    pub fn timeout(&self) -> Option<Duration> {
        self.shared.timeout
    }

    /// How long the agent may take to wind down after its token is cancelled.
    #[must_use]
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Says that the task's work is done and its outcome decided, and that
    /// the agent is only winding down: collecting the last of the output,
    /// cleaning up. A command agent calls it when the command's main process
    /// exits, which is when PRODUCT.md says a task ends.
    ///
    /// From then on the task's timeout no longer applies, and a stop
    /// (fail-fast, the run deadline, an interrupt) still cancels the token,
    /// so that the agent cuts its winding down short, but no longer makes
    /// the task `cancelled`: its result is what the agent returns. Nor does
    /// [`Self::grace`] cut a settled agent short (only a second interrupt
    /// drops it), so an agent that settles must bound its own winding down.
    ///
    /// An agent may settle after a stop cancelled its token when the work
    /// ended on its own, before the agent acted on the stop (a command that
    /// exited before it was sent SIGTERM): it was not stopped. Returns
    /// false, and changes nothing, when the attempt already passed its
    /// timeout: ending late is timing out, however it ended.
    pub fn settle(&self) -> bool {
        self.shared.settle()
    }

    /// Waits while the run's consumer is too far behind on live output, when
    /// the run keeps every byte ([`crate::Settings::lossless_live_output`]);
    /// returns at once otherwise. An agent that forwards a stream (a pipe)
    /// awaits it before reading more, so that the writer is held back
    /// instead of its output being dropped.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn live_room(&self) {
        if let Some(live) = &self.shared.capture.live {
            live.budget.room().await;
        }
    }

    /// Records standard output as it is produced, so a task that is stopped
    /// keeps what it printed. The engine keeps only the bounded tail and, when
    /// the run streams output, forwards the bytes live.
    pub fn write_stdout(&self, bytes: &[u8]) {
        self.shared
            .capture
            .write(crate::event::Stream::Stdout, bytes);
    }

    /// Like [`Self::write_stdout`], for standard error.
    pub fn write_stderr(&self, bytes: &[u8]) {
        self.shared
            .capture
            .write(crate::event::Stream::Stderr, bytes);
    }

    /// Reports the worker (a machine, a process) this attempt runs on: the
    /// task's result names the worker of its last attempt, and reports
    /// group attempts by worker. A later report replaces an earlier one.
    pub fn report_worker(&self, worker: impl Into<String>) {
        let worker = worker.into();
        self.shared.report(|r| r.worker = Some(worker));
    }

    /// Reports that the attempt was handed on (to a remote queue, say) and
    /// has not started yet: its timeout does not run until
    /// [`Self::report_start`]. The run deadline and stops still apply.
    pub fn report_queued(&self) {
        self.shared.report(|r| r.queued = true);
    }

    /// Reports when the attempt really started (a remote worker took it up
    /// after it waited in a queue), on the engine's clock (`instant`, from
    /// `tokio::time::Instant`) and the wall clock (`at`). The attempt's
    /// timeout then counts from `instant`, and results and reports show
    /// `at` as its start. A start before the engine handed the attempt
    /// over counts as that moment.
    pub fn report_start(&self, instant: tokio::time::Instant, at: Timestamp) {
        self.shared.report(|r| r.start = Some((instant, at)));
    }

    /// Reports the attempt's output, already bounded by the run's output
    /// limit, which then replaces whatever the engine captured from
    /// [`Self::write_stdout`] and [`Self::write_stderr`] and what the agent
    /// returns: for an agent whose process ran elsewhere and whose output
    /// came back whole. A later report replaces an earlier one.
    pub fn report_output(&self, stdout: impl Into<String>, stderr: impl Into<String>) {
        let output = (stdout.into(), stderr.into());
        self.shared.report(|r| r.output = Some(output));
    }

    /// Reports tokens this attempt's model calls used and, when a price is
    /// known, what they cost in US dollars. Reports add up, within an
    /// attempt and over a task's attempts: the task's result has the sums
    /// (`usage`, `cost_usd`).
    pub fn report_usage(&self, usage: crate::result::Usage, cost_usd: Option<f64>) {
        use crate::result::add_optional;
        self.shared.report(|r| {
            r.usage = add_optional(r.usage, Some(usage));
            r.cost_usd = add_optional(r.cost_usd, cost_usd);
        });
    }
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("task", &self.task.id)
            .field("attempt", &self.attempt)
            .field("cancelled", &self.shared.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// Runs tasks. Implement it (the future is a [`crate::BoxFuture`]), or
/// pass a closure `Fn(TaskContext) -> impl Future<Output = Result<T, E>>`
/// where `T: Into<AgentOutput>` and `E: Into<AgentError>`.
///
/// An agent should await [`TaskContext::token`] beside its work: that is
/// how it learns of a timeout or a stop in time.
pub trait Agent: Send + Sync + 'static {
    /// Runs one attempt of one task.
    ///
    /// # Cancel safety
    ///
    /// The returned future may be dropped at any await point once the
    /// context's token has been cancelled and the grace period has passed.
    fn run(&self, ctx: TaskContext) -> BoxFuture<'static, AgentResult>;
}

impl<F, Fut, T, E> Agent for F
where
    F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Into<AgentOutput>,
    E: Into<AgentError>,
{
    fn run(&self, ctx: TaskContext) -> BoxFuture<'static, AgentResult> {
        let fut = self(ctx);
        Box::pin(async move { fut.await.map(Into::into).map_err(Into::into) })
    }
}

/// An agent with its own limits, which beat the executor's global values.
#[derive(Clone)]
pub struct AgentSpec {
    pub(crate) agent: Arc<dyn Agent>,
    pub(crate) parallel_limit: Option<usize>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retries: Option<u32>,
    pub(crate) shared_limit: Option<SharedLimit>,
}

impl AgentSpec {
    /// Wraps an agent with no limits of its own.
    pub fn new(agent: impl Agent) -> Self {
        Self::from_arc(Arc::new(agent))
    }

    /// Wraps a shared agent.
    #[must_use]
    pub fn from_arc(agent: Arc<dyn Agent>) -> Self {
        Self {
            agent,
            parallel_limit: None,
            timeout: None,
            retries: None,
            shared_limit: None,
        }
    }

    /// Caps how many of this agent's tasks run at once, under the global
    /// limit. A value of 0 is treated as 1.
    #[must_use]
    pub fn parallel_limit(mut self, limit: usize) -> Self {
        self.parallel_limit = Some(limit.max(1));
        self
    }

    /// This agent's task timeout (`Duration::ZERO` = none).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// This agent's retry count.
    #[must_use]
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = Some(retries);
        self
    }

    /// Binds this agent to a limit it shares with other agents, which can
    /// change while the run goes on (see [`SharedLimit`]). A task waiting
    /// for it holds no slot and keeps no other agent's task waiting.
    #[must_use]
    pub fn shared_limit(mut self, limit: SharedLimit) -> Self {
        self.shared_limit = Some(limit);
        self
    }
}

impl fmt::Debug for AgentSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentSpec")
            .field("parallel_limit", &self.parallel_limit)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("shared_limit", &self.shared_limit)
            .finish_non_exhaustive()
    }
}

/// The agents a run may use, by name. Cheap to clone.
///
/// # Examples
///
/// ```
/// use agent33_parallel::{AgentError, AgentSpec, Agents, TaskContext};
/// let agents = Agents::new()
///     .add("echo", |ctx: TaskContext| async move {
///         Ok::<_, AgentError>(ctx.task().artifact.clone())
///     })
///     .add_spec("api", AgentSpec::new(|_ctx: TaskContext| async { Ok::<_, AgentError>(()) })
///         .parallel_limit(2));
/// assert!(agents.get("api").is_some());
/// ```
#[derive(Clone, Debug, Default)]
pub struct Agents {
    by_name: HashMap<AgentName, AgentSpec>,
}

impl Agents {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `agent` under `name` with no limits of its own.
    #[must_use]
    pub fn add(self, name: impl Into<AgentName>, agent: impl Agent) -> Self {
        self.add_spec(name, AgentSpec::new(agent))
    }

    /// Registers an agent with its own limits.
    #[must_use]
    pub fn add_spec(mut self, name: impl Into<AgentName>, spec: AgentSpec) -> Self {
        self.by_name.insert(name.into(), spec);
        self
    }

    /// Registers an agent in place.
    pub fn insert(&mut self, name: impl Into<AgentName>, spec: AgentSpec) {
        self.by_name.insert(name.into(), spec);
    }

    /// The agent registered under `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&AgentSpec> {
        self.by_name.get(name)
    }

    /// The registered names, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &AgentName> {
        self.by_name.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_settles_after_a_stop_but_not_after_a_timeout() {
        let stopped = AttemptShared::new(Capture::new(0, None), None);
        stopped.cancel();
        assert!(
            stopped.settle(),
            "work that ended on its own before the agent acted"
        );
        assert!(stopped.is_settled() && stopped.told_to_stop());

        let timed_out = AttemptShared::new(Capture::new(0, None), None);
        assert!(timed_out.time_out());
        assert!(!timed_out.settle(), "ending late is timing out");
        assert!(!timed_out.is_settled() && timed_out.token().is_cancelled());

        let stopped_first = AttemptShared::new(Capture::new(0, None), None);
        stopped_first.cancel();
        assert!(!stopped_first.time_out(), "the stop came first");
        assert!(!stopped_first.timed_out());

        let settled = AttemptShared::new(Capture::new(0, None), None);
        assert!(settled.settle());
        assert!(!settled.time_out(), "a settled attempt does not time out");
        assert!(!settled.token().is_cancelled());
        settled.cancel();
        assert!(settled.is_settled() && settled.token().is_cancelled());
    }

    #[test]
    fn a_token_made_after_the_cancel_is_cancelled() {
        let shared = AttemptShared::new(Capture::new(0, None), None);
        shared.cancel();
        assert!(shared.token().is_cancelled());
        assert!(shared.is_cancelled());
    }

    #[test]
    fn a_cancel_reaches_a_token_made_before_it() {
        let shared = AttemptShared::new(Capture::new(0, None), None);
        let token = shared.token().clone();
        assert!(!shared.is_cancelled());
        shared.cancel();
        assert!(token.is_cancelled());
    }

    #[test]
    fn an_agent_cancelling_its_own_token_counts_as_cancelled() {
        let shared = AttemptShared::new(Capture::new(0, None), None);
        shared.token().cancel();
        assert!(shared.is_cancelled());
    }
}
