//! Re-encoding immediates and building the few instructions the rewriter emits.
//!
//! Every `with_*` function is pure: it keeps all non-immediate bits of `raw`, checks
//! that `raw` really is an instruction with that field, and checks range and alignment.

use std::fmt;

/// The immediate field (or value) an encoder was asked to fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// B-type conditional branch offset.
    BranchOffset,
    /// `jal` offset.
    JalOffset,
    /// `c.beqz`/`c.bnez` offset.
    CBranchOffset,
    /// `c.j`/`c.jal` offset.
    CJumpOffset,
    /// U-type (`lui`/`auipc`) upper 20 bits.
    UImm,
    /// I-type 12-bit immediate.
    IImm,
    /// S-type 12-bit immediate.
    SImm,
    /// `c.lui` 6-bit upper immediate.
    CLuiImm,
    /// Value split by [`hi_lo`] into `%hi`/`%lo` (or `%pcrel_hi`/`%pcrel_lo`).
    HiLoValue,
    /// A register number.
    Register,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::BranchOffset => "branch offset",
            Field::JalOffset => "jal offset",
            Field::CBranchOffset => "c.beqz/c.bnez offset",
            Field::CJumpOffset => "c.j/c.jal offset",
            Field::UImm => "lui/auipc upper immediate",
            Field::IImm => "I-type immediate",
            Field::SImm => "S-type immediate",
            Field::CLuiImm => "c.lui immediate",
            Field::HiLoValue => "hi/lo split value",
            Field::Register => "register number",
        })
    }
}

/// Why a value cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// The value does not fit the field.
    #[error("{field} {value} does not fit: allowed {min}..={max}")]
    OutOfRange {
        /// The field.
        field: Field,
        /// The value that does not fit.
        value: i64,
        /// Smallest value allowed.
        min: i64,
        /// Largest value allowed.
        max: i64,
    },
    /// The value is not a multiple of the field's unit.
    #[error("{field} {value} is misaligned: must be a multiple of {align}")]
    Misaligned {
        /// The field.
        field: Field,
        /// The misaligned value.
        value: i64,
        /// The unit it must be a multiple of.
        align: i64,
    },
    /// Zero is a reserved encoding for this field (`c.lui`).
    #[error("{field} 0 is a reserved encoding")]
    ReservedZero {
        /// The field.
        field: Field,
    },
    /// `raw` is not an instruction that has this field.
    #[error("instruction {raw:#010x} has no {field}")]
    WrongInstruction {
        /// The field asked for.
        field: Field,
        /// The instruction's bits.
        raw: u32,
    },
}

/// Check `value` against `min..=max` and a power-of-two `align`.
fn check(field: Field, value: i64, min: i64, max: i64, align: i64) -> Result<u32, RangeError> {
    if value < min || value > max {
        return Err(RangeError::OutOfRange {
            field,
            value,
            min,
            max,
        });
    }
    if value & (align - 1) != 0 {
        return Err(RangeError::Misaligned {
            field,
            value,
            align,
        });
    }
    Ok(value as u32)
}

/// Fail with `WrongInstruction` unless `ok`.
fn expect(ok: bool, field: Field, raw: u32) -> Result<(), RangeError> {
    if ok {
        Ok(())
    } else {
        Err(RangeError::WrongInstruction { field, raw })
    }
}

/// Check a register number.
fn reg(r: u8) -> Result<u32, RangeError> {
    check(Field::Register, r as i64, 0, 31, 1)
}

/// Replace the offset of a B-type branch (`off` even, -4096..=4094).
pub fn with_branch_offset(raw: u32, off: i64) -> Result<u32, RangeError> {
    let f = Field::BranchOffset;
    expect(
        raw & 0x7f == 0x63 && !matches!((raw >> 12) & 7, 2 | 3),
        f,
        raw,
    )?;
    let o = check(f, off, -4096, 4094, 2)?;
    let imm = (((o >> 12) & 1) << 31)
        | (((o >> 5) & 0x3f) << 25)
        | (((o >> 1) & 0xf) << 8)
        | (((o >> 11) & 1) << 7);
    Ok((raw & !0xfe00_0f80) | imm)
}

/// Replace the offset of a `jal` (`off` even, -1 MiB..1 MiB).
pub fn with_jal_offset(raw: u32, off: i64) -> Result<u32, RangeError> {
    let f = Field::JalOffset;
    expect(raw & 0x7f == 0x6f, f, raw)?;
    let o = check(f, off, -(1 << 20), (1 << 20) - 2, 2)?;
    let imm = (((o >> 20) & 1) << 31)
        | (((o >> 1) & 0x3ff) << 21)
        | (((o >> 11) & 1) << 20)
        | (o & 0x000f_f000);
    Ok((raw & 0xfff) | imm)
}

/// Replace the offset of a `c.beqz`/`c.bnez` (`off` even, -256..=254).
pub fn with_cbranch_offset(raw: u16, off: i64) -> Result<u16, RangeError> {
    let f = Field::CBranchOffset;
    expect(matches!(raw & 0xe003, 0xc001 | 0xe001), f, raw as u32)?;
    let o = check(f, off, -256, 254, 2)?;
    let imm = (((o >> 8) & 1) << 12)
        | (((o >> 3) & 3) << 10)
        | (((o >> 6) & 3) << 5)
        | (((o >> 1) & 3) << 3)
        | (((o >> 5) & 1) << 2);
    Ok((raw & !0x1c7c) | imm as u16)
}

/// Replace the offset of a `c.j` or (RV32) `c.jal` (`off` even, -2048..=2046).
///
/// The `c.jal` slot is `c.addiw` on RV64: the caller must know the code is RV32.
pub fn with_cj_offset(raw: u16, off: i64) -> Result<u16, RangeError> {
    let f = Field::CJumpOffset;
    expect(matches!(raw & 0xe003, 0xa001 | 0x2001), f, raw as u32)?;
    let o = check(f, off, -2048, 2046, 2)?;
    let imm = (((o >> 11) & 1) << 12)
        | (((o >> 4) & 1) << 11)
        | (((o >> 8) & 3) << 9)
        | (((o >> 10) & 1) << 8)
        | (((o >> 6) & 1) << 7)
        | (((o >> 7) & 1) << 6)
        | (((o >> 1) & 7) << 3)
        | (((o >> 5) & 1) << 2);
    Ok((raw & !0x1ffc) | imm as u16)
}

/// Replace the upper immediate of `lui`/`auipc`; `hi20` is the signed 20-bit value
/// (-524288..=524287, i.e. the `hi` of [`hi_lo`]), not the shifted one.
pub fn with_u_imm(raw: u32, hi20: i64) -> Result<u32, RangeError> {
    let f = Field::UImm;
    expect(matches!(raw & 0x7f, 0x17 | 0x37), f, raw)?;
    let v = check(f, hi20, -(1 << 19), (1 << 19) - 1, 1)?;
    Ok((raw & 0xfff) | ((v & 0xfffff) << 12))
}

/// Replace the 12-bit immediate (-2048..=2047) of an I-type instruction: `jalr`, a load
/// (integer or `flh`/`flw`/`fld`/`flq`), or an OP-IMM(-32) instruction other than a shift.
pub fn with_i_imm(raw: u32, imm12: i64) -> Result<u32, RangeError> {
    let f = Field::IImm;
    let funct3 = (raw >> 12) & 7;
    let ok = match raw & 0x7f {
        0x03 | 0x67 => true,
        0x07 => matches!(funct3, 1..=4),
        0x13 => !matches!(funct3, 1 | 5),
        0x1b => funct3 == 0,
        _ => false,
    };
    expect(ok, f, raw)?;
    let v = check(f, imm12, -2048, 2047, 1)?;
    Ok((raw & 0x000f_ffff) | ((v & 0xfff) << 20))
}

/// Replace the 12-bit immediate (-2048..=2047) of a store (`sb`..`sd`, `fsh`..`fsq`).
pub fn with_s_imm(raw: u32, imm12: i64) -> Result<u32, RangeError> {
    let f = Field::SImm;
    let ok = match raw & 0x7f {
        0x23 => true,
        0x27 => matches!((raw >> 12) & 7, 1..=4),
        _ => false,
    };
    expect(ok, f, raw)?;
    let v = check(f, imm12, -2048, 2047, 1)?;
    Ok((raw & 0x01ff_f07f) | (((v >> 5) & 0x7f) << 25) | ((v & 0x1f) << 7))
}

/// Replace the immediate of a `c.lui`; `hi6` is the signed 6-bit upper value
/// (-32..=31, not 0), i.e. the decoded `imm >> 12`.
pub fn with_clui_imm(raw: u16, hi6: i64) -> Result<u16, RangeError> {
    let f = Field::CLuiImm;
    expect(
        raw & 0xe003 == 0x6001 && (raw >> 7) & 31 != 2,
        f,
        raw as u32,
    )?;
    let v = check(f, hi6, -32, 31, 1)?;
    if v == 0 {
        return Err(RangeError::ReservedZero { field: f });
    }
    Ok((raw & !0x107c) | ((((v >> 5) & 1) << 12) | ((v & 31) << 2)) as u16)
}

/// Build `jal rd, off`.
pub fn encode_jal(rd: u8, off: i64) -> Result<u32, RangeError> {
    with_jal_offset(0x6f | (reg(rd)? << 7), off)
}

/// Build `auipc rd, hi20` (`hi20` signed, as for [`with_u_imm`]).
pub fn encode_auipc(rd: u8, hi20: i64) -> Result<u32, RangeError> {
    with_u_imm(0x17 | (reg(rd)? << 7), hi20)
}

/// Build `jalr rd, imm12(rs1)`.
pub fn encode_jalr(rd: u8, rs1: u8, imm12: i64) -> Result<u32, RangeError> {
    with_i_imm(0x67 | (reg(rd)? << 7) | (reg(rs1)? << 15), imm12)
}

/// Split `value` the psABI way into `(hi, lo)` with `value == (hi << 12) + lo`:
/// `hi = (value + 0x800) >> 12` (signed 20 bits, for `lui`/`auipc`) and `lo` in
/// -2048..=2047 (for the I/S-type immediate). Errors when `hi` does not fit 20 bits,
/// i.e. `value` outside -0x8000_0800..=0x7fff_f7ff (±2 GiB PC-relative on RV64).
pub fn hi_lo(value: i64) -> Result<(i64, i64), RangeError> {
    const MIN: i64 = -(1 << 31) - 0x800;
    const MAX: i64 = (1 << 31) - 1 - 0x800;
    if !(MIN..=MAX).contains(&value) {
        return Err(RangeError::OutOfRange {
            field: Field::HiLoValue,
            value,
            min: MIN,
            max: MAX,
        });
    }
    let hi = (value + 0x800) >> 12;
    Ok((hi, value - (hi << 12)))
}
