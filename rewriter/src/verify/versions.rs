//! Symbol versions and dynamic strings, compared by meaning: the ELF writer may lay
//! `.dynstr` out again and renumber version indices, which changes bytes but not what they
//! say. `.gnu.version_r`, `.gnu.version_d`, `.gnu.version` and the string-valued `.dynamic`
//! entries are checked here.

use super::bytes::Covered;
use super::report::VerifyReport;
use super::Ctx;
use crate::elf::{read_uint, ElfFile, Section};

const SHT_GNU_VERDEF: u32 = 0x6fff_fffd;
const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;
const SHT_GNU_VERSYM: u32 = 0x6fff_ffff;

/// `d_tag` values whose `d_val` is an offset into `.dynstr`.
pub(super) const STRING_TAGS: &[u64] = &[
    1,           // DT_NEEDED
    14,          // DT_SONAME
    15,          // DT_RPATH
    29,          // DT_RUNPATH
    0x7fff_fffd, // DT_AUXILIARY
    0x7fff_ffff, // DT_FILTER
];

/// The NUL-terminated string at `off` of a string table.
pub(super) fn cstr(table: &[u8], off: u64) -> Option<&[u8]> {
    let rest = table.get(usize::try_from(off).ok()?..)?;
    Some(&rest[..rest.iter().position(|&b| b == 0)?])
}

/// The string table a section links to.
pub(super) fn linked_strings<'d>(file: &ElfFile<'d>, s: &Section<'_>) -> &'d [u8] {
    file.sections
        .get(s.link as usize)
        .and_then(|t| file.section_data(t).ok())
        .unwrap_or(&[])
}

/// A version definition or requirement, by meaning: (index, names, hash, flags, file).
type Version = (u16, Vec<Vec<u8>>, u64, u64, Vec<u8>);

fn u(d: &[u8], o: usize, w: usize) -> u64 {
    read_uint(d, o, w).unwrap_or(0)
}

/// Parses `.gnu.version_r`: one entry per needed version (with its file).
fn verneed(data: &[u8], strings: &[u8]) -> Vec<Version> {
    let mut out = Vec::new();
    let mut at = 0usize;
    for _ in 0..data.len() / 16 + 1 {
        let file = cstr(strings, u(data, at + 4, 4)).unwrap_or(&[]).to_vec();
        let (cnt, aux, next) = (u(data, at + 2, 2), u(data, at + 8, 4), u(data, at + 12, 4));
        let mut a = at + aux as usize;
        for _ in 0..cnt {
            let name = cstr(strings, u(data, a + 8, 4)).unwrap_or(&[]).to_vec();
            out.push((
                u(data, a + 6, 2) as u16,
                vec![name],
                u(data, a, 4),
                u(data, a + 4, 2),
                file.clone(),
            ));
            let n = u(data, a + 12, 4) as usize;
            if n == 0 {
                break;
            }
            a += n;
        }
        if next == 0 || at + next as usize >= data.len() {
            break;
        }
        at += next as usize;
    }
    out
}

/// Parses `.gnu.version_d`: one entry per definition.
fn verdef(data: &[u8], strings: &[u8]) -> Vec<Version> {
    let mut out = Vec::new();
    let mut at = 0usize;
    for _ in 0..data.len() / 20 + 1 {
        let (flags, ndx, cnt) = (u(data, at + 2, 2), u(data, at + 4, 2), u(data, at + 6, 2));
        let (hash, aux, next) = (u(data, at + 8, 4), u(data, at + 12, 4), u(data, at + 16, 4));
        let mut names = Vec::new();
        let mut a = at + aux as usize;
        for _ in 0..cnt {
            names.push(cstr(strings, u(data, a, 4)).unwrap_or(&[]).to_vec());
            let n = u(data, a + 4, 4) as usize;
            if n == 0 {
                break;
            }
            a += n;
        }
        out.push((ndx as u16, names, hash, flags, Vec::new()));
        if next == 0 || at + next as usize >= data.len() {
            break;
        }
        at += next as usize;
    }
    out
}

/// All versions of a file, and the name of each version index.
fn versions(file: &ElfFile<'_>) -> (Vec<Version>, Vec<(u16, Vec<u8>)>) {
    let mut all = Vec::new();
    for s in &file.sections {
        let data = file.section_data(s).unwrap_or(&[]);
        let strings = linked_strings(file, s);
        match s.sh_type {
            SHT_GNU_VERNEED => all.extend(verneed(data, strings)),
            SHT_GNU_VERDEF => all.extend(verdef(data, strings)),
            _ => {}
        }
    }
    let names = all
        .iter()
        .map(|v| (v.0, v.1.first().cloned().unwrap_or_default()))
        .collect();
    (all, names)
}

/// Checks versions and dynamic strings; marks the version sections covered.
pub(super) fn check(ctx: &Ctx<'_, '_, '_>, covered: &mut Covered, report: &mut VerifyReport) {
    let (old_v, old_names) = versions(ctx.old);
    let (new_v, new_names) = versions(ctx.new);
    let strip = |v: &[Version]| -> Vec<Version> {
        v.iter()
            .map(|x| (0, x.1.clone(), x.2, x.3, x.4.clone()))
            .collect()
    };
    let mut ok = strip(&old_v) == strip(&new_v);
    let name_of =
        |names: &[(u16, Vec<u8>)], i: u16| names.iter().find(|n| n.0 == i).map(|n| n.1.clone());
    for (i, s) in ctx.old.sections.iter().enumerate() {
        match s.sh_type {
            SHT_GNU_VERNEED | SHT_GNU_VERDEF => covered.whole(i),
            SHT_GNU_VERSYM => {
                covered.whole(i);
                let (old, new) = (ctx.old_data(i), ctx.new_data(i));
                if old.len() != new.len() {
                    ok = false;
                    continue;
                }
                for k in (0..old.len()).step_by(2) {
                    let (o, n) = (u(old, k, 2) as u16, u(new, k, 2) as u16);
                    let same = o & 0x8000 == n & 0x8000
                        && if o & 0x7fff <= 1 {
                            o == n
                        } else {
                            name_of(&old_names, o & 0x7fff).is_some()
                                && name_of(&old_names, o & 0x7fff)
                                    == name_of(&new_names, n & 0x7fff)
                        };
                    if !same {
                        report.mismatch(
                            "symbol version",
                            Some(s.addr + k as u64),
                            ctx.new_section(i).map(|x| x.addr + k as u64),
                            format!("version {o} of symbol {}", k / 2),
                            format!("version {n}"),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    if !ok {
        report.mismatch(
            "symbol version",
            None,
            None,
            format!(
                "{} version definitions and requirements, as before",
                old_v.len()
            ),
            format!("{} that differ", new_v.len()),
        );
    }
}

/// Compares a string-valued `.dynamic` entry by the string it names.
pub(super) fn same_dynamic_string(
    ctx: &Ctx<'_, '_, '_>,
    old_dyn: &Section<'_>,
    new_dyn: &Section<'_>,
    old_off: u64,
    new_off: u64,
) -> bool {
    let a = cstr(linked_strings(ctx.old, old_dyn), old_off);
    let b = cstr(linked_strings(ctx.new, new_dyn), new_off);
    a.is_some() && a == b
}
