//! The dispatcher: the one owner of a run's state.
//!
//! A single loop `select!`s over worker completions, backoff timers, the run
//! deadline, the caller's interrupt and the input. It alone decides what to
//! admit (the earliest ready task in input order whose agent has room), when
//! the stop trigger fires, and what is skipped or cancelled. Workers run one
//! attempt each and report by value over a channel; they share nothing with
//! it but the attempt's capture buffer and cancellation.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use futures::StreamExt;
use futures::future::{BoxFuture, CatchUnwind};
use futures::stream::BoxStream;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::agent::{Agent, AgentResult, Agents, AttemptShared, TaskContext};
use crate::capture::{Capture, LiveBudget, LiveSink};
use crate::event::{Backlog, Batch, Event, SpentBatches, StopReason};
use crate::executor::{Resume, RunControl, Settings};
use crate::metrics::{Metrics, Timer};
use crate::result::{TaskResult, TaskStatus, Timestamp};
use crate::task::{AgentTask, TaskId};

/// Where tasks come from.
pub(crate) enum Input {
    /// A known set: read as needed, drained as `cancelled` at a stop.
    Iter(Box<dyn Iterator<Item = AgentTask> + Send>),
    /// An open-ended stream: read as needed, abandoned at a stop.
    Stream(BoxStream<'static, AgentTask>),
    /// Nothing more to read.
    Done,
}

impl Input {
    pub(crate) fn iter(it: impl Iterator<Item = AgentTask> + Send + 'static) -> Self {
        Self::Iter(Box::new(it))
    }

    pub(crate) fn stream(s: BoxStream<'static, AgentTask>) -> Self {
        Self::Stream(s)
    }

    fn size_hint(&self) -> Option<usize> {
        match self {
            Self::Iter(it) => match it.size_hint() {
                (lo, Some(hi)) if lo == hi => Some(lo),
                _ => None,
            },
            Self::Stream(_) => None,
            Self::Done => Some(0),
        }
    }
}

#[derive(Debug)]
enum State {
    /// Waiting for dependencies.
    Blocked,
    /// In its agent's ready queue.
    Ready,
    Running,
    /// Waiting out a retry backoff.
    Backoff,
}

struct Entry {
    seq: u64,
    task: Arc<AgentTask>,
    agent: usize,
    state: State,
    deps_left: usize,
    attempts: u32,
    /// When the task last became ready (for queue-wait figures).
    ready_since: Option<Instant>,
    first_start: Option<(Instant, Timestamp)>,
    /// The outcome of the last attempt, kept while a retry is pending.
    last: Option<Box<Attempt>>,
    /// The attempt in flight.
    run: Option<InFlight>,
    retries: u32,
    timeout: Option<Duration>,
}

/// What the dispatcher keeps of a running attempt.
struct InFlight {
    slot: usize,
    started: Instant,
    /// It passed its timeout and was told to stop.
    timed_out: bool,
}

/// Who runs in a slot, so a deadline can tell whether its attempt still
/// runs without a lookup in the entries.
struct SlotUse {
    seq: u64,
    key: usize,
    attempt: u32,
    shared: Arc<AttemptShared>,
    /// To drop the worker when the run is dropped (its report comes by
    /// channel); `None` while the dispatcher polls the agent itself.
    worker: Option<JoinHandle<()>>,
}

struct AgentSlot {
    spec: Option<crate::agent::AgentSpec>,
    limit: usize,
    running: usize,
    /// Ready tasks as (seq, key): the earliest in input order first.
    ready: BinaryHeap<Reverse<(u64, usize)>>,
    /// Whether the dispatcher gives this agent's attempts their first poll
    /// itself (see `start`).
    inline: Inline,
}

/// Whether the dispatcher polls an agent's attempts once itself: for an
/// agent whose attempts end at their first poll, and quickly. Off for good
/// once one waited (it would go to a worker anyway), took over a
/// millisecond (an agent that blocks its thread must not block the
/// dispatcher twice), or when too many of a window were slow (one now and
/// then is: cold caches, lazy set-up, the thread being preempted).
#[derive(Debug)]
struct Inline {
    on: bool,
    /// Inline first polls in the current window, and how many were slow.
    polls: u16,
    slow: u16,
}

impl Inline {
    /// A first poll slower than this counts as slow.
    const SLOW: Duration = Duration::from_micros(20);
    /// A first poll slower than this turns inlining off at once.
    const BLOCKING: Duration = Duration::from_millis(1);
    /// Slow first polls allowed in a window.
    const SLOW_PER_WINDOW: u16 = 8;
    const WINDOW: u16 = 1024;

    fn new() -> Self {
        Self {
            on: true,
            polls: 0,
            slow: 0,
        }
    }

    /// Whether to time the next first poll: a clock read costs about as
    /// much as a no-op agent, so one in eight is, and each of the first few.
    fn times_next(&self) -> bool {
        self.polls % 8 == 0 || self.polls < 16
    }

    /// Takes in how a first poll went: whether the attempt ended, and how
    /// long it took if it was timed.
    fn record(&mut self, ended: bool, took: Option<Duration>) {
        let took = took.unwrap_or_default();
        self.polls += 1;
        self.slow += u16::from(took > Self::SLOW);
        if !ended || took > Self::BLOCKING || self.slow >= Self::SLOW_PER_WINDOW {
            self.on = false;
        } else if self.polls == Self::WINDOW {
            (self.polls, self.slow) = (0, 0);
        }
    }
}

/// What woke the dispatcher.
enum Woke {
    Report(Report),
    Stop(StopReason),
    Timeouts,
    Backoffs,
    Input(Option<AgentTask>),
    /// The consumer caught up with the events.
    Drained,
}

/// How one attempt ended, as the worker saw it.
enum Ended {
    Returned(std::thread::Result<AgentResult>),
    TimedOut(Option<std::thread::Result<AgentResult>>),
    Cancelled(Option<std::thread::Result<AgentResult>>),
}

/// What a worker reports back; `None` if the worker itself panicked.
struct Report {
    key: usize,
    ended: Option<Ended>,
}

/// One attempt's outcome, classified.
#[derive(Debug)]
struct Attempt {
    status: TaskStatus,
    error: Option<String>,
    exit_code: Option<i32>,
    output: String,
    stderr: String,
    notes: Vec<String>,
    slot: usize,
}

/// The entries of tasks read and not finished, under keys that are reused
/// once their task finishes: an index instead of a hash on the hot path.
/// Lookups name the task's `seq` too, so a stale key finds nothing.
#[derive(Default)]
struct Entries {
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    len: usize,
}

impl Entries {
    /// The key the next insert takes.
    fn next_key(&self) -> usize {
        self.free.last().copied().unwrap_or(self.slots.len())
    }

    fn insert(&mut self, entry: Entry) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(key) => {
                self.slots[key] = Some(entry);
                key
            }
            None => {
                self.slots.push(Some(entry));
                self.slots.len() - 1
            }
        }
    }

    fn get(&self, key: usize, seq: u64) -> Option<&Entry> {
        self.slots.get(key)?.as_ref().filter(|e| e.seq == seq)
    }

    fn get_mut(&mut self, key: usize, seq: u64) -> Option<&mut Entry> {
        self.slots.get_mut(key)?.as_mut().filter(|e| e.seq == seq)
    }

    /// The entry under a key known to be live, such as a running task's.
    fn slot_mut(&mut self, key: usize) -> Option<&mut Entry> {
        self.slots.get_mut(key)?.as_mut()
    }

    fn remove(&mut self, key: usize, seq: u64) -> Option<Entry> {
        self.get(key, seq)?;
        self.len -= 1;
        self.free.push(key);
        self.slots[key].take()
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// (seq, key) of the entries that pass `keep`, in input order.
    fn in_order(&self, keep: impl Fn(&Entry) -> bool) -> Vec<(u64, usize)> {
        let mut found: Vec<(u64, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(key, e)| e.as_ref().filter(|e| keep(e)).map(|e| (e.seq, key)))
            .collect();
        found.sort_unstable();
        found
    }
}

/// Maps the tokio clock to wall time, from one anchor.
struct Clock {
    instant: Instant,
    wall: SystemTime,
}

impl Clock {
    fn wall(&self, at: Instant) -> Timestamp {
        Timestamp(self.wall + at.saturating_duration_since(self.instant))
    }
}

fn format_secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) struct Dispatcher {
    s: Settings,
    limit: usize,
    respect_deps: bool,
    registry: Agents,
    agents: Vec<AgentSlot>,
    agent_index: HashMap<crate::task::AgentName, usize>,
    last_agent: Option<(crate::task::AgentName, usize)>,
    entries: Entries,
    next_seq: u64,
    input: Input,
    drain_on_stop: bool,
    lookahead: usize,
    waiting: usize,
    /// When each finished task succeeded, or `None` if it did not (only
    /// where dependencies count).
    finished: HashMap<TaskId, Option<Instant>>,
    /// Tasks blocked on an id, by that id, as (seq, key).
    waiters: HashMap<TaskId, Vec<(u64, usize)>>,
    /// Ids of tasks read but not finished, with their (seq, key) (only
    /// where dependencies count).
    live: HashMap<TaskId, (u64, usize)>,
    warned_deps: bool,
    running: usize,
    /// Whether the last turn that took a report found more waiting: tasks
    /// are finishing faster than the loop turns (see `run`).
    bunched: bool,
    free_slots: BinaryHeap<Reverse<usize>>,
    slots: Vec<Option<SlotUse>>,
    backoffs: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    /// Deadlines of running attempts: (when, seq, attempt, slot). Entries
    /// of attempts that ended are dropped lazily when they come due.
    timeouts: BinaryHeap<Reverse<(Instant, u64, u32, usize)>>,
    /// Reports of workers. Through a channel rather than a `JoinSet`:
    /// no lock and no extra allocation per worker, and nothing to copy out
    /// of the task's allocation.
    reports: UnboundedReceiver<Report>,
    worker_env: Arc<WorkerEnv>,
    stop: Option<StopReason>,
    failures: u32,
    control: RunControl,
    resume: Option<Arc<dyn Resume>>,
    live_budget: Arc<LiveBudget>,
    events: UnboundedSender<Batch>,
    spent: Arc<SpentBatches>,
    backlog: Arc<Backlog>,
    /// Why the tasks a stop left unread (see `draining`) are not started: the first stop's reason, as for the
    /// tasks that were read before it.
    drain_text: String,
    /// Events of the current turn of the loop, sent as one batch: one
    /// channel operation and at most one wake-up per turn, not per event.
    outbox: Batch,
    clock: Clock,
    /// The time of the current turn of the loop, read once when first
    /// needed: a turn does no waiting, so whatever it does happens then.
    turn: Option<(Instant, Timestamp)>,
    // Metrics.
    counts: [u64; 5],
    retry_count: u64,
    peak: usize,
    busy: Duration,
    task_ms: Timer,
    wait_ms: Timer,
}

impl Dispatcher {
    #[expect(
        clippy::too_many_arguments,
        reason = "the parts of a run, each made by the executor"
    )]
    pub(crate) fn new(
        s: Settings,
        registry: Agents,
        input: Input,
        control: RunControl,
        resume: Option<Arc<dyn Resume>>,
        live_budget: Arc<LiveBudget>,
        events: UnboundedSender<Batch>,
        spent: Arc<SpentBatches>,
        backlog: Arc<Backlog>,
    ) -> Self {
        let limit = s.effective_limit();
        let (report_tx, reports) = mpsc::unbounded_channel();
        let respect_deps = s.respects_dependencies();
        let (drain_on_stop, lookahead) = match input {
            Input::Iter(_) => (true, usize::MAX),
            _ => (false, s.lookahead),
        };
        Self {
            limit,
            respect_deps,
            registry,
            agents: Vec::new(),
            agent_index: HashMap::new(),
            last_agent: None,
            entries: Entries::default(),
            next_seq: 0,
            input,
            drain_on_stop,
            lookahead,
            waiting: 0,
            finished: HashMap::new(),
            waiters: HashMap::new(),
            live: HashMap::new(),
            warned_deps: false,
            running: 0,
            bunched: false,
            free_slots: BinaryHeap::new(),
            slots: Vec::new(),
            backoffs: BinaryHeap::new(),
            timeouts: BinaryHeap::new(),
            reports,
            worker_env: Arc::new(WorkerEnv {
                grace: s.kill_grace,
                kill: control.kill.clone(),
                reports: report_tx,
            }),
            stop: None,
            failures: 0,
            control,
            resume,
            live_budget,
            events,
            outbox: Batch::new(),
            spent,
            backlog,
            drain_text: String::new(),
            clock: Clock {
                instant: Instant::now(),
                wall: SystemTime::now(),
            },
            turn: None,
            counts: [0; 5],
            retry_count: 0,
            peak: 0,
            busy: Duration::ZERO,
            task_ms: Timer::default(),
            wait_ms: Timer::default(),
            s,
        }
    }

    /// The time of this turn of the loop, and the wall time it maps to.
    fn now(&mut self) -> (Instant, Timestamp) {
        let clock = &self.clock;
        *self.turn.get_or_insert_with(|| {
            let now = Instant::now();
            (now, clock.wall(now))
        })
    }

    fn emit(&mut self, event: Event) {
        self.outbox.push_back(event);
    }

    fn flush(&mut self) {
        if !self.outbox.is_empty() {
            let batch = std::mem::replace(&mut self.outbox, self.spent.take());
            self.backlog.sent(batch.len());
            // A closed receiver means nobody watches; the run goes on regardless.
            let _ = self.events.send(batch);
        }
    }

    pub(crate) async fn run(mut self) {
        let start = self.clock.instant;
        self.emit(Event::RunStarted {
            total: self.input.size_hint(),
            parallel_limit: self.limit,
            at: self.clock.wall(start),
        });
        let deadline = self.s.deadline.and_then(|d| start.checked_add(d));
        // The futures that outlive one turn of the loop are made once and
        // polled in place: re-registering with a token or the timer wheel on
        // every turn would cost more than the dispatch itself.
        let interrupt = self.control.interrupt.clone();
        let kill = self.control.kill.clone();
        let interrupted = interrupt.cancelled();
        let killed = kill.cancelled();
        let deadline_sleep = sleep_until_opt(deadline);
        let backoff_sleep = tokio::time::sleep_until(start);
        let timeout_sleep = tokio::time::sleep_until(start);
        tokio::pin!(
            interrupted,
            killed,
            deadline_sleep,
            backoff_sleep,
            timeout_sleep
        );
        let mut armed_backoff: Option<Instant> = None;
        let mut armed_timeout: Option<Instant> = None;
        loop {
            // A cheap look first: under a stream of completions the branches
            // below may never be reached, and a stop must not wait for them.
            self.look_for_stop();
            self.fill();
            self.drain_rest();
            if self.is_done() {
                break;
            }
            // A turn that made its share of events (tasks that end at their
            // first poll start and finish within it) sends them before it
            // starts more, so that the consumer's pace holds it back.
            let more = self.outbox.len() >= TURN_EVENTS;
            self.flush();
            let backlogged = self.backlog.is_full();
            if (self.draining() || more) && !backlogged {
                self.turn = None;
                tokio::task::yield_now().await;
                continue;
            }
            let stop_level = self.stop.as_ref().map(StopReason::severity);
            let watch_interrupt = stop_level < Some(2);
            let watch_kill = stop_level < Some(3);
            // A kill always comes with an interrupt (see `RunControl::kill`):
            // until the interrupt, watching it watches both, at the cost of
            // one look instead of two.
            let wait_kill = watch_kill && !watch_interrupt;
            let watch_deadline = deadline.is_some() && stop_level < Some(1);
            let next_backoff = self.backoffs.peek().map(|Reverse((at, ..))| *at);
            if let Some(at) = next_backoff {
                if armed_backoff != Some(at) {
                    backoff_sleep.as_mut().reset(at);
                    armed_backoff = Some(at);
                }
            }
            let next_timeout = self.timeouts.peek().map(|Reverse((at, ..))| *at);
            if let Some(at) = next_timeout {
                if armed_timeout != Some(at) {
                    timeout_sleep.as_mut().reset(at);
                    armed_timeout = Some(at);
                }
            }
            let want_input = self.wants_input();
            let has_workers = self.running > 0;
            let input = &mut self.input;
            let reports = &mut self.reports;
            let backlog = &self.backlog;
            let woke = tokio::select! {
                biased;
                Some(report) = reports.recv(), if has_workers => Woke::Report(report),
                () = &mut killed, if wait_kill => Woke::Stop(self.control.reason()),
                () = &mut interrupted, if watch_interrupt => Woke::Stop(self.control.reason()),
                () = &mut deadline_sleep, if watch_deadline => {
                    let seconds = self.s.deadline.map_or(0.0, |d| d.as_secs_f64());
                    Woke::Stop(StopReason::Deadline { seconds })
                }
                () = &mut timeout_sleep, if next_timeout.is_some() => Woke::Timeouts,
                () = &mut backoff_sleep, if next_backoff.is_some() => Woke::Backoffs,
                item = next_from(input), if want_input => Woke::Input(item),
                () = backlog.drained(), if backlogged => Woke::Drained,
            };
            if matches!(woke, Woke::Report(_)) && self.running > 1 && self.reports_bunch() {
                // Other workers are likely about to report too: let them run
                // first and take all their reports in one turn, rather than
                // one turn per report (a woken task runs next on its thread).
                tokio::task::yield_now().await;
            }
            // Time has passed while waiting: a new turn begins.
            self.turn = None;
            match woke {
                Woke::Report(report) => {
                    // Workers see a kill before this loop does: the reports
                    // it brings must already name it.
                    self.look_for_stop();
                    self.on_report(report);
                    // Take every other completion already waiting before
                    // admitting more work: one turn of the loop, many tasks.
                    self.bunched = false;
                    while let Ok(report) = self.reports.try_recv() {
                        self.on_report(report);
                        self.bunched = true;
                    }
                }
                Woke::Stop(reason) => self.stop(reason),
                Woke::Timeouts => {
                    armed_timeout = None;
                    self.on_timeouts_due();
                }
                Woke::Backoffs => {
                    armed_backoff = None;
                    self.on_backoff_due();
                }
                Woke::Input(item) => self.on_input(item),
                Woke::Drained => {}
            }
        }
        let now = Instant::now();
        let wall = now.duration_since(start);
        let metrics = self.metrics(wall);
        let stopped = self.stop.take();
        self.emit(Event::RunFinished {
            duration_ms: wall.as_millis() as u64,
            stopped,
            metrics,
        });
        self.flush();
    }

    /// Stops or escalates the stop when the caller's control asks for
    /// more than the run is doing.
    fn look_for_stop(&mut self) {
        if self.control.interrupt.is_cancelled() {
            let level = self.stop.as_ref().map(StopReason::severity);
            if level < Some(2) || (level < Some(3) && self.control.kill.is_cancelled()) {
                self.stop(self.control.reason());
            }
        }
    }

    /// Whether reports arrive in bunches: the last turn found several
    /// waiting, or this one came right after the previous turn. Only then
    /// is a yield before taking them worth it: it also wakes another
    /// thread to take over, which costs more than it saves when tasks end
    /// one at a time, as processes and requests do.
    fn reports_bunch(&self) -> bool {
        /// Quicker than any process can start and end.
        const QUICK: Duration = Duration::from_micros(50);
        self.bunched
            || self
                .turn
                .is_none_or(|(at, _)| Instant::now().saturating_duration_since(at) < QUICK)
    }

    fn is_done(&self) -> bool {
        matches!(self.input, Input::Done) && self.entries.is_empty() && self.running == 0
    }

    fn input_open(&self) -> bool {
        !matches!(self.input, Input::Done)
    }

    /// Whether reading another task is useful now: a slot is free, nothing
    /// admissible is ready, and the look-ahead has room (or the run would
    /// otherwise stall).
    fn wants_input(&self) -> bool {
        self.stop.is_none()
            && !self.backlog.is_full()
            && self.input_open()
            && self.running < self.limit
            && (self.waiting < self.lookahead || (self.running == 0 && self.backoffs.is_empty()))
    }

    /// Starts every admissible task, reading input synchronously as far as
    /// it is available.
    fn fill(&mut self) {
        loop {
            while self.stop.is_none()
                && self.running < self.limit
                && self.outbox.len() < TURN_EVENTS
                && !self.backlog.is_full()
            {
                if let Some((seq, key)) = self.pick_ready() {
                    self.start(seq, key);
                    continue;
                }
                if !self.wants_input() {
                    break;
                }
                let item = match &mut self.input {
                    Input::Iter(it) => Some(it.next()),
                    Input::Stream(s) => s.next().now_or_never(),
                    Input::Done => None,
                };
                match item {
                    Some(item) => self.on_input(item),
                    None => break,
                }
            }
            if self.stop.is_none()
                && !self.input_open()
                && self.running == 0
                && self.backoffs.is_empty()
                && !self.entries.is_empty()
            {
                // Everything left is blocked on dependencies that can never
                // finish: unknown ids or cycles.
                self.resolve_stuck();
                continue;
            }
            break;
        }
    }

    fn pick_ready(&self) -> Option<(u64, usize)> {
        self.agents
            .iter()
            .filter(|a| a.running < a.limit)
            .filter_map(|a| a.ready.peek().map(|Reverse(ready)| *ready))
            .min()
    }

    fn on_input(&mut self, item: Option<AgentTask>) {
        match item {
            Some(task) => self.enqueue(task),
            None => self.input = Input::Done,
        }
    }

    fn agent_slot(&mut self, task: &AgentTask) -> usize {
        // Runs of tasks for one agent are the common case: skip the hash.
        if let Some((name, i)) = &self.last_agent {
            if name.same(&task.agent) {
                return *i;
            }
        }
        if let Some(&i) = self.agent_index.get(&task.agent) {
            self.last_agent = Some((task.agent.clone(), i));
            return i;
        }
        let spec = self.registry.get(task.agent.as_str()).cloned();
        let limit = spec
            .as_ref()
            .and_then(|s| s.parallel_limit)
            .unwrap_or(usize::MAX);
        self.agents.push(AgentSlot {
            spec,
            limit,
            running: 0,
            ready: BinaryHeap::new(),
            inline: Inline::new(),
        });
        let i = self.agents.len() - 1;
        self.agent_index.insert(task.agent.clone(), i);
        self.last_agent = Some((task.agent.clone(), i));
        i
    }

    /// Gives a task just read its place in input order, and says so.
    fn queue(&mut self, task: AgentTask) -> (u64, Arc<AgentTask>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let task = Arc::new(task);
        self.emit(Event::TaskQueued {
            seq,
            task: Arc::clone(&task),
        });
        (seq, task)
    }

    fn enqueue(&mut self, task: AgentTask) {
        let (seq, task) = self.queue(task);
        if self.stop.is_some() {
            let reason = stop_text(self.stop.as_ref());
            self.finish_not_started(
                seq,
                task,
                TaskStatus::Cancelled,
                format!("not started: {reason}"),
            );
            return;
        }
        if let Some(previous) = self.resume.as_ref().and_then(|r| r.previous_success(&task)) {
            let result = TaskResult {
                task: Arc::clone(&task),
                status: TaskStatus::Success,
                error: None,
                resumed: true,
                ..previous
            };
            self.publish(seq, None, result);
            self.after_outcome(&task, TaskStatus::Success);
            return;
        }
        let agent = self.agent_slot(&task);
        let Some(spec) = self.agents[agent].spec.as_ref() else {
            let error = format!("no agent named `{}`", task.agent);
            self.finish_not_started(seq, task, TaskStatus::Failed, error);
            return;
        };
        let timeout = match task.timeout.or(spec.timeout) {
            Some(t) if t.is_zero() => None,
            Some(t) => Some(t),
            None => self.s.timeout,
        };
        let retries = task.retries.or(spec.retries).unwrap_or(self.s.retries);

        // A known task set is queued as a whole when the run starts; a
        // streamed task when it is read.
        let mut latest_dep = if self.drain_on_stop {
            self.clock.instant
        } else {
            self.now().0
        };
        let mut deps_left = 0;
        let key = self.entries.next_key();
        if self.respect_deps {
            let mut seen: Vec<&TaskId> = Vec::with_capacity(task.depends_on.len());
            for dep in &task.depends_on {
                if seen.contains(&dep) {
                    continue;
                }
                seen.push(dep);
                match self.finished.get(dep) {
                    Some(Some(at)) => latest_dep = latest_dep.max(*at),
                    Some(None) => {
                        let error = format!("skipped: dependency `{dep}` did not succeed");
                        let id = task.id.clone();
                        self.finish_not_started(seq, task, TaskStatus::Skipped, error);
                        self.finished.insert(id.clone(), None);
                        self.skip_dependents(id);
                        return;
                    }
                    None => {
                        deps_left += 1;
                        self.waiters
                            .entry(dep.clone())
                            .or_default()
                            .push((seq, key));
                    }
                }
            }
            self.live.insert(task.id.clone(), (seq, key));
        } else if !task.depends_on.is_empty() && !self.warned_deps {
            self.warned_deps = true;
            self.emit(Event::DependenciesIgnored);
        }

        let ready = deps_left == 0;
        let inserted = self.entries.insert(Entry {
            seq,
            task,
            agent,
            state: if ready { State::Ready } else { State::Blocked },
            deps_left,
            attempts: 0,
            ready_since: ready.then_some(latest_dep),
            first_start: None,
            last: None,
            run: None,
            retries,
            timeout,
        });
        debug_assert_eq!(inserted, key);
        self.waiting += 1;
        if ready {
            self.agents[agent].ready.push(Reverse((seq, key)));
        }
    }

    fn start(&mut self, seq: u64, key: usize) {
        let (now, wall) = self.now();
        let entry = self
            .entries
            .get_mut(key, seq)
            .expect("ready tasks have entries");
        let agent = &mut self.agents[entry.agent];
        let popped = agent.ready.pop();
        debug_assert_eq!(popped, Some(Reverse((seq, key))));
        agent.running += 1;
        let spec_agent: Arc<dyn Agent> = Arc::clone(
            &agent
                .spec
                .as_ref()
                .expect("only known agents' tasks become ready")
                .agent,
        );
        self.running += 1;
        self.waiting -= 1;
        self.peak = self.peak.max(self.running);
        let slot = match self.free_slots.pop() {
            Some(Reverse(slot)) => slot,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        entry.attempts += 1;
        entry.state = State::Running;
        let waited = entry
            .ready_since
            .map_or(Duration::ZERO, |r| now.saturating_duration_since(r));
        if entry.first_start.is_none() {
            entry.first_start = Some((now, wall));
            self.wait_ms.record(millis(waited));
        }
        let attempt = entry.attempts;
        let agent_index = entry.agent;
        // Timeouts are kept here, not in each worker: one timer for the run
        // instead of one per task, and smaller worker futures.
        if let Some(due) = entry.timeout.and_then(|t| now.checked_add(t)) {
            self.timeouts.push(Reverse((due, seq, attempt, slot)));
        }
        let task = Arc::clone(&entry.task);
        let live = self.s.stream_output.then(|| LiveSink {
            seq,
            id: task.id.clone(),
            events: self.events.clone(),
            budget: Arc::clone(&self.live_budget),
            backlog: Arc::clone(&self.backlog),
        });
        let shared = Arc::new(AttemptShared::new(Capture::new(
            self.s.output_limit_bytes,
            live,
        )));
        entry.run = Some(InFlight {
            slot,
            started: now,
            timed_out: false,
        });
        self.emit(Event::TaskStarted {
            seq,
            id: task.id.clone(),
            attempt,
            slot,
            waited,
            at: wall,
        });
        let ctx = TaskContext {
            task,
            attempt,
            seq,
            slot,
            grace: self.s.kill_grace,
            shared: Arc::clone(&shared),
        };
        if self.s.stream_output {
            // The worker sends its output straight to the channel: what the
            // dispatcher said about the task so far must be there first.
            self.flush();
        }
        let phase = if self.agents[agent_index].inline.on {
            // An agent that finishes at its first poll (a cache hit, a
            // quick check) costs a spawn, two thread hand-overs and a
            // channel message for nothing: the dispatcher polls it once
            // itself (see `Inline`).
            let began = self.agents[agent_index]
                .inline
                .times_next()
                .then(std::time::Instant::now);
            let phase = first_poll(spec_agent, ctx, &shared);
            let ended = matches!(phase, FirstPoll::Ended(_));
            self.agents[agent_index]
                .inline
                .record(ended, began.map(|b| b.elapsed()));
            match phase {
                FirstPoll::Ended(ended) => {
                    self.slots[slot] = Some(SlotUse {
                        seq,
                        key,
                        attempt,
                        shared,
                        worker: None,
                    });
                    self.on_report(Report {
                        key,
                        ended: Some(ended),
                    });
                    return;
                }
                FirstPoll::Pending(fut) => Phase::First(fut, Arc::clone(&shared)),
            }
        } else {
            Phase::Start(spec_agent, ctx)
        };
        let worker = tokio::spawn(Worker {
            key,
            env: Arc::clone(&self.worker_env),
            phase,
            reported: false,
        });
        self.slots[slot] = Some(SlotUse {
            seq,
            key,
            attempt,
            shared,
            worker: Some(worker),
        });
    }

    fn on_report(&mut self, report: Report) {
        let Report { key, ended } = report;
        let ended = ended.expect("workers catch their agents' panics");
        let (now, wall) = self.now();
        let entry = self
            .entries
            .slot_mut(key)
            .expect("running tasks have entries");
        let seq = entry.seq;
        let run = entry
            .run
            .take()
            .expect("a running task has an attempt in flight");
        let slot = run.slot;
        self.running -= 1;
        self.busy += now.saturating_duration_since(run.started);
        let used = self.slots[slot]
            .take()
            .expect("a running task holds its slot");
        self.free_slots.push(Reverse(slot));
        if self.timeouts.len() > 2 * self.running + 64 {
            // Deadlines of ended attempts would otherwise pile up for as long
            // as the timeout: keep memory proportional to what is running.
            let slots = &self.slots;
            self.timeouts.retain(|Reverse((_, s, a, slot))| {
                slots[*slot]
                    .as_ref()
                    .is_some_and(|u| u.seq == *s && u.attempt == *a)
            });
        }
        self.agents[entry.agent].running -= 1;
        let ended = match ended {
            Ended::Cancelled(late) if run.timed_out => Ended::TimedOut(late),
            other => other,
        };
        let mut attempt = classify(
            ended,
            &used.shared.capture,
            entry.timeout,
            slot,
            self.stop.as_ref(),
        );

        let retries_left = attempt.status.is_failure() && entry.attempts <= entry.retries;
        let retry = retries_left && self.stop.is_none();
        if retries_left && !retry {
            // It ran on to its own end after the stop (fail_fast: false):
            // say why it was not retried, as for a task in its backoff.
            let error = attempt.error.take().unwrap_or_default();
            let why = stop_text(self.stop.as_ref());
            attempt.error = Some(format!("{error} (retry abandoned: {why})"));
        }
        // Earlier attempts' notes (their output files, escaped processes)
        // stay in the result, each saying which attempt it is about.
        if retry {
            let n = entry.attempts;
            for note in &mut attempt.notes {
                *note = format!("attempt {n}: {note}");
            }
        }
        if let Some(previous) = entry.last.take() {
            if !previous.notes.is_empty() {
                let own = std::mem::replace(&mut attempt.notes, previous.notes);
                attempt.notes.extend(own);
            }
        }
        if retry {
            let delay = self
                .s
                .retry_backoff
                .saturating_mul(1u32 << (entry.attempts - 1).min(31));
            self.outbox.push_back(Event::TaskRetrying {
                seq,
                id: entry.task.id.clone(),
                attempt: entry.attempts,
                error: attempt.error.clone().unwrap_or_default(),
                slot,
                delay,
                at: wall,
            });
            entry.state = State::Backoff;
            entry.last = Some(Box::new(attempt));
            self.waiting += 1;
            let due = now
                .checked_add(delay)
                .unwrap_or(now + Duration::from_secs(86_400 * 365));
            self.backoffs.push(Reverse((due, seq, key)));
        } else {
            let entry = self.entries.remove(key, seq).expect("checked above");
            self.finish_started(entry, attempt);
        }
    }

    /// Tells every attempt past its deadline to stop; the worker's report
    /// then counts as a timeout.
    fn on_timeouts_due(&mut self) {
        let (now, _) = self.now();
        while let Some(&Reverse((at, seq, attempt, slot))) = self.timeouts.peek() {
            if at > now {
                break;
            }
            self.timeouts.pop();
            let Some(running) = self.slots[slot]
                .as_ref()
                .filter(|u| u.seq == seq && u.attempt == attempt)
            else {
                continue;
            };
            // A task whose outcome is settled has ended (it only winds
            // down); one already told to stop keeps the stop as its reason.
            if !running.shared.time_out() {
                continue;
            }
            let key = running.key;
            if let Some(run) = self.entries.get_mut(key, seq).and_then(|e| e.run.as_mut()) {
                run.timed_out = true;
            }
        }
    }

    fn on_backoff_due(&mut self) {
        let (now, _) = self.now();
        while let Some(&Reverse((at, seq, key))) = self.backoffs.peek() {
            if at > now {
                break;
            }
            self.backoffs.pop();
            if let Some(entry) = self.entries.get_mut(key, seq) {
                if matches!(entry.state, State::Backoff) {
                    entry.state = State::Ready;
                    entry.ready_since = Some(now);
                    self.agents[entry.agent].ready.push(Reverse((seq, key)));
                }
            }
        }
    }

    /// Records the final outcome of a task that started, then applies the
    /// failure policy: dependents first, then the stop trigger.
    fn finish_started(&mut self, entry: Entry, attempt: Attempt) {
        let (now, wall) = self.now();
        let seq = entry.seq;
        let (first, first_wall) = entry.first_start.unwrap_or((now, wall));
        let duration = now.saturating_duration_since(first);
        self.task_ms.record(millis(duration));
        self.retry_count += u64::from(entry.attempts.saturating_sub(1));
        let status = attempt.status;
        let result = TaskResult {
            task: Arc::clone(&entry.task),
            status,
            duration_ms: duration.as_millis() as u64,
            output: attempt.output,
            stderr: attempt.stderr,
            error: attempt.error,
            exit_code: attempt.exit_code,
            attempts: entry.attempts,
            started_at: Some(first_wall),
            finished_at: Some(wall),
            notes: attempt.notes,
            resumed: false,
        };
        self.publish(seq, Some(attempt.slot), result);
        self.after_outcome(&entry.task, status);
    }

    fn finish_not_started(
        &mut self,
        seq: u64,
        task: Arc<AgentTask>,
        status: TaskStatus,
        error: String,
    ) {
        let result = TaskResult::not_started(Arc::clone(&task), status, error);
        self.publish(seq, None, result);
        if status == TaskStatus::Failed {
            self.after_outcome(&task, status);
        }
    }

    fn publish(&mut self, seq: u64, slot: Option<usize>, result: TaskResult) {
        self.counts[status_index(result.status)] += 1;
        self.emit(Event::TaskFinished {
            seq,
            slot,
            result: Box::new(result),
        });
    }

    fn after_outcome(&mut self, task: &AgentTask, status: TaskStatus) {
        if self.respect_deps {
            self.live.remove(&task.id);
            let ok = status == TaskStatus::Success;
            let at = ok.then(|| self.now().0);
            self.finished.insert(task.id.clone(), at);
            if ok {
                self.release_dependents(&task.id);
            } else {
                self.skip_dependents(task.id.clone());
            }
        }
        if status.is_failure() {
            self.failures += 1;
            if !self.s.continue_on_error
                && self.failures >= self.s.max_failures
                && self.stop.is_none()
            {
                let how = if status == TaskStatus::Timeout {
                    "timed out"
                } else {
                    "failed"
                };
                let (task, how) = (task.id.clone(), how.to_owned());
                self.stop(match (self.s.max_failures, self.s.fail_fast) {
                    (1, true) => StopReason::FailFast { task, how },
                    (1, false) => StopReason::StoppedStarting { task, how },
                    (count, _) => StopReason::MaxFailures { count, task, how },
                });
            }
        }
    }

    fn release_dependents(&mut self, id: &TaskId) {
        let Some(waiting) = self.waiters.remove(id) else {
            return;
        };
        let (now, _) = self.now();
        for (seq, key) in waiting {
            if let Some(entry) = self.entries.get_mut(key, seq) {
                entry.deps_left -= 1;
                if entry.deps_left == 0 && matches!(entry.state, State::Blocked) {
                    entry.state = State::Ready;
                    entry.ready_since = Some(now);
                    self.agents[entry.agent].ready.push(Reverse((seq, key)));
                }
            }
        }
    }

    /// Skips, transitively, every task blocked on `root`, which did not
    /// succeed. Each names the dependency it was waiting for.
    fn skip_dependents(&mut self, root: TaskId) {
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            let Some(waiting) = self.waiters.remove(&id) else {
                continue;
            };
            for (seq, key) in waiting {
                let blocked = self
                    .entries
                    .get(key, seq)
                    .is_some_and(|e| matches!(e.state, State::Blocked));
                if !blocked {
                    continue;
                }
                let entry = self.entries.remove(key, seq).expect("checked above");
                self.waiting -= 1;
                let dep_id = entry.task.id.clone();
                self.live.remove(&dep_id);
                self.finished.insert(dep_id.clone(), None);
                let error = format!("skipped: dependency `{id}` did not succeed");
                self.finish_not_started(seq, entry.task, TaskStatus::Skipped, error);
                stack.push(dep_id);
            }
        }
    }

    /// Settles tasks that can never become ready: those naming an unknown
    /// dependency, then those on a cycle. Their dependents are skipped.
    fn resolve_stuck(&mut self) {
        let seqs = self.entries.in_order(|_| true);
        let mut settled = false;
        for &(seq, key) in &seqs {
            let Some(entry) = self.entries.get(key, seq) else {
                continue;
            };
            let unknown = entry
                .task
                .depends_on
                .iter()
                .find(|d| !self.finished.contains_key(*d) && !self.live.contains_key(*d))
                .cloned();
            if let Some(dep) = unknown {
                self.settle_blocked((seq, key), format!("skipped: unknown dependency `{dep}`"));
                settled = true;
            }
        }
        if settled {
            return;
        }
        // Follow unfinished dependencies from the earliest blocked task until
        // one repeats: that is a cycle.
        let Some(&start) = seqs.first() else { return };
        let mut path: Vec<(u64, usize)> = vec![start];
        loop {
            let &(seq, key) = path.last().expect("non-empty");
            let current = self.entries.get(key, seq).expect("live");
            let next = current
                .task
                .depends_on
                .iter()
                .find_map(|d| match self.finished.get(d) {
                    Some(_) => None,
                    None => self.live.get(d).copied(),
                })
                .expect("a blocked task has an unfinished dependency");
            if let Some(pos) = path.iter().position(|&s| s == next) {
                let cycle = &path[pos..];
                let names: Vec<String> = cycle
                    .iter()
                    .chain(std::iter::once(&cycle[0]))
                    .map(|&(seq, key)| {
                        self.entries
                            .get(key, seq)
                            .expect("live")
                            .task
                            .id
                            .to_string()
                    })
                    .collect();
                let text = format!("skipped: dependency cycle {}", names.join(" → "));
                for &at in cycle {
                    self.settle_blocked(at, text.clone());
                }
                return;
            }
            path.push(next);
        }
    }

    fn settle_blocked(&mut self, (seq, key): (u64, usize), error: String) {
        let Some(entry) = self.entries.remove(key, seq) else {
            return;
        };
        self.waiting -= 1;
        let id = entry.task.id.clone();
        self.live.remove(&id);
        self.finished.insert(id.clone(), None);
        self.finish_not_started(seq, entry.task, TaskStatus::Skipped, error);
        self.skip_dependents(id);
    }

    /// Fires or escalates a stop: no more starts; tasks not started are
    /// cancelled; backoffs are abandoned; in-flight tasks are cancelled or
    /// drained as the reason and `fail_fast` say.
    fn stop(&mut self, reason: StopReason) {
        if let Some(current) = &self.stop {
            if !reason.outranks(current) {
                return;
            }
        }
        let first = self.stop.is_none();
        let cancel_in_flight = reason.cancels_in_flight(self.s.fail_fast);
        self.stop = Some(reason.clone());
        self.emit(Event::RunStopping {
            reason: reason.clone(),
        });
        if cancel_in_flight {
            for running in self.slots.iter().flatten() {
                running.shared.cancel();
            }
        }
        if !first {
            return;
        }
        let text = reason.to_string();
        let pending = self
            .entries
            .in_order(|e| !matches!(e.state, State::Running));
        for (seq, key) in pending {
            // Settling one task (an abandoned retry) may skip others listed here.
            let Some(mut entry) = self.entries.remove(key, seq) else {
                continue;
            };
            self.waiting -= 1;
            // A task between attempts (in backoff, or ready for its retry)
            // ends with its last attempt's outcome.
            match entry.last.take() {
                Some(mut last) => {
                    let error = last.error.take().unwrap_or_default();
                    last.error = Some(format!("{error} (retry abandoned: {text})"));
                    self.finish_started(entry, *last);
                }
                None => {
                    if self.respect_deps {
                        self.live.remove(&entry.task.id);
                    }
                    let error = format!("not started: {text}");
                    self.finish_not_started(seq, entry.task, TaskStatus::Cancelled, error);
                }
            }
        }
        for agent in &mut self.agents {
            agent.ready.clear();
        }
        self.backoffs.clear();
        self.waiters.clear();
        if self.drain_on_stop && matches!(self.input, Input::Iter(_)) {
            self.drain_text = text;
        } else {
            self.input = Input::Done;
        }
    }

    /// Whether a stop left a known task set unread: the rest is reported
    /// `cancelled` as the consumer takes the events (a stream is not read
    /// after a stop, so its input is done then).
    fn draining(&self) -> bool {
        self.stop.is_some() && matches!(self.input, Input::Iter(_))
    }

    /// After a stop, reports the rest of a known task set as never started,
    /// a bunch at a time and only as fast as the consumer takes the events:
    /// a million tasks not read yet must not become a million events at once.
    fn drain_rest(&mut self) {
        /// About one batch's worth of events a turn.
        const BUNCH: usize = 1024;
        if !self.draining() || self.backlog.is_full() {
            return;
        }
        let Input::Iter(rest) = &mut self.input else {
            return;
        };
        let mut taken = Vec::with_capacity(BUNCH);
        taken.extend(rest.by_ref().take(BUNCH));
        if taken.len() < BUNCH {
            self.input = Input::Done;
        }
        for task in taken {
            let (seq, task) = self.queue(task);
            // Unread dependents of a non-success are skipped, as they
            // would have been had they been read before the stop.
            let failed_dep = if self.respect_deps {
                task.depends_on
                    .iter()
                    .find(|d| matches!(self.finished.get(*d), Some(None)))
                    .cloned()
            } else {
                None
            };
            if let Some(dep) = failed_dep {
                self.finished.insert(task.id.clone(), None);
                let error = format!("skipped: dependency `{dep}` did not succeed");
                self.finish_not_started(seq, task, TaskStatus::Skipped, error);
            } else {
                let error = format!("not started: {}", self.drain_text);
                self.finish_not_started(seq, task, TaskStatus::Cancelled, error);
            }
        }
    }

    fn metrics(&self, wall: Duration) -> Metrics {
        let mut m = Metrics::default();
        let [succeeded, failed, timeout, cancelled, skipped] = self.counts;
        for (name, value) in [
            ("tasks_total", self.counts.iter().sum()),
            ("tasks_succeeded", succeeded),
            ("tasks_failed", failed),
            ("tasks_timeout", timeout),
            ("tasks_cancelled", cancelled),
            ("tasks_skipped", skipped),
            ("task_retry_count", self.retry_count),
        ] {
            m.counters.insert(name.to_owned(), value);
        }
        let utilization = if wall.is_zero() {
            0.0
        } else {
            (self.busy.as_secs_f64() / (self.limit as f64 * wall.as_secs_f64())).clamp(0.0, 1.0)
        };
        m.gauges
            .insert("parallel_limit".to_owned(), self.limit as f64);
        m.gauges
            .insert("parallel_peak".to_owned(), self.peak as f64);
        m.gauges.insert(
            "parallel_utilization".to_owned(),
            (utilization * 1000.0).round() / 1000.0,
        );
        let mut run = Timer::default();
        run.record(millis(wall));
        m.timers
            .insert("execution_duration_ms".to_owned(), run.summary());
        m.timers
            .insert("task_duration_ms".to_owned(), self.task_ms.summary());
        m.timers
            .insert("semaphore_wait_ms".to_owned(), self.wait_ms.summary());
        m
    }
}

fn status_index(status: TaskStatus) -> usize {
    match status {
        TaskStatus::Success => 0,
        TaskStatus::Failed => 1,
        TaskStatus::Timeout => 2,
        TaskStatus::Cancelled => 3,
        TaskStatus::Skipped => 4,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn next_from(input: &mut Input) -> Option<AgentTask> {
    match input {
        Input::Iter(it) => it.next(),
        Input::Stream(s) => s.next().await,
        Input::Done => std::future::pending().await,
    }
}

type AgentFuture = CatchUnwind<AssertUnwindSafe<BoxFuture<'static, AgentResult>>>;

/// What every worker of a run needs besides its attempt.
struct WorkerEnv {
    grace: Duration,
    kill: CancellationToken,
    reports: UnboundedSender<Report>,
}

/// Runs one attempt: the agent until it returns, its timeout passes or its
/// token is cancelled; then, if stopped, up to `grace` more before the
/// future is dropped (at once if the run is killed).
///
/// Written out rather than `async` to keep it small: tokio moves a worker
/// and its report in and out of the task's allocation, and a size past a
/// power of two takes the allocator's slow path for aligned blocks.
struct Worker {
    key: usize,
    env: Arc<WorkerEnv>,
    phase: Phase,
    reported: bool,
}

enum Phase {
    /// Not polled yet (the agent's inline first polls were turned off):
    /// the agent is called here, so whatever it does before returning its
    /// future runs on a worker.
    Start(Arc<dyn Agent>, TaskContext),
    /// Many agents finish at their first poll: no cancellation watch yet.
    First(AgentFuture, Arc<AttemptShared>),
    /// The agent is waiting: the full watch, boxed as it is larger.
    Waiting(BoxFuture<'static, Ended>),
    Done,
}

impl Worker {
    fn report(&mut self, ended: Ended) -> Poll<()> {
        self.reported = true;
        // A closed channel means the run is gone; nobody needs the report.
        let _ = self.env.reports.send(Report {
            key: self.key,
            ended: Some(ended),
        });
        Poll::Ready(())
    }
}

impl Future for Worker {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match std::mem::replace(&mut this.phase, Phase::Done) {
                Phase::Start(agent, ctx) => {
                    let shared = Arc::clone(&ctx.shared);
                    // A closure agent may panic in its body, before it
                    // returns its future: that is the agent's panic too.
                    let made = std::panic::catch_unwind(AssertUnwindSafe(|| agent.run(ctx)));
                    match made {
                        Ok(fut) => {
                            let fut = AssertUnwindSafe(fut).catch_unwind();
                            this.phase = Phase::First(fut, shared);
                        }
                        Err(panic) => return this.report(returned(Err(panic), &shared)),
                    }
                }
                Phase::First(mut fut, shared) => match fut.poll_unpin(cx) {
                    Poll::Ready(r) => return this.report(returned(r, &shared)),
                    Poll::Pending => {
                        let env = Arc::clone(&this.env);
                        this.phase = Phase::Waiting(Box::pin(wait(fut, shared, env)));
                    }
                },
                Phase::Waiting(mut wait) => {
                    let Poll::Ready(ended) = wait.poll_unpin(cx) else {
                        this.phase = Phase::Waiting(wait);
                        return Poll::Pending;
                    };
                    return this.report(ended);
                }
                Phase::Done => panic!("a worker is not polled after it reported"),
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if !self.reported {
            // Dropped while running: the run was dropped (then nobody
            // listens), or the worker panicked, which the dispatcher must
            // hear of rather than wait for a report forever.
            let _ = self.env.reports.send(Report {
                key: self.key,
                ended: None,
            });
        }
    }
}

/// About how many events one turn of the loop makes before it sends them.
const TURN_EVENTS: usize = 1024;

/// What the dispatcher's own first poll of an attempt gave.
enum FirstPoll {
    Ended(Ended),
    /// Not done: a worker polls it from here on, with its own waker.
    Pending(AgentFuture),
}

/// Calls the agent and polls its future once, with a waker that does
/// nothing: a future that is not ready is polled again by its worker
/// straight away, and sees then whatever woke it meanwhile.
fn first_poll(agent: Arc<dyn Agent>, ctx: TaskContext, shared: &AttemptShared) -> FirstPoll {
    let made = std::panic::catch_unwind(AssertUnwindSafe(|| agent.run(ctx)));
    let fut = match made {
        Ok(fut) => fut,
        Err(panic) => return FirstPoll::Ended(returned(Err(panic), shared)),
    };
    let mut fut = AssertUnwindSafe(fut).catch_unwind();
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match fut.poll_unpin(&mut cx) {
        Poll::Ready(r) => {
            // A panicking drop must not take the dispatcher down.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(move || drop(fut)));
            FirstPoll::Ended(returned(r, shared))
        }
        Poll::Pending => FirstPoll::Pending(fut),
    }
}

/// How an agent that returned ended.
fn returned(r: std::thread::Result<AgentResult>, attempt: &AttemptShared) -> Ended {
    // A settled outcome stands, and so does one that came before the
    // engine's stop or timeout. One that came after is the stop's, whatever
    // it says: an agent that finished anyway was still stopped. An agent
    // that cancelled its own token and gave up was stopped too.
    let settled = attempt.is_settled();
    let first = attempt.end();
    let gave_up = !settled && !matches!(r, Ok(Ok(_))) && attempt.is_cancelled();
    if first && !gave_up {
        Ended::Returned(r)
    } else {
        Ended::Cancelled(Some(r))
    }
}

/// The rest of an attempt whose agent did not finish at its first poll.
async fn wait(mut fut: AgentFuture, shared: Arc<AttemptShared>, env: Arc<WorkerEnv>) -> Ended {
    let cancelled = shared.token().cancelled();
    tokio::pin!(cancelled);
    // The agent was just polled, with this same waker: the first look goes
    // to the token only.
    let mut polled = true;
    let r = std::future::poll_fn(|cx| {
        if !std::mem::take(&mut polled) {
            if let Poll::Ready(r) = fut.poll_unpin(cx) {
                return Poll::Ready(Some(r));
            }
        }
        cancelled.as_mut().poll(cx).map(|()| None)
    })
    .await;
    if let Some(r) = r {
        return returned(r, &shared);
    }
    let grace = tokio::time::sleep(env.grace);
    tokio::pin!(grace);
    let mut grace_over = false;
    let late = loop {
        tokio::select! {
            biased;
            r = &mut fut => break Some(r),
            () = &mut grace, if !grace_over => {
                // A settled attempt only tidies up, as long as its agent
                // needs (a command agent: the drain and sweep limits); its
                // result must not be lost to the grace.
                if !shared.is_settled() {
                    break None;
                }
                grace_over = true;
            }
            () = env.kill.cancelled() => break None,
        }
    };
    // A panicking drop must not take the dispatcher down.
    let _ = std::panic::catch_unwind(AssertUnwindSafe(move || drop(fut)));
    match late {
        // Told to stop while winding down: the outcome was already decided.
        Some(r) if shared.is_settled() => Ended::Returned(r),
        late => Ended::Cancelled(late),
    }
}

/// Why the run stopped, as errors quote it.
fn stop_text(stop: Option<&StopReason>) -> String {
    stop.map_or_else(|| "stopped".to_owned(), ToString::to_string)
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}

fn classify(
    ended: Ended,
    capture: &Capture,
    timeout: Option<Duration>,
    slot: usize,
    stop: Option<&StopReason>,
) -> Attempt {
    let (status, returned, base) = match ended {
        Ended::Returned(r) => {
            let status = match &r {
                Ok(Ok(_)) => TaskStatus::Success,
                _ => TaskStatus::Failed,
            };
            (status, Some(r), None)
        }
        Ended::TimedOut(late) => {
            let limit = timeout.map_or_else(|| "its limit".to_owned(), format_secs);
            (
                TaskStatus::Timeout,
                late,
                Some(format!("timed out after {limit}")),
            )
        }
        Ended::Cancelled(late) => {
            let why = stop_text(stop);
            (
                TaskStatus::Cancelled,
                late,
                Some(format!("cancelled: {why}")),
            )
        }
    };
    let mut panicked = None;
    let (mut out, agent_error) = match returned {
        Some(Ok(Ok(out))) => (out, None),
        Some(Ok(Err(e))) => (e.output, Some(e.message)),
        Some(Err(panic)) => {
            let message = format!("agent panicked: {}", panic_message(&*panic));
            panicked = Some(message.clone());
            (crate::agent::AgentOutput::default(), Some(message))
        }
        None => (crate::agent::AgentOutput::default(), None),
    };
    // A timeout or a stop is the reason, worded as PRODUCT.md pins it; how
    // the agent then wound down (`killed by SIGTERM`) is its consequence,
    // and a command's exit code stays in the result. A panic while winding
    // down is no consequence of the stop: it stays, as a note.
    if let (Some(_), Some(panic)) = (&base, panicked) {
        out.notes.push(panic);
    }
    let error = base.or(agent_error);
    let (output, stderr) = capture.finish(&out.stdout, &out.stderr);
    Attempt {
        status,
        error,
        exit_code: out.exit_code,
        output,
        stderr,
        notes: out.notes,
        slot,
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        // A run that is dropped drops its agents too.
        for running in self.slots.iter().flatten() {
            if let Some(worker) = &running.worker {
                worker.abort();
            }
        }
    }
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("running", &self.running)
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn inline_first_polls_stop_for_an_agent_that_waits_or_blocks() {
        use super::Inline;
        use std::time::Duration;
        let quick = Some(Duration::from_micros(1));
        let slow = Some(Duration::from_micros(100));
        let mut waits = Inline::new();
        waits.record(false, quick);
        assert!(!waits.on, "an attempt that waited goes to a worker");
        let mut blocks = Inline::new();
        blocks.record(true, Some(Duration::from_millis(5)));
        assert!(!blocks.on, "one blocking poll is enough");
        let mut now_and_then = Inline::new();
        for i in 0..10_000u32 {
            let took = if i % 200 == 0 { slow } else { quick };
            now_and_then.record(true, took);
        }
        assert!(now_and_then.on, "a slow poll now and then is noise");
        let mut often = Inline::new();
        for _ in 0..Inline::SLOW_PER_WINDOW {
            assert!(often.on);
            often.record(true, slow);
        }
        assert!(!often.on, "an agent that is always slow goes to workers");
        let mut untimed = Inline::new();
        for _ in 0..10_000 {
            untimed.record(true, None);
        }
        assert!(untimed.on);
    }

    #[test]
    fn a_worker_stays_small() {
        // tokio keeps it in the task's allocation, which then stays within
        // a power of two (see `Worker`).
        assert!(std::mem::size_of::<super::Worker>() <= 128);
    }
}
