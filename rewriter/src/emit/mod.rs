//! Writing the new image: a linked file is written by placing and patching the input's own
//! bytes ([`patched`]); what that cannot express goes through `object`'s ELF builder
//! ([`builder`]). [`tables`] makes what a rewrite adds: the `__mcount_loc` table, the
//! trampoline islands and the runtime's descriptor.

pub mod builder;
mod common;
pub mod patched;
pub mod tables;

pub use common::{NewRecord, NewSection};
