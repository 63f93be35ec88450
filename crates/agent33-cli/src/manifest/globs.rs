//! `artifacts:` globs: expanded relative to the manifest's folder, as a
//! shell would (sorted, `*` within one folder, hidden files only when
//! asked), plain names kept as written.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Result, UsageError};
use crate::yaml::Seg;

use super::{Manifest, TaskEntry, nth};

impl Manifest {
    /// The sorted, de-duplicated files matching one entry's globs, as paths
    /// relative to the manifest's folder (absolute patterns stay absolute),
    /// with its plain names (no `*`, `?` or `[`) as they are written.
    pub(super) fn expand(&self, i: usize, e: &TaskEntry, globs: &[String]) -> Result<Vec<Vec<u8>>> {
        let options = glob::MatchOptions {
            case_sensitive: true,
            // Like a shell: `*` stays within one folder, and only an
            // explicit `.` matches hidden files.
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        let prefix: Option<String> = if self.dir == Path::new(".") {
            None
        } else {
            match self.dir.to_str() {
                Some(d) => Some(glob::Pattern::escape(d)),
                None => {
                    return Err(UsageError::new(format_args!(
                        "{}: the manifest's folder is not valid UTF-8, so `artifacts:` globs cannot be used",
                        self.file
                    )));
                }
            }
        };
        let mut out: Vec<Vec<u8>> = Vec::new();
        for (j, pattern) in globs.iter().enumerate() {
            let seg = if e.globs_as_text {
                vec![Seg::Key("tasks"), Seg::Index(i), Seg::Key("artifacts")]
            } else {
                vec![
                    Seg::Key("tasks"),
                    Seg::Index(i),
                    Seg::Key("artifacts"),
                    Seg::Index(j),
                ]
            };
            // A name with nothing to match is an artifact as written, as
            // with `artifact:`: it need not be an existing file.
            if !pattern.contains(['*', '?', '[']) {
                out.push(pattern.as_bytes().to_vec());
                continue;
            }
            let full = match &prefix {
                Some(p) if !Path::new(pattern).is_absolute() => format!("{p}/{pattern}"),
                _ => pattern.clone(),
            };
            let paths = glob::glob_with(&full, options).map_err(|err| {
                self.error_at(
                    &seg,
                    false,
                    format_args!("invalid glob `{pattern}` in task {}: {}", nth(i), err.msg),
                )
            })?;
            let before = out.len();
            for p in paths {
                let p = p.map_err(|err| {
                    self.error_at(
                        &seg,
                        false,
                        format_args!(
                            "glob `{pattern}` in task {}: cannot read {}: {}",
                            nth(i),
                            err.path().display(),
                            err.error()
                        ),
                    )
                })?;
                // One task per file: a folder is no artifact, a link to a
                // file is one (`is_file` follows links).
                if !p.is_file() {
                    continue;
                }
                let rel = match &prefix {
                    Some(_) => p
                        .strip_prefix(&self.dir)
                        .map(Path::to_path_buf)
                        .unwrap_or(p),
                    None => p,
                };
                out.push(rel.as_os_str().as_bytes().to_vec());
            }
            if out.len() == before {
                return Err(self.error_at(
                    &seg,
                    false,
                    format_args!(
                        "glob `{pattern}` in task {} matches nothing (relative to {})",
                        nth(i),
                        self.dir.display()
                    ),
                ));
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}
