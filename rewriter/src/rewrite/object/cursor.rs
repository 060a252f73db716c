//! [`Cursor`]: little-endian and LEB128 reads over a DWARF section's bytes (`.debug_line`,
//! `.eh_frame`, `.debug_frame`); every read is bounds-checked and `None` past the end.

use crate::elf::read_uint;

/// A read position in a byte slice.
pub(super) struct Cursor<'a> {
    /// The bytes.
    pub data: &'a [u8],
    /// Offset of the next read.
    pub pos: usize,
}

impl Cursor<'_> {
    pub fn u8(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }
    pub fn uint(&mut self, size: usize) -> Option<u64> {
        let v = read_uint(self.data, self.pos, size)?;
        self.pos += size;
        Some(v)
    }
    pub fn uleb(&mut self) -> Option<u64> {
        let (mut v, mut shift) = (0u64, 0u32);
        loop {
            let b = self.u8()?;
            if shift < 64 {
                v |= u64::from(b & 0x7f) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
    }
    pub fn sleb(&mut self) -> Option<i64> {
        let (mut v, mut shift) = (0i64, 0u32);
        loop {
            let b = self.u8()?;
            if shift < 64 {
                v |= i64::from(b & 0x7f) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                if shift < 64 && b & 0x40 != 0 {
                    v |= -1i64 << shift;
                }
                return Some(v);
            }
        }
    }
    pub fn skip(&mut self, n: usize) -> Option<()> {
        self.pos = self.pos.checked_add(n).filter(|&p| p <= self.data.len())?;
        Some(())
    }
}
