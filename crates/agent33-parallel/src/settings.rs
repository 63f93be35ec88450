//! The settings of a run, validated, and what is wrong with a setting.
//!
//! Plain data: the executor's builder fills them in, the dispatcher reads
//! them. Where a setting comes from (flags, variables, a manifest) is the
//! caller's business.

use std::time::Duration;

/// The settings of a run, validated. See PRODUCT.md's Settings table.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Run tasks in parallel (otherwise one at a time, in dependency order).
    pub parallel: bool,
    /// Most tasks running at once in parallel mode.
    pub parallel_limit: usize,
    /// In parallel mode, honour `depends_on`.
    pub respect_dependencies: bool,
    /// Per-task timeout; `None` = none.
    pub timeout: Option<Duration>,
    /// Never stop for failures.
    pub continue_on_error: bool,
    /// Failures that fire the stop trigger.
    pub max_failures: u32,
    /// At the stop trigger, cancel in-flight tasks (otherwise let them finish).
    pub fail_fast: bool,
    /// Extra attempts for a failed or timed-out task.
    pub retries: u32,
    /// Wait before the first retry; doubles each time.
    pub retry_backoff: Duration,
    /// After cancelling a task, how long it may take before it is dropped.
    pub kill_grace: Duration,
    /// Whole-run deadline; `None` = none.
    pub deadline: Option<Duration>,
    /// Bytes of each output stream kept per task (the tail).
    pub output_limit_bytes: usize,
    /// Forward output live as [`Event::TaskOutput`] events.
    pub stream_output: bool,
    /// Never drop live output: when the consumer is 16 MiB behind, agents
    /// that await [`crate::TaskContext::live_room`] (the command agent
    /// does, before it reads a task's pipes) wait, and so the task's writes
    /// do. Otherwise output beyond that is counted and announced, not sent.
    pub lossless_live_output: bool,
    /// For streamed input: how many tasks may wait (read, not running) at
    /// once. Bounds memory; iterator input is read as far as needed.
    pub lookahead: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            parallel: false,
            parallel_limit: 4,
            respect_dependencies: false,
            timeout: Some(Duration::from_secs(300)),
            continue_on_error: false,
            max_failures: 1,
            fail_fast: true,
            retries: 0,
            retry_backoff: Duration::from_secs(1),
            kill_grace: Duration::from_secs(5),
            deadline: None,
            output_limit_bytes: 1024 * 1024,
            stream_output: false,
            lossless_live_output: false,
            lookahead: 1024,
        }
    }
}

impl Settings {
    /// The effective global limit: 1 unless parallel.
    #[must_use]
    pub fn effective_limit(&self) -> usize {
        if self.parallel {
            self.parallel_limit
        } else {
            1
        }
    }

    /// Whether `depends_on` is honoured: always in sequential mode.
    #[must_use]
    pub fn respects_dependencies(&self) -> bool {
        !self.parallel || self.respect_dependencies
    }

    /// A task's timeout: its own, else its agent's, else the global one.
    /// A task's or agent's `Some(Duration::ZERO)` means "no timeout" and
    /// beats the more general value (PRODUCT.md, Settings: more specific
    /// beats more general).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use agent33_parallel::Settings;
    ///
    /// let s = Settings::default(); // 300 s
    /// let secs = Duration::from_secs;
    /// assert_eq!(s.task_timeout(None, Some(secs(60))), Some(secs(60)));
    /// assert_eq!(s.task_timeout(Some(secs(5)), Some(secs(60))), Some(secs(5)));
    /// assert_eq!(s.task_timeout(Some(Duration::ZERO), None), None);
    /// assert_eq!(s.task_timeout(None, None), Some(secs(300)));
    /// ```
    #[must_use]
    pub fn task_timeout(
        &self,
        task: Option<Duration>,
        agent: Option<Duration>,
    ) -> Option<Duration> {
        match task.or(agent) {
            Some(own) => none_if_zero(own),
            None => self.timeout,
        }
    }
}

/// A setting that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    /// `parallel_limit` must be at least 1.
    #[error("parallel_limit must be at least 1, got {0}")]
    ParallelLimit(usize),
    /// `max_failures` must be at least 1.
    #[error("max_failures must be at least 1, got {0}")]
    MaxFailures(u32),
    /// `continue_on_error(true)` and `max_failures` both given: one says
    /// never stop for failures, the other after how many to stop.
    #[error(
        "continue_on_error and max_failures ({0}) cannot be given together: \
         continue_on_error means never stop for failures, max_failures says after how many \
         to stop; keep one of them"
    )]
    ContinueOnErrorWithMaxFailures(u32),
    /// A number of seconds that is negative, NaN or infinite.
    #[error("{setting} must be a number of seconds ≥ 0, got {value}")]
    Seconds {
        /// The setting's name.
        setting: &'static str,
        /// The rejected value.
        value: f64,
    },
}

/// `timeout_seconds` and `deadline_seconds` take 0 to mean "none".
pub(crate) fn none_if_zero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}
