//! Fuzz target: the whole rewrite pipeline (parse, scan, plan, relocate, emit).
//!
//! The first byte picks the options (see `bodies::options`); the rest is the ELF file. Any
//! input must give `Ok` or an `Err`, never a panic; an `Ok` output must parse again.
#![no_main]

mod bodies;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bodies::rewrite_input(data);
});
