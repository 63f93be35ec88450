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
    /// The URL as given, its password hidden ([`redact`]), for messages.
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
    // The client reads no credentials from the URL itself (async-nats
    // 0.52): `user:pass@` and a token given there are passed on here.
    match url_credentials(&options.url) {
        Some((user, Some(password))) => nats = nats.user_and_password(user, password),
        Some((token, None)) => nats = nats.token(token),
        None => {}
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
            url: redact(&options.url),
            reason: e.to_string(),
        })?;
    let js = jetstream::new(client.clone());
    ensure_streams(&js).await?;
    Ok(Connection {
        client,
        js,
        url: redact(&options.url),
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

/// The user and password (or the lone token) in the first URL of `urls`
/// that has any, percent-decoded.
fn url_credentials(urls: &str) -> Option<(String, Option<String>)> {
    urls.split(',').find_map(|url| {
        let addr = url.trim().parse::<async_nats::ServerAddr>().ok()?;
        let user = percent_decode(addr.username()?);
        Some((user, addr.password().map(percent_decode)))
    })
}

/// `%40` and the like back to their bytes (a URL's user and password are
/// kept encoded).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(&h), Some(&l)) = (bytes.get(i + 1), bytes.get(i + 2))
            && let (Some(h), Some(l)) = (hex(h), hex(l))
        {
            out.push(u8::try_from(h * 16 + l).expect("two hex digits fit a byte"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `url` with its password (or token) replaced by `***`, for messages:
/// `nats://alice:***@host:4222`. Each server of a comma-separated list is
/// treated alike; a URL without credentials comes back unchanged.
#[must_use]
pub fn redact(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let (scheme, rest) = match one.find("://") {
                Some(at) => one.split_at(at + 3),
                None => ("", one),
            };
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let Some(at) = authority.rfind('@') else {
                return one.to_owned();
            };
            let (userinfo, host) = authority.split_at(at);
            let hidden = match userinfo.split_once(':') {
                Some((user, _password)) => format!("{user}:***"),
                // A lone token is the secret itself.
                None => "***".to_owned(),
            };
            format!("{scheme}{hidden}{host}{path}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_read_from_the_url_decoded() {
        assert_eq!(
            url_credentials("nats://alice:p%40ss%3Aw@queue:4222"),
            Some(("alice".to_owned(), Some("p@ss:w".to_owned())))
        );
        assert_eq!(
            url_credentials("nats://h1:1,nats://t0ken@h2:2"),
            Some(("t0ken".to_owned(), None))
        );
        assert_eq!(url_credentials("nats://queue:4222"), None);
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn passwords_and_tokens_are_hidden_and_the_rest_kept() {
        assert_eq!(
            redact("nats://alice:s3cret@queue:4222"),
            "nats://alice:***@queue:4222"
        );
        assert_eq!(redact("tls://t0ken@queue:4222"), "tls://***@queue:4222");
        assert_eq!(redact("nats://queue:4222"), "nats://queue:4222");
        assert_eq!(redact("alice:pw@queue"), "alice:***@queue");
        assert_eq!(
            redact("nats://a:p@h1:1,nats://h2:2"),
            "nats://a:***@h1:1,nats://h2:2"
        );
        assert_eq!(redact("nats://a:p@w@h/x"), "nats://a:***@h/x");
    }
}
