//! `padtrim rewrite --insert` on a mixed input: a program whose own code was built with
//! -fpatchable-function-entry, linked -static (glibc's static libc has no pads) with -Wl,-q.
//! Its pads are cut to slots and every libc function gets a slot inserted, in one plan: the
//! output runs under qemu-riscv64 like the original (stdout and exit status), verifies, and
//! its one sorted `__mcount_loc` lists the program's compacted slots and libc's inserted
//! ones. Then, with the runtime linked in, `padtrim record` counts every call exactly in entry
//! and graph mode, the program's functions and libc's alike. A second insertion is refused.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use padtrim_testsuite::{
    assert_same_output, binutils, describe, inserted_patch_entries, mcount_entries, padtrim,
    padtrim_ok, record_trace, replay_call_counts, run_ok, run_qemu, scratch_dir, verify,
};

const PROGRAM: &str = r#"
#include <stdio.h>
#include <string.h>
static volatile int leaf_calls, fib_calls;
__attribute__((noinline)) int leaf(int x) { leaf_calls++; return x * 3 + 1; }
__attribute__((noinline)) int fib(int n) {
    fib_calls++;
    return n < 2 ? n : fib(n - 1) + fib(n - 2);
}
__attribute__((noinline)) size_t measure(const char *s) { return strlen(s); }
int main(void) {
    int s = 0;
    for (int i = 0; i < 5; i++) s += leaf(i);
    s += fib(12);
    char buf[64];
    snprintf(buf, sizeof buf, "n=%d", s);
    puts(buf);
    printf("sum=%d leaf=%d fib=%d len=%zu\n", s, leaf_calls, fib_calls, measure(buf));
    return s % 7;
}
"#;

/// The program's own functions (built with pads) and libc functions it calls (built
/// without).
const OWN: [&str; 4] = ["leaf", "fib", "measure", "main"];
const LIBC: [&str; 3] = ["puts", "strlen", "snprintf"];

/// Builds the program with `-fpatchable-function-entry=pads`, static, `-Wl,-q`, plus `extra`.
fn build(dir: &Path, pads: u32, extra: &[&str], name: &str) -> PathBuf {
    std::fs::write(dir.join("mixed.c"), PROGRAM).unwrap();
    let flag = format!("-fpatchable-function-entry={pads}");
    run_ok(
        Command::new("riscv64-linux-gnu-gcc")
            .current_dir(dir)
            // No sibling-call optimisation: every call the program counts is a real call.
            .args([
                "-O2",
                "-fno-optimize-sibling-calls",
                &flag,
                "-static",
                "-Wl,-q",
            ])
            .arg("mixed.c")
            .args(extra)
            .args(["-o", name]),
        "the cross compiler",
    );
    dir.join(name)
}

/// `rewrite --insert --json --slot SLOT IN -o OUT`, verified; its JSON.
fn insert(input: &Path, output: &Path, slot: &str) -> serde_json::Value {
    let out = padtrim_ok(&[
        "rewrite".as_ref(),
        "--insert".as_ref(),
        "--json".as_ref(),
        "--slot".as_ref(),
        slot.as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        output.as_os_str(),
    ]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(stats["verify"].is_object(), "verified on the way: {stats}");
    let v = verify(input, output, &[]);
    assert!(v.status.success(), "verify: {}", describe(&v));
    stats
}

/// Address of every sized function symbol of `path`, by name.
fn functions(path: &Path) -> HashMap<String, u64> {
    binutils::symbols(path)
        .into_iter()
        .filter(|s| s.kind == "FUNC" && s.size > 0)
        .map(|s| (s.name, s.value))
        .collect()
}

/// Bytes of nops at `addr` in `insns` (address -> instruction), up to the first other one.
fn nop_bytes(insns: &HashMap<u64, &binutils::Insn>, addr: u64) -> u64 {
    let mut at = addr;
    while let Some(i) = insns.get(&at).filter(|i| i.is_nop() || i.is_c_nop()) {
        at += u64::from(i.len);
    }
    at - addr
}

#[test]
fn a_static_program_with_pads_gets_slots_in_its_padless_libc_too() {
    let dir = scratch_dir("insert-mixed");
    for (pads, slot) in [(8, "4"), (8, "8"), (4, "4")] {
        let tag = format!("pads{pads}.slot{slot}");
        let exe = build(&dir, pads, &[], &tag);
        let pad_sites = binutils::table_sites(&exe);
        assert!(pad_sites >= OWN.len() as u64, "{tag}: {pad_sites} pads");
        let out = dir.join(format!("{tag}.ins"));
        let stats = insert(&exe, &out, slot);
        let (inserted, compacted) = (
            stats["sites"].as_u64().unwrap(),
            stats["compacted"].as_u64().unwrap(),
        );
        assert_eq!(compacted, pad_sites, "{tag}: every pad compacted: {stats}");
        // A static libc has hundreds of functions, none with a pad.
        assert!(inserted > 100, "{tag}: {stats}");
        eprintln!(
            "{tag}: {inserted} slots inserted, {compacted} pads compacted, text {} -> {} bytes",
            stats["text_size_before"], stats["text_size_after"]
        );
        assert_same_output(&run_qemu(&exe, &[], &[]), &run_qemu(&out, &[], &[]), &tag);

        // One sorted table: the slots of both kinds.
        let entries = mcount_entries(&out).expect("a __mcount_loc table");
        assert_eq!(entries.len() as u64, inserted + compacted, "{tag}");
        assert!(entries.windows(2).all(|w| w[0] < w[1]), "{tag}: sorted");
        // The added __patchable_function_entries lists them too (the program's own table
        // stays beside it, its entries moved to the pads' slots).
        assert_eq!(
            inserted_patch_entries(&out).as_ref(),
            Some(&entries),
            "{tag}: __patchable_function_entries lists every slot"
        );
        let (old_funcs, new_funcs) = (functions(&exe), functions(&out));
        let old_insns = binutils::disassemble(&exe);
        let new_insns = binutils::disassemble(&out);
        let old_at: HashMap<u64, &binutils::Insn> =
            old_insns.iter().map(|i| (i.address, i)).collect();
        let new_at: HashMap<u64, &binutils::Insn> =
            new_insns.iter().map(|i| (i.address, i)).collect();
        let slot_bytes: u64 = slot.parse().unwrap();
        for name in OWN.iter().chain(&LIBC) {
            let (old, new) = (old_funcs[*name], new_funcs[*name]);
            assert!(
                entries.binary_search(&new).is_ok(),
                "{tag}: {name} at {new:#x} is in __mcount_loc"
            );
            let (had, has) = (nop_bytes(&old_at, old), nop_bytes(&new_at, new));
            if OWN.contains(name) {
                // Compacted: the pad (`pads` c.nops on rv64gc) cut to the slot.
                assert_eq!(had, u64::from(pads) * 2, "{tag}: {name}'s pad");
                assert_eq!(has, slot_bytes.min(had), "{tag}: {name}'s slot");
            } else {
                assert_eq!(had, 0, "{tag}: {name} had no pad");
                assert_eq!(has, slot_bytes, "{tag}: {name}'s inserted slot");
            }
        }

        // report --insert projects the same slots.
        let rep = padtrim_ok(&[
            "report".as_ref(),
            "--insert".as_ref(),
            "--json".as_ref(),
            "--slot".as_ref(),
            slot.as_ref(),
            exe.as_os_str(),
        ]);
        let rep: serde_json::Value = serde_json::from_slice(&rep.stdout).expect("JSON");
        assert_eq!(rep["insert"]["sites"].as_u64(), Some(inserted), "{rep}");
        assert_eq!(
            rep["insert"]["compacted"].as_u64(),
            Some(compacted),
            "{rep}"
        );

        // Its functions have their slots: a second insertion is refused.
        let again = padtrim()
            .args(["rewrite", "--insert"])
            .arg(&out)
            .arg("-o")
            .arg(dir.join("again"))
            .output()
            .expect("run padtrim");
        assert_eq!(again.status.code(), Some(2), "{}", describe(&again));
        assert!(
            String::from_utf8_lossy(&again.stderr).contains("already has a __mcount_loc"),
            "{}",
            describe(&again)
        );
        assert!(!dir.join("again").exists());
    }
}

/// The runtime library to link into a program (scripts/runtime-lib).
fn runtime_lib() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/runtime-lib");
    let out = run_ok(&mut Command::new(script), "runtime-lib");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    PathBuf::from(stdout.lines().last().expect("a path").trim())
}

/// The program's own counts, from its output line `sum=.. leaf=N fib=M len=..`.
fn own_counts(stdout: &str) -> BTreeMap<String, u64> {
    stdout
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter(|(k, _)| *k == "leaf" || *k == "fib")
        .map(|(k, v)| (k.to_string(), v.parse().expect("a count")))
        .collect()
}

#[test]
fn a_mixed_static_program_is_traced_with_exact_counts_in_its_code_and_libc() {
    let dir = scratch_dir("insert-mixed-trace");
    let rt = runtime_lib();
    let exe = build(&dir, 8, &[rt.to_str().unwrap()], "traced");
    let ins = dir.join("traced.ins");
    let stats = insert(&exe, &ins, "4");
    assert!(stats["compacted"].as_u64().unwrap() >= OWN.len() as u64);
    assert_same_output(
        &run_qemu(&exe, &[], &[]),
        &run_qemu(&ins, &[], &[]),
        "with the runtime",
    );
    for mode in ["entry", "graph"] {
        let trace = dir.join(format!("{mode}.trace"));
        // The program exits with its sum mod 7: record passes the status on.
        let rec = record_trace(&trace, &ins, mode == "graph");
        assert!(trace.exists(), "{mode}: no trace: {}", describe(&rec));
        let own = own_counts(&String::from_utf8_lossy(&rec.stdout));
        assert!(own["fib"] > 1 && own["leaf"] == 5, "{own:?}");
        let traced = replay_call_counts(&trace, &ins);
        // The program's compacted slots.
        assert_eq!(traced.get("fib"), own.get("fib"), "{mode}: {traced:?}");
        assert_eq!(traced.get("leaf"), own.get("leaf"), "{mode}: {traced:?}");
        assert_eq!(traced.get("main"), Some(&1), "{mode}: {traced:?}");
        assert_eq!(traced.get("measure"), Some(&1), "{mode}: {traced:?}");
        // libc's inserted slots: called once each by the source.
        assert_eq!(traced.get("puts"), Some(&1), "{mode}: {traced:?}");
        assert_eq!(traced.get("snprintf"), Some(&1), "{mode}: {traced:?}");
        // measure calls strlen; libc may too (puts does).
        assert!(
            traced.get("strlen").is_some_and(|&n| n >= 1),
            "{mode}: {traced:?}"
        );
    }
}

#[test]
fn a_program_whose_every_function_has_a_pad_is_refused_by_insert() {
    let dir = scratch_dir("insert-mixed-all-padded");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/basic.c");
    run_ok(
        Command::new("riscv64-linux-gnu-gcc")
            .current_dir(&dir)
            .args(["-O2", "-fpatchable-function-entry=4", "-Wl,-q"])
            .arg(&src)
            .args(["-o", "padded"]),
        "the cross compiler",
    );
    for cmd in [
        vec!["rewrite", "--insert", "padded", "-o", "out"],
        vec!["report", "--insert", "padded"],
    ] {
        let out = padtrim()
            .current_dir(&dir)
            .args(&cmd)
            .output()
            .expect("run padtrim");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        assert!(
            err.contains("padded") && err.contains("already has a pad"),
            "{err}"
        );
    }
    assert!(!dir.join("out").exists(), "nothing written on a refusal");
}
