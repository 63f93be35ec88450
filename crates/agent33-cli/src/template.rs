//! Command templates: the process crate's, re-exported under the name the
//! CLI's modules (and users of this library) have always imported.

pub use agent33_process::template::*;
