//! How a Linux kernel patches its sites: which ftrace call sequence it writes into each pad,
//! and so the smallest pad it can run with.
//!
//! RISC-V Linux has used three layouts (`arch/riscv/kernel/ftrace.c` and `mcount-dyn.S`):
//!
//! | layout | pads (with C / without) | the kernel writes | smallest pad |
//! |---|---|---|---|
//! | [`FtraceLayout::Detour16`] (before 6.1) | `=8` (16 / 32 bytes) | `sd ra; auipc ra; jalr ra; ld ra` at the entry | 16 |
//! | [`FtraceLayout::AuipcJalr`] (6.1 to 6.15) | `=4` / `=2` (8 bytes) | `auipc t0; jalr t0` at the entry | 8 |
//! | [`FtraceLayout::CallOps`] (6.16 and later, `DYNAMIC_FTRACE_WITH_CALL_OPS`) | `=8,4` / `=4,2` (16 bytes) | a pointer to the site's `ftrace_ops` in the 8 bytes before the entry, `auipc t0; jalr t0` at it | 16: 8 before the entry, 8-byte aligned, and 8 at it |
//! | [`FtraceLayout::JalSlot`] (6.1 / 6.12 with padtrim's patch, `runtime/kernel/`) | any | `jal t0` to `ftrace_jal_caller` or to an island at the entry, once the islands are filled in | 4 (8 until then) |
//!
//! With CALL_OPS the kernel finds the literal from the table entry (the pad's first byte,
//! rounded down to 8: `ALIGN_DOWN(rec->ip - 12, 8)`) and `ftrace_caller` loads it from the
//! entry minus 8 (`REG_L t1, -16(t0)`), so the pad must start exactly 8 bytes before its
//! function, on an 8-byte boundary (`FUNCTION_ALIGNMENT_8B`).
//!
//! What tells them apart, in order (each finding is kept as evidence, in words):
//! 0. `ftrace_jal_caller` and `riscv_ftrace_islands` in a vmlinux: padtrim's patch series,
//!    which traces through 4-byte slots (`rewrite --slot 4` places the islands);
//! 1. `ftrace_list_ops` / `ftrace_nop_ops`: defined only with
//!    `CONFIG_DYNAMIC_FTRACE_WITH_CALL_OPS` (`kernel/trace/ftrace.c`), so CALL_OPS;
//! 2. 8 pad bytes before every function: the literal's room, so CALL_OPS (treated so even
//!    without the symbols: keeping 8 bytes the kernel might need is the safe side);
//! 3. `ftrace_caller` returning through `t0` (`jr t0`): the 8-byte `auipc t0; jalr t0` call;
//!    through `ra` only (`ret`): the older 16-byte detour that saves `ra` around the call;
//! 4. pads of fewer than 16 bytes at the entry: only the 8-byte call fits them.
//!
//! A kernel module (`.ko`: a relocatable object with `.gnu.linkonce.this_module`) has no
//! `ftrace_caller` of its own; its pads alone tell.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::model::{PatchSite, Scan};
use crate::elf::{ElfFile, FileKind, Symbol};
use crate::riscv::insn_len;

/// Bytes of the `ftrace_ops` pointer CALL_OPS keeps before each entry (and its alignment).
pub const OPS_LITERAL_BYTES: u32 = 8;

/// The entry a 4-byte slot's `jal t0` reaches, in a kernel with padtrim's patch series.
pub const JAL_CALLER_SYMBOL: &str = "ftrace_jal_caller";
/// The patched kernel's island table: zeros until `rewrite --slot 4` fills in the islands'
/// addresses (a zero ends the list).
pub const ISLANDS_SYMBOL: &str = "riscv_ftrace_islands";

/// The symbol at each island of a module rewritten with `--slot 4` for padtrim's kernel
/// patch series (`rewrite/object/island.rs`), which the patched module loader looks for.
pub const MODULE_ISLAND_SYMBOL: &str = "ftrace_jal_island";

/// The section every kernel module has (its `struct module`).
pub const MODULE_SECTION: &str = ".gnu.linkonce.this_module";

/// How the kernel patches a pad (see the [module documentation](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FtraceLayout {
    /// Linux 6.16 and later with `DYNAMIC_FTRACE_WITH_CALL_OPS`: an 8-byte `ftrace_ops`
    /// pointer before the entry, `auipc t0; jalr t0` at it.
    CallOps,
    /// Linux 6.1 to 6.15 (and later kernels without CALL_OPS): `auipc t0; jalr t0` at the
    /// entry.
    AuipcJalr,
    /// Linux 6.1 / 6.12 with padtrim's patch series (`runtime/kernel/`): a 4-byte slot
    /// becomes `jal t0` to `ftrace_jal_caller` or to an island within reach.
    JalSlot,
    /// Kernels before 6.1: `sd ra; auipc ra; jalr ra; ld ra`, 16 bytes at the entry.
    #[serde(rename = "detour-16")]
    Detour16,
    /// Nothing in the file told: the 8-byte call is assumed.
    Unknown,
}

impl FtraceLayout {
    /// The spelling reports use (as in JSON): `call-ops`, `auipc-jalr`, `detour-16`,
    /// `unknown`.
    pub fn name(self) -> &'static str {
        match self {
            FtraceLayout::CallOps => "call-ops",
            FtraceLayout::AuipcJalr => "auipc-jalr",
            FtraceLayout::JalSlot => "jal-slot",
            FtraceLayout::Detour16 => "detour-16",
            FtraceLayout::Unknown => "unknown",
        }
    }

    /// What the kernel writes into each pad, in words.
    pub fn describe(self) -> &'static str {
        match self {
            FtraceLayout::CallOps => {
                "Linux 6.16+ with DYNAMIC_FTRACE_WITH_CALL_OPS: a pointer to the site's ftrace_ops \
                 in the 8 bytes before each entry, auipc t0 + jalr t0 at it"
            }
            FtraceLayout::AuipcJalr => {
                "Linux 6.1 to 6.15 (or later without CALL_OPS): auipc t0 + jalr t0 at each entry"
            }
            FtraceLayout::JalSlot => {
                "padtrim's kernel patch: jal t0 to ftrace_jal_caller or an island at each entry \
                 (4-byte slots; auipc t0 + jalr t0 where the islands are not filled in)"
            }
            FtraceLayout::Detour16 => {
                "Linux before 6.1: sd ra; auipc ra; jalr ra; ld ra (16 bytes) at each entry"
            }
            FtraceLayout::Unknown => {
                "not recognised; auipc t0 + jalr t0 (8 bytes) at each entry assumed"
            }
        }
    }

    /// Bytes the kernel needs at each function entry: the smallest slot.
    pub fn min_slot_bytes(self) -> u32 {
        match self {
            FtraceLayout::Detour16 => 16,
            FtraceLayout::JalSlot => 4,
            FtraceLayout::CallOps | FtraceLayout::AuipcJalr | FtraceLayout::Unknown => 8,
        }
    }

    /// Bytes the kernel needs before each function entry (8-byte aligned): the smallest
    /// `--pre`.
    pub fn pre_bytes(self) -> u32 {
        match self {
            FtraceLayout::CallOps => OPS_LITERAL_BYTES,
            _ => 0,
        }
    }

    /// The smallest pad the kernel can run with: before and at the entry.
    pub fn min_pad_bytes(self) -> u32 {
        self.pre_bytes() + self.min_slot_bytes()
    }
}

/// What a kernel's file says about its ftrace layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelFtrace {
    /// `vmlinux` or `module`.
    pub image: String,
    /// The layout.
    pub ftrace_layout: FtraceLayout,
    /// The smallest pad it can run with, in bytes ([`FtraceLayout::min_pad_bytes`]).
    pub min_pad_bytes: u32,
    /// Bytes of it before the entry ([`FtraceLayout::pre_bytes`]).
    pub pre_entry_bytes: u32,
    /// The Linux version in `linux_banner`, if the file has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Why this layout, one finding per entry, in words.
    pub evidence: Vec<String>,
    /// Usable sites whose pad is smaller than the layout needs.
    #[serde(default)]
    pub pads_too_small: usize,
    /// CALL_OPS only: sites whose pad does not start exactly 8 bytes before its function,
    /// on an 8-byte boundary (the kernel would write its ops pointer over other bytes).
    #[serde(default)]
    pub misplaced_literals: usize,
    /// The first site of either kind, as `function at 0x...: reason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_problem: Option<String>,
}

/// `vmlinux`, `module`, or `None` for a file that is not a kernel.
pub fn kernel_image(file: &ElfFile<'_>) -> Option<&'static str> {
    match file.kind {
        FileKind::Vmlinux => Some("vmlinux"),
        FileKind::Relocatable if file.section_by_name(MODULE_SECTION).is_some() => Some("module"),
        _ => None,
    }
}

/// The ftrace layout of a kernel or kernel module; `None` for any other file.
pub fn detect(file: &ElfFile<'_>, scan: &Scan) -> Option<KernelFtrace> {
    let image = kernel_image(file)?;
    let mut evidence = Vec::new();
    // Pad bytes before the function → number of sites (named sites only: an anonymous pad
    // has no function to measure from).
    let mut pre: BTreeMap<u32, usize> = BTreeMap::new();
    for s in scan.sites.iter().filter(|s| s.symbol.is_some()) {
        *pre.entry(s.pre_bytes).or_insert(0) += 1;
    }
    let at_entry = scan.sites.iter().map(|s| s.pad_bytes - s.pre_bytes).min();
    let ops_symbol = ["ftrace_list_ops", "ftrace_nop_ops"]
        .into_iter()
        .find(|n| file.symbol_by_name(n).is_some());
    let literal_room = pre.len() == 1 && pre.contains_key(&OPS_LITERAL_BYTES);
    let caller = file
        .symbol_by_name("ftrace_caller")
        .and_then(|s| returns_through(file, s));

    let jal_slot = image == "vmlinux"
        && file.symbol_by_name(JAL_CALLER_SYMBOL).is_some()
        && file.symbol_by_name(ISLANDS_SYMBOL).is_some();
    let module_islands = image == "module"
        && file.symbol_by_name(JAL_CALLER_SYMBOL).is_some()
        && file
            .symbols
            .iter()
            .any(|s| s.name == MODULE_ISLAND_SYMBOL && s.section().is_some());

    let layout = if jal_slot {
        evidence.push(format!(
            "defines {JAL_CALLER_SYMBOL} and {ISLANDS_SYMBOL}: padtrim's kernel patch, which \
             traces through 4-byte slots"
        ));
        FtraceLayout::JalSlot
    } else if module_islands {
        evidence.push(format!(
            "defines {MODULE_ISLAND_SYMBOL} and refers to {JAL_CALLER_SYMBOL}: a module with \
             islands of its own for padtrim's kernel patch, which traces through 4-byte slots"
        ));
        FtraceLayout::JalSlot
    } else if let Some(name) = ops_symbol {
        evidence.push(format!(
            "defines {name}, which only CONFIG_DYNAMIC_FTRACE_WITH_CALL_OPS builds"
        ));
        if literal_room {
            evidence.push(literal_room_words());
        }
        FtraceLayout::CallOps
    } else if literal_room {
        evidence.push(literal_room_words());
        FtraceLayout::CallOps
    } else if caller == Some(Return::T0) {
        evidence.push(
            "ftrace_caller returns through t0 (jr t0): the call at each entry is auipc t0 + jalr t0"
                .into(),
        );
        FtraceLayout::AuipcJalr
    } else if let Some(bytes) = at_entry.filter(|&b| b < 16) {
        evidence.push(format!(
            "pads of {bytes} bytes at the entry: only the 8-byte auipc t0 + jalr t0 fits"
        ));
        FtraceLayout::AuipcJalr
    } else if caller == Some(Return::Ra) {
        evidence.push(
            "ftrace_caller returns through ra (ret): the call saves ra around auipc ra + jalr ra"
                .into(),
        );
        FtraceLayout::Detour16
    } else {
        evidence.push(match image {
            "module" => "a module's pads of 16 bytes or more at the entry fit every layout".into(),
            _ => "no ftrace_caller to read, and pads that fit every layout".into(),
        });
        FtraceLayout::Unknown
    };

    let mut problems: Vec<(u64, &PatchSite, String)> = scan
        .sites
        .iter()
        .filter(|s| s.pad_bytes - s.pre_bytes < layout.min_slot_bytes())
        .map(|s| {
            let words = format!(
                "{} bytes at the entry, {} needed",
                s.pad_bytes - s.pre_bytes,
                layout.min_slot_bytes()
            );
            (s.entry, s, words)
        })
        .collect();
    let pads_too_small = problems.len();
    if layout == FtraceLayout::CallOps {
        let at_entry: HashSet<u64> = problems.iter().map(|p| p.0).collect();
        for s in misplaced_literals(file, scan) {
            if !at_entry.contains(&s.entry) {
                let words = format!(
                    "its pad starts {} bytes before it, at {:#x}; the ops pointer needs \
                     exactly {OPS_LITERAL_BYTES}, 8-byte aligned",
                    s.func_addr.wrapping_sub(s.entry),
                    s.entry
                );
                problems.push((s.entry, s, words));
            }
        }
    }
    let misplaced_literals = problems.len() - pads_too_small;
    let first_problem = problems.iter().min_by_key(|p| p.0).map(|(_, s, words)| {
        let name = s.symbol.map_or("?", |i| file.symbols[i].name);
        format!("{name} at {:#x}: {words}", s.func_addr)
    });
    Some(KernelFtrace {
        image: image.into(),
        ftrace_layout: layout,
        min_pad_bytes: layout.min_pad_bytes(),
        pre_entry_bytes: layout.pre_bytes(),
        version: linux_version(file),
        evidence,
        pads_too_small,
        misplaced_literals,
        first_problem,
    })
}

fn literal_room_words() -> String {
    format!(
        "every function has {OPS_LITERAL_BYTES} pad bytes before it: the ftrace_ops pointer's \
         room (-fpatchable-function-entry=8,4 or 4,2)"
    )
}

/// The sites of a CALL_OPS kernel whose `ftrace_ops` pointer would not be where the kernel
/// writes it: the pad must start exactly 8 bytes before its function, on an 8-byte boundary.
/// In an object, that is a section offset in a section aligned to 8 at least, or the end of
/// alignment padding to 8 or more that the linker still relaxes (`R_RISCV_ALIGN`).
pub fn misplaced_literals<'s>(file: &ElfFile<'_>, scan: &'s Scan) -> Vec<&'s PatchSite> {
    let relaxed = relaxed_alignment_ends(file);
    let literal = u64::from(OPS_LITERAL_BYTES);
    scan.sites
        .iter()
        .filter(|s| {
            let aligned = if file.kind.is_linked() {
                s.entry % literal == 0
            } else {
                file.sections[s.section].align >= literal
                    && (s.entry % literal == 0 || relaxed.contains(&(s.section, s.entry)))
            };
            !(aligned
                && s.pre_bytes == OPS_LITERAL_BYTES
                && s.func_addr.wrapping_sub(s.entry) == literal)
        })
        .collect()
}

/// (section, offset) where the padding of an `R_RISCV_ALIGN` to 8 bytes or more ends in an
/// object: the linker aligns what follows when it relaxes the padding away.
fn relaxed_alignment_ends(file: &ElfFile<'_>) -> HashSet<(usize, u64)> {
    if file.kind.is_linked() {
        return HashSet::new();
    }
    let min_insn = if file.rvc() { 2 } else { 4 };
    // A relocation section that cannot be read aligns nothing; the scan has read the ones
    // it needs already.
    let relocs = file
        .relocation_sections_where(|rs| file.reloc_applies_to(rs, |t| t.is_exec()))
        .unwrap_or_default();
    relocs
        .iter()
        .flat_map(|rs| {
            rs.relocs
                .iter()
                .filter(|r| r.r_type == object::elf::R_RISCV_ALIGN.0)
                .filter(move |r| {
                    (r.addend as u64)
                        .checked_add(min_insn)
                        .and_then(u64::checked_next_power_of_two)
                        .is_some_and(|a| a >= u64::from(OPS_LITERAL_BYTES))
                })
                .map(|r| (rs.target, r.offset.wrapping_add(r.addend as u64)))
        })
        .collect()
}

/// How a function returns to its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Return {
    /// `jr t0`: called by `jalr t0`.
    T0,
    /// `ret` only.
    Ra,
}

/// Reads `ftrace_caller` (at most its first 1 KiB): does it return through `t0` or `ra`?
fn returns_through(file: &ElfFile<'_>, sym: &Symbol<'_>) -> Option<Return> {
    let sec = file.alloc_section_at(sym.value)?;
    let data = file.section_data(sec).ok()?;
    let start = usize::try_from(sym.value - sec.addr).ok()?;
    let len = match sym.size {
        0 => 1024,
        n => usize::try_from(n).ok()?.min(1024),
    };
    let code = data.get(start..)?;
    let code = &code[..len.min(code.len())];
    let (mut off, mut ra) = (0, false);
    while off + 2 <= code.len() {
        let parcel = u16::from_le_bytes([code[off], code[off + 1]]);
        let n = insn_len(parcel);
        // `jalr x0, imm(rs1)` and `c.jr rs1`: a jump that links nothing.
        let rs1 = if n == 2 {
            (parcel & 0xf07f == 0x8002).then_some((parcel >> 7) & 0x1f)
        } else if n == 4 && off + 4 <= code.len() {
            let w = u32::from_le_bytes([code[off], code[off + 1], code[off + 2], code[off + 3]]);
            (w & 0x707f == 0x67 && (w >> 7) & 0x1f == 0).then_some(((w >> 15) & 0x1f) as u16)
        } else {
            None
        };
        match rs1 {
            Some(5) => return Some(Return::T0),
            Some(1) => ra = true,
            _ => {}
        }
        off += n.max(2);
    }
    ra.then_some(Return::Ra)
}

/// `6.1.192` from a vmlinux's `linux_banner` ("Linux version 6.1.192 (...)") or a module's
/// `.modinfo` (`vermagic=6.1.192 SMP ...`), if the file has either.
fn linux_version(file: &ElfFile<'_>) -> Option<String> {
    let text = if let Some(sym) = file.symbol_by_name("linux_banner") {
        let sec = file.alloc_section_at(sym.value)?;
        let data = file.section_data(sec).ok()?;
        let start = usize::try_from(sym.value - sec.addr).ok()?;
        data.get(start..)?.strip_prefix(b"Linux version ")?
    } else {
        let data = file.section_data(file.section_by_name(".modinfo")?).ok()?;
        data.split(|&b| b == 0)
            .find_map(|entry| entry.strip_prefix(b"vermagic="))?
    };
    let end = text
        .iter()
        .take(64)
        .position(|&b| !b.is_ascii_graphic())
        .unwrap_or(text.len().min(64));
    let version = std::str::from_utf8(&text[..end]).ok()?;
    (!version.is_empty()).then(|| version.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_need_what_the_kernel_writes() {
        assert_eq!(FtraceLayout::CallOps.min_pad_bytes(), 16);
        assert_eq!(FtraceLayout::CallOps.pre_bytes(), 8);
        assert_eq!(FtraceLayout::AuipcJalr.min_pad_bytes(), 8);
        assert_eq!(FtraceLayout::Detour16.min_pad_bytes(), 16);
        assert_eq!(FtraceLayout::Unknown.min_slot_bytes(), 8);
        assert_eq!(FtraceLayout::JalSlot.min_pad_bytes(), 4);
        let json = serde_json::to_string(&FtraceLayout::CallOps).expect("serialises");
        assert_eq!(json, "\"call-ops\"");
        for l in [
            FtraceLayout::CallOps,
            FtraceLayout::AuipcJalr,
            FtraceLayout::JalSlot,
            FtraceLayout::Detour16,
            FtraceLayout::Unknown,
        ] {
            let json = serde_json::to_string(&l).expect("serialises");
            assert_eq!(json, format!("\"{}\"", l.name()));
        }
    }
}
