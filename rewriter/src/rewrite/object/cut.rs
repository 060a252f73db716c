//! Cutting the pads of one executable section of an object, and keeping 4-byte slots
//! aligned through the final link.
//!
//! In an object, a section offset is only final modulo the section's alignment, and only
//! until the linker relaxes the code before it: relaxation deletes 2 or 4 bytes at a time
//! (calls to `jal`/`c.j`, dropped `lui`/`auipc`, trimmed `R_RISCV_ALIGN` nops). A 4-byte
//! slot therefore stays aligned after linking only if
//! - the section is at least 4-byte aligned, and
//! - either nothing before the slot in its section can be relaxed (no `R_RISCV_RELAX`, no
//!   `R_RISCV_ALIGN` before it) and the slot's section offset is a multiple of 4,
//! - or an `R_RISCV_ALIGN` sits right in front of it. Its addend is the nop bytes the
//!   linker may keep; the linker keeps `align(P) - P` of them and deletes the rest, so an
//!   addend of 2 (one `c.nop`) is the worst case for a 4-byte boundary, exactly as the
//!   assembler reserves for `.balign 4`.
//!
//! Without the C extension every instruction and every deletion is a multiple of 4 bytes,
//! so slots that were aligned stay aligned without help.

use std::collections::HashSet;

use object::elf;

use super::offsets::{Edit, Inserted, OffsetMap};
use crate::elf::{ElfFile, Reloc};
use crate::error::{Error, Result};
use crate::plan::SlotLayout;
use crate::riscv::{C_NOP, NOP};
use crate::scan::{NopKind, PatchSite, SiteState};

/// Bytes of the `R_RISCV_ALIGN` reserve in front of a 4-byte slot (one `c.nop`).
pub const ALIGN_RESERVE: u64 = 2;

/// What to keep of each pad.
#[derive(Debug, Clone, Copy)]
pub struct CutOptions {
    /// Slot bytes at the function symbol.
    pub slot: u32,
    /// Pad bytes kept before the function symbol.
    pub pre: u32,
}

/// The plan of one executable section.
#[derive(Debug, Clone)]
pub struct SectionPlan {
    /// Section index.
    pub index: usize,
    /// Old → new offsets.
    pub map: OffsetMap,
    /// Where inserted bytes went (alignment reserves and padding).
    pub inserted: Vec<Inserted>,
    /// The new contents.
    pub bytes: Vec<u8>,
    /// New `sh_addralign` (raised to 4 for 4-byte slots).
    pub align: u64,
    /// Bytes inserted to keep slots aligned.
    pub alignment_bytes: u64,
}

impl SectionPlan {
    /// True if the section is not changed at all.
    pub fn is_unchanged(&self, old_align: u64) -> bool {
        self.map.is_identity() && self.inserted.is_empty() && self.align == old_align
    }
}

/// Relocation types after which the linker may delete bytes further on in the section.
fn relaxes(r: &Reloc) -> bool {
    r.r_type == elf::R_RISCV_RELAX.0 || r.r_type == elf::R_RISCV_ALIGN.0
}

/// What tells, in code the linker does not relax, which points were aligned by the
/// assembler: there, alignment directives left plain nops and no `R_RISCV_ALIGN`, so the
/// rewrite must keep them aligned itself.
struct AlignmentEvidence<'a> {
    old: &'a [u8],
    /// `sh_addralign` of the section.
    section_align: u64,
    /// Ends of the function symbols of the section, sorted.
    func_ends: Vec<u64>,
}

impl AlignmentEvidence<'_> {
    /// Start of the nop (or zero) padding in front of `x`, after the function before it;
    /// `x` itself when there is none.
    fn gap_start(&self, x: u64) -> u64 {
        let i = self.func_ends.partition_point(|&e| e <= x);
        let Some(&end) = i.checked_sub(1).and_then(|k| self.func_ends.get(k)) else {
            return x;
        };
        let parcel = |o: u64| {
            let o = usize::try_from(o).ok()?;
            let b = self.old.get(o..o.checked_add(2)?)?;
            Some(u16::from_le_bytes([b[0], b[1]]))
        };
        let mut o = end;
        while o < x {
            o += match (parcel(o), parcel(o + 2)) {
                (Some(0) | Some(C_NOP), _) => 2,
                (Some(lo), Some(0)) if u32::from(lo) == NOP => 4,
                _ => return x,
            };
        }
        if o == x {
            end
        } else {
            x
        }
    }

    /// The alignment `x` keeps: the section's own alignment where it had it, else the
    /// alignment it had behind padding; 1 when there is no evidence.
    fn required(&self, x: u64) -> u64 {
        let s = self.section_align;
        if s <= 4 || x == 0 {
            return 1;
        }
        let natural = (1u64 << x.trailing_zeros().min(63)).min(s);
        if natural == s || (natural > 4 && self.gap_start(x) < x) {
            natural
        } else {
            1
        }
    }
}

/// A point of a section the walk handles, in offset order.
enum Point {
    /// A pad (site index).
    Site(usize),
    /// A function without a pad, whose alignment may need keeping.
    Func(u64),
    /// A function that gets a slot inserted (`rewrite --insert`): its entry and end.
    Slot(u64, u64),
}

/// The walk over one section: edits so far and the running size change.
struct Walk<'a> {
    /// Offset of the first relocation after which the linker may delete bytes.
    first_relax: Option<u64>,
    evidence: AlignmentEvidence<'a>,
    edits: Vec<Edit>,
    /// New offset minus old offset of the next kept byte.
    delta: i64,
    /// An `R_RISCV_ALIGN` reserve was added: the linker may move what follows.
    added_align: bool,
    alignment_bytes: u64,
    /// New `sh_addralign` (raised to 4 for 4-byte slots).
    align: u64,
}

impl Walk<'_> {
    /// True if the linker may delete bytes before `x` in this section.
    fn relaxable_before(&self, x: u64) -> bool {
        self.added_align || self.first_relax.is_some_and(|o| o < x)
    }

    /// Keeps the alignment of the point `x` (whose first kept byte is `keep_from`) in code
    /// the linker does not relax, by shrinking the padding in front of it or adding to it.
    /// Returns the insert to push after the point's own removals, if any.
    fn keep_alignment(&mut self, x: u64, keep_from: u64) -> Option<Edit> {
        let align = self.evidence.required(x);
        if align <= 1 || self.relaxable_before(x) {
            return None;
        }
        let gap_start = self.evidence.gap_start(x);
        let gap = x - gap_start;
        let new_gap_start = (gap_start as i64 + self.delta) as u64;
        let new_gap = new_gap_start.next_multiple_of(align) - new_gap_start;
        if new_gap < gap {
            self.edits.push(Edit::Remove {
                at: gap_start,
                len: gap - new_gap,
            });
            self.delta -= (gap - new_gap) as i64;
            None
        } else if new_gap > gap {
            self.delta += (new_gap - gap) as i64;
            self.alignment_bytes += new_gap - gap;
            Some(Edit::Insert {
                at: keep_from,
                len: new_gap - gap,
                align: false,
            })
        } else {
            None
        }
    }

    /// Cuts the pad of `site` as `cut` says: the removals around the kept bytes, and what
    /// keeps the point and its 4-byte slot aligned.
    fn cut_pad(
        &mut self,
        site: &PatchSite,
        cut: SlotLayout,
        opts: CutOptions,
        facts: &SectionFacts<'_>,
    ) -> Result<()> {
        let entry = site.entry;
        let func = entry + u64::from(site.pre_bytes);
        let post = func + u64::from(cut.keep_slot);
        let keep_from = entry + u64::from(cut.cut_pre);
        let align_insert = self.keep_alignment(entry, keep_from);
        if cut.cut_pre > 0 {
            self.edits.push(Edit::Remove {
                at: entry,
                len: u64::from(cut.cut_pre),
            });
        }
        self.delta -= i64::from(cut.cut_pre);
        let mut insert = align_insert.map_or(0, |e| match e {
            Edit::Insert { len, .. } => len,
            Edit::Remove { .. } | Edit::Slot { .. } => 0,
        });
        let mut reserve = false;
        if opts.slot == 4 && cut.keep_slot == 4 && !matches!(site.state, SiteState::Patched(_)) {
            let (more, with_reserve) = self.align_slot(entry, func, cut, facts)?;
            insert += more;
            reserve = with_reserve;
        }
        self.push_alignment(keep_from, insert, reserve);
        if cut.cut_post > 0 {
            self.edits.push(Edit::Remove {
                at: post,
                len: u64::from(cut.cut_post),
            });
        }
        self.delta -= i64::from(cut.cut_post);
        Ok(())
    }

    /// Pushes what keeps a slot in front of the byte `at` aligned: `padding` bytes of fixed
    /// nops, then (with `reserve`) an `R_RISCV_ALIGN` reserve, in that order.
    fn push_alignment(&mut self, at: u64, padding: u64, reserve: bool) {
        if padding > 0 {
            self.edits.push(Edit::Insert {
                at,
                len: padding,
                align: false,
            });
        }
        if reserve {
            self.edits.push(Edit::Insert {
                at,
                len: ALIGN_RESERVE,
                align: true,
            });
        }
    }

    /// Inserts a `slot`-byte slot in front of the function at `func` (ending at `end`): the
    /// function keeps the alignment it had, now at the slot, and the slot is 4-byte aligned
    /// through the link (padding or an `R_RISCV_ALIGN` reserve in front of it).
    fn insert_slot(
        &mut self,
        func: u64,
        end: u64,
        slot: u32,
        facts: &SectionFacts<'_>,
    ) -> Result<()> {
        let insert = match self.keep_alignment(func, func) {
            Some(Edit::Insert { len, .. }) => len,
            _ => 0,
        };
        let whole = SlotLayout {
            keep_pre: 0,
            keep_slot: slot,
            cut_pre: 0,
            cut_post: 0,
        };
        let (more, reserve) = self.align_slot(func, func, whole, facts)?;
        self.push_alignment(func, insert + more, reserve);
        self.edits.push(Edit::Slot {
            at: func,
            len: u64::from(slot),
            end,
        });
        self.delta += i64::from(slot);
        Ok(())
    }

    /// Keeps the 4-byte slot of the function at `func` (pad at `entry`) aligned through
    /// the link: returns the padding to insert in front of it and whether an
    /// `R_RISCV_ALIGN` reserve goes there (see the module comment).
    fn align_slot(
        &mut self,
        entry: u64,
        func: u64,
        cut: SlotLayout,
        facts: &SectionFacts<'_>,
    ) -> Result<(u64, bool)> {
        let name = facts.name;
        self.align = self.align.max(4);
        let new_slot = (func as i64 + self.delta) as u64;
        if !facts.rvc {
            if !new_slot.is_multiple_of(4) {
                return Err(Error::refused(format!(
                    "{name}+{func:#x}: slot would land at offset {new_slot:#x}, not 4-byte aligned"
                )));
            }
        } else if self.relaxable_before(entry) {
            if !facts.aligned_points.contains(&entry) || !cut.keep_pre.is_multiple_of(4) {
                if !cut.keep_pre.is_multiple_of(4) {
                    return Err(Error::refused(format!(
                        "{name}+{func:#x}: cannot keep {} bytes before an aligned 4-byte slot \
                         in code the linker relaxes (use --pre 0 or a multiple of 4)",
                        cut.keep_pre
                    )));
                }
                self.delta += ALIGN_RESERVE as i64;
                self.alignment_bytes += ALIGN_RESERVE;
                self.added_align = true;
                return Ok((0, true));
            }
        } else if !new_slot.is_multiple_of(4) {
            self.delta += 2;
            self.alignment_bytes += 2;
            return Ok((2, false));
        }
        Ok((0, false))
    }
}

/// What the walk reads of a section besides its bytes.
struct SectionFacts<'a> {
    /// The section's name, for messages.
    name: &'a str,
    /// The file has the C extension.
    rvc: bool,
    /// (offset, type) of every relocation but `R_RISCV_NONE`, sorted.
    relocated: Vec<(u64, u32)>,
    /// The points an `R_RISCV_ALIGN` of at least 2 bytes already aligns.
    aligned_points: HashSet<u64>,
}

impl<'a> SectionFacts<'a> {
    /// The facts of section `name` with relocations `relocs`.
    fn new(name: &'a str, rvc: bool, relocs: &[Reloc]) -> Self {
        let mut relocated: Vec<(u64, u32)> = relocs
            .iter()
            .filter(|r| r.r_type != elf::R_RISCV_NONE.0)
            .map(|r| (r.offset, r.r_type))
            .collect();
        relocated.sort_unstable();
        let aligned_points = relocs
            .iter()
            .filter(|r| r.r_type == elf::R_RISCV_ALIGN.0 && r.addend >= 2)
            .map(|r| r.offset.wrapping_add(r.addend as u64))
            .collect();
        SectionFacts {
            name,
            rvc,
            relocated,
            aligned_points,
        }
    }

    /// The first relocation in [from, to).
    fn reloc_in(&self, from: u64, to: u64) -> Option<(u64, u32)> {
        let k = self.relocated.partition_point(|&(o, _)| o < from);
        self.relocated.get(k).copied().filter(|&(o, _)| o < to)
    }

    /// How the pad of `site` is cut: as the options say (a patched site is kept whole),
    /// refused if the kept bytes split a nop or a relocation lies in what goes, and the cut
    /// after the slot stopped at the first relocation.
    fn cut_of(&self, site: &PatchSite, opts: CutOptions) -> Result<SlotLayout> {
        let name = self.name;
        let mut cut = SlotLayout::for_site(site, opts.slot, opts.pre);
        if matches!(site.state, SiteState::Patched(_)) {
            // A patched site is one instruction, kept as it is.
            cut = SlotLayout {
                keep_pre: 0,
                keep_slot: site.pad_bytes,
                cut_pre: 0,
                cut_post: 0,
            };
        }
        let entry = site.entry;
        let func = entry + u64::from(site.pre_bytes);
        let unit = if site.nop_kind == NopKind::CNop { 2 } else { 4 };
        if !cut.keep_pre.is_multiple_of(unit) {
            return Err(Error::refused(format!(
                "{name}+{func:#x}: cannot keep {} bytes of a pad made of {unit}-byte nops (--pre)",
                cut.keep_pre
            )));
        }
        if let Some((at, r_type)) = self.reloc_in(entry, entry + u64::from(cut.cut_pre)) {
            return Err(Error::refused(format!(
                "{name}+{at:#x}: relocation type {r_type} inside the pad of the function at {name}+{func:#x}"
            )));
        }
        // The nop run may continue into alignment nops or relocated code: cut only up to
        // the first relocation after the slot.
        let post = func + u64::from(cut.keep_slot);
        if let Some((at, _)) = self.reloc_in(post, post + u64::from(cut.cut_post)) {
            cut.cut_post = (at - post) as u32;
        }
        Ok(cut)
    }
}

/// One executable section and what refers to it.
pub struct SectionInput<'a> {
    /// Section index.
    pub index: usize,
    /// Its relocations.
    pub relocs: &'a [Reloc],
    /// Indices of the symbols defined in it.
    pub symbols: &'a [usize],
    /// Functions (entry, end) that get a slot inserted (`rewrite --insert`), sorted.
    pub inserts: &'a [(u64, u64)],
}

/// Plans the edits of executable section `input`, whose pads are `site_ids` (sorted by
/// entry).
pub fn plan_section(
    file: &ElfFile<'_>,
    input: &SectionInput<'_>,
    sites: &[PatchSite],
    site_ids: &[usize],
    opts: CutOptions,
) -> Result<SectionPlan> {
    let (index, relocs) = (input.index, input.relocs);
    let sec = &file.sections[index];
    let old = file.section_data(sec)?;
    let funcs: Vec<(u64, u64)> = input
        .symbols
        .iter()
        .map(|&k| &file.symbols[k])
        .filter(|s| s.kind == elf::STT_FUNC.0)
        .map(|s| (s.value, s.value.saturating_add(s.size)))
        .collect();
    let mut func_ends: Vec<u64> = funcs.iter().map(|f| f.1).collect();
    func_ends.sort_unstable();
    let points = walk_points(sites, site_ids, &funcs, input.inserts);
    let mut walk = Walk {
        first_relax: relocs.iter().filter(|r| relaxes(r)).map(|r| r.offset).min(),
        evidence: AlignmentEvidence {
            old,
            section_align: sec.align,
            func_ends,
        },
        edits: Vec::new(),
        delta: 0,
        added_align: false,
        alignment_bytes: 0,
        align: sec.align,
    };
    let facts = SectionFacts::new(sec.name, file.rvc(), relocs);
    let mut cuts = Vec::with_capacity(site_ids.len());
    for (_, point) in points {
        match point {
            Point::Site(i) => {
                let cut = facts.cut_of(&sites[i], opts)?;
                walk.cut_pad(&sites[i], cut, opts, &facts)?;
                cuts.push((i, cut));
            }
            Point::Func(x) => {
                if let Some(ins) = walk.keep_alignment(x, x) {
                    walk.edits.push(ins);
                }
            }
            Point::Slot(x, end) => walk.insert_slot(x, end, opts.slot, &facts)?,
        }
    }
    Ok(finish_section(index, old, walk, sites, &cuts, opts))
}

/// The points of a section the walk handles, in offset order: the pads `site_ids`, the
/// functions `inserts` (entry, end) that get a slot, and the other functions `funcs`
/// (start, end) that do not start inside a pad.
fn walk_points(
    sites: &[PatchSite],
    site_ids: &[usize],
    funcs: &[(u64, u64)],
    inserts: &[(u64, u64)],
) -> Vec<(u64, Point)> {
    let mut points: Vec<(u64, Point)> = site_ids
        .iter()
        .map(|&i| (sites[i].entry, Point::Site(i)))
        .collect();
    // Before the plain functions: the dedup below keeps the first point at an offset.
    points.extend(inserts.iter().map(|&(at, end)| (at, Point::Slot(at, end))));
    for &(value, _) in funcs {
        // Sites are sorted by entry: the last one at or before `value` is the only one
        // whose pad can hold it.
        let k = site_ids.partition_point(|&i| sites[i].entry <= value);
        let in_pad = k.checked_sub(1).is_some_and(|k| {
            let s = &sites[site_ids[k]];
            value <= s.entry + u64::from(s.pad_bytes)
        });
        if !in_pad {
            points.push((value, Point::Func(value)));
        }
    }
    // Stable: at one offset a pad or a slot stays in front of a plain function.
    points.sort_by_key(|p| p.0);
    points.dedup_by_key(|p| p.0);
    points
}

/// The plan of section `index` (bytes `old`) once the walk is done: the offset map, the new
/// bytes, and one 4-byte nop in each 4-byte slot.
fn finish_section(
    index: usize,
    old: &[u8],
    walk: Walk<'_>,
    sites: &[PatchSite],
    cuts: &[(usize, SlotLayout)],
    opts: CutOptions,
) -> SectionPlan {
    let Walk {
        mut edits,
        alignment_bytes,
        align,
        ..
    } = walk;
    edits.sort_by_key(|e| e.at());
    let (map, inserted) = OffsetMap::new(old.len() as u64, &edits);
    let mut bytes = build_bytes(old, &edits);
    for &(i, cut) in cuts {
        let site = &sites[i];
        let slot = map.map(site.entry + u64::from(site.pre_bytes));
        if opts.slot == 4 && cut.keep_slot == 4 && !matches!(site.state, SiteState::Patched(_)) {
            // One 4-byte nop, whatever the pad was made of.
            let at = slot as usize;
            bytes[at..at + 4].copy_from_slice(&NOP.to_le_bytes());
        }
    }
    SectionPlan {
        index,
        map,
        inserted,
        bytes,
        align,
        alignment_bytes,
    }
}

/// Applies `edits` (sorted) to `old`: removed bytes go, inserted ones are `c.nop`s (4-byte
/// `nop`s where they fit), slots are 4-byte `nop`s.
fn build_bytes(old: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = Vec::with_capacity(old.len());
    let mut at = 0usize;
    for e in edits {
        let pos = (e.at() as usize).min(old.len());
        if pos > at {
            out.extend_from_slice(&old[at..pos]);
            at = pos;
        }
        match *e {
            Edit::Remove { len, .. } => at = (at + len as usize).min(old.len()),
            Edit::Slot { len, .. } => {
                for _ in 0..len / 4 {
                    out.extend_from_slice(&NOP.to_le_bytes());
                }
            }
            Edit::Insert { len, .. } => {
                let mut left = len;
                while left >= 4 {
                    out.extend_from_slice(&NOP.to_le_bytes());
                    left -= 4;
                }
                while left >= 2 {
                    out.extend_from_slice(&C_NOP.to_le_bytes());
                    left -= 2;
                }
            }
        }
    }
    out.extend_from_slice(&old[at..]);
    out
}
