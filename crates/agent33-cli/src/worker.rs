//! `agent-33 worker`: takes tasks of distributed runs from a NATS server
//! and runs them here, with the agents of this machine's own manifest
//! (PRODUCT-distributed.md). The loop itself is the NATS crate's; this is
//! the edge: flags, manifest, signals, process hygiene, exit code.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use agent33_cli::adhoc::ADHOC_AGENT;
use agent33_cli::agents::LlmAgentDef;
use agent33_cli::args::{Command, parse_from};
use agent33_cli::config::{Config, RawConfig, process_env};
use agent33_cli::nats_args::WorkerArgs;
use agent33_cli::template::{CommandTemplate, TaskCommand};
use agent33_llm::headers::RateLimitInfo;
use agent33_llm::{Endpoint, LlmAgent, Observation, ProviderLimiter, Said};
use agent33_nats::{
    AdhocAgents, AgentMap, ConnectOptions, Exchange, ExchangeMap, Worker, WorkerOptions, WorkerStop,
};
use agent33_parallel::{AgentError, AgentResult, BoxFuture, TaskContext};
use agent33_process::{CommandAgent, ProcessOptions, Reaper};
use tokio::signal::unix::{SignalKind, signal};

use crate::exit;

/// One connection attempt's bound.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);
/// The longest wait between connection attempts.
const MOST_BACKOFF: Duration = Duration::from_secs(10);
/// How long to hunt for leftover processes when we exit.
const FINAL_SWEEP: Duration = Duration::from_secs(5);

/// Runs `agent-33 worker` and returns the exit code.
pub fn main(args: &WorkerArgs) -> u8 {
    let (agents, exchanges, digest) = match manifest(args) {
        Ok(found) => found,
        Err(message) => {
            eprintln!("agent-33 worker: error: {message}");
            return exit::USAGE;
        }
    };
    // One thread: a worker only waits (on the server, on its tasks'
    // processes), and waking a second thread for each message cost a
    // fifth of its CPU time in `bench/nats`.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let code = runtime.block_on(async {
        tokio::spawn(serve(args.clone(), agents, exchanges, digest))
            .await
            .expect("the worker does not panic")
    });
    runtime.shutdown_background();
    code
}

/// The manifest's command agents, its LLM agents and its digest; none
/// when there is no manifest and none was asked for.
fn manifest(args: &WorkerArgs) -> Result<(AgentMap, ExchangeMap, Option<String>), String> {
    let path = args
        .file
        .clone()
        .unwrap_or_else(|| PathBuf::from("agent33.yaml"));
    if args.file.is_none() && !path.exists() {
        return Ok((AgentMap::new(), ExchangeMap::new(), None));
    }
    let bytes =
        std::fs::read(&path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let config = load_manifest(&path)?;
    let mut agents = AgentMap::new();
    for def in &config.agents {
        agents.insert(
            def.name.as_str().to_owned(),
            Arc::new(CommandAgent::new(
                def.command.clone(),
                ProcessOptions::default(),
            )),
        );
    }
    let mut exchanges = ExchangeMap::new();
    for def in &config.llm_agents {
        exchanges.insert(def.name.as_str().to_owned(), Arc::new(llm_exchange(def)?));
    }
    Ok((agents, exchanges, Some(crate::remote::digest(&bytes))))
}

/// An LLM agent on a worker: it sends each request once, with this
/// machine's key, and reports what the provider said to the coordinator,
/// whose limiter decides when requests go out. Without the key it sends
/// nothing and says so (also when it starts): the coordinator then sends
/// the request itself if it has the key, else the task fails with that
/// reason.
struct LlmExchange(Result<LlmAgent, String>);

fn llm_exchange(def: &LlmAgentDef) -> Result<LlmExchange, String> {
    if let (Some(var), None) = (&def.config.api_key_env, &def.key) {
        let why = format!(
            "the key of provider `{}` is read from ${var}, which is not set on this worker",
            def.provider
        );
        eprintln!(
            "agent-33 worker: note: {why}: the requests of agent `{}` go out from the run if it has the key",
            def.name.as_str()
        );
        return Ok(LlmExchange(Err(why)));
    }
    let endpoint = Endpoint::new(&def.provider, &def.config.base_url, def.key.as_ref())
        .map_err(|e| e.to_string())?;
    // Never consulted: the coordinator's limiter is the one limit.
    let limiter = ProviderLimiter::new(&def.provider, def.config.limiter_settings(1));
    let agent = LlmAgent::new(
        def.block.request_spec(),
        Arc::new(endpoint),
        limiter,
        def.base_dir.clone(),
    );
    Ok(LlmExchange(Ok(agent)))
}

impl Exchange for LlmExchange {
    fn run(
        &self,
        ctx: TaskContext,
    ) -> BoxFuture<'static, (AgentResult, Option<serde_json::Value>)> {
        let agent = self.0.clone();
        Box::pin(async move {
            let (result, observation) = match agent {
                Ok(agent) => agent.exchange(ctx).await,
                Err(message) => {
                    let said = Said::NotSent {
                        message: message.clone(),
                    };
                    let observation = Observation {
                        said,
                        info: RateLimitInfo::default(),
                    };
                    (Err(AgentError::new(message)), Some(observation))
                }
            };
            let feedback =
                observation.map(|o| serde_json::to_value(o).expect("an observation is plain data"));
            (result, feedback)
        })
    }
}

fn load_manifest(path: &Path) -> Result<Config, String> {
    let argv = [
        "agent-33".into(),
        "run".into(),
        "-f".into(),
        path.as_os_str().to_owned(),
    ];
    let cli = parse_from(argv).map_err(|e| e.to_string())?;
    let Command::Run(run) = cli.command else {
        unreachable!("parsed as `run`")
    };
    // A key not set here fails only the tasks that need it.
    RawConfig::without_keys(&run, &process_env)
        .and_then(RawConfig::resolve)
        .map_err(|e| e.to_string())
}

/// Builds an ad-hoc run's one agent from its template, as `run --command` does.
fn adhoc_agents() -> AdhocAgents {
    Arc::new(|template: &str, shell: bool| {
        let template = CommandTemplate::from_flag(template, shell)
            .map_err(|m| format!("invalid --command: {m}"))?;
        let command = TaskCommand::new(template).append_artifact_without_placeholder();
        let agent: Arc<dyn agent33_parallel::Agent> =
            Arc::new(CommandAgent::new(command, ProcessOptions::default()));
        Ok(AgentMap::from([(ADHOC_AGENT.to_owned(), agent)]))
    })
}

async fn serve(
    args: WorkerArgs,
    agents: AgentMap,
    exchanges: ExchangeMap,
    digest: Option<String>,
) -> u8 {
    let stop = WorkerStop::new();
    if let Err(e) = watch_signals(stop.clone()) {
        eprintln!("agent-33 worker: error: cannot install signal handlers: {e}");
        return exit::USAGE;
    }
    // Escapees are reparented to us, found and killed; should we die
    // without cleaning up, the guard kills the tasks' groups.
    let _ = agent33_process::become_subreaper();
    let _reaper = Reaper::start(Duration::from_secs(1));
    if let Ok(me) = std::env::current_exe() {
        let pid = std::process::id().to_string();
        let _ = agent33_process::start_guard(&me, &[crate::GUARD_ARG, &pid]);
    }
    let id = args.id.clone().unwrap_or_else(default_id);
    let connect = ConnectOptions {
        url: args.nats.clone(),
        creds: args.nats_creds.clone(),
        name: format!("agent-33 worker {id}"),
        timeout: CONNECT_TIMEOUT,
    };
    let Some(conn) = connect_with_backoff(&connect, &stop).await else {
        return exit::SUCCESS;
    };
    let options = WorkerOptions {
        id,
        slots: args.slots.map_or_else(cpus, |n| n as usize),
        lease: args.lease,
        manifest_digest: digest,
        agents,
        exchanges,
        adhoc: args.allow_adhoc.then(adhoc_agents),
    };
    let say: Arc<dyn Fn(String) + Send + Sync> = Arc::new(|line| eprintln!("{line}"));
    let code = match Worker::run(conn, options, stop, say).await {
        Ok(()) => exit::SUCCESS,
        Err(e) => {
            eprintln!("agent-33 worker: error: {e}");
            exit::TASK_FAILED
        }
    };
    agent33_process::disarm_guard();
    tokio::task::spawn_blocking(|| agent33_process::kill_all_descendants(FINAL_SWEEP))
        .await
        .ok();
    code
}

/// Connects, retrying with backoff (and saying so) while the server is
/// not there yet; `None` if a stop came first.
async fn connect_with_backoff(
    options: &ConnectOptions,
    stop: &WorkerStop,
) -> Option<agent33_nats::Connection> {
    let mut wait = Duration::from_millis(500);
    loop {
        match agent33_nats::connect(options).await {
            Ok(conn) => return Some(conn),
            Err(e) => {
                eprintln!(
                    "agent-33 worker: {e}; retrying in {:.1}s",
                    wait.as_secs_f64()
                );
            }
        }
        let slept = tokio::time::sleep(wait);
        tokio::pin!(slept);
        loop {
            if stop.draining() {
                return None;
            }
            tokio::select! {
                () = &mut slept => break,
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        wait = (wait * 2).min(MOST_BACKOFF);
    }
}

/// The first SIGTERM (or SIGINT) drains, the second hands tasks back.
fn watch_signals(stop: WorkerStop) -> std::io::Result<()> {
    let seen = Arc::new(AtomicU8::new(0));
    for kind in [SignalKind::terminate(), SignalKind::interrupt()] {
        let mut deliveries = signal(kind)?;
        let (stop, seen) = (stop.clone(), Arc::clone(&seen));
        tokio::spawn(async move {
            while deliveries.recv().await.is_some() {
                if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                    eprintln!(
                        "agent-33 worker: draining: no new tasks, running ones finish (again to hand them back)"
                    );
                    stop.drain();
                } else {
                    eprintln!("agent-33 worker: handing running tasks back");
                    stop.hand_back();
                }
            }
        });
    }
    Ok(())
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// `host:pid`.
fn default_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let host = if host.is_empty() {
        "localhost".to_owned()
    } else {
        host
    };
    format!("{host}:{}", std::process::id())
}
