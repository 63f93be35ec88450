//! Integration tests of the `agent-33` binary, against PRODUCT.md.
//!
//! One test binary (one link) with a module per topic. Each test works in
//! its own temporary folder, runs the built binary there with a clean
//! `AGENT33_*` environment, and checks exit codes, messages, the
//! `--report` JSON and files the tasks leave behind. Commands are small
//! `sh` scripts or standard tools. Nothing sleeps to synchronise: tests
//! wait for files or printed lines; time bounds are hang detectors only.

mod support;

mod adhoc;
mod environment;
mod failure_policy;
mod gnu_style;
mod injection;
mod llm;
mod modes;
mod ordered_output;
mod output;
mod peers;
mod placeholders;
mod reports;
mod settings;
mod signals;
mod surface;
mod timeouts;
mod usage_errors;
