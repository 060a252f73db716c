//! A kernel's ftrace layout: `report` says which one and the smallest pad it can run with,
//! `check` fails sites the kernel could not patch, and `rewrite` never moves or cuts the
//! `ftrace_ops` literal room of a CALL_OPS kernel (Linux 6.16+,
//! `-fpatchable-function-entry=8,4` with C, `4,2` without).
//!
//! Debian 12 has no 6.16 kernel to build, so the inputs are small programs shaped like one,
//! built here: linked like a vmlinux (`__start_mcount_loc`..`__stop_mcount_loc` around the
//! pad table, `--emit-relocs`, `--no-relax`), functions 8-byte aligned as
//! `FUNCTION_ALIGNMENT_8B` makes them, with the symbols a kernel of each layout has
//! (`ftrace_list_ops` for CALL_OPS, an `ftrace_caller` that returns through `t0` or `ra`),
//! and module-shaped objects (`.gnu.linkonce.this_module`).

use std::path::{Path, PathBuf};
use std::process::Output;

use padtrim_testsuite::describe;
use padtrim_testsuite::{artifact, padtrim, report_json, scratch_dir, Compiler};
use serde_json::Value;

/// Functions with pads, and (with `-DCALL_OPS`) the objects only CALL_OPS kernels define.
const KERNEL_C: &str = r#"
struct ftrace_ops { void (*func)(void); };
static void list_func(void) {}
#ifdef CALL_OPS
const struct ftrace_ops ftrace_list_ops = { list_func };
const struct ftrace_ops ftrace_nop_ops = { list_func };
#else
void (*volatile keep)(void) = list_func;
#endif
#ifdef MODULE
struct module { char name[56]; };
__attribute__((section(".gnu.linkonce.this_module"))) struct module __this_module = { "m" };
#endif
int twice(int x) { return 2 * x; }
int thrice(int x) { return 3 * x + twice(x); }
int word;
void _start(void) { for (;;) word = thrice(twice(word)); }
"#;

/// `ftrace_caller`, aligned to `ALIGN`, returning through `RET` (`jr t0` or `ret`).
const CALLER_S: &str = "
	.text
	.balign ALIGN
	PAD
	.globl ftrace_caller
	.type ftrace_caller, @function
ftrace_caller:
	addi sp, sp, -16
	addi sp, sp, 16
	RET
	.size ftrace_caller, .-ftrace_caller
";

const KERNEL_LDS: &str = r#"
ENTRY(_start)
SECTIONS {
  . = 0x80200000;
  .text : { *(.text .text.*) }
  .rodata : { *(.rodata .rodata.*) }
  .init.data : ALIGN(8) {
    __start_mcount_loc = .; KEEP(*(__patchable_function_entries)) __stop_mcount_loc = .;
  }
  .data : { *(.data .data.* .sdata .sdata.*) }
  .bss : { *(.bss .bss.* .sbss .sbss.*) }
}
"#;

/// How to build one kernel-shaped input.
struct Shape {
    /// `rv64gc` or `rv64g`.
    march: &'static str,
    /// `-fpatchable-function-entry=` value.
    pfe: &'static str,
    /// Define `ftrace_list_ops` / `ftrace_nop_ops`.
    call_ops: bool,
    /// `ftrace_caller`'s return, or no `ftrace_caller` at all.
    caller_return: Option<&'static str>,
    /// `ftrace_caller`'s alignment; below 8 with `misalign` it sits off the 8-byte grid.
    caller_align: u32,
    misalign: bool,
}

impl Shape {
    fn new(march: &'static str, pfe: &'static str) -> Shape {
        Shape {
            march,
            pfe,
            call_ops: false,
            caller_return: Some("jr t0"),
            caller_align: 8,
            misalign: false,
        }
    }
}

fn cc(dir: &Path, shape: &Shape, args: &[&str]) {
    std::fs::write(dir.join("k.c"), KERNEL_C).expect("write source");
    std::fs::write(dir.join("k.lds"), KERNEL_LDS).expect("write linker script");
    let caller = CALLER_S
        .replace("ALIGN", &shape.caller_align.to_string())
        .replace("PAD", if shape.misalign { "c.nop" } else { "" })
        .replace("RET", shape.caller_return.unwrap_or("ret"));
    std::fs::write(dir.join("caller.S"), caller).expect("write assembly");
    let mut cmd = Compiler::Gcc.command();
    cmd.current_dir(dir)
        .arg("-O2")
        .arg(format!("-march={}", shape.march))
        .args(["-mabi=lp64d", "-mcmodel=medany", "-falign-functions=8"])
        .arg(format!("-fpatchable-function-entry={}", shape.pfe));
    if shape.call_ops {
        cmd.arg("-DCALL_OPS");
    }
    let out = cmd
        .args(args)
        .output()
        .expect("run riscv64-linux-gnu-gcc (run scripts/setup)");
    assert!(out.status.success(), "build failed: {}", describe(&out));
}

/// A vmlinux-shaped program built as `shape` says, in a fresh directory named `name`.
fn vmlinux(name: &str, shape: &Shape) -> PathBuf {
    let dir = scratch_dir(&format!("kernel-ftrace-{name}"));
    let mut args = vec![
        "-nostdlib",
        "-static",
        "-Wl,-q,--no-relax",
        "-T",
        "k.lds",
        "k.c",
    ];
    if shape.caller_return.is_some() {
        args.push("caller.S");
    }
    args.extend(["-o", "vmlinux"]);
    cc(&dir, shape, &args);
    dir.join("vmlinux")
}

/// A module-shaped object (`-mno-relax`, as kbuild builds modules, unless `relax`).
fn module(name: &str, shape: &Shape, relax: bool) -> PathBuf {
    let dir = scratch_dir(&format!("kernel-ftrace-{name}"));
    let mut args = vec!["-c", "-DMODULE", "k.c", "-o", "m.ko"];
    if !relax {
        args.push("-mno-relax");
    }
    cc(&dir, shape, &args);
    dir.join("m.ko")
}

fn run(args: &[&str], file: &Path, more: &[&str]) -> Output {
    padtrim()
        .args(args)
        .arg(file)
        .args(more)
        .output()
        .expect("run padtrim")
}

fn text_report(file: &Path) -> String {
    let out = run(&["report"], file, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `kernel` object of the JSON report (panics if there is none).
fn kernel(file: &Path) -> Value {
    let report = report_json(file);
    match report.get("kernel") {
        Some(k) => k.clone(),
        None => panic!("{}: report has no kernel key: {report:#}", file.display()),
    }
}

/// Rewrites `input` with `args` into `<input>.out`; the output path and the outcome.
fn rewrite(input: &Path, args: &[&str]) -> (PathBuf, Output) {
    let output = input.with_extension("out");
    let _ = std::fs::remove_file(&output);
    let out = padtrim()
        .arg("rewrite")
        .arg(input)
        .arg("-o")
        .arg(&output)
        .args(args)
        .output()
        .expect("run padtrim rewrite");
    (output, out)
}

/// Asserts a refusal: exit 2, one stderr line naming the file and every `words`, and no
/// output file.
fn assert_refused(input: &Path, args: &[&str], words: &[&str]) {
    let (output, out) = rewrite(input, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
    assert!(stderr.contains(&*input.to_string_lossy()), "{stderr}");
    for w in words {
        assert!(stderr.contains(w), "{args:?}: {w:?} not in {stderr}");
    }
    assert!(
        !output.exists(),
        "{args:?}: a refused rewrite wrote {output:?}"
    );
}

#[test]
fn call_ops_kernels_are_recognised_with_and_without_their_symbols() {
    for (march, pfe) in [("rv64gc", "8,4"), ("rv64g", "4,2")] {
        for call_ops in [true, false] {
            let name = format!("callops-{march}-{call_ops}");
            let file = vmlinux(
                &name,
                &Shape {
                    call_ops,
                    ..Shape::new(march, pfe)
                },
            );
            let k = kernel(&file);
            assert_eq!(k["image"], "vmlinux", "{name}: {k:#}");
            assert_eq!(k["ftrace_layout"], "call-ops", "{name}: {k:#}");
            assert_eq!(k["min_pad_bytes"], 16, "{name}: {k:#}");
            assert_eq!(k["pre_entry_bytes"], 8, "{name}: {k:#}");
            assert_eq!(k["misplaced_literals"], 0, "{name}: {k:#}");
            let evidence = k["evidence"].to_string();
            assert_eq!(
                evidence.contains("ftrace_list_ops"),
                call_ops,
                "{name}: {evidence}"
            );
            assert!(
                evidence.contains("8 pad bytes before it"),
                "{name}: {evidence}"
            );
            let text = text_report(&file);
            assert!(text.contains("ftrace layout call-ops"), "{name}: {text}");
            assert!(
                text.contains("smallest pad it can run with: 16 bytes: 8 before each entry"),
                "{name}: {text}"
            );
        }
    }
}

#[test]
fn older_layouts_are_told_apart_and_limit_the_slot() {
    // (name, -fpatchable-function-entry, ftrace_caller's return, layout, smallest pad)
    let cases = [
        // Linux 6.1-6.15: 8-byte pads; ftrace_caller returns through t0.
        ("auipc-jalr", "4", Some("jr t0"), "auipc-jalr", 8),
        // 16-byte pads on a kernel that patches 8 (padtrim's pad16 kernel).
        ("pad16", "8", Some("jr t0"), "auipc-jalr", 8),
        // Before 6.1: ftrace_caller returns through ra; the kernel writes 16 bytes.
        ("detour", "8", Some("ret"), "detour-16", 16),
        // 8-byte pads: only the 8-byte call fits them, whatever else is there.
        ("small-pads", "4", None, "auipc-jalr", 8),
        // Nothing to tell by: the 8-byte call is assumed.
        ("unknown", "8", None, "unknown", 8),
    ];
    for (name, pfe, ret, layout, min) in cases {
        let file = vmlinux(
            name,
            &Shape {
                caller_return: ret,
                ..Shape::new("rv64gc", pfe)
            },
        );
        let k = kernel(&file);
        assert_eq!(k["ftrace_layout"], layout, "{name}: {k:#}");
        assert_eq!(k["min_pad_bytes"], min, "{name}: {k:#}");
        assert_eq!(k["pre_entry_bytes"], 0, "{name}: {k:#}");
        let text = text_report(&file);
        assert!(
            text.contains(&format!(
                "ftrace layout {layout}: {}",
                match layout {
                    "auipc-jalr" => "Linux 6.1 to 6.15",
                    "detour-16" => "Linux before 6.1",
                    _ => "not recognised",
                }
            )),
            "{name}: {text}"
        );
        assert!(
            text.contains(&format!(
                "smallest pad it can run with: {min} bytes at each entry"
            )),
            "{name}: {text}"
        );
    }
    // The old detour writes 16 bytes: an 8-byte slot is refused, 16 is fine.
    let detour = vmlinux(
        "detour-rewrite",
        &Shape {
            caller_return: Some("ret"),
            ..Shape::new("rv64gc", "12")
        },
    );
    assert_refused(
        &detour,
        &["--slot", "8"],
        &["16 bytes, detour-16 layout", "--slot 16"],
    );
    let (_, out) = rewrite(&detour, &["--slot", "16"]);
    assert!(out.status.success(), "{}", describe(&out));
}

#[test]
fn files_that_are_not_kernels_have_no_kernel_key() {
    // Programs and objects with pads before their functions, as a CALL_OPS kernel has.
    for name in [
        "basic-rv64gc-p8_2-O2-nopie-ffs",
        "basic-rv64gc-p8_2-O2-nopie-ffs-obj",
        "basic-rv64g-p8_2-O0-static",
    ] {
        let a = artifact(name);
        let report = report_json(&a.path);
        assert!(report.get("kernel").is_none(), "{name}: {report:#}");
        assert!(!text_report(&a.path).contains("ftrace layout"), "{name}");
    }
    // An object compiled like a CALL_OPS kernel's, but no module: not a kernel either.
    let dir = scratch_dir("kernel-ftrace-plain-object");
    cc(
        &dir,
        &Shape {
            call_ops: true,
            ..Shape::new("rv64gc", "8,4")
        },
        &["-c", "k.c", "-o", "k.o"],
    );
    let report = report_json(&dir.join("k.o"));
    assert!(report.get("kernel").is_none(), "{report:#}");
}

#[test]
fn modules_are_kernels_too() {
    for relax in [false, true] {
        let name = format!("module-relax-{relax}");
        let m = module(&name, &Shape::new("rv64gc", "8,4"), relax);
        let k = kernel(&m);
        assert_eq!(k["image"], "module", "{name}: {k:#}");
        assert_eq!(k["ftrace_layout"], "call-ops", "{name}: {k:#}");
        // With relaxation the linker still aligns the pads (R_RISCV_ALIGN): not misplaced.
        assert_eq!(k["misplaced_literals"], 0, "{name}: {k:#}");
        assert_refused(
            &m,
            &[],
            &["ftrace_ops", "--pre 0 would cut them", "--pre 8"],
        );
        assert_refused(
            &m,
            &["--slot", "4", "--pre", "8"],
            &["smaller than the kernel's ftrace patch"],
        );
        let (output, out) = rewrite(&m, &["--slot", "8", "--pre", "8"]);
        assert!(out.status.success(), "{name}: {}", describe(&out));
        assert_eq!(kernel(&output)["misplaced_literals"], 0);
    }
    // A module of a 6.1-6.15 kernel: its 8-byte pads take no 4-byte slot either.
    let m = module("module-61", &Shape::new("rv64gc", "4"), false);
    assert_eq!(kernel(&m)["ftrace_layout"], "auipc-jalr");
    assert_refused(&m, &["--slot", "4"], &["auipc-jalr layout", "--slot 8"]);
}

#[test]
fn call_ops_rewrite_keeps_the_literal_room_in_place() {
    // 8 bytes before and 16 at each function: --pre 8 --slot 8 cuts 8 bytes of each pad.
    let input = vmlinux(
        "callops-24",
        &Shape {
            call_ops: true,
            ..Shape::new("rv64gc", "12,4")
        },
    );
    let before = report_json(&input);
    assert_eq!(before["kernel"]["ftrace_layout"], "call-ops");
    assert!(before["histogram"].get("24").is_some(), "{before:#}");
    let (output, out) = rewrite(&input, &["--slot", "8", "--pre", "8"]);
    assert!(out.status.success(), "{}", describe(&out));
    let after = report_json(&output);
    assert_eq!(after["kernel"]["ftrace_layout"], "call-ops", "{after:#}");
    assert_eq!(after["kernel"]["misplaced_literals"], 0, "{after:#}");
    let functions = after["functions"].as_array().expect("functions");
    assert_eq!(
        functions.len(),
        before["functions"].as_array().map_or(0, Vec::len)
    );
    for f in functions {
        assert_eq!(f["pad_bytes"], 16, "{f}");
        assert_eq!(f["pre_bytes"], 8, "{f}");
        let pad = f["pad_address"].as_u64().expect("address");
        assert_eq!(pad % 8, 0, "{f}");
        assert_eq!(f["address"].as_u64(), Some(pad + 8), "{f}");
    }
    // The pads did move: the test proves something.
    let moved = functions
        .iter()
        .zip(before["functions"].as_array().expect("functions"))
        .any(|(a, b)| a["pad_address"] != b["pad_address"]);
    assert!(moved, "no function moved");
    let out = run(&["check"], &output, &["--max-pad", "16"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // A kernel built with the minimum already has it: the output is the input.
    let minimal = vmlinux(
        "callops-16",
        &Shape {
            call_ops: true,
            ..Shape::new("rv64gc", "8,4")
        },
    );
    let (output, out) = rewrite(&minimal, &["--slot", "8", "--pre", "8"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        std::fs::read(&output).expect("output"),
        std::fs::read(&minimal).expect("input")
    );
}

#[test]
fn call_ops_rewrite_that_would_cut_or_move_the_literal_is_refused() {
    for (march, pfe) in [("rv64gc", "12,4"), ("rv64g", "6,2")] {
        let input = vmlinux(
            &format!("callops-refused-{march}"),
            &Shape {
                call_ops: true,
                ..Shape::new(march, pfe)
            },
        );
        let literal = ["8 bytes before each function", "ftrace_ops", "CALL_OPS"];
        // The default (--slot 4 --pre 0) and a kernel-sized slot without --pre.
        assert_refused(
            &input,
            &[],
            &[&literal[..], &["--pre 0 would cut them", "--pre 8"]].concat(),
        );
        assert_refused(&input, &["--slot", "8"], &literal);
        assert_refused(
            &input,
            &["--slot", "8", "--pre", "4"],
            &["--pre 4 would cut them"],
        );
        // --force allows small slots, never the literal's loss.
        assert_refused(&input, &["--slot", "8", "--force"], &literal);
        assert_refused(
            &input,
            &["--slot", "8", "--pre", "8", "--layout", "pack"],
            &["--layout pack", "--layout in-place"],
        );
        assert_refused(
            &input,
            &["--slot", "4", "--pre", "8"],
            &["4-byte slot is smaller than the kernel's ftrace patch (8 bytes, call-ops layout"],
        );
    }
}

#[test]
fn call_ops_rewrite_that_would_misalign_the_literal_is_refused() {
    // 12 bytes at each entry, and one function off the 8-byte grid: the planner keeps
    // functions 2-byte aligned only, and cutting 4 bytes per pad moves the literals off it.
    let input = vmlinux(
        "callops-misaligned",
        &Shape {
            call_ops: true,
            caller_align: 2,
            misalign: true,
            ..Shape::new("rv64gc", "10,4")
        },
    );
    assert_eq!(kernel(&input)["misplaced_literals"], 0);
    assert_refused(
        &input,
        &["--slot", "8", "--pre", "8"],
        &["8-byte aligned ftrace_ops pointer room", "Nothing written"],
    );
}

#[test]
fn check_fails_a_kernel_whose_ftrace_cannot_patch_its_pads() {
    let input = vmlinux(
        "callops-forced",
        &Shape {
            call_ops: true,
            ..Shape::new("rv64gc", "8,4")
        },
    );
    let out = run(&["check"], &input, &["--max-pad", "16"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // --force takes the slot below the kernel's call: what check must catch.
    let (forced, out) = rewrite(&input, &["--slot", "4", "--pre", "8", "--force"]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = run(&["check", "--json"], &forced, &["--max-pad", "16"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let finding = v["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["kind"] == "kernel-unpatchable"))
        .unwrap_or_else(|| panic!("no kernel-unpatchable finding: {v:#}"));
    let m = finding["message"].as_str().expect("message");
    assert!(
        m.contains("cannot take the kernel's ftrace patch (call-ops layout: 16 bytes"),
        "{m}"
    );
    assert!(m.contains("4 bytes at the entry, 8 needed"), "{m}");
}
