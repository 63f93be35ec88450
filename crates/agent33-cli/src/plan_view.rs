//! `agent-33 run --dry-run`: resolves everything (globs, dependencies,
//! templates, timeouts, retries, folders, environment) and prints the plan,
//! grouped by dependency level, as text or JSON. Runs nothing; an LLM
//! task shows its provider, model, endpoint and prompt size, and nothing
//! is sent.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent33_cli::args::Format;
use agent33_cli::config::{Config, LlmAgentDef, TaskSource};
use agent33_cli::template::{CommandTemplate, Place, Placeholder, display_argv};
use agent33_llm::provider::chat_url;
use agent33_llm::template::{Fields, render};
use agent33_parallel::{AgentTask, Event, Settings, plan};
use agent33_report::{NoticeReporter, Reporter as _};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::exit;
use crate::failure::Failure;

/// One task as the plan shows it.
struct Step<'a> {
    task: &'a AgentTask,
    work: Work<'a>,
    timeout: Option<Duration>,
    /// Extra attempts after a failure: the task's, its agent's or the run's.
    retries: u32,
    agent_limit: Option<usize>,
}

/// What a step does: run a command, or send a prompt.
enum Work<'a> {
    Command {
        argv: Vec<OsString>,
        script: Option<&'a str>,
        /// Where it runs: the agent's folder, or (`None`) the current one.
        cwd: Option<&'a Path>,
        /// The agent's own variables, beside the `AGENT33_*` ones every
        /// task gets.
        env: &'a [(OsString, OsString)],
    },
    Llm {
        provider: &'a str,
        model: &'a str,
        endpoint: String,
        /// The rendered messages' size, or why the artifact could not be
        /// read for `{content}`.
        prompt_bytes: Result<usize, String>,
    },
}

/// The bytes of the messages `def` would send for `task` (system and
/// user), reading the artifact only when the prompt uses `{content}`.
fn prompt_bytes(def: &LlmAgentDef, task: &AgentTask) -> Result<usize, String> {
    let content = if def.block.prompt.contains("{content}") {
        let path = def.base_dir.join(&task.artifact);
        Some(
            std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read artifact {}: {e}", path.display()))?,
        )
    } else {
        None
    };
    let fields = Fields {
        content: content.as_deref(),
        artifact: &task.artifact,
        agent: task.agent.as_str(),
        id: task.id.as_str(),
    };
    let system = def.block.system.as_ref().map_or(0, String::len);
    Ok(system + render(&def.block.prompt, &fields).len())
}

/// The folder a step runs in, as the plan shows it.
fn folder(cwd: Option<&Path>) -> String {
    cwd.map_or_else(|| ".".to_owned(), |c| c.display().to_string())
}

fn mode_name(s: &Settings) -> &'static str {
    match (s.parallel, s.respect_dependencies) {
        (false, _) => "sequential",
        (true, false) => "parallel",
        (true, true) => "dependency-aware",
    }
}

fn seconds(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| json!(d.as_secs_f64()))
}

fn show_seconds(d: Option<Duration>) -> String {
    d.map_or_else(|| "none".to_owned(), |d| format!("{}s", d.as_secs_f64()))
}

/// Prints the plan and returns the exit code (0: valid; 2: invalid).
pub async fn show(mut config: Config) -> u8 {
    let source = std::mem::replace(&mut config.tasks, TaskSource::Manifest(Vec::new()));
    let tasks: Vec<AgentTask> = match source {
        TaskSource::Manifest(tasks) => tasks,
        TaskSource::AdHoc(input) => {
            let nothing_read = input.nothing_read();
            let stream = input.into_stream();
            let tasks: Vec<AgentTask> = stream.tasks.collect().await;
            if let Some(message) = stream.errors.take() {
                return exit::fail(&Failure::Input(message));
            }
            if tasks.is_empty() {
                eprintln!("agent-33: no artifacts: {nothing_read}");
            }
            tasks
        }
    };
    // Validated when the manifest was read; ad-hoc tasks have no dependencies.
    let mut levels = match plan::levels(&tasks) {
        Ok(levels) => levels,
        Err(e) => return exit::fail(&e.into()),
    };
    let s = &config.settings;
    let ignored = ignores_dependencies(s, &tasks);
    if ignored {
        // The plan shows the run as it would go: the same warning, and every
        // task ready at once.
        let mut notice =
            NoticeReporter::new(Box::new(std::io::stderr()), &crate::terminal::detect());
        let _ = notice.on_event(&Event::DependenciesIgnored);
        levels = vec![(0..tasks.len()).collect()];
    }
    // A task's slot is decided as it starts; only a limit of 1 foretells
    // it. Its input position is its place in this list.
    let slot = (effective_limit(s) == 1).then_some(0);
    let steps: Vec<Step<'_>> = tasks
        .iter()
        .zip(0_u64..)
        .map(|(task, seq)| {
            if let Some(def) = config.llm_agent(task.agent.as_str()) {
                return Step {
                    task,
                    work: Work::Llm {
                        provider: &def.provider,
                        model: &def.block.model,
                        endpoint: chat_url(&def.config.base_url),
                        prompt_bytes: prompt_bytes(def, task),
                    },
                    timeout: s.task_timeout(task.timeout, def.timeout),
                    retries: task.retries.or(def.retries).unwrap_or(s.retries),
                    agent_limit: def.parallel_limit,
                };
            }
            let def = config
                .agent(task.agent.as_str())
                .expect("tasks name known agents");
            let timeout = s.task_timeout(task.timeout, def.timeout);
            Step {
                task,
                work: Work::Command {
                    argv: def.command.argv_at(
                        task,
                        Place {
                            seq: Some(seq),
                            slot,
                        },
                    ),
                    script: match def.command.template() {
                        CommandTemplate::Shell(script) => Some(script.as_str()),
                        CommandTemplate::Argv(_) => None,
                    },
                    cwd: def.command.working_dir().map(PathBuf::as_path),
                    env: def.command.extra_env(),
                },
                timeout,
                retries: task.retries.or(def.retries).unwrap_or(s.retries),
                agent_limit: def.parallel_limit,
            }
        })
        .collect();
    let slot_unknown = slot.is_none()
        && config
            .agents
            .iter()
            .any(|a| a.command.uses(Placeholder::Slot));
    let out = match config.options.format {
        Format::Json => json_plan(s, &levels, &steps),
        Format::Text => text_plan(s, &levels, &steps, ignored, slot_unknown),
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("agent-33: error: cannot write the plan: {e}");
            exit::TASK_FAILED
        }
        _ => exit::SUCCESS,
    }
}

fn json_plan(s: &Settings, levels: &[Vec<usize>], steps: &[Step<'_>]) -> String {
    let levels: Vec<Value> = levels
        .iter()
        .map(|level| {
            Value::Array(
                level
                    .iter()
                    .map(|&i| {
                        let st = &steps[i];
                        let mut step = json!({
                            "id": st.task.id.as_str(),
                            "agent": st.task.agent.as_str(),
                            "artifact": st.task.artifact,
                            "timeout_seconds": seconds(st.timeout),
                            "retries": st.retries,
                            "agent_parallel_limit": st.agent_limit,
                            "depends_on": st.task.depends_on.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
                        });
                        let work = match &st.work {
                            Work::Command { argv, script, cwd, env } => json!({
                                "argv": argv.iter().map(|w| w.to_string_lossy()).collect::<Vec<_>>(),
                                "shell": script.is_some(),
                                "script": script,
                                "cwd": folder(*cwd),
                                "env": env.iter()
                                    .map(|(k, v)| (k.to_string_lossy().into_owned(), Value::from(v.to_string_lossy())))
                                    .collect::<serde_json::Map<String, Value>>(),
                            }),
                            Work::Llm { provider, model, endpoint, prompt_bytes } => json!({
                                "llm": {
                                    "provider": provider,
                                    "model": model,
                                    "endpoint": endpoint,
                                    "prompt_bytes": prompt_bytes.as_ref().ok(),
                                    "prompt_error": prompt_bytes.as_ref().err(),
                                },
                            }),
                        };
                        if let (Value::Object(step), Value::Object(work)) = (&mut step, work) {
                            step.extend(work);
                        }
                        step
                    })
                    .collect(),
            )
        })
        .collect();
    let plan = json!({
        "valid": true,
        "mode": mode_name(s),
        "tasks": steps.len(),
        "settings": {
            "parallel": s.parallel,
            "parallel_limit": s.parallel_limit,
            "respect_dependencies": s.respect_dependencies,
            "timeout_seconds": seconds(s.timeout),
            "continue_on_error": s.continue_on_error,
            "max_failures": s.max_failures,
            "fail_fast": s.fail_fast,
            "retries": s.retries,
            "retry_backoff_seconds": s.retry_backoff.as_secs_f64(),
            "kill_grace_seconds": s.kill_grace.as_secs_f64(),
            "deadline_seconds": seconds(s.deadline),
            "output_limit_bytes": s.output_limit_bytes,
        },
        "levels": levels,
    });
    let mut text = serde_json::to_string_pretty(&plan).expect("plain JSON values serialise");
    text.push('\n');
    text
}

/// How many tasks may run at once: 1 in sequential mode.
fn effective_limit(s: &Settings) -> usize {
    if s.parallel { s.parallel_limit } else { 1 }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Whether the run would ignore declared dependencies (parallel mode).
fn ignores_dependencies(s: &Settings, tasks: &[AgentTask]) -> bool {
    s.parallel && !s.respect_dependencies && tasks.iter().any(|t| !t.depends_on.is_empty())
}

fn text_plan(
    s: &Settings,
    levels: &[Vec<usize>],
    steps: &[Step<'_>],
    dependencies_ignored: bool,
    slot_unknown: bool,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let limit = effective_limit(s);
    let _ = writeln!(
        out,
        "Plan: {} task{} in {} level{} ({} mode, parallel limit {limit}, nothing runs)",
        steps.len(),
        plural(steps.len()),
        levels.len(),
        plural(levels.len()),
        mode_name(s),
    );
    if slot_unknown {
        let _ = writeln!(
            out,
            "{{%}} is shown as written: it becomes the slot a task starts in (1…{limit}), known only then"
        );
    }
    for (n, level) in levels.iter().enumerate() {
        let _ = writeln!(out, "\nLevel {n}");
        for &i in level {
            let st = &steps[i];
            let _ = writeln!(out, "  {}", st.task.id);
            let limit = st
                .agent_limit
                .map_or_else(String::new, |l| format!(" (agent limit {l})"));
            let _ = writeln!(out, "    agent:    {}{limit}", st.task.agent);
            let _ = writeln!(out, "    artifact: {}", st.task.artifact);
            match &st.work {
                Work::Command {
                    script: Some(script),
                    ..
                } => {
                    let _ = writeln!(out, "    script:   {script}");
                    let _ = writeln!(out, "    $1:       {}", st.task.artifact);
                }
                Work::Command { argv, .. } => {
                    let _ = writeln!(out, "    argv:     {}", display_argv(argv));
                }
                Work::Llm {
                    provider,
                    model,
                    endpoint,
                    prompt_bytes,
                } => {
                    let _ = writeln!(out, "    provider: {provider}");
                    let _ = writeln!(out, "    model:    {model}");
                    let _ = writeln!(out, "    endpoint: {endpoint}");
                    let _ = match prompt_bytes {
                        Ok(n) => writeln!(out, "    prompt:   {n} bytes"),
                        Err(e) => writeln!(out, "    prompt:   {e}"),
                    };
                }
            }
            let _ = writeln!(out, "    timeout:  {}", show_seconds(st.timeout));
            let _ = match st.retries {
                0 => writeln!(out, "    retries:  0"),
                n => writeln!(
                    out,
                    "    retries:  {n} (first after {}, then doubling)",
                    show_seconds(Some(s.retry_backoff))
                ),
            };
            if let Work::Command { cwd, env, .. } = &st.work {
                let _ = writeln!(out, "    cwd:      {}", folder(*cwd));
                if !env.is_empty() {
                    // As a shell would take them: `GREETING='hello world'`.
                    let vars: Vec<String> = env
                        .iter()
                        .map(|(k, v)| {
                            let quote = |w: &OsString| {
                                shell_words::quote(&w.to_string_lossy()).into_owned()
                            };
                            format!("{}={}", quote(k), quote(v))
                        })
                        .collect();
                    let _ = writeln!(out, "    env:      {}", vars.join(" "));
                }
            }
            if !st.task.depends_on.is_empty() {
                let deps: Vec<&str> = st.task.depends_on.iter().map(|d| d.as_str()).collect();
                let ignored = if dependencies_ignored {
                    " (ignored in parallel mode)"
                } else {
                    ""
                };
                let _ = writeln!(out, "    after:    {}{ignored}", deps.join(", "));
            }
        }
    }
    out
}
