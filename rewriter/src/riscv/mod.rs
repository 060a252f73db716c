//! RISC-V instruction decoding and encoding: exactly what the rewriter needs, no more.
//!
//! Instructions are little-endian; a 16-bit parcel whose low two bits are not `0b11`
//! is a compressed (2-byte) instruction, otherwise the instruction is 4 bytes long.
//! (48-bit and longer encodings are not ratified for any extension GCC emits; the
//! decoder treats them as unknown.)

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
