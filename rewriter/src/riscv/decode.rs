//! The decoded form of one instruction and the entry point [`decode`].

use super::{compressed, word};

/// Base integer register width: decides what some compressed encodings mean.
///
/// `c.jal` exists only on RV32 (RV64 uses that encoding for `c.addiw`), and the
/// `c.flw`/`c.fsw`(sp) slots of RV32 are `c.ld`/`c.sd`(sp) on RV64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Xlen {
    /// 32-bit base ISA (RV32).
    Rv32,
    /// 64-bit base ISA (RV64).
    Rv64,
}

/// One decoded instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Insn {
    /// Length in bytes: 2 (compressed) or 4.
    pub len: u8,
    /// The instruction bits (a compressed instruction is zero-extended).
    pub raw: u32,
    /// What the rewriter needs to know about it.
    pub op: Op,
}

/// Classification of a valid instruction, with the fields of every form that uses
/// the PC or can carry a relocated immediate.
///
/// Offsets are relative to the address of the instruction itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `beq`/`bne`/`blt`/`bge`/`bltu`/`bgeu` (offset in -4096..=4094).
    Branch {
        /// First source register.
        rs1: u8,
        /// Second source register.
        rs2: u8,
        /// Target, relative to the instruction.
        offset: i32,
    },
    /// `jal` (offset in -1 MiB..1 MiB).
    Jal {
        /// Link register (0: a plain jump).
        rd: u8,
        /// Target, relative to the instruction.
        offset: i32,
    },
    /// `c.beqz`/`c.bnez` (offset in -256..=254).
    CBranch {
        /// The register compared with zero.
        rs1: u8,
        /// Target, relative to the instruction.
        offset: i32,
    },
    /// `c.j` (offset in -2048..=2046).
    CJ {
        /// Target, relative to the instruction.
        offset: i32,
    },
    /// `c.jal`, RV32 only (links `ra`; offset in -2048..=2046).
    CJal {
        /// Target, relative to the instruction.
        offset: i32,
    },
    /// `auipc`; `imm` is the sign-extended upper immediate already shifted left by 12.
    Auipc {
        /// Destination register.
        rd: u8,
        /// Upper immediate, shifted left by 12 and sign-extended.
        imm: i64,
    },
    /// `lui`; `imm` as for [`Op::Auipc`].
    Lui {
        /// Destination register.
        rd: u8,
        /// Upper immediate, shifted left by 12 and sign-extended.
        imm: i64,
    },
    /// `c.lui` (`rd` is never 2; `rd == 0` is the HINT form); `imm` shifted left by 12, never 0.
    CLui {
        /// Destination register.
        rd: u8,
        /// Upper immediate, shifted left by 12 and sign-extended.
        imm: i64,
    },
    /// `jalr`; also `c.jr rs1` (as `rd = 0, imm = 0`) and `c.jalr rs1` (as `rd = 1, imm = 0`),
    /// told apart from the 4-byte form by [`Insn::len`].
    Jalr {
        /// Link register.
        rd: u8,
        /// Base register.
        rs1: u8,
        /// Offset added to the base.
        imm: i32,
    },
    /// I-type with a 12-bit immediate that may hold `%lo`/`%pcrel_lo`: `addi`, `addiw`,
    /// `slti`, `sltiu`, `xori`, `ori` (incl. the Zicbop `prefetch.*` hints), `andi`,
    /// integer loads and `flh`/`flw`/`fld`/`flq`. (Not `nop`, which is [`Op::Nop`].)
    IType {
        /// Destination register.
        rd: u8,
        /// Source (or base) register.
        rs1: u8,
        /// The 12-bit immediate, sign-extended.
        imm: i32,
    },
    /// S-type stores `sb`/`sh`/`sw`/`sd` and `fsh`/`fsw`/`fsd`/`fsq`.
    SType {
        /// Base register.
        rs1: u8,
        /// Register stored.
        rs2: u8,
        /// The 12-bit offset, sign-extended.
        imm: i32,
    },
    /// Exactly `nop` (0x00000013).
    Nop,
    /// Exactly `c.nop` (0x0001).
    CNop,
    /// Any other recognised, valid instruction; none of them reads the PC.
    Plain,
}

impl Op {
    /// True for the forms whose meaning depends on the instruction's address.
    pub fn is_pc_relative(&self) -> bool {
        matches!(
            self,
            Op::Branch { .. }
                | Op::Jal { .. }
                | Op::CBranch { .. }
                | Op::CJ { .. }
                | Op::CJal { .. }
                | Op::Auipc { .. }
        )
    }
}

/// Why a byte sequence is not an instruction the decoder accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the instruction needs.
    #[error("truncated instruction: needs {needed} bytes, only {available} available")]
    Truncated {
        /// Bytes the instruction needs.
        needed: u8,
        /// Bytes there were.
        available: usize,
    },
    /// The parcel 0x0000, defined to be illegal.
    #[error("illegal instruction 0x0000 (all-zero parcel)")]
    AllZero,
    /// A 48-bit or longer encoding (low five bits all ones).
    #[error("unsupported instruction length (48 bits or more), first parcel {parcel:#06x}")]
    TooLong {
        /// The instruction's first 16 bits.
        parcel: u16,
    },
    /// A reserved, custom or unknown encoding.
    #[error("unknown or reserved {len}-byte instruction {raw:#010x}")]
    Unknown {
        /// The instruction's bits.
        raw: u32,
        /// Its length in bytes (2 or 4).
        len: u8,
    },
}

impl DecodeError {
    /// The offending instruction bits, when known (0 for truncated input).
    pub fn raw(&self) -> u32 {
        match *self {
            DecodeError::Truncated { .. } | DecodeError::AllZero => 0,
            DecodeError::TooLong { parcel } => parcel as u32,
            DecodeError::Unknown { raw, .. } => raw,
        }
    }
}

/// Decode the instruction at the start of `bytes` (little endian).
#[inline]
pub fn decode(bytes: &[u8], xlen: Xlen) -> Result<Insn, DecodeError> {
    let parcel = match bytes {
        [b0, b1, ..] => u16::from_le_bytes([*b0, *b1]),
        _ => {
            return Err(DecodeError::Truncated {
                needed: 2,
                available: bytes.len(),
            })
        }
    };
    if parcel & 0b11 != 0b11 {
        if parcel == 0 {
            return Err(DecodeError::AllZero);
        }
        return match compressed::decode(parcel, xlen) {
            Some(op) => Ok(Insn {
                len: 2,
                raw: parcel as u32,
                op,
            }),
            None => Err(DecodeError::Unknown {
                raw: parcel as u32,
                len: 2,
            }),
        };
    }
    if parcel & 0b11100 == 0b11100 {
        return Err(DecodeError::TooLong { parcel });
    }
    let raw = match bytes {
        [b0, b1, b2, b3, ..] => u32::from_le_bytes([*b0, *b1, *b2, *b3]),
        _ => {
            return Err(DecodeError::Truncated {
                needed: 4,
                available: bytes.len(),
            })
        }
    };
    match word::decode(raw, xlen) {
        Some(op) => Ok(Insn { len: 4, raw, op }),
        None => Err(DecodeError::Unknown { raw, len: 4 }),
    }
}

/// Address a branch or jump at `pc` goes to; `None` for every other instruction.
///
/// Wrapping 64-bit arithmetic: for RV32 code, truncate the result to 32 bits.
pub fn pc_target(insn: &Insn, pc: u64) -> Option<u64> {
    match insn.op {
        Op::Branch { offset, .. }
        | Op::Jal { offset, .. }
        | Op::CBranch { offset, .. }
        | Op::CJ { offset }
        | Op::CJal { offset } => Some(pc.wrapping_add(offset as i64 as u64)),
        _ => None,
    }
}

/// Value an `auipc` at `pc` writes to its register (`pc + imm`); `None` otherwise.
pub fn auipc_value(insn: &Insn, pc: u64) -> Option<u64> {
    match insn.op {
        Op::Auipc { imm, .. } => Some(pc.wrapping_add(imm as u64)),
        _ => None,
    }
}
