//! `cargo xtask windows`: the test binaries cross-built for
//! `x86_64-pc-windows-gnu` and run under Wine, so Windows' file semantics
//! (mandatory byte-range locks, no rename over an open or mapped file) are
//! tested on Linux.

use std::{
    fs,
    io::BufReader,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// The target the tests are built for: its linker is mingw's gcc and its
/// runner Wine (`.cargo/config.toml`).
const TARGET: &str = "x86_64-pc-windows-gnu";

/// The Debian packages that bring the linker and Wine.
const PACKAGES: [&str; 3] = ["gcc-mingw-w64-x86-64", "wine64", "wine"];

/// What one test binary may take under Wine before it counts as hung.
const TIME_BOUND: Duration = Duration::from_secs(300);

/// Wine 8 has no `bcryptprimitives.dll`, where std finds `ProcessPrng`
/// (its random seeds): this stub hands the call to advapi32's
/// `SystemFunction036` (`RtlGenRandom`), which Wine has.
const PRNG_STUB: &str = r"#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    for (; length > 0x40000000; data += 0x40000000, length -= 0x40000000)
        if (!SystemFunction036(data, 0x40000000)) return FALSE;
    return SystemFunction036(data, (ULONG)length);
}
";

/// The facade features the tests need (its drivers, the cache and the
/// clients; `fetch` is left out as in `portability`: `ring` needs more
/// than this target's C compiler to be trusted here).
const FACADE_FEATURES: &str = "stream-storage/mmap,stream-storage/mem,stream-storage/cache,stream-storage/tokio,\
     stream-storage/symphonia,stream-storage/stream-download,storage-core/testing";

/// The packages whose every test binary is built and run (all of the
/// library's but the downloader, `storage-fetch`, as in `portability`).
#[rustfmt::skip]
const PACKAGES_TESTED: [&str; 5] =
    ["storage-core", "storage-mem", "storage-mmap", "storage-cache", "stream-storage"];

/// Sets up what is missing, builds and runs every test binary of
/// [`PACKAGES_TESTED`]; `true` when every binary passed.
pub fn run(root: &Path) -> bool {
    let started = Instant::now();
    let prefix = match set_up(root) {
        Ok(prefix) => prefix,
        Err(message) => {
            eprintln!("windows: {message}");
            return false;
        }
    };
    println!("set up in {:.0} s", started.elapsed().as_secs_f64());
    // Every test target of the packages; one that does not build fails
    // the run (cargo reports it).
    let mut args = Vec::new();
    for package in PACKAGES_TESTED {
        args.extend(["-p".to_owned(), package.to_owned()]);
    }
    let Some((built, built_all)) = build(root, &args) else {
        eprintln!("windows: the tests did not build for {TARGET}");
        return false;
    };
    let binaries: Vec<_> = built
        .into_iter()
        .map(|(package, target, exe)| (format!("{package}.{target}"), exe))
        .collect();
    if !built_all {
        eprintln!("windows: not every test built for {TARGET} (see cargo's errors above)");
        return false;
    }
    println!("built in {:.0} s", started.elapsed().as_secs_f64());
    let logs = target_dir(root).join("wine-logs");
    let _ = fs::create_dir_all(&logs);
    let (mut passed, mut failed) = (0, 0);
    let mut all_green = true;
    for (name, exe) in &binaries {
        let outcome = run_one(exe, &prefix, &logs.join(format!("{name}.log")));

        println!(
            "{:4}  {name}: {}",
            if outcome.green { "pass" } else { "FAIL" },
            outcome.summary
        );
        for failure in &outcome.failures {
            println!("      {failure}");
        }
        passed += outcome.passed;
        failed += outcome.failed;
        all_green &= outcome.green;
    }
    println!(
        "windows: {passed} passed, {failed} failed in {} binaries ({:.0} s; logs in {})",
        binaries.len(),
        started.elapsed().as_secs_f64(),
        logs.display()
    );
    all_green
}

/// Installs the packages, the target and the stub DLL, and makes the Wine
/// prefix (under the target directory); returns the prefix.
fn set_up(root: &Path) -> Result<PathBuf, String> {
    if !on_path("x86_64-w64-mingw32-gcc") || !on_path("wine") {
        println!("installing {} with apt-get", PACKAGES.join(" "));
        let updated = Command::new("apt-get").args(["update", "-qq"]).status();
        let installed = updated.and_then(|_| {
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(PACKAGES)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
        });
        if !matches!(installed, Ok(status) if status.success()) {
            return Err(format!(
                "cannot install {} (apt-get, as root, on Debian)",
                PACKAGES.join(" ")
            ));
        }
    }
    let listed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|error| format!("rustup not found ({error}): add the target {TARGET}"))?;
    if !String::from_utf8_lossy(&listed.stdout)
        .lines()
        .any(|line| line.trim() == TARGET)
    {
        let added = Command::new("rustup")
            .args(["target", "add", TARGET])
            .status();
        if !matches!(added, Ok(status) if status.success()) {
            return Err(format!("`rustup target add {TARGET}` failed"));
        }
    }
    let home = target_dir(root).join("wine");
    let prefix = home.join("prefix");
    let system32 = prefix.join("drive_c/windows/system32");
    fs::create_dir_all(&home).map_err(|e| format!("cannot make {}: {e}", home.display()))?;
    if !system32.join("kernel32.dll").exists() {
        println!("making the Wine prefix {}", prefix.display());
        let made = wine_command("wineboot", &prefix).arg("--init").status();
        if !matches!(made, Ok(status) if status.success()) {
            return Err("`wineboot --init` failed".to_owned());
        }
    }
    let dll = system32.join("bcryptprimitives.dll");
    if !dll.exists() {
        let source = home.join("bcryptprimitives.c");
        fs::write(&source, PRNG_STUB).map_err(|e| format!("cannot write the stub: {e}"))?;
        let built = Command::new("x86_64-w64-mingw32-gcc")
            .args(["-shared", "-O2", "-o"])
            .arg(&dll)
            .arg(&source)
            .arg("-ladvapi32")
            .status();
        if !matches!(built, Ok(status) if status.success()) {
            return Err("cannot build the bcryptprimitives.dll stub".to_owned());
        }
    }
    Ok(prefix)
}

/// What a build made: the package, target (`lib` for unit tests) and
/// executable of each test that built, and whether every one did.
type Built = (Vec<(String, String, PathBuf)>, bool);

/// Builds the tests chosen by `args`; `None` when cargo cannot run.
fn build(root: &Path, args: &[String]) -> Option<Built> {
    let names: Vec<_> = cargo_metadata::MetadataCommand::new()
        .current_dir(root)
        .no_deps()
        .exec()
        .ok()?
        .packages
        .into_iter()
        .map(|package| (package.manifest_path, package.name.to_string()))
        .collect();
    let mut child = Command::new(cargo())
        .current_dir(root)
        .args([
            "build",
            "--tests",
            "--message-format=json-render-diagnostics",
        ])
        .args(["--target", TARGET, "--features", FACADE_FEATURES])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    let reader = BufReader::new(child.stdout.take()?);
    let mut found = Vec::new();
    for message in cargo_metadata::Message::parse_stream(reader).flatten() {
        if let cargo_metadata::Message::CompilerArtifact(artifact) = message
            && let Some(exe) = artifact.executable
        {
            let package = names
                .iter()
                .find(|(manifest, _)| *manifest == artifact.manifest_path)
                .map_or_else(String::new, |(_, name)| name.clone());
            let target = if artifact.target.is_kind(cargo_metadata::TargetKind::Lib) {
                "lib".to_owned()
            } else {
                artifact.target.name.clone()
            };
            found.push((package, target, exe.into_std_path_buf()));
        }
    }
    let succeeded = child.wait().is_ok_and(|status| status.success());
    Some((found, succeeded))
}

/// What one test binary did.
struct Outcome {
    green: bool,
    passed: u32,
    failed: u32,
    summary: String,
    failures: Vec<String>,
}

/// Runs `exe` under Wine, its output to `log`, killed after [`TIME_BOUND`].
fn run_one(exe: &Path, prefix: &Path, log: &Path) -> Outcome {
    let failed_to = |summary: String| Outcome {
        green: false,
        passed: 0,
        failed: 0,
        summary,
        failures: Vec::new(),
    };
    let opened = fs::File::create(log).and_then(|file| Ok((file.try_clone()?, file)));
    let Ok((err, file)) = opened else {
        return failed_to(format!("cannot write {}", log.display()));
    };
    let started = Instant::now();
    let spawned = wine_command("wine", prefix)
        .arg(exe)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn();
    let Ok(mut child) = spawned else {
        return failed_to("cannot run wine".to_owned());
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() < TIME_BOUND => {
                std::thread::sleep(Duration::from_millis(100));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let text = fs::read_to_string(log).unwrap_or_default();
    let result = text.lines().rfind(|line| line.starts_with("test result:"));
    let count = |word: &str| {
        result
            .and_then(|line| line.split(';').find(|part| part.trim().ends_with(word)))
            .and_then(|part| part.split_whitespace().rev().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let failures = text
        .lines()
        .filter_map(|line| line.strip_prefix("---- "))
        .filter_map(|line| line.strip_suffix(" stdout ----"))
        .map(|name| {
            let cause = text
                .split(&format!("---- {name} stdout ----"))
                .nth(1)
                .and_then(|after| {
                    after
                        .lines()
                        .find(|line| line.contains("Err") || line.contains("assert"))
                })
                .unwrap_or("")
                .trim();
            format!("{name}: {}", cause.chars().take(240).collect::<String>())
        })
        .collect();
    let seconds = started.elapsed().as_secs_f64();
    let Some(status) = status else {
        return failed_to(format!("killed after {} s", TIME_BOUND.as_secs()));
    };
    Outcome {
        green: status.success(),
        passed: count("passed"),
        failed: count("failed"),
        summary: result.map_or_else(
            || format!("no test result line ({seconds:.0} s)"),
            |line| {
                let counts = line.split(';').take(2).collect::<Vec<_>>().join(";");
                format!(
                    "{} ({seconds:.0} s)",
                    counts.trim_start_matches("test result: ")
                )
            },
        ),
        failures,
    }
}

/// A Wine command on `prefix`, quiet (`WINEDEBUG=-all`), 64-bit only.
fn wine_command(program: &str, prefix: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .env("WINEPREFIX", prefix)
        .env("WINEDEBUG", "-all")
        .env("WINEARCH", "win64");
    command
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}
