//! Startup: read the settings, open the trace, select and patch slots. Runs from
//! `.init_array` before the program's own constructors.

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

/// glibc calls `.init_array` entries with (argc, argv, envp).
#[used]
#[link_section = ".init_array.00100"]
static INIT: extern "C" fn(i32, *const *const u8, *const *const u8) = padtrim_init;

/// Length of a NUL-terminated string, at most `max`.
unsafe fn c_str<'a>(p: *const u8, max: usize) -> &'a [u8] {
    let mut n = 0;
    while n < max && *p.add(n) != 0 {
        n += 1;
    }
    core::slice::from_raw_parts(p, n)
}

struct EnvIter {
    p: *const *const u8,
}

impl Iterator for EnvIter {
    type Item = &'static [u8];
    fn next(&mut self) -> Option<&'static [u8]> {
        if self.p.is_null() {
            return None;
        }
        let s = unsafe { *self.p };
        if s.is_null() {
            return None;
        }
        self.p = unsafe { self.p.add(1) };
        Some(unsafe { c_str(s, 1 << 20) })
    }
}

/// The program's own symbols, mapped from /proc/self/exe, sorted for lookup.
struct Symbols {
    file: *mut u8,
    file_len: usize,
    funcs: *mut FuncSym,
    funcs_cap: usize,
    funcs_len: usize,
}

impl Symbols {
    fn load() -> Option<Symbols> {
        let fd = sys::open(b"/proc/self/exe\0", O_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let len = sys::file_size(fd);
        let file = if len > 0 {
            sys::mmap(len as usize, fd)
        } else {
            core::ptr::null_mut()
        };
        sys::close(fd);
        if file.is_null() {
            return None;
        }
        let mut s = Symbols {
            file,
            file_len: len as usize,
            funcs: core::ptr::null_mut(),
            funcs_cap: 0,
            funcs_len: 0,
        };
        let elf = Elf::parse(s.bytes())?;
        let cap = elf.symbol_count().max(1);
        let funcs = sys::mmap(cap * core::mem::size_of::<FuncSym>(), -1) as *mut FuncSym;
        if funcs.is_null() {
            return None;
        }
        s.funcs = funcs;
        s.funcs_cap = cap;
        let buf = unsafe { core::slice::from_raw_parts_mut(funcs, cap) };
        s.funcs_len = elf.sorted_functions(buf);
        Some(s)
    }

    fn bytes(&self) -> &'static [u8] {
        unsafe { core::slice::from_raw_parts(self.file, self.file_len) }
    }

    /// Does `filter` select the function whose entry is at link-time `addr`? A function
    /// with several names (aliases) is selected if any of them is.
    fn selects(&self, filter: &Filter<'_>, addr: u64) -> bool {
        let elf = match Elf::parse(self.bytes()) {
            Some(e) => e,
            None => return false,
        };
        let funcs = unsafe { core::slice::from_raw_parts(self.funcs, self.funcs_len) };
        at_address(funcs, addr)
            .iter()
            .any(|f| filter.selects(elf.name(f.index)))
    }
}

impl Drop for Symbols {
    fn drop(&mut self) {
        sys::munmap(self.file, self.file_len);
        if !self.funcs.is_null() {
            sys::munmap(
                self.funcs as *mut u8,
                self.funcs_cap * core::mem::size_of::<FuncSym>(),
            );
        }
    }
}

extern "C" fn padtrim_init(_argc: i32, _argv: *const *const u8, envp: *const *const u8) {
    let t0 = sys::ticks();
    let ns0 = sys::monotonic_ns();
    let cfg = Config::from_env(EnvIter { p: envp });
    if cfg.bad_mode {
        sys::write_all(
            2,
            b"padtrim: PADTRIM_TRACE must be off, entry or graph; tracing is off\n",
        );
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
    let symbols = if filter.is_some() {
        Symbols::load()
    } else {
        None
    };
    if filter.is_some() && symbols.is_none() {
        sys::write_all(2, b"padtrim: cannot read the symbol table of /proc/self/exe; PADTRIM_FILTER selects nothing\n");
    }
    let mut patcher = patch::Patcher::begin();
    for i in 0..slots.count() {
        let slot = slots.slot(i);
        if slot == 0 {
            continue;
        }
        if let Some(f) = &filter {
            let link = (slot as u64).wrapping_sub(slots.bias);
            if !symbols.as_ref().map_or(false, |s| s.selects(f, link)) {
                continue;
            }
        }
        patcher.enable(&slots, i);
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
    MODE.store(cfg.mode.to_u32(), Ordering::Relaxed);
    ENABLED.store(true, Ordering::Relaxed);
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
fn open_trace(cfg: &Config<'_>, bias: u64, t0: u64, ns0: u64) -> bool {
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
