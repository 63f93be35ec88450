//! The manifest's `execution:` block: the settings table's keys, read
//! through the table ([`Layer::from_execution`]), and the `mode:`
//! shorthand, which no row of the table can say.

use crate::error::Result;
use crate::scalar::Scalar;
use crate::settings::{Layer, RawExecution};
use crate::values::{Kind, Source, Sourced, invalid_value};
use crate::yaml::Seg;

use super::Manifest;

impl Manifest {
    /// The `execution:` block as a settings layer, `mode:` applied.
    pub(super) fn execution_layer(&self, raw: &RawExecution) -> Result<Layer> {
        let at = |key: &str| {
            Source::Manifest(self.place(&[Seg::Key("execution"), Seg::Key(key)], false))
        };
        let mut l = Layer::from_execution(raw, &at)?;
        if let Some(mode) = &raw.mode {
            for (key, set) in [
                ("parallel", raw.parallel.is_some()),
                ("respect_dependencies", raw.respect_dependencies.is_some()),
            ] {
                if set {
                    return Err(self.error_at(
                        &[Seg::Key("execution"), Seg::Key("mode")],
                        true,
                        format_args!(
                            "`mode` cannot be combined with `{key}` in one manifest \
                             (mode is shorthand for parallel and respect_dependencies; keep one)"
                        ),
                    ));
                }
            }
            let source = at("mode");
            let (parallel, respect) = match mode {
                Scalar::Str(s) if s == "sequential" => (false, None),
                Scalar::Str(s) if s == "parallel" => (true, None),
                Scalar::Str(s) if s == "dependency-aware" => (true, Some(true)),
                other => {
                    return Err(invalid_value(
                        "mode",
                        &other.to_string(),
                        &source,
                        Kind::Mode,
                    ));
                }
            };
            l.parallel = Some(Sourced::new(parallel, source.clone()));
            l.respect_dependencies = respect.map(|r| Sourced::new(r, source));
        }
        Ok(l)
    }
}
