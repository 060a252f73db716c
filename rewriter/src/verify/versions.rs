//! Symbol versions and dynamic strings, compared by meaning: the ELF writer may lay
//! `.dynstr` out again and renumber version indices, which changes bytes but not what they
//! say. `.gnu.version_r`, `.gnu.version_d`, `.gnu.version` and the string-valued `.dynamic`
//! entries are checked here.

use super::bytes::Covered;
use super::ctx::Ctx;
use super::report::VerifyReport;
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
    let (old_v, _) = versions(ctx.old);
    let (new_v, _) = versions(ctx.new);
    let strip = |v: &[Version]| -> Vec<Version> {
        v.iter()
            .map(|x| (0, x.1.clone(), x.2, x.3, x.4.clone()))
            .collect()
    };
    let ok = strip(&old_v) == strip(&new_v);
    for (i, s) in ctx.old.sections.iter().enumerate() {
        match s.sh_type {
            SHT_GNU_VERNEED | SHT_GNU_VERDEF => covered.whole(i),
            SHT_GNU_VERSYM => {
                covered.whole(i);
                // Compared by name through the dynamic symbol permutation.
                let (ov, nv) = (dynsym_versions(ctx.old), dynsym_versions(ctx.new));
                for (k, o) in ov.iter().enumerate() {
                    let n = ctx
                        .dyn_perm
                        .get(k)
                        .copied()
                        .flatten()
                        .and_then(|j| nv.get(j));
                    if n != Some(o) {
                        report.mismatch(
                            "symbol version",
                            Some(s.addr + 2 * k as u64),
                            ctx.new_section(i).map(|x| x.addr),
                            format!(
                                "version {} of dynamic symbol {k}",
                                String::from_utf8_lossy(&o.1)
                            ),
                            n.map_or("no such symbol".into(), |n| {
                                String::from_utf8_lossy(&n.1).into_owned()
                            }),
                        );
                        break;
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

/// The System V ELF hash of a symbol name.
pub(super) fn sysv_hash(name: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &c in name {
        h = (h << 4).wrapping_add(u32::from(c));
        let g = h & 0xf000_0000;
        if g != 0 {
            h ^= g >> 24;
        }
        h &= !g;
    }
    h
}

/// True if a SysV hash table leads from `name` to symbol `k`.
fn sysv_finds(table: &[u8], names: &[&str], k: usize) -> bool {
    let word = |i: usize| u(table, 4 * i, 4) as usize;
    let (nbucket, nchain) = (word(0), word(1));
    let Some(name) = names.get(k) else {
        return false;
    };
    if nbucket == 0 || name.is_empty() {
        return false;
    }
    let mut at = word(2 + sysv_hash(name.as_bytes()) as usize % nbucket);
    let mut steps = 0;
    while at != 0 && steps <= nchain {
        if names.get(at) == Some(name) {
            return at == k;
        }
        at = word(2 + nbucket + at);
        steps += 1;
    }
    false
}

/// The GNU hash of a symbol name.
pub(super) fn gnu_hash(name: &[u8]) -> u32 {
    name.iter().fold(5381u32, |h, &c| {
        h.wrapping_mul(33).wrapping_add(u32::from(c))
    })
}

/// True if a `.gnu.hash` table (with `ptr`-byte bloom words) leads from `name` to symbol `k`.
fn gnu_finds(table: &[u8], ptr: usize, names: &[&str], k: usize) -> bool {
    let Some(name) = names.get(k).filter(|n| !n.is_empty()) else {
        return false;
    };
    let word = |i: usize| u(table, 4 * i, 4) as usize;
    let (nbuckets, symoffset, bloom_size, shift) = (word(0), word(1), word(2), word(3));
    if nbuckets == 0 || bloom_size == 0 {
        return false;
    }
    let h = gnu_hash(name.as_bytes());
    let bits = 8 * ptr as u32;
    let bloom = u(table, 16 + ptr * ((h / bits) as usize % bloom_size), ptr);
    let mask = (1u64 << (h % bits)) | (1u64 << ((h >> shift.min(31)) % bits));
    if bloom & mask != mask {
        return false;
    }
    let buckets = 16 + ptr * bloom_size;
    let chains = buckets + 4 * nbuckets;
    let mut idx = u(table, buckets + 4 * (h as usize % nbuckets), 4) as usize;
    if idx < symoffset {
        return false;
    }
    while idx < names.len() {
        let h2 = u(table, chains + 4 * (idx - symoffset), 4) as u32;
        if h | 1 == h2 | 1 && names[idx] == *name {
            return idx == k;
        }
        if h2 & 1 != 0 {
            break;
        }
        idx += 1;
    }
    false
}

/// `.hash` and `.gnu.hash`: the writer may rebuild them (other chain order, other sizes,
/// dynamic symbols sorted again), so they are checked by lookup: every dynamic symbol the
/// old table finds, the new one finds, and no other.
pub(super) fn hash_tables(
    ctx: &Ctx<'_, '_, '_>,
    covered: &mut Covered,
    report: &mut VerifyReport,
) -> crate::error::Result<()> {
    const SHT_HASH: u32 = 5;
    const SHT_GNU_HASH: u32 = 0x6fff_fff6;
    let (old_syms, new_syms) = (ctx.old.dynamic_symbols()?, ctx.new.dynamic_symbols()?);
    let old_names: Vec<&str> = old_syms.iter().map(|s| s.name).collect();
    let new_names: Vec<&str> = new_syms.iter().map(|s| s.name).collect();
    for s in ctx.old.sections.iter().filter(|s| s.is_alloc()) {
        if s.sh_type != SHT_HASH && s.sh_type != SHT_GNU_HASH {
            continue;
        }
        let Some(n) = ctx.new_section(s.index) else {
            continue;
        };
        covered.whole(s.index);
        let (old, new) = (ctx.old_data(s.index), ctx.new_data(s.index));
        let finds = |table: &[u8], names: &[&str], k: usize| {
            if s.sh_type == SHT_HASH {
                sysv_finds(table, names, k)
            } else {
                gnu_finds(table, ctx.ptr, names, k)
            }
        };
        for k in 1..old_names.len() {
            let before = finds(old, &old_names, k);
            let new_k = ctx.dyn_perm.get(k).copied().flatten();
            let after = new_k.is_some_and(|j| finds(new, &new_names, j));
            if before != after {
                // An undefined symbol in an executable's table only gives a shared library
                // the executable's PLT address for it (function pointer equality).
                let undefined = old_syms[k].shndx == 0;
                let what = format!(
                    "dynamic symbol {} {}found through {}, as before",
                    old_names[k],
                    if before { "" } else { "not " },
                    s.name
                );
                let found = format!("{}found", if after { "" } else { "not " });
                if undefined && before {
                    report.warn("hash table", Some(s.addr), Some(n.addr), what, found);
                    continue;
                }
                report.mismatch("hash table", Some(s.addr), Some(n.addr), what, found);
                break;
            }
        }
    }
    Ok(())
}

/// The version name of every dynamic symbol (`*local*`/`*global*` for indices 0 and 1,
/// with the hidden bit).
fn dynsym_versions(file: &ElfFile<'_>) -> Vec<(bool, Vec<u8>)> {
    let (_, names) = versions(file);
    let Some(s) = file.sections.iter().find(|s| s.sh_type == SHT_GNU_VERSYM) else {
        return Vec::new();
    };
    let data = file.section_data(s).unwrap_or(&[]);
    (0..data.len() / 2)
        .map(|k| {
            let v = u(data, 2 * k, 2) as u16;
            let idx = v & 0x7fff;
            let name = match idx {
                0 => b"*local*".to_vec(),
                1 => b"*global*".to_vec(),
                _ => names
                    .iter()
                    .find(|n| n.0 == idx)
                    .map(|n| n.1.clone())
                    .unwrap_or_default(),
            };
            (v & 0x8000 != 0, name)
        })
        .collect()
}

/// Where each dynamic symbol of the original went: the writer may sort `.dynsym` again
/// (defined symbols last, for `.gnu.hash`). Symbols are matched by name and version, in
/// order.
pub(super) fn dynsym_permutation(
    old: &ElfFile<'_>,
    new: &ElfFile<'_>,
) -> crate::error::Result<Vec<Option<usize>>> {
    let (os, ns) = (old.dynamic_symbols()?, new.dynamic_symbols()?);
    let (ov, nv) = (dynsym_versions(old), dynsym_versions(new));
    let key = |syms: &[crate::elf::Symbol<'_>], vers: &[(bool, Vec<u8>)], k: usize| {
        (
            syms[k].name.to_string(),
            vers.get(k).cloned().unwrap_or_default(),
        )
    };
    let mut by_key: std::collections::HashMap<_, std::collections::VecDeque<usize>> =
        std::collections::HashMap::new();
    for k in 1..ns.len() {
        by_key.entry(key(&ns, &nv, k)).or_default().push_back(k);
    }
    let mut perm = vec![None; os.len()];
    if !os.is_empty() {
        perm[0] = Some(0);
    }
    for (k, p) in perm.iter_mut().enumerate().skip(1) {
        *p = by_key
            .get_mut(&key(&os, &ov, k))
            .and_then(|q| q.pop_front());
    }
    Ok(perm)
}
