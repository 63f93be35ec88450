//! Exit codes of `agent-33`, stable and documented (PRODUCT.md, The CLI).

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
