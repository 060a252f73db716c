# Every instruction form the decoder classifies, for RV64 (cross-checked against objdump).
# Assembled with -march=rv64gcqh_zfh_zba_zbb_zbs_zbc_zicsr_zifencei_zicbom_zicbop_zicboz_zawrs_zihintpause_svinval_v
	.option norelax
	.text
	.globl _start
_start:
	.option norvc
# ---- RV64I: 32-bit encodings only in this block
base:
	lui	a0, 0
	lui	a0, 0x7ffff
	lui	a0, 0x80000
	lui	t6, 0xfffff
	auipc	a0, 0
	auipc	a1, 0x7ffff
	auipc	a2, 0x80000
	auipc	t0, 0xfffff
	auipc	ra, 0x12345
	jal	ra, base
	jal	zero, fwd1
	jal	t0, base
	jalr	ra, 0(a0)
	jalr	zero, -2048(t1)
	jalr	t0, 2047(t0)
	beq	a0, a1, base
	bne	s0, s1, fwd1
	blt	t0, t1, base
	bge	a2, a3, fwd1
	bltu	a4, a5, base
	bgeu	s2, s11, fwd1
fwd1:
	lb	a0, -2048(sp)
	lh	a1, 2047(s0)
	lw	a2, 0(a0)
	ld	a3, -8(t6)
	lbu	a4, 1(gp)
	lhu	a5, 2(tp)
	lwu	a6, 4(ra)
	sb	a0, -2048(sp)
	sh	a1, 2047(s0)
	sw	a2, -1(a0)
	sd	a3, 8(t6)
	addi	a0, a1, -2048
	addi	a0, a1, 2047
	addi	zero, zero, 0
	addi	zero, zero, 1
	slti	a0, a1, -1
	sltiu	a0, a1, 5
	xori	a0, a1, -1
	ori	a0, a1, 0x7f
	andi	a0, a1, -16
	slli	a0, a1, 63
	srli	a0, a1, 1
	srai	a0, a1, 63
	add	a0, a1, a2
	sub	a0, a1, a2
	sll	a0, a1, a2
	slt	a0, a1, a2
	sltu	a0, a1, a2
	xor	a0, a1, a2
	srl	a0, a1, a2
	sra	a0, a1, a2
	or	a0, a1, a2
	and	a0, a1, a2
	addiw	a0, a1, -2048
	addiw	a0, a1, 0
	slliw	a0, a1, 31
	srliw	a0, a1, 31
	sraiw	a0, a1, 31
	addw	a0, a1, a2
	subw	a0, a1, a2
	sllw	a0, a1, a2
	srlw	a0, a1, a2
	sraw	a0, a1, a2
	fence
	fence	rw, rw
	fence	iorw, iorw
	fence	r, r
	fence.tso
	pause
	fence.i
	ecall
	ebreak
# ---- M
	mul	a0, a1, a2
	mulh	a0, a1, a2
	mulhsu	a0, a1, a2
	mulhu	a0, a1, a2
	div	a0, a1, a2
	divu	a0, a1, a2
	rem	a0, a1, a2
	remu	a0, a1, a2
	mulw	a0, a1, a2
	divw	a0, a1, a2
	divuw	a0, a1, a2
	remw	a0, a1, a2
	remuw	a0, a1, a2
# ---- A
	lr.w	a0, (a1)
	lr.w.aqrl	a0, (a1)
	sc.w	a0, a2, (a1)
	lr.d.aq	a0, (a1)
	sc.d.rl	a0, a2, (a1)
	amoswap.w	a0, a2, (a1)
	amoadd.w	a0, a2, (a1)
	amoxor.w	a0, a2, (a1)
	amoand.w	a0, a2, (a1)
	amoor.w	a0, a2, (a1)
	amomin.w	a0, a2, (a1)
	amomax.w	a0, a2, (a1)
	amominu.w	a0, a2, (a1)
	amomaxu.w	a0, a2, (a1)
	amoswap.d.aqrl	a0, a2, (a1)
	amoadd.d	a0, a2, (a1)
	amomaxu.d	a0, a2, (a1)
# ---- F / D / Q / Zfh
	flw	fa0, -4(sp)
	fld	fs11, 2040(a0)
	flq	ft0, 16(a0)
	flh	fa1, 2(a0)
	fsw	fa0, -4(sp)
	fsd	fs11, -2048(a0)
	fsq	ft0, 16(a0)
	fsh	fa1, 2(a0)
	fadd.s	fa0, fa1, fa2
	fsub.d	fa0, fa1, fa2, rtz
	fmul.q	fa0, fa1, fa2
	fdiv.h	fa0, fa1, fa2, dyn
	fsqrt.s	fa0, fa1
	fsqrt.d	fa0, fa1, rne
	fsgnj.s	fa0, fa1, fa2
	fsgnjn.d	fa0, fa1, fa2
	fsgnjx.h	fa0, fa1, fa2
	fmin.s	fa0, fa1, fa2
	fmax.d	fa0, fa1, fa2
	fmadd.s	fa0, fa1, fa2, fa3
	fmsub.d	fa0, fa1, fa2, fa3, rup
	fnmsub.h	fa0, fa1, fa2, fa3
	fnmadd.q	fa0, fa1, fa2, fa3
	fcvt.s.d	fa0, fa1
	fcvt.d.s	fa0, fa1
	fcvt.h.s	fa0, fa1
	fcvt.s.h	fa0, fa1
	fcvt.q.d	fa0, fa1
	fcvt.w.s	a0, fa1
	fcvt.wu.d	a0, fa1, rtz
	fcvt.l.s	a0, fa1
	fcvt.lu.d	a0, fa1
	fcvt.s.w	fa0, a1
	fcvt.d.wu	fa0, a1
	fcvt.h.l	fa0, a1
	fcvt.q.lu	fa0, a1
	fmv.x.w	a0, fa1
	fmv.x.d	a0, fa1
	fmv.x.h	a0, fa1
	fmv.w.x	fa0, a1
	fmv.d.x	fa0, a1
	fmv.h.x	fa0, a1
	fclass.s	a0, fa1
	fclass.d	a0, fa1
	feq.s	a0, fa1, fa2
	flt.d	a0, fa1, fa2
	fle.h	a0, fa1, fa2
	frcsr	a0
	fscsr	a0, a1
	frrm	a0
	fsflags	a1
# ---- Zicsr and privileged
	csrrw	a0, mstatus, a1
	csrrs	a0, sstatus, zero
	csrrc	zero, sie, a1
	csrrwi	a0, 0x7ff, 31
	csrrsi	a0, satp, 0
	csrrci	zero, cycle, 1
	csrr	a0, time
	csrw	sscratch, a0
	sret
	mret
	wfi
	sfence.vma
	sfence.vma	a0
	sfence.vma	a0, a1
	hfence.vvma	a0, a1
	hfence.gvma	zero, zero
	hlv.b	a0, (a1)
	hlv.hu	a0, (a1)
	hlvx.wu	a0, (a1)
	hlv.d	a0, (a1)
	hsv.w	a0, (a1)
	hsv.d	a0, (a1)
	sinval.vma	a0, a1
	sfence.w.inval
	sfence.inval.ir
	wrs.nto
	wrs.sto
# ---- Zba / Zbb / Zbs / Zbc
	sh1add	a0, a1, a2
	sh2add	a0, a1, a2
	sh3add	a0, a1, a2
	add.uw	a0, a1, a2
	sh1add.uw	a0, a1, a2
	sh2add.uw	a0, a1, a2
	sh3add.uw	a0, a1, a2
	slli.uw	a0, a1, 63
	andn	a0, a1, a2
	orn	a0, a1, a2
	xnor	a0, a1, a2
	clz	a0, a1
	ctz	a0, a1
	cpop	a0, a1
	clzw	a0, a1
	ctzw	a0, a1
	cpopw	a0, a1
	max	a0, a1, a2
	maxu	a0, a1, a2
	min	a0, a1, a2
	minu	a0, a1, a2
	sext.b	a0, a1
	sext.h	a0, a1
	zext.h	a0, a1
	rol	a0, a1, a2
	ror	a0, a1, a2
	rolw	a0, a1, a2
	rorw	a0, a1, a2
	rori	a0, a1, 63
	roriw	a0, a1, 31
	orc.b	a0, a1
	rev8	a0, a1
	bclr	a0, a1, a2
	bclri	a0, a1, 63
	bext	a0, a1, a2
	bexti	a0, a1, 63
	binv	a0, a1, a2
	binvi	a0, a1, 63
	bset	a0, a1, a2
	bseti	a0, a1, 63
	clmul	a0, a1, a2
	clmulh	a0, a1, a2
	clmulr	a0, a1, a2
# ---- Zicbom / Zicboz / Zicbop
	cbo.clean	(a0)
	cbo.flush	(a0)
	cbo.inval	(a0)
	cbo.zero	(a0)
	prefetch.i	-32(a0)
	prefetch.r	2016(a0)
	prefetch.w	0(a0)
# ---- V
	vsetvli	t0, a0, e8, m1, ta, ma
	vsetivli	t0, 31, e64, m8, tu, mu
	vsetvl	t0, a0, a1
	vle8.v	v0, (a0)
	vle64.v	v8, (a0), v0.t
	vlse32.v	v1, (a0), a1
	vluxei16.v	v2, (a0), v3
	vloxei64.v	v2, (a0), v3
	vle32ff.v	v4, (a0)
	vl1re8.v	v1, (a0)
	vl8re64.v	v8, (a0)
	vlm.v	v1, (a0)
	vlseg2e32.v	v2, (a0)
	vse8.v	v0, (a0)
	vsse64.v	v1, (a0), a1
	vsuxei8.v	v2, (a0), v3
	vsoxei32.v	v2, (a0), v3
	vs1r.v	v1, (a0)
	vsm.v	v1, (a0)
	vadd.vv	v1, v2, v3
	vadd.vx	v1, v2, a0
	vadd.vi	v1, v2, -16
	vfadd.vf	v1, v2, fa0
	vmul.vv	v1, v2, v3, v0.t
	vredsum.vs	v1, v2, v3
	vmv.x.s	a0, v1
	vmv.v.x	v1, a0

	.option rvc
# ---- C extension, all quadrants (RV64 meanings)
cq:
	c.addi4spn	a0, sp, 4
	c.addi4spn	s0, sp, 1020
	c.fld	fa0, 248(a5)
	c.lw	a0, 124(a5)
	c.ld	s1, 248(s0)
	c.fsd	fa0, 0(a5)
	c.sw	a0, 64(a5)
	c.sd	a4, 8(a3)
	c.nop
	c.addi	a0, -32
	c.addi	sp, 31
	c.addiw	a0, -1
	c.addiw	t6, 0
	c.li	a0, -32
	c.li	t0, 31
	c.addi16sp	sp, -512
	c.addi16sp	sp, 496
	c.lui	a0, 1
	c.lui	a1, 0x1f
	c.lui	t6, 0xfffe0
	c.lui	s0, 0xfffff
	c.srli	a0, 63
	c.srai	s1, 1
	c.andi	a5, -32
	c.sub	a0, a1
	c.xor	a0, a1
	c.or	a0, a1
	c.and	a0, a1
	c.subw	a0, a1
	c.addw	a0, a1
	c.j	cq
	c.j	cfwd
	c.beqz	a0, cq
	c.bnez	s1, cfwd
	c.slli	a0, 63
	c.slli	t6, 1
	c.fldsp	fa0, 504(sp)
	c.lwsp	a0, 252(sp)
	c.ldsp	ra, 0(sp)
	c.jr	ra
	c.jr	t6
	c.mv	a0, a1
	c.ebreak
	c.jalr	a0
	c.jalr	t6
	c.add	a0, a1
	c.fsdsp	fa0, 504(sp)
	c.swsp	a0, 252(sp)
	c.sdsp	ra, 0(sp)
cfwd:
# ---- extreme offsets. gas expands a far branch to a label into bne+jal (and c.j into
# jal) when its first size guess is the long form; an offset from `.` is exact.
# .rept of real nops keeps the filler code (objdump prints .fill as data).
	beq	a0, a1, .+4094
	.option norvc
	.rept	1023
	addi	zero, zero, 0
	.endr
	.option rvc
	bne	a0, a1, .-4096
	c.beqz	a0, .+254
	.rept	127
	c.nop
	.endr
	c.bnez	a0, .-256
	c.j	.+2046
	.rept	1023
	c.nop
	.endr
	c.j	.-2048
# jal: the target need not exist, so no 1 MiB filler (it makes objdump take 40 s);
# the backward ones also check wrap-around below address 0.
	jal	zero, .+1048574
	jal	ra, .-1048576
	c.j	.-2048
	c.beqz	s0, .-256
	bgeu	t0, t1, .-4096
	c.nop
