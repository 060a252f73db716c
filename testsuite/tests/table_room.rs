//! The `__mcount_loc` table of a rewrite must exist even when the freed pad bytes cannot hold
//! it: 8-byte pads compacted to 4-byte slots free 4 bytes a function, half of the table's 8
//! (and a program with a few pads may free too few once alignment is paid). Without
//! the table the rewritten program cannot be traced. The pack layout grows the code segment
//! past the freed bytes (later segments move by whole pages if they must); the in-place
//! layout, which keeps every address, still writes no table and says so.
//!
//! Every output must run as its original (stdout, exit status), verify, and, where it has a
//! table, be traced by `padtrim record` with the exact number of calls.

use std::process::Command;

use padtrim_testsuite::{
    describe, mcount_entries, padtrim, replay_call_counts, rewrite, rewrite_stats, run_ok,
    run_qemu, same_behaviour, scratch_dir, verify,
};

const PROGRAM: &str = r#"
#include <stdio.h>
__attribute__((noinline)) int add(int a, int b) { return a + b; }
__attribute__((noinline)) int fib(int n) { return n < 2 ? n : add(fib(n - 1), fib(n - 2)); }
int main(int argc, char **argv) {
    (void)argv;
    printf("fib=%d add=%d\n", fib(10), add(argc, 2));
    return fib(5);
}
"#;

#[test]
fn slots_whose_freed_bytes_cannot_hold_the_table_still_get_one() {
    let dir = scratch_dir("table-room");
    std::fs::write(dir.join("p.c"), PROGRAM).unwrap();
    // fib(10) + fib(5): 177 + 15 calls; add: one per fib call that recursed, plus main's.
    let (fib_calls, add_calls) = (192, 88 + 7 + 1);
    for (name, flags) in [
        // 8-byte pads (4 c.nop): each 4-byte slot frees 4 bytes, the table needs 8.
        (
            "pad8-pie",
            &["-fpatchable-function-entry=4", "-fPIE", "-pie"][..],
        ),
        (
            "pad8-no-pie",
            &["-fpatchable-function-entry=4", "-no-pie"][..],
        ),
        // Without C: two 4-byte nops, the same 4 bytes freed a function.
        (
            "pad8-rv64g",
            &[
                "-fpatchable-function-entry=2",
                "-march=rv64g",
                "-mabi=lp64d",
                "-no-pie",
            ][..],
        ),
    ] {
        let exe = dir.join(name);
        run_ok(
            Command::new("riscv64-linux-gnu-gcc")
                .args(["-O2", "-Wl,-q", "-o"])
                .arg(&exe)
                .args(flags)
                .arg(dir.join("p.c")),
            "the cross compiler",
        );
        let original = run_qemu(&exe, &[], &[]);
        assert_eq!(
            original.status.code(),
            Some(5),
            "{name}: {}",
            describe(&original)
        );
        for layout in ["pack", "in-place"] {
            let out = dir.join(format!("{name}.{layout}"));
            let rw = rewrite(&exe, &out, &["--slot", "4", "--layout", layout, "--json"]);
            assert!(rw.status.success(), "{name} {layout}: {}", describe(&rw));
            let stats = rewrite_stats(&rw).unwrap_or_else(|e| panic!("{name}: {e}"));
            let rewritten = run_qemu(&out, &[], &[]);
            same_behaviour(&original, &rewritten)
                .unwrap_or_else(|e| panic!("{name} {layout}: {e}"));
            let v = verify(&exe, &out, &[]);
            assert!(v.status.success(), "{name} {layout}: {}", describe(&v));
            let table = mcount_entries(&out);
            if layout == "in-place" {
                // Every address stays: nowhere to put it.
                assert_eq!(stats["table"], false, "{name}: {stats}");
                assert!(table.is_none(), "{name}: in-place wrote a table");
                continue;
            }
            assert_eq!(stats["table"], true, "{name}: {stats}");
            let table = table.unwrap_or_else(|| panic!("{name}: no __mcount_loc section"));
            assert!(table.len() >= 3, "{name}: {table:x?}");
            // A position-dependent program holds the slot addresses themselves (a PIE's
            // words may be left to their dynamic relocations).
            if name.ends_with("no-pie") || name.ends_with("pad8-rv64g") {
                assert!(
                    table.windows(2).all(|w| w[0] < w[1]),
                    "{name}: unsorted {table:x?}"
                );
                assert!(
                    table.iter().all(|a| a % 4 == 0),
                    "{name}: unaligned {table:x?}"
                );
            }
            // The table is what the runtime patches: every call is traced.
            let trace = dir.join(format!("{name}.trace"));
            let rec = padtrim()
                .args(["record", "--graph", "-o"])
                .arg(&trace)
                .arg("--")
                .arg(&out)
                .output()
                .expect("run padtrim record");
            assert_eq!(rec.status.code(), Some(5), "{name}: {}", describe(&rec));
            let calls = replay_call_counts(&trace, &out);
            assert_eq!(calls.get("fib"), Some(&fib_calls), "{name}: {calls:?}");
            assert_eq!(calls.get("add"), Some(&add_calls), "{name}: {calls:?}");
            assert_eq!(calls.get("main"), Some(&1), "{name}: {calls:?}");
        }
    }
}
