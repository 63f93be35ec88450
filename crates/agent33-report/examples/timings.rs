//! A realistic run of made-up agents through the real engine, on tokio's
//! paused clock (so a "minute" of work takes milliseconds), written as the
//! HTML timings page, the Chrome trace and the JSON report — to look at the
//! timeline, and to measure large runs:
//!
//! ```text
//! cargo run -p agent33-report --example timings -- OUT_DIR [TASKS] [LIMIT]
//! ```
//!
//! The README's screenshot, `docs/timeline.png`, is the page of the
//! default run (40 tasks, limit 4):
//!
//! ```text
//! cargo run -p agent33-report --example timings -- target/timings-demo
//! chromium --headless --hide-scrollbars --window-size=1400,900 \
//!     --screenshot=docs/timeline.png "file://$PWD/target/timings-demo/timings.html"
//! ```
//!
//! With up to 100 tasks the run has one retried task, one timeout, a tail
//! of tasks held back by their agent's own limit, and a failure that fires
//! fail-fast (in-flight tasks cancelled, the rest never started); larger
//! runs continue on error, with a failure, a retry and a
//! timeout sprinkled every few hundred tasks.

use std::path::PathBuf;
use std::time::Duration;

use agent33_parallel::{
    AgentError, AgentSpec, AgentTask, Agents, ParallelExecutor, RunControl, TaskContext,
};
use agent33_report::{JsonReporter, Reporters, TimingsReporter, TraceReporter};

/// A deterministic pseudo-random number in 0..1000 for task `i`.
fn noise(i: u64, salt: u64) -> u64 {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    x % 1000
}

fn index(ctx: &TaskContext) -> u64 {
    let artifact = &ctx.task().artifact;
    let digits: String = artifact.chars().filter(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "target/timings-demo".to_owned()),
    );
    let n: u64 = args.next().as_deref().unwrap_or("40").parse()?;
    let limit: usize = args.next().as_deref().unwrap_or("4").parse()?;
    let small = n <= 100;
    // Which tasks misbehave.
    let (retry_at, timeout_at, fail_at) = if small {
        (n / 5, n * 3 / 10, n * 8 / 10)
    } else {
        (271, 433, 389)
    };
    let misbehaves = move |i: u64, at: u64| if small { i == at } else { i % 500 == at % 500 };

    let work = move |base_ms: u64, spread_ms: u64, salt: u64| {
        move |ctx: TaskContext| async move {
            let i = index(&ctx);
            let ms = base_ms + noise(i, salt) * spread_ms / 1000;
            let ms = if misbehaves(i, timeout_at) {
                3_600_000 // runs past its agent's timeout
            } else {
                ms
            };
            // Like a command that exits on SIGTERM: a cancelled attempt
            // ends within moments rather than after the kill grace.
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(ms)) => {}
                () = ctx.token().cancelled() => {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                    return Err(AgentError::new("killed by SIGTERM"));
                }
            }
            if misbehaves(i, retry_at) && ctx.attempt() == 1 {
                return Err(AgentError::new("exit code 75 (temporary failure)"));
            }
            if misbehaves(i, fail_at) {
                return Err(AgentError::new("exit code 1"));
            }
            Ok(())
        }
    };
    let agents = Agents::new()
        .add_spec("refinement", AgentSpec::new(work(1500, 4500, 1)).retries(1))
        .add_spec(
            "validation",
            AgentSpec::new(work(400, 1800, 2)).parallel_limit(limit.div_ceil(2)),
        )
        .add_spec(
            "summarize",
            AgentSpec::new(work(900, 2500, 3)).timeout(Duration::from_secs(8)),
        );
    let folders = [
        "core/prompts",
        "core/agents",
        "core/templates",
        "docs/guides",
    ];
    let tasks: Vec<AgentTask> = (0..n)
        .map(|i| {
            let agent = if misbehaves(i, retry_at) {
                "refinement"
            } else if misbehaves(i, timeout_at) {
                "summarize"
            } else if small && i >= n * 7 / 10 {
                // A tail of validations, held to their agent's own limit
                // while global slots stand idle.
                "validation"
            } else {
                ["refinement", "validation", "validation", "summarize"][(noise(i, 7) % 4) as usize]
            };
            let folder = folders[(noise(i, 9) % 4) as usize];
            AgentTask::new(agent, format!("{folder}/doc-{i:05}.md"))
        })
        .collect();
    let builder = ParallelExecutor::builder()
        .parallel_limit(limit)
        .retry_backoff(Duration::from_millis(1500));
    // The small run stops after two failures; the large one never stops.
    let executor = if small {
        builder.max_failures(2)
    } else {
        builder.continue_on_error(true)
    }
    .build()?;

    let mut reporters = Reporters::new()
        .with(TimingsReporter::create(dir.join("timings.html"))?)
        .with(TraceReporter::create(dir.join("trace.json"))?)
        .with(JsonReporter::create(dir.join("report.json"))?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?;
    let mut errors = Vec::new();
    runtime.block_on(async {
        let mut events = executor.run(tasks, &agents, RunControl::new());
        while let Some(event) = events.next_event().await {
            errors.extend(reporters.on_event(&event));
        }
    });
    errors.extend(reporters.finish());
    for e in &errors {
        eprintln!("timings: {e}");
    }
    println!("{}", dir.join("timings.html").display());
    if errors.is_empty() {
        Ok(())
    } else {
        Err("some reports could not be written".into())
    }
}
