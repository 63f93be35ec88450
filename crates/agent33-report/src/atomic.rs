//! Atomic file replacement for the reports: write a temporary file in the
//! target's own folder, flush it to disk, then rename it over the target.
//!
//! A reader (a CI step, `jq` in a loop) therefore sees either the previous
//! report or the complete new one, never half of one, even if agent-33 is
//! killed while writing. The temporary file is created when the reporter is,
//! so an unwritable path fails before the run rather than after an hour of
//! work.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// A file being written that replaces `path` only on [`AtomicFile::commit`];
/// dropped without committing, it disappears.
#[derive(Debug)]
pub(crate) struct AtomicFile {
    tmp: NamedTempFile,
    path: PathBuf,
}

impl AtomicFile {
    /// Creates the temporary file next to `path`, creating missing parent
    /// folders (as pytest and nextest do for their reports).
    pub(crate) fn create(path: &Path) -> io::Result<Self> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(dir)?;
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path names no file"))?;
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(name);
        prefix.push(".");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        // tempfile creates 0600 files; a report is an ordinary file, so ask
        // for 0666 and let the umask decide, like any other file we create.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let tmp = builder.tempfile_in(dir)?;
        Ok(Self {
            tmp,
            path: path.to_owned(),
        })
    }

    /// The temporary file, to write into.
    pub(crate) fn file(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// Flushes the data to disk and renames the file over the target.
    pub(crate) fn commit(self) -> io::Result<()> {
        self.tmp.as_file().sync_all()?;
        self.tmp.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn commit_replaces_the_target_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        std::fs::write(&path, "old").unwrap();
        let mut f = AtomicFile::create(&path).unwrap();
        f.file().write_all(b"new").unwrap();
        // Until the commit, readers still see the old report.
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        f.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["report.json"]);
    }

    #[test]
    fn dropping_without_commit_leaves_the_target_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        let f = AtomicFile::create(&path).unwrap();
        drop(f);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn missing_parent_folders_are_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/report.xml");
        AtomicFile::create(&path).unwrap().commit().unwrap();
        assert!(path.is_file());
    }

    #[cfg(unix)]
    #[test]
    fn the_report_gets_the_mode_of_an_ordinary_new_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode();
        // An ordinary file: 0666 less the umask, whatever the umask is here.
        let plain = dir.path().join("plain");
        File::create(&plain).unwrap();
        let path = dir.path().join("r.json");
        AtomicFile::create(&path).unwrap().commit().unwrap();
        assert_eq!(mode(&path), mode(&plain));
    }
}
