//! The workspace under audit: its root, crates and source files.

use std::{
    fs,
    path::{Path, PathBuf},
};

/// The workspace this xtask was built in.
pub fn default_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// A crate directory: `crates/<name>` or `xtask`.
#[derive(Clone, Debug)]
pub struct CrateDir {
    /// The package name (the directory name).
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
}

impl CrateDir {
    /// `src/lib.rs`, if the crate is a library.
    pub fn lib_rs(&self) -> Option<PathBuf> {
        let lib = self.dir.join("src/lib.rs");
        lib.exists().then_some(lib)
    }
}

/// Every crate of the workspace: `crates/*` and `xtask`.
pub fn crates(root: &Path) -> Vec<CrateDir> {
    let mut found: Vec<CrateDir> = fs::read_dir(root.join("crates"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|dir| dir.join("Cargo.toml").exists())
        .map(|dir| CrateDir {
            name: dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            dir,
        })
        .collect();
    if root.join("xtask/Cargo.toml").exists() {
        found.push(CrateDir {
            name: "xtask".into(),
            dir: root.join("xtask"),
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// A driver crate and the facade feature that enables it, declared in the
/// driver's manifest as `[package.metadata.storage] facade-feature = "…"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Driver {
    /// The package name.
    pub name: String,
    /// The facade's feature for it.
    pub feature: String,
}

/// The drivers of `metadata`'s workspace, from their manifests.
pub fn drivers_in(metadata: &cargo_metadata::Metadata) -> Vec<Driver> {
    let mut drivers: Vec<Driver> = metadata
        .workspace_packages()
        .into_iter()
        .filter_map(|package| {
            let feature = package.metadata.get("storage")?.get("facade-feature")?;
            Some(Driver {
                name: package.name.to_string(),
                feature: feature.as_str()?.to_owned(),
            })
        })
        .collect();
    drivers.sort_by(|a, b| a.name.cmp(&b.name));
    drivers
}

/// The drivers of the workspace at `root` (empty if it cannot be read).
pub fn drivers(root: &Path) -> Vec<Driver> {
    cargo_metadata::MetadataCommand::new()
        .manifest_path(root.join("Cargo.toml"))
        .no_deps()
        .exec()
        .map(|metadata| drivers_in(&metadata))
        .unwrap_or_default()
}

/// The facade's client features (off by default, not a driver's): every
/// feature of `stream-storage` but `default`, the drivers' and the internal
/// ones (`_driver`) (empty if the workspace cannot be read).
pub fn client_features(root: &Path) -> Vec<String> {
    let Ok(metadata) = cargo_metadata::MetadataCommand::new()
        .manifest_path(root.join("Cargo.toml"))
        .no_deps()
        .exec()
    else {
        return Vec::new();
    };
    let drivers: Vec<String> = drivers_in(&metadata)
        .into_iter()
        .map(|driver| driver.feature)
        .collect();
    let mut clients: Vec<String> = metadata
        .workspace_packages()
        .into_iter()
        .filter(|package| package.name.as_str() == "stream-storage")
        .flat_map(|package| package.features.keys().cloned())
        .filter(|feature| {
            feature != "default" && !feature.starts_with('_') && !drivers.contains(feature)
        })
        .collect();
    clients.sort();
    clients
}

/// Every `.rs` file below `dir`, skipping `target`.
pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|name| name != "target") {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// `path` relative to `root`, for findings.
pub fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}
