//! A shared object whose exported functions call each other through the PLT (no
//! `-Bsymbolic`): the relocation names the function, the bytes reach its PLT stub. The
//! rewritten library must behave as the original under a program that uses it.

use std::path::Path;
use std::process::Command;

use padtrim_testsuite::{rewrite_json, run_ok, scratch_dir, RISCV_SYSROOT};

const LIBRARY: &str = "
int helper(int x) { return x * 7; }
int twice(int x) { return helper(x) + helper(x + 1); }
int api(int x) { return twice(x) + helper(3) + 1; }
";
const PROGRAM: &str = "
#include <stdio.h>
int api(int);
int main(void) { printf(\"api=%d\\n\", api(6)); return api(1) == 43 ? 0 : 1; }
";

fn gcc(dir: &Path, args: &[&str]) {
    run_ok(
        Command::new("riscv64-linux-gnu-gcc")
            .current_dir(dir)
            .args(args),
        "the cross compiler",
    );
}

fn run(dir: &Path, libdir: &str) -> (String, Option<i32>) {
    let out = Command::new("qemu-riscv64")
        .current_dir(dir)
        .args([
            "-L",
            RISCV_SYSROOT,
            "-E",
            &format!("LD_LIBRARY_PATH={libdir}"),
            "./use",
        ])
        .output()
        .expect("run qemu-riscv64");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code(),
    )
}

#[test]
fn calls_through_a_shared_objects_own_plt_are_mapped() {
    let dir = scratch_dir("rewrite-shared-plt");
    std::fs::write(dir.join("lib.c"), LIBRARY).unwrap();
    std::fs::write(dir.join("use.c"), PROGRAM).unwrap();
    gcc(
        &dir,
        &[
            "-O2",
            "-fPIC",
            "-shared",
            "-fpatchable-function-entry=8",
            "lib.c",
            "-Wl,-q",
            "-o",
            "libpt.so",
        ],
    );
    gcc(&dir, &["-O2", "use.c", "-L.", "-lpt", "-o", "use"]);
    std::fs::create_dir_all(dir.join("new")).unwrap();
    let stats = rewrite_json(&dir.join("libpt.so"), &dir.join("new/libpt.so"));
    assert_eq!(stats["sites"], 3, "{stats}");
    assert!(stats["bytes_removed"].as_i64().unwrap() > 0, "{stats}");

    let original = run(&dir, ".");
    assert_eq!(original, ("api=113\n".to_string(), Some(0)));
    assert_eq!(run(&dir, "new"), original);
}
