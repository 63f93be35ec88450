//! PRODUCT-llm.md through the binary: `providers:` and `llm:` agents
//! against the test kit's fake OpenAI-compatible server, started by each
//! test on a free port.

use std::time::Duration;

use agent33_testkit::llm_server::{FakeLlmConfig, FakeLlmServer};

use crate::support::Sandbox;

/// The key the server wants; it must appear in nothing agent-33 writes.
const KEY: &str = "sk-cli-SECRET-9f8e7d6c5b4a";
const KEY_VAR: &str = "AGENT33_TEST_LLM_KEY";

/// The fake server on its own runtime, which serves while the test blocks
/// on the binary.
struct Server {
    server: FakeLlmServer,
    _runtime: tokio::runtime::Runtime,
}

fn server(config: FakeLlmConfig) -> Server {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the fake server");
    let server = runtime
        .block_on(FakeLlmServer::start(FakeLlmConfig {
            api_key: Some(KEY.into()),
            ..config
        }))
        .expect("the fake server starts");
    Server {
        server,
        _runtime: runtime,
    }
}

/// A manifest with one provider at `base_url` and an agent `refine` over
/// `n` artifacts `doc-K.md`, written beside it.
fn manifest(sb: &Sandbox, base_url: &str, max_concurrency: usize, n: usize) {
    for k in 0..n {
        sb.write(format!("docs/doc-{k}.md"), format!("Document {k}.\n"));
    }
    sb.manifest(&format!(
        "execution: {{ mode: parallel, parallel_limit: 8 }}
providers:
  fake:
    base_url: {base_url}
    api_key_env: {KEY_VAR}
    max_concurrency: {max_concurrency}
    prices: {{ fake-model: {{ prompt_per_mtok: 1.0, completion_per_mtok: 2.0 }} }}
agents:
  refine:
    llm:
      provider: fake
      model: fake-model
      system: You refine prompts.
      prompt: \"Improve this document:\\n\\n{{content}}\"
      max_tokens: 64
    retries: 1
tasks:
  - agent: refine
    artifacts: [\"docs/*.md\"]
"
    ));
}

#[test]
fn a_dry_run_shows_provider_model_endpoint_and_prompt_size_and_sends_nothing() {
    let srv = server(FakeLlmConfig::default());
    let sb = Sandbox::new();
    let base = srv.server.base_url();
    manifest(&sb, &base, 4, 1);
    let out = sb.run(["--dry-run"]).env(KEY_VAR, KEY).output();
    out.code_is(0);
    let text = out.stdout();
    // "You refine prompts." + "Improve this document:\n\nDocument 0.\n"
    let bytes = "You refine prompts.".len() + "Improve this document:\n\nDocument 0.\n".len();
    for line in [
        "    provider: fake".to_owned(),
        "    model:    fake-model".to_owned(),
        format!("    endpoint: {base}/chat/completions"),
        format!("    prompt:   {bytes} bytes"),
    ] {
        assert!(text.contains(&line), "{line:?} in:\n{text}");
    }
    let out = sb
        .run(["--dry-run", "--format", "json"])
        .env(KEY_VAR, KEY)
        .output();
    out.code_is(0);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the plan is JSON");
    let llm = &plan["levels"][0][0]["llm"];
    assert_eq!(llm["provider"], "fake", "{plan}");
    assert_eq!(llm["model"], "fake-model", "{plan}");
    assert_eq!(
        llm["endpoint"],
        format!("{base}/chat/completions"),
        "{plan}"
    );
    assert_eq!(llm["prompt_bytes"], bytes, "{plan}");
    assert!(srv.server.log().is_empty(), "a dry run sends nothing");
    assert!(!text.contains(KEY) && !out.stderr.contains(KEY));
}

#[test]
fn an_unset_key_variable_is_a_usage_error_at_its_line() {
    let sb = Sandbox::new();
    manifest(&sb, "http://127.0.0.1:9/v1", 4, 1);
    sb.run(std::iter::empty::<&str>())
        .output()
        .usage_error(&format!(
            "agent33.yaml:5:18: the key of provider `fake` is read from ${KEY_VAR}, which is not set"
        ));
}

#[test]
fn many_tasks_under_a_small_server_cap_all_succeed_with_429s_deferred_and_the_key_hidden() {
    let srv = server(FakeLlmConfig {
        max_concurrent: Some(2),
        latency: Duration::from_millis(20),
        ..FakeLlmConfig::default()
    });
    let sb = Sandbox::new();
    let n = 24;
    manifest(&sb, &srv.server.base_url(), 8, n);
    let out = sb
        .run([
            "--report",
            "r.json",
            "--junit",
            "j.xml",
            "--timings",
            "t.html",
            "--trace",
            "trace.json",
        ])
        .env(KEY_VAR, KEY)
        .output();
    out.code_is(0);
    let report = sb.report("r.json");
    assert_eq!(report.list("succeeded").len(), n, "{}", report.0);
    let log = srv.server.log();
    let refused = log.iter().filter(|r| r.status == Some(429)).count();
    assert!(
        refused > 0,
        "the server's cap of 2 refused some of 8 at once"
    );
    let served = log.iter().filter(|r| r.status == Some(200)).count();
    assert_eq!(served, n, "each task was answered once");
    // Deferrals are no attempts: nobody used a retry.
    let mut prompt_tokens = 0;
    for task in report.list("succeeded") {
        assert_eq!(task["attempts"], 1, "{task}");
        let usage = &task["usage"];
        assert_eq!(usage["completion_tokens"], 16, "{task}");
        let prompt = usage["prompt_tokens"].as_u64().expect("prompt tokens");
        assert_eq!(usage["total_tokens"], prompt + 16, "{task}");
        prompt_tokens += prompt;
        // $1 per million prompt tokens, $2 per million completion tokens.
        let cost = task["cost_usd"].as_f64().expect("a price is known");
        let want = (prompt as f64 + 32.0) / 1e6;
        assert!((cost - want).abs() < 1e-12, "{cost} != {want}");
    }
    let metrics = &report.0["metrics"];
    assert_eq!(metrics["counters"]["llm_requests"], log.len(), "{metrics}");
    assert_eq!(
        metrics["counters"]["llm_rate_limited"], refused,
        "{metrics}"
    );
    assert_eq!(
        metrics["counters"]["llm_prompt_tokens"], prompt_tokens,
        "{metrics}"
    );
    assert_eq!(
        metrics["counters"]["llm_completion_tokens"],
        16 * n,
        "{metrics}"
    );
    assert!(
        metrics["timers"]["rate_limit_wait_ms"].is_object(),
        "{metrics}"
    );
    let cost: f64 = report
        .list("succeeded")
        .iter()
        .map(|t| t["cost_usd"].as_f64().expect("priced"))
        .sum();
    // PRODUCT-llm.md lists the cost among the counters: an amount there.
    let counted = metrics["counters"]["llm_cost_usd"]
        .as_f64()
        .expect("llm_cost_usd among the counters");
    assert!((counted - cost).abs() < 1e-9, "{counted} != {cost}");
    let line = format!(
        "LLM: {} requests, {refused} rate-limited, {} tokens in, {} out, ${cost:.2}",
        log.len(),
        agent33_report::format_tokens(prompt_tokens),
        agent33_report::format_tokens(16 * n as u64),
    );
    assert!(out.stderr.contains(&line), "{line:?} in:\n{}", out.stderr);
    // The timings page draws the provider's limit: it started at 8 and the
    // server's cap of 2 brought it down.
    let page = sb.read("t.html");
    let open = r#"<script type="application/json" id="agent33-data">"#;
    let start = page.find(open).expect("the data") + open.len();
    let data: serde_json::Value =
        serde_json::from_str(&page[start..start + page[start..].find("</script>").expect("end")])
            .expect("the data is JSON");
    let points = data["limits"][0][2]
        .as_array()
        .expect("the provider's limit");
    assert_eq!(points[0][1], 8, "{points:?}");
    assert!(points.iter().any(|p| p[1].as_u64() < Some(8)), "{points:?}");
    for text in [
        out.stdout(),
        out.stderr.clone(),
        sb.read("r.json"),
        sb.read("j.xml"),
        sb.read("t.html"),
        sb.read("trace.json"),
    ] {
        assert!(!text.contains(KEY), "the key leaked:\n{text}");
        assert!(!text.contains("SECRET"), "part of the key leaked:\n{text}");
    }
}

#[test]
fn without_a_price_the_summary_shows_no_cost_and_tasks_no_cost_usd() {
    let srv = server(FakeLlmConfig::default());
    let sb = Sandbox::new();
    manifest(&sb, &srv.server.base_url(), 4, 2);
    let text = sb.read("agent33.yaml");
    let unpriced: String = text
        .lines()
        .filter(|l| !l.contains("prices:"))
        .map(|l| format!("{l}\n"))
        .collect();
    sb.manifest(&unpriced);
    let out = sb.run(["--report", "r.json"]).env(KEY_VAR, KEY).output();
    out.code_is(0);
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with("LLM: "))
        .unwrap_or_else(|| panic!("an LLM line in:\n{}", out.stderr));
    assert!(
        line.starts_with("LLM: 2 requests, 0 rate-limited, ") && line.ends_with(" out"),
        "{line}"
    );
    let report = sb.report("r.json");
    for task in report.list("succeeded") {
        assert!(
            task["usage"].is_object() && task.get("cost_usd").is_none(),
            "{task}"
        );
    }
    assert!(
        report.0["metrics"]["counters"]
            .get("llm_cost_usd")
            .is_none()
    );
}

#[test]
fn progress_shows_a_paused_and_halved_provider() {
    let srv = server(FakeLlmConfig::default());
    let sb = Sandbox::new();
    manifest(&sb, &srv.server.base_url(), 4, 0);
    // The first request is refused with a pause of 2 s: the first progress
    // line (after 1 s) falls inside it.
    sb.write(
        "docs/doc-0.md",
        "<!-- fake: status=429 retry_after=2 times=1 -->\n",
    );
    let out = sb
        .run(std::iter::empty::<&str>())
        .env(KEY_VAR, KEY)
        .output();
    out.code_is(0);
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("progress: ") && l.contains(" · fake: 2/4, paused ")),
        "{}",
        out.stderr
    );
    let log = srv.server.log();
    assert_eq!(log.len(), 2, "refused once, then answered");
}
