//! Micro-benchmarks of the rewriter's stages on a generated RISC-V program.
//!
//! Run with `cargo bench -p padtrim-rewriter` (not part of `cargo test`). The input is the
//! 10,000-function program of `scripts/gen-many 10000` (built once and cached), or the ELF
//! named by `PADTRIM_BENCH_ELF`. Whole-process timings against objcopy are `scripts/bench`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use divan::{black_box, Bencher};
use padtrim::elf;
use padtrim::rewrite::{rewrite, RewriteOptions};
use padtrim::riscv::{decode, Xlen};
use padtrim::scan::scan;

fn main() {
    divan::main();
}

/// The input ELF's bytes, read once.
fn input() -> &'static [u8] {
    static DATA: OnceLock<Vec<u8>> = OnceLock::new();
    DATA.get_or_init(|| {
        let path = std::env::var_os("PADTRIM_BENCH_ELF")
            .map(PathBuf::from)
            .unwrap_or_else(generated_program);
        std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    })
}

/// Path of the cached 10k-function program, building it on first use.
fn generated_program() -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/gen-many");
    let out = Command::new(script)
        .arg("10000")
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("gen-many prints the program's path")
            .trim(),
    )
}

/// The bytes of `.text`.
fn text() -> &'static [u8] {
    static TEXT: OnceLock<&'static [u8]> = OnceLock::new();
    TEXT.get_or_init(|| {
        let file = elf::parse(input()).expect("input parses");
        let text = file.section_by_name(".text").expect("input has .text");
        file.section_data(text).expect(".text is in the file")
    })
}

/// ELF headers, sections and symbols into the model.
#[divan::bench]
fn parse(b: Bencher) {
    b.bench(|| {
        elf::parse(black_box(input()))
            .expect("parses")
            .symbols
            .len()
    });
}

/// Parse, then find every pad through `__patchable_function_entries`.
#[divan::bench]
fn parse_and_scan(b: Bencher) {
    b.bench(|| {
        let file = elf::parse(black_box(input())).expect("parses");
        scan(&file).expect("scans").sites.len()
    });
}

/// Decode every instruction of `.text` in one linear sweep (what the unrelocated-code sweep
/// does); counts bytes per second through `divan`'s throughput counter.
#[divan::bench]
fn decode_text(b: Bencher) {
    let text = text();
    b.counter(divan::counter::BytesCount::new(text.len()))
        .bench(|| {
            let (mut at, mut decoded) = (0, 0usize);
            while at + 2 <= text.len() {
                match decode(black_box(&text[at..]), Xlen::Rv64) {
                    Ok(insn) => {
                        at += insn.len as usize;
                        decoded += 1;
                    }
                    Err(_) => at += 2,
                }
            }
            decoded
        });
}

/// The whole rewrite in memory (4-byte slots, default layout), without file I/O.
#[divan::bench(sample_count = 10)]
fn rewrite_slot4(b: Bencher) {
    // The rewrite alone (its output parsed back), without the verifier's second pass.
    let opts = RewriteOptions {
        verify: false,
        ..RewriteOptions::default()
    };
    b.bench(|| {
        rewrite(black_box(input()), &opts)
            .expect("rewrites")
            .bytes
            .len()
    });
}
