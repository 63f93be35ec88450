//! PRODUCT.md, The manifest: what each command gets — `AGENT33_*`
//! variables, the agent's `env` and `cwd` (relative to the manifest's
//! folder), an empty stdin — and paths relative to the right folder.

use crate::support::Sandbox;

#[test]
fn commands_get_their_task_agent_artifact_and_attempt() {
    let sb = Sandbox::new();
    sb.manifest(
        r#"
agents:
  show:
    shell: true
    command: |
      printf '%s|%s|%s|%s\n' "$AGENT33_TASK_ID" "$AGENT33_AGENT" "$AGENT33_ARTIFACT" "$AGENT33_ATTEMPT"
      [ "$1" != flaky ] || [ "$AGENT33_ATTEMPT" -ge 2 ]
tasks:
  - {agent: show, artifact: 'some file.md'}
  - {agent: show, artifact: flaky, id: my-id, retries: 1}
"#,
    );
    sb.run(["--retry-backoff", "0", "--report", "r.json"])
        .output()
        .code_is(0);
    let r = sb.report("r.json");
    assert_eq!(
        r.task("show:some file.md")["output"],
        "show:some file.md|show|some file.md|1\n"
    );
    assert_eq!(r.task("my-id")["output"], "my-id|show|flaky|2\n");
}

#[test]
fn agents_get_their_env_and_cwd_relative_to_the_manifests_folder() {
    let sb = Sandbox::new();
    sb.write("proj/tools/.keep", "");
    sb.write("proj/data/1.txt", "one\n");
    sb.write("proj/data/2.txt", "two\n");
    sb.write(
        "proj/agent33.yaml",
        r#"
agents:
  where:
    shell: true
    command: 'echo "$(pwd -P) $MODEL [$EMPTY] $HOME_SET"'
    cwd: tools
    env: {MODEL: llama3, EMPTY: ""}
  home:
    command: ["sh", "-c", "pwd -P; cat \"$1\"", "sh", "{artifact}"]
tasks:
  - {agent: where, artifact: x}
  - {agent: home, artifacts: ["data/*.txt"]}
"#,
    );
    // Run from elsewhere: the manifest's folder anchors its paths.
    std::fs::create_dir(sb.join("elsewhere")).expect("mkdir");
    sb.run(["-f", "../proj/agent33.yaml", "--report", "r.json"])
        .current_dir(sb.join("elsewhere"))
        .env("HOME_SET", "inherited")
        .output()
        .code_is(0);
    let r = sb.report("elsewhere/r.json");
    let proj = sb.join("proj");
    assert_eq!(
        r.task("where:x")["output"],
        format!("{}/tools llama3 [] inherited\n", proj.display())
    );
    assert_eq!(
        r.ids("succeeded"),
        ["where:x", "home:data/1.txt", "home:data/2.txt"]
    );
    assert_eq!(
        r.task("home:data/1.txt")["output"],
        format!("{}\none\n", proj.display())
    );
    assert_eq!(r.task("home:data/2.txt")["task"]["artifact"], "data/2.txt");
}

#[test]
fn commands_get_an_empty_stdin() {
    let sb = Sandbox::new();
    let mut run = sb
        .run(["--command", "sh -c 'wc -c' sh", "--report", "r.json", "x"])
        .spawn();
    // agent-33's own stdin has data and stays open: a command reading it
    // would either see the data or wait forever.
    run.write_stdin(b"secret\n").expect("write stdin");
    run.wait_exit();
    let out = run.finish();
    out.code_is(0);
    let r = sb.report("r.json");
    assert_eq!(
        r.task("command:x")["output"].as_str().map(str::trim),
        Some("0")
    );
}

#[test]
fn the_default_manifest_is_read_from_the_current_folder() {
    let sb = Sandbox::new();
    sb.manifest(
        "agents:\n  t: {command: \"touch {artifact}\"}\ntasks:\n  - {agent: t, artifact: made}\n",
    );
    sb.run([] as [&str; 0]).output().code_is(0);
    assert!(sb.exists("made"));
}

#[test]
fn every_command_of_a_run_gets_the_same_run_id_never_an_inherited_one() {
    let sb = Sandbox::new();
    sb.run([
        "--report",
        "r.json",
        "--command",
        "sh -c 'echo \"$AGENT33_RUN_ID\"' sh",
        "a",
        "b",
    ])
    // What an agent-33 running as a task of another sees.
    .env("AGENT33_RUN_ID", "outer")
    .output()
    .code_is(0);
    let r = sb.report("r.json");
    let a = r.task("command:a")["output"]
        .as_str()
        .expect("output")
        .to_owned();
    assert_eq!(r.task("command:b")["output"], a.as_str());
    // agent-33's pid and a time: `PID-NANOSECONDS`.
    let parts: Vec<&str> = a.trim().split('-').collect();
    assert!(
        parts.len() == 2
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
        "{a:?}"
    );
}
