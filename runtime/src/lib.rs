//! padtrim runtime: patches padtrim slots (4-byte aligned `nop`s at function entries) into
//! `jal t0, padtrim_trampoline` at program startup and records function entries (and, in graph
//! mode, exits) into a compact binary trace.
//!
//! The portable parts (trace format, settings, filter globs, ELF symbol reader, descriptor and
//! `jal` arithmetic, per-thread shadow stack) compile everywhere and are unit-tested on the
//! host; the host CLI uses `format` and `elf` to read traces. The process side (`rv`) only
//! exists on riscv64 Linux: it is built as a `staticlib` by `scripts/runtime-lib` with
//! `--cfg padtrim_staticlib`, which also adds the panic handler.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(test)]
extern crate std;

pub mod args;
pub mod builtins;
pub mod config;
pub mod descriptor;
pub mod elf;
pub mod format;
pub mod glob;
pub mod line;
pub mod module;
#[macro_use]
pub mod thread;

#[cfg(all(target_arch = "riscv64", target_os = "linux"))]
pub mod rv;

/// In the staticlib nothing may unwind: a bug in the runtime ends the process.
#[cfg(padtrim_staticlib)]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    rv::sys::fatal(b"padtrim: internal error (panic in the runtime)\n")
}
