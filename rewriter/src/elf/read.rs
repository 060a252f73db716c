//! Reading the model from bytes: one generic path over `FileHeader32`/`FileHeader64`.

use object::elf;
use object::read::elf::{Dyn, FileHeader, ProgramHeader, Rel, Rela, SectionHeader, Sym};
use object::Endianness;

use super::model::{ElfFile, FileKind, Reloc, RelocSection, Section, Segment, Symbol};
use super::validate;
use crate::error::{Error, Result};

type Header32 = elf::FileHeader32<Endianness>;
type Header64 = elf::FileHeader64<Endianness>;

/// Parses a RISC-V little-endian ELF32 or ELF64 file.
pub fn parse(data: &[u8]) -> Result<ElfFile<'_>> {
    if data.len() < 16 || &data[..4] != b"\x7fELF" {
        return Err(Error::malformed(if data.is_empty() {
            "empty file, not an ELF file".to_string()
        } else {
            "not an ELF file (bad magic)".to_string()
        }));
    }
    if data[5] != elf::ELFDATA2LSB.0 {
        return Err(Error::Unsupported(
            "big-endian ELF: RISC-V files are little-endian".into(),
        ));
    }
    match data[4] {
        c if c == elf::ELFCLASS32.0 => parse_generic::<Header32>(data, false),
        c if c == elf::ELFCLASS64.0 => parse_generic::<Header64>(data, true),
        c => Err(Error::malformed(format!("unknown ELF class {c}"))),
    }
}

fn parse_generic<Elf: FileHeader<Endian = Endianness>>(
    data: &[u8],
    is_64: bool,
) -> Result<ElfFile<'_>>
where
    Elf::Sym: Sync,
{
    let header = Elf::parse(data).map_err(|e| Error::malformed(format!("ELF header: {e}")))?;
    let endian = header.endian()?;
    if header.e_machine(endian) != elf::EM_RISCV {
        return Err(Error::Unsupported(format!(
            "not a RISC-V ELF file (e_machine {})",
            header.e_machine(endian).0
        )));
    }
    let table = header
        .sections(endian, data)
        .map_err(|e| Error::malformed(format!("section headers: {e}")))?;
    let mut sections = Vec::with_capacity(table.len());
    for (index, sh) in table.iter().enumerate() {
        if sh.sh_type(endian) == elf::SHT_NULL {
            // Inactive: every other field of the header is undefined (ELF gABI), so none of
            // them may mean anything to the rest of padtrim.
            sections.push(Section {
                index,
                name: "",
                sh_type: elf::SHT_NULL.0,
                flags: 0,
                addr: 0,
                offset: 0,
                size: 0,
                align: 1,
                link: 0,
                info: 0,
                entsize: 0,
            });
            continue;
        }
        sections.push(Section {
            index,
            // For messages until the headers are checked; resolved strictly below.
            name: table.section_name(endian, sh).map(lossy).unwrap_or(""),
            sh_type: sh.sh_type(endian).0,
            flags: sh.sh_flags(endian).0,
            addr: sh.sh_addr(endian).into(),
            offset: sh.sh_offset(endian).into(),
            size: sh.sh_size(endian).into(),
            align: sh.sh_addralign(endian).into().max(1),
            link: sh.sh_link(endian),
            info: sh.sh_info(endian),
            entsize: sh.sh_entsize(endian).into(),
        });
    }
    validate::sections(data.len(), &sections, header.e_type(endian) != elf::ET_REL)?;
    let shstrndx = header
        .shstrndx(endian, data)
        .map_err(|e| Error::malformed(format!("section headers: {e}")))?;
    validate::section_name_table(&sections, shstrndx as usize)?;
    validate::hash_tables(data, &sections, is_64)?;
    for (section, sh) in sections.iter_mut().zip(table.iter()) {
        if section.sh_type == elf::SHT_NULL.0 {
            continue;
        }
        section.name = table.section_name(endian, sh).map(lossy).map_err(|e| {
            Error::malformed(format!(
                "section {}: name at offset {:#x} of the section name table is not a \
                 NUL-terminated string inside it ({e})",
                section.index,
                sh.sh_name(endian)
            ))
        })?;
    }
    let segments = header
        .program_headers(endian, data)
        .map_err(|e| Error::malformed(format!("program headers: {e}")))?
        .iter()
        .map(|ph| Segment {
            p_type: ph.p_type(endian).0,
            flags: ph.p_flags(endian).0,
            offset: ph.p_offset(endian).into(),
            vaddr: ph.p_vaddr(endian).into(),
            filesz: ph.p_filesz(endian).into(),
            memsz: ph.p_memsz(endian).into(),
            align: ph.p_align(endian).into(),
        })
        .collect::<Vec<_>>();
    if header.e_type(endian) != elf::ET_REL {
        validate::segments(data.len(), &sections, &segments)?;
    }

    let symtab = table
        .symbols(endian, data, elf::SHT_SYMTAB)
        .map_err(|e| Error::malformed(format!(".symtab: {e}")))?;
    let symtab_index = (!symtab.is_empty()).then(|| symtab.section().0);
    let symbols = collect_symbols::<Elf>(endian, &symtab, ".symtab")?;
    validate::symbols(&symbols, sections.len(), ".symtab")?;

    let e_type = header.e_type(endian).0;
    let mut file = ElfFile {
        data,
        is_64,
        kind: FileKind::Relocatable,
        e_type,
        e_flags: header.e_flags(endian).0,
        entry: header.e_entry(endian).into(),
        sections,
        segments,
        symbols,
        symtab_index,
    };
    file.kind = classify::<Elf>(&file, header, endian)?;
    Ok(file)
}

fn lossy(bytes: &[u8]) -> &str {
    // Names are ASCII in practice; a non-UTF-8 name is shown up to its first bad byte.
    match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
    }
}

fn collect_symbols<'data, Elf: FileHeader<Endian = Endianness>>(
    endian: Endianness,
    table: &object::read::elf::SymbolTable<'data, Elf, &'data [u8]>,
    what: &str,
) -> Result<Vec<Symbol<'data>>>
where
    Elf::Sym: Sync,
{
    use rayon::prelude::*;
    // Every parse of a large program reads 100,000s of symbols (names checked as UTF-8):
    // in parallel chunks, joined in order, so the first error is the first bad symbol.
    const CHUNK: usize = 16 * 1024;
    let chunks: Vec<Result<Vec<Symbol<'data>>>> = table
        .symbols()
        .par_chunks(CHUNK)
        .enumerate()
        .map(|(c, syms)| {
            let mut out = Vec::with_capacity(syms.len());
            for (k, sym) in syms.iter().enumerate() {
                let index = c * CHUNK + k;
                let name = table.symbol_name(endian, sym).map(lossy).map_err(|e| {
                    Error::malformed(format!(
                        "{what} symbol {index}: name at offset {:#x} of its string table is \
                         not a NUL-terminated string inside it ({e})",
                        sym.st_name(endian)
                    ))
                })?;
                let shndx = match sym.st_shndx(endian) {
                    elf::SHN_XINDEX => table.shndx(endian, object::SymbolIndex(index)).unwrap_or(0),
                    s => u32::from(s.0),
                };
                out.push(Symbol {
                    index,
                    name,
                    value: sym.st_value(endian).into(),
                    size: sym.st_size(endian).into(),
                    kind: sym.st_type().0,
                    bind: sym.st_bind().0,
                    shndx,
                });
            }
            Ok(out)
        })
        .collect();
    let mut out = Vec::with_capacity(table.len());
    for chunk in chunks {
        out.extend(chunk?);
    }
    Ok(out)
}

fn classify<Elf: FileHeader<Endian = Endianness>>(
    file: &ElfFile<'_>,
    header: &Elf,
    endian: Endianness,
) -> Result<FileKind> {
    Ok(match file.e_type {
        t if t == elf::ET_REL.0 => FileKind::Relocatable,
        t if t == elf::ET_EXEC.0 => {
            if file.symbol_by_name("__start_mcount_loc").is_some() {
                FileKind::Vmlinux
            } else {
                FileKind::Executable
            }
        }
        t if t == elf::ET_DYN.0 => {
            let has_interp = file.segments.iter().any(|s| s.p_type == elf::PT_INTERP.0);
            if has_interp || dyn_flags_1::<Elf>(file, header, endian)? & elf::DF_1_PIE.0 != 0 {
                FileKind::Pie
            } else {
                FileKind::Shared
            }
        }
        t => return Err(Error::Unsupported(format!("unsupported ELF type {t}"))),
    })
}

fn dyn_flags_1<Elf: FileHeader<Endian = Endianness>>(
    file: &ElfFile<'_>,
    header: &Elf,
    endian: Endianness,
) -> Result<u64> {
    let table = header.sections(endian, file.data)?;
    for sh in table.iter() {
        if let Some((dyns, _)) = sh.dynamic(endian, file.data)? {
            for d in dyns {
                if d.d_tag(endian) == elf::DT_FLAGS_1 {
                    return Ok(d.d_val(endian).into());
                }
            }
        }
    }
    Ok(0)
}

/// The `SHT_RELA` and `SHT_REL` sections `wanted` picks (by their own section header),
/// parsed (in parallel: a linked program's static relocations are most of its size).
pub(super) fn relocation_sections<'data>(
    file: &ElfFile<'data>,
    wanted: impl Fn(&Section<'data>) -> bool + Sync,
) -> Result<Vec<RelocSection>> {
    if file.is_64 {
        relocation_sections_generic::<Header64, _>(file, wanted)
    } else {
        relocation_sections_generic::<Header32, _>(file, wanted)
    }
}

fn relocation_sections_generic<'data, Elf, F>(
    file: &ElfFile<'data>,
    wanted: F,
) -> Result<Vec<RelocSection>>
where
    Elf: FileHeader<Endian = Endianness>,
    Elf::SectionHeader: Sync,
    F: Fn(&Section<'data>) -> bool + Sync,
{
    use rayon::prelude::*;
    let header = Elf::parse(file.data)?;
    let endian = header.endian()?;
    let table = header.sections(endian, file.data)?;
    let is_relocation =
        |s: &Section<'_>| s.sh_type == elf::SHT_RELA.0 || s.sh_type == elf::SHT_REL.0;
    let headers: Vec<(usize, &Elf::SectionHeader)> = table
        .iter()
        .enumerate()
        .filter(|(index, _)| {
            file.sections
                .get(*index)
                .is_some_and(|s| is_relocation(s) && wanted(s))
        })
        .collect();
    let parsed: Vec<Result<Option<RelocSection>>> = headers
        .into_par_iter()
        .map(|(index, sh)| relocation_section::<Elf>(file, endian, index, sh))
        .collect();
    // The first error in section order, whichever thread found it: messages stay stable.
    parsed.into_iter().filter_map(Result::transpose).collect()
}

fn relocation_section<Elf: FileHeader<Endian = Endianness>>(
    file: &ElfFile<'_>,
    endian: Endianness,
    index: usize,
    sh: &Elf::SectionHeader,
) -> Result<Option<RelocSection>> {
    let section = &file.sections[index];
    let relocs: Vec<Reloc> = if let Some((rela, _)) = sh.rela(endian, file.data)? {
        rela.iter()
            .map(|r| Reloc {
                offset: r.r_offset(endian).into(),
                r_type: r.r_type(endian, false).0,
                sym: r.r_sym(endian, false),
                addend: r.r_addend(endian).into(),
            })
            .collect()
    } else if let Some((rel, _)) = sh.rel(endian, file.data)? {
        rel.iter()
            .map(|r| Reloc {
                offset: r.r_offset(endian).into(),
                r_type: r.r_type(endian).0,
                sym: r.r_sym(endian),
                addend: 0,
            })
            .collect()
    } else {
        return Ok(None);
    };
    let target = section.info as usize;
    if target >= file.sections.len() {
        return Err(Error::malformed(format!(
            "relocation section {} applies to section {} which does not exist",
            section.name, target
        )));
    }
    check_symbol_indices(file, section, &relocs)?;
    check_offsets(file, section, target, &relocs)?;
    Ok(Some(RelocSection {
        index,
        target,
        symtab: section.link as usize,
        relocs,
    }))
}

/// A relocation section links to a symbol table (or to none, when every entry uses symbol
/// 0), and every entry's symbol index lies inside that table.
fn check_symbol_indices(file: &ElfFile<'_>, section: &Section<'_>, relocs: &[Reloc]) -> Result<()> {
    let link = section.link as usize;
    let count = if link == 0 {
        1
    } else {
        let table = file.sections.get(link).ok_or_else(|| {
            Error::malformed(format!(
                "relocation section {} links to section {link}, which does not exist",
                section.name
            ))
        })?;
        if table.sh_type != elf::SHT_SYMTAB.0 && table.sh_type != elf::SHT_DYNSYM.0 {
            return Err(Error::malformed(format!(
                "relocation section {} links to section [{link}] {}, which is not a symbol table",
                section.name, table.name
            )));
        }
        let entry = if file.is_64 { 24 } else { 16 };
        file.section_data(table)?.len() / entry
    };
    match relocs
        .iter()
        .enumerate()
        .find(|(_, r)| r.sym as usize >= count)
    {
        Some((i, r)) => Err(Error::malformed(format!(
            "relocation {i} of {} refers to symbol {}, but its symbol table has {count} entries",
            section.name, r.sym
        ))),
        None => Ok(()),
    }
}

/// Relocations that apply to a section (the static ones of a `.o` or of a program linked
/// with `--emit-relocs`) lie inside it, end included (ld leaves `R_RISCV_ALIGN` at the end
/// of a section it relaxed): at a section offset in a `.o` or a non-allocated section, at an
/// address of the section otherwise. An `R_RISCV_NONE` applies to nothing and may be
/// anywhere: a call at the very end of a section that GNU ld 2.40 relaxes leaves one at the
/// section's end, which a later alignment relaxation that shrinks the section does not move
/// (so `-Wl,-q` keeps it past the end), and post-link tools zero the entries they drop.
/// Dynamic relocations (those of an allocated relocation section) may patch any address and
/// are not checked here, nor are those of compressed or empty sections.
fn check_offsets(
    file: &ElfFile<'_>,
    section: &Section<'_>,
    target: usize,
    relocs: &[Reloc],
) -> Result<()> {
    let t = &file.sections[target];
    // A compressed section's relocations apply to its decompressed bytes, whose size only
    // the compression header knows; the rewriter refuses such sections itself.
    // An emptied section (size 0, as a broken build step leaves a table) has nothing left to
    // patch: its stale relocations are ignored, and reading it finds no entries.
    if target == 0 || section.is_alloc() || t.size == 0 || t.flags & elf::SHF_COMPRESSED.0 != 0 {
        return Ok(());
    }
    let start = if file.kind.is_linked() && t.is_alloc() {
        t.addr
    } else {
        0
    };
    let end = start.saturating_add(t.size);
    match relocs
        .iter()
        .enumerate()
        .find(|(_, r)| !applies_to_nothing(r) && (r.offset < start || r.offset > end))
    {
        Some((i, r)) => Err(Error::malformed(format!(
            "relocation {i} of {} is at {:#x}, outside the section it applies to ({}, \
             {start:#x}..={end:#x})",
            section.name, r.offset, t.name
        ))),
        None => Ok(()),
    }
}

/// An `R_RISCV_NONE` patches nothing, wherever it is: one relaxation left, or an entry a
/// post-link tool zeroed (the kernel's sorttable does this to `__ex_table`'s; the rewriter
/// decides what a section with such entries means).
fn applies_to_nothing(r: &Reloc) -> bool {
    r.r_type == elf::R_RISCV_NONE.0
}

/// The `.dynsym` symbols (empty without a dynamic symbol table).
pub(super) fn dynamic_symbols<'data>(file: &ElfFile<'data>) -> Result<Vec<Symbol<'data>>> {
    fn generic<'data, Elf: FileHeader<Endian = Endianness>>(
        file: &ElfFile<'data>,
    ) -> Result<Vec<Symbol<'data>>>
    where
        Elf::Sym: Sync,
    {
        let header = Elf::parse(file.data)?;
        let endian = header.endian()?;
        let table = header.sections(endian, file.data)?;
        let dynsym = table.symbols(endian, file.data, elf::SHT_DYNSYM)?;
        let symbols = collect_symbols::<Elf>(endian, &dynsym, ".dynsym")?;
        // Like .symtab's at parse time: every user indexes the sections with them (fuzzing).
        validate::symbols(&symbols, file.sections.len(), ".dynsym")?;
        Ok(symbols)
    }
    if file.is_64 {
        generic::<Header64>(file)
    } else {
        generic::<Header32>(file)
    }
}

/// The readers the model's users call after parsing: relocations and dynamic symbols are read
/// on demand, not by [`parse`].
impl<'data> ElfFile<'data> {
    /// Every relocation section of the file (including dynamic ones), parsed.
    pub fn relocation_sections(&self) -> Result<Vec<RelocSection>> {
        relocation_sections(self, |_| true)
    }

    /// The relocation sections `wanted` picks, parsed and checked like
    /// [`relocation_sections`](Self::relocation_sections); the others are neither read nor
    /// checked, so a defect in one a command does not need cannot stop it. `wanted` sees the
    /// relocation section's header (its `info` names the section it applies to, which may
    /// not exist).
    pub fn relocation_sections_where(
        &self,
        wanted: impl Fn(&Section<'data>) -> bool + Sync,
    ) -> Result<Vec<RelocSection>> {
        relocation_sections(self, wanted)
    }

    /// The dynamic symbol table (empty if there is none).
    pub fn dynamic_symbols(&self) -> Result<Vec<Symbol<'data>>> {
        dynamic_symbols(self)
    }
}
