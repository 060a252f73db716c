//! The rewrite pipeline, in stages:
//! 1. parse the file ([`crate::elf`]) and scan its patch sites ([`crate::scan`](mod@crate::scan)), while its
//!    relocations are read;
//! 2. refuse what cannot be rewritten safely (`policy`), or hand back an input that already
//!    has the asked slots unchanged;
//! 3. rewrite: a relocatable object in [`object`] (sections shrink in place, as a relaxing
//!    linker would shrink them); a linked file in `linked`: [`crate::plan`] →
//!    [`crate::relocate`] → [`crate::emit`] (tables, then the writer);
//! 4. prove the output right ([`crate::verify`](mod@crate::verify)) before anyone gets it: [`rewrite`] returns
//!    only a verified image (or, when [`RewriteOptions::verify`] is off, one that at least
//!    parses again). [`prepare`] + [`Unverified`] let a caller do other work meanwhile.

pub mod insert;
mod kernel_slot;
mod linked;
pub mod object;
pub mod options;
mod policy;
pub mod stats;

pub use insert::{
    insert, prepare_insert, project_insert_bytes, InsertOptions, InsertProjection,
    INSERT_SLOT_SIZES,
};
pub use options::{parse_slot, RewriteOptions, UnknownChoice, Writer, SLOT_SIZES};
pub use padtrim_abi::{DESCRIPTOR_SYMBOL, MCOUNT_SECTION, TRAMPOLINE_SYMBOL};
pub use policy::read_back;
pub use stats::{PreShortfall, RewriteStats};

use crate::elf::{self, FileKind};
use crate::error::{Error, Result};
use crate::scan::scan;
use crate::timing::phase;
use crate::verify::VerifyReport;

/// A rewritten image that has been proven right (or, if the options said not to verify,
/// that at least parses as any input must).
#[derive(Debug)]
pub struct Rewritten {
    /// The new file's bytes.
    pub bytes: Vec<u8>,
    /// What was done.
    pub stats: RewriteStats,
    /// The verifier's report; `None` when verification was turned off.
    pub verification: Option<VerifyReport>,
}

/// A rewritten image not yet proven right: [`Unverified::verify`] (or, asked for by name,
/// [`Unverified::skip_verification`]) turns it into a [`Rewritten`].
#[derive(Debug)]
pub struct Unverified {
    bytes: Vec<u8>,
    stats: RewriteStats,
}

/// Rewrites the ELF file `input` as `opts` asks, and proves the output right before
/// returning it: a wrong output is [`Error::VerificationFailed`], never returned.
pub fn rewrite(input: &[u8], opts: &RewriteOptions) -> Result<Rewritten> {
    let pending = prepare(input, opts)?;
    if opts.verify {
        pending.verify(input)
    } else {
        pending.skip_verification()
    }
}

/// The first half of [`rewrite`]: the new image, not yet verified.
pub fn prepare(input: &[u8], opts: &RewriteOptions) -> Result<Unverified> {
    let (bytes, stats) = phase("rewrite (total)", || rewrite_image(input, opts))?;
    Ok(Unverified { bytes, stats })
}

impl Unverified {
    /// What was done.
    pub fn stats(&self) -> &RewriteStats {
        &self.stats
    }

    /// The new bytes, unverified (a caller may write them to a temporary file, to be kept
    /// only once [`Unverified::verify_alongside`] succeeds).
    pub fn unverified_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The new bytes, to change before verification: only for tests that must see a
    /// verification fail.
    #[doc(hidden)]
    pub fn unverified_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    /// Proves the output a right rewrite of `input` (the bytes given to [`prepare`]).
    pub fn verify(self, input: &[u8]) -> Result<Rewritten> {
        self.verify_alongside(input, |_| ()).0
    }

    /// [`Unverified::verify`], running `alongside` on the unverified bytes at the same time
    /// (the command line writes its temporary file meanwhile).
    pub fn verify_alongside<T: Send>(
        self,
        input: &[u8],
        alongside: impl FnOnce(&[u8]) -> T + Send,
    ) -> (Result<Rewritten>, T) {
        let (report, other) = rayon::join(
            || phase("verify (total)", || check(input, &self.bytes, &self.stats)),
            || alongside(&self.bytes),
        );
        let done = report.map(|report| Rewritten {
            bytes: self.bytes,
            stats: self.stats,
            verification: Some(report),
        });
        (done, other)
    }

    /// Hands the output back without proving it right; it is still parsed back as any
    /// input is (`padtrim verify` can prove it later).
    pub fn skip_verification(self) -> Result<Rewritten> {
        if !self.stats.unchanged {
            phase("read back", || read_back(&self.bytes))?;
        }
        Ok(Rewritten {
            bytes: self.bytes,
            stats: self.stats,
            verification: None,
        })
    }
}

/// Translation validation of `bytes` against `input`.
fn check(input: &[u8], bytes: &[u8], stats: &RewriteStats) -> Result<VerifyReport> {
    if stats.unchanged {
        return Ok(VerifyReport {
            skipped: Some("the output is the input, unchanged".into()),
            ..VerifyReport::default()
        });
    }
    let (old, new) = rayon::join(
        || phase("verify: parse original", || elf::parse(input)),
        || phase("verify: parse new", || read_back(bytes)),
    );
    let report = crate::verify::verify(&old?, &new?)?;
    if !report.is_ok() {
        return Err(Error::VerificationFailed {
            mismatches: report.mismatch_count,
            first: report
                .mismatches
                .first()
                .map_or_else(String::new, |m| m.to_string()),
        });
    }
    Ok(report)
}

/// Stages 1 to 3: the new image and what was done, unverified.
fn rewrite_image(data: &[u8], opts: &RewriteOptions) -> Result<(Vec<u8>, RewriteStats)> {
    opts.validate()?;
    let file = phase("parse", || elf::parse(data))?;
    // The scan and the parse of the relocations are independent: run them side by side
    // (a relocation error is reported only where the relocations are needed).
    let (scan, relocs) = rayon::join(
        || phase("scan", || scan(&file)),
        || phase("relocations", || file.relocation_sections()),
    );
    let scan = scan?;
    policy::require_usable_table(&scan)?;
    policy::require_whole_pre(&scan, opts)?;
    let kernel = policy::require_kernel_layout(&file, &scan, opts)?;
    let pre_shortfall = PreShortfall::of(&scan.sites, opts.pre);
    if file.kind == FileKind::Relocatable {
        let (out, mut stats) = object::rewrite_relocatable(&file, &scan, *opts)?;
        policy::require_literals_kept(kernel.as_ref(), &out)?;
        stats.pre_shortfall = pre_shortfall;
        return Ok((out, stats));
    }
    policy::refuse_sizes_past_the_top(&file)?;
    let mut stats = RewriteStats::unchanged(
        scan.sites.len(),
        data.len() as u64,
        linked::text_size(&file),
        linked::default_layout(&file, opts),
        opts.slot,
    );
    stats.pre_shortfall = pre_shortfall;
    // Slots of the asked size already: the output is the input, unless the program lacks
    // the `__mcount_loc` table the runtime reads (built with 4-byte pads, or linked from
    // objects `rewrite --insert` gave slots) and carries the relocations to add it.
    // The table is a bonus there: when the layout cannot take it (in place, say), the
    // output stays the input, as it always was.
    let relocs = relocs.ok();
    if policy::already_done(&scan, opts) {
        let usable = relocs
            .as_deref()
            .is_some_and(|r| policy::require_emit_relocs(&file, &scan, r).is_ok());
        if let (true, Some(relocs)) = (usable && policy::wants_table(&file, &scan, opts), relocs) {
            if let Ok((out, stats)) =
                linked::rewrite_linked(file, scan, relocs, opts, stats.clone())
            {
                return Ok((out, stats));
            }
        }
        return Ok((data.to_vec(), stats));
    }
    let relocs = match relocs {
        Some(r) => r,
        None => file.relocation_sections()?,
    };
    policy::require_emit_relocs(&file, &scan, &relocs)?;
    let (out, stats) = linked::rewrite_linked(file, scan, relocs, opts, stats)?;
    policy::require_literals_kept(kernel.as_ref(), &out)?;
    Ok((out, stats))
}
