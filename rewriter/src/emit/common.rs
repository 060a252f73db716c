//! What both writers share: the new table section, the dynamic tags that hold addresses, and
//! how a symbol's value and size move.

use object::elf;

use crate::elf::ElfFile;
use crate::plan::AddressMap;

/// A new allocated section to add (the `__mcount_loc` table).
pub struct NewSection {
    /// Section name.
    pub name: &'static str,
    /// Address.
    pub addr: u64,
    /// File offset.
    pub offset: u64,
    /// Contents.
    pub data: Vec<u8>,
    /// Insert after this original section index (keeps offsets increasing in table order).
    pub after: usize,
}

/// A new non-allocated section to add after every other section (the
/// `__patchable_function_entries` of a `rewrite --insert`, see
/// [`super::tables::entries_record`]): it takes no address and no room in a segment, so the
/// loaded image does not change.
pub struct NewRecord {
    /// Section name.
    pub name: &'static str,
    /// Contents.
    pub data: Vec<u8>,
    /// `sh_addralign` and `sh_entsize` (the pointer size: an array of addresses).
    pub align: u64,
}

/// Dynamic tags whose value is an address in the image (both writers move them).
pub const ADDRESS_TAGS: &[u64] = &[
    elf::DT_PLTGOT.0 as u64,
    elf::DT_HASH.0 as u64,
    elf::DT_STRTAB.0 as u64,
    elf::DT_SYMTAB.0 as u64,
    elf::DT_RELA.0 as u64,
    elf::DT_INIT.0 as u64,
    elf::DT_FINI.0 as u64,
    elf::DT_REL.0 as u64,
    elf::DT_JMPREL.0 as u64,
    elf::DT_INIT_ARRAY.0 as u64,
    elf::DT_FINI_ARRAY.0 as u64,
    elf::DT_PREINIT_ARRAY.0 as u64,
    elf::DT_RELR.0 as u64,
    elf::DT_GNU_HASH.0 as u64,
    elf::DT_VERSYM.0 as u64,
    elf::DT_VERDEF.0 as u64,
    elf::DT_VERNEED.0 as u64,
];

/// Maps a symbol value: section-relative in relocatable files, address otherwise.
fn map_symbol(
    file: &ElfFile<'_>,
    map: &AddressMap,
    section: Option<usize>,
    value: u64,
    size: u64,
    kind: u8,
) -> (u64, u64) {
    let Some(sec) = section else {
        return (value, size);
    };
    let s = &file.sections[sec];
    if file.kind.is_linked() && !s.is_alloc() {
        return (value, size);
    }
    if kind == elf::STT_SECTION.0 {
        return (map.section(sec).map_or(value, |m| m.new_addr), size);
    }
    let new = if file.kind.is_linked() {
        map.map(value)
    } else {
        map.map_in(sec, value)
    };
    let new_size = if size > 0 && map.section(sec).is_some_and(|m| !m.edits().is_empty()) {
        // A corrupt st_size may claim up to 2^64: the end stops at the top of the space.
        let end_old = value.saturating_add(size);
        let end = if file.kind.is_linked() {
            map.map_end(end_old)
        } else {
            map.section(sec).map_or(end_old, |m| m.map_end(end_old))
        };
        end.saturating_sub(new)
    } else {
        size
    };
    (new, new_size)
}

/// New (value, size) of each symbol of `orig` (index 0, the null symbol, included), or
/// `None` for a linker-defined address, whose value alone moves (to `map.map(value)`).
/// Computed in parallel: a large program has hundreds of thousands.
pub fn mapped_symbols(
    file: &ElfFile<'_>,
    map: &AddressMap,
    orig: &[crate::elf::Symbol<'_>],
) -> Vec<Option<(u64, u64)>> {
    use rayon::prelude::*;
    orig.par_iter()
        .map(|orig| mapped_symbol(file, map, orig))
        .collect()
}

/// New (value, size) of one symbol, or `None` for a linker-defined address, whose value
/// alone moves (to `map.map(value)`).
pub fn mapped_symbol(
    file: &ElfFile<'_>,
    map: &AddressMap,
    orig: &crate::elf::Symbol<'_>,
) -> Option<(u64, u64)> {
    if orig.is_linker_address() {
        return None;
    }
    Some(map_symbol(
        file,
        map,
        orig.section(),
        orig.value,
        orig.size,
        orig.kind,
    ))
}
