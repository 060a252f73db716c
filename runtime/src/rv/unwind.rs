//! C++ exceptions versus the return hook. An unwinder reads each frame's saved return address;
//! for a traced function in graph mode that is `padtrim_return_hook`, whose real caller only
//! the shadow stack knows (DWARF CFI cannot express that lookup). So the runtime interposes
//! the three libgcc entry points that start an unwind (`_Unwind_RaiseException`,
//! `_Unwind_Resume_or_Rethrow`, `_Unwind_ForcedUnwind`; the executable's definitions win over
//! libgcc_s): before forwarding to the real one (found with `dlsym(RTLD_NEXT)`), it writes the
//! real return address back over every saved copy of the hook address in the frames of the
//! thread's hooked calls and marks those frames unhooked. Their exits are then recorded as
//! `ExitUnwound` when the runtime next notices (a traced call or return higher on the stack).
//! Limits: the saved return address must be on the stack inside the function's own frame (what
//! GCC and clang emit); a frame whose copy is not found keeps its hook, and an unwinder that
//! reaches the hook stops there (`.cfi_undefined ra`): the exception ends in std::terminate.
//!
//! The wrappers are weak definitions. In a dynamic program that changes nothing (ld.so does not
//! tell weak from strong, and the executable comes first). A static program links libgcc_eh's
//! strong definitions (glibc pulls `unwind-dw2.o` in), which then win: no interposition, so in
//! graph mode an exception thrown through a hooked frame cannot unwind; startup warns about it
//! (see `interposed`) when the program can throw (`__cxa_throw` is linked).

use core::arch::global_asm;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::{asm, sys};

// Tail-calling wrappers: no frame of ours stays on the stack when the real unwinder starts.
global_asm!(
    ".text",
    ".weak _Unwind_RaiseException",
    ".type _Unwind_RaiseException, @function",
    "_Unwind_RaiseException:",
    "padtrim_unwind_raise:",
    "li t1, 0",
    "j padtrim_unwind_common",
    ".size _Unwind_RaiseException, . - _Unwind_RaiseException",
    ".weak _Unwind_Resume_or_Rethrow",
    ".type _Unwind_Resume_or_Rethrow, @function",
    "_Unwind_Resume_or_Rethrow:",
    "li t1, 1",
    "j padtrim_unwind_common",
    ".size _Unwind_Resume_or_Rethrow, . - _Unwind_Resume_or_Rethrow",
    ".weak _Unwind_ForcedUnwind",
    ".type _Unwind_ForcedUnwind, @function",
    "_Unwind_ForcedUnwind:",
    "li t1, 2",
    "j padtrim_unwind_common",
    ".size _Unwind_ForcedUnwind, . - _Unwind_ForcedUnwind",
    "padtrim_unwind_common:",
    "addi sp, sp, -32",
    "sd a0, 0(sp)",
    "sd ra, 8(sp)",
    "sd a1, 16(sp)",
    "sd a2, 24(sp)",
    "mv a0, t1",
    "addi a1, sp, 32",
    "call padtrim_before_unwind",
    "mv t1, a0",
    "ld a0, 0(sp)",
    "ld ra, 8(sp)",
    "ld a1, 16(sp)",
    "ld a2, 24(sp)",
    "addi sp, sp, 32",
    "jr t1",
);

// `dlsym` is referenced weakly: a static program has no use for it (the wrappers above lose
// there) and would otherwise drag in static dlsym with its link-time warning.
global_asm!(".weak dlsym");

extern "C" {
    fn dlsym(handle: *mut u8, name: *const u8) -> *mut u8;
}

/// Do the wrappers above receive the program's unwinds (false in static programs, where
/// libgcc_eh's own definitions win)?
pub fn interposed() -> bool {
    let (ours, linked): (usize, usize);
    // SAFETY: `lla` computes an address and `la` of a (weak) symbol reads it from the GOT
    // (relocated before our code runs, never changed after: `pure, readonly`); nothing is
    // written, no stack is used.
    unsafe {
        core::arch::asm!("lla {0}, padtrim_unwind_raise", "la {1}, _Unwind_RaiseException",
                         out(reg) ours, out(reg) linked, options(pure, readonly, nostack));
    }
    ours == linked
}

/// Is the C++ `throw` machinery linked in (weak reference to `__cxa_throw`)?
pub fn can_throw() -> bool {
    let p: usize;
    // SAFETY: as in `interposed`: `la` of a weak symbol, reading at most the GOT.
    unsafe {
        core::arch::asm!(".weak __cxa_throw", "la {0}, __cxa_throw", out(reg) p,
                         options(pure, readonly, nostack));
    }
    p != 0
}

/// Is a preloaded padtrim runtime (`rv/preload.rs`) in the process? It exports
/// `padtrim_preloaded`; a static program (no `dlsym`) cannot have one.
pub fn preloaded_runtime() -> bool {
    lookup(core::ptr::null_mut(), b"padtrim_preloaded\0") != 0
}

/// `dlsym(handle, name)` if `dlsym` is linked, else 0. `name` must be NUL-terminated.
pub(crate) fn lookup(handle: *mut u8, name: &[u8]) -> usize {
    if !name.contains(&0) {
        return 0;
    }
    let linked: usize;
    // SAFETY: loads the (weak) address of `dlsym` from the GOT: reads memory, writes none,
    // no stack.
    unsafe {
        core::arch::asm!("la {0}, dlsym", out(reg) linked, options(pure, readonly, nostack));
    }
    if linked == 0 {
        return 0;
    }
    // SAFETY: `dlsym` is linked (its address is not null); `name` is NUL-terminated (checked
    // above) and lives across the call; `handle` is RTLD_DEFAULT, RTLD_NEXT or a handle.
    unsafe { dlsym(handle, name.as_ptr()) as usize }
}

pub(crate) const RTLD_NEXT: *mut u8 = -1isize as *mut u8;
const NAMES: [&[u8]; 3] = [
    b"_Unwind_RaiseException\0",
    b"_Unwind_Resume_or_Rethrow\0",
    b"_Unwind_ForcedUnwind\0",
];
#[allow(clippy::declare_interior_mutable_const)]
const NONE: AtomicUsize = AtomicUsize::new(0);
static REAL: [AtomicUsize; 3] = [NONE; 3];

/// Restore real return addresses on this thread's stack, then return the real libgcc
/// function `which` (0 raise, 1 resume-or-rethrow, 2 forced unwind) for the wrapper to jump to.
///
/// # Safety
/// Only the wrappers above call this, on the thread that starts the unwind, with `sp` the
/// stack pointer at the wrapper's entry; see `restore_return_addresses`.
#[no_mangle]
unsafe extern "C" fn padtrim_before_unwind(which: usize, sp: usize) -> usize {
    // SAFETY: our caller's guarantees are `restore_return_addresses`'s.
    unsafe { restore_return_addresses(sp as u64) };
    let which = which.min(2);
    let mut f = REAL[which].load(Ordering::Relaxed);
    if f == 0 {
        f = lookup(RTLD_NEXT, NAMES[which]);
        if f == 0 {
            sys::fatal(b"padtrim: cannot find the real libgcc unwinder (dlsym RTLD_NEXT)\n");
        }
        REAL[which].store(f, Ordering::Relaxed);
    }
    f
}

/// Write the real return address over the saved hook address in each hooked frame of this
/// thread above `lower`.
///
/// # Safety
/// `lower` must be this thread's stack pointer (or above it, inside a live frame of ours)
/// when an unwind starts, and the thread must run on one stack: the shadow frames' entry
/// sps above `lower` then lie in live frames of this same stack, between `lower` and the
/// stack's top, which are mapped and which no other thread uses. (A thread that switches
/// stacks, e.g. with `swapcontext`, breaks this, as it breaks the shadow stack anyway.)
unsafe fn restore_return_addresses(mut lower: u64) {
    let slot = asm::tls_slot();
    // SAFETY: `tls_slot` is this thread's own TLS word, valid and aligned.
    if unsafe { *slot } <= 1 {
        return; // this thread never traced anything
    }
    let st = match super::thread_state() {
        Some(s) => s,
        None => return,
    };
    // SAFETY: `thread_state` is this thread's own state, and this is its unwinder, which
    // runs with the state held by this thread only if the holder was abandoned (see
    // `hold_as_owner`).
    let mut st = unsafe { st.hold_as_owner() };
    let hook = asm::return_hook_addr() as u64;
    let hook_ret = asm::return_hook_ret_addr() as u64;
    for i in (0..st.depth as usize).rev() {
        let f = st.frames[i];
        if f.hooked != 0 && f.sp > lower {
            // GCC and clang save ra at entry_sp - 8; search the rest of the frame if not.
            let mut at = f.sp - 8;
            while at >= lower {
                let p = at as *mut u64;
                // SAFETY: `lower` <= `at` < `f.sp`, 8-aligned (entry sps are 16-aligned by
                // the ABI, `lower` is a stack pointer): by our contract a word of a live
                // frame of this thread's stack, above our own frame, used by no other thread
                // and by no code of this thread while we run. We replace only a word holding
                // the hook address (the return address we swapped in for this frame, as the
                // function saved it) by the address it replaced.
                let v = unsafe { core::ptr::read_volatile(p) };
                if v == hook || v == hook_ret {
                    // SAFETY: as above.
                    unsafe { core::ptr::write_volatile(p, f.ret) };
                    st.frames[i].hooked = 0;
                    break;
                }
                at -= 8;
            }
        }
        lower = lower.max(f.sp);
    }
}
