//! A run of made-up agents with every console reporter wired as the CLI
//! would wire them, to look at the progress bar, the output modes and the
//! summary in a real terminal:
//!
//! ```text
//! cargo run -p agent33-report --example demo -- [grouped|stream|none] [TASKS]
//! ```

use std::io::{self, IsTerminal as _};
use std::time::Duration;

use agent33_parallel::{AgentError, AgentTask, Agents, ParallelExecutor, RunControl, TaskContext};
use agent33_report::{
    NoticeReporter, OutputMode, ProgressReporter, Reporters, SummaryOptions, SummaryReporter,
    TerminalInfo,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode: OutputMode = args.next().as_deref().unwrap_or("grouped").parse()?;
    let n: usize = args.next().as_deref().unwrap_or("40").parse()?;

    let agents = Agents::new().add("demo", |ctx: TaskContext| async move {
        let i: u64 = ctx
            .task()
            .artifact
            .trim_start_matches("item-")
            .parse()
            .unwrap_or(0);
        for line in 0..3 {
            ctx.write_stdout(format!("step {line} of {}\n", ctx.task().artifact).as_bytes());
            tokio::time::sleep(Duration::from_millis(100 + (i * 37) % 400)).await;
        }
        if i % 13 == 5 {
            ctx.write_stderr(b"something went wrong\n");
            return Err(AgentError::new("exit code 1"));
        }
        Ok(())
    });
    let executor = ParallelExecutor::builder()
        .parallel_limit(4)
        .continue_on_error(true)
        .retries(u32::from(n > 20))
        .retry_backoff(Duration::from_millis(200))
        .stream_output(mode.needs_live_output())
        .build()?;
    let tasks: Vec<AgentTask> = (0..n)
        .map(|i| AgentTask::new("demo", format!("item-{i}")))
        .collect();

    // The example is its own edge, so it looks at the console itself (the
    // CLI also honours NO_COLOR and TERM=dumb).
    let (out_tty, err_tty) = (io::stdout().is_terminal(), io::stderr().is_terminal());
    let term = TerminalInfo {
        stdout_is_terminal: out_tty,
        stderr_is_terminal: err_tty,
        stdout_color: out_tty,
        stderr_color: err_tty,
        stderr_redraws: err_tty,
    };
    let progress = ProgressReporter::for_terminal(&term, Box::new(io::stderr()));
    let suspender = progress.suspender();
    let mut reporters = Reporters::new()
        .with(progress)
        .with(NoticeReporter::new(Box::new(io::stderr()), &term).suspender(suspender.clone()));
    for printer in mode.printers(
        Box::new(io::stdout()),
        Box::new(io::stderr()),
        &term,
        &suspender,
    ) {
        reporters.push(printer);
    }
    let mut reporters = reporters.with(SummaryReporter::new(
        Box::new(io::stderr()),
        SummaryOptions {
            details: true,
            ..SummaryOptions::default()
        },
    ));

    let mut events = executor.run(tasks, &agents, RunControl::new());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            event = events.next_event() => match event {
                Some(event) => report(reporters.on_event(&event)),
                None => break,
            },
            _ = tick.tick() => report(reporters.tick()),
        }
    }
    report(reporters.finish());
    Ok(())
}

fn report(errors: Vec<agent33_report::ReportError>) {
    for e in errors {
        if !e.is_broken_pipe() {
            eprintln!("demo: {e}");
        }
    }
}
