//! PRODUCT.md, The manifest: an artifact reaches the program as one
//! literal argument, whatever it contains, and is never run by a shell.
//! A tiny script prints its argument count and each argument's bytes in
//! hex; nothing the artifacts try to create may appear.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use crate::support::{
    SHOW_ARGS, Sandbox, assert_nothing_injected, assert_outputs, plan_argvs, shown,
};

/// Artifacts that a shell would split, expand or run.
fn hostile() -> Vec<OsString> {
    let mut v: Vec<OsString> = [
        "a; touch x",
        "$(touch y)",
        "`touch z`",
        "it's",
        "say \"hi\"",
        "two  spaces ",
        " leading",
        "line1\nline2",
        "*",
        "-n",
        "{id}",
        "a|touch p && touch q",
        "back\\slash",
        "tab\there",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    v.push(OsString::from_vec(b"caf\xe9 \xff\xfe".to_vec()));
    v
}

#[test]
fn positional_artifacts_reach_the_program_as_one_literal_argument() {
    let sb = Sandbox::new();
    sb.write("show.sh", SHOW_ARGS);
    let artifacts = hostile();
    for template in ["sh show.sh", "sh show.sh {artifact}"] {
        let mut cmd = sb.run([
            "--command",
            template,
            "--continue-on-error",
            "--report",
            "r.json",
            "--",
        ]);
        cmd.cmd.args(&artifacts);
        cmd.output().code_is(0);
        assert_outputs(&sb.report("r.json"), &artifacts, |a| shown(&[a]));
        assert_nothing_injected(&sb);
    }
}

#[test]
fn a_placeholder_inside_a_word_stays_inside_that_word() {
    let sb = Sandbox::new();
    sb.write("show.sh", SHOW_ARGS);
    let artifacts = hostile();
    let mut cmd = sb.run([
        "--command",
        "sh show.sh --file=pre-{artifact}-post 'fixed arg'",
        "--report",
        "r.json",
        "--",
    ]);
    cmd.cmd.args(&artifacts);
    cmd.output().code_is(0);
    assert_outputs(&sb.report("r.json"), &artifacts, |a| {
        let word = [b"--file=pre-", a, b"-post"].concat();
        shown(&[&word, b"fixed arg"])
    });
    assert_nothing_injected(&sb);
}

#[test]
fn artifacts_from_a_file_keep_their_bytes() {
    let sb = Sandbox::new();
    sb.write("show.sh", SHOW_ARGS);
    // Everything but the newline, one per line.
    let artifacts: Vec<OsString> = hostile()
        .into_iter()
        .filter(|a| !a.as_bytes().contains(&b'\n'))
        .collect();
    let mut list = Vec::new();
    for a in &artifacts {
        list.extend_from_slice(a.as_bytes());
        list.push(b'\n');
    }
    sb.write("list.txt", &list);
    sb.run([
        "--command",
        "sh show.sh",
        "--artifacts-from",
        "list.txt",
        "--report",
        "r.json",
    ])
    .output()
    .code_is(0);
    assert_outputs(&sb.report("r.json"), &artifacts, |a| shown(&[a]));
    assert_nothing_injected(&sb);
}

#[test]
fn manifest_commands_as_strings_and_lists_pass_the_artifact_whole() {
    let sb = Sandbox::new();
    sb.write("show.sh", SHOW_ARGS);
    sb.manifest(
        r#"
agents:
  text: {command: "sh show.sh {artifact}"}
  list: {command: ["sh", "show.sh", "{artifact}"]}
tasks:
  - {agent: text, artifacts: ["*.in"]}
  - {agent: text, artifact: 'a; touch x'}
  - {agent: text, artifact: '$(touch y)'}
  - {agent: text, artifact: '`touch z`'}
  - {agent: text, artifact: 'it''s "quoted"'}
  - {agent: text, artifact: "line1\nline2"}
  - {agent: list, artifact: 'a; touch x'}
  - {agent: list, artifact: '$(touch y) `touch z` it''s "q"'}
"#,
    );
    sb.write("odd name; touch x.in", "");
    sb.run(["--report", "r.json"]).output().code_is(0);
    let artifacts: Vec<OsString> = [
        "odd name; touch x.in",
        "a; touch x",
        "$(touch y)",
        "`touch z`",
        "it's \"quoted\"",
        "line1\nline2",
        "a; touch x",
        "$(touch y) `touch z` it's \"q\"",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    assert_outputs(&sb.report("r.json"), &artifacts, |a| shown(&[a]));
    assert_nothing_injected(&sb);
}

#[test]
fn shell_scripts_get_the_artifact_as_dollar_one_never_pasted() {
    let sb = Sandbox::new();
    let mut manifest = String::from("agents:\n  s:\n    shell: true\n    command: |\n");
    for line in SHOW_ARGS.lines() {
        manifest.push_str("      ");
        manifest.push_str(line);
        manifest.push('\n');
    }
    manifest.push_str(
        r#"tasks:
  - {agent: s, artifact: 'a; touch x'}
  - {agent: s, artifact: '$(touch y)'}
  - {agent: s, artifact: '`touch z`'}
  - {agent: s, artifact: '"; touch p; "'}
  - {agent: s, artifact: "'; touch q; '"}
"#,
    );
    sb.manifest(&manifest);
    sb.run(["--report", "r.json"]).output().code_is(0);
    let artifacts: Vec<OsString> = [
        "a; touch x",
        "$(touch y)",
        "`touch z`",
        "\"; touch p; \"",
        "'; touch q; '",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    assert_outputs(&sb.report("r.json"), &artifacts, |a| shown(&[a]));
    assert_nothing_injected(&sb);
}

#[test]
fn the_dry_run_shows_the_exact_argv() {
    let sb = Sandbox::new();
    let p = sb.dry_run_json(&["--command", "sh show.sh -v", "a; touch x", "$(touch y)"]);
    assert_eq!(
        plan_argvs(&p),
        [
            serde_json::json!(["sh", "show.sh", "-v", "a; touch x"]),
            serde_json::json!(["sh", "show.sh", "-v", "$(touch y)"]),
        ]
    );
    assert_nothing_injected(&sb);
}

#[test]
fn agent_and_id_placeholders_are_replaced_inside_words() {
    let sb = Sandbox::new();
    sb.write("show.sh", SHOW_ARGS);
    sb.manifest(
        r#"
agents:
  lint: {command: "sh show.sh --agent={agent} {id} {artifact}"}
tasks:
  - {agent: lint, artifact: '{agent} {id}'}
  - {agent: lint, artifact: 'plain', id: 'my id'}
"#,
    );
    sb.run(["--report", "r.json"]).output().code_is(0);
    let r = sb.report("r.json");
    // Text a placeholder inserts is never scanned again.
    assert_eq!(
        r.task("lint:{agent} {id}")["output"],
        shown(&[b"--agent=lint", b"lint:{agent} {id}", b"{agent} {id}"])
    );
    assert_eq!(
        r.task("my id")["output"],
        shown(&[b"--agent=lint", b"my id", b"plain"])
    );
}

/// Regression: `sh -c` with the artifact pasted into its script ran the
/// artifact's commands. It is refused now, before anything runs.
#[test]
fn a_placeholder_pasted_into_sh_c_is_refused_and_runs_nothing() {
    let sb = Sandbox::new();
    let out = sb
        .run([
            "--command",
            "sh -c 'echo {artifact}'",
            "--",
            "x; touch PWNED",
        ])
        .output();
    out.usage_error("--shell");
    out.usage_error("\"$1\"");
    assert!(!sb.exists("PWNED"), "the artifact ran: {:?}", sb.files());
}
