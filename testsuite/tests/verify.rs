//! `padtrim verify`: every rewrite of the corpus is proven right by translation validation,
//! deliberate corruptions of a good rewrite are each reported at the address where they were
//! made, and `padtrim rewrite` refuses to write what fails verification.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use padtrim_testsuite::{
    artifact, binutils, corpus, describe, rewrite, scratch_dir, verify, Artifact, ArtifactKind,
};
use serde_json::Value;

/// Slot sizes and layouts every linked corpus file is rewritten with.
const COMBOS: &[(u32, &str)] = &[
    (4, "pack"),
    (8, "pack"),
    (0, "pack"),
    (0, "in-place"),
    (4, "in-place"),
    (8, "in-place"),
];

/// Rewriter bugs that verify finds in the corpus, by the signature of their mismatches
/// (category, text in what was found). Each must still be found (so the list cannot go
/// stale): when the rewriter is fixed, remove it.
const KNOWN_BUGS: &[(&str, &str, &str)] = &[];

/// The program the corruption tests start from: a PIE with jump tables in `.rodata`.
const BASE: &str = "basic-rv64gc-p8-O2-pie";

/// `padtrim rewrite --slot SLOT --layout LAYOUT --json`, and `--no-verify` unless `verify`.
fn rewrite_as(input: &Path, output: &Path, slot: u32, layout: &str, verify: bool) -> Output {
    let slot = slot.to_string();
    let mut args = vec!["--slot", &slot, "--layout", layout, "--json"];
    if !verify {
        args.push("--no-verify");
    }
    rewrite(input, output, &args)
}

/// Runs `padtrim verify --json`; returns the exit code and the report.
fn verify_json(original: &Path, rewritten: &Path) -> (Option<i32>, Value, Output) {
    let out = verify(original, rewritten, &["--json"]);
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), report, out)
}

fn mismatches(report: &Value) -> Vec<Value> {
    report["mismatches"].as_array().cloned().unwrap_or_default()
}

fn count(report: &Value, what: &str) -> u64 {
    report["counts"][what].as_u64().unwrap_or(0)
}

/// The known bugs that explain every mismatch of the report (None if one is unexplained).
fn known_bugs(report: &Value) -> Option<BTreeSet<usize>> {
    let mut seen = BTreeSet::new();
    for m in mismatches(report) {
        let k = KNOWN_BUGS.iter().position(|(category, found, _)| {
            m["category"] == *category && m["found"].as_str().unwrap_or("").contains(found)
        })?;
        seen.insert(k);
    }
    (!seen.is_empty() && report["mismatch_count"].as_u64() == Some(mismatches(report).len() as u64))
        .then_some(seen)
}

fn linked() -> Vec<&'static Artifact> {
    corpus()
        .iter()
        .filter(|a| matches!(a.kind, ArtifactKind::Executable | ArtifactKind::SharedLib))
        .collect()
}

#[test]
fn every_corpus_rewrite_verifies() {
    let dir = scratch_dir("verify-corpus");
    let (mut verified, mut refused, mut failures) = (0usize, Vec::new(), Vec::new());
    let mut bugs_seen = BTreeSet::new();
    let mut caught = Vec::new();
    for a in linked() {
        for &(slot, layout) in COMBOS {
            let out = dir.join(format!("{}-{slot}-{layout}", a.name));
            let rw = rewrite_as(&a.path, &out, slot, layout, false);
            if !rw.status.success() {
                // A refusal (e.g. 4-byte slots from 2-byte pads growing in place) is the
                // rewrite tests' business; verify has nothing to check.
                refused.push(format!("{} {slot} {layout}", a.name));
                continue;
            }
            let (code, report, raw) = verify_json(&a.path, &out);
            let n = report["mismatch_count"].as_u64();
            match (code, n) {
                (Some(0), Some(0)) => {
                    verified += 1;
                    assert!(
                        count(&report, "instructions") > 0 && count(&report, "symbols") > 0,
                        "{} {slot} {layout}: nothing was checked: {report}",
                        a.name
                    );
                    if a.pad_nops > 0 {
                        assert_eq!(
                            report["slot_bytes"].as_u64(),
                            Some(u64::from(slot.min(a.pad_bytes_after_symbol()))),
                            "{} {slot} {layout}: inferred slot size",
                            a.name
                        );
                    }
                }
                (Some(1), Some(n)) if n > 0 => match known_bugs(&report) {
                    Some(k) => {
                        bugs_seen.extend(k);
                        caught.push(format!("{} {slot} {layout}", a.name));
                    }
                    None => failures.push(format!(
                        "{} slot {slot} {layout}: {n} mismatches, first: {}",
                        a.name,
                        mismatches(&report)
                            .iter()
                            .take(5)
                            .map(|m| m.to_string())
                            .collect::<Vec<_>>()
                            .join("\n  ")
                    )),
                },
                _ => failures.push(format!(
                    "{} slot {slot} {layout}: verify gave no usable answer\n{}",
                    a.name,
                    describe(&raw)
                )),
            }
        }
    }
    eprintln!(
        "verified {verified} rewrites; {} refused by the rewriter; {} caught as known rewriter bugs: {caught:?}",
        refused.len(),
        caught.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        verified >= linked().len() * 2,
        "too few rewrites verified ({verified}); refused: {refused:?}"
    );
    for (k, (_, _, what)) in KNOWN_BUGS.iter().enumerate() {
        assert!(
            bugs_seen.contains(&k),
            "known rewriter bug no longer found, remove it from KNOWN_BUGS: {what}"
        );
    }
}

/// Pad bytes at and after the function symbol of a corpus file.
trait PadShape {
    fn pad_bytes_after_symbol(&self) -> u32;
}

impl PadShape for Artifact {
    fn pad_bytes_after_symbol(&self) -> u32 {
        (self.pad_nops - self.pre_nops) * self.nop_bytes()
    }
}

/// A good rewrite of [`BASE`] and helpers to corrupt copies of it.
struct Good {
    original: PathBuf,
    path: PathBuf,
    bytes: Vec<u8>,
    sections: Vec<binutils::Section>,
    dir: PathBuf,
}

impl Good {
    fn new(test: &str) -> Good {
        let a = artifact(BASE);
        let dir = scratch_dir(test);
        let path = dir.join("good");
        let rw = rewrite_as(&a.path, &path, 4, "pack", true);
        assert!(rw.status.success(), "{}", describe(&rw));
        let (code, report, raw) = verify_json(&a.path, &path);
        assert_eq!(
            code,
            Some(0),
            "the good rewrite must verify: {}",
            describe(&raw)
        );
        assert_eq!(report["mismatch_count"], 0);
        Good {
            original: a.path.clone(),
            bytes: std::fs::read(&path).expect("read"),
            sections: binutils::sections(&path),
            path,
            dir,
        }
    }

    /// File offset of address `addr`.
    fn offset(&self, addr: u64) -> usize {
        let s = self
            .sections
            .iter()
            .find(|s| {
                s.flags.contains('A')
                    && s.kind != "NOBITS"
                    && addr >= s.address
                    && addr < s.address + s.size
            })
            .unwrap_or_else(|| panic!("{addr:#x} is in no section"));
        (s.offset + addr - s.address) as usize
    }

    fn section(&self, name: &str) -> &binutils::Section {
        self.sections
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no section {name}"))
    }

    fn read(&self, off: usize, n: usize) -> u64 {
        let mut v = 0u64;
        for (i, b) in self.bytes[off..off + n].iter().enumerate() {
            v |= u64::from(*b) << (8 * i);
        }
        v
    }

    /// Writes a copy with `edit` applied, verifies it, and returns the report.
    fn corrupt(&self, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> Value {
        let mut bytes = self.bytes.clone();
        edit(&mut bytes);
        assert_ne!(bytes, self.bytes, "{name}: the corruption changed nothing");
        let path = self.dir.join(name);
        std::fs::write(&path, &bytes).expect("write");
        let (code, report, raw) = verify_json(&self.original, &path);
        assert_eq!(
            code,
            Some(1),
            "{name}: verify must fail with exit 1\n{}",
            describe(&raw)
        );
        assert!(
            report["mismatch_count"].as_u64().unwrap_or(0) > 0,
            "{name}: {report}"
        );
        report
    }

    /// The first instruction of `.text` that `pick` accepts.
    fn insn(&self, pick: impl Fn(&binutils::Insn) -> bool) -> binutils::Insn {
        binutils::disassemble_section(&self.path, ".text")
            .into_iter()
            .find(|i| pick(i))
            .expect("an instruction of that kind in .text")
    }
}

fn write_le(bytes: &mut [u8], off: usize, n: usize, v: u64) {
    bytes[off..off + n].copy_from_slice(&v.to_le_bytes()[..n]);
}

/// Asserts that some mismatch of `categories` names new address `addr`.
fn assert_named(report: &Value, categories: &[&str], addr: u64, what: &str) {
    let all = mismatches(report);
    assert!(
        all.iter().any(
            |m| categories.contains(&m["category"].as_str().unwrap_or(""))
                && m["new"].as_u64() == Some(addr)
        ),
        "{what}: no {categories:?} mismatch at {addr:#x}; got:\n{}",
        all.iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn a_changed_branch_offset_is_caught() {
    let good = Good::new("verify-branch");
    let b = good.insn(|i| i.len == 4 && i.word & 0x7f == 0x63);
    let off = good.offset(b.address);
    // imm[2] of a B-type branch: the branch now goes 4 bytes further or nearer.
    let report = good.corrupt("branch", |bytes| {
        write_le(bytes, off, 4, u64::from(b.word ^ (1 << 9)))
    });
    assert_named(&report, &["branch"], b.address, "branch offset");
}

#[test]
fn a_changed_jal_is_caught() {
    let good = Good::new("verify-jal");
    let j = good.insn(|i| i.len == 4 && i.word & 0x7f == 0x6f);
    let off = good.offset(j.address);
    // imm[2] of a J-type jump.
    let report = good.corrupt("jal", |bytes| {
        write_le(bytes, off, 4, u64::from(j.word ^ (1 << 22)))
    });
    assert_named(&report, &["branch"], j.address, "jal offset");
}

#[test]
fn a_changed_auipc_is_caught() {
    let good = Good::new("verify-auipc");
    let a = good.insn(|i| i.len == 4 && i.word & 0x7f == 0x17);
    let off = good.offset(a.address);
    // One more 4 KiB page in the upper immediate.
    let report = good.corrupt("auipc", |bytes| {
        write_le(bytes, off, 4, u64::from(a.word.wrapping_add(1 << 12)))
    });
    assert_named(
        &report,
        &["auipc pair", "call", "auipc"],
        a.address,
        "auipc hi20",
    );
}

#[test]
fn a_changed_register_is_caught() {
    let good = Good::new("verify-register");
    // A register-register operation (OP): flip the lowest bit of rd.
    let op = good.insn(|i| i.len == 4 && i.word & 0x7f == 0x33 && (i.word >> 7) & 31 != 0);
    let off = good.offset(op.address);
    let report = good.corrupt("register", |bytes| {
        write_le(bytes, off, 4, u64::from(op.word ^ (1 << 7)))
    });
    assert_named(&report, &["instruction"], op.address, "register");
}

#[test]
fn a_changed_init_array_pointer_is_caught() {
    let good = Good::new("verify-init-array");
    let init = good.section(".init_array").address;
    let off = good.offset(init);
    let v = good.read(off, 8);
    let report = good.corrupt("init-array", |bytes| write_le(bytes, off, 8, v + 4));
    assert_named(
        &report,
        &["data word", "dynamic word", "bytes"],
        init,
        ".init_array pointer",
    );
}

#[test]
fn a_changed_jump_table_entry_is_caught() {
    let good = Good::new("verify-jump-table");
    // The rewritten file's own relocations give the new places of the table entries.
    let rodata = binutils::relocations(&good.path)
        .into_iter()
        .find(|r| r.name == ".rela.rodata")
        .expect(".rela.rodata");
    let entry = rodata
        .entries
        .iter()
        .find(|r| r.kind == "R_RISCV_ADD32")
        .expect("a jump table entry (ADD32/SUB32 pair)");
    let off = good.offset(entry.offset);
    let v = good.read(off, 4);
    let report = good.corrupt("jump-table", |bytes| {
        write_le(bytes, off, 4, (v + 2) & 0xffff_ffff)
    });
    assert_named(&report, &["difference"], entry.offset, "jump table entry");
}

#[test]
fn a_changed_frame_range_is_caught() {
    let good = Good::new("verify-frame");
    // The first FDE's address range (an ADD32/SUB32 pair in the output's relocations).
    let frames = binutils::relocations(&good.path)
        .into_iter()
        .find(|r| r.name == ".rela.eh_frame")
        .expect(".rela.eh_frame");
    let range = frames
        .entries
        .iter()
        .find(|r| r.kind == "R_RISCV_ADD32")
        .expect("an FDE range");
    let off = good.offset(range.offset);
    let v = good.read(off, 4);
    let report = good.corrupt("frame", |bytes| {
        write_le(bytes, off, 4, (v + 2) & 0xffff_ffff)
    });
    assert_named(&report, &["difference"], range.offset, "FDE range field");
    assert!(
        mismatches(&report)
            .iter()
            .any(|m| m["category"] == "call frame information"),
        "the decoded FDE disagrees too: {report}"
    );
}

#[test]
fn a_changed_symbol_value_is_caught() {
    let good = Good::new("verify-symbol");
    let symtab = good.section(".symtab");
    let sym = binutils::symbols(&good.path)
        .into_iter()
        .find(|s| s.kind == "FUNC" && s.size > 0 && s.name == "main")
        .expect("main in .symtab");
    // Elf64_Sym: st_value at byte 8 of a 24-byte entry.
    let off = symtab.offset as usize + 24 * sym.index + 8;
    assert_eq!(good.read(off, 8), sym.value, "symbol entry located");
    let report = good.corrupt("symbol", |bytes| write_le(bytes, off, 8, sym.value + 2));
    assert_named(&report, &["symbol"], sym.value + 2, "symbol value");
}

#[test]
fn swapped_mcount_loc_entries_are_caught() {
    let good = Good::new("verify-mcount");
    let table = good.section("__mcount_loc");
    let off = table.offset as usize;
    let (a, b) = (good.read(off, 8), good.read(off + 8, 8));
    assert!(a < b, "the table is sorted");
    let report = good.corrupt("mcount", |bytes| {
        write_le(bytes, off, 8, b);
        write_le(bytes, off + 8, 8, a);
    });
    assert_named(&report, &["__mcount_loc"], table.address, "first entry");
    assert_named(
        &report,
        &["__mcount_loc"],
        table.address + 8,
        "second entry",
    );
}

#[test]
fn a_changed_constant_byte_is_caught() {
    let good = Good::new("verify-bytes");
    let rodata = good.section(".rodata");
    // The last byte of .rodata is string data, under no relocation.
    let at = rodata.address + rodata.size - 2;
    let off = good.offset(at);
    let report = good.corrupt("bytes", |bytes| bytes[off] ^= 0x20);
    assert_named(&report, &["bytes"], at, ".rodata byte");
}

#[test]
fn rewrite_verifies_before_writing() {
    let a = artifact(BASE);
    let dir = scratch_dir("verify-rewrite");
    let out = dir.join("out");
    let rw = rewrite_as(&a.path, &out, 4, "pack", true);
    assert!(rw.status.success(), "{}", describe(&rw));
    let stats: Value = serde_json::from_slice(&rw.stdout).expect("JSON");
    assert_eq!(stats["verify"]["mismatch_count"], 0, "{stats}");
    assert!(stats["verify"]["counts"]["instructions"].as_u64() > Some(0));
    assert!(stats["verify"]["counts"]["sites"].as_u64() > Some(0));
    let unverified = rewrite_as(&a.path, &dir.join("out2"), 4, "pack", false);
    let stats: Value = serde_json::from_slice(&unverified.stdout).expect("JSON");
    assert!(stats.get("verify").is_none(), "--no-verify: {stats}");

    // A rewrite that fails verification (a known rewriter bug, while it lasts) is an error
    // and leaves no output behind; once the bug is fixed, the rewrite verifies.
    for b in linked() {
        let target = dir.join(format!("{}.out", b.name));
        let checked = rewrite_as(&b.path, &target, 4, "in-place", true);
        let unchecked = rewrite_as(&b.path, &dir.join("x"), 4, "in-place", false);
        if !unchecked.status.success() {
            continue;
        }
        let (code, _, _) = verify_json(&b.path, &dir.join("x"));
        if code == Some(0) {
            assert!(
                checked.status.success(),
                "{}: {}",
                b.name,
                describe(&checked)
            );
        } else {
            assert_eq!(
                checked.status.code(),
                Some(3),
                "{}: {}",
                b.name,
                describe(&checked)
            );
            assert!(
                String::from_utf8_lossy(&checked.stderr).contains("failed its own verification"),
                "{}",
                describe(&checked)
            );
            assert!(
                !target.exists(),
                "{}: output written despite the failure",
                b.name
            );
            return;
        }
    }
}

#[test]
fn unusable_input_is_exit_2_naming_the_file() {
    let a = artifact(BASE);
    let dir = scratch_dir("verify-bad-input");
    let junk = dir.join("junk");
    std::fs::write(&junk, b"\x7fELF not really").expect("write");
    let (code, _, raw) = verify_json(&a.path, &junk);
    assert_eq!(code, Some(2), "{}", describe(&raw));
    let err = String::from_utf8_lossy(&raw.stderr);
    assert!(err.contains("junk") && err.lines().count() == 1, "{err}");
    let (code, _, raw) = verify_json(&junk, &a.path);
    assert_eq!(code, Some(2), "{}", describe(&raw));
    // A file is trivially a correct rewrite of itself.
    let (code, report, raw) = verify_json(&a.path, &a.path);
    assert_eq!(code, Some(0), "{}", describe(&raw));
    assert!(count(&report, "instructions") > 0);
}
