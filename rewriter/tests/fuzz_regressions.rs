//! Replays every input that once crashed a fuzz target (`tests/fuzz-regressions/`), through
//! the same code the fuzz targets run: each must end in `Ok` or an error, never a panic.

#[path = "../fuzz/fuzz_targets/bodies.rs"]
mod bodies;

use std::path::{Path, PathBuf};

/// The saved inputs of one fuzz target, sorted; fails if the folder holds none, so a moved
/// folder cannot make the test pass vacuously.
fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("read dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no saved inputs in {}", dir.display());
    files
}

/// Runs `body` on every saved input of `target`, catching panics so that every input is
/// tried; fails listing the inputs that panicked.
fn replay(target: &str, body: impl Fn(&[u8]) -> String) {
    let mut panicked = Vec::new();
    for path in inputs(target) {
        let data = std::fs::read(&path).expect("read saved input");
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&data))) {
            Ok(outcome) => println!("{}: {outcome}", path.display()),
            Err(_) => panicked.push(path.display().to_string()),
        }
    }
    assert!(panicked.is_empty(), "panicked on: {panicked:?}");
}

#[test]
fn scan_inputs_end_in_ok_or_error() {
    replay("scan", |data| match bodies::scan_report_check(data) {
        Ok(()) => "ok".into(),
        Err(e) => format!("error: {e}"),
    });
}

/// Each input through both writers: the selector's top bit picks the writer, and inputs
/// saved before the patched writer existed were all found through the builder.
#[test]
fn rewrite_inputs_end_in_ok_or_error() {
    replay("rewrite", |data| {
        let mut other = data.to_vec();
        if let Some(selector) = other.first_mut() {
            *selector ^= 0x80;
        }
        [data, other.as_slice()]
            .map(|d| match bodies::rewrite_input(d) {
                None => "empty".into(),
                Some(Ok(stats)) => format!("ok: {} sites, {:?}", stats.sites, stats.writer),
                Some(Err(e)) => format!("error: {e}"),
            })
            .join(" | ")
    });
}
