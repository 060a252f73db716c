//! The process side: startup (`.init_array`), the entry/exit handlers the assembly calls,
//! per-thread state, trace output, the exit flush (`.fini_array`) and the C API.

/// The middle of every entry trampoline's slow path (the linked ones in `asm`, the
/// per-module copies in `preload`), after it has made the 160-byte entry frame and saved ra,
/// t0 and t2: save the argument registers, then load `padtrim_on_entry`'s arguments (the
/// slot's address, the frame, the entry sp). [`restore_entry_frame`] undoes it.
macro_rules! save_arguments {
    () => {
        concat!(
            "sd a0, 24(sp)\n",
            "sd a1, 32(sp)\n",
            "sd a2, 40(sp)\n",
            "sd a3, 48(sp)\n",
            "sd a4, 56(sp)\n",
            "sd a5, 64(sp)\n",
            "sd a6, 72(sp)\n",
            "sd a7, 80(sp)\n",
            "fsd fa0, 88(sp)\n",
            "fsd fa1, 96(sp)\n",
            "fsd fa2, 104(sp)\n",
            "fsd fa3, 112(sp)\n",
            "fsd fa4, 120(sp)\n",
            "fsd fa5, 128(sp)\n",
            "fsd fa6, 136(sp)\n",
            "fsd fa7, 144(sp)\n",
            "addi a0, t0, -4\n",
            "mv a1, sp\n",
            "addi a2, sp, 160"
        )
    };
}

/// The end of every entry trampoline (the linked one in `asm`, the per-module copies in
/// `preload`): reload the registers the 160-byte entry frame saved, and pop it.
macro_rules! restore_entry_frame {
    () => {
        concat!(
            "ld ra, 0(sp)\n",
            "ld t0, 8(sp)\n",
            "ld t2, 16(sp)\n",
            "ld a0, 24(sp)\n",
            "ld a1, 32(sp)\n",
            "ld a2, 40(sp)\n",
            "ld a3, 48(sp)\n",
            "ld a4, 56(sp)\n",
            "ld a5, 64(sp)\n",
            "ld a6, 72(sp)\n",
            "ld a7, 80(sp)\n",
            "fld fa0, 88(sp)\n",
            "fld fa1, 96(sp)\n",
            "fld fa2, 104(sp)\n",
            "fld fa3, 112(sp)\n",
            "fld fa4, 120(sp)\n",
            "fld fa5, 128(sp)\n",
            "fld fa6, 136(sp)\n",
            "fld fa7, 144(sp)\n",
            "addi sp, sp, 160"
        )
    };
}

/// The fast path of every entry trampoline (the linked one in `asm`, the per-module copies in
/// `preload`), in assembly: records an entry without saving a register or calling Rust.
/// Entered with t0 = slot + 4, ra = the traced function's return address, sp = its entry sp,
/// t1 = the base of the trampoline's words, t3 = the fast flag (not 0: 1 = entry mode, -1 =
/// graph mode). The words at `$k`, `$tls` and `$hook` from t1: the number to subtract from
/// t0 to get the function's address as the trace has it (load bias + 4, minus the module
/// tag), the thread pointer offset of `padtrim_tls_state`, and `padtrim_return_hook`.
/// Clobbers only t1, t3-t6 (free at a function's entry); jumps to `$slow` with every other
/// register as it was at entry when the thread has no state yet, its buffer is full, its
/// shadow stack needs more than pushing a frame, or ra is 0.
///
/// Entry mode: pops the frames a call at this sp ends (the shadow stack only tracks depth),
/// pushes this one, and writes the 24-byte record with 3 stores. Graph mode: pushes a hooked
/// frame (sp, ret, func) and swaps the return hook into ra. The state is held for the time
/// of it with one `amoor` (`busy`: see `ThreadState`); if anyone holds it (a signal handler
/// interrupted the thread inside a handler, or another thread flushes the buffer at exit),
/// the call is not recorded, as on the Rust path.
macro_rules! fast_entry {
    ($k:literal, $tls:literal, $hook:literal, $slow:literal) => {
        concat!(
            "ld t4, ",
            $tls,
            "(t1)\n",
            "add t4, t4, tp\n",
            "ld t4, 0(t4)\n", // the thread's state (0: none yet, 1: none to be had)
            "li t5, 2\n",
            "bltu t4, t5, ",
            $slow,
            "\n",
            "li t5, 1\n",
            "amoor.w.aq t5, t5, (t4)\n", // hold it (busy = HELD_BY_OWNER) if free
            "bnez t5, 8f\n",
            "ld t5, ",
            $k,
            "(t1)\n",
            "bltz t3, 5f\n",
            // Entry mode. t1 = func, t5 = cur + 24 (the record goes below it).
            "sub t1, t0, t5\n",
            "ld t5, ",
            state_offset!(cur),
            "(t4)\n",
            "ld t6, ",
            state_offset!(end),
            "(t4)\n",
            "addi t5, t5, 24\n",
            "bltu t6, t5, 7f\n",
            "sd t1, -16(t5)\n",
            "rdtime t1\n",
            "sd t1, -24(t5)\n",
            "sd t5, ",
            state_offset!(cur),
            "(t4)\n",
            "lw t3, ",
            state_offset!(depth),
            "(t4)\n",
            "slli t6, t3, 5\n",
            "add t6, t6, t4\n",
            // Pop the frames this call ends (their sp is not above ours).
            "1: beqz t3, 2f\n",
            "ld t1, ",
            state_offset!(top_sp),
            "(t6)\n",
            "bltu sp, t1, 2f\n",
            "addi t3, t3, -1\n",
            "addi t6, t6, -32\n",
            "j 1b\n",
            "2: li t1, 1024\n", // MAX_DEPTH
            "bgeu t3, t1, 4f\n",
            "sd sp, ",
            state_offset!(frame_sp),
            "(t6)\n",
            "addi t1, t3, 1\n",
            "sw t1, ",
            state_offset!(depth),
            "(t4)\n",
            "3: ld t1, ",
            state_offset!(entry_word),
            "(t4)\n",
            "slli t3, t3, 32\n",
            "or t1, t1, t3\n",
            "sd t1, -8(t5)\n",
            "amoswap.w.rl zero, zero, (t4)\n", // give the state back
            "jr t0\n",
            "4: sw t3, ",
            state_offset!(depth),
            "(t4)\n",
            "j 3b\n",
            // Graph mode. t3 = func, t5 = cur + 24, t6 = depth, t1 = frame base.
            "5: sub t3, t0, t5\n",
            "ld t5, ",
            state_offset!(cur),
            "(t4)\n",
            "ld t6, ",
            state_offset!(end),
            "(t4)\n",
            "addi t5, t5, 24\n",
            "bltu t6, t5, 7f\n",
            "beqz ra, 7f\n",
            "lw t6, ",
            state_offset!(depth),
            "(t4)\n",
            "sd t3, -16(t5)\n", // written before the record is, kept only if it is
            "li t3, 1024\n",
            "bgeu t6, t3, 7f\n",
            "slli t3, t6, 5\n",
            "add t3, t3, t4\n",
            "sd ra, ",
            state_offset!(frame_ret),
            "(t3)\n",
            "beqz t6, 6f\n",
            "ld ra, ",
            state_offset!(top_sp),
            "(t3)\n",
            "bltu ra, sp, 9f\n", // a frame below ours is dead (longjmp): Rust records it
            "6: sd sp, ",
            state_offset!(frame_sp),
            "(t3)\n",
            "sd sp, ",
            state_offset!(frame_hooked),
            "(t3)\n",
            "ld ra, -16(t5)\n",
            "sd ra, ",
            state_offset!(frame_func),
            "(t3)\n",
            "rdtime ra\n",
            "sd ra, -24(t5)\n",
            "sd t5, ",
            state_offset!(cur),
            "(t4)\n",
            "ld ra, ",
            state_offset!(entry_word),
            "(t4)\n",
            "slli t3, t6, 32\n",
            "or ra, ra, t3\n",
            "sd ra, -8(t5)\n",
            "addi t6, t6, 1\n",
            "sw t6, ",
            state_offset!(depth),
            "(t4)\n",
            "ld ra, ",
            $hook,
            "(t1)\n",
            "amoswap.w.rl zero, zero, (t4)\n",
            "jr t0\n",
            "9: ld ra, ",
            state_offset!(frame_ret),
            "(t3)\n",
            "7: amoswap.w.rl zero, zero, (t4)\n",
            "j ",
            $slow,
            "\n",
            "8: jr t0\n", // held: not recorded
        )
    };
}

pub mod asm;
pub mod patch;
#[cfg(padtrim_preload)]
mod preload;
// The linked-in start-up and the static-program unwinder checks are not used by the
// preloaded build, which shares the rest of these modules.
#[cfg_attr(padtrim_preload, allow(dead_code, unused_imports))]
mod startup;
pub mod sys;
#[cfg_attr(padtrim_preload, allow(dead_code))]
mod unwind;

use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::descriptor::Descriptor;
use crate::format::{Kind, Mode, Record};
use crate::thread::{CallArgs, ThreadState, HELD_BY_OTHER, HELD_BY_OWNER};

/// Filled in the file by `padtrim rewrite` (it must live in `.data`, not `.bss`).
#[no_mangle]
#[used]
#[link_section = ".data.padtrim_descriptor"]
pub static mut padtrim_descriptor: Descriptor = Descriptor::EMPTY;

/// Threads that can hold a state at the same time (dead threads' states are reused).
const MAX_THREADS: usize = 256;
/// Marks a thread that could not get a state (never traced).
const NO_STATE: usize = 1;
/// Functions that can have a registered handler.
const MAX_HANDLERS: usize = 64;
/// A registered handler: `padtrim_handler` in padtrim.h.
type Handler = extern "C" fn(*const u8, *const u8);

static MODE: AtomicU32 = AtomicU32::new(0);
static ENABLED: AtomicBool = AtomicBool::new(false);
static FINISHED: AtomicBool = AtomicBool::new(false);
static TRACE_FD: AtomicI32 = AtomicI32::new(-1);
static PID: AtomicU32 = AtomicU32::new(0);
static BIAS: AtomicU64 = AtomicU64::new(0);
static LOST: AtomicU64 = AtomicU64::new(0);
static THREADS: [AtomicUsize; MAX_THREADS] = [ZERO_USIZE; MAX_THREADS];
#[allow(clippy::declare_interior_mutable_const)]
const ZERO_USIZE: AtomicUsize = AtomicUsize::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const ZERO_U64: AtomicU64 = AtomicU64::new(0);
static HANDLER_FN: [AtomicU64; MAX_HANDLERS] = [ZERO_U64; MAX_HANDLERS];
static HANDLER_CB: [AtomicU64; MAX_HANDLERS] = [ZERO_U64; MAX_HANDLERS];
static HANDLER_COUNT: AtomicU32 = AtomicU32::new(0);
static HANDLER_LOCK: AtomicBool = AtomicBool::new(false);

fn mode() -> Mode {
    Mode::from_u32(MODE.load(Ordering::Relaxed)).unwrap_or(Mode::Off)
}

#[cfg_attr(padtrim_preload, allow(dead_code))]
/// Set the fast paths' words that do not change once tracing starts (the linked trampoline's:
/// `bias` is the program's load bias). Call before `update_fast` first turns them on.
pub(crate) fn set_fast_words(bias: u64) {
    let w = asm::fast_words();
    w[1].store(bias.wrapping_add(4), Ordering::Relaxed);
    w[2].store(asm::tls_offset(), Ordering::Relaxed);
    w[3].store(asm::return_hook_addr() as u64, Ordering::Relaxed);
}

/// Recompute the fast flag from the mode, `ENABLED`, `FINISHED` and the registered handlers:
/// the assembly fast paths record a call only when nothing but recording it is to be done.
pub(crate) fn update_fast() {
    let on = ENABLED.load(Ordering::Relaxed)
        && !FINISHED.load(Ordering::Relaxed)
        && HANDLER_COUNT.load(Ordering::Relaxed) == 0;
    let flag: i64 = match mode() {
        Mode::Entry if on => 1,
        Mode::Graph if on => -1,
        _ => 0,
    };
    asm::fast_words()[0].store(flag as u64, Ordering::Release);
}

/// Append bytes to the trace file, unless this is a forked child (which would duplicate
/// the parent's buffered records).
fn write_trace(bytes: &[u8]) {
    let fd = TRACE_FD.load(Ordering::Relaxed);
    if fd >= 0 && sys::getpid() == PID.load(Ordering::Relaxed) {
        sys::write_all(fd, bytes);
    }
}

/// A flushed buffer is followed by a clock pair, so even a trace cut short by a crash can
/// convert ticks to nanoseconds.
fn flush_block(bytes: &[u8]) {
    write_trace(bytes);
    write_clock_pair();
}

fn write_clock_pair() {
    let r = Record {
        time: sys::ticks(),
        addr: sys::monotonic_ns(),
        tid: sys::gettid(),
        depth: 0,
        kind: Kind::Clock,
    };
    write_trace(&r.encode());
}

/// This thread's state, created on first use; `None` if none could be had.
/// Inlined into the handlers: after a thread's first call this is one TLS load.
/// Use its shadow stack and buffer only through `ThreadState::try_hold` (or, in the return
/// hook and the unwinder, `hold_as_owner`).
#[inline(always)]
pub(crate) fn thread_state() -> Option<&'static ThreadState> {
    let slot = asm::tls_slot();
    // SAFETY: `tls_slot` is this thread's own, aligned TLS word; only this thread uses it.
    let cur = unsafe { *slot };
    if cur > NO_STATE {
        // SAFETY: a TLS word above `NO_STATE` was set by `first_thread_state` to a state in
        // the registry: mapped, initialised (all-zero is a valid state) and never unmapped,
        // hence `'static`. Only a shared reference: other threads may use it too, through
        // its atomics and `Held`.
        return Some(unsafe { &*(cur as *const ThreadState) });
    }
    first_thread_state(slot, cur)
}

/// `thread_state` on the thread's first call (or when it has none).
#[cold]
#[inline(never)]
fn first_thread_state(slot: *mut usize, cur: usize) -> Option<&'static ThreadState> {
    if cur == NO_STATE {
        return None;
    }
    let st = claim_state();
    // SAFETY: `slot` is this thread's own TLS word (`thread_state`).
    unsafe { *slot = if st.is_null() { NO_STATE } else { st as usize } };
    if st.is_null() {
        LOST.fetch_add(1, Ordering::Relaxed);
        None
    } else {
        // SAFETY: as in `thread_state`: `claim_state` returns a registry state.
        Some(unsafe { &*st })
    }
}

/// Get a state for the calling thread: a new mapping in a free registry slot, or the state
/// of a thread that has exited (flushed first). Registry entries, once set, are never
/// cleared or unmapped.
fn claim_state() -> *const ThreadState {
    let tid = sys::gettid();
    for entry in THREADS.iter() {
        if entry.load(Ordering::Acquire) != 0 {
            continue;
        }
        let p = sys::mmap(core::mem::size_of::<ThreadState>(), -1) as *const ThreadState;
        if p.is_null() {
            return p;
        }
        // SAFETY: a fresh anonymous mapping: page-aligned, zero-filled (a valid empty
        // state), and not yet published, so this thread is its only user.
        let st = unsafe { &*p };
        st.owner.store(tid, Ordering::Relaxed);
        if let Some(mut held) = st.try_hold(HELD_BY_OWNER) {
            held.set_tid(tid);
        }
        // Release: whoever loads the entry sees the owner and tid written above.
        if entry
            .compare_exchange(0, p as usize, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return p;
        }
        // SAFETY: `p` is the mapping made above, of that size; the exchange failed, so it
        // was never published, and `st` is not used again.
        unsafe { sys::munmap(p as *mut u8, core::mem::size_of::<ThreadState>()) };
    }
    // Registry full (every entry set: entries are never cleared): take over a dead
    // thread's state.
    let pid = PID.load(Ordering::Relaxed);
    for entry in THREADS.iter() {
        let p = entry.load(Ordering::Acquire) as *const ThreadState;
        if p.is_null() {
            continue;
        }
        // SAFETY: a registry state (see `thread_state`); shared, used through atomics and
        // `Held` only.
        let st = unsafe { &*p };
        let owner = st.owner.load(Ordering::Relaxed);
        if owner == tid || sys::thread_alive(pid, owner) {
            continue;
        }
        if let Some(mut held) = st.try_hold(HELD_BY_OTHER) {
            // Another thread may have taken it over between our look and our hold.
            if st.owner.load(Ordering::Relaxed) != owner {
                continue;
            }
            held.flush(&mut flush_block);
            held.depth = 0;
            held.lost = 0;
            held.set_tid(tid);
            st.owner.store(tid, Ordering::Relaxed);
            return p;
        }
    }
    core::ptr::null()
}

#[cold]
#[inline(never)]
fn call_registered_handler(slot: usize, caller: usize) {
    let n = (HANDLER_COUNT.load(Ordering::Acquire) as usize).min(MAX_HANDLERS);
    for i in 0..n {
        if HANDLER_FN[i].load(Ordering::Acquire) == slot as u64 {
            let cb = HANDLER_CB[i].load(Ordering::Acquire);
            if cb != 0 {
                // SAFETY: `cb` is not 0, and `padtrim_register_handler` stored it from a
                // `Handler` (`h as usize`), so it is a valid pointer to a function of exactly
                // that type.
                let f: Handler = unsafe { core::mem::transmute(cb as usize) };
                f(slot as *const u8, caller as *const u8);
            }
        }
    }
}

/// Called by `padtrim_trampoline` on every entry of a patched function: records the entry,
/// then runs the function's registered handler (so in a trace the handler, if traced itself,
/// appears inside the function whose entry triggered it).
///
/// # Safety
/// Only the trampoline calls this, on entry of a traced function: `ret_slot` points at the
/// ra it saved in its own frame (aligned, valid for reads and writes, used by nothing else
/// until we return), `sp` is the function's entry sp, `slot` its slot address.
#[no_mangle]
pub unsafe extern "C" fn padtrim_on_entry(slot: usize, ret_slot: *mut usize, sp: usize) {
    let now = sys::ticks();
    // Before graph mode swaps in the return hook.
    // SAFETY: `ret_slot` is valid for reads (our contract).
    let caller = unsafe { *ret_slot };
    let func = (slot as u64).wrapping_sub(BIAS.load(Ordering::Relaxed));
    // SAFETY: our contract includes `record_entry`'s.
    unsafe { record_entry(func, ret_slot, sp, now, 0) };
    if HANDLER_COUNT.load(Ordering::Relaxed) != 0 {
        call_registered_handler(slot, caller);
    }
}

/// Slots whose calls record arguments (`PADTRIM_ARGS`): pairs of (runtime slot address,
/// fields as `args` masks), `ARG_COUNT` of them filled, at most `MAX_ARG_SLOTS`; a mapping
/// made once and never unmapped. Entries are only appended (under the patching lock), and
/// a reader sees the ones `ARG_COUNT` published.
static ARG_TABLE: AtomicUsize = AtomicUsize::new(0);
static ARG_COUNT: AtomicUsize = AtomicUsize::new(0);
/// Functions that can have their arguments recorded.
pub(crate) const MAX_ARG_SLOTS: usize = 4096;

/// Remember that the slot at runtime address `slot` records `mask`; false if the table is
/// full (or cannot be had). Callers hold the patching lock (one appender at a time).
pub(crate) fn add_arg_slot(slot: usize, mask: u16) -> bool {
    let mut table = ARG_TABLE.load(Ordering::Acquire);
    if table == 0 {
        table = sys::mmap(MAX_ARG_SLOTS * 16, -1) as usize;
        if table == 0 {
            return false;
        }
        ARG_TABLE.store(table, Ordering::Release);
    }
    let n = ARG_COUNT.load(Ordering::Relaxed);
    if n >= MAX_ARG_SLOTS {
        return false;
    }
    // SAFETY: `table` is our mapping of `MAX_ARG_SLOTS` pairs of u64, `n` below that; the
    // entry is not yet published (readers look only below `ARG_COUNT`), and appenders take
    // turns (our caller's lock).
    unsafe {
        let e = (table as *mut u64).add(2 * n);
        e.write(slot as u64);
        e.add(1).write(u64::from(mask));
    }
    ARG_COUNT.store(n + 1, Ordering::Release);
    true
}

/// The fields recorded for the slot at runtime address `slot` (0: none).
fn arg_mask(slot: usize) -> u16 {
    let n = ARG_COUNT.load(Ordering::Acquire);
    let table = ARG_TABLE.load(Ordering::Acquire);
    if table == 0 {
        return 0;
    }
    // SAFETY: the first `n` pairs of the mapping were written before `ARG_COUNT` published
    // them (Release/Acquire) and are never written again; the mapping is never unmapped.
    let entries = unsafe { core::slice::from_raw_parts(table as *const u64, 2 * n) };
    entries
        .chunks_exact(2)
        .rev()
        .find(|e| e[0] == slot as u64)
        .map_or(0, |e| e[1] as u16)
}

/// Called by `padtrim_args_trampoline` (and, through `on_entry_module_args`, by the
/// preloaded runtime's copies) on every entry of a function whose arguments are recorded.
///
/// # Safety
/// As `padtrim_on_entry`'s; the frame `ret_slot` points into also holds a0 ... a7 as the
/// trampoline saved them (8 words from `ret_slot + 3`).
#[no_mangle]
pub unsafe extern "C" fn padtrim_on_entry_args(slot: usize, ret_slot: *mut usize, sp: usize) {
    let now = sys::ticks();
    let func = (slot as u64).wrapping_sub(BIAS.load(Ordering::Relaxed));
    // SAFETY: our contract includes `record_entry`'s.
    unsafe { record_entry(func, ret_slot, sp, now, arg_mask(slot)) };
}

/// Record the entry of `func` with the fields `mask` asks for, for `padtrim_on_entry_args`
/// and the preloaded runtime.
///
/// # Safety
/// As `padtrim_on_entry_args`.
#[cfg_attr(not(padtrim_preload), allow(dead_code))]
pub(crate) unsafe fn record_entry_args(
    func: u64,
    slot: usize,
    ret_slot: *mut usize,
    sp: usize,
    now: u64,
) {
    // SAFETY: our contract.
    unsafe { record_entry(func, ret_slot, sp, now, arg_mask(slot)) };
}

/// Record the entry of the function `func` (its address as the trace has it), with the
/// argument registers and return value `mask` selects (`args`; 0 for none).
///
/// # Safety
/// `ret_slot` must be valid for reads and writes and used by nothing else during the call
/// (the trampoline's saved ra); `sp` the traced function's entry sp. If `mask` selects any
/// argument, the 8 words from `ret_slot + 3` must be a0 ... a7 as the trampoline saved them.
pub(crate) unsafe fn record_entry(func: u64, ret_slot: *mut usize, sp: usize, now: u64, mask: u16) {
    let mode = mode();
    if mode == Mode::Off || !ENABLED.load(Ordering::Relaxed) || FINISHED.load(Ordering::Relaxed) {
        return;
    }
    let st = match thread_state() {
        Some(s) => s,
        None => return,
    };
    // A signal handler interrupting us here must not touch the state: skip its calls.
    let mut st = match st.try_hold(HELD_BY_OWNER) {
        Some(held) => held,
        None => return,
    };
    let args = if mask & crate::args::ALL_ARGS != 0 {
        Some(CallArgs {
            mask: mask & crate::args::ALL_ARGS,
            // SAFETY: our contract: the trampoline's frame holds a0 ... a7 (8-byte aligned)
            // after ra, t0 and t2, and nothing writes them until we return.
            regs: unsafe { &*((ret_slot as *const u64).add(3) as *const [u64; 8]) },
        })
    } else {
        None
    };
    if mode == Mode::Graph {
        // SAFETY: `ret_slot` is valid for reads and writes (our contract).
        let ret = unsafe { *ret_slot };
        if st.enter_hooked_args(func, sp as u64, ret as u64, now, args, &mut flush_block) {
            let hook = if mask & crate::args::RETVAL != 0 {
                asm::return_hook_ret_addr()
            } else {
                asm::return_hook_addr()
            };
            // SAFETY: as above.
            unsafe { *ret_slot = hook };
        }
    } else {
        st.enter_args(func, sp as u64, now, args, &mut flush_block);
    }
}

/// Called by `padtrim_return_hook` with the sp at return; returns the real return address.
///
/// # Safety
/// Only the return hook calls this, on the thread whose traced function just returned into
/// it (`hold_as_owner`'s contract: see there why the state cannot then be held by this
/// thread for good reason).
#[no_mangle]
pub unsafe extern "C" fn padtrim_on_exit(sp: usize) -> usize {
    let now = sys::ticks();
    let st = match thread_state() {
        Some(s) => s,
        None => sys::fatal(b"padtrim: return hook reached without thread state\n"),
    };
    // SAFETY: `thread_state` is this thread's own state, and this is the return hook
    // (our contract).
    let ret = unsafe { st.hold_as_owner() }.exit_hooked(sp as u64, now, &mut flush_block);
    match ret {
        Some(r) => r as usize,
        None => sys::fatal(b"padtrim: return hook found no matching shadow frame\n"),
    }
}

/// Called by `padtrim_return_hook_ret` (the return hook of calls whose return value is
/// recorded) with the sp at return and a0; returns the real return address.
///
/// # Safety
/// As `padtrim_on_exit`.
#[no_mangle]
pub unsafe extern "C" fn padtrim_on_exit_ret(sp: usize, value: u64) -> usize {
    let now = sys::ticks();
    let st = match thread_state() {
        Some(s) => s,
        None => sys::fatal(b"padtrim: return hook reached without thread state\n"),
    };
    // SAFETY: as in `padtrim_on_exit`.
    let ret = unsafe { st.hold_as_owner() }.exit_hooked_ret(
        sp as u64,
        now,
        Some(value),
        &mut flush_block,
    );
    match ret {
        Some(r) => r as usize,
        None => sys::fatal(b"padtrim: return hook found no matching shadow frame\n"),
    }
}

/// Flush every thread's buffer at exit (runs last among destructors).
extern "C" fn padtrim_fini() {
    if TRACE_FD.load(Ordering::Relaxed) < 0 {
        return;
    }
    let mut lost = LOST.load(Ordering::Relaxed);
    for entry in THREADS.iter() {
        let p = entry.load(Ordering::Acquire) as *const ThreadState;
        if p.is_null() {
            continue;
        }
        // SAFETY: a registry state (see `thread_state`); shared, used through atomics and
        // `Held` only.
        let st = unsafe { &*p };
        // A thread still inside a handler keeps its buffer (it may be mid-update).
        if let Some(mut held) = st.try_hold(HELD_BY_OTHER) {
            held.flush(&mut write_trace);
            lost += held.lost;
        }
    }
    FINISHED.store(true, Ordering::Relaxed);
    update_fast();
    if lost > 0 {
        let r = Record {
            time: sys::ticks(),
            addr: lost,
            tid: sys::gettid(),
            depth: 0,
            kind: Kind::Lost,
        };
        write_trace(&r.encode());
    }
    write_clock_pair();
}

#[used]
#[link_section = ".fini_array.00100"]
static FINI: extern "C" fn() = padtrim_fini;

/// Start or stop recording (patched slots stay patched; pending exits are still recorded).
#[no_mangle]
pub extern "C" fn padtrim_set_enabled(on: i32) {
    ENABLED.store(on != 0, Ordering::Relaxed);
    update_fast();
}

/// Patch (`on` != 0) or unpatch the slot of the function at `func`. Returns 0 on success
/// (including "already so"), -1 if `func` is not the entry of a slot (or the slot cannot be
/// changed).
#[no_mangle]
pub extern "C" fn padtrim_enable_function(func: *const u8, on: i32) -> i32 {
    let slots = patch::find_slots();
    let addr = func as usize;
    let i = match find_slot(&slots, addr) {
        Some(i) => i,
        None => return -1,
    };
    let mut p = patch::Patcher::begin();
    let ok = match slots.instruction(i) {
        // Empty or misaligned (compressed pads): never patched, cannot be.
        None => false,
        Some(insn) if on != 0 => {
            crate::descriptor::decode_jal_t0(addr as u64, insn).is_some() || p.enable(&slots, i)
        }
        Some(insn) => insn == crate::descriptor::NOP || p.disable(&slots, i),
    };
    p.finish();
    if ok {
        0
    } else {
        -1
    }
}

/// The index of `addr` (runtime, not null) in the slot table. The table is sorted by
/// link-time address, and the bias is the same for every entry, so a binary search works.
fn find_slot(slots: &patch::Slots, addr: usize) -> Option<usize> {
    if addr == 0 {
        return None; // the address of empty entries
    }
    let (mut lo, mut hi) = (0, slots.count());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let v = slots.slot(mid);
        if v == addr {
            return Some(mid);
        }
        if v < addr {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    // The fallback table (`__patchable_function_entries`) is in link order, not sorted.
    if slots.add_bias {
        None
    } else {
        (0..slots.count()).find(|&i| slots.slot(i) == addr)
    }
}

/// Call `handler(func, caller)` on every entry of `func` (patching its slot if needed), after
/// recording the entry; a null handler removes it (the slot stays patched). Returns 0, or
/// -1 if `func` has no slot or the table (64 functions) is full.
#[no_mangle]
pub extern "C" fn padtrim_register_handler(func: *const u8, handler: Option<Handler>) -> i32 {
    let key = func as u64;
    let cb = handler.map_or(0, |h| h as usize as u64);
    if cb != 0 && padtrim_enable_function(func, 1) != 0 {
        return -1;
    }
    // Registrations from several threads take turns; readers (the trampoline) never wait.
    while HANDLER_LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
    let n = (HANDLER_COUNT.load(Ordering::Acquire) as usize).min(MAX_HANDLERS);
    let existing = (0..n).find(|&i| HANDLER_FN[i].load(Ordering::Acquire) == key);
    let result = match existing {
        Some(i) => {
            HANDLER_CB[i].store(cb, Ordering::Release);
            0
        }
        None if cb == 0 => 0,
        None if n < MAX_HANDLERS => {
            HANDLER_CB[n].store(cb, Ordering::Release);
            HANDLER_FN[n].store(key, Ordering::Release);
            HANDLER_COUNT.store(n as u32 + 1, Ordering::Release);
            update_fast();
            0
        }
        None => -1,
    };
    HANDLER_LOCK.store(false, Ordering::Release);
    result
}
