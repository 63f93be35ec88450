//! Connecting to the server and making sure the run's streams exist: the
//! one place both sides configure the client.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::Error;
use crate::wire::{RUNS_STREAM, TASKS_STREAM};

/// How to reach the server.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// `nats://host:port`, `tls://…`, with `user:pass@` if needed.
    pub url: String,
    /// A credentials file (JWT + nkey).
    pub creds: Option<PathBuf>,
    /// The client's name on the server (`agent-33 worker w1`).
    pub name: String,
    /// How long one connection attempt may take.
    pub timeout: Duration,
}

/// A client and its JetStream context.
#[derive(Clone, Debug)]
pub struct Connection {
    /// Core NATS: requests, control messages.
    pub client: async_nats::Client,
    /// JetStream: the work queue and the run announcements.
    pub js: jetstream::Context,
    /// The URL as given, for messages.
    pub url: String,
}

/// Connects once (no retry: a caller that wants to wait loops) and makes
/// sure the task and run streams exist. Once connected, the client
/// reconnects on its own for as long as the process lives, so a server
/// restart delays work and loses none.
///
/// # Errors
///
/// [`Error::Connect`] naming the URL, [`Error::Credentials`], or
/// [`Error::JetStream`] when the server has no JetStream.
pub async fn connect(options: &ConnectOptions) -> Result<Connection, Error> {
    let mut nats = async_nats::ConnectOptions::new()
        .name(&options.name)
        .connection_timeout(options.timeout)
        // The default of one per 10 s ties a late message to a dead link for
        // too long; a lost server is noticed within a few seconds instead.
        .ping_interval(Duration::from_secs(2))
        // Unbounded: a worker outlives a server restart of any length.
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((100 * attempts as u64).min(2_000))
        });
    if let Some(path) = &options.creds {
        nats = nats
            .credentials_file(path)
            .await
            .map_err(|source| Error::Credentials {
                path: path.display().to_string(),
                source,
            })?;
    }
    let client = nats
        .connect(options.url.as_str())
        .await
        .map_err(|e| Error::Connect {
            url: options.url.clone(),
            reason: e.to_string(),
        })?;
    let js = jetstream::new(client.clone());
    ensure_streams(&js).await?;
    Ok(Connection {
        client,
        js,
        url: options.url.clone(),
    })
}

async fn ensure_streams(js: &jetstream::Context) -> Result<(), Error> {
    js.get_or_create_stream(stream::Config {
        name: TASKS_STREAM.to_owned(),
        subjects: vec!["a33.task.>".to_owned()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        // A publish retried across a reconnect is one message.
        duplicate_window: Duration::from_secs(600),
        ..stream::Config::default()
    })
    .await
    .map_err(|e| Error::js(format!("create stream {TASKS_STREAM}"), e))?;
    js.get_or_create_stream(stream::Config {
        name: RUNS_STREAM.to_owned(),
        subjects: vec!["a33.run.>".to_owned()],
        storage: stream::StorageType::File,
        max_messages_per_subject: 1,
        max_age: Duration::from_secs(7 * 24 * 3600),
        ..stream::Config::default()
    })
    .await
    .map_err(|e| Error::js(format!("create stream {RUNS_STREAM}"), e))?;
    Ok(())
}
