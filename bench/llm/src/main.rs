//! The LLM benchmark: agent-33's shared adaptive limiter against what people
//! do today, in one run, each against its own fresh copy of the test kit's
//! fake provider (R requests a second, C at once), which runs on a thread
//! and tokio runtime of its own, as a provider runs on its own machine.
//!
//! - **agent-33**: the library's `LlmAgent`, `parallel_limit` 64 and
//!   `max_concurrency` 64; it must learn C and R by itself.
//! - **reference**: a fixed limit of 64, each request retrying on its own
//!   as openai-python does (2 retries; the server's `retry-after-ms` or
//!   `retry-after` when it is under a minute, else 0.5 s·2ⁿ capped at 8 s
//!   less up to 25% jitter), and the tasks that still failed run again, all
//!   of them, until every task has succeeded.
//!
//! ```text
//! cargo run --release -p agent33-bench-llm -- [--tasks N] [--rps R] [--concurrency C]
//!     [--latency-ms MS] [--limit N] [--charge-refused yes|no] [--svg PATH]
//!     [--logs DIR]
//! ```
//!
//! By default refusals are free at the server. `--charge-refused yes`
//! counts them against its request budget, as OpenAI documents; the
//! reference's storm then starves itself (it had not finished after 14
//! minutes when tried), so that is not the default.
//!
//! It prints one line per client and, with `--svg`, draws both request
//! timelines (requests in flight at the server, 429s per 100 ms). At this
//! server's default shape both clients end at the floor within a few
//! milliseconds, so the line also says what decides between them: the time
//! from the client's start to its first request, and `last lag`, how long
//! after the server's bucket had room for it the last request was taken.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent33_llm::{Endpoint, LimiterSettings, LlmAgent, LlmRequestSpec, ProviderLimiter};
use agent33_parallel::{AgentTask, Agents, ParallelExecutor};
use agent33_testkit::llm_server::{BucketConfig, FakeLlmConfig, FakeLlmServer, RequestRecord};
use tokio::sync::Semaphore;

struct Options {
    tasks: usize,
    rps: f64,
    concurrency: usize,
    latency: Duration,
    limit: usize,
    charge_refused: bool,
    svg: Option<String>,
    logs: Option<String>,
}

fn options() -> Options {
    let mut o = Options {
        tasks: 400,
        rps: 50.0,
        concurrency: 16,
        latency: Duration::from_millis(200),
        limit: 64,
        charge_refused: false,
        svg: None,
        logs: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        let number = || -> f64 {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{flag}: cannot read {value}"))
        };
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "counts given on the command line"
        )]
        let count = || number() as usize;
        match flag.as_str() {
            "--tasks" => o.tasks = count(),
            "--rps" => o.rps = number(),
            "--concurrency" => o.concurrency = count(),
            "--latency-ms" => o.latency = Duration::from_secs_f64(number() / 1000.0),
            "--limit" => o.limit = count(),
            "--svg" => o.svg = Some(value),
            "--logs" => o.logs = Some(value),
            "--charge-refused" => o.charge_refused = value == "yes",
            _ => panic!("unknown flag {flag}"),
        }
    }
    o
}

fn server_config(o: &Options) -> FakeLlmConfig {
    FakeLlmConfig {
        requests: Some(BucketConfig {
            per_second: o.rps,
            burst: o.rps,
        }),
        max_concurrent: Some(o.concurrency),
        latency: o.latency,
        exact_latency: true,
        completion_tokens: 32,
        charge_refused: o.charge_refused,
        ..FakeLlmConfig::default()
    }
}

/// The fake server on a thread and runtime of its own, as a provider is
/// on a machine of its own: sharing the client's threads, how soon it
/// read a request would depend on how busy the client kept them.
struct Hosted {
    server: Option<FakeLlmServer>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Hosted {
    async fn start(config: FakeLlmConfig) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the server");
        let server = runtime
            .spawn(FakeLlmServer::start(config))
            .await
            .expect("the server's start does not panic")
            .expect("the fake server starts");
        Self {
            server: Some(server),
            runtime: Some(runtime),
        }
    }
}

impl std::ops::Deref for Hosted {
    type Target = FakeLlmServer;
    fn deref(&self) -> &FakeLlmServer {
        self.server.as_ref().expect("the server runs until dropped")
    }
}

impl Drop for Hosted {
    fn drop(&mut self) {
        drop(self.server.take());
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// One client's run.
struct Outcome {
    name: &'static str,
    makespan: Duration,
    failed_tasks: usize,
    rounds: usize,
    /// From the run's start to the first request at the server.
    first_request: Duration,
    log: Vec<RequestRecord>,
    /// The limiter's limit every 10 ms (agent-33 only).
    limits: Vec<(Duration, usize)>,
}

/// From the run's start to the first request's arrival, on the server's
/// clock (which starts at `server_started`).
fn first_request(log: &[RequestRecord], server_started: Instant, started: Instant) -> Duration {
    log.first().map_or(Duration::ZERO, |r| {
        r.arrived
            .saturating_sub(started.saturating_duration_since(server_started))
    })
}

async fn agent33(o: &Options) -> Outcome {
    let server = Hosted::start(server_config(o)).await;
    let server_started = Instant::now();
    let endpoint = Endpoint::new("fake", &server.base_url(), None).expect("an endpoint");
    let limiter = ProviderLimiter::new(
        "fake",
        LimiterSettings {
            max_concurrency: o.limit,
            rpm: None,
            tpm: None,
        },
    );
    let spec = LlmRequestSpec {
        model: "fake-model".into(),
        system: Some("You refine prompts.".into()),
        prompt: "Refine {artifact}".into(),
        max_tokens: None,
        temperature: None,
        output: None,
    };
    let agent = LlmAgent::new(spec, Arc::new(endpoint), Arc::clone(&limiter), ".");
    let sampler = {
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move {
            let from = Instant::now();
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            loop {
                tick.tick().await;
                samples.push((from.elapsed(), limiter.status().0));
                if std::env::var_os("BENCH_TRACE").is_some() {
                    eprintln!("{:.2} {:?}", from.elapsed().as_secs_f64(), limiter.status());
                }
                if samples.len() > 100_000 {
                    return samples;
                }
            }
        })
    };
    let agents = Agents::new().add_spec("refine", agent.spec());
    let executor = ParallelExecutor::builder()
        .parallel_limit(o.limit)
        .continue_on_error(true)
        .build()
        .expect("settings");
    let tasks: Vec<_> = (0..o.tasks)
        .map(|i| AgentTask::new("refine", format!("doc{i}.md")))
        .collect();
    let started = Instant::now();
    let results = executor.run_all(tasks, &agents).await;
    let makespan = started.elapsed();
    sampler.abort();
    let limits = sampler.await.unwrap_or_default();
    let log = server.log();
    Outcome {
        name: "agent-33",
        makespan,
        failed_tasks: results.failed.len() + results.cancelled.len(),
        rounds: 1,
        first_request: first_request(&log, server_started, started),
        log,
        limits,
    }
}

/// openai-python's wait before retry `n` (0 for the first retry).
fn sdk_backoff(headers: &reqwest::header::HeaderMap, n: u32) -> Duration {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let hinted = text("retry-after-ms")
        .and_then(agent33_llm::headers::parse_millis)
        .or_else(|| {
            text("retry-after").and_then(|v| {
                agent33_llm::headers::parse_retry_after(v, std::time::SystemTime::now())
            })
        });
    if let Some(d) = hinted.filter(|d| !d.is_zero() && *d <= Duration::from_secs(60)) {
        return d;
    }
    let base = (0.5 * 2f64.powi(i32::try_from(n).unwrap_or(i32::MAX))).min(8.0);
    Duration::from_secs_f64(base * (1.0 - 0.25 * fastrand::f64()))
}

/// One task as the SDK runs it: up to 3 attempts. Returns whether it
/// succeeded.
async fn sdk_task(http: &reqwest::Client, url: &str, i: usize) -> bool {
    let body = serde_json::json!({
        "model": "fake-model",
        "messages": [
            { "role": "system", "content": "You refine prompts." },
            { "role": "user", "content": format!("Refine doc{i}.md") },
        ],
    });
    for n in 0..=2 {
        let Ok(response) = http.post(url).json(&body).send().await else {
            tokio::time::sleep(sdk_backoff(&reqwest::header::HeaderMap::new(), n)).await;
            continue;
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let _ = response.bytes().await;
        if (200..300).contains(&status) {
            return true;
        }
        let retryable = matches!(status, 408 | 409 | 429) || status >= 500;
        if !retryable || n == 2 {
            return false;
        }
        tokio::time::sleep(sdk_backoff(&headers, n)).await;
    }
    false
}

async fn reference(o: &Options) -> Outcome {
    let server = Hosted::start(server_config(o)).await;
    let server_started = Instant::now();
    let url = format!("{}/chat/completions", server.base_url());
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut remaining: Vec<usize> = (0..o.tasks).collect();
    let mut rounds = 0;
    let mut first_round_failures = 0;
    while !remaining.is_empty() {
        rounds += 1;
        let gate = Arc::new(Semaphore::new(o.limit));
        let mut set = tokio::task::JoinSet::new();
        for i in remaining.drain(..) {
            let (gate, http, url) = (Arc::clone(&gate), http.clone(), url.clone());
            set.spawn(async move {
                let _permit = gate.acquire_owned().await.expect("the gate stays open");
                (i, sdk_task(&http, &url, i).await)
            });
        }
        while let Some(done) = set.join_next().await {
            let (i, ok) = done.expect("a task does not panic");
            if !ok {
                remaining.push(i);
            }
        }
        remaining.sort_unstable();
        if rounds == 1 {
            first_round_failures = remaining.len();
        }
    }
    let makespan = started.elapsed();
    let log = server.log();
    Outcome {
        name: "reference",
        makespan,
        failed_tasks: first_round_failures,
        rounds,
        first_request: first_request(&log, server_started, started),
        log,
        limits: Vec::new(),
    }
}

struct Counts {
    requests: usize,
    refused: usize,
    refused_late: usize,
    late: usize,
    peak: usize,
}

fn counts(log: &[RequestRecord]) -> Counts {
    let one_second = Duration::from_secs(1);
    let late: Vec<_> = log.iter().filter(|r| r.arrived >= one_second).collect();
    Counts {
        requests: log.len(),
        refused: log.iter().filter(|r| r.status == Some(429)).count(),
        refused_late: late.iter().filter(|r| r.status == Some(429)).count(),
        late: late.len(),
        peak: log
            .iter()
            .filter(|r| r.status == Some(200))
            .map(|r| r.in_flight + 1)
            .max()
            .unwrap_or(0),
    }
}

/// How long after the server's request bucket had room for it the last
/// answered request was taken, in seconds. The bucket is full until the
/// first admission and then refills `rps` a second, so the n-th answered
/// request (from 1) has room `(n - burst) / rps` after the first: a client
/// that leaves no room unused ends this late after the floor.
fn last_lag(log: &[RequestRecord], o: &Options) -> Option<f64> {
    let mut taken: Vec<f64> = log
        .iter()
        .filter(|r| r.status == Some(200))
        .filter_map(|r| r.decided.map(|d| d.as_secs_f64()))
        .collect();
    taken.sort_by(f64::total_cmp);
    let (first, last) = (*taken.first()?, *taken.last()?);
    let room = first + ((taken.len() as f64 - o.rps).max(0.0)) / o.rps;
    Some(last - room)
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// Requests served at once at time `t`.
fn in_flight_at(log: &[RequestRecord], t: Duration) -> usize {
    log.iter()
        .filter(|r| r.status != Some(429) && r.arrived <= t && r.ended.is_none_or(|e| e > t))
        .count()
}

fn svg(outcomes: &[Outcome], o: &Options) -> String {
    let (w, panel_h, left, top) = (900.0, 220.0, 60.0, 40.0);
    let span = outcomes
        .iter()
        .map(|x| x.makespan.as_secs_f64())
        .fold(1.0, f64::max)
        .ceil();
    let y_max = (o.limit as f64).max(
        outcomes
            .iter()
            .flat_map(|x| x.log.iter())
            .map(|r| r.in_flight as f64 + 1.0)
            .fold(0.0, f64::max),
    );
    let plot_w = w - left - 20.0;
    let height = top + outcomes.len() as f64 * (panel_h + 60.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="20" font-size="14">{} tasks, server: {} requests/s, {} at once, {} ms a request, refusals {}; client limit {}</text>"#,
        o.tasks,
        o.rps,
        o.concurrency,
        o.latency.as_millis(),
        if o.charge_refused { "counted" } else { "free" },
        o.limit
    );
    for (k, outcome) in outcomes.iter().enumerate() {
        let y0 = top + k as f64 * (panel_h + 60.0) + 20.0;
        let x = |t: f64| left + plot_w * t / span;
        let y = |v: f64| y0 + panel_h - panel_h * v / y_max;
        let c = counts(&outcome.log);
        let _ = writeln!(
            s,
            r#"<text x="{left}" y="{}" font-size="13" font-weight="bold">{}: {:.2} s, {} requests, {} refused (429)</text>"#,
            y0 - 6.0,
            outcome.name,
            outcome.makespan.as_secs_f64(),
            c.requests,
            c.refused
        );
        let _ = writeln!(
            s,
            r##"<rect x="{left}" y="{y0}" width="{plot_w}" height="{panel_h}" fill="none" stroke="#999"/>"##
        );
        // The server's cap, dashed.
        let cap = y(o.concurrency as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{cap}" y2="{cap}" stroke="#888" stroke-dasharray="4 3"/><text x="{}" y="{}" fill="#666">C = {}</text>"##,
            left + plot_w,
            left + plot_w - 50.0,
            cap - 3.0,
            o.concurrency
        );
        // 429s per 100 ms, as red bars on the same scale.
        let bins = (span * 10.0) as usize;
        let mut refused = vec![0usize; bins + 1];
        for r in outcome.log.iter().filter(|r| r.status == Some(429)) {
            let bin = ((r.arrived.as_secs_f64() * 10.0) as usize).min(bins);
            refused[bin] += 1;
        }
        for (bin, n) in refused.iter().enumerate().filter(|(_, n)| **n > 0) {
            let t = bin as f64 / 10.0;
            let top_y = y((*n as f64).min(y_max));
            let _ = writeln!(
                s,
                r##"<rect x="{:.1}" y="{top_y:.1}" width="{:.1}" height="{:.1}" fill="#d62728" opacity="0.6"/>"##,
                x(t),
                (x(0.1) - x(0.0)).max(1.0),
                y0 + panel_h - top_y
            );
        }
        // In flight at the server, sampled every 10 ms.
        let mut points = String::new();
        let steps = (span * 100.0) as usize;
        for step in 0..=steps {
            let t = step as f64 / 100.0;
            let n = in_flight_at(&outcome.log, Duration::from_secs_f64(t));
            let _ = write!(points, "{:.1},{:.1} ", x(t), y(n as f64));
        }
        let _ = writeln!(
            s,
            r##"<polyline points="{points}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>"##
        );
        // The limiter's limit, where there is one.
        if !outcome.limits.is_empty() {
            let points: String = outcome
                .limits
                .iter()
                .map(|(t, l)| {
                    format!(
                        "{:.1},{:.1} ",
                        x(t.as_secs_f64()),
                        y((*l as f64).min(y_max))
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                r##"<polyline points="{points}" fill="none" stroke="#2ca02c" stroke-width="1.5"/><text x="{}" y="{}" fill="#2ca02c">limiter's limit</text>"##,
                left + 200.0,
                y0 + 14.0
            );
        }
        for tick in 0..=(span as usize) {
            let tx = x(tick as f64);
            let _ = writeln!(
                s,
                r##"<line x1="{tx}" x2="{tx}" y1="{}" y2="{}" stroke="#999"/><text x="{tx}" y="{}" text-anchor="middle">{tick}s</text>"##,
                y0 + panel_h,
                y0 + panel_h + 4.0,
                y0 + panel_h + 16.0
            );
        }
        for v in [0.0, y_max / 2.0, y_max] {
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="end">{v:.0}</text>"#,
                left - 6.0,
                y(v) + 4.0
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" fill="#1f77b4">in flight</text><text x="{}" y="{}" fill="#d62728">429s per 100 ms</text>"##,
            left + 8.0,
            y0 + 14.0,
            left + 80.0,
            y0 + 14.0
        );
    }
    s.push_str("</svg>\n");
    s
}

#[tokio::main]
async fn main() {
    let o = options();
    let ideal = o.tasks as f64 / o.rps;
    println!(
        "{} tasks; server {} requests/s, {} at once, {} ms, refusals {}; client limit {}; N/R = {ideal:.2} s",
        o.tasks,
        o.rps,
        o.concurrency,
        o.latency.as_millis(),
        if o.charge_refused { "counted" } else { "free" },
        o.limit
    );
    let outcomes = [agent33(&o).await, reference(&o).await];
    println!(
        "client     makespan  x(N/R)  failed  rounds  requests  429s   429% all  429% after 1 s  peak in flight  first request  last lag"
    );
    for x in &outcomes {
        let c = counts(&x.log);
        println!(
            "{:<10} {:>7.3}s  {:>6.2}  {:>6}  {:>6}  {:>8}  {:>4}  {:>8.1}%  {:>13.1}%  {:>14}  {:>10.1} ms  {:>5.1} ms",
            x.name,
            x.makespan.as_secs_f64(),
            x.makespan.as_secs_f64() / ideal,
            x.failed_tasks,
            x.rounds,
            c.requests,
            c.refused,
            percent(c.refused, c.requests),
            percent(c.refused_late, c.late),
            c.peak,
            x.first_request.as_secs_f64() * 1000.0,
            last_lag(&x.log, &o).unwrap_or(f64::NAN) * 1000.0
        );
    }
    let (a, r) = (&outcomes[0], &outcomes[1]);
    let c = counts(&a.log);
    let checks = [
        ("agent-33 fails no task", a.failed_tasks == 0),
        (
            "makespan <= 1.25 x N/R",
            a.makespan.as_secs_f64() <= 1.25 * ideal,
        ),
        ("makespan <= the reference's", a.makespan <= r.makespan),
        (
            "< 15% of requests get a 429",
            percent(c.refused, c.requests) < 15.0,
        ),
        (
            "< 5% of requests after 1 s get a 429",
            percent(c.refused_late, c.late) < 5.0,
        ),
    ];
    for (what, ok) in checks {
        println!("{} {what}", if ok { "PASS" } else { "FAIL" });
    }
    if let Some(dir) = &o.logs {
        for x in &outcomes {
            let lines: String = x
                .log
                .iter()
                .map(|r| serde_json::to_string(r).expect("a record serialises") + "\n")
                .collect();
            std::fs::write(format!("{dir}/{}.jsonl", x.name), lines).expect("write a log");
        }
    }
    if let Some(path) = &o.svg {
        std::fs::write(path, svg(&outcomes, &o)).expect("write the plot");
        println!("plot: {path}");
    }
}
