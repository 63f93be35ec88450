//! Why a run stops early, and what interrupted it: ordered by severity so
//! the most severe cause is the one a run reports.

use serde::{Deserialize, Serialize};

use crate::task::TaskId;

/// What interrupted a run, as the caller names it: the CLI names the
/// signal (`terminated`, `SIGTERM`); a library caller may name anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interrupt {
    /// What happened, in a word or two: `interrupted`, `terminated`, `hangup`.
    pub what: String,
    /// The signal's name, if a signal did it: `SIGINT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
}

impl Interrupt {
    /// An interrupt without a signal.
    #[must_use]
    pub fn new(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            signal: None,
        }
    }

    /// An interrupt by a signal: `Interrupt::signal("terminated", "SIGTERM")`.
    #[must_use]
    pub fn signal(what: impl Into<String>, signal: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            signal: Some(signal.into()),
        }
    }
}

impl Default for Interrupt {
    fn default() -> Self {
        Self::new("interrupted")
    }
}

impl std::fmt::Display for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)?;
        match &self.signal {
            Some(signal) => write!(f, " ({signal})"),
            None => Ok(()),
        }
    }
}

/// Why a run stopped early. Ordered by severity: a later, more severe reason
/// replaces an earlier one (a second interrupt beats fail-fast).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StopReason {
    /// The first failure fired the stop trigger (`max_failures` 1) and
    /// in-flight tasks are cancelled (`fail_fast`).
    FailFast {
        /// The task whose failure fired the stop trigger.
        task: TaskId,
        /// `failed` or `timed out`.
        how: String,
    },
    /// The first failure fired the stop trigger (`max_failures` 1) and
    /// in-flight tasks run to their end (`fail_fast: false`).
    StoppedStarting {
        /// The task whose failure fired the stop trigger.
        task: TaskId,
        /// `failed` or `timed out`.
        how: String,
    },
    /// The failure count reached `max_failures` (more than 1).
    MaxFailures {
        /// The limit that was reached.
        count: u32,
        /// The task whose failure reached it.
        task: TaskId,
        /// `failed` or `timed out`.
        how: String,
    },
    /// The run deadline passed.
    Deadline {
        /// The deadline in seconds.
        seconds: f64,
    },
    /// The run was interrupted (SIGINT, SIGTERM, …, or the caller's control).
    Interrupted {
        /// What interrupted it.
        #[serde(default)]
        by: Interrupt,
    },
    /// The run was interrupted again, or killed at once (SIGQUIT): tasks
    /// are dropped without grace.
    Killed {
        /// What killed the tasks.
        #[serde(default)]
        by: Interrupt,
        /// The interrupt that had stopped the run before, if one had.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<Interrupt>,
    },
}

impl StopReason {
    /// Whether in-flight tasks are cancelled (rather than drained) for this
    /// reason, given the run's `fail_fast` setting.
    #[must_use]
    pub fn cancels_in_flight(&self, fail_fast: bool) -> bool {
        match self {
            Self::FailFast { .. } => true,
            Self::StoppedStarting { .. } => false,
            Self::MaxFailures { .. } => fail_fast,
            Self::Deadline { .. } | Self::Interrupted { .. } | Self::Killed { .. } => true,
        }
    }

    /// The task whose failure stopped the run, if one did.
    #[must_use]
    pub fn failed_task(&self) -> Option<&TaskId> {
        match self {
            Self::FailFast { task, .. }
            | Self::StoppedStarting { task, .. }
            | Self::MaxFailures { task, .. } => Some(task),
            Self::Deadline { .. } | Self::Interrupted { .. } | Self::Killed { .. } => None,
        }
    }

    /// How severe the reason is: failures 0, the run deadline 1, an
    /// interrupt 2, a kill 3.
    #[must_use]
    pub fn severity(&self) -> u8 {
        match self {
            Self::FailFast { .. } | Self::StoppedStarting { .. } | Self::MaxFailures { .. } => 0,
            Self::Deadline { .. } => 1,
            Self::Interrupted { .. } => 2,
            Self::Killed { .. } => 3,
        }
    }

    /// Whether `self` should replace `current`.
    #[must_use]
    pub fn outranks(&self, current: &Self) -> bool {
        self.severity() > current.severity()
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::FailFast { task, how } => write!(f, "fail-fast after {task} {how}"),
            Self::StoppedStarting { task, how } => {
                write!(f, "stopped starting tasks after {task} {how}")
            }
            Self::MaxFailures { count, .. } => write!(f, "max failures ({count}) reached"),
            Self::Deadline { seconds } => write!(f, "run deadline ({seconds}s) passed"),
            Self::Interrupted { by } => write!(f, "{by}"),
            Self::Killed { by, after } => {
                match after {
                    Some(first) if first == by => {
                        f.write_str(&first.what)?;
                        f.write_str(" twice")?;
                        if let Some(signal) = &first.signal {
                            write!(f, " ({signal})")?;
                        }
                    }
                    Some(first) => write!(f, "{first}, then {by}")?,
                    None => write!(f, "{by}")?,
                }
                f.write_str(": tasks killed")
            }
        }
    }
}
