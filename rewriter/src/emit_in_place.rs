//! Writing a rewrite that moved nothing: a copy of the input with its changed bytes patched
//! in place.
//!
//! A vmlinux rewritten in place keeps every section's address, size and file offset and every
//! segment; only section contents, relocation offsets and addends, and symbol values and
//! sizes change. Going through `object`'s builder would re-serialise the whole file (and hold
//! every relocation a second time); here the input is copied once and each changed field is
//! written where it already is. Anything this cannot express (a new section, a moved one,
//! `REL` relocations, dynamic linking data) falls back to [`crate::emit::emit_with`].

use crate::elf::{ElfFile, FileKind, Section};
use crate::plan::Plan;
use crate::relocate::Fixed;

/// The rewritten file, or `None` when the rewrite is not a plain in-place patch.
pub fn emit_in_place(file: &ElfFile<'_>, plan: &Plan, fixed: &Fixed) -> Option<Vec<u8>> {
    if !applies(file, plan, fixed) {
        return None;
    }
    let mut out = file.data.to_vec();
    for (&index, data) in &fixed.data {
        let s = &file.sections[index];
        let off = usize::try_from(s.offset).ok()?;
        out.get_mut(off..off.checked_add(data.len())?)?
            .copy_from_slice(data);
    }
    let (word, rela) = if file.is_64 { (8, 24) } else { (4, 12) };
    for (&index, relocs) in &fixed.relocs {
        let s = &file.sections[index];
        let base = usize::try_from(s.offset).ok()?;
        for (k, r) in relocs.iter().enumerate() {
            let at = base.checked_add(k.checked_mul(rela)?)?;
            put(&mut out, at, word, r.offset)?;
            put(&mut out, at + 2 * word, word, r.addend as u64)?;
        }
    }
    if let Some(symtab) = file.symtab_index.map(|i| &file.sections[i]) {
        // Elf64_Sym: value at 8, size at 16; Elf32_Sym: value at 4, size at 8.
        let (entsize, value_at, size_at) = if file.is_64 { (24, 8, 16) } else { (16, 4, 8) };
        let base = usize::try_from(symtab.offset).ok()?;
        let mapped = crate::emit::mapped_symbols(file, &plan.map, &file.symbols);
        for (k, (orig, m)) in file.symbols.iter().zip(mapped).enumerate().skip(1) {
            let at = base.checked_add(k.checked_mul(entsize)?)?;
            match m {
                None => put(&mut out, at + value_at, word, plan.map.map(orig.value))?,
                Some((v, size)) => {
                    put(&mut out, at + value_at, word, v)?;
                    put(&mut out, at + size_at, word, size)?;
                }
            }
        }
    }
    // e_entry: at 24 in both classes.
    put(&mut out, 24, word, plan.map.map(file.entry))?;
    Some(out)
}

/// Little-endian `size`-byte write; `None` if it does not fit.
fn put(out: &mut [u8], at: usize, size: usize, value: u64) -> Option<()> {
    out.get_mut(at..at.checked_add(size)?)?
        .copy_from_slice(&value.to_le_bytes()[..size]);
    Some(())
}

/// True when every change fits where the input already has its bytes.
fn applies(file: &ElfFile<'_>, plan: &Plan, fixed: &Fixed) -> bool {
    let same_place = |s: &Section<'_>| {
        plan.map
            .section(s.index)
            .is_none_or(|m| m.new_addr == s.addr && m.old_size == s.size)
            && plan.offsets.get(&s.index).is_none_or(|&o| o == s.offset)
    };
    let rela = object::elf::SHT_RELA.0;
    let entsize = if file.is_64 { 24 } else { 12 };
    let sym_entsize = if file.is_64 { 24 } else { 16 };
    file.kind == FileKind::Vmlinux
        && !file.sections.iter().any(|s| {
            [
                object::elf::SHT_DYNAMIC.0,
                object::elf::SHT_DYNSYM.0,
                object::elf::SHT_REL.0,
            ]
            .contains(&s.sh_type)
        })
        && file.sections.iter().all(same_place)
        && plan.segments.len() == file.segments.len()
        && plan
            .segments
            .iter()
            .zip(&file.segments)
            .all(|(&(vaddr, offset, filesz, memsz), g)| {
                (vaddr, offset, filesz, memsz) == (g.vaddr, g.offset, g.filesz, g.memsz)
            })
        && fixed.data.iter().all(|(&i, d)| {
            file.sections.get(i).is_some_and(|s| {
                !s.is_nobits() && file.section_data(s).is_ok_and(|old| old.len() == d.len())
            })
        })
        && fixed.relocs.iter().all(|(&i, r)| {
            file.sections.get(i).is_some_and(|s| {
                s.sh_type == rela
                    && s.entsize == entsize
                    && s.size == (r.len() * entsize as usize) as u64
            })
        })
        && file
            .symtab_index
            .is_none_or(|i| file.sections[i].entsize == sym_entsize)
}
