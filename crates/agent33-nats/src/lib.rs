//! agent-33 across machines, on NATS JetStream (PRODUCT-distributed.md).
//!
//! Two halves. The coordinator side ([`Coordinator`], [`RemoteAgent`]) is an
//! agent behind the engine's [`agent33_parallel::Agent`] trait: each attempt
//! the engine admits is published to the run's work queue, and the agent
//! waits for that attempt's report. So admission, limits, dependencies,
//! retries, the stop trigger, events, journal and reporters are the local
//! engine's, unchanged. The worker side ([`Worker`]) pulls as many messages
//! as it has free slots, resolves each task's command from its own manifest
//! and runs it through a one-task engine run with the same command agent a
//! local run uses.
//!
//! The coordinator is the one authority on who owns an attempt: a worker
//! claims each delivery (a first delivery starts once the server has the
//! claim, a redelivery once the coordinator accepted it), heartbeats it,
//! and hands in its result by request; an answer of "fenced" (a newer
//! delivery took over, or the attempt is over) makes it kill the task's
//! process group and drop the result. JetStream acks are not fenced (nats-server matches them by
//! sequence only), so no result rides on an ack.
//!
//! This crate knows no argv and no manifest format: the CLI resolves agents
//! and hands them in.

mod connect;
mod coordinator;
mod parts;
pub mod wire;
mod worker;

pub use connect::{ConnectOptions, Connection, connect, shown_url};
pub use coordinator::{Coordinator, CoordinatorOptions, RemoteAgent};
pub use worker::{AdhocAgents, AgentMap, Exchange, ExchangeMap, Worker, WorkerOptions, WorkerStop};

/// What can go wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached.
    #[error("cannot reach the NATS server at {url}: {reason}")]
    Connect {
        /// The URL as given.
        url: String,
        /// What the client said.
        reason: String,
    },
    /// The credentials file could not be read.
    #[error("cannot read NATS credentials `{path}`")]
    Credentials {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A JetStream call failed.
    #[error("NATS JetStream: {what}: {reason}")]
    JetStream {
        /// What we were doing (`create stream A33_TASKS`).
        what: String,
        /// What the server or client said.
        reason: String,
    },
    /// A message body did not parse.
    #[error("malformed message on `{subject}`")]
    Decode {
        /// Where it came from.
        subject: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    pub(crate) fn js(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::JetStream {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}
