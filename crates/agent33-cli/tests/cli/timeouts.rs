//! PRODUCT.md, Timeouts and cancellation, and Retries.

use std::time::Duration;

use crate::support::{Sandbox, assert_never_started, script_manifest};

const SLEEP_30: &str = "sh -c 'exec sleep 30' sh";

#[test]
fn a_task_past_its_timeout_is_stopped_with_status_timeout() {
    let sb = Sandbox::new();
    let out = sb
        .run([
            "--command",
            SLEEP_30,
            "--timeout",
            "0.5",
            "--report",
            "r.json",
            "x",
        ])
        .output();
    out.code_is(1);
    assert!(out.elapsed < Duration::from_secs(20), "{:?}", out.elapsed);
    let r = sb.report("r.json");
    // Timed-out tasks are listed in `failed`, with status `timeout`.
    assert_eq!(r.ids("failed"), ["command:x"]);
    let t = r.task("command:x");
    assert_eq!(t["status"], "timeout");
    let error = t["error"].as_str().expect("a reason");
    assert!(error.contains("timed out after 0.5s"), "{error}");
    assert!(t["exit_code"].is_null(), "killed by a signal: {t:#}");
    assert!(t["duration_ms"].as_u64().expect("ms") >= 500, "{t:#}");
    assert_eq!(r.counter("tasks_timeout"), 1);
    assert_eq!(r.counter("tasks_failed"), 0);
    assert!(out.stderr.contains("0 failed, 1 timeout"), "{}", out.stderr);
}

#[test]
fn the_timeout_counts_from_the_start_not_from_queueing() {
    let sb = Sandbox::new();
    // Three 0.4 s tasks one at a time take 1.2 s, more than the 1 s limit,
    // yet none of them runs for 1 s.
    let out = sb
        .run([
            "-j",
            "1",
            "--timeout",
            "1",
            "--command",
            "sh -c 'sleep 0.4' sh",
            "--report",
            "r.json",
            "a",
            "b",
            "c",
        ])
        .output();
    out.code_is(0);
    let r = sb.report("r.json");
    assert_eq!(r.ids("succeeded"), ["command:a", "command:b", "command:c"]);
    assert!(
        r.0["duration_ms"].as_u64().expect("ms") >= 1200,
        "{:#}",
        r.0
    );
}

#[test]
fn a_timed_out_task_keeps_its_output_and_its_own_exit_code() {
    let sb = Sandbox::new();
    // The script catches SIGTERM and exits 143 by itself.
    let out = sb
        .run([
            "--command",
            "sh -c 'trap \"exit 143\" TERM; echo before; echo err >&2; sleep 30 & wait' sh",
            // Generous: the trap must be set before the timeout fires.
            "--timeout",
            "1",
            "--report",
            "r.json",
            "x",
        ])
        .output();
    out.code_is(1);
    let r = sb.report("r.json");
    let t = r.task("command:x");
    assert_eq!(t["status"], "timeout");
    assert_eq!(t["exit_code"], 143, "{t:#}");
    assert_eq!(t["output"], "before\n");
    assert_eq!(t["stderr"], "err\n");
    assert!(r.error("command:x").contains("timed out after 1s"));
}

#[test]
fn a_task_ignoring_sigterm_is_killed_after_the_grace() {
    let sb = Sandbox::new();
    let out = sb
        .run([
            "--command",
            "sh -c 'trap \"\" TERM; while :; do sleep 0.05; done' sh",
            // Generous: the trap must be set before the timeout fires.
            "--timeout",
            "1",
            "--kill-grace",
            "0.3",
            "--report",
            "r.json",
            "x",
        ])
        .output();
    out.code_is(1);
    assert!(
        out.elapsed >= Duration::from_millis(1300),
        "{:?}",
        out.elapsed
    );
    assert!(out.elapsed < Duration::from_secs(20), "{:?}", out.elapsed);
    let r = sb.report("r.json");
    assert_eq!(r.status("command:x"), "timeout");
    assert!(r.task("command:x")["exit_code"].is_null());
    let error = r.error("command:x");
    assert!(error.contains("timed out after 1s"), "{error}");
}

#[test]
fn a_task_timeout_beats_its_agents_which_beats_the_global_one() {
    let sb = Sandbox::new();
    sb.write(
        "agent33.yaml",
        r#"
execution: {timeout_seconds: 60, continue_on_error: true}
agents:
  slow:
    command: ["sh", "-c", "exec sleep 30"]
    timeout_seconds: 0.4
tasks:
  - {agent: slow, artifact: own, timeout_seconds: 0.2}
  - {agent: slow, artifact: agents}
"#,
    );
    let out = sb.run(["-j", "2", "--report", "r.json"]).output();
    out.code_is(1);
    let r = sb.report("r.json");
    assert!(r.error("slow:own").contains("timed out after 0.2s"));
    assert!(r.error("slow:agents").contains("timed out after 0.4s"));
}

#[test]
fn the_run_deadline_cancels_in_flight_and_pending_tasks_even_without_fail_fast() {
    let sb = Sandbox::new();
    let out = sb
        .run([
            "-j",
            "2",
            "--no-fail-fast",
            "--deadline",
            "0.5",
            "--command",
            SLEEP_30,
            "--report",
            "r.json",
            "a",
            "b",
            "c",
        ])
        .output();
    out.code_is(1);
    assert!(out.elapsed < Duration::from_secs(20), "{:?}", out.elapsed);
    let r = sb.report("r.json");
    assert_eq!(r.ids("cancelled"), ["command:a", "command:b", "command:c"]);
    for id in ["command:a", "command:b"] {
        let e = r.error(id);
        assert!(
            e.starts_with("cancelled: ") && e.contains("deadline"),
            "{e}"
        );
        assert_eq!(r.task(id)["attempts"], 1);
    }
    let e = r.error("command:c");
    assert!(
        e.starts_with("not started: ") && e.contains("deadline"),
        "{e}"
    );
    assert_never_started(r.task("command:c"));
}

#[test]
fn a_retry_that_succeeds_makes_a_success_with_two_attempts() {
    let sb = Sandbox::new();
    let out = sb
        .run([
            "--retries",
            "1",
            "--retry-backoff",
            "0",
            "--command",
            "sh -c 'echo \"attempt $AGENT33_ATTEMPT\"; [ \"$AGENT33_ATTEMPT\" -ge 2 ]' sh",
            "--report",
            "r.json",
            "x",
            "y",
        ])
        .output();
    // Only the last attempt counts: the failed first attempt of x does not
    // stop the run, so y runs.
    out.code_is(0);
    let r = sb.report("r.json");
    assert_eq!(r.ids("succeeded"), ["command:x", "command:y"]);
    let t = r.task("command:x");
    assert_eq!(t["status"], "success");
    assert_eq!(t["attempts"], 2);
    // The output is the last attempt's.
    assert_eq!(t["output"], "attempt 2\n");
    assert_eq!(r.counter("task_retry_count"), 2);
}

#[test]
fn retries_wait_the_backoff_doubling_and_only_the_last_attempt_counts() {
    let sb = Sandbox::new();
    let out = sb
        .run([
            "--retries",
            "2",
            "--retry-backoff",
            "0.2",
            "--command",
            "sh -c 'echo $AGENT33_ATTEMPT >> attempts.log; exit 1' sh",
            "--report",
            "r.json",
            "x",
        ])
        .output();
    out.code_is(1);
    // 0.2 s, then 0.4 s.
    assert!(
        out.elapsed >= Duration::from_millis(600),
        "{:?}",
        out.elapsed
    );
    assert_eq!(sb.read("attempts.log"), "1\n2\n3\n");
    let r = sb.report("r.json");
    let t = r.task("command:x");
    assert_eq!(t["status"], "failed");
    assert_eq!(t["attempts"], 3);
    assert_eq!(t["error"], "exit code 1");
    assert_eq!(r.counter("task_retry_count"), 2);
    assert_eq!(r.counter("tasks_failed"), 1);
}

#[test]
fn a_timed_out_attempt_is_retried() {
    let sb = Sandbox::new();
    let out = sb
        .run([
            "--retries",
            "1",
            "--retry-backoff",
            "0",
            "--timeout",
            "0.3",
            "--command",
            "sh -c 'if [ \"$AGENT33_ATTEMPT\" = 1 ]; then exec sleep 30; fi' sh",
            "--report",
            "r.json",
            "x",
        ])
        .output();
    out.code_is(0);
    let r = sb.report("r.json");
    assert_eq!(r.status("command:x"), "success");
    assert_eq!(r.task("command:x")["attempts"], 2);
}

#[test]
fn retries_of_a_task_beat_its_agents_which_beat_the_global_value() {
    let sb = Sandbox::new();
    sb.write(
        "agent33.yaml",
        r#"
agents:
  a: {command: "sh -c 'exit 1'", retries: 1}
  b: {command: "sh -c 'exit 1'"}
tasks:
  - {agent: a, artifact: own, retries: 0}
  - {agent: a, artifact: agents}
  - {agent: b, artifact: global}
"#,
    );
    let out = sb
        .run([
            "--retries",
            "2",
            "--retry-backoff",
            "0",
            "--continue-on-error",
            "--report",
            "r.json",
        ])
        .output();
    out.code_is(1);
    let r = sb.report("r.json");
    assert_eq!(r.task("a:own")["attempts"], 1);
    assert_eq!(r.task("a:agents")["attempts"], 2);
    assert_eq!(r.task("b:global")["attempts"], 3);
    // The environment sets the global value too.
    let out = sb
        .run([
            "--retry-backoff",
            "0",
            "--continue-on-error",
            "--report",
            "r2.json",
        ])
        .env("AGENT33_RETRIES", "1")
        .output();
    out.code_is(1);
    let r = sb.report("r2.json");
    assert_eq!(r.task("b:global")["attempts"], 2);
    assert_eq!(r.task("a:own")["attempts"], 1);
}

#[test]
fn a_command_that_cannot_start_fails_and_is_retried() {
    let sb = Sandbox::new();
    let out = sb
        .run([
            "--retries",
            "1",
            "--retry-backoff",
            "0",
            "--command",
            "./no-such-program",
            "--report",
            "r.json",
            "x",
        ])
        .output();
    out.code_is(1);
    let r = sb.report("r.json");
    let t = r.task("command:x");
    assert_eq!(t["status"], "failed");
    assert_eq!(t["attempts"], 2);
    assert!(t["exit_code"].is_null());
    assert!(t["started_at"].is_string(), "{t:#}");
    let e = r.error("command:x");
    assert!(e.contains("no-such-program"), "{e}");
}

#[test]
fn a_stop_during_a_backoff_abandons_the_retry() {
    let sb = Sandbox::new();
    // `retrying` fails at once and waits out a long backoff; `fail` (no
    // retries of its own) fails when the test, having seen the retry
    // announced, creates `go`.
    sb.write(
        "agent33.yaml",
        r#"
execution: {parallel: true, retries: 1, retry_backoff_seconds: 30}
agents:
  t:
    shell: true
    command: |
      case "$1" in
        retrying) exit 5 ;;
        fail) until [ -e go ]; do sleep 0.01; done; exit 3 ;;
      esac
tasks:
  - {agent: t, artifact: retrying}
  - {agent: t, artifact: fail, retries: 0}
"#,
    );
    let mut run = sb.run(["--report", "r.json"]).spawn();
    run.wait_for_stderr("retrying: t:retrying");
    sb.write("go", "");
    let out = run.finish();
    out.code_is(1);
    assert!(out.elapsed < Duration::from_secs(20), "{:?}", out.elapsed);
    let r = sb.report("r.json");
    let t = r.task("t:retrying");
    // Its last attempt's status, the error noting the abandoned retry.
    assert_eq!(t["status"], "failed", "{t:#}");
    assert_eq!(t["attempts"], 1);
    let e = r.error("t:retrying");
    assert!(
        e.starts_with("exit code 5") && e.contains("retry abandoned"),
        "{e}"
    );
}

#[test]
fn a_task_waiting_out_its_backoff_gives_its_slot_back() {
    let sb = Sandbox::new();
    // One slot. `retrying` fails and waits 30 s before its retry; `next`
    // can only start in that time if the slot was given back. It fails,
    // which stops the run and abandons the retry.
    sb.write(
        "agent33.yaml",
        r#"
execution: {retry_backoff_seconds: 30}
agents:
  t:
    shell: true
    command: 'exit 5'
tasks:
  - {agent: t, artifact: retrying, retries: 1}
  - {agent: t, artifact: next}
"#,
    );
    let out = sb.run(["-j", "1", "--report", "r.json"]).output();
    out.code_is(1);
    assert!(out.elapsed < Duration::from_secs(20), "{:?}", out.elapsed);
    let r = sb.report("r.json");
    assert_eq!(r.task("t:next")["attempts"], 1);
    assert_eq!(r.task("t:retrying")["attempts"], 1);
    assert!(r.error("t:retrying").contains("retry abandoned"));
}

#[test]
fn a_cancelled_attempt_is_not_retried() {
    let sb = Sandbox::new();
    sb.manifest(&script_manifest(
        "",
        r#"case "$1" in
  hang) echo "$AGENT33_ATTEMPT" >> attempts.log; touch logged; exec sleep 30 ;;
  fail) wait_for logged; exit 3 ;;
esac"#,
        &["{agent: t, artifact: hang, retries: 3}", "fail"],
    ));
    let out = sb
        .run(["-j", "2", "--retry-backoff", "0", "--report", "r.json"])
        .output();
    out.code_is(1);
    let r = sb.report("r.json");
    assert_eq!(r.status("t:hang"), "cancelled");
    assert_eq!(r.task("t:hang")["attempts"], 1);
    assert_eq!(sb.read("attempts.log"), "1\n");
}

/// PRODUCT.md: escaped descendants that agent-33 had to kill are said on
/// the console, not only in the report. The task starts a `sleep` in a
/// session of its own and waits until it is there (its pid file is written
/// after `setsid`), so the escapee is outside the task's group when the
/// task ends.
#[test]
fn an_escaped_process_that_was_killed_is_said_on_stderr() {
    let sb = Sandbox::new();
    sb.write(
        "escape.sh",
        r#"setsid sh -c 'echo $$ > escapee.pid; exec sleep 600' &
until [ -s escapee.pid ]; do sleep 0.01; done
"#,
    );
    let out = sb
        .run(["--command", "sh escape.sh", "--report", "r.json", "x"])
        .output();
    out.code_is(0);
    let r = sb.report("r.json");
    assert_eq!(
        r.task("command:x")["notes"],
        serde_json::json!(["1 escaped process killed"])
    );
    assert!(
        out.stderr
            .lines()
            .any(|l| l == "killed 1 escaped process of command:x"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout().contains("escaped"), "stderr only");
}
