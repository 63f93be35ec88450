//! Command templates: how a task becomes the exact process to start.
//!
//! A string command is split into words like a POSIX shell would split it
//! (quotes, backslashes) but is never run by a shell. The placeholders
//! ([`PLACEHOLDERS`], GNU parallel's meanings) are replaced inside the
//! words, after splitting, so whatever an artifact contains (`a b; rm -rf
//! ~`, quotes, newlines, bytes that are not UTF-8) reaches the program as
//! part of exactly one argument. Replacement is a single left-to-right
//! pass: text that a placeholder inserts is never scanned again, so an
//! artifact named `{id}` stays `{id}`.
//!
//! `{name}` with a name of letters and `_` that is not a placeholder is
//! refused, because it is almost always a misspelt one; other brace text
//! (`awk '{print $1}'`, `{"json": 1}`, `{1}`) is left alone, and so is a
//! brace right after `$`, which is the shell's (`${HOME}`, `${#}`).
//!
//! `shell: true` (ad hoc: `--shell`) runs `sh -c SCRIPT sh ARTIFACT`: the
//! artifact is `$1` and is never pasted into the script, so a script with
//! a placeholder in it is refused. So is a placeholder inside the script
//! word of an explicit `sh -c` (or `bash -c`, …): pasted there, an
//! artifact would run as shell code (see [`CommandTemplate::list`]).
//!
//! This module builds [`CommandSpec`]s; it starts nothing. It lives here,
//! beside the command agent, so that every front end (the CLI, the Python
//! package) gets the same placeholders, rules and messages.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use crate::{AGENT_VAR, CommandBuilder, CommandSpec, TASK_ID_VAR};
use agent33_parallel::{AgentTask, TaskContext};

/// Every placeholder, as written in a template.
pub const PLACEHOLDERS: [&str; 10] = [
    "{}",
    "{artifact}",
    "{.}",
    "{/}",
    "{//}",
    "{/.}",
    "{#}",
    "{%}",
    "{agent}",
    "{id}",
];

/// What a placeholder stands for (GNU parallel's meanings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Placeholder {
    /// `{}` or `{artifact}`: the artifact.
    Artifact,
    /// `{.}`: the artifact without its extension: `a.tar.gz` → `a.tar`,
    /// `.bashrc` → the empty string, `dir.x/file` unchanged.
    NoExtension,
    /// `{/}`: what follows the last `/` (`a/b/` → the empty string).
    Basename,
    /// `{//}`: the directory, as POSIX `dirname` says (`a/b/` → `a`,
    /// `file` → `.`, `/x` → `/`).
    Dirname,
    /// `{/.}`: what follows the last `/`, without its extension.
    BasenameNoExtension,
    /// `{#}`: the task's input position, from 1.
    Position,
    /// `{%}`: the slot the attempt runs in, from 1 to the parallel limit.
    Slot,
    /// `{agent}`: the agent's name.
    Agent,
    /// `{id}`: the task's id.
    Id,
}

impl Placeholder {
    /// The placeholder written as `text` (`{}`, `{/.}`, `{agent}`, …).
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "{}" | "{artifact}" => Self::Artifact,
            "{.}" => Self::NoExtension,
            "{/}" => Self::Basename,
            "{//}" => Self::Dirname,
            "{/.}" => Self::BasenameNoExtension,
            "{#}" => Self::Position,
            "{%}" => Self::Slot,
            "{agent}" => Self::Agent,
            "{id}" => Self::Id,
            _ => return None,
        })
    }
}

/// What only the run knows about an attempt: where its task sits in the
/// input and which slot runs it. A fact that is not known leaves its
/// placeholder as written: a dry run knows no slot, and a journal's
/// fingerprint must not change with the slot a task happened to get.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Place {
    /// The task's input position, from 0 (the engine's `seq`).
    pub seq: Option<u64>,
    /// The slot, from 0 (as in the engine's `TaskStarted`).
    pub slot: Option<usize>,
}

/// A part of a template word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Piece<'a> {
    /// Text taken as written.
    Text(&'a str),
    /// A placeholder, and how it was written.
    Known(Placeholder, &'a str),
    /// `{name}`, a name of letters and `_` that is no placeholder.
    Unknown(&'a str),
}

/// The pieces of `word` with their byte offsets, left to right.
fn pieces(word: &str) -> impl Iterator<Item = (usize, Piece<'_>)> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= word.len() {
            return None;
        }
        let start = pos;
        let mut from = pos;
        while let Some(k) = word[from..].find('{').map(|k| k + from) {
            if let Some(piece) = brace_at(word, k) {
                if k > start {
                    pos = k;
                    return Some((start, Piece::Text(&word[start..k])));
                }
                pos = k + piece_text(piece).len();
                return Some((k, piece));
            }
            from = k + 1;
        }
        pos = word.len();
        Some((start, Piece::Text(&word[start..])))
    })
}

/// The placeholder or unknown name that the `{` at `k` opens, if any.
fn brace_at(word: &str, k: usize) -> Option<Piece<'_>> {
    // `${HOME}`, `${#}`: the shell's own braces, in a script word or a
    // `shell: true` script, must not be taken for ours.
    if k > 0 && word.as_bytes()[k - 1] == b'$' {
        return None;
    }
    let close = k + 1 + word[k + 1..].find('}')?;
    let text = &word[k..=close];
    if let Some(p) = Placeholder::parse(text) {
        return Some(Piece::Known(p, text));
    }
    let name = &word[k + 1..close];
    let is_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_');
    is_name.then_some(Piece::Unknown(text))
}

/// What follows the last `/` (GNU parallel's `s:.*/::`).
fn basename(a: &[u8]) -> &[u8] {
    a.iter()
        .rposition(|&b| b == b'/')
        .map_or(a, |i| &a[i + 1..])
}

/// Without the last `.` and what follows it, unless a `/` does (GNU
/// parallel's `s:\.[^/.]*$::`).
fn strip_extension(a: &[u8]) -> &[u8] {
    match a.iter().rposition(|&b| b == b'.' || b == b'/') {
        Some(i) if a[i] == b'.' => &a[..i],
        _ => a,
    }
}

fn trim_slashes(a: &[u8]) -> &[u8] {
    let end = a.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
    &a[..end]
}

/// POSIX `dirname`, which is what GNU parallel's `{//}` (Perl's
/// `File::Basename::dirname`) gives on Unix.
fn dirname(a: &[u8]) -> &[u8] {
    let path = trim_slashes(a);
    if path.is_empty() {
        return if a.is_empty() { b"." } else { b"/" };
    }
    match path.iter().rposition(|&b| b == b'/') {
        None => b".",
        Some(i) => match trim_slashes(&path[..i]) {
            [] => b"/",
            dir => dir,
        },
    }
}

fn push_number(out: &mut Vec<u8>, n: Option<u64>, written: &str) {
    match n {
        Some(n) => out.extend_from_slice((n + 1).to_string().as_bytes()),
        None => out.extend_from_slice(written.as_bytes()),
    }
}

/// Replaces the placeholders inside one word for `task`. The artifact's
/// exact bytes are used, even when they are not UTF-8; `{#}` and `{%}`
/// stay as written when `place` does not know them.
#[must_use]
pub fn substitute(word: &str, task: &AgentTask, place: Place) -> OsString {
    let mut out = Vec::with_capacity(word.len());
    let artifact = task.artifact_bytes();
    for (_, piece) in pieces(word) {
        let Piece::Known(p, written) = piece else {
            out.extend_from_slice(piece_text(piece).as_bytes());
            continue;
        };
        match p {
            Placeholder::Artifact => out.extend_from_slice(artifact),
            Placeholder::NoExtension => out.extend_from_slice(strip_extension(artifact)),
            Placeholder::Basename => out.extend_from_slice(basename(artifact)),
            Placeholder::Dirname => out.extend_from_slice(dirname(artifact)),
            Placeholder::BasenameNoExtension => {
                out.extend_from_slice(strip_extension(basename(artifact)));
            }
            Placeholder::Position => push_number(&mut out, place.seq, written),
            Placeholder::Slot => push_number(&mut out, place.slot.map(|s| s as u64), written),
            Placeholder::Agent => out.extend_from_slice(task.agent.as_str().as_bytes()),
            Placeholder::Id => out.extend_from_slice(task.id.as_str().as_bytes()),
        }
    }
    OsString::from_vec(out)
}

fn piece_text(piece: Piece<'_>) -> &str {
    match piece {
        Piece::Text(t) | Piece::Known(_, t) | Piece::Unknown(t) => t,
    }
}

/// Where a template was written, for messages that name the right switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// A manifest's `command` (and `shell: true`).
    Manifest,
    /// `--command` (and `--shell`).
    Flag,
}

impl Origin {
    fn shell_switch(self) -> &'static str {
        match self {
            Self::Manifest => "`shell: true`",
            Self::Flag => "--shell",
        }
    }
}

fn unknown_message(written: &str) -> String {
    format!(
        "unknown placeholder {written}: the placeholders are {}, {{agent}} and {{id}} (other \
         brace text is kept as written; to keep this one, put a space inside, as in awk's \
         '{{ print }}')",
        PLACEHOLDERS[..8].join(", ")
    )
}

/// Shells whose `-c` runs its next word as a script.
const SHELLS: [&str; 16] = [
    "sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "yash", "posh", "rbash", "ksh93", "pdksh",
    "oksh", "csh", "tcsh", "fish",
];

/// Shells whose scripts read their first argument as `"$1"`.
fn is_posix_shell(program: &str) -> bool {
    !matches!(basename_str(program), "csh" | "tcsh" | "fish")
}

fn basename_str(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// `(shell, script)`: the index of each shell word followed by options
/// with `c` in them, and of the script word those options lead to. Every
/// word is looked at, not only the first: `env sh -c`, `timeout 5 bash
/// -c` and `ssh host sh -c` paste into a script just the same.
fn shell_scripts(words: &[String]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    for (i, word) in words.iter().enumerate() {
        if !SHELLS.contains(&basename_str(word)) {
            continue;
        }
        let mut j = i + 1;
        let mut dash_c = false;
        while let Some(option) = words.get(j) {
            if option == "--" || option == "-" {
                j += 1;
                break;
            }
            if option.starts_with("--") {
                // bash's long options that take a value.
                j += if matches!(option.as_str(), "--rcfile" | "--init-file") {
                    2
                } else {
                    1
                };
                continue;
            }
            let Some(letters) = option
                .strip_prefix('-')
                .or_else(|| option.strip_prefix('+'))
                .filter(|l| !l.is_empty())
            else {
                break;
            };
            dash_c |= option.starts_with('-') && letters.contains('c');
            // `-o errexit`, `-O extglob`: each o takes the next word.
            j += 1 + letters.matches(['o', 'O']).count();
        }
        if dash_c && j < words.len() {
            found.push((i, j));
        }
    }
    found
}

/// How a shell script refers to what a placeholder stands for, if it can.
fn script_form(p: Placeholder) -> Option<String> {
    match p {
        Placeholder::Artifact => Some("\"$1\"".to_owned()),
        Placeholder::Agent => Some(format!("\"${AGENT_VAR}\"")),
        Placeholder::Id => Some(format!("\"${TASK_ID_VAR}\"")),
        Placeholder::Basename => Some("\"${1##*/}\"".to_owned()),
        Placeholder::Dirname => Some("\"$(dirname -- \"$1\")\"".to_owned()),
        _ => None,
    }
}

/// The script with each `{}`, `{artifact}`, `{agent}`, `{id}` rewritten
/// into the variable that holds it, quoted for where it stands; `None`
/// when the script holds other placeholders or quoting this does not
/// follow (command substitution, here-documents, `$'…'`).
fn fix_script(script: &str) -> Option<String> {
    if ["`", "$(", "<<", "$'"].iter().any(|s| script.contains(s)) {
        return None;
    }
    #[derive(PartialEq)]
    enum Quote {
        None,
        Single,
        Double,
    }
    let mut spots = Vec::new();
    for (at, piece) in pieces(script) {
        match piece {
            Piece::Text(_) => {}
            Piece::Known(p @ (Placeholder::Artifact | Placeholder::Agent | Placeholder::Id), w) => {
                spots.push((at, w.len(), p));
            }
            Piece::Known(..) | Piece::Unknown(_) => return None,
        }
    }
    let bytes = script.as_bytes();
    let mut out = Vec::with_capacity(script.len() + 8 * spots.len());
    let mut quote = Quote::None;
    let mut spots = spots.into_iter().peekable();
    let mut i = 0;
    while i < bytes.len() {
        if let Some(&(at, len, p)) = spots.peek().filter(|(at, _, _)| *at == i) {
            spots.next();
            let var = match p {
                Placeholder::Artifact => "1",
                Placeholder::Agent => AGENT_VAR,
                _ => TASK_ID_VAR,
            };
            let next = bytes.get(at + len).copied().unwrap_or(b' ');
            let form = match quote {
                Quote::None => format!("\"${var}\""),
                // POSIX reads `$12` as `${1}2`; a name needs braces.
                Quote::Double if var != "1" && (next.is_ascii_alphanumeric() || next == b'_') => {
                    format!("${{{var}}}")
                }
                Quote::Double => format!("${var}"),
                Quote::Single => format!("'\"${var}\"'"),
            };
            out.extend_from_slice(form.as_bytes());
            i += len;
            continue;
        }
        let b = bytes[i];
        match (&quote, b) {
            (Quote::None | Quote::Double, b'\\') => {
                if spots.peek().is_some_and(|(at, _, _)| *at == i + 1) {
                    return None;
                }
                out.extend_from_slice(&bytes[i..(i + 2).min(bytes.len())]);
                i += 2;
                continue;
            }
            (Quote::None, b'\'') => quote = Quote::Single,
            (Quote::None, b'"') => quote = Quote::Double,
            (Quote::Single, b'\'') | (Quote::Double, b'"') => quote = Quote::None,
            _ => {}
        }
        out.push(b);
        i += 1;
    }
    if quote != Quote::None {
        return None;
    }
    String::from_utf8(out).ok()
}

/// A word as a YAML flow scalar.
fn yaml_word(word: &str) -> String {
    // `-ec` is plain in a flow sequence; `-` alone or `- x` would not be.
    let plain = (word.len() > 1 || word.bytes().next().is_some_and(|b| b != b'-'))
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-'));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "''"))
    }
}

fn quote_words<'a>(words: impl IntoIterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = words
        .into_iter()
        .map(|w| shell_words::quote(w).into_owned())
        .collect();
    quoted.join(" ")
}

/// What to write instead of a template that pastes into the script of
/// `words[shell]` at `words[script]`.
fn remedy(words: &[String], shell: usize, script: usize, origin: Origin) -> String {
    let switch = origin.shell_switch();
    let alone = words.len() == 3 && shell == 0 && script == 2 && words[1] == "-c";
    let example = (script + 1 == words.len() && is_posix_shell(&words[shell]))
        .then(|| fix_script(&words[script]))
        .flatten();
    let name = basename_str(&words[shell]);
    match (example, alone && name == "sh", origin) {
        (Some(fixed), true, Origin::Flag) => format!(
            "use --shell, which runs sh -c with the artifact as \"$1\", and write \"$1\" in the \
             script: --shell --command {}",
            shell_words::quote(&fixed)
        ),
        (Some(fixed), true, Origin::Manifest) if !fixed.contains('\n') => format!(
            "use `shell: true`, which runs sh -c with the artifact as \"$1\", and write \"$1\" in \
             the script: command: {} with shell: true",
            yaml_word(&fixed)
        ),
        (Some(fixed), _, Origin::Flag) => {
            let mut argv: Vec<&str> = words[..script].iter().map(String::as_str).collect();
            argv.extend([fixed.as_str(), name, "{}"]);
            format!(
                "pass the artifact after the script, which reads it as \"$1\": --command {} \
                 (or use --shell, which runs sh -c with the artifact as \"$1\")",
                shell_words::quote(&quote_words(argv))
            )
        }
        (Some(fixed), _, Origin::Manifest) if !fixed.contains('\n') => {
            let mut list: Vec<String> = words[..script].iter().map(|w| yaml_word(w)).collect();
            list.extend([yaml_word(&fixed), yaml_word(name), yaml_word("{}")]);
            format!(
                "pass the artifact after the script, which reads it as \"$1\": command: [{}] \
                 (or use `shell: true`, which runs sh -c with the artifact as \"$1\")",
                list.join(", ")
            )
        }
        _ => format!(
            "use {switch}, which runs sh -c with the artifact as \"$1\", and write \"$1\" in the \
             script (or pass the artifact after the script: sh -c '… \"$1\" …' sh {{}})"
        ),
    }
}

/// What a template was given as, to refuse it the same way everywhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandTemplate {
    /// Program and arguments; placeholders are replaced inside each word.
    Argv(Vec<String>),
    /// A script for `sh -c`; the artifact is passed as `$1`.
    Shell(String),
}

/// Why a command template is refused. `Display` is the message, without
/// the context the caller adds (`invalid --command: `, or the manifest's
/// place and agent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Unbalanced quoting or a trailing backslash.
    #[error("cannot split command {0:?} into words: unmatched quote or trailing backslash")]
    Unsplittable(String),
    /// No words at all.
    #[error("command is empty")]
    Empty,
    /// The first word is empty.
    #[error("command's program is empty")]
    EmptyProgram,
    /// A `{name}` of letters and `_` that is no placeholder (a typo).
    #[error("{}", unknown_message(.0))]
    UnknownPlaceholder(String),
    /// A placeholder inside the script word of `sh -c` and its kin.
    #[error(
        "{written} would be pasted into the script that `{runner}` runs, where an artifact such \
         as `x; rm -rf ~` runs as commands: {remedy}"
    )]
    PastedIntoScript {
        /// The placeholder as written.
        written: String,
        /// The shell and its options up to the script (`sh -c`).
        runner: String,
        /// What to write instead.
        remedy: String,
    },
    /// An empty `--shell` or `shell: true` script.
    #[error("shell script is empty")]
    EmptyScript,
    /// A placeholder in a script, which gets the artifact as `$1`.
    #[error(
        "{who} gets the artifact as \"$1\" (and ${AGENT_VAR}, ${TASK_ID_VAR} in its \
         environment); {written} is not replaced in a script, {instead}{find}",
        AGENT_VAR = AGENT_VAR,
        TASK_ID_VAR = TASK_ID_VAR
    )]
    PlaceholderInScript {
        /// `a --shell script` or ``a `shell: true` script``.
        who: &'static str,
        /// The placeholder as written.
        written: String,
        /// What to do instead.
        instead: String,
        /// How to write find's literal `{}`, when that is what it was.
        find: &'static str,
    },
}

impl CommandTemplate {
    /// Splits a manifest's command string into words as a POSIX shell
    /// would (without expanding anything), then checks them as
    /// [`Self::list`] does.
    ///
    /// # Errors
    ///
    /// A message when the quoting is unbalanced, there are no words, or the
    /// words are refused.
    pub fn split(command: &str) -> Result<Self, TemplateError> {
        Self::split_from(command, Origin::Manifest)
    }

    /// A manifest's command given as a list of words, used as they are.
    ///
    /// Refused: an unknown `{name}` (a misspelt placeholder), and a
    /// placeholder inside the script word of `sh -c` and its kin (`bash`,
    /// `dash`, `zsh`, `ksh`, …, by any path, with `-c` among other options
    /// or combined, as in `-ec`): pasted into a script, an artifact such as
    /// `x; rm -rf ~` runs as commands. A script word that is exactly one
    /// placeholder (`sh -c {}`) is allowed: there each artifact is meant to
    /// be a command line.
    ///
    /// # Errors
    ///
    /// A message when the list is empty, its program is empty, or a word is
    /// refused.
    pub fn list(words: Vec<String>) -> Result<Self, TemplateError> {
        Self::list_from(words, Origin::Manifest)
    }

    /// A manifest's `shell: true` script, which gets the artifact as `$1`.
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
    /// A message when the script is empty or contains a placeholder or an
    /// unknown `{name}`.
    pub fn shell(script: String) -> Result<Self, TemplateError> {
        Self::shell_from(script, Origin::Manifest)
    }

    /// `--command TEMPLATE` (a script when `shell`, from `--shell`):
    /// checked as a manifest's command is, with messages that name the
    /// flags.
    ///
    /// # Errors
    ///
    /// As [`Self::split`] and [`Self::shell`].
    pub fn from_flag(command: &str, shell: bool) -> Result<Self, TemplateError> {
        if shell {
            Self::shell_from(command.to_owned(), Origin::Flag)
        } else {
            Self::split_from(command, Origin::Flag)
        }
    }

    fn split_from(command: &str, origin: Origin) -> Result<Self, TemplateError> {
        let words = shell_words::split(command)
            .map_err(|_| TemplateError::Unsplittable(command.to_owned()))?;
        Self::list_from(words, origin)
    }

    fn list_from(words: Vec<String>, origin: Origin) -> Result<Self, TemplateError> {
        match words.first() {
            None => return Err(TemplateError::Empty),
            Some(program) if program.is_empty() => {
                return Err(TemplateError::EmptyProgram);
            }
            Some(_) => {}
        }
        for word in &words {
            if let Some((_, Piece::Unknown(name))) =
                pieces(word).find(|(_, p)| matches!(p, Piece::Unknown(_)))
            {
                return Err(TemplateError::UnknownPlaceholder(name.to_owned()));
            }
        }
        for (shell, script) in shell_scripts(&words) {
            let parts: Vec<Piece<'_>> = pieces(&words[script]).map(|(_, p)| p).collect();
            let pasted = parts.iter().find_map(|p| match p {
                Piece::Known(_, written) => Some(*written),
                _ => None,
            });
            match pasted {
                // `sh -c {}`: each artifact is a command line.
                Some(_) if parts.len() == 1 => {}
                Some(written) => {
                    return Err(TemplateError::PastedIntoScript {
                        written: written.to_owned(),
                        runner: words[shell..script].join(" "),
                        remedy: remedy(&words, shell, script, origin),
                    });
                }
                None => {}
            }
        }
        Ok(Self::Argv(words))
    }

    fn shell_from(script: String, origin: Origin) -> Result<Self, TemplateError> {
        if script.trim().is_empty() {
            return Err(TemplateError::EmptyScript);
        }
        let who = match origin {
            Origin::Manifest => "a `shell: true` script",
            Origin::Flag => "a --shell script",
        };
        for (_, piece) in pieces(&script) {
            match piece {
                Piece::Text(_) => {}
                Piece::Unknown(name) => {
                    return Err(TemplateError::UnknownPlaceholder(name.to_owned()));
                }
                Piece::Known(p, written) => {
                    let instead = match (p, script_form(p)) {
                        (_, Some(form)) => format!("write {form} instead"),
                        (Placeholder::Position | Placeholder::Slot, None) => format!(
                            "it has no value there (a command without {} can take it)",
                            origin.shell_switch()
                        ),
                        (_, None) => "derive it from \"$1\" in the script".to_owned(),
                    };
                    let find = if written == "{}" {
                        " (a literal {}, as find -exec takes, is written \\{\\})"
                    } else {
                        ""
                    };
                    return Err(TemplateError::PlaceholderInScript {
                        who,
                        written: written.to_owned(),
                        instead,
                        find,
                    });
                }
            }
        }
        Ok(Self::Shell(script))
    }

    /// Whether any word contains a placeholder (a script never does).
    #[must_use]
    pub fn has_placeholder(&self) -> bool {
        self.any_placeholder(|_| true)
    }

    /// Whether any word contains placeholder `p`.
    #[must_use]
    pub fn uses(&self, p: Placeholder) -> bool {
        self.any_placeholder(|q| q == p)
    }

    fn any_placeholder(&self, wanted: impl Fn(Placeholder) -> bool) -> bool {
        match self {
            Self::Argv(words) => words.iter().any(|w| {
                pieces(w).any(|(_, piece)| matches!(piece, Piece::Known(p, _) if wanted(p)))
            }),
            Self::Shell(_) => false,
        }
    }
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

    /// PRODUCT.md's rule for `--command` and manifest commands alike: a
    /// template without any placeholder gets the artifact appended as its
    /// last argument, as with xargs. A shell script gets it as `$1` only.
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

    /// Whether the template uses placeholder `p`.
    #[must_use]
    pub fn uses(&self, p: Placeholder) -> bool {
        self.template.uses(p)
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

    /// The argv for `task` with `{#}` and `{%}` as written: everything
    /// about the command that does not depend on the run.
    #[must_use]
    pub fn argv(&self, task: &AgentTask) -> Vec<OsString> {
        self.argv_at(task, Place::default())
    }

    /// The exact argv for `task` at `place`: what a dry run shows and what
    /// runs.
    #[must_use]
    pub fn argv_at(&self, task: &AgentTask, place: Place) -> Vec<OsString> {
        match &self.template {
            CommandTemplate::Argv(words) => {
                let mut argv: Vec<OsString> =
                    words.iter().map(|w| substitute(w, task, place)).collect();
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

    /// The process description of `task`, with `{#}` and `{%}` as
    /// written (see [`Self::argv`]): argv, folder and the agent's
    /// environment.
    #[must_use]
    pub fn spec(&self, task: &AgentTask) -> CommandSpec {
        self.spec_at(task, Place::default())
    }

    /// The process description of `task` at `place`: argv, folder and the
    /// agent's environment. The command agent adds `AGENT33_TASK_ID`,
    /// `AGENT33_AGENT`, `AGENT33_ARTIFACT`, `AGENT33_ATTEMPT` and
    /// `AGENT33_RUN_ID` itself.
    #[must_use]
    pub fn spec_at(&self, task: &AgentTask, place: Place) -> CommandSpec {
        CommandSpec {
            argv: self.argv_at(task, place),
            cwd: self.cwd.clone(),
            env: self.env.clone(),
        }
    }
}

impl CommandBuilder for TaskCommand {
    fn build(&self, task: &AgentTask, _attempt: u32) -> Result<CommandSpec, String> {
        // The builder is not told the task's input position or its slot;
        // running `{#}` as written would quietly do the wrong thing.
        for (p, what) in [
            (Placeholder::Position, "{#} (the input position)"),
            (Placeholder::Slot, "{%} (the slot)"),
        ] {
            if self.uses(p) {
                return Err(format!("{what} is not known to the command builder"));
            }
        }
        Ok(self.spec(task))
    }

    fn build_for(&self, ctx: &TaskContext) -> Result<CommandSpec, String> {
        let place = Place {
            seq: Some(ctx.seq()),
            slot: Some(ctx.slot()),
        };
        Ok(self.spec_at(ctx.task(), place))
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

    fn argv_of(template: &str, task: &AgentTask) -> Vec<OsString> {
        TaskCommand::new(CommandTemplate::split(template).expect("splits")).argv(task)
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
                &["echo", "x y", "a b; rm -rf ~a b; rm -rf ~{"],
            ),
        ];
        for (template, want) in cases {
            assert_eq!(argv_of(template, &task), os(want), "{template}");
        }
    }

    #[test]
    fn every_placeholder_has_gnu_parallels_meaning() {
        let task = AgentTask::new("lint", "src/dir.x/a.tar.gz").with_id("t1");
        let cmd = TaskCommand::new(
            CommandTemplate::split("p {} {artifact} {.} {/} {//} {/.} {#} {%} {agent} {id}")
                .expect("ok"),
        );
        let place = Place {
            seq: Some(6),
            slot: Some(2),
        };
        assert_eq!(
            cmd.argv_at(&task, place),
            os(&[
                "p",
                "src/dir.x/a.tar.gz",
                "src/dir.x/a.tar.gz",
                "src/dir.x/a.tar",
                "a.tar.gz",
                "src/dir.x",
                "a.tar",
                "7",
                "3",
                "lint",
                "t1",
            ])
        );
        // Unknown facts stay as written, so a dry run and a journal can
        // show and fingerprint the rest.
        assert_eq!(
            cmd.argv(&task)[7..9].to_vec(),
            os(&["{#}", "{%}"]),
            "without a place"
        );
    }

    /// What GNU parallel 20221122 printed for `{.} {/} {//} {/.}` of each
    /// artifact.
    #[test]
    fn path_placeholders_match_gnu_parallel_at_the_edges() {
        let cases: &[(&str, [&str; 4])] = &[
            ("dir.x/file", ["dir.x/file", "file", "dir.x", "file"]),
            ("a.tar.gz", ["a.tar", "a.tar.gz", ".", "a.tar"]),
            (".bashrc", ["", ".bashrc", ".", ""]),
            ("dir/.bashrc", ["dir/", ".bashrc", "dir", ""]),
            ("file", ["file", "file", ".", "file"]),
            ("a/b/", ["a/b/", "", "a", ""]),
            ("a/b//", ["a/b//", "", "a", ""]),
            ("/", ["/", "", "/", ""]),
            ("/x", ["/x", "x", "/", "x"]),
            ("//", ["//", "", "/", ""]),
            ("a.", ["a", "a.", ".", "a"]),
            (".", ["", ".", ".", ""]),
            ("..", [".", "..", ".", "."]),
            ("a/.", ["a/", ".", "a", ""]),
            ("x/..", ["x/.", "..", "x", "."]),
            ("", ["", "", ".", ""]),
            ("a.b/", ["a.b/", "", ".", ""]),
            ("a/b.c/", ["a/b.c/", "", "a", ""]),
            ("/.x", ["/", ".x", "/", ""]),
            ("a//b", ["a//b", "b", "a", "b"]),
            ("./f.c", ["./f", "f.c", ".", "f"]),
            (".x.y", [".x", ".x.y", ".", ".x"]),
            ("...", ["..", "...", ".", ".."]),
            ("a..b", ["a.", "a..b", ".", "a."]),
        ];
        for (artifact, want) in cases {
            let task = AgentTask::new("a", *artifact);
            let got = argv_of("p {.} {/} {//} {/.}", &task);
            assert_eq!(got[1..].to_vec(), os(want), "artifact {artifact:?}");
        }
    }

    #[test]
    fn path_placeholders_work_on_bytes() {
        let task = AgentTask::from_bytes("a", b"d\xff.x/caf\xe9.t\nxt");
        let got = argv_of("p {.} {/} {//} {/.}", &task);
        let got: Vec<&[u8]> = got.iter().map(|a| a.as_bytes()).collect();
        // A newline is an ordinary byte of a name.
        assert_eq!(
            got,
            [
                &b"p"[..],
                b"d\xff.x/caf\xe9",
                b"caf\xe9.t\nxt",
                b"d\xff.x",
                b"caf\xe9"
            ]
        );
    }

    #[test]
    fn inserted_text_is_not_scanned_again() {
        let task = AgentTask::new("a", "{id}{agent}{}{.}{#}");
        let cmd = TaskCommand::new(CommandTemplate::list(vec!["{artifact}".into()]).expect("ok"));
        assert_eq!(cmd.argv(&task), os(&["{id}{agent}{}{.}{#}"]));
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
    fn other_braces_are_literal() {
        let task = AgentTask::new("a", "f");
        let cases: &[(&str, &[&str])] = &[
            ("awk '{print $1}'", &["awk", "{print $1}", "f"]),
            ("echo '{\"json\": 1}'", &["echo", "{\"json\": 1}", "f"]),
            (
                "echo {1} {a1} {é} { artifact } {{",
                &[
                    "echo", "{1}", "{a1}", "{é}", "{", "artifact", "}", "{{", "f",
                ],
            ),
            // The shell's own braces.
            (
                "echo ${HOME} ${#} ${} ${artifact}",
                &["echo", "${HOME}", "${#}", "${}", "${artifact}", "f"],
            ),
            ("echo {{}}", &["echo", "{f}"]),
            // Splitting removes the backslashes: no escape survives it.
            ("echo \\{\\}", &["echo", "f"]),
        ];
        for (template, want) in cases {
            let cmd = TaskCommand::new(CommandTemplate::split(template).expect("ok"))
                .append_artifact_without_placeholder();
            assert_eq!(cmd.argv(&task), os(want), "{template}");
        }
    }

    #[test]
    fn unknown_names_are_refused_by_name() {
        for (template, name) in [
            ("echo {artefact}", "{artefact}"),
            ("echo x{Artifact}y", "{Artifact}"),
            ("cat {name} {}", "{name}"),
            ("awk '{print}'", "{print}"),
            ("echo {_}", "{_}"),
        ] {
            let err = CommandTemplate::split(template).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("unknown placeholder {name}: the placeholders are {{}}, {{artifact}}, {{.}}, {{/}}, {{//}}, {{/.}}, {{#}}, {{%}}, {{agent}} and {{id}}")),
                "{err}"
            );
            assert!(err.contains("'{ print }'"), "{err}");
            let err = CommandTemplate::from_flag(template, false)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("unknown placeholder {name}:")),
                "{err}"
            );
        }
        let err = CommandTemplate::list(vec!["x".into(), "{nope}".into()])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("unknown placeholder {nope}"), "{err}");
        let err = CommandTemplate::shell("cat \"$1\" {nope}".into())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("unknown placeholder {nope}"), "{err}");
        assert!(CommandTemplate::shell("echo \"${HOME}\" ${#}".into()).is_ok());
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
        for p in PLACEHOLDERS {
            let cmd = TaskCommand::new(CommandTemplate::split(&format!("echo x{p}")).expect("ok"))
                .append_artifact_without_placeholder();
            assert!(!cmd.appends_artifact(), "{p}");
        }
        // Without the rule (a library user's own builder), as written.
        let as_written = TaskCommand::new(CommandTemplate::split("make lint").expect("ok"));
        assert_eq!(as_written.argv(&task), os(&["make", "lint"]));
    }

    #[test]
    fn shell_scripts_get_the_artifact_as_dollar_one() {
        let task = AgentTask::new("s", "x'; rm -rf ~");
        for cmd in [
            CommandTemplate::shell("wc -l \"$1\" | tee out".into()),
            CommandTemplate::from_flag("wc -l \"$1\" | tee out", true),
        ] {
            let cmd = TaskCommand::new(cmd.expect("ok")).append_artifact_without_placeholder();
            assert_eq!(
                cmd.argv(&task),
                os(&["sh", "-c", "wc -l \"$1\" | tee out", "sh", "x'; rm -rf ~"])
            );
        }
    }

    #[test]
    fn scripts_refuse_every_placeholder_and_say_what_to_write() {
        let cases: &[(&str, &str)] = &[
            (
                "cat {artifact}",
                "{artifact} is not replaced in a script, write \"$1\" instead",
            ),
            (
                "cat {} | wc",
                "{} is not replaced in a script, write \"$1\" instead (a literal {}, as find -exec takes, is written \\{\\})",
            ),
            ("echo {agent}", "write \"$AGENT33_AGENT\" instead"),
            ("echo {id}", "write \"$AGENT33_TASK_ID\" instead"),
            ("echo {/}", "write \"${1##*/}\" instead"),
            ("echo {//}", "write \"$(dirname -- \"$1\")\" instead"),
            ("echo {.}", "derive it from \"$1\" in the script"),
            ("echo {/.}", "derive it from \"$1\" in the script"),
            (
                "echo {#}",
                "it has no value there (a command without `shell: true` can take it)",
            ),
            (
                "echo {%}",
                "it has no value there (a command without `shell: true` can take it)",
            ),
        ];
        for (script, tail) in cases {
            let err = CommandTemplate::shell((*script).to_owned())
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("a `shell: true` script gets the artifact as \"$1\""),
                "{err}"
            );
            assert!(err.ends_with(tail), "{err}");
            let err = CommandTemplate::from_flag(script, true)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("a --shell script gets the artifact as \"$1\""),
                "{err}"
            );
        }
        let err = CommandTemplate::from_flag("echo {#}", true)
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("(a command without --shell can take it)"),
            "{err}"
        );
        // find's braces can be had.
        assert!(CommandTemplate::shell("find \"$1\" -exec wc -l \\{\\} +".into()).is_ok());
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(CommandTemplate::split("").is_err());
        assert!(CommandTemplate::split("   ").is_err());
        assert!(CommandTemplate::split("echo 'open").is_err());
        assert!(CommandTemplate::list(vec![]).is_err());
        assert!(CommandTemplate::list(vec![String::new(), "x".into()]).is_err());
        assert!(CommandTemplate::shell(" ".into()).is_err());
        assert!(CommandTemplate::from_flag(" ", true).is_err());
        let err = CommandTemplate::shell("cat {artifact}".into())
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"$1\""), "{err}");
    }

    #[test]
    fn placeholders_pasted_into_a_shell_script_are_refused() {
        for template in [
            "sh -c 'echo {artifact}'",
            "sh -c 'echo {}'",
            "bash -c 'cat {} | wc -l'",
            "dash -c 'echo {.}'",
            "zsh -c 'echo {/}'",
            "ksh -c 'echo {//}'",
            "/bin/sh -c 'echo {/.}'",
            "/usr/bin/bash -c 'echo {#}'",
            "sh -ec 'echo {%}'",
            "sh -xc 'echo {agent}'",
            "bash -euxc 'echo {id}'",
            "sh -ce 'echo {}'",
            "sh -e -c 'echo {}'",
            "sh -c -e 'echo {}'",
            "bash -o pipefail -c 'echo {}'",
            "bash -O extglob -c 'echo {}'",
            "bash --norc -c 'echo {}'",
            "bash --rcfile x -c 'echo {}'",
            "sh -c -- 'echo {}'",
            "env X=1 sh -c 'echo {}'",
            "timeout 5 bash -c 'echo {}'",
            "ssh host sh -c 'echo {}'",
            "sh -c {}{}",
            "sh -c x{}",
            "fish -c 'echo {}'",
        ] {
            for err in [
                CommandTemplate::split(template).unwrap_err().to_string(),
                CommandTemplate::from_flag(template, false)
                    .unwrap_err()
                    .to_string(),
            ] {
                assert!(
                    err.contains("would be pasted into the script that `"),
                    "{template}: {err}"
                );
                assert!(err.contains("\"$1\""), "{template}: {err}");
            }
            let words = shell_words::split(template).expect("splits");
            assert!(CommandTemplate::list(words).is_err(), "{template}");
        }
    }

    #[test]
    fn scripts_that_take_the_artifact_as_an_argument_are_allowed() {
        for template in [
            "sh -c {}",
            "sh -c {artifact}",
            "bash -ec '{}'",
            "sh -c 'echo \"$1\"' sh {}",
            "bash -c 'echo \"$1\" \"${#}\" ${HOME}' bash {/}",
            "sh show.sh {}",
            "sh -- -c {}",
            "sh -e script.sh {}",
            "grep -c sh {}",
            "python3 -c 'print(1)' {}",
            "sh -c",
        ] {
            assert!(CommandTemplate::split(template).is_ok(), "{template}");
        }
    }

    #[test]
    fn the_refusal_shows_the_corrected_form() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "sh -c 'echo {}'",
                "--shell --command 'echo \"$1\"'",
                "command: 'echo \"$1\"' with shell: true",
            ),
            (
                "bash -ec 'cat {artifact} | wc -l'",
                "--command 'bash -ec '\\''cat \"$1\" | wc -l'\\'' bash {}'",
                "command: [bash, -ec, 'cat \"$1\" | wc -l', bash, '{}']",
            ),
            (
                "/bin/sh -c 'echo {agent}:{}'",
                "--shell --command 'echo \"$AGENT33_AGENT\":\"$1\"'",
                "command: 'echo \"$AGENT33_AGENT\":\"$1\"' with shell: true",
            ),
            (
                "env X=1 sh -c 'echo {id}' ",
                "--command 'env '\\''X=1'\\'' sh -c '\\''echo \"$AGENT33_TASK_ID\"'\\'' sh {}'",
                "command: [env, 'X=1', sh, -c, 'echo \"$AGENT33_TASK_ID\"', sh, '{}']",
            ),
        ];
        for (template, flag, manifest) in cases {
            let err = CommandTemplate::from_flag(template, false)
                .unwrap_err()
                .to_string();
            assert!(err.contains(flag), "{template}:\n{err}\nlacks\n{flag}");
            let err = CommandTemplate::split(template).unwrap_err().to_string();
            assert!(
                err.contains(manifest),
                "{template}:\n{err}\nlacks\n{manifest}"
            );
        }
        let err = CommandTemplate::from_flag("sh -c 'echo {.}'", false)
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with(
                "use --shell, which runs sh -c with the artifact as \"$1\", and write \"$1\" in \
                 the script (or pass the artifact after the script: sh -c '… \"$1\" …' sh {})"
            ),
            "{err}"
        );
        assert_eq!(
            err.split(':').next(),
            Some(
                "{.} would be pasted into the script that `sh -c` runs, where an artifact such as `x; rm -rf ~` runs as commands"
            )
        );
    }

    /// The corrected scripts, run by sh, print the artifact exactly.
    #[test]
    fn corrected_scripts_quote_the_artifact_wherever_it_stood() {
        let artifact = "a 'b' \"c\" $d; `e` \\f";
        for (script, want) in [
            ("printf '%s|' {}", format!("{artifact}|")),
            (
                "printf '%s|' \"<{}>\" '<{artifact}>'",
                format!("<{artifact}>|<{artifact}>|"),
            ),
            (
                "printf '%s|' x{}y \"{agent}_x\" '{id}'",
                format!("x{artifact}y|ag_x|ag:{artifact}|"),
            ),
            (
                "printf '%s|' \"{}2\" \\\"{}",
                format!("{artifact}2|\"{artifact}|"),
            ),
        ] {
            let fixed = fix_script(script).unwrap_or_else(|| panic!("{script} has a fix"));
            let out = std::process::Command::new("sh")
                .args(["-c", &fixed, "sh", artifact])
                .env("AGENT33_AGENT", "ag")
                .env("AGENT33_TASK_ID", format!("ag:{artifact}"))
                .output()
                .expect("sh runs");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                want,
                "{script} → {fixed}"
            );
        }
        for script in [
            "echo $(cat {})",
            "echo `{}`",
            "echo {.}",
            "echo '{}",
            "cat <<E\n{}\nE",
        ] {
            assert_eq!(fix_script(script), None, "{script}");
        }
    }

    #[test]
    fn the_builder_refuses_facts_it_is_not_given() {
        let task = AgentTask::new("a", "f");
        let plain = TaskCommand::new(CommandTemplate::split("echo {}").expect("ok"));
        assert_eq!(
            plain.build(&task, 1).expect("builds").argv,
            os(&["echo", "f"])
        );
        for p in ["{#}", "{%}"] {
            let cmd = TaskCommand::new(CommandTemplate::split(&format!("echo {p}")).expect("ok"));
            let err = cmd.build(&task, 1).unwrap_err();
            assert!(err.starts_with(p), "{err}");
        }
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

        /// The path placeholders are parts of the artifact: the name has no
        /// `/`, the stems are prefixes, and directory and name put back
        /// together give the artifact whenever it names a file in a folder.
        #[test]
        fn path_placeholders_are_parts_of_the_artifact(
            artifact in proptest::collection::vec(
                proptest::sample::select(vec![b'/', b'.', b'a', b'\n', 0xff]), 0..12),
        ) {
            let task = AgentTask::from_bytes("ag", &artifact);
            let argv = argv_of("p {.} {/} {//} {/.}", &task);
            let [_, stem, name, dir, name_stem] = &argv[..] else {
                return Err(TestCaseError::fail("five words"));
            };
            let (stem, name, dir, name_stem) =
                (stem.as_bytes(), name.as_bytes(), dir.as_bytes(), name_stem.as_bytes());
            prop_assert!(!name.contains(&b'/'));
            prop_assert!(artifact.starts_with(stem) && artifact.ends_with(name));
            prop_assert!(name.starts_with(name_stem));
            prop_assert!(!dir.is_empty());
            let simple = artifact.contains(&b'/')
                && !artifact.ends_with(b"/")
                && !artifact.windows(2).any(|w| w == b"//")
                && artifact.first() != Some(&b'/');
            if simple {
                prop_assert_eq!([dir, b"/", name].concat(), artifact.clone());
            }
        }

        /// Pieces put back together are the word, whatever it holds, and
        /// checking a word never panics: an unknown name is always refused.
        #[test]
        fn words_scan_losslessly_and_unknown_names_are_always_refused(
            word in "[{}a-z_$#%./ 1]{0,12}",
        ) {
            let back: String = pieces(&word).map(|(_, p)| piece_text(p)).collect();
            prop_assert_eq!(&back, &word);
            let unknown = pieces(&word).any(|(_, p)| matches!(p, Piece::Unknown(_)));
            let checked = CommandTemplate::list(vec!["p".into(), word.clone()]);
            prop_assert_eq!(checked.is_err(), unknown);
            let task = AgentTask::new("ag", word.clone());
            let _ = substitute(&word, &task, Place { seq: Some(u64::MAX - 1), slot: Some(0) });
        }
    }
}
