//! Process control through the `agent-33` binary: nothing it starts
//! outlives it, whatever way the run ends (timeout, fail-fast, an ignored
//! SIGTERM, escapes from the process group, SIGINT, SIGTERM), its memory
//! stays bounded whatever a task writes, and odd endings (a closed stdout, a
//! program that cannot start, a crash) are reported plainly.
//!
//! Every process a test starts runs the testkit fixture with a marker no
//! other test uses; right after `agent-33` exits, `/proc` must show no live
//! process carrying it. A [`MarkerGuard`] (declared before the run, so it is
//! dropped after it) kills whatever a failing test left behind, and a
//! running `agent-33` is killed when its [`Run`] is dropped.
//!
//! The fixture is found next to this test's executable (see
//! `agent33_testkit::fixture_path`): `cargo test --workspace` builds it; for
//! this file alone, `cargo test -p agent33-cli -p agent33-testkit --test
//! process_control` or `cargo build -p agent33-testkit --bins` first.
//!
//! Nothing sleeps to synchronise: tests wait for the fixture's
//! `--ready-file` lines, a line on stderr, or the process's exit. Time
//! bounds are lower bounds or hang detectors.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agent33_testkit::{
    Fixture, GateFile, MarkerGuard, Signal, is_alive, numbers_after, parent_pid, ready_lines,
    send_signal, status_kib, wait_until,
};
use serde_json::Value;

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_agent-33");

/// Hang detector: everything here is expected within a second or two, also
/// on a loaded machine.
const HANG: Duration = Duration::from_secs(60);

/// A temporary folder for one test: the run's working folder, its reports
/// and the fixtures' ready file.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("agent33-process-control")
                .tempdir()
                .expect("a temporary folder"),
        }
    }

    fn join(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Where the fixtures append their `ready` lines.
    fn ready_file(&self) -> PathBuf {
        self.join("ready")
    }

    /// Waits until `n` fixtures have written their ready line.
    fn wait_ready(&self, n: usize, run: &mut Run) {
        let path = self.ready_file();
        let ready = wait_until(HANG, || ready_lines(&path).len() >= n || run.has_exited());
        let lines = ready_lines(&path);
        assert!(
            ready && lines.len() >= n,
            "{n} fixtures not ready ({} are); stderr so far:\n{}",
            lines.len(),
            run.stderr()
        );
    }

    /// The `--report` JSON.
    fn report(&self) -> Report {
        let path = self.join("report.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        Report(serde_json::from_str(&text).expect("the report is JSON"))
    }
}

/// The fixture as an ad-hoc `--command` template: its argv, then
/// `--print {artifact}` (the fixture takes no positional arguments, so the
/// artifact must not be appended).
fn template(fixture: &Fixture) -> String {
    let mut argv = fixture.argv();
    argv.push("--print".into());
    argv.push("{artifact}".into());
    let words: Vec<String> = argv
        .iter()
        .map(|w| w.to_str().expect("test paths are UTF-8").to_owned())
        .collect();
    shell_words::join(words)
}

/// The fixture's argv as a YAML flow sequence for a manifest (JSON is
/// YAML), with `--print {artifact}` appended.
fn manifest_command(fixture: &Fixture) -> String {
    let mut argv: Vec<String> = fixture
        .argv()
        .iter()
        .map(|w| w.to_str().expect("test paths are UTF-8").to_owned())
        .collect();
    argv.extend(["--print".to_owned(), "{artifact}".to_owned()]);
    serde_json::to_string(&argv).expect("strings serialize")
}

/// `agent-33 run ARGS…` in the sandbox, with no `AGENT33_*` variable of the
/// test's environment, stdin on /dev/null.
fn agent33<I, S>(sandbox: &Sandbox, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let mut cmd = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AGENT33_") {
            cmd.env_remove(name);
        }
    }
    cmd.arg("run")
        .args(args.into_iter().map(Into::into))
        .current_dir(sandbox.dir.path())
        .stdin(Stdio::null());
    cmd
}

/// A stream of the child collected by a thread.
struct Collector {
    bytes: Arc<Mutex<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    fn start(mut stream: impl Read + Send + 'static) -> Self {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&bytes);
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0; 64 * 1024];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink
                        .lock()
                        .expect("not poisoned")
                        .extend_from_slice(&buf[..n]),
                }
            }
        });
        Self {
            bytes,
            thread: Some(thread),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().expect("not poisoned")).into_owned()
    }

    /// Everything, once the stream is closed.
    fn finish(mut self) -> String {
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the reader does not panic");
        }
        self.text()
    }
}

/// A running `agent-33`; killed (SIGKILL) if dropped before it exited.
struct Run {
    child: Child,
    started: Instant,
    stdout: Option<Collector>,
    stderr: Option<Collector>,
    exited: Option<ExitStatus>,
}

/// How a run ended.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    /// From spawn to exit.
    elapsed: Duration,
}

impl Finished {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

impl Run {
    /// Starts `cmd` with stderr collected; returns its stdout if piped.
    fn launch(mut cmd: Command, stdout: Stdio) -> (Self, Option<ChildStdout>) {
        let started = Instant::now();
        let mut child = cmd
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("agent-33 starts");
        let stdout = child.stdout.take();
        let stderr = child.stderr.take().map(Collector::start);
        let run = Self {
            child,
            started,
            stdout: None,
            stderr,
            exited: None,
        };
        (run, stdout)
    }

    /// Starts `cmd` with stdout and stderr collected.
    fn spawn(cmd: Command) -> Self {
        let (mut run, stdout) = Self::launch(cmd, Stdio::piped());
        run.stdout = stdout.map(Collector::start);
        run
    }

    /// Starts `cmd` with stdout on /dev/null.
    fn spawn_silenced(cmd: Command) -> Self {
        Self::launch(cmd, Stdio::null()).0
    }

    /// Starts `cmd` with stdout piped and handed to the test.
    fn spawn_with_stdout(cmd: Command) -> (Self, ChildStdout) {
        let (run, stdout) = Self::launch(cmd, Stdio::piped());
        (run, stdout.expect("piped"))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: Signal) {
        assert!(self.exited.is_none(), "agent-33 already exited");
        send_signal(self.pid(), sig);
    }

    fn has_exited(&mut self) -> bool {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait works");
        }
        self.exited.is_some()
    }

    /// What it printed on stderr so far.
    fn stderr(&self) -> String {
        self.stderr
            .as_ref()
            .map(Collector::text)
            .unwrap_or_default()
    }

    /// Waits until stderr contains `needle`.
    fn wait_for_stderr(&mut self, needle: &str) {
        let seen = wait_until(HANG, || self.stderr().contains(needle) || self.has_exited());
        let stderr = self.stderr();
        assert!(
            seen && stderr.contains(needle),
            "no {needle:?} on stderr:\n{stderr}"
        );
    }

    /// Waits for the exit (hang detector: [`HANG`]).
    fn finish(mut self) -> Finished {
        let exited = wait_until(HANG, || self.has_exited());
        let elapsed = self.started.elapsed();
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!(
                "agent-33 did not exit within {HANG:?}; stderr:\n{}",
                self.stderr()
            );
        }
        let status = self.exited.expect("exited");
        let stdout = self
            .stdout
            .take()
            .map(Collector::finish)
            .unwrap_or_default();
        let stderr = self
            .stderr
            .take()
            .map(Collector::finish)
            .unwrap_or_default();
        Finished {
            status,
            stdout,
            stderr,
            elapsed,
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if !self.has_exited() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The parsed `--report`.
struct Report(Value);

impl Report {
    /// The result of the task with this id, from whichever list holds it.
    fn task(&self, id: &str) -> &Value {
        ["succeeded", "failed", "cancelled", "skipped"]
            .iter()
            .filter_map(|list| self.0[list].as_array())
            .flatten()
            .find(|t| t["task"]["id"] == id)
            .unwrap_or_else(|| panic!("no task {id} in the report:\n{:#}", self.0))
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn notes(task: &Value) -> Vec<String> {
    task["notes"]
        .as_array()
        .map(|n| n.iter().map(|s| text(s).to_owned()).collect())
        .unwrap_or_default()
}

/// The heart of every test: no live process carries the marker.
fn assert_no_survivors(guard: &MarkerGuard) {
    let survivors: Vec<(u32, String)> = guard
        .pids()
        .into_iter()
        .map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_default();
            (pid, cmdline)
        })
        .collect();
    assert!(
        survivors.is_empty(),
        "processes outlived agent-33: {survivors:#?}"
    );
}

/// Every pid printed after `key=` in the task's output is gone (not even a
/// zombie of it is alive).
fn assert_pids_gone(task: &Value, key: &str) {
    for pid in numbers_after(text(&task["output"]), key) {
        assert!(!is_alive(pid), "{key}{pid} is still alive");
    }
}

#[test]
fn a_timeout_kills_the_task_and_its_grandchild() {
    let guard = MarkerGuard::new("timeout");
    let sandbox = Sandbox::new();
    let fixture = Fixture::new()
        .marker(guard.marker())
        .spawn_grandchild()
        .sleep(3600.0);
    let run = Run::spawn(agent33(
        &sandbox,
        [
            "--command",
            &template(&fixture),
            "--timeout",
            "0.5",
            "--report",
            "report.json",
            "slow",
        ],
    ));
    let done = run.finish();
    assert_no_survivors(&guard);
    assert_eq!(done.code(), Some(1), "stderr:\n{}", done.stderr);
    let report = sandbox.report();
    let task = report.task("command:slow");
    assert_eq!(task["status"], "timeout");
    assert!(
        text(&task["error"]).starts_with("timed out after 0.5s"),
        "{task}"
    );
    assert!(task["duration_ms"].as_u64().expect("a number") >= 500);
    assert_pids_gone(task, "ready pid=");
    assert_pids_gone(task, "grandchild pid=");
}

#[test]
fn fail_fast_kills_in_flight_tasks_and_their_grandchildren() {
    let guard = MarkerGuard::new("fail-fast");
    let sandbox = Sandbox::new();
    let gate = GateFile::new();
    let ready = sandbox.ready_file();
    let sleeper = Fixture::new()
        .marker(guard.marker())
        .spawn_grandchild()
        .ready_file(&ready)
        .sleep(3600.0);
    // One in-flight task also runs a process that left the group.
    let escaping = Fixture::new()
        .marker(guard.marker())
        .escape()
        .ready_file(&ready)
        .sleep(3600.0);
    let failer = Fixture::new()
        .marker(guard.marker())
        .wait_for_gone(gate.path())
        .exit(3);
    let manifest = format!(
        "execution:\n  parallel: true\n  parallel_limit: 4\nagents:\n  sleeper:\n    command: {}\n  \
         escaping:\n    command: {}\n  failer:\n    command: {}\ntasks:\n  \
         - {{agent: sleeper, artifact: a}}\n  - {{agent: sleeper, artifact: b}}\n  \
         - {{agent: escaping, artifact: c}}\n  - {{agent: failer, artifact: d}}\n  \
         - {{agent: sleeper, artifact: never}}\n",
        manifest_command(&sleeper),
        manifest_command(&escaping),
        manifest_command(&failer),
    );
    std::fs::write(sandbox.join("agent33.yaml"), manifest).expect("write the manifest");
    let mut run = Run::spawn(agent33(&sandbox, ["--report", "report.json"]));
    sandbox.wait_ready(3, &mut run);
    gate.release();
    let done = run.finish();
    assert_no_survivors(&guard);
    assert_eq!(done.code(), Some(1), "stderr:\n{}", done.stderr);
    let report = sandbox.report();
    let failed = report.task("failer:d");
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"], "exit code 3");
    for id in ["sleeper:a", "sleeper:b", "escaping:c"] {
        let task = report.task(id);
        assert_eq!(task["status"], "cancelled", "{task}");
        let error = text(&task["error"]);
        assert!(
            error.contains("fail-fast") && error.contains("failer:d"),
            "{task}"
        );
        assert_pids_gone(task, "ready pid=");
        assert_pids_gone(task, "grandchild pid=");
        assert_pids_gone(task, "escapee pid=");
    }
    assert_eq!(
        notes(report.task("escaping:c")),
        vec!["1 escaped process killed".to_owned()]
    );
    let never = report.task("sleeper:never");
    assert_eq!(never["status"], "cancelled");
    assert_eq!(never["attempts"], 0);
}

#[test]
fn a_child_ignoring_sigterm_is_killed_after_the_grace() {
    let guard = MarkerGuard::new("ignore-term");
    let sandbox = Sandbox::new();
    let fixture = Fixture::new()
        .marker(guard.marker())
        .ignore_term()
        .spawn_grandchild()
        .sleep(3600.0);
    let run = Run::spawn(agent33(
        &sandbox,
        [
            "--command",
            &template(&fixture),
            "--timeout",
            "0.3",
            "--kill-grace",
            "1",
            "--report",
            "report.json",
            "stubborn",
        ],
    ));
    let done = run.finish();
    assert_no_survivors(&guard);
    assert_eq!(done.code(), Some(1), "stderr:\n{}", done.stderr);
    let report = sandbox.report();
    let task = report.task("command:stubborn");
    assert_eq!(task["status"], "timeout");
    // The agent's own SIGKILL may end the leader (its status then says
    // so) just before the engine drops the attempt at the same moment.
    let error = text(&task["error"]);
    assert!(
        error == "timed out after 0.3s" || error == "timed out after 0.3s (killed by SIGKILL)",
        "{task}"
    );
    // SIGTERM at 0.3 s was ignored; SIGKILL came after the 1 s grace.
    assert!(
        task["duration_ms"].as_u64().expect("a number") >= 1300,
        "{task}"
    );
    assert!(done.elapsed >= Duration::from_millis(1300));
    assert_pids_gone(task, "ready pid=");
    assert_pids_gone(task, "grandchild pid=");
}

/// Runs one task of `fixture` (which succeeds) and returns its result.
fn run_escaping(guard: &MarkerGuard, fixture: &Fixture) -> Value {
    let sandbox = Sandbox::new();
    let run = Run::spawn(agent33(
        &sandbox,
        [
            "--command",
            &template(fixture),
            "--report",
            "report.json",
            "escaping",
        ],
    ));
    let done = run.finish();
    assert_no_survivors(guard);
    assert_eq!(done.code(), Some(0), "stderr:\n{}", done.stderr);
    sandbox.report().task("command:escaping").clone()
}

#[test]
fn a_double_forked_daemon_is_killed_and_reported() {
    let guard = MarkerGuard::new("daemon");
    let task = run_escaping(&guard, &Fixture::new().marker(guard.marker()).daemonize());
    assert_eq!(task["status"], "success");
    assert!(text(&task["output"]).contains("daemon spawned"), "{task}");
    assert_eq!(notes(&task), vec!["1 escaped process killed".to_owned()]);
}

#[test]
fn a_daemon_holding_stdout_does_not_keep_the_task_open() {
    let guard = MarkerGuard::new("daemon-stdout");
    let task = run_escaping(
        &guard,
        &Fixture::new()
            .marker(guard.marker())
            .daemonize_keeping_stdout(),
    );
    assert_eq!(task["status"], "success");
    assert_eq!(notes(&task), vec!["1 escaped process killed".to_owned()]);
}

#[test]
fn a_setsid_escapee_is_killed_and_reported() {
    let guard = MarkerGuard::new("setsid");
    let task = run_escaping(
        &guard,
        &Fixture::new().marker(guard.marker()).escape().daemonize(),
    );
    assert_eq!(task["status"], "success");
    assert_eq!(notes(&task), vec!["2 escaped processes killed".to_owned()]);
    assert_pids_gone(&task, "escapee pid=");
}

#[test]
fn an_escapee_of_a_timed_out_task_is_killed_and_reported() {
    let guard = MarkerGuard::new("timeout-escapee");
    let sandbox = Sandbox::new();
    let fixture = Fixture::new().marker(guard.marker()).escape().sleep(3600.0);
    let run = Run::spawn(agent33(
        &sandbox,
        [
            "--command",
            &template(&fixture),
            "--timeout",
            "0.3",
            "--report",
            "report.json",
            "slow",
        ],
    ));
    let done = run.finish();
    assert_no_survivors(&guard);
    assert_eq!(done.code(), Some(1), "stderr:\n{}", done.stderr);
    let report = sandbox.report();
    let task = report.task("command:slow");
    assert_eq!(task["status"], "timeout");
    assert_eq!(notes(task), vec!["1 escaped process killed".to_owned()]);
    assert_pids_gone(task, "escapee pid=");
}

/// Peak RSS (`VmHWM`, KiB) of `agent-33` running one task that writes
/// `bytes` to stdout and then waits on a gate: read once the task has
/// written everything (and before it ends), and the last reading before
/// `agent-33` exits.
fn peak_rss_kib(bytes: u64) -> (u64, u64) {
    let guard = MarkerGuard::new("memory");
    let sandbox = Sandbox::new();
    let gate = GateFile::new();
    let fixture = Fixture::new()
        .marker(guard.marker())
        .write_bytes(bytes)
        .ready_file(&sandbox.ready_file())
        .wait_for_gone(gate.path());
    let mut run = Run::spawn_silenced(agent33(
        &sandbox,
        [
            "--command",
            &template(&fixture),
            "--report",
            "report.json",
            "writer",
        ],
    ));
    sandbox.wait_ready(1, &mut run);
    let pid = run.pid();
    let written = status_kib(pid, "VmHWM").expect("agent-33 is running");
    gate.release();
    // VmHWM only grows: the last reading while it still runs is its peak.
    let mut last = written;
    let exited = wait_until(HANG, || match status_kib(pid, "VmHWM") {
        Some(kib) => {
            last = kib;
            false
        }
        None => true,
    });
    assert!(exited, "agent-33 did not end");
    let done = run.finish();
    assert_no_survivors(&guard);
    assert_eq!(done.code(), Some(0), "stderr:\n{}", done.stderr);
    let report = sandbox.report();
    let output = text(&report.task("command:writer")["output"]).to_owned();
    if bytes > 2 << 20 {
        assert!(output.starts_with("[agent-33: "), "{}", &output[..100]);
        assert!(output.contains(" bytes truncated]"));
    }
    (written, last)
}

#[test]
fn a_300_mb_writer_leaves_agent33_memory_near_the_output_limit() {
    const LIMIT_KIB: u64 = 1024; // the default --output-limit
    // The allocator's own slack: glibc gives each thread that allocates an
    // arena and raises its mmap threshold after large frees, so the same
    // run peaks a few MiB apart from one time to the next (over the silent
    // task, 1.4–4.2 MiB after writing and 4.8–7.4 MiB at exit in 15 runs
    // here). A task whose output were kept whole would add 300 MB.
    const SLACK_KIB: u64 = 8 * 1024;
    let (base_written, base_last) = peak_rss_kib(0);
    let (big_written, big_last) = peak_rss_kib(300_000_000);
    eprintln!(
        "agent-33 VmHWM: silent task {base_written}/{base_last} KiB, \
         300 MB task {big_written}/{big_last} KiB (after writing/at exit)"
    );
    assert!(
        big_written <= base_written + LIMIT_KIB + SLACK_KIB,
        "while a task wrote 300 MB, agent-33's peak RSS was {big_written} KiB, \
         against {base_written} KiB for a silent task"
    );
    // Reports and the printed block each copy the kept tail once more.
    assert!(
        big_last <= base_last + 3 * LIMIT_KIB + SLACK_KIB,
        "at exit, agent-33's peak RSS was {big_last} KiB, against {base_last} KiB \
         for a silent task"
    );
}

/// `-j 2` over three sleeping tasks (with grandchildren); `signal` once
/// both running tasks are ready.
fn interrupted_run(label: &str, sig: Signal) -> (MarkerGuard, Sandbox, Finished) {
    let guard = MarkerGuard::new(label);
    let sandbox = Sandbox::new();
    let fixture = Fixture::new()
        .marker(guard.marker())
        .spawn_grandchild()
        .ready_file(&sandbox.ready_file())
        .sleep(3600.0);
    let mut cmd = agent33(
        &sandbox,
        [
            "-j",
            "2",
            "--command",
            &template(&fixture),
            "--report",
            "report.json",
            "--junit",
            "junit.xml",
            "a",
            "b",
            "c",
        ],
    );
    // agent-33 leaves SIGHUP and SIGQUIT alone when it starts with them
    // ignored, which is how a script's background job (this test, say)
    // or nohup hands them down: then give it their defaults (`env
    // --default-signal` needs coreutils 8.31, so only then).
    let bit = |sig: u32| 1u64 << (sig - 1);
    let hup_quit = bit(1) | bit(3);
    if agent33_process::ignored_signals().unwrap_or(0) & hup_quit != 0 {
        let mut with_defaults = Command::new("env");
        with_defaults
            .arg("--default-signal=HUP,QUIT")
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .current_dir(sandbox.dir.path())
            .stdin(Stdio::null());
        for (name, value) in cmd.get_envs() {
            match value {
                Some(value) => with_defaults.env(name, value),
                None => with_defaults.env_remove(name),
            };
        }
        cmd = with_defaults;
    }
    let mut run = Run::spawn(cmd);
    sandbox.wait_ready(2, &mut run);
    run.signal(sig);
    let done = run.finish();
    assert_no_survivors(&guard);
    (guard, sandbox, done)
}

/// What an interrupt leaves: every task cancelled for the interrupt, named
/// by `reason`, the reports and the summary written.
fn assert_interrupted(sandbox: &Sandbox, done: &Finished, reason: &str) {
    assert!(
        done.stderr.contains("Execution Summary"),
        "no summary:\n{}",
        done.stderr
    );
    let report = sandbox.report();
    assert_eq!(report.0["total"], 3);
    let mut in_flight = 0;
    for id in ["command:a", "command:b", "command:c"] {
        let task = report.task(id);
        assert_eq!(task["status"], "cancelled", "{task}");
        assert!(
            text(&task["error"]).ends_with(&format!(": {reason}")),
            "{task}"
        );
        if task["attempts"] == 1 {
            in_flight += 1;
            assert_pids_gone(task, "ready pid=");
            assert_pids_gone(task, "grandchild pid=");
        }
    }
    assert_eq!(in_flight, 2, "{:#}", report.0);
    let junit = std::fs::read_to_string(sandbox.join("junit.xml")).expect("junit.xml written");
    assert!(junit.contains("<testsuite name=\"command\""), "{junit}");
    assert_eq!(junit.matches("<skipped message=").count(), 3, "{junit}");
    assert!(junit.contains(reason), "{junit}");
    assert!(
        done.stderr.contains(&format!("\nStopped: {reason}\n")),
        "{}",
        done.stderr
    );
}

#[test]
fn sigint_cancels_the_run_writes_the_reports_and_exits_130() {
    let (_guard, sandbox, done) = interrupted_run("sigint", Signal::INT);
    assert_eq!(done.code(), Some(130), "stderr:\n{}", done.stderr);
    assert_interrupted(&sandbox, &done, "interrupted (SIGINT)");
}

#[test]
fn sigterm_cancels_the_run_and_exits_143() {
    let (_guard, sandbox, done) = interrupted_run("sigterm", Signal::TERM);
    assert_eq!(done.code(), Some(143), "stderr:\n{}", done.stderr);
    assert_interrupted(&sandbox, &done, "terminated (SIGTERM)");
}

#[test]
fn sighup_cancels_the_run_and_exits_129() {
    // A closed terminal: the tasks' own groups never see the hangup.
    let (_guard, sandbox, done) = interrupted_run("sighup", Signal::HUP);
    assert_eq!(done.code(), Some(129), "stderr:\n{}", done.stderr);
    assert_interrupted(&sandbox, &done, "hangup (SIGHUP)");
}

#[test]
fn sigquit_kills_every_group_at_once_and_exits_131() {
    let (_guard, sandbox, done) = interrupted_run("sigquit", Signal::QUIT);
    assert_eq!(done.code(), Some(131), "stderr:\n{}", done.stderr);
    assert_interrupted(&sandbox, &done, "quit (SIGQUIT): tasks killed");
}

#[test]
fn a_second_sigint_kills_every_group_at_once() {
    let guard = MarkerGuard::new("second-sigint");
    let sandbox = Sandbox::new();
    let fixture = Fixture::new()
        .marker(guard.marker())
        .ignore_term()
        .spawn_grandchild()
        .ready_file(&sandbox.ready_file())
        .sleep(3600.0);
    let mut run = Run::spawn(agent33(
        &sandbox,
        [
            "-j",
            "2",
            "--kill-grace",
            "30",
            "--command",
            &template(&fixture),
            "--report",
            "report.json",
            "a",
            "b",
        ],
    ));
    sandbox.wait_ready(2, &mut run);
    run.signal(Signal::INT);
    run.wait_for_stderr("stopping: interrupted");
    // The tasks ignore SIGTERM and have 30 s of grace: still running.
    assert!(
        !run.has_exited(),
        "agent-33 exited before its grace ran out"
    );
    // (Their grandchildren may have died: one that had not yet installed
    // its SIGTERM handler when the SIGTERM came.)
    for (leader, _) in ready_lines(&sandbox.ready_file()) {
        assert!(
            is_alive(leader),
            "leader {leader} died of an ignored SIGTERM"
        );
    }
    let second = Instant::now();
    run.signal(Signal::INT);
    let done = run.finish();
    let after_second = second.elapsed();
    assert_no_survivors(&guard);
    assert_eq!(done.code(), Some(130), "stderr:\n{}", done.stderr);
    // Nowhere near the 30 s grace (a hang detector, not a benchmark).
    assert!(
        after_second < Duration::from_secs(10),
        "agent-33 took {after_second:?} after the second SIGINT"
    );
    let report = sandbox.report();
    for id in ["command:a", "command:b"] {
        let task = report.task(id);
        assert_eq!(task["status"], "cancelled", "{task}");
        assert_eq!(
            text(&task["error"]),
            "cancelled: interrupted twice (SIGINT): tasks killed",
            "{task}"
        );
        assert_pids_gone(task, "ready pid=");
        assert_pids_gone(task, "grandchild pid=");
    }
}

#[test]
fn a_sigkilled_agent_33_takes_its_tasks_with_it() {
    // Nothing in agent-33 can react to SIGKILL (the OOM killer sends it):
    // its guard process, which outlives it, kills the tasks' groups and
    // what left them (here a setsid'd copy, still the leader's child).
    let guard = MarkerGuard::new("sigkill");
    let sandbox = Sandbox::new();
    let fixture = Fixture::new()
        .marker(guard.marker())
        .ignore_term()
        .spawn_grandchild()
        .escape()
        .ready_file(&sandbox.ready_file())
        .sleep(3600.0);
    let mut run = Run::spawn(agent33(
        &sandbox,
        ["-j", "2", "--command", &template(&fixture), "a", "b"],
    ));
    sandbox.wait_ready(2, &mut run);
    sigkill_leaves_nothing(run, &guard);
}

#[test]
fn a_sigkilled_agent_33_takes_a_daemon_whose_parents_are_gone_with_it() {
    // A double-forked daemon links to no task once its parent exits: it is
    // reparented to agent-33, and when agent-33 dies, on to init. The guard
    // finds it by the run's id in its environment.
    let guard = MarkerGuard::new("sigkill-daemon");
    let sandbox = Sandbox::new();
    let fixture = Fixture::new()
        .marker(guard.marker())
        .daemonize()
        .ready_file(&sandbox.ready_file())
        .sleep(3600.0);
    let mut run = Run::spawn(agent33(&sandbox, ["--command", &template(&fixture), "a"]));
    sandbox.wait_ready(1, &mut run);
    let me = run.pid();
    let leaders: Vec<u32> = ready_lines(&sandbox.ready_file())
        .iter()
        .map(|&(pid, _)| pid)
        .collect();
    let orphaned = || {
        guard
            .pids()
            .iter()
            .any(|&p| !leaders.contains(&p) && parent_pid(p) == Some(me))
    };
    assert!(
        wait_until(HANG, orphaned),
        "no daemon was reparented to agent-33: {:?}",
        guard.pids()
    );
    sigkill_leaves_nothing(run, &guard);
}

/// SIGKILLs agent-33 and waits until none of the guard's processes lives.
fn sigkill_leaves_nothing(run: Run, guard: &MarkerGuard) {
    run.signal(Signal::KILL);
    let done = run.finish();
    assert_eq!(done.code(), None, "killed, not exited");
    assert!(
        wait_until(HANG, || guard.pids().is_empty()),
        "processes outlived a SIGKILLed agent-33: {:?}",
        guard.pids()
    );
}

/// Whether a guard of the agent-33 whose pid is `pid` is running.
fn guard_of(pid: u32) -> bool {
    let wanted = format!("__guard\0{pid}\0");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            std::fs::read(entry.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&wanted))
        })
}

#[test]
fn a_clean_run_leaves_no_guard_behind() {
    let sandbox = Sandbox::new();
    let run = Run::spawn(agent33(&sandbox, ["--command", "true", "a"]));
    let pid = run.pid();
    let done = run.finish();
    assert_eq!(done.code(), Some(0), "stderr:\n{}", done.stderr);
    assert!(
        wait_until(HANG, || !guard_of(pid)),
        "the guard of {pid} outlived its run"
    );
}

#[test]
fn a_closed_stdout_ends_the_run_quietly() {
    for mode in ["grouped", "stream"] {
        let guard = MarkerGuard::new("head");
        let sandbox = Sandbox::new();
        let fixture = Fixture::new().marker(guard.marker()).write_bytes(4_000_000);
        let (run, stdout) = Run::spawn_with_stdout(agent33(
            &sandbox,
            [
                "-j",
                "2",
                "--output",
                mode,
                "--command",
                &template(&fixture),
                "a",
                "b",
                "c",
                "d",
            ],
        ));
        // `| head -1`: read one line, then close the pipe.
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("read a line");
        assert!(!first.is_empty(), "{mode}: no output");
        let done = run.finish();
        assert_no_survivors(&guard);
        assert_eq!(done.code(), Some(0), "{mode}: stderr:\n{}", done.stderr);
        let stderr = done.stderr.to_lowercase();
        for noise in ["error", "broken pipe", "panicked"] {
            assert!(!stderr.contains(noise), "{mode}: stderr:\n{}", done.stderr);
        }
        assert!(
            done.stderr.contains("4 succeeded"),
            "{mode}: stderr:\n{}",
            done.stderr
        );
    }
}

#[test]
fn a_command_that_cannot_start_is_a_failed_task() {
    let sandbox = Sandbox::new();
    let not_executable = sandbox.join("not-executable");
    std::fs::write(&not_executable, "#!/bin/sh\n").expect("write a file");
    let cases: [(&Path, &str); 2] = [
        (
            Path::new("/nonexistent/agent33-no-such-program"),
            "No such file or directory",
        ),
        (&not_executable, "Permission denied"),
    ];
    for (program, reason) in cases {
        let program = program.to_str().expect("UTF-8");
        let run = Run::spawn(agent33(
            &sandbox,
            ["--command", program, "--report", "report.json", "x"],
        ));
        let done = run.finish();
        assert_eq!(done.code(), Some(1), "stderr:\n{}", done.stderr);
        let report = sandbox.report();
        let task = report.task("command:x");
        assert_eq!(task["status"], "failed");
        let error = text(&task["error"]);
        assert!(
            error.starts_with(&format!("cannot start `{program}`: ")) && error.contains(reason),
            "{task}"
        );
        assert_eq!(task["exit_code"], Value::Null);
        assert_eq!(task["attempts"], 1);
        assert!(task["started_at"].is_string(), "{task}");
        assert!(done.stderr.contains(error), "stderr:\n{}", done.stderr);
    }
}

#[test]
fn a_crash_is_reported_as_killed_by_sigsegv() {
    let guard = MarkerGuard::new("segv");
    let sandbox = Sandbox::new();
    let fixture = Fixture::new().marker(guard.marker()).signal("SEGV");
    let run = Run::spawn(agent33(
        &sandbox,
        [
            "--command",
            &template(&fixture),
            "--report",
            "report.json",
            "crash",
        ],
    ));
    let done = run.finish();
    assert_no_survivors(&guard);
    assert_eq!(done.code(), Some(1), "stderr:\n{}", done.stderr);
    let report = sandbox.report();
    let task = report.task("command:crash");
    assert_eq!(task["status"], "failed");
    assert_eq!(task["error"], "killed by SIGSEGV");
    assert_eq!(task["exit_code"], Value::Null);
    assert!(
        done.stdout.contains("killed by SIGSEGV"),
        "stdout:\n{}",
        done.stdout
    );
}
