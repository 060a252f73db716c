//! `padtrim rewrite --insert` on object files (`.o`), linked afterwards: every object of a
//! program built with no tracing support is given slots, then linked as the originals are.
//! The linked program must run as the original does (same stdout, same exit status) under
//! qemu, carry one `__patchable_function_entries` entry per slot, pass `check --min-sites`,
//! and, rewritten once more to get its `__mcount_loc`, be traced with exact call counts.
//! Built with gcc (relaxed, `-mno-relax`, `-ffunction-sections` with `--gc-sections`, `-O0 -g`,
//! rv64g without C, PIE and static) and clang, in C and C++ (COMDAT inline functions and
//! templates); then the refusals (a kernel module, an object with pads, C++ exception
//! tables, not supported yet) and a function whose call frame advance could not take the
//! slot.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use padtrim_testsuite::{
    assert_same_output, binutils, describe, mcount_entries, padtrim, padtrim_ok, record_trace,
    replay_call_counts, run_ok, run_qemu, scratch_dir,
};

/// The program's first object: calls into the second, function pointers, a dense switch,
/// setjmp/longjmp, static functions, a loop made from a tail call. It prints what each
/// function it defines was called and exits with a status that depends on all of it.
const MAIN_C: &str = r#"
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
int lib_dense(int op, int x);
int lib_fib(int n);
int lib_sum(int n, ...);
long lib_countdown(long n, long acc);
int lib_apply(int (*f)(int), int x);
extern volatile int lib_calls;
static volatile int main_calls;
__attribute__((noinline)) static int by_value(const void *a, const void *b) {
    main_calls++;
    return *(const int *)a - *(const int *)b;
}
__attribute__((noinline)) int twice(int x) { main_calls++; return 2 * x; }
__attribute__((noinline)) static int negate(int x) { main_calls++; return -x; }
int (*const table[])(int) = {twice, negate};
static jmp_buf out;
__attribute__((noinline)) void dive(int depth) {
    main_calls++;
    if (depth == 5) longjmp(out, depth * 3);
    dive(depth + 1);
}
int main(void) {
    int v[] = {53, 18, 91, 2, 77, 40, 6, 64, 35};
    int n = sizeof v / sizeof v[0], s = 0;
    qsort(v, n, sizeof v[0], by_value);
    for (int i = 0; i < n; i++) printf("%d ", v[i]);
    for (int op = 0; op < 11; op++) s += lib_dense(op, 17 + op);
    for (int i = 0; i < 6; i++) s += table[i % 2](i) + lib_apply(table[(i + 1) % 2], i);
    int caught = setjmp(out);
    if (!caught) dive(0);
    s += lib_fib(13) + lib_sum(4, 1, 2, 3, 4) + (int)lib_countdown(50, 0);
    printf("\ns=%d longjmp=%d main_calls=%d lib_calls=%d\n", s, caught, main_calls, lib_calls);
    return (s + caught) & 0x7f;
}
"#;

/// The second object: what the first calls.
const LIB_C: &str = r#"
#include <stdarg.h>
volatile int lib_calls;
__attribute__((noinline)) int lib_dense(int op, int x) {
    lib_calls++;
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
__attribute__((noinline)) int lib_fib(int n) { lib_calls++; return n < 2 ? n : lib_fib(n - 1) + lib_fib(n - 2); }
__attribute__((noinline)) int lib_sum(int n, ...) {
    va_list ap;
    int s = 0;
    lib_calls++;
    va_start(ap, n);
    for (int i = 0; i < n; i++) s += va_arg(ap, int);
    va_end(ap);
    return s;
}
/* gcc makes the tail call a loop back to the entry: behind the slot, not a call. */
__attribute__((noinline)) long lib_countdown(long n, long acc) {
    if (n == 0) return acc + lib_calls++;
    return lib_countdown(n - 1, acc + n);
}
__attribute__((noinline)) int lib_apply(int (*f)(int), int x) { lib_calls++; return f(x) + 1; }
"#;

/// Compiles or links with `argv` in `dir`.
fn cc(dir: &Path, argv: &[&str]) {
    run_ok(
        Command::new(argv[0]).current_dir(dir).args(&argv[1..]),
        "the cross compiler",
    );
}

/// `padtrim rewrite --insert IN -o OUT --json`, asserting success; the slots inserted.
fn insert_object(input: &Path, output: &Path) -> u64 {
    let out = padtrim()
        .args(["rewrite", "--insert", "--json"])
        .arg(input)
        .arg("-o")
        .arg(output)
        .output()
        .expect("run padtrim");
    assert!(
        out.status.success(),
        "rewrite --insert {}: {}",
        input.display(),
        describe(&out)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let sites = stats["sites"].as_u64().expect("sites");
    assert!(sites > 0, "{stats}");
    sites
}

/// The `__patchable_function_entries` tables of `object`: (table index, code section index,
/// entries) from `readelf -S` and `readelf -r`.
fn object_tables(object: &Path) -> Vec<(String, u64)> {
    let out = run_ok(
        Command::new("riscv64-linux-gnu-readelf")
            .arg("-rW")
            .arg(object),
        "readelf",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut entries = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.starts_with("Relocation section") {
            in_table = line.contains("'.rela__patchable_function_entries'");
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if in_table && f.len() >= 5 && f[2].starts_with("R_RISCV_") {
            entries.push((
                f[2].to_string(),
                u64::from_str_radix(f[0], 16).unwrap_or(u64::MAX),
            ));
        }
    }
    entries
}

/// The slots of the linked `exe` (its `__mcount_loc`, after `padtrim rewrite`): one per
/// function entry, 4-byte aligned, each a `nop`.
fn check_slots(exe: &Path, at_least: u64) {
    let entries = mcount_entries(exe).expect("a __mcount_loc table");
    assert!(
        entries.len() as u64 >= at_least,
        "{}: {} slots, at least {at_least}",
        exe.display(),
        entries.len()
    );
    let funcs: std::collections::BTreeSet<u64> = binutils::symbols(exe)
        .iter()
        .filter(|s| s.kind == "FUNC" && s.size > 0)
        .map(|s| s.value)
        .collect();
    let insns = binutils::disassemble(exe);
    let at: std::collections::HashMap<u64, &binutils::Insn> =
        insns.iter().map(|i| (i.address, i)).collect();
    for e in &entries {
        assert!(
            funcs.contains(e),
            "{e:#x} is not a function of {}",
            exe.display()
        );
        assert_eq!(
            e % 4,
            0,
            "{}: slot {e:#x} is not 4-byte aligned",
            exe.display()
        );
        let insn = at
            .get(e)
            .unwrap_or_else(|| panic!("{}: no instruction at slot {e:#x}", exe.display()));
        assert!(
            insn.is_nop() && insn.len == 4,
            "slot at {e:#x} is one 4-byte nop: {insn:?}"
        );
    }
}

/// Builds the objects of `sources` with `compile` (the compiler and its flags), inserts
/// slots into each, links originals and inserted objects with `link` flags (and -Wl,-q),
/// runs both, checks the table and the slots. Returns the linked inserted program.
fn objects_round_trip(
    dir: &Path,
    tag: &str,
    compile: &[&str],
    link: &[&str],
    sources: &[&str],
) -> std::path::PathBuf {
    let mut originals = Vec::new();
    let mut inserted = Vec::new();
    let mut slots = 0;
    for src in sources {
        let stem = Path::new(src).file_stem().unwrap().to_str().unwrap();
        let o = format!("{tag}-{stem}.o");
        let mut argv = compile.to_vec();
        argv.extend(["-c", src, "-o", &o]);
        cc(dir, &argv);
        let ins = format!("{tag}-{stem}.ins.o");
        let n = insert_object(&dir.join(&o), &dir.join(&ins));
        let table = object_tables(&dir.join(&ins));
        assert_eq!(
            table.len() as u64,
            n,
            "{ins}: one table entry per slot: {table:?}"
        );
        let word = if compile.iter().any(|f| f.contains("rv32")) {
            "R_RISCV_32"
        } else {
            "R_RISCV_64"
        };
        assert!(table.iter().all(|(t, _)| t == word), "{ins}: {table:?}");
        slots += n;
        originals.push(o);
        inserted.push(ins);
    }
    let (exe, exe_ins) = (tag.to_string(), format!("{tag}.ins"));
    for (objects, out) in [(&originals, &exe), (&inserted, &exe_ins)] {
        // The compiler driver links, with the flags that choose the target.
        let mut argv: Vec<&str> = compile
            .iter()
            .copied()
            .filter(|f| {
                !f.starts_with("-O") && !f.starts_with("-f") && *f != "-g" && *f != "-mno-relax"
            })
            .collect();
        argv.extend(link);
        argv.push("-Wl,-q");
        argv.extend(objects.iter().map(String::as_str));
        argv.extend(["-o", out]);
        cc(dir, &argv);
    }
    let (exe, exe_ins) = (dir.join(exe), dir.join(exe_ins));
    let original = run_qemu(&exe, &[], &[]);
    assert!(
        original.status.code().is_some(),
        "{tag}: {}",
        describe(&original)
    );
    assert_same_output(&original, &run_qemu(&exe_ins, &[], &[]), tag);
    // The linker gathered every object's table: check reads it, as from a compiler's.
    let gc = link.contains(&"-Wl,--gc-sections");
    let min = if gc { 1 } else { slots };
    let out = padtrim_testsuite::check(&exe_ins, &["--min-sites", &min.to_string()]);
    assert!(
        out.status.success(),
        "{tag}: check --min-sites {min}: {}",
        describe(&out)
    );
    // Its pads are slots already: rewrite adds the __mcount_loc the runtime reads.
    let traced = dir.join(format!("{tag}.traced"));
    padtrim_ok(&[
        "rewrite".as_ref(),
        exe_ins.as_os_str(),
        "-o".as_ref(),
        traced.as_os_str(),
    ]);
    check_slots(&traced, min);
    assert_same_output(&original, &run_qemu(&traced, &[], &[]), tag);
    traced
}

#[test]
fn objects_given_slots_link_and_run_as_the_originals_with_gcc_and_clang() {
    let dir = scratch_dir("insert-objects");
    std::fs::write(dir.join("main.c"), MAIN_C).unwrap();
    std::fs::write(dir.join("lib.c"), LIB_C).unwrap();
    let gcc = "riscv64-linux-gnu-gcc";
    let builds: &[(&str, &[&str], &[&str])] = &[
        ("gcc-O2", &[gcc, "-O2"], &[]),
        ("gcc-O2-norelax", &[gcc, "-O2", "-mno-relax"], &[]),
        (
            "gcc-O2-sections",
            &[gcc, "-O2", "-ffunction-sections", "-fdata-sections"],
            &["-Wl,--gc-sections"],
        ),
        ("gcc-O0-g", &[gcc, "-O0", "-g"], &[]),
        (
            "gcc-rv64g-O2",
            &[gcc, "-O2", "-march=rv64g", "-mabi=lp64d"],
            &[],
        ),
        ("gcc-O2-pie", &[gcc, "-O2", "-fPIE"], &["-pie"]),
        ("gcc-O2-static", &[gcc, "-O2"], &["-static"]),
        (
            "clang-O2",
            &["clang", "--target=riscv64-linux-gnu", "-O2"],
            &[],
        ),
        (
            "clang-O1-g-norelax",
            &["clang", "--target=riscv64-linux-gnu", "-O1", "-mno-relax"],
            &[],
        ),
    ];
    for (tag, compile, link) in builds {
        objects_round_trip(&dir, tag, compile, link, &["main.c", "lib.c"]);
    }
}

#[test]
fn cxx_objects_with_exception_tables_are_refused_and_cxx_without_them_runs() {
    let dir = scratch_dir("insert-objects-cxx");
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join("cxx.cc");
    std::fs::copy(&src, dir.join("cxx.cc")).unwrap();
    let gxx = "riscv64-linux-gnu-g++";
    for compiler in [&[gxx][..], &["clang++", "--target=riscv64-linux-gnu"][..]] {
        let mut argv = compiler.to_vec();
        argv.extend(["-O2", "-c", "cxx.cc", "-o", "cxx.o"]);
        cc(&dir, &argv);
        refused(&dir, "cxx.o", ".gcc_except_table");
    }
    // C++ without exceptions: COMDAT inline functions and templates, their tables in their
    // groups.
    for (tag, compile) in [
        ("gxx-O2", &[gxx, "-O2", "-fno-exceptions"][..]),
        (
            "clangxx-O2",
            &[
                "clang++",
                "--target=riscv64-linux-gnu",
                "-O2",
                "-fno-exceptions",
            ][..],
        ),
    ] {
        std::fs::write(dir.join("tmpl.cc"), TEMPLATES_CC).unwrap();
        objects_round_trip(&dir, tag, compile, &[], &["tmpl.cc"]);
        let groups = run_ok(
            Command::new("riscv64-linux-gnu-readelf")
                .args(["-gW", &format!("{tag}-tmpl.ins.o")])
                .current_dir(&dir),
            "readelf",
        );
        let text = String::from_utf8_lossy(&groups.stdout);
        assert!(
            text.contains("COMDAT group")
                && text.contains("__patchable_function_entries")
                && text.contains(".rela__patchable_function_entries"),
            "{tag}: tables in their COMDAT groups:\n{text}"
        );
    }
}

/// C++ without exceptions: templates and inline member functions (COMDAT groups), virtual
/// calls.
const TEMPLATES_CC: &str = r#"
#include <cstdio>
template <typename T> struct Acc {
    T sum{};
    __attribute__((noinline)) void add(T x) { sum += x * 2; }
    __attribute__((noinline)) T get() const { return sum; }
};
struct Shape { virtual ~Shape() {} virtual int area() const = 0; };
struct Sq : Shape { int s; explicit Sq(int s) : s(s) {} int area() const override { return s * s; } };
struct Rc : Shape { int w, h; Rc(int w, int h) : w(w), h(h) {} int area() const override { return w * h; } };
__attribute__((noinline)) int total(const Shape *const *v, int n) {
    int t = 0;
    for (int i = 0; i < n; i++) t += v[i]->area();
    return t;
}
int main() {
    Acc<int> a; Acc<long> b;
    for (int i = 0; i < 10; i++) { a.add(i); b.add(i * 3L); }
    Sq s(4); Rc r(2, 5);
    const Shape *v[] = {&s, &r, &s};
    std::printf("%d %ld %d\n", a.get(), b.get(), total(v, 3));
    return a.get() % 7;
}
"#;

/// The call counts a program prints as `name=count` words.
fn own_counts(stdout: &str) -> BTreeMap<String, u64> {
    stdout
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

/// A program whose every function counts its calls; `spin` loops back to its own entry
/// with a `j` (a loop, one call), `lib_countdown` with the tail call gcc turns into one.
const COUNTED_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
static volatile int by_value_calls, twice_calls, fib_calls, countdown_calls;
__attribute__((noinline)) static int by_value(const void *a, const void *b) {
    by_value_calls++;
    return *(const int *)a - *(const int *)b;
}
__attribute__((noinline)) int twice(int x) { twice_calls++; return 2 * x; }
int (*volatile fp)(int) = twice;
/* Stored through a volatile: no call is a tail call, so no compiler makes one a loop. */
__attribute__((noinline)) int fib(int n) {
    fib_calls++;
    if (n < 2) return n;
    volatile int r = fib(n - 1) + fib(n - 2);
    return r;
}
__attribute__((noinline)) long countdown(long n) { countdown_calls++; long s = 0; while (n) s += n--; return s; }
__asm__(".text\n.globl spin\n.type spin,@function\n.p2align 2\nspin:\n"
        " addi a0,a0,-1\n beqz a0,1f\n j spin\n1: ret\n.size spin,.-spin\n");
int spin(int);
int main(void) {
    int v[] = {5, 3, 9, 1, 7, 4};
    qsort(v, 6, sizeof v[0], by_value);
    int s = fib(11) + fp(3) + fp(4) + (int)countdown(10) + spin(6) + spin(2) + v[0];
    printf("s=%d by_value=%d twice=%d fib=%d countdown=%d spin=2\n", s, by_value_calls,
           twice_calls, fib_calls, countdown_calls);
    return 0;
}
"#;

#[test]
fn a_program_linked_from_inserted_objects_is_traced_with_exact_call_counts() {
    let dir = scratch_dir("insert-objects-trace");
    std::fs::write(dir.join("counted.c"), COUNTED_C).unwrap();
    let gcc = "riscv64-linux-gnu-gcc";
    for (tag, compile) in [
        ("gcc", &[gcc, "-O2", "-fno-optimize-sibling-calls"][..]),
        ("clang", &["clang", "--target=riscv64-linux-gnu", "-O2"][..]),
    ] {
        let traced = objects_round_trip(&dir, tag, compile, &[], &["counted.c"]);
        for graph in [false, true] {
            let trace = dir.join(format!("{tag}-{graph}.trace"));
            let rec = record_trace(&trace, &traced, graph);
            assert!(rec.status.success(), "{tag}: {}", describe(&rec));
            let own = own_counts(&String::from_utf8_lossy(&rec.stdout));
            assert_eq!(own.len(), 6, "{own:?}");
            let counts = replay_call_counts(&trace, &traced);
            for (name, n) in own.iter().filter(|(k, _)| *k != "s") {
                assert_eq!(
                    counts.get(name),
                    Some(n),
                    "{tag} graph={graph}: {name}: {counts:?}"
                );
            }
            assert_eq!(counts.get("main"), Some(&1), "{tag}: {counts:?}");
        }
    }
}

/// `padtrim rewrite --insert IN -o OUT` must fail with exit 2 naming the file and `why`,
/// and write nothing.
fn refused(dir: &Path, input: &str, why: &str) {
    let out: Output = padtrim()
        .args(["rewrite", "--insert", input, "-o", "refused.o"])
        .current_dir(dir)
        .output()
        .expect("run padtrim");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{input}: {}", describe(&out));
    assert!(
        err.contains(input) && err.contains(why),
        "{input}: {why}?\n{err}"
    );
    assert!(!dir.join("refused.o").exists(), "{input}: nothing written");
}

#[test]
fn modules_and_objects_with_pads_are_refused_and_a_tight_frame_keeps_its_function_unslotted() {
    let dir = scratch_dir("insert-objects-refusals");
    let gcc = "riscv64-linux-gnu-gcc";
    std::fs::write(
        dir.join("module.c"),
        "static const char license[] __attribute__((section(\".modinfo\"), used)) = \"license=GPL\";\n\
         int init_module(void) { return 0; }\n",
    )
    .unwrap();
    cc(&dir, &[gcc, "-O2", "-c", "module.c", "-o", "module.ko"]);
    refused(&dir, "module.ko", "kernel module");
    std::fs::write(dir.join("lib.c"), LIB_C).unwrap();
    cc(
        &dir,
        &[
            gcc,
            "-O2",
            "-fpatchable-function-entry=8",
            "-c",
            "lib.c",
            "-o",
            "padded.o",
        ],
    );
    refused(&dir, "padded.o", "already has pads");

    // The first call frame row of `tight` is 62 bytes in, past a call the linker may relax,
    // so a 6-bit advance the linker sets (R_RISCV_SET6): 4 more bytes would not fit it, so
    // `tight` gets no slot; `roomy` does.
    let asm = r#"
    .text
    .globl tight
    .type tight,@function
    .p2align 2
tight:
    .cfi_startproc
    .option push
    .option norvc
    .rept 11
    addi a0, a0, 1
    .endr
    mv t1, ra
    call roomy
    mv ra, t1
    .option pop
    addi sp, sp, -16
    .cfi_def_cfa_offset 16
    addi sp, sp, 16
    .cfi_def_cfa_offset 0
    ret
    .cfi_endproc
    .size tight, .-tight
    .globl roomy
    .type roomy,@function
roomy:
    .cfi_startproc
    addi sp, sp, -16
    .cfi_def_cfa_offset 16
    addi a0, a0, 2
    addi sp, sp, 16
    .cfi_def_cfa_offset 0
    ret
    .cfi_endproc
    .size roomy, .-roomy
"#;
    std::fs::write(dir.join("tight.s"), asm).unwrap();
    std::fs::write(
        dir.join("use.c"),
        "#include <stdio.h>\nint tight(int); int roomy(int);\n\
         int main(void) { printf(\"%d %d\\n\", tight(1), roomy(1)); return 3; }\n",
    )
    .unwrap();
    cc(&dir, &[gcc, "-c", "tight.s", "-o", "tight.o"]);
    let relocs = run_ok(
        Command::new("riscv64-linux-gnu-readelf")
            .args(["-rW", "tight.o"])
            .current_dir(&dir),
        "readelf",
    );
    assert!(
        String::from_utf8_lossy(&relocs.stdout).contains("R_RISCV_SET6"),
        "the advance is set by the linker, or this tests nothing"
    );
    assert_eq!(
        insert_object(&dir.join("tight.o"), &dir.join("tight.ins.o")),
        1
    );
    cc(&dir, &[gcc, "-O2", "use.c", "tight.o", "-o", "use"]);
    cc(&dir, &[gcc, "-O2", "use.c", "tight.ins.o", "-o", "use.ins"]);
    let original = run_qemu(&dir.join("use"), &[], &[]);
    assert_eq!(String::from_utf8_lossy(&original.stdout), "14 3\n");
    assert_same_output(
        &original,
        &run_qemu(&dir.join("use.ins"), &[], &[]),
        "tight",
    );
    let roomy = binutils::symbols(&dir.join("use.ins"))
        .into_iter()
        .find(|s| s.name == "roomy")
        .expect("roomy");
    let insns = binutils::disassemble(&dir.join("use.ins"));
    let first = insns
        .iter()
        .find(|i| i.address == roomy.value)
        .expect("roomy's first insn");
    assert!(first.is_nop(), "roomy starts with its slot: {first:?}");
}
