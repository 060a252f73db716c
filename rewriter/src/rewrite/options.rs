//! What a rewrite is asked to do, parsed and checked once, here, for every caller: the
//! command line uses these types (and their flag spellings) directly.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::plan::Layout;

/// The slot sizes a rewrite can leave at each function entry.
pub const SLOT_SIZES: [u32; 4] = [0, 4, 8, 16];

/// What a rewrite is asked to do. [`RewriteOptions::default`] is what `padtrim rewrite`
/// does without flags: 4-byte slots, nothing kept before the entry, the file's default
/// layout, the patched writer, and the output verified.
#[derive(Debug, Clone, Copy)]
pub struct RewriteOptions {
    /// Slot bytes kept at each function entry (0, 4, 8 or 16).
    pub slot: u32,
    /// Pad bytes kept before each function entry.
    pub pre: u32,
    /// Layout; `None` picks in-place for a vmlinux and pack otherwise.
    pub layout: Option<Layout>,
    /// Allow slots smaller than a kernel's ftrace patch.
    pub force: bool,
    /// How a linked file is written.
    pub writer: Writer,
    /// Prove the output right before handing it back (translation validation, see
    /// [`crate::verify`](mod@crate::verify)); without it the output is only parsed back.
    pub verify: bool,
}

/// How a linked file's rewrite is written out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Writer {
    /// The input's own bytes placed anew and patched (see `emit_patched`); what that cannot
    /// express falls back to the builder.
    #[default]
    Patched,
    /// `object`'s ELF builder: reads the whole file into its model and re-serialises it
    /// (slower, twice the memory; rebuilds `.dynsym` order and hash tables).
    Builder,
}

impl Default for RewriteOptions {
    fn default() -> Self {
        RewriteOptions {
            slot: 4,
            pre: 0,
            layout: None,
            force: false,
            writer: Writer::Patched,
            verify: true,
        }
    }
}

impl RewriteOptions {
    /// Refuses options no rewrite can honour (a slot size not in [`SLOT_SIZES`]).
    pub fn validate(&self) -> Result<()> {
        if !SLOT_SIZES.contains(&self.slot) {
            return Err(Error::Unsupported(format!(
                "slot size {} (allowed: 0, 4, 8, 16)",
                self.slot
            )));
        }
        Ok(())
    }
}

/// Parses a slot size as the command line spells it.
pub fn parse_slot(s: &str) -> std::result::Result<u32, String> {
    match s.parse::<u32>() {
        Ok(v) if SLOT_SIZES.contains(&v) => Ok(v),
        _ => Err("slot must be 0, 4, 8 or 16".into()),
    }
}

/// A flag value that names none of the choices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownChoice {
    /// The value given.
    pub given: String,
    /// The values allowed.
    pub allowed: &'static [&'static str],
}

impl fmt::Display for UnknownChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' (expected {})",
            self.given,
            self.allowed.join(" or ")
        )
    }
}

impl std::error::Error for UnknownChoice {}

impl Layout {
    /// Every layout, in declaration order.
    pub const ALL: [Layout; 2] = [Layout::Pack, Layout::InPlace];
    /// The flag spellings, in declaration order.
    pub const NAMES: &'static [&'static str] = &["pack", "in-place"];

    /// One line on what the layout does, for `--help`.
    pub fn help(self) -> &'static str {
        match self {
            Layout::Pack => "Shrink code and move what follows: a smaller file and image",
            Layout::InPlace => "Keep section addresses; freed bytes become nops at section ends",
        }
    }

    /// The flag spelling (`pack`, `in-place`).
    pub fn name(self) -> &'static str {
        match self {
            Layout::Pack => "pack",
            Layout::InPlace => "in-place",
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Layout {
    type Err = UnknownChoice;
    fn from_str(s: &str) -> std::result::Result<Self, UnknownChoice> {
        match s {
            "pack" => Ok(Layout::Pack),
            "in-place" => Ok(Layout::InPlace),
            _ => Err(UnknownChoice {
                given: s.into(),
                allowed: Layout::NAMES,
            }),
        }
    }
}

impl Writer {
    /// Every writer, in declaration order.
    pub const ALL: [Writer; 2] = [Writer::Patched, Writer::Builder];
    /// The flag spellings, in declaration order.
    pub const NAMES: &'static [&'static str] = &["patched", "builder"];

    /// One line on what the writer does, for `--help`.
    pub fn help(self) -> &'static str {
        match self {
            Writer::Patched => {
                "Place and patch the input's own bytes (the builder only for what that cannot express)"
            }
            Writer::Builder => "Re-serialise the file through `object`'s ELF builder",
        }
    }

    /// The flag spelling (`patched`, `builder`).
    pub fn name(self) -> &'static str {
        match self {
            Writer::Patched => "patched",
            Writer::Builder => "builder",
        }
    }
}

impl fmt::Display for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Writer {
    type Err = UnknownChoice;
    fn from_str(s: &str) -> std::result::Result<Self, UnknownChoice> {
        match s {
            "patched" => Ok(Writer::Patched),
            "builder" => Ok(Writer::Builder),
            _ => Err(UnknownChoice {
                given: s.into(),
                allowed: Writer::NAMES,
            }),
        }
    }
}
