//! Call frame information by meaning: every FDE of `.eh_frame` is decoded in both files and
//! each location it names (its start, its end, every row the CFA program starts with an
//! advance or `set_loc`) must be the image of the old one. This holds whether the distances
//! were relocated (`SET6`/`SUB6`, `ADD`/`SUB` pairs, checked field by field elsewhere) or
//! written as constants by the assembler, which a rewrite must then change by itself.

use super::bytes::Covered;
use super::ctx::Ctx;
use super::map::{Mapped, Mapper};
use super::report::VerifyReport;
use crate::elf::dwarf::{read_sleb, read_uleb};
use crate::elf::read_uint;

/// A cursor over one `.eh_frame`.
struct Reader<'a> {
    data: &'a [u8],
    addr: u64,
    pos: usize,
}

impl Reader<'_> {
    fn u(&mut self, n: usize) -> Option<u64> {
        let v = read_uint(self.data, self.pos, n)?;
        self.pos += n;
        Some(v)
    }

    fn uleb(&mut self) -> Option<u64> {
        let (v, n) = read_uleb(self.data.get(self.pos..)?)?;
        self.pos += n;
        Some(v)
    }

    fn sleb(&mut self) -> Option<i64> {
        let (v, n) = read_sleb(self.data.get(self.pos..)?)?;
        self.pos += n;
        Some(v)
    }

    /// A pointer in DWARF encoding `enc` (`DW_EH_PE_*`); `None` for unsupported encodings.
    fn pointer(&mut self, enc: u8, ptr: usize) -> Option<u64> {
        let at = self.addr + self.pos as u64;
        let raw = match enc & 0x0f {
            0x00 => self.u(ptr)?,
            0x01 => self.uleb()?,
            0x02 => self.u(2)?,
            0x03 => self.u(4)?,
            0x04 => self.u(8)?,
            0x09 => self.sleb()? as u64,
            0x0a => self.u(2)? as u16 as i16 as i64 as u64,
            0x0b => self.u(4)? as u32 as i32 as i64 as u64,
            0x0c => self.u(8)?,
            _ => return None,
        };
        match enc & 0x70 {
            0x00 => Some(raw),
            0x10 => Some(at.wrapping_add(raw)),
            _ => None,
        }
    }
}

/// What a CIE says that its FDEs need.
#[derive(Clone, Copy)]
struct Cie {
    code_align: u64,
    fde_enc: u8,
    has_augmentation_data: bool,
}

/// One decoded FDE: its start, its length, and the row locations with the byte range of the
/// operand that set each one.
pub(crate) struct Fde {
    /// Where the FDE starts (its `pc_begin`).
    pub(crate) start: u64,
    /// Its `pc_range`.
    pub(crate) range: u64,
    /// Row locations, with the byte range of the operand that set each.
    pub(crate) rows: Vec<(u64, usize, usize)>,
    /// Byte ranges of the start and length fields.
    pub(crate) fields: Vec<(usize, usize)>,
    /// The CFA program could not be decoded to its end.
    partial: bool,
    /// The CIE's code alignment factor.
    pub(crate) code_align: u64,
}

fn parse_cie(r: &mut Reader<'_>, end: usize) -> Option<Cie> {
    let version = r.u(1)?;
    let aug_start = r.pos;
    while *r.data.get(r.pos)? != 0 {
        r.pos += 1;
    }
    let aug = r.data[aug_start..r.pos].to_vec();
    r.pos += 1;
    if version == 4 {
        r.pos += 2; // address size, segment selector size
    }
    let code_align = r.uleb()?;
    r.sleb()?;
    if version == 1 {
        r.u(1)?;
    } else {
        r.uleb()?;
    }
    let mut cie = Cie {
        code_align,
        fde_enc: 0,
        has_augmentation_data: aug.first() == Some(&b'z'),
    };
    if cie.has_augmentation_data {
        let len = r.uleb()? as usize;
        let data_end = r.pos + len;
        for c in &aug[1..] {
            match c {
                b'R' => cie.fde_enc = r.u(1)? as u8,
                b'L' => {
                    r.u(1)?;
                }
                b'P' => {
                    let enc = r.u(1)? as u8;
                    r.pointer(enc, 8)?;
                }
                _ => break,
            }
        }
        r.pos = data_end;
    }
    (r.pos <= end).then_some(cie)
}

fn parse_fde(r: &mut Reader<'_>, cie: Cie, end: usize, ptr: usize) -> Option<Fde> {
    let s0 = r.pos;
    let start = r.pointer(cie.fde_enc, ptr)?;
    let s1 = r.pos;
    let range = r.pointer(cie.fde_enc & 0x0f, ptr)?;
    let mut fde = Fde {
        start,
        range,
        rows: Vec::new(),
        fields: vec![(s0, s1), (s1, r.pos)],
        partial: false,
        code_align: cie.code_align,
    };
    if cie.has_augmentation_data {
        let len = r.uleb()? as usize;
        r.pos += len;
    }
    let mut loc = start;
    while r.pos < end {
        let at = r.pos;
        let op = r.u(1)? as u8;
        let advance = match (op >> 6, op) {
            (1, _) => Some((u64::from(op & 0x3f), at, at + 1)),
            (2, _) => {
                r.uleb()?;
                None
            }
            (3, _) => None,
            (_, 0x00 | 0x0a | 0x0b) => None,
            (_, 0x01) => {
                let v = r.pointer(cie.fde_enc, ptr)?;
                loc = v;
                fde.rows.push((loc, at + 1, r.pos));
                None
            }
            (_, 0x02) => Some((r.u(1)?, at + 1, at + 2)),
            (_, 0x03) => Some((r.u(2)?, at + 1, at + 3)),
            (_, 0x04) => Some((r.u(4)?, at + 1, at + 5)),
            (_, 0x05 | 0x09 | 0x0c | 0x14 | 0x2f) => {
                r.uleb()?;
                r.uleb()?;
                None
            }
            (_, 0x06 | 0x07 | 0x08 | 0x0d | 0x0e | 0x2e) => {
                r.uleb()?;
                None
            }
            (_, 0x11 | 0x12 | 0x15) => {
                r.uleb()?;
                r.sleb()?;
                None
            }
            (_, 0x13) => {
                r.sleb()?;
                None
            }
            (_, 0x0f) => {
                let n = r.uleb()? as usize;
                r.pos += n;
                None
            }
            (_, 0x10 | 0x16) => {
                r.uleb()?;
                let n = r.uleb()? as usize;
                r.pos += n;
                None
            }
            _ => {
                fde.partial = true;
                break;
            }
        };
        if let Some((delta, a, b)) = advance {
            loc = loc.wrapping_add(delta.wrapping_mul(cie.code_align));
            fde.rows.push((loc, a, b));
        }
    }
    Some(fde)
}

/// Every FDE of a `.eh_frame`, by offset (`None` where decoding failed).
pub(crate) fn fdes(data: &[u8], addr: u64, ptr: usize) -> Vec<(usize, Option<Fde>)> {
    let mut out = Vec::new();
    let mut cies: Vec<(usize, Cie)> = Vec::new();
    let mut r = Reader { data, addr, pos: 0 };
    while r.pos + 4 <= data.len() {
        let start = r.pos;
        let Some(len) = r.u(4) else { break };
        if len == 0 || len == 0xffff_ffff {
            break;
        }
        let end = r.pos + len as usize;
        if end > data.len() {
            break;
        }
        let id_at = r.pos;
        let Some(id) = r.u(4) else { break };
        if id == 0 {
            if let Some(cie) = parse_cie(&mut r, end) {
                cies.push((start, cie));
            }
        } else {
            let cie_at = id_at.wrapping_sub(id as usize);
            let cie = cies.iter().find(|c| c.0 == cie_at).map(|c| c.1);
            out.push((start, cie.and_then(|c| parse_fde(&mut r, c, end, ptr))));
        }
        r.pos = end;
    }
    out
}

/// Checks `.eh_frame` by meaning and marks the location fields it verified as covered.
pub(super) fn check(
    ctx: &Ctx<'_, '_, '_>,
    mapper: &Mapper,
    covered: &mut Covered,
    report: &mut VerifyReport,
) {
    let Some((s, n)) = ctx.find_pair(|s| s.name == ".eh_frame" && s.is_alloc() && !s.is_nobits())
    else {
        return;
    };
    let (old, new) = (ctx.old_data(s.index), ctx.new_data(s.index));
    if old.len() != new.len() {
        return;
    }
    let old_fdes = fdes(old, s.addr, ctx.ptr);
    let new_fdes = fdes(new, n.addr, ctx.ptr);
    if old_fdes.len() != new_fdes.len() {
        report.mismatch(
            "call frame information",
            Some(s.addr),
            Some(n.addr),
            format!("{} FDEs", old_fdes.len()),
            format!("{}", new_fdes.len()),
        );
        return;
    }
    for ((off, o), (_, nf)) in old_fdes.iter().zip(&new_fdes) {
        let (Some(o), Some(nf)) = (o, nf) else {
            report.counts.unchecked += 1;
            continue;
        };
        report.counts.call_frames += 1;
        let at = (s.addr + *off as u64, n.addr + *off as u64);
        check_fde(mapper, s.index, at, (o, nf), covered, report);
    }
}

/// One FDE and its counterpart: start, end and each CFA row's location are the old ones' images.
fn check_fde(
    mapper: &Mapper,
    sec: usize,
    at: (u64, u64),
    (o, nf): (&Fde, &Fde),
    covered: &mut Covered,
    report: &mut VerifyReport,
) {
    let bad = |report: &mut VerifyReport, what: String, m: Mapped, found: u64| {
        report.mismatch(
            "call frame information",
            Some(at.0),
            Some(at.1),
            format!("{what} at {m}"),
            format!("{found:#x}"),
        )
    };
    let start = mapper.map(o.start);
    if !start.accepts(nf.start) {
        bad(
            report,
            format!("FDE start (old {:#x})", o.start),
            start,
            nf.start,
        );
        return;
    }
    // The end label may be read as the end of the function or as the address after it
    // (which padding inserted there moves along).
    let old_end = o.start.wrapping_add(o.range);
    let end = mapper.map_end_of(o.start, old_end);
    let new_end = nf.start.wrapping_add(nf.range);
    if !end.accepts(new_end) && !mapper.map(old_end).accepts(new_end) {
        bad(
            report,
            format!("FDE end (old {:#x})", o.start + o.range),
            end,
            nf.start + nf.range,
        );
        return;
    }
    if o.rows.len() != nf.rows.len() || o.partial != nf.partial {
        report.mismatch(
            "call frame information",
            Some(at.0),
            Some(at.1),
            format!("{} rows, as before", o.rows.len()),
            format!("{} rows", nf.rows.len()),
        );
        return;
    }
    for (&(loc, a, b), &(nloc, _, _)) in o.rows.iter().zip(&nf.rows) {
        let m = mapper.map(loc);
        if !m.accepts(nloc) {
            bad(report, format!("a CFA row (old {loc:#x})"), m, nloc);
            break;
        }
        covered.add(sec, a as u64, (b - a) as u64);
    }
    for &(a, b) in &o.fields {
        covered.add(sec, a as u64, (b - a) as u64);
    }
}
