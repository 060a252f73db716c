//! Cross-check of `padtrim::riscv::decode` against binutils.
//!
//! Assembles the sources in `tests/riscv/` with `riscv64-linux-gnu-as`, disassembles
//! them with `riscv64-linux-gnu-objdump -d -z -M no-aliases`, and checks every
//! instruction: same length, same bits, never a decode error, the `Op` class implied by
//! objdump's mnemonic, and the operands objdump prints (registers, immediates, and the
//! branch/jump target address).

use padtrim::riscv::{decode, pc_target, Op, Xlen};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const AS: &str = "riscv64-linux-gnu-as";
const OBJDUMP: &str = "riscv64-linux-gnu-objdump";
const OBJCOPY: &str = "riscv64-linux-gnu-objcopy";

const RV64_MARCH: &str = "rv64gcqh_zfh_zba_zbb_zbs_zbc_zicsr_zifencei_zicbom_zicbop_zicboz_zawrs_zihintpause_svinval_v";
const RV32_MARCH: &str = "rv32gc_zfh_zba_zbb_zbs_zbc_zicsr_zifencei";

fn have_binutils() -> bool {
    let ok = Command::new(AS).arg("--version").output().is_ok();
    if !ok {
        eprintln!("SKIPPED: {AS} not found; install binutils-riscv64-linux-gnu to run this test");
    }
    ok
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("padtrim-riscv-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Assemble `src` and return (.text bytes, objdump listing).
fn assemble(src: &str, args: &[&str]) -> (Vec<u8>, String) {
    let src_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/riscv").join(src);
    let dir = scratch_dir(src);
    let obj = dir.join("out.o");
    let bin = dir.join("text.bin");
    run(Command::new(AS).args(args).arg("-mno-relax").arg(&src_path).arg("-o").arg(&obj));
    run(Command::new(OBJCOPY).args(["-O", "binary", "-j", ".text"]).arg(&obj).arg(&bin));
    let listing = run(Command::new(OBJDUMP).args(["-d", "-z", "-M", "no-aliases"]).arg(&obj));
    let text = std::fs::read(&bin).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (text, String::from_utf8(listing).unwrap())
}

/// One instruction line of an objdump listing.
struct Line {
    addr: u64,
    hex: String,
    mnemonic: String,
    operands: String,
}

fn parse_listing(listing: &str) -> Vec<Line> {
    let mut lines = Vec::new();
    for l in listing.lines() {
        let mut parts = l.split('\t');
        let Some(addr) = parts.next() else { continue };
        let Some(addr) = addr.trim().strip_suffix(':') else { continue };
        let Ok(addr) = u64::from_str_radix(addr, 16) else { continue };
        let hex = parts.next().unwrap_or("").trim().to_string();
        let mnemonic = parts.next().unwrap_or("").trim().to_string();
        let operands = parts.next().unwrap_or("");
        // drop objdump's "# comment" (it guesses lui/auipc-based addresses)
        let operands = operands.split(" #").next().unwrap().trim().to_string();
        lines.push(Line {
            addr,
            hex,
            mnemonic,
            operands,
        });
    }
    lines
}

fn reg_number(name: &str) -> u8 {
    const X: [&str; 32] = [
        "zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1", "a0", "a1", "a2", "a3",
        "a4", "a5", "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11",
        "t3", "t4", "t5", "t6",
    ];
    const F: [&str; 32] = [
        "ft0", "ft1", "ft2", "ft3", "ft4", "ft5", "ft6", "ft7", "fs0", "fs1", "fa0", "fa1",
        "fa2", "fa3", "fa4", "fa5", "fa6", "fa7", "fs2", "fs3", "fs4", "fs5", "fs6", "fs7",
        "fs8", "fs9", "fs10", "fs11", "ft8", "ft9", "ft10", "ft11",
    ];
    X.iter()
        .chain(F.iter())
        .position(|r| *r == name)
        .map(|i| (i % 32) as u8)
        .unwrap_or_else(|| panic!("unknown register name {name:?}"))
}

fn parse_int(s: &str) -> i64 {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let v = match s.strip_prefix("0x") {
        Some(h) => i64::from_str_radix(h, 16).unwrap(),
        None => s.parse::<i64>().unwrap(),
    };
    if neg {
        -v
    } else {
        v
    }
}

/// Split `imm(reg)` into (imm, reg); objdump prints `(reg)` for a zero offset of cbo.*.
fn mem_operand(s: &str) -> (i64, u8) {
    let (imm, rest) = s.split_once('(').unwrap();
    let reg = rest.strip_suffix(')').unwrap();
    let imm = if imm.is_empty() { 0 } else { parse_int(imm) };
    (imm, reg_number(reg))
}

/// Target address printed as `hex <symbol+off>`, the last operand of branches/jumps.
fn printed_target(operand: &str) -> u64 {
    let hex = operand.split(' ').next().unwrap();
    u64::from_str_radix(hex, 16).unwrap()
}

/// The decoder's class, for comparing with objdump's mnemonic.
fn class(op: &Op) -> &'static str {
    match op {
        Op::Branch { .. } => "Branch",
        Op::Jal { .. } => "Jal",
        Op::CBranch { .. } => "CBranch",
        Op::CJ { .. } => "CJ",
        Op::CJal { .. } => "CJal",
        Op::Auipc { .. } => "Auipc",
        Op::Lui { .. } => "Lui",
        Op::CLui { .. } => "CLui",
        Op::Jalr { .. } => "Jalr",
        Op::IType { .. } => "IType",
        Op::SType { .. } => "SType",
        Op::Nop => "Nop",
        Op::CNop => "CNop",
        Op::Plain => "Plain",
    }
}

/// The class objdump's mnemonic implies.
fn expected_class(mnemonic: &str, raw: u32) -> &'static str {
    match mnemonic {
        "beq" | "bne" | "blt" | "bge" | "bltu" | "bgeu" => "Branch",
        "jal" => "Jal",
        "c.beqz" | "c.bnez" => "CBranch",
        "c.j" => "CJ",
        "c.jal" => "CJal",
        "auipc" => "Auipc",
        "lui" => "Lui",
        "c.lui" => "CLui",
        "jalr" | "c.jr" | "c.jalr" => "Jalr",
        "addi" if raw == 0x13 => "Nop",
        "c.addi" if raw == 0x1 => "CNop",
        "addi" | "addiw" | "slti" | "sltiu" | "xori" | "ori" | "andi" | "lb" | "lh" | "lw"
        | "ld" | "lbu" | "lhu" | "lwu" | "flh" | "flw" | "fld" | "flq" | "prefetch.i"
        | "prefetch.r" | "prefetch.w" => "IType",
        "sb" | "sh" | "sw" | "sd" | "fsh" | "fsw" | "fsd" | "fsq" => "SType",
        _ => "Plain",
    }
}

/// Offsets seen per class, to prove the sources reach the extreme encodings.
type Seen = BTreeMap<&'static str, Vec<i64>>;

/// Check one listing line against our decoder; returns (class, offset) for PC-relative ones.
fn check_line(text: &[u8], line: &Line, xlen: Xlen, seen: &mut Seen) {
    let ctx = format!(
        "at {:#x}: {} {} {}",
        line.addr, line.hex, line.mnemonic, line.operands
    );
    let at = line.addr as usize;
    let insn = decode(&text[at..], xlen).unwrap_or_else(|e| panic!("{ctx}: decode error: {e}"));
    assert_eq!(insn.len as usize * 2, line.hex.len(), "{ctx}: length");
    assert_eq!(insn.raw, u32::from_str_radix(&line.hex, 16).unwrap(), "{ctx}: raw bits");
    assert_eq!(class(&insn.op), expected_class(&line.mnemonic, insn.raw), "{ctx}: class {:?}", insn.op);

    let ops: Vec<&str> = line.operands.split(',').collect();
    let addr_mask = if xlen == Xlen::Rv32 { 0xffff_ffff } else { u64::MAX };
    if let Some(target) = pc_target(&insn, line.addr) {
        let printed = printed_target(ops.last().unwrap());
        assert_eq!(target & addr_mask, printed, "{ctx}: target");
    }
    match insn.op {
        Op::Branch { rs1, rs2, offset } => {
            assert_eq!((rs1, rs2), (reg_number(ops[0]), reg_number(ops[1])), "{ctx}");
            seen.entry("Branch").or_default().push(offset as i64);
        }
        Op::Jal { rd, offset } => {
            assert_eq!(rd, reg_number(ops[0]), "{ctx}");
            seen.entry("Jal").or_default().push(offset as i64);
        }
        Op::CBranch { rs1, offset } => {
            assert_eq!(rs1, reg_number(ops[0]), "{ctx}");
            seen.entry("CBranch").or_default().push(offset as i64);
        }
        Op::CJ { offset } => seen.entry("CJ").or_default().push(offset as i64),
        Op::CJal { offset } => seen.entry("CJal").or_default().push(offset as i64),
        Op::Auipc { rd, imm } | Op::Lui { rd, imm } | Op::CLui { rd, imm } => {
            assert_eq!(rd, reg_number(ops[0]), "{ctx}");
            assert_eq!(imm & 0xfff, 0, "{ctx}");
            // objdump prints the 20-bit field unsigned
            assert_eq!((imm >> 12) & 0xfffff, parse_int(ops[1]), "{ctx}: upper immediate");
            seen.entry(class(&insn.op)).or_default().push(imm >> 12);
        }
        Op::Jalr { rd, rs1, imm } => match line.mnemonic.as_str() {
            "jalr" => {
                let (i, r) = mem_operand(ops[1]);
                assert_eq!((rd, rs1, imm as i64), (reg_number(ops[0]), r, i), "{ctx}");
            }
            "c.jr" => assert_eq!((rd, rs1, imm), (0, reg_number(ops[0]), 0), "{ctx}"),
            _ => assert_eq!((rd, rs1, imm), (1, reg_number(ops[0]), 0), "{ctx}"),
        },
        Op::IType { rd, rs1, imm } => {
            let (r_d, r_s1, i) = if line.mnemonic.starts_with("prefetch.") {
                // an `ori x0` whose low five immediate bits select the prefetch kind
                let (i, r) = mem_operand(ops[0]);
                assert!(matches!(imm & 31, 0 | 1 | 3), "{ctx}");
                (0, r, i | (imm & 31) as i64)
            } else if ops.len() == 2 {
                let (i, r) = mem_operand(ops[1]);
                (reg_number(ops[0]), r, i)
            } else {
                (reg_number(ops[0]), reg_number(ops[1]), parse_int(ops[2]))
            };
            assert_eq!((rd, rs1, imm as i64), (r_d, r_s1, i), "{ctx}");
            seen.entry("IType").or_default().push(imm as i64);
        }
        Op::SType { rs1, rs2, imm } => {
            let (i, r) = mem_operand(ops[1]);
            assert_eq!((rs1, rs2, imm as i64), (r, reg_number(ops[0]), i), "{ctx}");
            seen.entry("SType").or_default().push(imm as i64);
        }
        Op::Nop | Op::CNop | Op::Plain => {}
    }
}

/// Decode a whole source file's text and compare with objdump line by line.
fn check_source(src: &str, args: &[&str], xlen: Xlen) -> Seen {
    let (text, listing) = assemble(src, args);
    let lines = parse_listing(&listing);
    assert!(lines.len() > 100, "{src}: objdump listed only {} instructions", lines.len());
    let mut seen = Seen::new();
    let mut next = 0u64;
    for line in &lines {
        assert!(
            !line.mnemonic.starts_with('.') && line.mnemonic != "unimp",
            "{src}: objdump did not decode {:#x}: {} {}",
            line.addr,
            line.mnemonic,
            line.operands
        );
        assert_eq!(line.addr, next, "{src}: objdump listing has a gap");
        check_line(&text, line, xlen, &mut seen);
        next = line.addr + line.hex.len() as u64 / 2;
    }
    assert_eq!(next, text.len() as u64, "{src}: listing does not cover .text");
    seen
}

fn assert_reaches(seen: &Seen, class: &str, min: i64, max: i64) {
    let offs = seen.get(class).unwrap_or_else(|| panic!("no {class} seen"));
    assert!(offs.contains(&min), "{class}: extreme {min} not exercised");
    assert!(offs.contains(&max), "{class}: extreme {max} not exercised");
}

#[test]
fn rv64_matches_objdump() {
    if !have_binutils() {
        return;
    }
    let march = format!("-march={RV64_MARCH}");
    let seen = check_source("rv64_all.s", &[&march], Xlen::Rv64);
    assert_reaches(&seen, "Branch", -4096, 4094);
    assert_reaches(&seen, "Jal", -(1 << 20), (1 << 20) - 2);
    assert_reaches(&seen, "CBranch", -256, 254);
    assert_reaches(&seen, "CJ", -2048, 2046);
    assert_reaches(&seen, "Auipc", -(1 << 19), (1 << 19) - 1);
    assert_reaches(&seen, "Lui", -(1 << 19), (1 << 19) - 1);
    assert_reaches(&seen, "CLui", -32, 31);
    assert_reaches(&seen, "IType", -2048, 2047);
    assert_reaches(&seen, "SType", -2048, 2047);
}

#[test]
fn rv32_matches_objdump() {
    if !have_binutils() {
        return;
    }
    let march = format!("-march={RV32_MARCH}");
    let seen = check_source("rv32_all.s", &[&march, "-mabi=ilp32"], Xlen::Rv32);
    assert_reaches(&seen, "CJal", -2048, 2046);
    assert_reaches(&seen, "Branch", -4096, 4094);
    assert_reaches(&seen, "Jal", -(1 << 20), (1 << 20) - 2);
}
