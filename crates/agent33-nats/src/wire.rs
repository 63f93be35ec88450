//! What travels between the coordinator and the workers: subjects, stream
//! names and the JSON messages. Both sides use these types and nothing
//! else, so the protocol is read in one place.
//!
//! No command travels: a task message names the agent and the artifact;
//! the worker resolves the command from its own manifest (or, for ad-hoc
//! runs, from the run's template, which only `--allow-adhoc` workers take).

use serde::{Deserialize, Serialize};

/// The work-queue stream holding one message per admitted attempt.
pub const TASKS_STREAM: &str = "A33_TASKS";
/// The stream announcing runs, the last record of each run kept.
pub const RUNS_STREAM: &str = "A33_RUNS";

/// Subject of an attempt's task message: `a33.task.<run>.<seq>`.
#[must_use]
pub fn task_subject(run: &str, seq: u64) -> String {
    format!("a33.task.{run}.{seq}")
}

/// Filter of every task message of a run.
#[must_use]
pub fn run_tasks_filter(run: &str) -> String {
    format!("a33.task.{run}.>")
}

/// Subject of a run's announcement.
#[must_use]
pub fn run_subject(run: &str) -> String {
    format!("a33.run.{run}")
}

/// Subject the coordinator answers a worker's requests on (`claim`,
/// `beat`, `result`, `back`, `hello`, `alive`).
#[must_use]
pub fn coordinator_subject(run: &str, what: &str) -> String {
    format!("a33.co.{run}.{what}")
}

/// Subject of a run's control messages (coordinator to workers, not
/// persisted).
#[must_use]
pub fn control_subject(run: &str) -> String {
    format!("a33.ctl.{run}")
}

/// The durable consumer every worker of a run pulls from.
#[must_use]
pub fn consumer_name(run: &str) -> String {
    format!("run-{run}")
}

/// A run as workers learn of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The run's id, a subject token.
    pub run: String,
    /// Running, or done (workers take nothing more of it).
    pub done: bool,
    /// Digest of the coordinator's manifest (`None` for an ad-hoc run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
    /// The ad-hoc command template (`None` for a manifest run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adhoc: Option<String>,
    /// Whether the ad-hoc template runs with `sh -c` (`--shell`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adhoc_shell: bool,
    /// How long a silent worker keeps a task, in milliseconds.
    pub lease_ms: u64,
    /// Which journal the run writes (a digest of its host and path), so
    /// that a later run of the same journal (`--resume`) can end this one
    /// on the workers should its coordinator have died.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
}

/// One attempt of one task, as a worker receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskMessage {
    /// The task's position in input order.
    pub seq: u64,
    /// The engine's attempt number (retries count; lost executions not).
    pub attempt: u32,
    /// The task's id.
    pub id: String,
    /// The agent that runs it, resolved by the worker.
    pub agent: String,
    /// What the agent works on.
    pub artifact: String,
    /// The timeout, counted from the real start on the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Grace between SIGTERM and SIGKILL.
    pub kill_grace_ms: u64,
    /// Bytes of each stream kept.
    pub output_limit_bytes: usize,
}

/// A worker asks to run a delivery of an attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The attempt's task position.
    pub seq: u64,
    /// The attempt.
    pub attempt: u32,
    /// JetStream's delivery count for this message: the execution's number.
    pub delivered: u64,
    /// The worker's id.
    pub worker: String,
    /// The worker's own `--lease`, in milliseconds: when the run gave
    /// none, a shorter one decides how long this execution may be silent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
}

/// The coordinator's answer to a claim, a heartbeat, a result or a hand-back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    /// Go on: this execution is the attempt's current one. On a claim,
    /// `executions` is how many executions of the task came before plus
    /// this one (`AGENT33_ATTEMPT`).
    Go {
        /// The execution's number among all of the task's executions.
        #[serde(default)]
        executions: u32,
    },
    /// Stop: another execution owns the attempt, or it is over. The
    /// worker kills what it runs for it and drops its result; a message
    /// that is over is acknowledged (removed).
    Fenced {
        /// Whether the message is to be removed (the attempt is over).
        over: bool,
    },
}

/// Identifies one execution in heartbeats, results and hand-backs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Execution {
    /// The attempt's task position.
    pub seq: u64,
    /// The attempt.
    pub attempt: u32,
    /// The delivery count the execution claimed with.
    pub delivered: u64,
}

/// How an execution ended on its worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It succeeded.
    Success,
    /// It failed.
    Failed,
    /// It passed its timeout.
    Timeout,
    /// It was cancelled.
    Cancelled,
}

/// An execution's result (possibly in parts, see [`crate::parts`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Which execution.
    pub execution: Execution,
    /// The worker that ran it.
    pub worker: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Why it did not succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why it did not succeed, as the engine's fact (exit code, signal,
    /// timeout, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<agent33_parallel::Reason>,
    /// The process's exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Captured standard output (the tail the worker kept).
    pub stdout: String,
    /// Captured standard error.
    pub stderr: String,
    /// The worker's notes (escaped processes killed, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// How long it ran on the worker, in milliseconds.
    pub duration_ms: u64,
    /// What the service the agent called said, for the coordinator's agent
    /// (an LLM provider's answer and rate-limit headers); opaque here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<serde_json::Value>,
}

/// A worker tells the coordinator whether it takes a run's tasks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The worker's id.
    pub worker: String,
    /// `None`: it takes them; otherwise why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// A control message of a run, coordinator to workers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum Control {
    /// Stop one attempt (whichever execution runs it).
    Cancel {
        /// The attempt's task position.
        seq: u64,
        /// The attempt.
        attempt: u32,
    },
    /// The run is over or stopping: cancel everything of it, take nothing more.
    Stop,
    /// The coordinator is alive (every few seconds).
    Alive,
}

/// Headers and bodies are JSON; a body that does not parse is a
/// protocol error, named with its subject.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
    subject: &str,
    body: &[u8],
) -> Result<T, crate::Error> {
    serde_json::from_slice(body).map_err(|source| crate::Error::Decode {
        subject: subject.to_owned(),
        source,
    })
}

pub(crate) fn encode<T: Serialize>(value: &T) -> bytes::Bytes {
    serde_json::to_vec(value)
        .expect("wire types serialise: plain structs of strings and numbers")
        .into()
}
