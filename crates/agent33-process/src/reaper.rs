//! Processes that leave their task's process group: the subreaper, the
//! register of task leaders, escape sweeps, zombie reaping and the final
//! kill of everything this process started.
//!
//! A task's process group catches its ordinary descendants, but a process
//! can leave it (`setsid`, a double fork). On Linux, a process that called
//! [`become_subreaper`] inherits such orphans: when their parent dies they
//! become its children instead of init's. This module finds them by scanning
//! `/proc`, tells them apart from the task leaders their command agents will reap
//! (the *leader register*), attributes them to a task (its process group, or
//! `AGENT33_TASK_ID=<id>` in their environment), kills them and reaps them.
//!
//! The rule that keeps this safe: this module only ever `waitpid`s a
//! specific pid that `/proc` shows is a zombie child of ours and that is not
//! in the leader register, so it never steals the exit status of a child
//! some other code waits for — provided that code's children are spawned by
//! [`crate::CommandAgent`]. After [`become_subreaper`], a program should not
//! start children any other way while a [`Reaper`] runs.
//!
//! It deliberately does nothing on systems without `/proc`: there, the
//! process group is the only containment.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use agent33_parallel::TaskId;

use crate::spawn::Started;
use rustix::process::{Pid, Signal, WaitId, WaitIdOptions, WaitOptions};

/// Task leaders spawned by this crate and not yet reaped by their command agents, by pid.
static LEADERS: Mutex<BTreeMap<i32, TaskId>> = Mutex::new(BTreeMap::new());

fn leaders() -> MutexGuard<'static, BTreeMap<i32, TaskId>> {
    // The map stays consistent whatever panicked while holding it.
    LEADERS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Spawns hold it shared, from before the child exists until it is in
/// [`LEADERS`]; whatever acts on children that are not registered leaders
/// (kills, reaps) holds it exclusively, so it never sees a fresh leader
/// unregistered. Spawns do not wait for each other: a spawn blocks its
/// thread until the child has called `exec`, and serialising them would
/// cap the spawn rate of the whole program.
static SPAWN_GATE: RwLock<()> = RwLock::new(());

fn spawning() -> RwLockReadGuard<'static, ()> {
    SPAWN_GATE.read().unwrap_or_else(|p| p.into_inner())
}

fn no_spawn_in_flight() -> RwLockWriteGuard<'static, ()> {
    SPAWN_GATE.write().unwrap_or_else(|p| p.into_inner())
}

/// A leader's entry in the register; dropping it removes the entry (once
/// the leader is reaped, or was given up on).
#[derive(Debug)]
pub(crate) struct Registration {
    pid: i32,
}

impl Drop for Registration {
    fn drop(&mut self) {
        leaders().remove(&self.pid);
    }
}

/// Helper processes of ours (the guard), by pid; they are in [`LEADERS`] too.
static HELPERS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn helpers() -> MutexGuard<'static, Vec<i32>> {
    HELPERS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Registers a helper process of ours (the guard) as if it were a leader,
/// so that sweeps and orphan reaping leave it alone.
pub(crate) fn register_helper(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        leaders().insert(pid, TaskId::from("agent-33 guard"));
        helpers().push(pid);
    }
}

/// Reaps helper `pid` once it has exited and forgets it; a helper that has
/// not exited within `budget` is killed first. Left unreaped, it would be a
/// zombie for whoever adopts it when we exit, and one that nobody reaps
/// where that is a subreaper that only waits for its own children. Reaped by
/// its pid alone, which is still ours (registered helpers are reaped by
/// nobody else), never by a wait for any child, which could take an orphan
/// of a task from the sweeps.
pub(crate) fn reap_helper(pid: i32, budget: Duration) {
    let deadline = Instant::now() + budget;
    let mut pause = Duration::from_micros(100);
    let mut killed = false;
    while !has_exited(pid) {
        if Instant::now() >= deadline {
            if killed {
                // Stuck beyond SIGKILL (in the kernel): left as it is.
                return;
            }
            kill(pid, Signal::KILL);
            killed = true;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
    // Reaped and forgotten with no spawn in flight, so that no new child
    // can take the pid while the registers still name it.
    let _gate = no_spawn_in_flight();
    reap(pid);
    leaders().remove(&pid);
    helpers().retain(|&helper| helper != pid);
}

/// Starts a leader with `start` and registers its pid as a task leader,
/// atomically with respect to sweeps.
pub(crate) fn spawn_registered(
    task: &TaskId,
    start: impl FnOnce() -> io::Result<Started>,
) -> io::Result<(Started, Registration)> {
    let _gate = spawning();
    let started = start()?;
    leaders().insert(started.pid, task.clone());
    let registration = Registration { pid: started.pid };
    Ok((started, registration))
}

/// Makes this process the subreaper of its descendants: orphans are
/// reparented to it instead of init, so they can be found and killed.
///
/// Call it once, early, before starting tasks. It is per process (each test
/// binary, or each nextest test, sets its own).
///
/// # Errors
///
/// The `prctl` error, or `Unsupported` off Linux.
pub fn become_subreaper() -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
        BECAME_SUBREAPER.store(true, Ordering::Relaxed);
        Ok(())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "child subreapers exist only on Linux",
        ))
    }
}

/// Like [`become_subreaper`], for a process whose other code starts and
/// waits for children of its own (a Python interpreter, whose `subprocess`
/// waits for each child by its pid): orphans of tasks are still
/// reparented here, found by their group or the task's marker variable and
/// killed, but from then on this crate reaps only the processes it can
/// attribute to a task (members of its group, escapees it killed), never
/// another zombie child, so no exit status is taken from that other code.
/// [`reap_orphans`] reaps nothing in this mode, and a [`Reaper`] is not
/// needed; [`kill_all_descendants`] would still kill that code's children,
/// so such a program does not call it.
///
/// # Errors
///
/// As [`become_subreaper`].
pub fn become_guest_subreaper() -> io::Result<()> {
    GUEST.store(true, Ordering::Relaxed);
    become_subreaper()
}

/// Set by [`become_guest_subreaper`]: reap only what is attributed to a task.
static GUEST: AtomicBool = AtomicBool::new(false);

fn guest() -> bool {
    GUEST.load(Ordering::Relaxed)
}

/// Set once [`become_subreaper`] succeeded: nothing in this program undoes
/// it, so the per-task check needs no `prctl`.
static BECAME_SUBREAPER: AtomicBool = AtomicBool::new(false);

/// [`is_subreaper`] without a system call once [`become_subreaper`]
/// succeeded.
pub(crate) fn subreaper() -> bool {
    BECAME_SUBREAPER.load(Ordering::Relaxed) || is_subreaper()
}

/// This process's pid (it never changes: this crate never forks without
/// `exec`), without a system call after the first.
pub(crate) fn my_pid() -> i32 {
    static PID: AtomicI32 = AtomicI32::new(0);
    match PID.load(Ordering::Relaxed) {
        0 => {
            let pid = rustix::process::getpid().as_raw_nonzero().get();
            PID.store(pid, Ordering::Relaxed);
            pid
        }
        pid => pid,
    }
}

/// Whether this process is a child subreaper (see [`become_subreaper`]).
#[must_use]
pub fn is_subreaper() -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        matches!(rustix::process::child_subreaper(), Ok(Some(_)))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        false
    }
}

/// One line of `/proc/PID/stat`, the fields this module needs.
#[derive(Clone, Copy, Debug)]
struct ProcInfo {
    pid: i32,
    ppid: i32,
    pgid: i32,
    state: u8,
}

impl ProcInfo {
    fn is_zombie(&self) -> bool {
        // `X` (dead) is a zombie being reaped right now.
        matches!(self.state, b'Z' | b'X')
    }
}

/// What a run left behind: the live processes in `groups`, those whose
/// initial environment holds `entry` (`KEY=value`; others' processes
/// cannot be read, and are not ours), and every live descendant of
/// either, whatever group or session it moved to. This process is left
/// out. The flag says whether some process could not be judged (caught
/// mid-`exec`): look again shortly.
pub(crate) fn leftovers(groups: &[i32], entry: Option<&[u8]>) -> (Vec<i32>, bool) {
    let me = my_pid();
    let procs = all_processes();
    let mut children: HashMap<i32, Vec<&ProcInfo>> = HashMap::new();
    for p in &procs {
        children.entry(p.ppid).or_default().push(p);
    }
    let mut unsettled = false;
    let mut found: HashSet<i32> = HashSet::new();
    let mut stack: Vec<i32> = procs
        .iter()
        .filter(|p| {
            groups.contains(&p.pgid)
                || entry.is_some_and(|e| match environ(p.pid, e) {
                    Environ::Has => true,
                    Environ::Lacks => false,
                    Environ::Unsettled => {
                        unsettled |= !p.is_zombie();
                        false
                    }
                })
        })
        .map(|p| p.pid)
        .collect();
    while let Some(pid) = stack.pop() {
        if !found.insert(pid) {
            continue;
        }
        stack.extend(children.get(&pid).into_iter().flatten().map(|c| c.pid));
    }
    let found = procs
        .iter()
        .filter(|p| found.contains(&p.pid) && p.pid != me && !p.is_zombie())
        .map(|p| p.pid)
        .collect();
    (found, unsettled)
}

fn parse_stat(pid: i32, stat: &[u8]) -> Option<ProcInfo> {
    // The command name may contain spaces and parentheses: the fields start
    // after the last `)`.
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    Some(ProcInfo {
        pid,
        ppid,
        pgid,
        state,
    })
}

/// Every process `/proc` shows now (empty without `/proc`).
fn all_processes() -> Vec<ProcInfo> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut stat_path = String::with_capacity(32);
    dir.flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            stat_path.clear();
            stat_path.push_str("/proc/");
            stat_path.push_str(&pid.to_string());
            stat_path.push_str("/stat");
            // A process that exits between the listing and the read is gone.
            let stat = std::fs::read(&stat_path).ok()?;
            parse_stat(pid, &stat)
        })
        .collect()
}

/// What a process's initial environment says about `entry` (`KEY=value`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Environ {
    Has,
    Lacks,
    /// Not readable whole: a process in the middle of `exec` shows an empty
    /// environment until the kernel has set up its new stack, and a read
    /// that overlaps the switch returns the old one cut short (seen: an
    /// escapee read as `…AGENT33_TASK_ID=esc:` was let go). It is asked
    /// again; a process that really has no environment stays this way.
    Unsettled,
}

fn environ(pid: i32, entry: &[u8]) -> Environ {
    let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
        // Gone, or not ours to read.
        return Environ::Lacks;
    };
    read_environ(&env, entry, || environ_size(pid))
}

/// Judges one read of `/proc/PID/environ`. Only entries closed by their
/// NUL count, so a read cut inside `KEY=value1` never matches `KEY=value`;
/// and "lacks" needs a whole read: closed by a NUL and as long as the
/// environment the kernel describes (`size`, asked only then).
fn read_environ(env: &[u8], entry: &[u8], size: impl FnOnce() -> Option<usize>) -> Environ {
    let mut closed = env
        .split_inclusive(|&b| b == 0)
        .filter_map(|e| e.strip_suffix(&[0]));
    if closed.any(|e| e == entry) {
        Environ::Has
    } else if env.last() == Some(&0) && size() == Some(env.len()) {
        Environ::Lacks
    } else {
        Environ::Unsettled
    }
}

/// The size of a process's environment block, from the `env_start` and
/// `env_end` fields of its `stat` (50 and 51, Linux 3.5 and later).
fn environ_size(pid: i32) -> Option<usize> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    // Field 3 (the state) is the first after the name.
    let mut fields = rest.split_ascii_whitespace().skip(50 - 3);
    let start: usize = fields.next()?.parse().ok()?;
    let end: usize = fields.next()?.parse().ok()?;
    end.checked_sub(start)
}

/// How long a sweep keeps looking at a child whose environment cannot be
/// read whole, from the first time it saw it so, in case it is mid-`exec`
/// and turns out to be the task's.
const EXEC_SETTLE: Duration = Duration::from_millis(200);

/// The children a sweep saw with an unsettled environment, and since when.
///
/// The settle time counts per process from its first empty reading, not
/// from the start of the sweep: on a loaded machine an escapee may first
/// run (and `exec`) long after its task ended, and one reading taken in the
/// middle of that `exec` must not let it go.
#[derive(Debug, Default)]
struct Settling(HashMap<i32, tokio::time::Instant>);

impl Settling {
    /// Whether `pid`, read unsettled at `now`, may still be mid-`exec`.
    fn still_settling(&mut self, pid: i32, now: tokio::time::Instant) -> bool {
        let first = *self.0.entry(pid).or_insert(now);
        now.duration_since(first) < EXEC_SETTLE
    }
}

/// This process's children, from `/proc/self/task/*/children` (a few small
/// reads instead of a scan of every process); `None` when the kernel lacks
/// those files. A thread that exits hands its children to another, and
/// reading the files one by one could miss them in passing: the threads
/// are listed again afterwards, and `None` returned when they changed.
fn own_children() -> Option<Vec<i32>> {
    let threads = own_threads()?;
    let mut children = Vec::new();
    for &tid in &threads {
        read_children(tid, &mut children).ok()?;
    }
    (own_threads()? == threads).then_some(children)
}

/// The ids of this process's threads, in order.
fn own_threads() -> Option<Vec<i32>> {
    let mut threads: Vec<i32> = std::fs::read_dir("/proc/self/task")
        .ok()?
        .flatten()
        .filter_map(|thread| thread.file_name().to_str()?.parse().ok())
        .collect();
    threads.sort_unstable();
    Some(threads)
}

/// The children of the main thread (whose tid is `me`), read through one
/// file kept open: procfs makes the list afresh for every read from offset
/// 0, so each finished task costs a `pread` or two instead of a path walk,
/// an `open`, two reads and a `close`. The lock keeps one read whole: a
/// list longer than one buffer takes several reads, and another thread's
/// read from offset 0 in between would start the list afresh under it.
fn main_thread_children(me: i32) -> Option<Vec<i32>> {
    static FILE: Mutex<Option<std::fs::File>> = Mutex::new(None);
    let mut file = FILE.lock().unwrap_or_else(|p| p.into_inner());
    if file.is_none() {
        // Not cached when it fails (out of fds, say): tried again next time.
        *file = std::fs::File::open(format!("/proc/self/task/{me}/children")).ok();
    }
    let mut children = Vec::new();
    read_pids(
        ReadAt {
            file: file.as_ref()?,
            at: 0,
        },
        &mut children,
    )
    .ok()?;
    Some(children)
}

/// Reads a file from its start with `pread`, so that threads may share it.
struct ReadAt<'a> {
    file: &'a std::fs::File,
    at: u64,
}

impl std::io::Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// Appends the children of thread `tid` of this process.
fn read_children(tid: i32, children: &mut Vec<i32>) -> io::Result<()> {
    let file = std::fs::File::open(format!("/proc/self/task/{tid}/children"))?;
    read_pids(file, children)
}

/// Appends the pids of a `children` file ("PID PID … ").
fn read_pids(mut file: impl std::io::Read, children: &mut Vec<i32>) -> io::Result<()> {
    // Plain reads: procfs gives no size, so the `statx` and `lseek` that
    // `read_to_end` spends on a size hint are wasted. The file is
    // "PID PID … " (each pid followed by a space), so a pid cut at the end
    // of a buffer is carried over to the next read.
    let mut buf = [0u8; 1024];
    let mut carry = 0;
    loop {
        let n = match file.read(&mut buf[carry..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let end = carry + n;
        let text = &buf[..end];
        // Everything up to the last space is whole pids.
        let whole = if n == 0 {
            end
        } else {
            text.iter().rposition(|&b| b == b' ').map_or(0, |i| i + 1)
        };
        children.extend(
            text[..whole]
                .split(|&b| b == b' ')
                .filter_map(|pid| std::str::from_utf8(pid).ok()?.trim().parse::<i32>().ok()),
        );
        if n == 0 {
            return Ok(());
        }
        buf.copy_within(whole..end, 0);
        carry = end - whole;
    }
}

/// Whether orphans reparented to this subreaper always become children of
/// its main thread. Since Linux 3.19 they go to the first live thread of the
/// subreaper (`find_alive_thread`), which is the main thread while the
/// program runs; before, to the thread that started their ancestor.
fn orphans_join_main_thread() -> bool {
    static ANSWER: OnceLock<bool> = OnceLock::new();
    *ANSWER.get_or_init(|| {
        let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
            return false;
        };
        let mut parts = release
            .trim()
            .split(|c: char| !c.is_ascii_digit())
            .map(|n| n.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        (major, minor) >= (3, 19)
    })
}

/// Whether nothing is left of a finished task: its group is empty and we
/// have no children besides task leaders. The common case, checked without
/// scanning `/proc`: one `kill(0)` and, on current kernels, one read of the
/// main thread's children (where escapees are reparented; the leaders, our
/// only other children, are registered).
///
/// It does not wait for spawns in flight: a leader not registered yet
/// looks like an unknown child and only sends the caller to the full sweep,
/// which does wait for them.
fn nothing_left(me: i32, pgid: i32) -> bool {
    let group_empty = pid_of(pgid).is_some_and(|pgid| {
        rustix::process::test_kill_process_group(pgid) == Err(rustix::io::Errno::SRCH)
    });
    if !group_empty {
        return false;
    }
    let children = if orphans_join_main_thread() {
        main_thread_children(me)
    } else {
        own_children()
    };
    children.is_some_and(|children| {
        let leaders = leaders();
        children.iter().all(|pid| leaders.contains_key(pid))
    })
}

fn pid_of(raw: i32) -> Option<Pid> {
    Pid::from_raw(raw)
}

fn kill(raw: i32, sig: Signal) {
    if let Some(pid) = pid_of(raw) {
        // ESRCH: it died meanwhile, which is what we wanted.
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Reaps one zombie child, without blocking.
fn reap(raw: i32) -> bool {
    pid_of(raw).is_some_and(|pid| {
        matches!(
            rustix::process::waitpid(Some(pid), WaitOptions::NOHANG),
            Ok(Some(_))
        )
    })
}

/// Kills what is left of a finished task outside its leader: members of its
/// process group that were reparented to us and processes that left the
/// group but carry `AGENT33_TASK_ID=<task>`, then reaps them. Repeats until
/// nothing of the task is left or `budget` passes, since killing a process
/// reparents its own children to us. Returns how many processes that had
/// left the group were killed.
///
/// Only useful when this process is a subreaper; the caller checks.
pub(crate) async fn sweep_task(task: &TaskId, pgid: i32, budget: Duration) -> usize {
    let me = my_pid();
    if nothing_left(me, pgid) {
        return 0;
    }
    let entry = format!("{}={task}", crate::spawn::TASK_ID_VAR).into_bytes();
    let deadline = tokio::time::Instant::now() + budget;
    let mut escaped: HashSet<i32> = HashSet::new();
    let mut settling = Settling::default();
    let mut pause = Duration::from_millis(1);
    loop {
        let procs = all_processes();
        // Members not reparented to us yet (their parent is a dying member)
        // will be: keep looking while any lives.
        let mut busy = procs.iter().any(|p| p.pgid == pgid && !p.is_zombie());
        {
            let _gate = no_spawn_in_flight();
            let leaders = leaders();
            // Another live attempt under the same id (two runs in one
            // process) owns the processes that carry it.
            let id_taken = leaders.values().any(|t| t == task);
            for p in procs
                .iter()
                .filter(|p| p.ppid == me && !leaders.contains_key(&p.pid))
            {
                if p.is_zombie() {
                    // An orphan's remains, whoever it belonged to, are ours
                    // to reap; a guest reaps only the task's own (its
                    // group's members, escapees it killed), since other
                    // code of the process waits for its children by pid.
                    if !guest() || p.pgid == pgid || escaped.contains(&p.pid) {
                        reap(p.pid);
                    }
                    continue;
                }
                let in_group = p.pgid == pgid;
                if !in_group {
                    if id_taken {
                        continue;
                    }
                    match environ(p.pid, &entry) {
                        Environ::Has => {}
                        Environ::Lacks => continue,
                        Environ::Unsettled => {
                            busy |= settling.still_settling(p.pid, tokio::time::Instant::now());
                            continue;
                        }
                    }
                }
                kill(p.pid, Signal::KILL);
                if !in_group {
                    escaped.insert(p.pid);
                }
                busy = true;
            }
        }
        if !busy || tokio::time::Instant::now() >= deadline {
            return escaped.len();
        }
        // Killed processes take a moment to exit and reparent their children.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Reaps zombie children that no task leader owns: orphans reparented to
/// this subreaper that have since exited. Never blocks and never touches a
/// leader a command agent will reap. Returns how many were reaped.
///
/// A [`Reaper`] calls this periodically; call it yourself when you have no
/// runtime.
pub fn reap_orphans() -> usize {
    if guest() {
        // Nothing tells a task's orphan from a child other code waits for.
        return 0;
    }
    let me = my_pid();
    let _gate = no_spawn_in_flight();
    let zombies: Vec<i32> = match own_children() {
        // Only our children can be ours to reap: look at them alone.
        Some(children) => {
            let unknown: Vec<i32> = {
                let leaders = leaders();
                children
                    .into_iter()
                    .filter(|pid| !leaders.contains_key(pid))
                    .collect()
            };
            unknown
                .into_iter()
                .filter(|&pid| {
                    std::fs::read(format!("/proc/{pid}/stat"))
                        .ok()
                        .and_then(|stat| parse_stat(pid, &stat))
                        .is_some_and(|p| p.ppid == me && p.is_zombie())
                })
                .collect()
        }
        None => all_processes()
            .into_iter()
            .filter(|p| p.ppid == me && p.is_zombie())
            .map(|p| p.pid)
            .collect(),
    };
    if zombies.is_empty() {
        return 0;
    }
    let leaders = leaders();
    zombies
        .into_iter()
        .filter(|pid| !leaders.contains_key(pid))
        .filter(|&pid| reap(pid))
        .count()
}

/// Kills every descendant of this process — task leaders, their groups and,
/// for a subreaper, the escapees reparented to it — and reaps the orphans
/// among them, until none is left or `budget` passes. Returns how many
/// processes were signalled.
///
/// Call it when the program exits (after the run), so that no process it
/// started survives it. Descendants that are not our children are found by
/// following parent pids in `/proc`; between that scan and the kill such a
/// pid could, in theory, be reused — our own children cannot be, since only
/// we can reap them.
pub fn kill_all_descendants(budget: Duration) -> usize {
    let me = my_pid();
    let deadline = Instant::now() + budget;
    let mut signalled: HashSet<i32> = HashSet::new();
    let mut pause = Duration::from_micros(250);
    loop {
        // Every descendant is a child of ours or below one (an orphan is
        // reparented to us, a subreaper, or leaves our tree), so when the
        // children are only helpers there is nothing else to look for: the
        // common case at the end of a run, settled without reading every
        // process's `stat`.
        let busy = match only_helpers_left() {
            Some(helpers) => kill_helpers(&helpers),
            None => kill_scanned_descendants(me, &mut signalled),
        };
        if !busy || Instant::now() >= deadline {
            return signalled.len();
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Kills the helpers that have not exited yet; says whether there were any.
fn kill_helpers(helpers: &[i32]) -> bool {
    let mut busy = false;
    for &pid in helpers.iter().filter(|&&pid| !has_exited(pid)) {
        kill(pid, Signal::KILL);
        busy = true;
    }
    busy
}

/// One pass of [`kill_all_descendants`] through every process in `/proc`:
/// kills the registered leaders' groups and every live descendant (adding
/// it to `signalled`), reaps orphaned zombies, and says whether any
/// descendant was alive.
fn kill_scanned_descendants(me: i32, signalled: &mut HashSet<i32>) -> bool {
    let procs = all_processes();
    let mut children: HashMap<i32, Vec<&ProcInfo>> = HashMap::new();
    for p in &procs {
        children.entry(p.ppid).or_default().push(p);
    }
    let mut live = Vec::new();
    let mut stack = vec![me];
    while let Some(parent) = stack.pop() {
        for child in children.get(&parent).into_iter().flatten() {
            stack.push(child.pid);
            if !child.is_zombie() {
                live.push(child.pid);
            }
        }
    }
    let _gate = no_spawn_in_flight();
    let leaders = leaders();
    // A registered leader is not reaped yet, alive or zombie, so its pid
    // still names its group: killing the group is safe, and it reaches
    // members that were reparented elsewhere.
    for &leader in leaders.keys() {
        if let Some(pgid) = pid_of(leader) {
            let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
        }
    }
    for &pid in &live {
        kill(pid, Signal::KILL);
        signalled.insert(pid);
    }
    for zombie in children
        .get(&me)
        .into_iter()
        .flatten()
        .filter(|p| p.is_zombie() && !leaders.contains_key(&p.pid))
    {
        reap(zombie.pid);
    }
    !live.is_empty()
}

/// The children of this process when each of them is a helper (none, in a
/// program without a guard); `None` when there are others, or when the
/// children cannot be read.
fn only_helpers_left() -> Option<Vec<i32>> {
    let _gate = no_spawn_in_flight();
    let children = own_children()?;
    let helpers = helpers();
    children
        .iter()
        .all(|pid| helpers.contains(pid))
        .then_some(children)
}

/// Whether child `pid` has exited (a zombie not reaped yet, or gone).
fn has_exited(pid: i32) -> bool {
    let Some(pid) = pid_of(pid) else {
        return true;
    };
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    !matches!(rustix::process::waitid(WaitId::Pid(pid), options), Ok(None))
}

/// Reaps orphaned zombies in the background while a long run goes on.
///
/// Dropping it stops it.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// agent33_process::become_subreaper()?;
/// let _reaper = agent33_process::Reaper::start(std::time::Duration::from_secs(1));
/// // … run tasks …
/// agent33_process::kill_all_descendants(std::time::Duration::from_secs(5));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Reaper {
    handle: tokio::task::JoinHandle<()>,
}

impl Reaper {
    /// Starts reaping every `interval` on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    #[must_use]
    pub fn start(interval: Duration) -> Self {
        let handle = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(1)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                // Scanning /proc is a few milliseconds of blocking reads.
                let _ = tokio::task::spawn_blocking(reap_orphans).await;
            }
        });
        Self { handle }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_parentheses_in_the_name() {
        let info = parse_stat(42, b"42 (a) b (c)) S 7 42 42 0 -1 4194560 0").expect("parses");
        assert_eq!(
            (info.pid, info.ppid, info.pgid, info.state),
            (42, 7, 42, b'S')
        );
        assert!(!info.is_zombie());
        let zombie = parse_stat(5, b"5 (x) Z 1 5 5").expect("parses");
        assert!(zombie.is_zombie());
    }

    #[test]
    fn only_a_whole_environment_says_a_process_lacks_the_marker() {
        let entry = b"AGENT33_TASK_ID=esc:e5";
        let whole = b"A=1\0AGENT33_TASK_ID=esc:e5\0B=2\0";
        assert_eq!(read_environ(whole, entry, || None), Environ::Has);
        // Cut inside the entry, or before it: not known yet.
        let torn = b"A=1\0AGENT33_TASK_ID=esc:";
        assert_eq!(read_environ(torn, entry, || Some(99)), Environ::Unsettled);
        assert_eq!(
            read_environ(b"A=1\0", entry, || Some(99)),
            Environ::Unsettled
        );
        assert_eq!(read_environ(b"", entry, || Some(0)), Environ::Unsettled);
        // A cut entry never matches a shorter id.
        let longer = b"A=1\0AGENT33_TASK_ID=esc:e50";
        assert_eq!(read_environ(longer, entry, || None), Environ::Unsettled);
        // Whole and without it: another's.
        let other = b"A=1\0AGENT33_TASK_ID=esc:e50\0";
        assert_eq!(
            read_environ(other, entry, || Some(other.len())),
            Environ::Lacks
        );
        assert_eq!(read_environ(other, entry, || None), Environ::Unsettled);
    }

    #[test]
    fn reads_its_own_environment_whole() {
        let mine = std::fs::read("/proc/self/environ").expect("readable");
        assert_eq!(environ_size(my_pid()), Some(mine.len()));
        assert_eq!(
            environ(my_pid(), b"NO_SUCH_VARIABLE_HERE=1"),
            Environ::Lacks
        );
    }

    #[test]
    fn each_empty_environment_gets_its_own_settle_time() {
        let start = tokio::time::Instant::now();
        let mut settling = Settling::default();
        // A process first read empty long after the sweep began (it ran
        // late on a loaded machine) is still given the whole settle time.
        let late = start + EXEC_SETTLE * 5;
        assert!(settling.still_settling(7, late));
        assert!(settling.still_settling(7, late + EXEC_SETTLE / 2));
        assert!(!settling.still_settling(7, late + EXEC_SETTLE));
        // Another one's clock starts at its own first reading.
        assert!(settling.still_settling(8, late + EXEC_SETTLE));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_stat(1, b"no parenthesis").is_none());
        assert!(parse_stat(1, b"1 (x) S notanumber 1").is_none());
    }

    #[test]
    fn reads_pids_cut_across_reads() {
        /// Hands out its bytes three at a time.
        struct Trickle(&'static [u8]);
        impl std::io::Read for Trickle {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(3).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut pids = Vec::new();
        read_pids(Trickle(b"12345 7 4194304 "), &mut pids).expect("reads");
        assert_eq!(pids, vec![12345, 7, 4_194_304]);
        pids.clear();
        read_pids(Trickle(b""), &mut pids).expect("reads");
        assert!(pids.is_empty());
        // Whatever the kernel, our own children file parses.
        let mut own = Vec::new();
        if read_children(my_pid(), &mut own).is_ok() {
            assert!(own.iter().all(|&pid| pid > 0));
        }
    }

    #[test]
    fn a_child_that_is_no_helper_sends_the_final_sweep_to_the_full_scan() {
        // Other tests start children of their own meanwhile: only what this
        // child's presence implies is asserted.
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("sleep starts");
        let pid = child.id() as i32;
        if let Some(children) = own_children() {
            assert!(children.contains(&pid), "{children:?} lacks {pid}");
            assert!(only_helpers_left().is_none());
        }
        assert!(!has_exited(pid));
        child.kill().expect("kill");
        assert!(wait_until(|| has_exited(pid)));
        child.wait().expect("reaped");
        assert!(has_exited(pid), "an unknown pid counts as gone");
    }

    fn wait_until(mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if done() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn sees_itself() {
        let me = std::process::id() as i32;
        let all = all_processes();
        let info = all.iter().find(|p| p.pid == me).expect("in /proc");
        // Not getpgrp(): inside a PID namespace (containers, CI) a group led
        // from outside reads as 0 here, and rustix refuses to return that.
        let parent = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
        assert_eq!(info.ppid, parent);
        assert!(info.pgid >= 0);
    }
}
