//! Per-thread tracing state: the record buffer and the shadow stack of traced frames.
//! Portable logic, driven by the riscv entry/exit handlers and unit-tested on the host.
//!
//! Frames are keyed by the stack pointer at function entry (`sp`). Stacks grow down, so a
//! frame whose `sp` is below the current one belongs to a function that is gone: its return
//! hook was skipped by `longjmp` or an exception. Such frames are popped ("resync") and get
//! an `ExitUnwound` record. A frame with the same `sp` as the current one is a live caller
//! only if its return hook is still installed (a tail call reuses its caller's `sp`).
//!
//! A state is shared between threads (its owner, the exit flush, a thread taking over a dead
//! thread's state), so only `busy` and `owner` are touched by anyone; the shadow stack and
//! the buffer (`Shadow`) only by whoever holds `busy`, through a `Held`.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, Ordering};

use crate::format::{Kind, Record, RECORD_SIZE};

/// Byte offsets into a `ThreadState` (and into a `Frame`) that the assembly fast paths in
/// `rv::asm` and `rv::preload` use, as string literals for `concat!` (the runtime is built with
/// rustc 1.63, which has no `const` operands in `asm!`). `layout_is_what_the_fast_paths_use`
/// checks every one against the structs.
#[allow(unused_macros)]
macro_rules! state_offset {
    (busy) => {
        "0"
    };
    (depth) => {
        "12"
    };
    (cur) => {
        "16"
    };
    (end) => {
        "24"
    };
    (entry_word) => {
        "32"
    };
    (exit_word) => {
        "40"
    };
    // `frames[0]`; frame `i` is at `frames + 32 * i`.
    (frames) => {
        "56"
    };
    // The frame below `frames + 32 * depth`: the top frame's `sp`.
    (top_sp) => {
        "24"
    };
    (frame_sp) => {
        "56"
    };
    (frame_ret) => {
        "64"
    };
    (frame_func) => {
        "72"
    };
    (frame_hooked) => {
        "80"
    };
}

/// `log2(size_of::<Frame>())`, as the fast paths index frames.
pub const FRAME_SHIFT: u32 = 5;

/// Deepest shadow stack kept per thread; deeper calls are counted as lost.
pub const MAX_DEPTH: usize = 1024;
/// Records buffered per thread before they are written out.
pub const BUF_RECORDS: usize = 2048;

/// One traced call still running (as far as the runtime knows).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    /// Stack pointer at function entry.
    pub sp: u64,
    /// The caller's return address the hook replaced (0 when no hook was installed).
    pub ret: u64,
    /// Link-time address of the function.
    pub func: u64,
    /// Not 0 if `padtrim_return_hook` is in place of `ret` (the assembly fast path stores the
    /// entry sp there, the Rust path 1), 0 otherwise.
    pub hooked: u64,
}

/// The argument registers (a0 ... a7) of a call, and which of them to record (bit `n` for
/// register `a<n>`, as `args::ARG1 << n`).
#[derive(Clone, Copy, Debug)]
pub struct CallArgs<'r> {
    /// Which registers.
    pub mask: u16,
    /// a0 ... a7 at entry.
    pub regs: &'r [u64; 8],
}

/// `ThreadState::busy`: nobody holds the state.
pub const FREE: u32 = 0;
/// `ThreadState::busy`: held by the thread the state belongs to (its handlers, its unwinder).
pub const HELD_BY_OWNER: u32 = 1;
/// `ThreadState::busy`: held by another thread (the exit flush, or a thread taking over the
/// state of a thread that has exited).
pub const HELD_BY_OTHER: u32 = 2;

/// Everything a thread needs; all-zero bytes are a valid empty state (so mmap'd memory is).
#[repr(C)]
pub struct ThreadState {
    /// Who may use `shadow` (`FREE`, `HELD_BY_OWNER`, `HELD_BY_OTHER`): guards against
    /// re-entry (signal handlers) and against the exit flush racing the owner. Private: a
    /// store from outside could let two `Held`s exist at once.
    busy: AtomicU32,
    /// Kernel thread id of the owner (0 before the first), readable without holding `busy`.
    pub owner: AtomicU32,
    shadow: UnsafeCell<Shadow>,
}

// SAFETY: shared between threads, a `ThreadState` is used only through its atomics and
// through `Held`, which exists only while its holder has taken `busy` with an Acquire
// exchange and gives it back with a Release store: like a `Mutex<Shadow>`, this hands the
// `Shadow` (plain data, so `Send`) from one holder to the next, never to two at once.
unsafe impl Sync for ThreadState {}

impl ThreadState {
    /// Hold the state (as `by`: `HELD_BY_OWNER` or `HELD_BY_OTHER`) if nobody does.
    #[inline(always)]
    pub fn try_hold(&self, by: u32) -> Option<Held<'_>> {
        match self
            .busy
            .compare_exchange(FREE, by, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => Some(Held {
                state: self,
                restore: FREE,
            }),
            Err(_) => None,
        }
    }

    /// Hold the state for its owner where the owner cannot skip its work (the return hook
    /// must give back a return address): wait while another thread holds it (the exit flush
    /// holds it for one `write`), and take it even if the owner itself holds it; it is held
    /// by the owner again when the `Held` is dropped.
    ///
    /// # Safety
    /// Only the owner thread may call this, and only where the owner holding the state means
    /// the holder will never use it again. That is so for the return hook and the unwinder:
    /// they run with the state owner-held only when a signal interrupted a holder and the
    /// handler did not return to it (it left by `longjmp`), since a handler's own calls are
    /// not hooked while the state is held.
    pub unsafe fn hold_as_owner(&self) -> Held<'_> {
        loop {
            match self.busy.compare_exchange_weak(
                FREE,
                HELD_BY_OWNER,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Held {
                        state: self,
                        restore: FREE,
                    }
                }
                Err(HELD_BY_OWNER) => {
                    return Held {
                        state: self,
                        restore: HELD_BY_OWNER,
                    }
                }
                Err(_) => core::hint::spin_loop(),
            }
        }
    }
}

impl ThreadState {
    /// In a forked child: forget what the parent's threads buffered (the parent writes it),
    /// and give the state to `tid` if `keep_frames` (the thread that called `fork`, which goes
    /// on in the same frames: its shadow stack stays), else leave it free for reuse.
    ///
    /// # Safety
    /// Only in a forked child before it starts a thread, from the thread that called `fork`:
    /// no other thread of the child exists, so no one else can hold or use the state, and a
    /// hold taken in the parent by a thread that does not exist in the child is void. The
    /// caller itself must not be holding the state (it is not, in a `fork` handler).
    pub unsafe fn reset_after_fork(&self, keep_frames: bool, tid: u32) {
        self.busy.store(FREE, Ordering::Relaxed);
        // SAFETY: `busy` is free and no other thread exists (our contract): this is the only
        // access to `shadow` until the state is held again.
        let shadow = unsafe { &mut *self.shadow.get() };
        shadow.discard();
        shadow.lost = 0;
        if keep_frames {
            shadow.set_tid(tid);
            self.owner.store(tid, Ordering::Relaxed);
        } else {
            shadow.depth = 0;
        }
    }
}

/// The shadow stack and buffer of a held state; gives the state back when dropped.
pub struct Held<'a> {
    state: &'a ThreadState,
    restore: u32,
}

impl Deref for Held<'_> {
    type Target = Shadow;
    #[inline(always)]
    fn deref(&self) -> &Shadow {
        // SAFETY: a `Held` exists only while `busy` is held for it (`try_hold`,
        // `hold_as_owner`), and every access to `shadow` goes through a `Held`, so no one
        // writes `shadow` while this borrow of `self` lasts.
        unsafe { &*self.state.shadow.get() }
    }
}

impl DerefMut for Held<'_> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut Shadow {
        // SAFETY: as in `deref`; `&mut self` makes this the only access through this `Held`,
        // and holding `busy` makes this `Held` the only one in use.
        unsafe { &mut *self.state.shadow.get() }
    }
}

impl Drop for Held<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.state.busy.store(self.restore, Ordering::Release);
    }
}

/// A thread's record buffer and shadow stack: only used by whoever holds its `ThreadState`.
/// All-zero bytes are a valid empty one (`cur` 0: the buffer is set up on the first record).
///
/// The assembly fast paths (`rv::asm`) read and write `depth`, `cur`, `end`, the two record
/// words and `frames` at the offsets `state_offset!` gives; `layout_is_what_the_fast_paths_use`
/// checks them against this struct.
#[repr(C)]
pub struct Shadow {
    /// Kernel thread id the records carry (set with `set_tid`, which keeps the record words).
    tid: u32,
    /// Frames in use.
    pub depth: u32,
    /// Address in `buf` where the next record goes (0 before the first record).
    cur: usize,
    /// Address of the end of `buf` (0 before the first record): a record fits while
    /// `cur + RECORD_SIZE <= end`, one comparison of pointers on the fast path.
    end: usize,
    /// The last 8 bytes of an `Entry` record of this thread at depth 0 (tid | kind << 48):
    /// the fast path ORs the depth in (`depth << 32`).
    entry_word: u64,
    /// The same for an `Exit` record.
    exit_word: u64,
    /// Records dropped (shadow stack full).
    pub lost: u64,
    /// The shadow stack.
    pub frames: [Frame; MAX_DEPTH],
    /// Encoded records waiting to be written.
    pub buf: [u8; BUF_RECORDS * RECORD_SIZE],
}

impl Shadow {
    /// The hot path of every traced call: inlined, the flush kept out of line.
    #[inline(always)]
    fn push_record(&mut self, r: Record, flush: &mut dyn FnMut(&[u8])) {
        if self.cur == 0 || self.cur + RECORD_SIZE > self.end {
            self.flush_full(flush);
        }
        let at = self.cur - self.buf.as_ptr() as usize;
        assert!(at + RECORD_SIZE <= self.buf.len() && at % 8 == 0);
        // Three aligned 8-byte stores of what `Record::encode` lays out (byte-slice copies
        // compile to 24 byte stores on RISC-V, where unaligned access is not assumed).
        let last = u64::from(r.tid) | u64::from(r.depth) << 32 | u64::from(r.kind.to_u8()) << 48;
        // SAFETY: `at + 24` is within `buf` (asserted), `buf` starts 8-byte aligned (its
        // offset in this `repr(C)` struct is a multiple of 8, checked by
        // `layout_is_what_the_fast_paths_use`) and `at` is a multiple of 8 (asserted), so the
        // three `u64`s are in bounds and aligned; `&mut self` makes this the only access.
        unsafe {
            let p = self.buf.as_mut_ptr().add(at) as *mut u64;
            p.write(r.time.to_le());
            p.add(1).write(r.addr.to_le());
            p.add(2).write(last.to_le());
        }
        self.cur += RECORD_SIZE;
    }

    /// Kernel thread id the records carry.
    pub fn tid(&self) -> u32 {
        self.tid
    }

    /// Make `tid` the thread id of the records (and of the fast paths' record words).
    pub fn set_tid(&mut self, tid: u32) {
        self.tid = tid;
        self.entry_word = u64::from(tid) | u64::from(Kind::Entry.to_u8()) << 48;
        self.exit_word = u64::from(tid) | u64::from(Kind::Exit.to_u8()) << 48;
    }

    /// Records in the buffer.
    pub fn len(&self) -> usize {
        if self.cur == 0 {
            0
        } else {
            (self.cur - self.buf.as_ptr() as usize) / RECORD_SIZE
        }
    }

    /// No record is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forget the buffered records (a forked child's copy of its parent's).
    pub fn discard(&mut self) {
        self.cur = 0;
        self.end = 0;
    }

    #[cold]
    #[inline(never)]
    fn flush_full(&mut self, flush: &mut dyn FnMut(&[u8])) {
        self.flush(flush);
    }

    /// Hand the buffered records to `flush` and empty the buffer (setting it up if it was
    /// not).
    pub fn flush(&mut self, flush: &mut dyn FnMut(&[u8])) {
        let n = self.len() * RECORD_SIZE;
        if n > 0 {
            flush(&self.buf[..n]);
        }
        self.cur = self.buf.as_ptr() as usize;
        self.end = self.cur + self.buf.len();
    }

    #[inline(always)]
    fn record(
        &mut self,
        kind: Kind,
        func: u64,
        depth: u32,
        now: u64,
        flush: &mut dyn FnMut(&[u8]),
    ) {
        let r = Record {
            time: now,
            addr: func,
            tid: self.tid,
            depth: depth.min(u16::MAX as u32) as u16,
            kind,
        };
        self.push_record(r, flush);
    }

    /// Append a record that is not a call event (clock pairs, counters).
    pub fn record_other(
        &mut self,
        kind: Kind,
        time: u64,
        payload: u64,
        flush: &mut dyn FnMut(&[u8]),
    ) {
        self.record(kind, payload, 0, time, flush);
    }

    /// Pop frames that cannot be live at a call or return with stack pointer `sp`,
    /// recording their exits as unwound when they had a hook.
    /// Inlined: in entry mode every call pops about one frame; the (rare) unwound exits of
    /// hooked frames are recorded out of line.
    #[inline(always)]
    fn resync(&mut self, sp: u64, now: u64, flush: &mut dyn FnMut(&[u8])) {
        while self.depth > 0 {
            let top = self.frames[(self.depth as usize - 1) % MAX_DEPTH];
            let dead = top.sp < sp || (top.hooked == 0 && top.sp <= sp);
            if !dead {
                break;
            }
            self.depth -= 1;
            if top.ret != 0 {
                self.record_unwound(top.func, now, flush);
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn record_unwound(&mut self, func: u64, now: u64, flush: &mut dyn FnMut(&[u8])) {
        self.record(Kind::ExitUnwound, func, self.depth, now, flush);
    }

    /// `Args` records for the registers `args` selects, two values a record, then the
    /// caller records the `Entry` they belong to.
    fn record_args(&mut self, args: &CallArgs<'_>, flush: &mut dyn FnMut(&[u8])) {
        let mut pending: Option<(u16, u64)> = None;
        for (i, &v) in args.regs.iter().enumerate() {
            if args.mask & (1 << i) == 0 {
                continue;
            }
            let n = i as u16 + 1;
            match pending.take() {
                None => pending = Some((n, v)),
                Some((first, fv)) => self.push_args_record(first, fv, n, v, flush),
            }
        }
        if let Some((first, fv)) = pending {
            self.push_args_record(first, fv, 0, 0, flush);
        }
    }

    fn push_args_record(
        &mut self,
        n1: u16,
        v1: u64,
        n2: u16,
        v2: u64,
        flush: &mut dyn FnMut(&[u8]),
    ) {
        let r = Record {
            time: v1,
            addr: v2,
            tid: self.tid,
            depth: n1 | n2 << 8,
            kind: Kind::Args,
        };
        self.push_record(r, flush);
    }

    /// Entry-only mode: record the call; the shadow stack just tracks the depth.
    pub fn enter(&mut self, func: u64, sp: u64, now: u64, flush: &mut dyn FnMut(&[u8])) {
        self.enter_args(func, sp, now, None, flush)
    }

    /// `enter`, recording the arguments `args` selects first.
    pub fn enter_args(
        &mut self,
        func: u64,
        sp: u64,
        now: u64,
        args: Option<CallArgs<'_>>,
        flush: &mut dyn FnMut(&[u8]),
    ) {
        self.resync(sp, now, flush);
        let depth = self.depth;
        if let Some(a) = &args {
            self.record_args(a, flush);
        }
        self.record(Kind::Entry, func, depth, now, flush);
        if (depth as usize) < MAX_DEPTH {
            self.frames[depth as usize] = Frame {
                sp,
                ret: 0,
                func,
                hooked: 0,
            };
            self.depth += 1;
        }
    }

    /// Graph mode: record the call and push a hooked frame remembering `ret`. Returns false
    /// (nothing recorded, hook must not be installed) when the shadow stack is full.
    pub fn enter_hooked(
        &mut self,
        func: u64,
        sp: u64,
        ret: u64,
        now: u64,
        flush: &mut dyn FnMut(&[u8]),
    ) -> bool {
        self.enter_hooked_args(func, sp, ret, now, None, flush)
    }

    /// `enter_hooked`, recording the arguments `args` selects first (if the call is
    /// recorded at all).
    pub fn enter_hooked_args(
        &mut self,
        func: u64,
        sp: u64,
        ret: u64,
        now: u64,
        args: Option<CallArgs<'_>>,
        flush: &mut dyn FnMut(&[u8]),
    ) -> bool {
        self.resync(sp, now, flush);
        let depth = self.depth;
        if depth as usize >= MAX_DEPTH || ret == 0 {
            self.lost += 1;
            return false;
        }
        if let Some(a) = &args {
            self.record_args(a, flush);
        }
        self.record(Kind::Entry, func, depth, now, flush);
        self.frames[depth as usize] = Frame {
            sp,
            ret,
            func,
            hooked: 1,
        };
        self.depth += 1;
        true
    }

    /// The return hook ran with stack pointer `sp`: record the exit and give back the
    /// original return address, or `None` if no hooked frame matches (state corrupt).
    pub fn exit_hooked(&mut self, sp: u64, now: u64, flush: &mut dyn FnMut(&[u8])) -> Option<u64> {
        self.exit_hooked_ret(sp, now, None, flush)
    }

    /// `exit_hooked`, recording the return value `ret` (a `Return` record) before the exit.
    pub fn exit_hooked_ret(
        &mut self,
        sp: u64,
        now: u64,
        value: Option<u64>,
        flush: &mut dyn FnMut(&[u8]),
    ) -> Option<u64> {
        self.resync(sp, now, flush);
        if self.depth == 0 {
            return None;
        }
        let top = self.frames[self.depth as usize - 1];
        if top.sp != sp || top.hooked == 0 {
            return None;
        }
        self.depth -= 1;
        if let Some(v) = value {
            let r = Record {
                time: v,
                addr: top.func,
                tid: self.tid,
                depth: self.depth.min(u16::MAX as u32) as u16,
                kind: Kind::Return,
            };
            self.push_record(r, flush);
        }
        self.record(Kind::Exit, top.func, self.depth, now, flush);
        Some(top.ret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Record;
    use std::boxed::Box;
    use std::vec::Vec;

    fn new_state() -> Box<Shadow> {
        // SAFETY: all-zero bytes are a valid `Shadow` (integers and arrays of them only), the
        // documented initial state (the runtime gets it from mmap).
        unsafe { Box::new(core::mem::zeroed()) }
    }

    fn new_thread_state() -> Box<ThreadState> {
        // SAFETY: all-zero bytes are a valid `ThreadState`: atomics and a `Shadow` (above).
        unsafe { Box::new(core::mem::zeroed()) }
    }

    #[test]
    fn a_held_state_is_held_once_and_given_back() {
        let st = new_thread_state();
        let mut held = st.try_hold(HELD_BY_OWNER).unwrap();
        held.set_tid(7);
        assert!(st.try_hold(HELD_BY_OTHER).is_none());
        assert!(st.try_hold(HELD_BY_OWNER).is_none());
        drop(held);
        assert_eq!(st.busy.load(Ordering::Relaxed), FREE);
        let held = st.try_hold(HELD_BY_OTHER).unwrap();
        assert_eq!(
            (held.tid(), st.busy.load(Ordering::Relaxed)),
            (7, HELD_BY_OTHER)
        );
    }

    #[test]
    fn the_owner_takes_its_own_abandoned_hold_and_leaves_it_held() {
        let st = new_thread_state();
        let abandoned = st.try_hold(HELD_BY_OWNER).unwrap();
        core::mem::forget(abandoned); // as if a signal handler had longjmp'd out of it
                                      // SAFETY: this thread is the owner and the holder never resumes.
        let held = unsafe { st.hold_as_owner() };
        drop(held);
        assert_eq!(st.busy.load(Ordering::Relaxed), HELD_BY_OWNER);
    }

    #[test]
    fn the_owner_waits_while_another_thread_holds_its_state() {
        use std::sync::atomic::AtomicBool;
        let st: &'static ThreadState = Box::leak(new_thread_state());
        let held = st.try_hold(HELD_BY_OTHER).unwrap();
        let done: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
        let owner = std::thread::spawn(move || {
            // SAFETY: this thread acts as the owner; nobody holds the state as owner.
            let mut own = unsafe { st.hold_as_owner() };
            own.depth += 1;
            done.store(true, Ordering::SeqCst);
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !done.load(Ordering::SeqCst),
            "took a state another thread held"
        );
        drop(held);
        owner.join().unwrap();
        assert_eq!(st.busy.load(Ordering::Relaxed), FREE);
        assert_eq!(st.try_hold(HELD_BY_OTHER).unwrap().depth, 1);
    }

    fn events(out: &[u8]) -> Vec<(Kind, u64, u16, u64)> {
        out.chunks(RECORD_SIZE)
            .map(|c| Record::decode(c).unwrap())
            .map(|r| (r.kind, r.addr, r.depth, r.time))
            .collect()
    }

    #[test]
    fn nested_calls_and_returns() {
        let mut t = new_state();
        let mut out = Vec::new();
        let mut sink = |b: &[u8]| out.extend_from_slice(b);
        assert!(t.enter_hooked(0xa, 1000, 0x111, 1, &mut sink));
        assert!(t.enter_hooked(0xb, 960, 0x222, 2, &mut sink));
        assert_eq!(t.exit_hooked(960, 3, &mut sink), Some(0x222));
        assert!(t.enter_hooked(0xc, 960, 0x333, 4, &mut sink));
        assert_eq!(t.exit_hooked(960, 5, &mut sink), Some(0x333));
        assert_eq!(t.exit_hooked(1000, 6, &mut sink), Some(0x111));
        t.flush(&mut sink);
        assert_eq!(
            events(&out),
            [
                (Kind::Entry, 0xa, 0, 1),
                (Kind::Entry, 0xb, 1, 2),
                (Kind::Exit, 0xb, 1, 3),
                (Kind::Entry, 0xc, 1, 4),
                (Kind::Exit, 0xc, 1, 5),
                (Kind::Exit, 0xa, 0, 6)
            ]
        );
    }

    #[test]
    fn tail_call_shares_sp_and_unwinds_in_order() {
        let mut t = new_state();
        let mut out = Vec::new();
        let mut sink = |b: &[u8]| out.extend_from_slice(b);
        assert!(t.enter_hooked(0xa, 1000, 0x111, 1, &mut sink));
        // a tail-calls b: same sp, b's return address is the hook
        assert!(t.enter_hooked(0xb, 1000, 0x999, 2, &mut sink));
        assert_eq!(t.exit_hooked(1000, 3, &mut sink), Some(0x999));
        assert_eq!(t.exit_hooked(1000, 4, &mut sink), Some(0x111));
        assert_eq!(t.depth, 0);
    }

    #[test]
    fn longjmp_skipped_frames_are_popped_as_unwound() {
        let mut t = new_state();
        let mut out = Vec::new();
        let mut sink = |b: &[u8]| out.extend_from_slice(b);
        assert!(t.enter_hooked(0xa, 1000, 0x111, 1, &mut sink));
        assert!(t.enter_hooked(0xb, 900, 0x222, 2, &mut sink));
        assert!(t.enter_hooked(0xc, 800, 0x333, 3, &mut sink));
        // longjmp back into a: the next call from a happens at sp 900 again
        assert!(t.enter_hooked(0xd, 900, 0x444, 4, &mut sink));
        assert_eq!(t.depth, 3); // a, b (same sp, hooked: kept), d
        assert_eq!(t.exit_hooked(900, 5, &mut sink), Some(0x444));
        // a returns: b's frame (sp 900 < 1000) is dead
        assert_eq!(t.exit_hooked(1000, 6, &mut sink), Some(0x111));
        assert_eq!(t.exit_hooked(1000, 7, &mut sink), None);
        t.flush(&mut sink);
        let ev = events(&out);
        assert!(ev.contains(&(Kind::ExitUnwound, 0xc, 2, 4)));
        assert!(ev.contains(&(Kind::ExitUnwound, 0xb, 1, 6)));
        assert_eq!(ev.last(), Some(&(Kind::Exit, 0xa, 0, 6)));
    }

    #[test]
    fn entry_mode_tracks_depth_without_hooks() {
        let mut t = new_state();
        let mut out = Vec::new();
        let mut sink = |b: &[u8]| out.extend_from_slice(b);
        t.enter(0xa, 1000, 1, &mut sink);
        t.enter(0xb, 960, 2, &mut sink);
        t.enter(0xc, 960, 3, &mut sink); // sibling of b
        t.enter(0xd, 920, 4, &mut sink); // child of c
        t.enter(0xe, 1000, 5, &mut sink); // sibling of a
        t.flush(&mut sink);
        let depths: Vec<u16> = events(&out).iter().map(|e| e.2).collect();
        assert_eq!(depths, [0, 1, 1, 2, 0]);
    }

    #[test]
    fn full_buffer_flushes_and_full_stack_is_counted() {
        let mut t = new_state();
        let mut flushed = 0usize;
        let mut sink = |b: &[u8]| flushed += b.len() / RECORD_SIZE;
        for i in 0..MAX_DEPTH as u64 + 5 {
            t.enter_hooked(i, 1_000_000 - i * 16, 1, i, &mut sink);
        }
        assert_eq!(t.lost, 5);
        assert_eq!(t.depth as usize, MAX_DEPTH);
        t.flush(&mut sink);
        assert_eq!(flushed, MAX_DEPTH);
        let mut t = new_state();
        let mut flushed = 0usize;
        let mut sink = |b: &[u8]| flushed += b.len() / RECORD_SIZE;
        for i in 0..BUF_RECORDS as u64 + 1 {
            t.enter(i, 1000, i, &mut sink);
        }
        assert_eq!(flushed, BUF_RECORDS);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn layout_is_what_the_fast_paths_use() {
        let st = new_thread_state();
        let base = &*st as *const ThreadState as usize;
        // SAFETY: only addresses of fields are taken (no reads) of a live, zeroed state.
        let shadow = unsafe { &*st.shadow.get() };
        let off = |p: usize| p - base;
        let num = |s: &str| s.parse::<usize>().unwrap();
        assert_eq!(
            off(&st.busy as *const AtomicU32 as usize),
            num(state_offset!(busy))
        );
        assert_eq!(
            off(core::ptr::addr_of!(shadow.depth) as usize),
            num(state_offset!(depth))
        );
        assert_eq!(
            off(core::ptr::addr_of!(shadow.cur) as usize),
            num(state_offset!(cur))
        );
        assert_eq!(
            off(core::ptr::addr_of!(shadow.end) as usize),
            num(state_offset!(end))
        );
        assert_eq!(
            off(core::ptr::addr_of!(shadow.entry_word) as usize),
            num(state_offset!(entry_word))
        );
        assert_eq!(
            off(core::ptr::addr_of!(shadow.exit_word) as usize),
            num(state_offset!(exit_word))
        );
        let frames = off(core::ptr::addr_of!(shadow.frames) as usize);
        assert_eq!(frames, num(state_offset!(frames)));
        assert_eq!(
            frames - core::mem::size_of::<Frame>(),
            num(state_offset!(top_sp))
        );
        assert_eq!(1usize << FRAME_SHIFT, core::mem::size_of::<Frame>());
        let f = &shadow.frames[0];
        assert_eq!(
            off(core::ptr::addr_of!(f.sp) as usize),
            num(state_offset!(frame_sp))
        );
        assert_eq!(
            off(core::ptr::addr_of!(f.ret) as usize),
            num(state_offset!(frame_ret))
        );
        assert_eq!(
            off(core::ptr::addr_of!(f.func) as usize),
            num(state_offset!(frame_func))
        );
        assert_eq!(
            off(core::ptr::addr_of!(f.hooked) as usize),
            num(state_offset!(frame_hooked))
        );
        // The fast paths' record words are the last 8 bytes of an encoded record.
        let mut held = st.try_hold(HELD_BY_OWNER).unwrap();
        held.set_tid(0x1234);
        let depth = 7u64;
        for (word, kind) in [(held.entry_word, Kind::Entry), (held.exit_word, Kind::Exit)] {
            let r = Record {
                time: 1,
                addr: 2,
                tid: 0x1234,
                depth: depth as u16,
                kind,
            };
            assert_eq!(r.encode()[16..24], (word | depth << 32).to_le_bytes());
        }
        // Records are written as aligned u64s (`push_record`).
        assert_eq!(off(core::ptr::addr_of!(shadow.buf) as usize) % 8, 0);
        assert_eq!(core::mem::align_of::<ThreadState>() % 8, 0);
        // A fresh (zeroed) state has no room: the fast paths leave its first record to Rust.
        let fresh = new_state();
        assert_eq!((fresh.cur, fresh.end), (0, 0));
        // The buffer holds whole records, ending where the check puts `end`.
        assert_eq!(core::mem::size_of_val(&fresh.buf) % RECORD_SIZE, 0);
    }

    #[test]
    fn arguments_and_return_values_come_right_before_their_entry_and_exit() {
        let mut t = new_state();
        t.set_tid(9);
        let mut out = Vec::new();
        let mut sink = |b: &[u8]| out.extend_from_slice(b);
        let regs = [10, 11, 12, 13, 14, 15, 16, 17];
        let args = CallArgs {
            mask: 0b1000_0101,
            regs: &regs,
        };
        assert!(t.enter_hooked_args(0xa, 1000, 0x111, 1, Some(args), &mut sink));
        assert_eq!(t.exit_hooked_ret(1000, 2, Some(42), &mut sink), Some(0x111));
        t.flush(&mut sink);
        let recs: Vec<Record> = out
            .chunks(RECORD_SIZE)
            .map(|c| Record::decode(c).unwrap())
            .collect();
        let got: Vec<(Kind, u64, u64, u16)> = recs
            .iter()
            .map(|r| (r.kind, r.time, r.addr, r.depth))
            .collect();
        assert_eq!(
            got,
            [
                (Kind::Args, 10, 12, 1 | 3 << 8),
                (Kind::Args, 17, 0, 8),
                (Kind::Entry, 1, 0xa, 0),
                (Kind::Return, 42, 0xa, 0),
                (Kind::Exit, 2, 0xa, 0),
            ]
        );
        assert!(recs.iter().all(|r| r.tid == 9));
    }
}
