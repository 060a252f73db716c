//! Finding the slot table (descriptor first, `__patchable_function_entries` as fallback) and
//! patching slots: one aligned 32-bit store each, text writable only while being patched.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::{asm, sys};
use crate::descriptor::{decode_island, decode_jal_t0, encode_jal_t0, pick_target, NOP};
pub use crate::format::TableSource;

const PAGE: usize = 4096;

/// The process's slot table, found once at startup.
///
/// Invariant (what makes `slot` and `islands` sound): `table` is the runtime address of
/// `count` 8-byte aligned `u64`s, and `islands` of `islands_count` of them, that stay mapped
/// and unchanged for the life of the process. The fields are private so that only
/// `find_slots` builds a `Slots`; see there for why the addresses it takes hold that.
#[derive(Clone, Copy, Debug)]
pub struct Slots {
    /// Where the table came from.
    pub source: TableSource,
    /// Runtime address of the first pointer-sized entry.
    table: usize,
    /// Number of entries.
    count: usize,
    /// Entries are link-time addresses (descriptor) and need `bias` added, or are
    /// already relocated (fallback table).
    pub add_bias: bool,
    /// Runtime minus link-time address.
    pub bias: u64,
    /// Runtime address of the island table (link-time entries), or 0.
    islands: usize,
    /// Number of islands.
    islands_count: usize,
}

impl Slots {
    /// Number of slots in the table.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Number of islands in the island table.
    pub fn islands_count(&self) -> usize {
        self.islands_count
    }

    /// Runtime address of slot `i` (0 for an entry the linker left empty). Panics (a fatal
    /// error in the runtime) if `i` is not below `count()`.
    pub fn slot(&self, i: usize) -> usize {
        assert!(i < self.count, "slot index out of range");
        // SAFETY: `i < count`, and by the type's invariant the `count` entries from `table`
        // are mapped, aligned, initialised `u64`s that nothing writes.
        let v = unsafe { core::ptr::read((self.table as *const u64).add(i)) };
        if self.add_bias {
            v.wrapping_add(self.bias) as usize
        } else {
            v as usize
        }
    }

    /// The instruction word in slot `i`, or `None` when the slot cannot hold a 4-byte slot
    /// instruction (empty entry, or not 4-byte aligned: a pad of compressed `c.nop`s).
    pub fn instruction(&self, i: usize) -> Option<u32> {
        let at = self.slot(i);
        if at == 0 || at & 3 != 0 {
            return None;
        }
        Some(read_slot(at))
    }

    fn islands(&self) -> &'static [u64] {
        if self.islands == 0 || self.islands_count == 0 {
            return &[];
        }
        // SAFETY: by the type's invariant, `islands_count` aligned `u64`s at `islands` stay
        // mapped and unchanged for the life of the process (hence `'static`), and nothing
        // writes them.
        unsafe { core::slice::from_raw_parts(self.islands as *const u64, self.islands_count) }
    }
}

/// The instruction word in the slot at `at`, a non-empty, 4-byte aligned entry of the slot
/// table.
fn read_slot(at: usize) -> u32 {
    debug_assert!(at != 0 && at & 3 == 0);
    // SAFETY: `at` is 4-byte aligned and not null (callers check); by the slot table
    // contract (see `find_slots`) a non-empty entry is the address of a function entry in
    // the program's text, which stays mapped and readable for the life of the process. The
    // load is atomic because another thread may be patching that word (`Patcher::store`, an
    // atomic store); a relaxed atomic load of read-only memory is allowed.
    unsafe { (*(at as *const AtomicU32)).load(Ordering::Relaxed) }
}

/// Can `count` 8-byte entries at runtime address `at` be a table (not null, aligned, no
/// wrap-around)? This cannot prove the memory is mapped (that is the rewriter's and the
/// linker's part of the contract); it refuses addresses no correct table can have.
fn table_shape_ok(at: usize, count: usize) -> bool {
    at != 0
        && at % 8 == 0
        && count
            .checked_mul(8)
            .and_then(|n| at.checked_add(n))
            .is_some()
}

/// Locate this module's slot table: a filled descriptor wins; else the linker's
/// `__start/__stop___patchable_function_entries` with the bias from the ELF header.
///
/// The slot table contract, which the resulting `Slots` relies on:
/// - descriptor: `padtrim rewrite` put the sorted `__mcount_loc` table (`table_count`
///   entries) and, right after it, the island table (`islands_count` entries) in a loaded
///   segment of this module, 8-byte aligned (`padtrim verify` checks what it wrote);
/// - fallback: the linker's section bounds enclose the compiler's 8-byte aligned table of
///   relocated entry addresses, in a loaded segment.
///
/// Tables with an address no correct table can have (null, misaligned, wrapping) are
/// treated as empty.
pub fn find_slots() -> Slots {
    let desc = asm::descriptor_addr();
    // SAFETY: `desc` is this module's own `padtrim_descriptor` (a static: aligned, mapped
    // and initialised for the life of the process) and nothing writes it at run time. The
    // read is volatile because the rewriter changed the bytes in the file after the compiler
    // saw the initialiser.
    let d = unsafe { core::ptr::read_volatile(desc) };
    if d.is_filled() {
        let bias = d.load_bias(desc as u64);
        let table = d.table_addr.wrapping_add(bias) as usize;
        let islands = d.islands_addr.wrapping_add(bias) as usize;
        let (count, islands_count) = (d.table_count as usize, d.islands_count as usize);
        let islands_ok = d.islands_addr != 0 && table_shape_ok(islands, islands_count);
        return Slots {
            source: TableSource::Descriptor,
            table,
            count: if table_shape_ok(table, count) {
                count
            } else {
                0
            },
            add_bias: true,
            bias,
            islands: if islands_ok { islands } else { 0 },
            islands_count: if islands_ok { islands_count } else { 0 },
        };
    }
    let (start, stop) = asm::pfe_table();
    let count = if start != 0 && stop > start {
        (stop - start) / 8
    } else {
        0
    };
    let count = if table_shape_ok(start, count) {
        count
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
/// PT_LOAD that maps file offset 0 (0 for non-PIE executables, or when there is no header
/// to read).
fn load_bias_from_ehdr() -> u64 {
    const EHDR_SIZE: usize = 64;
    const PHDR_SIZE: usize = 56;
    let base = asm::ehdr_start();
    if base == 0 {
        return 0;
    }
    // SAFETY: the linker defines `__ehdr_start` only when the ELF file header is part of a
    // loaded segment, so its 64 bytes are mapped and readable at `base` for the life of the
    // process (and never written). Unaligned reads: no alignment is assumed.
    let header = unsafe { core::ptr::read_unaligned(base as *const [u8; EHDR_SIZE]) };
    let rd16 = |b: &[u8], off: usize| u16::from_le_bytes([b[off], b[off + 1]]) as usize;
    let rd64 = |b: &[u8], off: usize| {
        let mut v = [0u8; 8];
        v.copy_from_slice(&b[off..off + 8]);
        u64::from_le_bytes(v)
    };
    // ELF64 little-endian, with the program header entry size the kernel and ld.so insist
    // on (they refuse to load anything else, so this module was not loaded from one).
    if header[..6] != *b"\x7fELF\x02\x01" || rd16(&header, 0x36) != PHDR_SIZE {
        return 0;
    }
    let phoff = rd64(&header, 0x20) as usize;
    let phnum = rd16(&header, 0x38);
    for i in 0..phnum {
        // SAFETY: GNU ld and lld, whenever they load the file header, put the program
        // headers right after it in the same segment (ld.so needs them mapped), so the
        // `phnum` entries of 56 bytes at `base + phoff` are mapped and readable; the module
        // was loaded from this header, which ld.so checked. Unaligned read, never written.
        let ph = unsafe {
            core::ptr::read_unaligned((base + phoff + i * PHDR_SIZE) as *const [u8; PHDR_SIZE])
        };
        let kind = u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]);
        if kind == 1 && rd64(&ph, 8) == 0 {
            return (base as u64).wrapping_sub(rd64(&ph, 16));
        }
    }
    0
}

/// Does the island at runtime address `at` jump to `tramp`?
fn island_reaches(at: u64, tramp: u64) -> bool {
    if at & 3 != 0 {
        return false;
    }
    // SAFETY: `at` is 4-byte aligned and, by the slot table contract (see `find_slots`), an
    // entry of the island table: the address of an 8-byte island the rewriter wrote into
    // this module's text, mapped and readable for the life of the process. Nothing writes
    // islands at run time.
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
        let rwx = sys::PROT_READ | sys::PROT_WRITE | sys::PROT_EXEC;
        // SAFETY: `addr` is a slot, so (slot table contract, see `find_slots`) its page is
        // text, mapped R+X; adding write and keeping read and execute allows every access
        // that was allowed before, including other threads running code in the page.
        if unsafe { sys::mprotect(page, PAGE, rwx) } != 0 {
            return false;
        }
        self.page = page;
        true
    }

    fn restore(&mut self) {
        if self.page != 0 {
            // SAFETY: `make_writable` made this page of text (R+X before) writable; this
            // puts R+X back. Only patchers write text, and the `PATCHING` lock makes this
            // one the only patcher, so no store into the page follows until a patcher makes
            // it writable again.
            unsafe { sys::mprotect(self.page, PAGE, sys::PROT_READ | sys::PROT_EXEC) };
            self.page = 0;
        }
    }

    /// Store `insn` into slot `i`, whose current instruction `Slots::instruction` read (so
    /// the slot is 4-byte aligned and not empty).
    fn store(&mut self, slots: &Slots, i: usize, insn: u32) -> bool {
        self.store_at(slots.slot(i), insn)
    }

    /// `store` of the slot at runtime address `addr`, an entry of the slot table.
    fn store_at(&mut self, addr: usize, insn: u32) -> bool {
        if addr == 0 || addr & 3 != 0 || !self.make_writable(addr) {
            return false;
        }
        // SAFETY: `addr` is a non-empty, 4-byte aligned entry of the slot table, so (by the
        // table contract, see `find_slots`) a slot in this module's text, mapped for the life
        // of the process; `make_writable` has just made its page writable, and the page stays
        // so until `restore`, which only this `Patcher` calls: the `PATCHING` lock keeps every
        // other patcher out. The store is atomic (one aligned 32-bit store) because other
        // threads may be reading the word (`Slots::instruction`) or executing it: they see the
        // old or the new instruction, never a mix.
        unsafe { (*(addr as *const AtomicU32)).store(insn, Ordering::Relaxed) };
        self.lo = self.lo.min(addr);
        self.hi = self.hi.max(addr + 4);
        true
    }

    /// Turn the `nop` in slot `i` into `jal t0, trampoline-or-island`. An island is used
    /// only if it really forwards to the trampoline (a wrong island table must not send
    /// traced functions elsewhere).
    pub fn enable(&mut self, slots: &Slots, i: usize) -> bool {
        // The slot's address is read from the table once (startup patches every slot).
        let slot = slots.slot(i);
        let tramp = asm::trampoline_addr() as u64;
        let insn = if slot != 0 && slot & 3 == 0 && read_slot(slot) == NOP {
            let slot = slot as u64;
            encode_jal_t0(slot, tramp).or_else(|| {
                pick_target(slot, tramp, slots.islands(), slots.bias)
                    .filter(|&t| t == tramp || island_reaches(t, tramp))
                    .and_then(|t| encode_jal_t0(slot, t))
            })
        } else {
            None
        };
        match insn {
            Some(insn) if self.store_at(slot, insn) => {
                self.stats.patched += 1;
                true
            }
            _ => {
                self.stats.skipped += 1;
                false
            }
        }
    }

    /// Turn the `nop` in slot `i` into `jal t0, target` (`target` in direct reach: islands
    /// forward to the trampoline only).
    pub fn enable_to(&mut self, slots: &Slots, i: usize, target: u64) -> bool {
        let slot = slots.slot(i);
        let insn = if slot != 0 && slot & 3 == 0 && read_slot(slot) == NOP {
            encode_jal_t0(slot as u64, target)
        } else {
            None
        };
        match insn {
            Some(insn) if self.store_at(slot, insn) => {
                self.stats.patched += 1;
                true
            }
            _ => false,
        }
    }

    /// Put the `nop` back if slot `i` holds a `jal t0` to the trampoline or an island.
    pub fn disable(&mut self, slots: &Slots, i: usize) -> bool {
        let slot = slots.slot(i) as u64;
        let target = match slots
            .instruction(i)
            .and_then(|insn| decode_jal_t0(slot, insn))
        {
            Some(t) => t,
            None => return false,
        };
        let tramp = asm::trampoline_addr() as u64;
        let is_ours = target == tramp
            || target == asm::args_trampoline_addr() as u64
            || slots
                .islands()
                .iter()
                .any(|&isl| isl.wrapping_add(slots.bias) == target);
        is_ours && self.store(slots, i, NOP)
    }

    /// Store the 32-bit `word` at runtime address `addr` of a module's text.
    ///
    /// # Safety
    /// `addr` must be 4-byte aligned and lie in a file-backed page of text (mapped R+X by
    /// the loader, for as long as the module stays loaded), and the word must be one that no
    /// code relies on holding anything else: a slot (`nop` or `jal t0`) or bytes past the end
    /// of a text segment that nothing uses. Other threads may execute or read it meanwhile:
    /// they see the old or the new word (an aligned 32-bit store).
    pub unsafe fn store_word(&mut self, addr: usize, word: u32) -> bool {
        if addr == 0 || addr & 3 != 0 || !self.make_writable(addr) {
            return false;
        }
        // SAFETY: our contract; `make_writable` made the page writable until `restore`, which
        // only this `Patcher` (the only one alive: `PATCHING`) calls.
        unsafe { (*(addr as *const AtomicU32)).store(word, Ordering::Relaxed) };
        self.lo = self.lo.min(addr);
        self.hi = self.hi.max(addr + 4);
        true
    }

    /// Make what was stored so far visible to instruction fetch on every hart (page
    /// protections restored), before anything jumps to it.
    pub fn publish_now(&mut self) {
        self.publish();
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

/// Keep every `Patcher` out across `fork` (the `PATCHING` lock would stay taken forever in
/// the child if another thread held it at the fork); `unlock_after_fork` lets them in again.
pub fn lock_for_fork() {
    while PATCHING
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
}

/// See `lock_for_fork` (in the parent and in the child after the fork).
pub fn unlock_after_fork() {
    PATCHING.store(false, Ordering::Release);
}

impl Drop for Patcher {
    fn drop(&mut self) {
        self.publish();
        PATCHING.store(false, Ordering::Release);
    }
}
