//! Ad-hoc artifacts (`--command`): from the positional arguments (or after
//! `:::`), or read lazily, item by item, from a file or stdin
//! (`--artifacts-from FILE|-`, `:::: FILE`, or stdin when nothing else was
//! given).
//!
//! Items are bytes: they may be non-UTF-8 and are kept exactly. By default
//! an item is a line, without its `\n` or `\r\n`, and lines that are empty
//! or only spaces and tabs are skipped. With `-0` ([`Separator::Nul`]) an
//! item ends with a NUL byte, as `find -print0` writes them, and is taken
//! whole (a name may hold spaces, newlines, anything but NUL); only empty
//! items are skipped. The tasks come out as a stream so the engine can
//! start them while input is still being read, and stops reading when the
//! run stops: items never read are not part of the run.
//!
//! Task ids are `command:ARTIFACT`; a repeated artifact gets `#2`, `#3`, …
//! ([`IdAllocator`]).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use agent33_parallel::{AgentName, AgentTask};
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

use crate::error::{Result, UsageError};

/// The name of the ad-hoc agent.
pub const ADHOC_AGENT: &str = "command";

/// Gives each ad-hoc task a unique id: `command:ARTIFACT`, then
/// `command:ARTIFACT#2`, `#3`, … for repeats.
///
/// Holding every id would cost the whole input in memory; this keeps one
/// 64-bit hash per id given out, 8 bytes each whatever the line's length.
/// The latest hashes sit in a hash set; when it holds a batch (8,192, or a
/// sixteenth of all ids once that is more) they become one sorted run,
/// allocated once at its final size and never copied again, so memory
/// grows in place instead of through ever larger reallocations. A lookup
/// is one hash-set probe and a binary search per run (about 50 runs for
/// a million lines). Only artifacts that repeat also get an entry saying
/// which suffix to try next.
///
/// A hash collision can only make an id look taken when it is not, which
/// costs a needless `#N` suffix (odds about n²/2⁶⁵: 3·10⁻⁸ for a million
/// lines); it can never produce a duplicate id, because equal ids always
/// have equal hashes. The literal input `x#2` is handled: a later repeat of
/// `x` skips to `#3`.
#[derive(Debug)]
pub struct IdAllocator {
    /// Hashes of earlier ids, in sorted runs.
    runs: Vec<Box<[u64]>>,
    /// Hashes of ids given out since the last run was made.
    recent: HashSet<u64>,
    /// The smallest batch that becomes a run.
    min_batch: usize,
    /// Ids given out.
    total: usize,
    /// hash(base) → the next suffix to try, for bases already seen.
    repeats: HashMap<u64, u32>,
}

impl Default for IdAllocator {
    fn default() -> Self {
        Self::with_min_batch(8192)
    }
}

fn hash_of(id: &str) -> u64 {
    // Fixed keys: the same input always gets the same ids.
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

impl IdAllocator {
    /// A fresh allocator.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn with_min_batch(min_batch: usize) -> Self {
        Self {
            runs: Vec::new(),
            recent: HashSet::new(),
            min_batch,
            total: 0,
            repeats: HashMap::new(),
        }
    }

    fn taken(&self, hash: u64) -> bool {
        self.recent.contains(&hash) || self.runs.iter().any(|run| run.binary_search(&hash).is_ok())
    }

    fn take(&mut self, hash: u64) {
        self.recent.insert(hash);
        self.total += 1;
        if self.recent.len() >= self.min_batch.max(self.total / 16) {
            // `drain` keeps the set's table for the next batch.
            let mut run: Box<[u64]> = self.recent.drain().collect();
            run.sort_unstable();
            self.runs.push(run);
        }
    }

    /// A task of `agent` on `artifact` (exact bytes) with a unique id.
    pub fn task(&mut self, agent: &AgentName, artifact: &[u8]) -> AgentTask {
        let task = AgentTask::from_bytes(agent.clone(), artifact);
        let base_hash = hash_of(task.id.as_str());
        let first = self.repeats.get(&base_hash).copied();
        if first.is_none() && !self.taken(base_hash) {
            self.take(base_hash);
            return task;
        }
        let mut n = first.unwrap_or(2);
        let (id, hash) = loop {
            let candidate = format!("{}#{n}", task.id.as_str());
            let hash = hash_of(&candidate);
            if !self.taken(hash) {
                break (candidate, hash);
            }
            n += 1;
        };
        self.take(hash);
        self.repeats.insert(base_hash, n + 1);
        task.with_id(id)
    }
}

/// What ends an item of streamed input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Separator {
    /// A line ending, `\n` or `\r\n`; blank lines are skipped.
    #[default]
    Newline,
    /// A NUL byte (`-0`, `find -print0`); empty items are skipped.
    Nul,
}

impl Separator {
    /// The byte an item ends with.
    fn byte(self) -> u8 {
        match self {
            Self::Newline => b'\n',
            Self::Nul => b'\0',
        }
    }

    /// The artifact in `item` as read (its end included), or `None` for an
    /// item that is skipped.
    fn item(self, item: &[u8]) -> Option<&[u8]> {
        match self {
            Self::Newline => trim_line(item),
            Self::Nul => trim_nul_item(item),
        }
    }
}

/// Where ad-hoc artifacts come from.
#[derive(Debug)]
pub enum ArtifactInput {
    /// The positional arguments (or the words after `:::`).
    Args(Vec<OsString>),
    /// A file, already opened (so a missing file is a usage error before
    /// anything runs).
    File {
        /// The path as given, for messages.
        path: PathBuf,
        /// The open file.
        file: std::fs::File,
        /// What ends an item.
        separator: Separator,
    },
    /// Standard input (`--artifacts-from -`, or nothing else given).
    Stdin {
        /// What ends an item.
        separator: Separator,
    },
}

impl ArtifactInput {
    /// Opens `--artifacts-from PATH` (`-` = stdin), whose items end with
    /// `separator`.
    ///
    /// # Errors
    ///
    /// A usage error when the file cannot be opened.
    pub fn open(path: &Path, separator: Separator) -> Result<Self> {
        if path.as_os_str() == "-" {
            return Ok(Self::Stdin { separator });
        }
        let file = std::fs::File::open(path).map_err(|e| {
            UsageError::new(format_args!(
                "cannot read artifacts from {}: {e}",
                path.display()
            ))
        })?;
        // Opening a folder succeeds on Linux and only reading it fails,
        // which would surface after the (empty) run instead of before it.
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(UsageError::new(format_args!(
                "cannot read artifacts from {}: it is a folder, not a file",
                path.display()
            )));
        }
        Ok(Self::File {
            path: path.to_owned(),
            file,
            separator,
        })
    }

    /// Where the artifacts come from, for messages.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Args(_) => "the command line".to_owned(),
            Self::File { path, .. } => path.display().to_string(),
            Self::Stdin { .. } => "standard input".to_owned(),
        }
    }

    /// What to say when this input gave no artifact at all (after
    /// `agent-33: no artifacts: `).
    #[must_use]
    pub fn nothing_read(&self) -> String {
        match self {
            Self::Args(_) => "none given: pass them as arguments, after :::, with \
                              --artifacts-from FILE, or on standard input (not read when it is \
                              a terminal)"
                .to_owned(),
            Self::File { path, .. } => format!("{} has none", path.display()),
            Self::Stdin { .. } => "standard input had none".to_owned(),
        }
    }

    /// The tasks, when they are all known up front (positional arguments):
    /// such a run reports every one of them, as `cancelled` if a stop comes
    /// first, where a stream's unread lines are simply not part of the run.
    #[must_use]
    pub fn known_tasks(&self) -> Option<Vec<AgentTask>> {
        let Self::Args(args) = self else {
            return None;
        };
        let agent = AgentName::from(ADHOC_AGENT);
        let mut ids = IdAllocator::new();
        Some(
            args.iter()
                .map(|a| ids.task(&agent, a.as_bytes()))
                .collect(),
        )
    }

    /// The tasks, as a lazy stream. Reading starts at the first poll, so
    /// this may be called outside a runtime; polling needs tokio.
    #[must_use]
    pub fn into_stream(self) -> ArtifactStream {
        let errors = ReadErrors::default();
        let agent = AgentName::from(ADHOC_AGENT);
        let tasks = match self {
            Self::Args(args) => {
                let mut ids = IdAllocator::new();
                stream::iter(
                    args.into_iter()
                        .map(move |a| ids.task(&agent, a.as_bytes())),
                )
                .boxed()
            }
            Self::File {
                path,
                file,
                separator,
            } => {
                let reader = BufReader::new(tokio::fs::File::from_std(file));
                line_tasks(
                    reader,
                    separator,
                    agent,
                    path.display().to_string(),
                    errors.clone(),
                )
            }
            Self::Stdin { separator } => line_tasks(
                BufReader::new(tokio::io::stdin()),
                separator,
                agent,
                "standard input".to_owned(),
                errors.clone(),
            ),
        };
        ArtifactStream { tasks, errors }
    }
}

/// The ad-hoc tasks and a handle on read errors.
pub struct ArtifactStream {
    /// The tasks, in input order. Ends at end of input or at a read error.
    pub tasks: BoxStream<'static, AgentTask>,
    /// A read error that ended the stream early, if any; check it after the
    /// run (the engine's stream carries tasks only).
    pub errors: ReadErrors,
}

impl fmt::Debug for ArtifactStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArtifactStream")
            .field("errors", &self.errors)
            .finish_non_exhaustive()
    }
}

/// A read error that ended an artifact stream. Cheap to clone; shared with
/// the stream.
#[derive(Clone, Debug, Default)]
pub struct ReadErrors(Arc<Mutex<Option<String>>>);

impl ReadErrors {
    fn set(&self, message: String) {
        // A poisoned lock only means another thread panicked mid-write of
        // an Option; the value is still usable.
        let mut slot = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.get_or_insert(message);
    }

    /// The error, if reading failed (`reading artifacts from FILE: …`).
    #[must_use]
    pub fn take(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// Strips the line ending (`\n` or `\r\n`) and tells whether the line is
/// blank (empty or only spaces and tabs), which is then skipped.
#[must_use]
pub fn trim_line(line: &[u8]) -> Option<&[u8]> {
    let line = match line.strip_suffix(b"\n") {
        Some(l) => l.strip_suffix(b"\r").unwrap_or(l),
        None => line,
    };
    if line.iter().all(|b| *b == b' ' || *b == b'\t') {
        None
    } else {
        Some(line)
    }
}

/// Strips the NUL that ends an item of `-0` input; `None` for an empty
/// item, which is skipped.
#[must_use]
pub fn trim_nul_item(item: &[u8]) -> Option<&[u8]> {
    let item = item.strip_suffix(b"\0").unwrap_or(item);
    (!item.is_empty()).then_some(item)
}

/// Tasks from the items of `reader` (lines, or NUL-ended with
/// [`Separator::Nul`]), read only as the stream is polled.
pub fn line_tasks<R>(
    reader: R,
    separator: Separator,
    agent: AgentName,
    source: String,
    errors: ReadErrors,
) -> BoxStream<'static, AgentTask>
where
    R: AsyncBufRead + Unpin + Send + 'static,
{
    struct State<R> {
        reader: R,
        buf: Vec<u8>,
        ids: IdAllocator,
        agent: AgentName,
        source: String,
        errors: ReadErrors,
        done: bool,
    }
    let state = State {
        reader,
        buf: Vec::new(),
        ids: IdAllocator::new(),
        agent,
        source,
        errors,
        done: false,
    };
    stream::unfold(state, move |mut s| async move {
        while !s.done {
            s.buf.clear();
            match s.reader.read_until(separator.byte(), &mut s.buf).await {
                Ok(0) => s.done = true,
                Ok(_) => {
                    if let Some(line) = separator.item(&s.buf) {
                        let task = s.ids.task(&s.agent, line);
                        return Some((task, s));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    s.errors
                        .set(format!("reading artifacts from {}: {e}", s.source));
                    s.done = true;
                }
            }
        }
        None
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_not_an_artifact_list() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let err =
            ArtifactInput::open(dir.path(), Separator::Newline).expect_err("a folder is refused");
        assert!(
            err.to_string().ends_with("it is a folder, not a file"),
            "{err}"
        );
    }

    fn ids(artifacts: &[&[u8]]) -> Vec<String> {
        let mut alloc = IdAllocator::with_min_batch(2);
        let agent = AgentName::from(ADHOC_AGENT);
        artifacts
            .iter()
            .map(|a| alloc.task(&agent, a).id.as_str().to_owned())
            .collect()
    }

    #[test]
    fn repeated_artifacts_get_numbered_suffixes() {
        assert_eq!(
            ids(&[b"a", b"b", b"a", b"a", b"b"]),
            [
                "command:a",
                "command:b",
                "command:a#2",
                "command:a#3",
                "command:b#2"
            ]
        );
    }

    #[test]
    fn suffixes_never_collide_with_literal_artifacts() {
        assert_eq!(
            ids(&[b"x", b"x#2", b"x", b"x#2"]),
            ["command:x", "command:x#2", "command:x#3", "command:x#2#2"]
        );
        assert_eq!(
            ids(&[b"x#2", b"x", b"x"]),
            ["command:x#2", "command:x", "command:x#3"]
        );
    }

    #[test]
    fn ids_in_runs_and_recent_ids_count_alike() {
        // Ten thousand distinct lines, then each again: every repeat is
        // seen, whether its first id is in a run already or still among
        // the recent ones.
        let mut alloc = IdAllocator::with_min_batch(64);
        let agent = AgentName::from(ADHOC_AGENT);
        for round in 1..=3 {
            for i in 0..10_000 {
                let id = alloc.task(&agent, i.to_string().as_bytes()).id;
                let want = match round {
                    1 => format!("command:{i}"),
                    n => format!("command:{i}#{n}"),
                };
                assert_eq!(id.as_str(), want);
            }
        }
        assert!(alloc.runs.len() > 1, "several runs: {}", alloc.runs.len());
        assert!(
            alloc
                .runs
                .iter()
                .all(|run| run.windows(2).all(|w| w[0] < w[1]))
        );
        let held: usize = alloc.runs.iter().map(|run| run.len()).sum();
        assert_eq!(held + alloc.recent.len(), 30_000);
    }

    #[test]
    fn lossy_twins_get_distinct_ids_and_keep_their_bytes() {
        let mut alloc = IdAllocator::new();
        let agent = AgentName::from(ADHOC_AGENT);
        let a = alloc.task(&agent, b"\xff");
        let b = alloc.task(&agent, b"\xfe");
        assert_ne!(a.id, b.id);
        assert_eq!(a.artifact_bytes(), b"\xff");
        assert_eq!(b.artifact_bytes(), b"\xfe");
    }

    #[test]
    fn line_endings_are_stripped_and_blank_lines_skipped() {
        let cases: &[(&[u8], Option<&[u8]>)] = &[
            (b"a\n", Some(b"a")),
            (b"a\r\n", Some(b"a")),
            (b"a", Some(b"a")),
            (b"a\r", Some(b"a\r")),
            (b" a \t\n", Some(b" a \t")),
            (b"\n", None),
            (b"\r\n", None),
            (b" \t \n", None),
            (b"", None),
            (b"\r \n", Some(b"\r ")),
        ];
        for (line, want) in cases {
            assert_eq!(trim_line(line), *want, "{line:?}");
        }
    }

    async fn collect(input: &'static [u8]) -> Vec<AgentTask> {
        collect_with(input, Separator::Newline).await
    }

    async fn collect_with(input: &'static [u8], separator: Separator) -> Vec<AgentTask> {
        line_tasks(
            input,
            separator,
            AgentName::from(ADHOC_AGENT),
            "test".into(),
            ReadErrors::default(),
        )
        .collect()
        .await
    }

    #[tokio::test]
    async fn lines_become_tasks_in_order() {
        let tasks = collect(b"a.txt\n\n  \nb c.txt\r\n\xffz\na.txt").await;
        let got: Vec<(&str, &[u8])> = tasks
            .iter()
            .map(|t| (t.id.as_str(), t.artifact_bytes()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("command:a.txt", &b"a.txt"[..]),
                ("command:b c.txt", b"b c.txt"),
                ("command:\u{fffd}z", b"\xffz"),
                ("command:a.txt#2", b"a.txt"),
            ]
        );
        assert!(tasks.iter().all(|t| t.agent == ADHOC_AGENT));
    }

    #[tokio::test]
    async fn nul_ended_items_are_taken_whole_and_empty_ones_skipped() {
        let tasks = collect_with(
            b"a b.txt\0\0 \0line\nbreak\r\n\0\xff\0a b.txt\0last",
            Separator::Nul,
        )
        .await;
        let got: Vec<&[u8]> = tasks.iter().map(AgentTask::artifact_bytes).collect();
        assert_eq!(
            got,
            [
                &b"a b.txt"[..],
                b" ",
                b"line\nbreak\r\n",
                b"\xff",
                b"a b.txt",
                b"last"
            ]
        );
        assert_eq!(tasks[4].id.as_str(), "command:a b.txt#2");
    }

    #[test]
    fn nul_items_lose_only_their_nul() {
        assert_eq!(trim_nul_item(b"x\0"), Some(&b"x"[..]));
        assert_eq!(trim_nul_item(b"x\n"), Some(&b"x\n"[..]));
        assert_eq!(trim_nul_item(b"\0"), None);
        assert_eq!(trim_nul_item(b""), None);
    }

    #[tokio::test]
    async fn only_what_is_polled_is_read() {
        // A reader that counts the lines it has handed out.
        let (client, mut server) = tokio::io::duplex(64);
        let mut tasks = line_tasks(
            BufReader::new(client),
            Separator::Newline,
            AgentName::from(ADHOC_AGENT),
            "pipe".into(),
            ReadErrors::default(),
        );
        use tokio::io::AsyncWriteExt;
        server.write_all(b"one\n").await.expect("write");
        let first = tasks.next().await.expect("one task");
        assert_eq!(first.artifact, "one");
        // The writer is still open: the next task waits for input, proving
        // tasks are handed out while input is still being read.
        server.write_all(b"two\n").await.expect("write");
        drop(server);
        let rest: Vec<AgentTask> = tasks.collect().await;
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].artifact, "two");
    }

    #[tokio::test]
    async fn arguments_and_files_are_sources_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("list.txt");
        std::fs::write(&path, "x\ny\nx\n").expect("write");
        let input = ArtifactInput::open(&path, Separator::Newline).expect("opens");
        let stream = input.into_stream();
        let got: Vec<String> = stream
            .tasks
            .map(|t| t.id.as_str().to_owned())
            .collect()
            .await;
        assert_eq!(got, ["command:x", "command:y", "command:x#2"]);
        assert_eq!(stream.errors.take(), None);

        let args = ArtifactInput::Args(vec!["p q".into(), "p q".into()]);
        let got: Vec<String> = args
            .into_stream()
            .tasks
            .map(|t| t.id.as_str().to_owned())
            .collect()
            .await;
        assert_eq!(got, ["command:p q", "command:p q#2"]);
    }

    #[test]
    fn streams_can_be_made_before_the_runtime_exists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("list.txt");
        std::fs::write(&path, "a\n").expect("write");
        let file_stream = ArtifactInput::open(&path, Separator::Newline)
            .expect("opens")
            .into_stream();
        let stdin_stream = ArtifactInput::Stdin {
            separator: Separator::Nul,
        }
        .into_stream();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let got: Vec<AgentTask> = rt.block_on(file_stream.tasks.collect());
        assert_eq!(got.len(), 1);
        drop(stdin_stream);
    }

    #[test]
    fn a_missing_list_is_a_usage_error() {
        let err = ArtifactInput::open(Path::new("/nonexistent/list.txt"), Separator::Newline)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read artifacts from /nonexistent/list.txt:"),
            "{err}"
        );
        assert!(matches!(
            ArtifactInput::open(Path::new("-"), Separator::Nul),
            Ok(ArtifactInput::Stdin {
                separator: Separator::Nul
            })
        ));
    }

    #[tokio::test]
    async fn a_read_error_ends_the_stream_and_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Reading a folder fails with EISDIR.
        let file = std::fs::File::open(dir.path()).expect("open folder");
        let input = ArtifactInput::File {
            path: dir.path().to_owned(),
            file,
            separator: Separator::Newline,
        };
        let stream = input.into_stream();
        let got: Vec<AgentTask> = stream.tasks.collect().await;
        assert!(got.is_empty());
        let err = stream.errors.take().expect("an error");
        assert!(err.starts_with("reading artifacts from "), "{err}");
    }

    proptest::proptest! {
        /// Whatever the input, ids are unique, and an artifact's first
        /// occurrence keeps the plain id unless a literal line took it.
        #[test]
        fn ids_are_always_unique(lines in proptest::collection::vec(
            proptest::sample::select(vec!["x", "x#2", "x#3", "y", "x#2#2", "#2", ""]),
            0..40,
        )) {
            let mut alloc = IdAllocator::with_min_batch(3);
            let agent = AgentName::from(ADHOC_AGENT);
            let mut seen = std::collections::HashSet::new();
            for line in &lines {
                let task = alloc.task(&agent, line.as_bytes());
                proptest::prop_assert_eq!(task.artifact.as_str(), *line);
                let base = format!("command:{line}");
                proptest::prop_assert!(task.id.as_str().starts_with(&base));
                proptest::prop_assert!(seen.insert(task.id.as_str().to_owned()), "duplicate {}", task.id);
            }
        }
    }
}
