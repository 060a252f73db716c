//! Byte-for-byte comparison of every non-code section outside the fields the other checks
//! cover: a rewrite may change only what references an address.

use object::elf;

use super::ctx::Ctx;
use super::report::VerifyReport;

/// Fields (by old section index and offset) that another check verified.
#[derive(Debug, Default)]
pub struct Covered {
    ranges: Vec<(usize, u64, u64)>,
}

impl Covered {
    /// Marks `len` bytes at offset `off` of old section `sec` as checked elsewhere.
    pub fn add(&mut self, sec: usize, off: u64, len: u64) {
        self.ranges.push((sec, off, len));
    }

    /// Adds the fields another piece of a check covered.
    pub fn append(&mut self, mut other: Covered) {
        self.ranges.append(&mut other.ranges);
    }

    /// Marks a whole section as checked elsewhere.
    pub fn whole(&mut self, sec: usize) {
        self.ranges.push((sec, 0, u64::MAX));
    }
}

/// Section types whose contents are compared by other checks (or legitimately rebuilt).
fn compared_elsewhere(sh_type: u32) -> bool {
    [
        elf::SHT_NULL,
        elf::SHT_SYMTAB,
        elf::SHT_STRTAB,
        elf::SHT_RELA,
        elf::SHT_REL,
        elf::SHT_DYNSYM,
        elf::SHT_DYNAMIC,
        elf::SHT_NOBITS,
        elf::SHT_SYMTAB_SHNDX,
    ]
    .iter()
    .any(|t| t.0 == sh_type)
}

/// Compares every non-code section outside `covered`.
pub fn compare(ctx: &Ctx<'_, '_, '_>, covered: &Covered, report: &mut VerifyReport) {
    let mut ranges = covered.ranges.clone();
    ranges.sort_unstable();
    let mut r = 0;
    for (i, s) in ctx.old.sections.iter().enumerate().skip(1) {
        while r < ranges.len() && ranges[r].0 < i {
            r += 1;
        }
        let Some(n) = ctx.new_section(i) else {
            continue;
        };
        if ctx.is_code(i) || compared_elsewhere(s.sh_type) || n.is_nobits() {
            continue;
        }
        let (old, new) = (ctx.old_data(i), ctx.new_data(i));
        let whole = ranges[r..]
            .iter()
            .take_while(|x| x.0 == i)
            .any(|x| x.1 == 0 && x.2 == u64::MAX);
        if whole {
            continue;
        }
        if new.is_empty() && s.name == crate::scan::TABLE_SECTION && ctx.patch_table_emptied() {
            // Its entries are checked as sites (every pad removed).
            continue;
        }
        if old.len() != new.len() {
            report.mismatch(
                "section size",
                Some(s.addr),
                Some(n.addr),
                format!("{} bytes in {}", old.len(), s.name),
                format!("{} bytes", new.len()),
            );
            continue;
        }
        let mut at = 0usize;
        let mut gaps: Vec<(usize, usize)> = Vec::new();
        while r < ranges.len() && ranges[r].0 == i {
            let (_, off, len) = ranges[r];
            let start = (off as usize).min(old.len());
            let end = off.saturating_add(len).min(old.len() as u64) as usize;
            if start > at {
                gaps.push((at, start));
            }
            at = at.max(end);
            r += 1;
        }
        if at < old.len() {
            gaps.push((at, old.len()));
        }
        for (a, b) in gaps {
            report.counts.bytes_compared += (b - a) as u64;
            if old[a..b] == new[a..b] {
                continue;
            }
            let k = (a..b).find(|&k| old[k] != new[k]).unwrap_or(a);
            report.mismatch(
                "bytes",
                Some(s.addr + k as u64),
                Some(n.addr + k as u64),
                format!("{}+{k:#x} unchanged: {:#04x}", s.name, old[k]),
                format!("{:#04x}", new[k]),
            );
        }
    }
}
