//! The flags of runs across machines (PRODUCT-distributed.md): `run
//! --nats …` and `agent-33 worker`. Kept apart from `args.rs` so that the
//! local run's flags read on their own.

use std::path::PathBuf;
use std::time::Duration;

/// The server's address, for `run --nats` and `worker --nats` alike.
const NATS_URL_VAR: &str = "AGENT33_NATS_URL";
/// The credentials file, for both.
const NATS_CREDS_VAR: &str = "AGENT33_NATS_CREDS";

/// `run`'s flags for running the tasks on workers.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NatsRunArgs {
    /// Run the tasks on workers through this NATS server (nats://, tls://, user:pass@)
    #[arg(
        long,
        value_name = "URL",
        env = NATS_URL_VAR,
        help_heading = "Across machines"
    )]
    pub nats: Option<String>,

    /// NATS credentials file (JWT + nkey)
    #[arg(
        long,
        value_name = "FILE",
        env = NATS_CREDS_VAR,
        help_heading = "Across machines"
    )]
    pub nats_creds: Option<PathBuf>,

    /// Seconds a silent worker keeps a task before it is redelivered, for every worker [default: 30, or a worker's own shorter --lease]
    #[arg(long, value_name = "S", value_parser = parse_lease, help_heading = "Across machines")]
    pub lease: Option<Duration>,
}

/// `agent-33 worker --nats URL [--slots N] [-f PATH] [--id NAME] [--lease S] [--allow-adhoc]`.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// The NATS server to take tasks from (nats://, tls://, user:pass@)
    #[arg(long, value_name = "URL", env = NATS_URL_VAR)]
    pub nats: String,

    /// NATS credentials file (JWT + nkey)
    #[arg(long, value_name = "FILE", env = NATS_CREDS_VAR)]
    pub nats_creds: Option<PathBuf>,

    /// Tasks this worker runs at once [default: the number of CPUs]
    #[arg(long, value_name = "N", env = "AGENT33_WORKER_SLOTS", value_parser = clap::value_parser!(u32).range(1..))]
    pub slots: Option<u32>,

    /// The manifest agents are resolved from [default: agent33.yaml]
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,

    /// The worker's name in reports [default: host:pid]
    #[arg(long, value_name = "NAME")]
    pub id: Option<String>,

    /// Seconds this worker may be silent before its tasks are run elsewhere, when the run gives no --lease (at most the run's 30; a run's --lease decides instead) [default: 30]
    #[arg(long, value_name = "S", value_parser = parse_lease)]
    pub lease: Option<Duration>,

    /// Also take ad-hoc `--command` runs (their template travels with the run)
    #[arg(long)]
    pub allow_adhoc: bool,
}

/// A lease in seconds (`30`, `2.5`, `2s`), above zero.
fn parse_lease(text: &str) -> Result<Duration, String> {
    let number = text.strip_suffix('s').unwrap_or(text);
    match number.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => Ok(Duration::from_secs_f64(secs)),
        _ => Err(format!("`{text}` is not a number of seconds above 0")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_positive_seconds() {
        assert_eq!(parse_lease("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_lease("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_lease("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["0", "-1", "x", "", "inf"] {
            assert!(parse_lease(bad).is_err(), "{bad}");
        }
    }
}
