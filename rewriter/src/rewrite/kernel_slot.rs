//! A vmlinux built with padtrim's kernel patch series (`runtime/kernel/`), rewritten with
//! `--slot 4`: each slot's `jal t0` must reach `ftrace_jal_caller`, directly or through an
//! island (`auipc t1; jalr x0, t1`) the plan places within reach, and the kernel finds the
//! islands in its table `riscv_ftrace_islands` (zeros until filled here; a zero ends it).

use crate::elf::{ElfFile, FileKind};
use crate::emit::tables;
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::relocate::Fixed;
use crate::scan::ftrace::{ISLANDS_SYMBOL, JAL_CALLER_SYMBOL};

use super::options::RewriteOptions;

/// The original address of `ftrace_jal_caller`, where the islands jump, when `file` is a
/// patched vmlinux rewritten with 4-byte slots; `None` otherwise.
pub fn jal_caller(file: &ElfFile<'_>, opts: &RewriteOptions) -> Option<u64> {
    if file.kind != FileKind::Vmlinux || opts.slot != 4 {
        return None;
    }
    file.symbol_by_name(ISLANDS_SYMBOL)?;
    file.symbol_by_name(JAL_CALLER_SYMBOL)
        .filter(|s| s.section().is_some())
        .map(|s| s.value)
}

/// Writes the islands' code (jumping to `caller`'s new address) and their new addresses,
/// sorted, into the kernel's island table. Refused when the table is not all zeros in the
/// input or cannot hold every island.
pub fn fill_islands(file: &ElfFile<'_>, plan: &Plan, fixed: &mut Fixed, caller: u64) -> Result<()> {
    tables::write_islands(file, plan, fixed, plan.map.map(caller))?;
    let sym = file
        .symbol_by_name(ISLANDS_SYMBOL)
        .ok_or_else(|| Error::refused(format!("no {ISLANDS_SYMBOL}")))?;
    let sec = sym
        .section()
        .and_then(|i| file.sections.get(i))
        .filter(|s| s.is_alloc() && !s.is_nobits() && !s.is_exec())
        .ok_or_else(|| {
            Error::refused(format!(
                "{ISLANDS_SYMBOL} at {:#x} is not in a data section with contents: this \
                 kernel's patch is not padtrim's",
                sym.value
            ))
        })?;
    let ptr = file.ptr_size() as u64;
    let capacity = sym.size / ptr;
    if plan.islands.len() as u64 > capacity {
        return Err(Error::refused(format!(
            "the kernel needs {} islands to bring every 4-byte slot within jal reach of \
             {JAL_CALLER_SYMBOL}, but {ISLANDS_SYMBOL} holds {capacity}",
            plan.islands.len()
        )));
    }
    let start = usize::try_from(sym.value - sec.addr)
        .map_err(|_| Error::refused(format!("{ISLANDS_SYMBOL} is out of reach")))?;
    let len = (capacity * ptr) as usize;
    let original = file.section_data(sec)?;
    if original
        .get(start..start + len)
        .is_none_or(|t| t.iter().any(|&b| b != 0))
    {
        return Err(Error::refused(format!(
            "{ISLANDS_SYMBOL} is not empty in the input: this kernel was rewritten with 4-byte \
             slots already"
        )));
    }
    let bytes = fixed
        .data
        .entry(sec.index)
        .or_insert_with(|| original.to_vec());
    for (k, at) in plan.islands.iter().enumerate() {
        let off = start + k * ptr as usize;
        bytes
            .get_mut(off..off + ptr as usize)
            .ok_or_else(|| Error::refused(format!("{ISLANDS_SYMBOL} runs past its section")))?
            .copy_from_slice(&at.to_le_bytes()[..ptr as usize]);
    }
    Ok(())
}
