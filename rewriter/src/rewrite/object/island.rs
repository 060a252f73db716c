//! Islands for a kernel module rewritten with 4-byte slots (`rewrite mod.ko --slot 4`).
//!
//! A module is loaded somewhere in the kernel's module area, out of `jal` reach of the
//! islands padtrim places in vmlinux, so it carries its own: one for its core text and one
//! for its init text (the loader places each group together), at the end of the group's
//! first executable section with slots,
//!
//! ```text
//! ftrace_jal_island:                       (global symbol, the mark the kernel looks for)
//!     auipc t1, %pcrel_hi(ftrace_jal_caller)      R_RISCV_PCREL_HI20  ftrace_jal_caller
//!     jalr  zero, %pcrel_lo(ftrace_jal_island)(t1) R_RISCV_PCREL_LO12_I ftrace_jal_island
//! ```
//!
//! The module loader resolves `ftrace_jal_caller` (exported only by padtrim's kernel patch,
//! `runtime/kernel/linux-6.12/0002-*`), so a kernel without the patch refuses to load the
//! module (`Unknown symbol`) instead of patching an 8-byte call over a 4-byte slot. The
//! patched loader keeps each `ftrace_jal_island`'s address, and ftrace turns a slot of the
//! module into `jal t0` to an island in reach. PC-relative HI20/LO12 (not `CALL_PLT`): the
//! loader never routes them through a PLT entry, whose code would clobber `t0`.
//!
//! Symbols are appended (globals, after every local: `sh_info` stays true) and so are the
//! relocations; section and symbol indices do not change.

use std::collections::BTreeMap;

use object::elf;

use super::write::Changes;
use crate::elf::fields::ClassFields;
use crate::elf::{ElfFile, Reloc, RelocSection};
use crate::error::{Error, Result};
use crate::scan::ftrace::{JAL_CALLER_SYMBOL, MODULE_ISLAND_SYMBOL as ISLAND_SYMBOL};

/// The bytes of a group of sections one island serves: `jal`'s reach, less room for the
/// island and the alignment the loader adds between sections.
pub const REACH: u64 = (1 << 20) - (64 << 10);

/// `auipc t1, 0`.
const AUIPC_T1: u32 = 0x0000_0317;
/// `jalr zero, 0(t1)`.
const JR_T1: u32 = 0x0003_0067;
/// `c.nop`, to bring a section's end to 4 bytes before its island.
const C_NOP: u16 = 0x0001;

/// True when `file` already has islands (rewritten with `--slot 4` before).
pub fn has_islands(file: &ElfFile<'_>) -> bool {
    file.symbols
        .iter()
        .any(|s| s.name == ISLAND_SYMBOL && s.section().is_some())
}

/// Appends an island to each section in `sections`,
/// relocations against `ftrace_jal_caller` and the island's symbol, and the symbols, into
/// `changes` (which already holds the cut sections, moved relocations and symbol table).
/// `moved` holds the relocation entries of the relocation sections that changed. Returns
/// how many islands were added.
pub fn add(
    file: &ElfFile<'_>,
    relocs: &[RelocSection],
    moved: &BTreeMap<usize, Vec<Reloc>>,
    sections: &[usize],
    changes: &mut Changes,
) -> Result<usize> {
    if sections.is_empty() {
        return Ok(0);
    }
    let symtab = file
        .symtab_index
        .ok_or_else(|| Error::refused("a module without a symbol table"))?;
    let f = ClassFields::of(file.is_64);
    if !file.is_64 {
        return Err(Error::Unsupported(
            "islands for a 32-bit module (the kernel patch is for RV64)".into(),
        ));
    }
    let strtab = file.sections[symtab].link as usize;
    if strtab == 0 || strtab >= file.sections.len() {
        return Err(Error::malformed(".symtab has no string table"));
    }
    let mut syms = match changes.data.get(&symtab) {
        Some(b) => b.clone(),
        None => file.section_data(&file.sections[symtab])?.to_vec(),
    };
    let mut strs = match changes.data.get(&strtab) {
        Some(b) => b.clone(),
        None => file.section_data(&file.sections[strtab])?.to_vec(),
    };
    let name_of = |strs: &mut Vec<u8>, name: &str| -> u32 {
        let at = strs.len() as u32;
        strs.extend_from_slice(name.as_bytes());
        strs.push(0);
        at
    };
    let first_new = syms.len() / f.sym_size;
    // ftrace_jal_caller: undefined, global.
    let caller_name = name_of(&mut strs, JAL_CALLER_SYMBOL);
    push_sym64(&mut syms, caller_name, elf::STT_NOTYPE.0, 0, 0);
    let island_name = name_of(&mut strs, ISLAND_SYMBOL);
    let rvc = file.e_flags & elf::EF_RISCV_RVC.0 != 0;
    let mut added = 0;
    for &index in sections {
        let sec = &file.sections[index];
        if index >= usize::from(elf::SHN_LORESERVE) {
            return Err(Error::Unsupported(format!(
                "{}: an island in section {index} (past the direct section indices)",
                sec.name
            )));
        }
        let rela = relocs.iter().find(|r| r.target == index).ok_or_else(|| {
            Error::Unsupported(format!(
                "{}: no relocation section to add the island's relocations to",
                sec.name
            ))
        })?;
        let mut bytes = match changes.data.get(&index) {
            Some(b) => b.clone(),
            None => file.section_data(sec)?.to_vec(),
        };
        if bytes.len() % 4 == 2 && rvc {
            bytes.extend_from_slice(&C_NOP.to_le_bytes());
        }
        if bytes.len() % 4 != 0 {
            return Err(Error::refused(format!(
                "{}: ends {} bytes past a 4-byte boundary; no room for an aligned island",
                sec.name,
                bytes.len() % 4
            )));
        }
        let at = bytes.len() as u64;
        bytes.extend_from_slice(&AUIPC_T1.to_le_bytes());
        bytes.extend_from_slice(&JR_T1.to_le_bytes());
        let island_sym = (syms.len() / f.sym_size) as u32;
        push_sym64(&mut syms, island_name, elf::STT_NOTYPE.0, index as u16, at);
        let mut entries = match moved.get(&rela.index) {
            Some(e) => e.clone(),
            None => rela.relocs.clone(),
        };
        entries.push(Reloc {
            offset: at,
            r_type: elf::R_RISCV_PCREL_HI20.0,
            sym: first_new as u32,
            addend: 0,
        });
        entries.push(Reloc {
            offset: at + 4,
            r_type: elf::R_RISCV_PCREL_LO12_I.0,
            sym: island_sym,
            addend: 0,
        });
        changes
            .data
            .insert(rela.index, super::write::encode_rela(true, &entries));
        let align = changes.align.get(&index).copied().unwrap_or(sec.align);
        changes.align.insert(index, align.max(4));
        changes.data.insert(index, bytes);
        added += 1;
    }
    changes.data.insert(symtab, syms);
    changes.data.insert(strtab, strs);
    Ok(added)
}

/// Appends a global ELF64 symbol.
fn push_sym64(syms: &mut Vec<u8>, name: u32, kind: u8, shndx: u16, value: u64) {
    syms.extend_from_slice(&name.to_le_bytes());
    syms.push((elf::STB_GLOBAL.0 << 4) | kind);
    syms.push(elf::STV_DEFAULT.0);
    syms.extend_from_slice(&shndx.to_le_bytes());
    syms.extend_from_slice(&value.to_le_bytes());
    syms.extend_from_slice(&0u64.to_le_bytes());
}
