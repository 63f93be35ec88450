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
use std::ffi::{CStr, c_int, c_void};
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

/// Starts `path` with `argv` and `envp` (both NULL-terminated) in a process
/// group of its own, `stdio` as its fds 0 to 2 (all above 2), an empty
/// signal mask and the signals of `defaults` at their default; returns its
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
    defaults: &SigSet,
) -> io::Result<i32> {
    assert!(
        argv.last().is_some_and(|p| p.is_null()) && envp.last().is_some_and(|p| p.is_null()),
        "argv and envp end with NULL"
    );
    assert!(stdio.iter().all(|&fd| fd > 2), "stdio fds are above 2");
    // Set, from the front; asked about, from the back.
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
    let child = Child {
        path,
        argv,
        envp,
        stdio,
        defaults: &numbers[..set],
        ask: &numbers[ask..],
        error: AtomicI32::new(0),
    };
    let pid = CHILD_STACK.with_borrow_mut(|stack| {
        let top = stack.as_mut_ptr_range().end.cast::<c_void>();
        let mut all = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        let mut old = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigfillset initialises `all`; pthread_sigmask only reads
        // `all` and writes `old`. The child runs `child_main` on `stack`,
        // which nothing else uses while this thread is suspended in clone
        // (CLONE_VFORK), and reads `child`, which outlives the call.
        unsafe {
            libc::sigfillset(all.as_mut_ptr());
            libc::pthread_sigmask(libc::SIG_SETMASK, all.as_ptr(), old.as_mut_ptr());
            let pid = libc::clone(
                child_main,
                top,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                std::ptr::from_ref(&child).cast_mut().cast::<c_void>(),
            );
            let error = io::Error::last_os_error();
            libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), std::ptr::null_mut());
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

/// The child, in our address space until `execve` replaces it.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Child` that `spawn` keeps alive across clone.
    let child = unsafe { &*arg.cast::<Child<'_>>() };
    // SAFETY: plain system call wrappers on data prepared by the parent; a
    // zeroed sigaction is SIG_DFL with no flags and an empty mask.
    unsafe {
        let default: libc::sigaction = std::mem::zeroed();
        // glibc refuses to touch its own internal signals: they stay as
        // they are, which is what it does in `posix_spawn` too.
        for &sig in child.defaults {
            libc::sigaction(sig, &default, std::ptr::null_mut());
        }
        for &sig in child.ask {
            let mut now: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut now) == 0
                && now.sa_sigaction != libc::SIG_DFL
                && now.sa_sigaction != libc::SIG_IGN
            {
                libc::sigaction(sig, &default, std::ptr::null_mut());
            }
        }
        let ok = libc::setpgid(0, 0) == 0
            && libc::dup2(child.stdio[0], 0) == 0
            && libc::dup2(child.stdio[1], 1) == 1
            && libc::dup2(child.stdio[2], 2) == 2;
        if ok {
            let mut none = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(none.as_mut_ptr());
            libc::pthread_sigmask(libc::SIG_SETMASK, none.as_ptr(), std::ptr::null_mut());
            libc::execve(
                child.path.as_ptr(),
                child.argv.as_ptr(),
                child.envp.as_ptr(),
            );
        }
        let errno = *libc::__errno_location();
        child.error.store(errno.max(1), Ordering::Release);
        libc::_exit(127)
    }
}
