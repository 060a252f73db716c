//! Instruction-level facts the verifier needs beyond the decoder: which bits of an
//! instruction are an immediate that a rewrite may legitimately change, which register an
//! instruction writes, and where nops are.

use crate::elf::read_uint;
use crate::riscv::{insn_len, Insn, Op, C_NOP, NOP};

/// Bits of a B-type instruction holding the branch offset.
const B_IMM: u32 = 0xfe00_0f80;
/// Bits of a J-type (`jal`) or U-type (`lui`/`auipc`) instruction holding the immediate.
const UJ_IMM: u32 = 0xffff_f000;
/// Bits of an I-type instruction holding the immediate.
const I_IMM: u32 = 0xfff0_0000;
/// Bits of an S-type instruction holding the immediate (same positions as B-type).
const S_IMM: u32 = 0xfe00_0f80;
/// Bits of `c.beqz`/`c.bnez` holding the offset.
const CB_IMM: u32 = 0x1c7c;
/// Bits of `c.j`/`c.jal` holding the offset.
const CJ_IMM: u32 = 0x1ffc;
/// Bits of `c.lui` holding the immediate.
const CLUI_IMM: u32 = 0x107c;

/// The immediate bits of `insn` that a rewrite may change (0 if none may).
pub fn imm_mask(insn: &Insn) -> u32 {
    match (insn.op, insn.len) {
        (Op::Branch { .. }, _) => B_IMM,
        (Op::Jal { .. }, _) | (Op::Auipc { .. }, _) | (Op::Lui { .. }, _) => UJ_IMM,
        (Op::CBranch { .. }, _) => CB_IMM,
        (Op::CJ { .. }, _) | (Op::CJal { .. }, _) => CJ_IMM,
        (Op::CLui { .. }, _) => CLUI_IMM,
        (Op::IType { .. }, _) | (Op::Jalr { .. }, 4) => I_IMM,
        (Op::SType { .. }, _) => S_IMM,
        _ => 0,
    }
}

/// The 12-bit low immediate of an instruction that can carry `%lo`/`%pcrel_lo`.
pub fn lo_imm(insn: &Insn) -> Option<i64> {
    match (insn.op, insn.len) {
        (Op::IType { imm, .. }, _) | (Op::SType { imm, .. }, _) | (Op::Jalr { imm, .. }, 4) => {
            Some(i64::from(imm))
        }
        _ => None,
    }
}

/// The base register of an instruction whose 12-bit immediate is added to a register.
pub fn base_reg(insn: &Insn) -> Option<u8> {
    match (insn.op, insn.len) {
        (Op::IType { rs1, .. }, _) | (Op::SType { rs1, .. }, _) | (Op::Jalr { rs1, .. }, 4) => {
            Some(rs1)
        }
        _ => None,
    }
}

/// What an instruction writes among the integer registers, as far as pairing an `auipc`
/// with its users needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// No integer register.
    Nothing,
    /// This register (a floating-point destination with the same number counts too:
    /// stopping early only loses a pairing, never invents one).
    Reg(u8),
}

/// The register `insn` may write.
pub fn writes(insn: &Insn) -> Writes {
    let raw = insn.raw;
    if insn.len == 4 {
        let rd = ((raw >> 7) & 31) as u8;
        return match raw & 0x7f {
            // stores, branches, fences
            0x23 | 0x27 | 0x63 | 0x0f => Writes::Nothing,
            // SYSTEM: ecall/ebreak/xret/wfi have rd = 0; csr* write rd
            _ => Writes::Reg(rd),
        };
    }
    let p = raw as u16;
    let rd_full = ((p >> 7) & 31) as u8;
    let rd_prime_hi = 8 + ((p >> 7) & 7) as u8;
    let rd_prime_lo = 8 + ((p >> 2) & 7) as u8;
    match (p & 3, p >> 13) {
        // c.addi4spn, c.fld, c.lw, c.flw/c.ld
        (0, 0..=3) => Writes::Reg(rd_prime_lo),
        // stores
        (0, _) => Writes::Nothing,
        // c.jal (RV32) links ra; on RV64 this slot is c.addiw
        (1, 1) if matches!(insn.op, Op::CJal { .. }) => Writes::Reg(1),
        // c.addi c.addiw c.li c.lui/c.addi16sp
        (1, 0..=3) => Writes::Reg(rd_full),
        // c.srli c.srai c.andi c.sub ...
        (1, 4) => Writes::Reg(rd_prime_hi),
        // c.j c.beqz c.bnez
        (1, _) => Writes::Nothing,
        // c.slli c.fldsp c.lwsp c.ldsp/c.flwsp
        (2, 0..=3) => Writes::Reg(rd_full),
        (2, 4) => match insn.op {
            // c.jalr links ra; c.jr writes nothing
            Op::Jalr { rd, .. } => Writes::Reg(rd),
            // c.mv, c.add (c.ebreak has rd = 0)
            _ => Writes::Reg(rd_full),
        },
        _ => Writes::Nothing,
    }
}

/// True for an instruction that transfers control (after which a straight-line pairing ends).
pub fn is_control(insn: &Insn) -> bool {
    matches!(
        insn.op,
        Op::Branch { .. }
            | Op::Jal { .. }
            | Op::CBranch { .. }
            | Op::CJ { .. }
            | Op::CJal { .. }
            | Op::Jalr { .. }
    )
}

/// Length of the nop at `off` (2 for `c.nop` when `rvc`, 4 for `nop`), or 0.
#[inline]
pub fn nop_at(bytes: &[u8], off: usize, rvc: bool) -> usize {
    let Some(parcel) = read_uint(bytes, off, 2) else {
        return 0;
    };
    let parcel = parcel as u16;
    if rvc && parcel == C_NOP {
        return 2;
    }
    if insn_len(parcel) == 4 && read_uint(bytes, off, 4) == Some(u64::from(NOP)) {
        return 4;
    }
    0
}

/// Length of the maximal nop run starting at `off`.
pub fn nop_run(bytes: &[u8], off: usize, rvc: bool) -> usize {
    let mut at = off;
    loop {
        let n = nop_at(bytes, at, rvc);
        if n == 0 {
            return at - off;
        }
        at += n;
    }
}

/// `%hi` of a value: the upper 20 bits, rounded so that adding the sign-extended `%lo` gives
/// the value back (already shifted left by 12 and sign-extended from 32 bits).
pub fn hi20(value: i64) -> i64 {
    i64::from((value.wrapping_add(0x800) as i32) & !0xfff)
}

/// `%lo` of a value: its low 12 bits, sign-extended.
pub fn lo12(value: i64) -> i64 {
    ((value << 52) >> 52) as i32 as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::riscv::{decode, Xlen};

    fn dec(raw: u32) -> Insn {
        let bytes = raw.to_le_bytes();
        decode(&bytes, Xlen::Rv64).expect("valid")
    }

    #[test]
    fn masks_cover_exactly_the_immediates() {
        // beq a0, a1, +8 and beq a0, a1, -4: only the immediate bits differ.
        let a = dec(0x00b5_0463);
        let b = dec(0xfeb5_0ee3);
        assert_eq!(a.raw & !imm_mask(&a), b.raw & !imm_mask(&b));
        // addi a0, a0, 1 vs addi a0, a1, 1: register differs outside the mask.
        let c = dec(0x0015_0513);
        let d = dec(0x0015_8513);
        assert_ne!(c.raw & !imm_mask(&c), d.raw & !imm_mask(&d));
        // c.j +4 vs c.j -2
        let cj = decode(&0xa011u16.to_le_bytes(), Xlen::Rv64).expect("c.j");
        let cj2 = decode(&0xbffdu16.to_le_bytes(), Xlen::Rv64).expect("c.j");
        assert_eq!(cj.raw & !imm_mask(&cj), cj2.raw & !imm_mask(&cj2));
    }

    #[test]
    fn hi_lo_recombine() {
        for v in [
            0i64,
            1,
            0x7ff,
            0x800,
            0xfff,
            0x1000,
            -1,
            -0x800,
            -0x801,
            0x7fff_f7ff,
        ] {
            assert_eq!(hi20(v) + lo12(v), v, "{v:#x}");
            assert!((-2048..2048).contains(&lo12(v)));
        }
    }

    #[test]
    fn writes_knows_compressed_destinations() {
        // c.li a0, 1 writes a0 (x10)
        let li = decode(&0x4505u16.to_le_bytes(), Xlen::Rv64).expect("c.li");
        assert_eq!(writes(&li), Writes::Reg(10));
        // c.sd a0, 0(a1) writes nothing
        let sd = decode(&0xe188u16.to_le_bytes(), Xlen::Rv64).expect("c.sd");
        assert_eq!(writes(&sd), Writes::Nothing);
        // c.mv t1, a0 writes t1 (x6)
        let mv = decode(&0x832au16.to_le_bytes(), Xlen::Rv64).expect("c.mv");
        assert_eq!(writes(&mv), Writes::Reg(6));
        // sd ra, 8(sp) writes nothing; ld t3, 0(t3) writes t3
        assert_eq!(writes(&dec(0x0011_3423)), Writes::Nothing);
        assert_eq!(writes(&dec(0x000e_3e03)), Writes::Reg(28));
    }

    #[test]
    fn nop_runs_mix_both_sizes() {
        let mut b = Vec::new();
        b.extend_from_slice(&C_NOP.to_le_bytes());
        b.extend_from_slice(&NOP.to_le_bytes());
        b.extend_from_slice(&C_NOP.to_le_bytes());
        b.extend_from_slice(&0x4505u16.to_le_bytes());
        assert_eq!(nop_run(&b, 0, true), 8);
        assert_eq!(nop_run(&b, 0, false), 0, "c.nop is not a nop without RVC");
        assert_eq!(nop_run(&b, 2, false), 4);
    }
}
