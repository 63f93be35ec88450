//! Plans: validation of declared dependencies and dependency levels.
