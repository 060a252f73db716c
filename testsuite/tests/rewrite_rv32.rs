//! RV32 linked programs. Debian ships no rv32 C library, so the corpus cannot link rv32
//! programs; this test builds a freestanding one (`corpus/freestanding32.c`: its own
//! `_start` and system calls) for rv32gc and rv32g, links it with `--emit-relocs`, and runs
//! it under `qemu-riscv32`. Each rewrite (slots 4, 8 and 0; both layouts; both writers)
//! must behave exactly as the original, verify with no warning, pass `check --max-pad` at
//! its slot size, and keep every function a whole slot long.

use std::path::{Path, PathBuf};
use std::process::Command;

use padtrim_testsuite::{check, rewrite, run_qemu_rv32, scratch_dir};

/// (name, -march, -fpatchable-function-entry, -O, pad bytes per function).
const VARIANTS: &[(&str, &str, &str, &str, u32)] = &[
    ("rv32gc-p8-O2", "rv32gc", "8", "-O2", 16),
    ("rv32g-p4_1-O0", "rv32g", "4,1", "-O0", 16),
];

fn build(dir: &Path, name: &str, march: &str, pfe: &str, opt: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/freestanding32.c");
    let out = dir.join(name);
    let status = Command::new("riscv64-linux-gnu-gcc")
        .args([&format!("-march={march}"), "-mabi=ilp32", opt])
        .arg(format!("-fpatchable-function-entry={pfe}"))
        .args([
            "-ffreestanding",
            "-nostdlib",
            "-static",
            "-Wl,--emit-relocs",
            "-o",
        ])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run riscv64-linux-gnu-gcc (run scripts/setup)");
    assert!(status.success(), "building {name} failed");
    out
}

#[test]
fn rv32_programs_rewrite_and_run() {
    let dir = scratch_dir("rewrite-rv32");
    let mut checked = 0;
    for &(name, march, pfe, opt, pad) in VARIANTS {
        let input = build(&dir, name, march, pfe, opt);
        let report = padtrim_testsuite::report_json(&input);
        assert_eq!(report["class"], "elf32", "{name}: {report}");
        let sites = report["sites"].as_u64().expect("sites");
        assert!(sites >= 7, "{name}: {sites} sites");
        assert_eq!(
            report["histogram"][pad.to_string()],
            sites,
            "{name}: {report}"
        );
        let original = run_qemu_rv32(&input);
        assert!(
            original.stdout.starts_with(b"fib 144\n") && original.status.code() == Some(104),
            "{name}: unexpected original behaviour: {original:?}"
        );
        for slot in [4u32, 8, 0] {
            for layout in ["pack", "in-place"] {
                for writer in ["patched", "builder"] {
                    let what = format!("{name} slot {slot} {layout} {writer}");
                    let out = dir.join(format!("{name}-{slot}-{layout}-{writer}"));
                    let slot_text = slot.to_string();
                    let args = [
                        "--slot", &slot_text, "--layout", layout, "--writer", writer, "--json",
                    ];
                    let rw = rewrite(&input, &out, &args);
                    assert!(
                        rw.status.success(),
                        "{what}: {}",
                        String::from_utf8_lossy(&rw.stderr)
                    );
                    let stats: serde_json::Value =
                        serde_json::from_slice(&rw.stdout).expect("rewrite --json");
                    assert_eq!(stats["writer"], writer, "{what}");
                    assert_eq!(stats["verify"]["warning_count"], 0, "{what}: {stats}");
                    assert!(
                        stats["bytes_removed"].as_i64().unwrap() > 0,
                        "{what}: {stats}"
                    );
                    let run = run_qemu_rv32(&out);
                    assert_eq!(run.stdout, original.stdout, "{what}: stdout differs");
                    assert_eq!(run.stderr, original.stderr, "{what}: stderr differs");
                    assert_eq!(
                        run.status.code(),
                        original.status.code(),
                        "{what}: exit status"
                    );
                    if slot > 0 {
                        let chk = check(&out, &["--max-pad", &slot.to_string()]);
                        assert!(
                            chk.status.success(),
                            "{what}: check --max-pad {slot}: {}",
                            String::from_utf8_lossy(&chk.stdout)
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, VARIANTS.len() * 3 * 2 * 2);
}
