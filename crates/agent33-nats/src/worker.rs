//! The worker: takes the runs it accepts, pulls at most as many attempts as
//! it has free slots, and runs each through a one-task engine run with the
//! agents it was given (the same command agent and the same timeout,
//! grace, capture and error wording as a local run).
//!
//! Each delivery is claimed from the coordinator before it runs,
//! heartbeated every lease/3 (to the server,
//! which then keeps it, and to the coordinator, which may answer that the
//! execution is fenced), and its result handed in by request; the
//! coordinator acknowledges the message once it took the result.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent33_parallel::{
    Agent, AgentResult, AgentSpec, AgentTask, Agents, BoxFuture, Interrupt, ParallelExecutor,
    RunControl, Settings, TaskContext, TaskResult, TaskStatus,
};
use async_nats::jetstream::{self, AckKind, consumer};
use async_nats::{HeaderMap, StatusCode};
use futures::StreamExt as _;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Error;
use crate::connect::Connection;
use crate::coordinator::execution_header;
use crate::parts;
use crate::wire::{
    self, Answer, Claim, Control, Execution, Hello, Outcome, Report, RunInfo, TaskMessage,
};

/// Builds the agents of an ad-hoc run from its command template (and
/// whether it runs with `sh -c`); `Err`
/// says why the template is refused.
pub type AdhocAgents = Arc<dyn Fn(&str, bool) -> Result<AgentMap, String> + Send + Sync>;

/// A worker's agents by name, without limits of their own: the run's
/// message carries the timeout, and limits and retries are the
/// coordinator's.
pub type AgentMap = HashMap<String, Arc<dyn Agent>>;

/// An agent whose attempt is one exchange with a service whose limit the
/// coordinator keeps (an LLM provider). It runs here like any agent and
/// returns, beside the task's result, what the service said: that
/// `feedback` travels in the report to the coordinator's agent
/// ([`crate::RemoteAgent::attempt`]), which adapts the limit. It never
/// defers a task (the one-task run here would run it again); the
/// coordinator decides what a refusal means.
pub trait Exchange: Send + Sync + 'static {
    /// Runs one attempt.
    fn run(&self, ctx: TaskContext)
    -> BoxFuture<'static, (AgentResult, Option<serde_json::Value>)>;
}

/// A worker's [`Exchange`] agents by name.
pub type ExchangeMap = HashMap<String, Arc<dyn Exchange>>;

/// Runs an [`Exchange`] as the one-task run's agent, keeping its feedback.
struct Relay {
    exchange: Arc<dyn Exchange>,
    feedback: Arc<Mutex<Option<serde_json::Value>>>,
}

impl Agent for Relay {
    fn run(&self, ctx: TaskContext) -> BoxFuture<'static, AgentResult> {
        let exchange = self.exchange.run(ctx);
        let feedback = Arc::clone(&self.feedback);
        Box::pin(async move {
            let (result, said) = exchange.await;
            *feedback
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = said;
            result
        })
    }
}

/// After this long without word from a run's coordinator (which says it
/// is alive every 3 s), the worker takes nothing more of that run: with the
/// 1 s check, within 13 s of its death (PRODUCT-distributed.md: 15 s).
const COORDINATOR_SILENCE: Duration = Duration::from_secs(12);
/// Most messages asked for in one pull request.
const MOST_PER_FETCH: usize = 16;
/// How long one pull request waits for messages.
const PULL_WAIT: Duration = Duration::from_secs(1);

/// What a worker is and may run.
#[derive(Clone)]
pub struct WorkerOptions {
    /// Its name in reports.
    pub id: String,
    /// Tasks it runs at once.
    pub slots: usize,
    /// Its own `--lease`: it heartbeats every third of the shorter of this
    /// and the run's, and when the run gave no lease of its own, a shorter
    /// one decides when its silent executions are lost.
    pub lease: Option<Duration>,
    /// Digest of its manifest, if it has one.
    pub manifest_digest: Option<String>,
    /// The manifest's agents.
    pub agents: AgentMap,
    /// The manifest's agents that report feedback (its LLM agents).
    pub exchanges: ExchangeMap,
    /// Present when it takes ad-hoc runs (`--allow-adhoc`).
    pub adhoc: Option<AdhocAgents>,
}

/// How a worker is asked to stop: the first request drains it (no new
/// tasks, running ones finish), the second hands running tasks back.
#[derive(Clone, Debug, Default)]
pub struct WorkerStop {
    drain: CancellationToken,
    hand_back: CancellationToken,
}

impl WorkerStop {
    /// A stop that has not been asked for.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes no new tasks; running ones finish.
    pub fn drain(&self) {
        self.drain.cancel();
    }

    /// Hands running tasks back to be run elsewhere, at once.
    pub fn hand_back(&self) {
        self.drain.cancel();
        self.hand_back.cancel();
    }

    /// Whether a drain was asked for.
    #[must_use]
    pub fn draining(&self) -> bool {
        self.drain.is_cancelled()
    }
}

/// The worker loop.
pub struct Worker;

/// One accepted run, as the worker keeps it.
struct RunSide {
    conn: Connection,
    run: String,
    worker: String,
    beat_every: Duration,
    /// Its own `--lease`, told with each claim.
    own_lease: Option<Duration>,
    agents: AgentMap,
    exchanges: ExchangeMap,
    /// Running executions' controls, by (seq, attempt).
    running: Mutex<HashMap<(u64, u32), RunControl>>,
    /// Take nothing more of this run, and stop asking its coordinator
    /// (it is done, or gone).
    over: CancellationToken,
    stop: WorkerStop,
    /// Lines for the worker's stderr.
    say: Arc<dyn Fn(String) + Send + Sync>,
}

impl Worker {
    /// Serves runs until `stop` drains it and its tasks are done (or handed
    /// back). `say` gets each line for the worker's stderr: the `ready`
    /// line, refusals, and lost claims.
    ///
    /// # Errors
    ///
    /// [`Error::JetStream`] when the run announcements cannot be read.
    pub async fn run(
        conn: Connection,
        options: WorkerOptions,
        stop: WorkerStop,
        say: Arc<dyn Fn(String) + Send + Sync>,
    ) -> Result<(), Error> {
        let runs_stream = conn
            .js
            .get_stream(wire::RUNS_STREAM)
            .await
            .map_err(|e| Error::js(format!("open stream {}", wire::RUNS_STREAM), e))?;
        let announcements = runs_stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: "a33.run.>".to_owned(),
                deliver_policy: consumer::DeliverPolicy::LastPerSubject,
                ..consumer::pull::OrderedConfig::default()
            })
            .await
            .map_err(|e| Error::js("follow run announcements", e))?;
        let mut announcements = announcements
            .messages()
            .await
            .map_err(|e| Error::js("follow run announcements", e))?;
        let slots = Arc::new(Semaphore::new(options.slots.max(1)));
        let tracker = TaskTracker::new();
        let mut runs: HashMap<String, Arc<RunSide>> = HashMap::new();
        say(format!(
            "ready: worker {}, {} slots, {}",
            options.id,
            options.slots.max(1),
            conn.url
        ));
        loop {
            let message = tokio::select! {
                message = announcements.next() => message,
                () = stop.drain.cancelled() => break,
            };
            let Some(message) = message else { break };
            let Ok(message) = message else {
                // The ordered consumer recreates itself across a restart.
                continue;
            };
            let Ok(info) = wire::decode::<RunInfo>(&message.subject, &message.payload) else {
                continue;
            };
            if info.done {
                if let Some(side) = runs.remove(&info.run) {
                    side.stop_all();
                }
                continue;
            }
            if runs.contains_key(&info.run) {
                continue;
            }
            // A run whose coordinator died before it could end it (killed)
            // stays announced; its tasks would hold slots here until the
            // silence is noticed.
            if crate::coordinator::coordinator_gone(&conn, &info.run).await {
                say(format!(
                    "agent-33 worker: run {}: its coordinator is gone; taking none of its tasks",
                    info.run
                ));
                continue;
            }
            let (agents, exchanges) = match accept(&options, &info) {
                Ok(agents) => agents,
                Err(why) => {
                    say(format!("agent-33 worker: refusing run {}: {why}", info.run));
                    hello(&conn, &info.run, &options.id, Some(why)).await;
                    continue;
                }
            };
            let run_lease = Duration::from_millis(info.lease_ms.max(300));
            let lease = options.lease.map_or(run_lease, |own| own.min(run_lease));
            let side = Arc::new(RunSide {
                conn: conn.clone(),
                run: info.run.clone(),
                worker: options.id.clone(),
                beat_every: lease / 3,
                own_lease: options.lease,
                agents,
                exchanges,
                running: Mutex::new(HashMap::new()),
                over: CancellationToken::new(),
                stop: stop.clone(),
                say: Arc::clone(&say),
            });
            let control = match conn
                .client
                .subscribe(wire::control_subject(&info.run))
                .await
            {
                Ok(subscriber) => subscriber,
                Err(e) => {
                    say(format!(
                        "agent-33 worker: cannot follow run {}: {e}",
                        info.run
                    ));
                    continue;
                }
            };
            tracker.spawn(Arc::clone(&side).follow_control(control));
            tracker.spawn(Arc::clone(&side).pull(
                Arc::clone(&slots),
                tracker.clone(),
                Arc::clone(&say),
            ));
            hello(&conn, &info.run, &options.id, None).await;
            runs.insert(info.run, side);
        }
        // Draining: pull loops end; running executions finish, or are
        // handed back on a second stop.
        tracker.close();
        tracker.wait().await;
        let _ = conn.client.flush().await;
        Ok(())
    }
}

/// Whether this worker takes a run's tasks, and with which agents.
fn accept(options: &WorkerOptions, info: &RunInfo) -> Result<(AgentMap, ExchangeMap), String> {
    if let Some(template) = &info.adhoc {
        let Some(make) = &options.adhoc else {
            return Err(
                "it is an ad-hoc --command run (start the worker with --allow-adhoc to take those)"
                    .to_owned(),
            );
        };
        return make(template, info.adhoc_shell).map(|agents| (agents, ExchangeMap::new()));
    }
    match (&info.manifest_digest, &options.manifest_digest) {
        (Some(theirs), Some(ours)) if theirs == ours => {
            Ok((options.agents.clone(), options.exchanges.clone()))
        }
        (Some(theirs), Some(ours)) => Err(format!(
            "its manifest differs from this worker's (digest {theirs}, here {ours})"
        )),
        (_, None) => Err("this worker has no manifest".to_owned()),
        (None, Some(_)) => Err("it names no manifest".to_owned()),
    }
}

async fn hello(conn: &Connection, run: &str, worker: &str, refused: Option<String>) {
    let hello = Hello {
        worker: worker.to_owned(),
        refused,
    };
    let _ = conn
        .client
        .publish(
            wire::coordinator_subject(run, "hello"),
            wire::encode(&hello),
        )
        .await;
    let _ = conn.client.flush().await;
}

impl RunSide {
    /// Cancels every running execution of the run and takes nothing more.
    fn stop_all(&self) {
        self.over.cancel();
        for control in self.running().values() {
            control.interrupt_by(Interrupt::new("the run stopped"));
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<(u64, u32), RunControl>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Acts on the coordinator's control messages, and notices when it
    /// falls silent.
    async fn follow_control(self: Arc<Self>, mut control: async_nats::Subscriber) {
        let mut last_word = Instant::now();
        let mut check = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                message = control.next() => {
                    let Some(message) = message else { return };
                    last_word = Instant::now();
                    match wire::decode::<Control>(&message.subject, &message.payload) {
                        Ok(Control::Cancel { seq, attempt }) => {
                            if let Some(c) = self.running().get(&(seq, attempt)) {
                                c.interrupt_by(Interrupt::new("cancelled by the run"));
                            }
                        }
                        Ok(Control::Stop) => {
                            self.stop_all();
                            return;
                        }
                        Ok(Control::Alive) | Err(_) => {}
                    }
                }
                _ = check.tick() => {
                    if last_word.elapsed() > COORDINATOR_SILENCE && !self.over.is_cancelled() {
                        // Finish what we hold, take nothing more.
                        (self.say)(format!(
                            "agent-33 worker: run {}: its coordinator is silent; finishing {} running task(s), taking no more",
                            self.run,
                            self.running().len()
                        ));
                        self.over.cancel();
                    }
                    if self.over.is_cancelled() && self.running().is_empty() {
                        return;
                    }
                    if self.stop.draining() && self.running().is_empty() {
                        return;
                    }
                }
            }
        }
    }

    /// Pulls the run's attempts, never more than free slots.
    async fn pull(
        self: Arc<Self>,
        slots: Arc<Semaphore>,
        tracker: TaskTracker,
        say: Arc<dyn Fn(String) + Send + Sync>,
    ) {
        let consumer: consumer::PullConsumer = loop {
            let found = match self.conn.js.get_stream(wire::TASKS_STREAM).await {
                Ok(stream) => stream
                    .get_consumer(&wire::consumer_name(&self.run))
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match found {
                Ok(consumer) => break consumer,
                Err(_) => {
                    if self.wait_or_end(Duration::from_millis(500)).await {
                        return;
                    }
                }
            }
        };
        // One subscription for the run's whole life, and a pull request
        // per group of slots that freed up: a fetch each time would
        // subscribe and unsubscribe for every task.
        let inbox = self.conn.client.new_inbox();
        let Ok(mut deliveries) = self.conn.client.subscribe(inbox.clone()).await else {
            return;
        };
        let mut asked = Asked::default();
        let mut sweep = tokio::time::interval(PULL_WAIT);
        loop {
            let stopping = self.stop.draining() || self.over.is_cancelled();
            if stopping && asked.is_empty() {
                return;
            }
            tokio::select! {
                permit = Arc::clone(&slots).acquire_owned(), if !stopping => {
                    let mut permits = vec![permit.expect("the slots semaphore is never closed")];
                    while permits.len() < MOST_PER_FETCH {
                        match Arc::clone(&slots).try_acquire_owned() {
                            Ok(permit) => permits.push(permit),
                            Err(_) => break,
                        }
                    }
                    let request = consumer::pull::BatchConfig {
                        batch: permits.len(),
                        expires: Some(PULL_WAIT),
                        ..consumer::pull::BatchConfig::default()
                    };
                    if consumer.request_batch(request, inbox.clone().into()).await.is_err() {
                        drop(permits);
                        if self.wait_or_end(Duration::from_millis(500)).await {
                            return;
                        }
                        continue;
                    }
                    asked.push(permits);
                }
                delivery = deliveries.next() => {
                    let Some(delivery) = delivery else { return };
                    match delivery.status {
                        None | Some(StatusCode::OK) => {
                            let message = jetstream::Message {
                                message: delivery,
                                context: self.conn.js.clone(),
                            };
                            let permit = asked.take();
                            match permit {
                                Some(permit) if !stopping => {
                                    let side = Arc::clone(&self);
                                    let say = Arc::clone(&say);
                                    tracker.spawn(async move {
                                        side.execute(message, permit, &*say).await;
                                    });
                                }
                                // Taken as the stop came, or for a request
                                // given up on: back at once, never run.
                                _ => {
                                    let _ = message.ack_with(AckKind::Nak(None)).await;
                                }
                            }
                        }
                        Some(StatusCode::IDLE_HEARTBEAT) => {}
                        // Expired (408), ended by the server (409: the
                        // consumer was deleted, …): the oldest request is
                        // over, its unfilled slots free again.
                        Some(_) => asked.expire_oldest(),
                    }
                }
                _ = sweep.tick() => {
                    // A request the server forgot (it restarted) never says
                    // it expired.
                    asked.forget_older_than(PULL_WAIT * 3);
                }
                () = self.stop.drain.cancelled(), if !stopping => {}
                () = self.over.cancelled(), if !stopping => {}
            }
        }
    }

    /// Sleeps, or returns true at once if the run is over or the worker drains.
    async fn wait_or_end(&self, wait: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(wait) => false,
            () = self.stop.drain.cancelled() => true,
            () = self.over.cancelled() => true,
        }
    }

    /// Asks the coordinator, again after a failure (a server restart),
    /// until it answers or the run is over.
    async fn ask<T: Serialize>(&self, what: &str, body: &T) -> Option<Answer> {
        self.ask_raw(what, None, wire::encode(body)).await
    }

    async fn ask_raw(
        &self,
        what: &str,
        headers: Option<HeaderMap>,
        body: bytes::Bytes,
    ) -> Option<Answer> {
        let subject = wire::coordinator_subject(&self.run, what);
        let mut wait = Duration::from_millis(50);
        loop {
            if self.over.is_cancelled() {
                return None;
            }
            let asked = match &headers {
                Some(h) => {
                    self.conn
                        .client
                        .request_with_headers(subject.clone(), h.clone(), body.clone())
                        .await
                }
                None => {
                    self.conn
                        .client
                        .request(subject.clone(), body.clone())
                        .await
                }
            };
            if let Ok(reply) = asked
                && let Ok(answer) = wire::decode::<Answer>(&reply.subject, &reply.payload)
            {
                return Some(answer);
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.over.cancelled() => return None,
            }
            wait = (wait * 2).min(Duration::from_secs(1));
        }
    }

    /// Claims, runs and reports one delivery; `slot` is freed as soon as
    /// its process has ended (handing the result in needs no slot).
    ///
    /// Nothing starts before the server has the claim (a flush): the
    /// coordinator hears of every execution, so one whose worker dies is
    /// still counted. A first delivery then starts while the claim is on
    /// its way: its attempt was admitted, and would have started already
    /// in a local run; should the answer be "fenced" (the attempt was
    /// cancelled meanwhile), it is killed at once and its result dropped.
    /// A redelivery waits for the answer: another execution may own it.
    async fn execute(
        &self,
        message: jetstream::Message,
        slot: OwnedSemaphorePermit,
        say: &(dyn Fn(String) + Send + Sync),
    ) {
        let Ok(delivered) = message
            .info()
            .map(|i| u64::try_from(i.delivered).unwrap_or(1))
        else {
            return;
        };
        let Ok(task) = wire::decode::<TaskMessage>(&message.subject, &message.payload) else {
            // Not ours to understand: never redeliver it.
            let _ = message.ack_with(AckKind::Term).await;
            return;
        };
        let key = (task.seq, task.attempt);
        let execution = Execution {
            seq: task.seq,
            attempt: task.attempt,
            delivered,
        };
        let claim = Claim {
            seq: task.seq,
            attempt: task.attempt,
            delivered,
            worker: self.worker.clone(),
            lease_ms: self.own_lease.map(millis),
        };
        // Registered before the claim: a cancel that comes as the claim is
        // answered must find it.
        let control = RunControl::new();
        self.running().insert(key, control.clone());
        let claimed = self.ask("claim", &claim);
        tokio::pin!(claimed);
        // `None`: the server has the claim, its answer is still to come.
        let answer = if delivered == 1 {
            // The claim is polled first each time, so it is queued on the
            // connection ahead of the flush, which returns once the server
            // has read both.
            let flush = self.conn.client.flush();
            tokio::pin!(flush);
            tokio::select! {
                biased;
                early = &mut claimed => Some(early),
                flushed = &mut flush => match flushed {
                    Ok(()) => None,
                    Err(_) => Some(claimed.as_mut().await),
                },
            }
        } else {
            Some(claimed.as_mut().await)
        };
        let mut claim_pending = match answer {
            None => true,
            Some(Some(Answer::Go { .. })) => false,
            Some(refused) => {
                self.running().remove(&key);
                if refused == Some(Answer::Fenced { over: true }) {
                    let _ = message.double_ack().await;
                }
                return;
            }
        };
        let mut agents = Agents::new();
        // Only an exchange agent has feedback to keep.
        let mut feedback = None;
        if let Some(exchange) = self.exchanges.get(&task.agent) {
            let slot = Arc::new(Mutex::new(None));
            let relay = Relay {
                exchange: Arc::clone(exchange),
                feedback: Arc::clone(&slot),
            };
            agents.insert(task.agent.as_str(), AgentSpec::new(relay));
            feedback = Some(slot);
        } else if let Some(agent) = self.agents.get(&task.agent) {
            agents.insert(task.agent.as_str(), AgentSpec::from_arc(Arc::clone(agent)));
        }
        // One attempt, never retried here (retries are the coordinator's).
        let settings = Settings {
            retries: 0,
            timeout: task.timeout_ms.map(Duration::from_millis),
            kill_grace: Duration::from_millis(task.kill_grace_ms),
            output_limit_bytes: task.output_limit_bytes,
            ..Settings::default()
        };
        let executor = ParallelExecutor::builder()
            .settings(settings)
            .build()
            .expect("a one-task run's settings are valid");
        // Attempt N runs as the N-th, so that the command sees
        // AGENT33_ATTEMPT=N (lost executions count).
        let one = AgentTask::new(task.agent.as_str(), task.artifact.clone())
            .with_id(task.id.as_str())
            .after_executions(task.attempt.saturating_sub(1));
        let results = executor
            .run(vec![one], &agents, control.clone())
            .collect_results();
        tokio::pin!(results);
        let mut beat = tokio::time::interval(self.beat_every.max(Duration::from_millis(100)));
        beat.tick().await;
        let mut fenced = false;
        let mut handed_back = false;
        let results = loop {
            tokio::select! {
                results = &mut results => break results,
                answer = &mut claimed, if claim_pending => {
                    claim_pending = false;
                    if !matches!(answer, Some(Answer::Go { .. })) {
                        fenced = true;
                        control.kill_by(Interrupt::new("claim refused"));
                        if answer == Some(Answer::Fenced { over: true }) {
                            let _ = message.double_ack().await;
                        }
                    }
                }
                _ = beat.tick(), if !fenced && !handed_back => {
                    let _ = message.ack_with(AckKind::Progress).await;
                    if let Some(Answer::Fenced { .. }) = self.ask("beat", &execution).await {
                        say(format!(
                            "agent-33 worker: {}: claim lost (another worker owns attempt {}); killing it",
                            task.id, task.attempt
                        ));
                        fenced = true;
                        control.kill_by(Interrupt::new("claim lost"));
                    }
                }
                () = self.stop.hand_back.cancelled(), if !fenced && !handed_back => {
                    handed_back = true;
                    let _ = self.ask("back", &(execution.clone(), self.worker.clone())).await;
                    control.kill_by(Interrupt::new("handed back"));
                }
            }
        };
        self.running().remove(&key);
        drop(slot);
        if handed_back {
            // The coordinator runs the task again as a new attempt.
            let _ = message.ack().await;
            return;
        }
        if fenced {
            return;
        }
        let Some(result) = one_result(results) else {
            return;
        };
        let mut report = report(execution.clone(), &self.worker, result);
        report.feedback = feedback.and_then(|slot| {
            slot.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
        });
        let body = wire::encode(&report);
        let pieces = parts::split(&body);
        let last = pieces.len() - 1;
        for (i, piece) in pieces.into_iter().enumerate() {
            let mut headers = HeaderMap::new();
            headers.insert(parts::EXECUTION, execution_header(&execution).as_str());
            if i < last {
                headers.insert(parts::MORE, "1");
            } else if let Some(ack) = &message.reply {
                // The coordinator acknowledges the message once it took
                // the result: the result never rides on an ack, and an ack
                // lost on the way gets the redelivery answered "over" and
                // acknowledged then.
                headers.insert(parts::ACK, ack.as_str());
            }
            match self.ask_raw("result", Some(headers), piece).await {
                Some(Answer::Go { .. }) => {}
                Some(Answer::Fenced { .. }) => {
                    say(format!(
                        "agent-33 worker: {}: result ignored (another worker owns attempt {})",
                        task.id, task.attempt
                    ));
                    return;
                }
                None => return,
            }
        }
    }
}

/// The pull requests a worker has out, oldest first, each holding the
/// slots it asked for: a message delivered takes one of the oldest
/// request's (the server serves a consumer's requests in order), and an
/// expired request gives back those it did not fill.
#[derive(Default)]
struct Asked {
    requests: VecDeque<(Instant, Vec<OwnedSemaphorePermit>)>,
}

impl Asked {
    fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    fn push(&mut self, permits: Vec<OwnedSemaphorePermit>) {
        self.requests.push_back((Instant::now(), permits));
    }

    /// The slot for a delivered message; `None` if no request is out
    /// (one given up on was answered after all).
    fn take(&mut self) -> Option<OwnedSemaphorePermit> {
        let (_, permits) = self.requests.front_mut()?;
        let permit = permits.pop();
        if permits.is_empty() {
            self.requests.pop_front();
        }
        permit
    }

    fn expire_oldest(&mut self) {
        self.requests.pop_front();
    }

    fn forget_older_than(&mut self, age: Duration) {
        while self
            .requests
            .front()
            .is_some_and(|(asked, _)| asked.elapsed() > age)
        {
            self.requests.pop_front();
        }
    }
}

fn one_result(results: agent33_parallel::ExecutionResults) -> Option<TaskResult> {
    results
        .succeeded
        .into_iter()
        .chain(results.failed)
        .chain(results.cancelled)
        .chain(results.skipped)
        .next()
}

fn report(execution: Execution, worker: &str, result: TaskResult) -> Report {
    let outcome = match result.status {
        TaskStatus::Success => Outcome::Success,
        TaskStatus::Failed | TaskStatus::Skipped => Outcome::Failed,
        TaskStatus::Timeout => Outcome::Timeout,
        TaskStatus::Cancelled => Outcome::Cancelled,
    };
    Report {
        execution,
        worker: worker.to_owned(),
        outcome,
        error: result.error,
        reason: result.reason,
        exit_code: result.exit_code,
        stdout: result.output,
        stderr: result.stderr,
        notes: result.notes,
        duration_ms: result.duration_ms,
        feedback: None,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(digest: Option<&str>, adhoc: bool) -> WorkerOptions {
        let make: AdhocAgents = Arc::new(|template: &str, _shell: bool| {
            if template.is_empty() {
                Err("empty".to_owned())
            } else {
                Ok(AgentMap::new())
            }
        });
        WorkerOptions {
            id: "w1".to_owned(),
            slots: 1,
            lease: None,
            manifest_digest: digest.map(str::to_owned),
            agents: AgentMap::new(),
            exchanges: ExchangeMap::new(),
            adhoc: adhoc.then_some(make),
        }
    }

    fn run(digest: Option<&str>, adhoc: Option<&str>) -> RunInfo {
        RunInfo {
            run: "r".to_owned(),
            done: false,
            manifest_digest: digest.map(str::to_owned),
            adhoc: adhoc.map(str::to_owned),
            adhoc_shell: false,
            lease_ms: 30_000,
            journal: None,
        }
    }

    #[test]
    fn a_delivery_takes_a_slot_of_the_oldest_request_and_an_expiry_frees_the_rest() {
        let slots = Arc::new(Semaphore::new(4));
        let permits = |n: usize| -> Vec<OwnedSemaphorePermit> {
            (0..n)
                .map(|_| Arc::clone(&slots).try_acquire_owned().expect("a free slot"))
                .collect()
        };
        let mut asked = Asked::default();
        asked.push(permits(2));
        asked.push(permits(1));
        assert_eq!(slots.available_permits(), 1);
        let running = asked.take().expect("the first request's slot");
        // The first request, filled halfway, expires: its other slot frees.
        asked.expire_oldest();
        assert_eq!(slots.available_permits(), 2);
        let second = asked.take().expect("the second request's slot");
        assert!(asked.is_empty());
        assert!(
            asked.take().is_none(),
            "a delivery nobody asked for has no slot"
        );
        drop((running, second));
        assert_eq!(slots.available_permits(), 4);
    }

    #[test]
    fn a_worker_takes_only_runs_of_its_manifest_and_allowed_ad_hoc_runs() {
        assert!(accept(&options(Some("d1"), false), &run(Some("d1"), None)).is_ok());
        let differs = accept(&options(Some("d1"), false), &run(Some("d2"), None));
        assert!(differs.is_err_and(|e| e.contains("manifest differs")));
        let none = accept(&options(None, false), &run(Some("d1"), None));
        assert!(none.is_err_and(|e| e.contains("no manifest")));
        let adhoc = accept(&options(Some("d1"), false), &run(None, Some("echo")));
        assert!(adhoc.is_err_and(|e| e.contains("--allow-adhoc")));
        assert!(accept(&options(None, true), &run(None, Some("echo"))).is_ok());
        assert!(accept(&options(None, true), &run(None, Some(""))).is_err());
    }
}
