//! Walking an old and a new executable section in parallel to infer their address map.
//!
//! Nop runs are elastic (alignment padding and pads may change length, or appear and
//! vanish); every other instruction must correspond one to one with the same length and the
//! same encoding outside its immediate. Instructions whose immediate changed and those that
//! refer to the PC are listed for the reference checks, which decide whether each change
//! was right.

use super::insn::{imm_mask, nop_run};
use super::map::{CodeMap, Piece};
use super::report::VerifyReport;
use crate::riscv::{decode, insn_len, DecodeError, Insn, Xlen};

/// Bytes of a trampoline island (`auipc t1; jalr x0, lo(t1)`).
pub const ISLAND_BYTES: usize = 8;

/// What sits in a code section but is not matched as instructions.
#[derive(Debug, Clone, Copy, Default)]
pub struct NonCode<'a> {
    /// Old address ranges of data under relocations (sorted).
    pub fields: &'a [(u64, u64)],
    /// New addresses of trampoline islands (sorted).
    pub islands: &'a [u64],
}

/// One side of the walk: a section's bytes and address.
pub struct Side<'a> {
    /// Section contents (for the new side, only the part that holds code).
    pub bytes: &'a [u8],
    /// Address of `bytes[0]`.
    pub addr: u64,
}

/// What the walk found besides the map.
#[derive(Debug, Default)]
pub struct WalkResult {
    /// The inferred map.
    pub map: CodeMap,
    /// PC-relative instructions (branches, jumps, `auipc`): (old address, new address).
    pub pc_relative: Vec<(u64, u64)>,
    /// Instructions whose bits changed (only inside their immediate): (old, new).
    pub changed: Vec<(u64, u64)>,
    /// Trampoline islands found inside nop runs (new addresses).
    pub islands: Vec<u64>,
}

/// Length of the undecodable unit at `off`: what its first parcel says, at least 2 bytes.
fn unit_len(bytes: &[u8], off: usize, err: DecodeError) -> usize {
    match err {
        DecodeError::Unknown { len, .. } => usize::from(len),
        DecodeError::Truncated { .. } | DecodeError::AllZero | DecodeError::TooLong { .. } => {
            let parcel = crate::elf::read_uint(bytes, off, 2).unwrap_or(0) as u16;
            if parcel == 0 || off + insn_len(parcel) > bytes.len() {
                2
            } else {
                insn_len(parcel)
            }
        }
    }
}

fn push_piece(pieces: &mut Vec<Piece>, p: Piece) {
    if let Some(last) = pieces.last_mut() {
        if !last.run
            && !p.run
            && last.old + last.old_len == p.old
            && last.new + last.new_len == p.new
        {
            last.old_len += p.old_len;
            last.new_len += p.new_len;
            return;
        }
    }
    pieces.push(p);
}

/// Walks one executable section. `fields` are the (sorted) old address ranges of data
/// under relocations inside it: they are passed over as data (the data checks verify
/// them). `islands` are the (sorted) new addresses of the trampoline islands the rewritten
/// file claims: 8 bytes of new code each, taken as part of the nop run they sit in (the
/// island checks verify them). Mismatches go to `report`; the walk stops at the first place where the two
/// streams can no longer be matched (the map says where).
pub fn walk(
    old_index: usize,
    old: Side<'_>,
    new: Side<'_>,
    non_code: NonCode<'_>,
    rvc: bool,
    xlen: Xlen,
    report: &mut VerifyReport,
) -> WalkResult {
    let mut w = Walker {
        old,
        new,
        non_code,
        rvc,
        xlen,
        report,
        out: WalkResult::default(),
        pieces: Vec::new(),
        o: 0,
        n: 0,
        f: 0,
    };
    w.out.map.old_index = old_index;
    loop {
        let room = w.room();
        w.nop_runs(room);
        if w.at_end() {
            break;
        }
        // One rigid instruction (or undecodable unit, or data field).
        let Some(len) = w.rigid(room) else {
            break;
        };
        w.report.counts.instructions += 1;
        let (oa, na) = (w.old.addr + w.o as u64, w.new.addr + w.n as u64);
        push_piece(
            &mut w.pieces,
            Piece {
                old: oa,
                old_len: len as u64,
                new: na,
                new_len: len as u64,
                run: false,
            },
        );
        w.o += len;
        w.n += len;
    }
    let mut out = w.out;
    out.map.pieces = w.pieces;
    out.map.index();
    out
}

/// A walk under way: both sides, what it passes over, and how far it has come.
struct Walker<'a, 'r> {
    old: Side<'a>,
    new: Side<'a>,
    non_code: NonCode<'a>,
    rvc: bool,
    xlen: Xlen,
    report: &'r mut VerifyReport,
    out: WalkResult,
    pieces: Vec<Piece>,
    /// Offset reached in the old bytes.
    o: usize,
    /// Offset reached in the new bytes.
    n: usize,
    /// Index of the first data field that does not end before `o`.
    f: usize,
}

impl Walker<'_, '_> {
    /// Records that the streams no longer match here, and why; the walk stops.
    fn fail(&mut self, why: &str) {
        let (o, n) = (self.o, self.n);
        self.report.mismatch(
            "code",
            Some(self.old.addr + o as u64),
            Some(self.new.addr + n as u64),
            "corresponding code",
            why.to_string(),
        );
        self.out.map.failed_at = Some(self.old.addr + o as u64);
    }

    /// Old bytes before the next data field (nops and instructions stop there).
    fn room(&mut self) -> usize {
        let (ob, fields) = (self.old.bytes, self.non_code.fields);
        let oa = self.old.addr + self.o as u64;
        while self.f < fields.len() && fields[self.f].1 <= oa {
            self.f += 1;
        }
        let field_at = fields.get(self.f).map(|x| x.0);
        field_at.map_or(ob.len(), |start| {
            (start.saturating_sub(self.old.addr) as usize).min(ob.len())
        })
    }

    /// Matches the nop runs that start here (with the islands inside the new one), any length.
    fn nop_runs(&mut self, room: usize) {
        let (ob, nb, rvc) = (self.old.bytes, self.new.bytes, self.rvc);
        let (o, n) = (self.o, self.n);
        let islands = self.non_code.islands;
        let ro = if room > o {
            nop_run(&ob[..room], o, rvc)
        } else {
            0
        };
        let mut rn = nop_run(nb, n, rvc);
        while islands
            .binary_search(&(self.new.addr + (n + rn) as u64))
            .is_ok()
            && n + rn + ISLAND_BYTES <= nb.len()
        {
            self.out.islands.push(self.new.addr + (n + rn) as u64);
            rn += ISLAND_BYTES;
            rn += nop_run(nb, n + rn, rvc);
        }
        if ro > 0 || rn > 0 {
            self.pieces.push(Piece {
                old: self.old.addr + o as u64,
                old_len: ro as u64,
                new: self.new.addr + n as u64,
                new_len: rn as u64,
                run: true,
            });
            self.report.counts.nop_runs += 1;
            self.o += ro;
            self.n += rn;
        }
    }

    /// True when either side has run out: the walk is over (a mismatch unless both did).
    fn at_end(&mut self) -> bool {
        let (ob, nb, n) = (self.old.bytes, self.new.bytes, self.n);
        if self.o >= ob.len() {
            if n < nb.len() {
                // Free space must be whole nops: a cut one is not an instruction.
                let why = if nb.len() - n < 4 && insn_len(nb[n] as u16) == 4 {
                    "a nop cut in half at the end of the section's free space"
                } else {
                    "the rewritten section has code past the end of the original's"
                };
                self.fail(why);
            }
            return true;
        }
        if n >= nb.len() {
            self.fail("the rewritten section ends before the original's code does");
            return true;
        }
        false
    }

    /// Matches one rigid unit here: its length, or `None` where the walk must stop.
    fn rigid(&mut self, room: usize) -> Option<usize> {
        let (ob, o) = (self.old.bytes, self.o);
        let (oa, na) = (self.old.addr + o as u64, self.new.addr + self.n as u64);
        let field = self.non_code.fields.get(self.f);
        if let Some(&(_, end)) = field.filter(|x| x.0 <= oa && oa < x.1) {
            return self.data_field(oa, end);
        }
        match decode(&ob[o..room.max(o)], self.xlen) {
            Ok(oi) => self.instruction(&oi, oa, na),
            Err(e) => self.undecodable(e, room, oa, na),
        }
    }

    /// The same instruction on both sides, apart from its immediate.
    fn instruction(&mut self, oi: &Insn, oa: u64, na: u64) -> Option<usize> {
        match decode(&self.new.bytes[self.n..], self.xlen) {
            Ok(ni) if ni.len == oi.len => {
                let mask = imm_mask(oi);
                let same_kind = std::mem::discriminant(&oi.op) == std::mem::discriminant(&ni.op);
                if !same_kind || oi.raw & !mask != ni.raw & !mask {
                    self.report.mismatch(
                        "instruction",
                        Some(oa),
                        Some(na),
                        format!("{:#010x} (same apart from its immediate)", oi.raw),
                        format!("{:#010x}", ni.raw),
                    );
                } else if oi.raw != ni.raw {
                    self.out.changed.push((oa, na));
                }
                if oi.op.is_pc_relative() {
                    self.out.pc_relative.push((oa, na));
                }
                Some(usize::from(oi.len))
            }
            other => {
                let found = match other {
                    Ok(ni) => format!("{}-byte instruction {:#010x}", ni.len, ni.raw),
                    Err(e) => e.to_string(),
                };
                self.report.mismatch(
                    "code",
                    Some(oa),
                    Some(na),
                    format!("{}-byte instruction {:#010x}", oi.len, oi.raw),
                    found,
                );
                self.out.map.failed_at = Some(oa);
                None
            }
        }
    }

    /// Relocated data up to `end`: the same length on both sides (the data checks check it).
    fn data_field(&mut self, oa: u64, end: u64) -> Option<usize> {
        let end = end.min(self.old.addr + self.old.bytes.len() as u64);
        let len = (end - oa) as usize;
        if self.n + len > self.new.bytes.len() {
            self.fail("the rewritten section ends inside data");
            return None;
        }
        Some(len)
    }

    /// Bytes that do not decode (`err`): kept as they are.
    fn undecodable(&mut self, err: DecodeError, room: usize, oa: u64, na: u64) -> Option<usize> {
        let (ob, nb, o, n) = (self.old.bytes, self.new.bytes, self.o, self.n);
        let len = unit_len(&ob[..room.max(o)], o, err).min(room.max(o + 1) - o);
        let (a, b) = (&ob[o..(o + len).min(ob.len())], nb.get(n..n + len));
        if b != Some(a) {
            self.report.mismatch(
                "code",
                Some(oa),
                Some(na),
                format!("bytes {a:02x?} (not an instruction, kept as is)"),
                format!("{:02x?}", b.unwrap_or(&[])),
            );
            self.out.map.failed_at = Some(oa);
            return None;
        }
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::riscv::{C_NOP, NOP};
    use crate::verify::map::Mapped;

    fn bytes(parts: &[u32]) -> Vec<u8> {
        let mut v = Vec::new();
        for &p in parts {
            if p & 3 == 3 {
                v.extend_from_slice(&p.to_le_bytes());
            } else {
                v.extend_from_slice(&(p as u16).to_le_bytes());
            }
        }
        v
    }

    const CNOP: u32 = C_NOP as u32;
    const LI: u32 = 0x4505; // c.li a0, 1
    const RET: u32 = 0x8082; // c.jr ra

    #[test]
    fn runs_shrink_and_code_maps_rigidly() {
        // old: [4 c.nop pad] c.li ret [2 c.nop pad] c.li ret
        let old = bytes(&[CNOP, CNOP, CNOP, CNOP, LI, RET, CNOP, CNOP, LI, RET]);
        // new: [nop slot] c.li ret [] c.li ret
        let new = bytes(&[NOP, LI, RET, LI, RET]);
        let mut r = VerifyReport::default();
        let w = walk(
            1,
            Side {
                bytes: &old,
                addr: 0x1000,
            },
            Side {
                bytes: &new,
                addr: 0x1000,
            },
            NonCode::default(),
            true,
            Xlen::Rv64,
            &mut r,
        );
        assert!(r.is_ok(), "{:?}", r.mismatches);
        assert_eq!(w.map.map(0x1008), Mapped::Exact(0x1004));
        assert_eq!(w.map.map(0x100c), Mapped::Exact(0x1008), "run start");
        assert_eq!(w.map.map(0x100e), Mapped::Range(0x1008, 0x1008));
        assert_eq!(w.map.map(0x1010), Mapped::Exact(0x1008));
        assert_eq!(r.counts.nop_runs, 2);
        assert_eq!(r.counts.instructions, 4);
    }

    #[test]
    fn a_changed_register_is_a_mismatch_and_a_lost_instruction_stops_the_walk() {
        let old = bytes(&[LI, RET, LI]);
        let new = bytes(&[0x4585, RET]); // c.li a1, 1
        let mut r = VerifyReport::default();
        let w = walk(
            1,
            Side {
                bytes: &old,
                addr: 0x10,
            },
            Side {
                bytes: &new,
                addr: 0x10,
            },
            NonCode::default(),
            true,
            Xlen::Rv64,
            &mut r,
        );
        assert_eq!(r.mismatch_count, 2, "{:?}", r.mismatches);
        assert_eq!(r.mismatches[0].category, "instruction");
        assert_eq!(r.mismatches[0].old, Some(0x10));
        assert_eq!(w.map.failed_at, Some(0x14));
        assert_eq!(w.map.map(0x14), Mapped::Unknown);
    }

    #[test]
    fn immediates_may_change_and_are_listed() {
        // jal ra, +16 → jal ra, +8
        let old = bytes(&[0x0100_00ef]);
        let new = bytes(&[0x0080_00ef]);
        let mut r = VerifyReport::default();
        let w = walk(
            1,
            Side {
                bytes: &old,
                addr: 0,
            },
            Side {
                bytes: &new,
                addr: 0,
            },
            NonCode::default(),
            true,
            Xlen::Rv64,
            &mut r,
        );
        assert!(r.is_ok());
        assert_eq!(w.changed, vec![(0, 0)]);
        assert_eq!(w.pc_relative, vec![(0, 0)]);
    }
}
