//! The event stream's backpressure, measured: a consumer slower than the
//! run slows the run, and the engine's memory does not grow with the
//! number of unread events.
//!
//! Alone in its test binary because it measures the whole process's peak
//! resident size.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agent33_parallel::{
    AgentError, AgentTask, Agents, Event, ParallelExecutor, RunControl, TaskContext,
};
use futures::StreamExt;

/// `VmHWM` (peak resident size) of this process, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    line["VmHWM:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("a number of KiB")
}

/// Spends about `d` of this thread's time, as a reader doing real work per
/// event would.
fn busy(d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// What a user writes first: the default multi-thread runtime, a task
/// iterator that makes tasks as it is read, a reader of every event.
#[tokio::test(flavor = "multi_thread")]
async fn a_million_tasks_with_a_slow_reader_stay_in_bounded_memory() {
    const TASKS: usize = 1_000_000;
    let started = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&started);
    let agents = Agents::new().add("noop", move |_ctx: TaskContext| {
        counter.fetch_add(1, Ordering::Relaxed);
        async { Ok::<_, AgentError>(()) }
    });
    let executor = ParallelExecutor::builder()
        .parallel_limit(64)
        .build()
        .expect("valid settings");
    let tasks = (0..TASKS).map(|i| AgentTask::new("noop", format!("artifact-{i}")));
    let mut events = executor.run(tasks, &agents, RunControl::new());
    let (mut read, mut finished, mut most_ahead) = (0usize, 0usize, 0usize);
    while let Some(event) = events.next().await {
        read += 1;
        finished += usize::from(matches!(event, Event::TaskFinished { .. }));
        let sent = 2 * started.load(Ordering::Relaxed);
        most_ahead = most_ahead.max(sent.saturating_sub(read));
        busy(Duration::from_micros(2));
        if read % 250_000 == 0 {
            // A reader that stalls now and then (a full disk, a slow
            // terminal): the run must wait for it, not pile events up.
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    let peak_mib = peak_rss_kib() / 1024;
    eprintln!(
        "{TASKS} tasks, {read} events: peak RSS {peak_mib} MiB, at most {most_ahead} events ahead"
    );
    assert_eq!(finished, TASKS);
    assert!(peak_mib < 64, "peak RSS {peak_mib} MiB");
    assert!(
        most_ahead <= 16_384,
        "the run got {most_ahead} events ahead of its reader"
    );
}
