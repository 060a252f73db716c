//! The decoding sweep: PC-relative instructions that carry no relocation (hand-written
//! assembly, linker stubs such as the PLT) are found by decoding every executable section
//! and fixed from their decoded targets.

use super::addr_set::AddrSet;
use super::encode::reencode_pc;
use super::image::Image;
use crate::error::{Error, Result};
use crate::riscv::{self, decode, hi_lo, Insn, Op};

/// How far after an unrelocated `auipc` its users are searched for.
const AUIPC_WINDOW: usize = 8;

/// An instruction the sweep rewrites: original address, its decoding, new bits.
type Put = (u64, Insn, u32);

/// Bytes of code one parallel piece of the sweep covers, at least.
const PIECE: usize = 64 * 1024;

/// What a sweep over part of a section found.
struct Swept {
    /// Instructions to rewrite, in address order.
    puts: Vec<Put>,
    /// The error that stopped the sweep, after `puts`.
    error: Option<Error>,
}

/// Fixes every unrelocated PC-relative instruction whose distance to its target changed.
/// Returns how many instructions were rewritten.
///
/// The sweep is linear (each instruction starts where the previous one ended) and reads only
/// the original bytes and the plan, so it runs in parallel pieces that start at code labels;
/// a piece counts only if the piece before it ended exactly where it starts (else it is swept
/// again from there). The rewrites are then applied in address order: the result and the
/// first error are the ones a single sweep from the start would give.
pub(super) fn fix_unrelocated(img: &mut Image<'_, '_>, handled: &AddrSet) -> Result<usize> {
    let sections: Vec<usize> = img
        .file
        .sections
        .iter()
        .filter(|s| s.is_exec() && s.is_alloc() && !s.is_nobits())
        .map(|s| s.index)
        .collect();
    let mut fixed = 0;
    for sec in sections {
        let starts = piece_starts(img, sec);
        let len = img.old(sec).len();
        let pieces = {
            let img = &*img;
            in_pieces(&starts, len, |start, end| {
                sweep_range(img, sec, handled, start, end)
            })
        };
        for piece in pieces {
            for (addr, insn, raw) in &piece.puts {
                img.put_insn(sec, *addr, insn, *raw)?;
            }
            fixed += piece.puts.len();
            if let Some(e) = piece.error {
                return Err(e);
            }
        }
    }
    Ok(fixed)
}

/// Runs a linear sweep over `0..len` in parallel pieces starting at `starts` (sorted, the
/// first 0). `sweep(start, end)` sweeps from `start` and returns its result and where it
/// stopped (the first step boundary at or after `end`), or `None` if it stopped on an error.
/// A piece counts only if the piece before it stopped exactly where it starts; otherwise it
/// is swept again from there. The results are the ones one sweep from 0 would give, cut at
/// the piece ends, up to and including the first that stopped on an error.
fn in_pieces<R: Send>(
    starts: &[usize],
    len: usize,
    sweep: impl Fn(usize, usize) -> (R, Option<usize>) + Sync,
) -> Vec<R> {
    use rayon::prelude::*;
    let ends: Vec<usize> = starts.iter().skip(1).copied().chain([len]).collect();
    let speculative: Vec<(R, Option<usize>)> = starts
        .par_iter()
        .zip(&ends)
        .map(|(&start, &end)| sweep(start, end))
        .collect();
    let mut results = Vec::with_capacity(starts.len());
    let mut at = 0;
    for ((piece, &start), &end) in speculative.into_iter().zip(starts).zip(&ends) {
        let (result, next) = if at == start { piece } else { sweep(at, end) };
        results.push(result);
        match next {
            Some(n) => at = n,
            None => break,
        }
    }
    results
}

/// Offsets where the parallel pieces of a section's sweep start: 0, then the first code
/// label at least [`PIECE`] bytes after the previous start.
fn piece_starts(img: &Image<'_, '_>, sec: usize) -> Vec<usize> {
    let len = img.old(sec).len();
    let base = if img.file.kind.is_linked() {
        img.file.sections[sec].addr
    } else {
        0
    };
    let mut labels: Vec<usize> = img
        .file
        .symbols
        .iter()
        .filter(|y| y.is_code_label() && y.section() == Some(sec))
        .filter_map(|y| usize::try_from(y.value.checked_sub(base)?).ok())
        .filter(|&o| o < len)
        .collect();
    labels.sort_unstable();
    let mut starts = vec![0];
    for o in labels {
        if o >= starts[starts.len() - 1] + PIECE {
            starts.push(o);
        }
    }
    starts
}

/// The sweep of one section from offset `start` until the first instruction start at or
/// after `end` (or the first error): what it found, and where it stopped (`None` on an
/// error), as [`in_pieces`] wants it.
fn sweep_range(
    img: &Image<'_, '_>,
    sec: usize,
    handled: &AddrSet,
    start: usize,
    end: usize,
) -> (Swept, Option<usize>) {
    let mut puts = Vec::new();
    match sweep_into(img, sec, handled, start, end, &mut puts) {
        Ok(next) => (Swept { puts, error: None }, Some(next)),
        Err(e) => (
            Swept {
                puts,
                error: Some(e),
            },
            None,
        ),
    }
}

/// [`sweep_range`]'s loop: pushes the rewrites, returns where it stopped.
fn sweep_into(
    img: &Image<'_, '_>,
    sec: usize,
    handled: &AddrSet,
    start: usize,
    end: usize,
    puts: &mut Vec<Put>,
) -> Result<usize> {
    let s = &img.file.sections[sec];
    let base = s.addr;
    let old = img.old(sec);
    let moved = img
        .plan
        .map
        .section(sec)
        .is_some_and(|m| !m.edits().is_empty() || m.new_addr != base);
    let mut off = start;
    while off < end && off + 2 <= old.len() {
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
                let raw = reencode_pc(&insn, new_off, at)?;
                puts.push((at, insn, raw));
            }
        } else if let Op::Auipc { rd, imm } = insn.op {
            fix_auipc(img, sec, at, rd, imm, handled, puts)?;
        }
        off += len;
    }
    // Past the section's last whole instruction: the sweep is over.
    Ok(off.max(end))
}

/// Fixes an unrelocated `auipc` and the instructions that use its result as a base.
fn fix_auipc(
    img: &Image<'_, '_>,
    sec: usize,
    at: u64,
    rd: u8,
    imm: i64,
    handled: &AddrSet,
    puts: &mut Vec<Put>,
) -> Result<()> {
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
        return Ok(());
    }
    let targets: Vec<u64> = users
        .iter()
        .map(|&(_, _, lo)| at.wrapping_add(imm as u64).wrapping_add(lo as i64 as u64))
        .collect();
    if !targets.iter().any(|&t| moved(img, t)) {
        return Ok(());
    }
    let first_new = img.map(targets[0]).wrapping_sub(p_new) as i64;
    let (hi, _) = hi_lo(first_new).map_err(|e| Error::refused(format!("auipc at {at:#x}: {e}")))?;
    let auipc = img.old_insn(sec, at)?;
    let a = riscv::with_u_imm(auipc.raw, hi)
        .map_err(|e| Error::refused(format!("auipc at {at:#x}: {e}")))?;
    puts.push((at, auipc, a));
    for (&(pc, i, _), &t) in users.iter().zip(&targets) {
        let lo = img.map(t).wrapping_sub(p_new) as i64 - (hi << 12);
        let raw = match i.op {
            Op::SType { .. } => riscv::with_s_imm(i.raw, lo),
            _ => riscv::with_i_imm(i.raw, lo),
        }
        .map_err(|e| Error::refused(format!("user of auipc at {pc:#x}: {e}")))?;
        puts.push((pc, i, raw));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::in_pieces;

    /// A toy linear sweep over "instructions" whose length is their first byte (1 to 4),
    /// with 0 as an error: returns the instruction starts it visited.
    fn toy(code: &[u8], start: usize, end: usize) -> (Vec<usize>, Option<usize>) {
        let mut seen = Vec::new();
        let mut off = start;
        while off < end && off < code.len() {
            if code[off] == 0 {
                seen.push(usize::MAX);
                return (seen, None);
            }
            seen.push(off);
            off += usize::from(code[off]);
        }
        (seen, Some(off.max(end)))
    }

    /// Pieces starting anywhere (inside instructions too) give what one sweep gives.
    #[test]
    fn pieces_equal_one_sweep() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for case in 0..500 {
            let len = (next() % 300) as usize + 1;
            let code: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next() % 100;
                    if case % 3 == 0 && r == 0 {
                        0
                    } else {
                        (r % 4) as u8 + 1
                    }
                })
                .collect();
            let mut starts = vec![0];
            for _ in 0..(next() % 12) {
                starts.push((next() % len as u64) as usize);
            }
            starts.sort_unstable();
            starts.dedup();
            let pieces: Vec<usize> = in_pieces(&starts, len, |s, e| toy(&code, s, e))
                .into_iter()
                .flatten()
                .collect();
            assert_eq!(
                pieces,
                toy(&code, 0, len).0,
                "case {case}: starts {starts:?}"
            );
        }
    }
}
