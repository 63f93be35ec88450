//! Reporter tests: hand-made event sequences with fixed times and durations,
//! fed to each reporter; text outputs are compared exactly or snapshotted
//! with insta. Fixed timestamps (2026-01-01T00:00:00Z onwards) make every
//! output deterministic, so nothing needs redacting.

mod browser;
mod engine;
mod fanout;
mod fixtures;
mod json;
mod json_spill;
mod junit;
mod notice;
mod output;
mod progress;
mod replay;
mod summary;
mod targets;
mod timeline;
mod timings;
mod trace;
