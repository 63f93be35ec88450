//! Where a file report goes (`--report`, `--junit`, `--timings`, `--trace`),
//! and how it gets there without destroying what its path names.
//!
//! A path that is a regular file, or names nothing yet, is replaced
//! atomically: the report is written to a temporary file in the target's
//! own folder, flushed to disk, then renamed over the target. A reader (a CI
//! step, `jq` in a loop) therefore sees either the previous report or the
//! complete new one, never half of one, even if agent-33 is killed while
//! writing. A symbolic link is followed, also one that points at nothing
//! yet: the file it points at is replaced and the link stays.
//!
//! Anything else is opened and written directly, never replaced. A rename
//! over `/dev/null` would leave the machine (as root) with a regular file in
//! its place; over a FIFO or a `--report >(jq .)`, its reader would wait for
//! nothing. So is anything reached through `/proc` or `/dev/fd`
//! (`/dev/stdout` links to `/proc/self/fd/1`): such a path names a file a
//! process holds open, maybe the regular file the shell opened for
//! `> out.json`, and a file renamed over it is one nobody reads. Our own
//! standard streams are written through the descriptors we already hold, so
//! `>>` still appends and a socket works (it cannot be opened by path);
//! other descriptors are opened again through their path.
//!
//! Whatever can fail is tried when the report is created — the temporary
//! file is created, the device opened — so an unwritable path fails before
//! the run rather than after an hour of work. A FIFO nobody reads yet is
//! opened only at the end (see [`ReportFile::writer`]); its permission is
//! checked up front.
//!
//! Unix only, like the rest of agent-33.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::{Access, Mode, OFlags};
use rustix::io::Errno;
use tempfile::NamedTempFile;

/// Symbolic links followed before giving up, as Linux's own limit.
const MAX_LINKS: usize = 40;

/// A report's file, from before the run until it is complete.
#[derive(Debug)]
pub(crate) struct ReportFile {
    target: Target,
}

#[derive(Debug)]
enum Target {
    /// Written to `tmp`, renamed over `dest` on commit; dropped without a
    /// commit, `tmp` disappears and `dest` is left as it was.
    Replace { tmp: NamedTempFile, dest: PathBuf },
    /// Written in place; `None` until opened (a FIFO nobody read yet).
    Direct { file: Option<File>, path: PathBuf },
}

/// What a path turned out to be, symbolic links followed.
#[derive(Debug, PartialEq)]
enum Resolved {
    /// A regular file or nothing yet: replaced.
    Replace(PathBuf),
    /// Our own stdin, stdout or stderr, reached through a descriptor folder.
    Stdio(u8),
    /// Any other entry of `/proc` or `/dev/fd`: opened again by its path.
    Descriptor(PathBuf),
    /// A device, FIFO or socket.
    Special { path: PathBuf, fifo: bool },
}

impl ReportFile {
    /// Prepares the report at `path` (see the module documentation): the
    /// temporary file next to a file to be replaced, creating missing parent
    /// folders as pytest and nextest do for their reports; or the open
    /// device, FIFO or descriptor.
    pub(crate) fn create(path: &Path) -> io::Result<Self> {
        let target = match resolve(path)? {
            Resolved::Replace(dest) => Target::Replace {
                tmp: temporary_next_to(&dest)?,
                dest,
            },
            Resolved::Stdio(n) => Target::Direct {
                file: Some(own_stream(n)?),
                path: path.to_owned(),
            },
            Resolved::Descriptor(path) => {
                // A regular file behind a descriptor may hold what was
                // written through it already (task output on stdout):
                // append, where a fresh open would write from its start.
                let append = std::fs::metadata(&path).is_ok_and(|m| m.is_file());
                let file = open_now(&path, append)?.ok_or_else(|| {
                    // An anonymous pipe whose reader is gone gets no new
                    // one: waiting for it would wait forever.
                    io::Error::other("nothing reads from it")
                })?;
                Target::Direct {
                    file: Some(file),
                    path,
                }
            }
            Resolved::Special { path, fifo } => {
                let file = open_now(&path, false)?;
                if file.is_none() {
                    if !fifo {
                        return Err(Errno::NXIO.into());
                    }
                    rustix::fs::access(&path, Access::WRITE_OK)?;
                }
                Target::Direct { file, path }
            }
        };
        Ok(Self { target })
    }

    /// A folder for scratch files as large as the report: the target's own
    /// folder when it is replaced (known to take the report, unlike the
    /// system's temporary folder, which may be a RAM disk); otherwise the
    /// system's temporary folder, since `/dev` or a FIFO's folder is no
    /// place for them.
    pub(crate) fn scratch_folder(&self) -> PathBuf {
        match &self.target {
            Target::Replace { tmp, .. } => tmp
                .path()
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_owned),
            Target::Direct { .. } => std::env::temp_dir(),
        }
    }

    /// The file to write the report into.
    ///
    /// A FIFO that had no reader when the report was created is opened
    /// here, when the report is ready, and this waits for a reader as
    /// `echo > fifo` would. Opening it at the start would hold up the whole
    /// run until someone reads, where the reader may well be meant to come
    /// later (`cat fifo` in another terminal); one that is there at the
    /// start was opened then and kept open, so that it does not see the
    /// end of its input before the report.
    pub(crate) fn writer(&mut self) -> io::Result<&mut File> {
        match &mut self.target {
            Target::Replace { tmp, .. } => Ok(tmp.as_file_mut()),
            Target::Direct {
                file: Some(file), ..
            } => Ok(file),
            Target::Direct { file, path } => {
                let opened = File::options().write(true).open(&*path)?;
                Ok(file.insert(opened))
            }
        }
    }

    /// Flushes the data to disk and renames the file over the target; a
    /// file written in place is only closed (its writes are not buffered,
    /// and a pipe or a device has nothing to sync).
    pub(crate) fn commit(self) -> io::Result<()> {
        match self.target {
            Target::Replace { tmp, dest } => {
                tmp.as_file().sync_all()?;
                tmp.persist(&dest).map_err(|e| e.error)?;
                Ok(())
            }
            Target::Direct { .. } => Ok(()),
        }
    }
}

/// Follows `path` to what it names, without following what cannot be
/// followed safely: the entries of a descriptor folder.
fn resolve(path: &Path) -> io::Result<Resolved> {
    let mut path = path.to_owned();
    for _ in 0..MAX_LINKS {
        let folder = folder_of(&path);
        // Before looking at the entry itself: `/proc/self/fd/1` reads as a
        // link to the file stdout is, and following it to rename over that
        // file is exactly what must not happen.
        if let Some(fds) = std::fs::canonicalize(folder)
            .ok()
            .filter(|f| is_descriptor_folder(f))
        {
            let stdio = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<u8>().ok())
                .filter(|&n| n <= 2 && is_own_descriptor_folder(&fds));
            return Ok(stdio.map_or(Resolved::Descriptor(path), Resolved::Stdio));
        }
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Resolved::Replace(path)),
            Err(e) => return Err(e),
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            // Relative to the link's folder; an absolute target replaces it.
            path = folder.join(std::fs::read_link(&path)?);
        } else if kind.is_file() {
            return Ok(Resolved::Replace(path));
        } else if kind.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a folder, not a file",
            ));
        } else {
            return Ok(Resolved::Special {
                path,
                fifo: kind.is_fifo(),
            });
        }
    }
    Err(Errno::LOOP.into())
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Whether entries of `folder` (canonical) stand for files that processes
/// hold open. All of `/proc` counts: nothing there can be renamed over.
/// `/dev/fd` is such a folder of its own where it is no link to `/proc`.
fn is_descriptor_folder(folder: &Path) -> bool {
    folder.starts_with("/proc") || folder == Path::new("/dev/fd")
}

/// Whether `folder` (canonical) holds this process's own descriptors:
/// `/proc/PID/fd`, a thread's `/proc/PID/task/TID/fd`, or `/dev/fd`.
fn is_own_descriptor_folder(folder: &Path) -> bool {
    let me = Path::new("/proc").join(std::process::id().to_string());
    folder == Path::new("/dev/fd")
        || folder == me.join("fd")
        || (folder.ends_with("fd")
            && folder.parent().and_then(Path::parent) == Some(&me.join("task")))
}

/// A descriptor of our own stdin, stdout or stderr, if it is open for
/// writing (found out now rather than when the report is written).
fn own_stream(n: u8) -> io::Result<File> {
    let fd: OwnedFd = match n {
        0 => io::stdin().as_fd().try_clone_to_owned()?,
        1 => io::stdout().as_fd().try_clone_to_owned()?,
        _ => io::stderr().as_fd().try_clone_to_owned()?,
    };
    let mode = rustix::fs::fcntl_getfl(&fd)? & OFlags::RWMODE;
    if !mode.intersects(OFlags::WRONLY | OFlags::RDWR) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "it is open for reading only",
        ));
    }
    Ok(File::from(fd))
}

/// Opens `path` for writing in place, without waiting: `None` when it is a
/// FIFO (or pipe) that no process reads yet.
fn open_now(path: &Path, append: bool) -> io::Result<Option<File>> {
    let mut flags = OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NONBLOCK;
    if append {
        flags |= OFlags::APPEND;
    }
    match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => {
            // Non-blocking was for the open only: the report is written
            // whole, however slowly the reader reads.
            let flags = rustix::fs::fcntl_getfl(&fd)?;
            rustix::fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK)?;
            Ok(Some(File::from(fd)))
        }
        Err(Errno::NXIO) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The temporary file that will replace `dest`, in its folder.
fn temporary_next_to(dest: &Path) -> io::Result<NamedTempFile> {
    let dir = folder_of(dest);
    std::fs::create_dir_all(dir)?;
    let name = dest
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path names no file"))?;
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // tempfile creates 0600 files; a report is an ordinary file, so ask for
    // 0666 and let the umask decide, like any other file we create.
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::os::unix::fs::MetadataExt as _;

    use agent33_testkit::{FifoReader, mkfifo};

    use super::*;

    fn write_report(path: &Path, text: &str) -> io::Result<()> {
        let mut f = ReportFile::create(path)?;
        f.writer()?.write_all(text.as_bytes())?;
        f.commit()
    }

    /// A character device like /dev/null (1, 3) at `path`; `false` (with a
    /// note) when not root, the one case in which the test may skip.
    fn mknod_null(path: &Path) -> bool {
        if !rustix::process::geteuid().is_root() {
            eprintln!("note: skipped, making a device needs root");
            return false;
        }
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        true
    }

    #[test]
    fn commit_replaces_the_target_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        std::fs::write(&path, "old").unwrap();
        let mut f = ReportFile::create(&path).unwrap();
        f.writer().unwrap().write_all(b"new").unwrap();
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
        let f = ReportFile::create(&path).unwrap();
        drop(f);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn missing_parent_folders_are_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/report.xml");
        ReportFile::create(&path).unwrap().commit().unwrap();
        assert!(path.is_file());
    }

    #[test]
    fn the_report_gets_the_mode_of_an_ordinary_new_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode();
        // An ordinary file: 0666 less the umask, whatever the umask is here.
        let plain = dir.path().join("plain");
        File::create(&plain).unwrap();
        let path = dir.path().join("r.json");
        ReportFile::create(&path).unwrap().commit().unwrap();
        assert_eq!(mode(&path), mode(&plain));
    }

    #[test]
    fn a_symlink_stays_and_its_target_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::fs::write(dir.path().join("real/r.json"), "old").unwrap();
        let link = dir.path().join("r.json");
        std::os::unix::fs::symlink("real/r.json", &link).unwrap();
        write_report(&link, "new").unwrap();
        assert!(link.symlink_metadata().unwrap().is_symlink());
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("real/r.json"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("real/r.json")).unwrap(),
            "new"
        );
        // The temporary file went next to the target, and is gone.
        assert_eq!(
            std::fs::read_dir(dir.path().join("real")).unwrap().count(),
            1
        );
    }

    #[test]
    fn a_dangling_symlink_gets_its_target_created() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("r.json");
        // A chain, the last link pointing at a file in a missing folder.
        std::os::unix::fs::symlink("r2.json", &link).unwrap();
        std::os::unix::fs::symlink(dir.path().join("out/r.json"), dir.path().join("r2.json"))
            .unwrap();
        write_report(&link, "new").unwrap();
        assert!(link.symlink_metadata().unwrap().is_symlink());
        assert_eq!(std::fs::read_to_string(&link).unwrap(), "new");
        assert!(
            dir.path()
                .join("out/r.json")
                .symlink_metadata()
                .unwrap()
                .is_file()
        );
    }

    #[test]
    fn a_symlink_loop_and_a_folder_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("loop");
        std::os::unix::fs::symlink("loop", &link).unwrap();
        assert_eq!(
            ReportFile::create(&link).unwrap_err().raw_os_error(),
            Some(Errno::LOOP.raw_os_error())
        );
        let err = ReportFile::create(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::IsADirectory);
    }

    #[test]
    fn a_fifo_read_from_the_start_gets_the_report_and_stays_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        // The reader is there before the report is created, as `>(jq .)`
        // is; it reads once the report holds the other end.
        let reader = FifoReader::open(&fifo);
        let mut f = ReportFile::create(&fifo).unwrap();
        let read = reader.read_all();
        // More than a pipe holds: written whole although the reader is
        // slower than the writer.
        let report = "x".repeat(1 << 20);
        f.writer().unwrap().write_all(report.as_bytes()).unwrap();
        f.commit().unwrap();
        assert_eq!(read.join().unwrap(), report);
        assert!(fifo.symlink_metadata().unwrap().file_type().is_fifo());
    }

    #[test]
    fn a_fifo_nobody_reads_yet_is_opened_when_the_report_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        // No reader: creating the report must not wait for one.
        let mut f = ReportFile::create(&fifo).unwrap();
        assert!(matches!(&f.target, Target::Direct { file: None, .. }));
        let path = fifo.clone();
        let read = std::thread::spawn(move || std::fs::read_to_string(path).unwrap());
        f.writer().unwrap().write_all(b"report").unwrap();
        f.commit().unwrap();
        assert_eq!(read.join().unwrap(), "report");
        assert!(fifo.symlink_metadata().unwrap().file_type().is_fifo());
    }

    #[test]
    fn a_character_device_is_written_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let null = dir.path().join("null");
        if !mknod_null(&null) {
            return;
        }
        write_report(&null, "report").unwrap();
        let meta = null.symlink_metadata().unwrap();
        assert!(meta.file_type().is_char_device());
        assert_eq!(meta.rdev(), rustix::fs::makedev(1, 3));
        // Through a link, too: the link and the device both stay.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("null", &link).unwrap();
        write_report(&link, "report").unwrap();
        assert!(link.symlink_metadata().unwrap().is_symlink());
        assert!(
            null.symlink_metadata()
                .unwrap()
                .file_type()
                .is_char_device()
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_file_reached_through_a_descriptor_is_appended_to_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        // As the shell's `> out` would leave it after a task's output.
        let mut held = File::create(&out).unwrap();
        held.write_all(b"task output\n").unwrap();
        let ino = out.metadata().unwrap().ino();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&held);
        for folder in ["/proc/self/fd", "/dev/fd"] {
            let path = Path::new(folder).join(fd.to_string());
            assert_eq!(resolve(&path).unwrap(), Resolved::Descriptor(path.clone()));
            write_report(&path, "report\n").unwrap();
        }
        drop(held);
        assert_eq!(out.metadata().unwrap().ino(), ino, "the same file");
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "task output\nreport\nreport\n"
        );
    }

    #[test]
    fn our_standard_streams_are_written_through_our_own_descriptors() {
        for (path, n) in [
            ("/dev/stdout", 1),
            ("/dev/stderr", 2),
            ("/dev/fd/1", 1),
            ("/proc/self/fd/2", 2),
            ("/proc/thread-self/fd/1", 1),
        ] {
            assert_eq!(
                resolve(Path::new(path)).unwrap(),
                Resolved::Stdio(n),
                "{path}"
            );
        }
        // Another process's are opened by their path.
        let other = Path::new("/proc/1/fd/1");
        assert_eq!(
            resolve(other).unwrap(),
            Resolved::Descriptor(other.to_owned())
        );
    }

    #[test]
    fn a_descriptor_that_is_not_open_fails_at_once() {
        let err = ReportFile::create(Path::new("/dev/fd/999999")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
