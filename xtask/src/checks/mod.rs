//! The audit's checks. The cheap ones (layering, module circles, sources,
//! re-exports) are plain functions of the workspace root, also run as
//! `#[test]`s.

pub mod circles;
pub mod commands;
mod finding;
pub mod layering;
pub mod publishing;
pub mod reexports;
pub mod sources;

#[cfg(test)]
mod bites;

use std::path::Path;

pub use finding::{Finding, Outcome};

/// `cargo doc` with warnings denied, plus the file-level rules: READMEs of
/// substance, a `//!` line opening every file, and file sizes.
pub fn docs_and_size(root: &Path) -> Outcome {
    let mut outcome = sources::files(root);
    outcome.failures.extend(commands::doc(root));
    outcome
}
