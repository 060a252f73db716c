//! Laying out the new image: the edits inside each executable section (pads cut, slots and
//! aligned code padded into place) and where every allocated section and segment goes.

use std::collections::BTreeMap;

use object::elf;

use super::address_map::{AddressMap, Edit, SectionMove};
use super::slots::SlotLayout;
use crate::elf::{ElfFile, Reloc, RelocSection, Section, Segment};
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
    /// Code may grow (`rewrite --insert`): later load segments move up by whole pages when
    /// the growth does not fit the gap before them, code sections keep their addresses
    /// modulo 64, and runs of mixed-size nops before aligned entries are resized whole.
    pub grow: bool,
}

/// Code whose alignment an insertion keeps although no relocation asks for it (a linked file
/// keeps no `R_RISCV_ALIGN`): a function entry with alignment nops in front of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptAlignment {
    /// Index of the executable section.
    pub section: usize,
    /// The original address that stays aligned.
    pub at: u64,
    /// Its alignment (a power of two).
    pub align: u64,
    /// Start of the nops in front of it.
    pub pad_start: u64,
}

/// A function that gets a slot inserted at its entry (`rewrite --insert`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsertSite {
    /// Index of the executable section holding the function.
    pub section: usize,
    /// Original entry address (every alias of it shares the slot).
    pub func: u64,
    /// Original end of the function (entry + the largest size of its symbols).
    pub end: u64,
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
    /// New addresses of the inserted slots (`rewrite --insert`), sorted.
    pub inserted: Vec<u64>,
    /// The inserted functions by original entry: (original end, slot bytes). A jump that
    /// does not link, from inside a function to its own entry, goes behind the slot.
    pub slot_funcs: BTreeMap<u64, (u64, u64)>,
}

impl Plan {
    /// The new target of a jump at original `from` to original `target` that does not link
    /// (a branch, `j`, a `jr` tail): behind the slot when it loops back to its own
    /// function's entry, `None` when the plain map applies.
    pub fn behind_slot(&self, from: u64, target: u64) -> Option<u64> {
        let &(end, len) = self.slot_funcs.get(&target)?;
        (from >= target && from < end).then(|| self.map.map(target).wrapping_add(len))
    }
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
    plan_edits(file, sites, (&[], &[]), relocs, opts)
}

/// Plans `rewrite --insert`: a `slot`-byte slot in front of every entry of `inserts`
/// (sorted by entry, one per address), 4-byte aligned (or at the function's alignment);
/// code grows and everything after it moves. The pads of `sites` (a program whose own code
/// has pads, linked with code that has none) are cut to slots in the same walk, as
/// [`plan`] cuts them; no entry of `inserts` may be the function of a site.
pub fn plan_insert(
    file: &ElfFile<'_>,
    sites: &[PatchSite],
    inserts: &[InsertSite],
    kept: &[KeptAlignment],
    relocs: &[RelocSection],
    opts: PlanOptions,
) -> Result<Plan> {
    let mut plan = plan_edits(file, sites, (inserts, kept), relocs, opts)?;
    let len = u64::from(opts.slot);
    plan.inserted = inserts.iter().map(|f| plan.map.map(f.func)).collect();
    plan.inserted.sort_unstable();
    plan.slot_funcs = inserts.iter().map(|f| (f.func, (f.end, len))).collect();
    Ok(plan)
}

/// [`plan`] and [`plan_insert`]: pads of `sites` cut, slots inserted at `inserts`.
fn plan_edits(
    file: &ElfFile<'_>,
    sites: &[PatchSite],
    (inserts, kept): (&[InsertSite], &[KeptAlignment]),
    relocs: &[RelocSection],
    opts: PlanOptions,
) -> Result<Plan> {
    let mut ins_by_section: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for f in inserts {
        ins_by_section.entry(f.section).or_default().push(f.func);
    }
    let mut points = align_points(file, relocs)?;
    for k in kept {
        points.entry(k.section).or_default().push(AlignPoint {
            at: k.at,
            align: k.align,
            pad_start: k.pad_start,
        });
    }
    let mut by_section: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, s) in sites.iter().enumerate() {
        by_section.entry(s.section).or_default().push(i);
    }
    let mut exec_edits: BTreeMap<usize, Vec<Edit>> = BTreeMap::new();
    let mut slots = Vec::with_capacity(sites.len());
    let mut alignment_bytes = 0u64;
    // (section, offset of the island in the section's new bytes)
    let mut islands: Vec<(usize, u64)> = Vec::new();
    for sec in file
        .sections
        .iter()
        .filter(|s| s.is_exec() && (s.is_alloc() || !file.kind.is_linked()) && !s.is_nobits())
    {
        let data = file.section_data(sec)?;
        let mut pts = points.remove(&sec.index).unwrap_or_default();
        pts.sort_by_key(|p| p.at);
        let site_ids = by_section.remove(&sec.index).unwrap_or_default();
        let ins = ins_by_section.remove(&sec.index).unwrap_or_default();
        let done = section_edits(file, sec.addr, data, (sites, &site_ids), &ins, &pts, opts)?;
        alignment_bytes += done.spent;
        slots.extend(done.placed);
        islands.extend(done.islands);
        exec_edits.insert(sec.index, done.edits);
    }
    slots.sort_by_key(|s| s.site);
    let mut plan = place_sections(file, exec_edits, slots, alignment_bytes, opts)?;
    plan.islands = island_addresses(&plan.map, islands);
    if let Some(tramp) = opts.trampoline {
        check_island_reach(&plan, plan.map.map(tramp))?;
    }
    Ok(plan)
}

/// Alignment points per section, from `R_RISCV_ALIGN` and from function alignment.
fn align_points(
    file: &ElfFile<'_>,
    relocs: &[RelocSection],
) -> Result<BTreeMap<usize, Vec<AlignPoint>>> {
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
            let point = reloc_align_point(file, sec, r)?;
            points.entry(rs.target).or_default().push(point);
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
    Ok(points)
}

/// The point an `R_RISCV_ALIGN` of section `sec` keeps aligned: its nops end there.
fn reloc_align_point(file: &ElfFile<'_>, sec: &Section<'_>, r: &Reloc) -> Result<AlignPoint> {
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
    Ok(AlignPoint {
        at,
        align,
        pad_start: start,
    })
}

/// The new addresses of the islands, sorted, from their places in their sections' new
/// bytes: those were section-relative guesses until the sections were placed.
fn island_addresses(map: &AddressMap, islands: Vec<(usize, u64)>) -> Vec<u64> {
    let mut addrs: Vec<u64> = islands
        .into_iter()
        .map(|(sec, off)| {
            map.section(sec)
                .map_or(off, |m| m.new_addr.wrapping_add(off))
        })
        .collect();
    addrs.sort_unstable();
    addrs
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
    Insert(u64),
}

/// What the walk over one executable section produced.
struct SectionEdits {
    /// The edits, in address order.
    edits: Vec<Edit>,
    /// The section's slots.
    placed: Vec<PlannedSlot>,
    /// Bytes spent on alignment.
    spent: u64,
    /// (section, offset of the island in the section's new bytes)
    islands: Vec<(usize, u64)>,
}

/// Computes the edits of one executable section: cut pads, pad slots and aligned points.
fn section_edits(
    file: &ElfFile<'_>,
    base: u64,
    data: &[u8],
    (sites, site_ids): (&[PatchSite], &[usize]),
    inserts: &[u64],
    points: &[AlignPoint],
    opts: PlanOptions,
) -> Result<SectionEdits> {
    let mut walk = SectionWalk {
        base,
        data,
        unit: min_insn(file),
        opts,
        func_align: points
            .iter()
            .filter(|p| p.pad_start == p.at)
            .map(|p| (p.at, p.align))
            .collect(),
        edits: Vec::new(),
        placed: Vec::new(),
        delta: 0,
        spent: 0,
        islands: Vec::new(),
        last_island: None,
    };
    for (_, _, step) in walk_steps(sites, site_ids, inserts, points) {
        match step {
            Step::Site(i) => walk.place_site(i, &sites[i])?,
            Step::Align(p) => walk.keep_aligned(p)?,
            Step::Insert(at) => walk.insert_slot(at)?,
        }
    }
    // Generated in address order already; a stable sort keeps an insert before a cut at
    // the same address.
    walk.edits.sort_by_key(|e| e.at());
    Ok(SectionEdits {
        edits: walk.edits,
        placed: walk.placed,
        spent: walk.spent,
        islands: walk.islands,
    })
}

/// The sites and alignment points of a section in address order (a point before a site at
/// the same address).
fn walk_steps(
    sites: &[PatchSite],
    site_ids: &[usize],
    inserts: &[u64],
    points: &[AlignPoint],
) -> Vec<(u64, u8, Step)> {
    let mut steps: Vec<(u64, u8, Step)> =
        Vec::with_capacity(site_ids.len() + inserts.len() + points.len());
    for &i in site_ids {
        steps.push((sites[i].entry, 1, Step::Site(i)));
    }
    for &at in inserts {
        steps.push((at, 1, Step::Insert(at)));
    }
    for p in points {
        // A function alignment point at a site (or an inserted slot) is folded into it.
        if p.pad_start == p.at
            && (site_ids.iter().any(|&i| sites[i].func_addr == p.at)
                || inserts.binary_search(&p.at).is_ok())
        {
            continue;
        }
        steps.push((p.pad_start, 0, Step::Align(*p)));
    }
    steps.sort_by_key(|(a, k, _)| (*a, *k));
    steps
}

/// The walk over one executable section: the edits so far and how far they moved the code.
struct SectionWalk<'a> {
    /// Original address of the section.
    base: u64,
    /// Its original bytes.
    data: &'a [u8],
    /// Minimum instruction size.
    unit: u64,
    opts: PlanOptions,
    /// Function alignment points of the section: address -> alignment.
    func_align: BTreeMap<u64, u64>,
    edits: Vec<Edit>,
    placed: Vec<PlannedSlot>,
    /// New address minus old address of the next kept byte.
    delta: i64,
    /// Bytes spent on alignment.
    spent: u64,
    /// (section, offset of the island in the section's new bytes)
    islands: Vec<(usize, u64)>,
    /// New address of this section's last island.
    last_island: Option<u64>,
}

impl SectionWalk<'_> {
    /// Cuts the pad of site `i` and pads its slot into alignment.
    fn place_site(&mut self, i: usize, site: &PatchSite) -> Result<()> {
        let cut = SlotLayout::for_site(site, self.opts.slot, self.opts.pre);
        self.island_before(site)?;
        let pad = self.slot_padding(site, cut)?;
        self.spent += pad;
        // Net edit in front of the kept bytes: reuse cut nops as padding when we can.
        let keep_from = site.entry.wrapping_add(u64::from(cut.cut_pre));
        let pre_cut = u64::from(cut.cut_pre);
        if pre_cut >= pad {
            if pre_cut > pad {
                self.edits.push(Edit::Cut {
                    at: site.entry,
                    len: pre_cut - pad,
                });
            }
        } else {
            if pre_cut > 0 {
                self.edits.push(Edit::Cut {
                    at: site.entry,
                    len: pre_cut,
                });
            }
            self.edits.push(Edit::Insert {
                at: keep_from,
                len: pad - pre_cut,
            });
        }
        self.delta += pad as i64 - pre_cut as i64;
        let slot_addr = site.func_addr.wrapping_add(self.delta as u64);
        let entry = slot_addr.wrapping_sub(u64::from(cut.keep_pre));
        if cut.cut_post > 0 {
            self.edits.push(Edit::Cut {
                at: site.func_addr.wrapping_add(u64::from(cut.keep_slot)),
                len: u64::from(cut.cut_post),
            });
            self.delta -= i64::from(cut.cut_post);
        }
        self.placed.push(PlannedSlot {
            site: i,
            cut,
            slot_addr,
            entry,
        });
        Ok(())
    }

    /// Inserts a slot in front of the function entry `at` (`rewrite --insert`), after the
    /// padding that puts it 4-byte aligned (or at the function's own alignment).
    fn insert_slot(&mut self, at: u64) -> Result<()> {
        let align = self.func_align.get(&at).copied().unwrap_or(4).max(4);
        let new_sym = (at as i64).wrapping_add(self.delta);
        let pad = new_sym.wrapping_neg().rem_euclid(align as i64) as u64;
        if !pad.is_multiple_of(self.unit) {
            return Err(Error::refused(format!(
                "cannot align the slot of the function at {at:#x}: needs {pad} bytes of padding"
            )));
        }
        if pad > 0 {
            self.edits.push(Edit::Insert { at, len: pad });
        }
        let len = u64::from(self.opts.slot);
        self.edits.push(Edit::Slot { at, len });
        self.delta += (pad + len) as i64;
        self.spent += pad;
        Ok(())
    }

    /// Inserts a trampoline island in front of `site`'s pad when the trampoline and the
    /// section's last island are both out of its reach.
    fn island_before(&mut self, site: &PatchSite) -> Result<()> {
        let Some(tramp) = self.opts.trampoline.filter(|_| self.opts.slot >= 4) else {
            return Ok(());
        };
        let here = site.entry.wrapping_add(self.delta as u64);
        let far = site.entry.abs_diff(tramp) > ISLAND_REACH;
        if !far
            || self
                .last_island
                .is_some_and(|l| here.wrapping_sub(l) <= ISLAND_REACH)
        {
            return Ok(());
        }
        // In front of the pad: 4-byte aligned, reached by what follows.
        let align = (4 - here % 4) % 4;
        if !align.is_multiple_of(self.unit) {
            return Err(Error::refused(format!(
                "cannot align a trampoline island at {:#x}",
                site.entry
            )));
        }
        self.edits.push(Edit::Insert {
            at: site.entry,
            len: align + ISLAND_BYTES,
        });
        let at = here.wrapping_add(align);
        self.islands
            .push((site.section, at.wrapping_sub(self.base)));
        self.last_island = Some(at);
        self.delta += (align + ISLAND_BYTES) as i64;
        self.spent += align;
        Ok(())
    }

    /// Bytes of padding that put `site`'s slot (cut as `cut`) where it must be: 4-byte
    /// aligned at the residue the cut asks for, or at the function's own alignment.
    fn slot_padding(&self, site: &PatchSite, cut: SlotLayout) -> Result<u64> {
        let mut align = 4;
        let residue = cut.required_residue(site.func_addr);
        if let Some(&fa) = self.func_align.get(&site.func_addr) {
            align = align.max(fa);
        }
        let residue = if align > 4 { 0 } else { residue };
        // Where the symbol would land without padding.
        let new_sym = (site.func_addr as i64)
            .wrapping_add(self.delta)
            .wrapping_sub(i64::from(cut.cut_pre));
        let pad = (residue as i64)
            .wrapping_sub(new_sym)
            .rem_euclid(align as i64) as u64;
        if !pad.is_multiple_of(self.unit) {
            return Err(Error::refused(format!(
                "cannot align the slot of the function at {:#x}: needs {pad} bytes of padding",
                site.func_addr
            )));
        }
        Ok(pad)
    }

    /// Keeps the code at alignment point `p` aligned, resizing the padding in front of it.
    fn keep_aligned(&mut self, p: AlignPoint) -> Result<()> {
        let unit = self.unit;
        // Existing padding [pad_start, at) is resized if it is all nops; otherwise
        // it stays and padding is only inserted in front of `at`.
        let nops = if self.opts.grow {
            // Insertion: nops of both sizes, mixed, walked instruction by instruction.
            let mut off = p.pad_start;
            while off < p.at && is_nop_at(self.data, off.wrapping_sub(self.base) as usize) {
                let o = off.wrapping_sub(self.base) as usize;
                off += if self.data.get(o..o + 2) == Some(&C_NOP.to_le_bytes()) {
                    2
                } else {
                    4
                };
            }
            off == p.at
        } else {
            (p.pad_start..p.at).step_by(unit as usize).all(|off| {
                let o = off.wrapping_sub(self.base) as usize;
                is_nop_at(self.data, o)
            })
        };
        let (start, old_pad) = if nops {
            (p.pad_start, p.at - p.pad_start)
        } else {
            (p.at, 0)
        };
        let new_start = (start as i64).wrapping_add(self.delta);
        let need = new_start.wrapping_neg().rem_euclid(p.align as i64) as u64;
        if !need.is_multiple_of(unit) {
            return Err(Error::refused(format!(
                "cannot keep the alignment of the code at {:#x}",
                p.at
            )));
        }
        if need < old_pad && self.opts.grow && need > 0 {
            // Mixed nop sizes: cutting part of the run could split a nop; the whole run
            // goes and fresh nops take its place.
            self.edits.push(Edit::Cut {
                at: start,
                len: old_pad,
            });
            self.edits.push(Edit::Insert {
                at: p.at,
                len: need,
            });
        } else if need < old_pad {
            self.edits.push(Edit::Cut {
                at: start,
                len: old_pad - need,
            });
        } else if need > old_pad {
            self.edits.push(Edit::Insert {
                at: p.at,
                len: need - old_pad,
            });
        }
        self.delta += need as i64 - old_pad as i64;
        self.spent += need;
        Ok(())
    }
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
    let sections = sections_to_place(file);
    // The load segment after whose last section the table goes: the one with the last
    // executable section.
    let table_segment = sections
        .iter()
        .rfind(|s| s.is_exec())
        .and_then(|s| load_segment(file, s.addr));
    let mut placer = Placer::new(file, &sections, table_segment, opts);
    for sec in &sections {
        let edits = exec_edits.remove(&sec.index);
        if !file.kind.is_linked() {
            placer.place_in_object(sec, edits);
        } else if opts.layout == Layout::InPlace {
            placer.place_in_place(sec, edits)?;
        } else {
            placer.place_packed(sec, edits)?;
        }
    }
    placer.fix_table_offset();
    if opts.layout == Layout::InPlace && opts.table_bytes > 0 {
        placer.reserve_table_in_place()?;
    }
    let Placer {
        moves,
        offsets,
        free,
        table,
        ..
    } = placer;
    let map = AddressMap::new(moves, file.sections.len());
    let segments = file
        .segments
        .iter()
        .map(|g| {
            if g.p_type == elf::PT_LOAD.0 && file.kind.is_linked() {
                let table = table.filter(|_| {
                    opts.layout == Layout::Pack && load_segment(file, g.vaddr) == table_segment
                });
                placed_load_segment(file, &sections, &map, g, table, opts)
            } else if g.memsz == 0 && g.filesz == 0
                || g.p_type == elf::PT_RISCV_ATTRIBUTES.0
                || !file.kind.is_linked()
            {
                (g.vaddr, g.offset, g.filesz, g.memsz)
            } else {
                mapped_segment(&map, g)
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
        inserted: Vec::new(),
        slot_funcs: BTreeMap::new(),
    })
}

/// The sections the plan places, in address order: the allocated ones of a linked file,
/// those with contents or code of an object.
fn sections_to_place<'a, 'data>(file: &'a ElfFile<'data>) -> Vec<&'a Section<'data>> {
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
    sections
}

/// The largest load segment alignment (a page at least 1; 0x1000 without load segments).
fn page_size(file: &ElfFile<'_>) -> u64 {
    file.segments
        .iter()
        .filter(|s| s.p_type == elf::PT_LOAD.0)
        .map(|s| s.align)
        .max()
        .unwrap_or(0x1000)
        .max(1)
}

/// True for a TLS NOBITS section (`.tbss`).
fn is_tbss(s: &Section<'_>) -> bool {
    s.is_nobits() && s.flags & elf::SHF_TLS.0 != 0
}

/// Index of the load segment whose memory holds original address `addr`.
fn load_segment(file: &ElfFile<'_>, addr: u64) -> Option<usize> {
    file.segments.iter().position(|g| {
        g.p_type == elf::PT_LOAD.0
            && addr >= g.vaddr
            && addr < g.vaddr.saturating_add(g.memsz.max(1))
    })
}

/// The sections placed one after another, and where the last one left the layout.
struct Placer<'f, 'data> {
    file: &'f ElfFile<'data>,
    opts: PlanOptions,
    /// Bytes of a pointer: the table's alignment.
    ptr: u64,
    /// What later load segments move by multiples of.
    page: u64,
    /// The section after which the table goes (pack layout).
    last_in_table_segment: Option<usize>,
    moves: Vec<SectionMove>,
    offsets: BTreeMap<usize, u64>,
    free: BTreeMap<usize, u64>,
    table: Option<(u64, u64)>,
    /// How far the current section moves down (negative: up, after a section grew).
    shift: i64,
    /// New end address, new end file offset and old end address of the last section placed.
    prev_end: (u64, u64, u64),
    /// The load segment of the last section placed.
    current_segment: Option<usize>,
    /// The table did not fit the bytes its segment freed, so that segment grew for it.
    table_grew: bool,
}

impl<'f, 'data> Placer<'f, 'data> {
    /// A placer before the first of `sections`; the table goes in load segment
    /// `table_segment`, after its last section.
    fn new(
        file: &'f ElfFile<'data>,
        sections: &[&Section<'_>],
        table_segment: Option<usize>,
        opts: PlanOptions,
    ) -> Self {
        Placer {
            file,
            opts,
            ptr: file.ptr_size() as u64,
            page: page_size(file),
            last_in_table_segment: sections
                .iter()
                .filter(|s| load_segment(file, s.addr) == table_segment && table_segment.is_some())
                .map(|s| s.index)
                .next_back(),
            moves: Vec::with_capacity(sections.len()),
            offsets: BTreeMap::new(),
            free: BTreeMap::new(),
            table: None,
            shift: 0,
            prev_end: (0, 0, 0),
            current_segment: None,
            table_grew: false,
        }
    }
}

impl Placer<'_, '_> {
    /// Relocatable: every section starts at 0; only sizes change.
    fn place_in_object(&mut self, sec: &Section<'_>, edits: Option<Vec<Edit>>) {
        let edits = edits.unwrap_or_default();
        self.moves
            .push(SectionMove::edited(sec.index, 0, sec.size, 0, edits));
    }

    /// In-place layout: the section keeps its address and offset; what it freed is counted.
    fn place_in_place(&mut self, sec: &Section<'_>, edits: Option<Vec<Edit>>) -> Result<()> {
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
            self.free.insert(sec.index, sec.size - mv.new_size);
        }
        self.offsets.insert(sec.index, sec.offset);
        self.moves.push(mv);
        Ok(())
    }

    /// Pack layout: the section moves by the shift so far, kept at its alignment.
    fn place_packed(&mut self, sec: &Section<'_>, edits: Option<Vec<Edit>>) -> Result<()> {
        let segment = load_segment(self.file, sec.addr);
        if segment != self.current_segment && self.current_segment.is_some() && !is_tbss(sec) {
            self.enter_segment(sec)?;
        }
        if !is_tbss(sec) {
            self.current_segment = segment;
        }
        // Growing code (`--insert`) keeps each code section's address modulo 64: the slots
        // and aligned entries in it were planned from its old addresses.
        let align = if self.opts.grow && sec.is_exec() {
            sec.align.max(64) as i64
        } else {
            sec.align.max(1) as i64
        };
        let shift = self.shift;
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
            self.shift = distance(sec.addr.wrapping_add(sec.size), new_end, sec.name)?;
            if Some(sec.index) == self.last_in_table_segment && self.opts.table_bytes > 0 {
                self.reserve_table_after(sec, new_end)?;
            }
            let new_off = sec.offset.wrapping_sub(s as u64);
            self.prev_end = (
                new_end,
                if sec.is_nobits() {
                    new_off
                } else {
                    new_off.wrapping_add(mv.new_size)
                },
                sec.addr.wrapping_add(sec.size),
            );
            // The table reserved after this section ends the segment's bytes.
            if let Some((at, _)) = self
                .table
                .filter(|_| Some(sec.index) == self.last_in_table_segment)
            {
                let end = at.wrapping_add(self.opts.table_bytes);
                self.prev_end.0 = end;
                self.prev_end.1 = new_off.wrapping_add(end.wrapping_sub(new_addr));
            }
        }
        // Wrapping: a NOBITS section's offset is not checked against the file (it has no
        // bytes there), and a hostile one may sit anywhere; it is only carried over.
        self.offsets.insert(
            sec.index,
            sec.offset.wrapping_add(new_addr).wrapping_sub(sec.addr),
        );
        // .tbss takes no address space of its own: addresses there belong to what follows.
        self.moves
            .push(if is_tbss(sec) { mv.overlay() } else { mv });
        Ok(())
    }

    /// Sets the shift for `sec`, the first section of a new load segment.
    fn enter_segment(&mut self, sec: &Section<'_>) -> Result<()> {
        if self.shift >= 0 {
            // Later segments move by whole pages: file offsets stay congruent with
            // addresses, RELRO stays page-aligned, and no two segments share a page.
            self.shift -= self.shift % self.page as i64;
        } else {
            // The previous segment grew (alignment of small pads cost more than they
            // freed): later segments stay put when the growth fits the gap before them.
            let (end_addr, end_off, old_end) = self.prev_end;
            let fits = end_addr <= old_end.next_multiple_of(self.page) && end_off <= sec.offset;
            if !fits && (self.opts.grow || self.table_grew) {
                // Code grew (`--insert`), or the table did not fit the freed bytes: this and
                // every later segment move up by whole pages, past the new end in memory and
                // in the file.
                let past = |end: u64, start: u64| end.saturating_sub(start);
                let need = past(end_addr, old_end.next_multiple_of(self.page))
                    .max(past(end_off, sec.offset))
                    .next_multiple_of(self.page);
                self.shift = -(need as i64);
                return Ok(());
            }
            if !fits {
                return Err(Error::refused(format!(
                    "the segment before section {} grows by {} bytes, more than the gap \
                     before it; pack layout cannot place it",
                    sec.name, -self.shift
                )));
            }
            self.shift = 0;
        }
        Ok(())
    }

    /// Reserves the table right after `sec` (now ending at `new_end`): in the bytes the
    /// segment freed when they hold it, else the segment grows for it (a few sites, or slots
    /// that free less than their table entry: 8-byte pads at 4-byte slots) and later
    /// segments move up by whole pages. A program without its table could not be traced.
    fn reserve_table_after(&mut self, sec: &Section<'_>, new_end: u64) -> Result<()> {
        let at = new_end.checked_next_multiple_of(self.ptr).ok_or_else(|| {
            Error::refused(format!("section {} ends at the top of the space", sec.name))
        })?;
        let end = at.wrapping_add(self.opts.table_bytes);
        self.shift = distance(sec.addr.wrapping_add(sec.size), end, sec.name)?;
        self.table_grew = self.shift < 0;
        self.table = Some((at, 0)); // file offset fixed by `fix_table_offset`
        Ok(())
    }

    /// Gives the table reserved after a section the file offset of its address: the same
    /// displacement as that section's.
    fn fix_table_offset(&mut self) {
        let (Some((at, _)), Some(idx)) = (self.table, self.last_in_table_segment) else {
            return;
        };
        let sec = &self.file.sections[idx];
        let new_addr = self
            .moves
            .iter()
            .find(|m| m.index == idx)
            .map_or(sec.addr, |m| m.new_addr);
        let off = self.offsets[&idx].wrapping_add(at.wrapping_sub(new_addr));
        self.table = Some((at, off));
    }

    /// In-place layout: the table takes the free tail of the executable section with the
    /// most room.
    fn reserve_table_in_place(&mut self) -> Result<()> {
        let (file, ptr, table_bytes) = (self.file, self.ptr, self.opts.table_bytes);
        let (&idx, _) = self
            .free
            .iter()
            .filter(|(&i, &f)| f >= table_bytes + ptr && file.sections[i].is_alloc())
            .max_by_key(|(_, &f)| f)
            .ok_or_else(|| {
                Error::NoRoomForTable(
                    "in-place layout: no executable section has room for the __mcount_loc table"
                        .to_string(),
                )
            })?;
        let sec = &file.sections[idx];
        let mv = self.moves.iter().find(|m| m.index == idx).expect("moved");
        // At the very end of the free tail, so that the section can end where the table
        // starts: the free nops stay inside it, and no two sections overlap.
        let at = sec.addr.wrapping_add(sec.size - table_bytes) / ptr * ptr;
        let free = at.wrapping_sub(sec.addr.wrapping_add(mv.new_size));
        self.table = Some((at, sec.offset.wrapping_add(at.wrapping_sub(sec.addr))));
        *self.free.get_mut(&idx).expect("free") = free;
        Ok(())
    }
}

/// The new (vaddr, offset, filesz, memsz) of load segment `g` of a linked file: it spans
/// its sections where they now are (and the table, if it goes in it).
fn placed_load_segment(
    file: &ElfFile<'_>,
    sections: &[&Section<'_>],
    map: &AddressMap,
    g: &Segment,
    table: Option<(u64, u64)>,
    opts: PlanOptions,
) -> (u64, u64, u64, u64) {
    let segment = load_segment(file, g.vaddr);
    let members: Vec<_> = sections
        .iter()
        .filter(|s| load_segment(file, s.addr) == segment && !is_tbss(s))
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
        mem_end = mem_end.max(at.saturating_add(opts.table_bytes));
        file_end = file_end.max(at.saturating_add(opts.table_bytes));
    }
    // Keep what the segment covered beyond its last section (rare) as it was.
    // Saturating and wrapping: hostile sizes give a nonsense segment, which the
    // read-back of the output then refuses, not an overflow here.
    let end_of = |s: &&&Section<'_>| s.addr.saturating_add(s.size);
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
}

/// The new (vaddr, offset, filesz, memsz) of a segment other than a load segment: its
/// start and ends go through the map.
fn mapped_segment(map: &AddressMap, g: &Segment) -> (u64, u64, u64, u64) {
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
