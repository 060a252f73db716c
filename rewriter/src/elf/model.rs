//! The model types: a read-only, bounds-checked view of a RISC-V ELF file in plain integers,
//! the same for ELF32 and ELF64.

use super::bytes::read_uint;
use crate::error::{Error, Result};

/// What kind of ELF file this is, as far as padtrim cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// `ET_REL`: an object file; addresses are section offsets.
    Relocatable,
    /// `ET_EXEC`: a position-dependent executable.
    Executable,
    /// `ET_DYN` with an interpreter or `DF_1_PIE`: a position-independent executable.
    Pie,
    /// `ET_DYN` otherwise: a shared object.
    Shared,
    /// A Linux kernel image (`__start_mcount_loc` present).
    Vmlinux,
}

impl FileKind {
    /// What the file is, in words.
    pub fn describe(self) -> &'static str {
        match self {
            FileKind::Relocatable => "relocatable object",
            FileKind::Executable => "executable",
            FileKind::Pie => "position-independent executable",
            FileKind::Shared => "shared object",
            FileKind::Vmlinux => "Linux kernel image",
        }
    }

    /// True for files whose sections have final addresses.
    pub fn is_linked(self) -> bool {
        self != FileKind::Relocatable
    }
}

/// One section header, with its name resolved.
#[derive(Debug, Clone)]
pub struct Section<'data> {
    /// Index in the section header table.
    pub index: usize,
    /// Name from `.shstrtab` (lossy UTF-8).
    pub name: &'data str,
    /// `sh_type`.
    pub sh_type: u32,
    /// `sh_flags`.
    pub flags: u64,
    /// `sh_addr` (0 in relocatable files).
    pub addr: u64,
    /// `sh_offset`.
    pub offset: u64,
    /// `sh_size`.
    pub size: u64,
    /// `sh_addralign` (at least 1).
    pub align: u64,
    /// `sh_link`.
    pub link: u32,
    /// `sh_info`.
    pub info: u32,
    /// `sh_entsize`.
    pub entsize: u64,
}

impl Section<'_> {
    /// Occupies memory at run time (`SHF_ALLOC`).
    pub fn is_alloc(&self) -> bool {
        self.flags & object::elf::SHF_ALLOC.0 != 0
    }
    /// Holds instructions (`SHF_EXECINSTR`).
    pub fn is_exec(&self) -> bool {
        self.flags & object::elf::SHF_EXECINSTR.0 != 0
    }
    /// Has no bytes in the file (`SHT_NOBITS`).
    pub fn is_nobits(&self) -> bool {
        self.sh_type == object::elf::SHT_NOBITS.0
    }
    /// True if `addr` lies in `[sh_addr, sh_addr + sh_size)`.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.addr && addr - self.addr < self.size
    }
    /// One past the last address.
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(self.size)
    }
}

/// One program header.
#[derive(Debug, Clone)]
pub struct Segment {
    /// `p_type`.
    pub p_type: u32,
    /// `p_flags`.
    pub flags: u32,
    /// `p_offset`.
    pub offset: u64,
    /// `p_vaddr`.
    pub vaddr: u64,
    /// `p_filesz`.
    pub filesz: u64,
    /// `p_memsz`.
    pub memsz: u64,
    /// `p_align`.
    pub align: u64,
}

/// One symbol of `.symtab` (or `.dynsym`).
#[derive(Debug, Clone)]
pub struct Symbol<'data> {
    /// Index in its table.
    pub index: usize,
    /// Name (lossy UTF-8; empty for unnamed symbols).
    pub name: &'data str,
    /// `st_value`.
    pub value: u64,
    /// `st_size`.
    pub size: u64,
    /// `ELF_ST_TYPE(st_info)` (`STT_*`).
    pub kind: u8,
    /// `ELF_ST_BIND(st_info)` (`STB_*`).
    pub bind: u8,
    /// Raw `st_shndx` (with `SHN_XINDEX` resolved).
    pub shndx: u32,
}

impl Symbol<'_> {
    /// An absolute symbol the linker defines for a place in the image (`_DYNAMIC`,
    /// `__global_pointer$`, ...): it moves with the image, unlike a true constant.
    pub fn is_linker_address(&self) -> bool {
        self.section().is_none()
            && self.shndx == u32::from(object::elf::SHN_ABS.0)
            && matches!(
                self.name,
                "__global_pointer$"
                    | "_DYNAMIC"
                    | "_GLOBAL_OFFSET_TABLE_"
                    | "_PROCEDURE_LINKAGE_TABLE_"
            )
    }

    /// The index of the section the symbol is defined in, if it is a regular one.
    pub fn section(&self) -> Option<usize> {
        let s = self.shndx;
        if s == 0 || s >= u32::from(object::elf::SHN_LORESERVE) {
            None
        } else {
            Some(s as usize)
        }
    }
    /// A function symbol, or an untyped code label that is not a local assembler label.
    pub fn is_code_label(&self) -> bool {
        self.kind == object::elf::STT_FUNC.0
            || (self.kind == object::elf::STT_NOTYPE.0
                && !self.name.is_empty()
                && !self.name.starts_with(".L")
                && !self.name.starts_with("$"))
    }
}

/// One relocation entry (REL entries get addend 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reloc {
    /// `r_offset`: section offset in `.o`, address in linked files.
    pub offset: u64,
    /// `ELF_R_TYPE(r_info)` (`R_RISCV_*`).
    pub r_type: u32,
    /// `ELF_R_SYM(r_info)`: index into the linked symbol table.
    pub sym: u32,
    /// `r_addend`.
    pub addend: i64,
}

/// A relocation section and what it applies to.
#[derive(Debug, Clone)]
pub struct RelocSection {
    /// Index of the `SHT_RELA`/`SHT_REL` section itself.
    pub index: usize,
    /// Section the relocations apply to (`sh_info`; 0 for dynamic relocations).
    pub target: usize,
    /// Symbol table they refer to (`sh_link`).
    pub symtab: usize,
    /// The entries, in file order.
    pub relocs: Vec<Reloc>,
}

/// A parsed RISC-V ELF file.
#[derive(Debug)]
pub struct ElfFile<'data> {
    /// The whole file.
    pub data: &'data [u8],
    /// ELFCLASS64 (else ELFCLASS32).
    pub is_64: bool,
    /// What kind of file this is.
    pub kind: FileKind,
    /// `e_type`.
    pub e_type: u16,
    /// `e_flags` (`EF_RISCV_*`).
    pub e_flags: u32,
    /// `e_entry`.
    pub entry: u64,
    /// Section headers, indexed by section number (index 0 is the null section).
    pub sections: Vec<Section<'data>>,
    /// Program headers.
    pub segments: Vec<Segment>,
    /// `.symtab` entries (empty if stripped), indexed by symbol number.
    pub symbols: Vec<Symbol<'data>>,
    /// Section index of `.symtab`, if present.
    pub symtab_index: Option<usize>,
}

impl<'data> ElfFile<'data> {
    /// Whether relocation section `rs` applies to a section `pick` accepts, or to none that
    /// exists: one whose target is unknown may be the one a command needs, so it is read
    /// (and refused) rather than silently left out.
    pub fn reloc_applies_to(&self, rs: &Section<'_>, pick: impl Fn(&Section<'_>) -> bool) -> bool {
        self.sections.get(rs.info as usize).is_none_or(pick)
    }

    /// The alignment every function symbol of each code section shares (a power of two,
    /// at most the section's alignment), by section index: code aligned more than the C
    /// extension needs stays so, and the verifier checks it did.
    pub fn function_alignment(&self) -> std::collections::BTreeMap<usize, u64> {
        let mut out = std::collections::BTreeMap::new();
        for s in self
            .symbols
            .iter()
            .filter(|s| s.kind == object::elf::STT_FUNC.0)
        {
            let Some(sec) = s.section() else { continue };
            let Some(section) = self.sections.get(sec).filter(|x| x.is_exec()) else {
                continue;
            };
            let a = if s.value == 0 {
                64
            } else {
                1u64 << s.value.trailing_zeros().min(6)
            };
            let e = out.entry(sec).or_insert(64);
            *e = (*e).min(a).min(section.align.max(1));
        }
        out
    }

    /// Size of a pointer in bytes (4 or 8).
    pub fn ptr_size(&self) -> usize {
        if self.is_64 {
            8
        } else {
            4
        }
    }

    /// `EF_RISCV_RVC`: the file may contain compressed instructions.
    pub fn rvc(&self) -> bool {
        self.e_flags & object::elf::EF_RISCV_RVC.0 != 0
    }

    /// The first section with this name.
    pub fn section_by_name(&self, name: &str) -> Option<&Section<'data>> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The bytes of a section (empty for `SHT_NOBITS`), bounds-checked.
    pub fn section_data(&self, section: &Section<'_>) -> Result<&'data [u8]> {
        if section.is_nobits() || section.size == 0 {
            return Ok(&[]);
        }
        let start = usize::try_from(section.offset).ok();
        let end = start.and_then(|s| s.checked_add(usize::try_from(section.size).ok()?));
        match (start, end) {
            (Some(s), Some(e)) if e <= self.data.len() => Ok(&self.data[s..e]),
            _ => Err(Error::malformed(format!(
                "section {} ({:#x} bytes at offset {:#x}) extends past the end of the file ({:#x} bytes)",
                section.name,
                section.size,
                section.offset,
                self.data.len()
            ))),
        }
    }

    /// The allocated section containing `addr` (linked files only). `.tbss` is skipped: it
    /// takes no room in the image, and the sections after it share its addresses.
    pub fn alloc_section_at(&self, addr: u64) -> Option<&Section<'data>> {
        let tls = object::elf::SHF_TLS.0;
        self.sections.iter().find(|s| {
            s.is_alloc() && s.size > 0 && s.contains(addr) && !(s.is_nobits() && s.flags & tls != 0)
        })
    }

    /// Reads a little-endian pointer at a virtual address of a linked file.
    pub fn read_ptr_at(&self, addr: u64) -> Option<u64> {
        let sec = self.alloc_section_at(addr)?;
        let data = self.section_data(sec).ok()?;
        let off = usize::try_from(addr - sec.addr).ok()?;
        read_uint(data, off, self.ptr_size())
    }

    /// The first `.symtab` symbol with this exact name.
    pub fn symbol_by_name(&self, name: &str) -> Option<&Symbol<'data>> {
        self.symbols.iter().find(|s| s.name == name)
    }
}
