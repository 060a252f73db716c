//! The README's two entry points (`scripts/demo`, `scripts/test`) on machines a newcomer has:
//! they check the Rust toolchain before anything is installed or built, long steps say what
//! they are doing and for how long, and the repository stands on its own.
//!
//! Fake `cargo`/`rustc` scripts stand in for Debian 12's cargo 1.65 / rustc 1.63 and for a
//! rustup toolchain; each fake logs its arguments, so a test sees whether a build was started.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use padtrim_testsuite::scratch_dir;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The workspace's declared minimum Rust (`rust-version` in the root Cargo.toml).
fn rust_version() -> String {
    let toml = fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let line = toml
        .lines()
        .find(|l| l.starts_with("rust-version"))
        .expect("the root Cargo.toml declares rust-version");
    line.split('"').nth(1).unwrap().to_string()
}

/// Writes an executable `dir/name` that appends its arguments to `dir/name.log`, prints
/// `version_line` for `--version` and exits `status` otherwise.
fn fake_tool(dir: &Path, name: &str, version_line: &str, status: i32) {
    fs::create_dir_all(dir).unwrap();
    let log = dir.join(format!("{name}.log"));
    let script = format!(
        "#!/bin/sh\necho \"$*\" >> '{}'\nif [ \"$1\" = --version ]; then echo '{version_line}'; exit 0; fi\nexit {status}\n",
        log.display()
    );
    let path = dir.join(name);
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn log_of(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}

/// Runs `scripts/NAME` with `bin` first in PATH and `home` as HOME (no rustup there unless the
/// test puts one), the kernel part skipped.
fn run_script(name: &str, bin: &Path, home: &Path) -> Output {
    fs::create_dir_all(home).unwrap();
    Command::new("bash")
        .arg(repo().join("scripts").join(name))
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("HOME", home)
        .env("PADTRIM_SKIP_KERNEL", "1")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap()
}

#[test]
fn old_debian_toolchain_stops_both_entry_points_before_anything_is_built() {
    let min = rust_version();
    for script in ["test", "demo"] {
        let dir = scratch_dir(&format!("scripts-old-rust-{script}"));
        let bin = dir.join("bin");
        fake_tool(&bin, "cargo", "cargo 1.65.0", 0);
        fake_tool(&bin, "rustc", "rustc 1.63.0", 0);
        let out = run_script(script, &bin, &dir.join("home"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "scripts/{script}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line, got: {stderr}");
        assert!(
            lines[0].contains(&format!("needs Rust {min} or newer"))
                && lines[0].contains("found cargo 1.65.0, rustc 1.63.0")
                && lines[0].contains("rustup"),
            "names the minimum, what was found and how to get it: {stderr}"
        );
        assert!(
            out.stdout.is_empty(),
            "nothing else happened: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(
            log_of(&bin, "cargo").trim(),
            "--version",
            "cargo was only asked its version"
        );
    }
}

#[test]
fn missing_toolchain_is_named() {
    let dir = scratch_dir("scripts-no-rust");
    // A PATH with the shell tools the check needs and no cargo or rustc at all.
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    for tool in ["sed", "sort", "head", "cat"] {
        let _ = fs::remove_file(bin.join(tool));
        std::os::unix::fs::symlink(Path::new("/usr/bin").join(tool), bin.join(tool))
            .or_else(|_| std::os::unix::fs::symlink(Path::new("/bin").join(tool), bin.join(tool)))
            .unwrap();
    }
    let out = Command::new("/bin/bash")
        .arg("-c")
        .arg(format!(
            "source '{}/scripts/lib/common.sh'; require_rust '{}'; echo reached",
            repo().display(),
            repo().display()
        ))
        .env("PATH", &bin)
        .env("HOME", dir.join("home"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("found cargo none, rustc none"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("reached"));
}

#[test]
fn a_rustup_toolchain_outside_path_is_used() {
    let dir = scratch_dir("scripts-rustup-home");
    let bin = dir.join("bin");
    let home = dir.join("home");
    fake_tool(&bin, "cargo", "cargo 1.65.0", 0);
    fake_tool(&bin, "rustc", "rustc 1.63.0", 0);
    let rustup_bin = home.join(".cargo").join("bin");
    // The newer cargo fails its build on purpose: the test only needs to see it was called.
    fake_tool(&rustup_bin, "cargo", "cargo 9.99.0 (rustup)", 3);
    fake_tool(&rustup_bin, "rustc", "rustc 9.99.0 (rustup)", 0);
    let out = run_script("test", &bin, &home);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the rustup cargo ran and its status came back: {stderr}"
    );
    assert!(stderr.contains("using the rustup toolchain"), "{stderr}");
    assert!(log_of(&rustup_bin, "cargo").contains("build --release -p padtrim-cli"));
    assert_eq!(
        log_of(&bin, "cargo").trim(),
        "--version",
        "the old cargo built nothing"
    );
}

/// Runs `run_logged` from scripts/lib/common.sh on COMMAND, reporting every second.
fn run_logged(command: &str, log: &Path) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source '{}/scripts/lib/common.sh'; run_logged 'step x' '{}' bash -c '{command}'",
            repo().display(),
            log.display()
        ))
        .env("PADTRIM_PROGRESS_INTERVAL", "1")
        .output()
        .unwrap()
}

#[test]
fn long_steps_say_what_runs_and_for_how_long() {
    let dir = scratch_dir("scripts-progress");
    let out = run_logged(
        "echo compiling one; sleep 4; echo compiling two",
        &dir.join("ok.log"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr
            .lines()
            .next()
            .unwrap()
            .starts_with("step x: started (log: "),
        "{stderr}"
    );
    let beats: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("still running after"))
        .collect();
    assert!(
        beats.len() >= 2,
        "a line per interval while it runs: {stderr}"
    );
    assert!(beats[0].contains("last: compiling one"), "{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .starts_with("step x: done in "),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "the command's output goes to its log"
    );
    assert_eq!(
        fs::read_to_string(dir.join("ok.log")).unwrap(),
        "compiling one\ncompiling two\n"
    );

    let out = run_logged("exit 7", &dir.join("fail.log"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(7),
        "the command's status comes back: {stderr}"
    );
    assert!(stderr.contains("step x: failed (status 7)"), "{stderr}");
}

#[test]
fn the_repository_names_no_file_outside_itself() {
    let files = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(files.status.success(), "git ls-files");
    // Built from parts, so this file does not name them itself.
    let needles = [concat!("shared", "/README"), concat!("../", "shared/")];
    let mut offenders = Vec::new();
    for name in files.stdout.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let Ok(text) = fs::read_to_string(repo().join(&name)) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            if needles.iter().any(|n| line.contains(n)) {
                offenders.push(format!("{name}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "references to files outside the repository:\n{}",
        offenders.join("\n")
    );
}
