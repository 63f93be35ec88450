//! The one table of settings (PRODUCT.md, Settings).
//!
//! Each row of the `settings!` table below names a setting's manifest key, its
//! flag, its environment variable, its type and minimum, its help line and
//! the field it sets. Everything else is driven from the table: the flags of
//! `agent-33 run` and their `--help` lines (defaults rendered from the
//! engine's own [`Settings::default`], never written twice), the environment
//! layer, the manifest's `execution:` keys, the merge, and the settings list
//! of the docs ([`markdown_table`]). Adding a setting is one row here plus
//! its use where it takes effect.
//!
//! What a row cannot say lives with the merge in [`crate::config`]: the
//! mode rules (a limit implies `parallel`), the stop rule
//! (`continue_on_error` against `max_failures`) and the manifest's `mode:`
//! shorthand.

use std::ffi::OsString;
use std::time::Duration;

use agent33_parallel::Settings;
use clap::{Arg, ArgAction, ArgMatches, Command};
use serde::Deserialize;

use crate::error::{Result, UsageError};
use crate::scalar::Scalar;
use crate::values::{Kind, Source, Sourced, invalid_value, parse_bool, parse_seconds, whole};

/// How a setting is spelled on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// A switch that sets the setting to true (`--parallel`).
    Switch(&'static str),
    /// A switch and its negation (`--fail-fast`, `--no-fail-fast`), with the
    /// negation's help line.
    Pair {
        /// Sets the setting to true.
        on: &'static str,
        /// Sets it to false.
        off: &'static str,
        /// What the negation does.
        off_help: &'static str,
    },
    /// A flag that takes a value, spelled as messages name it
    /// (`-j/--parallel-limit`), and the value's name in `--help` (`N`).
    Value(&'static str, &'static str),
}

/// One row of the table, the parts that are plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// The name in messages and the manifest's `execution:` key.
    pub key: &'static str,
    /// The flag.
    pub flag: Flag,
    /// The `AGENT33_*` environment variable, if the setting has one.
    pub env: Option<&'static str>,
    /// The smallest whole number allowed (whole-number settings only).
    pub min: u64,
    /// The help line, without default and variable (they are added).
    pub help: &'static str,
}

/// A type a setting's value can have: how it is read from text (flags,
/// variables) and from a YAML scalar, and how its default is shown.
pub trait SettingValue: Sized + Clone {
    /// The type column of the docs' table (`int ≥ 1`).
    fn type_name(min: u64) -> String;
    /// Reads the value from text; the error is what to report.
    ///
    /// # Errors
    ///
    /// The [`Kind`] of value expected.
    fn from_text(raw: &str, min: u64) -> Result<Self, Kind>;
    /// Reads the value from the manifest.
    ///
    /// # Errors
    ///
    /// The [`Kind`] of value expected.
    fn from_scalar(scalar: &Scalar, min: u64) -> Result<Self, Kind>;
    /// The value as `--help` shows a default (`300`).
    fn render(&self) -> String;
    /// The value as the docs' table shows a default (`0 (none)`).
    fn render_doc(&self) -> String {
        self.render()
    }
}

impl SettingValue for bool {
    fn type_name(_: u64) -> String {
        "bool".to_owned()
    }
    fn from_text(raw: &str, _: u64) -> Result<Self, Kind> {
        parse_bool(raw).ok_or(Kind::Bool)
    }
    fn from_scalar(scalar: &Scalar, _: u64) -> Result<Self, Kind> {
        scalar.to_bool().ok_or(Kind::Bool)
    }
    fn render(&self) -> String {
        self.to_string()
    }
}

macro_rules! whole_setting {
    ($($t:ty),*) => {$(
        impl SettingValue for $t {
            fn type_name(min: u64) -> String {
                format!("int ≥ {min}")
            }
            fn from_text(raw: &str, min: u64) -> Result<Self, Kind> {
                whole(raw, min)
            }
            fn from_scalar(scalar: &Scalar, min: u64) -> Result<Self, Kind> {
                scalar.to_whole(min)
            }
            fn render(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
whole_setting!(usize, u32);

impl SettingValue for Duration {
    fn type_name(_: u64) -> String {
        "number ≥ 0".to_owned()
    }
    fn from_text(raw: &str, _: u64) -> Result<Self, Kind> {
        parse_seconds(raw).ok_or(Kind::Seconds)
    }
    fn from_scalar(scalar: &Scalar, _: u64) -> Result<Self, Kind> {
        scalar.to_seconds().ok_or(Kind::Seconds)
    }
    fn render(&self) -> String {
        self.as_secs_f64().to_string()
    }
}

/// Seconds where 0 means "none" (`timeout_seconds`, `deadline_seconds`):
/// the one place that zero is decoded.
impl SettingValue for Option<Duration> {
    fn type_name(min: u64) -> String {
        Duration::type_name(min)
    }
    fn from_text(raw: &str, min: u64) -> Result<Self, Kind> {
        Duration::from_text(raw, min).map(none_if_zero)
    }
    fn from_scalar(scalar: &Scalar, min: u64) -> Result<Self, Kind> {
        Duration::from_scalar(scalar, min).map(none_if_zero)
    }
    fn render(&self) -> String {
        self.unwrap_or(Duration::ZERO).render()
    }
    fn render_doc(&self) -> String {
        match self {
            Some(d) => d.render(),
            None => "0 (none)".to_owned(),
        }
    }
}

fn none_if_zero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// What the table's rows set: the engine's settings and the CLI's own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    /// The engine's settings.
    pub engine: Settings,
    /// Settings only the CLI uses.
    pub cli: CliSettings,
}

/// Settings that shape what the CLI prints, not how the engine runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CliSettings {
    /// Task output reaches stdout in input order.
    pub keep_order: bool,
}

/// The table. Each row: `field: type => group { key, flag, env, min, help }`,
/// where `group.field` is what the setting sets in [`Resolved`] (and
/// `field` also names it in [`Layer`]). Rows are in PRODUCT.md's order,
/// which is the order of `--help`, of the docs and of "expected one of"
/// for an unknown `execution:` key.
macro_rules! settings {
    ($(
        $field:ident: $ty:ty => $group:ident {
            key: $key:literal,
            flag: $flag:expr,
            env: $env:expr,
            min: $min:expr,
            help: $help:literal $(,)?
        }
    )*) => {
        /// Every setting, in the table's order.
        pub const SETTINGS: &[Spec] = &[$(
            Spec { key: $key, flag: $flag, env: $env, min: $min, help: $help },
        )*];

        /// The settings one source sets, each validated, with its place.
        /// `None` means "not set here".
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct Layer {
            $(
                #[doc = concat!("`", $key, "`.")]
                pub $field: Option<Sourced<$ty>>,
            )*
        }

        /// Every setting's value after the merge, with where it came from.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Picked {
            $(
                #[doc = concat!("`", $key, "`.")]
                pub $field: Sourced<$ty>,
            )*
        }

        /// The manifest's `execution:` block as written: each setting's
        /// key, and the `mode:` shorthand.
        #[derive(Debug, Default, Deserialize)]
        #[serde(
            deny_unknown_fields,
            expecting = "the `execution` settings (a mapping)"
        )]
        pub struct RawExecution {
            /// `mode:` (shorthand for `parallel` and `respect_dependencies`).
            pub mode: Option<Scalar>,
            $(
                #[doc = concat!("`", $key, ":`.")]
                #[serde(rename = $key)]
                pub $field: Option<Scalar>,
            )*
        }

        impl Layer {
            /// Reads every setting `get` has a value for, in the table's order.
            fn read(
                mut get: impl FnMut(&'static Spec) -> Result<Option<(String, Source)>>,
            ) -> Result<Self> {
                let mut layer = Self::default();
                let mut specs = SETTINGS.iter();
                $(
                    let spec = specs.next().expect("one spec per row");
                    if let Some((raw, source)) = get(spec)? {
                        layer.$field = Some(from_text(spec, &raw, source)?);
                    }
                )*
                Ok(layer)
            }

            /// The settings of a manifest's `execution:` block (without
            /// `mode:`); `at` gives the place of a key's value.
            ///
            /// # Errors
            ///
            /// A usage error at the place of the first invalid value.
            pub fn from_execution(
                raw: &RawExecution,
                at: &dyn Fn(&str) -> Source,
            ) -> Result<Self> {
                let mut layer = Self::default();
                $(
                    if let Some(scalar) = &raw.$field {
                        let source = at($key);
                        layer.$field = Some(match <$ty>::from_scalar(scalar, $min) {
                            Ok(value) => Sourced::new(value, source),
                            Err(kind) => {
                                return Err(invalid_value($key, &scalar.to_string(), &source, kind));
                            }
                        });
                    }
                )*
                Ok(layer)
            }
        }

        impl Picked {
            /// Each setting's highest-precedence value, or its default.
            #[must_use]
            pub fn pick(layers: [&Layer; 3]) -> Self {
                let d = Resolved::default();
                Self {
                    $( $field: pick(layers, |l| &l.$field, d.$group.$field), )*
                }
            }

            /// Sets each setting's field; returns where each came from, in
            /// the table's order.
            pub fn apply(self, to: &mut Resolved) -> Vec<(&'static str, Source)> {
                $( to.$group.$field = self.$field.value; )*
                vec![$( ($key, self.$field.source) ),*]
            }
        }

        /// Each setting's type column and default, as `--help` shows it and
        /// as the docs do, in the table's order.
        fn shown() -> Vec<(String, String, String)> {
            let d = Resolved::default();
            vec![$(
                (
                    <$ty>::type_name($min),
                    SettingValue::render(&d.$group.$field),
                    SettingValue::render_doc(&d.$group.$field),
                ),
            )*]
        }
    };
}

settings! {
    parallel: bool => engine {
        key: "parallel",
        flag: Flag::Switch("--parallel"),
        env: Some("AGENT33_PARALLEL"),
        min: 0,
        help: "Run tasks in parallel (see Modes below)",
    }
    parallel_limit: usize => engine {
        key: "parallel_limit",
        flag: Flag::Value("-j/--parallel-limit", "N"),
        env: Some("AGENT33_PARALLEL_LIMIT"),
        min: 1,
        help: "Most tasks at once; also sets --parallel",
    }
    respect_dependencies: bool => engine {
        key: "respect_dependencies",
        flag: Flag::Switch("--respect-dependencies"),
        env: Some("AGENT33_RESPECT_DEPENDENCIES"),
        min: 0,
        help: "Honour depends_on; sets --parallel",
    }
    timeout: Option<Duration> => engine {
        key: "timeout_seconds",
        flag: Flag::Value("--timeout", "S"),
        env: Some("AGENT33_TASK_TIMEOUT"),
        min: 0,
        help: "Per-task timeout, seconds; 0 = none",
    }
    continue_on_error: bool => engine {
        key: "continue_on_error",
        flag: Flag::Switch("--continue-on-error"),
        env: Some("AGENT33_CONTINUE_ON_ERROR"),
        min: 0,
        help: "Never stop for failures",
    }
    max_failures: u32 => engine {
        key: "max_failures",
        flag: Flag::Value("--max-failures", "N"),
        env: Some("AGENT33_MAX_FAILURES"),
        min: 1,
        help: "Stop after N failed tasks",
    }
    fail_fast: bool => engine {
        key: "fail_fast",
        flag: Flag::Pair {
            on: "--fail-fast",
            off: "--no-fail-fast",
            off_help: "At a stop, let running tasks finish",
        },
        env: Some("AGENT33_FAIL_FAST"),
        min: 0,
        help: "At a stop, cancel running tasks",
    }
    retries: u32 => engine {
        key: "retries",
        flag: Flag::Value("--retries", "N"),
        env: Some("AGENT33_RETRIES"),
        min: 0,
        help: "Extra attempts for a failed task",
    }
    retry_backoff: Duration => engine {
        key: "retry_backoff_seconds",
        flag: Flag::Value("--retry-backoff", "S"),
        env: None,
        min: 0,
        help: "Seconds before the first retry, then doubling",
    }
    kill_grace: Duration => engine {
        key: "kill_grace_seconds",
        flag: Flag::Value("--kill-grace", "S"),
        env: Some("AGENT33_KILL_GRACE"),
        min: 0,
        help: "Seconds from SIGTERM to SIGKILL",
    }
    deadline: Option<Duration> => engine {
        key: "deadline_seconds",
        flag: Flag::Value("--deadline", "S"),
        env: Some("AGENT33_DEADLINE"),
        min: 0,
        help: "Whole-run deadline, seconds; 0 = none",
    }
    output_limit_bytes: usize => engine {
        key: "output_limit_bytes",
        flag: Flag::Value("--output-limit", "BYTES"),
        env: None,
        min: 0,
        help: "Bytes of stdout and stderr kept per task",
    }
    keep_order: bool => cli {
        key: "keep_order",
        flag: Flag::Switch("-k/--keep-order"),
        env: None,
        min: 0,
        help: "Task output reaches stdout in input order, not as tasks finish",
    }
}

/// The row of the setting named `key`.
///
/// # Panics
///
/// If no row has that key: callers name settings of the table.
#[must_use]
pub fn spec(key: &str) -> &'static Spec {
    SETTINGS
        .iter()
        .find(|s| s.key == key)
        .expect("a setting of the table")
}

/// The environment variable of the setting named `key`.
///
/// # Panics
///
/// If the setting has none: callers name settings that have one.
#[must_use]
pub fn env_var(key: &str) -> &'static str {
    spec(key).env.expect("a setting with a variable")
}

fn from_text<T: SettingValue>(spec: &Spec, raw: &str, source: Source) -> Result<Sourced<T>> {
    match T::from_text(raw, spec.min) {
        Ok(value) => Ok(Sourced::new(value, source)),
        Err(kind) => Err(invalid_value(spec.key, &format!("{raw:?}"), &source, kind)),
    }
}

fn pick<T: Clone>(
    layers: [&Layer; 3],
    get: impl Fn(&Layer) -> &Option<Sourced<T>>,
    default: T,
) -> Sourced<T> {
    layers
        .iter()
        .find_map(|l| get(l).clone())
        .unwrap_or(Sourced::new(default, Source::Default))
}

/// Looks up an environment variable; tests pass a map instead of the
/// process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<OsString>;

impl Layer {
    /// The settings given as flags, each only its own setting.
    ///
    /// # Errors
    ///
    /// A usage error naming the setting and the flag for a bad value.
    pub fn from_setting_flags(flags: &SettingFlags) -> Result<Self> {
        Self::read(|spec| {
            Ok(flags
                .given
                .iter()
                .find(|(key, _, _)| *key == spec.key)
                .map(|(_, raw, flag)| (raw.clone(), Source::Flag(flag))))
        })
    }

    /// The settings given as `AGENT33_*` environment variables. Each sets
    /// only its own setting. A variable that is set but empty counts as
    /// unset (as with clap and most tools), so `AGENT33_PARALLEL= agent-33
    /// …` is a way to clear one.
    ///
    /// # Errors
    ///
    /// A usage error naming the setting and the variable for a bad value.
    pub fn from_env(env: EnvLookup<'_>) -> Result<Self> {
        Self::read(|spec| {
            let Some(var) = spec.env else {
                return Ok(None);
            };
            match env(var) {
                None => Ok(None),
                Some(v) if v.is_empty() => Ok(None),
                Some(v) => match v.into_string() {
                    Ok(s) => Ok(Some((s, Source::Env(var)))),
                    Err(v) => Err(UsageError::new(format_args!(
                        "invalid value {:?} for {} (from environment variable {var}): \
                         not valid UTF-8",
                        v.to_string_lossy(),
                        spec.key
                    ))),
                },
            }
        })
    }
}

/// The settings' flags as given on the command line, as raw text: values
/// are validated by [`Layer::from_setting_flags`], so a bad value gets the
/// same message shape from a flag, a variable or the manifest ("invalid
/// value "abc" for parallel_limit (from flag -j/--parallel-limit): …"),
/// and a flag stays told apart from a variable (clap's own `env` support
/// would merge them).
///
/// Its flags are built from the table with clap's builder API and
/// flattened into `agent-33 run`'s derived ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingFlags {
    /// (setting, text, flag as messages name it), in the table's order.
    given: Vec<(&'static str, String, &'static str)>,
}

impl SettingFlags {
    /// Whether the setting named `key` was given as a flag.
    #[must_use]
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The text given for the setting named `key` (a switch gives `true`,
    /// its negation `false`).
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.given
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, raw, _)| raw.as_str())
    }
}

/// A flag's spelling split into its short letter and long name:
/// `-j/--parallel-limit` → (`j`, `parallel-limit`).
fn short_and_long(spelling: &'static str) -> (Option<char>, &'static str) {
    match spelling.split_once('/') {
        Some((short, long)) => (
            short.strip_prefix('-').and_then(|s| s.chars().next()),
            long.trim_start_matches('-'),
        ),
        None => (None, spelling.trim_start_matches('-')),
    }
}

const HEADING: &str = "Execution";

impl clap::Args for SettingFlags {
    fn augment_args(mut cmd: Command) -> Command {
        for (spec, (_, default, _)) in SETTINGS.iter().zip(shown()) {
            let env = spec.env.map(|v| format!(" [env: {v}]")).unwrap_or_default();
            let help = format!("{} [default: {default}]{env}", spec.help);
            let switch = |spelling: &'static str, help: String| {
                let (short, long) = short_and_long(spelling);
                let arg = Arg::new(long)
                    .long(long)
                    .action(ArgAction::SetTrue)
                    .help(help)
                    .help_heading(HEADING);
                match short {
                    Some(c) => arg.short(c),
                    None => arg,
                }
            };
            cmd = match spec.flag {
                Flag::Switch(spelling) => cmd.arg(switch(spelling, help)),
                Flag::Pair { on, off, off_help } => {
                    let off_env = spec
                        .env
                        .map(|v| format!(" [env: {v}=false]"))
                        .unwrap_or_default();
                    cmd.arg(switch(on, help).overrides_with(short_and_long(off).1))
                        .arg(
                            switch(off, format!("{off_help}{off_env}"))
                                .overrides_with(short_and_long(on).1),
                        )
                }
                Flag::Value(spelling, value_name) => {
                    let (short, long) = short_and_long(spelling);
                    let mut arg = Arg::new(long)
                        .long(long)
                        .value_name(value_name)
                        .action(ArgAction::Set)
                        .allow_negative_numbers(true)
                        .help(help)
                        .help_heading(HEADING);
                    if let Some(c) = short {
                        arg = arg.short(c);
                    }
                    cmd.arg(arg)
                }
            };
        }
        cmd
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for SettingFlags {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let on = |spelling: &'static str| m.get_flag(short_and_long(spelling).1);
        let mut given = Vec::new();
        for spec in SETTINGS {
            let value = match spec.flag {
                Flag::Switch(s) => on(s).then(|| ("true".to_owned(), s)),
                Flag::Pair {
                    on: yes, off: no, ..
                } => {
                    if on(yes) {
                        Some(("true".to_owned(), yes))
                    } else if on(no) {
                        Some(("false".to_owned(), no))
                    } else {
                        None
                    }
                }
                Flag::Value(spelling, _) => m
                    .get_one::<String>(short_and_long(spelling).1)
                    .map(|v| (v.clone(), spelling)),
            };
            if let Some((raw, flag)) = value {
                given.push((spec.key, raw, flag));
            }
        }
        Ok(Self { given })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

/// The settings as PRODUCT.md's table lists them (setting, type, default,
/// flag, environment), in Markdown; the docs' list is this text.
#[must_use]
pub fn markdown_table() -> String {
    let mut out =
        String::from("| setting | type | default | flag | environment |\n|---|---|---|---|---|\n");
    for (spec, (type_name, _, default)) in SETTINGS.iter().zip(shown()) {
        let flag = match spec.flag {
            Flag::Switch(s) => format!("`{}`", s.replace('/', ", ")),
            Flag::Pair { on, off, .. } => format!("`{on}` / `{off}`"),
            Flag::Value(spelling, value_name) => {
                format!("`{} {value_name}`", spelling.replace('/', ", "))
            }
        };
        let env = spec.env.map_or("—".to_owned(), |v| format!("`{v}`"));
        out.push_str(&format!(
            "| `{}` | {type_name} | {default} | {flag} | {env} |\n",
            spec.key
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The workspace's root, from this crate's folder.
    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(2)
            .expect("crates/agent33-cli sits two levels down")
    }

    #[test]
    fn the_table_defaults_are_the_engines() {
        let d = Settings::default();
        let shown = shown();
        let default_of = |key: &str| {
            let i = SETTINGS.iter().position(|s| s.key == key).expect("a row");
            shown[i].1.clone()
        };
        assert_eq!(default_of("parallel_limit"), d.parallel_limit.to_string());
        assert_eq!(default_of("timeout_seconds"), "300");
        assert_eq!(default_of("deadline_seconds"), "0");
        assert_eq!(shown[SETTINGS.len() - 1].0, "bool");
    }

    #[test]
    fn keys_flags_and_variables_are_unique() {
        for (i, a) in SETTINGS.iter().enumerate() {
            for b in &SETTINGS[i + 1..] {
                assert_ne!(a.key, b.key);
                assert!(a.env.is_none() || a.env != b.env, "{}", a.key);
                assert_ne!(a.flag, b.flag, "{}", a.key);
            }
        }
    }

    /// Each variable is spelled once in the product's code: here. Tests
    /// (the `mod tests` at a file's end) and doc comments may spell it.
    #[test]
    fn each_variable_is_written_once_in_the_product() {
        let mut files = Vec::new();
        for krate in std::fs::read_dir(root().join("crates")).expect("crates/") {
            let src = krate.expect("an entry").path().join("src");
            let mut stack = vec![src];
            while let Some(dir) = stack.pop() {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for e in entries {
                    let path = e.expect("an entry").path();
                    if path.is_dir() {
                        stack.push(path);
                    } else if path.extension().is_some_and(|x| x == "rs") {
                        files.push(path);
                    }
                }
            }
        }
        for var in SETTINGS.iter().filter_map(|s| s.env) {
            let quoted = format!("\"{var}\"");
            let mut found = Vec::new();
            for path in &files {
                let text = std::fs::read_to_string(path).expect("readable source");
                let product = text.split("\n#[cfg(test)]").next().unwrap_or_default();
                let code = product
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .filter(|l| l.contains(&quoted))
                    .count();
                if code > 0 {
                    found.push((path.display().to_string(), code));
                }
            }
            assert_eq!(found.len(), 1, "{var}: {found:?}");
            assert_eq!(found[0].1, 1, "{var}: {found:?}");
            assert!(found[0].0.ends_with("settings.rs"), "{var}: {found:?}");
        }
    }

    #[test]
    fn help_shows_every_rows_flag_default_and_variable() {
        use clap::CommandFactory as _;
        let mut cli = crate::args::Cli::command();
        let run = cli.find_subcommand_mut("run").expect("run exists");
        let help = run.render_long_help().to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        for (spec, (_, default, _)) in SETTINGS.iter().zip(shown()) {
            let env = spec.env.map(|v| format!(" [env: {v}]")).unwrap_or_default();
            let line = format!("{} [default: {default}]{env}", spec.help);
            assert!(help.contains(&line), "--help lacks {line:?}:\n{help}");
            let (_, long) = match spec.flag {
                Flag::Switch(s) | Flag::Value(s, _) | Flag::Pair { on: s, .. } => short_and_long(s),
            };
            assert!(help.contains(&format!("--{long}")), "--help lacks --{long}");
        }
    }

    /// README's settings list is the table's (regenerate it with
    /// [`markdown_table`] when a row changes).
    #[test]
    fn the_readme_lists_the_table() {
        let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
        let table = markdown_table();
        assert!(
            readme.contains(&table),
            "README.md's settings table is not the table of settings.rs; it should read:\n{table}"
        );
    }
}
