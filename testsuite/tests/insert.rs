//! `padtrim rewrite --insert`: programs built WITHOUT pads (no -fpatchable-function-entry),
//! linked with -Wl,-q, get a slot at every function entry. Each one is built from the corpus
//! sources at test time (rv64gc and rv64g, -O0 and -O2, PIE, static, a shared object and
//! the program using it, C++ with exceptions, threads), inserted, run under qemu-riscv64
//! beside the original (same stdout, same exit status), verified again by `padtrim verify`,
//! and its `__mcount_loc` checked against the functions of the original. Then the refusals.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use padtrim_testsuite::{
    binutils, describe, padtrim, run_ok, run_qemu, scratch_dir, verify, RISCV_SYSROOT,
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

/// The `__mcount_loc` entries of `path`, in table order.
fn mcount_entries(path: &Path) -> Vec<u64> {
    let sections = binutils::sections(path);
    let table = sections
        .iter()
        .find(|s| s.name == "__mcount_loc")
        .unwrap_or_else(|| panic!("{} has no __mcount_loc", path.display()));
    binutils::section_data(path, table)
        .chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

/// Every table entry is the new address of a function of `output` (the slot is the new
/// function address), sorted, one per address; the slot holds nops (objdump says so).
fn check_table(output: &Path, sites: u64) {
    let entries = mcount_entries(output);
    assert_eq!(entries.len() as u64, sites, "{}", output.display());
    assert!(entries.windows(2).all(|w| w[0] < w[1]), "sorted, distinct");
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

/// Same stdout and exit status.
fn same(original: &Output, inserted: &Output, what: &str) {
    assert_eq!(
        (
            String::from_utf8_lossy(&original.stdout),
            original.status.code()
        ),
        (
            String::from_utf8_lossy(&inserted.stdout),
            inserted.status.code()
        ),
        "{what}: the inserted program behaves differently\noriginal: {}\ninserted: {}",
        describe(original),
        describe(inserted)
    );
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
    same(&run(&exe, None), &run(&out, None), tag);
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
    same(
        &original,
        &run(&dir.join("use"), Some(&dir.join("new"))),
        "library",
    );
    same(
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
    same(&original, &run(&dir.join("basic.8"), None), "--slot 8");

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
    same(&original, &run(&dir.join("basic.fib"), None), "--functions");
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
    cc(&dir, gcc, &["-O2", "-c", src, "-o", "basic.o"]);
    cc(&dir, gcc, &["-O2", "-Wl,-q", src, "-o", "plain"]);
    let x = dir.join("out");
    refused(
        &insert(&dir.join("norelocs"), &x, &[]),
        "norelocs",
        "-Wl,-q",
    );
    refused(
        &insert(&dir.join("basic.o"), &x, &[]),
        "basic.o",
        "not supported yet",
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
