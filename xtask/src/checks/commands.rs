//! Checks that run cargo: format, lints, feature builds, docs, cargo-deny.

use std::{path::Path, process::Command};

use super::{Finding, Outcome};

/// The output of a finished command.
pub(super) struct Ran {
    pub(super) success: bool,
    pub(super) text: String,
}

pub(super) fn cargo(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Ran, Finding> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(&cargo);
    command.current_dir(root).args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command
        .output()
        .map_err(|e| Finding::new(format!("cargo {}", args.join(" ")), e.to_string()))?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok(Ran {
        success: output.status.success(),
        text,
    })
}

/// `path:line:col: error: message` lines of `--message-format=short` output.
fn short_diagnostics(text: &str, command: &str) -> Vec<Finding> {
    let findings: Vec<Finding> = text
        .lines()
        .filter_map(|line| {
            let (location, message) = line.split_once(": error")?;
            let location = location
                .rsplit_once(':')
                .map_or(location, |(file_line, _col)| file_line);
            Some(Finding::new(location, format!("error{message}")))
        })
        .collect();
    if findings.is_empty() {
        vec![Finding::new(command, last_lines(text))]
    } else {
        findings
    }
}

fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

fn run_expecting_success(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Vec<Finding> {
    let command = format!("cargo {}", args.join(" "));
    match cargo(root, args, env) {
        Err(finding) => vec![finding],
        Ok(ran) if ran.success => Vec::new(),
        Ok(ran) => short_diagnostics(&ran.text, &command),
    }
}

/// 1. `cargo fmt --check`: each file that would change, with its line.
pub fn format(root: &Path) -> Outcome {
    match cargo(root, &["fmt", "--all", "--check"], &[]) {
        Err(finding) => Outcome::failing(vec![finding]),
        Ok(ran) if ran.success => Outcome::default(),
        Ok(ran) => {
            let mut findings: Vec<Finding> = ran
                .text
                .lines()
                .filter_map(|line| line.strip_prefix("Diff in "))
                .map(|rest| {
                    let location = rest.trim_end_matches(':');
                    let location = location
                        .strip_prefix(&format!("{}/", root.display()))
                        .unwrap_or(location);
                    Finding::new(location, "not formatted (run `cargo fmt`)")
                })
                .collect();
            if findings.is_empty() {
                findings.push(Finding::new("cargo fmt --check", last_lines(&ran.text)));
            }
            Outcome::failing(findings)
        }
    }
}

/// 2. clippy with `-D warnings` on all targets, for each driver feature set.
pub fn lints(root: &Path) -> Outcome {
    let features: Vec<String> = crate::workspace::drivers(root)
        .into_iter()
        .map(|driver| driver.feature)
        .collect();
    // Every feature on (the clients are off by default), then each driver alone.
    let mut sets: Vec<Vec<&str>> = vec![vec!["--workspace", "--all-features"]];
    for feature in &features {
        sets.push(vec![
            "-p",
            "stream-storage",
            "--no-default-features",
            "--features",
            feature,
        ]);
    }
    let mut failures = Vec::new();
    for set in sets {
        let mut args = vec![
            "clippy",
            "--quiet",
            "--all-targets",
            "--message-format=short",
        ];
        args.extend_from_slice(&set);
        args.extend_from_slice(&["--", "-D", "warnings"]);
        failures.extend(run_expecting_success(root, &args, &[]));
    }
    failures.dedup();
    Outcome::failing(failures)
}

/// The message the facade's `compile_error!` gives without a driver.
pub const NO_DRIVER_MESSAGE: &str = "the `storage` crate needs a driver";

/// 3. The facade builds with each driver alone and with both, with each
///    client feature beside the first driver alone, and fails with its
///    `compile_error!` message with none.
pub fn features(root: &Path) -> Outcome {
    let mut failures = Vec::new();
    let mut sets: Vec<String> = crate::workspace::drivers(root)
        .into_iter()
        .map(|driver| driver.feature)
        .collect();
    if sets.is_empty() {
        failures.push(Finding::new("Cargo.toml", "no driver found"));
    }
    let clients: Vec<String> = sets.first().map_or_else(Vec::new, |driver| {
        crate::workspace::client_features(root)
            .into_iter()
            .map(|client| format!("{driver},{client}"))
            .collect()
    });
    sets.push(sets.join(","));
    sets.extend(clients);
    // The cache alone (it enables `mmap` itself).
    sets.push("cache".to_owned());
    for features in &sets {
        let features = features.as_str();
        let args = [
            "check",
            "--quiet",
            "--message-format=short",
            "-p",
            "stream-storage",
            "--no-default-features",
            "--features",
            features,
        ];
        for mut finding in run_expecting_success(root, &args, &[]) {
            finding.message = format!("features `{features}`: {}", finding.message);
            failures.push(finding);
        }
    }
    let none = [
        "check",
        "--message-format=short",
        "-p",
        "stream-storage",
        "--no-default-features",
    ];
    match cargo(root, &none, &[]) {
        Err(finding) => failures.push(finding),
        Ok(ran) if ran.success => failures.push(Finding::new(
            "crates/storage/src/lib.rs",
            "builds with no driver feature; it must stop with a compile_error!",
        )),
        Ok(ran) if !ran.text.contains(NO_DRIVER_MESSAGE) => failures.push(Finding::new(
            "crates/storage/src/lib.rs",
            format!("the no-driver build fails without the message `{NO_DRIVER_MESSAGE}…`"),
        )),
        Ok(_) => {}
    }
    Outcome::failing(failures)
}

/// 7 (part). `cargo doc --no-deps` with warnings denied.
pub fn doc(root: &Path) -> Vec<Finding> {
    let args = [
        "doc",
        "--quiet",
        "--no-deps",
        "--workspace",
        "--all-features",
        "--message-format=short",
    ];
    run_expecting_success(root, &args, &[("RUSTDOCFLAGS", "-D warnings")])
}

/// The command that installs cargo-deny.
pub const DENY_INSTALL: &str = "cargo install cargo-deny --locked";

/// 8. `cargo deny check bans licenses sources` against `deny.toml`.
pub fn deny(root: &Path) -> Outcome {
    let installed = cargo(root, &["deny", "--version"], &[]).is_ok_and(|ran| ran.success);
    if !installed {
        return Outcome::failing(vec![Finding::new(
            "cargo deny",
            format!("cargo-deny is not installed: run `{DENY_INSTALL}` (about 2-3 minutes)"),
        )]);
    }
    let args = [
        "deny",
        "--log-level",
        "error",
        "check",
        "bans",
        "licenses",
        "sources",
    ];
    match cargo(root, &args, &[]) {
        Err(finding) => Outcome::failing(vec![finding]),
        Ok(ran) if ran.success => Outcome::default(),
        Ok(ran) => {
            let findings = ran
                .text
                .lines()
                .filter(|line| line.starts_with("error"))
                .map(|line| Finding::new("deny.toml", line.trim()))
                .collect::<Vec<_>>();
            if findings.is_empty() {
                Outcome::failing(vec![Finding::new("cargo deny", last_lines(&ran.text))])
            } else {
                Outcome::failing(findings)
            }
        }
    }
}
