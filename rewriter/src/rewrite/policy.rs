//! What a rewrite refuses before it plans anything: inputs it cannot rewrite safely, and
//! options the input cannot honour. Each check names what is wrong and what to do.

use crate::elf::{ElfFile, FileKind, RelocSection};
use crate::error::{Error, Result};
use crate::scan::{NopKind, Scan, TableSource};

use super::RewriteOptions;

/// The scan found a usable table: present, and every entry usable.
pub fn require_usable_table(scan: &Scan) -> Result<()> {
    if scan.source == TableSource::None {
        return Err(Error::Unsupported(
            "no __patchable_function_entries table: nothing to rewrite".into(),
        ));
    }
    if let Some(p) = scan.problems.first() {
        return Err(Error::refused(format!(
            "{} unusable table entries (first: {:#x} {}); check the input with `padtrim report`",
            scan.problems.len(),
            p.address,
            p.problem
        )));
    }
    Ok(())
}

/// `--pre` keeps whole instructions.
pub fn require_whole_pre(scan: &Scan, opts: &RewriteOptions) -> Result<()> {
    if let Some(s) = scan
        .sites
        .iter()
        .find(|s| s.nop_kind == NopKind::Nop && opts.pre.min(s.pre_bytes) % 4 != 0)
    {
        return Err(Error::refused(format!(
            "--pre {} would keep half an instruction: the pads are 4-byte nops (function at \
             {:#x}); use a multiple of 4",
            opts.pre, s.func_addr
        )));
    }
    Ok(())
}

/// A kernel's slots hold its ftrace patch.
pub fn require_kernel_slot(file: &ElfFile<'_>, opts: &RewriteOptions) -> Result<()> {
    if file.kind == FileKind::Vmlinux && opts.slot < 8 && !opts.force {
        return Err(Error::refused(format!(
            "a {}-byte slot is smaller than the kernel's ftrace patch (8 bytes: auipc t0 + jalr t0, \
             MCOUNT_INSN_SIZE in Linux 6.1); the kernel would overwrite the code after the slot. \
             Use --slot 8, or --force if this kernel patches fewer bytes",
            opts.slot
        )));
    }
    Ok(())
}

/// True when the input already has slots of the asked size: the output is the input, byte
/// for byte.
pub fn already_done(scan: &Scan, opts: &RewriteOptions) -> bool {
    scan.sites.iter().all(|s| {
        s.pad_bytes - s.pre_bytes <= opts.slot.max(if opts.slot == 4 { 4 } else { 0 })
            && s.pre_bytes <= opts.pre
    }) && (opts.slot != 4
        || scan
            .sites
            .iter()
            .all(|s| s.func_addr % 4 == 0 && s.nop_kind != NopKind::CNop))
}

/// A symbol of the image whose size runs past the top of the address space has no new size
/// that would be true (a corrupt `st_size`): refused, naming the symbol, rather than written
/// with a size that only the verification would catch.
pub fn refuse_sizes_past_the_top(file: &ElfFile<'_>) -> Result<()> {
    let top = 1u128 << (8 * file.ptr_size());
    let past = file.symbols.iter().find(|s| {
        s.section()
            .is_some_and(|i| file.sections.get(i).is_some_and(|x| x.is_alloc()))
            && u128::from(s.value) + u128::from(s.size) > top
    });
    match past {
        Some(s) => Err(Error::refused(format!(
            "symbol {} at {:#x} claims {:#x} bytes, past the top of the address space",
            s.name, s.value, s.size
        ))),
        None => Ok(()),
    }
}

/// Linked inputs must carry their relocations for every executable section with pads.
pub fn require_emit_relocs(file: &ElfFile<'_>, scan: &Scan, relocs: &[RelocSection]) -> Result<()> {
    for s in &scan.sites {
        let has = relocs
            .iter()
            .any(|r| r.target == s.section && !file.sections[r.index].is_alloc());
        if !has {
            return Err(Error::refused(format!(
                "section {} has no relocations: link with -Wl,--emit-relocs (-q)",
                file.sections[s.section].name
            )));
        }
    }
    Ok(())
}
