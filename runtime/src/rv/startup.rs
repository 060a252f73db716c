//! Startup: read the settings, open the trace, select and patch slots. Runs from
//! `.init_array` before the program's own constructors.

use core::marker::PhantomData;
use core::sync::atomic::Ordering;

use super::{patch, sys, BIAS, ENABLED, MODE, PID, TRACE_FD};
use crate::config::Config;
use crate::elf::{at_address, Elf, FuncSym};
use crate::format::{encode_header, header_size, Header, Kind, Mode, Record, MAX_PATH};
use crate::glob::Filter;
use crate::line::Line;

const O_WRONLY: usize = 0o1;
const O_CREAT: usize = 0o100;
const O_TRUNC: usize = 0o1000;
const O_APPEND: usize = 0o2000;
const O_CLOEXEC: usize = 0o2000000;

/// glibc calls `.init_array` entries with (argc, argv, envp). (The preloaded build starts
/// from `preload::preload_init` instead.)
#[cfg(not(padtrim_preload))]
#[used]
#[link_section = ".init_array.00100"]
static INIT: extern "C" fn(i32, *const *const u8, *const *const u8) = padtrim_init;

/// The NUL-terminated string at `p`, without its NUL, at most `max` bytes.
///
/// # Safety
/// `p` must be non-null and its bytes readable up to its first NUL or its `max`-th byte,
/// whichever comes first; they must stay valid and unchanged for `'a`.
pub(super) unsafe fn c_str<'a>(p: *const u8, max: usize) -> &'a [u8] {
    let mut n = 0;
    // SAFETY: the caller guarantees bytes up to the first NUL (or `max`) are readable, and
    // the loop stops at the first NUL or at `max`.
    while n < max && unsafe { *p.add(n) } != 0 {
        n += 1;
    }
    // SAFETY: the `n` bytes just read are readable and, by the caller's guarantee, stay
    // valid and unchanged for `'a`.
    unsafe { core::slice::from_raw_parts(p, n) }
}

/// The `NAME=value` strings of an environment block.
pub(super) struct EnvIter<'a> {
    p: *const *const u8,
    env: PhantomData<&'a [u8]>,
}

impl<'a> EnvIter<'a> {
    /// # Safety
    /// `envp` must be null or point to a null-terminated array of pointers to NUL-terminated
    /// strings, and the array and the strings must stay valid and unchanged for `'a`.
    pub(super) unsafe fn new(envp: *const *const u8) -> EnvIter<'a> {
        EnvIter {
            p: envp,
            env: PhantomData,
        }
    }
}

impl<'a> Iterator for EnvIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.p.is_null() {
            return None;
        }
        // SAFETY: `p` is not null and, by `new`'s contract, points into the array, at or
        // before its terminating null (we stop there).
        let s = unsafe { *self.p };
        if s.is_null() {
            return None;
        }
        // SAFETY: `s` was not the terminator, so the next element is still in the array.
        self.p = unsafe { self.p.add(1) };
        // SAFETY: `s` is a non-null element of the array: a NUL-terminated string valid and
        // unchanged for `'a` (`new`'s contract).
        Some(unsafe { c_str(s, 1 << 20) })
    }
}

/// Memory from `sys::mmap`, unmapped when dropped. While it lives, its `len` bytes are
/// mapped readable (anonymous memory also writable) at `ptr`, page-aligned, and nothing
/// else unmaps them.
pub(super) struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    /// `len` bytes: anonymous and zeroed when `fd` < 0, else the start of file `fd`
    /// (private, read-only). `None` if `len` is 0 or the map fails.
    pub(super) fn new(len: usize, fd: i32) -> Option<Mapping> {
        if len == 0 {
            return None;
        }
        let ptr = sys::mmap(len, fd);
        if ptr.is_null() {
            None
        } else {
            Some(Mapping { ptr, len })
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` is the mapping `mmap` returned; every slice made from it
        // borrows `self` (see `Symbols`), so none outlives this.
        unsafe { sys::munmap(self.ptr, self.len) };
    }
}

/// The whole file at `path` (NUL-terminated), mapped private and read-only; `None` if it
/// cannot be opened or is empty.
pub(super) fn map_file(path: &[u8]) -> Option<Mapping> {
    let fd = sys::open(path, O_CLOEXEC, 0);
    if fd < 0 {
        return None;
    }
    let len = sys::file_size(fd);
    let file = if len > 0 {
        Mapping::new(len as usize, fd)
    } else {
        None
    };
    sys::close(fd);
    file
}

/// A module's function symbols, from its file, sorted for lookup.
pub(super) struct Symbols {
    /// The whole file, read-only.
    file: Mapping,
    /// Room for `file`'s symbol count of `FuncSym`s, the first `funcs_len` filled.
    funcs: Mapping,
    funcs_len: usize,
}

impl Symbols {
    fn load() -> Option<Symbols> {
        Symbols::of(map_file(b"/proc/self/exe\0")?)
    }

    /// The symbols of the mapped file of a loaded module (see `file_bytes`).
    pub(super) fn of(file: Mapping) -> Option<Symbols> {
        // SAFETY: see `file_bytes`; the slice dies with `elf` below, before `file` moves.
        let elf = Elf::parse(unsafe { file_bytes(&file) })?;
        let cap = elf.symbol_count().max(1);
        let funcs = Mapping::new(cap.checked_mul(core::mem::size_of::<FuncSym>())?, -1)?;
        // SAFETY: `funcs` is a fresh anonymous mapping of exactly `cap` `FuncSym`s: page
        // aligned (more than `FuncSym` needs), zero-filled, and all-zero bytes are a valid
        // `FuncSym` (integers only). Nothing else has its address, and `buf` dies before
        // `funcs` moves into the result.
        let buf = unsafe { core::slice::from_raw_parts_mut(funcs.ptr as *mut FuncSym, cap) };
        let funcs_len = elf.sorted_functions(buf);
        Some(Symbols {
            file,
            funcs,
            funcs_len,
        })
    }

    /// Does `filter` select the function whose entry is at link-time `addr`? A function
    /// with several names (aliases) is selected if any of them is.
    pub(super) fn selects(&self, filter: &Filter<'_>, addr: u64) -> bool {
        // SAFETY: see `file_bytes`; the slice borrows `self`.
        let elf = match Elf::parse(unsafe { file_bytes(&self.file) }) {
            Some(e) => e,
            None => return false,
        };
        // SAFETY: `load` filled the first `funcs_len` (at most the capacity) `FuncSym`s of
        // the aligned mapping, which lives as long as `self`, and nothing writes it any more.
        let funcs = unsafe {
            core::slice::from_raw_parts(self.funcs.ptr as *const FuncSym, self.funcs_len)
        };
        at_address(funcs, addr)
            .iter()
            .any(|f| filter.selects(elf.name(f.index)))
    }

    /// The `PADTRIM_ARGS` fields of the function whose entry is at link-time `addr` (those of
    /// all its names).
    pub(super) fn arg_mask(&self, spec: &crate::args::ArgSpec<'_>, addr: u64) -> u16 {
        // SAFETY: as in `selects`.
        let elf = match Elf::parse(unsafe { file_bytes(&self.file) }) {
            Some(e) => e,
            None => return 0,
        };
        // SAFETY: as in `selects`.
        let funcs = unsafe {
            core::slice::from_raw_parts(self.funcs.ptr as *const FuncSym, self.funcs_len)
        };
        at_address(funcs, addr)
            .iter()
            .fold(0, |m, f| m | spec.mask(elf.name(f.index)))
    }
}

/// The bytes of the file mapping `file`, borrowed from it.
///
/// # Safety
/// `file` must map the file of a module loaded in this process (the program's own
/// executable, `/proc/self/exe`, as `Symbols::load` maps, or a shared library, as the
/// preloaded runtime maps), so that its bytes do not change while borrowed: the mapping is
/// private and read-only, and the runtime assumes, like the loader that mapped the module
/// from the same file, that the file is not rewritten in place while it is loaded (Linux
/// refuses to open a running executable for writing, ETXTBSY; libraries are replaced, not
/// rewritten, by installers). A file truncated under the mapping would make reads fault
/// (SIGBUS), not return other bytes.
pub(super) unsafe fn file_bytes(file: &Mapping) -> &[u8] {
    // SAFETY: the mapping is `len` readable bytes at `ptr` while `file` lives (`Mapping`'s
    // invariant), which the returned borrow outlives not; unchanged per the contract above.
    unsafe { core::slice::from_raw_parts(file.ptr, file.len) }
}

#[cfg(not(padtrim_preload))]
extern "C" fn padtrim_init(_argc: i32, _argv: *const *const u8, envp: *const *const u8) {
    let t0 = sys::ticks();
    let ns0 = sys::monotonic_ns();
    // SAFETY: glibc calls `.init_array` functions with the `envp` of `main`: the process's
    // environment block (for a library loaded later, `environ` at that time), a
    // null-terminated array of NUL-terminated strings. The strings are used only until this
    // function returns (`cfg` and `filter` are locals), and the runtime changes none of
    // them; as for `getenv`, no other thread may change the environment meanwhile (when an
    // executable's constructors run there is normally no other thread yet).
    let cfg = Config::from_env(unsafe { EnvIter::new(envp) });
    if cfg.bad_mode {
        sys::write_all(
            2,
            b"padtrim: PADTRIM_TRACE must be off, entry or graph; tracing is off\n",
        );
    }
    if cfg.mode != Mode::Off && super::unwind::preloaded_runtime() {
        // The preloaded copy traces every module, this one included (see rv/preload.rs).
        if cfg.debug {
            sys::write_all(2, b"padtrim: linked runtime: the preloaded padtrim runtime traces this module; standing down\n");
        }
        return;
    }
    PID.store(sys::getpid(), Ordering::Relaxed);
    let slots = patch::find_slots();
    BIAS.store(slots.bias, Ordering::Relaxed);
    if cfg.mode == Mode::Off {
        if cfg.debug {
            debug_line(&slots, cfg.mode, patch::PatchStats::default());
        }
        return;
    }
    if cfg.mode == Mode::Graph && !super::unwind::interposed() && super::unwind::can_throw() {
        sys::write_all(2, b"padtrim: warning: static program with C++ exceptions: an exception thrown through a traced function ends in std::terminate in graph mode (use entry mode)\n");
    }
    if !open_trace(&cfg, slots.bias, t0, ns0) {
        return;
    }
    let filter = cfg.filter.map(Filter::new).filter(|f| !f.is_everything());
    let args = arg_spec(&cfg);
    let symbols = if filter.is_some() || args.is_some() {
        Symbols::load()
    } else {
        None
    };
    if filter.is_some() && symbols.is_none() {
        sys::write_all(2, b"padtrim: cannot read the symbol table of /proc/self/exe; PADTRIM_FILTER selects nothing\n");
    }
    let args_tramp = super::asm::args_trampoline_addr() as u64;
    let mut patcher = patch::Patcher::begin();
    for i in 0..slots.count() {
        let slot = slots.slot(i);
        if slot == 0 {
            continue;
        }
        let link = (slot as u64).wrapping_sub(slots.bias);
        if let Some(f) = &filter {
            if !symbols.as_ref().map_or(false, |s| s.selects(f, link)) {
                continue;
            }
        }
        let mask = match (&args, &symbols) {
            (Some(a), Some(s)) => s.arg_mask(a, link) & fields_for(cfg.mode),
            _ => 0,
        };
        // Functions with arguments to record jump to the args trampoline (when in reach; the
        // others to the trampoline, without arguments).
        if mask == 0
            || !super::add_arg_slot(slot, mask)
            || !patcher.enable_to(&slots, i, args_tramp)
        {
            patcher.enable(&slots, i);
        }
    }
    let stats = patcher.finish();
    drop(symbols);
    let r = Record {
        time: sys::ticks(),
        addr: stats.patched | stats.skipped << 32,
        tid: sys::gettid(),
        depth: slots.source.to_u16(),
        kind: Kind::Patched,
    };
    super::write_trace(&r.encode());
    if cfg.debug {
        debug_line(&slots, cfg.mode, stats);
    }
    // The main thread's state now, so its first traced call does not pay for the mmap (and
    // look slow in the trace).
    let _ = super::thread_state();
    super::set_fast_words(slots.bias);
    MODE.store(cfg.mode.to_u32(), Ordering::Relaxed);
    ENABLED.store(true, Ordering::Relaxed);
    super::update_fast();
}

/// `PADTRIM_ARGS`, parsed; a spec that does not parse is reported on stderr and ignored.
pub(super) fn arg_spec<'a>(cfg: &Config<'a>) -> Option<crate::args::ArgSpec<'a>> {
    match crate::args::ArgSpec::parse(cfg.args?) {
        Ok(a) if !a.is_empty() => Some(a),
        Ok(_) => None,
        Err(e) => {
            let mut l = Line::new();
            l.text(b"padtrim: PADTRIM_ARGS: ")
                .text(e.message().as_bytes())
                .text(b"; no arguments are recorded\n");
            sys::write_all(2, l.as_bytes());
            None
        }
    }
}

/// The `PADTRIM_ARGS` fields a mode can record: return values need the return hook.
pub(super) fn fields_for(mode: Mode) -> u16 {
    if mode == Mode::Graph {
        crate::args::ALL_ARGS | crate::args::RETVAL
    } else {
        crate::args::ALL_ARGS
    }
}

/// `PADTRIM_DEBUG`: one line on stderr saying where the slot table came from and what
/// startup patching did, e.g.
/// `padtrim: table=descriptor entries=3 islands=0 bias=0x0 mode=entry patched=3 skipped=0`.
fn debug_line(slots: &patch::Slots, mode: Mode, stats: patch::PatchStats) {
    let mut l = Line::new();
    l.text(b"padtrim: table=")
        .text(slots.source.name().as_bytes())
        .text(b" entries=")
        .dec(slots.count() as u64)
        .text(b" islands=")
        .dec(slots.islands_count() as u64)
        .text(b" bias=")
        .hex(slots.bias)
        .text(b" mode=")
        .text(match mode {
            Mode::Off => b"off",
            Mode::Entry => b"entry",
            Mode::Graph => b"graph",
        })
        .text(b" patched=")
        .dec(stats.patched)
        .text(b" skipped=")
        .dec(stats.skipped)
        .text(b"\n");
    sys::write_all(2, l.as_bytes());
}

/// Create the trace file and write its header; false (tracing stays off) on failure.
pub(super) fn open_trace(cfg: &Config<'_>, bias: u64, t0: u64, ns0: u64) -> bool {
    let mut path = [0u8; MAX_PATH + 1];
    if cfg.out.len() > MAX_PATH {
        sys::write_all(2, b"padtrim: PADTRIM_OUT is too long; tracing is off\n");
        return false;
    }
    path[..cfg.out.len()].copy_from_slice(cfg.out);
    let fd = sys::open(
        &path,
        O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
        0o644,
    );
    if fd < 0 {
        sys::write_all(
            2,
            b"padtrim: cannot create the trace file (PADTRIM_OUT); tracing is off\n",
        );
        return false;
    }
    let mut exe = [0u8; MAX_PATH];
    let exe_len = sys::readlink(b"/proc/self/exe\0", &mut exe);
    let header = Header {
        mode: cfg.mode,
        load_bias: bias,
        tick0: t0,
        ns0,
        pid: PID.load(Ordering::Relaxed),
    };
    let mut buf = [0u8; MAX_PATH + 64];
    debug_assert!(header_size(exe_len) <= buf.len());
    match encode_header(&header, &exe[..exe_len], &mut buf) {
        Some(n) => {
            sys::write_all(fd, &buf[..n]);
        }
        None => {
            sys::close(fd);
            return false;
        }
    }
    TRACE_FD.store(fd, Ordering::Relaxed);
    true
}
