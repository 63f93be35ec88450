//! The manifest's parsing, validation and expansion, by example.

use super::*;
use crate::template::display_argv;
use crate::values::Source;

fn parse(text: &str) -> Result<Manifest> {
    Manifest::parse(Path::new("agent33.yaml"), text.to_owned())
}

fn err(text: &str) -> String {
    parse(text).expect_err("invalid manifest").to_string()
}

const EXAMPLE: &str = r#"
execution:            # all optional; the settings table above
  mode: parallel      # sequential | parallel | dependency-aware
  parallel_limit: 4
  timeout_seconds: 300
  continue_on_error: false
  fail_fast: true
  retries: 0

agents:
  refinement:
    command: "./agents/refine.sh {artifact}"   # or a list: ["./refine.sh", "{artifact}"]
    parallel_limit: 2       # optional, under the global limit
    timeout_seconds: 120    # optional
    retries: 1              # optional
    env: { MODEL: llama3 }  # optional
    cwd: agents             # optional, relative to the manifest's folder
  validation:
    command: ["python3", "validate.py", "{artifact}"]

tasks:
  - agent: refinement
    artifact: core/prompts/SYSTEM.md
  - agent: validation
    artifact: core/agents/worker.md
    depends_on: ["refinement:core/prompts/SYSTEM.md"]
    timeout_seconds: 60
  - agent: refinement
    artifacts: ["core/templates/*.md"]          # one task per matching file, sorted
"#;

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

#[test]
fn the_products_example_parses_and_expands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, "agent33.yaml", EXAMPLE);
    for f in ["b.md", "a.md", ".hidden.md", "notes.txt", "sub/c.md"] {
        write(root, &format!("core/templates/{f}"), "");
    }
    std::fs::create_dir_all(root.join("agents")).expect("mkdir");
    let m = Manifest::read(&root.join("agent33.yaml"), true).expect("valid");

    let e = &m.execution;
    assert_eq!(e.parallel.as_ref().map(|s| s.value), Some(true));
    assert_eq!(e.respect_dependencies, None);
    assert_eq!(e.parallel_limit.as_ref().map(|s| s.value), Some(4));
    assert_eq!(
        e.timeout.as_ref().map(|s| s.value),
        Some(Some(Duration::from_secs(300)))
    );
    assert_eq!(e.continue_on_error.as_ref().map(|s| s.value), Some(false));
    assert_eq!(e.retries.as_ref().map(|s| s.value), Some(0));
    let Some(Source::Manifest(place)) = e.parallel_limit.as_ref().map(|s| s.source.clone()) else {
        panic!("manifest source");
    };
    assert_eq!(place.line_col, Some((4, 19)));

    assert_eq!(m.agents.len(), 2);
    let refine = &m.agents[0];
    assert_eq!(refine.name, "refinement");
    assert_eq!(refine.parallel_limit, Some(2));
    assert_eq!(refine.timeout, Some(Duration::from_secs(120)));
    assert_eq!(refine.retries, Some(1));
    assert_eq!(refine.command.working_dir(), Some(&root.join("agents")));
    assert_eq!(
        refine.command.extra_env(),
        &[(OsString::from("MODEL"), OsString::from("llama3"))]
    );
    let validation = &m.agents[1];
    assert_eq!(validation.command.working_dir(), Some(&root.to_path_buf()));
    m.check_agent_folders().expect("folders exist");

    let tasks = m.tasks().expect("expands");
    let ids: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "refinement:core/prompts/SYSTEM.md",
            "validation:core/agents/worker.md",
            "refinement:core/templates/a.md",
            "refinement:core/templates/b.md",
        ]
    );
    assert_eq!(tasks[1].timeout, Some(Duration::from_secs(60)));
    assert_eq!(
        tasks[1].depends_on,
        vec![TaskId::from("refinement:core/prompts/SYSTEM.md")]
    );
    assert_eq!(tasks[0].timeout, None);
    assert_eq!(
        display_argv(&refine.command.argv(&tasks[2])),
        "./agents/refine.sh core/templates/a.md"
    );
    assert_eq!(
        display_argv(&validation.command.argv(&tasks[1])),
        "python3 validate.py core/agents/worker.md"
    );
}

#[test]
fn globs_are_relative_to_the_manifests_folder_in_the_current_folder_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("proj [1]");
    write(&root, "src/x.rs", "");
    write(&root, "src/y.rs", "");
    let text = "agents: {a: {command: echo}}\ntasks:\n  - agent: a\n    artifacts: 'src/*.rs'\n    retries: 2\n";
    write(&root, "m.yaml", text);
    let m = Manifest::read(&root.join("m.yaml"), true).expect("valid");
    let tasks = m.tasks().expect("expands");
    let arts: Vec<&str> = tasks.iter().map(|t| t.artifact.as_str()).collect();
    assert_eq!(arts, ["src/x.rs", "src/y.rs"]);
    assert!(tasks.iter().all(|t| t.retries == Some(2)));
}

/// Writes `root/m.yaml` with one task entry of `artifacts: [GLOBS]` and
/// expands it.
fn expand_globs(root: &Path, globs: &str) -> Result<Vec<String>> {
    write(
        root,
        "m.yaml",
        &format!(
            "agents: {{a: {{command: echo}}}}\ntasks:\n  - {{agent: a, artifacts: [{globs}]}}\n"
        ),
    );
    let m = Manifest::read(&root.join("m.yaml"), true).expect("valid");
    Ok(m.tasks()?.into_iter().map(|t| t.artifact).collect())
}

#[test]
fn double_star_globs_recurse() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for f in ["docs/a.md", "docs/x/b.md", "docs/x/y/c.md", "docs/.h/d.md"] {
        write(root, f, "");
    }
    let arts = expand_globs(root, "'docs/**/*.md', 'docs/*.md'").expect("expands");
    assert_eq!(arts, ["docs/a.md", "docs/x/b.md", "docs/x/y/c.md"]);
}

#[test]
fn plain_names_in_artifacts_are_artifacts_whether_files_or_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, "in/a.md", "");
    write(root, "in/b.txt", "");
    let arts =
        expand_globs(root, "'topic b', 'in/*.md', 'in/b.txt', 'in/a.md', 'in'").expect("expands");
    assert_eq!(arts, ["in", "in/a.md", "in/b.txt", "topic b"]);
}

#[test]
fn globs_match_files_not_folders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, "in/a.md", "");
    write(root, "in/dir.md/inner.txt", "");
    write(root, "only/x.md/inner.txt", "");
    std::os::unix::fs::symlink("a.md", root.join("in/link.md")).expect("symlink");
    std::os::unix::fs::symlink("dir.md", root.join("in/dirlink.md")).expect("symlink");
    let arts = expand_globs(root, "'in/*.md'").expect("expands");
    assert_eq!(arts, ["in/a.md", "in/link.md"]);

    let got = expand_globs(root, "'only/*.md'")
        .expect_err("only a folder matches")
        .to_string();
    assert!(
        got.contains(":3:28: glob `only/*.md` in task 1 matches nothing"),
        "{got}"
    );
}

#[test]
fn an_empty_manifest_has_no_tasks() {
    for text in [
        "",
        "# nothing\n",
        "execution:\nagents:\ntasks:\n",
        "tasks: []",
    ] {
        let m = parse(text).expect("valid");
        assert_eq!(m.execution, Layer::default());
        assert!(m.tasks().expect("no globs").is_empty());
    }
}

#[test]
fn unknown_keys_are_errors_with_their_place() {
    let cases = [
        (
            "execution:\n  paralel_limit: 4\n",
            "agent33.yaml:2:3: execution: unknown field `paralel_limit`, expected one of",
        ),
        (
            "agents:\n  a:\n    comand: x\n",
            "agent33.yaml:3:5: agents.a: unknown field `comand`",
        ),
        (
            "agents: {a: {command: x}}\ntasks:\n  - agent: a\n    artefact: x\n",
            "agent33.yaml:4:5: tasks[0]: unknown field `artefact`",
        ),
        (
            "executions: {}\n",
            "agent33.yaml:1:1: unknown field `executions`",
        ),
    ];
    for (text, want) in cases {
        let got = err(text);
        assert!(got.starts_with(want), "{got}\nwanted: {want}");
    }
}

#[test]
fn yaml_syntax_errors_name_the_place() {
    let got = err("execution:\n  parallel: [\n");
    assert!(got.starts_with("agent33.yaml:"), "{got}");
    let got = err("- just\n- a list\n");
    assert!(got.starts_with("agent33.yaml:1:1: "), "{got}");
    assert!(got.contains("expected a manifest"), "{got}");
}

#[test]
fn bad_values_name_the_setting_and_place() {
    let cases = [
        (
            "execution:\n  parallel_limit: 0\n",
            "agent33.yaml:2:19: invalid value 0 for parallel_limit: expected a whole number ≥ 1",
        ),
        (
            "execution:\n  timeout_seconds: -1\n",
            "agent33.yaml:2:20: invalid value -1 for timeout_seconds: expected a number of seconds ≥ 0",
        ),
        (
            "execution:\n  timeout_seconds: abc\n",
            "agent33.yaml:2:20: invalid value \"abc\" for timeout_seconds: expected a number of seconds ≥ 0",
        ),
        (
            "execution:\n  fail_fast: perhaps\n",
            "agent33.yaml:2:14: invalid value \"perhaps\" for fail_fast: expected true/false/1/0/yes/no/on/off",
        ),
        (
            "execution:\n  max_failures: 1.5\n",
            "agent33.yaml:2:17: invalid value 1.5 for max_failures: expected a whole number ≥ 1",
        ),
        (
            "execution:\n  parallel_limit: 4.0\n",
            "agent33.yaml:2:19: invalid value 4.0 for parallel_limit: expected a whole number ≥ 1",
        ),
        // Found while fuzzing: beyond 128 bits YAML gives a float,
        // which was refused as if it were a fraction.
        (
            "execution:\n  parallel_limit: 340282366920938463463374607431768211456\n",
            "agent33.yaml:2:19: invalid value 3.402823669209385e38 for parallel_limit: \
                 expected a whole number ≤ 18446744073709551615",
        ),
        (
            "execution:\n  retries: 1e20\n",
            "agent33.yaml:2:12: invalid value 1e20 for retries: \
                 expected a whole number ≤ 18446744073709551615",
        ),
        (
            "execution:\n  retries: -1e20\n",
            "agent33.yaml:2:12: invalid value -1e20 for retries: expected a whole number ≥ 0",
        ),
        (
            "execution:\n  retries: -2\n",
            "agent33.yaml:2:12: invalid value -2 for retries: expected a whole number ≥ 0",
        ),
        (
            "execution:\n  mode: fast\n",
            "agent33.yaml:2:9: invalid value \"fast\" for mode: expected sequential, parallel or dependency-aware",
        ),
        (
            "agents:\n  a:\n    command: x\n    parallel_limit: 0\n",
            "agent33.yaml:4:21: invalid value 0 for parallel_limit of agent `a`: expected a whole number ≥ 1",
        ),
        (
            "agents:\n  a:\n    command: x\n    timeout_seconds: -5\n",
            "agent33.yaml:4:22: invalid value -5 for timeout_seconds of agent `a`",
        ),
        (
            "agents: {a: {command: x}}\ntasks:\n  - {agent: a, artifact: f, retries: x}\n",
            "agent33.yaml:3:38: invalid value \"x\" for retries of task 1: expected a whole number ≥ 0",
        ),
        (
            "execution:\n  parallel_limit: [4]\n",
            "agent33.yaml:2:19: execution.parallel_limit: invalid type: sequence, expected a single value",
        ),
    ];
    for (text, want) in cases {
        let got = err(text);
        assert!(got.starts_with(want), "{got}\nwanted: {want}");
    }
}

#[test]
fn lenient_value_spellings_are_accepted() {
    let m = parse(
        "execution:\n  parallel: yes\n  fail_fast: 'off'\n  timeout_seconds: 0.5\n  \
             deadline_seconds: 0\n  max_failures: '3'\n  output_limit_bytes: 0\n",
    )
    .expect("valid");
    let e = &m.execution;
    assert_eq!(e.parallel.as_ref().map(|s| s.value), Some(true));
    assert_eq!(e.fail_fast.as_ref().map(|s| s.value), Some(false));
    assert_eq!(
        e.timeout.as_ref().map(|s| s.value),
        Some(Some(Duration::from_millis(500)))
    );
    assert_eq!(e.deadline.as_ref().map(|s| s.value), Some(None));
    assert_eq!(e.max_failures.as_ref().map(|s| s.value), Some(3));
    assert_eq!(e.output_limit_bytes.as_ref().map(|s| s.value), Some(0));
}

#[test]
fn mode_is_shorthand_and_excludes_its_long_forms() {
    let m = parse("execution:\n  mode: dependency-aware\n").expect("valid");
    assert_eq!(m.execution.parallel.as_ref().map(|s| s.value), Some(true));
    assert_eq!(
        m.execution.respect_dependencies.as_ref().map(|s| s.value),
        Some(true)
    );
    let m = parse("execution:\n  mode: sequential\n").expect("valid");
    assert_eq!(m.execution.parallel.as_ref().map(|s| s.value), Some(false));
    assert_eq!(m.execution.respect_dependencies, None);

    let got = err("execution:\n  parallel: true\n  mode: parallel\n");
    assert_eq!(
        got,
        "agent33.yaml:3:3: `mode` cannot be combined with `parallel` in one manifest \
             (mode is shorthand for parallel and respect_dependencies; keep one)"
    );
    let got = err("execution:\n  mode: parallel\n  respect_dependencies: false\n");
    assert!(
        got.contains("`mode` cannot be combined with `respect_dependencies`"),
        "{got}"
    );
}

#[test]
fn continue_on_error_and_max_failures_conflict_in_one_manifest() {
    let m = parse("execution:\n  continue_on_error: true\n  max_failures: 3\n").expect("parses");
    let got = m.execution.check_stop_rule().unwrap_err().to_string();
    assert!(
            got.starts_with("agent33.yaml:2:22: continue_on_error: true (from manifest agent33.yaml:2:22) and max_failures (from manifest agent33.yaml:3:17)"),
            "{got}"
        );
    let m = parse("execution:\n  continue_on_error: false\n  max_failures: 3\n").expect("parses");
    m.execution
        .check_stop_rule()
        .expect("false conflicts with nothing");
}

#[test]
fn agent_and_task_mistakes_are_errors() {
    let cases = [
        (
            "agents:\n  lint: {command: x}\ntasks:\n  - agent: lint\n    artifact: a\n  - agent: lnit\n    artifact: b\n",
            "agent33.yaml:6:12: unknown agent `lnit` in task 2 (agents: lint)",
        ),
        (
            "tasks:\n  - agent: x\n    artifact: a\n",
            "agent33.yaml:2:12: unknown agent `x` in task 1 (no agents are defined)",
        ),
        (
            "agents: {a: {command: x}}\ntasks:\n  - agent: a\n    artifacts: ['*']\n    id: foo\n",
            "agent33.yaml:5:5: task 1: an `artifacts:` entry cannot carry an `id:`",
        ),
        (
            "agents: {a: {command: x}}\ntasks:\n  - agent: a\n    artifact: x\n    artifacts: [y]\n",
            "agent33.yaml:5:5: task 1 has both `artifact` and `artifacts`",
        ),
        (
            "agents: {a: {command: x}}\ntasks:\n  - agent: a\n",
            "agent33.yaml:3:5: task 1 has neither `artifact` nor `artifacts`",
        ),
        (
            "agents: {a: {command: x}}\ntasks:\n  - {agent: a, artifacts: []}\n",
            "agent33.yaml:3:27: task 1: `artifacts` is empty",
        ),
        (
            "agents:\n  a: {command: ''}\n",
            "agent33.yaml:2:16: agent `a`: command is empty",
        ),
        (
            "agents:\n  a: {command: \"echo 'open\"}\n",
            "agent33.yaml:2:16: agent `a`: cannot split command",
        ),
        (
            "agents:\n  a: {command: [], shell: false}\n",
            "agent33.yaml:2:16: agent `a`: command is empty",
        ),
        (
            "agents:\n  a: {command: [sh, x], shell: true}\n",
            "agent33.yaml:2:16: agent `a`: with `shell: true` the command must be one string",
        ),
        (
            "agents:\n  a: {command: 'cat {artifact}', shell: true}\n",
            "agent33.yaml:2:16: agent `a`: a `shell: true` script gets the artifact as \"$1\"",
        ),
        (
            "agents:\n  a: {command: 'cat {}', shell: true}\n",
            "agent33.yaml:2:16: agent `a`: a `shell: true` script gets the artifact as \"$1\"",
        ),
        (
            "agents:\n  a:\n    command: cat {artefact}\n",
            "agent33.yaml:3:14: agent `a`: unknown placeholder {artefact}: the placeholders are",
        ),
        (
            "agents:\n  a: {command: [cat, '{Artifact}']}\n",
            "agent33.yaml:2:16: agent `a`: unknown placeholder {Artifact}",
        ),
        (
            "agents:\n  a: {command: \"sh -c 'cat {}'\"}\n",
            "agent33.yaml:2:16: agent `a`: {} would be pasted into the script that `sh -c` \
                 runs, where an artifact such as `x; rm -rf ~` runs as commands: use `shell: \
                 true`, which runs sh -c with the artifact as \"$1\", and write \"$1\" in the \
                 script: command: 'cat \"$1\"' with shell: true",
        ),
        (
            "agents:\n  a: {command: [bash, -ec, 'cat {.}']}\n",
            "agent33.yaml:2:16: agent `a`: {.} would be pasted into the script that `bash -ec` runs",
        ),
        (
            "agents:\n  a: {command: x, shell: maybe}\n",
            "agent33.yaml:2:26: invalid value \"maybe\" for shell of agent `a`",
        ),
        (
            "agents:\n  a: {shell: true}\n",
            "agent33.yaml:2:6: agents.a: missing field `command`",
        ),
        (
            "agents:\n  a: {command: x, env: {'A=B': c}}\n",
            "agent33.yaml:2:24: agent `a`: invalid environment variable \"A=B\"",
        ),
    ];
    for (text, want) in cases {
        let got = err(text);
        assert!(got.starts_with(want), "{got}\nwanted: {want}");
    }
}

#[test]
fn duplicate_keys_are_errors_at_the_repeat() {
    let cases = [
        (
            "agents:\n  t: {command: \"true\"}\n  t: {command: \"true\"}\n",
            "agent33.yaml:3:3: agents: duplicate key `t`",
        ),
        (
            "execution: {parallel: true}\nexecution: {parallel: true}\nagents: {}\n",
            "agent33.yaml:2:1: duplicate key `execution`",
        ),
        (
            "execution:\n  parallel: true\n  retries: 1\n  parallel: false\n",
            "agent33.yaml:4:3: execution: duplicate key `parallel`",
        ),
        (
            "agents:\n  a:\n    command: x\n    retries: 1\n    command: y\n",
            "agent33.yaml:5:5: agents.a: duplicate key `command`",
        ),
        (
            "agents: {a: {command: x, command: y}}\n",
            "agent33.yaml:1:26: agents.a: duplicate key `command`",
        ),
        (
            "agents:\n  a:\n    command: x\n    env:\n      A: 1\n      B: 2\n      A: 3\n",
            "agent33.yaml:7:7: agents.a.env: duplicate key `A`",
        ),
        (
            "agents:\n  a: {command: x, env: {1: a, '1': b}}\n",
            "agent33.yaml:2:31: agents.a.env: duplicate key `1`",
        ),
        (
            "agents: {a: {command: x}}\ntasks:\n  - agent: a\n    artifact: x\n  - agent: a\n    artifact: y\n    artifact: z\n",
            "agent33.yaml:7:5: tasks[1]: duplicate key `artifact`",
        ),
    ];
    for (text, want) in cases {
        let got = err(text);
        assert_eq!(got, want);
    }
}

#[test]
fn commands_accept_lists_scripts_and_plain_values() {
    let m = parse(
        "agents:\n  l: {command: [sleep, 1, '{artifact}'], env: {N: 4, ON: true}}\n  \
             s: {command: 'wc -l \"$1\"', shell: yes}\n",
    )
    .expect("valid");
    let task = AgentTask::new("l", "f");
    assert_eq!(display_argv(&m.agents[0].command.argv(&task)), "sleep 1 f");
    assert_eq!(
        m.agents[0].command.extra_env(),
        &[
            (OsString::from("N"), OsString::from("4")),
            (OsString::from("ON"), OsString::from("true"))
        ]
    );
    assert_eq!(
        m.agents[1].command.argv(&task),
        ["sh", "-c", "wc -l \"$1\"", "sh", "f"].map(OsString::from)
    );
    // A manifest command without placeholder gets the artifact appended,
    // as an ad-hoc one does; a shell script gets it as $1 only.
    let m = parse("agents:\n  mk: {command: make lint}\n").expect("valid");
    assert_eq!(
        display_argv(&m.agents[0].command.argv(&task)),
        "make lint f"
    );
    // The new placeholders, in both forms; other braces stay.
    let m = parse(
        "agents:\n  t: {command: \"p {} {.} {/} {//} {/.} awk '{print $1}' ${HOME}\"}\n  \
             l: {command: [p, '{/.}', '{1}', 'sh', '-c', '{}']}\n",
    )
    .expect("valid");
    let task = AgentTask::new("t", "d/a.b");
    assert_eq!(
        display_argv(&m.agents[0].command.argv(&task)),
        "p d/a.b d/a a.b d a awk '{print $1}' '${HOME}'"
    );
    assert_eq!(
        display_argv(&m.agents[1].command.argv(&task)),
        "p a {1} sh -c d/a.b"
    );
}

#[test]
fn expansion_errors_name_the_task_and_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, "a.md", "");
    let cases = [
        (
            "agents: {a: {command: x}}\ntasks:\n  - agent: a\n    artifacts: ['*.md', '*.txt']\n",
            ":4:25: glob `*.txt` in task 1 matches nothing",
        ),
        (
            "agents: {a: {command: x}}\ntasks:\n  - agent: a\n    artifacts: '[.md'\n",
            ":4:16: invalid glob `[.md` in task 1",
        ),
        (
            "agents: {a: {command: x}}\ntasks:\n  - {agent: a, artifact: a.md}\n  - {agent: a, artifacts: ['*.md']}\n",
            ":4:5: duplicate task id `a:a.md` (task 2 repeats task 1)",
        ),
        (
            "agents: {a: {command: x}}\ntasks:\n  - {agent: a, artifact: x, id: same}\n  - {agent: a, artifact: y, id: same}\n",
            ":4:5: duplicate task id `same` (task 2 repeats task 1)",
        ),
        (
            "agents: {a: {command: x}}\ntasks:\n  - {agent: a, artifact: x}\n  - {agent: a, artifact: y, depends_on: nope}\n",
            ":4:29: task `a:y` depends on unknown task `nope`",
        ),
        (
            "agents: {a: {command: x}}\ntasks:\n  - {agent: a, artifact: x, id: me, depends_on: [me]}\n",
            ":3:37: task `me` depends on itself",
        ),
        (
            "agents: {a: {command: x}}\ntasks:\n  - {agent: a, artifact: 1, id: a, depends_on: [b]}\n  - {agent: a, artifact: 2, id: b, depends_on: [c]}\n  - {agent: a, artifact: 3, id: c, depends_on: [a]}\n",
            ":3:5: dependency cycle: a → b → c → a",
        ),
    ];
    for (text, want) in cases {
        write(root, "m.yaml", text);
        let m = Manifest::read(&root.join("m.yaml"), true).expect("parses");
        let got = m.tasks().expect_err(want).to_string();
        let file = root.join("m.yaml").display().to_string();
        assert!(
            got.starts_with(&format!("{file}{want}")),
            "{got}\nwanted: {want}"
        );
    }
}

#[test]
fn a_missing_agent_folder_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "m.yaml",
        "agents:\n  a: {command: x, cwd: nowhere}\n",
    );
    let m = Manifest::read(&dir.path().join("m.yaml"), true).expect("parses");
    let got = m.check_agent_folders().unwrap_err().to_string();
    assert!(got.contains(":2:24: agent `a`: folder "), "{got}");
    assert!(got.ends_with("nowhere does not exist"), "{got}");
}

#[test]
fn missing_manifests_are_explained() {
    let got = Manifest::read(Path::new("/nonexistent/agent33.yaml"), false)
        .unwrap_err()
        .to_string();
    assert_eq!(
        got,
        "no manifest: agent33.yaml not found in the current folder \
             (name one with -f PATH, or run ad hoc with --command TEMPLATE)"
    );
    let got = Manifest::read(Path::new("/nonexistent/m.yaml"), true)
        .unwrap_err()
        .to_string();
    assert_eq!(got, "manifest /nonexistent/m.yaml not found");
}

#[test]
fn deep_brackets_are_refused_before_the_yaml_parser_sees_them() {
    // Found by fuzzing: libyaml took minutes over 100 000 levels.
    let text = format!("tasks: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let started = std::time::Instant::now();
    let got = err(&text);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(
        got,
        "agent33.yaml:1:72: `[` and `{` nested more than 64 levels deep \
             (a manifest needs a few; quote text that holds brackets)"
    );
    // The example, brackets in commands and all, is far from it.
    assert!(parse(EXAMPLE).is_ok());
    assert!(parse("agents:\n  a: {command: \"awk '{print $1}' {artifact}\"}\n").is_ok());
}

#[test]
fn control_characters_are_refused_where_they_are() {
    // Found while fuzzing: libyaml's message put them all at 1:1.
    assert_eq!(
        err("execution:\n  parallel: tr\u{0}ue\n"),
        "agent33.yaml:2:15: character U+0000 is not allowed in a YAML file"
    );
    assert_eq!(
        err("agents:\n  é: {command: \"a\u{7f}\"}\n"),
        "agent33.yaml:2:18: character U+007F is not allowed in a YAML file"
    );
    // Escaped, they are text like any other.
    assert!(parse("agents:\n  a: {command: \"a\\u0001\"}\n").is_ok());
}

#[test]
fn a_byte_order_mark_takes_no_column() {
    // Found while fuzzing: places on the first line were one off.
    assert!(
        err("\u{feff}execution: {paralel: true}\n")
            .starts_with("agent33.yaml:1:13: execution: unknown field `paralel`")
    );
    assert!(
        err("\u{feff}execution: {mode: parallel, parallel: true}\n")
            .starts_with("agent33.yaml:1:13: `mode` cannot be combined")
    );
    assert!(parse("\u{feff}execution: {parallel: true}\n").is_ok());
}

/// A manifest with one provider and one LLM agent; `extra` is added to the
/// agent's `llm:` block and `key_var` names the provider's key variable.
fn llm_manifest(key_var: &str, prompt: &str) -> String {
    format!(
        "providers:
  openai:
    base_url: https://api.openai.com/v1
    api_key_env: {key_var}
    max_concurrency: 16
    prices: {{ gpt-4o-mini: {{ prompt_per_mtok: 0.15, completion_per_mtok: 0.60 }} }}
agents:
  refinement:
    llm:
      provider: openai
      model: gpt-4o-mini
      prompt: \"{prompt}\"
      max_tokens: 2000
    retries: 2
tasks:
  - agent: refinement
    artifact: a.md
"
    )
}

/// A variable every test process has, standing in for a key.
const SET_VAR: &str = "PATH";

#[test]
fn llm_agents_are_read_with_their_provider_and_key() {
    let m = parse(&llm_manifest(SET_VAR, "Improve:\\n\\n{content}")).expect("valid");
    assert!(m.agents.is_empty());
    let [def] = m.llm_agents.as_slice() else {
        panic!("one LLM agent: {:?}", m.llm_agents)
    };
    assert_eq!(def.name, "refinement");
    assert_eq!(def.provider, "openai");
    assert_eq!(def.block.model, "gpt-4o-mini");
    assert_eq!(def.block.prompt, "Improve:\n\n{content}");
    assert_eq!(def.retries, Some(2));
    assert!(def.key.is_some());
    assert!(def.price().is_some());
    assert_eq!(m.tasks().expect("tasks")[0].agent, "refinement");
}

#[test]
fn llm_errors_point_at_the_key_they_are_about() {
    let unset = "AGENT33_TEST_SURELY_UNSET_KEY";
    // Kept for the run to refuse (a worker or a distributed run may lack it).
    let m = parse(&llm_manifest(unset, "{content}")).expect("valid but for the key");
    assert_eq!(
        m.missing_key.map(|e| e.to_string()),
        Some(format!(
            "agent33.yaml:4:18: the key of provider `openai` is read from ${unset}, which is not set"
        ))
    );
    assert!(m.llm_agents[0].key.is_none());
    assert_eq!(
        err(&llm_manifest(SET_VAR, "Say hi")),
        "agent33.yaml:12:15: the prompt of agent `refinement` uses neither {content} nor {artifact}"
    );
    let missing =
        llm_manifest(SET_VAR, "{content}").replace("provider: openai", "provider: anthropic");
    assert_eq!(
        err(&missing),
        "agent33.yaml:10:17: unknown provider `anthropic` in agent `refinement` (providers: openai)"
    );
    let unknown = llm_manifest(SET_VAR, "{content}").replace("max_tokens:", "top_p:");
    assert!(
        err(&unknown).starts_with("agent33.yaml:13:7: ")
            && err(&unknown).contains("unknown field `top_p`"),
        "{}",
        err(&unknown)
    );
    let unknown = llm_manifest(SET_VAR, "{content}").replace("max_concurrency:", "api_key:");
    assert!(
        err(&unknown).starts_with("agent33.yaml:5:5: ")
            && err(&unknown).contains("unknown field `api_key`"),
        "{}",
        err(&unknown)
    );
}

#[test]
fn an_agent_has_a_command_or_an_llm_block() {
    let both =
        llm_manifest(SET_VAR, "{content}").replace("    llm:\n", "    command: cat\n    llm:\n");
    assert_eq!(
        err(&both),
        "agent33.yaml:10:5: agent `refinement` has both `command` and `llm`; use one"
    );
    let neither = "agents:\n  idle:\n    retries: 1\n";
    assert_eq!(
        err(neither),
        "agent33.yaml:3:5: agents.idle: missing field `command` (an agent has `command` or `llm`)"
    );
    let shell = llm_manifest(SET_VAR, "{content}").replace("    retries: 2\n", "    cwd: x\n");
    assert_eq!(
        err(&shell),
        "agent33.yaml:14:5: agent `refinement`: `cwd` is for command agents, not `llm`"
    );
}

#[test]
fn the_readmes_llm_manifest_is_valid() {
    let readme = include_str!("../../../../README.md");
    let section = &readme[readme.find("## LLM agents").expect("the section")..];
    let start = section.find("```yaml\n").expect("a manifest") + "```yaml\n".len();
    let end = start + section[start..].find("```").expect("its end");
    let m = parse(&section[start..end]).expect("the README's manifest is valid");
    let [def] = m.llm_agents.as_slice() else {
        panic!("one LLM agent")
    };
    assert_eq!(def.config.base_url, "http://localhost:11434/v1");
    assert_eq!(def.key, None, "a local server needs no key");
}
