//! Finding every patch site: where the table says pads are, what is there, whose they are.
//!
//! The table of pad addresses comes from `__patchable_function_entries` (through its
//! relocations in a `.o`, through `R_RISCV_RELATIVE` addends in a PIE or shared object,
//! otherwise from the bytes) or, in a vmlinux, from `__start_mcount_loc..__stop_mcount_loc`.

use std::collections::BTreeMap;

use object::elf;

use crate::elf::{read_uint, ElfFile, FileKind, Symbol};
use crate::error::{Error, Result};
use crate::riscv::{insn_len, C_NOP, NOP};

/// Name of the table section GCC and clang emit.
pub const TABLE_SECTION: &str = "__patchable_function_entries";

/// Which nop encoding a pad is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum NopKind {
    /// Only `c.nop` (2 bytes each).
    #[serde(rename = "c.nop")]
    CNop,
    /// Only `nop` (4 bytes each).
    #[serde(rename = "nop")]
    Nop,
    /// Both kinds.
    #[serde(rename = "mixed")]
    Mixed,
    /// No nops (the pad was patched).
    #[serde(rename = "none")]
    None,
}

/// What a pad currently holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteState {
    /// Intact nops.
    Nops,
    /// Already patched: the first instruction, a `jal t0` or `auipc t0` call form.
    Patched(u32),
}

/// One pad: a table entry that points at a run of nops at a function's entry.
#[derive(Debug, Clone)]
pub struct PatchSite {
    /// Index of the executable section holding the pad.
    pub section: usize,
    /// Address of the first pad byte (the table entry); a section offset in a `.o`.
    pub entry: u64,
    /// Index into [`ElfFile::symbols`] of the function the pad belongs to.
    pub symbol: Option<usize>,
    /// Address of that function's symbol (entry + pre_bytes when M nops precede it).
    pub func_addr: u64,
    /// Pad size in bytes.
    pub pad_bytes: u32,
    /// Pad size in instructions.
    pub pad_insns: u32,
    /// Pad bytes before the function symbol (M nops).
    pub pre_bytes: u32,
    /// Which nops the pad is made of.
    pub nop_kind: NopKind,
    /// Largest power of two dividing `entry`, capped at 64.
    pub align: u32,
    /// Intact or patched.
    pub state: SiteState,
}

/// Why a table entry is not a usable patch site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The entry is zero.
    Zero,
    /// The entry is not inside an executable section.
    OutsideText,
    /// The entry points into the middle of an instruction.
    MidInstruction,
    /// The entry holds an instruction that is neither a nop nor a known patch.
    NoNop(u32),
    /// The entry's distance to its function differs from the rest of the binary.
    Misplaced {
        /// Function symbol minus entry for this site.
        offset: i64,
        /// The offset most sites have.
        expected: i64,
    },
    /// A relocatable table entry without a relocation, or one against an unusable symbol.
    Unresolved,
    /// The entry has no function of its own and follows a nop: it points inside a pad.
    NotRunStart {
        /// Address of the closest function symbol before the entry.
        function: u64,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Zero => write!(f, "table entry is zero"),
            Problem::OutsideText => write!(f, "not inside an executable section"),
            Problem::MidInstruction => write!(f, "points into the middle of an instruction"),
            Problem::NoNop(raw) => write!(f, "holds no nop (instruction {raw:#x})"),
            Problem::Misplaced { offset, expected } => write!(
                f,
                "is {offset} bytes from its function's symbol where the other sites are {expected}"
            ),
            Problem::Unresolved => write!(f, "table entry has no usable relocation"),
            Problem::NotRunStart { function } => write!(
                f,
                "is not at the start of a nop run (inside the pad of the function at {function:#x})"
            ),
        }
    }
}

/// A table entry that is not a usable patch site.
#[derive(Debug, Clone)]
pub struct SiteProblem {
    /// The address the entry holds (section offset in a `.o`).
    pub address: u64,
    /// Executable section the address falls in, if any.
    pub section: Option<usize>,
    /// What is wrong.
    pub problem: Problem,
}

/// Where the table entries were read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableSource {
    /// Relocations of `__patchable_function_entries` in a relocatable object.
    Relocations,
    /// Section bytes, with `R_RISCV_RELATIVE` addends where the loader fills them.
    Section,
    /// The kernel's `__start_mcount_loc..__stop_mcount_loc`.
    KernelMcountLoc,
    /// No table in the file.
    None,
}

/// The result of scanning one file.
#[derive(Debug, Clone)]
pub struct Scan {
    /// Usable sites, sorted by (section, entry).
    pub sites: Vec<PatchSite>,
    /// Entries that are not usable sites.
    pub problems: Vec<SiteProblem>,
    /// Number of table entries read.
    pub entries: usize,
    /// Where the entries came from.
    pub source: TableSource,
    /// Histogram of (function symbol - entry) over sites whose function is known.
    pub entry_offsets: BTreeMap<i64, usize>,
    /// Address of the table (first entry) in a linked file.
    pub table_addr: Option<u64>,
}

impl Scan {
    /// Number of zero entries.
    pub fn zero_entries(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.problem == Problem::Zero)
            .count()
    }
    /// Number of invalid entries other than zero ones.
    pub fn invalid_entries(&self) -> usize {
        self.problems.len() - self.zero_entries()
    }
}

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
            Some(s) => Some(s).filter(|&s| {
                let sec = &file.sections[s];
                sec.is_exec() && e.address < sec.size
            }),
            None => file
                .sections
                .iter()
                .find(|s| s.is_exec() && s.is_alloc() && s.contains(e.address))
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

    let mut sites = Vec::with_capacity(located.len());
    for (i, &(section, entry)) in located.iter().enumerate() {
        let sec = &file.sections[section];
        let data = file.section_data(sec)?;
        let off = (entry - sec.addr) as usize;
        // A pad never runs into the next site's pad.
        let limit = match located.get(i + 1) {
            Some(&(s, next)) if s == section => (next - entry) as usize,
            _ => data.len() - off,
        };
        let run = nop_run(&data[off..off + limit], file.rvc());
        let Boundary::Start { previous } = on_boundary(file, &labels, section, entry, data) else {
            problems.push(SiteProblem {
                address: entry,
                section: Some(section),
                problem: Problem::MidInstruction,
            });
            continue;
        };
        let state = if run.bytes > 0 {
            SiteState::Nops
        } else {
            let raw = read_insn(&data[off..]);
            if is_call_patch(raw) {
                SiteState::Patched(raw)
            } else {
                problems.push(SiteProblem {
                    address: entry,
                    section: Some(section),
                    problem: Problem::NoNop(raw),
                });
                continue;
            }
        };
        let (bytes, insns) = match state {
            SiteState::Nops => (run.bytes, run.insns),
            SiteState::Patched(raw) => (insn_len(raw as u16) as u32, 1),
        };
        let symbol = match labels.function_for(section, entry, u64::from(bytes)) {
            Some(Owner::Own(s)) => Some(s),
            // No label of its own (an overridden weak function, a stripped static one): an
            // anonymous pad, unless it continues a nop run, i.e. the entry points into a pad.
            Some(Owner::Before(s)) if previous.is_some_and(is_nop) => {
                let func = file.symbols[s].value;
                problems.push(SiteProblem {
                    address: entry,
                    section: Some(section),
                    problem: Problem::NotRunStart { function: func },
                });
                continue;
            }
            _ => None,
        };
        let func_addr = symbol.map_or(entry, |s| file.symbols[s].value);
        sites.push(PatchSite {
            section,
            entry,
            symbol,
            func_addr,
            pad_bytes: bytes,
            pad_insns: insns,
            pre_bytes: func_addr.saturating_sub(entry).min(u64::from(bytes)) as u32,
            nop_kind: run.kind,
            align: alignment_of(entry),
            state,
        });
    }

    // Sites whose distance to their function differs from the binary's usual one.
    let mut entry_offsets = BTreeMap::new();
    for s in sites.iter().filter(|s| s.symbol.is_some()) {
        *entry_offsets
            .entry(s.func_addr as i64 - s.entry as i64)
            .or_insert(0) += 1;
    }
    if let Some((&expected, _)) = entry_offsets
        .iter()
        .max_by_key(|(k, v)| (**v, -(**k).abs()))
    {
        sites.retain(|s| {
            let offset = s.func_addr as i64 - s.entry as i64;
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

fn read_table(file: &ElfFile<'_>) -> Result<(Vec<RawEntry>, TableSource, Option<u64>)> {
    if file.kind == FileKind::Vmlinux {
        return read_kernel_table(file);
    }
    let tables: Vec<_> = file
        .sections
        .iter()
        .filter(|s| s.name == TABLE_SECTION)
        .collect();
    if tables.is_empty() {
        return Ok((Vec::new(), TableSource::None, None));
    }
    let ptr = file.ptr_size();
    let relocs = file.relocation_sections()?;
    let mut out = Vec::new();
    if file.kind == FileKind::Relocatable {
        for table in &tables {
            let Some(rs) = relocs.iter().find(|r| r.target == table.index) else {
                // No relocations: every entry is unresolved.
                for _ in 0..table.size / ptr as u64 {
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
            for r in &rs.relocs {
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
    let mut relative: BTreeMap<u64, u64> = BTreeMap::new();
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
            let at = table.addr + (i * ptr) as u64;
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
    let sec = file
        .alloc_section_at(start)
        .filter(|s| stop <= s.end())
        .ok_or_else(|| Error::malformed("mcount_loc table is not inside one section"))?;
    let data = file.section_data(sec)?;
    let base = (start - sec.addr) as usize;
    let count = ((stop - start) / ptr) as usize;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let v = read_uint(data, base + i * ptr as usize, ptr as usize)
            .ok_or_else(|| Error::malformed("mcount_loc table runs past its section"))?;
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
/// label before it. Unknowable cases (no label, very long distance) count as a start.
enum Boundary {
    /// The entry starts an instruction; `previous` is the one before it, when known.
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
    let unknown = Boundary::Start { previous: None };
    let Some(start) = labels.at_or_before(section, entry) else {
        return unknown;
    };
    let start = file.symbols[start].value;
    if entry - start > 1 << 20 {
        return unknown;
    }
    let base = file.sections[section].addr;
    let (mut at, mut previous) = (start, None);
    while at < entry {
        let off = (at - base) as usize;
        let Some(parcel) = read_uint(data, off, 2) else {
            return unknown;
        };
        previous = Some(read_insn(&data[off..]));
        at += insn_len(parcel as u16) as u64;
    }
    if at == entry {
        Boundary::Start { previous }
    } else {
        Boundary::Inside
    }
}

fn is_nop(raw: u32) -> bool {
    raw == NOP || raw == u32::from(C_NOP)
}

/// Whose pad a site is: a label inside the pad, or only one before it.
enum Owner {
    /// A label lies inside `[entry, entry + pad]`: the pad's own function.
    Own(usize),
    /// Only a label before the entry: the pad has no function symbol of its own.
    Before(usize),
}

/// Code labels (function symbols and named untyped labels) sorted by (section, address),
/// function symbols first among equals.
pub(crate) struct CodeLabels {
    sorted: Vec<(usize, u64, bool, usize)>,
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
        sorted.sort_unstable();
        CodeLabels { sorted }
    }

    /// The function a pad belongs to: the first label inside `[entry, entry + pad]`, else
    /// the last label before `entry`.
    fn function_for(&self, section: usize, entry: u64, pad: u64) -> Option<Owner> {
        let i = self
            .sorted
            .partition_point(|&(s, v, _, _)| (s, v) < (section, entry));
        match self.sorted.get(i) {
            Some(&(s, v, _, idx)) if s == section && v <= entry + pad => Some(Owner::Own(idx)),
            _ => self.at_or_before(section, entry).map(Owner::Before),
        }
    }

    /// The last label at or before `addr` in `section`.
    fn at_or_before(&self, section: usize, addr: u64) -> Option<usize> {
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
        Some(self.sorted[first].3)
    }
}
