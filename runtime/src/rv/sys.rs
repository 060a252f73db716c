//! Raw Linux system calls for riscv64 (no libc needed), and the clock.

use core::arch::asm;

/// `openat` and friends take this as "relative to the working directory".
pub const AT_FDCWD: isize = -100;
/// mmap/mprotect protection bits.
pub const PROT_READ: usize = 1;
/// Writable.
pub const PROT_WRITE: usize = 2;
/// Executable.
pub const PROT_EXEC: usize = 4;
const MAP_PRIVATE: usize = 2;
const MAP_ANONYMOUS: usize = 0x20;

mod nr {
    pub const OPENAT: usize = 56;
    pub const CLOSE: usize = 57;
    pub const LSEEK: usize = 62;
    pub const WRITE: usize = 64;
    pub const READLINKAT: usize = 78;
    pub const EXIT_GROUP: usize = 94;
    pub const CLOCK_GETTIME: usize = 113;
    pub const TGKILL: usize = 131;
    pub const GETPID: usize = 172;
    pub const GETTID: usize = 178;
    pub const MUNMAP: usize = 215;
    pub const MMAP: usize = 222;
    pub const MPROTECT: usize = 226;
    pub const RISCV_FLUSH_ICACHE: usize = 259;
}

/// Linux system call `n` with arguments `a` (unused ones 0); the result or a negative errno.
///
/// # Safety
/// The call must not break what Rust assumes about memory: pointer arguments must be valid
/// for what the kernel reads or writes through them (for the lengths passed), and the call
/// must not unmap, remap or change the protection of memory that live references or the
/// runtime still use, nor otherwise do what Rust code may not (end a thread, etc.).
#[inline(always)]
unsafe fn syscall6(n: usize, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: `ecall` enters the kernel, which clobbers only a0 (the result, declared as an
    // output) and does not touch the user stack (`nostack`); it may read and write memory
    // (no `nomem`/`readonly`), which the caller vouches for (see above).
    unsafe {
        asm!("ecall", in("a7") n, inlateout("a0") a[0] as isize => ret, in("a1") a[1], in("a2") a[2],
         in("a3") a[3], in("a4") a[4], in("a5") a[5], options(nostack));
    }
    ret
}

/// `-EINVAL`, for paths that would make the kernel read past the end of the slice.
const EINVAL: isize = -22;

/// Write all of `buf` to `fd`, retrying short writes and EINTR; false on error.
pub fn write_all(fd: i32, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: the kernel reads at most `buf.len()` bytes from `buf`, a live slice; it
        // writes no memory of ours.
        let n = unsafe {
            syscall6(
                nr::WRITE,
                [fd as usize, buf.as_ptr() as usize, buf.len(), 0, 0, 0],
            )
        };
        if n == -4 {
            continue; // EINTR
        }
        if n <= 0 {
            return false;
        }
        buf = &buf[n as usize..];
    }
    true
}

/// Open a NUL-terminated path; returns the fd or a negative errno (EINVAL if `path` holds
/// no NUL).
pub fn open(path: &[u8], flags: usize, mode: usize) -> i32 {
    if !path.contains(&0) {
        return EINVAL as i32;
    }
    // SAFETY: the kernel reads the path up to its first NUL, which is inside `path`; it
    // writes no memory of ours.
    unsafe {
        syscall6(
            nr::OPENAT,
            [AT_FDCWD as usize, path.as_ptr() as usize, flags, mode, 0, 0],
        ) as i32
    }
}

/// Close a file descriptor. (Closing a descriptor someone else owns is a bug, but not a
/// memory-safety one: mappings outlive their descriptor.)
pub fn close(fd: i32) {
    // SAFETY: `close` takes no pointer and touches no memory of the process.
    unsafe {
        syscall6(nr::CLOSE, [fd as usize, 0, 0, 0, 0, 0]);
    }
}

/// Size of an open file (lseek to the end), or a negative errno.
pub fn file_size(fd: i32) -> isize {
    // SAFETY: `lseek` takes no pointer and touches no memory of the process.
    unsafe { syscall6(nr::LSEEK, [fd as usize, 0, 2, 0, 0, 0]) }
}

/// Read the target of a symlink (NUL-terminated `path`) into `buf`; returns its length (0
/// on error, or if `path` holds no NUL).
pub fn readlink(path: &[u8], buf: &mut [u8]) -> usize {
    if !path.contains(&0) {
        return 0;
    }
    // SAFETY: the kernel reads the path up to its first NUL, inside `path`, and writes at
    // most `buf.len()` bytes into `buf`, a live exclusive slice.
    let n = unsafe {
        syscall6(
            nr::READLINKAT,
            [
                AT_FDCWD as usize,
                path.as_ptr() as usize,
                buf.as_mut_ptr() as usize,
                buf.len(),
                0,
                0,
            ],
        )
    };
    if n < 0 {
        0
    } else {
        n as usize
    }
}

/// Map `len` bytes: anonymous zeroed memory when `fd` < 0, else a private read-only file map.
/// Returns null on failure.
pub fn mmap(len: usize, fd: i32) -> *mut u8 {
    let (prot, flags) = if fd < 0 {
        (PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    } else {
        (PROT_READ, MAP_PRIVATE)
    };
    // SAFETY: no MAP_FIXED and a null hint: the kernel picks an unused range, so the new
    // mapping cannot replace memory anything uses; it reads and writes no memory of ours.
    let p = unsafe { syscall6(nr::MMAP, [0, len, prot, flags, fd as usize, 0]) };
    if p < 0 && p > -4096 {
        core::ptr::null_mut()
    } else {
        p as *mut u8
    }
}

/// Unmap what `mmap` returned.
///
/// # Safety
/// `p` and `len` must be a mapping `mmap` returned (or a part of one), and nothing may use
/// that memory afterwards: no reference or pointer into it may be used again.
pub unsafe fn munmap(p: *mut u8, len: usize) {
    // SAFETY: the caller guarantees nothing uses the range again; `munmap` reads and
    // writes no other memory.
    unsafe {
        syscall6(nr::MUNMAP, [p as usize, len, 0, 0, 0, 0]);
    }
}

/// Change the protection of whole pages; 0 on success.
///
/// # Safety
/// Every access the process (Rust code, the program, other threads) makes to those pages
/// while the new protection holds must be allowed by it: e.g. taking away read or execute
/// from text that runs, or write from data that is written, makes those accesses fault.
pub unsafe fn mprotect(addr: usize, len: usize, prot: usize) -> isize {
    // SAFETY: the caller guarantees the new protection allows every access that follows;
    // `mprotect` reads and writes no memory.
    unsafe { syscall6(nr::MPROTECT, [addr, len, prot, 0, 0, 0]) }
}

/// Make instruction fetch see stores to [start, end): `fence.i` for this hart and the
/// `riscv_flush_icache` syscall (flags 0: all threads) for the others.
pub fn flush_icache(start: usize, end: usize) {
    // SAFETY: `fence.i` only orders this hart's instruction fetches after its stores; it
    // changes no register or memory and does not touch the stack.
    unsafe { asm!("fence.i", options(nostack)) };
    // SAFETY: `riscv_flush_icache` takes the range as numbers (it is not dereferenced; any
    // range is allowed) and changes no memory.
    unsafe {
        syscall6(nr::RISCV_FLUSH_ICACHE, [start, end, 0, 0, 0, 0]);
    }
}

/// Kernel thread id of the caller.
pub fn gettid() -> u32 {
    // SAFETY: `gettid` takes no argument and touches no memory.
    unsafe { syscall6(nr::GETTID, [0; 6]) as u32 }
}

/// Process id.
pub fn getpid() -> u32 {
    // SAFETY: `getpid` takes no argument and touches no memory.
    unsafe { syscall6(nr::GETPID, [0; 6]) as u32 }
}

/// Is thread `tid` of process `pid` still alive?
pub fn thread_alive(pid: u32, tid: u32) -> bool {
    // SAFETY: signal 0 only checks that the thread exists: nothing is delivered, and no
    // memory is touched.
    let r = unsafe { syscall6(nr::TGKILL, [pid as usize, tid as usize, 0, 0, 0, 0]) };
    r != -3 // ESRCH
}

/// CLOCK_MONOTONIC in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = [0i64; 2];
    // SAFETY: the kernel writes one `struct timespec` (two i64 on riscv64) into `ts`, a
    // live local array of exactly that size.
    unsafe {
        syscall6(nr::CLOCK_GETTIME, [1, ts.as_mut_ptr() as usize, 0, 0, 0, 0]);
    }
    (ts[0] as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts[1] as u64)
}

/// The `time` CSR: cheap (about 24 ns under qemu-riscv64 against about 150 ns for the
/// clock_gettime syscall); converted to ns by the reader using `Clock` records.
#[inline(always)]
pub fn ticks() -> u64 {
    let t: u64;
    // SAFETY: `rdtime` only reads the time CSR into a register: no memory, no stack.
    unsafe { asm!("rdtime {0}", out(reg) t, options(nomem, nostack)) };
    t
}

/// Print `msg` on stderr and end the process (status 127).
pub fn fatal(msg: &[u8]) -> ! {
    write_all(2, msg);
    // SAFETY: `exit_group` ends every thread of the process at once and never returns, so
    // no Rust code runs after it (nothing can observe a half-finished state).
    unsafe {
        syscall6(nr::EXIT_GROUP, [127, 0, 0, 0, 0, 0]);
    }
    loop {
        core::hint::spin_loop(); // not reached: exit_group does not return
    }
}
