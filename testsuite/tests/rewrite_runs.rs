//! `padtrim rewrite`: every runnable corpus program, rewritten with every slot size and
//! both layouts, must behave exactly as the original (stdout, stderr, exit status), pass
//! `check --max-pad` at its new slot size, print no readelf/objdump warnings, and rewrite
//! to itself; through the default (patched) writer with no verify warning at all, and
//! through the builder writer on two of the matrices.

use std::path::Path;
use std::process::Output;

use padtrim_testsuite::{
    binutils, check, corpus, describe, padtrim, rewrite, rewrite_stats, same_behaviour,
    scratch_dir, Artifact, ArtifactKind,
};

/// `padtrim rewrite --slot SLOT --layout LAYOUT --json --writer WRITER`.
fn rewrite_as(input: &Path, output: &Path, slot: u32, layout: &str, writer: &str) -> Output {
    let slot = slot.to_string();
    let args = [
        "--slot", &slot, "--layout", layout, "--json", "--writer", writer,
    ];
    rewrite(input, output, &args)
}

fn programs() -> Vec<&'static Artifact> {
    corpus()
        .iter()
        .filter(|a| a.runnable && a.kind == ArtifactKind::Executable)
        .collect()
}

fn check_program(a: &Artifact, slot: u32, layout: &str, writer: &str) -> Result<(), String> {
    let dir = scratch_dir(&format!("rewrite-{}-{slot}-{layout}-{writer}", a.name));
    let out_path = dir.join(&a.name);
    let rw = rewrite_as(&a.path, &out_path, slot, layout, writer);
    // 4-byte pads of c.nops hold a 4-byte slot only where they are 4-byte aligned; the
    // others need 2 bytes more, which the in-place layout cannot find: a refusal, not a bug.
    let must_grow =
        layout == "in-place" && slot == 4 && a.pad_bytes() == 4 && a.nop_kind() == "c.nop";
    if must_grow
        && rw.status.code() == Some(2)
        && String::from_utf8_lossy(&rw.stderr).contains("would grow")
        && !out_path.exists()
    {
        return Ok(());
    }
    if !rw.status.success() {
        return Err(format!(
            "{} slot {slot} {layout}: rewrite failed\n{}",
            a.name,
            describe(&rw)
        ));
    }
    let stats = rewrite_stats(&rw).map_err(|e| format!("{}: {e}", a.name))?;
    if stats["unchanged"] == false && stats["writer"] != writer {
        return Err(format!(
            "{} slot {slot} {layout}: asked for the {writer} writer, used {}",
            a.name, stats["writer"]
        ));
    }
    // The patched writer keeps `.dynsym` and its hash and version tables as the linker
    // made them: verify finds every dynamic symbol as before, with no warning at all.
    if writer == "patched" && stats["unchanged"] == false && stats["verify"]["warning_count"] != 0 {
        return Err(format!(
            "{} slot {slot} {layout}: verify warnings: {}",
            a.name, stats["verify"]["warnings"]
        ));
    }
    let original = a.run(&[]);
    let rewritten = a.run_file(&out_path, &[]);
    same_behaviour(&original, &rewritten)
        .map_err(|e| format!("{} slot {slot} {layout}: {e}", a.name))?;
    let warnings = binutils::warnings(&out_path, &["-a", "-W"], &["-d"]);
    if !warnings.trim().is_empty() {
        return Err(format!(
            "{} slot {slot} {layout}: binutils warnings:\n{warnings}",
            a.name
        ));
    }
    if slot > 0 {
        let max = (slot + a.pre_nops * a.nop_bytes()).to_string();
        let chk = check(&out_path, &["--max-pad", &max]);
        if !chk.status.success() {
            return Err(format!(
                "{} slot {slot} {layout}: check --max-pad {max} fails\n{}",
                a.name,
                describe(&chk)
            ));
        }
    } else {
        // Every pad removed: the table is emptied, not left pointing at code.
        let rep = padtrim()
            .args(["report", "--json"])
            .arg(&out_path)
            .output()
            .expect("report");
        let json: serde_json::Value = serde_json::from_slice(&rep.stdout)
            .map_err(|e| format!("{}: report --json of the output: {e}", a.name))?;
        let (sites, invalid) = (&json["sites"], &json["invalid_entries"]);
        if sites != 0 || invalid != 0 || json["zero_entries"] != 0 {
            return Err(format!(
                "{} slot 0 {layout}: the output's table still lists {sites} sites, {invalid} \
                 invalid entries (expected an empty table)",
                a.name
            ));
        }
    }
    // Rewriting the output again changes nothing.
    let again = dir.join(format!("{}.again", a.name));
    let rw2 = rewrite_as(&out_path, &again, slot, layout, writer);
    if !rw2.status.success() || std::fs::read(&again).ok() != std::fs::read(&out_path).ok() {
        return Err(format!(
            "{} slot {slot} {layout}: second rewrite is not a no-op\n{}",
            a.name,
            describe(&rw2)
        ));
    }
    Ok(())
}

/// Rewrites that are known not to work yet (program, slot, layout), each still checked to
/// fail so the list cannot go stale. Empty: every corpus program rewrites and runs.
const KNOWN_FAILURES: &[(&str, u32, &str)] = &[];

fn run_matrix(slot: u32, layout: &str, writer: &str) {
    assert!(!programs().is_empty(), "corpus has runnable programs");
    let mut failures = Vec::new();
    let mut fixed = Vec::new();
    for a in programs() {
        let known = KNOWN_FAILURES
            .iter()
            .any(|&(n, s, l)| n == a.name && s == slot && l == layout);
        match (check_program(a, slot, layout, writer), known) {
            (Err(e), false) => failures.push(e),
            (Ok(()), true) => fixed.push(a.name.clone()),
            _ => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} programs failed:\n{}",
        failures.len(),
        programs().len(),
        failures.join("\n\n")
    );
    assert!(
        fixed.is_empty(),
        "now working, remove from KNOWN_FAILURES: {fixed:?}"
    );
}

#[test]
fn slot4_pack() {
    run_matrix(4, "pack", "patched");
}

#[test]
fn slot4_in_place() {
    run_matrix(4, "in-place", "patched");
}

#[test]
fn slot8_pack() {
    run_matrix(8, "pack", "patched");
}

#[test]
fn slot8_in_place() {
    run_matrix(8, "in-place", "patched");
}

#[test]
fn slot0_pack() {
    run_matrix(0, "pack", "patched");
}

#[test]
fn slot0_in_place() {
    run_matrix(0, "in-place", "patched");
}

/// The builder writer, the fallback for what the patched writer cannot express, kept working
/// on real programs.
#[test]
fn builder_writer_slot4_pack() {
    run_matrix(4, "pack", "builder");
}

#[test]
fn builder_writer_slot8_in_place() {
    run_matrix(8, "in-place", "builder");
}

#[test]
fn input_is_never_modified_and_bad_input_leaves_no_output() {
    let a = programs()[0];
    let before = std::fs::read(&a.path).expect("read");
    let dir = scratch_dir("rewrite-no-output");
    let out = dir.join("out");
    let rw = rewrite_as(&a.path, &out, 4, "pack", "patched");
    assert!(rw.status.success(), "{}", describe(&rw));
    assert_eq!(
        std::fs::read(&a.path).expect("read"),
        before,
        "input changed"
    );
    // Same path as input: refused, input untouched.
    let same = rewrite_as(&a.path, &a.path, 4, "pack", "patched");
    assert_eq!(same.status.code(), Some(2), "{}", describe(&same));
    assert_eq!(std::fs::read(&a.path).expect("read"), before);
    // Garbage input: exit 2, no output file.
    let junk = dir.join("junk");
    std::fs::write(&junk, b"\x7fELF not really").expect("write");
    let bad_out = dir.join("bad-out");
    let bad = rewrite_as(&junk, &bad_out, 4, "pack", "patched");
    assert_eq!(bad.status.code(), Some(2), "{}", describe(&bad));
    assert!(!bad_out.exists(), "partial output left behind");
    // No relocations: refused with the link hint.
    let stripped = dir.join("no-relocs");
    let strip = std::process::Command::new("riscv64-linux-gnu-strip")
        .args(["--remove-section=.rela.text", "-o"])
        .arg(&stripped)
        .arg(&a.path)
        .output()
        .expect("strip");
    assert!(strip.status.success());
    let nr = rewrite_as(&stripped, &dir.join("nr-out"), 4, "pack", "patched");
    assert_eq!(nr.status.code(), Some(2), "{}", describe(&nr));
    assert!(
        String::from_utf8_lossy(&nr.stderr).contains("--emit-relocs"),
        "{}",
        describe(&nr)
    );
}
