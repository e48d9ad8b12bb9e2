//! `cargo xtask`: the workspace's developer commands (`audit`, `bench`,
//! `portability`, `windows`).

mod audit;
mod checks;
mod portability;
mod windows;
mod workspace;

use std::{path::PathBuf, process::ExitCode};

const HELP: &str = "\
cargo xtask <command>

commands:
  audit [--root DIR]   run every workspace check; one line per check, findings
                       as file:line under a failure; exits 1 if any check fails
  bench [--quick]      run the benchmark suite (every workload of the
                       performance table beside its raw baseline) and print
                       the summary table of medians and ratios
  portability [TARGET...]
                       cargo check the library for Windows, macOS, iOS and
                       Android (x86_64-pc-windows-msvc, aarch64-apple-darwin,
                       aarch64-apple-ios, aarch64-linux-android, or the
                       targets given); adds a missing target's standard
                       library with rustup; exits 1 if one fails
  windows [--all]      build every test binary of the library crates (but the
                       downloader's) for x86_64-pc-windows-gnu and run each
                       under Wine (installs mingw and Wine with apt-get, the
                       target with rustup, a Wine prefix in the target dir);
                       --all is the same (kept for old scripts); exits 1 if
                       one fails or does not build
  help                 this text
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("audit") => {
            let root = match (args.next().as_deref(), args.next()) {
                (None, _) => workspace::default_root(),
                (Some("--root"), Some(dir)) => PathBuf::from(dir),
                _ => {
                    eprint!("{HELP}");
                    return ExitCode::from(2);
                }
            };
            if audit::run(&root) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Some("bench") => {
            let quick = args.any(|arg| arg == "--quick");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            // Each driver's workload bench, in its own crate (a driver
            // depends on no other driver, not even for benches).
            for driver in workspace::drivers(&workspace::default_root()) {
                let mut command = std::process::Command::new(&cargo);
                command.current_dir(workspace::default_root()).args([
                    "bench",
                    "-p",
                    driver.name.as_str(),
                    "--bench",
                    "workloads",
                    "--",
                ]);
                if quick {
                    command.arg("--quick");
                }
                match command.status() {
                    Ok(status) if status.success() => {}
                    Ok(_) => return ExitCode::FAILURE,
                    Err(error) => {
                        eprintln!("cannot run cargo bench: {error}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Some("portability") => {
            let targets: Vec<String> = args.collect();
            if portability::run(&workspace::default_root(), &targets) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Some("windows") => {
            // `--all` (every binary) is what runs now; it is accepted as before.
            let _ = args.any(|arg| arg == "--all");
            if windows::run(&workspace::default_root()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Some("help" | "-h" | "--help") | None => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprint!("unknown command `{other}`\n\n{HELP}");
            ExitCode::from(2)
        }
    }
}
