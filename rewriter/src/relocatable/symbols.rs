//! New values and sizes of the symbols defined in edited sections, and the mapping of a
//! relocation's symbol plus addend.

use std::collections::BTreeMap;

use object::elf;

use super::offsets::OffsetMap;
use crate::elf::{ElfFile, Symbol};

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

/// An ELF mapping symbol (`$x`, `$x<isa>`, `$d`): it marks where code or data starts, so
/// it stays in front of bytes inserted at its place.
fn is_mapping_symbol(s: &Symbol<'_>) -> bool {
    s.name == "$d" || s.name.starts_with("$x")
}

/// New value and size of every symbol of `file` (index 0 included, unchanged).
pub fn map_symbols(file: &ElfFile<'_>, maps: &Maps) -> Vec<NewSymbol> {
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
            let value = if is_mapping_symbol(s) {
                map.map_end(s.value)
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

/// The new addend of a relocation against symbol `sym` with `addend`, so that the new
/// symbol value plus the new addend names the mapped target. `None` if the symbol's
/// section did not move (the addend stays).
pub fn map_addend(
    file: &ElfFile<'_>,
    maps: &Maps,
    new_symbols: &[NewSymbol],
    sym: u32,
    addend: i64,
) -> Option<i64> {
    if sym == 0 {
        return None;
    }
    let s = file.symbols.get(sym as usize)?;
    let map = maps.get(&s.section()?)?;
    let target = (s.value as i64).wrapping_add(addend);
    let new_target = map.map_signed(target);
    let new_value = if s.kind == elf::STT_SECTION.0 {
        s.value
    } else {
        new_symbols[sym as usize].value
    };
    Some(new_target.wrapping_sub(new_value as i64))
}
