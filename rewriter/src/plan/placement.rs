//! Laying out the new image: the edits inside each executable section (pads cut, slots and
//! aligned code padded into place) and where every allocated section and segment goes.

use std::collections::BTreeMap;

use object::elf;

use super::{AddressMap, Edit, SectionMove, SlotLayout};
use crate::elf::{ElfFile, RelocSection};
use crate::error::{Error, Result};
use crate::riscv::{insn_len, C_NOP, NOP};
use crate::scan::PatchSite;

/// Where freed bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// Shrink executable sections and move everything after them: smaller file and image.
    Pack,
    /// Keep every section address; freed bytes gather, as nops, at each section's end.
    InPlace,
}

/// What the planner needs to know besides the file.
#[derive(Debug, Clone, Copy)]
pub struct PlanOptions {
    /// Slot bytes kept at each function symbol (0, 4, 8 or 16).
    pub slot: u32,
    /// Pad bytes kept before each function symbol.
    pub pre: u32,
    /// Where freed bytes go.
    pub layout: Layout,
    /// Bytes to reserve at the end of the executable part for the `__mcount_loc` table.
    pub table_bytes: u64,
    /// Original address of the runtime's trampoline: slots out of `jal` reach of it get a
    /// trampoline island in front of their function.
    pub trampoline: Option<u64>,
}

/// Bytes of one trampoline island: `auipc t1, hi; jalr x0, lo(t1)`.
pub const ISLAND_BYTES: u64 = 8;
/// Largest distance between a slot and the island (or trampoline) it uses. `jal` reaches
/// ±1 MiB; the rest is margin for code that moves while the plan is made.
pub const ISLAND_REACH: u64 = 0xC_0000;

/// One site in the new image.
#[derive(Debug, Clone, Copy)]
pub struct PlannedSlot {
    /// The original site index in the scan.
    pub site: usize,
    /// How its pad is cut.
    pub cut: SlotLayout,
    /// New address of the function symbol (the slot start).
    pub slot_addr: u64,
    /// New table entry: first kept pad byte.
    pub entry: u64,
}

/// A point in code that must keep an alignment, found in the input.
#[derive(Debug, Clone, Copy)]
struct AlignPoint {
    /// The original address that must be aligned.
    at: u64,
    /// Required alignment (power of two).
    align: u64,
    /// Start of existing nop padding in front of `at` that may be resized.
    pad_start: u64,
}

/// The plan for the whole image.
#[derive(Debug)]
pub struct Plan {
    /// Where every original address goes.
    pub map: AddressMap,
    /// One per usable site, in scan order.
    pub slots: Vec<PlannedSlot>,
    /// Bytes spent on keeping slots and aligned code aligned.
    pub alignment_bytes: u64,
    /// New file offset of every allocated section (by section index).
    pub offsets: BTreeMap<usize, u64>,
    /// Address and file offset reserved for the `__mcount_loc` table, if any.
    pub table: Option<(u64, u64)>,
    /// Free bytes at the end of each executable section (in-place layout).
    pub free: BTreeMap<usize, u64>,
    /// New (vaddr, offset, filesz, memsz) per program header index.
    pub segments: Vec<(u64, u64, u64, u64)>,
    /// New addresses of the trampoline islands, sorted.
    pub islands: Vec<u64>,
}

/// Minimum instruction size of the file: 2 with the C extension, else 4.
fn min_insn(file: &ElfFile<'_>) -> u64 {
    if file.rvc() {
        2
    } else {
        4
    }
}

/// Plans the rewrite of `sites` (sorted by section and entry).
pub fn plan(
    file: &ElfFile<'_>,
    sites: &[PatchSite],
    relocs: &[RelocSection],
    opts: PlanOptions,
) -> Result<Plan> {
    let mut moves_exec: BTreeMap<usize, Vec<Edit>> = BTreeMap::new();
    let mut slots = Vec::with_capacity(sites.len());
    let mut alignment_bytes = 0u64;
    // (section, offset of the island in the section's new bytes)
    let mut islands: Vec<(usize, u64)> = Vec::new();

    // Alignment points per section, from R_RISCV_ALIGN and from function alignment.
    let mut points: BTreeMap<usize, Vec<AlignPoint>> = BTreeMap::new();
    for rs in relocs
        .iter()
        .filter(|r| file.sections[r.target].is_exec() && !file.sections[r.index].is_alloc())
    {
        let sec = &file.sections[rs.target];
        for r in rs
            .relocs
            .iter()
            .filter(|r| r.r_type == elf::R_RISCV_ALIGN.0)
        {
            // Checked: a corrupt addend (negative, or near 2^64) overflows.
            let bad = || {
                Error::refused(format!(
                    "R_RISCV_ALIGN at {:#x} in {} asks for {} bytes of padding",
                    r.offset, sec.name, r.addend
                ))
            };
            let align = (r.addend as u64)
                .checked_add(min_insn(file))
                .and_then(u64::checked_next_power_of_two)
                .ok_or_else(bad)?;
            let start = if file.kind.is_linked() {
                r.offset
            } else {
                sec.addr.checked_add(r.offset).ok_or_else(bad)?
            };
            let at = start.checked_next_multiple_of(align).ok_or_else(bad)?;
            points.entry(rs.target).or_default().push(AlignPoint {
                at,
                align,
                pad_start: start,
            });
        }
    }
    for (section, align) in file.function_alignment() {
        if align > min_insn(file) {
            for s in file
                .symbols
                .iter()
                .filter(|s| s.kind == elf::STT_FUNC.0 && s.section() == Some(section))
            {
                points.entry(section).or_default().push(AlignPoint {
                    at: s.value,
                    align,
                    pad_start: s.value,
                });
            }
        }
    }

    let mut by_section: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, s) in sites.iter().enumerate() {
        by_section.entry(s.section).or_default().push(i);
    }
    let exec_sections: Vec<usize> = file
        .sections
        .iter()
        .filter(|s| s.is_exec() && (s.is_alloc() || !file.kind.is_linked()) && !s.is_nobits())
        .map(|s| s.index)
        .collect();
    for &section in &exec_sections {
        let sec = &file.sections[section];
        let data = file.section_data(sec)?;
        let mut pts = points.remove(&section).unwrap_or_default();
        pts.sort_by_key(|p| p.at);
        let site_ids = by_section.remove(&section).unwrap_or_default();
        let (edits, placed, spent, isl) =
            section_edits(file, sec.addr, data, sites, &site_ids, &pts, opts)?;
        alignment_bytes += spent;
        slots.extend(placed);
        islands.extend(isl);
        moves_exec.insert(section, edits);
    }
    slots.sort_by_key(|s| s.site);
    let mut plan = place_sections(file, moves_exec, slots, alignment_bytes, opts)?;
    // Island addresses were section-relative guesses until the sections were placed.
    plan.islands = islands
        .into_iter()
        .map(|(sec, off)| {
            plan.map
                .section(sec)
                .map_or(off, |m| m.new_addr.wrapping_add(off))
        })
        .collect();
    plan.islands.sort_unstable();
    if let Some(tramp) = opts.trampoline {
        check_island_reach(&plan, plan.map.map(tramp))?;
    }
    Ok(plan)
}

/// Every slot must have the trampoline or an island within `jal` reach.
fn check_island_reach(plan: &Plan, trampoline: u64) -> Result<()> {
    let within = |a: u64, b: u64| a.abs_diff(b) < (1 << 20) - 4;
    for s in &plan.slots {
        let i = plan.islands.partition_point(|&x| x < s.slot_addr);
        let near = within(s.slot_addr, trampoline)
            || i.checked_sub(1)
                .and_then(|j| plan.islands.get(j))
                .is_some_and(|&x| within(s.slot_addr, x))
            || plan.islands.get(i).is_some_and(|&x| within(s.slot_addr, x));
        if !near {
            return Err(Error::refused(format!(
                "the slot at {:#x} has neither the trampoline nor an island within jal reach",
                s.slot_addr
            )));
        }
    }
    Ok(())
}

/// A unit of work in a section walk, in address order.
enum Step {
    Site(usize),
    Align(AlignPoint),
}

/// Computes the edits of one executable section: cut pads, pad slots and aligned points.
fn section_edits(
    file: &ElfFile<'_>,
    base: u64,
    data: &[u8],
    sites: &[PatchSite],
    site_ids: &[usize],
    points: &[AlignPoint],
    opts: PlanOptions,
) -> Result<(Vec<Edit>, Vec<PlannedSlot>, u64, Vec<(usize, u64)>)> {
    let mut steps: Vec<(u64, u8, Step)> = Vec::with_capacity(site_ids.len() + points.len());
    for &i in site_ids {
        steps.push((sites[i].entry, 1, Step::Site(i)));
    }
    for p in points {
        // A function alignment point at a site is folded into the site.
        if site_ids.iter().any(|&i| sites[i].func_addr == p.at) && p.pad_start == p.at {
            continue;
        }
        steps.push((p.pad_start, 0, Step::Align(*p)));
    }
    steps.sort_by_key(|(a, k, _)| (*a, *k));

    let unit = min_insn(file);
    let mut edits = Vec::new();
    let mut placed = Vec::new();
    let mut delta: i64 = 0;
    let mut spent = 0u64;
    let func_align: BTreeMap<u64, u64> = points
        .iter()
        .filter(|p| p.pad_start == p.at)
        .map(|p| (p.at, p.align))
        .collect();
    let mut islands = Vec::new();
    // New address of this section's last island.
    let mut last_island: Option<u64> = None;
    for (_, _, step) in steps {
        match step {
            Step::Site(i) => {
                let site = &sites[i];
                let cut = SlotLayout::for_site(site, opts.slot, opts.pre);
                if let Some(tramp) = opts.trampoline.filter(|_| opts.slot >= 4) {
                    let here = site.entry.wrapping_add(delta as u64);
                    let far = site.entry.abs_diff(tramp) > ISLAND_REACH;
                    if far && last_island.is_none_or(|l| here.wrapping_sub(l) > ISLAND_REACH) {
                        // In front of the pad: 4-byte aligned, reached by what follows.
                        let align = (4 - here % 4) % 4;
                        if align % unit != 0 {
                            return Err(Error::refused(format!(
                                "cannot align a trampoline island at {:#x}",
                                site.entry
                            )));
                        }
                        edits.push(Edit::Insert {
                            at: site.entry,
                            len: align + ISLAND_BYTES,
                        });
                        let at = here.wrapping_add(align);
                        islands.push((site.section, at.wrapping_sub(base)));
                        last_island = Some(at);
                        delta += (align + ISLAND_BYTES) as i64;
                        spent += align;
                    }
                }
                let keep_from = site.entry.wrapping_add(u64::from(cut.cut_pre));
                let mut align = 4;
                let residue = cut.required_residue(site.func_addr);
                if let Some(&fa) = func_align.get(&site.func_addr) {
                    align = align.max(fa);
                }
                let residue = if align > 4 { 0 } else { residue };
                // Where the symbol would land without padding.
                let new_sym = (site.func_addr as i64)
                    .wrapping_add(delta)
                    .wrapping_sub(i64::from(cut.cut_pre));
                let pad = (residue as i64)
                    .wrapping_sub(new_sym)
                    .rem_euclid(align as i64) as u64;
                if pad % unit != 0 {
                    return Err(Error::refused(format!(
                        "cannot align the slot of the function at {:#x}: needs {pad} bytes of padding",
                        site.func_addr
                    )));
                }
                spent += pad;
                // Net edit in front of the kept bytes: reuse cut nops as padding when we can.
                let pre_cut = u64::from(cut.cut_pre);
                if pre_cut >= pad {
                    if pre_cut > pad {
                        edits.push(Edit::Cut {
                            at: site.entry,
                            len: pre_cut - pad,
                        });
                    }
                } else {
                    if pre_cut > 0 {
                        edits.push(Edit::Cut {
                            at: site.entry,
                            len: pre_cut,
                        });
                    }
                    edits.push(Edit::Insert {
                        at: keep_from,
                        len: pad - pre_cut,
                    });
                }
                delta += pad as i64 - pre_cut as i64;
                let slot_addr = site.func_addr.wrapping_add(delta as u64);
                let entry = slot_addr.wrapping_sub(u64::from(cut.keep_pre));
                if cut.cut_post > 0 {
                    edits.push(Edit::Cut {
                        at: site.func_addr.wrapping_add(u64::from(cut.keep_slot)),
                        len: u64::from(cut.cut_post),
                    });
                    delta -= i64::from(cut.cut_post);
                }
                placed.push(PlannedSlot {
                    site: i,
                    cut,
                    slot_addr,
                    entry,
                });
            }
            Step::Align(p) => {
                // Existing padding [pad_start, at) is resized if it is all nops; otherwise
                // it stays and padding is only inserted in front of `at`.
                let nops = (p.pad_start..p.at).step_by(unit as usize).all(|off| {
                    let o = off.wrapping_sub(base) as usize;
                    is_nop_at(data, o)
                });
                let (start, old_pad) = if nops {
                    (p.pad_start, p.at - p.pad_start)
                } else {
                    (p.at, 0)
                };
                let new_start = (start as i64).wrapping_add(delta);
                let need = new_start.wrapping_neg().rem_euclid(p.align as i64) as u64;
                if need % unit != 0 {
                    return Err(Error::refused(format!(
                        "cannot keep the alignment of the code at {:#x}",
                        p.at
                    )));
                }
                if need < old_pad {
                    edits.push(Edit::Cut {
                        at: start,
                        len: old_pad - need,
                    });
                } else if need > old_pad {
                    edits.push(Edit::Insert {
                        at: p.at,
                        len: need - old_pad,
                    });
                }
                delta += need as i64 - old_pad as i64;
                spent += need;
            }
        }
    }
    // Generated in address order already; a stable sort keeps an insert before a cut at
    // the same address.
    edits.sort_by_key(|e| e.at());
    Ok((edits, placed, spent, islands))
}

/// True if a `c.nop` or `nop` starts at offset `o`.
fn is_nop_at(data: &[u8], o: usize) -> bool {
    let Some(b) = data.get(o..o + 2) else {
        return false;
    };
    let parcel = u16::from_le_bytes([b[0], b[1]]);
    parcel == C_NOP
        || (insn_len(parcel) == 4
            && data
                .get(o..o + 4)
                .is_some_and(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) == NOP))
}

/// How far `from` is above `to`, or a refusal when the two are too far apart for a signed
/// distance (addresses a hostile header put at opposite ends of the space).
fn distance(from: u64, to: u64, section: &str) -> Result<i64> {
    i64::try_from(i128::from(from) - i128::from(to)).map_err(|_| {
        Error::refused(format!(
            "section {section}: its new place ({to:#x}) is too far from its old one ({from:#x})"
        ))
    })
}

/// Places every allocated section (and the table) and derives the new program headers.
fn place_sections(
    file: &ElfFile<'_>,
    mut exec_edits: BTreeMap<usize, Vec<Edit>>,
    slots: Vec<PlannedSlot>,
    alignment_bytes: u64,
    opts: PlanOptions,
) -> Result<Plan> {
    let ptr = file.ptr_size() as u64;
    let page = file
        .segments
        .iter()
        .filter(|s| s.p_type == elf::PT_LOAD.0)
        .map(|s| s.align)
        .max()
        .unwrap_or(0x1000)
        .max(1);
    let mut sections: Vec<_> = file
        .sections
        .iter()
        .filter(|s| {
            if file.kind.is_linked() {
                s.is_alloc()
            } else {
                s.size > 0 || s.is_exec()
            }
        })
        .collect();
    sections.sort_by_key(|s| (s.addr, s.index));
    let is_tbss =
        |s: &crate::elf::Section<'_>| s.is_nobits() && s.flags & u64::from(elf::SHF_TLS.0) != 0;
    let load_of = |addr: u64| {
        file.segments.iter().position(|g| {
            g.p_type == elf::PT_LOAD.0
                && addr >= g.vaddr
                && addr < g.vaddr.saturating_add(g.memsz.max(1))
        })
    };
    // The load segment after whose last section the table goes: the one with the last
    // executable section.
    let table_segment = sections
        .iter()
        .filter(|s| s.is_exec())
        .last()
        .and_then(|s| load_of(s.addr));
    let last_in_table_segment = sections
        .iter()
        .filter(|s| load_of(s.addr) == table_segment && table_segment.is_some())
        .map(|s| s.index)
        .last();

    let mut moves = Vec::with_capacity(sections.len());
    let mut offsets = BTreeMap::new();
    let mut free = BTreeMap::new();
    let mut table = None;
    // How far the current section moves down (negative: up, after a section grew).
    let mut shift: i64 = 0;
    // New end address, new end file offset and old end address of the last section placed.
    let mut prev_end = (0u64, 0u64, 0u64);
    let mut current_segment = None;
    for sec in &sections {
        if !file.kind.is_linked() {
            // Relocatable: every section starts at 0; only sizes change.
            let edits = exec_edits.remove(&sec.index).unwrap_or_default();
            moves.push(SectionMove::edited(sec.index, 0, sec.size, 0, edits));
            continue;
        }
        let edits = exec_edits.remove(&sec.index);
        if opts.layout == Layout::InPlace {
            let mv = match edits {
                Some(e) => SectionMove::edited(sec.index, sec.addr, sec.size, sec.addr, e),
                None => SectionMove::block(sec.index, sec.addr, sec.size, sec.addr),
            };
            if mv.new_size > sec.size {
                return Err(Error::refused(format!(
                    "in-place layout: section {} would grow by {} bytes (alignment padding exceeds the freed pads)",
                    sec.name,
                    mv.new_size - sec.size
                )));
            }
            if sec.is_exec() {
                free.insert(sec.index, sec.size - mv.new_size);
            }
            offsets.insert(sec.index, sec.offset);
            moves.push(mv);
            continue;
        }
        let segment = load_of(sec.addr);
        if segment != current_segment && current_segment.is_some() && !is_tbss(sec) {
            if shift >= 0 {
                // Later segments move by whole pages: file offsets stay congruent with
                // addresses, RELRO stays page-aligned, and no two segments share a page.
                shift -= shift % page as i64;
            } else {
                // The previous segment grew (alignment of small pads cost more than they
                // freed): later segments stay put when the growth fits the gap before them.
                let (end_addr, end_off, old_end) = prev_end;
                if end_addr > old_end.next_multiple_of(page) || end_off > sec.offset {
                    return Err(Error::refused(format!(
                        "the segment before section {} grows by {} bytes, more than the gap \
                         before it; pack layout cannot place it",
                        sec.name, -shift
                    )));
                }
                shift = 0;
            }
        }
        if !is_tbss(sec) {
            current_segment = segment;
        }
        let align = sec.align.max(1) as i64;
        // Whole multiples of the alignment, rounded toward moving less down / more up.
        let s = if shift >= 0 {
            shift - shift % align
        } else {
            -((shift.unsigned_abs().next_multiple_of(align as u64)) as i64)
        };
        let new_addr = sec.addr.wrapping_sub(s as u64);
        let mv = match edits {
            Some(e) => SectionMove::edited(sec.index, sec.addr, sec.size, new_addr, e),
            None => SectionMove::block(sec.index, sec.addr, sec.size, new_addr),
        };
        if !is_tbss(sec) {
            let new_end = new_addr.wrapping_add(mv.new_size);
            shift = distance(sec.addr.wrapping_add(sec.size), new_end, sec.name)?;
            if Some(sec.index) == last_in_table_segment && opts.table_bytes > 0 {
                let at = new_end.checked_next_multiple_of(ptr).ok_or_else(|| {
                    Error::refused(format!("section {} ends at the top of the space", sec.name))
                })?;
                let end = at.wrapping_add(opts.table_bytes);
                shift = distance(sec.addr.wrapping_add(sec.size), end, sec.name)?;
                if shift < 0 {
                    return Err(Error::NoRoomForTable(
                        "no room for the __mcount_loc table: the freed bytes do not cover it"
                            .to_string(),
                    ));
                }
                table = Some((at, 0)); // file offset fixed below
            }
            let new_off = sec.offset.wrapping_sub(s as u64);
            prev_end = (
                new_end,
                if sec.is_nobits() {
                    new_off
                } else {
                    new_off.wrapping_add(mv.new_size)
                },
                sec.addr.wrapping_add(sec.size),
            );
        }
        // Wrapping: a NOBITS section's offset is not checked against the file (it has no
        // bytes there), and a hostile one may sit anywhere; it is only carried over.
        offsets.insert(
            sec.index,
            sec.offset.wrapping_add(new_addr).wrapping_sub(sec.addr),
        );
        // .tbss takes no address space of its own: addresses there belong to what follows.
        moves.push(if is_tbss(sec) { mv.overlay() } else { mv });
    }
    if let Some((at, _)) = table {
        // Fix the table's file offset: same displacement as the section before it.
        if let Some(idx) = last_in_table_segment {
            let sec = &file.sections[idx];
            let new_addr = moves
                .iter()
                .find(|m| m.index == idx)
                .map_or(sec.addr, |m| m.new_addr);
            let off = offsets[&idx].wrapping_add(at.wrapping_sub(new_addr));
            table = Some((at, off));
        }
    }
    if opts.layout == Layout::InPlace && opts.table_bytes > 0 {
        // The table takes the free tail of the executable section with the most room.
        let (&idx, _) = free
            .iter()
            .filter(|(&i, &f)| f >= opts.table_bytes + ptr && file.sections[i].is_alloc())
            .max_by_key(|(_, &f)| f)
            .ok_or_else(|| {
                Error::NoRoomForTable(
                    "in-place layout: no executable section has room for the __mcount_loc table"
                        .to_string(),
                )
            })?;
        let sec = &file.sections[idx];
        let mv = moves.iter().find(|m| m.index == idx).expect("moved");
        // At the very end of the free tail, so that the section can end where the table
        // starts: the free nops stay inside it, and no two sections overlap.
        let at = sec.addr.wrapping_add(sec.size - opts.table_bytes) / ptr * ptr;
        table = Some((at, sec.offset.wrapping_add(at.wrapping_sub(sec.addr))));
        *free.get_mut(&idx).expect("free") = at.wrapping_sub(sec.addr.wrapping_add(mv.new_size));
    }
    let map = AddressMap::new(moves, file.sections.len());
    let segments = file
        .segments
        .iter()
        .map(|g| {
            if g.p_type == elf::PT_LOAD.0 && file.kind.is_linked() {
                let members: Vec<_> = sections
                    .iter()
                    .filter(|s| load_of(s.addr) == load_of(g.vaddr) && !is_tbss(s))
                    .collect();
                let Some(first) = members.first() else {
                    return (g.vaddr, g.offset, g.filesz, g.memsz);
                };
                let mv = map.section(first.index).expect("placed");
                let d = first.addr.wrapping_sub(mv.new_addr);
                let vaddr = g.vaddr.wrapping_sub(d);
                let mut mem_end = vaddr;
                let mut file_end = vaddr;
                for s in &members {
                    let m = map.section(s.index).expect("placed");
                    let size = if opts.layout == Layout::InPlace {
                        s.size
                    } else {
                        m.new_size
                    };
                    mem_end = mem_end.max(m.new_addr.saturating_add(size));
                    if !s.is_nobits() {
                        file_end = file_end.max(m.new_addr.saturating_add(size));
                    }
                }
                if let Some((at, _)) = table {
                    if load_of(g.vaddr) == table_segment && opts.layout == Layout::Pack {
                        mem_end = mem_end.max(at.saturating_add(opts.table_bytes));
                        file_end = file_end.max(at.saturating_add(opts.table_bytes));
                    }
                }
                // Keep what the segment covered beyond its last section (rare) as it was.
                // Saturating and wrapping: hostile sizes give a nonsense segment, which the
                // read-back of the output then refuses, not an overflow here.
                let end_of = |s: &&&crate::elf::Section<'_>| s.addr.saturating_add(s.size);
                let old_tail_mem = g
                    .vaddr
                    .saturating_add(g.memsz)
                    .saturating_sub(members.iter().map(end_of).max().unwrap_or(0));
                let old_tail_file = g.vaddr.saturating_add(g.filesz).saturating_sub(
                    members
                        .iter()
                        .filter(|s| !s.is_nobits())
                        .map(end_of)
                        .max()
                        .unwrap_or(0),
                );
                (
                    vaddr,
                    g.offset.wrapping_sub(d),
                    file_end.wrapping_add(old_tail_file).wrapping_sub(vaddr),
                    mem_end.wrapping_add(old_tail_mem).wrapping_sub(vaddr),
                )
            } else if g.memsz == 0 && g.filesz == 0
                || g.p_type == elf::PT_RISCV_ATTRIBUTES.0
                || !file.kind.is_linked()
            {
                (g.vaddr, g.offset, g.filesz, g.memsz)
            } else {
                let vaddr = map.map(g.vaddr);
                let d = g.vaddr.wrapping_sub(vaddr) as i64;
                let mem_end = map.map_end(g.vaddr.saturating_add(g.memsz));
                let file_end = map.map_end(g.vaddr.saturating_add(g.filesz));
                // Saturating: a corrupt segment whose start lies outside every section maps
                // its start unchanged and its end lower.
                let filesz = file_end.saturating_sub(vaddr);
                let memsz = if g.p_type == elf::PT_TLS.0 {
                    g.memsz.saturating_sub(g.filesz.saturating_sub(filesz))
                } else {
                    mem_end.saturating_sub(vaddr)
                };
                (
                    vaddr,
                    (g.offset as i64).wrapping_sub(d) as u64,
                    filesz,
                    memsz,
                )
            }
        })
        .collect();
    Ok(Plan {
        map,
        slots,
        alignment_bytes,
        offsets,
        table,
        free,
        segments,
        islands: Vec::new(),
    })
}
