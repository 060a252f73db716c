//! `padtrim rewrite --pre` on pads with nops before their function
//! (`-fpatchable-function-entry=N,M`, M > 0), with and without the C extension.
//!
//! Every `--slot` × `--pre` combination, through both writers, must either be refused with
//! a clear message (a `--pre` that would keep half of a 4-byte nop), or pass the rewrite's
//! own verification, keep what was asked (capped by what the pads have, with a warning when
//! `--pre` asks for more), and run under qemu with the original's stdout and exit status.
//! Also: the verifier does not take the rewritten file's word for where a function starts,
//! a rewrite that fails its own verification is exit 3 with a bug-report message, and
//! `rewrite` and `verify` print plain words.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use padtrim_testsuite::{
    binutils, describe, padtrim, rewrite, run_qemu, scratch_dir, verify, Compiler,
};
use serde_json::Value;

/// One input program: `basic.c` built with `-fpatchable-function-entry=N,M`.
struct Input {
    path: PathBuf,
    /// Bytes per nop: 2 (`c.nop`, rv64gc) or 4 (`nop`, rv64g).
    nop: u32,
    /// Pad bytes before each function (M nops).
    pre: u32,
    /// Pad bytes at each function (N - M nops).
    post: u32,
    /// What the original prints and its exit status.
    expected: Output,
}

/// The inputs: (name, -march, N, M, extra flags).
const SPECS: &[(&str, &str, u32, u32, &[&str])] = &[
    // The command line of the report: rv64gc, PIE, 8 c.nops with 4 before the function.
    ("gc-8-4", "rv64gc", 8, 4, &[]),
    // 4 bytes before and 4 at the function: a 4-byte slot from two c.nops.
    (
        "gc-4-2",
        "rv64gc",
        4,
        2,
        &["-fno-pie", "-no-pie", "-ffunction-sections"],
    ),
    // Without C: 16 bytes of 4-byte nops before and 16 at the function.
    ("g-8-4", "rv64g", 8, 4, &[]),
    ("g-3-1", "rv64g", 3, 1, &["-fno-pie", "-no-pie"]),
    // No nops before the function at all.
    ("gc-8-0", "rv64gc", 8, 0, &[]),
];

fn source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/basic.c")
}

/// Builds every input once (with `-Wl,-q`, as padtrim needs) and runs the original.
fn inputs() -> &'static [(&'static str, Input)] {
    static INPUTS: OnceLock<Vec<(&'static str, Input)>> = OnceLock::new();
    INPUTS.get_or_init(|| {
        let dir = scratch_dir("rewrite-pre-inputs");
        SPECS
            .iter()
            .map(|&(name, march, n, m, extra)| {
                let path = dir.join(name);
                let out = Compiler::Gcc
                    .command()
                    .arg(format!("-march={march}"))
                    .arg("-mabi=lp64d")
                    .arg("-O2")
                    .arg(format!("-fpatchable-function-entry={n},{m}"))
                    .args(extra)
                    .arg("-Wl,-q")
                    .arg(source())
                    .arg("-o")
                    .arg(&path)
                    .output()
                    .expect("run riscv64-linux-gnu-gcc (run scripts/setup)");
                assert!(out.status.success(), "build {name}: {}", describe(&out));
                let expected = run_qemu(&path, &[], &[]);
                assert_eq!(
                    expected.status.code(),
                    Some(3),
                    "{name}: {}",
                    describe(&expected)
                );
                let nop = if march.contains('c') { 2 } else { 4 };
                let input = Input {
                    path,
                    nop,
                    pre: m * nop,
                    post: (n - m) * nop,
                    expected,
                };
                (name, input)
            })
            .collect()
    })
}

fn input(name: &str) -> &'static Input {
    &inputs()
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no input {name}"))
        .1
}

/// One combination: refused with a clear message, or rewritten, verified (with what was
/// kept as asked) and run like the original.
fn check_one(name: &str, inp: &Input, slot: u32, pre: u32, writer: &str, dir: &Path) {
    let what = format!("{name} --slot {slot} --pre {pre} --writer {writer}");
    let out_path = dir.join(format!("{name}-{slot}-{pre}-{writer}"));
    let slot_s = slot.to_string();
    let pre_s = pre.to_string();
    let rw = rewrite(
        &inp.path,
        &out_path,
        &[
            "--slot", &slot_s, "--pre", &pre_s, "--writer", writer, "--json",
        ],
    );
    let stderr = String::from_utf8_lossy(&rw.stderr);
    assert!(!stderr.contains("panicked"), "{what} panicked: {stderr}");

    // Half a 4-byte nop would be a broken instruction: refused, naming the file and why.
    if inp.nop == 4 && !pre.min(inp.pre).is_multiple_of(4) {
        assert_eq!(rw.status.code(), Some(2), "{what}: {}", describe(&rw));
        let line = stderr.trim_end();
        assert!(!line.contains('\n'), "{what}: one line: {stderr}");
        assert!(
            line.contains(&inp.path.display().to_string())
                && line.contains(&format!("--pre {pre} would keep half an instruction"))
                && line.contains("use a multiple of 4"),
            "{what}: unclear refusal: {line}"
        );
        assert!(!out_path.exists(), "{what}: refused, yet output written");
        return;
    }
    assert_eq!(rw.status.code(), Some(0), "{what}: {}", describe(&rw));
    let stats: Value = serde_json::from_slice(&rw.stdout)
        .unwrap_or_else(|e| panic!("{what}: bad JSON ({e}): {}", describe(&rw)));

    // Asking more than the pads have is said, with what was kept; otherwise nothing is.
    if pre > inp.pre {
        assert!(
            stderr.contains("warning")
                && stderr.contains(&format!("--pre {pre}"))
                && stderr.contains(&match inp.pre {
                    0 => "no bytes".to_string(),
                    n => format!("only {n} bytes"),
                }),
            "{what}: no warning naming what was kept: {stderr}"
        );
        assert_eq!(stats["pre_shortfall"]["most"], inp.pre, "{what}: {stats}");
    } else {
        assert!(stderr.is_empty(), "{what}: unexpected stderr: {stderr}");
        assert!(stats.get("pre_shortfall").is_none(), "{what}: {stats}");
    }

    if stats["unchanged"] == true {
        // Already what was asked: the output is the input, byte for byte.
        assert_eq!(
            std::fs::read(&out_path).expect("read output"),
            std::fs::read(&inp.path).expect("read input"),
            "{what}: 'unchanged' output differs"
        );
    } else {
        assert_eq!(stats["writer"], writer, "{what}: {stats}");
        let v = &stats["verify"];
        assert_eq!(v["mismatch_count"], 0, "{what}: {v}");
        // The builder rebuilds hash tables and may warn about undefined symbols it left
        // out of them (harmless, see `VerifyReport::warnings`); the patched writer must
        // not warn at all.
        if writer == "patched" {
            assert_eq!(v["warning_count"], 0, "{what}: verify warnings: {v}");
        }
        assert_eq!(
            v["pre_bytes"],
            pre.min(inp.pre),
            "{what}: bytes kept before each function: {v}"
        );
        assert_eq!(
            v["slot_bytes"],
            slot.min(inp.post),
            "{what}: bytes kept at each function: {v}"
        );
    }

    let run = run_qemu(&out_path, &[], &[]);
    assert_eq!(
        (run.status.code(), &run.stdout),
        (inp.expected.status.code(), &inp.expected.stdout),
        "{what}: the rewritten program behaves differently:\n{}",
        describe(&run)
    );
    std::fs::remove_file(&out_path).expect("remove output");
}

fn every_combination(name: &str) {
    let inp = input(name);
    let dir = scratch_dir(&format!("rewrite-pre-{name}"));
    for writer in ["patched", "builder"] {
        for slot in [0, 4, 8, 16] {
            for pre in [0, 2, 4, 8, 16] {
                check_one(name, inp, slot, pre, writer, &dir);
            }
        }
    }
}

#[test]
fn every_slot_and_pre_on_rv64gc_8_4() {
    every_combination("gc-8-4");
}

#[test]
fn every_slot_and_pre_on_rv64gc_4_2() {
    every_combination("gc-4-2");
}

#[test]
fn every_slot_and_pre_on_rv64g_8_4() {
    every_combination("g-8-4");
}

#[test]
fn every_slot_and_pre_on_rv64g_3_1() {
    every_combination("g-3-1");
}

/// The report's exact command: `--pre 4` (default `--slot 4`), human output.
#[test]
fn the_reported_rewrite_verifies_and_runs() {
    let inp = input("gc-8-4");
    let dir = scratch_dir("rewrite-pre-report");
    let out = dir.join("out");
    let rw = rewrite(&inp.path, &out, &["--pre", "4"]);
    assert_eq!(rw.status.code(), Some(0), "{}", describe(&rw));
    let text = String::from_utf8_lossy(&rw.stdout);
    assert!(text.contains("no mismatches"), "{text}");
    let v = verify(&inp.path, &out, &[]);
    assert_eq!(v.status.code(), Some(0), "{}", describe(&v));
    assert!(
        String::from_utf8_lossy(&v.stdout)
            .contains("slots: 4 bytes at each function (4 kept before it)"),
        "{}",
        describe(&v)
    );
    let run = run_qemu(&out, &[], &[]);
    assert_eq!(run.stdout, inp.expected.stdout);
    assert_eq!(run.status.code(), Some(3));
}

/// `--pre` beyond what the pads have: a warning on stderr naming the file, what was asked,
/// and what was kept; the rewrite itself goes on (exit 0).
#[test]
fn pre_beyond_the_pads_is_a_warning_naming_what_was_kept() {
    let dir = scratch_dir("rewrite-pre-shortfall");
    let cases = [
        (
            "gc-8-4",
            "16",
            "--pre 16: the pads have only 8 bytes before the function",
        ),
        (
            "gc-8-0",
            "4",
            "--pre 4: the pads have no bytes before the function",
        ),
    ];
    for (name, pre, says) in cases {
        let inp = input(name);
        let out = dir.join(name);
        let rw = rewrite(&inp.path, &out, &["--pre", pre]);
        assert_eq!(rw.status.code(), Some(0), "{name}: {}", describe(&rw));
        let stderr = String::from_utf8_lossy(&rw.stderr);
        let line = stderr.trim_end();
        assert!(!line.contains('\n'), "{name}: one line: {stderr}");
        assert!(
            line.starts_with(&format!("padtrim: warning: {}: ", inp.path.display()))
                && line.contains(says),
            "{name}: {line}"
        );
        assert!(
            line.contains(if inp.pre > 0 {
                "kept all of those"
            } else {
                "none were kept"
            }),
            "{name}: does not say what was kept: {line}"
        );
        assert!(out.exists(), "{name}: no output");
    }
    // Within what the pads have: not a word.
    let inp = input("gc-8-4");
    let rw = rewrite(&inp.path, &dir.join("within"), &["--pre", "8"]);
    assert_eq!(rw.status.code(), Some(0), "{}", describe(&rw));
    assert!(rw.stderr.is_empty(), "{}", describe(&rw));
}

/// Offset in `path` of the `.symtab` entry's st_value of function `name`.
fn symbol_value_offset(path: &Path, name: &str) -> (usize, u64) {
    let symtab = binutils::sections(path)
        .into_iter()
        .find(|s| s.name == ".symtab")
        .expect(".symtab");
    let sym = binutils::symbols(path)
        .into_iter()
        .find(|s| s.kind == "FUNC" && s.name == name)
        .unwrap_or_else(|| panic!("{name} in .symtab"));
    // Elf64_Sym: 24 bytes, st_value at byte 8.
    (symtab.offset as usize + 24 * sym.index + 8, sym.value)
}

/// Where a pad kept bytes before its function, the verifier takes the function's place
/// from the file (its symbol, when there is no __mcount_loc), and checks every reference
/// against it: a symbol moved onto the first kept byte is caught, not believed.
#[test]
fn a_function_symbol_moved_within_its_kept_bytes_is_caught() {
    let inp = input("g-8-4");
    let dir = scratch_dir("rewrite-pre-moved-symbol");
    let good = dir.join("good");
    // --slot 0 keeps no __mcount_loc: the symbol is the only word on the place.
    let rw = rewrite(&inp.path, &good, &["--slot", "0", "--pre", "4"]);
    assert_eq!(rw.status.code(), Some(0), "{}", describe(&rw));
    let (off, value) = symbol_value_offset(&good, "main");
    let mut bytes = std::fs::read(&good).expect("read");
    assert_eq!(
        u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap()),
        value,
        "symbol entry located"
    );
    bytes[off..off + 8].copy_from_slice(&(value - 4).to_le_bytes());
    let bad = dir.join("bad");
    std::fs::write(&bad, &bytes).expect("write");
    let v = verify(&inp.path, &bad, &[]);
    assert_eq!(v.status.code(), Some(1), "{}", describe(&v));
    assert!(
        String::from_utf8_lossy(&v.stdout).contains("verification FAILED"),
        "{}",
        describe(&v)
    );
}

/// Offset in `path` of the first 4-byte instruction of `main` that is not a nop.
fn main_insn_offset(path: &Path) -> usize {
    let text = binutils::sections(path)
        .into_iter()
        .find(|s| s.name == ".text")
        .expect(".text");
    let main = binutils::symbols(path)
        .into_iter()
        .find(|s| s.kind == "FUNC" && s.name == "main")
        .expect("main");
    let insn = binutils::disassemble_section(path, ".text")
        .into_iter()
        .find(|i| i.address >= main.value && i.len == 4 && !i.is_nop())
        .expect("an instruction in main");
    (text.offset + insn.address - text.address) as usize
}

/// A rewrite that fails its own verification is padtrim's bug, not the input's: exit 3, a
/// message saying the input was fine, nothing was written, and what to send in a report.
///
/// No known input makes the rewriter write a wrong file, so the output is damaged on
/// purpose between the rewrite and its verification, through a test hook that only the
/// command line reads (`PADTRIM_DEBUG_DAMAGE_OUTPUT`, a file offset).
#[test]
fn a_rewrite_that_fails_its_own_verification_is_exit_3() {
    let inp = input("gc-8-4");
    let dir = scratch_dir("rewrite-pre-exit-3");
    let probe = dir.join("probe");
    let rw = rewrite(&inp.path, &probe, &["--pre", "4", "--no-verify"]);
    assert_eq!(rw.status.code(), Some(0), "{}", describe(&rw));
    let at = main_insn_offset(&probe).to_string();

    let out = dir.join("out");
    let rw = padtrim()
        .args(["rewrite", "--pre", "4", "-o"])
        .arg(&out)
        .arg(&inp.path)
        .env("PADTRIM_DEBUG_DAMAGE_OUTPUT", &at)
        .output()
        .expect("run padtrim");
    let stderr = String::from_utf8_lossy(&rw.stderr);
    assert_eq!(rw.status.code(), Some(3), "{}", describe(&rw));
    let version = String::from_utf8_lossy(
        &padtrim()
            .arg("--version")
            .output()
            .expect("padtrim --version")
            .stdout,
    )
    .trim()
    .trim_start_matches("padtrim ")
    .to_string();
    let name = inp.path.display().to_string();
    for says in [
        "padtrim: internal error: the rewrite of",
        "failed its own verification (",
        "first: ",
        "The input is fine",
        "bug in padtrim",
        "no output was written",
        &format!("padtrim version ({version})"),
        &format!(
            "the command line (padtrim rewrite --pre 4 -o {} {name})",
            out.display()
        ),
        &format!("the input file ({name})"),
    ] {
        assert!(stderr.contains(says), "does not say {says:?}:\n{stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!out.exists(), "output written despite the failure");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, ["probe"], "temporary files left behind");

    // The help says what the status means.
    let help = padtrim().arg("--help").output().expect("padtrim --help");
    let help = String::from_utf8_lossy(&help.stdout);
    // Whatever the width clap wraps the text to.
    let words = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains("3 internal error: a rewrite failed its own verification"),
        "{help}"
    );
}

/// `verify` of a damaged output: a failed check (exit 1), in plain words.
#[test]
fn verify_of_a_damaged_output_is_exit_1_in_plain_words() {
    let inp = input("gc-8-4");
    let dir = scratch_dir("rewrite-pre-verify-damaged");
    let good = dir.join("good");
    let rw = rewrite(&inp.path, &good, &["--pre", "4"]);
    assert_eq!(rw.status.code(), Some(0), "{}", describe(&rw));
    let rodata = binutils::sections(&good)
        .into_iter()
        .find(|s| s.name == ".rodata")
        .expect(".rodata");
    // The last bytes of .rodata are string data, under no relocation: one mismatch.
    let at = (rodata.offset + rodata.size - 2) as usize;
    let mut bytes = std::fs::read(&good).expect("read");
    bytes[at] ^= 0x20;
    let bad = dir.join("bad");
    std::fs::write(&bad, &bytes).expect("write");
    let v = verify(&inp.path, &bad, &[]);
    assert_eq!(v.status.code(), Some(1), "{}", describe(&v));
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(
        text.contains("verification FAILED: 1 mismatch\n"),
        "{}",
        describe(&v)
    );
}

/// Plain words in `rewrite` and `verify`: flag spellings for the layout, "larger" and
/// "unchanged" when they are true, what `differences` are, and no "1 ...s".
#[test]
fn rewrite_and_verify_speak_plain_words() {
    let dir = scratch_dir("rewrite-pre-words");
    let mut seen = std::collections::BTreeSet::new();
    let cases: &[(&str, &[&str], &str)] = &[
        ("gc-8-4", &["--pre", "4"], "--layout pack"),
        ("gc-8-4", &["--layout", "in-place"], "--layout in-place"),
        ("gc-8-0", &[], "--layout pack"),
        ("g-8-4", &["--slot", "8"], "--layout pack"),
        ("g-3-1", &["--slot", "0"], "--layout pack"),
    ];
    for (k, &(name, args, layout)) in cases.iter().enumerate() {
        let inp = input(name);
        let out = dir.join(format!("{name}-{k}"));
        let rw = rewrite(&inp.path, &out, args);
        assert_eq!(
            rw.status.code(),
            Some(0),
            "{name} {args:?}: {}",
            describe(&rw)
        );
        let text = String::from_utf8_lossy(&rw.stdout).into_owned();
        assert!(text.contains(&format!("-byte slots, {layout})")), "{text}");
        for bad in [
            "Pack layout",
            "InPlace",
            "(-0",
            "(-1",
            "(-2",
            "(-3",
            "(-4",
            "(-5",
        ] {
            assert!(
                !text.contains(bad),
                "{name} {args:?}: says {bad:?}:\n{text}"
            );
        }
        // "A -> B bytes (how)": the word must match the numbers.
        for line in text.lines().filter(|l| l.contains(" bytes (")) {
            let t: Vec<&str> = line.split_whitespace().collect();
            let (a, b): (u64, u64) = (t[1].parse().unwrap(), t[3].parse().unwrap());
            let how = line.split(" bytes (").nth(1).unwrap();
            let word = match a.cmp(&b) {
                std::cmp::Ordering::Equal => "unchanged)",
                std::cmp::Ordering::Greater => "smaller)",
                std::cmp::Ordering::Less => "larger)",
            };
            assert!(
                how.split(',').next().unwrap().ends_with(word),
                "{name} {args:?}: {a} -> {b} is not {how:?}:\n{text}"
            );
            seen.insert(word);
        }
        assert_plural_words(&text);

        let v = verify(&inp.path, &out, &[]);
        assert_eq!(v.status.code(), Some(0), "{}", describe(&v));
        let vt = String::from_utf8_lossy(&v.stdout).into_owned();
        assert!(
            !vt.lines()
                .any(|l| l.trim_start().starts_with("differences")),
            "a bare 'differences' count:\n{vt}"
        );
        if vt.contains("differences of two addresses") {
            seen.insert("differences");
        }
        assert!(vt.contains("verified: no mismatches"), "{vt}");
        assert_plural_words(&vt);
    }
    for word in ["unchanged)", "smaller)", "larger)", "differences"] {
        assert!(seen.contains(word), "no case printed {word:?}: {seen:?}");
    }
}

/// No count of one followed by a plural ("1 findings", "1 mismatches", "1 warnings").
fn assert_plural_words(text: &str) {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == '(' || c == ',')
        .collect();
    for w in words.windows(2) {
        let plural = [
            "mismatches",
            "warnings",
            "findings",
            "bytes",
            "symbols",
            "branches",
        ];
        assert!(
            !(w[0] == "1" && plural.contains(&w[1])),
            "\"1 {}\" in:\n{text}",
            w[1]
        );
    }
}
