//! The image under construction: the original file, the plan, and the new contents written
//! copy-on-write; and the changes relocations make to it, applied in order.

// Keys are addresses. FxHash is several times faster than SipHash here; a crafted input
// could only make hashing slower, never wrong.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::elf::{read_uint, ElfFile, Reloc};
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::riscv::{decode, Insn, Xlen};

/// The image under construction: original file, plan, and copy-on-write new contents.
pub(crate) struct Image<'a, 'data> {
    pub file: &'a ElfFile<'data>,
    pub plan: &'a Plan,
    pub xlen: Xlen,
    /// New contents by section index, `None` until first written (a vector, not a map:
    /// every relocation asks for its section's bytes).
    pub data: Vec<Option<Vec<u8>>>,
    /// GOT slots that hold TLS offsets or module ids, not addresses.
    pub tls_got: HashSet<u64>,
    /// Small difference fields (section, original place) → (bits, old value, movement).
    pub pairs: HashMap<(usize, u64), (u32, i64, i64)>,
    /// Original address ranges of the PLT sections (asked about for every call).
    pub plt: Vec<std::ops::Range<u64>>,
}

impl<'a, 'data> Image<'a, 'data> {
    /// The image of `file` rewritten by `plan`, before anything is written.
    pub fn new(file: &'a ElfFile<'data>, plan: &'a Plan) -> Self {
        Image {
            file,
            plan,
            xlen: if file.is_64 { Xlen::Rv64 } else { Xlen::Rv32 },
            data: vec![None; file.sections.len()],
            tls_got: HashSet::default(),
            pairs: HashMap::default(),
            plt: file
                .sections
                .iter()
                .filter(|s| s.is_exec() && matches!(s.name, ".plt" | ".plt.sec" | ".iplt"))
                .map(|s| s.addr..s.end())
                .collect(),
        }
    }

    /// New place of the byte at original address `addr` in section `sec` (an instruction at
    /// an entry with an inserted slot is behind the slot).
    pub fn map_in(&self, sec: usize, addr: u64) -> u64 {
        let s = &self.file.sections[sec];
        if !self.file.kind.is_linked() {
            self.plan.map.map_in(sec, addr)
        } else if !s.is_alloc() {
            addr
        } else if addr > s.end() {
            // Past the end: an `R_RISCV_NONE` ld's relaxation left there (the parser lets no
            // other relocation through). It patches nothing; it stays at the section's end.
            self.plan.map.map_in(sec, s.end())
        } else if addr < s.addr {
            // Not in the section after all (a relocation a post-link tool zeroed): map it
            // as any address, which leaves it alone if no section holds it.
            self.plan.map.map_place(addr)
        } else {
            self.plan.map.map_place_in(sec, addr)
        }
    }

    /// New address of an original target address (any section).
    pub fn map(&self, addr: u64) -> u64 {
        self.plan.map.map(addr)
    }

    /// New place of the byte at original address `addr` (any section; see
    /// [`crate::plan::AddressMap::map_place`]).
    pub fn map_place(&self, addr: u64) -> u64 {
        self.plan.map.map_place(addr)
    }

    /// True if original address `addr` lies in a PLT section.
    pub fn in_plt(&self, addr: u64) -> bool {
        self.plt.iter().any(|r| r.contains(&addr))
    }

    /// Original bytes of a section.
    pub fn old(&self, sec: usize) -> &'data [u8] {
        self.file
            .section_data(&self.file.sections[sec])
            .unwrap_or(&[])
    }

    /// New address of section `sec`'s start.
    pub fn new_base(&self, sec: usize) -> u64 {
        let s = &self.file.sections[sec];
        if s.is_alloc() || !self.file.kind.is_linked() {
            self.plan.map.section(sec).map_or(s.addr, |m| m.new_addr)
        } else {
            s.addr
        }
    }

    /// The new bytes of section `sec` (copied from the original on first use).
    pub fn bytes_mut(&mut self, sec: usize) -> &mut Vec<u8> {
        if self.data.len() <= sec {
            self.data.resize(sec + 1, None);
        }
        let old = self.old(sec);
        self.data[sec].get_or_insert_with(|| old.to_vec())
    }

    /// Reads `size` bytes little-endian at new address `addr` of section `sec`.
    pub fn read_new(&mut self, sec: usize, addr: u64, size: usize) -> Result<u64> {
        let base = self.new_base(sec);
        let off = addr.wrapping_sub(base) as usize;
        let bytes = self.bytes_mut(sec);
        read_uint(bytes, off, size).ok_or_else(|| {
            Error::malformed(format!(
                "read of {size} bytes at {addr:#x} is outside its section"
            ))
        })
    }

    /// Writes `size` bytes little-endian at new address `addr` of section `sec`.
    pub fn write_new(&mut self, sec: usize, addr: u64, size: usize, value: u64) -> Result<()> {
        let base = self.new_base(sec);
        let off = addr.wrapping_sub(base) as usize;
        let bytes = self.bytes_mut(sec);
        let dst = bytes.get_mut(off..off + size).ok_or_else(|| {
            Error::malformed(format!(
                "write of {size} bytes at {addr:#x} is outside its section"
            ))
        })?;
        dst.copy_from_slice(&value.to_le_bytes()[..size]);
        Ok(())
    }

    /// Decodes the original instruction at `addr` of section `sec`.
    pub fn old_insn(&self, sec: usize, addr: u64) -> Result<Insn> {
        let s = &self.file.sections[sec];
        let off = addr.wrapping_sub(s.addr) as usize;
        let bytes = self.old(sec).get(off..).unwrap_or(&[]);
        decode(bytes, self.xlen)
            .map_err(|e| Error::refused(format!("instruction at {addr:#x}: {e}")))
    }

    /// Writes a re-encoded instruction at the new place of original address `addr`.
    pub fn put_insn(&mut self, sec: usize, addr: u64, insn: &Insn, raw: u32) -> Result<()> {
        let new = self.map_in(sec, addr);
        self.write_new(sec, new, insn.len as usize, u64::from(raw))
    }
}

/// A change one relocation makes, applied in relocation order after the parallel
/// resolution (which reads only the original bytes).
pub(super) enum Action {
    /// Write `raw` (`len` bytes) at new address `addr` of section `sec`.
    Write {
        sec: usize,
        addr: u64,
        len: u8,
        raw: u32,
    },
    /// The instruction at original address `addr` was fixed through a relocation.
    Handled(u64),
    /// The GOT slot at original address `addr` holds a TLS offset or module id.
    TlsGot(u64),
    /// A data relocation: it reads and writes the new bytes, so it runs in order.
    Data {
        sec: usize,
        r: Reloc,
        t_old: u64,
        t_new: u64,
        p_new: u64,
    },
    /// Write `value` (`len` bytes) at new address `addr` of section `sec` if the word there
    /// (as the changes before left it) holds `expect`; `None`: only read it.
    WriteIfWord {
        sec: usize,
        addr: u64,
        len: u8,
        expect: Option<u64>,
        value: u64,
    },
}
