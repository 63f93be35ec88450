//! PRODUCT.md, The CLI: ad-hoc mode (`--command`, `--artifacts-from`).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use crate::support::{SHOW_ARGS, Sandbox, assert_never_started, shown, wait_for_file};

/// Touches `done.ARTIFACT` (the artifact is appended as `$1`).
const TOUCH_DONE: &str = "sh -c 'touch \"done.$1\"' sh";

#[test]
fn streamed_input_starts_tasks_before_it_ends() {
    let sb = Sandbox::new();
    let mut run = sb
        .run([
            "--command",
            TOUCH_DONE,
            "--artifacts-from",
            "-",
            "--report",
            "r.json",
        ])
        .spawn();
    run.write_stdin(b"one\n").expect("write a line");
    // The first task runs while stdin is still open.
    wait_for_file(&sb.join("done.one"));
    assert!(!run.has_exited(), "the run waits for more input");
    run.write_stdin(b"two\n").expect("write a line");
    wait_for_file(&sb.join("done.two"));
    run.write_stdin(b"three\n").expect("write a line");
    let out = run.finish();
    out.code_is(0);
    let r = sb.report("r.json");
    assert_eq!(
        r.ids("succeeded"),
        ["command:one", "command:two", "command:three"]
    );
}

#[test]
fn after_the_stop_trigger_no_more_input_is_read() {
    let sb = Sandbox::new();
    let mut run = sb
        .run([
            "--command",
            "sh -c 'touch \"done.$1\"; [ \"$1\" != bad ]' sh",
            "--artifacts-from",
            "-",
            "--report",
            "r.json",
        ])
        .spawn();
    run.write_stdin(b"ok\nbad\n").expect("write lines");
    // The run ends at the failure, although stdin is still open …
    run.wait_exit();
    // … and what comes later is not part of it.
    let _ = run.write_stdin(b"later1\nlater2\n");
    let out = run.finish();
    out.code_is(1);
    let r = sb.report("r.json");
    assert_eq!(r.total(), 2, "{:#}", r.0);
    assert_eq!(r.ids("succeeded"), ["command:ok"]);
    assert_eq!(r.ids("failed"), ["command:bad"]);
    assert!(!sb.exists("done.later1"));
}

#[test]
fn lines_read_before_the_stop_are_cancelled_and_the_rest_never_read() {
    let sb = Sandbox::new();
    let mut input = b"bad\n".to_vec();
    for i in 0..5000 {
        input.extend_from_slice(format!("line{i}\n").as_bytes());
    }
    let mut run = sb
        .run([
            "--command",
            "sh -c 'exit 3' sh",
            "--artifacts-from",
            "-",
            "--report",
            "r.json",
        ])
        .spawn();
    // The run may stop (and close its stdin) before all of this is written.
    let _ = run.write_stdin(&input);
    let out = run.finish();
    out.code_is(1);
    let r = sb.report("r.json");
    assert!(r.total() < 5001, "total {}", r.total());
    assert_eq!(r.ids("failed"), ["command:bad"]);
    for t in r.list("cancelled") {
        assert_never_started(t);
    }
    assert_eq!(r.list("cancelled").len() as u64, r.total() - 1);
}

#[test]
fn blank_lines_are_skipped_line_endings_stripped_and_repeats_numbered() {
    let sb = Sandbox::new();
    sb.write("show.sh", SHOW_ARGS);
    let input: &[u8] = b"a\n\n \t \nb\r\na\n  d  \n\r\na\nc";
    for (source, stdin) in [("list.txt", None), ("-", Some(input))] {
        sb.write("list.txt", input);
        let mut run = sb
            .run([
                "--command",
                "sh show.sh",
                "--artifacts-from",
                source,
                "--report",
                "r.json",
            ])
            .spawn();
        if let Some(bytes) = stdin {
            run.write_stdin(bytes).expect("write stdin");
        }
        run.finish().code_is(0);
        let r = sb.report("r.json");
        assert_eq!(
            r.ids("succeeded"),
            [
                "command:a",
                "command:b",
                "command:a#2",
                "command:  d  ",
                "command:a#3",
                "command:c",
            ],
            "{source}"
        );
        let artifacts: Vec<&str> = r
            .list("succeeded")
            .iter()
            .map(|t| t["task"]["artifact"].as_str().expect("artifact"))
            .collect();
        assert_eq!(artifacts, ["a", "b", "a", "  d  ", "a", "c"], "{source}");
        // The command got exactly those bytes: no `\r`.
        assert_eq!(r.task("command:b")["output"], shown(&[b"b"]));
    }
}

#[test]
fn repeated_positional_artifacts_are_numbered_too() {
    let sb = Sandbox::new();
    let out = sb
        .run([
            "--command",
            "true",
            "--report",
            "r.json",
            "x",
            "y",
            "x",
            "x",
        ])
        .output();
    out.code_is(0);
    assert_eq!(
        sb.report("r.json").ids("succeeded"),
        ["command:x", "command:y", "command:x#2", "command:x#3"]
    );
}

#[test]
fn a_template_without_placeholder_gets_the_artifact_appended() {
    let sb = Sandbox::new();
    sb.write("show.sh", SHOW_ARGS);
    let out = sb
        .run([
            "--command",
            "sh show.sh first 'second word'",
            "--report",
            "r.json",
            "the artifact",
        ])
        .output();
    out.code_is(0);
    let r = sb.report("r.json");
    assert_eq!(
        r.task("command:the artifact")["output"],
        shown(&[b"first", b"second word", b"the artifact"])
    );
}

#[test]
fn the_agent_is_named_command_and_runs_in_the_current_folder() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.join("work")).expect("mkdir");
    // A manifest in the folder is not read, whatever it holds.
    sb.write("work/agent33.yaml", "garbage: [");
    let out = sb
        .run([
            "--command",
            "sh -c 'pwd -P; echo \"$AGENT33_AGENT $AGENT33_TASK_ID\"' sh",
            "--report",
            "r.json",
            "art",
        ])
        .current_dir(sb.join("work"))
        .output();
    out.code_is(0);
    let r = sb.report("work/r.json");
    let t = r.task("command:art");
    assert_eq!(t["task"]["agent"], "command");
    assert_eq!(t["task"]["artifact"], "art");
    assert_eq!(
        t["output"],
        format!("{}\ncommand command:art\n", sb.join("work").display())
    );
}

#[test]
fn no_artifacts_means_no_tasks_and_success() {
    let sb = Sandbox::new();
    sb.write("empty.txt", "\n  \n");
    for args in [
        vec!["--command", "touch ran", "--artifacts-from", "empty.txt"],
        vec!["--command", "touch ran"],
    ] {
        let mut cmd = sb.run(&args);
        cmd.cmd.args(["--report", "r.json"]);
        let out = cmd.output();
        out.code_is(0);
        assert_eq!(sb.report("r.json").total(), 0);
        assert!(!sb.exists("ran"));
        assert!(
            out.stderr.contains("Tasks: 0 total") && out.stderr.contains("Avg task time: -"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn non_utf8_artifacts_get_distinct_ids_and_keep_their_bytes() {
    let sb = Sandbox::new();
    sb.write("show.sh", SHOW_ARGS);
    let a = OsString::from_vec(b"x\xff".to_vec());
    let b = OsString::from_vec(b"x\xfe".to_vec());
    let mut cmd = sb.run(["--command", "sh show.sh", "--report", "r.json", "--"]);
    cmd.cmd.arg(&a).arg(&b);
    cmd.output().code_is(0);
    let r = sb.report("r.json");
    let ok = r.list("succeeded");
    assert_eq!(ok.len(), 2);
    assert_ne!(ok[0]["task"]["id"], ok[1]["task"]["id"], "ids are unique");
    assert_eq!(ok[0]["output"], shown(&[b"x\xff"]));
    assert_eq!(ok[1]["output"], shown(&[b"x\xfe"]));
}

#[test]
fn a_run_whose_input_the_deadline_cut_short_exits_1() {
    let sb = Sandbox::new();
    let mut run = sb
        .run([
            "--command",
            TOUCH_DONE,
            "--artifacts-from",
            "-",
            // Generous: the one task must succeed before the deadline.
            "--deadline",
            "2",
            "--output",
            "none",
            "--report",
            "r.json",
        ])
        .spawn();
    run.write_stdin(b"first\n").expect("write a line");
    // Stdin stays open: only the deadline can end the run.
    run.wait_exit();
    let out = run.finish();
    // Every task that ran succeeded, but the input was not all read.
    out.code_is(1);
    assert!(
        out.stderr.contains("Stopped: run deadline (2s) passed"),
        "{}",
        out.stderr
    );
    let r = sb.report("r.json");
    assert_eq!(r.total(), 1, "{:#}", r.0);
    assert_eq!(r.ids("succeeded"), ["command:first"]);
    assert_eq!(r.0["stopped"]["kind"], "deadline", "{:#}", r.0);
}
