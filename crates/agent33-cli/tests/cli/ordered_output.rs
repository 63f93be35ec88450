//! PRODUCT.md, The CLI: `-k/--keep-order`, `--output bare`, and progress
//! while the input is still being read.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::process::Command;

use crate::support::Sandbox;

/// Task N prints `out N` once task N+1 has finished (the last one at
/// once), so with four slots they finish in reverse input order.
const REVERSE: &str = r#"sh -c 'n=$1; if [ "$n" -lt 4 ]; then until [ -e "done.$((n+1))" ]; do sleep 0.01; done; fi; echo "out $n"; touch "done.$n"' sh"#;

#[test]
fn keep_order_prints_grouped_blocks_in_input_order() {
    let sb = Sandbox::new();
    let args = ["-j", "4", "--timeout", "20", "--command", REVERSE];
    let blocks = |extra: &[&str]| -> Vec<String> {
        for n in 1..=4 {
            let _ = std::fs::remove_file(sb.join(format!("done.{n}")));
        }
        let mut cmd = sb.run(args);
        cmd.cmd.args(extra).args([":::", "1", "2", "3", "4"]);
        let out = cmd.output();
        out.code_is(0);
        out.stdout()
            .lines()
            .filter(|l| l.starts_with("out "))
            .map(str::to_owned)
            .collect()
    };
    // Without -k: as they finish. The scripts make the reverse order very
    // likely, but which exit agent-33 sees first is the kernel's and the
    // scheduler's business, so the expectation is the order agent-33
    // recorded, which its journal keeps.
    let journal = sb.join("finish-order.jsonl");
    let as_finished = blocks(&["--journal", journal.to_str().expect("utf-8 path")]);
    let finish_order: Vec<String> = std::fs::read_to_string(&journal)
        .expect("the journal was written")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["status"] == "success")
        .map(|r| format!("out {}", r["artifact"].as_str().expect("artifact")))
        .collect();
    assert_eq!(finish_order.len(), 4, "{finish_order:?}");
    assert_eq!(as_finished, finish_order);
    assert_eq!(blocks(&["-k"]), ["out 1", "out 2", "out 3", "out 4"]);
}

#[test]
fn keep_order_with_bare_output_gives_input_order_for_streamed_input() {
    let sb = Sandbox::new();
    let mut run = sb
        .run([
            "-j",
            "4",
            "--timeout",
            "20",
            "--keep-order",
            "--output",
            "bare",
            "--command",
            REVERSE,
        ])
        .spawn();
    run.write_stdin(b"1\n2\n3\n4\n").expect("write stdin");
    let out = run.finish();
    out.code_is(0);
    assert_eq!(out.stdout(), "out 1\nout 2\nout 3\nout 4\n");
}

#[test]
fn keep_order_cannot_reorder_live_lines() {
    let sb = Sandbox::new();
    sb.run(["-k", "--output", "stream", "--command", "true", "a"])
        .output()
        .usage_error("-k/--keep-order cannot be used with --output stream");
}

/// `--output bare`: the bytes each task wrote, nothing added — no header,
/// no prefix, no newline — and its stderr, as written, to stderr.
#[test]
fn bare_output_adds_nothing() {
    let sb = Sandbox::new();
    let out = sb
        .run([
            "--output",
            "bare",
            "--command",
            r#"sh -c 'printf %s-out "$1"; printf %s-err "$1" >&2; printf "\377"' sh"#,
            ":::",
            "a",
            "b",
        ])
        .output();
    out.code_is(0);
    assert_eq!(out.stdout, b"a-out\xffb-out\xff");
    assert!(
        out.stderr.starts_with("a-errb-err"),
        "task stderr comes first, as written:\n{}",
        out.stderr
    );
    assert!(out.stderr.contains("Execution Summary"), "{}", out.stderr);
}

/// `-q` with bare output: only the output of tasks that did not succeed.
#[test]
fn quiet_bare_output_prints_only_failures() {
    let sb = Sandbox::new();
    let out = sb
        .run([
            "-q",
            "-k",
            "--continue-on-error",
            "--output",
            "bare",
            "--command",
            r#"sh -c 'echo "$1"; [ "$1" != bad ]' sh"#,
            ":::",
            "ok",
            "bad",
            "fine",
        ])
        .output();
    out.code_is(1);
    assert_eq!(out.stdout(), "bad\n");
}

/// PRODUCT.md's promise: `find -print0 | agent-33 run -0 -k --output bare
/// --command 'sha256sum {}'` writes byte for byte what `sha256sum` writes
/// for the same files in the same order, whatever order the tasks finish
/// in and whatever the file names hold.
#[test]
fn bare_keep_order_sha256sum_matches_sha256sum() {
    let sb = Sandbox::new();
    for i in 0..40u32 {
        // Sizes from tiny to a few hundred KiB, so tasks end out of order.
        let size = (i as usize * 7919) % 300_000;
        let body: Vec<u8> = (0..size).map(|b| (b as u32 * 31 + i) as u8).collect();
        sb.write(format!("d/file {i}.txt"), body);
    }
    sb.write("d/sub/new\nline.txt", "x");
    sb.write("d/sub/-dash.txt", "y");
    sb.write("d/sub/not-this.dat", "z");
    let found = Command::new("find")
        .args([".", "-name", "*.txt", "-print0"])
        .current_dir(sb.path())
        .output()
        .expect("find runs");
    assert!(found.status.success());
    let names: Vec<OsString> = found
        .stdout
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| OsString::from_vec(n.to_vec()))
        .collect();
    assert_eq!(names.len(), 42);

    let want = Command::new("sha256sum")
        .args(&names)
        .current_dir(sb.path())
        .output()
        .expect("sha256sum runs");
    assert!(want.status.success());

    let mut run = sb
        .run([
            "-0",
            "-k",
            "-j",
            "8",
            "--output",
            "bare",
            "--command",
            "sha256sum {}",
        ])
        .spawn();
    run.write_stdin(&found.stdout).expect("write the list");
    let out = run.finish();
    out.code_is(0);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&want.stdout)
    );
    assert_eq!(out.stdout, want.stdout);
    assert!(names.iter().any(|n| n.as_bytes().contains(&b'\n')));
}

/// Off a terminal, while the input is still open, progress says how many
/// tasks are done and at what rate (the total is not known yet).
#[test]
fn progress_of_streamed_input_shows_a_rate() {
    let sb = Sandbox::new();
    let mut run = sb
        .run([
            "--command",
            "sh -c 'until [ -e go ]; do sleep 0.01; done' sh",
        ])
        .spawn();
    run.write_stdin(b"a\n").expect("write a line");
    let line = run.wait_for_stderr("progress:");
    assert!(
        line.starts_with("progress: 0 done, 0.0 tasks/s, 1 running, 0 failed, "),
        "{line}"
    );
    sb.write("go", "");
    run.finish().code_is(0);
}

/// `--output bare` is each task's bytes exactly: when the reader of
/// agent-33's stdout falls far behind (here it reads nothing for a while),
/// the tasks' writes wait; nothing is dropped and no marker is added.
#[test]
fn bare_output_drops_nothing_when_its_reader_is_slow() {
    let sb = Sandbox::new();
    let bin = std::path::Path::new(crate::support::BIN);
    // 3 tasks of 12 MB each: more than the 16 MiB of live output that may
    // wait for the reader.
    let script = format!(
        "{} run -j 3 --output bare --shell --command 'head -c 12000000 /dev/zero' ::: a b c \
         2>/dev/null | {{ sleep 1; wc -c; }}",
        bin.display()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(sb.path())
        .output()
        .expect("sh runs");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "36000000");
}
