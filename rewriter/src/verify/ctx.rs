//! What every check of the verifier shares: both files, their section pairing, their
//! relocations and the word size.

use crate::elf::{ElfFile, RelocSection, Section};
use crate::riscv::Xlen;

/// Everything the checks share.
pub(crate) struct Ctx<'a, 'o, 'n> {
    /// The original file.
    pub old: &'a ElfFile<'o>,
    /// The rewritten file.
    pub new: &'a ElfFile<'n>,
    /// New section index of each old section.
    pub pairs: Vec<Option<usize>>,
    /// New index of the added `__mcount_loc`, if any.
    pub table: Option<usize>,
    /// New index of the added non-allocated `__patchable_function_entries` (the slots of a
    /// `rewrite --insert`), if any.
    pub record: Option<usize>,
    /// Relocation sections of the original.
    pub old_relocs: Vec<RelocSection>,
    /// Relocation sections of the rewritten file.
    pub new_relocs: Vec<RelocSection>,
    /// Register width.
    pub xlen: Xlen,
    /// Pointer size in bytes.
    pub ptr: usize,
    /// New `.dynsym` index of each old dynamic symbol (the writer may sort them again).
    pub dyn_perm: Vec<Option<usize>>,
}

impl<'o, 'n> Ctx<'_, 'o, 'n> {
    /// True when the rewrite emptied the patch table (every pad removed, `--slot 0`): the
    /// original has `__patchable_function_entries` with entries, the output has it empty.
    pub fn patch_table_emptied(&self) -> bool {
        let named = |f: &ElfFile<'_>, record: Option<usize>| {
            f.sections
                .iter()
                .filter(|s| s.name == crate::scan::TABLE_SECTION && Some(s.index) != record)
                .map(|s| s.size)
                .collect::<Vec<_>>()
        };
        let (old, new) = (named(self.old, None), named(self.new, self.record));
        self.old.kind.is_linked()
            && old.iter().any(|&n| n > 0)
            && old.len() == new.len()
            && new.iter().all(|&n| n == 0)
    }

    /// The new section paired with old section `index`.
    pub fn new_section(&self, index: usize) -> Option<&Section<'n>> {
        self.pairs
            .get(index)
            .copied()
            .flatten()
            .map(|j| &self.new.sections[j])
    }

    /// The first old section `pick` accepts and its new counterpart (`None` if it has none).
    pub fn find_pair(
        &self,
        pick: impl Fn(&Section<'o>) -> bool,
    ) -> Option<(&Section<'o>, &Section<'n>)> {
        let s = self.old.sections.iter().find(|s| pick(s))?;
        Some((s, self.new_section(s.index)?))
    }

    /// Contents of old section `index` (empty if unreadable).
    pub fn old_data(&self, index: usize) -> &'o [u8] {
        self.old
            .section_data(&self.old.sections[index])
            .unwrap_or(&[])
    }

    /// Contents of the new section paired with old section `index`.
    pub fn new_data(&self, index: usize) -> &'n [u8] {
        self.new_section(index)
            .and_then(|s| self.new.section_data(s).ok())
            .unwrap_or(&[])
    }

    /// True if old section `index` is allocated executable code with contents.
    pub fn is_code(&self, index: usize) -> bool {
        let s = &self.old.sections[index];
        s.is_alloc() && s.is_exec() && !s.is_nobits() && s.size > 0
    }

    /// True for a relocation section of the original that holds dynamic relocations.
    pub fn is_dynamic(&self, rs: &RelocSection) -> bool {
        self.old.sections[rs.index].is_alloc()
    }
}

/// True for `.tbss`: it takes no address space of its own.
pub(super) fn is_tbss(s: &Section<'_>) -> bool {
    s.is_nobits() && s.flags & object::elf::SHF_TLS.0 != 0
}
