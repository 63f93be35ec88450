//! The spawn itself: a child that fails before `exec` is collected at once,
//! and signals sent to us while tasks start reach us, not the tasks.
//!
//! Alone in its test binary: it checks that this process has no child left
//! at all, which tests running beside it would make untrue.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agent33_parallel::TaskStatus;
use agent33_process::ProcessOptions;
use common::{agent, executor, run_many, run_one, unique_task};
use rustix::process::{Pid, Signal, WaitOptions};
use tokio::signal::unix::{SignalKind, signal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawns_that_fail_and_spawns_under_signals_leave_nothing_behind() {
    // Both in one test: the zombie check needs no other spawn running.
    children_that_cannot_exec_are_reaped_on_the_spot().await;
    signals_sent_to_us_during_spawns_are_ours().await;
    assert_no_children();
}

async fn children_that_cannot_exec_are_reaped_on_the_spot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("write");
    for program in [script.into_os_string(), "/nonexistent/agent33-prog".into()] {
        for _ in 0..20 {
            let result = run_one(
                agent(vec![program.clone()], ProcessOptions::default()),
                unique_task(),
                executor(),
            )
            .await;
            assert_eq!(result.status, TaskStatus::Failed, "{result:?}");
            assert!(
                result
                    .error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("cannot start")),
                "{result:?}"
            );
        }
    }
    // Without the reap in the spawn, each failed child would be a zombie
    // here: nothing else in a library run waits for it.
    assert_no_children();
}

/// Every signal is blocked in the spawning thread while a child shares our
/// memory; a signal sent to us meanwhile must still be delivered (to us,
/// once unblocked) and the tasks must run as usual.
async fn signals_sent_to_us_during_spawns_are_ours() {
    let mut usr1 = signal(SignalKind::user_defined1()).expect("SIGUSR1 handler");
    let stop = Arc::new(AtomicBool::new(false));
    let sender = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || {
            let me = Pid::from_raw(i32::try_from(std::process::id()).expect("pid")).expect("pid");
            while !stop.load(Ordering::Relaxed) {
                rustix::process::kill_process(me, Signal::USR1).expect("kill");
                std::thread::yield_now();
            }
        }
    });
    let sh = vec!["/bin/sh".into(), "-c".into(), "exit 0".into()];
    let results = run_many(agent(sh, ProcessOptions::default()), 300, 8).await;
    stop.store(true, Ordering::Relaxed);
    sender.join().expect("sender");
    assert_eq!(results.succeeded.len(), 300, "{:?}", results.failed);
    // Hundreds were sent while tasks started: at least one reached us.
    tokio::time::timeout(common::BUDGET, usr1.recv())
        .await
        .expect("SIGUSR1 arrives")
        .expect("stream open");
    // And no thread was left with its signals blocked. SIGUSR1 itself may
    // be: the kernel blocks a signal in a thread while it runs its handler,
    // and the last ones sent can still be in it.
    let usr1_bit = 1u64 << (SignalKind::user_defined1().as_raw_value() - 1);
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let status = std::fs::read_to_string(task.expect("entry").path().join("status"))
            .expect("thread status");
        let blocked = status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .expect("SigBlk");
        let blocked = u64::from_str_radix(blocked.trim(), 16).expect("hex");
        assert_eq!(blocked & !usr1_bit, 0, "{status}");
    }
}

fn assert_no_children() {
    // Any child, whatever its group (`waitpid(None)` is our group only).
    match rustix::process::wait(WaitOptions::NOHANG) {
        Err(rustix::io::Errno::CHILD) => {}
        other => panic!("a child is left: {other:?}"),
    }
}
