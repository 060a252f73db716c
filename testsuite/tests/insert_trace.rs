//! A program built with no tracing support at all (no pads, no runtime; only -Wl,-q) is
//! given slots by `padtrim rewrite --insert`, then traced by `padtrim record` with the
//! preloaded runtime, in entry and in graph mode. Every function's call count in the trace
//! must be the count the program itself kept (or the number of calls in its source), and a
//! loop made from a jump back to a function's own entry (a branch, a `j`) must stay a loop:
//! one call, not one per iteration. A second program calls through pointers (qsort
//! callbacks called back from the C library, a table of function pointers) and recurses
//! (mutually, and fib): its own counts must be the trace's, in both modes.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use padtrim_testsuite::{
    describe, padtrim_ok, record_trace, replay_call_counts, run_ok, scratch_dir,
};

const PROGRAM: &str = r#"
#include <stdio.h>
static volatile int leaf_calls, fib_calls;
__attribute__((noinline)) int leaf(int x) { leaf_calls++; return x * 3 + 1; }
__attribute__((noinline)) int fib(int n) {
    fib_calls++;
    return n < 2 ? n : fib(n - 1) + fib(n - 2);
}
/* Loops made from jumps back to the function's own entry: a branch, and a `j`. */
__asm__(".text\n.globl countdown\n.type countdown,@function\n.p2align 2\ncountdown:\n"
        " addi a0,a0,-1\n bnez a0,countdown\n ret\n.size countdown,.-countdown\n");
__asm__(".text\n.globl spin\n.type spin,@function\n.p2align 2\nspin:\n"
        " addi a0,a0,-1\n beqz a0,1f\n j spin\n1: ret\n.size spin,.-spin\n");
int countdown(int);
int spin(int);
int main(void) {
    int s = 0;
    for (int i = 0; i < 5; i++) s += leaf(i);
    s += fib(12);
    s += countdown(7) + spin(9) + countdown(3);
    printf("sum=%d leaf=%d fib=%d\n", s, leaf_calls, fib_calls);
    return 0;
}
"#;

/// The program's own counts, from its output line `sum=.. leaf=N fib=M`.
fn own_counts(stdout: &str) -> BTreeMap<String, u64> {
    stdout
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter(|(k, _)| *k != "sum")
        .map(|(k, v)| (k.to_string(), v.parse().expect("a count")))
        .collect()
}

/// `padtrim rewrite --insert EXE -o INS`, asserting success.
fn insert(exe: &Path, ins: &Path) {
    padtrim_ok(&[
        "rewrite".as_ref(),
        "--insert".as_ref(),
        exe.as_os_str(),
        "-o".as_ref(),
        ins.as_os_str(),
    ]);
}

#[test]
fn a_program_built_without_pads_is_traced_after_insert_in_entry_and_graph_mode() {
    let dir = scratch_dir("insert-trace");
    std::fs::write(dir.join("loops.c"), PROGRAM).unwrap();
    run_ok(
        Command::new("riscv64-linux-gnu-gcc")
            .current_dir(&dir)
            // No sibling-call optimisation: every call the program counts is a real call
            // (gcc would make part of fib's recursion a loop).
            .args([
                "-O2",
                "-fno-optimize-sibling-calls",
                "-Wl,-q",
                "loops.c",
                "-o",
                "loops",
            ]),
        "the cross compiler",
    );
    let (exe, ins) = (dir.join("loops"), dir.join("loops.ins"));
    insert(&exe, &ins);
    for mode in ["entry", "graph"] {
        let trace = dir.join(format!("{mode}.trace"));
        let rec = record_trace(&trace, &ins, mode == "graph");
        assert!(rec.status.success(), "{mode}: {}", describe(&rec));
        let own = own_counts(&String::from_utf8_lossy(&rec.stdout));
        assert!(own["fib"] > 1 && own["leaf"] == 5, "{own:?}");
        let traced = replay_call_counts(&trace, &ins);
        assert_eq!(traced.get("fib"), own.get("fib"), "{mode}: {traced:?}");
        assert_eq!(traced.get("leaf"), own.get("leaf"), "{mode}: {traced:?}");
        assert_eq!(traced.get("main"), Some(&1), "{mode}: {traced:?}");
        // The source calls them twice and once; their loops jump behind the slot.
        assert_eq!(traced.get("countdown"), Some(&2), "{mode}: {traced:?}");
        assert_eq!(traced.get("spin"), Some(&1), "{mode}: {traced:?}");
    }
    // Graph mode nests them under main, each a leaf call.
    let text = padtrim_ok(&[
        "replay".as_ref(),
        dir.join("graph.trace").as_os_str(),
        "--elf".as_ref(),
        ins.as_os_str(),
    ]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("main() {"), "{text}");
    for leaf in ["countdown();", "spin();", "leaf();"] {
        assert!(
            text.lines()
                .any(|l| l.trim_end().ends_with(&format!("|    {leaf}"))),
            "{leaf} directly under main:\n{text}"
        );
    }
}

/// Calls through pointers and back from the C library: qsort callbacks, a table of function
/// pointers, mutual recursion. Each function counts its own calls and the program prints
/// them as `name=count`.
const CALLBACKS: &str = r#"
#include <stdio.h>
#include <stdlib.h>
static volatile int by_value_calls, by_parity_calls, twice_calls, negate_calls;
static volatile int is_even_calls, is_odd_calls, fib_calls;
__attribute__((noinline)) static int by_value(const void *a, const void *b) {
    by_value_calls++;
    return *(const int *)a - *(const int *)b;
}
__attribute__((noinline)) static int by_parity(const void *a, const void *b) {
    by_parity_calls++;
    return *(const int *)a % 2 - *(const int *)b % 2;
}
__attribute__((noinline)) int twice(int x) { twice_calls++; return 2 * x; }
__attribute__((noinline)) int negate(int x) { negate_calls++; return -x; }
int (*volatile table[])(int) = {twice, negate, twice};
__attribute__((noinline)) int is_odd(int n);
__attribute__((noinline)) int is_even(int n) { is_even_calls++; return n == 0 ? 1 : is_odd(n - 1); }
__attribute__((noinline)) int is_odd(int n) { is_odd_calls++; return n == 0 ? 0 : is_even(n - 1); }
__attribute__((noinline)) int fib(int n) { fib_calls++; return n < 2 ? n : fib(n - 1) + fib(n - 2); }
int main(void) {
    int v[] = {53, 18, 91, 2, 77, 40, 6, 64, 35, 12, 9, 88};
    int n = sizeof v / sizeof v[0], s = 0;
    int (*sorts[])(const void *, const void *) = {by_value, by_parity};
    for (int k = 0; k < 2; k++) qsort(v, n, sizeof v[0], sorts[k]);
    for (int i = 0; i < 10; i++) s += table[i % 3](i);
    s += is_even(31) + fib(11);
    printf("sum=%d by_value=%d by_parity=%d twice=%d negate=%d is_even=%d is_odd=%d fib=%d\n",
           s, by_value_calls, by_parity_calls, twice_calls, negate_calls, is_even_calls,
           is_odd_calls, fib_calls);
    return 0;
}
"#;

#[test]
fn qsort_callbacks_pointer_calls_and_recursion_are_counted_exactly_after_insert() {
    let dir = scratch_dir("insert-trace-callbacks");
    std::fs::write(dir.join("callbacks.c"), CALLBACKS).unwrap();
    run_ok(
        Command::new("riscv64-linux-gnu-gcc")
            .current_dir(&dir)
            .args([
                "-O2",
                "-fno-optimize-sibling-calls",
                "-Wl,-q",
                "callbacks.c",
                "-o",
                "callbacks",
            ]),
        "the cross compiler",
    );
    let (exe, ins) = (dir.join("callbacks"), dir.join("callbacks.ins"));
    insert(&exe, &ins);
    for mode in ["entry", "graph"] {
        let trace = dir.join(format!("{mode}.trace"));
        let rec = record_trace(&trace, &ins, mode == "graph");
        assert!(rec.status.success(), "{mode}: {}", describe(&rec));
        let own = own_counts(&String::from_utf8_lossy(&rec.stdout));
        assert_eq!(own.len(), 7, "{own:?}");
        assert!(own.values().all(|&n| n > 0), "{own:?}");
        let traced = replay_call_counts(&trace, &ins);
        for (name, n) in &own {
            assert_eq!(traced.get(name), Some(n), "{mode}: {name}: {traced:?}");
        }
        assert_eq!(traced.get("main"), Some(&1), "{mode}: {traced:?}");
    }
}
