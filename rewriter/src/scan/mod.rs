//! Finding every patch site: where the table says pads are, what is there, whose they are.
//!
//! The table of pad addresses comes from `__patchable_function_entries` (through its
//! relocations in a `.o`, through `R_RISCV_RELATIVE` addends in a PIE or shared object,
//! otherwise from the bytes) or, in a vmlinux, from `__start_mcount_loc..__stop_mcount_loc`.

pub mod ftrace;
mod model;

pub use model::*;

use std::collections::{BTreeMap, HashSet};

use object::elf;

use crate::elf::{read_uint, ElfFile, FileKind, Symbol};
use crate::error::{Error, Result};
use crate::riscv::{insn_len, C_NOP, NOP};

/// A raw table entry: section (if known from a relocation) and address.
#[derive(Debug, Clone, Copy)]
struct RawEntry {
    section: Option<usize>,
    address: u64,
}

/// Scans `file` for patch sites.
pub fn scan(file: &ElfFile<'_>) -> Result<Scan> {
    let (raw, source, table_addr) = read_table(file)?;
    let entries = raw.len();
    let labels = CodeLabels::new(file);
    let padding_ends = alignment_padding_ends(file)?;
    let mut problems = Vec::new();

    // Resolve each entry to an executable section.
    let mut located: Vec<(usize, u64)> = Vec::with_capacity(raw.len());
    for e in &raw {
        if e.address == 0 && file.kind.is_linked() {
            problems.push(SiteProblem {
                address: 0,
                section: None,
                problem: Problem::Zero,
            });
            continue;
        }
        let section = match e.section {
            // A relocation's symbol may name any section index: only an executable one that
            // holds the address counts.
            Some(s) => file
                .sections
                .get(s)
                .filter(|sec| is_code(sec) && sec.contains(e.address))
                .map(|sec| sec.index),
            // An object's entry without a usable relocation has no address to look up.
            None if !file.kind.is_linked() => None,
            None => file
                .sections
                .iter()
                .find(|s| is_code(s) && s.is_alloc() && s.contains(e.address))
                .map(|s| s.index),
        };
        match section {
            Some(s) => located.push((s, e.address)),
            None => problems.push(SiteProblem {
                address: e.address,
                section: None,
                problem: if e.section.is_none() && !file.kind.is_linked() {
                    Problem::Unresolved
                } else {
                    Problem::OutsideText
                },
            }),
        }
    }
    located.sort_unstable();
    located.dedup();

    // Each entry is classified on its own (in parallel: a large program has 100,000s);
    // the outcomes are gathered in table order, so the result does not depend on threads.
    let outcomes: Vec<Result<Outcome>> = {
        use rayon::prelude::*;
        located
            .par_iter()
            .enumerate()
            .map(|(i, &(section, entry))| {
                let next = located.get(i + 1).copied();
                classify(file, &labels, &padding_ends, section, entry, next)
            })
            .collect()
    };
    let mut sites = Vec::with_capacity(located.len());
    // (function symbol - entry) of entries that point at an instruction near a function
    // but are not usable sites: they join `entry_offsets`, so a shifted table shows there.
    let mut stray_offsets = Vec::new();
    for outcome in outcomes {
        match outcome? {
            Outcome::Site(s) => sites.push(s),
            Outcome::Problem(p, stray) => {
                problems.push(p);
                stray_offsets.extend(stray);
            }
        }
    }

    // Sites whose distance to their function differs from the binary's usual one.
    let mut entry_offsets = BTreeMap::new();
    for s in sites.iter().filter(|s| s.symbol.is_some()) {
        *entry_offsets
            .entry(distance(s.func_addr, s.entry))
            .or_insert(0) += 1;
    }
    if let Some((&expected, _)) = entry_offsets
        .iter()
        .max_by_key(|(k, v)| (**v, -(**k).abs()))
    {
        sites.retain(|s| {
            let offset = distance(s.func_addr, s.entry);
            if s.symbol.is_none() || offset == expected {
                return true;
            }
            problems.push(SiteProblem {
                address: s.entry,
                section: Some(s.section),
                problem: Problem::Misplaced { offset, expected },
            });
            false
        });
    }
    for offset in stray_offsets {
        *entry_offsets.entry(offset).or_insert(0) += 1;
    }
    problems.sort_by_key(|p| p.address);
    Ok(Scan {
        sites,
        problems,
        entries,
        source,
        entry_offsets,
        table_addr,
    })
}

/// What one located table entry turned out to be.
enum Outcome {
    /// A usable patch site.
    Site(PatchSite),
    /// Not usable; with (function symbol - entry) when it points near a function.
    Problem(SiteProblem, Option<i64>),
}

/// Classifies the entry at `entry` of executable `section`; `next` is the next located
/// entry (a pad never runs into the next site's pad).
fn classify(
    file: &ElfFile<'_>,
    labels: &CodeLabels,
    padding_ends: &HashSet<(usize, u64)>,
    section: usize,
    entry: u64,
    next: Option<(usize, u64)>,
) -> Result<Outcome> {
    let problem = |problem: Problem, stray: Option<i64>| {
        Ok(Outcome::Problem(
            SiteProblem {
                address: entry,
                section: Some(section),
                problem,
            },
            stray,
        ))
    };
    let sec = &file.sections[section];
    let data = file.section_data(sec)?;
    // `entry` lies in the section's bytes (checked above); stay bounds-checked anyway.
    let here = usize::try_from(entry - sec.addr)
        .ok()
        .and_then(|off| data.get(off..));
    let Some(here) = here.filter(|h| !h.is_empty()) else {
        return problem(Problem::OutsideText, None);
    };
    let limit = match next {
        Some((s, next)) if s == section => {
            usize::try_from(next - entry).map_or(here.len(), |n| n.min(here.len()))
        }
        _ => here.len(),
    };
    let run = nop_run(&here[..limit], file.rvc());
    let Boundary::Start { previous } = on_boundary(file, labels, section, entry, data) else {
        return problem(Problem::MidInstruction, None);
    };
    let state = if run.bytes > 0 {
        SiteState::Nops
    } else {
        let raw = read_insn(here);
        if is_call_patch(raw) {
            SiteState::Patched(raw)
        } else {
            let stray = labels
                .nearest(section, entry)
                .map(|s| distance(file.symbols[s].value, entry));
            return problem(Problem::NoNop(raw), stray);
        }
    };
    let (mut bytes, mut insns) = match state {
        SiteState::Nops => (run.bytes, run.insns),
        SiteState::Patched(raw) => (insn_len(raw as u16) as u32, 1),
    };
    let owner = labels.function_for(section, entry, u64::from(bytes));
    let mut kind = run.kind;
    // A label past the function's own address, inside the nop run, names code of its own:
    // the pad ends there. (A kernel `ALTERNATIVE` whose old content is a `nop` right at
    // the function's start: the kernel patches it at that label, so it is not pad.)
    if let (SiteState::Nops, Some(Owner::Own(_, func))) = (state, &owner) {
        let end = entry.saturating_add(u64::from(bytes));
        if let Some(mark) = labels.first_mark_between(section, (*func).max(entry), end) {
            let cut = nop_run(
                &here[..usize::try_from(mark - entry).unwrap_or(0)],
                file.rvc(),
            );
            if cut.bytes > 0 {
                (bytes, insns, kind) = (cut.bytes, cut.insns, cut.kind);
            }
        }
    }
    let continues_run = match owner {
        // A label inside the pad: its function's pad, unless the entry follows a nop
        // that alignment padding cannot explain (it points into the nops before it).
        Some(Owner::Own(..)) => previous.is_some_and(|p| {
            continues_cnop_run(p, entry) && !padding_ends.contains(&(section, entry))
        }),
        // No label of its own (an overridden weak function, a stripped static one): an
        // anonymous pad, unless it continues a nop run, i.e. the entry points into a pad.
        // (One c.nop of alignment before a 4-byte slot's aligned nop does not count.)
        Some(Owner::Before(..)) => {
            previous.is_some_and(|p| is_nop(p) && !aligns_slot(p, entry, here))
        }
        None => false,
    };
    let symbol = match owner {
        Some(Owner::Own(_, func) | Owner::Before(func)) if continues_run => {
            return problem(
                Problem::NotRunStart { function: func },
                Some(distance(func, entry)),
            );
        }
        Some(Owner::Own(s, value)) => Some((s, value)),
        _ => None,
    };
    let func_addr = symbol.map_or(entry, |(_, value)| value);
    Ok(Outcome::Site(PatchSite {
        section,
        entry,
        symbol: symbol.map(|(s, _)| s),
        func_addr,
        pad_bytes: bytes,
        pad_insns: insns,
        pre_bytes: func_addr.saturating_sub(entry).min(u64::from(bytes)) as u32,
        nop_kind: kind,
        align: alignment_of(entry),
        state,
    }))
}

/// An executable section with bytes in the file (an `SHT_NOBITS` one claiming to be code
/// holds no instructions).
fn is_code(section: &crate::elf::Section<'_>) -> bool {
    section.is_exec() && !section.is_nobits()
}

/// `to - from` as a signed distance; addresses wrap, never panic.
fn distance(to: u64, from: u64) -> i64 {
    to.wrapping_sub(from) as i64
}

fn read_table(file: &ElfFile<'_>) -> Result<(Vec<RawEntry>, TableSource, Option<u64>)> {
    if file.kind == FileKind::Vmlinux {
        return read_kernel_table(file);
    }
    // In a linked file a non-allocated `__patchable_function_entries` is the record
    // `rewrite --insert` adds (the compiler's is always allocated, so the loader can
    // relocate it): that file's table is its `__mcount_loc`, read below, which `verify`
    // proves lists the same slots.
    let tables: Vec<_> = file
        .sections
        .iter()
        .filter(|s| s.name == TABLE_SECTION && (s.is_alloc() || !file.kind.is_linked()))
        .collect();
    if tables.is_empty() {
        return read_inserted_table(file);
    }
    let ptr = file.ptr_size();
    for table in &tables {
        check_table_shape(file, table)?;
    }
    // Only the relocations the table needs are read (and checked): an object's, those
    // that apply to the table; a linked file's, the loader's. A defect in any other
    // relocation section is the rewriter's business, not the scan's.
    let relocs = if file.kind == FileKind::Relocatable {
        file.relocation_sections_where(|rs| file.reloc_applies_to(rs, |t| t.name == TABLE_SECTION))?
    } else {
        file.relocation_sections_where(|rs| rs.is_alloc())?
    };
    let mut out = Vec::new();
    if file.kind == FileKind::Relocatable {
        for table in &tables {
            let Some(rs) = relocs.iter().find(|r| r.target == table.index) else {
                // No relocations: every entry is unresolved. Count them from the bytes the
                // file really holds, not from a size field that may claim anything.
                let bytes = file.section_data(table)?.len();
                for _ in 0..bytes / ptr {
                    out.push(RawEntry {
                        section: None,
                        address: 0,
                    });
                }
                continue;
            };
            if Some(rs.symtab) != file.symtab_index {
                return Err(Error::malformed(format!(
                    "relocations of {TABLE_SECTION} do not use .symtab"
                )));
            }
            // Only an absolute pointer relocation fills the entry at link time; any other
            // (R_RISCV_NONE left by a tool that "dropped" it) leaves the zero bytes.
            let absolute = if file.is_64 {
                elf::R_RISCV_64.0
            } else {
                elf::R_RISCV_32.0
            };
            for r in &rs.relocs {
                let on_an_entry = r.offset.is_multiple_of(ptr as u64) && r.offset < table.size;
                if !on_an_entry && r.r_type == elf::R_RISCV_NONE.0 {
                    // Applies to nothing, and stands for no entry either.
                    continue;
                }
                if !on_an_entry {
                    return Err(Error::malformed(format!(
                        "{TABLE_SECTION} ([{}]) has a relocation at offset {:#x}, which is not \
                         an entry of its {:#x} bytes of {ptr}-byte entries",
                        table.index, r.offset, table.size
                    )));
                }
                if r.r_type != absolute {
                    out.push(RawEntry {
                        section: None,
                        address: 0,
                    });
                    continue;
                }
                let sym = file.symbols.get(r.sym as usize);
                out.push(match sym.and_then(|s| Some((s.section()?, s))) {
                    Some((section, s)) => RawEntry {
                        section: Some(section),
                        address: s.value.wrapping_add(r.addend as u64),
                    },
                    None => RawEntry {
                        section: None,
                        address: 0,
                    },
                });
            }
        }
        return Ok((out, TableSource::Relocations, None));
    }
    // Linked: the loader's RELATIVE addends win over the (often zero) bytes.
    // Keyed by address: FxHash (a crafted input can only make it slower, never wrong).
    let mut relative: rustc_hash::FxHashMap<u64, u64> = Default::default();
    for rs in &relocs {
        if file.sections[rs.index].is_alloc() {
            for r in rs
                .relocs
                .iter()
                .filter(|r| r.r_type == elf::R_RISCV_RELATIVE.0)
            {
                relative.insert(r.offset, r.addend as u64);
            }
        }
    }
    for table in &tables {
        let data = file.section_data(table)?;
        for (i, chunk) in data.chunks(ptr).enumerate() {
            let at = table.addr.wrapping_add((i * ptr) as u64);
            let value = relative
                .get(&at)
                .copied()
                .or_else(|| read_uint(chunk, 0, ptr))
                .ok_or_else(|| Error::malformed(format!("{TABLE_SECTION}: truncated entry")))?;
            out.push(RawEntry {
                section: None,
                address: value,
            });
        }
    }
    Ok((out, TableSource::Section, Some(tables[0].addr)))
}

/// The table is an array of pointers with bytes: not `SHT_NOBITS`, a whole number of
/// entries, and (in a linked file, where the kernel or runtime reads it) pointer-aligned.
fn check_table_shape(file: &ElfFile<'_>, table: &crate::elf::Section<'_>) -> Result<()> {
    let ptr = file.ptr_size() as u64;
    let what = format!("{TABLE_SECTION} ([{}])", table.index);
    if table.is_nobits() {
        return Err(Error::malformed(format!(
            "{what} is SHT_NOBITS: the table has no bytes in the file"
        )));
    }
    if !table.size.is_multiple_of(ptr) {
        return Err(Error::malformed(format!(
            "{what} is {:#x} bytes, not a whole number of {ptr}-byte entries",
            table.size
        )));
    }
    if file.kind.is_linked() && !table.addr.is_multiple_of(ptr) {
        return Err(Error::malformed(format!(
            "{what} at address {:#x} is not aligned to {ptr} bytes",
            table.addr
        )));
    }
    Ok(())
}

/// A linked file without the compiler's (allocated) `__patchable_function_entries` whose
/// slots `padtrim rewrite --insert` added: their table is the `__mcount_loc` it wrote
/// (link-time addresses, sorted, read by the runtime with the load bias added), so `report`,
/// `check` and the runtime see the same slots. Any other file without the compiler's table
/// has none.
fn read_inserted_table(file: &ElfFile<'_>) -> Result<(Vec<RawEntry>, TableSource, Option<u64>)> {
    let table = file
        .sections
        .iter()
        .find(|s| s.name == padtrim_abi::MCOUNT_SECTION)
        .filter(|_| file.kind.is_linked());
    let Some(table) = table else {
        return Ok((Vec::new(), TableSource::None, None));
    };
    let ptr = file.ptr_size();
    let what = format!("{} ([{}])", padtrim_abi::MCOUNT_SECTION, table.index);
    if table.is_nobits() || !table.size.is_multiple_of(ptr as u64) {
        return Err(Error::malformed(format!(
            "{what} is not a whole number of {ptr}-byte entries with bytes in the file"
        )));
    }
    let data = file.section_data(table)?;
    let out = data
        .chunks_exact(ptr)
        .map(|chunk| RawEntry {
            section: None,
            address: read_uint(chunk, 0, ptr).unwrap_or(0),
        })
        .collect();
    Ok((out, TableSource::InsertedMcountLoc, Some(table.addr)))
}

fn read_kernel_table(file: &ElfFile<'_>) -> Result<(Vec<RawEntry>, TableSource, Option<u64>)> {
    let start = file.symbol_by_name("__start_mcount_loc").map(|s| s.value);
    let stop = file.symbol_by_name("__stop_mcount_loc").map(|s| s.value);
    let (Some(start), Some(stop)) = (start, stop) else {
        return Err(Error::malformed(
            "vmlinux without __start_mcount_loc/__stop_mcount_loc",
        ));
    };
    if stop < start {
        return Err(Error::malformed(
            "__stop_mcount_loc is before __start_mcount_loc",
        ));
    }
    if stop == start {
        return Ok((Vec::new(), TableSource::KernelMcountLoc, Some(start)));
    }
    let ptr = file.ptr_size() as u64;
    if !start.is_multiple_of(ptr) {
        return Err(Error::malformed(format!(
            "__start_mcount_loc ({start:#x}) is not aligned to {ptr} bytes"
        )));
    }
    let sec = file
        .alloc_section_at(start)
        .filter(|s| stop <= s.end())
        .ok_or_else(|| Error::malformed("mcount_loc table is not inside one section"))?;
    let data = file.section_data(sec)?;
    let runs_past = || Error::malformed("mcount_loc table runs past its section's bytes");
    // Both bounds lie in the section; its bytes (none for SHT_NOBITS) must hold the table.
    let base = usize::try_from(start - sec.addr).map_err(|_| runs_past())?;
    let len = usize::try_from(stop - start).map_err(|_| runs_past())?;
    let table = data
        .get(base..)
        .and_then(|d| d.get(..len))
        .ok_or_else(runs_past)?;
    let mut out = Vec::with_capacity(table.len() / ptr as usize);
    for chunk in table.chunks_exact(ptr as usize) {
        let v = read_uint(chunk, 0, ptr as usize).ok_or_else(runs_past)?;
        out.push(RawEntry {
            section: None,
            address: v,
        });
    }
    Ok((out, TableSource::KernelMcountLoc, Some(start)))
}

/// A run of nops at the start of `bytes`.
struct NopRun {
    bytes: u32,
    insns: u32,
    kind: NopKind,
}

fn nop_run(bytes: &[u8], rvc: bool) -> NopRun {
    let (mut off, mut insns, mut c, mut n) = (0usize, 0u32, false, false);
    while off + 2 <= bytes.len() {
        let parcel = u16::from_le_bytes([bytes[off], bytes[off + 1]]);
        if rvc && parcel == C_NOP {
            c = true;
            off += 2;
        } else if off + 4 <= bytes.len() && read_insn(&bytes[off..]) == NOP {
            n = true;
            off += 4;
        } else {
            break;
        }
        insns += 1;
    }
    let kind = match (c, n) {
        (true, true) => NopKind::Mixed,
        (true, false) => NopKind::CNop,
        (false, true) => NopKind::Nop,
        (false, false) => NopKind::None,
    };
    NopRun {
        bytes: off as u32,
        insns,
        kind,
    }
}

/// Reads one instruction (2 or 4 bytes) as a u32; 0 if too short.
fn read_insn(bytes: &[u8]) -> u32 {
    let Some(lo) = read_uint(bytes, 0, 2) else {
        return 0;
    };
    if insn_len(lo as u16) == 2 {
        lo as u32
    } else {
        read_uint(bytes, 0, 4).unwrap_or(0) as u32
    }
}

/// `jal t0, ...` or `auipc t0, ...`: the call forms ftrace and padtrim patch pads into.
fn is_call_patch(raw: u32) -> bool {
    let rd = (raw >> 7) & 0x1f;
    let opcode = raw & 0x7f;
    rd == 5 && (opcode == 0x6f || opcode == 0x17)
}

fn alignment_of(addr: u64) -> u32 {
    if addr == 0 {
        64
    } else {
        (1u64 << addr.trailing_zeros().min(6)) as u32
    }
}

/// Whether an entry starts an instruction, found by decoding lengths from the closest code
/// label before it, or from the section start when there is none (a pad at the start of
/// `.text` minus 2 lands in `.plt`, which has no symbols). Unknowable cases (very long
/// distance) count as a start.
enum Boundary {
    /// The entry starts an instruction; `previous` is the one before it, when known (not
    /// looked up when the bytes before the entry cannot be a nop).
    Start { previous: Option<u32> },
    /// The entry is inside an instruction.
    Inside,
}

fn on_boundary(
    file: &ElfFile<'_>,
    labels: &CodeLabels,
    section: usize,
    entry: u64,
    data: &[u8],
) -> Boundary {
    let base = file.sections[section].addr;
    // The label's address comes from the sorted labels themselves: looking it up in the
    // symbol table was a cache miss per site (a third of a large program's scan).
    let label_before = |addr: u64| {
        labels
            .at_or_before(section, addr)
            .map_or(base, |(_, value)| value)
    };
    let start = label_before(entry);
    match walk(data, base, start, entry) {
        Walk::Lands { previous: None } if start > base && may_follow_nop(data, base, entry) => {
            // The entry has a label of its own: the instruction before it is found from
            // the label before that one, when decoding from there lands on the entry too.
            // (Callers only ask whether it is a nop: bytes that cannot end one skip the
            // decoding of the whole function before.)
            let previous = match walk(data, base, label_before(start - 1), entry) {
                Walk::Lands { previous } => previous,
                _ => None,
            };
            Boundary::Start { previous }
        }
        Walk::Lands { previous } => Boundary::Start { previous },
        Walk::Passes => Boundary::Inside,
        Walk::Unknown => Boundary::Start { previous: None },
    }
}

/// Whether the bytes just before `entry` could be a `nop` or `c.nop` (if an instruction
/// ends there at all).
fn may_follow_nop(data: &[u8], base: u64, entry: u64) -> bool {
    let Some(off) = entry
        .checked_sub(base)
        .and_then(|o| usize::try_from(o).ok())
    else {
        return true;
    };
    let ends = |n: usize, want: u64| {
        off.checked_sub(n)
            .and_then(|from| read_uint(data, from, n))
            .is_some_and(|v| v == want)
    };
    ends(2, u64::from(C_NOP)) || ends(4, u64::from(NOP))
}

/// Decoding instruction lengths from one address to another.
enum Walk {
    /// An instruction starts at the target; `previous` is the one before it, if any.
    Lands { previous: Option<u32> },
    /// The target is inside an instruction.
    Passes,
    /// Too far, or past the data.
    Unknown,
}

fn walk(data: &[u8], base: u64, from: u64, to: u64) -> Walk {
    if to - from > 1 << 20 {
        return Walk::Unknown;
    }
    let (mut at, mut previous) = (from, None);
    while at < to {
        // A label below the section's start (a corrupt symbol) gives no decodable start.
        let Some(off) = at.checked_sub(base).and_then(|o| usize::try_from(o).ok()) else {
            return Walk::Unknown;
        };
        let Some(parcel) = read_uint(data, off, 2) else {
            return Walk::Unknown;
        };
        previous = Some(read_insn(&data[off..]));
        at += insn_len(parcel as u16) as u64;
    }
    if at == to {
        Walk::Lands { previous }
    } else {
        Walk::Passes
    }
}

fn is_nop(raw: u32) -> bool {
    raw == NOP || raw == u32::from(C_NOP)
}

/// Where alignment padding still to be relaxed ends in a relocatable file: (section, end
/// offset) of every `R_RISCV_ALIGN`, whose padding need not end aligned before linking.
fn alignment_padding_ends(file: &ElfFile<'_>) -> Result<HashSet<(usize, u64)>> {
    if file.kind.is_linked() {
        return Ok(HashSet::new());
    }
    Ok(file
        .relocation_sections_where(|rs| file.reloc_applies_to(rs, |t| t.is_exec()))?
        .iter()
        .flat_map(|rs| {
            rs.relocs
                .iter()
                .filter(|r| r.r_type == elf::R_RISCV_ALIGN.0)
                .map(|r| (rs.target, r.offset.wrapping_add(r.addend as u64)))
        })
        .collect())
}

/// Whether the instruction before `entry` shows that the entry points into a run of
/// `c.nop`s: a `c.nop` right before an entry that is not 4-byte aligned. Alignment padding
/// ends aligned (to 4 at least when its last nop is a `c.nop`); a 4-byte `nop` before an
/// entry proves nothing (alignment padding, or the filler padtrim's in-place rewrite leaves
/// before a slot). Padding that an `R_RISCV_ALIGN` still governs (in an object, where it
/// need not end aligned yet) is found by [`alignment_padding_ends`].
fn continues_cnop_run(previous: u32, entry: u64) -> bool {
    previous == u32::from(C_NOP) && !entry.is_multiple_of(4)
}

/// A `c.nop` right before an aligned 4-byte `nop` at `entry` (`here`): the alignment a
/// `--slot 4` rewrite puts before a slot whose function followed 2-byte aligned code, not
/// the end of a run of `c.nop` pads (those hold no 4-byte `nop`).
fn aligns_slot(previous: u32, entry: u64, here: &[u8]) -> bool {
    previous == u32::from(C_NOP) && entry.is_multiple_of(4) && read_insn(here) == NOP
}

/// Whose pad a site is: a label inside the pad (symbol index, address), or only one before
/// it (address).
enum Owner {
    /// A label lies inside `[entry, entry + pad]`: the pad's own function.
    Own(usize, u64),
    /// Only a label before the entry: the pad has no function symbol of its own.
    Before(u64),
}

/// Code labels (function symbols and named untyped labels) sorted by (section, address),
/// function symbols first among equals; and every address of executable code that any
/// symbol names (local `.L` labels too), sorted by (section, address).
pub(crate) struct CodeLabels {
    sorted: Vec<(usize, u64, bool, usize)>,
    marks: Vec<(usize, u64)>,
}

impl CodeLabels {
    pub(crate) fn new(file: &ElfFile<'_>) -> Self {
        let mut sorted: Vec<_> = file
            .symbols
            .iter()
            .filter(|s| s.is_code_label())
            .filter_map(|s: &Symbol<'_>| {
                let sec = s.section()?;
                file.sections.get(sec).filter(|x| x.is_exec())?;
                Some((sec, s.value, s.kind != elf::STT_FUNC.0, s.index))
            })
            .collect();
        let mut marks: Vec<_> = file
            .symbols
            .iter()
            .filter(|s| {
                !s.name.is_empty()
                    && s.kind != elf::STT_SECTION.0
                    && s.kind != elf::STT_FILE.0
                    && !s.name.starts_with('$')
            })
            .filter_map(|s: &Symbol<'_>| {
                let sec = s.section()?;
                file.sections.get(sec).filter(|x| x.is_exec())?;
                Some((sec, s.value))
            })
            .collect();
        {
            use rayon::slice::ParallelSliceMut;
            sorted.par_sort_unstable();
            marks.par_sort_unstable();
        }
        marks.dedup();
        CodeLabels { sorted, marks }
    }

    /// The first address in `section` strictly between `after` and `before` that a symbol
    /// names.
    fn first_mark_between(&self, section: usize, after: u64, before: u64) -> Option<u64> {
        let i = self
            .marks
            .partition_point(|&(s, v)| (s, v) <= (section, after));
        self.marks
            .get(i)
            .filter(|&&(s, v)| s == section && v < before)
            .map(|&(_, v)| v)
    }

    /// The function a pad belongs to: the first function symbol inside
    /// `[entry, entry + pad]`, else the first label there, else the last label before
    /// `entry`. A function symbol wins over an untyped label earlier in the pad: a kernel's
    /// linker-script markers (`_stext`, `__init_text_begin`, ...) can sit on the first
    /// pre-entry nop of a `-fpatchable-function-entry=N,M` function.
    fn function_for(&self, section: usize, entry: u64, pad: u64) -> Option<Owner> {
        let i = self
            .sorted
            .partition_point(|&(s, v, _, _)| (s, v) < (section, entry));
        let end = entry.saturating_add(pad);
        let mut inside = self.sorted[i..]
            .iter()
            .take_while(|&&(s, v, _, _)| s == section && v <= end);
        let first = inside.clone().next();
        match inside.find(|&&(_, _, untyped, _)| !untyped).or(first) {
            Some(&(_, v, _, idx)) => Some(Owner::Own(idx, v)),
            None => self
                .at_or_before(section, entry)
                .map(|(_, v)| Owner::Before(v)),
        }
    }

    /// The label closest to `addr` in `section` (the one at or after it on a tie).
    fn nearest(&self, section: usize, addr: u64) -> Option<usize> {
        let i = self
            .sorted
            .partition_point(|&(s, v, _, _)| (s, v) < (section, addr));
        let after = self
            .sorted
            .get(i)
            .filter(|l| l.0 == section)
            .map(|l| (l.1 - addr, l.3));
        let before = i
            .checked_sub(1)
            .map(|j| self.sorted[j])
            .filter(|l| l.0 == section)
            .and_then(|l| Some((addr - l.1, self.at_or_before(section, l.1)?.0)));
        match (after, before) {
            (Some(a), Some(b)) if b.0 < a.0 => Some(b.1),
            (Some(a), _) => Some(a.1),
            (None, b) => b.map(|b| b.1),
        }
    }

    /// The last label at or before `addr` in `section`: its symbol index and address.
    fn at_or_before(&self, section: usize, addr: u64) -> Option<(usize, u64)> {
        let i = self
            .sorted
            .partition_point(|&(s, v, _, _)| (s, v) <= (section, addr));
        let &(s, v, _, _) = self.sorted.get(i.checked_sub(1)?)?;
        if s != section {
            return None;
        }
        // Prefer a function symbol among labels at the same address.
        let first = self
            .sorted
            .partition_point(|&(s2, v2, _, _)| (s2, v2) < (s, v));
        Some((self.sorted[first].3, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::write::{
        Object, Relocation, StandardSection, StandardSegment, Symbol, SymbolSection,
    };
    use object::{
        Architecture, BinaryFormat, Endianness, FileFlags, RelocationFlags, SymbolFlags,
        SymbolKind, SymbolScope,
    };

    const CNOP: [u8; 2] = [0x01, 0x00];
    const CRET: [u8; 2] = [0x82, 0x80];
    const NOP4: [u8; 4] = [0x13, 0x00, 0x00, 0x00];

    /// How the table of a test file is written.
    enum Table {
        /// Relocatable: one relocation per entry, `(r_type, addend)` against `.text`.
        Relocations(Vec<(u32, i64)>),
        /// Relabelled as `ET_EXEC` (every section at address 0): these entry words.
        Words(Vec<u64>),
    }

    /// A little RISC-V (RVC) ELF file: `.text` holding `code`, function symbols at
    /// `functions`, and a `__patchable_function_entries` table.
    fn elf_file(code: &[u8], functions: &[u64], table: Table) -> Vec<u8> {
        elf_file_with_align(code, functions, table, &[])
    }

    /// [`elf_file`] plus an `R_RISCV_ALIGN` in `.text` per (offset, padding bytes).
    fn elf_file_with_align(
        code: &[u8],
        functions: &[u64],
        table: Table,
        align: &[(u64, i64)],
    ) -> Vec<u8> {
        let mut obj = Object::new(BinaryFormat::Elf, Architecture::Riscv64, Endianness::Little);
        obj.flags = FileFlags::Elf {
            os_abi: elf::OsAbi(0),
            abi_version: 0,
            e_flags: elf::FileFlags(elf::EF_RISCV_RVC.0 | elf::EF_RISCV_FLOAT_ABI_DOUBLE.0),
        };
        let text = obj.section_id(StandardSection::Text);
        obj.append_section_data(text, code, 2);
        for (i, &at) in functions.iter().enumerate() {
            obj.add_symbol(Symbol {
                name: format!("f{i}").into_bytes(),
                value: at,
                size: 0,
                kind: SymbolKind::Text,
                scope: SymbolScope::Compilation,
                weak: false,
                section: SymbolSection::Section(text),
                flags: SymbolFlags::None,
            });
        }
        for &(offset, addend) in align {
            let base = obj.section_symbol(text);
            obj.add_relocation(
                text,
                Relocation {
                    offset,
                    symbol: base,
                    addend,
                    flags: RelocationFlags::Elf {
                        r_type: elf::R_RISCV_ALIGN,
                    },
                },
            )
            .expect("add R_RISCV_ALIGN");
        }
        let data = obj.segment_name(StandardSegment::Data).to_vec();
        let table_section = obj.add_section(
            data,
            TABLE_SECTION.as_bytes().to_vec(),
            object::SectionKind::Data,
        );
        let relabel = matches!(table, Table::Words(_));
        match table {
            Table::Relocations(entries) => {
                obj.append_section_data(table_section, &vec![0; 8 * entries.len()], 8);
                let base = obj.section_symbol(text);
                for (i, (r_type, addend)) in entries.into_iter().enumerate() {
                    obj.add_relocation(
                        table_section,
                        Relocation {
                            offset: 8 * i as u64,
                            symbol: base,
                            addend,
                            flags: RelocationFlags::Elf {
                                r_type: elf::RelocationType(r_type),
                            },
                        },
                    )
                    .expect("add relocation");
                }
            }
            Table::Words(words) => {
                let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                obj.append_section_data(table_section, &bytes, 8);
            }
        }
        let mut bytes = obj.write().expect("write test ELF");
        if relabel {
            bytes[16..18].copy_from_slice(&elf::ET_EXEC.0.to_le_bytes());
            // A linked file's sections do not share addresses (the parser checks): the table
            // moves past the code, which stays at 0 as the entries expect.
            let index = {
                use object::{Object as _, ObjectSection as _};
                object::read::elf::ElfFile64::<Endianness>::parse(&*bytes)
                    .expect("read back test ELF")
                    .section_by_name(TABLE_SECTION)
                    .expect("table section")
                    .index()
                    .0
            };
            let shoff = u64::from_le_bytes(bytes[0x28..0x30].try_into().expect("8 bytes"));
            let sh_addr = shoff as usize + 64 * index + 16;
            bytes[sh_addr..sh_addr + 8].copy_from_slice(&0x10_0000u64.to_le_bytes());
        }
        bytes
    }

    fn scan_bytes(bytes: &[u8]) -> Scan {
        let file = crate::elf::parse(bytes).expect("parse test ELF");
        scan(&file).expect("scan test ELF")
    }

    fn kinds(scan: &Scan) -> Vec<(u64, &'static str)> {
        scan.problems
            .iter()
            .map(|p| (p.address, p.problem.kind()))
            .collect()
    }

    /// f0: `c.ret` at 0; f1, f2: a pad of 4 `c.nop` at 2 and 12, then `c.ret` (M = 0).
    fn two_pads() -> (Vec<u8>, Vec<u64>) {
        let mut code = CRET.to_vec();
        for _ in 0..2 {
            code.extend(CNOP.repeat(4));
            code.extend(CRET);
            code.extend(CRET);
        }
        (code, vec![0, 2, 14])
    }

    #[test]
    fn one_cnop_of_alignment_before_an_anonymous_4_byte_slot_is_not_its_pad() {
        // f0 `c.ret` at 0, a `c.nop` of alignment at 2, then a function without a symbol (a
        // kernel's static function after `--slot 4`): its slot, one aligned `nop`, at 4.
        let code = [CRET.to_vec(), CNOP.to_vec(), NOP4.to_vec(), CRET.to_vec()].concat();
        let scan = scan_bytes(&elf_file(&code, &[0], Table::Words(vec![4])));
        assert!(scan.problems.is_empty(), "{:?}", kinds(&scan));
        assert_eq!(scan.sites.len(), 1);
        assert_eq!((scan.sites[0].entry, scan.sites[0].pad_bytes), (4, 4));
        // An entry 4-aligned inside a run of `c.nop` pads still points into the pad.
        let code = [CRET.to_vec(), CNOP.repeat(4), CRET.to_vec()].concat();
        let scan = scan_bytes(&elf_file(&code, &[0], Table::Words(vec![4])));
        assert!(scan.sites.is_empty());
        assert_eq!(kinds(&scan), [(4, "not-run-start")]);
    }

    #[test]
    fn an_object_entry_whose_relocation_was_dropped_is_unresolved() {
        let (code, functions) = two_pads();
        let r64 = elf::R_RISCV_64.0;
        let none = elf::R_RISCV_NONE.0;
        let file = elf_file(
            &code,
            &functions,
            Table::Relocations(vec![(r64, 2), (none, 14)]),
        );
        let scan = scan_bytes(&file);
        assert_eq!(scan.entries, 2);
        assert_eq!(scan.sites.len(), 1);
        assert_eq!(scan.sites[0].entry, 2);
        assert_eq!(kinds(&scan), [(0, "unresolved")]);
    }

    #[test]
    fn an_entry_before_the_first_label_is_decoded_from_the_section_start() {
        // rv64g-like `=2,2`: two 4-byte nops before f0 (at 8) and f1 (at 18), so no label
        // precedes f0's entry moved to 2, in the middle of the first nop.
        let function = [NOP4.repeat(2), CRET.to_vec()].concat();
        let code = [function.clone(), function].concat();
        let r64 = elf::R_RISCV_64.0;
        let file = elf_file(
            &code,
            &[8, 18],
            Table::Relocations(vec![(r64, 2), (r64, 10)]),
        );
        let scan = scan_bytes(&file);
        assert_eq!(scan.sites.len(), 1);
        assert_eq!(kinds(&scan), [(2, "mid-instruction")]);
        assert_eq!(scan.entry_offsets, [(8, 1)].into_iter().collect());
    }

    #[test]
    fn entries_next_to_a_pad_show_their_offset_in_the_histogram() {
        let (code, functions) = two_pads();
        let r64 = elf::R_RISCV_64.0;
        // f1's entry 2 bytes late (inside its pad), f2's 2 bytes early (on a c.ret).
        let file = elf_file(
            &code,
            &functions,
            Table::Relocations(vec![(r64, 4), (r64, 12)]),
        );
        let scan = scan_bytes(&file);
        assert!(scan.sites.is_empty());
        assert_eq!(kinds(&scan), [(4, "not-run-start"), (12, "no-nop")]);
        assert_eq!(scan.entry_offsets, [(-2, 1), (2, 1)].into_iter().collect());
    }

    /// f0 `c.ret` at 0; then f1, f2, f3 with `=4,2` pads (two `c.nop` before the symbol,
    /// two after, then `c.ret`) at 2, 12 and 24: f3's after one `c.nop` of alignment
    /// padding at 22, so its pad starts 4-aligned right after a nop.
    fn pre_nop_pads() -> (Vec<u8>, Vec<u64>) {
        let function = [CNOP.repeat(4), CRET.to_vec()].concat();
        let code = [
            CRET.to_vec(),
            function.clone(),
            function.clone(),
            CNOP.to_vec(),
            function,
        ]
        .concat();
        assert_eq!(code.len(), 34);
        (code, vec![0, 6, 16, 28])
    }

    #[test]
    fn a_linked_entry_after_a_nop_starts_a_pad_only_where_alignment_padding_ends() {
        let (code, functions) = pre_nop_pads();
        let intact = scan_bytes(&elf_file(&code, &functions, Table::Words(vec![2, 12, 24])));
        assert!(intact.problems.is_empty(), "{:?}", kinds(&intact));
        assert_eq!(intact.sites.len(), 3);
        assert_eq!(intact.entry_offsets, [(4, 3)].into_iter().collect());

        // Every entry 2 bytes late: all still point at nops before their symbol, and agree
        // with each other, so only the nop before them tells. 14 and 26 cannot follow
        // alignment padding (not 4-aligned); 4 could, and stays a site.
        let shifted = scan_bytes(&elf_file(&code, &functions, Table::Words(vec![4, 14, 26])));
        assert_eq!(
            kinds(&shifted),
            [(14, "not-run-start"), (26, "not-run-start")]
        );
        assert_eq!(shifted.sites.len(), 1);
        assert_eq!(shifted.entry_offsets, [(2, 3)].into_iter().collect());
    }

    #[test]
    fn in_an_object_padding_ends_where_its_r_riscv_align_says() {
        // f0 `c.ret`, 4 bytes of c.nop padding still to be relaxed (2..6), then f1's `=4,2`
        // pad at 6: not 4-aligned in the object, but right where the padding ends.
        let function = [CNOP.repeat(4), CRET.to_vec()].concat();
        let code = [CRET.to_vec(), CNOP.repeat(2), function].concat();
        let table = || Table::Relocations(vec![(elf::R_RISCV_64.0, 6)]);
        let relaxable = elf_file_with_align(&code, &[0, 10], table(), &[(2, 4)]);
        let scan = scan_bytes(&relaxable);
        assert!(scan.problems.is_empty(), "{:?}", kinds(&scan));
        assert_eq!(scan.sites.len(), 1);
        assert_eq!(scan.sites[0].pre_bytes, 4);

        let without = scan_bytes(&elf_file(&code, &[0, 10], table()));
        assert_eq!(kinds(&without), [(6, "not-run-start")]);
    }

    #[test]
    fn an_entry_moved_onto_its_symbol_past_a_pre_nop_is_inside_the_pad() {
        // `=4,1` (one c.nop before f0 at 2): the entry moved from 0 to 2 sits on f0's own
        // symbol, so only the c.nop before it shows that it points into the pad.
        let code = [CNOP.repeat(4), CRET.to_vec()].concat();
        let r64 = elf::R_RISCV_64.0;
        let intact = scan_bytes(&elf_file(&code, &[2], Table::Relocations(vec![(r64, 0)])));
        assert!(intact.problems.is_empty(), "{:?}", kinds(&intact));
        let moved = scan_bytes(&elf_file(&code, &[2], Table::Relocations(vec![(r64, 2)])));
        assert_eq!(kinds(&moved), [(2, "not-run-start")]);
        assert_eq!(moved.entry_offsets, [(0, 1)].into_iter().collect());
    }
}
