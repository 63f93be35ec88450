//! The YAML manifest (`agent33.yaml`): `execution:`, `agents:`, `tasks:`.
//!
//! Strict: unknown keys are errors at every level (a typo like
//! `paralel_limit` must not be ignored), and every error starts with the
//! file and, where the error sits at a place in it, `line:column`
//! (`agent33.yaml:14:5: unknown agent `lint` in task 3`).
//!
//! [`Manifest::parse`] is pure: it validates everything that needs only
//! the text. [`Manifest::tasks`] then touches the file system: it expands
//! `artifacts:` globs relative to the manifest's folder, checks that ids
//! are unique and validates dependencies. Running anything is not this
//! module's business.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent33_parallel::{AgentName, AgentTask, TaskId};
use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};

use crate::config::{AgentDef, DEFAULT_MANIFEST, Layer, manifest_dir};
use crate::error::{Result, UsageError};
use crate::template::{CommandTemplate, TaskCommand};
use crate::values::{
    Kind, Place, Source, Sourced, invalid_value, parse_bool, parse_seconds, saturating, seconds,
    whole,
};
use crate::yaml::{
    MAX_FLOW_DEPTH, Seg, duplicate_key, error_message, flow_too_deep, locate, refused_char,
};
use agent33_parallel::plan::{self, PlanError};

// ----- raw YAML shapes -----

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a manifest: a mapping with `execution`, `agents` and `tasks`"
)]
struct RawManifest {
    execution: Option<RawExecution>,
    agents: Option<UniqueMap<RawAgent>>,
    tasks: Option<Vec<RawTask>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "the `execution` settings (a mapping)"
)]
struct RawExecution {
    mode: Option<Scalar>,
    parallel: Option<Scalar>,
    parallel_limit: Option<Scalar>,
    respect_dependencies: Option<Scalar>,
    timeout_seconds: Option<Scalar>,
    continue_on_error: Option<Scalar>,
    max_failures: Option<Scalar>,
    fail_fast: Option<Scalar>,
    retries: Option<Scalar>,
    retry_backoff_seconds: Option<Scalar>,
    kill_grace_seconds: Option<Scalar>,
    deadline_seconds: Option<Scalar>,
    output_limit_bytes: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an agent: a mapping with `command` and optional `shell`, `parallel_limit`, `timeout_seconds`, `retries`, `env`, `cwd`"
)]
struct RawAgent {
    command: CommandValue,
    shell: Option<Scalar>,
    parallel_limit: Option<Scalar>,
    timeout_seconds: Option<Scalar>,
    retries: Option<Scalar>,
    env: Option<UniqueMap<Word>>,
    cwd: Option<Word>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a task: a mapping with `agent` and `artifact` or `artifacts`"
)]
struct RawTask {
    agent: Word,
    artifact: Option<Word>,
    artifacts: Option<Words>,
    id: Option<Word>,
    depends_on: Option<Words>,
    timeout_seconds: Option<Scalar>,
    retries: Option<Scalar>,
}

/// A single YAML scalar, typed later so that a bad value gets the same
/// message shape as a bad flag or variable.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(i) => write!(f, "{i}"),
            // `4.0`, not `4`: "invalid value 4 for parallel_limit: expected
            // a whole number" would contradict itself.
            Self::Float(x) => write!(f, "{x:?}"),
            Self::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl Scalar {
    /// Booleans: YAML's `true`/`false`, and the environment's words
    /// (`yes`, `on`, `1`, …) for people used to YAML 1.1.
    fn to_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            Self::Int(0) => Some(false),
            Self::Int(1) => Some(true),
            Self::Str(s) => parse_bool(s),
            _ => None,
        }
    }

    /// Whole numbers, as [`whole`] takes them from text; a float such as
    /// `4.0` is refused (it is not a count). The error is what to report.
    fn to_whole<T: TryFrom<u64>>(&self, min: u64) -> std::result::Result<T, Kind> {
        let below = if min == 0 {
            Kind::Count
        } else {
            Kind::Positive
        };
        match self {
            Self::Int(i) if *i > i128::from(u64::MAX) => Err(Kind::WithinU64),
            // YAML reads a whole number beyond 128 bits as a float; it is
            // refused for its size, not for being a fraction.
            Self::Float(x) if x.fract() == 0.0 && *x >= 18_446_744_073_709_551_616.0 => {
                Err(Kind::WithinU64)
            }
            Self::Int(i) => u64::try_from(*i)
                .ok()
                .filter(|n| *n >= min)
                .and_then(saturating)
                .ok_or(below),
            Self::Str(s) => whole(s, min),
            _ => Err(below),
        }
    }

    fn to_seconds(&self) -> Option<Duration> {
        match self {
            #[expect(
                clippy::cast_precision_loss,
                reason = "seconds beyond 2^53 are refused later anyway"
            )]
            Self::Int(i) => seconds(*i as f64),
            Self::Float(x) => seconds(*x),
            Self::Str(s) => parse_seconds(s),
            Self::Bool(_) => None,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a single value (a number, true/false or text)")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> std::result::Result<Scalar, E> {
                // Beyond i128 is beyond every setting: refused all the same.
                Ok(Scalar::Int(i128::try_from(v).unwrap_or(i128::MAX)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Str(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Text; a number or boolean written without quotes is taken as its text
/// (`env: { WORKERS: 4 }`, `artifact: 2024`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Word(String);

impl<'de> Deserialize<'de> for Word {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Word;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("text")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Word, E> {
                Ok(Word(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Word, E> {
                Ok(Word(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Word, E> {
                Ok(Word(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Word, E> {
                Ok(Word(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Word, E> {
                Ok(Word(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// One text or a list of texts (`depends_on: a` or `depends_on: [a, b]`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Words {
    One(String),
    List(Vec<String>),
}

impl Words {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::List(v) => v,
        }
    }
}

impl<'de> Deserialize<'de> for Words {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Words;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("text or a list of texts")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Words, E> {
                Ok(Words::One(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Words, A::Error> {
                let mut v = Vec::new();
                while let Some(Word(w)) = seq.next_element()? {
                    v.push(w);
                }
                Ok(Words::List(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// An agent's `command`: a string to split, or a list of words.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CommandValue {
    Text(String),
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for CommandValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match Words::deserialize(d)? {
            Words::One(s) => Ok(Self::Text(s)),
            Words::List(v) => Ok(Self::List(v)),
        }
    }
}

/// A mapping whose keys keep their order and may not repeat.
#[derive(Debug)]
struct UniqueMap<V>(Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Vis<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
            type Value = UniqueMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<UniqueMap<V>, A::Error> {
                let mut out: Vec<(String, V)> = Vec::new();
                while let Some(Word(k)) = map.next_key()? {
                    if out.iter().any(|(seen, _)| *seen == k) {
                        return Err(de::Error::custom(format_args!("duplicate key `{k}`")));
                    }
                    let v = map.next_value()?;
                    out.push((k, v));
                }
                Ok(UniqueMap(out))
            }
        }
        d.deserialize_map(Vis(std::marker::PhantomData))
    }
}

// ----- the validated manifest -----

/// What one `tasks:` entry names: one artifact, or globs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryArtifacts {
    /// `artifact:`, passed as written.
    One(String),
    /// `artifacts:`, globs relative to the manifest's folder.
    Globs(Vec<String>),
}

/// One `tasks:` entry, validated but not expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEntry {
    /// The agent (known to exist).
    pub agent: AgentName,
    /// Its artifact or globs.
    pub artifacts: EntryArtifacts,
    /// `id:` (only with `artifact:`).
    pub id: Option<TaskId>,
    /// `depends_on:`.
    pub depends_on: Vec<TaskId>,
    /// `timeout_seconds:` (`Duration::ZERO` = none).
    pub timeout: Option<Duration>,
    /// `retries:`.
    pub retries: Option<u32>,
    /// `artifacts:` was a single string rather than a list (for places).
    globs_as_text: bool,
}

/// A parsed, validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    path: PathBuf,
    file: String,
    dir: PathBuf,
    text: String,
    /// The `execution:` block as a settings layer (with `mode:` applied).
    pub execution: Layer,
    /// The agents, in manifest order.
    pub agents: Vec<AgentDef>,
    /// The `tasks:` entries, in order.
    pub entries: Vec<TaskEntry>,
}

/// 1-based "task N" for messages: people count entries from one.
fn nth(i: usize) -> usize {
    i + 1
}

impl Manifest {
    /// Reads and parses the manifest at `path`. `explicit` tells whether
    /// the user named it (`-f`) or it is the default `agent33.yaml`, for
    /// the message when it is missing.
    ///
    /// # Errors
    ///
    /// A usage error when it cannot be read or is invalid.
    pub fn read(path: &Path, explicit: bool) -> Result<Self> {
        let text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8(bytes).map_err(|_| {
                UsageError::new(format_args!(
                    "cannot read manifest {}: it is not valid UTF-8",
                    path.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Err(UsageError::new(format_args!(
                    "no manifest: {DEFAULT_MANIFEST} not found in the current folder \
                     (name one with -f PATH, or run ad hoc with --command TEMPLATE)"
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(UsageError::new(format_args!(
                    "manifest {} not found",
                    path.display()
                )));
            }
            Err(e) => {
                return Err(UsageError::new(format_args!(
                    "cannot read manifest {}: {e}",
                    path.display()
                )));
            }
        };
        Self::parse(path, text)
    }

    /// Parses and validates manifest text; `path` names the file in
    /// messages and its folder anchors relative paths. Touches nothing on
    /// disk.
    ///
    /// # Errors
    ///
    /// A usage error starting with `file:line:col:` where the place is
    /// known.
    pub fn parse(path: &Path, text: String) -> Result<Self> {
        let file = path.display().to_string();
        // libyaml counts a byte-order mark as a column of the first line;
        // editors do not show it, so places on that line were one off.
        let text = match text.strip_prefix('\u{feff}') {
            Some(rest) => rest.to_owned(),
            None => text,
        };
        if let Some((c, line, col)) = refused_char(&text) {
            return Err(UsageError::new(format_args!(
                "{file}:{line}:{col}: character U+{:04X} is not allowed in a YAML file",
                u32::from(c)
            )));
        }
        if let Some((line, col)) = flow_too_deep(&text, MAX_FLOW_DEPTH) {
            return Err(UsageError::new(format_args!(
                "{file}:{line}:{col}: `[` and `{{` nested more than {MAX_FLOW_DEPTH} levels deep \
                 (a manifest needs a few; quote text that holds brackets)"
            )));
        }
        // An empty document (or only comments) is an empty manifest.
        let raw: RawManifest = match serde_norway::from_str::<Option<RawManifest>>(&text) {
            Ok(raw) => raw.unwrap_or_default(),
            Err(e) => {
                // serde places a repeated key at the start of its mapping.
                let msg = e.to_string();
                let e = if msg.contains("duplicate key `") || msg.contains("duplicate field `") {
                    duplicate_key(&text).unwrap_or(e)
                } else {
                    e
                };
                return Err(UsageError::new(error_message(&file, &text, &e)));
            }
        };
        let mut m = Self {
            path: path.to_owned(),
            file,
            dir: manifest_dir(path),
            text,
            execution: Layer::default(),
            agents: Vec::new(),
            entries: Vec::new(),
        };
        m.execution = m.execution_layer(raw.execution.unwrap_or_default())?;
        m.agents = m.agent_defs(raw.agents.map(|a| a.0).unwrap_or_default())?;
        m.entries = m.task_entries(raw.tasks.unwrap_or_default())?;
        Ok(m)
    }

    /// The manifest's path, as given.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder relative paths start from (`.` for `agent33.yaml`).
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn place(&self, path: &[Seg<'_>], key: bool) -> Place {
        Place {
            file: self.file.clone(),
            line_col: locate(&self.text, path, key),
        }
    }

    fn error_at(&self, path: &[Seg<'_>], key: bool, msg: impl fmt::Display) -> UsageError {
        UsageError::new(format_args!("{}: {msg}", self.place(path, key)))
    }

    fn execution_layer(&self, raw: RawExecution) -> Result<Layer> {
        let at = |key: &str| {
            Source::Manifest(self.place(&[Seg::Key("execution"), Seg::Key(key)], false))
        };
        let bool_of = |key: &str, v: &Option<Scalar>| -> Result<Option<Sourced<bool>>> {
            v.as_ref()
                .map(|s| match s.to_bool() {
                    Some(b) => Ok(Sourced::new(b, at(key))),
                    None => Err(invalid_value(key, &s.to_string(), &at(key), Kind::Bool)),
                })
                .transpose()
        };
        let secs_of = |key: &str, v: &Option<Scalar>| -> Result<Option<Sourced<Duration>>> {
            v.as_ref()
                .map(|s| match s.to_seconds() {
                    Some(d) => Ok(Sourced::new(d, at(key))),
                    None => Err(invalid_value(key, &s.to_string(), &at(key), Kind::Seconds)),
                })
                .transpose()
        };
        fn whole_of<T: TryFrom<u64>>(
            key: &str,
            v: &Option<Scalar>,
            min: u64,
            at: &dyn Fn(&str) -> Source,
        ) -> Result<Option<Sourced<T>>> {
            v.as_ref()
                .map(|s| match s.to_whole(min) {
                    Ok(n) => Ok(Sourced::new(n, at(key))),
                    Err(kind) => Err(invalid_value(key, &s.to_string(), &at(key), kind)),
                })
                .transpose()
        }

        let mut l = Layer {
            parallel: bool_of("parallel", &raw.parallel)?,
            parallel_limit: whole_of("parallel_limit", &raw.parallel_limit, 1, &at)?,
            respect_dependencies: bool_of("respect_dependencies", &raw.respect_dependencies)?,
            timeout: secs_of("timeout_seconds", &raw.timeout_seconds)?,
            continue_on_error: bool_of("continue_on_error", &raw.continue_on_error)?,
            max_failures: whole_of("max_failures", &raw.max_failures, 1, &at)?,
            fail_fast: bool_of("fail_fast", &raw.fail_fast)?,
            retries: whole_of("retries", &raw.retries, 0, &at)?,
            retry_backoff: secs_of("retry_backoff_seconds", &raw.retry_backoff_seconds)?,
            kill_grace: secs_of("kill_grace_seconds", &raw.kill_grace_seconds)?,
            deadline: secs_of("deadline_seconds", &raw.deadline_seconds)?,
            output_limit_bytes: whole_of("output_limit_bytes", &raw.output_limit_bytes, 0, &at)?,
        };
        if let Some(mode) = &raw.mode {
            for (key, set) in [
                ("parallel", raw.parallel.is_some()),
                ("respect_dependencies", raw.respect_dependencies.is_some()),
            ] {
                if set {
                    return Err(self.error_at(
                        &[Seg::Key("execution"), Seg::Key("mode")],
                        true,
                        format_args!(
                            "`mode` cannot be combined with `{key}` in one manifest \
                             (mode is shorthand for parallel and respect_dependencies; keep one)"
                        ),
                    ));
                }
            }
            let source = at("mode");
            let (parallel, respect) = match mode {
                Scalar::Str(s) if s == "sequential" => (false, None),
                Scalar::Str(s) if s == "parallel" => (true, None),
                Scalar::Str(s) if s == "dependency-aware" => (true, Some(true)),
                other => {
                    return Err(invalid_value(
                        "mode",
                        &other.to_string(),
                        &source,
                        Kind::Mode,
                    ));
                }
            };
            l.parallel = Some(Sourced::new(parallel, source.clone()));
            l.respect_dependencies = respect.map(|r| Sourced::new(r, source));
        }
        Ok(l)
    }

    fn agent_defs(&self, raw: Vec<(String, RawAgent)>) -> Result<Vec<AgentDef>> {
        let mut defs = Vec::with_capacity(raw.len());
        for (name, a) in raw {
            let here =
                |key: &'static str| [Seg::Key("agents"), Seg::Key(name.as_str()), Seg::Key(key)];
            if name.is_empty() {
                return Err(self.error_at(&[Seg::Key("agents")], false, "an agent name is empty"));
            }
            let value_err = |key: &'static str, s: &Scalar, kind: Kind| {
                let place = self.place(&here(key), false);
                UsageError::new(format_args!(
                    "{place}: invalid value {s} for {key} of agent `{name}`: {}",
                    kind.expected()
                ))
            };
            let shell = match &a.shell {
                None => false,
                Some(s) => s
                    .to_bool()
                    .ok_or_else(|| value_err("shell", s, Kind::Bool))?,
            };
            let template = match (a.command, shell) {
                (CommandValue::Text(s), false) => CommandTemplate::split(&s),
                (CommandValue::Text(s), true) => CommandTemplate::shell(s),
                (CommandValue::List(v), false) => CommandTemplate::list(v),
                (CommandValue::List(_), true) => Err(
                    "with `shell: true` the command must be one string (the script for sh -c)"
                        .to_owned(),
                ),
            }
            .map_err(|m| {
                self.error_at(&here("command"), false, format_args!("agent `{name}`: {m}"))
            })?;
            let parallel_limit = a
                .parallel_limit
                .as_ref()
                .map(|s| {
                    s.to_whole(1)
                        .map_err(|kind| value_err("parallel_limit", s, kind))
                })
                .transpose()?;
            let timeout = a
                .timeout_seconds
                .as_ref()
                .map(|s| {
                    s.to_seconds()
                        .ok_or_else(|| value_err("timeout_seconds", s, Kind::Seconds))
                })
                .transpose()?;
            let retries = a
                .retries
                .as_ref()
                .map(|s| s.to_whole(0).map_err(|kind| value_err("retries", s, kind)))
                .transpose()?;
            let mut env: Vec<(OsString, OsString)> = Vec::new();
            for (k, Word(v)) in a.env.map(|e| e.0).unwrap_or_default() {
                if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                    return Err(self.error_at(
                        &here("env"),
                        false,
                        format_args!("agent `{name}`: invalid environment variable {k:?}"),
                    ));
                }
                env.push((k.into(), v.into()));
            }
            let cwd = match a.cwd {
                Some(Word(c)) if c.is_empty() => {
                    return Err(self.error_at(
                        &here("cwd"),
                        false,
                        format_args!("agent `{name}`: cwd is empty"),
                    ));
                }
                Some(Word(c)) => self.dir.join(c),
                None => self.dir.clone(),
            };
            defs.push(AgentDef {
                name: AgentName::from(name.as_str()),
                // PRODUCT.md, Placeholders: in manifest commands too, a
                // template with none gets the artifact appended.
                command: TaskCommand::new(template)
                    .append_artifact_without_placeholder()
                    .cwd(Some(cwd))
                    .env(env),
                parallel_limit,
                timeout,
                retries,
            });
        }
        Ok(defs)
    }

    fn task_entries(&self, raw: Vec<RawTask>) -> Result<Vec<TaskEntry>> {
        let mut entries = Vec::with_capacity(raw.len());
        for (i, t) in raw.into_iter().enumerate() {
            let here = |key: &'static str| [Seg::Key("tasks"), Seg::Index(i), Seg::Key(key)];
            let Word(agent) = t.agent;
            if !self.agents.iter().any(|a| a.name == agent.as_str()) {
                let known: Vec<&str> = self.agents.iter().map(|a| a.name.as_str()).collect();
                let known = if known.is_empty() {
                    "no agents are defined".to_owned()
                } else {
                    format!("agents: {}", known.join(", "))
                };
                return Err(self.error_at(
                    &here("agent"),
                    false,
                    format_args!("unknown agent `{agent}` in task {} ({known})", nth(i)),
                ));
            }
            let mut globs_as_text = false;
            let artifacts = match (t.artifact, t.artifacts) {
                (Some(_), Some(_)) => {
                    return Err(self.error_at(
                        &here("artifacts"),
                        true,
                        format_args!(
                            "task {} has both `artifact` and `artifacts`; use one",
                            nth(i)
                        ),
                    ));
                }
                (None, None) => {
                    return Err(self.error_at(
                        &[Seg::Key("tasks"), Seg::Index(i)],
                        false,
                        format_args!("task {} has neither `artifact` nor `artifacts`", nth(i)),
                    ));
                }
                (Some(Word(a)), None) => EntryArtifacts::One(a),
                (None, Some(globs)) => {
                    if t.id.is_some() {
                        return Err(self.error_at(
                            &here("id"),
                            true,
                            format_args!(
                                "task {}: an `artifacts:` entry cannot carry an `id:` \
                                 (each matching file gets the id agent:path)",
                                nth(i)
                            ),
                        ));
                    }
                    globs_as_text = matches!(globs, Words::One(_));
                    let globs = globs.into_vec();
                    if globs.is_empty() {
                        return Err(self.error_at(
                            &here("artifacts"),
                            false,
                            format_args!("task {}: `artifacts` is empty", nth(i)),
                        ));
                    }
                    EntryArtifacts::Globs(globs)
                }
            };
            let id = match t.id {
                Some(Word(id)) if id.is_empty() => {
                    return Err(self.error_at(
                        &here("id"),
                        false,
                        format_args!("task {}: `id` is empty", nth(i)),
                    ));
                }
                Some(Word(id)) => Some(TaskId::from(id)),
                None => None,
            };
            let value_err = |key: &'static str, s: &Scalar, kind: Kind| {
                let place = self.place(&here(key), false);
                UsageError::new(format_args!(
                    "{place}: invalid value {s} for {key} of task {}: {}",
                    nth(i),
                    kind.expected()
                ))
            };
            let timeout = t
                .timeout_seconds
                .as_ref()
                .map(|s| {
                    s.to_seconds()
                        .ok_or_else(|| value_err("timeout_seconds", s, Kind::Seconds))
                })
                .transpose()?;
            let retries = t
                .retries
                .as_ref()
                .map(|s| s.to_whole(0).map_err(|kind| value_err("retries", s, kind)))
                .transpose()?;
            entries.push(TaskEntry {
                agent: AgentName::from(agent),
                artifacts,
                id,
                depends_on: t
                    .depends_on
                    .map(Words::into_vec)
                    .unwrap_or_default()
                    .into_iter()
                    .map(TaskId::from)
                    .collect(),
                timeout,
                retries,
                globs_as_text,
            });
        }
        Ok(entries)
    }

    /// Checks that every agent's working folder exists, so a typo is a
    /// usage error instead of every task failing to start.
    ///
    /// # Errors
    ///
    /// A usage error naming the agent and the folder.
    pub fn check_agent_folders(&self) -> Result<()> {
        for a in &self.agents {
            if let Some(dir) = a.command.working_dir().filter(|d| !d.is_dir()) {
                return Err(self.error_at(
                    &[
                        Seg::Key("agents"),
                        Seg::Key(a.name.as_str()),
                        Seg::Key("cwd"),
                    ],
                    false,
                    format_args!(
                        "agent `{}`: folder {} does not exist",
                        a.name,
                        dir.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Expands the entries into tasks, in order: one per `artifact:`, one
    /// per matching file or plain name of `artifacts:` (sorted, duplicates
    /// across the entry's patterns removed). Checks ids are unique and validates
    /// dependencies.
    ///
    /// # Errors
    ///
    /// A usage error for an invalid glob or one that matches nothing, a
    /// duplicate id, an unknown dependency, a self-dependency or a cycle.
    pub fn tasks(&self) -> Result<Vec<AgentTask>> {
        let mut tasks: Vec<AgentTask> = Vec::new();
        let mut seen: HashMap<TaskId, usize> = HashMap::new();
        for (i, e) in self.entries.iter().enumerate() {
            let made: Vec<AgentTask> = match &e.artifacts {
                EntryArtifacts::One(a) => {
                    let t = AgentTask::new(e.agent.clone(), a.as_str());
                    vec![match &e.id {
                        Some(id) => t.with_id(id.clone()),
                        None => t,
                    }]
                }
                EntryArtifacts::Globs(globs) => self
                    .expand(i, e, globs)?
                    .into_iter()
                    .map(|p| AgentTask::from_bytes(e.agent.clone(), &p))
                    .collect(),
            };
            for mut t in made {
                if let Some(first) = seen.get(&t.id) {
                    return Err(self.error_at(
                        &[Seg::Key("tasks"), Seg::Index(i)],
                        false,
                        format_args!(
                            "duplicate task id `{}` (task {} repeats task {})",
                            t.id,
                            nth(i),
                            nth(*first)
                        ),
                    ));
                }
                seen.insert(t.id.clone(), i);
                t.depends_on.clone_from(&e.depends_on);
                t.timeout = e.timeout;
                t.retries = e.retries;
                tasks.push(t);
            }
        }
        if let Err(err) = plan::validate(&tasks) {
            let entry = seen.get(err.task()).copied().unwrap_or_default();
            let (path, key): (Vec<Seg<'_>>, bool) = match err {
                PlanError::Cycle(_) => (vec![Seg::Key("tasks"), Seg::Index(entry)], false),
                _ => (
                    vec![Seg::Key("tasks"), Seg::Index(entry), Seg::Key("depends_on")],
                    true,
                ),
            };
            return Err(self.error_at(&path, key, err));
        }
        Ok(tasks)
    }

    /// The sorted, de-duplicated files matching one entry's globs, as paths
    /// relative to the manifest's folder (absolute patterns stay absolute),
    /// with its plain names (no `*`, `?` or `[`) as they are written.
    fn expand(&self, i: usize, e: &TaskEntry, globs: &[String]) -> Result<Vec<Vec<u8>>> {
        let options = glob::MatchOptions {
            case_sensitive: true,
            // Like a shell: `*` stays within one folder, and only an
            // explicit `.` matches hidden files.
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        let prefix: Option<String> = if self.dir == Path::new(".") {
            None
        } else {
            match self.dir.to_str() {
                Some(d) => Some(glob::Pattern::escape(d)),
                None => {
                    return Err(UsageError::new(format_args!(
                        "{}: the manifest's folder is not valid UTF-8, so `artifacts:` globs cannot be used",
                        self.file
                    )));
                }
            }
        };
        let mut out: Vec<Vec<u8>> = Vec::new();
        for (j, pattern) in globs.iter().enumerate() {
            let seg = if e.globs_as_text {
                vec![Seg::Key("tasks"), Seg::Index(i), Seg::Key("artifacts")]
            } else {
                vec![
                    Seg::Key("tasks"),
                    Seg::Index(i),
                    Seg::Key("artifacts"),
                    Seg::Index(j),
                ]
            };
            // A name with nothing to match is an artifact as written, as
            // with `artifact:`: it need not be an existing file.
            if !pattern.contains(['*', '?', '[']) {
                out.push(pattern.as_bytes().to_vec());
                continue;
            }
            let full = match &prefix {
                Some(p) if !Path::new(pattern).is_absolute() => format!("{p}/{pattern}"),
                _ => pattern.clone(),
            };
            let paths = glob::glob_with(&full, options).map_err(|err| {
                self.error_at(
                    &seg,
                    false,
                    format_args!("invalid glob `{pattern}` in task {}: {}", nth(i), err.msg),
                )
            })?;
            let before = out.len();
            for p in paths {
                let p = p.map_err(|err| {
                    self.error_at(
                        &seg,
                        false,
                        format_args!(
                            "glob `{pattern}` in task {}: cannot read {}: {}",
                            nth(i),
                            err.path().display(),
                            err.error()
                        ),
                    )
                })?;
                // One task per file: a folder is no artifact, a link to a
                // file is one (`is_file` follows links).
                if !p.is_file() {
                    continue;
                }
                let rel = match &prefix {
                    Some(_) => p
                        .strip_prefix(&self.dir)
                        .map(Path::to_path_buf)
                        .unwrap_or(p),
                    None => p,
                };
                out.push(rel.as_os_str().as_bytes().to_vec());
            }
            if out.len() == before {
                return Err(self.error_at(
                    &seg,
                    false,
                    format_args!(
                        "glob `{pattern}` in task {} matches nothing (relative to {})",
                        nth(i),
                        self.dir.display()
                    ),
                ));
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::display_argv;

    fn parse(text: &str) -> Result<Manifest> {
        Manifest::parse(Path::new("agent33.yaml"), text.to_owned())
    }

    fn err(text: &str) -> String {
        parse(text).expect_err("invalid manifest").to_string()
    }

    const EXAMPLE: &str = r#"
execution:            # all optional; the settings table above
  mode: parallel      # sequential | parallel | dependency-aware
  parallel_limit: 4
  timeout_seconds: 300
  continue_on_error: false
  fail_fast: true
  retries: 0

agents:
  refinement:
    command: "./agents/refine.sh {artifact}"   # or a list: ["./refine.sh", "{artifact}"]
    parallel_limit: 2       # optional, under the global limit
    timeout_seconds: 120    # optional
    retries: 1              # optional
    env: { MODEL: llama3 }  # optional
    cwd: agents             # optional, relative to the manifest's folder
  validation:
    command: ["python3", "validate.py", "{artifact}"]

tasks:
  - agent: refinement
    artifact: core/prompts/SYSTEM.md
  - agent: validation
    artifact: core/agents/worker.md
    depends_on: ["refinement:core/prompts/SYSTEM.md"]
    timeout_seconds: 60
  - agent: refinement
    artifacts: ["core/templates/*.md"]          # one task per matching file, sorted
"#;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    #[test]
    fn the_products_example_parses_and_expands() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, "agent33.yaml", EXAMPLE);
        for f in ["b.md", "a.md", ".hidden.md", "notes.txt", "sub/c.md"] {
            write(root, &format!("core/templates/{f}"), "");
        }
        std::fs::create_dir_all(root.join("agents")).expect("mkdir");
        let m = Manifest::read(&root.join("agent33.yaml"), true).expect("valid");

        let e = &m.execution;
        assert_eq!(e.parallel.as_ref().map(|s| s.value), Some(true));
        assert_eq!(e.respect_dependencies, None);
        assert_eq!(e.parallel_limit.as_ref().map(|s| s.value), Some(4));
        assert_eq!(
            e.timeout.as_ref().map(|s| s.value),
            Some(Duration::from_secs(300))
        );
        assert_eq!(e.continue_on_error.as_ref().map(|s| s.value), Some(false));
        assert_eq!(e.retries.as_ref().map(|s| s.value), Some(0));
        let Some(Source::Manifest(place)) = e.parallel_limit.as_ref().map(|s| s.source.clone())
        else {
            panic!("manifest source");
        };
        assert_eq!(place.line_col, Some((4, 19)));

        assert_eq!(m.agents.len(), 2);
        let refine = &m.agents[0];
        assert_eq!(refine.name, "refinement");
        assert_eq!(refine.parallel_limit, Some(2));
        assert_eq!(refine.timeout, Some(Duration::from_secs(120)));
        assert_eq!(refine.retries, Some(1));
        assert_eq!(refine.command.working_dir(), Some(&root.join("agents")));
        assert_eq!(
            refine.command.extra_env(),
            &[(OsString::from("MODEL"), OsString::from("llama3"))]
        );
        let validation = &m.agents[1];
        assert_eq!(validation.command.working_dir(), Some(&root.to_path_buf()));
        m.check_agent_folders().expect("folders exist");

        let tasks = m.tasks().expect("expands");
        let ids: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "refinement:core/prompts/SYSTEM.md",
                "validation:core/agents/worker.md",
                "refinement:core/templates/a.md",
                "refinement:core/templates/b.md",
            ]
        );
        assert_eq!(tasks[1].timeout, Some(Duration::from_secs(60)));
        assert_eq!(
            tasks[1].depends_on,
            vec![TaskId::from("refinement:core/prompts/SYSTEM.md")]
        );
        assert_eq!(tasks[0].timeout, None);
        assert_eq!(
            display_argv(&refine.command.argv(&tasks[2])),
            "./agents/refine.sh core/templates/a.md"
        );
        assert_eq!(
            display_argv(&validation.command.argv(&tasks[1])),
            "python3 validate.py core/agents/worker.md"
        );
    }

    #[test]
    fn globs_are_relative_to_the_manifests_folder_in_the_current_folder_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("proj [1]");
        write(&root, "src/x.rs", "");
        write(&root, "src/y.rs", "");
        let text = "agents: {a: {command: echo}}\ntasks:\n  - agent: a\n    artifacts: 'src/*.rs'\n    retries: 2\n";
        write(&root, "m.yaml", text);
        let m = Manifest::read(&root.join("m.yaml"), true).expect("valid");
        let tasks = m.tasks().expect("expands");
        let arts: Vec<&str> = tasks.iter().map(|t| t.artifact.as_str()).collect();
        assert_eq!(arts, ["src/x.rs", "src/y.rs"]);
        assert!(tasks.iter().all(|t| t.retries == Some(2)));
    }

    /// Writes `root/m.yaml` with one task entry of `artifacts: [GLOBS]` and
    /// expands it.
    fn expand_globs(root: &Path, globs: &str) -> Result<Vec<String>> {
        write(
            root,
            "m.yaml",
            &format!(
                "agents: {{a: {{command: echo}}}}\ntasks:\n  - {{agent: a, artifacts: [{globs}]}}\n"
            ),
        );
        let m = Manifest::read(&root.join("m.yaml"), true).expect("valid");
        Ok(m.tasks()?.into_iter().map(|t| t.artifact).collect())
    }

    #[test]
    fn double_star_globs_recurse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for f in ["docs/a.md", "docs/x/b.md", "docs/x/y/c.md", "docs/.h/d.md"] {
            write(root, f, "");
        }
        let arts = expand_globs(root, "'docs/**/*.md', 'docs/*.md'").expect("expands");
        assert_eq!(arts, ["docs/a.md", "docs/x/b.md", "docs/x/y/c.md"]);
    }

    #[test]
    fn plain_names_in_artifacts_are_artifacts_whether_files_or_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, "in/a.md", "");
        write(root, "in/b.txt", "");
        let arts = expand_globs(root, "'topic b', 'in/*.md', 'in/b.txt', 'in/a.md', 'in'")
            .expect("expands");
        assert_eq!(arts, ["in", "in/a.md", "in/b.txt", "topic b"]);
    }

    #[test]
    fn globs_match_files_not_folders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, "in/a.md", "");
        write(root, "in/dir.md/inner.txt", "");
        write(root, "only/x.md/inner.txt", "");
        std::os::unix::fs::symlink("a.md", root.join("in/link.md")).expect("symlink");
        std::os::unix::fs::symlink("dir.md", root.join("in/dirlink.md")).expect("symlink");
        let arts = expand_globs(root, "'in/*.md'").expect("expands");
        assert_eq!(arts, ["in/a.md", "in/link.md"]);

        let got = expand_globs(root, "'only/*.md'")
            .expect_err("only a folder matches")
            .to_string();
        assert!(
            got.contains(":3:28: glob `only/*.md` in task 1 matches nothing"),
            "{got}"
        );
    }

    #[test]
    fn an_empty_manifest_has_no_tasks() {
        for text in [
            "",
            "# nothing\n",
            "execution:\nagents:\ntasks:\n",
            "tasks: []",
        ] {
            let m = parse(text).expect("valid");
            assert_eq!(m.execution, Layer::default());
            assert!(m.tasks().expect("no globs").is_empty());
        }
    }

    #[test]
    fn unknown_keys_are_errors_with_their_place() {
        let cases = [
            (
                "execution:\n  paralel_limit: 4\n",
                "agent33.yaml:2:3: execution: unknown field `paralel_limit`, expected one of",
            ),
            (
                "agents:\n  a:\n    comand: x\n",
                "agent33.yaml:3:5: agents.a: unknown field `comand`",
            ),
            (
                "agents: {a: {command: x}}\ntasks:\n  - agent: a\n    artefact: x\n",
                "agent33.yaml:4:5: tasks[0]: unknown field `artefact`",
            ),
            (
                "executions: {}\n",
                "agent33.yaml:1:1: unknown field `executions`",
            ),
        ];
        for (text, want) in cases {
            let got = err(text);
            assert!(got.starts_with(want), "{got}\nwanted: {want}");
        }
    }

    #[test]
    fn yaml_syntax_errors_name_the_place() {
        let got = err("execution:\n  parallel: [\n");
        assert!(got.starts_with("agent33.yaml:"), "{got}");
        let got = err("- just\n- a list\n");
        assert!(got.starts_with("agent33.yaml:1:1: "), "{got}");
        assert!(got.contains("expected a manifest"), "{got}");
    }

    #[test]
    fn bad_values_name_the_setting_and_place() {
        let cases = [
            (
                "execution:\n  parallel_limit: 0\n",
                "agent33.yaml:2:19: invalid value 0 for parallel_limit: expected a whole number ≥ 1",
            ),
            (
                "execution:\n  timeout_seconds: -1\n",
                "agent33.yaml:2:20: invalid value -1 for timeout_seconds: expected a number of seconds ≥ 0",
            ),
            (
                "execution:\n  timeout_seconds: abc\n",
                "agent33.yaml:2:20: invalid value \"abc\" for timeout_seconds: expected a number of seconds ≥ 0",
            ),
            (
                "execution:\n  fail_fast: perhaps\n",
                "agent33.yaml:2:14: invalid value \"perhaps\" for fail_fast: expected true/false/1/0/yes/no/on/off",
            ),
            (
                "execution:\n  max_failures: 1.5\n",
                "agent33.yaml:2:17: invalid value 1.5 for max_failures: expected a whole number ≥ 1",
            ),
            (
                "execution:\n  parallel_limit: 4.0\n",
                "agent33.yaml:2:19: invalid value 4.0 for parallel_limit: expected a whole number ≥ 1",
            ),
            // Found while fuzzing: beyond 128 bits YAML gives a float,
            // which was refused as if it were a fraction.
            (
                "execution:\n  parallel_limit: 340282366920938463463374607431768211456\n",
                "agent33.yaml:2:19: invalid value 3.402823669209385e38 for parallel_limit: \
                 expected a whole number ≤ 18446744073709551615",
            ),
            (
                "execution:\n  retries: 1e20\n",
                "agent33.yaml:2:12: invalid value 1e20 for retries: \
                 expected a whole number ≤ 18446744073709551615",
            ),
            (
                "execution:\n  retries: -1e20\n",
                "agent33.yaml:2:12: invalid value -1e20 for retries: expected a whole number ≥ 0",
            ),
            (
                "execution:\n  retries: -2\n",
                "agent33.yaml:2:12: invalid value -2 for retries: expected a whole number ≥ 0",
            ),
            (
                "execution:\n  mode: fast\n",
                "agent33.yaml:2:9: invalid value \"fast\" for mode: expected sequential, parallel or dependency-aware",
            ),
            (
                "agents:\n  a:\n    command: x\n    parallel_limit: 0\n",
                "agent33.yaml:4:21: invalid value 0 for parallel_limit of agent `a`: expected a whole number ≥ 1",
            ),
            (
                "agents:\n  a:\n    command: x\n    timeout_seconds: -5\n",
                "agent33.yaml:4:22: invalid value -5 for timeout_seconds of agent `a`",
            ),
            (
                "agents: {a: {command: x}}\ntasks:\n  - {agent: a, artifact: f, retries: x}\n",
                "agent33.yaml:3:38: invalid value \"x\" for retries of task 1: expected a whole number ≥ 0",
            ),
            (
                "execution:\n  parallel_limit: [4]\n",
                "agent33.yaml:2:19: execution.parallel_limit: invalid type: sequence, expected a single value",
            ),
        ];
        for (text, want) in cases {
            let got = err(text);
            assert!(got.starts_with(want), "{got}\nwanted: {want}");
        }
    }

    #[test]
    fn lenient_value_spellings_are_accepted() {
        let m = parse(
            "execution:\n  parallel: yes\n  fail_fast: 'off'\n  timeout_seconds: 0.5\n  \
             deadline_seconds: 0\n  max_failures: '3'\n  output_limit_bytes: 0\n",
        )
        .expect("valid");
        let e = &m.execution;
        assert_eq!(e.parallel.as_ref().map(|s| s.value), Some(true));
        assert_eq!(e.fail_fast.as_ref().map(|s| s.value), Some(false));
        assert_eq!(
            e.timeout.as_ref().map(|s| s.value),
            Some(Duration::from_millis(500))
        );
        assert_eq!(e.deadline.as_ref().map(|s| s.value), Some(Duration::ZERO));
        assert_eq!(e.max_failures.as_ref().map(|s| s.value), Some(3));
        assert_eq!(e.output_limit_bytes.as_ref().map(|s| s.value), Some(0));
    }

    #[test]
    fn mode_is_shorthand_and_excludes_its_long_forms() {
        let m = parse("execution:\n  mode: dependency-aware\n").expect("valid");
        assert_eq!(m.execution.parallel.as_ref().map(|s| s.value), Some(true));
        assert_eq!(
            m.execution.respect_dependencies.as_ref().map(|s| s.value),
            Some(true)
        );
        let m = parse("execution:\n  mode: sequential\n").expect("valid");
        assert_eq!(m.execution.parallel.as_ref().map(|s| s.value), Some(false));
        assert_eq!(m.execution.respect_dependencies, None);

        let got = err("execution:\n  parallel: true\n  mode: parallel\n");
        assert_eq!(
            got,
            "agent33.yaml:3:3: `mode` cannot be combined with `parallel` in one manifest \
             (mode is shorthand for parallel and respect_dependencies; keep one)"
        );
        let got = err("execution:\n  mode: parallel\n  respect_dependencies: false\n");
        assert!(
            got.contains("`mode` cannot be combined with `respect_dependencies`"),
            "{got}"
        );
    }

    #[test]
    fn continue_on_error_and_max_failures_conflict_in_one_manifest() {
        let m =
            parse("execution:\n  continue_on_error: true\n  max_failures: 3\n").expect("parses");
        let got = m.execution.check_stop_rule().unwrap_err().to_string();
        assert!(
            got.starts_with("agent33.yaml:2:22: continue_on_error: true (from manifest agent33.yaml:2:22) and max_failures (from manifest agent33.yaml:3:17)"),
            "{got}"
        );
        let m =
            parse("execution:\n  continue_on_error: false\n  max_failures: 3\n").expect("parses");
        m.execution
            .check_stop_rule()
            .expect("false conflicts with nothing");
    }

    #[test]
    fn agent_and_task_mistakes_are_errors() {
        let cases = [
            (
                "agents:\n  lint: {command: x}\ntasks:\n  - agent: lint\n    artifact: a\n  - agent: lnit\n    artifact: b\n",
                "agent33.yaml:6:12: unknown agent `lnit` in task 2 (agents: lint)",
            ),
            (
                "tasks:\n  - agent: x\n    artifact: a\n",
                "agent33.yaml:2:12: unknown agent `x` in task 1 (no agents are defined)",
            ),
            (
                "agents: {a: {command: x}}\ntasks:\n  - agent: a\n    artifacts: ['*']\n    id: foo\n",
                "agent33.yaml:5:5: task 1: an `artifacts:` entry cannot carry an `id:`",
            ),
            (
                "agents: {a: {command: x}}\ntasks:\n  - agent: a\n    artifact: x\n    artifacts: [y]\n",
                "agent33.yaml:5:5: task 1 has both `artifact` and `artifacts`",
            ),
            (
                "agents: {a: {command: x}}\ntasks:\n  - agent: a\n",
                "agent33.yaml:3:5: task 1 has neither `artifact` nor `artifacts`",
            ),
            (
                "agents: {a: {command: x}}\ntasks:\n  - {agent: a, artifacts: []}\n",
                "agent33.yaml:3:27: task 1: `artifacts` is empty",
            ),
            (
                "agents:\n  a: {command: ''}\n",
                "agent33.yaml:2:16: agent `a`: command is empty",
            ),
            (
                "agents:\n  a: {command: \"echo 'open\"}\n",
                "agent33.yaml:2:16: agent `a`: cannot split command",
            ),
            (
                "agents:\n  a: {command: [], shell: false}\n",
                "agent33.yaml:2:16: agent `a`: command is empty",
            ),
            (
                "agents:\n  a: {command: [sh, x], shell: true}\n",
                "agent33.yaml:2:16: agent `a`: with `shell: true` the command must be one string",
            ),
            (
                "agents:\n  a: {command: 'cat {artifact}', shell: true}\n",
                "agent33.yaml:2:16: agent `a`: a `shell: true` script gets the artifact as \"$1\"",
            ),
            (
                "agents:\n  a: {command: 'cat {}', shell: true}\n",
                "agent33.yaml:2:16: agent `a`: a `shell: true` script gets the artifact as \"$1\"",
            ),
            (
                "agents:\n  a:\n    command: cat {artefact}\n",
                "agent33.yaml:3:14: agent `a`: unknown placeholder {artefact}: the placeholders are",
            ),
            (
                "agents:\n  a: {command: [cat, '{Artifact}']}\n",
                "agent33.yaml:2:16: agent `a`: unknown placeholder {Artifact}",
            ),
            (
                "agents:\n  a: {command: \"sh -c 'cat {}'\"}\n",
                "agent33.yaml:2:16: agent `a`: {} would be pasted into the script that `sh -c` \
                 runs, where an artifact such as `x; rm -rf ~` runs as commands: use `shell: \
                 true`, which runs sh -c with the artifact as \"$1\", and write \"$1\" in the \
                 script: command: 'cat \"$1\"' with shell: true",
            ),
            (
                "agents:\n  a: {command: [bash, -ec, 'cat {.}']}\n",
                "agent33.yaml:2:16: agent `a`: {.} would be pasted into the script that `bash -ec` runs",
            ),
            (
                "agents:\n  a: {command: x, shell: maybe}\n",
                "agent33.yaml:2:26: invalid value \"maybe\" for shell of agent `a`",
            ),
            (
                "agents:\n  a: {shell: true}\n",
                "agent33.yaml:2:6: agents.a: missing field `command`",
            ),
            (
                "agents:\n  a: {command: x, env: {'A=B': c}}\n",
                "agent33.yaml:2:24: agent `a`: invalid environment variable \"A=B\"",
            ),
        ];
        for (text, want) in cases {
            let got = err(text);
            assert!(got.starts_with(want), "{got}\nwanted: {want}");
        }
    }

    #[test]
    fn duplicate_keys_are_errors_at_the_repeat() {
        let cases = [
            (
                "agents:\n  t: {command: \"true\"}\n  t: {command: \"true\"}\n",
                "agent33.yaml:3:3: agents: duplicate key `t`",
            ),
            (
                "execution: {parallel: true}\nexecution: {parallel: true}\nagents: {}\n",
                "agent33.yaml:2:1: duplicate key `execution`",
            ),
            (
                "execution:\n  parallel: true\n  retries: 1\n  parallel: false\n",
                "agent33.yaml:4:3: execution: duplicate key `parallel`",
            ),
            (
                "agents:\n  a:\n    command: x\n    retries: 1\n    command: y\n",
                "agent33.yaml:5:5: agents.a: duplicate key `command`",
            ),
            (
                "agents: {a: {command: x, command: y}}\n",
                "agent33.yaml:1:26: agents.a: duplicate key `command`",
            ),
            (
                "agents:\n  a:\n    command: x\n    env:\n      A: 1\n      B: 2\n      A: 3\n",
                "agent33.yaml:7:7: agents.a.env: duplicate key `A`",
            ),
            (
                "agents:\n  a: {command: x, env: {1: a, '1': b}}\n",
                "agent33.yaml:2:31: agents.a.env: duplicate key `1`",
            ),
            (
                "agents: {a: {command: x}}\ntasks:\n  - agent: a\n    artifact: x\n  - agent: a\n    artifact: y\n    artifact: z\n",
                "agent33.yaml:7:5: tasks[1]: duplicate key `artifact`",
            ),
        ];
        for (text, want) in cases {
            let got = err(text);
            assert_eq!(got, want);
        }
    }

    #[test]
    fn commands_accept_lists_scripts_and_plain_values() {
        let m = parse(
            "agents:\n  l: {command: [sleep, 1, '{artifact}'], env: {N: 4, ON: true}}\n  \
             s: {command: 'wc -l \"$1\"', shell: yes}\n",
        )
        .expect("valid");
        let task = AgentTask::new("l", "f");
        assert_eq!(display_argv(&m.agents[0].command.argv(&task)), "sleep 1 f");
        assert_eq!(
            m.agents[0].command.extra_env(),
            &[
                (OsString::from("N"), OsString::from("4")),
                (OsString::from("ON"), OsString::from("true"))
            ]
        );
        assert_eq!(
            m.agents[1].command.argv(&task),
            ["sh", "-c", "wc -l \"$1\"", "sh", "f"].map(OsString::from)
        );
        // A manifest command without placeholder gets the artifact appended,
        // as an ad-hoc one does; a shell script gets it as $1 only.
        let m = parse("agents:\n  mk: {command: make lint}\n").expect("valid");
        assert_eq!(
            display_argv(&m.agents[0].command.argv(&task)),
            "make lint f"
        );
        // The new placeholders, in both forms; other braces stay.
        let m = parse(
            "agents:\n  t: {command: \"p {} {.} {/} {//} {/.} awk '{print $1}' ${HOME}\"}\n  \
             l: {command: [p, '{/.}', '{1}', 'sh', '-c', '{}']}\n",
        )
        .expect("valid");
        let task = AgentTask::new("t", "d/a.b");
        assert_eq!(
            display_argv(&m.agents[0].command.argv(&task)),
            "p d/a.b d/a a.b d a awk '{print $1}' '${HOME}'"
        );
        assert_eq!(
            display_argv(&m.agents[1].command.argv(&task)),
            "p a {1} sh -c d/a.b"
        );
    }

    #[test]
    fn expansion_errors_name_the_task_and_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, "a.md", "");
        let cases = [
            (
                "agents: {a: {command: x}}\ntasks:\n  - agent: a\n    artifacts: ['*.md', '*.txt']\n",
                ":4:25: glob `*.txt` in task 1 matches nothing",
            ),
            (
                "agents: {a: {command: x}}\ntasks:\n  - agent: a\n    artifacts: '[.md'\n",
                ":4:16: invalid glob `[.md` in task 1",
            ),
            (
                "agents: {a: {command: x}}\ntasks:\n  - {agent: a, artifact: a.md}\n  - {agent: a, artifacts: ['*.md']}\n",
                ":4:5: duplicate task id `a:a.md` (task 2 repeats task 1)",
            ),
            (
                "agents: {a: {command: x}}\ntasks:\n  - {agent: a, artifact: x, id: same}\n  - {agent: a, artifact: y, id: same}\n",
                ":4:5: duplicate task id `same` (task 2 repeats task 1)",
            ),
            (
                "agents: {a: {command: x}}\ntasks:\n  - {agent: a, artifact: x}\n  - {agent: a, artifact: y, depends_on: nope}\n",
                ":4:29: task `a:y` depends on unknown task `nope`",
            ),
            (
                "agents: {a: {command: x}}\ntasks:\n  - {agent: a, artifact: x, id: me, depends_on: [me]}\n",
                ":3:37: task `me` depends on itself",
            ),
            (
                "agents: {a: {command: x}}\ntasks:\n  - {agent: a, artifact: 1, id: a, depends_on: [b]}\n  - {agent: a, artifact: 2, id: b, depends_on: [c]}\n  - {agent: a, artifact: 3, id: c, depends_on: [a]}\n",
                ":3:5: dependency cycle: a → b → c → a",
            ),
        ];
        for (text, want) in cases {
            write(root, "m.yaml", text);
            let m = Manifest::read(&root.join("m.yaml"), true).expect("parses");
            let got = m.tasks().expect_err(want).to_string();
            let file = root.join("m.yaml").display().to_string();
            assert!(
                got.starts_with(&format!("{file}{want}")),
                "{got}\nwanted: {want}"
            );
        }
    }

    #[test]
    fn a_missing_agent_folder_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "m.yaml",
            "agents:\n  a: {command: x, cwd: nowhere}\n",
        );
        let m = Manifest::read(&dir.path().join("m.yaml"), true).expect("parses");
        let got = m.check_agent_folders().unwrap_err().to_string();
        assert!(got.contains(":2:24: agent `a`: folder "), "{got}");
        assert!(got.ends_with("nowhere does not exist"), "{got}");
    }

    #[test]
    fn missing_manifests_are_explained() {
        let got = Manifest::read(Path::new("/nonexistent/agent33.yaml"), false)
            .unwrap_err()
            .to_string();
        assert_eq!(
            got,
            "no manifest: agent33.yaml not found in the current folder \
             (name one with -f PATH, or run ad hoc with --command TEMPLATE)"
        );
        let got = Manifest::read(Path::new("/nonexistent/m.yaml"), true)
            .unwrap_err()
            .to_string();
        assert_eq!(got, "manifest /nonexistent/m.yaml not found");
    }

    #[test]
    fn deep_brackets_are_refused_before_the_yaml_parser_sees_them() {
        // Found by fuzzing: libyaml took minutes over 100 000 levels.
        let text = format!("tasks: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let started = std::time::Instant::now();
        let got = err(&text);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(
            got,
            "agent33.yaml:1:72: `[` and `{` nested more than 64 levels deep \
             (a manifest needs a few; quote text that holds brackets)"
        );
        // The example, brackets in commands and all, is far from it.
        assert!(parse(EXAMPLE).is_ok());
        assert!(parse("agents:\n  a: {command: \"awk '{print $1}' {artifact}\"}\n").is_ok());
    }

    #[test]
    fn control_characters_are_refused_where_they_are() {
        // Found while fuzzing: libyaml's message put them all at 1:1.
        assert_eq!(
            err("execution:\n  parallel: tr\u{0}ue\n"),
            "agent33.yaml:2:15: character U+0000 is not allowed in a YAML file"
        );
        assert_eq!(
            err("agents:\n  é: {command: \"a\u{7f}\"}\n"),
            "agent33.yaml:2:18: character U+007F is not allowed in a YAML file"
        );
        // Escaped, they are text like any other.
        assert!(parse("agents:\n  a: {command: \"a\\u0001\"}\n").is_ok());
    }

    #[test]
    fn a_byte_order_mark_takes_no_column() {
        // Found while fuzzing: places on the first line were one off.
        assert!(
            err("\u{feff}execution: {paralel: true}\n")
                .starts_with("agent33.yaml:1:13: execution: unknown field `paralel`")
        );
        assert!(
            err("\u{feff}execution: {mode: parallel, parallel: true}\n")
                .starts_with("agent33.yaml:1:13: `mode` cannot be combined")
        );
        assert!(parse("\u{feff}execution: {parallel: true}\n").is_ok());
    }
}
