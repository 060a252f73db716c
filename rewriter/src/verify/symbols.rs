//! Symbols (values, sizes, sections), `e_entry`, program headers, the output's own
//! relocations, and alignment (of `R_RISCV_ALIGN` points, aligned functions, and nop runs
//! that changed length).

use std::collections::BTreeMap;

use object::elf;

use super::ctx::is_tbss;
use super::ctx::Ctx;
use super::map::{Mapped, Mapper};
use super::report::VerifyReport;
use crate::elf::{RelocSection, Section, Segment, Symbol};
use crate::error::Result;

/// Runs the symbol, header and relocation checks.
pub(super) fn check(
    ctx: &Ctx<'_, '_, '_>,
    mapper: &Mapper,
    report: &mut VerifyReport,
) -> Result<()> {
    let fa = ctx.old.function_alignment();
    let identity: Vec<Option<usize>> = (0..ctx.old.symbols.len()).map(Some).collect();
    let (old, new) = (&ctx.old.symbols, &ctx.new.symbols);
    symbol_table(ctx, mapper, (old, new, &identity), ".symtab", &fa, report);
    let (od, nd) = (ctx.old.dynamic_symbols()?, ctx.new.dynamic_symbols()?);
    let no_alignment = BTreeMap::new();
    symbol_table(
        ctx,
        mapper,
        (&od, &nd, &ctx.dyn_perm),
        ".dynsym",
        &no_alignment,
        report,
    );
    let entry = mapper.map(ctx.old.entry);
    if !entry.accepts(ctx.new.entry) {
        report.mismatch(
            "e_entry",
            Some(ctx.old.entry),
            Some(ctx.new.entry),
            format!("{entry}"),
            format!("{:#x}", ctx.new.entry),
        );
    }
    section_headers(ctx, report);
    segments(ctx, mapper, report);
    // The output's relocations and the alignment points only read the files and the map:
    // check them side by side, and merge in the order they used to run.
    let (relocs, aligned) = rayon::join(
        || {
            let mut r = VerifyReport::default();
            output_relocations(ctx, mapper, &mut r);
            r
        },
        || {
            let mut r = VerifyReport::default();
            alignment(ctx, mapper, &fa, &mut r);
            r
        },
    );
    report.merge(relocs);
    report.merge(aligned);
    Ok(())
}

/// Old symbols, new symbols, and the new index of each old one.
type Tables<'t, 'o, 'n> = (&'t [Symbol<'o>], &'t [Symbol<'n>], &'t [Option<usize>]);

/// Checks one symbol table of the rewritten file against the original's, symbol by symbol.
fn symbol_table(
    ctx: &Ctx<'_, '_, '_>,
    mapper: &Mapper,
    (old, new, perm): Tables<'_, '_, '_>,
    table: &str,
    fa: &BTreeMap<usize, u64>,
    report: &mut VerifyReport,
) {
    if old.len() != new.len() {
        report.mismatch(
            "symbol",
            None,
            None,
            format!("{} symbols in {table}", old.len()),
            format!("{}", new.len()),
        );
        return;
    }
    let checker = SymbolCheck {
        ctx,
        mapper,
        new,
        perm,
        table,
        fa,
        min_insn: if ctx.old.rvc() { 2 } else { 4 },
    };
    // Symbols are checked in parallel chunks (a large program has 100,000s); the chunks'
    // reports merge in symbol order, so the report is the same as one pass would give.
    const CHUNK: usize = 8192;
    let parts: Vec<VerifyReport> = {
        use rayon::prelude::*;
        old.par_chunks(CHUNK)
            .enumerate()
            .map(|(c, chunk)| {
                let mut r = VerifyReport::default();
                for (i, o) in chunk.iter().enumerate() {
                    let k = c * CHUNK + i;
                    if k > 0 {
                        checker.one(k, o, &mut r);
                    }
                }
                r
            })
            .collect()
    };
    for part in parts {
        report.merge(part);
    }
}

/// What checking the symbols of one table needs besides the old symbols.
struct SymbolCheck<'c, 'o, 'n> {
    ctx: &'c Ctx<'c, 'o, 'n>,
    mapper: &'c Mapper,
    /// The table's symbols in the rewritten file.
    new: &'c [Symbol<'n>],
    /// The new index of each old symbol.
    perm: &'c [Option<usize>],
    /// The table's name.
    table: &'c str,
    /// Function alignment by section (`ElfFile::function_alignment`).
    fa: &'c BTreeMap<usize, u64>,
    /// The smallest instruction: alignment to it needs no check.
    min_insn: u64,
}

impl SymbolCheck<'_, '_, '_> {
    /// Symbol `k` (`o`) and its counterpart: identity, value, size, function alignment.
    fn one(&self, k: usize, o: &Symbol<'_>, report: &mut VerifyReport) {
        let (ctx, table) = (self.ctx, self.table);
        report.counts.symbols += 1;
        let Some(n) = self
            .perm
            .get(k)
            .copied()
            .flatten()
            .and_then(|j| self.new.get(j))
        else {
            report.mismatch(
                "symbol",
                Some(o.value),
                None,
                format!("{} {table}[{k}] in the rewritten file", o.name),
                "no such symbol".to_string(),
            );
            return;
        };
        let bad = |report: &mut VerifyReport, what: String, found: String| {
            report.mismatch("symbol", Some(o.value), Some(n.value), what, found)
        };
        let shndx = o.section().map_or(o.shndx, |s| {
            ctx.pairs.get(s).copied().flatten().unwrap_or(0) as u32
        });
        if o.name != n.name || o.kind != n.kind || o.bind != n.bind || n.shndx != shndx {
            bad(
                report,
                format!("{} {table}[{}] in section {shndx}", o.name, o.index),
                format!("{} in section {}", n.name, n.shndx),
            );
            return;
        }
        let section = o.section().and_then(|s| ctx.old.sections.get(s));
        let (value, size) = self.expected(o, n, section);
        if !value.accepts(n.value) || !size.accepts(n.size) {
            let what = format!("{} {table}[{}] = {value}, size {size}", o.name, o.index);
            let found = format!("{:#x}, size {:#x}", n.value, n.size);
            // An absolute symbol is only read by tools, never by the loader or the code
            // (which reaches the address through its own, checked, relocations).
            if section.is_none() && o.shndx == u32::from(elf::SHN_ABS.0) {
                report.warn("absolute symbol", Some(o.value), Some(n.value), what, found);
            } else {
                bad(report, what, found);
            }
            return;
        }
        if let Some(&a) = o.section().and_then(|s| self.fa.get(&s)) {
            if o.kind == elf::STT_FUNC.0 && a > self.min_insn {
                report.counts.alignment_points += 1;
                if n.value % a != 0 {
                    bad(
                        report,
                        format!(
                            "{} aligned to {a} bytes, as every function of its section was",
                            o.name
                        ),
                        format!("{:#x}", n.value),
                    );
                }
            }
        }
    }

    /// The value and size old symbol `o` (in `section`) must have, given its counterpart `n`.
    fn expected(
        &self,
        o: &Symbol<'_>,
        n: &Symbol<'_>,
        section: Option<&Section<'_>>,
    ) -> (Mapped, Mapped) {
        let (ctx, mapper) = (self.ctx, self.mapper);
        let moves = o.kind != elf::STT_TLS.0
            && o.kind != elf::STT_FILE.0
            && section.is_none_or(|s| s.is_alloc())
            && o.shndx != 0
            && o.shndx != u32::from(elf::SHN_COMMON.0);
        if !moves {
            (Mapped::Exact(o.value), Mapped::Exact(o.size))
        } else if o.kind == elf::STT_SECTION.0 {
            let addr = o
                .section()
                .and_then(|s| ctx.new_section(s))
                .map_or(o.value, |s| s.addr);
            (Mapped::Exact(addr), Mapped::Exact(o.size))
        } else if let Some(sec) = o.section() {
            let value = mapper.map_in(sec, o.value);
            // At a boundary the address may also be read as the next section's start.
            let value = match value.accepts(n.value) {
                true => value,
                false => match mapper.map(o.value) {
                    g if g.accepts(n.value) => g,
                    _ => value,
                },
            };
            (value, self.expected_size(sec, o, n))
        } else {
            // Absolute symbols that hold addresses (`__global_pointer$`, `_DYNAMIC`, ...).
            (mapper.map(o.value), Mapped::Exact(o.size))
        }
    }

    /// A moving symbol's size: a function's reaches the image of its end; others' is unchanged.
    fn expected_size(&self, sec: usize, o: &Symbol<'_>, n: &Symbol<'_>) -> Mapped {
        if o.size > 0 && self.ctx.is_code(sec) {
            match self
                .mapper
                .map_end_in(sec, o.value.wrapping_add(o.size))
                .interval()
            {
                Some((lo, hi)) => Mapped::Range(lo.wrapping_sub(n.value), hi.wrapping_sub(n.value)),
                None => Mapped::Unknown,
            }
        } else {
            Mapped::Exact(o.size)
        }
    }
}

/// The ELF header's type and every section header's flags, entry size and section links
/// are unchanged (links renumbered when `__mcount_loc` was inserted).
fn section_headers(ctx: &Ctx<'_, '_, '_>, report: &mut VerifyReport) {
    if ctx.old.e_type != ctx.new.e_type {
        report.mismatch(
            "file header",
            None,
            None,
            format!("e_type {}", ctx.old.e_type),
            format!("{}", ctx.new.e_type),
        );
    }
    let info_is_section = |s: &crate::elf::Section<'_>| {
        s.sh_type == elf::SHT_REL.0
            || s.sh_type == elf::SHT_RELA.0
            || s.flags & elf::SHF_INFO_LINK.0 != 0
    };
    let renumber = |i: u32| match ctx.pairs.get(i as usize).copied().flatten() {
        Some(j) if i != 0 => j as u32,
        _ => i,
    };
    for (i, s) in ctx.old.sections.iter().enumerate().skip(1) {
        let Some(n) = ctx.new_section(i) else {
            continue;
        };
        let info = if info_is_section(s) {
            renumber(s.info)
        } else {
            s.info
        };
        if n.flags != s.flags
            || n.entsize != s.entsize
            || n.link != renumber(s.link)
            || n.info != info
        {
            report.mismatch(
                "section header",
                Some(s.addr),
                Some(n.addr),
                format!(
                    "{}: flags {:#x} entsize {} link {} info {}",
                    s.name,
                    s.flags,
                    s.entsize,
                    renumber(s.link),
                    info
                ),
                format!(
                    "flags {:#x} entsize {} link {} info {}",
                    n.flags, n.entsize, n.link, n.info
                ),
            );
        }
    }
}

/// Program headers: the same segments, each still holding its sections, loadable.
fn segments(ctx: &Ctx<'_, '_, '_>, mapper: &Mapper, report: &mut VerifyReport) {
    let (old, new) = (&ctx.old.segments, &ctx.new.segments);
    if old.len() != new.len() {
        report.mismatch(
            "segment",
            None,
            None,
            format!("{} program headers", old.len()),
            format!("{}", new.len()),
        );
        return;
    }
    for (k, (og, ng)) in old.iter().zip(new).enumerate() {
        segment(ctx, mapper, k, (og, ng), report);
    }
    if let Some(t) = ctx.table.map(|t| &ctx.new.sections[t]) {
        let loaded = new.iter().any(|g| {
            g.p_type == elf::PT_LOAD.0
                && t.addr >= g.vaddr
                && t.addr + t.size <= g.vaddr + g.filesz
                && t.offset.wrapping_sub(g.offset) == t.addr.wrapping_sub(g.vaddr)
        });
        if !loaded {
            report.mismatch(
                "segment",
                None,
                Some(t.addr),
                "__mcount_loc inside a loadable segment",
                "not loaded",
            );
        }
    }
}

/// Program header `k` and its counterpart: same kind, at its image, still loading its sections.
fn segment(
    ctx: &Ctx<'_, '_, '_>,
    mapper: &Mapper,
    k: usize,
    (og, ng): (&Segment, &Segment),
    report: &mut VerifyReport,
) {
    report.counts.segments += 1;
    let bad = |report: &mut VerifyReport, what: String, found: String| {
        report.mismatch("segment", Some(og.vaddr), Some(ng.vaddr), what, found)
    };
    if og.p_type != ng.p_type || og.flags != ng.flags || og.align != ng.align {
        bad(
            report,
            format!(
                "program header {k}: type {:#x} flags {:#x} align {:#x}",
                og.p_type, og.flags, og.align
            ),
            format!(
                "type {:#x} flags {:#x} align {:#x}",
                ng.p_type, ng.flags, ng.align
            ),
        );
        return;
    }
    if og.p_type != elf::PT_LOAD.0 {
        if og.memsz > 0 && mapper.is_address(og.vaddr) && !mapper.map(og.vaddr).accepts(ng.vaddr) {
            bad(
                report,
                format!("program header {k} at {}", mapper.map(og.vaddr)),
                format!("{:#x}", ng.vaddr),
            );
        }
        return;
    }
    let align = ng.align.max(1);
    if ng.offset % align != ng.vaddr % align {
        bad(
            report,
            format!("program header {k}: offset congruent to the address modulo {align:#x}"),
            format!("offset {:#x}", ng.offset),
        );
    }
    for s in ctx.old.sections.iter().filter(|s| {
        s.is_alloc()
            && s.size > 0
            && !is_tbss(s)
            && s.addr >= og.vaddr
            && s.addr + s.size <= og.vaddr + og.memsz
    }) {
        let Some(n) = ctx.new_section(s.index) else {
            continue;
        };
        let in_mem = n.addr >= ng.vaddr && n.addr + n.size <= ng.vaddr + ng.memsz;
        let in_file = s.is_nobits()
            || (n.addr + n.size <= ng.vaddr + ng.filesz
                && n.offset.wrapping_sub(ng.offset) == n.addr.wrapping_sub(ng.vaddr));
        if !in_mem || !in_file {
            bad(
                report,
                format!("program header {k} to load {} from its file offset", s.name),
                format!(
                    "{} at {:#x} (offset {:#x}) outside {:#x}+{:#x} (offset {:#x}, {:#x} in the file)",
                    n.name, n.addr, n.offset, ng.vaddr, ng.memsz, ng.offset, ng.filesz
                ),
            );
        }
    }
}

/// Relocation types whose addend the rewrite leaves alone or computes differently.
fn addend_unchecked(t: u32) -> bool {
    use elf::*;
    t == R_RISCV_NONE.0
        || t == R_RISCV_RELAX.0
        || t == R_RISCV_GPREL_I.0
        || t == R_RISCV_GPREL_S.0
        || (R_RISCV_TLS_DTPMOD32.0..=R_RISCV_TLS_TPREL64.0).contains(&t)
        || (R_RISCV_TLS_GOT_HI20.0..=R_RISCV_TLS_GD_HI20.0).contains(&t)
        || (R_RISCV_TPREL_HI20.0..=R_RISCV_TPREL_ADD.0).contains(&t)
        || t == R_RISCV_TPREL_I.0
        || t == R_RISCV_TPREL_S.0
}

/// The output's static relocations still describe its contents: places mapped, and
/// `S' + A'` the image of `S + A`. Neither the loader nor the code reads them (a later
/// rewrite does, and refuses relocations that disagree with the bytes), so a difference is
/// a warning.
fn output_relocations(ctx: &Ctx<'_, '_, '_>, mapper: &Mapper, report: &mut VerifyReport) {
    for rs in ctx.old_relocs.iter().filter(|rs| !ctx.is_dynamic(rs)) {
        let Some(nrs) = new_reloc_section(ctx, rs) else {
            continue;
        };
        let ti = rs.target;
        let tsec = &ctx.old.sections[ti];
        if nrs.relocs.is_empty()
            && tsec.name == crate::scan::TABLE_SECTION
            && ctx.patch_table_emptied()
        {
            continue;
        }
        if nrs.relocs.len() != rs.relocs.len() {
            report.warn(
                "output relocation",
                None,
                None,
                format!("{} relocations for {}", rs.relocs.len(), tsec.name),
                format!("{}", nrs.relocs.len()),
            );
            continue;
        }
        for (r, n) in rs.relocs.iter().zip(&nrs.relocs) {
            report.counts.output_relocations += 1;
            let place = if tsec.is_alloc() {
                mapper.map_place_in(ti, r.offset)
            } else {
                Mapped::Exact(r.offset)
            };
            let bad = |report: &mut VerifyReport, what: String, found: String| {
                report.warn(
                    "output relocation",
                    Some(r.offset),
                    Some(n.offset),
                    what,
                    found,
                )
            };
            if n.r_type != r.r_type || n.sym != r.sym || !place.accepts(n.offset) {
                bad(
                    report,
                    format!("type {} symbol {} at {place}", r.r_type, r.sym),
                    format!("type {} symbol {} at {:#x}", n.r_type, n.sym, n.offset),
                );
                continue;
            }
            if addend_unchecked(r.r_type) {
                continue;
            }
            let sym = (r.sym != 0)
                .then(|| ctx.old.symbols.get(r.sym as usize))
                .flatten();
            if sym.is_some_and(|s| s.shndx == 0) {
                if n.addend != r.addend {
                    bad(
                        report,
                        format!("addend {:#x} (undefined symbol)", r.addend),
                        format!("{:#x}", n.addend),
                    );
                }
                continue;
            }
            let (t, mut want) = super::data::reloc_target(ctx, mapper, &ctx.old.symbols, r);
            // A `%pcrel_lo` names its auipc: a place (behind a slot inserted at an entry).
            if r.r_type == elf::R_RISCV_PCREL_LO12_I.0 || r.r_type == elf::R_RISCV_PCREL_LO12_S.0 {
                want = mapper.map_place_in(ti, t);
            }
            let s_new = (r.sym != 0)
                .then(|| ctx.new.symbols.get(r.sym as usize))
                .flatten()
                .map_or(0, |s| s.value);
            let found = s_new.wrapping_add(n.addend as u64);
            if !want.accepts(found) {
                bad(
                    report,
                    format!("S + A = {want} (the image of {t:#x})"),
                    format!("{found:#x}"),
                );
            }
        }
    }
}

fn new_reloc_section<'c>(ctx: &'c Ctx<'_, '_, '_>, rs: &RelocSection) -> Option<&'c RelocSection> {
    let j = ctx.pairs.get(rs.index).copied().flatten()?;
    ctx.new_relocs.iter().find(|r| r.index == j)
}

/// Alignment: every `R_RISCV_ALIGN` point stays aligned, and a nop run changes length only
/// where a pad or an alignment point explains it.
fn alignment(
    ctx: &Ctx<'_, '_, '_>,
    mapper: &Mapper,
    fa: &BTreeMap<usize, u64>,
    report: &mut VerifyReport,
) {
    let mut points = aligned_points(ctx, fa);
    for (sec, pts) in points.iter_mut() {
        pts.sort_unstable();
        for &(at, align, _) in pts.iter() {
            report.counts.alignment_points += 1;
            match mapper.map_in(*sec, at) {
                Mapped::Exact(v) if v % align != 0 => report.mismatch(
                    "alignment",
                    Some(at),
                    Some(v),
                    format!("an address aligned to {align} bytes"),
                    format!("{v:#x}"),
                ),
                _ => {}
            }
        }
    }
    run_lengths(mapper, &points, report);
}

/// Aligned points by section: (address, alignment, start of its padding).
fn aligned_points(
    ctx: &Ctx<'_, '_, '_>,
    fa: &BTreeMap<usize, u64>,
) -> BTreeMap<usize, Vec<(u64, u64, u64)>> {
    let min_insn: u64 = if ctx.old.rvc() { 2 } else { 4 };
    let mut points: BTreeMap<usize, Vec<(u64, u64, u64)>> = BTreeMap::new();
    for rs in ctx
        .old_relocs
        .iter()
        .filter(|rs| !ctx.is_dynamic(rs) && ctx.is_code(rs.target))
    {
        for r in rs
            .relocs
            .iter()
            .filter(|r| r.r_type == elf::R_RISCV_ALIGN.0)
        {
            let align = (r.addend as u64 + min_insn).next_power_of_two();
            let at = r.offset.next_multiple_of(align);
            points
                .entry(rs.target)
                .or_default()
                .push((at, align, r.offset));
        }
    }
    for s in ctx.old.symbols.iter().filter(|s| s.kind == elf::STT_FUNC.0) {
        if let Some(sec) = s.section() {
            if let Some(&a) = fa.get(&sec).filter(|&&a| a > min_insn) {
                points.entry(sec).or_default().push((s.value, a, s.value));
            }
        }
    }
    // An original without pads (`rewrite --insert`): entries behind alignment nops keep it.
    if ctx
        .old
        .section_by_name(crate::scan::TABLE_SECTION)
        .is_none()
    {
        for k in crate::rewrite::insert::kept_alignment(ctx.old) {
            points
                .entry(k.section)
                .or_default()
                .push((k.at, k.align, k.pad_start));
        }
    }
    points
}

/// A nop run changes length only where a pad or an aligned point (`points`) explains it.
fn run_lengths(
    mapper: &Mapper,
    points: &BTreeMap<usize, Vec<(u64, u64, u64)>>,
    report: &mut VerifyReport,
) {
    // The in-place layout's free space is a nop tail that the last run absorbs.
    let in_place_tail = |cm: &super::map::CodeMap, k: usize| {
        k + 1 == cm.pieces.len() && cm.pieces[k].new_len > cm.pieces[k].old_len
    };
    for cm in &mapper.code {
        let pts = points.get(&cm.old_index).map(Vec::as_slice).unwrap_or(&[]);
        for (k, p) in cm.pieces.iter().enumerate() {
            if !p.run || p.old_len == p.new_len || in_place_tail(cm, k) {
                continue;
            }
            let end = p.old + p.old_len;
            let has_site = {
                let i = cm.sites.partition_point(|s| s.old_entry < p.old);
                cm.sites.get(i).is_some_and(|s| s.old_entry < end)
            } || cm
                .inserted_at(end)
                .is_some_and(|s| s.new_first == p.new + p.new_len);
            let i = pts.partition_point(|q| q.0 < p.old);
            let aligned = pts[i..]
                .iter()
                .take_while(|q| q.0 <= end)
                .any(|q| q.0 == end || (q.2 >= p.old && q.2 <= end));
            if !has_site && !aligned {
                report.mismatch(
                    "nop run",
                    Some(p.old),
                    Some(p.new),
                    format!(
                        "{} bytes of nops, as before (no pad or alignment here)",
                        p.old_len
                    ),
                    format!("{} bytes", p.new_len),
                );
            }
        }
    }
}
