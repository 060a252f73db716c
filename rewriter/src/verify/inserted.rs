//! Slots inserted by `rewrite --insert` into a program's functions that had no pads (all of
//! them, or those beside the pads of a mixed input): every `__mcount_loc` entry that is not
//! a compacted pad's slot or an island must be a slot of whole 4-byte nops that the walk found as new nops
//! right in front of the first instruction of a function of the original (a `STT_FUNC`
//! symbol with a size), 4-byte aligned, all of one size (4 or 8 bytes), sorted. Each one
//! proven is recorded in its code map: from then on a reference to the old entry must reach
//! the slot, and the entry's instruction is behind it.

use padtrim_abi::MCOUNT_SECTION;

use crate::scan::TABLE_SECTION;

use super::ctx::Ctx;
use super::map::{InsertedSlot, Mapper};
use super::report::VerifyReport;
use crate::elf::read_uint;
use crate::riscv::NOP;

/// Checks the inserted slots the rewritten file's `__mcount_loc` claims and records them in
/// `mapper`: every entry of an original without patch sites, else (a mixed input) the
/// nonzero entries that are not in `known` (sorted: the compacted pads' slots and the
/// islands, checked by the sites' checks). Returns the slots proven: (new slot address,
/// slot bytes), sorted.
pub(super) fn check(
    ctx: &Ctx<'_, '_, '_>,
    mapper: &mut Mapper,
    report: &mut VerifyReport,
    known: Option<&[u64]>,
) -> Vec<(u64, u64)> {
    let Some(t) = ctx.table else {
        return Vec::new();
    };
    let table = &ctx.new.sections[t];
    let data = ctx.new.section_data(table).unwrap_or(&[]);
    let values: Vec<(usize, u64)> = (0..data.len() / ctx.ptr)
        .filter_map(|k| Some((k, read_uint(data, k * ctx.ptr, ctx.ptr)?)))
        .filter(|&(_, v)| known.is_none_or(|known| v != 0 && known.binary_search(&v).is_err()))
        .collect();
    // Old function entry -> old end (the largest size among its symbols).
    let mut funcs: Vec<(u64, u64)> = ctx
        .old
        .symbols
        .iter()
        .filter(|s| s.kind == object::elf::STT_FUNC.0 && s.size > 0 && s.section().is_some())
        .map(|s| (s.value, s.value.saturating_add(s.size)))
        .collect();
    funcs.sort_unstable();
    let mut slot_len = None;
    let mut found: Vec<Vec<InsertedSlot>> = vec![Vec::new(); mapper.code.len()];
    let mut proven = Vec::new();
    for (n, &(k, v)) in values.iter().enumerate() {
        let at = table.addr + (k * ctx.ptr) as u64;
        report.counts.mcount_entries += 1;
        let bad = |report: &mut VerifyReport, what: &str| {
            report.mismatch(
                MCOUNT_SECTION,
                None,
                Some(at),
                format!("entry {k}: an inserted slot ({what})"),
                format!("{v:#x}"),
            )
        };
        if n > 0 && values[n - 1].1 >= v {
            bad(report, "entries sorted");
            continue;
        }
        let Some((c, slot)) = find_slot(ctx, mapper, &funcs, v) else {
            bad(
                report,
                "new nops in front of a function's first instruction",
            );
            continue;
        };
        let len = slot.new_first - slot.new_slot;
        if v % 4 != 0 || !(len == 4 || len == 8) || *slot_len.get_or_insert(len) != len {
            bad(report, "4-byte aligned, 4 or 8 bytes, one size for all");
            continue;
        }
        proven.push((v, len));
        found[c].push(slot);
    }
    for (cm, mut slots) in mapper.code.iter_mut().zip(found) {
        slots.sort_unstable_by_key(|s| s.old_func);
        cm.inserted = slots;
    }
    proven
}

/// The non-allocated `__patchable_function_entries` an insertion adds (see
/// [`crate::emit::tables::entries_record`]): there exactly when slots were inserted, not
/// allocated and at no address (so it changes nothing loaded), of whole pointer-aligned
/// entries, and listing the slots of `__mcount_loc` (its nonzero entries that are not
/// islands, each proven a slot by the sites' and insertions' checks) in the same order:
/// sorted, one per slot.
pub(super) fn check_record(
    ctx: &Ctx<'_, '_, '_>,
    mapper: &Mapper,
    islands: &[u64],
    report: &mut VerifyReport,
) {
    let inserted = mapper.code.iter().any(|c| !c.inserted.is_empty());
    let Some(r) = ctx.record else {
        if inserted {
            report.mismatch(
                TABLE_SECTION,
                None,
                None,
                "a non-allocated __patchable_function_entries listing the slots (inserted \
                 slots were found)",
                "none",
            );
        }
        return;
    };
    let s = &ctx.new.sections[r];
    let ptr = ctx.ptr as u64;
    if !inserted {
        report.mismatch(
            TABLE_SECTION,
            None,
            None,
            "no added __patchable_function_entries (no slots were inserted)",
            format!("section {} of {} bytes", s.index, s.size),
        );
        return;
    }
    let data = ctx.new.section_data(s).unwrap_or(&[]);
    if s.is_alloc() || s.addr != 0 || s.align != ptr || !(data.len() as u64).is_multiple_of(ptr) {
        report.mismatch(
            TABLE_SECTION,
            None,
            Some(s.addr),
            format!("not allocated, at no address, {ptr}-byte aligned, whole {ptr}-byte entries"),
            format!(
                "flags {:#x}, address {:#x}, alignment {}, {} bytes",
                s.flags,
                s.addr,
                s.align,
                data.len()
            ),
        );
        return;
    }
    let values: Vec<u64> = data
        .chunks_exact(ctx.ptr)
        .filter_map(|c| read_uint(c, 0, ctx.ptr))
        .collect();
    let mcount = ctx
        .table
        .map(|t| ctx.new.section_data(&ctx.new.sections[t]).unwrap_or(&[]))
        .unwrap_or(&[]);
    let slots: Vec<u64> = mcount
        .chunks_exact(ctx.ptr)
        .filter_map(|c| read_uint(c, 0, ctx.ptr))
        .filter(|&v| v != 0 && islands.binary_search(&v).is_err())
        .collect();
    if values.len() != slots.len() {
        report.mismatch(
            TABLE_SECTION,
            None,
            None,
            format!("{} entries, one per slot of {MCOUNT_SECTION}", slots.len()),
            format!("{} entries", values.len()),
        );
    }
    for (k, (&v, &e)) in values.iter().zip(&slots).enumerate() {
        if v != e || (k > 0 && values[k - 1] >= v) {
            report.mismatch(
                TABLE_SECTION,
                None,
                None,
                format!("entry {k} = slot {e:#x} (sorted, as {MCOUNT_SECTION} lists them)"),
                format!("{v:#x}"),
            );
        }
    }
}

/// The code map and slot of the `__mcount_loc` entry `v`: new nops of the walk ending right
/// at a rigid piece whose old start is a function entry; the slot's bytes are `nop`s.
fn find_slot(
    ctx: &Ctx<'_, '_, '_>,
    mapper: &Mapper,
    funcs: &[(u64, u64)],
    v: u64,
) -> Option<(usize, InsertedSlot)> {
    let (c, cm, i) = mapper.code.iter().enumerate().find_map(|(c, cm)| {
        // Pieces are in address order, new addresses too: the last one starting at or
        // before `v` (a zero-length piece may share its start, so look one further back).
        let k = cm.pieces.partition_point(|p| p.new <= v);
        let i = (k.saturating_sub(2)..k).rev().find(|&i| {
            let p = cm.pieces[i];
            p.run && v >= p.new && v < p.new + p.new_len
        })?;
        Some((c, cm, i))
    })?;
    {
        let (run, next) = (cm.pieces[i], *cm.pieces.get(i + 1)?);
        if next.run || next.new != run.new + run.new_len || next.old != run.old + run.old_len {
            return None;
        }
        let old_func = next.old;
        let j = funcs.partition_point(|f| f.0 < old_func);
        let &(_, _) = funcs.get(j).filter(|f| f.0 == old_func)?;
        let old_end = funcs[j..]
            .iter()
            .take_while(|f| f.0 == old_func)
            .map(|f| f.1)
            .max()?;
        let new_sec = ctx.new_section(cm.old_index)?;
        let bytes = ctx.new_data(cm.old_index);
        let off = usize::try_from(v.checked_sub(new_sec.addr)?).ok()?;
        let end = usize::try_from(next.new.checked_sub(new_sec.addr)?).ok()?;
        let nops = bytes
            .get(off..end)?
            .chunks(4)
            .all(|w| w.len() == 4 && u32::from_le_bytes([w[0], w[1], w[2], w[3]]) == NOP);
        if !nops {
            return None;
        }
        Some((
            c,
            InsertedSlot {
                old_func,
                old_end,
                new_slot: v,
                new_first: next.new,
            },
        ))
    }
}
