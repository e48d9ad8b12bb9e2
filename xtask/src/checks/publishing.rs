//! Check 9, ready for the registry: every published package carries both
//! licence texts and a README with a Rust example, no normal dependency
//! needs a newer Rust than the workspace declares, and `cargo publish
//! --dry-run` packages and verifies every crate without a warning.

use std::{collections::BTreeSet, path::Path};

use cargo_metadata::{DependencyKind, Metadata, MetadataCommand, Package};

use super::{Finding, Outcome, commands};
use crate::workspace::relative;

/// The licence texts every published package must include.
pub const LICENCES: [&str; 2] = ["LICENSE-MIT", "LICENSE-APACHE"];

/// Runs every part of the check; `dry_run` adds the (slow) `cargo publish
/// --dry-run`.
pub fn check(root: &Path, dry_run: bool) -> Outcome {
    let metadata = match MetadataCommand::new()
        .manifest_path(root.join("Cargo.toml"))
        .exec()
    {
        Ok(metadata) => metadata,
        Err(error) => return Outcome::failing(vec![Finding::new("Cargo.toml", error.to_string())]),
    };
    let mut failures = rust_versions(&metadata);
    failures.extend(package_files(&metadata));
    if dry_run && failures.is_empty() {
        failures.extend(publish_dry_run(root, &metadata));
    }
    Outcome::failing(failures)
}

/// The workspace members that are published (not `publish = false`).
fn published(metadata: &Metadata) -> Vec<&Package> {
    metadata
        .workspace_packages()
        .into_iter()
        .filter(|package| package.publish.as_ref().is_none_or(|to| !to.is_empty()))
        .collect()
}

/// `(major, minor, patch)` of a `rust-version`.
fn version(text: &str) -> (u64, u64, u64) {
    let mut parts = text.split('.').map(|part| part.parse().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

/// A normal dependency (of a published package, at any depth) that
/// declares a `rust-version` above the workspace's: the declared MSRV would
/// be false, as older toolchains cannot build it.
pub fn rust_versions(metadata: &Metadata) -> Vec<Finding> {
    let root = metadata.workspace_root.as_std_path();
    let packages = published(metadata);
    let Some(ours) = packages.iter().find_map(|p| p.rust_version.clone()) else {
        return vec![Finding::new("Cargo.toml", "no `rust-version` declared")];
    };
    let ours_text = ours.to_string();
    let Some(resolve) = &metadata.resolve else {
        return Vec::new();
    };
    let mut pending: Vec<&cargo_metadata::PackageId> = packages.iter().map(|p| &p.id).collect();
    let mut seen: BTreeSet<&cargo_metadata::PackageId> = pending.iter().copied().collect();
    let mut findings = Vec::new();
    while let Some(id) = pending.pop() {
        let Some(node) = resolve.nodes.iter().find(|node| &node.id == id) else {
            continue;
        };
        for dep in &node.deps {
            let normal = dep
                .dep_kinds
                .iter()
                .any(|k| k.kind == DependencyKind::Normal);
            if !normal || !seen.insert(&dep.pkg) {
                continue;
            }
            pending.push(&dep.pkg);
            let package = &metadata[&dep.pkg];
            if let Some(theirs) = &package.rust_version
                && version(&theirs.to_string()) > version(&ours_text)
            {
                findings.push(Finding::new(
                    relative(root, &root.join("Cargo.lock")),
                    format!(
                        "`{} {}` needs Rust {theirs}, above the workspace's rust-version {ours_text}: pin an older version or declare the truth",
                        package.name, package.version
                    ),
                ));
            }
        }
    }
    findings
}

/// Licence texts and a README with a Rust example in every published package.
pub fn package_files(metadata: &Metadata) -> Vec<Finding> {
    let root = metadata.workspace_root.as_std_path();
    let mut findings = Vec::new();
    for package in published(metadata) {
        let Some(dir) = package.manifest_path.parent() else {
            continue;
        };
        let dir = dir.as_std_path();
        for licence in LICENCES {
            if !dir.join(licence).is_file() {
                findings.push(Finding::new(
                    relative(root, &dir.join(licence)),
                    format!("`{}` does not include {licence}", package.name),
                ));
            }
        }
        let readme = dir.join("README.md");
        let text = std::fs::read_to_string(&readme).unwrap_or_default();
        if !text
            .lines()
            .any(|line| line.trim_start().starts_with("```rust"))
        {
            findings.push(Finding::new(
                relative(root, &readme),
                format!(
                    "`{}`'s README (its registry page) has no ```rust example",
                    package.name
                ),
            ));
        }
    }
    findings
}

/// Removes what earlier dry runs unpacked of this workspace's packages.
fn forget_unpacked(metadata: &Metadata) {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
    let Some(Ok(registries)) =
        home.map(|home| std::fs::read_dir(home.join("registry").join("src")))
    else {
        return;
    };
    for registry in registries.flatten() {
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        for package in published(metadata) {
            let unpacked = format!("{}-{}", package.name, package.version);
            let _ = std::fs::remove_dir_all(registry.path().join(unpacked));
        }
    }
}

/// `cargo publish --workspace --dry-run`: packages every crate against a
/// local registry and builds it; any warning fails.
///
/// Cargo takes a registry package as immutable: with the version
/// unchanged, a dry run would verify the facade against the drivers an
/// earlier dry run unpacked (into its home's `registry/src/-HASH/`, one
/// `-HASH` per local registry) and built (a stale API: a false failure or
/// a false pass). So it builds in a target directory of its own, and both
/// copies of this workspace's packages go first (only under local
/// registries, whose directory names start with `-`; never crates.io's).
fn publish_dry_run(root: &Path, metadata: &Metadata) -> Vec<Finding> {
    forget_unpacked(metadata);
    let target = metadata.target_directory.join("publish-dry-run");
    let mut clean = vec!["clean", "--target-dir", target.as_str()];
    for package in published(metadata) {
        clean.extend(["-p", package.name.as_str()]);
    }
    if let Err(finding) = commands::cargo(root, &clean, &[]) {
        return vec![finding];
    }
    let args = [
        "publish",
        "--workspace",
        "--dry-run",
        "--allow-dirty",
        "--exclude",
        "xtask",
        "--target-dir",
        target.as_str(),
    ];
    let command = format!("cargo {}", args.join(" "));
    match commands::cargo(root, &args, &[]) {
        Err(finding) => vec![finding],
        Ok(ran) => {
            let mut findings: Vec<Finding> = ran
                .text
                .lines()
                .filter(|line| {
                    (line.starts_with("warning")
                        && !line.contains("aborting upload due to dry run"))
                        || line.starts_with("error")
                })
                .map(|line| Finding::new(&command, line))
                .collect();
            if !ran.success && findings.is_empty() {
                findings.push(Finding::new(&command, "failed"));
            }
            findings
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_packages_are_ready() {
        let outcome = check(&crate::workspace::default_root(), false);
        assert_eq!(outcome.failures, Vec::new());
    }
}
