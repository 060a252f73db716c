//! The contract between `padtrim rewrite` and the padtrim runtime, defined once.
//!
//! The runtime links a [`Descriptor`] into the program under [`DESCRIPTOR_SYMBOL`], holding
//! [`Descriptor::EMPTY`]. The rewriter fills it in the file it writes (slot size, its own
//! link-time address, where the sorted [`MCOUNT_SECTION`] table and the trampoline islands
//! are), the verifier checks what the rewriter wrote, and at start-up the runtime reads it to
//! find the slots it patches into calls of [`TRAMPOLINE_SYMBOL`].
//!
//! `#![no_std]`, and buildable by rustc 1.63, because the runtime is.
#![no_std]
#![deny(missing_docs)]

/// Symbol of the runtime's descriptor, which the rewriter fills.
pub const DESCRIPTOR_SYMBOL: &str = "padtrim_descriptor";
/// Symbol of the runtime's trampoline, which slots call (directly or through an island).
pub const TRAMPOLINE_SYMBOL: &str = "padtrim_trampoline";
/// Name of the sorted slot table the rewriter adds.
pub const MCOUNT_SECTION: &str = "__mcount_loc";

/// Descriptor magic, set by the runtime's static initializer.
pub const DESCRIPTOR_MAGIC: [u8; 8] = *b"PADTRIM\0";
/// Descriptor layout version.
pub const DESCRIPTOR_VERSION: u32 = 1;

/// Where the slot table is; filled in the file by `padtrim rewrite`. The same 56 bytes, in
/// little-endian order, on RV64 and RV32 (every address field is 64 bits wide).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// `b"PADTRIM\0"`.
    pub magic: [u8; 8],
    /// [`DESCRIPTOR_VERSION`].
    pub version: u32,
    /// 0 = file not rewritten by padtrim; else slot bytes (4).
    pub slot_size: u32,
    /// Link-time address of this descriptor.
    pub self_addr: u64,
    /// Link-time address of the sorted `__mcount_loc` table.
    pub table_addr: u64,
    /// Entries in the table.
    pub table_count: u64,
    /// Link-time address of the sorted island table, or 0.
    pub islands_addr: u64,
    /// Entries in the island table.
    pub islands_count: u64,
}

/// One field of the descriptor as it lies in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// The field's name in [`Descriptor`].
    pub name: &'static str,
    /// Byte offset from the descriptor's start.
    pub offset: usize,
    /// Width in bytes.
    pub width: usize,
}

impl Descriptor {
    /// Bytes the descriptor occupies in the file.
    pub const SIZE: usize = 56;

    /// The fields the rewriter fills, in file order (everything after magic and version).
    pub const FILLED_FIELDS: [Field; 6] = [
        Field {
            name: "slot_size",
            offset: 12,
            width: 4,
        },
        Field {
            name: "self_addr",
            offset: 16,
            width: 8,
        },
        Field {
            name: "table_addr",
            offset: 24,
            width: 8,
        },
        Field {
            name: "table_count",
            offset: 32,
            width: 8,
        },
        Field {
            name: "islands_addr",
            offset: 40,
            width: 8,
        },
        Field {
            name: "islands_count",
            offset: 48,
            width: 8,
        },
    ];

    /// The value the runtime links in: valid magic, not rewritten.
    pub const EMPTY: Descriptor = Descriptor {
        magic: DESCRIPTOR_MAGIC,
        version: DESCRIPTOR_VERSION,
        slot_size: 0,
        self_addr: 0,
        table_addr: 0,
        table_count: 0,
        islands_addr: 0,
        islands_count: 0,
    };

    /// Was this descriptor filled by the rewriter (and is it one we understand)?
    pub fn is_filled(&self) -> bool {
        self.magic == DESCRIPTOR_MAGIC && self.version == DESCRIPTOR_VERSION && self.slot_size == 4
    }

    /// Load bias given the descriptor's runtime address.
    pub fn load_bias(&self, runtime_addr: u64) -> u64 {
        runtime_addr.wrapping_sub(self.self_addr)
    }

    /// The descriptor read from its bytes in a file, or `None` when fewer than [`Self::SIZE`]
    /// bytes are given.
    pub fn from_bytes(bytes: &[u8]) -> Option<Descriptor> {
        if bytes.len() < Self::SIZE {
            return None;
        }
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&bytes[..8]);
        let u32_at = |o: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[o..o + 4]);
            u32::from_le_bytes(b)
        };
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[o..o + 8]);
            u64::from_le_bytes(b)
        };
        Some(Descriptor {
            magic,
            version: u32_at(8),
            slot_size: u32_at(12),
            self_addr: u64_at(16),
            table_addr: u64_at(24),
            table_count: u64_at(32),
            islands_addr: u64_at(40),
            islands_count: u64_at(48),
        })
    }

    /// The descriptor's bytes as they lie in a file.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        out[..8].copy_from_slice(&self.magic);
        out[8..12].copy_from_slice(&self.version.to_le_bytes());
        for (field, value) in Self::FILLED_FIELDS.iter().zip(self.filled_values()) {
            out[field.offset..field.offset + field.width]
                .copy_from_slice(&value.to_le_bytes()[..field.width]);
        }
        out
    }

    /// The values of [`Self::FILLED_FIELDS`], in that order.
    pub fn filled_values(&self) -> [u64; 6] {
        [
            u64::from(self.slot_size),
            self.self_addr,
            self.table_addr,
            self.table_count,
            self.islands_addr,
            self.islands_count,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bytes_are_the_in_memory_layout() {
        assert_eq!(core::mem::size_of::<Descriptor>(), Descriptor::SIZE);
        let d = Descriptor {
            slot_size: 4,
            self_addr: 0x1122_3344_5566_7788,
            table_addr: 0x12000,
            table_count: 3,
            islands_addr: 0x13000,
            islands_count: 1,
            ..Descriptor::EMPTY
        };
        let bytes = d.to_bytes();
        assert_eq!(&bytes[..8], b"PADTRIM\0");
        assert_eq!(bytes[12], 4);
        assert_eq!(bytes[16], 0x88);
        assert_eq!(Descriptor::from_bytes(&bytes), Some(d));
        // The file layout is the repr(C) layout on a little-endian target.
        // SAFETY: Descriptor is repr(C) plain old data of SIZE bytes (asserted above); reading
        // its bytes through a byte pointer of that length stays inside the value.
        let raw = unsafe {
            core::slice::from_raw_parts(&d as *const Descriptor as *const u8, Descriptor::SIZE)
        };
        if cfg!(target_endian = "little") {
            assert_eq!(raw, &bytes[..]);
        }
        let last = Descriptor::FILLED_FIELDS[5];
        assert_eq!(last.offset + last.width, Descriptor::SIZE);
        assert_eq!(Descriptor::from_bytes(&bytes[..55]), None);
    }

    #[test]
    fn filled_and_bias() {
        let d = Descriptor {
            self_addr: 0x12000,
            slot_size: 4,
            ..Descriptor::EMPTY
        };
        assert!(d.is_filled());
        assert!(!Descriptor::EMPTY.is_filled());
        assert_eq!(d.load_bias(0x5555_5556_6000 + 0x12000), 0x5555_5556_6000);
    }
}
