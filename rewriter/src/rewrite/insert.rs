//! `rewrite --insert`: slots for programs built without pads (no
//! `-fpatchable-function-entry`), linked with their relocations (`-Wl,-q`).
//!
//! The same plan → relocate → emit pipeline as a compaction, run the other way: each selected
//! function gets a slot ([`Edit::Slot`](crate::plan::Edit::Slot)) in front of its first
//! instruction, code grows, later segments move up by whole pages, and every reference is
//! re-resolved. The output carries a sorted `__mcount_loc` of the slots (and fills the
//! runtime's descriptor when the program carries it) and a non-allocated
//! `__patchable_function_entries` listing the same slots (see
//! [`tables::entries_record`]), so `verify`, `record` and the runtime treat it as a
//! compacted file.
//!
//! Decisions:
//! - a function is a `STT_FUNC` symbol with a size in an executable section; aliases (one
//!   address) share one slot;
//! - calls and tail calls, and every data pointer, target the slot (the new function
//!   address); a jump that does not link from inside a function to its own entry (a loop made
//!   from a tail call) goes behind the slot, to the first real instruction (only where a
//!   relocation marks the jump); a linking self-call goes through the slot;
//! - skipped (no slot): the ELF entry and `_start`, functions in `.init`, `.fini` and the
//!   PLT, `setjmp`/`longjmp`/`vfork`/`clone`/`*context` (they must not gain a frame or a
//!   call), the runtime's own code (`padtrim_*` and its mangled Rust functions), and
//!   `memcpy`/`memmove`/`memset`/`memcmp`/`bcmp` (the runtime calls them).
//! - mixed inputs (a program whose own code was built with `-fpatchable-function-entry`,
//!   linked with code that was not, a static libc say): the pads are cut to slots of the same
//!   size in the same plan, exactly as `padtrim rewrite` would (`--pre 0`, each pad's own
//!   layout), every selected function without a pad gets a slot inserted, and one sorted
//!   `__mcount_loc` lists both. `--functions` selects only where slots are inserted: every
//!   pad is compacted. A file that already has a `__mcount_loc` (rewritten or inserted
//!   before) is refused: it has its slots.

use serde::Serialize;

use crate::elf::{self, ElfFile, FileKind, RelocSection};
use crate::emit::tables;
use crate::error::{Error, Result};
use crate::plan::{plan_insert, InsertSite, KeptAlignment, Layout, Plan, PlanOptions};
use crate::relocate::relocate;
use crate::report::Glob;
use crate::scan::{scan, PatchSite, TableSource};
use crate::timing::phase;

use super::options::Writer;
use super::stats::RewriteStats;
use super::Unverified;

/// Slot sizes `--insert` can give: one 4-byte nop, or two.
pub const INSERT_SLOT_SIZES: [u32; 2] = [4, 8];

/// Names (exact, or a prefix ending in `*`) of functions that never get a slot.
const SKIPPED_NAMES: &[&str] = &[
    "_start",
    "setjmp",
    "_setjmp",
    "__setjmp",
    "sigsetjmp",
    "__sigsetjmp",
    "longjmp",
    "_longjmp",
    "__longjmp",
    "siglongjmp",
    "__longjmp_chk",
    "vfork",
    "__vfork",
    "clone",
    "__clone",
    "__clone3",
    "__clone_internal",
    "memcpy",
    "memmove",
    "memset",
    "memcmp",
    "bcmp",
    "padtrim_*",
    "_ZN15padtrim_runtime*",
];

/// Sections whose functions never get a slot.
const SKIPPED_SECTIONS: &[&str] = &[".init", ".fini", ".plt", ".iplt"];

/// What `rewrite --insert` is asked to do.
#[derive(Debug, Clone)]
pub struct InsertOptions {
    /// Slot bytes inserted at each selected entry (see [`INSERT_SLOT_SIZES`]).
    pub slot: u32,
    /// Globs (`*`, `?`) naming the functions to give slots; empty: every function.
    pub functions: Vec<String>,
    /// How the file is written.
    pub writer: Writer,
    /// Prove the output right before handing it back.
    pub verify: bool,
}

impl Default for InsertOptions {
    fn default() -> Self {
        InsertOptions {
            slot: 4,
            functions: Vec::new(),
            writer: Writer::Patched,
            verify: true,
        }
    }
}

impl InsertOptions {
    /// Refuses a slot size `--insert` cannot give.
    pub fn validate(&self) -> Result<()> {
        if !INSERT_SLOT_SIZES.contains(&self.slot) {
            return Err(Error::Unsupported(format!(
                "--insert --slot {}: inserted slots are 4 or 8 bytes",
                self.slot
            )));
        }
        Ok(())
    }
}

/// The functions an insertion gives slots to, and those it skips on purpose.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// One per entry address, sorted.
    pub sites: Vec<InsertSite>,
    /// Functions matched but skipped (name, why), in symbol order.
    pub skipped: Vec<(String, &'static str)>,
}

/// Why a function named `name` in section `section` never gets a slot, if it does not.
fn skip_reason(file: &ElfFile<'_>, name: &str, section: &str, addr: u64) -> Option<&'static str> {
    if addr == file.entry && file.kind.is_linked() {
        return Some("the ELF entry point runs before the runtime can");
    }
    if SKIPPED_SECTIONS.contains(&section) {
        return Some("in .init, .fini or the PLT");
    }
    if name.ends_with("context") {
        return Some("switches contexts: must not gain a call");
    }
    let named = SKIPPED_NAMES.iter().any(|s| match s.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == *s,
    });
    named.then_some(match name {
        "_start" => "the ELF entry point runs before the runtime can",
        n if n.contains("padtrim_") => "the runtime's own code",
        n if n.starts_with("mem") || n == "bcmp" => "called by the runtime",
        _ => "returns twice or switches stacks: must not gain a call",
    })
}

/// The functions of `file` that get a slot: `STT_FUNC` symbols with a size in an allocated
/// executable section, matching one of `globs` (all when empty), minus those skipped; one per
/// address (an alias skipped by name skips its address). Functions in `padded` (sorted
/// entries of functions that have a pad) are left out: their pads become their slots.
pub fn select_functions(
    file: &ElfFile<'_>,
    globs: &[String],
    slot: u32,
    padded: &[u64],
) -> Selection {
    use std::collections::BTreeMap;
    let far_rows = frames_too_tight(file, slot);
    let far_object_rows = object_frames_too_tight(file, slot);
    // The same shell globs as `report --functions`.
    let globs: Vec<Glob> = globs.iter().map(|g| Glob::new(g)).collect();
    // By (section, entry): in an object every section starts at 0.
    let mut by_addr: BTreeMap<(usize, u64), InsertSite> = BTreeMap::new();
    let mut skipped_addr: std::collections::BTreeSet<(usize, u64)> = Default::default();
    let mut skipped = Vec::new();
    for s in &file.symbols {
        if s.kind != object::elf::STT_FUNC.0 || s.size == 0 {
            continue;
        }
        let Some(sec) = s.section().and_then(|i| file.sections.get(i)) else {
            continue;
        };
        if !sec.is_exec() || !sec.is_alloc() || s.value < sec.addr || s.value >= sec.end() {
            continue;
        }
        if padded.binary_search(&s.value).is_ok()
            || (!globs.is_empty() && !globs.iter().any(|g| g.matches(s.name)))
        {
            continue;
        }
        let why = skip_reason(file, s.name, sec.name, s.value).or_else(|| {
            (far_rows.contains(&s.value) || far_object_rows.contains(&(sec.index, s.value)))
                .then_some("its first .eh_frame row is too far in for its advance to take the slot")
        });
        if let Some(why) = why {
            skipped.push((s.name.to_string(), why));
            skipped_addr.insert((sec.index, s.value));
            continue;
        }
        let end = s.value.saturating_add(s.size).min(sec.end());
        let site = by_addr.entry((sec.index, s.value)).or_insert(InsertSite {
            section: sec.index,
            func: s.value,
            end,
        });
        site.end = site.end.max(end);
    }
    for a in &skipped_addr {
        by_addr.remove(a);
    }
    Selection {
        sites: by_addr.into_values().collect(),
        skipped,
    }
}

/// Function entries with alignment nops in front of them (from the end of the function
/// before): a linked file keeps no `R_RISCV_ALIGN`, so the alignment those nops made (the
/// smallest power of two above their length that the entry has) is kept by the plan.
pub fn kept_alignment(file: &ElfFile<'_>) -> Vec<KeptAlignment> {
    let mut funcs: Vec<(usize, u64, u64)> = file
        .symbols
        .iter()
        .filter(|s| s.kind == object::elf::STT_FUNC.0 && s.size > 0)
        .filter_map(|s| Some((s.section()?, s.value, s.value.saturating_add(s.size))))
        .filter(|(sec, _, _)| {
            file.sections
                .get(*sec)
                .is_some_and(|x| x.is_exec() && x.is_alloc())
        })
        .collect();
    funcs.sort_unstable();
    let mut out = Vec::new();
    for w in funcs.windows(2) {
        let ((sa, _, end), (sb, at, _)) = (w[0], w[1]);
        if sa != sb || end >= at || at - end >= 64 {
            continue;
        }
        let sec = &file.sections[sb];
        let Ok(data) = file.section_data(sec) else {
            continue;
        };
        let (lo, hi) = ((end - sec.addr) as usize, (at - sec.addr) as usize);
        let Some(gap) = data.get(lo..hi) else {
            continue;
        };
        if !all_nops(gap) {
            continue;
        }
        let align = (at - end + 1).next_power_of_two();
        if at % align == 0 && align > 4 {
            out.push(KeptAlignment {
                section: sb,
                at,
                align,
                pad_start: end,
            });
        }
    }
    out
}

/// Function entries whose FDE's first CFA row is an advance from the entry that could not
/// grow by `slot` bytes in its operand (a 6-bit `DW_CFA_advance_loc` 60 bytes in, say).
fn frames_too_tight(file: &ElfFile<'_>, slot: u32) -> std::collections::BTreeSet<u64> {
    let mut out = std::collections::BTreeSet::new();
    let Some(sec) = file
        .sections
        .iter()
        .find(|s| s.name == ".eh_frame" && s.is_alloc() && !s.is_nobits())
    else {
        return out;
    };
    let Ok(data) = file.section_data(sec) else {
        return out;
    };
    for (_, fde) in crate::verify::cfi::fdes(data, sec.addr, file.ptr_size()) {
        let Some(fde) = fde else { continue };
        let Some(&(loc, a, b)) = fde.rows.first() else {
            continue;
        };
        if loc == fde.start || fde.code_align == 0 {
            continue;
        }
        // DW_CFA_advance_loc holds 6 bits in its opcode (the operand range is the opcode);
        // advance_loc1/2/4 (0x02..0x04) follow their opcode.
        let op_before = a.checked_sub(1).and_then(|i| data.get(i)).copied();
        let max = match (b - a, op_before) {
            (1, Some(0x02)) => 0xff,
            (1, _) => 0x3f,
            (2, _) => 0xffff,
            _ => u64::from(u32::MAX),
        };
        let units = loc.wrapping_sub(fde.start) / fde.code_align + u64::from(slot) / fde.code_align;
        if units > max {
            out.insert(fde.start);
        }
    }
    out
}

/// In an object: (section, entry) of functions whose call frame information has an advance
/// from the entry, set by the linker (`R_RISCV_SET6`/`8`/`16` minus a `SUB` of the same
/// width), that a `slot`-byte slot would push out of its field: the linker would write it
/// truncated, silently (the assembler chose the width for the distance it saw).
fn object_frames_too_tight(
    file: &ElfFile<'_>,
    slot: u32,
) -> std::collections::BTreeSet<(usize, u64)> {
    use object::elf::{
        R_RISCV_SET16, R_RISCV_SET6, R_RISCV_SET8, R_RISCV_SUB16, R_RISCV_SUB6, R_RISCV_SUB8,
    };
    let mut out = std::collections::BTreeSet::new();
    if file.kind != FileKind::Relocatable {
        return out;
    }
    let frames = |t: &crate::elf::Section<'_>| t.name == ".eh_frame" || t.name == ".debug_frame";
    let Ok(relocs) = file.relocation_sections_where(|rs| file.reloc_applies_to(rs, frames)) else {
        return out;
    };
    let target = |r: &crate::elf::Reloc| {
        let s = file.symbols.get(r.sym as usize)?;
        Some((s.section()?, s.value.wrapping_add(r.addend as u64)))
    };
    for rs in &relocs {
        // A pair is a SET and a SUB at one offset, the SET first.
        for w in rs.relocs.windows(2) {
            let (set, sub) = (&w[0], &w[1]);
            let max: u64 = match (set.r_type, sub.r_type) {
                (a, b) if a == R_RISCV_SET6.0 && b == R_RISCV_SUB6.0 => 0x3f,
                (a, b) if a == R_RISCV_SET8.0 && b == R_RISCV_SUB8.0 => 0xff,
                (a, b) if a == R_RISCV_SET16.0 && b == R_RISCV_SUB16.0 => 0xffff,
                _ => continue,
            };
            if set.offset != sub.offset {
                continue;
            }
            let (Some((se, end)), Some((ss, start))) = (target(set), target(sub)) else {
                continue;
            };
            if se == ss && end.wrapping_sub(start).saturating_add(u64::from(slot)) > max {
                out.insert((ss, start));
            }
        }
    }
    out
}

/// True if `bytes` are whole `nop`s and `c.nop`s.
fn all_nops(bytes: &[u8]) -> bool {
    let mut at = 0;
    while at < bytes.len() {
        if bytes.get(at..at + 2) == Some(&[0x01, 0x00]) {
            at += 2;
        } else if bytes.get(at..at + 4) == Some(&[0x13, 0x00, 0x00, 0x00]) {
            at += 4;
        } else {
            return false;
        }
    }
    true
}

/// What `--insert` would cost, projected from the symbols alone (`report --insert`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct InsertProjection {
    /// Functions that would get a slot.
    pub sites: usize,
    /// Functions matched but skipped.
    pub skipped: usize,
    /// Slot bytes inserted.
    pub slot_bytes: u64,
    /// Bytes of alignment padding in front of slots and aligned entries, net (simulated per
    /// section as the plan walks it; negative when aligned entries' nops shrink).
    pub alignment: i64,
    /// Bytes added in all (slots plus alignment).
    pub bytes_added: u64,
    /// Bytes of code before.
    pub text_size: u64,
    /// `__mcount_loc` bytes added.
    pub table_bytes: u64,
    /// Pads the file already has, cut to slots alongside (a mixed input; 0 otherwise).
    pub compacted: usize,
    /// Pad bytes those cuts free (pad minus slot, before alignment; 0 otherwise).
    pub pad_bytes_freed: u64,
}

/// Projects `--insert --slot slot` over `file` (functions matching `globs`); `sites` are the
/// pads the file already has (a mixed input), cut to slots alongside.
pub fn project_insert(
    file: &ElfFile<'_>,
    globs: &[String],
    slot: u32,
    sites: &[PatchSite],
) -> InsertProjection {
    let padded = padded_functions(sites);
    let sel = select_functions(file, globs, slot, &padded);
    // The plan's walk, simulated: per section in address order, kept alignment (its nops
    // resized) before the slot at the same entry, then the slot's own 4-byte alignment.
    let mut events: Vec<(usize, u64, u8, u64, u64)> = kept_alignment(file)
        .into_iter()
        .map(|k| (k.section, k.pad_start, 0, k.align, k.at - k.pad_start))
        .collect();
    events.extend(sel.sites.iter().map(|f| (f.section, f.func, 1, 4, 0)));
    events.sort_unstable();
    let mut added = 0i64;
    let mut section = usize::MAX;
    let mut shift = 0i64;
    for (sec, at, kind, align, old_pad) in events {
        if sec != section {
            section = sec;
            shift = 0;
        }
        let here = (at as i64).wrapping_add(shift);
        let need = here.wrapping_neg().rem_euclid(align as i64);
        let grow = if kind == 0 {
            need - old_pad as i64
        } else {
            need + i64::from(slot)
        };
        shift += grow;
        added += grow;
    }
    let slot_bytes = sel.sites.len() as u64 * u64::from(slot);
    let bytes_added = added.max(0) as u64;
    InsertProjection {
        sites: sel.sites.len(),
        skipped: sel.skipped.len(),
        slot_bytes,
        alignment: bytes_added as i64 - slot_bytes as i64,
        bytes_added,
        text_size: super::linked::text_size(file),
        table_bytes: (sel.sites.len() + sites.len()) as u64 * file.ptr_size() as u64,
        compacted: sites.len(),
        pad_bytes_freed: sites
            .iter()
            .map(|s| u64::from(s.pad_bytes.saturating_sub(slot)))
            .sum(),
    }
}

/// The sorted function entries of `sites` (the functions that keep their pads as slots).
fn padded_functions(sites: &[PatchSite]) -> Vec<u64> {
    let mut padded: Vec<u64> = sites.iter().map(|s| s.func_addr).collect();
    padded.sort_unstable();
    padded.dedup();
    padded
}

/// [`project_insert`] over the ELF file `bytes` (`report --insert`): refuses what
/// `rewrite --insert` would refuse for its kind, its pads or its slot size.
pub fn project_insert_bytes(bytes: &[u8], globs: &[String], slot: u32) -> Result<InsertProjection> {
    InsertOptions {
        slot,
        ..InsertOptions::default()
    }
    .validate()?;
    let file = elf::parse(bytes)?;
    let relocs = file.relocation_sections()?;
    refuse_input(&file, &relocs)?;
    let scanned = scan(&file)?;
    refuse_slotted(&file, &scanned)?;
    let p = project_insert(&file, globs, slot, &scanned.sites);
    if p.sites == 0 && p.compacted > 0 {
        return Err(Error::refused(ALL_PADDED));
    }
    Ok(p)
}

/// Why a file whose every selected function has a pad is refused.
const ALL_PADDED: &str = "every function (matching --functions, not skipped) already has a pad: \
                          nothing to insert; use `padtrim rewrite` without --insert to resize \
                          the pads";

/// Refuses a file that already has slots (rewritten or inserted before), or whose pads a
/// rewrite could not use. Pads themselves are welcome: they are cut to slots alongside.
fn refuse_slotted(file: &ElfFile<'_>, scanned: &crate::scan::Scan) -> Result<()> {
    if scanned.source == TableSource::InsertedMcountLoc {
        return Err(Error::refused(format!(
            "the file already has a __mcount_loc table ({} slots inserted before): nothing to \
             insert; insert into the original to choose other slots",
            scanned.sites.len()
        )));
    }
    if file
        .sections
        .iter()
        .any(|s| s.name == padtrim_abi::MCOUNT_SECTION)
    {
        return Err(Error::refused(
            "the file already has a __mcount_loc table (rewritten or slots inserted before): \
             its functions have their slots; insert into the original instead",
        ));
    }
    if scanned.source != TableSource::None && !scanned.sites.is_empty() {
        crate::rewrite::policy::require_usable_table(scanned)?;
    }
    Ok(())
}

/// Refuses what `--insert` cannot take, with the reason.
fn refuse_input(file: &ElfFile<'_>, relocs: &[RelocSection]) -> Result<()> {
    match file.kind {
        FileKind::Relocatable if file.section_by_name(".modinfo").is_some() => {
            return Err(Error::Unsupported(
                "--insert on a kernel module: the kernel's ftrace patches the pads its own \
                 build gives (build the module with the kernel's ftrace flags, then `padtrim \
                 rewrite` it)"
                    .into(),
            ))
        }
        // C++ exception tables count call sites from the function's start, and the assembler
        // leaves some of those offsets as plain constants that a slot would shift: this
        // rewrite does not re-encode them yet (the linked program's tables it does).
        FileKind::Relocatable if file.section_by_name(".gcc_except_table").is_some() => {
            return Err(Error::Unsupported(
                "--insert on an object with C++ exception tables (.gcc_except_table) is not \
                 supported yet: insert into the linked program (-Wl,-q) instead"
                    .into(),
            ))
        }
        // An object's code refers to itself through relocations (or the assembler resolved
        // the distance, which the rewrite decodes): there is nothing more to require.
        FileKind::Relocatable => return Ok(()),
        FileKind::Vmlinux => {
            return Err(Error::Unsupported(
                "--insert on a vmlinux: a kernel's code cannot grow in place (build it with \
                 -fpatchable-function-entry instead)"
                    .into(),
            ))
        }
        _ => {}
    }
    let has_static = relocs.iter().any(|r| {
        !file.sections[r.index].is_alloc()
            && file
                .sections
                .get(r.target)
                .is_some_and(|t| t.is_exec() && t.is_alloc())
    });
    if !has_static {
        return Err(Error::refused(
            "--insert needs the link's relocations to move code: the file has none for its \
             code; link with -Wl,-q (--emit-relocs)",
        ));
    }
    Ok(())
}

/// Stages 1 to 3 of an insertion: the new image and what was done, unverified.
pub fn prepare_insert(input: &[u8], opts: &InsertOptions) -> Result<Unverified> {
    let (bytes, stats) = phase("rewrite (total)", || insert_image(input, opts))?;
    Ok(Unverified { bytes, stats })
}

/// Inserts slots into `input` as `opts` asks and (unless told not to) proves the result.
pub fn insert(input: &[u8], opts: &InsertOptions) -> Result<super::Rewritten> {
    let pending = prepare_insert(input, opts)?;
    if opts.verify {
        pending.verify(input)
    } else {
        pending.skip_verification()
    }
}

fn insert_image(data: &[u8], opts: &InsertOptions) -> Result<(Vec<u8>, RewriteStats)> {
    opts.validate()?;
    let file = phase("parse", || elf::parse(data))?;
    let (scanned, relocs) = rayon::join(
        || phase("scan", || scan(&file)),
        || phase("relocations", || file.relocation_sections()),
    );
    let relocs = relocs?;
    refuse_input(&file, &relocs)?;
    let scanned = scanned?;
    refuse_slotted(&file, &scanned)?;
    crate::rewrite::policy::refuse_sizes_past_the_top(&file)?;
    // The pads the file has (a mixed input) are cut as a rewrite with --pre 0 cuts them.
    let sites = &scanned.sites;
    crate::rewrite::policy::require_whole_pre(
        &scanned,
        &crate::rewrite::RewriteOptions {
            slot: opts.slot,
            pre: 0,
            ..Default::default()
        },
    )?;
    if file.kind == FileKind::Relocatable && !sites.is_empty() {
        return Err(Error::refused(format!(
            "the object already has pads ({} functions): use `padtrim rewrite` to resize them",
            sites.len()
        )));
    }
    let selection = select_functions(&file, &opts.functions, opts.slot, &padded_functions(sites));
    if selection.sites.is_empty() {
        return Err(Error::refused(if sites.is_empty() {
            "no function to give a slot to (STT_FUNC symbols with a size, matching --functions)"
        } else {
            ALL_PADDED
        }));
    }
    if file.kind == FileKind::Relocatable {
        return insert_object(&file, &scanned, &selection, opts);
    }
    let mut stats = RewriteStats::unchanged(
        selection.sites.len(),
        data.len() as u64,
        super::linked::text_size(&file),
        Layout::Pack,
        opts.slot,
    );
    stats.compacted = sites.len();
    let table_bytes = (selection.sites.len() + sites.len()) as u64 * file.ptr_size() as u64;
    let options = PlanOptions {
        slot: opts.slot,
        pre: 0,
        layout: Layout::Pack,
        table_bytes,
        trampoline: None,
        grow: true,
    };
    let kept = kept_alignment(&file);
    let plan = phase("plan", || {
        plan_insert(&file, sites, &selection.sites, &kept, &relocs, options)
    })?;
    let mut fixed = phase("relocate", || relocate(&file, sites, &plan, &relocs))?;
    let place = plan
        .table
        .ok_or_else(|| Error::refused("no place for the __mcount_loc table"))?;
    let table = tables::mcount_table(
        &file,
        &plan,
        &mut fixed,
        place,
        table_bytes,
        None,
        Layout::Pack,
        opts.slot,
    )?;
    let record = tables::entries_record(&file, &plan);
    let (out, writer, fallback) = emit(&file, &plan, &mut fixed, (table, record), opts.writer)?;
    super::linked::complete_stats(&mut stats, &file, &plan, &fixed, out.len() as u64);
    stats.table = true;
    stats.writer = Some(writer);
    stats.writer_fallback = fallback;
    Ok((out, stats))
}

/// Inserts the slots of `selection` into the relocatable object `file` (no pads): the
/// object rewrite's edit → symbols → relocations → write pipeline, with new
/// `__patchable_function_entries` tables the linker gathers as it gathers the compiler's.
fn insert_object(
    file: &ElfFile<'_>,
    scanned: &crate::scan::Scan,
    selection: &Selection,
    opts: &InsertOptions,
) -> Result<(Vec<u8>, RewriteStats)> {
    let mut inserts = super::object::Inserts::new();
    for site in &selection.sites {
        inserts
            .entry(site.section)
            .or_default()
            .push((site.func, site.end));
    }
    let rewrite = crate::rewrite::RewriteOptions {
        slot: opts.slot,
        pre: 0,
        ..Default::default()
    };
    let (out, mut stats) = phase("rewrite object", || {
        super::object::edit_relocatable(file, scanned, &inserts, rewrite)
    })?;
    stats.sites = selection.sites.len();
    Ok((out, stats))
}

/// The new sections of an insertion: `__mcount_loc` and `__patchable_function_entries`.
type Added = (crate::emit::NewSection, crate::emit::NewRecord);

/// Writes the file: patched in place when it can, else through the builder.
fn emit(
    file: &ElfFile<'_>,
    plan: &Plan,
    fixed: &mut crate::relocate::Fixed,
    added: Added,
    writer: Writer,
) -> Result<(Vec<u8>, Writer, Option<String>)> {
    use crate::emit::{builder, patched};
    if writer == Writer::Patched {
        match patched::Source::of(file) {
            Ok(src) => {
                match phase("emit (patched)", || {
                    patched::emit_patched(file, &src, plan, fixed, Some(&added.0), Some(&added.1))
                }) {
                    Ok(out) => return Ok((out, Writer::Patched, None)),
                    Err(why) => return build(file, plan, fixed, added, Some(why.to_string())),
                }
            }
            Err(why) => return build(file, plan, fixed, added, Some(why.to_string())),
        }
    }
    fn build(
        file: &ElfFile<'_>,
        plan: &Plan,
        fixed: &mut crate::relocate::Fixed,
        (table, record): Added,
        why: Option<String>,
    ) -> Result<(Vec<u8>, Writer, Option<String>)> {
        let b = builder::read_builder(file)?;
        let b = phase("emit", || {
            builder::prepare(file, b, plan, fixed, Some(table), Some(record))
        })?;
        let out = phase("emit: write", || builder::write(file, b))?;
        Ok((out, Writer::Builder, why))
    }
    build(file, plan, fixed, added, None)
}
