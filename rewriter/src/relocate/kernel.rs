//! Kernel tables that hold code addresses without relocations.
//!
//! A vmlinux links with `--emit-relocs`, but two build steps after the link write tables
//! the relocations no longer describe:
//! - `scripts/sorttable` sorts `__ex_table` (PC-relative entries) and turns its relocations
//!   into `R_RISCV_NONE`;
//! - `scripts/kallsyms` writes `kallsyms_offsets` as plain numbers relative to
//!   `kallsyms_relative_base`.
//!
//! Both are decoded from their bytes here, mapped, and written back. Because the address map
//! never reorders code, both tables stay sorted.

use super::image::Image;
use crate::elf::read_uint;
use crate::error::{Error, Result};

/// `struct exception_table_entry` on RISC-V: `int insn, fixup; short type, data;`.
const EX_ENTRY: u64 = 12;

/// What the kernel table pass changed.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct KernelTables {
    /// `__ex_table` entries rewritten.
    pub ex_table: usize,
    /// `kallsyms_offsets` entries rewritten.
    pub kallsyms: usize,
}

/// Rewrites `__ex_table` and `kallsyms_offsets` of a vmlinux.
pub(crate) fn fix_kernel_tables(img: &mut Image<'_, '_>) -> Result<KernelTables> {
    Ok(KernelTables {
        ex_table: fix_ex_table(img)?,
        kallsyms: fix_kallsyms(img)?,
    })
}

fn refuse(table: &str, why: String) -> Error {
    Error::refused(format!("kernel table {table}: {why}"))
}

/// True if `addr` lies in an allocated executable section of the original file.
fn in_code(img: &Image<'_, '_>, addr: u64) -> bool {
    img.file
        .sections
        .iter()
        .any(|s| s.is_exec() && s.is_alloc() && s.contains(addr))
}

fn fix_ex_table(img: &mut Image<'_, '_>) -> Result<usize> {
    let Some(sec) = img.file.section_by_name("__ex_table") else {
        return Ok(0);
    };
    let (index, base, size) = (sec.index, sec.addr, sec.size);
    if size % EX_ENTRY != 0 {
        return Err(refuse(
            "__ex_table",
            format!("size {size} is not a multiple of {EX_ENTRY}-byte entries"),
        ));
    }
    let old = img.old(index);
    let new_base = img.new_base(index);
    let mut writes = Vec::with_capacity(2 * (size / EX_ENTRY) as usize);
    for i in 0..size / EX_ENTRY {
        for field in [0u64, 4] {
            let off = i * EX_ENTRY + field;
            let rel = read_uint(old, off as usize, 4)
                .ok_or_else(|| refuse("__ex_table", format!("entry {i} is truncated")))?
                as u32 as i32;
            let at = base + off;
            let target = at.wrapping_add(rel as i64 as u64);
            if !in_code(img, target) {
                return Err(refuse(
                    "__ex_table",
                    format!("entry {i} at {at:#x} points to {target:#x}, outside code"),
                ));
            }
            if img.plan.map.is_cut(target) {
                return Err(refuse(
                    "__ex_table",
                    format!("entry {i} at {at:#x} points into a removed pad at {target:#x}"),
                ));
            }
            let new_at = new_base + off;
            let new_rel = img.map(target).wrapping_sub(new_at) as i64;
            let new_rel = i32::try_from(new_rel).map_err(|_| {
                refuse(
                    "__ex_table",
                    format!("entry {i} at {at:#x} no longer fits 32 bits"),
                )
            })?;
            writes.push((new_at, new_rel as u32 as u64));
        }
    }
    for &(at, value) in &writes {
        img.write_new(index, at, 4, value)?;
    }
    Ok(writes.len() / 2)
}

fn fix_kallsyms(img: &mut Image<'_, '_>) -> Result<usize> {
    let file = img.file;
    let find = |name: &str| file.symbol_by_name(name).map(|s| s.value);
    let (Some(offsets), Some(count), Some(base_at)) = (
        find("kallsyms_offsets"),
        find("kallsyms_num_syms"),
        find("kallsyms_relative_base"),
    ) else {
        return Ok(0);
    };
    let read = |addr: u64, size: usize| -> Result<(usize, u64)> {
        let sec = file
            .sections
            .iter()
            .find(|s| s.is_alloc() && !s.is_nobits() && s.contains(addr))
            .ok_or_else(|| refuse("kallsyms", format!("{addr:#x} is in no section")))?;
        let v = read_uint(file.section_data(sec)?, (addr - sec.addr) as usize, size)
            .ok_or_else(|| refuse("kallsyms", format!("read at {addr:#x} is truncated")))?;
        Ok((sec.index, v))
    };
    let (_, n) = read(count, 4)?;
    let (_, base) = read(base_at, file.ptr_size())?;
    let new_base = img.map(base);
    let (sec, _) = read(offsets, 4)?;
    if n > 0 {
        read(offsets + 4 * (n - 1), 4)?;
    }
    let mut writes = Vec::with_capacity(n as usize);
    for i in 0..n {
        let at = offsets + 4 * i;
        let (_, off) = read(at, 4)?;
        // !CONFIG_KALLSYMS_ABSOLUTE_PERCPU (RISC-V): address = base + (u32)offset.
        let addr = base.wrapping_add(off);
        let new = img.map(addr).wrapping_sub(new_base);
        let new = u32::try_from(new).map_err(|_| {
            refuse(
                "kallsyms",
                format!("symbol {i} at {addr:#x} no longer fits a 32-bit offset"),
            )
        })?;
        writes.push((img.map_in(sec, at), u64::from(new)));
    }
    for &(at, value) in &writes {
        img.write_new(sec, at, 4, value)?;
    }
    Ok(writes.len())
}

/// Tables this module rewrites from their bytes.
const DECODED_TABLES: &[&str] = &["__ex_table"];

/// Refuses a file in which a post-link tool erased the relocations of a section (entries of
/// all zeros: offset 0, `R_RISCV_NONE`, addend 0) that is not one of the tables decoded
/// here: its references cannot be proven right.
pub(crate) fn refuse_erased_relocations(
    file: &crate::elf::ElfFile<'_>,
    relocs: &[crate::elf::RelocSection],
) -> Result<()> {
    for rs in relocs {
        let target = &file.sections[rs.target];
        if !target.is_alloc() || DECODED_TABLES.contains(&target.name) {
            continue;
        }
        let erased = rs
            .relocs
            .iter()
            .filter(|r| r.offset == 0 && r.r_type == 0 && r.sym == 0 && r.addend == 0)
            .count();
        if erased > 0 && !target.contains(0) {
            return Err(refuse(
                target.name,
                format!(
                    "{erased} of its relocations were erased after linking (a post-link \
                     tool rewrote it); padtrim cannot prove its references right"
                ),
            ));
        }
    }
    Ok(())
}
