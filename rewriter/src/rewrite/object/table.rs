//! The `__patchable_function_entries` tables of an object whose slots were inserted
//! (`rewrite --insert`), written as the compiler writes them for
//! `-fpatchable-function-entry`, so the linker gathers them with every other object's:
//!
//! - one table per code section with slots, `SHF_LINK_ORDER` with `sh_link` naming that
//!   section (the linker refuses to mix ordered and unordered input sections of one name,
//!   and drops a table with its code under `--gc-sections`), in the section's COMDAT group
//!   when it has one (discarded with it);
//! - one address-sized entry per slot, set by a `R_RISCV_64` (`R_RISCV_32` on RV32) against
//!   a local symbol at the slot: the linker moves symbols when its relaxation deletes bytes,
//!   not a section symbol's addend. A static function's own symbol serves; elsewhere a new
//!   local label does (a global function's symbol could be preempted in a shared library),
//!   as the compiler's `.LPFE` labels do. New locals go after the old ones (locals come
//!   first in `.symtab`), so every later symbol index moves up: every relocation, group
//!   signature and `.llvm_addrsig` entry is renumbered.

use std::collections::{BTreeMap, HashMap};

use object::elf;

use super::cut::SectionPlan;
use super::symbols::{is_function, NewSymbol};
use super::write::{encode_rela, AddedSection, Changes};
use crate::elf::fields::ClassFields;
use crate::elf::{ElfFile, Reloc};
use crate::error::{Error, Result};
use crate::scan::TABLE_SECTION;

/// Name of the local labels added at slots that no local function symbol names.
const LABEL: &str = ".Lpadtrim_slot";

/// `SHT_LLVM_ADDRSIG`: clang's list of address-significant symbols (ULEB128 indices).
const SHT_LLVM_ADDRSIG: u32 = 0x6fff_4c03;

/// The symbols that name the slots: a static function's own symbol where it has one, else a
/// new local label. Built before the relocations move: a reference to a slot is made
/// against its symbol with no addend (see [`SlotLabels::retarget`]), and adding locals
/// renumbers every global ([`SlotLabels::renumber`]).
pub struct SlotLabels {
    /// `sh_info` of `.symtab` before: the first global symbol.
    first_global: u32,
    /// (section, new offset) of each new label, in the order they are added.
    added: Vec<(usize, u64)>,
    /// (section, new offset) of every slot → the (renumbered) symbol naming it.
    by_slot: HashMap<(usize, u64), u32>,
}

impl SlotLabels {
    /// The labels of the slots of `plans` in `file`, whose symbols' new values are
    /// `new_symbols`.
    pub fn new(
        file: &ElfFile<'_>,
        plans: &BTreeMap<usize, SectionPlan>,
        new_symbols: &[NewSymbol],
    ) -> Result<Self> {
        let symtab = file
            .symtab_index
            .ok_or_else(|| Error::malformed("an object with code but no symbol table"))?;
        let first_global = file.sections[symtab].info;
        let local_functions = local_functions(file, new_symbols);
        let mut added = Vec::new();
        let mut by_slot = HashMap::new();
        for plan in plans.values() {
            for s in plan.map.slots() {
                let key = (plan.index, s.new);
                let sym = match local_functions.get(&key) {
                    Some(&sym) => sym,
                    None => {
                        added.push(key);
                        first_global + added.len() as u32 - 1
                    }
                };
                by_slot.insert(key, sym);
            }
        }
        Ok(SlotLabels {
            first_global,
            added,
            by_slot,
        })
    }

    /// The new index of the symbol that was `sym`.
    pub fn renumber(&self, sym: u32) -> u32 {
        if sym >= self.first_global {
            sym + self.added.len() as u32
        } else {
            sym
        }
    }

    /// The symbol (new numbering) a reference to new offset `at` of `section` should be made
    /// against, with no addend, if a slot starts there. The linker moves a symbol through
    /// its relaxation and computes every relocation type from symbol plus addend, but BFD's
    /// `R_RISCV_SUB*` mishandles a negative addend: a label behind the slot minus the slot
    /// bytes gave FDEs negative ranges. The compiler never writes one; neither do we.
    pub fn retarget(&self, section: usize, at: u64) -> Option<u32> {
        self.by_slot.get(&(section, at)).copied()
    }
}

/// Appends a table (and its relocations) for every section of `plans` with inserted slots to
/// `changes` (which holds the edited sections, the moved and renumbered relocations and the
/// new symbol table), adds the new labels of `labels`, and adds the tables to the COMDAT
/// groups of their sections.
pub fn add_tables(
    file: &ElfFile<'_>,
    plans: &BTreeMap<usize, SectionPlan>,
    labels: &SlotLabels,
    changes: &mut Changes,
) -> Result<()> {
    let symtab = file
        .symtab_index
        .ok_or_else(|| Error::malformed("an object with code but no symbol table"))?;
    let ptr = file.ptr_size();
    let r_type = if file.is_64 {
        elf::R_RISCV_64.0
    } else {
        elf::R_RISCV_32.0
    };
    let groups = groups_of(file)?;
    let mut tables: Vec<(usize, Vec<Reloc>)> = Vec::new();
    for plan in plans.values() {
        let slots = plan.map.slots();
        if slots.is_empty() {
            continue;
        }
        let code = plan.index;
        let entries = slots
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let sym = labels.retarget(code, s.new).ok_or_else(|| {
                    Error::malformed(format!(
                        "{}: a slot without a label",
                        file.sections[code].name
                    ))
                })?;
                Ok(Reloc {
                    offset: (k * ptr) as u64,
                    r_type,
                    sym,
                    addend: 0,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        tables.push((code, entries));
    }
    if !labels.added.is_empty() {
        add_labels(file, symtab, labels, changes)?;
    }
    let mut group_data: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
    let mut next = file.sections.len() + changes.added.len();
    for (code, entries) in tables {
        let group = groups.get(&code).copied();
        let flag_group = if group.is_some() { elf::SHF_GROUP.0 } else { 0 };
        let (table, rela) = (next, next + 1);
        next += 2;
        changes.added.push(AddedSection {
            name: TABLE_SECTION.to_string(),
            sh_type: elf::SHT_PROGBITS.0,
            flags: (elf::SHF_ALLOC.0 | elf::SHF_WRITE.0 | elf::SHF_LINK_ORDER.0) | flag_group,
            link: code as u32,
            info: 0,
            align: ptr as u64,
            entsize: 0,
            data: vec![0; entries.len() * ptr],
        });
        changes.added.push(AddedSection {
            name: format!(".rela{TABLE_SECTION}"),
            sh_type: elf::SHT_RELA.0,
            flags: elf::SHF_INFO_LINK.0 | flag_group,
            link: symtab as u32,
            info: table as u32,
            align: ptr as u64,
            entsize: ClassFields::of(file.is_64).rela_size as u64,
            data: encode_rela(file.is_64, &entries),
        });
        if let Some(g) = group {
            let members = match group_data.entry(g) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(file.section_data(&file.sections[g])?.to_vec())
                }
            };
            members.extend_from_slice(&(table as u32).to_le_bytes());
            members.extend_from_slice(&(rela as u32).to_le_bytes());
        }
    }
    changes.data.extend(group_data);
    Ok(())
}

/// The local function symbols by (section, new value): the linker moves them with the code.
fn local_functions(file: &ElfFile<'_>, new_symbols: &[NewSymbol]) -> HashMap<(usize, u64), u32> {
    let mut out = HashMap::new();
    for s in &file.symbols {
        let local = s.bind == elf::STB_LOCAL.0;
        if let (Some(sec), true, true) = (s.section(), is_function(s), local) {
            out.entry((sec, new_symbols[s.index].value))
                .or_insert(s.index as u32);
        }
    }
    out
}

/// Adds the new local labels of `labels` after the last local symbol and renumbers every
/// later symbol where it is named outside relocations (which the relocation pass renumbered):
/// group signatures, `.llvm_addrsig`.
fn add_labels(
    file: &ElfFile<'_>,
    symtab: usize,
    labels: &SlotLabels,
    changes: &mut Changes,
) -> Result<()> {
    let first_global = labels.first_global;
    let added =
        u32::try_from(labels.added.len()).map_err(|_| Error::malformed("too many slots"))?;
    let renumber = |sym: u32| labels.renumber(sym);
    if file
        .sections
        .iter()
        .any(|s| s.sh_type == elf::SHT_SYMTAB_SHNDX.0)
    {
        return Err(Error::Unsupported(
            "--insert into an object with extended section indices (SHT_SYMTAB_SHNDX)".into(),
        ));
    }
    // The name, once, at the end of the string table.
    let strtab = file.sections[symtab].link as usize;
    let strtab_sec = file
        .sections
        .get(strtab)
        .ok_or_else(|| Error::malformed(".symtab names no string table"))?;
    let mut names = match changes.data.get(&strtab) {
        Some(d) => d.clone(),
        None => file.section_data(strtab_sec)?.to_vec(),
    };
    let name =
        u32::try_from(names.len()).map_err(|_| Error::malformed("string table over 4 GiB"))?;
    names.extend_from_slice(LABEL.as_bytes());
    names.push(0);
    changes.data.insert(strtab, names);

    // The symbols: the labels go in at the first global.
    let f = ClassFields::of(file.is_64);
    let mut syms = match changes.data.get(&symtab) {
        Some(d) => d.clone(),
        None => file.section_data(&file.sections[symtab])?.to_vec(),
    };
    let split = (first_global as usize)
        .checked_mul(f.sym_size)
        .filter(|&n| n <= syms.len())
        .ok_or_else(|| Error::malformed(".symtab: sh_info past its symbols"))?;
    let mut new_entries = Vec::with_capacity(labels.added.len() * f.sym_size);
    for &(section, value) in &labels.added {
        let shndx = u16::try_from(section)
            .ok()
            .filter(|&n| n < elf::SHN_LORESERVE)
            .ok_or_else(|| Error::Unsupported("a section index past 0xff00".into()))?;
        new_entries.extend_from_slice(&symbol_entry(file.is_64, name, shndx, value));
    }
    syms.splice(split..split, new_entries);
    changes.data.insert(symtab, syms);
    changes.info.insert(symtab, first_global + added);

    for g in file
        .sections
        .iter()
        .filter(|s| s.sh_type == elf::SHT_GROUP.0)
    {
        changes.info.insert(g.index, renumber(g.info));
    }
    for a in file
        .sections
        .iter()
        .filter(|s| s.sh_type == SHT_LLVM_ADDRSIG)
    {
        let data = file.section_data(a)?;
        let mut out = Vec::with_capacity(data.len() + 4);
        let mut at = 0;
        while at < data.len() {
            let (v, n) = crate::elf::dwarf::read_uleb(&data[at..]).ok_or_else(|| {
                Error::malformed(format!("{}: truncated ULEB128 at {at:#x}", a.name))
            })?;
            at += n;
            let v = u32::try_from(v)
                .map_err(|_| Error::malformed(format!("{}: symbol index {v}", a.name)))?;
            write_uleb(&mut out, u64::from(renumber(v)));
        }
        changes.data.insert(a.index, out);
    }
    Ok(())
}

/// Appends `v` as ULEB128.
fn write_uleb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A local `STT_NOTYPE` symbol named at `name`, in section `shndx`, at `value`.
fn symbol_entry(is_64: bool, name: u32, shndx: u16, value: u64) -> Vec<u8> {
    let info = (elf::STB_LOCAL.0 << 4) | elf::STT_NOTYPE.0;
    let mut e = Vec::with_capacity(24);
    e.extend_from_slice(&name.to_le_bytes());
    if is_64 {
        e.extend_from_slice(&[info, 0]);
        e.extend_from_slice(&shndx.to_le_bytes());
        e.extend_from_slice(&value.to_le_bytes());
        e.extend_from_slice(&0u64.to_le_bytes());
    } else {
        e.extend_from_slice(&(value as u32).to_le_bytes());
        e.extend_from_slice(&0u32.to_le_bytes());
        e.extend_from_slice(&[info, 0]);
        e.extend_from_slice(&shndx.to_le_bytes());
    }
    e
}

/// The COMDAT group (its `SHT_GROUP` section index) of every section in one.
fn groups_of(file: &ElfFile<'_>) -> Result<BTreeMap<usize, usize>> {
    let mut out = BTreeMap::new();
    for g in file
        .sections
        .iter()
        .filter(|s| s.sh_type == elf::SHT_GROUP.0)
    {
        let data = file.section_data(g)?;
        for member in data.chunks_exact(4).skip(1) {
            let m = u32::from_le_bytes([member[0], member[1], member[2], member[3]]);
            out.insert(m as usize, g.index);
        }
    }
    Ok(out)
}
