//! Decoding of 16-bit (C extension) instructions. Returns `None` for reserved and
//! custom encodings; the caller handles the all-zero parcel.

use super::decode::{Op, Xlen};
use super::C_NOP;

/// Sign-extended CB-format branch offset (`c.beqz`/`c.bnez`).
#[inline]
pub(super) fn cb_offset(p: u16) -> i32 {
    let p = p as u32;
    let off = (((p >> 12) & 1) << 8)
        | (((p >> 10) & 3) << 3)
        | (((p >> 5) & 3) << 6)
        | (((p >> 3) & 3) << 1)
        | (((p >> 2) & 1) << 5);
    ((off as i32) << 23) >> 23
}

/// Sign-extended CJ-format jump offset (`c.j`/`c.jal`).
#[inline]
pub(super) fn cj_offset(p: u16) -> i32 {
    let p = p as u32;
    let off = (((p >> 12) & 1) << 11)
        | (((p >> 11) & 1) << 4)
        | (((p >> 9) & 3) << 8)
        | (((p >> 8) & 1) << 10)
        | (((p >> 7) & 1) << 6)
        | (((p >> 6) & 1) << 7)
        | (((p >> 3) & 7) << 1)
        | (((p >> 2) & 1) << 5);
    ((off as i32) << 20) >> 20
}

/// Sign-extended 6-bit `c.lui` immediate (bit 12 and bits 6:2), not shifted.
#[inline]
pub(super) fn clui_hi6(p: u16) -> i64 {
    let v = ((((p >> 12) & 1) << 5) | ((p >> 2) & 31)) as i64;
    (v << 58) >> 58
}

/// Decode one compressed instruction (`p & 3 != 3`, `p != 0`).
#[inline]
pub(super) fn decode(p: u16, xlen: Xlen) -> Option<Op> {
    let rv64 = xlen == Xlen::Rv64;
    let bit12 = (p >> 12) & 1;
    let rd = ((p >> 7) & 31) as u8; // rd / rs1 in CR and CI formats
    let rs2 = ((p >> 2) & 31) as u8;
    let plain = Some(Op::Plain);
    match (p & 3, p >> 13) {
        // c.addi4spn: nzuimm == 0 is reserved
        (0, 0) => ((p >> 5) & 0xff != 0).then_some(Op::Plain),
        // c.fld c.lw c.flw/c.ld c.fsd c.sw c.fsw/c.sd (RV32 / RV64)
        (0, 1 | 2 | 3 | 5 | 6 | 7) => plain,
        // reserved (Zcb uses it; binutils 2.40 does not know Zcb)
        (0, _) => None,
        (1, 0) if p == C_NOP => Some(Op::CNop),
        // c.addi (rd = 0 or imm = 0 are HINTs)
        (1, 0) => plain,
        (1, 1) if rv64 => (rd != 0).then_some(Op::Plain), // c.addiw
        (1, 1) => Some(Op::CJal {
            offset: cj_offset(p),
        }),
        (1, 2) => plain, // c.li
        (1, 3) => {
            // c.addi16sp (rd = 2) / c.lui: a zero immediate is reserved
            if bit12 == 0 && rs2 == 0 {
                None
            } else if rd == 2 {
                plain
            } else {
                Some(Op::CLui {
                    rd,
                    imm: clui_hi6(p) << 12,
                })
            }
        }
        (1, 4) => match (p >> 10) & 3 {
            // c.srli c.srai: shamt[5] = 1 is custom on RV32
            0 | 1 => (rv64 || bit12 == 0).then_some(Op::Plain),
            2 => plain, // c.andi
            // c.sub c.xor c.or c.and | c.subw c.addw (RV64)
            _ => (bit12 == 0 || (rv64 && (p >> 5) & 3 <= 1)).then_some(Op::Plain),
        },
        (1, 5) => Some(Op::CJ {
            offset: cj_offset(p),
        }),
        (1, _) => Some(Op::CBranch {
            rs1: 8 + ((p >> 7) & 7) as u8,
            offset: cb_offset(p),
        }),
        // c.slli: shamt[5] = 1 is custom on RV32
        (2, 0) => (rv64 || bit12 == 0).then_some(Op::Plain),
        (2, 1) => plain,                                  // c.fldsp
        (2, 2) => (rd != 0).then_some(Op::Plain),         // c.lwsp
        (2, 3) if rv64 => (rd != 0).then_some(Op::Plain), // c.ldsp
        (2, 3) => plain,                                  // c.flwsp
        (2, 4) => match (bit12, rd, rs2) {
            (0, 0, 0) => None, // c.jr x0 is reserved
            (0, _, 0) => Some(Op::Jalr {
                rd: 0,
                rs1: rd,
                imm: 0,
            }), // c.jr
            (0, _, _) => plain, // c.mv
            (_, 0, 0) => plain, // c.ebreak
            (_, _, 0) => Some(Op::Jalr {
                rd: 1,
                rs1: rd,
                imm: 0,
            }), // c.jalr
            _ => plain,        // c.add
        },
        // c.fsdsp c.swsp c.fswsp/c.sdsp
        _ => plain,
    }
}
