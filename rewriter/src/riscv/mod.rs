//! RISC-V instruction decoding and encoding: exactly what the rewriter needs, no more.
//!
//! Instructions are little-endian; a 16-bit parcel whose low two bits are not `0b11`
//! is a compressed (2-byte) instruction, otherwise the instruction is 4 bytes long.
//! (48-bit and longer encodings are not ratified for any extension GCC emits; the
//! decoder treats them as unknown.)
//!
//! The decoder is deliberately strict: the rewriter moves code, and an instruction it
//! cannot classify might refer to the PC, so anything unknown or reserved is an error
//! rather than a guess. Everything that does refer to the PC gets its own [`Op`] variant
//! with the decoded fields; the `with_*` encoders rewrite only the immediate bits.

mod compressed;
mod decode;
mod encode;
mod word;

#[cfg(test)]
mod tests;

pub use decode::{auipc_value, decode, pc_target, DecodeError, Insn, Op, Xlen};
pub use encode::{
    encode_auipc, encode_jal, encode_jalr, hi_lo, with_branch_offset, with_cbranch_offset,
    with_cj_offset, with_clui_imm, with_i_imm, with_jal_offset, with_s_imm, with_u_imm, Field,
    RangeError,
};

/// `c.nop` (`c.addi x0, 0`).
pub const C_NOP: u16 = 0x0001;
/// `nop` (`addi x0, x0, 0`).
pub const NOP: u32 = 0x0000_0013;

/// Length in bytes of the instruction whose first 16-bit parcel is `parcel`.
pub fn insn_len(parcel: u16) -> usize {
    if parcel & 0b11 != 0b11 {
        2
    } else {
        4
    }
}
