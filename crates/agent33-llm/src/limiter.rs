//! One provider's adaptive limit, as a pure state machine: the caller gives
//! it the time and what the provider said, and it answers how many requests
//! may be in flight, until when new requests wait, and when the next one
//! may be sent.
//!
//! The policy (see `PRODUCT-llm.md`):
//! - **Concurrency by AIMD.** It starts at `max_concurrency`. A rate-limit
//!   429 halves it, at most once per burst: a 429 for a request sent before
//!   the last decrease belongs to the burst that caused it and changes
//!   nothing. Successes grow it by about one per limit's worth (`+1/L`
//!   each), and only while the limit is in use (`in_flight·2 ≥ L`) and is
//!   what holds requests back: not while they wait for a paced window's
//!   room, where more concurrency would send nothing sooner and only
//!   probe the server's concurrency cap with the next burst.
//! - **Pauses.** A 429 pauses new requests until the time the server gave
//!   (`retry-after-ms`, `retry-after`, else the reset of an exhausted
//!   window, else 1 s·2ⁿ for n unhinted 429s in a row), plus 0–20% jitter so
//!   that clients sharing the provider do not all come back at once, never
//!   earlier.
//! - **Pacing before a 429.** A mirror of each of the provider's windows,
//!   corrected by every response's `x-ratelimit-*` headers, spaces requests
//!   out once the window runs low instead of waiting for the refusal.
//!   Requests sent within a few milliseconds of each other reach the
//!   server in any order, so a response's headers are taken not to count
//!   those sent shortly before its own request, and of the readings of one
//!   such batch the highest level is kept: each is a level the server has
//!   at least, and the first the server took reads exactly. Otherwise the
//!   answer to the first request taken of a batch, read as if it had come
//!   last, made the mirror a request or more too high, and its pacing
//!   drew a 429. The manifest's `rpm`/`tpm` pace providers that send no
//!   headers. A request the server refused for rate is taken to have cost
//!   nothing: a server that does charge refusals says so in its next
//!   headers, while counting free refusals as spent would leave the window
//!   idle (after a first burst of 48 refusals, the mirror waited for 48
//!   requests' worth of refill that the server never needed).
//! - **Quota.** After `insufficient_quota` the provider is tripped: nothing
//!   more is sent to it.
//!
//! It does no I/O and keeps no clock: time comes in as [`Instant`]s, the
//! jitter as a number, so that tests are exact.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::headers::{RateLimitInfo, Window};

/// The longest pause a 429 without any hint can cause.
const MAX_UNHINTED_PAUSE: Duration = Duration::from_secs(60);

/// How much of a request (or token) the level read from a response's
/// headers is lowered by: what it moved between the server's count and the
/// response, and the rounding of `reset`, so that pacing does not send a
/// request a moment before the server has room for it. A reading is dated
/// from when its request was sent, a little before the server counted it,
/// and the next paced request takes about as long to be counted: the
/// margin covers how much that time varies (0.6 ms at 50 requests a
/// second, where it varied by 0.1–0.3 ms). What it costs is that much
/// delay on the last request of a run; a tenth of a request was needed
/// only while the readings of a batch could be whole requests too high.
const PACING_MARGIN: f64 = 0.03;

/// How far apart two requests may be sent and still reach the server in
/// either order (separate connections, scheduling): a response's headers
/// may not have counted a request sent up to this much before its own.
const REORDER_WINDOW: Duration = Duration::from_millis(5);

/// The most of a pause the jitter adds, as a fraction of it.
pub const MAX_JITTER: f64 = 0.2;

/// A provider's settings that the limiter uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LimiterSettings {
    /// The ceiling and starting point of the concurrency limit (at least 1).
    pub max_concurrency: usize,
    /// Requests per minute to pace to when the provider says nothing.
    pub rpm: Option<f64>,
    /// Tokens per minute to pace to when the provider says nothing.
    pub tpm: Option<f64>,
}

/// A client-side model of one of the provider's windows: a bucket that
/// refills evenly, spent by every request sent, corrected by the headers.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Mirror {
    capacity: f64,
    per_second: f64,
    level: f64,
    at: Instant,
    /// The request whose response's headers set this mirror: the
    /// requests it counts as spent (see [`Basis::counts`]).
    basis: Option<Basis>,
}

/// The request whose response's headers a mirror was read from.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Basis {
    seq: u64,
    sent_at: Instant,
    /// Requests sent from then on that the mirror counts as spent, even
    /// those before the basis: the server may have taken them after it.
    unsure_from: Instant,
}

impl Basis {
    /// Whether request `seq`, sent at `at`, is spent in a mirror read from
    /// this basis.
    fn counts(&self, seq: u64, at: Instant) -> bool {
        seq > self.seq || (seq != self.seq && at >= self.unsure_from)
    }
}

impl Mirror {
    fn refill(&mut self, now: Instant) {
        if now > self.at {
            let gained = (now - self.at).as_secs_f64() * self.per_second;
            self.level = (self.level + gained).min(self.capacity);
            self.at = now;
        }
    }

    /// When `cost` is there (now, if it is): a request larger than the
    /// whole window waits for a full one.
    fn ready_at(&self, now: Instant, cost: f64) -> Instant {
        let mut at_now = *self;
        at_now.refill(now);
        let need = cost.min(at_now.capacity);
        if at_now.level >= need || at_now.per_second <= 0.0 {
            now
        } else {
            now + Duration::from_secs_f64((need - at_now.level) / at_now.per_second)
        }
    }

    fn spend(&mut self, now: Instant, cost: f64) {
        self.refill(now);
        self.level -= cost;
    }

    /// Gives back what request `seq`, sent at `at`, was spent, when the
    /// server refused it and this mirror counted it.
    fn refund(&mut self, seq: u64, at: Instant, cost: f64) {
        if self.basis.is_none_or(|basis| basis.counts(seq, at)) {
            self.level = (self.level + cost).min(self.capacity);
        }
    }

    /// Reads the model from the headers of the response to the request of
    /// `basis`. `spent_since` is what the server may not have counted in
    /// them (what [`Basis::counts`] and was not refused), `since` how long
    /// ago that request was sent.
    ///
    /// `remaining` is a whole number, rounded down: read alone it makes
    /// every request wait for half a request's refill on average. `reset`
    /// is finer, so the level is read from it (what is missing refills at
    /// the window's rate within `reset`), kept inside what `remaining`
    /// allows. The rate each response implies is too high by up to what
    /// the rounding hid, so the lowest seen is kept unless a response
    /// shows the rate truly changed. A full window implies no rate: the
    /// last one known is kept.
    fn correct(
        window: &Window,
        previous: Option<&Self>,
        basis: Basis,
        spent_since: f64,
        since: Duration,
        now: Instant,
    ) -> Option<Self> {
        let capacity = window.limit? as f64;
        let remaining = window.remaining? as f64;
        let known = previous.map(|m| m.per_second);
        let per_second = match (window.rate(), known, window.reset) {
            (Some(seen), Some(known), Some(reset))
                if (seen - known) * reset.as_secs_f64() <= 1.0 =>
            {
                seen.min(known)
            }
            (Some(seen), _, _) => seen,
            (None, known, _) => known?,
        };
        let level_then = window.reset.map_or(remaining, |reset| {
            let from_reset = capacity - reset.as_secs_f64() * per_second - PACING_MARGIN;
            from_reset.clamp(remaining, remaining + 1.0 - PACING_MARGIN)
        });
        let level = level_then - spent_since + since.as_secs_f64() * per_second;
        Some(Self {
            capacity,
            per_second,
            level: level.min(capacity),
            at: now,
            basis: Some(basis),
        })
    }

    /// The mirror after the response read as `read`: requests sent at
    /// about the same time reach the server in any order, so of two
    /// readings of one batch (their requests sent within `window` of each
    /// other), each a level the server has at least, the higher is the
    /// closer. A reading of a later batch replaces the model, and one of an
    /// earlier batch (an answer that came late) is not newer than it.
    fn combine(mut self, read: Self, window: Duration, now: Instant) -> Self {
        let (Some(old), Some(new)) = (self.basis, read.basis) else {
            return read;
        };
        let later_batch = new.sent_at > old.sent_at + window;
        let earlier_batch = new.sent_at + window < old.sent_at;
        self.refill(now);
        if later_batch || (!earlier_batch && read.level > self.level) {
            return read;
        }
        // The rate and size it read are as good as any.
        Self {
            capacity: read.capacity,
            per_second: read.per_second,
            level: self.level.min(read.capacity),
            ..self
        }
    }
}

/// What a request that may not start waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// A pause, or the paced windows' room, until then.
    Until(Instant),
    /// A request in flight to end.
    Slot,
    /// Nothing: the provider's quota ran out.
    Tripped,
}

/// A request's place in the limiter, from [`LimiterState::try_start`] to its
/// outcome.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "a started request must be ended with one of the on_* calls"]
pub struct Ticket {
    sent_at: Instant,
    /// The request's number in sending order, from 0.
    seq: u64,
    tokens: f64,
}

/// A request the limiter still keeps: in flight, or sent recently enough
/// that a response's headers may not have counted it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Sent {
    at: Instant,
    tokens: f64,
    open: bool,
    /// The server refused it for rate: it spent nothing.
    refused: bool,
}

/// One provider's limit. See the module docs for the policy.
#[derive(Clone, Debug, PartialEq)]
pub struct LimiterState {
    settings: LimiterSettings,
    limit: f64,
    paused_until: Option<Instant>,
    last_decrease: Option<Instant>,
    unhinted_in_a_row: u32,
    /// Requests sent so far (the next one's number).
    sent: u64,
    /// Requests in flight.
    in_flight: usize,
    /// By number, the requests in flight and those sent from shortly
    /// before the oldest of them on ([`REORDER_WINDOW`]): what a response's
    /// headers may not have counted.
    recent: BTreeMap<u64, Sent>,
    /// Since the last success, a request waited for a paced window's room:
    /// the provider's rate, not the limit, held requests back.
    window_bound: bool,
    requests: Option<Mirror>,
    tokens: Option<Mirror>,
    static_requests: Option<Mirror>,
    static_tokens: Option<Mirror>,
    tripped: Option<String>,
}

impl LimiterState {
    /// A limiter at its ceiling, with nothing learnt yet.
    #[must_use]
    pub fn new(settings: LimiterSettings, now: Instant) -> Self {
        let max = settings.max_concurrency.max(1);
        let settings = LimiterSettings {
            max_concurrency: max,
            ..settings
        };
        // A static pace holds one second's worth, so that a run starts
        // without waiting and never bursts past a minute's budget.
        let pace = |per_minute: Option<f64>| {
            per_minute.filter(|p| *p > 0.0).map(|p| Mirror {
                capacity: (p / 60.0).max(1.0),
                per_second: p / 60.0,
                level: (p / 60.0).max(1.0),
                at: now,
                basis: None,
            })
        };
        Self {
            limit: max as f64,
            paused_until: None,
            last_decrease: None,
            unhinted_in_a_row: 0,
            sent: 0,
            in_flight: 0,
            recent: BTreeMap::new(),
            window_bound: false,
            requests: None,
            tokens: None,
            static_requests: pace(settings.rpm),
            static_tokens: pace(settings.tpm),
            tripped: None,
            settings,
        }
    }

    /// How many requests may be in flight now (at least 1).
    #[must_use]
    pub fn limit(&self) -> usize {
        // Truncation is the point: the limit grows by whole requests.
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "1 ≤ limit ≤ max_concurrency"
        )]
        let limit = self.limit.floor() as usize;
        limit.clamp(1, self.settings.max_concurrency)
    }

    /// The ceiling.
    #[must_use]
    pub fn max_concurrency(&self) -> usize {
        self.settings.max_concurrency
    }

    /// Requests started and not yet ended.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Until when new requests wait, if a pause is on at `now`.
    #[must_use]
    pub fn paused_until(&self, now: Instant) -> Option<Instant> {
        self.paused_until.filter(|until| *until > now)
    }

    /// Why nothing more is sent, once the provider's quota ran out.
    #[must_use]
    pub fn tripped(&self) -> Option<&str> {
        self.tripped.as_deref()
    }

    /// Starts a request that will spend `tokens` of the token window (its
    /// prompt and `max_tokens`) if it may go now: not tripped, not paused,
    /// below the limit, and the paced windows have room. Otherwise says
    /// what to wait for.
    ///
    /// # Errors
    ///
    /// The [`Wait`] when the request may not start now.
    pub fn try_start(&mut self, now: Instant, tokens: f64) -> Result<Ticket, Wait> {
        if self.tripped.is_some() {
            return Err(Wait::Tripped);
        }
        if let Some(until) = self.paused_until(now) {
            return Err(Wait::Until(until));
        }
        if self.in_flight() >= self.limit() {
            return Err(Wait::Slot);
        }
        let paced = [
            (&self.requests, 1.0),
            (&self.static_requests, 1.0),
            (&self.tokens, tokens),
            (&self.static_tokens, tokens),
        ]
        .into_iter()
        .filter_map(|(mirror, cost)| mirror.as_ref().map(|m| m.ready_at(now, cost)))
        .max()
        .filter(|at| *at > now);
        if let Some(at) = paced {
            self.window_bound = true;
            return Err(Wait::Until(at));
        }
        for (mirror, cost) in [
            (&mut self.requests, 1.0),
            (&mut self.static_requests, 1.0),
            (&mut self.tokens, tokens),
            (&mut self.static_tokens, tokens),
        ] {
            if let Some(mirror) = mirror {
                mirror.spend(now, cost);
            }
        }
        let ticket = Ticket {
            sent_at: now,
            seq: self.sent,
            tokens,
        };
        self.recent.insert(
            self.sent,
            Sent {
                at: now,
                tokens,
                open: true,
                refused: false,
            },
        );
        self.in_flight += 1;
        self.sent += 1;
        Ok(ticket)
    }

    /// Ends `ticket`'s request; `refused` when the server refused it for
    /// rate, which spent nothing of its windows.
    fn end(&mut self, ticket: &Ticket, info: &RateLimitInfo, now: Instant, refused: bool) {
        if let Some(sent) = self.recent.get_mut(&ticket.seq) {
            sent.open = false;
            sent.refused = refused;
            self.in_flight -= 1;
        }
        if refused {
            for (mirror, cost) in [(&mut self.requests, 1.0), (&mut self.tokens, ticket.tokens)] {
                if let Some(mirror) = mirror {
                    mirror.refund(ticket.seq, ticket.sent_at, cost);
                }
            }
        }
        let window = self.reorder_window();
        let basis = Basis {
            seq: ticket.seq,
            sent_at: ticket.sent_at,
            unsure_from: ticket.sent_at.checked_sub(window).unwrap_or(ticket.sent_at),
        };
        let (requests_since, tokens_since) = self
            .recent
            .iter()
            .filter(|(seq, sent)| !sent.refused && basis.counts(**seq, sent.at))
            .fold((0.0, 0.0), |(n, t), (_, sent)| (n + 1.0, t + sent.tokens));
        let since = now.saturating_duration_since(ticket.sent_at);
        for (mirror, read, spent) in [
            (&mut self.requests, &info.requests, requests_since),
            (&mut self.tokens, &info.tokens, tokens_since),
        ] {
            if let Some(read) = Mirror::correct(read, mirror.as_ref(), basis, spent, since, now) {
                *mirror = Some(match *mirror {
                    Some(previous) => previous.combine(read, window, now),
                    None => read,
                });
            }
        }
        // A later response may not have counted a request sent shortly
        // before its own; nothing older matters.
        // The earliest sent, not the lowest numbered: callers read the
        // time before taking their turn, so numbers and times can cross.
        let oldest_open = self
            .recent
            .values()
            .filter(|sent| sent.open)
            .map(|sent| sent.at)
            .min();
        match oldest_open {
            Some(oldest) => {
                let keep_from = oldest.checked_sub(window).unwrap_or(oldest);
                self.recent.retain(|_, sent| sent.at >= keep_from);
            }
            None => self.recent.clear(),
        }
    }

    /// How far apart two requests may be sent and still reach the server in
    /// either order: [`REORDER_WINDOW`], or less when the provider's rate
    /// spaces paced requests closer, so that a paced request is not taken
    /// for one the previous answer may not have counted.
    fn reorder_window(&self) -> Duration {
        let spacing = self
            .requests
            .filter(|m| m.per_second > 0.0)
            .map_or(REORDER_WINDOW, |m| {
                Duration::from_secs_f64(0.5 / m.per_second)
            });
        REORDER_WINDOW.min(spacing)
    }

    /// The provider answered: grows the limit when it is in use.
    pub fn on_success(&mut self, ticket: &Ticket, info: &RateLimitInfo, now: Instant) {
        let in_use = self.in_flight();
        self.end(ticket, info, now, false);
        self.unhinted_in_a_row = 0;
        let max = self.settings.max_concurrency as f64;
        let window_bound = std::mem::take(&mut self.window_bound);
        if (in_use as f64) * 2.0 >= self.limit.floor() && !window_bound {
            self.limit = (self.limit + 1.0 / self.limit.max(1.0)).min(max);
        }
    }

    /// The provider refused for rate (a 429, or a 503 with `Retry-After`):
    /// halves the limit once per burst and pauses. `jitter` is a number in
    /// `[0, 1)`; the pause is lengthened by that fraction of
    /// [`MAX_JITTER`]. Returns how long new requests now wait.
    pub fn on_rate_limited(
        &mut self,
        ticket: &Ticket,
        info: &RateLimitInfo,
        now: Instant,
        jitter: f64,
    ) -> Duration {
        self.end(ticket, info, now, true);
        if self.last_decrease.is_none_or(|at| ticket.sent_at > at) {
            self.limit = (self.limit.floor() / 2.0).floor().max(1.0);
            self.last_decrease = Some(now);
        }
        let exhausted_reset = |w: &Window| w.reset.filter(|_| w.remaining == Some(0));
        let hinted = info.retry_after.or_else(|| {
            exhausted_reset(&info.requests)
                .into_iter()
                .chain(exhausted_reset(&info.tokens))
                .max()
        });
        let wait = hinted.unwrap_or_else(|| {
            let wait = Duration::from_secs(1).saturating_mul(1 << self.unhinted_in_a_row.min(6));
            self.unhinted_in_a_row += 1;
            wait.min(MAX_UNHINTED_PAUSE)
        });
        let jittered = wait.mul_f64(1.0 + MAX_JITTER * jitter.clamp(0.0, 1.0));
        let until = now + jittered;
        self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
        self.paused_until(now).map_or(Duration::ZERO, |p| p - now)
    }

    /// The request ended without saying anything about rate (another error,
    /// a stop): only frees its place, and keeps what headers it had.
    pub fn on_other(&mut self, ticket: &Ticket, info: &RateLimitInfo, now: Instant) {
        self.end(ticket, info, now, false);
    }

    /// The provider's quota ran out: nothing more is sent to it.
    pub fn on_quota_exhausted(&mut self, ticket: &Ticket, now: Instant, why: &str) {
        self.end(ticket, &RateLimitInfo::default(), now, false);
        self.tripped.get_or_insert_with(|| why.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn settings(max: usize) -> LimiterSettings {
        LimiterSettings {
            max_concurrency: max,
            rpm: None,
            tpm: None,
        }
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn hint(s: f64) -> RateLimitInfo {
        RateLimitInfo {
            retry_after: Some(secs(s)),
            ..RateLimitInfo::default()
        }
    }

    #[test]
    fn starts_at_the_ceiling_and_halves_once_per_burst() {
        let t0 = Instant::now();
        let mut l = LimiterState::new(settings(16), t0);
        assert_eq!(l.limit(), 16);
        let tickets: Vec<_> = (0..16)
            .map(|_| l.try_start(t0, 0.0).expect("may start"))
            .collect();
        assert_eq!(l.try_start(t0, 0.0), Err(Wait::Slot));
        let at = t0 + secs(0.1);
        // The whole burst is refused; only the first refusal halves.
        for t in &tickets[..8] {
            l.on_rate_limited(t, &hint(2.0), at, 0.0);
        }
        assert_eq!(l.limit(), 8);
        assert_eq!(l.in_flight(), 8);
        assert_eq!(l.paused_until(at), Some(at + secs(2.0)));
        assert_eq!(
            l.try_start(at + secs(1.999), 0.0),
            Err(Wait::Until(at + secs(2.0)))
        );
        // A request sent after the decrease is a new burst.
        let later = t0 + secs(3.0);
        for t in &tickets[8..] {
            l.on_other(t, &RateLimitInfo::default(), later);
        }
        let fresh = l.try_start(later, 0.0).expect("may start");
        l.on_rate_limited(&fresh, &hint(1.0), later + secs(0.1), 0.0);
        assert_eq!(l.limit(), 4);
    }

    #[test]
    fn pauses_are_never_shorter_than_asked_and_jitter_only_adds() {
        let t0 = Instant::now();
        for (jitter, want) in [(0.0, 10.0), (0.5, 11.0), (0.999_999, 12.0)] {
            let mut l = LimiterState::new(settings(4), t0);
            let t = l.try_start(t0, 0.0).expect("may start");
            let wait = l.on_rate_limited(&t, &hint(10.0), t0, jitter);
            assert!(
                wait.abs_diff(secs(want)) < secs(0.001),
                "{jitter}: {wait:?}"
            );
        }
        // A shorter hint later does not cut a longer pause.
        let mut l = LimiterState::new(settings(4), t0);
        let (a, b) = (
            l.try_start(t0, 0.0).expect("may start"),
            l.try_start(t0, 0.0).expect("may start"),
        );
        l.on_rate_limited(&a, &hint(10.0), t0, 0.0);
        l.on_rate_limited(&b, &hint(1.0), t0, 0.0);
        assert_eq!(l.paused_until(t0), Some(t0 + secs(10.0)));
    }

    #[test]
    fn without_a_retry_hint_the_exhausted_window_or_a_doubling_default_says_how_long() {
        let t0 = Instant::now();
        let mut l = LimiterState::new(settings(4), t0);
        let exhausted = RateLimitInfo {
            tokens: Window {
                limit: Some(1000),
                remaining: Some(0),
                reset: Some(secs(6.0)),
            },
            ..RateLimitInfo::default()
        };
        let t = l.try_start(t0, 0.0).expect("may start");
        assert_eq!(l.on_rate_limited(&t, &exhausted, t0, 0.0), secs(6.0));
        let mut l = LimiterState::new(settings(4), t0);
        let waits: Vec<_> = (0..3)
            .map(|i| {
                let now = t0 + secs(100.0 * f64::from(i));
                let t = l.try_start(now, 0.0).expect("may start");
                l.on_rate_limited(&t, &RateLimitInfo::default(), now, 0.0)
            })
            .collect();
        assert_eq!(waits, [secs(1.0), secs(2.0), secs(4.0)]);
    }

    #[test]
    fn grows_about_one_per_limit_of_successes_only_when_in_use() {
        let t0 = Instant::now();
        let mut l = LimiterState::new(settings(8), t0);
        let t = l.try_start(t0, 0.0).expect("may start");
        l.on_rate_limited(&t, &hint(0.0), t0, 0.0);
        assert_eq!(l.limit(), 4);
        // Used: 2 of 4 in flight at each success.
        let mut now = t0;
        let mut successes = 0;
        while l.limit() < 5 {
            now += secs(0.01);
            let keep = l.try_start(now, 0.0).expect("may start");
            let t = l.try_start(now, 0.0).expect("may start");
            l.on_success(&t, &RateLimitInfo::default(), now);
            l.on_other(&keep, &RateLimitInfo::default(), now);
            successes += 1;
        }
        assert_eq!(successes, 5);
        // Idle: one at a time against a limit of 5 does not grow it.
        for _ in 0..100 {
            let t = l.try_start(now, 0.0).expect("may start");
            l.on_success(&t, &RateLimitInfo::default(), now);
        }
        assert_eq!(l.limit(), 5);
    }

    /// Starts `n` requests as soon as each may go, ending none; their
    /// start times from `t0`.
    fn starts(l: &mut LimiterState, t0: Instant, n: usize) -> Vec<Duration> {
        let mut now = t0;
        let mut at = Vec::new();
        while at.len() < n {
            match l.try_start(now, 0.0) {
                Ok(_) => at.push(now - t0),
                Err(Wait::Until(later)) => now = later,
                Err(other) => panic!("{other:?}"),
            }
        }
        at
    }

    fn near(got: &[Duration], want: &[f64]) -> bool {
        got.len() == want.len()
            && got
                .iter()
                .zip(want)
                .all(|(g, w)| g.abs_diff(secs(*w)) < secs(0.000_1))
    }

    #[test]
    fn paces_once_the_window_runs_low() {
        let t0 = Instant::now();
        let mut l = LimiterState::new(settings(64), t0);
        let first = l.try_start(t0, 0.0).expect("may start");
        // The server had 2 requests left of 10, refilling 10 a second.
        let low = requests(10, 2, 0.8);
        l.on_success(&first, &low, t0);
        let got = starts(&mut l, t0, 4);
        assert!(near(&got, &[0.0, 0.0, 0.1, 0.2]), "{got:?}");
    }

    /// The server's request window as a response tells it: `remaining` of
    /// a window of `limit` refilled `limit` a second.
    fn window(limit: u64, remaining: u64) -> RateLimitInfo {
        requests(limit, remaining, (limit - remaining) as f64 / limit as f64)
    }

    /// A response's request window: `remaining` of `limit`, full again in
    /// `reset` seconds.
    fn requests(limit: u64, remaining: u64, reset: f64) -> RateLimitInfo {
        RateLimitInfo {
            requests: Window {
                limit: Some(limit),
                remaining: Some(remaining),
                reset: Some(secs(reset)),
            },
            ..RateLimitInfo::default()
        }
    }

    #[test]
    fn requests_refused_for_rate_spend_nothing_of_the_mirrored_window() {
        let t0 = Instant::now();
        let mut l = LimiterState::new(settings(32), t0);
        let tickets: Vec<_> = (0..8)
            .map(|_| l.try_start(t0, 0.0).expect("may start"))
            .collect();
        // A server of 10 requests a second that serves 2 at once: it
        // admits the first two (9 and 8 left) and refuses the other six,
        // which cost it nothing (8 left), asking for 100 ms.
        for t in &tickets[2..] {
            let refused = RateLimitInfo {
                retry_after: Some(secs(0.1)),
                ..window(10, 8)
            };
            l.on_rate_limited(t, &refused, t0, 0.0);
        }
        let later = t0 + secs(0.1);
        l.on_success(&tickets[0], &window(10, 9), later);
        l.on_success(&tickets[1], &window(10, 8), later);
        assert_eq!(l.limit(), 16);
        // 8 left and 1 refilled: 9 go at once, then one each 100 ms. Had
        // the refusals been spent, only 3 would have gone at once.
        let got = starts(&mut l, later, 10);
        let mut want = vec![0.0; 9];
        want.push(0.1);
        assert!(near(&got, &want), "{got:?}");
    }

    #[test]
    fn a_refusal_without_headers_gives_back_what_it_was_spent() {
        let t0 = Instant::now();
        let mut l = LimiterState::new(settings(32), t0);
        let first = l.try_start(t0, 0.0).expect("may start");
        l.on_success(&first, &window(10, 3), t0);
        let tickets: Vec<_> = (0..3)
            .map(|_| l.try_start(t0, 0.0).expect("may start"))
            .collect();
        assert_eq!(l.try_start(t0, 0.0), Err(Wait::Until(t0 + secs(0.1))));
        // The server refused them (a concurrency cap) and said nothing of
        // its window: the three are there again.
        for t in &tickets {
            l.on_rate_limited(t, &RateLimitInfo::default(), t0, 0.0);
        }
        let resumed = l.paused_until(t0).expect("a 429 pauses");
        let got = starts(&mut l, resumed, 3);
        assert!(near(&got, &[0.0, 0.0, 0.0]), "{got:?}");
    }

    #[test]
    fn a_batch_answered_out_of_order_does_not_raise_the_mirror() {
        let t0 = Instant::now();
        let mut l = LimiterState::new(settings(64), t0);
        let first = l.try_start(t0, 0.0).expect("may start");
        // 6 left of 10, refilled 10 a second.
        l.on_success(&first, &window(10, 6), t0);
        // Sent a microsecond apart.
        let batch: Vec<_> = (1..=4)
            .map(|i| {
                l.try_start(t0 + secs(1e-6 * f64::from(i)), 0.0)
                    .expect("may start")
            })
            .collect();
        let t1 = t0 + secs(5e-6);
        // The four went together and the server took them in the order
        // 3, 0, 1, 2 (5, 4, 3 and 2 left after each): 2 are left. The
        // answers come as 2, 3, 0. The one to request 3 says 5 left and
        // was the first taken; read as if the server had counted requests
        // 0..=2 before it, it would let 5 more go at once.
        l.on_success(&batch[2], &window(10, 2), t1);
        l.on_success(&batch[3], &window(10, 5), t1);
        l.on_success(&batch[0], &window(10, 4), t1);
        let got = starts(&mut l, t1, 3);
        assert!(near(&got, &[0.0, 0.0, 0.1]), "{got:?}");
    }

    #[test]
    fn a_late_answer_of_an_earlier_batch_does_not_undo_a_newer_reading() {
        let t0 = Instant::now();
        let mut l = LimiterState::new(settings(64), t0);
        let first = l.try_start(t0, 0.0).expect("may start");
        l.on_success(&first, &window(10, 8), t0);
        let earlier = l.try_start(t0, 0.0).expect("may start");
        let later = l.try_start(t0 + secs(0.05), 0.0).expect("may start");
        // Someone else sharing the key took the rest in between: the newer
        // answer says nothing is left, the older one, which comes after
        // it, still 7.
        let now = t0 + secs(0.3);
        let empty = requests(10, 0, 1.0);
        l.on_success(&later, &empty, now);
        l.on_success(&earlier, &window(10, 7), now);
        // From the newer reading: 0 at 0.05 s, 2.5 by now.
        let got = starts(&mut l, now, 3);
        assert!(near(&got, &[0.0, 0.0, 0.05]), "{got:?}");
    }

    #[test]
    fn a_request_numbered_after_one_sent_later_is_kept_until_it_ends() {
        let t0 = Instant::now();
        let mut l = LimiterState::new(settings(8), t0);
        // The second read its time 20 ms before the first but took its
        // turn after it.
        let a = l.try_start(t0 + secs(0.02), 0.0).expect("may start");
        let b = l.try_start(t0, 0.0).expect("may start");
        let c = l.try_start(t0 + secs(0.02), 0.0).expect("may start");
        let now = t0 + secs(0.3);
        l.on_success(&c, &window(10, 5), now);
        l.on_success(&b, &window(10, 5), now);
        l.on_success(&a, &window(10, 5), now);
        assert_eq!(l.in_flight(), 0);
    }

    #[test]
    fn the_limit_does_not_grow_while_a_paced_window_holds_requests_back() {
        let t0 = Instant::now();
        let mut l = LimiterState::new(settings(8), t0);
        let t = l.try_start(t0, 0.0).expect("may start");
        // Refused with 1 request left of 10 a second: halved to 4.
        let refused = RateLimitInfo {
            retry_after: Some(Duration::ZERO),
            ..window(10, 1)
        };
        l.on_rate_limited(&t, &refused, t0, 0.0);
        assert_eq!(l.limit(), 4);
        let keep = l.try_start(t0, 0.0).expect("may start");
        // 2 of 4 in flight at each success, but each time a request also
        // waited for the window's refill: the rate is what binds.
        let mut now = t0;
        for _ in 0..20 {
            now += secs(0.1);
            let t = l.try_start(now, 0.0).expect("a request's refill");
            assert!(matches!(l.try_start(now, 0.0), Err(Wait::Until(_))));
            l.on_success(&t, &RateLimitInfo::default(), now);
        }
        assert_eq!(l.limit(), 4);
        // Once nothing waits for the window, the same successes grow it.
        let mut successes = 0;
        while l.limit() < 5 {
            now += secs(0.1);
            let t = l.try_start(now, 0.0).expect("a request's refill");
            l.on_success(&t, &RateLimitInfo::default(), now);
            successes += 1;
        }
        assert_eq!(successes, 5);
        l.on_other(&keep, &RateLimitInfo::default(), now);
    }

    #[test]
    fn a_full_windows_headers_keep_the_known_rate() {
        let t0 = Instant::now();
        let mut l = LimiterState::new(settings(32), t0);
        let first = l.try_start(t0, 0.0).expect("may start");
        l.on_success(&first, &window(10, 5), t0);
        // Later the server says its window is full: 10 go at once, and the
        // 11th waits for the refill at the rate learnt before.
        let later = t0 + secs(5.0);
        let second = l.try_start(later, 0.0).expect("may start");
        let full = requests(10, 10, 0.0);
        l.on_success(&second, &full, later);
        let got = starts(&mut l, later, 11);
        let mut want = vec![0.0; 10];
        want.push(0.1);
        assert!(near(&got, &want), "{got:?}");
    }

    #[test]
    fn the_reset_header_reads_the_window_finer_than_whole_requests() {
        let t0 = Instant::now();
        let mut l = LimiterState::new(settings(64), t0);
        let answer = |remaining, reset| requests(10, remaining, reset);
        // An empty window that is full again in a second: 10 a second.
        let first = l.try_start(t0, 0.0).expect("may start");
        l.on_success(&first, &answer(0, 1.0), t0);
        // Then 2.5 requests' worth left, which `remaining` rounds down to
        // 2 and `reset` tells (7.5 missing at 10 a second): the third
        // request goes when half a request has come back, not a whole one
        // (less the margin).
        let second = l.try_start(t0 + secs(0.1), 0.0).expect("may start");
        l.on_success(&second, &answer(2, 0.75), t0 + secs(0.1));
        let got = starts(&mut l, t0 + secs(0.1), 4);
        assert!(near(&got, &[0.0, 0.0, 0.053, 0.153]), "{got:?}");
        // A response that rounds the other way does not raise the rate:
        // 10.67 a second is what 8 missing of 7.5 would imply.
        assert!((l.requests.expect("mirrored").per_second - 10.0).abs() < 1e-9);
    }

    #[test]
    fn a_rate_that_truly_changed_is_taken_at_once() {
        let t0 = Instant::now();
        let mut l = LimiterState::new(settings(64), t0);
        let answer = |remaining, reset| requests(100, remaining, reset);
        let first = l.try_start(t0, 0.0).expect("may start");
        let second = l.try_start(t0, 0.0).expect("may start");
        l.on_success(&first, &answer(0, 10.0), t0);
        assert!((l.requests.expect("mirrored").per_second - 10.0).abs() < 1e-9);
        // Now 50 missing come back within a second: 50 a second, which no
        // rounding of `remaining` explains.
        l.on_success(&second, &answer(50, 1.0), t0);
        assert!((l.requests.expect("mirrored").per_second - 50.0).abs() < 1e-9);
    }

    #[test]
    fn static_rpm_paces_a_silent_provider() {
        let t0 = Instant::now();
        let mut l = LimiterState::new(
            LimiterSettings {
                max_concurrency: 64,
                rpm: Some(120.0),
                tpm: None,
            },
            t0,
        );
        let got = starts(&mut l, t0, 4);
        assert!(near(&got, &[0.0, 0.0, 0.5, 1.0]), "{got:?}");
    }

    #[test]
    fn quota_trips_the_provider() {
        let t0 = Instant::now();
        let mut l = LimiterState::new(settings(4), t0);
        let t = l.try_start(t0, 0.0).expect("may start");
        l.on_quota_exhausted(&t, t0, "insufficient_quota");
        assert_eq!(l.tripped(), Some("insufficient_quota"));
        assert_eq!(l.try_start(t0, 0.0), Err(Wait::Tripped));
        assert_eq!(l.in_flight(), 0);
    }

    #[derive(Clone, Debug)]
    enum Step {
        Start,
        Success(usize),
        RateLimited(usize, u16),
        Other(usize),
        Wait(u16),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            Just(Step::Start),
            any::<usize>().prop_map(Step::Success),
            (any::<usize>(), 0u16..5000).prop_map(|(i, ms)| Step::RateLimited(i, ms)),
            any::<usize>().prop_map(Step::Other),
            (0u16..2000).prop_map(Step::Wait),
        ]
    }

    proptest! {
        #[test]
        fn invariants_hold_whatever_happens(max in 1usize..100, steps in prop::collection::vec(step(), 0..200), jitter in 0.0f64..1.0) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut l = LimiterState::new(settings(max), t0);
            let mut open: Vec<Ticket> = Vec::new();
            let mut last_pause_end = None;
            for step in steps {
                let before = l.limit();
                match step {
                    Step::Start => {
                        if let Ok(t) = l.try_start(now, 1.0) {
                            open.push(t);
                        }
                    }
                    Step::Success(i) if !open.is_empty() => {
                        let t = open.remove(i % open.len());
                        l.on_success(&t, &RateLimitInfo::default(), now);
                        prop_assert!(l.limit() <= before + 1);
                    }
                    Step::RateLimited(i, ms) if !open.is_empty() => {
                        let t = open.remove(i % open.len());
                        let wait = l.on_rate_limited(&t, &hint(f64::from(ms) / 1000.0), now, jitter);
                        prop_assert!(wait >= Duration::from_millis(u64::from(ms)));
                        prop_assert!(l.limit() == before || l.limit() == (before / 2).max(1));
                        let end = now + wait;
                        // A pause never ends earlier than one already given.
                        prop_assert!(last_pause_end.is_none_or(|e| end >= e || l.paused_until(now) >= Some(e)));
                        last_pause_end = Some(end);
                    }
                    Step::Other(i) if !open.is_empty() => {
                        let t = open.remove(i % open.len());
                        l.on_other(&t, &RateLimitInfo::default(), now);
                        prop_assert_eq!(l.limit(), before);
                    }
                    Step::Wait(ms) => now += Duration::from_millis(u64::from(ms)),
                    _ => {}
                }
                prop_assert!((1..=max).contains(&l.limit()));
                prop_assert_eq!(l.in_flight(), open.len());
            }
        }

        #[test]
        fn one_burst_halves_once(max in 2usize..100, n in 1usize..100) {
            let t0 = Instant::now();
            let mut l = LimiterState::new(settings(max), t0);
            let tickets: Vec<_> = (0..n.min(max)).map(|_| l.try_start(t0, 0.0).expect("may start")).collect();
            for (i, t) in tickets.iter().enumerate() {
                l.on_rate_limited(t, &hint(1.0), t0 + Duration::from_millis(i as u64), 0.5);
            }
            prop_assert_eq!(l.limit(), max / 2);
        }
    }
}
