//! PRODUCT.md, Results: the `--report` JSON and the `--junit` XML.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::{LISTS, Report, Sandbox, script_manifest};

/// A run with every status: sequential, stop after two failures.
/// a:ok succeeds, a:fail fails, b:dep (after a:fail) is skipped, b:slow
/// times out (the second failure: stop), b:late is cancelled.
fn every_status(sb: &Sandbox, extra: &[&str]) -> crate::support::Output {
    sb.manifest(
        r#"
execution: {max_failures: 2}
agents:
  a:
    shell: true
    command: 'echo "out $1"; echo "err $1" >&2; [ "$1" != fail ]'
  b:
    shell: true
    command: '[ "$1" != slow ] || exec sleep 30'
tasks:
  - {agent: a, artifact: ok}
  - {agent: a, artifact: fail}
  - {agent: b, artifact: dep, depends_on: ["a:fail"]}
  - {agent: b, artifact: slow, timeout_seconds: 0.3}
  - {agent: b, artifact: late}
"#,
    );
    let mut cmd = sb.run(["--report", "r.json"]);
    cmd.cmd.args(extra);
    cmd.output()
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

fn set<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
    names.iter().copied().collect()
}

/// `YYYY-MM-DDTHH:MM:SS[.fff…]Z`.
fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && s.ends_with('Z')
        && (b.len() == 20 || (b[19] == b'.' && digits(20..b.len() - 1) && b.len() > 21))
}

const TASK_RESULT_FIELDS: [&str; 11] = [
    "task",
    "status",
    "duration_ms",
    "output",
    "stderr",
    "error",
    "exit_code",
    "attempts",
    "started_at",
    "finished_at",
    "seq",
];

#[test]
fn the_report_has_products_fields_and_consistent_values() {
    let sb = Sandbox::new();
    every_status(&sb, &[]).code_is(1);
    let r = sb.report("r.json");
    let top = keys(&r.0);
    for field in [
        "total",
        "succeeded",
        "failed",
        "cancelled",
        "skipped",
        "duration_ms",
        "success_rate",
        "metrics",
    ] {
        assert!(top.contains(field), "top-level `{field}`: {top:?}");
    }
    // Lists in input order; their lengths add up to total.
    assert_eq!(r.total(), 5);
    assert_eq!(r.ids("succeeded"), ["a:ok"]);
    assert_eq!(r.ids("failed"), ["a:fail", "b:slow"]);
    assert_eq!(r.ids("cancelled"), ["b:late"]);
    assert_eq!(r.ids("skipped"), ["b:dep"]);
    let sum: usize = LISTS.iter().map(|l| r.list(l).len()).sum();
    assert_eq!(sum as u64, r.total());
    assert_eq!(r.0["success_rate"].as_f64(), Some(0.2));
    assert!(r.0["duration_ms"].is_u64());
    for t in r.all() {
        let mut want = set(&TASK_RESULT_FIELDS);
        // `seq` is the report's documented addition; PRODUCT.md's fields
        // must all be there.
        let got = keys(t);
        want.retain(|f| *f != "seq" || got.contains("seq"));
        assert_eq!(got, want, "{t:#}");
        assert!(
            keys(&t["task"]).is_superset(&set(&["id", "agent", "artifact"])),
            "{t:#}"
        );
        for time in ["started_at", "finished_at"] {
            match &t[time] {
                Value::Null => assert_eq!(t["attempts"], 0, "{t:#}"),
                Value::String(s) => assert!(is_rfc3339_utc(s), "{time} {s}"),
                other => panic!("{time}: {other}"),
            }
        }
        if let (Some(a), Some(b)) = (t["started_at"].as_str(), t["finished_at"].as_str()) {
            assert!(a <= b, "{t:#}");
        }
    }
    // Statuses, reasons and exit codes.
    let ok = r.task("a:ok");
    assert_eq!(ok["status"], "success");
    assert!(ok["error"].is_null());
    assert_eq!(ok["exit_code"], 0);
    assert_eq!(ok["output"], "out ok\n");
    assert_eq!(ok["stderr"], "err ok\n");
    assert_eq!(ok["attempts"], 1);
    assert_eq!(ok["task"]["agent"], "a");
    assert_eq!(ok["task"]["artifact"], "ok");
    assert_eq!(r.error("a:fail"), "exit code 1");
    assert_eq!(r.task("a:fail")["exit_code"], 1);
    assert_eq!(r.status("b:slow"), "timeout");
    assert!(r.error("b:slow").contains("timed out after 0.3s"));
    assert_eq!(r.status("b:dep"), "skipped");
    assert_eq!(
        r.error("b:dep"),
        "skipped: dependency `a:fail` did not succeed"
    );
    assert_eq!(r.status("b:late"), "cancelled");
    assert_eq!(r.error("b:late"), "not started: max failures (2) reached");
    // Metrics: the catalog's names.
    let m = &r.0["metrics"];
    assert_eq!(keys(m), set(&["counters", "gauges", "timers"]));
    assert_eq!(
        keys(&m["counters"]),
        set(&[
            "tasks_total",
            "tasks_succeeded",
            "tasks_failed",
            "tasks_timeout",
            "tasks_cancelled",
            "tasks_skipped",
            "task_retry_count"
        ])
    );
    for (counter, want) in [
        ("tasks_total", 5),
        ("tasks_succeeded", 1),
        ("tasks_failed", 1),
        ("tasks_timeout", 1),
        ("tasks_cancelled", 1),
        ("tasks_skipped", 1),
        ("task_retry_count", 0),
    ] {
        assert_eq!(r.counter(counter), want, "{counter}");
    }
    assert_eq!(
        keys(&m["gauges"]),
        set(&["parallel_limit", "parallel_peak", "parallel_utilization"])
    );
    // Counts are written as integers, as the catalog shows them.
    assert_eq!(m["gauges"]["parallel_limit"].as_u64(), Some(1));
    assert_eq!(m["gauges"]["parallel_peak"].as_u64(), Some(1));
    // A fraction is a float, whatever its value.
    assert!(m["gauges"]["parallel_utilization"].is_f64());
    let u = m["gauges"]["parallel_utilization"]
        .as_f64()
        .expect("a number");
    assert!((0.0..=1.0).contains(&u), "{u}");
    assert_eq!(
        keys(&m["timers"]),
        set(&[
            "execution_duration_ms",
            "task_duration_ms",
            "semaphore_wait_ms"
        ])
    );
    for (timer, count) in [
        ("execution_duration_ms", 1),
        ("task_duration_ms", 3),
        ("semaphore_wait_ms", 3),
    ] {
        let t = &m["timers"][timer];
        assert_eq!(
            keys(t),
            set(&["count", "sum", "min", "max", "avg", "p50", "p95"]),
            "{timer}"
        );
        assert_eq!(t["count"], count, "{timer}: {t}");
    }
}

/// Each task result is exactly PRODUCT.md's TaskResult; at the top level,
/// ExecutionResults' fields plus the documented timeline additions
/// (`started_at`, `stopped`, `attempts`, `input_order`) that let
/// `agent-33 report` redraw the run.
#[test]
fn the_report_has_exactly_products_fields() {
    let sb = Sandbox::new();
    every_status(&sb, &[]).code_is(1);
    let r = sb.report("r.json");
    assert_eq!(
        keys(&r.0),
        set(&[
            "total",
            "succeeded",
            "failed",
            "cancelled",
            "skipped",
            "duration_ms",
            "success_rate",
            "metrics",
            "started_at",
            "stopped",
            "attempts",
            "input_order",
        ])
    );
    for t in r.all() {
        assert_eq!(keys(t), set(&TASK_RESULT_FIELDS[..10]), "{t:#}");
        assert_eq!(keys(&t["task"]), set(&["id", "agent", "artifact"]), "{t:#}");
    }
}

#[test]
fn lists_keep_input_order_whatever_the_finishing_order() {
    let sb = Sandbox::new();
    // Each task ends when the test says so: c first, then b, then a, each
    // released once the previous one's output block has been printed.
    sb.manifest(&script_manifest(
        "",
        r#"wait_for "go.$1"; echo "done $1""#,
        &["a", "b", "c"],
    ));
    let mut run = sb
        .run(["-j", "3", "--timeout", "20", "--report", "r.json"])
        .spawn();
    for task in ["c", "b", "a"] {
        sb.write(format!("go.{task}"), "");
        run.wait_for_stdout(&format!("done {task}"));
    }
    run.finish().code_is(0);
    let r = sb.report("r.json");
    assert_eq!(r.ids("succeeded"), ["t:a", "t:b", "t:c"]);
    let end = |id: &str| {
        r.task(id)["finished_at"]
            .as_str()
            .expect("ended")
            .to_owned()
    };
    assert!(end("t:c") <= end("t:b") && end("t:b") <= end("t:a"));
}

#[test]
fn output_is_bounded_with_a_truncation_marker() {
    let sb = Sandbox::new();
    // 81 bytes on each stream: "1\n" … "30\n".
    let cmd = "sh -c 'seq 1 30; seq 1 30 >&2' sh";
    sb.run([
        "--command",
        cmd,
        "--output-limit",
        "10",
        "--report",
        "r.json",
        "x",
    ])
    .output()
    .code_is(0);
    let r = sb.report("r.json");
    let t = r.task("command:x");
    assert_eq!(
        t["output"],
        "[agent-33: 71 bytes truncated]\n\n28\n29\n30\n"
    );
    assert_eq!(
        t["stderr"],
        "[agent-33: 71 bytes truncated]\n\n28\n29\n30\n"
    );
    // 0 keeps nothing but the marker.
    sb.run([
        "--command",
        cmd,
        "--output-limit",
        "0",
        "--report",
        "r.json",
        "x",
    ])
    .output()
    .code_is(0);
    let t = sb.report("r.json").task("command:x").clone();
    assert_eq!(t["output"], "[agent-33: 81 bytes truncated]\n");
    // Within the limit: no marker.
    sb.run([
        "--command",
        cmd,
        "--output-limit",
        "81",
        "--report",
        "r.json",
        "x",
    ])
    .output()
    .code_is(0);
    let t = sb.report("r.json").task("command:x").clone();
    assert!(t["output"].as_str().expect("text").starts_with("1\n2\n"));
    // The manifest sets it too.
    sb.manifest(
        "execution: {output_limit_bytes: 3}\nagents:\n  t: {command: \"sh -c 'seq 1 30' sh\"}\ntasks:\n  - {agent: t, artifact: x}\n",
    );
    sb.run(["--report", "r.json"]).output().code_is(0);
    let t = sb.report("r.json").task("t:x").clone();
    assert_eq!(t["output"], "[agent-33: 78 bytes truncated]\n30\n");
}

#[test]
fn bytes_that_are_not_utf8_become_replacement_characters() {
    let sb = Sandbox::new();
    sb.run([
        "--command",
        "sh -c \"printf 'ok \\377\\376 end'\" sh",
        "--report",
        "r.json",
        "x",
    ])
    .output()
    .code_is(0);
    let r = sb.report("r.json");
    let out = r.all()[0]["output"].as_str().expect("text").to_owned();
    assert!(
        out.starts_with("ok \u{FFFD}") && out.ends_with(" end"),
        "{out:?}"
    );
}

#[test]
fn signals_and_start_failures_have_no_exit_code() {
    let sb = Sandbox::new();
    sb.manifest(
        r#"
execution: {continue_on_error: true}
agents:
  segv: {command: "sh -c 'kill -SEGV $$'"}
  missing: {command: "./no-such-program"}
tasks:
  - {agent: segv, artifact: x}
  - {agent: missing, artifact: x}
"#,
    );
    sb.run(["--report", "r.json"]).output().code_is(1);
    let r = sb.report("r.json");
    let segv = r.task("segv:x");
    assert_eq!(segv["status"], "failed");
    assert_eq!(segv["error"], "killed by SIGSEGV");
    assert!(segv["exit_code"].is_null());
    let missing = r.task("missing:x");
    assert_eq!(missing["status"], "failed");
    assert!(missing["exit_code"].is_null());
    assert!(missing["started_at"].is_string());
    assert_eq!(missing["attempts"], 1);
    assert!(r.error("missing:x").contains("no-such-program"));
}

#[test]
fn report_paths_are_relative_to_the_current_folder_and_folders_are_created() {
    let sb = Sandbox::new();
    sb.write(
        "proj/agent33.yaml",
        "agents:\n  t: {command: \"true\"}\ntasks:\n  - {agent: t, artifact: x}\n",
    );
    sb.run([
        "-f",
        "proj/agent33.yaml",
        "--report",
        "out/r.json",
        "--junit",
        "out/j.xml",
    ])
    .output()
    .code_is(0);
    assert_eq!(sb.report("out/r.json").ids("succeeded"), ["t:x"]);
    assert!(sb.exists("out/j.xml"));
    assert!(!sb.exists("proj/out"));
}

/// The attributes of the first element named `tag` in `xml` from `from`.
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag} ");
    xml.match_indices(&open)
        .map(|(i, _)| {
            let rest = &xml[i..];
            &rest[..rest.find('>').expect("a closed tag") + 1]
        })
        .collect()
}

fn attr<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = element.find(&key)? + key.len();
    Some(&element[start..start + element[start..].find('"')?])
}

#[test]
fn junit_has_a_testsuite_per_agent_and_maps_statuses() {
    let sb = Sandbox::new();
    every_status(&sb, &["--junit", "j.xml"]).code_is(1);
    let xml = sb.read("j.xml");
    assert!(xml.starts_with("<?xml"), "{xml}");
    let suites = elements(&xml, "testsuite");
    let names: Vec<&str> = suites.iter().filter_map(|s| attr(s, "name")).collect();
    assert_eq!(names, ["a", "b"], "{xml}");
    let cases = elements(&xml, "testcase");
    let cases: Vec<(&str, &str)> = cases
        .iter()
        .map(|c| {
            (
                attr(c, "classname").expect("classname"),
                attr(c, "name").expect("name"),
            )
        })
        .collect();
    assert_eq!(
        cases,
        [
            ("a", "ok"),
            ("a", "fail"),
            ("b", "dep"),
            ("b", "slow"),
            ("b", "late")
        ],
        "{xml}"
    );
    // Each testcase's body, up to the next testcase.
    let body = |name: &str| -> &str {
        let start = xml
            .find(&format!("name=\"{name}\""))
            .unwrap_or_else(|| panic!("testcase {name}"));
        let rest = &xml[start..];
        let end = rest[1..].find("<testcase ").map_or(rest.len(), |i| i + 1);
        &rest[..end]
    };
    let ok = body("ok");
    assert!(!ok.contains("<failure") && !ok.contains("<skipped"), "{ok}");
    let fail = body("fail");
    assert!(fail.contains("<failure"), "{fail}");
    assert!(!fail.contains("type=\"timeout\""), "{fail}");
    let slow = body("slow");
    assert!(
        slow.contains("<failure") && slow.contains("type=\"timeout\""),
        "{slow}"
    );
    for (name, reason) in [
        ("dep", "skipped: dependency `a:fail` did not succeed"),
        ("late", "not started: max failures (2) reached"),
    ] {
        let b = body(name);
        let skipped = elements(b, "skipped");
        assert_eq!(skipped.len(), 1, "{b}");
        let message = attr(skipped[0], "message").expect("a message");
        assert_eq!(
            message.replace("&#96;", "`").replace("&apos;", "'"),
            reason,
            "{b}"
        );
    }
}

#[test]
fn junit_names_repeated_artifacts_apart() {
    let sb = Sandbox::new();
    sb.run([
        "--command",
        "echo {artifact}",
        "--junit",
        "j.xml",
        "x",
        "x",
        "x",
    ])
    .output()
    .code_is(0);
    let xml = sb.read("j.xml");
    let suites = elements(&xml, "testsuite");
    let names: Vec<&str> = suites.iter().filter_map(|s| attr(s, "name")).collect();
    assert_eq!(names, ["command"], "{xml}");
    let cases: Vec<(&str, &str)> = elements(&xml, "testcase")
        .iter()
        .map(|c| (attr(c, "classname").unwrap(), attr(c, "name").unwrap()))
        .collect();
    assert_eq!(
        cases,
        [("command", "x"), ("command", "x#2"), ("command", "x#3")],
        "{xml}"
    );
}

#[test]
fn junit_without_tasks_has_no_testsuite() {
    let sb = Sandbox::new();
    sb.manifest("agents:\n  t: {command: \"true\"}\ntasks: []\n");
    sb.run(["--junit", "j.xml", "--report", "r.json"])
        .output()
        .code_is(0);
    let xml = sb.read("j.xml");
    assert!(elements(&xml, "testsuite").is_empty(), "{xml}");
    let r: Report = sb.report("r.json");
    assert_eq!(r.total(), 0);
    assert_eq!(r.0["success_rate"].as_f64(), Some(0.0));
}

#[test]
fn a_report_path_that_cannot_be_written_is_a_usage_error_before_anything_runs() {
    let sb = Sandbox::new();
    sb.write("a-file", "");
    for flag in ["--report", "--junit"] {
        let out = sb
            .run(["--command", "touch ran", "x", flag, "a-file/out"])
            .output();
        out.usage_error("a-file/out");
        assert!(!sb.exists("ran"), "{flag}: nothing ran");
    }
}

#[test]
fn timings_writes_a_self_contained_html_timeline() {
    let sb = Sandbox::new();
    sb.run([
        "--command",
        "true",
        "--timings",
        "t.html",
        "task-a",
        "task-b",
    ])
    .output()
    .code_is(0);
    let html = sb.read("t.html");
    assert!(html.to_lowercase().contains("<html"), "{html}");
    assert!(
        html.contains("task-a") && html.contains("task-b"),
        "names the tasks"
    );
    assert!(html.contains("command"), "names the agent");
    // Self-contained: nothing fetched from elsewhere.
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
}

#[test]
fn the_report_subcommand_redraws_a_saved_run() {
    let sb = Sandbox::new();
    every_status(&sb, &["--timings", "live.html"]).code_is(1);
    let out = sb
        .subcommand(
            "report",
            [
                "r.json",
                "--timings",
                "t.html",
                "--junit",
                "j.xml",
                "--trace",
                "trace.json",
                "--summary",
            ],
        )
        .output();
    out.code_is(0);
    let stderr = &out.stderr;
    assert!(stderr.contains("Execution Summary"), "{stderr}");
    assert!(stderr.contains("Tasks: 5 total"), "{stderr}");
    let html = std::fs::read_to_string(sb.path().join("t.html")).unwrap();
    assert!(html.contains("a:fail"), "the timeline names the tasks");
    let junit = std::fs::read_to_string(sb.path().join("j.xml")).unwrap();
    assert!(junit.contains("<testsuite") && junit.contains("name=\"fail\""));
    let trace: Value =
        serde_json::from_str(&std::fs::read_to_string(sb.path().join("trace.json")).unwrap())
            .unwrap();
    assert!(!trace["traceEvents"].as_array().unwrap().is_empty());

    let missing = sb
        .subcommand("report", ["nope.json", "--timings", "x.html"])
        .output();
    missing.code_is(2);
    assert!(missing.stderr.contains("nope.json"));
}

/// A FIFO being read from the start, as `--report >(jq .)` is: the report
/// goes into it, and the FIFO stays.
#[test]
fn a_report_into_a_fifo_reaches_its_reader() {
    use rustix::fs::{Mode, OFlags};
    use std::os::unix::fs::FileTypeExt as _;

    let sb = Sandbox::new();
    let fifo = sb.join("fifo");
    agent33_testkit::mkfifo(&fifo);
    // The reader's end opens without waiting for a writer; the test holds a
    // writer of its own, so that the reader reads until agent-33 and the
    // test are both done with it, whatever agent-33 does.
    let reader = agent33_testkit::FifoReader::open(&fifo);
    let own_writer =
        rustix::fs::open(&fifo, OFlags::WRONLY | OFlags::NONBLOCK, Mode::empty()).unwrap();
    let read = reader.read_all();
    sb.run(["--command", "true", "--report", "fifo", "x"])
        .output()
        .code_is(0);
    drop(own_writer);
    let text = read.join().unwrap();
    let report: Value = serde_json::from_str(&text).expect("the reader got the report");
    assert_eq!(report["total"], 1);
    assert!(fifo.symlink_metadata().unwrap().file_type().is_fifo());
    assert_eq!(sb.files(), ["fifo"], "no file left beside it");
}

/// A FIFO nobody reads when the run starts does not hold the run up: the
/// task runs, and the report waits for a reader at the end.
#[test]
fn a_fifo_nobody_reads_yet_holds_up_only_the_report() {
    use std::os::unix::fs::FileTypeExt as _;

    let sb = Sandbox::new();
    let fifo = sb.join("fifo");
    agent33_testkit::mkfifo(&fifo);
    let running = sb
        .run(["--command", "touch", "--report", "fifo", "ran"])
        .spawn();
    crate::support::wait_for_file(&sb.join("ran"));
    let (tx, rx) = std::sync::mpsc::channel();
    let path = fifo.clone();
    std::thread::spawn(move || tx.send(std::fs::read_to_string(path)));
    let text = rx
        .recv_timeout(crate::support::HANG)
        .expect("the report reaches a reader that comes late (hang detector)")
        .unwrap();
    running.finish().code_is(0);
    let report: Value = serde_json::from_str(&text).expect("the reader got the report");
    assert_eq!(report["total"], 1);
    assert!(fifo.symlink_metadata().unwrap().file_type().is_fifo());
}

/// A FIFO whose reader never comes: once every task has ended, only the
/// report is waiting, and Ctrl-C ends agent-33 (130) instead of being
/// ignored forever.
#[test]
fn ctrl_c_ends_a_wait_for_a_fifo_reader_that_never_comes() {
    let sb = Sandbox::new();
    let fifo = sb.join("fifo");
    agent33_testkit::mkfifo(&fifo);
    let mut running = sb
        .run(["--command", "touch", "--report", "fifo", "ran"])
        .spawn();
    crate::support::wait_for_file(&sb.join("ran"));
    // The run may still be ending when the first signal comes (it then
    // stops the run, which ends at once); each later one finds it waiting
    // for the reader. Until it exits, or the hang detector gives up.
    let exited = crate::support::wait_until(crate::support::HANG, || {
        agent33_testkit::send_signal(running.pid(), agent33_testkit::Signal::INT);
        running.has_exited()
    });
    assert!(
        exited,
        "agent-33 still waits for the FIFO's reader after Ctrl-C"
    );
    running.finish().code_is(130);
}

/// A link is followed, also one to nothing yet: its target gets the report
/// and the link stays a link; the same through `agent-33 report`.
#[test]
fn a_report_through_a_symlink_replaces_its_target_and_the_link_stays() {
    use std::os::unix::fs::symlink;

    let sb = Sandbox::new();
    sb.write("reports/r.json", "previous");
    symlink("reports/r.json", sb.join("r.json")).unwrap();
    symlink("reports/new/j.xml", sb.join("j.xml")).unwrap();
    sb.run([
        "--command",
        "true",
        "--report",
        "r.json",
        "--junit",
        "j.xml",
        "x",
    ])
    .output()
    .code_is(0);
    assert_eq!(sb.report("reports/r.json").ids("succeeded"), ["command:x"]);
    assert!(sb.read("reports/new/j.xml").contains("<testsuite"));

    symlink("reports/t.html", sb.join("t.html")).unwrap();
    sb.subcommand(
        "report",
        ["r.json", "--timings", "t.html", "--junit", "j.xml"],
    )
    .output()
    .code_is(0);
    assert!(sb.read("reports/t.html").contains("<html"));
    for link in ["r.json", "j.xml", "t.html"] {
        let meta = sb.join(link).symlink_metadata().unwrap();
        assert!(meta.is_symlink(), "{link} is still a link");
    }
    assert_eq!(sb.files(), ["j.xml", "r.json", "reports", "t.html"]);
}

/// A device — here a /dev/null of the test's own, never the machine's —
/// is written into, and still a device after a run and after `agent-33
/// report` (as root, a rename would have put a regular file in its place).
#[test]
fn a_report_into_a_device_leaves_the_device() {
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};

    if !rustix::process::geteuid().is_root() {
        eprintln!("note: skipped, making a device needs root");
        return;
    }
    let sb = Sandbox::new();
    let null = sb.join("null");
    let status = std::process::Command::new("mknod")
        .arg(&null)
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(status.success(), "mknod");
    let is_null = || {
        let meta = null.symlink_metadata().unwrap();
        meta.file_type().is_char_device() && meta.rdev() == rustix::fs::makedev(1, 3)
    };
    sb.run(["--command", "true", "--report", "r.json", "x"])
        .output()
        .code_is(0);
    let every = ["--junit", "null", "--timings", "null", "--trace", "null"];
    let mut run = sb.run(["--command", "true", "--report", "null", "x"]);
    run.cmd.args(every);
    run.output().code_is(0);
    assert!(is_null(), "a run leaves the device");
    let mut report = sb.subcommand("report", ["r.json"]);
    report.cmd.args(every);
    report.output().code_is(0);
    assert!(is_null(), "`agent-33 report` leaves the device");
    assert_eq!(sb.files(), ["null", "r.json"]);
}

/// `/dev/stdout` and `/dev/fd/N` name a file we already hold open: the
/// report is written through it, whatever it is — a pipe, or the regular
/// file of a `>> out.json`, which keeps what it had. (The machine's own
/// `/dev/stdout` is not used: a sandboxed link to `/proc/self/fd/1` stands
/// for it.)
#[test]
fn a_report_to_stdout_is_written_to_stdout() {
    use std::os::unix::fs::MetadataExt as _;

    let sb = Sandbox::new();
    std::os::unix::fs::symlink("/proc/self/fd/1", sb.join("stdout")).unwrap();
    for path in ["/dev/fd/1", "stdout"] {
        let args = ["--output", "none", "--command", "true", "--report", path];
        let out = sb.run(args.iter().chain(&["x"])).output();
        out.code_is(0);
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{path}: {e}: {}", out.stdout()));
        assert_eq!(report["total"], 1, "{path}");
    }
    assert!(sb.join("stdout").symlink_metadata().unwrap().is_symlink());

    let out_json = sb.write("out.json", "before\n");
    let inode = out_json.metadata().unwrap().ino();
    let append = std::fs::OpenOptions::new()
        .append(true)
        .open(&out_json)
        .unwrap();
    let status = crate::support::agent33()
        .current_dir(sb.path())
        .args(["run", "--output", "none", "--command", "true"])
        .args(["--report", "/dev/fd/1", "x"])
        .stdout(append)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let text = sb.read("out.json");
    let rest = text.strip_prefix("before\n").expect("appended to");
    let report: Value = serde_json::from_str(rest).unwrap();
    assert_eq!(report["total"], 1);
    assert_eq!(out_json.metadata().unwrap().ino(), inode, "the same file");
}

#[test]
fn a_report_path_through_a_link_that_cannot_be_written_fails_before_the_run() {
    let sb = Sandbox::new();
    sb.write("a-file", "");
    std::os::unix::fs::symlink("a-file/out", sb.join("link")).unwrap();
    for path in ["link", "/dev/fd/987"] {
        let out = sb
            .run(["--command", "touch ran", "x", "--report", path])
            .output();
        out.usage_error(path);
        assert!(!sb.exists("ran"), "{path}: nothing ran");
    }
}
