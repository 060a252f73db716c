//! New values and sizes of the symbols defined in edited sections, and the mapping of a
//! relocation's symbol plus addend.
//!
//! Most offsets map onto the first kept byte at or after them ([`OffsetMap::map`]). Two
//! kinds of labels instead stay in front of nops inserted at their place
//! ([`OffsetMap::map_end`]): mapping symbols (`$x`, `$d`), which mark where code starts,
//! and *end labels*: local labels used only as the minuend of a difference (`ADD*`/`SET*`
//! of a pair, e.g. `.LFE0` in an FDE's `pc_range` or a `DW_AT_high_pc`), so that a
//! function's range does not swallow the alignment nops in front of the next one.
//!
//! A function entry with an inserted slot (`rewrite --insert`) is named two ways: what
//! *refers* to the function (its `STT_FUNC` symbol, a call, a pointer, the start of its
//! FDE or line rows) goes to the slot ([`OffsetMap::map_reference`]); what names its first
//! instruction (a `%pcrel_lo` naming the `auipc` there, a jump that loops back from inside
//! the function, the end of a difference) stays behind the slot.

use std::collections::{BTreeMap, HashSet};

use object::elf;

use super::offsets::OffsetMap;
use crate::elf::{ElfFile, RelocSection, Symbol};

/// A symbol's new `st_value` and `st_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewSymbol {
    /// `st_value`.
    pub value: u64,
    /// `st_size`.
    pub size: u64,
}

/// Section index → offset map, for every section whose bytes move.
pub type Maps = BTreeMap<usize, OffsetMap>;

/// An ELF mapping symbol (`$x`, `$x<isa>`, `$d`).
fn is_mapping_symbol(s: &Symbol<'_>) -> bool {
    s.name == "$d" || s.name.starts_with("$x")
}

/// The relocation types that add the end of a difference (`end - start`).
pub fn is_difference_end(t: u32) -> bool {
    (elf::R_RISCV_ADD8.0..=elf::R_RISCV_ADD64.0).contains(&t)
        || (elf::R_RISCV_SET6.0..=elf::R_RISCV_SET32.0).contains(&t)
        || t == elf::R_RISCV_SET_ULEB128.0
}

/// Local untyped labels (`.L*`, unnamed) referenced only as the end of differences.
pub fn end_labels(file: &ElfFile<'_>, relocs: &[RelocSection]) -> HashSet<u32> {
    let mut ends = HashSet::new();
    let mut others = HashSet::new();
    for r in relocs.iter().flat_map(|rs| rs.relocs.iter()) {
        if is_difference_end(r.r_type) {
            ends.insert(r.sym);
        } else {
            others.insert(r.sym);
        }
    }
    ends.retain(|&i| {
        !others.contains(&i)
            && file.symbols.get(i as usize).is_some_and(|s| {
                s.kind == elf::STT_NOTYPE.0
                    && s.bind == elf::STB_LOCAL.0
                    && (s.name.is_empty() || s.name.starts_with(".L"))
            })
    });
    ends
}

/// New value and size of every symbol of `file` (index 0 included, unchanged).
pub fn map_symbols(file: &ElfFile<'_>, maps: &Maps, ends: &HashSet<u32>) -> Vec<NewSymbol> {
    file.symbols
        .iter()
        .map(|s| {
            let old = NewSymbol {
                value: s.value,
                size: s.size,
            };
            let Some(map) = s.section().and_then(|sec| maps.get(&sec)) else {
                return old;
            };
            if s.kind == elf::STT_SECTION.0 {
                return old;
            }
            let value = if is_mapping_symbol(s) || ends.contains(&(s.index as u32)) {
                map.map_end(s.value)
            } else if is_function(s) {
                map.map_reference(s.value)
            } else {
                map.map(s.value)
            };
            let size = if s.size > 0 {
                map.map_end(s.value.saturating_add(s.size))
                    .saturating_sub(value)
            } else {
                0
            };
            NewSymbol { value, size }
        })
        .collect()
}

/// A function symbol: its value is the entry every reference goes to.
pub fn is_function(s: &Symbol<'_>) -> bool {
    s.kind == elf::STT_FUNC.0 || s.kind == elf::STT_GNU_IFUNC.0
}

/// The relocation types that name an instruction, not a function: `%pcrel_lo` names the
/// `auipc` carrying the high part.
fn names_an_instruction(t: u32) -> bool {
    t == elf::R_RISCV_PCREL_LO12_I.0 || t == elf::R_RISCV_PCREL_LO12_S.0
}

/// Where a relocation sits: section index and offset, and whether it is a jump or branch
/// that does not link (one that loops back to its own function's entry is not a call).
#[derive(Debug, Clone, Copy)]
pub struct RelocAt {
    /// Section the relocation applies to.
    pub section: usize,
    /// Its offset there.
    pub offset: u64,
    /// A branch or a jump that does not link.
    pub jump: bool,
}

/// The new addend of a relocation of type `r_type` against symbol `sym` with `addend`, at
/// `at`, so that the new symbol value plus the new addend names the mapped target (the end
/// side of inserted nops for the end of a difference; the slot or the instruction behind it
/// for a function entry with an inserted slot, see the module comment). `None` if the
/// symbol's section did not move.
pub fn map_addend(
    file: &ElfFile<'_>,
    maps: &Maps,
    new_symbols: &[NewSymbol],
    (r_type, sym, addend): (u32, u32, i64),
    at: RelocAt,
) -> Option<i64> {
    if sym == 0 {
        return None;
    }
    let s = file.symbols.get(sym as usize)?;
    let section = s.section()?;
    let map = maps.get(&section)?;
    let target = (s.value as i64).wrapping_add(addend);
    let new_value = if s.kind == elf::STT_SECTION.0 {
        s.value
    } else {
        new_symbols[sym as usize].value
    };
    let slot = u64::try_from(target).ok().and_then(|t| map.slot_at(t));
    let new_target = if let Some(slot) = slot {
        let loops = at.jump && at.section == section && map.loops_to_own_entry(at.offset, slot.old);
        if is_difference_end(r_type) {
            map.map_end(slot.old) as i64
        } else if loops || names_an_instruction(r_type) {
            map.map(slot.old) as i64
        } else {
            slot.new as i64
        }
    } else if addend == 0 && s.kind != elf::STT_SECTION.0 {
        // Exactly the symbol: follow it (an end label already mapped as an end).
        new_value as i64
    } else if is_difference_end(r_type) && target >= 0 && target as u64 <= map.old_size() {
        map.map_end(target as u64) as i64
    } else {
        map.map_signed(target)
    };
    Some(new_target.wrapping_sub(new_value as i64))
}
