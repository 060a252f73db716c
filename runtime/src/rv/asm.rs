//! The assembly parts: the trampoline every patched slot jumps to, the return hook of graph
//! mode, the per-thread pointer (a TLS word, since `#[thread_local]` is not stable), and
//! addresses of linker-defined symbols (weak, so programs without them still link).

use core::arch::{asm, global_asm};

// Trampoline. Entered from a patched slot by `jal t0, padtrim_trampoline` (maybe through an
// island that clobbers only t1): t0 = slot + 4, ra = the traced function's return address,
// sp = its entry sp. The fast path (`fast_entry!`, with the words of `padtrim_fast`) records
// the call without saving a register; the slow path saves what a function may expect at
// entry (a0-a7, fa0-fa7, ra, t2 static chain) plus t0, calls padtrim_on_entry(slot,
// &saved_ra, entry_sp), which may replace the saved ra by padtrim_return_hook, and resumes the
// function with `jr t0`.
// CFI: the "return address" of this frame is t0 (return column), so debuggers and unwinders
// walking out of the handler land in the traced function with its ra restored.
global_asm!(
    ".text",
    ".globl padtrim_trampoline",
    ".type padtrim_trampoline, @function",
    ".p2align 2",
    "padtrim_trampoline:",
    ".cfi_startproc",
    ".cfi_return_column t0",
    "lla t1, padtrim_fast",
    "ld t3, 0(t1)",
    "beqz t3, padtrim_trampoline_slow",
    fast_entry!("8", "16", "24", "padtrim_trampoline_slow"),
    "padtrim_trampoline_slow:",
    "addi sp, sp, -160",
    ".cfi_def_cfa_offset 160",
    "sd ra, 0(sp)",
    "sd t0, 8(sp)",
    "sd t2, 16(sp)",
    ".cfi_offset ra, -160",
    ".cfi_offset t0, -152",
    save_arguments!(),
    "call padtrim_on_entry",
    restore_entry_frame!(),
    ".cfi_def_cfa_offset 0",
    "jr t0",
    ".cfi_endproc",
    ".size padtrim_trampoline, . - padtrim_trampoline",
);

// The words the linked trampoline's fast path reads (`fast_entry!`): the fast flag (0: take
// the slow path; 1: entry mode; -1: graph mode), load bias + 4, the thread pointer offset of
// `padtrim_tls_state`, and the address of `padtrim_return_hook`. Set by `set_fast_words` and
// `update_fast`; hidden, so `lla` reaches it in a shared library too.
global_asm!(
    ".data",
    ".p2align 3",
    ".globl padtrim_fast",
    ".hidden padtrim_fast",
    ".type padtrim_fast, @object",
    "padtrim_fast:",
    ".zero 32",
    ".size padtrim_fast, 32",
    ".text",
);

// Return hook. A traced function "returns" here (graph mode) with sp = its entry sp and its
// results in a0/a1/fa0/fa1. The fast path pops the top shadow frame when it is the one this
// sp entered, writes the exit record and returns to the frame's saved return address, using
// only t1, t3-t6 (free at a return). Otherwise (buffer full or not set up, a frame to resync,
// the state held) padtrim_on_exit(sp) records the exit, pops the shadow frame and gives back
// the real return address, which we put in ra and return to.
// The `nop` before the label keeps `hook - 1` (where unwinders look up a return address)
// inside this function; see rv/unwind.rs for what C++ exceptions do about the hook.
global_asm!(
    ".text",
    ".globl padtrim_return_hook",
    ".type padtrim_return_hook, @function",
    ".p2align 2",
    "padtrim_return_hook_start:",
    ".cfi_startproc",
    // An unwinder that still meets the hook as a return address (see unwind.rs) must stop
    // here rather than loop: the caller's return address is not recoverable from CFI.
    ".cfi_undefined ra",
    "nop",
    "padtrim_return_hook:",
    "la.tls.ie t1, padtrim_tls_state",
    "add t1, t1, tp",
    "ld t1, 0(t1)",
    "li t3, 1",
    "amoor.w.aq t3, t3, (t1)",
    "bnez t3, 2f",
    concat!("ld t5, ", state_offset!(cur), "(t1)"),
    concat!("ld t6, ", state_offset!(end), "(t1)"),
    "addi t5, t5, 24",
    "bltu t6, t5, 1f",
    concat!("lw t3, ", state_offset!(depth), "(t1)"),
    "beqz t3, 1f",
    "addi t3, t3, -1",
    "slli t4, t3, 5",
    "add t4, t4, t1",
    concat!("ld t6, ", state_offset!(frame_sp), "(t4)"),
    "bne t6, sp, 1f",
    concat!("ld ra, ", state_offset!(frame_ret), "(t4)"),
    concat!("ld t6, ", state_offset!(frame_func), "(t4)"),
    "sd t6, -16(t5)",
    "rdtime t6",
    "sd t6, -24(t5)",
    concat!("sd t5, ", state_offset!(cur), "(t1)"),
    concat!("sw t3, ", state_offset!(depth), "(t1)"),
    concat!("ld t6, ", state_offset!(exit_word), "(t1)"),
    "slli t3, t3, 32",
    "or t6, t6, t3",
    "sd t6, -8(t5)",
    "amoswap.w.rl zero, zero, (t1)",
    "ret",
    "1: amoswap.w.rl zero, zero, (t1)",
    "2: addi sp, sp, -48",
    ".cfi_def_cfa_offset 48",
    "sd a0, 0(sp)",
    "sd a1, 8(sp)",
    "fsd fa0, 16(sp)",
    "fsd fa1, 24(sp)",
    "addi a0, sp, 48",
    "call padtrim_on_exit",
    "mv ra, a0",
    "ld a0, 0(sp)",
    "ld a1, 8(sp)",
    "fld fa0, 16(sp)",
    "fld fa1, 24(sp)",
    "addi sp, sp, 48",
    ".cfi_def_cfa_offset 0",
    "ret",
    // The return hook of calls whose return value is recorded (`PADTRIM_ARGS` retval):
    // always through Rust, padtrim_on_exit_ret(sp, a0). In the same function as the hook,
    // so unwinders treat it alike.
    ".globl padtrim_return_hook_ret",
    "padtrim_return_hook_ret:",
    "addi sp, sp, -48",
    ".cfi_def_cfa_offset 48",
    "sd a0, 0(sp)",
    "sd a1, 8(sp)",
    "fsd fa0, 16(sp)",
    "fsd fa1, 24(sp)",
    "mv a1, a0",
    "addi a0, sp, 48",
    "call padtrim_on_exit_ret",
    "mv ra, a0",
    "ld a0, 0(sp)",
    "ld a1, 8(sp)",
    "fld fa0, 16(sp)",
    "fld fa1, 24(sp)",
    "addi sp, sp, 48",
    ".cfi_def_cfa_offset 0",
    "ret",
    ".cfi_endproc",
    ".size padtrim_return_hook, . - padtrim_return_hook",
);

// The trampoline of functions whose arguments are recorded (`PADTRIM_ARGS`): only their
// slots jump here, so the others keep the fast path. Like the slow path of
// `padtrim_trampoline`, calling padtrim_on_entry_args, which reads a0 ... a7 from the frame.
global_asm!(
    ".text",
    ".globl padtrim_args_trampoline",
    ".type padtrim_args_trampoline, @function",
    ".p2align 2",
    "padtrim_args_trampoline:",
    ".cfi_startproc",
    ".cfi_return_column t0",
    "addi sp, sp, -160",
    ".cfi_def_cfa_offset 160",
    "sd ra, 0(sp)",
    "sd t0, 8(sp)",
    "sd t2, 16(sp)",
    ".cfi_offset ra, -160",
    ".cfi_offset t0, -152",
    save_arguments!(),
    "call padtrim_on_entry_args",
    restore_entry_frame!(),
    ".cfi_def_cfa_offset 0",
    "jr t0",
    ".cfi_endproc",
    ".size padtrim_args_trampoline, . - padtrim_args_trampoline",
);

// One pointer per thread (initial-exec TLS: valid in executables and in libraries loaded at
// startup), zero until the thread's first traced call.
// It lives in `.tdata` (8 zero bytes in the file), not `.tbss`: a `.tbss` section shares its
// address with the section after it (it takes no room in the image), which rewriters must
// special-case (`padtrim rewrite` before 9919fb8 refused such PIEs: "read of 8 bytes at ...
// is outside its section"); `.tdata` spares the runtime from depending on that.
global_asm!(
    ".section .tdata,\"awT\",@progbits",
    ".p2align 3",
    ".type padtrim_tls_state, @object",
    "padtrim_tls_state:",
    ".zero 8",
    ".size padtrim_tls_state, 8",
    ".text",
);

extern "C" {
    /// See the global_asm above. Declared for reference only: it is not a C function (it
    /// takes its arguments in t0, ra and sp, as a patched slot enters it), so calling it
    /// from Rust is undefined behaviour; its address comes from `trampoline_addr`.
    pub fn padtrim_trampoline();
    /// See the global_asm above. Declared for reference only, like `padtrim_trampoline`:
    /// only a traced function's `ret` may enter it; see `return_hook_addr`.
    pub fn padtrim_return_hook();
}

/// Runtime address of `padtrim_trampoline`, computed PC-relative (`lla`), never loaded from
/// the GOT: the trampoline is always in the same module as this code, and the hot paths then
/// depend on no GOT word being right (`padtrim rewrite` before 9919fb8 left the GOT word after
/// an initial-exec TLS entry unrelocated, which broke graph mode in static programs).
#[inline(always)]
pub fn trampoline_addr() -> usize {
    let p: usize;
    // SAFETY: `lla` (auipc + addi) only computes an address into the output register: it
    // reads and writes no memory and no stack, as `pure, nomem, nostack` declare. The symbol
    // is defined in this module (above), so the PC-relative reach is the linker's concern.
    unsafe {
        asm!("lla {0}, padtrim_trampoline", out(reg) p, options(pure, nomem, nostack));
    }
    p
}

/// The words of `padtrim_fast` (see the global_asm above): the fast flag, load bias + 4,
/// the thread pointer offset of `padtrim_tls_state`, the return hook's address.
#[inline(always)]
pub fn fast_words() -> &'static [core::sync::atomic::AtomicU64; 4] {
    let p: usize;
    // SAFETY: `lla` only computes the address of `padtrim_fast`, defined above in this module
    // (`pure, nomem, nostack`).
    unsafe {
        asm!("lla {0}, padtrim_fast", out(reg) p, options(pure, nomem, nostack));
    }
    // SAFETY: `padtrim_fast` is 32 bytes of writable, 8-byte aligned data that lives as long
    // as the module, used only as atomics (here and by the fast path's plain loads).
    unsafe { &*(p as *const [core::sync::atomic::AtomicU64; 4]) }
}

/// The offset of this thread's `padtrim_tls_state` from the thread pointer (the same for
/// every thread: initial-exec TLS).
pub fn tls_offset() -> u64 {
    let tp: usize;
    // SAFETY: reads the thread pointer register only.
    unsafe { asm!("mv {0}, tp", out(reg) tp, options(nomem, nostack, preserves_flags)) };
    (tls_slot() as u64).wrapping_sub(tp as u64)
}

/// Runtime address of `padtrim_args_trampoline` (PC-relative, like `trampoline_addr`).
#[inline(always)]
pub fn args_trampoline_addr() -> usize {
    let p: usize;
    // SAFETY: as in `trampoline_addr`: only computes an address (`pure, nomem, nostack`).
    unsafe {
        asm!("lla {0}, padtrim_args_trampoline", out(reg) p, options(pure, nomem, nostack));
    }
    p
}

/// Runtime address of `padtrim_return_hook_ret` (PC-relative, like `trampoline_addr`).
#[inline(always)]
pub fn return_hook_ret_addr() -> usize {
    let p: usize;
    // SAFETY: as in `trampoline_addr`: only computes an address (`pure, nomem, nostack`).
    unsafe {
        asm!("lla {0}, padtrim_return_hook_ret", out(reg) p, options(pure, nomem, nostack));
    }
    p
}

/// Runtime address of `padtrim_return_hook` (PC-relative, like `trampoline_addr`).
#[inline(always)]
pub fn return_hook_addr() -> usize {
    let p: usize;
    // SAFETY: as in `trampoline_addr`: only computes an address (`pure, nomem, nostack`).
    unsafe {
        asm!("lla {0}, padtrim_return_hook", out(reg) p, options(pure, nomem, nostack));
    }
    p
}

/// Runtime address of this module's own `padtrim_descriptor` (PC-relative: in a shared
/// library carrying the runtime, that library's descriptor, not an interposed one).
#[inline(always)]
pub fn descriptor_addr() -> *const crate::descriptor::Descriptor {
    let p: usize;
    // SAFETY: as in `trampoline_addr`: only computes an address (`pure, nomem, nostack`);
    // `padtrim_descriptor` is this crate's own static.
    unsafe {
        asm!("lla {0}, padtrim_descriptor", out(reg) p, options(pure, nomem, nostack));
    }
    p as *const crate::descriptor::Descriptor
}

/// Address of this thread's state pointer: an aligned word of this thread's static TLS
/// block, valid for the thread's whole life and used by no other thread. (Initial-exec
/// TLS: this module was loaded at startup, or `dlopen` found room for it in the static TLS
/// block, since it refuses to load a module whose initial-exec TLS does not fit.)
#[inline(always)]
pub fn tls_slot() -> *mut usize {
    let p: usize;
    // SAFETY: `la.tls.ie` loads the variable's offset from the thread pointer out of the
    // GOT (a read of memory ld.so relocated before any of our code ran and never changes
    // again, hence `pure, readonly`), and `add` adds `tp`; no stack is used.
    unsafe {
        asm!("la.tls.ie {0}, padtrim_tls_state", "add {0}, {0}, tp", out(reg) p,
             options(pure, readonly, nostack));
    }
    p as *mut usize
}

/// Runtime bounds of `__patchable_function_entries` (0, 0 when the program has none).
pub fn pfe_table() -> (usize, usize) {
    let (start, stop): (usize, usize);
    // SAFETY: `la` of a (weak) symbol computes its address, reading it from the GOT in PIC
    // code (relocated by ld.so before our code runs, never changed after: `pure, readonly`);
    // nothing is written, no stack is used. An undefined weak symbol gives 0.
    unsafe {
        asm!(".weak __start___patchable_function_entries",
             ".weak __stop___patchable_function_entries",
             "la {0}, __start___patchable_function_entries",
             "la {1}, __stop___patchable_function_entries",
             out(reg) start, out(reg) stop, options(pure, readonly, nostack));
    }
    (start, stop)
}

/// Runtime address of the program's ELF header (`__ehdr_start`), or 0 if not mapped.
pub fn ehdr_start() -> usize {
    let p: usize;
    // SAFETY: as in `pfe_table`: `la` of a weak symbol, reading at most the GOT.
    unsafe {
        asm!(".weak __ehdr_start", "la {0}, __ehdr_start", out(reg) p, options(pure, readonly, nostack));
    }
    p
}
