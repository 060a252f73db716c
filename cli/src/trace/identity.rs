//! What identifies a traced program: its GNU build-id, its size, and a hash of its code.
//! `padtrim record` stores them in the trace (`Identity` records, see
//! `padtrim_runtime::format`); `padtrim replay` compares them with the program it takes
//! symbols from.
//!
//! The code hash decides: the trace's addresses name functions only in a program with the
//! same instructions at the same addresses. The build-id alone would not do: a program
//! rewritten by `padtrim rewrite` keeps its build-id while its functions move. It is used
//! when there is no code to compare (a separate debug file made by
//! `objcopy --only-keep-debug` has the symbols but not the code).

use padtrim_runtime::format::{identity_record, IdentityField, Record};

/// The facts that identify one program file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The GNU build-id, when the program has one.
    pub build_id: Option<Vec<u8>>,
    /// Size of the file in bytes.
    pub size: u64,
    /// FNV-1a over the executable sections (see `IdentityField::CodeHash`); `None` when the
    /// file has no code bytes (not an ELF file, no section headers, or a debug file).
    pub code: Option<u64>,
}

const SHT_NOTE: u32 = 7;
const SHT_NOBITS: u32 = 8;
const SHF_ALLOC: u64 = 2;
const SHF_EXECINSTR: u64 = 4;
const PT_NOTE: u32 = 4;
const NT_GNU_BUILD_ID: u32 = 3;

/// 64-bit FNV-1a.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn rd16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn rd32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn rd64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// One section header of a little-endian ELF64 file: (type, flags, addr, file bytes).
type SectionHeader<'a> = (u32, u64, u64, Option<&'a [u8]>);

/// The section headers of a little-endian ELF64 file (empty for anything else).
fn sections(data: &[u8]) -> Vec<SectionHeader<'_>> {
    let is_elf64_le = data.get(0..4) == Some(b"\x7fELF") && data.get(4..6) == Some(&[2, 1]);
    if !is_elf64_le {
        return Vec::new();
    }
    let header = |shoff: usize, i: usize| -> Option<SectionHeader<'_>> {
        let h = shoff.checked_add(i.checked_mul(64)?)?;
        let kind = rd32(data, h + 4)?;
        let flags = rd64(data, h + 8)?;
        let addr = rd64(data, h + 0x10)?;
        let off = usize::try_from(rd64(data, h + 0x18)?).ok()?;
        let size = usize::try_from(rd64(data, h + 0x20)?).ok()?;
        let bytes = if kind == SHT_NOBITS {
            None
        } else {
            data.get(off..off.checked_add(size)?)
        };
        Some((kind, flags, addr, bytes))
    };
    let (Some(shoff), Some(shentsize), Some(shnum)) =
        (rd64(data, 0x28), rd16(data, 0x3a), rd16(data, 0x3c))
    else {
        return Vec::new();
    };
    let Ok(shoff) = usize::try_from(shoff) else {
        return Vec::new();
    };
    if shoff == 0 || shentsize != 64 {
        return Vec::new();
    }
    // More than 0xff00 sections: the count is in the first header's size field.
    let count = if shnum == 0 {
        rd64(data, shoff + 0x20).map_or(0, |n| n as usize)
    } else {
        usize::from(shnum)
    };
    (0..count).map_while(|i| header(shoff, i)).collect()
}

/// The build-id in a run of ELF notes.
fn build_id_in_notes(mut notes: &[u8]) -> Option<Vec<u8>> {
    let align4 = |n: usize| n.checked_add(3).map(|n| n & !3);
    while notes.len() >= 12 {
        let namesz = rd32(notes, 0)? as usize;
        let descsz = rd32(notes, 4)? as usize;
        let kind = rd32(notes, 8)?;
        let name_end = 12usize.checked_add(align4(namesz)?)?;
        let desc_end = name_end.checked_add(align4(descsz)?)?;
        let name = notes.get(12..12 + namesz)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" {
            return notes.get(name_end..name_end + descsz).map(<[u8]>::to_vec);
        }
        notes = notes.get(desc_end..)?;
    }
    None
}

/// The build-id from the note sections, or (no section headers) the note segments.
fn build_id(data: &[u8], sections: &[SectionHeader<'_>]) -> Option<Vec<u8>> {
    if !sections.is_empty() {
        return sections
            .iter()
            .filter(|s| s.0 == SHT_NOTE)
            .find_map(|s| s.3.and_then(build_id_in_notes));
    }
    if data.get(0..4) != Some(b"\x7fELF") || data.get(4..6) != Some(&[2, 1]) {
        return None;
    }
    let phoff = usize::try_from(rd64(data, 0x20)?).ok()?;
    let phentsize = usize::from(rd16(data, 0x36)?);
    let phnum = usize::from(rd16(data, 0x38)?);
    if phentsize < 56 {
        return None;
    }
    (0..phnum).find_map(|i| {
        let h = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if rd32(data, h)? != PT_NOTE {
            return None;
        }
        let off = usize::try_from(rd64(data, h + 8)?).ok()?;
        let size = usize::try_from(rd64(data, h + 0x20)?).ok()?;
        build_id_in_notes(data.get(off..off.checked_add(size)?)?)
    })
}

impl Identity {
    /// The identity of the program file whose bytes these are.
    pub fn of(data: &[u8]) -> Identity {
        let sections = sections(data);
        let mut hash = Fnv::new();
        let mut any_code = false;
        for (_, flags, addr, bytes) in &sections {
            if flags & (SHF_ALLOC | SHF_EXECINSTR) != SHF_ALLOC | SHF_EXECINSTR {
                continue;
            }
            let Some(bytes) = bytes else { continue };
            any_code = true;
            hash.write(&addr.to_le_bytes());
            hash.write(&(bytes.len() as u64).to_le_bytes());
            hash.write(bytes);
        }
        Identity {
            build_id: build_id(data, &sections),
            size: data.len() as u64,
            code: any_code.then_some(hash.0),
        }
    }

    /// The `Identity` records that store it in a trace.
    pub fn records(&self) -> Vec<Record> {
        let mut fields: Vec<(IdentityField, Vec<u8>)> =
            vec![(IdentityField::FileSize, self.size.to_le_bytes().to_vec())];
        if let Some(id) = &self.build_id {
            fields.push((IdentityField::BuildId, id.clone()));
        }
        if let Some(code) = self.code {
            fields.push((IdentityField::CodeHash, code.to_le_bytes().to_vec()));
        }
        let mut out = Vec::new();
        for (field, value) in &fields {
            out.extend((0..).map_while(|i| identity_record(*field, value, i)));
        }
        out
    }

    /// The identity stored in a trace's records, if `padtrim record` stored one.
    pub fn from_records(records: impl Iterator<Item = Record>) -> Option<Identity> {
        let mut values: Vec<(IdentityField, usize, Vec<u8>)> = Vec::new();
        for r in records {
            let Some((field, len, chunk)) = r.identity_chunk() else {
                continue;
            };
            let i = match values.iter().position(|v| v.0 == field) {
                Some(i) => i,
                None => {
                    values.push((field, len, Vec::new()));
                    values.len() - 1
                }
            };
            let v = &mut values[i].2;
            let want = len.saturating_sub(v.len()).min(chunk.len());
            v.extend_from_slice(&chunk[..want]);
        }
        if values.is_empty() {
            return None;
        }
        let whole = |field: IdentityField| {
            values
                .iter()
                .find(|v| v.0 == field && v.2.len() == v.1)
                .map(|v| v.2.clone())
        };
        let u64_of = |field| {
            whole(field)
                .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
                .map(u64::from_le_bytes)
        };
        Some(Identity {
            build_id: whole(IdentityField::BuildId),
            size: u64_of(IdentityField::FileSize).unwrap_or(0),
            code: u64_of(IdentityField::CodeHash),
        })
    }

    /// Does `other` hold the program this identity describes, as far as symbols go?
    pub fn matches(&self, other: &Identity) -> bool {
        match (self.code, other.code, &self.build_id, &other.build_id) {
            (Some(a), Some(b), _, _) => a == b,
            // No code on one side (a debug file): the build-ids decide.
            (_, _, Some(a), Some(b)) => a == b,
            // Nothing recorded to compare with.
            (None, _, None, _) => true,
            _ => false,
        }
    }

    /// Same build-id, different code: the mark of a program and its `padtrim rewrite`.
    pub fn same_build_different_code(&self, other: &Identity) -> bool {
        self.build_id.is_some() && self.build_id == other.build_id && self.code != other.code
    }

    /// "build-id 1a2b..., code hash 0123456789abcdef, 12345 bytes".
    pub fn describe(&self) -> String {
        let build = match &self.build_id {
            Some(id) => format!("build-id {}", hex(id)),
            None => "no build-id".to_string(),
        };
        let code = match self.code {
            Some(h) => format!("code hash {h:016x}"),
            None => "no code".to_string(),
        };
        let unit = if self.size == 1 { "byte" } else { "bytes" };
        format!("{build}, {code}, {} {unit}", self.size)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use padtrim_runtime::format::Kind;

    #[test]
    fn records_round_trip() {
        let id = Identity {
            build_id: Some((0..20).collect()),
            size: 123_456,
            code: Some(0xdead_beef_0123_4567),
        };
        let recs = id.records();
        assert!(recs.iter().all(|r| r.kind == Kind::Identity));
        assert_eq!(Identity::from_records(recs.into_iter()), Some(id.clone()));
        let bare = Identity {
            build_id: None,
            size: 9,
            code: None,
        };
        assert_eq!(
            Identity::from_records(bare.records().into_iter()),
            Some(bare)
        );
        assert_eq!(Identity::from_records(std::iter::empty()), None);
    }

    #[test]
    fn code_decides_and_build_id_stands_in_for_missing_code() {
        let a = Identity {
            build_id: Some(vec![1, 2, 3]),
            size: 100,
            code: Some(7),
        };
        let rewritten = Identity {
            code: Some(8),
            size: 120,
            ..a.clone()
        };
        let stripped = Identity {
            size: 80,
            ..a.clone()
        };
        let debug_file = Identity {
            code: None,
            ..a.clone()
        };
        let other_debug_file = Identity {
            build_id: Some(vec![9]),
            code: None,
            size: 5,
        };
        let not_elf = Identity {
            build_id: None,
            size: 5,
            code: None,
        };
        assert!(a.matches(&stripped));
        assert!(a.matches(&debug_file));
        assert!(!a.matches(&rewritten));
        assert!(a.same_build_different_code(&rewritten));
        assert!(!a.matches(&other_debug_file));
        assert!(!a.matches(&not_elf));
    }

    #[test]
    fn garbage_is_not_an_elf_and_does_not_panic() {
        for data in [&b""[..], b"\x7fELF", b"\x7fELF\x02\x01", &[0xff; 200]] {
            let id = Identity::of(data);
            assert_eq!((id.build_id, id.code), (None, None));
        }
        let mut header = vec![0u8; 64];
        header[..6].copy_from_slice(b"\x7fELF\x02\x01");
        header[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        header[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        header[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        assert_eq!(Identity::of(&header).code, None);
    }
}
