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

/// An `R_RISCV_ALIGN` that already aligns `point` to at least 4 bytes.
fn aligned_by_existing(relocs: &[Reloc], point: u64) -> bool {
    relocs.iter().any(|r| {
        r.r_type == elf::R_RISCV_ALIGN.0
            && r.addend >= 2
            && r.offset.wrapping_add(r.addend as u64) == point
    })
}

/// Plans the edits of executable section `index`, whose pads are `site_ids` (sorted by
/// entry) and whose relocations are `relocs`.
pub fn plan_section(
    file: &ElfFile<'_>,
    index: usize,
    sites: &[PatchSite],
    site_ids: &[usize],
    relocs: &[Reloc],
    opts: CutOptions,
) -> Result<SectionPlan> {
    let sec = &file.sections[index];
    let old = file.section_data(sec)?;
    let size = old.len() as u64;
    let rvc = file.rvc();
    let name = sec.name;
    let mut edits = Vec::new();
    let mut cuts = Vec::with_capacity(site_ids.len());
    let mut align = sec.align;
    let mut alignment_bytes = 0u64;
    // Net size change so far (new offset - old offset of the next kept byte).
    let mut delta: i64 = 0;
    let mut added_align = false;
    let in_reloc = |from: u64, to: u64| {
        relocs
            .iter()
            .find(|r| r.offset >= from && r.offset < to && r.r_type != elf::R_RISCV_NONE.0)
    };
    for &i in site_ids {
        let site = &sites[i];
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
        if let Some(r) = in_reloc(entry, entry + u64::from(cut.cut_pre)) {
            return Err(Error::refused(format!(
                "{name}+{:#x}: relocation type {} inside the pad of the function at {name}+{func:#x}",
                r.offset, r.r_type
            )));
        }
        // The nop run may continue into alignment nops or relocated code: cut only up to
        // the first relocation after the slot.
        let post = func + u64::from(cut.keep_slot);
        if let Some(r) = in_reloc(post, post + u64::from(cut.cut_post)) {
            cut.cut_post = (r.offset - post) as u32;
        }
        let keep_from = entry + u64::from(cut.cut_pre);
        if cut.cut_pre > 0 {
            edits.push(Edit::Remove {
                at: entry,
                len: u64::from(cut.cut_pre),
            });
        }
        delta -= i64::from(cut.cut_pre);
        if opts.slot == 4 && cut.keep_slot == 4 && !matches!(site.state, SiteState::Patched(_)) {
            align = align.max(4);
            let new_slot = (func as i64 + delta) as u64;
            let relaxable = added_align || relocs.iter().any(|r| relaxes(r) && r.offset < entry);
            if !rvc {
                if !new_slot.is_multiple_of(4) {
                    return Err(Error::refused(format!(
                        "{name}+{func:#x}: slot would land at offset {new_slot:#x}, not 4-byte aligned"
                    )));
                }
            } else if relaxable {
                if !aligned_by_existing(relocs, entry) || !cut.keep_pre.is_multiple_of(4) {
                    if !cut.keep_pre.is_multiple_of(4) {
                        return Err(Error::refused(format!(
                            "{name}+{func:#x}: cannot keep {} bytes before an aligned 4-byte slot \
                             in code the linker relaxes (use --pre 0 or a multiple of 4)",
                            cut.keep_pre
                        )));
                    }
                    edits.push(Edit::Insert {
                        at: keep_from,
                        len: ALIGN_RESERVE,
                        align: true,
                    });
                    delta += ALIGN_RESERVE as i64;
                    alignment_bytes += ALIGN_RESERVE;
                    added_align = true;
                }
            } else if !new_slot.is_multiple_of(4) {
                edits.push(Edit::Insert {
                    at: keep_from,
                    len: 2,
                    align: false,
                });
                delta += 2;
                alignment_bytes += 2;
            }
        }
        if cut.cut_post > 0 {
            edits.push(Edit::Remove {
                at: post,
                len: u64::from(cut.cut_post),
            });
        }
        delta -= i64::from(cut.cut_post);
        cuts.push((i, cut));
    }
    edits.sort_by_key(|e| e.at());
    let (map, inserted) = OffsetMap::new(size, &edits);
    let mut bytes = build_bytes(old, &edits);
    for (i, cut) in cuts {
        let site = &sites[i];
        let slot = map.map(site.entry + u64::from(site.pre_bytes));
        if opts.slot == 4 && cut.keep_slot == 4 && !matches!(site.state, SiteState::Patched(_)) {
            // One 4-byte nop, whatever the pad was made of.
            let at = slot as usize;
            bytes[at..at + 4].copy_from_slice(&NOP.to_le_bytes());
        }
    }
    Ok(SectionPlan {
        index,
        map,
        inserted,
        bytes,
        align,
        alignment_bytes,
    })
}

/// Applies `edits` (sorted) to `old`: removed bytes go, inserted ones are `c.nop`s.
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
