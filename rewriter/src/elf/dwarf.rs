//! LEB128 numbers and [`Cursor`], little-endian and LEB128 reads over a DWARF section's bytes
//! (`.debug_line`, `.eh_frame`, `.debug_frame`, `.gcc_except_table`): the one decoder every
//! step uses. Every read is bounds-checked and `None` past the end; bits past the 64th of a
//! long LEB128 number are dropped, as readelf does.

use super::bytes::read_uint;

/// The unsigned LEB128 number at the start of `bytes`, and how many bytes it takes.
pub fn read_uleb(bytes: &[u8]) -> Option<(u64, usize)> {
    let (mut v, mut shift) = (0u64, 0u32);
    for (i, &b) in bytes.iter().enumerate() {
        if shift < 64 {
            v |= u64::from(b & 0x7f) << shift;
        }
        shift = shift.saturating_add(7);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The signed LEB128 number at the start of `bytes`, and how many bytes it takes.
pub fn read_sleb(bytes: &[u8]) -> Option<(i64, usize)> {
    let (mut v, mut shift) = (0i64, 0u32);
    for (i, &b) in bytes.iter().enumerate() {
        if shift < 64 {
            v |= i64::from(b & 0x7f) << shift;
        }
        shift = shift.saturating_add(7);
        if b & 0x80 == 0 {
            if shift < 64 && b & 0x40 != 0 {
                v |= -1i64 << shift;
            }
            return Some((v, i + 1));
        }
    }
    None
}

/// A read position in a byte slice.
pub struct Cursor<'a> {
    /// The bytes.
    pub data: &'a [u8],
    /// Offset of the next read.
    pub pos: usize,
}

impl Cursor<'_> {
    /// One byte.
    pub fn u8(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }
    /// A little-endian number of `size` bytes.
    pub fn uint(&mut self, size: usize) -> Option<u64> {
        let v = read_uint(self.data, self.pos, size)?;
        self.pos += size;
        Some(v)
    }
    /// An unsigned LEB128 number.
    pub fn uleb(&mut self) -> Option<u64> {
        let (v, n) = read_uleb(self.data.get(self.pos..)?)?;
        self.pos += n;
        Some(v)
    }
    /// A signed LEB128 number.
    pub fn sleb(&mut self) -> Option<i64> {
        let (v, n) = read_sleb(self.data.get(self.pos..)?)?;
        self.pos += n;
        Some(v)
    }
    /// Skips `n` bytes (`None`, not moving, past the end).
    pub fn skip(&mut self, n: usize) -> Option<()> {
        self.pos = self.pos.checked_add(n).filter(|&p| p <= self.data.len())?;
        Some(())
    }
}
