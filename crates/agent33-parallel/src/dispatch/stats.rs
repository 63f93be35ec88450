//! Run statistics: what the dispatcher counts and times as tasks start and
//! end, and the metrics it reports at the end of a run.

use std::time::Duration;

use crate::metrics::{Metrics, Timer};
use crate::result::TaskStatus;

#[derive(Default)]
pub(super) struct Stats {
    /// Finished tasks by status, in `status_index` order.
    counts: [u64; 5],
    retry_count: u64,
    peak: usize,
    busy: Duration,
    task_ms: Timer,
    wait_ms: Timer,
}

pub(super) fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn status_index(status: TaskStatus) -> usize {
    match status {
        TaskStatus::Success => 0,
        TaskStatus::Failed => 1,
        TaskStatus::Timeout => 2,
        TaskStatus::Cancelled => 3,
        TaskStatus::Skipped => 4,
    }
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

    /// A task that started finished after `attempts`, `took` after its
    /// first start.
    pub(super) fn finished_started(&mut self, attempts: u32, took: Duration) {
        self.task_ms.record(millis(took));
        self.retry_count += u64::from(attempts.saturating_sub(1));
    }

    pub(super) fn finished(&mut self, status: TaskStatus) {
        self.counts[status_index(status)] += 1;
    }

    pub(super) fn metrics(&self, limit: usize, wall: Duration) -> Metrics {
        let mut m = Metrics::default();
        let [succeeded, failed, timeout, cancelled, skipped] = self.counts;
        for (name, value) in [
            ("tasks_total", self.counts.iter().sum()),
            ("tasks_succeeded", succeeded),
            ("tasks_failed", failed),
            ("tasks_timeout", timeout),
            ("tasks_cancelled", cancelled),
            ("tasks_skipped", skipped),
            ("task_retry_count", self.retry_count),
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
