//! LLM agents in a distributed run: their calls go out from the
//! coordinator, through the one limiter per provider it holds, while
//! command tasks of the same run go to the workers, which need no key.

use std::process::Stdio;
use std::time::Duration;

use agent33_testkit::llm_server::{FakeLlmConfig, FakeLlmServer};

use crate::support::{HANG, Sandbox, Server, Worker, agent33, serial, wait_output};

const KEY: &str = "sk-nats-SECRET-1a2b3c4d";
const KEY_VAR: &str = "AGENT33_TEST_LLM_KEY";

#[test]
fn llm_tasks_of_a_distributed_run_share_the_coordinators_limiter() {
    let _lock = serial();
    let Some(server) = Server::start() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the fake LLM server");
    // At most 2 requests at once: a third is refused with a 429.
    let llm = runtime
        .block_on(FakeLlmServer::start(FakeLlmConfig {
            api_key: Some(KEY.into()),
            max_concurrent: Some(2),
            latency: Duration::from_millis(50),
            ..FakeLlmConfig::default()
        }))
        .expect("the fake LLM server starts");
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
    // The worker has no key (its environment has no AGENT33_* variable):
    // it needs none, it never calls the provider.
    let _w1 = Worker::start(&dir.path(), &url, "w1", &["--slots", "4"]);
    let run = agent33(&dir.path())
        .args(["run", "--nats", &url, "--report", "r.json"])
        .env(KEY_VAR, KEY)
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
        match agent {
            // Commands ran on the worker.
            "count" => assert_eq!(task["worker"], "w1", "{task}"),
            // LLM calls went out from the coordinator.
            _ => {
                assert!(task.get("worker").is_none(), "{task}");
                assert!(task["usage"]["total_tokens"].as_u64() > Some(0), "{task}");
            }
        }
    }
    // One limiter for the provider: refused requests went back to wait
    // for it (no task failed, no retry was used), every task got its one
    // answer, and the summary counts what the server saw.
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
    assert!(!stdout.contains(KEY) && !stderr.contains(KEY));
    assert!(!dir.read("r.json").contains(KEY));
}
