//! Engine throughput benchmark: runs N tasks (no-op, or a 1 ms sleep) at a
//! limit through one implementation and prints one JSON line with the wall
//! time, tasks per second and the process's peak RSS.
//!
//! Usage: `agent33-bench-engine IMPL TASKS LIMIT SLEEP_MS` where IMPL is
//! `agent33-stream` (the streaming entry point, results consumed as they
//! come), `agent33-run-all` (`run_all` over a Vec, every result kept),
//! `tokio-joinset` (JoinSet + Semaphore, no bookkeeping) or
//! `tokio-buffered` (`buffer_unordered`, no spawn at all).

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent33_parallel::{
    AgentError, AgentName, AgentTask, Agents, Event, ParallelExecutor, RunControl, TaskContext,
};
use futures::StreamExt;

// Every implementation in this binary shares the allocator, as agent-33's
// binary does: glibc's malloc is slow when one thread frees what another
// allocated, which is what a task runner does all day. Built without the
// `mimalloc` feature, it is the system allocator a library user starts with,
// and every implementation's name says so.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Appended to each implementation's name: which allocator it ran on.
const ALLOCATOR: &str = if cfg!(feature = "mimalloc") {
    ""
} else {
    "+sysalloc"
};

fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn work(sleep: Duration) {
    if !sleep.is_zero() {
        tokio::time::sleep(sleep).await;
    }
}

async fn agent33(n: usize, limit: usize, sleep: Duration, stream: bool) -> usize {
    let agents = Agents::new().add("bench", move |_ctx: TaskContext| async move {
        work(sleep).await;
        Ok::<_, AgentError>(())
    });
    let executor = ParallelExecutor::builder()
        .parallel_limit(limit)
        .build()
        .expect("valid settings");
    // One shared name for every task, as the CLI builds its tasks.
    let name = AgentName::from("bench");
    if stream {
        let tasks = futures::stream::iter(0..n)
            .map(move |i| AgentTask::new(name.clone(), i.to_string()))
            .boxed();
        let mut events = executor.run_stream(tasks, &agents, RunControl::new());
        let mut ok = 0;
        while let Some(e) = events.next().await {
            if let Event::TaskFinished { result, .. } = e {
                ok += usize::from(result.error.is_none());
            }
        }
        ok
    } else {
        let tasks = (0..n)
            .map(|i| AgentTask::new(name.clone(), i.to_string()))
            .collect::<Vec<_>>();
        executor.run_all(tasks, &agents).await.succeeded.len()
    }
}

async fn joinset(n: usize, limit: usize, sleep: Duration) -> usize {
    let sem = Arc::new(tokio::sync::Semaphore::new(limit));
    let mut set = tokio::task::JoinSet::new();
    let mut ok = 0;
    for _ in 0..n {
        let permit = Arc::clone(&sem)
            .acquire_owned()
            .await
            .expect("never closed");
        set.spawn(async move {
            work(sleep).await;
            drop(permit);
        });
        while let Some(r) = set.try_join_next() {
            ok += usize::from(r.is_ok());
        }
    }
    while let Some(r) = set.join_next().await {
        ok += usize::from(r.is_ok());
    }
    ok
}

async fn buffered(n: usize, limit: usize, sleep: Duration) -> usize {
    futures::stream::iter(0..n)
        .map(|_| work(sleep))
        .buffer_unordered(limit)
        .count()
        .await
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [imp, n, limit, sleep_ms] = args.as_slice() else {
        eprintln!("usage: agent33-bench-engine IMPL TASKS LIMIT SLEEP_MS");
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("TASKS is a number");
    let limit: usize = limit.parse().expect("LIMIT is a number");
    let sleep = Duration::from_millis(sleep_ms.parse().expect("SLEEP_MS is a number"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let start = Instant::now();
    // Every implementation runs as a task on the runtime's workers, not on
    // the thread that blocks on it.
    let imp2 = imp.clone();
    let ok = rt.block_on(async move {
        tokio::spawn(async move {
            match imp2.as_str() {
                "agent33-stream" => agent33(n, limit, sleep, true).await,
                "agent33-run-all" => agent33(n, limit, sleep, false).await,
                "tokio-joinset" => joinset(n, limit, sleep).await,
                "tokio-buffered" => buffered(n, limit, sleep).await,
                other => panic!("unknown implementation {other}"),
            }
        })
        .await
        .expect("no panic")
    });
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(ok, n, "every task succeeded");
    println!(
        "{{\"impl\":\"{imp}{ALLOCATOR}\",\"tasks\":{n},\"limit\":{limit},\"sleep_ms\":{sleep_ms},\"seconds\":{secs:.3},\"tasks_per_sec\":{:.0},\"peak_rss_kb\":{}}}",
        n as f64 / secs,
        peak_rss_kb()
    );
}
