//! PRODUCT.md, Timeouts and cancellation: SIGINT, SIGTERM and every other
//! terminating signal to agent-33, and no process left behind when it
//! exits.

use std::process::Command;

use agent33_testkit::{Signal, send_signal};

use crate::support::{BIN, HANG, Sandbox, script_manifest, wait_for_file, wait_until};

fn by_name(name: &str) -> Signal {
    match name {
        "INT" => Signal::INT,
        "TERM" => Signal::TERM,
        "HUP" => Signal::HUP,
        "USR1" => Signal::USR1,
        "XCPU" => Signal::XCPU,
        other => panic!("no signal {other} in these tests"),
    }
}

fn signal(pid: u32, name: &str) {
    send_signal(pid, by_name(name));
}

/// Whether a process is gone (or a zombie nobody waits for any more).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// How the stop reason names each signal.
fn reason_for(sig: &str) -> &'static str {
    match sig {
        "INT" => "interrupted (SIGINT)",
        "TERM" => "terminated (SIGTERM)",
        "HUP" => "hangup (SIGHUP)",
        "USR1" => "user signal 1 (SIGUSR1)",
        "XCPU" => "CPU time limit exceeded (SIGXCPU)",
        other => panic!("no signal {other} in these tests"),
    }
}

fn interrupted_run(sig: &str, code: i32) {
    let sb = Sandbox::new();
    // The task's shell becomes the sleep: its pid is the task's process.
    sb.manifest(&script_manifest(
        "",
        r#"echo $$ > "pid.tmp.$1" && mv "pid.tmp.$1" "pid.$1"
exec sleep 30"#,
        &["running", "pending"],
    ));
    let run = sb.run(["--report", "r.json", "--junit", "j.xml"]).spawn();
    wait_for_file(&sb.join("pid.running"));
    signal(run.pid(), sig);
    let out = run.finish();
    out.code_is(code);
    let pid = sb.read("pid.running").trim().to_owned();
    assert!(
        wait_until(HANG, || gone(&pid)),
        "the task {pid} still runs after agent-33 exited"
    );
    assert!(out.elapsed < HANG, "{:?}", out.elapsed);
    // Reports and the summary are still written.
    assert!(out.stderr.contains("Execution Summary"), "{}", out.stderr);
    assert!(sb.exists("j.xml"));
    let r = sb.report("r.json");
    assert_eq!(r.ids("cancelled"), ["t:running", "t:pending"]);
    let reason = reason_for(sig);
    assert_eq!(r.error("t:running"), format!("cancelled: {reason}"));
    assert_eq!(r.error("t:pending"), format!("not started: {reason}"));
    assert!(!sb.exists("ran.pending"));
    assert!(
        out.stderr.contains(&format!("\nStopped: {reason}\n")),
        "{}",
        out.stderr
    );
}

#[test]
fn sighup_cancels_the_run_and_is_named_a_hangup() {
    terminating_signal_run("HUP");
}

#[test]
fn sigint_cancels_the_run_writes_reports_and_exits_130() {
    interrupted_run("INT", 130);
}

#[test]
fn sigterm_cancels_the_run_writes_reports_and_exits_143() {
    interrupted_run("TERM", 143);
}

/// A terminating signal other than SIGINT and SIGTERM cancels the run as
/// they do and exits with 128 + its number. Unless this test was itself
/// started with it ignored: agent-33 then keeps it ignored, as it must
/// (see the nohup tests below).
fn terminating_signal_run(sig: &str) {
    let raw = by_name(sig).as_raw();
    let ignored = agent33_process::ignored_signals().expect("SigIgn");
    if ignored & (1 << (raw - 1)) != 0 {
        eprintln!("SIG{sig} is ignored here, and so it is in agent-33: nothing to test");
        return;
    }
    interrupted_run(sig, 128 + raw);
}

#[test]
fn sigusr1_cancels_the_run_writes_reports_and_exits_138() {
    terminating_signal_run("USR1");
}

#[test]
fn sigxcpu_cancels_the_run_writes_reports_and_exits_152() {
    terminating_signal_run("XCPU");
}

#[test]
fn no_process_outlives_agent_33() {
    let sb = Sandbox::new();
    // The task leaves a background child in its group and a double-forked
    // escapee in a new session, records their pids, and exits.
    sb.manifest(&script_manifest(
        "",
        r#"sleep 300 </dev/null >/dev/null 2>&1 &
echo $! > pid.child
setsid sh -c 'sleep 300 & echo $! > pid.tmp && mv pid.tmp pid.escapee' </dev/null >/dev/null 2>&1 &
wait_for pid.escapee"#,
        &["leaver"],
    ));
    sb.run([] as [&str; 0]).output().code_is(0);
    for file in ["pid.child", "pid.escapee"] {
        let pid = sb.read(file).trim().to_owned();
        assert!(!pid.is_empty(), "{file}");
        assert!(
            wait_until(HANG, || gone(&pid)),
            "{file}: process {pid} still runs after agent-33 exited"
        );
    }
}

/// Runs a task that ignores SIGTERM under a 30 s grace, sends `first`,
/// then `second` once the run says it is stopping, and returns the run's
/// output and its report.
fn killed_run(first: &str, second: &str) -> (crate::support::Output, crate::support::Report) {
    let sb = Sandbox::new();
    // The task ignores SIGTERM (from before it shows it started).
    sb.manifest(
        r#"
execution: {kill_grace_seconds: 30}
agents:
  t:
    shell: true
    command: "trap '' TERM; touch ran.stubborn; while :; do sleep 0.05; done"
tasks:
  - {agent: t, artifact: stubborn}
"#,
    );
    let mut run = sb.run(["--report", "r.json"]).spawn();
    wait_for_file(&sb.join("ran.stubborn"));
    signal(run.pid(), first);
    run.wait_for_stderr(&format!("stopping: {}", reason_for(first)));
    assert!(!run.has_exited(), "the first signal grants the grace");
    signal(run.pid(), second);
    let out = run.finish();
    assert!(
        out.elapsed < std::time::Duration::from_secs(20),
        "{:?}",
        out.elapsed
    );
    let r = sb.report("r.json");
    assert_eq!(r.status("t:stubborn"), "cancelled");
    (out, r)
}

#[test]
fn a_second_sigint_kills_tasks_without_waiting_for_the_grace_and_says_so() {
    // The kill ends every task at once, and their ends used to reach the
    // run before the kill itself did: loop to catch that race.
    for _ in 0..5 {
        let (out, r) = killed_run("INT", "INT");
        out.code_is(130);
        let reason = "interrupted twice (SIGINT): tasks killed";
        assert_eq!(r.error("t:stubborn"), format!("cancelled: {reason}"));
        assert_eq!(r.0["stopped"]["kind"], "killed", "{}", r.0["stopped"]);
        assert!(
            out.stderr.contains(&format!("\nStopped: {reason}\n")),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn a_sigint_after_a_sigterm_kills_and_names_both() {
    let (out, r) = killed_run("TERM", "INT");
    // The first signal decides the exit code.
    out.code_is(143);
    let reason = "terminated (SIGTERM), then interrupted (SIGINT): tasks killed";
    assert_eq!(r.error("t:stubborn"), format!("cancelled: {reason}"));
}

#[test]
fn a_background_child_holding_the_output_pipe_does_not_keep_the_task_open() {
    let sb = Sandbox::new();
    sb.manifest(&script_manifest(
        "",
        "sleep 300 &\necho $! > pid.child\necho done",
        &["leaver"],
    ));
    let out = sb.run(["--report", "r.json"]).output();
    out.code_is(0);
    assert!(out.elapsed < HANG, "{:?}", out.elapsed);
    let r = sb.report("r.json");
    assert_eq!(r.task("t:leaver")["output"], "done\n");
    let pid = sb.read("pid.child").trim().to_owned();
    assert!(wait_until(HANG, || gone(&pid)), "process {pid} still runs");
}

#[test]
fn a_sighup_ignored_by_the_caller_stays_ignored_as_under_nohup() {
    let sb = Sandbox::new();
    sb.manifest(&script_manifest("", r#"wait_for "go.$1""#, &["a"]));
    let mut run = sb.run(["--report", "r.json"]);
    // `trap '' HUP` is what nohup does: the signal is ignored across exec.
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(r#"trap '' HUP; exec "$@""#)
        .arg("sh")
        .arg(BIN)
        .args(["run", "--report", "r.json"])
        .current_dir(sb.path());
    run.cmd = sh;
    let run = run.spawn();
    wait_for_file(&sb.join("ran.a"));
    signal(run.pid(), "HUP");
    sb.write("go.a", "");
    let out = run.finish();
    out.code_is(0);
    assert_eq!(sb.report("r.json").ids("succeeded"), ["t:a"]);
}

/// Runs one task under an agent-33 started with `traps` ignored (as nohup
/// and `trap ''` leave them, across exec), and returns the task's SigIgn
/// and SigBlk masks.
fn task_masks_under_ignored(traps: &str) -> (u64, u64) {
    let sb = Sandbox::new();
    let mut run = sb.run::<[&str; 0], &str>([]);
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!(r#"trap '' {traps}; exec "$@""#))
        .arg("sh")
        .arg(BIN)
        .args(["run", "--report", "r.json", "--command"])
        .arg("sh -c 'grep -E \"^(SigIgn|SigBlk):\" /proc/self/status' sh")
        .arg("x")
        .current_dir(sb.path());
    run.cmd = sh;
    run.output().code_is(0);
    let report = sb.report("r.json");
    let output = report.task("command:x")["output"].as_str().expect("output");
    let mask = |name: &str| {
        let line = output.lines().find(|l| l.starts_with(name)).expect(name);
        u64::from_str_radix(line[name.len()..].trim(), 16).expect("hex")
    };
    (mask("SigIgn:"), mask("SigBlk:"))
}

fn bit(sig: u32) -> u64 {
    1u64 << (sig - 1)
}

/// What this test was started with ignored (SIGINT and SIGQUIT, for a
/// background job of a script) reaches agent-33 too, but SIGINT and
/// SIGTERM, which agent-33 always handles, start at their default in
/// tasks, and SIGPIPE, which the Rust runtime ignores here, never reaches.
fn inherited_ignored() -> u64 {
    let ours = agent33_process::ignored_signals().expect("SigIgn");
    ours & !(bit(2) | bit(13) | bit(15))
}

#[test]
fn signals_the_caller_ignored_stay_ignored_in_tasks_and_sigpipe_does_not() {
    let (ignored, _) = task_masks_under_ignored("HUP USR1");
    assert_eq!(
        ignored & 0x7fff_ffff,
        (inherited_ignored() | bit(1) | bit(10)) & 0x7fff_ffff,
        "{ignored:x}"
    );
}

/// A real-time signal ignored by the caller cannot be named in a signal set
/// of ours, so the spawn asks about each signal in the child instead: the
/// task must come out the same, with that signal still ignored.
#[test]
fn a_real_time_signal_the_caller_ignored_stays_ignored_in_tasks() {
    let (ignored, blocked) = task_masks_under_ignored("39");
    assert_eq!(ignored, inherited_ignored() | bit(39), "{ignored:x}");
    assert_eq!(blocked, 0);
}
