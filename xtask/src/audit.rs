//! `cargo xtask audit`: runs the checks and prints one line per check.

use std::path::Path;

use crate::checks::{self, Outcome};

/// A check: the workspace root in, an outcome out.
type Check = fn(&Path) -> Outcome;

/// Runs every check on the workspace at `root`; `true` when all pass.
pub fn run(root: &Path) -> bool {
    let all: [(&str, Check); 10] = [
        ("format", checks::commands::format),
        ("lints", checks::commands::lints),
        ("features", checks::commands::features),
        ("layering", checks::layering::check),
        ("unsafe confinement", checks::sources::unsafe_confinement),
        ("re-exports", checks::reexports::check),
        ("docs and size", checks::docs_and_size),
        ("dependency policy", checks::commands::deny),
        ("ready to publish", |root| {
            checks::publishing::check(root, true)
        }),
        ("module circles", checks::circles::check),
    ];
    let mut passed = true;
    for (name, check) in all {
        let outcome = check(root);
        let verdict = if outcome.failures.is_empty() {
            "pass"
        } else {
            "FAIL"
        };
        let note = if outcome.warnings.is_empty() {
            String::new()
        } else {
            format!(" ({} warning(s))", outcome.warnings.len())
        };
        println!("{verdict:4}  {name}{note}");
        for (kind, findings) in [("error", &outcome.failures), ("warning", &outcome.warnings)] {
            for finding in findings {
                println!("      {kind}: {}: {}", finding.location, finding.message);
            }
        }
        passed &= outcome.failures.is_empty();
    }
    passed
}
