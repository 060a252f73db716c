//! What the preloaded runtime (`rv::preload`) reads from the file of a loaded module: its
//! program headers (compared with the loaded ones, so a file replaced since it was loaded is
//! refused), the `__mcount_loc` slot table `padtrim rewrite` adds (found by name in the
//! section headers: the loaded image does not say where it is), the descriptor of a runtime
//! linked into the module (its table count excludes the island addresses that follow), the
//! GNU build-id, and the unused bytes at the end of a text segment's last page, where a
//! far-jump stub can live within `jal` reach of the module's slots.
//!
//! Portable and bounds-checked (a corrupt file yields `None`, never a fault), so it is
//! unit-tested on the host.

use crate::descriptor::Descriptor;
use crate::elf::{rd16, rd32, rd64};
use padtrim_abi::{DESCRIPTOR_MAGIC, DESCRIPTOR_VERSION, MCOUNT_SECTION};

/// ELF machine number of RISC-V.
pub const EM_RISCV: u16 = 243;
/// Bytes of one ELF64 program header.
pub const PHDR_SIZE: usize = 56;
const SHDR_SIZE: usize = 64;
/// `PT_LOAD`.
pub const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
/// `PF_X`: executable segment.
pub const PF_X: u32 = 1;
const SHT_PROGBITS: u32 = 1;
const SHF_WRITE: u64 = 1;
const SHF_ALLOC: u64 = 2;
const NT_GNU_BUILD_ID: u32 = 3;

/// One program header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// `p_type`.
    pub kind: u32,
    /// `p_flags`.
    pub flags: u32,
    /// `p_offset`.
    pub offset: u64,
    /// `p_vaddr` (link-time).
    pub vaddr: u64,
    /// `p_filesz`.
    pub filesz: u64,
    /// `p_memsz`.
    pub memsz: u64,
}

/// The program headers in `phdrs` (whole 56-byte entries).
pub fn segments(phdrs: &[u8]) -> impl Iterator<Item = Segment> + '_ {
    phdrs.chunks_exact(PHDR_SIZE).map(|p| Segment {
        kind: rd32(p, 0).unwrap_or(0),
        flags: rd32(p, 4).unwrap_or(0),
        offset: rd64(p, 8).unwrap_or(0),
        vaddr: rd64(p, 16).unwrap_or(0),
        filesz: rd64(p, 32).unwrap_or(0),
        memsz: rd64(p, 40).unwrap_or(0),
    })
}

/// Is [`addr`, `addr + len`) (link-time) inside the file-backed part of a loaded segment?
pub fn in_loaded_file_bytes(phdrs: &[u8], addr: u64, len: u64) -> bool {
    let end = match addr.checked_add(len) {
        Some(e) => e,
        None => return false,
    };
    segments(phdrs).any(|s| {
        s.kind == PT_LOAD
            && s.vaddr <= addr
            && s.vaddr.checked_add(s.filesz).map_or(false, |e| end <= e)
    })
}

/// Is [`addr`, `addr + len`) (link-time) inside an executable loaded segment?
pub fn in_text(phdrs: &[u8], addr: u64, len: u64) -> bool {
    let end = match addr.checked_add(len) {
        Some(e) => e,
        None => return false,
    };
    segments(phdrs).any(|s| {
        s.kind == PT_LOAD
            && s.flags & PF_X != 0
            && s.vaddr <= addr
            && s.vaddr.checked_add(s.filesz).map_or(false, |e| end <= e)
    })
}

/// Link-time bounds [lo, hi) of every loaded segment, whole pages of `page` bytes.
pub fn image_bounds(phdrs: &[u8], page: u64) -> Option<(u64, u64)> {
    let mut lo = u64::MAX;
    let mut hi = 0;
    for s in segments(phdrs).filter(|s| s.kind == PT_LOAD) {
        lo = lo.min(s.vaddr & !(page - 1));
        hi = hi.max(s.vaddr.checked_add(s.memsz)?.checked_add(page - 1)? & !(page - 1));
    }
    if lo < hi {
        Some((lo, hi))
    } else {
        None
    }
}

/// Unused bytes at the end of each executable segment's last page (link-time [start, end),
/// `start` 8-byte aligned): mapped with the segment (the loader maps whole pages of the
/// file), executable, and used by nothing, since no other segment shares the page. At most
/// `out.len()` are returned; ranges shorter than `min` bytes are left out.
pub fn text_slack(phdrs: &[u8], page: u64, min: u64, out: &mut [(u64, u64)]) -> usize {
    let mut n = 0;
    for s in segments(phdrs) {
        if n == out.len() {
            break;
        }
        if s.kind != PT_LOAD || s.flags & PF_X == 0 || s.memsz != s.filesz {
            continue;
        }
        let end = match s.vaddr.checked_add(s.filesz) {
            Some(e) => e,
            None => continue,
        };
        let start = match end.checked_add(7) {
            Some(v) => v & !7,
            None => continue,
        };
        let page_end = match end.checked_add(page - 1) {
            Some(v) => v & !(page - 1),
            None => continue,
        };
        if page_end < start || page_end - start < min {
            continue;
        }
        // Another segment in the same pages would be using these bytes.
        let shared = segments(phdrs).any(|o| {
            o.kind == PT_LOAD
                && o != s
                && (o.vaddr & !(page - 1)) < page_end
                && o.vaddr.saturating_add(o.memsz) > end
        });
        if !shared {
            out[n] = (start, page_end);
            n += 1;
        }
    }
    n
}

/// A section header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section {
    /// `sh_type`.
    pub kind: u32,
    /// `sh_flags`.
    pub flags: u64,
    /// `sh_addr` (link-time).
    pub addr: u64,
    /// `sh_offset`.
    pub offset: u64,
    /// `sh_size`.
    pub size: u64,
}

/// The parts of a little-endian ELF64 RISC-V file the preloaded runtime needs.
#[derive(Clone, Copy, Debug)]
pub struct ModuleFile<'a> {
    data: &'a [u8],
}

impl<'a> ModuleFile<'a> {
    /// `data` if it is a little-endian ELF64 RISC-V file with the usual header sizes.
    pub fn parse(data: &'a [u8]) -> Option<ModuleFile<'a>> {
        if data.get(0..6)? != b"\x7fELF\x02\x01" || rd16(data, 18)? != EM_RISCV {
            return None;
        }
        if rd16(data, 0x36)? as usize != PHDR_SIZE {
            return None;
        }
        Some(ModuleFile { data })
    }

    /// The program headers as they lie in the file.
    pub fn program_headers(&self) -> Option<&'a [u8]> {
        let off = rd64(self.data, 0x20)? as usize;
        let n = rd16(self.data, 0x38)? as usize;
        self.data
            .get(off..off.checked_add(n.checked_mul(PHDR_SIZE)?)?)
    }

    fn section_header(&self, i: usize) -> Option<(u32, Section)> {
        let shoff = rd64(self.data, 0x28)? as usize;
        if rd16(self.data, 0x3a)? as usize != SHDR_SIZE {
            return None;
        }
        let h = shoff.checked_add(i.checked_mul(SHDR_SIZE)?)?;
        Some((
            rd32(self.data, h)?,
            Section {
                kind: rd32(self.data, h + 4)?,
                flags: rd64(self.data, h + 8)?,
                addr: rd64(self.data, h + 0x10)?,
                offset: rd64(self.data, h + 0x18)?,
                size: rd64(self.data, h + 0x20)?,
            },
        ))
    }

    fn section_count(&self) -> usize {
        match rd16(self.data, 0x3c) {
            Some(0) => self.section_header(0).map_or(0, |(_, s)| s.size as usize),
            Some(n) => n as usize,
            None => 0,
        }
    }

    /// The section called `name`.
    pub fn section(&self, name: &[u8]) -> Option<Section> {
        let mut strndx = rd16(self.data, 0x3e)? as usize;
        if strndx == 0xffff {
            // SHN_XINDEX: the index is in the `sh_link` of section header 0.
            let shoff = rd64(self.data, 0x28)? as usize;
            strndx = rd32(self.data, shoff.checked_add(0x28)?)? as usize;
        }
        let (_, strtab) = self.section_header(strndx)?;
        let names = self
            .data
            .get(strtab.offset as usize..(strtab.offset.checked_add(strtab.size)?) as usize)?;
        (0..self.section_count()).find_map(|i| {
            let (name_off, s) = self.section_header(i)?;
            let tail = names.get(name_off as usize..)?;
            let end = tail.iter().position(|&b| b == 0)?;
            if &tail[..end] == name {
                Some(s)
            } else {
                None
            }
        })
    }

    /// The padtrim slot table (`__mcount_loc`): link-time address and number of 8-byte
    /// entries, if the file has one that is allocated, 8-byte aligned and whole.
    pub fn slot_table(&self) -> Option<(u64, u64)> {
        let s = self.section(MCOUNT_SECTION.as_bytes())?;
        if s.kind != SHT_PROGBITS || s.flags & SHF_ALLOC == 0 || s.addr % 8 != 0 || s.size % 8 != 0
        {
            return None;
        }
        Some((s.addr, s.size / 8))
    }

    /// The GNU build-id, from the notes of the `PT_NOTE` segments.
    pub fn build_id(&self) -> Option<&'a [u8]> {
        for s in segments(self.program_headers()?) {
            if s.kind != PT_NOTE {
                continue;
            }
            let notes = self
                .data
                .get(s.offset as usize..(s.offset.checked_add(s.filesz)?) as usize)?;
            if let Some(id) = build_id_in_notes(notes) {
                return Some(id);
            }
        }
        None
    }

    /// The filled descriptor of a runtime linked into the module, if one announces the
    /// table at `table_addr`: searched in the module's initialised writable data, where the
    /// runtime puts it (symbols are not needed: stripped modules are found too).
    pub fn linked_descriptor(&self, table_addr: u64) -> Option<Descriptor> {
        let mut pattern = [0u8; 12];
        pattern[..8].copy_from_slice(&DESCRIPTOR_MAGIC);
        pattern[8..].copy_from_slice(&DESCRIPTOR_VERSION.to_le_bytes());
        (0..self.section_count()).find_map(|i| {
            let (_, s) = self.section_header(i)?;
            if s.kind != SHT_PROGBITS || s.flags & (SHF_WRITE | SHF_ALLOC) != SHF_WRITE | SHF_ALLOC
            {
                return None;
            }
            let bytes = self
                .data
                .get(s.offset as usize..(s.offset.checked_add(s.size)?) as usize)?;
            let mut at = 0;
            while at + Descriptor::SIZE <= bytes.len() {
                if bytes[at..at + 12] == pattern {
                    if let Some(d) = Descriptor::from_bytes(&bytes[at..]) {
                        if d.is_filled() && d.table_addr == table_addr {
                            return Some(d);
                        }
                    }
                }
                at += 8;
            }
            None
        })
    }
}

fn build_id_in_notes(mut notes: &[u8]) -> Option<&[u8]> {
    let align4 = |n: usize| n.checked_add(3).map(|n| n & !3);
    while notes.len() >= 12 {
        let namesz = rd32(notes, 0)? as usize;
        let descsz = rd32(notes, 4)? as usize;
        let kind = rd32(notes, 8)?;
        let name_end = 12usize.checked_add(align4(namesz)?)?;
        let desc_end = name_end.checked_add(align4(descsz)?)?;
        if kind == NT_GNU_BUILD_ID && notes.get(12..12 + namesz)? == b"GNU\0" {
            return notes.get(name_end..name_end + descsz);
        }
        notes = notes.get(desc_end..)?;
    }
    None
}

/// Bytes of a far-jump stub (see `far_jump_stub`).
pub const STUB_SIZE: u64 = 24;

/// A stub that jumps to any 64-bit `target`, clobbering only t1 (like an island), to be
/// placed at an 8-byte aligned address within `jal` reach of slots:
/// `auipc t1, 0; ld t1, 16(t1); jr t1; nop; .dword target`, as six little-endian words.
pub fn far_jump_stub(target: u64) -> [u32; 6] {
    const AUIPC_T1_0: u32 = 0x0000_0317;
    const LD_T1_16_T1: u32 = 16 << 20 | 6 << 15 | 3 << 12 | 6 << 7 | 0x03;
    const JR_T1: u32 = 6 << 15 | 0x67;
    [
        AUIPC_T1_0,
        LD_T1_16_T1,
        JR_T1,
        crate::descriptor::NOP,
        target as u32,
        (target >> 32) as u32,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn phdr(kind: u32, flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Vec<u8> {
        let mut p = vec![0u8; PHDR_SIZE];
        p[0..4].copy_from_slice(&kind.to_le_bytes());
        p[4..8].copy_from_slice(&flags.to_le_bytes());
        p[8..16].copy_from_slice(&offset.to_le_bytes());
        p[16..24].copy_from_slice(&vaddr.to_le_bytes());
        p[32..40].copy_from_slice(&filesz.to_le_bytes());
        p[40..48].copy_from_slice(&memsz.to_le_bytes());
        p
    }

    /// A file with a text segment (0..0xa48), a data segment, a note with a build-id, an
    /// `__mcount_loc` section and a `.data` section holding a filled descriptor.
    fn module_file(with_descriptor: bool) -> Vec<u8> {
        let mut f = vec![0u8; 0x1000];
        f[0..6].copy_from_slice(b"\x7fELF\x02\x01");
        f[18..20].copy_from_slice(&EM_RISCV.to_le_bytes());
        f[0x36..0x38].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&(SHDR_SIZE as u16).to_le_bytes());
        // Program headers at 0x40.
        let mut ph = phdr(PT_LOAD, 5, 0, 0, 0xa48, 0xa48);
        ph.extend(phdr(PT_LOAD, 6, 0xdf8, 0x1df8, 0x100, 0x108));
        ph.extend(phdr(PT_NOTE, 4, 0x200, 0x200, 0x24, 0x24));
        f[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        f[0x38..0x3a].copy_from_slice(&3u16.to_le_bytes());
        f[0x40..0x40 + ph.len()].copy_from_slice(&ph);
        // Build-id note at 0x200: namesz 4, descsz 20, type 3, "GNU\0", 20 bytes.
        f[0x200..0x204].copy_from_slice(&4u32.to_le_bytes());
        f[0x204..0x208].copy_from_slice(&20u32.to_le_bytes());
        f[0x208..0x20c].copy_from_slice(&3u32.to_le_bytes());
        f[0x20c..0x210].copy_from_slice(b"GNU\0");
        for i in 0..20 {
            f[0x210 + i] = i as u8 + 1;
        }
        // Descriptor in .data (file 0xe00, address 0x1e00).
        if with_descriptor {
            let d = Descriptor {
                slot_size: 4,
                self_addr: 0x1e00,
                table_addr: 0xa38,
                table_count: 1,
                islands_addr: 0xa40,
                islands_count: 1,
                ..Descriptor::EMPTY
            };
            f[0xe00..0xe00 + Descriptor::SIZE].copy_from_slice(&d.to_bytes());
        }
        // Section name table at 0x300.
        let names = b"\0__mcount_loc\0.data\0.shstrtab\0";
        f[0x300..0x300 + names.len()].copy_from_slice(names);
        let sh = |name: u32, kind: u32, flags: u64, addr: u64, off: u64, size: u64| {
            let mut h = vec![0u8; SHDR_SIZE];
            h[0..4].copy_from_slice(&name.to_le_bytes());
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[8..16].copy_from_slice(&flags.to_le_bytes());
            h[0x10..0x18].copy_from_slice(&addr.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&off.to_le_bytes());
            h[0x20..0x28].copy_from_slice(&size.to_le_bytes());
            h
        };
        let mut shdrs = sh(0, 0, 0, 0, 0, 0);
        shdrs.extend(sh(1, SHT_PROGBITS, SHF_ALLOC, 0xa38, 0xa38, 0x10));
        shdrs.extend(sh(
            14,
            SHT_PROGBITS,
            SHF_ALLOC | SHF_WRITE,
            0x1df8,
            0xdf8,
            0x100,
        ));
        shdrs.extend(sh(20, 3, 0, 0, 0x300, names.len() as u64));
        let shoff = 0x400usize;
        f[shoff..shoff + shdrs.len()].copy_from_slice(&shdrs);
        f[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&4u16.to_le_bytes());
        f[0x3e..0x40].copy_from_slice(&3u16.to_le_bytes());
        f
    }

    #[test]
    fn finds_the_table_build_id_and_linked_descriptor() {
        let data = module_file(true);
        let m = ModuleFile::parse(&data).unwrap();
        assert_eq!(m.slot_table(), Some((0xa38, 2)));
        let id: Vec<u8> = (1..=20).collect();
        assert_eq!(m.build_id(), Some(&id[..]));
        let d = m.linked_descriptor(0xa38).unwrap();
        assert_eq!(d.table_count, 1);
        assert!(m.linked_descriptor(0x1234).is_none());
        let plain = module_file(false);
        assert!(ModuleFile::parse(&plain)
            .unwrap()
            .linked_descriptor(0xa38)
            .is_none());
        let ph = m.program_headers().unwrap();
        assert!(in_loaded_file_bytes(ph, 0xa38, 0x10));
        assert!(!in_loaded_file_bytes(ph, 0xa40, 0x10));
        assert!(in_text(ph, 0x820, 4));
        assert!(!in_text(ph, 0x1e00, 4));
        assert_eq!(image_bounds(ph, 0x1000), Some((0, 0x2000)));
    }

    #[test]
    fn slack_is_the_rest_of_the_last_text_page_unless_shared() {
        let data = module_file(true);
        let ph = ModuleFile::parse(&data).unwrap().program_headers().unwrap();
        let mut out = [(0, 0); 4];
        assert_eq!(text_slack(ph, 0x1000, STUB_SIZE, &mut out), 1);
        assert_eq!(out[0], (0xa48, 0x1000));
        // Data in the same page as the end of text: no slack.
        let mut shared = phdr(PT_LOAD, 5, 0, 0, 0xa48, 0xa48);
        shared.extend(phdr(PT_LOAD, 6, 0xc00, 0xc00, 0x100, 0x100));
        assert_eq!(text_slack(&shared, 0x1000, STUB_SIZE, &mut out), 0);
        // Too little room.
        let tight = phdr(PT_LOAD, 5, 0, 0, 0xff0, 0xff0);
        assert_eq!(text_slack(&tight, 0x1000, STUB_SIZE, &mut out), 0);
    }

    #[test]
    fn corrupt_files_are_refused_or_harmless() {
        let data = module_file(true);
        for cut in [0, 5, 0x40, 0x100, 0x3ff, 0x420, 0x4ff] {
            if let Some(m) = ModuleFile::parse(&data[..cut]) {
                let _ = (m.slot_table(), m.build_id(), m.linked_descriptor(0xa38));
                let _ = m.program_headers();
            }
        }
        let mut other = data.clone();
        other[18] = 62; // x86-64
        assert!(ModuleFile::parse(&other).is_none());
    }

    #[test]
    fn the_stub_jumps_where_it_says() {
        let w = far_jump_stub(0x1122_3344_5566_7788);
        // `ld t1, 16(t1)` and `jr t1` as GNU as encodes them.
        assert_eq!(w[1], 0x0103_3303);
        assert_eq!(w[2], 0x0003_0067);
        assert_eq!((w[4], w[5]), (0x5566_7788, 0x1122_3344));
    }
}
