//! Linux's own spawn: `clone3` or `clone` with `CLONE_VM | CLONE_VFORK`
//! into a child that resets signals, joins a new process group, sets up
//! stdio and calls `execve`, with nothing else in between.
//!
//! glibc's `posix_spawn` does the same with more around it: it maps a fresh
//! stack for every child and unmaps it after, and in a process with several
//! threads an unmap interrupts the other cores to flush their TLBs. With
//! short jobs at more jobs than cores, that was the part of a spawn left to
//! cut (see docs/BENCHMARKS.md).
//!
//! The child shares our memory and runs while the calling thread is
//! suspended, so it may only make system calls on data prepared before
//! (the same rule glibc follows): no allocation, no locks, no panics. Every
//! signal is blocked across the clone, and no handler of ours is left in
//! the child when it unblocks them: on x86-64 Linux 5.5 and later, `clone3`
//! with `CLONE_CLEAR_SIGHAND` has the kernel reset them all in one step;
//! elsewhere the child sets each signal that may have a handler to its
//! default itself, about 60 `sigaction` calls, a fiftieth of the CPU a
//! short job costs. This module is the workspace's only unsafe code.
#![expect(
    unsafe_code,
    reason = "clone(2) with a shared address space has no safe wrapper"
)]

use std::cell::RefCell;
use std::ffi::{CStr, c_int, c_long, c_void};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::libc;
use nix::sys::signal::SigSet;

/// Bytes of stack for the child: it calls a few thin system call wrappers,
/// each a handful of frames deep; this is a wide margin, kept per thread.
const STACK: usize = 64 * 1024;

/// 16-byte units, so the top of the stack is aligned as every ABI wants.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Slot([u8; 16]);

thread_local! {
    /// The calling thread is suspended until its child has called `execve`
    /// (or exited), so one stack per thread serves all its spawns.
    static CHILD_STACK: RefCell<Box<[Slot]>> =
        RefCell::new(vec![Slot([0; 16]); STACK / 16].into_boxed_slice());
}

/// Everything the child reads, prepared by the parent; the child writes
/// only `error`.
struct Child<'a> {
    path: &'a CStr,
    /// NULL-terminated.
    argv: &'a [*const libc::c_char],
    /// NULL-terminated.
    envp: &'a [*const libc::c_char],
    /// The fds that become the child's 0, 1 and 2; all above 2.
    stdio: [c_int; 3],
    /// Signals to set to their default before any is unblocked.
    defaults: &'a [c_int],
    /// Signals to set to their default only if they have a handler.
    ask: &'a [c_int],
    /// The `errno` of the step that failed, 0 while none did.
    error: AtomicI32,
}

/// The signals a child resets, sorted once per launcher: those it sets to
/// their default outright, and those it asks about first (a handler is
/// reset, an ignored signal stays ignored).
#[derive(Debug)]
pub(crate) struct Resets {
    /// Set, from the front; asked about, from the back.
    numbers: [c_int; 64],
    set: usize,
    ask: usize,
}

impl From<SigSet> for Resets {
    /// `defaults` are set outright, every other signal but SIGKILL and
    /// SIGSTOP asked about.
    fn from(defaults: SigSet) -> Self {
        let mut numbers = [0 as c_int; 64];
        let (mut set, mut ask) = (0, numbers.len());
        for sig in 1..=64 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            // SAFETY: `defaults` is an initialised sigset_t.
            if unsafe { libc::sigismember(defaults.as_ref(), sig) } == 1 {
                numbers[set] = sig;
                set += 1;
            } else {
                ask -= 1;
                numbers[ask] = sig;
            }
        }
        Self { numbers, set, ask }
    }
}

/// Starts `path` with `argv` and `envp` (both NULL-terminated) in a process
/// group of its own, `stdio` as its fds 0 to 2 (all above 2), an empty
/// signal mask and SIGPIPE at its default; returns its pid.
///
/// What else starts at its default: through `clone3`, every signal with a
/// handler now (one ignored now stays ignored); through `clone`, the
/// signals `resets` names (for the launcher: those not ignored when it was
/// made), and any other that has a handler.
///
/// Must be called with no other process reaping our children: a child that
/// fails before `execve` is reaped here.
///
/// # Errors
///
/// The clone's error, or the error of the child's step that failed (most
/// often `execve`'s: a missing program, no permission).
pub(crate) fn spawn(
    path: &CStr,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    stdio: [c_int; 3],
    resets: &Resets,
) -> io::Result<i32> {
    if CLEARS_HANDLERS.load(Ordering::Relaxed) {
        if let Some(pid) = start(Way::Clone3, path, argv, envp, stdio, resets)? {
            return Ok(pid);
        }
        CLEARS_HANDLERS.store(false, Ordering::Relaxed);
    }
    start(Way::Clone, path, argv, envp, stdio, resets)
        .map(|pid| pid.expect("clone is always there"))
}

/// Whether `clone3` with `CLONE_CLEAR_SIGHAND` is worth trying: where
/// [`clone3_vfork`] is written, until the kernel or a filter refuses it.
static CLEARS_HANDLERS: AtomicBool = AtomicBool::new(cfg!(clone3));

/// How the child is made, and so what it has left to reset.
#[derive(Clone, Copy, Debug)]
enum Way {
    /// `clone3` with `CLONE_CLEAR_SIGHAND`: the kernel resets every handler,
    /// the child only SIGPIPE, which the Rust runtime ignores.
    Clone3,
    /// `clone`: the child resets what `resets` names.
    Clone,
}

/// [`spawn`] one way; `None` when this way is not to be had here (an
/// older kernel, a seccomp filter, a target without [`clone3_vfork`]).
fn start(
    way: Way,
    path: &CStr,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    stdio: [c_int; 3],
    resets: &Resets,
) -> io::Result<Option<i32>> {
    assert!(
        argv.last().is_some_and(|p| p.is_null()) && envp.last().is_some_and(|p| p.is_null()),
        "argv and envp end with NULL"
    );
    assert!(stdio.iter().all(|&fd| fd > 2), "stdio fds are above 2");
    let (defaults, ask) = match way {
        Way::Clone3 => (&[libc::SIGPIPE][..], &[][..]),
        Way::Clone => (&resets.numbers[..resets.set], &resets.numbers[resets.ask..]),
    };
    let child = Child {
        path,
        argv,
        envp,
        stdio,
        defaults,
        ask,
        error: AtomicI32::new(0),
    };
    let pid = CHILD_STACK.with_borrow_mut(|stack| {
        let arg = std::ptr::from_ref(&child).cast_mut().cast::<c_void>();
        let mut old: u64 = 0;
        // SAFETY: the mask calls read and write the two u64 masks. The
        // child runs `child_main` on `stack`, which nothing else uses while
        // this thread is suspended in clone (CLONE_VFORK), and reads
        // `child`, which outlives the call.
        unsafe {
            // Raw, so that glibc's internal signals are blocked too.
            sigprocmask(&!0, &mut old);
            let pid = match way {
                Way::Clone3 => match clone3_vfork(stack, arg) {
                    // Older kernels, and container filters that refuse
                    // `clone3` so that the C library falls back.
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::ENOSYS | libc::EINVAL | libc::EPERM)
                        ) =>
                    {
                        Ok(None)
                    }
                    pid => pid.map(Some),
                },
                Way::Clone => {
                    let top = stack.as_mut_ptr_range().end.cast::<c_void>();
                    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
                    match libc::clone(child_main, top, flags, arg) {
                        -1 => Err(io::Error::last_os_error()),
                        pid => Ok(Some(pid)),
                    }
                }
            };
            sigprocmask(&old, std::ptr::null_mut());
            pid
        }
    })?;
    let Some(pid) = pid else {
        return Ok(None);
    };
    match child.error.load(Ordering::Acquire) {
        0 => Ok(Some(pid)),
        errno => {
            // It has exited already (CLONE_VFORK resumed us): collect it.
            loop {
                // SAFETY: waitpid on our own child, no status wanted.
                let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
                if r >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                    break;
                }
            }
            Err(io::Error::from_raw_os_error(errno))
        }
    }
}

/// `clone3(CLONE_VM | CLONE_VFORK | CLONE_CLEAR_SIGHAND)`, the child
/// running `child_main(arg)` on `stack`. There is no C library wrapper:
/// the child starts on its new stack right after the system call, so the
/// call into `child_main` must be there too, before any compiled code
/// could touch the stack it left.
#[cfg(clone3)]
unsafe fn clone3_vfork(stack: &mut [Slot], arg: *mut c_void) -> io::Result<i32> {
    /// Not in `libc` with a type that holds it.
    const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;
    // SAFETY: all zeroes is a valid `clone_args` (no pointers followed).
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = (libc::CLONE_VM | libc::CLONE_VFORK) as u64 | CLONE_CLEAR_SIGHAND;
    args.exit_signal = libc::SIGCHLD as u64;
    args.stack = stack.as_mut_ptr() as u64;
    args.stack_size = std::mem::size_of_val(stack) as u64;
    let entry: extern "C" fn(*mut c_void) -> c_int = child_main;
    let ret: c_long;
    // SAFETY: the parent comes back from `syscall` with only rax, rcx and
    // r11 changed, and touches no stack. The child comes back on the top
    // of `stack` (16-byte aligned, as `call` wants it), which the parent
    // does not use while suspended; `child_main` ends in `exit_group` or
    // `execve`, so the `ud2` is never reached.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r13",
            "call r12",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") &raw const args,
            in("rsi") std::mem::size_of::<libc::clone_args>(),
            in("r12") entry,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    match i32::try_from(ret) {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(io::Error::from_raw_os_error(
            i32::try_from(-ret).unwrap_or(libc::EINVAL),
        )),
    }
}

/// Elsewhere only the tests ask.
#[cfg(not(clone3))]
unsafe fn clone3_vfork(_: &mut [Slot], _: *mut c_void) -> io::Result<i32> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// The child, in our address space until `execve` replaces it. Only
/// system calls: glibc's wrappers may take locks shared with our running
/// threads (`sigaction` does for SIGABRT in newer versions) and are what
/// preloaded tools intercept.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Child` that `spawn` keeps alive across clone.
    let child = unsafe { &*arg.cast::<Child<'_>>() };
    // SAFETY: system calls on data prepared by the parent. A zeroed kernel
    // sigaction is SIG_DFL with no flags and an empty mask; its first word
    // is the handler (on the architectures this module is built for).
    unsafe {
        let default = [0usize; 4];
        for &sig in child.defaults {
            set_action(sig, &default, std::ptr::null_mut());
        }
        for &sig in child.ask {
            let mut now = [0usize; 4];
            if set_action(sig, std::ptr::null(), &mut now) == 0
                && now[0] != libc::SIG_DFL
                && now[0] != libc::SIG_IGN
            {
                set_action(sig, &default, std::ptr::null_mut());
            }
        }
        let ok = libc::syscall(libc::SYS_setpgid, 0 as c_long, 0 as c_long) == 0
            && (0..3).all(|n| {
                libc::syscall(
                    libc::SYS_dup3,
                    c_long::from(child.stdio[n]),
                    n as c_long,
                    0 as c_long,
                ) >= 0
            });
        if ok {
            sigprocmask(&0, std::ptr::null_mut());
            libc::syscall(
                libc::SYS_execve,
                child.path.as_ptr(),
                child.argv.as_ptr(),
                child.envp.as_ptr(),
            );
        }
        let errno = *libc::__errno_location();
        child.error.store(errno.max(1), Ordering::Release);
        libc::syscall(libc::SYS_exit_group, 127 as c_long);
        unreachable!("exit_group returned")
    }
}

/// `rt_sigaction` with the kernel's own structure.
unsafe fn set_action(sig: c_int, new: *const [usize; 4], old: *mut [usize; 4]) -> c_long {
    // SAFETY: the caller passes null or 32 bytes, more than the kernel's
    // sigaction on every architecture this module is built for.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            c_long::from(sig),
            new,
            old,
            SIGSET_BYTES,
        )
    }
}

/// `rt_sigprocmask(SIG_SETMASK)` of this thread, all 64 signals included.
unsafe fn sigprocmask(new: *const u64, old: *mut u64) -> c_long {
    // SAFETY: the caller passes a mask and null or room for one.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            c_long::from(libc::SIG_SETMASK),
            new,
            old,
            SIGSET_BYTES,
        )
    }
}

/// The kernel's signal set: 64 signals.
const SIGSET_BYTES: usize = 8;

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    use nix::sys::signal::Signal;

    use super::*;

    fn mask(status: &str, name: &str) -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).expect(name);
        u64::from_str_radix(line[name.len()..].trim(), 16).expect("hex")
    }

    /// Runs `cat /proc/self/stat /proc/self/status` one way; `None` when
    /// this kernel does not have it.
    fn cat_self(way: Way, resets: &Resets) -> Option<(i32, String)> {
        let cat = std::env::split_paths(&std::env::var_os("PATH").expect("PATH"))
            .map(|dir| dir.join("cat"))
            .find(|p| p.is_file())
            .expect("cat on PATH");
        let cat = CString::new(cat.into_os_string().into_encoded_bytes()).expect("path");
        let args = [c"cat", c"/proc/self/stat", c"/proc/self/status"];
        let argv: Vec<_> = args
            .iter()
            .map(|a| a.as_ptr())
            .chain([std::ptr::null()])
            .collect();
        let envp = [std::ptr::null()];
        let null = std::fs::File::open("/dev/null").expect("/dev/null");
        let (read, write) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe");
        let mut read = std::fs::File::from(read);
        let stdio = [null.as_raw_fd(), write.as_raw_fd(), write.as_raw_fd()];
        let pid = start(way, &cat, &argv, &envp, stdio, resets).expect("spawn")?;
        drop(write);
        let mut out = String::new();
        read.read_to_string(&mut out).expect("read");
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert_eq!(status, 0, "{out}");
        Some((pid, out))
    }

    #[test]
    fn every_way_starts_a_child_with_default_signals_in_its_own_group() {
        // Something ignored here besides SIGPIPE, which must stay ignored
        // in the child, as across any exec. SIGTTIN: no test reads a
        // terminal.
        // SAFETY: SIG_IGN installs no handler.
        unsafe { nix::sys::signal::signal(Signal::SIGTTIN, nix::sys::signal::SigHandler::SigIgn) }
            .expect("ignore SIGTTIN");
        let ours = crate::spawn::ignored_signals().expect("SigIgn");
        let mut only_sigpipe = SigSet::empty();
        only_sigpipe.add(Signal::SIGPIPE);
        let mut all_but_ignored = SigSet::all();
        for sig in Signal::iterator() {
            if ours & (1 << (sig as i32 - 1)) != 0 && sig != Signal::SIGPIPE {
                all_but_ignored.remove(sig);
            }
        }
        let ways = [
            (Way::Clone3, only_sigpipe),
            (Way::Clone, only_sigpipe),
            (Way::Clone, all_but_ignored),
        ];
        for (way, defaults) in ways {
            let Some((pid, out)) = cat_self(way, &defaults.into()) else {
                eprintln!("{way:?} is not available here");
                continue;
            };
            // Standard signals (1-31) only: `SigSet` cannot name real-time
            // ones, so `all_but_ignored` resets any ignored here, where the
            // launcher would leave them to the child to ask about.
            let sigpipe = 1 << (libc::SIGPIPE - 1);
            assert_eq!(
                mask(&out, "SigIgn:") & 0x7fff_ffff,
                ours & 0x7fff_ffff & !sigpipe,
                "{way:?} {out}"
            );
            assert_ne!(mask(&out, "SigIgn:") & (1 << (libc::SIGTTIN - 1)), 0);
            assert_eq!(mask(&out, "SigBlk:"), 0, "{way:?} {out}");
            let stat = out.lines().next().expect("stat");
            let fields: Vec<&str> = stat[stat.rfind(')').expect(")") + 2..].split(' ').collect();
            assert_eq!(fields[2], pid.to_string(), "{way:?}: leads its own group");
        }
    }

    #[test]
    fn every_way_reports_a_failed_exec_and_reaps_the_child() {
        let argv = [c"missing".as_ptr(), std::ptr::null()];
        let envp = [std::ptr::null()];
        let null = std::fs::File::open("/dev/null").expect("/dev/null");
        let fd = null.as_raw_fd();
        let resets = Resets::from(SigSet::empty());
        for way in [Way::Clone3, Way::Clone] {
            match start(way, c"/nonexistent/agent33", &argv, &envp, [fd; 3], &resets) {
                Ok(None) => continue,
                Ok(Some(pid)) => panic!("{way:?} started {pid}"),
                Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{way:?}"),
            }
        }
    }
}
