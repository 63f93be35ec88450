//! Scheduling quality on random DAGs, measured on tokio's paused clock so
//! every figure is exact and repeatable (no machine noise):
//!
//! 1. makespan of agent-33's dependency-aware scheduler against the
//!    level-by-level scheme (run all of level k, wait for all of it, then
//!    level k+1) and against the lower bound max(critical path, work ÷ limit);
//! 2. utilization with two agents, one limited to 2, against nested
//!    semaphores (acquire the global slot, then the agent's).
//!
//! Usage: `agent33-bench-dag [DAGS_PER_LIMIT]` (default 20).

use std::sync::Arc;
use std::time::Duration;

use agent33_parallel::{
    AgentError, AgentSpec, AgentTask, Agents, ParallelExecutor, TaskContext, plan,
};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// splitmix64: tiny, seedable, good enough to draw graphs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random DAG: task i depends on up to 3 earlier tasks, mostly recent
/// ones, with durations of 1–100 ms (a few long ones up to 1 s).
fn dag(seed: u64, n: usize) -> (Vec<AgentTask>, Vec<u64>) {
    let mut rng = Rng(seed);
    let mut tasks = Vec::with_capacity(n);
    let mut durations = Vec::with_capacity(n);
    for i in 0..n {
        let ms = if rng.below(20) == 0 {
            200 + rng.below(800)
        } else {
            1 + rng.below(100)
        };
        let mut deps = Vec::new();
        if i > 0 {
            for _ in 0..rng.below(4) {
                let window = (i as u64).min(50);
                let d = i - 1 - rng.below(window) as usize;
                if !deps.contains(&d) {
                    deps.push(d);
                }
            }
        }
        tasks.push(
            AgentTask::new("work", format!("{ms}"))
                .with_id(format!("t{i}"))
                .depends_on(deps.iter().map(|d| format!("t{d}"))),
        );
        durations.push(ms);
    }
    (tasks, durations)
}

fn sleeper() -> AgentSpec {
    AgentSpec::new(|ctx: TaskContext| async move {
        let ms: u64 = ctx.task().artifact.parse().expect("duration");
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, AgentError>(())
    })
}

async fn agent33_makespan(tasks: Vec<AgentTask>, limit: usize) -> u64 {
    let agents = Agents::new().add_spec("work", sleeper());
    let r = ParallelExecutor::builder()
        .parallel_limit(limit)
        .respect_dependencies(true)
        .timeout(Duration::ZERO)
        .build()
        .expect("valid settings")
        .run_all(tasks, &agents)
        .await;
    assert_eq!(r.succeeded.len(), r.total);
    r.duration_ms
}

async fn level_by_level_makespan(tasks: &[AgentTask], durations: &[u64], limit: usize) -> u64 {
    let start = Instant::now();
    let sem = Arc::new(Semaphore::new(limit));
    for level in plan::levels(tasks).expect("acyclic") {
        let runs = level.iter().map(|&i| {
            let sem = Arc::clone(&sem);
            let ms = durations[i];
            async move {
                let _permit = sem.acquire().await.expect("open");
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        });
        futures::future::join_all(runs).await;
    }
    start.elapsed().as_millis() as u64
}

fn lower_bound(tasks: &[AgentTask], durations: &[u64], limit: usize) -> u64 {
    let mut finish = vec![0u64; tasks.len()];
    for (i, t) in tasks.iter().enumerate() {
        let ready = t
            .depends_on
            .iter()
            .map(|d| finish[d.as_str()[1..].parse::<usize>().expect("t<i>")])
            .max()
            .unwrap_or(0);
        finish[i] = ready + durations[i];
    }
    let critical = finish.iter().copied().max().unwrap_or(0);
    let work: u64 = durations.iter().sum();
    critical.max(work.div_ceil(limit as u64))
}

/// Two agents: `api` limited to 2, `cpu` unlimited; inputs interleaved with
/// runs of api tasks, all independent. Returns (makespan ms, utilization).
async fn two_agents_agent33(n: usize, limit: usize) -> (u64, f64) {
    let agents = Agents::new()
        .add_spec("api", sleeper().parallel_limit(2))
        .add_spec("cpu", sleeper());
    let r = ParallelExecutor::builder()
        .parallel_limit(limit)
        .timeout(Duration::ZERO)
        .build()
        .expect("valid settings")
        .run_all(mixed(n), &agents)
        .await;
    (r.duration_ms, r.metrics.gauge("parallel_utilization"))
}

fn mixed(n: usize) -> Vec<AgentTask> {
    (0..n)
        .map(|i| {
            // Bursts of 6 api calls every 40 tasks.
            let agent = if i % 40 < 6 { "api" } else { "cpu" };
            AgentTask::new(agent, "50").with_id(format!("m{i}"))
        })
        .collect()
}

async fn two_agents_nested(n: usize, limit: usize) -> (u64, f64) {
    let start = Instant::now();
    let global = Arc::new(Semaphore::new(limit));
    let api = Arc::new(Semaphore::new(2));
    let mut handles = Vec::new();
    for t in mixed(n) {
        // Input order: each task takes a global slot first, then (for api
        // tasks) the agent's: a waiting api task holds a global slot.
        let g = Arc::clone(&global).acquire_owned().await.expect("open");
        let api = Arc::clone(&api);
        handles.push(tokio::spawn(async move {
            let _a = if t.agent == "api" {
                Some(api.acquire_owned().await.expect("open"))
            } else {
                None
            };
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(g);
        }));
    }
    for h in handles {
        h.await.expect("no panic");
    }
    let ms = start.elapsed().as_millis() as u64;
    let busy = 50.0 * n as f64;
    (ms, busy / (limit as f64 * ms as f64))
}

fn main() {
    let per_limit: u64 = std::env::args()
        .nth(1)
        .map_or(20, |a| a.parse().expect("a number of DAGs"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    println!("Random DAGs of 2,000 tasks, {per_limit} per limit (virtual time, exact):\n");
    println!(
        "| limit | agent-33 ÷ lower bound (mean) | worst | level-by-level ÷ lower bound (mean) | agent-33 ÷ level-by-level (worst) |"
    );
    println!("|---|---|---|---|---|");
    rt.block_on(async {
        for limit in [4usize, 16, 64] {
            let (mut sum_a, mut worst_a, mut sum_l, mut worst_vs) = (0.0, 0.0f64, 0.0, 0.0f64);
            for seed in 0..per_limit {
                let (tasks, durations) = dag(seed * 7919 + limit as u64, 2000);
                let bound = lower_bound(&tasks, &durations, limit) as f64;
                let levels = level_by_level_makespan(&tasks, &durations, limit).await as f64;
                let ours = agent33_makespan(tasks, limit).await as f64;
                sum_a += ours / bound;
                worst_a = worst_a.max(ours / bound);
                sum_l += levels / bound;
                worst_vs = worst_vs.max(ours / levels);
            }
            let n = per_limit as f64;
            println!(
                "| {limit} | {:.3} | {worst_a:.3} | {:.3} | {worst_vs:.3} |",
                sum_a / n,
                sum_l / n
            );
        }
        println!("\nTwo agents, `api` limited to 2, global limit 8, 1,600 tasks of 50 ms:\n");
        println!("| scheduler | makespan | utilization |");
        println!("|---|---|---|");
        let (ms, u) = two_agents_agent33(1600, 8).await;
        println!("| agent-33 | {ms} ms | {:.0}% |", u * 100.0);
        let (ms, u) = two_agents_nested(1600, 8).await;
        println!("| nested semaphores | {ms} ms | {:.0}% |", u * 100.0);
    });
}
