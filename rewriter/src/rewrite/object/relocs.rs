//! Moving relocations: offsets inside edited sections, addends of references into them,
//! and new `R_RISCV_ALIGN` entries in front of 4-byte slots.

use std::collections::{BTreeMap, BTreeSet};

use object::elf;

use super::cut::SectionPlan;
use super::offsets::Inserted;
use super::symbols::{map_addend, Maps, NewSymbol, RelocAt};
use super::table::SlotLabels;
use crate::elf::{ElfFile, Reloc, RelocSection};
use crate::error::{Error, Result};

/// The relocations of the new object.
#[derive(Debug, Default)]
pub struct MovedRelocs {
    /// New entries by relocation section index (only sections that changed).
    pub by_section: BTreeMap<usize, Vec<Reloc>>,
    /// Relocation type → entries moved or re-targeted (plus the added `R_RISCV_ALIGN`s).
    pub types: BTreeMap<u32, usize>,
}

/// The `R_RISCV_ALIGN` entry of an alignment reserve.
fn align_entry(ins: &Inserted) -> Reloc {
    Reloc {
        offset: ins.new_offset,
        r_type: elf::R_RISCV_ALIGN.0,
        sym: 0,
        addend: ins.len as i64,
    }
}

/// True if the relocation `r` of the code `code` is a branch or a jump that does not link
/// (`jal x0`, `c.j`): one back to its own function's entry is a loop, not a call.
fn jumps_without_link(code: &[u8], r: &Reloc) -> bool {
    let at = r.offset as usize;
    let half = |k: usize| {
        code.get(at + k..at + k + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    match r.r_type {
        t if t == elf::R_RISCV_BRANCH.0 || t == elf::R_RISCV_RVC_BRANCH.0 => true,
        // rd (bits 7..11) is zero.
        t if t == elf::R_RISCV_JAL.0 => half(0).is_some_and(|lo| (lo >> 7) & 0x1f == 0),
        // c.j is funct3 101; c.jal (RV32) is 001 and links.
        t if t == elf::R_RISCV_RVC_JUMP.0 => half(0).is_some_and(|h| h >> 13 == 0b101),
        _ => false,
    }
}

/// The label (new numbering) and zero addend a relocation against old symbol `sym` with new
/// addend `addend` is made against when it names the start of an inserted slot through
/// another symbol (see [`SlotLabels::retarget`]).
fn slot_label(
    file: &ElfFile<'_>,
    new_symbols: &[NewSymbol],
    labels: &SlotLabels,
    sym: u32,
    addend: i64,
) -> Option<(u32, i64)> {
    let s = file.symbols.get(sym as usize).filter(|_| sym != 0)?;
    let value = if s.kind == elf::STT_SECTION.0 {
        s.value
    } else {
        new_symbols.get(sym as usize)?.value
    };
    let target = u64::try_from((value as i64).checked_add(addend)?).ok()?;
    let label = labels.retarget(s.section()?, target)?;
    (label != labels.renumber(sym) || addend != 0).then_some((label, 0))
}

/// Rewrites every relocation section. With `labels` (slots were inserted), symbols are
/// renumbered and references to slots are made against their labels. Relocation sections applying to a section in
/// `emptied` lose all their entries (the `__patchable_function_entries` tables of a
/// `--slot 0` rewrite).
pub fn move_relocations(
    file: &ElfFile<'_>,
    relocs: &[RelocSection],
    plans: &BTreeMap<usize, SectionPlan>,
    maps: &Maps,
    new_symbols: &[NewSymbol],
    emptied: &BTreeSet<usize>,
    labels: Option<&SlotLabels>,
) -> Result<MovedRelocs> {
    let mut out = MovedRelocs::default();
    for rs in relocs {
        let target = rs.target;
        if emptied.contains(&target) {
            out.by_section.insert(rs.index, Vec::new());
            continue;
        }
        let map = maps.get(&target);
        let code = file
            .sections
            .get(target)
            .filter(|s| s.is_exec())
            .and_then(|s| file.section_data(s).ok());
        let mut changed = false;
        let mut entries = Vec::with_capacity(rs.relocs.len() + 4);
        for r in &rs.relocs {
            let mut new = *r;
            let mut touched = false;
            if let Some(map) = map {
                if map.is_removed(r.offset) && r.r_type != elf::R_RISCV_NONE.0 {
                    return Err(Error::refused(format!(
                        "relocation type {} at {}+{:#x} lies in a removed pad",
                        r.r_type, file.sections[target].name, r.offset
                    )));
                }
                new.offset = map.map(r.offset);
                touched = true;
            }
            let at = RelocAt {
                section: target,
                offset: r.offset,
                jump: code.is_some_and(|c| jumps_without_link(c, r)),
            };
            if let Some(addend) =
                map_addend(file, maps, new_symbols, (r.r_type, r.sym, r.addend), at)
            {
                new.addend = addend;
                touched = true;
            }
            if let Some(labels) = labels {
                new.sym = labels.renumber(r.sym);
                if let Some((sym, addend)) =
                    slot_label(file, new_symbols, labels, r.sym, new.addend)
                {
                    (new.sym, new.addend) = (sym, addend);
                    touched = true;
                }
            }
            if touched {
                *out.types.entry(r.r_type).or_insert(0) += 1;
            }
            changed |= new != *r;
            entries.push(new);
        }
        if let Some(plan) = plans.get(&target) {
            // Each reserve goes in front of the first entry after it: nothing is relocated
            // inside a reserve, so no pair (a relocation and its R_RISCV_RELAX) is split.
            let mut aligns = plan.inserted.iter().filter(|i| i.align).peekable();
            if aligns.peek().is_some() {
                let mut merged = Vec::with_capacity(entries.len() + plan.inserted.len());
                for e in entries {
                    while let Some(ins) = aligns.next_if(|i| i.new_offset < e.offset) {
                        merged.push(align_entry(ins));
                        *out.types.entry(elf::R_RISCV_ALIGN.0).or_insert(0) += 1;
                    }
                    merged.push(e);
                }
                for ins in aligns {
                    merged.push(align_entry(ins));
                    *out.types.entry(elf::R_RISCV_ALIGN.0).or_insert(0) += 1;
                }
                entries = merged;
                changed = true;
            }
        }
        if changed {
            out.by_section.insert(rs.index, entries);
        }
    }
    // A section that needs an alignment reserve but has no relocation section cannot
    // happen: reserves are only added after relaxable relocations of the same section.
    let targets: BTreeSet<usize> = relocs.iter().map(|rs| rs.target).collect();
    for plan in plans.values() {
        let has_rela = targets.contains(&plan.index);
        if !has_rela && plan.inserted.iter().any(|i| i.align) {
            return Err(Error::refused(format!(
                "{}: an alignment relocation is needed but the section has no relocations",
                file.sections[plan.index].name
            )));
        }
    }
    Ok(out)
}
