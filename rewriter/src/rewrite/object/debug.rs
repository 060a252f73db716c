//! Debug information of an object whose code moves.
//!
//! With relaxation the assembler writes every code distance in DWARF as a relocation pair
//! (`ADD`/`SUB`, `SET`): the line table advances with `DW_LNS_fixed_advance_pc` plus an
//! `ADD16`/`SUB16` pair per row, `DW_AT_high_pc` is an `ADD`/`SUB` pair, and so on; moving
//! symbols keeps all of it right. Code assembled without relaxation (hand-written
//! assembly with `as -mno-relax`, clang's `-mno-relax`) advances the line table with plain
//! constants (special opcodes, `DW_LNS_advance_pc`). This module walks every line program
//! and refuses the object if such a constant advance spans moved code: the line table,
//! and most likely the rest of its DWARF, would describe the wrong addresses.

use std::collections::BTreeMap;

use object::elf;

use super::symbols::Maps;
use crate::elf::dwarf::Cursor;
use crate::elf::{ElfFile, Reloc, RelocSection};
use crate::error::{Error, Result};

/// The line-program state that matters here: the address, as a code section and offset.
type Address = Option<(usize, i64)>;

/// Walks the line programs of `.debug_line` (section `index`).
struct LineWalk<'a, 'data> {
    file: &'a ElfFile<'data>,
    data: &'a [u8],
    relocs: BTreeMap<u64, Vec<Reloc>>,
    maps: &'a Maps,
}

impl LineWalk<'_, '_> {
    fn malformed(&self, at: usize) -> Error {
        Error::malformed(format!(
            ".debug_line+{at:#x}: truncated or unknown line program"
        ))
    }

    /// The code location a relocation at `at` names (its first non-`SUB` entry).
    fn target_at(&self, at: usize) -> Option<(usize, i64)> {
        self.relocs.get(&(at as u64))?.iter().find_map(|r| {
            let is_sub = (elf::R_RISCV_SUB8.0..=elf::R_RISCV_SUB64.0).contains(&r.r_type)
                || r.r_type == elf::R_RISCV_SUB6.0;
            if is_sub {
                return None;
            }
            let s = self.file.symbols.get(r.sym as usize)?;
            Some((s.section()?, (s.value as i64).wrapping_add(r.addend)))
        })
    }

    /// A constant advance of `by` bytes from `addr`: refused if the code it spans moved.
    fn constant(&self, at: usize, addr: Address, by: i64) -> Result<Address> {
        let Some((sec, off)) = addr else {
            return Ok(None);
        };
        if by != 0 {
            if let Some(map) = self.maps.get(&sec) {
                // A row at a function entry with an inserted slot is at the slot.
                let moved = map
                    .map_signed(off.wrapping_add(by))
                    .wrapping_sub(map.map_signed_reference(off));
                if moved != by {
                    return Err(Error::refused(format!(
                        ".debug_line+{at:#x}: the line table advances over moved code by a \
                         constant (assembled without relaxation, {}+{off:#x}); strip the debug \
                         information first (`strip --strip-debug`, or build with -g0) or \
                         assemble with relaxation",
                        self.file.sections[sec].name
                    )));
                }
            }
        }
        Ok(Some((sec, off.wrapping_add(by))))
    }

    /// Walks one unit starting at `start`; returns where the next unit starts.
    fn unit(&self, start: usize) -> Result<usize> {
        let bad = || self.malformed(start);
        let mut c = Cursor {
            data: self.data,
            pos: start,
        };
        let length = c.uint(4).ok_or_else(bad)? as usize;
        if length == 0xffff_ffff {
            return Err(Error::Unsupported(
                ".debug_line: 64-bit DWARF units".to_string(),
            ));
        }
        let end = (start + 4)
            .checked_add(length)
            .filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(bad)?;
        let version = c.uint(2).ok_or_else(bad)?;
        if !(2..=5).contains(&version) {
            return Err(Error::Unsupported(format!(
                ".debug_line+{start:#x}: line table version {version}"
            )));
        }
        if version >= 5 {
            c.uint(2).ok_or_else(bad)?; // address_size, segment_selector_size
        }
        let header_length = c.uint(4).ok_or_else(bad)? as usize;
        let program = c.pos + header_length;
        let min_insn = i64::from(c.u8().ok_or_else(bad)?);
        if version >= 4 {
            c.u8().ok_or_else(bad)?; // maximum_operations_per_instruction
        }
        c.u8().ok_or_else(bad)?; // default_is_stmt
        c.u8().ok_or_else(bad)?; // line_base
        let line_range = i64::from(c.u8().ok_or_else(bad)?.max(1));
        let opcode_base = c.u8().ok_or_else(bad)?;
        let lengths: Vec<u8> = (1..opcode_base)
            .map(|_| c.u8())
            .collect::<Option<_>>()
            .ok_or_else(bad)?;
        if program > end {
            return Err(bad());
        }
        let mut c = Cursor {
            data: &self.data[..end],
            pos: program,
        };
        let mut addr: Address = None;
        while c.pos < end {
            let at = c.pos;
            let op = c.u8().ok_or_else(bad)?;
            if op >= opcode_base {
                let by = i64::from(op - opcode_base) / line_range * min_insn;
                addr = self.constant(at, addr, by)?;
                continue;
            }
            match op {
                0 => {
                    let len = c.uleb().ok_or_else(bad)? as usize;
                    let body = c.pos;
                    let sub = c.u8().ok_or_else(bad)?;
                    match sub {
                        1 => addr = None,
                        2 => addr = self.target_at(body + 1),
                        _ => {}
                    }
                    c.pos = body
                        .checked_add(len)
                        .filter(|&p| p <= end)
                        .ok_or_else(bad)?;
                }
                2 => {
                    let by = (c.uleb().ok_or_else(bad)? as i64).wrapping_mul(min_insn);
                    addr = self.constant(at, addr, by)?;
                }
                8 => {
                    let by = (255 - i64::from(opcode_base)) / line_range * min_insn;
                    addr = self.constant(at, addr, by)?;
                }
                9 => {
                    let operand = c.pos;
                    let by = c.uint(2).ok_or_else(bad)? as i64;
                    addr = match self.target_at(operand) {
                        Some(t) => Some(t),
                        None => self.constant(at, addr, by)?,
                    };
                }
                _ => {
                    for _ in 0..lengths[op as usize - 1] {
                        c.uleb().ok_or_else(bad)?;
                    }
                }
            }
        }
        Ok(end)
    }
}

/// Refuses an object whose line table advances over moved code by constants.
pub fn refuse_constant_distances(
    file: &ElfFile<'_>,
    relocs: &[RelocSection],
    maps: &Maps,
) -> Result<()> {
    let Some(line) = file.section_by_name(".debug_line") else {
        return Ok(());
    };
    if maps.is_empty() {
        return Ok(());
    }
    super::frames::refuse_compressed(line)?;
    let mut by_offset: BTreeMap<u64, Vec<Reloc>> = BTreeMap::new();
    for rs in relocs.iter().filter(|rs| rs.target == line.index) {
        for r in &rs.relocs {
            by_offset.entry(r.offset).or_default().push(*r);
        }
    }
    let walk = LineWalk {
        file,
        data: file.section_data(line)?,
        relocs: by_offset,
        maps,
    };
    let mut pos = 0;
    while pos + 4 <= walk.data.len() {
        pos = walk.unit(pos)?;
    }
    Ok(())
}
