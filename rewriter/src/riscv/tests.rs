//! Unit tests: encoder round trips and limits, decode errors, hand-encoded forms
//! binutils 2.40 cannot assemble, and robustness on random bytes.
//! (The cross-check against objdump is `tests/riscv_vs_objdump.rs`.)

use super::*;

fn dec32(raw: u32, xlen: Xlen) -> Result<Insn, DecodeError> {
    decode(&raw.to_le_bytes(), xlen)
}

fn dec16(raw: u16, xlen: Xlen) -> Result<Insn, DecodeError> {
    decode(&raw.to_le_bytes(), xlen)
}

/// Even offsets from min to max: the extremes, their neighbours, and a sweep.
fn offsets(min: i64, max: i64) -> Vec<i64> {
    let mut v = vec![min, min + 2, -2, 0, 2, max - 2, max];
    let step = ((max - min) / 97) & !1;
    let mut o = min;
    while o <= max {
        v.push(o);
        o += step.max(2);
    }
    v
}

fn offset_of(op: Op) -> i64 {
    match op {
        Op::Branch { offset, .. }
        | Op::Jal { offset, .. }
        | Op::CBranch { offset, .. }
        | Op::CJ { offset }
        | Op::CJal { offset } => offset as i64,
        other => panic!("not a jump: {other:?}"),
    }
}

#[test]
fn branch_offset_round_trip_keeps_other_bits() {
    // bgeu s2, s11, 0 and blt t0, t1, 0
    for base in [0x01b9_7063u32, 0x0062_c063] {
        for off in offsets(-4096, 4094) {
            let raw = with_branch_offset(base, off).unwrap();
            assert_eq!(raw & 0x01ff_f07f, base & 0x01ff_f07f, "off {off}");
            let insn = dec32(raw, Xlen::Rv64).unwrap();
            assert_eq!(offset_of(insn.op), off);
            assert_eq!(pc_target(&insn, 0x1000), Some((0x1000 + off) as u64));
        }
    }
}

#[test]
fn jal_offset_round_trip() {
    for off in offsets(-(1 << 20), (1 << 20) - 2) {
        let raw = encode_jal(5, off).unwrap();
        assert_eq!(
            dec32(raw, Xlen::Rv32).unwrap().op,
            Op::Jal {
                rd: 5,
                offset: off as i32
            }
        );
        let re = with_jal_offset(raw, 8).unwrap();
        assert_eq!(
            dec32(re, Xlen::Rv64).unwrap().op,
            Op::Jal { rd: 5, offset: 8 }
        );
    }
}

#[test]
fn compressed_offsets_round_trip() {
    // c.beqz a0 / c.bnez s1, c.j, c.jal
    for base in [0xc101u16, 0xe081] {
        for off in offsets(-256, 254) {
            let raw = with_cbranch_offset(base, off).unwrap();
            assert_eq!(raw & !0x1c7c, base & !0x1c7c);
            assert_eq!(offset_of(dec16(raw, Xlen::Rv64).unwrap().op), off);
        }
    }
    for off in offsets(-2048, 2046) {
        let j = with_cj_offset(0xa001, off).unwrap();
        assert_eq!(
            dec16(j, Xlen::Rv64).unwrap().op,
            Op::CJ { offset: off as i32 }
        );
        let jal = with_cj_offset(0x2001, off).unwrap();
        assert_eq!(
            dec16(jal, Xlen::Rv32).unwrap().op,
            Op::CJal { offset: off as i32 }
        );
    }
}

#[test]
fn c_jal_slot_is_c_addiw_on_rv64() {
    let raw = with_cj_offset(0x2001, 0x7fe).unwrap(); // bits 11:7 nonzero
    assert!(matches!(
        dec16(raw, Xlen::Rv32).unwrap().op,
        Op::CJal { .. }
    ));
    assert_eq!(dec16(raw, Xlen::Rv64).unwrap().op, Op::Plain);
    // c.addiw with rd = 0 is reserved on RV64, but a valid c.jal on RV32
    assert!(dec16(0x2001, Xlen::Rv64).is_err());
    assert_eq!(
        dec16(0x2001, Xlen::Rv32).unwrap().op,
        Op::CJal { offset: 0 }
    );
}

#[test]
fn immediates_round_trip() {
    for hi in [-(1i64 << 19), -1, 0, 1, 0x12345, (1 << 19) - 1] {
        let a = encode_auipc(7, hi).unwrap();
        assert_eq!(
            dec32(a, Xlen::Rv64).unwrap().op,
            Op::Auipc {
                rd: 7,
                imm: hi << 12
            }
        );
        let l = with_u_imm(0x0000_0537, hi).unwrap(); // lui a0
        assert_eq!(
            dec32(l, Xlen::Rv64).unwrap().op,
            Op::Lui {
                rd: 10,
                imm: hi << 12
            }
        );
    }
    for imm in [-2048i64, -1, 0, 1, 2047] {
        let j = encode_jalr(1, 6, imm).unwrap();
        assert_eq!(
            dec32(j, Xlen::Rv64).unwrap().op,
            Op::Jalr {
                rd: 1,
                rs1: 6,
                imm: imm as i32
            }
        );
        // ld a3, x(t6) and fsd fs11, x(a0)
        let ld = with_i_imm(0xff8f_b683, imm).unwrap();
        assert_eq!(
            dec32(ld, Xlen::Rv64).unwrap().op,
            Op::IType {
                rd: 13,
                rs1: 31,
                imm: imm as i32
            }
        );
        let fsd = with_s_imm(0x81b5_3027, imm).unwrap();
        assert_eq!(
            dec32(fsd, Xlen::Rv64).unwrap().op,
            Op::SType {
                rs1: 10,
                rs2: 27,
                imm: imm as i32
            }
        );
    }
    for hi6 in [-32i64, -1, 1, 31] {
        let c = with_clui_imm(0x6505, hi6).unwrap(); // c.lui a0, 1
        assert_eq!(
            dec16(c, Xlen::Rv64).unwrap().op,
            Op::CLui {
                rd: 10,
                imm: hi6 << 12
            }
        );
    }
}

#[test]
fn range_errors_at_limits() {
    type Encoder = fn(i64) -> Result<u32, RangeError>;
    let cases: [(i64, i64, Encoder); 4] = [
        (-4096, 4094, |o| with_branch_offset(0x0000_0063, o)),
        (-(1 << 20), (1 << 20) - 2, |o| {
            with_jal_offset(0x0000_006f, o)
        }),
        (-256, 254, |o| with_cbranch_offset(0xc001, o).map(u32::from)),
        (-2048, 2046, |o| with_cj_offset(0xa001, o).map(u32::from)),
    ];
    for (min, max, f) in cases {
        assert!(f(min).is_ok() && f(max).is_ok());
        for bad in [min - 2, max + 2, i64::MIN, i64::MAX - 1] {
            assert!(
                matches!(f(bad), Err(RangeError::OutOfRange { value, .. }) if value == bad),
                "{bad}"
            );
        }
        for odd in [1, -1, max - 1] {
            assert!(
                matches!(f(odd), Err(RangeError::Misaligned { align: 2, .. })),
                "{odd}"
            );
        }
    }
    assert!(with_u_imm(0x17, 1 << 19).is_err() && with_u_imm(0x17, -(1 << 19) - 1).is_err());
    assert!(with_i_imm(0x13, 2048).is_err() && with_i_imm(0x13, -2049).is_err());
    assert!(with_s_imm(0x23, 2048).is_err() && with_s_imm(0x23, -2049).is_err());
    assert!(with_clui_imm(0x6505, 32).is_err() && with_clui_imm(0x6505, -33).is_err());
    assert_eq!(
        with_clui_imm(0x6505, 0),
        Err(RangeError::ReservedZero {
            field: Field::CLuiImm
        })
    );
    assert!(encode_jal(32, 0).is_err() && encode_jalr(1, 32, 0).is_err());
    let msg = with_branch_offset(0x63, 4096).unwrap_err().to_string();
    assert!(
        msg.contains("branch offset 4096") && msg.contains("-4096..=4094"),
        "{msg}"
    );
}

#[test]
fn encoders_refuse_the_wrong_instruction() {
    let wrong = |r: Result<u32, RangeError>| matches!(r, Err(RangeError::WrongInstruction { .. }));
    assert!(wrong(with_branch_offset(0x0000_006f, 0))); // jal
    assert!(wrong(with_branch_offset(0x0000_2063, 0))); // funct3 2: no such branch
    assert!(wrong(with_jal_offset(0x0000_0063, 0)));
    assert!(wrong(with_u_imm(0x0000_0013, 0)));
    assert!(wrong(with_i_imm(0x0015_9513, 0))); // slli: the immediate holds funct6
    assert!(wrong(with_i_imm(0x0205_0007, 0))); // vle8.v
    assert!(wrong(with_s_imm(0x0000_0003, 0)));
    assert!(with_cbranch_offset(0xa001, 0).is_err()); // c.j
    assert!(with_cj_offset(0xc001, 0).is_err()); // c.beqz
    assert!(with_clui_imm(0x7101, 1).is_err()); // c.addi16sp
}

#[test]
fn hi_lo_splits_like_the_psabi() {
    for v in [
        0i64,
        1,
        0x7ff,
        0x800,
        0xfff,
        -1,
        -0x800,
        -0x801,
        0x1234_5678,
        -0x8000_0000,
        0x7fff_f7ff,
        -0x8000_0800,
    ] {
        let (hi, lo) = hi_lo(v).unwrap();
        assert_eq!((hi << 12) + lo, v);
        assert!((-2048..=2047).contains(&lo), "{v}: lo {lo}");
        assert!((-(1 << 19)..(1 << 19)).contains(&hi), "{v}: hi {hi}");
        // the pair the rewriter emits: auipc + jalr reaching pc + v
        let a = dec32(encode_auipc(5, hi).unwrap(), Xlen::Rv64).unwrap();
        let j = dec32(encode_jalr(1, 5, lo).unwrap(), Xlen::Rv64).unwrap();
        let (Op::Auipc { imm, .. }, Op::Jalr { imm: lo12, .. }) = (a.op, j.op) else {
            panic!()
        };
        assert_eq!(imm + lo12 as i64, v);
    }
    assert_eq!(hi_lo(0x800), Ok((1, -0x800)));
    for v in [0x7fff_f800i64, -0x8000_0801, i64::MAX, i64::MIN] {
        assert!(
            matches!(
                hi_lo(v),
                Err(RangeError::OutOfRange {
                    field: Field::HiLoValue,
                    ..
                })
            ),
            "{v}"
        );
    }
}

#[test]
fn garbage_and_truncation_are_errors() {
    assert_eq!(
        decode(&[], Xlen::Rv64),
        Err(DecodeError::Truncated {
            needed: 2,
            available: 0
        })
    );
    assert_eq!(
        decode(&[0x13], Xlen::Rv64),
        Err(DecodeError::Truncated {
            needed: 2,
            available: 1
        })
    );
    assert_eq!(
        decode(&[0x13, 0x00], Xlen::Rv64),
        Err(DecodeError::Truncated {
            needed: 4,
            available: 2
        })
    );
    assert_eq!(
        decode(&[0x13, 0x00, 0x00], Xlen::Rv64),
        Err(DecodeError::Truncated {
            needed: 4,
            available: 3
        })
    );
    assert_eq!(decode(&[0, 0, 0, 0], Xlen::Rv64), Err(DecodeError::AllZero));
    assert_eq!(
        dec32(0xffff_ffff, Xlen::Rv64),
        Err(DecodeError::TooLong { parcel: 0xffff })
    );
    assert!(matches!(
        dec32(0x0000_001f, Xlen::Rv64),
        Err(DecodeError::TooLong { .. })
    )); // 48-bit
    assert!(matches!(
        dec32(0x0000_003f, Xlen::Rv64),
        Err(DecodeError::TooLong { .. })
    )); // 64-bit
    let unknown = [
        0x0000_000bu32,                      // custom-0
        0x0000_002b,                         // custom-1
        0x0000_005b,                         // custom-2
        0x0000_007b,                         // custom-3
        0x0000_7003,                         // LOAD funct3 7
        0x0000_2063,                         // BRANCH funct3 2
        0x0000_1067,                         // JALR funct3 1
        0x0000_4023,                         // STORE funct3 4
        0x0005_d00f,                         // MISC-MEM funct3 5
        0x4000_0013 | (1 << 12),             // slli with funct6 0x10
        (0x00c5_f553 & !0x7000) | (5 << 12), // fadd.s with reserved rm 5
        0x1000_0073,                         // SYSTEM funct3 0, unknown
        0xf000_000f,                         // fence with reserved fm
    ];
    for raw in unknown {
        let err = dec32(raw, Xlen::Rv64).unwrap_err();
        assert_eq!(err, DecodeError::Unknown { raw, len: 4 });
        assert_eq!(err.raw(), raw);
        assert!(err.to_string().contains(&format!("{raw:#010x}")), "{err}");
    }
    // RV64-only encodings on RV32
    for raw in [
        0x0000_3003u32, /* ld */
        0x0000_301b,    /* OP-IMM-32 */
        0x0000_003b,
        0x0000_3023,
        0x0200_102f,             /* funct3 3 amo */
        0x0200_5013 | (1 << 25), /* srli shamt 32 */
    ] {
        assert!(dec32(raw, Xlen::Rv32).is_err(), "{raw:#x}");
    }
    let c_reserved = [
        0x0004u16, // c.addi4spn with imm 0, rd' != 0
        0x8000,    // quadrant 0 funct3 100
        0x6001,    // c.lui x0... imm 0 -> reserved (c.lui with nzimm 0)
        0x6501,    // c.lui a0, 0
        0x6101,    // c.addi16sp 0
        0x9c41,    // c.subw/c.addw space funct2 10 (RV64 reserved)
        0x9c61,    // funct2 11
        0x4002,    // c.lwsp x0
        0x8002,    // c.jr x0
    ];
    for raw in c_reserved {
        assert_eq!(
            dec16(raw, Xlen::Rv64),
            Err(DecodeError::Unknown {
                raw: raw as u32,
                len: 2
            }),
            "{raw:#x}"
        );
    }
    assert!(dec16(0x6002, Xlen::Rv64).is_err()); // c.ldsp x0
    assert!(dec16(0x6002, Xlen::Rv32).is_ok()); // c.flwsp ft0
    assert!(dec16(0x9d0d, Xlen::Rv32).is_err()); // c.subw on RV32
    assert!(dec16(0x157e, Xlen::Rv32).is_err()); // c.slli a0, 63 on RV32
    assert!(dec16(0x917d, Xlen::Rv32).is_err()); // c.srli a0, 63 on RV32
}

#[test]
fn nops_and_hints() {
    assert_eq!(dec32(NOP, Xlen::Rv64).unwrap().op, Op::Nop);
    assert_eq!(dec16(C_NOP, Xlen::Rv32).unwrap().op, Op::CNop);
    assert_eq!(
        dec32(0x0010_0013, Xlen::Rv64).unwrap().op,
        Op::IType {
            rd: 0,
            rs1: 0,
            imm: 1
        }
    );
    assert_eq!(dec16(0x0005, Xlen::Rv64).unwrap().op, Op::Plain); // c.nop 1 (HINT)
    assert_eq!(
        dec16(0x8082, Xlen::Rv64).unwrap().op,
        Op::Jalr {
            rd: 0,
            rs1: 1,
            imm: 0
        }
    ); // c.jr ra
    assert_eq!(
        dec16(0x9502, Xlen::Rv64).unwrap().op,
        Op::Jalr {
            rd: 1,
            rs1: 10,
            imm: 0
        }
    ); // c.jalr a0
    assert_eq!(dec16(0x9002, Xlen::Rv64).unwrap().op, Op::Plain); // c.ebreak
}

#[test]
fn forms_binutils_2_40_cannot_assemble() {
    // Zfa (spec encodings): fli.s fa0, 1.0; fminm.s; fround.d; fcvtmod.w.d; fleq.s;
    // fmvh.x.d / fmvp.d.x (RV32 only). Zicond: czero.eqz / czero.nez.
    let rv64_ok = [
        0xf010_8553u32,
        0x28c5_a553,
        0x4245_f553,
        0xc285_9553,
        0xa0c5_c553,
        0x0ec5_d533,
        0x0ec5_f533,
    ];
    for raw in rv64_ok {
        assert_eq!(dec32(raw, Xlen::Rv64).unwrap().op, Op::Plain, "{raw:#x}");
    }
    let fmvh_x_d = 0xe215_8553u32;
    let fmvp_d_x = 0xb2c5_8553u32;
    for raw in [fmvh_x_d, fmvp_d_x] {
        assert_eq!(dec32(raw, Xlen::Rv32).unwrap().op, Op::Plain, "{raw:#x}");
        assert!(dec32(raw, Xlen::Rv64).is_err(), "{raw:#x}");
    }
    // fmv.x.d is RV64-only
    assert!(dec32(0xe205_8553, Xlen::Rv32).is_err());
}

#[test]
fn pc_target_wraps_and_ignores_other_ops() {
    let back = dec32(encode_jal(0, -8).unwrap(), Xlen::Rv64).unwrap();
    assert_eq!(pc_target(&back, 4), Some(u64::MAX - 3));
    let fwd = dec32(encode_jal(0, 8).unwrap(), Xlen::Rv64).unwrap();
    assert_eq!(pc_target(&fwd, u64::MAX), Some(7));
    let auipc = dec32(encode_auipc(5, -1).unwrap(), Xlen::Rv64).unwrap();
    assert_eq!(pc_target(&auipc, 0x2000), None);
    assert_eq!(auipc_value(&auipc, 0x2000), Some(0x1000));
    assert!(auipc.op.is_pc_relative() && !Op::Plain.is_pc_relative());
}

/// xorshift64*: deterministic pseudo-random bytes without a dependency.
fn random_bytes(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

#[test]
fn random_bytes_never_panic_and_stay_consistent() {
    let bytes = random_bytes(1 << 18, 0x9e37_79b9_7f4a_7c15);
    let mut ok = 0usize;
    for xlen in [Xlen::Rv32, Xlen::Rv64] {
        for at in (0..bytes.len()).step_by(2) {
            match decode(&bytes[at..], xlen) {
                Ok(insn) => {
                    ok += 1;
                    assert_eq!(insn.len as usize, insn_len(insn.raw as u16));
                    assert!(at + insn.len as usize <= bytes.len());
                    let _ = pc_target(&insn, at as u64);
                    // re-encoding a decoded offset must reproduce the same bits
                    match insn.op {
                        Op::Branch { offset, .. } => {
                            assert_eq!(with_branch_offset(insn.raw, offset as i64), Ok(insn.raw))
                        }
                        Op::Jal { offset, .. } => {
                            assert_eq!(with_jal_offset(insn.raw, offset as i64), Ok(insn.raw))
                        }
                        Op::CBranch { offset, .. } => assert_eq!(
                            with_cbranch_offset(insn.raw as u16, offset as i64),
                            Ok(insn.raw as u16)
                        ),
                        Op::CJ { offset } | Op::CJal { offset } => assert_eq!(
                            with_cj_offset(insn.raw as u16, offset as i64),
                            Ok(insn.raw as u16)
                        ),
                        Op::Auipc { imm, .. } | Op::Lui { imm, .. } => {
                            assert_eq!(with_u_imm(insn.raw, imm >> 12), Ok(insn.raw))
                        }
                        Op::CLui { imm, .. } => assert_eq!(
                            with_clui_imm(insn.raw as u16, imm >> 12),
                            Ok(insn.raw as u16)
                        ),
                        Op::IType { imm, .. } | Op::Jalr { imm, .. } if insn.len == 4 => {
                            assert_eq!(with_i_imm(insn.raw, imm as i64), Ok(insn.raw))
                        }
                        Op::SType { imm, .. } => {
                            assert_eq!(with_s_imm(insn.raw, imm as i64), Ok(insn.raw))
                        }
                        _ => {}
                    }
                }
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
        // every truncated tail is an error, not a panic
        for cut in 0..4 {
            let _ = decode(&bytes[bytes.len() - cut..], xlen);
        }
    }
    assert!(
        ok > bytes.len() / 4,
        "random bytes should mostly decode: {ok}"
    );
}
