//! Pads and slots: where each pad went, what its slot holds, `__mcount_loc` and the
//! runtime's descriptor.
//!
//! The rewritten file's own patch table says where each pad's kept bytes start (table entry
//! `k` of both files describe the same pad). The verifier checks that claim against the
//! walk: the new entry must lie in the image of the pad's nop run, the kept bytes must end
//! where the function's code starts, every pad must keep the same number of bytes (what the
//! pad had, up to one slot size), and a 4-byte slot must be one aligned `nop`. Where a pad
//! kept bytes before its function, the function's place among them is what the file says
//! (its `__mcount_loc` entry, else its symbol), and every reference is checked against it.

use std::collections::BTreeMap;

use object::elf;

use super::bytes::Covered;
use super::ctx::Ctx;
use super::map::{CodeMap, Mapper, Piece, SiteImage};
use super::report::VerifyReport;
use crate::elf::{read_uint, ElfFile, FileKind, RelocSection};
use crate::error::Result;
use crate::riscv::NOP;
use crate::scan::ftrace::{ISLANDS_SYMBOL, JAL_CALLER_SYMBOL};
use crate::scan::{PatchSite, Scan, TABLE_SECTION};

use padtrim_abi::{Descriptor as FilledDescriptor, DESCRIPTOR_MAGIC, DESCRIPTOR_SYMBOL};
use padtrim_abi::{MCOUNT_SECTION, TRAMPOLINE_SYMBOL};

/// A patch table: entry values and where each entry is.
struct Table {
    values: Vec<u64>,
    places: Vec<u64>,
}

/// Reads the patch table of a linked file: `__patchable_function_entries` (with the
/// loader's `R_RISCV_RELATIVE` addends where it has them), or a kernel's mcount table. The
/// non-allocated one an insertion adds (section `record`) is not part of it: it lists every
/// slot, and is checked on its own.
fn read_table(file: &ElfFile<'_>, relocs: &[RelocSection], record: Option<usize>) -> Table {
    let ptr = file.ptr_size();
    let mut t = Table {
        values: Vec::new(),
        places: Vec::new(),
    };
    if file.kind == FileKind::Vmlinux {
        let find = |n: &str| file.symbol_by_name(n).map(|s| s.value);
        if let (Some(start), Some(stop)) = (find("__start_mcount_loc"), find("__stop_mcount_loc")) {
            let mut at = start;
            while at + ptr as u64 <= stop {
                let Some(v) = file.read_ptr_at(at) else { break };
                t.values.push(v);
                t.places.push(at);
                at += ptr as u64;
            }
        }
        return t;
    }
    // The loader's addends, by place (sorted; the table is read in address order).
    let mut relative: Vec<(u64, u64)> = relocs
        .iter()
        .filter(|r| file.sections[r.index].is_alloc())
        .flat_map(|rs| rs.relocs.iter())
        .filter(|r| r.r_type == elf::R_RISCV_RELATIVE.0)
        .map(|r| (r.offset, r.addend as u64))
        .collect();
    relative.sort_unstable();
    for s in file
        .sections
        .iter()
        .filter(|s| s.name == TABLE_SECTION && Some(s.index) != record)
    {
        let data = file.section_data(s).unwrap_or(&[]);
        for off in (0..data.len()).step_by(ptr) {
            let at = s.addr + off as u64;
            let v = relative
                .binary_search_by_key(&at, |r| r.0)
                .ok()
                .map(|k| relative[k].1)
                .or_else(|| read_uint(data, off, ptr))
                .unwrap_or(0);
            t.values.push(v);
            t.places.push(at);
        }
    }
    t
}

/// Bytes at an address of a linked file (any allocated section with contents).
pub(super) fn bytes_at<'d>(file: &ElfFile<'d>, addr: u64, len: usize) -> Option<&'d [u8]> {
    let s = file.alloc_section_at(addr)?;
    let data = file.section_data(s).ok()?;
    let off = usize::try_from(addr - s.addr).ok()?;
    data.get(off..off.checked_add(len)?)
}

/// What the walk says about one site.
struct Placed {
    site: usize,
    /// Position of the pad's code map in [`Mapper::code`].
    code: usize,
    old_func: u64,
    new_entry: u64,
    new_func: u64,
    keep_pre: u64,
    keep_slot: u64,
    pre: u64,
    post: u64,
}

/// Where the rewritten file says the function of a pad that kept bytes before it now
/// starts, among its kept bytes `kept`: its `__mcount_loc` entry there, else the new value
/// of the function's own symbol.
///
/// The kept bytes alone cannot tell: `--pre 4 --slot 4` and `--pre 0 --slot 8` keep the
/// same two 4-byte nops of an rv64g pad, and differ only in where the function starts. The
/// claim taken here fixes that place; every reference to the function (calls, symbols,
/// data, the table) is then checked against it, so a rewrite that says one place and
/// uses another still fails.
fn claimed_function(
    ctx: &Ctx<'_, '_, '_>,
    site: &PatchSite,
    kept: std::ops::RangeInclusive<u64>,
    sorted_mcount: Option<&[u64]>,
) -> Option<u64> {
    let from_table = sorted_mcount.and_then(|values| {
        let k = values.partition_point(|v| v < kept.start());
        values.get(k).filter(|v| kept.contains(v)).copied()
    });
    from_table.or_else(|| {
        let k = site.symbol?;
        let (old, new) = (ctx.old.symbols.get(k)?, ctx.new.symbols.get(k)?);
        (old.name == new.name && old.value == site.func_addr && kept.contains(&new.value))
            .then_some(new.value)
    })
}

/// Checks every site, fills the code maps' site images, checks `__mcount_loc` and the
/// descriptor.
pub(super) fn check_sites(
    ctx: &Ctx<'_, '_, '_>,
    old_scan: &Scan,
    mapper: &mut Mapper,
    islands: &[u64],
    covered: &mut Covered,
    report: &mut VerifyReport,
) -> Result<()> {
    let sites = &old_scan.sites;
    if sites.is_empty() {
        return Ok(());
    }
    let old_t = read_table(ctx.old, &ctx.old_relocs, None);
    let new_t = read_table(ctx.new, &ctx.new_relocs, ctx.record);
    // An emptied table (`--slot 0`): each site's new entry is where its run ends, past the
    // nops before it (alignment padding, whose size the layout may change, so the kept
    // bytes cannot be told from alignment here: the rewriter empties only with slot 0).
    let emptied = ctx.patch_table_emptied();
    if old_t.values.len() != new_t.values.len() && !emptied {
        report.mismatch(
            "patch table",
            old_t.places.first().copied(),
            new_t.places.first().copied(),
            format!("{} entries", old_t.values.len()),
            format!("{} entries", new_t.values.len()),
        );
        return Ok(());
    }
    let entries = Entries {
        map: entry_map(&old_t, &new_t, report),
        emptied,
    };
    let mcount = read_mcount(ctx);
    let mut sorted_mcount: Vec<u64> = mcount.as_ref().map(|m| m.1.clone()).unwrap_or_default();
    sorted_mcount.sort_unstable();
    let sorted_mcount = mcount.is_some().then_some(&sorted_mcount[..]);
    let (mut placed, claims) = place_sites(ctx, sites, mapper, &entries, sorted_mcount, report);
    split_kept(sites, &mut placed, claims, mapper);
    let slot = check_slot_sizes(ctx, sites, &placed, report);
    check_islands(ctx, mapper, islands, &placed, slot, report);
    if let Some((addr, values)) = &mcount {
        let inserted = inserted_beside(ctx, mapper, values, &placed, islands, slot, report);
        check_mcount(
            *addr,
            values,
            (&placed, &inserted),
            islands,
            ctx.ptr,
            report,
        );
        let desc = Descriptor {
            table_addr: *addr,
            count: (placed.len() + inserted.len()) as u64,
            islands,
            slot,
        };
        check_descriptor(ctx, mapper, &desc, covered, report);
    } else if ctx.old.kind == FileKind::Vmlinux {
        check_kernel_table_order(&old_t, &new_t, report);
        check_kernel_islands(ctx, islands, covered, report);
    } else if !islands.is_empty() {
        report.mismatch(
            "island",
            None,
            islands.first().copied(),
            "islands only with a __mcount_loc table",
            format!("{} islands", islands.len()),
        );
    }
    Ok(())
}

/// Old entry → (new entry, its place), sorted; a duplicated old entry must map one way.
fn entry_map(old_t: &Table, new_t: &Table, report: &mut VerifyReport) -> Vec<(u64, u64, u64)> {
    let mut entry_map: Vec<(u64, u64, u64)> = old_t
        .values
        .iter()
        .zip(&new_t.values)
        .zip(&new_t.places)
        .map(|((&o, &n), &p)| (o, n, p))
        .collect();
    entry_map.sort_unstable();
    for w in entry_map.windows(2) {
        if w[0].0 == w[1].0 && w[0].1 != w[1].1 {
            report.mismatch(
                "patch table",
                Some(w[0].0),
                Some(w[1].2),
                format!("the same new entry as the duplicate at {:#x}", w[0].2),
                format!("{:#x}", w[1].1),
            );
        }
    }
    entry_map
}

/// The added `__mcount_loc`, if any: its address and entries.
fn read_mcount(ctx: &Ctx<'_, '_, '_>) -> Option<(u64, Vec<u64>)> {
    ctx.table.map(|t| {
        let s = &ctx.new.sections[t];
        let data = ctx.new.section_data(s).unwrap_or(&[]);
        let values: Vec<u64> = (0..data.len() / ctx.ptr)
            .map(|k| read_uint(data, k * ctx.ptr, ctx.ptr).unwrap_or(0))
            .collect();
        (s.addr, values)
    })
}

/// Where the rewritten file's patch table says each site's pad now starts.
struct Entries {
    /// From [`entry_map`].
    map: Vec<(u64, u64, u64)>,
    /// The table was emptied: the new entry is where the pad's kept bytes end instead.
    emptied: bool,
}

impl Entries {
    /// The new entry of `site`, whose pad is in code map `cm`.
    fn new_entry(&self, site: &PatchSite, cm: &CodeMap) -> Option<u64> {
        if self.emptied {
            let run = cm.run_at(site.entry)?;
            (run.new + run.new_len).checked_sub(body_nops(site, &run))
        } else {
            let map = &self.map;
            let k = map.binary_search_by_key(&site.entry, |e| e.0).ok()?;
            Some(map[k].1)
        }
    }
}

/// Nops after the pad in the same run: they belong to the function's code.
fn body_nops(site: &PatchSite, run: &Piece) -> u64 {
    (run.old + run.old_len).saturating_sub(site.entry + u64::from(site.pad_bytes))
}

/// Each site's pad in the walk, its kept bytes (all slot so far) and its claimed pre bytes.
fn place_sites(
    ctx: &Ctx<'_, '_, '_>,
    sites: &[PatchSite],
    mapper: &Mapper,
    entries: &Entries,
    sorted_mcount: Option<&[u64]>,
    report: &mut VerifyReport,
) -> (Vec<Placed>, Vec<Option<u64>>) {
    let mut placed = Vec::with_capacity(sites.len());
    // Bytes each pad kept before its function, where the rewritten file says so.
    let mut claims: Vec<Option<u64>> = Vec::with_capacity(sites.len());
    let mut last_run: Option<(usize, u64)> = None;
    for (i, site) in sites.iter().enumerate() {
        let Some(code) = mapper.image(site.section).and_then(|s| s.code) else {
            continue;
        };
        let cm = &mapper.code[code];
        let Some(new_entry) = entries.new_entry(site, cm) else {
            report.mismatch(
                "site",
                Some(site.entry),
                None,
                "an entry in the patch table",
                "none",
            );
            continue;
        };
        let Some(run) = cm.run_at(site.entry) else {
            if cm.failed_at.is_some_and(|f| site.entry >= f) {
                report.counts.unchecked += 1;
            } else {
                report.mismatch(
                    "site",
                    Some(site.entry),
                    Some(new_entry),
                    "a pad (nop run) at the table entry",
                    "no nop run",
                );
            }
            continue;
        };
        if last_run == Some((code, run.old)) {
            report.mismatch(
                "site",
                Some(site.entry),
                Some(new_entry),
                "one pad per nop run",
                "a second pad in the same run",
            );
            continue;
        }
        last_run = Some((code, run.old));
        let Some(kept_end) = kept_end(site, &run, new_entry, report) else {
            continue;
        };
        let pre = u64::from(site.pre_bytes);
        // Where the function now starts among the kept bytes (its slot's first byte).
        let func = if pre == 0 {
            Some(new_entry)
        } else {
            claimed_function(ctx, site, new_entry..=kept_end, sorted_mcount)
        };
        claims.push(func.map(|f| f - new_entry));
        placed.push(Placed {
            site: i,
            code,
            old_func: site.func_addr,
            new_entry,
            new_func: new_entry,
            keep_pre: 0,
            keep_slot: kept_end - new_entry,
            pre,
            post: u64::from(site.pad_bytes) - pre,
        });
    }
    (placed, claims)
}

/// Where `site`'s kept bytes end in the new file, if its new entry `new_entry` is among them.
fn kept_end(
    site: &PatchSite,
    run: &Piece,
    new_entry: u64,
    report: &mut VerifyReport,
) -> Option<u64> {
    let body_nops = body_nops(site, run);
    let Some(kept_end) = (run.new + run.new_len).checked_sub(body_nops) else {
        report.mismatch(
            "site",
            Some(site.entry),
            Some(new_entry),
            format!("{body_nops} nops after the pad, as before"),
            format!("a run of {} bytes", run.new_len),
        );
        return None;
    };
    if new_entry < run.new || new_entry > kept_end {
        report.mismatch(
            "site",
            Some(site.entry),
            Some(new_entry),
            format!("a table entry in {:#x}..={kept_end:#x}", run.new),
            format!("{new_entry:#x}"),
        );
        return None;
    }
    Some(kept_end)
}

/// Splits kept bytes into pre bytes and slot, and gives the code maps their site images.
fn split_kept(
    sites: &[PatchSite],
    placed: &mut [Placed],
    claims: Vec<Option<u64>>,
    mapper: &mut Mapper,
) {
    // A pad without a claim (its function has no symbol and no __mcount_loc entry) keeps
    // as many bytes before its function as the others; with no claim anywhere, a pad that
    // kept more than its bytes after the function kept the difference before it.
    let claimed_pre = claims
        .iter()
        .zip(placed.iter())
        .filter(|(_, p)| p.pre > 0)
        .filter_map(|(c, _)| *c)
        .max();
    let mut images: BTreeMap<usize, Vec<SiteImage>> = BTreeMap::new();
    for (p, claim) in placed.iter_mut().zip(claims) {
        let kept = p.keep_slot;
        let keep_pre = claim.unwrap_or_else(|| match claimed_pre {
            Some(k) => k.min(p.pre).min(kept),
            None => kept.saturating_sub(p.post),
        });
        p.keep_pre = keep_pre;
        p.keep_slot = kept - keep_pre;
        p.new_func = p.new_entry + keep_pre;
        images.entry(p.code).or_default().push(SiteImage {
            old_entry: sites[p.site].entry,
            old_func: p.old_func,
            new_entry: p.new_entry,
            new_func: p.new_func,
        });
    }
    for (code, mut v) in images {
        v.sort_by_key(|s| s.old_entry);
        mapper.code[code].set_sites(v);
    }
}

/// One slot and one pre size for all pads (capped per pad), then each pad's bytes; the slot.
fn check_slot_sizes(
    ctx: &Ctx<'_, '_, '_>,
    sites: &[PatchSite],
    placed: &[Placed],
    report: &mut VerifyReport,
) -> u64 {
    let slot = placed.iter().map(|p| p.keep_slot).max().unwrap_or(0);
    let keep_pre = placed.iter().map(|p| p.keep_pre).max().unwrap_or(0);
    report.slot_bytes = Some(slot as u32);
    report.pre_bytes = Some(keep_pre as u32);
    for p in placed {
        let site = &sites[p.site];
        report.counts.sites += 1;
        if p.keep_slot != slot.min(p.post) || p.keep_pre != keep_pre.min(p.pre) {
            report.mismatch(
                "slot size",
                Some(site.entry),
                Some(p.new_entry),
                format!(
                    "{} bytes kept before and {} at the function, like every pad",
                    keep_pre.min(p.pre),
                    slot.min(p.post)
                ),
                format!("{} and {}", p.keep_pre, p.keep_slot),
            );
            continue;
        }
        check_slot_bytes(ctx, p, slot, report);
    }
    slot
}

/// A kernel's own mcount table (no `__mcount_loc` added) stays sorted.
fn check_kernel_table_order(old_t: &Table, new_t: &Table, report: &mut VerifyReport) {
    for (k, w) in new_t.values.windows(2).enumerate() {
        if w[0] > w[1] && old_t.values[k] <= old_t.values[k + 1] {
            report.mismatch(
                "mcount table",
                Some(old_t.places[k + 1]),
                Some(new_t.places[k + 1]),
                format!("sorted: at least {:#x}", w[0]),
                format!("{:#x}", w[1]),
            );
        }
    }
}

/// The kept bytes of one pad: a 4-byte slot is one aligned `nop`; anything else is the
/// pad's own bytes, unchanged.
fn check_slot_bytes(ctx: &Ctx<'_, '_, '_>, p: &Placed, slot: u64, report: &mut VerifyReport) {
    let site_entry = p.old_func - p.pre;
    let old_slot = bytes_at(ctx.old, p.old_func, p.keep_slot as usize);
    let new_slot = bytes_at(ctx.new, p.new_func, p.keep_slot as usize);
    // A pad no larger than the slot may also be kept whole, as it was (a slot of 8 or 16
    // bytes cannot be told from a 4-byte one when every pad had 4 bytes).
    let kept_whole = p.keep_slot == p.post
        && old_slot.is_some()
        && old_slot == new_slot
        && p.new_func % 4 == p.old_func % 4;
    if p.keep_slot == 4 && slot == 4 && !kept_whole {
        report.counts.alignment_points += 1;
        let word = bytes_at(ctx.new, p.new_func, 4).and_then(|b| read_uint(b, 0, 4));
        if !p.new_func.is_multiple_of(4) || word != Some(u64::from(NOP)) {
            report.mismatch(
                "slot",
                Some(p.old_func),
                Some(p.new_func),
                "a 4-byte nop (0x00000013) at a 4-byte aligned address",
                match word {
                    Some(w) => format!("{w:#010x} at {:#x}", p.new_func),
                    None => "nothing".into(),
                },
            );
        }
    } else if p.keep_slot > 0 {
        let (old, new) = (old_slot, new_slot);
        if old.is_none() || old != new {
            report.mismatch(
                "slot",
                Some(p.old_func),
                Some(p.new_func),
                format!(
                    "the pad's first {} bytes {:02x?}",
                    p.keep_slot,
                    old.unwrap_or(&[])
                ),
                format!("{:02x?}", new.unwrap_or(&[])),
            );
        }
        if p.keep_slot >= 8 {
            report.counts.alignment_points += 1;
            if p.new_func % 4 != p.old_func % 4 {
                report.mismatch(
                    "alignment",
                    Some(p.old_func),
                    Some(p.new_func),
                    format!("a slot at the same position modulo 4 ({})", p.old_func % 4),
                    format!("{}", p.new_func % 4),
                );
            }
        }
    }
    if p.keep_pre > 0 {
        let old = bytes_at(ctx.old, p.old_func - p.keep_pre, p.keep_pre as usize);
        let new = bytes_at(ctx.new, p.new_entry, p.keep_pre as usize);
        if old.is_none() || old != new {
            report.mismatch(
                "slot",
                Some(site_entry),
                Some(p.new_entry),
                format!("the pad's {} bytes before the function", p.keep_pre),
                format!("{:02x?}", new.unwrap_or(&[])),
            );
        }
    }
}

/// A mixed input's `rewrite --insert` (pads compacted, slots inserted into the functions
/// without one): when `__mcount_loc` has more nonzero entries than pads and islands, the
/// others must be inserted slots (proven and recorded by [`super::inserted::check`]), of
/// the pads' slot size or more (a pad shorter than the slot keeps its own size). Returns
/// their addresses, sorted.
fn inserted_beside(
    ctx: &Ctx<'_, '_, '_>,
    mapper: &mut Mapper,
    values: &[u64],
    placed: &[Placed],
    islands: &[u64],
    slot: u64,
    report: &mut VerifyReport,
) -> Vec<u64> {
    let nonzero = values.iter().filter(|&&v| v != 0).count();
    if nonzero <= placed.len() + islands.len() {
        return Vec::new();
    }
    let mut known: Vec<u64> = placed.iter().map(|p| p.new_func).collect();
    known.extend_from_slice(islands);
    known.sort_unstable();
    let proven = super::inserted::check(ctx, mapper, report, Some(&known));
    for &(at, len) in &proven {
        if len < slot {
            report.mismatch(
                "slot size",
                None,
                Some(at),
                format!("an inserted slot of {slot} bytes, like the pads' slots"),
                format!("{len} bytes"),
            );
        }
    }
    let mut at: Vec<u64> = proven.into_iter().map(|(at, _)| at).collect();
    at.sort_unstable();
    at
}

/// `__mcount_loc`: one entry per site (its slot address) and per inserted slot (a mixed
/// `rewrite --insert`), sorted, then the islands (sorted), then zeros (room reserved for
/// islands).
fn check_mcount(
    addr: u64,
    values: &[u64],
    (placed, inserted): (&[Placed], &[u64]),
    islands: &[u64],
    ptr: usize,
    report: &mut VerifyReport,
) {
    let mut expected: Vec<u64> = placed.iter().map(|p| p.new_func).collect();
    expected.extend_from_slice(inserted);
    expected.sort_unstable();
    let slots = expected.len();
    expected.extend_from_slice(islands);
    if values.len() < expected.len() {
        report.mismatch(
            MCOUNT_SECTION,
            None,
            Some(addr),
            format!("{slots} slots and {} islands", islands.len()),
            format!("{} entries", values.len()),
        );
    }
    for (k, &v) in values.iter().enumerate() {
        let at = addr + (k * ptr) as u64;
        let Some(&e) = expected.get(k) else {
            if v != 0 {
                report.mismatch(
                    MCOUNT_SECTION,
                    None,
                    Some(at),
                    format!("entry {k} = 0 (unused)"),
                    format!("{v:#x}"),
                );
            }
            continue;
        };
        // An inserted slot's entry was counted when it was proven.
        if inserted.binary_search(&e).is_err() {
            report.counts.mcount_entries += 1;
        }
        if k > 0 && k != slots && values[k - 1] >= v {
            report.mismatch(
                MCOUNT_SECTION,
                None,
                Some(at),
                format!(
                    "entry {k} greater than the one before ({:#x})",
                    values[k - 1]
                ),
                format!("{v:#x}"),
            );
        }
        if v != e {
            let what = if k < slots { "slot" } else { "island" };
            report.mismatch(
                MCOUNT_SECTION,
                None,
                Some(at),
                format!("entry {k} = {what} {e:#x}"),
                format!("{v:#x}"),
            );
        }
    }
}

/// `auipc t1, 0`: an island's first instruction with its immediate cleared.
const ISLAND_AUIPC: u32 = 0x0000_0317;
/// `jalr x0, 0(t1)`: an island's second instruction with its immediate cleared.
const ISLAND_JR: u32 = 0x0003_0067;

/// Trampoline islands: each one the rewritten file claims was found by the walk (inside a
/// nop run, so it moved no code), is 4-byte aligned, and jumps to the runtime's trampoline;
/// every 4-byte slot has the trampoline or an island within `jal` reach.
fn check_islands(
    ctx: &Ctx<'_, '_, '_>,
    mapper: &Mapper,
    islands: &[u64],
    placed: &[Placed],
    slot: u64,
    report: &mut VerifyReport,
) {
    // A patched kernel's islands jump to its ftrace_jal_caller.
    let tramp = ctx
        .old
        .symbol_by_name(TRAMPOLINE_SYMBOL)
        .or_else(|| kernel_jal_caller(ctx.old))
        .filter(|s| s.section().is_some())
        .and_then(|s| mapper.map(s.value).exact());
    for &at in islands {
        report.counts.islands += 1;
        if mapper.islands.binary_search(&at).is_err() {
            report.mismatch(
                "island",
                None,
                Some(at),
                "an island inside the nops of a pad or padding",
                "none found there by the code walk",
            );
            continue;
        }
        let word = |o: u64| bytes_at(ctx.new, at + o, 4).and_then(|b| read_uint(b, 0, 4));
        let (Some(a), Some(j)) = (word(0), word(4)) else {
            continue;
        };
        let (a, j) = (a as u32, j as u32);
        let hi = i64::from((a & 0xffff_f000) as i32);
        let lo = i64::from((j as i32) >> 20);
        let target = at.wrapping_add((hi + lo) as u64);
        let ok = at % 4 == 0
            && a & 0xfff == ISLAND_AUIPC
            && j & 0xf_ffff == ISLAND_JR
            && Some(target) == tramp;
        if !ok {
            report.mismatch(
                "island",
                None,
                Some(at),
                format!(
                    "auipc t1; jr t1 to the trampoline {} at a 4-byte aligned address",
                    tramp.map_or("(none)".into(), |t| format!("{t:#x}"))
                ),
                format!("{a:#010x} {j:#010x} reaching {target:#x}"),
            );
        }
    }
    let Some(tramp) = tramp else { return };
    if slot != 4 || (ctx.table.is_none() && ctx.old.kind != FileKind::Vmlinux) {
        return;
    }
    // jal reaches [-1 MiB, +1 MiB - 2].
    let reach = |from: u64, to: u64| {
        (-(1i64 << 20)..(1i64 << 20)).contains(&(to.wrapping_sub(from) as i64))
    };
    for p in placed.iter().filter(|p| p.keep_slot == 4) {
        let i = islands.partition_point(|&x| x < p.new_func);
        let near = [
            i.checked_sub(1).and_then(|k| islands.get(k)),
            islands.get(i),
        ];
        if !reach(p.new_func, tramp) && !near.iter().flatten().any(|&&x| reach(p.new_func, x)) {
            report.mismatch(
                "island",
                Some(p.old_func),
                Some(p.new_func),
                "the trampoline or an island within jal reach of the slot",
                "none",
            );
        }
    }
}

/// What the runtime's descriptor must say.
struct Descriptor<'a> {
    table_addr: u64,
    count: u64,
    islands: &'a [u64],
    slot: u64,
}

/// `ftrace_jal_caller` of a vmlinux built with padtrim's kernel patch series.
fn kernel_jal_caller<'f>(file: &'f ElfFile<'_>) -> Option<&'f crate::elf::Symbol<'f>> {
    (file.kind == FileKind::Vmlinux && file.symbol_by_name(ISLANDS_SYMBOL).is_some())
        .then(|| file.symbol_by_name(JAL_CALLER_SYMBOL))
        .flatten()
}

/// A patched kernel's island table (`riscv_ftrace_islands`): (its address, its entries up
/// to the first zero).
fn kernel_island_table(file: &ElfFile<'_>, ptr: usize) -> Option<(u64, Vec<u64>)> {
    kernel_jal_caller(file)?;
    let sym = file.symbol_by_name(ISLANDS_SYMBOL)?;
    let entries = (0..sym.size / ptr as u64)
        .map_while(|k| {
            bytes_at(file, sym.value + k * ptr as u64, ptr).and_then(|b| read_uint(b, 0, ptr))
        })
        .take_while(|&v| v != 0)
        .collect();
    Some((sym.value, entries))
}

/// A patched kernel's island table: empty in the original, and in the rewritten file the
/// islands (the walk checks each one), sorted, then zeros. The rewriter fills it: its bytes
/// are covered here.
fn check_kernel_islands(
    ctx: &Ctx<'_, '_, '_>,
    islands: &[u64],
    covered: &mut Covered,
    report: &mut VerifyReport,
) {
    let (Some((old_addr, old)), Some((new_addr, new))) = (
        kernel_island_table(ctx.old, ctx.ptr),
        kernel_island_table(ctx.new, ctx.ptr),
    ) else {
        return;
    };
    if !old.is_empty() && old != new {
        report.mismatch(
            "island table",
            Some(old_addr),
            Some(new_addr),
            format!("{} entries, as in the original", old.len()),
            format!("{} entries", new.len()),
        );
    }
    if new != islands || !new.is_sorted() {
        report.mismatch(
            "island table",
            Some(old_addr),
            Some(new_addr),
            format!("the {} islands, sorted", islands.len()),
            format!("{} entries", new.len()),
        );
    }
    if let Some(sym) = ctx.old.symbol_by_name(ISLANDS_SYMBOL) {
        if let Some(sec) = sym.section() {
            covered.add(sec, sym.value - ctx.old.sections[sec].addr, sym.size);
        }
    }
}

/// The islands the rewritten file claims, from its filled runtime descriptor, or a patched
/// kernel's island table (sorted).
pub(super) fn claimed_islands(ctx: &Ctx<'_, '_, '_>) -> Vec<u64> {
    let Some(sym) = ctx.new.symbol_by_name(DESCRIPTOR_SYMBOL) else {
        return kernel_island_table(ctx.new, ctx.ptr).map_or(Vec::new(), |(_, mut v)| {
            v.sort_unstable();
            v
        });
    };
    let Some(desc) =
        bytes_at(ctx.new, sym.value, FilledDescriptor::SIZE).and_then(FilledDescriptor::from_bytes)
    else {
        return Vec::new();
    };
    if desc.magic != DESCRIPTOR_MAGIC || desc.slot_size == 0 {
        return Vec::new();
    }
    let (addr, count) = (desc.islands_addr, desc.islands_count);
    let ptr = ctx.ptr as u64;
    let mut out: Vec<u64> = (0..count.min(1 << 20))
        .map_while(|k| {
            bytes_at(ctx.new, addr + k * ptr, ctx.ptr).and_then(|b| read_uint(b, 0, ctx.ptr))
        })
        .collect();
    out.sort_unstable();
    out
}

/// The runtime descriptor, if the program carries the runtime: filled with the slot size,
/// its own address, and the table's address and length.
fn check_descriptor(
    ctx: &Ctx<'_, '_, '_>,
    mapper: &Mapper,
    want: &Descriptor<'_>,
    covered: &mut Covered,
    report: &mut VerifyReport,
) {
    let Some(sym) = ctx.old.symbol_by_name(DESCRIPTOR_SYMBOL) else {
        return;
    };
    let Some(sec) = sym.section() else { return };
    let Some(new_addr) = mapper.map_in(sec, sym.value).exact() else {
        return;
    };
    let Some(found) =
        bytes_at(ctx.new, new_addr, FilledDescriptor::SIZE).and_then(FilledDescriptor::from_bytes)
    else {
        report.mismatch(
            "descriptor",
            Some(sym.value),
            Some(new_addr),
            format!("{} bytes", FilledDescriptor::SIZE),
            "none",
        );
        return;
    };
    let islands_addr = if want.islands.is_empty() {
        0
    } else {
        want.table_addr + want.count * ctx.ptr as u64
    };
    let expected = [
        want.slot,
        new_addr,
        want.table_addr,
        want.count,
        islands_addr,
        want.islands.len() as u64,
    ];
    let fields = FilledDescriptor::FILLED_FIELDS
        .iter()
        .zip(expected)
        .zip(found.filled_values());
    for ((field, value), got) in fields {
        if got != value {
            let off = field.offset as u64;
            report.mismatch(
                "descriptor",
                Some(sym.value + off),
                Some(new_addr + off),
                format!("{} = {value:#x}", field.name),
                format!("{got:#x}"),
            );
        }
    }
    // What the rewriter fills: every field after the magic and the version.
    let filled_from = FilledDescriptor::FILLED_FIELDS[0].offset as u64;
    covered.add(
        sec,
        sym.value - ctx.old.sections[sec].addr + filled_from,
        FilledDescriptor::SIZE as u64 - filled_from,
    );
}
