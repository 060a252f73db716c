//! The fallback writer (the default is [`super::patched`]): the original file read into
//! `object`'s ELF builder, every address, size, offset, symbol, relocation and dynamic entry
//! replaced from the plan and the fixed contents, then written out.

use object::build::elf::{Builder, Dynamic, SectionData};
use object::elf;

use crate::elf::fields::ClassFields;
use crate::elf::{read_uint, ElfFile, FileKind};
use crate::error::{Error, Result};
use crate::plan::{AddressMap, Plan};
use crate::relocate::Fixed;

use super::common::{mapped_symbols, NewRecord, NewSection, ADDRESS_TAGS};

fn err(e: object::build::Error) -> Error {
    Error::Malformed(format!("ELF writer: {e}"))
}

/// Reads the original file into `object`'s builder. It needs nothing from the plan, so a
/// caller can run it while relocating.
pub fn read_builder<'data>(file: &ElfFile<'data>) -> Result<Builder<'data>> {
    crate::timing::phase("emit: builder read", || Builder::read(file.data)).map_err(err)
}

/// Puts the plan and the fixed contents into the builder (taking them out of `fixed`), so
/// that a caller can free what only the preparation needed (symbols, relocations) before
/// [`write()`] allocates the output: the peak of a rewrite's memory. Adds the new allocated
/// `table` (`__mcount_loc`) and the new non-allocated `record` (an insertion's
/// `__patchable_function_entries`, the last section), when given.
pub fn prepare<'data>(
    file: &ElfFile<'data>,
    mut b: Builder<'data>,
    plan: &Plan,
    fixed: &mut Fixed,
    table: Option<NewSection>,
    record: Option<NewRecord>,
) -> Result<Builder<'data>> {
    // sh_addralign 0 means "no constraint", like 1; the writer's layout divides by it.
    for s in b.sections.iter_mut() {
        s.sh_addralign = s.sh_addralign.max(1);
    }
    let map = &plan.map;
    let ids: Vec<_> = b.sections.iter().map(|s| s.id()).collect();
    if ids.len() + 1 != file.sections.len() {
        return Err(Error::malformed("section count differs between readers"));
    }
    let dynsyms = file.dynamic_symbols()?;
    for (pos, &id) in ids.iter().enumerate() {
        let index = pos + 1;
        let orig = &file.sections[index];
        let sec = b.sections.get_mut(id);
        if file.kind.is_linked() && orig.is_alloc() {
            if let Some(m) = map.section(index) {
                sec.sh_addr = m.new_addr;
            }
            if let Some(&off) = plan.offsets.get(&index) {
                sec.sh_offset = off;
            }
        }
        if let Some(data) = fixed.data.remove(&index) {
            match &mut sec.data {
                SectionData::Data(d) | SectionData::Note(d) => *d = data.into(),
                _ => {
                    return Err(Error::malformed(format!(
                        "section {} changed but is not plain data",
                        orig.name
                    )))
                }
            }
        }
        // Taken, not borrowed: the new entries are copied into the builder's and freed.
        if let Some(new) = fixed.relocs.remove(&index) {
            match &mut sec.data {
                SectionData::Relocation(v) => {
                    // Fewer new entries: the section was emptied (a removed patch table).
                    v.truncate(new.len());
                    for (r, n) in v.iter_mut().zip(new) {
                        r.r_offset = n.offset;
                        r.r_addend = n.addend;
                    }
                }
                SectionData::DynamicRelocation(v) => {
                    for (r, n) in v.iter_mut().zip(new) {
                        r.r_offset = n.offset;
                        r.r_addend = n.addend;
                    }
                }
                _ => {}
            }
        }
        if let SectionData::Dynamic(dyns) = &mut sec.data {
            for d in dyns.iter_mut() {
                if let Dynamic::Integer { tag, val } = d {
                    if ADDRESS_TAGS.contains(&(tag.0 as u64)) && *val != 0 {
                        *val = map.map(*val);
                    }
                }
            }
        }
    }
    map_symbols(file, map, b.symbols.iter_mut(), &file.symbols);
    map_symbols(file, map, b.dynamic_symbols.iter_mut(), &dynsyms);
    if file.kind.is_linked() {
        b.header.e_entry = map.map(file.entry);
        for (k, seg) in b.segments.iter_mut().enumerate() {
            let Some(&(vaddr, offset, filesz, memsz)) = plan.segments.get(k) else {
                break;
            };
            let phys_delta = seg.p_vaddr.wrapping_sub(seg.p_paddr);
            seg.p_vaddr = vaddr;
            seg.p_paddr = vaddr.wrapping_sub(phys_delta);
            seg.p_offset = offset;
            seg.p_filesz = filesz;
            seg.p_memsz = memsz;
        }
    }
    if let Some(t) = table {
        insert_section(&mut b, &ids, t)?;
    }
    if let Some(r) = record {
        // Non-allocated: the writer places it after the allocated sections, in table order.
        let s = b.sections.add();
        s.name = r.name.as_bytes().to_vec().into();
        s.sh_type = elf::SHT_PROGBITS;
        s.sh_flags = elf::SectionFlags(0);
        s.sh_addralign = r.align.max(1);
        s.sh_entsize = r.align;
        s.data = SectionData::Data(r.data.into());
    }
    Ok(b)
}

/// Writes the prepared builder out. Of `file`, only the header facts and the sections are
/// read.
pub fn write(file: &ElfFile<'_>, b: Builder<'_>) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(file.data.len());
    crate::timing::phase("emit: builder write", || b.write(&mut out)).map_err(err)?;
    fix_nonalloc_segments(file, &mut out)?;
    Ok(out)
}

/// Moves the builder's symbols (`.symtab` or `.dynsym`, in file order after the null
/// symbol) to the new values and sizes of the original symbols `orig`.
fn map_symbols<'a, 'data: 'a, const DYNAMIC: bool>(
    file: &ElfFile<'_>,
    map: &AddressMap,
    syms: impl Iterator<Item = &'a mut object::build::elf::Symbol<'data, DYNAMIC>>,
    orig: &[crate::elf::Symbol<'_>],
) {
    let mapped = mapped_symbols(file, map, orig);
    for ((sym, orig), m) in syms
        .zip(orig.iter().skip(1))
        .zip(mapped.into_iter().skip(1))
    {
        match m {
            // A linker-defined address keeps its size; only its value moves.
            None => sym.st_value = map.map(orig.value),
            Some((v, s)) => {
                sym.st_value = v;
                sym.st_size = s;
            }
        }
    }
}

/// Adds an allocated section right after `t.after` in section-table order, by shifting the
/// contents of every later section one slot up (the writer places allocated sections in
/// table order, so a new one cannot simply go at the end).
fn insert_section(
    b: &mut Builder<'_>,
    ids: &[object::build::elf::SectionId],
    t: NewSection,
) -> Result<()> {
    let new_id = b.sections.add().id();
    let at = t.after; // original index; its builder position is at - 1, new one goes at `at`
    let mut all: Vec<_> = ids.to_vec();
    all.push(new_id);
    // Move section contents up by one from the end down to position `at`.
    for pos in (at..all.len() - 1).rev() {
        let (from, to) = (all[pos], all[pos + 1]);
        let moved = take_section(b.sections.get_mut(from));
        put_section(b.sections.get_mut(to), moved);
    }
    let slot = b.sections.get_mut(all[at]);
    slot.name = t.name.as_bytes().to_vec().into();
    slot.sh_type = elf::SHT_PROGBITS;
    slot.sh_flags = elf::SectionFlags(elf::SHF_ALLOC.0);
    slot.sh_addr = t.addr;
    slot.sh_offset = t.offset;
    slot.sh_size = t.data.len() as u64;
    slot.sh_link_section = None;
    slot.sh_info = 0;
    slot.sh_info_section = None;
    slot.sh_addralign = if b.is_64 { 8 } else { 4 };
    slot.sh_entsize = if b.is_64 { 8 } else { 4 };
    slot.data = SectionData::Data(t.data.into());
    // Every reference to a moved section now names the next id.
    let remap = |id: object::build::elf::SectionId| -> object::build::elf::SectionId {
        match all.iter().position(|&x| x == id) {
            Some(p) if p >= at => all[p + 1],
            _ => id,
        }
    };
    for s in b.sections.iter_mut() {
        if s.id() == all[at] {
            continue;
        }
        s.sh_link_section = s.sh_link_section.map(remap);
        s.sh_info_section = s.sh_info_section.map(remap);
    }
    for s in b.symbols.iter_mut() {
        s.section = s.section.map(remap);
    }
    for s in b.dynamic_symbols.iter_mut() {
        s.section = s.section.map(remap);
    }
    for g in b.segments.iter_mut() {
        for s in g.sections.iter_mut() {
            *s = remap(*s);
        }
    }
    Ok(())
}

/// The movable fields of a builder section.
struct SectionFields<'data> {
    name: object::build::ByteString<'data>,
    sh_type: elf::SectionType,
    sh_flags: elf::SectionFlags,
    sh_addr: u64,
    sh_offset: u64,
    sh_size: u64,
    sh_link_section: Option<object::build::elf::SectionId>,
    sh_info: u32,
    sh_info_section: Option<object::build::elf::SectionId>,
    sh_addralign: u64,
    sh_entsize: u64,
    data: SectionData<'data>,
    delete: bool,
}

fn take_section<'data>(s: &mut object::build::elf::Section<'data>) -> SectionFields<'data> {
    SectionFields {
        name: std::mem::take(&mut s.name),
        sh_type: s.sh_type,
        sh_flags: s.sh_flags,
        sh_addr: s.sh_addr,
        sh_offset: s.sh_offset,
        sh_size: s.sh_size,
        sh_link_section: s.sh_link_section.take(),
        sh_info: s.sh_info,
        sh_info_section: s.sh_info_section.take(),
        sh_addralign: s.sh_addralign,
        sh_entsize: s.sh_entsize,
        data: std::mem::replace(&mut s.data, SectionData::UninitializedData(0)),
        delete: s.delete,
    }
}

fn put_section<'data>(s: &mut object::build::elf::Section<'data>, f: SectionFields<'data>) {
    s.name = f.name;
    s.sh_type = f.sh_type;
    s.sh_flags = f.sh_flags;
    s.sh_addr = f.sh_addr;
    s.sh_offset = f.sh_offset;
    s.sh_size = f.sh_size;
    s.sh_link_section = f.sh_link_section;
    s.sh_info = f.sh_info;
    s.sh_info_section = f.sh_info_section;
    s.sh_addralign = f.sh_addralign;
    s.sh_entsize = f.sh_entsize;
    s.data = f.data;
    s.delete = f.delete;
}

/// Segments that describe non-allocated sections (`PT_RISCV_ATTRIBUTES`) must follow them
/// to wherever the writer put them.
fn fix_nonalloc_segments(file: &ElfFile<'_>, out: &mut [u8]) -> Result<()> {
    if !file.kind.is_linked() || file.kind == FileKind::Relocatable {
        return Ok(());
    }
    // Only the headers are needed: reading the whole output again (symbols and all) would
    // cost as much as a tenth of a large rewrite.
    let (is_64, new_off, fixes) = if file.is_64 {
        attributes_fixes::<elf::FileHeader64<object::Endianness>>(out)?
    } else {
        attributes_fixes::<elf::FileHeader32<object::Endianness>>(out)?
    };
    let Some(new_off) = new_off else {
        return Ok(());
    };
    let phoff = read_phoff(out, is_64);
    let entsize = if is_64 { 56 } else { 32 };
    for k in fixes {
        let base = phoff + k * entsize + if is_64 { 8 } else { 4 };
        if is_64 {
            out[base..base + 8].copy_from_slice(&new_off.to_le_bytes());
        } else {
            out[base..base + 4].copy_from_slice(&(new_off as u32).to_le_bytes());
        }
    }
    Ok(())
}

/// In the written file: whether it is 64-bit, the offset of `.riscv.attributes` (if any),
/// and the program headers of type `PT_RISCV_ATTRIBUTES` that do not point at it.
fn attributes_fixes<Elf: object::read::elf::FileHeader<Endian = object::Endianness>>(
    out: &[u8],
) -> Result<(bool, Option<u64>, Vec<usize>)> {
    use object::read::elf::{ProgramHeader, SectionHeader};
    let header = Elf::parse(out)?;
    let endian = header.endian()?;
    let sections = header.sections(endian, out)?;
    let attrs = sections
        .iter()
        .find(|s| sections.section_name(endian, s).ok() == Some(b".riscv.attributes".as_slice()))
        .map(|s| s.sh_offset(endian).into());
    let Some(attrs) = attrs else {
        return Ok((header.is_type_64(), None, Vec::new()));
    };
    let fixes = header
        .program_headers(endian, out)?
        .iter()
        .enumerate()
        .filter(|(_, g)| {
            g.p_type(endian) == elf::PT_RISCV_ATTRIBUTES && g.p_offset(endian).into() != attrs
        })
        .map(|(k, _)| k)
        .collect();
    Ok((header.is_type_64(), Some(attrs), fixes))
}

fn read_phoff(out: &[u8], is_64: bool) -> usize {
    let f = ClassFields::of(is_64);
    read_uint(out, f.e_phoff, f.word).map_or(0, |v| v as usize)
}
