//! Re-resolving the relocations of one relocation section against the plan: in parallel
//! chunks against the original bytes, their changes applied afterwards in order.

use std::collections::BTreeMap;

// Keys are addresses. FxHash is several times faster than SipHash here; a crafted input
// could only make hashing slower, never wrong.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use object::elf;

use super::addr_set::AddrSet;
use super::data;
use super::encode::{range, reencode_pc};
use super::image::{Action, Image};
use crate::elf::{ElfFile, Reloc, RelocSection};
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::riscv::{self, hi_lo, Insn, Op};

/// The symbol value a relocation refers to, in the original file.
pub(super) fn sym_value(symtab: &[crate::elf::Symbol<'_>], r: &Reloc) -> u64 {
    if r.sym == 0 {
        return 0;
    }
    symtab.get(r.sym as usize).map_or(0, |s| s.value)
}

/// Relocations resolved by one parallel task, and in each window of tasks.
const RELOC_CHUNK: usize = 2048;
const RELOC_WINDOW: usize = 32;

/// What the resolution of every relocation section shares, gathered once.
pub(super) struct Resolver {
    /// Table entries map to the planned first kept pad byte, not through the plain map.
    entry_map: HashMap<u64, u64>,
    /// Places a dynamic relocation covers.
    pub dyn_covered: HashSet<u64>,
    /// `%pcrel_lo` relocations (section, place, type) by their `%pcrel_hi` /
    /// `%got_pcrel_hi` instruction.
    lo_partners: HashMap<u64, Vec<(usize, u64, u32)>>,
    /// Original value of `__global_pointer$`.
    gp_old: Option<u64>,
}

impl Resolver {
    /// Gathers what the relocations of `file` share.
    pub fn new(
        file: &ElfFile<'_>,
        sites: &[crate::scan::PatchSite],
        plan: &Plan,
        relocs: &[RelocSection],
    ) -> Self {
        let entry_map = plan
            .slots
            .iter()
            .map(|s| (sites[s.site].entry, s.entry))
            .collect();
        let dyn_covered = relocs
            .iter()
            .filter(|rs| file.sections[rs.index].is_alloc())
            .flat_map(|rs| rs.relocs.iter().map(|r| r.offset))
            .collect();
        Resolver {
            entry_map,
            dyn_covered,
            lo_partners: lo_partners(file, relocs),
            gp_old: file.symbol_by_name("__global_pointer$").map(|s| s.value),
        }
    }

    /// Resolves relocation section `rs`: returns its new entries; the changes go into
    /// `img`, the counts by type into `types`, the fixed instructions into `handled`.
    pub fn fix_section(
        &self,
        img: &mut Image<'_, '_>,
        rs: &RelocSection,
        types: &mut BTreeMap<u32, usize>,
        handled: &mut AddrSet,
    ) -> Result<Vec<Reloc>> {
        let file = img.file;
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
            entry_map: &self.entry_map,
            gp_old: self.gp_old,
            lo_partners: &self.lo_partners,
        };
        let mut out = Vec::with_capacity(rs.relocs.len());
        // Relocations are resolved in parallel against the original bytes; what they
        // change is applied afterwards in their original order, so the result (and the
        // first error) is the same as one pass in order would give.
        for window in rs.relocs.chunks(RELOC_CHUNK * RELOC_WINDOW) {
            let chunks: Vec<ChunkFix> = {
                use rayon::prelude::*;
                let img = &*img;
                window
                    .par_chunks(RELOC_CHUNK)
                    .map(|chunk| ctx.fix_chunk(img, chunk))
                    .collect()
            };
            for chunk in chunks {
                for (t, n) in chunk.types {
                    *types.entry(t).or_insert(0) += n;
                }
                out.extend(chunk.relocs);
                apply(img, chunk.actions, handled, &self.dyn_covered)?;
                if let Some(e) = chunk.error {
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Every `%pcrel_lo` must have been fixed with an auipc that carries a `%pcrel_hi`.
    pub fn check_lo_fixed(&self, handled: &AddrSet) -> Result<()> {
        for &(_, lp, _) in self.lo_partners.values().flatten() {
            if !handled.contains(&lp) {
                return Err(Error::refused(format!("%pcrel_lo at {lp:#x} has no auipc")));
            }
        }
        Ok(())
    }
}

/// Pairs each `%pcrel_lo` relocation with its `%pcrel_hi` / `%got_pcrel_hi` instruction.
fn lo_partners(
    file: &ElfFile<'_>,
    relocs: &[RelocSection],
) -> HashMap<u64, Vec<(usize, u64, u32)>> {
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
    lo_partners
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
        // A `%pcrel_lo` names its auipc: a place, behind a slot inserted at an entry.
        let t_new =
            if r.r_type == elf::R_RISCV_PCREL_LO12_I.0 || r.r_type == elf::R_RISCV_PCREL_LO12_S.0 {
                img.map_place(t_old)
            } else {
                self.map_target(img, r, t_old)
            };
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
        self.fix_one(img, r, t_old, t_new, actions)?;
        Ok(new)
    }

    /// Re-resolves one static relocation (one kept by `--emit-relocs`) from its original
    /// and new target (`u64::MAX` for both: the bytes say where it goes).
    fn fix_one(
        &self,
        img: &Image<'_, '_>,
        r: &Reloc,
        t_old: u64,
        t_new: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        use elf::*;
        let sec = self.rs.target;
        let p = r.offset;
        let t = r.r_type;
        let p_new = img.map_in(sec, p);
        refuse_in_removed_pad(img, sec, p, t)?;
        let fix = RelocFix {
            img,
            sec,
            p,
            p_new,
            t,
            t_old,
            t_new,
        };
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
                fix.branch(actions)?
            }
            _ if t == R_RISCV_CALL.0 || t == R_RISCV_CALL_PLT.0 => fix.call(actions)?,
            _ if t == R_RISCV_PCREL_HI20.0
                || t == R_RISCV_GOT_HI20.0
                || t == R_RISCV_TLS_GOT_HI20.0
                || t == R_RISCV_TLS_GD_HI20.0 =>
            {
                let partners = self.lo_partners.get(&p).map(Vec::as_slice).unwrap_or(&[]);
                fix.pcrel_hi(partners, actions)?
            }
            // Fixed together with its auipc; `relocate` checks afterwards that each one was.
            _ if t == R_RISCV_PCREL_LO12_I.0 || t == R_RISCV_PCREL_LO12_S.0 => {}
            _ if t == R_RISCV_HI20.0
                || t == R_RISCV_LO12_I.0
                || t == R_RISCV_LO12_S.0
                || t == R_RISCV_RVC_LUI.0 =>
            {
                fix.absolute(actions)?
            }
            _ if t == R_RISCV_GPREL_I.0 || t == R_RISCV_GPREL_S.0 => {
                fix.gp_relative(self.gp_old, actions)?
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
}

/// A `jal` (relaxed from a call by the linker) that no longer reaches its target once code
/// grew (`rewrite --insert`) is refused with the way out; other errors pass unchanged.
fn relaxed_out_of_reach(img: &Image<'_, '_>, insn: &Insn, e: Error) -> Error {
    if img.plan.inserted.is_empty() || !matches!(insn.op, Op::Jal { .. }) {
        return e;
    }
    let why = match e {
        Error::Refused(m) => m,
        other => other.to_string(),
    };
    Error::refused(format!(
        "{why}: a jal the linker relaxed from a call no longer reaches its target once slots \
         are inserted; relink with -Wl,--no-relax"
    ))
}

/// Refuses a relocation at `p` of section `sec` (other than a marker without a value)
/// whose place lies in a removed pad.
fn refuse_in_removed_pad(img: &Image<'_, '_>, sec: usize, p: u64, t: u32) -> Result<()> {
    use elf::*;
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
    Ok(())
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

/// A `%pcrel_lo` partner of an auipc: section, place, instruction and old low part.
type LowPart = (usize, u64, Insn, i32);

/// One static relocation on an instruction being fixed: its place, type and targets.
struct RelocFix<'i, 'a, 'data> {
    img: &'i Image<'a, 'data>,
    /// Section of the place.
    sec: usize,
    /// Original and new address of the place.
    p: u64,
    p_new: u64,
    /// Relocation type.
    t: u32,
    /// Original and new target (`u64::MAX` for both: the bytes say).
    t_old: u64,
    t_new: u64,
}

impl RelocFix<'_, '_, '_> {
    /// The (original, new) target of a branch or call that the bytes send to `old_target`.
    fn through_plt(&self, old_target: u64) -> (u64, u64) {
        // Undefined symbols, and preemptible ones in a shared object, are reached through
        // the PLT: the bytes say where, and the PLT stub is what must be mapped.
        if self.t_old == u64::MAX || self.img.in_plt(old_target) {
            (old_target, self.img.map(old_target))
        } else {
            (self.t_old, self.t_new)
        }
    }

    /// A branch or jump: its offset, after checking that the bytes go where it says.
    fn branch(&self, actions: &mut Vec<Action>) -> Result<()> {
        let (img, sec, p, t) = (self.img, self.sec, self.p, self.t);
        let insn = img.old_insn(sec, p)?;
        let Some(old_target) = riscv::pc_target(&insn, p) else {
            return Err(Error::refused(format!(
                "relocation type {t} at {p:#x} is not on a branch or jump"
            )));
        };
        let (t_old, t_new) = self.through_plt(old_target);
        if old_target != t_old {
            return Err(Error::refused(format!(
                "branch at {p:#x} goes to {old_target:#x} but its relocation says {t_old:#x}"
            )));
        }
        let links =
            matches!(insn.op, Op::Jal { rd, .. } if rd != 0) || matches!(insn.op, Op::CJal { .. });
        let t_new = if links {
            t_new
        } else {
            img.plan.behind_slot(p, t_old).unwrap_or(t_new)
        };
        let raw = reencode_pc(&insn, t_new.wrapping_sub(self.p_new) as i64, p)
            .map_err(|e| relaxed_out_of_reach(img, &insn, e))?;
        actions.push(put_insn(img, sec, p, &insn, raw));
        actions.push(Action::Handled(p));
        Ok(())
    }

    /// A call (`auipc` + `jalr`): both halves of its offset.
    fn call(&self, actions: &mut Vec<Action>) -> Result<()> {
        let (img, sec, p) = (self.img, self.sec, self.p);
        let auipc = img.old_insn(sec, p)?;
        let jalr = img.old_insn(sec, p + 4)?;
        let (Op::Auipc { imm, .. }, Op::Jalr { imm: lo, .. }) = (auipc.op, jalr.op) else {
            return Err(Error::refused(format!(
                "call relocation at {p:#x} is not on auipc+jalr"
            )));
        };
        let old_target = p.wrapping_add(imm as u64).wrapping_add(lo as i64 as u64);
        let (t_old, t_new) = self.through_plt(old_target);
        if old_target != t_old {
            return Err(Error::refused(format!(
                "call at {p:#x} goes to {old_target:#x} but its relocation says {t_old:#x}"
            )));
        }
        // A tail call (`jr`) of its own function is a loop: behind the slot.
        let t_new = match jalr.op {
            Op::Jalr { rd: 0, .. } => img.plan.behind_slot(p, t_old).unwrap_or(t_new),
            _ => t_new,
        };
        let (hi, lo) = hi_lo(t_new.wrapping_sub(self.p_new) as i64).map_err(range(p, "call"))?;
        let a = riscv::with_u_imm(auipc.raw, hi).map_err(range(p, "call"))?;
        let j = riscv::with_i_imm(jalr.raw, lo).map_err(range(p, "call"))?;
        actions.push(put_insn(img, sec, p, &auipc, a));
        actions.push(put_insn(img, sec, p + 4, &jalr, j));
        actions.push(Action::Handled(p));
        actions.push(Action::Handled(p + 4));
        Ok(())
    }

    /// A `%pcrel_hi` (or GOT / TLS-GOT) auipc and its `%pcrel_lo` partners: the new high
    /// part, and the low parts of every partner.
    fn pcrel_hi(&self, partners: &[(usize, u64, u32)], actions: &mut Vec<Action>) -> Result<()> {
        use elf::*;
        let (img, sec, p, t) = (self.img, self.sec, self.p, self.t);
        let auipc = img.old_insn(sec, p)?;
        let Op::Auipc { imm, .. } = auipc.op else {
            return Err(Error::refused(format!(
                "%pcrel_hi relocation at {p:#x} is not on auipc"
            )));
        };
        let lows = low_parts(img, partners)?;
        // The full old target, from the bytes: auipc plus its first partner's low part.
        let full_old = match lows.first() {
            Some(&(_, _, _, lo)) => p.wrapping_add(imm as u64).wrapping_add(lo as i64 as u64),
            None => self.t_old,
        };
        let (t_old, t_new) = if self.t_old == u64::MAX {
            (full_old, img.map(full_old))
        } else {
            (self.t_old, self.t_new)
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
        let (hi, lo) =
            hi_lo(full_new.wrapping_sub(self.p_new) as i64).map_err(range(p, "auipc"))?;
        let a = riscv::with_u_imm(auipc.raw, hi).map_err(range(p, "auipc"))?;
        actions.push(put_insn(img, sec, p, &auipc, a));
        actions.push(Action::Handled(p));
        self.pcrel_lows(lows, imm, full_old, lo, actions)
    }

    /// The low parts of the `%pcrel_lo` partners of the auipc (immediate `imm`) reaching
    /// `full_old`: each must agree with it, and each gets the new low part `lo`.
    fn pcrel_lows(
        &self,
        lows: Vec<LowPart>,
        imm: i64,
        full_old: u64,
        lo: i64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let p = self.p;
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
            actions.push(put_insn(self.img, lsec, lp, &li, raw));
            actions.push(Action::Handled(lp));
        }
        Ok(())
    }

    /// An absolute address in a `lui`, `c.lui` or the instruction using its low part.
    fn absolute(&self, actions: &mut Vec<Action>) -> Result<()> {
        use elf::*;
        let (img, sec, p, t) = (self.img, self.sec, self.p, self.t);
        let insn = img.old_insn(sec, p)?;
        let (hi, lo) = hi_lo(self.t_new as i64).map_err(range(p, "absolute address"))?;
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
        Ok(())
    }

    /// A gp-relative access: its offset from the new `__global_pointer$`.
    fn gp_relative(&self, gp_old: Option<u64>, actions: &mut Vec<Action>) -> Result<()> {
        let (img, sec, p) = (self.img, self.sec, self.p);
        let Some(gp) = gp_old else {
            return Err(Error::refused(format!(
                "gp-relative access at {p:#x} but no __global_pointer$"
            )));
        };
        let insn = img.old_insn(sec, p)?;
        let value = self.t_new.wrapping_sub(img.map(gp)) as i64;
        let raw = match insn.op {
            Op::SType { .. } => riscv::with_s_imm(insn.raw, value),
            _ => riscv::with_i_imm(insn.raw, value),
        }
        .map_err(range(p, "gp-relative access"))?;
        actions.push(put_insn(img, sec, p, &insn, raw));
        actions.push(Action::Handled(p));
        Ok(())
    }
}

/// The `%pcrel_lo` partners of an auipc, read from their instructions: the full old target
/// comes from the first one's low part.
fn low_parts(img: &Image<'_, '_>, partners: &[(usize, u64, u32)]) -> Result<Vec<LowPart>> {
    let mut lows = Vec::with_capacity(partners.len());
    for &(lsec, lp, ltype) in partners {
        let li = img.old_insn(lsec, lp)?;
        let lo = match (li.op, ltype == elf::R_RISCV_PCREL_LO12_S.0) {
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
    Ok(lows)
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
