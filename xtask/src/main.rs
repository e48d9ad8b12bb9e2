//! `cargo xtask`: the workspace's developer commands (`audit`).

mod audit;
mod checks;
mod workspace;

use std::{path::PathBuf, process::ExitCode};

const HELP: &str = "\
cargo xtask <command>

commands:
  audit [--root DIR]   run every workspace check; one line per check, findings
                       as file:line under a failure; exits 1 if any check fails
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
