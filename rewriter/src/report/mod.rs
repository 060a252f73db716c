//! The pad report: totals, histograms, per-section and per-function rows; text and JSON.

pub mod check;
mod diff;
pub mod many;
mod model;
mod table;

pub use diff::{DiffRow, ReportDiff};
pub use model::*;
pub use table::*;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::elf::ElfFile;
use crate::plan::project_savings;
use crate::scan::ftrace::{self, KernelFtrace};
use crate::scan::{Scan, SiteState};

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
            kernel: ftrace::detect(file, scan),
        }
    }

    /// The human-readable report, listing `top` functions (0: all) with the largest pads
    /// first.
    pub fn to_text(&self, top: usize) -> String {
        self.to_text_with(&TableOptions {
            top: (top != 0).then_some(top),
            ..TableOptions::default()
        })
    }

    /// The human-readable report, with the function table `table` selects.
    pub fn to_text_with(&self, table: &TableOptions) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}: {} RISC-V {}{}, table from {}",
            self.file,
            self.class,
            self.kind.describe(),
            if self.rvc { " (C extension)" } else { "" },
            self.table_source.describe()
        );
        write_summary(
            &mut out,
            &Summary {
                sites: self.sites,
                pad_bytes_total: self.pad_bytes_total,
                text_bytes: self.text_bytes,
                pad_share_of_text: self.pad_share_of_text,
                slot_bytes: self.slot_bytes,
                projected_saving_bytes: self.projected_saving_bytes,
                projected_alignment_bytes: self.projected_alignment_bytes,
            },
        );
        if let Some(k) = &self.kernel {
            kernel_text(&mut out, k);
        }
        let _ = writeln!(out);
        write_histogram(&mut out, &self.histogram);
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
                "\nproblems: {}, {}",
                counted(self.zero_entries as u64, "zero entry", "zero entries"),
                counted(
                    self.invalid_entries as u64,
                    "invalid entry",
                    "invalid entries"
                )
            );
            for p in self.problems.iter().take(20) {
                let _ = writeln!(out, "  {:#x}: {}", p.address, p.reason);
            }
        }
        let (rows, matched) = self.function_rows(table);
        out.push('\n');
        if !table.patterns.is_empty() {
            let _ = writeln!(
                out,
                "{} of {} {} {}",
                matched,
                counted(self.functions.len() as u64, "function", "functions"),
                if matched == 1 { "matches" } else { "match" },
                table.patterns.join(", ")
            );
        }
        let _ = writeln!(
            out,
            "functions ({} of {}, {}):",
            rows.len(),
            matched,
            table.sort.describe()
        );
        let _ = writeln!(out, "  {ALIGN_LEGEND}");
        let _ = writeln!(
            out,
            "  {:<40} {:>18} {:>5} {:>5} {:>7} {:>6}",
            "function", "pad address", "bytes", "pre", "kind", "align"
        );
        for f in rows {
            let _ = writeln!(
                out,
                "  {:<40} {:>#18x} {:>5} {:>5} {:>7} {:>6}",
                f.name,
                f.pad_address,
                f.pad_bytes,
                f.pre_bytes,
                f.nop_kind.name(),
                f.align
            );
        }
        out
    }

    /// The function rows `table` selects, in its order, and how many functions its patterns
    /// matched before `top` cut the list.
    pub fn function_rows(&self, table: &TableOptions) -> (Vec<&FunctionRow>, usize) {
        let patterns: Vec<Glob> = table.patterns.iter().map(|p| Glob::new(p)).collect();
        let mut rows: Vec<&FunctionRow> = self
            .functions
            .iter()
            .filter(|f| patterns.is_empty() || patterns.iter().any(|g| g.matches(&f.name)))
            .collect();
        let matched = rows.len();
        match table.sort {
            // Ties keep the report's (section, pad address) order.
            SortKey::Size => rows.sort_by(|a, b| {
                b.pad_bytes
                    .cmp(&a.pad_bytes)
                    .then(a.pad_address.cmp(&b.pad_address))
            }),
            SortKey::Name => rows.sort_by(|a, b| a.name.cmp(&b.name)),
            SortKey::Address => {}
        }
        if let Some(top) = table.top {
            rows.truncate(top);
        }
        (rows, matched)
    }

    /// The function table as delimited text: a header row ([`FUNCTION_COLUMNS`]), then one
    /// row per function `table` selects. `sep` is `,` (CSV: fields quoted as RFC 4180 says
    /// when they hold a comma, a quote or a line break) or a tab (TSV: tabs, line breaks
    /// and backslashes in a field written `\t`, `\n`, `\r`, `\\`).
    pub fn functions_delimited(&self, table: &TableOptions, sep: char) -> String {
        let mut out = String::new();
        let header: Vec<&str> = FUNCTION_COLUMNS.iter().map(|(name, _)| *name).collect();
        let _ = writeln!(out, "{}", header.join(&sep.to_string()));
        for row in self.delimited_rows(table, sep) {
            let _ = writeln!(out, "{row}");
        }
        out
    }

    /// The rows of [`Report::functions_delimited`], without the header and line ends.
    pub fn delimited_rows(&self, table: &TableOptions, sep: char) -> Vec<String> {
        let field = |text: &str| delimited_field(text, sep);
        self.function_rows(table)
            .0
            .into_iter()
            .map(|f| {
                let cells = [
                    field(&f.name),
                    field(&f.section),
                    format!("{:#x}", f.address),
                    format!("{:#x}", f.pad_address),
                    f.pad_bytes.to_string(),
                    f.pad_insns.to_string(),
                    f.pre_bytes.to_string(),
                    f.nop_kind.name().to_string(),
                    f.align.to_string(),
                    field(&f.state),
                ];
                cells.join(&sep.to_string())
            })
            .collect()
    }

    /// What `report` says after the report when table entries are unusable (zero or
    /// invalid): `FILE: N of M table entries are unusable (first: ...)`; `None` if all are
    /// usable.
    pub fn unusable_entries_message(&self) -> Option<String> {
        let bad = self.zero_entries + self.invalid_entries;
        let first = self.problems.first().filter(|_| bad > 0)?;
        Some(format!(
            "{}: {} of {} {} unusable (first: {:#x} {})",
            self.file,
            bad,
            counted(self.sites as u64, "table entry", "table entries"),
            if bad == 1 { "is" } else { "are" },
            first.address,
            first.reason
        ))
    }

    /// This report with no sites: what a file that lost every site would report.
    pub fn emptied(&self) -> Report {
        Report {
            sites: 0,
            pad_bytes_total: 0,
            histogram: BTreeMap::new(),
            projected_saving_bytes: 0,
            projected_alignment_bytes: 0,
            pad_share_of_text: 0.0,
            functions: Vec::new(),
            zero_entries: 0,
            invalid_entries: 0,
            entry_offsets: BTreeMap::new(),
            problems: Vec::new(),
            ..self.clone()
        }
    }
}

/// The kernel lines of the text report: layout, smallest pad, evidence, problems.
fn kernel_text(out: &mut String, k: &KernelFtrace) {
    let version = k
        .version
        .as_ref()
        .map_or_else(String::new, |v| format!(", Linux {v}"));
    let _ = writeln!(
        out,
        "kernel ({}{version}): ftrace layout {}: {}",
        k.image,
        k.ftrace_layout.name(),
        k.ftrace_layout.describe()
    );
    let at_entry = k.min_pad_bytes - k.pre_entry_bytes;
    if k.pre_entry_bytes > 0 {
        let _ = writeln!(
            out,
            "  smallest pad it can run with: {} bytes: {} before each entry (8-byte aligned: the \
             ftrace_ops pointer) and {at_entry} at it",
            k.min_pad_bytes, k.pre_entry_bytes
        );
    } else {
        let _ = writeln!(
            out,
            "  smallest pad it can run with: {} bytes at each entry",
            k.min_pad_bytes
        );
    }
    for e in &k.evidence {
        let _ = writeln!(out, "  evidence: {e}");
    }
    let bad = k.pads_too_small + k.misplaced_literals;
    if bad > 0 {
        let _ = writeln!(
            out,
            "  {} the kernel cannot patch (first: {})",
            counted(bad as u64, "site", "sites"),
            k.first_problem.as_deref().unwrap_or("?")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::FileKind;
    use crate::scan::{NopKind, TableSource};

    fn row(name: &str, pad_address: u64, pad_bytes: u32) -> FunctionRow {
        FunctionRow {
            name: name.into(),
            section: ".text".into(),
            address: pad_address,
            pad_address,
            pad_bytes,
            pad_insns: pad_bytes / 2,
            pre_bytes: 0,
            nop_kind: NopKind::CNop,
            align: 2,
            state: "nops".into(),
        }
    }

    fn report(functions: Vec<FunctionRow>) -> Report {
        Report {
            file: "prog".into(),
            class: "elf64".into(),
            kind: FileKind::Executable,
            rvc: true,
            table_source: TableSource::Section,
            sites: functions.len(),
            pad_bytes_total: functions.iter().map(|f| u64::from(f.pad_bytes)).sum(),
            histogram: BTreeMap::new(),
            slot_bytes: 4,
            projected_saving_bytes: 0,
            projected_alignment_bytes: 0,
            text_bytes: 1000,
            pad_share_of_text: 0.0,
            sections: Vec::new(),
            functions,
            zero_entries: 0,
            invalid_entries: 0,
            entry_offsets: BTreeMap::new(),
            problems: Vec::new(),
            kernel: None,
        }
    }

    #[test]
    fn globs_match_like_the_shell() {
        let m = |p: &str, n: &str| Glob::new(p).matches(n);
        assert!(m("*", "") && m("*", "anything"));
        assert!(m("f*", "foo") && !m("f*", "bar"));
        assert!(m("*_init", "dev_init") && !m("*_init", "dev_init2"));
        assert!(m("a*b*c", "aXbYc") && m("a*b*c", "abbbc") && !m("a*b*c", "acb"));
        assert!(m("f0?", "f01") && !m("f0?", "f0") && !m("f0?", "f012"));
        assert!(m("f[0-2]", "f1") && !m("f[0-2]", "f3"));
        assert!(m("f[!0-2]", "f3") && m("f[^0-2]", "f3") && !m("f[!0-2]", "f1"));
        assert!(m("[]]", "]") && m("[a-]", "-"));
        assert!(m("a\\*", "a*") && !m("a\\*", "ab"));
        assert!(m("a[b", "a[b"), "an unclosed [ is literal");
        assert!(m("_Z*3foo*", "_ZN2ns3fooEv"));
        // What `rewrite --insert --functions` relied on when it had a matcher of its own.
        assert!(m("fib*", "fib_iter") && m("f?b", "fib") && m("*_iter", "fib_iter"));
        assert!(!m("fib", "fib_iter") && !m("a*b*c", "axxbyy") && !m("?", ""));
        // Backtracking stays linear enough for long names.
        let long = "a".repeat(5000);
        assert!(!m("*a*a*a*a*a*b", &long));
    }

    #[test]
    fn delimited_fields_are_quoted_or_escaped() {
        let r = report(vec![
            row("op,erator\"x", 0x10, 4),
            row("tab\there", 0x20, 4),
        ]);
        let opts = TableOptions::default();
        let csv = r.functions_delimited(&opts, ',');
        assert!(csv.contains("\"op,erator\"\"x\",.text,0x10,0x10,4,2,0,c.nop,2,nops\n"));
        let tsv = r.functions_delimited(&opts, '\t');
        assert!(tsv.contains("tab\\there\t.text\t0x20"), "{tsv}");
        assert_eq!(tsv.lines().count(), 3);
    }

    #[test]
    fn a_projection_that_grows_the_text_says_larger() {
        let mut r = report(vec![row("f", 0x10, 2)]);
        r.projected_saving_bytes = -1;
        r.projected_alignment_bytes = 1;
        let text = r.to_text(0);
        assert!(
            text.contains(
                "projected cost of 4-byte slots: text 1 byte larger (0.10% of text; 1 byte of slot alignment)"
            ),
            "{text}"
        );
        r.projected_saving_bytes = 5;
        r.projected_alignment_bytes = 0;
        assert!(r
            .to_text(0)
            .contains("saving with 4-byte slots: 5 bytes (0.50% of text; 0 bytes of"));
    }

    #[test]
    fn top_zero_lists_every_function() {
        let r = report(
            (0..30)
                .map(|i| row(&format!("f{i}"), 0x10 * i, 4))
                .collect(),
        );
        assert_eq!(r.to_text(0).matches(" c.nop ").count(), 30);
        assert_eq!(r.to_text(7).matches(" c.nop ").count(), 7);
    }
}
