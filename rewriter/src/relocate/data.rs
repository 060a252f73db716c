//! Data references: pointers, differences (`ADD`/`SUB`/`SET`), PC-relative words, dynamic
//! relocations, GOT slots, and the `.eh_frame_hdr` search table.

use rustc_hash::FxHashSet as HashSet;

use object::elf::*;

use super::image::{Action, Image};
use crate::elf::dwarf::read_uleb;
use crate::elf::{read_uint, Reloc};
use crate::error::{Error, Result};

/// Width in bytes of a data relocation's field, and how it combines.
enum DataOp {
    /// The field holds the target (`R_RISCV_32/64`, `SET*`).
    Set(usize),
    /// The field accumulates +target.
    Add(usize),
    /// The field accumulates −target.
    Sub(usize),
    /// The field holds target − place.
    PcRel(usize),
    /// Low six bits of a byte (`SET6`/`SUB6`, DWARF CFA advances).
    Set6,
    /// Low six bits, subtracting.
    Sub6,
    /// ULEB128, setting or subtracting.
    Uleb(bool),
}

fn data_op(t: u32) -> Option<DataOp> {
    Some(match t {
        _ if t == R_RISCV_64.0 => DataOp::Set(8),
        _ if t == R_RISCV_32.0 => DataOp::Set(4),
        // In a linked file a SETn/SUBn pair already holds the difference: both move by deltas.
        _ if t == R_RISCV_SET8.0 => DataOp::Add(1),
        _ if t == R_RISCV_SET16.0 => DataOp::Add(2),
        _ if t == R_RISCV_SET32.0 => DataOp::Add(4),
        _ if t == R_RISCV_ADD8.0 => DataOp::Add(1),
        _ if t == R_RISCV_ADD16.0 => DataOp::Add(2),
        _ if t == R_RISCV_ADD32.0 => DataOp::Add(4),
        _ if t == R_RISCV_ADD64.0 => DataOp::Add(8),
        _ if t == R_RISCV_SUB8.0 => DataOp::Sub(1),
        _ if t == R_RISCV_SUB16.0 => DataOp::Sub(2),
        _ if t == R_RISCV_SUB32.0 => DataOp::Sub(4),
        _ if t == R_RISCV_SUB64.0 => DataOp::Sub(8),
        _ if t == R_RISCV_32_PCREL.0 => DataOp::PcRel(4),
        _ if t == R_RISCV_SET6.0 => DataOp::Set6,
        _ if t == R_RISCV_SUB6.0 => DataOp::Sub6,
        _ if t == R_RISCV_SET_ULEB128.0 => DataOp::Uleb(true),
        _ if t == R_RISCV_SUB_ULEB128.0 => DataOp::Uleb(false),
        _ => return None,
    })
}

fn mask(width: usize) -> u64 {
    if width >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * width)) - 1
    }
}

/// Re-resolves a data relocation at original place `r.offset` (new place `p_new`).
pub(super) fn fix_data(
    img: &mut Image<'_, '_>,
    sec: usize,
    r: &Reloc,
    t_old: u64,
    t_new: u64,
    p_new: u64,
    dyn_covered: &HashSet<u64>,
) -> Result<()> {
    let p = r.offset;
    let Some(op) = data_op(r.r_type) else {
        return Err(Error::refused(format!(
            "relocation type {} at {p:#x} ({}) is not supported",
            r.r_type, img.file.sections[sec].name
        )));
    };
    if t_old == u64::MAX {
        // Against an undefined symbol: resolved at load time (or zero if weak); unchanged.
        return Ok(());
    }
    let delta = t_new.wrapping_sub(t_old);
    match op {
        DataOp::Set(w) => {
            let old = img.read_new(sec, p_new, w)?;
            if old == t_old & mask(w) {
                img.write_new(sec, p_new, w, t_new & mask(w))?;
            } else if !(old == 0 && dyn_covered.contains(&p)) {
                return Err(Error::refused(format!(
                    "{} at {p:#x} holds {old:#x} but its relocation says {t_old:#x}",
                    img.file.sections[sec].name
                )));
            }
        }
        DataOp::Add(w) | DataOp::Sub(w) => {
            let old = img.read_new(sec, p_new, w)?;
            let signed = if matches!(op, DataOp::Add(_)) {
                delta as i64
            } else {
                (delta as i64).wrapping_neg()
            };
            let new = old.wrapping_add(signed as u64);
            img.write_new(sec, p_new, w, new & mask(w))?;
            if w <= 2 {
                // One- and two-byte differences are DWARF advances: unsigned, and they
                // overflow if the code between their labels grew past the field.
                track_pair(img, sec, r.offset, w as u32 * 8, signed);
            }
        }
        DataOp::PcRel(w) => {
            let old = img.read_new(sec, p_new, w)?;
            let expect = t_old.wrapping_sub(p) & mask(w);
            if old != expect {
                return Err(Error::refused(format!(
                    "{} at {p:#x}: PC-relative word {old:#x} disagrees with its relocation ({expect:#x})",
                    img.file.sections[sec].name
                )));
            }
            let new = t_new.wrapping_sub(p_new) as i64;
            if new < i64::from(i32::MIN) || new > i64::from(i32::MAX) {
                return Err(Error::refused(format!(
                    "PC-relative word at {p:#x} overflows"
                )));
            }
            img.write_new(sec, p_new, w, (new as u64) & mask(w))?;
        }
        DataOp::Set6 | DataOp::Sub6 => {
            // The pair (SET6 L2, SUB6 L1) holds L2 - L1 in the low six bits (a DWARF CFA
            // advance); each end moves by its own delta. Code only shrinks or keeps its size
            // between two labels of one function, so the field stays in range; the verifier
            // checks the result.
            let old = img.read_new(sec, p_new, 1)?;
            let six = old & 0x3f;
            let signed = if matches!(op, DataOp::Set6) {
                delta as i64
            } else {
                (delta as i64).wrapping_neg()
            };
            let new = six.wrapping_add(signed as u64);
            img.write_new(sec, p_new, 1, (old & !0x3f) | (new & 0x3f))?;
            track_pair(img, sec, r.offset, 6, signed);
        }
        DataOp::Uleb(set) => {
            let base = img.new_base(sec);
            let off = (p_new - base) as usize;
            let bytes = img.bytes_mut(sec);
            let (old, len) = read_uleb(&bytes[off.min(bytes.len())..])
                .ok_or_else(|| Error::refused(format!("bad ULEB128 at {p:#x}")))?;
            let new = if set {
                old.wrapping_add(delta)
            } else {
                old.wrapping_sub(delta)
            };
            write_uleb_fixed(&mut bytes[off..off + len], new).ok_or_else(|| {
                Error::refused(format!("ULEB128 at {p:#x} no longer fits in {len} bytes"))
            })?;
        }
    }
    Ok(())
}

/// Adds one end's movement to the difference field at original place `p`.
fn track_pair(img: &mut Image<'_, '_>, sec: usize, p: u64, bits: u32, delta: i64) {
    let old = {
        let off = p.wrapping_sub(img.file.sections[sec].addr) as usize;
        let bytes = img.old(sec);
        match bits {
            6 => bytes.get(off).map_or(0, |b| i64::from(b & 0x3f)),
            _ => read_uint(bytes, off, (bits / 8) as usize).map_or(0, |v| v as i64),
        }
    };
    let e = img.pairs.entry((sec, p)).or_insert((bits, old, 0));
    e.2 = e.2.wrapping_add(delta);
}

/// Refuses a difference field (DWARF advance) whose new value left its unsigned range.
pub(super) fn check_pairs(img: &Image<'_, '_>) -> Result<()> {
    for (&(sec, p), &(bits, old, delta)) in &img.pairs {
        let new = old.wrapping_add(delta);
        if new < 0 || new >= 1i64 << bits {
            return Err(Error::refused(format!(
                "{} at {p:#x}: the {bits}-bit difference {old} becomes {new}, out of range \
                 (the code between its labels grew)",
                img.file.sections[sec].name
            )));
        }
    }
    Ok(())
}

/// Writes `v` as ULEB128 in exactly `out.len()` bytes (padded with continuation bytes).
fn write_uleb_fixed(out: &mut [u8], mut v: u64) -> Option<()> {
    let n = out.len();
    for (i, b) in out.iter_mut().enumerate() {
        *b = (v & 0x7f) as u8 | if i + 1 < n { 0x80 } else { 0 };
        v >>= 7;
    }
    (v == 0).then_some(())
}

/// Dynamic relocations: move the place; `RELATIVE`/`IRELATIVE` addends are addresses.
pub(super) fn fix_dynamic(
    img: &Image<'_, '_>,
    r: &Reloc,
    new: &mut Reloc,
    map_t: &dyn Fn(&Image<'_, '_>, u64) -> u64,
) -> Option<Action> {
    if r.r_type == R_RISCV_RELATIVE.0 || r.r_type == R_RISCV_IRELATIVE.0 {
        let a_new = map_t(img, r.addend as u64);
        new.addend = a_new as i64;
        // If the linker also stored the value in the word, keep it in step.
        if let Some(sec) = img.file.alloc_section_at(r.offset).map(|s| s.index) {
            let w = img.file.ptr_size();
            return Some(Action::WriteIfWord {
                sec,
                addr: img.map(r.offset),
                len: w as u8,
                // A zero addend is never written back (but the word must be readable).
                expect: (r.addend != 0).then_some(r.addend as u64 & mask(w)),
                value: a_new & mask(w),
            });
        }
    }
    None
}

/// GOT words the linker filled without a dynamic relocation hold link-time addresses.
pub(super) fn fix_got(img: &mut Image<'_, '_>, dyn_covered: &HashSet<u64>) -> Result<()> {
    let w = img.file.ptr_size();
    let gots: Vec<usize> = img
        .file
        .sections
        .iter()
        .filter(|s| (s.name == ".got" || s.name == ".got.plt") && s.is_alloc() && !s.is_nobits())
        .map(|s| s.index)
        .collect();
    for sec in gots {
        let s = &img.file.sections[sec];
        let (addr, size) = (s.addr, s.size);
        let old = img.old(sec);
        for off in (0..size as usize).step_by(w) {
            let at = addr + off as u64;
            if dyn_covered.contains(&at) || img.tls_got.contains(&at) {
                continue;
            }
            let Some(v) = read_uint(old, off, w) else {
                break;
            };
            if v == 0 || img.file.alloc_section_at(v).is_none() {
                continue;
            }
            let p_new = img.map(at);
            let v_new = img.map(v);
            img.write_new(sec, p_new, w, v_new)?;
        }
    }
    Ok(())
}

/// Rebuilds the `.eh_frame_hdr` binary search table (the linker writes it without
/// relocations): every entry is relative to the header, so every entry changes.
pub(super) fn fix_eh_frame_hdr(img: &mut Image<'_, '_>) -> Result<()> {
    let Some(hdr) = img
        .file
        .section_by_name(".eh_frame_hdr")
        .filter(|s| s.is_alloc())
    else {
        return Ok(());
    };
    let (sec, h_old) = (hdr.index, hdr.addr);
    let old = img.old(sec);
    if old.len() < 12 || old[0] != 1 {
        return Err(Error::refused(".eh_frame_hdr: unknown version".to_string()));
    }
    let (ptr_enc, count_enc, table_enc) = (old[1], old[2], old[3]);
    if ptr_enc != 0x1b || count_enc != 0x03 || table_enc != 0x3b {
        return Err(Error::refused(format!(
            ".eh_frame_hdr: unsupported encodings {ptr_enc:#x}/{count_enc:#x}/{table_enc:#x}"
        )));
    }
    let h_new = img.new_base(sec);
    let rd = |o: usize| read_uint(old, o, 4).map(|v| v as u32 as i32 as i64);
    let eh_ptr = rd(4).ok_or_else(|| Error::malformed(".eh_frame_hdr truncated"))?;
    let eh_old = (h_old as i64 + 4 + eh_ptr) as u64;
    let eh_new = img.map(eh_old) as i64 - (h_new as i64 + 4);
    img.write_new(sec, h_new + 4, 4, eh_new as u64 & 0xffff_ffff)?;
    let count = rd(8).ok_or_else(|| Error::malformed(".eh_frame_hdr truncated"))? as u32 as usize;
    if 12 + count * 8 > old.len() {
        return Err(Error::malformed(
            ".eh_frame_hdr table runs past its section",
        ));
    }
    for i in 0..count {
        let o = 12 + i * 8;
        let (Some(loc), Some(fde)) = (rd(o), rd(o + 4)) else {
            break;
        };
        let loc_new = img.map((h_old as i64 + loc) as u64) as i64 - h_new as i64;
        let fde_new = img.map((h_old as i64 + fde) as u64) as i64 - h_new as i64;
        img.write_new(sec, h_new + o as u64, 4, loc_new as u64 & 0xffff_ffff)?;
        img.write_new(sec, h_new + o as u64 + 4, 4, fde_new as u64 & 0xffff_ffff)?;
    }
    Ok(())
}
