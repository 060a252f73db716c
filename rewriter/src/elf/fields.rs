//! Where each field lies in the ELF structures a writer patches, for ELF64 and ELF32 (from
//! the ELF specification; little-endian throughout on RISC-V). The writers patch the input's
//! own bytes: this table is the one place that knows the two classes' offsets.

/// Byte offsets and sizes of the fields the writers patch, for one ELF class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassFields {
    /// Bytes of an address, offset or size field (`Elf_Addr`, `Elf_Off`, `Elf_Xword`).
    pub word: usize,
    /// Bytes of the file header.
    pub ehdr_size: usize,
    /// `e_entry` in the file header.
    pub e_entry: usize,
    /// `e_phoff` in the file header.
    pub e_phoff: usize,
    /// `e_shoff` in the file header.
    pub e_shoff: usize,
    /// `e_phnum` in the file header (2 bytes).
    pub e_phnum: usize,
    /// `e_shentsize` in the file header (2 bytes).
    pub e_shentsize: usize,
    /// `e_shnum` in the file header (2 bytes).
    pub e_shnum: usize,
    /// `e_shstrndx` in the file header (2 bytes).
    pub e_shstrndx: usize,
    /// Bytes of a section header.
    pub shdr_size: usize,
    /// `sh_addr` in a section header.
    pub sh_addr: usize,
    /// `sh_offset` in a section header.
    pub sh_offset: usize,
    /// `sh_size` in a section header.
    pub sh_size: usize,
    /// `sh_info` in a section header (4 bytes).
    pub sh_info: usize,
    /// `sh_addralign` in a section header.
    pub sh_addralign: usize,
    /// Bytes of a program header.
    pub phdr_size: usize,
    /// `p_offset` in a program header.
    pub p_offset: usize,
    /// `p_vaddr` in a program header.
    pub p_vaddr: usize,
    /// `p_paddr` in a program header.
    pub p_paddr: usize,
    /// `p_filesz` in a program header.
    pub p_filesz: usize,
    /// `p_memsz` in a program header.
    pub p_memsz: usize,
    /// Bytes of a symbol.
    pub sym_size: usize,
    /// `st_value` in a symbol.
    pub st_value: usize,
    /// `st_size` in a symbol.
    pub st_size: usize,
    /// Bytes of a `RELA` entry.
    pub rela_size: usize,
    /// Bytes of a dynamic entry.
    pub dyn_size: usize,
}

/// ELF64.
pub const ELF64: ClassFields = ClassFields {
    word: 8,
    ehdr_size: 64,
    e_entry: 24,
    e_phoff: 32,
    e_shoff: 40,
    e_phnum: 56,
    e_shentsize: 58,
    e_shnum: 60,
    e_shstrndx: 62,
    shdr_size: 64,
    sh_addr: 16,
    sh_offset: 24,
    sh_size: 32,
    sh_info: 44,
    sh_addralign: 48,
    phdr_size: 56,
    p_offset: 8,
    p_vaddr: 16,
    p_paddr: 24,
    p_filesz: 32,
    p_memsz: 40,
    sym_size: 24,
    st_value: 8,
    st_size: 16,
    rela_size: 24,
    dyn_size: 16,
};

/// ELF32.
pub const ELF32: ClassFields = ClassFields {
    word: 4,
    ehdr_size: 52,
    e_entry: 24,
    e_phoff: 28,
    e_shoff: 32,
    e_phnum: 44,
    e_shentsize: 46,
    e_shnum: 48,
    e_shstrndx: 50,
    shdr_size: 40,
    sh_addr: 12,
    sh_offset: 16,
    sh_size: 20,
    sh_info: 28,
    sh_addralign: 32,
    phdr_size: 32,
    p_offset: 4,
    p_vaddr: 8,
    p_paddr: 12,
    p_filesz: 16,
    p_memsz: 20,
    sym_size: 16,
    st_value: 4,
    st_size: 8,
    rela_size: 12,
    dyn_size: 8,
};

impl ClassFields {
    /// The fields of ELF64 (`is_64`) or ELF32.
    pub fn of(is_64: bool) -> &'static ClassFields {
        if is_64 {
            &ELF64
        } else {
            &ELF32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::elf::{FileHeader32, FileHeader64, ProgramHeader32, ProgramHeader64};
    use object::elf::{Rela32, Rela64, SectionHeader32, SectionHeader64, Sym32, Sym64};
    use object::LittleEndian as LE;

    /// The offsets agree with `object`'s own definitions of the structures.
    #[test]
    fn offsets_match_the_structures() {
        use core::mem::{offset_of, size_of};
        for (f, is_64) in [(&ELF64, true), (&ELF32, false)] {
            assert_eq!(ClassFields::of(is_64), f);
        }
        assert_eq!(ELF64.ehdr_size, size_of::<FileHeader64<LE>>());
        assert_eq!(ELF32.ehdr_size, size_of::<FileHeader32<LE>>());
        assert_eq!(ELF64.e_entry, offset_of!(FileHeader64<LE>, e_entry));
        assert_eq!(ELF64.e_phoff, offset_of!(FileHeader64<LE>, e_phoff));
        assert_eq!(ELF64.e_shoff, offset_of!(FileHeader64<LE>, e_shoff));
        assert_eq!(ELF64.e_phnum, offset_of!(FileHeader64<LE>, e_phnum));
        assert_eq!(ELF64.e_shentsize, offset_of!(FileHeader64<LE>, e_shentsize));
        assert_eq!(ELF64.e_shnum, offset_of!(FileHeader64<LE>, e_shnum));
        assert_eq!(ELF32.e_entry, offset_of!(FileHeader32<LE>, e_entry));
        assert_eq!(ELF32.e_phoff, offset_of!(FileHeader32<LE>, e_phoff));
        assert_eq!(ELF32.e_shoff, offset_of!(FileHeader32<LE>, e_shoff));
        assert_eq!(ELF32.e_phnum, offset_of!(FileHeader32<LE>, e_phnum));
        assert_eq!(ELF32.e_shentsize, offset_of!(FileHeader32<LE>, e_shentsize));
        assert_eq!(ELF32.e_shnum, offset_of!(FileHeader32<LE>, e_shnum));
        assert_eq!(ELF64.e_shstrndx, offset_of!(FileHeader64<LE>, e_shstrndx));
        assert_eq!(ELF32.e_shstrndx, offset_of!(FileHeader32<LE>, e_shstrndx));
        assert_eq!(ELF64.shdr_size, size_of::<SectionHeader64<LE>>());
        assert_eq!(ELF64.sh_addr, offset_of!(SectionHeader64<LE>, sh_addr));
        assert_eq!(ELF64.sh_offset, offset_of!(SectionHeader64<LE>, sh_offset));
        assert_eq!(ELF64.sh_size, offset_of!(SectionHeader64<LE>, sh_size));
        assert_eq!(ELF64.sh_info, offset_of!(SectionHeader64<LE>, sh_info));
        assert_eq!(ELF32.sh_info, offset_of!(SectionHeader32<LE>, sh_info));
        assert_eq!(
            ELF64.sh_addralign,
            offset_of!(SectionHeader64<LE>, sh_addralign)
        );
        assert_eq!(ELF32.shdr_size, size_of::<SectionHeader32<LE>>());
        assert_eq!(ELF32.sh_addr, offset_of!(SectionHeader32<LE>, sh_addr));
        assert_eq!(ELF32.sh_offset, offset_of!(SectionHeader32<LE>, sh_offset));
        assert_eq!(ELF32.sh_size, offset_of!(SectionHeader32<LE>, sh_size));
        assert_eq!(
            ELF32.sh_addralign,
            offset_of!(SectionHeader32<LE>, sh_addralign)
        );
        assert_eq!(ELF64.phdr_size, size_of::<ProgramHeader64<LE>>());
        assert_eq!(ELF64.p_offset, offset_of!(ProgramHeader64<LE>, p_offset));
        assert_eq!(ELF64.p_vaddr, offset_of!(ProgramHeader64<LE>, p_vaddr));
        assert_eq!(ELF64.p_paddr, offset_of!(ProgramHeader64<LE>, p_paddr));
        assert_eq!(ELF64.p_filesz, offset_of!(ProgramHeader64<LE>, p_filesz));
        assert_eq!(ELF64.p_memsz, offset_of!(ProgramHeader64<LE>, p_memsz));
        assert_eq!(ELF32.phdr_size, size_of::<ProgramHeader32<LE>>());
        assert_eq!(ELF32.p_offset, offset_of!(ProgramHeader32<LE>, p_offset));
        assert_eq!(ELF32.p_vaddr, offset_of!(ProgramHeader32<LE>, p_vaddr));
        assert_eq!(ELF32.p_paddr, offset_of!(ProgramHeader32<LE>, p_paddr));
        assert_eq!(ELF32.p_filesz, offset_of!(ProgramHeader32<LE>, p_filesz));
        assert_eq!(ELF32.p_memsz, offset_of!(ProgramHeader32<LE>, p_memsz));
        assert_eq!(ELF64.sym_size, size_of::<Sym64<LE>>());
        assert_eq!(ELF64.st_value, offset_of!(Sym64<LE>, st_value));
        assert_eq!(ELF64.st_size, offset_of!(Sym64<LE>, st_size));
        assert_eq!(ELF32.sym_size, size_of::<Sym32<LE>>());
        assert_eq!(ELF32.st_value, offset_of!(Sym32<LE>, st_value));
        assert_eq!(ELF32.st_size, offset_of!(Sym32<LE>, st_size));
        assert_eq!(ELF64.rela_size, size_of::<Rela64<LE>>());
        assert_eq!(ELF32.rela_size, size_of::<Rela32<LE>>());
        assert_eq!(ELF64.dyn_size, size_of::<object::elf::Dyn64<LE>>());
        assert_eq!(ELF32.dyn_size, size_of::<object::elf::Dyn32<LE>>());
    }
}
