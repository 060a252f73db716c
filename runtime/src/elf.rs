//! A small, bounds-checked reader for the function symbols of a little-endian ELF64 file.
//! The runtime uses it on `/proc/self/exe` (mmapped) to evaluate `PADTRIM_FILTER`; the host
//! CLI uses it to symbolize traces. Every read goes through `get`, so a corrupt file yields
//! `None` or fewer symbols, never a fault.

const SHT_SYMTAB: u32 = 2;
const SHT_DYNSYM: u32 = 11;
const STT_FUNC: u8 = 2;
const STT_GNU_IFUNC: u8 = 10;
const SYM_SIZE: usize = 24;

/// A function symbol, compact enough to sort in bulk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FuncSym {
    /// Link-time address.
    pub addr: u64,
    /// Size in bytes (0 if unknown).
    pub size: u64,
    /// Index in the symbol table, to fetch the name.
    pub index: u32,
}

/// A parsed ELF64 little-endian file (only what symbol lookup needs).
#[derive(Clone, Copy, Debug)]
pub struct Elf<'a> {
    data: &'a [u8],
    symtab: &'a [u8],
    strtab: &'a [u8],
}

impl<'a> Elf<'a> {
    /// Parse the section headers and find `.symtab` (or `.dynsym` if stripped).
    pub fn parse(data: &'a [u8]) -> Option<Elf<'a>> {
        if data.get(0..4)? != b"\x7fELF" || *data.get(4)? != 2 || *data.get(5)? != 1 {
            return None;
        }
        let shoff = rd64(data, 0x28)? as usize;
        let shentsize = rd16(data, 0x3a)? as usize;
        let shnum = rd16(data, 0x3c)? as usize;
        if shentsize < 64 {
            return None;
        }
        let section = |i: usize| -> Option<(u32, &'a [u8], u32)> {
            let h = shoff.checked_add(i.checked_mul(shentsize)?)?;
            let kind = rd32(data, h + 4)?;
            let off = rd64(data, h + 0x18)? as usize;
            let size = rd64(data, h + 0x20)? as usize;
            let link = rd32(data, h + 0x28)?;
            let bytes = if kind == 8 {
                &[][..]
            } else {
                data.get(off..off.checked_add(size)?)?
            };
            Some((kind, bytes, link))
        };
        let mut found = None;
        for want in [SHT_SYMTAB, SHT_DYNSYM] {
            for i in 0..shnum {
                if let Some((kind, bytes, link)) = section(i) {
                    if kind == want {
                        found = Some((bytes, link));
                        break;
                    }
                }
            }
            if found.is_some() {
                break;
            }
        }
        let (symtab, link) = found?;
        let (_, strtab, _) = section(link as usize)?;
        Some(Elf {
            data,
            symtab,
            strtab,
        })
    }

    /// The whole file.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Number of entries in the symbol table.
    pub fn symbol_count(&self) -> usize {
        self.symtab.len() / SYM_SIZE
    }

    /// The function symbol at `index`, if it is a defined function with a name.
    pub fn function(&self, index: usize) -> Option<FuncSym> {
        let s = self
            .symtab
            .get(index * SYM_SIZE..index * SYM_SIZE + SYM_SIZE)?;
        let info = s[4];
        let shndx = u16::from_le_bytes([s[6], s[7]]);
        let kind = info & 0xf;
        if (kind != STT_FUNC && kind != STT_GNU_IFUNC) || shndx == 0 || rd32(s, 0)? == 0 {
            return None;
        }
        Some(FuncSym {
            addr: rd64(s, 8)?,
            size: rd64(s, 16)?,
            index: index as u32,
        })
    }

    /// Name of symbol `index` (empty if it has none or the string table is corrupt).
    pub fn name(&self, index: u32) -> &'a [u8] {
        let off = self
            .symtab
            .get(index as usize * SYM_SIZE..index as usize * SYM_SIZE + 4)
            .and_then(|s| rd32(s, 0))
            .unwrap_or(0) as usize;
        let tail = self.strtab.get(off..).unwrap_or(&[]);
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        &tail[..end]
    }

    /// Fill `out` with function symbols sorted by address; returns how many were stored
    /// (stops when `out` is full).
    pub fn sorted_functions(&self, out: &mut [FuncSym]) -> usize {
        let mut n = 0;
        for i in 0..self.symbol_count() {
            if n == out.len() {
                break;
            }
            if let Some(f) = self.function(i) {
                out[n] = f;
                n += 1;
            }
        }
        out[..n].sort_unstable_by_key(|f| (f.addr, f.index));
        n
    }
}

/// Index range in `sorted` of the symbols starting exactly at `addr`.
pub fn at_address(sorted: &[FuncSym], addr: u64) -> &[FuncSym] {
    let start = sorted.partition_point(|f| f.addr < addr);
    let end = start
        + sorted[start..]
            .iter()
            .take_while(|f| f.addr == addr)
            .count();
    &sorted[start..end]
}

/// The function containing `addr` (exact start preferred, else the nearest one below whose
/// size covers it), for symbolization.
pub fn containing(sorted: &[FuncSym], addr: u64) -> Option<FuncSym> {
    if let Some(f) = at_address(sorted, addr).first() {
        return Some(*f);
    }
    let below = sorted.partition_point(|f| f.addr <= addr);
    let f = sorted.get(below.checked_sub(1)?)?;
    if addr < f.addr.saturating_add(f.size) {
        Some(*f)
    } else {
        None
    }
}

/// Little-endian read at `at`; `None` past the end.
pub(crate) fn rd16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

/// Little-endian read at `at`; `None` past the end.
pub(crate) fn rd32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Little-endian read at `at`; `None` past the end.
pub(crate) fn rd64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// A minimal ELF64 with a .symtab of the given (name, addr, size, type) and its strtab.
    fn tiny_elf(syms: &[(&str, u64, u64, u8)]) -> Vec<u8> {
        let mut strtab = vec![0u8];
        let mut symtab = vec![0u8; SYM_SIZE]; // null symbol
        for (name, addr, size, kind) in syms {
            let off = strtab.len() as u32;
            strtab.extend_from_slice(name.as_bytes());
            strtab.push(0);
            let mut s = [0u8; SYM_SIZE];
            s[0..4].copy_from_slice(&off.to_le_bytes());
            s[4] = 0x10 | kind;
            s[6..8].copy_from_slice(&1u16.to_le_bytes());
            s[8..16].copy_from_slice(&addr.to_le_bytes());
            s[16..24].copy_from_slice(&size.to_le_bytes());
            symtab.extend_from_slice(&s);
        }
        let mut f = vec![0u8; 64];
        f[0..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        let sym_off = f.len();
        f.extend_from_slice(&symtab);
        let str_off = f.len();
        f.extend_from_slice(&strtab);
        let shoff = f.len();
        let sh = |kind: u32, off: usize, size: usize, link: u32| {
            let mut h = [0u8; 64];
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            h[0x28..0x2c].copy_from_slice(&link.to_le_bytes());
            h
        };
        let headers = [
            sh(0, 0, 0, 0),
            sh(SHT_SYMTAB, sym_off, symtab.len(), 2),
            sh(3, str_off, strtab.len(), 0),
        ];
        for h in headers.iter() {
            f.extend_from_slice(h);
        }
        f[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        f
    }

    #[test]
    fn finds_sorted_functions_and_names() {
        let data = tiny_elf(&[
            ("main", 0x300, 0x40, 2),
            ("obj", 0x100, 8, 1),
            ("fib", 0x200, 0x20, 2),
        ]);
        let elf = Elf::parse(&data).unwrap();
        let mut buf = [FuncSym::default(); 8];
        let n = elf.sorted_functions(&mut buf);
        assert_eq!(n, 2);
        assert_eq!(elf.name(buf[0].index), b"fib");
        assert_eq!(elf.name(buf[1].index), b"main");
        assert_eq!(at_address(&buf[..n], 0x300).len(), 1);
        assert!(at_address(&buf[..n], 0x304).is_empty());
        assert_eq!(containing(&buf[..n], 0x310).map(|f| f.addr), Some(0x300));
        assert_eq!(containing(&buf[..n], 0x340), None);
        assert_eq!(containing(&buf[..n], 0x10), None);
    }

    #[test]
    fn corrupt_input_is_rejected_or_harmless() {
        let data = tiny_elf(&[("fib", 0x200, 0x20, 2)]);
        for cut in [0, 3, 10, 63, 100, data.len() - 1] {
            let _ = Elf::parse(&data[..cut]).map(|e| {
                let mut buf = [FuncSym::default(); 4];
                e.sorted_functions(&mut buf)
            });
        }
        let mut bad = data.clone();
        bad[0x28] = 0xff; // section headers out of range
        assert!(Elf::parse(&bad).is_none());
        assert!(Elf::parse(b"\x7fELF").is_none());
    }
}
