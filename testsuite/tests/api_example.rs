//! The library's example, `rewriter/examples/rewrite.rs`, rewrites corpus programs through the
//! public API alone, and what it writes runs like the original under qemu.

use std::path::PathBuf;
use std::process::Command;

use padtrim_testsuite::{corpus, scratch_dir, target_dir, ArtifactKind};

/// The example's binary, built with the test suite's profile (cargo builds examples for
/// `cargo test --workspace`; when it has not, it is built here).
fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let profile = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>/deps");
    let path = profile.join("examples").join("rewrite");
    if !path.is_file() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let release = profile.file_name().is_some_and(|n| n == "release");
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "padtrim-rewriter", "--example", "rewrite"]);
        if release {
            build.arg("--release");
        }
        build.env("CARGO_TARGET_DIR", target_dir());
        let status = build.status().expect("run cargo build --example rewrite");
        assert!(status.success(), "cargo build --example rewrite failed");
    }
    path
}

#[test]
fn the_example_rewrites_through_the_public_api_and_the_output_runs() {
    let dir = scratch_dir("api-example");
    let programs: Vec<_> = corpus()
        .iter()
        .filter(|a| a.kind == ArtifactKind::Executable && a.runnable && a.pad_bytes() >= 8)
        .take(4)
        .collect();
    assert!(
        !programs.is_empty(),
        "the corpus has runnable programs with pads"
    );
    for a in programs {
        let out = dir.join(&a.name);
        let run = Command::new(example())
            .arg(&a.path)
            .arg(&out)
            .output()
            .expect("run the example");
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "{}: example failed: {stdout}{}",
            a.name,
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(
            stdout.contains("(4-byte slots, --layout "),
            "{}: {stdout}",
            a.name
        );
        assert!(
            stdout.contains("no mismatches"),
            "{}: verified: {stdout}",
            a.name
        );
        let (before, after) = (a.run(&[]), a.run_file(&out, &[]));
        assert_eq!(before.stdout, after.stdout, "{}: same output", a.name);
        assert_eq!(
            before.status.code(),
            after.status.code(),
            "{}: same status",
            a.name
        );
    }
}
