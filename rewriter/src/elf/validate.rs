//! Structural checks run once at parse time, so that everything after can trust the model:
//! section bytes lie in the file, sections do not overlap, symbols name sections that exist.
//! A hostile or corrupt file fails here with one message saying what is wrong, instead of
//! reaching code that would misread it.

use object::elf;

use super::bytes::read_uint;
use super::model::{Section, Segment, Symbol};
use crate::error::{Error, Result};

/// The section headers of a file of `file_len` bytes: checked before anything reads
/// section contents (symbols, names), so a bad size is reported as what it is.
/// `linked`: the file has final addresses (not `ET_REL`).
pub(super) fn sections(file_len: usize, sections: &[Section<'_>], linked: bool) -> Result<()> {
    for s in sections.iter().filter(|s| is_active(s)) {
        // The writer pads the output to these alignments: bound them (see the limits).
        let max = if s.is_alloc() {
            MAX_SECTION_ALIGN
        } else {
            MAX_NONALLOC_ALIGN
        };
        check_alignment(s.align, max, || format!("section {}", describe(s)))?;
        if has_bytes(s) && !s.offset.is_multiple_of(s.align) {
            return Err(Error::malformed(format!(
                "section {} at file offset {:#x} is not aligned to its alignment {:#x}",
                describe(s),
                s.offset,
                s.align
            )));
        }
    }
    section_bytes_in_file(file_len, sections)?;
    no_file_overlap(sections)?;
    if linked {
        no_memory_overlap(sections)?;
    }
    Ok(())
}

/// The section named by `e_shstrndx` is a string table (writers rebuild it by its type).
pub(super) fn section_name_table(sections: &[Section<'_>], index: usize) -> Result<()> {
    match sections.get(index) {
        Some(s) if index == 0 || s.sh_type == elf::SHT_STRTAB.0 => Ok(()),
        Some(s) => Err(Error::malformed(format!(
            "the section name table (e_shstrndx {index}) has type {:#x}, not SHT_STRTAB",
            s.sh_type
        ))),
        None => Err(Error::malformed(format!(
            "e_shstrndx {index} names no section (the file has {})",
            sections.len()
        ))),
    }
}

/// Sections with bytes must lie inside the file; empty ones too (the writer keeps their
/// offsets).
fn section_bytes_in_file(file_len: usize, sections: &[Section<'_>]) -> Result<()> {
    for s in sections.iter().filter(|s| is_active(s) && !s.is_nobits()) {
        let end = s.offset.checked_add(s.size);
        if end.is_none_or(|e| e > file_len as u64) {
            return Err(Error::malformed(format!(
                "section {} ({:#x} bytes at offset {:#x}) extends past the end of the file \
                 ({file_len:#x} bytes)",
                describe(s),
                s.size,
                s.offset
            )));
        }
    }
    Ok(())
}

/// No two sections share file bytes.
fn no_file_overlap(sections: &[Section<'_>]) -> Result<()> {
    let mut ranges: Vec<(u64, u64, &Section<'_>)> = sections
        .iter()
        .filter(|s| has_bytes(s))
        // In the file (checked above), so the end cannot overflow.
        .map(|s| (s.offset, s.offset + s.size, s))
        .collect();
    ranges.sort_unstable_by_key(|&(start, end, s)| (start, end, s.index));
    for pair in ranges.windows(2) {
        let ((a_start, a_end, a), (b_start, b_end, b)) = (pair[0], pair[1]);
        if b_start < a_end {
            return Err(Error::malformed(format!(
                "sections {} and {} overlap in the file (bytes {a_start:#x}..{a_end:#x} and \
                 {b_start:#x}..{b_end:#x})",
                describe(a),
                describe(b)
            )));
        }
    }
    Ok(())
}

/// No two allocated sections share addresses (linked files). `.tbss` is exempt: it takes
/// no room in the image, and the sections after it legitimately reuse its addresses.
fn no_memory_overlap(sections: &[Section<'_>]) -> Result<()> {
    let tls = elf::SHF_TLS.0;
    let mut ranges = Vec::new();
    for s in sections.iter().filter(|s| {
        is_active(s) && s.is_alloc() && s.size > 0 && !(s.is_nobits() && s.flags & tls != 0)
    }) {
        let end = s.addr.checked_add(s.size).ok_or_else(|| {
            Error::malformed(format!(
                "section {} ({:#x} bytes at address {:#x}) runs past the end of the address space",
                describe(s),
                s.size,
                s.addr
            ))
        })?;
        ranges.push((s.addr, end, s));
    }
    ranges.sort_unstable_by_key(|&(start, end, s)| (start, end, s.index));
    for pair in ranges.windows(2) {
        let ((a_start, a_end, a), (b_start, b_end, b)) = (pair[0], pair[1]);
        if b_start < a_end {
            return Err(Error::malformed(format!(
                "sections {} and {} overlap in memory (addresses {a_start:#x}..{a_end:#x} and \
                 {b_start:#x}..{b_end:#x})",
                describe(a),
                describe(b)
            )));
        }
    }
    Ok(())
}

/// Loadable segments lie in the file, and every allocated section with bytes of a linked
/// file that has loadable segments sits inside one, at the file offset the segment maps its
/// address to: the loader's view and the section view of the file agree.
pub(super) fn segments(
    file_len: usize,
    sections: &[Section<'_>],
    segments: &[Segment],
) -> Result<()> {
    for (i, p) in segments.iter().enumerate() {
        let file_end = p.offset.checked_add(p.filesz);
        let mem_end = p.vaddr.checked_add(p.memsz);
        let what = if p.p_type == elf::PT_LOAD.0 {
            "loadable segment"
        } else {
            "segment"
        };
        // Only loadable segments must be in the file (the writer's intermediate output has
        // others, like PT_RISCV_ATTRIBUTES, still pointing at their old offsets); every
        // segment must stay inside the address and offset spaces.
        let past_end = p.p_type == elf::PT_LOAD.0 && file_end.is_some_and(|e| e > file_len as u64);
        if file_end.is_none() || past_end || mem_end.is_none() {
            return Err(Error::malformed(format!(
                "{what} {i} ({:#x} bytes at offset {:#x}, {:#x} bytes at address {:#x}) runs \
                 past the end of the file or of the address space",
                p.filesz, p.offset, p.memsz, p.vaddr
            )));
        }
        // Loaded and TLS images are their file bytes plus zeros, never less.
        if (p.p_type == elf::PT_LOAD.0 || p.p_type == elf::PT_TLS.0) && p.filesz > p.memsz {
            return Err(Error::malformed(format!(
                "{what} {i} has more bytes in the file ({:#x}) than in memory ({:#x})",
                p.filesz, p.memsz
            )));
        }
        check_alignment(p.align, MAX_SEGMENT_ALIGN, || format!("{what} {i}"))?;
    }
    let loads: Vec<&Segment> = segments
        .iter()
        .filter(|p| p.p_type == elf::PT_LOAD.0)
        .collect();
    if loads.is_empty() {
        return Ok(());
    }
    for s in sections.iter().filter(|s| has_bytes(s) && s.is_alloc()) {
        let mapped = loads.iter().any(|p| {
            s.addr >= p.vaddr
                && s.addr - p.vaddr <= p.filesz
                && s.size <= p.filesz - (s.addr - p.vaddr)
                && s.offset.checked_sub(p.offset) == Some(s.addr - p.vaddr)
        });
        if !mapped {
            return Err(Error::malformed(format!(
                "section {} ({:#x} bytes at address {:#x}, offset {:#x}) is not where any \
                 loadable segment maps it",
                describe(s),
                s.size,
                s.addr,
                s.offset
            )));
        }
    }
    Ok(())
}

/// Largest alignment of an allocated section: real ones stop at a page (4 KiB, 64 KiB on
/// some targets); far below what would make the writer pad the output by gigabytes.
const MAX_SECTION_ALIGN: u64 = 1 << 24;
/// Largest alignment of a section the loader never sees (symbols, strings, debug info use
/// at most 8); the writer lays these out one after another, padding each.
const MAX_NONALLOC_ALIGN: u64 = 1 << 12;
/// Largest segment alignment: far above any page size, far below what would overflow
/// address arithmetic.
const MAX_SEGMENT_ALIGN: u64 = 1 << 32;

/// An alignment is 0, or a power of two up to `max`.
fn check_alignment(align: u64, max: u64, what: impl FnOnce() -> String) -> Result<()> {
    if align == 0 || (align.is_power_of_two() && align <= max) {
        return Ok(());
    }
    Err(Error::malformed(format!(
        "{} claims an alignment of {align:#x}, which is not a power of two up to {max:#x}",
        what()
    )))
}

/// The hash tables of a dynamic symbol table (`.hash`, `.gnu.hash`) have sane headers:
/// the ELF writer rebuilds them from these counts.
pub(super) fn hash_tables(data: &[u8], sections: &[Section<'_>], is_64: bool) -> Result<()> {
    for s in sections.iter().filter(|s| has_bytes(s)) {
        // In the file: checked by `sections` before.
        let bytes = &data[s.offset as usize..(s.offset + s.size) as usize];
        let word = |i: usize| read_uint(bytes, 4 * i, 4);
        let bad = |why: String| {
            Err(Error::malformed(format!(
                "hash table {}: {why}",
                describe(s)
            )))
        };
        if s.sh_type == elf::SHT_HASH.0 {
            match word(0) {
                None => return bad("shorter than its header".into()),
                Some(0) => return bad("zero buckets".into()),
                Some(_) => {}
            }
        } else if s.sh_type == elf::SHT_GNU_HASH.0 {
            let (Some(buckets), Some(bloom_count), Some(bloom_shift)) = (word(0), word(2), word(3))
            else {
                return bad("shorter than its header".into());
            };
            let bits = if is_64 { 64 } else { 32 };
            if buckets == 0 || !bloom_count.is_power_of_two() || bloom_shift >= bits {
                return bad(format!(
                    "{buckets} buckets, {bloom_count} bloom words, bloom shift {bloom_shift} \
                     (needs buckets, a power-of-two bloom size and a shift below {bits})"
                ));
            }
        }
    }
    Ok(())
}

/// A symbol defined in a regular section must name one that exists.
pub(super) fn symbols(symbols: &[Symbol<'_>], section_count: usize, table: &str) -> Result<()> {
    for sym in symbols {
        if let Some(sec) = sym.section() {
            if sec >= section_count {
                return Err(Error::malformed(format!(
                    "{table} symbol {} ({}) is defined in section {sec}, which does not exist \
                     (the file has {} sections)",
                    sym.index,
                    if sym.name.is_empty() {
                        "unnamed"
                    } else {
                        sym.name
                    },
                    section_count
                )));
            }
        }
    }
    Ok(())
}

/// A real section: not the null header at index 0, not an inactive `SHT_NULL` one.
fn is_active(s: &Section<'_>) -> bool {
    s.index != 0 && s.sh_type != elf::SHT_NULL.0
}

/// Occupies bytes in the file.
fn has_bytes(s: &Section<'_>) -> bool {
    is_active(s) && !s.is_nobits() && s.size > 0
}

/// `[index] name` of a section, for messages.
fn describe(s: &Section<'_>) -> String {
    if s.name.is_empty() {
        format!("[{}]", s.index)
    } else {
        format!("[{}] {}", s.index, s.name)
    }
}
