//! The report's data: what `report --json` carries, and the lookups the gate and the diff
//! share.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::elf::FileKind;
use crate::scan::ftrace::KernelFtrace;
use crate::scan::{NopKind, TableSource};

/// Everything `padtrim report` says about one file. Also the baseline format of `check`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Path of the file, as given.
    pub file: String,
    /// `elf32` or `elf64`.
    pub class: String,
    /// What kind of ELF file.
    pub kind: FileKind,
    /// `EF_RISCV_RVC` is set.
    pub rvc: bool,
    /// Where the table entries came from.
    #[serde(default = "default_source")]
    pub table_source: TableSource,
    /// Number of table entries (usable sites plus problems).
    pub sites: usize,
    /// Bytes of all usable pads.
    pub pad_bytes_total: u64,
    /// Pad size in bytes → number of pads.
    pub histogram: BTreeMap<u32, usize>,
    /// Slot size the projection assumes.
    pub slot_bytes: u32,
    /// Bytes a rewrite to `slot_bytes` slots would remove, after 4-byte slot alignment
    /// (negative when aligning the slots costs more than the pads give back).
    pub projected_saving_bytes: i64,
    /// Bytes the projection spends on aligning slots.
    #[serde(default)]
    pub projected_alignment_bytes: u64,
    /// Total size of executable sections.
    pub text_bytes: u64,
    /// `pad_bytes_total / text_bytes`.
    pub pad_share_of_text: f64,
    /// One row per executable section.
    pub sections: Vec<SectionRow>,
    /// One row per usable site, sorted by (section, pad address).
    pub functions: Vec<FunctionRow>,
    /// Entries that are zero.
    pub zero_entries: usize,
    /// Entries that are otherwise invalid (outside text, mid-instruction, misplaced, no nop).
    pub invalid_entries: usize,
    /// (function symbol − entry) → number of entries with a known function: usable and
    /// misplaced sites, and entries pointing into a pad or at another instruction next to a
    /// function, so a shifted table shows up as a second key.
    pub entry_offsets: BTreeMap<i64, usize>,
    /// The zero and invalid entries, with reasons.
    #[serde(default)]
    pub problems: Vec<ProblemRow>,
    /// A kernel's (vmlinux or module) ftrace layout and the smallest pad it can run with;
    /// absent for any other file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelFtrace>,
}

fn default_source() -> TableSource {
    TableSource::Section
}

/// Pad totals of one executable section.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SectionRow {
    /// Section name.
    pub name: String,
    /// `sh_addr`.
    pub address: u64,
    /// `sh_size`.
    pub size: u64,
    /// Usable sites in it.
    pub sites: usize,
    /// Bytes of their pads.
    pub pad_bytes: u64,
}

/// One patch site.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionRow {
    /// Function name (`?` when no symbol covers the pad).
    pub name: String,
    /// Section holding the pad.
    pub section: String,
    /// Address of the function symbol (section offset in a `.o`).
    pub address: u64,
    /// Address of the first pad byte (the table entry).
    pub pad_address: u64,
    /// Pad size in bytes.
    pub pad_bytes: u32,
    /// Pad size in instructions.
    pub pad_insns: u32,
    /// Pad bytes before the function symbol.
    pub pre_bytes: u32,
    /// `c.nop`, `nop`, `mixed` or `none`.
    pub nop_kind: NopKind,
    /// Largest power of two dividing `pad_address` (capped at 64).
    pub align: u32,
    /// `nops`, or `patched` when the pad holds a call.
    pub state: String,
}

/// A zero or invalid table entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProblemRow {
    /// The address the entry holds.
    pub address: u64,
    /// What kind of problem (see [`crate::scan::Problem::kind`]); empty in old reports.
    #[serde(default)]
    pub kind: String,
    /// What is wrong.
    pub reason: String,
}

/// The report's functions keyed by (name, occurrence), so that same-named static functions
/// pair up in order between two reports.
pub fn functions_by_name(report: &Report) -> BTreeMap<(String, usize), &FunctionRow> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for f in &report.functions {
        let n = seen.entry(&f.name).or_insert(0);
        out.insert((f.name.clone(), *n), f);
        *n += 1;
    }
    out
}

pub(super) fn by_name(report: &Report) -> BTreeMap<(String, usize), u32> {
    functions_by_name(report)
        .into_iter()
        .map(|(k, f)| (k, f.pad_bytes))
        .collect()
}

/// `count` and the word for it, singular or plural: `1 byte`, `2 bytes`.
pub fn counted(count: u64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}
