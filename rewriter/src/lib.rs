#![deny(missing_docs)]
//! padtrim: scan, rewrite and verify RISC-V patchable function entries.
//!
//! Data flows one way: bytes → [`elf`] model → [`scan`] (patch sites) → plan → new image →
//! bytes. [`report`] (with its CI gate, [`report::check`]) consumes the scan.
pub mod elf;
pub mod emit;
pub mod error;
pub mod plan;
pub mod relocate;
pub mod report;
pub mod rewrite;
pub mod riscv;
pub mod scan;
pub mod timing;
pub mod verify;

pub use error::{Error, Result};
