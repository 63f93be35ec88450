//! PRODUCT.md, The CLI: exit codes, `--help`, `--version`, and the dry run
//! (text and JSON).

use serde_json::Value;

use crate::support::{Sandbox, agent33, script_manifest};

#[test]
fn exit_codes_are_0_1_and_2() {
    let sb = Sandbox::new();
    sb.run(["--command", "true", "a", "b"]).output().code_is(0);
    sb.run(["--command", "false", "a"]).output().code_is(1);
    // A task that is only cancelled or skipped did not succeed either.
    sb.manifest(&script_manifest(
        "",
        r#"[ "$1" != fail ]"#,
        &[
            "{agent: t, artifact: fail, id: f}",
            "{agent: t, artifact: dep, depends_on: [f]}",
        ],
    ));
    sb.run(["--continue-on-error"]).output().code_is(1);
    sb.run(["--paralel"]).output().code_is(2);
    sb.run(["-j", "0"]).output().code_is(2);
    // No tasks: success.
    sb.manifest("agents:\n  t: {command: \"false\"}\ntasks: []\n");
    sb.run([] as [&str; 0]).output().code_is(0);
    sb.manifest("");
    sb.run([] as [&str; 0]).output().code_is(0);
}

/// Every flag of PRODUCT.md, with the default and variable its help shows.
const FLAGS: &[(&str, Option<&str>, Option<&str>)] = &[
    ("--parallel", Some("false"), Some("AGENT33_PARALLEL")),
    (
        "-j, --parallel-limit",
        Some("4"),
        Some("AGENT33_PARALLEL_LIMIT"),
    ),
    (
        "--respect-dependencies",
        Some("false"),
        Some("AGENT33_RESPECT_DEPENDENCIES"),
    ),
    ("--timeout", Some("300"), Some("AGENT33_TASK_TIMEOUT")),
    (
        "--continue-on-error",
        Some("false"),
        Some("AGENT33_CONTINUE_ON_ERROR"),
    ),
    ("--max-failures", Some("1"), Some("AGENT33_MAX_FAILURES")),
    ("--fail-fast", Some("true"), Some("AGENT33_FAIL_FAST")),
    ("--no-fail-fast", None, Some("AGENT33_FAIL_FAST")),
    ("--retries", Some("0"), Some("AGENT33_RETRIES")),
    ("--retry-backoff", Some("1"), None),
    ("--kill-grace", Some("5"), Some("AGENT33_KILL_GRACE")),
    ("--deadline", Some("0"), Some("AGENT33_DEADLINE")),
    ("--output-limit", Some("1048576"), None),
    ("-f, --file", Some("agent33.yaml"), None),
    ("--dry-run", None, None),
    ("--format", Some("text"), None),
    ("--command", None, None),
    ("--artifacts-from", None, None),
    ("-0, --null", None, None),
    ("-k, --keep-order", None, None),
    ("--report", None, None),
    ("--junit", None, None),
    ("--timings", None, None),
    ("--output", Some("grouped"), None),
];

/// The help text of one flag: from its line to the next flag's line.
fn flag_help<'a>(help: &'a str, flag: &str) -> &'a str {
    let lines: Vec<&str> = help.lines().collect();
    let is_flag_line = |l: &str| {
        let t = l.trim_start();
        t.starts_with("--") || (t.starts_with('-') && t.chars().nth(2) == Some(','))
    };
    let start = lines
        .iter()
        .position(|l| {
            let t = l.trim_start();
            is_flag_line(l)
                && t.strip_prefix(flag)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '<']))
        })
        .unwrap_or_else(|| panic!("{flag} is not in the help:\n{help}"));
    let end = lines[start + 1..]
        .iter()
        .position(|l| is_flag_line(l) || (!l.starts_with(' ') && !l.is_empty()))
        .map_or(lines.len(), |i| start + 1 + i);
    let from = help.find(lines[start]).expect("the line is in the help");
    let to = if end < lines.len() {
        help[from..]
            .find(lines[end])
            .map_or(help.len(), |i| from + i)
    } else {
        help.len()
    };
    &help[from..to]
}

#[test]
fn help_shows_every_flag_with_its_default_and_variable() {
    for help_flag in ["--help", "-h"] {
        let out = agent33().args(["run", help_flag]).output().expect("runs");
        assert_eq!(out.status.code(), Some(0));
        let help = String::from_utf8(out.stdout).expect("UTF-8 help");
        // One paragraph per flag, so wrapping cannot split its notes.
        let help = help.replace("\n          ", " ");
        for (flag, default, env) in FLAGS {
            let text = flag_help(&help, flag);
            if let Some(d) = default {
                assert!(
                    text.contains(&format!("[default: {d}]")),
                    "{help_flag}: {flag} shows [default: {d}]:\n{text}"
                );
            }
            if let Some(e) = env {
                assert!(
                    text.contains(&format!("[env: {e}")),
                    "{help_flag}: {flag} shows [env: {e}]:\n{text}"
                );
            }
        }
    }
}

#[test]
fn version_prints_the_package_version() {
    for args in [&["--version"][..], &["-V"][..]] {
        let out = agent33().args(args).output().expect("runs");
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("agent-33 {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
    let out = agent33().args(["run", "--version"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

/// A manifest with levels: a, d (level 0), b after a (1), c after b and d (2).
const LEVELS: &str = r#"
execution: {timeout_seconds: 30}
agents:
  t: {command: "touch ran-{artifact}", timeout_seconds: 12.5}
  s:
    shell: true
    command: 'touch "ran-$1"'
tasks:
  - {agent: t, artifact: a, id: a}
  - {agent: t, artifact: "b c", id: b, depends_on: [a]}
  - {agent: s, artifact: c, id: c, depends_on: [b, d], timeout_seconds: 0}
  - {agent: s, artifact: d, id: d}
"#;

#[test]
fn dry_run_json_shows_the_plan_by_dependency_level_and_runs_nothing() {
    let sb = Sandbox::new();
    sb.manifest(LEVELS);
    let p = sb.dry_run_json(&["--respect-dependencies", "-j", "3"]);
    assert!(
        sb.files() == ["agent33.yaml"],
        "nothing ran: {:?}",
        sb.files()
    );
    assert_eq!(p["mode"], "dependency-aware");
    assert_eq!(p["settings"]["parallel_limit"], 3);
    let levels: Vec<Vec<&str>> = p["levels"]
        .as_array()
        .expect("levels")
        .iter()
        .map(|l| {
            l.as_array()
                .expect("a level")
                .iter()
                .map(|t| t["id"].as_str().expect("id"))
                .collect()
        })
        .collect();
    assert_eq!(levels, [vec!["a", "d"], vec!["b"], vec!["c"]]);
    let task = |id: &str| -> Value {
        p["levels"]
            .as_array()
            .expect("levels")
            .iter()
            .flat_map(|l| l.as_array().expect("a level").iter())
            .find(|t| t["id"] == id)
            .cloned()
            .expect("the task")
    };
    let b = task("b");
    assert_eq!(b["agent"], "t");
    assert_eq!(b["artifact"], "b c");
    assert_eq!(b["argv"], serde_json::json!(["touch", "ran-b c"]));
    assert_eq!(b["timeout_seconds"], 12.5);
    assert_eq!(b["depends_on"], serde_json::json!(["a"]));
    let c = task("c");
    assert_eq!(
        c["argv"],
        serde_json::json!(["sh", "-c", "touch \"ran-$1\"", "sh", "c"])
    );
    assert!(c["timeout_seconds"].is_null(), "0 = none");
    assert_eq!(task("d")["timeout_seconds"], 30.0);
}

#[test]
fn dry_run_text_shows_levels_argv_and_timeouts() {
    let sb = Sandbox::new();
    sb.manifest(LEVELS);
    let out = sb.run(["--dry-run"]).output();
    out.code_is(0);
    assert!(
        sb.files() == ["agent33.yaml"],
        "nothing ran: {:?}",
        sb.files()
    );
    let text = out.stdout();
    // Level headings in order, each task under its level.
    let pos = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} in:\n{text}"))
    };
    assert!(pos("Level 0") < pos("\n  a\n") && pos("\n  a\n") < pos("Level 1"));
    assert!(pos("\n  d\n") < pos("Level 1"));
    assert!(pos("Level 1") < pos("\n  b\n") && pos("\n  b\n") < pos("Level 2"));
    assert!(pos("Level 2") < pos("\n  c\n"));
    assert!(
        text.contains("touch 'ran-b c'"),
        "the exact argv, quoted:\n{text}"
    );
    assert!(text.contains("touch \"ran-$1\""), "the script:\n{text}");
    assert!(text.contains("12.5s"), "the timeout:\n{text}");
}

#[test]
fn dry_run_in_parallel_mode_warns_and_shows_one_level_as_the_run_would() {
    // Parallel mode ignores depends_on: the plan must not promise an order
    // the run will not keep, and says so as the run does.
    let sb = Sandbox::new();
    sb.manifest(LEVELS);
    let out = sb.run(["--dry-run", "--parallel"]).output();
    out.code_is(0);
    let text = out.stdout();
    assert!(text.contains("4 tasks in 1 level (parallel mode"), "{text}");
    assert!(!text.contains("Level 1"), "{text}");
    assert!(
        text.contains("after:    a (ignored in parallel mode)"),
        "{text}"
    );
    assert!(
        out.stderr
            .contains("warning: tasks declare depends_on, which parallel mode ignores"),
        "{}",
        out.stderr
    );
    let plan = sb.dry_run_json(&["--parallel"]);
    let levels = plan["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 1);
    let ids: Vec<&str> = levels[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b", "c", "d"], "input order");
    // Sequential mode respects them, silently.
    let seq = sb.run(["--dry-run"]).output();
    assert!(seq.stdout().contains("Level 2") && seq.stderr.is_empty());
}

#[test]
fn dry_run_of_ad_hoc_input_lists_the_tasks() {
    let sb = Sandbox::new();
    sb.write("list.txt", "one\n\ntwo words\none\n");
    let p = sb.dry_run_json(&[
        "--command",
        "touch {artifact}.done",
        "--artifacts-from",
        "list.txt",
    ]);
    let level = p["levels"][0].as_array().expect("one level");
    let got: Vec<(&str, &Value)> = level
        .iter()
        .map(|t| (t["id"].as_str().expect("id"), &t["argv"]))
        .collect();
    assert_eq!(
        got,
        [
            ("command:one", &serde_json::json!(["touch", "one.done"])),
            (
                "command:two words",
                &serde_json::json!(["touch", "two words.done"])
            ),
            ("command:one#2", &serde_json::json!(["touch", "one.done"])),
        ]
    );
    assert!(sb.files() == ["list.txt"], "nothing ran: {:?}", sb.files());
}

/// A manifest whose agents set retries, a folder and variables.
const SETTINGS: &str = r#"
execution: {retries: 1, retry_backoff_seconds: 0.5}
agents:
  t:
    command: "true"
    cwd: work
    env: {MODEL: llama3, GREETING: "hello world"}
  u:
    command: "true"
    retries: 3
tasks:
  - {agent: t, artifact: a, id: a}
  - {agent: t, artifact: b, id: b, retries: 0}
  - {agent: u, artifact: c, id: c}
"#;

#[test]
fn dry_run_shows_retries_folder_and_environment() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.join("work")).expect("mkdir");
    sb.manifest(SETTINGS);
    let p = sb.dry_run_json(&[]);
    let tasks: Vec<&Value> = p["levels"][0].as_array().expect("a level").iter().collect();
    let field = |i: usize, name: &str| tasks[i][name].clone();
    assert_eq!(field(0, "retries"), 1, "the run's");
    assert_eq!(field(1, "retries"), 0, "the task's own");
    assert_eq!(field(2, "retries"), 3, "the agent's");
    assert_eq!(field(0, "cwd"), "./work");
    assert_eq!(field(2, "cwd"), ".");
    assert_eq!(
        field(0, "env"),
        serde_json::json!({"MODEL": "llama3", "GREETING": "hello world"})
    );
    assert_eq!(field(2, "env"), serde_json::json!({}));

    let text = sb.run(["--dry-run"]).output();
    text.code_is(0);
    let text = text.stdout();
    // A task's lines: its id, then the lines indented under it.
    let block = |id: &str| -> String {
        let header = format!("  {id}");
        text.lines()
            .skip_while(|l| *l != header)
            .skip(1)
            .take_while(|l| l.starts_with("    "))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let a = &block("a");
    assert!(
        a.contains("    retries:  1 (first after 0.5s, then doubling)\n"),
        "{a}"
    );
    assert!(a.contains("    cwd:      ./work\n"), "{a}");
    assert!(
        a.contains("    env:      MODEL=llama3 GREETING='hello world'\n"),
        "{a}"
    );
    assert!(block("b").contains("    retries:  0\n"), "{text}");
    let c = &block("c");
    assert!(c.contains("    retries:  3 ("), "{c}");
    assert!(
        c.contains("    cwd:      .\n") && !c.contains("env:"),
        "{c}"
    );

    // Ad hoc: the current folder, the flag's retries.
    let adhoc = sb
        .run(["--dry-run", "--retries", "2", "--command", "true", "x"])
        .output();
    adhoc.code_is(0);
    let adhoc = adhoc.stdout();
    assert!(
        adhoc.contains("    retries:  2 (first after 1s, then doubling)\n"),
        "{adhoc}"
    );
    assert!(adhoc.contains("    cwd:      .\n"), "{adhoc}");
}
