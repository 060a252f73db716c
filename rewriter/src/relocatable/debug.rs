//! Debug information of an object whose code moves.
//!
//! With relaxation the assembler writes every code distance in DWARF as a relocation pair
//! (`ADD`/`SUB`, `SET`): line-table advances (`DW_LNS_fixed_advance_pc`), `DW_AT_high_pc`
//! lengths, address-range lengths. Moving symbols then keeps DWARF right. Without
//! relaxation those distances are constants that padtrim does not rewrite, so such an
//! object is refused with a clear way out.

use object::elf;

use super::symbols::Maps;
use crate::elf::{ElfFile, RelocSection};
use crate::error::{Error, Result};

/// Sections that carry code distances in every unit assembled with relaxation: a line
/// table advances with `DW_LNS_fixed_advance_pc` plus an `ADD16`/`SUB16` pair per row, and
/// `DW_AT_high_pc` is an `ADD`/`SUB` pair. Other sections (range and location lists) may
/// legitimately hold only absolute, relocated addresses.
const WITNESSES: &[&str] = &[".debug_line", ".debug_info"];

/// True for the relocation types that encode a difference of two symbols.
fn is_difference(t: u32) -> bool {
    (elf::R_RISCV_ADD8.0..=elf::R_RISCV_SUB64.0).contains(&t)
        || (elf::R_RISCV_SUB6.0..=elf::R_RISCV_SET32.0).contains(&t)
        || t == elf::R_RISCV_SET_ULEB128.0
        || t == elf::R_RISCV_SUB_ULEB128.0
}

/// Refuses DWARF (other than `.debug_frame`, checked on its own) that describes moved code
/// but was assembled without relaxation, i.e. whose code distances are constants.
pub fn refuse_constant_distances(
    file: &ElfFile<'_>,
    relocs: &[RelocSection],
    maps: &Maps,
) -> Result<()> {
    let describing: Vec<&RelocSection> = relocs
        .iter()
        .filter(|rs| {
            let name = file.sections[rs.target].name;
            name.starts_with(".debug_") && name != ".debug_frame"
        })
        .filter(|rs| {
            rs.relocs.iter().any(|r| {
                file.symbols
                    .get(r.sym as usize)
                    .and_then(|s| s.section())
                    .is_some_and(|s| maps.contains_key(&s))
            })
        })
        .collect();
    if describing.is_empty() {
        return Ok(());
    }
    let has_diff = |rs: &&RelocSection| rs.relocs.iter().any(|r| is_difference(r.r_type));
    let witnesses: Vec<&&RelocSection> = describing
        .iter()
        .filter(|rs| WITNESSES.contains(&file.sections[rs.target].name))
        .collect();
    let relaxed = if witnesses.is_empty() {
        describing.iter().any(has_diff)
    } else {
        witnesses.iter().all(|rs| has_diff(rs))
    };
    if relaxed {
        return Ok(());
    }
    let name = witnesses
        .first()
        .map_or(file.sections[describing[0].target].name, |rs| {
            file.sections[rs.target].name
        });
    Err(Error::refused(format!(
        "{name} describes code that moves but holds its code distances as constants \
         (assembled without relaxation); strip the debug information first \
         (`strip --strip-debug`, or build with -g0) or assemble with relaxation"
    )))
}
