//! Task output on the console: grouped blocks and streamed lines.

use agent33_parallel::TaskStatus;
use agent33_parallel::{Event, Stream};
use agent33_report::{
    BarePrinter, GroupedPrinter, MAX_PARTIAL_LINE, OutputMode, PrinterOptions, Reporter as _,
    Reporters, StreamPrinter, Suspender, TerminalInfo,
};

use crate::fixtures::{Outcome, RunBuilder, SharedBuf};

fn feed(mode: OutputMode, events: &[Event], term: &TerminalInfo) -> (String, String) {
    text(feed_bytes(events, |out, err| {
        mode.printers(out, err, term, &Suspender::none())
    }))
}

/// What `mode` prints of a run with these options (`-k`, `-q`).
fn feed_with(mode: OutputMode, options: PrinterOptions, events: &[Event]) -> (Vec<u8>, Vec<u8>) {
    feed_bytes(events, |out, err| {
        mode.printers_with(
            out,
            err,
            &TerminalInfo::plain(),
            &Suspender::none(),
            options,
        )
    })
}

fn keep_order() -> PrinterOptions {
    PrinterOptions::default().keep_order(true)
}

/// What `-q` prints of a run in `mode`.
fn feed_quiet(mode: OutputMode, events: &[Event]) -> (String, String) {
    text(feed_bytes(events, |out, err| {
        mode.quiet_printers(out, err, &TerminalInfo::plain(), &Suspender::none())
    }))
}

/// Output as text, as a terminal would show it.
fn text((out, err): (Vec<u8>, Vec<u8>)) -> (String, String) {
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// What the printers made write, to stdout and stderr, of a run's events.
fn feed_bytes(
    events: &[Event],
    printers: impl FnOnce(
        Box<dyn std::io::Write + Send>,
        Box<dyn std::io::Write + Send>,
    ) -> Vec<Box<dyn agent33_report::Reporter>>,
) -> (Vec<u8>, Vec<u8>) {
    let (out, err) = (SharedBuf::default(), SharedBuf::default());
    let mut reporters = Reporters::new();
    for p in printers(out.boxed(), err.boxed()) {
        reporters.push(p);
    }
    for e in events {
        assert!(reporters.on_event(e).is_empty());
    }
    assert!(reporters.finish().is_empty());
    (out.bytes(), err.bytes())
}

/// Three tasks whose live output interleaves; they finish out of order.
fn interleaved_run() -> Vec<Event> {
    let mut run = RunBuilder::start(Some(3), 3);
    run.queue(0, "command", "alpha");
    run.queue(1, "command", "beta");
    run.queue(2, "command", "gamma");
    for seq in 0..3 {
        run.start_task(seq, seq as usize, 0, 0);
    }
    run.output(0, Stream::Stdout, b"al");
    run.output(1, Stream::Stdout, b"beta 1\nbe");
    run.output(0, Stream::Stdout, b"pha 1\nalpha 2\n");
    run.output(2, Stream::Stderr, b"gamma warns\n");
    run.output(1, Stream::Stdout, b"ta 2\n");
    run.output(2, Stream::Stdout, b"gamma 1\ngamma no newline");
    run.finish_task(
        2,
        2,
        80,
        Outcome::failed(4).output("gamma 1\ngamma no newline", "gamma warns\n"),
    );
    run.finish_task(
        0,
        0,
        1_200,
        Outcome::success().output("alpha 1\nalpha 2\n", ""),
    );
    run.finish_task(
        1,
        1,
        2_345,
        Outcome::success().output("beta 1\nbeta 2\n", ""),
    );
    run.finish(2_400, 3, 0.5, None)
}

#[test]
fn grouped_prints_whole_blocks_in_finish_order() {
    let (out, err) = feed(
        OutputMode::Grouped,
        &interleaved_run(),
        &TerminalInfo::plain(),
    );
    assert_eq!(
        out,
        "\
── command:gamma (exit code 4, 0.080s) ──
gamma 1
gamma no newline
── command:alpha (ok, 1.2s) ──
alpha 1
alpha 2
── command:beta (ok, 2.3s) ──
beta 1
beta 2
"
    );
    assert_eq!(
        err,
        "── command:gamma [stderr] (exit code 4, 0.080s) ──\ngamma warns\n"
    );
}

/// `-q`: successes say nothing; the failure's output is printed as usual.
#[test]
fn quiet_grouped_prints_only_what_did_not_succeed() {
    let (out, err) = feed_quiet(OutputMode::Grouped, &interleaved_run());
    assert_eq!(
        out,
        "── command:gamma (exit code 4, 0.080s) ──\ngamma 1\ngamma no newline\n"
    );
    assert_eq!(
        err,
        "── command:gamma [stderr] (exit code 4, 0.080s) ──\ngamma warns\n"
    );
}

/// `-q` with `--output stream`: no line is printed live (whether its task
/// fails is not known yet); a task that did not succeed has its captured
/// output printed, prefixed, when it ends.
#[test]
fn quiet_stream_prints_failures_output_when_they_end() {
    let events = interleaved_run();
    let (out, err) = feed_quiet(OutputMode::Stream, &events);
    assert_eq!(
        out,
        "[command:gamma] gamma 1\n[command:gamma] gamma no newline\n"
    );
    assert_eq!(err, "[command:gamma] gamma warns\n");
    // Nothing comes out before the failure ends.
    let gamma_ends = events
        .iter()
        .position(|e| matches!(e, Event::TaskFinished { seq: 2, .. }))
        .unwrap();
    let (out, err) = feed_quiet(OutputMode::Stream, &events[..gamma_ends]);
    assert_eq!((out.as_str(), err.as_str()), ("", ""));
}

#[test]
fn quiet_none_prints_nothing() {
    assert_eq!(
        feed_quiet(OutputMode::None, &interleaved_run()),
        (String::new(), String::new())
    );
}

/// Many tasks with multi-line output finishing in a scrambled order: every
/// block holds exactly its own task's output, contiguous.
#[test]
fn grouped_never_interleaves() {
    let n = 50u64;
    let mut run = RunBuilder::start(Some(n as usize), 8);
    for seq in 0..n {
        run.queue(seq, "agent", &format!("t{seq}"));
        run.start_task(seq, 0, 0, 0);
    }
    for seq in 0..n {
        for line in 0..3 {
            run.output(
                seq,
                Stream::Stdout,
                format!("t{seq} line {line}\n").as_bytes(),
            );
        }
    }
    let order: Vec<u64> = (0..n).map(|i| (i * 17) % n).collect();
    for &seq in &order {
        let text: String = (0..3).map(|l| format!("t{seq} line {l}\n")).collect();
        run.finish_task(seq, 0, 10 + seq, Outcome::success().output(&text, ""));
    }
    let (out, _) = feed(
        OutputMode::Grouped,
        &run.finish(100, 8, 0.9, None),
        &TerminalInfo::plain(),
    );
    let blocks: Vec<&str> = out.split("── ").skip(1).collect();
    assert_eq!(blocks.len(), n as usize);
    for (block, &seq) in blocks.iter().zip(&order) {
        let mut lines = block.lines();
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with(&format!("agent:t{seq} (ok, "))
        );
        let body: Vec<&str> = lines.collect();
        let expected: Vec<String> = (0..3).map(|l| format!("t{seq} line {l}")).collect();
        assert_eq!(body, expected, "block of t{seq}");
    }
}

#[test]
fn grouped_headers_are_coloured_only_on_a_terminal() {
    let events = interleaved_run();
    let (out, _) = feed(OutputMode::Grouped, &events, &TerminalInfo::terminal());
    assert!(
        out.starts_with("\x1b[1;31m── command:gamma (exit code 4, 0.080s) ──\x1b[0m\n"),
        "{out:?}"
    );
    let no_color = TerminalInfo {
        stdout_color: false,
        stderr_color: false,
        ..TerminalInfo::terminal()
    };
    let (out, _) = feed(OutputMode::Grouped, &events, &no_color);
    assert!(!out.contains('\x1b'), "{out:?}");
}

#[test]
fn stream_prefixes_lines_and_buffers_partial_ones() {
    let (out, err) = feed(
        OutputMode::Stream,
        &interleaved_run(),
        &TerminalInfo::plain(),
    );
    assert_eq!(
        out,
        "\
[command:beta] beta 1
[command:alpha] alpha 1
[command:alpha] alpha 2
[command:beta] beta 2
[command:gamma] gamma 1
[command:gamma] gamma no newline
"
    );
    assert_eq!(err, "[command:gamma] gamma warns\n");
}

#[test]
fn stream_writes_each_line_as_soon_as_it_is_complete() {
    let out = SharedBuf::default();
    let mut printer = StreamPrinter::new(Stream::Stdout, out.boxed(), false);
    let mut run = RunBuilder::start(None, 2);
    run.queue(0, "c", "a");
    run.start_task(0, 0, 0, 0);
    let events = run.events.clone();
    use agent33_report::Reporter as _;
    for e in &events {
        printer.on_event(e).unwrap();
    }
    let chunk = |bytes: &[u8]| Event::TaskOutput {
        seq: 0,
        id: "c:a".into(),
        stream: Stream::Stdout,
        bytes: bytes.to_vec(),
    };
    printer.on_event(&chunk(b"one")).unwrap();
    assert_eq!(out.text(), "");
    printer.on_event(&chunk(b" two\nthr")).unwrap();
    assert_eq!(out.text(), "[c:a] one two\n");
    printer.on_event(&chunk(b"ee\n")).unwrap();
    assert_eq!(out.text(), "[c:a] one two\n[c:a] three\n");
}

#[test]
fn stream_passes_bytes_through_and_ends_lines_at_a_retry() {
    let mut run = RunBuilder::start(Some(1), 1);
    run.queue(0, "c", "bin");
    run.start_task(0, 0, 0, 0);
    run.output(0, Stream::Stdout, b"\xff\xfe raw\r\npartial");
    run.retry(0, 0, 10, "exit code 1");
    run.start_task(0, 0, 1_010, 0);
    run.output(0, Stream::Stdout, b"second try\n");
    run.finish_task(0, 0, 1_020, Outcome::success().output("second try\n", ""));
    let events = run.finish(1_030, 1, 0.1, None);
    let out = SharedBuf::default();
    let mut reporters =
        Reporters::new().with(StreamPrinter::new(Stream::Stdout, out.boxed(), false));
    for e in &events {
        assert!(reporters.on_event(e).is_empty());
    }
    assert!(reporters.finish().is_empty());
    assert_eq!(
        out.bytes(),
        b"[c:bin] \xff\xfe raw\r\n[c:bin] partial\n[c:bin] second try\n"
    );
}

#[test]
fn stream_prints_output_that_was_never_streamed_at_the_finish() {
    // An agent that returns its output instead of writing it live.
    let mut run = RunBuilder::start(Some(1), 1);
    run.queue(0, "llm", "prompt.md");
    run.start_task(0, 0, 0, 0);
    run.finish_task(
        0,
        0,
        500,
        Outcome::success().output("answer\nmore", "note\n"),
    );
    let (out, err) = feed(
        OutputMode::Stream,
        &run.finish(501, 1, 1.0, None),
        &TerminalInfo::plain(),
    );
    assert_eq!(out, "[llm:prompt.md] answer\n[llm:prompt.md] more\n");
    assert_eq!(err, "[llm:prompt.md] note\n");
}

#[test]
fn stream_breaks_a_line_that_never_ends() {
    let mut run = RunBuilder::start(Some(1), 1);
    run.queue(0, "c", "a");
    run.start_task(0, 0, 0, 0);
    let long = vec![b'x'; MAX_PARTIAL_LINE + 10];
    run.output(0, Stream::Stdout, &long);
    let out = SharedBuf::default();
    let mut reporters =
        Reporters::new().with(StreamPrinter::new(Stream::Stdout, out.boxed(), false));
    for e in &run.events {
        assert!(reporters.on_event(e).is_empty());
    }
    let text = out.text();
    assert_eq!(
        text.len(),
        "[c:a] ".len() + long.len() + 1,
        "printed before the task ended"
    );
}

#[test]
fn none_mode_has_no_printer() {
    let (out, err) = feed(OutputMode::None, &interleaved_run(), &TerminalInfo::plain());
    assert_eq!((out.as_str(), err.as_str()), ("", ""));
}

#[test]
fn output_mode_parses_its_names() {
    for mode in [
        OutputMode::Grouped,
        OutputMode::Stream,
        OutputMode::Bare,
        OutputMode::None,
    ] {
        assert_eq!(mode.as_str().parse::<OutputMode>(), Ok(mode));
    }
    let err = "lines".parse::<OutputMode>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown output mode `lines` (expected grouped, stream, bare or none)"
    );
    assert!(OutputMode::Stream.needs_live_output());
    assert!(OutputMode::Bare.needs_live_output());
    assert!(!OutputMode::Grouped.needs_live_output());
}

#[test]
fn grouped_printer_ignores_tasks_without_output() {
    let out = SharedBuf::default();
    let mut reporters =
        Reporters::new().with(GroupedPrinter::new(Stream::Stdout, out.boxed(), false));
    let mut run = RunBuilder::start(Some(1), 1);
    run.queue(0, "c", "quiet");
    run.start_task(0, 0, 0, 0);
    run.finish_task(0, 0, 5, Outcome::failed(1));
    for e in &run.finish(6, 1, 1.0, None) {
        assert!(reporters.on_event(e).is_empty());
    }
    assert_eq!(out.text(), "");
}

/// `--output bare`: each task's bytes as it wrote them, one task after the
/// other as they finish, nothing added (not even a final newline).
#[test]
fn bare_prints_each_finished_task_exactly_as_written() {
    let (out, err) = feed_with(
        OutputMode::Bare,
        PrinterOptions::default(),
        &interleaved_run(),
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "gamma 1\ngamma no newlinealpha 1\nalpha 2\nbeta 1\nbeta 2\n"
    );
    assert_eq!(String::from_utf8(err).unwrap(), "gamma warns\n");
}

/// The live bytes are what is printed: not the result's text (a bounded
/// tail, with bytes that are not UTF-8 replaced); a retry starts afresh.
#[test]
fn bare_keeps_raw_bytes_and_only_the_last_attempt() {
    let mut run = RunBuilder::start(None, 1);
    run.queue(0, "c", "bin");
    run.start_task(0, 0, 0, 0);
    run.output(0, Stream::Stdout, b"first attempt\n");
    run.retry(0, 0, 10, "exit code 1");
    run.start_task(0, 0, 1_010, 0);
    run.output(0, Stream::Stdout, b"\xff\x00raw");
    run.output(0, Stream::Stdout, b"\r\nno end");
    run.finish_task(
        0,
        0,
        1_020,
        Outcome::success().output("[agent-33: 3 bytes truncated]\n\u{fffd}", ""),
    );
    let (out, err) = feed_with(
        OutputMode::Bare,
        PrinterOptions::default(),
        &run.finish(1_030, 1, 0.1, None),
    );
    assert_eq!(out, b"\xff\x00raw\r\nno end");
    assert!(err.is_empty());
}

/// An agent that returns its output rather than writing it (or a task
/// resumed from a journal) has only its result's output: that is printed.
#[test]
fn bare_prints_a_result_that_was_never_streamed() {
    let mut run = RunBuilder::start(Some(1), 1);
    run.queue(0, "llm", "prompt.md");
    run.start_task(0, 0, 0, 0);
    run.finish_task(0, 0, 5, Outcome::success().output("answer", "note"));
    let (out, err) = feed_with(
        OutputMode::Bare,
        PrinterOptions::default(),
        &run.finish(6, 1, 1.0, None),
    );
    assert_eq!(
        (out.as_slice(), err.as_slice()),
        (&b"answer"[..], &b"note"[..])
    );
}

/// `-k`: blocks in input order, whatever order the tasks finished in.
#[test]
fn keep_order_prints_grouped_blocks_in_input_order() {
    let (out, err) = feed_with(OutputMode::Grouped, keep_order(), &interleaved_run());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "\
── command:alpha (ok, 1.2s) ──
alpha 1
alpha 2
── command:beta (ok, 2.3s) ──
beta 1
beta 2
── command:gamma (exit code 4, 0.080s) ──
gamma 1
gamma no newline
"
    );
    assert_eq!(
        String::from_utf8(err).unwrap(),
        "── command:gamma [stderr] (exit code 4, 0.080s) ──\ngamma warns\n"
    );
}

#[test]
fn keep_order_prints_bare_output_in_input_order() {
    let (out, err) = feed_with(OutputMode::Bare, keep_order(), &interleaved_run());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "alpha 1\nalpha 2\nbeta 1\nbeta 2\ngamma 1\ngamma no newline"
    );
    assert_eq!(String::from_utf8(err).unwrap(), "gamma warns\n");
}

/// A task is printed as soon as every earlier task has been, not at the
/// end of the run: only output that must wait is held.
#[test]
fn keep_order_prints_each_task_once_all_earlier_ones_are_done() {
    let mut run = RunBuilder::start(None, 3);
    for seq in 0..4 {
        run.queue(seq, "c", &format!("t{seq}"));
        run.start_task(seq, seq as usize, 0, 0);
        run.output(seq, Stream::Stdout, format!("out {seq}\n").as_bytes());
    }
    let setup = std::mem::take(&mut run.events);
    let out = SharedBuf::default();
    let mut printer = BarePrinter::new(Stream::Stdout, out.boxed()).keep_order(true);
    for e in &setup {
        printer.on_event(e).unwrap();
    }
    let mut step = |run: &mut RunBuilder, seq: u64, want: &str| {
        run.finish_task(seq, 0, 10, Outcome::success());
        for e in run.events.drain(..) {
            printer.on_event(&e).unwrap();
        }
        assert_eq!(out.text(), want, "after t{seq} finished");
    };
    step(&mut run, 2, "");
    step(&mut run, 1, "");
    step(&mut run, 0, "out 0\nout 1\nout 2\n");
    step(&mut run, 3, "out 0\nout 1\nout 2\nout 3\n");
}

/// Tasks that print nothing, never start or are skipped still take their
/// turn: the tasks after them are not held for ever.
#[test]
fn keep_order_moves_past_tasks_without_output() {
    let mut run = RunBuilder::start(Some(4), 2);
    for seq in 0..4 {
        run.queue(seq, "c", &format!("t{seq}"));
    }
    run.start_task(1, 0, 0, 0);
    run.output(1, Stream::Stdout, b"one\n");
    run.start_task(3, 1, 0, 0);
    run.output(3, Stream::Stdout, b"three\n");
    run.finish_task(3, 1, 5, Outcome::success());
    run.settle(
        0,
        TaskStatus::Skipped,
        "skipped: dependency `x` did not succeed",
    );
    run.finish_task(1, 0, 6, Outcome::success());
    let mid = run.events.clone();
    // Should the events end here, what still waits is printed at the end.
    let (out, _) = feed_with(OutputMode::Bare, keep_order(), &mid);
    assert_eq!(out, b"one\nthree\n");
    let out = SharedBuf::default();
    let mut printer = BarePrinter::new(Stream::Stdout, out.boxed()).keep_order(true);
    for e in &mid {
        printer.on_event(e).unwrap();
    }
    assert_eq!(out.text(), "one\n", "task 3 waits for task 2");
    run.settle(2, TaskStatus::Cancelled, "not started: fail-fast");
    for e in run.events.split_off(mid.len()) {
        printer.on_event(&e).unwrap();
    }
    assert_eq!(out.text(), "one\nthree\n");
}

/// `-q` with bare: only what did not succeed, still exactly and in order.
#[test]
fn quiet_bare_prints_only_failures() {
    let (out, err) = feed_with(
        OutputMode::Bare,
        PrinterOptions::default()
            .failures_only(true)
            .keep_order(true),
        &interleaved_run(),
    );
    assert_eq!(String::from_utf8(out).unwrap(), "gamma 1\ngamma no newline");
    assert_eq!(String::from_utf8(err).unwrap(), "gamma warns\n");
}

/// The stream printer prints lines live and cannot reorder them.
#[test]
fn keep_order_leaves_stream_output_live() {
    let events = interleaved_run();
    let (out, _) = feed_with(OutputMode::Stream, keep_order(), &events);
    let (live, _) = feed(OutputMode::Stream, &events, &TerminalInfo::plain());
    assert_eq!(String::from_utf8(out).unwrap(), live);
}

/// Output held for later tasks beyond the memory budget is kept in a
/// temporary file and printed whole, in order.
#[test]
fn keep_order_holds_large_output_without_losing_a_byte() {
    let chunk: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
    let chunks = 40; // 40 MiB held behind task 0, beyond the budget.
    let mut run = RunBuilder::start(None, 2);
    run.queue(0, "c", "slow");
    run.queue(1, "c", "big");
    run.start_task(0, 0, 0, 0);
    run.start_task(1, 1, 0, 0);
    for _ in 0..chunks {
        run.output(1, Stream::Stdout, &chunk);
    }
    run.finish_task(1, 1, 5, Outcome::success());
    run.output(0, Stream::Stdout, b"first\n");
    run.finish_task(0, 0, 9, Outcome::success());
    let (out, _) = feed_with(
        OutputMode::Bare,
        keep_order(),
        &run.finish(10, 2, 1.0, None),
    );
    assert_eq!(out.len(), 6 + chunks * chunk.len());
    assert_eq!(&out[..6], b"first\n");
    assert!(out[6..].chunks(chunk.len()).all(|c| c == chunk.as_slice()));
}
