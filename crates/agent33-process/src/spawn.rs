//! Starts a task's leader with an environment prepared once per agent (on
//! Linux through [`crate::vfork`], elsewhere `posix_spawn`), or std's
//! `Command` when that cannot be used.
//!
//! Each task adds five `AGENT33_*` variables to the environment. Given any
//! change to the environment, std's `Command` copies the whole environment
//! into a map and builds every `KEY=VALUE` string again, on every spawn:
//! more than half of what agent-33 itself spent per short task. Here the
//! inherited variables are encoded once, when the agent is made, and a
//! spawn only encodes the argv and its own variables.
//!
//! The direct path needs what `posix_spawn` can do without extensions: the
//! program is a path (see [`crate::program`]) and the task runs in our own
//! folder (no `cwd`, or `.`). Anything else (a working folder, a program left to the C
//! library's search, a NUL byte that std reports as an error, stdio fds
//! that are closed in this process) goes through std's `Command`, which
//! sets up the same process: own process group, stdin on `/dev/null`, both
//! pipes, SIGPIPE back to its default, an empty signal mask.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::sys::signal::{SigSet, Signal};

/// The variable holding the task's id.
pub const TASK_ID_VAR: &str = "AGENT33_TASK_ID";
/// The variable holding the task's agent name.
pub const AGENT_VAR: &str = "AGENT33_AGENT";
/// The variable holding the task's artifact.
pub const ARTIFACT_VAR: &str = "AGENT33_ARTIFACT";
/// The variable holding the attempt's number, from 1.
pub const ATTEMPT_VAR: &str = "AGENT33_ATTEMPT";
/// The variable that marks every task of this process, and what they start,
/// as this run's: its value is [`crate::run_id`].
pub const RUN_VAR: &str = "AGENT33_RUN_ID";

/// The `AGENT33_*` variables of one attempt, set last so they win.
pub(crate) const TASK_VARS: [&str; 5] =
    [TASK_ID_VAR, AGENT_VAR, ARTIFACT_VAR, ATTEMPT_VAR, RUN_VAR];

/// One process to start.
pub(crate) struct Launch<'a> {
    /// The file to run; a bare name is left to the C library's search.
    pub program: &'a OsStr,
    /// argv, `argv[0]` included.
    pub argv: &'a [OsString],
    pub cwd: Option<&'a Path>,
    /// The agent's variables, then the attempt's `AGENT33_*` ones.
    pub env: &'a [(OsString, OsString)],
    pub task_vars: [&'a OsStr; 5],
}

/// A started leader: its pid and the read ends of its stdout and stderr.
pub(crate) struct Started {
    pub pid: i32,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// The environment this process had when the agent was made, encoded, and
/// what every task's stdin reads.
#[derive(Debug)]
pub(crate) struct Launcher {
    /// `KEY=VALUE` of each inherited variable, without `AGENT33_*` ones
    /// (an agent-33 running inside a task must not pass its task's on),
    /// with the length of its `KEY`.
    inherited: Vec<(CString, usize)>,
    /// `/dev/null`, opened once: an `open` and a `close` per task were a
    /// tenth of the system calls agent-33 made for a short one.
    null: Option<OwnedFd>,
    /// The signals a task starts with at their default (see
    /// [`default_signals`]), in the form the spawn takes them.
    #[cfg(own_clone)]
    sigdefault: crate::vfork::Resets,
    #[cfg(not(own_clone))]
    sigdefault: SigSet,
}

impl Launcher {
    pub(crate) fn new() -> Self {
        let inherited = std::env::vars_os()
            .filter(|(k, _)| !TASK_VARS.iter().any(|t| k == t))
            .filter_map(|(k, v)| Some((pair(&k, &v)?, k.len())))
            .collect();
        Self {
            inherited,
            null: open_null().ok(),
            #[cfg(own_clone)]
            sigdefault: default_signals().into(),
            #[cfg(not(own_clone))]
            sigdefault: default_signals(),
        }
    }

    /// Starts `launch` in a process group of its own.
    ///
    /// # Errors
    ///
    /// The spawn error: missing program, no permission, bad folder.
    pub(crate) fn start(&self, launch: &Launch<'_>) -> io::Result<Started> {
        // `.` is where we are, the usual folder of a manifest's agents.
        let here = launch.cwd.is_none_or(|c| c.as_os_str() == ".");
        if here && launch.program.as_bytes().contains(&b'/') {
            if let Some(started) = self.spawn_direct(launch)? {
                return Ok(started);
            }
        }
        spawn_std(launch)
    }

    /// A spawn with the prepared environment; `None` when this launch
    /// needs std's `Command` after all.
    fn spawn_direct(&self, launch: &Launch<'_>) -> io::Result<Option<Started>> {
        let Ok(program) = CString::new(launch.program.as_bytes()) else {
            return Ok(None);
        };
        let Some(argv) = launch
            .argv
            .iter()
            .map(|a| CString::new(a.as_bytes()).ok())
            .collect::<Option<Vec<CString>>>()
        else {
            return Ok(None);
        };
        // Later entries win, as with std: the spec's last setting of a
        // name, and the attempt's own variables over the spec's.
        let env = launch.env;
        let set: Vec<&(OsString, OsString)> = env
            .iter()
            .enumerate()
            .filter(|&(i, (k, _))| {
                !TASK_VARS.iter().any(|t| k == t)
                    && !env[i + 1..].iter().any(|(later, _)| later == k)
            })
            .map(|(_, kv)| kv)
            .collect();
        let own: Option<Vec<CString>> = set
            .iter()
            .map(|(k, v)| (k.as_os_str(), v.as_os_str()))
            .chain(TASK_VARS.iter().map(OsStr::new).zip(launch.task_vars))
            .map(|(k, v)| pair(k, v))
            .collect();
        // A NUL byte or an `=` in a name: std has the error message.
        let Some(own) = own else {
            return Ok(None);
        };
        // The inherited list has no `AGENT33_*` entries: only the spec's
        // names can replace one (usually there are none to look for).
        let envp: Vec<&CStr> = self
            .inherited
            .iter()
            .filter(|(entry, key_len)| {
                set.is_empty() || {
                    let key = &entry.to_bytes()[..*key_len];
                    !set.iter().any(|(k, _)| k.as_bytes() == key)
                }
            })
            .map(|(entry, _)| entry.as_c_str())
            .chain(own.iter().map(CString::as_c_str))
            .collect();

        let (out_read, out_write) = pipe()?;
        let (err_read, err_write) = pipe()?;
        let opened;
        let null = match &self.null {
            Some(null) => null,
            None => {
                opened = open_null()?;
                &opened
            }
        };
        let fds = [&out_read, &out_write, &err_read, &err_write, null];
        if fds.iter().any(|fd| fd.as_raw_fd() <= 2) {
            // One of our own stdio fds is closed, so a new fd took its
            // number: the dup2 order below would clobber it.
            return Ok(None);
        }
        let stdio = [
            null.as_raw_fd(),
            out_write.as_raw_fd(),
            err_write.as_raw_fd(),
        ];
        let pid = self.spawn_raw(&program, &argv, &envp, stdio)?;
        Ok(Some(Started {
            pid,
            stdout: out_read,
            stderr: err_read,
        }))
    }

    /// Starts `program` in a process group of its own with `stdio` as its
    /// fds 0 to 2: on Linux by cloning straight into `execve` (see
    /// [`crate::vfork`]; glibc's `posix_spawn` does more around the same
    /// steps), elsewhere by `posix_spawn`.
    fn spawn_raw(
        &self,
        program: &CStr,
        argv: &[CString],
        envp: &[&CStr],
        stdio: [std::os::fd::RawFd; 3],
    ) -> io::Result<i32> {
        #[cfg(own_clone)]
        {
            let null = std::ptr::null();
            let argv: Vec<_> = argv.iter().map(|a| a.as_ptr()).chain([null]).collect();
            let envp: Vec<_> = envp.iter().map(|e| e.as_ptr()).chain([null]).collect();
            crate::vfork::spawn(program, &argv, &envp, stdio, &self.sigdefault)
        }
        #[cfg(not(own_clone))]
        {
            use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags, posix_spawn};
            let mut actions = PosixSpawnFileActions::init().map_err(io::Error::from)?;
            actions
                .add_dup2(stdio[0], 0)
                .and_then(|()| actions.add_dup2(stdio[1], 1))
                .and_then(|()| actions.add_dup2(stdio[2], 2))
                .map_err(io::Error::from)?;
            let mut attr = PosixSpawnAttr::init().map_err(io::Error::from)?;
            // Nothing of our signal mask is inherited.
            attr.set_flags(
                PosixSpawnFlags::POSIX_SPAWN_SETPGROUP
                    | PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK
                    | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF,
            )
            .and_then(|()| attr.set_pgroup(nix::unistd::Pid::from_raw(0)))
            .and_then(|()| attr.set_sigmask(&SigSet::empty()))
            .and_then(|()| attr.set_sigdefault(&self.sigdefault))
            .map_err(io::Error::from)?;
            let pid = posix_spawn(program, &actions, &attr, argv, envp).map_err(io::Error::from)?;
            Ok(pid.as_raw())
        }
    }
}

/// The signals a task starts with at their default: SIGPIPE, which Rust
/// ignores in this process (as std does it), and every signal not ignored
/// here, whose handlers exec would reset anyway. Naming them all lets the
/// child set each once instead of asking about it first
/// (121 `sigaction` calls per spawn become 64). A signal ignored when the
/// agent is made stays ignored in its tasks, as across any exec; where
/// real-time signals are ignored (which `Signal` cannot name), only SIGPIPE
/// is reset and the child asks about the rest.
fn default_signals() -> SigSet {
    let ignored = ignored_signals();
    let mut only_sigpipe = SigSet::empty();
    only_sigpipe.add(Signal::SIGPIPE);
    let Some(ignored) = ignored else {
        return only_sigpipe;
    };
    let bit = |sig: Signal| 1u64 << (sig as i32 - 1);
    let named = Signal::iterator().fold(0, |mask, sig| mask | bit(sig));
    if ignored & !named != 0 {
        return only_sigpipe;
    }
    let mut set = SigSet::all();
    for sig in Signal::iterator() {
        let keep = ignored & bit(sig) != 0 && sig != Signal::SIGPIPE;
        if keep || matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            set.remove(sig);
        }
    }
    set
}

/// The signals this process ignores, as a mask (bit `n - 1` for signal
/// `n`), from `/proc/self/status`; `None` where that cannot be read.
#[must_use]
pub fn ignored_signals() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let mask = status.lines().find_map(|l| l.strip_prefix("SigIgn:"))?;
    u64::from_str_radix(mask.trim(), 16).ok()
}

/// `KEY=VALUE`, or `None` when that cannot be an environment entry.
fn pair(key: &OsStr, value: &OsStr) -> Option<CString> {
    let (k, v) = (key.as_bytes(), value.as_bytes());
    if k.is_empty() || k.contains(&b'=') {
        return None;
    }
    let mut bytes = Vec::with_capacity(k.len() + v.len() + 2);
    bytes.extend_from_slice(k);
    bytes.push(b'=');
    bytes.extend_from_slice(v);
    CString::new(bytes).ok()
}

fn open_null() -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?)
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// The same process through std's `Command`.
fn spawn_std(launch: &Launch<'_>) -> io::Result<Started> {
    let mut cmd = Command::new(launch.program);
    if let Some((first, rest)) = launch.argv.split_first() {
        cmd.arg0(first).args(rest);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own, set by posix_spawn itself (no pre_exec hook,
        // so std keeps its fast spawn path).
        .process_group(0);
    if let Some(cwd) = launch.cwd {
        cmd.current_dir(cwd);
    }
    cmd.envs(launch.env.iter().map(|(k, v)| (k, v)));
    cmd.envs(TASK_VARS.iter().zip(launch.task_vars));
    let mut child = cmd.spawn()?;
    let pid = child.id() as i32;
    // std never reaps on its own: dropping the Child leaves the leader to us.
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(io::Error::other("stdout and stderr were not piped"));
    };
    Ok(Started {
        pid,
        stdout: stdout.into(),
        stderr: stderr.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_key_equals_value_and_refuse_what_cannot_be_one() {
        assert_eq!(
            pair(OsStr::new("A"), OsStr::new("b=c")).as_deref(),
            Some(c"A=b=c")
        );
        assert_eq!(pair(OsStr::new("A=B"), OsStr::new("c")), None);
        assert_eq!(pair(OsStr::new(""), OsStr::new("c")), None);
        assert_eq!(pair(OsStr::new("A"), OsStr::new("b\0c")), None);
    }

    #[test]
    fn inherited_variables_leave_out_the_task_ones() {
        let launcher = Launcher::new();
        assert!(launcher.inherited.iter().all(|(e, key_len)| {
            let (key, rest) = e.to_bytes().split_at(*key_len);
            rest.starts_with(b"=") && !TASK_VARS.iter().any(|t| t.as_bytes() == key)
        }));
    }
}
