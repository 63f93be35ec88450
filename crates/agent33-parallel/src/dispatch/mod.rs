//! The dispatcher: the one owner of a run's state.
//!
//! A single loop `select!`s over worker completions, backoff timers, the run
//! deadline, the caller's interrupt, changes of shared limits and the input.
//! Workers run one attempt each and report by value over a channel; they
//! share nothing with it but the attempt's capture buffer and cancellation.
//! The state is split into owned parts, and each decision has one home:
//!
//! - admit: [`ready::Admission::admit`] (the earliest ready task in input
//!   order whose agent has room under its limits and gate, under the global
//!   limit);
//! - settle an attempt: [`attempt::classify`], then `on_report` (retry,
//!   run a lost execution again without using a retry, or finish), or
//!   `defer` for an attempt refused before doing any work;
//! - settle a task without running it: `finish_unstarted`;
//! - skip dependents: `skip_dependents`, from `after_outcome`;
//! - stop: `stop`, triggered by `after_outcome` (failures), the deadline
//!   and the caller's control; what waits to start ends in `abandon`.
//!
//! The parts: [`input`] (reading tasks), [`entries`] (tasks read and not
//! finished), [`ready`] (ready queues and limits), [`deps`] (the dependency
//! books), [`workers`] (slots, attempts, deadlines), [`attempt`] (an
//! attempt's outcome), [`outbox`] (events out), [`stats`] (metrics).

mod attempt;
mod deps;
mod entries;
mod input;
mod outbox;
mod ready;
mod stats;
mod workers;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use crate::agent::{Agent, Agents, AttemptShared, TaskContext};
use crate::capture::{Capture, LiveBudget};
use crate::control::{Resume, RunControl};
use crate::event::{Backlog, Batch, Event, SpentBatches};
use crate::result::{Reason, TaskResult, TaskStatus, Timestamp, add_optional};
use crate::settings::Settings;
use crate::stop::StopReason;
use crate::task::{AgentTask, TaskId};
use attempt::{Attempt, Ended, classify, stop_text};
use deps::{Deps, Registered, Waiters, dependency_failed};
use entries::{Entries, Entry, InFlight, State};
pub(crate) use input::Input;
use outbox::Outbox;
use ready::Admission;
use stats::Stats;
use workers::{Report, Workers};

/// Deferrals after which a task fails (`rate limited 20 times`).
const MAX_DEFERRALS: u32 = 20;

/// What woke the dispatcher.
enum Woke {
    Report(Report),
    Stop(StopReason),
    Timeouts,
    Backoffs,
    Input(Option<AgentTask>),
    /// A gate changed or its pause ended.
    Gates,
    /// The consumer caught up with the events.
    Drained,
}

/// Executions of a task lost in a row before the next loss is a failure
/// (`worker lost 3 times`) rather than a free re-run.
const MAX_LOST: u32 = 3;

/// Why a task ends without running.
enum Unstarted {
    /// The run stopped first (the stop's text).
    Stopped(String),
    /// This dependency did not succeed.
    DependencyFailed(TaskId),
    /// Its dependencies can never finish (the error says why).
    Stuck(String),
    /// Its agent is not registered.
    NoAgent,
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

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

pub(crate) struct Dispatcher {
    s: Settings,
    admission: Admission,
    deps: Deps,
    entries: Entries,
    input: Input,
    /// Whether the input is a known set, queued as a whole when the run
    /// starts and drained as `cancelled` at a stop.
    known_set: bool,
    /// How far a stream is read ahead of the slots.
    lookahead: usize,
    /// Tasks read and not running: ready, blocked or between attempts.
    waiting: usize,
    next_seq: u64,
    workers: Workers,
    /// Tasks waiting out a retry backoff: (due, seq, key).
    backoffs: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    stop: Option<StopReason>,
    failures: u32,
    control: RunControl,
    resume: Option<Arc<dyn Resume>>,
    out: Outbox,
    /// Why the tasks a stop left unread (see `draining`) are not started: the first stop's reason, as for the
    /// tasks that were read before it.
    drain_text: String,
    /// Tasks whose dependents are to be skipped, while `skip_dependents`
    /// works through them (`None` when it is not running).
    to_skip: Option<Vec<(TaskId, Waiters)>>,
    clock: Clock,
    /// The time of the current turn of the loop, read once when first
    /// needed: a turn does no waiting, so whatever it does happens then.
    turn: Option<(Instant, Timestamp)>,
    /// The run's only running task just went to a worker: the loop lets
    /// the runtime run it (and poll its I/O) before it starts more.
    hand_over: bool,
    stats: Stats,
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
        let known_set = input.is_known_set();
        let lookahead = if known_set { usize::MAX } else { s.lookahead };
        Self {
            admission: Admission::new(s.effective_limit(), registry),
            deps: Deps::new(s.respects_dependencies()),
            entries: Entries::default(),
            input,
            known_set,
            lookahead,
            waiting: 0,
            next_seq: 0,
            workers: Workers::new(s.kill_grace, control.kill.clone()),
            backoffs: BinaryHeap::new(),
            stop: None,
            failures: 0,
            control,
            resume,
            out: Outbox::new(events, spent, backlog, live_budget),
            drain_text: String::new(),
            to_skip: None,
            clock: Clock {
                instant: Instant::now(),
                wall: SystemTime::now(),
            },
            turn: None,
            hand_over: false,
            stats: Stats::default(),
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
        self.out.emit(event);
    }

    pub(crate) async fn run(mut self) {
        let start = self.clock.instant;
        self.emit(Event::RunStarted {
            total: self.input.size_hint(),
            parallel_limit: self.admission.limit(),
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
        let resume_sleep = tokio::time::sleep_until(start);
        tokio::pin!(
            interrupted,
            killed,
            deadline_sleep,
            backoff_sleep,
            timeout_sleep,
            resume_sleep
        );
        let mut armed_backoff: Option<Instant> = None;
        let mut armed_timeout: Option<Instant> = None;
        let mut armed_resume: Option<Instant> = None;
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
            let more = self.out.turn_is_full() || std::mem::take(&mut self.hand_over);
            self.out.flush();
            let backlogged = self.out.backlogged();
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
            let next_timeout = self.workers.next_deadline();
            if let Some(at) = next_timeout {
                if armed_timeout != Some(at) {
                    timeout_sleep.as_mut().reset(at);
                    armed_timeout = Some(at);
                }
            }
            // Ready tasks held by a gate: its change, or the end of its
            // pause, may admit them.
            let gated = self.stop.is_none() && self.admission.gated();
            let next_resume = if gated {
                let now = self.now().0;
                self.admission.next_resume(now)
            } else {
                None
            };
            if let Some(at) = next_resume {
                if armed_resume != Some(at) {
                    resume_sleep.as_mut().reset(at);
                    armed_resume = Some(at);
                }
            }
            let want_input = self.wants_input();
            let has_workers = self.admission.running() > 0;
            let input = &mut self.input;
            let reports = &mut self.workers.reports;
            let backlog = &self.out.backlog;
            let admission = &self.admission;
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
                () = admission.changed(), if gated => Woke::Gates,
                () = &mut resume_sleep, if next_resume.is_some() => {
                    armed_resume = None;
                    Woke::Gates
                }
                item = input.next(), if want_input => Woke::Input(item),
                () = backlog.drained(), if backlogged => Woke::Drained,
            };
            if matches!(woke, Woke::Report(_))
                && self.admission.running() > 1
                && self.reports_bunch()
            {
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
                    self.workers.bunched = false;
                    while let Ok(report) = self.workers.reports.try_recv() {
                        self.on_report(report);
                        self.workers.bunched = true;
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
                // The next turn admits what the gates now let through.
                Woke::Gates | Woke::Drained => {}
            }
        }
        let now = Instant::now();
        let wall = now.duration_since(start);
        let metrics = self.stats.metrics(self.admission.limit(), wall);
        let stopped = self.stop.take();
        self.emit(Event::RunFinished {
            duration_ms: wall.as_millis() as u64,
            stopped,
            totals: self.stats.totals(),
            metrics,
        });
        self.out.flush();
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
        self.workers.bunched
            || self
                .turn
                .is_none_or(|(at, _)| Instant::now().saturating_duration_since(at) < QUICK)
    }

    fn is_done(&self) -> bool {
        !self.input.is_open() && self.entries.is_empty() && self.admission.running() == 0
    }

    /// Whether reading another task is useful now: a slot is free, nothing
    /// admissible is ready, and the look-ahead has room (or the run would
    /// otherwise stall: nothing runs, and nothing waits for a timer or a
    /// gate, only for dependencies that may come later in the input).
    fn wants_input(&self) -> bool {
        self.stop.is_none()
            && !self.out.backlogged()
            && self.input.is_open()
            && self.admission.has_room()
            && (self.waiting < self.lookahead
                || (self.admission.running() == 0
                    && self.backoffs.is_empty()
                    && !self.admission.has_ready()))
    }

    /// Starts every admissible task, reading input synchronously as far as
    /// it is available.
    fn fill(&mut self) {
        loop {
            while self.stop.is_none()
                && !self.hand_over
                && self.admission.has_room()
                && !self.out.turn_is_full()
                && !self.out.backlogged()
            {
                // The time matters only to gates (their pauses); a turn
                // that starts nothing reads no clock.
                let now = if self.admission.has_gates() {
                    self.now().0
                } else {
                    self.clock.instant
                };
                if let Some((seq, key, agent)) = self.admission.admit(now) {
                    self.start(seq, key, agent);
                    continue;
                }
                if !self.wants_input() {
                    break;
                }
                match self.input.next_now() {
                    Some(item) => self.on_input(item),
                    None => break,
                }
            }
            if self.stop.is_none()
                && !self.input.is_open()
                && self.admission.running() == 0
                && self.backoffs.is_empty()
                && !self.admission.has_ready()
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

    fn on_input(&mut self, item: Option<AgentTask>) {
        match item {
            Some(task) => self.enqueue(task),
            None => self.input = Input::Done,
        }
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
            let text = stop_text(self.stop.as_ref());
            self.finish_unstarted(seq, task, Unstarted::Stopped(text));
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
            self.publish(seq, None, None, result);
            self.after_outcome(&task, TaskStatus::Success);
            return;
        }
        let agent = self.admission.agent_of(&task.agent);
        let Some(spec) = self.admission.agent(agent).spec.as_ref() else {
            self.finish_unstarted(seq, task, Unstarted::NoAgent);
            return;
        };
        let timeout = self.s.task_timeout(task.timeout, spec.timeout);
        let retries = task.retries.or(spec.retries).unwrap_or(self.s.retries);

        // A known task set is queued as a whole when the run starts; a
        // streamed task when it is read.
        let since = if self.known_set {
            self.clock.instant
        } else {
            self.now().0
        };
        let key = self.entries.next_key();
        let (state, deps_left, ready_since) = match self.deps.register(&task, seq, key, since) {
            Registered::Ready(latest) => (State::Ready, 0, Some(latest)),
            Registered::Blocked(left) => (State::Blocked, left, None),
            Registered::DependencyFailed(dep) => {
                self.finish_unstarted(seq, task, Unstarted::DependencyFailed(dep));
                return;
            }
        };
        if self.deps.warn_ignored(&task) {
            self.emit(Event::DependenciesIgnored);
        }
        let ready = deps_left == 0;
        // Executions elsewhere count as attempts that used no retry.
        let before = task.executions_before;
        let inserted = self.entries.insert(Entry {
            seq,
            task,
            agent,
            state,
            deps_left,
            attempts: before,
            lost_in_row: 0,
            reruns: before,
            deferrals: 0,
            deferred_at: None,
            ready_since,
            first_start: None,
            last: None,
            run: None,
            retries,
            timeout,
        });
        debug_assert_eq!(inserted, key);
        self.waiting += 1;
        if ready {
            self.admission.push_ready(agent, seq, key);
        }
    }

    /// Starts the next attempt of a ready task that admission admitted.
    fn start(&mut self, seq: u64, key: usize, agent_index: usize) {
        let (now, wall) = self.now();
        let entry = self
            .entries
            .get_mut(key, seq)
            .expect("ready tasks have entries");
        debug_assert_eq!(entry.agent, agent_index);
        let agent: Arc<dyn Agent> = Arc::clone(
            &self
                .admission
                .agent(agent_index)
                .spec
                .as_ref()
                .expect("only known agents' tasks become ready")
                .agent,
        );
        self.waiting -= 1;
        let slot = self.workers.take_slot();
        entry.attempts += 1;
        entry.state = State::Running;
        let waited = entry
            .ready_since
            .map_or(Duration::ZERO, |r| now.saturating_duration_since(r));
        let first = entry.first_start.is_none();
        if first {
            entry.first_start = Some((now, wall));
        }
        self.stats
            .started(self.admission.running(), first.then_some(waited));
        let attempt = entry.attempts;
        let entry_timeout = entry.timeout;
        let entry_deferred_at = entry.deferred_at.take();
        let deadline = entry.timeout.and_then(|t| now.checked_add(t));
        let task = Arc::clone(&entry.task);
        entry.run = Some(InFlight {
            slot,
            started: now,
            timed_out: false,
        });
        let live = self
            .s
            .stream_output
            .then(|| self.out.live_sink(seq, task.id.clone()));
        let shared = Arc::new(AttemptShared::new(
            Capture::new(self.s.output_limit_bytes, live),
            entry_timeout,
        ));
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
            deferred_at: entry_deferred_at,
            grace: self.s.kill_grace,
            shared: Arc::clone(&shared),
        };
        if self.s.stream_output {
            // The worker sends its output straight to the channel: what the
            // dispatcher said about the task so far must be there first.
            self.out.flush();
        }
        let inline = &mut self.admission.agent_mut(agent_index).inline;
        if let Some(report) =
            self.workers
                .launch(slot, (seq, key, shared), deadline, agent, ctx, inline)
        {
            self.on_report(report);
        } else if self.admission.running() == 1 {
            // The first task of a run (or after an idle spell) would
            // otherwise wait for its I/O until the loop has started every
            // other: a burst of 64 requests delayed the first by 2 ms.
            self.hand_over = true;
        }
    }

    /// Settles an attempt that ended: retried, or the task's outcome.
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
        self.admission.release(entry.agent);
        self.stats.ran(now.saturating_duration_since(run.started));
        let used = self.workers.vacate(slot, self.admission.running());
        let ended = match ended {
            Ended::Cancelled(late) if run.timed_out => Ended::TimedOut(late),
            other => other,
        };
        let (deferred, retry_after) = ended.next_try();
        let retryable = ended.retryable();
        if deferred {
            entry.deferrals += 1;
            if entry.deferrals < MAX_DEFERRALS || self.stop.is_some() {
                // Not an attempt: the next start has this one's number.
                entry.attempts -= 1;
                self.defer(seq, key, slot, retry_after);
                return;
            }
        }
        let mut attempt = classify(ended, &used.shared, slot, self.stop.as_ref());
        if deferred {
            attempt.error = Some(format!("rate limited {MAX_DEFERRALS} times"));
            attempt.reason = Some(Reason::RateLimited);
        }
        if attempt.started.is_some_and(|(real, _)| real < run.started) {
            // A start reported before the attempt was handed over is that
            // moment: the slot was not held any earlier.
            attempt.started = Some((run.started, self.clock.wall(run.started)));
        }
        if entry.attempts == 1 + entry.task.executions_before {
            if let Some(start) = attempt.started {
                entry.first_start = Some(start);
            }
        }

        let mut rerun = false;
        let lost = attempt.was_lost();
        if lost {
            // Lost to its worker rather than failed: counted in `attempts`,
            // said in a note, and run again without using a retry, up to
            // `MAX_LOST` in a row; then a failure like any other.
            attempt
                .notes
                .push(attempt.error.clone().unwrap_or_default());
            entry.lost_in_row += 1;
            if let Some(stop) = &self.stop {
                // Not run again once the run stops: it ends as a task the
                // stop reached.
                attempt.status = TaskStatus::Cancelled;
                attempt.error = Some(format!("cancelled: {stop}"));
                attempt.reason = Some(Reason::Stopped {
                    by: Some(Box::new(stop.clone())),
                });
            } else if entry.lost_in_row < MAX_LOST {
                rerun = true;
            } else {
                let times = std::mem::take(&mut entry.lost_in_row);
                attempt.error = Some(format!("worker lost {times} times"));
                attempt.reason = Some(Reason::WorkerLost { times });
            }
        } else {
            entry.lost_in_row = 0;
        }
        let counted = entry.attempts - entry.reruns - u32::from(rerun);
        let retries_left =
            attempt.status.is_failure() && counted <= entry.retries && !deferred && retryable;
        let retry = rerun || (retries_left && self.stop.is_none());
        if retries_left && !retry {
            // It ran on to its own end after the stop (fail_fast: false):
            // say why it was not retried, as for a task in its backoff.
            let error = attempt.error.take().unwrap_or_default();
            let why = stop_text(self.stop.as_ref());
            attempt.error = Some(format!("{error} (retry abandoned: {why})"));
        }
        // Earlier attempts' notes (their output files, escaped processes,
        // lost executions) stay in the result, each saying which attempt it
        // is about.
        if retry || lost {
            let n = entry.attempts;
            for note in &mut attempt.notes {
                *note = format!("attempt {n}: {note}");
            }
        }
        if let Some(previous) = entry.last.take() {
            // Tokens spent are spent, whichever attempt spent them.
            attempt.usage = add_optional(previous.usage, attempt.usage);
            attempt.cost_usd = add_optional(previous.cost_usd, attempt.cost_usd);
            if !previous.notes.is_empty() {
                let own = std::mem::replace(&mut attempt.notes, previous.notes);
                attempt.notes.extend(own);
            }
        }
        if retry {
            let delay = if rerun {
                entry.reruns += 1;
                Duration::ZERO
            } else {
                // Never sooner than the service asked.
                self.s
                    .retry_backoff
                    .saturating_mul(1u32 << (counted - 1).min(31))
                    .max(retry_after.unwrap_or_default())
            };
            self.out.emit(Event::TaskRetryScheduled {
                seq,
                id: entry.task.id.clone(),
                attempt: entry.attempts,
                status: attempt.status,
                reason: attempt.reason.clone(),
                error: attempt.error.clone().unwrap_or_default(),
                slot,
                delay,
                at: wall,
                started_at: attempt.started.map(|(_, at)| at),
                worker: attempt.worker.clone(),
            });
            entry.last = Some(Box::new(attempt));
            self.waiting += 1;
            if delay.is_zero() {
                entry.state = State::Ready;
                entry.ready_since = Some(now);
                self.admission.push_ready(entry.agent, seq, key);
            } else {
                entry.state = State::Backoff;
                let due = now
                    .checked_add(delay)
                    .unwrap_or(now + Duration::from_secs(86_400 * 365));
                self.backoffs.push(Reverse((due, seq, key)));
            }
        } else {
            let entry = self.entries.remove(key, seq).expect("checked above");
            self.finish_started(entry, attempt);
        }
    }

    /// Puts a task whose attempt was refused before doing any work back
    /// among the ready tasks, at its place in input order (after
    /// `retry_after`, if given); its slot is already free. After a stop it
    /// ends as the stop leaves a task between attempts.
    fn defer(&mut self, seq: u64, key: usize, slot: usize, retry_after: Option<Duration>) {
        let (now, wall) = self.now();
        let entry = self
            .entries
            .get_mut(key, seq)
            .expect("a deferred task is live");
        entry.deferred_at = Some(now);
        self.out.emit(Event::TaskDeferred {
            seq,
            id: entry.task.id.clone(),
            slot,
            retry_after,
            count: entry.deferrals,
            at: wall,
        });
        self.waiting += 1;
        if self.stop.is_some() {
            let entry = self.entries.remove(key, seq).expect("checked above");
            let text = stop_text(self.stop.as_ref());
            self.abandon(entry, text);
            return;
        }
        match retry_after {
            Some(after) => {
                entry.state = State::Backoff;
                let due = now
                    .checked_add(after)
                    .unwrap_or(now + Duration::from_secs(86_400 * 365));
                self.backoffs.push(Reverse((due, seq, key)));
            }
            None => {
                entry.state = State::Ready;
                entry.ready_since = Some(now);
                self.admission.push_ready(entry.agent, seq, key);
            }
        }
    }

    /// Tells every attempt past its deadline to stop; the worker's report
    /// then counts as a timeout.
    fn on_timeouts_due(&mut self) {
        let (now, _) = self.now();
        for (seq, key) in self.workers.time_out_due(now) {
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
                    self.admission.push_ready(entry.agent, seq, key);
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
        let retries = entry.attempts.saturating_sub(1 + entry.reruns);
        self.stats.finished_started(retries, duration);
        let status = attempt.status;
        let attempt_started_at = attempt.started.map(|(_, at)| at);
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
            worker: attempt.worker,
            reason: attempt.reason,
            notes: attempt.notes,
            resumed: false,
            usage: attempt.usage,
            cost_usd: attempt.cost_usd,
        };
        self.publish(seq, Some(attempt.slot), attempt_started_at, result);
        self.after_outcome(&entry.task, status);
    }

    /// Settles a task that never ran: the one place that words why and
    /// applies what follows from it.
    fn finish_unstarted(&mut self, seq: u64, task: Arc<AgentTask>, why: Unstarted) {
        let (status, error, reason) = match why {
            Unstarted::Stopped(text) => (
                TaskStatus::Cancelled,
                format!("not started: {text}"),
                Reason::Stopped {
                    by: self.stop.clone().map(Box::new),
                },
            ),
            Unstarted::DependencyFailed(dep) => (
                TaskStatus::Skipped,
                dependency_failed(&dep),
                Reason::DependencyNotSucceeded { dependency: dep },
            ),
            Unstarted::Stuck(error) => (TaskStatus::Skipped, error, Reason::DependencyUnresolved),
            Unstarted::NoAgent => (
                TaskStatus::Failed,
                format!("no agent named `{}`", task.agent),
                Reason::UnknownAgent,
            ),
        };
        let result = TaskResult::not_started(Arc::clone(&task), status, error).because(reason);
        self.publish(seq, None, None, result);
        if status == TaskStatus::Cancelled {
            // A stop, which ends every other task too: nothing follows.
            self.deps.forget(&task.id);
        } else {
            self.after_outcome(&task, status);
        }
    }

    /// Announces a task's result; `attempt_started_at` is when its last
    /// attempt really started, if its agent said.
    fn publish(
        &mut self,
        seq: u64,
        slot: Option<usize>,
        attempt_started_at: Option<Timestamp>,
        result: TaskResult,
    ) {
        self.stats.finished(result.status);
        self.emit(Event::TaskFinished {
            seq,
            slot,
            attempt_started_at,
            result: Box::new(result),
        });
    }

    /// What follows from a task's outcome: its dependents are released or
    /// skipped, and a failure may trigger the stop.
    fn after_outcome(&mut self, task: &AgentTask, status: TaskStatus) {
        if self.deps.on() {
            let ok = status == TaskStatus::Success;
            let at = ok.then(|| self.now().0);
            let waiting = self.deps.finished(&task.id, at);
            if ok {
                self.release_dependents(waiting);
            } else {
                self.skip_dependents(task.id.clone(), waiting);
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

    fn release_dependents(&mut self, waiting: Waiters) {
        if waiting.is_empty() {
            return;
        }
        let (now, _) = self.now();
        for (seq, key) in waiting {
            if let Some(entry) = self.entries.get_mut(key, seq) {
                entry.deps_left -= 1;
                if entry.deps_left == 0 && matches!(entry.state, State::Blocked) {
                    entry.state = State::Ready;
                    entry.ready_since = Some(now);
                    self.admission.push_ready(entry.agent, seq, key);
                }
            }
        }
    }

    /// Skips the tasks in `waiting`, blocked on `id`, which did not
    /// succeed; each names it. Skipping a task skips its own dependents in
    /// turn (through `after_outcome`): by a work list, not recursion, as a
    /// chain of dependents may be long.
    fn skip_dependents(&mut self, id: TaskId, waiting: Waiters) {
        if waiting.is_empty() {
            return;
        }
        if let Some(to_skip) = &mut self.to_skip {
            // Called while skipping: the loop below takes it.
            to_skip.push((id, waiting));
            return;
        }
        self.to_skip = Some(vec![(id, waiting)]);
        while let Some((id, waiting)) = self.to_skip.as_mut().and_then(Vec::pop) {
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
                self.finish_unstarted(seq, entry.task, Unstarted::DependencyFailed(id.clone()));
            }
        }
        self.to_skip = None;
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
            if let Some(dep) = self.deps.unknown_dependency(&entry.task) {
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
            let next = self
                .deps
                .unfinished_dependency(&current.task)
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
        self.finish_unstarted(seq, entry.task, Unstarted::Stuck(error));
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
        self.emit(Event::RunStopTriggered {
            reason: reason.clone(),
        });
        if cancel_in_flight {
            self.workers.cancel_all();
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
            let Some(entry) = self.entries.remove(key, seq) else {
                continue;
            };
            self.abandon(entry, text.clone());
        }
        self.admission.clear_ready();
        self.backoffs.clear();
        self.deps.clear_waiters();
        if self.known_set && self.input.is_known_set() {
            self.drain_text = text;
        } else {
            self.input = Input::Done;
        }
    }

    /// Ends a task that waits to start (ready, blocked, or between
    /// attempts) because the run stopped (`text`): one between attempts
    /// ends with its last attempt's outcome, any other is not started.
    fn abandon(&mut self, mut entry: Entry, text: String) {
        self.waiting -= 1;
        match entry.last.take() {
            Some(mut last) => {
                let error = last.error.take().unwrap_or_default();
                last.error = Some(format!("{error} (retry abandoned: {text})"));
                self.finish_started(entry, *last);
            }
            None => self.finish_unstarted(entry.seq, entry.task, Unstarted::Stopped(text)),
        }
    }

    /// Whether a stop left a known task set unread: the rest is reported
    /// `cancelled` as the consumer takes the events (a stream is not read
    /// after a stop, so its input is done then).
    fn draining(&self) -> bool {
        self.stop.is_some() && self.input.is_known_set()
    }

    /// After a stop, reports the rest of a known task set as never started,
    /// a bunch at a time and only as fast as the consumer takes the events:
    /// a million tasks not read yet must not become a million events at once.
    fn drain_rest(&mut self) {
        /// About one batch's worth of events a turn.
        const BUNCH: usize = 1024;
        if !self.draining() || self.out.backlogged() {
            return;
        }
        for task in self.input.take_known(BUNCH) {
            let (seq, task) = self.queue(task);
            // Unread dependents of a non-success are skipped, as they
            // would have been had they been read before the stop.
            let why = match self.deps.failed_dependency(&task) {
                Some(dep) => Unstarted::DependencyFailed(dep),
                None => Unstarted::Stopped(self.drain_text.clone()),
            };
            self.finish_unstarted(seq, task, why);
        }
    }
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("running", &self.admission.running())
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}
