//! Fuzzing, as property tests: the manifest parser, the settings layers
//! (`AGENT33_*` variables and flag values) and command templates get
//! arbitrary bytes, structurally generated YAML and hostile strings.
//!
//! The property everywhere: nothing panics or hangs, and every rejection
//! is a `UsageError` whose message says where the mistake is — the
//! manifest's file (with a `line:column` inside it when there is one), or
//! the setting and the flag or variable it came from. The binary prints
//! exactly that message and exits 2 (`tests/cli/usage_errors.rs` runs it on
//! a few of the nastiest inputs).
//!
//! proptest rather than cargo-fuzz: it runs on stable, in every `cargo
//! test`, and shrinks a failure to a small input. The default case counts
//! keep this file at a few seconds in a debug build. To fuzz for longer:
//!
//! ```sh
//! PROPTEST_CASES=100000 cargo test -p agent33-cli --release --test fuzz
//! ```
//!
//! A failure prints the shrunk input: keep it as a case in
//! `regressions_stay_fixed` next to the fix.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use agent33_cli::args::{Command, OutputMode, RunArgs, parse_from};
use agent33_cli::config::{Layer, load, merge};
use agent33_cli::manifest::{EntryArtifacts, Manifest};
use agent33_cli::template::{CommandTemplate, PLACEHOLDERS, TaskCommand, display_argv};
use agent33_cli::values::Source;
use agent33_parallel::AgentTask;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::TestCaseError;

/// `PROPTEST_CASES` when set (to fuzz longer), else `default`.
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // Shrunk failures are kept as named regression cases below, not
        // in files next to the sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ----- what an error must look like -----

/// The number of lines YAML sees (it breaks lines at CR, LF, NEL, LS, PS).
fn yaml_lines(text: &str) -> usize {
    1 + text
        .chars()
        .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        .count()
}

/// A manifest error starts with the file, then `:line:col: ` with a place
/// inside the text, or `: `; and it says something.
fn check_manifest_error(msg: &str, file: &str, text: &str) -> Result<(), TestCaseError> {
    let rest = msg.strip_prefix(file).ok_or_else(|| {
        TestCaseError::fail(format!("the error does not start with {file:?}: {msg:?}"))
    })?;
    let rest = rest
        .strip_prefix(':')
        .ok_or_else(|| TestCaseError::fail(format!("no `:` after the file: {msg:?}")))?;
    let said = match rest.strip_prefix(' ') {
        Some(said) => said,
        None => {
            let mut parts = rest.splitn(3, ':');
            let line: usize = parts.next().and_then(|l| l.parse().ok()).ok_or_else(|| {
                TestCaseError::fail(format!("neither `: ` nor a line after the file: {msg:?}"))
            })?;
            let col: usize = parts
                .next()
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| TestCaseError::fail(format!("no column: {msg:?}")))?;
            prop_assert!(
                (1..=yaml_lines(text)).contains(&line),
                "line {line} is outside the text ({} lines): {msg:?}",
                yaml_lines(text)
            );
            prop_assert!(
                (1..=text.chars().count() + 1).contains(&col),
                "column {col} is outside the text: {msg:?}"
            );
            parts
                .next()
                .and_then(|s| s.strip_prefix(' '))
                .ok_or_else(|| {
                    TestCaseError::fail(format!("no message after the place: {msg:?}"))
                })?
        }
    };
    prop_assert!(!said.trim().is_empty(), "an empty message: {msg:?}");
    // The locator's private marker must never reach a user.
    prop_assert!(!msg.contains("\u{0}agent33"), "{msg:?}");
    Ok(())
}

/// Characters YAML allows nowhere in a document.
fn yaml_refuses(c: char) -> bool {
    let allowed = matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{85}')
        || matches!(c, '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..);
    !allowed
}

/// Globs that stay inside the manifest's (temporary) folder.
fn globs_stay_home(m: &Manifest) -> bool {
    m.entries.iter().all(|e| match &e.artifacts {
        EntryArtifacts::One(_) => true,
        EntryArtifacts::Globs(g) => g.iter().all(|p| !p.contains('/')),
    })
}

fn run_args(argv: Vec<OsString>) -> Option<RunArgs> {
    match parse_from(argv).ok()?.command {
        Command::Run(r) => Some(*r),
        Command::Report(_) | Command::Worker(_) => None,
    }
}

/// Parses `bytes` as a manifest file, then loads it as `agent-33 run -f
/// FILE --dry-run` would; checks every error and, for a valid manifest,
/// expands every task's command.
fn check_manifest_bytes(bytes: &[u8]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("fuzz.yaml");
    let file = path.to_str().expect("a UTF-8 temporary path").to_owned();
    std::fs::write(&path, bytes).expect("write the manifest");
    let text = std::str::from_utf8(bytes).ok();

    let read = Manifest::read(&path, true);
    match (&read, text) {
        (Err(e), None) => {
            let msg = e.to_string();
            prop_assert_eq!(
                msg,
                format!("cannot read manifest {file}: it is not valid UTF-8")
            );
        }
        (Ok(_), None) => prop_assert!(false, "bytes that are not UTF-8 were read"),
        (Err(e), Some(text)) => {
            let msg = e.to_string();
            check_manifest_error(&msg, &file, text)?;
            // libyaml would place these at 1:1; the manifest finds them.
            if let Some(c) = text.chars().find(|c| yaml_refuses(*c)) {
                let said = format!(
                    "character U+{:04X} is not allowed in a YAML file",
                    u32::from(c)
                );
                prop_assert!(msg.ends_with(&said), "{msg:?}");
            }
        }
        (Ok(m), Some(text)) => {
            if let Err(e) = m.check_agent_folders() {
                check_manifest_error(&e.to_string(), &file, text)?;
            }
            if globs_stay_home(m) {
                match m.tasks() {
                    Err(e) => check_manifest_error(&e.to_string(), &file, text)?,
                    Ok(tasks) => {
                        for t in &tasks {
                            let agent = m
                                .agents
                                .iter()
                                .find(|a| a.name == t.agent)
                                .expect("a task's agent is defined");
                            let argv = agent.command.argv(t);
                            prop_assert!(!argv.is_empty());
                            let _ = display_argv(&argv);
                        }
                    }
                }
            }
        }
    }

    // The whole configuration: the same verdict, the same message.
    if text.is_some_and(|t| !globs_stay_home_text(t)) {
        return Ok(());
    }
    let args = run_args(vec![
        "agent-33".into(),
        "run".into(),
        "-f".into(),
        path.clone().into_os_string(),
        "--dry-run".into(),
    ])
    .expect("a valid command line");
    match (load(&args, &|_| None), &read) {
        (Err(e), Err(r)) => prop_assert_eq!(e, r.clone()),
        (Err(e), Ok(_)) => {
            check_manifest_error(&e.to_string(), &file, text.expect("was read"))?;
        }
        (Ok(_), Err(r)) => prop_assert!(false, "loaded, yet reading failed: {r}"),
        (Ok(_), Ok(_)) => {}
    }
    Ok(())
}

/// The same guard as [`globs_stay_home`] for text that may not parse:
/// a `/` next to a glob character could reach outside the folder.
fn globs_stay_home_text(text: &str) -> bool {
    !(text.contains('/') && text.contains(['*', '?', '[']))
}

// ----- (1) arbitrary bytes -----

/// Bytes that YAML and the manifest care about, to reach past the first
/// line more often than uniformly random bytes do.
fn yamlish_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => select(&[
            "execution:", "agents:", "tasks:", "\n", "\n  ", "\n    ", "- ", ": ", " ", "\t",
            "{", "}", "[", "]", ",", "'", "\"", "#", "&a ", "*a", "!!str ", "? ", "|", ">",
            "---\n", "...\n", "\\", "\r\n", "parallel_limit", "mode", "command", "agent",
            "artifact", "depends_on", "{artifact}", "true", "0", "-1", ".nan", "1e999", "\u{0}",
            "\u{feff}", "é", "\u{2028}", "[[[[[[[[[[[[[[[[", "{a: {b: {c: {d: ",
        ][..])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 1..4),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_bytes_never_panic_and_errors_name_the_file(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..256),
            yamlish_bytes(),
        ]
    ) {
        check_manifest_bytes(&bytes)?;
    }
}

// ----- (2) structurally generated YAML -----

/// A YAML node, rendered in block or flow style.
#[derive(Debug, Clone)]
enum Node {
    /// Written as it is: numbers, `.nan`, `~`, tags, aliases, garbage.
    Raw(String),
    /// Written double-quoted (JSON's escapes are YAML's).
    Quoted(String),
    /// A sequence; `true` = flow style.
    List(Vec<Node>, bool),
    /// A mapping; `true` = flow style.
    Map(Vec<(String, Node)>, bool),
    /// `&name` before the node.
    Anchor(&'static str, Box<Node>),
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

fn key_text(k: &str) -> String {
    let plain = !k.is_empty()
        && !k.starts_with(['-', '?', ':', '&', '*', '!'])
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '<'));
    if plain { k.to_owned() } else { quoted(k) }
}

impl Node {
    fn flow(&self) -> String {
        match self {
            Self::Raw(s) => s.clone(),
            Self::Quoted(s) => quoted(s),
            Self::List(v, _) => {
                let items: Vec<String> = v.iter().map(Self::flow).collect();
                format!("[{}]", items.join(", "))
            }
            Self::Map(m, _) => {
                let items: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{}: {}", key_text(k), v.flow()))
                    .collect();
                format!("{{{}}}", items.join(", "))
            }
            Self::Anchor(a, n) => format!("&{a} {}", n.flow()),
        }
    }

    /// The text after `key:` or `-`: ` value\n`, or a block on the
    /// following lines at `indent`.
    fn after(&self, indent: usize) -> String {
        let pad = " ".repeat(indent);
        match self {
            Self::Map(m, false) if !m.is_empty() => {
                let mut s = "\n".to_owned();
                for (k, v) in m {
                    s.push_str(&format!("{pad}{}:{}", key_text(k), v.after(indent + 2)));
                }
                s
            }
            Self::List(v, false) if !v.is_empty() => {
                let mut s = "\n".to_owned();
                for item in v {
                    s.push_str(&format!("{pad}-{}", item.after(indent + 2)));
                }
                s
            }
            Self::Anchor(a, n) if matches!(**n, Self::Map(_, false) | Self::List(_, false)) => {
                format!(" &{a}{}", n.after(indent))
            }
            other => format!(" {}\n", other.flow()),
        }
    }

    /// A whole document.
    fn document(&self) -> String {
        match self {
            Self::Map(m, false) => m
                .iter()
                .map(|(k, v)| format!("{}:{}", key_text(k), v.after(2)))
                .collect(),
            other => format!("{}\n", other.flow()),
        }
    }
}

/// Values people (and typos) put into settings.
#[rustfmt::skip]
const INTERESTING: &[&str] = &[
    "true", "false", "yes", "No", "on", "OFF", "y", "~", "null", "", " ", "0", "1", "-1", "2",
    "4", "+4", "4.0", "0.5", "-0.5", "1e3", "1e-10", "5e-324", "1e400", "-1e400", ".nan",
    ".NaN", ".inf", "-.inf", "nan", "inf", "NaN", "infinity", "18446744073709551615",
    "18446744073709551616", "340282366920938463463374607431768211456",
    "-9223372036854775809", "0x10", "0o17", "0b101", "1_000", "٣", "４", "sequential",
    "parallel", "dependency-aware", "Parallel", "a b; rm -rf ~", "{artifact}", "{}", "{",
    "}", "}{", "{id}{agent}", "{name}", "{.}", "{/}", "{#}", "{%}", "$1", "\"$1\"",
    "sh -c 'echo {artifact}'", "*.md", "[", "[!a]", "?", "**", "..", ".", "-n", "\t", "\u{feff}",
    "\u{202e}", "é", "🦀", "\u{0}", "a\nb", "'", "\"", "\\", "#", "&x", "*x", "!!str",
];

/// Values that YAML reads as plain scalars: what settings usually hold,
/// right or wrong.
#[rustfmt::skip]
const PLAIN: &[&str] = &[
    "true", "false", "yes", "no", "0", "1", "2", "4", "-1", "0.5", "300", "1e3", "4.0", "+4",
    ".nan", ".inf", "-.inf", "~", "sequential", "parallel", "dependency-aware", "x",
    "18446744073709551616", "1e400", "0x10", "1_000",
];

fn scalar() -> impl Strategy<Value = Node> {
    prop_oneof![
        6 => select(PLAIN).prop_map(|s| Node::Raw(s.to_owned())),
        3 => select(INTERESTING).prop_map(|s| Node::Quoted(s.to_owned())),
        1 => any::<i64>().prop_map(|i| Node::Raw(i.to_string())),
        1 => any::<f64>().prop_map(|x| Node::Raw(format!("{x:?}"))),
        1 => "\\PC{0,12}".prop_map(Node::Quoted),
        1 => any::<String>().prop_map(Node::Quoted),
        1 => "[a-z0-9 ._{}*?-]{0,10}".prop_map(Node::Raw),
        1 => select(INTERESTING).prop_map(|s| Node::Raw(s.to_owned())),
        1 => select(&["*a", "*b", "!!binary aGk=", "!t x", "!!int 3", "!!float 1", "|\n  x", "<<"][..])
            .prop_map(|s| Node::Raw(s.to_owned())),
    ]
}

/// A value for a setting: mostly a scalar, sometimes the wrong shape.
fn value() -> impl Strategy<Value = Node> {
    prop_oneof![
        16 => scalar(),
        1 => (prop::collection::vec(scalar(), 0..3), any::<bool>())
            .prop_map(|(v, flow)| Node::List(v, flow)),
        1 => (prop::collection::vec(("[a-z]{1,4}", scalar()), 0..3), any::<bool>())
            .prop_map(|(m, flow)| Node::Map(m, flow)),
        1 => (select(&["a", "b"][..]), scalar()).prop_map(|(a, n)| Node::Anchor(a, Box::new(n))),
    ]
}

/// Entries of a mapping whose keys come from `keys` (now and then from
/// `typos`), each with its own kind of value.
fn entries<S: Strategy<Value = Node> + 'static>(
    keys: &'static [&'static str],
    typos: &'static [&'static str],
    value_for: fn(&'static str) -> S,
    max: usize,
) -> impl Strategy<Value = Vec<(String, Node)>> {
    let key = prop_oneof![12 => select(keys), 1 => select(typos)];
    prop::collection::vec(
        key.prop_flat_map(move |k| value_for(k).prop_map(move |v| (k.to_owned(), v))),
        0..max,
    )
}

/// `first`, when there is one, then `rest`.
fn with_first(first: Option<(&str, Node)>, rest: Vec<(String, Node)>) -> Vec<(String, Node)> {
    first
        .map(|(k, v)| (k.to_owned(), v))
        .into_iter()
        .chain(rest)
        .collect()
}

fn mapping(m: Vec<(String, Node)>, flow: bool, anchor: Option<&'static str>) -> Node {
    let n = Node::Map(m, flow);
    match anchor {
        Some(a) => Node::Anchor(a, Box::new(n)),
        None => n,
    }
}

#[rustfmt::skip]
const EXECUTION_KEYS: &[&str] = &[
    "mode", "parallel", "parallel_limit", "respect_dependencies", "timeout_seconds",
    "continue_on_error", "max_failures", "fail_fast", "retries", "retry_backoff_seconds",
    "kill_grace_seconds", "deadline_seconds", "output_limit_bytes",
];

const EXECUTION_TYPOS: &[&str] = &[
    "paralel_limit",
    "parallel-limit",
    "Parallel",
    "timeout",
    "mode ",
    "<<",
];

fn execution() -> impl Strategy<Value = Node> {
    (
        entries(EXECUTION_KEYS, EXECUTION_TYPOS, |_| value(), 4),
        any::<bool>(),
        proptest::option::weighted(0.1, select(&["a", "b"][..])),
    )
        .prop_map(|(m, flow, anchor)| mapping(m, flow, anchor))
}

/// Command templates: words, quotes and braces in every position.
fn template() -> impl Strategy<Value = String> {
    #[rustfmt::skip]
    let piece = select(&[
        "{", "}", "{}", "{artifact}", "{agent}", "{id}", "{.}", "{/}", "{//}", "{/.}", "{#}",
        "{%}", "{name}", "{Artifact}", "{ artifact }", "{{artifact}}", "{artifact", "artifact}",
        " ", "  ", "'", "\"", "\\", "sh", "-c", "bash", "-ec", "$1", "\"$1\"", "echo", "awk",
        "'{print $1}'", "a", "é", "\n", "\t", ";", "|", "$(", ")", "`", "*", "\u{0}",
    ][..]);
    prop_oneof![
        4 => prop::collection::vec(piece, 0..12).prop_map(|v| v.concat()),
        1 => any::<String>(),
    ]
}

const AGENT_KEYS: &[&str] = &[
    "shell",
    "parallel_limit",
    "timeout_seconds",
    "retries",
    "env",
    "cwd",
];

const AGENT_TYPOS: &[&str] = &["comand", "Shell", "<<", "command"];

fn agent_value(key: &'static str) -> BoxedStrategy<Node> {
    match key {
        "command" => prop_oneof![
            3 => template().prop_map(Node::Quoted),
            1 => (prop::collection::vec(template().prop_map(Node::Quoted), 0..4), any::<bool>())
                .prop_map(|(v, flow)| Node::List(v, flow)),
            1 => value(),
        ]
        .boxed(),
        "shell" => prop_oneof![
            3 => select(&["true", "false"][..]).prop_map(|s| Node::Raw(s.to_owned())),
            1 => value(),
        ]
        .boxed(),
        "env" => {
            let name = select(&["A", "MODEL", "", "A=B", "PATH", "\u{0}", "é"][..]);
            (prop::collection::vec((name, scalar()), 0..3), any::<bool>())
                .prop_map(|(m, flow)| {
                    Node::Map(
                        m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                        flow,
                    )
                })
                .boxed()
        }
        "cwd" => select(&[".", "", "nope", "..", "a\u{0}b", "~", "é"][..])
            .prop_map(|s| Node::Quoted(s.to_owned()))
            .boxed(),
        _ => value().boxed(),
    }
}

const AGENT_NAMES: &[&str] = &[
    "a",
    "b",
    "lint",
    "",
    "a:b",
    "é",
    "{artifact}",
    "1",
    "true",
    "a b",
];

/// Mostly the names that generated tasks use.
fn agent_name() -> impl Strategy<Value = &'static str> {
    prop_oneof![6 => select(&["a", "b"][..]), 1 => select(AGENT_NAMES)]
}

fn agents() -> impl Strategy<Value = Node> {
    let agent = (
        agent_name(),
        proptest::option::weighted(0.9, agent_value("command")),
        entries(AGENT_KEYS, AGENT_TYPOS, agent_value, 3),
        any::<bool>(),
        proptest::option::weighted(0.1, select(&["a", "b"][..])),
    )
        .prop_map(|(name, command, rest, flow, anchor)| {
            let m = with_first(command.map(|c| ("command", c)), rest);
            (name.to_owned(), mapping(m, flow, anchor))
        });
    (prop::collection::vec(agent, 0..4), any::<bool>()).prop_map(|(mut m, flow)| {
        // Mostly distinct names, so that a manifest often gets past them.
        for (i, (name, _)) in m.iter_mut().enumerate() {
            if matches!(name.as_str(), "a" | "b") {
                *name = ["a", "b", "c", "d"][i].to_owned();
            }
        }
        Node::Map(m, flow)
    })
}

/// Artifacts and globs; none has a `/`, so globs stay in the folder.
fn artifact() -> impl Strategy<Value = Node> {
    #[rustfmt::skip]
    let odd = select(&[
        "x", "y", "a b; rm -rf ~", "{id}", "{}", "{", "}", "*.yaml", "*", "[", "[!a]*", "?",
        "nope*", "", "é", "-n", "a\nb", "fuzz.yaml", "**", "[z-a]", "\u{0}",
    ][..]);
    prop_oneof![
        4 => odd.prop_map(|s| Node::Quoted(s.to_owned())),
        1 => "[a-z*?\\[\\]{}. ]{0,8}".prop_map(Node::Quoted),
        1 => scalar().prop_filter("no slash", |n| !n.flow().contains('/')),
    ]
}

const TASK_KEYS: &[&str] = &[
    "artifacts",
    "id",
    "depends_on",
    "depends_on",
    "timeout_seconds",
    "retries",
];

const TASK_TYPOS: &[&str] = &["artifcat", "dependsOn", "<<", "agent", "artifact"];

fn task_value(key: &'static str) -> BoxedStrategy<Node> {
    let id = || {
        select(&["a:x", "b:y", "a:y", "x", "", "t", "a:x#2", "b:fuzz.yaml"][..])
            .prop_map(|s| Node::Quoted(s.to_owned()))
    };
    match key {
        "agent" => agent_name()
            .prop_map(|s| Node::Quoted(s.to_owned()))
            .boxed(),
        "artifact" => artifact().boxed(),
        "artifacts" => prop_oneof![
            artifact(),
            (prop::collection::vec(artifact(), 0..3), any::<bool>())
                .prop_map(|(v, flow)| Node::List(v, flow)),
        ]
        .boxed(),
        "id" => id().boxed(),
        "depends_on" => prop_oneof![
            id(),
            (prop::collection::vec(id(), 0..3), any::<bool>())
                .prop_map(|(v, flow)| Node::List(v, flow)),
            value(),
        ]
        .boxed(),
        _ => value().boxed(),
    }
}

fn tasks() -> impl Strategy<Value = Node> {
    let task = (
        proptest::option::weighted(0.95, task_value("agent")),
        proptest::option::weighted(0.8, task_value("artifact")),
        entries(TASK_KEYS, TASK_TYPOS, task_value, 3),
        any::<bool>(),
    )
        .prop_map(|(agent, artifact, rest, flow)| {
            let m = with_first(artifact.map(|a| ("artifact", a)), rest);
            Node::Map(with_first(agent.map(|a| ("agent", a)), m), flow)
        });
    prop_oneof![
        8 => (prop::collection::vec(task, 0..6), any::<bool>())
            .prop_map(|(v, flow)| Node::List(v, flow)),
        1 => value(),
    ]
}

/// A manifest built from valid values only (a `mode` next to `parallel`
/// aside), so that parsing succeeds often and the later checks — unique
/// ids, dependencies, globs, agent folders — get exercised too.
fn valid_manifest() -> impl Strategy<Value = Node> {
    fn raw(s: &str) -> Node {
        Node::Raw(s.to_owned())
    }
    fn valid_setting(key: &str) -> BoxedStrategy<Node> {
        let pick = |v: &'static [&'static str]| select(v).prop_map(raw).boxed();
        match key {
            "mode" => pick(&["sequential", "parallel", "dependency-aware"]),
            "parallel" | "respect_dependencies" | "continue_on_error" | "fail_fast" | "shell" => {
                pick(&["true", "false", "yes", "off", "1"])
            }
            "parallel_limit" | "max_failures" => pick(&["1", "2", "4", "18446744073709551615"]),
            "retries" | "output_limit_bytes" => pick(&["0", "1", "3", "99999999999"]),
            _ => pick(&["0", "0.5", "1", "300", "1e20", "5e-324"]),
        }
    }
    let execution = proptest::sample::subsequence(EXECUTION_KEYS, 0..5).prop_flat_map(|keys| {
        keys.into_iter()
            .map(|k| valid_setting(k).prop_map(move |v| (k.to_owned(), v)))
            .collect::<Vec<_>>()
            .prop_map(|m| Node::Map(m, false))
    });
    let agent = (
        template(),
        proptest::sample::subsequence(
            &["shell", "parallel_limit", "timeout_seconds", "retries"][..],
            0..3,
        )
        .prop_flat_map(|keys| {
            keys.into_iter()
                .map(|k| valid_setting(k).prop_map(move |v| (k.to_owned(), v)))
                .collect::<Vec<_>>()
        }),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(command, mut rest, env, flow)| {
            rest.insert(0, ("command".to_owned(), Node::Quoted(command)));
            if env {
                rest.push((
                    "env".to_owned(),
                    Node::Map(vec![("A".to_owned(), raw("1"))], true),
                ));
                rest.push(("cwd".to_owned(), raw(".")));
            }
            Node::Map(rest, flow)
        });
    let agents = prop::collection::vec(agent, 1..3).prop_map(|v| {
        let m = v
            .into_iter()
            .enumerate()
            .map(|(i, a)| (["a", "b"][i].to_owned(), a))
            .collect();
        Node::Map(m, false)
    });
    let id = || select(&["a:x", "b:y", "a:y", "t", "a:fuzz.yaml", "nope"][..]);
    let task = (
        select(&["a", "a", "b"][..]),
        prop_oneof![
            3 => artifact().prop_map(|a| ("artifact", a)),
            1 => prop::collection::vec(artifact(), 1..3)
                .prop_map(|v| ("artifacts", Node::List(v, true))),
        ],
        proptest::option::weighted(0.2, id()),
        prop::collection::vec(id(), 0..3),
        proptest::option::weighted(0.2, valid_setting("timeout_seconds")),
        any::<bool>(),
    )
        .prop_map(|(agent, (key, artifact), id, deps, timeout, flow)| {
            let mut m = vec![("agent".to_owned(), raw(agent)), (key.to_owned(), artifact)];
            if let Some(id) = id {
                m.push(("id".to_owned(), Node::Quoted(id.to_owned())));
            }
            if !deps.is_empty() {
                let deps = deps
                    .into_iter()
                    .map(|d| Node::Quoted(d.to_owned()))
                    .collect();
                m.push(("depends_on".to_owned(), Node::List(deps, true)));
            }
            if let Some(t) = timeout {
                m.push(("timeout_seconds".to_owned(), t));
            }
            Node::Map(m, flow)
        });
    (
        proptest::option::weighted(0.7, execution),
        agents,
        prop::collection::vec(task, 0..6),
    )
        .prop_map(|(execution, agents, tasks)| {
            let mut m = Vec::new();
            if let Some(e) = execution {
                m.push(("execution".to_owned(), e));
            }
            m.push(("agents".to_owned(), agents));
            m.push(("tasks".to_owned(), Node::List(tasks, false)));
            Node::Map(m, false)
        })
}

fn manifest() -> impl Strategy<Value = Node> {
    let section = |name: &'static str, s: BoxedStrategy<Node>| {
        proptest::option::weighted(0.8, s).prop_map(move |n| n.map(|n| (name.to_owned(), n)))
    };
    let stray = select(&["agnets", "task", "exectuion", "", "tasks", "execution", "x"][..]);
    (
        section("execution", execution().boxed()),
        section("agents", agents().boxed()),
        section("tasks", tasks().boxed()),
        proptest::option::weighted(0.1, (stray, value())),
        any::<bool>(),
        any::<Index>(),
    )
        .prop_map(|(e, a, t, extra, flow, at)| {
            let mut m: Vec<(String, Node)> = [e, a, t].into_iter().flatten().collect();
            if let Some((k, v)) = extra {
                let i = at.index(m.len() + 1);
                m.insert(i, (k.to_owned(), v));
            }
            Node::Map(m, flow)
        })
}

/// A small edit to rendered text: a snippet inserted, a range deleted or a
/// line repeated.
#[derive(Debug, Clone)]
enum Edit {
    Insert(Index, &'static str),
    Delete(Index, usize),
    RepeatLine(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (
            any::<Index>(),
            select(
                &[
                    ":",
                    "- ",
                    "\t",
                    "&a ",
                    "*a",
                    "{",
                    "}",
                    "[",
                    "]",
                    "\"",
                    "'",
                    "\n  ",
                    "\n",
                    "---\n",
                    "...\n",
                    "%YAML 1.2\n",
                    "!!",
                    "#",
                    ",",
                    "? ",
                    "\u{0}",
                    "\r",
                ][..]
            )
        )
            .prop_map(|(i, s)| Edit::Insert(i, s)),
        (any::<Index>(), 1..8usize).prop_map(|(i, n)| Edit::Delete(i, n)),
        any::<Index>().prop_map(Edit::RepeatLine),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    match edit {
        Edit::Insert(at, s) => {
            let i = bounds[at.index(bounds.len())];
            format!("{}{s}{}", &text[..i], &text[i..])
        }
        Edit::Delete(at, n) => {
            let from = at.index(bounds.len());
            let to = (from + n).min(bounds.len() - 1);
            format!("{}{}", &text[..bounds[from]], &text[bounds[to]..])
        }
        Edit::RepeatLine(at) => {
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            if lines.is_empty() {
                return text.to_owned();
            }
            let i = at.index(lines.len());
            let mut out: Vec<&str> = lines.clone();
            out.insert(i, lines[i]);
            out.concat()
        }
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn generated_manifests_never_panic_and_errors_name_the_place(
        doc in prop_oneof![manifest(), valid_manifest()],
        edits in prop_oneof![3 => Just(Vec::new()), 1 => prop::collection::vec(edit(), 1..3)],
    ) {
        let mut text = doc.document();
        for e in &edits {
            text = apply(&text, e);
        }
        check_manifest_bytes(text.as_bytes())?;
    }
}

// ----- (3) environment variables and flag values -----

/// Each variable with the setting it sets.
const VARIABLES: &[(&str, &str)] = &[
    ("AGENT33_PARALLEL", "parallel"),
    ("AGENT33_PARALLEL_LIMIT", "parallel_limit"),
    ("AGENT33_RESPECT_DEPENDENCIES", "respect_dependencies"),
    ("AGENT33_TASK_TIMEOUT", "timeout_seconds"),
    ("AGENT33_CONTINUE_ON_ERROR", "continue_on_error"),
    ("AGENT33_MAX_FAILURES", "max_failures"),
    ("AGENT33_FAIL_FAST", "fail_fast"),
    ("AGENT33_RETRIES", "retries"),
    ("AGENT33_KILL_GRACE", "kill_grace_seconds"),
    ("AGENT33_DEADLINE", "deadline_seconds"),
];

/// Text a setting might be given as, including bytes that are not UTF-8.
fn setting_text() -> impl Strategy<Value = OsString> {
    prop_oneof![
        4 => select(INTERESTING).prop_map(OsString::from),
        1 => select(&[" 4 ", "4\n", "yes\u{0}", "ＴＲＵＥ", "+inf", "-nan", "4.", ".5", "1e3", "99999999999999999999999", "-0", "1e-400"][..])
            .prop_map(OsString::from),
        2 => "[0-9a-zA-Z.+ -]{0,8}".prop_map(OsString::from),
        1 => any::<String>().prop_map(OsString::from),
        1 => prop::collection::vec(any::<u8>(), 0..8).prop_map(OsString::from_vec),
    ]
}

/// Where the layer keeps `setting`, if set.
fn source_of(l: &Layer, setting: &str) -> Option<Source> {
    match setting {
        "parallel" => l.parallel.as_ref().map(|s| s.source.clone()),
        "parallel_limit" => l.parallel_limit.as_ref().map(|s| s.source.clone()),
        "respect_dependencies" => l.respect_dependencies.as_ref().map(|s| s.source.clone()),
        "timeout_seconds" => l.timeout.as_ref().map(|s| s.source.clone()),
        "continue_on_error" => l.continue_on_error.as_ref().map(|s| s.source.clone()),
        "max_failures" => l.max_failures.as_ref().map(|s| s.source.clone()),
        "fail_fast" => l.fail_fast.as_ref().map(|s| s.source.clone()),
        "retries" => l.retries.as_ref().map(|s| s.source.clone()),
        "retry_backoff_seconds" => l.retry_backoff.as_ref().map(|s| s.source.clone()),
        "kill_grace_seconds" => l.kill_grace.as_ref().map(|s| s.source.clone()),
        "deadline_seconds" => l.deadline.as_ref().map(|s| s.source.clone()),
        "output_limit_bytes" => l.output_limit_bytes.as_ref().map(|s| s.source.clone()),
        _ => unreachable!("a known setting"),
    }
}

/// An error about one value names its setting and where it came from.
fn names_one_of(msg: &str, given: &[(String, String)]) -> Result<(), TestCaseError> {
    prop_assert!(
        given.iter().any(|(setting, from)| msg
            .contains(&format!("for {setting} (from {from}): expected "))
            || msg.contains(&format!("for {setting} (from {from}): not valid UTF-8"))),
        "the error names none of {given:?}: {msg:?}"
    );
    Ok(())
}

/// The stop rule's error names both settings and the one source.
fn is_stop_rule_error(msg: &str, from: &str) -> bool {
    msg.starts_with(&format!("continue_on_error: true (from {from}"))
        && msg.contains("and max_failures (from ")
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn every_variable_takes_any_text_and_errors_name_it(
        set in prop::collection::vec((0..VARIABLES.len(), setting_text()), 0..6)
    ) {
        let env: HashMap<&str, OsString> =
            set.iter().map(|(i, v)| (VARIABLES[*i].0, v.clone())).collect();
        let lookup = |name: &str| env.get(name).cloned();
        let given: Vec<(String, String)> = env
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(var, _)| {
                let setting = VARIABLES.iter().find(|(v, _)| v == var).expect("listed").1;
                (setting.to_owned(), format!("environment variable {var}"))
            })
            .collect();
        match Layer::from_env(&lookup) {
            Err(e) => names_one_of(&e.to_string(), &given)?,
            Ok(layer) => {
                for (var, setting) in VARIABLES {
                    let set = env.get(var).is_some_and(|v| !v.is_empty());
                    prop_assert_eq!(
                        source_of(&layer, setting),
                        set.then_some(Source::Env(var)),
                        "{}", var
                    );
                }
                let none = Layer::default();
                let (resolved, _) = merge([&none, &layer, &none], OutputMode::Grouped);
                let settings = resolved.engine;
                prop_assert!(settings.parallel_limit >= 1 && settings.max_failures >= 1);
                if let Err(e) = layer.check_stop_rule() {
                    prop_assert!(is_stop_rule_error(&e.to_string(), "environment variable"), "{e}");
                }
            }
        }
        // And as the binary loads them, beside an ad-hoc command.
        let args = run_args(["agent-33", "run", "--command", "true", "x"].map(OsString::from).to_vec())
            .expect("a valid command line");
        if let Err(e) = load(&args, &lookup) {
            let msg = e.to_string();
            if !is_stop_rule_error(&msg, "environment variable") {
                names_one_of(&msg, &given)?;
            }
        }
    }
}

/// The flags that take a setting's value: the flag, the setting, and the
/// flag as messages name it.
const VALUE_FLAGS: &[(&str, &str, &str)] = &[
    ("--parallel-limit", "parallel_limit", "-j/--parallel-limit"),
    ("-j", "parallel_limit", "-j/--parallel-limit"),
    ("--timeout", "timeout_seconds", "--timeout"),
    ("--max-failures", "max_failures", "--max-failures"),
    ("--retries", "retries", "--retries"),
    (
        "--retry-backoff",
        "retry_backoff_seconds",
        "--retry-backoff",
    ),
    ("--kill-grace", "kill_grace_seconds", "--kill-grace"),
    ("--deadline", "deadline_seconds", "--deadline"),
    ("--output-limit", "output_limit_bytes", "--output-limit"),
];

const SWITCHES: &[&str] = &[
    "--parallel",
    "--respect-dependencies",
    "--continue-on-error",
    "--fail-fast",
    "--no-fail-fast",
    "--dry-run",
];

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn every_flag_takes_any_text_and_errors_name_it(
        values in prop::collection::vec((0..VALUE_FLAGS.len(), setting_text(), any::<bool>()), 0..5),
        switches in prop::collection::vec(select(SWITCHES), 0..3),
        command in proptest::option::weighted(0.9, template()),
    ) {
        let mut argv: Vec<OsString> = vec!["agent-33".into(), "run".into()];
        let mut given = Vec::new();
        for (i, v, joined) in &values {
            let (flag, setting, shown) = VALUE_FLAGS[*i];
            if *joined && flag.starts_with("--") {
                let mut a = OsString::from(format!("{flag}="));
                a.push(v);
                argv.push(a);
            } else {
                argv.push(flag.into());
                argv.push(v.clone());
            }
            given.push((setting.to_owned(), format!("flag {shown}")));
        }
        argv.extend(switches.iter().map(OsString::from));
        if let Some(c) = &command {
            argv.push("--command".into());
            argv.push(c.into());
        }
        argv.push("x".into());
        let cli = match parse_from(argv.clone()) {
            Err(e) => {
                // clap's own usage errors exit 2 (help and version 0).
                prop_assert!(!e.use_stderr() || e.exit_code() == 2, "{e}");
                return Ok(());
            }
            Ok(cli) => cli,
        };
        let Command::Run(args) = cli.command else {
            return Err(TestCaseError::fail("not a run"));
        };
        match Layer::from_flags(&args) {
            Err(e) => names_one_of(&e.to_string(), &given)?,
            Ok(layer) => {
                for (_, setting, shown) in VALUE_FLAGS {
                    if given.iter().any(|(s, _)| s == setting) {
                        prop_assert_eq!(source_of(&layer, setting), Some(Source::Flag(shown)));
                    }
                }
            }
        }
        let no_env = |_: &str| None;
        match (load(&args, &no_env), &command) {
            (Ok(_), None) => prop_assert!(false, "a manifest run without a manifest loaded"),
            (Ok(_), Some(_)) => {}
            (Err(e), _) => {
                let msg = e.to_string();
                let known = msg.starts_with("invalid value ")
                    || is_stop_rule_error(&msg, "flag")
                    || msg.starts_with("invalid --command: ")
                    || msg.starts_with("manifest ")
                    || msg.starts_with("unexpected argument ");
                prop_assert!(known, "{msg:?} for {argv:?}");
                if msg.starts_with("invalid value ") {
                    names_one_of(&msg, &given)?;
                }
            }
        }
    }
}

// ----- (4) command templates and artifacts -----

/// The brace text of `word` that is ours, by PRODUCT.md: `(start, len,
/// placeholder)` for each placeholder (`true`) and each unknown `{name}` of
/// letters and `_` (`false`), left to right; a `{` right after `$` is the
/// shell's (`${HOME}`) and opens neither.
fn brace_spans(word: &str) -> Vec<(usize, usize, bool)> {
    let b = word.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'{' && (i == 0 || b[i - 1] != b'$') {
            if let Some(close) = b[i..].iter().position(|&c| c == b'}') {
                let text = &word[i..=i + close];
                let inner = &text[1..text.len() - 1];
                let known = PLACEHOLDERS.contains(&text);
                let name = !inner.is_empty()
                    && inner.bytes().all(|c| c.is_ascii_alphabetic() || c == b'_');
                if known || name {
                    spans.push((i, text.len(), known));
                    i += text.len();
                    continue;
                }
            }
        }
        i += 1;
    }
    spans
}

fn has_placeholder(word: &str) -> bool {
    brace_spans(word).iter().any(|&(_, _, known)| known)
}

fn has_unknown_name(word: &str) -> bool {
    brace_spans(word).iter().any(|&(_, _, known)| !known)
}

/// What `word` must become for `task` without a place in a run: `{}` and
/// `{artifact}`, `{agent}`, `{id}` replaced, `{#}` and `{%}` as written,
/// other text as it is; `None` when it holds a path placeholder (their
/// meanings are the template module's tests, against GNU parallel's) or an
/// unknown name.
fn expected_word(word: &str, task: &AgentTask) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    for (start, len, known) in brace_spans(word) {
        out.extend_from_slice(&word.as_bytes()[at..start]);
        let text = &word[start..start + len];
        match (known, text) {
            (true, "{}" | "{artifact}") => out.extend_from_slice(task.artifact_bytes()),
            (true, "{agent}") => out.extend_from_slice(task.agent.as_str().as_bytes()),
            (true, "{id}") => out.extend_from_slice(task.id.as_str().as_bytes()),
            (true, "{#}" | "{%}") => out.extend_from_slice(text.as_bytes()),
            _ => return None,
        }
        at = start + len;
    }
    out.extend_from_slice(&word.as_bytes()[at..]);
    Some(out)
}

fn any_task() -> impl Strategy<Value = AgentTask> {
    (
        select(&["a", "command", "{id}", "é", ""][..]),
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..16),
            template().prop_map(String::into_bytes),
        ],
        proptest::option::of(template()),
    )
        .prop_map(|(agent, artifact, id)| {
            let t = AgentTask::from_bytes(agent, &artifact);
            match id {
                Some(id) if !id.is_empty() => t.with_id(id),
                _ => t,
            }
        })
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn templates_split_or_say_why_and_every_word_stays_one_argument(
        text in template(),
        task in any_task(),
        append in any::<bool>(),
    ) {
        match CommandTemplate::split(&text).map_err(|e| e.to_string()) {
            Err(m) => {
                prop_assert!(!m.trim().is_empty());
                // Quoting that splits into a program is refused only for
                // what its braces say: an unknown name, or a placeholder
                // pasted into a shell's script.
                if let Ok(words) = shell_words::split(&text) {
                    prop_assert!(
                        words.first().is_none_or(String::is_empty) || text.contains('{'),
                        "{m:?}"
                    );
                    if words.first().is_some_and(|w| !w.is_empty()) {
                        let unknown = words.iter().any(|w| has_unknown_name(w));
                        prop_assert_eq!(
                            m.starts_with("unknown placeholder {"),
                            unknown,
                            "{:?}",
                            m
                        );
                        prop_assert!(
                            unknown || m.contains("would be pasted into the script that `"),
                            "{m:?}"
                        );
                    }
                }
            }
            Ok(t) => {
                let CommandTemplate::Argv(words) = t.clone() else {
                    return Err(TestCaseError::fail("a split command is an argv"));
                };
                prop_assert!(!words.is_empty() && !words[0].is_empty());
                // Unknown names are always refused.
                prop_assert!(!words.iter().any(|w| has_unknown_name(w)), "{:?}", words);
                let mut cmd = TaskCommand::new(t);
                if append {
                    cmd = cmd.append_artifact_without_placeholder();
                }
                let argv = cmd.argv(&task);
                let extra = usize::from(cmd.appends_artifact());
                prop_assert_eq!(
                    cmd.appends_artifact(),
                    append && !words.iter().any(|w| has_placeholder(w))
                );
                prop_assert_eq!(argv.len(), words.len() + extra);
                for (w, a) in words.iter().zip(&argv) {
                    if let Some(want) = expected_word(w, &task) {
                        prop_assert_eq!(a.as_bytes(), &want[..], "{:?}", w);
                    }
                }
                if extra == 1 {
                    prop_assert_eq!(argv[words.len()].as_bytes(), task.artifact_bytes());
                }
                let _ = display_argv(&argv);
            }
        }
    }

    #[test]
    fn shell_scripts_never_get_a_placeholder_and_get_the_artifact_as_dollar_one(
        script in template(),
        task in any_task(),
    ) {
        let refused = script.trim().is_empty() || !brace_spans(&script).is_empty();
        match CommandTemplate::shell(script.clone()).map_err(|e| e.to_string()) {
            Err(m) => {
                prop_assert!(refused, "{m}");
                prop_assert!(
                    m.contains("empty")
                        || m.contains("\"$1\"")
                        || m.starts_with("unknown placeholder {"),
                    "{m}"
                );
            }
            Ok(t) => {
                prop_assert!(!refused);
                let argv = TaskCommand::new(t).append_artifact_without_placeholder().argv(&task);
                let want: Vec<&[u8]> =
                    vec![b"sh", b"-c", script.as_bytes(), b"sh", task.artifact_bytes()];
                prop_assert_eq!(argv.iter().map(|a| a.as_bytes()).collect::<Vec<_>>(), want);
            }
        }
    }

    #[test]
    fn list_commands_keep_their_words(
        words in prop::collection::vec(template(), 0..5),
        task in any_task(),
    ) {
        match CommandTemplate::list(words.clone()).map_err(|e| e.to_string()) {
            Err(m) => prop_assert!(
                words.first().is_none_or(String::is_empty)
                    || words.iter().any(|w| has_unknown_name(w))
                    || m.contains("would be pasted into the script that `"),
                "{m}"
            ),
            Ok(t) => {
                let argv = TaskCommand::new(t).argv(&task);
                prop_assert_eq!(argv.len(), words.len());
                for (w, a) in words.iter().zip(&argv) {
                    if let Some(want) = expected_word(w, &task) {
                        prop_assert_eq!(a.as_bytes(), &want[..], "{:?}", w);
                    }
                }
            }
        }
    }

    /// The same templates inside a manifest: refused with the agent's
    /// name and place, or expanded for a task.
    #[test]
    fn manifest_commands_take_any_template(
        text in template(),
        shell in any::<bool>(),
        artifact in "\\PC{0,10}",
    ) {
        let doc = format!(
            "agents:\n  a:\n    shell: {shell}\n    command: {}\ntasks:\n  - agent: a\n    artifact: {}\n",
            quoted(&text),
            quoted(&artifact),
        );
        let path = Path::new("fuzz.yaml");
        match Manifest::parse(path, doc.clone()) {
            Err(e) => {
                let msg = e.to_string();
                check_manifest_error(&msg, "fuzz.yaml", &doc)?;
                // JSON escapes what is below a space; YAML refuses these raw.
                let refused = text.chars().chain(artifact.chars()).any(|c| {
                    matches!(c, '\u{7f}'..='\u{84}' | '\u{86}'..='\u{9f}' | '\u{fffe}' | '\u{ffff}')
                });
                prop_assert!(
                    msg.starts_with("fuzz.yaml:4:14: agent `a`: ") || refused,
                    "{msg:?}"
                );
            }
            Ok(m) => {
                let tasks = m.tasks().map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(tasks.len(), 1);
                let argv = m.agents[0].command.argv(&tasks[0]);
                prop_assert!(!argv.is_empty());
            }
        }
    }
}

// ----- what fuzzing found -----

/// Inputs fuzzing once failed on, kept so they stay fixed.
#[test]
fn regressions_stay_fixed() {
    let deep = format!("tasks: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let cases: &[&[u8]] = &[
        // An error at the very end was placed one line past the file.
        b"{",
        b"execution:\nx",
        // Minutes in libyaml before any error.
        deep.as_bytes(),
        // Control characters were placed at 1:1.
        b"execution:\n  parallel: tr\0ue\n",
        "agents:\n  é: {command: \"a\u{7f}\"}\n".as_bytes(),
        // A whole number beyond 128 bits was called a fraction.
        b"execution:\n  parallel_limit: 340282366920938463463374607431768211456\n",
    ];
    for bytes in cases {
        check_manifest_bytes(bytes).unwrap_or_else(|e| panic!("{e}"));
    }
}
