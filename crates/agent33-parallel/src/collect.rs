//! Folds a run's events into its [`ExecutionResults`].

use std::collections::BTreeMap;

use crate::event::Event;
use crate::metrics::Metrics;
use crate::result::{ExecutionResults, TaskResult, TaskStatus};

/// Builds [`ExecutionResults`] from a run's events.
///
/// Keeps every finished result until the end, so memory grows with the
/// number of tasks; consumers that only need counts should watch the events
/// instead.
///
/// Results are filed into their lists as they come, in input order: one
/// that finishes before an earlier task waits aside until that one does.
/// Sorting them all at the end walked every result again when it was long
/// out of the cache: 0.2 ms between a run's last answer and its results,
/// for 400 tasks.
#[derive(Debug, Default)]
pub struct ResultsCollector {
    /// The input position of the next result to file.
    next: u64,
    /// Results that finished before an earlier task, by input position.
    early: BTreeMap<u64, TaskResult>,
    /// Results of a position that already has one (events not from one
    /// engine run, put together by hand): listed after it, at the end.
    again: Vec<(u64, TaskResult)>,
    /// The input position of each result filed, list by list.
    seqs: [Vec<u64>; 4],
    results: ExecutionResults,
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
            Event::TaskFinished { seq, result, .. } => self.take(*seq, (**result).clone()),
            Event::RunFinished {
                duration_ms,
                metrics,
                ..
            } => self.run_finished(*duration_ms, metrics.clone()),
            _ => {}
        }
    }

    /// Takes in one event by value, avoiding a copy of the result.
    pub fn observe_owned(&mut self, event: Event) {
        match event {
            Event::TaskFinished { seq, result, .. } => self.take(seq, *result),
            Event::RunFinished {
                duration_ms,
                metrics,
                ..
            } => self.run_finished(duration_ms, metrics),
            _ => {}
        }
    }

    /// Takes in events by value.
    pub fn observe_all(&mut self, events: impl IntoIterator<Item = Event>) {
        for event in events {
            self.observe_owned(event);
        }
    }

    fn take(&mut self, seq: u64, result: TaskResult) {
        if seq < self.next || self.early.contains_key(&seq) {
            self.again.push((seq, result));
            return;
        }
        if seq > self.next {
            self.early.insert(seq, result);
            return;
        }
        self.file(result);
        while self
            .early
            .first_key_value()
            .is_some_and(|(seq, _)| *seq == self.next)
        {
            if let Some((_, result)) = self.early.pop_first() {
                self.file(result);
            }
        }
    }

    /// Files the result at the next input position.
    fn file(&mut self, result: TaskResult) {
        let seq = self.next;
        self.next += 1;
        self.results.total += 1;
        let (seqs, list) = self.list(result.status);
        seqs.push(seq);
        list.push(result);
    }

    /// The list a status goes in, with its results' input positions.
    fn list(&mut self, status: TaskStatus) -> (&mut Vec<u64>, &mut Vec<TaskResult>) {
        let results = &mut self.results;
        let (i, list) = match status {
            TaskStatus::Success => (0, &mut results.succeeded),
            TaskStatus::Failed | TaskStatus::Timeout => (1, &mut results.failed),
            TaskStatus::Cancelled => (2, &mut results.cancelled),
            TaskStatus::Skipped => (3, &mut results.skipped),
        };
        (&mut self.seqs[i], list)
    }

    fn run_finished(&mut self, duration_ms: u64, metrics: Metrics) {
        self.results.duration_ms = duration_ms;
        self.results.metrics = metrics;
    }

    /// The aggregated results.
    #[must_use]
    pub fn finish(mut self) -> ExecutionResults {
        // Positions that never finished (a run that was dropped) leave gaps:
        // what waits is filed in order all the same.
        for (seq, result) in std::mem::take(&mut self.early) {
            self.next = seq;
            self.file(result);
        }
        for (seq, result) in std::mem::take(&mut self.again) {
            self.results.total += 1;
            let (seqs, list) = self.list(result.status);
            let at = seqs.partition_point(|s| *s <= seq);
            seqs.insert(at, seq);
            list.insert(at, result);
        }
        let results = &mut self.results;
        if results.total > 0 {
            results.success_rate = results.succeeded.len() as f64 / results.total as f64;
        }
        self.results
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::task::AgentTask;

    const STATUSES: [TaskStatus; 5] = [
        TaskStatus::Success,
        TaskStatus::Failed,
        TaskStatus::Timeout,
        TaskStatus::Cancelled,
        TaskStatus::Skipped,
    ];

    /// A result told apart by its artifact: `seq.arrival`.
    fn result(seq: u64, arrival: usize, status: TaskStatus) -> TaskResult {
        let task = Arc::new(AgentTask::new("a", format!("{seq}.{arrival}")));
        TaskResult::not_started(task, status, String::new())
    }

    fn names(list: &[TaskResult]) -> Vec<&str> {
        list.iter().map(|r| r.task.artifact.as_str()).collect()
    }

    proptest! {
        /// Whatever order results come in, with positions repeated or
        /// missing, each list holds them by input position, then in the
        /// order they came: what sorting them all at the end gave.
        #[test]
        fn lists_are_in_input_order(
            arrivals in proptest::collection::vec((0u64..24, 0usize..5), 0..60),
        ) {
            let mut collector = ResultsCollector::new();
            let mut expected: Vec<(u64, usize, TaskStatus)> = Vec::new();
            for (arrival, &(seq, status)) in arrivals.iter().enumerate() {
                let status = STATUSES[status];
                collector.take(seq, result(seq, arrival, status));
                expected.push((seq, arrival, status));
            }
            expected.sort_by_key(|&(seq, arrival, _)| (seq, arrival));
            let results = collector.finish();
            let wanted = |keep: fn(TaskStatus) -> bool| -> Vec<String> {
                expected
                    .iter()
                    .filter(|(.., status)| keep(*status))
                    .map(|(seq, arrival, _)| format!("{seq}.{arrival}"))
                    .collect()
            };
            prop_assert_eq!(results.total, arrivals.len());
            prop_assert_eq!(names(&results.succeeded), wanted(|s| s == TaskStatus::Success));
            prop_assert_eq!(
                names(&results.failed),
                wanted(|s| matches!(s, TaskStatus::Failed | TaskStatus::Timeout))
            );
            prop_assert_eq!(names(&results.cancelled), wanted(|s| s == TaskStatus::Cancelled));
            prop_assert_eq!(names(&results.skipped), wanted(|s| s == TaskStatus::Skipped));
        }
    }

    /// In-order and late results are filed as they come: only those that
    /// finished before an earlier task wait.
    #[test]
    fn results_wait_only_for_an_earlier_task() {
        let mut collector = ResultsCollector::new();
        collector.take(0, result(0, 0, TaskStatus::Success));
        collector.take(2, result(2, 1, TaskStatus::Failed));
        collector.take(3, result(3, 2, TaskStatus::Success));
        assert_eq!((collector.results.total, collector.early.len()), (1, 2));
        collector.take(1, result(1, 3, TaskStatus::Success));
        assert_eq!((collector.results.total, collector.early.len()), (4, 0));
        let results = collector.finish();
        assert_eq!(names(&results.succeeded), ["0.0", "1.3", "3.2"]);
        assert_eq!(names(&results.failed), ["2.1"]);
        assert!((results.success_rate - 0.75).abs() < 1e-9);
    }
}
