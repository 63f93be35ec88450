//! `agent33-fake-llm`: the test kit's fake OpenAI-compatible server as a
//! program, for benchmarks and manual runs.
//!
//! ```text
//! agent33-fake-llm [--port N] [--rps R] [--burst B] [--concurrency C]
//!                  [--tps T] [--token-burst B] [--latency-ms MS]
//!                  [--completion-tokens N] [--api-key-env VAR] [--no-headers]
//! ```
//!
//! It prints `listening http://127.0.0.1:PORT/v1` and serves until killed;
//! with `--log` it prints each request's record as a JSON line as well,
//! every second.

use std::time::Duration;

use agent33_testkit::llm_server::{BucketConfig, FakeLlmConfig, FakeLlmServer};

fn value<T: std::str::FromStr>(args: &mut impl Iterator<Item = String>, flag: &str) -> T {
    let Some(text) = args.next() else {
        eprintln!("agent33-fake-llm: {flag} needs a value");
        std::process::exit(2);
    };
    text.parse().unwrap_or_else(|_| {
        eprintln!("agent33-fake-llm: {flag}: cannot read `{text}`");
        std::process::exit(2);
    })
}

fn main() {
    let mut config = FakeLlmConfig::default();
    let mut port = 0u16;
    let mut burst = None;
    let mut token_burst = None;
    let mut log = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--port" => port = value(&mut args, &flag),
            "--rps" => {
                config.requests = Some(BucketConfig {
                    per_second: value(&mut args, &flag),
                    burst: 0.0,
                });
            }
            "--burst" => burst = Some(value::<f64>(&mut args, &flag)),
            "--tps" => {
                config.tokens = Some(BucketConfig {
                    per_second: value(&mut args, &flag),
                    burst: 0.0,
                });
            }
            "--token-burst" => token_burst = Some(value::<f64>(&mut args, &flag)),
            "--concurrency" => config.max_concurrent = Some(value(&mut args, &flag)),
            "--latency-ms" => config.latency = Duration::from_millis(value(&mut args, &flag)),
            "--completion-tokens" => config.completion_tokens = value(&mut args, &flag),
            "--api-key-env" => {
                let var: String = value(&mut args, &flag);
                config.api_key = std::env::var(&var).ok();
            }
            "--no-headers" => config.rate_headers = false,
            "--log" => log = true,
            _ => {
                eprintln!("agent33-fake-llm: unknown flag {flag}");
                std::process::exit(2);
            }
        }
    }
    // A bucket holds one second's worth unless told otherwise.
    if let Some(b) = &mut config.requests {
        b.burst = burst.unwrap_or(b.per_second);
    }
    if let Some(b) = &mut config.tokens {
        b.burst = token_burst.unwrap_or(b.per_second);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds");
    runtime.block_on(async move {
        let server = FakeLlmServer::start_on(config, port)
            .await
            .unwrap_or_else(|e| {
                eprintln!("agent33-fake-llm: cannot listen on port {port}: {e}");
                std::process::exit(1);
            });
        println!("listening {}", server.base_url());
        let mut printed = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if log {
                let records = server.log();
                for record in records
                    .iter()
                    .skip(printed)
                    .take_while(|r| r.ended.is_some())
                {
                    println!(
                        "{}",
                        serde_json::to_string(record).expect("a record serialises")
                    );
                    printed += 1;
                }
            }
        }
    });
}
