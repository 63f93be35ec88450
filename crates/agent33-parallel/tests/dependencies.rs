//! Dependency order, skips and modes, under tokio's paused clock.

mod common;

use agent33_parallel::{AgentTask, Event, ExecutionResults, ParallelExecutor, RunControl};
use common::{Log, agents, ms};
use futures::StreamExt;

fn t(id: &str, script: &str, deps: &[&str]) -> AgentTask {
    AgentTask::new("a", format!("{script}#{id}"))
        .with_id(id)
        .depends_on(deps.iter().copied())
}

fn ids(results: &[agent33_parallel::TaskResult]) -> Vec<&str> {
    results.iter().map(|r| r.task.id.as_str()).collect()
}

async fn run(
    builder: agent33_parallel::ExecutorBuilder,
    tasks: Vec<AgentTask>,
    log: &Log,
) -> ExecutionResults {
    builder.build().unwrap().run_all(tasks, &agents(log)).await
}

fn aware(limit: usize) -> agent33_parallel::ExecutorBuilder {
    ParallelExecutor::builder()
        .parallel_limit(limit)
        .respect_dependencies(true)
}

#[tokio::test(start_paused = true)]
async fn a_task_starts_as_soon_as_its_own_dependencies_succeed() {
    let log = Log::new();
    let tasks = vec![
        t("a", "ok@100", &[]),
        t("b", "ok@300", &[]),
        t("c", "ok@100", &["a"]),
        t("d", "ok@100", &["b", "c"]),
    ];
    let r = run(aware(4), tasks, &log).await;
    assert_eq!(r.succeeded.len(), 4);
    // c does not wait for b, its level-mate's dependency.
    assert_eq!(log.starts_of("c"), [ms(100)]);
    assert_eq!(log.starts_of("d"), [ms(300)]);
    assert_eq!(r.duration_ms, 400);
}

#[tokio::test(start_paused = true)]
async fn dependents_of_a_failure_are_skipped_transitively_naming_the_dependency() {
    let log = Log::new();
    let tasks = vec![
        t("a", "fail@100", &[]),
        t("b", "ok@100", &["a"]),
        t("c", "ok@100", &["b"]),
        t("d", "ok@500", &[]),
    ];
    let r = run(aware(2).continue_on_error(true), tasks, &log).await;
    assert_eq!(ids(&r.failed), ["a"]);
    assert_eq!(ids(&r.skipped), ["b", "c"]);
    assert_eq!(
        r.skipped[0].error.as_deref(),
        Some("skipped: dependency `a` did not succeed")
    );
    assert_eq!(
        r.skipped[1].error.as_deref(),
        Some("skipped: dependency `b` did not succeed")
    );
    assert_eq!(r.skipped[0].attempts, 0);
    assert_eq!(
        ids(&r.succeeded),
        ["d"],
        "independent branches keep running"
    );
    assert_eq!(r.metrics.counter("tasks_skipped"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_skip_does_not_count_toward_max_failures() {
    let log = Log::new();
    let tasks = vec![
        t("a", "fail@100", &[]),
        t("b", "ok@100", &["a"]),
        t("c", "ok@100", &["a"]),
        t("d", "ok@100", &[]),
    ];
    let r = run(ParallelExecutor::builder().max_failures(2), tasks, &log).await;
    assert_eq!(ids(&r.skipped), ["b", "c"]);
    assert_eq!(ids(&r.succeeded), ["d"]);
    assert!(r.cancelled.is_empty());
}

#[tokio::test(start_paused = true)]
async fn skips_come_before_the_stop_trigger_cancels_the_rest() {
    let log = Log::new();
    let tasks = vec![
        t("a", "fail@100", &[]),
        t("b", "ok@100", &["a"]),
        t("c", "ok@100", &[]),
    ];
    let r = run(ParallelExecutor::builder(), tasks, &log).await;
    assert_eq!(ids(&r.skipped), ["b"]);
    assert_eq!(ids(&r.cancelled), ["c"]);
}

#[tokio::test(start_paused = true)]
async fn sequential_mode_runs_in_dependency_order_stable_to_input_order() {
    let log = Log::new();
    let tasks = vec![
        t("b", "ok@10", &["a"]),
        t("x", "ok@10", &[]),
        t("a", "ok@10", &[]),
        t("y", "ok@10", &[]),
    ];
    let r = run(ParallelExecutor::builder(), tasks, &log).await;
    assert_eq!(r.succeeded.len(), 4);
    let order: Vec<String> = log.spans().into_iter().map(|s| s.id).collect();
    // Whenever the slot frees, the earliest ready task in input order starts.
    assert_eq!(order, ["x", "a", "b", "y"]);
    assert_eq!(
        ids(&r.succeeded),
        ["b", "x", "a", "y"],
        "lists keep input order"
    );
}

#[tokio::test(start_paused = true)]
async fn parallel_mode_ignores_dependencies_with_one_warning() {
    let log = Log::new();
    let tasks = vec![
        t("a", "ok@100", &[]),
        t("b", "ok@100", &["a"]),
        t("c", "ok@100", &["a"]),
    ];
    let executor = ParallelExecutor::builder()
        .parallel_limit(3)
        .build()
        .unwrap();
    let mut events = executor.run(tasks, &agents(&log), RunControl::new());
    let mut warnings = 0;
    while let Some(e) = events.next().await {
        if matches!(e, Event::DependenciesIgnored) {
            warnings += 1;
        }
    }
    assert_eq!(warnings, 1);
    assert_eq!(log.starts_of("b"), [ms(0)]);
}

#[tokio::test(start_paused = true)]
async fn the_dependents_of_a_task_cancelled_by_a_stop_are_cancelled_too() {
    let log = Log::new();
    let tasks = vec![
        t("a", "obey@1000", &[]),
        t("f", "fail@100", &[]),
        t("b", "ok@10", &["a"]),
    ];
    let r = run(aware(2), tasks, &log).await;
    assert_eq!(ids(&r.cancelled), ["a", "b"]);
    assert!(r.skipped.is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_invalid_plan_run_anyway_skips_what_cannot_run() {
    let log = Log::new();
    let tasks = vec![
        t("a", "ok@10", &["ghost"]),
        t("b", "ok@10", &["c"]),
        t("c", "ok@10", &["b"]),
        t("d", "ok@10", &["b"]),
        t("e", "ok@10", &[]),
    ];
    let r = run(aware(2).continue_on_error(true), tasks, &log).await;
    assert_eq!(ids(&r.succeeded), ["e"]);
    assert_eq!(ids(&r.skipped), ["a", "b", "c", "d"]);
    assert_eq!(
        r.skipped[0].error.as_deref(),
        Some("skipped: unknown dependency `ghost`")
    );
    assert_eq!(
        r.skipped[1].error.as_deref(),
        Some("skipped: dependency cycle b → c → b")
    );
    assert_eq!(
        r.skipped[3].error.as_deref(),
        Some("skipped: dependency `b` did not succeed")
    );
}

#[tokio::test(start_paused = true)]
async fn semaphore_wait_counts_from_the_moment_a_task_became_ready() {
    let log = Log::new();
    let tasks = vec![
        t("a", "ok@100", &[]),
        t("b", "ok@300", &[]),
        t("c", "ok@100", &["a"]),
    ];
    // One slot: c is ready at 100 ms (a done) but b holds the slot until 400.
    let r = run(ParallelExecutor::builder(), tasks, &log).await;
    let wait = r.metrics.timer("semaphore_wait_ms");
    assert_eq!((wait.count, wait.sum), (3, 100.0 + 300.0));
}

struct Done(&'static [&'static str]);

impl agent33_parallel::Resume for Done {
    fn previous_success(&self, task: &AgentTask) -> Option<agent33_parallel::TaskResult> {
        self.0.contains(&task.id.as_str()).then(|| {
            let mut r = agent33_parallel::TaskResult::not_started(
                std::sync::Arc::new(task.clone()),
                agent33_parallel::TaskStatus::Success,
                String::new(),
            );
            r.output = "from before".into();
            r
        })
    }
}

#[tokio::test(start_paused = true)]
async fn resumed_tasks_are_not_run_again_and_count_as_successes() {
    let log = Log::new();
    let tasks = vec![
        t("a", "ok@100", &[]),
        t("b", "fail@100", &["a"]),
        t("c", "ok@100", &["b"]),
    ];
    let r = aware(2)
        .build()
        .unwrap()
        .with_resume(std::sync::Arc::new(Done(&["a", "b"])))
        .run_all(tasks, &agents(&log))
        .await;
    assert_eq!(ids(&r.succeeded), ["a", "b", "c"]);
    assert!(r.succeeded[0].resumed && r.succeeded[1].resumed && !r.succeeded[2].resumed);
    assert_eq!(r.succeeded[0].error, None);
    assert_eq!(r.succeeded[0].output, "from before");
    let ran: Vec<String> = log.spans().into_iter().map(|s| s.id).collect();
    assert_eq!(ran, ["c"], "only the task without a previous success ran");
    assert_eq!(log.starts_of("c"), [ms(0)]);
}
