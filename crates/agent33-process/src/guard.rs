//! A guard process that kills the tasks' process groups when this process
//! dies without cleaning up: SIGKILL, the OOM killer, an abort. Nothing in
//! a process can react to its own SIGKILL, and a task's leader could only
//! ask for a parent-death signal from code run between fork and exec.
//!
//! [`start_guard`] starts a program (the CLI starts itself, `agent-33
//! __guard`) in a process group of its own, its stdin a pipe whose write
//! end only this process holds and its stdout a memory file with one slot
//! per task leader: the group id while the leader is registered, 0 after.
//! The guard blocks on the pipe and never wakes while we live; registering
//! a group costs one `pwrite`. When the pipe ends, [`guard_main`] kills every
//! group still in the table, unless [`disarm_guard`] said all was clear;
//! then it exits, and [`disarm_guard`] reaps it, so that a normal exit of
//! ours leaves no zombie guard to whoever adopts our children.
//!
//! A process that left its task's group and whose parents have exited
//! (a daemon's double fork) links to nothing the table names; it still
//! carries the run's [`RUN_VAR`], which every task gets, and the guard kills
//! whatever does.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::reaper;
use crate::spawn::RUN_VAR;

/// This process's run id, the same for every task it starts: its pid and
/// the wall-clock nanoseconds when it was first asked for, which no other
/// process on the machine shares.
pub fn run_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        format!("{}-{}", std::process::id(), since_epoch.as_nanos())
    })
}

/// The byte that tells the guard all is clear.
const ALL_CLEAR: u8 = b'x';

/// How many times at most the guard looks for what is left (see
/// [`guard_main`]).
const KILL_ROUNDS: usize = 20;
/// How long the guard waits before looking again at a process it caught
/// mid-`exec`; with [`KILL_ROUNDS`], at most 200 ms in all.
const UNSETTLED_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// How long [`disarm_guard`] lets the guard take to exit on its own (it
/// reads the all-clear and exits at once) before it kills it.
const EXIT_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

static GUARD: OnceLock<Guard> = OnceLock::new();

struct Guard {
    /// The guard process, our child.
    pid: i32,
    table: File,
    /// The pipe's write end; dropped (closed) when disarmed.
    alive: Mutex<Option<File>>,
    free: Mutex<Vec<u32>>,
    next: AtomicU32,
}

impl Guard {
    fn free_slots(&self) -> std::sync::MutexGuard<'_, Vec<u32>> {
        // The list stays consistent whatever panicked while holding it.
        self.free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Starts `program` with `args` as this process's guard (see the module
/// docs); the program must call [`guard_main`]. Later spawns register
/// their groups with it. At most one guard per process: a second call
/// does nothing.
///
/// # Errors
///
/// When the memory file, the pipe or the process cannot be made.
pub fn start_guard(program: &Path, args: &[&str]) -> io::Result<()> {
    if GUARD.get().is_some() {
        return Ok(());
    }
    let table = File::from(rustix::fs::memfd_create(
        "agent33-guard",
        rustix::fs::MemfdFlags::CLOEXEC,
    )?);
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::from(read))
        .stdout(Stdio::from(table.try_clone()?))
        .stderr(Stdio::null())
        .env(RUN_VAR, run_id())
        // Out of our group, so that a signal to it (Ctrl-C, a group kill)
        // leaves the guard to do its work.
        .process_group(0)
        .spawn()?;
    // Not a task, yet a child sweeps must leave alone and must not take
    // for an escapee.
    reaper::register_helper(child.id());
    let _ = GUARD.set(Guard {
        pid: i32::try_from(child.id()).unwrap_or(0),
        table,
        alive: Mutex::new(Some(File::from(write))),
        free: Mutex::new(Vec::new()),
        next: AtomicU32::new(0),
    });
    Ok(())
}

/// Tells the guard that all is clear, lets it exit and reaps it (killing
/// it if it has not exited within a few seconds): call it when every task
/// has been cleaned up. It blocks until then, a few milliseconds.
/// Idempotent.
pub fn disarm_guard() {
    let Some(guard) = GUARD.get() else {
        return;
    };
    let alive = guard
        .alive
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let Some(mut alive) = alive else {
        return;
    };
    // A guard already gone has nothing left to do.
    let _ = alive.write_all(&[ALL_CLEAR]);
    // The end of the pipe, which the guard waits for.
    drop(alive);
    if guard.pid > 0 {
        reaper::reap_helper(guard.pid, EXIT_BUDGET);
    }
}

/// A group in the guard's table, until dropped.
#[derive(Debug)]
pub(crate) struct GuardSlot {
    slot: u32,
}

/// Records group `pgid` in the guard's table; `None` without a guard, or
/// when the table cannot be written (the group is then not guarded).
pub(crate) fn guard_group(pgid: i32) -> Option<GuardSlot> {
    let guard = GUARD.get()?;
    let slot = guard
        .free_slots()
        .pop()
        .unwrap_or_else(|| guard.next.fetch_add(1, Ordering::Relaxed));
    let at = u64::from(slot) * 4;
    match guard.table.write_all_at(&pgid.to_le_bytes(), at) {
        Ok(()) => Some(GuardSlot { slot }),
        Err(_) => {
            guard.free_slots().push(slot);
            None
        }
    }
}

impl Drop for GuardSlot {
    fn drop(&mut self) {
        let Some(guard) = GUARD.get() else {
            return;
        };
        let at = u64::from(self.slot) * 4;
        // Left in the table if this fails: killing a group that is gone
        // does nothing.
        if guard.table.write_all_at(&0i32.to_le_bytes(), at).is_ok() {
            guard.free_slots().push(self.slot);
        }
    }
}

/// The guard's side: waits until the pipe on stdin ends, then, unless it
/// was told all is clear, sends SIGKILL to every group in the table on
/// stdout, to every process that carries the run's [`RUN_VAR`], and to
/// every descendant of either, in whatever group or session; then looks
/// again for what forked meanwhile. Returns the number of groups
/// signalled.
///
/// # Errors
///
/// When the table cannot be read.
pub fn guard_main() -> io::Result<usize> {
    let mut stdin = io::stdin().lock();
    let mut buf = [0u8; 64];
    let mut all_clear = false;
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => all_clear |= buf[..n].contains(&ALL_CLEAR),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if all_clear {
        return Ok(0);
    }
    let table = File::from(std::os::fd::AsFd::as_fd(&io::stdout()).try_clone_to_owned()?);
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = table.read_at(&mut chunk, bytes.len() as u64)?;
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
    let groups: Vec<i32> = bytes
        .chunks_exact(4)
        .map(|slot| i32::from_le_bytes([slot[0], slot[1], slot[2], slot[3]]))
        .filter(|&pgid| pgid > 0)
        .collect();
    let entry = std::env::var_os(RUN_VAR).map(|id| {
        let mut entry = format!("{RUN_VAR}=").into_bytes();
        entry.extend_from_slice(id.as_encoded_bytes());
        entry
    });
    let mut killed = std::collections::HashSet::new();
    let mut signalled = 0;
    // A process found may fork before its kill lands, and its child is
    // found by the next look (same group, the run's id, or a found parent):
    // look again until a look finds nothing new and judges everything.
    // Bounded, so that a fork bomb cannot keep the guard alive.
    for round in 0..KILL_ROUNDS {
        // Found before the groups are killed: a process that left its group
        // (setsid) is still linked to the task through its parents, and a
        // kill would hand it to init.
        let (found, unsettled) = reaper::leftovers(&groups, entry.as_deref());
        for &raw in &groups {
            if let Some(pgid) = rustix::process::Pid::from_raw(raw) {
                let sent = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
                if round == 0 && sent.is_ok() {
                    signalled += 1;
                }
            }
        }
        let mut fresh = false;
        for raw in found {
            if killed.insert(raw) {
                fresh = true;
                if let Some(pid) = rustix::process::Pid::from_raw(raw) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
        if !fresh {
            if !unsettled {
                break;
            }
            // Something was mid-`exec`: it can be read in a moment.
            std::thread::sleep(UNSETTLED_PAUSE);
        }
    }
    Ok(signalled)
}
