//! Memory stays bounded whatever a task writes: the engine keeps the tail,
//! and the command agent reads in fixed chunks and buffers nothing more.
//!
//! Alone in its test binary because it measures the whole process's peak
//! resident size.

mod common;

use std::time::Instant;

use agent33_parallel::{AgentTask, TaskStatus};
use agent33_process::ProcessOptions;
use agent33_testkit::{Fixture, pattern_byte, reset_peak_rss, self_status_kib};
use common::{agent, executor, run_fixture, run_one};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_mb_writer_keeps_only_the_tail_in_bounded_memory() {
    const TOTAL: u64 = 300 * 1024 * 1024;
    const LIMIT: usize = 1024 * 1024;
    let argv = Fixture::new().quiet().write_bytes(TOTAL).argv();
    let agent = agent(argv, ProcessOptions::default());
    // Warm up the runtime and allocator with a small run, then measure.
    let _ = run_fixture(
        Fixture::new().quiet().write_bytes(4 * LIMIT as u64),
        executor(),
    )
    .await;
    let can_reset = reset_peak_rss();
    let before = self_status_kib(if can_reset { "VmHWM" } else { "VmRSS" }).expect("status");
    let start = Instant::now();
    let result = run_one(
        agent,
        AgentTask::new("fixture", "big"),
        executor().output_limit_bytes(LIMIT),
    )
    .await;
    let elapsed = start.elapsed();
    let after = self_status_kib("VmHWM").expect("status");
    assert_eq!(result.status, TaskStatus::Success);
    let dropped = TOTAL - LIMIT as u64;
    let marker = format!("[agent-33: {dropped} bytes truncated]\n");
    assert!(
        result.output.starts_with(&marker),
        "{}",
        &result.output[..80]
    );
    let tail = &result.output.as_bytes()[marker.len()..];
    assert_eq!(tail.len(), LIMIT);
    assert!(
        tail.iter()
            .enumerate()
            .all(|(i, &b)| b == pattern_byte(dropped + i as u64)),
        "the tail is the last bytes written"
    );
    let growth_kib = after.saturating_sub(before);
    eprintln!("300 MB writer: {elapsed:?}, peak RSS growth {growth_kib} KiB (reset: {can_reset})");
    assert!(
        growth_kib < 12 * 1024,
        "peak RSS grew by {growth_kib} KiB for a 1 MiB limit"
    );
}
