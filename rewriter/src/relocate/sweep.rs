//! The decoding sweep: PC-relative instructions that carry no relocation (hand-written
//! assembly, linker stubs such as the PLT) are found by decoding every executable section
//! and fixed from their decoded targets.

use super::addr_set::AddrSet;
use super::Image;
use crate::error::{Error, Result};
use crate::riscv::{self, decode, hi_lo, Op};

/// How far after an unrelocated `auipc` its users are searched for.
const AUIPC_WINDOW: usize = 8;

/// Fixes every unrelocated PC-relative instruction whose distance to its target changed.
/// Returns how many instructions were rewritten.
pub(super) fn fix_unrelocated(img: &mut Image<'_, '_>, handled: &AddrSet) -> Result<usize> {
    let mut fixed = 0;
    let sections: Vec<usize> = img
        .file
        .sections
        .iter()
        .filter(|s| s.is_exec() && s.is_alloc() && !s.is_nobits())
        .map(|s| s.index)
        .collect();
    for sec in sections {
        let s = &img.file.sections[sec];
        let base = s.addr;
        let old = img.old(sec);
        let moved = img
            .plan
            .map
            .section(sec)
            .is_some_and(|m| !m.edits().is_empty() || m.new_addr != base);
        let mut off = 0usize;
        while off + 2 <= old.len() {
            let at = base + off as u64;
            let insn = match decode(&old[off..], img.xlen) {
                Ok(i) => i,
                Err(riscv::DecodeError::AllZero) => {
                    // Zero fill between functions is padding, not code.
                    off += 2;
                    continue;
                }
                Err(e) if moved || img.plan.map.is_cut(at) => {
                    return Err(Error::refused(format!(
                        "unknown instruction at {at:#x} in a moved range: {e}"
                    )));
                }
                Err(_) => {
                    off += 2;
                    continue;
                }
            };
            let len = insn.len as usize;
            if handled.contains(&at) {
                off += len;
                continue;
            }
            if let Some(target) = riscv::pc_target(&insn, at) {
                let p_new = img.map_in(sec, at);
                let t_new = img.map(target);
                let new_off = t_new.wrapping_sub(p_new) as i64;
                let old_off = target.wrapping_sub(at) as i64;
                if new_off != old_off && !img.plan.map.is_cut(at) {
                    let raw = super::reencode_pc(&insn, new_off, at)?;
                    img.put_insn(sec, at, &insn, raw)?;
                    fixed += 1;
                }
            } else if let Op::Auipc { rd, imm } = insn.op {
                fixed += fix_auipc(img, sec, at, rd, imm, handled)?;
            }
            off += len;
        }
    }
    Ok(fixed)
}

/// Fixes an unrelocated `auipc` and the instructions that use its result as a base.
fn fix_auipc(
    img: &mut Image<'_, '_>,
    sec: usize,
    at: u64,
    rd: u8,
    imm: i64,
    handled: &AddrSet,
) -> Result<usize> {
    let s = &img.file.sections[sec];
    let old = img.old(sec);
    let mut users = Vec::new();
    let mut off = (at - s.addr) as usize + 4;
    for _ in 0..AUIPC_WINDOW {
        let Ok(i) = decode(&old[off.min(old.len())..], img.xlen) else {
            break;
        };
        let pc = s.addr + off as u64;
        let (base, lo, writes) = match i.op {
            Op::IType { rd: d, rs1, imm } => (rs1, Some(imm), Some(d)),
            Op::SType { rs1, imm, .. } => (rs1, Some(imm), None),
            Op::Jalr { rd: d, rs1, imm } if i.len == 4 => (rs1, Some(imm), Some(d)),
            Op::Lui { rd: d, .. } | Op::Auipc { rd: d, .. } => (u8::MAX, None, Some(d)),
            _ if riscv::pc_target(&i, pc).is_some() || matches!(i.op, Op::Jalr { .. }) => break,
            _ => (u8::MAX, None, None),
        };
        if base == rd && !handled.contains(&pc) {
            if let Some(lo) = lo {
                users.push((pc, i, lo));
            }
        }
        if writes == Some(rd) || matches!(i.op, Op::Jalr { .. }) {
            break;
        }
        off += i.len as usize;
    }
    let p_new = img.map_in(sec, at);
    let moved = |img: &Image<'_, '_>, t: u64| img.map(t).wrapping_sub(p_new) != t.wrapping_sub(at);
    if users.is_empty() {
        let page = at.wrapping_add(imm as u64);
        if moved(img, page) {
            return Err(Error::refused(format!(
                "auipc at {at:#x} has no relocation and no recognisable user; its target cannot be trusted"
            )));
        }
        return Ok(0);
    }
    let targets: Vec<u64> = users
        .iter()
        .map(|&(_, _, lo)| at.wrapping_add(imm as u64).wrapping_add(lo as i64 as u64))
        .collect();
    if !targets.iter().any(|&t| moved(img, t)) {
        return Ok(0);
    }
    let first_new = img.map(targets[0]).wrapping_sub(p_new) as i64;
    let (hi, _) = hi_lo(first_new).map_err(|e| Error::refused(format!("auipc at {at:#x}: {e}")))?;
    let auipc = img.old_insn(sec, at)?;
    let a = riscv::with_u_imm(auipc.raw, hi)
        .map_err(|e| Error::refused(format!("auipc at {at:#x}: {e}")))?;
    img.put_insn(sec, at, &auipc, a)?;
    for (&(pc, i, _), &t) in users.iter().zip(&targets) {
        let lo = img.map(t).wrapping_sub(p_new) as i64 - (hi << 12);
        let raw = match i.op {
            Op::SType { .. } => riscv::with_s_imm(i.raw, lo),
            _ => riscv::with_i_imm(i.raw, lo),
        }
        .map_err(|e| Error::refused(format!("user of auipc at {pc:#x}: {e}")))?;
        img.put_insn(sec, pc, &i, raw)?;
    }
    Ok(1 + users.len())
}
