//! What verification found: counts of what was checked, and the first mismatches.

use serde::Serialize;

/// How many mismatches a report keeps (all are counted).
pub const MAX_MISMATCHES: usize = 50;

/// Defines [`Counts`] and its field-wise sum from one list of fields.
macro_rules! counts {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        /// Counts of what was checked, by category.
        #[derive(Debug, Clone, Default, Serialize)]
        pub struct Counts {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl Counts {
            /// Adds `other`'s counts to these.
            pub fn add(&mut self, other: &Counts) {
                $(self.$name += other.$name;)*
            }
        }
    };
}

counts! {
    /// Section pairs matched between the files.
    sections,
    /// Instructions compared one to one (same encoding apart from relocated immediates).
    instructions,
    /// Nop runs matched (padding and pads, elastic).
    nop_runs,
    /// Patch sites whose pad was found and whose slot was checked.
    sites,
    /// Branches and jumps whose new target is the image of the old one.
    branches,
    /// `auipc` pairs (calls, `%pcrel_hi`/`%pcrel_lo`, GOT and TLS forms) checked from relocations.
    auipc_pairs,
    /// `auipc` pairs without relocations (PLT stubs, assembly) paired by decoding.
    unrelocated_auipc,
    /// Absolute `%hi`/`%lo` immediates.
    absolute,
    /// `gp`-relative accesses.
    gp_relative,
    /// Pointer-sized and 32-bit data words under relocations.
    data_words,
    /// Differences (`ADD`/`SUB`/`SET` pairs, ULEB128) and PC-relative data words.
    differences,
    /// Dynamic relocation entries (`.rela.dyn`, `.rela.plt`).
    dynamic_relocations,
    /// GOT words.
    got_words,
    /// `.dynamic` entries.
    dynamic_entries,
    /// `.eh_frame_hdr` fields and table entries.
    eh_frame_hdr,
    /// FDEs of `.eh_frame` whose start, end and CFA rows were checked by decoding.
    call_frames,
    /// Symbols (`.symtab` and `.dynsym`).
    symbols,
    /// `__mcount_loc` entries.
    mcount_entries,
    /// Trampoline islands (jump, place, reach).
    islands,
    /// Alignment points (`R_RISCV_ALIGN`, aligned functions, slot alignment).
    alignment_points,
    /// Bytes compared for equality outside relocated fields.
    bytes_compared,
    /// Kernel table entries decoded from their bytes (`__ex_table`, kallsyms).
    kernel_table_entries,
    /// Relocation entries of the output checked against the originals.
    output_relocations,
    /// Program headers checked.
    segments,
    /// References that could not be checked because their code was not mapped.
    unchecked,
}

/// One difference between what the rewrite should have produced and what it did.
#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    /// What kind of check failed (`branch`, `data word`, `symbol`, ...).
    pub category: &'static str,
    /// Address in the original file, when there is one.
    pub old: Option<u64>,
    /// Address in the rewritten file, when known.
    pub new: Option<u64>,
    /// What was expected.
    pub expected: String,
    /// What was found.
    pub found: String,
}

impl Mismatch {
    /// A finding of `category`: `expected` at `old`, `found` at `new`.
    fn new(
        category: &'static str,
        old: Option<u64>,
        new: Option<u64>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Mismatch {
            category,
            old,
            new,
            expected: expected.into(),
            found: found.into(),
        }
    }
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.category)?;
        match (self.old, self.new) {
            (Some(o), Some(n)) => write!(f, " at {o:#x} -> {n:#x}")?,
            (Some(o), None) => write!(f, " at {o:#x}")?,
            (None, Some(n)) => write!(f, " at new {n:#x}")?,
            (None, None) => {}
        }
        write!(f, ": expected {}, found {}", self.expected, self.found)
    }
}

/// The result of verifying a rewrite.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Slot size inferred from the rewritten file (bytes kept at each function entry).
    pub slot_bytes: Option<u32>,
    /// Pad bytes kept before each function symbol, inferred.
    pub pre_bytes: Option<u32>,
    /// Counts of what was checked.
    pub counts: Counts,
    /// Total number of mismatches found.
    pub mismatch_count: usize,
    /// The first mismatches (at most [`MAX_MISMATCHES`]), in the order found.
    pub mismatches: Vec<Mismatch>,
    /// Total number of warnings: differences that cannot change how the program loads or
    /// runs (a stale absolute symbol in `.symtab`, an undefined symbol no longer in a hash
    /// table). They do not fail verification.
    pub warning_count: usize,
    /// The first warnings (at most [`MAX_MISMATCHES`]).
    pub warnings: Vec<Mismatch>,
    /// Set when the files were not verified at all, with the reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl VerifyReport {
    /// True when no mismatch was found.
    pub fn is_ok(&self) -> bool {
        self.mismatch_count == 0
    }

    /// Adds the findings of a check run on its own (in parallel) to this report.
    pub(crate) fn merge(&mut self, other: VerifyReport) {
        self.counts.add(&other.counts);
        self.slot_bytes = self.slot_bytes.or(other.slot_bytes);
        self.pre_bytes = self.pre_bytes.or(other.pre_bytes);
        let mismatches = (&mut self.mismatch_count, &mut self.mismatches);
        append(mismatches, other.mismatch_count, other.mismatches);
        let warnings = (&mut self.warning_count, &mut self.warnings);
        append(warnings, other.warning_count, other.warnings);
    }

    /// Records a warning.
    pub(crate) fn warn(
        &mut self,
        category: &'static str,
        old: Option<u64>,
        new: Option<u64>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) {
        let finding = || Mismatch::new(category, old, new, expected, found);
        record((&mut self.warning_count, &mut self.warnings), finding);
    }

    /// Records a mismatch.
    pub(crate) fn mismatch(
        &mut self,
        category: &'static str,
        old: Option<u64>,
        new: Option<u64>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) {
        let finding = || Mismatch::new(category, old, new, expected, found);
        record((&mut self.mismatch_count, &mut self.mismatches), finding);
    }
}

/// A list of findings (mismatches or warnings): how many there were, and the first ones.
type Findings<'r> = (&'r mut usize, &'r mut Vec<Mismatch>);

/// Counts one finding and keeps it while the list has room (built only then).
fn record((count, kept): Findings<'_>, finding: impl FnOnce() -> Mismatch) {
    *count += 1;
    if kept.len() < MAX_MISMATCHES {
        kept.push(finding());
    }
}

/// Adds `count` findings, of which `more` are the first, to a list, keeping what has room.
fn append((total, kept): Findings<'_>, count: usize, more: Vec<Mismatch>) {
    *total += count;
    let room = MAX_MISMATCHES.saturating_sub(kept.len());
    kept.extend(more.into_iter().take(room));
}
