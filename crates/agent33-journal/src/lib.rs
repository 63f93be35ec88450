//! A crash-safe journal of a run: one JSON line per finished task, appended
//! and made durable (fsync) in groups, so that a run killed half-way can be
//! resumed without redoing what already succeeded.
//!
//! Resume keys on what a task *is*, not on its position: a record holds the
//! task's id and a fingerprint of everything that determines what it does
//! (for a command: agent, artifact, argv, environment, folder). A task is
//! skipped only when its latest record is a success with the same
//! fingerprint, so a changed command, a reordered or extended task list and
//! a journal written by another manifest all behave.
//!
//! The journal does its own file I/O; the engine only sees it through the
//! [`Resume`] trait.
//!
//! A file it is pointed at that is not a journal (`--journal notes.txt`, a
//! JSON report) is refused and left untouched: see [`NotAJournal`].
//!
//! ```
//! use std::sync::Arc;
//! use agent33_journal::{Journal, TaskFingerprint};
//! use agent33_parallel::{AgentError, AgentTask, Agents, Event, ParallelExecutor, RunControl, TaskContext};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("run.jsonl");
//! let agents = Agents::new().add("echo", |_ctx: TaskContext| async { Ok::<_, AgentError>(()) });
//! let tasks = || vec![AgentTask::new("echo", "a"), AgentTask::new("echo", "b")];
//! let fingerprint = Arc::new(TaskFingerprint);
//!
//! for round in 0..2 {
//!     let mut journal = Journal::open(&path, fingerprint.clone()).unwrap();
//!     let executor = ParallelExecutor::builder().build().unwrap().with_resume(journal.resume());
//!     let mut events = executor.run(tasks(), &agents, RunControl::new());
//!     let mut resumed = 0;
//!     while let Some(batch) = events.next_batch().await {
//!         journal.record_all(&batch).unwrap(); // durable before anyone is told
//!         for event in &batch {
//!             if let Event::TaskFinished { result, .. } = event {
//!                 resumed += usize::from(result.resumed);
//!             }
//!         }
//!     }
//!     assert_eq!(resumed, if round == 0 { 0 } else { 2 });
//! }
//! # });
//! ```

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent33_parallel::{AgentTask, Event, Resume, TaskId, TaskResult, TaskStatus, Timestamp};
use serde::{Deserialize, Serialize};

/// Computes a task's fingerprint: a stable digest of what the task does.
pub trait Fingerprint: Send + Sync + 'static {
    /// The fingerprint of `task` (equal for tasks that would do the same).
    fn fingerprint(&self, task: &AgentTask) -> String;
}

/// The fingerprint of a task as the engine sees it: agent, artifact bytes
/// and id. Library agents whose behaviour depends on more should hash that
/// too, with their own [`Fingerprint`].
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskFingerprint;

impl Fingerprint for TaskFingerprint {
    fn fingerprint(&self, task: &AgentTask) -> String {
        let mut h = StableHasher::new();
        h.field(task.id.as_str().as_bytes());
        h.field(task.agent.as_str().as_bytes());
        h.field(task.artifact_bytes());
        h.finish_hex()
    }
}

/// A hash that never changes between builds, platforms or versions (unlike
/// `std`'s): 128-bit FNV-1a over length-prefixed fields, so `("ab", "c")`
/// and `("a", "bc")` differ.
#[derive(Clone, Debug)]
pub struct StableHasher(u128);

impl StableHasher {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

    /// A fresh hasher.
    #[must_use]
    pub fn new() -> Self {
        Self(Self::OFFSET)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u128::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    /// Adds one field.
    pub fn field(&mut self, bytes: &[u8]) {
        self.bytes(&(bytes.len() as u64).to_le_bytes());
        self.bytes(bytes);
    }

    /// The digest as 32 hex digits.
    #[must_use]
    pub fn finish_hex(&self) -> String {
        format!("{:032x}", self.0)
    }
}

impl Default for StableHasher {
    fn default() -> Self {
        Self::new()
    }
}

/// One line of the journal: a task's final outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The task's id.
    pub id: TaskId,
    /// What the task was (see [`Fingerprint`]).
    pub fingerprint: String,
    /// Its agent.
    pub agent: String,
    /// Its artifact (lossy UTF-8).
    pub artifact: String,
    /// How it ended.
    pub status: TaskStatus,
    /// Attempts made.
    pub attempts: u32,
    /// The process's exit code, if any.
    pub exit_code: Option<i32>,
    /// From first start to end.
    pub duration_ms: u64,
    /// When it first started.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
}

/// The file given as a journal is something else, and was left untouched
/// (inside the [`io::Error`] of [`Journal::open`], of kind
/// [`io::ErrorKind::InvalidData`]).
///
/// A file is recognisably a journal when every complete line is a record:
/// a JSON object with the `id`, `fingerprint` and `status` of a task, as
/// every version of this crate has written them. After the last newline
/// there may be a torn record, which a crash in mid-write leaves: anything
/// at all after records, but in a file with no complete line only the
/// start of a record (`{"id":"`) — a single line of someone else's without
/// its newline is not cut away as torn. An empty or missing file is a new
/// journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAJournal {
    why: String,
}

impl std::fmt::Display for NotAJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "it is not an agent-33 journal ({}), so it was left untouched",
            self.why
        )
    }
}

impl std::error::Error for NotAJournal {}

impl NotAJournal {
    fn error(why: impl Into<String>) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, Self { why: why.into() })
    }
}

/// What makes a line a record to [`recognise`]: the fields resume reads.
/// Serde ignores the others, so records with fields added later still
/// count.
#[derive(Deserialize)]
struct RecordShape {
    #[serde(rename = "id")]
    _id: String,
    #[serde(rename = "fingerprint")]
    _fingerprint: String,
    #[serde(rename = "status")]
    _status: String,
}

/// How every record starts: serde writes [`Record`]'s fields in order.
const RECORD_START: &[u8] = br#"{"id":""#;

/// Checks that `text`, a file's bytes, is a journal (see [`NotAJournal`]);
/// `complete` is where its last complete line ends.
fn recognise(text: &[u8], complete: usize) -> io::Result<()> {
    let mut records = 0;
    if complete > 0 {
        for line in text[..complete - 1].split(|&b| b == b'\n') {
            if serde_json::from_slice::<RecordShape>(line).is_err() {
                return Err(NotAJournal::error(format!(
                    "line {} is not a journal record",
                    records + 1
                )));
            }
            records += 1;
        }
    }
    let tail = &text[complete..];
    if records == 0 && !tail.is_empty() {
        // A whole record whose newline never made it is torn too.
        let torn = tail.starts_with(RECORD_START)
            && (serde_json::from_slice::<serde::de::IgnoredAny>(tail).is_err()
                || serde_json::from_slice::<RecordShape>(tail).is_ok());
        if !torn {
            return Err(NotAJournal::error("line 1 is not a journal record"));
        }
    }
    Ok(())
}

/// The journal of a run. See the crate docs.
pub struct Journal {
    path: PathBuf,
    out: BufWriter<File>,
    unsynced: usize,
    previous: Arc<HashMap<TaskId, Record>>,
    fingerprint: Arc<dyn Fingerprint>,
    repaired: Option<u64>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("previous", &self.previous.len())
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens (or creates) the journal at `path` for appending, reading the
    /// records already there. A torn last line — a crash in mid-write — is
    /// dropped and cut from the file; records this version cannot read
    /// (written by a later one) are ignored.
    ///
    /// # Errors
    ///
    /// The file is not a journal ([`NotAJournal`], kind
    /// [`io::ErrorKind::InvalidData`]; the file is left untouched), or it
    /// cannot be read, repaired or opened for appending.
    pub fn open(path: impl AsRef<Path>, fingerprint: Arc<dyn Fingerprint>) -> io::Result<Self> {
        let path = path.as_ref().to_owned();
        // Before opening it: reading a FIFO or a terminal would wait for
        // input, and `/dev/zero` never ends.
        match std::fs::metadata(&path) {
            Ok(meta) if !meta.is_file() => {
                return Err(NotAJournal::error(if meta.is_dir() {
                    "it is a folder"
                } else {
                    "it is not a regular file"
                }));
            }
            _ => {}
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)?;
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        // Before the repair below, the one change opening makes to a file.
        recognise(&text, complete)?;
        let mut repaired = None;
        if complete < text.len() {
            // Append mode writes at the end whatever the cursor says, so the
            // torn tail must go before anything is added.
            file.set_len(complete as u64)?;
            file.sync_all()?;
            repaired = Some((text.len() - complete) as u64);
        }
        let mut previous = HashMap::new();
        for line in text[..complete].split(|&b| b == b'\n') {
            if let Ok(record) = serde_json::from_slice::<Record>(line) {
                // Later lines win: the latest record of a task counts.
                previous.insert(record.id.clone(), record);
            }
        }
        file.seek(SeekFrom::End(0))?;
        Ok(Self {
            path,
            out: BufWriter::new(file),
            unsynced: 0,
            previous: Arc::new(previous),
            fingerprint,
            repaired,
        })
    }

    /// Bytes of a torn last line dropped when the journal was opened.
    #[must_use]
    pub fn repaired_bytes(&self) -> Option<u64> {
        self.repaired
    }

    /// The records read when the journal was opened, latest per task.
    #[must_use]
    pub fn previous(&self) -> &HashMap<TaskId, Record> {
        &self.previous
    }

    /// What the engine consults to skip tasks that already succeeded
    /// unchanged (pass it to `ParallelExecutor::with_resume`).
    #[must_use]
    pub fn resume(&self) -> Arc<dyn Resume> {
        Arc::new(JournalResume {
            previous: Arc::clone(&self.previous),
            fingerprint: Arc::clone(&self.fingerprint),
        })
    }

    /// Appends the record of a finished task (buffered: call [`Self::sync`]
    /// before telling anyone it finished).
    ///
    /// # Errors
    ///
    /// The write failed.
    pub fn record(&mut self, result: &TaskResult) -> io::Result<()> {
        let record = Record {
            id: result.task.id.clone(),
            fingerprint: self.fingerprint.fingerprint(&result.task),
            agent: result.task.agent.to_string(),
            artifact: result.task.artifact.clone(),
            status: result.status,
            attempts: result.attempts,
            exit_code: result.exit_code,
            duration_ms: result.duration_ms,
            started_at: result.started_at,
            finished_at: result.finished_at,
        };
        serde_json::to_writer(&mut self.out, &record)?;
        self.out.write_all(b"\n")?;
        self.unsynced += 1;
        Ok(())
    }

    /// Makes every record written so far durable (one fsync for all).
    ///
    /// # Errors
    ///
    /// The flush or the sync failed.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.unsynced > 0 {
            self.out.flush()?;
            self.out.get_ref().sync_data()?;
            self.unsynced = 0;
        }
        Ok(())
    }

    /// Records every finished task among `events` and syncs once: the
    /// grouped commit a consumer calls before passing the events on.
    ///
    /// # Errors
    ///
    /// A write or the sync failed.
    pub fn record_all<'a>(
        &mut self,
        events: impl IntoIterator<Item = &'a Event>,
    ) -> io::Result<()> {
        self.write_all(events)?;
        self.sync()
    }

    /// Writes the records of every finished task among `events`, without
    /// syncing: for a consumer that groups several batches into one commit
    /// (it must [`Self::sync`] before passing these events on).
    ///
    /// The records reach the kernel before this returns: a process killed
    /// before the grouped sync (`kill -9`, an OOM kill) loses none of them,
    /// so a resume does not run those tasks again; only a lost machine can
    /// take the unsynced ones.
    ///
    /// # Errors
    ///
    /// A write failed.
    pub fn write_all<'a>(&mut self, events: impl IntoIterator<Item = &'a Event>) -> io::Result<()> {
        let before = self.unsynced;
        for event in events {
            if let Event::TaskFinished { result, .. } = event {
                // A resumed task's record is already in the journal.
                if !result.resumed {
                    self.record(result)?;
                }
            }
        }
        if self.unsynced > before {
            self.out.flush()?;
        }
        Ok(())
    }

    /// Whether records are waiting for [`Self::sync`].
    #[must_use]
    pub fn has_unsynced(&self) -> bool {
        self.unsynced > 0
    }
}

struct JournalResume {
    previous: Arc<HashMap<TaskId, Record>>,
    fingerprint: Arc<dyn Fingerprint>,
}

impl Resume for JournalResume {
    fn previous_success(&self, task: &AgentTask) -> Option<TaskResult> {
        let record = self.previous.get(&task.id)?;
        if record.status != TaskStatus::Success
            || record.fingerprint != self.fingerprint.fingerprint(task)
        {
            return None;
        }
        let mut result =
            TaskResult::not_started(Arc::new(task.clone()), TaskStatus::Success, String::new());
        result.error = None;
        result.attempts = record.attempts;
        result.exit_code = record.exit_code;
        result.duration_ms = record.duration_ms;
        result.started_at = record.started_at;
        result.finished_at = record.finished_at;
        result.notes = vec!["resumed: succeeded in an earlier run".to_owned()];
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(task: AgentTask, status: TaskStatus) -> TaskResult {
        let mut r = TaskResult::not_started(Arc::new(task), status, String::new());
        r.attempts = 1;
        r
    }

    fn journal(path: &Path) -> Journal {
        Journal::open(path, Arc::new(TaskFingerprint)).unwrap()
    }

    /// Writes a journal at `path` holding the one success of `x:a`; returns
    /// the file's bytes.
    fn one_success(path: &Path) -> Vec<u8> {
        let mut j = journal(path);
        j.record(&result(AgentTask::new("x", "a"), TaskStatus::Success))
            .unwrap();
        j.sync().unwrap();
        drop(j);
        std::fs::read(path).unwrap()
    }

    #[test]
    fn the_latest_unchanged_success_is_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let a = AgentTask::new("x", "a");
        let b = AgentTask::new("x", "b");
        let mut j = journal(&path);
        j.record(&result(a.clone(), TaskStatus::Success)).unwrap();
        j.record(&result(b.clone(), TaskStatus::Success)).unwrap();
        j.record(&result(b.clone(), TaskStatus::Failed)).unwrap();
        j.sync().unwrap();
        drop(j);
        let resume = journal(&path).resume();
        assert!(resume.previous_success(&a).is_some());
        assert!(
            resume.previous_success(&b).is_none(),
            "latest record failed"
        );
        assert!(resume.previous_success(&AgentTask::new("x", "c")).is_none());
    }

    #[test]
    fn written_records_survive_a_process_that_dies_before_the_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let a = AgentTask::new("x", "a");
        let mut j = journal(&path);
        let event = Event::TaskFinished {
            seq: 0,
            slot: Some(0),
            attempt_started_at: None,
            result: Box::new(result(a.clone(), TaskStatus::Success)),
        };
        j.write_all([&event]).unwrap();
        // No sync, and the writer is never dropped (a `kill -9`): the
        // record must already be in the file.
        std::mem::forget(j);
        let resume = journal(&path).resume();
        assert!(resume.previous_success(&a).is_some());
    }

    #[test]
    fn a_changed_task_does_not_match_its_old_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let a = AgentTask::new("x", "a").with_id("t");
        let mut j = journal(&path);
        j.record(&result(a, TaskStatus::Success)).unwrap();
        j.sync().unwrap();
        drop(j);
        let changed = AgentTask::new("x", "other").with_id("t");
        assert!(journal(&path).resume().previous_success(&changed).is_none());
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let whole = one_success(&path);
        let mut torn = whole.clone();
        torn.extend_from_slice(br#"{"id":"x:b","fingerp"#);
        std::fs::write(&path, &torn).unwrap();

        let mut j = journal(&path);
        assert_eq!(j.repaired_bytes(), Some(20));
        assert_eq!(j.previous().len(), 1);
        assert_eq!(std::fs::read(&path).unwrap(), whole, "torn tail cut");
        j.record(&result(AgentTask::new("x", "b"), TaskStatus::Success))
            .unwrap();
        j.sync().unwrap();
        drop(j);
        assert_eq!(
            journal(&path).previous().len(),
            2,
            "appends after the repair parse"
        );
    }

    /// Opens `content` as a journal, expecting a refusal that leaves it
    /// as it was; returns the reason.
    fn refused(content: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        std::fs::write(&path, content).unwrap();
        let err = Journal::open(&path, Arc::new(TaskFingerprint)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        let reason = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<NotAJournal>())
            .unwrap_or_else(|| panic!("a NotAJournal: {err}"))
            .to_string();
        assert_eq!(std::fs::read(&path).unwrap(), content, "left untouched");
        reason
    }

    #[test]
    fn files_that_are_not_journals_are_refused_and_left_untouched() {
        let record = {
            let dir = tempfile::tempdir().unwrap();
            one_success(&dir.path().join("j.jsonl"))
        };
        let report = br#"{
  "total": 1,
  "succeeded": []
}
"#;
        let mut record_then_text = record.clone();
        record_then_text.extend_from_slice(b"a note\nthe end\n");
        let cases: [(&str, &[u8], &str); 7] = [
            ("notes", b"first\nsecond\nlast, no newline", "line 1"),
            ("notes ending in a newline", b"first\nsecond\n", "line 1"),
            ("a JSON report", report, "line 1"),
            ("a blank line", b"\n", "line 1"),
            ("a record, then text", &record_then_text, "line 2"),
            // One line without its newline, but no torn record: whole
            // JSON, or not the start of a record at all.
            ("one JSON line", br#"{"id":"x","name":"a"}"#, "line 1"),
            ("one word", b"notes", "line 1"),
        ];
        for (what, content, line) in cases {
            let reason = refused(content);
            assert!(reason.contains(line), "{what}: {reason}");
            assert!(reason.contains("not an agent-33 journal"), "{what}");
        }
    }

    #[test]
    fn a_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = Journal::open(dir.path(), Arc::new(TaskFingerprint)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("folder"), "{err}");
    }

    #[test]
    fn empty_and_missing_files_are_new_journals() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").unwrap();
        assert!(journal(&empty).previous().is_empty());
        assert!(
            journal(&dir.path().join("new/j.jsonl"))
                .previous()
                .is_empty()
        );
    }

    #[test]
    fn a_journal_whose_only_record_was_torn_is_repaired() {
        let whole = br#"{"id":"x:a","fingerprint":"f","agent":"x","artifact":"a","status":"success","attempts":1,"exit_code":0,"duration_ms":1,"started_at":null,"finished_at":null}"#;
        for torn in [&whole[..20], &whole[..], b"{\"id\":\"" as &[u8]] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("j.jsonl");
            std::fs::write(&path, torn).unwrap();
            let j = journal(&path);
            assert_eq!(j.repaired_bytes(), Some(torn.len() as u64));
            assert!(std::fs::read(&path).unwrap().is_empty());
        }
    }

    #[test]
    fn records_then_zeros_are_a_journal_with_a_torn_tail() {
        // What a file system may leave of a write that never reached the
        // disk.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let whole = one_success(&path);
        let mut zeros = whole.clone();
        zeros.extend_from_slice(&[0; 4096]);
        std::fs::write(&path, &zeros).unwrap();
        let j = journal(&path);
        assert_eq!(j.repaired_bytes(), Some(4096));
        assert_eq!(j.previous().len(), 1);
        assert_eq!(std::fs::read(&path).unwrap(), whole);
    }

    #[test]
    fn a_journal_written_by_the_first_version_is_still_read() {
        // Pinned: the lines this crate has written since it began.
        let old = concat!(
            r#"{"id":"x:a","fingerprint":"f1","agent":"x","artifact":"a","status":"success","attempts":1,"exit_code":0,"duration_ms":12,"started_at":"2026-01-01T00:00:00.000Z","finished_at":"2026-01-01T00:00:00.012Z"}"#,
            "\n",
            r#"{"id":"x:b","fingerprint":"f2","agent":"x","artifact":"b","status":"failed","attempts":2,"exit_code":1,"duration_ms":3,"started_at":null,"finished_at":null}"#,
            "\n",
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        std::fs::write(&path, old).unwrap();
        let j = journal(&path);
        assert_eq!(j.previous().len(), 2);
        assert_eq!(j.repaired_bytes(), None);
        assert_eq!(j.previous()[&TaskId::from("x:a")].duration_ms, 12);
        // A record of a later version, with a status this one does not
        // know and a field it never wrote, is ignored, not refused.
        let later = format!(
            "{old}{}\n",
            r#"{"id":"x:c","fingerprint":"f3","status":"flaky","new":1}"#
        );
        std::fs::write(&path, &later).unwrap();
        assert_eq!(journal(&path).previous().len(), 2);
    }

    #[test]
    fn fingerprints_are_stable_and_field_bounded() {
        let mut h = StableHasher::new();
        h.field(b"ab");
        h.field(b"c");
        let mut g = StableHasher::new();
        g.field(b"a");
        g.field(b"bc");
        assert_ne!(h.finish_hex(), g.finish_hex());
        // Pinned: a journal written today must match tomorrow's build.
        assert_eq!(
            TaskFingerprint.fingerprint(&AgentTask::new("x", "a")),
            TaskFingerprint.fingerprint(&AgentTask::new("x", "a"))
        );
        assert_eq!(
            StableHasher::new().finish_hex(),
            "6c62272e07bb014262b821756295c58d"
        );
    }
}
