//! A provider at run time: its endpoint (the HTTP client, the URL, the
//! key) and its shared limiter, which every task that uses the provider
//! goes through, with the counters the run reports.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, SystemTime};

use agent33_parallel::{Metrics, SharedLimit, Timer};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::{ChatRequest, ChatResponse, Usage};
use crate::classify::Refusal;
use crate::headers::RateLimitInfo;
use crate::limiter::{LimiterSettings, LimiterState, Ticket, Wait};

/// An API key. It is never printed: its `Debug` shows `ApiKey(***)`, it has
/// no `Display`, and the header that carries it is marked sensitive.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    #[must_use]
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// A short fingerprint that tells keys apart without showing them, for
    /// limit keys (FNV-1a of the key).
    #[must_use]
    pub fn fingerprint(&self) -> String {
        let hash = self.0.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("{hash:016x}")
    }

    fn header(&self) -> Option<HeaderValue> {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.0)).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// Why an endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The key holds characters an HTTP header cannot carry.
    #[error("the API key of provider `{provider}` is not a valid header value")]
    BadKey {
        /// The provider's name.
        provider: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTP client of provider `{provider}`")]
    Client {
        /// The provider's name.
        provider: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
}

/// Where a provider's requests go: an HTTP client that retries nothing by
/// itself, the chat completions URL and the key.
#[derive(Clone)]
pub struct Endpoint {
    name: String,
    url: String,
    key: Option<HeaderValue>,
    http: reqwest::Client,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// What the endpoint got back for one request.
#[derive(Debug)]
pub enum Answer {
    /// A 2xx with a readable completion.
    Completed(ChatResponse, RateLimitInfo),
    /// Anything else the server said.
    Refused(Refusal, RateLimitInfo),
    /// No answer: the connection failed, or the body was unreadable.
    Failed(String),
}

/// The chat completions URL under `base_url`, where requests go.
#[must_use]
pub fn chat_url(base_url: &str) -> String {
    format!("{}/chat/completions", base_url.trim_end_matches('/'))
}

impl Endpoint {
    /// An endpoint for `base_url` (its `/chat/completions` is called).
    ///
    /// TLS is rustls with ring; when the process has no default rustls
    /// provider yet, ring becomes it.
    ///
    /// # Errors
    ///
    /// If the key cannot be a header or the client cannot be built.
    pub fn new(name: &str, base_url: &str, key: Option<&ApiKey>) -> Result<Self, EndpointError> {
        static RUSTLS: Once = Once::new();
        RUSTLS.call_once(|| {
            // Err means another provider was installed first: that one is used.
            #[expect(
                deprecated,
                reason = "ring lacks post-quantum key exchange; aws-lc-rs has it at the cost of a long C build"
            )]
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        let key = match key {
            Some(key) => Some(key.header().ok_or_else(|| EndpointError::BadKey {
                provider: name.to_owned(),
            })?),
            None => None,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .build()
            .map_err(|source| EndpointError::Client {
                provider: name.to_owned(),
                source,
            })?;
        Ok(Self {
            name: name.to_owned(),
            url: chat_url(base_url),
            key,
            http,
        })
    }

    /// The URL requests go to.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether requests carry a key.
    #[must_use]
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// Sends one request, once. Dropping the future closes the request.
    pub async fn send(&self, request: &ChatRequest) -> Answer {
        let mut builder = self.http.post(&self.url).json(request);
        if let Some(key) = &self.key {
            builder = builder.header(AUTHORIZATION, key.clone());
        }
        let response = match builder.send().await {
            Ok(response) => response,
            // reqwest's message names the URL, never the headers.
            Err(e) => {
                return Answer::Failed(format!(
                    "request to {} failed: {}",
                    self.url,
                    error_chain(&e)
                ));
            }
        };
        let status = response.status();
        let info = RateLimitInfo::from_headers(response.headers(), SystemTime::now());
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) => {
                return Answer::Failed(format!(
                    "reading the answer from {} failed: {}",
                    self.url,
                    error_chain(&e)
                ));
            }
        };
        if !status.is_success() {
            return Answer::Refused(Refusal::classify(status.as_u16(), &body, &info), info);
        }
        match serde_json::from_slice::<ChatResponse>(&body) {
            Ok(answer) => Answer::Completed(answer, info),
            Err(e) => Answer::Failed(format!("unreadable answer from {}: {e}", self.url)),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Counters of one limiter, for metrics and the summary.
#[derive(Debug, Default)]
pub struct ProviderStats {
    requests: AtomicU64,
    rate_limited: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    /// Micro-dollars, to add without a lock.
    cost_micro_usd: AtomicU64,
    wait_ms: AtomicU64,
    /// Each sent request's wait for the provider, in milliseconds; a run's
    /// timer is made from all its limiters' samples.
    waits: Mutex<Vec<f32>>,
}

/// A copy of [`ProviderStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StatsSnapshot {
    /// Requests sent, 429s included.
    pub requests: u64,
    /// Requests refused for rate.
    pub rate_limited: u64,
    /// Prompt tokens of answered requests.
    pub prompt_tokens: u64,
    /// Completion tokens of answered requests.
    pub completion_tokens: u64,
    /// Cost of answered requests, where a price is known.
    pub cost_usd: f64,
    /// Time requests waited for the provider, in milliseconds: from the
    /// refusal that deferred the task, or else from the moment the request
    /// was ready, until it was sent.
    pub rate_limit_wait_ms: u64,
    /// How many of those waits were recorded: the samples of the
    /// `rate_limit_wait_ms` timer so far.
    pub waits: usize,
}

impl ProviderStats {
    pub(crate) fn sent(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn used(&self, usage: Usage, cost_usd: Option<f64>) {
        self.prompt_tokens
            .fetch_add(usage.prompt_tokens, Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(usage.completion_tokens, Ordering::Relaxed);
        if let Some(cost) = cost_usd {
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a cost is small and not negative"
            )]
            let micros = (cost * 1e6).round() as u64;
            self.cost_micro_usd.fetch_add(micros, Ordering::Relaxed);
        }
    }

    fn waited(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.wait_ms.fetch_add(ms, Ordering::Relaxed);
        self.waits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(d.as_secs_f32() * 1000.0);
    }

    /// The counters now.
    #[must_use]
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            prompt_tokens: self.prompt_tokens.load(Ordering::Relaxed),
            completion_tokens: self.completion_tokens.load(Ordering::Relaxed),
            cost_usd: self.cost_micro_usd.load(Ordering::Relaxed) as f64 / 1e6,
            rate_limit_wait_ms: self.wait_ms.load(Ordering::Relaxed),
            waits: self
                .waits
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .len(),
        }
    }
}

/// Why no request was started.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AcquireError {
    /// The provider's quota ran out earlier in the run.
    #[error("provider quota exhausted")]
    QuotaExhausted,
    /// The task was stopped while waiting.
    #[error("stopped while waiting for the provider's limit")]
    Stopped,
}

/// One limit shared by every task that calls one provider (one base URL,
/// key and model, or one `limit_key`): the [`LimiterState`] behind a lock,
/// and a notification for the tasks waiting on it.
#[derive(Debug)]
pub struct ProviderLimiter {
    name: String,
    /// What the engine's admission sees: the limit and the pause, copied
    /// from `state` at every change.
    shared: SharedLimit,
    state: Mutex<LimiterState>,
    changed: Notify,
    /// Whether a task sleeps the last millisecond of its wait finely (see
    /// [`Self::wait_until`]): one is enough, as one request goes then.
    fine_waiter: AtomicBool,
    stats: ProviderStats,
}

impl ProviderLimiter {
    /// A limiter named `name` (for messages and the progress bar).
    #[must_use]
    pub fn new(name: impl Into<String>, settings: LimiterSettings) -> Arc<Self> {
        let state = LimiterState::new(settings, Instant::now());
        Arc::new(Self {
            name: name.into(),
            shared: SharedLimit::new(state.limit()),
            state: Mutex::new(state),
            changed: Notify::new(),
            fine_waiter: AtomicBool::new(false),
            stats: ProviderStats::default(),
        })
    }

    /// Its name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The engine's side of this limit: bind every agent that calls the
    /// provider to it ([`agent33_parallel::AgentSpec::shared_limit`]), so
    /// that a task waiting for the provider is not admitted and holds no
    /// slot.
    #[must_use]
    pub fn shared_limit(&self) -> SharedLimit {
        self.shared.clone()
    }

    /// Its counters.
    #[must_use]
    pub fn stats(&self) -> &ProviderStats {
        &self.stats
    }

    /// The most its limit grows to: the provider's `max_concurrency`.
    #[must_use]
    pub fn max_concurrency(&self) -> usize {
        self.lock().max_concurrency()
    }

    /// The limit, in flight and the pause now: `(limit, in_flight, paused_for)`.
    #[must_use]
    pub fn status(&self) -> (usize, usize, Option<Duration>) {
        let state = self.lock();
        let now = Instant::now();
        (
            state.limit(),
            state.in_flight(),
            state.paused_until(now).map(|p| p - now),
        )
    }

    fn lock(&self) -> MutexGuard<'_, LimiterState> {
        // The state is updated in single steps that cannot leave it half
        // done, so a panic elsewhere while holding the lock left it whole.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until a request may be sent, then starts it: until the
    /// provider is not paused, below its limit, and the paced windows have
    /// room. `tokens` is what the request may spend of the token window.
    /// `deferred_at` is when the provider last refused this task
    /// ([`agent33_parallel::TaskContext::deferred_at`]): the request's wait
    /// for the provider counts from then, the time the task spent waiting
    /// among the engine's ready tasks included.
    ///
    /// # Errors
    ///
    /// When the provider's quota ran out, or `token` was cancelled.
    ///
    /// # Cancel safety
    ///
    /// Cancelling before it returns starts nothing.
    pub async fn acquire(
        &self,
        tokens: f64,
        deferred_at: Option<Instant>,
        token: &CancellationToken,
    ) -> Result<Ticket, AcquireError> {
        let waited_from = deferred_at.unwrap_or_else(Instant::now);
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the state is read, so a change between the
            // read and the wait is not missed.
            changed.as_mut().enable();
            // The time is read under the lock, so that requests are
            // numbered in the order of their times.
            let (now, attempt) = {
                let mut state = self.lock();
                let now = Instant::now();
                (now, state.try_start(now, tokens))
            };
            let until = match attempt {
                Ok(ticket) => {
                    self.stats
                        .waited(now.saturating_duration_since(waited_from));
                    self.stats.sent();
                    return Ok(ticket);
                }
                Err(Wait::Tripped) => return Err(AcquireError::QuotaExhausted),
                Err(Wait::Until(until)) => Some(until),
                Err(Wait::Slot) => None,
            };
            let sleep = self.wait_until(until.unwrap_or(now));
            tokio::select! {
                () = token.cancelled() => return Err(AcquireError::Stopped),
                () = &mut changed => {}
                () = sleep, if until.is_some() => {}
            }
        }
    }

    /// Waits until `until`. tokio's timer fires on the next whole
    /// millisecond, up to one late, and a paced window's request is due to
    /// the fraction: a waiter sleeps on the timer to a millisecond before,
    /// then, unless another already does, sleeps the rest on a thread of
    /// the blocking pool, whose sleep is finer, rather than spinning a
    /// worker. That rest is real time: under a paused clock (tests) it
    /// passes without moving the clock, and the timer ends the wait.
    async fn wait_until(&self, until: Instant) {
        /// The timer's resolution.
        const TICK: Duration = Duration::from_millis(1);
        struct Claim<'a>(&'a AtomicBool);
        impl Drop for Claim<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        tokio::time::sleep_until(until.checked_sub(TICK).unwrap_or(until)).await;
        let claimed = self
            .fine_waiter
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if claimed {
            let _claim = Claim(&self.fine_waiter);
            let rest = until.saturating_duration_since(Instant::now());
            if !rest.is_zero() {
                let _ = tokio::task::spawn_blocking(move || std::thread::sleep(rest)).await;
            }
        }
        // A deadline already passed would still wait for the timer's next
        // tick.
        if Instant::now() < until {
            tokio::time::sleep_until(until).await;
        }
    }

    /// Adds the counters of `limiters` to a run's metrics: the counters
    /// `llm_requests`, `llm_rate_limited`, `llm_prompt_tokens`,
    /// `llm_completion_tokens`, the amount counter `llm_cost_usd` (dollars,
    /// written among the counters with a fraction) and the timer
    /// `rate_limit_wait_ms` (each request's wait for its provider, see
    /// [`Self::acquire`]).
    pub fn add_to_metrics<'a>(
        limiters: impl IntoIterator<Item = &'a ProviderLimiter>,
        metrics: &mut Metrics,
    ) {
        Self::add_to_metrics_since(
            limiters
                .into_iter()
                .map(|limiter| (limiter, StatsSnapshot::default())),
            metrics,
        );
    }

    /// Like [`Self::add_to_metrics`], counting only what each limiter did
    /// after its snapshot: the share of one run of limiters that live
    /// across runs (the Python package's `Provider`).
    pub fn add_to_metrics_since<'a>(
        limiters: impl IntoIterator<Item = (&'a ProviderLimiter, StatsSnapshot)>,
        metrics: &mut Metrics,
    ) {
        let mut waits = Timer::default();
        let mut total = StatsSnapshot::default();
        let mut cost_micro_usd = 0_u64;
        for (limiter, before) in limiters {
            let s = limiter.stats.snapshot();
            total.requests += s.requests.saturating_sub(before.requests);
            total.rate_limited += s.rate_limited.saturating_sub(before.rate_limited);
            total.prompt_tokens += s.prompt_tokens.saturating_sub(before.prompt_tokens);
            total.completion_tokens += s.completion_tokens.saturating_sub(before.completion_tokens);
            // Both are whole micro-dollars: the difference is exact.
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "costs are small, not negative, and whole micro-dollars"
            )]
            let micros = |usd: f64| (usd * 1e6).round() as u64;
            cost_micro_usd += micros(s.cost_usd).saturating_sub(micros(before.cost_usd));
            let own = limiter
                .stats
                .waits
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for ms in own.iter().skip(before.waits) {
                waits.record(f64::from(*ms));
            }
        }
        for (name, value) in [
            ("llm_requests", total.requests),
            ("llm_rate_limited", total.rate_limited),
            ("llm_prompt_tokens", total.prompt_tokens),
            ("llm_completion_tokens", total.completion_tokens),
        ] {
            *metrics.counters.entry(name.to_owned()).or_default() += value;
        }
        #[expect(
            clippy::cast_precision_loss,
            reason = "micro-dollars of one run fit an f64's mantissa"
        )]
        let cost_usd = cost_micro_usd as f64 / 1e6;
        *metrics
            .amounts
            .entry("llm_cost_usd".to_owned())
            .or_default() += cost_usd;
        metrics
            .timers
            .insert("rate_limit_wait_ms".to_owned(), waits.summary());
    }

    /// Applies `change` to the state, then tells the engine's side and the
    /// waiting requests.
    fn update<T>(&self, change: impl FnOnce(&mut LimiterState, Instant) -> T) -> T {
        let (out, limit, paused) = {
            let mut state = self.lock();
            // Read under the lock: the state's times never go back.
            let now = Instant::now();
            let out = change(&mut state, now);
            // A tripped provider admits no more tasks: they fail at once
            // when admitted, so the limit stays open for them.
            (out, state.limit(), state.paused_until(now))
        };
        self.shared.set_limit(limit);
        if let Some(until) = paused {
            self.shared.pause_until(until);
        }
        self.changed.notify_waiters();
        out
    }

    /// The request was answered.
    pub fn success(&self, ticket: &Ticket, info: &RateLimitInfo) {
        self.update(|s, now| s.on_success(ticket, info, now));
    }

    /// The request was refused for rate; returns the pause it caused.
    pub fn rate_limited(&self, ticket: &Ticket, info: &RateLimitInfo) -> Duration {
        self.stats.rate_limited();
        let jitter = fastrand::f64();
        self.update(|s, now| s.on_rate_limited(ticket, info, now, jitter))
    }

    /// The request ended some other way.
    pub fn other(&self, ticket: &Ticket, info: &RateLimitInfo) {
        self.update(|s, now| s.on_other(ticket, info, now));
    }

    /// The provider's quota ran out.
    pub fn quota_exhausted(&self, ticket: &Ticket, why: &str) {
        self.update(|s, now| s.on_quota_exhausted(ticket, now, why));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max_concurrency: usize, rpm: Option<f64>) -> Arc<ProviderLimiter> {
        ProviderLimiter::new(
            "test",
            LimiterSettings {
                max_concurrency,
                rpm,
                tpm: None,
            },
        )
    }

    /// Under a paused clock, where the fine sleep's real time does not
    /// move the clock, the timer takes over: a wait ends as a plain sleep
    /// would, on the tick after its time (the paused clock moves by whole
    /// ticks), for the waiter that sleeps finely and the one that does not;
    /// and the claim to the fine sleep is given back.
    #[tokio::test(start_paused = true)]
    async fn under_a_paused_clock_a_wait_ends_as_the_timer_would() {
        let l = limiter(4, None);
        let until = Instant::now() + Duration::from_micros(20_400);
        let (a, b) = tokio::join!(
            async {
                l.wait_until(until).await;
                Instant::now()
            },
            async {
                l.wait_until(until).await;
                Instant::now()
            }
        );
        let tick = until + Duration::from_micros(600);
        assert_eq!((a, b), (tick, tick));
        assert!(!l.fine_waiter.load(Ordering::Acquire));
    }

    /// On the real clock a wait never ends early, whether it had time for
    /// the fine sleep or not.
    #[tokio::test]
    async fn a_wait_never_ends_early() {
        let l = limiter(4, None);
        for micros in [0, 300, 1_700, 2_500] {
            let until = Instant::now() + Duration::from_micros(micros);
            l.wait_until(until).await;
            assert!(Instant::now() >= until, "{micros} µs");
            assert!(!l.fine_waiter.load(Ordering::Acquire));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_for_the_provider_counts_from_the_refusal_that_deferred_the_task() {
        let l = limiter(4, None);
        let token = CancellationToken::new();
        let t0 = Instant::now();
        // Refused at t0; the engine held the task 300 ms before running it
        // again, and it went at once.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ticket = l.acquire(0.0, Some(t0), &token).await.expect("may start");
        l.success(&ticket, &RateLimitInfo::default());
        assert_eq!(l.stats().snapshot().rate_limit_wait_ms, 300);
        // Not deferred, and paced inside the agent by a static 60 a minute
        // (one a second after the first).
        let l = limiter(4, Some(60.0));
        let first = l.acquire(0.0, None, &token).await.expect("may start");
        let second = l.acquire(0.0, None, &token).await.expect("may start");
        l.success(&first, &RateLimitInfo::default());
        l.success(&second, &RateLimitInfo::default());
        assert_eq!(l.stats().snapshot().rate_limit_wait_ms, 1000);
        let mut metrics = Metrics::default();
        ProviderLimiter::add_to_metrics([&*l], &mut metrics);
        assert_eq!(metrics.timer("rate_limit_wait_ms").count, 2);
        // A later run on the same limiter counts only its own request.
        let before = l.stats().snapshot();
        assert_eq!(before.waits, 2);
        let third = l.acquire(0.0, None, &token).await.expect("may start");
        l.stats().used(
            Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                total_tokens: 7,
            },
            Some(0.25),
        );
        l.success(&third, &RateLimitInfo::default());
        let mut run = Metrics::default();
        ProviderLimiter::add_to_metrics_since([(&*l, before)], &mut run);
        assert_eq!(run.timer("rate_limit_wait_ms").count, 1);
        assert_eq!(run.timer("rate_limit_wait_ms").max, 1000.0);
        assert_eq!(run.counter("llm_requests"), 1);
        assert_eq!(run.counter("llm_prompt_tokens"), 3);
        assert_eq!(run.amounts["llm_cost_usd"], 0.25);
    }
}
