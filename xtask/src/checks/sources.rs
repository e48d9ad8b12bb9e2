//! Checks on source files: `unsafe` confinement (5), and the file-level
//! rules of "docs and size" (7): READMEs, `//!` openers, file sizes.

use std::{fs, path::Path};

use super::{Finding, Outcome};
use crate::workspace::{self, relative};

/// The one crate allowed `unsafe`.
pub const UNSAFE_CRATE: &str = "storage-mmap";
/// Lines of non-test code above which a file is reported for review (a
/// warning: files follow concepts, and one concept is not split to get
/// under it).
pub const WARN_LINES: usize = 400;
/// Lines of non-test code above which a file fails the audit.
pub const FAIL_LINES: usize = 1000;
/// The least a README must hold to count as real content.
const README_MIN_CHARS: usize = 400;

/// Whether `file` carries the inner attribute `#![forbid(unsafe_code)]`.
fn forbids_unsafe(file: &syn::File) -> bool {
    file.attrs.iter().any(|attr| {
        matches!(attr.style, syn::AttrStyle::Inner(_))
            && attr.path().is_ident("forbid")
            && attr
                .parse_args_with(
                    syn::punctuated::Punctuated::<syn::Path, syn::Token![,]>::parse_terminated,
                )
                .is_ok_and(|lints| lints.iter().any(|lint| lint.is_ident("unsafe_code")))
    })
}

/// 5. Every library crate but [`UNSAFE_CRATE`] has `#![forbid(unsafe_code)]`.
pub fn unsafe_confinement(root: &Path) -> Outcome {
    let mut failures = Vec::new();
    for krate in workspace::crates(root) {
        let Some(lib) = krate.lib_rs() else { continue };
        if krate.name == UNSAFE_CRATE {
            continue;
        }
        let location = format!("{}:1", relative(root, &lib));
        match fs::read_to_string(&lib).map(|text| syn::parse_file(&text)) {
            Ok(Ok(file)) if forbids_unsafe(&file) => {}
            Ok(Ok(_)) => failures.push(Finding::new(
                location,
                format!(
                    "`{}` lacks #![forbid(unsafe_code)] (only `{UNSAFE_CRATE}` may use unsafe)",
                    krate.name
                ),
            )),
            Ok(Err(error)) => {
                failures.push(Finding::new(location, format!("cannot parse: {error}")));
            }
            Err(error) => failures.push(Finding::new(location, format!("cannot read: {error}"))),
        }
    }
    Outcome::failing(failures)
}

/// Lines of `text` before its first `#[cfg(test)]` (the non-test code).
fn non_test_lines(text: &str) -> usize {
    text.lines()
        .take_while(|line| line.trim() != "#[cfg(test)]")
        .count()
}

/// 7, file rules: each crate has a README of substance; every `.rs` file
/// opens with a `//!` line; non-test code over 400 lines warns, over 1000
/// fails (files under `tests/` are test code).
pub fn files(root: &Path) -> Outcome {
    let mut outcome = Outcome::default();
    for krate in workspace::crates(root) {
        let readme = krate.dir.join("README.md");
        let text = fs::read_to_string(&readme).unwrap_or_default();
        let substantial =
            text.trim().len() >= README_MIN_CHARS && text.lines().any(|l| l.starts_with('#'));
        if !substantial {
            outcome.failures.push(Finding::new(
                relative(root, &readme),
                format!("`{}` needs a README.md of real content (a heading and {README_MIN_CHARS}+ characters)", krate.name),
            ));
        }
        for file in workspace::rust_files(&krate.dir) {
            let location = relative(root, &file);
            let Ok(text) = fs::read_to_string(&file) else {
                outcome.failures.push(Finding::new(location, "cannot read"));
                continue;
            };
            if !text.starts_with("//!") {
                outcome.failures.push(Finding::new(
                    format!("{location}:1"),
                    "the file must open with a `//!` line saying what it holds",
                ));
            }
            let is_test = file
                .strip_prefix(&krate.dir)
                .is_ok_and(|rel| rel.starts_with("tests"));
            let lines = non_test_lines(&text);
            if is_test {
                continue;
            }
            if lines > FAIL_LINES {
                outcome.failures.push(Finding::new(
                    location,
                    format!("{lines} lines of non-test code (over {FAIL_LINES}): split it"),
                ));
            } else if lines > WARN_LINES {
                outcome.warnings.push(Finding::new(
                    location,
                    format!(
                        "{lines} lines of non-test code (over {WARN_LINES}): for review; \
                         a file that holds one concept stays whole"
                    ),
                ));
            }
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_mmap_crate_may_use_unsafe() {
        assert_eq!(
            unsafe_confinement(&workspace::default_root()).failures,
            Vec::new()
        );
    }

    #[test]
    fn files_have_docs_readmes_and_sane_sizes() {
        assert_eq!(files(&workspace::default_root()).failures, Vec::new());
    }

    #[test]
    fn forbid_is_recognised_among_other_lints() {
        let with = syn::parse_file("#![forbid(missing_docs, unsafe_code)]\n").unwrap();
        let without = syn::parse_file("#![deny(unsafe_code)]\n#![forbid(missing_docs)]\n").unwrap();
        assert!(forbids_unsafe(&with));
        assert!(!forbids_unsafe(&without));
    }

    #[test]
    fn test_modules_do_not_count_towards_size() {
        assert_eq!(non_test_lines("a\nb\n#[cfg(test)]\nmod tests {}\n"), 2);
    }
}
