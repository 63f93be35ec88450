//! Finds a command's program on `PATH` once per agent instead of once per
//! spawn.
//!
//! Given a bare name such as `true`, the C library tries `execve` in every
//! `PATH` folder until one works, and it does so in the new child while the
//! spawning thread waits (`posix_spawn` suspends the parent until the
//! child's `exec`). With a long `PATH` that is a dozen failed `execve`s per
//! task. Looking the name up once, in the same order and by the same rule
//! (the first regular file we may execute), gives the same program for a
//! fraction of the cost; the task still sees the bare name as its `argv[0]`.
//!
//! What cannot be decided once is left to the C library: names with a `/`,
//! a `PATH` with relative entries (they depend on the task's folder), an
//! unset `PATH`, and names found nowhere (so the error stays the usual one).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Programs already looked up, with the `PATH` they were looked up in.
#[derive(Debug, Default)]
pub(crate) struct ProgramCache {
    /// `PATH` of this process when the cache was made: reading it on every
    /// spawn would take the environment lock each time.
    inherited_path: Option<OsString>,
    found: Mutex<HashMap<OsString, Lookup>>,
}

#[derive(Debug)]
struct Lookup {
    path_var: OsString,
    program: Option<PathBuf>,
}

impl ProgramCache {
    pub(crate) fn new() -> Self {
        Self {
            inherited_path: std::env::var_os("PATH"),
            found: Mutex::default(),
        }
    }

    /// The file to execute for `program` when the task's environment
    /// changes `PATH` to `path_override` (or leaves it alone); `None` means
    /// "let the C library search".
    pub(crate) fn resolve(
        &self,
        program: &OsStr,
        path_override: Option<&OsStr>,
    ) -> Option<PathBuf> {
        if program.as_bytes().contains(&b'/') || program.is_empty() {
            return None;
        }
        let path_var = path_override.or(self.inherited_path.as_deref())?;
        let mut found = self.found.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hit) = found.get(program).filter(|hit| hit.path_var == path_var) {
            return hit.program.clone();
        }
        let lookup = Lookup {
            path_var: path_var.to_owned(),
            program: search(program, path_var),
        };
        let result = lookup.program.clone();
        found.insert(program.to_owned(), lookup);
        result
    }

    /// Forgets `program`: its file went away or changed since it was found.
    pub(crate) fn forget(&self, program: &OsStr) {
        let mut found = self.found.lock().unwrap_or_else(|e| e.into_inner());
        found.remove(program);
    }
}

/// The first regular, executable file named `program` in the folders of
/// `path_var`, or `None` when the answer depends on the task's folder or
/// nothing matches.
fn search(program: &OsStr, path_var: &OsStr) -> Option<PathBuf> {
    for dir in path_var.as_bytes().split(|&b| b == b':') {
        // An empty entry means the current folder, which is the task's.
        if dir.first() != Some(&b'/') {
            return None;
        }
        let candidate = Path::new(OsStr::from_bytes(dir)).join(program);
        let is_file = std::fs::metadata(&candidate).is_ok_and(|m| m.is_file());
        if is_file && rustix::fs::access(&candidate, rustix::fs::Access::EXEC_OK).is_ok() {
            return Some(candidate);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn executable(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    fn joined(dirs: &[&Path]) -> OsString {
        let parts: Vec<&OsStr> = dirs.iter().map(|d| d.as_os_str()).collect();
        parts.join(OsStr::new(":"))
    }

    #[test]
    fn takes_the_first_executable_file_in_path_order() {
        let (a, b, c) = (
            tempfile::tempdir(),
            tempfile::tempdir(),
            tempfile::tempdir(),
        );
        let (a, b, c) = (a.expect("tmp"), b.expect("tmp"), c.expect("tmp"));
        // Not executable, then a folder of that name, then the real one.
        executable(a.path(), "tool", 0o644);
        std::fs::create_dir(b.path().join("tool")).expect("mkdir");
        let want = executable(c.path(), "tool", 0o755);
        let path = joined(&[a.path(), b.path(), c.path()]);
        assert_eq!(search(OsStr::new("tool"), &path), Some(want));
        assert_eq!(search(OsStr::new("missing"), &path), None);
    }

    #[test]
    fn leaves_what_depends_on_the_task_to_the_c_library() {
        let dir = tempfile::tempdir().expect("tmp");
        executable(dir.path(), "tool", 0o755);
        let cache = ProgramCache::new();
        let abs = joined(&[dir.path()]);
        assert!(cache.resolve(OsStr::new("tool"), Some(&abs)).is_some());
        // A relative entry before the match: the task's folder decides.
        let mut relative = OsString::from("bin:");
        relative.push(&abs);
        assert_eq!(cache.resolve(OsStr::new("tool"), Some(&relative)), None);
        let mut empty_entry = OsString::from(":");
        empty_entry.push(&abs);
        assert_eq!(cache.resolve(OsStr::new("tool"), Some(&empty_entry)), None);
        // Names with a slash are not searched.
        assert_eq!(cache.resolve(OsStr::new("./tool"), Some(&abs)), None);
    }

    #[test]
    fn remembers_per_path_and_forgets_on_request() {
        let (one, two) = (
            tempfile::tempdir().expect("tmp"),
            tempfile::tempdir().expect("tmp"),
        );
        let first = executable(one.path(), "tool", 0o755);
        let second = executable(two.path(), "tool", 0o755);
        let cache = ProgramCache::new();
        let path_one = joined(&[one.path()]);
        let path_two = joined(&[two.path()]);
        assert_eq!(
            cache.resolve(OsStr::new("tool"), Some(&path_one)),
            Some(first.clone())
        );
        // Another PATH is another answer, not the cached one.
        assert_eq!(
            cache.resolve(OsStr::new("tool"), Some(&path_two)),
            Some(second)
        );
        std::fs::remove_file(&first).expect("rm");
        let both = joined(&[one.path(), two.path()]);
        let again = cache.resolve(OsStr::new("tool"), Some(&both));
        assert_eq!(again, Some(two.path().join("tool")));
        // A cached answer survives the file's removal until forgotten.
        executable(one.path(), "tool", 0o755);
        assert_eq!(cache.resolve(OsStr::new("tool"), Some(&both)), again);
        cache.forget(OsStr::new("tool"));
        assert_eq!(cache.resolve(OsStr::new("tool"), Some(&both)), Some(first));
    }
}
