//! Runs across machines (PRODUCT-distributed.md) with a real `nats-server`
//! and real worker processes of the built binary: the same results as a
//! local run, and the faults (a worker killed, paused past its lease,
//! drained; the server restarted; no server; a manifest refused).
//!
//! One test at a time (a lock): each owns a server and several processes.
//! Tasks are small `sh` scripts that append to a ledger file; they learn
//! which worker runs them from `A33_TEST_WORKER`.

mod auth;
mod llm;
mod support;

use std::time::{Duration, Instant};

use rustix::process::Signal;
use serde_json::Value;
use support::{
    HANG, Sandbox, Server, Worker, alive, lines_with, run, serial, spawn_run, wait_for, wait_output,
};

/// Takes the lock and starts a server, or skips (outside CI) without one.
macro_rules! server {
    ($lock:ident, $server:ident) => {
        let $lock = serial();
        let Some($server) = Server::start() else {
            return;
        };
    };
}

fn code(output: &std::process::Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every task result of a report, in input order of ids.
fn tasks(report: &Value) -> Vec<Value> {
    let mut all: Vec<Value> = ["succeeded", "failed", "cancelled", "skipped"]
        .iter()
        .flat_map(|k| report[k].as_array().cloned().unwrap_or_default())
        .collect();
    all.sort_by_key(|t| t["task"]["id"].as_str().unwrap_or_default().to_owned());
    all
}

fn task(report: &Value, id: &str) -> Value {
    tasks(report)
        .into_iter()
        .find(|t| t["task"]["id"] == id)
        .unwrap_or_else(|| panic!("no task {id} in {report}"))
}

/// A task's result without what may differ between a local and a
/// distributed run: times and the worker.
fn comparable(task: &Value) -> Value {
    let mut task = task.clone();
    let fields = task.as_object_mut().expect("a task is an object");
    for volatile in ["duration_ms", "started_at", "finished_at", "worker"] {
        fields.remove(volatile);
    }
    task
}

/// JUnit XML with its times and timestamps blanked and its worker
/// properties (only a distributed run has them) removed.
fn junit_without_times(xml: &str) -> String {
    let kept: Vec<&str> = xml
        .lines()
        .filter(|line| {
            let line = line.trim();
            // No other test case here has properties: their list goes too.
            !(line.starts_with("<property name=\"worker\"")
                || line == "<properties>"
                || line == "</properties>")
        })
        .collect();
    // A test case left empty is written as an empty element.
    let mut lines: Vec<String> = Vec::new();
    for line in kept {
        if line.trim() == "</testcase>"
            && let Some(open) = lines.last_mut()
            && open.trim_start().starts_with("<testcase ")
            && open.ends_with('>')
            && !open.ends_with("/>")
        {
            open.pop();
            open.push_str("/>");
            continue;
        }
        lines.push(line.to_owned());
    }
    let xml = lines.join("\n");
    let xml = xml.as_str();
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(at) = rest.find('t') {
        let (head, tail) = rest.split_at(at);
        out.push_str(head);
        let attr = ["time=\"", "timestamp=\""]
            .into_iter()
            .find(|a| tail.starts_with(a));
        match attr {
            Some(attr) => {
                out.push_str(attr);
                let value = &tail[attr.len()..];
                let end = value.find('"').expect("a closed attribute");
                out.push('"');
                rest = &value[end + 1..];
            }
            None => {
                out.push('t');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

const SAME_AS_LOCAL: &str = r#"
execution:
  mode: dependency-aware
  parallel_limit: 4
  continue_on_error: true
agents:
  ok:
    shell: true
    command: 'echo "out $1"; echo "err $1" >&2'
  bad:
    shell: true
    command: 'echo "bad $1"; exit 3'
  slow:
    shell: true
    timeout_seconds: 1
    command: 'echo "slow $1"; sleep 30'
  flaky:
    shell: true
    retries: 1
    command: 'if [ -e "$1.once" ]; then echo "second $AGENT33_ATTEMPT"; else touch "$1.once"; echo "first $AGENT33_ATTEMPT"; exit 4; fi'
tasks:
  - { agent: ok, artifact: a }
  - { agent: ok, artifact: b }
  - { agent: bad, artifact: c }
  - { agent: slow, artifact: d }
  - { agent: flaky, artifact: e }
  - { agent: ok, artifact: f, depends_on: ["bad:c"] }
  - { agent: ok, artifact: g, depends_on: ["ok:a", "flaky:e"] }
"#;

#[test]
fn two_workers_give_the_reports_of_a_local_run() {
    server!(_lock, server);
    let dir = Sandbox::new();
    dir.write("agent33.yaml", SAME_AS_LOCAL);
    let local = run(
        &dir.path(),
        &["run", "--report", "local.json", "--junit", "local.xml"],
    );
    assert_eq!(code(&local), 1, "{}", stderr(&local));
    std::fs::remove_file(dir.join("e.once")).expect("the flaky task left its mark");

    let url = server.url();
    let _w1 = Worker::start(&dir.path(), &url, "w1", &["--slots", "2"]);
    let _w2 = Worker::start(&dir.path(), &url, "w2", &["--slots", "2"]);
    let remote = run(
        &dir.path(),
        &[
            "run",
            "--nats",
            &url,
            "--report",
            "remote.json",
            "--junit",
            "remote.xml",
        ],
    );
    assert_eq!(code(&remote), 1, "{}", stderr(&remote));

    let (local, remote) = (dir.json("local.json"), dir.json("remote.json"));
    let (local_tasks, remote_tasks) = (tasks(&local), tasks(&remote));
    assert_eq!(local_tasks.len(), 7);
    for (l, r) in local_tasks.iter().zip(&remote_tasks) {
        assert_eq!(comparable(l), comparable(r));
    }
    for counts in ["total", "success_rate"] {
        assert_eq!(local[counts], remote[counts], "{counts}");
    }
    assert_eq!(local["metrics"]["counters"], remote["metrics"]["counters"]);
    assert_eq!(task(&remote, "flaky:e")["attempts"], 2);
    assert_eq!(task(&remote, "flaky:e")["output"], "second 2\n");
    assert_eq!(task(&remote, "ok:f")["status"], "skipped");
    assert_eq!(task(&remote, "slow:d")["status"], "timeout");
    for ran in ["ok:a", "bad:c", "slow:d", "flaky:e"] {
        let worker = task(&remote, ran)["worker"].clone();
        assert!(worker == "w1" || worker == "w2", "{ran} ran on {worker}");
    }
    assert!(task(&remote, "ok:f").get("worker").is_none());
    assert_eq!(
        junit_without_times(&dir.read("local.xml")),
        junit_without_times(&dir.read("remote.xml"))
    );
}

#[test]
fn a_killed_worker_loses_nothing() {
    server!(_lock, server);
    let dir = Sandbox::new();
    dir.write(
        "agent33.yaml",
        r#"
execution:
  mode: dependency-aware
  parallel_limit: 4
agents:
  quick:
    shell: true
    command: 'echo "quick $1 $A33_TEST_WORKER" >> ledger'
  long:
    shell: true
    command: 'echo "start $A33_TEST_WORKER $$" >> ledger; if [ "$A33_TEST_WORKER" = w1 ]; then sleep 600; fi; echo "ran on $A33_TEST_WORKER as attempt $AGENT33_ATTEMPT"'
tasks:
  - { agent: quick, artifact: a }
  - { agent: quick, artifact: b }
  - { agent: quick, artifact: c }
  # Once it starts, the others' results are in: the kill cannot catch one
  # between its end and its report (which would run it again, as at least
  # once allows).
  - { agent: long, artifact: x, depends_on: ["quick:a", "quick:b", "quick:c"] }
"#,
    );
    let url = server.url();
    let mut w1 = Worker::start(&dir.path(), &url, "w1", &["--slots", "4"]);
    let run = spawn_run(
        &dir.path(),
        &[
            "run", "--nats", &url, "--lease", "1.5", "--report", "r.json",
        ],
    );
    let pid: i32 = wait_for("the long task on w1", HANG, || {
        let started = lines_with(&dir.read("ledger"), "start w1 ");
        started.first()?.rsplit(' ').next()?.parse().ok()
    });
    w1.signal(Signal::KILL);
    w1.wait();
    let killed = Instant::now();
    let _w2 = Worker::start(&dir.path(), &url, "w2", &[]);
    let output = wait_output(run, HANG);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        killed.elapsed() >= Duration::from_millis(900),
        "redelivered only after the lease (1.5 s from the last heartbeat)"
    );
    let report = dir.json("r.json");
    let x = task(&report, "long:x");
    assert_eq!(x["status"], "success");
    assert_eq!(
        x["output"], "ran on w2 as attempt 2\n",
        "AGENT33_ATTEMPT counts the lost one"
    );
    let notes = x["notes"].to_string();
    assert!(notes.contains("attempt 1: worker w1 lost after"), "{notes}");
    assert_eq!(x["attempts"], 2, "the lost execution counts");
    assert_eq!(x["worker"], "w2");
    let ledger = dir.read("ledger");
    for quick in ["a", "b", "c"] {
        assert_eq!(
            lines_with(&ledger, &format!("quick {quick} ")).len(),
            1,
            "{ledger}"
        );
    }
    // The dead worker's guard killed the task it had started.
    wait_for("the orphaned task to be killed", HANG, || {
        (!alive(pid)).then_some(())
    });
}

#[test]
fn a_worker_paused_past_its_lease_is_fenced() {
    server!(_lock, server);
    let dir = Sandbox::new();
    dir.write(
        "agent33.yaml",
        r#"
execution:
  parallel_limit: 4
agents:
  work:
    shell: true
    command: 'echo "start $1 $A33_TEST_WORKER $$" >> ledger; if [ "$A33_TEST_WORKER" = w1 ]; then sleep 600; fi; echo "$1 ran on $A33_TEST_WORKER"'
  hold:
    shell: true
    command: 'echo "start $1 $A33_TEST_WORKER $$" >> ledger; while [ ! -e gate ]; do sleep 0.05; done; echo "$1 ran on $A33_TEST_WORKER"'
tasks:
  - { agent: work, artifact: x }
  - { agent: hold, artifact: h }
"#,
    );
    let url = server.url();
    let w1 = Worker::start(&dir.path(), &url, "w1", &["--slots", "2"]);
    let run = spawn_run(
        &dir.path(),
        &[
            "run", "--nats", &url, "--lease", "1.5", "--report", "r.json",
        ],
    );
    let first: i32 = wait_for("x on w1", HANG, || {
        let started = lines_with(&dir.read("ledger"), "start x w1 ");
        started.first()?.rsplit(' ').next()?.parse().ok()
    });
    w1.signal(Signal::STOP);
    let _w2 = Worker::start(&dir.path(), &url, "w2", &["--slots", "2"]);
    wait_for("x and h redelivered to w2", HANG, || {
        let ledger = dir.read("ledger");
        (!lines_with(&ledger, "start x w2 ").is_empty()
            && !lines_with(&ledger, "start h w2 ").is_empty())
        .then_some(())
    });
    w1.signal(Signal::CONT);
    wait_for("w1 to find out", HANG, || {
        w1.stderr().contains("claim lost").then_some(())
    });
    // Its process group is killed once it knows.
    wait_for("w1's stale task to be killed", HANG, || {
        (!alive(first)).then_some(())
    });
    dir.write("gate", "");
    let output = wait_output(run, HANG);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let report = dir.json("r.json");
    assert_eq!(tasks(&report).len(), 2, "one result per task");
    assert_eq!(task(&report, "work:x")["output"], "x ran on w2\n");
    assert_eq!(task(&report, "hold:h")["output"], "h ran on w2\n");
    let ledger = dir.read("ledger");
    assert_eq!(lines_with(&ledger, "start x ").len(), 2, "{ledger}");
}

#[test]
fn a_drained_worker_finishes_its_tasks_and_exits_0() {
    server!(_lock, server);
    let dir = Sandbox::new();
    dir.write(
        "agent33.yaml",
        r#"
agents:
  hold:
    shell: true
    command: 'echo "start $A33_TEST_WORKER" >> ledger; while [ ! -e gate ]; do sleep 0.05; done; echo "ran on $A33_TEST_WORKER"'
tasks:
  - { agent: hold, artifact: h }
"#,
    );
    let url = server.url();
    let mut w1 = Worker::start(&dir.path(), &url, "w1", &[]);
    let run = spawn_run(&dir.path(), &["run", "--nats", &url, "--report", "r.json"]);
    wait_for("the task on w1", HANG, || {
        dir.read("ledger").contains("start w1").then_some(())
    });
    w1.signal(Signal::TERM);
    wait_for("w1 to say it drains", HANG, || {
        w1.stderr().contains("draining").then_some(())
    });
    dir.write("gate", "");
    let output = wait_output(run, HANG);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(w1.wait().code(), Some(0));
    let report = dir.json("r.json");
    assert_eq!(task(&report, "hold:h")["output"], "ran on w1\n");
}

#[test]
fn a_second_sigterm_hands_tasks_back() {
    server!(_lock, server);
    let dir = Sandbox::new();
    dir.write(
        "agent33.yaml",
        r#"
agents:
  hold:
    shell: true
    command: 'echo "start $A33_TEST_WORKER" >> ledger; if [ "$A33_TEST_WORKER" = w1 ]; then sleep 600; fi; echo "ran on $A33_TEST_WORKER"'
tasks:
  - { agent: hold, artifact: h }
"#,
    );
    let url = server.url();
    let mut w1 = Worker::start(&dir.path(), &url, "w1", &[]);
    let run = spawn_run(&dir.path(), &["run", "--nats", &url, "--report", "r.json"]);
    wait_for("the task on w1", HANG, || {
        dir.read("ledger").contains("start w1").then_some(())
    });
    w1.signal(Signal::TERM);
    wait_for("w1 to say it drains", HANG, || {
        w1.stderr().contains("draining").then_some(())
    });
    w1.signal(Signal::TERM);
    assert_eq!(w1.wait().code(), Some(0));
    let _w2 = Worker::start(&dir.path(), &url, "w2", &[]);
    let output = wait_output(run, HANG);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let h = task(&dir.json("r.json"), "hold:h");
    assert_eq!(h["output"], "ran on w2\n");
    let notes = h["notes"].to_string();
    assert!(notes.contains("attempt 1: worker w1 lost after"), "{notes}");
    assert_eq!(h["attempts"], 2, "the handed-back execution counts");
}

#[test]
fn a_server_restart_delays_the_run_and_loses_nothing() {
    server!(_lock, server);
    let mut server = server;
    let dir = Sandbox::new();
    dir.write(
        "agent33.yaml",
        r#"
execution:
  mode: dependency-aware
  parallel_limit: 2
agents:
  hold:
    shell: true
    command: 'echo "start $1" >> ledger; while [ ! -e gate ]; do sleep 0.05; done; echo "$1 done"'
  after:
    shell: true
    command: 'echo "start $1" >> ledger; echo "$1 done"'
tasks:
  - { agent: hold, artifact: a }
  - { agent: after, artifact: b, depends_on: ["hold:a"] }
"#,
    );
    let url = server.url();
    let _w1 = Worker::start(&dir.path(), &url, "w1", &[]);
    let run = spawn_run(&dir.path(), &["run", "--nats", &url, "--report", "r.json"]);
    wait_for("a on w1", HANG, || {
        dir.read("ledger").contains("start a").then_some(())
    });
    server.restart();
    dir.write("gate", "");
    let output = wait_output(run, HANG);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let report = dir.json("r.json");
    assert_eq!(task(&report, "hold:a")["output"], "a done\n");
    assert_eq!(task(&report, "after:b")["output"], "b done\n");
    let ledger = dir.read("ledger");
    assert_eq!(lines_with(&ledger, "start a").len(), 1, "{ledger}");
    assert_eq!(lines_with(&ledger, "start b").len(), 1, "{ledger}");
}

#[test]
fn no_server_exits_2_within_5_seconds_naming_the_url() {
    let _lock = serial();
    let dir = Sandbox::new();
    dir.write(
        "agent33.yaml",
        "agents:\n  a: { command: 'true' }\ntasks:\n  - { agent: a, artifact: x }\n",
    );
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let started = Instant::now();
    let output = run(&dir.path(), &["run", "--nats", &url]);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains(&url), "{}", stderr(&output));
}

#[test]
fn a_worker_with_another_manifest_refuses_and_the_run_stops() {
    server!(_lock, server);
    let dir = Sandbox::new();
    dir.write(
        "agent33.yaml",
        "agents:\n  a: { command: 'true' }\ntasks:\n  - { agent: a, artifact: x }\n",
    );
    dir.write(
        "other.yaml",
        "agents:\n  a: { command: 'false' }\ntasks:\n  - { agent: a, artifact: x }\n",
    );
    let url = server.url();
    let w1 = Worker::start(&dir.path(), &url, "w1", &["-f", "other.yaml"]);
    let started = Instant::now();
    let output = run(&dir.path(), &["run", "--nats", &url, "--report", "r.json"]);
    assert!(started.elapsed() >= Duration::from_secs(30));
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("no worker accepts this manifest"),
        "{}",
        stderr(&output)
    );
    let x = task(&dir.json("r.json"), "a:x");
    assert_eq!(x["status"], "cancelled");
    assert!(
        w1.stderr().contains("manifest differs"),
        "the worker says what it refuses: {}",
        w1.stderr()
    );
}

#[test]
fn ad_hoc_runs_go_only_to_workers_that_allow_them() {
    server!(_lock, server);
    let dir = Sandbox::new();
    let url = server.url();
    let strict = Worker::start(&dir.path(), &url, "strict", &[]);
    let _open = Worker::start(&dir.path(), &url, "open", &["--allow-adhoc"]);
    let output = run(
        &dir.path(),
        &[
            "run",
            "--nats",
            &url,
            "-j",
            "2",
            "--command",
            "echo hi",
            "--report",
            "r.json",
            ":::",
            "a",
            "b",
        ],
    );
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let report = dir.json("r.json");
    assert_eq!(task(&report, "command:a")["output"], "hi a\n");
    assert_eq!(task(&report, "command:b")["output"], "hi b\n");
    assert!(
        strict.stderr().contains("--allow-adhoc"),
        "{}",
        strict.stderr()
    );
}

#[test]
fn output_larger_than_a_nats_message_arrives_intact() {
    server!(_lock, server);
    let dir = Sandbox::new();
    dir.write(
        "agent33.yaml",
        r#"
execution:
  output_limit_bytes: 8000000
agents:
  big: { shell: true, command: 'seq 1 600000' }
tasks:
  - { agent: big, artifact: x }
"#,
    );
    let url = server.url();
    let _w1 = Worker::start(&dir.path(), &url, "w1", &[]);
    let output = run(
        &dir.path(),
        &["run", "--nats", &url, "-q", "--report", "r.json"],
    );
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let expected: String = (1..=600_000).map(|i| format!("{i}\n")).collect();
    assert!(expected.len() > 3 * 1024 * 1024);
    let big = tasks(&dir.json("r.json")).remove(0);
    assert_eq!(big["output"].as_str().map(str::len), Some(expected.len()));
    assert!(big["output"] == expected.as_str(), "the output differs");
}

#[test]
fn fail_fast_reaches_every_worker_within_a_second() {
    server!(_lock, server);
    let dir = Sandbox::new();
    dir.write(
        "agent33.yaml",
        r#"
execution:
  parallel_limit: 4
agents:
  hold:
    shell: true
    command: 'trap ''echo "term $(date +%s%N)" >> ledger; exit 143'' TERM; echo "start $1" >> ledger; while true; do sleep 0.02; done'
  boom:
    shell: true
    command: 'while [ "$(cat ledger 2>/dev/null | grep -c ^start)" -lt 3 ]; do sleep 0.02; done; echo "fail $(date +%s%N)" >> ledger; exit 1'
tasks:
  - { agent: hold, artifact: a }
  - { agent: hold, artifact: b }
  - { agent: hold, artifact: c }
  - { agent: boom, artifact: d }
"#,
    );
    let url = server.url();
    let _w1 = Worker::start(&dir.path(), &url, "w1", &["--slots", "2"]);
    let _w2 = Worker::start(&dir.path(), &url, "w2", &["--slots", "2"]);
    let output = run(&dir.path(), &["run", "--nats", &url, "--report", "r.json"]);
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let ledger = dir.read("ledger");
    let stamp = |line: &String| -> u128 {
        line.rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("a stamp")
    };
    let failed = stamp(&lines_with(&ledger, "fail ")[0]);
    let terms = lines_with(&ledger, "term ");
    assert_eq!(
        terms.len(),
        3,
        "{ledger}\n{}\n{}",
        dir.read("r.json"),
        stderr(&output)
    );
    for term in &terms {
        let after = stamp(term).saturating_sub(failed);
        assert!(
            after < 1_000_000_000,
            "SIGTERM {after} ns after the failure"
        );
    }
    let report = dir.json("r.json");
    for id in ["hold:a", "hold:b", "hold:c"] {
        assert_eq!(task(&report, id)["status"], "cancelled");
    }
}

/// The most intervals `(start, end)` that overlap at any instant.
fn peak_overlap(intervals: &[(u128, u128)]) -> usize {
    let mut edges: Vec<(u128, i32)> = intervals
        .iter()
        .flat_map(|&(start, end)| [(start, 1), (end, -1)])
        .collect();
    // An end and a start at the same nanosecond do not overlap.
    edges.sort_unstable();
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        peak = peak.max(now);
    }
    usize::try_from(peak).expect("never negative")
}

#[test]
fn one_limit_holds_across_all_workers() {
    server!(_lock, server);
    let dir = Sandbox::new();
    let mut manifest = String::from(
        r#"
execution:
  parallel_limit: 3
agents:
  any:
    shell: true
    command: 'echo "start any $1 $(date +%s%N)" >> ledger; sleep 0.2; echo "end any $1 $(date +%s%N)" >> ledger'
  one:
    shell: true
    parallel_limit: 1
    command: 'echo "start one $1 $(date +%s%N)" >> ledger; sleep 0.2; echo "end one $1 $(date +%s%N)" >> ledger'
tasks:
"#,
    );
    for i in 0..9 {
        manifest.push_str(&format!("  - {{ agent: any, artifact: a{i} }}\n"));
    }
    for i in 0..3 {
        manifest.push_str(&format!("  - {{ agent: one, artifact: o{i} }}\n"));
    }
    dir.write("agent33.yaml", manifest);
    let url = server.url();
    let _workers: Vec<Worker> = ["w1", "w2", "w3"]
        .iter()
        .map(|id| Worker::start(&dir.path(), &url, id, &["--slots", "2"]))
        .collect();
    let output = run(&dir.path(), &["run", "--nats", &url, "--report", "r.json"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let ledger = dir.read("ledger");
    let intervals = |agent: &str| -> Vec<(u128, u128)> {
        let stamp = |line: &String| -> (String, u128) {
            let mut words = line.split(' ').skip(2);
            let artifact = words.next().expect("an artifact").to_owned();
            let at = words.next().and_then(|n| n.parse().ok()).expect("a stamp");
            (artifact, at)
        };
        let ends: Vec<(String, u128)> = lines_with(&ledger, &format!("end {agent} "))
            .iter()
            .map(stamp)
            .collect();
        lines_with(&ledger, &format!("start {agent} "))
            .iter()
            .map(stamp)
            .map(|(artifact, start)| {
                let end = ends
                    .iter()
                    .find(|(a, _)| *a == artifact)
                    .map(|(_, at)| *at)
                    .expect("every task ended");
                (start, end)
            })
            .collect()
    };
    let (any, one) = (intervals("any"), intervals("one"));
    assert_eq!((any.len(), one.len()), (9, 3), "each ran once:\n{ledger}");
    let all: Vec<_> = any.iter().chain(&one).copied().collect();
    assert!(peak_overlap(&all) <= 3, "the run's limit:\n{ledger}");
    assert_eq!(peak_overlap(&one), 1, "the agent's own limit:\n{ledger}");
}

#[test]
fn a_worker_started_before_the_server_waits_for_it() {
    let _lock = serial();
    let dir = Sandbox::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let worker = Worker::spawn(&dir.path(), &url, "early", &[]);
    wait_for("the worker to say it retries", HANG, || {
        let said = worker.stderr();
        (said.contains("retrying") && said.contains(&url)).then_some(())
    });
    let Some(_server) = Server::start_on(Some(port)) else {
        return;
    };
    worker.wait_ready("early");
}

#[test]
fn a_worker_exits_0_on_sigterm_after_its_runs_ended() {
    server!(_lock, server);
    let dir = Sandbox::new();
    let url = server.url();
    let mut w1 = Worker::start(&dir.path(), &url, "w1", &["--allow-adhoc"]);
    for _ in 0..3 {
        let output = run(
            &dir.path(),
            &[
                "run",
                "--nats",
                &url,
                "-j",
                "4",
                "--command",
                "true",
                ":::",
                "a",
                "b",
                "c",
            ],
        );
        assert_eq!(code(&output), 0, "{}", stderr(&output));
    }
    w1.signal(Signal::TERM);
    assert_eq!(w1.wait().code(), Some(0), "{}", w1.stderr());
}

#[test]
fn workers_notice_a_dead_coordinator_and_finish_what_they_hold() {
    server!(_lock, server);
    let dir = Sandbox::new();
    dir.write(
        "agent33.yaml",
        r#"
agents:
  hold:
    shell: true
    command: 'echo "start $1" >> ledger; while [ ! -e gate ]; do sleep 0.05; done; echo "end $1" >> ledger'
tasks:
  - { agent: hold, artifact: h }
  - { agent: hold, artifact: i }
"#,
    );
    let url = server.url();
    let w1 = Worker::start(&dir.path(), &url, "w1", &["--slots", "1"]);
    let mut coordinator = spawn_run(&dir.path(), &["run", "--nats", &url]);
    wait_for("the task on w1", HANG, || {
        dir.read("ledger").contains("start h").then_some(())
    });
    let killed = Instant::now();
    coordinator.kill().expect("SIGKILL the coordinator");
    coordinator.wait().expect("reap it");
    wait_for("w1 to notice", HANG, || {
        w1.stderr()
            .contains("its coordinator is silent")
            .then_some(())
    });
    let noticed = killed.elapsed();
    // A worker that comes after the death asks the coordinator first and
    // takes none of the dead run's tasks (`i` waits in the queue).
    let w2 = Worker::start(&dir.path(), &url, "w2", &[]);
    wait_for("w2 to see the run is dead", HANG, || {
        w2.stderr()
            .contains("its coordinator is gone; taking none of its tasks")
            .then_some(())
    });
    // Silence counts from its last word (every 3 s) and must last 12 s.
    assert!(
        noticed >= Duration::from_secs(8),
        "noticed after {noticed:?}"
    );
    assert!(
        noticed <= Duration::from_secs(15),
        "the promise: within 15 s, noticed after {noticed:?}"
    );
    // What it holds runs to its end.
    dir.write("gate", "");
    wait_for("the held task to end", HANG, || {
        dir.read("ledger").contains("end h").then_some(())
    });
    assert!(
        !dir.read("ledger").contains("start i"),
        "{}",
        dir.read("ledger")
    );
}

#[test]
fn a_task_lost_three_times_fails_with_worker_lost_3_times() {
    server!(_lock, server);
    let dir = Sandbox::new();
    dir.write(
        "agent33.yaml",
        r#"
agents:
  doomed:
    shell: true
    command: 'echo "start $A33_TEST_WORKER" >> ledger; sleep 600'
tasks:
  - { agent: doomed, artifact: x }
"#,
    );
    let url = server.url();
    let run = spawn_run(
        &dir.path(),
        &["run", "--nats", &url, "--lease", "1", "--report", "r.json"],
    );
    for id in ["w1", "w2", "w3"] {
        let mut worker = Worker::start(&dir.path(), &url, id, &[]);
        wait_for(&format!("the task on {id}"), HANG, || {
            dir.read("ledger")
                .contains(&format!("start {id}"))
                .then_some(())
        });
        worker.signal(Signal::KILL);
        worker.wait();
    }
    // The fourth delivery finds the attempt lost three times.
    let _w4 = Worker::start(&dir.path(), &url, "w4", &[]);
    let output = wait_output(run, HANG);
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let x = task(&dir.json("r.json"), "doomed:x");
    assert_eq!(x["status"], "failed");
    assert_eq!(x["error"], "worker lost 3 times");
    assert_eq!(x["attempts"], 3);
    let notes = x["notes"].to_string();
    for id in ["w1", "w2", "w3"] {
        assert!(
            notes.contains(&format!("worker {id} lost after")),
            "{notes}"
        );
    }
    assert!(
        !dir.read("ledger").contains("start w4"),
        "never started a 4th time"
    );
}

#[test]
fn a_sigterm_to_the_run_stops_the_tasks_on_its_workers() {
    server!(_lock, server);
    let dir = Sandbox::new();
    dir.write(
        "agent33.yaml",
        r#"
execution:
  parallel_limit: 2
agents:
  hold:
    shell: true
    command: 'trap ''echo "term $1" >> ledger; exit 143'' TERM; echo "start $1" >> ledger; while true; do sleep 0.02; done'
tasks:
  - { agent: hold, artifact: a }
  - { agent: hold, artifact: b }
"#,
    );
    let url = server.url();
    let _w1 = Worker::start(&dir.path(), &url, "w1", &["--slots", "1"]);
    let _w2 = Worker::start(&dir.path(), &url, "w2", &["--slots", "1"]);
    let run = spawn_run(&dir.path(), &["run", "--nats", &url, "--report", "r.json"]);
    wait_for("both tasks to start", HANG, || {
        (lines_with(&dir.read("ledger"), "start ").len() == 2).then_some(())
    });
    support::signal(run.id(), Signal::TERM);
    let output = wait_output(run, HANG);
    assert_eq!(code(&output), 143, "{}", stderr(&output));
    assert_eq!(lines_with(&dir.read("ledger"), "term ").len(), 2);
    let report = dir.json("r.json");
    for id in ["hold:a", "hold:b"] {
        assert_eq!(task(&report, id)["status"], "cancelled");
    }
}

/// Ids of the tasks a journal file has records for.
fn journaled(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|record| record["id"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_run_resumed_after_its_coordinator_died_runs_only_what_is_left() {
    server!(_lock, server);
    let dir = Sandbox::new();
    dir.write(
        "agent33.yaml",
        r#"
execution:
  parallel_limit: 3
agents:
  quick:
    shell: true
    command: 'echo "quick $1" >> ledger'
  hold:
    shell: true
    command: 'trap ''echo "term $1 $$" >> ledger; exit 143'' TERM; echo "start $1 $$" >> ledger; while [ ! -e gate ]; do sleep 0.02; done; echo "end $1" >> ledger'
tasks:
  - { agent: quick, artifact: a }
  - { agent: quick, artifact: b }
  - { agent: quick, artifact: c }
  - { agent: hold, artifact: d }
  - { agent: hold, artifact: e }
  - { agent: hold, artifact: f }
"#,
    );
    let url = server.url();
    // Four slots: the dead run's three held tasks would leave the resumed
    // run one, were they not stopped.
    let _w1 = Worker::start(&dir.path(), &url, "w1", &["--slots", "2"]);
    let _w2 = Worker::start(&dir.path(), &url, "w2", &["--slots", "2"]);
    let mut coordinator = spawn_run(
        &dir.path(),
        &["run", "--nats", &url, "--journal", "j.jsonl"],
    );
    wait_for(
        "the quick tasks journaled, the held ones started",
        HANG,
        || {
            let quick_done = journaled(&dir.read("j.jsonl")).len() == 3;
            let held = lines_with(&dir.read("ledger"), "start ").len() == 3;
            (quick_done && held).then_some(())
        },
    );
    coordinator.kill().expect("SIGKILL the coordinator");
    coordinator.wait().expect("reap it");

    let resumed = spawn_run(
        &dir.path(),
        &[
            "run",
            "--nats",
            &url,
            "--journal",
            "j.jsonl",
            "--resume",
            "--report",
            "r.json",
        ],
    );
    // The gate stays shut until the dead run's executions were stopped and
    // the resumed run's three all started beside them.
    wait_for(
        "the dead run's tasks stopped, the new ones started",
        HANG,
        || {
            let ledger = dir.read("ledger");
            let stopped = lines_with(&ledger, "term ").len() == 3;
            let started = lines_with(&ledger, "start ").len() == 6;
            (stopped && started).then_some(())
        },
    );
    dir.write("gate", "");
    let output = wait_output(resumed, HANG);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("ended run "),
        "{}",
        stderr(&output)
    );

    let report = dir.json("r.json");
    assert_eq!(report["total"], 6);
    assert_eq!(tasks(&report).len(), 6, "one result per task");
    for id in ["quick:a", "quick:b", "quick:c"] {
        let t = task(&report, id);
        assert_eq!(t["status"], "success", "{t}");
        assert_eq!(t["resumed"], true, "{t}");
    }
    for id in ["hold:d", "hold:e", "hold:f"] {
        let t = task(&report, id);
        assert_eq!(t["status"], "success", "{t}");
        assert_eq!(t["attempts"], 1, "{t}");
    }
    let ledger = dir.read("ledger");
    for quick in ["a", "b", "c"] {
        assert_eq!(
            lines_with(&ledger, &format!("quick {quick}")).len(),
            1,
            "journaled as finished, so not run again: {ledger}"
        );
    }
    // The dead run's executions were stopped, not left to finish.
    assert_eq!(lines_with(&ledger, "end ").len(), 3, "{ledger}");
}

#[test]
fn a_workers_own_lease_decides_when_the_run_gives_none() {
    server!(_lock, server);
    let dir = Sandbox::new();
    dir.write(
        "agent33.yaml",
        r#"
agents:
  long:
    shell: true
    command: 'echo "start $A33_TEST_WORKER $$" >> ledger; if [ "$A33_TEST_WORKER" = w1 ]; then sleep 600; fi; echo "ran on $A33_TEST_WORKER"'
tasks:
  - { agent: long, artifact: x }
"#,
    );
    let url = server.url();
    let mut w1 = Worker::start(&dir.path(), &url, "w1", &["--lease", "1"]);
    // No --lease: the run's would be 30 s, the server's redelivery.
    let run = spawn_run(&dir.path(), &["run", "--nats", &url, "--report", "r.json"]);
    wait_for("the task on w1", HANG, || {
        (!lines_with(&dir.read("ledger"), "start w1 ").is_empty()).then_some(())
    });
    w1.signal(Signal::KILL);
    w1.wait();
    let _w2 = Worker::start(&dir.path(), &url, "w2", &[]);
    let output = wait_output(run, HANG);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let x = task(&dir.json("r.json"), "long:x");
    assert_eq!(x["status"], "success", "{x}");
    assert_eq!(x["output"], "ran on w2\n");
    assert_eq!(x["attempts"], 2, "the lost execution counts");
    let notes = x["notes"].to_string();
    let after: f64 = notes
        .split("worker w1 lost after ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|secs| secs.parse().ok())
        .unwrap_or_else(|| panic!("a note naming w1: {notes}"));
    // Lost after w1's 1 s of silence, far from the run's 30 s.
    assert!((1.0..10.0).contains(&after), "lost after {after}s: {notes}");
}
