//! Many files at once (`padtrim report|check FILE|DIR...`): the files a list of paths names
//! (directories walked), their reports made in parallel, and the total over them.
//!
//! A file named in the list must be usable, as a single file must: anything wrong with it is
//! an error for that file. A file found by walking a directory is skipped, and counted,
//! when it is not an ELF file, is an ELF file for another machine, or has no patch table
//! (a build directory holds assembler objects, host tools, scripts...); any other problem
//! is an error for that file. Errors do not stop the other files.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::diff::ReportDiff;
use super::model::{counted, Report};
use super::table::{write_histogram, write_summary, Summary, TableOptions, FUNCTION_COLUMNS};
use crate::error::Error;
use crate::scan::{self, TableSource};

/// `EM_RISCV`.
const EM_RISCV: u16 = 243;

/// Files found in directories and left out, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Not ELF files.
    pub not_elf: usize,
    /// ELF files for another machine.
    pub other_machine: usize,
    /// RISC-V ELF files without a patch table.
    pub no_table: usize,
}

impl Skipped {
    /// All skipped files.
    pub fn total(&self) -> usize {
        self.not_elf + self.other_machine + self.no_table
    }

    /// `2 skipped (1 not ELF, 1 without a patch table)`, or `None` when none were.
    pub fn describe(&self) -> Option<String> {
        if self.total() == 0 {
            return None;
        }
        let parts: Vec<String> = [
            (self.not_elf, "not ELF"),
            (self.other_machine, "for another machine"),
            (self.no_table, "without a patch table"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        Some(format!("{} skipped ({})", self.total(), parts.join(", ")))
    }

    fn add(&mut self, why: Skip) {
        match why {
            Skip::NotElf => self.not_elf += 1,
            Skip::OtherMachine => self.other_machine += 1,
            Skip::NoTable => self.no_table += 1,
        }
    }
}

/// Why a found file was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    NotElf,
    OtherMachine,
    NoTable,
}

/// A file that could not be reported, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileError {
    /// The path, as given or found.
    pub file: String,
    /// What is wrong (without the path).
    pub error: String,
}

/// A file to report: its path, and whether it was named (not found in a directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The path, as given or as found under a given directory.
    pub path: PathBuf,
    /// Named in the list: it must be usable.
    pub named: bool,
}

/// Every file `paths` names, in order: files as given, directories walked recursively in
/// name order (symbolic links to directories are not followed), each file once. A
/// directory that cannot be read is an error for it.
pub fn collect(paths: &[PathBuf]) -> (Vec<Candidate>, Vec<FileError>) {
    let mut walk = Walk::default();
    for path in paths {
        if path.is_dir() {
            walk.dir(path);
        } else {
            walk.file(path, true);
        }
    }
    (walk.out, walk.errors)
}

/// The files found so far, each once (by its canonical path).
#[derive(Default)]
struct Walk {
    out: Vec<Candidate>,
    errors: Vec<FileError>,
    /// Canonical path → index in `out`.
    seen: std::collections::HashMap<PathBuf, usize>,
}

impl Walk {
    /// Adds a file unless it is there already; a file named in the list is named even when
    /// a directory walked before found it.
    fn file(&mut self, path: &Path, named: bool) {
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        match self.seen.get(&key) {
            Some(&i) => self.out[i].named |= named,
            None => {
                self.seen.insert(key, self.out.len());
                self.out.push(Candidate {
                    path: path.to_path_buf(),
                    named,
                });
            }
        }
    }

    fn dir(&mut self, dir: &Path) {
        let unreadable = |e: std::io::Error| FileError {
            file: dir.display().to_string(),
            error: format!("cannot read directory: {e}"),
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => return self.errors.push(unreadable(e)),
        };
        let mut paths: Vec<(PathBuf, bool)> = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => {
                    let path = entry.path();
                    // A link is followed to a file, never to a directory (no cycles).
                    let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                    if is_dir || path.is_file() {
                        paths.push((path, is_dir));
                    }
                }
                Err(e) => self.errors.push(unreadable(e)),
            }
        }
        paths.sort();
        for (path, is_dir) in paths {
            if is_dir {
                self.dir(&path);
            } else {
                self.file(&path, false);
            }
        }
    }
}

/// What became of one candidate.
enum Outcome {
    Report(Box<Report>),
    Skipped(Skip),
    Failed(FileError),
}

/// The reports of many files, with their total.
#[derive(Debug, Clone, Serialize)]
pub struct ManyReports {
    /// One report per usable file, in the order the files were named and found.
    pub files: Vec<Report>,
    /// The sum over them.
    pub total: Total,
    /// Files that could not be reported.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FileError>,
}

/// The sum of many reports: the keys of a single report that add up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Total {
    /// Files reported.
    pub files: usize,
    /// Table entries.
    pub sites: usize,
    /// Usable sites (entries that point at a pad).
    pub usable_sites: usize,
    /// Bytes of all usable pads.
    pub pad_bytes_total: u64,
    /// Pad size in bytes → number of pads.
    pub histogram: BTreeMap<u32, usize>,
    /// Slot size the projection assumes.
    pub slot_bytes: u32,
    /// Bytes a rewrite to `slot_bytes` slots would remove, summed.
    pub projected_saving_bytes: i64,
    /// Bytes the projection spends on aligning slots, summed.
    pub projected_alignment_bytes: u64,
    /// Executable bytes, summed.
    pub text_bytes: u64,
    /// `pad_bytes_total / text_bytes`.
    pub pad_share_of_text: f64,
    /// Zero entries.
    pub zero_entries: usize,
    /// Otherwise invalid entries.
    pub invalid_entries: usize,
    /// (function symbol − entry) → entries, summed.
    pub entry_offsets: BTreeMap<i64, usize>,
    /// Files that could not be reported.
    pub errors: usize,
    /// Files found in directories and skipped.
    pub skipped: Skipped,
}

impl Total {
    /// The sum of `reports` (projected for `slot_bytes` slots).
    pub fn of(reports: &[Report], slot_bytes: u32) -> Total {
        let mut t = Total {
            files: reports.len(),
            sites: 0,
            usable_sites: 0,
            pad_bytes_total: 0,
            histogram: BTreeMap::new(),
            slot_bytes,
            projected_saving_bytes: 0,
            projected_alignment_bytes: 0,
            text_bytes: 0,
            pad_share_of_text: 0.0,
            zero_entries: 0,
            invalid_entries: 0,
            entry_offsets: BTreeMap::new(),
            errors: 0,
            skipped: Skipped::default(),
        };
        for r in reports {
            t.sites += r.sites;
            t.usable_sites += r.usable_sites();
            t.pad_bytes_total = t.pad_bytes_total.saturating_add(r.pad_bytes_total);
            for (&size, &n) in &r.histogram {
                *t.histogram.entry(size).or_insert(0) += n;
            }
            t.projected_saving_bytes = t
                .projected_saving_bytes
                .saturating_add(r.projected_saving_bytes);
            t.projected_alignment_bytes = t
                .projected_alignment_bytes
                .saturating_add(r.projected_alignment_bytes);
            t.text_bytes = t.text_bytes.saturating_add(r.text_bytes);
            t.zero_entries += r.zero_entries;
            t.invalid_entries += r.invalid_entries;
            for (&offset, &n) in &r.entry_offsets {
                *t.entry_offsets.entry(offset).or_insert(0) += n;
            }
        }
        if t.text_bytes > 0 {
            t.pad_share_of_text = t.pad_bytes_total as f64 / t.text_bytes as f64;
        }
        t
    }
}

/// Reports every file `paths` names (see [`collect`]), in parallel, projecting savings
/// for `slot`-byte slots.
pub fn report_many(paths: &[PathBuf], slot: u32) -> ManyReports {
    let (candidates, mut errors) = collect(paths);
    let outcomes: Vec<Outcome> = candidates.par_iter().map(|c| report_one(c, slot)).collect();
    let mut files = Vec::new();
    let mut skipped = Skipped::default();
    for outcome in outcomes {
        match outcome {
            Outcome::Report(r) => files.push(*r),
            Outcome::Skipped(why) => skipped.add(why),
            Outcome::Failed(e) => errors.push(e),
        }
    }
    let mut total = Total::of(&files, slot);
    total.errors = errors.len();
    total.skipped = skipped;
    ManyReports {
        files,
        total,
        errors,
    }
}

fn report_one(c: &Candidate, slot: u32) -> Outcome {
    let name = c.path.display().to_string();
    let failed = |error: String| {
        Outcome::Failed(FileError {
            file: name.clone(),
            error,
        })
    };
    let file = match std::fs::File::open(&c.path) {
        Ok(f) => f,
        Err(e) => return failed(format!("cannot open: {e}")),
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    // SAFETY: read-only private mapping; the input is never written, and every slice taken
    // from it is bounds-checked against the length fixed at map time.
    let map = if len == 0 {
        None
    } else {
        match unsafe { memmap2::Mmap::map(&file) } {
            Ok(m) => Some(m),
            Err(e) => return failed(format!("cannot map: {e}")),
        }
    };
    let bytes: &[u8] = map.as_deref().unwrap_or(&[]);
    if !c.named {
        if !bytes.starts_with(b"\x7fELF") {
            return Outcome::Skipped(Skip::NotElf);
        }
        if machine(bytes) != Some(EM_RISCV) {
            return Outcome::Skipped(Skip::OtherMachine);
        }
    }
    let outcome = crate::elf::parse(bytes).and_then(|elf| {
        let scan = scan::scan(&elf)?;
        if scan.source == TableSource::None {
            return Ok(None);
        }
        Ok(Some(Report::new(&name, &elf, &scan, slot)))
    });
    match outcome {
        Ok(Some(report)) => Outcome::Report(Box::new(report)),
        Ok(None) if !c.named => Outcome::Skipped(Skip::NoTable),
        Ok(None) => failed(no_table().to_string()),
        Err(e) => failed(e.to_string()),
    }
}

/// The error of a file without a patch table (as [`crate::report()`] says it).
pub fn no_table() -> Error {
    Error::Unsupported(format!(
        "no {} table (was it built with -fpatchable-function-entry?)",
        scan::TABLE_SECTION
    ))
}

/// `e_machine` of an ELF header, in the header's byte order.
fn machine(bytes: &[u8]) -> Option<u16> {
    let raw = [*bytes.get(18)?, *bytes.get(19)?];
    match bytes.get(5)? {
        1 => Some(u16::from_le_bytes(raw)),
        2 => Some(u16::from_be_bytes(raw)),
        _ => None,
    }
}

impl ManyReports {
    /// Each file's text report (its function table as `table` selects), then the total:
    /// one row per file and one for all, the summed histogram and projection.
    pub fn to_text_with(&self, table: &TableOptions) -> String {
        let mut out = String::new();
        for r in &self.files {
            out.push_str(&r.to_text_with(table));
            out.push('\n');
        }
        out.push_str(&self.total_text());
        out
    }

    /// The total section of the text report.
    pub fn total_text(&self) -> String {
        let t = &self.total;
        let mut out = String::new();
        let mut head = format!("total: {}", counted(t.files as u64, "file", "files"));
        if let Some(s) = t.skipped.describe() {
            let _ = write!(head, ", {s}");
        }
        if t.errors > 0 {
            let _ = write!(head, ", {} unusable", t.errors);
        }
        let _ = writeln!(out, "{head}");
        let _ = writeln!(
            out,
            "  {:<48} {:>8} {:>10} {:>12} {:>10}",
            "file", "sites", "pad bytes", "text bytes", "saving"
        );
        let row = |out: &mut String, name: &str, sites, pad, text, saving: i64| {
            let _ = writeln!(
                out,
                "  {name:<48} {sites:>8} {pad:>10} {text:>12} {saving:>10}"
            );
        };
        for r in &self.files {
            row(
                &mut out,
                &r.file,
                r.sites,
                r.pad_bytes_total,
                r.text_bytes,
                r.projected_saving_bytes,
            );
        }
        row(
            &mut out,
            "(all)",
            t.sites,
            t.pad_bytes_total,
            t.text_bytes,
            t.projected_saving_bytes,
        );
        write_summary(
            &mut out,
            &Summary {
                sites: t.sites,
                pad_bytes_total: t.pad_bytes_total,
                text_bytes: t.text_bytes,
                pad_share_of_text: t.pad_share_of_text,
                slot_bytes: t.slot_bytes,
                projected_saving_bytes: t.projected_saving_bytes,
                projected_alignment_bytes: t.projected_alignment_bytes,
            },
        );
        write_histogram(&mut out, &t.histogram);
        out
    }

    /// Every file's function table as delimited text (see
    /// [`Report::functions_delimited`]), with the file as the first column.
    pub fn functions_delimited(&self, table: &TableOptions, sep: char) -> String {
        let mut out = String::new();
        let header: Vec<&str> = std::iter::once("file")
            .chain(FUNCTION_COLUMNS.iter().map(|(name, _)| *name))
            .collect();
        let _ = writeln!(out, "{}", header.join(&sep.to_string()));
        for r in &self.files {
            let file = super::table::delimited_field(&r.file, sep);
            for row in r.delimited_rows(table, sep) {
                let _ = writeln!(out, "{file}{sep}{row}");
            }
        }
        out
    }

    /// Each file's diff against its report in `baseline` (an empty one when the baseline
    /// has none), then each baseline file that is not among them, against nothing.
    pub fn diff(&self, baseline: &Baseline) -> ManyDiffs {
        let mut files: Vec<ReportDiff> = self
            .files
            .iter()
            .map(|r| match baseline.for_file(&r.file) {
                Some(old) => ReportDiff::new(old, r),
                None => ReportDiff::new(&r.emptied(), r),
            })
            .collect();
        for old in baseline.reports.iter().filter(|b| {
            !self.files.iter().any(|r| same_path(&r.file, &b.file))
                && !self.errors.iter().any(|e| same_path(&e.file, &b.file))
        }) {
            files.push(ReportDiff::new(old, &old.emptied()));
        }
        ManyDiffs { files }
    }
}

/// Per-file diffs of many files against a baseline (`report --baseline` on many files).
#[derive(Debug, Clone, Serialize)]
pub struct ManyDiffs {
    /// One diff per file.
    pub files: Vec<ReportDiff>,
}

impl ManyDiffs {
    /// Every file's diff, one after another.
    pub fn to_text(&self) -> String {
        self.files
            .iter()
            .map(ReportDiff::to_text)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A saved `report --json` to compare with: one file's report, or many files'
/// (`{"files": [...], "total": {...}}`), matched to the checked files by path.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    /// The reports it holds.
    pub reports: Vec<Report>,
    /// It was a many-file report.
    pub many: bool,
}

#[derive(Deserialize)]
struct ManyJson {
    files: Vec<Report>,
}

impl Baseline {
    /// Reads a baseline from JSON text: one report, or `{"files": [...]}`.
    pub fn from_json(text: &str) -> serde_json::Result<Baseline> {
        let value: serde_json::Value = match serde_json::from_str(text) {
            Ok(value) => value,
            // Not JSON: the error a report's parse gives, as it always was.
            Err(_) => return serde_json::from_str(text).map(Baseline::single),
        };
        if value.get("files").is_some_and(|f| f.is_array()) {
            let many: ManyJson = serde_json::from_value(value)?;
            return Ok(Baseline {
                reports: many.files,
                many: true,
            });
        }
        // Parsed from the text again, so errors say where as they always did.
        serde_json::from_str(text).map(Baseline::single)
    }

    /// A baseline of one report.
    pub fn single(report: Report) -> Baseline {
        Baseline {
            reports: vec![report],
            many: false,
        }
    }

    /// The report of `file` (paths compared without `./` and repeated separators).
    pub fn for_file(&self, file: &str) -> Option<&Report> {
        self.reports.iter().find(|r| same_path(&r.file, file))
    }

    /// The report to compare one file with: its own by path or, when the baseline holds
    /// one report, that one whatever its path (a baseline made from another build tree).
    pub fn for_single_file(&self, file: &str) -> Option<&Report> {
        self.for_file(file).or(match self.reports.as_slice() {
            [only] => Some(only),
            _ => None,
        })
    }
}

/// Whether two paths name the same file as written (`./a//b` = `a/b`).
pub fn same_path(a: &str, b: &str) -> bool {
    let parts = |p: &str| -> Vec<String> {
        Path::new(p)
            .components()
            .filter(|c| *c != Component::CurDir)
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect()
    };
    a == b || parts(a) == parts(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_without_dot_and_doubled_slashes() {
        assert!(same_path("./build/a.o", "build/a.o"));
        assert!(same_path("build//a.o", "build/a.o"));
        assert!(!same_path("build/a.o", "other/a.o"));
        assert!(!same_path("/build/a.o", "build/a.o"));
    }

    #[test]
    fn skipped_files_are_said_by_reason() {
        let s = Skipped {
            not_elf: 2,
            other_machine: 0,
            no_table: 1,
        };
        assert_eq!(
            s.describe().as_deref(),
            Some("3 skipped (2 not ELF, 1 without a patch table)")
        );
        assert_eq!(Skipped::default().describe(), None);
    }

    #[test]
    fn elf_machine_is_read_in_the_header_byte_order() {
        let mut h = vec![0u8; 20];
        h[..4].copy_from_slice(b"\x7fELF");
        h[5] = 1;
        h[18] = 243;
        assert_eq!(machine(&h), Some(EM_RISCV));
        h[5] = 2;
        assert_eq!(machine(&h), Some(243 << 8));
        assert_eq!(machine(&h[..10]), None);
    }
}
