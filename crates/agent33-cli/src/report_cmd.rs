//! `agent-33 report RUN.json`: renders the timeline, JUnit XML, a Chrome
//! trace or the summary from a saved `run --report` file, with the same
//! reporters a live run uses (the saved events are replayed into them).

use std::io;

use agent33_cli::args::ReportArgs;
use agent33_report::{
    JunitReporter, ReportError, Reporters, SavedReport, SummaryOptions, SummaryReporter,
    TimingsReporter, TraceReporter,
};

use crate::exit;
use crate::failure::Failure;

/// Runs `agent-33 report` and returns the exit code: 0 when every requested
/// file was written, 1 when one could not be, 2 for a usage error.
pub fn main(args: &ReportArgs) -> u8 {
    let saved = match SavedReport::from_path(&args.run_json) {
        Ok(saved) => saved,
        Err(e) => return exit::fail(&e.into()),
    };
    let reporters = match reporters(args) {
        Ok(r) => r,
        Err(e) => return exit::fail(&Failure::ReportSetup(e)),
    };
    let mut reporters = reporters;
    let mut errors = saved.replay(&mut reporters);
    errors.extend(reporters.finish());
    let mut code = exit::SUCCESS;
    for e in errors {
        if !e.is_broken_pipe() {
            code = code.max(exit::fail(&Failure::ReportWrite(e)));
        }
    }
    code
}

fn reporters(args: &ReportArgs) -> Result<Reporters, ReportError> {
    let mut reporters = Reporters::new();
    if let Some(path) = &args.timings {
        reporters.push(Box::new(TimingsReporter::create(path)?));
    }
    if let Some(path) = &args.junit {
        reporters.push(Box::new(JunitReporter::create(path)?));
    }
    if let Some(path) = &args.trace {
        reporters.push(Box::new(TraceReporter::create(path)?));
    }
    let nothing_asked = args.timings.is_none() && args.junit.is_none() && args.trace.is_none();
    if args.summary || nothing_asked {
        let summary = SummaryOptions {
            details: true,
            ..SummaryOptions::default()
        };
        reporters.push(Box::new(SummaryReporter::new(
            Box::new(io::stderr()),
            summary,
        )));
    }
    Ok(reporters)
}
