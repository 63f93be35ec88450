//! `--report PATH`: the run's [`ExecutionResults`] as JSON, written
//! atomically when the run is over.
//!
//! This reporter keeps every result (through the engine's
//! [`ResultsCollector`]) because the format lists them all. It is
//! pretty-printed: people open it as often as tools do, and `jq` reads both.

use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use agent33_parallel::{Event, ExecutionResults, ResultsCollector};

use crate::Reporter;
use crate::atomic::AtomicFile;
use crate::error::{Context as _, ReportError};

/// Writes [`ExecutionResults`] as JSON to a path.
#[derive(Debug)]
pub struct JsonReporter {
    path: PathBuf,
    file: Option<AtomicFile>,
    collector: ResultsCollector,
}

impl JsonReporter {
    /// Prepares the report at `path`: creates missing parent folders and the
    /// temporary file now, so a path that cannot be written fails before the
    /// run. The report replaces `path` only when complete.
    ///
    /// # Errors
    ///
    /// When the folder or the temporary file cannot be created.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, ReportError> {
        let path = path.as_ref().to_owned();
        let file = AtomicFile::create(&path).context(|| target(&path))?;
        Ok(Self {
            path,
            file: Some(file),
            collector: ResultsCollector::new(),
        })
    }
}

fn target(path: &Path) -> String {
    format!("the JSON report `{}`", path.display())
}

/// Serialises `results` as the report's JSON (pretty, with a final newline).
///
/// # Errors
///
/// When `out` cannot be written.
pub(crate) fn write_results(
    results: &ExecutionResults,
    out: impl std::io::Write,
) -> std::io::Result<()> {
    let mut out = BufWriter::new(out);
    serde_json::to_writer_pretty(&mut out, results)?;
    out.write_all(b"\n")?;
    out.flush()
}

impl Reporter for JsonReporter {
    fn on_event(&mut self, event: &Event) -> Result<(), ReportError> {
        self.collector.observe(event);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ReportError> {
        let Some(mut file) = self.file.take() else {
            return Ok(());
        };
        let results = std::mem::take(&mut self.collector).finish();
        write_results(&results, file.file())
            .and_then(|()| file.commit())
            .context(|| target(&self.path))
    }
}
