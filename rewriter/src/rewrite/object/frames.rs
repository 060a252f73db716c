//! Call frame information (`.eh_frame`, `.debug_frame`) of an object.
//!
//! With relaxation, the assembler leaves every code distance in CFI to the linker: FDE
//! `pc_begin` is a relocation against the function, `pc_range` an `ADD`/`SUB` pair, each
//! `DW_CFA_advance_loc*` a `SET`/`SUB` pair against labels, so moving symbols is enough.
//! Without relaxation these distances are plain constants. This module walks every FDE
//! and re-computes the constant ones whose range spans moved code, in place; an advance
//! that no longer fits its encoding is refused.

use std::collections::{BTreeMap, HashSet};

use super::symbols::Maps;
use crate::elf::dwarf::Cursor;
use crate::elf::{read_uint, ElfFile, Reloc};
use crate::error::{Error, Result};

/// What is known about one relocation target: section and offset in it.
fn reloc_target(file: &ElfFile<'_>, r: &Reloc) -> Option<(usize, i64)> {
    let s = file.symbols.get(r.sym as usize)?;
    Some((s.section()?, (s.value as i64).wrapping_add(r.addend)))
}

/// What an FDE needs from its CIE.
#[derive(Debug, Clone, Copy)]
struct Cie {
    code_align: u64,
    /// `DW_EH_PE_*` encoding of FDE addresses (`.eh_frame`), `None` for plain pointers.
    encoding: Option<u8>,
    /// FDEs carry an augmentation data length (`z`).
    has_aug_len: bool,
}

/// Size in bytes of a value in `DW_EH_PE_*` encoding `enc` (`None` for LEB128 forms).
fn encoded_size(enc: u8, ptr: usize) -> Option<usize> {
    match enc & 0x0f {
        0x00 => Some(ptr),
        0x02 | 0x0a => Some(2),
        0x03 | 0x0b => Some(4),
        0x04 | 0x0c => Some(8),
        _ => None,
    }
}

/// Which frame section flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Eh,
    Debug,
}

/// One frame section being checked: its bytes (patched in place), relocations by offset
/// and the maps of moved code.
struct Frames<'a, 'data> {
    file: &'a ElfFile<'data>,
    name: &'a str,
    flavour: Flavour,
    /// The original bytes (read from).
    old: &'a [u8],
    /// The new bytes (written to).
    bytes: Vec<u8>,
    relocs: BTreeMap<u64, Vec<Reloc>>,
    maps: &'a Maps,
    fixed: usize,
}

impl Frames<'_, '_> {
    fn malformed(&self, at: usize, what: &str) -> Error {
        Error::malformed(format!("{}+{at:#x}: {what}", self.name))
    }

    fn relocated(&self, at: usize) -> bool {
        self.relocs.contains_key(&(at as u64))
    }

    fn parse_cie(&self, start: usize, body: usize, end: usize) -> Result<Cie> {
        let bad = || self.malformed(start, "truncated CIE");
        let mut c = Cursor {
            data: &self.old[..end],
            pos: body,
        };
        let version = c.u8().ok_or_else(bad)?;
        let mut aug = Vec::new();
        loop {
            match c.u8().ok_or_else(bad)? {
                0 => break,
                b => aug.push(b),
            }
        }
        if self.flavour == Flavour::Debug && version >= 4 {
            c.skip(2).ok_or_else(bad)?; // address_size, segment_selector_size
        }
        let code_align = c.uleb().ok_or_else(bad)?;
        c.sleb().ok_or_else(bad)?;
        if version == 1 {
            c.u8().ok_or_else(bad)?;
        } else {
            c.uleb().ok_or_else(bad)?;
        }
        let mut cie = Cie {
            // Real factors are 1, 2 or 4; anything huge is corrupt (and would overflow).
            code_align: code_align.clamp(1, 1 << 16),
            encoding: None,
            has_aug_len: aug.first() == Some(&b'z'),
        };
        if cie.has_aug_len {
            let len = c.uleb().ok_or_else(bad)? as usize;
            let mut d = Cursor {
                data: &self.old[..(c.pos + len).min(end)],
                pos: c.pos,
            };
            for &a in &aug[1..] {
                match a {
                    b'R' => cie.encoding = Some(d.u8().ok_or_else(bad)?),
                    b'L' => {
                        d.u8().ok_or_else(bad)?;
                    }
                    b'P' => {
                        let enc = d.u8().ok_or_else(bad)?;
                        let n = encoded_size(enc, self.file.ptr_size()).ok_or_else(|| {
                            self.malformed(start, "unsupported personality encoding")
                        })?;
                        d.skip(n).ok_or_else(bad)?;
                    }
                    b'S' | b'B' | b'G' => {}
                    _ => return Err(self.malformed(start, "unknown CIE augmentation")),
                }
            }
        } else if !aug.is_empty() {
            return Err(Error::Unsupported(format!(
                "{}+{start:#x}: CIE augmentation without 'z'",
                self.name
            )));
        }
        Ok(cie)
    }

    /// The code section and offset an FDE's `pc_begin` relocation names.
    fn pc_begin(&self, at: usize) -> Option<(usize, i64)> {
        self.relocs
            .get(&(at as u64))?
            .iter()
            .find_map(|r| reloc_target(self.file, r))
    }

    /// Checks (and fixes) one FDE whose instructions are `[insns, end)`.
    fn fde(&mut self, start: usize, body: usize, end: usize, cie: Cie) -> Result<()> {
        let ptr = self.file.ptr_size();
        let size = match cie.encoding {
            Some(enc) => encoded_size(enc, ptr)
                .ok_or_else(|| self.malformed(start, "unsupported FDE pointer encoding"))?,
            None => ptr,
        };
        let Some((section, begin)) = self.pc_begin(body) else {
            return Ok(()); // no code in this object: nothing of ours moves
        };
        let Some(map) = self.maps.get(&section) else {
            return Ok(());
        };
        let range_at = body + size;
        let mut c = Cursor {
            data: &self.old[..end],
            pos: range_at,
        };
        let range = c
            .uint(size)
            .ok_or_else(|| self.malformed(start, "truncated FDE"))?;
        if !self.relocated(range_at) {
            // The end stays in front of nops inserted before the next function.
            let end = begin.wrapping_add(range as i64);
            let new_end = if end >= 0 && end as u64 <= map.old_size() {
                map.map_end(end as u64) as i64
            } else {
                map.map_signed(end)
            };
            // The FDE starts at its function's slot when one was inserted.
            let new = new_end - map.map_signed_reference(begin);
            if new != range as i64 {
                let v = new as u64;
                self.bytes[range_at..range_at + size].copy_from_slice(&v.to_le_bytes()[..size]);
                self.fixed += 1;
            }
        }
        if cie.has_aug_len {
            let n = c
                .uleb()
                .ok_or_else(|| self.malformed(start, "truncated FDE"))?;
            c.skip(n as usize)
                .ok_or_else(|| self.malformed(start, "truncated FDE"))?;
        }
        let mut loc = begin;
        let mut pos = c.pos;
        let caf = cie.code_align as i64;
        while pos < end {
            let op = self.old[pos];
            let mut c = Cursor {
                data: &self.old[..end],
                pos: pos + 1,
            };
            let bad = |f: &Self| f.malformed(pos, "truncated call frame instruction");
            // (operand offset, operand size in bytes or 0 for the low 6 bits, delta)
            let advance: Option<(usize, usize, u64)> = match op {
                0x40..=0x7f => Some((pos, 0, u64::from(op & 0x3f))),
                0x02 => Some((pos + 1, 1, c.uint(1).ok_or_else(|| bad(self))?)),
                0x03 => Some((pos + 1, 2, c.uint(2).ok_or_else(|| bad(self))?)),
                0x04 => Some((pos + 1, 4, c.uint(4).ok_or_else(|| bad(self))?)),
                _ => None,
            };
            if let Some((at, width, delta)) = advance {
                let old = (delta as i64).wrapping_mul(caf);
                if !self.relocated(at) {
                    // Rows start at the FDE's start, the slot when one was inserted.
                    let from = if loc == begin {
                        map.map_signed_reference(loc)
                    } else {
                        map.map_signed(loc)
                    };
                    let new = map.map_signed(loc.wrapping_add(old)).wrapping_sub(from);
                    if new != old {
                        self.put_advance(pos, at, width, new, caf)?;
                    }
                }
                loc = loc.wrapping_add(old);
                pos = c.pos;
                continue;
            }
            match op {
                0x80..=0xbf => {
                    c.uleb().ok_or_else(|| bad(self))?;
                }
                0xc0..=0xff | 0x00 | 0x0a | 0x0b => {}
                0x01 => {
                    // DW_CFA_set_loc: an address, relocated in an object.
                    match self.pc_begin(pos + 1) {
                        Some((s, v)) if s == section => loc = v,
                        _ => {
                            return Err(Error::refused(format!(
                                "{}+{pos:#x}: DW_CFA_set_loc without a usable relocation",
                                self.name
                            )))
                        }
                    }
                    c.skip(size).ok_or_else(|| bad(self))?;
                }
                0x06 | 0x07 | 0x08 | 0x0d | 0x0e | 0x2e => {
                    c.uleb().ok_or_else(|| bad(self))?;
                }
                0x05 | 0x09 | 0x0c | 0x14 | 0x2f => {
                    c.uleb().ok_or_else(|| bad(self))?;
                    c.uleb().ok_or_else(|| bad(self))?;
                }
                0x11 | 0x12 | 0x15 => {
                    c.uleb().ok_or_else(|| bad(self))?;
                    c.sleb().ok_or_else(|| bad(self))?;
                }
                0x13 => {
                    c.sleb().ok_or_else(|| bad(self))?;
                }
                0x0f => {
                    let n = c.uleb().ok_or_else(|| bad(self))?;
                    c.skip(n as usize).ok_or_else(|| bad(self))?;
                }
                0x10 | 0x16 => {
                    c.uleb().ok_or_else(|| bad(self))?;
                    let n = c.uleb().ok_or_else(|| bad(self))?;
                    c.skip(n as usize).ok_or_else(|| bad(self))?;
                }
                _ => {
                    return Err(Error::refused(format!(
                    "{}+{pos:#x}: unknown call frame instruction {op:#04x} in an FDE of moved code",
                    self.name
                )))
                }
            }
            pos = c.pos;
        }
        Ok(())
    }

    /// Re-encodes an unrelocated advance with a new distance in bytes.
    fn put_advance(
        &mut self,
        op_at: usize,
        at: usize,
        width: usize,
        new: i64,
        caf: i64,
    ) -> Result<()> {
        let refuse = |why: &str| {
            Error::refused(format!(
                "{}+{op_at:#x}: call frame advance without a relocation {why}",
                self.name
            ))
        };
        if new < 0 || new % caf != 0 {
            return Err(refuse("no longer matches the code"));
        }
        let units = (new / caf) as u64;
        match width {
            0 if units < 0x40 => self.bytes[op_at] = 0x40 | units as u8,
            1 | 2 | 4 if units < 1u64 << (8 * width) => {
                self.bytes[at..at + width].copy_from_slice(&units.to_le_bytes()[..width]);
            }
            _ => return Err(refuse("does not fit its encoding after the rewrite")),
        }
        self.fixed += 1;
        Ok(())
    }

    fn walk(&mut self) -> Result<()> {
        let mut cies: BTreeMap<usize, Cie> = BTreeMap::new();
        let mut pos = 0usize;
        let len = self.bytes.len();
        let mut seen = HashSet::new();
        while pos + 4 <= len {
            let start = pos;
            let length = read_uint(self.old, pos, 4).unwrap_or(0) as usize;
            if length == 0 {
                // A terminator in .eh_frame; in .debug_frame an empty entry.
                pos += 4;
                continue;
            }
            if length == 0xffff_ffff {
                return Err(Error::Unsupported(format!(
                    "{}+{start:#x}: 64-bit DWARF frame entries",
                    self.name
                )));
            }
            let end = pos + 4 + length;
            if end > len || !seen.insert(start) {
                return Err(self.malformed(start, "frame entry runs past the section"));
            }
            let id_at = pos + 4;
            let id = read_uint(self.old, id_at, 4).unwrap_or(0);
            let is_cie = match self.flavour {
                Flavour::Eh => id == 0,
                Flavour::Debug => id == 0xffff_ffff,
            };
            if is_cie {
                let cie = self.parse_cie(start, id_at + 4, end)?;
                cies.insert(start, cie);
            } else {
                let cie_at = match self.flavour {
                    Flavour::Eh => id_at.checked_sub(id as usize),
                    // In an object the CIE pointer is relocated against the section.
                    Flavour::Debug => match self.relocs.get(&(id_at as u64)) {
                        Some(rs) => rs.first().map(|r| {
                            let base = self
                                .file
                                .symbols
                                .get(r.sym as usize)
                                .map_or(0, |s| s.value as i64);
                            base.wrapping_add(r.addend).wrapping_add(id as i64) as usize
                        }),
                        None => Some(id as usize),
                    },
                };
                let cie = cie_at
                    .and_then(|c| cies.get(&c).copied())
                    .ok_or_else(|| self.malformed(start, "FDE without a preceding CIE"))?;
                self.fde(start, id_at + 4, end, cie)?;
            }
            pos = end;
        }
        Ok(())
    }
}

/// Refuses a compressed section (`-gz`) that would have to be read.
pub fn refuse_compressed(sec: &crate::elf::Section<'_>) -> Result<()> {
    if sec.flags & object::elf::SHF_COMPRESSED.0 != 0 {
        return Err(Error::Unsupported(format!(
            "{} is compressed; decompress the debug sections first \
             (`objcopy --decompress-debug-sections`)",
            sec.name
        )));
    }
    Ok(())
}

/// Checks and fixes the CFI of frame section `index` (`.eh_frame` or `.debug_frame`)
/// against the moved code. Returns the new bytes if anything changed, and the number of
/// fixed fields.
pub fn fix_frame_section(
    file: &ElfFile<'_>,
    index: usize,
    relocs: &[Reloc],
    maps: &Maps,
) -> Result<(Option<Vec<u8>>, usize)> {
    let sec = &file.sections[index];
    if maps.is_empty() {
        return Ok((None, 0));
    }
    refuse_compressed(sec)?;
    let flavour = if sec.name == ".eh_frame" {
        Flavour::Eh
    } else {
        Flavour::Debug
    };
    let old = file.section_data(sec)?;
    let mut by_offset: BTreeMap<u64, Vec<Reloc>> = BTreeMap::new();
    for r in relocs {
        by_offset.entry(r.offset).or_default().push(*r);
    }
    let mut f = Frames {
        file,
        name: sec.name,
        flavour,
        old,
        bytes: old.to_vec(),
        relocs: by_offset,
        maps,
        fixed: 0,
    };
    f.walk()?;
    let fixed = f.fixed;
    Ok(((fixed > 0).then_some(f.bytes), fixed))
}
