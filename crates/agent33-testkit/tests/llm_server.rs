//! The fake OpenAI-compatible server answers as a real one would: limits,
//! headers, error bodies, faults and its request log.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agent33_testkit::llm_server::{BucketConfig, FakeLlmConfig, FakeLlmServer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn request_text(method: &str, path: &str, key: Option<&str>, body: &str) -> String {
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

async fn send(addr: SocketAddr, method: &str, path: &str, key: Option<&str>, body: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(request_text(method, path, key, body).as_bytes())
        .await
        .expect("write");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .expect("status line")
        .split(' ')
        .nth(1)
        .expect("code");
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    Reply {
        status: status.parse().expect("numeric status"),
        headers,
        body: serde_json::from_str(body).expect("a JSON body"),
    }
}

fn chat(content: &str) -> String {
    json!({ "model": "fake-model", "messages": [ { "role": "user", "content": content } ] })
        .to_string()
}

async fn post(server: &FakeLlmServer, key: Option<&str>, body: &str) -> Reply {
    send(server.addr(), "POST", "/v1/chat/completions", key, body).await
}

/// Polls until `check` holds; the budget is a hang detector only.
async fn eventually(mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "condition not reached in 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn answers_with_usage_and_rate_limit_headers() {
    let server = FakeLlmServer::start(FakeLlmConfig {
        requests: Some(BucketConfig {
            per_second: 1.0,
            burst: 60.0,
        }),
        tokens: Some(BucketConfig {
            per_second: 1000.0,
            burst: 150_000.0,
        }),
        ..FakeLlmConfig::default()
    })
    .await
    .expect("start");
    let reply = post(&server, None, &chat("12345678")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["usage"]["prompt_tokens"], 2);
    assert_eq!(reply.body["usage"]["completion_tokens"], 16);
    assert_eq!(reply.body["usage"]["total_tokens"], 18);
    assert_eq!(reply.body["choices"][0]["finish_reason"], "stop");
    assert_eq!(reply.header("x-ratelimit-limit-requests"), Some("60"));
    assert_eq!(reply.header("x-ratelimit-remaining-requests"), Some("59"));
    assert_eq!(reply.header("x-ratelimit-reset-requests"), Some("1s"));
    assert_eq!(reply.header("x-ratelimit-limit-tokens"), Some("150000"));
    assert_eq!(reply.header("x-ratelimit-remaining-tokens"), Some("149982"));
    assert!(
        reply
            .header("x-ratelimit-reset-tokens")
            .is_some_and(|v| v.ends_with("ms"))
    );
    let log = server.log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, Some(200));
    assert_eq!((log[0].prompt_tokens, log[0].completion_tokens), (2, 16));
    assert_eq!(log[0].model, "fake-model");
}

#[tokio::test]
async fn headers_can_be_left_out() {
    let server = FakeLlmServer::start(FakeLlmConfig {
        requests: Some(BucketConfig {
            per_second: 1.0,
            burst: 60.0,
        }),
        rate_headers: false,
        ..FakeLlmConfig::default()
    })
    .await
    .expect("start");
    let reply = post(&server, None, &chat("x")).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .headers
            .iter()
            .all(|(n, _)| !n.starts_with("x-ratelimit"))
    );
}

#[tokio::test]
async fn a_wrong_or_missing_key_gets_401() {
    let server = FakeLlmServer::start(FakeLlmConfig {
        api_key: Some("sk-right".into()),
        ..FakeLlmConfig::default()
    })
    .await
    .expect("start");
    for key in [Some("sk-wrong"), None] {
        let reply = post(&server, key, &chat("x")).await;
        assert_eq!(reply.status, 401);
        assert_eq!(reply.body["error"]["code"], "invalid_api_key");
    }
    assert_eq!(
        post(&server, Some("sk-right"), &chat("x")).await.status,
        200
    );
}

#[tokio::test]
async fn an_empty_request_bucket_gets_a_real_429() {
    let server = FakeLlmServer::start(FakeLlmConfig {
        requests: Some(BucketConfig {
            per_second: 0.5,
            burst: 2.0,
        }),
        ..FakeLlmConfig::default()
    })
    .await
    .expect("start");
    assert_eq!(post(&server, None, &chat("a")).await.status, 200);
    assert_eq!(post(&server, None, &chat("b")).await.status, 200);
    let reply = post(&server, None, &chat("c")).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(reply.body["error"]["type"], "requests");
    let ms: u64 = reply
        .header("retry-after-ms")
        .expect("retry-after-ms")
        .parse()
        .expect("ms");
    // One request's worth at 0.5/s is 2 s away, less what passed.
    assert!((1000..=2000).contains(&ms), "{ms}");
    assert_eq!(reply.header("retry-after"), Some("2"));
    assert_eq!(reply.header("x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(server.log()[2].retry_after_ms, Some(ms));
}

#[tokio::test]
async fn a_request_over_the_token_bucket_waits_and_one_over_its_size_is_too_large() {
    let server = FakeLlmServer::start(FakeLlmConfig {
        tokens: Some(BucketConfig {
            per_second: 1.0,
            burst: 100.0,
        }),
        ..FakeLlmConfig::default()
    })
    .await
    .expect("start");
    let body = |max: u64| {
        json!({ "model": "m", "messages": [ { "role": "user", "content": "abcd" } ], "max_tokens": max }).to_string()
    };
    assert_eq!(post(&server, None, &body(60)).await.status, 200);
    let reply = post(&server, None, &body(60)).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.body["error"]["type"], "tokens");
    let reply = post(&server, None, &body(500)).await;
    assert_eq!(reply.status, 429);
    let message = reply.body["error"]["message"].as_str().expect("message");
    assert!(message.starts_with("Request too large for m"), "{message}");
    assert!(reply.header("retry-after").is_none());
}

#[tokio::test]
async fn more_than_the_concurrency_cap_gets_429_and_a_disconnect_is_recorded() {
    let server = FakeLlmServer::start(FakeLlmConfig {
        max_concurrent: Some(1),
        ..FakeLlmConfig::default()
    })
    .await
    .expect("start");
    let mut hanging = TcpStream::connect(server.addr()).await.expect("connect");
    hanging
        .write_all(
            request_text(
                "POST",
                "/v1/chat/completions",
                None,
                &chat("<!-- fake: hang -->"),
            )
            .as_bytes(),
        )
        .await
        .expect("write");
    eventually(|| server.in_flight() == 1).await;
    let reply = post(&server, None, &chat("second")).await;
    assert_eq!(reply.status, 429);
    assert!(reply.header("retry-after-ms").is_some());
    assert_eq!(server.log()[1].in_flight, 1);
    drop(hanging);
    eventually(|| server.in_flight() == 0).await;
    let first = &server.log()[0];
    assert!(first.disconnected);
    assert_eq!(first.status, None);
    assert!(first.ended.is_some());
    assert_eq!(post(&server, None, &chat("third")).await.status, 200);
}

#[tokio::test]
async fn quota_server_errors_and_cut_answers_come_when_asked() {
    let server = FakeLlmServer::start(FakeLlmConfig::default())
        .await
        .expect("start");
    let reply = post(&server, None, &chat("<!-- fake: quota -->")).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.body["error"]["code"], "insufficient_quota");

    let flaky = chat("<!-- fake: status=503 retry_after=3 times=1 -->");
    let reply = post(&server, None, &flaky).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("3"));
    assert_eq!(post(&server, None, &flaky).await.status, 200);

    let long = json!({ "model": "m", "max_tokens": 5, "messages": [ { "role": "user", "content": "<!-- fake: tokens=50 -->" } ] });
    let reply = post(&server, None, &long.to_string()).await;
    assert_eq!(reply.body["choices"][0]["finish_reason"], "length");
    assert_eq!(reply.body["usage"]["completion_tokens"], 5);
}

#[tokio::test]
async fn models_are_listed_and_bad_requests_refused() {
    let server = FakeLlmServer::start(FakeLlmConfig::default())
        .await
        .expect("start");
    let reply = send(server.addr(), "GET", "/v1/models", None, "").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["data"][0]["id"], "fake-model");
    assert_eq!(post(&server, None, "{not json").await.status, 400);
    assert_eq!(post(&server, None, r#"{"model":"m"}"#).await.status, 400);
    assert_eq!(
        send(server.addr(), "GET", "/v2/x", None, "").await.status,
        404
    );
}

#[tokio::test]
async fn refused_requests_can_count_against_the_budget() {
    let server = FakeLlmServer::start(FakeLlmConfig {
        requests: Some(BucketConfig {
            per_second: 0.001,
            burst: 1.0,
        }),
        charge_refused: true,
        ..FakeLlmConfig::default()
    })
    .await
    .expect("start");
    assert_eq!(post(&server, None, &chat("a")).await.status, 200);
    let first: u64 = post(&server, None, &chat("b"))
        .await
        .header("retry-after-ms")
        .expect("ms")
        .parse()
        .expect("ms");
    let second: u64 = post(&server, None, &chat("c"))
        .await
        .header("retry-after-ms")
        .expect("ms")
        .parse()
        .expect("ms");
    // The first refusal put the bucket one request in debt: the wait grew
    // by a request's worth (1000 s at 0.001/s).
    assert!(second >= first + 999_000, "{first} then {second}");
}

/// With `exact_latency` an answer still never comes before its latency,
/// measured on the server's own record, from admission to the answer.
#[tokio::test]
async fn an_exact_latency_is_never_cut_short() {
    let latency = Duration::from_micros(2_400);
    let server = FakeLlmServer::start(FakeLlmConfig {
        latency,
        exact_latency: true,
        ..FakeLlmConfig::default()
    })
    .await
    .expect("start");
    for _ in 0..5 {
        assert_eq!(post(&server, None, &chat("hello")).await.status, 200);
    }
    for record in server.log() {
        let (decided, ended) = (
            record.decided.expect("decided"),
            record.ended.expect("ended"),
        );
        assert!(ended - decided >= latency, "{record:?}");
    }
}
