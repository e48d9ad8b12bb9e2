//! `cargo xtask portability`: the library checked (`cargo check --target`)
//! for the platforms it promises beyond Linux: Windows, macOS, iOS, Android.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use crate::workspace;

/// The targets checked, one per platform.
pub const TARGETS: [&str; 4] = [
    "x86_64-pc-windows-msvc",
    "aarch64-apple-darwin",
    "aarch64-apple-ios",
    "aarch64-linux-android",
];

/// Packages left out on every target, with the reason.
const EXCLUDED: [(&str, &str); 2] = [
    ("xtask", "a tool of this workspace, run on the host only"),
    (
        "storage-fetch",
        "reqwest's rustls builds `ring`, whose build script compiles C and \
         assembly: it needs a C cross compiler (and the platform's SDK) per \
         target",
    ),
];

/// The facade feature left out for the same reason as `storage-fetch`.
const EXCLUDED_FEATURE: &str = "fetch";

/// The facade's package name.
const FACADE: &str = "stream-storage";

/// Checks every target in `targets` (all of [`TARGETS`] when empty); `true`
/// when each one builds.
pub fn run(root: &Path, targets: &[String]) -> bool {
    let targets: Vec<String> = if targets.is_empty() {
        TARGETS.iter().map(ToString::to_string).collect()
    } else {
        targets.to_vec()
    };
    if let Err(message) = install_targets(&targets) {
        eprintln!("portability: {message}");
        return false;
    }
    let args = check_args(root);
    let target_dir = target_dir(root);
    println!(
        "checking `cargo {}` for each target (target dir {})",
        args.join(" "),
        target_dir.display()
    );
    println!(
        "left out: {}; feature `{EXCLUDED_FEATURE}` for the same reason",
        excluded()
    );
    let mut passed = true;
    for target in &targets {
        let started = Instant::now();
        let output = Command::new(cargo())
            .current_dir(root)
            .args(&args)
            .args(["--target", target.as_str(), "--target-dir"])
            .arg(&target_dir)
            .output();
        let seconds = started.elapsed().as_secs_f64();
        match output {
            Ok(output) if output.status.success() => println!("pass  {target} ({seconds:.0} s)"),
            Ok(output) => {
                passed = false;
                println!("FAIL  {target} ({seconds:.0} s)");
                let text = String::from_utf8_lossy(&output.stderr);
                for line in text.lines().filter(|line| line.contains("error")) {
                    println!("      {line}");
                }
            }
            Err(error) => {
                passed = false;
                println!("FAIL  {target}: cannot run cargo: {error}");
            }
        }
    }
    passed
}

/// What is checked: every workspace package but [`EXCLUDED`], with every
/// feature of the facade but [`EXCLUDED_FEATURE`] (the drivers, the cache
/// and the clients; a new feature is checked without a change here).
fn check_args(root: &Path) -> Vec<String> {
    let mut features: Vec<String> = workspace::drivers(root)
        .into_iter()
        .map(|driver| driver.feature)
        .chain(workspace::client_features(root))
        .filter(|feature| feature != EXCLUDED_FEATURE)
        .map(|feature| format!("{FACADE}/{feature}"))
        .collect();
    features.sort();
    let mut args: Vec<String> = ["check", "--quiet", "--message-format=short", "--workspace"]
        .map(String::from)
        .to_vec();
    for (package, _) in EXCLUDED {
        args.extend(["--exclude".to_owned(), package.to_owned()]);
    }
    args.extend(["--features".to_owned(), features.join(",")]);
    args
}

/// What is left out and why, for the report.
fn excluded() -> String {
    EXCLUDED
        .iter()
        .map(|(package, reason)| format!("`{package}` ({reason})"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Its own directory beside the workspace's builds, so a check for another
/// target never invalidates them.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("portability")
}

/// Adds the standard library of each target the toolchain lacks, with
/// rustup (a download of about 30 MB each, once).
fn install_targets(targets: &[String]) -> Result<(), String> {
    let listed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|error| {
            format!(
                "rustup not found ({error}): the check needs the standard library of {} \
                 for the workspace's toolchain; install rustup (https://rustup.rs), or add \
                 those targets to your toolchain and run `cargo check --target <target> {}` yourself",
                targets.join(", "),
                check_args(&workspace::default_root()).join(" "),
            )
        })?;
    let installed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let missing: Vec<&str> = targets
        .iter()
        .map(String::as_str)
        .filter(|target| !installed.lines().any(|line| line.trim() == *target))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("installing the standard library of {}", missing.join(", "));
    let status = Command::new("rustup")
        .args(["target", "add"])
        .args(&missing)
        .status()
        .map_err(|error| format!("cannot run rustup: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`rustup target add {}` failed (it needs the network once)",
            missing.join(" ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_facade_feature_but_fetch_is_checked() {
        let args = check_args(&workspace::default_root()).join(" ");
        for feature in [
            "mmap",
            "mem",
            "cache",
            "symphonia",
            "tokio",
            "stream-download",
        ] {
            assert!(args.contains(&format!("{FACADE}/{feature}")), "{args}");
        }
        assert!(!args.contains(&format!("{FACADE}/fetch")), "{args}");
        assert!(!args.contains("_driver"), "{args}");
        assert!(args.contains("--exclude storage-fetch"), "{args}");
    }
}
