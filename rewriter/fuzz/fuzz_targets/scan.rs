//! Fuzz target: ELF parsing, pad scanning, the report and the CI gate.
//!
//! Any input must give `Ok` or an `Err`, never a panic, and memory bounded by the input.
#![no_main]

mod bodies;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bodies::scan_report_check(data);
});
