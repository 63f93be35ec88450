//! The guard process `agent-33 run` starts (it kills the tasks' groups
//! should agent-33 be SIGKILLed) must not outlive a normal exit, not even
//! as a zombie: the children of an exiting process go to its nearest
//! subreaper ancestor, or init, and a subreaper that only waits for its own
//! children (a supervisor, a container's init, a CI runner) would keep a
//! zombie guard for every run.
//!
//! This test makes its own process that subreaper, so it is alone in its
//! binary: every orphan of any other test would be adopted too.

use std::process::{Command, Stdio};

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_agent-33");

/// The pids whose parent is this process, and their `stat` lines.
fn children() -> Vec<(i32, String)> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .expect("/proc is readable")
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // The command name may hold spaces and parentheses: the fields
            // (state, ppid, …) start after the last `)`.
            let fields = &stat[stat.rfind(')')? + 1..];
            let ppid = fields.split_whitespace().nth(1)?;
            (ppid == me).then(|| (pid, stat.trim_end().to_owned()))
        })
        .collect()
}

#[test]
fn a_normal_exit_leaves_no_zombie_guard_to_its_adopter() {
    agent33_process::become_subreaper().expect("this test needs Linux's child subreapers");
    assert_eq!(children(), [], "children before the run");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut cmd = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AGENT33_") {
            cmd.env_remove(name);
        }
    }
    let status = cmd
        .args(["run", "--command", "true", "a"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("agent-33 runs");
    assert_eq!(status.code(), Some(0));
    // agent-33's children were handed to us when it exited, before its exit
    // status was: whatever it left is here now, alive or a zombie.
    let left = children();
    for &(pid, _) in &left {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
        }
    }
    assert_eq!(left, [], "agent-33 left these to its adopter");
}
