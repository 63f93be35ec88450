//! PRODUCT.md, The CLI: the placeholders (`{}`, `{.}`, `{/}`, `{//}`,
//! `{/.}`, `{#}`, `{%}` beside `{artifact}`, `{agent}`, `{id}`) with GNU
//! parallel's meanings, unknown `{name}`s refused, other braces literal,
//! `--shell`, and the refusal of a placeholder pasted into `sh -c`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use serde_json::json;

use crate::support::{
    Report, SHOW_ARGS, Sandbox, assert_nothing_injected, assert_outputs, plan_argvs, shown,
};

fn output_of<'a>(r: &'a Report, id: &str) -> &'a str {
    r.task(id)["output"].as_str().expect("output")
}

#[test]
fn path_placeholders_reach_the_program_with_gnu_parallels_meanings() {
    let sb = Sandbox::new();
    sb.write("show.sh", SHOW_ARGS);
    sb.run([
        "--command",
        "sh show.sh {} {artifact} {.} {/} {//} {/.} {agent} {id}",
        "--report",
        "r.json",
        "--",
        "src/dir.x/a.tar.gz",
        ".bashrc",
        "a/b/",
        "file",
        "-n; touch x",
    ])
    .output()
    .code_is(0);
    let r = sb.report("r.json");
    for (artifact, [stem, name, dir, name_stem]) in [
        (
            "src/dir.x/a.tar.gz",
            ["src/dir.x/a.tar", "a.tar.gz", "src/dir.x", "a.tar"],
        ),
        (".bashrc", ["", ".bashrc", ".", ""]),
        ("a/b/", ["a/b/", "", "a", ""]),
        ("file", ["file", "file", ".", "file"]),
        (
            "-n; touch x",
            ["-n; touch x", "-n; touch x", ".", "-n; touch x"],
        ),
    ] {
        let id = format!("command:{artifact}");
        assert_eq!(
            output_of(&r, &id),
            shown(&[
                artifact.as_bytes(),
                artifact.as_bytes(),
                stem.as_bytes(),
                name.as_bytes(),
                dir.as_bytes(),
                name_stem.as_bytes(),
                b"command",
                id.as_bytes(),
            ]),
            "{artifact}"
        );
    }
    assert!(!sb.exists("x"));
}

#[test]
fn manifest_commands_take_the_placeholders_in_both_forms() {
    let sb = Sandbox::new();
    sb.write("show.sh", SHOW_ARGS);
    sb.manifest(
        r#"
agents:
  text: {command: "sh show.sh {} {/.} x{//}y"}
  list: {command: [sh, show.sh, "{.}", "{/}", "{agent}"]}
tasks:
  - {agent: text, artifact: "docs/read me.md"}
  - {agent: list, artifact: "docs/read me.md"}
"#,
    );
    sb.run(["--report", "r.json"]).output().code_is(0);
    let r = sb.report("r.json");
    assert_eq!(
        output_of(&r, "text:docs/read me.md"),
        shown(&[b"docs/read me.md", b"read me", b"xdocsy"])
    );
    assert_eq!(
        output_of(&r, "list:docs/read me.md"),
        shown(&[b"docs/read me", b"read me.md", b"list"])
    );
}

#[test]
fn other_braces_are_passed_as_written() {
    let sb = Sandbox::new();
    sb.write("show.sh", SHOW_ARGS);
    sb.run([
        "--command",
        r#"sh show.sh '{print $1}' {1} '{"json": 1}' '${HOME}' { }"#,
        "--report",
        "r.json",
        "f",
    ])
    .output()
    .code_is(0);
    // No placeholder: the artifact is appended.
    assert_eq!(
        output_of(&sb.report("r.json"), "command:f"),
        shown(&[
            b"{print $1}",
            b"{1}",
            b"{\"json\": 1}",
            b"${HOME}",
            b"{",
            b"}",
            b"f"
        ])
    );
}

#[test]
fn an_unknown_name_is_a_usage_error_that_names_it() {
    let sb = Sandbox::new();
    sb.run(["--command", "touch ran {artefact}", "a"])
        .output()
        .usage_error(
            "agent-33: error: invalid --command: unknown placeholder {artefact}: the \
             placeholders are {}, {artifact}, {.}, {/}, {//}, {/.}, {#}, {%}, {agent} and {id}",
        );
    sb.run(["--shell", "--command", "touch ran; echo {Artifact}", "a"])
        .output()
        .usage_error("invalid --command: unknown placeholder {Artifact}");
    sb.manifest(
        "agents:\n  t:\n    command: [touch, ran, '{file}']\ntasks:\n  - {agent: t, artifact: a}\n",
    );
    sb.run::<_, &str>([])
        .output()
        .usage_error("agent-33: error: agent33.yaml:3:14: agent `t`: unknown placeholder {file}");
    assert!(!sb.exists("ran"));
}

/// Forms of `sh -c` with a placeholder pasted into its script.
const PASTED: &[&str] = &[
    "sh -c 'echo {artifact} > out'",
    "sh -c 'echo {} > out'",
    "bash -c 'echo {.} > out'",
    "/bin/sh -c 'echo {/} > out'",
    "dash -ec 'echo {//} > out'",
    "sh -e -c 'echo {#} > out'",
    "sh -xc 'echo {%} > out'",
    "env sh -c 'echo {id} > out'",
];

#[test]
fn a_placeholder_pasted_into_a_shell_script_is_refused_before_anything_runs() {
    let sb = Sandbox::new();
    for template in PASTED {
        let out = sb
            .run(["--command", template, "--", "x; touch PWNED"])
            .output();
        out.usage_error("would be pasted into the script that `");
        out.usage_error("--shell");
        out.usage_error("\"$1\"");
    }
    let out = sb.run(["--command", "sh -c 'echo {} > out'", "a"]).output();
    out.usage_error(
        "agent-33: error: invalid --command: {} would be pasted into the script that `sh -c` \
         runs, where an artifact such as `x; rm -rf ~` runs as commands: use --shell, which runs \
         sh -c with the artifact as \"$1\", and write \"$1\" in the script: --shell --command \
         'echo \"$1\" > out'",
    );
    for (n, template) in PASTED.iter().enumerate() {
        let words = shell_words::split(template).expect("splits");
        let list: Vec<String> = words
            .iter()
            .map(|w| format!("'{}'", w.replace('\'', "''")))
            .collect();
        for command in [
            format!("'{}'", template.replace('\'', "''")),
            format!("[{}]", list.join(", ")),
        ] {
            sb.manifest(&format!(
                "agents:\n  t:\n    command: {command}\ntasks:\n  - {{agent: t, artifact: 'x; touch PWNED'}}\n"
            ));
            let out = sb.run::<_, &str>([]).output();
            out.usage_error("agent-33: error: agent33.yaml:3:14: agent `t`: ");
            out.usage_error("would be pasted into the script that `");
            out.usage_error("`shell: true`");
            out.usage_error("\"$1\"");
            assert!(!sb.exists("out"), "case {n}");
        }
    }
    assert!(!sb.exists("PWNED"));
    assert!(!sb.exists("out"));
}

#[test]
fn a_script_that_takes_the_artifact_as_an_argument_runs() {
    let sb = Sandbox::new();
    sb.write("show.sh", SHOW_ARGS);
    let artifacts = ["x; touch PWNED", "it's \"q\"", "-n"];
    for template in [
        "sh -c 'sh show.sh \"$1\"' sh {}",
        "bash -c 'sh show.sh \"$1\" \"${#}\"' bash {artifact}",
    ] {
        let mut cmd = sb.run(["--command", template, "--report", "r.json", "--"]);
        cmd.cmd.args(artifacts);
        cmd.output().code_is(0);
        let r = sb.report("r.json");
        for a in artifacts {
            let want = if template.starts_with("bash") {
                shown(&[a.as_bytes(), b"1"])
            } else {
                shown(&[a.as_bytes()])
            };
            assert_eq!(output_of(&r, &format!("command:{a}")), want, "{template}");
        }
    }
    assert!(!sb.exists("PWNED"));
}

/// `sh -c {}`: each artifact is a command line, as in `parallel < jobs.txt`.
#[test]
fn a_script_word_that_is_exactly_a_placeholder_runs_each_artifact_as_a_command() {
    let sb = Sandbox::new();
    sb.write("jobs.txt", "touch one\ntouch two && touch three\n");
    sb.run(["--command", "sh -c {}", "--artifacts-from", "jobs.txt"])
        .output()
        .code_is(0);
    for f in ["one", "two", "three"] {
        assert!(sb.exists(f), "{f}: {:?}", sb.files());
    }
}

/// Artifacts a shell would split, expand or run.
fn awkward() -> Vec<OsString> {
    let mut v: Vec<OsString> = [
        "two  spaces ",
        "it's",
        "say \"hi\"",
        "a; touch x",
        "$(touch y)",
        "`touch z`",
        "line1\nline2",
        "-n",
        "--help",
        "{}",
        "*",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    v.push(OsString::from_vec(b"caf\xe9".to_vec()));
    v
}

#[test]
fn shell_runs_the_template_with_sh_and_the_artifact_as_dollar_one() {
    let sb = Sandbox::new();
    sb.write("show.sh", SHOW_ARGS);
    let artifacts = awkward();
    let mut cmd = sb.run([
        "--shell",
        "--command",
        "sh show.sh \"$1\" \"$#\" | tee -a all.txt",
        "--report",
        "r.json",
        "--",
    ]);
    cmd.cmd.args(&artifacts);
    cmd.output().code_is(0);
    assert_outputs(&sb.report("r.json"), &artifacts, |a| shown(&[a, b"1"]));
    assert_nothing_injected(&sb);
}

#[test]
fn shell_reads_artifacts_from_stdin_too() {
    let sb = Sandbox::new();
    sb.write("list.txt", "a b\n'; touch x; '\n-e\n");
    let out = sb
        .run([
            "--shell",
            "--command",
            "printf '[%s]' \"$1\"",
            "--output",
            "none",
            "--report",
            "r.json",
            "--artifacts-from",
            "list.txt",
        ])
        .output();
    out.code_is(0);
    let r = sb.report("r.json");
    assert_eq!(output_of(&r, "command:a b"), "[a b]");
    assert_eq!(output_of(&r, "command:'; touch x; '"), "['; touch x; ']");
    assert_eq!(output_of(&r, "command:-e"), "[-e]");
    assert!(!sb.exists("x"));
}

#[test]
fn shell_mistakes_are_usage_errors() {
    let sb = Sandbox::new();
    sb.run(["--shell", "a"])
        .output()
        .usage_error("agent-33: error: --shell needs --command TEMPLATE");
    sb.run(["--shell", "--command", "touch ran; cat {}", "a"])
        .output()
        .usage_error(
            "agent-33: error: invalid --command: a --shell script gets the artifact as \"$1\" \
             (and $AGENT33_AGENT, $AGENT33_TASK_ID in its environment); {} is not replaced in a \
             script, write \"$1\" instead",
        );
    sb.run(["--shell", "--command", "touch ran; echo {#}", "a"])
        .output()
        .usage_error("{#} is not replaced in a script");
    sb.run(["--shell", "--command", "  ", "a"])
        .output()
        .usage_error("invalid --command: shell script is empty");
    assert!(!sb.exists("ran"));
}

#[test]
fn the_dry_run_shows_the_expanded_placeholders() {
    let sb = Sandbox::new();
    let template = "cp {} out/{#}-{/.}.bak {//} {%}";
    let p = sb.dry_run_json(&["--command", template, "a/x.txt", "b.c"]);
    // Sequential: every task runs in slot 1.
    assert_eq!(
        plan_argvs(&p),
        [
            json!(["cp", "a/x.txt", "out/1-x.bak", "a", "1"]),
            json!(["cp", "b.c", "out/2-b.bak", ".", "1"]),
        ]
    );
    let p = sb.dry_run_json(&["-j", "4", "--command", template, "a/x.txt", "b.c"]);
    // In parallel the slot is decided as a task starts.
    assert_eq!(
        plan_argvs(&p),
        [
            json!(["cp", "a/x.txt", "out/1-x.bak", "a", "{%}"]),
            json!(["cp", "b.c", "out/2-b.bak", ".", "{%}"]),
        ]
    );
    let out = sb
        .run([
            "--dry-run",
            "-j",
            "4",
            "--command",
            template,
            "a/x.txt",
            "b.c",
        ])
        .output();
    out.code_is(0);
    let text = out.stdout();
    assert!(
        text.contains("\n{%} is shown as written: it becomes the slot a task starts in (1…4), known only then\n"),
        "{text}"
    );
    assert!(
        text.contains("    argv:     cp a/x.txt out/1-x.bak a '{%}'\n"),
        "{text}"
    );
    assert!(
        text.contains("    argv:     cp b.c out/2-b.bak . '{%}'\n"),
        "{text}"
    );
    assert!(!sb.exists("out"));
}

#[test]
fn the_dry_run_of_a_manifest_numbers_tasks_in_input_order() {
    let sb = Sandbox::new();
    sb.manifest(
        r#"
agents:
  a: {command: "echo {#} {.}"}
  b: {command: [echo, "{#}", "{/}"]}
tasks:
  - {agent: a, artifact: x/one.md}
  - {agent: b, artifact: x/two.md, depends_on: ["a:x/one.md"]}
  - {agent: a, artifact: three.md}
"#,
    );
    let out = sb.run(["--dry-run"]).output();
    out.code_is(0);
    let text = out.stdout();
    for line in [
        "    argv:     echo 1 x/one\n",
        "    argv:     echo 2 two.md\n",
        "    argv:     echo 3 three\n",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
    assert!(!text.contains("{%}"), "{text}");
}

#[test]
fn position_is_the_tasks_place_in_the_input_from_one() {
    let sb = Sandbox::new();
    sb.write("show.sh", SHOW_ARGS);
    sb.run([
        "--command",
        "sh show.sh {#} {}",
        "--report",
        "r.json",
        "-j",
        "2",
        "x",
        "y",
        "x",
    ])
    .output()
    .code_is(0);
    let r = sb.report("r.json");
    for (id, want) in [
        ("command:x", shown(&[b"1", b"x"])),
        ("command:y", shown(&[b"2", b"y"])),
        ("command:x#2", shown(&[b"3", b"x"])),
    ] {
        assert_eq!(output_of(&r, id), want, "{id}");
    }
    // Read as a stream, and in a manifest, alike.
    sb.write("list.txt", "p\n\nq\n");
    sb.run([
        "--command",
        "sh show.sh n{#}",
        "--report",
        "s.json",
        "--artifacts-from",
        "list.txt",
    ])
    .output()
    .code_is(0);
    let r = sb.report("s.json");
    // `{#}` is a placeholder too: nothing is appended.
    assert_eq!(output_of(&r, "command:p"), shown(&[b"n1"]));
    assert_eq!(output_of(&r, "command:q"), shown(&[b"n2"]));
    sb.manifest(
        "agents:\n  a: {command: \"sh show.sh {#}\"}\n  b: {command: [sh, show.sh, '{#}']}\n\
         tasks:\n  - {agent: a, artifact: one}\n  - {agent: b, artifact: two}\n",
    );
    sb.run(["--report", "m.json"]).output().code_is(0);
    let r = sb.report("m.json");
    assert_eq!(output_of(&r, "a:one"), shown(&[b"1"]));
    assert_eq!(output_of(&r, "b:two"), shown(&[b"2"]));
}

/// Each task records its slot, then waits until all three have started:
/// they run at once, so their slots are 1, 2 and 3 in some order.
#[test]
fn slots_are_distinct_among_running_tasks_and_within_the_limit() {
    let sb = Sandbox::new();
    sb.manifest(
        r#"
agents:
  t:
    command:
      - sh
      - -c
      - |
        printf %s "$2" > "slot.$1"
        until [ -e slot.a ] && [ -e slot.b ] && [ -e slot.c ]; do sleep 0.01; done
      - sh
      - "{}"
      - "{%}"
tasks:
  - {agent: t, artifact: a}
  - {agent: t, artifact: b}
  - {agent: t, artifact: c}
"#,
    );
    sb.run(["-j", "3"]).output().code_is(0);
    let mut slots: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|t| sb.read(format!("slot.{t}")))
        .collect();
    slots.sort();
    assert_eq!(slots, ["1", "2", "3"]);
    // One at a time, every task runs in slot 1.
    sb.write("show.sh", SHOW_ARGS);
    sb.run([
        "--command",
        "sh show.sh {%}",
        "--report",
        "r.json",
        "a",
        "b",
    ])
    .output()
    .code_is(0);
    let r = sb.report("r.json");
    for id in ["command:a", "command:b"] {
        assert_eq!(output_of(&r, id), shown(&[b"1"]), "{id}");
    }
}
