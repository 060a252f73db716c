//! How one pad is cut ([`SlotLayout`]), and the saving a slot size would bring ([`project_savings`]).

use crate::scan::PatchSite;

/// How one pad is cut: what stays before and after the function symbol, and the padding
/// that puts the slot on its required alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLayout {
    /// Bytes kept before the function symbol (≤ the pad's M bytes).
    pub keep_pre: u32,
    /// Bytes kept at the function symbol: the slot (≤ the pad's bytes after the symbol).
    pub keep_slot: u32,
    /// Bytes removed before the symbol.
    pub cut_pre: u32,
    /// Bytes removed after the slot.
    pub cut_post: u32,
}

impl SlotLayout {
    /// Cuts `site`'s pad down to `slot` bytes at the symbol and `pre` bytes before it.
    pub fn for_site(site: &PatchSite, slot: u32, pre: u32) -> SlotLayout {
        let before = site.pre_bytes;
        let after = site.pad_bytes - before;
        // Whole nops only: half a 4-byte nop would be a broken instruction.
        let unit = if site.nop_kind == crate::scan::NopKind::Nop {
            4
        } else {
            2
        };
        let keep_pre = pre.min(before) / unit * unit;
        let keep_slot = slot.min(after);
        SlotLayout {
            keep_pre,
            keep_slot,
            cut_pre: before - keep_pre,
            cut_post: after - keep_slot,
        }
    }

    /// Bytes removed in all.
    pub fn cut(&self) -> u32 {
        self.cut_pre + self.cut_post
    }

    /// The alignment the slot start (the function symbol) must have in the new image, and
    /// the residue it must keep: a 4-byte slot is one aligned word; larger slots keep their
    /// original position modulo 4 so the kernel's own patching sees what it expects.
    pub fn required_residue(&self, old_symbol: u64) -> u64 {
        if self.keep_slot == 4 {
            0
        } else {
            old_symbol % 4
        }
    }
}

/// What a rewrite would save, estimated from the sites alone (no other alignment).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Projection {
    /// Net bytes removed (negative if alignment costs more than the cuts give).
    pub removed: i64,
    /// Bytes spent on aligning slots (included in `removed` as a reduction).
    pub alignment: u64,
}

/// Projects the saving of cutting every pad to `slot` bytes (and `pre` before the symbol),
/// simulating the packing of each section with slot alignment.
pub fn project_savings(sites: &[PatchSite], slot: u32, pre: u32) -> Projection {
    let mut total = Projection::default();
    let mut section = usize::MAX;
    let mut shift: i64 = 0; // bytes removed so far in this section
    for site in sites {
        if site.section != section {
            section = site.section;
            shift = 0;
        }
        let cut = SlotLayout::for_site(site, slot, pre);
        let new_symbol = site.func_addr as i64 - shift - i64::from(cut.cut_pre);
        let want = cut.required_residue(site.func_addr) as i64;
        let padding = (want - new_symbol).rem_euclid(4);
        let removed = i64::from(cut.cut()) - padding;
        shift += removed;
        total.alignment += padding as u64;
        total.removed += removed;
    }
    total
}
