//! Rewriting relocatable objects (`.o`): shrink pads inside each section and move relocation
//! offsets, addends and symbols the way a relaxing linker does.
//!
//! Steps: cut the pads of every executable section (`layout`, with an old → new
//! [`offsets::OffsetMap`] per section; 4-byte slots and, in code the linker does not relax,
//! aligned functions kept aligned); move every symbol defined there (`symbols`); move
//! every relocation and re-target those that point into moved code, adding an
//! `R_RISCV_ALIGN` in front of 4-byte slots the linker's relaxation could misalign
//! (`relocs`); fix what the assembler resolved without relocations — PC-relative
//! instructions (`unrelocated`) and call frame information (`frames`); refuse line
//! tables that advance over moved code by constants, and compressed debug sections
//! (`debug`); write the file with every section and symbol index unchanged (`write`).
//!
//! The `__patchable_function_entries` records follow their labels onto the first kept pad
//! byte. With `--slot 0` nothing is left to patch, so the records are dropped (the tables
//! become empty). An object that needs no change is returned byte for byte.

mod cut;
mod debug;
mod frames;
pub mod island;
pub mod offsets;
mod relocs;
mod symbols;
mod table;
mod unrelocated;
mod write;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use object::elf;

use crate::elf::reloc_name;
use crate::elf::{ElfFile, Reloc, RelocSection};
use crate::error::{Error, Result};
use crate::plan::Layout;
use crate::rewrite::options::RewriteOptions;
use crate::rewrite::stats::RewriteStats;
use crate::scan::ftrace::MODULE_SECTION;
use crate::scan::{Scan, TABLE_SECTION};

pub use cut::ALIGN_RESERVE;

/// Functions that get a slot inserted (`rewrite --insert`), by section index: (entry, end)
/// in section offsets, sorted.
pub type Inserts = BTreeMap<usize, Vec<(u64, u64)>>;

/// Rewrites the relocatable object `file` (already scanned: `scan` has no problems).
pub fn rewrite_relocatable(
    file: &ElfFile<'_>,
    scan: &Scan,
    opts: RewriteOptions,
) -> Result<(Vec<u8>, RewriteStats)> {
    edit_relocatable(file, scan, &Inserts::new(), opts)
}

/// Cuts the pads of `scan` and inserts a slot of `opts.slot` bytes at each function of
/// `inserts` (`rewrite --insert`, on an object without pads), listing those slots in new
/// `__patchable_function_entries` tables as the compiler would have (see the module comment).
pub fn edit_relocatable(
    file: &ElfFile<'_>,
    scan: &Scan,
    inserts: &Inserts,
    opts: RewriteOptions,
) -> Result<(Vec<u8>, RewriteStats)> {
    let relocs = file.relocation_sections()?;
    check_relocation_sections(file, &relocs)?;
    let text_before: u64 = exec_sections(file).map(|s| s.size).sum();
    let mut stats = RewriteStats::unchanged(
        scan.sites.len(),
        file.data.len() as u64,
        text_before,
        Layout::Pack,
        opts.slot,
    );

    // 1. Cut the pads, section by section.
    let lookup = BySection::new(file, &relocs);
    let mut plans = cut_sections(file, scan, inserts, &lookup, opts)?;
    let emptied = emptied_tables(file, opts);
    let island_sections = module_island_sections(file, scan, opts)?;
    if plans.is_empty() && emptied.is_empty() && island_sections.is_empty() {
        return Ok((file.data.to_vec(), stats));
    }

    // 2. Symbols and relocations follow the code.
    let maps: symbols::Maps = plans
        .iter()
        .filter(|(_, p)| !p.map.is_identity())
        .map(|(&i, p)| (i, p.map.clone()))
        .collect();
    let ends = symbols::end_labels(file, &relocs);
    let new_symbols = symbols::map_symbols(file, &maps, &ends);
    let labels = if inserts.is_empty() {
        None
    } else {
        Some(table::SlotLabels::new(file, &plans, &new_symbols)?)
    };
    let moved = relocs::move_relocations(
        file,
        &relocs,
        &plans,
        &maps,
        &new_symbols,
        &emptied,
        labels.as_ref(),
    )?;

    // 3. What the assembler resolved without relocations.
    let mut changes = write::Changes::default();
    let fixups = fix_unrelocated(file, &lookup, &maps, &mut plans, &mut changes)?;
    debug::refuse_constant_distances(file, &relocs, &maps)?;

    // 4. Write.
    add_changes(file, &plans, &emptied, &moved, &new_symbols, &mut changes)?;
    if let Some(labels) = &labels {
        table::add_tables(file, &plans, labels, &mut changes)?;
    }
    stats.islands = island::add(
        file,
        &relocs,
        &moved.by_section,
        &island_sections,
        &mut changes,
    )?;
    let out = write::write_object(file, &changes)?;

    let text_after: u64 = exec_sections(file)
        .map(|s| {
            changes
                .data
                .get(&s.index)
                .map_or(s.size, |b| b.len() as u64)
        })
        .sum();
    stats.bytes_removed = text_before as i64 - text_after as i64;
    stats.text_size_after = text_after;
    stats.file_size_after = out.len() as u64;
    stats.alignment_bytes = plans.values().map(|p| p.alignment_bytes).sum();
    stats.unrelocated_fixups = fixups;
    stats.relocation_types = moved
        .types
        .iter()
        .map(|(&t, &n)| (reloc_name(t), n))
        .collect();
    stats.unchanged = false;
    Ok((out, stats))
}

/// Refuses relocation sections this rewrite cannot move: `REL` ones, and those against a
/// symbol table other than `.symtab`.
fn check_relocation_sections(file: &ElfFile<'_>, relocs: &[RelocSection]) -> Result<()> {
    for rs in relocs {
        if file.sections[rs.index].sh_type != elf::SHT_RELA.0 {
            return Err(Error::Unsupported(format!(
                "{}: REL relocations (RISC-V objects use RELA)",
                file.sections[rs.index].name
            )));
        }
        if Some(rs.symtab) != file.symtab_index {
            return Err(Error::malformed(format!(
                "{}: relocations against a table other than .symtab",
                file.sections[rs.index].name
            )));
        }
    }
    Ok(())
}

/// Lookups by section, built once: objects with -ffunction-sections have thousands.
struct BySection<'r> {
    relocs: &'r [RelocSection],
    /// Index in `relocs` of the relocations of each section.
    by_target: HashMap<usize, usize>,
    /// The symbols defined in each section.
    symbols: HashMap<usize, Vec<usize>>,
}

impl<'r> BySection<'r> {
    /// The lookups of `file`, whose relocation sections are `relocs`.
    fn new(file: &ElfFile<'_>, relocs: &'r [RelocSection]) -> Self {
        let by_target = relocs
            .iter()
            .enumerate()
            .map(|(k, rs)| (rs.target, k))
            .collect();
        let mut symbols: HashMap<usize, Vec<usize>> = HashMap::new();
        for s in &file.symbols {
            if let Some(sec) = s.section() {
                symbols.entry(sec).or_default().push(s.index);
            }
        }
        BySection {
            relocs,
            by_target,
            symbols,
        }
    }

    /// The relocations of section `index`.
    fn relocs_of(&self, index: usize) -> &'r [Reloc] {
        self.by_target
            .get(&index)
            .map_or(&[], |&k| self.relocs[k].relocs.as_slice())
    }

    /// The symbols defined in section `index`.
    fn symbols_in(&self, index: usize) -> &[usize] {
        self.symbols.get(&index).map_or(&[][..], Vec::as_slice)
    }
}

/// Plans the cut of every executable section with pads or slots to insert; only the
/// sections that change.
fn cut_sections(
    file: &ElfFile<'_>,
    scan: &Scan,
    inserts: &Inserts,
    lookup: &BySection<'_>,
    opts: RewriteOptions,
) -> Result<BTreeMap<usize, cut::SectionPlan>> {
    let cut = cut::CutOptions {
        slot: opts.slot,
        pre: opts.pre,
    };
    let mut by_section: BTreeMap<usize, Vec<usize>> =
        inserts.keys().map(|&k| (k, Vec::new())).collect();
    for (i, s) in scan.sites.iter().enumerate() {
        by_section.entry(s.section).or_default().push(i);
    }
    let mut plans = BTreeMap::new();
    for (&index, ids) in &by_section {
        let section = cut::SectionInput {
            index,
            relocs: lookup.relocs_of(index),
            symbols: lookup.symbols_in(index),
            inserts: inserts.get(&index).map_or(&[][..], Vec::as_slice),
        };
        let plan = cut::plan_section(file, &section, &scan.sites, ids, cut)?;
        if !plan.is_unchanged(file.sections[index].align) {
            plans.insert(index, plan);
        }
    }
    Ok(plans)
}

/// The executable sections that get an island, in a kernel module rewritten with `--slot 4`
/// that has no islands yet (see [`island`]): the module loader puts every `.init*` section
/// in one allocation and every other in another, so one island each (in the first section
/// with slots) is in `jal` reach of all their slots while each group is under 1 MiB.
fn module_island_sections(
    file: &ElfFile<'_>,
    scan: &Scan,
    opts: RewriteOptions,
) -> Result<Vec<usize>> {
    if opts.slot != 4 || file.section_by_name(MODULE_SECTION).is_none() || island::has_islands(file)
    {
        return Ok(Vec::new());
    }
    let with_slots: BTreeSet<usize> = scan.sites.iter().map(|s| s.section).collect();
    let mut picked = Vec::new();
    for init in [false, true] {
        let group = |s: &&crate::elf::Section<'_>| s.name.starts_with(".init") == init;
        let total: u64 = exec_sections(file)
            .filter(group)
            .map(|s| s.size.next_multiple_of(s.align.max(1)))
            .sum();
        if let Some(first) = exec_sections(file)
            .filter(group)
            .find(|s| with_slots.contains(&s.index))
        {
            if total >= island::REACH {
                return Err(Error::refused(format!(
                    "the module's {} text is {total} bytes: one island in {} would not be \
                     within jal reach (1 MiB) of every 4-byte slot. Use --slot 8",
                    if init { "init" } else { "core" },
                    first.name
                )));
            }
            picked.push(first.index);
        }
    }
    Ok(picked)
}

/// The patch tables `--slot 0` empties: nothing is left to patch.
fn emptied_tables(file: &ElfFile<'_>, opts: RewriteOptions) -> BTreeSet<usize> {
    if opts.slot == 0 {
        file.sections
            .iter()
            .filter(|s| s.name == TABLE_SECTION && s.size > 0)
            .map(|s| s.index)
            .collect()
    } else {
        BTreeSet::new()
    }
}

/// Fixes what the assembler resolved without relocations: PC-relative instructions in the
/// cut sections, and call frame information (into `changes`). Returns how many were fixed.
fn fix_unrelocated(
    file: &ElfFile<'_>,
    lookup: &BySection<'_>,
    maps: &symbols::Maps,
    plans: &mut BTreeMap<usize, cut::SectionPlan>,
    changes: &mut write::Changes,
) -> Result<usize> {
    let mut fixups = 0;
    for plan in plans.values_mut() {
        fixups += unrelocated::fix_section(
            file,
            plan,
            lookup.relocs_of(plan.index),
            lookup.symbols_in(plan.index),
        )?;
    }
    for sec in file
        .sections
        .iter()
        .filter(|s| s.name == ".eh_frame" || s.name == ".debug_frame")
    {
        let (bytes, n) =
            frames::fix_frame_section(file, sec.index, lookup.relocs_of(sec.index), maps)?;
        fixups += n;
        if let Some(b) = bytes {
            changes.data.insert(sec.index, b);
        }
    }
    Ok(fixups)
}

/// Adds the new contents to write: the cut sections (and their alignment), the emptied
/// tables, the moved relocations and the symbol table.
fn add_changes(
    file: &ElfFile<'_>,
    plans: &BTreeMap<usize, cut::SectionPlan>,
    emptied: &BTreeSet<usize>,
    moved: &relocs::MovedRelocs,
    new_symbols: &[symbols::NewSymbol],
    changes: &mut write::Changes,
) -> Result<()> {
    for (&i, plan) in plans {
        changes.align.insert(i, plan.align);
        changes.data.insert(i, plan.bytes.clone());
    }
    for &i in emptied {
        changes.data.insert(i, Vec::new());
    }
    for (&rela, entries) in &moved.by_section {
        changes
            .data
            .insert(rela, write::encode_rela(file.is_64, entries));
    }
    if let Some((index, bytes)) = write::patch_symtab(file, new_symbols)? {
        changes.data.insert(index, bytes);
    }
    Ok(())
}

/// The executable sections with contents.
fn exec_sections<'a, 'data>(
    file: &'a ElfFile<'data>,
) -> impl Iterator<Item = &'a crate::elf::Section<'data>> {
    file.sections
        .iter()
        .filter(|s| s.is_exec() && !s.is_nobits())
}
