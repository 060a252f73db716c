//! `padtrim check`: the CI gate over a [`Report`].

use std::collections::BTreeMap;

use serde::Serialize;

use super::many::{Baseline, ManyReports, Skipped};
use super::model::{counted, functions_by_name, Report};
use crate::scan::Problem;

/// What the gate enforces.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Fail when a pad is larger than this many bytes.
    pub max_pad: Option<u32>,
    /// Fail when a function's pad grew, the total grew, or sites disappeared versus this.
    pub baseline: Option<Report>,
    /// Fail when fewer sites are found.
    pub min_sites: Option<usize>,
    /// Do not fail on zero table entries.
    pub allow_zero_entries: bool,
    /// Do not fail on invalid table entries.
    pub allow_invalid_entries: bool,
}

/// One reason the gate fails.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// The file concerned, when many files are checked at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Short machine-readable kind: `pad-too-large`, `pad-grew`, `total-grew`,
    /// `sites-lost`, `too-few-sites`, `empty-table`, `zero-entries`, `invalid-entries`,
    /// `kernel-unpatchable`, `file-lost`.
    pub kind: String,
    /// Function concerned, if any.
    pub function: Option<String>,
    /// Address concerned, if any.
    pub address: Option<u64>,
    /// One-line human message.
    pub message: String,
}

/// The gate's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// True when nothing failed.
    pub pass: bool,
    /// Table entries in the checked file.
    pub sites: usize,
    /// Usable sites among them (entries that point at a pad).
    pub usable_sites: usize,
    /// Everything that failed, in a stable order.
    pub findings: Vec<Finding>,
}

/// How many lost functions a message lists by name.
const LIST_LIMIT: usize = 20;

/// Runs every enabled check on `report`.
pub fn check(report: &Report, opts: &CheckOptions) -> Verdict {
    check_against(report, opts, opts.baseline.as_ref())
}

/// [`check`] with `baseline` in place of `opts.baseline`.
fn check_against(report: &Report, opts: &CheckOptions, baseline: Option<&Report>) -> Verdict {
    let mut findings = Vec::new();
    if let Some(max) = opts.max_pad {
        for f in report.functions.iter().filter(|f| f.pad_bytes > max) {
            findings.push(Finding {
                file: None,
                kind: "pad-too-large".into(),
                function: Some(f.name.clone()),
                address: Some(f.pad_address),
                message: format!(
                    "{} at {:#x}: pad {} > limit {}",
                    f.name,
                    f.pad_address,
                    counted(f.pad_bytes.into(), "byte", "bytes"),
                    max
                ),
            });
        }
    }
    if let Some(base) = baseline {
        compare_baseline(report, base, &mut findings);
    }
    if let Some(min) = opts.min_sites {
        // Usable sites: a table of zeros has entries but nothing to patch.
        if report.usable_sites() < min {
            findings.push(Finding {
                file: None,
                kind: "too-few-sites".into(),
                function: None,
                address: None,
                message: format!(
                    "{} found ({}), at least {} required",
                    counted(report.usable_sites() as u64, "usable site", "usable sites"),
                    counted(report.sites as u64, "table entry", "table entries"),
                    min
                ),
            });
        }
    }
    if report.sites == 0 {
        // The table is there but empty: a build step emptied or dropped it, and nothing
        // can be traced. (A file with no table at all is unusable input instead.)
        findings.push(Finding {
            file: None,
            kind: "empty-table".into(),
            function: None,
            address: None,
            message: "the patch-site table has no entries: no function can be traced".into(),
        });
    }
    if report.zero_entries > 0 && !opts.allow_zero_entries {
        findings.push(Finding {
            file: None,
            kind: "zero-entries".into(),
            function: None,
            address: None,
            message: format!(
                "{} of {} {} zero (a broken build step zeroed the table?)",
                report.zero_entries,
                counted(report.sites as u64, "table entry", "table entries"),
                if report.zero_entries == 1 {
                    "is"
                } else {
                    "are"
                }
            ),
        });
    }
    if report.invalid_entries > 0 && !opts.allow_invalid_entries {
        let invalid: Vec<_> = report
            .problems
            .iter()
            .filter(|p| p.kind != Problem::Zero.kind())
            .collect();
        let first: Vec<String> = invalid
            .iter()
            .take(LIST_LIMIT)
            .map(|p| format!("{:#x} {}", p.address, p.reason))
            .collect();
        findings.push(Finding {
            file: None,
            kind: "invalid-entries".into(),
            function: None,
            address: invalid.first().map(|p| p.address),
            message: format!(
                "{}: {}{}",
                counted(
                    report.invalid_entries as u64,
                    "invalid table entry",
                    "invalid table entries"
                ),
                first.join("; "),
                and_more(invalid.len())
            ),
        });
    }
    if let Some(k) = &report.kernel {
        // Always on: a kernel that would write its ftrace patch over other code is broken
        // whatever the limits say (a rewrite forced below the layout's minimum, say).
        let bad = k.pads_too_small + k.misplaced_literals;
        if bad > 0 {
            findings.push(Finding {
                file: None,
                kind: "kernel-unpatchable".into(),
                function: None,
                address: None,
                message: format!(
                    "{} of {} cannot take the kernel's ftrace patch ({} layout: {} bytes, {} of \
                     them before the entry); first: {}",
                    bad,
                    counted(report.usable_sites() as u64, "site", "sites"),
                    k.ftrace_layout.name(),
                    k.min_pad_bytes,
                    k.pre_entry_bytes,
                    k.first_problem.as_deref().unwrap_or("?")
                ),
            });
        }
    }
    Verdict {
        pass: findings.is_empty(),
        sites: report.sites,
        usable_sites: report.usable_sites(),
        findings,
    }
}

/// `" and N more"` when a list of `total` items was cut at [`LIST_LIMIT`].
fn and_more(total: usize) -> String {
    match total.saturating_sub(LIST_LIMIT) {
        0 => String::new(),
        more => format!(" and {more} more"),
    }
}

fn keyed(report: &Report) -> BTreeMap<(String, usize), (u64, u32)> {
    functions_by_name(report)
        .into_iter()
        .map(|(k, f)| (k, (f.pad_address, f.pad_bytes)))
        .collect()
}

fn compare_baseline(report: &Report, base: &Report, findings: &mut Vec<Finding>) {
    let old = keyed(base);
    let new = keyed(report);
    for (key, &(addr, bytes)) in &new {
        if let Some(&(_, old_bytes)) = old.get(key) {
            if bytes > old_bytes {
                let name = &key.0;
                findings.push(Finding {
                    file: None,
                    kind: "pad-grew".into(),
                    function: Some(name.clone()),
                    address: Some(addr),
                    message: format!("{name} at {addr:#x}: {old_bytes} -> {bytes} bytes"),
                });
            }
        }
    }
    if report.pad_bytes_total > base.pad_bytes_total {
        findings.push(Finding {
            file: None,
            kind: "total-grew".into(),
            function: None,
            address: None,
            message: format!(
                "total pad bytes {} -> {}",
                base.pad_bytes_total, report.pad_bytes_total
            ),
        });
    }
    // Named functions first; an anonymous pad ("?") is shown by its baseline address.
    let mut lost: Vec<(bool, String)> = old
        .iter()
        .filter(|(k, _)| !new.contains_key(*k))
        .map(|((name, _), &(addr, _))| match name.as_str() {
            "?" => (true, format!("? (pad at {addr:#x})")),
            _ => (false, name.clone()),
        })
        .collect();
    lost.sort();
    // Usable sites: zeroed or shifted entries still count as table entries.
    let (before, after) = (base.usable_sites(), report.usable_sites());
    if after < before || !lost.is_empty() {
        let names: Vec<&str> = lost
            .iter()
            .take(LIST_LIMIT)
            .map(|(_, s)| s.as_str())
            .collect();
        findings.push(Finding {
            file: None,
            kind: "sites-lost".into(),
            function: None,
            address: None,
            message: format!(
                "usable sites {before} -> {after}; {}{}{}",
                match lost.len() {
                    1 => "1 function lost its site".to_string(),
                    n => format!("{n} functions lost their site"),
                },
                if names.is_empty() {
                    String::new()
                } else {
                    format!(": {}", names.join(", "))
                },
                and_more(lost.len())
            ),
        });
    }
}

/// One file's verdict when many files are checked at once.
#[derive(Debug, Clone, Serialize)]
pub struct FileVerdict {
    /// The file.
    pub file: String,
    /// True when nothing failed.
    pub pass: bool,
    /// Why the file could not be checked (unusable input).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Table entries.
    pub sites: usize,
    /// Usable sites among them.
    pub usable_sites: usize,
    /// Zero entries.
    pub zero_entries: usize,
    /// Otherwise invalid entries.
    pub invalid_entries: usize,
    /// Bytes of all usable pads.
    pub pad_bytes_total: u64,
    /// Everything that failed, each naming the file.
    pub findings: Vec<Finding>,
}

/// The worst outcome among many files: what the exit status says (0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Worst {
    /// Every file passed.
    Pass,
    /// A file failed a check.
    Failed,
    /// A file could not be checked.
    Unusable,
}

/// The gate's verdict on many files.
#[derive(Debug, Clone, Serialize)]
pub struct ManyVerdict {
    /// True when every file passed.
    pub pass: bool,
    /// The worst file's outcome.
    pub worst: Worst,
    /// Each file's verdict: the reported files in order, then the unusable ones, then the
    /// baseline's files that are gone.
    pub files: Vec<FileVerdict>,
    /// Counts over them.
    pub total: CheckTotal,
}

/// Counts over many files' verdicts.
#[derive(Debug, Clone, Serialize)]
pub struct CheckTotal {
    /// Files with a verdict.
    pub files: usize,
    /// Files that passed.
    pub passed: usize,
    /// Files that failed a check.
    pub failed: usize,
    /// Files that could not be checked.
    pub unusable: usize,
    /// Files found in directories and skipped.
    pub skipped: Skipped,
    /// Table entries, summed.
    pub sites: usize,
    /// Usable sites, summed.
    pub usable_sites: usize,
    /// Pad bytes, summed.
    pub pad_bytes_total: u64,
    /// Findings, summed.
    pub findings: usize,
}

/// Runs every enabled check on each of `many`'s files; each file is compared with its own
/// report in `baseline` (matched by path; `opts.baseline` is not used), and each baseline
/// file that is no longer there fails (`file-lost`). Unusable files are the worst outcome.
pub fn check_many(
    many: &ManyReports,
    opts: &CheckOptions,
    baseline: Option<&Baseline>,
) -> ManyVerdict {
    let mut files: Vec<FileVerdict> = many
        .files
        .iter()
        .map(|r| {
            let base = baseline.and_then(|b| b.for_file(&r.file));
            let verdict = check_against(r, opts, base);
            FileVerdict {
                file: r.file.clone(),
                pass: verdict.pass,
                error: None,
                sites: r.sites,
                usable_sites: r.usable_sites(),
                zero_entries: r.zero_entries,
                invalid_entries: r.invalid_entries,
                pad_bytes_total: r.pad_bytes_total,
                findings: verdict
                    .findings
                    .into_iter()
                    .map(|f| Finding {
                        file: Some(r.file.clone()),
                        ..f
                    })
                    .collect(),
            }
        })
        .collect();
    files.extend(many.errors.iter().map(|e| FileVerdict {
        file: e.file.clone(),
        pass: false,
        error: Some(e.error.clone()),
        sites: 0,
        usable_sites: 0,
        zero_entries: 0,
        invalid_entries: 0,
        pad_bytes_total: 0,
        findings: Vec::new(),
    }));
    for old in baseline.map_or(&[][..], |b| &b.reports) {
        if files
            .iter()
            .any(|f| super::many::same_path(&f.file, &old.file))
        {
            continue;
        }
        files.push(FileVerdict {
            file: old.file.clone(),
            pass: false,
            error: None,
            sites: 0,
            usable_sites: 0,
            zero_entries: 0,
            invalid_entries: 0,
            pad_bytes_total: 0,
            findings: vec![Finding {
                file: Some(old.file.clone()),
                kind: "file-lost".into(),
                function: None,
                address: None,
                message: format!(
                    "in the baseline with {}, but not among the checked files",
                    counted(old.usable_sites() as u64, "usable site", "usable sites")
                ),
            }],
        });
    }
    let unusable = files.iter().filter(|f| f.error.is_some()).count();
    let failed = files
        .iter()
        .filter(|f| !f.pass && f.error.is_none())
        .count();
    let worst = if unusable > 0 {
        Worst::Unusable
    } else if failed > 0 {
        Worst::Failed
    } else {
        Worst::Pass
    };
    let total = CheckTotal {
        files: files.len(),
        passed: files.len() - failed - unusable,
        failed,
        unusable,
        skipped: many.total.skipped,
        sites: files.iter().map(|f| f.sites).sum(),
        usable_sites: files.iter().map(|f| f.usable_sites).sum(),
        pad_bytes_total: files.iter().map(|f| f.pad_bytes_total).sum(),
        findings: files.iter().map(|f| f.findings.len()).sum(),
    };
    ManyVerdict {
        pass: worst == Worst::Pass,
        worst,
        files,
        total,
    }
}

impl ManyVerdict {
    /// One line: `checked 5 files: 3 ok, 1 failed, 1 unusable; 2 skipped (2 not ELF)`.
    pub fn summary(&self) -> String {
        let t = &self.total;
        let mut line = format!(
            "checked {}: {} ok, {} failed, {} unusable",
            counted(t.files as u64, "file", "files"),
            t.passed,
            t.failed,
            t.unusable
        );
        if let Some(s) = t.skipped.describe() {
            line.push_str("; ");
            line.push_str(&s);
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::FileKind;
    use crate::report::{FunctionRow, ProblemRow};
    use crate::scan::{NopKind, TableSource};

    /// A report of a file whose sites are the functions `names`, 16-byte pads each.
    fn report_of(names: &[String]) -> Report {
        let functions: Vec<FunctionRow> = names
            .iter()
            .enumerate()
            .map(|(i, name)| FunctionRow {
                name: name.clone(),
                section: ".text".into(),
                address: 0x1000 + 0x40 * i as u64,
                pad_address: 0x1000 + 0x40 * i as u64,
                pad_bytes: 16,
                pad_insns: 8,
                pre_bytes: 0,
                nop_kind: NopKind::CNop,
                align: 64,
                state: "nops".into(),
            })
            .collect();
        Report {
            file: "prog".into(),
            class: "elf64".into(),
            kind: FileKind::Executable,
            rvc: true,
            table_source: TableSource::Section,
            sites: names.len(),
            pad_bytes_total: 16 * names.len() as u64,
            histogram: [(16, names.len())].into_iter().collect(),
            slot_bytes: 4,
            projected_saving_bytes: 0,
            projected_alignment_bytes: 0,
            text_bytes: 0x40 * names.len() as u64,
            pad_share_of_text: 0.25,
            sections: Vec::new(),
            functions,
            zero_entries: 0,
            invalid_entries: 0,
            entry_offsets: [(0, names.len())].into_iter().collect(),
            problems: Vec::new(),
            kernel: None,
        }
    }

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i:02}")).collect()
    }

    fn with_baseline(base: &Report) -> CheckOptions {
        CheckOptions {
            baseline: Some(base.clone()),
            ..CheckOptions::default()
        }
    }

    #[test]
    fn lost_functions_are_listed_first_twenty_and_counted() {
        let kept = names("kept", 5);
        let lost = names("lost", 30);
        let base = report_of(&[kept.clone(), lost.clone()].concat());
        let verdict = check(&report_of(&kept), &with_baseline(&base));
        assert!(!verdict.pass);
        let finding = verdict
            .findings
            .iter()
            .find(|f| f.kind == "sites-lost")
            .expect("sites-lost finding");
        let m = &finding.message;
        assert!(m.contains("usable sites 35 -> 5"), "{m}");
        assert!(m.contains("30 functions lost their site"), "{m}");
        for name in &lost[..20] {
            assert!(m.contains(name.as_str()), "{name} missing: {m}");
        }
        for name in &lost[20..] {
            assert!(!m.contains(name.as_str()), "{name} listed past 20: {m}");
        }
        assert!(m.ends_with(" and 10 more"), "{m}");
        for name in &kept {
            assert!(!m.contains(name.as_str()), "kept {name} listed: {m}");
        }
    }

    #[test]
    fn anonymous_lost_pads_come_after_the_named_ones_with_their_address() {
        let mut base = report_of(&["zeta".into(), "?".into(), "alpha".into()]);
        base.functions[1].pad_address = 0x1234;
        let verdict = check(&report_of(&[]), &with_baseline(&base));
        let m = &verdict
            .findings
            .iter()
            .find(|f| f.kind == "sites-lost")
            .expect("sites-lost")
            .message;
        assert!(
            m.ends_with("3 functions lost their site: alpha, zeta, ? (pad at 0x1234)"),
            "{m}"
        );
    }

    #[test]
    fn a_short_loss_lists_every_name_without_a_remainder() {
        let base = report_of(&names("f", 4));
        let verdict = check(&report_of(&names("f", 3)), &with_baseline(&base));
        let m = &verdict.findings[0].message;
        assert_eq!(m, "usable sites 4 -> 3; 1 function lost its site: f03");
    }

    #[test]
    fn zeroed_entries_lose_sites_even_though_the_entry_count_stays() {
        let base = report_of(&names("f", 4));
        let mut zeroed = report_of(&names("f", 1));
        zeroed.sites = 4;
        zeroed.zero_entries = 3;
        zeroed.problems = (0..3)
            .map(|_| ProblemRow {
                address: 0,
                kind: "zero".into(),
                reason: "table entry is zero".into(),
            })
            .collect();
        let opts = CheckOptions {
            allow_zero_entries: true,
            min_sites: Some(4),
            ..with_baseline(&base)
        };
        let kinds: Vec<String> = check(&zeroed, &opts)
            .findings
            .into_iter()
            .map(|f| f.kind)
            .collect();
        assert_eq!(kinds, ["sites-lost", "too-few-sites"]);
        let opts = CheckOptions {
            max_pad: Some(16),
            ..CheckOptions::default()
        };
        let verdict = check(&zeroed, &opts);
        assert_eq!(verdict.findings.len(), 1);
        assert_eq!(verdict.findings[0].kind, "zero-entries");
        assert!(verdict.findings[0]
            .message
            .contains("3 of 4 table entries are zero"));
    }

    #[test]
    fn invalid_entries_are_listed_without_the_zero_ones_and_counted() {
        let mut r = report_of(&names("f", 2));
        r.problems = (0..25)
            .map(|i| ProblemRow {
                address: 0x2000 + 2 * i,
                kind: "not-run-start".into(),
                reason: "is not at the start of a nop run".into(),
            })
            .chain(std::iter::once(ProblemRow {
                address: 0,
                kind: "zero".into(),
                reason: "table entry is zero".into(),
            }))
            .collect();
        r.invalid_entries = 25;
        r.zero_entries = 1;
        let opts = CheckOptions {
            max_pad: Some(16),
            allow_zero_entries: true,
            ..CheckOptions::default()
        };
        let verdict = check(&r, &opts);
        assert_eq!(verdict.findings.len(), 1);
        let m = &verdict.findings[0].message;
        assert!(
            m.starts_with("25 invalid table entries: 0x2000 is not"),
            "{m}"
        );
        assert!(m.contains("0x2026 is not") && !m.contains("0x2028"), "{m}");
        assert!(!m.contains("zero"), "{m}");
        assert!(m.ends_with(" and 5 more"), "{m}");
        let allowed = CheckOptions {
            allow_invalid_entries: true,
            ..opts
        };
        assert!(check(&r, &allowed).pass);
    }

    #[test]
    fn one_of_a_kind_is_said_in_the_singular() {
        let mut r = report_of(&names("f", 1));
        r.functions[0].pad_bytes = 2;
        r.sites = 2;
        r.zero_entries = 1;
        r.invalid_entries = 1;
        r.problems = vec![
            ProblemRow {
                address: 0,
                kind: "zero".into(),
                reason: "table entry is zero".into(),
            },
            ProblemRow {
                address: 0x2000,
                kind: "no-nop".into(),
                reason: "holds no nop".into(),
            },
        ];
        let opts = CheckOptions {
            max_pad: Some(1),
            min_sites: Some(2),
            ..CheckOptions::default()
        };
        let messages: Vec<String> = check(&r, &opts)
            .findings
            .into_iter()
            .map(|f| f.message)
            .collect();
        assert_eq!(
            messages,
            [
                "f00 at 0x1000: pad 2 bytes > limit 1",
                "1 usable site found (2 table entries), at least 2 required",
                "1 of 2 table entries is zero (a broken build step zeroed the table?)",
                "1 invalid table entry: 0x2000 holds no nop",
            ]
        );
    }

    #[test]
    fn an_empty_table_fails_whatever_is_allowed() {
        let r = report_of(&[]);
        let opts = CheckOptions {
            max_pad: Some(16),
            allow_zero_entries: true,
            allow_invalid_entries: true,
            ..CheckOptions::default()
        };
        let verdict = check(&r, &opts);
        assert!(!verdict.pass);
        assert_eq!(verdict.findings[0].kind, "empty-table");
    }
}
