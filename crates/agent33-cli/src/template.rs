//! Command templates: how a task becomes the exact process to start.
//!
//! A string command is split into words like a POSIX shell would split it
//! (quotes, backslashes) but is never run by a shell. `{artifact}`,
//! `{agent}` and `{id}` are replaced inside the words, after splitting, so
//! whatever an artifact contains (`a b; rm -rf ~`, quotes, newlines,
//! bytes that are not UTF-8) reaches the program as part of exactly one
//! argument. Replacement is a single left-to-right pass: text that a
//! placeholder inserts is never scanned again, so an artifact named `{id}`
//! stays `{id}`. Other brace text (`{}`, `{"json": 1}`) is left alone.
//!
//! `shell: true` runs `sh -c SCRIPT sh ARTIFACT`: the artifact is `$1` and
//! is never pasted into the script. A script containing a placeholder is
//! refused when the manifest is read (see [`CommandTemplate::shell`]).
//!
//! This module builds [`CommandSpec`]s; it starts nothing. Starting,
//! signalling and reaping are `agent33-process`'s business.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use agent33_parallel::AgentTask;
use agent33_process::{CommandBuilder, CommandSpec};

/// The placeholders replaced inside command words.
pub const PLACEHOLDERS: [&str; 3] = ["{artifact}", "{agent}", "{id}"];

/// What an agent runs, before a task is filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandTemplate {
    /// Program and arguments; placeholders are replaced inside each word.
    Argv(Vec<String>),
    /// A script for `sh -c`; the artifact is passed as `$1`.
    Shell(String),
}

impl CommandTemplate {
    /// Splits a command string into words as a POSIX shell would (without
    /// expanding anything).
    ///
    /// # Errors
    ///
    /// A message when the quoting is unbalanced or there are no words.
    pub fn split(command: &str) -> Result<Self, String> {
        let words = shell_words::split(command).map_err(|_| {
            format!(
                "cannot split command {command:?} into words: unmatched quote or trailing backslash"
            )
        })?;
        Self::list(words)
    }

    /// A command given as a list of words, used as they are.
    ///
    /// # Errors
    ///
    /// A message when the list is empty or its program is empty.
    pub fn list(words: Vec<String>) -> Result<Self, String> {
        match words.first() {
            None => Err("command is empty".to_owned()),
            Some(program) if program.is_empty() => Err("command's program is empty".to_owned()),
            Some(_) => Ok(Self::Argv(words)),
        }
    }

    /// A script for `sh -c`, which gets the artifact as `$1`.
    ///
    /// Placeholders are refused rather than left alone or replaced: left
    /// alone, `cat {artifact}` would quietly open a file named
    /// `{artifact}`; replaced by the artifact, it would be pasted into the
    /// script (the injection `shell: true` exists to avoid); replaced by
    /// `"$1"`, it breaks inside quotes (`'{artifact}'`). An error that
    /// says to write `"$1"` is the one behaviour that never surprises.
    ///
    /// # Errors
    ///
    /// A message when the script is empty or contains a placeholder.
    pub fn shell(script: String) -> Result<Self, String> {
        if script.trim().is_empty() {
            return Err("shell script is empty".to_owned());
        }
        if let Some(p) = PLACEHOLDERS.iter().find(|p| script.contains(*p)) {
            return Err(format!(
                "a `shell: true` script gets the artifact as \"$1\" (and $AGENT33_AGENT, \
                 $AGENT33_TASK_ID in its environment); {p} is not replaced in a script, \
                 write \"$1\" instead"
            ));
        }
        Ok(Self::Shell(script))
    }

    /// Whether any word contains a placeholder (a script never does).
    #[must_use]
    pub fn has_placeholder(&self) -> bool {
        match self {
            Self::Argv(words) => words
                .iter()
                .any(|w| PLACEHOLDERS.iter().any(|p| w.contains(p))),
            Self::Shell(_) => false,
        }
    }
}

/// Replaces the placeholders inside one word for `task`. The artifact's
/// exact bytes are used, even when they are not UTF-8.
#[must_use]
pub fn substitute(word: &str, task: &AgentTask) -> OsString {
    let bytes = word.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let hit = if rest.starts_with(b"{artifact}") {
            Some((task.artifact_bytes(), "{artifact}".len()))
        } else if rest.starts_with(b"{agent}") {
            Some((task.agent.as_str().as_bytes(), "{agent}".len()))
        } else if rest.starts_with(b"{id}") {
            Some((task.id.as_str().as_bytes(), "{id}".len()))
        } else {
            None
        };
        match hit {
            Some((with, len)) => {
                out.extend_from_slice(with);
                i += len;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    OsString::from_vec(out)
}

/// An agent's command: its template, working folder and environment.
/// Implements [`CommandBuilder`], so the process crate can start it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskCommand {
    template: CommandTemplate,
    append_artifact: bool,
    cwd: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
}

impl TaskCommand {
    /// A command run as written, in the inherited folder, with no extra
    /// environment beyond the `AGENT33_*` variables.
    #[must_use]
    pub fn new(template: CommandTemplate) -> Self {
        Self {
            template,
            append_artifact: false,
            cwd: None,
            env: Vec::new(),
        }
    }

    /// The ad-hoc rule (PRODUCT.md, ad-hoc mode): a template without any
    /// placeholder gets the artifact appended as its last argument, as with
    /// xargs.
    #[must_use]
    pub fn append_artifact_without_placeholder(mut self) -> Self {
        self.append_artifact =
            matches!(self.template, CommandTemplate::Argv(_)) && !self.template.has_placeholder();
        self
    }

    /// Runs the command in `cwd` (`None` = the current folder).
    #[must_use]
    pub fn cwd(mut self, cwd: Option<PathBuf>) -> Self {
        self.cwd = cwd;
        self
    }

    /// Extra environment variables, set before the `AGENT33_*` ones.
    #[must_use]
    pub fn env(mut self, env: Vec<(OsString, OsString)>) -> Self {
        self.env = env;
        self
    }

    /// The template.
    #[must_use]
    pub fn template(&self) -> &CommandTemplate {
        &self.template
    }

    /// Whether the artifact is appended as the last argument.
    #[must_use]
    pub fn appends_artifact(&self) -> bool {
        self.append_artifact
    }

    /// The working folder (`None` = the current folder).
    #[must_use]
    pub fn working_dir(&self) -> Option<&PathBuf> {
        self.cwd.as_ref()
    }

    /// The agent's own environment variables.
    #[must_use]
    pub fn extra_env(&self) -> &[(OsString, OsString)] {
        &self.env
    }

    /// The exact argv for `task`: what a dry run shows and what runs.
    #[must_use]
    pub fn argv(&self, task: &AgentTask) -> Vec<OsString> {
        match &self.template {
            CommandTemplate::Argv(words) => {
                let mut argv: Vec<OsString> = words.iter().map(|w| substitute(w, task)).collect();
                if self.append_artifact {
                    argv.push(OsStr::from_bytes(task.artifact_bytes()).to_owned());
                }
                argv
            }
            CommandTemplate::Shell(script) => vec![
                "sh".into(),
                "-c".into(),
                script.into(),
                // $0 of the script, as `sh -c` users expect.
                "sh".into(),
                OsStr::from_bytes(task.artifact_bytes()).to_owned(),
            ],
        }
    }

    /// The process description of `task`: argv, folder and the agent's
    /// environment. The command agent adds `AGENT33_TASK_ID`,
    /// `AGENT33_AGENT`, `AGENT33_ARTIFACT`, `AGENT33_ATTEMPT` and
    /// `AGENT33_RUN_ID` itself.
    #[must_use]
    pub fn spec(&self, task: &AgentTask) -> CommandSpec {
        CommandSpec {
            argv: self.argv(task),
            cwd: self.cwd.clone(),
            env: self.env.clone(),
        }
    }
}

impl CommandBuilder for TaskCommand {
    fn build(&self, task: &AgentTask, _attempt: u32) -> Result<CommandSpec, String> {
        Ok(self.spec(task))
    }
}

/// Renders an argv for people: each word quoted for a POSIX shell where
/// needed, bytes that are not UTF-8 shown as U+FFFD. For display only.
#[must_use]
pub fn display_argv(argv: &[OsString]) -> String {
    let words: Vec<String> = argv
        .iter()
        .map(|w| shell_words::quote(&w.to_string_lossy()).into_owned())
        .collect();
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn string_commands_split_like_a_shell_and_replace_inside_words() {
        let task = AgentTask::new("refine", "a b; rm -rf ~");
        let cases: &[(&str, &[&str])] = &[
            ("./refine.sh {artifact}", &["./refine.sh", "a b; rm -rf ~"]),
            (
                "tool --in={artifact} --agent {agent} '{id}'",
                &[
                    "tool",
                    "--in=a b; rm -rf ~",
                    "--agent",
                    "refine",
                    "refine:a b; rm -rf ~",
                ],
            ),
            (
                "echo \"x y\" {}{artifact}{",
                &["echo", "x y", "{}a b; rm -rf ~{"],
            ),
        ];
        for (template, want) in cases {
            let cmd = TaskCommand::new(CommandTemplate::split(template).expect("splits"));
            assert_eq!(cmd.argv(&task), os(want), "{template}");
        }
    }

    #[test]
    fn inserted_text_is_not_scanned_again() {
        let task = AgentTask::new("a", "{id}{agent}");
        let cmd = TaskCommand::new(CommandTemplate::list(vec!["{artifact}".into()]).expect("ok"));
        assert_eq!(cmd.argv(&task), os(&["{id}{agent}"]));
    }

    #[test]
    fn non_utf8_artifacts_are_passed_byte_for_byte() {
        let raw = b"caf\xe9.txt";
        let task = AgentTask::from_bytes("a", raw);
        let cmd = TaskCommand::new(CommandTemplate::split("cat x{artifact}").expect("ok"));
        let argv = cmd.argv(&task);
        assert_eq!(argv[1].as_bytes(), b"xcaf\xe9.txt");
    }

    #[test]
    fn ad_hoc_templates_without_placeholder_get_the_artifact_appended() {
        let task = AgentTask::new("command", "f.txt");
        let plain = TaskCommand::new(CommandTemplate::split("wc -l").expect("ok"))
            .append_artifact_without_placeholder();
        assert_eq!(plain.argv(&task), os(&["wc", "-l", "f.txt"]));
        let with_id = TaskCommand::new(CommandTemplate::split("echo {id}").expect("ok"))
            .append_artifact_without_placeholder();
        assert_eq!(with_id.argv(&task), os(&["echo", "command:f.txt"]));
        // Manifest agents run as written.
        let manifest = TaskCommand::new(CommandTemplate::split("make lint").expect("ok"));
        assert_eq!(manifest.argv(&task), os(&["make", "lint"]));
    }

    #[test]
    fn shell_scripts_get_the_artifact_as_dollar_one() {
        let task = AgentTask::new("s", "x'; rm -rf ~");
        let cmd =
            TaskCommand::new(CommandTemplate::shell("wc -l \"$1\" | tee out".into()).expect("ok"))
                .append_artifact_without_placeholder();
        assert_eq!(
            cmd.argv(&task),
            os(&["sh", "-c", "wc -l \"$1\" | tee out", "sh", "x'; rm -rf ~"])
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(CommandTemplate::split("").is_err());
        assert!(CommandTemplate::split("   ").is_err());
        assert!(CommandTemplate::split("echo 'open").is_err());
        assert!(CommandTemplate::list(vec![]).is_err());
        assert!(CommandTemplate::list(vec![String::new(), "x".into()]).is_err());
        assert!(CommandTemplate::shell(" ".into()).is_err());
        let err = CommandTemplate::shell("cat {artifact}".into()).unwrap_err();
        assert!(err.contains("\"$1\""), "{err}");
    }

    #[test]
    fn spec_carries_folder_and_the_agents_environment() {
        let task = AgentTask::new("lint", "a.md").with_id("custom");
        let cmd = TaskCommand::new(CommandTemplate::split("lint {artifact}").expect("ok"))
            .cwd(Some(PathBuf::from("agents")))
            .env(vec![("MODEL".into(), "llama3".into())]);
        let spec = cmd.build(&task, 2).expect("builds");
        assert_eq!(spec.argv, os(&["lint", "a.md"]));
        assert_eq!(spec.cwd, Some(PathBuf::from("agents")));
        // The AGENT33_* variables are the command agent's to add, once.
        assert_eq!(spec.env, vec![("MODEL".into(), "llama3".into())]);
    }

    #[test]
    fn display_quotes_words_that_need_it() {
        assert_eq!(
            display_argv(&os(&["echo", "a b", "it's", "plain"])),
            "echo 'a b' 'it'\\''s' plain"
        );
    }

    proptest! {
        /// Whatever the artifact holds, each template word yields exactly
        /// one argument, equal to the word with the placeholders replaced.
        #[test]
        fn an_artifact_never_splits_or_merges_arguments(
            artifact in proptest::collection::vec(any::<u8>(), 0..40),
            words in proptest::collection::vec(
                proptest::sample::select(vec![
                    "{artifact}", "pre{artifact}", "{artifact}post", "x", "{id}", "{agent}",
                    "a b", "{artifact}{artifact}", "{", "}",
                ]),
                1..6,
            ),
        ) {
            let task = AgentTask::from_bytes("ag", &artifact);
            let words: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
            let cmd = TaskCommand::new(CommandTemplate::list(words.clone()).expect("non-empty"))
                .append_artifact_without_placeholder();
            let argv = cmd.argv(&task);
            let extra = usize::from(cmd.appends_artifact());
            prop_assert_eq!(argv.len(), words.len() + extra);
            for (word, arg) in words.iter().zip(&argv) {
                let id = task.id.as_str().as_bytes();
                let want = word
                    .replace("{artifact}", "\u{0}A")
                    .replace("{id}", "\u{0}I")
                    .replace("{agent}", "\u{0}G");
                let mut expect = Vec::new();
                let mut it = want.bytes().peekable();
                while let Some(b) = it.next() {
                    if b == 0 {
                        match it.next() {
                            Some(b'A') => expect.extend_from_slice(&artifact),
                            Some(b'I') => expect.extend_from_slice(id),
                            _ => expect.extend_from_slice(b"ag"),
                        }
                    } else {
                        expect.push(b);
                    }
                }
                prop_assert_eq!(arg.as_bytes(), &expect[..]);
            }
        }

        /// A split template keeps an arbitrary artifact in one argument.
        #[test]
        fn string_templates_keep_the_artifact_whole(artifact in ".*") {
            let task = AgentTask::new("ag", artifact.clone());
            let cmd = TaskCommand::new(CommandTemplate::split("run --file {artifact} 'x y'").expect("ok"));
            let argv = cmd.argv(&task);
            prop_assert_eq!(argv.len(), 4);
            prop_assert_eq!(argv[2].to_str(), Some(artifact.as_str()));
        }
    }
}
