//! A fake OpenAI-compatible chat completions server, for tests of the LLM
//! agent and for the LLM benchmark.
//!
//! It behaves like a hosted provider where that matters to a client that
//! must follow the provider's limits: a request bucket and a token bucket
//! (refilled continuously), a cap on requests at once, `x-ratelimit-*`
//! headers in OpenAI's formats (`reset` as a Go duration such as `6m0s`),
//! real 429 bodies with `retry-after` and `retry-after-ms`,
//! `insufficient_quota`, "Request too large", 5xx, hang-until-disconnect and
//! 401 for a wrong key. Every request is recorded (arrival, end, status,
//! requests in flight at arrival) for the test to read.
//!
//! Faults for one request are asked for inside its messages, so a test can
//! give each artifact its own behaviour: `<!-- fake: status=500 times=1 -->`
//! (see [`Directive`]). It does not stream, and it does not pretend to think:
//! the answer is filler text of the asked length.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A bucket that refills continuously: `burst` at most, `per_second` added
/// each second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BucketConfig {
    /// What is added each second.
    pub per_second: f64,
    /// The most the bucket holds (and what it starts with).
    pub burst: f64,
}

/// How the server behaves; [`FakeLlmServer::set_config`] changes it while
/// it runs.
#[derive(Clone, Debug)]
pub struct FakeLlmConfig {
    /// The key a client must send as `Authorization: Bearer …`; `None`
    /// accepts any key and none.
    pub api_key: Option<String>,
    /// Requests allowed: one token per request.
    pub requests: Option<BucketConfig>,
    /// Tokens allowed: a request costs its prompt tokens plus its
    /// `max_tokens` (or [`Self::completion_tokens`]) at admission, as
    /// OpenAI counts.
    pub tokens: Option<BucketConfig>,
    /// Requests served at once; one more gets a 429.
    pub max_concurrent: Option<usize>,
    /// How long an admitted request takes before its answer.
    pub latency: Duration,
    /// Whether that latency is kept to the fraction of a millisecond:
    /// tokio's timer alone ends it on the next whole millisecond, up to one
    /// late, which is noise between two benchmarked clients. The server
    /// then spins through each answer's last millisecond, so this is for a
    /// server on a thread of its own.
    pub exact_latency: bool,
    /// The answer's length in tokens unless a directive says otherwise.
    pub completion_tokens: u32,
    /// Whether responses carry `x-ratelimit-*` headers (some servers send
    /// none).
    pub rate_headers: bool,
    /// Whether a refused request still counts against the request bucket,
    /// as OpenAI documents ("unsuccessful requests contribute to your
    /// per-minute limit"): the bucket may then owe up to one full bucket,
    /// so a client that storms spends the budget it waits for.
    pub charge_refused: bool,
}

impl Default for FakeLlmConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            requests: None,
            tokens: None,
            max_concurrent: None,
            latency: Duration::ZERO,
            exact_latency: false,
            completion_tokens: 16,
            rate_headers: true,
            charge_refused: false,
        }
    }
}

/// What the server did with one request.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RequestRecord {
    /// Arrival order, from 0.
    pub index: usize,
    /// When it arrived, since the server started.
    pub arrived: Duration,
    /// When its answer was sent or its client went away; `None` while it
    /// runs.
    pub ended: Option<Duration>,
    /// Requests being served when it arrived (not counting itself).
    pub in_flight: usize,
    /// The status sent; `None` when the client went away first.
    pub status: Option<u16>,
    /// The client closed the connection before the answer.
    pub disconnected: bool,
    /// The `retry-after-ms` sent with it, if any.
    pub retry_after_ms: Option<u64>,
    /// When admission decided on it (its body read), since the server
    /// started: the moment its rate limits were applied, which `arrived`
    /// precedes by the time the body took. `None` when it was not decided
    /// on (an unreadable body, another endpoint).
    pub decided: Option<Duration>,
    /// The usage reported in a 200's body.
    pub prompt_tokens: u64,
    /// See [`Self::prompt_tokens`].
    pub completion_tokens: u64,
    /// The `model` asked for.
    pub model: String,
}

/// A per-request fault or shape, written in a message as
/// `<!-- fake: key=value key … -->`.
///
/// Keys: `status=500` (any 4xx/5xx; `retry_after=SECS` adds that header),
/// `quota` (429 `insufficient_quota`), `too_large` (429 "Request too
/// large"), `hang` (never answers; records the disconnect), `delay_ms=N`
/// (added latency), `tokens=N` (the answer's length; cut at `max_tokens`
/// with `finish_reason: length`), `times=N` (the fault applies to the first
/// N requests with this same text, then it answers normally).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Directive {
    status: Option<u16>,
    retry_after: Option<u64>,
    quota: bool,
    too_large: bool,
    hang: bool,
    delay: Duration,
    tokens: Option<u32>,
    times: Option<u32>,
}

impl Directive {
    fn parse(text: &str) -> Self {
        let mut d = Self::default();
        let Some(start) = text.find("<!-- fake:") else {
            return d;
        };
        let rest = &text[start + "<!-- fake:".len()..];
        let body = rest.split("-->").next().unwrap_or_default();
        for word in body.split_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            let number = value.parse::<u64>().ok();
            match key {
                "status" => d.status = number.and_then(|n| u16::try_from(n).ok()),
                "retry_after" => d.retry_after = number,
                "quota" => d.quota = true,
                "too_large" => d.too_large = true,
                "hang" => d.hang = true,
                "delay_ms" => d.delay = Duration::from_millis(number.unwrap_or(0)),
                "tokens" => d.tokens = number.and_then(|n| u32::try_from(n).ok()),
                "times" => d.times = number.and_then(|n| u32::try_from(n).ok()),
                _ => {}
            }
        }
        d
    }

    fn is_fault(&self) -> bool {
        self.status.is_some() || self.quota || self.too_large || self.hang
    }
}

#[derive(Debug)]
struct Bucket {
    config: BucketConfig,
    level: f64,
    at: Instant,
}

impl Bucket {
    fn new(config: BucketConfig, now: Instant) -> Self {
        Self {
            config,
            level: config.burst,
            at: now,
        }
    }

    /// Adds what came in since the last refill. A time older than that
    /// adds nothing and moves nothing back, so that no stretch of time is
    /// refilled twice.
    fn refill(&mut self, now: Instant) {
        if now > self.at {
            let gained = (now - self.at).as_secs_f64() * self.config.per_second;
            self.level = (self.level + gained).min(self.config.burst);
            self.at = now;
        }
    }

    /// How long until `cost` is there.
    fn wait_for(&self, cost: f64) -> Duration {
        if self.level >= cost || self.config.per_second <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((cost - self.level) / self.config.per_second)
    }

    /// How long until the bucket is full again.
    fn reset(&self) -> Duration {
        if self.config.per_second <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((self.config.burst - self.level).max(0.0) / self.config.per_second)
    }
}

#[derive(Debug)]
struct State {
    config: FakeLlmConfig,
    started: Instant,
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    in_flight: usize,
    log: Vec<RequestRecord>,
    /// How often each faulty text with `times=` has failed.
    faults_used: HashMap<String, u32>,
}

impl State {
    fn new(config: FakeLlmConfig, now: Instant) -> Self {
        Self {
            requests: config.requests.map(|c| Bucket::new(c, now)),
            tokens: config.tokens.map(|c| Bucket::new(c, now)),
            config,
            started: now,
            in_flight: 0,
            log: Vec::new(),
            faults_used: HashMap::new(),
        }
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock has failed already;
        // the log is still worth reading.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running fake server on `127.0.0.1`; it stops when dropped.
#[derive(Debug)]
pub struct FakeLlmServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl FakeLlmServer {
    /// Starts a server on a free loopback port.
    ///
    /// # Errors
    ///
    /// If no port can be bound.
    pub async fn start(config: FakeLlmConfig) -> std::io::Result<Self> {
        Self::start_on(config, 0).await
    }

    /// Starts a server on the given loopback port (0 for any).
    ///
    /// # Errors
    ///
    /// If the port cannot be bound.
    pub async fn start_on(config: FakeLlmConfig, port: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(config, Instant::now())),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(Self {
            addr,
            shared,
            accept,
        })
    }

    /// The address it listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL a client puts before `/chat/completions`.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request so far, in arrival order.
    #[must_use]
    pub fn log(&self) -> Vec<RequestRecord> {
        self.shared.lock().log.clone()
    }

    /// Requests being served now.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.shared.lock().in_flight
    }

    /// Replaces the configuration; the buckets start full again.
    pub fn set_config(&self, config: FakeLlmConfig) {
        let now = Instant::now();
        let mut state = self.shared.lock();
        state.requests = config.requests.map(|c| Bucket::new(c, now));
        state.tokens = config.tokens.map(|c| Bucket::new(c, now));
        state.config = config;
    }
}

impl Drop for FakeLlmServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(handle(&shared, req).await) }
            });
            // A client that goes away mid-request is part of the game.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Ends a request's record when dropped: with its status when answered,
/// as a disconnect when hyper dropped the handler because the client left.
struct Ending {
    shared: Arc<Shared>,
    index: usize,
    admitted: bool,
    status: Option<u16>,
    retry_after_ms: Option<u64>,
    usage: (u64, u64),
}

impl Drop for Ending {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        let ended = state.started.elapsed();
        if self.admitted {
            state.in_flight -= 1;
        }
        let record = &mut state.log[self.index];
        record.ended = Some(ended);
        record.status = self.status;
        record.disconnected = self.status.is_none();
        record.retry_after_ms = self.retry_after_ms;
        (record.prompt_tokens, record.completion_tokens) = self.usage;
    }
}

type Answer = Response<Full<Bytes>>;

fn json_response(status: StatusCode, body: &Value) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error_body(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({ "error": { "message": message, "type": kind, "param": null, "code": code } })
}

fn set_header(response: &mut Answer, name: &'static str, value: String) {
    response.headers_mut().insert(
        name,
        HeaderValue::from_str(&value).expect("header values here are ASCII digits and units"),
    );
}

/// A duration as Go prints it, which is what OpenAI's `x-ratelimit-reset-*`
/// headers carry: `20ms`, `1s`, `1.5s`, `6m0s`, `1h2m3s`.
#[must_use]
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000_000_000 {
        let ms = d.as_secs_f64() * 1000.0;
        return format!("{}ms", trim_float(ms));
    }
    let total = d.as_secs_f64();
    let hours = d.as_secs() / 3600;
    let minutes = (d.as_secs() % 3600) / 60;
    let seconds = total - (hours * 3600 + minutes * 60) as f64;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{}s", trim_float(seconds)));
    out
}

fn trim_float(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

fn rate_headers(response: &mut Answer, state: &State) {
    if !state.config.rate_headers {
        return;
    }
    for (bucket, what) in [(&state.requests, "requests"), (&state.tokens, "tokens")] {
        let Some(bucket) = bucket else { continue };
        let limit = format!("x-ratelimit-limit-{what}");
        let remaining = format!("x-ratelimit-remaining-{what}");
        let reset = format!("x-ratelimit-reset-{what}");
        for (name, value) in [
            (limit, format!("{}", bucket.config.burst.floor())),
            (remaining, format!("{}", bucket.level.max(0.0).floor())),
            (reset, go_duration(bucket.reset())),
        ] {
            response.headers_mut().insert(
                hyper::header::HeaderName::from_bytes(name.as_bytes())
                    .expect("the header names here are lowercase ASCII"),
                HeaderValue::from_str(&value).expect("ASCII digits and units"),
            );
        }
    }
}

fn retry_headers(response: &mut Answer, wait: Duration) -> u64 {
    let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
    set_header(response, "retry-after-ms", ms.to_string());
    set_header(response, "retry-after", ms.div_ceil(1000).to_string());
    ms
}

fn tokens_of(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

async fn handle(shared: &Arc<Shared>, req: Request<Incoming>) -> Answer {
    let index = {
        let mut state = shared.lock();
        let index = state.log.len();
        let record = RequestRecord {
            index,
            arrived: state.started.elapsed(),
            ended: None,
            in_flight: state.in_flight,
            status: None,
            disconnected: false,
            retry_after_ms: None,
            decided: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            model: String::new(),
        };
        state.log.push(record);
        index
    };
    let mut ending = Ending {
        shared: Arc::clone(shared),
        index,
        admitted: false,
        status: None,
        retry_after_ms: None,
        usage: (0, 0),
    };
    let response = serve(shared, req, &mut ending).await;
    ending.status = Some(response.status().as_u16());
    response
}

async fn serve(shared: &Arc<Shared>, req: Request<Incoming>, ending: &mut Ending) -> Answer {
    let path = req.uri().path().to_owned();
    let authorized = {
        let state = shared.lock();
        match &state.config.api_key {
            None => true,
            Some(key) => {
                let sent = req
                    .headers()
                    .get(AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                sent.and_then(|v| v.strip_prefix("Bearer ")) == Some(key.as_str())
            }
        }
    };
    if !authorized {
        // OpenAI echoes a masked key; this echoes none, so a test that
        // greps for the key finds only what the client leaked.
        return json_response(
            StatusCode::UNAUTHORIZED,
            &error_body(
                "Incorrect API key provided.",
                "invalid_request_error",
                Some("invalid_api_key"),
            ),
        );
    }
    match (req.method(), path.as_str()) {
        (&Method::GET, "/v1/models") => json_response(
            StatusCode::OK,
            &json!({ "object": "list", "data": [ { "id": "fake-model", "object": "model", "owned_by": "agent33-testkit" } ] }),
        ),
        (&Method::POST, "/v1/chat/completions") => {
            let Ok(body) = req.into_body().collect().await else {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &error_body(
                        "Could not read the request body.",
                        "invalid_request_error",
                        None,
                    ),
                );
            };
            let Ok(body) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &error_body(
                        "We could not parse the JSON body of your request.",
                        "invalid_request_error",
                        None,
                    ),
                );
            };
            completions(shared, &body, ending).await
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            &error_body(
                &format!("Invalid URL ({} {path})", req.method()),
                "invalid_request_error",
                None,
            ),
        ),
    }
}

async fn completions(shared: &Arc<Shared>, body: &Value, ending: &mut Ending) -> Answer {
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let Some(messages) = body["messages"].as_array() else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &error_body(
                "'messages' is a required property",
                "invalid_request_error",
                None,
            ),
        );
    };
    if model.is_empty() {
        return json_response(
            StatusCode::BAD_REQUEST,
            &error_body(
                "you must provide a model parameter",
                "invalid_request_error",
                None,
            ),
        );
    }
    let text: String = messages
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let prompt_tokens = tokens_of(&text);
    let max_tokens = body["max_tokens"]
        .as_u64()
        .or_else(|| body["max_completion_tokens"].as_u64());
    let directive = Directive::parse(&text);

    let admitted = match admit(
        shared,
        &text,
        &model,
        prompt_tokens,
        max_tokens,
        &directive,
        ending,
    ) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            let mut state = shared.lock();
            let charge = state.config.charge_refused;
            if let Some(bucket) = state.requests.as_mut().filter(|_| charge) {
                bucket.level = (bucket.level - 1.0).max(-bucket.config.burst);
            }
            return refusal;
        }
    };
    let Admitted {
        fault,
        wanted,
        answer_at,
        exact_latency,
        headers_from,
    } = admitted;

    if fault && directive.hang {
        // The client's timeout or stop ends this: hyper drops the handler
        // when the connection closes, and `Ending` records it.
        std::future::pending::<()>().await;
    }
    if exact_latency {
        sleep_exact(answer_at).await;
    } else {
        tokio::time::sleep_until(answer_at).await;
    }

    if let Some(status) = directive.status.filter(|_| fault) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = json_response(
            status,
            &error_body(
                "The server had an error while processing your request. Sorry about that!",
                if status.is_server_error() {
                    "server_error"
                } else {
                    "invalid_request_error"
                },
                None,
            ),
        );
        if let Some(secs) = directive.retry_after {
            set_header(&mut r, "retry-after", secs.to_string());
        }
        return r;
    }

    let completion_tokens = max_tokens.map_or(wanted, |max| wanted.min(max));
    let finish_reason = if completion_tokens < wanted {
        "length"
    } else {
        "stop"
    };
    let content: String = "lorem "
        .repeat(usize::try_from(completion_tokens).unwrap_or(0))
        .chars()
        .take(usize::try_from(completion_tokens * 4).unwrap_or(0))
        .collect();
    ending.usage = (prompt_tokens, completion_tokens);
    let mut r = json_response(
        StatusCode::OK,
        &json!({
            "id": format!("chatcmpl-fake-{}", ending.index),
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [ {
                "index": 0,
                "message": { "role": "assistant", "content": content },
                "finish_reason": finish_reason,
            } ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }),
    );
    for (name, value) in headers_from.headers() {
        if name != CONTENT_TYPE {
            r.headers_mut().insert(name.clone(), value.clone());
        }
    }
    r
}

/// What admission decided for a request that goes on.
struct Admitted {
    /// The directive's fault applies to this request.
    fault: bool,
    /// The answer's length in tokens before `max_tokens` cuts it.
    wanted: u64,
    /// Admission's time plus the latency.
    answer_at: Instant,
    exact_latency: bool,
    /// The rate-limit headers as they stood at admission.
    headers_from: Answer,
}

/// Admission, in one step under the lock, as a real limiter decides: a
/// refusal is the answer to send.
fn admit(
    shared: &Shared,
    text: &str,
    model: &str,
    prompt_tokens: u64,
    max_tokens: Option<u64>,
    directive: &Directive,
    ending: &mut Ending,
) -> Result<Admitted, Answer> {
    let mut state = shared.lock();
    // Read under the lock: a time read before it may be older than the
    // last admission's, and the buckets would refill that stretch twice.
    let now = Instant::now();
    let decided = now.saturating_duration_since(state.started);
    let record = &mut state.log[ending.index];
    model.clone_into(&mut record.model);
    record.decided = Some(decided);
    if let Some(bucket) = &mut state.requests {
        bucket.refill(now);
    }
    if let Some(bucket) = &mut state.tokens {
        bucket.refill(now);
    }
    let wanted = u64::from(directive.tokens.unwrap_or(state.config.completion_tokens));
    let cost = (prompt_tokens + max_tokens.unwrap_or(wanted)) as f64;
    let fault = directive.is_fault() && {
        let used = state.faults_used.entry(text.to_owned()).or_insert(0);
        *used += 1;
        directive.times.is_none_or(|times| *used <= times)
    };

    if fault && directive.quota {
        let mut r = json_response(
            StatusCode::TOO_MANY_REQUESTS,
            &error_body(
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                Some("insufficient_quota"),
            ),
        );
        rate_headers(&mut r, &state);
        return Err(r);
    }
    let token_burst = state.tokens.as_ref().map(|b| b.config.burst);
    if (fault && directive.too_large) || token_burst.is_some_and(|burst| cost > burst) {
        let limit = token_burst.unwrap_or(10_000.0);
        let message = format!(
            "Request too large for {model} on tokens per min (TPM): Limit {limit}, Requested {cost}. The input or output tokens must be reduced in order to run successfully."
        );
        let mut r = json_response(
            StatusCode::TOO_MANY_REQUESTS,
            &error_body(&message, "tokens", Some("rate_limit_exceeded")),
        );
        rate_headers(&mut r, &state);
        return Err(r);
    }
    if let Some(cap) = state
        .config
        .max_concurrent
        .filter(|&cap| state.in_flight >= cap)
    {
        let mut r = json_response(
            StatusCode::TOO_MANY_REQUESTS,
            &error_body(
                &format!(
                    "Too many concurrent requests for {model}: limit {cap}. Please try again shortly."
                ),
                "requests",
                Some("rate_limit_exceeded"),
            ),
        );
        rate_headers(&mut r, &state);
        let wait = state.config.latency.max(Duration::from_millis(1));
        ending.retry_after_ms = Some(retry_headers(&mut r, wait));
        return Err(r);
    }
    for (what, cost) in [("requests", 1.0), ("tokens", cost)] {
        let bucket = if what == "requests" {
            &state.requests
        } else {
            &state.tokens
        };
        let Some(bucket) = bucket else { continue };
        let wait = bucket.wait_for(cost);
        if wait > Duration::ZERO {
            let limit = bucket.config.burst;
            let used = (limit - bucket.level).max(0.0).round();
            let message = format!(
                "Rate limit reached for {model} on {what} per min ({}): Limit {limit}, Used {used}, Requested {cost}. Please try again in {}.",
                if what == "requests" { "RPM" } else { "TPM" },
                go_duration(wait)
            );
            let mut r = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                &error_body(&message, what, Some("rate_limit_exceeded")),
            );
            rate_headers(&mut r, &state);
            ending.retry_after_ms = Some(retry_headers(&mut r, wait));
            return Err(r);
        }
    }
    if let Some(bucket) = &mut state.requests {
        bucket.level -= 1.0;
    }
    if let Some(bucket) = &mut state.tokens {
        bucket.level -= cost;
    }
    state.in_flight += 1;
    ending.admitted = true;
    let latency = state.config.latency + directive.delay;
    let mut headers_from = json_response(StatusCode::OK, &Value::Null);
    rate_headers(&mut headers_from, &state);
    Ok(Admitted {
        fault,
        wanted,
        answer_at: now + latency,
        exact_latency: state.config.exact_latency,
        headers_from,
    })
}

/// Sleeps until `until` to the fraction of a millisecond: on the timer to
/// a millisecond before, then yielding to the runtime. The yielding is
/// bounded in real time, so that a paused clock (which does not move while
/// a task runs) falls back to the timer.
async fn sleep_exact(until: Instant) {
    const TICK: Duration = Duration::from_millis(1);
    tokio::time::sleep_until(until.checked_sub(TICK).unwrap_or(until)).await;
    let spun = std::time::Instant::now();
    while Instant::now() < until {
        if spun.elapsed() > 2 * TICK {
            return tokio::time::sleep_until(until).await;
        }
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refills_each_stretch_of_time_once() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(
            BucketConfig {
                per_second: 10.0,
                burst: 10.0,
            },
            t0,
        );
        bucket.level = 0.0;
        bucket.refill(t0 + Duration::from_millis(100));
        // A time read a moment earlier, by a request that waited for the
        // lock, gives nothing, nor does the next refill count its stretch
        // again.
        bucket.refill(t0 + Duration::from_millis(50));
        bucket.refill(t0 + Duration::from_millis(200));
        assert!((bucket.level - 2.0).abs() < 1e-9, "{}", bucket.level);
    }

    #[test]
    fn go_durations_read_as_go_prints_them() {
        for (d, s) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(20), "20ms"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(360), "6m0s"),
            (Duration::from_secs(3723), "1h2m3s"),
        ] {
            assert_eq!(go_duration(d), s, "{d:?}");
        }
    }

    #[test]
    fn directives_are_read_from_a_comment() {
        let d = Directive::parse("text <!-- fake: status=503 retry_after=2 times=1 --> more");
        assert_eq!(d.status, Some(503));
        assert_eq!(d.retry_after, Some(2));
        assert_eq!(d.times, Some(1));
        assert!(d.is_fault());
        assert_eq!(Directive::parse("plain"), Directive::default());
        assert!(!Directive::parse("<!-- fake: tokens=9 -->").is_fault());
    }
}
