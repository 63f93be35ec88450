//! Exit codes of `agent-33`, stable and documented (PRODUCT.md, The CLI).

/// Every task succeeded (also: no tasks), or a dry run found a valid plan.
pub const SUCCESS: u8 = 0;
/// At least one task did not succeed.
pub const TASK_FAILED: u8 = 1;
/// Usage or manifest error: nothing ran.
pub const USAGE: u8 = 2;
/// Interrupted by SIGINT (128 + 2).
pub const INTERRUPTED: u8 = 130;
/// Stopped by SIGTERM (128 + 15).
pub const TERMINATED: u8 = 143;
/// Stopped by SIGHUP (128 + 1): the terminal or the ssh session went away.
pub const HUNG_UP: u8 = 129;
/// Stopped by SIGQUIT (128 + 3, Ctrl-\\): every task killed at once.
pub const QUIT: u8 = 131;

/// How a run ended, as far as the exit code cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every task succeeded.
    AllSucceeded,
    /// Some task failed, timed out, was cancelled or skipped.
    SomeDidNotSucceed,
    /// A signal stopped the run.
    Signalled(Signal),
}

/// The signals that stop a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// SIGHUP.
    Hangup,
    /// SIGQUIT.
    Quit,
}

/// The exit code for an outcome.
pub fn code(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::AllSucceeded => SUCCESS,
        Outcome::SomeDidNotSucceed => TASK_FAILED,
        Outcome::Signalled(Signal::Interrupt) => INTERRUPTED,
        Outcome::Signalled(Signal::Terminate) => TERMINATED,
        Outcome::Signalled(Signal::Hangup) => HUNG_UP,
        Outcome::Signalled(Signal::Quit) => QUIT,
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
            (Outcome::Signalled(Signal::Interrupt), 130),
            (Outcome::Signalled(Signal::Terminate), 143),
            (Outcome::Signalled(Signal::Hangup), 129),
            (Outcome::Signalled(Signal::Quit), 131),
        ];
        for (outcome, want) in table {
            assert_eq!(code(outcome), want, "{outcome:?}");
        }
    }
}
