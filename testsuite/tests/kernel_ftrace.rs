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
//!
//! A kernel built with padtrim's ftrace patch series (`runtime/kernel/`, issue 19) traces
//! through 4-byte slots: the last tests build a program shaped like one, over 2 MiB of text
//! with `ftrace_jal_caller` at its start and `riscv_ftrace_islands` in `.data`, that does
//! what the patched kernel does (enable each site with `jal t0` to the caller or to an island
//! from the table when the table is filled, else with `auipc t0; jalr t0`; disable with
//! nops; the callers record `t0 - t3`), and run it under qemu before and after
//! `rewrite --slot 4`.

use std::path::{Path, PathBuf};
use std::process::Output;

use padtrim_testsuite::describe;
use padtrim_testsuite::{artifact, padtrim, report_json, run_qemu, scratch_dir, Compiler};
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

/// The patched kernel's ftrace in miniature (`-DUNPATCHED`: the unpatched one).
const SLOT_RT_C: &str = r#"/* The kernel's side of a 4-byte slot, in miniature (arch/riscv/kernel/ftrace.c with padtrim's
 * patch): each traced function's entry is enabled with jal t0 (to ftrace_jal_caller or an
 * island from riscv_ftrace_islands) when the table is filled, else with auipc t0 + jalr t0 to
 * ftrace_caller, and disabled with nops; the callers record t0 - t3. */
#define NOP4 0x00000013u
#define JAL_T0 0x000002efu
#define ISLANDS 8
extern unsigned long __start_mcount_loc[], __stop_mcount_loc[];
extern char _stext[], _etext[];
#ifndef UNPATCHED
unsigned long riscv_ftrace_islands[ISLANDS] __attribute__((section(".data"), aligned(8)));
void ftrace_jal_caller(void);
#endif
void ftrace_caller(void);
volatile unsigned long traced_func, traced_calls;

static long sys3(long n, long a, long b, long c)
{
	register long a7 asm("a7") = n, a0 asm("a0") = a, a1 asm("a1") = b, a2 asm("a2") = c;
	asm volatile("ecall" : "+r"(a0) : "r"(a1), "r"(a2), "r"(a7) : "memory");
	return a0;
}
static void put(const char *s) { long n = 0; while (s[n]) n++; sys3(64, 1, (long)s, n); }
static void put_err(const char *s) { long n = 0; while (s[n]) n++; sys3(64, 2, (long)s, n); }
static void put_num(long v)
{
	char b[24]; int i = 23; unsigned long u = v < 0 ? -v : v;
	b[i] = 0;
	do { b[--i] = '0' + u % 10; u /= 10; } while (u);
	if (v < 0) b[--i] = '-';
	put(b + i);
}
static void write_text(unsigned long ip, const unsigned int *w, int n)
{
	for (int i = 0; i < n; i++)
		((volatile unsigned int *)ip)[i] = w[i];
	asm volatile("fence.i" ::: "memory");
}
static int reaches(unsigned long pc, unsigned long to)
{
	long off = to - pc;
	return off >= -(1L << 20) && off < (1L << 20);
}
static int slot4(void)
{
#ifdef UNPATCHED
	return 0;
#else
	return riscv_ftrace_islands[0] != 0;
#endif
}
static int enable(unsigned long ip)
{
	unsigned int w[2];
	if (slot4()) {
#ifndef UNPATCHED
		unsigned long to = (unsigned long)ftrace_jal_caller, off;
		for (int i = 0; !reaches(ip, to); i++) {
			if (i == ISLANDS || !riscv_ftrace_islands[i])
				return -1;
			to = riscv_ftrace_islands[i];
		}
		off = to - ip;
		w[0] = (((off >> 20) & 1) << 31) | (((off >> 1) & 0x3ff) << 21) |
		       (((off >> 11) & 1) << 20) | (((off >> 12) & 0xff) << 12) | JAL_T0;
		write_text(ip, w, 1);
#endif
		return 0;
	}
	unsigned int off = (unsigned long)ftrace_caller - ip;
	w[0] = ((off & 0x800) ? (off & 0xfffff000) + 0x1000 : (off & 0xfffff000)) | 0x297;
	w[1] = ((off & 0xfff) << 20) | 0x282e7;
	write_text(ip, w, 2);
	return 0;
}
static void disable(unsigned long ip)
{
	unsigned int w[2] = { NOP4, NOP4 };
	write_text(ip, w, slot4() ? 1 : 2);
}
int main(void)
{
	unsigned long lo = (unsigned long)_stext & ~4095UL;
	int bad = 0;
	if (sys3(226, lo, (unsigned long)_etext - lo, 7)) { /* mprotect RWX */
		put("mprotect failed\n");
		return 3;
	}
	put_err(slot4() ? "slot 4\n" : "slot 8\n");
	for (unsigned long *e = __start_mcount_loc; e < __stop_mcount_loc; e++) {
		int (*f)(int) = (int (*)(int))*e;
		long k = e - __start_mcount_loc;
		disable(*e);
		int plain = f(3);
		if (enable(*e)) {
			put("function "); put_num(k); put(": no island in reach\n");
			bad = 1;
			continue;
		}
		unsigned long calls = traced_calls;
		traced_func = 0;
		int traced = f(3);
		int ok = traced == plain && traced_calls == calls + 1 && traced_func == *e;
		disable(*e);
		f(3);
		ok = ok && traced_calls == calls + 1;
		put("function "); put_num(k); put(": f(3) = "); put_num(plain);
		put(ok ? ", traced once at its entry\n" : ", NOT traced right\n");
		bad |= !ok;
	}
	put("traced "); put_num(__stop_mcount_loc - __start_mcount_loc); put(" functions\n");
	return bad;
}
void _start(void)
{
	sys3(93, main(), 0, 0);
}
"#;

/// `ftrace_jal_caller` (t3 = 4) and `ftrace_caller` (t3 = 8): record t0 - t3, count, return.
const SLOT_CALLER_S: &str = "	.text
#ifndef UNPATCHED
	.globl ftrace_jal_caller
	.type ftrace_jal_caller, @function
ftrace_jal_caller:
	li	t3, 4
	j	1f
	.size ftrace_jal_caller, .-ftrace_jal_caller
#endif
	.globl ftrace_caller
	.type ftrace_caller, @function
ftrace_caller:
	li	t3, 8
1:	sub	t3, t0, t3
	la	t4, traced_func
	sd	t3, 0(t4)
	la	t4, traced_calls
	ld	t3, 0(t4)
	addi	t3, t3, 1
	sd	t3, 0(t4)
	jr	t0
	.size ftrace_caller, .-ftrace_caller
";

/// Traced functions near the callers.
const SLOT_NEAR_C: &str = "int near_a(int x) { return 2 * x + 1; }
int near_b(int x) { return near_a(x) * 3; }
static int hidden(int x) { return x ^ 5; }
int near_c(int x) { return hidden(x) + near_b(x); }
";

/// Traced functions out of `jal` reach of the callers (after the filler).
const SLOT_FAR_C: &str = "extern int near_a(int);
int far_a(int x) { return near_a(x) - 7; }
int far_b(int x) { return x * x; }
int far_c(int x) { return far_a(x) + far_b(x); }
";

/// FILL words of `addi t6, t6, 0`: code between the near and the far functions.
const SLOT_FILLER_S: &str = "	.text
	.globl filler
	.type filler, @function
filler:
	.fill FILL, 4, 0x000f8f93
	ret
	.size filler, .-filler
";

/// KERNEL_LDS with `_stext` / `_etext` (the program makes its text writable, as the kernel
/// patches its own).
const SLOT_LDS: &str = r#"ENTRY(_start)
SECTIONS {
  . = 0x80200000;
  .text : { _stext = .; *(.text .text.*) _etext = .; }
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
    // A module of a 6.1-6.15 kernel: its 8-byte pads take a 4-byte slot only with islands of
    // its own, for padtrim's kernel patch series (no other kernel loads it).
    let m = module("module-61", &Shape::new("rv64gc", "4"), false);
    assert_eq!(kernel(&m)["ftrace_layout"], "auipc-jalr");
    let (output, out) = rewrite(&m, &["--slot", "4"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(islands(&output).len(), 1);
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

/// The patched-kernel-shaped program (or, with `patched` false, the unpatched one): the
/// callers and the runtime (no pads) first, four traced functions, 2.4 MB of other code, four
/// more traced functions.
fn slot_kernel(name: &str, patched: bool) -> PathBuf {
    let dir = scratch_dir(&format!("kernel-ftrace-{name}"));
    for (file, text) in [
        ("rt.c", SLOT_RT_C),
        ("caller.S", SLOT_CALLER_S),
        ("near.c", SLOT_NEAR_C),
        ("far.c", SLOT_FAR_C),
        ("filler.S", SLOT_FILLER_S),
        ("k.lds", SLOT_LDS),
    ] {
        std::fs::write(dir.join(file), text).expect("write source");
    }
    let common = [
        "-O2",
        "-march=rv64gc",
        "-mabi=lp64d",
        "-mcmodel=medany",
        "-ffreestanding",
    ];
    let define = if patched { "-DPATCHED" } else { "-DUNPATCHED" };
    let steps: [&[&str]; 3] = [
        &[
            "-c",
            define,
            "rt.c",
            "caller.S",
            "-DFILL=600000",
            "filler.S",
        ],
        &[
            "-c",
            "-fpatchable-function-entry=8",
            "-falign-functions=8",
            "near.c",
            "far.c",
        ],
        &[
            "-nostdlib",
            "-static",
            "-Wl,-q,--no-relax,--no-warn-rwx-segments",
            "-T",
            "k.lds",
            "caller.o",
            "rt.o",
            "near.o",
            "filler.o",
            "far.o",
            "-o",
            "vmlinux",
        ],
    ];
    for args in steps {
        let out = Compiler::Gcc
            .command()
            .current_dir(&dir)
            .args(common)
            .args(args)
            .output()
            .expect("run riscv64-linux-gnu-gcc (run scripts/setup)");
        assert!(out.status.success(), "build failed: {}", describe(&out));
    }
    dir.join("vmlinux")
}

/// Runs the program; its stdout (one line per traced function, then the count) and which
/// slot it patched (stderr), after asserting it succeeded.
fn run_slot_kernel(file: &Path) -> (String, String) {
    let out = run_qemu(file, &[], &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}: {}",
        file.display(),
        describe(&out)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_patched_kernel_traces_through_4_byte_slots_after_rewrite() {
    let input = slot_kernel("jal-slot", true);
    let k = kernel(&input);
    assert_eq!(k["ftrace_layout"], "jal-slot", "{k:#}");
    assert_eq!(k["min_pad_bytes"], 4, "{k:#}");
    let text = text_report(&input);
    assert!(
        text.contains("ftrace layout jal-slot: padtrim's kernel patch"),
        "{text}"
    );
    // The original: 16-byte pads, patched 8 bytes at a time (the island table is empty).
    let (before, how) = run_slot_kernel(&input);
    assert_eq!(how, "slot 8\n");
    // The sites, from the table's bounds (nm), as the kernel counts them.
    let syms = padtrim_testsuite::binutils::symbols(&input);
    let at = |n: &str| syms.iter().find(|s| s.name == n).map(|s| s.value).expect(n);
    let sites = (at("__stop_mcount_loc") - at("__start_mcount_loc")) / 8;
    assert!(sites >= 6, "{sites} sites");
    assert!(
        before.contains(&format!("traced {sites} functions\n")),
        "{before}"
    );
    assert!(!before.contains("NOT traced"), "{before}");
    assert_eq!(
        run(&["check"], &input, &["--max-pad", "4"]).status.code(),
        Some(1)
    );

    let (output, out) = rewrite(&input, &["--slot", "4", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let stats: Value = serde_json::from_slice(&out.stdout).expect("rewrite --json");
    // The far functions are 2.4 MB from ftrace_jal_caller: at least one island.
    let islands = stats["islands"].as_u64().expect("islands");
    assert!(islands >= 1, "{stats:#}");
    let (after, how) = run_slot_kernel(&output);
    assert_eq!(
        how, "slot 4\n",
        "the rewritten program did not find its islands"
    );
    assert_eq!(after, before);
    let out = run(&["check"], &output, &["--max-pad", "4"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = report_json(&output);
    assert_eq!(
        report["histogram"],
        serde_json::json!({ "4": sites }),
        "{report:#}"
    );

    // The island table is the rewriter's claim: verify checks it. Pointed at a function
    // instead of the island, the program would jump into that function; verify must say so.
    let new_syms = padtrim_testsuite::binutils::symbols(&output);
    let new_at = |n: &str| {
        new_syms
            .iter()
            .find(|s| s.name == n)
            .map(|s| s.value)
            .expect(n)
    };
    let data = padtrim_testsuite::binutils::sections(&output)
        .into_iter()
        .find(|s| s.name == ".data")
        .expect(".data");
    let at = (data.offset + new_at("riscv_ftrace_islands") - data.address) as usize;
    let mut bytes = std::fs::read(&output).expect("read output");
    assert_ne!(bytes[at..at + 8], [0; 8]);
    bytes[at..at + 8].copy_from_slice(&new_at("far_b").to_le_bytes());
    let tampered = output.with_extension("tampered");
    std::fs::write(&tampered, &bytes).expect("write tampered copy");
    let out = run(
        &["verify"],
        &input,
        &[tampered.to_str().expect("utf-8 path")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "island at new {:#x}: expected an island inside the nops",
            new_at("far_b")
        )),
        "{}",
        describe(&out)
    );
    let out = run(&["verify"], &input, &[output.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

#[test]
fn an_unpatched_kernel_keeps_refusing_4_byte_slots() {
    let input = slot_kernel("no-jal-slot", false);
    assert_eq!(kernel(&input)["ftrace_layout"], "auipc-jalr");
    assert_refused(
        &input,
        &["--slot", "4"],
        &["auipc-jalr layout", "--slot 8", "padtrim's patch series"],
    );
    // 8-byte slots still work, and run as before.
    let (before, how) = run_slot_kernel(&input);
    assert_eq!(how, "slot 8\n");
    let (output, out) = rewrite(&input, &["--slot", "8"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(run_slot_kernel(&output), (before, how));
}

/// The `ftrace_jal_island` symbols of an object, from readelf: (value, section index).
fn islands(file: &Path) -> Vec<(u64, String)> {
    readelf(&["-s", "-W"], file)
        .lines()
        .filter(|l| l.trim_end().ends_with(" ftrace_jal_island"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let value = u64::from_str_radix(f[1], 16).expect("symbol value");
            assert_eq!(&f[3..6], ["NOTYPE", "GLOBAL", "DEFAULT"], "{l}");
            (value, f[6].to_string())
        })
        .collect()
}

fn readelf(args: &[&str], file: &Path) -> String {
    let out = std::process::Command::new("riscv64-linux-gnu-readelf")
        .args(args)
        .arg(file)
        .output()
        .expect("run riscv64-linux-gnu-readelf (run scripts/setup)");
    assert!(out.status.success(), "readelf: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_module_at_4_byte_slots_carries_its_own_island() {
    // 16-byte pads (=8), as the kernels padtrim's patch series is built with.
    let m = module("module-jal-slot", &Shape::new("rv64gc", "8"), false);
    assert!(islands(&m).is_empty());
    let (output, out) = rewrite(&m, &["--slot", "4"]);
    assert!(out.status.success(), "{}", describe(&out));
    let sites = report_json(&m)["sites"].as_u64().expect("sites");
    assert!(sites >= 3);
    let report = report_json(&output);
    assert_eq!(
        report["histogram"],
        serde_json::json!({"4": sites}),
        "{report:#}"
    );
    let out = run(&["check", "--max-pad", "4"], &output, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out = run(&["verify"], &m, &[output.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    // One island, the last 8 bytes of .text: auipc t1 + jr t1.
    let found = islands(&output);
    assert_eq!(found.len(), 1, "{found:?}");
    let (at, shndx) = found[0].clone();
    let sections = readelf(&["-S", "-W"], &output);
    let text = sections
        .lines()
        .find(|l| l.contains(&format!("[{shndx:>2}] .text ")))
        .unwrap_or_else(|| panic!("the island is not in .text (section {shndx}): {sections}"));
    let f: Vec<&str> = text.split_whitespace().collect();
    let size = u64::from_str_radix(
        f[f.iter().position(|w| *w == "PROGBITS").expect("type") + 3],
        16,
    )
    .expect("size");
    assert_eq!(at + 8, size, "{text}");
    let dump = std::process::Command::new("riscv64-linux-gnu-objdump")
        .args(["-d", "-j", ".text"])
        .arg(&output)
        .output()
        .expect("run riscv64-linux-gnu-objdump");
    let dump = String::from_utf8_lossy(&dump.stdout);
    let insn = |addr: u64| {
        dump.lines()
            .find(|l| l.trim_start().starts_with(&format!("{addr:x}:")))
            .map(|l| {
                l.split_whitespace()
                    .skip(2)
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    assert_eq!(insn(at), "auipc t1,0x0", "{dump}");
    assert!(insn(at + 4).starts_with("jr t1"), "{dump}");

    // The loader resolves the auipc against ftrace_jal_caller (undefined: only the patched
    // kernel exports it) and the jalr against the island's own auipc.
    let relocs = readelf(&["-r", "-W"], &output);
    let rela_text: Vec<&str> = relocs
        .split("Relocation section ")
        .find(|s| s.starts_with("'.rela.text'"))
        .expect(".rela.text")
        .lines()
        .collect();
    let entry = |offset: u64| {
        rela_text
            .iter()
            .find(|l| l.starts_with(&format!("{offset:016x}")))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_else(|| panic!("no relocation at {offset:#x}: {rela_text:?}"))
    };
    assert_eq!(entry(at)[2], "R_RISCV_PCREL_HI20");
    assert_eq!(entry(at)[4], "ftrace_jal_caller");
    assert_eq!(entry(at + 4)[2], "R_RISCV_PCREL_LO12_I");
    assert_eq!(entry(at + 4)[4], "ftrace_jal_island");
    assert_eq!(u64::from_str_radix(entry(at + 4)[3], 16), Ok(at));
    let syms = readelf(&["-s", "-W"], &output);
    assert!(
        syms.lines()
            .any(|l| l.ends_with(" UND ftrace_jal_caller") && l.contains("GLOBAL")),
        "{syms}"
    );

    // Rewriting the output again adds no second island.
    let copy = output.with_extension("slot4.ko");
    std::fs::copy(&output, &copy).expect("copy the output");
    let (again, out) = rewrite(&copy, &["--slot", "4"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(islands(&again).len(), 1);
    // --slot 8 adds none.
    let (eight, out) = rewrite(&m, &["--slot", "8"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(islands(&eight).is_empty());
}
