//! Little-endian reads over a byte slice, bounds-checked.

/// Reads a little-endian unsigned integer of `size` bytes (1, 2, 4 or 8) at `off`.
pub fn read_uint(data: &[u8], off: usize, size: usize) -> Option<u64> {
    let bytes = data.get(off..off.checked_add(size)?)?;
    let mut v = 0u64;
    for (i, b) in bytes.iter().enumerate() {
        v |= u64::from(*b) << (8 * i);
    }
    Some(v)
}
