//! Writing the new object: the original header and section headers with new offsets,
//! sizes and alignments; section contents replaced where they changed, others copied.
//!
//! Section and symbol indices never change, so COMDAT groups, `SHF_LINK_ORDER` links and
//! every other cross reference stay valid without being understood. New sections (the
//! `__patchable_function_entries` tables of `rewrite --insert`) are appended after the
//! original ones, their names after the original names in the section name table.

use std::collections::BTreeMap;

use object::elf;

use super::symbols::NewSymbol;
use crate::elf::fields::ClassFields;
use crate::elf::{read_uint, ElfFile, Reloc};
use crate::error::{Error, Result};

/// What changes in the file.
#[derive(Debug, Default)]
pub struct Changes {
    /// New contents by section index.
    pub data: BTreeMap<usize, Vec<u8>>,
    /// New `sh_addralign` by section index.
    pub align: BTreeMap<usize, u64>,
    /// New `sh_info` by section index (the symbol table's first global, a group's signature,
    /// when symbols were added).
    pub info: BTreeMap<usize, u32>,
    /// Sections appended after the original ones, in order (the first gets the index the
    /// original section count).
    pub added: Vec<AddedSection>,
}

/// A section appended to the object.
#[derive(Debug, Clone)]
pub struct AddedSection {
    /// Name (added to the section name table).
    pub name: String,
    /// `sh_type`.
    pub sh_type: u32,
    /// `sh_flags`.
    pub flags: u64,
    /// `sh_link`.
    pub link: u32,
    /// `sh_info`.
    pub info: u32,
    /// `sh_addralign`.
    pub align: u64,
    /// `sh_entsize`.
    pub entsize: u64,
    /// Contents.
    pub data: Vec<u8>,
}

/// The section name table with the names of `added` appended, and the offset of each name
/// in it (an original name is not reused: appending keeps every original offset valid).
fn names_appended(
    file: &ElfFile<'_>,
    added: &[AddedSection],
) -> Result<(usize, Vec<u8>, Vec<u32>)> {
    let f = ClassFields::of(file.is_64);
    let index = read_uint(file.data, f.e_shstrndx, 2).unwrap_or(0) as usize;
    if index == 0 || index >= file.sections.len() || index == usize::from(elf::SHN_XINDEX.0) {
        return Err(Error::Unsupported(
            "an object without a plain section name table (e_shstrndx)".into(),
        ));
    }
    let mut bytes = file.section_data(&file.sections[index])?.to_vec();
    let mut offsets = Vec::with_capacity(added.len());
    for a in added {
        let at = u32::try_from(bytes.len())
            .map_err(|_| Error::malformed("section name table over 4 GiB"))?;
        offsets.push(at);
        bytes.extend_from_slice(a.name.as_bytes());
        bytes.push(0);
    }
    Ok((index, bytes, offsets))
}

/// The section header of `a`, whose contents are at `offset` and whose name is at `name`.
fn added_header(is_64: bool, a: &AddedSection, name: u32, offset: u64) -> Vec<u8> {
    // (sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info,
    // sh_addralign, sh_entsize): each field's (offset, width) in the class's header.
    let (layout, size): ([(usize, usize); 10], usize) = if is_64 {
        let l = [
            (0, 4),
            (4, 4),
            (8, 8),
            (16, 8),
            (24, 8),
            (32, 8),
            (40, 4),
            (44, 4),
            (48, 8),
            (56, 8),
        ];
        (l, 64)
    } else {
        let l = [
            (0, 4),
            (4, 4),
            (8, 4),
            (12, 4),
            (16, 4),
            (20, 4),
            (24, 4),
            (28, 4),
            (32, 4),
            (36, 4),
        ];
        (l, 40)
    };
    let values = [
        u64::from(name),
        u64::from(a.sh_type),
        a.flags,
        0,
        offset,
        a.data.len() as u64,
        u64::from(a.link),
        u64::from(a.info),
        a.align,
        a.entsize,
    ];
    let mut h = vec![0; size];
    for ((at, width), v) in layout.into_iter().zip(values) {
        put(&mut h, at, width, v);
    }
    h
}

fn put(buf: &mut [u8], at: usize, size: usize, value: u64) {
    buf[at..at + size].copy_from_slice(&value.to_le_bytes()[..size]);
}

/// Serialises RELA entries in the file's class.
pub fn encode_rela(is_64: bool, relocs: &[Reloc]) -> Vec<u8> {
    let mut out = Vec::with_capacity(relocs.len() * ClassFields::of(is_64).rela_size);
    for r in relocs {
        if is_64 {
            out.extend_from_slice(&r.offset.to_le_bytes());
            let info = (u64::from(r.sym) << 32) | u64::from(r.r_type);
            out.extend_from_slice(&info.to_le_bytes());
            out.extend_from_slice(&r.addend.to_le_bytes());
        } else {
            out.extend_from_slice(&(r.offset as u32).to_le_bytes());
            let info = (r.sym << 8) | (r.r_type & 0xff);
            out.extend_from_slice(&info.to_le_bytes());
            out.extend_from_slice(&(r.addend as i32).to_le_bytes());
        }
    }
    out
}

/// The symbol table with new values and sizes patched into a copy of its bytes.
pub fn patch_symtab(file: &ElfFile<'_>, new: &[NewSymbol]) -> Result<Option<(usize, Vec<u8>)>> {
    let Some(index) = file.symtab_index else {
        return Ok(None);
    };
    let sec = &file.sections[index];
    let mut bytes = file.section_data(sec)?.to_vec();
    let f = ClassFields::of(file.is_64);
    let (entsize, value_at, size_at, word) = (f.sym_size, f.st_value, f.st_size, f.word);
    for (i, s) in new.iter().enumerate() {
        let base = i * entsize;
        if base + entsize > bytes.len() {
            return Err(Error::malformed(".symtab is shorter than its symbol count"));
        }
        put(&mut bytes, base + value_at, word, s.value);
        put(&mut bytes, base + size_at, word, s.size);
    }
    Ok(Some((index, bytes)))
}

/// Writes the object with `changes` applied.
pub fn write_object(file: &ElfFile<'_>, changes: &Changes) -> Result<Vec<u8>> {
    let f = ClassFields::of(file.is_64);
    let data = file.data;
    let (shoff_at, phnum_at, shentsize_at) = (f.e_shoff, f.e_phnum, f.e_shentsize);
    let word = f.word;
    let shoff = read_uint(data, shoff_at, word).unwrap_or(0) as usize;
    let shentsize = read_uint(data, shentsize_at, 2).unwrap_or(0) as usize;
    let expected = f.shdr_size;
    if shentsize != expected {
        return Err(Error::malformed(format!(
            "section header entry size {shentsize}, expected {expected}"
        )));
    }
    if read_uint(data, phnum_at, 2).unwrap_or(0) != 0 {
        return Err(Error::Unsupported(
            "relocatable object with program headers".into(),
        ));
    }
    let count = file.sections.len();
    let total = count + changes.added.len();
    if !changes.added.is_empty()
        && (read_uint(data, f.e_shnum, 2).unwrap_or(0) as usize != count
            || total >= usize::from(elf::SHN_LORESERVE))
    {
        return Err(Error::Unsupported(format!(
            "adding sections to an object with {count} sections (extended section numbering)"
        )));
    }
    // The section name table grows by the added sections' names.
    let names = if changes.added.is_empty() {
        None
    } else {
        Some(names_appended(file, &changes.added)?)
    };
    let table_len = shentsize
        .checked_mul(count)
        .filter(|&n| shoff.checked_add(n).is_some_and(|e| e <= data.len()))
        .ok_or_else(|| Error::malformed("section header table runs past the end of the file"))?;
    let mut headers = data[shoff..shoff + table_len].to_vec();
    let ehsize = f.ehdr_size;
    let mut out = data[..ehsize.min(data.len())].to_vec();

    // Contents in their original file order.
    let mut order: Vec<usize> = (1..count).collect();
    order.sort_by_key(|&i| (file.sections[i].offset, i));
    let (off_at, size_at, align_at) = (f.sh_offset, f.sh_size, f.sh_addralign);
    for i in order {
        let s = &file.sections[i];
        let align = changes.align.get(&i).copied().unwrap_or(s.align).max(1);
        let h = i * shentsize;
        if s.is_nobits() {
            put(&mut headers, h + off_at, word, out.len() as u64);
            put(&mut headers, h + align_at, word, align);
            continue;
        }
        let bytes: &[u8] = match (&names, changes.data.get(&i)) {
            (Some((index, d, _)), _) if *index == i => d,
            (_, Some(d)) => d,
            _ => file.section_data(s)?,
        };
        let pad = (out.len() as u64).next_multiple_of(align.min(1 << 12)) as usize - out.len();
        out.resize(out.len() + pad, 0);
        put(&mut headers, h + off_at, word, out.len() as u64);
        put(&mut headers, h + size_at, word, bytes.len() as u64);
        if let Some(&info) = changes.info.get(&i) {
            put(&mut headers, h + f.sh_info, 4, u64::from(info));
        }
        put(&mut headers, h + align_at, word, align);
        out.extend_from_slice(bytes);
    }
    if let Some((_, _, offsets)) = &names {
        for (a, &name) in changes.added.iter().zip(offsets) {
            let align = a.align.max(1);
            let pad = (out.len() as u64).next_multiple_of(align.min(1 << 12)) as usize - out.len();
            out.resize(out.len() + pad, 0);
            headers.extend_from_slice(&added_header(file.is_64, a, name, out.len() as u64));
            out.extend_from_slice(&a.data);
        }
        put(&mut out, f.e_shnum, 2, total as u64);
    }
    let pad = out.len().next_multiple_of(word) - out.len();
    out.resize(out.len() + pad, 0);
    let new_shoff = out.len() as u64;
    out.extend_from_slice(&headers);
    put(&mut out, shoff_at, word, new_shoff);
    Ok(out)
}
