//! Full copies of a task's output, for `ProcessOptions::output_dir`.
//!
//! The engine keeps only the tail of each stream; when an output folder is
//! set, every byte of each attempt's stdout and stderr also goes to a file
//! there, named so that any task id (slashes, spaces, `..`, non-ASCII) gives
//! a safe, distinct file name. A file that cannot be written does not fail
//! the task: the attempt's notes say so.

use std::path::{Path, PathBuf};

use agent33_parallel::Stream;
use tokio::io::AsyncWriteExt;

/// Longest part of a file name taken from the task id.
const MAX_ID_CHARS: usize = 80;

/// The file name stem for one attempt of one task:
/// `<sanitized id>-<12 hex digits of a hash of the id>.<attempt>`.
///
/// The sanitized id keeps ASCII letters, digits, `-`, `_` and `.` and
/// replaces anything else with `_`; it never starts with `.` or `-` and is cut at
/// 80 characters. The hash tells apart ids that sanitize alike.
#[must_use]
pub fn output_file_stem(task_id: &str, attempt: u32) -> String {
    let mut name: String = task_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_ID_CHARS)
        .collect();
    // A leading `.` hides the file, a leading `-` reads as an option.
    if name.starts_with(['.', '-']) {
        name.replace_range(..1, "_");
    }
    if name.is_empty() {
        name.push_str("task");
    }
    format!("{name}-{:012x}.{attempt}", fnv1a(task_id.as_bytes()) >> 16)
}

/// FNV-1a, 64 bits: stable across runs and platforms, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One stream's file.
struct FileSink {
    label: &'static str,
    path: PathBuf,
    file: Option<tokio::fs::File>,
    error: Option<String>,
}

impl FileSink {
    async fn create(label: &'static str, path: PathBuf) -> Self {
        match tokio::fs::File::create(&path).await {
            Ok(file) => Self {
                label,
                path,
                file: Some(file),
                error: None,
            },
            Err(e) => Self {
                error: Some(format!("cannot save {label} to {}: {e}", path.display())),
                label,
                path,
                file: None,
            },
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        let Some(file) = &mut self.file else { return };
        if let Err(e) = file.write_all(bytes).await {
            self.error = Some(format!(
                "cannot save {} to {}: {e}",
                self.label,
                self.path.display()
            ));
            self.file = None;
        }
    }

    async fn finish(mut self) -> String {
        if let Some(mut file) = self.file.take() {
            if let Err(e) = file.flush().await {
                self.error = Some(format!(
                    "cannot save {} to {}: {e}",
                    self.label,
                    self.path.display()
                ));
            }
        }
        self.error
            .unwrap_or_else(|| format!("{} saved to {}", self.label, self.path.display()))
    }
}

/// The files of one attempt, or nothing when no output folder is set.
pub(crate) struct OutputFiles {
    sinks: Option<(FileSink, FileSink)>,
    error: Option<String>,
}

impl OutputFiles {
    /// No files.
    pub(crate) fn none() -> Self {
        Self {
            sinks: None,
            error: None,
        }
    }

    /// Creates (or truncates) the attempt's two files in `dir`, creating
    /// `dir` if needed.
    pub(crate) async fn create(dir: &Path, task_id: &str, attempt: u32) -> Self {
        if let Err(e) = tokio::fs::create_dir_all(dir).await {
            return Self {
                sinks: None,
                error: Some(format!("cannot save output to {}: {e}", dir.display())),
            };
        }
        let stem = output_file_stem(task_id, attempt);
        let stdout = FileSink::create("stdout", dir.join(format!("{stem}.stdout"))).await;
        let stderr = FileSink::create("stderr", dir.join(format!("{stem}.stderr"))).await;
        Self {
            sinks: Some((stdout, stderr)),
            error: None,
        }
    }

    /// Appends bytes to the stream's file.
    pub(crate) async fn write(&mut self, stream: Stream, bytes: &[u8]) {
        if let Some((stdout, stderr)) = &mut self.sinks {
            match stream {
                Stream::Stdout => stdout.write(bytes).await,
                Stream::Stderr => stderr.write(bytes).await,
            }
        }
    }

    /// Flushes and closes the files; returns the notes for the attempt
    /// (`stdout saved to PATH`, or why it could not be).
    pub(crate) async fn finish(self) -> Vec<String> {
        let mut notes: Vec<String> = self.error.into_iter().collect();
        if let Some((stdout, stderr)) = self.sinks {
            notes.push(stdout.finish().await);
            notes.push(stderr.finish().await);
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_safe_and_distinct() {
        let a = output_file_stem("lint:src/a b.rs", 1);
        assert!(a.starts_with("lint_src_a_b.rs-"), "{a}");
        assert!(a.ends_with(".1"));
        let b = output_file_stem("lint:src/a_b.rs", 1);
        assert_ne!(a, b, "same sanitized id, different hash");
        for id in ["../../etc/passwd", ".hidden", "", "ünï/cødé", "a\0b", "-rf"] {
            let stem = output_file_stem(id, 2);
            assert!(!stem.starts_with(['.', '-']), "{stem}");
            assert!(!stem.contains('/') && !stem.contains('\0'), "{stem}");
            assert!(
                stem.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
                "{stem}"
            );
        }
        let long = "x".repeat(10_000);
        assert!(output_file_stem(&long, 1).len() < 120);
        assert_ne!(output_file_stem("t", 1), output_file_stem("t", 2));
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
