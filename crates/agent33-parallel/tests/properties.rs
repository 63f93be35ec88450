//! Invariants over random runs: outcomes, durations, limits, dependency
//! graphs and policies drawn by proptest, executed on the paused clock.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use agent33_parallel::{
    AgentTask, Agents, Event, ExecutionResults, ParallelExecutor, ResultsCollector, RunControl,
    SharedLimit, TaskStatus,
};
use common::{Log, Span, scripted};
use futures::StreamExt;
use proptest::prelude::*;
use tokio::time::Instant;

#[derive(Clone, Debug)]
struct Case {
    /// (agent index, script, dependencies on earlier-or-later tasks)
    tasks: Vec<(usize, String, Vec<usize>)>,
    parallel: bool,
    limit: usize,
    respect: bool,
    agent_limits: [Option<usize>; 2],
    /// A `SharedLimit` both agents are bound to.
    shared: Option<usize>,
    continue_on_error: bool,
    fail_fast: bool,
    max_failures: u32,
    retries: u32,
    timeout_ms: Option<u64>,
}

fn step() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            4 => Just("ok"),
            2 => Just("fail"),
            1 => Just("obey"),
            1 => Just("hang"),
            1 => Just("panic"),
        ],
        0u64..200,
    )
        .prop_map(|(k, ms)| format!("{k}@{ms}"))
}

fn case() -> impl Strategy<Value = Case> {
    let task = (
        0usize..2,
        prop::collection::vec(step(), 1..3),
        prop::collection::vec(0usize..30, 0..3),
    );
    (
        prop::collection::vec(task, 0..30),
        any::<bool>(),
        1usize..6,
        any::<bool>(),
        [prop::option::of(1usize..3), prop::option::of(1usize..3)],
        any::<bool>(),
        any::<bool>(),
        1u32..3,
        0u32..2,
        prop::option::of(50u64..300),
        prop::option::of(1usize..4),
    )
        .prop_map(
            |(
                raw,
                parallel,
                limit,
                respect,
                agent_limits,
                coe,
                ff,
                mf,
                retries,
                timeout_ms,
                shared,
            )| {
                let n = raw.len();
                let tasks = raw
                    .into_iter()
                    .enumerate()
                    .map(|(i, (agent, steps, deps))| {
                        // Acyclic: depend only on earlier tasks.
                        let deps = if i == 0 {
                            Vec::new()
                        } else {
                            let mut d: Vec<usize> = deps.into_iter().map(|d| d % i).collect();
                            d.sort_unstable();
                            d.dedup();
                            d
                        };
                        let _ = n;
                        (agent, format!("{}#{i}", steps.join(",")), deps)
                    })
                    .collect();
                Case {
                    tasks,
                    parallel,
                    limit,
                    respect,
                    agent_limits,
                    shared,
                    continue_on_error: coe,
                    fail_fast: ff,
                    max_failures: mf,
                    retries,
                    timeout_ms,
                }
            },
        )
}

struct Outcome {
    results: ExecutionResults,
    spans: Vec<Span>,
    stop_at: Option<Duration>,
}

fn execute(case: &Case) -> Outcome {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let log = Log::new();
        let origin = Instant::now();
        let mut agents = Agents::new();
        let shared = case.shared.map(SharedLimit::new);
        for (i, limit) in case.agent_limits.iter().enumerate() {
            let mut spec = scripted(&log);
            if let Some(l) = limit {
                spec = spec.parallel_limit(*l);
            }
            if let Some(shared) = &shared {
                spec = spec.shared_limit(shared.clone());
            }
            agents.insert(format!("g{i}"), spec);
        }
        let tasks: Vec<AgentTask> = case
            .tasks
            .iter()
            .enumerate()
            .map(|(i, (agent, script, deps))| {
                AgentTask::new(format!("g{agent}"), script.clone())
                    .with_id(format!("t{i}"))
                    .depends_on(deps.iter().map(|d| format!("t{d}")))
            })
            .collect();
        let mut b = ParallelExecutor::builder()
            .parallel(case.parallel)
            .respect_dependencies(case.respect)
            .continue_on_error(case.continue_on_error)
            .fail_fast(case.fail_fast)
            .retries(case.retries)
            .retry_backoff(Duration::from_millis(30))
            .kill_grace(Duration::from_millis(20))
            .timeout(Duration::from_millis(case.timeout_ms.unwrap_or(0)));
        // The builder refuses both (they contradict); with continue_on_error
        // a failure count never stops the run anyway.
        if !case.continue_on_error {
            b = b.max_failures(case.max_failures);
        }
        if case.parallel || case.respect {
            b = b.parallel_limit(case.limit);
        }
        // respect_dependencies(true) switches parallel on, like the flag.
        let executor = b.build().unwrap();
        let mut events = executor.run(tasks, &agents, RunControl::new());
        let mut collector = ResultsCollector::new();
        let mut stop_at = None;
        while let Some(e) = events.next().await {
            if matches!(e, Event::RunStopTriggered { .. }) && stop_at.is_none() {
                stop_at = Some(origin.elapsed());
            }
            collector.observe(&e);
        }
        Outcome {
            results: collector.finish(),
            spans: log.spans(),
            stop_at,
        }
    })
}

fn peak_of<'a>(spans: impl Iterator<Item = &'a Span>) -> usize {
    let mut points: Vec<(Duration, i32)> = Vec::new();
    for s in spans {
        points.push((s.start, 1));
        points.push((s.end.expect("every attempt ended"), -1));
    }
    points.sort();
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, d) in points {
        now += d;
        peak = peak.max(now);
    }
    peak as usize
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn runs_keep_their_invariants(case in case()) {
        let Outcome { results: r, spans, stop_at } = execute(&case);
        let n = case.tasks.len();
        let parallel = case.parallel || case.respect;
        let limit = if parallel { case.limit } else { 1 };
        // Both agents share one limit, if any: it caps the whole run too.
        let limit = limit.min(case.shared.unwrap_or(usize::MAX));
        let respects = !parallel || case.respect;

        // Every task exactly once; total is the sum of the lists.
        prop_assert_eq!(r.total, n);
        prop_assert_eq!(r.succeeded.len() + r.failed.len() + r.cancelled.len() + r.skipped.len(), n);
        let mut seen = HashSet::new();
        let mut by_id = HashMap::new();
        for list in [&r.succeeded, &r.failed, &r.cancelled, &r.skipped] {
            let positions: Vec<usize> = list.iter().map(|t| t.task.id.as_str()[1..].parse().unwrap()).collect();
            prop_assert!(positions.windows(2).all(|w| w[0] < w[1]), "input order kept");
            for t in list.iter() {
                prop_assert!(seen.insert(t.task.id.clone()));
                by_id.insert(t.task.id.to_string(), t);
            }
        }

        // Limits hold, globally and per agent.
        let peak = peak_of(spans.iter());
        prop_assert!(peak <= limit, "peak {} > limit {}", peak, limit);
        prop_assert!(r.metrics.gauge("parallel_peak") <= limit as f64);
        for (a, agent_limit) in case.agent_limits.iter().enumerate() {
            if let Some(l) = agent_limit {
                let of_agent = spans.iter().filter(|s| {
                    let i: usize = s.id[1..].parse().unwrap();
                    case.tasks[i].0 == a
                });
                prop_assert!(peak_of(of_agent) <= *l);
            }
        }
        let u = r.metrics.gauge("parallel_utilization");
        prop_assert!((0.0..=1.0).contains(&u));

        // Attempts agree with what the agents saw.
        for (id, t) in &by_id {
            let ran = spans.iter().filter(|s| &s.id == id).count() as u32;
            prop_assert_eq!(t.attempts, ran, "attempts of {}", id);
            prop_assert!(t.attempts <= case.retries + 1);
            prop_assert_eq!(t.error.is_none(), t.status == TaskStatus::Success);
        }

        // With fail-fast, nothing starts after the stop trigger.
        if let Some(stop) = stop_at {
            for s in &spans {
                prop_assert!(s.start <= stop, "{} started at {:?} after the stop at {:?}", s.id, s.start, stop);
            }
        } else {
            prop_assert!(r.cancelled.is_empty());
        }

        if respects {
            // No task starts before all its dependencies succeeded.
            for s in &spans {
                let i: usize = s.id[1..].parse().unwrap();
                for d in &case.tasks[i].2 {
                    let dep = by_id[&format!("t{d}")];
                    prop_assert_eq!(dep.status, TaskStatus::Success);
                    let dep_end = spans.iter().filter(|x| x.id == format!("t{d}")).filter_map(|x| x.end).max().unwrap();
                    prop_assert!(dep_end <= s.start);
                }
            }
            // Skipped = transitive dependents of non-successes (all of them
            // when nothing stops the run).
            if case.continue_on_error {
                let mut bad: HashSet<usize> = HashSet::new();
                for i in 0..n {
                    let st = by_id[&format!("t{i}")].status;
                    let dep_bad = case.tasks[i].2.iter().any(|d| bad.contains(d));
                    if dep_bad {
                        prop_assert_eq!(st, TaskStatus::Skipped, "t{} should be skipped", i);
                    } else {
                        prop_assert!(st != TaskStatus::Skipped, "t{} skipped without cause", i);
                    }
                    if st != TaskStatus::Success {
                        bad.insert(i);
                    }
                }
            }
        } else {
            prop_assert!(r.skipped.is_empty());
        }

        // No idle slot while work is ready: a task that waited after it
        // became ready found, at every moment of its wait, the global limit
        // or its agent's limit reached. (Checked where nothing else defers
        // tasks: no stop, no retry backoff.)
        if stop_at.is_none() && case.retries == 0 {
            let running = |t: Duration, agent: Option<usize>| {
                spans
                    .iter()
                    .filter(|x| x.start <= t && x.end.is_some_and(|e| e > t))
                    .filter(|x| {
                        let i: usize = x.id[1..].parse().unwrap();
                        agent.is_none_or(|a| case.tasks[i].0 == a)
                    })
                    .count()
            };
            for s in &spans {
                let i: usize = s.id[1..].parse().unwrap();
                let ready = if respects {
                    case.tasks[i]
                        .2
                        .iter()
                        .filter_map(|d| spans.iter().filter(|x| x.id == format!("t{d}")).filter_map(|x| x.end).max())
                        .max()
                        .unwrap_or(Duration::ZERO)
                } else {
                    Duration::ZERO
                };
                let agent = case.tasks[i].0;
                let agent_limit = case.agent_limits[agent].unwrap_or(usize::MAX);
                let mut moments: Vec<Duration> = spans
                    .iter()
                    .filter_map(|x| x.end)
                    .filter(|&e| e >= ready && e < s.start)
                    .collect();
                moments.push(ready);
                for t in moments.into_iter().filter(|&t| t < s.start) {
                    let busy = running(t, None) >= limit || running(t, Some(agent)) >= agent_limit;
                    prop_assert!(busy, "{} was ready at {:?} with a free slot, started at {:?}", s.id, t, s.start);
                }
            }
        }
    }
}
