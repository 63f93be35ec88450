//! Real processes through the engine: outcomes, environment, cancellation,
//! process groups and bounded output.
//!
//! Every test waits on observable facts (a result, a pid gone from /proc)
//! with generous budgets; upper bounds on time are hang detectors at least
//! ten times the expected value. Fixtures carry a marker and a guard that
//! kills them, so a failing test leaks nothing. Tests that change the whole
//! process (subreaper, killing every descendant) live in `escapes.rs`.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use agent33_parallel::{AgentTask, Agents, RunControl, TaskStatus};
use agent33_process::{CommandAgent, CommandSpec, ProcessOptions, output_file_stem};
use agent33_testkit::{
    Fixture, MarkerGuard, is_alive, is_pattern, numbers_after, wait_until_async,
};
use common::{
    BUDGET, agent, all_gone, executor, run_fixture, run_many, run_one, spec, unique_task,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_zero_succeeds_with_its_output() {
    let result = run_fixture(Fixture::new().print("hello").eprint("warned"), executor()).await;
    assert_eq!(result.status, TaskStatus::Success, "{result:?}");
    assert_eq!(result.exit_code, Some(0));
    assert_eq!(result.error, None);
    assert!(result.output.starts_with("ready pid="), "{}", result.output);
    assert!(result.output.ends_with("hello\n"), "{}", result.output);
    assert_eq!(result.stderr, "warned\n");
    assert!(result.notes.is_empty(), "{:?}", result.notes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_zero_exit_fails_with_the_code() {
    let result = run_fixture(Fixture::new().exit(3), executor()).await;
    assert_eq!(result.status, TaskStatus::Failed);
    assert_eq!(result.error.as_deref(), Some("exit code 3"));
    assert_eq!(result.exit_code, Some(3));
    assert!(result.output.starts_with("ready pid="));
}

/// A task ends when its main process exits: a process it left outside its
/// group, without our variables (so no sweep claims it) and holding its
/// stdout, keeps the agent collecting output for seconds, but the task's
/// outcome is the leader's, not a timeout that passes meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_while_output_is_still_collected_does_not_change_the_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let left = dir.path().join("left");
    // The leader waits until the escapee has left its group (it writes the
    // file after `setsid`), or the group's SIGKILL at its exit would get it.
    let script = r#"setsid env -i sh -c ': > "$1"; exec sleep 3' sh "$0" &
        while [ ! -e "$0" ]; do sleep 0.01; done
        echo main done"#;
    let argv = vec!["sh".into(), "-c".into(), script.into(), left.into()];
    let options = ProcessOptions {
        drain_timeout: Duration::from_secs(20),
        ..ProcessOptions::default()
    };
    let result = run_one(
        agent(argv, options),
        unique_task(),
        executor().timeout(Duration::from_secs(1)),
    )
    .await;
    assert_eq!(result.status, TaskStatus::Success, "{result:?}");
    assert_eq!(result.exit_code, Some(0));
    assert_eq!(result.output, "main done\n");
    assert!(
        result.duration_ms >= 1_000,
        "the escapee held stdout past the timeout: {} ms",
        result.duration_ms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_is_named_and_has_no_exit_code() {
    let result = run_fixture(Fixture::new().signal("SEGV"), executor()).await;
    assert_eq!(result.status, TaskStatus::Failed);
    assert_eq!(result.error.as_deref(), Some("killed by SIGSEGV"));
    assert_eq!(result.exit_code, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_program_is_a_start_failure() {
    let result = run_one(
        agent(
            vec!["/nonexistent/agent33-prog".into()],
            ProcessOptions::default(),
        ),
        unique_task(),
        executor(),
    )
    .await;
    assert_eq!(result.status, TaskStatus::Failed);
    assert_eq!(
        result.error.as_deref(),
        Some("cannot start `/nonexistent/agent33-prog`: No such file or directory (os error 2)")
    );
    assert_eq!(result.exit_code, None);
    assert_eq!(result.attempts, 1);
    assert!(result.started_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_without_execute_permission_is_a_start_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("write");
    let result = run_one(
        agent(vec![script.clone().into()], ProcessOptions::default()),
        unique_task(),
        executor(),
    )
    .await;
    assert_eq!(result.status, TaskStatus::Failed);
    assert_eq!(
        result.error,
        Some(format!(
            "cannot start `{}`: Permission denied (os error 13)",
            script.display()
        ))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_working_directory_is_named() {
    let argv = Fixture::new().argv();
    let builder = move |_task: &AgentTask, _attempt: u32| {
        Ok(CommandSpec {
            argv: argv.clone(),
            cwd: Some("/nonexistent/agent33-dir".into()),
            env: Vec::new(),
        })
    };
    let result = run_one(
        CommandAgent::new(builder, ProcessOptions::default()),
        unique_task(),
        executor(),
    )
    .await;
    assert_eq!(result.status, TaskStatus::Failed);
    let error = result.error.expect("an error");
    assert!(
        error.contains("working directory `/nonexistent/agent33-dir`: No such file or directory"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builder_error_fails_the_task() {
    let builder = |_task: &AgentTask, _attempt: u32| Err::<CommandSpec, _>("no template".into());
    let result = run_one(
        CommandAgent::new(builder, ProcessOptions::default()),
        unique_task(),
        executor(),
    )
    .await;
    assert_eq!(result.status, TaskStatus::Failed);
    assert_eq!(
        result.error.as_deref(),
        Some("cannot build command: no template")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_gets_the_agent33_variables_and_the_inherited_environment() {
    let argv = Fixture::new()
        .quiet()
        .print_env("AGENT33_TASK_ID")
        .print_env("AGENT33_AGENT")
        .print_env("AGENT33_ARTIFACT")
        .print_env("AGENT33_ATTEMPT")
        .print_env("EXTRA")
        .print_env("PATH")
        .argv();
    let builder = move |_task: &AgentTask, _attempt: u32| {
        Ok(CommandSpec {
            argv: argv.clone(),
            cwd: None,
            // The command's own variables never replace ours.
            env: vec![
                ("EXTRA".into(), "x y".into()),
                ("AGENT33_TASK_ID".into(), "spoofed".into()),
            ],
        })
    };
    let task = AgentTask::new("fixture", "docs/a b.md").with_id("my-id");
    let result = run_one(
        CommandAgent::new(builder, ProcessOptions::default()),
        task,
        executor(),
    )
    .await;
    let path = std::env::var("PATH").expect("PATH is set");
    assert_eq!(
        result.output,
        format!(
            "AGENT33_TASK_ID=my-id\nAGENT33_AGENT=fixture\nAGENT33_ARTIFACT=docs/a b.md\n\
             AGENT33_ATTEMPT=1\nEXTRA=x y\nPATH={path}\n"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_utf8_artifact_reaches_the_command_as_its_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = ProcessOptions {
        output_dir: Some(dir.path().to_owned()),
        ..ProcessOptions::default()
    };
    let task = AgentTask::from_bytes("fixture", b"caf\xe9.md");
    let id = task.id.to_string();
    let result = run_one(
        agent(
            Fixture::new().quiet().print_env("AGENT33_ARTIFACT").argv(),
            options,
        ),
        task,
        executor(),
    )
    .await;
    assert_eq!(result.status, TaskStatus::Success);
    let file = dir
        .path()
        .join(format!("{}.stdout", output_file_stem(&id, 1)));
    assert_eq!(
        std::fs::read(&file).expect("the stdout file"),
        b"AGENT33_ARTIFACT=caf\xe9.md\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_is_empty() {
    let result = run_fixture(Fixture::new().quiet().read_stdin(), executor()).await;
    assert_eq!(result.output, "stdin bytes=0\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_arrive_literally_without_a_shell() {
    let nasty = [
        "a b; echo pwned",
        "$(touch /tmp/agent33-pwned)",
        "`id`",
        "'q' \"d\" * ~ \\ |&>",
        "",
    ];
    let result = run_fixture(Fixture::new().quiet().print_args(nasty), executor()).await;
    let expected: String = nasty.iter().map(|a| format!("arg={a}\n")).collect();
    assert_eq!(result.output, expected);
    assert!(!std::path::Path::new("/tmp/agent33-pwned").exists());
}

/// An agent running the same process description for every attempt.
fn fixed_agent(spec: CommandSpec) -> CommandAgent {
    CommandAgent::new(
        move |_task: &AgentTask, _attempt: u32| Ok(spec.clone()),
        ProcessOptions::default(),
    )
}

/// Runs `argv` with `PATH` set to `path` for the command only.
fn agent_with_path(argv: &[&str], path: std::ffi::OsString) -> CommandAgent {
    fixed_agent(CommandSpec {
        env: vec![("PATH".into(), path)],
        ..spec(argv.iter().map(Into::into).collect())
    })
}

/// In our own folder the agent spawns directly; with another folder it
/// goes through std. Tests run a command both ways.
const BOTH_WAYS: [Option<&str>; 2] = [None, Some("/")];

fn link_cat(dir: &std::path::Path, name: &str) {
    let cat = ["/bin/cat", "/usr/bin/cat"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("cat");
    std::os::unix::fs::symlink(cat, dir.join(name)).expect("symlink");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_found_on_path_keeps_its_name_as_argv0() {
    // The program is looked up once, but it must not see the folder it was
    // found in: argv[0] stays the word of the command.
    let dir = tempfile::tempdir().expect("tempdir");
    link_cat(dir.path(), "agent33-probe-cat");
    let path = dir.path().as_os_str().to_owned();
    let agent = agent_with_path(&["agent33-probe-cat", "/proc/self/cmdline"], path);
    let agents = Agents::new().add("fixture", agent);
    let tasks: Vec<AgentTask> = (0..3).map(|_| unique_task()).collect();
    let results = executor()
        .build()
        .expect("valid")
        .run_all(tasks, &agents)
        .await;
    assert_eq!(results.succeeded.len(), 3, "{:?}", results.failed);
    for result in &results.succeeded {
        assert_eq!(result.output, "agent33-probe-cat\0/proc/self/cmdline\0");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_start_with_default_signals_in_their_own_group_either_way() {
    // Both ways must hand the task the same process: no blocked signal, no
    // ignored one but those we were started with (Rust ignores SIGPIPE
    // here), its own group.
    for cwd in BOTH_WAYS {
        let agent = fixed_agent(CommandSpec {
            cwd: cwd.map(PathBuf::from),
            ..spec(vec![
                "cat".into(),
                "/proc/self/stat".into(),
                "/proc/self/status".into(),
            ])
        });
        let result = run_one(agent, unique_task(), executor()).await;
        assert_eq!(result.status, TaskStatus::Success, "{result:?}");
        let status = &result.output;
        let mask = |name: &str| {
            let line = status.lines().find(|l| l.starts_with(name)).expect(name);
            u64::from_str_radix(line[name.len()..].trim(), 16).expect("hex")
        };
        // Standard signals (1-31) only: glibc keeps its own real-time ones.
        // What this test was started with ignored (SIGINT and SIGQUIT for a
        // background job of a script) stays ignored, as across any exec;
        // SIGPIPE, which the Rust runtime ignores here, does not.
        let ours = agent33_process::ignored_signals().expect("SigIgn");
        let sigpipe = 1 << (13 - 1);
        assert_eq!(
            mask("SigIgn:") & 0x7fff_ffff,
            ours & 0x7fff_ffff & !sigpipe,
            "{status}"
        );
        assert_eq!(mask("SigBlk:"), 0, "{status}");
        let stat = status.lines().next().expect("stat");
        let fields: Vec<&str> = stat[stat.rfind(')').expect(")") + 2..].split(' ').collect();
        let pid = stat.split(' ').next().expect("pid");
        assert_eq!(fields[2], pid, "leads its own process group");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_id_is_ours_either_way_whatever_the_spec_says() {
    // The guard finds a run's leftovers by this variable: a command must
    // not be able to name another run's.
    for cwd in BOTH_WAYS {
        let agent = fixed_agent(CommandSpec {
            cwd: cwd.map(PathBuf::from),
            env: vec![("AGENT33_RUN_ID".into(), "spoofed".into())],
            ..spec(Fixture::new().quiet().print_env("AGENT33_RUN_ID").argv())
        });
        let result = run_one(agent, unique_task(), executor()).await;
        assert_eq!(
            result.output,
            format!("AGENT33_RUN_ID={}\n", agent33_process::run_id()),
            "cwd {cwd:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_set_twice_takes_its_last_value_either_way() {
    for cwd in BOTH_WAYS {
        let agent = fixed_agent(CommandSpec {
            cwd: cwd.map(PathBuf::from),
            env: vec![
                ("DUP".into(), "first".into()),
                ("HOME".into(), "/nowhere".into()),
                ("DUP".into(), "second".into()),
            ],
            ..spec(vec!["printenv".into(), "DUP".into(), "HOME".into()])
        });
        let result = run_one(agent, unique_task(), executor()).await;
        assert_eq!(result.output, "second\n/nowhere\n", "{result:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_moved_is_searched_again() {
    let (first, second) = (tempfile::tempdir(), tempfile::tempdir());
    let (first, second) = (first.expect("tempdir"), second.expect("tempdir"));
    link_cat(first.path(), "agent33-probe-moved");
    link_cat(second.path(), "agent33-probe-moved");
    let path = std::env::join_paths([first.path(), second.path()]).expect("path");
    let agent = agent_with_path(&["agent33-probe-moved", "/proc/self/cmdline"], path);
    let once = run_one(agent.clone(), unique_task(), executor()).await;
    assert_eq!(once.status, TaskStatus::Success, "{once:?}");
    // The file found the first time goes away; the next task still runs.
    std::fs::remove_file(first.path().join("agent33-probe-moved")).expect("rm");
    let again = run_one(agent.clone(), unique_task(), executor()).await;
    assert_eq!(again.status, TaskStatus::Success, "{again:?}");
    assert_eq!(again.output, "agent33-probe-moved\0/proc/self/cmdline\0");
    // Gone everywhere: the usual start error, naming the program.
    std::fs::remove_file(second.path().join("agent33-probe-moved")).expect("rm");
    let gone = run_one(agent, unique_task(), executor()).await;
    assert_eq!(gone.status, TaskStatus::Failed);
    assert_eq!(
        gone.error.as_deref(),
        Some("cannot start `agent33-probe-moved`: No such file or directory (os error 2)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_see_their_attempt_number() {
    let fail = Fixture::new().quiet().exit(1).argv();
    let report = Fixture::new().quiet().print_env("AGENT33_ATTEMPT").argv();
    let builder = move |_task: &AgentTask, attempt: u32| {
        Ok(spec(if attempt == 1 {
            fail.clone()
        } else {
            report.clone()
        }))
    };
    let result = run_one(
        CommandAgent::new(builder, ProcessOptions::default()),
        unique_task().retries(1),
        executor().retry_backoff(Duration::ZERO),
    )
    .await;
    assert_eq!(result.status, TaskStatus::Success);
    assert_eq!(result.attempts, 2);
    assert_eq!(result.output, "AGENT33_ATTEMPT=2\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_grandchildren() {
    let guard = MarkerGuard::new("timeout");
    let fixture = Fixture::new()
        .marker(guard.marker())
        .spawn_grandchild()
        .sleep(3600.0);
    let start = Instant::now();
    let result = run_fixture(
        fixture,
        executor()
            .timeout(Duration::from_millis(500))
            .kill_grace(Duration::from_secs(5)),
    )
    .await;
    let ended = start.elapsed();
    assert_eq!(result.status, TaskStatus::Timeout);
    // SIGTERM killed the leader within the grace: its real outcome is kept.
    assert_eq!(result.error.as_deref(), Some("timed out after 0.5s"));
    assert_eq!(result.exit_code, None);
    assert!(ended >= Duration::from_millis(500));
    let grandchildren = numbers_after(&result.output, "grandchild pid=");
    assert_eq!(grandchildren.len(), 1, "{}", result.output);
    assert!(all_gone(&guard).await, "survivors: {:?}", guard.pids());
    eprintln!(
        "timeout_kills_grandchildren: result after {ended:?}, group gone {:?} after start",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_ignoring_sigterm_gets_sigkill_after_the_grace() {
    let guard = MarkerGuard::new("ignore-term");
    let fixture = Fixture::new()
        .marker(guard.marker())
        .ignore_term()
        .spawn_grandchild()
        .sleep(3600.0);
    let start = Instant::now();
    let result = run_fixture(
        fixture,
        executor()
            .timeout(Duration::from_millis(300))
            .kill_grace(Duration::from_millis(300)),
    )
    .await;
    let ended = start.elapsed();
    assert_eq!(result.status, TaskStatus::Timeout);
    assert!(ended >= Duration::from_millis(600), "{ended:?}");
    assert!(
        result.output.contains("grandchild pid="),
        "output printed before the stop is kept: {}",
        result.output
    );
    assert!(all_gone(&guard).await, "survivors: {:?}", guard.pids());
    let dead = start.elapsed();
    eprintln!(
        "a_child_ignoring_sigterm_gets_sigkill_after_the_grace: result after {ended:?}, \
         all dead {:?} after the result",
        dead - ended
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_catches_sigterm_keeps_its_exit_code() {
    let guard = MarkerGuard::new("term-143");
    let fixture = Fixture::new()
        .marker(guard.marker())
        .on_term_exit(143)
        .sleep(3600.0);
    let start = Instant::now();
    let result = run_fixture(
        fixture,
        executor()
            .timeout(Duration::from_millis(300))
            .kill_grace(Duration::from_secs(20)),
    )
    .await;
    assert_eq!(result.status, TaskStatus::Timeout);
    assert_eq!(result.exit_code, Some(143));
    assert_eq!(result.error.as_deref(), Some("timed out after 0.3s"));
    // It ended on its own, long before the 20 s grace.
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(all_gone(&guard).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_exit_ends_the_task_although_a_grandchild_holds_stdout() {
    let guard = MarkerGuard::new("holder");
    let fixture = Fixture::new()
        .marker(guard.marker())
        .spawn_grandchild()
        .print("leader done");
    let start = Instant::now();
    let result = run_fixture(fixture, executor()).await;
    let ended = start.elapsed();
    assert_eq!(result.status, TaskStatus::Success, "{result:?}");
    assert!(result.output.contains("leader done"), "{}", result.output);
    // The grandchild sleeps an hour; the task ended with its leader.
    assert!(ended < Duration::from_secs(10), "{ended:?}");
    let grandchild = numbers_after(&result.output, "grandchild pid=");
    assert_eq!(grandchild.len(), 1);
    assert!(
        wait_until_async(BUDGET, || !is_alive(grandchild[0])).await,
        "the grandchild survived"
    );
    assert!(all_gone(&guard).await);
    eprintln!("leader_exit_ends_the_task_although_a_grandchild_holds_stdout: {ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_closes_stdout_still_times_out() {
    let guard = MarkerGuard::new("closed");
    let fixture = Fixture::new()
        .marker(guard.marker())
        .close_stdout()
        .ignore_term()
        .sleep(3600.0);
    let result = run_fixture(
        fixture,
        executor()
            .timeout(Duration::from_millis(300))
            .kill_grace(Duration::from_millis(100)),
    )
    .await;
    assert_eq!(result.status, TaskStatus::Timeout);
    assert!(result.output.starts_with("ready pid="));
    assert!(all_gone(&guard).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_run_drops_the_attempt_and_kills_its_group() {
    let guard = MarkerGuard::new("run-kill");
    let argv = Fixture::new()
        .marker(guard.marker())
        .ignore_term()
        .spawn_grandchild()
        .sleep(3600.0)
        .argv();
    let agents = Agents::new().add("fixture", agent(argv, ProcessOptions::default()));
    let control = RunControl::new();
    let executor = executor()
        .kill_grace(Duration::from_secs(3600))
        .build()
        .expect("valid settings");
    let events = executor.run(vec![unique_task()], &agents, control.clone());
    // Both the leader and its grandchild are up.
    assert!(wait_until_async(BUDGET, || guard.pids().len() == 2).await);
    control.kill();
    let results = events.collect_results().await;
    assert_eq!(results.cancelled.len(), 1);
    assert!(all_gone(&guard).await, "survivors: {:?}", guard.pids());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_files_contain_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir: PathBuf = dir.path().join("logs");
    let options = ProcessOptions {
        output_dir: Some(out_dir.clone()),
        ..ProcessOptions::default()
    };
    let argv = Fixture::new()
        .quiet()
        .write_bytes(5_000_000)
        .write_stderr_bytes(3_000_000)
        .exit(2)
        .argv();
    let task = AgentTask::new("fixture", "a/../b c.md");
    let id = task.id.to_string();
    let result = run_one(
        agent(argv, options),
        task,
        executor().output_limit_bytes(1024),
    )
    .await;
    assert_eq!(result.status, TaskStatus::Failed);
    assert_eq!(result.exit_code, Some(2));
    let stem = output_file_stem(&id, 1);
    let stdout_path = out_dir.join(format!("{stem}.stdout"));
    let stderr_path = out_dir.join(format!("{stem}.stderr"));
    assert_eq!(
        result.notes,
        vec![
            format!("stdout saved to {}", stdout_path.display()),
            format!("stderr saved to {}", stderr_path.display()),
        ]
    );
    let stdout = std::fs::read(&stdout_path).expect("stdout file");
    assert_eq!(stdout.len(), 5_000_000);
    assert!(is_pattern(&stdout));
    let stderr = std::fs::read(&stderr_path).expect("stderr file");
    assert_eq!(stderr.len(), 3_000_000);
    assert!(is_pattern(&stderr));
    // The result itself keeps only the tail.
    assert!(
        result
            .output
            .starts_with("[agent-33: 4998976 bytes truncated]\n")
    );
    assert!(stem.as_bytes().iter().all(|b| b.is_ascii()));
    assert!(!stem.as_bytes().contains(&b'/'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_parallel_tasks_all_end_and_leave_nothing() {
    let guard = MarkerGuard::new("parallel");
    let argv = Fixture::new()
        .marker(guard.marker())
        .spawn_grandchild()
        .print("done")
        .argv();
    let results = run_many(agent(argv, ProcessOptions::default()), 24, 8).await;
    assert_eq!(results.succeeded.len(), 24, "{:?}", results.failed);
    assert!(all_gone(&guard).await, "survivors: {:?}", guard.pids());
}
