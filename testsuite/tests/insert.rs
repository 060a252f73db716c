//! `padtrim rewrite --insert`: programs built WITHOUT pads (no -fpatchable-function-entry),
//! linked with -Wl,-q, get a slot at every function entry. Each one is built from the corpus
//! sources at test time (rv64gc and rv64g, -O0 and -O2, PIE, static, a shared object and
//! the program using it, C++ with exceptions, threads), inserted, run under qemu-riscv64
//! beside the original (same stdout, same exit status), verified again by `padtrim verify`,
//! and its `__mcount_loc` checked against the functions of the original; also a program
//! written for the shapes (relative jump table, function-pointer table, qsort callbacks,
//! recursion, setjmp/longjmp) built with gcc (rv64gc, rv64g) and clang, and freestanding
//! RV32 programs run under qemu-riscv32. Then the refusals (a vmlinux, a relaxed `jal`
//! pushed out of reach).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use padtrim_testsuite::{
    assert_same_output, binutils, describe, inserted_patch_entries, mcount_entries, padtrim,
    run_ok, run_qemu, scratch_dir, verify, RISCV_SYSROOT,
};

/// The corpus source `name`.
fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name)
}

/// Compiles with the riscv64 cross compiler in `dir` (no pads, ever).
fn cc(dir: &Path, compiler: &str, args: &[&str]) {
    run_ok(
        Command::new(compiler).current_dir(dir).args(args),
        "the cross compiler",
    );
}

/// `padtrim rewrite --insert IN -o OUT --json EXTRA...`.
fn insert(input: &Path, output: &Path, extra: &[&str]) -> Output {
    padtrim()
        .arg("rewrite")
        .arg("--insert")
        .arg(input)
        .arg("-o")
        .arg(output)
        .arg("--json")
        .args(extra)
        .output()
        .expect("run padtrim")
}

/// Inserts slots into `input` (at `output`), asserts it verified and what it reports.
fn insert_ok(input: &Path, output: &Path, extra: &[&str]) -> serde_json::Value {
    let out = insert(input, output, extra);
    assert!(
        out.status.success(),
        "rewrite --insert {}: {}",
        input.display(),
        describe(&out)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(stats["sites"].as_u64().unwrap() > 0, "{stats}");
    assert!(
        stats["bytes_removed"].as_i64().unwrap() < 0,
        "code grows: {stats}"
    );
    assert!(stats["verify"].is_object(), "verified on the way: {stats}");
    let v = verify(input, output, &[]);
    assert!(
        v.status.success(),
        "verify {}: {}",
        output.display(),
        describe(&v)
    );
    stats
}

/// Every table entry is the new address of a function of `output` (the slot is the new
/// function address), sorted, one per address; the slot holds nops (objdump says so). The
/// added `__patchable_function_entries` lists the same slots.
fn check_table(output: &Path, sites: u64) {
    let entries = mcount_entries(output).expect("a __mcount_loc table");
    assert_eq!(entries.len() as u64, sites, "{}", output.display());
    assert!(entries.windows(2).all(|w| w[0] < w[1]), "sorted, distinct");
    assert_eq!(
        inserted_patch_entries(output).as_ref(),
        Some(&entries),
        "{}: __patchable_function_entries lists the slots of __mcount_loc",
        output.display()
    );
    let funcs: std::collections::BTreeSet<u64> = binutils::symbols(output)
        .iter()
        .filter(|s| s.kind == "FUNC" && s.size > 0)
        .map(|s| s.value)
        .collect();
    for e in &entries {
        assert!(
            funcs.contains(e),
            "{e:#x} is not a function of {}",
            output.display()
        );
        assert_eq!(e % 4, 0, "slot {e:#x} is 4-byte aligned");
    }
    let insns = binutils::disassemble(output);
    let at: std::collections::HashMap<u64, &binutils::Insn> =
        insns.iter().map(|i| (i.address, i)).collect();
    let mut nops = 0;
    for e in &entries {
        let insn = at
            .get(e)
            .unwrap_or_else(|| panic!("no instruction at slot {e:#x}"));
        assert!(insn.is_nop(), "slot at {e:#x} is a nop: {insn:?}");
        nops += 1;
    }
    assert_eq!(nops, entries.len());
}

/// Runs `path` under qemu (with `libdir` as LD_LIBRARY_PATH when given).
fn run(path: &Path, libdir: Option<&Path>) -> Output {
    let lib = libdir.map(|d| d.display().to_string());
    let env: Vec<(&str, &str)> = lib
        .as_deref()
        .map(|l| vec![("LD_LIBRARY_PATH", l)])
        .unwrap_or_default();
    run_qemu(path, &[], &env)
}

/// Builds `source` with `flags`, inserts, runs both, compares, checks the table.
fn build_insert_run(dir: &Path, compiler: &str, source: &str, flags: &[&str], tag: &str) {
    let exe = dir.join(tag);
    let mut args: Vec<&str> = flags.to_vec();
    let src = corpus(source);
    let src = src.to_str().unwrap();
    let exe_s = exe.to_str().unwrap();
    args.extend(["-Wl,-q", src, "-o", exe_s]);
    if source == "threads.c" {
        args.push("-pthread");
    }
    cc(dir, compiler, &args);
    let out = dir.join(format!("{tag}.ins"));
    let stats = insert_ok(&exe, &out, &[]);
    check_table(&out, stats["sites"].as_u64().unwrap());
    assert_same_output(&run(&exe, None), &run(&out, None), tag);
}

#[test]
fn inserted_c_programs_run_as_the_originals_and_verify() {
    let dir = scratch_dir("insert-c");
    for source in ["basic.c", "control.c"] {
        for march in ["rv64gc", "rv64g"] {
            for opt in ["-O0", "-O2"] {
                for link in ["-pie", "-static"] {
                    let stem = source.trim_end_matches(".c");
                    let tag = format!("{stem}-{march}{opt}{link}");
                    let march_flag = format!("-march={march}");
                    let mut flags = vec![march_flag.as_str(), "-mabi=lp64d", opt, link];
                    if link == "-pie" {
                        flags.push("-fPIE");
                    }
                    build_insert_run(&dir, "riscv64-linux-gnu-gcc", source, &flags, &tag);
                }
            }
        }
    }
}

#[test]
fn inserted_cxx_with_exceptions_and_threads_run_as_the_originals() {
    let dir = scratch_dir("insert-cxx-threads");
    build_insert_run(&dir, "riscv64-linux-gnu-g++", "cxx.cc", &["-O2"], "cxx-O2");
    build_insert_run(
        &dir,
        "riscv64-linux-gnu-g++",
        "cxx.cc",
        &["-O0", "-march=rv64g", "-mabi=lp64d", "-static"],
        "cxx-rv64g-O0-static",
    );
    build_insert_run(
        &dir,
        "riscv64-linux-gnu-gcc",
        "threads.c",
        &["-O2"],
        "threads-O2",
    );
}

#[test]
fn an_inserted_shared_object_and_its_program_run_as_the_originals() {
    let dir = scratch_dir("insert-shared");
    let lib = corpus("shared_lib.c");
    let prog = corpus("use_shared.c");
    std::fs::create_dir_all(dir.join("new")).unwrap();
    cc(
        &dir,
        "riscv64-linux-gnu-gcc",
        &[
            "-O2",
            "-fPIC",
            "-shared",
            "-Wl,-q",
            lib.to_str().unwrap(),
            "-o",
            "libshared.so",
        ],
    );
    cc(
        &dir,
        "riscv64-linux-gnu-gcc",
        &[
            "-O2",
            "-Wl,-q",
            prog.to_str().unwrap(),
            "-L.",
            "-lshared",
            "-o",
            "use",
        ],
    );
    let stats = insert_ok(
        &dir.join("libshared.so"),
        &dir.join("new/libshared.so"),
        &[],
    );
    check_table(
        &dir.join("new/libshared.so"),
        stats["sites"].as_u64().unwrap(),
    );
    insert_ok(&dir.join("use"), &dir.join("new/use"), &[]);
    let original = run(&dir.join("use"), Some(&dir));
    assert!(original.status.code().is_some(), "{}", describe(&original));
    assert_same_output(
        &original,
        &run(&dir.join("use"), Some(&dir.join("new"))),
        "library",
    );
    assert_same_output(
        &original,
        &run(&dir.join("new/use"), Some(&dir.join("new"))),
        "both",
    );
}

#[test]
fn eight_byte_slots_and_selected_functions() {
    let dir = scratch_dir("insert-slot8-functions");
    let src = corpus("basic.c");
    cc(
        &dir,
        "riscv64-linux-gnu-gcc",
        &["-O2", "-Wl,-q", src.to_str().unwrap(), "-o", "basic"],
    );
    let exe = dir.join("basic");
    let original = run(&exe, None);

    let all = insert_ok(&exe, &dir.join("basic.8"), &["--slot", "8"]);
    let four = insert_ok(&exe, &dir.join("basic.4"), &[]);
    assert_eq!(all["sites"], four["sites"]);
    let grew = |s: &serde_json::Value| -s["bytes_removed"].as_i64().unwrap();
    assert!(grew(&all) > grew(&four), "{all}\n{four}");
    assert_same_output(&original, &run(&dir.join("basic.8"), None), "--slot 8");

    // Only the functions a glob names get a slot.
    let some = insert_ok(&exe, &dir.join("basic.fib"), &["--functions", "fib,cmp_*"]);
    let funcs = binutils::symbols(&exe);
    let expected = funcs
        .iter()
        .filter(|s| s.kind == "FUNC" && s.size > 0)
        .filter(|s| s.name == "fib" || s.name.starts_with("cmp_"))
        .map(|s| s.value)
        .collect::<std::collections::BTreeSet<_>>()
        .len() as u64;
    assert!(expected >= 2, "the corpus has fib and comparators");
    assert_eq!(some["sites"].as_u64().unwrap(), expected, "{some}");
    check_table(&dir.join("basic.fib"), expected);
    assert_same_output(&original, &run(&dir.join("basic.fib"), None), "--functions");
    // The over-aligned function keeps its 64-byte alignment, slot or none (a linked file
    // keeps no R_RISCV_ALIGN: the nops in front of it say so).
    for out in ["basic.4", "basic.8", "basic.fib"] {
        let f = binutils::symbols(&dir.join(out))
            .into_iter()
            .find(|s| s.name == "aligned_fn")
            .expect("aligned_fn");
        assert_eq!(f.value % 64, 0, "{out}: aligned_fn at {:#x}", f.value);
    }

    // report --insert projects exactly what the rewrite added.
    for (slot, done) in [("4", &four), ("8", &all)] {
        let rep = padtrim()
            .args(["report", "--insert", "--json", "--slot", slot])
            .arg(&exe)
            .output()
            .expect("run padtrim");
        assert!(rep.status.success(), "{}", describe(&rep));
        let rep: serde_json::Value = serde_json::from_slice(&rep.stdout).expect("JSON");
        assert_eq!(rep["insert"]["sites"], done["sites"], "{rep}");
        assert_eq!(
            rep["insert"]["bytes_added"].as_i64().unwrap(),
            grew(done),
            "{rep}"
        );
    }
}

/// `verify ORIGINAL BAD` fails, and only on the added `__patchable_function_entries`.
fn verify_fails_on_the_patch_table(original: &Path, bad: &Path) {
    let v = verify(original, bad, &["--json"]);
    assert_eq!(
        v.status.code(),
        Some(1),
        "{}: {}",
        bad.display(),
        describe(&v)
    );
    let report: serde_json::Value = serde_json::from_slice(&v.stdout).expect("JSON");
    let found = report["mismatches"].as_array().expect("mismatches");
    assert!(
        !found.is_empty()
            && found
                .iter()
                .all(|m| m["category"] == "__patchable_function_entries"),
        "{}: {report}",
        bad.display()
    );
}

/// An inserted PIE, static program and shared object carry a `__patchable_function_entries`
/// through either writer: not allocated, its entries the slots of `__mcount_loc`
/// (`check_table`), read by readelf and objdump without a warning, the programs running as
/// the originals; `verify` fails on a copy without it (objcopy -R) or with two of its
/// entries swapped.
#[test]
fn both_writers_add_a_patch_table_of_the_slots_that_verify_proves() {
    let dir = scratch_dir("insert-patch-table");
    let (basic, lib) = (corpus("basic.c"), corpus("shared_lib.c"));
    let (basic, lib) = (basic.to_str().unwrap(), lib.to_str().unwrap());
    let gcc = "riscv64-linux-gnu-gcc";
    cc(
        &dir,
        gcc,
        &["-O2", "-fPIE", "-pie", "-Wl,-q", basic, "-o", "pie"],
    );
    cc(
        &dir,
        gcc,
        &["-O2", "-static", "-Wl,-q", basic, "-o", "static"],
    );
    cc(
        &dir,
        gcc,
        &[
            "-O2",
            "-fPIC",
            "-shared",
            "-Wl,-q",
            lib,
            "-o",
            "libshared.so",
        ],
    );
    for input in ["pie", "static", "libshared.so"] {
        let exe = dir.join(input);
        for writer in ["patched", "builder"] {
            let out = dir.join(format!("{input}.{writer}"));
            let stats = insert_ok(&exe, &out, &["--writer", writer]);
            assert_eq!(stats["writer"], writer, "{input}: {stats}");
            check_table(&out, stats["sites"].as_u64().unwrap());
            let warnings = binutils::warnings(&out, &["-a", "-W"], &["-d"]);
            assert!(warnings.is_empty(), "{input} ({writer}): {warnings}");
            if input != "libshared.so" {
                assert_same_output(&run(&exe, None), &run(&out, None), input);
            }
        }
    }
    for (input, out) in [
        ("pie", "pie.patched"),
        ("static", "static.builder"),
        ("libshared.so", "libshared.so.patched"),
    ] {
        let (exe, out) = (dir.join(input), dir.join(out));
        let without = out.with_extension("without");
        run_ok(
            Command::new("riscv64-linux-gnu-objcopy")
                .args(["-R", binutils::TABLE_SECTION])
                .arg(&out)
                .arg(&without),
            "objcopy",
        );
        assert!(inserted_patch_entries(&without).is_none());
        verify_fails_on_the_patch_table(&exe, &without);

        let table = binutils::sections(&out)
            .into_iter()
            .find(|s| s.name == binutils::TABLE_SECTION)
            .expect("the added table");
        let width = binutils::header(&out).pointer_size() as usize;
        let mut bytes = std::fs::read(&out).unwrap();
        let at = table.offset as usize;
        let (first, second) = bytes[at..at + 2 * width].split_at_mut(width);
        first.swap_with_slice(second);
        let swapped = out.with_extension("swapped");
        std::fs::write(&swapped, &bytes).unwrap();
        verify_fails_on_the_patch_table(&exe, &swapped);
    }
}

/// Asserts that `out` is a refusal (exit 2) naming `file` and saying `why`.
fn refused(out: &Output, file: &str, why: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", describe(out));
    assert!(
        err.contains(file) && err.contains(why),
        "{file}: {why}?\n{err}"
    );
}

#[test]
fn inputs_insert_cannot_take_are_refused_with_the_reason() {
    let dir = scratch_dir("insert-refusals");
    let src = corpus("basic.c");
    let src = src.to_str().unwrap();
    let gcc = "riscv64-linux-gnu-gcc";
    cc(&dir, gcc, &["-O2", src, "-o", "norelocs"]);
    cc(&dir, gcc, &["-O2", "-Wl,-q", src, "-o", "plain"]);
    let x = dir.join("out");
    refused(
        &insert(&dir.join("norelocs"), &x, &[]),
        "norelocs",
        "-Wl,-q",
    );
    refused(
        &insert(&dir.join("plain"), &x, &["--slot", "16"]),
        "plain",
        "4 or 8 bytes",
    );
    insert_ok(&dir.join("plain"), &dir.join("plain.ins"), &[]);
    refused(
        &insert(&dir.join("plain.ins"), &x, &[]),
        "plain.ins",
        "__mcount_loc",
    );
    assert!(!x.exists(), "nothing written on a refusal");
    let _ = RISCV_SYSROOT;
}

/// A program in the shapes an insertion must keep working: a dense switch compiled to a
/// table of relative offsets in `.rodata`, function pointers in a table and as qsort
/// callbacks, direct and mutual recursion, setjmp/longjmp across frames. Its output and
/// exit status depend on every one of them.
const SHAPES: &str = r#"
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
__attribute__((noinline)) int dense(int op, int x) {
    switch (op) {
    case 0: return x + 11;
    case 1: return x * 7;
    case 2: return x - 3;
    case 3: return x ^ 0x55;
    case 4: return x << 2;
    case 5: return x / 3 + 1;
    case 6: return x % 13;
    case 7: return ~x;
    case 8: return x * x;
    case 9: return x + 1000;
    default: return -1;
    }
}
static int by_value(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }
static int by_last_digit(const void *a, const void *b) {
    return *(const int *)a % 10 - *(const int *)b % 10;
}
__attribute__((noinline)) int twice(int x) { return 2 * x; }
__attribute__((noinline)) int negate(int x) { return -x; }
int (*const table[])(int) = {twice, negate};
__attribute__((noinline)) int is_odd(int n);
__attribute__((noinline)) int is_even(int n) { return n == 0 ? 1 : is_odd(n - 1); }
__attribute__((noinline)) int is_odd(int n) { return n == 0 ? 0 : is_even(n - 1); }
__attribute__((noinline)) int ack(int m, int n) {
    return m == 0 ? n + 1 : n == 0 ? ack(m - 1, 1) : ack(m - 1, ack(m, n - 1));
}
static jmp_buf out;
__attribute__((noinline)) void dive(int depth) {
    if (depth == 6) longjmp(out, depth * 7);
    dive(depth + 1);
}
int main(void) {
    int v[] = {53, 18, 91, 2, 77, 40, 6, 64, 35};
    int n = sizeof v / sizeof v[0], s = 0;
    for (int op = 0; op < 11; op++) s += dense(op, 29 + op);
    qsort(v, n, sizeof v[0], by_value);
    for (int i = 0; i < n; i++) printf("%d ", v[i]);
    qsort(v, n, sizeof v[0], by_last_digit);
    printf("| %d %d\n", v[0], v[n - 1]);
    for (int i = 0; i < 6; i++) s += table[i % 2](i);
    int caught = setjmp(out);
    if (!caught) dive(0);
    printf("dense+table=%d even=%d ack=%d longjmp=%d\n", s, is_even(37), ack(2, 3), caught);
    return (s + caught) & 0x7f;
}
"#;

/// `padtrim check FILE ARGS...` must pass.
fn check_passes(file: &Path, args: &[&str]) {
    let out = padtrim_testsuite::check(file, args);
    assert!(
        out.status.success(),
        "check {} {args:?}: {}",
        file.display(),
        describe(&out)
    );
}

/// Runs a program under qemu and returns its output.
type Runner = fn(&Path) -> Output;

/// Inserts into `exe`, runs both (with `runner`), compares, checks the table; returns the
/// number of slots.
fn insert_run(exe: &Path, runner: Runner, tag: &str) -> u64 {
    let out = exe.with_extension("ins");
    let stats = insert_ok(exe, &out, &[]);
    let sites = stats["sites"].as_u64().unwrap();
    check_table(&out, sites);
    let original = runner(exe);
    assert!(
        original.status.code().is_some(),
        "{tag}: {}",
        describe(&original)
    );
    assert_same_output(&original, &runner(&out), tag);
    sites
}

#[test]
fn jump_tables_function_pointers_recursion_and_longjmp_with_gcc_and_clang() {
    let dir = scratch_dir("insert-shapes");
    std::fs::write(dir.join("shapes.c"), SHAPES).unwrap();
    // The switch is a table of relative offsets (`.word .Lx-.Ly`) in .rodata: the shape
    // asked for, or this test would not test it.
    cc(
        &dir,
        "riscv64-linux-gnu-gcc",
        &["-O2", "-S", "shapes.c", "-o", "shapes.s"],
    );
    let asm = std::fs::read_to_string(dir.join("shapes.s")).unwrap();
    assert!(
        asm.lines()
            .any(|l| l.trim_start().starts_with(".word\t.L") && l.contains("-.L")),
        "no relative jump table in:\n{asm}"
    );
    let builds: &[(&str, &[&str])] = &[
        (
            "gcc-rv64gc-O2-pie",
            &["riscv64-linux-gnu-gcc", "-O2", "-fPIE", "-pie"],
        ),
        (
            "gcc-rv64g-O2",
            &[
                "riscv64-linux-gnu-gcc",
                "-O2",
                "-march=rv64g",
                "-mabi=lp64d",
            ],
        ),
        (
            "gcc-rv64g-O0-static",
            &[
                "riscv64-linux-gnu-gcc",
                "-O0",
                "-march=rv64g",
                "-mabi=lp64d",
                "-static",
            ],
        ),
        (
            "clang-rv64gc-O2",
            &["clang", "--target=riscv64-linux-gnu", "-O2"],
        ),
        (
            "clang-rv64gc-O2-pie",
            &[
                "clang",
                "--target=riscv64-linux-gnu",
                "-O2",
                "-fPIE",
                "-pie",
            ],
        ),
    ];
    for (tag, argv) in builds {
        let mut args: Vec<&str> = argv[1..].to_vec();
        args.extend(["-Wl,-q", "shapes.c", "-o", tag]);
        cc(&dir, argv[0], &args);
        insert_run(&dir.join(tag), |p| run(p, None), tag);
    }
}

#[test]
fn inserted_rv32_programs_run_under_qemu_riscv32() {
    let dir = scratch_dir("insert-rv32");
    let src = corpus("freestanding32.c");
    for (march, opt) in [("rv32gc", "-O2"), ("rv32g", "-O0")] {
        let tag = format!("fs32-{march}{opt}");
        let march_flag = format!("-march={march}");
        cc(
            &dir,
            "riscv64-linux-gnu-gcc",
            &[
                &march_flag,
                "-mabi=ilp32",
                opt,
                "-ffreestanding",
                "-nostdlib",
                "-static",
                "-Wl,-q",
                src.to_str().unwrap(),
                "-o",
                &tag,
            ],
        );
        let exe = dir.join(&tag);
        let original = padtrim_testsuite::run_qemu_rv32(&exe);
        assert!(
            original.stdout.starts_with(b"fib 144\n") && original.status.code() == Some(104),
            "{tag}: {}",
            describe(&original)
        );
        insert_run(&exe, padtrim_testsuite::run_qemu_rv32, &tag);
    }
}

#[test]
fn a_vmlinux_shaped_file_is_refused() {
    let dir = scratch_dir("insert-vmlinux");
    // Linked as a kernel is (its own linker script, `__start_mcount_loc` bounding the table,
    // no C library), with its relocations and no pads: all --insert would need but room.
    std::fs::write(
        dir.join("k.c"),
        "int work(int x) { return x * 3; }\nvoid _start(void) { for (;;) work(1); }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("k.lds"),
        "ENTRY(_start)\nSECTIONS {\n  . = 0x80200000;\n  .text : { _stext = .; *(.text .text.*) \
         _etext = .; }\n  .init.data : ALIGN(8) { __start_mcount_loc = .; \
         KEEP(*(__patchable_function_entries)) __stop_mcount_loc = .; }\n  .data : { *(.data \
         .sdata .bss .sbss) }\n}\n",
    )
    .unwrap();
    cc(
        &dir,
        "riscv64-linux-gnu-gcc",
        &[
            "-O2",
            "-mcmodel=medany",
            "-nostdlib",
            "-static",
            "-Wl,-q",
            "-T",
            "k.lds",
            "k.c",
            "-o",
            "vmlinux",
        ],
    );
    let x = dir.join("out");
    refused(
        &insert(&dir.join("vmlinux"), &x, &[]),
        "vmlinux",
        "a kernel's code cannot grow in place",
    );
    assert!(!x.exists(), "nothing written on a refusal");
    let rep = padtrim()
        .args(["report", "--insert"])
        .arg(dir.join("vmlinux"))
        .output()
        .expect("run padtrim");
    refused(&rep, "vmlinux", "a kernel's code cannot grow in place");
}

/// Number of small functions between the call and its target (each gets a slot).
const BETWEEN: usize = 40;

/// `main` calls `far` across 1 MiB less a little (a filler of nops between them), so the
/// linker relaxes the call to a `jal` that reaches with `MARGIN` bytes to spare; the slots of
/// the `BETWEEN` functions in between push `far` out of its reach.
fn far_call_source() -> String {
    const MARGIN: usize = 80;
    // jal at main+8; main is 24 bytes once relaxed; each small function 4; the filler is
    // `ret` and nops. Offset = 16 + 4 * BETWEEN + 4 + FILL * 4 = 0xffffe - MARGIN (rounded).
    let fill = (0xffffe - MARGIN - 16 - 4 * BETWEEN - 4) / 4;
    let mut s = String::from(
        ".option norvc\n.section .rodata\nmsg: .string \"far returned\"\n.text\n\
         .globl main\n.type main,@function\n.p2align 2\nmain:\n addi sp,sp,-16\n sd ra,8(sp)\n\
         call far\n ld ra,8(sp)\n addi sp,sp,16\n ret\n.size main,.-main\n",
    );
    for i in 0..BETWEEN {
        s.push_str(&format!(
            ".type small{i},@function\nsmall{i}:\n ret\n.size small{i},.-small{i}\n"
        ));
    }
    s.push_str(&format!(
        ".type filler,@function\nfiller:\n ret\n .fill {fill},4,0x00000013\n.size filler,.-filler\n\
         .globl far\n.type far,@function\nfar:\n addi sp,sp,-16\n sd ra,8(sp)\n\
         lla a0,msg\n call puts\n li a0,42\n ld ra,8(sp)\n addi sp,sp,16\n ret\n.size far,.-far\n"
    ));
    s
}

#[test]
fn a_relaxed_jal_pushed_out_of_reach_is_refused_with_the_no_relax_advice() {
    let dir = scratch_dir("insert-far-jal");
    std::fs::write(dir.join("far.S"), far_call_source()).unwrap();
    let gcc = "riscv64-linux-gnu-gcc";
    cc(&dir, gcc, &["-Wl,-q", "far.S", "-o", "relaxed"]);
    cc(&dir, gcc, &["-Wl,-q,--no-relax", "far.S", "-o", "norelax"]);
    // The linker did relax the call to a jal (else there is nothing to refuse).
    let main = binutils::symbols(&dir.join("relaxed"))
        .into_iter()
        .find(|s| s.name == "main")
        .expect("main");
    let jal = binutils::disassemble(&dir.join("relaxed"))
        .into_iter()
        .find(|i| i.address == main.value + 8)
        .expect("main's call");
    assert_eq!(
        jal.word & 0x7f,
        0x6f,
        "the call was relaxed to a jal: {jal:?}"
    );
    let original = run(&dir.join("relaxed"), None);
    assert_eq!(original.status.code(), Some(42), "{}", describe(&original));
    let x = dir.join("out");
    refused(
        &insert(&dir.join("relaxed"), &x, &[]),
        "relaxed",
        "relink with -Wl,--no-relax",
    );
    assert!(!x.exists(), "nothing written on a refusal");
    // Relinked as the message says, it inserts and runs.
    let stats = insert_ok(&dir.join("norelax"), &dir.join("norelax.ins"), &[]);
    assert!(
        stats["sites"].as_u64().unwrap() as usize >= BETWEEN + 3,
        "{stats}"
    );
    assert_same_output(
        &original,
        &run(&dir.join("norelax.ins"), None),
        "--no-relax",
    );
}

#[test]
fn check_and_report_read_inserted_outputs_and_rewrite_refuses_them() {
    let dir = scratch_dir("insert-check");
    std::fs::write(dir.join("shapes.c"), SHAPES).unwrap();
    cc(
        &dir,
        "riscv64-linux-gnu-gcc",
        &["-O2", "-Wl,-q", "shapes.c", "-o", "shapes"],
    );
    let fs32 = corpus("freestanding32.c");
    cc(
        &dir,
        "riscv64-linux-gnu-gcc",
        &[
            "-march=rv32gc",
            "-mabi=ilp32",
            "-O2",
            "-ffreestanding",
            "-nostdlib",
            "-static",
            "-Wl,-q",
            fs32.to_str().unwrap(),
            "-o",
            "fs32",
        ],
    );
    let runs: [(&str, Runner); 2] = [
        ("shapes", |p| run(p, None)),
        ("fs32", padtrim_testsuite::run_qemu_rv32),
    ];
    for (tag, runner) in runs {
        let exe = dir.join(tag);
        let sites = insert_run(&exe, runner, tag);
        let out = exe.with_extension("ins");
        check_passes(&out, &["--min-sites", &sites.to_string()]);
        let more = padtrim_testsuite::check(&out, &["--min-sites", &(sites + 1).to_string()]);
        assert_eq!(
            more.status.code(),
            Some(1),
            "{tag}: only {sites} slots: {}",
            describe(&more)
        );
        let rep = padtrim()
            .arg("report")
            .arg(&out)
            .output()
            .expect("run padtrim");
        assert!(rep.status.success(), "{tag}: report: {}", describe(&rep));
        // report reads the slots from padtrim's own __mcount_loc, and says so.
        let text = String::from_utf8_lossy(&rep.stdout);
        assert!(text.contains("table from __mcount_loc"), "{tag}: {text}");
        assert!(text.contains(&format!("sites: {sites} ")), "{tag}: {text}");
        // A plain rewrite of it is refused: the compiler's table is not there to resize.
        let again = padtrim()
            .arg("rewrite")
            .arg(&out)
            .arg("-o")
            .arg(exe.with_extension("again"))
            .output()
            .expect("run padtrim");
        assert_eq!(again.status.code(), Some(2), "{tag}: {}", describe(&again));
        assert!(
            String::from_utf8_lossy(&again.stderr).contains("rewrite the original instead"),
            "{tag}: {}",
            describe(&again)
        );
        assert!(
            !exe.with_extension("again").exists(),
            "{tag}: wrote an output"
        );
    }
}
