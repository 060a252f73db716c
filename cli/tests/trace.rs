//! End-to-end tests of the padtrim runtime and `padtrim record` / `padtrim replay`: C (and
//! one C++) programs from runtime/tests/programs are built for riscv64 with the runtime
//! linked in, run under qemu-riscv64, and their traces checked. Most are built with
//! `-fpatchable-function-entry=1` without RVC (each pad is one 4-byte `nop`, so the runtime
//! uses its fallback table, `__patchable_function_entries`); the descriptor tests build with
//! 16-byte `c.nop` pads and rewrite them with `padtrim rewrite`, so only the table the
//! rewriter announces through `padtrim_descriptor` has usable slots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn runtime_lib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let out = Command::new(repo().join("scripts/runtime-lib"))
            .output()
            .expect("run scripts/runtime-lib");
        assert!(
            out.status.success(),
            "runtime-lib failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        PathBuf::from(
            stdout
                .lines()
                .last()
                .expect("runtime-lib printed a path")
                .trim(),
        )
    })
}

/// A fresh directory under cargo's per-target scratch space (not /tmp, where the
/// directories of every run would pile up).
fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "padtrim-trace-test-{}-{}",
        std::process::id(),
        name
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Build runtime/tests/programs/`src` into `dir` with the runtime linked in.
fn build(dir: &Path, src: &str) -> PathBuf {
    let source = repo().join("runtime/tests/programs").join(src);
    let exe = dir.join(src.split('.').next().unwrap());
    let mut cmd = if src.ends_with(".cc") {
        let mut c = Command::new("clang++");
        c.args(["--target=riscv64-linux-gnu", "-march=rv64g", "-O1"]);
        c
    } else {
        let mut c = Command::new("riscv64-linux-gnu-gcc");
        c.args(["-march=rv64g", "-mabi=lp64d", "-O0"]);
        c
    };
    cmd.arg("-fpatchable-function-entry=1")
        .arg(&source)
        .arg(runtime_lib())
        .args(["-Wl,-q", "-lpthread", "-o"])
        .arg(&exe);
    let out = cmd.output().expect("run the cross compiler");
    assert!(
        out.status.success(),
        "building {src}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// How a program is linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Pie,
    NoPie,
    Static,
}

impl Link {
    fn flags(self) -> &'static [&'static str] {
        match self {
            Link::Pie => &["-fPIE", "-pie"],
            Link::NoPie => &["-fno-PIE", "-no-pie"],
            Link::Static => &["-static"],
        }
    }
}

/// Build runtime/tests/programs/`src` the way real programs come: rv64gc, `-O1`,
/// `-fpatchable-function-entry=8` (16 bytes of `c.nop`, unusable as slots), runtime linked in.
fn build_padded(dir: &Path, src: &str, link: Link) -> PathBuf {
    let source = repo().join("runtime/tests/programs").join(src);
    let exe = dir.join(format!("{}-{:?}", src.split('.').next().unwrap(), link));
    let out = Command::new("riscv64-linux-gnu-gcc")
        .args([
            "-march=rv64gc",
            "-mabi=lp64d",
            "-O1",
            "-fpatchable-function-entry=8",
        ])
        .args(link.flags())
        .arg("-I")
        .arg(repo().join("runtime/include"))
        .arg(&source)
        .arg(runtime_lib())
        .args(["-Wl,-q", "-lpthread", "-o"])
        .arg(&exe)
        .output()
        .expect("run the cross compiler");
    assert!(
        out.status.success(),
        "building {src}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// `padtrim rewrite exe --slot 4` into `exe.pt`. The program carries the runtime, so the
/// rewriter must add the `__mcount_loc` table and fill the descriptor (`"table": true`).
fn rewrite(exe: &Path) -> PathBuf {
    let pt = exe.with_extension("pt");
    rewrite_to(exe, &pt);
    pt
}

/// `padtrim rewrite exe --slot 4 -o out`, requiring the table (and so the descriptor).
fn rewrite_to(exe: &Path, out_path: &Path) {
    let out = padtrim(&[
        "rewrite",
        exe.to_str().unwrap(),
        "-o",
        out_path.to_str().unwrap(),
        "--slot",
        "4",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "rewrite {}: {}",
        exe.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("rewrite --json");
    assert_eq!(
        stats["table"],
        true,
        "padtrim rewrite {} added no __mcount_loc table, so it filled no descriptor \
         (the runtime would fall back to __patchable_function_entries): {stats}",
        exe.display()
    );
}

/// Entries of `__patchable_function_entries`, read with binutils (independent of padtrim).
fn pad_count(exe: &Path) -> u64 {
    let out = Command::new("riscv64-linux-gnu-readelf")
        .arg("-SW")
        .arg(exe)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains(" __patchable_function_entries "))
        .expect("a __patchable_function_entries section");
    let cols: Vec<&str> = line.split(']').nth(1).unwrap().split_whitespace().collect();
    u64::from_str_radix(cols[4], 16).unwrap() / 8
}

/// The `PADTRIM_DEBUG` line (`padtrim: table=... entries=N ...`) of a run, as key -> value.
fn debug_line(stderr: &str) -> BTreeMap<String, String> {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("padtrim: table="))
        .unwrap_or_else(|| panic!("no PADTRIM_DEBUG line in stderr: {stderr}"));
    line["padtrim: ".len()..]
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// Run the program under qemu with these environment settings (and PADTRIM_DEBUG=1);
/// returns (stdout, stderr, exit code).
fn run_env(exe: &Path, env: &[(&str, &str)]) -> (String, String, i32) {
    let mut cmd = Command::new("qemu-riscv64");
    cmd.args(["-L", "/usr/riscv64-linux-gnu"])
        .arg(exe)
        .env("PADTRIM_DEBUG", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
        out.status.code().unwrap_or(-1),
    )
}

/// Names of the entry events of a trace, in order (entry-mode Chrome instant events).
fn entry_sequence(trace: &Path, exe: &Path) -> Vec<String> {
    let text = replay(trace, exe, &["--format", "chrome"]);
    let doc: serde_json::Value = serde_json::from_str(&text).expect("chrome output is JSON");
    doc["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "i")
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

fn padtrim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_padtrim"))
        .args(args)
        .output()
        .expect("run padtrim")
}

/// `padtrim record` the program; returns (stdout, exit code, trace path).
fn record(exe: &Path, mode: &str, filter: Option<&str>) -> (String, i32, PathBuf) {
    let (stdout, _, code, trace) = record_debug(exe, mode, filter);
    (stdout, code, trace)
}

/// `padtrim record` with PADTRIM_DEBUG=1; returns (stdout, stderr, exit code, trace path).
fn record_debug(exe: &Path, mode: &str, filter: Option<&str>) -> (String, String, i32, PathBuf) {
    let trace = exe.with_extension(format!("{mode}.trace"));
    let mut args = vec![
        "record".to_string(),
        "-o".into(),
        trace.display().to_string(),
    ];
    if mode == "graph" {
        args.push("--graph".into());
    }
    if let Some(f) = filter {
        args.push("--filter".into());
        args.push(f.into());
    }
    args.push("--".into());
    args.push(exe.display().to_string());
    let out = Command::new(env!("CARGO_BIN_EXE_padtrim"))
        .args(&args)
        .env("PADTRIM_DEBUG", "1")
        .output()
        .unwrap();
    assert!(
        trace.exists(),
        "no trace; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
        out.status.code().unwrap_or(-1),
        trace,
    )
}

/// Run the program directly under qemu with PADTRIM_TRACE=`mode` (no trace wanted back).
fn run_plain(exe: &Path, mode: &str) -> (String, i32) {
    let out = Command::new("qemu-riscv64")
        .args(["-L", "/usr/riscv64-linux-gnu"])
        .arg("-E")
        .arg(format!("PADTRIM_TRACE={mode}"))
        .arg("-E")
        .arg(format!(
            "PADTRIM_OUT={}",
            exe.with_extension("plain.trace").display()
        ))
        .arg(exe)
        .output()
        .unwrap();
    (
        String::from_utf8(out.stdout).unwrap(),
        out.status.code().unwrap_or(-1),
    )
}

fn replay(trace: &Path, exe: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "replay",
        trace.to_str().unwrap(),
        "--elf",
        exe.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = padtrim(&args);
    assert!(
        out.status.success(),
        "replay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Folded output as a map stack -> weight.
fn folded(trace: &Path, exe: &Path) -> BTreeMap<String, u64> {
    replay(trace, exe, &["--format", "folded"])
        .lines()
        .map(|l| {
            let (s, w) = l.rsplit_once(' ').unwrap();
            (s.to_string(), w.parse().unwrap())
        })
        .collect()
}

/// A call from Chrome "X" events: (tid, name, start us, end us, end kind).
#[derive(Debug, Clone)]
struct Call {
    tid: u64,
    name: String,
    ts: f64,
    end: f64,
    how: String,
}

fn chrome_calls(trace: &Path, exe: &Path) -> Vec<Call> {
    let text = replay(trace, exe, &["--format", "chrome"]);
    let doc: serde_json::Value = serde_json::from_str(&text).expect("chrome output is JSON");
    doc["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X")
        .map(|e| {
            let ts = e["ts"].as_f64().unwrap();
            let dur = e["dur"].as_f64().unwrap();
            assert!(dur >= 0.0, "negative duration: {e}");
            Call {
                tid: e["tid"].as_u64().unwrap(),
                name: e["name"].as_str().unwrap().to_string(),
                ts,
                end: ts + dur,
                how: e["args"]["end"].as_str().unwrap_or("returned").to_string(),
            }
        })
        .collect()
}

/// Check proper nesting per thread and return, per thread, the call paths with counts
/// (e.g. "main;mid;leaf" -> 2) and how each path ended.
fn call_tree(calls: &[Call]) -> BTreeMap<u64, BTreeMap<String, (u64, String)>> {
    let mut by_tid: BTreeMap<u64, Vec<&Call>> = BTreeMap::new();
    for c in calls {
        by_tid.entry(c.tid).or_default().push(c);
    }
    let mut trees = BTreeMap::new();
    for (tid, mut cs) in by_tid {
        // Events come in entry order per thread; a stable sort by start keeps parents first.
        cs.sort_by(|a, b| a.ts.total_cmp(&b.ts));
        let mut stack: Vec<&Call> = Vec::new();
        let mut tree: BTreeMap<String, (u64, String)> = BTreeMap::new();
        for c in cs {
            while let Some(top) = stack.last() {
                // ts + dur goes through floating point: compare with a tolerance. A call that
                // starts where a non-empty one ends is its sibling, not its child.
                let eps = 1e-6;
                if c.ts > top.end + eps || (c.ts >= top.end - eps && top.end - top.ts > eps) {
                    stack.pop();
                } else {
                    break;
                }
            }
            if let Some(top) = stack.last() {
                assert!(c.end <= top.end + 1e-6, "{c:?} not nested in {top:?}");
            }
            stack.push(c);
            let path = stack
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(";");
            let e = tree.entry(path).or_insert((0, c.how.clone()));
            e.0 += 1;
        }
        trees.insert(tid, tree);
    }
    trees
}

fn expect(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(s, n)| (s.to_string(), *n)).collect()
}

#[test]
fn program_output_is_identical_with_tracing_off_entry_and_graph() {
    let dir = scratch("identical");
    for src in ["calls.c", "jump.c", "threads.c", "exc.cc"] {
        let exe = build(&dir, src);
        let base = run_plain(&exe, "off");
        assert!(!base.0.is_empty());
        assert!(
            !exe.with_extension("plain.trace").exists(),
            "tracing off must not write a trace"
        );
        for mode in ["entry", "graph"] {
            let (stdout, code, _) = record(&exe, mode, None);
            assert_eq!((stdout, code), base, "{src} with {mode}");
        }
    }
}

#[test]
fn entry_mode_records_exactly_the_calls() {
    let dir = scratch("entry");
    let exe = build(&dir, "calls.c");
    let (_, stderr, code, trace) = record_debug(&exe, "entry", None);
    assert_eq!(code, 40 % 7);
    // Not rewritten: the runtime falls back to the linker's table, whose 4-byte nops it patches.
    let dbg = debug_line(&stderr);
    let pads = pad_count(&exe).to_string();
    assert_eq!(dbg["table"], "__patchable_function_entries");
    assert_eq!((&dbg["entries"], &dbg["patched"]), (&pads, &pads));
    assert_eq!(dbg["skipped"], "0");
    assert_eq!(
        folded(&trace, &exe),
        expect(&[
            ("main", 1),
            ("main;mid", 1),
            ("main;mid;leaf", 2),
            ("main;fact", 1),
            ("main;fact;fact", 1),
            ("main;fact;fact;fact", 1),
            ("main;fact;fact;fact;fact", 1),
            ("main;via_ptr", 1),
            ("main;via_ptr;leaf", 1),
            ("main;mix", 1),
        ])
    );
}

#[test]
fn graph_mode_pairs_entries_and_exits() {
    let dir = scratch("graph");
    let exe = build(&dir, "calls.c");
    let (_, _, trace) = record(&exe, "graph", None);
    let trees = call_tree(&chrome_calls(&trace, &exe));
    assert_eq!(trees.len(), 1);
    let tree = trees.values().next().unwrap();
    let counts: BTreeMap<String, u64> = tree.iter().map(|(k, v)| (k.clone(), v.0)).collect();
    assert_eq!(
        counts,
        expect(&[
            ("main", 1),
            ("main;mid", 1),
            ("main;mid;leaf", 2),
            ("main;fact", 1),
            ("main;fact;fact", 1),
            ("main;fact;fact;fact", 1),
            ("main;fact;fact;fact;fact", 1),
            ("main;via_ptr", 1),
            ("main;via_ptr;leaf", 1),
            ("main;mix", 1),
        ])
    );
    assert!(tree.values().all(|(_, how)| how == "returned"), "{tree:?}");
    let text = replay(&trace, &exe, &[]);
    assert!(
        text.contains("|  main() {")
            && text.contains("|      leaf();")
            && text.contains("} /* main */"),
        "{text}"
    );
    let summary = replay(&trace, &exe, &["--summary"]);
    let fact_line = summary
        .lines()
        .find(|l| l.ends_with("  fact"))
        .expect("fact in summary");
    assert_eq!(fact_line.split_whitespace().next(), Some("4"), "{summary}");
}

#[test]
fn filter_selects_exactly_the_named_functions() {
    let dir = scratch("filter");
    let exe = build(&dir, "calls.c");
    // Entry mode: count entries per function (depth there is a stack-pointer heuristic, and
    // with untraced callers in between it cannot be exact).
    let (_, _, trace) = record(&exe, "entry", Some("fa?t,le*"));
    let mut per_function: BTreeMap<String, u64> = BTreeMap::new();
    for (stack, n) in folded(&trace, &exe) {
        *per_function
            .entry(stack.rsplit(';').next().unwrap().to_string())
            .or_default() += n;
    }
    assert_eq!(per_function, expect(&[("leaf", 3), ("fact", 4)]));
    let (_, _, trace) = record(&exe, "graph", Some("fa?t,le*"));
    let trees = call_tree(&chrome_calls(&trace, &exe));
    let counts: BTreeMap<String, u64> = trees
        .values()
        .next()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.0))
        .collect();
    assert_eq!(
        counts,
        expect(&[
            ("leaf", 3),
            ("fact", 1),
            ("fact;fact", 1),
            ("fact;fact;fact", 1),
            ("fact;fact;fact;fact", 1)
        ])
    );
    let (_, _, trace) = record(&exe, "graph", Some("!main,!fact"));
    let trees = call_tree(&chrome_calls(&trace, &exe));
    let counts: BTreeMap<String, u64> = trees
        .values()
        .next()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.0))
        .collect();
    assert_eq!(
        counts,
        expect(&[
            ("mid", 1),
            ("mid;leaf", 2),
            ("via_ptr", 1),
            ("via_ptr;leaf", 1),
            ("mix", 1)
        ])
    );
}

#[test]
fn threads_get_their_own_nested_call_trees() {
    let dir = scratch("threads");
    let exe = build(&dir, "threads.c");
    let (_, code, trace) = record(&exe, "graph", None);
    assert_eq!(code, 0);
    let trees = call_tree(&chrome_calls(&trace, &exe));
    assert_eq!(trees.len(), 4, "main + 3 threads");
    let mut workers = 0;
    for tree in trees.values() {
        let counts: BTreeMap<String, u64> = tree.iter().map(|(k, v)| (k.clone(), v.0)).collect();
        if counts.contains_key("main") {
            assert_eq!(counts, expect(&[("main", 1)]));
        } else {
            workers += 1;
            assert_eq!(
                counts,
                expect(&[
                    ("thread_main", 1),
                    ("thread_main;work", 1500),
                    ("thread_main;work;leaf", 1500)
                ])
            );
        }
    }
    assert_eq!(workers, 3);
}

#[test]
fn longjmp_closes_the_skipped_frames_as_unwound() {
    let dir = scratch("jump");
    let exe = build(&dir, "jump.c");
    let (stdout, _, trace) = record(&exe, "graph", None);
    assert_eq!(stdout, "guarded=1 after=42\n");
    let trees = call_tree(&chrome_calls(&trace, &exe));
    let tree = trees.values().next().unwrap();
    let got: BTreeMap<String, (u64, String)> = tree.clone();
    let want: BTreeMap<String, (u64, String)> = [
        ("main", "returned"),
        ("main;guarded", "returned"),
        ("main;guarded;deep", "unwound"),
        ("main;guarded;deep;deep", "unwound"),
        ("main;guarded;deep;deep;deep", "unwound"),
        ("main;guarded;deep;deep;deep;deep", "unwound"),
        ("main;after", "returned"),
    ]
    .iter()
    .map(|(p, h)| (p.to_string(), (1, h.to_string())))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn cxx_exceptions_unwind_through_hooked_frames() {
    let dir = scratch("cxx");
    let exe = build(&dir, "exc.cc");
    let (stdout, code, trace) = record(&exe, "graph", None);
    assert_eq!(
        (stdout.as_str(), code),
        ("caught too big\na=2 b=-1 after=3\n", 0)
    );
    let trees = call_tree(&chrome_calls(&trace, &exe));
    let tree = trees.values().next().unwrap();
    let counts: BTreeMap<String, u64> = tree.iter().map(|(k, v)| (k.clone(), v.0)).collect();
    assert_eq!(
        counts,
        expect(&[
            ("main", 1),
            ("main;_Z7catcheri", 2),
            ("main;_Z7catcheri;_Z6middlei", 2),
            ("main;_Z7catcheri;_Z6middlei;_Z7throweri", 2),
            ("main;_Z5afteri", 1),
        ])
    );
}

#[test]
fn replay_rejects_files_that_are_not_traces() {
    let dir = scratch("bad");
    let bogus = dir.join("bogus.trace");
    std::fs::write(&bogus, b"not a trace at all, definitely not").unwrap();
    let out = padtrim(&["replay", bogus.to_str().unwrap(), "--elf", "/bin/sh"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad magic"));
}

/// The call tree of calls.c, which every test of it expects.
const CALLS_TREE: &[(&str, u64)] = &[
    ("main", 1),
    ("main;mid", 1),
    ("main;mid;leaf", 2),
    ("main;fact", 1),
    ("main;fact;fact", 1),
    ("main;fact;fact;fact", 1),
    ("main;fact;fact;fact;fact", 1),
    ("main;via_ptr", 1),
    ("main;via_ptr;leaf", 1),
    ("main;mix", 1),
];

#[test]
fn rewritten_programs_find_their_slots_through_the_descriptor() {
    let dir = scratch("descriptor");
    for link in [Link::Pie, Link::NoPie, Link::Static] {
        let padded = build_padded(&dir, "calls.c", link);
        let pads = pad_count(&padded);
        let exe = rewrite(&padded);
        let (base, _, base_code) = run_env(&padded, &[]);

        // Tracing off: the table is found, nothing is patched.
        let (stdout, stderr, code) = run_env(&exe, &[("PADTRIM_TRACE", "off")]);
        assert_eq!((&stdout, code), (&base, base_code), "{link:?} off");
        let dbg = debug_line(&stderr);
        assert_eq!(dbg["table"], "descriptor", "{link:?}: {stderr}");
        assert_eq!(dbg["entries"], pads.to_string(), "{link:?}");
        assert_eq!((&dbg["mode"][..], &dbg["patched"][..]), ("off", "0"));

        // Entry mode: every slot of the rewriter's table is patched, none skipped, and the
        // trace has exactly the program's calls.
        let (stdout, stderr, code, trace) = record_debug(&exe, "entry", None);
        assert_eq!((&stdout, code), (&base, base_code), "{link:?} entry");
        let dbg = debug_line(&stderr);
        assert_eq!(dbg["table"], "descriptor", "{link:?}");
        assert_eq!(dbg["entries"], pads.to_string(), "{link:?}");
        assert_eq!(dbg["patched"], pads.to_string(), "{link:?}: {stderr}");
        assert_eq!(dbg["skipped"], "0", "{link:?}");
        assert_eq!(dbg["islands"], "0", "{link:?}");
        // A PIE is loaded away from its link-time addresses; the others are not.
        assert_eq!(
            dbg["bias"] != "0x0",
            link == Link::Pie,
            "{link:?}: {stderr}"
        );
        assert_eq!(folded(&trace, &exe), expect(CALLS_TREE), "{link:?}");
        let text = replay(&trace, &exe, &["--summary"]);
        assert!(
            text.contains(&format!("{pads} slots patched, 0 skipped"))
                && text.contains("(table: descriptor)"),
            "{text}"
        );

        // Graph mode through the same slots.
        let (stdout, _, code, trace) = record_debug(&exe, "graph", None);
        assert_eq!((&stdout, code), (&base, base_code), "{link:?} graph");
        let trees = call_tree(&chrome_calls(&trace, &exe));
        let counts: BTreeMap<String, u64> = trees
            .values()
            .next()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.0))
            .collect();
        assert_eq!(counts, expect(CALLS_TREE), "{link:?}");
    }
}

#[test]
fn unrewritten_compressed_pads_are_found_but_never_patched() {
    // 16 bytes of `c.nop` are no 4-byte slot: the fallback table lists them, the runtime
    // refuses every one, and the program runs unchanged.
    let dir = scratch("unrewritten");
    let exe = build_padded(&dir, "calls.c", Link::Pie);
    let pads = pad_count(&exe).to_string();
    let (base, _, base_code) = run_env(&exe, &[]);
    let (stdout, stderr, code, _) = record_debug(&exe, "entry", None);
    assert_eq!((stdout, code), (base, base_code));
    let dbg = debug_line(&stderr);
    assert_eq!(dbg["table"], "__patchable_function_entries");
    assert_eq!((&dbg["entries"], &dbg["skipped"]), (&pads, &pads));
    assert_eq!(dbg["patched"], "0");
}

#[test]
fn runtime_api_controls_recording_and_calls_handlers() {
    let dir = scratch("api");
    let exe = rewrite(&build_padded(&dir, "api.c", Link::NoPie));
    let (off, stderr, code) = run_env(&exe, &[("PADTRIM_TRACE", "off")]);
    assert_eq!(code, 0, "{off}{stderr}");
    let fields: BTreeMap<&str, &str> = off
        .split_whitespace()
        .map(|kv| kv.split_once('=').unwrap())
        .collect();
    // The program checked the return codes (bad=0) and the handler's function argument; with
    // tracing off the handler still runs (registering patches b's slot).
    assert_eq!(
        (fields["bad"], fields["handler_calls"], fields["func_is_b"]),
        ("0", "1", "1"),
        "{off}"
    );
    // The handler's caller is the return address of the call in call_b_here (non-PIE, so
    // the printed address is the link-time one): the instruction before it calls b.
    let caller = u64::from_str_radix(fields["caller"].trim_start_matches("0x"), 16).unwrap();
    let dis = Command::new("riscv64-linux-gnu-objdump")
        .arg("-d")
        .arg(format!("--start-address={:#x}", caller - 4))
        .arg(format!("--stop-address={caller:#x}"))
        .arg(&exe)
        .output()
        .unwrap();
    let dis = String::from_utf8(dis.stdout).unwrap();
    assert!(
        dis.contains("<call_b_here") && dis.contains("<b>"),
        "caller {caller:#x} does not follow a call to b in call_b_here:\n{dis}"
    );

    // Entry mode: exactly the calls made while enabled and while each slot was patched;
    // the handler is itself traced and runs right after b's entry is recorded.
    let (stdout, _, code, trace) = record_debug(&exe, "entry", None);
    assert_eq!((&stdout, code), (&off, 0));
    assert_eq!(
        entry_sequence(&trace, &exe),
        [
            "main",
            "a",
            "b",
            "c",
            "a",
            "c",
            "call_b_here",
            "b",
            "on_b",
            "b"
        ]
    );

    // Graph mode: same calls, properly nested, the handler's call inside b's.
    let (stdout, _, code, trace) = record_debug(&exe, "graph", None);
    assert_eq!((&stdout, code), (&off, 0));
    let trees = call_tree(&chrome_calls(&trace, &exe));
    let counts: BTreeMap<String, u64> = trees
        .values()
        .next()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.0))
        .collect();
    assert_eq!(
        counts,
        expect(&[
            ("main", 1),
            ("main;a", 2),
            ("main;b", 2),
            ("main;c", 2),
            ("main;call_b_here", 1),
            ("main;call_b_here;b", 1),
            ("main;call_b_here;b;on_b", 1),
        ])
    );
}

#[test]
fn threads_patching_slots_in_one_page_at_once_do_not_crash() {
    // Each padtrim_enable_function makes the slot's page writable, stores, and makes it
    // read-only again: two threads doing that to one page must take turns, or one of them
    // stores into a page the other has just made read-only (SIGSEGV).
    let dir = scratch("patch-race");
    let exe = rewrite(&build_padded(&dir, "patch_race.c", Link::NoPie));
    for mode in ["off", "entry"] {
        let (stdout, code) = run_plain(&exe, mode);
        assert_eq!(
            (stdout.as_str(), code),
            ("bad=0\n", 0),
            "PADTRIM_TRACE={mode}"
        );
    }
}

#[test]
fn shared_library_carrying_the_runtime_finds_its_own_descriptor() {
    // `-Bsymbolic`: without it the library's calls to its own exported functions go through
    // its PLT, which `padtrim rewrite` does not follow yet ("branch ... goes to ...@plt").
    let dir = scratch("shlib");
    let lib = dir.join("libshlib.so");
    let cc = |args: &[&std::ffi::OsStr]| {
        let out = Command::new("riscv64-linux-gnu-gcc")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let programs = repo().join("runtime/tests/programs");
    cc(&[
        "-march=rv64gc".as_ref(),
        "-O1".as_ref(),
        "-fpatchable-function-entry=8".as_ref(),
        "-shared".as_ref(),
        "-fPIC".as_ref(),
        "-Wl,-Bsymbolic,-q".as_ref(),
        programs.join("shlib.c").as_os_str(),
        runtime_lib().as_os_str(),
        "-o".as_ref(),
        lib.as_os_str(),
    ]);
    let pt_dir = dir.join("rewritten");
    std::fs::create_dir_all(&pt_dir).unwrap();
    let pt_lib = pt_dir.join("libshlib.so");
    rewrite_to(&lib, &pt_lib);
    let exe = dir.join("shmain");
    cc(&[
        "-O1".as_ref(),
        programs.join("shmain.c").as_os_str(),
        "-L".as_ref(),
        dir.as_os_str(),
        "-lshlib".as_ref(),
        "-o".as_ref(),
        exe.as_os_str(),
    ]);
    let trace = dir.join("shlib.trace");
    let run = |libdir: &Path| {
        let out = Command::new("qemu-riscv64")
            .args(["-L", "/usr/riscv64-linux-gnu", "-E"])
            .arg(format!("LD_LIBRARY_PATH={}", libdir.display()))
            .arg(&exe)
            .env("PADTRIM_DEBUG", "1")
            .env("PADTRIM_TRACE", "graph")
            .env("PADTRIM_OUT", &trace)
            .output()
            .unwrap();
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    // Not rewritten: the library's own fallback table, c.nop pads refused.
    let (stdout, stderr) = run(&dir);
    assert_eq!(stdout, "lib_entry(2)=15\n");
    let dbg = debug_line(&stderr);
    assert_eq!(
        (&dbg["table"][..], &dbg["patched"][..]),
        ("__patchable_function_entries", "0")
    );
    // Rewritten: the library's descriptor, its load bias, both slots.
    let (stdout, stderr) = run(&pt_dir);
    assert_eq!(stdout, "lib_entry(2)=15\n");
    let dbg = debug_line(&stderr);
    assert_eq!(dbg["table"], "descriptor", "{stderr}");
    assert_eq!((&dbg["entries"][..], &dbg["patched"][..]), ("2", "2"));
    assert_ne!(dbg["bias"], "0x0");
    let trees = call_tree(&chrome_calls(&trace, &pt_lib));
    let counts: BTreeMap<String, u64> = trees
        .values()
        .next()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.0))
        .collect();
    assert_eq!(
        counts,
        expect(&[("lib_entry", 1), ("lib_entry;lib_leaf", 2)])
    );
}

/// Build the program of big.c.sh (48 functions of 64 KiB: ~3 MiB of text, the runtime linked
/// after it), rewrite it; returns (padded, rewritten).
fn build_big(dir: &Path) -> (PathBuf, PathBuf) {
    let gen = Command::new("sh")
        .arg(repo().join("runtime/tests/programs/big.c.sh"))
        .output()
        .unwrap();
    assert!(gen.status.success());
    let src = dir.join("big.c");
    std::fs::write(&src, gen.stdout).unwrap();
    let exe = dir.join("big");
    let out = Command::new("riscv64-linux-gnu-gcc")
        .args(["-march=rv64gc", "-O1", "-fpatchable-function-entry=8"])
        .arg(&src)
        .arg(runtime_lib())
        .args(["-Wl,-q", "-o"])
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pt = rewrite(&exe);
    (exe, pt)
}

/// Function name -> address from binutils' nm.
fn symbols(exe: &Path) -> BTreeMap<String, u64> {
    let out = Command::new("riscv64-linux-gnu-nm")
        .arg(exe)
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let addr = u64::from_str_radix(it.next()?, 16).ok()?;
            let _kind = it.next()?;
            Some((it.next()?.to_string(), addr))
        })
        .collect()
}

/// The ~3 MiB program: its first functions are far beyond `jal`'s reach of the trampoline,
/// so every slot must be patched through an island the rewriter emitted (8 bytes,
/// `auipc t1; jalr x0, t1`, listed in the descriptor), and the trace must have every call.
#[test]
fn programs_over_1_mib_are_fully_traced_through_islands() {
    let dir = scratch("islands");
    let (padded, exe) = build_big(&dir);
    let (base, _, base_code) = run_env(&padded, &[]);
    let syms = symbols(&exe);
    let tramp = syms["padtrim_trampoline"];
    let far = (0..48)
        .filter(|i| syms[&format!("big{i}")].abs_diff(tramp) > 1 << 20)
        .count();
    assert!(
        far > 16,
        "only {far} functions out of jal reach: the program is too small"
    );
    let (stdout, stderr, code, trace) = record_debug(&exe, "entry", None);
    assert_eq!((&stdout, code), (&base, base_code));
    let dbg = debug_line(&stderr);
    assert_eq!(dbg["table"], "descriptor");
    assert_ne!(
        dbg["islands"], "0",
        "the rewriter emitted no islands: {stderr}"
    );
    assert_eq!(
        (
            &dbg["entries"][..],
            &dbg["patched"][..],
            &dbg["skipped"][..]
        ),
        ("49", "49", "0"),
        "{stderr}"
    );
    // main calls big0..big47 in order.
    let mut called: Vec<String> = vec!["main".into()];
    called.extend((0..48).map(|i| format!("big{i}")));
    assert_eq!(entry_sequence(&trace, &exe), called);
    let (stdout, _, code, trace) = record_debug(&exe, "graph", None);
    assert_eq!((&stdout, code), (&base, base_code));
    let trees = call_tree(&chrome_calls(&trace, &exe));
    let tree = trees.values().next().unwrap();
    assert_eq!(tree.len(), 49, "{tree:?}");
    assert!(tree.iter().all(|(k, (n, how))| *n == 1
        && how == "returned"
        && (k == "main" || k.starts_with("main;big"))));
}

#[test]
fn long_entry_traces_are_complete_and_replay_quickly() {
    // 200,000 entries: every one recorded (buffers flushed as they fill), and replay of an
    // entry-only trace is linear (it once paired entries without exits: quadratic memory).
    let dir = scratch("long");
    let exe = build(&dir, "loop.c");
    let trace = dir.join("loop.trace");
    let out = padtrim(&[
        "record",
        "-o",
        trace.to_str().unwrap(),
        "--",
        exe.to_str().unwrap(),
        "200000",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done 200000\n");
    let started = std::time::Instant::now();
    let summary = replay(&trace, &exe, &["--summary"]);
    let calls: BTreeMap<&str, u64> = summary
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let n = it.next()?.parse().ok()?;
            Some((it.last()?, n))
        })
        .collect();
    assert_eq!(
        calls,
        [("empty", 200000), ("main", 1)].into_iter().collect()
    );
    assert!(!summary.contains("lost"), "{summary}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "replay took {:?}",
        started.elapsed()
    );
}

// ---- `padtrim record` / `padtrim replay` for a newcomer: refusals, exit statuses, words ----

/// Build C `source` (written to `dir/name.c`) for riscv64 into `dir/name`, with the runtime
/// linked in or not.
fn build_source(dir: &Path, name: &str, source: &str, with_runtime: bool) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let exe = dir.join(name);
    let mut cmd = Command::new("riscv64-linux-gnu-gcc");
    cmd.args(["-march=rv64g", "-mabi=lp64d", "-O0"]);
    if with_runtime {
        cmd.arg("-fpatchable-function-entry=1");
    }
    cmd.arg(&src);
    if with_runtime {
        cmd.arg(runtime_lib()).args(["-Wl,-q", "-lpthread"]);
    }
    let out = cmd
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("run the cross compiler");
    assert!(
        out.status.success(),
        "building {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// A program that prints a line and exits with `argv[1]`, or raises signal `argv[2]`.
const EXIT_WITH: &str = r#"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
__attribute__((noinline)) int status_of(const char *s) { return atoi(s); }
int main(int argc, char **argv) {
    puts("ran");
    fflush(stdout);
    if (argc > 2) raise(atoi(argv[2]));
    return argc > 1 ? status_of(argv[1]) : 0;
}
"#;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn record_refuses_what_is_not_a_riscv_program_before_running_it() {
    let dir = scratch("refuse");
    // An "emulator" that only leaves a mark: nothing may reach it.
    let marker = dir.join("ran");
    let fake_qemu = dir.join("fake-qemu");
    std::fs::write(
        &fake_qemu,
        format!("#!/bin/sh\ntouch '{}'\n", marker.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake_qemu, std::fs::Permissions::from_mode(0o755)).unwrap();
    let notes = dir.join("notes.txt");
    std::fs::write(&notes, "just text\n").unwrap();
    let script = dir.join("wrapper.sh");
    std::fs::write(&script, "#!/bin/sh\nexec ./prog \"$@\"\n").unwrap();
    let object = dir.join("obj.o");
    let src = dir.join("obj.c");
    std::fs::write(&src, "int f(void) { return 1; }\n").unwrap();
    let cc = Command::new("riscv64-linux-gnu-gcc")
        .arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(&object)
        .output()
        .unwrap();
    assert!(cc.status.success());
    let missing = dir.join("missing");
    let host_program = PathBuf::from(env!("CARGO_BIN_EXE_padtrim"));
    let trace = dir.join("t.trace");
    for (program, reason) in [
        (&missing, "no such file"),
        (&dir, "is a directory"),
        (&notes, "not an ELF file"),
        (&script, "not an ELF file (a script)"),
        (&host_program, "not a RISC-V ELF (machine "),
        (&object, "a relocatable object file, not a program"),
    ] {
        let out = padtrim(&[
            "record",
            "--qemu",
            fake_qemu.to_str().unwrap(),
            "-o",
            trace.to_str().unwrap(),
            "--",
            program.to_str().unwrap(),
        ]);
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: {stderr}",
            program.display()
        );
        assert!(
            stderr.contains(&format!("{}: {reason}", program.display())),
            "{}: wanted {reason:?}, got: {stderr}",
            program.display()
        );
        assert!(!stderr.contains("is it linked"), "{stderr}");
        assert!(!marker.exists(), "{} was run", program.display());
        assert!(!trace.exists());
    }
    // An output the runtime could not create: refused too, before running.
    let exe = build_source(&dir, "prog", EXIT_WITH, true);
    let nowhere = dir.join("no-such-dir/t.trace");
    let out = padtrim(&[
        "record",
        "--qemu",
        fake_qemu.to_str().unwrap(),
        "-o",
        nowhere.to_str().unwrap(),
        "--",
        exe.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no such directory"),
        "{}",
        text(&out.stderr)
    );
    assert!(!marker.exists());
}

#[test]
fn record_of_a_program_without_the_runtime_exits_2() {
    // Neither linked with the runtime nor rewritten (no __mcount_loc table for a preloaded
    // runtime to find): nothing could trace it, so it is refused before it runs.
    let dir = scratch("noruntime");
    let exe = build_source(&dir, "plain", EXIT_WITH, false);
    let trace = dir.join("t.trace");
    for status in ["0", "3"] {
        let out = padtrim(&[
            "record",
            "-o",
            trace.to_str().unwrap(),
            "--",
            exe.to_str().unwrap(),
            status,
        ]);
        let stderr = text(&out.stderr);
        assert_eq!(text(&out.stdout), "", "the program must not run: {stderr}");
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "{}: no __mcount_loc slot table, so nothing to trace: rewrite it with \
                 `padtrim rewrite --slot 4`",
                exe.display()
            )),
            "{stderr}"
        );
        assert!(!trace.exists());
    }
}

#[test]
fn record_passes_on_the_programs_exit_status_and_documents_it() {
    let dir = scratch("status");
    let exe = build_source(&dir, "exits", EXIT_WITH, true);
    let trace = dir.join("t.trace");
    // (arguments, expected status): own statuses, then signals as 128+N.
    for (args, want) in [
        (&["0"][..], 0),
        (&["3"][..], 3),
        (&["42"][..], 42),
        (&["0", "15"][..], 128 + 15), // SIGTERM
        (&["0", "6"][..], 128 + 6),   // SIGABRT
    ] {
        let mut argv = vec![
            "record",
            "--graph",
            "-o",
            trace.to_str().unwrap(),
            "--",
            exe.to_str().unwrap(),
        ];
        argv.extend_from_slice(args);
        let out = padtrim(&argv);
        assert_eq!(
            out.status.code(),
            Some(want),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(trace.exists(), "{args:?}: no trace");
        // A killed program never flushes its records (only the header is there).
        if args.len() == 1 {
            let summary = replay(&trace, &exe, &["--summary"]);
            assert!(summary.contains("main"), "{args:?}: {summary}");
        }
    }
    let help = text(&padtrim(&["record", "--help"]).stdout);
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for words in [
        "Exit status: the program's own",
        "128+N when signal N killed it",
        "2 when padtrim could not run it, or when it wrote no trace",
    ] {
        assert!(
            flat.contains(words),
            "record --help lacks {words:?}: {help}"
        );
    }
}

#[test]
fn replay_refuses_a_program_other_than_the_traced_one() {
    let dir = scratch("identity");
    let exe = build(&dir, "calls.c");
    let other = build(&dir, "jump.c");
    let (_, _, trace) = record(&exe, "graph", None);
    let t = trace.to_str().unwrap();

    let out = padtrim(&["replay", t, "--elf", other.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty());
    for part in [
        format!("{} is not the program traced in {}", other.display(), t),
        format!("traced: {}: build-id ", exe.display()),
        format!("--elf:  {}: build-id ", other.display()),
        "--force".to_string(),
    ] {
        assert!(stderr.contains(&part), "wanted {part:?} in: {stderr}");
    }

    // --force: a warning, and the replay.
    let out = padtrim(&["replay", t, "--elf", other.to_str().unwrap(), "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("warning"));
    assert!(text(&out.stdout).starts_with("# padtrim trace of"));

    // A copy, and a stripped copy, hold the same code: accepted.
    let copy = dir.join("calls-copy");
    std::fs::copy(&exe, &copy).unwrap();
    assert!(replay(&trace, &copy, &[]).contains("main()"));
    let stripped = dir.join("calls-stripped");
    let st = Command::new("riscv64-linux-gnu-strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&exe)
        .status()
        .unwrap();
    assert!(st.success());
    let out = padtrim(&["replay", t, "--elf", stripped.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // A separate debug file has the symbols but not the code: the build-id decides.
    let debug = dir.join("calls.debug");
    let st = Command::new("riscv64-linux-gnu-objcopy")
        .arg("--only-keep-debug")
        .arg(&exe)
        .arg(&debug)
        .status()
        .unwrap();
    assert!(st.success());
    assert!(replay(&trace, &debug, &[]).contains("main()"));

    // The program rebuilt (here: replaced) after recording: replay without --elf refuses.
    std::fs::copy(&other, &exe).unwrap();
    let out = padtrim(&["replay", t]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} has changed since {t} was recorded",
            exe.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("--elf"), "{stderr}");
}

#[test]
fn replay_refuses_the_original_of_a_rewritten_program() {
    // `padtrim rewrite` keeps the build-id but moves the functions: the build-id alone would
    // let the original's symbols name the rewritten program's addresses.
    let dir = scratch("identity-rewrite");
    let exe = build_padded(&dir, "calls.c", Link::Pie);
    let pt = rewrite(&exe);
    let (_, _, trace) = record(&pt, "graph", None);
    let out = padtrim(&[
        "replay",
        trace.to_str().unwrap(),
        "--elf",
        exe.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the same build-id but different code"),
        "{stderr}"
    );
    assert!(replay(&trace, &pt, &[]).contains("main()"));
}

#[test]
fn traces_written_without_record_still_replay_and_warn_about_a_foreign_program() {
    let dir = scratch("direct");
    let exe = build(&dir, "calls.c");
    let other = build(&dir, "jump.c");
    let trace = dir.join("direct.trace");
    let (_, stderr, _) = run_env(
        &exe,
        &[
            ("PADTRIM_TRACE", "graph"),
            ("PADTRIM_OUT", trace.to_str().unwrap()),
        ],
    );
    assert!(trace.exists(), "{stderr}");
    let t = trace.to_str().unwrap();
    let out = padtrim(&["replay", t, "--elf", exe.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("main()"));
    // No identity to check, but not one traced address starts a function of `other`.
    let out = padtrim(&["replay", t, "--elf", other.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "starts at a function symbol of {}: is it the traced program",
            other.display()
        )),
        "{stderr}"
    );
}

#[test]
fn replay_speaks_in_flag_words_and_plurals() {
    let dir = scratch("words");
    let exe = build(&dir, "calls.c");
    let (_, _, graph) = record(&exe, "graph", None);
    let (_, _, entry) = record(&exe, "entry", None);
    let summary = replay(&graph, &exe, &["--summary"]);
    let first = summary.lines().next().unwrap();
    assert!(first.ends_with(", mode graph, 1 thread"), "{first}");
    assert!(
        summary.contains("# startup: 6 slots patched, 0 skipped"),
        "{summary}"
    );
    let head = replay(&graph, &exe, &[]);
    assert!(
        head.lines().next().unwrap().ends_with(", mode graph"),
        "{head}"
    );
    let head = replay(&entry, &exe, &[]);
    assert!(
        head.lines().next().unwrap().ends_with(", mode entry"),
        "{head}"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&replay(&graph, &exe, &["--format", "chrome"])).unwrap();
    assert_eq!(doc["otherData"]["mode"], "graph");
    let threads = build(&dir, "threads.c");
    let (_, _, trace) = record(&threads, "entry", None);
    let summary = replay(&trace, &threads, &["--summary"]);
    assert!(
        summary
            .lines()
            .next()
            .unwrap()
            .ends_with(", mode entry, 4 threads"),
        "{summary}"
    );
    for all in [&summary, &head] {
        assert!(!all.contains("(s)") && !all.contains("Graph") && !all.contains("Entry"));
    }
}

#[test]
fn record_never_removes_a_device_given_as_output() {
    // `-o /dev/null` once removed /dev/null (record deletes an old trace first) and, run as
    // root, the runtime then created a regular file in its place. A node of the same device
    // in the scratch directory stands in for it.
    let dir = scratch("device");
    let null = dir.join("null");
    let made = Command::new("mknod")
        .arg(&null)
        .args(["c", "1", "3"])
        .output()
        .unwrap();
    if !made.status.success() {
        eprintln!(
            "skipped: cannot make a device node here: {}",
            text(&made.stderr)
        );
        return;
    }
    let exe = build_source(&dir, "prog", EXIT_WITH, true);
    let out = padtrim(&[
        "record",
        "-o",
        null.to_str().unwrap(),
        "--",
        exe.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    use std::os::unix::fs::FileTypeExt;
    let kind = std::fs::symlink_metadata(&null).unwrap().file_type();
    assert!(kind.is_char_device(), "{} was replaced", null.display());
}

// ---- uftrace export: padtrim's data directories read by uftrace's own commands ----

/// Run `uftrace CMD -d DIR ARGS...`; its stdout, asserting it succeeded. uftrace comes from
/// Debian's package (scripts/setup installs it): a test that cannot find it fails.
fn uftrace(cmd: &str, dir: &Path, extra: &[&str]) -> String {
    let out = Command::new("uftrace")
        .arg(cmd)
        .arg("-d")
        .arg(dir)
        .args(extra)
        .output()
        .expect("run uftrace (installed by scripts/setup)");
    assert!(
        out.status.success(),
        "uftrace {cmd} -d {}: {}\n{}",
        dir.display(),
        text(&out.stderr),
        text(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A time as uftrace prints it ("651.748 us", "1.824 ms", blank for 0) in ns, and the
/// resolution of the printed value (uftrace truncates to 3 decimals of its unit).
fn uftrace_time(s: &str) -> (f64, f64) {
    let s = s.trim();
    if s.is_empty() {
        return (0.0, 1.0);
    }
    let (num, unit) = s.split_once(' ').expect("a number and a unit");
    let scale = match unit.trim() {
        "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        u => panic!("unknown unit {u:?} in {s:?}"),
    };
    (num.parse::<f64>().unwrap() * scale, scale / 1000.0)
}

/// Per function: (calls, total ns, self ns, resolution ns), from `uftrace report`.
fn uftrace_report(dir: &Path) -> BTreeMap<String, (u64, f64, f64, f64)> {
    let out = uftrace("report", dir, &[]);
    let mut lines = out.lines();
    let header = lines.next().expect("a header");
    assert!(
        header.contains("Total time") && header.contains("Calls"),
        "{out}"
    );
    lines.next(); // ====
    lines
        .map(|l| {
            // "  %10s  %10s  %10lu  %s": total, self, calls, function.
            let (total, res_t) = uftrace_time(&l[..12]);
            let (own, res_s) = uftrace_time(&l[12..24]);
            let calls = l[24..36].trim().parse().unwrap();
            (l[38..].to_string(), (calls, total, own, res_t.max(res_s)))
        })
        .collect()
}

/// Per function: (calls, total ns, self ns), from `padtrim replay --summary` (times are
/// zero in an entry-only trace).
fn padtrim_summary(trace: &Path, exe: &Path) -> BTreeMap<String, (u64, f64, f64)> {
    replay(trace, exe, &["--summary"])
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim_start().starts_with("CALLS"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let us = |s: &str| s.parse::<f64>().unwrap() * 1e3;
            match f.len() {
                2 => (f[1].to_string(), (f[0].parse().unwrap(), 0.0, 0.0)),
                6 => (
                    f[5].to_string(),
                    (f[0].parse().unwrap(), us(f[1]), us(f[3])),
                ),
                _ => panic!("unexpected summary line {l:?}"),
            }
        })
        .collect()
}

/// Export `trace` with `replay --format uftrace` into a fresh directory.
fn export_uftrace(trace: &Path, exe: &Path, name: &str) -> PathBuf {
    let dir = trace.with_file_name(name);
    let _ = std::fs::remove_dir_all(&dir);
    let out = padtrim(&[
        "replay",
        trace.to_str().unwrap(),
        "--elf",
        exe.to_str().unwrap(),
        "--format",
        "uftrace",
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "export: {}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "export prints nothing");
    dir
}

/// Calls per function in `uftrace replay`'s output ("name();" and "name() {" lines).
fn uftrace_replay_calls(dir: &Path) -> BTreeMap<String, u64> {
    let mut calls = BTreeMap::new();
    for l in uftrace("replay", dir, &[]).lines().skip(1) {
        let f = l.rsplit('|').next().unwrap().trim();
        if let Some(name) = f.strip_suffix("();").or_else(|| f.strip_suffix("() {")) {
            *calls.entry(name.to_string()).or_default() += 1;
        }
    }
    calls
}

/// Calls per function in `uftrace dump --chrome`, which must be valid JSON: "B" events,
/// each with its "E".
fn uftrace_chrome_calls(dir: &Path) -> BTreeMap<String, u64> {
    let out = uftrace("dump", dir, &["--chrome"]);
    let doc: serde_json::Value = serde_json::from_str(&out).expect("uftrace's chrome JSON");
    let mut begins: BTreeMap<String, u64> = BTreeMap::new();
    let mut ends: BTreeMap<String, u64> = BTreeMap::new();
    for e in doc["traceEvents"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap_or_default().to_string();
        match e["ph"].as_str() {
            Some("B") => *begins.entry(name).or_default() += 1,
            Some("E") => *ends.entry(name).or_default() += 1,
            _ => {}
        }
    }
    assert_eq!(begins, ends, "every call begins and ends");
    begins
}

/// The export of `trace` as uftrace reads it, against padtrim's own summary: the same
/// functions with the same call counts in report, replay and dump --chrome; in a graph
/// trace the same total and self times (each uftrace timestamp is padtrim's rounded to
/// the nanosecond, so a time may differ by a nanosecond per call it adds up, and uftrace
/// truncates to its printed unit).
fn check_uftrace_matches_summary(trace: &Path, exe: &Path, dir: &Path, graph: bool) {
    let ours = padtrim_summary(trace, exe);
    let theirs = uftrace_report(dir);
    let calls = |m: &BTreeMap<String, (u64, f64, f64)>| -> BTreeMap<String, u64> {
        m.iter().map(|(k, v)| (k.clone(), v.0)).collect()
    };
    let their_calls: BTreeMap<String, u64> = theirs.iter().map(|(k, v)| (k.clone(), v.0)).collect();
    assert_eq!(
        their_calls,
        calls(&ours),
        "uftrace report vs padtrim replay --summary"
    );
    assert_eq!(uftrace_replay_calls(dir), calls(&ours), "uftrace replay");
    assert_eq!(
        uftrace_chrome_calls(dir),
        calls(&ours),
        "uftrace dump --chrome"
    );
    if graph {
        let all_calls: u64 = ours.values().map(|v| v.0).sum();
        for (name, &(_, total, own)) in &ours {
            let (_, t, s, res) = theirs[name];
            let slack = res + 2.0 * all_calls as f64 + 1.0;
            assert!(
                (t - total).abs() <= slack,
                "{name}: total {t} ns in uftrace, {total} ns in padtrim"
            );
            assert!(
                (s - own).abs() <= slack,
                "{name}: self {s} ns in uftrace, {own} ns in padtrim"
            );
        }
    }
    let graph_out = uftrace("graph", dir, &[]);
    assert!(
        graph_out.contains("FUNCTION CALL GRAPH") && graph_out.contains("main"),
        "{graph_out}"
    );
}

#[test]
fn uftrace_reads_exported_graph_traces_of_several_threads() {
    let dir = scratch("uftrace-graph");
    let exe = build(&dir, "threads.c");
    let (_, code, trace) = record(&exe, "graph", None);
    assert_eq!(code, 0);
    let data = export_uftrace(&trace, &exe, "graph.uftrace");
    // uftrace must not need the RISC-V program: hide it while uftrace reads.
    let hidden = exe.with_extension("hidden");
    std::fs::rename(&exe, &hidden).unwrap();
    let ours_exe = hidden.clone();
    let summary = padtrim_summary(&trace, &ours_exe);
    assert_eq!(summary["work"].0, 4500, "{summary:?}");
    check_uftrace_matches_summary(&trace, &ours_exe, &data, true);
    let info = uftrace("info", &data, &[]);
    assert!(info.contains("number of tasks     : 4"), "{info}");
    assert!(
        info.contains(&format!("exe image           : {}", exe.display())),
        "{info}"
    );
    // Nesting: in every thread, leaf is called inside work inside thread_main.
    let replayed = uftrace("replay", &data, &[]);
    assert!(
        replayed.contains("| thread_main() {")
            && replayed.contains("|   work() {")
            && replayed.contains("|     leaf();"),
        "{}",
        &replayed[..replayed.len().min(2000)]
    );
}

#[test]
fn uftrace_reads_exported_entry_traces_with_every_call_counted() {
    let dir = scratch("uftrace-entry");
    let exe = build(&dir, "threads.c");
    let (_, code, trace) = record(&exe, "entry", None);
    assert_eq!(code, 0);
    let data = export_uftrace(&trace, &exe, "entry.uftrace");
    check_uftrace_matches_summary(&trace, &exe, &data, false);
    let replayed = uftrace("replay", &data, &[]);
    assert!(
        replayed.contains("|   work() {"),
        "entries keep their nesting"
    );
    let calls = uftrace_report(&data);
    assert_eq!(calls["leaf"].0, 4500);
}

#[test]
fn uftrace_reads_exported_traces_with_recursion_and_unwinding() {
    let dir = scratch("uftrace-jump");
    let exe = build(&dir, "jump.c");
    let (_, _, trace) = record(&exe, "graph", None);
    let data = export_uftrace(&trace, &exe, "jump.uftrace");
    check_uftrace_matches_summary(&trace, &exe, &data, true);
}

#[test]
fn record_writes_a_uftrace_directory_directly() {
    let dir = scratch("uftrace-record");
    let exe = build_source(&dir, "exit_with", EXIT_WITH, true);
    let data = dir.join("uftrace.data");
    // Run in `dir`, where a default trace (padtrim.trace) would appear.
    let out = Command::new(env!("CARGO_BIN_EXE_padtrim"))
        .current_dir(&dir)
        .args(["record", "--graph", "--uftrace", "uftrace.data", "--"])
        .arg(&exe)
        .arg("3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let traces: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".trace"))
        .collect();
    assert!(traces.is_empty(), "no trace kept without -o: {traces:?}");
    let report = uftrace_report(&data);
    assert_eq!(report["main"].0, 1);
    assert_eq!(report["status_of"].0, 1);
    let info = uftrace("info", &data, &[]);
    assert!(info.contains("exited with code: 3"), "{info}");
    assert!(
        info.contains(&format!("cmdline             : {} 3", exe.display())),
        "{info}"
    );
    // Recording again replaces the directory's contents; with -o the trace is kept too.
    let trace = dir.join("kept.trace");
    let out = padtrim(&[
        "record",
        "--uftrace",
        data.to_str().unwrap(),
        "-o",
        trace.to_str().unwrap(),
        "--",
        exe.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(trace.exists());
    check_uftrace_matches_summary(&trace, &exe, &data, false);
}

#[test]
fn uftrace_export_refuses_what_it_cannot_write() {
    let dir = scratch("uftrace-refuse");
    let exe = build(&dir, "threads.c");
    let (_, _, trace) = record(&exe, "entry", None);
    let t = trace.to_str().unwrap();
    let e = exe.to_str().unwrap();
    let out = padtrim(&["replay", t, "--elf", e, "--format", "uftrace"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("-o DIR"),
        "{}",
        text(&out.stderr)
    );
    let out = padtrim(&[
        "replay",
        t,
        "--elf",
        e,
        "--format",
        "uftrace",
        "--summary",
        "-o",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--summary"),
        "{}",
        text(&out.stderr)
    );
    // A directory with other files in it is not emptied.
    let other = dir.join("notes");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("keep.txt"), "mine").unwrap();
    let o = other.to_str().unwrap();
    let out = padtrim(&["replay", t, "--elf", e, "--format", "uftrace", "-o", o]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(o) && err.contains("not a uftrace data directory"),
        "{err}"
    );
    assert!(other.join("keep.txt").exists());
    // So is a file, and record refuses before running the program.
    let file = dir.join("file");
    std::fs::write(&file, "x").unwrap();
    let out = padtrim(&["record", "--uftrace", file.to_str().unwrap(), "--", e]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not a directory"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).is_empty(), "the program did not run");
}

/// Write a graph trace of `rounds` calls of thread_main { work { leaf } } on each of two
/// threads, inside one `main` that stays open the whole trace (a span longer than any
/// window replay keeps), with the program's real addresses.
fn write_long_graph_trace(exe: &Path, path: &Path, rounds: u64) {
    use padtrim_runtime::format::{encode_header, Header, Kind, Mode, Record};
    use std::io::Write;
    let syms = symbols(exe);
    let header = Header {
        mode: Mode::Graph,
        load_bias: 0,
        tick0: 0,
        ns0: 1_000_000,
        pid: 7,
    };
    let mut head = vec![0u8; 8192];
    let path_bytes = exe.to_str().unwrap().as_bytes();
    let n = encode_header(&header, path_bytes, &mut head).unwrap();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    out.write_all(&head[..n]).unwrap();
    let mut time = 0u64;
    let mut put = |out: &mut std::io::BufWriter<std::fs::File>, tid, name: &str, depth, kind| {
        time += 3;
        let r = Record {
            time,
            addr: syms[name],
            tid,
            depth,
            kind,
        };
        out.write_all(&r.encode()).unwrap();
    };
    put(&mut out, 7, "main", 0, Kind::Entry);
    for _ in 0..rounds {
        for tid in [7u32, 8] {
            let base = if tid == 7 { 1 } else { 0 };
            for (name, d) in [("thread_main", 0), ("work", 1), ("leaf", 2)] {
                put(&mut out, tid, name, base + d, Kind::Entry);
            }
            for (name, d) in [("leaf", 2), ("work", 1), ("thread_main", 0)] {
                put(&mut out, tid, name, base + d, Kind::Exit);
            }
        }
    }
    put(&mut out, 7, "main", 0, Kind::Exit);
    out.flush().unwrap();
}

#[test]
fn replay_streams_a_long_trace_in_little_memory() {
    let dir = scratch("stream");
    let exe = build(&dir, "threads.c");
    // 2.5 million records (60 MB): replay used to hold several times that in memory.
    let rounds = 2_500_000 / 12;
    let trace = dir.join("long.trace");
    write_long_graph_trace(&exe, &trace, rounds);
    let data = dir.join("long.uftrace");
    let t = trace.to_str().unwrap();
    let e = exe.to_str().unwrap();
    let d = data.to_str().unwrap();
    let runs: [&[&str]; 5] = [
        &["--format", "text"],
        &["--format", "chrome"],
        &["--format", "folded"],
        &["--summary"],
        &["--format", "uftrace", "-o", d],
    ];
    for extra in runs {
        // 128 MiB of address space in all: far less than the trace's events in memory.
        let out = Command::new("sh")
            .arg("-c")
            .arg("ulimit -v 131072 && exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_padtrim"))
            .args(["replay", t, "--elf", e])
            .args(extra)
            .stdout(if extra[0] == "--summary" {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "replay {extra:?} in 128 MiB: {}",
            text(&out.stderr)
        );
        if extra[0] == "--summary" {
            let summary = text(&out.stdout);
            for (name, calls) in [
                ("main", 1),
                ("thread_main", 2 * rounds),
                ("leaf", 2 * rounds),
            ] {
                let line = summary
                    .lines()
                    .find(|l| l.ends_with(&format!("  {name}")))
                    .unwrap_or_else(|| panic!("no {name} in {summary}"));
                assert_eq!(
                    line.split_whitespace().next(),
                    Some(calls.to_string().as_str())
                );
            }
        }
    }
    assert_eq!(uftrace_report(&data)["work"].0, 2 * rounds);
}

/// Guest instructions qemu-riscv64 executes for `exe ARGS` with `env` (exact: counted by the
/// TCG plugin runtime/bench/insncount.c, built here with the host's gcc), and its stdout.
fn count_instructions(
    plugin: &Path,
    exe: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (u64, String) {
    let count = exe.with_extension(format!(
        "{}.count",
        env.iter()
            .map(|e| e.1.rsplit('/').next().unwrap_or(e.1))
            .collect::<Vec<_>>()
            .join("-")
    ));
    let mut cmd = Command::new("qemu-riscv64");
    cmd.args(["-L", "/usr/riscv64-linux-gnu", "-plugin"])
        .arg(format!("{},out={}", plugin.display(), count.display()));
    for (k, v) in env {
        if *k == "LD_PRELOAD" {
            // For the guest, not for qemu itself.
            cmd.arg("-E").arg(format!("LD_PRELOAD={v}"));
        } else {
            cmd.env(k, v);
        }
    }
    cmd.arg(exe)
        .args(args)
        .env_remove("PADTRIM_DEBUG")
        .env("PADTRIM_OUT", exe.with_extension("count.trace"));
    let out = cmd.output().expect("run qemu-riscv64");
    assert!(
        out.status.success(),
        "{} {args:?} {env:?}: {}",
        exe.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let n = std::fs::read_to_string(&count).expect("the plugin wrote its count");
    (
        n.trim().parse().expect("a count"),
        String::from_utf8(out.stdout).unwrap(),
    )
}

/// The preloadable runtime (`scripts/runtime-lib --shared`).
fn preload_lib() -> PathBuf {
    let out = Command::new(repo().join("scripts/runtime-lib"))
        .arg("--shared")
        .output()
        .expect("run scripts/runtime-lib --shared");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .trim(),
    )
}

/// Build runtime/bench/fib.c as scripts/bench-runtime does: `-O2 -march=rv64gc`, with `pads`
/// (`-fpatchable-function-entry=8` and the runtime, rewritten to 4-byte slots) or without.
fn build_fib(dir: &Path, pads: bool) -> PathBuf {
    build_fib_as(dir, pads, pads)
}

/// `build_fib`, with the runtime linked in or not (`linked`).
fn build_fib_as(dir: &Path, pads: bool, linked: bool) -> PathBuf {
    let exe = dir.join(match (pads, linked) {
        (false, _) => "fib-plain",
        (true, true) => "fib-pads",
        (true, false) => "fib-pads-unlinked",
    });
    let mut cmd = Command::new("riscv64-linux-gnu-gcc");
    cmd.args(["-O2", "-march=rv64gc", "-mabi=lp64d"]);
    if pads {
        cmd.arg("-fpatchable-function-entry=8");
    }
    cmd.arg(repo().join("runtime/bench/fib.c"));
    if linked {
        cmd.arg(runtime_lib());
    }
    let out = cmd.args(["-Wl,-q", "-o"]).arg(&exe).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if pads {
        rewrite(&exe)
    } else {
        exe
    }
}

#[test]
fn a_traced_call_costs_at_most_60_instructions_in_entry_mode_and_100_in_graph_mode() {
    // Exact instruction counts under qemu (not a timing: deterministic), as
    // scripts/bench-runtime measures them: the difference between fib(12) and fib(16) over
    // the difference in calls, against the same program built without pads.
    let dir = scratch("cost");
    let plugin = dir.join("libinsncount.so");
    let out = Command::new("gcc")
        .args(["-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o"])
        .arg(&plugin)
        .arg(repo().join("runtime/bench/insncount.c"))
        .output()
        .expect("run the host gcc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain = build_fib(&dir, false);
    let traced = build_fib(&dir, true);
    let calls = |stdout: &str| -> u64 {
        stdout
            .split("calls=")
            .nth(1)
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("no call count in {stdout:?}"))
    };
    let per_call = |exe: &Path, env: &[(&str, &str)]| -> f64 {
        let (small, out_small) = count_instructions(&plugin, exe, &["12"], env);
        let (big, out_big) = count_instructions(&plugin, exe, &["16"], env);
        (big - small) as f64 / (calls(&out_big) - calls(&out_small)) as f64
    };
    let base = per_call(&plain, &[]);
    let extra = |mode: &str| per_call(&traced, &[("PADTRIM_TRACE", mode)]) - base;
    let (off, entry, graph) = (extra("off"), extra("entry"), extra("graph"));
    eprintln!("extra instructions per call: off {off:.2}, entry {entry:.2}, graph {graph:.2}");
    assert!(
        off <= 1.0,
        "tracing off costs {off:.2} instructions per call"
    );
    assert!(
        entry <= 60.0,
        "entry tracing costs {entry:.2} instructions per call"
    );
    assert!(
        graph <= 100.0,
        "graph tracing costs {graph:.2} instructions per call"
    );
    // The preloaded runtime's per-module trampoline copies have the same fast path (plus
    // the far-jump stub between slot and copy).
    let preload = preload_lib();
    let unlinked = build_fib_as(&dir, true, false);
    let extra_preloaded = |mode: &str| {
        per_call(
            &unlinked,
            &[
                ("PADTRIM_TRACE", mode),
                ("LD_PRELOAD", preload.to_str().unwrap()),
            ],
        ) - base
    };
    let (pentry, pgraph) = (extra_preloaded("entry"), extra_preloaded("graph"));
    eprintln!("preloaded: entry {pentry:.2}, graph {pgraph:.2}");
    assert!(
        pentry <= 60.0,
        "preloaded entry tracing costs {pentry:.2} per call"
    );
    assert!(
        pgraph <= 100.0,
        "preloaded graph tracing costs {pgraph:.2} per call"
    );
    // And the fast paths recorded every call, across many full buffers (fib(20): 21891
    // calls), in both modes.
    for mode in ["entry", "graph"] {
        let (stdout, code, trace) = record(&traced, mode, None);
        assert_eq!(code, 0);
        let n = calls(&stdout).to_string();
        let summary = replay(&trace, &traced, &["--summary"]);
        assert!(
            summary
                .lines()
                .any(|l| l.split_whitespace().next() == Some(n.as_str()) && l.contains("fib")),
            "{mode}: {n} calls of fib expected in\n{summary}"
        );
    }
}

/// The call column of `padtrim replay` or `uftrace replay` text: what follows the `|`.
fn call_column(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('|').map(|(_, call)| call.trim().to_string()))
        .collect()
}

/// Build runtime/tests/programs/args.c with 16-byte pads and the runtime, rewritten.
fn build_args(dir: &Path) -> PathBuf {
    rewrite(&build_padded(dir, "args.c", Link::Pie))
}

fn record_args(exe: &Path, graph: bool, spec: &str) -> std::process::Output {
    let trace = exe.with_extension(if graph {
        "args-graph.trace"
    } else {
        "args-entry.trace"
    });
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_padtrim"));
    cmd.arg("record")
        .arg("-o")
        .arg(&trace)
        .args(["--args", spec]);
    if graph {
        cmd.arg("--graph");
    }
    cmd.arg("--").arg(exe).output().unwrap()
}

#[test]
fn arguments_and_return_values_show_in_replay_and_in_uftrace_replay() {
    let dir = scratch("args-graph");
    let exe = build_args(&dir);
    let out = record_args(
        &exe,
        true,
        "fib@arg1,retval;add3@arg1,arg2,arg3;neg@arg1,retval",
    );
    assert_eq!(
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            out.status.code()
        ),
        (
            "thread fib(3)=2\nfib(5)=5 add3=321 neg=-7\n".to_string(),
            Some(0)
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace = exe.with_extension("args-graph.trace");
    let ours = call_column(&replay(&trace, &exe, &[]));
    for want in [
        "fib(5) {",
        "} = 5; /* fib */",
        "fib(3) {",
        "} = 2; /* fib */",
        "fib(1) = 1;",
        "fib(0) = 0;",
        "add3(1, 20, 300);",
        "neg(7) = -7;",
        "} /* main */",
    ] {
        assert!(ours.iter().any(|l| l == want), "no {want:?} in {ours:#?}");
    }
    // Every fib call shows fib(n) and returns fib(n): each leaf and each closing line.
    let fib = |n: u64| -> u64 { (0..n).fold((0, 1), |(a, b), _| (b, a + b)).0 };
    let mut open: Vec<u64> = Vec::new();
    let mut fib_calls = 0;
    for l in &ours {
        if let Some(rest) = l.strip_prefix("fib(") {
            fib_calls += 1;
            let (n, tail) = rest.split_once(')').unwrap();
            let n: u64 = n.parse().unwrap();
            if tail == " {" {
                open.push(n);
            } else {
                assert_eq!(tail, format!(" = {};", fib(n)), "{l}");
            }
        } else if l.ends_with("/* fib */") {
            let n = open.pop().unwrap();
            assert_eq!(l, &format!("}} = {}; /* fib */", fib(n)));
        }
    }
    // fib(5) makes 15 calls, fib(3) on the thread 5.
    assert_eq!(fib_calls, 20, "{ours:#?}");

    // uftrace's own replay shows the same calls, arguments and return values.
    let dir_u = export_uftrace(&trace, &exe, "uftrace.data");
    let theirs = call_column(&uftrace("replay", &dir_u, &[]));
    let mut a = ours.clone();
    let mut b = theirs.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b, "padtrim:\n{ours:#?}\nuftrace:\n{theirs:#?}");
    let info = uftrace("info", &dir_u, &[]);
    assert!(
        info.contains("fib@arg1;") && info.contains("fib@retval;"),
        "{info}"
    );
}

#[test]
fn entry_traces_carry_arguments_and_bad_argument_specs_are_refused() {
    let dir = scratch("args-entry");
    let exe = build_args(&dir);
    let out = record_args(&exe, false, "fib@arg1;add3@args");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace = exe.with_extension("args-entry.trace");
    let ours = call_column(&replay(&trace, &exe, &[]));
    for want in ["main()", "fib(5)", "fib(4)", "fib(0)", "neg()", "worker()"] {
        assert!(ours.iter().any(|l| l == want), "no {want:?} in {ours:#?}");
    }
    // `args`: all eight registers, the first three being add3's arguments.
    assert!(
        ours.iter()
            .any(|l| l.starts_with("add3(1, 20, 300, ") && l.matches(", ").count() == 7),
        "{ours:#?}"
    );
    assert_eq!(ours.iter().filter(|l| l.starts_with("fib(")).count(), 20);
    // Entry traces export their arguments too.
    let dir_u = export_uftrace(&trace, &exe, "uftrace.data");
    let theirs = call_column(&uftrace("replay", &dir_u, &[]));
    assert!(theirs.iter().any(|l| l == "fib(5) {"), "{theirs:#?}");

    // Refused before the program runs (exit 2, saying why): return values in entry mode,
    // and specs that do not parse.
    for (spec, graph, why) in [
        ("fib@retval", false, "retval needs --graph"),
        ("fib@arg1,retval", false, "retval needs --graph"),
        ("fib@arg9", true, "unknown field"),
        ("fib", true, "no @FIELDS"),
        ("@arg1", true, "names no function"),
    ] {
        let out = record_args(&exe, graph, spec);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{spec}: {err}");
        assert!(err.contains(why) && err.contains(spec), "{spec}: {err}");
        assert!(out.stdout.is_empty(), "{spec}: the program ran");
    }
}
