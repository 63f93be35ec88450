//! Workers: running one attempt each. An attempt is either polled once by
//! the dispatcher itself (an agent whose attempts end at their first poll)
//! or spawned as a tokio task that reports by value over a channel. Here
//! too are the run's slots (who runs where) and the attempts' deadlines.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, CatchUnwind};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::attempt::Ended;
use crate::agent::{Agent, AgentResult, AttemptShared, TaskContext};

/// Whether the dispatcher polls an agent's attempts once itself: for an
/// agent whose attempts end at their first poll, and quickly. Off for good
/// once one waited (it would go to a worker anyway), took over a
/// millisecond (an agent that blocks its thread must not block the
/// dispatcher twice), or when too many of a window were slow (one now and
/// then is: cold caches, lazy set-up, the thread being preempted).
#[derive(Debug)]
pub(super) struct Inline {
    pub(super) on: bool,
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

    pub(super) fn new() -> Self {
        Self {
            on: true,
            polls: 0,
            slow: 0,
        }
    }

    /// Whether to time the next first poll: a clock read costs about as
    /// much as a no-op agent, so one in eight is, and each of the first few.
    pub(super) fn times_next(&self) -> bool {
        self.polls % 8 == 0 || self.polls < 16
    }

    /// Takes in how a first poll went: whether the attempt ended, and how
    /// long it took if it was timed.
    pub(super) fn record(&mut self, ended: bool, took: Option<Duration>) {
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

/// What a worker reports back; `None` if the worker itself panicked.
pub(super) struct Report {
    pub(super) key: usize,
    pub(super) ended: Option<Ended>,
}

/// Who runs in a slot, so a deadline can tell whether its attempt still
/// runs without a lookup in the entries.
pub(super) struct SlotUse {
    pub(super) seq: u64,
    pub(super) key: usize,
    /// Which start of the run this is: a deferred task starts again with
    /// the same attempt number, and its old deadline must not match.
    start: u64,
    pub(super) shared: Arc<AttemptShared>,
    /// To drop the worker when the run is dropped (its report comes by
    /// channel); `None` while the dispatcher polls the agent itself.
    pub(super) worker: Option<JoinHandle<()>>,
}

/// The run's slots, its workers' reports and its attempts' deadlines.
pub(super) struct Workers {
    slots: Vec<Option<SlotUse>>,
    free: BinaryHeap<Reverse<usize>>,
    /// Deadlines of running attempts: (when, start, slot). Entries of
    /// attempts that ended are dropped lazily when they come due.
    timeouts: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    /// Attempts started so far.
    starts: u64,
    /// Reports of workers. Through a channel rather than a `JoinSet`:
    /// no lock and no extra allocation per worker, and nothing to copy out
    /// of the task's allocation.
    pub(super) reports: UnboundedReceiver<Report>,
    env: Arc<WorkerEnv>,
    /// Whether the last turn that took a report found more waiting: tasks
    /// are finishing faster than the loop turns (see `Dispatcher::run`).
    pub(super) bunched: bool,
}

impl Workers {
    pub(super) fn new(grace: Duration, kill: CancellationToken) -> Self {
        let (reports_tx, reports) = mpsc::unbounded_channel();
        Self {
            slots: Vec::new(),
            free: BinaryHeap::new(),
            timeouts: BinaryHeap::new(),
            starts: 0,
            reports,
            env: Arc::new(WorkerEnv {
                grace,
                kill,
                reports: reports_tx,
            }),
            bunched: false,
        }
    }

    /// The lowest free slot, now taken.
    pub(super) fn take_slot(&mut self) -> usize {
        match self.free.pop() {
            Some(Reverse(slot)) => slot,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        }
    }

    /// Puts an attempt in the slot it took; its deadline, if any, is kept
    /// here rather than in its worker: one timer for the run instead of one
    /// per task, and smaller worker futures.
    fn occupy(&mut self, slot: usize, mut used: SlotUse, deadline: Option<Instant>) {
        self.starts += 1;
        used.start = self.starts;
        if let Some(due) = deadline {
            self.timeouts.push(Reverse((due, used.start, slot)));
        }
        self.slots[slot] = Some(used);
    }

    /// Frees a slot whose attempt ended; `running` are still in flight.
    pub(super) fn vacate(&mut self, slot: usize, running: usize) -> SlotUse {
        let used = self.slots[slot]
            .take()
            .expect("a running task holds its slot");
        self.free.push(Reverse(slot));
        if self.timeouts.len() > 2 * running + 64 {
            // Deadlines of ended attempts would otherwise pile up for as long
            // as the timeout: keep memory proportional to what is running.
            let slots = &self.slots;
            self.timeouts.retain(|Reverse((_, start, slot))| {
                slots[*slot].as_ref().is_some_and(|u| u.start == *start)
            });
        }
        used
    }

    /// The earliest deadline of an attempt, if any.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.timeouts.peek().map(|Reverse((at, ..))| *at)
    }

    /// Tells every attempt past its deadline at `now` to stop, and returns
    /// the (seq, key) of those that took it (a settled attempt has ended
    /// and only winds down; one already told to stop keeps that reason).
    pub(super) fn time_out_due(&mut self, now: Instant) -> Vec<(u64, usize)> {
        let mut timed_out = Vec::new();
        while let Some(&Reverse((at, start, slot))) = self.timeouts.peek() {
            if at > now {
                break;
            }
            self.timeouts.pop();
            let Some(running) = self.slots[slot].as_ref().filter(|u| u.start == start) else {
                continue;
            };
            // The limit counts from the attempt's real start, when its
            // agent reported one later than the hand-over; one still
            // queued elsewhere is looked at again a whole limit later.
            let real_due = match (running.shared.reported_start(), running.shared.timeout) {
                (Some(Some((real, _))), Some(limit)) => real.checked_add(limit),
                (Some(None), Some(limit)) => now.checked_add(limit),
                _ => None,
            };
            if let Some(due) = real_due.filter(|due| *due > now) {
                self.timeouts.push(Reverse((due, start, slot)));
                continue;
            }
            if running.shared.time_out() {
                timed_out.push((running.seq, running.key));
            }
        }
        timed_out
    }

    /// Starts an attempt in the slot it took. An agent whose attempts end
    /// at their first poll (a cache hit, a quick check) would cost a spawn,
    /// two thread hand-overs and a channel message for nothing: while its
    /// `inline` policy allows, the dispatcher polls it once itself, and the
    /// report is returned if that ended it. Otherwise a worker runs it.
    pub(super) fn launch(
        &mut self,
        slot: usize,
        (seq, key, shared): (u64, usize, Arc<AttemptShared>),
        deadline: Option<Instant>,
        agent: Arc<dyn Agent>,
        ctx: TaskContext,
        inline: &mut Inline,
    ) -> Option<Report> {
        let used = SlotUse {
            seq,
            key,
            start: 0,
            shared: Arc::clone(&shared),
            worker: None,
        };
        self.occupy(slot, used, deadline);
        let phase = if inline.on {
            let began = inline.times_next().then(std::time::Instant::now);
            let phase = first_poll(agent, ctx, &shared);
            inline.record(
                matches!(phase, FirstPoll::Ended(_)),
                began.map(|b| b.elapsed()),
            );
            match phase {
                FirstPoll::Ended(ended) => {
                    return Some(Report {
                        key,
                        ended: Some(ended),
                    });
                }
                FirstPoll::Pending(fut) => Phase::First(fut, shared),
            }
        } else {
            Phase::Start(agent, ctx)
        };
        let worker = tokio::spawn(Worker {
            key,
            env: Arc::clone(&self.env),
            phase,
            reported: false,
        });
        if let Some(used) = &mut self.slots[slot] {
            used.worker = Some(worker);
        }
        None
    }

    /// Tells every running attempt to stop.
    pub(super) fn cancel_all(&self) {
        for running in self.slots.iter().flatten() {
            running.shared.cancel();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // A run that is dropped drops its agents too.
        for running in self.slots.iter().flatten() {
            if let Some(worker) = &running.worker {
                worker.abort();
            }
        }
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

#[cfg(test)]
mod tests {
    use super::Inline;
    use std::time::Duration;

    #[test]
    fn inline_first_polls_stop_for_an_agent_that_waits_or_blocks() {
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
