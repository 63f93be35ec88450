//! `agent-33 run --dry-run`: resolves everything (globs, dependencies,
//! templates, timeouts, retries, folders, environment) and prints the plan,
//! grouped by dependency level, as text or JSON. Runs nothing.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent33_cli::args::Format;
use agent33_cli::config::{Config, TaskSource};
use agent33_cli::template::{CommandTemplate, Place, Placeholder, display_argv};
use agent33_parallel::{AgentTask, Event, Settings, plan};
use agent33_report::{NoticeReporter, Reporter as _};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::exit;
use crate::failure::Failure;

/// One task as the plan shows it.
struct Step<'a> {
    task: &'a AgentTask,
    argv: Vec<OsString>,
    script: Option<&'a str>,
    timeout: Option<Duration>,
    /// Extra attempts after a failure: the task's, its agent's or the run's.
    retries: u32,
    agent_limit: Option<usize>,
    /// Where it runs: the agent's folder, or (`None`) the current one.
    cwd: Option<&'a Path>,
    /// The agent's own variables, beside the `AGENT33_*` ones every task gets.
    env: &'a [(OsString, OsString)],
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
            let def = config
                .agent(task.agent.as_str())
                .expect("tasks name known agents");
            let timeout = s.task_timeout(task.timeout, def.timeout);
            Step {
                task,
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
                timeout,
                retries: task.retries.or(def.retries).unwrap_or(s.retries),
                agent_limit: def.parallel_limit,
                cwd: def.command.working_dir().map(PathBuf::as_path),
                env: def.command.extra_env(),
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
                        json!({
                            "id": st.task.id.as_str(),
                            "agent": st.task.agent.as_str(),
                            "artifact": st.task.artifact,
                            "argv": st.argv.iter().map(|w| w.to_string_lossy()).collect::<Vec<_>>(),
                            "shell": st.script.is_some(),
                            "script": st.script,
                            "timeout_seconds": seconds(st.timeout),
                            "retries": st.retries,
                            "cwd": folder(st.cwd),
                            "env": st.env.iter()
                                .map(|(k, v)| (k.to_string_lossy().into_owned(), Value::from(v.to_string_lossy())))
                                .collect::<serde_json::Map<String, Value>>(),
                            "agent_parallel_limit": st.agent_limit,
                            "depends_on": st.task.depends_on.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
                        })
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
            match st.script {
                Some(script) => {
                    let _ = writeln!(out, "    script:   {script}");
                    let _ = writeln!(out, "    $1:       {}", st.task.artifact);
                }
                None => {
                    let _ = writeln!(out, "    argv:     {}", display_argv(&st.argv));
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
            let _ = writeln!(out, "    cwd:      {}", folder(st.cwd));
            if !st.env.is_empty() {
                // As a shell would take them: `GREETING='hello world'`.
                let vars: Vec<String> = st
                    .env
                    .iter()
                    .map(|(k, v)| {
                        let quote =
                            |w: &OsString| shell_words::quote(&w.to_string_lossy()).into_owned();
                        format!("{}={}", quote(k), quote(v))
                    })
                    .collect();
                let _ = writeln!(out, "    env:      {}", vars.join(" "));
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
