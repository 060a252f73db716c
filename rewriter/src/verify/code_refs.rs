//! References made by code: every branch and jump, every `auipc` pair (paired through the
//! original's relocations, or by decoding when there are none), absolute `%hi`/`%lo` and
//! `gp`-relative immediates. Each must reach, in the new file, the image of what it reached
//! in the old one. An instruction whose immediate changed without one of these checks
//! vouching for it is a mismatch too.

use object::elf;

use super::ctx::Ctx;
use super::insn::{base_reg, hi20, is_control, lo12, lo_imm, writes, Writes};
use super::map::{Mapped, Mapper};
use super::report::VerifyReport;
use super::walk::WalkResult;
use crate::elf::{Reloc, RelocSection};
use crate::riscv::{auipc_value, decode, pc_target, Insn, Op};

/// How many instructions after an unrelocated `auipc` are searched for its users.
const AUIPC_WINDOW: usize = 16;

/// Decodes the instruction at `addr` of a section starting at `base`.
fn insn_at(data: &[u8], base: u64, addr: u64, ctx: &Ctx<'_, '_, '_>) -> Option<Insn> {
    let off = usize::try_from(addr.checked_sub(base)?).ok()?;
    decode(data.get(off..)?, ctx.xlen).ok()
}

/// Old and new views of the code sections, for decoding at either address.
struct Code<'c, 'a, 'o, 'n> {
    ctx: &'c Ctx<'a, 'o, 'n>,
    mapper: &'c Mapper,
    rv32: bool,
}

impl Code<'_, '_, '_, '_> {
    fn old_insn(&self, sec: usize, addr: u64) -> Option<Insn> {
        insn_at(
            self.ctx.old_data(sec),
            self.ctx.old.sections[sec].addr,
            addr,
            self.ctx,
        )
    }

    /// The new place of old code address `addr` of section `sec` and the instruction there.
    fn new_insn(&self, sec: usize, addr: u64) -> Option<(u64, Insn)> {
        let at = self.mapper.map_place_in(sec, addr).exact()?;
        let base = self.ctx.new_section(sec)?.addr;
        Some((at, insn_at(self.ctx.new_data(sec), base, at, self.ctx)?))
    }

    fn wrap(&self, v: u64) -> u64 {
        if self.rv32 {
            v & 0xffff_ffff
        } else {
            v
        }
    }

    fn add(&self, a: u64, b: i64) -> u64 {
        self.wrap(a.wrapping_add(b as u64))
    }
}

/// Compares a reference's new value with the image of its old target (a mismatch is
/// reported here; either way the instruction has been accounted for).
fn expect(
    report: &mut VerifyReport,
    category: &'static str,
    at: (u64, u64),
    target: u64,
    mapped: Mapped,
    found: u64,
) {
    match mapped {
        Mapped::Unknown => report.counts.unchecked += 1,
        m if m.accepts(found) => {}
        m => report.mismatch(
            category,
            Some(at.0),
            Some(at.1),
            format!("a reference to {m} (the image of {target:#x})"),
            format!("{found:#x}"),
        ),
    }
}

/// Checks every code reference; returns the GOT slots that hold TLS offsets (sorted).
pub(super) fn check(
    ctx: &Ctx<'_, '_, '_>,
    mapper: &Mapper,
    walks: &[WalkResult],
    report: &mut VerifyReport,
) -> Vec<u64> {
    let code = Code {
        ctx,
        mapper,
        rv32: !ctx.old.is_64,
    };
    let mut validated: Vec<u64> = Vec::new();
    let mut tls_got = Vec::new();
    let (lows, relocated_auipc) = pcrel_partners(ctx);
    let gp = (
        ctx.old.symbol_by_name("__global_pointer$").map(|s| s.value),
        ctx.new.symbol_by_name("__global_pointer$").map(|s| s.value),
    );
    for rs in static_code(ctx) {
        let sec = rs.target;
        for r in &rs.relocs {
            check_reloc(
                &code,
                sec,
                r,
                &lows,
                gp,
                &mut validated,
                &mut tls_got,
                report,
            );
        }
    }
    pc_relative(&code, walks, &relocated_auipc, &mut validated, report);
    validated.sort_unstable();
    unexplained_immediates(&code, walks, &validated, report);
    tls_got.sort_unstable();
    tls_got.dedup();
    tls_got
}

/// The original's static relocation sections of code.
fn static_code<'c>(ctx: &'c Ctx<'_, '_, '_>) -> impl Iterator<Item = &'c RelocSection> {
    ctx.old_relocs
        .iter()
        .filter(|rs| !ctx.is_dynamic(rs) && ctx.is_code(rs.target))
}

/// `%pcrel_lo` partners (by their auipc's address) and the relocated auipcs, sorted.
fn pcrel_partners(ctx: &Ctx<'_, '_, '_>) -> (Vec<(u64, usize, u64)>, Vec<u64>) {
    let mut lows: Vec<(u64, usize, u64)> = Vec::new();
    let mut relocated_auipc: Vec<u64> = Vec::new();
    for rs in static_code(ctx) {
        for r in &rs.relocs {
            let t = r.r_type;
            if t == elf::R_RISCV_PCREL_LO12_I.0 || t == elf::R_RISCV_PCREL_LO12_S.0 {
                lows.push((target(ctx, r), rs.target, r.offset));
            } else if is_hi_type(t) {
                relocated_auipc.push(r.offset);
            }
        }
    }
    lows.sort_unstable();
    relocated_auipc.sort_unstable();
    (lows, relocated_auipc)
}

/// Branches and jumps the walk found reach their old target's image; unrelocated auipcs pair up.
fn pc_relative(
    code: &Code<'_, '_, '_, '_>,
    walks: &[WalkResult],
    relocated_auipc: &[u64],
    validated: &mut Vec<u64>,
    report: &mut VerifyReport,
) {
    for (cm, w) in code.mapper.code.iter().zip(walks) {
        let sec = cm.old_index;
        for &(oa, na) in &w.pc_relative {
            let Some(oi) = code.old_insn(sec, oa) else {
                continue;
            };
            let Some((_, ni)) = code.new_insn(sec, oa).filter(|(at, _)| *at == na) else {
                continue;
            };
            if let (Some(t), Some(t2)) = (pc_target(&oi, oa), pc_target(&ni, na)) {
                report.counts.branches += 1;
                let (t, t2) = (code.wrap(t), code.wrap(t2));
                let links = matches!(oi.op, Op::Jal { rd, .. } if rd != 0)
                    || matches!(oi.op, Op::CJal { .. });
                let want = match code.mapper.inserted_at(t) {
                    Some(s) if !links && oa >= t && oa < s.old_end => Mapped::Exact(s.new_first),
                    _ => code.mapper.map(t),
                };
                expect(report, "branch", (oa, na), t, want, t2);
                validated.push(oa);
            } else if let Op::Auipc { rd, .. } = oi.op {
                if relocated_auipc.binary_search(&oa).is_err() {
                    unrelocated_auipc(code, sec, oa, rd, &oi, validated, report);
                }
            }
        }
    }
}

/// Every changed immediate must be one a reference check vouched for (`validated`, sorted).
fn unexplained_immediates(
    code: &Code<'_, '_, '_, '_>,
    walks: &[WalkResult],
    validated: &[u64],
    report: &mut VerifyReport,
) {
    for (cm, w) in code.mapper.code.iter().zip(walks) {
        for &(oa, na) in &w.changed {
            if validated.binary_search(&oa).is_err() {
                let old = code.old_insn(cm.old_index, oa).map_or(0, |i| i.raw);
                let new = code.new_insn(cm.old_index, oa).map_or(0, |(_, i)| i.raw);
                report.mismatch(
                    "immediate",
                    Some(oa),
                    Some(na),
                    format!("{old:#010x} unchanged (no reference explains a change)"),
                    format!("{new:#010x}"),
                );
            }
        }
    }
}

/// Relocation types that sit on an `auipc` (or an `auipc` + `jalr` call).
fn is_hi_type(t: u32) -> bool {
    [
        elf::R_RISCV_CALL.0,
        elf::R_RISCV_CALL_PLT.0,
        elf::R_RISCV_PCREL_HI20.0,
        elf::R_RISCV_GOT_HI20.0,
        elf::R_RISCV_TLS_GOT_HI20.0,
        elf::R_RISCV_TLS_GD_HI20.0,
    ]
    .contains(&t)
}

/// `S + A` of a static relocation of the original.
fn target(ctx: &Ctx<'_, '_, '_>, r: &Reloc) -> u64 {
    let s = if r.sym == 0 {
        0
    } else {
        ctx.old.symbols.get(r.sym as usize).map_or(0, |s| s.value)
    };
    s.wrapping_add(r.addend as u64)
}

/// `S + A` and where it must map.
fn mapped_target(code: &Code<'_, '_, '_, '_>, r: &Reloc) -> (u64, Mapped) {
    super::data::reloc_target(code.ctx, code.mapper, &code.ctx.old.symbols, r)
}

/// A relocated instruction of the original and its image.
struct Relocated<'r> {
    /// Its old section.
    sec: usize,
    /// The relocation on it.
    r: &'r Reloc,
    /// Its old address.
    p: u64,
    /// Its new address.
    np: u64,
    /// The old instruction.
    oi: Insn,
    /// The new instruction.
    ni: Insn,
}

/// Checks the instruction under one static relocation of code, if it is a reference:
/// a call, an `auipc` (with its `%pcrel_lo` partners), a `gp`-relative access or an
/// absolute `%hi`/`%lo`.
#[allow(clippy::too_many_arguments)]
fn check_reloc(
    code: &Code<'_, '_, '_, '_>,
    sec: usize,
    r: &Reloc,
    lows: &[(u64, usize, u64)],
    gp: (Option<u64>, Option<u64>),
    validated: &mut Vec<u64>,
    tls_got: &mut Vec<u64>,
    report: &mut VerifyReport,
) {
    use elf::*;
    let t = r.r_type;
    let p = r.offset;
    let absolute = [
        R_RISCV_HI20.0,
        R_RISCV_LO12_I.0,
        R_RISCV_LO12_S.0,
        R_RISCV_RVC_LUI.0,
    ];
    let gprel = [R_RISCV_GPREL_I.0, R_RISCV_GPREL_S.0];
    if !is_hi_type(t) && !absolute.contains(&t) && !gprel.contains(&t) {
        return;
    }
    let Some(oi) = code.old_insn(sec, p) else {
        return;
    };
    let Some((np, ni)) = code.new_insn(sec, p) else {
        report.counts.unchecked += 1;
        return;
    };
    let at = Relocated {
        sec,
        r,
        p,
        np,
        oi,
        ni,
    };
    if t == R_RISCV_CALL.0 || t == R_RISCV_CALL_PLT.0 {
        call(code, &at, validated, report);
    } else if is_hi_type(t) {
        auipc_pair(code, &at, lows, validated, tls_got, report);
    } else if gprel.contains(&t) {
        gp_relative(code, &at, gp, validated, report);
    } else {
        absolute_hi_lo(code, &at, validated, report);
    }
}

/// A call (`auipc` + `jalr`) reaches the image of its old target.
fn call(
    code: &Code<'_, '_, '_, '_>,
    at: &Relocated<'_>,
    validated: &mut Vec<u64>,
    report: &mut VerifyReport,
) {
    let Relocated { sec, p, np, .. } = *at;
    let (Some(oj), Some((nj_at, nj))) = (code.old_insn(sec, p + 4), code.new_insn(sec, p + 4))
    else {
        return;
    };
    let (Some(ov), Some(nv), Some(olo), Some(nlo)) = (
        auipc_value(&at.oi, p),
        auipc_value(&at.ni, np),
        lo_imm(&oj),
        lo_imm(&nj),
    ) else {
        report.mismatch("call", Some(p), Some(np), "auipc + jalr", "another pair");
        return;
    };
    report.counts.auipc_pairs += 1;
    let (tgt, found) = (code.add(ov, olo), code.add(nv, nlo));
    if nj_at == np + 4 {
        // A tail call (`jr`) of its own function, from inside it, is a loop: behind the slot.
        let want = match (code.mapper.inserted_at(tgt), oj.op) {
            (Some(s), Op::Jalr { rd: 0, .. }) if p >= tgt && p < s.old_end => {
                Mapped::Exact(s.new_first)
            }
            _ => code.mapper.map(tgt),
        };
        expect(report, "call", (p, np), tgt, want, found);
        validated.extend([p, p + 4]);
    }
}

/// An `auipc` and its `%pcrel_lo` partners reach their target's image (alone: that of `S + A`).
fn auipc_pair(
    code: &Code<'_, '_, '_, '_>,
    at: &Relocated<'_>,
    lows: &[(u64, usize, u64)],
    validated: &mut Vec<u64>,
    tls_got: &mut Vec<u64>,
    report: &mut VerifyReport,
) {
    let Relocated { r, p, np, .. } = *at;
    let t = r.r_type;
    let (Some(ov), Some(nv)) = (auipc_value(&at.oi, p), auipc_value(&at.ni, np)) else {
        report.mismatch(
            "auipc",
            Some(p),
            Some(np),
            "auipc",
            format!("{:#x}", at.ni.raw),
        );
        return;
    };
    report.counts.auipc_pairs += 1;
    let start = lows.partition_point(|l| l.0 < p);
    let partners = lows[start..].iter().take_while(|l| l.0 == p);
    let mut any = false;
    for &(_, lsec, lp) in partners {
        any = true;
        let (Some(ol), Some((_, nl))) = (code.old_insn(lsec, lp), code.new_insn(lsec, lp)) else {
            report.counts.unchecked += 1;
            continue;
        };
        let (Some(olo), Some(nlo)) = (lo_imm(&ol), lo_imm(&nl)) else {
            continue;
        };
        let (tgt, found) = (code.add(ov, olo), code.add(nv, nlo));
        // Initial-exec slots hold a TP offset; general-dynamic pairs a module id and
        // an offset.
        if t == elf::R_RISCV_TLS_GOT_HI20.0 {
            tls_got.push(tgt);
        } else if t == elf::R_RISCV_TLS_GD_HI20.0 {
            tls_got.extend([tgt, tgt + code.ctx.ptr as u64]);
        }
        expect(
            report,
            "auipc pair",
            (p, np),
            tgt,
            code.mapper.map(tgt),
            found,
        );
        validated.push(lp);
    }
    if !any {
        // No %pcrel_lo: only the upper part can be checked, against S + A.
        match mapped_target(code, r).1.exact() {
            Some(v) => {
                let want = code.add(np, hi20(v.wrapping_sub(np) as i64));
                if want != nv {
                    report.mismatch(
                        "auipc",
                        Some(p),
                        Some(np),
                        format!("%pcrel_hi of {v:#x}: {want:#x}"),
                        format!("{nv:#x}"),
                    );
                }
            }
            None => report.counts.unchecked += 1,
        }
    }
    validated.push(p);
}

/// A `gp`-relative access reaches the image of its old target from the new `gp`.
fn gp_relative(
    code: &Code<'_, '_, '_, '_>,
    at: &Relocated<'_>,
    gp: (Option<u64>, Option<u64>),
    validated: &mut Vec<u64>,
    report: &mut VerifyReport,
) {
    let Relocated { p, np, .. } = *at;
    let (Some(g_old), Some(g_new), Some(olo), Some(nlo)) =
        (gp.0, gp.1, lo_imm(&at.oi), lo_imm(&at.ni))
    else {
        return;
    };
    report.counts.gp_relative += 1;
    let (tgt, found) = (code.add(g_old, olo), code.add(g_new, nlo));
    expect(
        report,
        "gp-relative",
        (p, np),
        tgt,
        code.mapper.map(tgt),
        found,
    );
    validated.push(p);
}

/// An absolute `%hi` / `%lo` of `S + A` holds that part of its image.
fn absolute_hi_lo(
    code: &Code<'_, '_, '_, '_>,
    at: &Relocated<'_>,
    validated: &mut Vec<u64>,
    report: &mut VerifyReport,
) {
    use elf::*;
    let Relocated { r, p, np, ni, .. } = *at;
    let t = r.r_type;
    report.counts.absolute += 1;
    let (tgt, m) = mapped_target(code, r);
    let Some(v) = m.exact() else {
        report.counts.unchecked += 1;
        validated.push(p);
        return;
    };
    let (want, found) = match (ni.op, t) {
        (Op::Lui { imm, .. }, _) | (Op::CLui { imm, .. }, _)
            if t == R_RISCV_HI20.0 || t == R_RISCV_RVC_LUI.0 =>
        {
            (hi20(v as i64), imm)
        }
        _ => match lo_imm(&ni) {
            Some(lo) if t == R_RISCV_LO12_I.0 || t == R_RISCV_LO12_S.0 => (lo12(v as i64), lo),
            _ => {
                report.mismatch(
                    "absolute",
                    Some(p),
                    Some(np),
                    format!("an instruction for relocation type {t}"),
                    format!("{:#010x}", ni.raw),
                );
                return;
            }
        },
    };
    if want != found {
        report.mismatch(
            "absolute",
            Some(p),
            Some(np),
            format!("immediate {want:#x} (for {v:#x}, the image of {tgt:#x})"),
            format!("{found:#x}"),
        );
    }
    validated.push(p);
}

/// An `auipc` without a relocation: its users are the following instructions that add a
/// 12-bit immediate to its register, up to a jump or a write of that register.
fn unrelocated_auipc(
    code: &Code<'_, '_, '_, '_>,
    sec: usize,
    at: u64,
    rd: u8,
    oi: &Insn,
    validated: &mut Vec<u64>,
    report: &mut VerifyReport,
) {
    let Some((na, ni)) = code.new_insn(sec, at) else {
        report.counts.unchecked += 1;
        return;
    };
    let (Some(ov), Some(nv)) = (auipc_value(oi, at), auipc_value(&ni, na)) else {
        return;
    };
    let mut pc = at + 4;
    let mut users = 0;
    for _ in 0..AUIPC_WINDOW {
        let Some(u) = code.old_insn(sec, pc) else {
            break;
        };
        if base_reg(&u) == Some(rd) && rd != 0 {
            if let (Some(olo), Some((_, nu))) = (lo_imm(&u), code.new_insn(sec, pc)) {
                if let Some(nlo) = lo_imm(&nu) {
                    users += 1;
                    let (tgt, found) = (code.add(ov, olo), code.add(nv, nlo));
                    expect(
                        report,
                        "auipc pair",
                        (at, na),
                        tgt,
                        code.mapper.map(tgt),
                        found,
                    );
                    validated.push(pc);
                }
            }
        }
        if is_control(&u) || writes(&u) == Writes::Reg(rd) {
            break;
        }
        pc += u64::from(u.len);
    }
    if users > 0 {
        report.counts.unrelocated_auipc += 1;
    } else if oi.raw != ni.raw {
        report.mismatch(
            "auipc",
            Some(at),
            Some(na),
            format!("{:#010x} unchanged (no relocation and no user)", oi.raw),
            format!("{:#010x}", ni.raw),
        );
    }
    validated.push(at);
}
