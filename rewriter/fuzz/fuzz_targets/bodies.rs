//! What each fuzz target runs on one input. Shared with the regression test
//! (`rewriter/tests/fuzz_regressions.rs` includes this file), so a saved crashing input
//! replays exactly the code that crashed.

// Each fuzz target and the regression test use only part of this file.
#![allow(dead_code)]

use padtrim::plan::Layout;
use padtrim::report::check::{check, CheckOptions};
use padtrim::report::{Report, ReportDiff};
use padtrim::rewrite::{rewrite, RewriteOptions, RewriteStats, Writer};

/// Parse, scan, report (text, JSON round trip, diff) and the CI gate on `data`. Returns the
/// first error, if the input was refused.
pub fn scan_report_check(data: &[u8]) -> padtrim::Result<()> {
    let file = padtrim::elf::parse(data)?;
    // The model's other readers, which scan and rewrite call on their own paths.
    let _ = file.relocation_sections();
    let _ = file.dynamic_symbols();
    let scan = padtrim::scan::scan(&file)?;
    let report = Report::new("fuzz", &file, &scan, 4);
    let _ = report.to_text(20);
    let json = serde_json::to_string(&report).expect("a report serialises");
    let back: Report = serde_json::from_str(&json).expect("a report round-trips");
    let _ = ReportDiff::new(&back, &report).to_text();
    let opts = CheckOptions {
        max_pad: Some(4),
        baseline: Some(back),
        min_sites: Some(1),
        allow_zero_entries: false,
        allow_invalid_entries: false,
    };
    let _ = check(&report, &opts);
    Ok(())
}

/// The rewrite options the first input byte selects: slot (bits 0-1), layout (bits 2-3),
/// pre bytes (bits 4-5), force (bit 6), the builder writer (bit 7).
pub fn options(selector: u8) -> RewriteOptions {
    RewriteOptions {
        slot: [4, 8, 0, 16][usize::from(selector & 3)],
        layout: [None, Some(Layout::Pack), Some(Layout::InPlace), None]
            [usize::from((selector >> 2) & 3)],
        pre: [0, 0, 4, 8][usize::from((selector >> 4) & 3)],
        force: selector & 0x40 != 0,
        writer: if selector & 0x80 != 0 {
            Writer::Builder
        } else {
            Writer::Patched
        },
        // Fuzzing looks for panics and unreadable outputs: the output is parsed back, as
        // the rewrite always does, without the verifier's slower second pass.
        verify: false,
    }
}

/// Rewrites `data[1..]` with the options `data[0]` selects; an output must parse again.
/// `None` for an empty input.
pub fn rewrite_input(data: &[u8]) -> Option<padtrim::Result<RewriteStats>> {
    let (&selector, elf) = data.split_first()?;
    Some(rewrite(elf, &options(selector)).map(|done| {
        // What padtrim writes, padtrim must read back.
        if let Err(e) = padtrim::elf::parse(&done.bytes) {
            panic!("rewritten output does not parse: {e}");
        }
        done.stats
    }))
}
