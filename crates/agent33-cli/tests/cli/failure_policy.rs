//! PRODUCT.md, Failure policy: every row of the table, through real
//! commands, checked in the `--report` JSON.

use std::time::Duration;

use crate::support::{Sandbox, assert_never_started, script_manifest};

/// A run that ends this fast did not wait for `sleep 30`.
const NOT_WAITING_FOR_SLEEP: Duration = Duration::from_secs(20);

#[test]
fn continue_on_error_runs_every_task_and_exits_1() {
    let sb = Sandbox::new();
    sb.manifest(&script_manifest(
        "",
        r#"case "$1" in fail*) exit 3 ;; esac"#,
        &["fail1", "ok1", "fail2", "ok2"],
    ));
    let out = sb
        .run(["--continue-on-error", "--report", "r.json"])
        .output();
    out.code_is(1);
    for name in ["fail1", "ok1", "fail2", "ok2"] {
        assert!(sb.exists(format!("ran.{name}")), "{name} ran");
    }
    let r = sb.report("r.json");
    assert_eq!(r.total(), 4);
    assert_eq!(r.ids("succeeded"), ["t:ok1", "t:ok2"]);
    assert_eq!(r.ids("failed"), ["t:fail1", "t:fail2"]);
    assert!(r.list("cancelled").is_empty() && r.list("skipped").is_empty());
    assert_eq!(r.error("t:fail1"), "exit code 3");
    assert_eq!(r.task("t:fail2")["exit_code"], 3);
    assert!(r.task("t:ok1")["error"].is_null());
}

#[test]
fn continue_on_error_wins_over_fail_fast_in_parallel_too() {
    let sb = Sandbox::new();
    sb.manifest(&script_manifest(
        "continue_on_error: true\nfail_fast: true",
        r#"case "$1" in fail*) exit 3 ;; esac"#,
        &["fail1", "ok1", "fail2", "ok2", "ok3"],
    ));
    let out = sb
        .run(["-j", "2", "--fail-fast", "--report", "r.json"])
        .output();
    out.code_is(1);
    let r = sb.report("r.json");
    assert_eq!(r.ids("succeeded"), ["t:ok1", "t:ok2", "t:ok3"]);
    assert_eq!(r.ids("failed"), ["t:fail1", "t:fail2"]);
    assert!(r.list("cancelled").is_empty());
}

#[test]
fn fail_fast_cancels_in_flight_tasks_and_never_starts_pending_ones() {
    let sb = Sandbox::new();
    // `fail` fails only once `hang` is surely running (and has printed).
    sb.manifest(&script_manifest(
        "",
        r#"case "$1" in
  hang) echo partial; touch printed; exec sleep 30 ;;
  fail) wait_for printed; exit 3 ;;
esac"#,
        &["hang", "fail", "pending1", "pending2"],
    ));
    let out = sb.run(["-j", "2", "--report", "r.json"]).output();
    out.code_is(1);
    assert!(
        out.elapsed < NOT_WAITING_FOR_SLEEP,
        "the in-flight task was cancelled, not awaited: {:?}",
        out.elapsed
    );
    let r = sb.report("r.json");
    assert_eq!(r.total(), 4);
    assert_eq!(r.ids("failed"), ["t:fail"]);
    assert_eq!(r.ids("cancelled"), ["t:hang", "t:pending1", "t:pending2"]);
    let hang = r.task("t:hang");
    assert_eq!(hang["status"], "cancelled");
    let reason = hang["error"].as_str().expect("a reason");
    assert!(
        reason.starts_with("cancelled: fail-fast after t:fail failed"),
        "{reason}"
    );
    assert_eq!(hang["attempts"], 1);
    assert!(hang["started_at"].is_string() && hang["finished_at"].is_string());
    // A cancelled task keeps what it printed before it was stopped.
    assert_eq!(hang["output"], "partial\n");
    for pending in ["pending1", "pending2"] {
        let id = format!("t:{pending}");
        assert_eq!(r.status(&id), "cancelled");
        assert_eq!(r.error(&id), "not started: fail-fast after t:fail failed");
        assert_never_started(r.task(&id));
        assert!(
            !sb.exists(format!("ran.{pending}")),
            "{pending} never started"
        );
    }
    assert_eq!(r.counter("tasks_cancelled"), 3);
    assert_eq!(r.counter("tasks_failed"), 1);
}

#[test]
fn without_fail_fast_in_flight_tasks_drain_and_keep_their_real_status() {
    let sb = Sandbox::new();
    // Both drain tasks are running when `fail` fails; they end only when
    // the test, having seen the stop, creates `release`.
    sb.manifest(&script_manifest(
        "",
        r#"case "$1" in
  drain-ok) wait_for release ;;
  drain-bad) wait_for release; exit 4 ;;
  fail) wait_for ran.drain-ok; wait_for ran.drain-bad; exit 3 ;;
esac"#,
        &["drain-ok", "drain-bad", "fail", "later"],
    ));
    let mut run = sb
        .run(["-j", "3", "--no-fail-fast", "--report", "r.json"])
        .spawn();
    run.wait_for_stderr("stopped starting tasks after t:fail failed");
    assert!(!run.has_exited(), "the run waits for its in-flight tasks");
    sb.write("release", "");
    let out = run.finish();
    out.code_is(1);
    let r = sb.report("r.json");
    assert_eq!(r.ids("succeeded"), ["t:drain-ok"]);
    assert_eq!(r.ids("failed"), ["t:drain-bad", "t:fail"]);
    assert_eq!(r.ids("cancelled"), ["t:later"]);
    let ok = r.task("t:drain-ok");
    assert!(ok["error"].is_null() && ok["exit_code"] == 0 && ok["attempts"] == 1);
    let bad = r.task("t:drain-bad");
    assert_eq!(bad["status"], "failed");
    assert_eq!(bad["error"], "exit code 4");
    assert_eq!(bad["exit_code"], 4);
    assert_eq!(
        r.error("t:later"),
        "not started: stopped starting tasks after t:fail failed"
    );
    assert_never_started(r.task("t:later"));
    assert!(!sb.exists("ran.later"));
}

#[test]
fn max_failures_stops_at_the_nth_failure() {
    let sb = Sandbox::new();
    sb.manifest(&script_manifest(
        "",
        r#"case "$1" in fail*) exit 3 ;; esac"#,
        &["fail1", "ok1", "fail2", "ok2", "fail3"],
    ));
    let out = sb
        .run(["--max-failures", "2", "--report", "r.json"])
        .output();
    out.code_is(1);
    let r = sb.report("r.json");
    assert_eq!(r.ids("succeeded"), ["t:ok1"]);
    assert_eq!(r.ids("failed"), ["t:fail1", "t:fail2"]);
    assert_eq!(r.ids("cancelled"), ["t:ok2", "t:fail3"]);
    for id in ["t:ok2", "t:fail3"] {
        assert_eq!(r.error(id), "not started: max failures (2) reached");
        assert_never_started(r.task(id));
    }
    assert!(!sb.exists("ran.ok2") && !sb.exists("ran.fail3"));
}

#[test]
fn max_failures_from_the_manifest_and_the_environment() {
    for (execution, env) in [("max_failures: 2", None), ("", Some("2"))] {
        let sb = Sandbox::new();
        sb.manifest(&script_manifest(
            execution,
            r#"case "$1" in fail*) exit 3 ;; esac"#,
            &["fail1", "ok1", "fail2", "ok2"],
        ));
        let mut cmd = sb.run(["--report", "r.json"]);
        if let Some(v) = env {
            cmd = cmd.env("AGENT33_MAX_FAILURES", v);
        }
        cmd.output().code_is(1);
        let r = sb.report("r.json");
        assert_eq!(
            r.ids("failed"),
            ["t:fail1", "t:fail2"],
            "{execution} {env:?}"
        );
        assert_eq!(r.ids("cancelled"), ["t:ok2"], "{execution} {env:?}");
    }
}

#[test]
fn a_timeout_is_a_failure_for_the_stop_trigger() {
    let sb = Sandbox::new();
    sb.manifest(&script_manifest(
        "",
        r#"case "$1" in slow) exec sleep 30 ;; esac"#,
        &["{agent: t, artifact: slow, timeout_seconds: 0.2}", "after"],
    ));
    let out = sb.run(["--report", "r.json"]).output();
    out.code_is(1);
    let r = sb.report("r.json");
    assert_eq!(r.status("t:slow"), "timeout");
    assert_eq!(r.ids("failed"), ["t:slow"]);
    assert_eq!(
        r.error("t:after"),
        "not started: fail-fast after t:slow timed out"
    );
}

#[test]
fn a_task_that_fails_on_its_own_during_a_fail_fast_stop_keeps_its_failure() {
    // Two tasks end at about the same moment: the first to fail stops the
    // run, and the other had often exited already, or was exiting, when
    // the stop's SIGTERM came. Whoever came first wins: a process that
    // exited with its code is `failed` with it, never `cancelled` with it.
    // A race, so run it again and again.
    for round in 0..25 {
        let sb = Sandbox::new();
        let out = sb
            .run([
                "-j",
                "2",
                "--report",
                "r.json",
                "--junit",
                "j.xml",
                "--command",
                "sh -c 'sleep 0.05; exit 7'",
                "a",
                "b",
            ])
            .output();
        out.code_is(1);
        let r = sb.report("r.json");
        for task in r.all() {
            let (status, code) = (&task["status"], &task["exit_code"]);
            match status.as_str() {
                Some("failed") => assert_eq!(code, 7, "round {round}: {task}"),
                Some("cancelled") => assert!(code.is_null(), "round {round}: {task}"),
                _ => panic!("round {round}: {task}"),
            }
        }
        let failed = r.list("failed").len();
        assert!(failed >= 1, "round {round}");
        let junit = sb.read("j.xml");
        assert_eq!(
            junit.matches("<failure").count(),
            failed,
            "round {round}: {junit}"
        );
    }
}
