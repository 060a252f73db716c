//! Phase timings: where a slow rewrite spends its time, without a profiler. The library
//! prints nothing itself: a caller that wants the timings installs a sink once
//! ([`set_sink`]; the command line does when `PADTRIM_TIMINGS` is set). Without one, a phase
//! costs one atomic load.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Receives each phase's name and how long it took.
pub type Sink = fn(&str, Duration);

static SINK: OnceLock<Sink> = OnceLock::new();

/// Installs the sink that receives every phase's time from now on. Only the first call
/// takes effect; returns false when a sink was already installed.
pub fn set_sink(sink: Sink) -> bool {
    SINK.set(sink).is_ok()
}

/// Runs `f`, and gives its duration to the sink, if one is installed.
pub fn phase<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let Some(sink) = SINK.get() else {
        return f();
    };
    let t = Instant::now();
    let r = f();
    sink(name, t.elapsed());
    r
}

/// Gives a duration measured by the caller to the sink, if one is installed.
pub fn record(name: &str, elapsed: Duration) {
    if let Some(sink) = SINK.get() {
        sink(name, elapsed);
    }
}
