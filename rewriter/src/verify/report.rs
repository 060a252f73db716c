//! What verification found: counts of what was checked, and the first mismatches.

use serde::Serialize;

/// How many mismatches a report keeps (all are counted).
pub const MAX_MISMATCHES: usize = 50;

/// Counts of what was checked, by category.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Section pairs matched between the files.
    pub sections: u64,
    /// Instructions compared one to one (same encoding apart from relocated immediates).
    pub instructions: u64,
    /// Nop runs matched (padding and pads, elastic).
    pub nop_runs: u64,
    /// Patch sites whose pad was found and whose slot was checked.
    pub sites: u64,
    /// Branches and jumps whose new target is the image of the old one.
    pub branches: u64,
    /// `auipc` pairs (calls, `%pcrel_hi`/`%pcrel_lo`, GOT and TLS forms) checked from relocations.
    pub auipc_pairs: u64,
    /// `auipc` pairs without relocations (PLT stubs, assembly) paired by decoding.
    pub unrelocated_auipc: u64,
    /// Absolute `%hi`/`%lo` immediates.
    pub absolute: u64,
    /// `gp`-relative accesses.
    pub gp_relative: u64,
    /// Pointer-sized and 32-bit data words under relocations.
    pub data_words: u64,
    /// Differences (`ADD`/`SUB`/`SET` pairs, ULEB128) and PC-relative data words.
    pub differences: u64,
    /// Dynamic relocation entries (`.rela.dyn`, `.rela.plt`).
    pub dynamic_relocations: u64,
    /// GOT words.
    pub got_words: u64,
    /// `.dynamic` entries.
    pub dynamic_entries: u64,
    /// `.eh_frame_hdr` fields and table entries.
    pub eh_frame_hdr: u64,
    /// Symbols (`.symtab` and `.dynsym`).
    pub symbols: u64,
    /// `__mcount_loc` entries.
    pub mcount_entries: u64,
    /// Trampoline islands (jump, place, reach).
    pub islands: u64,
    /// Alignment points (`R_RISCV_ALIGN`, aligned functions, slot alignment).
    pub alignment_points: u64,
    /// Bytes compared for equality outside relocated fields.
    pub bytes_compared: u64,
    /// Kernel table entries decoded from their bytes (`__ex_table`, kallsyms).
    pub kernel_table_entries: u64,
    /// Relocation entries of the output checked against the originals.
    pub output_relocations: u64,
    /// Program headers checked.
    pub segments: u64,
    /// References that could not be checked because their code was not mapped.
    pub unchecked: u64,
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

    /// Records a warning.
    pub(crate) fn warn(
        &mut self,
        category: &'static str,
        old: Option<u64>,
        new: Option<u64>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) {
        self.warning_count += 1;
        if self.warnings.len() < MAX_MISMATCHES {
            self.warnings.push(Mismatch {
                category,
                old,
                new,
                expected: expected.into(),
                found: found.into(),
            });
        }
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
        self.mismatch_count += 1;
        if self.mismatches.len() < MAX_MISMATCHES {
            self.mismatches.push(Mismatch {
                category,
                old,
                new,
                expected: expected.into(),
                found: found.into(),
            });
        }
    }
}
