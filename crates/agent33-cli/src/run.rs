//! `agent-33 run`: loads the configuration, then either shows the plan (dry
//! run) or runs it with reporters attached, signals handled and every
//! process we started accounted for before we exit.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use agent33_cli::args::{OutputMode as OutputFlag, RunArgs};
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;

use agent33_cli::config::{Config, RawConfig, RunOptions, TaskSource, load, process_env};
use agent33_cli::template::TaskCommand;
use agent33_journal::{Fingerprint, Journal, StableHasher};
use agent33_llm::{Endpoint, LlmAgent, ProviderLimiter};
use agent33_parallel::{AgentName, AgentTask, Event, Interrupt, ParallelExecutor, RunControl};
use agent33_process::{AGENT_VAR, ARTIFACT_VAR, CommandAgent, ProcessOptions, Reaper, TASK_ID_VAR};
use agent33_report::{
    InputTotal, JsonReporter, JunitReporter, LimitSource, LimitStatus, NoticeReporter, OutputMode,
    PrinterOptions, ProgressReporter, ReportError, Reporters, SummaryOptions, SummaryReporter,
    TimingsReporter, TraceReporter,
};
use tokio::signal::unix::{SignalKind, signal};

use crate::exit::{self, Outcome, Signal};
use crate::failure::Failure;
use crate::plan_view;

/// How long to hunt for leftover processes when we exit.
const FINAL_SWEEP: Duration = Duration::from_secs(5);

/// Runs `agent-33 run` and returns the exit code.
pub fn main(args: &RunArgs) -> u8 {
    // A distributed run's LLM requests go out from the workers, which hold
    // the keys: the coordinator needs none.
    let loaded = if args.nats.nats.is_some() {
        RawConfig::without_keys(args, &process_env).and_then(RawConfig::resolve)
    } else {
        load(args, &process_env)
    };
    let config = match loaded {
        Ok(config) => config,
        Err(e) => return exit::fail(&e.into()),
    };
    // A distributed run only sends and receives messages: on one thread it
    // wakes no second one for each of them (as the worker).
    let runtime = if args.nats.nats.is_some() {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }
    .enable_all()
    .build()
    .expect("the tokio runtime starts");
    // On a worker, not the thread blocking on the runtime: waking that
    // thread for every batch of events costs a futex round trip.
    let code = runtime.block_on(async {
        tokio::spawn(run(config, args.clone()))
            .await
            .expect("the run does not panic")
    });
    // A read of stdin cannot be cancelled; it must not keep us alive.
    runtime.shutdown_background();
    code
}

async fn run(config: Config, args: RunArgs) -> u8 {
    if config.options.dry_run {
        return plan_view::show(config).await;
    }
    let mut executor = match ParallelExecutor::builder()
        .settings(config.settings.clone())
        .build()
    {
        Ok(executor) => executor,
        Err(e) => return exit::fail(&e.into()),
    };
    if let Err(e) = check_outputs(&config.options) {
        return exit::fail(&e);
    }
    let mut journal = match open_journal(&config) {
        Ok(journal) => journal,
        Err(e) => return exit::fail(&e),
    };
    if let (Some(j), true) = (&journal, config.options.resume) {
        executor = executor.with_resume(j.resume());
    }
    // Set once a streamed input has been read to its end, with the number
    // of tasks it made: progress then knows the total, and a stop that
    // left lines unread can be told from a run that read them all.
    let input_total = InputTotal::new();
    let (llm, llm_specs) = match llm_agents(&config) {
        Ok(llm) => llm,
        Err(e) => return exit::fail(&e),
    };
    let mut reporters = match reporters(&config, &input_total, &llm) {
        Ok(r) => r,
        Err(e) => return exit::fail(&Failure::ReportSetup(e)),
    };
    if let Err(e) = create_output_dir(&config.options) {
        return exit::fail(&e);
    }
    // Connected last, once every local check passed: workers never see a
    // run that ends before it starts.
    let remote = match crate::remote::Remote::start(&args, &config).await {
        Ok(remote) => remote,
        Err(e) => return exit::fail(&e),
    };

    // Escapees (setsid, double fork) are reparented to us, found and killed.
    let _ = agent33_process::become_subreaper();
    let _reaper = Reaper::start(Duration::from_secs(1));
    // Should we die without cleaning up (SIGKILL, the OOM killer), the guard
    // kills the tasks' groups. Best effort: a run without one is still safe
    // from everything but our own sudden death.
    if let Ok(me) = std::env::current_exe() {
        let pid = std::process::id().to_string();
        let _ = agent33_process::start_guard(&me, &[crate::GUARD_ARG, &pid]);
    }

    let options = ProcessOptions {
        output_dir: config.options.output_dir.clone(),
        ..ProcessOptions::default()
    };
    let mut agents = match &remote {
        Some(remote) => remote.agents(&config),
        None => config.agents(|def| CommandAgent::new(def.command.clone(), options.clone())),
    };
    for (def, agent) in config.llm_agents.iter().zip(llm_specs) {
        let spec = match &remote {
            Some(remote) => agent.remote(remote.llm_transport()),
            None => agent.spec(),
        };
        agents.insert(def.name.clone(), def.with_limits(spec));
    }
    let control = RunControl::new();
    if let Some(remote) = &remote {
        remote.stop_if_unaccepted(control.clone());
    }
    let signalled = Arc::new(AtomicU8::new(0));
    let run_over = Arc::new(AtomicBool::new(false));
    if let Err(e) = watch_signals(
        control.clone(),
        Arc::clone(&signalled),
        Arc::clone(&run_over),
    ) {
        return exit::fail(&Failure::Signals(e));
    }

    let mut read_errors = None;
    let mut streamed = false;
    // What to say should the ad-hoc input give no artifact at all.
    let mut nothing_read = None;
    let mut events = match config.tasks {
        TaskSource::Manifest(tasks) => executor.run(tasks, &agents, control),
        TaskSource::AdHoc(input) => match input.known_tasks() {
            Some(tasks) => {
                if tasks.is_empty() {
                    nothing_read = Some(input.nothing_read());
                }
                executor.run(tasks, &agents, control)
            }
            None => {
                nothing_read = Some(input.nothing_read());
                streamed = true;
                let stream = input.into_stream();
                read_errors = Some(stream.errors);
                let read = Arc::new(AtomicUsize::new(0));
                let counter = Arc::clone(&read);
                let at_end = input_total.clone();
                let tasks = futures::StreamExt::chain(
                    futures::StreamExt::inspect(stream.tasks, move |_| {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }),
                    futures::stream::poll_fn(move |_| {
                        at_end.set(read.load(Ordering::Relaxed));
                        std::task::Poll::Ready(None)
                    }),
                );
                executor.run_stream(Box::pin(tasks), &agents, control)
            }
        },
    };

    let mut all_succeeded = false;
    let mut failed_reports = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Events whose journal records are written but not yet synced: they
    // reach the reporters only after the fsync. Waiting up to GROUP_COMMIT
    // lets one fsync cover many short tasks.
    let mut pending: Vec<Event> = Vec::new();
    let commit = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(commit);
    let mut commit_armed = false;
    loop {
        tokio::select! {
            batch = events.next_batch() => {
                let Some(batch) = batch else { break };
                // The batch woke us next in line on this thread, ahead of
                // the task the dispatcher has just started: let that spawn
                // its process first, the reports can wait that long.
                tokio::task::yield_now().await;
                let finished = batch.iter().any(|e| matches!(e, Event::RunFinished { .. }));
                if let Some(j) = journal.as_mut() {
                    if let Err(e) = j.write_all(&batch) {
                        eprintln!("agent-33: error: cannot write the journal: {e}");
                        failed_reports = true;
                        journal = None;
                    }
                }
                pending.extend(batch);
                let unsynced = journal.as_ref().is_some_and(Journal::has_unsynced);
                if !unsynced || finished || pending.len() >= GROUP_COMMIT_EVENTS {
                    failed_reports |= commit_and_report(
                        &mut journal, &mut pending, &mut reporters, &mut all_succeeded, &llm,
                    );
                    commit_armed = false;
                } else if !commit_armed {
                    commit.as_mut().reset(tokio::time::Instant::now() + GROUP_COMMIT);
                    commit_armed = true;
                }
            }
            () = &mut commit, if commit_armed => {
                commit_armed = false;
                failed_reports |= commit_and_report(
                    &mut journal, &mut pending, &mut reporters, &mut all_succeeded, &llm,
                );
            }
            _ = tick.tick() => {
                show_errors(reporters.tick());
            }
        }
    }
    failed_reports |= commit_and_report(
        &mut journal,
        &mut pending,
        &mut reporters,
        &mut all_succeeded,
        &llm,
    );
    drop(events);
    // Every task has ended: what is left is writing reports, and one may
    // wait forever (a FIFO nobody reads). A signal now ends agent-33.
    run_over.store(true, Ordering::SeqCst);
    failed_reports |= show_errors(reporters.finish());
    if let Some(message) = read_errors.and_then(|e| e.take()) {
        Failure::Input(message).print();
        failed_reports = true;
    }
    // Said last, under the summary's `0 total`: why there was nothing to do.
    // A stream a stop cut short may have held more: no note.
    if let Some(note) = nothing_read.filter(|_| !streamed || input_total.get() == Some(0)) {
        eprintln!("agent-33: no artifacts: {note}");
    }
    if let Some(remote) = remote {
        remote.finish().await;
    }
    // Nothing we started outlives us, whatever happened above.
    agent33_process::disarm_guard();
    tokio::task::spawn_blocking(|| agent33_process::kill_all_descendants(FINAL_SWEEP))
        .await
        .ok();

    let outcome = match signalled.load(Ordering::SeqCst) {
        // Input the run stopped before reading (its deadline, say) is work
        // not done, even when every task that ran succeeded.
        0 if all_succeeded && !failed_reports && (!streamed || input_total.get().is_some()) => {
            Outcome::AllSucceeded
        }
        0 => Outcome::SomeDidNotSucceed,
        number => Outcome::Signalled(Signal(number)),
    };
    exit::code(outcome)
}

/// Longest a finished task's journal record waits for its fsync (and its
/// report for the record): long enough to group the records of many short
/// tasks into one sync, short enough that nobody notices.
const GROUP_COMMIT: Duration = Duration::from_millis(20);
/// Pending events that force a commit without waiting.
const GROUP_COMMIT_EVENTS: usize = 4096;

/// Makes the journal durable, then hands the pending events to the
/// reporters. True if a report or the journal could not be written.
fn commit_and_report(
    journal: &mut Option<Journal>,
    pending: &mut Vec<Event>,
    reporters: &mut Reporters,
    all_succeeded: &mut bool,
    llm: &LlmProviders,
) -> bool {
    let mut failed = false;
    if let Some(j) = journal.as_mut() {
        if let Err(e) = j.sync() {
            eprintln!("agent-33: error: cannot sync the journal: {e}");
            failed = true;
            *journal = None;
        }
    }
    for mut event in pending.drain(..) {
        if let Event::RunFinished {
            totals, metrics, ..
        } = &mut event
        {
            *all_succeeded = totals.all_succeeded();
            // The engine knows nothing of HTTP: what the providers' limiters
            // counted joins its metrics here, before any report sees them.
            llm.add_to_metrics(metrics);
        }
        failed |= show_errors(reporters.on_event(&event));
    }
    failed
}

/// The run's LLM providers: their limiters, whose counters join the run's
/// metrics.
struct LlmProviders {
    limiters: Vec<Arc<ProviderLimiter>>,
    /// Whether any LLM agent's model has a price: the cost is shown only
    /// then.
    priced: bool,
}

impl LlmProviders {
    /// Adds the limiters' counters to `metrics` (nothing for a run without
    /// LLM agents), and the cost only when a price was known.
    /// The limiters' state, for the progress bar.
    fn limit_source(&self) -> LimitSource {
        let limiters = self.limiters.clone();
        Arc::new(move || {
            limiters
                .iter()
                .map(|l| {
                    let (limit, _, paused) = l.status();
                    LimitStatus {
                        name: l.name().to_owned(),
                        limit,
                        max: l.max_concurrency(),
                        paused,
                    }
                })
                .collect()
        })
    }

    fn add_to_metrics(&self, metrics: &mut agent33_parallel::Metrics) {
        if self.limiters.is_empty() {
            return;
        }
        ProviderLimiter::add_to_metrics(self.limiters.iter().map(|l| &**l), metrics);
        if !self.priced {
            metrics.amounts.remove("llm_cost_usd");
        }
    }
}

/// The manifest's LLM agents, in `config.llm_agents`' order, each bound to
/// its provider's limiter: one limiter per `limit_key()`, shared by every
/// agent that names it.
fn llm_agents(config: &Config) -> Result<(LlmProviders, Vec<LlmAgent>), Failure> {
    let mut specs = Vec::with_capacity(config.llm_agents.len());
    let mut limiters: Vec<(String, Arc<ProviderLimiter>)> = Vec::new();
    let run_limit = config.settings.parallel_limit;
    for def in &config.llm_agents {
        let key = def.limit_key();
        let limiter = match limiters.iter().find(|(k, _)| *k == key) {
            Some((_, limiter)) => Arc::clone(limiter),
            None => {
                let limiter =
                    ProviderLimiter::new(&def.provider, def.config.limiter_settings(run_limit));
                limiters.push((key, Arc::clone(&limiter)));
                limiter
            }
        };
        let endpoint = Endpoint::new(&def.provider, &def.config.base_url, def.key.as_ref())?;
        let agent = LlmAgent::new(
            def.block.request_spec(),
            Arc::new(endpoint),
            limiter,
            def.base_dir.clone(),
        )
        .price(def.price());
        specs.push(agent);
    }
    let llm = LlmProviders {
        limiters: limiters.into_iter().map(|(_, l)| l).collect(),
        priced: config.llm_agents.iter().any(|def| def.price().is_some()),
    };
    Ok((llm, specs))
}

/// Opens `--journal`, checking `--resume` has one to read.
fn open_journal(config: &Config) -> Result<Option<Journal>, Failure> {
    let Some(path) = &config.options.journal else {
        return if config.options.resume {
            Err(Failure::ResumeWithoutJournal)
        } else {
            Ok(None)
        };
    };
    let fingerprint = Arc::new(CommandFingerprint::new(config));
    let journal = Journal::open(path, fingerprint).map_err(|source| Failure::Journal {
        path: path.clone(),
        source,
    })?;
    if let Some(bytes) = journal.repaired_bytes() {
        eprintln!(
            "agent-33: note: the journal {} ended in a torn line ({bytes} bytes), dropped",
            path.display()
        );
    }
    Ok(Some(journal))
}

/// A task's fingerprint for the journal: everything that decides what its
/// command does — agent, id, artifact bytes, argv, folder, environment
/// (except the attempt number).
struct CommandFingerprint {
    commands: HashMap<AgentName, TaskCommand>,
}

impl CommandFingerprint {
    fn new(config: &Config) -> Self {
        Self {
            commands: config
                .agents
                .iter()
                .map(|def| (def.name.clone(), def.command.clone()))
                .collect(),
        }
    }
}

impl Fingerprint for CommandFingerprint {
    fn fingerprint(&self, task: &AgentTask) -> String {
        let mut h = StableHasher::new();
        h.field(task.id.as_str().as_bytes());
        h.field(task.agent.as_str().as_bytes());
        h.field(task.artifact_bytes());
        if let Some(command) = self.commands.get(task.agent.as_str()) {
            let spec = command.spec(task);
            for word in &spec.argv {
                h.field(word.as_bytes());
            }
            h.field(
                spec.cwd
                    .as_ref()
                    .map_or(&b""[..], |c| c.as_os_str().as_bytes()),
            );
            // The variables the command agent adds, as journals written
            // before it added them (rather than the spec) recorded them.
            let added: [(&[u8], &[u8]); 3] = [
                (TASK_ID_VAR.as_bytes(), task.id.as_str().as_bytes()),
                (AGENT_VAR.as_bytes(), task.agent.as_str().as_bytes()),
                (ARTIFACT_VAR.as_bytes(), task.artifact_bytes()),
            ];
            let env = spec.env.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes()));
            for (k, v) in env.chain(added) {
                h.field(k);
                h.field(v);
            }
        }
        h.finish_hex()
    }
}

/// Prints reporter errors (a closed stdout ends quietly); true if any
/// report could not be written.
fn show_errors(errors: Vec<ReportError>) -> bool {
    let mut any = false;
    for e in errors {
        if !e.is_broken_pipe() {
            // The run's outcome decides the exit code: a report that could
            // not be written makes it a failure (see `failed_reports`).
            Failure::ReportWrite(e).print();
            any = true;
        }
    }
    any
}

/// Report paths that are folders, found before anything runs. The
/// reporters and the journal refuse them too, but this message names the
/// flag.
fn check_outputs(options: &RunOptions) -> Result<(), Failure> {
    let reports = [
        ("--report", &options.report),
        ("--junit", &options.junit),
        ("--timings", &options.timings),
        ("--trace", &options.trace),
        ("--journal", &options.journal),
    ];
    for (flag, path) in reports {
        if let Some(path) = path.as_deref().filter(|p| p.is_dir()) {
            return Err(Failure::OutputIsFolder {
                flag,
                path: path.to_owned(),
            });
        }
    }
    Ok(())
}

/// Creates `--output-dir` once everything else was checked, so that a usage
/// error leaves no folder behind. Without this, the first task that saves
/// output would create it, and a failure would only be a note per task.
fn create_output_dir(options: &RunOptions) -> Result<(), Failure> {
    match &options.output_dir {
        Some(dir) => std::fs::create_dir_all(dir).map_err(|source| Failure::OutputDir {
            dir: dir.clone(),
            source,
        }),
        None => Ok(()),
    }
}

fn output_mode(flag: OutputFlag) -> OutputMode {
    match flag {
        OutputFlag::Grouped => OutputMode::Grouped,
        OutputFlag::Stream => OutputMode::Stream,
        OutputFlag::Bare => OutputMode::Bare,
        OutputFlag::None => OutputMode::None,
    }
}

/// The reporters a run asked for, in the order they must see events:
/// progress first (it clears its bar), notices, task output, files, and the
/// summary last. File reports are created now so a bad path fails before
/// anything runs.
fn reporters(
    config: &Config,
    input_total: &InputTotal,
    llm: &LlmProviders,
) -> Result<Reporters, ReportError> {
    let options = &config.options;
    let term = crate::terminal::detect();
    let progress = if options.quiet {
        ProgressReporter::hidden()
    } else {
        let progress = ProgressReporter::for_terminal(&term, Box::new(io::stderr()))
            .input_total(input_total.clone());
        if llm.limiters.is_empty() {
            progress
        } else {
            progress.limits(llm.limit_source())
        }
    };
    let suspender = progress.suspender();
    let mut reporters = Reporters::new()
        .with(progress)
        .with(NoticeReporter::new(Box::new(io::stderr()), &term).suspender(suspender.clone()));
    let (stdout, stderr) = (Box::new(io::stdout()), Box::new(io::stderr()));
    let mode = output_mode(options.output);
    // Quiet: failures' output only (PRODUCT.md, -q).
    let printing = PrinterOptions::default()
        .failures_only(options.quiet)
        .keep_order(options.keep_order);
    let printers = mode.printers_with(stdout, stderr, &term, &suspender, printing);
    for printer in printers {
        reporters.push(printer);
    }
    if let Some(path) = &options.report {
        reporters.push(Box::new(JsonReporter::create(path)?));
    }
    if let Some(path) = &options.junit {
        reporters.push(Box::new(JunitReporter::create(path)?));
    }
    if let Some(path) = &options.timings {
        let timings = TimingsReporter::create(path)?;
        reporters.push(Box::new(if llm.limiters.is_empty() {
            timings
        } else {
            timings.limits(llm.limit_source())
        }));
    }
    if let Some(path) = &options.trace {
        reporters.push(Box::new(TraceReporter::create(path)?));
    }
    // The catalog's pinned lines, then why the run stopped, the slot wait
    // and the slowest tasks.
    let summary = SummaryOptions {
        details: true,
        ..SummaryOptions::default()
    };
    Ok(reporters.with(SummaryReporter::new(Box::new(io::stderr()), summary)))
}

/// How agent-33 answers a signal it handles.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Cancel the run like fail-fast (reason: interrupted); a second
    /// signal kills every task at once.
    Cancel,
    /// Kill every task at once (SIGQUIT, Ctrl-\\).
    Kill,
}

/// The signals agent-33 handles: every catchable one whose default action
/// ends the process. The tasks sit in process groups of their own, so a
/// signal sent to agent-33 alone (SIGHUP from a lost terminal or ssh
/// session, SIGXCPU from a CPU limit, SIGUSR1 from a script) never reaches
/// them: left to its default, it would kill agent-33 and leave every task
/// running.
///
/// Left out: SIGPIPE, which the Rust runtime ignores (a closed stdout is
/// an error on write); and SIGABRT, SIGBUS, SIGFPE, SIGILL, SIGSEGV,
/// SIGSYS and SIGTRAP, which report a fault of this very thread: a handler
/// that returns would run the faulting instruction again forever; and the
/// real-time signals, whose first few each C library keeps for itself
/// (glibc two, musl three), so that no fixed range is safe to claim.
fn handled_signals() -> Vec<Handled> {
    use Answer::{Cancel, Kill};
    // No name in tokio for some; rustix has their numbers for this platform.
    // (SIGSTKFLT, unused by Linux itself, is left out.)
    use rustix::process::Signal as S;
    let raw = |s: S| SignalKind::from_raw(s.as_raw());
    let mut signals = vec![
        Handled::new(
            SignalKind::interrupt(),
            "SIGINT",
            "interrupted",
            Cancel,
            true,
        ),
        Handled::new(
            SignalKind::terminate(),
            "SIGTERM",
            "terminated",
            Cancel,
            true,
        ),
        Handled::new(SignalKind::hangup(), "SIGHUP", "hangup", Cancel, false),
        Handled::new(SignalKind::quit(), "SIGQUIT", "quit", Kill, false),
        Handled::new(
            SignalKind::user_defined1(),
            "SIGUSR1",
            "user signal 1",
            Cancel,
            false,
        ),
        Handled::new(
            SignalKind::user_defined2(),
            "SIGUSR2",
            "user signal 2",
            Cancel,
            false,
        ),
        Handled::new(SignalKind::alarm(), "SIGALRM", "alarm clock", Cancel, false),
        Handled::new(SignalKind::io(), "SIGIO", "I/O possible", Cancel, false),
        Handled::new(
            raw(S::XCPU),
            "SIGXCPU",
            "CPU time limit exceeded",
            Cancel,
            false,
        ),
        Handled::new(
            raw(S::XFSZ),
            "SIGXFSZ",
            "file size limit exceeded",
            Cancel,
            false,
        ),
        Handled::new(
            raw(S::VTALARM),
            "SIGVTALRM",
            "virtual timer expired",
            Cancel,
            false,
        ),
        Handled::new(
            raw(S::PROF),
            "SIGPROF",
            "profiling timer expired",
            Cancel,
            false,
        ),
    ];
    #[cfg(any(target_os = "linux", target_os = "android"))]
    signals.push(Handled::new(
        raw(S::POWER),
        "SIGPWR",
        "power failure",
        Cancel,
        false,
    ));
    signals
}

/// A signal agent-33 handles, and how the stop reason names it
/// (`terminated (SIGTERM)`).
struct Handled {
    kind: SignalKind,
    name: &'static str,
    what: &'static str,
    answer: Answer,
    /// Handled even when we were started with it ignored.
    always: bool,
}

impl Handled {
    fn new(
        kind: SignalKind,
        name: &'static str,
        what: &'static str,
        answer: Answer,
        always: bool,
    ) -> Self {
        Self {
            kind,
            name,
            what,
            answer,
            always,
        }
    }
}

/// Handles every signal of [`handled_signals`]: the first one stops the
/// run and decides the exit code (128 + its number); a second one kills
/// every task at once.
///
/// A signal we were started with ignored (`nohup`, a background job of a
/// script) stays ignored, without a handler: that is what the caller
/// asked. SIGINT and SIGTERM are the exception, always handled.
///
/// Once `run_over` is set (every task has ended), a signal ends agent-33 at
/// once with 128 + its number: only report writing is left then, and it
/// may be stuck (a FIFO whose reader never comes). The guard still takes
/// whatever a task left behind.
fn watch_signals(
    control: RunControl,
    signalled: Arc<AtomicU8>,
    run_over: Arc<AtomicBool>,
) -> io::Result<()> {
    // Read before any handler is installed: what we were started with.
    let ignored = agent33_process::ignored_signals().unwrap_or(0);
    for handled in handled_signals() {
        let Handled {
            kind,
            name,
            what,
            answer,
            always,
        } = handled;
        let raw = kind.as_raw_value();
        let number = u8::try_from(raw).expect("signal numbers are below 65");
        if !always && ignored & (1 << (raw - 1)) != 0 {
            continue;
        }
        let mut deliveries = signal(kind)?;
        let (control, signalled) = (control.clone(), Arc::clone(&signalled));
        let run_over = Arc::clone(&run_over);
        tokio::spawn(async move {
            while deliveries.recv().await.is_some() {
                if run_over.load(Ordering::SeqCst) {
                    std::process::exit(128 + i32::from(number));
                }
                let first = signalled
                    .compare_exchange(0, number, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok();
                let cause = Interrupt::signal(what, name);
                if !first || answer == Answer::Kill {
                    control.kill_by(cause);
                } else {
                    control.interrupt_by(cause);
                }
            }
        });
    }
    Ok(())
}
