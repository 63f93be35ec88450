//! The command line, as clap sees it: `agent-33 run [OPTIONS] [ARTIFACT ...]`.
//!
//! This module only describes the flags. The settings' flags are not
//! written here: they are built from the table of settings
//! ([`crate::settings`]), which also reads their values, with the
//! environment's and the manifest's, so that every invalid value gets the
//! same message shape wherever it came from.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use clap::{Args, CommandFactory as _, Parser, Subcommand, ValueEnum};

use crate::settings::SettingFlags;

/// `agent-33`: run agents over artifacts, in parallel, under control.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "agent-33",
    version,
    propagate_version = true,
    about = "Run agents over artifacts in parallel: semaphore-limited, with timeouts, fail-fast, retries and dependency order."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How the mode follows from the settings (PRODUCT.md, Settings). It sits
/// under the flags because no single flag's line can say it: the rule
/// spans `--parallel`, `-j`, `--respect-dependencies`, their variables and
/// the manifest, and a `[default: false]` alone would be untrue.
fn run_modes() -> String {
    let [parallel, limit, respect] =
        ["parallel", "parallel_limit", "respect_dependencies"].map(crate::settings::env_var);
    format!(
        "\
Modes:
  An explicit parallel setting decides the mode: --parallel, -j, --respect-dependencies,
  {parallel}, or the manifest's parallel: or mode: (flags, then environment, then
  manifest). Without one, a parallel limit given anywhere ({limit}=8, or
  parallel_limit: in execution:) runs tasks in parallel, and respect_dependencies true
  ({respect}=1, or respect_dependencies: true) runs them dependency-aware;
  otherwise they run one at a time, in dependency order. An agent's own parallel_limit only
  caps that agent."
    )
}

/// The subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run a command once per artifact, from a manifest (`agent33.yaml`) or ad hoc (`--command`).
    #[command(display_name = "agent-33", after_help = run_modes())]
    Run(Box<RunArgs>),
    /// Render reports (timeline, JUnit, trace, summary) from a saved `run --report` file.
    #[command(display_name = "agent-33")]
    Report(ReportArgs),
    /// Take tasks of distributed runs from a NATS server and run them here.
    #[command(display_name = "agent-33")]
    Worker(crate::nats_args::WorkerArgs),
}

/// `agent-33 report RUN.json [--timings PATH] [--junit PATH] [--trace PATH]`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// A JSON report written by `agent-33 run --report`.
    #[arg(value_name = "RUN.json")]
    pub run_json: PathBuf,
    /// Write the self-contained HTML timeline here.
    #[arg(long, value_name = "PATH")]
    pub timings: Option<PathBuf>,
    /// Write JUnit XML here.
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,
    /// Write a Chrome trace (Perfetto) here.
    #[arg(long, value_name = "PATH")]
    pub trace: Option<PathBuf>,
    /// Print the end-of-run summary again (also when no file is asked for).
    #[arg(long)]
    pub summary: bool,
}

/// How a dry run prints its plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// Human-readable text.
    #[default]
    Text,
    /// JSON.
    Json,
}

/// How task output reaches the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputMode {
    /// A finished task's output as one block under a header naming the task.
    #[default]
    Grouped,
    /// Lines as they come, each prefixed with the task id.
    Stream,
    /// Each finished task's stdout exactly as written, nothing added.
    Bare,
    /// No task output; only the summary.
    None,
}

/// The flags of `agent-33 run`.
///
/// Setting values are kept as the strings the user typed; see the module
/// docs for why.
#[derive(Debug, Clone, Default, Args)]
// next_line_help: each flag's help on its own full-width line, so
// "[default: …] [env: …]" does not wrap apart in `-h` either. Negative
// numbers are allowed per flag, not for the whole command, where `-0`
// would be read as the number 0 rather than as --null.
#[command(next_line_help = true)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each bool is one on/off flag of the CLI"
)]
pub struct RunArgs {
    /// The settings' flags (PRODUCT.md, Settings table), built from
    /// [`crate::settings`]'s table.
    #[command(flatten)]
    pub settings: SettingFlags,

    // ----- input -----
    /// Manifest to read [default: agent33.yaml]
    #[arg(
        short = 'f',
        long = "file",
        value_name = "PATH",
        help_heading = "Input"
    )]
    pub file: Option<PathBuf>,

    /// Ad-hoc agent: run TEMPLATE once per artifact ({} {.} {/} {//} {/.} {#} {%} {agent} {id}; else appended)
    #[arg(long, value_name = "TEMPLATE", help_heading = "Input")]
    pub command: Option<String>,

    /// Ad hoc: run TEMPLATE with sh -c, the artifact as $1 ("$1" in the script)
    #[arg(long, help_heading = "Input")]
    pub shell: bool,

    /// Ad-hoc artifacts, one per line, read as a stream ("-" = stdin)
    #[arg(long, value_name = "FILE", help_heading = "Input")]
    pub artifacts_from: Option<PathBuf>,

    /// Input items (--artifacts-from, ::::, stdin) end with NUL, not newline (find -print0)
    #[arg(short = '0', long, help_heading = "Input")]
    pub null: bool,

    /// Ad-hoc artifacts (with --command); as in GNU parallel, also `::: A B …` (every word after
    /// `:::` is an artifact) or `:::: FILE` (= --artifacts-from FILE). Without any, they are read
    /// from stdin unless it is a terminal
    #[arg(value_name = "ARTIFACT")]
    pub artifacts: Vec<OsString>,

    /// The words from the first `:::` or `::::` on, as groups: GNU
    /// parallel's spelling of the artifacts, which clap cannot see (every
    /// word after `:::` is an artifact, even one that looks like a flag).
    /// [`crate::config`] checks them.
    #[arg(skip)]
    pub gnu_input: Vec<GnuInput>,

    // ----- output -----
    /// Show the plan, run nothing
    #[arg(long, help_heading = "Output")]
    pub dry_run: bool,

    /// Format of the dry-run plan (needs --dry-run) [default: text]
    #[arg(long, value_enum, value_name = "FORMAT", help_heading = "Output")]
    pub format: Option<Format>,

    /// How task output reaches the terminal [default: grouped]
    #[arg(long, value_enum, value_name = "MODE", help_heading = "Output")]
    pub output: Option<OutputMode>,

    /// Write the results (ExecutionResults) as JSON to PATH
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub report: Option<PathBuf>,

    /// Write JUnit XML to PATH
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub junit: Option<PathBuf>,

    /// Write a self-contained HTML timeline of the run to PATH
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub timings: Option<PathBuf>,

    /// Write each task's full output to files in DIR
    #[arg(long, value_name = "DIR", help_heading = "Output")]
    pub output_dir: Option<PathBuf>,

    /// Write a trace of the run's events to PATH
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub trace: Option<PathBuf>,

    /// Print less: no progress, only the summary and errors
    #[arg(short = 'q', long, help_heading = "Output")]
    pub quiet: bool,

    /// Record finished tasks in a journal at PATH
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub journal: Option<PathBuf>,

    /// Skip tasks that the journal records as succeeded
    #[arg(long, help_heading = "Output")]
    pub resume: bool,

    /// Across machines (PRODUCT-distributed.md): `--nats`, `--nats-creds`, `--lease`.
    #[command(flatten)]
    pub nats: crate::nats_args::NatsRunArgs,
}

/// One group of GNU parallel's input words: `::: A B …` or `:::: FILE …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GnuInput {
    /// `::::` (files of artifacts) rather than `:::` (the artifacts).
    pub files: bool,
    /// The words after the separator, up to the next one.
    pub words: Vec<OsString>,
}

impl GnuInput {
    /// The separator as written: `:::` or `::::`.
    #[must_use]
    pub fn separator(&self) -> &'static str {
        if self.files { "::::" } else { ":::" }
    }
}

/// Parses a full command line (including the program name).
///
/// For `run`, the words from the first `:::` or `::::` on are taken out
/// before clap sees the rest, into [`RunArgs::gnu_input`]: after `:::`
/// every word is an artifact, as in GNU parallel, even `-x` or
/// `--report`. A `:::` that is the value of a flag (`--command :::`) or
/// comes after `--` is an ordinary word.
///
/// # Errors
///
/// clap's error for a malformed command line, `--help` or `--version`; the
/// binary calls [`clap::Error::exit`], which prints it and exits 2 for
/// usage errors, 0 for help and version.
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let gnu_input = match gnu_separator_at(&args) {
        Some(at) => gnu_groups(args.split_off(at)),
        None => Vec::new(),
    };
    let mut cli = Cli::try_parse_from(args)?;
    if let Command::Run(run) = &mut cli.command {
        run.gnu_input = gnu_input;
    }
    Ok(cli)
}

fn is_gnu_separator(word: &OsStr) -> bool {
    word == ":::" || word == "::::"
}

/// Where the first `:::` or `::::` of a `run` command line is, if it has
/// one that clap would take for an argument: not a flag's value, not after
/// `--`.
fn gnu_separator_at(args: &[OsString]) -> Option<usize> {
    if args.get(1).is_none_or(|a| a != "run") {
        return None;
    }
    let cli = Cli::command();
    let run = cli.find_subcommand("run")?;
    let takes_value = |arg: &clap::Arg| arg.get_action().takes_values();
    let long_takes_value = |name: &str| {
        run.get_arguments()
            .any(|a| takes_value(a) && a.get_long() == Some(name))
    };
    let short_takes_value = |c: char| {
        run.get_arguments()
            .any(|a| takes_value(a) && a.get_short() == Some(c))
    };
    let mut i = 2;
    while i < args.len() {
        let word = &args[i];
        if word == "--" {
            return None;
        }
        if is_gnu_separator(word) {
            return Some(i);
        }
        // Flags are ASCII; a word that is not UTF-8 is no flag.
        if let Some(w) = word.to_str() {
            if let Some(long) = w.strip_prefix("--") {
                if !long.contains('=') && long_takes_value(long) {
                    i += 1;
                }
            } else if let Some(shorts) = w.strip_prefix('-') {
                // `-qj 4`: the first short flag that takes a value takes
                // the rest of the word, or the next word if nothing is left.
                for (at, c) in shorts.char_indices() {
                    if short_takes_value(c) {
                        if at + c.len_utf8() == shorts.len() {
                            i += 1;
                        }
                        break;
                    }
                }
            }
        }
        i += 1;
    }
    None
}

/// Splits the words from the first separator on into groups.
fn gnu_groups(words: Vec<OsString>) -> Vec<GnuInput> {
    let mut groups: Vec<GnuInput> = Vec::new();
    for word in words {
        match groups.last_mut() {
            Some(group) if !is_gnu_separator(&word) => group.words.push(word),
            _ => groups.push(GnuInput {
                files: word == "::::",
                words: Vec::new(),
            }),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn run(args: &[&str]) -> RunArgs {
        let mut full = vec!["agent-33", "run"];
        full.extend_from_slice(args);
        match parse_from(full).expect("valid command line").command {
            Command::Run(r) => *r,
            Command::Report(_) | Command::Worker(_) => unreachable!("a run command line"),
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_setting_flag_parses_as_written() {
        let r = run(&[
            "--parallel",
            "-j",
            "8",
            "--respect-dependencies",
            "--timeout",
            "1.5",
            "--continue-on-error",
            "--max-failures",
            "3",
            "--no-fail-fast",
            "--retries",
            "2",
            "--retry-backoff",
            "0.5",
            "--kill-grace",
            "2",
            "--deadline",
            "60",
            "--output-limit",
            "100",
        ]);
        let given = |key| r.settings.get(key);
        for (key, want) in [
            ("parallel", "true"),
            ("respect_dependencies", "true"),
            ("continue_on_error", "true"),
            ("parallel_limit", "8"),
            ("timeout_seconds", "1.5"),
            ("max_failures", "3"),
            ("fail_fast", "false"),
            ("retries", "2"),
            ("retry_backoff_seconds", "0.5"),
            ("kill_grace_seconds", "2"),
            ("deadline_seconds", "60"),
            ("output_limit_bytes", "100"),
        ] {
            assert_eq!(given(key), Some(want), "{key}");
        }
    }

    #[test]
    fn the_last_of_fail_fast_and_no_fail_fast_wins() {
        let r = run(&["--no-fail-fast", "--fail-fast"]);
        assert_eq!(r.settings.get("fail_fast"), Some("true"));
        let r = run(&["--fail-fast", "--no-fail-fast"]);
        assert_eq!(r.settings.get("fail_fast"), Some("false"));
    }

    #[test]
    fn negative_numbers_reach_validation_instead_of_being_taken_for_flags() {
        let r = run(&["--timeout", "-1", "-j", "-2"]);
        assert_eq!(r.settings.get("timeout_seconds"), Some("-1"));
        assert_eq!(r.settings.get("parallel_limit"), Some("-2"));
    }

    #[test]
    fn input_and_output_flags_parse() {
        let r = run(&[
            "-f",
            "m.yaml",
            "--dry-run",
            "--format",
            "json",
            "--report",
            "r.json",
            "--junit",
            "j.xml",
            "--timings",
            "t.html",
            "--output",
            "bare",
            "--keep-order",
            "--output-dir",
            "out",
            "--trace",
            "trace.json",
            "--quiet",
            "--journal",
            "j.log",
            "--resume",
        ]);
        assert_eq!(r.file, Some(PathBuf::from("m.yaml")));
        assert!(r.dry_run && r.quiet && r.resume);
        assert_eq!(r.format, Some(Format::Json));
        assert_eq!(r.output, Some(OutputMode::Bare));
        assert_eq!(r.settings.get("keep_order"), Some("true"));
        assert_eq!(r.report, Some(PathBuf::from("r.json")));
        assert_eq!(r.junit, Some(PathBuf::from("j.xml")));
        assert_eq!(r.timings, Some(PathBuf::from("t.html")));
        assert_eq!(r.output_dir, Some(PathBuf::from("out")));
        assert_eq!(r.trace, Some(PathBuf::from("trace.json")));
        assert_eq!(r.journal, Some(PathBuf::from("j.log")));
    }

    #[test]
    fn ad_hoc_flags_and_artifacts_parse() {
        let r = run(&["--command", "wc -l", "--", "a.txt", "-b.txt"]);
        assert_eq!(r.command.as_deref(), Some("wc -l"));
        assert_eq!(r.artifacts, vec![OsString::from("a.txt"), "-b.txt".into()]);
        let r = run(&["--command", "wc", "--artifacts-from", "-", "--null"]);
        assert_eq!(r.artifacts_from, Some(PathBuf::from("-")));
        assert!(r.null);
        assert!(!r.shell);
        let r = run(&["--shell", "--command", "wc -l \"$1\"", "a"]);
        assert!(r.shell);
    }

    fn gnu(files: bool, words: &[&str]) -> GnuInput {
        GnuInput {
            files,
            words: words.iter().map(OsString::from).collect(),
        }
    }

    #[test]
    fn everything_after_three_colons_is_an_artifact() {
        let r = run(&[
            "--command",
            "echo",
            "-k",
            "::: ",
            ":::",
            "a",
            "-b",
            "--report",
            "x",
        ]);
        assert_eq!(r.artifacts, vec![OsString::from("::: ")]);
        assert_eq!(r.settings.get("keep_order"), Some("true"));
        assert_eq!(r.report, None);
        assert_eq!(r.gnu_input, [gnu(false, &["a", "-b", "--report", "x"])]);
        let r = run(&["--command", "cat", "::::", "-", ":::", ":::", "x", "::::"]);
        assert_eq!(
            r.gnu_input,
            [
                gnu(true, &["-"]),
                gnu(false, &[]),
                gnu(false, &["x"]),
                gnu(true, &[])
            ]
        );
        let r = run(&["--command", "x", ":::"]);
        assert_eq!(r.gnu_input, [gnu(false, &[])]);
    }

    #[test]
    fn three_colons_as_a_value_or_after_a_double_dash_are_plain_words() {
        let r = run(&["--command", ":::", "--report=r", ":::", "a"]);
        assert_eq!(r.command.as_deref(), Some(":::"));
        assert_eq!(r.gnu_input, [gnu(false, &["a"])]);
        let r = run(&["-qj", ":::", "--command", "x", "--", ":::", "a"]);
        assert_eq!(r.settings.get("parallel_limit"), Some(":::"));
        assert!(r.gnu_input.is_empty());
        assert_eq!(r.artifacts, vec![OsString::from(":::"), "a".into()]);
        let r = run(&["-j4", "-0", "--command", "x", ":::", "a"]);
        assert_eq!(r.settings.get("parallel_limit"), Some("4"));
        assert!(r.null);
        assert_eq!(r.gnu_input, [gnu(false, &["a"])]);
        // Only `run` has artifacts.
        let cli = parse_from(["agent-33", "report", "r.json", ":::"]);
        assert!(cli.is_err());
    }

    #[test]
    fn bad_enum_values_are_clap_usage_errors() {
        let err = parse_from(["agent-33", "run", "--output", "loud"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = parse_from(["agent-33", "run", "--paralel"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn help_shows_defaults_and_environment_variables() {
        let mut cli = Cli::command();
        let run = cli.find_subcommand_mut("run").expect("run exists");
        let long = run.render_long_help().to_string();
        let short = run.render_help().to_string();
        for needle in [
            "[env: AGENT33_PARALLEL]",
            "[env: AGENT33_PARALLEL_LIMIT]",
            "[env: AGENT33_RESPECT_DEPENDENCIES]",
            "[env: AGENT33_TASK_TIMEOUT]",
            "[env: AGENT33_CONTINUE_ON_ERROR]",
            "[env: AGENT33_MAX_FAILURES]",
            "[env: AGENT33_FAIL_FAST]",
            "[env: AGENT33_RETRIES]",
            "[env: AGENT33_KILL_GRACE]",
            "[env: AGENT33_DEADLINE]",
            "[default: 4]",
            "[default: 300]",
            "[default: 1048576]",
            "[default: agent33.yaml]",
            "--parallel-limit",
            "--no-fail-fast",
            "--artifacts-from",
        ] {
            assert!(long.contains(needle), "--help lacks {needle}:\n{long}");
            assert!(short.contains(needle), "-h lacks {needle}:\n{short}");
        }
    }

    #[test]
    fn help_says_what_switches_parallel_on() {
        let mut cli = Cli::command();
        let run = cli.find_subcommand_mut("run").expect("run exists");
        for help in [
            run.render_long_help().to_string(),
            run.render_help().to_string(),
        ] {
            let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
            for needle in [
                "Run tasks in parallel (see Modes below) [default: false]",
                "An explicit parallel setting decides the mode: --parallel, -j, \
                 --respect-dependencies, AGENT33_PARALLEL, or the manifest's parallel: or mode:",
                "a parallel limit given anywhere (AGENT33_PARALLEL_LIMIT=8, or parallel_limit: \
                 in execution:) runs tasks in parallel",
                "respect_dependencies true (AGENT33_RESPECT_DEPENDENCIES=1, or \
                 respect_dependencies: true) runs them dependency-aware",
                "An agent's own parallel_limit only caps that agent.",
            ] {
                assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
            }
        }
    }

    #[test]
    fn version_is_available() {
        let err = parse_from(["agent-33", "--version"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayVersion);
        let err = parse_from(["agent-33", "run", "--version"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayVersion);
    }
}
