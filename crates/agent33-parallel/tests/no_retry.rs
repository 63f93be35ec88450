//! An agent can say that trying again cannot help: the task fails at once,
//! whatever retries it has left.

use std::time::Duration;

use agent33_parallel::{AgentError, AgentSpec, AgentTask, Agents, ParallelExecutor, TaskContext};

#[tokio::test(start_paused = true)]
async fn a_final_error_is_not_retried_and_an_ordinary_one_is() {
    let agent = |ctx: TaskContext| async move {
        let error = AgentError::new(format!("{} failed", ctx.task().artifact));
        Err::<(), _>(if ctx.task().artifact == "final" {
            error.no_retry()
        } else {
            error
        })
    };
    let agents = Agents::new().add_spec("a", AgentSpec::new(agent).retries(3));
    let executor = ParallelExecutor::builder()
        .continue_on_error(true)
        .retry_backoff(Duration::from_millis(10))
        .build()
        .expect("settings");
    let results = executor
        .run_all(
            vec![AgentTask::new("a", "final"), AgentTask::new("a", "plain")],
            &agents,
        )
        .await;
    let attempts = |artifact: &str| {
        let r = results
            .failed
            .iter()
            .find(|r| r.task.artifact == artifact)
            .expect("failed");
        (r.attempts, r.error.clone())
    };
    assert_eq!(attempts("final"), (1, Some("final failed".to_owned())));
    assert_eq!(attempts("plain"), (4, Some("plain failed".to_owned())));
    assert!(AgentError::new("x").no_retry().is_final());
    assert!(!AgentError::new("x").is_final());
}
