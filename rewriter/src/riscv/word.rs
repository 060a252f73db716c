//! Decoding of 32-bit instructions: one match on the major opcode, then on the
//! function fields. Returns `None` for anything reserved, custom or unknown.

use super::decode::{Op, Xlen};
use super::NOP;

/// Register field at bits 11:7.
#[inline]
fn rd(raw: u32) -> u8 {
    ((raw >> 7) & 31) as u8
}

/// Register field at bits 19:15.
#[inline]
fn rs1(raw: u32) -> u8 {
    ((raw >> 15) & 31) as u8
}

/// Register field at bits 24:20.
#[inline]
fn rs2(raw: u32) -> u8 {
    ((raw >> 20) & 31) as u8
}

/// Sign-extended I-type immediate (bits 31:20).
#[inline]
pub(super) fn i_imm(raw: u32) -> i32 {
    (raw as i32) >> 20
}

/// Sign-extended S-type immediate (bits 31:25 and 11:7).
#[inline]
pub(super) fn s_imm(raw: u32) -> i32 {
    (((raw as i32) >> 25) << 5) | ((raw >> 7) & 0x1f) as i32
}

/// Sign-extended B-type offset.
#[inline]
pub(super) fn b_offset(raw: u32) -> i32 {
    (((raw as i32) >> 31) << 12)
        | (((raw >> 7) & 1) << 11) as i32
        | (((raw >> 25) & 0x3f) << 5) as i32
        | (((raw >> 8) & 0xf) << 1) as i32
}

/// Sign-extended J-type offset.
#[inline]
pub(super) fn j_offset(raw: u32) -> i32 {
    (((raw as i32) >> 31) << 20)
        | (raw & 0x000f_f000) as i32
        | (((raw >> 20) & 1) << 11) as i32
        | (((raw >> 21) & 0x3ff) << 1) as i32
}

/// Sign-extended U-type immediate, already shifted left by 12.
#[inline]
pub(super) fn u_imm(raw: u32) -> i64 {
    (raw & 0xffff_f000) as i32 as i64
}

/// Whether a floating-point rounding-mode field holds a defined mode (5 and 6 are reserved).
#[inline]
fn rm_ok(rm: u32) -> bool {
    rm != 5 && rm != 6
}

/// Decode one 32-bit instruction (low two bits already known to be `0b11`).
#[inline]
pub(super) fn decode(raw: u32, xlen: Xlen) -> Option<Op> {
    let rv64 = xlen == Xlen::Rv64;
    let funct3 = (raw >> 12) & 7;
    let itype = Op::IType {
        rd: rd(raw),
        rs1: rs1(raw),
        imm: i_imm(raw),
    };
    let stype = Op::SType {
        rs1: rs1(raw),
        rs2: rs2(raw),
        imm: s_imm(raw),
    };
    match raw & 0x7f {
        // LOAD: lb lh lw (ld) lbu lhu (lwu)
        0x03 => match funct3 {
            0 | 1 | 2 | 4 | 5 => Some(itype),
            3 | 6 if rv64 => Some(itype),
            _ => None,
        },
        // LOAD-FP: flh flw fld flq, or a vector load
        0x07 => match funct3 {
            1..=4 => Some(itype),
            _ => vector_mem(raw, true).then_some(Op::Plain),
        },
        0x0f => misc_mem(raw).then_some(Op::Plain),
        0x13 => op_imm(raw, rv64, itype),
        0x17 => Some(Op::Auipc {
            rd: rd(raw),
            imm: u_imm(raw),
        }),
        0x1b if rv64 => op_imm_32(raw, itype),
        // STORE: sb sh sw (sd)
        0x23 => match funct3 {
            0..=2 => Some(stype),
            3 if rv64 => Some(stype),
            _ => None,
        },
        // STORE-FP: fsh fsw fsd fsq, or a vector store
        0x27 => match funct3 {
            1..=4 => Some(stype),
            _ => vector_mem(raw, false).then_some(Op::Plain),
        },
        0x2f => amo(raw, rv64).then_some(Op::Plain),
        0x33 => op(raw, rv64).then_some(Op::Plain),
        0x37 => Some(Op::Lui {
            rd: rd(raw),
            imm: u_imm(raw),
        }),
        0x3b if rv64 => op_32(raw).then_some(Op::Plain),
        // FMADD FMSUB FNMSUB FNMADD, any format
        0x43 | 0x47 | 0x4b | 0x4f => rm_ok(funct3).then_some(Op::Plain),
        0x53 => op_fp(raw, rv64).then_some(Op::Plain),
        0x57 => op_v(raw).then_some(Op::Plain),
        0x63 => match funct3 {
            2 | 3 => None,
            _ => Some(Op::Branch {
                rs1: rs1(raw),
                rs2: rs2(raw),
                offset: b_offset(raw),
            }),
        },
        0x67 if funct3 == 0 => Some(Op::Jalr {
            rd: rd(raw),
            rs1: rs1(raw),
            imm: i_imm(raw),
        }),
        0x6f => Some(Op::Jal {
            rd: rd(raw),
            offset: j_offset(raw),
        }),
        0x73 => system(raw, rv64).then_some(Op::Plain),
        _ => None,
    }
}

/// MISC-MEM: fence (incl. pause), fence.tso, fence.i, Zicbom/Zicboz `cbo.*`.
fn misc_mem(raw: u32) -> bool {
    match (raw >> 12) & 7 {
        // rd and rs1 are reserved for future fences: refuse them, as objdump does
        0 if raw & 0x000f_8f80 != 0 => false,
        0 => match raw >> 28 {
            0 => true,
            // fence.tso is only defined with pred = succ = rw
            0b1000 => (raw >> 20) & 0xff == 0x33,
            _ => false,
        },
        // fence.i: the immediate, rs1 and rd are reserved
        1 => raw == 0x0000_100f,
        2 => rd(raw) == 0 && matches!(raw >> 20, 0 | 1 | 2 | 4),
        _ => false,
    }
}

/// OP-IMM: addi & co. (I-type), shifts, Zbb/Zbs immediate forms.
fn op_imm(raw: u32, rv64: bool, itype: Op) -> Option<Op> {
    let funct6 = raw >> 26;
    let imm12 = raw >> 20;
    // RV32 shift amounts are 5 bits: bit 25 must be clear.
    let shamt_ok = rv64 || (raw >> 25) & 1 == 0;
    let valid = match (raw >> 12) & 7 {
        0 if raw == NOP => return Some(Op::Nop),
        0 | 2 | 3 | 4 | 6 | 7 => return Some(itype),
        // slli bseti bclri binvi | clz ctz cpop sext.b sext.h
        1 => {
            (matches!(funct6, 0x00 | 0x0a | 0x12 | 0x1a) && shamt_ok)
                || matches!(imm12, 0x600 | 0x601 | 0x602 | 0x604 | 0x605)
        }
        // srli srai rori bexti | orc.b rev8
        _ => {
            (matches!(funct6, 0x00 | 0x10 | 0x18 | 0x12) && shamt_ok)
                || imm12 == 0x287
                || imm12 == if rv64 { 0x6b8 } else { 0x698 }
        }
    };
    valid.then_some(Op::Plain)
}

/// OP-IMM-32 (RV64 only): addiw (I-type), word shifts, slli.uw, clzw ctzw cpopw, roriw.
fn op_imm_32(raw: u32, itype: Op) -> Option<Op> {
    let funct7 = raw >> 25;
    let valid = match (raw >> 12) & 7 {
        0 => return Some(itype),
        1 => funct7 == 0 || raw >> 26 == 0x02 || matches!(raw >> 20, 0x600..=0x602),
        5 => matches!(funct7, 0x00 | 0x20 | 0x30),
        _ => false,
    };
    valid.then_some(Op::Plain)
}

/// OP: base, M, Zba, Zbb, Zbc, Zbs, Zicond register-register forms.
fn op(raw: u32, rv64: bool) -> bool {
    match (raw >> 25, (raw >> 12) & 7) {
        (0x00, _) | (0x01, _) => true,
        (0x20, 0 | 4 | 5 | 6 | 7) => true, // sub xnor sra orn andn
        (0x10, 2 | 4 | 6) => true,         // sh1add sh2add sh3add
        (0x05, 1..=7) => true,             // clmul clmulr clmulh min minu max maxu
        (0x30, 1 | 5) => true,             // rol ror
        (0x24, 1 | 5) => true,             // bclr bext
        (0x14, 1) | (0x34, 1) => true,     // bset binv
        (0x04, 4) => !rv64 && rs2(raw) == 0, // zext.h (RV32)
        (0x07, 5 | 7) => true,             // czero.eqz czero.nez
        _ => false,
    }
}

/// OP-32 (RV64 only): word arithmetic, M, Zba .uw forms, Zbb word forms.
fn op_32(raw: u32) -> bool {
    match (raw >> 25, (raw >> 12) & 7) {
        (0x00, 0 | 1 | 5) => true,         // addw sllw srlw
        (0x20, 0 | 5) => true,             // subw sraw
        (0x01, 0 | 4 | 5 | 6 | 7) => true, // mulw divw divuw remw remuw
        (0x04, 0) => true,                 // add.uw
        (0x04, 4) => rs2(raw) == 0,        // zext.h (RV64)
        (0x10, 2 | 4 | 6) => true,         // sh1add.uw sh2add.uw sh3add.uw
        (0x30, 1 | 5) => true,             // rolw rorw
        _ => false,
    }
}

/// AMO: A extension (lr, sc, amo*), word and (RV64) doubleword.
fn amo(raw: u32, rv64: bool) -> bool {
    let width_ok = match (raw >> 12) & 7 {
        2 => true,
        3 => rv64,
        _ => false,
    };
    width_ok
        && match raw >> 27 {
            0x02 => rs2(raw) == 0, // lr
            0x00 | 0x01 | 0x03 | 0x04 | 0x08 | 0x0c | 0x10 | 0x14 | 0x18 | 0x1c => true,
            _ => false,
        }
}

/// OP-FP: F, D, Q, Zfh arithmetic, conversions, moves, compares, plus Zfa.
fn op_fp(raw: u32, rv64: bool) -> bool {
    let funct7 = raw >> 25;
    let fmt = funct7 & 3;
    let rm = (raw >> 12) & 7;
    let rs2 = rs2(raw) as u32;
    // fmv.x.fmt / fmv.fmt.x exist for S and H, and for D only on RV64.
    let fmv_ok = fmt == 0 || fmt == 2 || (fmt == 1 && rv64);
    // fmvh.x.d / fmvp.d.x (RV32) and fmvh.x.q / fmvp.q.x (RV64), Zfa.
    let fmv_pair_ok = (fmt == 1 && !rv64) || (fmt == 3 && rv64);
    let int_ok = rs2 <= 1 || (rs2 <= 3 && rv64);
    match funct7 >> 2 {
        0x00..=0x03 => rm_ok(rm),      // fadd fsub fmul fdiv
        0x0b => rs2 == 0 && rm_ok(rm), // fsqrt
        0x04 => rm <= 2,               // fsgnj fsgnjn fsgnjx
        0x05 => rm <= 3,               // fmin fmax, Zfa fminm fmaxm
        0x08 => rm_ok(rm) && ((rs2 <= 3 && rs2 != fmt) || rs2 == 4 || rs2 == 5), // fcvt, fround(nx)
        0x14 => matches!(rm, 0 | 1 | 2 | 4 | 5), // fle flt feq, Zfa fleq fltq
        0x18 => (int_ok && rm_ok(rm)) || (rs2 == 8 && fmt == 1 && rm == 1), // fcvt.int.fmt, fcvtmod.w.d
        0x1a => int_ok && rm_ok(rm),                                        // fcvt.fmt.int
        0x1c => match (rm, rs2) {
            (0, 0) => fmv_ok,      // fmv.x.fmt
            (1, 0) => true,        // fclass
            (0, 1) => fmv_pair_ok, // fmvh.x.d / fmvh.x.q
            _ => false,
        },
        0x1e => rm == 0 && ((rs2 == 0 && fmv_ok) || rs2 == 1), // fmv.fmt.x, fli
        0x16 => rm == 0 && fmv_pair_ok,                        // fmvp.d.x / fmvp.q.x
        _ => false,
    }
}

/// Vector loads (`load`) and stores under LOAD-FP/STORE-FP with a vector width.
fn vector_mem(raw: u32, load: bool) -> bool {
    let nf = raw >> 29;
    let vm = (raw >> 25) & 1 == 1;
    let eew8 = (raw >> 12) & 7 == 0;
    // mew = 1 (EEW >= 128) is reserved.
    if (raw >> 28) & 1 != 0 {
        return false;
    }
    // Unit-stride forms use the rs2 field as a sub-opcode (lumop/sumop).
    if (raw >> 26) & 3 == 0 {
        return match rs2(raw) {
            0 => true,
            // whole-register: 1, 2, 4 or 8 registers, unmasked; stores only with EEW 8
            8 => vm && matches!(nf, 0 | 1 | 3 | 7) && (load || eew8),
            // mask load/store: one register, EEW 8, unmasked
            11 => vm && nf == 0 && eew8,
            // fault-only-first
            16 => load,
            _ => false,
        };
    }
    true
}

/// OP-V: vector arithmetic (accepted by major opcode) and vset{i}vl{i}.
fn op_v(raw: u32) -> bool {
    if (raw >> 12) & 7 != 7 {
        return true;
    }
    // vsetvli (bit 31 = 0), vsetivli (bits 31:30 = 11), vsetvl (bits 31:25 = 1000000)
    raw >> 31 == 0 || raw >> 30 == 0b11 || raw >> 25 == 0b100_0000
}

/// SYSTEM: ecall/ebreak, xRET, wfi, fences of the privileged spec, Zawrs, hypervisor
/// loads/stores, Zicsr.
fn system(raw: u32, rv64: bool) -> bool {
    let funct7 = raw >> 25;
    match (raw >> 12) & 7 {
        0 => match raw {
            0x0000_0073 // ecall
            | 0x0010_0073 // ebreak
            | 0x1020_0073 // sret
            | 0x3020_0073 // mret
            | 0x7b20_0073 // dret
            | 0x7020_0073 // mnret
            | 0x1050_0073 // wfi
            | 0x00d0_0073 // wrs.nto
            | 0x01d0_0073 // wrs.sto
            | 0x1800_0073 // sfence.w.inval
            | 0x1810_0073 // sfence.inval.ir
            => true,
            // sfence.vma sinval.vma hfence.vvma hinval.vvma hfence.gvma hinval.gvma
            _ => rd(raw) == 0 && matches!(funct7, 0x09 | 0x0b | 0x11 | 0x13 | 0x31 | 0x33),
        },
        4 => match (funct7, rs2(raw)) {
            (0x30, 0 | 1) | (0x32, 0 | 1 | 3) | (0x34, 0 | 3) => true, // hlv.b(u) hlv(x).h(u) hlv(x).w
            (0x34, 1) | (0x36, 0) => rv64,                             // hlv.wu hlv.d
            (0x31 | 0x33 | 0x35, _) => rd(raw) == 0,                   // hsv.b hsv.h hsv.w
            (0x37, _) => rv64 && rd(raw) == 0,                         // hsv.d
            _ => false,
        },
        _ => true, // csrrw csrrs csrrc csrrwi csrrsi csrrci
    }
}
