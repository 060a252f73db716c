//! Translation validation of a rewrite: `verify(original, rewritten)` proves, from the two
//! files alone, that the rewritten one is the original with its pads compacted.
//!
//! The verifier never looks at the rewriter's plan. It infers the old → new address map by
//! walking each executable section of both files in parallel (`walk`): nop runs are
//! elastic, every other instruction must correspond one to one with the same encoding apart
//! from immediates. Then every reference is checked against that map:
//! - branches, jumps and `auipc` pairs (from the original's relocations, or paired by
//!   decoding when there are none), absolute `%hi`/`%lo` and `gp`-relative accesses
//!   (`code_refs`); an immediate that changed without such a reference is a mismatch;
//! - data under the original's relocations, dynamic relocations, GOT words, `.dynamic`,
//!   `.eh_frame_hdr`, kernel tables; every other byte of every non-code section must be
//!   unchanged (`data`, `bytes`);
//! - pads and slots, `__mcount_loc` and the runtime descriptor (`sites`);
//! - symbols, sizes, `e_entry`, program headers and the output's own relocations
//!   (`symbols`).
//!
//! Relocatable objects are not verified (the report says so).

mod bytes;
pub(crate) mod cfi;
mod code_refs;
mod ctx;
mod data;
mod inserted;
mod insn;
mod kernel;
mod map;
mod report;
mod sites;
mod symbols;
mod versions;
mod walk;

pub use map::Mapped;
pub use report::{Counts, Mismatch, VerifyReport, MAX_MISMATCHES};

use crate::elf::{ElfFile, FileKind};
use crate::error::Result;
use crate::riscv::Xlen;
use crate::scan::{scan, TABLE_SECTION};
use ctx::{is_tbss, Ctx};
use map::{Mapper, SectionImage};

use padtrim_abi::MCOUNT_SECTION;

/// Verifies that `rewritten` is a correct rewrite of `original`.
///
/// Returns `Err` only when an input cannot be read; every difference found is a
/// [`Mismatch`] in the report (see [`VerifyReport::is_ok`]).
pub fn verify(original: &ElfFile<'_>, rewritten: &ElfFile<'_>) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    if original.kind == FileKind::Relocatable {
        report.skipped = Some("relocatable objects are not verified".into());
        return Ok(report);
    }
    if original.is_64 != rewritten.is_64 || original.e_flags != rewritten.e_flags {
        report.mismatch(
            "file header",
            None,
            None,
            format!("class and flags of the original ({:#x})", original.e_flags),
            format!("{:#x}", rewritten.e_flags),
        );
        return Ok(report);
    }
    let Some((pairs, table, record)) = pair_sections(original, rewritten, &mut report) else {
        return Ok(report);
    };
    report.counts.sections = pairs.iter().filter(|p| p.is_some()).count() as u64;
    let ctx = Ctx {
        old: original,
        new: rewritten,
        pairs,
        table,
        record,
        old_relocs: crate::timing::phase("verify: relocations", || original.relocation_sections())?,
        new_relocs: rewritten.relocation_sections()?,
        xlen: if original.is_64 {
            Xlen::Rv64
        } else {
            Xlen::Rv32
        },
        ptr: original.ptr_size(),
        dyn_perm: versions::dynsym_permutation(original, rewritten)?,
    };
    let islands = sites::claimed_islands(&ctx);
    // The scan of the original and the code walk are independent: run them side by side.
    let (scanned, (mut mapper, walks, walked)) = crate::timing::phase("verify: scan+map", || {
        rayon::join(
            || scan(original),
            || {
                let mut r = VerifyReport::default();
                let (mapper, walks) = build_map(&ctx, &islands, &mut r);
                (mapper, walks, r)
            },
        )
    });
    report.merge(walked);
    let mut covered = bytes::Covered::default();
    let scanned = scanned?;
    crate::timing::phase("verify: sites", || {
        sites::check_sites(
            &ctx,
            &scanned,
            &mut mapper,
            &islands,
            &mut covered,
            &mut report,
        )
    })?;
    // An original without pads: the slots `rewrite --insert` put in front of functions (the
    // sites' checks look for them beside the pads of a mixed input).
    if scanned.sites.is_empty() {
        inserted::check(&ctx, &mut mapper, &mut report, None);
    }
    inserted::check_record(&ctx, &mapper, &islands, &mut report);
    // Symbols need only the map; everything else shares the covered fields.
    let (refs, syms) = crate::timing::phase("verify: refs+syms", || {
        rayon::join(
            || check_contents(&ctx, &mapper, &walks, &mut covered),
            || -> Result<VerifyReport> {
                let mut r = VerifyReport::default();
                crate::timing::phase("verify: symbols", || symbols::check(&ctx, &mapper, &mut r))?;
                Ok(r)
            },
        )
    });
    report.merge(refs?);
    report.merge(syms?);
    Ok(report)
}

/// The checks that share the covered fields, then every byte none of them covered.
fn check_contents(
    ctx: &Ctx<'_, '_, '_>,
    mapper: &Mapper,
    walks: &[walk::WalkResult],
    covered: &mut bytes::Covered,
) -> Result<VerifyReport> {
    use crate::timing::phase;
    let mut r = VerifyReport::default();
    let tls_got = phase("verify: code refs", || {
        code_refs::check(ctx, mapper, walks, &mut r)
    });
    phase("verify: data", || {
        data::check(ctx, mapper, &tls_got, covered, &mut r)
    })?;
    kernel::check(ctx, mapper, covered, &mut r);
    cfi::check(ctx, mapper, covered, &mut r);
    versions::check(ctx, covered, &mut r);
    versions::hash_tables(ctx, covered, &mut r)?;
    phase("verify: bytes", || bytes::compare(ctx, covered, &mut r));
    Ok(r)
}

/// Parses both files and verifies; errors name which file is unusable.
pub fn verify_bytes(original: &[u8], rewritten: &[u8]) -> Result<VerifyReport> {
    let old = crate::elf::parse(original)
        .map_err(|e| crate::Error::Malformed(format!("original: {e}")))?;
    let new = crate::elf::parse(rewritten)
        .map_err(|e| crate::Error::Malformed(format!("rewritten: {e}")))?;
    verify(&old, &new)
}

/// New section index of each old section, and of the added `__mcount_loc` and
/// non-allocated `__patchable_function_entries`, if any.
type Pairing = (Vec<Option<usize>>, Option<usize>, Option<usize>);

/// Pairs the sections of both files by position and name; the rewritten file may have one
/// extra `__mcount_loc` and, after every other section, one extra non-allocated
/// `__patchable_function_entries`. Returns `None` (with a mismatch) when they do not
/// correspond.
fn pair_sections(
    old: &ElfFile<'_>,
    new: &ElfFile<'_>,
    report: &mut VerifyReport,
) -> Option<Pairing> {
    let mut pairs = vec![None; old.sections.len()];
    let mut table = None;
    let mut record = None;
    let mut j = 1;
    for (i, s) in old.sections.iter().enumerate().skip(1) {
        while new
            .sections
            .get(j)
            .is_some_and(|n| n.name == MCOUNT_SECTION)
            && s.name != MCOUNT_SECTION
        {
            table = Some(j);
            j += 1;
        }
        match new.sections.get(j) {
            Some(n) if n.name == s.name && n.sh_type == s.sh_type => {
                pairs[i] = Some(j);
                j += 1;
            }
            other => {
                report.mismatch(
                    "section",
                    Some(s.addr),
                    other.map(|n| n.addr),
                    format!("section {} ({i}) of the original", s.name),
                    other.map_or("no section".to_string(), |n| {
                        format!("section {} ({j})", n.name)
                    }),
                );
                return None;
            }
        }
    }
    for n in &new.sections[j.min(new.sections.len())..] {
        if n.name == MCOUNT_SECTION && table.is_none() && record.is_none() {
            table = Some(n.index);
        } else if n.name == TABLE_SECTION && !n.is_alloc() && record.is_none() {
            record = Some(n.index);
        } else {
            report.mismatch(
                "section",
                None,
                Some(n.addr),
                "no further sections",
                format!("extra section {}", n.name),
            );
            return None;
        }
    }
    Some((pairs, table, record))
}

/// Builds the address map: block moves for data, a parallel walk for every code section.
fn build_map(
    ctx: &Ctx<'_, '_, '_>,
    islands: &[u64],
    report: &mut VerifyReport,
) -> (Mapper, Vec<walk::WalkResult>) {
    let mut mapper = Mapper {
        by_index: vec![None; ctx.old.sections.len()],
        ..Mapper::default()
    };
    let mut walks = Vec::new();
    let table_range = ctx
        .table
        .map(|t| &ctx.new.sections[t])
        .map(|t| (t.addr, t.addr + t.size));
    for (i, s) in ctx.old.sections.iter().enumerate() {
        if !s.is_alloc() || s.size == 0 || is_tbss(s) {
            continue;
        }
        let Some(n) = ctx.new_section(i) else {
            continue;
        };
        let mut image = SectionImage {
            old_index: i,
            old_addr: s.addr,
            old_size: s.size,
            new_addr: n.addr,
            code: None,
        };
        if ctx.is_code(i) {
            let new_bytes = ctx.new_data(i);
            // In the in-place layout the table may sit in the free tail of a code section.
            let code_len = match table_range {
                Some((lo, hi)) if lo >= n.addr && lo < n.addr + n.size => {
                    let tail = &new_bytes[((hi - n.addr) as usize).min(new_bytes.len())..];
                    if insn::nop_run(tail, 0, ctx.old.rvc()) != tail.len() {
                        report.mismatch(
                            "free space",
                            None,
                            Some(hi),
                            "nops after __mcount_loc",
                            "other bytes",
                        );
                    }
                    (lo - n.addr) as usize
                }
                _ => new_bytes.len(),
            };
            let mut w = walk::walk(
                i,
                walk::Side {
                    bytes: ctx.old_data(i),
                    addr: s.addr,
                },
                walk::Side {
                    bytes: &new_bytes[..code_len.min(new_bytes.len())],
                    addr: n.addr,
                },
                walk::NonCode {
                    fields: &data::code_data_fields(ctx, i),
                    islands,
                },
                ctx.old.rvc(),
                ctx.xlen,
                report,
            );
            image.code = Some(mapper.code.len());
            w.map.index();
            mapper.code.push(std::mem::take(&mut w.map));
            mapper.islands.extend(&w.islands);
            walks.push(w);
        }
        mapper.sections.push(image);
    }
    mapper.sections.sort_by_key(|s| (s.old_addr, s.old_index));
    mapper.islands.sort_unstable();
    for (pos, s) in mapper.sections.iter().enumerate() {
        mapper.by_index[s.old_index] = Some(pos);
    }
    (mapper, walks)
}

#[cfg(test)]
mod tests;
