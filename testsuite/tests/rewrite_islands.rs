//! Trampoline islands: a program whose functions lie more than `jal`'s ±1 MiB from the
//! runtime's trampoline still gets every slot patched, through islands the rewriter adds.
//!
//! The program is built at test time: a 1.4 MB block of nops sits between `main`/`early`
//! and `late`, and the runtime (linked last) lands after `late`.

use std::path::{Path, PathBuf};
use std::process::Command;

use padtrim_testsuite::{padtrim, rewrite_json, run_ok, scratch_dir, RISCV_SYSROOT};

const SOURCE: &str = r#"
#include <stdio.h>
__attribute__((noinline)) int early(int x) { return x * 3 + 1; }
__attribute__((noinline)) void filler(void) { __asm__ volatile(".rept 700000\n nop\n .endr"); }
__attribute__((noinline)) int late(int x) { return x * 5 + 2; }
int main(int argc, char **argv) {
    int s = 0;
    for (int i = 0; i < 3; i++) s += early(i) + late(i);
    if (argc > 5) filler();
    printf("sum=%d\n", s);
    return 0;
}
"#;

fn runtime_lib() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/runtime-lib");
    let out = run_ok(&mut Command::new(script), "runtime-lib");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    PathBuf::from(stdout.lines().last().expect("a path").trim())
}

fn symbol(exe: &Path, name: &str) -> u64 {
    let out = Command::new("riscv64-linux-gnu-nm")
        .arg(exe)
        .output()
        .expect("nm");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.ends_with(&format!(" {name}")))
        .unwrap_or_else(|| panic!("{name} not in {}", exe.display()));
    u64::from_str_radix(line.split(' ').next().unwrap(), 16).unwrap()
}

/// Runs `exe` under qemu with the runtime tracing function entries.
fn run_traced(exe: &Path) -> (String, String, Option<i32>) {
    let out = Command::new("qemu-riscv64")
        .args(["-L", RISCV_SYSROOT])
        .arg(exe)
        .env("PADTRIM_TRACE", "entry")
        .env("PADTRIM_DEBUG", "1")
        .env("PADTRIM_OUT", exe.with_extension("trace"))
        .output()
        .expect("run qemu-riscv64");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

#[test]
fn far_slots_are_patched_through_islands() {
    let dir = scratch_dir("rewrite-islands");
    let src = dir.join("big.c");
    std::fs::write(&src, SOURCE).unwrap();
    let exe = dir.join("big");
    run_ok(
        Command::new("riscv64-linux-gnu-gcc")
            .args(["-O2", "-fpatchable-function-entry=8"])
            .arg(&src)
            .arg(runtime_lib())
            .args(["-Wl,-q", "-o"])
            .arg(&exe),
        "the cross compiler",
    );
    let tramp = symbol(&exe, "padtrim_trampoline");
    assert!(
        tramp - symbol(&exe, "early") > 1 << 20,
        "the test needs early() out of jal reach of the trampoline"
    );

    let rewritten = dir.join("big.pt");
    let stats = rewrite_json(&exe, &rewritten);
    let islands = stats["islands"].as_u64().expect("islands in the stats");
    assert!(islands >= 1, "no island added: {stats}");

    let (stdout, stderr, status) = run_traced(&rewritten);
    assert_eq!(status, Some(0), "{stderr}");
    assert_eq!(stdout, "sum=33\n");
    // The runtime says what it found: every slot patched, none skipped for lack of reach.
    let debug = stderr
        .lines()
        .find(|l| l.starts_with("padtrim: table=descriptor"))
        .unwrap_or_else(|| panic!("no runtime debug line in {stderr:?}"));
    assert!(debug.contains(&format!("islands={islands}")), "{debug}");
    assert!(debug.contains("patched=4 skipped=0"), "{debug}");

    // And the trace holds every call: main once, early and late three times each.
    let replay = padtrim()
        .arg("replay")
        .arg(rewritten.with_extension("trace"))
        .arg("--elf")
        .arg(&rewritten)
        .arg("--summary")
        .output()
        .expect("run padtrim replay");
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let summary = String::from_utf8_lossy(&replay.stdout);
    for (name, calls) in [("main", 1), ("early", 3), ("late", 3)] {
        let line = summary
            .lines()
            .find(|l| l.split_whitespace().any(|w| w == name))
            .unwrap_or_else(|| panic!("{name} missing from the summary:\n{summary}"));
        assert!(
            line.split_whitespace().any(|w| w == calls.to_string()),
            "{name}: expected {calls} calls in {line:?}"
        );
    }
}
