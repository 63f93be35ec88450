//! PRODUCT.md: an invalid manifest, setting or flag combination is a usage
//! error — exit 2, a message naming the setting and where it came from
//! (file:line:column for the manifest), and nothing runs. Every manifest
//! here has a task that would create the file `ran`.

use std::time::Duration;

use crate::support::Sandbox;

/// A valid agent and task that leave `ran` behind if anything runs.
const RUNNABLE: &str =
    "agents:\n  t: {command: \"touch ran\"}\ntasks:\n  - {agent: t, artifact: x}\n";

/// Runs `agent-33 run ARGS` over `manifest` (as `agent33.yaml`, when not
/// empty) with `env`, and checks the usage error.
fn usage_error(manifest: &str, args: &[&str], env: &[(&str, &str)], message: &str) {
    let sb = Sandbox::new();
    if !manifest.is_empty() {
        sb.manifest(manifest);
    }
    let mut cmd = sb.run(args);
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let out = cmd.output();
    out.usage_error(message);
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", out.stdout());
    assert!(!sb.exists("ran"), "nothing ran for {message:?}");
}

#[test]
fn unknown_keys_are_errors_with_their_place() {
    usage_error(
        &format!("execution:\n  paralel_limit: 2\n{RUNNABLE}"),
        &[],
        &[],
        "agent-33: error: agent33.yaml:2:3: execution: unknown field `paralel_limit`",
    );
    usage_error(
        "agents:\n  t: {command: \"touch ran\", bogus: 1}\ntasks:\n  - {agent: t, artifact: x}\n",
        &[],
        &[],
        "agent33.yaml:2:29: agents.t: unknown field `bogus`",
    );
    usage_error(
        "agents:\n  t: {command: \"touch ran\"}\ntasks:\n  - {agent: t, artifact: x, depend_on: [y]}\n",
        &[],
        &[],
        "agent33.yaml:4:29: tasks[0]: unknown field `depend_on`",
    );
    usage_error(
        &format!("{RUNNABLE}extra: 1\n"),
        &[],
        &[],
        "agent33.yaml:5:1: unknown field `extra`",
    );
}

#[test]
fn agent_and_task_mistakes_name_the_place() {
    usage_error(
        "agents:\n  t: {command: \"touch ran\"}\ntasks:\n  - {agent: t, artifact: x}\n  - {agent: lint, artifact: y}\n",
        &[],
        &[],
        "agent33.yaml:5:13: unknown agent `lint` in task 2 (agents: t)",
    );
    usage_error(
        &format!("{RUNNABLE}  - {{agent: t, artifact: x}}\n"),
        &[],
        &[],
        "agent33.yaml:5:5: duplicate task id `t:x` (task 2 repeats task 1)",
    );
    usage_error(
        &format!("{RUNNABLE}  - {{agent: t, artifact: y, id: t:x}}\n"),
        &[],
        &[],
        "duplicate task id `t:x` (task 2 repeats task 1)",
    );
    usage_error(
        &format!("{RUNNABLE}  - agent: t\n    id: many\n    artifacts: ['*.yaml']\n"),
        &[],
        &[],
        "agent33.yaml:6:5: task 2: an `artifacts:` entry cannot carry an `id:`",
    );
    usage_error(
        &format!("{RUNNABLE}  - agent: t\n    artifacts: ['*.nomatch']\n"),
        &[],
        &[],
        "agent33.yaml:6:17: glob `*.nomatch` in task 2 matches nothing",
    );
    usage_error(
        &format!("{RUNNABLE}  - {{agent: t, artifact: y, artifacts: [z]}}\n"),
        &[],
        &[],
        "task 2 has both `artifact` and `artifacts`",
    );
    usage_error(
        "agents:\n  t: {command: \"touch ran\", cwd: nowhere}\ntasks:\n  - {agent: t, artifact: x}\n",
        &[],
        &[],
        "agent33.yaml:2:34: agent `t`: folder ./nowhere does not exist",
    );
    usage_error(
        "agents:\n  t: {command: \"touch {artifact}\", shell: true}\ntasks:\n  - {agent: t, artifact: ran}\n",
        &[],
        &[],
        "agent33.yaml:2:16: agent `t`:",
    );
    usage_error(
        &format!("{RUNNABLE}  - {{agent: t, artifact: y, timeout_seconds: -1}}\n"),
        &[],
        &[],
        "agent33.yaml:5:46: invalid value -1 for timeout_seconds of task 2: expected a number of seconds ≥ 0",
    );
}

#[test]
fn parallel_limit_zero_names_where_it_came_from() {
    usage_error(
        &format!("execution:\n  parallel_limit: 0\n{RUNNABLE}"),
        &[],
        &[],
        "agent33.yaml:2:19: invalid value 0 for parallel_limit: expected a whole number ≥ 1",
    );
    usage_error(
        RUNNABLE,
        &["-j", "0"],
        &[],
        "invalid value \"0\" for parallel_limit (from flag -j/--parallel-limit): expected a whole number ≥ 1",
    );
    usage_error(
        RUNNABLE,
        &[],
        &[("AGENT33_PARALLEL_LIMIT", "0")],
        "invalid value \"0\" for parallel_limit (from environment variable AGENT33_PARALLEL_LIMIT): expected a whole number ≥ 1",
    );
    usage_error(
        RUNNABLE,
        &[],
        &[("AGENT33_PARALLEL_LIMIT", "abc")],
        "invalid value \"abc\" for parallel_limit (from environment variable AGENT33_PARALLEL_LIMIT)",
    );
    // Invalid anywhere is invalid, even under a valid flag.
    usage_error(
        RUNNABLE,
        &["-j", "2"],
        &[("AGENT33_PARALLEL_LIMIT", "0")],
        "(from environment variable AGENT33_PARALLEL_LIMIT)",
    );
    usage_error(
        "agents:\n  t: {command: \"touch ran\", parallel_limit: 0}\ntasks:\n  - {agent: t, artifact: x}\n",
        &[],
        &[],
        "agent33.yaml:2:45: invalid value 0 for parallel_limit of agent `t`: expected a whole number ≥ 1",
    );
}

#[test]
fn bad_timeouts_name_the_setting_and_the_source() {
    usage_error(
        &format!("execution:\n  timeout_seconds: -1\n{RUNNABLE}"),
        &[],
        &[],
        "agent33.yaml:2:20: invalid value -1 for timeout_seconds: expected a number of seconds ≥ 0",
    );
    usage_error(
        &format!("execution:\n  timeout_seconds: soon\n{RUNNABLE}"),
        &[],
        &[],
        "agent33.yaml:2:20: invalid value \"soon\" for timeout_seconds",
    );
    usage_error(
        RUNNABLE,
        &["--timeout", "-1"],
        &[],
        "invalid value \"-1\" for timeout_seconds (from flag --timeout): expected a number of seconds ≥ 0",
    );
    usage_error(
        RUNNABLE,
        &["--timeout", "abc"],
        &[],
        "invalid value \"abc\" for timeout_seconds (from flag --timeout)",
    );
    usage_error(
        RUNNABLE,
        &[],
        &[("AGENT33_TASK_TIMEOUT", "-0.5")],
        "invalid value \"-0.5\" for timeout_seconds (from environment variable AGENT33_TASK_TIMEOUT)",
    );
    usage_error(
        RUNNABLE,
        &["--deadline", "inf"],
        &[],
        "invalid value \"inf\" for deadline_seconds (from flag --deadline)",
    );
    usage_error(
        RUNNABLE,
        &["--retries", "1.5"],
        &[],
        "invalid value \"1.5\" for retries (from flag --retries)",
    );
}

#[test]
fn bad_booleans_name_the_variable() {
    usage_error(
        RUNNABLE,
        &[],
        &[("AGENT33_FAIL_FAST", "perhaps")],
        "invalid value \"perhaps\" for fail_fast (from environment variable AGENT33_FAIL_FAST): expected true/false/1/0/yes/no/on/off",
    );
    usage_error(
        RUNNABLE,
        &[],
        &[("AGENT33_PARALLEL", "2")],
        "invalid value \"2\" for parallel (from environment variable AGENT33_PARALLEL)",
    );
    usage_error(
        &format!("execution: {{parallel: maybe}}\n{RUNNABLE}"),
        &[],
        &[],
        "agent33.yaml:1:23: invalid value \"maybe\" for parallel",
    );
}

#[test]
fn mode_cannot_be_combined_with_its_long_forms() {
    usage_error(
        &format!("execution:\n  mode: parallel\n  parallel: true\n{RUNNABLE}"),
        &[],
        &[],
        "agent33.yaml:2:3: `mode` cannot be combined with `parallel` in one manifest",
    );
    usage_error(
        &format!("execution:\n  respect_dependencies: false\n  mode: dependency-aware\n{RUNNABLE}"),
        &[],
        &[],
        "agent33.yaml:3:3: `mode` cannot be combined with `respect_dependencies` in one manifest",
    );
    usage_error(
        &format!("execution: {{mode: turbo}}\n{RUNNABLE}"),
        &[],
        &[],
        "agent33.yaml:1:19: invalid value \"turbo\" for mode: expected sequential, parallel or dependency-aware",
    );
}

#[test]
fn continue_on_error_and_max_failures_in_one_source() {
    usage_error(
        &format!("execution:\n  continue_on_error: true\n  max_failures: 2\n{RUNNABLE}"),
        &[],
        &[],
        "agent33.yaml:2:22: continue_on_error: true (from manifest agent33.yaml:2:22) and max_failures (from manifest agent33.yaml:3:17) cannot be set together in one source",
    );
    usage_error(
        RUNNABLE,
        &["--continue-on-error", "--max-failures", "2"],
        &[],
        "continue_on_error: true (from flag --continue-on-error) and max_failures (from flag --max-failures) cannot be set together",
    );
    usage_error(
        RUNNABLE,
        &[],
        &[
            ("AGENT33_CONTINUE_ON_ERROR", "yes"),
            ("AGENT33_MAX_FAILURES", "2"),
        ],
        "continue_on_error: true (from environment variable AGENT33_CONTINUE_ON_ERROR) and max_failures (from environment variable AGENT33_MAX_FAILURES)",
    );
}

#[test]
fn flag_combinations_that_make_no_sense() {
    usage_error(
        RUNNABLE,
        &["--format", "json"],
        &[],
        "--format needs --dry-run",
    );
    usage_error(
        RUNNABLE,
        &["--command", "touch ran", "-f", "agent33.yaml", "x"],
        &[],
        "--command cannot be used with -f/--file",
    );
    usage_error(
        RUNNABLE,
        &["stray"],
        &[],
        "unexpected argument \"stray\": artifacts on the command line need --command TEMPLATE",
    );
    usage_error(
        "",
        &["--command", "touch ran", "--artifacts-from", "missing.txt"],
        &[],
        "cannot read artifacts from missing.txt:",
    );
    usage_error(
        "",
        &["--command", "touch 'ran", "x"],
        &[],
        "invalid --command: cannot split command",
    );
    // clap's own errors: unknown flags and values.
    usage_error(RUNNABLE, &["--paralel"], &[], "--paralel");
    usage_error(RUNNABLE, &["--output", "loud"], &[], "loud");
    usage_error(RUNNABLE, &["--format", "yaml", "--dry-run"], &[], "yaml");
}

#[test]
fn a_missing_manifest_is_named() {
    usage_error(
        "",
        &["-f", "nope.yaml"],
        &[],
        "agent-33: error: manifest nope.yaml not found",
    );
    usage_error(
        "",
        &[],
        &[],
        "agent-33: error: no manifest: agent33.yaml not found in the current folder",
    );
}

#[test]
fn dependency_mistakes_name_the_ids_in_every_mode() {
    let cycle = "agents:\n  t: {command: \"touch ran\"}\ntasks:\n  - {agent: t, artifact: x, id: x}\n  - {agent: t, artifact: c, id: c, depends_on: [a]}\n  - {agent: t, artifact: a, id: a, depends_on: [b]}\n  - {agent: t, artifact: b, id: b, depends_on: [c]}\n";
    let self_dep = "agents:\n  t: {command: \"touch ran\"}\ntasks:\n  - {agent: t, artifact: x}\n  - {agent: t, artifact: a, id: a, depends_on: [a]}\n";
    let unknown = "agents:\n  t: {command: \"touch ran\"}\ntasks:\n  - {agent: t, artifact: a, depends_on: [zzz]}\n";
    for flags in [
        &[][..],
        &["--parallel"][..],
        &["--respect-dependencies"][..],
        &["--dry-run"][..],
    ] {
        // Shown from its task earliest in input order (c), following
        // depends_on.
        usage_error(
            cycle,
            flags,
            &[],
            "agent33.yaml:5:5: dependency cycle: c → a → b → c",
        );
        usage_error(
            self_dep,
            flags,
            &[],
            "agent33.yaml:5:36: task `a` depends on itself",
        );
        usage_error(
            unknown,
            flags,
            &[],
            "agent33.yaml:4:29: task `t:a` depends on unknown task `zzz`",
        );
    }
    usage_error(
        "agents:\n  t: {command: \"touch ran\"}\ntasks:\n  - {agent: t, artifact: a, id: a, depends_on: [b]}\n  - {agent: t, artifact: b, id: b, depends_on: [c]}\n  - {agent: t, artifact: c, id: c, depends_on: [a]}\n",
        &[],
        &[],
        "dependency cycle: a → b → c → a",
    );
}

#[test]
fn yaml_syntax_errors_name_line_and_column() {
    usage_error(
        "agents:\n  t: {command: \"touch ran\"}\ntasks:\n  - agent: t\n     artifact: x\n",
        &[],
        &[],
        "agent-33: error: agent33.yaml:5:14: mapping values are not allowed",
    );
    usage_error(
        "agents:\n  t: {command: \"touch ran\"}\ntasks:\n  - {agent: t, artifact: 'x}\n",
        &[],
        &[],
        "agent-33: error: agent33.yaml:",
    );
    usage_error(
        "agents:\n  t: {command: \"touch ran\"}\ntasks:\n  - {agent: t, artifact: [x]}\n",
        &[],
        &[],
        "agent33.yaml:4:26: tasks[0].artifact: invalid type: sequence",
    );
}

#[test]
fn a_manifest_named_with_f_reports_its_own_path() {
    let sb = Sandbox::new();
    sb.write(
        "conf/run.yaml",
        "execution:\n  paralel_limit: 2\nagents: {}\n",
    );
    let out = sb.run(["-f", "conf/run.yaml"]).output();
    out.usage_error("conf/run.yaml:2:3: execution: unknown field `paralel_limit`");
}

#[test]
fn values_are_shown_as_written() {
    // A float where a whole number is expected reads `4.0`, not `4`.
    usage_error(
        &format!("execution:\n  parallel_limit: 4.0\n{RUNNABLE}"),
        &[],
        &[],
        "agent33.yaml:2:19: invalid value 4.0 for parallel_limit: expected a whole number ≥ 1",
    );
    usage_error(
        &format!("execution:\n  max_failures: 1.5\n{RUNNABLE}"),
        &[],
        &[],
        "agent33.yaml:2:17: invalid value 1.5 for max_failures: expected a whole number ≥ 1",
    );
}

#[test]
fn an_artifact_list_that_is_a_folder_is_a_usage_error() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.join("folder")).expect("mkdir");
    for extra in [&[][..], &["--dry-run"][..]] {
        let mut cmd = sb.run(["--command", "touch ran", "--artifacts-from", "folder"]);
        cmd.cmd.args(extra);
        cmd.output()
            .usage_error("cannot read artifacts from folder: it is a folder, not a file");
    }
    assert!(!sb.exists("ran"));
}

#[test]
fn a_variable_that_is_not_utf8_is_a_usage_error() {
    use std::os::unix::ffi::OsStringExt;
    let sb = Sandbox::new();
    sb.manifest(RUNNABLE);
    let out = sb
        .run([] as [&str; 0])
        .env(
            "AGENT33_PARALLEL_LIMIT",
            std::ffi::OsString::from_vec(b"4\xff".to_vec()),
        )
        .output();
    out.usage_error(
        "for parallel_limit (from environment variable AGENT33_PARALLEL_LIMIT): not valid UTF-8",
    );
    assert!(!sb.exists("ran"));
}

#[test]
fn output_paths_that_cannot_be_written_are_found_before_anything_runs() {
    for flag in ["--report", "--junit", "--timings", "--trace", "--journal"] {
        let sb = Sandbox::new();
        sb.manifest(RUNNABLE);
        sb.write("taken/keep", "");
        let out = sb.run([flag, "taken"]).output();
        out.usage_error(&format!(
            "agent-33: error: {flag} taken: is a folder, not a file"
        ));
        assert!(!sb.exists("ran"), "nothing ran for {flag}");
    }
    let sb = Sandbox::new();
    sb.manifest(RUNNABLE);
    sb.write("afile", "");
    let out = sb.run(["--output-dir", "afile"]).output();
    out.usage_error("agent-33: error: --output-dir afile: cannot create the folder:");
    assert!(!sb.exists("ran"), "nothing ran for --output-dir");
}

/// The nastiest inputs found while fuzzing (`tests/fuzz.rs`), and YAML's
/// classic traps, as the binary sees them: each is exit 2, at once, with
/// a message that starts with the file's name and, where the mistake sits
/// somewhere, its line and column; nothing runs.
#[test]
fn nasty_manifests_are_usage_errors_that_name_the_file_and_place() {
    let deep = format!("tasks: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let task = "agents:\n  t: {command: \"touch ran\"}\ntasks:\n  - {agent: t, artifact: x";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "deep.yaml",
            deep.into_bytes(),
            "deep.yaml:1:72: `[` and `{` nested more than 64 levels deep",
        ),
        (
            "nul.yaml",
            format!("execution:\n  parallel: tr\0ue\n{task}}}\n").into_bytes(),
            "nul.yaml:2:15: character U+0000 is not allowed in a YAML file",
        ),
        (
            "latin1.yaml",
            [format!("{task}}}\n# caf").as_bytes(), b"\xe9\n"].concat(),
            "cannot read manifest latin1.yaml: it is not valid UTF-8",
        ),
        (
            "end.yaml",
            task.as_bytes().to_vec(),
            "end.yaml:4:27: did not find expected ',' or '}'",
        ),
        (
            "huge.yaml",
            format!(
                "execution:\n  parallel_limit: 340282366920938463463374607431768211456\n{task}}}\n"
            )
            .into_bytes(),
            "huge.yaml:2:19: invalid value 3.402823669209385e38 for parallel_limit: \
             expected a whole number ≤ 18446744073709551615",
        ),
        (
            "nan.yaml",
            format!("execution:\n  timeout_seconds: .nan\n{task}}}\n").into_bytes(),
            "nan.yaml:2:20: invalid value NaN for timeout_seconds",
        ),
        (
            "tabs.yaml",
            format!("execution:\n\tparallel: true\n{task}}}\n").into_bytes(),
            "tabs.yaml:2:1: found character that cannot start any token",
        ),
        (
            "alias.yaml",
            format!("execution:\n  parallel: *nope\n{task}}}\n").into_bytes(),
            "alias.yaml:2:13: unknown anchor",
        ),
        (
            "laughs.yaml",
            format!(
                "{task}, depends_on: &a [l, l, l, l, l, l, l, l]}}\n  \
                 - {{agent: t, artifact: y, depends_on: [*a, *a, *a, *a, *a, *a, *a, *a]}}\n"
            )
            .into_bytes(),
            // An alias's content is placed where its anchor is; the path
            // says which use it was.
            "laughs.yaml:4:41: tasks[1].depends_on[0]: invalid type: sequence, expected text",
        ),
        (
            "inject.yaml",
            b"agents:\n  t:\n    shell: true\n    command: \"touch ran; echo {artifact}\"\n\
              tasks:\n  - {agent: t, artifact: x}\n"
                .to_vec(),
            "inject.yaml:4:14: agent `t`: a `shell: true` script gets the artifact as \"$1\"",
        ),
        (
            "two.yaml",
            format!("{task}}}\n---\nagents: {{}}\n").into_bytes(),
            "two.yaml: deserializing from YAML containing more than one document",
        ),
    ];
    for (name, bytes, message) in cases {
        let sb = Sandbox::new();
        sb.write(name, &bytes);
        let out = sb.run(["-f", name]).output();
        out.usage_error(&format!("agent-33: error: {message}"));
        assert!(
            out.stderr.starts_with(&format!("agent-33: error: {name}"))
                || out
                    .stderr
                    .starts_with("agent-33: error: cannot read manifest "),
            "{name}: {}",
            out.stderr
        );
        assert!(
            out.elapsed < Duration::from_secs(10),
            "{name}: {:?}",
            out.elapsed
        );
        assert!(out.stdout.is_empty(), "{name}: {}", out.stdout());
        assert!(!sb.exists("ran"), "nothing ran for {name}");
    }
}
