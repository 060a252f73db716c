//! The old → new address map the verifier infers (it never asks the rewriter's plan).
//!
//! Non-executable allocated sections move as blocks, by the distance between their old and
//! new section headers. Executable sections are described by [`CodeMap`]s built by walking
//! old and new code in parallel: *rigid* pieces (instructions that must correspond one to
//! one) and nop *runs* (elastic: padding and pads may change length).

/// Where an original address must end up: one address, or any address of a range (an
/// address inside a nop run whose length changed has no single image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapped {
    /// Exactly this address.
    Exact(u64),
    /// Any address in `lo..=hi`.
    Range(u64, u64),
    /// The address lies in code the walk could not map (a mismatch was already reported).
    Unknown,
}

impl Mapped {
    /// The interval of acceptable values, if known.
    pub fn interval(self) -> Option<(u64, u64)> {
        match self {
            Mapped::Exact(x) => Some((x, x)),
            Mapped::Range(lo, hi) => Some((lo, hi)),
            Mapped::Unknown => None,
        }
    }

    /// True if `v` is an acceptable image (Unknown accepts everything).
    pub fn accepts(self, v: u64) -> bool {
        match self {
            Mapped::Exact(x) => v == x,
            Mapped::Range(lo, hi) => (lo..=hi).contains(&v),
            Mapped::Unknown => true,
        }
    }

    /// The single image, if there is one.
    pub fn exact(self) -> Option<u64> {
        match self {
            Mapped::Exact(x) => Some(x),
            _ => None,
        }
    }
}

impl std::fmt::Display for Mapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Mapped::Exact(x) => write!(f, "{x:#x}"),
            Mapped::Range(lo, hi) => write!(f, "{lo:#x}..={hi:#x}"),
            Mapped::Unknown => write!(f, "(unmapped)"),
        }
    }
}

/// A stretch of an executable section in both files.
#[derive(Debug, Clone, Copy)]
pub struct Piece {
    /// Old start address.
    pub old: u64,
    /// Old length.
    pub old_len: u64,
    /// New start address.
    pub new: u64,
    /// New length (equal to `old_len` for rigid pieces).
    pub new_len: u64,
    /// A nop run (elastic) rather than rigid code.
    pub run: bool,
}

/// A pad's place in the new file: its run's old entry and function address and their images.
#[derive(Debug, Clone, Copy)]
pub struct SiteImage {
    /// Old table entry (first pad byte).
    pub old_entry: u64,
    /// Old function symbol address.
    pub old_func: u64,
    /// New table entry.
    pub new_entry: u64,
    /// New function address (the slot start).
    pub new_func: u64,
}

/// A slot inserted in front of a function's first instruction (`rewrite --insert`): a
/// reference to the entry maps to the slot; the instruction itself is behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsertedSlot {
    /// Old function entry.
    pub old_func: u64,
    /// Old end of the function (its symbols' largest size).
    pub old_end: u64,
    /// New slot address (the new function address).
    pub new_slot: u64,
    /// New address of the function's first instruction (behind the slot).
    pub new_first: u64,
}

/// The inferred map of one executable section.
#[derive(Debug, Clone, Default)]
pub struct CodeMap {
    /// Old section index.
    pub old_index: usize,
    /// Pieces in address order, covering the section from its start without gaps.
    pub pieces: Vec<Piece>,
    /// The walk stopped here (a mismatch was reported); later addresses are unknown.
    pub failed_at: Option<u64>,
    /// Sites of this section, sorted by old entry.
    pub sites: Vec<SiteImage>,
    /// Slots inserted at function entries (`rewrite --insert`), sorted by old entry.
    pub inserted: Vec<InsertedSlot>,
    /// Old start of every piece (a compact copy for searching).
    starts: Vec<u64>,
    /// For every `BUCKET` bytes of the section: how many pieces start before that point.
    buckets: Vec<u32>,
    /// For every piece: the first of `sites` at or after its start (sites are looked up often:
    /// every reference to a function lands in its pad's run).
    first_site: Vec<u32>,
}

/// Bytes of old code per search bucket (log2).
const BUCKET_SHIFT: u32 = 6;

impl CodeMap {
    /// Prepares the search index; call once the pieces are final.
    pub fn index(&mut self) {
        self.starts = self.pieces.iter().map(|p| p.old).collect();
        let (Some(&base), Some(last)) = (self.starts.first(), self.pieces.last()) else {
            return;
        };
        let end = last.old + last.old_len;
        let n = ((end - base) >> BUCKET_SHIFT) as usize + 2;
        self.buckets = Vec::with_capacity(n);
        let mut i = 0usize;
        for b in 0..n as u64 {
            let at = base + (b << BUCKET_SHIFT);
            while i < self.starts.len() && self.starts[i] < at {
                i += 1;
            }
            self.buckets.push(i as u32);
        }
    }

    /// Sets the sites (sorted by old entry) and indexes them by piece.
    pub fn set_sites(&mut self, sites: Vec<SiteImage>) {
        self.sites = sites;
        let mut k = 0usize;
        self.first_site = self
            .pieces
            .iter()
            .map(|p| {
                while k < self.sites.len() && self.sites[k].old_entry < p.old {
                    k += 1;
                }
                k as u32
            })
            .collect();
    }

    /// Number of pieces starting at or before `x`.
    fn locate(&self, x: u64) -> usize {
        let starts = &self.starts;
        let Some(&base) = starts.first() else {
            return 0;
        };
        if x < base {
            return 0;
        }
        let b = ((x - base) >> BUCKET_SHIFT) as usize;
        match (self.buckets.get(b), self.buckets.get(b + 1)) {
            (Some(&lo), Some(&hi)) => {
                let (lo, hi) = (lo as usize, hi as usize);
                lo + starts[lo..hi].partition_point(|&s| s <= x)
            }
            _ => starts.partition_point(|&s| s <= x),
        }
    }

    /// The slot inserted at old function entry `x`, if there is one.
    pub fn inserted_at(&self, x: u64) -> Option<&InsertedSlot> {
        let i = self
            .inserted
            .binary_search_by_key(&x, |s| s.old_func)
            .ok()?;
        self.inserted.get(i)
    }

    /// Maps an address in `[start, end]` of the section (`end` = one past the last byte), as
    /// a reference: a function entry with an inserted slot maps to the slot.
    pub fn map(&self, x: u64) -> Mapped {
        if !self.inserted.is_empty() {
            if let Some(s) = self.inserted_at(x) {
                return Mapped::Exact(s.new_slot);
            }
        }
        self.map_place(x)
    }

    /// Maps the place of the byte at `x`: as [`CodeMap::map`], except that the first
    /// instruction of a function with an inserted slot is behind the slot.
    pub fn map_place(&self, x: u64) -> Mapped {
        if self.failed_at.is_some_and(|f| x >= f) {
            return Mapped::Unknown;
        }
        // The last piece starting at or before x that covers it.
        let i = self.locate(x);
        if i == 0 {
            return Mapped::Unknown;
        }
        let p = self.pieces[i - 1];
        if x < p.old + p.old_len {
            if !p.run {
                return Mapped::Exact(p.new + (x - p.old));
            }
            return self.map_in_run(i - 1, &p, x);
        }
        // Past the last covering piece: only the section end (or an empty trailing run).
        if i == self.pieces.len() {
            return match p.run {
                true => Mapped::Range(p.new, p.new + p.new_len),
                false => Mapped::Exact(p.new + p.new_len),
            };
        }
        // x is the start of a zero-length piece followed by nothing covering it.
        Mapped::Unknown
    }

    fn map_in_run(&self, piece: usize, p: &Piece, x: u64) -> Mapped {
        let i = match self.first_site.get(piece) {
            Some(&k) => k as usize,
            None => self.sites.partition_point(|s| s.old_entry < p.old),
        };
        for s in self.sites[i..]
            .iter()
            .take_while(|s| s.old_entry < p.old + p.old_len)
        {
            if x == s.old_entry {
                // A pad with nops before its function: its label may name the first kept
                // byte or the padding in front of it, which joins any nops before the pad
                // (the alignment padding of an aligned function) in one run.
                if s.old_entry != s.old_func && p.new < s.new_entry {
                    return Mapped::Range(p.new, s.new_entry);
                }
                return Mapped::Exact(s.new_entry);
            }
            if x == s.old_func {
                return Mapped::Exact(s.new_func);
            }
        }
        if x == p.old {
            return Mapped::Exact(p.new);
        }
        Mapped::Range(p.new, p.new + p.new_len)
    }

    /// Maps an end address (one past a range): the byte before it, plus one.
    pub fn map_end(&self, x: u64) -> Mapped {
        let Some(first) = self.pieces.first() else {
            return Mapped::Unknown;
        };
        if x <= first.old {
            return self.map(x);
        }
        match self.map(x - 1) {
            Mapped::Exact(v) => {
                // The byte before lies in a run: the end may be anywhere in the run.
                match self.run_at(x - 1) {
                    Some(p) => Mapped::Range(p.new, p.new + p.new_len),
                    None => Mapped::Exact(v + 1),
                }
            }
            Mapped::Range(lo, hi) => Mapped::Range(lo, hi.max(lo)),
            Mapped::Unknown => Mapped::Unknown,
        }
    }

    /// The run piece containing `x`, if `x` is in one.
    pub fn run_at(&self, x: u64) -> Option<Piece> {
        let i = self.locate(x);
        let p = *self.pieces.get(i.checked_sub(1)?)?;
        (p.run && x < p.old + p.old_len).then_some(p)
    }
}

/// How one allocated section maps.
#[derive(Debug, Clone)]
pub struct SectionImage {
    /// Old section index.
    pub old_index: usize,
    /// Old address.
    pub old_addr: u64,
    /// Old size.
    pub old_size: u64,
    /// New address.
    pub new_addr: u64,
    /// Position in [`Mapper::code`] for executable sections.
    pub code: Option<usize>,
}

/// The whole inferred map.
#[derive(Debug, Default)]
pub struct Mapper {
    /// Allocated sections with an address range (not `.tbss`), sorted by old address.
    pub sections: Vec<SectionImage>,
    /// Position in `sections` by old section index.
    pub by_index: Vec<Option<usize>>,
    /// Code maps of executable sections.
    pub code: Vec<CodeMap>,
    /// Trampoline islands the walks found (new addresses, sorted).
    pub islands: Vec<u64>,
}

impl Mapper {
    /// Maps an original address; an address outside every section maps to itself; one just
    /// past a section's end belongs to that section unless another section starts there.
    pub fn map(&self, x: u64) -> Mapped {
        let i = self.sections.partition_point(|s| s.old_addr <= x);
        if i == 0 {
            return Mapped::Exact(x);
        }
        let s = &self.sections[i - 1];
        if x <= s.old_addr + s.old_size {
            return self.map_in_image(s, x);
        }
        Mapped::Exact(x)
    }

    /// True if `x` lies inside (or at the end of) an allocated section of the old file.
    pub fn is_address(&self, x: u64) -> bool {
        let i = self.sections.partition_point(|s| s.old_addr <= x);
        i > 0 && x <= self.sections[i - 1].old_addr + self.sections[i - 1].old_size
    }

    /// Maps the place of a byte of section `index` (see [`CodeMap::map_place`]).
    pub fn map_place_in(&self, index: usize, x: u64) -> Mapped {
        match self.by_index.get(index).copied().flatten() {
            Some(i) => {
                let s = &self.sections[i];
                match s.code {
                    Some(c) => self.code[c].map_place(x),
                    None => self.map_in_image(s, x),
                }
            }
            None => self.map(x),
        }
    }

    /// The slot inserted at old function entry `x` (`rewrite --insert`), if any.
    pub fn inserted_at(&self, x: u64) -> Option<&InsertedSlot> {
        let i = self.sections.partition_point(|s| s.old_addr <= x);
        let s = self.sections.get(i.checked_sub(1)?)?;
        self.code.get(s.code?)?.inserted_at(x)
    }

    /// Maps an address relative to section `index` (which may be its end).
    pub fn map_in(&self, index: usize, x: u64) -> Mapped {
        match self.by_index.get(index).copied().flatten() {
            Some(i) => self.map_in_image(&self.sections[i], x),
            None => self.map(x),
        }
    }

    /// Maps the end of a range that starts at `start` (an address of some section).
    pub fn map_end_of(&self, start: u64, end: u64) -> Mapped {
        let i = self.sections.partition_point(|s| s.old_addr <= start);
        match i.checked_sub(1).map(|k| &self.sections[k]) {
            Some(s) if start < s.old_addr + s.old_size => self.map_end_in(s.old_index, end),
            _ => self.map(end),
        }
    }

    /// Maps an end address (one past a range) relative to section `index`.
    pub fn map_end_in(&self, index: usize, x: u64) -> Mapped {
        match self.by_index.get(index).copied().flatten() {
            Some(i) => {
                let s = &self.sections[i];
                match s.code {
                    Some(c) => self.code[c].map_end(x),
                    None => Mapped::Exact(s.new_addr.wrapping_add(x.wrapping_sub(s.old_addr))),
                }
            }
            None => self.map(x),
        }
    }

    fn map_in_image(&self, s: &SectionImage, x: u64) -> Mapped {
        match s.code {
            Some(c) => self.code[c].map(x),
            None => Mapped::Exact(s.new_addr.wrapping_add(x.wrapping_sub(s.old_addr))),
        }
    }

    /// The section image of old section `index`.
    pub fn image(&self, index: usize) -> Option<&SectionImage> {
        self.sections
            .get(self.by_index.get(index).copied().flatten()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code() -> CodeMap {
        let mut c = raw_code();
        c.index();
        c
    }

    fn raw_code() -> CodeMap {
        // old: rigid 0x100..0x108, run 0x108..0x118 (site entry 0x108, func 0x10c),
        //      rigid 0x118..0x120
        // new: rigid 0x100..0x108, run 0x108..0x10c,                       rigid 0x10c..0x114
        CodeMap {
            old_index: 1,
            pieces: vec![
                Piece {
                    old: 0x100,
                    old_len: 8,
                    new: 0x100,
                    new_len: 8,
                    run: false,
                },
                Piece {
                    old: 0x108,
                    old_len: 16,
                    new: 0x108,
                    new_len: 4,
                    run: true,
                },
                Piece {
                    old: 0x118,
                    old_len: 8,
                    new: 0x10c,
                    new_len: 8,
                    run: false,
                },
            ],
            failed_at: None,
            sites: vec![SiteImage {
                old_entry: 0x108,
                old_func: 0x10c,
                new_entry: 0x108,
                new_func: 0x108,
            }],
            ..CodeMap::default()
        }
    }

    #[test]
    fn rigid_runs_and_sites() {
        let c = code();
        assert_eq!(c.map(0x104), Mapped::Exact(0x104));
        assert_eq!(c.map(0x108), Mapped::Exact(0x108), "site entry");
        assert_eq!(c.map(0x10c), Mapped::Exact(0x108), "function");
        assert_eq!(c.map(0x110), Mapped::Range(0x108, 0x10c), "inside the run");
        assert_eq!(c.map(0x118), Mapped::Exact(0x10c));
        assert_eq!(c.map(0x120), Mapped::Exact(0x114), "section end");
        assert_eq!(c.map_end(0x108), Mapped::Exact(0x108));
        assert_eq!(c.map_end(0x118), Mapped::Range(0x108, 0x10c));
        assert_eq!(c.map_end(0x120), Mapped::Exact(0x114));
    }

    #[test]
    fn sections_move_as_blocks_and_ends_belong_to_their_section() {
        let mut m = Mapper::default();
        m.code.push(code());
        m.sections = vec![
            SectionImage {
                old_index: 1,
                old_addr: 0x100,
                old_size: 0x20,
                new_addr: 0x100,
                code: Some(0),
            },
            SectionImage {
                old_index: 2,
                old_addr: 0x200,
                old_size: 0x10,
                new_addr: 0x1f0,
                code: None,
            },
        ];
        m.by_index = vec![None, Some(0), Some(1)];
        assert_eq!(m.map(0x208), Mapped::Exact(0x1f8));
        assert_eq!(
            m.map(0x210),
            Mapped::Exact(0x200),
            "end of the last section"
        );
        assert_eq!(m.map(0x5000), Mapped::Exact(0x5000), "outside: unchanged");
        assert_eq!(m.map(0x120), Mapped::Exact(0x114));
        assert!(m.is_address(0x120) && !m.is_address(0x150));
    }
}
