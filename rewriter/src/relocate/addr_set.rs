//! [`AddrSet`]: a set of instruction addresses, as one bit per 2-byte parcel of the
//! executable sections, with a hash set for anything outside them.
//!
//! The decoding sweep asks "was this instruction fixed through a relocation?" for every
//! instruction of the program: a bit test instead of a hash lookup keeps that pass linear
//! in cache-friendly memory (a 6 MB `.text` needs 400 KB of bits).

use rustc_hash::FxHashSet;

use crate::elf::ElfFile;

/// A set of original addresses (see the module).
#[derive(Debug, Default)]
pub(crate) struct AddrSet {
    /// (start, end, bits) of each executable section, by start address.
    ranges: Vec<(u64, u64, Vec<u64>)>,
    /// Addresses outside every range (and odd ones).
    other: FxHashSet<u64>,
}

impl AddrSet {
    /// An empty set with bitmaps for `file`'s executable sections.
    pub fn for_code(file: &ElfFile<'_>) -> Self {
        let mut ranges: Vec<_> = file
            .sections
            .iter()
            .filter(|s| s.is_exec() && s.is_alloc() && !s.is_nobits())
            // Only sections whose bytes exist: a header claiming a huge size gets no bitmap.
            .filter_map(|s| {
                let len = file.section_data(s).ok()?.len() as u64;
                Some((
                    s.addr,
                    s.addr.checked_add(len)?,
                    vec![0u64; (len / 2 / 64 + 1) as usize],
                ))
            })
            .collect();
        ranges.sort_by_key(|r| r.0);
        AddrSet {
            ranges,
            other: FxHashSet::default(),
        }
    }

    fn slot(&self, addr: u64) -> Option<(usize, usize, u64)> {
        if !addr.is_multiple_of(2) {
            return None;
        }
        let i = self
            .ranges
            .partition_point(|r| r.0 <= addr)
            .checked_sub(1)?;
        let (start, end, _) = &self.ranges[i];
        if addr >= *end {
            return None;
        }
        let bit = (addr - start) / 2;
        Some((i, (bit / 64) as usize, 1u64 << (bit % 64)))
    }

    /// Adds `addr`.
    pub fn insert(&mut self, addr: u64) {
        match self.slot(addr) {
            Some((r, word, mask)) => self.ranges[r].2[word] |= mask,
            None => {
                self.other.insert(addr);
            }
        }
    }

    /// True if `addr` was added.
    pub fn contains(&self, addr: &u64) -> bool {
        match self.slot(*addr) {
            Some((r, word, mask)) => self.ranges[r].2[word] & mask != 0,
            None => self.other.contains(addr),
        }
    }
}
