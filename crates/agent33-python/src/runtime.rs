//! The tokio runtime every run of this process shares.
//!
//! Built on first use and never shut down: runs are driven from Python,
//! which has no place to own a runtime, and command agents' processes and
//! abandoned sync agents' threads may outlive one run.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Runtime};

/// The shared multi-thread runtime.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Builder::new_multi_thread()
            .thread_name("agent33-engine")
            .enable_all()
            .build()
            .expect("the engine's tokio runtime must start: without it nothing runs")
    })
}
