//! The AGENT-33 metrics catalog figures of a run, in its JSON export shape.
//!
//! Samples are kept as `f32` milliseconds (4 bytes a task) so the quantiles
//! are exact without holding whole results.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// count / sum / min / max / avg / p50 / p95 of a series of milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TimerSummary {
    /// Number of samples.
    pub count: u64,
    /// Sum of the samples.
    pub sum: f64,
    /// Smallest sample (0 without samples).
    pub min: f64,
    /// Largest sample (0 without samples).
    pub max: f64,
    /// Mean (0 without samples).
    pub avg: f64,
    /// Median, nearest rank.
    pub p50: f64,
    /// 95th percentile, nearest rank.
    pub p95: f64,
}

/// Collects samples for a [`TimerSummary`].
#[derive(Clone, Debug, Default)]
pub struct Timer {
    samples: Vec<f32>,
    sum: f64,
}

impl Timer {
    /// Adds one sample in milliseconds.
    pub fn record(&mut self, ms: f64) {
        self.samples.push(ms as f32);
        self.sum += ms;
    }

    /// The summary of the samples so far.
    #[must_use]
    pub fn summary(&self) -> TimerSummary {
        if self.samples.is_empty() {
            return TimerSummary::default();
        }
        let mut sorted = self.samples.clone();
        sorted.sort_unstable_by(f32::total_cmp);
        let n = sorted.len();
        let rank = |p: f64| -> f64 {
            let k = ((p * n as f64).ceil() as usize).clamp(1, n);
            round3(f64::from(sorted[k - 1]))
        };
        TimerSummary {
            count: n as u64,
            sum: round3(self.sum),
            min: round3(f64::from(sorted[0])),
            max: round3(f64::from(sorted[n - 1])),
            avg: round3(self.sum / n as f64),
            p50: rank(0.50),
            p95: rank(0.95),
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The metrics of one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// `tasks_total`, `tasks_succeeded`, `tasks_failed`, `tasks_timeout`,
    /// `tasks_cancelled`, `tasks_skipped`, `task_retry_count`.
    pub counters: BTreeMap<String, u64>,
    /// `parallel_limit`, `parallel_peak`, `parallel_utilization`.
    pub gauges: BTreeMap<String, f64>,
    /// `execution_duration_ms`, `task_duration_ms`, `semaphore_wait_ms`.
    pub timers: BTreeMap<String, TimerSummary>,
}

impl Metrics {
    /// A counter's value (0 when absent).
    #[must_use]
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// A gauge's value (0 when absent).
    #[must_use]
    pub fn gauge(&self, name: &str) -> f64 {
        self.gauges.get(name).copied().unwrap_or(0.0)
    }

    /// A timer's summary (empty when absent).
    #[must_use]
    pub fn timer(&self, name: &str) -> TimerSummary {
        self.timers.get(name).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let mut t = Timer::default();
        for ms in 1..=20 {
            t.record(f64::from(ms));
        }
        let s = t.summary();
        assert_eq!(s.count, 20);
        assert_eq!(s.sum, 210.0);
        assert_eq!((s.min, s.max, s.avg), (1.0, 20.0, 10.5));
        assert_eq!((s.p50, s.p95), (10.0, 19.0));
    }

    #[test]
    fn empty_timer_is_all_zero() {
        assert_eq!(Timer::default().summary(), TimerSummary::default());
    }
}
