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
    /// The URL for messages, its secret masked (see [`shown_url`]).
    pub url: String,
}

/// Connects once (no retry: a caller that wants to wait loops) and makes
/// sure the task and run streams exist. Once connected, the client
/// reconnects on its own for as long as the process lives, so a server
/// restart delays work and loses none.
///
/// # Errors
///
/// [`Error::Connect`] naming the URL (its secret masked),
/// [`Error::Credentials`], or
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
        .reconnect_delay_callback(reconnect_delay);
    // The client reads no secret from the URL (async-nats 0.52 parses
    // `user:pass@` and then ignores it): it is handed over here.
    if let Some(secret) = url_secret(&options.url) {
        nats = match secret {
            Secret::UserPassword(user, password) => nats.user_and_password(user, password),
            Secret::Token(token) => nats.token(token),
        };
    }
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
            url: shown_url(&options.url),
            reason: e.to_string(),
        })?;
    let js = jetstream::new(client.clone());
    ensure_streams(&js).await?;
    Ok(Connection {
        client,
        js,
        url: shown_url(&options.url),
    })
}

/// How long the client waits before connection attempt `attempts` (from
/// 1). The client asks before the very first attempt too: that one must
/// not wait (a delay there was 100 ms added to every run and worker start).
fn reconnect_delay(attempts: usize) -> Duration {
    let waited = u64::try_from(attempts.saturating_sub(1)).unwrap_or(u64::MAX);
    Duration::from_millis(waited.saturating_mul(100).min(2_000))
}

/// What a server URL says about authentication.
#[derive(Debug, PartialEq, Eq)]
enum Secret {
    /// `user:pass@`.
    UserPassword(String, String),
    /// `token@`.
    Token(String),
}

/// The first secret in a comma-separated list of server URLs, decoded
/// (`%40` is `@`).
fn url_secret(urls: &str) -> Option<Secret> {
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8_lossy()
            .into_owned()
    };
    urls.split(',').find_map(|one| {
        let addr: async_nats::ServerAddr = one.trim().parse().ok()?;
        let user = decode(addr.username()?);
        Some(match addr.password() {
            Some(password) => Secret::UserPassword(user, decode(password)),
            None => Secret::Token(user),
        })
    })
}

/// A server URL as messages show it: a password (`user:pass@`) or a token
/// (`token@`) is replaced by `***`, in each of a comma-separated list.
#[must_use]
pub fn shown_url(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let (scheme, rest) = one.split_once("://").map_or(("", one), |(s, r)| (s, r));
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let Some(at) = rest[..authority_end].rfind('@') else {
                return one.to_owned();
            };
            let user = match rest[..at].split_once(':') {
                Some((user, _password)) => format!("{user}:***"),
                None => "***".to_owned(),
            };
            let scheme = if scheme.is_empty() {
                String::new()
            } else {
                format!("{scheme}://")
            };
            format!("{scheme}{user}@{}", &rest[at + 1..])
        })
        .collect::<Vec<_>>()
        .join(",")
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Secret, reconnect_delay, shown_url, url_secret};

    #[test]
    fn the_first_connection_does_not_wait_and_reconnections_back_off() {
        assert_eq!(reconnect_delay(0), Duration::ZERO);
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(reconnect_delay(2), Duration::from_millis(100));
        assert_eq!(reconnect_delay(5), Duration::from_millis(400));
        assert_eq!(reconnect_delay(1_000), Duration::from_secs(2));
        assert_eq!(reconnect_delay(usize::MAX), Duration::from_secs(2));
    }

    #[test]
    fn secrets_are_read_from_urls() {
        assert_eq!(
            url_secret("tls://a33:s3cret@queue:4222"),
            Some(Secret::UserPassword("a33".into(), "s3cret".into()))
        );
        assert_eq!(
            url_secret("nats://u:p%40ss@a"),
            Some(Secret::UserPassword("u".into(), "p@ss".into()))
        );
        assert_eq!(
            url_secret("nats://tok3n@queue"),
            Some(Secret::Token("tok3n".into()))
        );
        assert_eq!(url_secret("nats://queue:4222"), None);
        assert_eq!(
            url_secret("nats://a:1, nats://u:p@b:2"),
            Some(Secret::UserPassword("u".into(), "p".into()))
        );
    }

    #[test]
    fn secrets_in_urls_are_masked() {
        assert_eq!(
            shown_url("tls://a33:s3cret@queue:4222"),
            "tls://a33:***@queue:4222"
        );
        assert_eq!(shown_url("nats://tok3n@queue"), "nats://***@queue");
        assert_eq!(shown_url("nats://queue:4222"), "nats://queue:4222");
        assert_eq!(shown_url("u:p@host:4222"), "u:***@host:4222");
        assert_eq!(
            shown_url("nats://u:p@a:1,nats://b:2"),
            "nats://u:***@a:1,nats://b:2"
        );
        // An @ in a password is the password's.
        assert_eq!(shown_url("nats://u:p@ss@a"), "nats://u:***@a");
    }
}
