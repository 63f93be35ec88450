//! Fixtures for the NATS tests: a real `nats-server` with JetStream on a
//! free port and a temporary store, real worker processes of the built
//! binary, and a folder per test.
//!
//! Nothing sleeps to synchronise: helpers poll an observable fact (a line
//! printed, a file written, a process exited) and return as soon as it
//! holds; their budgets are hang detectors only.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_agent-33");

/// Longer than anything here should take: a hang detector.
pub const HANG: Duration = Duration::from_secs(60);

/// The tests own both cores and a server each: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Holds the one-at-a-time lock (a failed test does not poison the rest).
pub fn serial() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where `nats-server` is, if installed.
fn server_binary() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH").into_iter().flat_map(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("nats-server"))
            .collect::<Vec<_>>()
    });
    from_path
        .chain([
            PathBuf::from("/usr/sbin/nats-server"),
            PathBuf::from("/usr/bin/nats-server"),
        ])
        .find(|p| p.is_file())
}

/// Polls `fact` until it holds; panics with `what` after `budget`.
pub fn wait_for<T>(what: &str, budget: Duration, mut fact: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + budget;
    loop {
        if let Some(value) = fact() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A folder for one test.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("agent33-nats-test")
                .tempdir()
                .expect("a temporary folder"),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().canonicalize().expect("the sandbox exists")
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path().join(rel)
    }

    pub fn write(&self, rel: impl AsRef<Path>, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create folders");
        }
        std::fs::write(&path, content).expect("write a file");
        path
    }

    /// A file's text, empty if it does not exist (yet).
    pub fn read(&self, rel: impl AsRef<Path>) -> String {
        std::fs::read_to_string(self.join(rel)).unwrap_or_default()
    }

    pub fn json(&self, rel: impl AsRef<Path>) -> Value {
        serde_json::from_str(&self.read(rel)).expect("a JSON report")
    }
}

/// `agent-33` in `dir` with no `AGENT33_*` variable from our environment.
pub fn agent33(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AGENT33_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Runs `agent-33 ARGS` to its end (hang-bounded).
pub fn run(dir: &Path, args: &[&str]) -> Output {
    let child = agent33(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent-33 starts");
    wait_output(child, HANG)
}

/// A started `agent-33 run`, to signal or wait for.
pub fn spawn_run(dir: &Path, args: &[&str]) -> Child {
    agent33(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent-33 starts")
}

/// Waits for a child with piped output, failing after `budget`.
pub fn wait_output(child: Child, budget: Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(budget) {
        Ok(output) => output.expect("wait for agent-33"),
        Err(_) => {
            signal(pid, Signal::KILL);
            panic!("agent-33 (pid {pid}) hung");
        }
    }
}

pub fn signal(pid: u32, sig: Signal) {
    let pid = Pid::from_raw(i32::try_from(pid).expect("pids fit")).expect("a pid above 0");
    let _ = kill_process(pid, sig);
}

/// Whether a process exists (a zombie counts as gone).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A `nats-server` with JetStream, on a free port, with its own store.
pub struct Server {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    extra: Vec<String>,
}

impl Server {
    /// Starts one, or says why the test is skipped: a missing server fails
    /// the test in CI (`CI=true`), and elsewhere skips it visibly.
    pub fn start() -> Option<Self> {
        Self::start_on(None)
    }

    /// Like [`Self::start`], on a given port.
    pub fn start_on(port: Option<u16>) -> Option<Self> {
        Self::start_with(port, &[])
    }

    /// Like [`Self::start`], with more arguments for `nats-server`
    /// (`--user`, `--pass`).
    pub fn start_with(port: Option<u16>, extra: &[&str]) -> Option<Self> {
        let Some(binary) = server_binary() else {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "nats-server is not installed: CI must install it (.ci/run)"
            );
            eprintln!("SKIPPED: nats-server is not installed (apt-get install nats-server)");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("agent33-nats-server")
            .tempdir()
            .expect("a temporary folder");
        let extra: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
        let child = spawn_server(&binary, dir.path(), port, &extra);
        let ports = dir.path().join(format!("nats-server_{}.ports", child.id()));
        let port = wait_for("the server's ports file", Duration::from_secs(20), || {
            let text = std::fs::read_to_string(&ports).ok()?;
            let ports: Value = serde_json::from_str(&text).ok()?;
            let url = ports["nats"][0].as_str()?;
            url.rsplit(':').next()?.parse().ok()
        });
        Some(Self {
            child,
            dir,
            port,
            extra,
        })
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL with a user and password in it.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!("nats://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGTERM, then waits) and starts it again on the
    /// same port with the same store; returns once it accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        let binary = server_binary().expect("it was there a moment ago");
        self.child = spawn_server(&binary, self.dir.path(), Some(self.port), &self.extra);
        wait_for("the restarted server", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port))
                .ok()
                .map(|_| ())
        });
    }

    fn stop(&mut self) {
        signal(self.child.id(), Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_server(binary: &Path, dir: &Path, port: Option<u16>, extra: &[String]) -> Child {
    let port = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
    Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", &port, "--ports_file_dir"])
        .arg(dir)
        .args(["-js", "-sd"])
        .arg(dir.join("store"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server starts")
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A worker process of the built binary; its stderr goes to a file.
pub struct Worker {
    child: Option<Child>,
    stderr: PathBuf,
}

impl Worker {
    /// Starts `agent-33 worker --nats URL --id ID ARGS…` in `dir` and
    /// waits for its `ready` line.
    pub fn start(dir: &Path, url: &str, id: &str, args: &[&str]) -> Self {
        Self::start_with_env(dir, url, id, args, &[])
    }

    /// Like [`Self::start`], with more environment variables
    /// (`SSL_CERT_FILE`, `AGENT33_NATS_CREDS`).
    pub fn start_with_env(
        dir: &Path,
        url: &str,
        id: &str,
        args: &[&str],
        env: &[(&str, &Path)],
    ) -> Self {
        let worker = Self::spawn_with_env(dir, url, id, args, env);
        worker.wait_ready(id);
        worker
    }

    /// Waits for the `ready` line of worker `id`.
    pub fn wait_ready(&self, id: &str) {
        let ready = format!("ready: worker {id}, ");
        wait_for(&format!("worker {id} ready"), HANG, || {
            self.stderr().contains(&ready).then_some(())
        });
    }

    /// Starts a worker without waiting for it.
    pub fn spawn(dir: &Path, url: &str, id: &str, args: &[&str]) -> Self {
        Self::spawn_with_env(dir, url, id, args, &[])
    }

    fn spawn_with_env(
        dir: &Path,
        url: &str,
        id: &str,
        args: &[&str],
        env: &[(&str, &Path)],
    ) -> Self {
        let stderr = dir.join(format!("worker-{id}.err"));
        let child = agent33(dir)
            .args(["worker", "--nats", url, "--id", id])
            .args(args)
            .envs(env.iter().copied())
            // Tasks can tell which worker runs them.
            .env("A33_TEST_WORKER", id)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("a stderr file"))
            .spawn()
            .expect("the worker starts");
        Self {
            child: Some(child),
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn signal(&self, sig: Signal) {
        signal(self.pid(), sig);
    }

    /// Waits for the worker to exit (hang-bounded).
    pub fn wait(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        wait_for("the worker to exit", HANG, || {
            child.try_wait().ok().flatten()
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child
            && let Ok(None) = child.try_wait()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Lines of a ledger file that start with `prefix`.
pub fn lines_with(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}
