//! padtrim: scan, report, check, rewrite and verify RISC-V patchable function entries.
//!
//! The crate root is the way in, as functions over an ELF file's bytes with typed options and
//! typed results:
//!
//! | function | does |
//! |---|---|
//! | [`scan()`] | finds every patch site: its pad, its function, its table entry |
//! | [`report()`] | what the pads cost: histogram, per section and function, projected saving |
//! | [`check()`] | the CI gate over a report: pad limits, baselines, lost sites |
//! | [`report_many()`] | [`report()`] over many files and directories, in parallel, with a total ([`report::check::check_many`] gates them) |
//! | [`rewrite()`] | compacts every pad to a slot, moves the code, fixes every reference, and proves the result right |
//! | [`verify()`] | proves one file a right rewrite of another (translation validation) |
//!
//! ```no_run
//! let input = std::fs::read("prog")?;
//! let done = padtrim::rewrite(&input, &padtrim::RewriteOptions::default())?;
//! println!("{} sites, {} bytes removed", done.stats.sites, done.stats.bytes_removed);
//! std::fs::write("prog.padtrim", &done.bytes)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Data flows one way: bytes → [`elf`] model → [`scan`](mod@scan) (patch sites) →
//! [`plan`] (new layout) → [`relocate`] (every reference re-resolved) → [`emit`] (tables, new
//! bytes) → [`verify`](mod@verify). [`rewrite`](mod@rewrite) runs those stages;
//! [`report`](mod@report) (with its CI gate, [`report::check`]) consumes the scan. [`riscv`]
//! decodes and encodes the instructions every step reads.
#![deny(missing_docs)]

pub mod elf;
pub mod emit;
pub mod error;
pub mod plan;
pub mod relocate;
pub mod report;
pub mod rewrite;
pub mod riscv;
pub mod scan;
pub mod timing;
pub mod verify;

pub use error::{Error, ErrorKind, Result};
pub use plan::Layout;
pub use report::check::{CheckOptions, Finding, Verdict};
pub use report::Report;
pub use rewrite::{RewriteOptions, RewriteStats, Rewritten, Writer};
pub use scan::Scan;
pub use verify::VerifyReport;

/// Scans the ELF file `bytes` for its patch sites.
pub fn scan(bytes: &[u8]) -> Result<Scan> {
    let file = elf::parse(bytes)?;
    scan::scan(&file)
}

/// Reports the pads of the ELF file `bytes` (named `name` in the report), with the saving
/// projected for `slot`-byte slots. A file without a patch table is unusable input.
pub fn report(name: &str, bytes: &[u8], slot: u32) -> Result<Report> {
    let file = elf::parse(bytes)?;
    let scan = scan::scan(&file)?;
    if scan.source == scan::TableSource::None {
        return Err(report::many::no_table());
    }
    Ok(Report::new(name, &file, &scan, slot))
}

/// The CI gate's verdict on `report`.
pub fn check(report: &Report, opts: &CheckOptions) -> Verdict {
    report::check::check(report, opts)
}

/// Reports every ELF file `paths` names (directories walked; see [`report::many`]), in
/// parallel, with the total over them.
pub fn report_many(paths: &[std::path::PathBuf], slot: u32) -> report::many::ManyReports {
    report::many::report_many(paths, slot)
}

/// Rewrites the ELF file `input` as `opts` asks, and hands back only a proven-right image
/// (see [`rewrite::rewrite`]).
pub fn rewrite(input: &[u8], opts: &RewriteOptions) -> Result<Rewritten> {
    rewrite::rewrite(input, opts)
}

/// Proves `rewritten` a right rewrite of `original` (both ELF files' bytes); the report's
/// [`VerifyReport::is_ok`] is the verdict.
pub fn verify(original: &[u8], rewritten: &[u8]) -> Result<VerifyReport> {
    verify::verify_bytes(original, rewritten)
}
