//! Re-encoding instructions with new offsets, and the refusal when one does not fit.

use crate::error::{Error, Result};
use crate::riscv::{self, Insn, Op};

/// The refusal for an instruction at `at` whose new value does not fit its field.
pub(super) fn range(at: u64, what: &str) -> impl FnOnce(riscv::RangeError) -> Error + '_ {
    move |e| Error::refused(format!("{what} at {at:#x} cannot be re-encoded: {e}"))
}

/// Re-encodes a branch or jump with a new offset.
pub(super) fn reencode_pc(insn: &Insn, off: i64, at: u64) -> Result<u32> {
    let what = "branch or jump";
    Ok(match insn.op {
        Op::Branch { .. } => riscv::with_branch_offset(insn.raw, off).map_err(range(at, what))?,
        Op::Jal { .. } => riscv::with_jal_offset(insn.raw, off).map_err(range(at, what))?,
        Op::CBranch { .. } => {
            u32::from(riscv::with_cbranch_offset(insn.raw as u16, off).map_err(range(at, what))?)
        }
        Op::CJ { .. } | Op::CJal { .. } => {
            u32::from(riscv::with_cj_offset(insn.raw as u16, off).map_err(range(at, what))?)
        }
        _ => {
            return Err(Error::refused(format!(
                "instruction at {at:#x} is not a branch or jump"
            )))
        }
    })
}
