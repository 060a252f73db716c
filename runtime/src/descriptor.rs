//! The address and instruction arithmetic for patching slots, beside the descriptor the
//! rewriter fills in (defined once, in the `padtrim-abi` crate, for the rewriter, its verifier
//! and this runtime). Portable so it is unit-tested on the host.

pub use padtrim_abi::{Descriptor, DESCRIPTOR_MAGIC, DESCRIPTOR_VERSION};

/// The 4-byte `nop` (`addi x0, x0, 0`) a patchable slot must hold.
pub const NOP: u32 = 0x0000_0013;
/// `jal` reaches targets within [-1 MiB, +1 MiB - 2] of the slot.
pub const JAL_REACH: i64 = 1 << 20;

/// Encode `jal t0, to` placed at `from`, or `None` when out of reach or misaligned.
pub fn encode_jal_t0(from: u64, to: u64) -> Option<u32> {
    let off = to.wrapping_sub(from) as i64;
    if !(-JAL_REACH..JAL_REACH).contains(&off) || off & 1 != 0 {
        return None;
    }
    let imm = off as u32;
    let insn = ((imm >> 20) & 1) << 31
        | ((imm >> 1) & 0x3ff) << 21
        | ((imm >> 11) & 1) << 20
        | ((imm >> 12) & 0xff) << 12
        | 5 << 7 // rd = t0
        | 0x6f;
    Some(insn)
}

/// If `insn` is `jal t0, X`, the target X for an instruction at `at`.
pub fn decode_jal_t0(at: u64, insn: u32) -> Option<u64> {
    if insn & 0xfff != (5 << 7 | 0x6f) {
        return None;
    }
    let imm = ((insn >> 31) & 1) << 20
        | ((insn >> 21) & 0x3ff) << 1
        | ((insn >> 20) & 1) << 11
        | ((insn >> 12) & 0xff) << 12;
    let off = ((imm << 11) as i32 >> 11) as i64; // sign-extend 21 bits
    Some(at.wrapping_add(off as u64))
}

/// Bytes of an island: `auipc t1, hi; jalr x0, lo(t1)`.
pub const ISLAND_SIZE: u64 = 8;

/// If the two words at `at` are an island (`auipc t1, hi; jalr x0, lo(t1)`, which clobbers
/// only t1), the address it jumps to.
pub fn decode_island(at: u64, first: u32, second: u32) -> Option<u64> {
    const AUIPC_T1: u32 = 6 << 7 | 0x17;
    const JALR_X0_T1: u32 = 6 << 15 | 0x67; // rd = x0, funct3 = 0, rs1 = t1
    if first & 0xfff != AUIPC_T1 || second & 0xfffff != JALR_X0_T1 {
        return None;
    }
    let hi = (first & 0xffff_f000) as i32 as i64;
    let lo = (second as i32 >> 20) as i64;
    Some(at.wrapping_add(hi.wrapping_add(lo) as u64))
}

/// Choose the `jal` target for the slot at runtime address `slot`: the trampoline if in
/// reach, else the nearest island in reach. `islands` holds sorted link-time addresses;
/// `bias` converts them to runtime addresses.
pub fn pick_target(slot: u64, trampoline: u64, islands: &[u64], bias: u64) -> Option<u64> {
    if encode_jal_t0(slot, trampoline).is_some() {
        return Some(trampoline);
    }
    let link = slot.wrapping_sub(bias);
    let i = islands.partition_point(|&a| a < link);
    let mut best: Option<u64> = None;
    for j in [i.wrapping_sub(1), i] {
        if let Some(&isl) = islands.get(j) {
            let rt = isl.wrapping_add(bias);
            if encode_jal_t0(slot, rt).is_some() {
                let d = (rt as i64).wrapping_sub(slot as i64).unsigned_abs();
                if best.map_or(true, |b| {
                    d < (b as i64).wrapping_sub(slot as i64).unsigned_abs()
                }) {
                    best = Some(rt);
                }
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jal_round_trips_across_the_range() {
        for &(from, to) in &[
            (0x1000u64, 0x1000u64),
            (0x1000, 0x1004),
            (0x20_0000, 0x10_0000),
            (0x10_0000, 0x1f_fffe),
            (0x7fff_0000, 0x7fef_0000),
        ] {
            let insn = encode_jal_t0(from, to).unwrap();
            assert_eq!(
                decode_jal_t0(from, insn),
                Some(to),
                "{:#x}->{:#x}",
                from,
                to
            );
        }
        assert_eq!(encode_jal_t0(0, 1 << 20), None);
        assert!(encode_jal_t0(1 << 20, 0).is_some());
        assert_eq!(encode_jal_t0(0, 3), None);
        assert_eq!(decode_jal_t0(0, NOP), None);
        // `jal t0, +8` as the GNU assembler encodes it.
        assert_eq!(encode_jal_t0(0, 8), Some(0x008002ef));
        // `jal t0, -4`.
        assert_eq!(encode_jal_t0(4, 0), Some(0xffdff2ef));
    }

    #[test]
    fn picks_trampoline_then_nearest_island() {
        let bias = 0x4000_0000;
        let islands = [0x10_0000u64, 0x30_0000, 0x50_0000];
        let tramp = bias + 0x8_0000;
        assert_eq!(
            pick_target(bias + 0x1000, tramp, &islands, bias),
            Some(tramp)
        );
        assert_eq!(
            pick_target(bias + 0x31_0000, tramp, &islands, bias),
            Some(bias + 0x30_0000)
        );
        assert_eq!(
            pick_target(bias + 0x4f_0000, tramp, &islands, bias),
            Some(bias + 0x50_0000)
        );
        assert_eq!(pick_target(bias + 0x90_0000, tramp, &islands, bias), None);
        assert_eq!(pick_target(bias + 0x90_0000, tramp, &[], bias), None);
    }

    #[test]
    fn decodes_islands_as_the_assembler_writes_them() {
        // `auipc t1, 0x1; jalr x0, -16(t1)` at 0x1000 (GNU as encodings).
        assert_eq!(decode_island(0x1000, 0x00001317, 0xff030067), Some(0x1ff0));
        // `auipc t1, 0xfff00; jalr x0, 8(t1)`: 1 MiB back, plus 8.
        assert_eq!(
            decode_island(0x20_0000, 0xfff00317, 0x00830067),
            Some(0x10_0008)
        );
        // `auipc t0` (would clobber the slot's return address), `jalr ra`, `jalr x0, 0(t2)`.
        assert_eq!(decode_island(0, 0x00001297, 0x00030067), None);
        assert_eq!(decode_island(0, 0x00001317, 0x000300e7), None);
        assert_eq!(decode_island(0, 0x00001317, 0x00038067), None);
        assert_eq!(decode_island(0, NOP, NOP), None);
    }
}
