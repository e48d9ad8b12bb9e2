//! Proof that the audit bites: each test copies the workspace, injects one
//! violation, and expects the check that owns it to fail, saying where.

use std::{
    fs,
    path::{Path, PathBuf},
};

use super::Finding;
use crate::{
    checks::{circles, commands, layering, publishing, reexports, sources},
    workspace::default_root,
};

/// A throwaway copy of the workspace (sources and manifests, no `target`).
struct Scratch {
    dir: tempfile::TempDir,
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap().flatten() {
        let name = entry.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        let (source, target) = (entry.path(), to.join(&name));
        if source.is_dir() {
            copy_tree(&source, &target);
        } else {
            fs::copy(&source, &target).unwrap();
        }
    }
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&default_root(), dir.path());
        Self { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root().join(relative)
    }

    fn edit(&self, relative: &str, change: impl FnOnce(String) -> String) {
        let path = self.path(relative);
        let before = fs::read_to_string(&path).unwrap();
        let after = change(before.clone());
        assert_ne!(
            before, after,
            "the injection into {relative} changed nothing"
        );
        fs::write(path, after).unwrap();
    }
}

fn mentions(findings: &[Finding], location: &str, message: &str) -> bool {
    findings
        .iter()
        .any(|f| f.location.starts_with(location) && f.message.contains(message))
}

#[test]
fn unsafe_in_storage_core_is_caught() {
    let scratch = Scratch::new();
    scratch.edit("crates/storage-core/src/lib.rs", |text| {
        text.replace("#![forbid(unsafe_code)]\n", "")
            + "\n/// Injected.\npub fn injected() -> u8 {\n    // SAFETY: injected\n    unsafe { *std::ptr::null::<u8>() }\n}\n"
    });
    let failures = sources::unsafe_confinement(scratch.root()).failures;
    assert!(
        mentions(
            &failures,
            "crates/storage-core/src/lib.rs:1",
            "forbid(unsafe_code)"
        ),
        "{failures:?}"
    );
}

#[test]
fn storage_core_depending_on_memmap2_is_caught() {
    let scratch = Scratch::new();
    scratch.edit("crates/storage-core/Cargo.toml", |text| {
        text.replace(
            "[dependencies]\n",
            "[dependencies]\nmemmap2.workspace = true\n",
        )
    });
    let failures = layering::check(scratch.root()).failures;
    assert!(
        mentions(&failures, "crates/storage-core/Cargo.toml", "`memmap2`"),
        "{failures:?}"
    );
}

#[test]
fn storage_core_depending_on_a_driver_is_caught() {
    let scratch = Scratch::new();
    scratch.edit("crates/storage-core/Cargo.toml", |text| {
        text.replace(
            "[dependencies]\n",
            "[dependencies]\nstorage-mem.workspace = true\n",
        )
    });
    // A cycle: cargo metadata itself refuses, and the check fails with it.
    let failures = layering::check(scratch.root()).failures;
    assert!(!failures.is_empty());
}

#[test]
fn the_cache_depending_on_the_memory_driver_is_caught() {
    let scratch = Scratch::new();
    scratch.edit("crates/storage-cache/Cargo.toml", |text| {
        text.replace(
            "[dev-dependencies]\n",
            "[dev-dependencies]\nstorage-mem.workspace = true\n",
        )
    });
    let failures = layering::check(scratch.root()).failures;
    assert!(
        mentions(
            &failures,
            "crates/storage-cache/Cargo.toml",
            "depends on `storage-mem`"
        ),
        "{failures:?}"
    );
}

#[test]
fn an_import_circle_in_the_cache_is_caught() {
    let scratch = Scratch::new();
    // `shared` reads markers: a marker naming `shared` closes a circle.
    scratch.edit("crates/storage-cache/src/marker.rs", |text| {
        text + "\n/// Injected.\npub(crate) fn injected(shared: &crate::shared::Shared) -> &Path {\n    &shared.dir\n}\n"
    });
    let failures = circles::check(scratch.root()).failures;
    assert!(
        mentions(
            &failures,
            "crates/storage-cache/src/",
            "marker → shared (crates/storage-cache/src/marker.rs:"
        ),
        "{failures:?}"
    );
    assert!(
        mentions(&failures, "crates/storage-cache/src/", "shared → marker"),
        "{failures:?}"
    );
}

#[test]
fn the_facade_depending_on_the_cache_unconditionally_is_caught() {
    let scratch = Scratch::new();
    scratch.edit("crates/storage/Cargo.toml", |text| {
        text.replace(
            "storage-cache = { workspace = true, optional = true }",
            "storage-cache = { workspace = true }",
        )
        .replace("\"dep:storage-cache\", ", "")
    });
    let failures = layering::check(scratch.root()).failures;
    assert!(
        mentions(&failures, "crates/storage/Cargo.toml", "`storage-cache`"),
        "{failures:?}"
    );
}

#[test]
fn a_driver_depending_on_another_driver_for_its_benches_is_caught() {
    let scratch = Scratch::new();
    scratch.edit("crates/storage-mmap/Cargo.toml", |text| {
        text.replace(
            "[dev-dependencies]\n",
            "[dev-dependencies]\nstorage-mem.workspace = true\n",
        )
    });
    let failures = layering::check(scratch.root()).failures;
    assert!(
        mentions(
            &failures,
            "crates/storage-mmap/Cargo.toml",
            "depends on `storage-mem`"
        ),
        "{failures:?}"
    );
}

#[test]
fn a_new_driver_is_found_from_its_manifest() {
    let scratch = Scratch::new();
    // A driver that forgets its place: the audit knows it by its metadata.
    scratch.edit("crates/storage-mem/Cargo.toml", |text| {
        text.replace("facade-feature = \"mem\"", "facade-feature = \"memory\"")
    });
    let failures = layering::check(scratch.root()).failures;
    assert!(
        mentions(&failures, "crates/storage/Cargo.toml", "feature `memory`"),
        "{failures:?}"
    );
}

#[test]
fn a_driver_required_by_the_facade_without_its_feature_is_caught() {
    let scratch = Scratch::new();
    scratch.edit("crates/storage/Cargo.toml", |text| {
        text.replace(
            "storage-mem = { workspace = true, optional = true }",
            "storage-mem = { workspace = true }",
        )
        .replace(
            "mem = [\"dep:storage-mem\", \"_driver\"]",
            "mem = [\"_driver\"]",
        )
    });
    let failures = layering::check(scratch.root()).failures;
    assert!(
        mentions(&failures, "crates/storage/Cargo.toml", "unconditionally"),
        "{failures:?}"
    );
}

#[test]
fn an_undocumented_double_reexport_is_caught() {
    let scratch = Scratch::new();
    scratch.edit("crates/storage/src/lib.rs", |text| {
        text + "\n/// Injected.\npub mod again {\n    pub use storage_core::StorageError;\n}\n"
    });
    let failures = reexports::check(scratch.root()).failures;
    assert!(
        mentions(
            &failures,
            "crates/storage/src/lib.rs:",
            "storage::again::StorageError"
        ),
        "{failures:?}"
    );
}

#[test]
fn removing_the_documented_exceptions_reports_the_options_types() {
    let scratch = Scratch::new();
    scratch.edit("crates/storage/README.md", |text| {
        text.replace("## Audit exceptions", "## Former exceptions")
    });
    let failures = reexports::check(scratch.root()).failures;
    for name in ["MmapOpenOptions", "MemOptions"] {
        assert!(
            mentions(
                &failures,
                "crates/storage/src/lib.rs:",
                &format!("`storage::{name}` is also reachable")
            ),
            "{failures:?}"
        );
    }
}

#[test]
fn a_driver_item_the_facade_does_not_offer_is_caught() {
    let scratch = Scratch::new();
    scratch.edit("crates/storage-mem/src/lib.rs", |text| {
        text + "\n/// Injected.\npub struct Hidden;\n"
    });
    let failures = reexports::check(scratch.root()).failures;
    assert!(
        mentions(
            &failures,
            "crates/storage-mem/src/lib.rs:",
            "storage_mem::Hidden"
        ),
        "{failures:?}"
    );
}

#[test]
fn a_file_without_module_docs_and_a_stub_readme_are_caught() {
    let scratch = Scratch::new();
    scratch.edit("crates/storage-mem/src/lib.rs", |text| {
        text.replacen("//!", "//", 1)
    });
    fs::write(
        scratch.path("crates/storage-core/README.md"),
        "# storage-core\nTODO\n",
    )
    .unwrap();
    let failures = sources::files(scratch.root()).failures;
    assert!(
        mentions(&failures, "crates/storage-mem/src/lib.rs:1", "//!"),
        "{failures:?}"
    );
    assert!(
        mentions(&failures, "crates/storage-core/README.md", "real content"),
        "{failures:?}"
    );
}

#[test]
fn an_oversized_file_warns_then_fails() {
    let scratch = Scratch::new();
    let filler = |lines: usize| "//! Filler.\n".to_string() + &"const _: () = ();\n".repeat(lines);
    fs::write(scratch.path("crates/storage-mem/src/big.rs"), filler(500)).unwrap();
    let outcome = sources::files(scratch.root());
    assert!(mentions(
        &outcome.warnings,
        "crates/storage-mem/src/big.rs",
        "over 400"
    ));
    fs::write(scratch.path("crates/storage-mem/src/big.rs"), filler(1200)).unwrap();
    let outcome = sources::files(scratch.root());
    assert!(mentions(
        &outcome.failures,
        "crates/storage-mem/src/big.rs",
        "over 1000"
    ));
}

#[test]
fn a_formatting_error_is_caught() {
    let scratch = Scratch::new();
    scratch.edit("crates/storage-mem/src/lib.rs", |text| {
        text.replace(
            "fn storage_len(&self) -> u64 {",
            "fn storage_len(&self)->u64{",
        )
    });
    let failures = commands::format(scratch.root()).failures;
    assert!(
        mentions(&failures, "crates/storage-mem/src/lib.rs:", "not formatted"),
        "{failures:?}"
    );
}

#[test]
fn a_dependency_needing_a_newer_rust_than_declared_is_caught() {
    let scratch = Scratch::new();
    // Declaring an older rust-version makes today's dependencies too new.
    scratch.edit("Cargo.toml", |text| {
        text.replace("rust-version = \"1.89\"", "rust-version = \"1.85\"")
    });
    let failures = publishing::check(scratch.root(), false).failures;
    assert!(
        mentions(
            &failures,
            "Cargo.lock",
            "above the workspace's rust-version 1.85"
        ),
        "{failures:?}"
    );
}

#[test]
fn a_package_without_a_licence_text_is_caught() {
    let scratch = Scratch::new();
    fs::remove_file(scratch.path("crates/storage-mem/LICENSE-APACHE")).unwrap();
    let failures = publishing::check(scratch.root(), false).failures;
    assert!(
        mentions(
            &failures,
            "crates/storage-mem/LICENSE-APACHE",
            "does not include LICENSE-APACHE"
        ),
        "{failures:?}"
    );
}

#[test]
fn a_package_readme_without_an_example_is_caught() {
    let scratch = Scratch::new();
    scratch.edit("crates/storage-mmap/README.md", |text| {
        text.replace("```rust", "```text")
    });
    let failures = publishing::check(scratch.root(), false).failures;
    assert!(
        mentions(
            &failures,
            "crates/storage-mmap/README.md",
            "no ```rust example"
        ),
        "{failures:?}"
    );
}
