//! PRODUCT.md, The CLI (Output) and Results (the console summary): output
//! modes, the summary's shape on stderr, and a closed stdout.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;

use crate::support::{HANG, Sandbox, script_manifest, wait_until};

/// Two tasks, `a` and `b`, that surely overlap: each prints 50 lines,
/// waits until the other has started, then prints 50 more.
fn overlapping_printers(sb: &Sandbox) {
    sb.manifest(&script_manifest(
        "",
        r#"other=a; [ "$1" = a ] && other=b
i=1; while [ $i -le 50 ]; do echo "$1-$i"; i=$((i+1)); done
wait_for "ran.$other"
while [ $i -le 100 ]; do echo "$1-$i"; i=$((i+1)); done"#,
        &["a", "b"],
    ));
}

/// The task content (`a-N`, `b-N`) a line ends with, if any.
fn content(line: &str) -> Option<&str> {
    let last = line.rsplit(' ').next()?;
    let (task, n) = last.split_once('-')?;
    ((task == "a" || task == "b") && !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        .then_some(last)
}

#[test]
fn grouped_output_prints_each_task_as_one_block_never_interleaved() {
    let sb = Sandbox::new();
    overlapping_printers(&sb);
    let out = sb.run(["-j", "2", "--timeout", "20"]).output();
    out.code_is(0);
    let stdout = out.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    for task in ["a", "b"] {
        let header = lines
            .iter()
            .position(|l| l.contains(&format!("t:{task}")))
            .unwrap_or_else(|| panic!("a header naming t:{task}:\n{stdout}"));
        // Right under the header: the task's 100 lines, in order, alone.
        let block: Vec<String> = (1..=100).map(|i| format!("{task}-{i}")).collect();
        assert_eq!(
            lines[header + 1..header + 101],
            block.iter().map(String::as_str).collect::<Vec<_>>()[..],
            "{stdout}"
        );
    }
    assert!(
        !stdout.contains("Execution Summary"),
        "the summary is on stderr"
    );
}

#[test]
fn stream_output_prefixes_every_line_with_the_task_id() {
    let sb = Sandbox::new();
    overlapping_printers(&sb);
    let out = sb
        .run(["-j", "2", "--timeout", "20", "--output", "stream"])
        .output();
    out.code_is(0);
    let stdout = out.stdout();
    let mut seen: Vec<(String, Vec<String>)> = vec![("a".into(), vec![]), ("b".into(), vec![])];
    for line in stdout.lines() {
        let Some(c) = content(line) else { continue };
        let prefix = &line[..line.len() - c.len()];
        let (task, lines) = seen
            .iter_mut()
            .find(|(t, _)| c.starts_with(t.as_str()))
            .expect("a or b");
        assert!(prefix.contains(&format!("t:{task}")), "line {line:?}");
        lines.push(c.to_owned());
    }
    for (task, lines) in seen {
        let want: Vec<String> = (1..=100).map(|i| format!("{task}-{i}")).collect();
        assert_eq!(lines, want, "{stdout}");
    }
}

#[test]
fn stream_output_prints_lines_while_the_task_runs() {
    let sb = Sandbox::new();
    let mut run = sb
        .run([
            "--output",
            "stream",
            "--command",
            "sh -c 'echo first; until [ -e go ]; do sleep 0.01; done; echo second' sh",
            "x",
        ])
        .spawn();
    let line = run.wait_for_stdout("first");
    assert!(line.contains("command:x"), "{line}");
    sb.write("go", "");
    let out = run.finish();
    out.code_is(0);
    assert!(out.stdout().contains("second"));
}

#[test]
fn output_none_prints_no_task_output() {
    let sb = Sandbox::new();
    overlapping_printers(&sb);
    let out = sb
        .run(["-j", "2", "--timeout", "20", "--output", "none"])
        .output();
    out.code_is(0);
    assert!(out.stdout.is_empty(), "{}", out.stdout());
    assert!(
        out.stderr.lines().all(|l| content(l).is_none()),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Execution Summary"));
}

/// PRODUCT.md, `-q`: no progress and no output of successful tasks —
/// failures' output and the summary only, whatever the output mode.
#[test]
fn quiet_prints_only_failures_output_and_the_summary() {
    for mode in ["grouped", "stream"] {
        let sb = Sandbox::new();
        sb.write(
            "t.sh",
            r#"echo "out-$1"; echo "err-$1" >&2; [ "$1" != bad ]"#,
        );
        let out = sb
            .run([
                "-q",
                "--output",
                mode,
                "-j",
                "2",
                "--continue-on-error",
                "--command",
                "sh t.sh",
                "ok",
                "bad",
                "fine",
            ])
            .output();
        out.code_is(1);
        let stdout = out.stdout();
        assert!(stdout.contains("out-bad"), "{mode}: {stdout}");
        assert!(out.stderr.contains("err-bad"), "{mode}: {}", out.stderr);
        for quiet in ["ok", "fine"] {
            assert!(!stdout.contains(quiet), "{mode}: {stdout}");
            assert!(
                !out.stderr.contains(&format!("err-{quiet}")),
                "{mode}: {}",
                out.stderr
            );
        }
        assert!(!out.stderr.contains("progress:"), "{mode}: {}", out.stderr);
        let s = summary(&out.stderr);
        assert_eq!(
            s[3], "Tasks: 3 total, 2 succeeded, 1 failed, 0 timeout, 0 cancelled, 0 skipped",
            "{mode}"
        );
    }
}

/// The summary's lines on stderr, from `Execution Summary` on.
fn summary(stderr: &str) -> Vec<&str> {
    let lines: Vec<&str> = stderr.lines().collect();
    let start = lines
        .iter()
        .position(|l| *l == "Execution Summary")
        .unwrap_or_else(|| panic!("no summary in:\n{stderr}"));
    lines[start..].to_vec()
}

fn percent(s: &str) -> bool {
    s.strip_suffix('%')
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

fn duration(s: &str) -> bool {
    (s.ends_with("ms") || s.ends_with('s') || s.ends_with('m') || s.ends_with('h'))
        && s.starts_with(|c: char| c.is_ascii_digit())
}

#[test]
fn the_summary_has_the_catalogs_shape() {
    let sb = Sandbox::new();
    sb.manifest(&script_manifest(
        "continue_on_error: true",
        r#"case "$1" in
  fail) exit 3 ;;
  slow) exec sleep 30 ;;
esac"#,
        &[
            "ok",
            "fail",
            "{agent: t, artifact: slow, timeout_seconds: 0.3}",
        ],
    ));
    let out = sb.run([] as [&str; 0]).output();
    out.code_is(1);
    let s = summary(&out.stderr);
    // The catalog's pinned lines come first; details may follow.
    assert!(s.len() >= 8, "{}", out.stderr);
    assert_eq!(s[0], "Execution Summary");
    assert_eq!(s[1], "=================");
    assert!(
        s[2].strip_prefix("Duration: ").is_some_and(duration),
        "{}",
        s[2]
    );
    assert_eq!(
        s[3],
        "Tasks: 3 total, 1 succeeded, 1 failed, 1 timeout, 0 cancelled, 0 skipped"
    );
    assert!(
        s[4].strip_prefix("Avg task time: ").is_some_and(duration),
        "{}",
        s[4]
    );
    assert!(
        s[5].strip_prefix("Parallel utilization: ")
            .is_some_and(percent),
        "{}",
        s[5]
    );
    assert_eq!(s[6], "Peak concurrent: 1/1");
    let failed = s[7].strip_prefix("Failed: ").expect("a Failed: line");
    assert!(failed.contains("t:fail (exit code 3)"), "{failed}");
    assert!(failed.contains("t:slow (timed out after 0.3s"), "{failed}");
    assert!(!failed.contains("t:ok"), "{failed}");
    assert!(!out.stdout().contains("Execution Summary"));
}

#[test]
fn the_failed_line_appears_only_when_something_did_not_succeed() {
    let sb = Sandbox::new();
    let out = sb.run(["-j", "3", "--command", "true", "a", "b"]).output();
    out.code_is(0);
    let s = summary(&out.stderr);
    assert!(s.len() >= 7, "{}", out.stderr);
    assert_eq!(
        s[3],
        "Tasks: 2 total, 2 succeeded, 0 failed, 0 timeout, 0 cancelled, 0 skipped"
    );
    assert!(
        s[6].starts_with("Peak concurrent: ") && s[6].ends_with("/3"),
        "{}",
        s[6]
    );
    assert!(!out.stderr.contains("Failed:"));
}

#[test]
fn the_failed_line_names_cancelled_and_skipped_tasks_with_their_reason() {
    let sb = Sandbox::new();
    sb.manifest(&script_manifest(
        "",
        r#"case "$1" in fail) exit 3 ;; esac"#,
        &[
            "{agent: t, artifact: fail, id: f}",
            "{agent: t, artifact: dep, depends_on: [f]}",
            "other",
        ],
    ));
    let out = sb.run([] as [&str; 0]).output();
    out.code_is(1);
    let s = summary(&out.stderr);
    assert_eq!(
        s[3],
        "Tasks: 3 total, 0 succeeded, 1 failed, 0 timeout, 1 cancelled, 1 skipped"
    );
    let failed = s[7].strip_prefix("Failed: ").expect("a Failed: line");
    assert!(failed.contains("f (exit code 3)"), "{failed}");
    assert!(
        failed.contains("t:dep (skipped: dependency `f` did not succeed)"),
        "{failed}"
    );
    assert!(
        failed.contains("t:other (not started: fail-fast after f failed)"),
        "{failed}"
    );
}

#[test]
fn the_failed_line_names_at_most_ten_tasks() {
    let sb = Sandbox::new();
    let artifacts: Vec<String> = (0..500).map(|i| format!("f{i:03}")).collect();
    let mut args = vec!["-j", "16", "--continue-on-error", "--command", "false"];
    args.extend(artifacts.iter().map(String::as_str));
    let out = sb.run(args).output();
    out.code_is(1);
    let s = summary(&out.stderr);
    assert_eq!(
        s[3],
        "Tasks: 500 total, 0 succeeded, 500 failed, 0 timeout, 0 cancelled, 0 skipped"
    );
    let failed = s
        .iter()
        .find(|l| l.starts_with("Failed: "))
        .unwrap_or_else(|| panic!("a Failed: line in:\n{}", out.stderr));
    let named: Vec<String> = artifacts[..10]
        .iter()
        .map(|a| format!("command:{a} (exit code 1)"))
        .collect();
    assert_eq!(
        *failed,
        format!("Failed: {}, … and 490 more", named.join(", "))
    );
}

#[test]
fn a_closed_stdout_ends_quietly() {
    for mode in ["grouped", "stream"] {
        let sb = Sandbox::new();
        let mut child = crate::support::agent33()
            .args([
                "run",
                "-j",
                "4",
                "--output",
                mode,
                "--command",
                "sh -c 'seq 1 100000' sh",
                "1",
                "2",
                "3",
                "4",
                "5",
                "6",
            ])
            .current_dir(sb.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("agent-33 starts");
        // `| head -1`: read one line, then close the pipe.
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut first)
            .expect("a first line");
        assert!(!first.is_empty());
        let mut stderr = String::new();
        let mut err = child.stderr.take().expect("piped");
        let reader = std::thread::spawn(move || {
            err.read_to_string(&mut stderr).expect("read stderr");
            stderr
        });
        assert!(
            wait_until(HANG, || child.try_wait().expect("try_wait").is_some()),
            "agent-33 ends after its stdout closed ({mode})"
        );
        let status = child.wait().expect("exit status");
        let stderr = reader.join().expect("stderr reader");
        assert!(!stderr.contains("panicked"), "{mode}: {stderr}");
        assert!(
            !stderr.to_lowercase().contains("broken pipe"),
            "{mode}: {stderr}"
        );
        assert!(!stderr.contains("error"), "{mode}: {stderr}");
        assert_eq!(status.code(), Some(0), "{mode}: {stderr}");
    }
}
