//! What a refusal from the provider means for the run: wait and try again
//! (rate), stop sending to this provider (quota), let the engine's retry
//! policy decide (5xx), or fail with the provider's message (4xx).

use std::time::Duration;

use crate::api::ErrorBody;
use crate::headers::RateLimitInfo;

/// A non-2xx answer, classified.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "refusal", rename_all = "snake_case")]
pub enum Refusal {
    /// A rate-limit 429 (or a 503 with `Retry-After`): the request was not
    /// served; it is sent again once the limiter allows.
    RateLimited {
        /// The provider's message.
        message: String,
    },
    /// `insufficient_quota` or "Request too large": no later request can
    /// succeed either.
    QuotaExhausted {
        /// The provider's message.
        message: String,
    },
    /// A server error, a timeout or a conflict: the engine's retry policy
    /// may try again, not sooner than `retry_after`.
    Transient {
        /// `HTTP 500: …`.
        message: String,
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// A client error (400, 401, 403, 404, …): trying again cannot help.
    Permanent {
        /// `HTTP 401: …`.
        message: String,
    },
}

impl Refusal {
    /// The provider's words, with the status (`HTTP 429: …`).
    #[must_use]
    pub fn message(&self) -> &str {
        match self {
            Self::RateLimited { message }
            | Self::QuotaExhausted { message }
            | Self::Transient { message, .. }
            | Self::Permanent { message } => message,
        }
    }

    /// Classifies an answer with status `status` and body `body`.
    #[must_use]
    pub fn classify(status: u16, body: &[u8], info: &RateLimitInfo) -> Self {
        let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
        let detail = parsed.map(|b| b.error).unwrap_or_default();
        let own_words = if detail.message.is_empty() {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let cut: String = text.chars().take(200).collect();
            if cut.is_empty() {
                "(no message)".to_owned()
            } else {
                cut
            }
        } else {
            detail.message.clone()
        };
        let message = format!("HTTP {status}: {own_words}");
        let code = detail.code.as_ref().and_then(serde_json::Value::as_str);
        let is = |word: &str| code == Some(word) || detail.kind.as_deref() == Some(word);
        match status {
            429 if is("insufficient_quota") || own_words.contains("Request too large") => {
                Self::QuotaExhausted { message }
            }
            429 => Self::RateLimited { message },
            503 if info.retry_after.is_some() => Self::RateLimited { message },
            408 | 409 | 500..=599 => Self::Transient {
                message,
                retry_after: info.retry_after,
            },
            _ => Self::Permanent { message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(message: &str, kind: &str, code: &str) -> Vec<u8> {
        serde_json::json!({ "error": { "message": message, "type": kind, "code": code } })
            .to_string()
            .into_bytes()
    }

    #[test]
    fn refusals_are_told_apart() {
        let none = RateLimitInfo::default();
        let hinted = RateLimitInfo {
            retry_after: Some(Duration::from_secs(2)),
            ..RateLimitInfo::default()
        };
        let rate = body(
            "Rate limit reached for m on requests per min (RPM)",
            "requests",
            "rate_limit_exceeded",
        );
        let quota = body(
            "You exceeded your current quota",
            "insufficient_quota",
            "insufficient_quota",
        );
        let large = body(
            "Request too large for m on tokens per min (TPM)",
            "tokens",
            "rate_limit_exceeded",
        );
        let server = body("The server had an error", "server_error", "");
        let key = body(
            "Incorrect API key provided.",
            "invalid_request_error",
            "invalid_api_key",
        );
        let cases: [(u16, &[u8], &RateLimitInfo, Refusal); 8] = [
            (
                429,
                &rate,
                &hinted,
                Refusal::RateLimited {
                    message: "HTTP 429: Rate limit reached for m on requests per min (RPM)".into(),
                },
            ),
            (
                429,
                &quota,
                &none,
                Refusal::QuotaExhausted {
                    message: "HTTP 429: You exceeded your current quota".into(),
                },
            ),
            (
                429,
                &large,
                &none,
                Refusal::QuotaExhausted {
                    message: "HTTP 429: Request too large for m on tokens per min (TPM)".into(),
                },
            ),
            (
                503,
                &server,
                &hinted,
                Refusal::RateLimited {
                    message: "HTTP 503: The server had an error".into(),
                },
            ),
            (
                503,
                &server,
                &none,
                Refusal::Transient {
                    message: "HTTP 503: The server had an error".into(),
                    retry_after: None,
                },
            ),
            (
                500,
                &server,
                &hinted,
                Refusal::Transient {
                    message: "HTTP 500: The server had an error".into(),
                    retry_after: Some(Duration::from_secs(2)),
                },
            ),
            (
                401,
                &key,
                &none,
                Refusal::Permanent {
                    message: "HTTP 401: Incorrect API key provided.".into(),
                },
            ),
            (
                404,
                b"404 page not found",
                &none,
                Refusal::Permanent {
                    message: "HTTP 404: 404 page not found".into(),
                },
            ),
        ];
        for (status, body, info, want) in cases {
            assert_eq!(Refusal::classify(status, body, info), want, "{status}");
        }
        assert_eq!(
            Refusal::classify(400, b"", &none),
            Refusal::Permanent {
                message: "HTTP 400: (no message)".into()
            }
        );
    }
}
