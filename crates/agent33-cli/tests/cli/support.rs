//! Helpers for the CLI tests: a sandbox folder per test, the built binary
//! run in it with a clean `AGENT33_*` environment, and readers for what it
//! leaves behind (the JSON report, a dry run's plan, marker files, what the
//! [`SHOW_ARGS`] script says a task was given).
//!
//! Nothing here sleeps to synchronise: waiting helpers poll an observable
//! fact (a file exists, a line was printed, the process exited) and return
//! as soon as it holds. Their budget ([`HANG`]) is only a hang detector.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_agent-33");

/// How long anything may take before the test calls it a hang. Every run in
/// these tests is expected to take well under 2 s.
pub const HANG: Duration = Duration::from_secs(30);

/// A temporary folder that one test works in.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("agent33-cli-test")
                .tempdir()
                .expect("a temporary folder"),
        }
    }

    /// The folder, canonical (so it compares with `pwd -P`).
    pub fn path(&self) -> PathBuf {
        self.dir.path().canonicalize().expect("the sandbox exists")
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path().join(rel)
    }

    /// Writes a file (creating its folders).
    pub fn write(&self, rel: impl AsRef<Path>, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create folders");
        }
        std::fs::write(&path, content).expect("write a file");
        path
    }

    /// Writes `agent33.yaml`.
    pub fn manifest(&self, text: &str) -> PathBuf {
        self.write("agent33.yaml", text)
    }

    pub fn exists(&self, rel: impl AsRef<Path>) -> bool {
        self.join(rel).exists()
    }

    pub fn read(&self, rel: impl AsRef<Path>) -> String {
        let path = self.join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    /// Parses a JSON report written by `--report`.
    pub fn report(&self, rel: impl AsRef<Path>) -> Report {
        let text = self.read(rel);
        Report(serde_json::from_str(&text).expect("the report is valid JSON"))
    }

    /// Names of the files directly in the sandbox, sorted.
    pub fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path())
            .expect("list the sandbox")
            .map(|e| {
                e.expect("a folder entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    /// `agent-33 run ARGS…` in the sandbox.
    pub fn run<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.subcommand("run", args)
    }

    /// `agent-33 NAME ARGS…` in the sandbox.
    pub fn subcommand<I, S>(&self, name: &str, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = agent33();
        cmd.arg(name).args(args).current_dir(self.path());
        Cmd { cmd }
    }

    /// The plan `agent-33 run --dry-run --format json ARGS…` prints; the
    /// dry run must succeed.
    #[track_caller]
    pub fn dry_run_json(&self, args: &[&str]) -> Value {
        let mut cmd = self.run(["--dry-run", "--format", "json"]);
        cmd.cmd.args(args);
        let out = cmd.output();
        out.code_is(0);
        serde_json::from_slice(&out.stdout).expect("the plan is JSON")
    }
}

/// The binary with a clean environment: no `AGENT33_*` variable of the
/// test's own environment leaks in.
pub fn agent33() -> Command {
    let mut cmd = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AGENT33_") {
            cmd.env_remove(name);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// A command about to run.
pub struct Cmd {
    pub cmd: Command,
}

impl Cmd {
    pub fn env(mut self, name: &str, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(name, value);
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    /// Runs it to the end (hang detector: [`HANG`]).
    pub fn output(self) -> Output {
        self.spawn().finish()
    }

    /// Starts it with stdin, stdout and stderr piped; stdout and stderr are
    /// read line by line by threads, so a test can wait for a line.
    pub fn spawn(mut self) -> Running {
        let started = Instant::now();
        let mut child = self
            .cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("agent-33 starts");
        let stdin = child.stdin.take();
        let stdout = Lines::read(child.stdout.take().expect("piped stdout"));
        let stderr = Lines::read(child.stderr.take().expect("piped stderr"));
        Running {
            child,
            stdin,
            stdout: Some(stdout),
            stderr: Some(stderr),
            started,
        }
    }
}

/// One output stream of the child, read line by line by a thread.
struct Lines {
    rx: mpsc::Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl Lines {
    fn read(stream: impl Read + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            loop {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Self {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`.
    fn wait_for(&mut self, what: &str, needle: &str) -> String {
        let deadline = Instant::now() + HANG;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.extend_from_slice(&line);
                    let line = String::from_utf8_lossy(&line).into_owned();
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no {what} line containing {needle:?} (hang detector, or agent-33 ended); \
                     {what} so far:\n{}",
                    String::from_utf8_lossy(&self.seen)
                ),
            }
        }
    }

    /// Everything, once the stream has ended.
    fn rest(mut self) -> Vec<u8> {
        // The reader thread ends at EOF, which follows the exit (task
        // output goes through agent-33's own pipes, never to ours).
        while let Ok(line) = self.rx.recv_timeout(HANG) {
            self.seen.extend_from_slice(&line);
        }
        self.seen
    }
}

/// A running `agent-33`.
pub struct Running {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<Lines>,
    stderr: Option<Lines>,
    started: Instant,
}

impl Running {
    /// Writes to its stdin (and flushes).
    pub fn write_stdin(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let stdin = self.stdin.as_mut().expect("stdin is still open");
        stdin.write_all(bytes)?;
        stdin.flush()
    }

    /// Closes its stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits until stderr has a line containing `needle`; returns it.
    pub fn wait_for_stderr(&mut self, needle: &str) -> String {
        self.stderr
            .as_mut()
            .expect("not finished")
            .wait_for("stderr", needle)
    }

    /// Waits until stdout has a line containing `needle`; returns it.
    pub fn wait_for_stdout(&mut self, needle: &str) -> String {
        self.stdout
            .as_mut()
            .expect("not finished")
            .wait_for("stdout", needle)
    }

    /// Whether it has exited, without waiting.
    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    /// Waits for it to exit (stdin is closed first) and collects its output.
    pub fn finish(mut self) -> Output {
        self.close_stdin();
        self.wait_exit();
        let status = self.child.wait().expect("wait");
        let elapsed = self.started.elapsed();
        let stdout = self.stdout.take().expect("not finished").rest();
        let stderr = self.stderr.take().expect("not finished").rest();
        Output {
            code: status.code(),
            stdout,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            elapsed,
        }
    }

    /// Waits for the process to exit, keeping stdin as it is. Panics (after
    /// killing it) when it does not exit within [`HANG`].
    pub fn wait_exit(&mut self) {
        let exited = wait_until(HANG, || self.has_exited());
        if !exited {
            let _ = self.child.kill();
            panic!("agent-33 did not exit within {HANG:?} (hang detector)");
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failing test must not leave agent-33 running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `fact` every few milliseconds until it holds or `budget` passes;
/// returns whether it holds.
pub fn wait_until(budget: Duration, mut fact: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + budget;
    loop {
        if fact() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (hang detector: [`HANG`]) until `path` exists.
pub fn wait_for_file(path: &Path) {
    assert!(
        wait_until(HANG, || path.exists()),
        "{} did not appear within {HANG:?}",
        path.display()
    );
}

/// What a finished `agent-33` left.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Asserts the exit code, showing the output when it is wrong.
    #[track_caller]
    pub fn code_is(&self, want: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(want),
            "exit code\n--- stdout:\n{}\n--- stderr:\n{}",
            self.stdout(),
            self.stderr
        );
        self
    }

    /// Asserts a usage error: exit 2, nothing on stdout, one error message
    /// on stderr containing `needle`.
    #[track_caller]
    pub fn usage_error(&self, needle: &str) -> &Self {
        self.code_is(2);
        assert!(
            self.stderr.starts_with("agent-33: error: ") || self.stderr.starts_with("error: "),
            "a usage error message, got:\n{}",
            self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "the message should contain {needle:?}, got:\n{}",
            self.stderr
        );
        assert!(
            !self.stderr.contains("Execution Summary"),
            "nothing ran, so no summary:\n{}",
            self.stderr
        );
        self
    }
}

/// A parsed `--report` file.
#[derive(Debug, Clone)]
pub struct Report(pub Value);

pub const LISTS: [&str; 4] = ["succeeded", "failed", "cancelled", "skipped"];

impl Report {
    pub fn total(&self) -> u64 {
        self.0["total"].as_u64().expect("total is a number")
    }

    pub fn list(&self, name: &str) -> &Vec<Value> {
        self.0[name]
            .as_array()
            .unwrap_or_else(|| panic!("`{name}` is a list"))
    }

    /// Ids in one list, in order.
    pub fn ids(&self, name: &str) -> Vec<String> {
        self.list(name)
            .iter()
            .map(|r| r["task"]["id"].as_str().expect("an id").to_owned())
            .collect()
    }

    /// Every task result, from all four lists.
    pub fn all(&self) -> Vec<&Value> {
        LISTS.iter().flat_map(|l| self.list(l)).collect()
    }

    /// The result of the task with this id.
    pub fn task(&self, id: &str) -> &Value {
        self.all()
            .into_iter()
            .find(|r| r["task"]["id"] == id)
            .unwrap_or_else(|| panic!("no task `{id}` in the report:\n{:#}", self.0))
    }

    pub fn status(&self, id: &str) -> &str {
        self.task(id)["status"].as_str().expect("a status")
    }

    pub fn error(&self, id: &str) -> &str {
        self.task(id)["error"]
            .as_str()
            .unwrap_or_else(|| panic!("task `{id}` has no error: {:#}", self.task(id)))
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.0["metrics"]["counters"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("counter {name}"))
    }
}

/// A task result that never started: no attempt, no times, no exit code.
#[track_caller]
pub fn assert_never_started(r: &Value) {
    assert_eq!(r["attempts"], 0, "{r:#}");
    assert!(r["started_at"].is_null(), "{r:#}");
    assert!(r["finished_at"].is_null(), "{r:#}");
    assert!(r["exit_code"].is_null(), "{r:#}");
}

/// Lowercase hex of bytes, as `od -An -tx1 | tr -d ' \n'` prints them.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A shell script, for `sh FILE ARGS…`, that prints its argument count and
/// each argument's bytes in hex, one line each: `argc=N` then `arg=HEX`.
pub const SHOW_ARGS: &str = r#"printf 'argc=%s\n' "$#"
for a in "$@"; do
  printf 'arg='
  printf '%s' "$a" | od -An -tx1 | tr -d ' \n'
  printf '\n'
done
"#;

/// What [`SHOW_ARGS`] prints for exactly these arguments.
pub fn shown(args: &[&[u8]]) -> String {
    let mut s = format!("argc={}\n", args.len());
    for a in args {
        s.push_str(&format!("arg={}\n", hex(a)));
    }
    s
}

/// Checks each succeeded task (in input order) printed `want(artifact)`.
#[track_caller]
pub fn assert_outputs(r: &Report, artifacts: &[OsString], want: impl Fn(&[u8]) -> String) {
    let got: Vec<&Value> = r.list("succeeded").iter().collect();
    assert_eq!(
        got.len(),
        artifacts.len(),
        "every task succeeded: {:#}",
        r.0
    );
    for (result, artifact) in got.iter().zip(artifacts) {
        assert_eq!(
            result["output"].as_str().expect("output"),
            want(artifact.as_bytes()),
            "artifact {artifact:?}"
        );
    }
}

/// Checks that no artifact such as `a; touch x`, `$(touch y)`, `` `touch
/// z` `` or `a|touch p && touch q` was run by a shell.
#[track_caller]
pub fn assert_nothing_injected(sb: &Sandbox) {
    for f in ["x", "y", "z", "p", "q"] {
        assert!(!sb.exists(f), "file {f} was created: {:?}", sb.files());
    }
}

/// The argv of each task in the first level of a dry-run plan.
pub fn plan_argvs(plan: &Value) -> Vec<Value> {
    plan["levels"][0]
        .as_array()
        .expect("one level")
        .iter()
        .map(|t| t["argv"].clone())
        .collect()
}

/// A manifest with one shell agent `t` whose script starts with a
/// `wait_for FILE` function and `touch "ran.$1"` (so "task X started" is
/// the file `ran.X`), followed by `body`. `execution` holds the lines of
/// the `execution:` block (may be empty). Each entry of `tasks` is either a
/// plain artifact name (a task of `t`) or a YAML flow mapping `{…}`.
pub fn script_manifest(execution: &str, body: &str, tasks: &[&str]) -> String {
    let mut yaml = String::new();
    if !execution.trim().is_empty() {
        yaml.push_str("execution:\n");
        for line in execution.lines() {
            yaml.push_str("  ");
            yaml.push_str(line.trim());
            yaml.push('\n');
        }
    }
    yaml.push_str("agents:\n  t:\n    shell: true\n    command: |\n");
    let script = format!(
        "wait_for() {{ until [ -e \"$1\" ]; do sleep 0.01; done; }}\ntouch \"ran.$1\"\n{body}"
    );
    for line in script.lines() {
        yaml.push_str("      ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    yaml.push_str("tasks:\n");
    if tasks.is_empty() {
        yaml.push_str("  []\n");
    }
    for t in tasks {
        if t.starts_with('{') {
            yaml.push_str(&format!("  - {t}\n"));
        } else {
            yaml.push_str(&format!("  - {{agent: t, artifact: \"{t}\"}}\n"));
        }
    }
    yaml
}
