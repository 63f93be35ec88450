//! LLM agents in a distributed run: the workers send the requests with
//! their own keys and report what the provider said; the coordinator,
//! which needs no key, holds the one limiter per provider and decides when
//! each request goes out.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use agent33_testkit::llm_server::{FakeLlmConfig, FakeLlmServer};

use crate::support::{HANG, Sandbox, Server, Worker, agent33, serial, wait_output};

const KEY: &str = "sk-nats-SECRET-1a2b3c4d";
const KEY_VAR: &str = "AGENT33_TEST_LLM_KEY";

/// The fake provider, which wants `KEY`, on a runtime of its own (kept
/// alive by the caller).
fn fake_llm(config: FakeLlmConfig) -> (tokio::runtime::Runtime, FakeLlmServer) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the fake LLM server");
    let llm = runtime
        .block_on(FakeLlmServer::start(FakeLlmConfig {
            api_key: Some(KEY.into()),
            ..config
        }))
        .expect("the fake LLM server starts");
    (runtime, llm)
}

#[test]
fn llm_tasks_run_on_workers_under_the_coordinators_limiter() {
    let _lock = serial();
    let Some(server) = Server::start() else {
        return;
    };
    // At most 2 requests at once: a third is refused with a 429.
    let (_runtime, llm) = fake_llm(FakeLlmConfig {
        max_concurrent: Some(2),
        latency: Duration::from_millis(50),
        ..FakeLlmConfig::default()
    });
    let dir = Sandbox::new();
    for k in 0..12 {
        dir.write(format!("docs/d{k}.md"), format!("Document {k}.\n"));
    }
    dir.write(
        "agent33.yaml",
        format!(
            "execution: {{ parallel_limit: 8 }}
providers:
  fake:
    base_url: {base}
    api_key_env: {KEY_VAR}
    max_concurrency: 8
agents:
  refine:
    llm:
      provider: fake
      model: fake-model
      prompt: \"Improve:\\n\\n{{content}}\"
      max_tokens: 16
  count:
    shell: true
    command: 'wc -c < \"$1\"'
tasks:
  - agent: refine
    artifacts: [\"docs/*.md\"]
  - agent: count
    artifacts: [\"docs/*.md\"]
",
            base = llm.base_url()
        ),
    );
    let url = server.url();
    // The workers hold the key; the coordinator has none (its environment
    // has no AGENT33_* variable).
    let key: &[(&str, &Path)] = &[(KEY_VAR, Path::new(KEY))];
    let w1 = Worker::start_with_env(&dir.path(), &url, "w1", &["--slots", "4"], key);
    let w2 = Worker::start_with_env(&dir.path(), &url, "w2", &["--slots", "4"], key);
    let run = agent33(&dir.path())
        .args(["run", "--nats", &url, "--report", "r.json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent-33 starts");
    let output = wait_output(run, HANG);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let report = dir.json("r.json");
    let succeeded = report["succeeded"].as_array().expect("a list");
    assert_eq!(succeeded.len(), 24, "{report}");
    for task in succeeded {
        let agent = task["task"]["agent"].as_str().expect("an agent");
        let worker = task["worker"].as_str().unwrap_or_default();
        assert!(["w1", "w2"].contains(&worker), "{task}");
        if agent == "refine" {
            // The answer came back from the worker, its usage counted.
            assert!(task["usage"]["total_tokens"].as_u64() > Some(0), "{task}");
            assert!(
                !task["output"].as_str().unwrap_or_default().is_empty(),
                "{task}"
            );
        }
    }
    // One limiter for the provider: the workers reported each refusal, and
    // the coordinator deferred the task (no task failed, no retry was
    // used); every task got its one answer, and the summary, counted at
    // the coordinator, matches what the server saw.
    let log = llm.log();
    let answered = log.iter().filter(|r| r.status == Some(200)).count();
    let refused = log.iter().filter(|r| r.status == Some(429)).count();
    assert_eq!(answered, 12, "{log:?}");
    assert_eq!(answered + refused, log.len(), "{log:?}");
    let line = format!("LLM: {} requests, {refused} rate-limited", log.len());
    assert!(
        stdout.contains(&line) || stderr.contains(&line),
        "{line}\n{stdout}\n{stderr}"
    );
    for task in succeeded {
        assert_eq!(task["attempts"], 1, "{task}");
    }
    assert!(!stdout.contains(KEY) && !stderr.contains(KEY));
    assert!(!dir.read("r.json").contains(KEY));
    assert!(!w1.stderr().contains(KEY) && !w2.stderr().contains(KEY));
}

#[test]
fn a_worker_without_the_key_leaves_the_request_to_a_run_that_has_it() {
    let _lock = serial();
    let Some(server) = Server::start() else {
        return;
    };
    let (_runtime, llm) = fake_llm(FakeLlmConfig::default());
    let dir = Sandbox::new();
    dir.write("a.md", "A.\n");
    dir.write(
        "agent33.yaml",
        format!(
            "providers:
  fake:
    base_url: {base}
    api_key_env: {KEY_VAR}
agents:
  refine:
    llm:
      provider: fake
      model: fake-model
      prompt: \"Improve {{artifact}}\"
tasks:
  - agent: refine
    artifacts: [a.md]
",
            base = llm.base_url()
        ),
    );
    let url = server.url();
    let w1 = Worker::start(&dir.path(), &url, "w1", &["--slots", "2"]);
    let not_set = format!("read from ${KEY_VAR}, which is not set on this worker");
    assert!(w1.stderr().contains(&not_set), "{}", w1.stderr());
    let run = |key: Option<&str>| {
        let mut command = agent33(&dir.path());
        command
            .args(["run", "--nats", &url, "--report", "r.json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(key) = key {
            command.env(KEY_VAR, key);
        }
        wait_output(command.spawn().expect("agent-33 starts"), HANG)
    };
    // Nobody has the key: the task fails with the worker's reason, and is
    // not retried (the default allows one retry).
    let output = run(None);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let report = dir.json("r.json");
    let failed = &report["failed"][0];
    assert_eq!(failed["worker"], "w1", "{report}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or_default()
            .contains(&not_set),
        "{report}"
    );
    assert_eq!(failed["attempts"], 1, "{report}");
    assert!(llm.log().is_empty(), "{:?}", llm.log());
    // The run has it: the request goes out from there, once.
    let output = run(Some(KEY));
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let report = dir.json("r.json");
    let done = &report["succeeded"][0];
    assert!(done["usage"]["total_tokens"].as_u64() > Some(0), "{report}");
    assert_eq!(llm.log().len(), 1, "{:?}", llm.log());
    assert_eq!(llm.log()[0].status, Some(200));
    assert!(!dir.read("r.json").contains(KEY));
}
