//! The command agent: one process per attempt, its output forwarded to the
//! engine as it arrives, its ending turned into an outcome.
//!
//! Life of an attempt:
//!
//! 1. Build the [`CommandSpec`](crate::CommandSpec) and spawn it in a new process group, stdin on
//!    `/dev/null`, stdout and stderr piped, with the `AGENT33_*` variables.
//! 2. Forward both pipes, in 64 KiB chunks, to the task's context (the
//!    engine keeps the bounded tail) and to the output files, while waiting
//!    for the leader to exit. When the task's token is cancelled, SIGTERM
//!    the group once; if the leader is still there after the grace period,
//!    SIGKILL it (the engine usually drops the attempt first, and the drop
//!    guard sends that SIGKILL instead).
//! 3. When the leader exits, SIGKILL whatever is left in its group: a
//!    background grandchild must not keep the task open by holding a pipe.
//!    Then reap the leader, read what is already in the pipes (until end of
//!    file or a short drain timeout) and, for a subreaper, sweep the task's
//!    escaped processes.
//!
//! It does not decide timeouts or retries (the engine does) and never runs
//! a shell: the argv is passed to the program as it is.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agent33_parallel::{Agent, AgentError, AgentOutput, AgentResult, Reason, Stream, TaskContext};
use futures::future::BoxFuture;
use rustix::process::Signal;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use crate::CommandBuilder;
use crate::group::{TaskProcess, Terminated, describe, failure_reason};
use crate::output::OutputFiles;
use crate::program::ProgramCache;
use crate::reaper;
use crate::spawn::{Launch, Launcher};

/// Bytes read from a pipe at a time; also the most each pipe holds in
/// memory here.
const CHUNK: usize = 64 * 1024;

/// How a [`CommandAgent`] runs its processes.
///
/// # Examples
///
/// ```
/// use agent33_process::ProcessOptions;
/// let options = ProcessOptions {
///     output_dir: Some("logs".into()),
///     ..ProcessOptions::default()
/// };
/// assert_eq!(options.drain_timeout.as_millis(), 250);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessOptions {
    /// When set, each attempt's full stdout and stderr are also written to
    /// files in this folder (created if needed), named by
    /// [`output_file_stem`](crate::output_file_stem) plus `.stdout` /
    /// `.stderr`; their paths are recorded in the attempt's notes.
    pub output_dir: Option<PathBuf>,
    /// After the leader exits (and its group is killed), how long to keep
    /// reading output still in the pipes when something outside the group
    /// holds them open.
    pub drain_timeout: Duration,
    /// After the leader exits, how long a subreaper keeps looking for the
    /// task's escaped processes (they take a moment to die and be
    /// reparented).
    pub sweep_timeout: Duration,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        Self {
            output_dir: None,
            drain_timeout: Duration::from_millis(250),
            sweep_timeout: Duration::from_secs(2),
        }
    }
}

struct Inner {
    builder: Arc<dyn CommandBuilder>,
    options: ProcessOptions,
    programs: ProgramCache,
    launcher: Launcher,
}

/// An agent that runs a command per attempt (see the module docs for the
/// guarantees).
///
/// Commands inherit this process's environment as it was when the agent
/// was made (it is encoded once, not on every spawn), plus the spec's
/// variables and the attempt's `AGENT33_*` ones.
///
/// # Examples
///
/// ```no_run
/// use agent33_parallel::{AgentTask, Agents, ParallelExecutor};
/// use agent33_process::{CommandAgent, CommandBuilder, CommandSpec, ProcessOptions};
///
/// struct Wc;
/// impl CommandBuilder for Wc {
///     fn build(&self, task: &AgentTask, _attempt: u32) -> Result<CommandSpec, String> {
///         Ok(CommandSpec {
///             argv: vec!["wc".into(), "-l".into(), task.artifact.clone().into()],
///             ..CommandSpec::default()
///         })
///     }
/// }
///
/// # async fn demo() {
/// let agents = Agents::new().add("wc", CommandAgent::new(Wc, ProcessOptions::default()));
/// let executor = ParallelExecutor::builder().build().expect("valid settings");
/// let results = executor.run_all(vec![AgentTask::new("wc", "Cargo.toml")], &agents).await;
/// # }
/// ```
#[derive(Clone)]
pub struct CommandAgent {
    inner: Arc<Inner>,
}

impl CommandAgent {
    /// An agent running what `builder` builds for each attempt.
    pub fn new(builder: impl CommandBuilder, options: ProcessOptions) -> Self {
        Self::from_arc(Arc::new(builder), options)
    }

    /// Like [`Self::new`], with a shared builder.
    #[must_use]
    pub fn from_arc(builder: Arc<dyn CommandBuilder>, options: ProcessOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                builder,
                options,
                programs: ProgramCache::new(),
                launcher: Launcher::new(),
            }),
        }
    }

    /// The options it runs with.
    #[must_use]
    pub fn options(&self) -> &ProcessOptions {
        &self.inner.options
    }
}

impl std::fmt::Debug for CommandAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandAgent")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Agent for CommandAgent {
    /// Runs one attempt.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future kills the attempt's whole process group and hands
    /// the leader to a background task that reaps it (see the module docs).
    fn run(&self, ctx: TaskContext) -> BoxFuture<'static, AgentResult> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { run_attempt(&inner, ctx).await })
    }
}

/// The message for a spawn that failed, naming the working folder when it
/// is the culprit (the kernel reports a bad one as a missing program).
fn start_error(program: &OsStr, cwd: Option<&Path>, err: &io::Error) -> String {
    let program = program.to_string_lossy();
    if let Some(cwd) = cwd {
        match std::fs::metadata(cwd) {
            Err(e) => {
                return format!(
                    "cannot start `{program}`: working directory `{}`: {e}",
                    cwd.display()
                );
            }
            Ok(meta) if !meta.is_dir() => {
                return format!(
                    "cannot start `{program}`: working directory `{}` is not a directory",
                    cwd.display()
                );
            }
            Ok(_) => {}
        }
    }
    format!("cannot start `{program}`: {err}")
}

/// One pipe being read.
struct Pump<R> {
    reader: R,
    /// Capacity [`CHUNK`], never zeroed: `read_buf` fills its spare
    /// capacity, so a task that prints nothing costs no more than the
    /// allocation.
    buf: Vec<u8>,
    open: bool,
    stream: Stream,
}

impl<R: AsyncRead + Unpin> Pump<R> {
    fn new(reader: R, stream: Stream) -> Self {
        Self {
            reader,
            buf: Vec::with_capacity(CHUNK),
            open: true,
            stream,
        }
    }

    /// Reads the next chunk.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: `read_buf` is (nothing is read unless it completes),
    /// and the buffer is emptied after each chunk is delivered.
    async fn read(&mut self) -> io::Result<usize> {
        self.buf.clear();
        self.reader.read_buf(&mut self.buf).await
    }

    /// Like [`Self::read`], once the run has room for more live output: a
    /// run that keeps every byte holds the task's writes back in its pipe
    /// while the consumer is far behind.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as both waits are.
    async fn read_when_room(&mut self, ctx: &TaskContext) -> io::Result<usize> {
        ctx.live_room().await;
        self.read().await
    }

    /// Hands a chunk on: to the engine first (so a stopped task keeps it),
    /// then to the file. End of file or a read error closes the pump.
    async fn deliver(
        &mut self,
        read: io::Result<usize>,
        ctx: &TaskContext,
        files: &mut OutputFiles,
    ) {
        match read {
            Ok(0) | Err(_) => self.open = false,
            Ok(n) => {
                let bytes = &self.buf[..n];
                match self.stream {
                    Stream::Stdout => ctx.write_stdout(bytes),
                    Stream::Stderr => ctx.write_stderr(bytes),
                }
                files.write(self.stream, bytes).await;
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn run_attempt(inner: &Inner, ctx: TaskContext) -> AgentResult {
    let task = ctx.task();
    let spec = inner.builder.build_for(&ctx).map_err(|e| {
        AgentError::new(format!("cannot build command: {e}")).because(Reason::StartFailed)
    })?;
    let Some(program) = spec.argv.first() else {
        return Err(
            AgentError::new("cannot start: the command is empty").because(Reason::StartFailed)
        );
    };
    if ctx.token().is_cancelled() {
        return Err(AgentError::new("not started: cancelled"));
    }
    let path_override = spec
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_os_str());
    let resolved = inner.programs.resolve(program, path_override);
    let attempt = ctx.attempt().to_string();
    // Last: the escape sweep relies on AGENT33_TASK_ID being ours.
    let task_vars = [
        OsStr::new(task.id.as_str()),
        OsStr::new(task.agent.as_str()),
        OsStr::from_bytes(task.artifact_bytes()),
        OsStr::new(&attempt),
        OsStr::new(crate::guard::run_id()),
    ];
    let sweep = inner.options.sweep_timeout;
    let spawn = |file: Option<&Path>| {
        let launch = Launch {
            program: file.map_or(program.as_os_str(), Path::as_os_str),
            argv: &spec.argv,
            cwd: spec.cwd.as_deref(),
            env: &spec.env,
            task_vars,
        };
        TaskProcess::spawn(&inner.launcher, &launch, &task.id, sweep)
    };
    let mut spawned = spawn(resolved.as_deref());
    if let (Err(e), Some(_)) = (&spawned, &resolved) {
        // The file found earlier may be gone or changed: search afresh.
        if matches!(
            e.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
        ) {
            inner.programs.forget(program);
            spawned = spawn(None);
        }
    }
    let (mut process, stdout, stderr) = spawned.map_err(|e| {
        AgentError::new(start_error(program, spec.cwd.as_deref(), &e)).because(Reason::StartFailed)
    })?;
    let mut out = Pump::new(stdout, Stream::Stdout);
    let mut err = Pump::new(stderr, Stream::Stderr);
    let mut files = match &inner.options.output_dir {
        Some(dir) => OutputFiles::create(dir, task.id.as_str(), ctx.attempt()).await,
        None => OutputFiles::none(),
    };

    // Until the leader exits: forward output, relay cancellation.
    let token = ctx.token().clone();
    let cancelled = token.cancelled();
    tokio::pin!(cancelled);
    let mut terminated = false;
    let mut term_fatal = false;
    let mut kill_at: Option<Instant> = None;
    loop {
        tokio::select! {
            // The leader's exit and cancellation before output: a task that
            // writes without pause must still be stoppable.
            biased;
            exited = process.exited() => {
                // An error here means the pidfd failed and so did the
                // fallback wait; `reap` below reports it.
                let _ = exited;
                break;
            }
            () = &mut cancelled, if !terminated => {
                match process.terminate() {
                    // It exited on its own before the stop reached it.
                    Terminated::AlreadyExited => break,
                    Terminated::Sent { fatal } => term_fatal = fatal,
                }
                terminated = true;
                kill_at = Some(Instant::now() + ctx.grace());
            }
            () = sleep_until_opt(kill_at), if kill_at.is_some() => {
                kill_at = None;
                process.signal_group(Signal::KILL);
            }
            read = out.read_when_room(&ctx), if out.open => out.deliver(read, &ctx, &mut files).await,
            read = err.read_when_room(&ctx), if err.open => err.deliver(read, &ctx, &mut files).await,
        }
    }

    // The task ended with its leader: what follows only collects output and
    // cleans up, which no timeout or stop may turn into a different outcome.
    // After our own SIGTERM the stop came first, unless the leader exited
    // with a code although the signal would have killed it: then its exit
    // came first, and the signal found it already on its way out.
    let on_its_own = !terminated || (term_fatal && process.has_exited(true));
    let settled = on_its_own && ctx.settle();
    // The leader is gone (and, with a pidfd, not yet reaped, so its pid
    // still names the group): nothing it left behind may keep the task open.
    process.signal_group(Signal::KILL);
    let status = process.reap().await;
    let pgid = process.pgid();

    // Read what is already in the pipes while escaped processes are swept;
    // the sweep kills pipe holders outside the group, which brings EOF.
    let drain_until = Instant::now() + inner.options.drain_timeout;
    let drain = async {
        // Registered with the timer only if a read has to wait.
        let deadline = tokio::time::sleep_until(drain_until);
        tokio::pin!(deadline);
        let stop = token.cancelled();
        tokio::pin!(stop);
        let mut stopped = false;
        while out.open || err.open {
            if stopped {
                // Told to stop while settled: what is already in the pipes
                // is read (the tail is often the error), no more is waited for.
                tokio::select! {
                    biased;
                    () = &mut deadline => break,
                    read = out.read(), if out.open => out.deliver(read, &ctx, &mut files).await,
                    read = err.read(), if err.open => err.deliver(read, &ctx, &mut files).await,
                    () = std::future::ready(()) => break,
                }
                continue;
            }
            tokio::select! {
                () = &mut deadline => break,
                () = &mut stop, if settled => stopped = true,
                read = out.read(), if out.open => out.deliver(read, &ctx, &mut files).await,
                read = err.read(), if err.open => err.deliver(read, &ctx, &mut files).await,
            }
        }
    };
    let sweep = async {
        if reaper::subreaper() {
            reaper::sweep_task(&task.id, pgid, inner.options.sweep_timeout).await
        } else {
            0
        }
    };
    let ((), escaped) = tokio::join!(drain, sweep);
    process.mark_settled();
    drop((out, err));

    let mut notes = files.finish().await;
    if escaped > 0 {
        let plural = if escaped == 1 { "" } else { "es" };
        notes.push(format!("{escaped} escaped process{plural} killed"));
    }
    let status = match status {
        Ok(status) => status,
        Err(e) => {
            let output = AgentOutput {
                notes,
                ..AgentOutput::default()
            };
            return Err(AgentError::with_output(
                format!("cannot wait for `{}`: {e}", program.to_string_lossy()),
                output,
            ));
        }
    };
    let (exit_code, failure) = describe(status);
    // The output already reached the engine through the context; returning
    // it again would duplicate it.
    let output = AgentOutput {
        stdout: String::new(),
        stderr: String::new(),
        exit_code,
        notes,
    };
    match failure {
        None => Ok(output),
        Some(message) => {
            Err(AgentError::with_output(message, output).because(failure_reason(status)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_errors_name_the_program_and_a_bad_cwd() {
        let enoent = io::Error::from_raw_os_error(2);
        assert_eq!(
            start_error(OsStr::new("prog"), None, &enoent),
            "cannot start `prog`: No such file or directory (os error 2)"
        );
        let msg = start_error(
            OsStr::new("prog"),
            Some(Path::new("/definitely/not/here")),
            &enoent,
        );
        assert!(
            msg.starts_with("cannot start `prog`: working directory `/definitely/not/here`:"),
            "{msg}"
        );
        let msg = start_error(
            OsStr::new("prog"),
            Some(Path::new("/proc/self/stat")),
            &enoent,
        );
        assert!(msg.ends_with("is not a directory"), "{msg}");
    }
}
