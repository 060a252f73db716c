//! What a scan finds: patch sites, the problems of unusable table entries, where the table
//! came from.

use std::collections::BTreeMap;

/// Name of the table section GCC and clang emit.
pub const TABLE_SECTION: &str = "__patchable_function_entries";

/// Which nop encoding a pad is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum NopKind {
    /// Only `c.nop` (2 bytes each).
    #[serde(rename = "c.nop")]
    CNop,
    /// Only `nop` (4 bytes each).
    #[serde(rename = "nop")]
    Nop,
    /// Both kinds.
    #[serde(rename = "mixed")]
    Mixed,
    /// No nops (the pad was patched).
    #[serde(rename = "none")]
    None,
}

impl NopKind {
    /// The word reports print (as in JSON): `c.nop`, `nop`, `mixed` or `none`.
    pub fn name(self) -> &'static str {
        match self {
            NopKind::CNop => "c.nop",
            NopKind::Nop => "nop",
            NopKind::Mixed => "mixed",
            NopKind::None => "none",
        }
    }
}

/// What a pad currently holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteState {
    /// Intact nops.
    Nops,
    /// Already patched: the first instruction, a `jal t0` or `auipc t0` call form.
    Patched(u32),
}

/// One pad: a table entry that points at a run of nops at a function's entry.
#[derive(Debug, Clone)]
pub struct PatchSite {
    /// Index of the executable section holding the pad.
    pub section: usize,
    /// Address of the first pad byte (the table entry); a section offset in a `.o`.
    pub entry: u64,
    /// Index into [`crate::elf::ElfFile::symbols`] of the function the pad belongs to.
    pub symbol: Option<usize>,
    /// Address of that function's symbol (entry + pre_bytes when M nops precede it).
    pub func_addr: u64,
    /// Pad size in bytes.
    pub pad_bytes: u32,
    /// Pad size in instructions.
    pub pad_insns: u32,
    /// Pad bytes before the function symbol (M nops).
    pub pre_bytes: u32,
    /// Which nops the pad is made of.
    pub nop_kind: NopKind,
    /// Largest power of two dividing `entry`, capped at 64.
    pub align: u32,
    /// Intact or patched.
    pub state: SiteState,
}

/// Why a table entry is not a usable patch site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The entry is zero.
    Zero,
    /// The entry is not inside an executable section.
    OutsideText,
    /// The entry points into the middle of an instruction.
    MidInstruction,
    /// The entry holds an instruction that is neither a nop nor a known patch.
    NoNop(u32),
    /// The entry's distance to its function differs from the rest of the binary.
    Misplaced {
        /// Function symbol minus entry for this site.
        offset: i64,
        /// The offset most sites have.
        expected: i64,
    },
    /// A relocatable table entry without a relocation, or one against an unusable symbol.
    Unresolved,
    /// The entry has no function of its own and follows a nop: it points inside a pad.
    NotRunStart {
        /// Address of the closest function symbol before the entry.
        function: u64,
    },
}

impl Problem {
    /// Short machine-readable name: `zero`, `outside-text`, `mid-instruction`, `no-nop`,
    /// `misplaced`, `unresolved` or `not-run-start`.
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::Zero => "zero",
            Problem::OutsideText => "outside-text",
            Problem::MidInstruction => "mid-instruction",
            Problem::NoNop(_) => "no-nop",
            Problem::Misplaced { .. } => "misplaced",
            Problem::Unresolved => "unresolved",
            Problem::NotRunStart { .. } => "not-run-start",
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Zero => write!(f, "table entry is zero"),
            Problem::OutsideText => write!(f, "not inside an executable section"),
            Problem::MidInstruction => write!(f, "points into the middle of an instruction"),
            Problem::NoNop(raw) => write!(f, "holds no nop (instruction {raw:#x})"),
            Problem::Misplaced { offset, expected } => write!(
                f,
                "is {offset} bytes from its function's symbol where the other sites are {expected}"
            ),
            Problem::Unresolved => write!(f, "table entry has no usable relocation"),
            Problem::NotRunStart { function } => write!(
                f,
                "is not at the start of a nop run (inside the pad of the function at {function:#x})"
            ),
        }
    }
}

/// A table entry that is not a usable patch site.
#[derive(Debug, Clone)]
pub struct SiteProblem {
    /// The address the entry holds (section offset in a `.o`).
    pub address: u64,
    /// Executable section the address falls in, if any.
    pub section: Option<usize>,
    /// What is wrong.
    pub problem: Problem,
}

/// Where the table entries were read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableSource {
    /// Relocations of `__patchable_function_entries` in a relocatable object.
    Relocations,
    /// Section bytes, with `R_RISCV_RELATIVE` addends where the loader fills them.
    Section,
    /// The kernel's `__start_mcount_loc..__stop_mcount_loc`.
    KernelMcountLoc,
    /// The `__mcount_loc` that `padtrim rewrite --insert` wrote into a linked file that has
    /// no allocated `__patchable_function_entries` (its slots were inserted, not left by a
    /// compiler; the non-allocated copy it also wrote lists the same slots).
    InsertedMcountLoc,
    /// No table in the file.
    None,
}

impl TableSource {
    /// Where the entries came from, in words.
    pub fn describe(self) -> &'static str {
        match self {
            TableSource::Relocations => "the relocations of __patchable_function_entries",
            TableSource::Section => "__patchable_function_entries",
            TableSource::KernelMcountLoc => "__mcount_loc (__start_mcount_loc..__stop_mcount_loc)",
            TableSource::InsertedMcountLoc => "__mcount_loc (slots padtrim rewrite --insert added)",
            TableSource::None => "nowhere (no table)",
        }
    }
}

/// The result of scanning one file.
#[derive(Debug, Clone)]
pub struct Scan {
    /// Usable sites, sorted by (section, entry).
    pub sites: Vec<PatchSite>,
    /// Entries that are not usable sites.
    pub problems: Vec<SiteProblem>,
    /// Number of table entries read.
    pub entries: usize,
    /// Where the entries came from.
    pub source: TableSource,
    /// Histogram of (function symbol - entry) over entries whose function is known: usable
    /// and misplaced sites, and entries that point into a pad or at another instruction
    /// next to a function (not zero, outside-text or mid-instruction ones).
    pub entry_offsets: BTreeMap<i64, usize>,
    /// Address of the table (first entry) in a linked file.
    pub table_addr: Option<u64>,
}

impl Scan {
    /// Number of zero entries.
    pub fn zero_entries(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.problem == Problem::Zero)
            .count()
    }
    /// Number of invalid entries other than zero ones.
    pub fn invalid_entries(&self) -> usize {
        self.problems.len() - self.zero_entries()
    }
}
