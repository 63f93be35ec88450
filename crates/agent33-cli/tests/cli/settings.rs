//! PRODUCT.md, Settings: defaults, precedence (flag > environment >
//! manifest > default) setting by setting, the switches that turn
//! `parallel` on, boolean and fractional spellings, and per-task values.
//! Effective settings are read from `--dry-run --format json`; where it
//! matters, behaviour is checked too.

use serde_json::{Value, json};

use crate::support::{Sandbox, script_manifest};

/// The dry-run plan for a manifest with `execution` lines, under `flags`
/// and `env`.
fn plan(execution: &str, flags: &[&str], env: &[(&str, &str)]) -> Value {
    let sb = Sandbox::new();
    sb.manifest(&script_manifest(execution, "", &["x"]));
    let mut cmd = sb.run(["--dry-run", "--format", "json"]);
    cmd.cmd.args(flags);
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let out = cmd.output();
    out.code_is(0);
    assert!(!sb.exists("ran.x"), "a dry run runs nothing");
    serde_json::from_slice(&out.stdout).expect("the plan is JSON")
}

fn settings(execution: &str, flags: &[&str], env: &[(&str, &str)]) -> Value {
    plan(execution, flags, env)["settings"].clone()
}

#[test]
fn defaults_are_the_settings_tables() {
    let p = plan("", &[], &[]);
    assert_eq!(p["mode"], "sequential");
    assert_eq!(
        p["settings"],
        json!({
            "parallel": false,
            "parallel_limit": 4,
            "respect_dependencies": false,
            "timeout_seconds": 300.0,
            "continue_on_error": false,
            "max_failures": 1,
            "fail_fast": true,
            "retries": 0,
            "retry_backoff_seconds": 1.0,
            "kill_grace_seconds": 5.0,
            "deadline_seconds": null,
            "output_limit_bytes": 1048576,
        })
    );
}

/// One setting: its manifest line, its variable (if any) and its flag,
/// each with a different value, and the value each one yields.
struct Row {
    key: &'static str,
    manifest: &'static str,
    manifest_value: Value,
    env: Option<(&'static str, &'static str, Value)>,
    flag: &'static [&'static str],
    flag_value: Value,
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            key: "parallel",
            manifest: "parallel: true",
            manifest_value: json!(true),
            env: Some(("AGENT33_PARALLEL", "false", json!(false))),
            flag: &["--parallel"],
            flag_value: json!(true),
        },
        Row {
            key: "parallel_limit",
            manifest: "parallel_limit: 3",
            manifest_value: json!(3),
            env: Some(("AGENT33_PARALLEL_LIMIT", "5", json!(5))),
            flag: &["-j", "6"],
            flag_value: json!(6),
        },
        Row {
            key: "respect_dependencies",
            manifest: "respect_dependencies: true",
            manifest_value: json!(true),
            env: Some(("AGENT33_RESPECT_DEPENDENCIES", "0", json!(false))),
            flag: &["--respect-dependencies"],
            flag_value: json!(true),
        },
        Row {
            key: "timeout_seconds",
            manifest: "timeout_seconds: 100",
            manifest_value: json!(100.0),
            env: Some(("AGENT33_TASK_TIMEOUT", "50.5", json!(50.5))),
            flag: &["--timeout", "0.25"],
            flag_value: json!(0.25),
        },
        Row {
            key: "continue_on_error",
            manifest: "continue_on_error: true",
            manifest_value: json!(true),
            env: Some(("AGENT33_CONTINUE_ON_ERROR", "off", json!(false))),
            flag: &["--continue-on-error"],
            flag_value: json!(true),
        },
        Row {
            key: "max_failures",
            manifest: "max_failures: 3",
            manifest_value: json!(3),
            env: Some(("AGENT33_MAX_FAILURES", "5", json!(5))),
            flag: &["--max-failures", "7"],
            flag_value: json!(7),
        },
        Row {
            key: "fail_fast",
            manifest: "fail_fast: false",
            manifest_value: json!(false),
            env: Some(("AGENT33_FAIL_FAST", "yes", json!(true))),
            flag: &["--no-fail-fast"],
            flag_value: json!(false),
        },
        Row {
            key: "retries",
            manifest: "retries: 2",
            manifest_value: json!(2),
            env: Some(("AGENT33_RETRIES", "3", json!(3))),
            flag: &["--retries", "4"],
            flag_value: json!(4),
        },
        Row {
            key: "retry_backoff_seconds",
            manifest: "retry_backoff_seconds: 2.5",
            manifest_value: json!(2.5),
            env: None,
            flag: &["--retry-backoff", "0.1"],
            flag_value: json!(0.1),
        },
        Row {
            key: "kill_grace_seconds",
            manifest: "kill_grace_seconds: 2",
            manifest_value: json!(2.0),
            env: Some(("AGENT33_KILL_GRACE", "1.5", json!(1.5))),
            flag: &["--kill-grace", "0.5"],
            flag_value: json!(0.5),
        },
        Row {
            key: "deadline_seconds",
            manifest: "deadline_seconds: 100",
            manifest_value: json!(100.0),
            env: Some(("AGENT33_DEADLINE", "60", json!(60.0))),
            flag: &["--deadline", "0.75"],
            flag_value: json!(0.75),
        },
        Row {
            key: "output_limit_bytes",
            manifest: "output_limit_bytes: 100",
            manifest_value: json!(100),
            env: None,
            flag: &["--output-limit", "7"],
            flag_value: json!(7),
        },
    ]
}

#[test]
fn each_setting_takes_the_flag_over_the_environment_over_the_manifest() {
    for row in rows() {
        let key = row.key;
        let s = settings(row.manifest, &[], &[]);
        assert_eq!(s[key], row.manifest_value, "{key} from the manifest");
        let env: Vec<(&str, &str)> = row.env.iter().map(|(k, v, _)| (*k, *v)).collect();
        if let Some((var, _, want)) = &row.env {
            let s = settings(row.manifest, &[], &env);
            assert_eq!(&s[key], want, "{key}: {var} beats the manifest");
            // Alone, the variable beats the default too.
            let s = settings("", &[], &env);
            assert_eq!(&s[key], want, "{key}: {var} alone");
        }
        let s = settings(row.manifest, row.flag, &env);
        assert_eq!(s[key], row.flag_value, "{key}: the flag beats everything");
        let s = settings("", row.flag, &[]);
        assert_eq!(s[key], row.flag_value, "{key}: the flag alone");
    }
}

#[test]
fn settings_without_a_variable_ignore_lookalike_variables() {
    let s = settings(
        "retry_backoff_seconds: 2.5\noutput_limit_bytes: 100",
        &[],
        &[
            ("AGENT33_RETRY_BACKOFF", "9"),
            ("AGENT33_RETRY_BACKOFF_SECONDS", "9"),
            ("AGENT33_OUTPUT_LIMIT", "9"),
            ("AGENT33_OUTPUT_LIMIT_BYTES", "9"),
        ],
    );
    assert_eq!(s["retry_backoff_seconds"], 2.5);
    assert_eq!(s["output_limit_bytes"], 100);
}

#[test]
fn the_environment_turns_parallel_off_against_the_manifest() {
    // Seen in the plan …
    let p = plan("parallel: true", &[], &[("AGENT33_PARALLEL", "false")]);
    assert_eq!(p["mode"], "sequential");
    // … and in a real run: the effective limit is 1.
    let sb = Sandbox::new();
    sb.manifest(&script_manifest(
        "parallel: true\nparallel_limit: 3",
        "",
        &["a", "b", "c"],
    ));
    let out = sb
        .run(["--report", "r.json"])
        .env("AGENT33_PARALLEL", "false")
        .output();
    out.code_is(0);
    let r = sb.report("r.json");
    assert_eq!(r.0["metrics"]["gauges"]["parallel_limit"], 1.0);
    assert_eq!(r.0["metrics"]["gauges"]["parallel_peak"], 1.0);
    assert!(
        out.stderr.contains("Peak concurrent: 1/1"),
        "{}",
        out.stderr
    );
}

/// Manifest `execution:` lines, flags, variables, then the expected
/// `parallel` and mode.
type ParallelCase<'a> = (
    &'a str,
    &'a [&'a str],
    &'a [(&'a str, &'a str)],
    bool,
    &'a str,
);

#[test]
fn a_limit_or_respect_dependencies_implies_parallel_unless_parallel_is_explicit() {
    const LIMIT: &str = "AGENT33_PARALLEL_LIMIT";
    let cases: &[ParallelCase<'_>] = &[
        // A limit given anywhere implies parallel.
        ("", &[], &[(LIMIT, "8")], true, "parallel"),
        ("parallel_limit: 8", &[], &[], true, "parallel"),
        // respect_dependencies: true implies dependency-aware mode.
        (
            "",
            &[],
            &[("AGENT33_RESPECT_DEPENDENCIES", "1")],
            true,
            "dependency-aware",
        ),
        (
            "respect_dependencies: true",
            &[],
            &[],
            true,
            "dependency-aware",
        ),
        // An explicit parallel or mode decides, whatever its rank.
        (
            "parallel_limit: 3",
            &[],
            &[("AGENT33_PARALLEL", "false")],
            false,
            "sequential",
        ),
        ("parallel: false", &[], &[(LIMIT, "8")], false, "sequential"),
        (
            "mode: sequential",
            &[],
            &[(LIMIT, "8")],
            false,
            "sequential",
        ),
        (
            "parallel: false",
            &[],
            &[("AGENT33_RESPECT_DEPENDENCIES", "yes")],
            false,
            "sequential",
        ),
        ("mode: parallel", &[], &[], true, "parallel"),
        ("mode: dependency-aware", &[], &[], true, "dependency-aware"),
        ("mode: sequential", &["--parallel"], &[], true, "parallel"),
        (
            "mode: dependency-aware",
            &[],
            &[("AGENT33_PARALLEL", "no")],
            false,
            "sequential",
        ),
        // -j and --respect-dependencies are themselves an explicit
        // --parallel, at the flags' rank.
        (
            "",
            &["-j", "2"],
            &[("AGENT33_PARALLEL", "false")],
            true,
            "parallel",
        ),
        (
            "parallel: false",
            &["--parallel-limit", "2"],
            &[],
            true,
            "parallel",
        ),
        ("mode: sequential", &["-j", "3"], &[], true, "parallel"),
        (
            "parallel: false",
            &["--respect-dependencies"],
            &[],
            true,
            "dependency-aware",
        ),
    ];
    for (execution, flags, env, parallel, mode) in cases {
        let p = plan(execution, flags, env);
        assert_eq!(
            p["settings"]["parallel"], *parallel,
            "{execution:?} {flags:?} {env:?}"
        );
        assert_eq!(p["mode"], *mode, "{execution:?} {flags:?} {env:?}");
    }
}

#[test]
fn an_agents_own_limit_implies_nothing() {
    let sb = Sandbox::new();
    sb.manifest(
        "agents:\n  a: {command: \"true\", parallel_limit: 2}\ntasks:\n  - {agent: a, artifact: x}\n",
    );
    let out = sb.run(["--dry-run", "--format", "json"]).output();
    out.code_is(0);
    let p: Value = serde_json::from_slice(&out.stdout).expect("the plan is JSON");
    assert_eq!(p["mode"], "sequential");
}

/// A `--command` whose tasks each finish only once all of `artifacts` have
/// started: a barrier that only that many parallel slots can pass. The
/// timeout turns a sequential run into a quick failure instead of a hang.
fn barrier_command(artifacts: &[&str]) -> String {
    format!(
        "sh -c 'touch \"ran.$1\"; for f in {}; do until [ -e \"ran.$f\" ]; do sleep 0.01; done; done' sh",
        artifacts.join(" ")
    )
}

#[test]
fn the_limit_variable_alone_runs_tasks_at_once() {
    let sb = Sandbox::new();
    let all = ["a", "b", "c", "d"];
    let mut cmd = sb.run(["--timeout", "10", "--command", &barrier_command(&all)]);
    cmd.cmd.args(all);
    let out = cmd.env("AGENT33_PARALLEL_LIMIT", "4").output();
    out.code_is(0);
    assert!(
        out.stderr.contains("Peak concurrent: 4/4"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_manifests_limit_alone_runs_tasks_at_once() {
    let sb = Sandbox::new();
    sb.manifest(&script_manifest(
        "parallel_limit: 3",
        "wait_for ran.a; wait_for ran.b; wait_for ran.c",
        &["a", "b", "c"],
    ));
    let out = sb.run(["--timeout", "10"]).output();
    out.code_is(0);
    assert!(
        out.stderr.contains("Peak concurrent: 3/3"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_explicit_parallel_false_beats_the_limit_variable_in_a_run() {
    let sb = Sandbox::new();
    sb.manifest(&script_manifest("parallel: false", "", &["a", "b", "c"]));
    let out = sb
        .run([] as [&str; 0])
        .env("AGENT33_PARALLEL_LIMIT", "8")
        .output();
    out.code_is(0);
    assert!(
        out.stderr.contains("Peak concurrent: 1/1"),
        "{}",
        out.stderr
    );
}

#[test]
fn j_really_runs_tasks_at_once() {
    let sb = Sandbox::new();
    // Each task finishes only when all three have started: a barrier that
    // only three parallel slots can pass (a timeout guards against a hang).
    sb.manifest(&script_manifest(
        "",
        "wait_for ran.a; wait_for ran.b; wait_for ran.c",
        &["a", "b", "c"],
    ));
    let out = sb
        .run(["-j", "3", "--timeout", "20", "--report", "r.json"])
        .output();
    out.code_is(0);
    let r = sb.report("r.json");
    assert_eq!(r.0["metrics"]["gauges"]["parallel_peak"], 3.0);
    assert!(
        out.stderr.contains("Peak concurrent: 3/3"),
        "{}",
        out.stderr
    );
}

#[test]
fn booleans_in_the_environment_accept_every_spelling_in_any_case() {
    for yes in ["true", "TRUE", "True", "1", "yes", "YES", "on", "On"] {
        let s = settings("parallel: false", &[], &[("AGENT33_PARALLEL", yes)]);
        assert_eq!(s["parallel"], true, "{yes}");
    }
    for no in ["false", "FALSE", "fAlSe", "0", "no", "No", "off", "OFF"] {
        let s = settings("parallel: true", &[], &[("AGENT33_PARALLEL", no)]);
        assert_eq!(s["parallel"], false, "{no}");
        let s = settings("", &[], &[("AGENT33_FAIL_FAST", no)]);
        assert_eq!(s["fail_fast"], false, "{no}");
    }
}

#[test]
fn seconds_accept_fractions_and_zero_means_none() {
    let s = settings(
        "timeout_seconds: 0.75\nkill_grace_seconds: 0.25",
        &["--retry-backoff", "0.5"],
        &[("AGENT33_DEADLINE", "1.25")],
    );
    assert_eq!(s["timeout_seconds"], 0.75);
    assert_eq!(s["kill_grace_seconds"], 0.25);
    assert_eq!(s["retry_backoff_seconds"], 0.5);
    assert_eq!(s["deadline_seconds"], 1.25);
    let s = settings("timeout_seconds: 0", &[], &[]);
    assert!(s["timeout_seconds"].is_null(), "0 = no timeout: {s}");
    let s = settings("", &["--timeout", "0", "--deadline", "0"], &[]);
    assert!(s["timeout_seconds"].is_null() && s["deadline_seconds"].is_null());
    let s = settings("", &[], &[("AGENT33_TASK_TIMEOUT", "0")]);
    assert!(s["timeout_seconds"].is_null());
}

#[test]
fn continue_on_error_and_max_failures_from_different_sources_the_higher_wins() {
    let s = settings(
        "",
        &["--max-failures", "3"],
        &[("AGENT33_CONTINUE_ON_ERROR", "1")],
    );
    assert_eq!(s["continue_on_error"], false);
    assert_eq!(s["max_failures"], 3);
    let s = settings(
        "max_failures: 3",
        &[],
        &[("AGENT33_CONTINUE_ON_ERROR", "true")],
    );
    assert_eq!(s["continue_on_error"], true);
    let s = settings(
        "continue_on_error: true",
        &[],
        &[("AGENT33_MAX_FAILURES", "2")],
    );
    assert_eq!(s["continue_on_error"], false);
    assert_eq!(s["max_failures"], 2);
    // continue_on_error: false conflicts with nothing.
    let s = settings("continue_on_error: false\nmax_failures: 2", &[], &[]);
    assert_eq!(s["continue_on_error"], false);
    assert_eq!(s["max_failures"], 2);
}

/// The per-task timeouts of a dry run, by id.
fn task_timeouts(p: &Value) -> Vec<(String, Value)> {
    p["levels"]
        .as_array()
        .expect("levels")
        .iter()
        .flat_map(|l| l.as_array().expect("a level"))
        .map(|t| {
            (
                t["id"].as_str().expect("id").to_owned(),
                t["timeout_seconds"].clone(),
            )
        })
        .collect()
}

#[test]
fn a_tasks_timeout_beats_its_agents_which_beats_the_global_one_whatever_its_source() {
    let manifest = r#"
execution: {timeout_seconds: 40}
agents:
  a: {command: "true", timeout_seconds: 20}
  b: {command: "true"}
  c: {command: "true", timeout_seconds: 0}
tasks:
  - {agent: a, artifact: own, timeout_seconds: 7}
  - {agent: a, artifact: agents}
  - {agent: b, artifact: global}
  - {agent: c, artifact: none}
"#;
    let sb = Sandbox::new();
    sb.manifest(manifest);
    for (flags, env, global) in [
        (&[][..], &[][..], 40.0),
        (&[][..], &[("AGENT33_TASK_TIMEOUT", "30")][..], 30.0),
        (
            &["--timeout", "50"][..],
            &[("AGENT33_TASK_TIMEOUT", "30")][..],
            50.0,
        ),
    ] {
        let mut cmd = sb.run(["--dry-run", "--format", "json"]);
        cmd.cmd.args(flags);
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        let out = cmd.output();
        out.code_is(0);
        let p: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(
            task_timeouts(&p),
            vec![
                ("a:own".to_owned(), json!(7.0)),
                ("a:agents".to_owned(), json!(20.0)),
                ("b:global".to_owned(), json!(global)),
                ("c:none".to_owned(), Value::Null),
            ],
            "{flags:?} {env:?}"
        );
    }
}

#[test]
fn an_agents_parallel_limit_caps_its_tasks_without_holding_global_slots() {
    let sb = Sandbox::new();
    // x1 runs until y1 has started. If x2, waiting for agent x's limit of
    // 1, held one of the two global slots, y1 could never start.
    sb.manifest(
        r#"
agents:
  x:
    shell: true
    parallel_limit: 1
    command: 'touch "ran.$1"; [ "$1" = x1 ] && until [ -e ran.y1 ]; do sleep 0.01; done; [ ! -e ran.x2 ] || [ "$1" = x2 ]'
  y:
    shell: true
    command: 'touch "ran.$1"'
tasks:
  - {agent: x, artifact: x1}
  - {agent: x, artifact: x2}
  - {agent: y, artifact: y1}
"#,
    );
    let out = sb
        .run(["-j", "2", "--timeout", "20", "--report", "r.json"])
        .output();
    out.code_is(0);
    let r = sb.report("r.json");
    assert_eq!(r.ids("succeeded"), ["x:x1", "x:x2", "y:y1"]);
    let x1_end = r.task("x:x1")["finished_at"]
        .as_str()
        .expect("ended")
        .to_owned();
    let x2_start = r.task("x:x2")["started_at"]
        .as_str()
        .expect("started")
        .to_owned();
    assert!(x2_start >= x1_end, "agent x ran one task at a time");
}

#[test]
fn a_huge_number_of_seconds_is_valid_and_means_practically_none() {
    let s = settings("", &["--timeout", "1e20"], &[("AGENT33_DEADLINE", "1e300")]);
    let max = std::time::Duration::MAX.as_secs_f64();
    assert_eq!(s["timeout_seconds"].as_f64(), Some(max));
    assert_eq!(s["deadline_seconds"].as_f64(), Some(max));
    let s = settings("timeout_seconds: 1e20", &[], &[]);
    assert_eq!(s["timeout_seconds"].as_f64(), Some(max));
    // And a run with them works.
    let sb = Sandbox::new();
    sb.run([
        "--timeout",
        "1e20",
        "--deadline",
        "1e20",
        "--kill-grace",
        "1e20",
        "--command",
        "true",
        "x",
    ])
    .output()
    .code_is(0);
}

#[test]
fn whole_numbers_beyond_a_settings_type_are_clamped_to_its_maximum() {
    let u32_max = json!(u32::MAX);
    let u64_max = u64::MAX.to_string();
    let s = settings(
        "",
        &[
            "--max-failures",
            "99999999999",
            "--retries",
            "4294967296",
            "--output-limit",
            &u64_max,
        ],
        &[("AGENT33_PARALLEL_LIMIT", &u64_max)],
    );
    assert_eq!(s["max_failures"], u32_max);
    assert_eq!(s["retries"], u32_max);
    assert_eq!(s["output_limit_bytes"], json!(usize::MAX));
    assert_eq!(s["parallel_limit"], json!(usize::MAX));
    let s = settings(
        "",
        &[],
        &[
            ("AGENT33_MAX_FAILURES", &u64_max),
            ("AGENT33_RETRIES", "99999999999"),
        ],
    );
    assert_eq!(s["max_failures"], u32_max);
    assert_eq!(s["retries"], u32_max);
    // Manifest values written as text take the same path.
    let s = settings("retries: \"4294967296\"", &[], &[]);
    assert_eq!(s["retries"], u32_max);
    // And as plain numbers.
    let s = settings("retries: 4294967296", &[], &[]);
    assert_eq!(s["retries"], u32_max);
    // And a run with them works.
    let sb = Sandbox::new();
    sb.run([
        "--max-failures",
        "99999999999",
        "--retries",
        "4294967296",
        "-j",
        &u64_max,
        "--command",
        "true",
        "x",
    ])
    .output()
    .code_is(0);
}

#[test]
fn whole_numbers_beyond_64_bits_or_not_whole_stay_errors_that_say_why() {
    let sb = Sandbox::new();
    sb.run([
        "--retries",
        "18446744073709551616",
        "--command",
        "true",
        "x",
    ])
    .output()
    .usage_error(
        "invalid value \"18446744073709551616\" for retries (from flag --retries): \
             expected a whole number ≤ 18446744073709551615",
    );
    sb.run(["--command", "true", "x"])
        .env("AGENT33_MAX_FAILURES", "99999999999999999999999")
        .output()
        .usage_error(
            "for max_failures (from environment variable AGENT33_MAX_FAILURES): \
             expected a whole number ≤ 18446744073709551615",
        );
    for (flag, value, expected) in [
        ("--max-failures", "1.5", "expected a whole number ≥ 1"),
        ("--max-failures", "0", "expected a whole number ≥ 1"),
        ("--retries", "-1", "expected a whole number ≥ 0"),
        ("--retries", "1e3", "expected a whole number ≥ 0"),
        (
            "--output-limit",
            "-99999999999999999999",
            "expected a whole number ≥ 0",
        ),
    ] {
        sb.run([flag, value, "--command", "true", "x"])
            .output()
            .usage_error(expected);
    }
}

#[test]
fn a_positive_number_of_seconds_below_a_nanosecond_is_one_not_none() {
    let ns = json!(1e-9);
    let s = settings(
        "",
        &["--timeout", "1e-10", "--kill-grace", "1e-12"],
        &[("AGENT33_DEADLINE", "0.0000000001")],
    );
    assert_eq!(s["timeout_seconds"], ns);
    assert_eq!(s["deadline_seconds"], ns);
    assert_eq!(s["kill_grace_seconds"], ns);
    let s = settings(
        "timeout_seconds: 1e-10\ndeadline_seconds: 5e-324",
        &["--retry-backoff", "1e-10"],
        &[],
    );
    assert_eq!(s["timeout_seconds"], ns);
    assert_eq!(s["deadline_seconds"], ns);
    assert_eq!(s["retry_backoff_seconds"], ns);
    // Only an exact zero means none.
    let s = settings("timeout_seconds: 0.0", &["--deadline", "0e3"], &[]);
    assert!(s["timeout_seconds"].is_null() && s["deadline_seconds"].is_null());
    // And a task under such a timeout really times out.
    let sb = Sandbox::new();
    let out = sb
        .run([
            "--timeout",
            "1e-10",
            "--report",
            "r.json",
            "--command",
            "sh -c 'exec sleep 30' sh",
            "x",
        ])
        .output();
    out.code_is(1);
    assert!(out.elapsed < crate::support::HANG, "{:?}", out.elapsed);
    assert_eq!(sb.report("r.json").status("command:x"), "timeout");
}

#[test]
fn manifest_numbers_beyond_a_settings_type_are_clamped_too() {
    let u32_max = json!(u32::MAX);
    let s = settings(
        "max_failures: 99999999999\nretries: 4294967296\nparallel_limit: 18446744073709551615",
        &[],
        &[],
    );
    assert_eq!(s["max_failures"], u32_max);
    assert_eq!(s["retries"], u32_max);
    assert_eq!(s["parallel_limit"], json!(usize::MAX));
    let sb = Sandbox::new();
    sb.manifest(&script_manifest(
        "retries: 99999999999999999999",
        "",
        &["x"],
    ));
    sb.run(["--dry-run"]).output().usage_error(
        "invalid value 99999999999999999999 for retries: \
         expected a whole number ≤ 18446744073709551615",
    );
}
