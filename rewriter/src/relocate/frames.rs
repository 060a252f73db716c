//! `.eh_frame` constants an inserted slot changes (`rewrite --insert`): an FDE of a function
//! that got a slot now starts at the slot, so the distances the assembler wrote as constants
//! from the old start (the `pc_range`, and the first CFA row's advance) grow by the slot.
//! Distances under relocations (`ADD`/`SUB`, `SET6`/`SUB6` pairs) are re-resolved with the
//! rest and left alone here.

use std::collections::BTreeSet;

use super::image::Image;
use crate::elf::RelocSection;
use crate::error::{Error, Result};

/// Grows the constant `pc_range` and first advance of every FDE of a function with an
/// inserted slot.
pub(super) fn fix_inserted_frames(img: &mut Image<'_, '_>, relocs: &[RelocSection]) -> Result<()> {
    if img.plan.slot_funcs.is_empty() {
        return Ok(());
    }
    let file = img.file;
    let Some(sec) = file
        .sections
        .iter()
        .find(|s| s.name == ".eh_frame" && s.is_alloc() && !s.is_nobits())
    else {
        return Ok(());
    };
    let relocated: BTreeSet<u64> = relocs
        .iter()
        .filter(|rs| rs.target == sec.index && !file.sections[rs.index].is_alloc())
        .flat_map(|rs| rs.relocs.iter().map(|r| r.offset.wrapping_sub(sec.addr)))
        .collect();
    let covered = |a: usize, b: usize| relocated.range(a as u64..b as u64).next().is_some();
    let data = img.old(sec.index);
    let new_base = img.new_base(sec.index);
    for (off, fde) in crate::verify::cfi::fdes(data, sec.addr, file.ptr_size()) {
        let Some(fde) = fde else { continue };
        let Some(&(_, len)) = img.plan.slot_funcs.get(&fde.start) else {
            continue;
        };
        let fail = |what: &str| {
            Error::refused(format!(
                ".eh_frame: the FDE at offset {off:#x} (function at {:#x}) {what}",
                fde.start
            ))
        };
        // pc_range: the field after pc_begin.
        if let Some(&(a, b)) = fde.fields.get(1) {
            if !covered(a, b) {
                let v = fde.range.wrapping_add(len);
                if (b - a) < 8 && v >> ((b - a) * 8) != 0 {
                    return Err(fail("cannot grow its pc_range by the slot"));
                }
                img.write_new(sec.index, new_base + a as u64, b - a, v)?;
            }
        }
        // The first row, when an advance from the start.
        let Some(&(loc, a, b)) = fde.rows.first() else {
            continue;
        };
        if covered(a, b) || loc == fde.start || fde.code_align == 0 {
            continue;
        }
        let old = data.get(a..b).ok_or_else(|| fail("is truncated"))?;
        let units = len / fde.code_align;
        if b - a == 1 && old[0] >> 6 == 1 {
            // DW_CFA_advance_loc: six bits in the opcode.
            let delta = u64::from(old[0] & 0x3f) + units;
            if delta > 0x3f {
                return Err(fail(&format!(
                    "starts its first CFA row {} bytes in, with an advance too small to \
                     take the slot",
                    loc - fde.start
                )));
            }
            img.write_new(sec.index, new_base + a as u64, 1, 0x40 | delta)?;
        } else {
            let n = b - a;
            let v = crate::elf::read_uint(data, a, n).ok_or_else(|| fail("is truncated"))?;
            let v = v + units;
            if n < 8 && v >> (n * 8) != 0 {
                return Err(fail("has a first advance too small to take the slot"));
            }
            img.write_new(sec.index, new_base + a as u64, n, v)?;
        }
    }
    Ok(())
}
