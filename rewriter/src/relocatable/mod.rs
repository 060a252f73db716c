//! Rewriting relocatable objects (`.o`): shrink pads inside each section and move relocation
//! offsets, addends and symbols the way a relaxing linker does.

use crate::elf::ElfFile;
use crate::error::{Error, Result};
use crate::rewrite::{RewriteOptions, RewriteStats};
use crate::scan::Scan;

/// Rewrites the relocatable object `file` (already scanned: `scan` has no problems).
pub fn rewrite_relocatable(
    file: &ElfFile<'_>,
    scan: &Scan,
    opts: RewriteOptions,
) -> Result<(Vec<u8>, RewriteStats)> {
    let _ = (file, scan, opts);
    Err(Error::Unsupported(
        "rewriting relocatable objects (.o) is not implemented yet".into(),
    ))
}
