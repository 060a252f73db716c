//! `padtrim rewrite` on relocatable objects: rewritten objects link into working programs.
//!
//! Every corpus object is rewritten with `--slot 4`, `--slot 8` (when its pads have 8 bytes
//! after the function symbol) and `--slot 0`. Each rewritten object must print no
//! readelf/objdump warnings, report pads of the slot size, and rewrite to itself. It is then
//! linked with the link line of the original (rv64: the gcc/g++/clang++ driver; rv32, which
//! has no C library here: `ld -m elf32lriscv` without libc) next to the program linked from
//! the original object, and
//! - the program runs under qemu with the same stdout, stderr and exit status (the shared
//!   library object is linked into a library and run through its corpus user; C++
//!   exceptions unwind through the moved `.eh_frame`),
//! - after the linker's relaxation every pad has the slot size, 4-byte slots are 4-byte
//!   aligned, and `check --max-pad SLOT` passes (`--slot 0`: no site is left),
//! - every line-table row, FDE range and CFA advance location moved with its code.
//!
//! Hand-written assembly assembled by clang with `-mno-relax` covers what the assembler
//! resolves without relocations (branches across pads, CFA advances), the refusal of a
//! branch that no longer reaches and of constant line tables.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use padtrim_testsuite::binutils;
use padtrim_testsuite::{
    check, corpus, describe, report_json, rewrite, rewrite_stats, run_qemu, same_behaviour,
    scratch_dir, Artifact, ArtifactKind, Linkage,
};

/// `padtrim rewrite --slot SLOT --json`.
fn rewrite_slot(input: &Path, output: &Path, slot: u32) -> Output {
    rewrite(input, output, &["--slot", &slot.to_string(), "--json"])
}

fn run(cmd: &mut Command) -> Result<Output, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!("{cmd:?} failed\n{}", describe(&out)))
    }
}

/// Everything readelf and objdump print on stderr for `path` (debug sections included).
fn binutils_warnings(path: &Path) -> String {
    let readelf = ["-a", "-W", "--debug-dump=frames,info,line"];
    binutils::warnings(path, &readelf, &["-dr"])
}

/// Pad bytes after the function symbol in an artifact built with `=N,M`.
fn pad_after(a: &Artifact) -> u32 {
    a.pad_bytes() - a.pre_nops * a.nop_bytes()
}

/// The corpus objects.
fn objects() -> Vec<&'static Artifact> {
    corpus()
        .iter()
        .filter(|a| a.kind == ArtifactKind::Object)
        .collect()
}

/// Links `object` the way the corpus would link the original, plus `extra` flags; rv32
/// (no libc here) is linked by ld alone, unresolved library symbols left at zero: enough
/// for relaxation. With `no_relax`, the linker moves no code of its own.
fn link(a: &Artifact, object: &Path, out: &Path, no_relax: bool) -> Result<(), String> {
    match a.link_command(object, out) {
        Some(mut cmd) => {
            if no_relax {
                cmd.arg("-Wl,--no-relax");
            }
            run(&mut cmd).map(|_| ())
        }
        None if a.pointer_size == 4 => run(Command::new("riscv64-linux-gnu-ld")
            .args(["-m", "elf32lriscv", "-q", "--unresolved-symbols=ignore-all"])
            .args(["-e", "main"])
            .args(no_relax.then_some("--no-relax"))
            .arg(object)
            .arg("-o")
            .arg(out))
        .map(|_| ()),
        None => Err(format!("{}: no way to link this object", a.name)),
    }
}

/// Runs what was linked from an object: the program itself, or for the shared library
/// object, the corpus program that uses the library, with this library copy.
fn run_linked(a: &Artifact, linked: &Path, dir: &Path) -> Result<Output, String> {
    if a.linkage != Linkage::Shared {
        return Ok(run_qemu(linked, &[], &[]));
    }
    let user = corpus()
        .iter()
        .find(|p| {
            p.program == "use_shared"
                && p.kind == ArtifactKind::Executable
                && p.march == a.march
                && p.pad_nops == a.pad_nops
                && p.pre_nops == a.pre_nops
                && p.opt_level == a.opt_level
        })
        .ok_or_else(|| format!("{}: no corpus program uses this library", a.name))?;
    let lib_dir = dir.join(format!(
        "lib-{}",
        linked.file_name().unwrap_or_default().to_string_lossy()
    ));
    std::fs::create_dir_all(&lib_dir).map_err(|e| e.to_string())?;
    let lib_name = user
        .lib_dir
        .as_ref()
        .and_then(|d| std::fs::read_dir(d).ok())
        .and_then(|mut it| {
            it.find_map(|e| {
                let n = e.ok()?.file_name().to_string_lossy().into_owned();
                n.ends_with(".so").then_some(n)
            })
        })
        .ok_or_else(|| format!("{}: cannot find the library name", user.name))?;
    std::fs::copy(linked, lib_dir.join(lib_name)).map_err(|e| e.to_string())?;
    let lib = lib_dir.display().to_string();
    Ok(run_qemu(&user.path, &[], &[("LD_LIBRARY_PATH", &lib)]))
}

/// A function of a linked file: address and pad bytes after the symbol.
#[derive(Debug, Clone, Copy)]
struct Func {
    addr: u64,
    pad: u64,
}

/// Functions of a linked file by name (names that occur twice are dropped), and sorted by
/// address for lookups.
struct Functions {
    by_name: HashMap<String, Func>,
    sorted: Vec<(u64, u64, String)>,
}

impl Functions {
    fn of(path: &Path) -> Functions {
        let report = report_json(path);
        let mut pads: HashMap<u64, u64> = HashMap::new();
        for f in report["functions"].as_array().into_iter().flatten() {
            let addr = f["address"].as_u64().unwrap_or(0);
            let pad = f["pad_bytes"].as_u64().unwrap_or(0) - f["pre_bytes"].as_u64().unwrap_or(0);
            pads.insert(addr, pad);
        }
        let mut by_name: HashMap<String, Func> = HashMap::new();
        let mut twice = Vec::new();
        let mut sorted = Vec::new();
        for s in binutils::symbols(path) {
            if s.kind != "FUNC" || s.size == 0 || s.section_index.is_none() {
                continue;
            }
            let f = Func {
                addr: s.value,
                pad: pads.get(&s.value).copied().unwrap_or(0),
            };
            if by_name.insert(s.name.clone(), f).is_some() {
                twice.push(s.name.clone());
            }
            sorted.push((s.value, s.size, s.name));
        }
        for n in twice {
            by_name.remove(&n);
        }
        sorted.sort();
        Functions { by_name, sorted }
    }

    /// The function containing `addr` (or ending at it, for an end address).
    fn containing(&self, addr: u64, end: bool) -> Option<&str> {
        let probe = if end { addr.checked_sub(1)? } else { addr };
        let i = self.sorted.partition_point(|(a, _, _)| *a <= probe);
        let (a, s, n) = self.sorted.get(i.checked_sub(1)?)?;
        (probe < a + s).then_some(n.as_str())
    }
}

/// Maps a code address of the original program to the rewritten one: inside a function,
/// bytes after the pad move by the pad bytes removed, pad bytes collapse onto what follows
/// the new slot.
struct CodeMap {
    old: Functions,
    new: Functions,
}

impl CodeMap {
    fn map(&self, addr: u64, end: bool) -> Option<u64> {
        let name = self.old.containing(addr, end)?;
        let (o, n) = (self.old.by_name.get(name)?, self.new.by_name.get(name)?);
        let k = addr - o.addr;
        let k_new = if k < o.pad {
            k.min(n.pad)
        } else {
            k - (o.pad - n.pad)
        };
        Some(n.addr + k_new)
    }
}

/// Rows of `objdump --dwarf=decodedline`: (file, line, address).
fn line_rows(path: &Path) -> Vec<(String, u64, u64)> {
    let out = Command::new("riscv64-linux-gnu-objdump")
        .arg("--dwarf=decodedline")
        .arg(path)
        .output()
        .expect("objdump");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rows = Vec::new();
    for l in text.lines() {
        let t: Vec<&str> = l.split_whitespace().collect();
        if t.len() >= 3 {
            if let (Ok(line), Some(addr)) = (t[1].parse::<u64>(), t[2].strip_prefix("0x")) {
                if let Ok(a) = u64::from_str_radix(addr, 16) {
                    rows.push((t[0].to_string(), line, a));
                }
            }
        }
    }
    rows
}

/// Code locations of `readelf --debug-dump=frames`: every FDE's start and end, and every
/// row location an advance reaches, in order.
fn frame_locations(path: &Path) -> Vec<(u64, bool)> {
    let out = Command::new("riscv64-linux-gnu-readelf")
        .arg("--debug-dump=frames")
        .arg(path)
        .output()
        .expect("readelf");
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = |s: &str| u64::from_str_radix(s.trim(), 16).ok();
    let mut locs = Vec::new();
    for l in text.lines() {
        if let Some(pc) = l.split(" pc=").nth(1) {
            if let Some((b, e)) = pc.split_once("..") {
                if let (Some(b), Some(e)) = (hex(b), hex(e)) {
                    locs.push((b, false));
                    locs.push((e, true));
                }
            }
        } else if l.contains("DW_CFA_advance_loc") {
            if let Some(to) = l.rsplit(" to ").next().and_then(hex) {
                locs.push((to, false));
            }
        }
    }
    locs
}

/// Every line row and frame location of the original program, mapped, is in the
/// rewritten program in the same order. Returns how many were checked.
fn check_debug_moved(orig: &Path, new: &Path) -> Result<usize, String> {
    let map = CodeMap {
        old: Functions::of(orig),
        new: Functions::of(new),
    };
    let mut checked = 0;
    let (old_rows, new_rows) = (line_rows(orig), line_rows(new));
    if old_rows.len() != new_rows.len() {
        return Err(format!(
            "line table has {} rows, the original {}",
            new_rows.len(),
            old_rows.len()
        ));
    }
    for (o, n) in old_rows.iter().zip(&new_rows) {
        if let Some(want) = map.map(o.2, false) {
            checked += 1;
            if (o.0.as_str(), o.1, want) != (n.0.as_str(), n.1, n.2) {
                return Err(format!(
                    "line row {}:{} at {:#x} should move to {want:#x}, found {}:{} at {:#x}",
                    o.0, o.1, o.2, n.0, n.1, n.2
                ));
            }
        }
    }
    let (old_locs, new_locs) = (frame_locations(orig), frame_locations(new));
    if old_locs.len() != new_locs.len() {
        return Err(format!(
            "{} frame locations, the original has {}",
            new_locs.len(),
            old_locs.len()
        ));
    }
    for (&(o, end), &(n, _)) in old_locs.iter().zip(&new_locs) {
        if let Some(want) = map.map(o, end) {
            checked += 1;
            if want != n {
                return Err(format!(
                    "frame location {o:#x} should move to {want:#x}, found {n:#x}"
                ));
            }
        }
    }
    Ok(checked)
}

/// Counts per slot size, for the summary and the final assertions.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    rewritten: usize,
    linked: usize,
    ran: usize,
    debug_rows: usize,
}

/// Rewrites one object at one slot size and checks everything about it.
fn check_object(a: &Artifact, slot: u32, counts: &mut Counts) -> Result<(), String> {
    let dir = scratch_dir(&format!("rewrite-obj-{}-{slot}", a.name));
    let new_obj = dir.join(format!("{}.o", a.name));
    let rw = rewrite_slot(&a.path, &new_obj, slot);
    if !rw.status.success() {
        return Err(format!("rewrite failed\n{}", describe(&rw)));
    }
    rewrite_stats(&rw)?;
    counts.rewritten += 1;
    let warnings = binutils_warnings(&new_obj);
    if !warnings.trim().is_empty() {
        return Err(format!("binutils warnings on the object:\n{warnings}"));
    }
    // The object's own pads.
    let expect_pad = u64::from(slot.min(pad_after(a)));
    let before = report_json(&a.path);
    let after = report_json(&new_obj);
    check_pads(&after, &before, slot, expect_pad, false).map_err(|e| format!("object: {e}"))?;
    // Rewriting again changes nothing.
    let again = dir.join("again.o");
    let rw2 = rewrite_slot(&new_obj, &again, slot);
    if !rw2.status.success() || std::fs::read(&again).ok() != std::fs::read(&new_obj).ok() {
        return Err(format!("second rewrite is not a no-op\n{}", describe(&rw2)));
    }

    // Link both and compare.
    let orig_bin = dir.join("orig.linked");
    let new_bin = dir.join("new.linked");
    link(a, &a.path, &orig_bin, false)?;
    link(a, &new_obj, &new_bin, false)?;
    counts.linked += 1;
    let warnings = binutils_warnings(&new_bin);
    if !warnings.trim().is_empty() {
        return Err(format!("binutils warnings on the linked file:\n{warnings}"));
    }
    let linked_before = report_json(&orig_bin);
    let linked_after = report_json(&new_bin);
    check_pads(&linked_after, &linked_before, slot, expect_pad, true)
        .map_err(|e| format!("linked: {e}"))?;
    if slot > 0 {
        let max = slot.to_string();
        let chk = check(&new_bin, &["--max-pad", &max]);
        if !chk.status.success() {
            return Err(format!("check --max-pad {max} fails\n{}", describe(&chk)));
        }
    }
    // Line rows and CFI, linked without relaxation: relaxation depends on distances, so
    // with it the linker itself moves code differently in the two programs.
    let orig_fixed = dir.join("orig.norelax");
    let new_fixed = dir.join("new.norelax");
    link(a, &a.path, &orig_fixed, true)?;
    link(a, &new_obj, &new_fixed, true)?;
    counts.debug_rows += check_debug_moved(&orig_fixed, &new_fixed)?;
    if a.pointer_size == 4 {
        return Ok(());
    }
    let original = run_linked(a, &orig_bin, &dir)?;
    let rewritten = run_linked(a, &new_bin, &dir)?;
    if original.status.code() != Some(3) {
        return Err(format!(
            "the original object's program misbehaves\n{}",
            describe(&original)
        ));
    }
    same_behaviour(&original, &rewritten)?;
    counts.ran += 1;
    Ok(())
}

/// Pads in a report after a rewrite: the same sites as before (none for `--slot 0`), each
/// of `expect` bytes with nothing before the symbol; in a linked file, 4-byte slots are
/// 4-byte aligned.
fn check_pads(
    after: &serde_json::Value,
    before: &serde_json::Value,
    slot: u32,
    expect: u64,
    linked: bool,
) -> Result<(), String> {
    let sites = after["sites"].as_u64().unwrap_or(u64::MAX);
    if slot == 0 {
        return if sites == 0 {
            Ok(())
        } else {
            Err(format!("{sites} sites left after --slot 0"))
        };
    }
    if sites != before["sites"].as_u64().unwrap_or(0) || sites == 0 {
        return Err(format!(
            "{sites} sites, {} before",
            before["sites"].as_u64().unwrap_or(0)
        ));
    }
    for f in after["functions"].as_array().into_iter().flatten() {
        let (pad, pre, at) = (
            f["pad_bytes"].as_u64().unwrap_or(0),
            f["pre_bytes"].as_u64().unwrap_or(0),
            f["pad_address"].as_u64().unwrap_or(1),
        );
        if pad != expect || pre != 0 {
            return Err(format!(
                "{} has a {pad}-byte pad ({pre} before the symbol), expected {expect}",
                f["name"]
            ));
        }
        if linked && slot == 4 && at % 4 != 0 {
            return Err(format!(
                "{} has its slot at {at:#x}, not aligned",
                f["name"]
            ));
        }
    }
    Ok(())
}

fn run_slot(slot: u32) -> Counts {
    let mut counts = Counts::default();
    let mut failures = Vec::new();
    for a in objects() {
        if slot == 8 && pad_after(a) < 8 {
            continue;
        }
        if let Err(e) = check_object(a, slot, &mut counts) {
            failures.push(format!("{} --slot {slot}: {e}", a.name));
        }
    }
    eprintln!("--slot {slot}: {counts:?}");
    assert!(
        failures.is_empty(),
        "{} objects failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    counts
}

#[test]
fn objects_slot4_link_and_run() {
    let c = run_slot(4);
    let all = objects().len();
    assert_eq!(c.rewritten, all);
    assert_eq!(c.linked, all);
    assert!(c.ran >= 12, "{c:?}");
    assert!(c.debug_rows > 1000, "{c:?}");
}

#[test]
fn objects_slot8_link_and_run() {
    let c = run_slot(8);
    assert!(c.ran >= 9, "{c:?}");
    assert_eq!(c.rewritten, c.linked);
}

#[test]
fn objects_slot0_link_and_run() {
    let c = run_slot(0);
    assert_eq!(c.rewritten, objects().len());
    assert!(c.ran >= 12, "{c:?}");
}

/// Objects whose code the linker relaxes get an `R_RISCV_ALIGN` in front of 4-byte slots
/// that relaxation could misalign; `ld --no-relax` still honours it.
#[test]
fn slot4_alignment_survives_relaxation_and_no_relax() {
    let a = objects()
        .into_iter()
        .find(|a| {
            a.rvc && !a.function_sections && a.linkage == Linkage::Pie && a.program == "basic"
        })
        .expect("an rv64gc object without -ffunction-sections");
    let dir = scratch_dir("rewrite-obj-align");
    let new_obj = dir.join("new.o");
    let rw = rewrite_slot(&a.path, &new_obj, 4);
    assert!(rw.status.success(), "{}", describe(&rw));
    let aligns = binutils::relocations(&new_obj)
        .iter()
        .flat_map(|s| s.entries.iter())
        .filter(|r| r.kind == "R_RISCV_ALIGN")
        .count();
    let old_aligns = binutils::relocations(&a.path)
        .iter()
        .flat_map(|s| s.entries.iter())
        .filter(|r| r.kind == "R_RISCV_ALIGN")
        .count();
    assert!(
        aligns > old_aligns,
        "alignment reserves added: {old_aligns} -> {aligns}"
    );
    for (what, extra) in [("relax", None), ("no-relax", Some("-Wl,--no-relax"))] {
        let bin = dir.join(what);
        let mut cmd = a.link_command(&new_obj, &bin).expect("linkable");
        if let Some(x) = extra {
            cmd.arg(x);
        }
        run(&mut cmd).unwrap();
        let report = report_json(&bin);
        let funcs = report["functions"].as_array().expect("functions");
        assert!(!funcs.is_empty());
        for f in funcs {
            assert_eq!(f["pad_bytes"], 4, "{what}: {f}");
            assert_eq!(f["pad_address"].as_u64().unwrap() % 4, 0, "{what}: {f}");
        }
        let out = run_qemu(&bin, &[], &[]);
        assert_eq!(out.status.code(), Some(3), "{what}: {}", describe(&out));
    }
}

// ---------------------------------------------------------------------------------------
// Hand-written assembly, assembled without relaxation.

/// Functions with 16-byte `c.nop` pads whose cross-function branches and CFA advances
/// the assembler resolves itself under `-mno-relax`.
const HAND_ASM: &str = r#"
	.text
	.globl	pt_entry
	.type	pt_entry, @function
	.p2align 1
pt_entry:                       # (n) -> 2 * (n + 1), by jumping into pt_twice
	.cfi_startproc
	.rept 8
	c.nop
	.endr
	addi	a0, a0, 1
	beqz	a0, .Lzero
	j	.Ltwice_body
.Lzero:
	ret
	.cfi_endproc
	.size	pt_entry, .-pt_entry

	.globl	pt_twice
	.type	pt_twice, @function
pt_twice:                       # (n) -> 2 * n
	.cfi_startproc
	.rept 8
	c.nop
	.endr
.Ltwice_body:
	slli	a0, a0, 1
	ret
	.cfi_endproc
	.size	pt_twice, .-pt_twice

	.globl	pt_back
	.type	pt_back, @function
pt_back:                        # (n) -> 0 if n == 0, else 2 * (n - 1), branching back
	.cfi_startproc
	.rept 8
	c.nop
	.endr
	beq	a0, zero, .Lzero
	addi	a0, a0, -1
	jal	zero, .Ltwice_body
	.cfi_endproc
	.size	pt_back, .-pt_back

	.globl	pt_frame
	.type	pt_frame, @function
pt_frame:                       # (n) -> 2 * n + 1, with a stack frame and CFI
	.cfi_startproc
	.rept 8
	c.nop
	.endr
	addi	sp, sp, -16
	.cfi_def_cfa_offset 16
	sd	ra, 8(sp)
	.cfi_offset ra, -8
	call	pt_twice
	addi	a0, a0, 1
	ld	ra, 8(sp)
	.cfi_restore ra
	addi	sp, sp, 16
	.cfi_def_cfa_offset 0
	ret
	.cfi_endproc
	.size	pt_frame, .-pt_frame

	.section	__patchable_function_entries,"awo",@progbits,pt_entry
	.p2align	3
	.8byte	pt_entry
	.8byte	pt_twice
	.8byte	pt_back
	.8byte	pt_frame
"#;

const HAND_MAIN: &str = r#"
#include <stdio.h>
long pt_entry(long), pt_twice(long), pt_back(long), pt_frame(long);
int main(void)
{
    printf("%ld %ld %ld %ld %ld\n", pt_entry(5), pt_twice(7), pt_back(0), pt_back(4),
           pt_frame(20));
    return 3;
}
"#;

/// `c.beqz` at +4 reaching exactly 254 bytes forward, over a pad whose 4-byte slot
/// needs 2 bytes of padding in front: the branch can no longer reach.
fn far_branch_asm() -> String {
    let mut s = String::from(
        "\t.text\n\t.globl pt_a\n\t.type pt_a, @function\n\t.p2align 2\npt_a:\n\
         \tc.nop\n\tc.nop\n\tc.beqz a0, .Lfar\n\tc.li a1, 1\n\tret\n\t.size pt_a, .-pt_a\n\
         \t.globl pt_b\n\t.type pt_b, @function\npt_b:\n\tc.nop\n\tc.nop\n",
    );
    // pt_b starts at 10; .Lfar must be at 4 + 254 = 258.
    for _ in 0..((258 - 14) / 2) {
        s.push_str("\tc.li a1, 1\n");
    }
    s.push_str(".Lfar:\n\tret\n\t.size pt_b, .-pt_b\n");
    s.push_str(
        "\t.section __patchable_function_entries,\"awo\",@progbits,pt_a\n\t.p2align 3\n\
         \t.8byte pt_a\n\t.8byte pt_b\n",
    );
    s
}

fn assemble(dir: &Path, name: &str, source: &str, extra: &[&str]) -> PathBuf {
    let src = dir.join(format!("{name}.s"));
    std::fs::write(&src, source).unwrap();
    let obj = dir.join(format!("{name}.o"));
    run(Command::new("clang")
        .args([
            "--target=riscv64-linux-gnu",
            "-march=rv64gc",
            "-mno-relax",
            "-c",
        ])
        .args(extra)
        .arg(&src)
        .arg("-o")
        .arg(&obj))
    .unwrap();
    obj
}

fn build_program(dir: &Path, obj: &Path, name: &str) -> PathBuf {
    let main = dir.join("main.c");
    std::fs::write(&main, HAND_MAIN).unwrap();
    let out = dir.join(name);
    run(Command::new("riscv64-linux-gnu-gcc")
        .args(["-O2", "-Wl,-q", "-Wl,--no-relax"])
        .arg(&main)
        .arg(obj)
        .arg("-o")
        .arg(&out))
    .unwrap();
    out
}

#[test]
fn unrelocated_branches_and_cfa_advances_are_fixed() {
    let dir = scratch_dir("rewrite-obj-hand");
    let obj = assemble(&dir, "hand", HAND_ASM, &[]);
    let text_relocs: Vec<String> = binutils::relocations(&obj)
        .iter()
        .filter(|s| s.name == ".rela.text")
        .flat_map(|s| s.entries.iter().map(|r| r.kind.clone()))
        .collect();
    assert!(
        !text_relocs
            .iter()
            .any(|k| k.contains("BRANCH") || k.contains("JUMP")),
        "the assembler resolved the branches itself: {text_relocs:?}"
    );
    let orig = build_program(&dir, &obj, "orig");
    let expected = run_qemu(&orig, &[], &[]);
    assert_eq!(
        String::from_utf8_lossy(&expected.stdout),
        "12 14 0 6 41\n",
        "{}",
        describe(&expected)
    );
    for slot in [4, 8, 0] {
        let new_obj = dir.join(format!("hand{slot}.o"));
        let rw = rewrite_slot(&obj, &new_obj, slot);
        assert!(rw.status.success(), "{}", describe(&rw));
        assert!(binutils_warnings(&new_obj).trim().is_empty());
        let bin = build_program(&dir, &new_obj, &format!("new{slot}"));
        let out = run_qemu(&bin, &[], &[]);
        assert_eq!(
            out.stdout,
            expected.stdout,
            "slot {slot}: {}",
            describe(&out)
        );
        assert_eq!(out.status.code(), Some(3));
        let stats: serde_json::Value = serde_json::from_slice(&rw.stdout).unwrap();
        // pt_entry's j and pt_back's beq and jal cross pads; pt_frame's first advance
        // spans its pad.
        let fixups = stats["unrelocated_fixups"].as_u64().unwrap();
        assert!(fixups >= 4, "slot {slot}: {stats}");
        let checked = check_debug_moved(&orig, &bin).unwrap_or_else(|e| panic!("slot {slot}: {e}"));
        assert!(
            checked >= 12,
            "slot {slot}: {checked} frame locations checked"
        );
    }
}

#[test]
fn a_branch_that_no_longer_reaches_is_refused_with_its_address() {
    let dir = scratch_dir("rewrite-obj-far");
    let obj = assemble(&dir, "far", &far_branch_asm(), &[]);
    let dis = binutils::disassemble(&obj);
    assert!(
        dis.iter()
            .any(|i| i.address == 4 && i.mnemonic.contains("beqz")),
        "c.beqz at +4: {dis:?}"
    );
    let out_path = dir.join("far4.o");
    let rw = rewrite_slot(&obj, &out_path, 4);
    let err = String::from_utf8_lossy(&rw.stderr);
    assert_eq!(rw.status.code(), Some(2), "{}", describe(&rw));
    assert!(
        err.contains(".text+0x4") && err.contains("refusing"),
        "{err}"
    );
    assert!(!out_path.exists(), "no output after a refusal");
    // Slot 8 keeps the pads: nothing moves and nothing is refused.
    let rw = rewrite_slot(&obj, &dir.join("far8.o"), 8);
    assert!(rw.status.success(), "{}", describe(&rw));
}

#[test]
fn constant_line_tables_are_refused_until_stripped() {
    let dir = scratch_dir("rewrite-obj-debug");
    let obj = assemble(&dir, "handg", HAND_ASM, &["-g"]);
    let out_path = dir.join("handg4.o");
    let rw = rewrite_slot(&obj, &out_path, 4);
    let err = String::from_utf8_lossy(&rw.stderr);
    assert_eq!(rw.status.code(), Some(2), "{}", describe(&rw));
    assert!(
        err.contains(".debug_line") && err.contains("strip --strip-debug"),
        "{err}"
    );
    assert!(!out_path.exists());
    let stripped = dir.join("stripped.o");
    run(Command::new("riscv64-linux-gnu-strip")
        .arg("--strip-debug")
        .arg(&obj)
        .arg("-o")
        .arg(&stripped))
    .unwrap();
    let rw = rewrite_slot(&stripped, &out_path, 4);
    assert!(rw.status.success(), "{}", describe(&rw));
}

/// RV32 objects: pads of every shape rewrite, and ld's relaxation keeps 4-byte slots
/// aligned (checked by `check_object` through `ld -m elf32lriscv`).
#[test]
fn rv32_objects_are_covered() {
    let rv32: Vec<_> = objects()
        .into_iter()
        .filter(|a| a.pointer_size == 4)
        .collect();
    assert!(rv32.len() >= 2);
    let mut counts = Counts::default();
    for a in rv32 {
        for slot in [4, 0] {
            check_object(a, slot, &mut counts).unwrap_or_else(|e| panic!("{}: {e}", a.name));
        }
    }
    assert_eq!(counts.linked, counts.rewritten);
    assert!(counts.debug_rows > 0, "{counts:?}");
}

/// `--pre 4` keeps one 4-byte word of the pad in front of the function symbol (two
/// `c.nop`s, or one `nop`), with the 4-byte slot after it still aligned once linked.
#[test]
fn pre_bytes_stay_in_front_of_aligned_slots() {
    let with_pre: Vec<_> = objects()
        .into_iter()
        .filter(|a| a.pre_nops > 0 && a.pointer_size == 8)
        .collect();
    assert!(with_pre.len() >= 2, "objects built with =N,M");
    // Also one without -ffunction-sections, where the linker relaxes code in front of
    // most pads: the alignment reserve goes in front of the kept pre bytes.
    let basic = with_pre
        .iter()
        .find(|a| a.program == "basic" && a.rvc)
        .copied()
        .expect("an rv64gc =8,2 build of basic");
    let dir = scratch_dir("rewrite-obj-pre-relaxed");
    let relaxed = dir.join("basic-p8_2-relaxed.o");
    run(basic
        .compiler
        .command()
        .args([
            "-march=rv64gc",
            "-mabi=lp64d",
            "-O2",
            "-fpatchable-function-entry=8,2",
            "-c",
        ])
        .arg(&basic.sources[0])
        .arg("-o")
        .arg(&relaxed))
    .unwrap();
    let relaxed_obj = Artifact {
        path: relaxed.clone(),
        name: "basic-p8_2-relaxed".into(),
        function_sections: false,
        linkage: Linkage::Pie,
        link_args: vec![
            "-march=rv64gc".into(),
            "-mabi=lp64d".into(),
            "-Wl,-q".into(),
        ],
        ..basic.clone()
    };
    for a in with_pre.into_iter().chain([&relaxed_obj]) {
        let dir = scratch_dir(&format!("rewrite-obj-pre-{}", a.name));
        let new_obj = dir.join("new.o");
        let rw = rewrite(&a.path, &new_obj, &["--slot", "4", "--pre", "4", "--json"]);
        assert!(rw.status.success(), "{}: {}", a.name, describe(&rw));
        let stats: serde_json::Value = serde_json::from_slice(&rw.stdout).unwrap();
        if a.name == relaxed_obj.name {
            assert!(
                stats["relocation_types"]["R_RISCV_ALIGN"].as_u64() > Some(1),
                "{stats}"
            );
        }
        let (orig_bin, new_bin) = (dir.join("orig"), dir.join("new"));
        link(a, &a.path, &orig_bin, false).unwrap();
        link(a, &new_obj, &new_bin, false).unwrap();
        let report = report_json(&new_bin);
        let funcs = report["functions"].as_array().expect("functions");
        assert!(!funcs.is_empty());
        for f in funcs {
            assert_eq!(f["pre_bytes"], 4, "{}: {f}", a.name);
            assert_eq!(f["pad_bytes"], 8, "{}: {f}", a.name);
            assert_eq!(f["address"].as_u64().unwrap() % 4, 0, "{}: {f}", a.name);
        }
        let (o, n) = (run_qemu(&orig_bin, &[], &[]), run_qemu(&new_bin, &[], &[]));
        assert_eq!(o.stdout, n.stdout, "{}: {}", a.name, describe(&n));
        assert_eq!(o.status.code(), n.status.code(), "{}", a.name);
        // Half a nop cannot be kept.
        if !a.rvc {
            let rw = rewrite(&a.path, &dir.join("half.o"), &["--slot", "4", "--pre", "2"]);
            assert_eq!(rw.status.code(), Some(2), "{}: {}", a.name, describe(&rw));
            assert!(String::from_utf8_lossy(&rw.stderr).contains("4-byte nops"));
        }
    }
}

/// Compiles the corpus program `basic` with `compiler` and `args` into the object `obj`.
fn compile_basic(compiler: &str, args: &[&str], obj: &Path) {
    let basic = objects()
        .into_iter()
        .find(|a| a.program == "basic")
        .expect("basic");
    run(Command::new(compiler)
        .args(args)
        .arg(&basic.sources[0])
        .arg("-o")
        .arg(obj))
    .unwrap();
}

/// Links the object `obj` alone, with gcc and `args`, into the program `bin`.
fn link_alone(obj: &Path, args: &[&str], bin: &Path) {
    run(Command::new("riscv64-linux-gnu-gcc")
        .arg(obj)
        .args(args)
        .arg("-o")
        .arg(bin))
    .unwrap();
}

/// Code the linker does not relax (clang `-mno-relax`) has no `R_RISCV_ALIGN` for its
/// alignment directives: the rewrite keeps `aligned(64)` functions aligned itself, and
/// every unrelocated branch still reaches its target.
#[test]
fn unrelaxed_objects_keep_aligned_functions_aligned() {
    let dir = scratch_dir("rewrite-obj-unrelaxed");
    let obj = dir.join("basic-clang-norelax.o");
    let args = [
        "--target=riscv64-linux-gnu",
        "-march=rv64gc",
        "-O2",
        "-mno-relax",
        "-fpatchable-function-entry=8",
        "-c",
    ];
    compile_basic("clang", &args, &obj);
    let aligned_at = |path: &Path| {
        binutils::symbols(path)
            .into_iter()
            .find(|s| s.name == "aligned_fn")
            .map(|s| s.value)
            .expect("aligned_fn")
    };
    let link_run = |o: &Path, out: &str| {
        let bin = dir.join(out);
        link_alone(o, &["-Wl,-q"], &bin);
        (aligned_at(&bin), run_qemu(&bin, &[], &[]))
    };
    let (_, expected) = link_run(&obj, "orig");
    assert_eq!(expected.status.code(), Some(3), "{}", describe(&expected));
    for slot in [4, 8, 0] {
        let new_obj = dir.join(format!("new{slot}.o"));
        let rw = rewrite_slot(&obj, &new_obj, slot);
        assert!(rw.status.success(), "{}", describe(&rw));
        let stats: serde_json::Value = serde_json::from_slice(&rw.stdout).unwrap();
        assert!(stats["unrelocated_fixups"].as_u64() > Some(0), "{stats}");
        assert_eq!(aligned_at(&new_obj) % 64, 0, "slot {slot}: in the object");
        let (at, out) = link_run(&new_obj, &format!("new{slot}"));
        assert_eq!(at % 64, 0, "slot {slot}: aligned_fn at {at:#x}");
        assert_eq!(
            out.stdout,
            expected.stdout,
            "slot {slot}: {}",
            describe(&out)
        );
        assert_eq!(out.status.code(), Some(3));
    }
}

/// Compressed debug sections (`-gz`) cannot be checked in place: refused with the way out,
/// and the decompressed object rewrites and runs.
#[test]
fn compressed_debug_sections_are_refused_until_decompressed() {
    let dir = scratch_dir("rewrite-obj-gz");
    let obj = dir.join("basic-gz.o");
    let args = [
        "-march=rv64gc",
        "-O0",
        "-g",
        "-gz",
        "-fpatchable-function-entry=8",
        "-c",
    ];
    compile_basic("riscv64-linux-gnu-gcc", &args, &obj);
    let out = dir.join("new.o");
    let rw = rewrite_slot(&obj, &out, 4);
    assert_eq!(rw.status.code(), Some(2), "{}", describe(&rw));
    assert!(String::from_utf8_lossy(&rw.stderr).contains("--decompress-debug-sections"));
    assert!(!out.exists());
    let plain = dir.join("basic-plain.o");
    run(Command::new("riscv64-linux-gnu-objcopy")
        .arg("--decompress-debug-sections")
        .arg(&obj)
        .arg(&plain))
    .unwrap();
    let rw = rewrite_slot(&plain, &out, 4);
    assert!(rw.status.success(), "{}", describe(&rw));
    let bin = dir.join("new");
    link_alone(&out, &[], &bin);
    assert_eq!(run_qemu(&bin, &[], &[]).status.code(), Some(3));
}

/// A program with the shape of a kernel `ALTERNATIVE` at a function's start: a 4-byte nop
/// right after the pad, whose address a table records (`.4byte 886b - .`, relocated against
/// the local label `886`), and which `main` patches at run time into `addi a0, a0, 1`, as
/// the kernel and its module loader do. It prints 42 when the patch landed on that nop.
const ALT_AT_ENTRY_C: &str = r#"
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

__attribute__((noinline)) long alt_entry(long x)
{
    __asm__ volatile("886:\n\t.option push\n\t.option norvc\n\tnop\n\t.option pop\n"
                     "\t.pushsection alt_sites, \"a\"\n\t.balign 4\n\t.4byte 886b - .\n"
                     "\t.popsection\n" : "+r"(x));
    return x;
}

extern const int32_t __start_alt_sites[], __stop_alt_sites[];

int main(void)
{
    const uint32_t nop = 0x00000013, addi = 0x00150513; /* addi a0, a0, 1 */
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (const int32_t *e = __start_alt_sites; e < __stop_alt_sites; e++) {
        uint8_t *at = (uint8_t *)e + *e;
        uint32_t was;
        memcpy(&was, at, 4);
        if (was != nop) {
            printf("the site holds %08x, not a nop\n", was);
            return 1;
        }
        uintptr_t first = (uintptr_t)at & ~(page - 1);
        if (mprotect((void *)first, 2 * page, PROT_READ | PROT_WRITE | PROT_EXEC) != 0)
            return 2;
        memcpy(at, &addi, 4);
        __builtin___clear_cache((char *)at, (char *)at + 4);
    }
    printf("%ld\n", alt_entry(41));
    return 0;
}
"#;

/// The pad of `alt_entry` in a `report --json`.
fn alt_entry_pad(path: &Path) -> u64 {
    let report = report_json(path);
    let f = report["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "alt_entry")
        .unwrap_or_else(|| panic!("{}: no alt_entry in {report}", path.display()));
    f["pad_bytes"].as_u64().unwrap()
}

/// Issue 15: in Linux 6.12 (vmlinux and modules) a few functions start with an
/// `ALTERNATIVE` whose old content is a `nop`, right after the 16-byte pad. padtrim took
/// that nop for pad (20 bytes) and removed it, so the label the kernel patches pointed at
/// the next instruction: the module loader overwrote the function's `ret` and the kernel
/// oopsed. A label past the function's address ends the pad.
#[test]
fn a_labelled_nop_right_after_a_pad_is_not_pad() {
    let dir = scratch_dir("rewrite-obj-alt-at-entry");
    let src = dir.join("alt.c");
    std::fs::write(&src, ALT_AT_ENTRY_C).unwrap();
    let obj = dir.join("alt.o");
    run(Command::new("riscv64-linux-gnu-gcc")
        .args(["-O2", "-fpatchable-function-entry=8", "-mno-relax", "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&obj))
    .unwrap();
    assert_eq!(alt_entry_pad(&obj), 16, "the object's pad");
    let link = |input: &Path, out: &Path| {
        run(Command::new("riscv64-linux-gnu-gcc")
            .args(["-Wl,-q", "-Wl,--no-relax"])
            .arg(input)
            .arg("-o")
            .arg(out))
        .unwrap();
    };
    let orig = dir.join("orig");
    link(&obj, &orig);
    let expected = run_qemu(&orig, &[], &[]);
    assert_eq!(
        String::from_utf8_lossy(&expected.stdout),
        "42\n",
        "{}",
        describe(&expected)
    );
    assert_eq!(alt_entry_pad(&orig), 16, "the linked program's pad");

    // The object, rewritten and linked; and the linked program, rewritten.
    let obj8 = dir.join("alt8.o");
    let rw = rewrite_slot(&obj, &obj8, 8);
    assert!(rw.status.success(), "{}", describe(&rw));
    assert_eq!(alt_entry_pad(&obj8), 8, "the rewritten object's slot");
    let from_obj = dir.join("from-obj8");
    link(&obj8, &from_obj);
    let prog8 = dir.join("prog8");
    let rw = rewrite_slot(&orig, &prog8, 8);
    assert!(rw.status.success(), "{}", describe(&rw));
    for bin in [&from_obj, &prog8] {
        let out = run_qemu(bin, &[], &[]);
        assert_eq!(
            out.stdout,
            expected.stdout,
            "{}: {}",
            bin.display(),
            describe(&out)
        );
        let gate = check(bin, &["--max-pad", "8"]);
        assert!(
            gate.status.success(),
            "{}: {}",
            bin.display(),
            describe(&gate)
        );
    }
}
