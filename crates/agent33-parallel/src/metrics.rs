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
///
/// The first [`Timer::EXACT_SAMPLES`] samples are kept as they are, so
/// quantiles are exact for ordinary runs; past that the timer folds them
/// into logarithmic buckets (relative error under 0.5 %), so a run of
/// millions of tasks keeps a timer in constant memory.
#[derive(Clone, Debug, Default)]
pub struct Timer {
    samples: Vec<f32>,
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

/// Buckets below 1 ms are 0.01 ms wide; above, each is 1 % wider than the last.
const LINEAR_BUCKETS: usize = 100;
const GROWTH: f64 = 1.01;

fn bucket_of(ms: f64) -> usize {
    if ms < 1.0 {
        (ms.max(0.0) * 100.0) as usize
    } else {
        LINEAR_BUCKETS + (ms.ln() / GROWTH.ln()) as usize
    }
}

fn bucket_value(b: usize) -> f64 {
    if b < LINEAR_BUCKETS {
        (b as f64 + 0.5) / 100.0
    } else {
        let k = (b - LINEAR_BUCKETS) as f64;
        // Geometric middle of [GROWTH^k, GROWTH^(k+1)).
        GROWTH.powf(k + 0.5)
    }
}

impl Timer {
    /// Samples kept exactly before the timer switches to buckets.
    /// Small enough that a long run's peak memory barely differs from a
    /// short one's (16 KiB per timer), large enough for exact figures in
    /// any run a person reads task by task.
    pub const EXACT_SAMPLES: usize = 1 << 12;

    /// Adds one sample in milliseconds.
    pub fn record(&mut self, ms: f64) {
        // Plain comparisons: samples are durations, never NaN, and this
        // runs twice per task.
        if self.count == 0 || ms < self.min {
            self.min = ms;
        }
        if self.count == 0 || ms > self.max {
            self.max = ms;
        }
        self.count += 1;
        self.sum += ms;
        if self.buckets.is_empty() && self.samples.len() < Self::EXACT_SAMPLES {
            self.samples.push(ms as f32);
            return;
        }
        for s in std::mem::take(&mut self.samples) {
            self.add_to_bucket(f64::from(s));
        }
        self.add_to_bucket(ms);
    }

    fn add_to_bucket(&mut self, ms: f64) {
        let b = bucket_of(ms);
        if self.buckets.len() <= b {
            self.buckets.resize(b + 1, 0);
        }
        self.buckets[b] += 1;
    }

    /// The summary of the samples so far.
    #[must_use]
    pub fn summary(&self) -> TimerSummary {
        if self.count == 0 {
            return TimerSummary::default();
        }
        let n = self.count;
        let rank = |p: f64| ((p * n as f64).ceil() as u64).clamp(1, n);
        let (p50, p95) = if self.buckets.is_empty() {
            // Nearest-rank quantiles by selection, not a full sort; the
            // 95th is at or past the median, so the second look is at the
            // upper part only.
            let mut scratch = self.samples.clone();
            let k50 = (rank(0.50) - 1) as usize;
            let k95 = (rank(0.95) - 1) as usize;
            let (_, p50, upper) = scratch.select_nth_unstable_by(k50, f32::total_cmp);
            let p50 = *p50;
            let p95 = match k95 - k50 {
                0 => p50,
                k => *upper.select_nth_unstable_by(k - 1, f32::total_cmp).1,
            };
            (f64::from(p50), f64::from(p95))
        } else {
            let quantile = |p: f64| -> f64 {
                let mut seen = 0;
                for (b, &c) in self.buckets.iter().enumerate() {
                    seen += c;
                    if seen >= rank(p) {
                        return bucket_value(b).clamp(self.min, self.max);
                    }
                }
                self.max
            };
            (quantile(0.50), quantile(0.95))
        };
        TimerSummary {
            count: n,
            sum: round3(self.sum),
            min: round3(self.min),
            max: round3(self.max),
            avg: round3(self.sum / n as f64),
            p50: round3(p50),
            p95: round3(p95),
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Writes whole values without a fraction (`"parallel_limit": 4`, as the
/// catalog shows it, not `4.0`): a reader that takes counts as integers
/// accepts them, and one that takes floats still does. A fraction stays a
/// float even when it is whole (`"parallel_utilization": 0.0`), so that
/// its type does not depend on the run.
fn whole_numbers_bare<S: serde::Serializer>(
    gauges: &BTreeMap<String, f64>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap as _;
    // Beyond 2^53 an f64 no longer holds every integer.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    let mut map = s.serialize_map(Some(gauges.len()))?;
    for (name, &value) in gauges {
        let fraction = name == "parallel_utilization";
        if !fraction && value.fract() == 0.0 && value.abs() <= EXACT {
            map.serialize_entry(name, &(value as i64))?;
        } else {
            map.serialize_entry(name, &value)?;
        }
    }
    map.end()
}

/// The metrics of one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "MetricsWire", into = "MetricsWire")]
pub struct Metrics {
    /// `tasks_total`, `tasks_succeeded`, `tasks_failed`, `tasks_timeout`,
    /// `tasks_cancelled`, `tasks_skipped`, `task_retry_count`.
    pub counters: BTreeMap<String, u64>,
    /// Counters of amounts rather than events, which only ever grow but
    /// need not be whole (`llm_cost_usd`, in dollars). Written among the
    /// `counters`, as a number with a fraction.
    pub amounts: BTreeMap<String, f64>,
    /// `parallel_limit`, `parallel_peak`, `parallel_utilization`.
    pub gauges: BTreeMap<String, f64>,
    /// `execution_duration_ms`, `task_duration_ms`, `semaphore_wait_ms`.
    pub timers: BTreeMap<String, TimerSummary>,
}

/// A counter as written: a count, or an amount with a fraction.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Count {
    Whole(u64),
    Amount(f64),
}

/// [`Metrics`] as written: one `counters` object for counts and amounts.
#[derive(Serialize, Deserialize)]
struct MetricsWire {
    counters: BTreeMap<String, Count>,
    #[serde(serialize_with = "whole_numbers_bare")]
    gauges: BTreeMap<String, f64>,
    timers: BTreeMap<String, TimerSummary>,
}

impl From<Metrics> for MetricsWire {
    fn from(m: Metrics) -> Self {
        let counts = m.counters.into_iter().map(|(k, v)| (k, Count::Whole(v)));
        let amounts = m.amounts.into_iter().map(|(k, v)| (k, Count::Amount(v)));
        Self {
            counters: counts.chain(amounts).collect(),
            gauges: m.gauges,
            timers: m.timers,
        }
    }
}

impl From<MetricsWire> for Metrics {
    fn from(w: MetricsWire) -> Self {
        let mut m = Metrics {
            gauges: w.gauges,
            timers: w.timers,
            ..Metrics::default()
        };
        for (name, count) in w.counters {
            match count {
                Count::Whole(n) => {
                    m.counters.insert(name, n);
                }
                Count::Amount(x) => {
                    m.amounts.insert(name, x);
                }
            }
        }
        m
    }
}

impl Metrics {
    /// A counter's value (0 when absent).
    #[must_use]
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// An amount counter's value (0 when absent).
    #[must_use]
    pub fn amount(&self, name: &str) -> f64 {
        self.amounts.get(name).copied().unwrap_or(0.0)
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
    fn counts_are_written_as_integers_and_the_utilization_as_a_float() {
        for (utilization, written) in [(0.0, "0.0"), (1.0, "1.0"), (0.78, "0.78")] {
            let metrics = Metrics {
                gauges: BTreeMap::from([
                    ("parallel_limit".to_owned(), 4.0),
                    ("parallel_peak".to_owned(), 0.0),
                    ("parallel_utilization".to_owned(), utilization),
                ]),
                ..Metrics::default()
            };
            let json = serde_json::to_string(&metrics).expect("serialises");
            let want = format!(
                r#""gauges":{{"parallel_limit":4,"parallel_peak":0,"parallel_utilization":{written}}}"#
            );
            assert!(json.contains(&want), "{json}");
        }
    }

    #[test]
    fn amounts_are_written_among_the_counters_and_read_back() {
        let metrics = Metrics {
            counters: BTreeMap::from([("llm_requests".to_owned(), 3)]),
            amounts: BTreeMap::from([
                ("llm_cost_usd".to_owned(), 1.27),
                ("whole_dollars".to_owned(), 2.0),
            ]),
            ..Metrics::default()
        };
        let json = serde_json::to_string(&metrics).expect("serialises");
        assert!(
            json.contains(
                r#""counters":{"llm_cost_usd":1.27,"llm_requests":3,"whole_dollars":2.0}"#
            ),
            "{json}"
        );
        let back: Metrics = serde_json::from_str(&json).expect("reads back");
        assert_eq!(back, metrics);
    }

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
    fn many_samples_fold_into_buckets_with_small_error() {
        let mut t = Timer::default();
        let n = 1_000_000u32;
        for i in 1..=n {
            t.record(f64::from(i) / 1000.0);
        }
        assert!(t.samples.is_empty() && !t.buckets.is_empty());
        let s = t.summary();
        assert_eq!(s.count, u64::from(n));
        assert_eq!((s.min, s.max), (0.001, 1000.0));
        assert!((s.p50 - 500.0).abs() / 500.0 < 0.005, "{}", s.p50);
        assert!((s.p95 - 950.0).abs() / 950.0 < 0.005, "{}", s.p95);
        assert!(t.buckets.len() < 1000);
    }

    #[test]
    fn empty_timer_is_all_zero() {
        assert_eq!(Timer::default().summary(), TimerSummary::default());
    }
}
