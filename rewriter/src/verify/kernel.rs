//! Kernel tables that hold code addresses without relocations, decoded from their bytes:
//! `__ex_table` (`scripts/sorttable` erases its relocations) and `kallsyms_offsets`
//! (written by `scripts/kallsyms` relative to `kallsyms_relative_base`).

use super::bytes::Covered;
use super::ctx::Ctx;
use super::data::accepts_mod;
use super::map::Mapper;
use super::report::VerifyReport;
use super::sites::bytes_at;
use crate::elf::{read_uint, FileKind};

/// `struct exception_table_entry` on RISC-V: `int insn, fixup; short type, data;`.
const EX_ENTRY: usize = 12;

/// Checks the kernel tables of a vmlinux (nothing for other files).
pub(super) fn check(
    ctx: &Ctx<'_, '_, '_>,
    mapper: &Mapper,
    covered: &mut Covered,
    report: &mut VerifyReport,
) {
    if ctx.old.kind != FileKind::Vmlinux {
        return;
    }
    ex_table(ctx, mapper, covered, report);
    kallsyms(ctx, mapper, covered, report);
}

fn ex_table(
    ctx: &Ctx<'_, '_, '_>,
    mapper: &Mapper,
    covered: &mut Covered,
    report: &mut VerifyReport,
) {
    let Some((s, n)) = ctx.find_pair(|s| s.name == "__ex_table") else {
        return;
    };
    let (old, new) = (ctx.old_data(s.index), ctx.new_data(s.index));
    if old.len() != new.len() || old.len() % EX_ENTRY != 0 {
        return;
    }
    for e in (0..old.len()).step_by(EX_ENTRY) {
        for off in [e, e + 4] {
            let rel = |d: &[u8]| read_uint(d, off, 4).map_or(0, |v| v as u32 as i32 as i64);
            let (at, nat) = (s.addr + off as u64, n.addr + off as u64);
            let target = at.wrapping_add(rel(old) as u64);
            let found = nat.wrapping_add(rel(new) as u64);
            report.counts.kernel_table_entries += 1;
            covered.add(s.index, off as u64, 4);
            let m = mapper.map(target);
            if !m.accepts(found) {
                report.mismatch(
                    "__ex_table",
                    Some(at),
                    Some(nat),
                    format!("a reference to {m} (the image of {target:#x})"),
                    format!("{found:#x}"),
                );
            }
        }
    }
}

fn kallsyms(
    ctx: &Ctx<'_, '_, '_>,
    mapper: &Mapper,
    covered: &mut Covered,
    report: &mut VerifyReport,
) {
    let find = |name: &str| {
        ctx.old
            .symbol_by_name(name)
            .and_then(|s| Some((s.value, s.section()?)))
    };
    let (Some((offsets, sec)), Some((count_at, _)), Some((base_at, base_sec))) = (
        find("kallsyms_offsets"),
        find("kallsyms_num_syms"),
        find("kallsyms_relative_base"),
    ) else {
        return;
    };
    let read_old = |a: u64, w: usize| bytes_at(ctx.old, a, w).and_then(|b| read_uint(b, 0, w));
    let read_new = |a: u64, w: usize| bytes_at(ctx.new, a, w).and_then(|b| read_uint(b, 0, w));
    let (Some(count), Some(base)) = (read_old(count_at, 4), read_old(base_at, ctx.ptr)) else {
        return;
    };
    let (Some(new_offsets), Some(new_base_at)) = (
        mapper.map_in(sec, offsets).exact(),
        mapper.map_in(base_sec, base_at).exact(),
    ) else {
        return;
    };
    let Some(new_base) = read_new(new_base_at, ctx.ptr) else {
        return;
    };
    covered.add(sec, offsets - ctx.old.sections[sec].addr, 4 * count);
    for k in 0..count {
        let (at, nat) = (offsets + 4 * k, new_offsets + 4 * k);
        let (Some(off), Some(noff)) = (read_old(at, 4), read_new(nat, 4)) else {
            return;
        };
        report.counts.kernel_table_entries += 1;
        // !CONFIG_KALLSYMS_ABSOLUTE_PERCPU (RISC-V): address = base + (u32)offset.
        let addr = base.wrapping_add(off);
        let m = mapper.map(addr);
        let Some((lo, hi)) = m.interval() else {
            continue;
        };
        let (lo, hi) = (
            i128::from(lo) - i128::from(new_base),
            i128::from(hi) - i128::from(new_base),
        );
        if !accepts_mod(lo, hi, noff, 32) {
            report.mismatch(
                "kallsyms",
                Some(at),
                Some(nat),
                format!("offset of {m} (the image of {addr:#x}) from {new_base:#x}"),
                format!("{noff:#x}"),
            );
        }
    }
}
