//! The fixture behaves as its flags say, and the helpers see what it does.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Stdio;
use std::time::Duration;

use agent33_testkit::{
    Fixture, GateFile, MarkerGuard, is_alive, is_pattern, numbers_after, parse_ready,
    pids_with_marker, ready_lines, wait_until,
};

/// Hang detector for things that take milliseconds.
const BUDGET: Duration = Duration::from_secs(20);

fn fixture() -> Fixture {
    Fixture::at(env!("CARGO_BIN_EXE_agent33-fixture"))
}

#[test]
fn prints_ready_with_its_own_group_and_exits_with_the_code() {
    let mut cmd = fixture().exit(7).command();
    let out = cmd.process_group(0).output().expect("spawn");
    assert_eq!(out.status.code(), Some(7));
    let text = String::from_utf8(out.stdout).expect("utf8");
    let (pid, pgid) = parse_ready(text.lines().next().expect("a line")).expect("ready line");
    assert!(pid > 0);
    assert_eq!(pgid, pid, "leads its own group");
}

#[test]
fn kills_itself_with_the_named_signal() {
    let out = fixture().signal("SEGV").command().output().expect("spawn");
    assert_eq!(out.status.signal(), Some(11));
}

#[test]
fn on_term_exit_exits_with_the_code_after_sigterm() {
    let guard = MarkerGuard::new("term");
    let mut child = fixture()
        .marker(guard.marker())
        .on_term_exit(143)
        .sleep(3600.0)
        .command()
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("ready");
    let (pid, _) = parse_ready(&line).expect("ready line");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).expect("pid"),
        rustix::process::Signal::TERM,
    )
    .expect("signal");
    assert_eq!(child.wait().expect("wait").code(), Some(143));
}

#[test]
fn wait_for_gone_exits_when_the_gate_is_removed() {
    let gate = GateFile::new();
    let mut child = fixture()
        .wait_for_gone(gate.path())
        .command()
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    assert!(child.try_wait().expect("try_wait").is_none());
    gate.release();
    assert!(wait_until(BUDGET, || child
        .try_wait()
        .expect("try_wait")
        .is_some()));
}

#[test]
fn grandchild_shares_the_group_and_holds_stdout() {
    let guard = MarkerGuard::new("grandchild");
    let mut child = fixture()
        .marker(guard.marker())
        .spawn_grandchild()
        .command()
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("piped");
    assert!(child.wait().expect("wait").success());
    // The leader is gone; the grandchild still runs with the marker.
    let pids = guard.pids();
    assert_eq!(pids.len(), 1, "{pids:?}");
    assert!(is_alive(pids[0]));
    let mut head = [0u8; 256];
    let n = stdout.read(&mut head).expect("read");
    let text = String::from_utf8_lossy(&head[..n]).into_owned();
    let (_, pgid) = parse_ready(text.lines().next().expect("line")).expect("ready");
    let grandchild = numbers_after(&text, "grandchild pid=");
    assert_eq!(grandchild, pids, "{text}");
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pids[0])).expect("stat");
    let fields: Vec<&str> = stat[stat.rfind(')').expect(")") + 2..].split(' ').collect();
    assert_eq!(fields[2], pgid.to_string(), "same process group");
    drop(guard);
    assert!(wait_until(BUDGET, || !is_alive(pids[0])));
}

#[test]
fn daemonize_leaves_a_setsid_escapee() {
    let guard = MarkerGuard::new("daemon");
    let out = fixture()
        .marker(guard.marker())
        .daemonize()
        .command()
        .output()
        .expect("spawn");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("daemon spawned"));
    let pids = guard.pids();
    assert_eq!(pids.len(), 1, "{pids:?}");
    // Sessions read from /proc, not getsid(): inside a PID namespace (CI
    // containers) a session led from outside reads as 0, which rustix rejects.
    let session_of = |pid: &str| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let fields: Vec<&str> = stat[stat.rfind(')').expect(")") + 2..].split(' ').collect();
        fields[3].to_owned()
    };
    let daemon_session = session_of(&pids[0].to_string());
    assert_ne!(daemon_session, "0", "its session leader is visible to us");
    assert_ne!(daemon_session, session_of("self"), "a session of its own");
    let marker = guard.marker().to_owned();
    drop(guard);
    assert!(wait_until(BUDGET, || !is_alive(pids[0])));
    assert!(pids_with_marker(&marker).is_empty());
}

#[test]
fn escape_leaves_a_setsid_child_before_reporting_it() {
    let guard = MarkerGuard::new("escape");
    let out = fixture()
        .marker(guard.marker())
        .escape()
        .command()
        .output()
        .expect("spawn");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (_, pgid) = parse_ready(text.lines().next().expect("a line")).expect("ready line");
    let escapee = numbers_after(&text, "escapee pid=");
    assert_eq!(escapee.len(), 1, "{text}");
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", escapee[0])).expect("stat");
    let fields: Vec<&str> = stat[stat.rfind(')').expect(")") + 2..].split(' ').collect();
    // Reported only once out of the fixture's group, as a leader of its own.
    assert_ne!(fields[2], pgid.to_string(), "left the group");
    assert_eq!(fields[2], escapee[0].to_string(), "leads its own group");
    assert_eq!(fields[3], escapee[0].to_string(), "leads its own session");
    drop(guard);
    assert!(wait_until(BUDGET, || !is_alive(escapee[0])));
}

#[test]
fn ready_file_gets_one_complete_line_per_fixture() {
    let dir = std::env::temp_dir().join(agent33_testkit::unique_marker("ready-dir"));
    std::fs::create_dir(&dir).expect("a temp folder");
    let path = dir.join("ready");
    assert!(ready_lines(&path).is_empty(), "no file, no lines");
    let children: Vec<_> = (0..4)
        .map(|_| {
            fixture()
                .quiet()
                .write_bytes(1000)
                .ready_file(&path)
                .command()
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let mut pids: Vec<u32> = children.iter().map(std::process::Child::id).collect();
    for mut child in children {
        assert!(child.wait().expect("wait").success());
    }
    let mut lines: Vec<u32> = ready_lines(&path).into_iter().map(|(pid, _)| pid).collect();
    pids.sort_unstable();
    lines.sort_unstable();
    assert_eq!(lines, pids);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn writes_exactly_the_pattern() {
    let out = fixture()
        .quiet()
        .write_bytes(1_000_003)
        .write_stderr_bytes(1234)
        .command()
        .output()
        .expect("spawn");
    assert_eq!(out.stdout.len(), 1_000_003);
    assert!(is_pattern(&out.stdout));
    assert_eq!(out.stderr.len(), 1234);
    assert!(is_pattern(&out.stderr));
}

#[test]
fn close_stdout_gives_eof_while_it_keeps_running() {
    let guard = MarkerGuard::new("close");
    let mut child = fixture()
        .marker(guard.marker())
        .close_stdout()
        .sleep(3600.0)
        .command()
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut all = Vec::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_end(&mut all)
        .expect("eof");
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "still running"
    );
    child.kill().expect("kill");
    child.wait().expect("reap");
}

#[test]
fn print_args_env_and_stdin() {
    let out = fixture()
        .quiet()
        .print_env("AGENT33_TESTKIT_X")
        .read_stdin()
        .print("hello")
        .eprint("oops")
        .print_args(["a b", "$(x);"])
        .command()
        .env("AGENT33_TESTKIT_X", "1")
        .stdin(Stdio::null())
        .output()
        .expect("spawn");
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert_eq!(
        text,
        "arg=a b\narg=$(x);\nAGENT33_TESTKIT_X=1\nstdin bytes=0\nhello\n"
    );
    assert_eq!(out.stderr, b"oops\n");
}
