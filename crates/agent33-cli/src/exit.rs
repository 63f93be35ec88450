//! Exit codes of `agent-33`, stable and documented (PRODUCT.md, The CLI):
//! the one place that decides them, from a run's [`Outcome`] or from a
//! [`Failure`].

use crate::failure::Failure;

/// Every task succeeded (also: no tasks), or a dry run found a valid plan.
pub const SUCCESS: u8 = 0;
/// At least one task did not succeed, or the run stopped before it read
/// all its input.
pub const TASK_FAILED: u8 = 1;
/// Usage or manifest error: nothing ran.
pub const USAGE: u8 = 2;

/// How a run ended, as far as the exit code cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every task succeeded.
    AllSucceeded,
    /// Some task failed, timed out, was cancelled or skipped, or the run
    /// stopped before it read all its input.
    SomeDidNotSucceed,
    /// A signal stopped the run.
    Signalled(Signal),
}

/// A signal that stopped the run, by its number. Every one exits with
/// 128 + its number (130 SIGINT, 143 SIGTERM, 129 SIGHUP, 131 SIGQUIT, 138
/// SIGUSR1…), as a shell reports a process the signal killed, so a caller
/// sees the status it would have seen had agent-33 not handled it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal(pub u8);

/// The exit code for an error that ended `agent-33` before its work (or,
/// for `agent-33 report`, part of it).
pub fn for_error(failure: &Failure) -> u8 {
    match failure {
        Failure::Usage(_)
        | Failure::Settings(_)
        | Failure::Nats(_)
        | Failure::OutputIsFolder { .. }
        | Failure::ResumeWithoutJournal
        | Failure::Journal { .. }
        | Failure::OutputDir { .. }
        | Failure::ReportSetup(_)
        | Failure::Signals(_)
        | Failure::Input(_)
        | Failure::Plan(_)
        | Failure::LoadReport(_)
        | Failure::Endpoint(_) => USAGE,
        // The saved run was read; some file asked for could not be written.
        Failure::ReportWrite(_) => TASK_FAILED,
    }
}

/// Prints the error as `agent-33: error: …` and returns its exit code.
pub fn fail(failure: &Failure) -> u8 {
    failure.print();
    for_error(failure)
}

/// The exit code for an outcome.
pub fn code(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::AllSucceeded => SUCCESS,
        Outcome::SomeDidNotSucceed => TASK_FAILED,
        Outcome::Signalled(Signal(number)) => 128u8.saturating_add(number),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_before_the_run_are_usage_errors_and_unwritten_reports_failures() {
        let io = || std::io::Error::other("x");
        let table = [
            (Failure::ResumeWithoutJournal, 2),
            (Failure::Input("reading artifacts from f: x".to_owned()), 2),
            (
                Failure::Journal {
                    path: "j".into(),
                    source: io(),
                },
                2,
            ),
            (
                Failure::ReportSetup(agent33_report::ReportError::new("r", io())),
                2,
            ),
            (
                Failure::ReportWrite(agent33_report::ReportError::new("r", io())),
                1,
            ),
        ];
        for (failure, want) in table {
            assert_eq!(for_error(&failure), want, "{failure:?}");
        }
    }

    #[test]
    fn outcomes_map_to_the_documented_codes() {
        let table = [
            (Outcome::AllSucceeded, 0),
            (Outcome::SomeDidNotSucceed, 1),
            (Outcome::Signalled(Signal(2)), 130),
            (Outcome::Signalled(Signal(15)), 143),
            (Outcome::Signalled(Signal(1)), 129),
            (Outcome::Signalled(Signal(3)), 131),
            (Outcome::Signalled(Signal(10)), 138),
            (Outcome::Signalled(Signal(30)), 158),
        ];
        for (outcome, want) in table {
            assert_eq!(code(outcome), want, "{outcome:?}");
        }
    }
}
