//! The YAML manifest (`agent33.yaml`): `execution:`, `providers:`,
//! `agents:`, `tasks:`.
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

mod execution;
mod globs;
mod raw;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent33_parallel::{AgentName, AgentTask, TaskId};

use agent33_llm::ApiKey;
use agent33_llm::manifest::{ConfigError, LlmBlock, ProviderConfig};

use crate::agents::{AgentDef, LlmAgentDef};
use crate::error::{Result, UsageError};
use crate::scalar::Scalar;
use crate::settings::Layer;
use crate::template::{CommandTemplate, TaskCommand};
use crate::values::{Kind, Place};
use crate::yaml::{
    MAX_FLOW_DEPTH, Seg, duplicate_key, error_message, flow_too_deep, locate, refused_char,
};
use agent33_parallel::plan::{self, PlanError};

use raw::{CommandValue, RawAgent, RawManifest, RawTask, Word, Words};

/// The manifest read when `-f` is not given, in the current folder.
pub const DEFAULT_MANIFEST: &str = "agent33.yaml";

/// The folder a manifest's relative paths start from: its parent, or `.`.
#[must_use]
pub fn manifest_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

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
    /// The command agents, in manifest order.
    pub agents: Vec<AgentDef>,
    /// The LLM agents (`llm:`), in manifest order.
    pub llm_agents: Vec<LlmAgentDef>,
    /// The `tasks:` entries, in order.
    pub entries: Vec<TaskEntry>,
    /// The first provider whose key variable is not set, as the error a
    /// run gives (at its `api_key_env:` line); a worker, which never calls
    /// a provider, goes on without the key.
    pub missing_key: Option<UsageError>,
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
            llm_agents: Vec::new(),
            entries: Vec::new(),
            missing_key: None,
        };
        m.execution = m.execution_layer(&raw.execution.unwrap_or_default())?;
        let providers = m.providers(raw.providers.map(|p| p.0).unwrap_or_default())?;
        (m.agents, m.llm_agents) =
            m.agent_defs(raw.agents.map(|a| a.0).unwrap_or_default(), &providers)?;
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

    /// A [`ConfigError`] of the LLM crate, at the key it names.
    fn config_error(&self, e: &ConfigError) -> UsageError {
        let path: Vec<Seg<'_>> = e.path.iter().map(|k| Seg::Key(k)).collect();
        self.error_at(&path, false, &e.message)
    }

    /// Checks `providers:` and reads each key from its variable (the
    /// environment is read here, so that a run can refuse an unset variable
    /// at its `api_key_env:` line before anything runs: see
    /// [`Self::missing_key`]).
    fn providers(
        &mut self,
        raw: Vec<(String, ProviderConfig)>,
    ) -> Result<BTreeMap<String, (ProviderConfig, Option<ApiKey>)>> {
        let mut out = BTreeMap::new();
        for (name, config) in raw {
            let key = match config.check(&name, |var| std::env::var(var).ok()) {
                Ok(key) => key,
                // The key is checked last: everything else is valid.
                Err(e) if e.path.last().map(String::as_str) == Some("api_key_env") => {
                    let error = self.config_error(&e);
                    self.missing_key.get_or_insert(error);
                    None
                }
                Err(e) => return Err(self.config_error(&e)),
            };
            out.insert(name, (config, key));
        }
        Ok(out)
    }

    fn agent_defs(
        &self,
        raw: Vec<(String, RawAgent)>,
        providers: &BTreeMap<String, (ProviderConfig, Option<ApiKey>)>,
    ) -> Result<(Vec<AgentDef>, Vec<LlmAgentDef>)> {
        let mut defs = Vec::with_capacity(raw.len());
        let mut llm_defs = Vec::new();
        let configs: BTreeMap<String, ProviderConfig> = providers
            .iter()
            .map(|(name, (config, _))| (name.clone(), config.clone()))
            .collect();
        for (name, mut a) in raw {
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
            let parallel_limit = a
                .parallel_limit
                .as_ref()
                .map(|s| {
                    s.to_whole(1)
                        .map_err(|kind| value_err("parallel_limit", s, kind))
                })
                .transpose()?;
            let (timeout, retries) =
                timeout_and_retries(a.timeout_seconds.as_ref(), a.retries.as_ref(), value_err)?;
            let command = match (a.command.take(), a.llm.take()) {
                (Some(_), Some(_)) => {
                    return Err(self.error_at(
                        &here("llm"),
                        true,
                        format_args!("agent `{name}` has both `command` and `llm`; use one"),
                    ));
                }
                (None, None) => {
                    return Err(self.error_at(
                        &[Seg::Key("agents"), Seg::Key(name.as_str())],
                        false,
                        // serde's wording, as before `llm:` existed.
                        format_args!(
                            "agents.{name}: missing field `command` (an agent has `command` or `llm`)"
                        ),
                    ));
                }
                (Some(command), None) => command,
                (None, Some(block)) => {
                    llm_defs.push(self.llm_def(
                        &name,
                        block,
                        &a,
                        &configs,
                        providers,
                        (parallel_limit, timeout, retries),
                    )?);
                    continue;
                }
            };
            let shell = match &a.shell {
                None => false,
                Some(s) => s
                    .to_bool()
                    .ok_or_else(|| value_err("shell", s, Kind::Bool))?,
            };
            let template = match (command, shell) {
                (CommandValue::Text(s), false) => CommandTemplate::split(&s),
                (CommandValue::Text(s), true) => CommandTemplate::shell(s),
                (CommandValue::List(v), false) => CommandTemplate::list(v),
                (CommandValue::List(_), true) => {
                    return Err(self.error_at(
                        &here("command"),
                        false,
                        format_args!(
                            "agent `{name}`: with `shell: true` the command must be one string \
                             (the script for sh -c)"
                        ),
                    ));
                }
            }
            .map_err(|e| {
                self.error_at(&here("command"), false, format_args!("agent `{name}`: {e}"))
            })?;
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
        Ok((defs, llm_defs))
    }

    /// An `llm:` agent: its block checked against the providers; `shell`,
    /// `env` and `cwd` belong to commands.
    fn llm_def(
        &self,
        name: &str,
        block: LlmBlock,
        a: &RawAgent,
        configs: &BTreeMap<String, ProviderConfig>,
        providers: &BTreeMap<String, (ProviderConfig, Option<ApiKey>)>,
        (parallel_limit, timeout, retries): (Option<usize>, Option<Duration>, Option<u32>),
    ) -> Result<LlmAgentDef> {
        for (key, given) in [
            ("shell", a.shell.is_some()),
            ("env", a.env.is_some()),
            ("cwd", a.cwd.is_some()),
        ] {
            if given {
                return Err(self.error_at(
                    &[Seg::Key("agents"), Seg::Key(name), Seg::Key(key)],
                    true,
                    format_args!("agent `{name}`: `{key}` is for command agents, not `llm`"),
                ));
            }
        }
        block
            .check(name, configs)
            .map_err(|e| self.config_error(&e))?;
        let (config, key) = providers
            .get(&block.provider)
            .cloned()
            .expect("the block's check found its provider");
        Ok(LlmAgentDef {
            name: AgentName::from(name),
            provider: block.provider.clone(),
            config,
            block,
            key,
            base_dir: self.dir.clone(),
            parallel_limit,
            timeout,
            retries,
        })
    }

    fn task_entries(&self, raw: Vec<RawTask>) -> Result<Vec<TaskEntry>> {
        let mut entries = Vec::with_capacity(raw.len());
        for (i, t) in raw.into_iter().enumerate() {
            let here = |key: &'static str| [Seg::Key("tasks"), Seg::Index(i), Seg::Key(key)];
            let Word(agent) = t.agent;
            let names = || {
                self.agents
                    .iter()
                    .map(|a| &a.name)
                    .chain(self.llm_agents.iter().map(|a| &a.name))
            };
            if !names().any(|a| a == agent.as_str()) {
                let known: Vec<&str> = names().map(AgentName::as_str).collect();
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
            let (timeout, retries) =
                timeout_and_retries(t.timeout_seconds.as_ref(), t.retries.as_ref(), value_err)?;
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
}

/// An agent's or a task's own `timeout_seconds` and `retries`, each
/// refused through `value_err` (which says whose they are).
fn timeout_and_retries(
    timeout: Option<&Scalar>,
    retries: Option<&Scalar>,
    value_err: impl Fn(&'static str, &Scalar, Kind) -> UsageError,
) -> Result<(Option<std::time::Duration>, Option<u32>), UsageError> {
    let timeout = timeout
        .map(|s| {
            s.to_seconds()
                .ok_or_else(|| value_err("timeout_seconds", s, Kind::Seconds))
        })
        .transpose()?;
    let retries = retries
        .map(|s| s.to_whole(0).map_err(|kind| value_err("retries", s, kind)))
        .transpose()?;
    Ok((timeout, retries))
}

#[cfg(test)]
mod tests;
