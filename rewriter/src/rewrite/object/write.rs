//! Writing the new object: the original header and section headers with new offsets,
//! sizes and alignments; section contents replaced where they changed, others copied.
//!
//! Section and symbol indices never change, so COMDAT groups, `SHF_LINK_ORDER` links and
//! every other cross reference stay valid without being understood.

use std::collections::BTreeMap;

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
        let bytes: &[u8] = match changes.data.get(&i) {
            Some(d) => d,
            None => file.section_data(s)?,
        };
        let pad = (out.len() as u64).next_multiple_of(align.min(1 << 12)) as usize - out.len();
        out.resize(out.len() + pad, 0);
        put(&mut headers, h + off_at, word, out.len() as u64);
        put(&mut headers, h + size_at, word, bytes.len() as u64);
        put(&mut headers, h + align_at, word, align);
        out.extend_from_slice(bytes);
    }
    let pad = out.len().next_multiple_of(word) - out.len();
    out.resize(out.len() + pad, 0);
    let new_shoff = out.len() as u64;
    out.extend_from_slice(&headers);
    put(&mut out, shoff_at, word, new_shoff);
    Ok(out)
}
