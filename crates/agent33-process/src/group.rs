//! One task's process: its leader, spawned in a process group of its own,
//! and the guard that kills the group when the attempt is abandoned.
//!
//! The group id is the leader's pid, and a pid is only reserved while the
//! process (or a zombie of it) exists. So the group is signalled only while
//! the leader is unreaped: a pidfd of the leader (or, without pidfds,
//! `waitid(WNOWAIT)` on each SIGCHLD) tells us the leader exited without
//! reaping it, and we kill the rest of the group before we reap it.
//!
//! The leader is reaped by us, by pid, once the watch says it exited:
//! tokio's `Child` would open a second pidfd and subscribe to SIGCHLD for
//! every task, waking a thread per exit for nothing.
//!
//! This module does not read pipes or decide outcomes; see [`crate::agent`].

use std::io;
#[cfg(any(target_os = "linux", target_os = "android"))]
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use agent33_parallel::{Reason, TaskId};
use rustix::process::{Pid, Signal, WaitOptions};
use tokio::net::unix::pipe::Receiver;

use crate::guard::{self, GuardSlot};
use crate::reaper::{self, Registration};
use crate::spawn::{Launch, Launcher};

/// Watches a leader's exit without reaping it.
///
/// On Linux 5.3 and later, a pidfd: it becomes readable when the process
/// exits (a zombie still counts), so each task wakes once, for its own
/// leader. Elsewhere, or when `pidfd_open` fails, every SIGCHLD asks the
/// kernel with `waitid(WNOWAIT)` whether this child has exited (every
/// running task wakes on each SIGCHLD).
enum ExitWatch {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    Pidfd(tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>),
    Sigchld(tokio::signal::unix::Signal),
}

impl ExitWatch {
    /// A watch for `pid`; `None` when neither kind can be had (no reactor,
    /// no signal driver).
    fn open(pid: Pid) -> Option<Self> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use rustix::process::PidfdFlags;
            let pidfd = rustix::process::pidfd_open(pid, PidfdFlags::NONBLOCK).ok();
            #[expect(
                deprecated,
                reason = "`with_interest` is deprecated because an arbitrary `AsRawFd` \
                          may change or close its fd; an `OwnedFd` that is never \
                          replaced keeps it open and the same, which is what the \
                          unsafe `register_with_interest` asks of its caller, and \
                          the workspace denies unsafe code"
            )]
            let registered = pidfd.map(|fd| {
                tokio::io::unix::AsyncFd::with_interest(fd, tokio::io::Interest::READABLE)
            });
            if let Some(Ok(fd)) = registered {
                return Some(Self::Pidfd(fd));
            }
        }
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())
            .ok()
            .map(Self::Sigchld)
    }

    /// Resolves once `pid` has exited; it stays an unreaped zombie.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: readiness (or a SIGCHLD) that arrives while nobody
    /// waits is remembered, and the state is checked before each wait.
    async fn exited(&mut self, pid: Pid) -> io::Result<()> {
        use rustix::process::{WaitId, WaitIdOptions};
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG;
        match self {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Self::Pidfd(fd) => loop {
                let mut ready = fd.readable().await?;
                if rustix::process::waitid(WaitId::PidFd(ready.get_inner().as_fd()), options)?
                    .is_some()
                {
                    return Ok(());
                }
                ready.clear_ready();
            },
            Self::Sigchld(sigchld) => loop {
                if rustix::process::waitid(WaitId::Pid(pid), options)?.is_some() {
                    return Ok(());
                }
                if sigchld.recv().await.is_none() {
                    return Err(io::Error::other("the SIGCHLD subscription ended"));
                }
            },
        }
    }
}

/// How long the background clean-up of an abandoned task looks for its
/// escaped processes.
const ABANDONED_SWEEP: Duration = Duration::from_secs(5);

/// A running task leader and its process group.
///
/// Dropping it before the leader was reaped (the engine dropped the
/// attempt after the grace period) sends SIGKILL to the whole group and
/// hands the leader to a background task that reaps it and, for a
/// subreaper, sweeps the task's escaped processes.
pub(crate) struct TaskProcess {
    pid: Pid,
    task: TaskId,
    registration: Option<Leader>,
    watch: Option<ExitWatch>,
    status: Option<ExitStatus>,
    sweep_budget: Duration,
    /// Whether the task's escaped processes were swept (or need not be).
    settled: bool,
}

/// A leader's entry in the register and its group's slot in the guard's
/// table. The fields drop in order: the group stays guarded until the
/// leader has left the register, for as long as it is ours to kill.
struct Leader {
    _registration: Registration,
    _guarded: Option<GuardSlot>,
}

impl TaskProcess {
    /// Starts the leader in a process group of its own and takes its pipes.
    ///
    /// # Errors
    ///
    /// The spawn error: missing program, no permission, bad working folder.
    pub(crate) fn spawn(
        launcher: &Launcher,
        launch: &Launch<'_>,
        task: &TaskId,
        sweep_budget: Duration,
    ) -> io::Result<(Self, Receiver, Receiver)> {
        let (started, registration) = reaper::spawn_registered(task, || launcher.start(launch))?;
        let leader = Leader {
            _registration: registration,
            _guarded: guard::guard_group(started.pid),
        };
        let pid = Pid::from_raw(started.pid).expect("pids are positive");
        let process = Self {
            pid,
            task: task.clone(),
            registration: Some(leader),
            watch: ExitWatch::open(pid),
            status: None,
            sweep_budget,
            settled: false,
        };
        // Dropping `process` on an error below kills and reaps the leader.
        let stdout = receiver(started.stdout)?;
        let stderr = receiver(started.stderr)?;
        Ok((process, stdout, stderr))
    }

    /// The leader's pid, which is also the group's id.
    pub(crate) fn pgid(&self) -> i32 {
        self.pid.as_raw_nonzero().get()
    }

    /// Resolves when the leader has exited. It normally stays a zombie (so
    /// its group id stays reserved); if the exit watch failed, it is reaped.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub(crate) async fn exited(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        if let Some(watch) = &mut self.watch {
            if watch.exited(self.pid).await.is_ok() {
                return Ok(());
            }
            // The watch failed; reaping is all that is left.
            self.watch = None;
        }
        self.reap().await.map(drop)
    }

    /// Reaps the leader (waiting for it to exit if needed).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is reaped until the wait is over.
    pub(crate) async fn reap(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let status = wait(self.pid, &mut self.watch).await?;
        self.status = Some(status);
        // Reaped: no longer a leader a sweep must spare.
        self.registration = None;
        self.watch = None;
        Ok(status)
    }

    /// Sends `sig` to the whole process group. Errors mean the group is
    /// already gone, which is fine.
    pub(crate) fn signal_group(&self, sig: Signal) {
        let _ = rustix::process::kill_process_group(self.pid, sig);
    }

    /// Records that nothing of the task is left to sweep.
    pub(crate) fn mark_settled(&mut self) {
        self.settled = true;
    }

    /// Asks the group to stop: SIGTERM, and SIGCONT so that stopped members
    /// get to handle it.
    pub(crate) fn terminate(&self) -> Terminated {
        // A leader that already exited on its own was not stopped: its exit
        // may simply not have reached the watch yet. Asked of the kernel
        // directly, as the watch's readiness can lag behind.
        if self.has_exited(false) {
            return Terminated::AlreadyExited;
        }
        // Read before the signal: whether SIGTERM can end the leader only
        // by killing it, so that an exit with a code was its own.
        let fatal = term_is_fatal(self.pid);
        self.signal_group(Signal::TERM);
        self.signal_group(Signal::CONT);
        Terminated::Sent { fatal }
    }

    /// Whether the leader has exited (a zombie counts), asked now; with
    /// `normally`, whether it exited with a code rather than by a signal.
    pub(crate) fn has_exited(&self, normally: bool) -> bool {
        use rustix::process::{WaitId, WaitIdOptions};
        if let Some(status) = self.status {
            return !normally || status.code().is_some();
        }
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG;
        match rustix::process::waitid(WaitId::Pid(self.pid), options) {
            Ok(Some(status)) => !normally || status.exited(),
            _ => false,
        }
    }
}

/// What [`TaskProcess::terminate`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Terminated {
    /// Nothing: the leader had already exited.
    AlreadyExited,
    /// SIGTERM went to the group. `fatal`: the leader neither caught,
    /// ignored nor blocked it, so had the signal reached it, it would have
    /// been killed by it.
    Sent { fatal: bool },
}

/// Whether SIGTERM would kill `pid` (its default action, neither caught,
/// ignored nor blocked), as `/proc` tells; false when it cannot tell.
fn term_is_fatal(pid: Pid) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", pid.as_raw_nonzero()))
        else {
            return false;
        };
        let term = 1u64 << (Signal::TERM.as_raw() - 1);
        let mut seen = 0;
        for line in status.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            if matches!(key, "SigBlk" | "SigIgn" | "SigCgt") {
                match u64::from_str_radix(value.trim(), 16) {
                    Ok(mask) if mask & term == 0 => seen += 1,
                    _ => return false,
                }
            }
        }
        seen == 3
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = pid;
        false
    }
}

impl Drop for TaskProcess {
    fn drop(&mut self) {
        if self.status.is_some() {
            // Reaped, but dropped before its sweep finished: finish it.
            if !self.settled && reaper::subreaper() {
                let (task, pgid, budget) = (self.task.clone(), self.pgid(), self.sweep_budget);
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    handle.spawn(async move {
                        reaper::sweep_task(&task, pgid, budget.max(ABANDONED_SWEEP)).await;
                    });
                }
            }
            return;
        }
        // Abandoned before the leader was reaped: its pid still names the
        // group, so this reaches everything left in it.
        self.signal_group(Signal::KILL);
        let registration = self.registration.take();
        let mut watch = self.watch.take();
        let task = self.task.clone();
        let (pid, pgid) = (self.pid, self.pgid());
        let budget = self.sweep_budget;
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    // SIGKILL was sent: this wait is short.
                    let _ = wait(pid, &mut watch).await;
                    drop(registration);
                    if reaper::subreaper() {
                        reaper::sweep_task(&task, pgid, budget.max(ABANDONED_SWEEP)).await;
                    }
                });
            }
            // No runtime to wait on: a thread reaps the killed leader.
            Err(_) => {
                std::thread::spawn(move || {
                    let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
                    drop(registration);
                });
            }
        }
    }
}

/// The read end of a leader's pipe, registered with the reactor.
///
/// `from_owned_fd` would first ask the kernel what the fd is and how it was
/// opened (an `fstat` and two `fcntl`s per pipe); the read end of a pipe
/// we just made needs only `O_NONBLOCK` (the access mode it was opened with
/// is not a flag `F_SETFL` changes).
fn receiver(fd: std::os::fd::OwnedFd) -> io::Result<Receiver> {
    rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::NONBLOCK)?;
    Receiver::from_owned_fd_unchecked(fd)
}

/// Waits for the leader `pid` to exit and reaps it.
///
/// # Cancel safety
///
/// Cancel safe: the leader is reaped only by the `waitpid` that returns its
/// status.
async fn wait(pid: Pid, watch: &mut Option<ExitWatch>) -> io::Result<ExitStatus> {
    loop {
        if let Some((_, status)) = rustix::process::waitpid(Some(pid), WaitOptions::NOHANG)? {
            return Ok(ExitStatus::from_raw(status.as_raw()));
        }
        match watch {
            Some(w) => {
                if w.exited(pid).await.is_err() {
                    *watch = None;
                }
            }
            // Neither a pidfd nor SIGCHLD can be had (no reactor, no signal
            // driver): all that is left is to ask now and then.
            None => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Describes how a process ended: its exit code if it exited, and the
/// failure message unless it exited 0.
pub(crate) fn describe(status: ExitStatus) -> (Option<i32>, Option<String>) {
    match (status.code(), status.signal()) {
        (Some(0), _) => (Some(0), None),
        (Some(code), _) => (Some(code), Some(format!("exit code {code}"))),
        (None, Some(sig)) => (None, Some(format!("killed by {}", signal_name(sig)))),
        (None, None) => (None, Some(format!("ended abnormally ({status})"))),
    }
}

/// Why a process that did not exit 0 failed, as a fact beside
/// [`describe`]'s message.
pub(crate) fn failure_reason(status: ExitStatus) -> Reason {
    match (status.code(), status.signal()) {
        (Some(code), _) => Reason::ExitCode { code },
        (None, Some(sig)) => Reason::Signal {
            signal: signal_name(sig),
        },
        (None, None) => Reason::AgentError,
    }
}

/// The conventional name of a signal (`SIGSEGV`), or `signal N`.
pub(crate) fn signal_name(raw: i32) -> String {
    let named: &[(Signal, &str)] = &[
        (Signal::HUP, "SIGHUP"),
        (Signal::INT, "SIGINT"),
        (Signal::QUIT, "SIGQUIT"),
        (Signal::ILL, "SIGILL"),
        (Signal::TRAP, "SIGTRAP"),
        (Signal::ABORT, "SIGABRT"),
        (Signal::BUS, "SIGBUS"),
        (Signal::FPE, "SIGFPE"),
        (Signal::KILL, "SIGKILL"),
        (Signal::USR1, "SIGUSR1"),
        (Signal::SEGV, "SIGSEGV"),
        (Signal::USR2, "SIGUSR2"),
        (Signal::PIPE, "SIGPIPE"),
        (Signal::ALARM, "SIGALRM"),
        (Signal::TERM, "SIGTERM"),
        (Signal::CHILD, "SIGCHLD"),
        (Signal::CONT, "SIGCONT"),
        (Signal::STOP, "SIGSTOP"),
        (Signal::TSTP, "SIGTSTP"),
        (Signal::TTIN, "SIGTTIN"),
        (Signal::TTOU, "SIGTTOU"),
        (Signal::URG, "SIGURG"),
        (Signal::XCPU, "SIGXCPU"),
        (Signal::XFSZ, "SIGXFSZ"),
        (Signal::VTALARM, "SIGVTALRM"),
        (Signal::PROF, "SIGPROF"),
        (Signal::WINCH, "SIGWINCH"),
        (Signal::IO, "SIGIO"),
        (Signal::SYS, "SIGSYS"),
        #[cfg(any(target_os = "linux", target_os = "android"))]
        (Signal::STKFLT, "SIGSTKFLT"),
        #[cfg(any(target_os = "linux", target_os = "android"))]
        (Signal::POWER, "SIGPWR"),
    ];
    named
        .iter()
        .find(|(sig, _)| sig.as_raw() == raw)
        .map_or_else(|| format!("signal {raw}"), |(_, name)| (*name).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_common_signals() {
        assert_eq!(signal_name(Signal::SEGV.as_raw()), "SIGSEGV");
        assert_eq!(signal_name(Signal::TERM.as_raw()), "SIGTERM");
        assert_eq!(signal_name(Signal::KILL.as_raw()), "SIGKILL");
        assert_eq!(signal_name(40), "signal 40");
    }

    #[test]
    fn describes_exits_and_signals() {
        assert_eq!(describe(ExitStatus::from_raw(0)), (Some(0), None));
        assert_eq!(
            describe(ExitStatus::from_raw(3 << 8)),
            (Some(3), Some("exit code 3".to_owned()))
        );
        assert_eq!(
            describe(ExitStatus::from_raw(Signal::SEGV.as_raw())),
            (None, Some("killed by SIGSEGV".to_owned()))
        );
        assert_eq!(
            failure_reason(ExitStatus::from_raw(3 << 8)),
            Reason::ExitCode { code: 3 }
        );
        assert_eq!(
            failure_reason(ExitStatus::from_raw(Signal::SEGV.as_raw())),
            Reason::Signal {
                signal: "SIGSEGV".to_owned()
            }
        );
        // A core dump flag does not change the name.
        assert_eq!(
            describe(ExitStatus::from_raw(Signal::ABORT.as_raw() | 0x80)),
            (None, Some("killed by SIGABRT".to_owned()))
        );
    }
}
