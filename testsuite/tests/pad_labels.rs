//! A label on the first pre-entry nop of a pad (what a kernel's linker-script markers such as
//! `_stext` or `__init_text_begin` do to a `-fpatchable-function-entry=N,M` function) does not
//! take the pad from its function: the function symbol in the pad owns it.

use std::process::Command;

use padtrim_testsuite::{describe, report_json, rewrite, run_qemu, scratch_dir};

const SOURCE: &str = r#"
#include <stdio.h>
__asm__(".text\n.balign 8\n.globl pad_start_mark\npad_start_mark:\n");
__attribute__((noinline, aligned(8))) int f(int x) { return x * 3 + 1; }
int main(int argc, char **argv) { (void)argv; printf("%d\n", f(argc + 4)); return 3; }
"#;

#[test]
fn a_label_on_a_pads_first_nop_does_not_own_the_pad() {
    let dir = scratch_dir("pad-labels");
    let src = dir.join("mark.c");
    std::fs::write(&src, SOURCE).unwrap();
    let prog = dir.join("mark");
    let cc = Command::new("riscv64-linux-gnu-gcc")
        .args(["-O2", "-march=rv64gc", "-fno-toplevel-reorder"])
        .args(["-fpatchable-function-entry=8,4", "-Wl,-q"])
        .arg(&src)
        .arg("-o")
        .arg(&prog)
        .output()
        .unwrap();
    assert!(cc.status.success(), "{}", describe(&cc));

    let report = report_json(&prog);
    assert_eq!(report["invalid_entries"], 0, "{report}");
    let functions = report["functions"].as_array().unwrap();
    let f = functions
        .iter()
        .find(|r| r["name"] == "f")
        .unwrap_or_else(|| panic!("f owns its pad: {report}"));
    assert_eq!(f["pre_bytes"], 8, "{f}");
    assert!(
        functions.iter().all(|r| r["name"] != "pad_start_mark"),
        "the marker owns no pad: {report}"
    );
    // The marker really sits on the pad's first byte (else this test proves nothing).
    let nm = Command::new("riscv64-linux-gnu-nm")
        .arg(&prog)
        .output()
        .unwrap();
    let mark = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .find(|l| l.ends_with(" pad_start_mark"))
        .and_then(|l| u64::from_str_radix(l.split(' ').next()?, 16).ok())
        .expect("nm lists pad_start_mark");
    assert_eq!(f["pad_address"], mark, "{f}");

    let out = dir.join("mark.pt");
    let rw = rewrite(&prog, &out, &["--pre", "8", "--slot", "4"]);
    assert!(rw.status.success(), "{}", describe(&rw));
    let (before, after) = (run_qemu(&prog, &[], &[]), run_qemu(&out, &[], &[]));
    assert_eq!(before.stdout, after.stdout);
    assert_eq!(before.status.code(), after.status.code());
    assert_eq!(before.status.code(), Some(3));
}
