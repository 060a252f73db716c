//! What a rewrite refuses before it plans anything: inputs it cannot rewrite safely, and
//! options the input cannot honour. Each check names what is wrong and what to do.

use crate::elf::{ElfFile, FileKind, RelocSection};
use crate::error::{Error, Result};
use crate::plan::Layout;
use crate::scan::ftrace::{self, FtraceLayout, KernelFtrace, OPS_LITERAL_BYTES};
use crate::scan::{NopKind, Scan, TableSource};

use super::options::RewriteOptions;

/// The scan found a usable table: present, and every entry usable.
pub fn require_usable_table(scan: &Scan) -> Result<()> {
    if scan.source == TableSource::None {
        return Err(Error::Unsupported(
            "no __patchable_function_entries table: nothing to rewrite".into(),
        ));
    }
    if scan.source == TableSource::InsertedMcountLoc {
        return Err(Error::refused(
            "its slots were inserted by `padtrim rewrite --insert` (its table is padtrim's \
             __mcount_loc, not the compiler's): rewrite the original instead",
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

/// A kernel's pads hold its ftrace patch: the slot must take the call its layout writes
/// (`--force` allows less), and a CALL_OPS kernel (Linux 6.16+) keeps the 8 bytes before
/// each entry, 8-byte aligned, for its `ftrace_ops` pointer (nothing allows less: the
/// kernel would write the pointer over code). Also for kernel modules, except that a module
/// takes `--slot 4` with islands of its own for padtrim's kernel patch series. The layout found,
/// for [`require_literals_kept`]; `None` for a file that is not a kernel.
pub fn require_kernel_layout(
    file: &ElfFile<'_>,
    scan: &Scan,
    opts: &RewriteOptions,
) -> Result<Option<KernelFtrace>> {
    let Some(kernel) = ftrace::detect(file, scan) else {
        return Ok(None);
    };
    let layout = kernel.ftrace_layout;
    if layout == FtraceLayout::CallOps {
        let why = "this kernel keeps a pointer to each site's ftrace_ops in the 8 bytes before \
                   each function, 8-byte aligned (DYNAMIC_FTRACE_WITH_CALL_OPS, Linux 6.16+)";
        if let Some(first) = kernel
            .first_problem
            .as_ref()
            .filter(|_| kernel.misplaced_literals > 0)
        {
            return Err(Error::refused(format!(
                "{why}, but {} of its sites do not have them (first: {first}); check the input \
                 with `padtrim report`",
                kernel.misplaced_literals
            )));
        }
        if opts.pre < OPS_LITERAL_BYTES {
            return Err(Error::refused(format!(
                "{why}; --pre {} would cut them. Use --pre 8 (and --slot 8)",
                opts.pre
            )));
        }
        if file.kind == FileKind::Vmlinux && opts.layout == Some(Layout::Pack) {
            return Err(Error::refused(format!(
                "{why}; --layout pack would move sections off the addresses their alignment was \
                 laid out for. Use --layout in-place (the default for a kernel)"
            )));
        }
    }
    let min = layout.min_slot_bytes();
    // A module at 4-byte slots gets its own islands (rewrite/object/island.rs), which only a
    // kernel with padtrim's patch series loads (ftrace_jal_caller is unknown to others).
    let module_islands =
        opts.slot == 4 && kernel.image == "module" && layout != FtraceLayout::CallOps && min <= 8;
    if opts.slot < min && !opts.force && !module_islands {
        // 4-byte slots need the kernel to patch a jal: padtrim's patch series does.
        let hint = match (opts.slot, kernel.image.as_str()) {
            (4, _) => {
                " (a vmlinux built with padtrim's patch series, runtime/kernel/, takes \
                       --slot 4)"
            }
            _ => "",
        };
        return Err(Error::refused(format!(
            "a {}-byte slot is smaller than the kernel's ftrace patch ({min} bytes, {} layout: \
             {}); the kernel would overwrite the code after the slot. Use --slot {min}, or \
             --force if this kernel patches fewer bytes{hint}",
            opts.slot,
            layout.name(),
            layout.describe()
        )));
    }
    Ok(Some(kernel))
}

/// A CALL_OPS kernel's rewrite kept every `ftrace_ops` pointer's room: the output (`out`)
/// is scanned again, and every pad must still start 8 bytes before its function on an
/// 8-byte boundary. The planner aligns functions as the input does, so this holds when the
/// input's functions are 8-byte aligned; when it does not, nothing is written.
pub fn require_literals_kept(kernel: Option<&KernelFtrace>, out: &[u8]) -> Result<()> {
    if kernel.map(|k| k.ftrace_layout) != Some(FtraceLayout::CallOps) {
        return Ok(());
    }
    let file = read_back(out)?;
    let scan = crate::scan::scan(&file)?;
    let misplaced = ftrace::misplaced_literals(&file, &scan);
    match misplaced.first() {
        None => Ok(()),
        Some(s) => Err(Error::refused(format!(
            "the rewrite would leave {} of {} sites without their 8-byte aligned \
             ftrace_ops pointer room before the function (first: the function at {:#x}, pad at \
             {:#x}); the kernel (DYNAMIC_FTRACE_WITH_CALL_OPS) would write the pointer over \
             code. Nothing written",
            misplaced.len(),
            scan.sites.len(),
            s.func_addr,
            s.entry
        ))),
    }
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

/// True when a rewrite of the linked program `file` with `opts` would add a `__mcount_loc`
/// table it does not have yet (a program, not a kernel, with slots of at least 4 bytes).
pub fn wants_table(file: &ElfFile<'_>, scan: &Scan, opts: &RewriteOptions) -> bool {
    opts.slot >= 4
        && file.kind != crate::elf::FileKind::Vmlinux
        && !scan.sites.is_empty()
        && file.section_by_name(padtrim_abi::MCOUNT_SECTION).is_none()
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

/// Parses a rewrite's output as any input is parsed; an error refuses the rewrite.
pub fn read_back(out: &[u8]) -> Result<ElfFile<'_>> {
    crate::elf::parse(out).map_err(|e| {
        Error::refused(format!(
            "the rewritten file would be malformed ({e}); nothing written"
        ))
    })
}
