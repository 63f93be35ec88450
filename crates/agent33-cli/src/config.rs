//! From flags, environment and manifest to one validated configuration, in
//! two stages like ripgrep's low and high args.
//!
//! Stage 1, [`RawConfig::new`], reads raw values: one [`Layer`] per source
//! (flags, environment variables, the manifest's `execution:` block), each
//! value validated and tagged with its [`Source`], plus the parsed manifest
//! or the ad-hoc template. It reads the manifest file but touches nothing
//! else.
//!
//! Stage 2, [`RawConfig::resolve`], merges the layers setting by setting
//! (flags > environment > manifest > defaults) into
//! [`agent33_parallel::Settings`], expands the manifest's globs, checks the
//! agents' folders and dependencies, and opens the ad-hoc artifact list.
//!
//! Nothing here runs tasks, prints or exits: the binary does, with
//! [`UsageError`] mapped to exit status 2.

use std::ffi::OsString;
use std::path::PathBuf;

use agent33_parallel::{Agent, AgentName, AgentTask, Agents, Settings};

use crate::adhoc::{ADHOC_AGENT, ArtifactInput, Separator};
use crate::args::{Format, OutputMode, RunArgs};
use crate::error::{Result, UsageError};
use crate::manifest::{DEFAULT_MANIFEST, Manifest};
use crate::settings::{self, Flag, Picked, Resolved};
use crate::template::{CommandTemplate, TaskCommand};
use crate::values::{Source, Sourced};

pub use crate::agents::{AgentDef, LlmAgentDef};
pub use crate::manifest::manifest_dir;
pub use crate::settings::{EnvLookup, Layer};

/// The process environment, for the binary.
#[must_use]
pub fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

impl Layer {
    /// The settings given as flags. `-j` and `--respect-dependencies` are
    /// each an explicit `--parallel` at the flags' precedence (PRODUCT.md,
    /// Settings: "also sets `parallel`"), so they beat an explicit
    /// `parallel: false` elsewhere; the matching variables and manifest
    /// keys only imply it (see [`merge`]).
    ///
    /// # Errors
    ///
    /// A usage error naming the setting and the flag for a bad value.
    pub fn from_flags(a: &RunArgs) -> Result<Self> {
        let mut layer = Self::from_setting_flags(&a.settings)?;
        if layer.parallel.is_none() {
            layer.parallel = ["parallel_limit", "respect_dependencies"]
                .into_iter()
                .find(|key| a.settings.has(key))
                .map(|key| match settings::spec(key).flag {
                    Flag::Switch(flag) | Flag::Value(flag, _) | Flag::Pair { on: flag, .. } => {
                        Sourced::new(true, Source::Flag(flag))
                    }
                });
        }
        Ok(layer)
    }

    /// `continue_on_error: true` and `max_failures` set by this one source
    /// contradict each other (PRODUCT.md, Settings).
    ///
    /// # Errors
    ///
    /// A usage error naming both settings and their source.
    pub fn check_stop_rule(&self) -> Result<()> {
        let (Some(c), Some(m)) = (&self.continue_on_error, &self.max_failures) else {
            return Ok(());
        };
        if !c.value {
            return Ok(());
        }
        let msg = format!(
            "continue_on_error: true (from {}) and max_failures (from {}) cannot be set \
             together in one source: continue_on_error means never stop for failures, \
             max_failures says after how many to stop; keep one of them",
            c.source, m.source
        );
        Err(match &c.source {
            Source::Manifest(place) => UsageError::new(format_args!("{place}: {msg}")),
            _ => UsageError::new(msg),
        })
    }
}

/// Where the run's tasks come from.
#[derive(Debug)]
pub enum TaskSource {
    /// Every task of the manifest, globs expanded, ids unique, dependencies
    /// validated, per-task timeout and retries set.
    Manifest(Vec<AgentTask>),
    /// Ad-hoc artifacts; [`ArtifactInput::into_stream`] yields the tasks.
    AdHoc(ArtifactInput),
}

/// The ad-hoc part of stage 1.
#[derive(Debug, Clone, PartialEq)]
pub struct AdHoc {
    /// The `--command` template.
    pub template: CommandTemplate,
    /// Where the artifacts come from.
    pub artifacts: AdHocArtifacts,
    /// What ends an item of streamed input (`-0`).
    pub separator: Separator,
}

/// Where ad-hoc artifacts come from, as the command line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdHocArtifacts {
    /// Given as arguments, or after `:::` (which may be followed by none:
    /// then there are none, and stdin is not read).
    Listed(Vec<OsString>),
    /// Read from a file: `--artifacts-from FILE` or `:::: FILE` (`-` =
    /// stdin).
    From(PathBuf),
    /// None given: read from stdin when it is not a terminal, as xargs and
    /// GNU parallel do; otherwise there are none.
    Stdin {
        /// Whether stdin is a terminal (looked at when the flags are read).
        is_terminal: bool,
    },
}

/// Flags that are not settings: what to show and where to write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--format` (only with `--dry-run`).
    pub format: Format,
    /// `--output`.
    pub output: OutputMode,
    /// `--report PATH`, relative to the current folder.
    pub report: Option<PathBuf>,
    /// `--junit PATH`.
    pub junit: Option<PathBuf>,
    /// `--timings PATH`.
    pub timings: Option<PathBuf>,
    /// `--output-dir DIR`.
    pub output_dir: Option<PathBuf>,
    /// `--trace PATH`.
    pub trace: Option<PathBuf>,
    /// `--journal PATH`.
    pub journal: Option<PathBuf>,
    /// `--resume`.
    pub resume: bool,
    /// `--quiet`.
    pub quiet: bool,
    /// `-k`/`--keep-order`.
    pub keep_order: bool,
}

/// Stage 1: every source read and validated on its own, nothing merged.
#[derive(Debug)]
pub struct RawConfig {
    /// Settings from flags.
    pub flags: Layer,
    /// Settings from `AGENT33_*` variables.
    pub env: Layer,
    /// The manifest (absent in ad-hoc mode).
    pub manifest: Option<Manifest>,
    /// The ad-hoc command (absent in manifest mode).
    pub adhoc: Option<AdHoc>,
    /// The non-setting flags.
    pub options: RunOptions,
}

impl RawConfig {
    /// Reads the flags, the environment and (unless `--command`) the
    /// manifest.
    ///
    /// # Errors
    ///
    /// A [`UsageError`] for any invalid flag combination or value, any
    /// invalid variable, a missing or invalid manifest, a provider whose
    /// key variable is not set.
    pub fn new(args: &RunArgs, env: EnvLookup<'_>) -> Result<Self> {
        let raw = Self::without_keys(args, env)?;
        if let Some(e) = raw.manifest.as_ref().and_then(|m| m.missing_key.clone()) {
            return Err(e);
        }
        Ok(raw)
    }

    /// Like [`Self::new`], for a worker: a provider's key variable may be
    /// unset: a distributed run's coordinator sends no request, and a
    /// worker fails only the tasks that need the missing key.
    ///
    /// # Errors
    ///
    /// As [`Self::new`], but for the keys.
    pub fn without_keys(args: &RunArgs, env: EnvLookup<'_>) -> Result<Self> {
        if args.format.is_some() && !args.dry_run {
            return Err(UsageError::new(
                "--format needs --dry-run (it chooses how the plan is printed)",
            ));
        }
        let adhoc = match &args.command {
            Some(command) => {
                if args.file.is_some() {
                    return Err(UsageError::new(
                        "--command cannot be used with -f/--file: an ad-hoc run reads no manifest",
                    ));
                }
                let artifacts = adhoc_artifacts(args)?;
                let template = CommandTemplate::from_flag(command, args.shell)
                    .map_err(|m| UsageError::new(format_args!("invalid --command: {m}")))?;
                Some(AdHoc {
                    template,
                    artifacts,
                    separator: if args.null {
                        Separator::Nul
                    } else {
                        Separator::Newline
                    },
                })
            }
            None => {
                if args.shell {
                    return Err(UsageError::new(
                        "--shell needs --command TEMPLATE (a manifest agent runs its command \
                         with sh -c when it says `shell: true`)",
                    ));
                }
                if args.artifacts_from.is_some() {
                    return Err(UsageError::new(
                        "--artifacts-from needs --command TEMPLATE (a manifest run takes its \
                         artifacts from the manifest)",
                    ));
                }
                if let Some(group) = args.gnu_input.first() {
                    return Err(UsageError::new(format_args!(
                        "{} needs --command TEMPLATE (a manifest run takes its artifacts from \
                         the manifest)",
                        group.separator()
                    )));
                }
                if args.null {
                    return Err(UsageError::new(
                        "-0/--null needs --command TEMPLATE: it splits ad-hoc input (a manifest \
                         run takes its artifacts from the manifest)",
                    ));
                }
                if let Some(first) = args.artifacts.first() {
                    return Err(UsageError::new(format_args!(
                        "unexpected argument {:?}: artifacts on the command line need \
                         --command TEMPLATE (a manifest run takes its artifacts from the manifest)",
                        first.to_string_lossy()
                    )));
                }
                None
            }
        };
        let flags = Layer::from_flags(args)?;
        let env = Layer::from_env(env)?;
        let manifest = if adhoc.is_some() {
            None
        } else {
            let (path, explicit) = match &args.file {
                Some(p) => (p.clone(), true),
                None => (PathBuf::from(DEFAULT_MANIFEST), false),
            };
            Some(Manifest::read(&path, explicit)?)
        };
        flags.check_stop_rule()?;
        env.check_stop_rule()?;
        if let Some(m) = &manifest {
            m.execution.check_stop_rule()?;
        }
        let options = RunOptions {
            dry_run: args.dry_run,
            format: args.format.unwrap_or_default(),
            output: args.output.unwrap_or_default(),
            report: args.report.clone(),
            junit: args.junit.clone(),
            timings: args.timings.clone(),
            output_dir: args.output_dir.clone(),
            trace: args.trace.clone(),
            journal: args.journal.clone(),
            resume: args.resume,
            quiet: args.quiet,
            // A setting (flag or manifest): known after the merge.
            keep_order: false,
        };
        Ok(Self {
            flags,
            env,
            manifest,
            adhoc,
            options,
        })
    }

    /// Stage 2: merges the layers into [`Settings`], builds the agents and
    /// the task source.
    ///
    /// # Errors
    ///
    /// A [`UsageError`] for a glob that matches nothing, duplicate task ids,
    /// invalid dependencies, an agent folder that does not exist, an
    /// artifact list that cannot be opened.
    pub fn resolve(self) -> Result<Config> {
        let empty = Layer::default();
        let manifest_layer = self.manifest.as_ref().map_or(&empty, |m| &m.execution);
        let (resolved, sources) = merge(
            [&self.flags, &self.env, manifest_layer],
            self.options.output,
        );
        let mut options = self.options;
        options.keep_order = resolved.cli.keep_order;
        if options.keep_order && options.output == OutputMode::Stream {
            return Err(UsageError::new(
                "-k/--keep-order cannot be used with --output stream, which prints lines as \
                 tasks write them; use --output grouped or bare to get output in input order",
            ));
        }
        let mut llm_agents = Vec::new();
        let (agents, tasks, manifest_path) = match (self.manifest, self.adhoc) {
            (Some(m), _) => {
                m.check_agent_folders()?;
                let tasks = m.tasks()?;
                llm_agents.clone_from(&m.llm_agents);
                (
                    m.agents.clone(),
                    TaskSource::Manifest(tasks),
                    Some(m.path().to_owned()),
                )
            }
            (None, Some(adhoc)) => {
                let input = match adhoc.artifacts {
                    AdHocArtifacts::Listed(artifacts) => ArtifactInput::Args(artifacts),
                    AdHocArtifacts::From(path) => ArtifactInput::open(&path, adhoc.separator)?,
                    AdHocArtifacts::Stdin { is_terminal: false } => ArtifactInput::Stdin {
                        separator: adhoc.separator,
                    },
                    // Nobody would type the artifacts there, and reading
                    // would wait for them.
                    AdHocArtifacts::Stdin { is_terminal: true } => ArtifactInput::Args(Vec::new()),
                };
                let agent = AgentDef {
                    name: AgentName::from(ADHOC_AGENT),
                    command: TaskCommand::new(adhoc.template).append_artifact_without_placeholder(),
                    parallel_limit: None,
                    timeout: None,
                    retries: None,
                };
                (vec![agent], TaskSource::AdHoc(input), None)
            }
            (None, None) => (Vec::new(), TaskSource::Manifest(Vec::new()), None),
        };
        Ok(Config {
            settings: resolved.engine,
            sources,
            agents,
            llm_agents,
            tasks,
            options,
            manifest_path,
        })
    }
}

/// Where the ad-hoc artifacts come from: arguments, `--artifacts-from`,
/// GNU parallel's `::: A B …` or `:::: FILE`, or (none given) stdin.
///
/// Only one of these at a time. GNU parallel combines several input
/// sources (`::: a b ::: 1 2`, `:::: f g`) into every combination of their
/// items; agent-33 runs one list, and rather than quietly do something else
/// it refuses them.
fn adhoc_artifacts(args: &RunArgs) -> Result<AdHocArtifacts> {
    let mut given: Vec<String> = Vec::new();
    if !args.artifacts.is_empty() {
        given.push("as arguments".to_owned());
    }
    if args.artifacts_from.is_some() {
        given.push("with --artifacts-from".to_owned());
    }
    let gnu = match args.gnu_input.as_slice() {
        [] => None,
        [one] => {
            given.push(if one.files {
                "with ::::".to_owned()
            } else {
                "after :::".to_owned()
            });
            Some(one)
        }
        [..] => {
            return Err(UsageError::new(
                "several ::: or :::: lists (GNU parallel would run every combination of their \
                 items); agent-33 takes one list of artifacts",
            ));
        }
    };
    if given.len() > 1 {
        if let (Some(group), Some(first)) = (gnu, args.artifacts.first()) {
            return Err(UsageError::new(format_args!(
                "unexpected argument {:?} before {} (every artifact comes after it; the \
                 command is --command TEMPLATE)",
                first.to_string_lossy(),
                group.separator()
            )));
        }
        return Err(UsageError::new(format_args!(
            "give ad-hoc artifacts either {} or {}, not both",
            given[0], given[1]
        )));
    }
    if let Some(group) = gnu {
        if !group.files {
            return Ok(AdHocArtifacts::Listed(group.words.clone()));
        }
        return match group.words.as_slice() {
            [file] => Ok(AdHocArtifacts::From(PathBuf::from(file))),
            [] => Err(UsageError::new(
                ":::: needs a FILE of artifacts, one per line (- for standard input)",
            )),
            [..] => Err(UsageError::new(
                "several files after :::: (GNU parallel would run every combination of their \
                 lines); agent-33 takes one list of artifacts",
            )),
        };
    }
    Ok(match &args.artifacts_from {
        Some(path) => AdHocArtifacts::From(path.clone()),
        None if args.artifacts.is_empty() => AdHocArtifacts::Stdin {
            is_terminal: std::io::IsTerminal::is_terminal(&std::io::stdin()),
        },
        None => AdHocArtifacts::Listed(args.artifacts.clone()),
    })
}

/// `parallel`, which unlike the other settings can also be implied
/// (PRODUCT.md, Settings). An explicit value decides, whatever its rank:
/// someone who wrote `parallel: false` (or `mode: sequential`) in the
/// manifest asked for one task at a time, and a limit's variable exported
/// for other runs must not overrule that. Only without one does a limit
/// given anywhere imply `parallel` (the variable set to 8 means 8 at a
/// time, as the seed's `ParallelExecutor(parallel_limit=8)` does), and so
/// does `respect_dependencies: true` (dependency-aware mode
/// is parallel; sequential mode respects dependencies anyway, so the
/// setting would otherwise change nothing). The implied value is credited
/// to the setting that implied it.
fn parallel_of(
    layers: [&Layer; 3],
    limit: &Sourced<usize>,
    respect: &Sourced<bool>,
    default: bool,
) -> Sourced<bool> {
    if let Some(explicit) = layers.iter().find_map(|l| l.parallel.clone()) {
        explicit
    } else if limit.source != Source::Default {
        Sourced::new(true, limit.source.clone())
    } else if respect.value && respect.source != Source::Default {
        Sourced::new(true, respect.source.clone())
    } else {
        Sourced::new(default, Source::Default)
    }
}

/// Merges layers (flags, env, manifest; highest precedence first) into
/// settings, each setting on its own, and records where each came from.
#[must_use]
pub fn merge(layers: [&Layer; 3], output: OutputMode) -> (Resolved, Vec<(&'static str, Source)>) {
    let mut picked = Picked::pick(layers);
    picked.parallel = parallel_of(
        layers,
        &picked.parallel_limit,
        &picked.respect_dependencies,
        picked.parallel.value,
    );
    // continue_on_error: true and max_failures are two answers to "when to
    // stop"; the higher-precedence one wins (same-source conflicts were
    // rejected in stage 1).
    if picked.continue_on_error.value
        && picked.max_failures.source.rank() > picked.continue_on_error.source.rank()
    {
        picked.continue_on_error = Sourced::new(false, picked.max_failures.source.clone());
    }
    let mut resolved = Resolved::default();
    let sources = picked.apply(&mut resolved);
    let engine = &mut resolved.engine;
    engine.stream_output = matches!(output, OutputMode::Stream | OutputMode::Bare);
    // Bare output is the task's bytes exactly: none may be dropped.
    engine.lossless_live_output = matches!(output, OutputMode::Bare);
    (resolved, sources)
}

/// Stage 2's result: everything the run needs, validated.
#[derive(Debug)]
pub struct Config {
    /// The engine's settings. `stream_output` is on for `--output stream`.
    pub settings: Settings,
    /// Where each setting came from, in the Settings table's order (for a
    /// dry run or a debug print).
    pub sources: Vec<(&'static str, Source)>,
    /// The agents, in manifest order (ad hoc: the one agent `command`).
    pub agents: Vec<AgentDef>,
    /// The LLM agents (`llm:`), in manifest order.
    pub llm_agents: Vec<LlmAgentDef>,
    /// The tasks, or the ad-hoc artifacts to make them from.
    pub tasks: TaskSource,
    /// Dry run, format, output mode, report paths, quiet.
    pub options: RunOptions,
    /// The manifest read, if any (as given, or `agent33.yaml`).
    pub manifest_path: Option<PathBuf>,
}

impl Config {
    /// Builds the engine's agent registry: `make` turns each agent's
    /// definition (its [`TaskCommand`]) into an agent, typically the
    /// process crate's command agent; the agent's own limits are applied.
    pub fn agents<A: Agent>(&self, mut make: impl FnMut(&AgentDef) -> A) -> Agents {
        let mut agents = Agents::new();
        for def in &self.agents {
            agents.insert(def.name.clone(), def.spec(make(def)));
        }
        agents
    }

    /// The definition of the agent named `name`.
    #[must_use]
    pub fn agent(&self, name: &str) -> Option<&AgentDef> {
        self.agents.iter().find(|a| a.name == name)
    }

    /// The LLM agent named `name`.
    #[must_use]
    pub fn llm_agent(&self, name: &str) -> Option<&LlmAgentDef> {
        self.llm_agents.iter().find(|a| a.name == name)
    }
}

/// Both stages: flags, environment and manifest to a validated [`Config`].
///
/// # Errors
///
/// A [`UsageError`]; the binary prints `agent-33: error: <message>` and
/// exits 2.
///
/// # Examples
///
/// ```
/// use std::ffi::OsString;
/// use agent33_cli::args::{parse_from, Command};
/// use agent33_cli::config::{load, TaskSource};
///
/// let cli = parse_from(["agent-33", "run", "-j", "8", "--command", "wc -l", "a.txt"]).unwrap();
/// let Command::Run(args) = cli.command else { unreachable!() };
/// let env = |name: &str| (name == "AGENT33_TASK_TIMEOUT").then(|| OsString::from("1.5"));
/// let config = load(&args, &env).unwrap();
/// assert!(config.settings.parallel);
/// assert_eq!(config.settings.parallel_limit, 8);
/// assert_eq!(config.settings.timeout, Some(std::time::Duration::from_millis(1500)));
/// assert!(matches!(config.tasks, TaskSource::AdHoc(_)));
/// ```
pub fn load(args: &RunArgs, env: EnvLookup<'_>) -> Result<Config> {
    RawConfig::new(args, env)?.resolve()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Command, parse_from};
    use std::collections::HashMap;
    use std::time::Duration;

    fn args(flags: &[&str]) -> RunArgs {
        let mut argv = vec!["agent-33", "run"];
        argv.extend_from_slice(flags);
        match parse_from(argv).expect("valid command line").command {
            Command::Run(r) => *r,
            Command::Report(_) | Command::Worker(_) => unreachable!("a run command line"),
        }
    }

    /// Loads with these flags, variables and manifest text (written to a
    /// temporary `agent33.yaml` passed with `-f` unless ad hoc).
    fn load_with(flags: &[&str], env: &[(&str, &str)], manifest: &str) -> Result<Config> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent33.yaml");
        std::fs::write(&path, manifest).expect("write");
        let path = path.to_str().expect("utf-8 temp path").to_owned();
        let mut all: Vec<&str> = flags.to_vec();
        if !flags.contains(&"--command") {
            all.extend(["-f", &path]);
        }
        let env: HashMap<String, OsString> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        let lookup = move |name: &str| env.get(name).cloned();
        load(&args(&all), &lookup)
    }

    fn settings(flags: &[&str], env: &[(&str, &str)], manifest: &str) -> Settings {
        load_with(flags, env, manifest).expect("valid").settings
    }

    fn error(flags: &[&str], env: &[(&str, &str)], manifest: &str) -> String {
        load_with(flags, env, manifest)
            .expect_err("invalid")
            .to_string()
    }

    #[test]
    fn nothing_set_gives_the_defaults() {
        let s = settings(&[], &[], "");
        assert_eq!(s, Settings::default());
        let c = load_with(&[], &[], "").expect("valid");
        assert!(c.sources.iter().all(|(_, s)| *s == Source::Default));
        assert_eq!(c.sources.len(), 13);
    }

    #[test]
    fn each_setting_takes_flag_then_env_then_manifest_then_default() {
        let secs = Duration::from_secs;
        /// (flag, env var, manifest key), the values given at each level
        /// (flag, env, manifest), how to read the setting, and what it reads
        /// when each level is the highest one given.
        type Row<'a> = (
            (&'a str, &'a str, &'a str),
            [&'a str; 3],
            fn(&Settings) -> String,
            [&'a str; 3],
        );
        let table: &[Row<'_>] = &[
            (
                ("-j", "AGENT33_PARALLEL_LIMIT", "parallel_limit"),
                ["8", "6", "5"],
                |s| s.parallel_limit.to_string(),
                ["8", "6", "5"],
            ),
            (
                ("--timeout", "AGENT33_TASK_TIMEOUT", "timeout_seconds"),
                ["1.5", "2", "0"],
                |s| format!("{:?}", s.timeout),
                ["Some(1.5s)", "Some(2s)", "None"],
            ),
            (
                ("--max-failures", "AGENT33_MAX_FAILURES", "max_failures"),
                ["3", "4", "5"],
                |s| s.max_failures.to_string(),
                ["3", "4", "5"],
            ),
            (
                ("--retries", "AGENT33_RETRIES", "retries"),
                ["1", "2", "3"],
                |s| s.retries.to_string(),
                ["1", "2", "3"],
            ),
            (
                ("--kill-grace", "AGENT33_KILL_GRACE", "kill_grace_seconds"),
                ["0.25", "2", "3"],
                |s| format!("{:?}", s.kill_grace),
                ["250ms", "2s", "3s"],
            ),
            (
                ("--deadline", "AGENT33_DEADLINE", "deadline_seconds"),
                ["0", "20", "30"],
                |s| format!("{:?}", s.deadline),
                ["None", "Some(20s)", "Some(30s)"],
            ),
        ];
        for ((flag, var, key), [fv, ev, mv], read, [want_f, want_e, want_m]) in table {
            let manifest = format!("execution:\n  {key}: {mv}\n");
            let all = settings(&[flag, fv], &[(var, ev)], &manifest);
            assert_eq!(read(&all), *want_f, "{flag} beats {var}");
            let env_over = settings(&[], &[(var, ev)], &manifest);
            assert_eq!(read(&env_over), *want_e, "{var} beats {key}");
            let man = settings(&[], &[], &manifest);
            assert_eq!(read(&man), *want_m, "{key} beats the default");
        }
        // Settings without a variable.
        let s = settings(
            &["--retry-backoff", "0.5", "--output-limit", "10"],
            &[],
            "execution: {retry_backoff_seconds: 2, output_limit_bytes: 20}",
        );
        assert_eq!(
            (s.retry_backoff, s.output_limit_bytes),
            (Duration::from_millis(500), 10)
        );
        let s = settings(
            &[],
            &[],
            "execution: {retry_backoff_seconds: 2, output_limit_bytes: 20}",
        );
        assert_eq!((s.retry_backoff, s.output_limit_bytes), (secs(2), 20));
    }

    #[test]
    fn booleans_resolve_per_setting() {
        // AGENT33_PARALLEL=false beats parallel: true in the manifest.
        assert!(
            !settings(
                &[],
                &[("AGENT33_PARALLEL", "false")],
                "execution: {parallel: true}"
            )
            .parallel
        );
        assert!(settings(&[], &[("AGENT33_PARALLEL", "YES")], "").parallel);
        assert!(settings(&["--parallel"], &[("AGENT33_PARALLEL", "off")], "").parallel);
        assert!(
            !settings(
                &[],
                &[("AGENT33_FAIL_FAST", "0")],
                "execution: {fail_fast: true}"
            )
            .fail_fast
        );
        assert!(settings(&["--fail-fast"], &[("AGENT33_FAIL_FAST", "0")], "").fail_fast);
        assert!(!settings(&["--no-fail-fast"], &[], "execution: {fail_fast: true}").fail_fast);
        assert!(settings(&[], &[], "execution: {respect_dependencies: true}").respect_dependencies);
        assert!(
            !settings(
                &[],
                &[("AGENT33_RESPECT_DEPENDENCIES", "Off")],
                "execution: {mode: dependency-aware}"
            )
            .respect_dependencies
        );
        assert!(settings(&[], &[("AGENT33_CONTINUE_ON_ERROR", "on")], "").continue_on_error);
    }

    /// The mode the engine runs in, named as a dry run names it.
    fn mode(s: &Settings) -> &'static str {
        match (s.parallel, s.respect_dependencies) {
            (false, _) => "sequential",
            (true, false) => "parallel",
            (true, true) => "dependency-aware",
        }
    }

    #[test]
    fn a_limit_or_respect_dependencies_implies_parallel_unless_parallel_is_explicit() {
        type Env<'a> = &'a [(&'a str, &'a str)];
        const LIMIT: &str = "AGENT33_PARALLEL_LIMIT";
        const PAR: &str = "AGENT33_PARALLEL";
        const RESPECT: &str = "AGENT33_RESPECT_DEPENDENCIES";
        // Flags, variables, manifest, then the mode and limit the run gets.
        let cases: &[(&[&str], Env<'_>, &str, &str, usize)] = &[
            (&[], &[], "", "sequential", 4),
            // A limit given anywhere implies parallel …
            (&[], &[(LIMIT, "4")], "", "parallel", 4),
            (&[], &[(LIMIT, "8")], "", "parallel", 8),
            (&[], &[], "execution: {parallel_limit: 3}", "parallel", 3),
            (&[], &[], "execution: {parallel_limit: 4}", "parallel", 4),
            (&["-j", "2"], &[], "", "parallel", 2),
            (
                &[],
                &[(LIMIT, "5")],
                "execution: {parallel_limit: 3}",
                "parallel",
                5,
            ),
            // … unless parallel (or mode:) is explicit somewhere, whatever
            // its rank.
            (
                &[],
                &[(PAR, "false")],
                "execution: {parallel_limit: 3}",
                "sequential",
                3,
            ),
            (
                &[],
                &[(LIMIT, "8")],
                "execution: {parallel: false}",
                "sequential",
                8,
            ),
            (
                &[],
                &[(LIMIT, "8")],
                "execution: {mode: sequential}",
                "sequential",
                8,
            ),
            (&[], &[(LIMIT, "8"), (PAR, "no")], "", "sequential", 8),
            (
                &[],
                &[],
                "execution: {parallel: false, parallel_limit: 3}",
                "sequential",
                3,
            ),
            (
                &[],
                &[(LIMIT, "8")],
                "execution: {parallel: true}",
                "parallel",
                8,
            ),
            (
                &[],
                &[(PAR, "1")],
                "execution: {parallel_limit: 3}",
                "parallel",
                3,
            ),
            // -j is itself an explicit --parallel, at the flags' rank.
            (&["-j", "2"], &[(PAR, "false")], "", "parallel", 2),
            (
                &["-j", "3"],
                &[],
                "execution: {parallel: false}",
                "parallel",
                3,
            ),
            (
                &["-j", "3"],
                &[],
                "execution: {mode: sequential}",
                "parallel",
                3,
            ),
            (&["-j", "3"], &[(RESPECT, "1")], "", "dependency-aware", 3),
            // respect_dependencies: true implies dependency-aware mode …
            (
                &[],
                &[],
                "execution: {respect_dependencies: true}",
                "dependency-aware",
                4,
            ),
            (&[], &[(RESPECT, "1")], "", "dependency-aware", 4),
            (
                &[],
                &[(RESPECT, "yes")],
                "execution: {parallel_limit: 3}",
                "dependency-aware",
                3,
            ),
            (&["--respect-dependencies"], &[], "", "dependency-aware", 4),
            // … unless parallel is explicit; a false one implies nothing.
            (
                &[],
                &[(RESPECT, "1")],
                "execution: {parallel: false}",
                "sequential",
                4,
            ),
            (
                &[],
                &[(RESPECT, "1")],
                "execution: {mode: sequential}",
                "sequential",
                4,
            ),
            (
                &[],
                &[(PAR, "off")],
                "execution: {respect_dependencies: true}",
                "sequential",
                4,
            ),
            (
                &[],
                &[(RESPECT, "0")],
                "execution: {respect_dependencies: true}",
                "sequential",
                4,
            ),
            (
                &[],
                &[],
                "execution: {respect_dependencies: false}",
                "sequential",
                4,
            ),
            (
                &[],
                &[(RESPECT, "1")],
                "execution: {mode: parallel}",
                "dependency-aware",
                4,
            ),
            // --respect-dependencies, like -j, is an explicit --parallel.
            (
                &["--respect-dependencies"],
                &[(PAR, "false")],
                "",
                "dependency-aware",
                4,
            ),
            (
                &["--respect-dependencies"],
                &[],
                "execution: {parallel: false}",
                "dependency-aware",
                4,
            ),
            // The mode shorthand is an explicit manifest value.
            (&[], &[], "execution: {mode: parallel}", "parallel", 4),
            (
                &[],
                &[],
                "execution: {mode: dependency-aware}",
                "dependency-aware",
                4,
            ),
            (
                &[],
                &[(PAR, "no")],
                "execution: {mode: dependency-aware}",
                "sequential",
                4,
            ),
            (
                &["--parallel"],
                &[],
                "execution: {mode: sequential}",
                "parallel",
                4,
            ),
            (&["--parallel"], &[], "", "parallel", 4),
            (&[], &[(PAR, "true")], "", "parallel", 4),
            // An empty variable is unset: it implies nothing.
            (&[], &[(LIMIT, ""), (RESPECT, "")], "", "sequential", 4),
            // An agent's own limit caps that agent only: no global limit.
            (
                &[],
                &[],
                "agents: {a: {command: x, parallel_limit: 2}}\ntasks: [{agent: a, artifact: y}]\n",
                "sequential",
                4,
            ),
        ];
        for (flags, env, manifest, want_mode, want_limit) in cases {
            let s = settings(flags, env, manifest);
            assert_eq!(
                (mode(&s), s.parallel_limit),
                (*want_mode, *want_limit),
                "flags {flags:?}, environment {env:?}, manifest {manifest:?}"
            );
        }
    }

    #[test]
    fn an_implied_parallel_is_credited_to_what_implied_it() {
        let source = |flags: &[&str], env: &[(&str, &str)], manifest: &str| {
            let c = load_with(flags, env, manifest).expect("valid");
            let (_, s) = c
                .sources
                .iter()
                .find(|(k, _)| *k == "parallel")
                .expect("listed");
            s.to_string()
        };
        assert_eq!(
            source(&[], &[("AGENT33_PARALLEL_LIMIT", "8")], ""),
            "environment variable AGENT33_PARALLEL_LIMIT"
        );
        assert!(
            source(&[], &[], "execution:\n  respect_dependencies: true\n")
                .ends_with("agent33.yaml:2:25"),
        );
        assert!(
            source(
                &[],
                &[("AGENT33_PARALLEL_LIMIT", "8")],
                "execution:\n  mode: sequential\n"
            )
            .ends_with("agent33.yaml:2:9"),
        );
        assert_eq!(source(&[], &[], ""), "default");
    }

    #[test]
    fn invalid_values_name_the_setting_and_the_source() {
        type Env<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(&[&str], Env<'_>, &str)] = &[
            (
                &[],
                &[("AGENT33_PARALLEL_LIMIT", "abc")],
                "invalid value \"abc\" for parallel_limit (from environment variable AGENT33_PARALLEL_LIMIT): expected a whole number ≥ 1",
            ),
            (
                &[],
                &[("AGENT33_PARALLEL_LIMIT", "0")],
                "invalid value \"0\" for parallel_limit (from environment variable AGENT33_PARALLEL_LIMIT): expected a whole number ≥ 1",
            ),
            (
                &[],
                &[("AGENT33_FAIL_FAST", "perhaps")],
                "invalid value \"perhaps\" for fail_fast (from environment variable AGENT33_FAIL_FAST): expected true/false/1/0/yes/no/on/off",
            ),
            (
                &[],
                &[("AGENT33_TASK_TIMEOUT", "-1")],
                "invalid value \"-1\" for timeout_seconds (from environment variable AGENT33_TASK_TIMEOUT): expected a number of seconds ≥ 0",
            ),
            (
                &[],
                &[("AGENT33_DEADLINE", "soon")],
                "invalid value \"soon\" for deadline_seconds (from environment variable AGENT33_DEADLINE): expected a number of seconds ≥ 0",
            ),
            (
                &[],
                &[("AGENT33_RETRIES", "-1")],
                "invalid value \"-1\" for retries (from environment variable AGENT33_RETRIES): expected a whole number ≥ 0",
            ),
            (
                &[],
                &[("AGENT33_KILL_GRACE", "nan")],
                "invalid value \"nan\" for kill_grace_seconds (from environment variable AGENT33_KILL_GRACE): expected a number of seconds ≥ 0",
            ),
            (
                &[],
                &[("AGENT33_MAX_FAILURES", "0")],
                "invalid value \"0\" for max_failures (from environment variable AGENT33_MAX_FAILURES): expected a whole number ≥ 1",
            ),
            (
                &[],
                &[("AGENT33_PARALLEL", "2")],
                "invalid value \"2\" for parallel (from environment variable AGENT33_PARALLEL): expected true/false/1/0/yes/no/on/off",
            ),
            (
                &[],
                &[("AGENT33_RESPECT_DEPENDENCIES", "y")],
                "invalid value \"y\" for respect_dependencies (from environment variable AGENT33_RESPECT_DEPENDENCIES)",
            ),
            (
                &[],
                &[("AGENT33_CONTINUE_ON_ERROR", "sure")],
                "invalid value \"sure\" for continue_on_error (from environment variable AGENT33_CONTINUE_ON_ERROR)",
            ),
            (
                &["-j", "0"],
                &[],
                "invalid value \"0\" for parallel_limit (from flag -j/--parallel-limit): expected a whole number ≥ 1",
            ),
            (
                &["--timeout", "-1"],
                &[],
                "invalid value \"-1\" for timeout_seconds (from flag --timeout): expected a number of seconds ≥ 0",
            ),
            (
                &["--timeout", "abc"],
                &[],
                "invalid value \"abc\" for timeout_seconds (from flag --timeout)",
            ),
            (
                &["--max-failures", "0"],
                &[],
                "invalid value \"0\" for max_failures (from flag --max-failures)",
            ),
            (
                &["--retries", "1.5"],
                &[],
                "invalid value \"1.5\" for retries (from flag --retries): expected a whole number ≥ 0",
            ),
            (
                &["--retry-backoff", "-0.1"],
                &[],
                "invalid value \"-0.1\" for retry_backoff_seconds (from flag --retry-backoff)",
            ),
            (
                &["--kill-grace", "x"],
                &[],
                "invalid value \"x\" for kill_grace_seconds (from flag --kill-grace)",
            ),
            (
                &["--deadline", "inf"],
                &[],
                "invalid value \"inf\" for deadline_seconds (from flag --deadline)",
            ),
            (
                &["--output-limit", "-1"],
                &[],
                "invalid value \"-1\" for output_limit_bytes (from flag --output-limit): expected a whole number ≥ 0",
            ),
            // Invalid anywhere is invalid, even where a flag overrides it.
            (
                &["-j", "4"],
                &[("AGENT33_PARALLEL_LIMIT", "abc")],
                "invalid value \"abc\" for parallel_limit (from environment variable AGENT33_PARALLEL_LIMIT)",
            ),
        ];
        for (flags, env, want) in cases {
            let got = error(flags, env, "");
            assert!(got.starts_with(want), "{got}\nwanted: {want}");
        }
        let got = error(&["-j", "4"], &[], "execution: {parallel_limit: 0}");
        assert!(
            got.ends_with(
                "agent33.yaml:1:29: invalid value 0 for parallel_limit: expected a whole number ≥ 1"
            ),
            "{got}"
        );
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let s = settings(
            &[],
            &[("AGENT33_PARALLEL_LIMIT", ""), ("AGENT33_PARALLEL", "")],
            "execution: {parallel_limit: 3}",
        );
        assert_eq!(s.parallel_limit, 3);
    }

    #[test]
    fn continue_on_error_and_max_failures() {
        // The same source: a usage error naming both and the source.
        let got = error(&["--continue-on-error", "--max-failures", "2"], &[], "");
        assert!(got.starts_with("continue_on_error: true (from flag --continue-on-error) and max_failures (from flag --max-failures) cannot be set together"), "{got}");
        let got = error(
            &[],
            &[
                ("AGENT33_CONTINUE_ON_ERROR", "true"),
                ("AGENT33_MAX_FAILURES", "2"),
            ],
            "",
        );
        assert!(got.starts_with("continue_on_error: true (from environment variable AGENT33_CONTINUE_ON_ERROR) and max_failures (from environment variable AGENT33_MAX_FAILURES)"), "{got}");
        let got = error(
            &[],
            &[],
            "execution:\n  max_failures: 2\n  continue_on_error: true\n",
        );
        assert!(
            got.contains("agent33.yaml:3:22: continue_on_error: true"),
            "{got}"
        );
        // continue_on_error: false conflicts with nothing.
        let s = settings(
            &[],
            &[
                ("AGENT33_CONTINUE_ON_ERROR", "false"),
                ("AGENT33_MAX_FAILURES", "2"),
            ],
            "",
        );
        assert!(!s.continue_on_error);
        assert_eq!(s.max_failures, 2);
        // Different sources: the higher precedence wins.
        let s = settings(
            &["--max-failures", "3"],
            &[("AGENT33_CONTINUE_ON_ERROR", "1")],
            "",
        );
        assert!(!s.continue_on_error);
        assert_eq!(s.max_failures, 3);
        let s = settings(
            &["--continue-on-error"],
            &[("AGENT33_MAX_FAILURES", "3")],
            "",
        );
        assert!(s.continue_on_error);
        let s = settings(
            &[],
            &[("AGENT33_MAX_FAILURES", "3")],
            "execution: {continue_on_error: true}",
        );
        assert!(!s.continue_on_error);
        assert_eq!(s.max_failures, 3);
        let s = settings(
            &[],
            &[("AGENT33_CONTINUE_ON_ERROR", "yes")],
            "execution: {max_failures: 3}",
        );
        assert!(s.continue_on_error);
    }

    #[test]
    fn flag_combinations_that_make_no_sense_are_usage_errors() {
        let cases: &[(&[&str], &str)] = &[
            (&["--format", "json"], "--format needs --dry-run"),
            (
                &["--command", "echo", "-f", "m.yaml"],
                "--command cannot be used with -f/--file",
            ),
            (
                &["a.txt"],
                "unexpected argument \"a.txt\": artifacts on the command line need --command TEMPLATE",
            ),
            (
                &["--artifacts-from", "-"],
                "--artifacts-from needs --command TEMPLATE",
            ),
            (
                &["--command", "echo", "--artifacts-from", "-", "x"],
                "give ad-hoc artifacts either as arguments or with --artifacts-from, not both",
            ),
            (&["--command", ""], "invalid --command: command is empty"),
            (
                &["--command", "echo 'x"],
                "invalid --command: cannot split command",
            ),
            (&["--shell"], "--shell needs --command TEMPLATE"),
            (
                &["--command", "cat {artefact}"],
                "invalid --command: unknown placeholder {artefact}",
            ),
            (
                &["--command", "sh -c 'cat {}'"],
                "invalid --command: {} would be pasted into the script that `sh -c` runs",
            ),
            (
                &["--shell", "--command", "cat {}"],
                "invalid --command: a --shell script gets the artifact as \"$1\"",
            ),
        ];
        for (flags, want) in cases {
            let got = RawConfig::new(&args(flags), &|_| None)
                .expect_err(want)
                .to_string();
            assert!(got.starts_with(want), "{got}\nwanted: {want}");
        }
    }

    #[test]
    fn a_missing_default_manifest_hints_at_command() {
        // The tests run in the crate's folder, which has no agent33.yaml.
        let got = RawConfig::new(&args(&[]), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(
            got.starts_with("no manifest: agent33.yaml not found"),
            "{got}"
        );
        assert!(got.contains("--command"), "{got}");
    }

    #[test]
    fn ad_hoc_runs_use_the_command_agent_in_the_current_folder() {
        let c = load_with(
            &[
                "--command",
                "wc -l",
                "-j",
                "3",
                "--dry-run",
                "--format",
                "json",
                "a b.txt",
                "c",
            ],
            &[],
            "",
        )
        .expect("valid");
        assert!(c.manifest_path.is_none());
        assert!(c.options.dry_run);
        assert_eq!(c.options.format, Format::Json);
        assert_eq!(c.agents.len(), 1);
        let agent = &c.agents[0];
        assert_eq!(agent.name, "command");
        assert!(agent.command.appends_artifact());
        assert_eq!(agent.command.working_dir(), None);
        let TaskSource::AdHoc(ArtifactInput::Args(a)) = &c.tasks else {
            panic!("ad-hoc arguments");
        };
        assert_eq!(a, &[OsString::from("a b.txt"), OsString::from("c")]);
        let task = AgentTask::new("command", "a b.txt");
        assert_eq!(
            agent.command.argv(&task),
            ["wc", "-l", "a b.txt"].map(OsString::from)
        );
        // A manifest in the folder is not read, whatever it holds.
        assert!(load_with(&["--command", "x {artifact}"], &[], "garbage: [").is_ok());
    }

    #[test]
    fn ad_hoc_shell_runs_the_template_as_a_script() {
        let c =
            load_with(&["--shell", "--command", "wc -l \"$1\"", "a b"], &[], "").expect("valid");
        let agent = &c.agents[0];
        assert!(!agent.command.appends_artifact());
        assert_eq!(
            agent.command.argv(&AgentTask::new("command", "a b")),
            ["sh", "-c", "wc -l \"$1\"", "sh", "a b"].map(OsString::from)
        );
    }

    #[test]
    fn ad_hoc_artifacts_come_from_one_place() {
        let source = |flags: &[&str]| {
            RawConfig::new(&args(flags), &|_| None)
                .expect("valid")
                .adhoc
                .expect("ad hoc")
                .artifacts
        };
        let listed =
            |words: &[&str]| AdHocArtifacts::Listed(words.iter().map(OsString::from).collect());
        assert_eq!(source(&["--command", "x", "a"]), listed(&["a"]));
        assert_eq!(
            source(&["--command", "x", ":::", "a", "-b"]),
            listed(&["a", "-b"])
        );
        assert_eq!(source(&["--command", "x", ":::"]), listed(&[]));
        for flags in [
            &["--command", "x", "::::", "f"][..],
            &["--command", "x", "--artifacts-from", "f"],
        ] {
            assert_eq!(source(flags), AdHocArtifacts::From(PathBuf::from("f")));
        }
        assert!(matches!(
            source(&["--command", "x"]),
            AdHocArtifacts::Stdin { .. }
        ));
    }

    #[test]
    fn stdin_is_read_unless_it_is_a_terminal() {
        for (flags, separator) in [
            (&["--command", "x"][..], Separator::Newline),
            (&["-0", "--command", "x"], Separator::Nul),
        ] {
            for is_terminal in [false, true] {
                let mut raw = RawConfig::new(&args(flags), &|_| None).expect("valid");
                raw.adhoc.as_mut().expect("ad hoc").artifacts =
                    AdHocArtifacts::Stdin { is_terminal };
                let c = raw.resolve().expect("valid");
                match (&c.tasks, is_terminal) {
                    (TaskSource::AdHoc(ArtifactInput::Args(a)), true) => assert!(a.is_empty()),
                    (TaskSource::AdHoc(ArtifactInput::Stdin { separator: s }), false) => {
                        assert_eq!(*s, separator);
                    }
                    (other, _) => panic!("{other:?} for a terminal: {is_terminal}"),
                }
            }
        }
    }

    #[test]
    fn bare_output_streams_and_keep_order_is_an_option() {
        let c =
            load_with(&["--command", "x", "--output", "bare", "-k", "a"], &[], "").expect("valid");
        assert!(c.settings.stream_output, "bare output needs the live bytes");
        assert!(c.options.keep_order);
    }

    #[test]
    fn keep_order_is_a_setting_of_the_manifest_too() {
        let manifest = "execution:\n  keep_order: true\n";
        let c = load_with(&[], &[], manifest).expect("valid");
        assert!(c.options.keep_order);
        let src: HashMap<_, _> = c.sources.iter().map(|(k, s)| (*k, s.to_string())).collect();
        assert!(src["keep_order"].starts_with("manifest "), "{src:?}");
        let got = error(&[], &[], "execution:\n  keep_order: maybe\n");
        assert!(
            got.ends_with(":2:15: invalid value \"maybe\" for keep_order: expected true/false/1/0/yes/no/on/off"),
            "{got}"
        );
        let got = error(&["--output", "stream"], &[], manifest);
        assert!(
            got.starts_with("-k/--keep-order cannot be used with --output stream"),
            "{got}"
        );
    }

    #[test]
    fn a_missing_artifact_list_is_a_usage_error() {
        let got = error(
            &["--command", "x", "--artifacts-from", "/nonexistent/list"],
            &[],
            "",
        );
        assert!(
            got.starts_with("cannot read artifacts from /nonexistent/list:"),
            "{got}"
        );
    }

    #[test]
    fn manifest_runs_get_tasks_agents_and_options() {
        let c = load_with(
            &["--output", "stream", "--report", "out/r.json", "--junit", "j.xml", "--quiet"],
            &[],
            "agents:\n  a: {command: 'echo {artifact}', parallel_limit: 2, timeout_seconds: 0, retries: 1}\n\
             tasks:\n  - {agent: a, artifact: x, timeout_seconds: 9}\n",
        )
        .expect("valid");
        assert!(c.settings.stream_output);
        assert_eq!(c.options.output, OutputMode::Stream);
        assert_eq!(c.options.report, Some(PathBuf::from("out/r.json")));
        assert_eq!(c.options.junit, Some(PathBuf::from("j.xml")));
        assert!(c.options.quiet);
        assert!(c.manifest_path.is_some());
        let TaskSource::Manifest(tasks) = &c.tasks else {
            panic!("manifest tasks");
        };
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].timeout, Some(Duration::from_secs(9)));
        let a = c.agent("a").expect("defined");
        assert_eq!(a.parallel_limit, Some(2));
        assert_eq!(a.timeout, Some(Duration::ZERO));
        assert_eq!(a.retries, Some(1));
        let agents = c.agents(|_def| {
            |_ctx: agent33_parallel::TaskContext| async {
                Ok::<_, agent33_parallel::AgentError>(())
            }
        });
        assert!(agents.get("a").is_some());
    }

    #[test]
    fn sources_say_where_each_setting_came_from() {
        let c = load_with(
            &["-j", "2"],
            &[("AGENT33_RETRIES", "1")],
            "execution:\n  fail_fast: false\n",
        )
        .expect("valid");
        let src: HashMap<&str, String> =
            c.sources.iter().map(|(k, s)| (*k, s.to_string())).collect();
        assert_eq!(src["parallel"], "flag -j/--parallel-limit");
        assert_eq!(src["parallel_limit"], "flag -j/--parallel-limit");
        assert_eq!(src["retries"], "environment variable AGENT33_RETRIES");
        assert!(
            src["fail_fast"].starts_with("manifest ")
                && src["fail_fast"].ends_with("agent33.yaml:2:14")
        );
        assert_eq!(src["timeout_seconds"], "default");
    }

    #[test]
    fn dependency_errors_stop_every_mode() {
        let manifest =
            "agents: {a: {command: x}}\ntasks:\n  - {agent: a, artifact: x, depends_on: [y]}\n";
        for flags in [&[][..], &["--parallel"][..], &["--dry-run"][..]] {
            let got = error(flags, &[], manifest);
            assert!(
                got.contains("task `a:x` depends on unknown task `y`"),
                "{got}"
            );
        }
    }
}
