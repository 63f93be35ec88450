//! The LLM agent through the engine, against the test kit's fake
//! OpenAI-compatible server: every request the server saw is checked.

use std::sync::Arc;
use std::time::Duration;

use agent33_llm::{
    ApiKey, Endpoint, LimiterSettings, LlmAgent, LlmRequestSpec, Observation, Price,
    ProviderLimiter, Transport,
};
use agent33_parallel::{
    AgentError, AgentOutput, AgentResult, AgentSpec, AgentTask, Agents, BoxFuture,
    ExecutionResults, ParallelExecutor, TaskContext, TaskStatus,
};
use agent33_testkit::llm_server::{BucketConfig, FakeLlmConfig, FakeLlmServer};

const KEY: &str = "sk-test-SECRET-0123456789";

fn spec(prompt: &str) -> LlmRequestSpec {
    LlmRequestSpec {
        model: "fake-model".into(),
        system: Some("You refine prompts.".into()),
        prompt: prompt.into(),
        max_tokens: Some(64),
        temperature: Some(0.2),
        output: None,
    }
}

struct Setup {
    server: FakeLlmServer,
    limiter: Arc<ProviderLimiter>,
    agent: LlmAgent,
    dir: tempfile::TempDir,
}

async fn setup(config: FakeLlmConfig, max_concurrency: usize, spec: LlmRequestSpec) -> Setup {
    let server = FakeLlmServer::start(config)
        .await
        .expect("the fake server starts");
    let endpoint =
        Endpoint::new("fake", &server.base_url(), Some(&ApiKey::new(KEY))).expect("an endpoint");
    let limiter = ProviderLimiter::new(
        "fake",
        LimiterSettings {
            max_concurrency,
            rpm: None,
            tpm: None,
        },
    );
    let dir = tempfile::tempdir().expect("a temp dir");
    let agent = LlmAgent::new(spec, Arc::new(endpoint), Arc::clone(&limiter), dir.path());
    Setup {
        server,
        limiter,
        agent,
        dir,
    }
}

fn keyed(config: FakeLlmConfig) -> FakeLlmConfig {
    FakeLlmConfig {
        api_key: Some(KEY.into()),
        ..config
    }
}

async fn run(
    setup: &Setup,
    tasks: Vec<AgentTask>,
    limit: usize,
    retries: u32,
    timeout: Duration,
) -> ExecutionResults {
    run_spec(
        AgentSpec::new(setup.agent.clone()),
        tasks,
        limit,
        retries,
        timeout,
    )
    .await
}

async fn run_spec(
    spec: AgentSpec,
    tasks: Vec<AgentTask>,
    limit: usize,
    retries: u32,
    timeout: Duration,
) -> ExecutionResults {
    let agents = Agents::new().add_spec("refine", spec.retries(retries));
    let executor = ParallelExecutor::builder()
        .parallel_limit(limit)
        .continue_on_error(true)
        .retry_backoff(Duration::from_millis(10))
        .timeout(timeout)
        .kill_grace(Duration::from_secs(1))
        .build()
        .expect("settings");
    executor.run_all(tasks, &agents).await
}

fn write_artifacts(setup: &Setup, texts: &[String]) -> Vec<AgentTask> {
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let name = format!("doc{i}.md");
            std::fs::write(setup.dir.path().join(&name), text).expect("write an artifact");
            AgentTask::new("refine", name)
        })
        .collect()
}

fn all_results(results: &ExecutionResults) -> Vec<&agent33_parallel::TaskResult> {
    results
        .succeeded
        .iter()
        .chain(&results.failed)
        .chain(&results.cancelled)
        .chain(&results.skipped)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_against_a_limited_server_all_succeed_and_the_limit_is_learnt() {
    let setup = setup(
        keyed(FakeLlmConfig {
            requests: Some(BucketConfig {
                per_second: 200.0,
                burst: 20.0,
            }),
            max_concurrent: Some(4),
            latency: Duration::from_millis(20),
            ..FakeLlmConfig::default()
        }),
        32,
        spec("Improve:\n\n{content}"),
    )
    .await;
    let texts: Vec<String> = (0..120).map(|i| format!("document {i}")).collect();
    let tasks = write_artifacts(&setup, &texts);
    let results = run(&setup, tasks, 64, 0, Duration::from_secs(60)).await;
    assert_eq!(
        results.succeeded.len(),
        120,
        "{:?}",
        results.failed.first().map(|r| &r.error)
    );
    let log = setup.server.log();
    let stats = setup.limiter.stats().snapshot();
    let refused = log.iter().filter(|r| r.status == Some(429)).count() as u64;
    // One retry loop: every request the server saw is a task's first or a
    // rate-limited one's next.
    assert_eq!(log.len() as u64, 120 + refused);
    assert_eq!(stats.requests, log.len() as u64);
    assert_eq!(stats.rate_limited, refused);
    // The limiter learnt the server's 4: the first burst is refused, then
    // hardly anything.
    assert!(refused < 60, "{refused} refusals");
    let late = log
        .iter()
        .skip(60)
        .filter(|r| r.status == Some(429))
        .count();
    assert!(late <= 10, "{late} refusals in the second half");
    assert!(
        setup.limiter.status().0 <= 8,
        "limit {:?}",
        setup.limiter.status()
    );
    let mut metrics = results.metrics.clone();
    ProviderLimiter::add_to_metrics([&*setup.limiter], &mut metrics);
    assert_eq!(metrics.counter("llm_requests"), stats.requests);
    assert_eq!(metrics.counter("llm_rate_limited"), refused);
    assert_eq!(metrics.counter("llm_prompt_tokens"), stats.prompt_tokens);
    assert_eq!(metrics.timer("rate_limit_wait_ms").count, stats.requests);
    // Usage adds up to what the server reported.
    let prompt: u64 = log.iter().map(|r| r.prompt_tokens).sum();
    let completion: u64 = log.iter().map(|r| r.completion_tokens).sum();
    assert_eq!(
        (stats.prompt_tokens, stats.completion_tokens),
        (prompt, completion)
    );
}

#[tokio::test]
async fn a_pause_lasts_at_least_what_the_server_asked() {
    let setup = setup(
        FakeLlmConfig {
            requests: Some(BucketConfig {
                per_second: 4.0,
                burst: 1.0,
            }),
            rate_headers: false,
            ..FakeLlmConfig::default()
        },
        2,
        spec("{content}"),
    )
    .await;
    let tasks = write_artifacts(&setup, &["a".into(), "b".into(), "c".into()]);
    let results = run(&setup, tasks, 8, 0, Duration::from_secs(30)).await;
    assert_eq!(results.succeeded.len(), 3);
    let log = setup.server.log();
    for (i, refusal) in log
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status == Some(429))
    {
        let asked = Duration::from_millis(refusal.retry_after_ms.expect("a 429 says how long"));
        let resume = refusal.ended.expect("answered") + asked;
        for later in &log[i + 1..] {
            // Requests sent before the refusal came back may arrive after
            // it; none may arrive after it and before the pause ended.
            if later.arrived > refusal.ended.expect("answered") + Duration::from_millis(5) {
                assert!(
                    later.arrived >= resume,
                    "request {} arrived {:?} before {:?}",
                    later.index,
                    later.arrived,
                    resume
                );
            }
        }
    }
}

#[tokio::test]
async fn quota_exhaustion_fails_the_rest_without_sending() {
    let setup = setup(FakeLlmConfig::default(), 1, spec("{content}")).await;
    let mut texts = vec!["<!-- fake: quota -->".to_owned()];
    texts.extend((0..4).map(|i| format!("doc {i}")));
    let tasks = write_artifacts(&setup, &texts);
    let results = run(&setup, tasks, 1, 2, Duration::from_secs(30)).await;
    assert_eq!(results.failed.len(), 5);
    assert!(
        results.failed.iter().all(|r| r.attempts == 1),
        "quota errors are not retried"
    );
    assert_eq!(setup.server.log().len(), 1);
    let errors: Vec<_> = results
        .failed
        .iter()
        .map(|r| r.error.clone().unwrap_or_default())
        .collect();
    assert!(
        errors[0].contains("You exceeded your current quota"),
        "{errors:?}"
    );
    assert!(
        errors[1..].iter().all(|e| e == "provider quota exhausted"),
        "{errors:?}"
    );
}

#[tokio::test]
async fn server_errors_go_through_the_engines_retries_and_client_errors_fail_with_the_providers_message()
 {
    let setup = setup(FakeLlmConfig::default(), 4, spec("{content}")).await;
    let tasks = write_artifacts(&setup, &["<!-- fake: status=500 times=1 -->".into()]);
    let results = run(&setup, tasks, 4, 1, Duration::from_secs(30)).await;
    assert_eq!(results.succeeded[0].attempts, 2);
    assert_eq!(
        setup.server.log().len(),
        2,
        "the agent itself retried nothing"
    );

    let tasks = write_artifacts(&setup, &["<!-- fake: status=400 -->".into()]);
    let results = run(&setup, tasks, 4, 2, Duration::from_secs(30)).await;
    let bad = &results.failed[0];
    assert_eq!(bad.attempts, 1, "a client error is not retried");
    assert_eq!(
        bad.error.as_deref(),
        Some("HTTP 400: The server had an error while processing your request. Sorry about that!")
    );
    assert_eq!(setup.server.log().len(), 3);
}

#[tokio::test]
async fn a_timeout_drops_the_request_and_says_its_usage_is_unknown() {
    let setup = setup(FakeLlmConfig::default(), 4, spec("{content}")).await;
    let tasks = write_artifacts(&setup, &["<!-- fake: hang -->".into()]);
    let results = run(&setup, tasks, 4, 0, Duration::from_millis(300)).await;
    let result = all_results(&results)[0].clone();
    assert_eq!(result.status, TaskStatus::Timeout);
    assert!(
        result
            .notes
            .iter()
            .any(|n| n == agent33_llm::agent::STOPPED_NOTE),
        "{:?}",
        result.notes
    );
    // The server sees the connection close.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !setup.server.log()[0].disconnected {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never saw the disconnect"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn answers_are_written_atomically_priced_and_cut_answers_noted() {
    let mut spec = spec("{content}");
    spec.output = Some("{artifact}.refined.md".into());
    spec.max_tokens = Some(8);
    let mut setup = setup(FakeLlmConfig::default(), 4, spec).await;
    setup.agent = setup.agent.clone().price(Some(Price {
        prompt_per_mtok: 1_000_000.0,
        completion_per_mtok: 2_000_000.0,
    }));
    let tasks = write_artifacts(
        &setup,
        &[
            "<!-- fake: tokens=4 -->".into(),
            "<!-- fake: tokens=50 -->".into(),
        ],
    );
    let results = run(&setup, tasks, 4, 0, Duration::from_secs(30)).await;
    assert_eq!(results.succeeded.len(), 2);
    for name in ["doc0.md.refined.md", "doc1.md.refined.md"] {
        let text =
            std::fs::read_to_string(setup.dir.path().join(name)).expect("the answer was written");
        assert!(text.starts_with("lorem"), "{text}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(setup.dir.path())
        .expect("list")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
    let cut = results
        .succeeded
        .iter()
        .find(|r| r.task.artifact == "doc1.md")
        .expect("doc1");
    assert_eq!(cut.notes, ["answer cut at max_tokens (8 tokens)"]);
    let log = setup.server.log();
    let stats = setup.limiter.stats().snapshot();
    let prompt: u64 = log.iter().map(|r| r.prompt_tokens).sum();
    let completion: u64 = log.iter().map(|r| r.completion_tokens).sum();
    assert!(
        (stats.cost_usd - (prompt as f64 + 2.0 * completion as f64)).abs() < 1e-6,
        "{stats:?}"
    );
}

#[tokio::test]
async fn the_api_key_appears_in_no_result_error_or_debug_output() {
    let setup = setup(
        FakeLlmConfig {
            api_key: Some("sk-a-different-key".into()),
            ..FakeLlmConfig::default()
        },
        4,
        spec("{content}"),
    )
    .await;
    let tasks = write_artifacts(&setup, &["x".into()]);
    let results = run(&setup, tasks, 4, 0, Duration::from_secs(30)).await;
    let result = &results.failed[0];
    assert!(
        result
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("HTTP 401: ")),
        "{:?}",
        result.error
    );
    let everything = format!("{results:?} {:?} {:?}", setup.agent, ApiKey::new(KEY));
    assert!(!everything.contains(KEY));
    assert!(!everything.contains("SECRET"));
}

#[tokio::test]
async fn a_rate_limited_request_is_deferred_without_using_retries_and_fails_after_20() {
    let setup = setup(FakeLlmConfig::default(), 4, spec("{content}")).await;
    let tasks = write_artifacts(
        &setup,
        &[
            "<!-- fake: status=429 retry_after=0 times=3 -->".into(),
            "<!-- fake: status=429 retry_after=0 -->".into(),
        ],
    );
    let results = run(&setup, tasks, 4, 0, Duration::from_secs(30)).await;
    let patient = &results.succeeded[0];
    assert_eq!(patient.task.artifact, "doc0.md");
    assert_eq!(patient.attempts, 1, "deferrals are not attempts");
    let refused = &results.failed[0];
    assert_eq!(refused.error.as_deref(), Some("rate limited 20 times"));
    let log = setup.server.log();
    assert_eq!(log.len(), 4 + 20);
    assert_eq!(setup.limiter.stats().snapshot().rate_limited, 3 + 20);
}

/// A distributed run's path in one process: the coordinator's remote agent
/// hands each attempt to a "worker" — a one-task engine run of another
/// `LlmAgent`'s exchange, with its own, unused, limiter — and what comes
/// back is only what a worker's report carries: the outcome's words and
/// the observation as JSON.
struct Loopback {
    worker: LlmAgent,
}

impl Transport for Loopback {
    fn send<'a>(
        &'a self,
        ctx: &'a TaskContext,
    ) -> BoxFuture<'a, (AgentResult, Option<Observation>)> {
        let worker = self.worker.clone();
        let task = ctx.task().clone();
        Box::pin(async move {
            let said = Arc::new(std::sync::Mutex::new(None));
            let relay = {
                let said = Arc::clone(&said);
                move |ctx: TaskContext| {
                    let (worker, said) = (worker.clone(), Arc::clone(&said));
                    async move {
                        let (result, observation) = worker.exchange(ctx).await;
                        *said.lock().expect("not poisoned") =
                            observation.map(|o| serde_json::to_string(&o).expect("plain data"));
                        result
                    }
                }
            };
            let agents = Agents::new().add(task.agent.as_str(), relay);
            let executor = ParallelExecutor::builder()
                .retries(0)
                .build()
                .expect("settings");
            let results = executor.run_all(vec![task], &agents).await;
            let result = all_results(&results)[0].clone();
            let said = said.lock().expect("not poisoned").take();
            let observation = said.map(|json| serde_json::from_str(&json).expect("reads back"));
            let output = AgentOutput {
                stdout: result.output,
                notes: result.notes,
                ..AgentOutput::default()
            };
            let result = match result.status {
                TaskStatus::Success => Ok(output),
                _ => Err(AgentError::with_output(
                    result.error.unwrap_or_default(),
                    output,
                )),
            };
            (result, observation)
        })
    }
}

async fn run_remote(setup: &Setup, tasks: Vec<AgentTask>, retries: u32) -> ExecutionResults {
    let worker_endpoint = Endpoint::new("fake", &setup.server.base_url(), Some(&ApiKey::new(KEY)))
        .expect("an endpoint");
    let unused = ProviderLimiter::new(
        "fake",
        LimiterSettings {
            max_concurrency: 1,
            rpm: None,
            tpm: None,
        },
    );
    let worker = LlmAgent::new(
        spec("{content}"),
        Arc::new(worker_endpoint),
        unused,
        setup.dir.path(),
    );
    let remote = setup.agent.clone().remote(Arc::new(Loopback { worker }));
    run_spec(remote, tasks, 4, retries, Duration::from_secs(30)).await
}

#[tokio::test]
async fn a_remote_agent_settles_what_the_worker_saw_with_the_one_limiter() {
    let setup = setup(FakeLlmConfig::default(), 4, spec("{content}")).await;
    let tasks = write_artifacts(
        &setup,
        &[
            "<!-- fake: status=429 retry_after=0 times=3 -->".into(),
            "<!-- fake: status=429 retry_after=0 -->".into(),
            "<!-- fake: status=401 -->".into(),
            "plain".into(),
        ],
    );
    let results = run_remote(&setup, tasks, 2).await;
    // The worker never deferred by itself (the server saw each refusal
    // once); the coordinator deferred: no attempt, no retry used.
    let log = setup.server.log();
    assert_eq!(log.len(), 4 + 20 + 1 + 1, "{log:?}");
    let stats = setup.limiter.stats().snapshot();
    assert_eq!(stats.requests, log.len() as u64);
    assert_eq!(stats.rate_limited, 3 + 20);
    let by_artifact = |name: &str| {
        all_results(&results)
            .into_iter()
            .find(|r| r.task.artifact == name)
            .expect("a result")
    };
    let patient = by_artifact("doc0.md");
    assert_eq!(patient.status, TaskStatus::Success);
    assert_eq!(patient.attempts, 1, "deferrals are not attempts");
    assert_eq!(
        by_artifact("doc1.md").error.as_deref(),
        Some("rate limited 20 times")
    );
    // A client error is final on the coordinator too, though only its
    // words crossed: 2 retries were allowed.
    let refused = by_artifact("doc2.md");
    assert_eq!(refused.attempts, 1, "{refused:?}");
    assert!(refused.error.as_deref().unwrap_or_default().contains("401"));
    // The answer's usage is counted where the limiter is.
    let plain = by_artifact("doc3.md");
    assert!(!plain.output.is_empty());
    assert!(plain.usage.is_some_and(|u| u.total_tokens > 0), "{plain:?}");
    assert_eq!(
        stats.completion_tokens,
        plain.usage.expect("usage").completion_tokens * 2
    );
    // Nothing is left in flight.
    assert_eq!(setup.limiter.status().1, 0);
}

#[tokio::test]
async fn a_quota_refusal_a_worker_saw_trips_the_coordinators_provider() {
    let setup = setup(FakeLlmConfig::default(), 1, spec("{content}")).await;
    let mut texts = vec!["<!-- fake: quota -->".to_owned()];
    texts.extend((0..3).map(|i| format!("doc {i}")));
    let tasks = write_artifacts(&setup, &texts);
    let results = run_remote(&setup, tasks, 2).await;
    assert_eq!(results.failed.len(), 4);
    assert!(results.failed.iter().all(|r| r.attempts == 1));
    assert_eq!(setup.server.log().len(), 1);
    let errors: Vec<_> = results
        .failed
        .iter()
        .map(|r| r.error.clone().unwrap_or_default())
        .collect();
    assert!(
        errors[1..].iter().all(|e| e == "provider quota exhausted"),
        "{errors:?}"
    );
}
