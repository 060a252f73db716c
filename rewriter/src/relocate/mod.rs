//! Building the new section contents and re-resolving every reference against the plan.
//!
//! Relocations kept by `--emit-relocs` say what each instruction or data word refers to;
//! each is re-resolved from the original target through the [`AddressMap`](crate::plan::AddressMap).
//! Instructions are cross-checked: a relocation that disagrees with the bytes it covers is
//! refused rather than trusted. PC-relative instructions without a relocation are found by
//! decoding every executable section and fixed from their decoded targets.

mod addr_set;
mod data;
mod encode;
mod frames;
mod image;
pub mod kernel;
mod resolve;
mod sweep;

use std::collections::BTreeMap;

use crate::elf::{ElfFile, Reloc, RelocSection};
use crate::error::{Error, Result};
use crate::plan::{Edit, Plan};
use crate::riscv::{C_NOP, NOP};
use addr_set::AddrSet;
use image::Image;
use resolve::Resolver;

/// The new bytes and relocations of everything the rewrite changes.
#[derive(Debug, Default)]
pub struct Fixed {
    /// New contents, by original section index (sections not listed are unchanged).
    pub data: BTreeMap<usize, Vec<u8>>,
    /// New relocation entries, by relocation section index, in the original order.
    pub relocs: BTreeMap<usize, Vec<Reloc>>,
    /// PC-relative instructions without a relocation that had to be fixed.
    pub unrelocated_fixups: usize,
    /// Relocation type → how many were re-resolved.
    pub types: BTreeMap<u32, usize>,
    /// Kernel tables rewritten from their bytes (vmlinux only).
    pub kernel: kernel::KernelTables,
}

/// Builds the new bytes of every executable section from the plan's edits.
fn build_exec_sections(img: &mut Image<'_, '_>) -> Result<()> {
    let rvc = img.file.rvc();
    for mv in img.plan.map.moves() {
        if mv.edits().is_empty() {
            continue;
        }
        let sec = mv.index;
        let old = img.old(sec);
        let base = mv.old_addr;
        let mut out = Vec::with_capacity(old.len());
        let mut at = 0usize;
        for e in mv.edits() {
            // An edit outside the section (planned from a corrupt symbol) is refused.
            let kept = e
                .at()
                .checked_sub(base)
                .and_then(|p| usize::try_from(p).ok())
                .and_then(|pos| Some((pos, old.get(at..pos)?)));
            let Some((pos, kept)) = kept else {
                return Err(Error::refused(format!(
                    "section {}: an edit at {:#x} lies outside its bytes",
                    img.file.sections[sec].name,
                    e.at()
                )));
            };
            out.extend_from_slice(kept);
            at = pos;
            match *e {
                Edit::Cut { len, .. } => at += len as usize,
                Edit::Insert { len, .. } => push_nops(&mut out, len, rvc),
                // A slot is whole 4-byte nops (the plan keeps it 4-byte aligned).
                Edit::Slot { len, .. } => push_nops(&mut out, len, false),
            }
        }
        out.extend_from_slice(old.get(at..).unwrap_or_default());
        debug_assert_eq!(out.len() as u64, mv.new_size);
        // In-place layout: the freed tail is nops, and the section keeps its size.
        if img.plan.free.contains_key(&sec) {
            let tail = mv.old_size - mv.new_size;
            push_nops(&mut out, tail, rvc);
        }
        if img.data.len() <= sec {
            img.data.resize(sec + 1, None);
        }
        img.data[sec] = Some(out);
    }
    Ok(())
}

/// Appends `len` bytes of nops (4-byte `nop`s, then a `c.nop` for an odd half-word).
pub(crate) fn push_nops(out: &mut Vec<u8>, len: u64, rvc: bool) {
    let mut left = len;
    if rvc && left % 4 == 2 {
        out.extend_from_slice(&C_NOP.to_le_bytes());
        left -= 2;
    }
    while left >= 4 {
        out.extend_from_slice(&NOP.to_le_bytes());
        left -= 4;
    }
    // Odd leftovers cannot happen: every position is a multiple of 2.
    out.extend(std::iter::repeat_n(0, left as usize));
}

/// Writes the slots: a 4-byte slot becomes one aligned `nop`; larger slots keep their bytes.
fn write_slots(img: &mut Image<'_, '_>, sites: &[crate::scan::PatchSite]) -> Result<()> {
    for slot in &img.plan.slots.clone() {
        if slot.cut.keep_slot == 4 {
            if slot.slot_addr % 4 != 0 {
                return Err(Error::refused(format!(
                    "slot at {:#x} is not 4-byte aligned",
                    slot.slot_addr
                )));
            }
            let sec = sites[slot.site].section;
            img.write_new(sec, slot.slot_addr, 4, u64::from(NOP))?;
        }
    }
    Ok(())
}

/// Re-resolves every relocation and unrelocated PC-relative instruction.
pub fn relocate(
    file: &ElfFile<'_>,
    sites: &[crate::scan::PatchSite],
    plan: &Plan,
    relocs: &[RelocSection],
) -> Result<Fixed> {
    if !file.kind.is_linked() {
        return Err(Error::Unsupported(
            "rewriting relocatable objects (.o) is not implemented yet".into(),
        ));
    }
    let mut img = Image::new(file, plan);
    kernel::refuse_erased_relocations(file, relocs)?;
    build_exec_sections(&mut img)?;
    write_slots(&mut img, sites)?;

    let mut fixed = Fixed::default();
    let mut handled = AddrSet::for_code(file);
    let resolver = Resolver::new(file, sites, plan, relocs);
    let t_relocs = std::time::Instant::now();
    for rs in relocs {
        let out = resolver.fix_section(&mut img, rs, &mut fixed.types, &mut handled)?;
        fixed.relocs.insert(rs.index, out);
    }
    crate::timing::record("relocate: relocations", t_relocs.elapsed());
    data::check_pairs(&img)?;
    resolver.check_lo_fixed(&handled)?;
    fixed.unrelocated_fixups = crate::timing::phase("relocate: sweep", || {
        sweep::fix_unrelocated(&mut img, &handled)
    })?;
    data::fix_got(&mut img, &resolver.dyn_covered)?;
    data::fix_eh_frame_hdr(&mut img)?;
    frames::fix_inserted_frames(&mut img, relocs)?;
    if file.kind == crate::elf::FileKind::Vmlinux {
        fixed.kernel = kernel::fix_kernel_tables(&mut img)?;
    }
    fixed.data = img
        .data
        .into_iter()
        .enumerate()
        .filter_map(|(i, d)| Some((i, d?)))
        .collect();
    Ok(fixed)
}
