//! Reading what a provider says about its limits: `retry-after-ms`,
//! `retry-after` (seconds or an HTTP date) and the `x-ratelimit-*` headers,
//! whose resets are Go durations (`20ms`, `1s`, `6m0s`).
//!
//! Providers differ and sometimes send nothing or nonsense (`-1`, `0`), so
//! every value is optional and anything unreadable counts as absent.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

/// What one response said about the provider's limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RateLimitInfo {
    /// How long the server asked to wait (`retry-after-ms`, else
    /// `retry-after`).
    pub retry_after: Option<Duration>,
    /// The request window: `x-ratelimit-*-requests`.
    pub requests: Window,
    /// The token window: `x-ratelimit-*-tokens`.
    pub tokens: Window,
}

/// One of the provider's windows, as its headers describe it.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Window {
    /// `x-ratelimit-limit-*`: what a full window holds.
    pub limit: Option<u64>,
    /// `x-ratelimit-remaining-*`: what is left now.
    pub remaining: Option<u64>,
    /// `x-ratelimit-reset-*`: how long until the window is full again.
    pub reset: Option<Duration>,
}

impl Window {
    /// The refill rate per second the headers imply, for a window that
    /// refills evenly: what is missing comes back within `reset`.
    #[must_use]
    pub fn rate(&self) -> Option<f64> {
        let (limit, remaining, reset) = (self.limit?, self.remaining?, self.reset?);
        let missing = limit.checked_sub(remaining)?;
        if missing == 0 || reset.is_zero() {
            return None;
        }
        Some(missing as f64 / reset.as_secs_f64())
    }
}

impl RateLimitInfo {
    /// Reads the headers of a response received at `now` (the clock an
    /// HTTP-date `retry-after` is measured against).
    #[must_use]
    pub fn from_headers(headers: &HeaderMap, now: SystemTime) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let retry_after = text("retry-after-ms")
            .and_then(parse_millis)
            .or_else(|| text("retry-after").and_then(|v| parse_retry_after(v, now)));
        let window = |what: &str| Window {
            limit: text(&format!("x-ratelimit-limit-{what}")).and_then(parse_count),
            remaining: text(&format!("x-ratelimit-remaining-{what}")).and_then(parse_count),
            reset: text(&format!("x-ratelimit-reset-{what}")).and_then(parse_go_duration),
        };
        Self {
            retry_after,
            requests: window("requests"),
            tokens: window("tokens"),
        }
    }
}

fn parse_count(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// `retry-after-ms`: milliseconds, maybe fractional; negative is absent.
#[must_use]
pub fn parse_millis(text: &str) -> Option<Duration> {
    let ms: f64 = text.trim().parse().ok()?;
    (ms.is_finite() && ms >= 0.0).then(|| Duration::from_secs_f64(ms / 1000.0))
}

/// `retry-after`: seconds (maybe fractional, as some servers send) or an
/// HTTP date, which counts from `now` (a date already past is zero).
#[must_use]
pub fn parse_retry_after(text: &str, now: SystemTime) -> Option<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A Go duration as OpenAI's `x-ratelimit-reset-*` carry it: a sequence of
/// numbers (maybe fractional) with units `h`, `m`, `s`, `ms`, `us`/`µs`,
/// `ns`, such as `6m0s`, `1s`, `20ms`, `1h2m3.5s`. A bare number is read as
/// seconds, as some servers send. Negative or unreadable is absent.
#[must_use]
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(secs) = text.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let mut total = 0.0_f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return None;
        }
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * seconds_per_unit;
    }
    total.is_finite().then(|| Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn go_durations() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("6m0s", Some(ms(360_000))),
            ("1s", Some(ms(1000))),
            ("20ms", Some(ms(20))),
            ("1h2m3.5s", Some(ms(3_723_500))),
            ("1.5ms", Some(Duration::from_micros(1500))),
            ("250us", Some(Duration::from_micros(250))),
            ("250µs", Some(Duration::from_micros(250))),
            ("0s", Some(Duration::ZERO)),
            ("2", Some(ms(2000))),
            ("-1", None),
            ("", None),
            ("soon", None),
            ("5x", None),
            ("m5", None),
        ] {
            assert_eq!(parse_go_duration(text), want, "{text:?}");
        }
    }

    #[test]
    fn retry_after_values() {
        let now = httpdate::parse_http_date("Sun, 06 Dec 2026 05:00:00 GMT").expect("a date");
        for (text, want) in [
            ("7", Some(Duration::from_secs(7))),
            ("0.5", Some(Duration::from_millis(500))),
            (
                "Sun, 06 Dec 2026 05:00:12 GMT",
                Some(Duration::from_secs(12)),
            ),
            ("Sun, 06 Dec 2026 04:59:00 GMT", Some(Duration::ZERO)),
            ("-1", None),
            ("later", None),
        ] {
            assert_eq!(parse_retry_after(text, now), want, "{text:?}");
        }
        assert_eq!(parse_millis("250"), Some(Duration::from_millis(250)));
        assert_eq!(parse_millis("-1"), None);
    }

    #[test]
    fn headers_prefer_milliseconds_and_tolerate_nonsense() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("retry-after-ms", "250"),
            ("retry-after", "1"),
            ("x-ratelimit-limit-requests", "60"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "1s"),
            ("x-ratelimit-limit-tokens", "-1"),
            ("x-ratelimit-remaining-tokens", "149984"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        let info = RateLimitInfo::from_headers(&headers, SystemTime::now());
        assert_eq!(info.retry_after, Some(Duration::from_millis(250)));
        assert_eq!(
            info.requests,
            Window {
                limit: Some(60),
                remaining: Some(0),
                reset: Some(Duration::from_secs(1))
            }
        );
        assert_eq!(info.requests.rate(), Some(60.0));
        assert_eq!(info.tokens.limit, None);
        assert_eq!(info.tokens.reset, Some(Duration::from_secs(360)));
        assert_eq!(info.tokens.rate(), None);
        assert_eq!(
            RateLimitInfo::from_headers(&HeaderMap::new(), SystemTime::now()),
            RateLimitInfo::default()
        );
    }

    proptest! {
        #[test]
        fn go_durations_read_back_what_go_prints(h in 0u64..5, m in 0u64..60, ms in 0u64..60_000) {
            let text = format!("{h}h{m}m{}s", ms as f64 / 1000.0);
            let want = Duration::from_millis(h * 3_600_000 + m * 60_000 + ms);
            let got = parse_go_duration(&text).expect("readable");
            prop_assert!(got.abs_diff(want) < Duration::from_micros(1), "{text}: {got:?}");
        }

        #[test]
        fn any_text_is_read_without_panicking(text in ".{0,20}") {
            let _ = parse_go_duration(&text);
            let _ = parse_retry_after(&text, SystemTime::UNIX_EPOCH);
            let _ = parse_millis(&text);
        }
    }
}
