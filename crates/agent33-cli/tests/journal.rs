//! `--journal` and `--resume` through the real binary: a run SIGKILLed in
//! the middle resumes without redoing what the journal shows succeeded;
//! torn lines, changed commands and reordered input behave.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use agent33_testkit::{kill_by_marker, pids_with_marker, unique_marker, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_agent-33");
const BUDGET: Duration = Duration::from_secs(60);

/// Each task appends a line to `counts/<artifact>`, then sleeps a little so
/// that a kill lands while some are in flight. The marker lets the test find
/// and clean up anything the SIGKILL orphaned.
fn run(dir: &Path, list: &str, marker: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .args(["run", "-j", "4", "--output", "none", "-q"])
        .args(["--journal", "journal.jsonl", "--artifacts-from", list])
        .args(["--command"])
        .arg(format!(
            "sh -c 'echo x >> counts/$0; sleep 0.05' {{artifact}} {marker}"
        ))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

fn counts(dir: &Path) -> HashMap<String, usize> {
    fs::read_dir(dir.join("counts"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let n = fs::read_to_string(e.path()).unwrap().lines().count();
            (e.file_name().to_string_lossy().into_owned(), n)
        })
        .collect()
}

fn journaled_successes(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["status"] == "success")
        .map(|r| r["artifact"].as_str().unwrap().to_owned())
        .collect()
}

fn setup(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("counts")).unwrap();
    let list: String = (0..n).map(|i| format!("t{i:03}\n")).collect();
    fs::write(dir.path().join("list"), list).unwrap();
    dir
}

#[test]
fn a_run_killed_in_the_middle_resumes_without_redoing_journaled_successes() {
    let dir = setup(120);
    let marker = unique_marker("journal-kill");
    let mut child = run(dir.path(), "list", &marker, &[]).spawn().unwrap();
    // Kill once a fair share of the tasks is journaled, mid-run.
    assert!(
        wait_until(BUDGET, || journaled_successes(dir.path()).len() >= 20),
        "the run journals its successes"
    );
    child.kill().unwrap(); // SIGKILL: no cleanup, no summary.
    child.wait().unwrap();
    // The kill orphaned what was in flight; let it finish or clean it up.
    wait_until(Duration::from_secs(5), || {
        pids_with_marker(&marker).is_empty()
    });
    kill_by_marker(&marker);

    let done_before = journaled_successes(dir.path());
    assert!(done_before.len() < 120, "killed before the end");
    // Every task that had started by now (its line is written first thing).
    let started_before = counts(dir.path());

    let out = run(
        dir.path(),
        "list",
        &marker,
        &["--resume", "--report", "r.json"],
    )
    .output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let counts = counts(dir.path());
    assert_eq!(counts.len(), 120, "every task ran at least once");
    for artifact in &done_before {
        assert_eq!(
            counts[artifact], 1,
            "{artifact} was journaled as done, yet ran again"
        );
    }
    // Only a task that had started but was not yet journaled as a success
    // may run again: in flight at the kill, or finished with its record not
    // yet durable (the journal syncs in groups).
    for (artifact, n) in &counts {
        if *n > 1 {
            assert!(
                started_before.contains_key(artifact) && !done_before.contains(artifact),
                "{artifact} ran twice but had not started before the kill"
            );
            assert_eq!(*n, 2, "{artifact} ran {n} times");
        }
    }

    let report: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(report["total"], 120);
    let succeeded = report["succeeded"].as_array().unwrap();
    assert_eq!(succeeded.len(), 120);
    let resumed = succeeded.iter().filter(|t| t["resumed"] == true).count();
    assert_eq!(resumed, done_before.len());
    assert!(pids_with_marker(&marker).is_empty());
}

#[test]
fn a_torn_last_line_is_repaired_and_the_rest_resumed() {
    let dir = setup(5);
    let marker = unique_marker("journal-torn");
    let out = run(dir.path(), "list", &marker, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let journal = dir.path().join("journal.jsonl");
    let mut text = fs::read(&journal).unwrap();
    text.extend_from_slice(br#"{"id":"command:t999","fingerpr"#);
    fs::write(&journal, text).unwrap();

    let out = run(dir.path(), "list", &marker, &["--resume"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("torn line"), "{stderr}");
    assert!(
        counts(dir.path()).values().all(|&n| n == 1),
        "nothing ran twice"
    );
    assert!(
        fs::read(&journal).unwrap().ends_with(b"\n"),
        "the torn tail is gone"
    );
}

#[test]
fn a_changed_command_runs_again_and_reordered_or_extended_input_resumes() {
    let dir = setup(6);
    let marker = unique_marker("journal-change");
    assert_eq!(
        run(dir.path(), "list", &marker, &[])
            .output()
            .unwrap()
            .status
            .code(),
        Some(0)
    );

    // Reordered and extended: the six done are skipped, the new one runs.
    let list: String = (0..7).rev().map(|i| format!("t{i:03}\n")).collect();
    fs::write(dir.path().join("list2"), list).unwrap();
    let out = run(dir.path(), "list2", &marker, &["--resume"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let c = counts(dir.path());
    assert_eq!(c.len(), 7);
    assert!(c.values().all(|&n| n == 1), "{c:?}");

    // A different command is a different task: everything runs again.
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args(["run", "-j", "4", "--output", "none", "-q", "--resume"])
        .args([
            "--journal",
            "journal.jsonl",
            "--artifacts-from",
            "list2",
            "--command",
        ])
        .arg(format!("sh -c 'echo y >> counts/$0' {{artifact}} {marker}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(counts(dir.path()).values().all(|&n| n == 2));
}

#[test]
fn a_file_that_is_not_a_journal_is_refused_and_left_untouched() {
    let dir = setup(3);
    let marker = unique_marker("journal-refused");
    // A JSON report of an earlier run, and someone's notes.
    let out = run(dir.path(), "list", &marker, &["--report", "r.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    fs::remove_file(dir.path().join("journal.jsonl")).unwrap();
    fs::remove_dir_all(dir.path().join("counts")).unwrap();
    fs::create_dir(dir.path().join("counts")).unwrap();
    fs::write(dir.path().join("notes.txt"), "keep this\nand this, last").unwrap();

    for (file, resume) in [("notes.txt", false), ("r.json", false), ("r.json", true)] {
        let before = fs::read(dir.path().join(file)).unwrap();
        let out = Command::new(BIN)
            .current_dir(dir.path())
            .args(["run", "--journal", file, "--artifacts-from", "list"])
            .args(resume.then_some("--resume"))
            .args(["--command", "sh -c 'echo x >> counts/$0'"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {stderr}");
        assert!(stderr.starts_with("agent-33: error: "), "{stderr}");
        assert!(stderr.contains(file), "names the file: {stderr}");
        assert!(
            stderr.contains("not an agent-33 journal"),
            "says why: {stderr}"
        );
        assert_eq!(fs::read(dir.path().join(file)).unwrap(), before, "{file}");
        assert!(counts(dir.path()).is_empty(), "{file}: nothing ran");
    }
}
