//! [`OffsetMap`]: where each original byte of one edited section ends up.
//!
//! A section is edited by removing byte ranges and inserting new bytes (alignment nops) in
//! front of kept bytes. The map records the kept runs. An offset that was removed, or in
//! front of which bytes were inserted, maps onto the first kept byte at or after it: a
//! label at a removed pad byte lands on what now follows (the slot or the first real
//! instruction), and a label in front of an inserted nop lands after the nop, where the
//! code it named now is.
//!
//! `rewrite --insert` adds a third edit, [`Edit::Slot`]: a slot of nops in front of a
//! function's first instruction. Bytes still map behind it ([`OffsetMap::map`]: a relocation
//! on the first instruction stays on it), but a *reference* to the entry goes through the
//! slot ([`OffsetMap::map_reference`]): the function symbol, a call, a pointer.

/// One edit of a section, in original offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    /// Remove `len` bytes starting at `at`.
    Remove {
        /// First removed byte.
        at: u64,
        /// Number of bytes removed.
        len: u64,
    },
    /// Insert `len` bytes of nops in front of the original byte at `at`.
    Insert {
        /// The original byte the nops go in front of.
        at: u64,
        /// Number of bytes inserted.
        len: u64,
        /// The nops are an `R_RISCV_ALIGN` reserve the linker trims (else fixed padding).
        align: bool,
    },
    /// Insert a `len`-byte slot of 4-byte nops in front of the function entry `at`.
    Slot {
        /// The function entry (its first instruction) the slot goes in front of.
        at: u64,
        /// Number of slot bytes (a multiple of 4).
        len: u64,
        /// End of the function (one past its last byte, original offsets).
        end: u64,
    },
}

impl Edit {
    /// The original offset the edit happens at.
    pub fn at(&self) -> u64 {
        match *self {
            Edit::Remove { at, .. } | Edit::Insert { at, .. } | Edit::Slot { at, .. } => at,
        }
    }
}

/// A run of kept original bytes and where it starts in the new section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    old_start: u64,
    old_end: u64,
    new_start: u64,
}

/// An inserted slot: where its function starts and ends (original offsets) and where the
/// slot starts now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotAt {
    /// The function's entry (original offset).
    pub old: u64,
    /// One past the function's last byte (original offset).
    pub old_end: u64,
    /// New offset of the slot's first byte.
    pub new: u64,
}

/// Old → new offsets of one section.
#[derive(Debug, Clone)]
pub struct OffsetMap {
    runs: Vec<Run>,
    old_size: u64,
    new_size: u64,
    /// The inserted slots, sorted by entry.
    slots: Vec<SlotAt>,
}

/// Where an inserted range went: its new offset, length and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    /// New offset of the first inserted byte.
    pub new_offset: u64,
    /// Number of bytes.
    pub len: u64,
    /// An `R_RISCV_ALIGN` reserve.
    pub align: bool,
}

impl OffsetMap {
    /// The identity map of a section of `size` bytes.
    pub fn identity(size: u64) -> Self {
        OffsetMap {
            runs: vec![Run {
                old_start: 0,
                old_end: size,
                new_start: 0,
            }],
            old_size: size,
            new_size: size,
            slots: Vec::new(),
        }
    }

    /// Builds the map of a section of `size` bytes from `edits`, which must be sorted by
    /// offset, in bounds and non-overlapping (an insert may sit at a removal's end).
    /// Returns the map and the new place of every insert, in order.
    pub fn new(size: u64, edits: &[Edit]) -> (Self, Vec<Inserted>) {
        let mut runs = Vec::new();
        let mut inserted = Vec::new();
        let mut slots = Vec::new();
        let (mut old, mut new) = (0u64, 0u64);
        for e in edits {
            let at = e.at().min(size);
            if at > old {
                runs.push(Run {
                    old_start: old,
                    old_end: at,
                    new_start: new,
                });
                new += at - old;
                old = at;
            }
            match *e {
                Edit::Remove { len, .. } => old = (old + len).min(size),
                Edit::Insert { len, align, .. } => {
                    inserted.push(Inserted {
                        new_offset: new,
                        len,
                        align,
                    });
                    new += len;
                }
                Edit::Slot { at, len, end } => {
                    slots.push(SlotAt {
                        old: at,
                        old_end: end,
                        new,
                    });
                    new += len;
                }
            }
        }
        if size > old {
            runs.push(Run {
                old_start: old,
                old_end: size,
                new_start: new,
            });
            new += size - old;
        }
        let map = OffsetMap {
            runs,
            old_size: size,
            new_size: new,
            slots,
        };
        (map, inserted)
    }

    /// Size of the section after the edits.
    pub fn new_size(&self) -> u64 {
        self.new_size
    }

    /// Size of the section before the edits.
    pub fn old_size(&self) -> u64 {
        self.old_size
    }

    /// The inserted slots, sorted by entry.
    pub fn slots(&self) -> &[SlotAt] {
        &self.slots
    }

    /// The slot inserted at the function entry `off`, if there is one.
    pub fn slot_at(&self, off: u64) -> Option<SlotAt> {
        let k = self.slots.partition_point(|s| s.old < off);
        self.slots.get(k).copied().filter(|s| s.old == off)
    }

    /// Maps the target of a reference (a symbol, a call, a pointer): as [`OffsetMap::map`],
    /// except that a function entry with an inserted slot is the slot's first byte.
    pub fn map_reference(&self, off: u64) -> u64 {
        self.slot_at(off).map_or_else(|| self.map(off), |s| s.new)
    }

    /// [`OffsetMap::map_signed`] for the target of a reference ([`OffsetMap::map_reference`]).
    pub fn map_signed_reference(&self, off: i64) -> i64 {
        match u64::try_from(off).ok().and_then(|o| self.slot_at(o)) {
            Some(s) => s.new as i64,
            None => self.map_signed(off),
        }
    }

    /// True if a jump that does not link, at original offset `from`, to the entry `target`
    /// loops back inside its own function: it goes behind the slot, not through it.
    pub fn loops_to_own_entry(&self, from: u64, target: u64) -> bool {
        self.slot_at(target)
            .is_some_and(|s| from >= s.old && from < s.old_end)
    }

    /// True if nothing moves.
    pub fn is_identity(&self) -> bool {
        self.new_size == self.old_size && self.runs.iter().all(|r| r.old_start == r.new_start)
    }

    /// Maps an offset in `[0, size]`: kept bytes move with their run; removed offsets and
    /// offsets with inserted bytes in front of them land on the next kept byte.
    pub fn map(&self, off: u64) -> u64 {
        let i = self.runs.partition_point(|r| r.old_end <= off);
        match self.runs.get(i) {
            Some(r) if off >= r.old_start => r.new_start + (off - r.old_start),
            Some(r) => r.new_start,
            None => self.new_size,
        }
    }

    /// Maps an end offset (one past a range): the end of the last kept byte before it, so
    /// a size never swallows bytes inserted in front of what follows.
    pub fn map_end(&self, off: u64) -> u64 {
        let i = self.runs.partition_point(|r| r.old_start < off);
        match i.checked_sub(1).map(|k| self.runs[k]) {
            Some(r) => r.new_start + (off.min(r.old_end) - r.old_start),
            None => 0,
        }
    }

    /// Maps a possibly out-of-range offset (a symbol plus addend before the start or past
    /// the end of its section): the distance beyond the section is kept.
    pub fn map_signed(&self, off: i64) -> i64 {
        if off < 0 {
            off
        } else if off as u64 > self.old_size {
            (self.new_size as i64).wrapping_add(off - self.old_size as i64)
        } else {
            self.map(off as u64) as i64
        }
    }

    /// True if the byte at `off` was removed.
    pub fn is_removed(&self, off: u64) -> bool {
        if off >= self.old_size {
            return false;
        }
        let i = self.runs.partition_point(|r| r.old_end <= off);
        !matches!(self.runs.get(i), Some(r) if off >= r.old_start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removals_and_inserts_map_onto_next_kept_byte() {
        // 0x40 bytes: remove [4,8), insert 2 before 8, remove [12,24).
        let (m, ins) = OffsetMap::new(
            0x40,
            &[
                Edit::Remove { at: 4, len: 4 },
                Edit::Insert {
                    at: 8,
                    len: 2,
                    align: true,
                },
                Edit::Remove { at: 12, len: 12 },
            ],
        );
        assert_eq!(m.new_size(), 0x40 - 4 + 2 - 12);
        assert_eq!(
            ins,
            vec![Inserted {
                new_offset: 4,
                len: 2,
                align: true
            }]
        );
        assert_eq!(m.map(0), 0);
        assert_eq!(
            m.map(4),
            6,
            "removed byte lands after the insert, on the kept byte"
        );
        assert_eq!(m.map(8), 6);
        assert_eq!(m.map(11), 9);
        assert_eq!(m.map(12), 10);
        assert_eq!(m.map(24), 10);
        assert_eq!(m.map(0x40), m.new_size());
        assert_eq!(m.map_end(4), 4, "an end does not swallow the insert");
        assert_eq!(m.map_end(8), 4);
        assert_eq!(m.map_end(12), 10);
        assert_eq!(m.map_end(0x40), m.new_size());
        assert!(m.is_removed(4) && m.is_removed(7) && !m.is_removed(8));
        assert!(m.is_removed(23) && !m.is_removed(24));
        assert_eq!(m.map_signed(-4), -4);
        assert_eq!(m.map_signed(0x44), m.new_size() as i64 + 4);
    }

    #[test]
    fn identity_and_removal_at_the_end() {
        assert!(OffsetMap::identity(10).is_identity());
        let (m, _) = OffsetMap::new(16, &[Edit::Remove { at: 8, len: 8 }]);
        assert_eq!(m.map(8), 8);
        assert_eq!(m.map(16), 8);
        assert_eq!(m.map_end(16), 8);
        assert!(!m.is_identity());
        let (m, _) = OffsetMap::new(16, &[Edit::Remove { at: 0, len: 4 }]);
        assert_eq!(m.map(0), 0);
        assert_eq!(m.map(4), 0);
        assert_eq!(m.map(6), 2);
        assert_eq!(m.map_end(4), 0);
    }

    #[test]
    fn a_slot_takes_references_to_its_entry_and_bytes_stay_behind_it() {
        // Functions at 0 (to 0x10) and 0x10 (to 0x20); a reserve of 2 and a 4-byte slot at 0x10.
        let (m, ins) = OffsetMap::new(
            0x20,
            &[
                Edit::Insert {
                    at: 0x10,
                    len: 2,
                    align: true,
                },
                Edit::Slot {
                    at: 0x10,
                    len: 4,
                    end: 0x20,
                },
            ],
        );
        assert_eq!(m.new_size(), 0x26);
        assert_eq!(ins.len(), 1, "a slot is not an alignment reserve");
        assert_eq!(
            m.map(0x10),
            0x16,
            "the first instruction is behind the slot"
        );
        assert_eq!(m.map_reference(0x10), 0x12, "the entry is the slot");
        assert_eq!(m.map_signed_reference(0x10), 0x12);
        assert_eq!(m.map_reference(0x14), 0x1a);
        assert_eq!(
            m.map_end(0x10),
            0x10,
            "the function before ends before the reserve"
        );
        assert_eq!(m.map_end(0x20), 0x26);
        assert!(m.loops_to_own_entry(0x18, 0x10));
        assert!(
            !m.loops_to_own_entry(0x8, 0x10),
            "from another function: a call"
        );
        assert!(!m.loops_to_own_entry(0x20, 0x10));
        assert!(!m.is_identity());
    }
}
