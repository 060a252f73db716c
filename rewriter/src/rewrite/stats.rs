//! What a rewrite did: the numbers `padtrim rewrite` prints and `--json` carries.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::plan::Layout;

use super::options::Writer;

/// What a rewrite did, for `--json` and the report.
#[derive(Debug, Clone, Serialize)]
pub struct RewriteStats {
    /// Patch sites rewritten (`--insert`: slots inserted).
    pub sites: usize,
    /// `--insert` on a file with some pads: the pads cut to slots alongside (0 otherwise).
    pub compacted: usize,
    /// Net bytes removed from executable sections (before free space in-place).
    pub bytes_removed: i64,
    /// Input size.
    pub file_size_before: u64,
    /// Output size.
    pub file_size_after: u64,
    /// Total size of executable sections before.
    pub text_size_before: u64,
    /// Total size of executable sections after (in-place: content bytes, free space excluded).
    pub text_size_after: u64,
    /// Bytes of padding spent keeping slots and aligned code aligned.
    pub alignment_bytes: u64,
    /// PC-relative instructions without relocations that were fixed from their decoding.
    pub unrelocated_fixups: usize,
    /// Free bytes left at section ends (in-place layout).
    pub free_bytes: u64,
    /// The layout used.
    pub layout: Layout,
    /// Slot size used.
    pub slot_bytes: u32,
    /// Relocation type name → count re-resolved.
    pub relocation_types: BTreeMap<String, usize>,
    /// True when the input already had slots of this size: output equals input.
    pub unchanged: bool,
    /// True when the output carries the `__mcount_loc` table.
    pub table: bool,
    /// Trampoline islands added (programs linked with the runtime whose slots are far from
    /// its trampoline).
    pub islands: usize,
    /// The writer that wrote a linked file (none: output equals input, or an object file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writer: Option<Writer>,
    /// Why the patched writer handed the file to the builder, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writer_fallback: Option<String>,
    /// Kernel tables rewritten from their bytes (`__ex_table`, kallsyms), in a vmlinux.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_tables: Option<crate::relocate::kernel::KernelTables>,
    /// `--pre` asked for more bytes before functions than some pads have (each of those
    /// kept all it had).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_shortfall: Option<PreShortfall>,
}

/// Pads with fewer bytes before their function than `--pre` asked to keep: those keep all
/// they have (the pre-entry nops come from the M of `-fpatchable-function-entry=N,M`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreShortfall {
    /// Bytes asked for (`--pre`).
    pub requested: u32,
    /// Functions whose pads have fewer bytes than that before them.
    pub functions: usize,
    /// Functions with pads, in all.
    pub of: usize,
    /// Fewest bytes before a function among those pads.
    pub least: u32,
    /// Most bytes before a function among those pads.
    pub most: u32,
}

impl PreShortfall {
    /// The shortfall of `--pre pre` over `sites`, if any pad has fewer bytes before its
    /// function than that.
    pub fn of(sites: &[crate::scan::PatchSite], pre: u32) -> Option<PreShortfall> {
        let mut short = sites
            .iter()
            .filter(|s| s.pre_bytes < pre)
            .map(|s| s.pre_bytes);
        let first = short.next()?;
        let (mut least, mut most, mut functions) = (first, first, 1);
        for b in short {
            least = least.min(b);
            most = most.max(b);
            functions += 1;
        }
        Some(PreShortfall {
            requested: pre,
            functions,
            of: sites.len(),
            least,
            most,
        })
    }
}

impl RewriteStats {
    /// The stats of a rewrite that has changed nothing yet: `sites` sites, a file of
    /// `file_size` bytes with `text_size` bytes of code, output equal to input.
    pub fn unchanged(
        sites: usize,
        file_size: u64,
        text_size: u64,
        layout: Layout,
        slot: u32,
    ) -> RewriteStats {
        RewriteStats {
            sites,
            compacted: 0,
            bytes_removed: 0,
            file_size_before: file_size,
            file_size_after: file_size,
            text_size_before: text_size,
            text_size_after: text_size,
            alignment_bytes: 0,
            unrelocated_fixups: 0,
            free_bytes: 0,
            layout,
            slot_bytes: slot,
            relocation_types: BTreeMap::new(),
            unchanged: true,
            table: false,
            islands: 0,
            writer: None,
            writer_fallback: None,
            kernel_tables: None,
            pre_shortfall: None,
        }
    }
}
