//! Finding the slot table (descriptor first, `__patchable_function_entries` as fallback) and
//! patching slots: one aligned 32-bit store each, text writable only while being patched.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::{asm, sys};
use crate::descriptor::{
    decode_island, decode_jal_t0, encode_jal_t0, pick_target, Descriptor, NOP,
};
pub use crate::format::TableSource;

const PAGE: usize = 4096;

/// The process's slot table, found once at startup.
#[derive(Clone, Copy, Debug)]
pub struct Slots {
    /// Where the table came from.
    pub source: TableSource,
    /// Runtime address of the first pointer-sized entry.
    pub table: usize,
    /// Number of entries.
    pub count: usize,
    /// Entries are link-time addresses (descriptor) and need `bias` added, or are
    /// already relocated (fallback table).
    pub add_bias: bool,
    /// Runtime minus link-time address.
    pub bias: u64,
    /// Runtime address of the island table (link-time entries), or 0.
    pub islands: usize,
    /// Number of islands.
    pub islands_count: usize,
}

impl Slots {
    /// Runtime address of slot `i`.
    pub fn slot(&self, i: usize) -> usize {
        let v = unsafe { core::ptr::read((self.table as *const u64).add(i)) };
        if self.add_bias {
            v.wrapping_add(self.bias) as usize
        } else {
            v as usize
        }
    }

    fn islands(&self) -> &'static [u64] {
        if self.islands == 0 || self.islands_count == 0 {
            return &[];
        }
        unsafe { core::slice::from_raw_parts(self.islands as *const u64, self.islands_count) }
    }
}

/// Locate the slot table: a filled descriptor wins; else the linker's
/// `__start/__stop___patchable_function_entries` with the bias from the ELF header.
pub fn find_slots(desc: *const Descriptor) -> Slots {
    let d = unsafe { core::ptr::read_volatile(desc) };
    if d.is_filled() {
        let bias = d.load_bias(desc as u64);
        return Slots {
            source: TableSource::Descriptor,
            table: d.table_addr.wrapping_add(bias) as usize,
            count: d.table_count as usize,
            add_bias: true,
            bias,
            islands: if d.islands_addr == 0 {
                0
            } else {
                d.islands_addr.wrapping_add(bias) as usize
            },
            islands_count: d.islands_count as usize,
        };
    }
    let (start, stop) = asm::pfe_table();
    let count = if start != 0 && stop > start {
        (stop - start) / 8
    } else {
        0
    };
    Slots {
        source: if count > 0 {
            TableSource::PatchableEntries
        } else {
            TableSource::None
        },
        table: start,
        count,
        add_bias: false,
        bias: load_bias_from_ehdr(),
        islands: 0,
        islands_count: 0,
    }
}

/// Bias from the mapped ELF header: its runtime address minus the link-time address of the
/// PT_LOAD that maps file offset 0 (0 for non-PIE executables).
fn load_bias_from_ehdr() -> u64 {
    let base = asm::ehdr_start();
    if base == 0 {
        return 0;
    }
    unsafe {
        let rd16 = |off: usize| core::ptr::read_unaligned((base + off) as *const u16) as usize;
        let rd64 = |off: usize| core::ptr::read_unaligned((base + off) as *const u64) as usize;
        let phoff = rd64(0x20);
        let phentsize = rd16(0x36);
        let phnum = rd16(0x38);
        for i in 0..phnum {
            let ph = phoff + i * phentsize;
            let kind = core::ptr::read_unaligned((base + ph) as *const u32);
            let offset = rd64(ph + 8);
            let vaddr = rd64(ph + 16);
            if kind == 1 && offset == 0 {
                return (base as u64).wrapping_sub(vaddr as u64);
            }
        }
    }
    0
}

/// Does the island at runtime address `at` jump to `tramp`?
fn island_reaches(at: u64, tramp: u64) -> bool {
    if at & 3 != 0 {
        return false;
    }
    let (first, second) = unsafe {
        (
            core::ptr::read_volatile(at as *const u32),
            core::ptr::read_volatile((at + 4) as *const u32),
        )
    };
    decode_island(at, first, second) == Some(tramp)
}

/// Counts from a patching pass.
#[derive(Clone, Copy, Debug, Default)]
pub struct PatchStats {
    /// Slots now holding a `jal t0`.
    pub patched: u64,
    /// Slots left alone: not a 4-byte aligned `nop`, or no trampoline/island in reach.
    pub skipped: u64,
}

/// Held by the one `Patcher` alive at a time. Two threads patching slots in the same page
/// would undo each other's `mprotect`: one makes the page read-only again while the other is
/// about to store into it (SIGSEGV).
static PATCHING: AtomicBool = AtomicBool::new(false);

/// Batches writes to text: keeps one page writable at a time (RW+X, so other threads can
/// still run code there), restores R+X before moving on, and flushes the icache once.
/// Only one exists at a time in the process: `begin` waits for the previous one to be gone.
pub struct Patcher {
    page: usize,
    lo: usize,
    hi: usize,
    /// What happened so far.
    pub stats: PatchStats,
}

impl Patcher {
    /// Nothing writable yet; waits until no other thread is patching.
    pub fn begin() -> Patcher {
        while PATCHING
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        Patcher {
            page: 0,
            lo: usize::MAX,
            hi: 0,
            stats: PatchStats::default(),
        }
    }

    fn make_writable(&mut self, addr: usize) -> bool {
        let page = addr & !(PAGE - 1);
        if page == self.page {
            return true;
        }
        self.restore();
        if sys::mprotect(
            page,
            PAGE,
            sys::PROT_READ | sys::PROT_WRITE | sys::PROT_EXEC,
        ) != 0
        {
            return false;
        }
        self.page = page;
        true
    }

    fn restore(&mut self) {
        if self.page != 0 {
            sys::mprotect(self.page, PAGE, sys::PROT_READ | sys::PROT_EXEC);
            self.page = 0;
        }
    }

    fn store(&mut self, addr: usize, insn: u32) -> bool {
        if !self.make_writable(addr) {
            return false;
        }
        unsafe { (*(addr as *const AtomicU32)).store(insn, Ordering::Relaxed) };
        self.lo = self.lo.min(addr);
        self.hi = self.hi.max(addr + 4);
        true
    }

    /// Turn the `nop` at `slot` into `jal t0, trampoline-or-island`. An island is used only
    /// if it really forwards to the trampoline (a wrong island table must not send traced
    /// functions elsewhere).
    pub fn enable(&mut self, slots: &Slots, slot: usize) -> bool {
        let ok = slot & 3 == 0 && unsafe { core::ptr::read_volatile(slot as *const u32) } == NOP;
        let tramp = asm::trampoline_addr() as u64;
        let insn = if ok {
            pick_target(slot as u64, tramp, slots.islands(), slots.bias)
                .filter(|&t| t == tramp || island_reaches(t, tramp))
                .and_then(|t| encode_jal_t0(slot as u64, t))
        } else {
            None
        };
        match insn {
            Some(i) if self.store(slot, i) => {
                self.stats.patched += 1;
                true
            }
            _ => {
                self.stats.skipped += 1;
                false
            }
        }
    }

    /// Put the `nop` back if `slot` holds a `jal t0` to the trampoline or an island.
    pub fn disable(&mut self, slots: &Slots, slot: usize) -> bool {
        if slot & 3 != 0 {
            return false;
        }
        let insn = unsafe { core::ptr::read_volatile(slot as *const u32) };
        let target = match decode_jal_t0(slot as u64, insn) {
            Some(t) => t,
            None => return false,
        };
        let tramp = asm::trampoline_addr() as u64;
        let is_ours = target == tramp
            || slots
                .islands()
                .iter()
                .any(|&i| i.wrapping_add(slots.bias) == target);
        is_ours && self.store(slot, NOP)
    }

    /// Restore page protections, make the new instructions visible to all harts, and let
    /// other threads patch.
    pub fn finish(self) -> PatchStats {
        self.stats
    }

    fn publish(&mut self) {
        self.restore();
        if self.lo < self.hi {
            sys::flush_icache(self.lo, self.hi);
        }
        self.lo = usize::MAX;
        self.hi = 0;
    }
}

impl Drop for Patcher {
    fn drop(&mut self) {
        self.publish();
        PATCHING.store(false, Ordering::Release);
    }
}
