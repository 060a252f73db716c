# RV32 meanings: c.jal, c.flw/c.fsw(sp), 5-bit shifts, RV32 Zbb encodings.
# Assembled with -march=rv32gc_zfh_zba_zbb_zbs_zbc_zicsr_zifencei -mabi=ilp32
	.option norelax
	.text
	.globl _start
_start:
	.option norvc
top:
	lui	a0, 0x80000
	auipc	a0, 0xfffff
	auipc	t1, 0x00001
	jal	ra, top
	jalr	ra, -4(a0)
	beq	a0, a1, top
	bgeu	a0, a1, fwd
	lw	a0, -2048(sp)
	lbu	a0, 7(a1)
	sw	a0, 2047(sp)
	flw	fa0, 4(a0)
	fld	fa0, 8(a0)
	fsw	fa0, 4(a0)
	fsd	fa0, 8(a0)
	addi	a0, a0, 1
	slli	a0, a1, 31
	srli	a0, a1, 31
	srai	a0, a1, 31
	rori	a0, a1, 31
	bseti	a0, a1, 31
	bclri	a0, a1, 31
	binvi	a0, a1, 31
	bexti	a0, a1, 31
	rev8	a0, a1
	orc.b	a0, a1
	zext.h	a0, a1
	sext.b	a0, a1
	clz	a0, a1
	sh3add	a0, a1, a2
	clmulh	a0, a1, a2
	mulhsu	a0, a1, a2
	lr.w	a0, (a1)
	amoadd.w.aqrl	a0, a2, (a1)
	fcvt.w.d	a0, fa0
	fcvt.d.wu	fa0, a0
	fmv.x.w	a0, fa0
	fmv.x.h	a0, fa0
	fmv.h.x	fa0, a0
	csrrs	a0, cycleh, zero
	fence.i
fwd:
	.option rvc
cq:
	c.addi4spn	a0, sp, 8
	c.flw	fa0, 124(a5)
	c.fsw	fa0, 4(a5)
	c.fld	fa1, 8(a5)
	c.lw	a0, 0(a5)
	c.sw	a0, 4(a5)
	c.jal	cq
	c.jal	cfwd
	c.j	cq
	c.beqz	a0, cq
	c.bnez	a0, cfwd
	c.srli	a0, 31
	c.srai	a0, 1
	c.slli	a0, 31
	c.lui	a0, 0xfffe0
	c.addi16sp	sp, -32
	c.flwsp	fa0, 252(sp)
	c.fswsp	fa0, 252(sp)
	c.lwsp	a0, 4(sp)
	c.swsp	a0, 4(sp)
	c.jr	ra
	c.jalr	a5
	c.nop
	c.sub	a0, a1
	c.and	a0, a1
cfwd:
# ---- extreme offsets (see rv64_all.s for why `.`-relative)
	c.jal	.+2046
	.rept	1023
	c.nop
	.endr
	c.jal	.-2048
	beq	a0, a1, .-4096
	blt	a0, a1, .+4094
	jal	ra, .+1048574
	jal	zero, .-1048576
	c.nop
