//! `run --nats URL`: the run's tasks go to workers (PRODUCT-distributed.md).
//! Only the agents change: each is the NATS crate's remote agent, so the
//! engine, reporters and journal work as in a local run.

use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agent33_cli::args::RunArgs;
use agent33_cli::config::{Config, TaskSource};
use agent33_journal::StableHasher;
use agent33_nats::{ConnectOptions, Coordinator, CoordinatorOptions, RemoteAgent};
use agent33_parallel::{AgentResult, Agents, BoxFuture, Interrupt, RunControl, TaskContext};

use crate::failure::Failure;

/// The lease when neither side gives one.
const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// How long a run waits for a worker that accepts it.
const ACCEPT_WAIT: Duration = Duration::from_secs(30);
/// Connecting gives up within this, so that no server means exit 2 within 5 s.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

/// A run whose tasks go to workers.
pub struct Remote {
    coordinator: Arc<Coordinator>,
}

impl Remote {
    /// Connects and announces the run, when `--nats` is given.
    pub async fn start(args: &RunArgs, config: &Config) -> Result<Option<Self>, Failure> {
        let nats = &args.nats;
        let Some(url) = &nats.nats else {
            return Ok(None);
        };
        let options = ConnectOptions {
            url: url.clone(),
            creds: nats.nats_creds.clone(),
            name: format!("agent-33 run {}", std::process::id()),
            timeout: CONNECT_TIMEOUT,
        };
        let connected =
            tokio::time::timeout(CONNECT_TIMEOUT, agent33_nats::connect(&options)).await;
        let conn = match connected {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(Failure::Nats(e.to_string())),
            Err(_) => {
                return Err(Failure::Nats(format!(
                    "cannot reach the NATS server at {}: no answer within {}s",
                    agent33_nats::shown_url(url),
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
        };
        let (manifest_digest, adhoc) = match config.tasks {
            TaskSource::AdHoc(_) => (None, args.command.clone()),
            TaskSource::Manifest(_) => (manifest_digest(config), None),
        };
        let options = CoordinatorOptions {
            lease: nats.lease.unwrap_or(DEFAULT_LEASE),
            lease_given: nats.lease.is_some(),
            manifest_digest,
            adhoc,
            adhoc_shell: args.shell,
            parallel_limit: config.settings.effective_limit(),
            kill_grace: config.settings.kill_grace,
            output_limit_bytes: config.settings.output_limit_bytes,
            journal: config.options.journal.as_deref().map(journal_key),
        };
        match Coordinator::start(conn, options).await {
            Ok(coordinator) => {
                for run in coordinator.ended_runs() {
                    eprintln!(
                        "agent-33: note: ended run {run} of this journal on the workers: its coordinator is gone"
                    );
                }
                Ok(Some(Self {
                    coordinator: Arc::new(coordinator),
                }))
            }
            Err(e) => Err(Failure::Nats(e.to_string())),
        }
    }

    /// The run's agents: each the remote agent, with the agent's own
    /// limits, timeout and retries (the timeout counts from the start on
    /// a worker, which enforces it too).
    pub fn agents(&self, config: &Config) -> Agents {
        config.agents(|_| self.coordinator.agent())
    }

    /// How the run's LLM agents reach the workers, which send their
    /// requests: what each provider said comes back to the agents'
    /// limiters here, the one limit of every machine.
    pub fn llm_transport(&self) -> Arc<dyn agent33_llm::Transport> {
        Arc::new(LlmTransport(self.coordinator.agent()))
    }

    /// Stops the run when no worker accepts it in time.
    pub fn stop_if_unaccepted(&self, control: RunControl) {
        let coordinator = Arc::clone(&self.coordinator);
        tokio::spawn(async move {
            let reason = coordinator.unaccepted_after(ACCEPT_WAIT).await;
            eprintln!("agent-33: {reason}");
            control.interrupt_by(Interrupt::new(reason));
        });
    }

    /// Tells the workers the run is over.
    pub async fn finish(self) {
        self.coordinator.finish().await;
    }
}

/// An LLM agent's attempt on a worker, whose [`agent33_nats::Exchange`]
/// reports the provider's [`agent33_llm::Observation`].
struct LlmTransport(RemoteAgent);

impl agent33_llm::Transport for LlmTransport {
    fn send<'a>(
        &'a self,
        ctx: &'a TaskContext,
    ) -> BoxFuture<'a, (AgentResult, Option<agent33_llm::Observation>)> {
        Box::pin(async move {
            let (result, feedback) = self.0.attempt(ctx).await;
            // A worker of another version may say something else: the
            // request's place in the limiter is then given back unread.
            let observation = feedback.and_then(|v| serde_json::from_value(v).ok());
            (result, observation)
        })
    }
}

/// The digest workers compare with their own manifest's: its bytes.
pub fn manifest_digest(config: &Config) -> Option<String> {
    let bytes = std::fs::read(config.manifest_path.as_ref()?).ok()?;
    Some(digest(&bytes))
}

/// What identifies a journal across runs: this machine and the file's
/// full path (two machines may each have a `run.jsonl` of their own).
fn journal_key(path: &Path) -> String {
    let full = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut hasher = StableHasher::new();
    hasher.field(host.trim().as_bytes());
    hasher.field(full.as_os_str().as_bytes());
    hasher.finish_hex()
}

/// A manifest's digest.
pub fn digest(bytes: &[u8]) -> String {
    let mut hasher = StableHasher::new();
    hasher.field(bytes);
    hasher.finish_hex()
}
