//! Writing the new image: a linked file is written by placing and patching the input's own
//! bytes ([`patched`]); what that cannot express goes through `object`'s ELF builder
//! ([`builder`]).

pub mod builder;
mod common;
pub mod patched;

pub use common::NewSection;
