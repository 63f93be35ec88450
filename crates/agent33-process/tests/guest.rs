//! A guest subreaper (`become_guest_subreaper`): escaped processes are
//! still killed, but children that other code of the process starts and
//! waits for keep their exit statuses. Its own test binary, since the mode
//! is process-wide.

mod common;

use agent33_parallel::TaskStatus;
use agent33_process::{become_guest_subreaper, reap_orphans};
use agent33_testkit::{Fixture, MarkerGuard, wait_until_async};
use common::{BUDGET, executor, run_fixture};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escapees_are_killed_and_other_children_keep_their_exit_status() {
    become_guest_subreaper().expect("prctl");
    // A child of "other code": exited, a zombie while the sweep runs.
    let mut other = std::process::Command::new("sh")
        .args(["-c", "exit 7"])
        .spawn()
        .expect("sh starts");
    let pid = other.id();
    let exited = wait_until_async(BUDGET, || {
        agent33_testkit::proc_state(pid).is_none_or(|s| s == 'Z')
    })
    .await;
    assert!(exited, "the other child never exited");

    let guard = MarkerGuard::new("guest-escapee");
    let result = run_fixture(
        Fixture::new().marker(guard.marker()).daemonize(),
        executor(),
    )
    .await;
    assert_eq!(result.status, TaskStatus::Success, "{result:?}");
    assert_eq!(result.notes, vec!["1 escaped process killed".to_owned()]);
    assert!(guard.pids().is_empty(), "survivors: {:?}", guard.pids());

    // Orphan reaping cannot tell it from a task's orphan: it reaps nothing.
    assert_eq!(reap_orphans(), 0);
    let status = other.wait().expect("still ours to wait for");
    assert_eq!(status.code(), Some(7));
}
