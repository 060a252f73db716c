//! `padtrim check`: the CI gate over a [`Report`].

use std::collections::BTreeMap;

use serde::Serialize;

use crate::report::{functions_by_name, Report};

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
    /// Short machine-readable kind: `pad-too-large`, `pad-grew`, `total-grew`,
    /// `sites-lost`, `site-removed`, `too-few-sites`, `zero-entries`, `invalid-entries`.
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
    /// Sites found in the checked file.
    pub sites: usize,
    /// Everything that failed, in a stable order.
    pub findings: Vec<Finding>,
}

/// How many lost functions a message lists by name.
const LIST_LIMIT: usize = 20;

/// Runs every enabled check on `report`.
pub fn check(report: &Report, opts: &CheckOptions) -> Verdict {
    let mut findings = Vec::new();
    if let Some(max) = opts.max_pad {
        for f in report.functions.iter().filter(|f| f.pad_bytes > max) {
            findings.push(Finding {
                kind: "pad-too-large".into(),
                function: Some(f.name.clone()),
                address: Some(f.pad_address),
                message: format!(
                    "{} at {:#x}: pad {} bytes > limit {}",
                    f.name, f.pad_address, f.pad_bytes, max
                ),
            });
        }
    }
    if let Some(base) = &opts.baseline {
        compare_baseline(report, base, &mut findings);
    }
    if let Some(min) = opts.min_sites {
        if report.sites < min {
            findings.push(Finding {
                kind: "too-few-sites".into(),
                function: None,
                address: None,
                message: format!("{} sites found, at least {} required", report.sites, min),
            });
        }
    }
    if report.zero_entries > 0 && !opts.allow_zero_entries {
        findings.push(Finding {
            kind: "zero-entries".into(),
            function: None,
            address: None,
            message: format!(
                "{} of {} table entries are zero (a broken build step zeroed the table?)",
                report.zero_entries, report.sites
            ),
        });
    }
    if report.invalid_entries > 0 && !opts.allow_invalid_entries {
        let first: Vec<String> = report
            .problems
            .iter()
            .filter(|p| !(p.reason.contains("zero") && p.address == 0))
            .take(LIST_LIMIT)
            .map(|p| format!("{:#x} {}", p.address, p.reason))
            .collect();
        findings.push(Finding {
            kind: "invalid-entries".into(),
            function: None,
            address: None,
            message: format!(
                "{} invalid table entries: {}",
                report.invalid_entries,
                first.join("; ")
            ),
        });
    }
    Verdict {
        pass: findings.is_empty(),
        sites: report.sites,
        findings,
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
            kind: "total-grew".into(),
            function: None,
            address: None,
            message: format!(
                "total pad bytes {} -> {}",
                base.pad_bytes_total, report.pad_bytes_total
            ),
        });
    }
    let lost: Vec<&String> = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .map(|k| &k.0)
        .collect();
    if report.sites < base.sites || !lost.is_empty() {
        let names: Vec<&str> = lost.iter().take(LIST_LIMIT).map(|s| s.as_str()).collect();
        let more = lost.len().saturating_sub(LIST_LIMIT);
        findings.push(Finding {
            kind: "sites-lost".into(),
            function: None,
            address: None,
            message: format!(
                "sites {} -> {}; {} functions lost their site{}{}",
                base.sites,
                report.sites,
                lost.len(),
                if names.is_empty() {
                    String::new()
                } else {
                    format!(": {}", names.join(", "))
                },
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
        });
    }
}
