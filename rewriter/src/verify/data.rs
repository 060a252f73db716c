//! References held in data: words and differences under the original's relocations,
//! dynamic relocations, GOT words, `.dynamic` and `.eh_frame_hdr`. Each checked field is
//! marked covered; every other byte of the section must be unchanged ([`super::bytes`]).

use object::elf;

use super::bytes::Covered;
use super::ctx::Ctx;
use super::map::{Mapped, Mapper};
use super::report::VerifyReport;
use super::sites::bytes_at;
use super::versions::STRING_TAGS;
use crate::elf::dwarf::read_uleb;
use crate::elf::{read_uint, Reloc, Symbol};
use crate::error::Result;
use rayon::prelude::*;

/// How a data relocation's field relates to its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// The field holds the target address (`R_RISCV_32`/`64`).
    Word(usize),
    /// The field accumulates `+target` (`ADD*`, and `SET*` which in a linked file holds the
    /// target or, paired with a `SUB`, a difference).
    Add(usize),
    /// The field accumulates `-target`.
    Sub(usize),
    /// The field holds `target - place` (`32_PCREL`).
    PcRel,
    /// Six low bits of a byte, adding (`SET6`).
    Add6,
    /// Six low bits of a byte, subtracting (`SUB6`).
    Sub6,
    /// ULEB128, adding (`SET_ULEB128`) or subtracting (`SUB_ULEB128`).
    Uleb(bool),
}

/// Byte ranges `(start, end)` of the data fields that relocations cover inside a code
/// section (data in text, e.g. a kernel's PE header), sorted.
pub(super) fn code_data_fields(ctx: &Ctx<'_, '_, '_>, sec: usize) -> Vec<(u64, u64)> {
    let s = &ctx.old.sections[sec];
    let data = ctx.old_data(sec);
    let mut out: Vec<(u64, u64)> = ctx
        .old_relocs
        .iter()
        .filter(|rs| rs.target == sec && !ctx.is_dynamic(rs))
        .flat_map(|rs| rs.relocs.iter())
        .filter_map(|r| {
            let w = match field(r.r_type)? {
                Field::Word(w) | Field::Add(w) | Field::Sub(w) => w,
                Field::PcRel => 4,
                Field::Add6 | Field::Sub6 => 1,
                Field::Uleb(_) => {
                    let off = usize::try_from(r.offset.checked_sub(s.addr)?).ok()?;
                    read_uleb(data.get(off..)?)?.1
                }
            };
            Some((r.offset, r.offset + w as u64))
        })
        .collect();
    out.sort_unstable();
    out
}

fn field(t: u32) -> Option<Field> {
    use elf::*;
    Some(match t {
        _ if t == R_RISCV_64.0 => Field::Word(8),
        _ if t == R_RISCV_32.0 => Field::Word(4),
        _ if t == R_RISCV_ADD8.0 || t == R_RISCV_SET8.0 => Field::Add(1),
        _ if t == R_RISCV_ADD16.0 || t == R_RISCV_SET16.0 => Field::Add(2),
        _ if t == R_RISCV_ADD32.0 || t == R_RISCV_SET32.0 => Field::Add(4),
        _ if t == R_RISCV_ADD64.0 => Field::Add(8),
        _ if t == R_RISCV_SUB8.0 => Field::Sub(1),
        _ if t == R_RISCV_SUB16.0 => Field::Sub(2),
        _ if t == R_RISCV_SUB32.0 => Field::Sub(4),
        _ if t == R_RISCV_SUB64.0 => Field::Sub(8),
        _ if t == R_RISCV_32_PCREL.0 => Field::PcRel,
        _ if t == R_RISCV_SET6.0 => Field::Add6,
        _ if t == R_RISCV_SUB6.0 => Field::Sub6,
        _ if t == R_RISCV_SET_ULEB128.0 => Field::Uleb(true),
        _ if t == R_RISCV_SUB_ULEB128.0 => Field::Uleb(false),
        _ => return None,
    })
}

/// True if `found` (a `bits`-wide field) is congruent to some value in `lo..=hi`.
pub(super) fn accepts_mod(lo: i128, hi: i128, found: u64, bits: u32) -> bool {
    if hi < lo {
        return false;
    }
    let m: i128 = 1i128 << bits;
    if hi - lo >= m - 1 {
        return true;
    }
    (i128::from(found) - lo).rem_euclid(m) <= hi - lo
}

/// `mapped - target` as an interval.
fn delta(mapped: Mapped, target: u64) -> Option<(i128, i128)> {
    let (lo, hi) = mapped.interval()?;
    Some((
        i128::from(lo) - i128::from(target),
        i128::from(hi) - i128::from(target),
    ))
}

/// `S + A` of a relocation against `syms`, and where it must map: addresses in allocated
/// sections move; offsets into non-allocated sections (DWARF) and TLS offsets do not.
pub(super) fn reloc_target(
    ctx: &Ctx<'_, '_, '_>,
    mapper: &Mapper,
    syms: &[Symbol<'_>],
    r: &Reloc,
) -> (u64, Mapped) {
    let sym = (r.sym != 0).then(|| syms.get(r.sym as usize)).flatten();
    let t = sym.map_or(0, |s| s.value).wrapping_add(r.addend as u64);
    let fixed = sym.is_some_and(|s| {
        s.kind == elf::STT_TLS.0
            || s.section()
                .and_then(|i| ctx.old.sections.get(i))
                .is_some_and(|x| !x.is_alloc())
    });
    (
        t,
        if fixed {
            Mapped::Exact(t)
        } else {
            mapper.map(t)
        },
    )
}

/// Runs every data check.
pub(super) fn check(
    ctx: &Ctx<'_, '_, '_>,
    mapper: &Mapper,
    tls_got: &[u64],
    covered: &mut Covered,
    report: &mut VerifyReport,
) -> Result<()> {
    let mut dyn_covered: Vec<u64> = ctx
        .old_relocs
        .iter()
        .filter(|rs| ctx.is_dynamic(rs))
        .flat_map(|rs| rs.relocs.iter().map(|r| r.offset))
        .collect();
    dyn_covered.sort_unstable();
    // Static relocations in parallel pieces (each a whole number of fields), their reports
    // and covered fields merged in order: the same report as one pass.
    let pieces: Vec<(usize, &[Reloc])> = ctx
        .old_relocs
        .iter()
        .filter(|rs| !ctx.is_dynamic(rs))
        .flat_map(|rs| field_pieces(&rs.relocs).map(move |p| (rs.target, p)))
        .collect();
    in_parts(pieces.par_iter(), covered, report, |&(ti, relocs), c, r| {
        static_relocs(ctx, mapper, ti, relocs, c, r);
    });
    dynamic_relocs(ctx, mapper, covered, report)?;
    got(ctx, mapper, tls_got, &dyn_covered, covered, report);
    dynamic_section(ctx, mapper, report);
    eh_frame_hdr(ctx, mapper, covered, report);
    Ok(())
}

/// Runs `check` on every item of `items` in parallel, each with a report and covered fields
/// of its own, then merges them into `report` and `covered` in item order: the result of
/// one pass in order.
fn in_parts<I: IndexedParallelIterator>(
    items: I,
    covered: &mut Covered,
    report: &mut VerifyReport,
    check: impl Fn(I::Item, &mut Covered, &mut VerifyReport) + Sync + Send,
) {
    let parts: Vec<(Covered, VerifyReport)> = items
        .map(|item| {
            let mut part = (Covered::default(), VerifyReport::default());
            check(item, &mut part.0, &mut part.1);
            part
        })
        .collect();
    for (c, r) in parts {
        report.merge(r);
        covered.append(c);
    }
}

/// Relocations in one parallel piece of [`check`], at least.
const PIECE: usize = 4096;

/// `relocs` cut into pieces of about [`PIECE`] entries, each cut between two offsets (the
/// relocations of one field are consecutive and share its offset).
fn field_pieces(relocs: &[Reloc]) -> impl Iterator<Item = &[Reloc]> {
    let mut rest = relocs;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut cut = PIECE.min(rest.len());
        while cut < rest.len() && rest[cut].offset == rest[cut - 1].offset {
            cut += 1;
        }
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}

/// Data fields under static relocations (kept by `--emit-relocs`) of section `ti`: `relocs`,
/// whole fields of its relocation section.
fn static_relocs(
    ctx: &Ctx<'_, '_, '_>,
    mapper: &Mapper,
    ti: usize,
    relocs: &[Reloc],
    covered: &mut Covered,
    report: &mut VerifyReport,
) {
    let sec = &ctx.old.sections[ti];
    let Some(nsec) = ctx.new_section(ti) else {
        return;
    };
    if ctx.is_code(ti) || sec.is_nobits() || sec.size == 0 {
        return;
    }
    let (old, new) = (ctx.old_data(ti), ctx.new_data(ti));
    let mut i = 0;
    while i < relocs.len() {
        let r = relocs[i];
        let Some(f) = field(r.r_type) else {
            i += 1;
            continue;
        };
        // A field's relocations are consecutive and share the offset.
        let mut j = i + 1;
        while j < relocs.len()
            && relocs[j].offset == r.offset
            && !matches!(f, Field::Word(_))
            && field(relocs[j].r_type).is_some_and(|g| !matches!(g, Field::Word(_)))
        {
            j += 1;
        }
        let p = r.offset;
        let off = p.wrapping_sub(sec.addr);
        let new_p = if sec.is_alloc() {
            mapper.map_in(ti, p)
        } else {
            Mapped::Exact(nsec.addr + off)
        };
        let Some(np) = new_p.exact() else {
            report.counts.unchecked += 1;
            i = j;
            continue;
        };
        let noff = np.wrapping_sub(nsec.addr);
        let at = (p, np);
        match f {
            Field::Word(w) => {
                let target = reloc_target(ctx, mapper, &ctx.old.symbols, &r);
                word(ctx, (ti, off, noff), w, target, at, covered, report);
            }
            _ => {
                let group = &relocs[i..j];
                difference(
                    ctx,
                    mapper,
                    (old, new),
                    (ti, off, noff),
                    group,
                    at,
                    covered,
                    report,
                );
            }
        }
        i = j;
    }
}

/// A word holding an address (`R_RISCV_32`/`64`).
fn word(
    ctx: &Ctx<'_, '_, '_>,
    (ti, off, noff): (usize, u64, u64),
    w: usize,
    (t, m): (u64, Mapped),
    at: (u64, u64),
    covered: &mut Covered,
    report: &mut VerifyReport,
) {
    let (old, new) = (ctx.old_data(ti), ctx.new_data(ti));
    let (Some(ow), Some(nw)) = (
        read_uint(old, off as usize, w),
        read_uint(new, noff as usize, w),
    ) else {
        return;
    };
    let mask = if w == 8 {
        u64::MAX
    } else {
        (1u64 << (8 * w)) - 1
    };
    if ow != t & mask {
        // The linker left it for the loader (a dynamic relocation) or wrote something else:
        // the byte comparison (or the dynamic check) demands it unchanged.
        return;
    }
    report.counts.data_words += 1;
    covered.add(ti, off, w as u64);
    let ok = match m.interval() {
        Some((lo, hi)) => accepts_mod(i128::from(lo), i128::from(hi), nw, 8 * w as u32),
        None => {
            report.counts.unchecked += 1;
            true
        }
    };
    if !ok {
        report.mismatch(
            "data word",
            Some(at.0),
            Some(at.1),
            format!("{m} (the image of {t:#x}) in {}", ctx.old.sections[ti].name),
            format!("{nw:#x}"),
        );
    }
}

/// A field built from differences and PC-relative terms (`ADD`/`SUB`/`SET`, `32_PCREL`,
/// ULEB128): it must change by exactly how much its terms moved.
#[allow(clippy::too_many_arguments)]
fn difference(
    ctx: &Ctx<'_, '_, '_>,
    mapper: &Mapper,
    (old, new): (&[u8], &[u8]),
    (ti, off, noff): (usize, u64, u64),
    group: &[Reloc],
    at: (u64, u64),
    covered: &mut Covered,
    report: &mut VerifyReport,
) {
    // The field is this check's, whatever it finds (an unmapped term is counted unchecked).
    let first = field(group[0].r_type).unwrap_or(Field::Add(4));
    let width = match first {
        Field::Add(w) | Field::Sub(w) | Field::Word(w) => w,
        Field::PcRel => 4,
        Field::Add6 | Field::Sub6 => 1,
        Field::Uleb(_) => read_uleb(old.get(off as usize..).unwrap_or(&[])).map_or(1, |u| u.1),
    };
    covered.add(ti, off, width as u64);
    let Some((lo, hi)) = terms_moved(ctx, mapper, group, at) else {
        report.counts.unchecked += 1;
        return;
    };
    report.counts.differences += 1;
    let Some((ok, old_v, new_v)) = field_moved(first, width, (old, new), (off, noff), (lo, hi))
    else {
        return;
    };
    if !ok {
        report.mismatch(
            "difference",
            Some(at.0),
            Some(at.1),
            format!(
                "{old_v:#x} moved by {lo}..={hi} in {} ({})",
                ctx.old.sections[ti].name,
                group
                    .iter()
                    .map(|r| crate::elf::reloc_name(r.r_type))
                    .collect::<Vec<_>>()
                    .join(" + ")
            ),
            format!("{new_v:#x}"),
        );
    }
}

/// How much a field of the terms `group` must change: their moves summed (`None`: unknown).
fn terms_moved(
    ctx: &Ctx<'_, '_, '_>,
    mapper: &Mapper,
    group: &[Reloc],
    at: (u64, u64),
) -> Option<(i128, i128)> {
    let (mut lo, mut hi) = (0i128, 0i128);
    for r in group {
        let (t, m) = reloc_target(ctx, mapper, &ctx.old.symbols, r);
        let Some(f) = field(r.r_type) else { continue };
        let (dlo, dhi) = delta(m, t)?;
        match f {
            Field::Add(_) | Field::Add6 | Field::Uleb(true) => {
                lo += dlo;
                hi += dhi;
            }
            Field::Sub(_) | Field::Sub6 | Field::Uleb(false) => {
                lo -= dhi;
                hi -= dlo;
            }
            Field::PcRel => {
                let dp = i128::from(at.1) - i128::from(at.0);
                lo += dlo - dp;
                hi += dhi - dp;
            }
            Field::Word(_) => {}
        }
    }
    Some((lo, hi))
}

/// Whether the field changed by an amount in `lo..=hi` (mod its width), and its two values.
fn field_moved(
    first: Field,
    width: usize,
    (old, new): (&[u8], &[u8]),
    (off, noff): (u64, u64),
    (lo, hi): (i128, i128),
) -> Option<(bool, u64, u64)> {
    let (off, noff) = (off as usize, noff as usize);
    Some(match first {
        Field::Add(_) | Field::Sub(_) | Field::PcRel => {
            let (a, b) = (read_uint(old, off, width)?, read_uint(new, noff, width)?);
            let base = i128::from(a);
            (accepts_mod(base + lo, base + hi, b, 8 * width as u32), a, b)
        }
        Field::Add6 | Field::Sub6 => {
            let (a, b) = (old.get(off)?, new.get(noff)?);
            let base = i128::from(a & 0x3f);
            let ok =
                a & 0xc0 == b & 0xc0 && accepts_mod(base + lo, base + hi, u64::from(b & 0x3f), 6);
            (ok, u64::from(*a), u64::from(*b))
        }
        Field::Uleb(_) => {
            let (a, la) = read_uleb(old.get(off..).unwrap_or(&[]))?;
            let (b, lb) = read_uleb(new.get(noff..).unwrap_or(&[]))?;
            let base = i128::from(a);
            (la == lb && accepts_mod(base + lo, base + hi, b, 64), a, b)
        }
        Field::Word(_) => return None,
    })
}

/// True for dynamic relocation types whose word holds a TLS module id or offset.
fn is_tls_dynamic(t: u32) -> bool {
    use elf::*;
    [
        R_RISCV_TLS_DTPMOD32.0,
        R_RISCV_TLS_DTPMOD64.0,
        R_RISCV_TLS_DTPREL32.0,
        R_RISCV_TLS_DTPREL64.0,
        R_RISCV_TLS_TPREL32.0,
        R_RISCV_TLS_TPREL64.0,
    ]
    .contains(&t)
}

/// `.rela.dyn` and `.rela.plt`: entry by entry, places and address addends mapped, the
/// words they apply to mapped when they hold addresses.
fn dynamic_relocs(
    ctx: &Ctx<'_, '_, '_>,
    mapper: &Mapper,
    covered: &mut Covered,
    report: &mut VerifyReport,
) -> Result<()> {
    for rs in ctx.old_relocs.iter().filter(|rs| ctx.is_dynamic(rs)) {
        let Some(nj) = ctx.pairs.get(rs.index).copied().flatten() else {
            continue;
        };
        let Some(nrs) = ctx.new_relocs.iter().find(|r| r.index == nj) else {
            continue;
        };
        let name = ctx.old.sections[rs.index].name;
        if nrs.relocs.len() != rs.relocs.len() {
            report.mismatch(
                "dynamic relocation",
                Some(ctx.old.sections[rs.index].addr),
                Some(ctx.new.sections[nj].addr),
                format!("{} entries in {name}", rs.relocs.len()),
                format!("{}", nrs.relocs.len()),
            );
            continue;
        }
        let chunks = rs
            .relocs
            .par_chunks(PIECE)
            .zip(nrs.relocs.par_chunks(PIECE));
        in_parts(chunks, covered, report, |(olds, news), c, r| {
            for pair in olds.iter().zip(news) {
                dynamic_reloc(ctx, mapper, name, pair, c, r);
            }
        });
    }
    Ok(())
}

/// One dynamic relocation `r` and its counterpart `n` in the new file, and the word it
/// applies to.
fn dynamic_reloc(
    ctx: &Ctx<'_, '_, '_>,
    mapper: &Mapper,
    name: &str,
    (r, n): (&Reloc, &Reloc),
    covered: &mut Covered,
    report: &mut VerifyReport,
) {
    let ptr = ctx.ptr;
    report.counts.dynamic_relocations += 1;
    let place = mapper.map(r.offset);
    let sym = if r.sym == 0 {
        Some(0)
    } else {
        ctx.dyn_perm.get(r.sym as usize).copied().flatten()
    };
    if n.r_type != r.r_type || Some(n.sym as usize) != sym || !place.accepts(n.offset) {
        report.mismatch(
            "dynamic relocation",
            Some(r.offset),
            Some(n.offset),
            format!("type {} symbol {} at {place} in {name}", r.r_type, r.sym),
            format!("type {} symbol {} at {:#x}", n.r_type, n.sym, n.offset),
        );
        return;
    }
    let relative = r.r_type == elf::R_RISCV_RELATIVE.0 || r.r_type == elf::R_RISCV_IRELATIVE.0;
    let addend = if relative {
        mapper.map(r.addend as u64)
    } else {
        Mapped::Exact(r.addend as u64)
    };
    if !addend.accepts(n.addend as u64) {
        report.mismatch(
            "dynamic relocation",
            Some(r.offset),
            Some(n.offset),
            format!("addend {addend} (from {:#x}) in {name}", r.addend),
            format!("{:#x}", n.addend),
        );
    }
    // The word it applies to.
    let Some(sec) = ctx
        .old
        .alloc_section_at(r.offset)
        .filter(|s| !s.is_nobits())
    else {
        return;
    };
    let (Some(ow), Some(nw)) = (
        bytes_at(ctx.old, r.offset, ptr).and_then(|b| read_uint(b, 0, ptr)),
        bytes_at(ctx.new, n.offset, ptr).and_then(|b| read_uint(b, 0, ptr)),
    ) else {
        return;
    };
    if ctx.is_code(sec.index) {
        return;
    }
    covered.add(sec.index, r.offset - sec.addr, ptr as u64);
    let want = word_image(mapper, is_tls_dynamic(r.r_type), ow);
    if !want.accepts(nw) {
        report.mismatch(
            "dynamic word",
            Some(r.offset),
            Some(n.offset),
            format!("{want} (from {ow:#x}) under relocation type {}", r.r_type),
            format!("{nw:#x}"),
        );
    }
}

/// What a word that held `ow` must hold now: the same TLS value (`tls`), else its image.
fn word_image(mapper: &Mapper, tls: bool, ow: u64) -> Mapped {
    if tls {
        Mapped::Exact(ow)
    } else {
        mapper.map(ow)
    }
}

/// GOT words the linker filled without a dynamic relocation: addresses move with their
/// targets; TLS offsets stay.
fn got(
    ctx: &Ctx<'_, '_, '_>,
    mapper: &Mapper,
    tls_got: &[u64],
    dyn_covered: &[u64],
    covered: &mut Covered,
    report: &mut VerifyReport,
) {
    let ptr = ctx.ptr;
    for (i, s) in ctx.old.sections.iter().enumerate() {
        if !(s.name == ".got" || s.name == ".got.plt") || !s.is_alloc() || s.is_nobits() {
            continue;
        }
        let Some(n) = ctx.new_section(i) else {
            continue;
        };
        let (old, new) = (ctx.old_data(i), ctx.new_data(i));
        if old.len() != new.len() {
            continue;
        }
        covered.whole(i);
        for off in (0..old.len()).step_by(ptr) {
            let at = s.addr + off as u64;
            if dyn_covered.binary_search(&at).is_ok() {
                continue;
            }
            let (Some(ow), Some(nw)) = (read_uint(old, off, ptr), read_uint(new, off, ptr)) else {
                break;
            };
            report.counts.got_words += 1;
            let want = word_image(mapper, tls_got.binary_search(&at).is_ok(), ow);
            if !want.accepts(nw) {
                report.mismatch(
                    "GOT word",
                    Some(at),
                    Some(n.addr + off as u64),
                    format!("{want} (from {ow:#x})"),
                    format!("{nw:#x}"),
                );
            }
        }
    }
}

/// `DT_STRSZ`: the size of `.dynstr`.
const DT_STRSZ: u64 = 10;

/// `d_tag` values whose `d_val` is an address.
const ADDRESS_TAGS: &[u64] = &[
    3,           // DT_PLTGOT
    4,           // DT_HASH
    5,           // DT_STRTAB
    6,           // DT_SYMTAB
    7,           // DT_RELA
    12,          // DT_INIT
    13,          // DT_FINI
    17,          // DT_REL
    23,          // DT_JMPREL
    25,          // DT_INIT_ARRAY
    26,          // DT_FINI_ARRAY
    32,          // DT_PREINIT_ARRAY
    36,          // DT_RELR
    0x6fff_fef5, // DT_GNU_HASH
    0x6fff_fff0, // DT_VERSYM
    0x6fff_fffc, // DT_VERDEF
    0x6fff_fffe, // DT_VERNEED
];

fn dynamic_entries(data: &[u8], ptr: usize) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for off in (0..data.len()).step_by(2 * ptr) {
        let (Some(tag), Some(val)) = (read_uint(data, off, ptr), read_uint(data, off + ptr, ptr))
        else {
            break;
        };
        if tag == 0 {
            break;
        }
        out.push((tag, val));
    }
    out
}

/// `.dynamic`: same entries; address values mapped.
fn dynamic_section(ctx: &Ctx<'_, '_, '_>, mapper: &Mapper, report: &mut VerifyReport) {
    for (i, s) in ctx.old.sections.iter().enumerate() {
        if s.sh_type != elf::SHT_DYNAMIC.0 {
            continue;
        }
        let Some(n) = ctx.new_section(i) else {
            continue;
        };
        let old = dynamic_entries(ctx.old_data(i), ctx.ptr);
        let new = dynamic_entries(ctx.new_data(i), ctx.ptr);
        if old.len() != new.len() {
            report.mismatch(
                "dynamic entry",
                Some(s.addr),
                Some(n.addr),
                format!("{} entries before DT_NULL", old.len()),
                format!("{}", new.len()),
            );
            continue;
        }
        let strsz = ctx.new.sections.get(n.link as usize).map_or(0, |t| t.size);
        for (k, (&(ot, ov), &(nt, nv))) in old.iter().zip(&new).enumerate() {
            report.counts.dynamic_entries += 1;
            let want = if ADDRESS_TAGS.contains(&ot) && ov != 0 {
                mapper.map(ov)
            } else if ot == DT_STRSZ {
                Mapped::Exact(strsz)
            } else {
                Mapped::Exact(ov)
            };
            // The writer may lay `.dynstr` out again: strings are compared, not offsets.
            let string_ok = STRING_TAGS.contains(&ot)
                && nt == ot
                && super::versions::same_dynamic_string(ctx, s, n, ov, nv);
            if !string_ok && (nt != ot || !want.accepts(nv)) {
                let at = (2 * ctx.ptr * k) as u64;
                report.mismatch(
                    "dynamic entry",
                    Some(s.addr + at),
                    Some(n.addr + at),
                    format!("tag {ot:#x} value {want}"),
                    format!("tag {nt:#x} value {nv:#x}"),
                );
            }
        }
    }
}

/// `.eh_frame_hdr`: the pointer to `.eh_frame` and the sorted search table, all relative to
/// the header, must reach the images of what they reached.
fn eh_frame_hdr(
    ctx: &Ctx<'_, '_, '_>,
    mapper: &Mapper,
    covered: &mut Covered,
    report: &mut VerifyReport,
) {
    let Some((s, n)) = ctx.find_pair(|s| s.name == ".eh_frame_hdr" && s.is_alloc()) else {
        return;
    };
    let (old, new) = (ctx.old_data(s.index), ctx.new_data(s.index));
    // Version 1, pcrel|sdata4 pointer, udata4 count, datarel|sdata4 table: what ld writes.
    if old.len() < 12 || old[..4] != [1, 0x1b, 0x03, 0x3b] || new.len() != old.len() {
        return;
    }
    covered.whole(s.index);
    let rd = |d: &[u8], o: usize| read_uint(d, o, 4).map_or(0, |v| v as u32 as i32 as i64);
    let (h_old, h_new) = (s.addr, n.addr);
    // A mismatch in the field at offset `o` of the header.
    let bad = |report: &mut VerifyReport, o: usize, what: String, found: String| {
        let at = o as u64;
        report.mismatch(
            ".eh_frame_hdr",
            Some(h_old + at),
            Some(h_new + at),
            what,
            found,
        )
    };
    let one = |report: &mut VerifyReport, o: usize, base_old: u64, base_new: u64| {
        report.counts.eh_frame_hdr += 1;
        let t = base_old.wrapping_add(rd(old, o) as u64);
        let found = base_new.wrapping_add(rd(new, o) as u64);
        let m = mapper.map(t);
        if !m.accepts(found) {
            bad(
                report,
                o,
                format!("a reference to {m} (the image of {t:#x})"),
                format!("{found:#x}"),
            );
        }
        found
    };
    one(report, 4, h_old + 4, h_new + 4);
    if old[8..12] != new[8..12] {
        let (want, found) = (rd(old, 8), rd(new, 8));
        bad(report, 8, format!("{want} entries"), format!("{found}"));
        return;
    }
    let count = rd(old, 8) as u32 as usize;
    let mut last = 0u64;
    for k in 0..count.min((old.len() - 12) / 8) {
        let o = 12 + 8 * k;
        let loc = one(report, o, h_old, h_new);
        one(report, o + 4, h_old, h_new);
        if k > 0 && loc < last {
            let want = format!("a sorted table (at least {last:#x})");
            bad(report, o, want, format!("{loc:#x}"));
        }
        last = loc;
    }
}

#[cfg(test)]
mod piece_tests {
    use super::{field_pieces, PIECE};
    use crate::elf::Reloc;

    /// Pieces cover the relocations in order, and never cut between two relocations of one
    /// field (same offset), even when a field straddles a piece's nominal end.
    #[test]
    fn pieces_cut_between_fields() {
        let offsets: Vec<u64> = (0..3 * PIECE as u64 + 7).map(|k| k / 3).collect();
        let relocs: Vec<Reloc> = offsets
            .iter()
            .map(|&offset| Reloc {
                offset,
                r_type: 35,
                sym: 0,
                addend: 0,
            })
            .collect();
        let pieces: Vec<&[Reloc]> = field_pieces(&relocs).collect();
        assert!(pieces.len() > 1);
        let joined: Vec<u64> = pieces
            .iter()
            .flat_map(|p| p.iter().map(|r| r.offset))
            .collect();
        assert_eq!(joined, offsets);
        for w in pieces.windows(2) {
            assert_ne!(
                w[0].last().map(|r| r.offset),
                w[1].first().map(|r| r.offset)
            );
        }
        assert_eq!(field_pieces(&[]).count(), 0);
    }
}
