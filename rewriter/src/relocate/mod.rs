//! Building the new section contents and re-resolving every reference against the plan.
//!
//! Relocations kept by `--emit-relocs` say what each instruction or data word refers to;
//! each is re-resolved from the original target through the [`AddressMap`](crate::plan::AddressMap).
//! Instructions are cross-checked: a relocation that disagrees with the bytes it covers is
//! refused rather than trusted. PC-relative instructions without a relocation are found by
//! decoding every executable section and fixed from their decoded targets.

mod addr_set;
mod data;
pub mod kernel;
mod sweep;

use std::collections::BTreeMap;

// Keys are addresses. FxHash is several times faster than SipHash here; a crafted input
// could only make hashing slower, never wrong.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use object::elf;

use crate::elf::{read_uint, ElfFile, Reloc, RelocSection};
use crate::error::{Error, Result};
use crate::plan::{Edit, Plan};
use crate::riscv::{self, decode, hi_lo, Insn, Op, Xlen, C_NOP, NOP};
use addr_set::AddrSet;

/// The new bytes and relocations of everything the rewrite changes.
#[derive(Debug, Default)]
pub struct Fixed {
    /// New contents, by original section index (sections not listed are unchanged).
    pub data: BTreeMap<usize, Vec<u8>>,
    /// New relocation entries, by relocation section index, in the original order.
    pub relocs: BTreeMap<usize, Vec<Reloc>>,
    /// PC-relative instructions without a relocation that had to be fixed.
    pub unrelocated_fixups: usize,
    /// Relocation type → how many were re-resolved.
    pub types: BTreeMap<u32, usize>,
    /// Kernel tables rewritten from their bytes (vmlinux only).
    pub kernel: kernel::KernelTables,
}

/// The image under construction: original file, plan, and copy-on-write new contents.
pub(crate) struct Image<'a, 'data> {
    pub file: &'a ElfFile<'data>,
    pub plan: &'a Plan,
    pub xlen: Xlen,
    /// New contents by section index, `None` until first written (a vector, not a map:
    /// every relocation asks for its section's bytes).
    pub data: Vec<Option<Vec<u8>>>,
    /// GOT slots that hold TLS offsets or module ids, not addresses.
    pub tls_got: HashSet<u64>,
    /// Small difference fields (section, original place) → (bits, old value, movement).
    pub pairs: HashMap<(usize, u64), (u32, i64, i64)>,
    /// Original address ranges of the PLT sections (asked about for every call).
    pub plt: Vec<std::ops::Range<u64>>,
}

impl<'a, 'data> Image<'a, 'data> {
    /// New address of original address `addr` in section `sec`.
    pub fn map_in(&self, sec: usize, addr: u64) -> u64 {
        let s = &self.file.sections[sec];
        if !self.file.kind.is_linked() {
            self.plan.map.map_in(sec, addr)
        } else if !s.is_alloc() {
            addr
        } else if addr > s.end() {
            // Past the end: an `R_RISCV_NONE` ld's relaxation left there (the parser lets no
            // other relocation through). It patches nothing; it stays at the section's end.
            self.plan.map.map_in(sec, s.end())
        } else if addr < s.addr {
            // Not in the section after all (a relocation a post-link tool zeroed): map it
            // as any address, which leaves it alone if no section holds it.
            self.plan.map.map(addr)
        } else {
            self.plan.map.map_in(sec, addr)
        }
    }

    /// New address of an original target address (any section).
    pub fn map(&self, addr: u64) -> u64 {
        self.plan.map.map(addr)
    }

    /// True if original address `addr` lies in a PLT section.
    pub fn in_plt(&self, addr: u64) -> bool {
        self.plt.iter().any(|r| r.contains(&addr))
    }

    /// Original bytes of a section.
    pub fn old(&self, sec: usize) -> &'data [u8] {
        self.file
            .section_data(&self.file.sections[sec])
            .unwrap_or(&[])
    }

    /// New address of section `sec`'s start.
    pub fn new_base(&self, sec: usize) -> u64 {
        let s = &self.file.sections[sec];
        if s.is_alloc() || !self.file.kind.is_linked() {
            self.plan.map.section(sec).map_or(s.addr, |m| m.new_addr)
        } else {
            s.addr
        }
    }

    /// The new bytes of section `sec` (copied from the original on first use).
    pub fn bytes_mut(&mut self, sec: usize) -> &mut Vec<u8> {
        if self.data.len() <= sec {
            self.data.resize(sec + 1, None);
        }
        let old = self.old(sec);
        self.data[sec].get_or_insert_with(|| old.to_vec())
    }

    /// Reads `size` bytes little-endian at new address `addr` of section `sec`.
    pub fn read_new(&mut self, sec: usize, addr: u64, size: usize) -> Result<u64> {
        let base = self.new_base(sec);
        let off = addr.wrapping_sub(base) as usize;
        let bytes = self.bytes_mut(sec);
        read_uint(bytes, off, size).ok_or_else(|| {
            Error::malformed(format!(
                "read of {size} bytes at {addr:#x} is outside its section"
            ))
        })
    }

    /// Writes `size` bytes little-endian at new address `addr` of section `sec`.
    pub fn write_new(&mut self, sec: usize, addr: u64, size: usize, value: u64) -> Result<()> {
        let base = self.new_base(sec);
        let off = addr.wrapping_sub(base) as usize;
        let bytes = self.bytes_mut(sec);
        let dst = bytes.get_mut(off..off + size).ok_or_else(|| {
            Error::malformed(format!(
                "write of {size} bytes at {addr:#x} is outside its section"
            ))
        })?;
        dst.copy_from_slice(&value.to_le_bytes()[..size]);
        Ok(())
    }

    /// Decodes the original instruction at `addr` of section `sec`.
    pub fn old_insn(&self, sec: usize, addr: u64) -> Result<Insn> {
        let s = &self.file.sections[sec];
        let off = addr.wrapping_sub(s.addr) as usize;
        let bytes = self.old(sec).get(off..).unwrap_or(&[]);
        decode(bytes, self.xlen)
            .map_err(|e| Error::refused(format!("instruction at {addr:#x}: {e}")))
    }

    /// Writes a re-encoded instruction at the new place of original address `addr`.
    pub fn put_insn(&mut self, sec: usize, addr: u64, insn: &Insn, raw: u32) -> Result<()> {
        let new = self.map_in(sec, addr);
        self.write_new(sec, new, insn.len as usize, u64::from(raw))
    }
}

fn range(at: u64, what: &str) -> impl FnOnce(riscv::RangeError) -> Error + '_ {
    move |e| Error::refused(format!("{what} at {at:#x} cannot be re-encoded: {e}"))
}

/// Builds the new bytes of every executable section from the plan's edits.
fn build_exec_sections(img: &mut Image<'_, '_>) -> Result<()> {
    let rvc = img.file.rvc();
    for mv in img.plan.map.moves() {
        if mv.edits().is_empty() {
            continue;
        }
        let sec = mv.index;
        let old = img.old(sec);
        let base = mv.old_addr;
        let mut out = Vec::with_capacity(old.len());
        let mut at = 0usize;
        for e in mv.edits() {
            // An edit outside the section (planned from a corrupt symbol) is refused.
            let kept = e
                .at()
                .checked_sub(base)
                .and_then(|p| usize::try_from(p).ok())
                .and_then(|pos| Some((pos, old.get(at..pos)?)));
            let Some((pos, kept)) = kept else {
                return Err(Error::refused(format!(
                    "section {}: an edit at {:#x} lies outside its bytes",
                    img.file.sections[sec].name,
                    e.at()
                )));
            };
            out.extend_from_slice(kept);
            at = pos;
            match *e {
                Edit::Cut { len, .. } => at += len as usize,
                Edit::Insert { len, .. } => push_nops(&mut out, len, rvc),
            }
        }
        out.extend_from_slice(old.get(at..).unwrap_or_default());
        debug_assert_eq!(out.len() as u64, mv.new_size);
        // In-place layout: the freed tail is nops, and the section keeps its size.
        if img.plan.free.contains_key(&sec) {
            let tail = mv.old_size - mv.new_size;
            push_nops(&mut out, tail, rvc);
        }
        if img.data.len() <= sec {
            img.data.resize(sec + 1, None);
        }
        img.data[sec] = Some(out);
    }
    Ok(())
}

/// Appends `len` bytes of nops (4-byte `nop`s, then a `c.nop` for an odd half-word).
pub(crate) fn push_nops(out: &mut Vec<u8>, len: u64, rvc: bool) {
    let mut left = len;
    if rvc && left % 4 == 2 {
        out.extend_from_slice(&C_NOP.to_le_bytes());
        left -= 2;
    }
    while left >= 4 {
        out.extend_from_slice(&NOP.to_le_bytes());
        left -= 4;
    }
    // Odd leftovers cannot happen: every position is a multiple of 2.
    out.extend(std::iter::repeat(0).take(left as usize));
}

/// Writes the slots: a 4-byte slot becomes one aligned `nop`; larger slots keep their bytes.
fn write_slots(img: &mut Image<'_, '_>, sites: &[crate::scan::PatchSite]) -> Result<()> {
    for slot in &img.plan.slots.clone() {
        if slot.cut.keep_slot == 4 {
            if slot.slot_addr % 4 != 0 {
                return Err(Error::refused(format!(
                    "slot at {:#x} is not 4-byte aligned",
                    slot.slot_addr
                )));
            }
            let sec = sites[slot.site].section;
            img.write_new(sec, slot.slot_addr, 4, u64::from(NOP))?;
        }
    }
    Ok(())
}

/// The symbol value a relocation refers to, in the original file.
pub(crate) fn sym_value(symtab: &[crate::elf::Symbol<'_>], r: &Reloc) -> u64 {
    if r.sym == 0 {
        return 0;
    }
    symtab.get(r.sym as usize).map_or(0, |s| s.value)
}

/// Re-resolves every relocation and unrelocated PC-relative instruction.
pub fn relocate(
    file: &ElfFile<'_>,
    sites: &[crate::scan::PatchSite],
    plan: &Plan,
    relocs: &[RelocSection],
) -> Result<Fixed> {
    if !file.kind.is_linked() {
        return Err(Error::Unsupported(
            "rewriting relocatable objects (.o) is not implemented yet".into(),
        ));
    }
    let xlen = if file.is_64 { Xlen::Rv64 } else { Xlen::Rv32 };
    let mut img = Image {
        file,
        plan,
        xlen,
        data: vec![None; file.sections.len()],
        tls_got: HashSet::default(),
        pairs: HashMap::default(),
        plt: file
            .sections
            .iter()
            .filter(|s| s.is_exec() && matches!(s.name, ".plt" | ".plt.sec" | ".iplt"))
            .map(|s| s.addr..s.end())
            .collect(),
    };
    kernel::refuse_erased_relocations(file, relocs)?;
    build_exec_sections(&mut img)?;
    write_slots(&mut img, sites)?;

    let mut fixed = Fixed::default();
    let mut handled = AddrSet::for_code(file);

    // Table entries map to the planned first kept pad byte, not through the plain map.
    let entry_map: HashMap<u64, u64> = plan
        .slots
        .iter()
        .map(|s| (sites[s.site].entry, s.entry))
        .collect();
    let dyn_covered: HashSet<u64> = relocs
        .iter()
        .filter(|rs| file.sections[rs.index].is_alloc())
        .flat_map(|rs| rs.relocs.iter().map(|r| r.offset))
        .collect();

    // Pair %pcrel_lo relocations with their %pcrel_hi / %got_pcrel_hi instruction.
    let mut lo_partners: HashMap<u64, Vec<(usize, u64, u32)>> = HashMap::default();
    for rs in relocs
        .iter()
        .filter(|rs| !file.sections[rs.index].is_alloc())
    {
        for r in &rs.relocs {
            if r.r_type == elf::R_RISCV_PCREL_LO12_I.0 || r.r_type == elf::R_RISCV_PCREL_LO12_S.0 {
                let hi = sym_value(&file.symbols, r).wrapping_add(r.addend as u64);
                lo_partners
                    .entry(hi)
                    .or_default()
                    .push((rs.target, r.offset, r.r_type));
            }
        }
    }
    let gp_old = file.symbol_by_name("__global_pointer$").map(|s| s.value);

    let t_relocs = std::time::Instant::now();
    for rs in relocs {
        let is_dynamic = file.sections[rs.index].is_alloc();
        let dynsyms: Vec<crate::elf::Symbol<'_>>;
        let syms: &[crate::elf::Symbol<'_>] = if is_dynamic {
            dynsyms = file.dynamic_symbols()?;
            &dynsyms
        } else {
            &file.symbols
        };
        let ctx = SectionCtx {
            rs,
            syms,
            is_dynamic,
            table_section: file.sections[rs.target].name == crate::scan::TABLE_SECTION,
            table_range: file
                .section_by_name(crate::scan::TABLE_SECTION)
                .map(|t| t.addr..t.end()),
            entry_map: &entry_map,
            gp_old,
            lo_partners: &lo_partners,
        };
        let mut out = Vec::with_capacity(rs.relocs.len());
        {
            // Relocations are resolved in parallel against the original bytes; what they
            // change is applied afterwards in their original order, so the result (and the
            // first error) is the same as one pass in order would give.
            for window in rs.relocs.chunks(RELOC_CHUNK * RELOC_WINDOW) {
                let chunks: Vec<ChunkFix> = {
                    use rayon::prelude::*;
                    let img = &img;
                    window
                        .par_chunks(RELOC_CHUNK)
                        .map(|chunk| ctx.fix_chunk(img, chunk))
                        .collect()
                };
                for chunk in chunks {
                    for (t, n) in chunk.types {
                        *fixed.types.entry(t).or_insert(0) += n;
                    }
                    out.extend(chunk.relocs);
                    apply(&mut img, chunk.actions, &mut handled, &dyn_covered)?;
                    if let Some(e) = chunk.error {
                        return Err(e);
                    }
                }
            }
        }
        fixed.relocs.insert(rs.index, out);
    }

    crate::timing::record("relocate: relocations", t_relocs.elapsed());
    data::check_pairs(&img)?;
    // Every %pcrel_lo must have been fixed with an auipc that carries a %pcrel_hi.
    for &(_, lp, _) in lo_partners.values().flatten() {
        if !handled.contains(&lp) {
            return Err(Error::refused(format!("%pcrel_lo at {lp:#x} has no auipc")));
        }
    }
    fixed.unrelocated_fixups = crate::timing::phase("relocate: sweep", || {
        sweep::fix_unrelocated(&mut img, &handled)
    })?;
    data::fix_got(&mut img, &dyn_covered)?;
    data::fix_eh_frame_hdr(&mut img)?;
    if file.kind == crate::elf::FileKind::Vmlinux {
        fixed.kernel = kernel::fix_kernel_tables(&mut img)?;
    }
    fixed.data = img
        .data
        .into_iter()
        .enumerate()
        .filter_map(|(i, d)| Some((i, d?)))
        .collect();
    Ok(fixed)
}

/// Relocations resolved by one parallel task, and in each window of tasks.
const RELOC_CHUNK: usize = 2048;
const RELOC_WINDOW: usize = 32;

/// A change one relocation makes, applied in relocation order after the parallel
/// resolution (which reads only the original bytes).
enum Action {
    /// Write `raw` (`len` bytes) at new address `addr` of section `sec`.
    Write {
        sec: usize,
        addr: u64,
        len: u8,
        raw: u32,
    },
    /// The instruction at original address `addr` was fixed through a relocation.
    Handled(u64),
    /// The GOT slot at original address `addr` holds a TLS offset or module id.
    TlsGot(u64),
    /// A data relocation: it reads and writes the new bytes, so it runs in order.
    Data {
        sec: usize,
        r: Reloc,
        t_old: u64,
        t_new: u64,
        p_new: u64,
    },
    /// Write `value` (`len` bytes) at new address `addr` of section `sec` if the word there
    /// (as the changes before left it) holds `expect`; `None`: only read it.
    WriteIfWord {
        sec: usize,
        addr: u64,
        len: u8,
        expect: Option<u64>,
        value: u64,
    },
}

/// What a chunk of relocations resolved to.
struct ChunkFix {
    /// The new relocation entries, up to the first error.
    relocs: Vec<Reloc>,
    /// Their changes, in order.
    actions: Vec<Action>,
    /// Relocation type -> count.
    types: Vec<(u32, usize)>,
    /// The first error, after the changes of the relocations before it.
    error: Option<Error>,
}

/// What every relocation of one relocation section shares.
struct SectionCtx<'c, 'data> {
    rs: &'c RelocSection,
    syms: &'c [crate::elf::Symbol<'data>],
    is_dynamic: bool,
    /// The relocations apply to `__patchable_function_entries`.
    table_section: bool,
    table_range: Option<std::ops::Range<u64>>,
    entry_map: &'c HashMap<u64, u64>,
    gp_old: Option<u64>,
    lo_partners: &'c HashMap<u64, Vec<(usize, u64, u32)>>,
}

impl SectionCtx<'_, '_> {
    /// New address of target `t` of relocation `r`: patch-table entries map to the planned
    /// first kept pad byte, not through the plain map.
    fn map_target(&self, img: &Image<'_, '_>, r: &Reloc, t: u64) -> u64 {
        if self.table_section
            || (self.is_dynamic
                && self
                    .table_range
                    .as_ref()
                    .is_some_and(|rg| rg.contains(&r.offset)))
        {
            self.entry_map
                .get(&t)
                .copied()
                .unwrap_or_else(|| img.map(t))
        } else {
            img.map(t)
        }
    }

    /// Resolves a chunk of relocations against the original bytes.
    fn fix_chunk(&self, img: &Image<'_, '_>, chunk: &[Reloc]) -> ChunkFix {
        let mut fix = ChunkFix {
            relocs: Vec::with_capacity(chunk.len()),
            actions: Vec::with_capacity(chunk.len()),
            types: Vec::new(),
            error: None,
        };
        let mut types: BTreeMap<u32, usize> = BTreeMap::new();
        for r in chunk {
            *types.entry(r.r_type).or_insert(0) += 1;
            if self.is_dynamic {
                let mut new = *r;
                new.offset = img.map(r.offset);
                let map_t = |img: &Image<'_, '_>, t: u64| self.map_target(img, r, t);
                fix.actions
                    .extend(data::fix_dynamic(img, r, &mut new, &map_t));
                fix.relocs.push(new);
                continue;
            }
            match self.fix_static(img, r, &mut fix.actions) {
                Ok(new) => fix.relocs.push(new),
                Err(e) => {
                    fix.error = Some(e);
                    break;
                }
            }
        }
        fix.types = types.into_iter().collect();
        fix
    }

    /// Re-resolves one static relocation (one kept by `--emit-relocs`): its new entry, and
    /// the changes to the bytes it covers as actions.
    fn fix_static(
        &self,
        img: &Image<'_, '_>,
        r: &Reloc,
        actions: &mut Vec<Action>,
    ) -> Result<Reloc> {
        let s_old = sym_value(self.syms, r);
        let t_old = s_old.wrapping_add(r.addend as u64);
        let mut new = *r;
        new.offset = img.map_in(self.rs.target, r.offset);
        // Keep S' + A' = map(S + A) so the output's relocations stay true.
        let sym = self.syms.get(r.sym as usize);
        // An undefined symbol with a value is a non-PIE's canonical PLT entry: a real
        // address. One without is reached through the PLT or GOT: the bytes say where.
        let defined = r.sym == 0 || sym.is_some_and(|s| s.shndx != 0 || s.value != 0);
        let s_new = match sym {
            Some(s)
                if r.sym != 0
                    && (s.section().is_some()
                        || (s.shndx == 0 && s.value != 0)
                        || s.is_linker_address()) =>
            {
                img.map(s_old)
            }
            _ => s_old,
        };
        // ld's --emit-relocs writes gp-relative relocations as S + A = target - gp.
        let gprel = r.r_type == elf::R_RISCV_GPREL_I.0 || r.r_type == elf::R_RISCV_GPREL_S.0;
        let (gp, gp_new) = match (gprel, self.gp_old) {
            (true, Some(g)) => (g, img.map(g)),
            _ => (0, 0),
        };
        let t_old = t_old.wrapping_add(gp);
        let t_new = self.map_target(img, r, t_old);
        if defined {
            new.addend = t_new.wrapping_sub(gp_new).wrapping_sub(s_new) as i64;
        }
        // An absolute reference to an undefined symbol without a value (a weak one in a
        // static link) was resolved to 0 + A: it stays as it is.
        let absolute = [
            elf::R_RISCV_HI20.0,
            elf::R_RISCV_LO12_I.0,
            elf::R_RISCV_LO12_S.0,
            elf::R_RISCV_RVC_LUI.0,
        ]
        .contains(&r.r_type);
        let (t_old, t_new) = if defined {
            (t_old, t_new)
        } else if absolute {
            (t_old, t_old)
        } else {
            (u64::MAX, u64::MAX)
        };
        fix_one(
            img,
            self.rs,
            r,
            t_old,
            t_new,
            self.gp_old,
            self.lo_partners,
            actions,
        )?;
        Ok(new)
    }
}

/// Applies the changes of resolved static relocations, in order.
fn apply(
    img: &mut Image<'_, '_>,
    actions: Vec<Action>,
    handled: &mut AddrSet,
    dyn_covered: &HashSet<u64>,
) -> Result<()> {
    for a in actions {
        match a {
            Action::Write {
                sec,
                addr,
                len,
                raw,
            } => img.write_new(sec, addr, len as usize, u64::from(raw))?,
            Action::WriteIfWord {
                sec,
                addr,
                len,
                expect,
                value,
            } => {
                if Some(img.read_new(sec, addr, len as usize)?) == expect {
                    img.write_new(sec, addr, len as usize, value)?;
                }
            }
            Action::Handled(at) => handled.insert(at),
            Action::TlsGot(at) => {
                img.tls_got.insert(at);
            }
            Action::Data {
                sec,
                r,
                t_old,
                t_new,
                p_new,
            } => data::fix_data(img, sec, &r, t_old, t_new, p_new, dyn_covered)?,
        }
    }
    Ok(())
}

/// Re-resolves one static relocation (one kept by `--emit-relocs`).
#[allow(clippy::too_many_arguments)]
fn fix_one(
    img: &Image<'_, '_>,
    rs: &RelocSection,
    r: &Reloc,
    t_old: u64,
    t_new: u64,
    gp_old: Option<u64>,
    lo_partners: &HashMap<u64, Vec<(usize, u64, u32)>>,
    actions: &mut Vec<Action>,
) -> Result<()> {
    use elf::*;
    let sec = rs.target;
    let p = r.offset;
    let t = r.r_type;
    let p_new = img.map_in(sec, p);
    if img.file.sections[sec].is_alloc()
        && img.plan.map.is_cut(p)
        && t != R_RISCV_NONE.0
        && t != R_RISCV_ALIGN.0
        && t != R_RISCV_RELAX.0
    {
        return Err(Error::refused(format!(
            "relocation type {t} at {p:#x} lies in a removed pad"
        )));
    }
    match t {
        _ if t == R_RISCV_NONE.0 || t == R_RISCV_RELAX.0 || t == R_RISCV_ALIGN.0 => {}
        // TLS offsets are relative to the TLS block, whose layout does not change.
        _ if (R_RISCV_TPREL_HI20.0..=R_RISCV_TPREL_ADD.0).contains(&t)
            || t == R_RISCV_TPREL_I.0
            || t == R_RISCV_TPREL_S.0
            || t == R_RISCV_TLS_DTPMOD64.0
            || t == R_RISCV_TLS_DTPREL64.0
            || t == R_RISCV_TLS_DTPMOD32.0
            || t == R_RISCV_TLS_DTPREL32.0 => {}
        _ if t == R_RISCV_BRANCH.0
            || t == R_RISCV_JAL.0
            || t == R_RISCV_RVC_BRANCH.0
            || t == R_RISCV_RVC_JUMP.0 =>
        {
            let insn = img.old_insn(sec, p)?;
            let Some(old_target) = riscv::pc_target(&insn, p) else {
                return Err(Error::refused(format!(
                    "relocation type {t} at {p:#x} is not on a branch or jump"
                )));
            };
            // Undefined symbols, and preemptible ones in a shared object, are reached through
            // the PLT: the bytes say where, and the PLT stub is what must be mapped.
            let (t_old, t_new) = if t_old == u64::MAX || img.in_plt(old_target) {
                (old_target, img.map(old_target))
            } else {
                (t_old, t_new)
            };
            if old_target != t_old {
                return Err(Error::refused(format!(
                    "branch at {p:#x} goes to {old_target:#x} but its relocation says {t_old:#x}"
                )));
            }
            let raw = reencode_pc(&insn, t_new.wrapping_sub(p_new) as i64, p)?;
            actions.push(put_insn(img, sec, p, &insn, raw));
            actions.push(Action::Handled(p));
        }
        _ if t == R_RISCV_CALL.0 || t == R_RISCV_CALL_PLT.0 => {
            let auipc = img.old_insn(sec, p)?;
            let jalr = img.old_insn(sec, p + 4)?;
            let (Op::Auipc { imm, .. }, Op::Jalr { imm: lo, .. }) = (auipc.op, jalr.op) else {
                return Err(Error::refused(format!(
                    "call relocation at {p:#x} is not on auipc+jalr"
                )));
            };
            let old_target = p.wrapping_add(imm as u64).wrapping_add(lo as i64 as u64);
            // Undefined symbols, and preemptible ones in a shared object, are reached through
            // the PLT: the bytes say where, and the PLT stub is what must be mapped.
            let (t_old, t_new) = if t_old == u64::MAX || img.in_plt(old_target) {
                (old_target, img.map(old_target))
            } else {
                (t_old, t_new)
            };
            if old_target != t_old {
                return Err(Error::refused(format!(
                    "call at {p:#x} goes to {old_target:#x} but its relocation says {t_old:#x}"
                )));
            }
            let (hi, lo) = hi_lo(t_new.wrapping_sub(p_new) as i64).map_err(range(p, "call"))?;
            let a = riscv::with_u_imm(auipc.raw, hi).map_err(range(p, "call"))?;
            let j = riscv::with_i_imm(jalr.raw, lo).map_err(range(p, "call"))?;
            actions.push(put_insn(img, sec, p, &auipc, a));
            actions.push(put_insn(img, sec, p + 4, &jalr, j));
            actions.push(Action::Handled(p));
            actions.push(Action::Handled(p + 4));
        }
        _ if t == R_RISCV_PCREL_HI20.0
            || t == R_RISCV_GOT_HI20.0
            || t == R_RISCV_TLS_GOT_HI20.0
            || t == R_RISCV_TLS_GD_HI20.0 =>
        {
            let auipc = img.old_insn(sec, p)?;
            let Op::Auipc { imm, .. } = auipc.op else {
                return Err(Error::refused(format!(
                    "%pcrel_hi relocation at {p:#x} is not on auipc"
                )));
            };
            let partners = lo_partners.get(&p).map(Vec::as_slice).unwrap_or(&[]);
            // The full old target, from the bytes: auipc plus its first partner's low part.
            let mut lows = Vec::with_capacity(partners.len());
            for &(lsec, lp, ltype) in partners {
                let li = img.old_insn(lsec, lp)?;
                let lo = match (li.op, ltype == R_RISCV_PCREL_LO12_S.0) {
                    (Op::IType { imm, .. }, false) | (Op::Jalr { imm, .. }, false) => imm,
                    (Op::SType { imm, .. }, true) => imm,
                    _ => {
                        return Err(Error::refused(format!(
                            "%pcrel_lo relocation at {lp:#x} is not on a matching instruction"
                        )))
                    }
                };
                lows.push((lsec, lp, li, lo));
            }
            let full_old = match lows.first() {
                Some(&(_, _, _, lo)) => p.wrapping_add(imm as u64).wrapping_add(lo as i64 as u64),
                None => t_old,
            };
            let (t_old, t_new) = if t_old == u64::MAX {
                (full_old, img.map(full_old))
            } else {
                (t_old, t_new)
            };
            if t == R_RISCV_PCREL_HI20.0 && full_old != t_old {
                return Err(Error::refused(format!(
                    "auipc at {p:#x} reaches {full_old:#x} but its relocation says {t_old:#x}"
                )));
            }
            // GOT and TLS-GOT forms point at a GOT slot, which moves with its section.
            let full_new = if t == R_RISCV_PCREL_HI20.0 {
                t_new
            } else {
                img.map(full_old)
            };
            // Initial-exec uses one GOT word (the TP offset); general-dynamic two (module
            // id and offset). Neither holds an address.
            if t == R_RISCV_TLS_GOT_HI20.0 || t == R_RISCV_TLS_GD_HI20.0 {
                actions.push(Action::TlsGot(full_old));
            }
            if t == R_RISCV_TLS_GD_HI20.0 {
                // A crafted auipc can reach the top of the address space (fuzzing).
                actions.push(Action::TlsGot(
                    full_old.wrapping_add(img.file.ptr_size() as u64),
                ));
            }
            let (hi, lo) = hi_lo(full_new.wrapping_sub(p_new) as i64).map_err(range(p, "auipc"))?;
            let a = riscv::with_u_imm(auipc.raw, hi).map_err(range(p, "auipc"))?;
            actions.push(put_insn(img, sec, p, &auipc, a));
            actions.push(Action::Handled(p));
            for (lsec, lp, li, old_lo) in lows {
                let this_old = p
                    .wrapping_add(imm as u64)
                    .wrapping_add(old_lo as i64 as u64);
                if this_old != full_old {
                    return Err(Error::refused(format!(
                        "%pcrel_lo at {lp:#x} disagrees with its auipc at {p:#x}"
                    )));
                }
                let raw = match li.op {
                    Op::SType { .. } => riscv::with_s_imm(li.raw, lo),
                    _ => riscv::with_i_imm(li.raw, lo),
                }
                .map_err(range(lp, "%pcrel_lo"))?;
                actions.push(put_insn(img, lsec, lp, &li, raw));
                actions.push(Action::Handled(lp));
            }
        }
        // Fixed together with its auipc; `relocate` checks afterwards that each one was.
        _ if t == R_RISCV_PCREL_LO12_I.0 || t == R_RISCV_PCREL_LO12_S.0 => {}
        _ if t == R_RISCV_HI20.0
            || t == R_RISCV_LO12_I.0
            || t == R_RISCV_LO12_S.0
            || t == R_RISCV_RVC_LUI.0 =>
        {
            let insn = img.old_insn(sec, p)?;
            let (hi, lo) = hi_lo(t_new as i64).map_err(range(p, "absolute address"))?;
            let raw = match insn.op {
                Op::Lui { .. } if t == R_RISCV_HI20.0 => riscv::with_u_imm(insn.raw, hi),
                Op::CLui { .. } if t == R_RISCV_RVC_LUI.0 => {
                    riscv::with_clui_imm(insn.raw as u16, hi).map(u32::from)
                }
                // A relaxed `lui` is gone; its reference is an immediate on x0-based code.
                Op::IType { .. } | Op::Jalr { .. } if t == R_RISCV_LO12_I.0 => {
                    riscv::with_i_imm(insn.raw, lo)
                }
                Op::SType { .. } if t == R_RISCV_LO12_S.0 => riscv::with_s_imm(insn.raw, lo),
                _ => {
                    return Err(Error::refused(format!(
                        "relocation type {t} at {p:#x} is not on a matching instruction"
                    )))
                }
            }
            .map_err(range(p, "absolute address"))?;
            actions.push(put_insn(img, sec, p, &insn, raw));
            actions.push(Action::Handled(p));
        }
        _ if t == R_RISCV_GPREL_I.0 || t == R_RISCV_GPREL_S.0 => {
            let Some(gp) = gp_old else {
                return Err(Error::refused(format!(
                    "gp-relative access at {p:#x} but no __global_pointer$"
                )));
            };
            let insn = img.old_insn(sec, p)?;
            let value = t_new.wrapping_sub(img.map(gp)) as i64;
            let raw = match insn.op {
                Op::SType { .. } => riscv::with_s_imm(insn.raw, value),
                _ => riscv::with_i_imm(insn.raw, value),
            }
            .map_err(range(p, "gp-relative access"))?;
            actions.push(put_insn(img, sec, p, &insn, raw));
            actions.push(Action::Handled(p));
        }
        _ => actions.push(Action::Data {
            sec,
            r: *r,
            t_old,
            t_new,
            p_new,
        }),
    }
    Ok(())
}

/// The write of a re-encoded instruction at the new place of original address `addr`.
fn put_insn(img: &Image<'_, '_>, sec: usize, addr: u64, insn: &Insn, raw: u32) -> Action {
    Action::Write {
        sec,
        addr: img.map_in(sec, addr),
        len: insn.len,
        raw,
    }
}

/// Re-encodes a branch or jump with a new offset.
fn reencode_pc(insn: &Insn, off: i64, at: u64) -> Result<u32> {
    let what = "branch or jump";
    Ok(match insn.op {
        Op::Branch { .. } => riscv::with_branch_offset(insn.raw, off).map_err(range(at, what))?,
        Op::Jal { .. } => riscv::with_jal_offset(insn.raw, off).map_err(range(at, what))?,
        Op::CBranch { .. } => {
            u32::from(riscv::with_cbranch_offset(insn.raw as u16, off).map_err(range(at, what))?)
        }
        Op::CJ { .. } | Op::CJal { .. } => {
            u32::from(riscv::with_cj_offset(insn.raw as u16, off).map_err(range(at, what))?)
        }
        _ => {
            return Err(Error::refused(format!(
                "instruction at {at:#x} is not a branch or jump"
            )))
        }
    })
}
