//! README, "Coming from GNU parallel or xargs": every row of the table,
//! run both ways on the same input, with the same standard output (sorted
//! where the peer does not keep order).
//!
//! GNU parallel is an `apt-get install parallel` away and `.ci/run`
//! installs it: under CI a missing peer fails the test; elsewhere the row
//! checks agent-33 alone against the output it must give.

use std::process::{Command, Stdio};

use crate::support::{BIN, Sandbox};

/// One row of the README's table: the peer's shell command and agent-33's,
/// each run by `sh -c` in the same prepared folder.
struct Row {
    peer: &'static str,
    ours: &'static str,
    /// The peer does not keep input order: compare sorted lines.
    sorted: bool,
}

/// The rows, in the README's order.
const ROWS: &[Row] = &[
    Row {
        peer: "find . -name '*.txt' -print0 | xargs -0 -P 4 -n 1 sha256sum",
        ours: "find . -name '*.txt' -print0 | agent-33 run -0 -j 4 --output bare --command sha256sum",
        sorted: true,
    },
    Row {
        peer: "parallel -k sha256sum ::: *.txt",
        ours: "agent-33 run -k --output bare --command sha256sum ::: *.txt",
        sorted: false,
    },
    Row {
        peer: "parallel -k echo {.} {/} {//} {/.} {#} ::: d/a.txt c.tar.gz",
        ours: "agent-33 run -k --output bare --command 'echo {.} {/} {//} {/.} {#}' ::: d/a.txt c.tar.gz",
        sorted: false,
    },
    Row {
        peer: "parallel 'gzip -c {} > {}.gz' ::: *.log && zcat one.log.gz two.log.gz",
        ours: "agent-33 run --shell --command 'gzip -c \"$1\" > \"$1.gz\"' ::: *.log && zcat one.log.gz two.log.gz",
        sorted: false,
    },
    Row {
        peer: "parallel -k < jobs.txt",
        ours: "agent-33 run -k --output bare --command 'sh -c {}' < jobs.txt",
        sorted: false,
    },
    Row {
        peer: "ls *.txt | xargs -d '\\n' -n 1 -P 4 wc -l",
        ours: "ls *.txt | agent-33 run -j 4 --output bare --command 'wc -l'",
        sorted: true,
    },
    Row {
        peer: "mkdir -p backup && xargs -I{} cp {} backup/ < list && ls backup",
        ours: "mkdir -p backup && agent-33 run --command 'cp {} backup/' < list && ls backup",
        sorted: false,
    },
    Row {
        peer: "parallel --halt now,fail=1 'test {} != bad' ::: a bad c; echo \"exit $?\"",
        ours: "agent-33 run --output none --command 'test {} != bad' ::: a bad c 2>/dev/null; echo \"exit $?\"",
        sorted: false,
    },
];

/// The same files for every row.
fn prepare(sb: &Sandbox) {
    sb.write("one.txt", "one\n");
    sb.write("two.txt", "two\nlines\n");
    sb.write("with space.txt", "spaced\n");
    sb.write("d/a.txt", "nested\n");
    sb.write("one.log", "log one\n");
    sb.write("two.log", "log two\n");
    sb.write(
        "jobs.txt",
        "echo first\necho second; echo more\nprintf 'third\\n'\n",
    );
    sb.write("list", "one.txt\ntwo.txt\n");
}

/// Runs `script` with `sh -c` in the sandbox, agent-33 first on PATH.
fn sh(sb: &Sandbox, script: &str) -> (String, Option<i32>) {
    let bin_dir = std::path::Path::new(BIN).parent().expect("a folder");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(sb.path())
        .env("PATH", path)
        .stdin(Stdio::null())
        .output()
        .expect("sh runs");
    (
        String::from_utf8(out.stdout).expect("UTF-8 output"),
        out.status.code(),
    )
}

fn normalise(text: &str, sorted: bool) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    if sorted {
        lines.sort_unstable();
    }
    lines.join("\n")
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program} >/dev/null"))
        .status()
        .is_ok_and(|s| s.success())
}

/// What agent-33 must print for each row when the peer cannot be run.
fn expected(row: usize) -> &'static str {
    match row {
        2 => "d/a a.txt d a 1\nc.tar c.tar.gz . c.tar 2",
        3 => "log one\nlog two",
        4 => "first\nsecond\nmore\nthird",
        6 => "one.txt\ntwo.txt",
        7 => "exit 1",
        // Checksums and line counts: computed by the tools themselves.
        _ => "",
    }
}

#[test]
fn every_row_of_the_coming_from_table_prints_what_the_peer_prints() {
    let parallel = have("parallel") && {
        // GNU parallel, not moreutils' parallel of the same name.
        let (version, _) = sh(
            &Sandbox::new(),
            "parallel --version 2>/dev/null | head -n 1",
        );
        version.contains("GNU parallel")
    };
    if !parallel && std::env::var_os("CI").is_some() {
        panic!("GNU parallel is missing: .ci/run installs it (apt-get install parallel)");
    }
    for (i, row) in ROWS.iter().enumerate() {
        let sb = Sandbox::new();
        prepare(&sb);
        let (ours, _) = sh(&sb, row.ours);
        let ours = normalise(&ours, row.sorted);
        let needs_parallel = row.peer.contains("parallel");
        if needs_parallel && !parallel {
            let want = expected(i);
            if !want.is_empty() {
                assert_eq!(ours, want, "row {i}: {}", row.ours);
            }
            assert!(!ours.is_empty(), "row {i}: {}", row.ours);
            continue;
        }
        let peer_sb = Sandbox::new();
        prepare(&peer_sb);
        let peer_script = row.peer.replacen("parallel", "parallel --will-cite", 1);
        let (peer, _) = sh(&peer_sb, &peer_script);
        let peer = normalise(&peer, row.sorted);
        assert!(
            !peer.is_empty(),
            "row {i}: the peer printed nothing: {}",
            row.peer
        );
        assert_eq!(
            ours, peer,
            "row {i}:\n  ours: {}\n  peer: {}",
            row.ours, row.peer
        );
    }
}
