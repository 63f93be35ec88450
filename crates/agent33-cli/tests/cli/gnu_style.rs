//! PRODUCT.md, The CLI: artifacts as GNU parallel and xargs take them —
//! `::: A B …`, `:::: FILE`, `-0` (NUL-ended items), and stdin when no
//! artifact is given and stdin is not a terminal.

use std::process::{Command, Stdio};
use std::time::Instant;

use crate::support::{BIN, HANG, Output, SHOW_ARGS, Sandbox, shown, wait_until};

/// Runs `agent-33 run ARGS…` in the sandbox with `stdin` as given (not a
/// pipe the test holds open), to its end.
fn run_with_stdin(sb: &Sandbox, mut cmd: Command, stdin: Stdio) -> Output {
    let started = Instant::now();
    let mut child = cmd
        .current_dir(sb.path())
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent-33 starts");
    if !wait_until(HANG, || child.try_wait().expect("try_wait").is_some()) {
        let _ = child.kill();
        panic!("agent-33 did not exit within {HANG:?} (hang detector)");
    }
    let out = child.wait_with_output().expect("its output");
    Output {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

fn agent33_run(args: &[&str]) -> Command {
    let mut cmd = crate::support::agent33();
    cmd.arg("run").args(args);
    cmd
}

#[test]
fn every_word_after_three_colons_is_an_artifact() {
    let sb = Sandbox::new();
    sb.write("show.sh", SHOW_ARGS);
    let out = sb
        .run([
            "--command",
            "sh show.sh",
            "--report",
            "r.json",
            ":::",
            "a b",
            "-x",
            "--junit",
            "j.xml",
        ])
        .output();
    out.code_is(0);
    let r = sb.report("r.json");
    assert_eq!(
        r.ids("succeeded"),
        [
            "command:a b",
            "command:-x",
            "command:--junit",
            "command:j.xml"
        ]
    );
    assert_eq!(r.task("command:-x")["output"], shown(&[b"-x"]));
    assert!(!sb.exists("j.xml"), "--junit after ::: is an artifact");
}

#[test]
fn four_colons_read_a_file_and_a_dash_reads_stdin() {
    let sb = Sandbox::new();
    sb.write("list.txt", "one\n\ntwo\n");
    let out = sb
        .run([
            "--command",
            "true",
            "--report",
            "r.json",
            "::::",
            "list.txt",
        ])
        .output();
    out.code_is(0);
    assert_eq!(
        sb.report("r.json").ids("succeeded"),
        ["command:one", "command:two"]
    );
    let mut run = sb
        .run(["--command", "true", "--report", "r.json", "::::", "-"])
        .spawn();
    run.write_stdin(b"three\nfour\n").expect("write stdin");
    run.finish().code_is(0);
    assert_eq!(
        sb.report("r.json").ids("succeeded"),
        ["command:three", "command:four"]
    );
    sb.run(["--command", "true", "::::", "missing.txt"])
        .output()
        .usage_error("cannot read artifacts from missing.txt");
}

/// GNU parallel combines several input sources into every combination of
/// their items; agent-33 takes one list and says so rather than run
/// something else.
#[test]
fn more_than_one_list_of_artifacts_is_a_usage_error() {
    let sb = Sandbox::new();
    sb.write("f", "x\n");
    sb.write("g", "y\n");
    let product = "GNU parallel would run every combination";
    let cases: &[(&[&str], &str)] = &[
        (&[":::", "a", ":::", "b"], product),
        (&[":::", "a", "::::", "f"], product),
        (&["::::", "f", "g"], product),
        (&["x", ":::", "a"], "unexpected argument \"x\" before :::"),
        (
            &["--artifacts-from", "f", ":::", "a"],
            "give ad-hoc artifacts either with --artifacts-from or after :::, not both",
        ),
        (
            &["--artifacts-from", "f", "x"],
            "give ad-hoc artifacts either as arguments or with --artifacts-from, not both",
        ),
        (&["::::"], ":::: needs a FILE of artifacts"),
    ];
    for (args, want) in cases {
        let mut cmd = sb.run(["--command", "touch ran"]);
        cmd.cmd.args(*args);
        cmd.output().usage_error(want);
    }
    assert!(!sb.exists("ran"));
    sb.run([":::", "a"])
        .output()
        .usage_error("::: needs --command TEMPLATE");
    sb.run(["::::", "f"])
        .output()
        .usage_error(":::: needs --command TEMPLATE");
}

/// `:::` with nothing after it says the artifacts are there: there are
/// none, and stdin is not read.
#[test]
fn three_colons_and_nothing_after_means_no_artifacts() {
    let sb = Sandbox::new();
    let mut run = sb
        .run(["--command", "sh -c 'touch \"ran.$1\"' sh", ":::"])
        .spawn();
    // Stdin stays open: reading it would hang the run.
    run.write_stdin(b"from-stdin\n").expect("write stdin");
    run.wait_exit();
    let out = run.finish();
    out.code_is(0);
    assert!(!sb.exists("ran.from-stdin"));
    assert!(
        out.stderr.contains("agent-33: no artifacts: none given"),
        "{}",
        out.stderr
    );
}

#[test]
fn null_ended_items_keep_spaces_and_newlines_and_skip_empty_ones() {
    let sb = Sandbox::new();
    sb.write("show.sh", SHOW_ARGS);
    let items: &[u8] = b"a b\0\0line\nbreak\0 \0\xff\0last";
    sb.write("list", items);
    let want = [&b"a b"[..], b"line\nbreak", b" ", b"\xff", b"last"];
    for four_colons in [false, true] {
        for from_stdin in [false, true] {
            let file = if from_stdin { "-" } else { "list" };
            let mut args = vec!["-0", "--command", "sh show.sh", "--report", "r.json"];
            // `::::` goes last: every word after it is a file.
            if four_colons {
                args.extend(["::::", file]);
            } else {
                args.extend(["--artifacts-from", file]);
            }
            let mut run = sb.run(&args).spawn();
            if from_stdin {
                run.write_stdin(items).expect("write stdin");
            }
            run.finish().code_is(0);
            let r = sb.report("r.json");
            let outputs: Vec<String> = r
                .list("succeeded")
                .iter()
                .map(|t| t["output"].as_str().expect("output").to_owned())
                .collect();
            let expected: Vec<String> = want.iter().map(|a| shown(&[a])).collect();
            assert_eq!(outputs, expected, "{args:?}");
        }
    }
}

/// With nothing else given and stdin not a terminal, artifacts are read
/// from stdin, as xargs and GNU parallel do; tasks start while it is open.
#[test]
fn without_artifacts_stdin_is_read() {
    let sb = Sandbox::new();
    let mut run = sb
        .run([
            "--command",
            "sh -c 'touch \"done.$1\"' sh",
            "--report",
            "r.json",
        ])
        .spawn();
    run.write_stdin(b"one\n").expect("write a line");
    crate::support::wait_for_file(&sb.join("done.one"));
    run.write_stdin(b"\ntwo\n").expect("write a line");
    let out = run.finish();
    out.code_is(0);
    assert_eq!(
        sb.report("r.json").ids("succeeded"),
        ["command:one", "command:two"]
    );
    assert!(!out.stderr.contains("no artifacts"), "{}", out.stderr);

    // -0 applies to stdin too.
    let mut run = sb
        .run(["-0", "--command", "true", "--report", "r.json"])
        .spawn();
    run.write_stdin(b"x y\0z\0").expect("write stdin");
    run.finish().code_is(0);
    assert_eq!(
        sb.report("r.json").ids("succeeded"),
        ["command:x y", "command:z"]
    );
}

/// Tests and CI run with stdin on /dev/null or closed: nothing is read,
/// the run says so and succeeds, and nothing hangs.
#[test]
fn stdin_that_is_empty_or_closed_gives_no_artifacts_and_a_note() {
    let sb = Sandbox::new();
    let out = run_with_stdin(&sb, agent33_run(&["--command", "touch ran"]), Stdio::null());
    out.code_is(0);
    assert!(
        out.stderr
            .contains("agent-33: no artifacts: standard input had none"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Tasks: 0 total"), "{}", out.stderr);
    let mut closed = Command::new("sh");
    closed
        .args([
            "-c",
            "exec 0<&-; exec \"$0\" run --command 'touch ran'",
            BIN,
        ])
        .env_remove("AGENT33_PARALLEL");
    let out = run_with_stdin(&sb, closed, Stdio::null());
    out.code_is(0);
    assert!(
        out.stderr.contains("agent-33: no artifacts:"),
        "{}",
        out.stderr
    );
    assert!(!sb.exists("ran"));
    // So does a list with no artifact in it.
    sb.write("blank.txt", "\n \n");
    let out = sb
        .run(["--command", "touch ran", "--artifacts-from", "blank.txt"])
        .output();
    out.code_is(0);
    assert!(
        out.stderr
            .contains("agent-33: no artifacts: blank.txt has none"),
        "{}",
        out.stderr
    );
    // A dry run too.
    let out = run_with_stdin(
        &sb,
        agent33_run(&["--dry-run", "--command", "touch ran"]),
        Stdio::null(),
    );
    out.code_is(0);
    assert!(
        out.stderr.contains("agent-33: no artifacts:"),
        "{}",
        out.stderr
    );
}

/// Artifacts on the command line, or a manifest run: stdin is never read,
/// even when it stays open.
#[test]
fn stdin_is_not_read_when_artifacts_come_from_elsewhere() {
    let sb = Sandbox::new();
    sb.manifest(
        "agents:\n  t: {command: \"touch m.{artifact}\"}\ntasks:\n  - {agent: t, artifact: x}\n",
    );
    let cases: [&[&str]; 2] = [&[], &["--command", "sh -c 'touch \"a.$1\"' sh", "y"]];
    for args in cases {
        let mut run = sb.run(args).spawn();
        run.write_stdin(b"from-stdin\n").expect("write stdin");
        // Stdin stays open; the run ends anyway.
        run.wait_exit();
        run.finish().code_is(0);
    }
    assert!(sb.exists("m.x") && sb.exists("a.y"));
    assert!(!sb.exists("a.from-stdin"));
}

#[test]
fn null_without_an_ad_hoc_command_is_a_usage_error() {
    let sb = Sandbox::new();
    sb.manifest("agents:\n  t: {command: \"true\"}\ntasks: []\n");
    sb.run(["-0"])
        .output()
        .usage_error("-0/--null needs --command TEMPLATE");
}
