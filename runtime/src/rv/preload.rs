//! The runtime preloaded into a dynamically linked program (`LD_PRELOAD`; built by
//! `scripts/runtime-lib --shared` with `--cfg padtrim_preload`): traces every loaded module
//! that carries a padtrim slot table, without the program being linked with the runtime.
//!
//! Modules: the program, every library loaded at start-up (found with `dl_iterate_phdr` when
//! this library's constructor runs), and every library loaded later with `dlopen` (this
//! library wraps `dlopen` and `dlclose` and looks again after each). A module's slot table is
//! the `__mcount_loc` section `padtrim rewrite --slot 4` adds: the loaded image does not say
//! where it is, so the module's file is read (its section headers), after checking that the
//! file's program headers are the loaded ones. Slots are patched only where they lie in the
//! module's text and hold a 4-byte `nop`. A module without a table is left alone (counted
//! under `PADTRIM_DEBUG`).
//!
//! Reach: a slot becomes `jal t0, stub` (`jal` reaches 1 MiB), and the stub, a far jump
//! (`auipc/ld/jr`, clobbering only t1, like the rewriter's islands), goes on to a copy of the
//! trampoline made for the module, which knows the module's load bias and id. Stubs live in
//! the unused bytes at the end of the last page of the module's text (mapped with it, so
//! always near), or else in a page mapped next to the module. Slots that no stub can reach
//! (text over 2 MiB) are skipped and counted (`unreachable=` under `PADTRIM_DEBUG`).
//!
//! Ownership: when this library is in the process, it owns every module, including one that
//! carries a runtime linked into it; such a linked copy finds this library at its start
//! (`padtrim_preloaded`) and stands down, so no slot is patched twice and one trace is
//! written. (The C API of `padtrim.h` is the linked copy's: once it stood down, its calls
//! change nothing; this library does not export it.) `padtrim record` preloads this library
//! only into dynamically linked programs that do not carry the runtime themselves.
//!
//! The trace: function addresses carry the module id in their top 16 bits (the program is
//! id 0, so a trace of a program alone reads like one from a linked runtime), and each traced
//! module is described by `Module` records (path, load bias, build-id, what was patched,
//! unloading).
//!
//! The `dlopen` wrapper keeps glibc seeing the real caller (whose DT_RUNPATH and `$ORIGIN`
//! it searches): see `padtrim_dlopen_prepare`.
//!
//! Programs started with `exec` are not traced: the library takes itself out of
//! `LD_PRELOAD` at start-up, so that they do not start a runtime over the same trace file.
//!
//! Limits: constructors that run before this library's (libraries' start-up constructors)
//! or inside `dlopen` (a new library's own) are not traced; libraries loaded by glibc itself
//! or with `dlmopen`, or by a module whose text page has no room for the wrapper's return
//! stub, are found at the next `dlopen` or `dlclose`.

use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::startup::{file_bytes, map_file, open_trace, EnvIter, Symbols};
use super::{asm, patch, sys, write_trace, ENABLED, LOST, MODE, PID, THREADS};
use crate::config::Config;
use crate::descriptor::{encode_jal_t0, NOP};
use crate::format::{
    module_chunk, module_record, tag, Kind, Mode, ModuleField, Record, TableSource, MAX_PATH,
    RECORD_SIZE,
};
use crate::glob::Filter;
use crate::line::Line;
use crate::module::{
    far_jump_stub, image_bounds, in_loaded_file_bytes, text_slack, ModuleFile, PHDR_SIZE, STUB_SIZE,
};
use crate::thread::ThreadState;

const PAGE: usize = 4096;
/// Loaded objects remembered at once (traced or not); more are not traced.
const MAX_MODULES: usize = 256;
/// Stub pages mapped for one module (unmapped when it is unloaded).
const MAX_PAGES: usize = 8;
/// Stubs one module can use.
const MAX_STUBS: usize = 16;

/// Exported so that a runtime linked into a module can tell it is here (see
/// `unwind::preloaded_runtime`); its value is the trace format version.
#[no_mangle]
#[used]
pub static padtrim_preloaded: u32 = crate::format::VERSION;

/// A loaded object this library has looked at. Written only under `SCAN`.
struct Module {
    /// The slot is in use.
    live: AtomicBool,
    /// Its slots were patched (it has a table).
    traced: AtomicBool,
    /// Module id in the trace.
    id: AtomicU32,
    /// `dlpi_phdr`: where its program headers are mapped, unique while it is loaded.
    key: AtomicUsize,
    /// `dlpi_addr`: load bias.
    bias: AtomicU64,
    /// The page holding its trampoline copy (0 if none).
    copy: AtomicUsize,
    /// Pages of stubs mapped for it.
    pages: [AtomicUsize; MAX_PAGES],
}

#[allow(clippy::declare_interior_mutable_const)]
const NO_PAGE: AtomicUsize = AtomicUsize::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const NO_MODULE: Module = Module {
    live: AtomicBool::new(false),
    traced: AtomicBool::new(false),
    id: AtomicU32::new(0),
    key: AtomicUsize::new(0),
    bias: AtomicU64::new(0),
    copy: AtomicUsize::new(0),
    pages: [NO_PAGE; MAX_PAGES],
};
static MODULES: [Module; MAX_MODULES] = [NO_MODULE; MAX_MODULES];

/// Held while modules are looked for, patched or forgotten (and across `fork`).
static SCAN: AtomicBool = AtomicBool::new(false);
/// `PADTRIM_DEBUG`.
static DEBUG: AtomicBool = AtomicBool::new(false);
/// `PADTRIM_FILTER`, copied at start-up (the environment may change later): address and
/// length of bytes that are never written or unmapped afterwards (0, 0 when there is none).
static FILTER_AT: AtomicUsize = AtomicUsize::new(0);
static FILTER_LEN: AtomicUsize = AtomicUsize::new(0);
/// `PADTRIM_ARGS`, copied at start-up like `PADTRIM_FILTER` (only if it parses), and the
/// fields the mode can record (`startup::fields_for`).
static ARGS_AT: AtomicUsize = AtomicUsize::new(0);
static ARGS_LEN: AtomicUsize = AtomicUsize::new(0);
static ARG_FIELDS: AtomicU32 = AtomicU32::new(0);
/// Next module id: an `AtomicU32` in memory shared with forked children (so a child and its
/// parent never give one id to two modules), or 0 before start-up; `NEXT_ID_LOCAL` if that
/// page could not be had.
static NEXT_ID_AT: AtomicUsize = AtomicUsize::new(0);
static NEXT_ID_LOCAL: AtomicU32 = AtomicU32::new(1);
/// `dlopen` and `dlclose` of the next object in the lookup order (glibc's).
static REAL_DLOPEN: AtomicUsize = AtomicUsize::new(0);
static REAL_DLCLOSE: AtomicUsize = AtomicUsize::new(0);

// The trampoline copied next to nothing in particular, once per traced module: like
// `padtrim_trampoline` (the same fast path, `fast_entry!`), but it reads its words from the
// literals at its start, and its slow path calls `on_entry_module` through an absolute
// address and hands it the module's load bias and id (tag). The literals: `on_entry_module`,
// load bias, module tag, the address of the fast flag (`padtrim_fast`), load bias + 4 minus
// the tag, the thread pointer offset of `padtrim_tls_state`, `padtrim_return_hook`,
// `on_entry_module_args` (for the args entry, `padtrim_copy_args_entry`). It refers
// to nothing outside itself (PC-relative to its own start, with relaxation off so the linker
// leaves the `auipc/addi` pairs as they are), so a byte copy works anywhere. Entered from a
// stub with t0 = slot + 4, ra = the traced function's return address, sp = its entry sp.
global_asm!(
    ".pushsection .text.padtrim_copy,\"ax\",@progbits",
    ".option push",
    ".option norelax",
    ".p2align 3",
    ".globl padtrim_copy_start",
    ".hidden padtrim_copy_start",
    "padtrim_copy_start:",
    ".dword 0", // on_entry_module
    ".dword 0", // load bias
    ".dword 0", // module tag
    ".dword 0", // &padtrim_fast (the fast flag)
    ".dword 0", // load bias + 4 - module tag
    ".dword 0", // thread pointer offset of padtrim_tls_state
    ".dword 0", // padtrim_return_hook
    ".dword 0", // on_entry_module_args
    ".globl padtrim_copy_entry",
    ".hidden padtrim_copy_entry",
    "padtrim_copy_entry:",
    "padtrim_copy_fast_pc:",
    "auipc t1, %pcrel_hi(padtrim_copy_start)",
    "addi t1, t1, %pcrel_lo(padtrim_copy_fast_pc)",
    "ld t3, 24(t1)",
    "ld t3, 0(t3)",
    "beqz t3, padtrim_copy_slow",
    fast_entry!("32", "40", "48", "padtrim_copy_slow"),
    "padtrim_copy_slow:",
    "addi sp, sp, -160",
    "sd ra, 0(sp)",
    "sd t0, 8(sp)",
    "sd t2, 16(sp)",
    save_arguments!(),
    "padtrim_copy_pc:",
    "auipc t1, %pcrel_hi(padtrim_copy_start)",
    "addi t1, t1, %pcrel_lo(padtrim_copy_pc)",
    "ld a3, 8(t1)",
    "ld a4, 16(t1)",
    "ld t1, 0(t1)",
    "jalr ra, 0(t1)",
    restore_entry_frame!(),
    "jr t0",
    // The entry of the module's functions whose arguments are recorded (`PADTRIM_ARGS`):
    // always the slow path, calling on_entry_module_args (which reads a0 ... a7 from the
    // frame).
    ".globl padtrim_copy_args_entry",
    ".hidden padtrim_copy_args_entry",
    "padtrim_copy_args_entry:",
    "addi sp, sp, -160",
    "sd ra, 0(sp)",
    "sd t0, 8(sp)",
    "sd t2, 16(sp)",
    save_arguments!(),
    "padtrim_copy_args_pc:",
    "auipc t1, %pcrel_hi(padtrim_copy_start)",
    "addi t1, t1, %pcrel_lo(padtrim_copy_args_pc)",
    "ld a3, 8(t1)",
    "ld a4, 16(t1)",
    "ld t1, 56(t1)",
    "jalr ra, 0(t1)",
    restore_entry_frame!(),
    "jr t0",
    ".globl padtrim_copy_end",
    ".hidden padtrim_copy_end",
    "padtrim_copy_end:",
    ".option pop",
    ".popsection",
);

/// (start, entry, end) of the trampoline template above, at run time.
fn copy_template() -> (usize, usize, usize) {
    let (start, entry, end): (usize, usize, usize);
    // SAFETY: `lla` only computes addresses of symbols defined above in this module
    // (`pure, nomem, nostack`).
    unsafe {
        core::arch::asm!("lla {0}, padtrim_copy_start", "lla {1}, padtrim_copy_entry",
                         "lla {2}, padtrim_copy_end",
                         out(reg) start, out(reg) entry, out(reg) end,
                         options(pure, nomem, nostack));
    }
    (start, entry, end)
}

/// Offset of `padtrim_copy_args_entry` from the start of the template.
fn copy_args_offset() -> usize {
    let (start, args): (usize, usize);
    // SAFETY: as in `copy_template`.
    unsafe {
        core::arch::asm!("lla {0}, padtrim_copy_start", "lla {1}, padtrim_copy_args_entry",
                         out(reg) start, out(reg) args, options(pure, nomem, nostack));
    }
    args - start
}

/// Called by a module's trampoline copy on every entry of a patched function of that module.
///
/// # Safety
/// As `padtrim_on_entry`'s; `bias` and `module_tag` are the module's, from the copy's
/// literals.
unsafe extern "C" fn on_entry_module(
    slot: usize,
    ret_slot: *mut usize,
    sp: usize,
    bias: u64,
    module_tag: u64,
) {
    let now = sys::ticks();
    let func = (slot as u64).wrapping_sub(bias) | module_tag;
    // SAFETY: our contract is `record_entry`'s.
    unsafe { super::record_entry(func, ret_slot, sp, now, 0) };
}

/// Called by a module's trampoline copy (its args entry) on every entry of a function of
/// that module whose arguments are recorded.
///
/// # Safety
/// As `on_entry_module`'s; the frame also holds a0 ... a7 (see `padtrim_on_entry_args`).
unsafe extern "C" fn on_entry_module_args(
    slot: usize,
    ret_slot: *mut usize,
    sp: usize,
    bias: u64,
    module_tag: u64,
) {
    let now = sys::ticks();
    let func = (slot as u64).wrapping_sub(bias) | module_tag;
    // SAFETY: our contract is `record_entry_args`'s.
    unsafe { super::record_entry_args(func, slot, ret_slot, sp, now) };
}

/// `struct dl_phdr_info` (glibc, 64-bit), the fields we read.
#[repr(C)]
struct DlPhdrInfo {
    addr: usize,
    name: *const u8,
    phdr: *const u8,
    phnum: u16,
}

type IterateCallback = extern "C" fn(*const DlPhdrInfo, usize, *mut u8) -> i32;
type AtforkHandler = extern "C" fn();

extern "C" {
    fn getenv(name: *const u8) -> *const u8;
    fn setenv(name: *const u8, value: *const u8, overwrite: i32) -> i32;
    fn unsetenv(name: *const u8) -> i32;
    fn dl_iterate_phdr(callback: IterateCallback, data: *mut u8) -> i32;
    fn __register_atfork(
        prepare: Option<AtforkHandler>,
        parent: Option<AtforkHandler>,
        child: Option<AtforkHandler>,
        dso: *mut u8,
    ) -> i32;
}

/// One pass over the loaded objects: what it found, for `PADTRIM_DEBUG`.
struct Scan<'f> {
    filter: Option<Filter<'f>>,
    debug: bool,
    /// The next object `dl_iterate_phdr` reports is the program (it comes first).
    first: bool,
    /// `MODULES` entries seen in this pass.
    seen: [bool; MAX_MODULES],
    traced: u64,
    without_table: u64,
    refused: u64,
    patched: u64,
    skipped: u64,
}

impl Scan<'static> {
    fn new() -> Scan<'static> {
        Scan {
            filter: filter().map(Filter::new).filter(|f| !f.is_everything()),
            debug: DEBUG.load(Ordering::Relaxed),
            first: true,
            seen: [false; MAX_MODULES],
            traced: 0,
            without_table: 0,
            refused: 0,
            patched: 0,
            skipped: 0,
        }
    }
}

impl Scan<'_> {
    /// Visit every loaded object (new ones are patched), then forget the ones that are gone.
    fn run(&mut self) {
        // SAFETY: `dl_iterate_phdr` calls `on_object` with `self` as its data, synchronously,
        // and does not keep it; `self` is not otherwise used meanwhile.
        unsafe { dl_iterate_phdr(on_object, self as *mut Scan<'_> as *mut u8) };
        for (i, m) in MODULES.iter().enumerate() {
            if m.live.load(Ordering::Relaxed) && !self.seen[i] {
                forget(m);
            }
        }
    }
}

/// The `PADTRIM_FILTER` copy made at start-up.
fn filter() -> Option<&'static [u8]> {
    let at = FILTER_AT.load(Ordering::Acquire);
    if at == 0 {
        return None;
    }
    // SAFETY: `FILTER_AT`/`FILTER_LEN` are set once, at start-up, to bytes of a mapping made
    // for them, filled before the (Release) store and never written or unmapped afterwards.
    Some(unsafe {
        core::slice::from_raw_parts(at as *const u8, FILTER_LEN.load(Ordering::Relaxed))
    })
}

/// `PADTRIM_ARGS` as copied at start-up (`None`: no arguments are recorded).
fn arg_spec() -> Option<crate::args::ArgSpec<'static>> {
    let at = ARGS_AT.load(Ordering::Acquire);
    if at == 0 {
        return None;
    }
    // SAFETY: as in `filter`, for `ARGS_AT`/`ARGS_LEN`.
    let bytes =
        unsafe { core::slice::from_raw_parts(at as *const u8, ARGS_LEN.load(Ordering::Relaxed)) };
    crate::args::ArgSpec::parse(bytes).ok()
}

fn lock_scan() {
    while SCAN
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
}

fn unlock_scan() {
    SCAN.store(false, Ordering::Release);
}

/// `dl_iterate_phdr` callback: look at one loaded object.
extern "C" fn on_object(info: *const DlPhdrInfo, size: usize, data: *mut u8) -> i32 {
    // SAFETY: `Scan::run` passes its `Scan` as `data`, which nothing else uses during the
    // iteration.
    let scan = unsafe { &mut *(data as *mut Scan<'_>) };
    let main = core::mem::replace(&mut scan.first, false);
    if info.is_null() || size < core::mem::size_of::<DlPhdrInfo>() {
        return 0;
    }
    // SAFETY: glibc passes a valid `dl_phdr_info` of `size` bytes (checked to hold the
    // fields we read) for the duration of the call.
    let info = unsafe { &*info };
    if info.phdr.is_null() {
        return 0;
    }
    // SAFETY: `dlpi_phdr` points to the object's `dlpi_phnum` program headers, mapped as
    // long as the object is loaded; glibc holds its loader lock during the callback, so the
    // object cannot be unloaded while we use them (only until we return).
    let phdrs = unsafe { core::slice::from_raw_parts(info.phdr, info.phnum as usize * PHDR_SIZE) };
    let key = info.phdr as usize;
    let bias = info.addr as u64;
    if let Some(i) = MODULES.iter().position(|m| {
        m.live.load(Ordering::Relaxed)
            && m.key.load(Ordering::Relaxed) == key
            && m.bias.load(Ordering::Relaxed) == bias
    }) {
        scan.seen[i] = true;
        return 0;
    }
    if is_ours(phdrs, bias) {
        return 0;
    }
    let i = match MODULES.iter().position(|m| !m.live.load(Ordering::Relaxed)) {
        Some(i) => i,
        None => {
            scan.refused += 1;
            debug_skip(scan.debug, info.name, main, b"too many loaded objects");
            return 0;
        }
    };
    let m = &MODULES[i];
    m.key.store(key, Ordering::Relaxed);
    m.bias.store(bias, Ordering::Relaxed);
    m.traced.store(false, Ordering::Relaxed);
    m.copy.store(0, Ordering::Relaxed);
    for p in m.pages.iter() {
        p.store(0, Ordering::Relaxed);
    }
    m.live.store(true, Ordering::Relaxed);
    scan.seen[i] = true;
    // SAFETY: the object is loaded and stays so during the call (see above); `phdrs` are
    // its program headers and `bias` its load bias.
    unsafe { load(m, info.name, main, phdrs, bias, scan) };
    0
}

/// Is `bias`/`phdrs` this library?
fn is_ours(phdrs: &[u8], bias: u64) -> bool {
    let here = &padtrim_preloaded as *const u32 as u64;
    crate::module::segments(phdrs).any(|s| {
        s.kind == crate::module::PT_LOAD
            && here >= bias.wrapping_add(s.vaddr)
            && here < bias.wrapping_add(s.vaddr).wrapping_add(s.memsz)
    })
}

fn debug_skip(debug: bool, name: *const u8, main: bool, why: &[u8]) {
    if !debug {
        return;
    }
    let mut path = [0u8; MAX_PATH + 1];
    let len = module_path(name, main, &mut path);
    let mut l = Line::new();
    l.text(b"padtrim: module ")
        .text(&path[..len])
        .text(b": ")
        .text(why)
        .text(b"\n");
    sys::write_all(2, l.as_bytes());
}

/// The absolute path of an object into `out` (NUL-terminated); returns its length.
fn module_path(name: *const u8, main: bool, out: &mut [u8; MAX_PATH + 1]) -> usize {
    let mut n;
    let name = if name.is_null() {
        &[][..]
    } else {
        // SAFETY: `dlpi_name` is a NUL-terminated string owned by the loader, valid while
        // the object is loaded (we use it only during the callback).
        unsafe { super::startup::c_str(name, MAX_PATH) }
    };
    if main || name.is_empty() {
        n = sys::readlink(b"/proc/self/exe\0", &mut out[..MAX_PATH]);
    } else {
        if name[0] != b'/' {
            n = sys::getcwd(&mut out[..MAX_PATH]);
            if n > 0 && n < MAX_PATH {
                out[n] = b'/';
                n += 1;
            }
            let mut rest = name;
            while rest.starts_with(b"./") {
                rest = &rest[2..];
            }
            let take = rest.len().min(MAX_PATH - n);
            out[n..n + take].copy_from_slice(&rest[..take]);
            n += take;
        } else {
            let take = name.len().min(MAX_PATH);
            out[..take].copy_from_slice(&name[..take]);
            n = take;
        }
    }
    out[n] = 0;
    n
}

/// What patching one module did.
#[derive(Default)]
struct Patched {
    patched: u64,
    skipped: u64,
    unreachable: u64,
    stubs: u64,
}

/// Find the table of a newly loaded object, patch its slots and describe it in the trace.
///
/// # Safety
/// The object must be loaded for the whole call (we are inside `dl_iterate_phdr`'s callback),
/// with `phdrs` its loaded program headers and `bias` its load bias.
unsafe fn load(
    m: &Module,
    name: *const u8,
    main: bool,
    phdrs: &[u8],
    bias: u64,
    scan: &mut Scan<'_>,
) {
    let t0 = sys::monotonic_ns();
    let mut path = [0u8; MAX_PATH + 1];
    let len = module_path(name, main, &mut path);
    let file = if main {
        map_file(b"/proc/self/exe\0")
    } else {
        map_file(&path[..len + 1])
    };
    let file = match file {
        Some(f) => f,
        None => {
            // The vdso, or a file gone since it was loaded.
            scan.without_table += 1;
            debug_skip(scan.debug, name, main, b"no file to read; not traced");
            return;
        }
    };
    // SAFETY: `file` maps the file the module was loaded from (`file_bytes`' contract); the
    // borrow ends before `file` moves into `Symbols` below.
    let bytes = unsafe { file_bytes(&file) };
    let elf = match ModuleFile::parse(bytes) {
        Some(e) => e,
        None => {
            scan.without_table += 1;
            debug_skip(
                scan.debug,
                name,
                main,
                b"not a riscv64 ELF file; not traced",
            );
            return;
        }
    };
    let (table, entries) = match elf.slot_table() {
        Some(t) => t,
        None => {
            scan.without_table += 1;
            debug_skip(
                scan.debug,
                name,
                main,
                b"no __mcount_loc table (not rewritten by padtrim rewrite --slot 4); not traced",
            );
            return;
        }
    };
    if elf.program_headers() != Some(phdrs) {
        scan.refused += 1;
        debug_skip(
            scan.debug,
            name,
            main,
            b"the file is not the one loaded (program headers differ); not traced",
        );
        return;
    }
    let table_bytes = entries.saturating_mul(8);
    if !in_loaded_file_bytes(phdrs, table, table_bytes) {
        scan.refused += 1;
        debug_skip(
            scan.debug,
            name,
            main,
            b"__mcount_loc is not in a loaded segment; not traced",
        );
        return;
    }
    // A runtime linked into the module lists its islands after its slots.
    let linked = elf.linked_descriptor(table);
    let count = linked.map_or(entries, |d| d.table_count.min(entries)) as usize;
    let mut build_id = [0u8; 64];
    let build_id_len = elf.build_id().map_or(0, |b| {
        let n = b.len().min(build_id.len());
        build_id[..n].copy_from_slice(&b[..n]);
        n
    });
    let id = if main { 0 } else { next_id() };
    let module_tag = match tag(id, 0) {
        Some(t) if image_bounds(phdrs, PAGE as u64).map_or(false, |(_, hi)| hi >> 48 == 0) => t,
        _ => {
            scan.refused += 1;
            debug_skip(
                scan.debug,
                name,
                main,
                b"no module id left, or addresses too high to tag; not traced",
            );
            return;
        }
    };
    let copy = match make_copy(bias, module_tag) {
        Some(c) => c,
        None => {
            scan.refused += 1;
            debug_skip(
                scan.debug,
                name,
                main,
                b"cannot map the trampoline copy; not traced",
            );
            return;
        }
    };
    m.copy.store(copy, Ordering::Relaxed);
    m.id.store(id, Ordering::Relaxed);
    m.traced.store(true, Ordering::Relaxed);
    let args = arg_spec();
    let symbols = if scan.filter.is_some() || args.is_some() {
        Symbols::of(file)
    } else {
        drop(file);
        None
    };
    let table_at = table.wrapping_add(bias) as usize;
    let fields = ARG_FIELDS.load(Ordering::Relaxed) as u16;
    let mask_of = |link: u64| match (&args, &symbols) {
        (Some(a), Some(s)) => s.arg_mask(a, link) & fields,
        _ => 0,
    };
    let filtered = |link: u64| match (&scan.filter, &symbols) {
        (Some(f), Some(s)) => s.selects(f, link),
        (Some(_), None) => false,
        _ => true,
    };
    // Functions with arguments to record go to the copy's args entry, through stubs of their
    // own (pages next to the module: the text's slack holds the other stubs); the rest to
    // its fast entry.
    let plain = |link: u64| filtered(link) && mask_of(link) == 0;
    let with_args = |link: u64| {
        let mask = if filtered(link) { mask_of(link) } else { 0 };
        mask != 0 && super::add_arg_slot(link.wrapping_add(bias) as usize, mask)
    };
    let mut patched = {
        let selects: Option<&dyn Fn(u64) -> bool> = if scan.filter.is_some() || args.is_some() {
            Some(&plain)
        } else {
            None
        };
        // SAFETY: the object is loaded (our contract); `table_at` is the runtime address of
        // `count` 8-byte aligned entries inside a loaded, file-backed segment of it (checked
        // above against its loaded program headers).
        unsafe {
            patch_module(
                m,
                table_at,
                count,
                phdrs,
                bias,
                copy + COPY_ENTRY_OFFSET.load(Ordering::Relaxed),
                selects,
                true,
            )
        }
    };
    if args.is_some() {
        // SAFETY: as above.
        let more = unsafe {
            patch_module(
                m,
                table_at,
                count,
                phdrs,
                bias,
                copy + copy_args_offset(),
                Some(&with_args),
                false,
            )
        };
        // Slots outside the text or not holding a `nop` were counted by the first pass.
        patched.patched += more.patched;
        patched.unreachable += more.unreachable;
        patched.stubs += more.stubs;
    }
    drop(symbols);
    scan.traced += 1;
    scan.patched += patched.patched;
    scan.skipped += patched.skipped + patched.unreachable;
    describe(id, bias, &path[..len], &build_id[..build_id_len], &patched);
    if patched.unreachable > 0 {
        let mut l = Line::new();
        l.text(b"padtrim: warning: ")
            .text(&path[..len])
            .text(b": ")
            .dec(patched.unreachable)
            .text(b" slots out of jal reach of any stub (text over 2 MiB); their functions are not traced\n");
        sys::write_all(2, l.as_bytes());
    }
    if scan.debug {
        let mut l = Line::new();
        l.text(b"padtrim: module=")
            .text(&path[..len])
            .text(b" id=")
            .dec(u64::from(id))
            .text(b" table=__mcount_loc entries=")
            .dec(count as u64)
            .text(b" patched=")
            .dec(patched.patched)
            .text(b" skipped=")
            .dec(patched.skipped)
            .text(b" unreachable=")
            .dec(patched.unreachable)
            .text(b" stubs=")
            .dec(patched.stubs)
            .text(if linked.is_some() {
                b" linked-runtime=yes"
            } else {
                b""
            })
            .text(b" bias=")
            .hex(bias)
            .text(b" ns=")
            .dec(sys::monotonic_ns().saturating_sub(t0))
            .text(b"\n");
        sys::write_all(2, l.as_bytes());
    }
}

/// Offset of `padtrim_copy_entry` from the start of the template.
static COPY_ENTRY_OFFSET: AtomicUsize = AtomicUsize::new(0);

/// A page holding a copy of the trampoline template that calls `on_entry_module` with this
/// module's `bias` and `module_tag`; returns the page.
fn make_copy(bias: u64, module_tag: u64) -> Option<usize> {
    let (start, entry, end) = copy_template();
    let len = end.checked_sub(start)?;
    if len > PAGE || entry < start + 64 {
        return None;
    }
    COPY_ENTRY_OFFSET.store(entry - start, Ordering::Relaxed);
    let page = sys::mmap(PAGE, -1);
    if page.is_null() {
        return None;
    }
    let f: unsafe extern "C" fn(usize, *mut usize, usize, u64, u64) = on_entry_module;
    // SAFETY: `page` is a fresh anonymous read-write mapping of a page, ours alone; the
    // template is `len` (<= a page) readable bytes of this library's text. The literals are
    // the first eight 8-byte words (the template starts 8-byte aligned, as does the page).
    unsafe {
        core::ptr::copy_nonoverlapping(start as *const u8, page, len);
        let lits = page as *mut u64;
        lits.write(f as usize as u64);
        lits.add(1).write(bias);
        lits.add(2).write(module_tag);
        lits.add(3).write(asm::fast_words().as_ptr() as u64);
        lits.add(4)
            .write(bias.wrapping_add(4).wrapping_sub(module_tag));
        lits.add(5).write(asm::tls_offset());
        lits.add(6).write(asm::return_hook_addr() as u64);
        let fa: unsafe extern "C" fn(usize, *mut usize, usize, u64, u64) = on_entry_module_args;
        lits.add(7).write(fa as usize as u64);
    }
    // SAFETY: the page is ours alone (nobody jumps into it yet); read and execute is all
    // that will be done with it from now on.
    if unsafe { sys::mprotect(page as usize, PAGE, sys::PROT_READ | sys::PROT_EXEC) } != 0 {
        // SAFETY: our own fresh mapping, not used by anything.
        unsafe { sys::munmap(page, PAGE) };
        return None;
    }
    sys::flush_icache(page as usize, page as usize + len);
    Some(page as usize)
}

/// Patch the module's slots: each `nop` in the table, inside the module's text and selected by
/// the filter, becomes `jal t0, stub`, where the stub jumps to `target` (its trampoline copy).
///
/// # Safety
/// The module must be loaded for the whole call, `phdrs` being its loaded program headers,
/// `bias` its load bias, and `table_at` the runtime address of `count` 8-byte aligned entries
/// inside one of its loaded, file-backed segments. `target` must be the entry of a
/// trampoline copy made for it. `use_slack`: stubs may go in the unused end of the text (only
/// one pass over a module may put them there, as each pass starts from the same slack).
unsafe fn patch_module(
    m: &Module,
    table_at: usize,
    count: usize,
    phdrs: &[u8],
    bias: u64,
    target: usize,
    selects: Option<&dyn Fn(u64) -> bool>,
    use_slack: bool,
) -> Patched {
    let mut out = Patched::default();
    let mut stubs = [0usize; MAX_STUBS];
    let mut nstubs = 0;
    let mut slack = [(0u64, 0u64); 4];
    let nslack = if use_slack {
        text_slack(phdrs, PAGE as u64, STUB_SIZE, &mut slack)
    } else {
        0
    };
    let mut slack_used = [false; 4];
    // The module's text (link-time [start, end) of its executable segments' file bytes).
    let mut text = [(0u64, 0u64); 8];
    let mut ntext = 0;
    for seg in crate::module::segments(phdrs) {
        if seg.kind == crate::module::PT_LOAD
            && seg.flags & crate::module::PF_X != 0
            && ntext < text.len()
        {
            text[ntext] = (seg.vaddr, seg.vaddr.saturating_add(seg.filesz));
            ntext += 1;
        }
    }
    let text = &text[..ntext];
    let mut last_stub = 0usize;
    let mut p = patch::Patcher::begin();
    for i in 0..count {
        // SAFETY: `i < count`: an aligned entry of the table, mapped while the module is
        // loaded (our contract); nothing writes it.
        let link = unsafe { core::ptr::read((table_at as *const u64).add(i)) };
        if link == 0 {
            continue; // an entry the linker left empty
        }
        let slot = link.wrapping_add(bias) as usize;
        let in_text = text
            .iter()
            .any(|&(lo, hi)| lo <= link && link < hi.saturating_sub(3));
        if slot & 3 != 0 || !in_text || link >> 48 != 0 {
            out.skipped += 1;
            continue;
        }
        if let Some(selects) = selects {
            if !selects(link) {
                continue;
            }
        }
        // SAFETY: `slot` is 4-byte aligned and inside the file-backed part of a loaded
        // executable segment of the module (checked just above), mapped while it is loaded;
        // atomic because other threads may be executing it.
        let insn =
            unsafe { (*(slot as *const core::sync::atomic::AtomicU32)).load(Ordering::Relaxed) };
        if insn != NOP {
            out.skipped += 1;
            continue;
        }
        let mut stub = if last_stub != 0 && encode_jal_t0(slot as u64, last_stub as u64).is_some() {
            Some(last_stub)
        } else {
            stubs[..nstubs]
                .iter()
                .copied()
                .find(|&s| encode_jal_t0(slot as u64, s as u64).is_some())
        };
        if stub.is_none() && nstubs < MAX_STUBS {
            // In the unused end of a text page of the module, else in a page next to it.
            for k in 0..nslack {
                let at = slack[k].0.wrapping_add(bias) as usize;
                if slack_used[k] || encode_jal_t0(slot as u64, at as u64).is_none() {
                    continue;
                }
                slack_used[k] = true;
                let words = far_jump_stub(target as u64);
                let mut ok = true;
                for (w, word) in words.iter().enumerate() {
                    // SAFETY: `at` is 8-byte aligned, and `at .. at + STUB_SIZE` lies in
                    // the unused end of the last page of a loaded text segment of the
                    // module, mapped with it and used by nothing (`text_slack`).
                    ok &= unsafe { p.store_word(at + 4 * w, *word) };
                }
                p.publish_now();
                if ok {
                    stub = Some(at);
                    break;
                }
            }
            if stub.is_none() {
                stub = stub_page(m, slot, phdrs, bias, target);
            }
            if let Some(s) = stub {
                stubs[nstubs] = s;
                nstubs += 1;
            }
        }
        last_stub = stub.unwrap_or(last_stub);
        let insn = stub.and_then(|s| encode_jal_t0(slot as u64, s as u64));
        match insn {
            // SAFETY: `slot` is a slot of the module's text holding a `nop` (checked above);
            // the stub it will jump to is complete and published.
            Some(insn) if unsafe { p.store_word(slot, insn) } => out.patched += 1,
            Some(_) => out.skipped += 1,
            None => out.unreachable += 1,
        }
    }
    p.finish();
    out.stubs = nstubs as u64;
    out
}

/// A stub in a page mapped within `jal` reach of `slot`, next to the module (below it first:
/// above a program is where its heap grows). The page is remembered in `m` for unloading.
fn stub_page(m: &Module, slot: usize, phdrs: &[u8], bias: u64, target: usize) -> Option<usize> {
    let free = m
        .pages
        .iter()
        .position(|p| p.load(Ordering::Relaxed) == 0)?;
    let (lo, hi) = image_bounds(phdrs, PAGE as u64)?;
    let (lo, hi) = (
        lo.wrapping_add(bias) as usize,
        hi.wrapping_add(bias) as usize,
    );
    let below = (0..9).map(|k| lo.wrapping_sub(PAGE << k));
    let above = (0..9).map(|k| {
        if k == 0 {
            hi
        } else {
            hi.wrapping_add(PAGE << (k - 1))
        }
    });
    for want in below.chain(above) {
        if encode_jal_t0(slot as u64, want as u64).is_none() {
            continue;
        }
        let page = sys::mmap_near(want, PAGE);
        if page.is_null() {
            continue;
        }
        if encode_jal_t0(slot as u64, page as u64).is_none() {
            // SAFETY: our own fresh mapping, not used by anything.
            unsafe { sys::munmap(page, PAGE) };
            continue;
        }
        let words = far_jump_stub(target as u64);
        // SAFETY: `page` is a fresh anonymous read-write page, ours alone; the stub's six
        // words fit at its (page-aligned) start.
        unsafe { core::ptr::copy_nonoverlapping(words.as_ptr(), page as *mut u32, words.len()) };
        // SAFETY: nobody jumps into the page yet; read and execute is all that will be done
        // with it from now on.
        if unsafe { sys::mprotect(page as usize, PAGE, sys::PROT_READ | sys::PROT_EXEC) } != 0 {
            // SAFETY: our own fresh mapping, not used by anything.
            unsafe { sys::munmap(page, PAGE) };
            return None;
        }
        sys::flush_icache(page as usize, page as usize + STUB_SIZE as usize);
        m.pages[free].store(page as usize, Ordering::Relaxed);
        return Some(page as usize);
    }
    None
}

/// A fresh module id (never 0, the program's).
fn next_id() -> u32 {
    let at = NEXT_ID_AT.load(Ordering::Relaxed);
    if at == 0 {
        return NEXT_ID_LOCAL.fetch_add(1, Ordering::Relaxed);
    }
    // SAFETY: `NEXT_ID_AT` is set once, at start-up, to a page-aligned shared mapping that
    // is never unmapped; its first word is used only as this atomic.
    let shared = unsafe { &*(at as *const AtomicU32) };
    shared.fetch_add(1, Ordering::Relaxed)
}

/// Write what identifies a traced module: its load bias, path, build-id and what patching
/// did, as `Module` records.
fn describe(id: u32, bias: u64, path: &[u8], build_id: &[u8], p: &Patched) {
    let mut buf = [0u8; 16 * RECORD_SIZE];
    let mut n = 0;
    let mut push = |r: Record, buf: &mut [u8; 16 * RECORD_SIZE]| {
        if n == 16 {
            write_trace(&buf[..n * RECORD_SIZE]);
            n = 0;
        }
        buf[n * RECORD_SIZE..(n + 1) * RECORD_SIZE].copy_from_slice(&r.encode());
        n += 1;
    };
    let now = sys::ticks();
    push(module_record(id, ModuleField::Loaded, now, bias), &mut buf);
    let mut i = 0;
    while let Some(r) = module_chunk(id, ModuleField::Path, path, i) {
        push(r, &mut buf);
        i += 1;
    }
    i = 0;
    while let Some(r) = module_chunk(id, ModuleField::BuildId, build_id, i) {
        push(r, &mut buf);
        i += 1;
    }
    let counts = p.patched | (p.skipped + p.unreachable) << 32;
    push(
        module_record(id, ModuleField::Patched, sys::ticks(), counts),
        &mut buf,
    );
    write_trace(&buf[..n * RECORD_SIZE]);
}

/// A module is gone: release what was made for it. Its text is unmapped, so nothing can
/// enter its stubs or its trampoline copy any more.
fn forget(m: &Module) {
    if m.traced.load(Ordering::Relaxed) {
        let r = module_record(
            m.id.load(Ordering::Relaxed),
            ModuleField::Unloaded,
            sys::ticks(),
            0,
        );
        write_trace(&r.encode());
        if DEBUG.load(Ordering::Relaxed) {
            let mut l = Line::new();
            l.text(b"padtrim: module id=")
                .dec(u64::from(m.id.load(Ordering::Relaxed)))
                .text(b" unloaded\n");
            sys::write_all(2, l.as_bytes());
        }
    }
    for p in m.pages.iter().chain(core::iter::once(&m.copy)) {
        let page = p.swap(0, Ordering::Relaxed);
        if page != 0 {
            // SAFETY: a page this library mapped for the module; the module's slots, the only
            // way into it, were unmapped with the module, and its trampoline copy's callers are
            // its stubs only. (A thread still inside the module's code would be running code
            // the program itself unloaded.)
            unsafe { sys::munmap(page as *mut u8, PAGE) };
        }
    }
    m.traced.store(false, Ordering::Relaxed);
    m.live.store(false, Ordering::Relaxed);
}

/// Look for modules loaded or unloaded since the last look (after `dlopen`, `dlclose`).
fn rescan() {
    if MODE.load(Ordering::Relaxed) == Mode::Off.to_u32() {
        return;
    }
    lock_scan();
    let mut scan = Scan::new();
    scan.run();
    unlock_scan();
}

/// The function of the next object after this one in the lookup order called `name`
/// (NUL-terminated), cached in `cache`.
fn real(cache: &AtomicUsize, name: &[u8]) -> usize {
    let f = cache.load(Ordering::Relaxed);
    if f != 0 {
        return f;
    }
    let f = super::unwind::lookup(super::unwind::RTLD_NEXT, name);
    cache.store(f, Ordering::Relaxed);
    f
}

// `dlopen`: glibc resolves a name without `/` with the search path of the calling module
// (its DT_RUNPATH, `$ORIGIN`), which it finds from `dlopen`'s return address. A wrapper that
// called `dlopen` would make this library the caller. So the real `dlopen` is entered with a
// return address inside the calling module: a far-jump stub written into the unused end of
// that module's text page (see `return_stub`), which comes back to `padtrim_dlopen_resume`,
// with sp still on this wrapper's frame; the modules `dlopen` loaded are then patched. When
// there is no such stub (tracing off, or no room), `dlopen` is tail-called: the program runs
// as without the wrapper, and what it loads is found at the next `dlopen` or `dlclose`.
global_asm!(
    ".text",
    ".globl dlopen",
    ".type dlopen, @function",
    ".p2align 2",
    "dlopen:",
    "addi sp, sp, -32",
    "sd ra, 0(sp)",
    "sd a0, 8(sp)",
    "sd a1, 16(sp)",
    "mv a0, ra",
    "call padtrim_dlopen_prepare",
    "mv t2, a0",
    "mv t3, a1",
    "ld a0, 8(sp)",
    "ld a1, 16(sp)",
    "ld ra, 0(sp)",
    "beqz t3, 1f",
    "mv ra, t3",
    "jr t2",
    "1:",
    "addi sp, sp, 32",
    "jr t2",
    ".size dlopen, . - dlopen",
    ".globl padtrim_dlopen_resume",
    ".hidden padtrim_dlopen_resume",
    "padtrim_dlopen_resume:",
    "sd a0, 8(sp)",
    "call padtrim_dlopen_done",
    "ld a0, 8(sp)",
    "ld ra, 0(sp)",
    "addi sp, sp, 32",
    "ret",
);

/// What the `dlopen` wrapper jumps to: glibc's `dlopen`, and the return address to give it
/// (0: tail-call it with the caller's own).
#[repr(C)]
pub struct DlopenTargets {
    real: usize,
    stub: usize,
}

/// Called by the `dlopen` wrapper with its caller's return address.
#[no_mangle]
extern "C" fn padtrim_dlopen_prepare(caller: usize) -> DlopenTargets {
    let real = real(&REAL_DLOPEN, b"dlopen\0");
    if real == 0 {
        sys::fatal(b"padtrim: cannot find the real dlopen (dlsym RTLD_NEXT)\n");
    }
    let stub = if MODE.load(Ordering::Relaxed) == Mode::Off.to_u32() {
        0
    } else {
        lock_scan();
        let stub = return_stub(caller);
        unlock_scan();
        if stub == 0 && DEBUG.load(Ordering::Relaxed) {
            sys::write_all(2, b"padtrim: dlopen: no room for a return stub in the calling module; what it loads is patched at the next dlopen or dlclose\n");
        }
        stub
    };
    DlopenTargets { real, stub }
}

/// Called by the `dlopen` wrapper after glibc's `dlopen` returned `handle`.
#[no_mangle]
extern "C" fn padtrim_dlopen_done(handle: usize) {
    if handle != 0 {
        rescan();
    }
}

/// Runtime address of `padtrim_dlopen_resume`.
fn resume_addr() -> usize {
    let p: usize;
    // SAFETY: `lla` only computes the address of a symbol defined above (`pure, nomem,
    // nostack`).
    unsafe {
        core::arch::asm!("lla {0}, padtrim_dlopen_resume", out(reg) p, options(pure, nomem, nostack));
    }
    p
}

/// A far-jump stub to `padtrim_dlopen_resume` inside the loaded module that contains
/// `caller` (0 if there is none, or no room): in the last 24 bytes of the unused end of one of
/// its text pages, when that end has room for a slot stub at its start too. Made once per
/// module (found again by its bytes). Call with `SCAN` held.
fn return_stub(caller: usize) -> usize {
    struct Find {
        caller: u64,
        stub: usize,
    }
    extern "C" fn visit(info: *const DlPhdrInfo, size: usize, data: *mut u8) -> i32 {
        // SAFETY: `return_stub` passes its `Find`, used by nothing else meanwhile.
        let find = unsafe { &mut *(data as *mut Find) };
        if info.is_null() || size < core::mem::size_of::<DlPhdrInfo>() {
            return 0;
        }
        // SAFETY: glibc's valid `dl_phdr_info` for the duration of the call.
        let info = unsafe { &*info };
        if info.phdr.is_null() {
            return 0;
        }
        // SAFETY: as in `on_object`: the object's program headers, mapped while it is
        // loaded, which it stays during the callback (glibc holds its loader lock).
        let phdrs =
            unsafe { core::slice::from_raw_parts(info.phdr, info.phnum as usize * PHDR_SIZE) };
        let bias = info.addr as u64;
        let link = find.caller.wrapping_sub(bias);
        if !crate::module::in_text(phdrs, link, 1) || is_ours(phdrs, bias) {
            return 0;
        }
        let mut slack = [(0u64, 0u64); 4];
        let n = text_slack(phdrs, PAGE as u64, 2 * STUB_SIZE, &mut slack);
        if let Some(&(_, end)) = slack[..n].first() {
            let at = end.wrapping_add(bias).wrapping_sub(STUB_SIZE) as usize;
            let words = far_jump_stub(resume_addr() as u64);
            // SAFETY: `at .. at + STUB_SIZE` is the end of the unused end of a loaded text
            // page of the object (`text_slack`), mapped while it is loaded, 8-byte aligned.
            let present = (0..words.len()).all(|w| unsafe {
                (*((at + 4 * w) as *const core::sync::atomic::AtomicU32)).load(Ordering::Relaxed)
            } == words[w]);
            let mut ok = present;
            if !present {
                let mut p = patch::Patcher::begin();
                ok = true;
                for (w, word) in words.iter().enumerate() {
                    // SAFETY: as above: unused bytes of the object's text, nothing uses them
                    // (a slot stub, if any, is at the start of this range, 24+ bytes before).
                    ok &= unsafe { p.store_word(at + 4 * w, *word) };
                }
                p.finish();
            }
            if ok {
                find.stub = at;
            }
        }
        1 // the object containing the caller was found
    }
    let mut find = Find {
        caller: caller as u64,
        stub: 0,
    };
    // SAFETY: `visit` uses only `find`, which outlives the call.
    unsafe { dl_iterate_phdr(visit, &mut find as *mut Find as *mut u8) };
    find.stub
}

/// `dlclose`, then forget the modules it unloaded.
///
/// # Safety
/// As for glibc's `dlclose`: `handle` came from `dlopen`.
#[no_mangle]
pub unsafe extern "C" fn dlclose(handle: *mut u8) -> i32 {
    let f = real(&REAL_DLCLOSE, b"dlclose\0");
    if f == 0 {
        sys::fatal(b"padtrim: cannot find the real dlclose (dlsym RTLD_NEXT)\n");
    }
    // SAFETY: `f` is glibc's `dlclose`, found by name, so of this type.
    let f: unsafe extern "C" fn(*mut u8) -> i32 = unsafe { core::mem::transmute(f) };
    // SAFETY: our caller's argument, passed on.
    let r = unsafe { f(handle) };
    rescan();
    r
}

extern "C" fn fork_prepare() {
    lock_scan();
    patch::lock_for_fork();
}

extern "C" fn fork_parent() {
    patch::unlock_after_fork();
    unlock_scan();
}

/// In the child: it traces on into the same file, its records tagged with its own thread
/// ids, after a `Fork` record; what the parent's threads had buffered is the parent's to
/// write.
extern "C" fn fork_child() {
    patch::unlock_after_fork();
    let parent = PID.load(Ordering::Relaxed);
    let pid = sys::getpid();
    PID.store(pid, Ordering::Relaxed);
    LOST.store(0, Ordering::Relaxed);
    let tid = sys::gettid();
    let slot = asm::tls_slot();
    // SAFETY: this thread's own TLS word.
    let mine = unsafe { *slot };
    for entry in THREADS.iter() {
        let p = entry.load(Ordering::Acquire);
        if p == 0 {
            continue;
        }
        // SAFETY: a registry state (see `thread_state`), never unmapped.
        let st = unsafe { &*(p as *const ThreadState) };
        // SAFETY: a fork child handler runs in the child before it can start a thread, on
        // the thread that called `fork`, which holds no state in a fork handler.
        unsafe { st.reset_after_fork(p == mine, tid) };
    }
    let r = Record {
        time: sys::ticks(),
        addr: u64::from(parent),
        tid: pid,
        depth: 0,
        kind: Kind::Fork,
    };
    write_trace(&r.encode());
    unlock_scan();
}

/// This library's file name as the loader has it (NUL-terminated, in `out`); its length.
fn own_name(out: &mut [u8; MAX_PATH + 1]) -> usize {
    extern "C" fn visit(info: *const DlPhdrInfo, size: usize, data: *mut u8) -> i32 {
        if info.is_null() || size < core::mem::size_of::<DlPhdrInfo>() {
            return 0;
        }
        // SAFETY: glibc's valid `dl_phdr_info` for the call; `data` is `own_name`'s buffer.
        let (info, out) = unsafe { (&*info, &mut *(data as *mut [u8; MAX_PATH + 1])) };
        if info.phdr.is_null() || info.name.is_null() {
            return 0;
        }
        // SAFETY: as in `on_object`.
        let phdrs =
            unsafe { core::slice::from_raw_parts(info.phdr, info.phnum as usize * PHDR_SIZE) };
        if !is_ours(phdrs, info.addr as u64) {
            return 0;
        }
        // SAFETY: the loader's NUL-terminated name of a loaded object, used during the call.
        let name = unsafe { super::startup::c_str(info.name, MAX_PATH) };
        out[..name.len()].copy_from_slice(name);
        out[name.len()] = 0;
        1
    }
    out[0] = 0;
    // SAFETY: `visit` writes only into `out`, which outlives the call.
    unsafe { dl_iterate_phdr(visit, out as *mut [u8; MAX_PATH + 1] as *mut u8) };
    out.iter().position(|&b| b == 0).unwrap_or(0)
}

/// Take this library out of `LD_PRELOAD`, so that a program the traced one executes does not
/// start a runtime of its own over the same trace file (which it would truncate): programs
/// started with `exec` are not traced (children made by `fork` are).
fn leave_ld_preload() {
    let mut own = [0u8; MAX_PATH + 1];
    let own_len = own_name(&mut own);
    if own_len == 0 {
        return;
    }
    let own = &own[..own_len];
    let base = |p: &[u8]| -> usize { p.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1) };
    let own_base = &own[base(own)..];
    // SAFETY: `getenv` with a NUL-terminated name; at start-up no other thread changes the
    // environment. The value is copied before the environment is changed.
    let value = unsafe { getenv(b"LD_PRELOAD\0".as_ptr()) };
    if value.is_null() {
        return;
    }
    // SAFETY: `getenv`'s result is a NUL-terminated string of the environment.
    let value = unsafe { super::startup::c_str(value, MAX_PATH + 1) };
    if value.len() > MAX_PATH {
        return;
    }
    let mut rest = [0u8; MAX_PATH + 1];
    let mut n = 0;
    let mut removed = false;
    for item in value
        .split(|&b| b == b':' || b == b' ')
        .filter(|i| !i.is_empty())
    {
        if item == own || (&item[base(item)..] == own_base && !own_base.is_empty()) {
            removed = true;
            continue;
        }
        if n > 0 {
            rest[n] = b':';
            n += 1;
        }
        rest[n..n + item.len()].copy_from_slice(item);
        n += item.len();
    }
    if !removed {
        return;
    }
    rest[n] = 0;
    // SAFETY: glibc's `setenv`/`unsetenv` with NUL-terminated strings, during start-up, when
    // no other thread uses the environment.
    unsafe {
        if n == 0 {
            unsetenv(b"LD_PRELOAD\0".as_ptr());
        } else {
            setenv(b"LD_PRELOAD\0".as_ptr(), rest.as_ptr(), 1);
        }
    }
}

/// glibc calls `.init_array` entries of libraries with (argc, argv, envp).
#[used]
#[link_section = ".init_array.00100"]
static INIT: extern "C" fn(i32, *const *const u8, *const *const u8) = preload_init;

extern "C" fn preload_init(_argc: i32, _argv: *const *const u8, envp: *const *const u8) {
    let t0 = sys::ticks();
    let ns0 = sys::monotonic_ns();
    // SAFETY: as in `startup::padtrim_init`: glibc's `envp`, used only during this call.
    let cfg = Config::from_env(unsafe { EnvIter::new(envp) });
    if cfg.bad_mode {
        sys::write_all(
            2,
            b"padtrim: PADTRIM_TRACE must be off, entry or graph; tracing is off\n",
        );
    }
    if cfg.mode == Mode::Off {
        if cfg.debug {
            sys::write_all(2, b"padtrim: preload: tracing is off (PADTRIM_TRACE)\n");
        }
        return;
    }
    leave_ld_preload();
    PID.store(sys::getpid(), Ordering::Relaxed);
    DEBUG.store(cfg.debug, Ordering::Relaxed);
    if let Some(f) = cfg.filter {
        let copy = sys::mmap(f.len(), -1);
        if !copy.is_null() {
            // SAFETY: a fresh mapping of `f.len()` bytes, ours alone; written once here,
            // never again (see `filter`).
            unsafe { core::ptr::copy_nonoverlapping(f.as_ptr(), copy, f.len()) };
            FILTER_LEN.store(f.len(), Ordering::Relaxed);
            FILTER_AT.store(copy as usize, Ordering::Release);
        }
    }
    if let Some(a) = super::startup::arg_spec(&cfg).and(cfg.args) {
        let copy = sys::mmap(a.len(), -1);
        if !copy.is_null() {
            // SAFETY: as for the filter above.
            unsafe { core::ptr::copy_nonoverlapping(a.as_ptr(), copy, a.len()) };
            ARGS_LEN.store(a.len(), Ordering::Relaxed);
            ARG_FIELDS.store(
                u32::from(super::startup::fields_for(cfg.mode)),
                Ordering::Relaxed,
            );
            ARGS_AT.store(copy as usize, Ordering::Release);
        }
    }
    let ids = sys::mmap_shared(PAGE);
    if !ids.is_null() {
        // SAFETY: a fresh shared page, ours alone until published below; aligned for u32.
        unsafe { (*(ids as *const AtomicU32)).store(1, Ordering::Relaxed) };
        NEXT_ID_AT.store(ids as usize, Ordering::Relaxed);
    }
    // SAFETY: glibc's `__register_atfork` with handlers that live as long as the process
    // (this library is never unloaded: it is preloaded) and no DSO to unregister them with.
    unsafe {
        __register_atfork(
            Some(fork_prepare),
            Some(fork_parent),
            Some(fork_child),
            core::ptr::null_mut(),
        )
    };
    if !open_trace(&cfg, program_bias(), t0, ns0) {
        return;
    }
    lock_scan();
    let mut scan = Scan::new();
    scan.run();
    unlock_scan();
    let r = Record {
        time: sys::ticks(),
        addr: scan.patched | scan.skipped << 32,
        tid: sys::gettid(),
        depth: TableSource::McountLoc.to_u16(),
        kind: Kind::Patched,
    };
    write_trace(&r.encode());
    if cfg.debug {
        let mut l = Line::new();
        l.text(b"padtrim: preload: mode=")
            .text(cfg.mode.name().as_bytes())
            .text(b" traced=")
            .dec(scan.traced)
            .text(b" without-table=")
            .dec(scan.without_table)
            .text(b" refused=")
            .dec(scan.refused)
            .text(b" patched=")
            .dec(scan.patched)
            .text(b" skipped=")
            .dec(scan.skipped)
            .text(b" ns=")
            .dec(sys::monotonic_ns().saturating_sub(ns0))
            .text(b"\n");
        sys::write_all(2, l.as_bytes());
    }
    if scan.traced == 0 {
        sys::write_all(2, b"padtrim: preload: no loaded module has a __mcount_loc table (rewrite the program with padtrim rewrite --slot 4); nothing is traced\n");
    }
    let _ = super::thread_state();
    MODE.store(cfg.mode.to_u32(), Ordering::Relaxed);
    ENABLED.store(true, Ordering::Relaxed);
    super::update_fast();
}

/// The program's load bias: that of the first object `dl_iterate_phdr` reports.
fn program_bias() -> u64 {
    extern "C" fn first(info: *const DlPhdrInfo, _size: usize, data: *mut u8) -> i32 {
        if !info.is_null() {
            // SAFETY: glibc's valid `dl_phdr_info` for the call; `data` is the `u64` that
            // `program_bias` passed.
            unsafe { *(data as *mut u64) = (*info).addr as u64 };
        }
        1 // stop: the program comes first
    }
    let mut bias = 0u64;
    // SAFETY: `first` writes only `bias`, which outlives the call.
    unsafe { dl_iterate_phdr(first, &mut bias as *mut u64 as *mut u8) };
    bias
}
