//! Phase timings on stderr when `PADTRIM_TIMINGS` is set: where a slow rewrite spends its
//! time, without a profiler. Off (one cached env lookup) otherwise.

use std::sync::OnceLock;
use std::time::Instant;

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("PADTRIM_TIMINGS").is_some())
}

/// Runs `f`, printing how long it took as `padtrim: <name> <ms> ms` when timings are on.
pub fn phase<T>(name: &str, f: impl FnOnce() -> T) -> T {
    if !enabled() {
        return f();
    }
    let t = Instant::now();
    let r = f();
    eprintln!(
        "padtrim: {name:<24} {:8.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    r
}
