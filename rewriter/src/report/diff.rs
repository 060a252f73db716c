//! A report compared with a saved one: per-function and total differences.

use std::fmt::Write as _;

use serde::Serialize;

use super::model::{by_name, Report};

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
