//! padtrim: scan, rewrite and verify RISC-V patchable function entries.
pub mod riscv;
