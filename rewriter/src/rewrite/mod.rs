//! The rewrite pipeline: bytes → model → scan → plan → fixed contents → new bytes.

pub mod object;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::elf::{self, reloc_name, ElfFile, FileKind};
use crate::emit::NewSection;
use crate::error::{Error, Result};
use crate::plan::{plan, Layout, PlanOptions};
use crate::relocate::relocate;
use crate::scan::{scan, TableSource};
use crate::timing::phase;
use padtrim_abi::{Descriptor, DESCRIPTOR_MAGIC};

pub use padtrim_abi::{DESCRIPTOR_SYMBOL, MCOUNT_SECTION, TRAMPOLINE_SYMBOL};

/// Most islands a file can need: none when all code is near the trampoline, else one per
/// `ISLAND_REACH` of code plus one per section.
fn island_bound(file: &ElfFile<'_>, trampoline: u64) -> u64 {
    let reach = crate::plan::ISLAND_REACH;
    let exec = || file.sections.iter().filter(|s| s.is_exec() && s.is_alloc());
    if exec().all(|s| s.addr.abs_diff(trampoline) <= reach && s.end().abs_diff(trampoline) <= reach)
    {
        return 0;
    }
    exec().map(|s| s.size / reach + 1).sum()
}

/// Writes each island: `auipc t1, %pcrel_hi(tramp); jalr x0, %pcrel_lo(tramp)(t1)`.
fn write_islands(
    file: &ElfFile<'_>,
    plan: &crate::plan::Plan,
    fixed: &mut crate::relocate::Fixed,
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

/// What to do.
#[derive(Debug, Clone, Copy)]
pub struct RewriteOptions {
    /// Slot bytes kept at each function entry (0, 4, 8 or 16).
    pub slot: u32,
    /// Pad bytes kept before each function entry.
    pub pre: u32,
    /// Layout; `None` picks in-place for a vmlinux and pack otherwise.
    pub layout: Option<Layout>,
    /// Allow slots smaller than a kernel's ftrace patch.
    pub force: bool,
    /// How a linked file is written.
    pub writer: Writer,
}

/// How a linked file's rewrite is written out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Writer {
    /// The input's own bytes placed anew and patched (see `emit_patched`); what that cannot
    /// express falls back to the builder.
    #[default]
    Patched,
    /// `object`'s ELF builder: reads the whole file into its model and re-serialises it
    /// (slower, twice the memory; rebuilds `.dynsym` order and hash tables).
    Builder,
}

/// What a rewrite did, for `--json` and the report.
#[derive(Debug, Clone, Serialize)]
pub struct RewriteStats {
    /// Patch sites rewritten.
    pub sites: usize,
    /// Net bytes removed from executable sections (before free space in-place).
    pub bytes_removed: i64,
    /// Input size.
    pub file_size_before: u64,
    /// Output size.
    pub file_size_after: u64,
    /// Total size of executable sections before.
    pub text_size_before: u64,
    /// Total size of executable sections after (in-place: content bytes, free space excluded).
    pub text_size_after: u64,
    /// Bytes of padding spent keeping slots and aligned code aligned.
    pub alignment_bytes: u64,
    /// PC-relative instructions without relocations that were fixed from their decoding.
    pub unrelocated_fixups: usize,
    /// Free bytes left at section ends (in-place layout).
    pub free_bytes: u64,
    /// The layout used.
    pub layout: Layout,
    /// Slot size used.
    pub slot_bytes: u32,
    /// Relocation type name → count re-resolved.
    pub relocation_types: BTreeMap<String, usize>,
    /// True when the input already had slots of this size: output equals input.
    pub unchanged: bool,
    /// True when the output carries the `__mcount_loc` table.
    pub table: bool,
    /// Trampoline islands added (programs linked with the runtime whose slots are far from
    /// its trampoline).
    pub islands: usize,
    /// The writer that wrote a linked file (none: output equals input, or an object file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writer: Option<Writer>,
    /// Kernel tables rewritten from their bytes (`__ex_table`, kallsyms), in a vmlinux.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_tables: Option<crate::relocate::kernel::KernelTables>,
    /// `--pre` asked for more bytes before functions than some pads have (each of those
    /// kept all it had).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_shortfall: Option<PreShortfall>,
}

/// Pads with fewer bytes before their function than `--pre` asked to keep: those keep all
/// they have (the pre-entry nops come from the M of `-fpatchable-function-entry=N,M`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreShortfall {
    /// Bytes asked for (`--pre`).
    pub requested: u32,
    /// Functions whose pads have fewer bytes than that before them.
    pub functions: usize,
    /// Functions with pads, in all.
    pub of: usize,
    /// Fewest bytes before a function among those pads.
    pub least: u32,
    /// Most bytes before a function among those pads.
    pub most: u32,
}

impl PreShortfall {
    /// The shortfall of `--pre pre` over `sites`, if any pad has fewer bytes before its
    /// function than that.
    pub fn of(sites: &[crate::scan::PatchSite], pre: u32) -> Option<PreShortfall> {
        let mut short = sites
            .iter()
            .filter(|s| s.pre_bytes < pre)
            .map(|s| s.pre_bytes);
        let first = short.next()?;
        let (mut least, mut most, mut functions) = (first, first, 1);
        for b in short {
            least = least.min(b);
            most = most.max(b);
            functions += 1;
        }
        Some(PreShortfall {
            requested: pre,
            functions,
            of: sites.len(),
            least,
            most,
        })
    }
}

/// Rewrites `data`; returns the new file and what was done.
///
/// What padtrim writes, padtrim reads back: the output passes the same checks as any input
/// (a crafted input can lead to a layout whose fault only the output shows), or the rewrite
/// is refused.
pub fn rewrite(data: &[u8], opts: RewriteOptions) -> Result<(Vec<u8>, RewriteStats)> {
    let (out, stats) = rewrite_unread(data, opts)?;
    if !stats.unchanged {
        phase("read back", || read_back(&out))?;
    }
    Ok((out, stats))
}

/// Parses a rewrite's output as any input is parsed; an error refuses the rewrite.
pub fn read_back(out: &[u8]) -> Result<elf::ElfFile<'_>> {
    elf::parse(out).map_err(|e| {
        Error::refused(format!(
            "the rewritten file would be malformed ({e}); nothing written"
        ))
    })
}

/// [`rewrite`] without reading the output back, for a caller that parses it anyway (the
/// command line's verification does): it must call [`read_back`] on an output that is not
/// `unchanged` before using it.
pub fn rewrite_unread(data: &[u8], opts: RewriteOptions) -> Result<(Vec<u8>, RewriteStats)> {
    let mut file = phase("parse", || elf::parse(data))?;
    // The scan and the parse of the relocations are independent: run them side by side
    // (a relocation error is reported only where the relocations are needed, as before).
    let (scan, relocs) = rayon::join(
        || phase("scan", || scan(&file)),
        || phase("relocations", || file.relocation_sections()),
    );
    let mut scan = scan?;
    if scan.source == TableSource::None {
        return Err(Error::Unsupported(
            "no __patchable_function_entries table: nothing to rewrite".into(),
        ));
    }
    if let Some(p) = scan.problems.first() {
        return Err(Error::refused(format!(
            "{} unusable table entries (first: {:#x} {}); check the input with `padtrim report`",
            scan.problems.len(),
            p.address,
            p.problem
        )));
    }
    if let Some(s) = scan
        .sites
        .iter()
        .find(|s| s.nop_kind == crate::scan::NopKind::Nop && opts.pre.min(s.pre_bytes) % 4 != 0)
    {
        return Err(Error::refused(format!(
            "--pre {} would keep half an instruction: the pads are 4-byte nops (function at \
             {:#x}); use a multiple of 4",
            opts.pre, s.func_addr
        )));
    }
    let pre_shortfall = PreShortfall::of(&scan.sites, opts.pre);
    if file.kind == FileKind::Relocatable {
        let (out, mut stats) = crate::rewrite::object::rewrite_relocatable(&file, &scan, opts)?;
        stats.pre_shortfall = pre_shortfall;
        return Ok((out, stats));
    }
    if file.kind == FileKind::Vmlinux && opts.slot < 8 && !opts.force {
        return Err(Error::refused(format!(
            "a {}-byte slot is smaller than the kernel's ftrace patch (8 bytes: auipc t0 + jalr t0, \
             MCOUNT_INSN_SIZE in Linux 6.1); the kernel would overwrite the code after the slot. \
             Use --slot 8, or --force if this kernel patches fewer bytes",
            opts.slot
        )));
    }
    refuse_sizes_past_the_top(&file)?;
    let layout = opts.layout.unwrap_or(if file.kind == FileKind::Vmlinux {
        Layout::InPlace
    } else {
        Layout::Pack
    });
    let text_before: u64 = file
        .sections
        .iter()
        .filter(|s| s.is_exec() && s.is_alloc())
        .map(|s| s.size)
        .sum();
    let base_stats = RewriteStats {
        sites: scan.sites.len(),
        bytes_removed: 0,
        file_size_before: data.len() as u64,
        file_size_after: data.len() as u64,
        text_size_before: text_before,
        text_size_after: text_before,
        alignment_bytes: 0,
        unrelocated_fixups: 0,
        free_bytes: 0,
        layout,
        slot_bytes: opts.slot,
        relocation_types: BTreeMap::new(),
        unchanged: true,
        table: false,
        kernel_tables: None,
        islands: 0,
        writer: None,
        pre_shortfall,
    };
    // Already rewritten to this slot size: nothing to do, byte for byte.
    let done = scan.sites.iter().all(|s| {
        s.pad_bytes - s.pre_bytes <= opts.slot.max(if opts.slot == 4 { 4 } else { 0 })
            && s.pre_bytes <= opts.pre
    }) && (opts.slot != 4
        || scan
            .sites
            .iter()
            .all(|s| s.func_addr % 4 == 0 && s.nop_kind != crate::scan::NopKind::CNop));
    if done {
        return Ok((data.to_vec(), base_stats));
    }
    let mut relocs = relocs?;
    require_emit_relocs(&file, &scan, &relocs)?;

    let ptr = file.ptr_size() as u64;
    let with_table = opts.slot >= 4 && file.kind != FileKind::Vmlinux;
    // Programs that carry the runtime get trampoline islands where slots are out of reach
    // of its trampoline; their addresses follow the slots in the table.
    let trampoline = file
        .symbol_by_name(TRAMPOLINE_SYMBOL)
        .filter(|s| with_table && opts.slot >= 4 && s.section().is_some())
        .map(|s| s.value);
    let island_reserve = trampoline.map_or(0, |t| island_bound(&file, t));
    let table_bytes = if with_table {
        (scan.sites.len() as u64 + island_reserve) * ptr
    } else {
        0
    };
    let options = PlanOptions {
        slot: opts.slot,
        pre: opts.pre,
        layout,
        table_bytes,
        trampoline,
    };
    // The table needs room in the freed bytes; when there is none (small slots gain little
    // over the pad), the file is rewritten without it and the stats say so.
    let (plan, with_table) = match phase("plan", || plan(&file, &scan.sites, &relocs, options)) {
        Err(Error::NoRoomForTable(_)) if with_table => (
            plan(
                &file,
                &scan.sites,
                &relocs,
                PlanOptions {
                    table_bytes: 0,
                    trampoline: None,
                    ..options
                },
            )?,
            false,
        ),
        other => (other?, with_table),
    };
    // A linked file is written by patching its own bytes into place (see emit_patched);
    // only what that cannot express goes through `object`'s builder. Reading the original
    // into the builder needs nothing from the relocation pass: the two run side by side.
    let source = (opts.writer == Writer::Patched)
        .then(|| crate::emit::patched::Source::of(&file))
        .flatten();
    let (fixed, builder) = rayon::join(
        || phase("relocate", || relocate(&file, &scan.sites, &plan, &relocs)),
        || {
            source
                .is_none()
                .then(|| crate::emit::builder::read_builder(&file))
        },
    );
    let (mut fixed, builder) = (fixed?, builder.transpose()?);

    let mut table = None;
    if let (true, Some((addr, offset))) = (with_table, plan.table) {
        let mut slots: Vec<u64> = plan.slots.iter().map(|s| s.slot_addr).collect();
        slots.sort_unstable();
        let mut bytes = Vec::with_capacity(table_bytes as usize);
        for s in slots.iter().chain(&plan.islands) {
            bytes.extend_from_slice(&s.to_le_bytes()[..ptr as usize]);
        }
        bytes.resize(table_bytes as usize, 0);
        if let Some(t) = trampoline {
            write_islands(&file, &plan, &mut fixed, plan.map.map(t))?;
        }
        if layout == Layout::InPlace {
            // The table took the end of a section's free tail: that section now ends there.
            if let Some(m) = plan.map.moves().iter().find(|m| {
                file.sections[m.index].is_exec()
                    && addr >= m.new_addr
                    && addr < m.new_addr + m.old_size
            }) {
                if let Some(bytes) = fixed.data.get_mut(&m.index) {
                    // Refill the free bytes up to the table with whole nops.
                    bytes.truncate(m.new_size as usize);
                    let free = addr - (m.new_addr + m.new_size);
                    crate::relocate::push_nops(bytes, free, file.rvc());
                }
            }
        }
        let after = table_anchor(&file, &plan, addr)?;
        fill_descriptor(
            &file,
            &plan,
            &mut fixed,
            opts.slot,
            addr,
            slots.len() as u64,
            &plan.islands,
        )?;
        table = Some(NewSection {
            name: MCOUNT_SECTION,
            addr,
            offset,
            data: bytes,
            after,
        });
    }
    // Pads removed entirely (`--slot 0 --pre 0`): the table would list entries that now
    // hold code, which a tool trusting it would overwrite. Empty it, and its relocations.
    if opts.slot == 0 && opts.pre == 0 && file.kind != FileKind::Vmlinux {
        empty_patch_table(&file, &relocs, &mut fixed);
    }
    let fixed_kernel = fixed.kernel;
    let direct = source.as_ref().and_then(|src| {
        phase("emit (patched)", || {
            crate::emit::patched::emit_patched(&file, src, &plan, &fixed, table.as_ref())
        })
    });
    let writer = if direct.is_some() {
        Writer::Patched
    } else {
        Writer::Builder
    };
    let out = match direct {
        Some(out) => out,
        None => {
            let builder = match builder {
                Some(b) => b,
                None => crate::emit::builder::read_builder(&file)?,
            };
            let b = phase("emit", || {
                crate::emit::builder::prepare(&file, builder, &plan, &mut fixed, table)
            })?;
            // The writer's output is the peak of the rewrite's memory: free first what
            // only the passes before it needed.
            drop(std::mem::take(&mut file.symbols));
            drop(std::mem::take(&mut relocs));
            drop(std::mem::take(&mut scan.sites));
            phase("emit: write", || crate::emit::builder::write(&file, b))?
        }
    };

    let text_after: u64 = plan
        .map
        .moves()
        .iter()
        .filter(|m| file.sections[m.index].is_exec())
        .map(|m| m.new_size)
        .sum();
    let mut stats = base_stats;
    stats.bytes_removed = text_before as i64 - text_after as i64;
    stats.file_size_after = out.len() as u64;
    stats.text_size_after = text_after;
    stats.alignment_bytes = plan.alignment_bytes;
    stats.unrelocated_fixups = fixed.unrelocated_fixups;
    stats.free_bytes = plan.free.values().sum();
    stats.relocation_types = fixed
        .types
        .iter()
        .map(|(t, n)| (reloc_name(*t), *n))
        .collect();
    stats.unchanged = false;
    stats.table = with_table && plan.table.is_some();
    stats.islands = plan.islands.len();
    stats.writer = Some(writer);
    stats.kernel_tables = (file.kind == FileKind::Vmlinux).then_some(fixed_kernel);
    Ok((out, stats))
}

/// A symbol of the image whose size runs past the top of the address space has no new size
/// that would be true (a corrupt `st_size`): refused, naming the symbol, rather than written
/// with a size that only the verification would catch.
fn refuse_sizes_past_the_top(file: &ElfFile<'_>) -> Result<()> {
    let top = 1u128 << (8 * file.ptr_size());
    let past = file.symbols.iter().find(|s| {
        s.section()
            .is_some_and(|i| file.sections.get(i).is_some_and(|x| x.is_alloc()))
            && u128::from(s.value) + u128::from(s.size) > top
    });
    match past {
        Some(s) => Err(Error::refused(format!(
            "symbol {} at {:#x} claims {:#x} bytes, past the top of the address space",
            s.name, s.value, s.size
        ))),
        None => Ok(()),
    }
}

/// Empties every `__patchable_function_entries` section and its static relocations (the
/// section keeps its address: the loader's RELATIVE words for it land, harmlessly, in the
/// bytes it leaves in its segment).
fn empty_patch_table(
    file: &ElfFile<'_>,
    relocs: &[crate::elf::RelocSection],
    fixed: &mut crate::relocate::Fixed,
) {
    for s in file
        .sections
        .iter()
        .filter(|s| s.name == crate::scan::TABLE_SECTION)
    {
        fixed.data.insert(s.index, Vec::new());
        for rs in relocs.iter().filter(|rs| rs.target == s.index) {
            fixed.relocs.insert(rs.index, Vec::new());
        }
    }
}

/// The original section after which the new table section goes (the one ending at or
/// before the table in the new image, in address order).
fn table_anchor(file: &ElfFile<'_>, plan: &crate::plan::Plan, table_addr: u64) -> Result<usize> {
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
    plan: &crate::plan::Plan,
    fixed: &mut crate::relocate::Fixed,
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

/// Linked inputs must carry their relocations for every executable section with pads.
fn require_emit_relocs(
    file: &ElfFile<'_>,
    scan: &crate::scan::Scan,
    relocs: &[crate::elf::RelocSection],
) -> Result<()> {
    for s in &scan.sites {
        let has = relocs
            .iter()
            .any(|r| r.target == s.section && !file.sections[r.index].is_alloc());
        if !has {
            return Err(Error::refused(format!(
                "section {} has no relocations: link with -Wl,--emit-relocs (-q)",
                file.sections[s.section].name
            )));
        }
    }
    Ok(())
}
