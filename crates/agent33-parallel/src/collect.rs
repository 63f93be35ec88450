//! Folds a run's events into its [`ExecutionResults`].

use crate::event::Event;
use crate::metrics::Metrics;
use crate::result::{ExecutionResults, TaskResult, TaskStatus};

/// Builds [`ExecutionResults`] from a run's events.
///
/// Keeps every finished result until the end, so memory grows with the
/// number of tasks; consumers that only need counts should watch the events
/// instead.
#[derive(Debug, Default)]
pub struct ResultsCollector {
    finished: Vec<(u64, TaskResult)>,
    done: Option<(u64, Metrics)>,
}

impl ResultsCollector {
    /// An empty collector.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in one event.
    pub fn observe(&mut self, event: &Event) {
        match event {
            Event::TaskFinished { seq, result, .. } => {
                self.finished.push((*seq, (**result).clone()));
            }
            Event::RunFinished {
                duration_ms,
                metrics,
                ..
            } => self.done = Some((*duration_ms, metrics.clone())),
            _ => {}
        }
    }

    /// Takes in one event by value, avoiding a copy of the result.
    pub fn observe_owned(&mut self, event: Event) {
        match event {
            Event::TaskFinished { seq, result, .. } => self.finished.push((seq, *result)),
            Event::RunFinished {
                duration_ms,
                metrics,
                ..
            } => self.done = Some((duration_ms, metrics)),
            _ => {}
        }
    }

    /// Takes in events by value.
    pub fn observe_all(&mut self, events: impl IntoIterator<Item = Event>) {
        for event in events {
            self.observe_owned(event);
        }
    }

    /// The aggregated results.
    #[must_use]
    pub fn finish(mut self) -> ExecutionResults {
        self.finished.sort_unstable_by_key(|(seq, _)| *seq);
        let total = self.finished.len();
        let (duration_ms, metrics) = self.done.unwrap_or_default();
        let mut results = ExecutionResults {
            total,
            succeeded: Vec::new(),
            failed: Vec::new(),
            cancelled: Vec::new(),
            skipped: Vec::new(),
            duration_ms,
            success_rate: 0.0,
            metrics,
        };
        for (_, r) in self.finished {
            match r.status {
                TaskStatus::Success => results.succeeded.push(r),
                TaskStatus::Failed | TaskStatus::Timeout => results.failed.push(r),
                TaskStatus::Cancelled => results.cancelled.push(r),
                TaskStatus::Skipped => results.skipped.push(r),
            }
        }
        if total > 0 {
            results.success_rate = results.succeeded.len() as f64 / total as f64;
        }
        results
    }
}
