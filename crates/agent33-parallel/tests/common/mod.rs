//! A scripted fake agent for engine tests under tokio's paused clock.
//!
//! A task's artifact is its script: attempts separated by `,` (the last one
//! repeats), each `KIND@MS`:
//! - `ok@MS` succeeds after MS, printing `out:<artifact>`;
//! - `fail@MS` fails with `boom` after MS;
//! - `panic@MS` panics with `kaboom` after MS;
//! - `obey@MS` sleeps MS then succeeds, but stops 10 ms after its token is
//!   cancelled with the error `stopped`;
//! - `hang@MS` sleeps MS then succeeds, ignoring its token;
//! - `settle@MS` sleeps MS, settles its outcome (success), then winds down
//!   for a second, cut short 10 ms after its token is cancelled;
//!   `settlefail@MS` the same, failing with `exit code 3`, and at once
//!   when its token is cancelled;
//! - `quit@MS` sleeps MS then succeeds, and returns its output at once,
//!   as a success, when its token is cancelled.
//!
//! An optional `#tag` suffix keeps ids unique. Every attempt is logged with
//! its virtual start and end.

#![allow(dead_code, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent33_parallel::{AgentError, AgentOutput, AgentSpec, AgentTask, Agents, TaskContext};
use tokio::time::Instant;

#[derive(Clone, Debug)]
pub struct Span {
    pub id: String,
    pub attempt: u32,
    pub start: Duration,
    pub end: Option<Duration>,
}

#[derive(Clone)]
pub struct Log {
    origin: Instant,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Log {
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            spans: Arc::default(),
        }
    }

    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    pub fn starts_of(&self, id: &str) -> Vec<Duration> {
        self.spans()
            .into_iter()
            .filter(|s| s.id == id)
            .map(|s| s.start)
            .collect()
    }

    /// Most attempts ever running at once.
    pub fn peak(&self) -> usize {
        let spans = self.spans();
        let mut points: Vec<(Duration, i32)> = Vec::new();
        for s in &spans {
            points.push((s.start, 1));
            points.push((s.end.unwrap_or(Duration::MAX), -1));
        }
        // Ends before starts at the same instant: a slot handed over is not overlap.
        points.sort_by_key(|&(t, d)| (t, d));
        let mut now = 0;
        let mut peak = 0;
        for (_, d) in points {
            now += d;
            peak = peak.max(now);
        }
        peak as usize
    }
}

struct Guard {
    log: Log,
    index: usize,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let end = self.log.origin.elapsed();
        self.log.spans.lock().unwrap()[self.index].end = Some(end);
    }
}

fn script_for(artifact: &str, attempt: u32) -> (String, u64) {
    let body = artifact.split('#').next().unwrap();
    let steps: Vec<&str> = body.split(',').collect();
    let step = steps[(attempt as usize - 1).min(steps.len() - 1)];
    let (kind, ms) = step.split_once('@').unwrap_or((step, "0"));
    (kind.to_owned(), ms.parse().unwrap())
}

pub fn scripted(log: &Log) -> AgentSpec {
    let log = log.clone();
    AgentSpec::new(move |ctx: TaskContext| {
        let log = log.clone();
        async move {
            let task = ctx.task().clone();
            let index = {
                let mut spans = log.spans.lock().unwrap();
                spans.push(Span {
                    id: task.id.to_string(),
                    attempt: ctx.attempt(),
                    start: log.origin.elapsed(),
                    end: None,
                });
                spans.len() - 1
            };
            let _guard = Guard {
                log: log.clone(),
                index,
            };
            let (kind, ms) = script_for(&task.artifact, ctx.attempt());
            let work = tokio::time::sleep(Duration::from_millis(ms));
            let out = AgentOutput::from(format!("out:{}", task.artifact));
            match kind.as_str() {
                "ok" | "hang" => {
                    work.await;
                    Ok(out)
                }
                "fail" => {
                    work.await;
                    Err(AgentError::with_output("boom", out))
                }
                "panic" => {
                    work.await;
                    panic!("kaboom");
                }
                "obey" => {
                    tokio::select! {
                        () = work => Ok(out),
                        () = ctx.token().cancelled() => {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            Err(AgentError::with_output("stopped", out))
                        }
                    }
                }
                "settle" | "settlefail" => {
                    work.await;
                    assert!(ctx.settle(), "settled before any stop");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(1000)) => {}
                        () = ctx.token().cancelled() => {
                            if kind == "settle" {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                    }
                    if kind == "settle" {
                        Ok(out)
                    } else {
                        Err(AgentError::with_output("exit code 3", out))
                    }
                }
                "quit" => {
                    tokio::select! {
                        () = work => {}
                        () = ctx.token().cancelled() => {}
                    }
                    Ok(out)
                }
                other => panic!("unknown script step {other}"),
            }
        }
    })
}

pub fn agents(log: &Log) -> Agents {
    Agents::new().add_spec("a", scripted(log))
}

pub fn task(script: &str) -> AgentTask {
    AgentTask::new("a", script)
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
