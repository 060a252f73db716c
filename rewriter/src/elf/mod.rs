//! The ELF model: a read-only, bounds-checked view of a RISC-V ELF file in plain integers.
//!
//! Parsing goes through the `object` crate with one generic code path over ELF32 and ELF64
//! (`read`); everything after that works on the 64-bit-wide model types (`model`), so no
//! other module has to care about the class, except writers, which find the two classes'
//! field offsets in [`fields`].

mod bytes;
pub mod dwarf;
pub mod fields;
mod model;
mod read;
mod reloc_names;
mod validate;

pub use bytes::read_uint;
pub use model::*;
pub use read::parse;
pub use reloc_names::reloc_name;
