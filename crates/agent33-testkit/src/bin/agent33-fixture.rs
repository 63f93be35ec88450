//! `agent33-fixture`: a program whose behaviour the test decides, for
//! exercising process control with real processes.
//!
//! It prints `ready pid=<pid> pgid=<pgid>` first (unless `--quiet`), then does
//! what its flags say, in this order: report (`--print-args`, `--print-env`,
//! `--read-stdin`, `--print`, `--eprint`), start helpers
//! (`--spawn-grandchild`, `--escape`, `--daemonize`), write (`--write-bytes`,
//! `--write-stderr-bytes`), `--close-stdout`, `--signal`, `--ready-file`,
//! then wait (`--wait-for-gone`, `--sleep`) and exit with `--exit` (0 by
//! default).
//!
//! It deliberately uses no async runtime and no unsafe code: helpers are
//! re-executions of this same binary with internal flags, so a "double fork"
//! is two spawns and a `setsid()` in the middle process.
//!
//! Flags:
//!
//! | flag | effect |
//! |---|---|
//! | `--exit N` | exit with code N at the end |
//! | `--sleep SECS` | wait that long (fractions allowed) before exiting |
//! | `--wait-for-gone PATH` | wait until PATH no longer exists (polled every 10 ms) |
//! | `--ignore-term` | catch SIGTERM and carry on (helpers inherit this) |
//! | `--on-term-exit N` | catch SIGTERM and exit with code N while waiting |
//! | `--spawn-grandchild` | start a sleeping copy in the same process group that holds stdout; print `grandchild pid=N` |
//! | `--escape` | start a sleeping copy that calls setsid (a session and group of its own) but stays our child; print `escapee pid=N` once it has left our group |
//! | `--daemonize` | double fork + setsid: a sleeping copy in its own session; print `daemon spawned` |
//! | `--daemon-keeps-stdout` | with `--daemonize`, the escapee keeps stdout open |
//! | `--write-bytes N` | write N pattern bytes to stdout, fast |
//! | `--write-stderr-bytes N` | the same on stderr |
//! | `--close-stdout` | point stdout at /dev/null, closing the pipe |
//! | `--signal SIG` | kill itself with SIG (`SEGV`, `TERM`, `KILL`, … or a number) |
//! | `--ready-file PATH` | once helpers are started and output written, right before waiting, append `ready pid=<pid> pgid=<pgid>` to PATH (one `write`, so lines of concurrent fixtures never mix) |
//! | `--marker STR` | no effect: lets tests find this process (and its helpers) in /proc |
//! | `--print STR` / `--eprint STR` | print a line on stdout / stderr |
//! | `--print-env NAME` | print `NAME=value` or `NAME unset` |
//! | `--read-stdin` | read stdin to its end and print `stdin bytes=N` |
//! | `--print-args` | print `arg=<arg>` for every argument after `--` |
//! | `--quiet` | no `ready` line |

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::process::{DumpableBehavior, Pid, Resource, Rlimit, Signal};

/// How often waits look at the clock, the gate file and the SIGTERM flag.
const POLL: Duration = Duration::from_millis(10);

#[derive(Default)]
struct Flags {
    exit: i32,
    sleep: Option<f64>,
    wait_for_gone: Option<PathBuf>,
    ignore_term: bool,
    on_term_exit: Option<i32>,
    spawn_grandchild: bool,
    daemonize: bool,
    daemon_keeps_stdout: bool,
    setsid_child: bool,
    escape: bool,
    setsid_self: bool,
    ready_file: Option<PathBuf>,
    write_bytes: u64,
    write_stderr_bytes: u64,
    close_stdout: bool,
    signal: Option<String>,
    marker: Option<OsString>,
    print: Vec<OsString>,
    eprint: Vec<OsString>,
    print_env: Vec<OsString>,
    read_stdin: bool,
    print_args: bool,
    quiet: bool,
    positional: Vec<OsString>,
}

fn usage(msg: &str) -> ! {
    eprintln!("agent33-fixture: {msg}");
    std::process::exit(64);
}

fn parse() -> Flags {
    let mut flags = Flags::default();
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        let text = |v: OsString, name: &str| {
            v.into_string()
                .unwrap_or_else(|_| usage(&format!("{name} needs UTF-8")))
        };
        match arg.as_bytes() {
            b"--exit" => {
                flags.exit = text(value("--exit"), "--exit")
                    .parse()
                    .unwrap_or_else(|_| usage("--exit needs an integer"));
            }
            b"--sleep" => {
                let secs: f64 = text(value("--sleep"), "--sleep")
                    .parse()
                    .unwrap_or_else(|_| usage("--sleep needs seconds"));
                flags.sleep = Some(secs);
            }
            b"--wait-for-gone" => flags.wait_for_gone = Some(value("--wait-for-gone").into()),
            b"--ignore-term" => flags.ignore_term = true,
            b"--on-term-exit" => {
                flags.on_term_exit = Some(
                    text(value("--on-term-exit"), "--on-term-exit")
                        .parse()
                        .unwrap_or_else(|_| usage("--on-term-exit needs an integer")),
                );
            }
            b"--spawn-grandchild" => flags.spawn_grandchild = true,
            b"--daemonize" => flags.daemonize = true,
            b"--daemon-keeps-stdout" => flags.daemon_keeps_stdout = true,
            b"--setsid-child" => flags.setsid_child = true,
            b"--escape" => flags.escape = true,
            b"--setsid-self" => flags.setsid_self = true,
            b"--ready-file" => flags.ready_file = Some(value("--ready-file").into()),
            b"--write-bytes" => {
                flags.write_bytes = text(value("--write-bytes"), "--write-bytes")
                    .parse()
                    .unwrap_or_else(|_| usage("--write-bytes needs a count"));
            }
            b"--write-stderr-bytes" => {
                flags.write_stderr_bytes =
                    text(value("--write-stderr-bytes"), "--write-stderr-bytes")
                        .parse()
                        .unwrap_or_else(|_| usage("--write-stderr-bytes needs a count"));
            }
            b"--close-stdout" => flags.close_stdout = true,
            b"--signal" => flags.signal = Some(text(value("--signal"), "--signal")),
            b"--marker" => flags.marker = Some(value("--marker")),
            b"--print" => flags.print.push(value("--print")),
            b"--eprint" => flags.eprint.push(value("--eprint")),
            b"--print-env" => flags.print_env.push(value("--print-env")),
            b"--read-stdin" => flags.read_stdin = true,
            b"--print-args" => flags.print_args = true,
            b"--quiet" => flags.quiet = true,
            b"--" => {
                flags.positional.extend(args.by_ref());
            }
            _ => usage(&format!("unknown argument {}", arg.to_string_lossy())),
        }
    }
    flags
}

fn self_exe() -> PathBuf {
    std::env::current_exe().expect("/proc/self/exe names this program")
}

/// A copy of this program that sleeps for an hour, carrying the marker so
/// tests can find it.
fn sleeper(flags: &Flags) -> Command {
    let mut cmd = Command::new(self_exe());
    cmd.args(["--quiet", "--sleep", "3600"]);
    if let Some(marker) = &flags.marker {
        cmd.arg("--marker").arg(marker);
    }
    if flags.ignore_term {
        cmd.arg("--ignore-term");
    }
    cmd
}

fn write_line(out: &mut impl Write, parts: &[&[u8]]) {
    for part in parts {
        // A closed pipe is the test's business, not a reason to die here.
        let _ = out.write_all(part);
    }
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// The byte at offset `i` of `--write-bytes` output; the same formula lives
/// in the testkit library (`pattern_byte`).
fn pattern_byte(i: u64) -> u8 {
    if i % 64 == 63 {
        b'\n'
    } else {
        b'a' + (i % 26) as u8
    }
}

fn write_pattern(out: &mut impl Write, total: u64) -> io::Result<()> {
    // The pattern repeats every lcm(64, 26) = 832 bytes; a buffer that is a
    // multiple of it can be written again and again.
    const PERIOD: usize = 832;
    let block: Vec<u8> = (0..(PERIOD * 80) as u64).map(pattern_byte).collect();
    let mut left = total;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    out.flush()
}

fn parse_signal(name: &str) -> Signal {
    let upper = name.trim_start_matches("SIG").to_ascii_uppercase();
    let sig = match upper.as_str() {
        "HUP" => Some(Signal::HUP),
        "INT" => Some(Signal::INT),
        "QUIT" => Some(Signal::QUIT),
        "ILL" => Some(Signal::ILL),
        "ABRT" => Some(Signal::ABORT),
        "BUS" => Some(Signal::BUS),
        "FPE" => Some(Signal::FPE),
        "KILL" => Some(Signal::KILL),
        "USR1" => Some(Signal::USR1),
        "SEGV" => Some(Signal::SEGV),
        "USR2" => Some(Signal::USR2),
        "PIPE" => Some(Signal::PIPE),
        "ALRM" => Some(Signal::ALARM),
        "TERM" => Some(Signal::TERM),
        other => other.parse::<i32>().ok().and_then(Signal::from_named_raw),
    };
    sig.unwrap_or_else(|| usage(&format!("unknown signal {name}")))
}

fn main() {
    let flags = parse();
    let term = Arc::new(AtomicBool::new(false));
    if flags.ignore_term || flags.on_term_exit.is_some() {
        signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&term))
            .expect("registering a SIGTERM flag works on Linux");
    }

    if flags.setsid_self {
        // An `--escape` helper: leave the task's session and group at once.
        rustix::process::setsid().expect("a fresh child is not a group leader");
    }

    if flags.setsid_child {
        // The middle process of a double fork: leave the task's session and
        // process group, start the long sleeper there, and exit so the
        // sleeper is orphaned.
        rustix::process::setsid().expect("a fresh child is not a group leader");
        let mut cmd = sleeper(&flags);
        cmd.stdin(Stdio::null()).stderr(Stdio::null());
        if !flags.daemon_keeps_stdout {
            cmd.stdout(Stdio::null());
        }
        #[expect(
            clippy::zombie_processes,
            reason = "orphaning the sleeper is the point of a double fork"
        )]
        let _sleeper = cmd.spawn().expect("the fixture can start itself");
        return;
    }

    let stdout = io::stdout();
    let mut out = stdout.lock();
    if !flags.quiet {
        let pid = rustix::process::getpid().as_raw_nonzero().get();
        let pgid = pgid_of("self").expect("our own /proc entry");
        write_line(
            &mut out,
            &[format!("ready pid={pid} pgid={pgid}").as_bytes()],
        );
    }
    if flags.print_args {
        for arg in &flags.positional {
            write_line(&mut out, &[b"arg=", arg.as_bytes()]);
        }
    }
    for name in &flags.print_env {
        match std::env::var_os(name) {
            Some(v) => write_line(&mut out, &[name.as_bytes(), b"=", v.as_bytes()]),
            None => write_line(&mut out, &[name.as_bytes(), b" unset"]),
        }
    }
    if flags.read_stdin {
        let mut buf = Vec::new();
        let n = io::stdin().read_to_end(&mut buf).unwrap_or(0);
        write_line(&mut out, &[format!("stdin bytes={n}").as_bytes()]);
    }
    for line in &flags.print {
        write_line(&mut out, &[line.as_bytes()]);
    }
    for line in &flags.eprint {
        write_line(&mut io::stderr().lock(), &[line.as_bytes()]);
    }
    if flags.spawn_grandchild {
        let child = sleeper(&flags)
            .stdin(Stdio::null())
            .spawn()
            .expect("the fixture can start itself");
        write_line(
            &mut out,
            &[format!("grandchild pid={}", child.id()).as_bytes()],
        );
        // Never waited for: it outlives this process on purpose.
        drop(child);
    }
    if flags.escape {
        let child = sleeper(&flags)
            .arg("--setsid-self")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the fixture can start itself");
        // Report it only once it has left our group: until its `setsid`, a
        // kill of our group would still reach it.
        let group = pgid_of("self");
        let child_pid = child.id().to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        while pgid_of(&child_pid).is_some_and(|g| Some(g) == group) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        write_line(
            &mut out,
            &[format!("escapee pid={}", child.id()).as_bytes()],
        );
        // Never waited for: it outlives this process on purpose.
        drop(child);
    }
    if flags.daemonize {
        let mut cmd = Command::new(self_exe());
        cmd.arg("--setsid-child")
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        if !flags.daemon_keeps_stdout {
            cmd.stdout(Stdio::null());
        } else {
            cmd.arg("--daemon-keeps-stdout");
        }
        if let Some(marker) = &flags.marker {
            cmd.arg("--marker").arg(marker);
        }
        if flags.ignore_term {
            cmd.arg("--ignore-term");
        }
        let status = cmd.status().expect("the fixture can start itself");
        assert!(status.success(), "the setsid child failed: {status}");
        write_line(&mut out, &[b"daemon spawned"]);
    }
    if flags.write_bytes > 0 {
        // A reader that goes away ends the writing; that is not an error here.
        let _ = write_pattern(&mut out, flags.write_bytes);
    }
    if flags.write_stderr_bytes > 0 {
        let _ = write_pattern(&mut io::stderr().lock(), flags.write_stderr_bytes);
    }
    if flags.close_stdout {
        let _ = out.flush();
        let null = std::fs::File::open("/dev/null").expect("/dev/null exists");
        rustix::stdio::dup2_stdout(&null).expect("dup2 onto fd 1 works");
    }
    drop(out);
    if let Some(name) = &flags.signal {
        let sig = parse_signal(name);
        // No core files from a deliberate crash: a zero core limit covers a
        // plain `core_pattern`, non-dumpable also covers a piped one.
        let maximum = rustix::process::getrlimit(Resource::Core).maximum;
        let _ = rustix::process::setrlimit(
            Resource::Core,
            Rlimit {
                current: Some(0),
                maximum,
            },
        );
        let _ = rustix::process::set_dumpable_behavior(DumpableBehavior::NotDumpable);
        let me: Pid = rustix::process::getpid();
        // Rust's runtime catches SIGSEGV and SIGBUS to report stack
        // overflows; for a fault that is not one, its handler restores the
        // default action and returns. A signal sent with kill() is such a
        // "fault", so the second one kills.
        for _ in 0..100 {
            rustix::process::kill_process(me, sig).expect("a process may signal itself");
            std::thread::sleep(POLL);
        }
        // Reached only when the signal is ignored or caught.
        std::process::exit(99);
    }

    if let Some(path) = &flags.ready_file {
        let pid = rustix::process::getpid().as_raw_nonzero().get();
        let pgid = pgid_of("self").expect("our own /proc entry");
        let line = format!("ready pid={pid} pgid={pgid}\n");
        // O_APPEND and a single short write: concurrent fixtures' lines
        // never interleave.
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|e| usage(&format!("--ready-file {}: {e}", path.display())));
        file.write_all(line.as_bytes())
            .unwrap_or_else(|e| usage(&format!("--ready-file {}: {e}", path.display())));
    }

    let on_term = || {
        if let Some(code) = flags.on_term_exit {
            if term.load(Ordering::SeqCst) {
                std::process::exit(code);
            }
        }
    };
    if let Some(path) = &flags.wait_for_gone {
        while path.exists() {
            on_term();
            std::thread::sleep(POLL);
        }
    }
    if let Some(secs) = flags.sleep {
        let until = Instant::now() + Duration::from_secs_f64(secs.max(0.0));
        while Instant::now() < until {
            on_term();
            std::thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
        }
    }
    on_term();
    std::process::exit(flags.exit);
}

/// The process group of `pid` ("self" for us), read from /proc rather than
/// getpgid(): inside a PID namespace (CI containers) a group led from outside
/// reads as 0, which rustix's typed pids refuse.
fn pgid_of(pid: &str) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split(' ').nth(2)?.parse().ok()
}
