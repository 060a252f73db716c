//! PC-relative instructions the assembler resolved without a relocation (code assembled
//! with `-mno-relax`, clang's integrated assembler, hand-written assembly): found by
//! decoding each edited section, and re-encoded when the distance to their target changed.

use std::collections::HashSet;

use object::elf;

use super::cut::SectionPlan;
use crate::elf::{ElfFile, Reloc};
use crate::error::{Error, Result};
use crate::riscv::{self, decode, hi_lo, DecodeError, Insn, Op, Xlen};

/// How many instructions after an unrelocated `auipc` its users are searched for.
const AUIPC_WINDOW: usize = 8;

/// Ranges of a section that hold data, from its `$d`/`$x` mapping symbols.
fn data_ranges(file: &ElfFile<'_>, symbols: &[usize], size: u64) -> Vec<(u64, u64)> {
    let mut marks: Vec<(u64, bool)> = symbols
        .iter()
        .map(|&k| &file.symbols[k])
        .filter_map(|s| match s.name {
            "$d" => Some((s.value, true)),
            n if n.starts_with("$x") => Some((s.value, false)),
            _ => None,
        })
        .collect();
    marks.sort_unstable();
    let mut out = Vec::new();
    for (k, &(at, data)) in marks.iter().enumerate() {
        if data {
            let end = marks.get(k + 1).map_or(size, |m| m.0);
            out.push((at, end));
        }
    }
    out
}

/// Offsets of instructions whose immediates a relocation sets (the linker fixes them).
fn relocated(relocs: &[Reloc]) -> HashSet<u64> {
    let mut out = HashSet::new();
    for r in relocs {
        let t = r.r_type;
        if t == elf::R_RISCV_NONE.0 || t == elf::R_RISCV_RELAX.0 || t == elf::R_RISCV_ALIGN.0 {
            continue;
        }
        out.insert(r.offset);
        if t == elf::R_RISCV_CALL.0 || t == elf::R_RISCV_CALL_PLT.0 {
            out.insert(r.offset + 4);
        }
    }
    out
}

/// The context of one section's sweep.
struct Sweep<'a> {
    name: &'a str,
    old: &'a [u8],
    plan: &'a mut SectionPlan,
    xlen: Xlen,
    handled: HashSet<u64>,
}

impl Sweep<'_> {
    fn refuse(&self, at: u64, what: impl std::fmt::Display) -> Error {
        Error::refused(format!("{}+{at:#x}: {what}", self.name))
    }

    /// Writes `raw` over the new copy of the instruction at old offset `at`, which must
    /// have been kept whole.
    fn put(&mut self, at: u64, insn: &Insn, raw: u32) -> Result<()> {
        let len = u64::from(insn.len);
        let new = self.plan.map.map(at);
        let last = at + len - 1;
        if self.plan.map.is_removed(last) || self.plan.map.map(last) != new + len - 1 {
            return Err(self.refuse(at, "instruction overlaps a removed pad"));
        }
        let (new, len) = (new as usize, len as usize);
        self.plan.bytes[new..new + len].copy_from_slice(&raw.to_le_bytes()[..len]);
        Ok(())
    }

    /// New distance from the instruction at `at` to old offset `target` in this section.
    /// A function entry with an inserted slot is the slot, unless `jump` (a branch or jump
    /// that does not link) loops back to it from inside the function.
    fn new_distance(&self, at: u64, target: i64, jump: bool) -> Result<i64> {
        if target < 0 || target as u64 > self.plan.map.old_size() {
            return Err(self.refuse(
                at,
                format!("PC-relative reference without a relocation leaves its section (to {target:#x})"),
            ));
        }
        let map = &self.plan.map;
        let target = target as u64;
        let new_target = if jump && map.loops_to_own_entry(at, target) {
            map.map(target)
        } else {
            map.map_reference(target)
        };
        Ok(new_target as i64 - map.map(at) as i64)
    }

    /// Fixes a branch or jump; returns whether it changed.
    fn branch(&mut self, at: u64, insn: &Insn, offset: i64) -> Result<bool> {
        let links = match insn.op {
            Op::Jal { rd, .. } => rd != 0,
            Op::CJal { .. } => true,
            _ => false,
        };
        let new = self.new_distance(at, at as i64 + offset, !links)?;
        if new == offset {
            return Ok(false);
        }
        let raw = match insn.op {
            Op::Branch { .. } => riscv::with_branch_offset(insn.raw, new),
            Op::Jal { .. } => riscv::with_jal_offset(insn.raw, new),
            Op::CBranch { .. } => riscv::with_cbranch_offset(insn.raw as u16, new).map(u32::from),
            _ => riscv::with_cj_offset(insn.raw as u16, new).map(u32::from),
        }
        .map_err(|e| {
            self.refuse(
                at,
                format!("branch or jump cannot reach its moved target: {e}"),
            )
        })?;
        self.put(at, insn, raw)?;
        Ok(true)
    }

    /// Fixes an `auipc` and the instructions that use its result; returns how many
    /// instructions changed.
    fn auipc(&mut self, at: u64, insn: &Insn, rd: u8, imm: i64) -> Result<usize> {
        let mut users = Vec::new();
        let mut off = at as usize + 4;
        for _ in 0..AUIPC_WINDOW {
            let Ok(i) = decode(self.old.get(off..).unwrap_or(&[]), self.xlen) else {
                break;
            };
            let (base, lo, writes) = match i.op {
                Op::IType { rd: d, rs1, imm } => (rs1, Some(imm), Some(d)),
                Op::SType { rs1, imm, .. } => (rs1, Some(imm), None),
                Op::Jalr { rd: d, rs1, imm } if i.len == 4 => (rs1, Some(imm), Some(d)),
                Op::Lui { rd: d, .. } | Op::Auipc { rd: d, .. } => (u8::MAX, None, Some(d)),
                _ if i.op.is_pc_relative() || matches!(i.op, Op::Jalr { .. }) => break,
                _ => (u8::MAX, None, None),
            };
            if base == rd && !self.handled.contains(&(off as u64)) {
                if let Some(lo) = lo {
                    users.push((off as u64, i, i64::from(lo)));
                }
            }
            if writes == Some(rd) || matches!(i.op, Op::Jalr { .. }) {
                break;
            }
            off += i.len as usize;
        }
        if users.is_empty() {
            let page = at as i64 + imm;
            if self.new_distance(at, page, false).ok() != Some(imm) {
                return Err(self.refuse(
                    at,
                    "auipc without a relocation and without a recognisable user: its target cannot be trusted",
                ));
            }
            return Ok(0);
        }
        let mut news = Vec::with_capacity(users.len());
        for &(_, i, lo) in &users {
            let jump = matches!(i.op, Op::Jalr { rd: 0, .. });
            news.push(self.new_distance(at, at as i64 + imm + lo, jump)?);
        }
        if users.iter().zip(&news).all(|(u, &n)| n == imm + u.2) {
            return Ok(0);
        }
        let (hi, _) = hi_lo(news[0]).map_err(|e| self.refuse(at, e))?;
        let raw = riscv::with_u_imm(insn.raw, hi).map_err(|e| self.refuse(at, e))?;
        self.put(at, insn, raw)?;
        for (&(pc, i, _), &n) in users.iter().zip(&news) {
            let lo = n - (hi << 12);
            let raw = match i.op {
                Op::SType { .. } => riscv::with_s_imm(i.raw, lo),
                _ => riscv::with_i_imm(i.raw, lo),
            }
            .map_err(|e| self.refuse(pc, format!("user of the auipc at {at:#x}: {e}")))?;
            self.put(pc, &i, raw)?;
        }
        Ok(1 + users.len())
    }
}

/// Fixes every unrelocated PC-relative instruction of an edited section; returns how
/// many instructions were rewritten.
pub fn fix_section(
    file: &ElfFile<'_>,
    plan: &mut SectionPlan,
    relocs: &[Reloc],
    symbols: &[usize],
) -> Result<usize> {
    let sec = &file.sections[plan.index];
    let old = file.section_data(sec)?;
    let data = data_ranges(file, symbols, old.len() as u64);
    let mut sweep = Sweep {
        name: sec.name,
        old,
        plan,
        xlen: if file.is_64 { Xlen::Rv64 } else { Xlen::Rv32 },
        handled: relocated(relocs),
    };
    let mut fixed = 0;
    let mut off = 0usize;
    while off + 2 <= old.len() {
        let at = off as u64;
        // Data ranges are sorted and disjoint.
        let k = data.partition_point(|&(_, e)| e <= at);
        if let Some(&(s, end)) = data.get(k) {
            if at >= s {
                off = end as usize;
                continue;
            }
        }
        let insn = match decode(&old[off..], sweep.xlen) {
            Ok(i) => i,
            // Instruction lengths come from the low bits alone, so an instruction the
            // decoder does not know keeps the sweep in step; none of them reads the PC.
            Err(DecodeError::Unknown { len, .. }) => {
                off += len as usize;
                continue;
            }
            Err(_) => {
                off += 2;
                continue;
            }
        };
        let len = insn.len as usize;
        if sweep.handled.contains(&at) || sweep.plan.map.is_removed(at) {
            off += len;
            continue;
        }
        match insn.op {
            Op::Branch { offset, .. }
            | Op::Jal { offset, .. }
            | Op::CBranch { offset, .. }
            | Op::CJ { offset }
            | Op::CJal { offset }
                if sweep.branch(at, &insn, i64::from(offset))? =>
            {
                fixed += 1;
            }
            Op::Auipc { rd, imm } => fixed += sweep.auipc(at, &insn, rd, imm)?,
            _ => {}
        }
        off += len;
    }
    Ok(fixed)
}
