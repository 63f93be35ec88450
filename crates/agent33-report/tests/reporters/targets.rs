//! What a file report's path names is never destroyed: each file reporter
//! (JSON, JUnit, timings, trace) writes into a FIFO, a character device and
//! the target of a symbolic link, and all three are still what they were.

use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::Path;

use agent33_report::{
    JsonReporter, JunitReporter, ReportError, Reporter, TimingsReporter, TraceReporter,
};
use rustix::fs::{CWD, FileType, Mode};

use agent33_testkit::{FifoReader, mkfifo};

use crate::fixtures::product_example;

type Create = fn(&Path) -> Result<Box<dyn Reporter>, ReportError>;

/// Each file reporter, with a piece of text its output always has.
fn reporters() -> [(&'static str, Create, &'static str); 4] {
    [
        (
            "json",
            |p| Ok(Box::new(JsonReporter::create(p)?)),
            "\"succeeded\"",
        ),
        (
            "junit",
            |p| Ok(Box::new(JunitReporter::create(p)?)),
            "<testsuites",
        ),
        (
            "timings",
            |p| Ok(Box::new(TimingsReporter::create(p)?)),
            "<html",
        ),
        (
            "trace",
            |p| Ok(Box::new(TraceReporter::create(p)?)),
            "traceEvents",
        ),
    ]
}

fn feed(mut reporter: Box<dyn Reporter>) {
    for e in &product_example() {
        reporter.on_event(e).unwrap();
    }
    reporter.finish().unwrap();
}

#[test]
fn a_fifo_gets_the_report_and_stays_a_fifo() {
    for (name, create, mark) in reporters() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        // There before the reporter, which holds the other end from its
        // creation: the reader sees the end only when the reporter is done.
        let reader = FifoReader::open(&fifo);
        let reporter = create(&fifo).unwrap();
        let read = reader.read_all();
        feed(reporter);
        let text = read.join().unwrap();
        assert!(text.contains(mark), "{name}: {text}");
        let meta = fifo.symlink_metadata().unwrap();
        assert!(meta.file_type().is_fifo(), "{name}: still a FIFO");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "{name}");
    }
}

#[test]
fn a_symlink_stays_and_its_target_gets_the_report() {
    for (name, create, mark) in reporters() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("target"), "previous").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("target", &link).unwrap();
        feed(create(&link).unwrap());
        assert!(link.symlink_metadata().unwrap().is_symlink(), "{name}");
        let text = std::fs::read_to_string(dir.path().join("target")).unwrap();
        assert!(text.contains(mark), "{name}: {text}");
    }
}

#[test]
fn a_character_device_is_written_not_replaced() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("note: skipped, making a device needs root");
        return;
    }
    for (name, create, _) in reporters() {
        let dir = tempfile::tempdir().unwrap();
        // A /dev/null of the test's own: (1, 3) discards what it is given.
        let null = dir.path().join("null");
        rustix::fs::mknodat(
            CWD,
            &null,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        feed(create(&null).unwrap());
        let meta = null.symlink_metadata().unwrap();
        assert!(meta.file_type().is_char_device(), "{name}: still a device");
        assert_eq!(meta.rdev(), rustix::fs::makedev(1, 3), "{name}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "{name}");
    }
}
