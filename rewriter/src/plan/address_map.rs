//! [`AddressMap`]: where every original address ends up in the rewritten image.
//!
//! Inside a rewritten executable section the map is piecewise: a sorted list of edits (cut
//! `n` bytes at `at`, or insert `n` bytes of padding at `at`) applied in address order. Other
//! sections move as a block. An address inside a cut collapses onto the first byte after it,
//! which is where a reference to a removed pad byte must land (the slot or the next insn).

/// One change to an executable section's bytes, in original addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    /// Remove `len` bytes starting at `at`.
    Cut {
        /// First removed byte.
        at: u64,
        /// Number of bytes removed.
        len: u64,
    },
    /// Insert `len` bytes of nop padding just before the byte at `at`.
    Insert {
        /// The byte the padding goes in front of.
        at: u64,
        /// Number of bytes inserted.
        len: u64,
    },
    /// Insert a `len`-byte slot of nops at a function entry `at` (`rewrite --insert`): unlike
    /// [`Edit::Insert`], `at` itself maps to the slot's first byte (references to the entry
    /// go through the slot), and only the bytes after `at` move by `len`.
    Slot {
        /// The function entry the slot goes in front of.
        at: u64,
        /// Number of slot bytes.
        len: u64,
    },
}

impl Edit {
    /// The original address the edit happens at.
    pub fn at(&self) -> u64 {
        match *self {
            Edit::Cut { at, .. } | Edit::Insert { at, .. } | Edit::Slot { at, .. } => at,
        }
    }
    /// Net change in size (negative for cuts).
    pub fn delta(&self) -> i64 {
        match *self {
            Edit::Cut { len, .. } => -(len as i64),
            Edit::Insert { len, .. } | Edit::Slot { len, .. } => len as i64,
        }
    }
}

/// How one original section maps into the new image.
#[derive(Debug, Clone)]
pub struct SectionMove {
    /// Section index in the original file.
    pub index: usize,
    /// Original start address.
    pub old_addr: u64,
    /// Original size.
    pub old_size: u64,
    /// New start address.
    pub new_addr: u64,
    /// New size (bytes that carry content; in-place layout adds free space after it).
    pub new_size: u64,
    /// Edits inside the section, sorted by address, non-overlapping.
    edits: Vec<Edit>,
    /// Net size change before each edit (same length as `edits`).
    delta_before: Vec<i64>,
    /// Lookup index: how many edits lie before each `1 << bucket_shift`-byte bucket of the
    /// section (one entry more than there are buckets), so a lookup searches one bucket's
    /// few edits instead of all of them.
    bucket_first: Vec<u32>,
    /// log2 of the bucket size, chosen so there are about as many buckets as edits.
    bucket_shift: u32,
    /// Occupies no address space of its own (`.tbss`): only used when nothing else matches.
    overlay: bool,
}

impl SectionMove {
    /// A section moved as a block.
    pub fn block(index: usize, old_addr: u64, old_size: u64, new_addr: u64) -> Self {
        SectionMove {
            index,
            old_addr,
            old_size,
            new_addr,
            new_size: old_size,
            edits: Vec::new(),
            delta_before: Vec::new(),
            bucket_first: Vec::new(),
            bucket_shift: 0,
            overlay: false,
        }
    }

    /// Marks the section as an overlay (see the field).
    pub fn overlay(mut self) -> Self {
        self.overlay = true;
        self
    }

    /// A section whose bytes are edited; `edits` must be sorted and non-overlapping.
    pub fn edited(
        index: usize,
        old_addr: u64,
        old_size: u64,
        new_addr: u64,
        edits: Vec<Edit>,
    ) -> Self {
        let mut delta_before = Vec::with_capacity(edits.len());
        let mut delta = 0i64;
        for e in &edits {
            delta_before.push(delta);
            delta += e.delta();
        }
        let new_size = (old_size as i64 + delta) as u64;
        let (bucket_first, bucket_shift) = bucket_index(&edits, old_addr, old_size);
        SectionMove {
            index,
            old_addr,
            old_size,
            new_addr,
            new_size,
            edits,
            delta_before,
            bucket_first,
            bucket_shift,
            overlay: false,
        }
    }

    /// How many edits lie at or before `addr` (the index of the first edit after it).
    fn edits_through(&self, addr: u64) -> usize {
        let at_or_before = |e: &Edit| e.at() <= addr;
        let Some(off) = addr.checked_sub(self.old_addr) else {
            return 0;
        };
        let b = (off >> self.bucket_shift) as usize;
        match (self.bucket_first.get(b), self.bucket_first.get(b + 1)) {
            (Some(&lo), Some(&hi)) => {
                let (lo, hi) = (lo as usize, hi as usize);
                lo + self.edits[lo..hi].partition_point(at_or_before)
            }
            // Past the last bucket (the section's end) or no index: search everything.
            _ => self.edits.partition_point(at_or_before),
        }
    }

    /// The edits, sorted by address.
    pub fn edits(&self) -> &[Edit] {
        &self.edits
    }

    /// Maps an original address in `[old_addr, old_addr + old_size]` (end included).
    pub fn map(&self, addr: u64) -> u64 {
        let rel = self.map_offset(addr - self.old_addr);
        self.new_addr + rel
    }

    /// Maps an offset from the section start.
    pub fn map_offset(&self, off: u64) -> u64 {
        let addr = self.old_addr + off;
        // Last edit at or before addr.
        let i = self.edits_through(addr);
        if i == 0 {
            return off;
        }
        let e = self.edits[i - 1];
        let before = self.delta_before[i - 1];
        let new = match e {
            Edit::Cut { at, len } if addr < at + len => at as i64 + before,
            // The entry itself is the slot's first byte.
            Edit::Slot { at, .. } if addr == at => at as i64 + before,
            _ => addr as i64 + before + e.delta(),
        };
        (new - self.old_addr as i64) as u64
    }

    /// Maps the original address of a byte of code or data to where that byte now is: as
    /// [`SectionMove::map`], except that a function entry with an inserted slot is its first
    /// instruction, behind the slot.
    pub fn map_place(&self, addr: u64) -> u64 {
        let i = self.edits_through(addr);
        match i.checked_sub(1).map(|j| self.edits[j]) {
            Some(Edit::Slot { at, len }) if at == addr => self.map(addr) + len,
            _ => self.map(addr),
        }
    }

    /// Maps an end address (one past a range): padding inserted exactly at `addr` is not
    /// counted, so a function's size does not swallow the next one's alignment padding.
    pub fn map_end(&self, addr: u64) -> u64 {
        if addr <= self.old_addr {
            return self.map(addr);
        }
        self.map(addr - 1) + 1
    }

    /// True if `addr` lies inside a removed range.
    pub fn is_cut(&self, addr: u64) -> bool {
        let i = self.edits_through(addr);
        matches!(self.edits.get(i.wrapping_sub(1)), Some(Edit::Cut { at, len }) if addr < at + len)
    }
}

/// Builds the bucket index of [`SectionMove::edits_through`]: `first[b]` = edits before
/// bucket `b`. About one bucket per edit keeps it small whatever size a section claims.
fn bucket_index(edits: &[Edit], old_addr: u64, old_size: u64) -> (Vec<u32>, u32) {
    if edits.is_empty() || edits.len() > u32::MAX as usize {
        return (Vec::new(), 0);
    }
    let mut shift = 4;
    while shift < 63 && (old_size >> shift) > edits.len() as u64 {
        shift += 1;
    }
    let buckets = (old_size >> shift) as usize + 1;
    let mut first = Vec::with_capacity(buckets + 1);
    let mut i = 0usize;
    for b in 0..=buckets {
        let start = old_addr.saturating_add((b as u64) << shift);
        while i < edits.len() && edits[i].at() < start {
            i += 1;
        }
        first.push(i as u32);
    }
    (first, shift)
}

/// The map of the whole image: one [`SectionMove`] per allocated section (per section with
/// content in a relocatable file, where addresses are section offsets).
#[derive(Debug, Clone, Default)]
pub struct AddressMap {
    /// Moves sorted by original address (linked files).
    moves: Vec<SectionMove>,
    /// Position in `moves` by section index.
    by_index: Vec<Option<usize>>,
}

impl AddressMap {
    /// Builds the map; `moves` may come in any order.
    pub fn new(mut moves: Vec<SectionMove>, section_count: usize) -> Self {
        moves.sort_by_key(|m| (m.old_addr, m.old_size == 0, m.index));
        let mut by_index = vec![None; section_count];
        for (i, m) in moves.iter().enumerate() {
            if m.index < section_count {
                by_index[m.index] = Some(i);
            }
        }
        AddressMap { moves, by_index }
    }

    /// The move of section `index`.
    pub fn section(&self, index: usize) -> Option<&SectionMove> {
        self.moves.get((*self.by_index.get(index)?)?)
    }

    /// All moves, sorted by original address.
    pub fn moves(&self) -> &[SectionMove] {
        &self.moves
    }

    /// The move whose range holds `addr`, preferring a non-empty section; an address at a
    /// section's end belongs to it when no section starts there.
    fn find(&self, addr: u64) -> Option<&SectionMove> {
        let i = self.moves.partition_point(|m| m.old_addr <= addr);
        // Walk back over candidates starting at or before addr (few: sections at one address).
        let mut best: Option<&SectionMove> = None;
        let mut overlay: Option<&SectionMove> = None;
        for m in self.moves[..i].iter().rev().take(8) {
            if m.overlay {
                overlay = overlay.or(Some(m));
                continue;
            }
            if addr < m.old_addr + m.old_size {
                return Some(m);
            }
            if addr == m.old_addr + m.old_size && best.is_none() {
                best = Some(m);
            }
        }
        best.or(overlay)
    }

    /// Maps an original address; addresses outside every section are unchanged.
    pub fn map(&self, addr: u64) -> u64 {
        self.find(addr).map_or(addr, |m| m.map(addr))
    }

    /// Maps the place of a byte (see [`SectionMove::map_place`]).
    pub fn map_place(&self, addr: u64) -> u64 {
        self.find(addr).map_or(addr, |m| m.map_place(addr))
    }

    /// Maps the place of a byte known to lie in section `index` (see
    /// [`SectionMove::map_place`]).
    pub fn map_place_in(&self, index: usize, addr: u64) -> u64 {
        self.section(index).map_or(addr, |m| m.map_place(addr))
    }

    /// Maps an end address (see [`SectionMove::map_end`]).
    pub fn map_end(&self, addr: u64) -> u64 {
        match addr.checked_sub(1).and_then(|a| self.find(a)) {
            Some(m) => m.map_end(addr),
            None => self.map(addr),
        }
    }

    /// Maps an address known to lie in section `index` (needed in relocatable files, where
    /// every section starts at 0).
    pub fn map_in(&self, index: usize, addr: u64) -> u64 {
        self.section(index).map_or(addr, |m| m.map(addr))
    }

    /// True if `addr` was removed.
    pub fn is_cut(&self, addr: u64) -> bool {
        self.find(addr).is_some_and(|m| m.is_cut(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_and_inserts_map_in_order() {
        // Section at 0x100, 0x40 bytes: cut [0x104,0x110), insert 2 at 0x120, cut [0x130,0x134).
        let m = SectionMove::edited(
            1,
            0x100,
            0x40,
            0x100,
            vec![
                Edit::Cut { at: 0x104, len: 12 },
                Edit::Insert { at: 0x120, len: 2 },
                Edit::Cut { at: 0x130, len: 4 },
            ],
        );
        assert_eq!(m.new_size, 0x40 - 12 + 2 - 4);
        assert_eq!(m.map(0x100), 0x100);
        assert_eq!(m.map(0x104), 0x104);
        assert_eq!(m.map(0x108), 0x104, "inside a cut collapses to its end");
        assert_eq!(m.map(0x110), 0x104);
        assert_eq!(m.map(0x11e), 0x112);
        assert_eq!(m.map(0x120), 0x116, "padding goes in front of 0x120");
        assert_eq!(
            m.map_end(0x120),
            0x114,
            "an end does not swallow the padding"
        );
        assert_eq!(m.map(0x134), 0x134 - 12 + 2 - 4);
        assert_eq!(m.map(0x140), 0x100 + m.new_size);
        assert!(m.is_cut(0x10f) && !m.is_cut(0x110) && !m.is_cut(0x103));
    }

    #[test]
    fn a_slot_takes_its_entry_and_moves_what_follows() {
        // Section at 0x100: 2 bytes of alignment and a 4-byte slot at the entry 0x110.
        let m = SectionMove::edited(
            1,
            0x100,
            0x40,
            0x100,
            vec![
                Edit::Insert { at: 0x110, len: 2 },
                Edit::Slot { at: 0x110, len: 4 },
            ],
        );
        assert_eq!(m.new_size, 0x46);
        assert_eq!(m.map(0x10e), 0x10e);
        assert_eq!(m.map(0x110), 0x112, "the entry is the slot's first byte");
        assert_eq!(
            m.map(0x112),
            0x118,
            "code after the entry moves by the slot"
        );
        assert_eq!(
            m.map_place(0x110),
            0x116,
            "the entry's instruction is behind the slot"
        );
        assert_eq!(m.map_place(0x112), 0x118);
        assert_eq!(
            m.map_end(0x110),
            0x110,
            "the function before ends where it did"
        );
        assert_eq!(m.map_end(0x140), 0x146);
    }

    #[test]
    fn sections_move_as_blocks() {
        let text = SectionMove::edited(
            1,
            0x1000,
            0x100,
            0x1000,
            vec![Edit::Cut {
                at: 0x1010,
                len: 0x20,
            }],
        );
        let data = SectionMove::block(2, 0x2000, 0x10, 0x1000 + 0xe0 + 0x20);
        let map = AddressMap::new(vec![data, text], 3);
        assert_eq!(map.map(0x1100), 0x10e0, "end of text");
        assert_eq!(map.map(0x2008), 0x1108);
        assert_eq!(map.map(0x5000), 0x5000, "outside everything: unchanged");
        assert_eq!(map.map_in(2, 0x2000), 0x1100);
    }

    #[test]
    fn the_bucket_index_agrees_with_a_full_search() {
        // Edits of varied spacing, some sharing a bucket, some buckets empty.
        let mut edits = Vec::new();
        let mut at = 0x1002u64;
        for k in 0..500u64 {
            edits.push(if k % 3 == 0 {
                Edit::Insert { at, len: 2 }
            } else {
                Edit::Cut { at, len: 4 + k % 8 }
            });
            at += 12 + (k * 7919) % 300;
        }
        let size = at + 64 - 0x1000;
        let m = SectionMove::edited(1, 0x1000, size, 0x1000, edits.clone());
        for addr in 0x1000..=0x1000 + size {
            let full = edits.partition_point(|e| e.at() <= addr);
            assert_eq!(m.edits_through(addr), full, "at {addr:#x}");
        }
        assert_eq!(m.edits_through(0xfff), 0);
    }
}
