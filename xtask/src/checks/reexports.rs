//! Check 6, the facade's public surface: every item reachable through one
//! public path, and every public item of the crates beneath it reachable
//! through it, at the root or in the crate's room.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use cargo_metadata::{DependencyKind, MetadataCommand};
use syn::{Item, UseTree, Visibility, spanned::Spanned};

use super::{Finding, Outcome};
use crate::workspace::{self, relative};

const FACADE_DIR: &str = "crates/storage";
const FACADE_PACKAGE: &str = "stream-storage";
/// The room of the crate the facade always depends on (the core).
const CORE_ROOM: &str = "driver";

/// A workspace crate the facade depends on: its public items must be
/// reachable at `storage::Name` or `storage::<room>::Name`.
#[derive(Clone, Debug)]
struct Lower {
    /// Its library name, e.g. `storage_mmap`.
    krate: String,
    /// Its directory.
    dir: PathBuf,
    /// The module of the facade that may hold its items besides the root:
    /// the facade feature that brings the crate in (`mmap` for
    /// `storage-mmap`), or `driver` for a dependency that is always on
    /// (`storage-core`).
    room: String,
}

/// The workspace crates the facade at `root` depends on, read from its
/// manifest: a new driver is found without a change here.
fn lower_crates(root: &Path) -> Result<Vec<Lower>, String> {
    let metadata = MetadataCommand::new()
        .manifest_path(root.join("Cargo.toml"))
        .no_deps()
        .exec()
        .map_err(|e| format!("cannot read the workspace: {e}"))?;
    let facade = metadata
        .workspace_packages()
        .into_iter()
        .find(|package| package.name.as_str() == FACADE_PACKAGE)
        .ok_or_else(|| format!("no `{FACADE_PACKAGE}` package"))?;
    let mut lower: Vec<Lower> = facade
        .dependencies
        .iter()
        .filter(|dep| dep.kind == DependencyKind::Normal)
        .filter_map(|dep| {
            let dir = dep.path.as_ref()?.as_std_path().to_path_buf();
            let enabled_by = format!("dep:{}", dep.name);
            let feature = facade
                .features
                .iter()
                .find(|(_, enables)| enables.contains(&enabled_by))
                .map(|(feature, _)| feature.clone());
            Some(Lower {
                krate: dep.name.replace('-', "_"),
                dir,
                room: feature.unwrap_or_else(|| CORE_ROOM.to_owned()),
            })
        })
        .collect();
    lower.sort_by(|a, b| a.krate.cmp(&b.krate));
    Ok(lower)
}

/// One public path of the facade and what it names.
#[derive(Clone, Debug)]
struct Export {
    /// The path a user writes, e.g. `storage::MmapOptions`.
    public: String,
    /// The item it names, e.g. `storage_mmap::MmapOptions`.
    source: String,
    /// Where the export is written.
    location: String,
}

fn last(path: &str) -> &str {
    path.rsplit("::").next().unwrap_or(path)
}

fn line_of(spanned: &impl Spanned) -> usize {
    spanned.span().start().line
}

fn parse(path: &Path) -> Result<syn::File, String> {
    let text = fs::read_to_string(path).map_err(|e| e.to_string())?;
    syn::parse_file(&text).map_err(|e| e.to_string())
}

/// The public names at the root of the crate in `dir` (items and `pub use`),
/// with their lines.
fn root_names(dir: &Path) -> Result<Vec<(String, usize)>, String> {
    let file = parse(&dir.join("src/lib.rs"))?;
    let mut names = Vec::new();
    for item in &file.items {
        if let Item::Use(item) = item {
            if matches!(item.vis, Visibility::Public(_)) {
                let mut leaves = Vec::new();
                flatten(&item.tree, "", &mut leaves);
                names.extend(leaves.into_iter().map(|(_, name)| (name, line_of(item))));
            }
        } else if let Some(name) = public_item_name(item) {
            names.push((name, line_of(item)));
        }
    }
    Ok(names)
}

fn public_item_name(item: &Item) -> Option<String> {
    let (vis, ident) = match item {
        Item::Struct(i) => (&i.vis, &i.ident),
        Item::Enum(i) => (&i.vis, &i.ident),
        Item::Trait(i) => (&i.vis, &i.ident),
        Item::Type(i) => (&i.vis, &i.ident),
        Item::Fn(i) => (&i.vis, &i.sig.ident),
        Item::Const(i) => (&i.vis, &i.ident),
        Item::Static(i) => (&i.vis, &i.ident),
        Item::Mod(i) => (&i.vis, &i.ident),
        _ => return None,
    };
    matches!(vis, Visibility::Public(_)).then(|| ident.to_string())
}

/// The leaves of a use tree: (full source path, name it is exported as).
fn flatten(tree: &UseTree, prefix: &str, out: &mut Vec<(String, String)>) {
    let join = |name: &str| {
        if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}::{name}")
        }
    };
    match tree {
        UseTree::Path(path) => flatten(&path.tree, &join(&path.ident.to_string()), out),
        UseTree::Name(name) => out.push((join(&name.ident.to_string()), name.ident.to_string())),
        UseTree::Rename(rename) => {
            out.push((join(&rename.ident.to_string()), rename.rename.to_string()));
        }
        UseTree::Glob(_) => out.push((join("*"), "*".to_string())),
        UseTree::Group(group) => {
            for tree in &group.items {
                flatten(tree, prefix, out);
            }
        }
    }
}

/// Collects the exports of the facade module `items` (public path `public`).
fn collect(
    root: &Path,
    lower: &[Lower],
    file: &Path,
    items: &[Item],
    public: &str,
    local_mods: &BTreeSet<String>,
    out: &mut Vec<Export>,
) -> Result<(), String> {
    let location = |line: usize| format!("{}:{line}", relative(root, file));
    for item in items {
        match item {
            Item::Use(item) if matches!(item.vis, Visibility::Public(_)) => {
                let mut leaves = Vec::new();
                flatten(&item.tree, "", &mut leaves);
                for (source, name) in leaves {
                    let first = source.split("::").next().unwrap_or_default();
                    let source = if ["crate", "self", "super"].contains(&first)
                        || local_mods.contains(first)
                    {
                        format!(
                            "storage::{}",
                            source
                                .trim_start_matches("crate::")
                                .trim_start_matches("self::")
                        )
                    } else {
                        source
                    };
                    if name == "*" {
                        let krate = source.trim_end_matches("::*");
                        for below in lower.iter().filter(|below| below.krate == krate) {
                            for (name, _) in root_names(&below.dir)? {
                                out.push(Export {
                                    public: format!("{public}::{name}"),
                                    source: format!("{krate}::{name}"),
                                    location: location(line_of(item)),
                                });
                            }
                        }
                    } else {
                        out.push(Export {
                            public: format!("{public}::{name}"),
                            source,
                            location: location(line_of(item)),
                        });
                    }
                }
            }
            Item::Mod(module) if matches!(module.vis, Visibility::Public(_)) => {
                let name = module.ident.to_string();
                let public = format!("{public}::{name}");
                out.push(Export {
                    public: public.clone(),
                    source: public.clone(),
                    location: location(line_of(module)),
                });
                if let Some((_, items)) = &module.content {
                    collect(root, lower, file, items, &public, &BTreeSet::new(), out)?;
                } else {
                    let dir = file.parent().unwrap_or(root);
                    let path = [
                        dir.join(format!("{name}.rs")),
                        dir.join(&name).join("mod.rs"),
                    ]
                    .into_iter()
                    .find(|p| p.exists())
                    .ok_or_else(|| format!("module file of `{name}` not found"))?;
                    let parsed = parse(&path)?;
                    collect(
                        root,
                        lower,
                        &path,
                        &parsed.items,
                        &public,
                        &BTreeSet::new(),
                        out,
                    )?;
                }
            }
            item => {
                if let Some(name) = public_item_name(item) {
                    let path = format!("{public}::{name}");
                    out.push(Export {
                        public: path.clone(),
                        source: path,
                        location: location(line_of(item)),
                    });
                }
            }
        }
    }
    Ok(())
}

/// `impl Trait for Type { type Assoc = Target; }` across the workspace:
/// (type name, target name, `Trait::Assoc`).
fn associated_types(root: &Path) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    for krate in workspace::crates(root) {
        for path in workspace::rust_files(&krate.dir.join("src")) {
            let Ok(file) = parse(&path) else { continue };
            for item in &file.items {
                let Item::Impl(imp) = item else { continue };
                let (Some((_, trait_path, _)), syn::Type::Path(self_ty)) =
                    (&imp.trait_, &*imp.self_ty)
                else {
                    continue;
                };
                let (Some(ty), Some(tr)) =
                    (self_ty.path.segments.last(), trait_path.segments.last())
                else {
                    continue;
                };
                for inner in &imp.items {
                    if let syn::ImplItem::Type(assoc) = inner
                        && let syn::Type::Path(target) = &assoc.ty
                        && let Some(target) = target.path.segments.last()
                    {
                        found.push((
                            ty.ident.to_string(),
                            target.ident.to_string(),
                            format!("{}>::{}", tr.ident, assoc.ident),
                        ));
                    }
                }
            }
        }
    }
    found
}

/// Names listed, each with a reason, under an "Audit exceptions" heading of
/// the facade README.
fn exceptions(readme: &Path) -> BTreeSet<String> {
    let text = fs::read_to_string(readme).unwrap_or_default();
    let mut listed = BTreeSet::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with('#') {
            inside = line.to_lowercase().contains("audit exceptions");
            continue;
        }
        let Some(entry) = line
            .trim()
            .strip_prefix("- ")
            .or_else(|| line.trim().strip_prefix("* "))
        else {
            continue;
        };
        let mut parts = entry.splitn(3, '`');
        if let (true, Some(""), Some(name), Some(reason)) =
            (inside, parts.next(), parts.next(), parts.next())
            && reason.trim_start_matches([':', ' ', '—', '-']).trim().len() >= 10
        {
            listed.insert(name.to_string());
        }
    }
    listed
}

/// Checks the facade at `root`.
pub fn check(root: &Path) -> Outcome {
    match findings(root) {
        Ok(findings) => Outcome::failing(findings),
        Err(error) => Outcome::failing(vec![Finding::new(FACADE_DIR, error)]),
    }
}

fn findings(root: &Path) -> Result<Vec<Finding>, String> {
    let lower = lower_crates(root)?;
    let lib: PathBuf = root.join(FACADE_DIR).join("src/lib.rs");
    let file = parse(&lib)?;
    let local_mods: BTreeSet<String> = file
        .items
        .iter()
        .filter_map(|item| match item {
            Item::Mod(m) => Some(m.ident.to_string()),
            _ => None,
        })
        .collect();
    let mut exports = Vec::new();
    collect(
        root,
        &lower,
        &lib,
        &file.items,
        "storage",
        &local_mods,
        &mut exports,
    )?;
    let excepted = exceptions(&root.join(FACADE_DIR).join("README.md"));
    let mut findings = redundant(&lower, &exports, &excepted);
    findings.extend(through_associated_types(root, &exports, &excepted));
    findings.extend(not_offered(root, &lower, &exports, &excepted)?);
    Ok(findings)
}

/// Where an item of a crate beneath may be public: `storage::Name` (the
/// root) and, for an item of a crate the facade depends on,
/// `storage::<room>::Name`.
fn places(lower: &[Lower], source: &str) -> Vec<String> {
    let (krate, name) = source.rsplit_once("::").unwrap_or(("", source));
    let mut places = vec![format!("storage::{name}")];
    if let Some(below) = lower.iter().find(|below| below.krate == krate) {
        places.push(format!("storage::{}::{name}", below.room));
    }
    places
}

/// The same item under two public paths. An item of a crate beneath may be
/// at the root and in its room (a name `kithara_storage` has, whose kind
/// has a room).
fn redundant(lower: &[Lower], exports: &[Export], excepted: &BTreeSet<String>) -> Vec<Finding> {
    let mut by_source: BTreeMap<&str, Vec<&Export>> = BTreeMap::new();
    for export in exports {
        by_source
            .entry(export.source.as_str())
            .or_default()
            .push(export);
    }
    let mut findings = Vec::new();
    for (source, paths) in by_source.iter().filter(|(_, paths)| paths.len() > 1) {
        let root_and_room = places(lower, source);
        let all: Vec<&str> = paths.iter().map(|e| e.public.as_str()).collect();
        let allowed = root_and_room.len() == 2
            && all.len() == 2
            && root_and_room
                .iter()
                .all(|place| all.contains(&place.as_str()));
        if !allowed && !excepted.contains(last(source)) {
            findings.push(Finding::new(
                &paths[1].location,
                format!(
                    "redundant_reexport: `{source}` is public as {}",
                    all.join(" and ")
                ),
            ));
        }
    }
    findings
}

/// A type surfaced again through an associated type of an exported type.
fn through_associated_types(
    root: &Path,
    exports: &[Export],
    excepted: &BTreeSet<String>,
) -> Vec<Finding> {
    let exported: BTreeSet<&str> = exports.iter().map(|e| last(&e.public)).collect();
    let export_of = |name: &str| exports.iter().find(|e| last(&e.public) == name);
    let mut findings = Vec::new();
    for (ty, target, assoc) in associated_types(root) {
        if exported.contains(ty.as_str())
            && exported.contains(target.as_str())
            && !excepted.contains(&target)
        {
            let (location, target_path) = export_of(&target).map_or_else(
                || (String::new(), format!("storage::{target}")),
                |e| (e.location.clone(), e.public.clone()),
            );
            let ty_path =
                export_of(&ty).map_or_else(|| format!("storage::{ty}"), |e| e.public.clone());
            findings.push(Finding::new(location, format!(
                "redundant_reexport: `{target_path}` is also reachable as `<{ty_path} as {assoc}`; list it under \"Audit exceptions\" in crates/storage/README.md with the reason, or drop one path"
            )));
        }
    }
    findings
}

/// Public items of the crates beneath that the facade does not offer at
/// the root or in their room.
fn not_offered(
    root: &Path,
    lower: &[Lower],
    exports: &[Export],
    excepted: &BTreeSet<String>,
) -> Result<Vec<Finding>, String> {
    let mut findings = Vec::new();
    for below in lower {
        let krate = below.krate.as_str();
        for (name, line) in root_names(&below.dir)? {
            if excepted.contains(&name) {
                continue;
            }
            let source = format!("{krate}::{name}");
            let offered: Vec<&str> = exports
                .iter()
                .filter(|e| e.source == source)
                .map(|e| e.public.as_str())
                .collect();
            let root_and_room = places(lower, &source);
            if offered
                .iter()
                .any(|public| root_and_room.iter().any(|place| place == public))
            {
                continue;
            }
            let (at_root, in_room) = (&root_and_room[0], &root_and_room[root_and_room.len() - 1]);
            let message = if offered.is_empty() {
                format!(
                    "public `{source}` is not re-exported by the facade: users would have to depend on `{krate}` to name it (offer it as `{at_root}` or `{in_room}`)"
                )
            } else {
                format!(
                    "public `{source}` is offered as {}; its places are `{at_root}` (the root) and `{in_room}` (its room)",
                    offered.join(" and ")
                )
            };
            findings.push(Finding::new(
                format!("{}:{line}", relative(root, &below.dir.join("src/lib.rs"))),
                message,
            ));
        }
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_facade_surface_is_clean() {
        assert_eq!(check(&workspace::default_root()).failures, Vec::new());
    }

    #[test]
    fn exceptions_need_a_heading_and_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let readme = dir.path().join("README.md");
        fs::write(&readme, "# x\n- `Early`: listed before the heading\n## Audit exceptions\n- `MmapOptions`: canonical constructor type\n- `Bare`\n## Next\n- `After`: under another heading\n").unwrap();
        assert_eq!(
            exceptions(&readme),
            BTreeSet::from(["MmapOptions".to_string()])
        );
    }
}
