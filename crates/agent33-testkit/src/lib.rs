//! Test support for agent-33's process control: the `agent33-fixture`
//! program (see its own docs for the flags), a builder for its argv, and
//! helpers that observe real processes through `/proc`.
//!
//! Tests built on this crate wait on observable facts (a line printed, a pid
//! gone from `/proc`) with generous budgets that return as soon as the fact
//! holds; they never sleep to synchronise. Every fixture a test starts should
//! carry a [`unique_marker`] and be covered by a [`MarkerGuard`], so that a
//! failing test still kills what it started.
//!
//! This crate is Linux-only in practice (it reads `/proc`) and is never
//! published.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::process::Pid;

pub mod llm_server;
/// Signals, for [`send_signal`].
pub use rustix::process::Signal;

/// How often the waiting helpers look again.
const POLL: Duration = Duration::from_millis(5);

/// The fixture binary's file name.
pub const FIXTURE_NAME: &str = "agent33-fixture";

/// The path of the `agent33-fixture` binary, for tests of other crates.
///
/// Cargo builds a package's binaries only for that package's own tests, so
/// this looks for the binary where Cargo puts it: in the profile folder
/// (`target/<profile>/`) above the running test executable
/// (`target/<profile>/deps/<test>-<hash>`). The environment variable
/// `AGENT33_FIXTURE` overrides the search.
///
/// # Panics
///
/// If the binary is not there, with the command that builds it: run the
/// tests with `-p agent33-testkit` too, or `cargo build -p agent33-testkit
/// --bins` first.
#[must_use]
pub fn fixture_path() -> PathBuf {
    if let Some(path) = std::env::var_os("AGENT33_FIXTURE") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test knows its own executable");
    let candidates = exe
        .ancestors()
        .skip(1)
        .take(3)
        .map(|dir| dir.join(FIXTURE_NAME))
        .collect::<Vec<_>>();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{FIXTURE_NAME} not found (looked at {candidates:?}); build it with \
                 `cargo build -p agent33-testkit --bins` (same profile as the tests), \
                 or run the tests with `-p agent33-testkit` too"
            )
        })
}

/// The argv of one fixture run, built flag by flag.
///
/// # Examples
///
/// ```no_run
/// use agent33_testkit::{Fixture, unique_marker};
/// let marker = unique_marker("doc");
/// let argv = Fixture::new().marker(&marker).spawn_grandchild().sleep(3600.0).argv();
/// assert!(argv.len() > 4);
/// ```
#[derive(Clone, Debug)]
pub struct Fixture {
    argv: Vec<OsString>,
    positional: Vec<OsString>,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    /// The fixture with no flags: it prints its `ready` line and exits 0.
    ///
    /// # Panics
    ///
    /// When the binary cannot be found (see [`fixture_path`]).
    #[must_use]
    pub fn new() -> Self {
        Self::at(fixture_path())
    }

    /// The fixture at a known path (inside the testkit's own tests:
    /// `env!("CARGO_BIN_EXE_agent33-fixture")`).
    #[must_use]
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self {
            argv: vec![path.into().into_os_string()],
            positional: Vec::new(),
        }
    }

    fn flag(mut self, flag: &str) -> Self {
        self.argv.push(flag.into());
        self
    }

    fn flag_value(mut self, flag: &str, value: impl AsRef<OsStr>) -> Self {
        self.argv.push(flag.into());
        self.argv.push(value.as_ref().to_owned());
        self
    }

    /// `--exit N`.
    #[must_use]
    pub fn exit(self, code: i32) -> Self {
        self.flag_value("--exit", code.to_string())
    }

    /// `--sleep SECS`.
    #[must_use]
    pub fn sleep(self, secs: f64) -> Self {
        self.flag_value("--sleep", secs.to_string())
    }

    /// `--wait-for-gone PATH`: exit when the file disappears (see [`GateFile`]).
    #[must_use]
    pub fn wait_for_gone(self, path: &Path) -> Self {
        self.flag_value("--wait-for-gone", path)
    }

    /// `--ignore-term`: SIGTERM is caught and ignored (helpers too).
    #[must_use]
    pub fn ignore_term(self) -> Self {
        self.flag("--ignore-term")
    }

    /// `--on-term-exit N`: SIGTERM makes it exit with code N.
    #[must_use]
    pub fn on_term_exit(self, code: i32) -> Self {
        self.flag_value("--on-term-exit", code.to_string())
    }

    /// `--spawn-grandchild`: a sleeping copy in the same process group,
    /// holding stdout open.
    #[must_use]
    pub fn spawn_grandchild(self) -> Self {
        self.flag("--spawn-grandchild")
    }

    /// `--escape`: a sleeping copy that calls `setsid` (leaving the group and
    /// session) but stays this fixture's child, stdio on /dev/null.
    #[must_use]
    pub fn escape(self) -> Self {
        self.flag("--escape")
    }

    /// `--ready-file PATH`: right before waiting (handlers installed, helpers
    /// started, output written), append `ready pid=… pgid=…` to PATH. Read it
    /// with [`ready_lines`].
    #[must_use]
    pub fn ready_file(self, path: &Path) -> Self {
        self.flag_value("--ready-file", path)
    }

    /// `--daemonize`: a double-forked, setsid sleeper (stdio on /dev/null).
    #[must_use]
    pub fn daemonize(self) -> Self {
        self.flag("--daemonize")
    }

    /// `--daemonize --daemon-keeps-stdout`: the escapee holds stdout open.
    #[must_use]
    pub fn daemonize_keeping_stdout(self) -> Self {
        self.flag("--daemonize").flag("--daemon-keeps-stdout")
    }

    /// `--write-bytes N`: N bytes of [`pattern_byte`] on stdout.
    #[must_use]
    pub fn write_bytes(self, n: u64) -> Self {
        self.flag_value("--write-bytes", n.to_string())
    }

    /// `--write-stderr-bytes N`: N bytes of [`pattern_byte`] on stderr.
    #[must_use]
    pub fn write_stderr_bytes(self, n: u64) -> Self {
        self.flag_value("--write-stderr-bytes", n.to_string())
    }

    /// `--close-stdout`.
    #[must_use]
    pub fn close_stdout(self) -> Self {
        self.flag("--close-stdout")
    }

    /// `--signal SIG`: kill itself with a signal (`SEGV`, `TERM`, …).
    #[must_use]
    pub fn signal(self, name: &str) -> Self {
        self.flag_value("--signal", name)
    }

    /// `--marker STR`.
    #[must_use]
    pub fn marker(self, marker: &str) -> Self {
        self.flag_value("--marker", marker)
    }

    /// `--print STR`.
    #[must_use]
    pub fn print(self, line: impl AsRef<OsStr>) -> Self {
        self.flag_value("--print", line)
    }

    /// `--eprint STR`.
    #[must_use]
    pub fn eprint(self, line: impl AsRef<OsStr>) -> Self {
        self.flag_value("--eprint", line)
    }

    /// `--print-env NAME`.
    #[must_use]
    pub fn print_env(self, name: &str) -> Self {
        self.flag_value("--print-env", name)
    }

    /// `--read-stdin`.
    #[must_use]
    pub fn read_stdin(self) -> Self {
        self.flag("--read-stdin")
    }

    /// `--print-args -- ARGS…`: each argument printed as `arg=<arg>`.
    #[must_use]
    pub fn print_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.positional
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self.flag("--print-args")
    }

    /// `--quiet`: no `ready` line.
    #[must_use]
    pub fn quiet(self) -> Self {
        self.flag("--quiet")
    }

    /// The complete argv, program first.
    #[must_use]
    pub fn argv(&self) -> Vec<OsString> {
        let mut argv = self.argv.clone();
        if !self.positional.is_empty() {
            argv.push("--".into());
            argv.extend(self.positional.iter().cloned());
        }
        argv
    }

    /// A `std::process::Command` running this argv.
    #[must_use]
    pub fn command(&self) -> std::process::Command {
        let argv = self.argv();
        let mut cmd = std::process::Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        cmd
    }
}

/// The byte at offset `i` of the fixture's `--write-bytes` output: letters
/// `a..z` cycling, with a newline every 64 bytes.
#[must_use]
pub fn pattern_byte(i: u64) -> u8 {
    if i % 64 == 63 {
        b'\n'
    } else {
        b'a' + (i % 26) as u8
    }
}

/// Whether `bytes` is exactly the first `bytes.len()` pattern bytes.
#[must_use]
pub fn is_pattern(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .all(|(i, &b)| b == pattern_byte(i as u64))
}

/// A marker no other test (or run) uses: `agent33-marker-<label>-<pid>-<n>-<nanos>`.
#[must_use]
pub fn unique_marker(label: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("agent33-marker-{label}-{}-{n}-{nanos}", std::process::id())
}

fn numeric_dirs() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
}

/// Pids of live processes whose command line has `marker` as one of its
/// arguments. Zombies have an empty command line, so they do not count.
///
/// A process that is in the middle of `exec` has its new name but not yet
/// its new command line (the kernel sets that up last, after the parent's
/// `spawn` may already have returned). A fixture seen in that state could be
/// one carrying the marker, so the scan is repeated until none is (for at
/// most a second); otherwise a test could miss a live process.
#[must_use]
pub fn pids_with_marker(marker: &str) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let (found, unsettled) = scan_marker(marker.as_bytes());
        if !unsettled || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One scan: the live pids carrying the marker, and whether some fixture
/// had no command line yet.
fn scan_marker(needle: &[u8]) -> (Vec<u32>, bool) {
    // The kernel keeps 15 bytes of a program's name.
    let comm = &FIXTURE_NAME.as_bytes()[..15];
    let mut found = Vec::new();
    let mut unsettled = false;
    for pid in numeric_dirs() {
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if cmd.split(|&b| b == 0).any(|arg| arg == needle) {
            if is_alive(pid) {
                found.push(pid);
            }
        } else if cmd.is_empty()
            && is_alive(pid)
            && std::fs::read(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.strip_suffix(b"\n").unwrap_or(&c) == comm)
        {
            unsettled = true;
        }
    }
    (found, unsettled)
}

/// The state letter from `/proc/PID/stat` (`R`, `S`, `Z`, …), if the pid exists.
#[must_use]
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().next()?.chars().next()
}

/// The parent pid from `/proc/PID/stat`.
#[must_use]
pub fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether a process with this pid exists and is not a zombie.
#[must_use]
pub fn is_alive(pid: u32) -> bool {
    matches!(proc_state(pid), Some(s) if s != 'Z' && s != 'X')
}

/// Sends SIGKILL to every live process carrying `marker`, until none is
/// left (or a budget of 10 s passes). Returns how many were signalled.
pub fn kill_by_marker(marker: &str) -> usize {
    let mut killed = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = pids_with_marker(marker);
        if pids.is_empty() || Instant::now() > deadline {
            return killed.len();
        }
        for pid in pids {
            if let Some(p) = Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(p, Signal::KILL);
                killed.insert(pid);
            }
        }
        std::thread::sleep(POLL);
    }
}

/// Kills every process carrying its marker when dropped, so a failing test
/// does not leak its fixtures.
#[derive(Debug)]
pub struct MarkerGuard {
    marker: String,
}

impl MarkerGuard {
    /// A guard with a fresh [`unique_marker`].
    #[must_use]
    pub fn new(label: &str) -> Self {
        Self {
            marker: unique_marker(label),
        }
    }

    /// The marker to pass to [`Fixture::marker`].
    #[must_use]
    pub fn marker(&self) -> &str {
        &self.marker
    }

    /// Live processes carrying the marker.
    #[must_use]
    pub fn pids(&self) -> Vec<u32> {
        pids_with_marker(&self.marker)
    }
}

impl Drop for MarkerGuard {
    fn drop(&mut self) {
        kill_by_marker(&self.marker);
    }
}

/// Polls `condition` until it holds or `budget` passes; returns whether it
/// held. Blocks the thread: call it from a test thread or `spawn_blocking`.
pub fn wait_until(budget: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + budget;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Like [`wait_until`], for async tests: polls with `tokio::time::sleep`.
pub async fn wait_until_async(budget: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + budget;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Parses the fixture's `ready pid=<pid> pgid=<pgid>` line.
#[must_use]
pub fn parse_ready(line: &str) -> Option<(u32, u32)> {
    let rest = line.trim().strip_prefix("ready pid=")?;
    let (pid, pgid) = rest.split_once(" pgid=")?;
    Some((pid.parse().ok()?, pgid.parse().ok()?))
}

/// The `(pid, pgid)` of every complete `ready` line in a `--ready-file`
/// (none while the file does not exist).
#[must_use]
pub fn ready_lines(path: &Path) -> Vec<(u32, u32)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    // A line still being written has no newline yet.
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete.lines().filter_map(parse_ready).collect()
}

/// Sends `sig` to one process; errors (it is gone) are ignored.
pub fn send_signal(pid: u32, sig: Signal) {
    if let Some(pid) = Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Every `key=<number>` value in `text` (for `ready pid=…`, `grandchild pid=…`).
#[must_use]
pub fn numbers_after(text: &str, key: &str) -> Vec<u32> {
    text.match_indices(key)
        .filter_map(|(at, _)| {
            let digits: String = text[at + key.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect()
}

/// A file whose existence holds a `--wait-for-gone` fixture open; removing
/// it (or dropping the gate) lets the fixture exit.
#[derive(Debug)]
pub struct GateFile {
    path: PathBuf,
}

impl GateFile {
    /// Creates a fresh gate file in the temp folder.
    ///
    /// # Panics
    ///
    /// When the file cannot be created.
    #[must_use]
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("{}.gate", unique_marker("gate")));
        std::fs::write(&path, b"").expect("the temp folder is writable");
        Self { path }
    }

    /// Where the gate is.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file: the waiting fixture exits.
    pub fn release(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Default for GateFile {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for GateFile {
    fn drop(&mut self) {
        self.release();
    }
}

/// A field of `/proc/self/status` in KiB (`VmHWM`, `VmRSS`, …).
#[must_use]
pub fn self_status_kib(field: &str) -> Option<u64> {
    status_kib_of("self", field)
}

/// A field of `/proc/PID/status` in KiB (`VmHWM`, `VmRSS`, …); `None` once
/// the process is gone or a zombie (which has no memory fields).
#[must_use]
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    status_kib_of(&pid.to_string(), field)
}

fn status_kib_of(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// Resets this process's peak RSS (`VmHWM`) to its current RSS, so a later
/// reading measures only what happened in between. Returns whether the
/// kernel allowed it.
#[must_use]
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", b"5").is_ok()
}

/// Whether `bytes` contains `needle`.
#[must_use]
pub fn contains_bytes(bytes: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || bytes.windows(needle.len()).any(|w| w == needle)
}

/// The bytes of an `OsStr`, for assertions on raw output.
#[must_use]
pub fn os_bytes(s: &OsStr) -> &[u8] {
    s.as_bytes()
}

/// Makes a FIFO at `path`, as `mkfifo` does.
///
/// # Panics
///
/// When it cannot be made.
pub fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
}

/// The read end of a FIFO, there before any writer, as `>(jq .)` is.
#[derive(Debug)]
pub struct FifoReader(std::os::fd::OwnedFd);

impl FifoReader {
    /// Opens the FIFO for reading without waiting for a writer.
    ///
    /// # Panics
    ///
    /// When it cannot be opened.
    #[must_use]
    pub fn open(path: &Path) -> Self {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty())
            .expect("open the FIFO for reading");
        Self(fd)
    }

    /// Reads everything in a thread. Call it once a writer holds the FIFO
    /// open: the read then waits for data and sees the end only when every
    /// writer is done.
    ///
    /// # Panics
    ///
    /// When the reading end cannot be made blocking; the thread panics on a
    /// read error or on text that is not UTF-8.
    #[must_use]
    pub fn read_all(self) -> std::thread::JoinHandle<String> {
        use std::io::Read as _;
        let flags = rustix::fs::fcntl_getfl(&self.0).expect("F_GETFL");
        rustix::fs::fcntl_setfl(&self.0, flags - rustix::fs::OFlags::NONBLOCK).expect("F_SETFL");
        std::thread::spawn(move || {
            let mut text = String::new();
            std::fs::File::from(self.0)
                .read_to_string(&mut text)
                .expect("read the FIFO");
            text
        })
    }
}
