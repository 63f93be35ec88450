//! Builders for event sequences and a shared in-memory writer.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use agent33_parallel::{
    AgentTask, Event, Metrics, RunTotals, StopReason, Stream, TaskId, TaskResult, TaskStatus,
    Timer, Timestamp,
};

/// 2026-01-01T00:00:00Z plus `ms`.
pub fn at(ms: u64) -> Timestamp {
    Timestamp(SystemTime::UNIX_EPOCH + Duration::from_millis(1_767_225_600_000 + ms))
}

/// A writer whose bytes the test can read while a reporter owns it.
#[derive(Clone, Default)]
pub struct SharedBuf(pub Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }

    pub fn boxed(&self) -> Box<dyn Write + Send> {
        Box::new(self.clone())
    }
}

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer whose reader has gone away.
pub struct ClosedPipe;

impl Write for ClosedPipe {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::BrokenPipe.into())
    }

    fn flush(&mut self) -> io::Result<()> {
        Err(io::ErrorKind::BrokenPipe.into())
    }
}

pub fn task(agent: &str, artifact: &str) -> Arc<AgentTask> {
    Arc::new(AgentTask::new(agent, artifact))
}

/// How a hand-made task ends.
pub struct Outcome {
    pub status: TaskStatus,
    pub error: Option<String>,
    pub exit_code: Option<i32>,
    pub output: String,
    pub stderr: String,
    pub notes: Vec<String>,
    pub worker: Option<String>,
}

impl Outcome {
    pub fn success() -> Self {
        Self {
            status: TaskStatus::Success,
            error: None,
            exit_code: Some(0),
            output: String::new(),
            stderr: String::new(),
            notes: Vec::new(),
            worker: None,
        }
    }

    pub fn failed(code: i32) -> Self {
        Self {
            status: TaskStatus::Failed,
            error: Some(format!("exit code {code}")),
            exit_code: Some(code),
            ..Self::success()
        }
    }

    pub fn timeout(limit: &str) -> Self {
        Self {
            status: TaskStatus::Timeout,
            error: Some(format!("timed out after {limit}")),
            exit_code: None,
            ..Self::success()
        }
    }

    pub fn on(mut self, worker: &str) -> Self {
        self.worker = Some(worker.to_owned());
        self
    }

    pub fn output(mut self, stdout: &str, stderr: &str) -> Self {
        self.output = stdout.to_owned();
        self.stderr = stderr.to_owned();
        self
    }
}

/// Builds a run's events in order, tracking metrics the way the engine does.
pub struct RunBuilder {
    pub events: Vec<Event>,
    tasks: BTreeMap<u64, (Arc<AgentTask>, u64, u32)>,
    limit: usize,
    counts: [u64; 5],
    retries: u64,
    task_ms: Timer,
    wait_ms: Timer,
}

impl RunBuilder {
    pub fn start(total: Option<usize>, limit: usize) -> Self {
        Self {
            events: vec![Event::RunStarted {
                total,
                parallel_limit: limit,
                at: at(0),
            }],
            tasks: BTreeMap::new(),
            limit,
            counts: [0; 5],
            retries: 0,
            task_ms: Timer::default(),
            wait_ms: Timer::default(),
        }
    }

    pub fn queue(&mut self, seq: u64, agent: &str, artifact: &str) -> TaskId {
        self.queue_task(seq, task(agent, artifact))
    }

    /// Queues a task with an id of its own: a repeated artifact's
    /// (`command:x#2`) or a manifest's `id:`.
    pub fn queue_with_id(&mut self, seq: u64, agent: &str, artifact: &str, id: &str) -> TaskId {
        self.queue_task(seq, Arc::new(AgentTask::new(agent, artifact).with_id(id)))
    }

    fn queue_task(&mut self, seq: u64, t: Arc<AgentTask>) -> TaskId {
        let id = t.id.clone();
        self.events.push(Event::TaskQueued {
            seq,
            task: Arc::clone(&t),
        });
        self.tasks.insert(seq, (t, 0, 0));
        id
    }

    pub fn start_task(&mut self, seq: u64, slot: usize, at_ms: u64, waited_ms: u64) {
        let (t, first, attempts) = self.tasks.get_mut(&seq).expect("queued");
        if *attempts == 0 {
            *first = at_ms;
            self.wait_ms.record(waited_ms as f64);
        }
        *attempts += 1;
        self.events.push(Event::TaskStarted {
            seq,
            id: t.id.clone(),
            attempt: *attempts,
            slot,
            waited: Duration::from_millis(waited_ms),
            at: at(at_ms),
        });
    }

    pub fn output(&mut self, seq: u64, stream: Stream, bytes: &[u8]) {
        let id = self.tasks[&seq].0.id.clone();
        self.events.push(Event::TaskOutput {
            seq,
            id,
            stream,
            bytes: bytes.to_vec(),
        });
    }

    /// Ends a started task's attempt as failed; it runs again a second later.
    pub fn retry(&mut self, seq: u64, slot: usize, at_ms: u64, error: &str) {
        self.retry_as(seq, slot, at_ms, TaskStatus::Failed, error);
    }

    /// Ends a started task's attempt with `status`; it runs again a second later.
    pub fn retry_as(&mut self, seq: u64, slot: usize, at_ms: u64, status: TaskStatus, error: &str) {
        self.retry_on(seq, slot, at_ms, status, error, None);
    }

    /// Ends a started task's attempt with `status`, as run on `worker`.
    pub fn retry_on(
        &mut self,
        seq: u64,
        slot: usize,
        at_ms: u64,
        status: TaskStatus,
        error: &str,
        worker: Option<&str>,
    ) {
        let (t, _, attempts) = &self.tasks[&seq];
        self.events.push(Event::TaskRetryScheduled {
            seq,
            id: t.id.clone(),
            attempt: *attempts,
            status,
            reason: None,
            error: error.to_owned(),
            slot,
            delay: Duration::from_secs(1),
            at: at(at_ms),
            started_at: None,
            worker: worker.map(str::to_owned),
        });
    }

    /// Ends a started task's attempt as refused before doing any work (a
    /// rate limit): not an attempt, so the next start has its number.
    pub fn defer(&mut self, seq: u64, slot: usize, at_ms: u64, count: u32) {
        let (t, _, attempts) = self.tasks.get_mut(&seq).expect("queued");
        *attempts -= 1;
        self.events.push(Event::TaskDeferred {
            seq,
            id: t.id.clone(),
            slot,
            retry_after: Some(Duration::from_millis(500)),
            count,
            at: at(at_ms),
        });
    }

    /// Finishes a started task at `end_ms`.
    pub fn finish_task(&mut self, seq: u64, slot: usize, end_ms: u64, outcome: Outcome) {
        let (t, first, attempts) = self.tasks.remove(&seq).expect("queued");
        assert!(attempts > 0, "finish_task is for started tasks");
        let duration_ms = end_ms - first;
        self.task_ms.record(duration_ms as f64);
        self.retries += u64::from(attempts - 1);
        self.count(outcome.status);
        self.events.push(Event::TaskFinished {
            seq,
            slot: Some(slot),
            attempt_started_at: None,
            result: Box::new(TaskResult {
                task: t,
                status: outcome.status,
                duration_ms,
                output: outcome.output,
                stderr: outcome.stderr,
                error: outcome.error,
                exit_code: outcome.exit_code,
                attempts,
                started_at: Some(at(first)),
                finished_at: Some(at(end_ms)),
                worker: outcome.worker,
                reason: None,
                notes: outcome.notes,
                resumed: false,
                usage: None,
                cost_usd: None,
            }),
        });
    }

    /// Ends a task the way the engine reports one a journal showed had
    /// already succeeded: its earlier run's result, never started here.
    pub fn resume(&mut self, seq: u64, duration_ms: u64) {
        let (t, _, _) = self.tasks.remove(&seq).expect("queued");
        self.count(TaskStatus::Success);
        // The earlier run was an hour ago.
        let earlier =
            |ms: u64| Timestamp(at(0).0 - Duration::from_secs(3_600) + Duration::from_millis(ms));
        self.events.push(Event::TaskFinished {
            seq,
            slot: None,
            attempt_started_at: None,
            result: Box::new(TaskResult {
                task: t,
                status: TaskStatus::Success,
                duration_ms,
                output: String::new(),
                stderr: String::new(),
                error: None,
                exit_code: Some(0),
                attempts: 1,
                started_at: Some(earlier(0)),
                finished_at: Some(earlier(duration_ms)),
                worker: None,
                reason: None,
                notes: Vec::new(),
                resumed: true,
                usage: None,
                cost_usd: None,
            }),
        });
    }

    /// Ends a task that never started (cancelled or skipped).
    pub fn settle(&mut self, seq: u64, status: TaskStatus, error: &str) {
        let (t, _, _) = self.tasks.remove(&seq).expect("queued");
        self.count(status);
        self.events.push(Event::TaskFinished {
            seq,
            slot: None,
            attempt_started_at: None,
            result: Box::new(TaskResult::not_started(t, status, error.to_owned())),
        });
    }

    pub fn stopping(&mut self, reason: StopReason) {
        self.events.push(Event::RunStopTriggered { reason });
    }

    fn count(&mut self, status: TaskStatus) {
        self.counts[status.index()] += 1;
    }

    /// Ends the run with the given wall time, peak and utilization.
    pub fn finish(
        mut self,
        duration_ms: u64,
        peak: usize,
        utilization: f64,
        stopped: Option<StopReason>,
    ) -> Vec<Event> {
        let mut m = Metrics::default();
        let [s, f, t, c, k] = self.counts;
        for (name, value) in [
            ("tasks_total", s + f + t + c + k),
            ("tasks_succeeded", s),
            ("tasks_failed", f),
            ("tasks_timeout", t),
            ("tasks_cancelled", c),
            ("tasks_skipped", k),
            ("task_retry_count", self.retries),
        ] {
            m.counters.insert(name.to_owned(), value);
        }
        m.gauges
            .insert("parallel_limit".to_owned(), self.limit as f64);
        m.gauges.insert("parallel_peak".to_owned(), peak as f64);
        m.gauges
            .insert("parallel_utilization".to_owned(), utilization);
        let mut run = Timer::default();
        run.record(duration_ms as f64);
        m.timers
            .insert("execution_duration_ms".to_owned(), run.summary());
        m.timers
            .insert("task_duration_ms".to_owned(), self.task_ms.summary());
        m.timers
            .insert("semaphore_wait_ms".to_owned(), self.wait_ms.summary());
        self.events.push(Event::RunFinished {
            duration_ms,
            stopped,
            totals: RunTotals {
                by_status: self.counts,
                retries: self.retries,
            },
            metrics: m,
        });
        self.events
    }
}

/// PRODUCT.md's example run: 12 tasks on 4 slots, 10 succeeded, one failed
/// (exit code 1), one timed out; 45.3 s wall, 3.8 s average, 78 %, peak 4.
pub fn product_example() -> Vec<Event> {
    let mut run = RunBuilder::start(Some(12), 4);
    let artifacts = [
        ("refinement", "core/templates/a.md"),
        ("refinement", "core/templates/b.md"),
        ("refinement", "core/templates/c.md"),
        ("validation", "core/agents/worker.md"),
        ("refinement", "core/templates/d.md"),
        ("validation", "core/agents/planner.md"),
        ("validation", "core/agents/critic.md"),
        ("refinement", "core/prompts/SYSTEM.md"),
        ("validation", "core/agents/a.md"),
        ("validation", "core/agents/b.md"),
        ("validation", "core/agents/c.md"),
        ("validation", "core/agents/d.md"),
    ];
    for (seq, (agent, artifact)) in (0u64..).zip(artifacts) {
        run.queue(seq, agent, artifact);
    }
    // Durations sum to 45.6 s over 12 started tasks: 3.8 s on average.
    // Four lanes; each task starts when its lane frees.
    let durations: [u64; 12] = [
        3630, 3630, 3630, 300, 3630, 3630, 3630, 9000, 3630, 3630, 3630, 3630,
    ];
    let mut lanes = [0u64; 4];
    for (seq, d) in (0u64..).zip(durations) {
        let slot = (0..4).min_by_key(|&s| (lanes[s], s)).expect("four lanes");
        let start = lanes[slot];
        run.start_task(seq, slot, start, start);
        let outcome = match seq {
            3 => Outcome::failed(1).output("checking worker.md\n", "worker.md:3: missing title\n"),
            7 => Outcome::timeout("300s").output("refining…\n", ""),
            _ => Outcome::success().output(&format!("ok {seq}\n"), ""),
        };
        run.finish_task(seq, slot, start + d, outcome);
        lanes[slot] = start + d;
    }
    run.finish(45_300, 4, 0.78, None)
}

impl Outcome {
    pub fn cancelled(reason: &str) -> Self {
        Self {
            status: TaskStatus::Cancelled,
            error: Some(format!("cancelled: {reason}")),
            exit_code: None,
            ..Self::success()
        }
    }

    pub fn error(mut self, error: &str) -> Self {
        self.error = Some(error.to_owned());
        self
    }

    /// The agent's remarks, as the command agent words them.
    pub fn notes(mut self, notes: &[&str]) -> Self {
        self.notes = notes.iter().map(|n| (*n).to_owned()).collect();
        self
    }
}

/// The artifact name an attacker would pick for a page that pastes names
/// into HTML.
pub const MALICIOUS: &str = "</script><img src=x onerror=alert(1)><!--";

/// Seven tasks on three slots with every kind of bar: a success, a retry
/// that is cancelled in flight, a timeout, a failure after a queue wait
/// that fires fail-fast, a retry abandoned in its backoff, a task never
/// started and a skipped one. Six attempts in all.
pub fn eventful_run(artifact_of_the_first: &str) -> Vec<Event> {
    let stop = StopReason::FailFast {
        task: TaskId::from("lint:d.md"),
        how: "failed".to_owned(),
    };
    let why = stop.to_string();
    let mut run = RunBuilder::start(Some(7), 3);
    run.queue(0, "lint", artifact_of_the_first);
    for (seq, artifact) in (1u64..).zip(["b.md", "c.md", "d.md", "e.md", "f.md", "g.md"]) {
        run.queue(seq, "lint", artifact);
    }
    run.start_task(0, 0, 0, 0);
    run.start_task(1, 1, 0, 0);
    run.start_task(2, 2, 0, 0);
    run.retry(1, 1, 500, "exit code 75");
    run.finish_task(0, 0, 1_000, Outcome::success().output("ok\n", ""));
    run.start_task(3, 0, 1_000, 1_000);
    run.start_task(1, 1, 1_500, 0);
    run.finish_task(2, 2, 1_800, Outcome::timeout("1.8s"));
    run.start_task(4, 2, 1_800, 1_800);
    run.retry(4, 2, 1_900, "exit code 2");
    run.finish_task(3, 0, 2_000, Outcome::failed(1).output("", "d.md: bad\n"));
    run.stopping(stop.clone());
    run.finish_task(
        4,
        2,
        2_000,
        Outcome::failed(2).error(&format!("exit code 2 (retry abandoned: {why})")),
    );
    run.settle(5, TaskStatus::Cancelled, &format!("not started: {why}"));
    run.settle(
        6,
        TaskStatus::Skipped,
        "dependency `lint:d.md` did not succeed",
    );
    run.finish_task(1, 1, 2_050, Outcome::cancelled(&why));
    run.finish(2_100, 3, 0.6, Some(stop))
}

/// A large run on `limit` slots, each slot running its tasks back to back;
/// every 97th task fails once and is retried.
pub fn large_run(tasks: u64, limit: usize) -> Vec<Event> {
    let mut run = RunBuilder::start(Some(tasks as usize), limit);
    for seq in 0..tasks {
        run.queue(seq, "lint", &format!("src/module_{seq:05}.rs"));
    }
    let mut free = vec![0u64; limit];
    for seq in 0..tasks {
        let slot = (0..limit).min_by_key(|&s| (free[s], s)).expect("a slot");
        let start = free[slot];
        let duration = 200 + (seq * 7919) % 1_800;
        run.start_task(seq, slot, start, start);
        let mut end = start + duration;
        if seq % 97 == 3 {
            run.retry(seq, slot, end, "exit code 75");
            // The retry runs right after its one-second backoff, same slot.
            let again = end + 1_000;
            run.start_task(seq, slot, again, 0);
            end = again + duration / 2;
        }
        let outcome = if seq % 500 == 7 {
            Outcome::failed(1)
        } else {
            Outcome::success()
        };
        run.finish_task(seq, slot, end, outcome);
        free[slot] = end;
    }
    let wall = free.iter().copied().max().unwrap_or(0);
    run.finish(wall, limit, 0.9, None)
}

/// `agent-33 run --command 'echo {artifact}' x x x` (the repeats get `#2`,
/// `#3`), then a task of another agent on the same artifact whose manifest
/// gave it an `id:` of its own. The second `x` fails.
pub fn repeated_artifacts() -> Vec<Event> {
    let mut run = RunBuilder::start(Some(4), 2);
    run.queue(0, "command", "x");
    run.queue_with_id(1, "command", "x", "command:x#2");
    run.queue_with_id(2, "command", "x", "command:x#3");
    run.queue_with_id(3, "lint", "x", "check-x");
    run.start_task(0, 0, 0, 0);
    run.start_task(1, 1, 0, 0);
    run.finish_task(0, 0, 400, Outcome::success().output("x\n", ""));
    run.finish_task(1, 1, 500, Outcome::failed(1).output("x\n", ""));
    run.start_task(2, 0, 400, 400);
    run.start_task(3, 1, 500, 500);
    run.finish_task(2, 0, 900, Outcome::success().output("x\n", ""));
    run.finish_task(3, 1, 1_000, Outcome::success());
    run.finish(1_000, 2, 0.9, None)
}
