//! The pad report: totals, histograms, per-section and per-function rows; text and JSON.

pub mod check;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::elf::{ElfFile, FileKind};
use crate::plan::project_savings;
use crate::scan::{NopKind, Scan, SiteState, TableSource};

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

impl Report {
    /// Number of usable sites (table entries that point at a pad): one per function row.
    pub fn usable_sites(&self) -> usize {
        self.functions.len()
    }

    /// Builds the report of a scanned file, projecting savings for `slot_bytes` slots.
    pub fn new(path: &str, file: &ElfFile<'_>, scan: &Scan, slot_bytes: u32) -> Report {
        let mut histogram = BTreeMap::new();
        let mut per_section: BTreeMap<usize, (usize, u64)> = BTreeMap::new();
        let mut functions = Vec::with_capacity(scan.sites.len());
        for site in &scan.sites {
            *histogram.entry(site.pad_bytes).or_insert(0) += 1;
            let row = per_section.entry(site.section).or_default();
            row.0 += 1;
            row.1 += u64::from(site.pad_bytes);
            functions.push(FunctionRow {
                name: site
                    .symbol
                    .map_or("?", |s| file.symbols[s].name)
                    .to_string(),
                section: file.sections[site.section].name.to_string(),
                address: site.func_addr,
                pad_address: site.entry,
                pad_bytes: site.pad_bytes,
                pad_insns: site.pad_insns,
                pre_bytes: site.pre_bytes,
                nop_kind: site.nop_kind,
                align: site.align,
                state: match site.state {
                    SiteState::Nops => "nops".into(),
                    SiteState::Patched(_) => "patched".into(),
                },
            });
        }
        let sections: Vec<SectionRow> = file
            .sections
            .iter()
            .filter(|s| s.is_exec() && (s.is_alloc() || !file.kind.is_linked()))
            .map(|s| {
                let (sites, pad_bytes) = per_section.get(&s.index).copied().unwrap_or_default();
                SectionRow {
                    name: s.name.to_string(),
                    address: s.addr,
                    size: s.size,
                    sites,
                    pad_bytes,
                }
            })
            .collect();
        // Sizes come straight from section headers: a corrupt one may claim up to 2^64.
        let text_bytes = sections
            .iter()
            .fold(0u64, |sum, s| sum.saturating_add(s.size));
        let pad_bytes_total: u64 = scan.sites.iter().map(|s| u64::from(s.pad_bytes)).sum();
        let projection = project_savings(&scan.sites, slot_bytes, 0);
        Report {
            file: path.to_string(),
            class: if file.is_64 { "elf64" } else { "elf32" }.into(),
            kind: file.kind,
            rvc: file.rvc(),
            table_source: scan.source,
            sites: scan.entries,
            pad_bytes_total,
            histogram,
            slot_bytes,
            projected_saving_bytes: projection.removed,
            projected_alignment_bytes: projection.alignment,
            text_bytes,
            pad_share_of_text: if text_bytes == 0 {
                0.0
            } else {
                pad_bytes_total as f64 / text_bytes as f64
            },
            sections,
            functions,
            zero_entries: scan.zero_entries(),
            invalid_entries: scan.invalid_entries(),
            entry_offsets: scan.entry_offsets.clone(),
            problems: scan
                .problems
                .iter()
                .map(|p| ProblemRow {
                    address: p.address,
                    kind: p.problem.kind().to_string(),
                    reason: p.problem.to_string(),
                })
                .collect(),
        }
    }

    /// The human-readable table.
    pub fn to_text(&self, top: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}: {} {} RISC-V{}, table from {:?}",
            self.file,
            self.class,
            serde_json::to_value(self.kind)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            if self.rvc { " (C extension)" } else { "" },
            self.table_source
        );
        let _ = writeln!(
            out,
            "sites: {}   pad bytes: {}   text: {} bytes   pads are {:.2}% of text",
            self.sites,
            self.pad_bytes_total,
            self.text_bytes,
            100.0 * self.pad_share_of_text
        );
        let _ = writeln!(
            out,
            "projected saving with {}-byte slots: {} bytes ({:.2}% of text; {} bytes of slot alignment)",
            self.slot_bytes,
            self.projected_saving_bytes,
            if self.text_bytes == 0 { 0.0 } else { 100.0 * self.projected_saving_bytes as f64 / self.text_bytes as f64 },
            self.projected_alignment_bytes
        );
        let _ = writeln!(out, "\npad histogram:");
        for (size, count) in &self.histogram {
            let _ = writeln!(out, "  {:>4} bytes  {:>8} pads", size, count);
        }
        let _ = writeln!(out, "\nexecutable sections:");
        let _ = writeln!(
            out,
            "  {:<28} {:>18} {:>10} {:>8} {:>10}",
            "section", "address", "size", "sites", "pad bytes"
        );
        for s in &self.sections {
            let _ = writeln!(
                out,
                "  {:<28} {:>#18x} {:>10} {:>8} {:>10}",
                s.name, s.address, s.size, s.sites, s.pad_bytes
            );
        }
        if self.zero_entries + self.invalid_entries > 0 {
            let _ = writeln!(
                out,
                "\nproblems: {} zero entries, {} invalid entries",
                self.zero_entries, self.invalid_entries
            );
            for p in self.problems.iter().take(20) {
                let _ = writeln!(out, "  {:#x}: {}", p.address, p.reason);
            }
        }
        let shown = self.functions.len().min(top);
        let _ = writeln!(
            out,
            "\nfunctions ({} of {}, largest pads first):",
            shown,
            self.functions.len()
        );
        let mut rows: Vec<&FunctionRow> = self.functions.iter().collect();
        rows.sort_by(|a, b| {
            b.pad_bytes
                .cmp(&a.pad_bytes)
                .then(a.pad_address.cmp(&b.pad_address))
        });
        let _ = writeln!(
            out,
            "  {:<40} {:>18} {:>5} {:>5} {:>7} {:>6}",
            "function", "pad address", "bytes", "pre", "kind", "align"
        );
        for f in rows.into_iter().take(top) {
            let kind = serde_json::to_value(f.nop_kind)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:<40} {:>#18x} {:>5} {:>5} {:>7} {:>6}",
                f.name, f.pad_address, f.pad_bytes, f.pre_bytes, kind, f.align
            );
        }
        out
    }
}

/// The difference between two reports, per function and in total (`report --baseline`).
#[derive(Debug, Clone, Serialize)]
pub struct ReportDiff {
    /// Baseline file.
    pub old_file: String,
    /// New file.
    pub new_file: String,
    /// Sites before and after.
    pub sites: (usize, usize),
    /// Pad bytes before and after.
    pub pad_bytes: (u64, u64),
    /// Functions that gained a site.
    pub added: Vec<DiffRow>,
    /// Functions that lost their site.
    pub removed: Vec<DiffRow>,
    /// Functions whose pad changed size.
    pub changed: Vec<DiffRow>,
}

/// One function's pad before and after (0 = no site).
#[derive(Debug, Clone, Serialize)]
pub struct DiffRow {
    /// Function name.
    pub name: String,
    /// Pad bytes in the baseline.
    pub old_bytes: u32,
    /// Pad bytes now.
    pub new_bytes: u32,
}

impl ReportDiff {
    /// Compares `new` against `old`; functions pair by name and occurrence order.
    pub fn new(old: &Report, new: &Report) -> ReportDiff {
        let old_rows = by_name(old);
        let new_rows = by_name(new);
        let mut diff = ReportDiff {
            old_file: old.file.clone(),
            new_file: new.file.clone(),
            sites: (old.sites, new.sites),
            pad_bytes: (old.pad_bytes_total, new.pad_bytes_total),
            added: Vec::new(),
            removed: Vec::new(),
            changed: Vec::new(),
        };
        for (key, &new_bytes) in &new_rows {
            match old_rows.get(key) {
                None => diff.added.push(DiffRow {
                    name: key.0.clone(),
                    old_bytes: 0,
                    new_bytes,
                }),
                Some(&old_bytes) if old_bytes != new_bytes => diff.changed.push(DiffRow {
                    name: key.0.clone(),
                    old_bytes,
                    new_bytes,
                }),
                Some(_) => {}
            }
        }
        for (key, &old_bytes) in &old_rows {
            if !new_rows.contains_key(key) {
                diff.removed.push(DiffRow {
                    name: key.0.clone(),
                    old_bytes,
                    new_bytes: 0,
                });
            }
        }
        diff
    }

    /// The human-readable diff, like a size profiler's diff mode.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let delta = |a: u64, b: u64| b as i64 - a as i64;
        let _ = writeln!(out, "{} -> {}", self.old_file, self.new_file);
        let _ = writeln!(
            out,
            "sites: {} -> {} ({:+})   pad bytes: {} -> {} ({:+})",
            self.sites.0,
            self.sites.1,
            delta(self.sites.0 as u64, self.sites.1 as u64),
            self.pad_bytes.0,
            self.pad_bytes.1,
            delta(self.pad_bytes.0, self.pad_bytes.1)
        );
        let _ = writeln!(
            out,
            "functions: {} added, {} removed, {} changed",
            self.added.len(),
            self.removed.len(),
            self.changed.len()
        );
        for (tag, rows) in [
            ("+", &self.added),
            ("-", &self.removed),
            ("~", &self.changed),
        ] {
            for r in rows {
                let _ = writeln!(
                    out,
                    "  {tag} {:<40} {:>5} -> {:<5} ({:+})",
                    r.name,
                    r.old_bytes,
                    r.new_bytes,
                    i64::from(r.new_bytes) - i64::from(r.old_bytes)
                );
            }
        }
        out
    }
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

fn by_name(report: &Report) -> BTreeMap<(String, usize), u32> {
    functions_by_name(report)
        .into_iter()
        .map(|(k, f)| (k, f.pad_bytes))
        .collect()
}
