//! The coordinator's side: a run announced to the workers, and the remote
//! agent that publishes each attempt and waits for its report.
//!
//! The coordinator is the authority on which execution owns an attempt: a
//! worker's claim, heartbeat and result are requests it answers, and only
//! the current execution's result is taken. It does not decide what runs
//! when: that stays the engine's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use agent33_parallel::{
    Agent, AgentError, AgentOutput, AgentResult, Reason, TaskContext, Timestamp,
};
use async_nats::HeaderMap;
use async_nats::jetstream::consumer;
use futures::StreamExt as _;
use futures::future::BoxFuture;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::Error;
use crate::connect::Connection;
use crate::parts;
use crate::wire::{self, Answer, Claim, Control, Execution, Hello, Outcome, Report, RunInfo};

/// How often workers hear that the coordinator is alive.
const ALIVE_EVERY: Duration = Duration::from_secs(3);
/// How long a live coordinator takes at most to answer "are you there?"
/// (a dead one's absence is told by the server at once: no responders).
const ALIVE_ANSWER: Duration = Duration::from_secs(2);
/// How long reading the run announcements may wait for the next one.
const ANNOUNCEMENT_WAIT: Duration = Duration::from_secs(2);
/// How often executions under a worker's own lease are checked for silence.
const SILENCE_CHECK: Duration = Duration::from_millis(100);

/// What a distributed run needs to know besides its tasks.
#[derive(Clone, Debug)]
pub struct CoordinatorOptions {
    /// How long a silent worker keeps a task before it is redelivered
    /// (the run's `--lease`, or the default).
    pub lease: Duration,
    /// Whether the run gave its lease. When it did not, a worker's own
    /// shorter `--lease` decides for the executions it claims: the
    /// coordinator treats one silent past it as lost. (A longer one is
    /// capped at `lease`, after which the server redelivers.)
    pub lease_given: bool,
    /// Digest of the manifest (manifest runs).
    pub manifest_digest: Option<String>,
    /// The command template (ad-hoc runs).
    pub adhoc: Option<String>,
    /// Whether the ad-hoc template runs with `sh -c`.
    pub adhoc_shell: bool,
    /// The run's global limit: the server-side backstop on delivered,
    /// unfinished messages.
    pub parallel_limit: usize,
    /// Grace between SIGTERM and SIGKILL, passed to the workers.
    pub kill_grace: Duration,
    /// Bytes of each stream a worker keeps.
    pub output_limit_bytes: usize,
    /// Identifies the run's journal (see [`RunInfo::journal`]): an
    /// earlier run of it whose coordinator is gone is ended at the start.
    pub journal: Option<String>,
}

/// One distributed run: its announcement, its consumer, and the requests
/// workers send it. Dropping it without [`Coordinator::finish`] leaves the
/// workers to notice the coordinator is gone.
pub struct Coordinator {
    hub: Arc<Hub>,
    accepted: watch::Receiver<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    ended: Vec<String>,
}

/// The state requests and agents share.
struct Hub {
    conn: Connection,
    run: String,
    options: CoordinatorOptions,
    attempts: Mutex<State>,
    /// Messages published so far: each attempt's message id is unique,
    /// also when a deferred attempt (a provider's refusal, not a new
    /// attempt) is published again under the same number.
    published: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Attempts waiting for their report, by (seq, attempt).
    waiting: HashMap<(u64, u32), Waiting>,
    /// Report parts received so far, by execution.
    partial: HashMap<Execution, Vec<u8>>,
}

struct Waiting {
    current: Option<Current>,
    /// The engine cancelled the attempt: a delivery not yet claimed must
    /// not start (its worker may have missed the cancel).
    cancelled: bool,
    /// Its execution fell silent past its worker's lease: it is being
    /// settled as lost, and nothing may claim it meanwhile.
    expired: bool,
    /// Told when a worker claims the attempt: where and when it started.
    started: Option<oneshot::Sender<Started>>,
    reply: Option<oneshot::Sender<Settled>>,
}

struct Current {
    delivered: u64,
    worker: String,
    since: Instant,
    /// The worker's own lease, when it decides (see
    /// [`CoordinatorOptions::lease_given`]).
    lease: Option<Duration>,
    /// When the execution was last heard of (claim or heartbeat).
    heard: Instant,
}

/// A worker took the attempt up.
struct Started {
    worker: String,
    instant: Instant,
    at: std::time::SystemTime,
}

/// How an attempt ended, as the agent returns it.
enum Settled {
    Report(Report),
    /// Its execution was lost (its worker fell silent past the lease, or
    /// handed it back): the engine runs the task again as a new attempt.
    Lost {
        worker: String,
        after: Duration,
    },
}

impl Coordinator {
    /// Announces a run on `conn` and starts answering its workers.
    ///
    /// # Errors
    ///
    /// [`Error::JetStream`] when the run's consumer or announcement cannot
    /// be made.
    pub async fn start(conn: Connection, options: CoordinatorOptions) -> Result<Self, Error> {
        let run = new_run_id();
        let ended = match &options.journal {
            Some(journal) => end_dead_runs_of(&conn, journal).await?,
            None => Vec::new(),
        };
        let hub = Arc::new(Hub {
            conn: conn.clone(),
            run: run.clone(),
            options,
            attempts: Mutex::new(State::default()),
            published: AtomicU64::new(0),
        });
        let requests = conn
            .client
            .subscribe(wire::coordinator_subject(&run, "*"))
            .await
            .map_err(|e| Error::js("subscribe to worker requests", e))?;
        let tasks_stream = conn
            .js
            .get_stream(wire::TASKS_STREAM)
            .await
            .map_err(|e| Error::js(format!("open stream {}", wire::TASKS_STREAM), e))?;
        tasks_stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(wire::consumer_name(&run)),
                filter_subject: wire::run_tasks_filter(&run),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: hub.options.lease,
                // Lost executions are counted and bounded here, where the
                // note naming the worker is written.
                max_deliver: -1,
                // A backstop only: the engine admits at most this many.
                max_ack_pending: i64::try_from(hub.options.parallel_limit.max(1))
                    .unwrap_or(i64::MAX),
                ..consumer::pull::Config::default()
            })
            .await
            .map_err(|e| Error::js(format!("create consumer {}", wire::consumer_name(&run)), e))?;
        let (accepted_tx, accepted) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(Arc::clone(&hub).serve(requests, accepted_tx))];
        hub.announce(false).await?;
        tasks.push(tokio::spawn(Arc::clone(&hub).keep_alive()));
        if !hub.options.lease_given {
            tasks.push(tokio::spawn(Arc::clone(&hub).watch_silence()));
        }
        Ok(Self {
            hub,
            accepted,
            tasks,
            ended,
        })
    }

    /// The earlier runs of this run's journal that [`Self::start`] ended
    /// on the workers, their coordinators being gone (a `--resume` after
    /// the coordinator died): their queued messages were removed and
    /// their running executions stopped, so that they hold no slot.
    #[must_use]
    pub fn ended_runs(&self) -> &[String] {
        &self.ended
    }

    /// The run's id.
    #[must_use]
    pub fn run_id(&self) -> &str {
        &self.hub.run
    }

    /// The run's remote agent (one serves every agent name: the worker
    /// resolves the name).
    #[must_use]
    pub fn agent(&self) -> RemoteAgent {
        RemoteAgent {
            hub: Arc::clone(&self.hub),
        }
    }

    /// Resolves when no worker has accepted the run within `wait`, with
    /// the reason to stop it; pends forever once one has.
    pub async fn unaccepted_after(&self, wait: Duration) -> String {
        let mut accepted = self.accepted.clone();
        let in_time =
            tokio::time::timeout(wait, async { accepted.wait_for(|yes| *yes).await.is_ok() })
                .await
                .unwrap_or(false);
        if in_time {
            return std::future::pending().await;
        }
        if self.hub.options.adhoc.is_some() {
            "no worker accepts ad-hoc runs (start one with --allow-adhoc)".to_owned()
        } else {
            "no worker accepts this manifest".to_owned()
        }
    }

    /// Ends the run: workers stop everything of it and take nothing more;
    /// its queued messages and consumer are removed.
    pub async fn finish(&self) {
        let _ = end_run(&self.hub.conn, &self.hub.run_info(true)).await;
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Hub {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding it leaves plain maps behind, still usable.
        self.attempts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run_info(&self, done: bool) -> RunInfo {
        RunInfo {
            run: self.run.clone(),
            done,
            manifest_digest: self.options.manifest_digest.clone(),
            adhoc: self.options.adhoc.clone(),
            adhoc_shell: self.options.adhoc_shell,
            lease_ms: millis(self.options.lease),
            journal: self.options.journal.clone(),
        }
    }

    async fn announce(&self, done: bool) -> Result<(), Error> {
        announce(&self.conn, &self.run_info(done)).await
    }

    async fn control(&self, control: &Control) -> Result<(), Error> {
        control_run(&self.conn, &self.run, control).await
    }

    /// Removes the message of task `seq` from the work queue, if still there.
    async fn purge(&self, seq: u64) {
        if let Ok(stream) = self.conn.js.get_stream(wire::TASKS_STREAM).await {
            let _ = stream
                .purge()
                .filter(wire::task_subject(&self.run, seq))
                .await;
        }
    }

    async fn keep_alive(self: Arc<Self>) {
        let mut every = tokio::time::interval(ALIVE_EVERY);
        loop {
            every.tick().await;
            let _ = self.control(&Control::Alive).await;
        }
    }

    /// Answers the workers' requests, one at a time, in arrival order.
    async fn serve(
        self: Arc<Self>,
        mut requests: async_nats::Subscriber,
        accepted: watch::Sender<bool>,
    ) {
        while let Some(message) = requests.next().await {
            let what = message
                .subject
                .as_str()
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_owned();
            let answer = match what.as_str() {
                "hello" => {
                    if let Ok(hello) = wire::decode::<Hello>(&message.subject, &message.payload)
                        && hello.refused.is_none()
                    {
                        accepted.send_replace(true);
                    }
                    None
                }
                "claim" => wire::decode::<Claim>(&message.subject, &message.payload)
                    .ok()
                    .map(|claim| self.claim(&claim)),
                "beat" => wire::decode::<Execution>(&message.subject, &message.payload)
                    .ok()
                    .map(|execution| self.beat(&execution)),
                "back" => wire::decode::<(Execution, String)>(&message.subject, &message.payload)
                    .ok()
                    .map(|(execution, _worker)| self.hand_back(&execution)),
                "result" => {
                    let (answer, taken) = self.result_part(&message);
                    if let Some(taken) = taken {
                        // Acknowledged first, on this connection: the run's
                        // next message, published once the engine hears of
                        // this result, then finds the server's count of
                        // unacknowledged messages (the backstop limit)
                        // already lowered, and the worker need not ack.
                        if let Some(ack) = taken.ack {
                            let _ = self
                                .conn
                                .client
                                .publish(ack, bytes::Bytes::from_static(b"+ACK"))
                                .await;
                        }
                        let _ = taken.reply.send(Settled::Report(taken.report));
                    }
                    Some(answer)
                }
                // A later run of the same journal asks before ending ours.
                "alive" => Some(Answer::Go { executions: 0 }),
                _ => None,
            };
            if let (Some(answer), Some(reply)) = (answer, message.reply) {
                let _ = self.conn.client.publish(reply, wire::encode(&answer)).await;
            }
        }
    }

    fn claim(&self, claim: &Claim) -> Answer {
        let mut state = self.state();
        let Some(entry) = state.waiting.get_mut(&(claim.seq, claim.attempt)) else {
            return Answer::Fenced { over: true };
        };
        if entry.cancelled || entry.expired || entry.reply.is_none() {
            return Answer::Fenced { over: true };
        }
        if let Some(current) = &entry.current {
            if current.delivered >= claim.delivered {
                // A stale delivery claiming late: the newer one owns it.
                return Answer::Fenced { over: false };
            }
            // A newer delivery: the server gave up on the current one, its
            // lease passed without a heartbeat. The engine runs the task
            // again as a new attempt (a new message); this one is over.
            let lost = Settled::Lost {
                worker: current.worker.clone(),
                after: current.since.elapsed(),
            };
            entry.current = None;
            if let Some(reply) = entry.reply.take() {
                let _ = reply.send(lost);
            }
            return Answer::Fenced { over: true };
        }
        let now = Instant::now();
        let lease = (!self.options.lease_given)
            .then(|| claim.lease_ms.map(Duration::from_millis))
            .flatten()
            .filter(|own| *own < self.options.lease);
        entry.current = Some(Current {
            delivered: claim.delivered,
            worker: claim.worker.clone(),
            since: now,
            lease,
            heard: now,
        });
        if let Some(started) = entry.started.take() {
            let _ = started.send(Started {
                worker: claim.worker.clone(),
                instant: now,
                at: std::time::SystemTime::now(),
            });
        }
        Answer::Go {
            executions: claim.attempt,
        }
    }

    /// Whether `execution` is its attempt's current one.
    fn owns(state: &State, execution: &Execution) -> Answer {
        match state.waiting.get(&(execution.seq, execution.attempt)) {
            None => Answer::Fenced { over: true },
            Some(w) if w.reply.is_none() => Answer::Fenced { over: true },
            Some(w) => match &w.current {
                Some(c) if c.delivered == execution.delivered => Answer::Go { executions: 0 },
                _ => Answer::Fenced { over: false },
            },
        }
    }

    fn beat(&self, execution: &Execution) -> Answer {
        let mut state = self.state();
        let answer = Self::owns(&state, execution);
        if matches!(answer, Answer::Go { .. })
            && let Some(entry) = state.waiting.get_mut(&(execution.seq, execution.attempt))
            && let Some(current) = entry.current.as_mut()
        {
            current.heard = Instant::now();
        }
        answer
    }

    /// Settles as lost every execution silent past its worker's own
    /// lease (the server, which knows only the run's lease, would wait
    /// longer). Its message is removed first, freeing its server-side
    /// slot before the engine publishes the next attempt on its subject;
    /// the silent worker, should it come back, is fenced. Silence counts
    /// only while this side is connected: a server away is no worker's
    /// fault.
    async fn watch_silence(self: Arc<Self>) {
        let mut every = tokio::time::interval(SILENCE_CHECK);
        loop {
            every.tick().await;
            let connected =
                self.conn.client.connection_state() == async_nats::connection::State::Connected;
            let mut lost = Vec::new();
            {
                let mut state = self.state();
                for (key, entry) in &mut state.waiting {
                    let Some(current) = entry.current.as_mut() else {
                        continue;
                    };
                    if !connected {
                        current.heard = Instant::now();
                        continue;
                    }
                    if current
                        .lease
                        .is_some_and(|lease| current.heard.elapsed() > lease)
                        && let Some(current) = entry.current.take()
                    {
                        entry.expired = true;
                        lost.push((*key, current));
                    }
                }
            }
            for ((seq, attempt), current) in lost {
                self.purge(seq).await;
                if let Some(reply) = self
                    .state()
                    .waiting
                    .get_mut(&(seq, attempt))
                    .and_then(|entry| entry.reply.take())
                {
                    let _ = reply.send(Settled::Lost {
                        worker: current.worker,
                        after: current.since.elapsed(),
                    });
                }
            }
        }
    }

    fn hand_back(&self, execution: &Execution) -> Answer {
        let mut state = self.state();
        let answer = Self::owns(&state, execution);
        if matches!(answer, Answer::Go { .. })
            && let Some(entry) = state.waiting.get_mut(&(execution.seq, execution.attempt))
            && let Some(current) = entry.current.take()
            && let Some(reply) = entry.reply.take()
        {
            let _ = reply.send(Settled::Lost {
                worker: current.worker,
                after: current.since.elapsed(),
            });
        }
        answer
    }

    /// One part of a result. The last one of the attempt's current
    /// execution is taken: returned with the attempt's reply, for the
    /// caller to send once it acknowledged the message.
    fn result_part(&self, message: &async_nats::Message) -> (Answer, Option<Taken>) {
        let headers = message.headers.as_ref();
        let Some(execution) = headers
            .and_then(|h| h.get(parts::EXECUTION))
            .and_then(|v| parse_execution(v.as_str()))
        else {
            return (Answer::Fenced { over: true }, None);
        };
        let more = headers.is_some_and(|h| h.get(parts::MORE).is_some());
        let mut state = self.state();
        let answer = Self::owns(&state, &execution);
        if !matches!(answer, Answer::Go { .. }) {
            state.partial.remove(&execution);
            return (answer, None);
        }
        let mut body = state.partial.remove(&execution).unwrap_or_default();
        body.extend_from_slice(&message.payload);
        if more {
            state.partial.insert(execution, body);
            return (answer, None);
        }
        let Ok(report) = wire::decode::<Report>(&message.subject, &body) else {
            return (Answer::Fenced { over: false }, None);
        };
        let entry = state
            .waiting
            .get_mut(&(execution.seq, execution.attempt))
            .expect("owns() found the attempt waiting");
        entry.current = None;
        let taken = entry.reply.take().map(|reply| Taken {
            reply,
            report,
            ack: headers
                .and_then(|h| h.get(parts::ACK))
                .map(|v| v.as_str().to_owned()),
        });
        (answer, taken)
    }
}

/// A result taken as its attempt's outcome.
struct Taken {
    reply: oneshot::Sender<Settled>,
    report: Report,
    /// Where to acknowledge the task message.
    ack: Option<String>,
}

/// Publishes a run's announcement and waits for the server to keep it.
async fn announce(conn: &Connection, info: &RunInfo) -> Result<(), Error> {
    conn.js
        .publish(wire::run_subject(&info.run), wire::encode(info))
        .await
        .map_err(|e| Error::js("announce the run", e))?
        .await
        .map_err(|e| Error::js("announce the run", e))?;
    Ok(())
}

async fn control_run(conn: &Connection, run: &str, control: &Control) -> Result<(), Error> {
    conn.client
        .publish(wire::control_subject(run), wire::encode(control))
        .await
        .map_err(|e| Error::js("publish a control message", e))?;
    // Sent now, not with the next batch: a cancel is latency-bound.
    conn.client
        .flush()
        .await
        .map_err(|e| Error::js("flush a control message", e))
}

/// Ends a run on the workers: they stop everything of it and take nothing
/// more (told at once, and by its announcement for those that were not
/// listening); its queued messages and its consumer are removed, which
/// frees the server-side slots they held.
async fn end_run(conn: &Connection, info: &RunInfo) -> Result<(), Error> {
    let _ = control_run(conn, &info.run, &Control::Stop).await;
    let announced = announce(
        conn,
        &RunInfo {
            done: true,
            ..info.clone()
        },
    )
    .await;
    if let Ok(stream) = conn.js.get_stream(wire::TASKS_STREAM).await {
        let _ = stream
            .purge()
            .filter(wire::run_tasks_filter(&info.run))
            .await;
        let _ = stream
            .delete_consumer(&wire::consumer_name(&info.run))
            .await;
    }
    let _ = conn.client.flush().await;
    announced
}

/// Ends the runs of `journal` that are announced as running but whose
/// coordinator is gone (killed before it could end them), and returns
/// their ids. A coordinator that still answers is left alone.
async fn end_dead_runs_of(conn: &Connection, journal: &str) -> Result<Vec<String>, Error> {
    let mut ended = Vec::new();
    for info in running_runs(conn).await? {
        if info.journal.as_deref() != Some(journal) || !coordinator_gone(conn, &info.run).await {
            continue;
        }
        end_run(conn, &info).await?;
        ended.push(info.run);
    }
    Ok(ended)
}

/// The runs announced and not ended, read from the run stream (the last
/// announcement of each run).
async fn running_runs(conn: &Connection) -> Result<Vec<RunInfo>, Error> {
    let what = || format!("read the runs in stream {}", wire::RUNS_STREAM);
    let mut stream = conn
        .js
        .get_stream(wire::RUNS_STREAM)
        .await
        .map_err(|e| Error::js(what(), e))?;
    let held = stream.info().await.map_err(|e| Error::js(what(), e))?;
    if held.state.messages == 0 {
        return Ok(Vec::new());
    }
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: "a33.run.>".to_owned(),
            deliver_policy: consumer::DeliverPolicy::LastPerSubject,
            ..consumer::pull::OrderedConfig::default()
        })
        .await
        .map_err(|e| Error::js(what(), e))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| Error::js(what(), e))?;
    let mut running = Vec::new();
    // Each message says how many follow it; a silent stream (none left,
    // or a server going away) ends the read after a bound.
    while let Ok(Some(Ok(message))) = tokio::time::timeout(ANNOUNCEMENT_WAIT, messages.next()).await
    {
        if let Ok(info) = wire::decode::<RunInfo>(&message.subject, &message.payload)
            && !info.done
        {
            running.push(info);
        }
        if message.info().map_or(true, |i| i.pending == 0) {
            break;
        }
    }
    Ok(running)
}

/// Whether a run's coordinator is gone. The server says "no responders"
/// at once when nobody listens on its subjects, so a dead coordinator
/// costs no wait; a slow answer (a loaded machine) is not taken for death.
pub(crate) async fn coordinator_gone(conn: &Connection, run: &str) -> bool {
    let asked = conn
        .client
        .request(wire::coordinator_subject(run, "alive"), bytes::Bytes::new());
    matches!(
        tokio::time::timeout(ALIVE_ANSWER, asked).await,
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders
    )
}

fn parse_execution(text: &str) -> Option<Execution> {
    let mut it = text.split('.');
    let execution = Execution {
        seq: it.next()?.parse().ok()?,
        attempt: it.next()?.parse().ok()?,
        delivered: it.next()?.parse().ok()?,
    };
    it.next().is_none().then_some(execution)
}

/// The header value naming an execution.
pub(crate) fn execution_header(execution: &Execution) -> String {
    format!(
        "{}.{}.{}",
        execution.seq, execution.attempt, execution.delivered
    )
}

/// The agent of a distributed run: one attempt is one message on the
/// run's work queue, and its result is the report of the execution that
/// claimed it. The attempt's timeout counts from that claim (the engine's
/// and the worker's alike), not from the publish.
#[derive(Clone)]
pub struct RemoteAgent {
    hub: Arc<Hub>,
}

impl RemoteAgent {
    /// Runs one attempt on a worker, like [`Agent::run`], and returns with
    /// its result the feedback of the worker's [`crate::Exchange`] agent
    /// (`None` from other agents, and when no report came).
    pub async fn attempt(&self, ctx: &TaskContext) -> (AgentResult, Option<serde_json::Value>) {
        attempt(Arc::clone(&self.hub), ctx).await
    }
}

impl Agent for RemoteAgent {
    fn run(&self, ctx: TaskContext) -> BoxFuture<'static, AgentResult> {
        let hub = Arc::clone(&self.hub);
        Box::pin(async move { attempt(hub, &ctx).await.0 })
    }
}

/// Forgets the attempt however its future ends (it may be dropped after
/// the grace): a late report is then fenced, and a message still queued
/// is removed so that it holds no slot on the server.
struct Forget {
    hub: Arc<Hub>,
    key: (u64, u32),
    settled: bool,
}

impl Drop for Forget {
    fn drop(&mut self) {
        self.hub.state().waiting.remove(&self.key);
        if !self.settled {
            let hub = Arc::clone(&self.hub);
            let (seq, attempt) = self.key;
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = hub.control(&Control::Cancel { seq, attempt }).await;
                    hub.purge(seq).await;
                });
            }
        }
    }
}

async fn attempt(hub: Arc<Hub>, ctx: &TaskContext) -> (AgentResult, Option<serde_json::Value>) {
    let key = (ctx.seq(), ctx.attempt());
    let (reply, settled) = oneshot::channel();
    let (started_tx, mut started) = oneshot::channel();
    hub.state().waiting.insert(
        key,
        Waiting {
            current: None,
            cancelled: false,
            expired: false,
            started: Some(started_tx),
            reply: Some(reply),
        },
    );
    let mut forget = Forget {
        hub: Arc::clone(&hub),
        key,
        settled: false,
    };
    let task = ctx.task();
    let message = wire::TaskMessage {
        seq: key.0,
        attempt: key.1,
        id: task.id.as_str().to_owned(),
        agent: task.agent.as_str().to_owned(),
        artifact: task.artifact.clone(),
        timeout_ms: ctx.timeout().filter(|t| !t.is_zero()).map(millis),
        kill_grace_ms: millis(hub.options.kill_grace),
        output_limit_bytes: hub.options.output_limit_bytes,
    };
    // Its timeout waits while the message waits for a worker.
    ctx.report_queued();
    let token = ctx.token().clone();
    tokio::select! {
        published = publish(&hub, &message, hub.published.fetch_add(1, Ordering::Relaxed)) => {
            if let Err(e) = published {
                return (Err(e), None);
            }
        }
        () = token.cancelled() => return (Err(AgentError::new("cancelled before it was sent")), None),
    }
    let mut settled_rx = settled;
    let mut waiting_start = true;
    let settled = loop {
        tokio::select! {
            settled = &mut settled_rx => break settled,
            start = &mut started, if waiting_start => {
                waiting_start = false;
                if let Ok(start) = start {
                    ctx.report_worker(start.worker);
                    ctx.report_start(start.instant, Timestamp(start.at));
                }
            }
            () = token.cancelled() => {
                // The worker stops the process group (SIGTERM, the grace,
                // SIGKILL) and reports; the engine drops us after the grace.
                // A worker that claims after this never starts it; one that
                // claimed before has registered for the cancel.
                let claimed = hub.state().waiting.get_mut(&key).is_some_and(|entry| {
                    entry.cancelled = true;
                    entry.current.is_some()
                });
                let _ = hub.control(&Control::Cancel { seq: key.0, attempt: key.1 }).await;
                forget.settled = true;
                // Not yet delivered: removed before anyone takes it.
                hub.purge(key.0).await;
                if !claimed {
                    // Nothing runs it, and nothing will: no report to wait for.
                    return (Err(AgentError::new("cancelled")), None);
                }
                return match settled_rx.await {
                    Ok(settled) => into_result(ctx, settled),
                    Err(_) => (Err(AgentError::new("cancelled")), None),
                };
            }
        }
    };
    forget.settled = true;
    match settled {
        Ok(settled) => into_result(ctx, settled),
        Err(_) => (
            Err(AgentError::new("the run's coordinator lost the attempt")),
            None,
        ),
    }
}

/// Publishes an attempt, again after a failure (a server restart): the
/// message id (`number` is the publication's) makes a repeat one message.
async fn publish(hub: &Hub, message: &wire::TaskMessage, number: u64) -> Result<(), AgentError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        "Nats-Msg-Id",
        format!("{}/{}/{}/{number}", hub.run, message.seq, message.attempt).as_str(),
    );
    let body = wire::encode(message);
    let subject = wire::task_subject(&hub.run, message.seq);
    let mut wait = Duration::from_millis(100);
    loop {
        let sent = hub
            .conn
            .js
            .publish_with_headers(subject.clone(), headers.clone(), body.clone())
            .await;
        let acked = match sent {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match acked {
            Ok(()) => return Ok(()),
            Err(_) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
    }
}

fn into_result(ctx: &TaskContext, settled: Settled) -> (AgentResult, Option<serde_json::Value>) {
    match settled {
        Settled::Lost { worker, after } => (
            Err(
                AgentError::new(format!("worker {worker} lost")).because(Reason::ExecutionLost {
                    worker: Some(worker),
                    after,
                }),
            ),
            None,
        ),
        Settled::Report(report) => {
            let feedback = report.feedback;
            // The worker's tail is the output, whatever streamed before.
            ctx.report_worker(report.worker);
            ctx.report_output(report.stdout, report.stderr);
            let output = AgentOutput {
                exit_code: report.exit_code,
                notes: report.notes,
                ..AgentOutput::default()
            };
            let result = match report.outcome {
                Outcome::Success => Ok(output),
                Outcome::Failed | Outcome::Timeout | Outcome::Cancelled => {
                    let error = AgentError::with_output(report.error.unwrap_or_default(), output);
                    let reason = report.reason.or(match report.outcome {
                        Outcome::Timeout => Some(Reason::Timeout { limit: None }),
                        _ => None,
                    });
                    Err(match reason {
                        Some(reason) => error.because(reason),
                        None => error,
                    })
                }
            };
            (result, feedback)
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A run id that is a subject token and unique enough across machines:
/// the time in nanoseconds and the pid.
fn new_run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}{:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_execution_header_reads_back() {
        let execution = Execution {
            seq: 12,
            attempt: 2,
            delivered: 3,
        };
        assert_eq!(
            parse_execution(&execution_header(&execution)),
            Some(execution)
        );
        assert_eq!(parse_execution("1.2"), None);
        assert_eq!(parse_execution("1.2.3.4"), None);
        assert_eq!(parse_execution("a.2.3"), None);
    }
}
