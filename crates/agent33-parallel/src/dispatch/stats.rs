//! Run statistics: what the dispatcher counts and times as tasks start and
//! end, and the metrics it reports at the end of a run.

use std::time::Duration;

use crate::metrics::{Metrics, Timer};
use crate::result::{RunTotals, TaskStatus};

#[derive(Default)]
pub(super) struct Stats {
    /// Finished tasks by status, and the retries they took.
    totals: RunTotals,
    peak: usize,
    busy: Duration,
    task_ms: Timer,
    wait_ms: Timer,
}

pub(super) fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Stats {
    /// An attempt started with `running` attempts in flight, after a task
    /// waited `waited` for its first start (`None` for a retry).
    pub(super) fn started(&mut self, running: usize, waited: Option<Duration>) {
        self.peak = self.peak.max(running);
        if let Some(waited) = waited {
            self.wait_ms.record(millis(waited));
        }
    }

    /// An attempt held its slot this long.
    pub(super) fn ran(&mut self, busy: Duration) {
        self.busy += busy;
    }

    /// A task that started finished after `retries` retries, `took` after
    /// its first start.
    pub(super) fn finished_started(&mut self, retries: u32, took: Duration) {
        self.task_ms.record(millis(took));
        self.totals.retries += u64::from(retries);
    }

    pub(super) fn finished(&mut self, status: TaskStatus) {
        self.totals.add(status);
    }

    /// The run's totals so far.
    pub(super) fn totals(&self) -> RunTotals {
        self.totals
    }

    pub(super) fn metrics(&self, limit: usize, wall: Duration) -> Metrics {
        let mut m = Metrics::default();
        let [succeeded, failed, timeout, cancelled, skipped] = self.totals.by_status;
        for (name, value) in [
            ("tasks_total", self.totals.total()),
            ("tasks_succeeded", succeeded),
            ("tasks_failed", failed),
            ("tasks_timeout", timeout),
            ("tasks_cancelled", cancelled),
            ("tasks_skipped", skipped),
            ("task_retry_count", self.totals.retries),
        ] {
            m.counters.insert(name.to_owned(), value);
        }
        let utilization = if wall.is_zero() {
            0.0
        } else {
            (self.busy.as_secs_f64() / (limit as f64 * wall.as_secs_f64())).clamp(0.0, 1.0)
        };
        m.gauges.insert("parallel_limit".to_owned(), limit as f64);
        m.gauges
            .insert("parallel_peak".to_owned(), self.peak as f64);
        m.gauges.insert(
            "parallel_utilization".to_owned(),
            (utilization * 1000.0).round() / 1000.0,
        );
        let mut run = Timer::default();
        run.record(millis(wall));
        m.timers
            .insert("execution_duration_ms".to_owned(), run.summary());
        m.timers
            .insert("task_duration_ms".to_owned(), self.task_ms.summary());
        m.timers
            .insert("semaphore_wait_ms".to_owned(), self.wait_ms.summary());
        m
    }
}
