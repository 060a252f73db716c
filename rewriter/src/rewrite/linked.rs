//! Rewriting a linked file (executable, shared object, vmlinux): plan the new layout (with
//! room for the `__mcount_loc` table when it fits), re-resolve every reference, add the
//! tables, write the file, and say what was done.

use crate::elf::{reloc_name, ElfFile, FileKind, RelocSection};
use crate::emit::tables;
use crate::error::{Error, Result};
use crate::plan::{plan, Layout, Plan, PlanOptions};
use crate::relocate::{relocate, Fixed};
use crate::scan::Scan;
use crate::timing::phase;

use padtrim_abi::TRAMPOLINE_SYMBOL;

use super::options::{RewriteOptions, Writer};
use super::stats::RewriteStats;

/// The layout a linked file gets unless one is asked for: in-place for a vmlinux (the
/// kernel's tables and the boot code expect every section where it was), pack otherwise.
pub fn default_layout(file: &ElfFile<'_>, opts: &RewriteOptions) -> Layout {
    opts.layout.unwrap_or(if file.kind == FileKind::Vmlinux {
        Layout::InPlace
    } else {
        Layout::Pack
    })
}

/// Bytes of code in the file's executable sections.
pub fn text_size(file: &ElfFile<'_>) -> u64 {
    file.sections
        .iter()
        .filter(|s| s.is_exec() && s.is_alloc())
        .map(|s| s.size)
        .sum()
}

/// The table the plan makes room for: where the runtime's trampoline is (islands are
/// planned for slots out of its reach), and how many bytes the table takes.
struct TableRequest {
    /// Whether the output gets an `__mcount_loc` table at all.
    wanted: bool,
    /// Address of the runtime's trampoline, when the program carries it.
    trampoline: Option<u64>,
    /// Bytes reserved for the table: one pointer per slot and per possible island.
    bytes: u64,
}

impl TableRequest {
    fn of(file: &ElfFile<'_>, scan: &Scan, opts: &RewriteOptions) -> TableRequest {
        let wanted = opts.slot >= 4 && file.kind != FileKind::Vmlinux;
        // Programs that carry the runtime get trampoline islands where slots are out of reach
        // of its trampoline; their addresses follow the slots in the table.
        // A patched kernel's islands reach its ftrace_jal_caller (no table of ours).
        let trampoline = file
            .symbol_by_name(TRAMPOLINE_SYMBOL)
            .filter(|s| wanted && opts.slot >= 4 && s.section().is_some())
            .map(|s| s.value)
            .or_else(|| super::kernel_slot::jal_caller(file, opts));
        let island_reserve = trampoline
            .filter(|_| wanted)
            .map_or(0, |t| tables::island_bound(file, t));
        let bytes = if wanted {
            (scan.sites.len() as u64 + island_reserve) * file.ptr_size() as u64
        } else {
            0
        };
        TableRequest {
            wanted,
            trampoline,
            bytes,
        }
    }
}

/// Plans the new layout. Only the in-place layout can lack room for the table (it keeps
/// every address, and the freed bytes may be too few): the file is then planned without it,
/// and the flag says so. The pack layout grows the code segment for it (see the planner).
fn plan_with_table(
    file: &ElfFile<'_>,
    scan: &Scan,
    relocs: &[RelocSection],
    options: PlanOptions,
    table: &TableRequest,
) -> Result<(Plan, bool)> {
    match phase("plan", || plan(file, &scan.sites, relocs, options)) {
        Err(Error::NoRoomForTable(_)) if table.wanted => {
            let bare = PlanOptions {
                table_bytes: 0,
                trampoline: None,
                ..options
            };
            Ok((plan(file, &scan.sites, relocs, bare)?, false))
        }
        other => Ok((other?, table.wanted)),
    }
}

/// Rewrites the linked file `file` (already scanned and checked by the policy), whose
/// relocations are `relocs`; `stats` holds the unchanged-input numbers to complete.
pub fn rewrite_linked(
    mut file: ElfFile<'_>,
    mut scan: Scan,
    mut relocs: Vec<RelocSection>,
    opts: &RewriteOptions,
    mut stats: RewriteStats,
) -> Result<(Vec<u8>, RewriteStats)> {
    let layout = stats.layout;
    let request = TableRequest::of(&file, &scan, opts);
    let options = PlanOptions {
        slot: opts.slot,
        pre: opts.pre,
        layout,
        table_bytes: request.bytes,
        trampoline: request.trampoline,
        grow: false,
    };
    let (plan, with_table) = plan_with_table(&file, &scan, &relocs, options, &request)?;
    // A linked file is written by patching its own bytes into place (see emit::patched);
    // only what that cannot express goes through `object`'s builder. Reading the original
    // into the builder needs nothing from the relocation pass: the two run side by side.
    // `Err` carries why the patched writer cannot take this file (`None`: the builder was
    // asked for by name).
    let source = match opts.writer {
        Writer::Patched => crate::emit::patched::Source::of(&file).map_err(Some),
        Writer::Builder => Err(None),
    };
    let (fixed, builder) = rayon::join(
        || phase("relocate", || relocate(&file, &scan.sites, &plan, &relocs)),
        || {
            source
                .is_err()
                .then(|| crate::emit::builder::read_builder(&file))
        },
    );
    let (mut fixed, builder) = (fixed?, builder.transpose()?);

    let table = match (with_table, plan.table) {
        (true, Some(place)) => Some(tables::mcount_table(
            &file,
            &plan,
            &mut fixed,
            place,
            request.bytes,
            request.trampoline,
            layout,
            opts.slot,
        )?),
        _ => None,
    };
    if let Some(caller) = super::kernel_slot::jal_caller(&file, opts) {
        super::kernel_slot::fill_islands(&file, &plan, &mut fixed, caller)?;
    }
    // Pads removed entirely (`--slot 0 --pre 0`): the table would list entries that now
    // hold code, which a tool trusting it would overwrite. Empty it, and its relocations.
    if opts.slot == 0 && opts.pre == 0 && file.kind != FileKind::Vmlinux {
        tables::empty_patch_table(&file, &relocs, &mut fixed);
    }
    let fixed_kernel = fixed.kernel;
    let direct = source.and_then(|src| {
        phase("emit (patched)", || {
            crate::emit::patched::emit_patched(&file, &src, &plan, &fixed, table.as_ref(), None)
        })
        .map_err(Some)
    });
    let (writer, fallback) = match &direct {
        Ok(_) => (Writer::Patched, None),
        Err(why) => (Writer::Builder, why.map(|w| w.to_string())),
    };
    let out = match direct {
        Ok(out) => out,
        Err(_) => {
            let builder = match builder {
                Some(b) => b,
                None => crate::emit::builder::read_builder(&file)?,
            };
            let b = phase("emit", || {
                crate::emit::builder::prepare(&file, builder, &plan, &mut fixed, table, None)
            })?;
            // The writer's output is the peak of the rewrite's memory: free first what
            // only the passes before it needed.
            drop(std::mem::take(&mut file.symbols));
            drop(std::mem::take(&mut relocs));
            drop(std::mem::take(&mut scan.sites));
            phase("emit: write", || crate::emit::builder::write(&file, b))?
        }
    };
    complete_stats(&mut stats, &file, &plan, &fixed, out.len() as u64);
    stats.table = with_table && plan.table.is_some();
    stats.writer = Some(writer);
    stats.writer_fallback = fallback;
    stats.kernel_tables = (file.kind == FileKind::Vmlinux).then_some(fixed_kernel);
    Ok((out, stats))
}

/// Fills in what the plan and the relocation pass did (a compaction's or an insertion's).
pub(super) fn complete_stats(
    stats: &mut RewriteStats,
    file: &ElfFile<'_>,
    plan: &Plan,
    fixed: &Fixed,
    file_size_after: u64,
) {
    let text_after: u64 = plan
        .map
        .moves()
        .iter()
        .filter(|m| file.sections[m.index].is_exec())
        .map(|m| m.new_size)
        .sum();
    stats.bytes_removed = stats.text_size_before as i64 - text_after as i64;
    stats.file_size_after = file_size_after;
    stats.text_size_after = text_after;
    stats.alignment_bytes = plan.alignment_bytes;
    stats.unrelocated_fixups = fixed.unrelocated_fixups;
    stats.free_bytes = plan.free.values().sum();
    stats.relocation_types = fixed
        .types
        .iter()
        .map(|(t, n)| (reloc_name(*t), *n))
        .collect();
    stats.unchanged = false;
    stats.islands = plan.islands.len();
}
