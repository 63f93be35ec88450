//! Linux's own spawn: `clone(CLONE_VM | CLONE_VFORK)` into a child that
//! resets signals, joins a new process group, sets up stdio and calls
//! `execve`, with nothing else in between.
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
//! signal is blocked across the clone, and the child sets each signal that
//! may have a handler here to its default before it unblocks any, so no
//! handler of ours can run in it. This module is the workspace's only
//! unsafe code.
#![expect(
    unsafe_code,
    reason = "clone(2) with a shared address space has no safe wrapper"
)]

use std::cell::RefCell;
use std::ffi::{CStr, c_int, c_long, c_void};
use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

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
/// signal mask and the signals `resets` names at their default; returns its
/// pid.
///
/// Must be called with no other process reaping our children: a child that
/// fails before `execve` is reaped here.
///
/// # Errors
///
/// `clone`'s error, or the error of the child's step that failed (most
/// often `execve`'s: a missing program, no permission).
pub(crate) fn spawn(
    path: &CStr,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    stdio: [c_int; 3],
    resets: &Resets,
) -> io::Result<i32> {
    assert!(
        argv.last().is_some_and(|p| p.is_null()) && envp.last().is_some_and(|p| p.is_null()),
        "argv and envp end with NULL"
    );
    assert!(stdio.iter().all(|&fd| fd > 2), "stdio fds are above 2");
    let child = Child {
        path,
        argv,
        envp,
        stdio,
        defaults: &resets.numbers[..resets.set],
        ask: &resets.numbers[resets.ask..],
        error: AtomicI32::new(0),
    };
    let pid = CHILD_STACK.with_borrow_mut(|stack| {
        let top = stack.as_mut_ptr_range().end.cast::<c_void>();
        let mut old: u64 = 0;
        // SAFETY: the mask calls read and write the two u64 masks. The
        // child runs `child_main` on `stack`, which nothing else uses while
        // this thread is suspended in clone (CLONE_VFORK), and reads
        // `child`, which outlives the call.
        unsafe {
            // Raw, so that glibc's internal signals are blocked too.
            sigprocmask(&!0, &mut old);
            let pid = libc::clone(
                child_main,
                top,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                std::ptr::from_ref(&child).cast_mut().cast::<c_void>(),
            );
            let error = io::Error::last_os_error();
            sigprocmask(&old, std::ptr::null_mut());
            if pid < 0 { Err(error) } else { Ok(pid) }
        }
    })?;
    match child.error.load(Ordering::Acquire) {
        0 => Ok(pid),
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
