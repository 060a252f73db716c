//! The tables a rewrite adds or fills, in one place: the sorted `__mcount_loc` table of the
//! slots (and the trampoline islands after them), the islands' code, the runtime's
//! descriptor that points at both, and the emptied patch table of a `--slot 0` rewrite.

use padtrim_abi::{Descriptor, DESCRIPTOR_MAGIC, DESCRIPTOR_SYMBOL, MCOUNT_SECTION};

use crate::elf::{ElfFile, RelocSection};
use crate::error::{Error, Result};
use crate::plan::{Layout, Plan, ISLAND_REACH};
use crate::relocate::Fixed;
use crate::scan::TABLE_SECTION;

use super::{NewRecord, NewSection};

/// Most islands a file can need: none when all code is near the trampoline, else one per
/// `ISLAND_REACH` of code plus one per section.
pub fn island_bound(file: &ElfFile<'_>, trampoline: u64) -> u64 {
    let reach = ISLAND_REACH;
    let exec = || file.sections.iter().filter(|s| s.is_exec() && s.is_alloc());
    if exec().all(|s| s.addr.abs_diff(trampoline) <= reach && s.end().abs_diff(trampoline) <= reach)
    {
        return 0;
    }
    exec().map(|s| s.size / reach + 1).sum()
}

/// Writes each island: `auipc t1, %pcrel_hi(tramp); jalr x0, %pcrel_lo(tramp)(t1)`.
pub fn write_islands(
    file: &ElfFile<'_>,
    plan: &Plan,
    fixed: &mut Fixed,
    trampoline: u64,
) -> Result<()> {
    const AUIPC_T1: u32 = 0x0000_0317;
    const JR_T1: u32 = 0x0003_0067;
    for &at in &plan.islands {
        let m = plan
            .map
            .moves()
            .iter()
            .find(|m| {
                file.sections[m.index].is_exec() && at >= m.new_addr && at < m.new_addr + m.new_size
            })
            .ok_or_else(|| Error::refused(format!("island at {at:#x} is in no section")))?;
        let bytes = fixed
            .data
            .get_mut(&m.index)
            .ok_or_else(|| Error::refused(format!("island at {at:#x}: section not rebuilt")))?;
        let (hi, lo) = crate::riscv::hi_lo(trampoline.wrapping_sub(at) as i64)
            .map_err(|e| Error::refused(format!("island at {at:#x}: {e}")))?;
        let a = crate::riscv::with_u_imm(AUIPC_T1, hi)
            .map_err(|e| Error::refused(format!("island at {at:#x}: {e}")))?;
        let j = crate::riscv::with_i_imm(JR_T1, lo)
            .map_err(|e| Error::refused(format!("island at {at:#x}: {e}")))?;
        let off = (at - m.new_addr) as usize;
        let dst = bytes
            .get_mut(off..off + 8)
            .ok_or_else(|| Error::refused(format!("island at {at:#x} runs past its section")))?;
        dst[..4].copy_from_slice(&a.to_le_bytes());
        dst[4..].copy_from_slice(&j.to_le_bytes());
    }
    Ok(())
}

/// Builds the `__mcount_loc` section of `table_bytes` bytes at the plan's table place
/// (`addr`, `offset`): the slots' addresses sorted, then the islands', then zeros. Writes the
/// islands' code (when the program carries the trampoline at `trampoline`), gives the free
/// tail before an in-place table back to its section as nops, and fills the runtime's
/// descriptor.
#[allow(clippy::too_many_arguments)]
pub fn mcount_table(
    file: &ElfFile<'_>,
    plan: &Plan,
    fixed: &mut Fixed,
    (addr, offset): (u64, u64),
    table_bytes: u64,
    trampoline: Option<u64>,
    layout: Layout,
    slot: u32,
) -> Result<NewSection> {
    let ptr = file.ptr_size() as u64;
    let slots = sorted_slots(plan);
    let mut bytes = Vec::with_capacity(table_bytes as usize);
    for s in slots.iter().chain(&plan.islands) {
        bytes.extend_from_slice(&s.to_le_bytes()[..ptr as usize]);
    }
    bytes.resize(table_bytes as usize, 0);
    if let Some(t) = trampoline {
        write_islands(file, plan, fixed, plan.map.map(t))?;
    }
    if layout == Layout::InPlace {
        // The table took the end of a section's free tail: that section now ends there.
        if let Some(m) = plan.map.moves().iter().find(|m| {
            file.sections[m.index].is_exec() && addr >= m.new_addr && addr < m.new_addr + m.old_size
        }) {
            if let Some(bytes) = fixed.data.get_mut(&m.index) {
                // Refill the free bytes up to the table with whole nops.
                bytes.truncate(m.new_size as usize);
                let free = addr - (m.new_addr + m.new_size);
                crate::relocate::push_nops(bytes, free, file.rvc());
            }
        }
    }
    let after = table_anchor(file, plan, addr)?;
    fill_descriptor(
        file,
        plan,
        fixed,
        slot,
        addr,
        slots.len() as u64,
        &plan.islands,
    )?;
    Ok(NewSection {
        name: MCOUNT_SECTION,
        addr,
        offset,
        data: bytes,
        after,
    })
}

/// Every slot's address (the compacted pads' and the inserted ones), sorted: the first
/// entries of `__mcount_loc`.
fn sorted_slots(plan: &Plan) -> Vec<u64> {
    let mut slots: Vec<u64> = plan.slots.iter().map(|s| s.slot_addr).collect();
    slots.extend_from_slice(&plan.inserted);
    slots.sort_unstable();
    slots
}

/// The `__patchable_function_entries` of a `rewrite --insert` output: one pointer-sized
/// entry per slot (inserted, and a mixed input's compacted pads), its address (the
/// function's new address: slots have nothing before the function), sorted, so the output
/// carries the table a compacted file keeps (`verify` proves it lists exactly the slots of
/// `__mcount_loc`).
///
/// Not allocated (`SHT_PROGBITS`, no `SHF_ALLOC`, no address, after every other section):
/// it holds link-time addresses for the tools that read the file (padtrim's own `verify`,
/// readelf, objdump), never changes the loaded image, and needs no room in a segment. An
/// allocated table would need a place in a load segment (moving what follows) and, in a PIE
/// or shared object, one `R_RISCV_RELATIVE` per entry in a dynamic relocation table that
/// cannot grow in place; nothing loaded reads it: the runtime takes its slots from
/// `__mcount_loc` through the descriptor. A mixed input's own (allocated) table stays as a
/// compaction leaves it, its entries moved to the pads' slots; `scan` ignores a
/// non-allocated table in a linked file and reads an inserted output's `__mcount_loc`.
pub fn entries_record(file: &ElfFile<'_>, plan: &Plan) -> NewRecord {
    let ptr = file.ptr_size();
    let slots = sorted_slots(plan);
    let mut data = Vec::with_capacity(slots.len() * ptr);
    for s in &slots {
        data.extend_from_slice(&s.to_le_bytes()[..ptr]);
    }
    NewRecord {
        name: TABLE_SECTION,
        data,
        align: ptr as u64,
    }
}

/// Empties every `__patchable_function_entries` section and its static relocations (the
/// section keeps its address: the loader's RELATIVE words for it land, harmlessly, in the
/// bytes it leaves in its segment).
pub fn empty_patch_table(file: &ElfFile<'_>, relocs: &[RelocSection], fixed: &mut Fixed) {
    for s in file.sections.iter().filter(|s| s.name == TABLE_SECTION) {
        fixed.data.insert(s.index, Vec::new());
        for rs in relocs.iter().filter(|rs| rs.target == s.index) {
            fixed.relocs.insert(rs.index, Vec::new());
        }
    }
}

/// The original section after which the new table section goes (the one ending at or
/// before the table in the new image, in address order).
fn table_anchor(file: &ElfFile<'_>, plan: &Plan, table_addr: u64) -> Result<usize> {
    plan.map
        .moves()
        .iter()
        .filter(|m| {
            file.sections[m.index].is_alloc()
                && m.new_addr + m.new_size <= table_addr
                && m.new_size > 0
        })
        .max_by_key(|m| (m.new_addr + m.new_size, m.index))
        .map(|m| m.index)
        .ok_or_else(|| Error::refused("cannot find where the __mcount_loc table goes"))
}

/// Fills the runtime's descriptor, if the program carries the runtime.
fn fill_descriptor(
    file: &ElfFile<'_>,
    plan: &Plan,
    fixed: &mut Fixed,
    slot: u32,
    table_addr: u64,
    count: u64,
    islands: &[u64],
) -> Result<()> {
    let Some(sym) = file.symbol_by_name(DESCRIPTOR_SYMBOL) else {
        return Ok(());
    };
    let Some(sec) = sym.section() else {
        return Ok(());
    };
    let section = &file.sections[sec];
    if section.is_nobits() || section.is_exec() {
        return Err(Error::refused(format!(
            "{DESCRIPTOR_SYMBOL} must be in initialised data, not {}",
            section.name
        )));
    }
    let new_addr = plan.map.map(sym.value);
    let new_base = plan.map.section(sec).map_or(section.addr, |m| m.new_addr);
    let bytes = fixed
        .data
        .entry(sec)
        .or_insert_with(|| file.section_data(section).unwrap_or(&[]).to_vec());
    let off = (new_addr - new_base) as usize;
    let desc = bytes
        .get_mut(off..off + Descriptor::SIZE)
        .ok_or_else(|| Error::refused(format!("{DESCRIPTOR_SYMBOL} runs past its section")))?;
    let Some(mut filled) = Descriptor::from_bytes(desc).filter(|d| d.magic == DESCRIPTOR_MAGIC)
    else {
        return Err(Error::refused(format!(
            "{DESCRIPTOR_SYMBOL} has the wrong magic: runtime version mismatch?"
        )));
    };
    filled.slot_size = slot;
    filled.self_addr = new_addr;
    filled.table_addr = table_addr;
    filled.table_count = count;
    filled.islands_addr = if islands.is_empty() {
        0
    } else {
        table_addr + count * file.ptr_size() as u64
    };
    filled.islands_count = islands.len() as u64;
    desc.copy_from_slice(&filled.to_bytes());
    Ok(())
}
