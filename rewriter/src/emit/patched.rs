//! Writing a linked rewrite by patching the input's own bytes into a new file, without
//! `object`'s builder.
//!
//! A linked file's rewrite changes little of its structure: allocated sections move to the
//! plan's addresses and file offsets, executable sections shrink, and section contents,
//! relocation offsets and addends, symbol values and sizes, dynamic address tags and program
//! headers change where they are. Names, string tables, symbol and relocation order, hash and
//! version tables stay as they were. So the new file is the input's bytes placed anew:
//! - the headers and every allocated section at the plan's file offsets (bytes before the
//!   first moved section, gaps included, copied as they are);
//! - the non-allocated sections as one block after them, shifted together (their relative
//!   layout and alignment kept);
//! - the `__mcount_loc` table, if any, at the plan's offset, with its header appended at the
//!   end of the section table (as `objcopy --add-section` does: no index changes, so no
//!   `st_shndx`, `sh_link` or `sh_info` is renumbered), its name appended to `.shstrtab`;
//! - an insertion's non-allocated `__patchable_function_entries`, if any, after that block,
//!   its header after the table's;
//! - the section header table at the end.
//!
//! Going through the builder instead re-reads every symbol and relocation, holds them a
//! second time and re-serialises the whole file on one thread: for a large program that was
//! a quarter of a rewrite's time and most of its memory. What this writer cannot express
//! (`REL` relocations, non-allocated sections among allocated ones, a section that grows
//! outside the plan, extended section numbering) falls back to [`super::builder`]:
//! [`Source::of`] says so before relocation (so the builder is read only when it will be
//! used), [`emit_patched`] after.

use object::elf;

use crate::elf::fields::ClassFields;
use crate::elf::{read_uint, ElfFile, Section};
use crate::plan::{AddressMap, Plan};
use crate::relocate::Fixed;

use super::common::{mapped_symbol, NewRecord, NewSection, ADDRESS_TAGS};

/// The file header fields this writer reads and rewrites.
#[derive(Clone, Copy)]
struct Header {
    phoff: usize,
    phnum: usize,
    shoff: usize,
    shnum: usize,
}

impl Header {
    /// End of the program header table in the file.
    fn headers_end(&self, class: &ClassFields) -> Option<u64> {
        let end = self
            .phoff
            .checked_add(self.phnum.checked_mul(class.phdr_size)?)?;
        u64::try_from(end).ok()
    }
}

fn header(file: &ElfFile<'_>) -> Option<Header> {
    let f = ClassFields::of(file.is_64);
    let at = |off: usize, size: usize| {
        read_uint(file.data, off, size).and_then(|v| usize::try_from(v).ok())
    };
    Some(Header {
        phoff: at(f.e_phoff, f.word)?,
        phnum: at(f.e_phnum, 2)?,
        shoff: at(f.e_shoff, f.word)?,
        shnum: at(f.e_shnum, 2)?,
    })
}

/// Little-endian `size`-byte write; `None` if it does not fit.
fn put(out: &mut [u8], at: usize, size: usize, value: u64) -> Option<()> {
    out.get_mut(at..at.checked_add(size)?)?
        .copy_from_slice(&value.to_le_bytes()[..size]);
    Some(())
}

/// Copies `bytes` to `out[at..]`; `None` if they do not fit. Large copies go in parallel
/// slices: they are where a large output's pages are first touched, and faulted in.
fn put_bytes(out: &mut [u8], at: u64, bytes: &[u8]) -> Option<()> {
    use rayon::prelude::*;
    const SLICE: usize = 1 << 20;
    let at = usize::try_from(at).ok()?;
    let dst = out.get_mut(at..at.checked_add(bytes.len())?)?;
    if bytes.len() <= SLICE {
        dst.copy_from_slice(bytes);
    } else {
        dst.par_chunks_mut(SLICE)
            .zip(bytes.par_chunks(SLICE))
            .for_each(|(d, s)| d.copy_from_slice(s));
    }
    Some(())
}

/// True when a section's bytes in the file are part of the allocated image.
fn in_image(s: &Section<'_>) -> bool {
    s.is_alloc() && !s.is_nobits() && s.size > 0
}

/// The non-allocated sections with bytes in the file (the null section excluded).
fn nonalloc<'a, 'data>(file: &'a ElfFile<'data>) -> impl Iterator<Item = &'a Section<'data>> {
    file.sections
        .iter()
        .skip(1)
        .filter(|s| !s.is_alloc() && !s.is_nobits() && s.size > 0)
}

/// End of the allocated part of the input: headers, allocated sections, loaded segments.
fn image_end(file: &ElfFile<'_>, h: Header) -> Option<u64> {
    let class = ClassFields::of(file.is_64);
    let headers = h.headers_end(class)?;
    let mut end = headers.max(class.ehdr_size as u64);
    for s in file.sections.iter().filter(|s| in_image(s)) {
        end = end.max(s.offset.checked_add(s.size)?);
    }
    for g in file.segments.iter().filter(|g| g.p_type == elf::PT_LOAD.0) {
        end = end.max(g.offset.checked_add(g.filesz)?);
    }
    Some(end)
}

/// What this writer needs to know of the input, learned once before relocation (so that the
/// builder is read only when it will be used).
pub struct Source {
    /// File header fields.
    header: Header,
    /// Index of `.shstrtab`.
    shstrndx: usize,
    /// End of the allocated part of the input (see [`image_end`]).
    image_end: u64,
    /// File range of the non-allocated sections, which move as one block.
    block: (u64, u64),
    /// Largest alignment in that block.
    block_align: u64,
}

/// Why this writer hands a file to the builder: what it cannot express, in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fallback(pub &'static str);

impl std::fmt::Display for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// `Some` to `Ok`, `None` to the fallback `why`.
fn or_fall(why: &'static str) -> impl FnOnce() -> Fallback {
    move || Fallback(why)
}

impl Source {
    /// What [`emit_patched`] needs of `file`, or why its structure does not fit this writer
    /// (what the plan and relocation may still refuse is checked by [`emit_patched`]).
    pub fn of(file: &ElfFile<'_>) -> Result<Source, Fallback> {
        let class = ClassFields::of(file.is_64);
        let h = header(file).ok_or_else(or_fall("the file header's offsets do not fit"))?;
        let shstrndx = read_uint(file.data, class.e_shstrndx, 2)
            .ok_or_else(or_fall("the file header's offsets do not fit"))?
            as usize;
        if !file.kind.is_linked() {
            return Err(Fallback("an object file"));
        }
        // Extended numbering keeps the count in section 0; one more section must fit.
        let numbered = h.shnum == file.sections.len()
            && h.shnum > 0
            && h.shnum + 1 < elf::SHN_LORESERVE as usize
            && shstrndx > 0
            && shstrndx < h.shnum;
        if !numbered {
            return Err(Fallback(
                "extended section numbering or no section name table",
            ));
        }
        if file.sections.iter().any(|s| s.sh_type == elf::SHT_REL.0) {
            return Err(Fallback("REL relocations"));
        }
        let entries_ok = file.sections.iter().all(|s| {
            let t = s.sh_type;
            let want = if t == elf::SHT_SYMTAB.0 || t == elf::SHT_DYNSYM.0 {
                class.sym_size
            } else if t == elf::SHT_RELA.0 {
                class.rela_size
            } else if t == elf::SHT_DYNAMIC.0 {
                class.dyn_size
            } else {
                return true;
            };
            s.entsize == want as u64
        }) && nonalloc(file).all(|s| s.align <= 1 || s.align.is_power_of_two());
        if !entries_ok {
            return Err(Fallback(
                "a table with an unusual entry size, or a non-allocated section with an odd alignment",
            ));
        }
        // The non-allocated sections follow the image, and no segment but the attributes
        // one describes them: they move as one block.
        let image_end =
            image_end(file, h).ok_or_else(or_fall("section or segment ends do not fit"))?;
        let lo = nonalloc(file).map(|s| s.offset).min().unwrap_or(image_end);
        let hi = nonalloc(file)
            .map(|s| s.offset + s.size)
            .max()
            .unwrap_or(lo);
        let covers_block = file.segments.iter().any(|g| {
            g.p_type != elf::PT_RISCV_ATTRIBUTES.0
                && g.filesz > 0
                && g.offset.saturating_add(g.filesz) > lo
        });
        if lo < image_end || (hi > lo && covers_block) {
            return Err(Fallback(
                "non-allocated sections among the allocated ones, or inside a segment",
            ));
        }
        // The headers come before every allocated section, and stay where they are.
        let first = file
            .sections
            .iter()
            .filter(|s| in_image(s))
            .map(|s| s.offset)
            .min()
            .unwrap_or(u64::MAX);
        let headers_end = h
            .headers_end(class)
            .ok_or_else(or_fall("the program headers' end does not fit"))?;
        if headers_end > first {
            return Err(Fallback("a section before the program headers' end"));
        }
        Ok(Source {
            header: h,
            shstrndx,
            image_end,
            block: (lo, hi),
            block_align: nonalloc(file).map(|s| s.align.max(1)).max().unwrap_or(1),
        })
    }
}

/// Where a section's header says it is in the new file.
#[derive(Clone, Copy)]
struct Placed {
    addr: u64,
    offset: u64,
    size: u64,
}

/// The rewritten file, or why a change does not fit this writer: with the new allocated
/// `table` (`__mcount_loc`) and the new non-allocated `record` (an insertion's
/// `__patchable_function_entries`), when given.
pub fn emit_patched(
    file: &ElfFile<'_>,
    src: &Source,
    plan: &Plan,
    fixed: &Fixed,
    table: Option<&NewSection>,
    record: Option<&NewRecord>,
) -> Result<Vec<u8>, Fallback> {
    if changes_fit(file, fixed, ClassFields::of(file.is_64)).is_none() {
        return Err(Fallback(
            "a non-allocated section grew, or a dynamic relocation table changed length",
        ));
    }
    write_patched(file, src, plan, fixed, table, record).ok_or(Fallback(
        "a new place or size does not fit the file's fields",
    ))
}

/// [`emit_patched`] once the changes are known to fit; `None` when arithmetic overflows.
fn write_patched(
    file: &ElfFile<'_>,
    src: &Source,
    plan: &Plan,
    fixed: &Fixed,
    table: Option<&NewSection>,
    record: Option<&NewRecord>,
) -> Option<Vec<u8>> {
    let class = ClassFields::of(file.is_64);
    let h = src.header;
    let map = &plan.map;
    let mut placed = new_places(file, plan, fixed, class);
    let headers_end = h.headers_end(class)?;
    let new_end = new_image_end(file, plan, &placed, table, headers_end)?;
    let (new_lo, mut end) = place_block(file, src, new_end, &mut placed)?;
    let names: Vec<&str> = table
        .map(|t| t.name)
        .into_iter()
        .chain(record.map(|r| r.name))
        .collect();
    let (name_at, shstr_new) = name_sections(file, src, &names, &mut placed, &mut end)?;
    // The record follows everything else, aligned as its header says.
    let record_at = match record {
        Some(r) => {
            let at = end.next_multiple_of(r.align.max(1));
            end = at.checked_add(r.data.len() as u64)?;
            Some(at)
        }
        None => None,
    };
    let shoff = end.next_multiple_of(class.word as u64);
    let shnum = h.shnum + usize::from(table.is_some()) + usize::from(record.is_some());
    let total = usize::try_from(shoff)
        .ok()?
        .checked_add(shnum * class.shdr_size)?;
    if total > isize::MAX as usize {
        return None;
    }
    let mut out = vec![0u8; total];

    let moved_from = unmoved_prefix(file, src, &placed, headers_end);
    copy_image(file, fixed, &placed, table, moved_from, &mut out)?;
    copy_block(file, src, fixed, &placed, new_lo, &mut out)?;
    if let Some(grown) = &shstr_new {
        put_bytes(&mut out, placed[src.shstrndx].offset, grown)?;
    }
    if let (Some(r), Some(at)) = (record, record_at) {
        put_bytes(&mut out, at, &r.data)?;
    }
    patch_tables(file, map, fixed, &placed, class, &mut out)?;

    write_section_headers(file, h, &placed, shoff as usize, class, &mut out)?;
    let mut header_at = shoff as usize + h.shnum * class.shdr_size;
    let mut names = name_at.into_iter();
    if let Some(t) = table {
        write_table_header(t, names.next()?, header_at, class, &mut out)?;
        header_at += class.shdr_size;
    }
    if let (Some(r), Some(at)) = (record, record_at) {
        write_record_header(r, names.next()?, at, header_at, class, &mut out)?;
    }
    // File header: entry, section table place and count.
    let w = class.word;
    put(&mut out, class.e_entry, w, map.map(file.entry))?;
    put(&mut out, class.e_shoff, w, shoff)?;
    put(&mut out, class.e_shnum, 2, shnum as u64)?;
    write_program_headers(file, plan, h, &placed, class, &mut out)?;
    Some(out)
}

/// `Some` when every changed section fits this writer: non-allocated ones may only shrink
/// (their block keeps its layout), dynamic relocation tables keep their length.
fn changes_fit(file: &ElfFile<'_>, fixed: &Fixed, class: &ClassFields) -> Option<()> {
    for (&i, d) in &fixed.data {
        let s = file.sections.get(i)?;
        if s.is_nobits() || (!s.is_alloc() && d.len() as u64 > s.size) {
            return None;
        }
    }
    for (&i, r) in &fixed.relocs {
        let s = file.sections.get(i)?;
        let bytes = (r.len() as u64).checked_mul(class.rela_size as u64)?;
        if s.sh_type != elf::SHT_RELA.0 || bytes > s.size || (s.is_alloc() && bytes != s.size) {
            return None;
        }
    }
    Some(())
}

/// Every section's new size, and for allocated ones the plan's address and file offset
/// (non-allocated ones are placed by [`place_block`]).
fn new_places(file: &ElfFile<'_>, plan: &Plan, fixed: &Fixed, class: &ClassFields) -> Vec<Placed> {
    file.sections
        .iter()
        .map(|s| {
            let size = match (fixed.data.get(&s.index), fixed.relocs.get(&s.index)) {
                (Some(d), _) => d.len() as u64,
                (None, Some(r)) => r.len() as u64 * class.rela_size as u64,
                (None, None) => s.size,
            };
            let (addr, offset) = if s.is_alloc() {
                (
                    plan.map.section(s.index).map_or(s.addr, |m| m.new_addr),
                    plan.offsets.get(&s.index).copied().unwrap_or(s.offset),
                )
            } else {
                (s.addr, s.offset)
            };
            Placed { addr, offset, size }
        })
        .collect()
}

/// Where the allocated part (headers, sections, table, loaded segments) ends now.
fn new_image_end(
    file: &ElfFile<'_>,
    plan: &Plan,
    placed: &[Placed],
    table: Option<&NewSection>,
    headers_end: u64,
) -> Option<u64> {
    let mut new_end = headers_end;
    for s in file.sections.iter().filter(|s| in_image(s)) {
        let p = placed[s.index];
        new_end = new_end.max(p.offset.checked_add(p.size)?);
    }
    if let Some(t) = table {
        new_end = new_end.max(t.offset.checked_add(t.data.len() as u64)?);
    }
    for (k, g) in file.segments.iter().enumerate() {
        if g.p_type == elf::PT_LOAD.0 {
            let &(_, offset, filesz, _) = plan.segments.get(k)?;
            new_end = new_end.max(offset.checked_add(filesz)?);
        }
    }
    Some(new_end)
}

/// Places the non-allocated block after the image now ending at `new_end`: same gap after
/// the image as before, then rounded up so that every section in it keeps its alignment.
/// Returns the block's new start and the end of the file's contents.
fn place_block(
    file: &ElfFile<'_>,
    src: &Source,
    new_end: u64,
    placed: &mut [Placed],
) -> Option<(u64, u64)> {
    let (old_end, (lo, hi), align) = (src.image_end, src.block, src.block_align);
    let mut new_lo = new_end.checked_add(lo - old_end)?;
    new_lo = new_lo.checked_add(lo.wrapping_sub(new_lo) & (align - 1))?;
    let delta = new_lo.wrapping_sub(lo);
    let end = new_lo.checked_add(hi - lo)?;
    for s in file.sections.iter().skip(1).filter(|s| !s.is_alloc()) {
        // An empty section outside the block stays in the file: before it, where it was;
        // after it, at its end.
        placed[s.index].offset = match s.offset {
            o if o < lo => o,
            o if o <= hi => o.wrapping_add(delta),
            _ => end,
        };
    }
    Some((new_lo, end))
}

/// The new sections' `names` in `.shstrtab`: each reused if `.shstrtab` has it, else
/// appended to it (in place when it is the last section of the block, else in a copy after
/// the block, moving `end`). Returns their offsets there and the grown `.shstrtab`, if it
/// grew.
fn name_sections(
    file: &ElfFile<'_>,
    src: &Source,
    names: &[&str],
    placed: &mut [Placed],
    end: &mut u64,
) -> Option<(Vec<u64>, Option<Vec<u8>>)> {
    let shstr = file.sections.get(src.shstrndx)?;
    let shstr_old = file.section_data(shstr).ok()?;
    let mut grown: Option<Vec<u8>> = None;
    let mut offsets = Vec::with_capacity(names.len());
    for name in names {
        let name: Vec<u8> = name.bytes().chain([0]).collect();
        let have = grown.as_deref().unwrap_or(shstr_old);
        if let Some(at) = have.windows(name.len()).position(|w| w == name.as_slice()) {
            offsets.push(at as u64);
            continue;
        }
        let g = grown.get_or_insert_with(|| shstr_old.to_vec());
        offsets.push(g.len() as u64);
        g.extend_from_slice(&name);
    }
    if let Some(g) = &grown {
        let p = &mut placed[src.shstrndx];
        if shstr.offset + shstr.size != src.block.1 || shstr.is_alloc() {
            p.offset = *end;
        }
        p.size = g.len() as u64;
        *end = (*end).max(p.offset + p.size);
    }
    Some((offsets, grown))
}

/// End of the bytes before the first section that moved or changed size: they are the
/// input's own, gaps and all (so an in-place rewrite differs from its input only where it
/// changed).
fn unmoved_prefix(file: &ElfFile<'_>, src: &Source, placed: &[Placed], headers_end: u64) -> u64 {
    file.sections
        .iter()
        .filter(|s| in_image(s))
        .filter(|s| placed[s.index].offset != s.offset || placed[s.index].size != s.size)
        .map(|s| s.offset)
        .min()
        .unwrap_or(src.image_end)
        .min(src.image_end)
        .max(headers_end)
}

/// Copies the allocated part: the input's bytes up to `moved_from`, then every allocated
/// section (new contents or old) where it now is, and the table.
fn copy_image(
    file: &ElfFile<'_>,
    fixed: &Fixed,
    placed: &[Placed],
    table: Option<&NewSection>,
    moved_from: u64,
    out: &mut [u8],
) -> Option<()> {
    put_bytes(out, 0, file.data.get(..moved_from as usize)?)?;
    for s in file.sections.iter().filter(|s| in_image(s)) {
        let p = placed[s.index];
        match fixed.data.get(&s.index) {
            Some(d) => put_bytes(out, p.offset, d)?,
            None if p.offset == s.offset && s.offset + s.size <= moved_from => {}
            None => put_bytes(out, p.offset, file.section_data(s).ok()?)?,
        }
    }
    if let Some(t) = table {
        put_bytes(out, t.offset, &t.data)?;
    }
    Some(())
}

/// Copies the non-allocated block to `new_lo`, then the new contents of the non-allocated
/// sections that changed.
fn copy_block(
    file: &ElfFile<'_>,
    src: &Source,
    fixed: &Fixed,
    placed: &[Placed],
    new_lo: u64,
    out: &mut [u8],
) -> Option<()> {
    let (lo, hi) = src.block;
    put_bytes(out, new_lo, file.data.get(lo as usize..hi as usize)?)?;
    for s in file.sections.iter().skip(1).filter(|s| !s.is_alloc()) {
        if let Some(d) = fixed.data.get(&s.index) {
            let p = placed[s.index];
            put_bytes(out, p.offset, d)?;
            // A shrunk section leaves no stale bytes behind.
            let from = usize::try_from(p.offset).ok()?.checked_add(d.len())?;
            let to = usize::try_from(p.offset.checked_add(s.size)?).ok()?;
            out.get_mut(from..to)?.fill(0);
        }
    }
    Some(())
}

/// Section headers: the input's, with their new places, in the table at `shoff`.
fn write_section_headers(
    file: &ElfFile<'_>,
    h: Header,
    placed: &[Placed],
    shoff: usize,
    class: &ClassFields,
    out: &mut [u8],
) -> Option<()> {
    let (f_addr, f_offset, f_size) = (class.sh_addr, class.sh_offset, class.sh_size);
    let w = class.word;
    for (i, p) in placed.iter().enumerate() {
        let from = h.shoff.checked_add(i * class.shdr_size)?;
        let at = shoff + i * class.shdr_size;
        out[at..at + class.shdr_size].copy_from_slice(file.data.get(from..from + class.shdr_size)?);
        if i > 0 {
            put(out, at + f_addr, w, p.addr)?;
            put(out, at + f_offset, w, p.offset)?;
            put(out, at + f_size, w, p.size)?;
        }
    }
    Some(())
}

/// The table's section header at `at`, its name at `name` in `.shstrtab`.
fn write_table_header(
    t: &NewSection,
    name: u64,
    at: usize,
    class: &ClassFields,
    out: &mut [u8],
) -> Option<()> {
    let (f_addr, f_offset, f_size) = (class.sh_addr, class.sh_offset, class.sh_size);
    let w = class.word;
    let ptr = w as u64;
    put(out, at, 4, name)?;
    put(out, at + 4, 4, u64::from(elf::SHT_PROGBITS.0))?;
    put(out, at + 8, w, elf::SHF_ALLOC.0)?;
    put(out, at + f_addr, w, t.addr)?;
    put(out, at + f_offset, w, t.offset)?;
    put(out, at + f_size, w, t.data.len() as u64)?;
    // sh_link and sh_info stay 0; then sh_addralign and sh_entsize.
    put(out, at + f_size + w + 8, w, ptr)?;
    put(out, at + f_size + 2 * w + 8, w, ptr)?;
    Some(())
}

/// The record's section header at `at`, its name at `name` in `.shstrtab`, its bytes at
/// `offset`: not allocated, no address.
fn write_record_header(
    r: &NewRecord,
    name: u64,
    offset: u64,
    at: usize,
    class: &ClassFields,
    out: &mut [u8],
) -> Option<()> {
    let (f_offset, f_size) = (class.sh_offset, class.sh_size);
    let w = class.word;
    put(out, at, 4, name)?;
    put(out, at + 4, 4, u64::from(elf::SHT_PROGBITS.0))?;
    // sh_flags, sh_addr, sh_link and sh_info stay 0.
    put(out, at + f_offset, w, offset)?;
    put(out, at + f_size, w, r.data.len() as u64)?;
    put(out, at + f_size + w + 8, w, r.align)?;
    put(out, at + f_size + 2 * w + 8, w, r.align)?;
    Some(())
}

/// Program headers, from the plan; the attributes segment follows its section.
fn write_program_headers(
    file: &ElfFile<'_>,
    plan: &Plan,
    h: Header,
    placed: &[Placed],
    class: &ClassFields,
    out: &mut [u8],
) -> Option<()> {
    let w = class.word;
    let attributes = file
        .sections
        .iter()
        .find(|s| s.name == ".riscv.attributes")
        .map(|s| placed[s.index].offset);
    let (p_offset, p_vaddr, p_paddr, p_filesz, p_memsz) = (
        class.p_offset,
        class.p_vaddr,
        class.p_paddr,
        class.p_filesz,
        class.p_memsz,
    );
    for (k, g) in file.segments.iter().enumerate().take(h.phnum) {
        let at = h.phoff + k * class.phdr_size;
        if g.p_type == elf::PT_RISCV_ATTRIBUTES.0 {
            if let Some(off) = attributes {
                put(out, at + p_offset, w, off)?;
            }
            continue;
        }
        let Some(&(vaddr, offset, filesz, memsz)) = plan.segments.get(k) else {
            continue;
        };
        let paddr = read_uint(file.data, at + p_paddr, w)?;
        let phys_delta = g.vaddr.wrapping_sub(paddr);
        put(out, at + p_offset, w, offset)?;
        put(out, at + p_vaddr, w, vaddr)?;
        put(out, at + p_paddr, w, vaddr.wrapping_sub(phys_delta))?;
        put(out, at + p_filesz, w, filesz)?;
        put(out, at + p_memsz, w, memsz)?;
    }
    Some(())
}

/// Writes what moved inside the copied tables: relocation offsets and addends, symbol values
/// and sizes, dynamic address tags.
fn patch_tables(
    file: &ElfFile<'_>,
    map: &AddressMap,
    fixed: &Fixed,
    placed: &[Placed],
    class: &ClassFields,
    out: &mut [u8],
) -> Option<()> {
    patch_relocations(file, fixed, placed, class, out)?;
    if let Some(i) = file.symtab_index {
        patch_symbols(file, map, &file.symbols, placed[i].offset, class, out)?;
    }
    if let Some(dynsym) = file
        .sections
        .iter()
        .find(|s| s.sh_type == elf::SHT_DYNSYM.0)
    {
        let syms = file.dynamic_symbols().ok()?;
        patch_symbols(file, map, &syms, placed[dynsym.index].offset, class, out)?;
    }
    for s in file
        .sections
        .iter()
        .filter(|s| s.sh_type == elf::SHT_DYNAMIC.0)
    {
        let p = placed[s.index];
        patch_dynamic(map, p.offset, p.size, class, out)?;
    }
    Some(())
}

/// Writes the fixed offsets and addends of every changed relocation table where its
/// section now is (and clears what a shortened table left behind).
fn patch_relocations(
    file: &ElfFile<'_>,
    fixed: &Fixed,
    placed: &[Placed],
    class: &ClassFields,
    out: &mut [u8],
) -> Option<()> {
    let w = class.word;
    for (&i, relocs) in &fixed.relocs {
        let base = usize::try_from(placed[i].offset).ok()?;
        for (k, r) in relocs.iter().enumerate() {
            let at = base.checked_add(k.checked_mul(class.rela_size)?)?;
            put(out, at, w, r.offset)?;
            put(out, at + 2 * w, w, r.addend as u64)?;
        }
        let kept = relocs.len() * class.rela_size;
        let old = usize::try_from(file.sections[i].size).ok()?;
        out.get_mut(base + kept..base + old)?.fill(0);
    }
    Some(())
}

/// Writes the new value (and size) of every symbol of `syms`, a symbol table now at `base`,
/// in parallel chunks (a large program has hundreds of thousands).
fn patch_symbols(
    file: &ElfFile<'_>,
    map: &AddressMap,
    syms: &[crate::elf::Symbol<'_>],
    base: u64,
    class: &ClassFields,
    out: &mut [u8],
) -> Option<()> {
    use rayon::prelude::*;
    const CHUNK: usize = 4096;
    let (value_at, size_at) = (class.st_value, class.st_size);
    let w = class.word;
    let base = usize::try_from(base).ok()?;
    let table = out.get_mut(base..base.checked_add(syms.len().checked_mul(class.sym_size)?)?)?;
    table
        .par_chunks_mut(CHUNK * class.sym_size)
        .zip(syms.par_chunks(CHUNK))
        .try_for_each(|(bytes, syms)| {
            for (k, orig) in syms.iter().enumerate() {
                // The null symbol stays null.
                if orig.index == 0 {
                    continue;
                }
                let at = k * class.sym_size;
                match mapped_symbol(file, map, orig) {
                    None => put(bytes, at + value_at, w, map.map(orig.value))?,
                    Some((v, size)) => {
                        put(bytes, at + value_at, w, v)?;
                        put(bytes, at + size_at, w, size)?;
                    }
                }
            }
            Some(())
        })
}

/// Moves the address-valued entries of a dynamic section now at `offset`.
fn patch_dynamic(
    map: &AddressMap,
    offset: u64,
    size: u64,
    class: &ClassFields,
    out: &mut [u8],
) -> Option<()> {
    let w = class.word;
    let base = usize::try_from(offset).ok()?;
    for k in 0..usize::try_from(size).ok()? / class.dyn_size {
        let at = base + k * class.dyn_size;
        let tag = read_uint(out, at, w)?;
        if tag == elf::DT_NULL.0 as u64 {
            break;
        }
        let val = read_uint(out, at + w, w)?;
        if ADDRESS_TAGS.contains(&tag) && val != 0 {
            put(out, at + w, w, map.map(val))?;
        }
    }
    Some(())
}
