//! 4. Crate layering, read from `cargo metadata`.

use std::{
    collections::{BTreeSet, HashMap},
    path::Path,
};

use cargo_metadata::{DependencyKind, Metadata, MetadataCommand, Package, PackageId};

use super::{Finding, Outcome};

const CORE: &str = "storage-core";
const FACADE: &str = "stream-storage";
/// The cache crate: above the mmap driver, below the facade.
const CACHE: &str = "storage-cache";
/// The workspace crates the cache may depend on (any kind of dependency).
const CACHE_MAY_USE: [&str; 2] = [CORE, "storage-mmap"];
/// The facade feature that must be the only way to the cache.
const CACHE_FEATURE: &str = "cache";
/// The downloader: on the core's public API only, reached from the facade
/// through its `fetch` feature, depended on by nothing else.
const FETCH: &str = "storage-fetch";
/// The facade feature that must be the only way to the downloader.
const FETCH_FEATURE: &str = "fetch";
/// Crates the core must not pull in, even indirectly.
const FORBIDDEN_IN_CORE: [&str; 2] = ["memmap2", "tempfile"];

/// Checks the dependency graph of the workspace at `root`.
pub fn check(root: &Path) -> Outcome {
    let metadata = match MetadataCommand::new()
        .manifest_path(root.join("Cargo.toml"))
        .exec()
    {
        Ok(metadata) => metadata,
        Err(error) => return Outcome::failing(vec![Finding::new("Cargo.toml", error.to_string())]),
    };
    Outcome::failing(findings(&metadata))
}

fn manifest(package: &Package, root: &Path) -> String {
    crate::workspace::relative(root, package.manifest_path.as_std_path())
}

/// The layering violations in `metadata`.
pub fn findings(metadata: &Metadata) -> Vec<Finding> {
    let root = metadata.workspace_root.as_std_path();
    let members: Vec<&Package> = metadata.workspace_packages();
    let member_names: BTreeSet<&str> = members.iter().map(|p| p.name.as_str()).collect();
    let by_name: HashMap<&str, &Package> = members.iter().map(|p| (p.name.as_str(), *p)).collect();
    let mut findings = Vec::new();

    // Nothing depends on the facade.
    for package in &members {
        if package.dependencies.iter().any(|dep| dep.name == FACADE) {
            findings.push(Finding::new(
                manifest(package, root),
                format!(
                    "`{}` depends on the facade `{FACADE}`; nothing may",
                    package.name
                ),
            ));
        }
    }

    if let Some(core) = by_name.get(CORE) {
        // The core reaches no workspace crate and none of the forbidden
        // crates, directly or through others.
        // Its optional dependencies are the `testing` feature's, for the
        // tests of drivers: not what a user of the core compiles.
        let testing_only: BTreeSet<&str> = core
            .dependencies
            .iter()
            .filter(|dep| dep.optional)
            .map(|dep| dep.name.as_str())
            .collect();
        for name in normal_closure(metadata, &core.id, &testing_only) {
            if member_names.contains(name.as_str()) || FORBIDDEN_IN_CORE.contains(&name.as_str()) {
                findings.push(Finding::new(
                    manifest(core, root),
                    format!("`{CORE}` depends (directly or not) on `{name}`"),
                ));
            }
        }
    } else {
        findings.push(Finding::new("Cargo.toml", format!("no `{CORE}` member")));
    }

    // Each driver (declared in its manifest, see `workspace::drivers_in`)
    // and the facade feature that must be the only way to it.
    let drivers = crate::workspace::drivers_in(metadata);
    if drivers.is_empty() {
        findings.push(Finding::new(
            "Cargo.toml",
            "no driver declares `[package.metadata.storage] facade-feature`",
        ));
    }
    for crate::workspace::Driver { name, feature } in &drivers {
        let (driver, feature) = (name.as_str(), feature.as_str());
        let Some(package) = by_name.get(driver) else {
            continue;
        };
        // Not even for tests or benches: what needs two drivers lives in
        // the facade.
        for dep in &package.dependencies {
            let internal = member_names.contains(dep.name.as_str());
            if internal && dep.name != CORE {
                findings.push(Finding::new(
                    manifest(package, root),
                    format!(
                        "driver `{driver}` depends on `{}`; drivers depend on `{CORE}` only",
                        dep.name
                    ),
                ));
            }
        }
        if let Some(facade) = by_name.get(FACADE) {
            findings.extend(facade_reaches_driver_by_feature(
                facade, driver, feature, root,
            ));
        }
    }
    findings.extend(cache_findings(&by_name, &member_names, root));
    findings.extend(fetch_findings(&members, &by_name, &member_names, root));
    findings
}

/// The downloader depends (outside its tests) on the core only; the facade
/// reaches it only through its `fetch` feature, and no other crate does.
fn fetch_findings(
    members: &[&Package],
    by_name: &HashMap<&str, &Package>,
    member_names: &BTreeSet<&str>,
    root: &Path,
) -> Vec<Finding> {
    let Some(fetch) = by_name.get(FETCH) else {
        return Vec::new();
    };
    let mut findings = Vec::new();
    for dep in &fetch.dependencies {
        let normal = dep.kind == DependencyKind::Normal;
        if normal && member_names.contains(dep.name.as_str()) && dep.name != CORE {
            findings.push(Finding::new(
                manifest(fetch, root),
                format!(
                    "`{FETCH}` depends on `{}`; it uses `{CORE}`'s public API only",
                    dep.name
                ),
            ));
        }
    }
    for package in members {
        let name = package.name.as_str();
        if name != FACADE && package.dependencies.iter().any(|dep| dep.name == FETCH) {
            findings.push(Finding::new(
                manifest(package, root),
                format!("`{name}` depends on `{FETCH}`; only the facade may"),
            ));
        }
    }
    if let Some(facade) = by_name.get(FACADE) {
        findings.extend(facade_reaches_driver_by_feature(
            facade,
            FETCH,
            FETCH_FEATURE,
            root,
        ));
    }
    findings
}

/// The cache depends on the core and the mmap driver only, and the facade
/// reaches it only through its `cache` feature. (No driver may depend on
/// it: drivers depend on the core only, checked above.)
fn cache_findings(
    by_name: &HashMap<&str, &Package>,
    member_names: &BTreeSet<&str>,
    root: &Path,
) -> Vec<Finding> {
    let Some(cache) = by_name.get(CACHE) else {
        return Vec::new();
    };
    let mut findings = Vec::new();
    for dep in &cache.dependencies {
        if member_names.contains(dep.name.as_str()) && !CACHE_MAY_USE.contains(&dep.name.as_str()) {
            findings.push(Finding::new(
                manifest(cache, root),
                format!(
                    "`{CACHE}` depends on `{}`; it may depend on {CACHE_MAY_USE:?} only",
                    dep.name
                ),
            ));
        }
    }
    if let Some(facade) = by_name.get(FACADE) {
        findings.extend(facade_reaches_driver_by_feature(
            facade,
            CACHE,
            CACHE_FEATURE,
            root,
        ));
    }
    findings
}

/// The facade depends on `driver` only optionally, enabled by `feature`.
fn facade_reaches_driver_by_feature(
    facade: &Package,
    driver: &str,
    feature: &str,
    root: &Path,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let location = manifest(facade, root);
    for dep in facade.dependencies.iter().filter(|dep| dep.name == driver) {
        if dep.kind == DependencyKind::Normal && !dep.optional {
            findings.push(Finding::new(
                &location,
                format!("`{FACADE}` depends on `{driver}` unconditionally; it must be optional, behind feature `{feature}`"),
            ));
        }
    }
    let enabling = format!("dep:{driver}");
    let enabled_by: Vec<&String> = facade
        .features
        .iter()
        .filter(|(_, enables)| enables.iter().any(|e| *e == enabling || *e == driver))
        .map(|(name, _)| name)
        .collect();
    if enabled_by.iter().any(|name| *name != feature)
        || !enabled_by.iter().any(|name| *name == feature)
    {
        findings.push(Finding::new(
            &location,
            format!("`{driver}` must be enabled by feature `{feature}` only (enabled by: {enabled_by:?})"),
        ));
    }
    findings
}

/// Names of every package reachable from `id` through normal dependencies,
/// leaving out `id`'s direct dependencies named in `skip`.
fn normal_closure(metadata: &Metadata, id: &PackageId, skip: &BTreeSet<&str>) -> BTreeSet<String> {
    let Some(resolve) = &metadata.resolve else {
        return BTreeSet::new();
    };
    let nodes: HashMap<&PackageId, _> = resolve.nodes.iter().map(|n| (&n.id, n)).collect();
    let mut seen = BTreeSet::new();
    let mut names = BTreeSet::new();
    let mut pending = vec![id];
    while let Some(current) = pending.pop() {
        let Some(node) = nodes.get(current) else {
            continue;
        };
        for dep in &node.deps {
            let normal = dep
                .dep_kinds
                .iter()
                .any(|kind| kind.kind == DependencyKind::Normal);
            let skipped = current == id && skip.contains(metadata[&dep.pkg].name.as_str());
            if normal && !skipped && seen.insert(&dep.pkg) {
                names.insert(metadata[&dep.pkg].name.to_string());
                pending.push(&dep.pkg);
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_is_layered() {
        let outcome = check(&crate::workspace::default_root());
        assert_eq!(outcome.failures, Vec::new());
    }
}
