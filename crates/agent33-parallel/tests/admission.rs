//! Admission under limits that change at run time ([`SharedLimit`]) and
//! attempts refused before doing any work (deferrals, `retry_after`), on
//! tokio's paused clock: every start time is exact.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent33_parallel::{
    AgentError, AgentSpec, AgentTask, Agents, Event, ParallelExecutor, RunControl, SharedLimit,
    TaskContext, TaskResult, TaskStatus,
};
use futures::StreamExt;
use tokio::time::Instant;

/// Start times of attempts, as (artifact, ms since the test began).
#[derive(Clone, Default)]
struct Starts(Arc<Mutex<Vec<(String, u64)>>>);

impl Starts {
    fn record(&self, t0: Instant, artifact: &str) {
        let at = Instant::now().duration_since(t0).as_millis() as u64;
        self.0
            .lock()
            .expect("no test panics while holding it")
            .push((artifact.to_owned(), at));
    }

    fn all(&self) -> Vec<(String, u64)> {
        self.0.lock().expect("no panic while held").clone()
    }

    fn of(&self, artifact: &str) -> Vec<u64> {
        self.all()
            .into_iter()
            .filter(|(a, _)| a == artifact)
            .map(|(_, at)| at)
            .collect()
    }
}

/// How long an artifact `name@ms` works.
fn work(artifact: &str) -> Duration {
    let ms = artifact.split_once('@').map_or("0", |(_, ms)| ms);
    Duration::from_millis(ms.parse().expect("artifacts are name@ms"))
}

/// An agent that records its starts and works as long as its artifact says.
fn sleeper(t0: Instant, starts: &Starts) -> AgentSpec {
    let starts = starts.clone();
    AgentSpec::new(move |ctx: TaskContext| {
        let starts = starts.clone();
        async move {
            starts.record(t0, &ctx.task().artifact);
            tokio::time::sleep(work(&ctx.task().artifact)).await;
            Ok::<_, AgentError>(())
        }
    })
}

async fn run(
    executor: ParallelExecutor,
    tasks: Vec<AgentTask>,
    agents: &Agents,
) -> (Vec<Event>, Vec<TaskResult>) {
    let mut stream = executor.run(tasks, agents, RunControl::new());
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event);
    }
    let results = events
        .iter()
        .filter_map(|e| match e {
            Event::TaskFinished { result, .. } => Some((**result).clone()),
            _ => None,
        })
        .collect();
    (events, results)
}

fn parallel(limit: usize) -> ParallelExecutor {
    ParallelExecutor::builder()
        .parallel_limit(limit)
        .build()
        .expect("valid settings")
}

/// Runs `f` at `after` from `t0`, beside the run.
fn at(t0: Instant, after: u64, f: impl FnOnce() + Send + 'static) {
    tokio::spawn(async move {
        tokio::time::sleep_until(t0 + Duration::from_millis(after)).await;
        f();
    });
}

#[tokio::test(start_paused = true)]
async fn a_full_shared_limit_holds_no_slot_and_lets_other_agents_pass() {
    let t0 = Instant::now();
    let starts = Starts::default();
    let provider = SharedLimit::new(1);
    // Two agents share one limit; a third has none.
    let agents = Agents::new()
        .add_spec("a", sleeper(t0, &starts).shared_limit(provider.clone()))
        .add_spec("b", sleeper(t0, &starts).shared_limit(provider.clone()))
        .add_spec("c", sleeper(t0, &starts));
    let tasks = vec![
        AgentTask::new("a", "a1@100"),
        AgentTask::new("b", "b2@100"),
        AgentTask::new("a", "a3@100"),
        AgentTask::new("c", "c4@100"),
    ];
    let (_, results) = run(parallel(2), tasks, &agents).await;
    assert!(results.iter().all(|r| r.status == TaskStatus::Success));
    // b2 and a3 wait for the shared limit, not for a global slot: c4, read
    // after them, takes the second slot at once.
    assert_eq!(
        starts.all(),
        [
            ("a1@100".to_owned(), 0),
            ("c4@100".to_owned(), 0),
            ("b2@100".to_owned(), 100),
            ("a3@100".to_owned(), 200),
        ]
    );
    assert_eq!(provider.in_use(), 0);
}

#[tokio::test(start_paused = true)]
async fn admission_is_first_in_input_order_among_the_tasks_that_can_run() {
    let t0 = Instant::now();
    let starts = Starts::default();
    let provider = SharedLimit::new(1);
    let agents = Agents::new()
        .add_spec("llm", sleeper(t0, &starts).shared_limit(provider))
        .add_spec("cmd", sleeper(t0, &starts));
    let tasks = vec![
        AgentTask::new("llm", "l1@100"),
        AgentTask::new("llm", "l2@100"),
        AgentTask::new("cmd", "c3@300"),
        AgentTask::new("cmd", "c4@100"),
    ];
    run(parallel(2), tasks, &agents).await;
    // At 100 ms l1's slot frees and so does the shared limit: l2, earlier
    // in input order than c4, starts first.
    assert_eq!(starts.of("l2@100"), [100]);
    assert_eq!(starts.of("c3@300"), [0]);
    assert_eq!(starts.of("c4@100"), [200]);
}

#[tokio::test(start_paused = true)]
async fn shrinking_below_in_use_lets_running_tasks_finish_and_admits_nothing_until_under() {
    let t0 = Instant::now();
    let starts = Starts::default();
    let provider = SharedLimit::new(3);
    let agents = Agents::new().add_spec("llm", sleeper(t0, &starts).shared_limit(provider.clone()));
    let tasks = (1..=6)
        .map(|i| AgentTask::new("llm", format!("t{i}@100")))
        .collect();
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let (p, s) = (provider.clone(), Arc::clone(&seen));
    at(t0, 50, move || p.set_limit(1));
    let (p, s2) = (provider.clone(), Arc::clone(&s));
    at(t0, 60, move || {
        s2.lock()
            .expect("not poisoned")
            .insert("in_use_at_60", (p.in_use(), p.limit()));
    });
    let (p, s3) = (provider.clone(), Arc::clone(&s));
    at(t0, 150, move || {
        s3.lock()
            .expect("not poisoned")
            .insert("in_use_at_150", (p.in_use(), p.limit()));
    });
    let (_, results) = run(parallel(10), tasks, &agents).await;
    assert!(results.iter().all(|r| r.status == TaskStatus::Success));
    let times: Vec<u64> = starts.all().into_iter().map(|(_, at)| at).collect();
    // The three running when it shrank to 1 finished; then one at a time.
    assert_eq!(times, [0, 0, 0, 100, 200, 300]);
    let seen = seen.lock().expect("not poisoned");
    assert_eq!(seen["in_use_at_60"], (3, 1));
    assert_eq!(seen["in_use_at_150"], (1, 1));
}

#[tokio::test(start_paused = true)]
async fn growing_a_shared_limit_wakes_the_dispatcher_at_once() {
    let t0 = Instant::now();
    let starts = Starts::default();
    let provider = SharedLimit::new(1);
    let agents = Agents::new().add_spec("llm", sleeper(t0, &starts).shared_limit(provider.clone()));
    let tasks = (1..=4)
        .map(|i| AgentTask::new("llm", format!("t{i}@100")))
        .collect();
    let p = provider.clone();
    at(t0, 30, move || p.set_limit(4));
    run(parallel(10), tasks, &agents).await;
    let times: Vec<u64> = starts.all().into_iter().map(|(_, at)| at).collect();
    // Woken by the change itself, not at the next task's end.
    assert_eq!(times, [0, 30, 30, 30]);
}

#[tokio::test(start_paused = true)]
async fn a_pause_holds_its_tasks_without_a_slot_until_it_ends() {
    let t0 = Instant::now();
    let starts = Starts::default();
    let provider = SharedLimit::new(2);
    let agents = Agents::new()
        .add_spec("llm", sleeper(t0, &starts).shared_limit(provider.clone()))
        .add_spec("cmd", sleeper(t0, &starts));
    provider.pause_until(t0 + Duration::from_millis(250));
    // A shorter pause asked later does not end it earlier.
    provider.pause_until(t0 + Duration::from_millis(100));
    assert!(provider.is_paused());
    let tasks = vec![
        AgentTask::new("llm", "l1@100"),
        AgentTask::new("llm", "l2@100"),
        AgentTask::new("cmd", "c3@100"),
        AgentTask::new("cmd", "c4@100"),
    ];
    let (_, results) = run(parallel(2), tasks, &agents).await;
    assert!(results.iter().all(|r| r.status == TaskStatus::Success));
    assert_eq!(
        starts.all(),
        [
            ("c3@100".to_owned(), 0),
            ("c4@100".to_owned(), 0),
            ("l1@100".to_owned(), 250),
            ("l2@100".to_owned(), 250),
        ]
    );
    assert!(!provider.is_paused());
}

#[tokio::test(start_paused = true)]
async fn a_pause_during_the_run_and_an_early_resume_are_seen_at_once() {
    let t0 = Instant::now();
    let starts = Starts::default();
    let provider = SharedLimit::new(1);
    let agents = Agents::new().add_spec("llm", sleeper(t0, &starts).shared_limit(provider.clone()));
    let tasks = (1..=3)
        .map(|i| AgentTask::new("llm", format!("t{i}@100")))
        .collect();
    let p = provider.clone();
    at(t0, 50, move || {
        p.pause_until(t0 + Duration::from_millis(400))
    });
    let p = provider.clone();
    at(t0, 300, move || p.resume());
    run(parallel(4), tasks, &agents).await;
    let times: Vec<u64> = starts.all().into_iter().map(|(_, at)| at).collect();
    // t1 runs on through the pause; t2 waits for the resume at 300.
    assert_eq!(times, [0, 300, 400]);
}

/// An agent that defers each task's first `n` attempts (given as
/// `name@ms/n`), with `retry_after` if `after` is set, then works `ms`.
fn deferring(t0: Instant, starts: &Starts, after: Option<Duration>) -> AgentSpec {
    let starts = starts.clone();
    let refused: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    AgentSpec::new(move |ctx: TaskContext| {
        let (starts, refused) = (starts.clone(), Arc::clone(&refused));
        async move {
            let artifact = ctx.task().artifact.clone();
            starts.record(t0, &artifact);
            let (spec, n) = artifact.split_once('/').unwrap_or((&artifact, "0"));
            let n: u32 = n.parse().expect("name@ms/n");
            let count = {
                let mut refused = refused.lock().expect("not poisoned");
                let count = refused.entry(artifact.clone()).or_default();
                *count += 1;
                *count
            };
            tokio::time::sleep(Duration::from_millis(10)).await;
            if count <= n {
                return Err(AgentError::deferred(after));
            }
            tokio::time::sleep(work(spec)).await;
            Ok(())
        }
    })
}

fn deferrals(events: &[Event]) -> Vec<(String, Option<Duration>, u32)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::TaskDeferred {
                id,
                retry_after,
                count,
                ..
            } => Some((id.to_string(), *retry_after, *count)),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_deferred_task_goes_back_first_uses_no_retry_and_counts_no_failure() {
    let t0 = Instant::now();
    let starts = Starts::default();
    let agents = Agents::new()
        .add_spec("llm", deferring(t0, &starts, None))
        .add_spec("cmd", sleeper(t0, &starts));
    let tasks = vec![
        AgentTask::new("llm", "d1@100/2"),
        AgentTask::new("cmd", "x2@100"),
        AgentTask::new("cmd", "x3@100"),
    ];
    // One slot, no retries, fail-fast: a deferral is none of those things'
    // business.
    let executor = ParallelExecutor::builder()
        .parallel_limit(1)
        .retries(0)
        .build()
        .expect("valid settings");
    let (events, results) = run(executor, tasks, &agents).await;
    // Refused twice (10 ms each), it is tried again before x2, read later.
    assert_eq!(starts.of("d1@100/2"), [0, 10, 20]);
    assert_eq!(starts.of("x2@100"), [130]);
    assert_eq!(starts.of("x3@100"), [230]);
    let d1 = &results[0];
    assert_eq!(d1.status, TaskStatus::Success);
    assert_eq!(d1.attempts, 1, "a deferral is not an attempt");
    assert!(results.iter().all(|r| r.status == TaskStatus::Success));
    let attempts: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            Event::TaskStarted {
                seq: 0, attempt, ..
            } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, [1, 1, 1]);
    assert_eq!(
        deferrals(&events),
        [
            ("llm:d1@100/2".to_owned(), None, 1),
            ("llm:d1@100/2".to_owned(), None, 2)
        ]
    );
    let Some(Event::RunFinished {
        stopped, metrics, ..
    }) = events.last()
    else {
        panic!("the run ends with RunFinished");
    };
    assert!(stopped.is_none());
    assert_eq!(metrics.counter("tasks_failed"), 0);
    assert_eq!(metrics.counter("task_retry_count"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_deferred_task_waits_out_retry_after_without_a_slot_then_keeps_its_order() {
    let t0 = Instant::now();
    let starts = Starts::default();
    let agents = Agents::new()
        .add_spec(
            "llm",
            deferring(t0, &starts, Some(Duration::from_millis(50))),
        )
        .add_spec("cmd", sleeper(t0, &starts));
    let tasks = vec![
        AgentTask::new("llm", "d1@100/1"),
        AgentTask::new("cmd", "x2@100"),
        AgentTask::new("cmd", "x3@100"),
    ];
    let (events, results) = run(parallel(1), tasks, &agents).await;
    assert!(results.iter().all(|r| r.status == TaskStatus::Success));
    // Refused at 10 ms, it is ready again at 60; x2 took the free slot at
    // 10. At 110 d1, earlier in input order, goes before x3.
    assert_eq!(starts.of("d1@100/1"), [0, 110]);
    assert_eq!(starts.of("x2@100"), [10]);
    assert_eq!(starts.of("x3@100"), [220]);
    assert_eq!(
        deferrals(&events),
        [(
            "llm:d1@100/1".to_owned(),
            Some(Duration::from_millis(50)),
            1
        )]
    );
}

#[tokio::test(start_paused = true)]
async fn the_attempt_after_a_deferral_knows_when_it_was_deferred() {
    let t0 = Instant::now();
    // (attempt, ms from t0 of its `deferred_at`) for every run of the agent.
    type Seen = Arc<Mutex<Vec<(u32, Option<u64>)>>>;
    let seen: Seen = Arc::default();
    let tries = Arc::new(Mutex::new(0u32));
    let agent = {
        let (seen, tries) = (Arc::clone(&seen), Arc::clone(&tries));
        AgentSpec::new(move |ctx: TaskContext| {
            let (seen, tries) = (Arc::clone(&seen), Arc::clone(&tries));
            async move {
                let at = ctx
                    .deferred_at()
                    .map(|d| d.duration_since(t0).as_millis() as u64);
                let n = {
                    let mut tries = tries.lock().expect("not poisoned");
                    *tries += 1;
                    *tries
                };
                seen.lock().expect("not poisoned").push((ctx.attempt(), at));
                tokio::time::sleep(Duration::from_millis(10)).await;
                match n {
                    // Refused twice, the second time asking for 50 ms, then
                    // a real failure, then a success.
                    1 => Err(AgentError::deferred(None)),
                    2 => Err(AgentError::deferred(Some(Duration::from_millis(50)))),
                    3 => Err(AgentError::new("failed")),
                    _ => Ok(()),
                }
            }
        })
    };
    let agents = Agents::new().add_spec("llm", agent);
    let executor = ParallelExecutor::builder()
        .parallel_limit(1)
        .retries(1)
        .retry_backoff(Duration::from_millis(5))
        .build()
        .expect("valid settings");
    let (_, results) = run(executor, vec![AgentTask::new("llm", "a")], &agents).await;
    assert_eq!(results[0].status, TaskStatus::Success);
    // Deferred at 10 and at 20 (then 50 ms out); an attempt after a real
    // failure was not deferred.
    assert_eq!(
        *seen.lock().expect("not poisoned"),
        [(1, None), (1, Some(10)), (1, Some(20)), (2, None)]
    );
}

#[tokio::test(start_paused = true)]
async fn twenty_deferrals_fail_the_task() {
    let t0 = Instant::now();
    let starts = Starts::default();
    let agents = Agents::new().add_spec("llm", deferring(t0, &starts, None));
    let executor = ParallelExecutor::builder()
        .parallel_limit(2)
        .retries(3)
        .continue_on_error(true)
        .build()
        .expect("valid settings");
    let tasks = vec![AgentTask::new("llm", "d@0/1000")];
    let (events, results) = run(executor, tasks, &agents).await;
    assert_eq!(starts.of("d@0/1000").len(), 20);
    assert_eq!(deferrals(&events).len(), 19);
    let r = &results[0];
    assert_eq!(r.status, TaskStatus::Failed);
    assert_eq!(r.error.as_deref(), Some("rate limited 20 times"));
    assert_eq!(r.attempts, 1, "its retries are not used either");
    let Some(Event::RunFinished { metrics, .. }) = events.last() else {
        panic!("the run ends with RunFinished");
    };
    assert_eq!(metrics.counter("tasks_failed"), 1);
    assert_eq!(metrics.counter("task_retry_count"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_at_least_the_retry_after_of_its_failure() {
    let t0 = Instant::now();
    let starts = Starts::default();
    let failed = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let spec = {
        let starts = starts.clone();
        AgentSpec::new(move |ctx: TaskContext| {
            let (starts, failed) = (starts.clone(), Arc::clone(&failed));
            async move {
                let artifact = ctx.task().artifact.clone();
                starts.record(t0, &artifact);
                let first = {
                    let mut failed = failed.lock().expect("not poisoned");
                    let n = failed.entry(artifact.clone()).or_default();
                    *n += 1;
                    *n == 1
                };
                tokio::time::sleep(Duration::from_millis(10)).await;
                if first {
                    // The service's hint, in ms, is the artifact's number.
                    return Err(
                        AgentError::new("503 service unavailable").retry_after(work(&artifact))
                    );
                }
                Ok(())
            }
        })
    };
    let agents = Agents::new().add_spec("api", spec);
    let executor = ParallelExecutor::builder()
        .parallel_limit(4)
        .retries(1)
        .retry_backoff(Duration::from_millis(100))
        .build()
        .expect("valid settings");
    let tasks = vec![
        AgentTask::new("api", "long@500"),
        AgentTask::new("api", "short@20"),
    ];
    let (events, results) = run(executor, tasks, &agents).await;
    assert!(results.iter().all(|r| r.status == TaskStatus::Success));
    // Failed at 10 ms: retried after the longer of the backoff (100 ms)
    // and the hint.
    assert_eq!(starts.of("long@500"), [0, 510]);
    assert_eq!(starts.of("short@20"), [0, 110]);
    let delays: Vec<Duration> = events
        .iter()
        .filter_map(|e| match e {
            Event::TaskRetryScheduled { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect();
    assert_eq!(
        delays,
        [Duration::from_millis(500), Duration::from_millis(100)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_task_waiting_after_a_deferral_is_not_started_at_a_stop() {
    let t0 = Instant::now();
    let starts = Starts::default();
    let agents = Agents::new()
        .add_spec(
            "llm",
            deferring(t0, &starts, Some(Duration::from_millis(500))),
        )
        .add("bad", |_: TaskContext| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err::<(), _>(AgentError::new("boom"))
        });
    let tasks = vec![
        AgentTask::new("llm", "d1@100/1"),
        AgentTask::new("bad", "b2"),
    ];
    // Fail-fast: b2's failure at 100 ms stops the run while d1 waits.
    let (_, results) = run(parallel(2), tasks, &agents).await;
    assert_eq!(starts.of("d1@100/1"), [0]);
    let d1 = results
        .iter()
        .find(|r| r.task.artifact == "d1@100/1")
        .expect("d1 has a result");
    assert_eq!(d1.status, TaskStatus::Cancelled);
    assert_eq!(d1.attempts, 0);
    assert!(
        d1.error
            .as_deref()
            .is_some_and(|e| e.starts_with("not started: ")),
        "{:?}",
        d1.error
    );
}

#[tokio::test(start_paused = true)]
async fn a_run_dropped_while_its_tasks_run_gives_their_room_back() {
    let t0 = Instant::now();
    let starts = Starts::default();
    let provider = SharedLimit::new(4);
    let agents = Agents::new().add_spec("llm", sleeper(t0, &starts).shared_limit(provider.clone()));
    let tasks: Vec<AgentTask> = (1..=3)
        .map(|i| AgentTask::new("llm", format!("t{i}@1000")))
        .collect();
    let mut events = parallel(4).run(tasks, &agents, RunControl::new());
    // Up to the third start.
    let mut started = 0;
    while started < 3 {
        if let Some(Event::TaskStarted { .. }) = events.next().await {
            started += 1;
        }
    }
    assert_eq!(provider.in_use(), 3);
    drop(events);
    // The run goes with its event stream; its dispatcher is dropped soon.
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(provider.in_use(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_streamed_run_waits_out_a_pause_and_runs_other_agents_meanwhile() {
    let t0 = Instant::now();
    let starts = Starts::default();
    let provider = SharedLimit::new(2);
    provider.pause_until(t0 + Duration::from_millis(100));
    let agents = Agents::new()
        .add_spec("llm", sleeper(t0, &starts).shared_limit(provider))
        .add_spec("cmd", sleeper(t0, &starts));
    let tasks = vec![
        AgentTask::new("llm", "l1@10"),
        AgentTask::new("llm", "l2@10"),
        AgentTask::new("cmd", "c3@10"),
    ];
    let results = parallel(4)
        .run_stream(futures::stream::iter(tasks), &agents, RunControl::new())
        .collect_results()
        .await;
    assert_eq!(results.succeeded.len(), 3);
    assert_eq!(
        starts.all(),
        [
            ("c3@10".to_owned(), 0),
            ("l1@10".to_owned(), 100),
            ("l2@10".to_owned(), 100),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn room_another_run_gives_back_wakes_a_run_sharing_the_limit() {
    let t0 = Instant::now();
    let starts = Starts::default();
    let provider = SharedLimit::new(1);
    let agents = Agents::new().add_spec("llm", sleeper(t0, &starts).shared_limit(provider));
    let first = parallel(4).run(
        vec![AgentTask::new("llm", "a@100")],
        &agents,
        RunControl::new(),
    );
    // The second run starts once the first one's task holds the limit.
    let mut first = Box::pin(first);
    while !matches!(first.next().await, Some(Event::TaskStarted { .. })) {}
    let second = parallel(4).run(
        vec![AgentTask::new("llm", "b@100")],
        &agents,
        RunControl::new(),
    );
    // Without the wake the second run would wait forever: on the paused
    // clock the bound fires at once instead.
    let (a, b) = tokio::time::timeout(
        Duration::from_secs(60),
        futures::future::join(first.collect::<Vec<_>>(), second.collect_results()),
    )
    .await
    .expect("the second run is woken when the first gives the room back");
    assert!(!a.is_empty());
    assert_eq!(b.succeeded.len(), 1);
    assert_eq!(
        starts.all(),
        [("a@100".to_owned(), 0), ("b@100".to_owned(), 100)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_deferred_attempts_deadline_does_not_cut_the_next_start_short() {
    let t0 = Instant::now();
    let starts = Starts::default();
    let refused = Arc::new(Mutex::new(false));
    let spec = {
        let starts = starts.clone();
        AgentSpec::new(move |ctx: TaskContext| {
            let (starts, refused) = (starts.clone(), Arc::clone(&refused));
            async move {
                starts.record(t0, &ctx.task().artifact);
                let first = !std::mem::replace(&mut *refused.lock().expect("not poisoned"), true);
                if first {
                    // Refused late in the first start, 10 ms before its
                    // deadline.
                    tokio::time::sleep(Duration::from_millis(90)).await;
                    return Err(AgentError::deferred(None));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(())
            }
        })
    };
    let agents = Agents::new().add_spec("llm", spec);
    let executor = ParallelExecutor::builder()
        .parallel_limit(1)
        .timeout(Duration::from_millis(100))
        .build()
        .expect("valid settings");
    let (_, results) = run(executor, vec![AgentTask::new("llm", "d")], &agents).await;
    // Same slot, same attempt number: still a new start with a deadline of
    // its own (190 ms), not the first one's (100 ms).
    assert_eq!(starts.of("d"), [0, 90]);
    assert_eq!(
        results[0].status,
        TaskStatus::Success,
        "{:?}",
        results[0].error
    );
}
