//! Relocations that `report` and `check` do not need, and `R_RISCV_NONE`s where GNU ld
//! leaves them.
//!
//! - GNU ld 2.40 relaxing a call at the very end of a section leaves the `R_RISCV_NONE` it
//!   turns the call's `R_RISCV_RELAX` into at that end; when relaxing an alignment earlier in
//!   the section then shrinks it, that relocation is not moved, and `-Wl,-q` keeps it past the
//!   end of the section. It applies to nothing: every command accepts it, and the rewrite of
//!   such a program runs as the original does. The program is built here, at test time.
//! - `report` and `check` read only the relocations the table needs (an object's table
//!   relocations and code alignments, a linked file's dynamic ones): a defect in any other
//!   relocation section does not stop them, while `rewrite`, which needs them all, refuses.

use std::path::{Path, PathBuf};
use std::process::Command;

use padtrim_testsuite::binutils;
use padtrim_testsuite::{artifact, padtrim, report_json, run_qemu, scratch_dir};
use padtrim_testsuite::{describe, run_padtrim as run};

const PROGRAM: &str = r#"
#include <stdio.h>
int last_fn(int);
__attribute__((noinline)) int twice(int x) { return 2 * x; }
int main(int argc, char **argv) {
    (void)argv;
    printf("%d\n", last_fn(20 + argc));
    return 0;
}
"#;

/// The last function of `.text` (its object is linked last): `prefix` 4-byte instructions,
/// an alignment relaxation trims, one more instruction, and a tail call that relaxation
/// shortens (its `R_RISCV_RELAX` becomes an `R_RISCV_NONE` at the end of the section).
fn last_function(prefix: usize) -> String {
    let mut s = String::from("  .text\n  .globl last_fn\n  .type last_fn,@function\nlast_fn:\n");
    for _ in 0..prefix {
        s.push_str("  addi a0,a0,1\n");
    }
    s.push_str("  .balign 8\n  addi a0,a0,1\n  tail twice\n  .size last_fn,.-last_fn\n");
    s
}

/// `R_RISCV_NONE`s of `.rela.text` past the end of `.text` (readelf's view): (offset, end).
fn none_past_text_end(exe: &Path) -> Vec<(u64, u64)> {
    let sections = binutils::sections(exe);
    let text = sections.iter().find(|s| s.name == ".text").expect(".text");
    let end = text.address + text.size;
    binutils::relocations(exe)
        .iter()
        .filter(|rs| rs.name == ".rela.text")
        .flat_map(|rs| rs.entries.iter())
        .filter(|r| r.kind == "R_RISCV_NONE" && r.offset > end)
        .map(|r| (r.offset, end))
        .collect()
}

/// Builds the program in the layouts below until ld leaves a `R_RISCV_NONE` past the end
/// of `.text`; panics if none does (the toolchain no longer shows the behaviour).
fn program_with_none_past_text_end(dir: &Path) -> PathBuf {
    let c = dir.join("prog.c");
    std::fs::write(&c, PROGRAM).expect("write prog.c");
    let mut tried = Vec::new();
    for march in ["rv64gc", "rv64g"] {
        for prefix in 0..4 {
            let s = dir.join(format!("last-{march}-{prefix}.S"));
            std::fs::write(&s, last_function(prefix)).expect("write the assembly");
            let exe = dir.join(format!("prog-{march}-{prefix}"));
            let out = Command::new("riscv64-linux-gnu-gcc")
                .arg(format!("-march={march}"))
                .args([
                    "-mabi=lp64d",
                    "-O2",
                    "-fpatchable-function-entry=8",
                    "-fno-pie",
                    "-no-pie",
                    "-Wl,-q",
                ])
                .arg(&c)
                .arg(&s)
                .arg("-o")
                .arg(&exe)
                .output()
                .expect("run riscv64-linux-gnu-gcc");
            assert!(out.status.success(), "gcc: {}", describe(&out));
            if !none_past_text_end(&exe).is_empty() {
                return exe;
            }
            tried.push(exe.display().to_string());
        }
    }
    panic!("ld left no R_RISCV_NONE past the end of .text in any of {tried:?}");
}

#[test]
fn a_none_relocation_past_the_end_of_text_is_accepted_by_every_command() {
    let dir = scratch_dir("none-past-text-end");
    let exe = program_with_none_past_text_end(&dir);
    let (at, end) = none_past_text_end(&exe)[0];

    let out = run(&["report"], &exe);
    assert_eq!(
        out.status.code(),
        Some(0),
        "report (R_RISCV_NONE at {at:#x}, .text ends at {end:#x}): {}",
        describe(&out)
    );
    let report = report_json(&exe);
    assert_eq!(report["sites"], 2, "main and twice have pads: {report}");
    assert_eq!(report["functions"].as_array().map(Vec::len), Some(2));

    let out = run(&["check", "--min-sites", "2", "--max-pad", "16"], &exe);
    assert_eq!(out.status.code(), Some(0), "check: {}", describe(&out));

    let rewritten = dir.join("prog.pt");
    let out = padtrim()
        .arg("rewrite")
        .arg(&exe)
        .arg("-o")
        .arg(&rewritten)
        .output()
        .expect("run padtrim rewrite");
    assert_eq!(out.status.code(), Some(0), "rewrite: {}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("no mismatches") && !text.contains("warning"),
        "rewrite did not verify cleanly: {}",
        describe(&out)
    );
    let out = padtrim()
        .arg("verify")
        .arg(&exe)
        .arg(&rewritten)
        .output()
        .expect("run padtrim verify");
    assert_eq!(out.status.code(), Some(0), "verify: {}", describe(&out));

    // The rewritten program still reads as a program with a table, and runs the same.
    assert_eq!(report_json(&rewritten)["sites"], 2);
    for args in [&[][..], &["x", "y"][..]] {
        let before = run_qemu(&exe, args, &[]);
        let after = run_qemu(&rewritten, args, &[]);
        assert_eq!(
            before.status.code(),
            Some(0),
            "original: {}",
            describe(&before)
        );
        assert_eq!(
            before.status.code(),
            after.status.code(),
            "{}",
            describe(&after)
        );
        assert_eq!(before.stdout, after.stdout, "{}", describe(&after));
    }
}

/// Sets the symbol of every entry of the relocation section called `name` (the first one
/// with entries) to an index far outside its symbol table.
fn break_symbols_of(path: &Path, name: &str, out: &Path) {
    let mut data = std::fs::read(path).expect("read the input");
    let is_64 = data[4] == 2;
    let section = binutils::sections(path)
        .into_iter()
        .find(|s| s.name == name && s.size > 0)
        .unwrap_or_else(|| panic!("{} has no {name}", path.display()));
    assert_eq!(section.kind, "RELA", "{name}");
    let (entry, info_at, info_len) = if is_64 { (24, 8, 8) } else { (12, 4, 4) };
    for k in 0..(section.size / entry) {
        let at = (section.offset + k * entry) as usize + info_at;
        let info = data[at..at + info_len]
            .iter()
            .rev()
            .fold(0u64, |v, &b| (v << 8) | u64::from(b));
        let broken = if is_64 {
            (0xfff0 << 32) | (info & 0xffff_ffff)
        } else {
            (0xfff0 << 8) | (info & 0xff)
        };
        for (i, b) in data[at..at + info_len].iter_mut().enumerate() {
            *b = (broken >> (8 * i)) as u8;
        }
    }
    std::fs::write(out, data).expect("write the damaged copy");
}

/// `report --json` without the file name.
fn report_without_name(path: &Path) -> serde_json::Value {
    let mut v = report_json(path);
    v.as_object_mut().expect("an object").remove("file");
    v
}

#[test]
fn report_and_check_ignore_relocation_sections_they_do_not_need() {
    // Linked programs: .rela.text (kept by -Wl,-q) is the rewriter's, not the scan's; in
    // an object, relocations of data and debug sections apply to neither the table nor code.
    for (name, section) in [
        ("basic-rv64gc-p8-O0-nopie", ".rela.text"),
        ("basic-rv64gc-p8-O0-nopie", ".rela.debug_info"),
        ("basic-rv64gc-p8-O2-pie", ".rela.text"),
        ("basic-rv64gc-p8-O2-pie-obj", ".rela.rodata"),
        ("basic-rv64gc-p8-O0-nopie-obj", ".rela.debug_info"),
        ("portable-rv32gc-p8-O2-obj", ".rela.data.rel.ro.local"),
    ] {
        let original = &artifact(name).path;
        let dir = scratch_dir(&format!("unneeded-relocations-{name}{section}"));
        let damaged = dir.join(name);
        break_symbols_of(original, section, &damaged);

        assert_eq!(
            report_without_name(&damaged),
            report_without_name(original),
            "{name} with a broken {section}"
        );
        let out = run(&["report"], &damaged);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", describe(&out));
        let out = run(&["check", "--max-pad", "16"], &damaged);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", describe(&out));

        let out = padtrim()
            .arg("rewrite")
            .arg(&damaged)
            .arg("-o")
            .arg(dir.join("rewritten"))
            .output()
            .expect("run padtrim rewrite");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", describe(&out));
        assert!(
            stderr.contains(section) && stderr.contains("refers to symbol"),
            "{name}: {}",
            describe(&out)
        );
    }
}

#[test]
fn report_still_refuses_a_broken_relocation_section_it_needs() {
    // An object's table relocations are the table: broken, the file is unusable.
    let name = "basic-rv64gc-p8-O2-pie-obj";
    let dir = scratch_dir("needed-relocations-broken");
    let damaged = dir.join(name);
    break_symbols_of(
        &artifact(name).path,
        ".rela__patchable_function_entries",
        &damaged,
    );
    for args in [&["report"][..], &["check", "--max-pad", "16"][..]] {
        let out = run(args, &damaged);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        assert!(
            stderr.contains("refers to symbol"),
            "{args:?}: {}",
            describe(&out)
        );
    }
}
