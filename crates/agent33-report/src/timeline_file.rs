//! A report drawn from the run's timeline and written whole to a path when
//! the run is over (see [`ReportFile`] for how): the shared body of the
//! timings page and the trace.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use agent33_parallel::Event;

use crate::Reporter;
use crate::error::{Context as _, ReportError};
use crate::report_file::ReportFile;
use crate::timeline::{Timeline, TimelineBuilder};

/// How a report renders the timeline into its file.
pub(crate) type WriteFn = Box<dyn Fn(&Timeline, &mut File) -> io::Result<()> + Send>;

/// Collects the timeline, then renders it with `write` into `path`.
pub(crate) struct TimelineFile {
    path: PathBuf,
    what: &'static str,
    file: Option<ReportFile>,
    timeline: TimelineBuilder,
    write: WriteFn,
}

impl std::fmt::Debug for TimelineFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimelineFile")
            .field("path", &self.path)
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

impl TimelineFile {
    /// Prepares `path` now (see [`ReportFile`]), so a path that cannot be
    /// written fails before the run. `what` names it in errors ("the
    /// trace").
    pub(crate) fn create(
        path: &Path,
        what: &'static str,
        write: WriteFn,
    ) -> Result<Self, ReportError> {
        let file = ReportFile::create(path).context(|| describe(what, path))?;
        Ok(Self {
            path: path.to_owned(),
            what,
            file: Some(file),
            timeline: TimelineBuilder::new(),
            write,
        })
    }
}

fn describe(what: &str, path: &Path) -> String {
    format!("{what} `{}`", path.display())
}

impl Reporter for TimelineFile {
    fn on_event(&mut self, event: &Event) -> Result<(), ReportError> {
        self.timeline.observe(event);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ReportError> {
        let Some(mut file) = self.file.take() else {
            return Ok(());
        };
        let timeline = std::mem::take(&mut self.timeline).finish();
        file.writer()
            .and_then(|out| (self.write)(&timeline, out))
            .and_then(|()| file.commit())
            .context(|| describe(self.what, &self.path))
    }
}
